"""`--address`: a search joins a running two-node Ray cluster (token auth on) and its trials
run on both nodes; cluster.yaml is a valid Ray cluster launcher config."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from ray.tune import ExperimentAnalysis

RAY = str(Path(sys.executable).with_name("ray"))
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_node_cluster(tmp_path, free_port, sessions):
    """A head and a worker node on this machine, in a temp dir of their own."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port
    # A short path of its own: Ray's socket names have a length limit, and the processes
    # under it are this cluster's alone.
    temp = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))
    common = ["--num-cpus", "1", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = []

    def ray_start(*args):
        # In a session of its own: every process it leaves behind, daemons and workers, is in
        # that session, and only they are.
        process = subprocess.Popen([RAY, "start", *args, *common], env=env,
                                   start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        started.append(process.pid)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output[-2000:]

    try:
        ray_start("--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                  "--include-dashboard=false")
        ray_start("--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1")

        def kill_worker_node():
            sessions.kill(started[1])

        def worker_node_dirs():
            """The working directories of the worker node's processes: a trial's actor
            runs in its Ray trial directory."""
            dirs = []
            for pid in sessions.pids(started[1]):
                try:
                    dirs.append(os.readlink(f"/proc/{pid}/cwd"))
                except OSError:
                    pass  # ended meanwhile
            return dirs

        yield SimpleNamespace(address=f"127.0.0.1:{port}", env=env,
                              kill_worker_node=kill_worker_node,
                              worker_node_dirs=worker_node_dirs)
    finally:
        # Not `ray stop`: it would stop every Ray on the machine. Only this cluster's processes.
        for session in started:
            sessions.kill(session)
        shutil.rmtree(temp, ignore_errors=True)


# `resnet-search run ARGS` whose dataset path is deleted as soon as the driver has staged it
# (`runner.prepare` loaded it): trials on any node must get the data from Ray's object store.
RUN_THEN_DELETE_THE_DATA = """
import shutil, sys
import search.runner
from search.cli import main

prepare = search.runner.prepare

def prepare_then_delete(space, config):
    prepared = prepare(space, config)
    shutil.rmtree(config.dataset.removeprefix("imagefolder:"))
    return prepared

search.runner.prepare = prepare_then_delete
sys.exit(main(sys.argv[1:]))
"""


def _tiny_imagefolder(root: Path) -> Path:
    """train/ and test/ of 3 classes of random 8x8 PNGs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for label in ("a", "b", "c"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_search_joins_a_running_cluster(tmp_path, two_node_cluster):
    address, env = two_node_cluster.address, two_node_cluster.env
    data = _tiny_imagefolder(tmp_path / "images")
    done = subprocess.run(
        [sys.executable, "-c", RUN_THEN_DELETE_THE_DATA, "run", "paper-table1", "--scale",
         "smoke", "--trials", "4", "--address", address, "--scheduler", "none", "--name",
         "on-cluster", "--dataset", f"imagefolder:{data}", "--cache-dir",
         str(tmp_path / "cache")],
        cwd=tmp_path, env={**env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
        timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not data.exists()
    analysis = ExperimentAnalysis(str(tmp_path / "results" / "ray" / "on-cluster"))
    frame = analysis.dataframe()
    assert len(frame) == 4 and set(frame["outcome"]) <= {"ok", "diverged"}
    # Two nodes with one CPU each: two trials ran at once, one per node.
    assert frame["pid"].nunique() >= 2


def test_lost_worker_node_then_a_rerun_trains_errored_trials_to_their_budget(
        tmp_path, two_node_cluster, cli, one_truth):
    """--max-failures 0: the trial on a node that dies ends in error; running the search again
    resumes it from its checkpoint to the full budget, and Ray, MLflow and Optuna agree.

    The node dies as soon as its own trial has recorded epoch 1: often between the report and
    the checkpoint Tune then asks for, where Tune parks a STOP for that trial and writes it
    into the experiment state (what cut a resumed trial short; see search/tune_fixes.py)."""
    # Enough epochs that a fast machine (0.1 s per smoke epoch) cannot finish a trial between
    # its first recorded epoch and the kill.
    epochs = 20
    args = ["run", "paper-table2", "--scale", "smoke", "--trials", 2, "--concurrency", 2,
            "--epochs", epochs, "--scheduler", "none", "--max-failures", 0, "--name", "lost",
            "--address", two_node_cluster.address]
    driver = cli(*args, cwd=tmp_path, env=two_node_cluster.env, stdout=subprocess.PIPE,
                 stderr=subprocess.STDOUT)
    trials = tmp_path / "results" / "searches" / "lost" / "trials"
    deadline = time.time() + 300
    while not _recorded_an_epoch(trials, two_node_cluster.worker_node_dirs()):
        assert time.time() < deadline and driver.poll() is None, "no worker trial at epoch 1"
        time.sleep(0.01)
    two_node_cluster.kill_worker_node()
    assert not list(trials.glob("*/result.json")), "a trial ended before the kill"
    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 3, out[-3000:]  # not finished
    assert "ended in error; run the same command again to resume it" in out
    state = max((tmp_path / "results" / "ray" / "lost").glob("experiment_state-*.json"))
    # Whether this run hit the race: a loop of this test (bench.under_load) counts them.
    print("parked decisions:", json.loads(state.read_text())["runner_data"].get(
        "_cached_trial_decisions"))

    rerun = cli(*args, cwd=tmp_path, env=two_node_cluster.env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for path in trials.glob("*/metrics.jsonl"):  # every trial, errored or not, to its end
        assert path.read_text().count("\n") == epochs, path
    assert "ended short of their budget" not in rerun.stdout, rerun.stdout[-3000:]
    assert not (tmp_path / "results" / "ray" / "lost-again").exists()
    one_truth(tmp_path / "results", "lost", epochs)


def _recorded_an_epoch(trials: Path, worker_node_dirs: list[str]) -> bool:
    """Whether a trial running on the worker node (its actor's working directory is the Ray
    trial directory, named for the trial's key) has recorded an epoch."""
    for cwd in worker_node_dirs:
        metrics = trials / Path(cwd).name.rsplit("-", 1)[0] / "metrics.jsonl"
        if metrics.exists() and metrics.stat().st_size:
            return True
    return False


def test_cuda_on_a_cluster_without_gpus_is_refused(tmp_path, two_node_cluster, cli):
    address, env = two_node_cluster.address, two_node_cluster.env
    work = tmp_path / "work"
    work.mkdir()
    done = cli("run", "paper-table1", "--scale", "smoke", "--address", address, "--device",
               "cuda", cwd=work, env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"resnet-search: error: device='cuda' is unavailable: the "
                                   f"Ray cluster at {address} has no GPU; allowed: auto | cpu")
    assert list(work.iterdir()) == []  # no results directory, so no MLflow run


def test_cluster_yaml_is_a_valid_ray_cluster_config():
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(fillout_defaults(config))
    head = " ".join(config["head_start_ray_commands"])
    assert "mlflow server" in head and "RAY_AUTH_MODE=token ray start --head" in head
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"]
               if "ray " in c)
    assert "~/.ray/auth_token" in config["file_mounts"]
