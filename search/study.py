"""The Optuna side of a search: the sampler behind each `--sampler` name, and the study,
opened (or created) in its persistent storage with the space's anchors enqueued once."""

from __future__ import annotations

import warnings

import optuna
from optuna.trial import TrialState

from spaces import SearchSpace

from .config import SAMPLERS

OBJECTIVE_NAME = "val_error"
"""What the objective is, as the study names it: the validation error at the full budget."""
# What the study records beside Optuna's own (study and trial user attributes).
ANCHORS_ENQUEUED = "resnet_search:anchors_enqueued"
EXHAUSTED_AFTER = "resnet_search:exhausted_after"
"""Study attribute: the number of configurations when no new one could be asked."""
CONFIGURATION_KEY = "configuration_key"
DUPLICATE_OF = "duplicate_of"
SCREENED = "screened"
"""User attribute of a configuration `screen` skipped: why (search/screen.py)."""


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler behind a `--sampler` name."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            # multivariate + group model conditional axes jointly; constant_liar keeps
            # parallel suggestions apart while earlier trials are still running.
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              constant_liar=True)
        if name in ("random", "grid"):  # grid: every trial is an enqueued anchor
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"sampler={name!r} is invalid; allowed: {' | '.join(SAMPLERS)}")


def open_study(storage: str, name: str, sampler: optuna.samplers.BaseSampler,
               space: SearchSpace) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The search's study and its storage. A new study gets the objective's name (for
    optuna-dashboard, instead of "Objective 0") and the space's anchors, which run first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna.storages.RDBStorage(storage)
    study = optuna.create_study(storage=rdb, study_name=name, direction="minimize",
                                load_if_exists=True, sampler=sampler)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE_NAME])
    if not study.user_attrs.get(ANCHORS_ENQUEUED):
        space.enqueue_anchors(study)
        study.set_user_attr(ANCHORS_ENQUEUED, True)
    return study, rdb


def answer_duplicate(study: optuna.Study, trial: optuna.Trial, original: int) -> None:
    """A configuration asked again is not trained again: the new Optuna trial gets the
    original's result (its value, or PRUNED with its last intermediate value); while the
    original still runs it is dropped as FAIL, which samplers ignore, and Optuna asks
    again."""
    trial.set_user_attr(DUPLICATE_OF, original)
    done = study.get_trials(deepcopy=False)[original]
    if done.state == TrialState.COMPLETE:
        study.tell(trial, done.value)
    elif done.state == TrialState.PRUNED and done.intermediate_values:
        step = max(done.intermediate_values)
        trial.report(done.intermediate_values[step], step)
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
