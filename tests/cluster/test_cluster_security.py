"""The Ray token, the cluster's SSH key, and the MLflow server that stops with Ray (issue 24, 6).

The scripts in deploy/cluster run for real, in a temporary home directory: the token's mode and
rotation are checked against Ray's own token loader and config hash, the head's start command
is parsed by Ray's own `ray start`, and the MLflow service is run as the cluster files run it,
with a stand-in for Ray's GCS process (`ray stop` here would stop every Ray on this machine).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "cluster"
CLUSTER_FILES = ["cluster.yaml", "cluster-local.yaml"]
TOKEN = "~/.ray/auth_token"
RAY = Path(sys.executable).with_name("ray")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def script(name: str, *args: str, home: Path, path: str = "/usr/bin:/bin", **env: str):
    return subprocess.run(["bash", str(CLUSTER / name), *args], capture_output=True, text=True,
                          env={"HOME": str(home), "PATH": path, **env}, timeout=60)


# --- the token -------------------------------------------------------------------------------

def runtime_hash(config: dict) -> str:
    """What `ray up` compares with each node's tag to decide whether to re-run setup and restart
    Ray there (the head; the head's autoscaler does the same for workers). Only the token's
    mount: the checkout's would hash every file of it."""
    from ray.autoscaler._private import util

    util._hash_cache.clear()  # Ray caches by config text; a new `ray up` is a new process
    mounts = {k: v for k, v in config["file_mounts"].items() if k == TOKEN}
    runtime, _ = util.hash_runtime_conf(mounts, None, [config["setup_commands"]])
    return runtime


def test_the_token_is_private_and_rotation_replaces_it(tmp_path, monkeypatch):
    ray_dir, token = tmp_path / ".ray", tmp_path / ".ray" / "auth_token"
    ray_dir.mkdir(mode=0o755)
    token.write_text("a" * 64)  # as `ray get-auth-token --generate` leaves it: 0644
    token.chmod(0o644)
    done = script("auth-token.sh", "new", home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert token.read_text() == "a" * 64  # `new` keeps a token that exists ...
    assert (mode(token), mode(ray_dir)) == (0o600, 0o700)  # ... and closes it

    monkeypatch.setenv("HOME", str(tmp_path))
    config = load("cluster.yaml")
    before = runtime_hash(config)
    done = script("auth-token.sh", "rotate", home=tmp_path)
    assert done.returncode == 0, done.stderr
    new = token.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}", new) and new != "a" * 64
    assert mode(token) == 0o600 and sorted(p.name for p in ray_dir.iterdir()) == ["auth_token"]
    assert "ray up" in done.stdout and new not in done.stdout + done.stderr
    # `ray up` sees a new config: setup and Ray's start run again, with the new token.
    assert runtime_hash(config) != before
    # Ray's own loader reads exactly this token.
    read = subprocess.run([str(RAY), "get-auth-token"], capture_output=True, text=True,
                          env={"HOME": str(tmp_path), "PATH": os.environ["PATH"]}, timeout=60)
    assert read.stdout.strip() == new, read.stderr


def test_a_new_token_is_private_from_the_start(tmp_path):
    done = script("auth-token.sh", "new", home=tmp_path)
    assert done.returncode == 0, done.stderr
    token = tmp_path / ".ray" / "auth_token"
    assert re.fullmatch(r"[0-9a-f]{64}", token.read_text())
    assert (mode(token), mode(token.parent)) == (0o600, 0o700)


@pytest.mark.parametrize("variable", ["RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"])
def test_rotation_refuses_when_ray_would_read_another_token(tmp_path, variable):
    done = script("auth-token.sh", "rotate", home=tmp_path, **{variable: "x"})
    assert done.returncode == 2 and variable in done.stderr
    assert not (tmp_path / ".ray").exists()


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_every_node_keeps_the_copied_token_private(tmp_path, name):
    config = load(name)
    assert config["file_mounts"][TOKEN] == TOKEN
    # A setup command (after file_mounts, on every node) closes the copy, however it came.
    assert "bash ~/resnet-search/deploy/cluster/auth-token.sh check" in config["setup_commands"]
    missing = script("auth-token.sh", "check", home=tmp_path)
    assert missing.returncode != 0 and "no token" in missing.stderr
    (tmp_path / ".ray").mkdir(mode=0o755)
    (tmp_path / ".ray" / "auth_token").write_text("b" * 64)
    (tmp_path / ".ray" / "auth_token").chmod(0o644)
    assert script("auth-token.sh", "check", home=tmp_path).returncode == 0
    assert mode(tmp_path / ".ray" / "auth_token") == 0o600
    assert mode(tmp_path / ".ray") == 0o700


def commands(doc: str) -> str:
    """What a document tells you to run: a Markdown file's code blocks, a cluster file's all."""
    text = (REPO / doc).read_text()
    if doc.endswith(".md"):
        return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S))
    return text


