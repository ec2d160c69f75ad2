"""Results that mean what they say: no configuration twice, a finite space enumerated once."""

import pandas as pd

from spaces import SearchSpace

from search import SearchConfig, run


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
