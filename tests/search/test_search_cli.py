"""`resnet-search run` against a real `mlflow server`; `list-spaces` and `ui`."""

import os
import subprocess
import time

import mlflow
import optuna
import requests

from search.cli import main


def test_search_tracks_to_an_mlflow_server(tmp_path, mlflow_server, cli):
    """The stores come from the environment, as on a cluster's nodes (cluster.yaml sets them)."""
    mlflow_server = mlflow_server.uri
    studies = f"sqlite:///{tmp_path / 'elsewhere' / 'studies.db'}"
    (tmp_path / "elsewhere").mkdir()
    env = {**os.environ, "RESNET_SEARCH_TRACKING_URI": mlflow_server,
           "RESNET_SEARCH_OPTUNA_STORAGE": studies}
    done = cli("run", "paper-table1", "--scale", "smoke", "--trials", 3, "--concurrency", 2,
               "--scheduler", "none", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert mlflow_server in done.stdout
    assert f"optuna-dashboard {studies}" in done.stdout
    trials = optuna.load_study(study_name="paper-table1-smoke", storage=studies).trials
    assert sum(t.state.is_finished() for t in trials) == 3  # the rest: anchors never asked
    assert not (tmp_path / "results" / "optuna.db").exists()
    assert "View run" not in done.stdout  # MLflow's own link per run: off (quiet by default)
    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("resnet-search")
    runs = client.search_runs([experiment.experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 4 and len(children) == 3
    for run_ in children:
        assert len(client.get_metric_history(run_.info.run_id, "train/loss")) == 3
        # No scheduler, default --validate-every 0: validated after the last epoch only.
        assert [m.step for m in client.get_metric_history(run_.info.run_id, "val/error")] == [3]
        artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
        assert {"learning_curve.png", "propagation.png", "final_metrics.json"} <= artifacts
    assert not (tmp_path / "results" / "mlflow.db").exists()  # the server holds the runs
    # Written again without the variable, the report still reads the study the search used.
    del env["RESNET_SEARCH_OPTUNA_STORAGE"]
    again = cli("report", "paper-table1-smoke", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    report = (tmp_path / "results" / "searches" / "paper-table1-smoke" / "report.md").read_text()
    assert f"Importance from the Optuna study 'paper-table1-smoke' ({studies})" in report


def test_list_spaces_needs_no_search(capsys):
    assert main(["list-spaces"]) == 0
    assert "paper-table1" in capsys.readouterr().out


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
        assert ui.stdout.readline().strip() == (  # the model-training view, not GenAI's
            f"experiment resnet-search: http://127.0.0.1:{port}/#/experiments/{experiment}"
            "/runs?workflowType=machine_learning")
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
