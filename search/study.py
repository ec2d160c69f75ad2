"""The Optuna side of a search: the sampler behind each `--sampler` name, and the study,
opened (or created) in its persistent storage with the space's anchors enqueued once."""

from __future__ import annotations

import contextlib
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


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage at `url`. SQLite in write-ahead-log mode, synchronous only at its
    checkpoints: a search commits about three times per result (intermediate value, tell,
    attributes), and each commit of SQLite's default journal waits on the disk, in Tune's loop.
    A killed driver loses no commit either way; a lost machine loses its last ones."""
    rdb = optuna.storages.RDBStorage(url)
    if url.startswith("sqlite:"):
        import sqlalchemy

        sqlalchemy.event.listen(rdb.engine, "connect", _write_ahead_log)
        rdb.engine.dispose()  # the connection Optuna opened to create the schema gets it too
    return rdb


def _write_ahead_log(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_study(storage: str, name: str, sampler: optuna.samplers.BaseSampler,
               space: SearchSpace) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """The search's study and its storage. A new study gets the objective's name (for
    optuna-dashboard, instead of "Objective 0") and the space's anchors, which run first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = optuna_storage(storage)
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


MAX_DUPLICATES = 100
"""Proposals in a row that repeat evaluated configurations before the space counts as
exhausted: each costs one ask and one tell, no training."""
EXPLORE_AFTER = 10
"""Proposals in a row that repeat evaluated configurations before `Explorer` draws at random."""


class Explorer:
    """Random draws for a model-based sampler that keeps proposing what was evaluated.

    TPE can settle on a corner of the space it has covered already: at a cluster's concurrency
    it asked the same five categorical configurations (identity shortcuts, which have no
    parameter of their own) a hundred times in a row while their originals still ran, and the
    search ended "exhausted" after 46 of 100 configurations (bench.scale). After EXPLORE_AFTER
    repeats in a row the next proposals come from a random sampler, which leaves the corner
    whenever the space has anything left (so exhaustion is declared only when it repeats too),
    and so do the EXPLORE_AFTER after that: each repeat costs an ask and a tell on a study that
    grows, and the search's sampler gets its turn back once they are drawn."""

    def __init__(self, seed: int):
        self.sampler = optuna.samplers.RandomSampler(seed=seed)
        self.left = 0

    def sampler_for(self, repeated: int) -> optuna.samplers.BaseSampler | None:
        """The sampler of the next proposal after `repeated` repeats; None: the search's."""
        return self.sampler if self.left or repeated >= EXPLORE_AFTER else None

    def found(self, repeated: int) -> None:
        """A new configuration came after `repeated` repeats."""
        self.left = EXPLORE_AFTER if repeated >= EXPLORE_AFTER else max(self.left - 1, 0)


@contextlib.contextmanager
def sampling_with(study: optuna.Study, sampler: optuna.samplers.BaseSampler | None):
    """Within, `study` draws with `sampler` instead of its own (None: its own). It must cover
    the define-by-run calls too: a trial's `suggest_*` calls the study's sampler then."""
    if sampler is None:
        yield
        return
    own, study.sampler = study.sampler, sampler
    try:
        yield
    finally:
        study.sampler = own


def tell_screened(study: optuna.Study, trial: optuna.Trial, params: dict, key: str,
                  reason: str) -> None:
    """A configuration the screen predicts to fail, not trained: PRUNED with no intermediate
    value (the worst a sampler sees), marked with why."""
    trial.set_user_attr("params", params)
    trial.set_user_attr(CONFIGURATION_KEY, key)
    trial.set_user_attr(SCREENED, reason)
    study.tell(trial, state=TrialState.PRUNED)
