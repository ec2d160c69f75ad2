"""Optuna as Ray Tune's search algorithm, over a space's define-by-run function.

Why not Ray's stock `OptunaSearch`: measured with Ray 2.60 and Optuna 5 (see the search
issue's closing note), it leaves a trial whose last metric is NaN RUNNING in the study forever,
records trials that ASHA stopped as COMPLETE, crashes a restored search whose study lives in a
database (`UpdateFinishedTrialError`), re-proposes the parameters of trials lost with a stale
snapshot, and has no notion of several seeds per configuration. This searcher keeps Optuna's
ask/tell and samplers and fixes those:

- one Optuna trial is one configuration; it becomes `seeds` Ray trials (same params, seeds
  0..k-1) and is told the mean objective once all of them end;
- the study lives in persistent storage (SQLite next to the MLflow store by default); the
  storage, not a pickle, is the source of truth when a search resumes: the searcher pickles
  only plain bookkeeping, reloads the study, and queues again a configuration that was asked
  after the driver's last snapshot (under its own number: it resumes, it is not re-proposed);
- the space's anchors are enqueued once, when the study is new, so they run first;
- a diverged trial reports a finite penalty (never NaN); a trial stopped by the scheduler is
  PRUNED; a trial that raised is FAIL. Nothing is left RUNNING.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import cloudpickle
from ray.tune.search import Searcher

from spaces import SearchSpace, SpaceError, load_space

from .train import plan_to_dict, trial_outcome

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")
OBJECTIVE = "objective"
ANCHORS_ENQUEUED = "resnet_search:anchors_enqueued"


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


class SpaceSearcher(Searcher):
    """Ray Tune searcher: Optuna ask/tell over a `spaces.SearchSpace`, several seeds each."""

    def __init__(self, space: SearchSpace, scale: str, storage: str, study_name: str,
                 sampler: str = "tpe", seeds: int = 1, seed: int = 0,
                 configurations: int | None = None, overrides: dict | None = None,
                 run_settings: dict | None = None):
        super().__init__(metric=OBJECTIVE, mode="min")
        self.scale = scale
        self.space_ref = space.source or None
        """Where to reload the space from after unpickling; None: the space pickles itself."""
        self.storage, self.study_name = storage, study_name
        self.sampler_name, self.seeds, self.seed = sampler, seeds, seed
        self.configurations = configurations
        """Optuna trials to ask at most (None: as many as Ray asks for)."""
        self.overrides = dict(overrides or {})
        """Values that beat the sampled ones (e.g. an --epochs budget)."""
        self.run_settings = dict(run_settings or {})
        """Settings every trial's config carries (data, work directory root, threads)."""
        self.queue: list[dict[str, Any]] = []
        """Seed runs of asked configurations not yet handed to Ray."""
        self.groups: dict[int, dict[str, Any]] = {}
        """Optuna trial number -> {"params", "trial_ids": {ray id: seed}, "results": {...}}."""
        self.trial_numbers: dict[str, int] = {}
        """Ray trial id -> Optuna trial number."""
        self._space: SearchSpace | None = space
        self._study: optuna.Study | None = None

    # Pickling (tuner.pkl) and searcher snapshots carry bookkeeping only: a user's define
    # function need not be importable by name, and the study is reloaded from its storage.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_study"] = None
        if self.space_ref:
            state["_space"] = None
        return state

    def get_state(self) -> dict[str, Any]:
        return self.__getstate__()

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reconcile()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(cloudpickle.load(f))

    @property
    def space(self):
        if self._space is None:
            self._space = load_space(self.space_ref, self.scale)
        return self._space

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self._study = optuna.create_study(
                storage=self.storage, study_name=self.study_name, direction="minimize",
                load_if_exists=True,
                # A resumed search continues with a fresh stream of random numbers.
                sampler=make_sampler(self.sampler_name, self.seed + len(self.groups)))
            if not self._study.user_attrs.get(ANCHORS_ENQUEUED):
                self.space.enqueue_anchors(self._study)
                self._study.set_user_attr(ANCHORS_ENQUEUED, True)
        return self._study

    def _reconcile(self) -> None:
        """After a restore, make the snapshot agree with the study, which is always current.

        A configuration asked after the last snapshot was lost with the driver: if it is
        RUNNING in the study it is queued again under its own number (its seed runs resume
        from their directories); if it already ended, it counts against the budget.
        """
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.number in self.groups or frozen.state == TrialState.WAITING:
                continue
            params = frozen.user_attrs.get("params", frozen.params)
            self.groups[frozen.number] = {"params": params, "trial_ids": {}, "results": {}}
            if frozen.state == TrialState.RUNNING:
                self._queue(frozen.number, params)
            else:
                self.groups[frozen.number]["results"] = {
                    f"lost-{seed}": {"outcome": "ended", "value": None}
                    for seed in range(self.seeds)}

    def _trial(self, number: int) -> optuna.Trial | None:
        """A live handle on a stored trial, also after a restore (asked trials do not pickle);
        None once it has finished (told before a driver restart)."""
        frozen = self.study.get_trials(deepcopy=False)[number]
        return None if frozen.state.is_finished() else optuna.Trial(self.study, frozen._trial_id)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if not self.queue:
            asked = len(self.groups)
            if self.configurations is not None and asked >= self.configurations:
                return Searcher.FINISHED
            if self.sampler_name == "grid" and not self._waiting_anchors():
                return Searcher.FINISHED
            self._ask()
        run = self.queue.pop(0)
        group = self.groups[run["optuna_trial"]]
        group["trial_ids"][trial_id] = run["seed"]
        self.trial_numbers[trial_id] = run["optuna_trial"]
        return {**run, **self.run_settings}

    def _waiting_anchors(self) -> bool:
        return any(t.state == TrialState.WAITING for t in self.study.get_trials(deepcopy=False))

    def _ask(self) -> None:
        trial = self.study.ask()
        try:
            params = self.space.suggest(trial)
            # In the study at once, so a restore after a lost snapshot can queue it again.
            trial.set_user_attr("params", params)
            self._queue(trial.number, params)
        except SpaceError:  # a space that passed `check` but fails on a rare branch
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        self.groups[trial.number] = {"params": params, "trial_ids": {}, "results": {}}

    def _queue(self, number: int, params: dict[str, Any]) -> None:
        """Queue one Ray trial per seed; `run_key` names the seed run's directory and MLflow
        run, the same across driver restarts (Ray trial ids are not)."""
        self.queue.extend({
            "optuna_trial": number, "seed": seed, "run_key": f"{number:04d}-s{seed}",
            "params": params,
            "plan": plan_to_dict(self.space.plan({**params, **self.overrides}, self.scale,
                                                 seed=seed)),
        } for seed in range(self.seeds))

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        number = self.trial_numbers.get(trial_id)
        value = result.get(OBJECTIVE)
        # Intermediate values of seed 0 only: one curve per configuration for the dashboard.
        if (number is None or self.groups[number]["trial_ids"].get(trial_id) != 0
                or not _finite(value)):
            return
        frozen = self.study.get_trials(deepcopy=False)[number]
        epoch = result.get("epoch")
        if epoch is None or frozen.state.is_finished() or epoch in frozen.intermediate_values:
            return  # told before a driver restart, or this epoch is in already
        optuna.Trial(self.study, frozen._trial_id).report(float(value), int(epoch))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        number = self.trial_numbers.get(trial_id)
        if number is None:
            return
        group = self.groups[number]
        if trial_id in group["results"]:
            return
        if result:  # the result that made the scheduler stop it never reached on_trial_result
            self.on_trial_result(trial_id, result)
        group["results"][trial_id] = {"outcome": trial_outcome(result, error),
                                      "value": (result or {}).get(OBJECTIVE)}
        if len(group["results"]) < self.seeds:
            return
        self._tell(number, list(group["results"].values()))

    def _tell(self, number: int, outcomes: list[dict[str, Any]]) -> None:
        values = [o["value"] for o in outcomes if _finite(o["value"])]
        if not values:
            state, value = TrialState.FAIL, None
        elif any(o["outcome"] in ("ok", "diverged") for o in outcomes):
            state, value = TrialState.COMPLETE, sum(values) / len(values)
        else:  # every seed stopped early by the scheduler
            state, value = TrialState.PRUNED, None
        trial = self._trial(number)
        if trial is None:
            return  # told already, before a driver restart
        trial.set_user_attr("outcomes", [o["outcome"] for o in outcomes])
        self.study.tell(number, value, state=state)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


