"""`resnet-search run` against a real `mlflow server`, and its bad inputs."""

import os
import subprocess
import time

import mlflow
import pytest
import requests

from search.cli import main


def test_search_tracks_to_an_mlflow_server(tmp_path, mlflow_server, cli):
    mlflow_server = mlflow_server.uri
    done = cli("run", "paper-table1", "--scale", "smoke", "--trials", 2, "--concurrency", 2,
               "--tracking-uri", mlflow_server, "--scheduler", "none", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert mlflow_server in done.stdout
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("resnet-search")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and len(children) == 2
    for run_ in children:
        assert len(client.get_metric_history(run_.info.run_id, "val/error")) == 3
        artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
        assert {"learning_curve.png", "propagation.png", "final_metrics.json"} <= artifacts
    assert not (tmp_path / "results" / "mlflow.db").exists()  # the server holds the runs


BAD = [
    (["paper-table9"], "space 'paper-table9' is unknown"),
    (["missing.py:space"], "does not exist"),
    (["paper-table1", "--sampler", "bayes"], "invalid choice: 'bayes'"),
    (["paper-table1", "--scheduler", "hyperband"], "invalid choice: 'hyperband'"),
    (["paper-table1", "--trials", "0"], "0 is invalid; allowed: an integer >= 1"),
    (["paper-table1", "--cpus-per-trial", "-1"], "-1 is invalid; allowed: a number > 0"),
    (["paper-table1", "--gpus-per-trial", "1.5"], "gpus_per_trial=1.5 is invalid"),
    (["paper-table1", "--address", "nowhere"], "address='nowhere' is invalid"),
    (["paper-table1", "--tracking-uri", "ftp://x"], "tracking_uri='ftp://x' is invalid"),
    (["paper-table1", "--dataset", "cifar10", "--data-dir", "no-such-dir"], "no-such-dir"),
    (["paper-table1", "--dataset", "mnist"], "dataset='mnist' is unknown"),
    (["paper-table1", "--scale", "huge"], "invalid choice: 'huge'"),
    (["paper-table1", "--reduction-factor", "1"], "reduction_factor=1 is invalid"),
]


@pytest.mark.parametrize("args, expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_run_input_is_one_line_exit_2_and_nothing_written(tmp_path, monkeypatch, capsys,
                                                               args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["run", *args, "--scale" if "--scale" not in args else "--seeds",
                 "smoke" if "--scale" not in args else "1"]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []


def test_grid_without_anchors_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain.py").write_text(
        "from spaces import SearchSpace\n"
        "def define(trial):\n"
        "    trial.suggest_categorical('activation', ['original', 'full_preact'])\n"
        "plain = SearchSpace('plain', define)\n")
    assert main(["run", "plain.py:plain", "--sampler", "grid", "--scale", "smoke"]) == 2
    assert "sampler='grid' needs anchors" in capsys.readouterr().err
    assert "results" not in {p.name for p in tmp_path.iterdir()}


def test_list_spaces_and_ui_need_no_search(tmp_path, capsys):
    assert main(["list-spaces"]) == 0
    assert "paper-table1" in capsys.readouterr().out
    assert main(["ui", "--results-dir", str(tmp_path)]) == 2
    assert "holds no MLflow store" in capsys.readouterr().err


def test_ui_serves_the_default_store(tmp_path, cli, free_port):
    results = tmp_path / "results"
    results.mkdir()
    store = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    experiment = store.create_experiment("resnet-search")
    store.create_run(experiment, run_name="a-search")
    port = free_port
    ui = cli("ui", "--results-dir", results, "--port", port, cwd=tmp_path,
             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first_line = ui.stdout.readline()
        assert f"at http://127.0.0.1:{port}" in first_line
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                response = requests.post(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
                    json={"experiment_ids": [experiment]}, timeout=2)
                if response.status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        assert response.json()["runs"][0]["info"]["run_name"] == "a-search"
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(30)
