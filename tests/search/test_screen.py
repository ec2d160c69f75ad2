"""The zero-cost screen: Eq. 5/8's direct path at initialisation predicts the paper's failures,
and `--screen` skips them without training."""

import pandas as pd
import pytest
from optuna.trial import TrialState

from residual import NetSpec, UnitSpec
from search import SearchConfig, run
from search.screen import SHARE_RATIO, screen


@pytest.mark.parametrize("unit, fails", [
    (UnitSpec("identity"), False),
    (UnitSpec("identity", "full_preact"), False),
    (UnitSpec("scaling", lam=0.5, branch_scale=1.0), True),  # 0.5 per unit: the paper's fail
    (UnitSpec("exclusive_gate", gate_bias=0.0), True),  # a gate near 0.5
    (UnitSpec("shortcut_gate", gate_bias=-6.0), False),  # gates nearly open: the paper's 6.91%
])
def test_the_rule_on_the_papers_rows(unit, fails):
    screening = screen(NetSpec(depth=20, unit=unit, width=8), image_size=16)
    assert screening.predicts_fail == fails, screening.describe()
    assert screening.predicts_fail == (screening.relative < SHARE_RATIO)
    if unit.shortcut == "identity":
        assert screening.relative == pytest.approx(1.0)


def test_screened_configurations_are_not_trained(tmp_path, study):
    results = tmp_path / "results"
    config = SearchConfig(name="screened", scale="smoke", sampler="grid", epochs=1,
                          scheduler="none", screen=True, results_dir=str(results),
                          progress=False)
    result = run("paper-table1", config)
    skipped = pd.read_csv(result.directory / "screened.csv")
    trained = {int(key.split("-")[0]) for key in result.trials["run_key"]}
    assert len(skipped) >= 3 and trained.isdisjoint(skipped["optuna_trial"])
    assert 0 in trained  # the identity row trains
    assert len(trained) + len(skipped) == 11  # Table 1's rows, each once, nothing else asked
    for trial in study(results, "screened").trials:
        if trial.number in set(skipped["optuna_trial"]):
            assert trial.state == TrialState.PRUNED and not trial.intermediate_values
            assert "of the identity shortcut's" in trial.user_attrs["screened"]
    assert not any((result.directory / "trials" / f"{n:04d}-s0").exists()
                   for n in skipped["optuna_trial"])