@pytest.mark.parametrize("doc", [*CLUSTER_FILES, "docs/cluster.md"])
def test_the_docs_make_and_rotate_the_token_with_the_script(doc):
    text = commands(doc)
    assert "get-auth-token" not in text
    assert "deploy/cluster/auth-token.sh new" in text
    assert re.search(r"auth-token\.sh rotate[^\n]*\n?[^\n]*ray up", text), doc


# --- cluster-local.yaml: its own SSH key, a head without trials ------------------------------

def fake_bin(tmp_path: Path, name: str, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text("#!/bin/sh\n" + body)
    (bin_dir / name).chmod(0o755)
    return bin_dir


def test_the_local_cluster_has_a_key_of_its_own(tmp_path):
    config = load("cluster-local.yaml")
    key = config["auth"]["ssh_private_key"]
    assert key == "~/.ssh/resnet-search-cluster"
    assert Path(key).name not in {"id_rsa", "id_ed25519", "id_ecdsa", "id_dsa", "identity"}
    # The documented command authorizes it on every machine of the file.
    header = (REPO / "cluster-local.yaml").read_text()
    (line,) = [ln for ln in header.splitlines() if "cluster-key.sh" in ln and "bash" in ln]
    targets = shlex.split(line.lstrip("# "))[2:]
    provider = config["provider"]
    user = config["auth"]["ssh_user"]
    assert targets == [f"{user}@{ip}" for ip in [provider["head_ip"], *provider["worker_ips"]]]

    bin_dir = fake_bin(tmp_path, "ssh-copy-id", 'echo "$@" >> "$HOME/copied"\n')
    path = f"{bin_dir}:/usr/bin:/bin"
    done = script("cluster-key.sh", *targets, home=tmp_path, path=path)
    assert done.returncode == 0, done.stderr
    private = Path(key.replace("~", str(tmp_path)))
    assert mode(private) == 0o600
    assert private.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    assert (tmp_path / "copied").read_text().splitlines() == [
        f"-i {private}.pub {target}" for target in targets]
    first = private.read_bytes()
    assert script("cluster-key.sh", home=tmp_path, path=path).returncode == 0
    assert private.read_bytes() == first  # made once, kept


def test_revoking_the_cluster_key_keeps_every_other_key(tmp_path):
    # `ssh TARGET COMMAND` runs COMMAND here, in the same home.
    bin_dir = fake_bin(tmp_path, "ssh", 'shift; exec sh -c "$*"\n')
    path = f"{bin_dir}:/usr/bin:/bin"
    assert script("cluster-key.sh", home=tmp_path, path=path).returncode == 0
    ours = (tmp_path / ".ssh" / "resnet-search-cluster.pub").read_text()
    authorized = tmp_path / ".ssh" / "authorized_keys"
    authorized.write_text(f"ssh-ed25519 AAAAmine me@laptop\n{ours}ssh-rsa AAAAother x@y\n")
    authorized.chmod(0o600)
    done = script("cluster-key.sh", "--revoke", "u@host", home=tmp_path, path=path)
    assert done.returncode == 0, done.stderr
    assert authorized.read_text() == "ssh-ed25519 AAAAmine me@laptop\nssh-rsa AAAAother x@y\n"
    assert mode(authorized) == 0o600


def head_ray_start(config: dict) -> dict:
    """The head's `ray start`, parsed by Ray's own command line."""
    from ray.scripts.scripts import start

    (command,) = [c for c in config["head_start_ray_commands"] if "ray start --head" in c]
    argv = shlex.split(command[command.index("ray start") + len("ray start"):])
    return start.make_context("start", argv).params


def test_the_local_head_offers_trials_nothing():
    params = head_ray_start(load("cluster-local.yaml"))
    assert params["head"] and params["num_cpus"] == 0 and params["num_gpus"] == 0
    header = (REPO / "cluster-local.yaml").read_text()
    assert "remove those two flags" in header  # how to lend the head to trials


# --- MLflow stops with Ray -------------------------------------------------------------------

def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"  # a zombie whose parent is gone is stopped


@pytest.fixture
def head(tmp_path):
    """A head's home: the checkout at ~/resnet-search, an `mlflow` that records how it was
    started and keeps a worker child (as MLflow's web server does), and a stand-in for Ray's
    GCS process under a name of its own."""
    (tmp_path / "resnet-search").symlink_to(REPO)
    bin_dir = fake_bin(tmp_path, "mlflow", (
        'sleep 1000 & echo "$$ $!" > "$HOME/mlflow.pids"\n'
        'printf "%s\\n" "$@" > "$HOME/mlflow.argv"\n'
        "trap 'kill $!; exit 0' TERM\nwhile :; do sleep 0.1; done\n"))
    (bin_dir / "fake_gcs").symlink_to("/bin/sleep")
    (tmp_path / ".resnet-search.env").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    gcs = subprocess.Popen([str(bin_dir / "fake_gcs"), "1000"])
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "RESNET_SEARCH_MLFLOW_WATCH": "fake_gcs"}
    yield tmp_path, gcs, env
    subprocess.run(["bash", str(CLUSTER / "mlflow-service.sh"), "stop"], env=env, timeout=30)
    gcs.kill()
    gcs.wait()
    pids = tmp_path / "mlflow.pids"  # a failed test leaves no server behind either
    for pid in pids.read_text().split() if pids.exists() else []:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def start_mlflow(config: dict, env: dict) -> subprocess.CompletedProcess:
    (command,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                          timeout=60, cwd=env["HOME"])


