"""Results that mean what they say: no configuration twice, a finite space enumerated once."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from search import SearchConfig, run
from spaces import SearchSpace


def test_a_finite_space_is_trained_once_per_configuration_and_seed(tmp_path, cli, study):
    """paper-table2 has 10 configurations (5 placements x 2 unit types); 14 are asked for."""
    done = cli("run", "paper-table2", "--scale", "smoke", "--trials", 14, "--seeds", 2,
               "--epochs", 1, "--scheduler", "none", "--concurrency", 2, "--name", "t2",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "space exhausted after 10 configurations" in done.stdout
    trials = study(tmp_path / "results", "t2").trials
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 10
    assert len({t.user_attrs["configuration_key"] for t in trained}) == 10
    assert study(tmp_path / "results", "t2").user_attrs["resnet_search:exhausted_after"] == 10
    runs = (tmp_path / "results" / "searches" / "t2" / "trials.csv").read_text().splitlines()
    assert len(runs) == 1 + 20  # each configuration once per seed
    ranking = pd.read_csv(tmp_path / "results" / "searches" / "t2" / "ranking.csv")
    assert len(ranking) == 10 and set(ranking["seeds"]) == {2}
    assert ranking["configuration"].nunique() == 10  # basic and bottleneck told apart


def _six_configurations(trial):
    trial.suggest_categorical("shortcut", ["identity", "conv1x1", "dropout"])
    trial.suggest_categorical("activation", ["original", "full_preact"])


def test_tpe_asked_for_16_trials_on_6_configurations_trains_6(tmp_path, study):
    space = SearchSpace("six", _six_configurations)
    config = SearchConfig(name="six", scale="smoke", trials=16, epochs=1, scheduler="none",
                          concurrency=2, results_dir=str(tmp_path / "results"),
                          progress=False)
    result = run(space, config)
    assert len(result.trials) == 6
    assert result.trials["configuration"].nunique() == 6
    assert len(result.ranking) == 6
    stored = study(tmp_path / "results", "six")
    repeats = [t for t in stored.trials if "duplicate_of" in t.user_attrs]
    for repeat in repeats:  # answered from the result it repeats, not trained
        original = stored.trials[repeat.user_attrs["duplicate_of"]]
        assert repeat.value is None or repeat.value == original.value


def _fail_space():
    # The identity reference and two of the paper's "fail" rows of Table 1.
    return SearchSpace("fails", lambda trial: None, fixed={"activation": "original"}, anchors=[
        {"shortcut": "identity"},
        {"shortcut": "scaling", "lam": 0.0, "branch_scale": 1.0},
        {"shortcut": "dropout", "dropout_p": 0.5}])


def test_a_failure_keeps_its_measured_error_and_carries_the_label(tmp_path, mlflow_runs):
    config = SearchConfig(name="fails", scale="smoke", sampler="grid", scheduler="none",
                          concurrency=2, results_dir=str(tmp_path / "results"), progress=False)
    result = run(_fail_space(), config)
    ranking = result.ranking.set_index("configuration")
    identity = ranking.loc["resnet8-identity-original"]
    assert identity["fail"] == ""
    failed = ranking[ranking["fail"] == "fail"]
    assert "resnet8-scaling-lam0-s1-original" in failed.index
    for _, row in failed.iterrows():
        assert 0 < row["test_error_mean"] < 0.9 and row["test_error_mean"] > identity[
            "test_error_mean"]
    legend = (result.directory / "ranking.md").read_text()
    assert "of the way from the identity/original reference" in legend

    _, _, children = mlflow_runs(tmp_path / "results")
    for run_ in children:
        key = run_.data.tags["configuration_key"]
        row = result.ranking.set_index("configuration_key").loc[key]
        assert run_.data.tags.get("fail", "") == row["fail"]
        assert run_.data.metrics["test/error"] == row["test_error_mean"]  # one seed
        work = result.directory / "trials" / run_.data.tags["run_key"] / "result.json"
        saved = json.loads(work.read_text())["metrics"]
        assert saved["test_error"] == run_.data.metrics["test/error"]


def _image_tree(root, classes=3, per_class=12):
    generator = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = generator.integers(0, 255, (10, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("dataset, channels, classes", [("digits", 1, 10), ("tree", 3, 3)])
def test_child_runs_log_the_network_that_trained(tmp_path, mlflow_runs, dataset, channels,
                                                 classes):
    if dataset == "tree":
        dataset = f"imagefolder:{_image_tree(tmp_path / 'tree')}"
    config = SearchConfig(name="params", scale="smoke", trials=2, epochs=1, dataset=dataset,
                          scheduler="none", results_dir=str(tmp_path / "results"),
                          progress=False)
    run("paper-table1", config)
    _, parents, children = mlflow_runs(tmp_path / "results")
    assert "None" not in parents[0].data.params.values()
    for run_ in children:
        params = run_.data.params
        assert (params["in_channels"], params["num_classes"]) == (str(channels), str(classes))
        assert "None" not in params.values()
        # Inactive conditional parameters are absent: a lambda only on constant scaling.
        assert ("lam" in params) == (params["shortcut"] == "scaling")
        assert ("gate_bias" in params) == (params["shortcut"] in ("exclusive_gate",
                                                                  "shortcut_gate"))


def test_final_retrain_trains_the_top_configuration_on_every_training_image(tmp_path,
                                                                              mlflow_runs):
    # A bool parameter: read back from trials.csv it was numpy's bool, which UnitSpec refuses;
    # the retraining takes the parameters from the study instead.
    space = SearchSpace("two", lambda trial: None, fixed={"activation": "full_preact"},
                        anchors=[{"shortcut": "identity", "bottleneck": False},
                                 {"shortcut": "conv1x1", "bottleneck": False}])
    config = SearchConfig(name="final", scale="smoke", sampler="grid", scheduler="none",
                          epochs=2, final_retrain=1, results_dir=str(tmp_path / "results"),
                          progress=False)
    result = run(space, config)
    ranking = result.ranking
    assert ranking["final_test_error_mean"].notna().tolist() == [True, False]  # the top one
    assert 0 < ranking.iloc[0]["final_test_error_mean"] < 0.9
    _, _, children = mlflow_runs(tmp_path / "results")
    final = [r for r in children if r.data.tags["stage"] == "final"]
    assert len(final) == 1 and final[0].data.params["val_size"] == "0"
    assert final[0].data.tags["configuration_key"] == ranking.iloc[0]["configuration_key"]
    searched = [r for r in children if r.data.tags["stage"] == "search"]
    assert len(searched) == 2 and len(result.trials) == 2  # the ranking is the search's
    plans = {r.data.tags["stage"]: json.loads((result.directory / "trials" / r.data.tags[
        "run_key"] / "plan.json").read_text()) for r in (final[0], searched[0])}
    # The smoke scale searches on 1000 digits with 200 held out; the retraining trains on
    # both (as the paper's test numbers come from 45k + 5k images).
    assert "train 1000 / val 200" in plans["search"]["data"]
    assert "train 1200 / val 0" in plans["final"]["data"]
    assert "final test err %" in (result.directory / "ranking.md").read_text()


def test_a_search_refuses_a_recipe_without_validation_images(tmp_path):
    from search.config import SearchConfigError
    from search.runner import prepare

    space = SearchSpace("no-val", lambda trial: None, fixed={"val_size": 0})
    with pytest.raises(SearchConfigError, match="val_size=0 is invalid for a search"):
        prepare(space, SearchConfig(scale="smoke", results_dir=str(tmp_path / "results")))
    assert not (tmp_path / "results").exists()
