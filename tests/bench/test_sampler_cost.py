"""The sampler benchmark fills studies the way an ASHA search leaves them and times the real
samplers, in memory and on SQLite."""

import random

import optuna
from optuna.trial import TrialState

from bench.common import parse_figures
from bench.sampler_cost import fill, main
from spaces import load_space


def test_fill_leaves_pruned_and_complete_trials_with_conditional_params():
    study = optuna.create_study()
    fill(study, load_space("paper-joint", "small"), 60, random.Random(0))
    assert len(study.trials) == 60
    states = {t.state for t in study.trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED}
    assert all(t.intermediate_values for t in study.trials)
    shortcuts = {t.params["shortcut"] for t in study.trials}
    assert len(shortcuts) > 3  # the conditional branches are all sampled
    assert any("gate_bias" in t.params for t in study.trials)
    fill(study, load_space("paper-joint", "small"), 70, random.Random(1))
    assert len(study.trials) == 70


def test_script_prints_every_sampler_and_the_sqlite_paths(capsys):
    assert main(["--sizes", "12", "--samplers", "tpe", "random", "cmaes",
                 "--repeats", "2"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    for name in ("tpe", "random", "cmaes"):
        assert float(figures[f"sampler_cost.{name}.n12_ms"][0]) > 0
    for name in ("sqlite", "sqlite_wal", "running64", "search_running64"):
        value, unit = figures[f"sampler_cost.tpe.{name}_n12_ms"]
        assert float(value) > 0 and unit == "ms"