def mlflow_pids(home: Path, wait_until) -> list[int]:
    pids = home / "mlflow.pids"
    wait_until(pids.exists, 10)
    return [int(p) for p in pids.read_text().split()]


def test_the_service_watches_the_process_ray_stop_ends():
    """The watcher's default: the name of Ray's GCS binary, which `ray stop` kills by name."""
    import ray
    from ray.autoscaler._private.constants import RAY_PROCESSES

    text = (CLUSTER / "mlflow-service.sh").read_text()
    (name,) = re.findall(r"RESNET_SEARCH_MLFLOW_WATCH:-(\w+)", text)
    assert (Path(ray.__file__).parent / "core/src/ray/gcs" / name).is_file()
    assert [name, True] in RAY_PROCESSES  # matched on the process name, as pgrep -x does


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_mlflow_stops_when_ray_stops(head, name, wait_until):
    home, gcs, env = head
    done = start_mlflow(load(name), env)
    assert done.returncode == 0, done.stderr
    server, child = mlflow_pids(home, wait_until)
    argv = (home / "mlflow.argv").read_text().splitlines()
    assert argv[:5] == ["server", "--host", "127.0.0.1", "--port", "5000"]
    time.sleep(0.5)
    assert alive(server) and alive(child)
    gcs.send_signal(signal.SIGTERM)  # what `ray stop` (and so `ray down`) does to the GCS
    gcs.wait()
    assert wait_until(lambda: not alive(server) and not alive(child), 15)
    assert not (home / "mlflow" / "service.pid").exists()
    log = (home / "mlflow" / "server.log").read_text()
    assert "fake_gcs" in log and "stopping MLflow" in log


def test_a_second_start_replaces_the_first_server(head, wait_until):
    home, _, env = head
    config = load("cluster-local.yaml")
    assert start_mlflow(config, env).returncode == 0
    first = mlflow_pids(home, wait_until)
    (home / "mlflow.pids").unlink()
    assert start_mlflow(config, env).returncode == 0  # `ray up` again: one server, the new one
    second = mlflow_pids(home, wait_until)
    assert not any(alive(pid) for pid in first) and all(alive(pid) for pid in second)
    service = int((home / "mlflow" / "service.pid").read_text())
    assert alive(service) and service not in first + second  # the watcher, a process apart
    assert os.getpgid(second[0]) == second[0]  # the group it stops, the server's own


def test_mlflow_does_not_start_without_ray(tmp_path):
    done = script("mlflow-service.sh", "true", home=tmp_path,
                  RESNET_SEARCH_MLFLOW_WATCH="no_such_process")
    assert done.returncode == 1 and "start Ray first" in done.stderr
    assert not (tmp_path / "mlflow" / "service.pid").exists()


# --- the database step's way to the head -----------------------------------------------------

def test_the_provisioning_step_reaches_the_head_as_ray_exec_does():
    """deploy/cluster/postgres_provision.py finds the head's address, user and key through
    Ray's own functions (the run itself: tests/cluster/test_postgres_user.py); they must exist,
    with the argument that accepts a head whose first setup stopped."""
    import inspect

    from ray.autoscaler._private import commands
    from ray.autoscaler._private.command_runner import SSHOptions

    assert callable(commands._bootstrap_config)
    head = inspect.signature(commands._get_running_head_node)
    assert "_allow_uninitialized_state" in head.parameters
    options = SSHOptions("/k").to_ssh_options_list(timeout=60)
    assert options[:2] == ["-i", "/k"] and "-tt" not in options  # stdin is not a terminal
    text = (CLUSTER / "postgres_provision.py").read_text()
    assert "_allow_uninitialized_state=True" in text and "-tt" not in text
