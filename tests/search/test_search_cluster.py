"""`--address`: a search joins a running two-node Ray cluster (token auth on) and its trials
run on both nodes; cluster.yaml is a valid Ray cluster launcher config."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from ray.tune import ExperimentAnalysis

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_node_cluster(tmp_path, free_port):
    """A head and a worker node on this machine, in a temp dir of their own."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port
    # A short path of its own: Ray's socket names have a length limit, and the processes
    # under it are this cluster's alone.
    temp = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    common = ["--num-cpus", "1", "--disable-usage-stats", f"--temp-dir={temp}"]
    groups = []

    def ray_start(*args):
        # In a session of its own, so every daemon it leaves behind is in one process group.
        process = subprocess.Popen([RAY, "start", *args, *common], env=env,
                                   start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        groups.append(process.pid)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output[-2000:]

    try:
        ray_start("--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                  "--include-dashboard=false")
        ray_start("--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1")
        yield f"127.0.0.1:{port}", env
    finally:
        # Not `ray stop`: it would stop every Ray on the machine. Only this cluster's processes.
        for group in groups:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp, ignore_errors=True)


def test_search_joins_a_running_cluster(tmp_path, two_node_cluster, cli):
    address, env = two_node_cluster
    done = cli("run", "paper-table1", "--scale", "smoke", "--trials", 4, "--address", address,
               "--scheduler", "none", "--name", "on-cluster", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    analysis = ExperimentAnalysis(str(tmp_path / "results" / "ray" / "on-cluster"))
    frame = analysis.dataframe()
    assert len(frame) == 4 and set(frame["outcome"]) <= {"ok", "diverged"}
    # Two nodes with one CPU each: two trials ran at once, one per node.
    assert frame["pid"].nunique() >= 2


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(fillout_defaults(config))
    head = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in head and "RAY_AUTH_MODE=token ray start --head" in head
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"]
               if "ray " in c)
    assert "~/.ray/auth_token" in config["file_mounts"]
