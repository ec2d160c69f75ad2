"""Searches end to end on a real local Ray, a real Optuna study and a real MLflow store."""

import math
from dataclasses import replace

import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState
from ray.tune import ExperimentAnalysis
from scipy import stats

from search import SearchConfig, run
from search.ranking import read
from search.trial import read_metrics

EPOCHS = 3


def test_user_space_search_from_the_command_line(tmp_path, space_file, cli, mlflow_runs,
                                                 study):
    """6 trials, 2 at a time, of a space defined in the user's own file; one diverges."""
    done = cli("run", f"{space_file}:my_space", "--scale", "smoke", "--trials", 6,
               "--concurrency", 2, "--scheduler", "none", "--name", "mine", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ranking:" in done.stdout and "resnet8-identity-full_preact" in done.stdout
    # Quiet by default: the search's own lines, not Tune's box or MLflow's store messages;
    # at the end, where everything is and how to open it.
    assert "Configuration for experiment" not in done.stdout and "TensorBoard" not in done.stdout
    assert " INFO " not in done.stderr, done.stderr[-2000:]
    assert "resnet-search ui --results-dir" in done.stdout and "optuna-dashboard" in done.stdout
    results = tmp_path / "results"

    client, parents, children = mlflow_runs(results)
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.data.tags["space_source"].endswith("my_spaces.py:my_space")
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "ranking.csv", "ranking.md", "trials.csv", "space", "report.html", "report.md"}
    # The report ends the search: its verdict on the terminal and as the run's description.
    assert "report: " in done.stdout and "report.html" in done.stdout
    assert parent.data.tags["mlflow.note.content"].strip()
    by_number = {int(r.data.tags["optuna_trial"]): r for r in children}
    trials = [t for t in study(results, "mine").trials if "duplicate_of" not in t.user_attrs]
    assert sorted(by_number) == [t.number for t in trials]  # a repeat is not trained again
    assert len({r.data.tags["configuration_key"] for r in children}) == 6
    spans = sorted((r.info.start_time, r.info.end_time) for r in children)
    overlapping = sum(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert overlapping >= 2, f"trials ran one at a time: {spans}"
    for run_ in children:
        assert run_.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run_.data.params["shortcut"] in ("identity", "shortcut_gate")
        assert ("gate_bias" in run_.data.params) == (run_.data.params["shortcut"]
                                                     == "shortcut_gate")
        assert run_.data.tags["outcome"] in ("ok", "diverged")
        history = client.get_metric_history(run_.info.run_id, "train/loss")
        expected_epochs = EPOCHS if run_.data.tags["outcome"] == "ok" else 1
        assert sorted(m.step for m in history) == list(range(1, expected_epochs + 1))
        artifacts = {a.path for a in client.list_artifacts(run_.info.run_id)}
        assert {"learning_curve.png", "propagation.png", "final_metrics.json",
                "metrics.jsonl"} <= artifacts

    # The anchors ran first, exactly; the diverging one is a result everywhere.
    assert len(trials) == 6
    assert all(t.state == TrialState.COMPLETE and math.isfinite(t.value) for t in trials)
    assert trials[0].params == {"shortcut": "identity", "activation": "full_preact"}
    assert trials[1].user_attrs["params"]["lr"] == 1e6
    assert trials[1].value == 1.0 and trials[1].user_attrs["outcomes"] == ["diverged"]
    assert by_number[1].data.tags["outcome"] == "diverged"
    assert by_number[1].data.params["lr"] == "1000000.0"
    analysis = ExperimentAnalysis(str(results / "ray" / "mine"))
    assert [t.status for t in analysis.trials] == ["TERMINATED"] * 6  # none errored
    # Tune's per-trial files, less its TensorBoard events (written per result in its loop).
    ray_dirs = [p for p in (results / "ray" / "mine").iterdir() if p.is_dir()]
    assert len(ray_dirs) == 6 and all((d / "result.json").is_file() for d in ray_dirs)
    assert not list((results / "ray" / "mine").rglob("events.out.tfevents*"))
    ray_trials = analysis.dataframe()
    diverged = ray_trials[ray_trials["config/optuna_trial"] == 1]
    assert list(diverged["outcome"]) == ["diverged"]

    ranking = (results / "searches" / "mine" / "ranking.csv").read_text().splitlines()
    assert len(ranking) == 7 and "diverged" in ranking[-1]


def _asha_space():
    from spaces import SearchSpace

    def define(trial):
        trial.suggest_float("lr", 1e-5, 0.1, log=True)

    # Run one at a time: the good anchor fills ASHA's rungs, the hopeless ones fall below them.
    return SearchSpace("asha-space", define, fixed={"activation": "full_preact"},
                       anchors=[{"lr": 0.1}, {"lr": 1e-5}, {"lr": 2e-5}])


def test_asha_stops_hopeless_trials_and_records_them_as_stopped(tmp_path, mlflow_runs, study):
    config = SearchConfig(name="asha", scale="smoke", trials=3, concurrency=1, epochs=4,
                          scheduler="asha", grace_period=1, reduction_factor=2,
                          results_dir=str(tmp_path / "results"), progress=False)
    result = run(_asha_space(), config)
    outcomes = dict(zip(result.trials["optuna_trial"], result.trials["outcome"]))
    assert outcomes[0] == "ok"
    stopped = [n for n, o in outcomes.items() if o == "stopped"]
    assert stopped, outcomes
    trials = study(tmp_path / "results", "asha").trials
    for number in stopped:
        assert trials[number].state == TrialState.PRUNED
        epochs = result.trials.set_index("optuna_trial").loc[number, "epochs"]
        assert 1 <= epochs < 4
    _, _, children = mlflow_runs(tmp_path / "results")
    tags = {int(r.data.tags["optuna_trial"]): r for r in children}
    for number in stopped:
        assert tags[number].data.tags["outcome"] == "stopped"
        assert tags[number].info.status == "FINISHED"  # stopped, not failed
    analysis = ExperimentAnalysis(str(tmp_path / "results" / "ray" / "asha"))
    assert all(t.status == "TERMINATED" for t in analysis.trials)
    # Validated where the objective is read (default --validate-every 0): ASHA's rungs 1 and 2
    # and the last epoch, not epoch 3; MLflow's curve has the same points, the training loss
    # every epoch.
    metrics = read_metrics(result.directory / "trials" / "0000-s0")
    assert [m["epoch"] for m in metrics if "objective" in m] == [1, 2, 4]
    assert [m["epoch"] for m in metrics if "val_error" in m] == [1, 2, 4]
    client = MlflowClient(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    run_id = tags[0].info.run_id
    assert [p.step for p in client.get_metric_history(run_id, "val/objective")] == [1, 2, 4]
    assert [p.step for p in client.get_metric_history(run_id, "train/loss")] == [1, 2, 3, 4]

    # Like with like: every full-budget configuration above every stopped one, epochs shown.
    ranking = result.ranking
    full = ranking[ranking["epochs"] == 4]
    assert len(full) >= 1 and full["rank"].max() < ranking[ranking["epochs"] < 4]["rank"].min()
    assert list(ranking["epochs"]) == sorted(ranking["epochs"], reverse=True)
    assert "epochs" in (result.directory / "ranking.md").read_text().splitlines()[2]
    # The value told to Optuna: the mean over the seeds that reached the full budget; a
    # configuration none of whose seeds did is PRUNED with its per-epoch intermediate values.
    for number, group in result.trials.groupby("optuna_trial"):
        finished = group[group["outcome"] == "ok"]
        if len(finished):
            assert trials[number].value == pytest.approx(finished["val_error"].mean())
        else:
            assert trials[number].state == TrialState.PRUNED
            assert sorted(trials[number].intermediate_values) == list(
                range(1, int(group["epochs"].max()) + 1))


def test_grid_runs_the_anchors_exactly_with_every_seed(tmp_path, space_file, study,
                                                       mlflow_runs):
    from spaces import load_space

    space = load_space(f"{space_file}:my_space", "smoke")
    config = SearchConfig(name="grid", scale="smoke", sampler="grid", seeds=2, trials=99,
                          scheduler="none", results_dir=str(tmp_path / "results"),
                          progress=False)
    result = run(space, config)
    assert len(result.trials) == 4  # 2 anchors x 2 seeds, whatever --trials says
    assert sorted(result.trials["seed"]) == [0, 0, 1, 1]
    assert list(result.ranking["seeds"]) == [2, 2]
    best = result.ranking.iloc[0]
    assert best["configuration"] == "resnet8-identity-full_preact"
    seeds = result.trials[result.trials["optuna_trial"] == best["optuna_trial"]]
    assert best["val_error_mean"] == pytest.approx(seeds["val_error"].mean())
    assert best["val_error_std"] == pytest.approx(seeds["val_error"].std())
    assert best["val_error_median"] == pytest.approx(seeds["val_error"].median())
    assert best["val_error_ci95"] == pytest.approx(
        stats.t.ppf(0.975, len(seeds) - 1) * seeds["val_error"].sem())
    told = study(tmp_path / "results", "grid").trials[int(best["optuna_trial"])].value
    assert told == pytest.approx(seeds["val_error"].mean())
    assert result.best == {"shortcut": "identity", "activation": "full_preact"}
    markdown = (result.directory / "ranking.md").read_text()
    assert "±" in markdown and "resnet8-identity-full_preact" in markdown

    # The same name again: the finished search is shown from its files, nothing runs.
    trained = (result.directory / "trials" / "0000-s0" / "checkpoint.pt").stat().st_mtime_ns
    shown = run(space, config)
    assert shown.finished_before and shown.ranking.equals(read(result.directory)[0])
    assert list(shown.ranking["configuration"]) == list(result.ranking["configuration"])
    assert (result.directory / "trials" / "0000-s0" / "checkpoint.pt").stat().st_mtime_ns \
        == trained
    # --fresh: run again from scratch, as a new generation of MLflow runs beside the old.
    again = run(space, replace(config, fresh=True))
    assert not again.finished_before and len(again.trials) == 4
    assert len(study(tmp_path / "results", "grid").trials) == 2
    _, parents, children = mlflow_runs(tmp_path / "results")
    assert sorted(r.data.tags["generation"] for r in parents) == ["0", "1"]
    assert sorted(r.data.tags["generation"] for r in children) == ["0"] * 4 + ["1"] * 4


@pytest.mark.parametrize("storage", ["path", "file://"])
def test_fresh_removes_the_ray_experiment_behind_a_path_or_a_uri(tmp_path, storage):
    """--fresh must leave no experiment for Tuner.restore to find, in a bucket (a URI, as
    s3://) as on a local path."""
    from search.stores import remove_experiment

    root = tmp_path / "ray"
    (root / "mine" / "trial_0").mkdir(parents=True)
    (root / "mine" / "trial_0" / "checkpoint.pt").write_bytes(b"weights")
    (root / "other").mkdir()
    where = f"file://{root}" if storage == "file://" else str(root)
    remove_experiment(where, "mine")
    remove_experiment(where, "never-ran")  # nothing there: nothing to do
    assert not (root / "mine").exists() and (root / "other").is_dir()
