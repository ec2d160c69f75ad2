"""Shared helpers for the search tests: a user's space file, the CLI, and the stores."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import mlflow
import optuna
import pytest
import requests

from bench.sim_cluster import kill_session, session_pids

USER_SPACE = textwrap.dedent('''
    from spaces import SearchSpace

    def define(trial):
        shortcut = trial.suggest_categorical("shortcut", ["identity", "shortcut_gate"])
        if shortcut == "shortcut_gate":
            trial.suggest_float("gate_bias", -8.0, 0.0)
        trial.suggest_categorical("activation", ["original", "full_preact"])

    # The second anchor diverges: a learning rate of a million turns the loss into NaN.
    my_space = SearchSpace("my-space", define, anchors=[
        {"shortcut": "identity", "activation": "full_preact"},
        {"shortcut": "identity", "activation": "original", "lr": 1e6},
    ])
''')


@pytest.fixture
def sessions():
    """The processes of a session (`pids`), and `kill`: what a Ray node started in a session of
    its own leaves behind is in that session, and only it is."""
    return SimpleNamespace(pids=session_pids, kill=kill_session)  # bench.sim_cluster's


@pytest.fixture(scope="session")
def cifar_archive():
    """The real CIFAR-10 as JPEGs, beside the checkout (`../shared/data`, as on CI)."""
    default = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpg.tar.gz"
    archive = Path(os.environ.get("RESNET_SEARCH_CIFAR_JPEG", default))
    assert archive.exists(), f"the CIFAR-10 JPEG archive is missing: {archive} (set " \
        "RESNET_SEARCH_CIFAR_JPEG to its path)"
    return archive


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "my_spaces.py"
    path.write_text(USER_SPACE)
    return path


@pytest.fixture
def free_port():
    """A TCP port nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 that a test can kill and start again (same port,
    same store)."""

    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{port}"
        self.store = root / "server.db"
        self.process = None

    def start(self) -> "MlflowServer":
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port",
             str(self.port), "--backend-store-uri", f"sqlite:///{self.store}",
             "--artifacts-destination", str(self.root / "server-artifacts"), "--workers", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the clients."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def mlflow_server(tmp_path, free_port):
    server = MlflowServer(tmp_path, free_port).start()
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.kill()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def read_until():
    return read_lines_until


@pytest.fixture
def mlflow_runs():
    return read_mlflow_runs


@pytest.fixture
def study():
    return load_study


@pytest.fixture
def one_truth():
    return assert_one_truth


def run_cli(*args, cwd, timeout=600, env=None, **popen):
    """Run `resnet-search ARGS` as a user would, in `cwd`."""
    env = {**(env or os.environ), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "search.cli", *map(str, args)]
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=env, text=True, **popen)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def read_lines_until(process, done, seconds=300) -> list[str]:
    """The lines `process` printed until `done(lines)` holds (or `seconds` passed, or it
    exited); the caller asserts what it waited for."""
    lines, deadline = [], time.time() + seconds
    for line in process.stdout:
        lines.append(line)
        if done(lines) or time.time() > deadline:
            break
    return lines


def read_mlflow_runs(results):
    """(parent runs, child runs) of the default SQLite store under `results`."""
    client = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("resnet-search")
    runs = client.search_runs([experiment.experiment_id], max_results=10_000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def load_study(results, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{results / 'optuna.db'}")


def assert_one_truth(results: Path, name: str, budget: int, errors_final: bool = False) -> None:
    """Every trial's state agrees in Ray, MLflow and Optuna (README, "One truth across Ray,
    Optuna and MLflow"), nothing is left RUNNING, and every told configuration has the whole
    curve its seed 0 reported. `errors_final`: the search ran with --give-up-errored."""
    from optuna.trial import TrialState
    from ray.tune import ExperimentAnalysis

    from search.trial import read_metrics

    client, _, children = read_mlflow_runs(results)
    runs = {r.data.tags["run_key"]: r for r in children}
    for key, run_ in runs.items():
        outcome = run_.data.tags["outcome"]
        expected = "FAILED" if outcome == "error" else "FINISHED"
        assert run_.info.status == expected and outcome != "running", (key, outcome)
    # A trial Tune cut short ran again in an experiment of its own: its last word counts. A
    # race's rounds are experiments of their own too (`<name>-race-s<seed>`).
    experiments = [results / "ray" / name, results / "ray" / f"{name}-again",
                   *sorted((results / "ray").glob(f"{name}-race-s*")),
                   results / "ray" / f"{name}-race-again"]
    ray_trials = [trial for experiment in experiments if experiment.exists()
                  for trial in ExperimentAnalysis(str(experiment)).trials]
    ray_outcome = {t.config["run_key"]: "error" if t.status == "ERROR" else
                   (t.last_result or {}).get("outcome") for t in ray_trials}
    for key, run_ in runs.items():
        outcome = run_.data.tags["outcome"]
        if key not in ray_outcome:  # a race round that ran again started its experiment anew:
            # the run's own directory keeps its end (search.rounds.fit_runs)
            assert run_.data.tags["stage"] != "search", key
            result = results / "searches" / name / "trials" / key / "result.json"
            assert json.loads(result.read_text())["outcome"] == outcome, key
            continue
        assert ray_outcome[key] == ("running" if outcome == "stopped" else outcome), key
    by_number = {}
    for run_ in runs.values():
        by_number.setdefault(int(run_.data.tags["optuna_trial"]), []).append(run_)
    trials = load_study(results, name).trials
    for number, seeds in by_number.items():
        trial = trials[number]
        outcomes = {r.data.tags["outcome"] for r in seeds}
        if outcomes & {"ok", "diverged"}:
            assert trial.state == TrialState.COMPLETE, (number, outcomes, trial.state)
        elif "error" in outcomes and errors_final:
            assert trial.state == TrialState.FAIL and not trial.user_attrs["errored"], number
        elif "error" in outcomes:
            assert trial.state == TrialState.RUNNING and trial.user_attrs["errored"], number
        else:
            assert trial.state == TrialState.PRUNED, (number, outcomes, trial.state)
        seed0 = next(r for r in seeds if r.data.tags["seed"] == "0")
        epochs = sorted(m.step for m in client.get_metric_history(seed0.info.run_id, "epoch"))
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) <= budget
        if trial.state.is_finished():  # every epoch seed 0 measured its objective at
            records = read_metrics(results / "searches" / name / "trials" /
                                   seed0.data.tags["run_key"])
            measured = {m["epoch"] for m in records if "objective" in m}
            assert sorted(trial.intermediate_values) == sorted(measured), number
