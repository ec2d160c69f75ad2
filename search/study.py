"""The Optuna side of a search: the sampler behind each `--sampler` name, and the study,
opened (or created) in its persistent storage with the space's anchors enqueued once."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Container

import optuna
from optuna.trial import FrozenTrial, TrialState

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
               space: SearchSpace) -> tuple[optuna.Study, OneReadPerAsk]:
    """The search's study and its storage. A new study gets the objective's name (for
    optuna-dashboard, instead of "Objective 0") and the space's anchors, which run first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = OneReadPerAsk(optuna_storage(storage))
    study = optuna.create_study(storage=store, study_name=name, direction="minimize",
                                load_if_exists=True, sampler=sampler)
    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE_NAME])
    if not study.user_attrs.get(ANCHORS_ENQUEUED):
        space.enqueue_anchors(study)
        study.set_user_attr(ANCHORS_ENQUEUED, True)
    return study, store


class OneReadPerAsk(optuna.storages.BaseStorage):
    """The study's storage (Optuna's cache over the database), whose trials an ask reads once.

    TPE with `constant_liar` reads every trial anew for each parameter group it samples: Optuna
    skips its per-ask cache for the liar, since in a distributed study another worker's trial may
    start between two reads (optuna#4468). Its database cache then fetches every RUNNING trial
    again, with all its values, at each read: six reads per ask of paper-rediscover, and the
    largest cost left in Tune's loop at 1,000 trials. Here one driver asks, and nothing the
    sampler reads changes within the ask (the trial being asked is left out of its own sampling,
    and this driver's tells come between asks), so within `one_read()` every read is answered
    from the first: the same draws (tests/search/test_driver_costs.py), 212 -> 88 ms an ask at
    2,000 trials with 64 running (`bench.sampler_cost`, `tpe.running64_n2000_ms` against
    `tpe.search_running64_n2000_ms`). All else goes through.
    """

    def __init__(self, rdb: optuna.storages.RDBStorage):
        self._store = optuna.storages.get_storage(rdb)  # Optuna's cache of finished trials
        self._read: list[FrozenTrial] | None = None
        self._in_ask = False

    @contextlib.contextmanager
    def one_read(self):
        self._in_ask, self._read = True, None
        try:
            yield
        finally:
            self._in_ask, self._read = False, None

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        if not self._in_ask:
            return self._store.get_all_trials(study_id, deepcopy, states)
        if self._read is None:
            self._read = self._store.get_all_trials(study_id, deepcopy=False)
        trials = [t for t in self._read if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def create_new_study(self, *args, **kwargs):
        return self._store.create_new_study(*args, **kwargs)

    def delete_study(self, *args, **kwargs):
        return self._store.delete_study(*args, **kwargs)

    def set_study_user_attr(self, *args, **kwargs):
        return self._store.set_study_user_attr(*args, **kwargs)

    def set_study_system_attr(self, *args, **kwargs):
        return self._store.set_study_system_attr(*args, **kwargs)

    def get_study_id_from_name(self, *args, **kwargs):
        return self._store.get_study_id_from_name(*args, **kwargs)

    def get_study_name_from_id(self, *args, **kwargs):
        return self._store.get_study_name_from_id(*args, **kwargs)

    def get_study_directions(self, *args, **kwargs):
        return self._store.get_study_directions(*args, **kwargs)

    def get_study_user_attrs(self, *args, **kwargs):
        return self._store.get_study_user_attrs(*args, **kwargs)

    def get_study_system_attrs(self, *args, **kwargs):
        return self._store.get_study_system_attrs(*args, **kwargs)

    def get_all_studies(self, *args, **kwargs):
        return self._store.get_all_studies(*args, **kwargs)

    def create_new_trial(self, *args, **kwargs):
        return self._store.create_new_trial(*args, **kwargs)

    def set_trial_param(self, *args, **kwargs):
        return self._store.set_trial_param(*args, **kwargs)

    def get_trial_id_from_study_id_trial_number(self, *args, **kwargs):
        return self._store.get_trial_id_from_study_id_trial_number(*args, **kwargs)

    def set_trial_state_values(self, *args, **kwargs):
        return self._store.set_trial_state_values(*args, **kwargs)

    def set_trial_intermediate_value(self, *args, **kwargs):
        return self._store.set_trial_intermediate_value(*args, **kwargs)

    def set_trial_user_attr(self, *args, **kwargs):
        return self._store.set_trial_user_attr(*args, **kwargs)

    def set_trial_system_attr(self, *args, **kwargs):
        return self._store.set_trial_system_attr(*args, **kwargs)

    def get_trial(self, *args, **kwargs):
        return self._store.get_trial(*args, **kwargs)

    def get_best_trial(self, *args, **kwargs):
        return self._store.get_best_trial(*args, **kwargs)

    def remove_session(self) -> None:
        self._store.remove_session()


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
def one_ask(study: optuna.Study, storage: OneReadPerAsk,
            sampler: optuna.samplers.BaseSampler | None):
    """Within, one ask of `study`: its trials read once from `storage`, and drawn with
    `sampler` instead of the study's own (None: its own). It must cover the define-by-run calls
    too: a trial's `suggest_*` calls the study's sampler, which reads the trials, then."""
    own, study.sampler = study.sampler, sampler or study.sampler
    try:
        with storage.one_read():
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
