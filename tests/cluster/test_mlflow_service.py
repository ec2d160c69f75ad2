"""MLflow on the head as a checked service (issue 24, item 4), with a real `mlflow server`.

The head's own start commands from cluster-local.yaml run here, on 127.0.0.1 and a free port,
under deploy/cluster/mlflow-service.sh's restart loop (the supervisor wherever systemd does not
run the machine, as here), with a stand-in for Ray's GCS process (`ray stop` here would stop
every Ray on this machine). A killed server comes back and answers /health again; a server that
cannot start makes the start step exit non-zero with the server's last log lines. The systemd
unit used on the AWS image is checked as text: no systemd runs here.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "deploy" / "cluster" / "mlflow-service.sh"
BIN = Path(sys.executable).parent  # the virtual environment's `mlflow`


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def head_commands(name: str, port: int, backend: str | None = None) -> tuple[str, str]:
    """The cluster file's MLflow start and /health wait commands, on `port` instead of 5000."""
    config = yaml.safe_load((REPO / name).read_text())
    commands = config["head_start_ray_commands"]
    (start,) = [c for c in commands if "mlflow server" in c]
    (wait,) = [c for c in commands if "mlflow-service.sh wait" in c]
    assert commands.index(wait) == commands.index(start) + 1  # ray up waits right after
    assert "--port 5000" in start and wait.endswith("http://127.0.0.1:5000")
    start = start.replace("--port 5000", f"--port {port}")
    if backend is not None:
        start = re.sub(r"--backend-store-uri \S+", f"--backend-store-uri {backend}", start)
    # One web worker: the test's two cores start it faster; the supervision is the same.
    start = start.replace(" mlflow server ", " mlflow server --workers 1 ")
    return start, wait.replace(":5000", f":{port}")


def health(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def started_pids(home: Path) -> list[int]:
    log = home / "mlflow" / "server.log"
    text = log.read_text() if log.exists() else ""
    return [int(p) for p in re.findall(r"started `.*?` \(pid (\d+)\)", text)]


@pytest.fixture
def head(tmp_path):
    """A head's home: the checkout at ~/resnet-search, the environment file putting this
    virtual environment's `mlflow` on PATH, and a stand-in for Ray's GCS process."""
    (tmp_path / "resnet-search").symlink_to(REPO)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fake_gcs").symlink_to("/bin/sleep")
    (tmp_path / ".resnet-search.env").write_text(f'export PATH="{BIN}:$PATH"\n')
    gcs = subprocess.Popen([str(bin_dir / "fake_gcs"), "1000"])
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "RESNET_SEARCH_MLFLOW_WATCH": "fake_gcs",
           "RESNET_SEARCH_MLFLOW_SUPERVISOR": "loop"}
    yield tmp_path, env
    subprocess.run(["bash", str(SERVICE), "stop"], env=env, timeout=60)
    gcs.kill()
    gcs.wait()
    for pid in started_pids(tmp_path):  # a failed test leaves no server behind either
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run(command: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], env=env, cwd=env["HOME"], capture_output=True,
                          text=True, timeout=timeout)


def test_a_killed_server_is_restarted_and_answers_health_again(head, wait_until):
    home, env = head
    port = free_port()
    start, wait = head_commands("cluster-local.yaml", port)
    done = run(start, env)
    assert done.returncode == 0, done.stderr
    done = run(wait, env)
    assert done.returncode == 0, done.stderr + (home / "mlflow" / "server.log").read_text()
    assert health(port)
    (first,) = started_pids(home)

    os.kill(first, signal.SIGKILL)  # the server dies; its web workers would hold the port
    assert wait_until(lambda: not health(port), 20)
    assert wait_until(lambda: len(started_pids(home)) == 2, 30), (
        (home / "mlflow" / "server.log").read_text())
    done = run(wait, env)
    assert done.returncode == 0, done.stderr
    assert health(port)
    second = started_pids(home)[1]
    assert second != first and os.getpgid(second) == second
    log = (home / "mlflow" / "server.log").read_text()
    assert "the server exited (status 137, 1 time(s)" in log


def test_a_server_that_cannot_start_fails_the_start_step_with_its_log(head):
    home, env = head
    port = free_port()
    start, wait = head_commands("cluster-local.yaml", port, backend="bogus://nowhere")
    assert run(start, env).returncode == 0  # the supervisor starts; the server is its business
    began = time.monotonic()
    # Give up at the first exit (default: the third), to keep the test short; the count is
    # the same code either way.
    done = run(wait, {**env, "RESNET_SEARCH_MLFLOW_START_TRIES": "1"})
    assert done.returncode != 0
    assert time.monotonic() - began < 120  # it gave up on the exit, not on the 300 s
    assert "exited 1 time(s)" in done.stderr
    # The server's own last words, so that `ray up`'s output says what is wrong.
    assert "bogus://nowhere" in done.stderr and "last lines" in done.stderr
    assert not health(port)


def test_the_health_wait_fails_without_a_server(tmp_path):
    port = free_port()
    done = subprocess.run(["bash", str(SERVICE), "wait", f"http://127.0.0.1:{port}", "2"],
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "within 2 s" in done.stderr


def test_the_aws_head_runs_mlflow_under_a_restarting_systemd_unit(tmp_path):
    """On the AWS image (systemd, password-less sudo) the same start command installs this unit;
    its restart policy never gives up, and the /health wait reports a broken server."""
    done = subprocess.run(["bash", str(SERVICE), "unit"], capture_output=True, text=True,
                          env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=30)
    assert done.returncode == 0, done.stderr
    unit = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line
                and not line.startswith("#"))
    assert unit["Restart"] == "always" and unit["StartLimitIntervalSec"] == "0"
    assert unit["ExecStart"] == f"/bin/bash {tmp_path}/mlflow/server.sh"
    assert unit["StandardOutput"] == f"append:{tmp_path}/mlflow/server.log"
    assert unit["KillMode"] == "control-group"  # the web workers go with the server
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    (start,) = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    assert "RESNET_SEARCH_MLFLOW_SUPERVISOR" not in start  # auto: systemd on the AWS image
    local = yaml.safe_load((REPO / "cluster-local.yaml").read_text())
    (start,) = [c for c in local["head_start_ray_commands"] if "mlflow server" in c]
    assert "RESNET_SEARCH_MLFLOW_SUPERVISOR=loop" in shlex.split(start)  # tied to Ray's stop
