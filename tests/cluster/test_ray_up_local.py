"""deploy/local-up.sh: `ray up cluster-local.yaml` for real on this machine (docs/cluster.md,
"ray up on this machine").

The fast pieces run wherever the machine allows (root, Linux namespaces, Debian's sshd and rsync
installed): the node account, the cluster's token and key, build/cluster, the filled-in cluster
file (checked with Ray's own validation), both sshds in their namespaces with one SSH login to
each, and the cleanup. About 10 s; it uses an account and a state directory of its own and
removes both (`--purge`).

The whole run (`ray up`, a smoke search through `ray job submit`, MLflow and Optuna checked,
`ray down`, nothing left) takes about 6 minutes once the nodes' virtual environment exists (347 s
in docs/cluster.md's run), and about 8 more the first time (it fills the wheelhouse, 3.2 GB, and
installs the venv); that is over a test's 3 minutes, so it is run by hand, `bash
deploy/local-up.sh --worktree`, and its output is in docs/cluster.md.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local-up.sh"


def namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount", "--mount-proc",
                               "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


needs_machine = pytest.mark.skipif(
    not (sys.platform == "linux" and os.geteuid() == 0 and Path("/usr/sbin/sshd").exists()
         and shutil.which("rsync") and shutil.which("setpriv") and namespaces_work()),
    reason="needs root on Linux, namespaces (unshare), openssh-server and rsync",
)


def run_script(*args: str, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


def test_the_script_refuses_unknown_arguments():
    answer = subprocess.run(["bash", str(SCRIPT), "--nope"], capture_output=True, text=True)
    assert answer.returncode == 2 and "usage: local-up.sh" in answer.stderr


@needs_machine
def test_fast_pieces():
    # Short paths: the sshd configuration and the nodes' /tmp live here.
    state = Path("/var/tmp") / f"rsl-test-{os.getpid()}"
    env = {"RESNET_SEARCH_LOCAL_STATE": str(state), "RESNET_SEARCH_LOCAL_USER": "rsltest",
           "RAY": ray_cli()}
    try:
        done = run_script("--prepare", "--worktree", env=env, timeout=300)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out
        for line in ["rsltest@10.77.0.1: ", "rsltest@10.77.0.2: ",
                     "no process of rsltest is left on this machine", "done: prepared in"]:
            assert line in out, out
        # Each step prints its time.
        assert out.count("<== ") >= 9, out

        filled = state / "ctl" / "cluster-local.yaml"
        config = yaml.safe_load(filled.read_text())
        assert config["provider"]["head_ip"] == "10.77.0.1"
        assert config["provider"]["worker_ips"] == ["10.77.0.2"]
        assert config["auth"]["ssh_user"] == "rsltest"
        assert "YOUR_" not in yaml.safe_dump(config)
        # Ray's own validation of the filled-in file.
        from ray.autoscaler._private.util import prepare_config, validate_config
        validate_config(prepare_config(config))
        # What file_mounts copy: the wheel, its hash, the node scripts and the lock.
        cluster = state / "ctl" / "build" / "cluster"
        assert (cluster / "project.txt").read_text().startswith("./resnet_search-")
        assert (cluster / "deploy" / "cluster" / "install.sh").exists()
        # The token and the key are the cluster's, 0600, not the caller's.
        home = state / "ctl" / "home"
        for secret in [home / ".ray" / "auth_token", home / ".ssh" / "resnet-search-cluster"]:
            assert secret.stat().st_mode & 0o777 == 0o600, secret
    finally:
        purged = run_script("--purge", env=env, timeout=120)
        assert purged.returncode == 0, purged.stdout + purged.stderr
    assert not state.exists()
    assert subprocess.run(["getent", "passwd", "rsltest"], capture_output=True).returncode == 2
