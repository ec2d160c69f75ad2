"""The tracking benchmark records a real trial through the search's own tracker."""

import mlflow

from bench.common import parse_figures
from bench.tracking_share import main, track
from bench.trial_vs_bare import make_plan, platform_trial
from search.trial import load_trial_data


def test_tracker_records_the_trial_as_a_search_does(tmp_path):
    plan = make_plan("smoke", epochs=2)
    data = load_trial_data(plan.recipe, "digits")
    work = tmp_path / "trials" / "0000-s0"
    history = platform_trial(plan, data, out_dir=str(work))["result"].history
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    seconds = track(uri, work, history, plan, store)
    assert len(seconds["epochs"]) == 2 and seconds["trial"] > 0
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("resnet-search").experiment_id])
    child = next(r for r in runs if "mlflow.parentRunId" in r.data.tags)
    assert child.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(child.info.run_id, "epoch")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"metrics.jsonl", "final_metrics.json"} <= artifacts


def test_script_prints_the_share(capsys):
    assert main(["--scale", "smoke", "--dataset", "digits", "--epochs", "1",
                 "--no-server"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    share, unit = figures["tracking_share.sqlite.share"]
    assert float(share) > 0 and unit.startswith("%")
    assert "tracking_share.server.share" not in figures
