"""Parameter importance that knows conditional axes, on a synthetic Optuna study."""

import optuna
import pytest

from search.report import parameter_importance, study_frame


def _objective(trial):
    shortcut = trial.suggest_categorical("shortcut", ["identity", "gate"])
    trial.suggest_float("noise", 0.0, 1.0)  # decides nothing
    if shortcut == "gate":
        bias = trial.suggest_float("gate_bias", -10.0, 0.0)
        return 0.2 + 0.05 * abs(bias + 6)  # within the branch, the bias alone decides
    return 0.3


@pytest.fixture(scope="module")
def study():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(_objective, n_trials=80)
    # A repeat of trial 0, as the searcher records it: not counted twice.
    first = study.trials[0]
    study.add_trial(optuna.trial.create_trial(
        params=first.params, distributions=first.distributions, value=first.value,
        user_attrs={"duplicate_of": 0}))
    return study


def test_the_study_frame_skips_repeats(study):
    frame = study_frame(study)
    assert len(frame) == 80 == len(study.trials) - 1
    assert frame["gate_bias"].notna().sum() == (frame["shortcut"] == "gate").sum()


def test_a_conditional_parameter_that_alone_decides_its_branch_is_found(study):
    table = parameter_importance(study_frame(study)).set_index("parameter")
    bias = table.loc["gate_bias"]
    assert bias["level"] == "conditional" and bias["scope"] == "shortcut = gate"
    assert bias["trials"] == (study_frame(study)["shortcut"] == "gate").sum()
    assert bias["method"] == "one-way ANOVA eta² over quartile bins"
    assert bias["eta²"] > 0.6 and bias["p-value"] < 1e-3
    assert table.loc["noise", "level"] == "top-level"
    assert table.loc["noise", "eta²"] < 0.2 < bias["eta²"]
    assert table.loc["shortcut", "scope"] == "all trials"
    # Top-level axes first, then each branch.
    assert list(table["level"]).index("conditional") > list(table.index).index("noise")
