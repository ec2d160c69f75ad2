"""Optuna as Ray Tune's search algorithm, over a space's define-by-run function.

Why not Ray's stock `OptunaSearch` (measured with Ray 2.60 and Optuna 5, the search issue's
closing note): it leaves a trial whose last metric is NaN RUNNING forever, records trials ASHA
stopped as COMPLETE, crashes a restored search whose study lives in a database
(`UpdateFinishedTrialError`), re-proposes the parameters of trials lost with a stale snapshot,
and knows no seeds. This searcher keeps Optuna's ask/tell and samplers and fixes those:

- one Optuna trial is one configuration; it becomes `seeds` Ray trials (`TrialConfig`s: same
  params, seeds 0..k-1) and is told the mean objective once all of them end;
- the study lives in persistent storage (SQLite next to the MLflow store by default); the
  storage, not a pickle, is the source of truth when a search resumes: the searcher pickles
  only plain bookkeeping, reloads the study, and queues again a configuration that was asked
  after the driver's last snapshot (under its own number: it resumes, it is not re-proposed);
- the space's anchors are enqueued once, when the study is new, so they run first (study.py);
- a diverged trial reports a finite penalty (never NaN); a trial stopped by the scheduler is
  PRUNED; a configuration whose every seed raised is FAIL. A trial that raised is no outcome
  while it can still be resumed: its configuration stays RUNNING (user attribute `errored`)
  until running the search again resumes it (Tuner.restore) and it ends (README, "One truth
  across Ray, Optuna and MLflow"), or until a search run with `give_up_errored` tells it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import cloudpickle
from ray.tune.search import Searcher

from spaces import SearchSpace, SpaceError, TrialPlan, load_space

from .screen import screen
from .study import (
    CONFIGURATION_KEY,
    DUPLICATE_OF,
    EXHAUSTED_AFTER,
    MAX_DUPLICATES,
    SCREENED,
    Explorer,
    answer_duplicate,
    make_sampler,
    one_ask,
    open_study,
    tell_screened,
)
from .trial import (
    UNFINISHED,
    TrialConfig,
    TrialContext,
    configuration_key,
    read_metrics,
    run_key,
    trial_outcome,
)

OBJECTIVE = "objective"
ENDED = {"ok", "diverged", "stopped"}
"""The outcomes of a seed run that ended: Optuna can be told its configuration."""
class SpaceSearcher(Searcher):
    """Ray Tune searcher: Optuna ask/tell over a `spaces.SearchSpace`, several seeds each."""

    def __init__(self, space: SearchSpace, scale: str, storage: str, study_name: str,
                 context: TrialContext, sampler: str = "tpe", seeds: int = 1, seed: int = 0,
                 configurations: int | None = None, overrides: dict | None = None,
                 data_shape: dict | None = None, screen: bool = False):
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
        self.data_shape = dict(data_shape or {})
        """The data's `num_classes` and `in_channels`, so a plan is the network that trains."""
        self.context = context
        """What every trial of the search shares (data, trials directory, run options)."""
        self.queue: list[TrialConfig] = []
        """Seed runs of asked configurations not yet handed to Ray."""
        self.groups: dict[int, dict[str, Any]] = {}
        """Optuna number -> {"params", "trial_ids": {ray id: seed}, "results", "told"...}."""
        self.trial_numbers: dict[str, int] = {}
        """Ray trial id -> Optuna trial number."""
        self.keys: dict[str, int] = {}
        """Canonical configuration -> the Optuna trial number that trains it."""
        self.exhausted = False
        self.screen = screen
        """Skip configurations the zero-cost screen predicts to fail (search/screen.py)."""
        self.max_concurrent = 0
        """Trials at once (0: no limit), held here rather than by Tune's ConcurrencyLimiter,
        which forgets a trial once it errors and so never passes on the end of a resumed one."""
        self.live: set[str] = set()
        """Ray trials suggested and not yet ended."""
        self._space: SearchSpace | None = space
        self._study: optuna.Study | None = None
        self._optuna_storage: optuna.storages.BaseStorage | None = None
        self._explorer: Explorer | None = None

    # Pickles (tuner.pkl, snapshots) carry bookkeeping only: a define function need not import by
    # name; the study reloads from its storage; queued trials are the contract's dicts.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_study"] = state["_optuna_storage"] = state["_explorer"] = None
        if self.space_ref:
            state["_space"] = None
        state["context"] = self.context.to_dict()
        state["queue"] = [run.to_dict() for run in self.queue]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickled before the TrialConfig contract: the shared settings in `run_settings`.
        shared = state.pop("run_settings", None) or state["context"]
        state["context"] = TrialContext.from_dict(shared)
        state["queue"] = [TrialConfig.from_dict({**shared, **run}) for run in state["queue"]]
        state.setdefault("_explorer", None)  # pickled before there was one
        self.__dict__.update(state)

    def get_state(self) -> dict[str, Any]:
        return self.__getstate__()

    def set_state(self, state: dict[str, Any]) -> None:
        self.__setstate__(state)
        self._reconcile()

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            cloudpickle.dump(self.get_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(cloudpickle.load(f))

    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self._space = load_space(self.space_ref, self.scale)
        return self._space

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            # A resumed search continues with a fresh stream of random numbers.
            self._study, self._optuna_storage = open_study(
                self.storage, self.study_name, make_sampler(self.sampler_name,
                                                            self.seed + len(self.groups)),
                self.space)
            self._explorer = Explorer(self.seed + len(self.groups))
        return self._study

    def _reconcile(self) -> None:
        """After a restore, make the snapshot agree with the study, which is always current.

        A configuration asked after the last snapshot was lost with the driver: if it is
        RUNNING in the study it is queued again under its own number (its seed runs resume
        from their directories); if it already ended, it counts against the budget.
        """
        for frozen in self.study.get_trials(deepcopy=False):
            if SCREENED in frozen.user_attrs:
                self.keys.setdefault(frozen.user_attrs[CONFIGURATION_KEY], frozen.number)
                continue
            if (frozen.number in self.groups or frozen.state == TrialState.WAITING
                    or DUPLICATE_OF in frozen.user_attrs):
                continue
            params = frozen.user_attrs.get("params", frozen.params)
            self._add_group(frozen.number, params)
            if frozen.state == TrialState.RUNNING:
                self._queue(frozen.number, params)
            else:
                self.groups[frozen.number]["results"] = {
                    f"lost-{seed}": {"outcome": "ended", "value": None}
                    for seed in range(self.seeds)}

    def _trial_id(self, number: int) -> int | None:
        """The storage id of a stored trial, read alone through the storage's public API (asked
        trials do not survive a restore); None once it has finished (told before a restart)."""
        self.study  # noqa: B018 - opened (with its storage) if it is not yet
        storage = self._optuna_storage
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(self.study_name), number)
        return None if storage.get_trial(trial_id).state.is_finished() else trial_id

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None  # ask again when a trial ends
        if not self.queue:
            asked = len(self.groups)
            if self.configurations is not None and asked >= self.configurations:
                return Searcher.FINISHED
            if self.sampler_name == "grid" and not self._waiting_anchors():
                return Searcher.FINISHED
            if self.exhausted or not self._ask():
                return Searcher.FINISHED
        run = self.queue.pop(0)
        self.groups[run.optuna_trial]["trial_ids"][trial_id] = run.seed
        self.trial_numbers[trial_id] = run.optuna_trial
        self.live.add(trial_id)
        return run.to_dict()

    def nothing_left_to_ask(self) -> bool:
        """The budget of configurations asked, the grid's anchors all asked, or the space
        exhausted: what `suggest` ends on, read from the study alone, so the driver's copy
        answers for the one Tune restored and ran (an interrupt can land between two asks)."""
        asked = sum(CONFIGURATION_KEY in t.user_attrs and SCREENED not in t.user_attrs
                    for t in self.study.get_trials(deepcopy=False))
        return ((self.configurations is not None and asked >= self.configurations)
                or (self.sampler_name == "grid" and not self._waiting_anchors())
                or EXHAUSTED_AFTER in self.study.user_attrs)

    def _waiting_anchors(self) -> bool:
        return any(t.state == TrialState.WAITING for t in self.study.get_trials(deepcopy=False))

    def _plan(self, params: dict[str, Any], seed: int = 0,
              recipe: dict[str, Any] | None = None) -> TrialPlan:
        return self.space.plan({**params, **self.overrides, **(recipe or {})}, self.scale,
                               seed=seed, **self.data_shape)

    def trial_config(self, number: int, seed: int, stage: str = "search",
                     recipe: dict[str, Any] | None = None) -> TrialConfig:
        """Seed run `seed` of configuration `number`, its params read from the study (the truth
        after any restore); `recipe`: values that beat its own (the final retraining's data)."""
        frozen = self.study.get_trials(deepcopy=False)[number]
        params = frozen.user_attrs.get("params", frozen.params)
        key = frozen.user_attrs.get(CONFIGURATION_KEY) or configuration_key(self._plan(params))
        return TrialConfig(self._plan(params, seed, recipe), number, key, self.context,
                           params=params, stage=stage)

    def _ask(self) -> bool:
        """Ask Optuna for a configuration not evaluated yet and queue its seed runs; False
        when the space is exhausted (only configurations already asked come back)."""
        for repeated in range(MAX_DUPLICATES):
            if self.sampler_name == "grid" and not self._waiting_anchors():
                return False  # every anchor asked (some screened out): the grid is done
            with one_ask(self.study, self._optuna_storage, self._explorer.sampler_for(repeated)):
                trial = self.study.ask()
                try:
                    params = self.space.suggest(trial)
                    key = configuration_key(self._plan(params))
                except SpaceError:  # a space that passed `check` but fails on a rare branch
                    self.study.tell(trial, state=TrialState.FAIL)
                    raise
                if key in self.keys:  # answered from the ask's read of the study
                    answer_duplicate(self.study, trial, self.keys[key])
                    continue
            if self.screen and self._screened_out(trial, params, key):
                continue
            self._explorer.found(repeated)
            # In the study at once, so a restore after a lost snapshot can queue it again.
            trial.set_user_attr("params", params)
            trial.set_user_attr(CONFIGURATION_KEY, key)
            self._add_group(trial.number, params)
            self._queue(trial.number, params)
            return True
        self.exhausted = True
        self.study.set_user_attr(EXHAUSTED_AFTER, len(self.groups))
        print(f"space exhausted after {len(self.groups)} configurations", flush=True)
        return False

    def _screened_out(self, trial: optuna.Trial, params: dict[str, Any], key: str) -> bool:
        """`screen`: a configuration the propagation at init predicts to fail is not trained."""
        plan = self._plan(params)
        screening = screen(plan.net, plan.recipe.image_size)
        if not screening.predicts_fail:
            return False
        tell_screened(self.study, trial, params, key, screening.describe())
        self.keys[key] = trial.number
        print(f"screened #{trial.number} {plan.net.name}: {screening.describe()}, predicted "
              "to fail; not trained", flush=True)
        return True

    def _add_group(self, number: int, params: dict[str, Any]) -> None:
        key = configuration_key(self._plan(params))
        self.keys.setdefault(key, number)
        self.groups[number] = {"params": params, "key": key, "trial_ids": {}, "results": {}}

    def _queue(self, number: int, params: dict[str, Any]) -> None:
        """Queue one Ray trial per seed; its `run_key` names the seed run's directory and
        MLflow run, the same across driver restarts (Ray trial ids are not)."""
        self.queue.extend(
            TrialConfig(self._plan(params, seed), number, self.groups[number]["key"],
                        self.context, params=params) for seed in range(self.seeds))

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        number, value = self.trial_numbers.get(trial_id), result.get(OBJECTIVE)
        # Intermediate values of seed 0 only: one curve per configuration for the dashboard.
        if (number is None or self.groups[number]["trial_ids"].get(trial_id) != 0
                or not _finite(value)):
            return
        group, epoch = self.groups[number], result.get("epoch")  # no study read per result
        reported = group.setdefault("reported", set())
        if (epoch is None or epoch in reported or len(group["results"]) == self.seeds
                or group.get("told")):
            return  # this epoch is in already, or the configuration was told
        group["storage_id"] = group.get("storage_id") or self._trial_id(number)
        try:  # the id is None or stale once another copy of this searcher told it: the
            # driver's (`tell_ended`), or one a restore replaced (its snapshot kept the id)
            self._optuna_storage.set_trial_intermediate_value(group["storage_id"], int(epoch),
                                                              float(value))
            reported.add(epoch)
        except (KeyError, optuna.exceptions.UpdateFinishedTrialError):
            group["told"] = True

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        self.live.discard(trial_id)
        number = self.trial_numbers.get(trial_id)
        if number is None:
            return
        group = self.groups[number]
        if trial_id in group["results"]:
            return
        if error:
            # Not an outcome yet: the search run again resumes it (Tuner.restore), and Optuna's
            # FAIL could never be taken back. Until then: RUNNING in the study, marked errored.
            if (storage_id := self._trial_id(number)) is not None:  # None: told meanwhile
                self._optuna_storage.set_trial_user_attr(storage_id, "errored", True)
            return
        outcome = trial_outcome(result)
        if outcome == UNFINISHED:  # not an outcome either: the search runs it again
            return
        if result:  # the result that made the scheduler stop it never reached on_trial_result
            self.on_trial_result(trial_id, result)
        group["results"][trial_id] = {"outcome": outcome,
                                      "value": (result or {}).get(OBJECTIVE)}
        if len(group["results"]) < self.seeds:
            return
        self._tell(number, list(group["results"].values()))

    def _tell(self, number: int, outcomes: list[dict[str, Any]]) -> None:
        """Like with like: the value is the mean over the seeds that reached the full budget
        (a diverged seed ended by itself and counts with the trial's penalty objective); a
        configuration none of whose seeds got there is PRUNED, as Optuna's own pruned trials
        are, with the intermediate values it reported per epoch."""
        finished = [o["value"] for o in outcomes
                    if o["outcome"] in ("ok", "diverged") and _finite(o["value"])]
        if finished:
            state, value = TrialState.COMPLETE, sum(finished) / len(finished)
        elif any(o["outcome"] == "stopped" for o in outcomes):
            state, value = TrialState.PRUNED, None
        else:
            state, value = TrialState.FAIL, None
        trial_id = self._trial_id(number)
        if trial_id is None:
            return  # told already, before a driver restart
        self._complete_curve(number, trial_id)
        self._optuna_storage.set_trial_user_attr(trial_id, "outcomes",
                                                 [o["outcome"] for o in outcomes])
        self._optuna_storage.set_trial_user_attr(trial_id, "errored", False)
        self.study.tell(number, value, state=state)

    def tell_ended(self, outcomes: dict[int, dict[int, str]], errored: bool = False
                   ) -> list[int]:
        """Tell Optuna the configurations it waits for, from their seeds' recorded `outcomes`
        (number -> seed -> outcome) and last objectives: with `errored`, those whose trials
        raised (`give_up_errored`); else those whose seeds all ended outside this searcher
        (run again after Tune cut them short). Returns the numbers told."""
        work_root = Path(self.context.work_root)
        told = []
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state != TrialState.RUNNING or bool(
                    frozen.user_attrs.get("errored")) != errored:
                continue
            seeds = outcomes.get(frozen.number, {})
            if not errored and (len(seeds) < self.seeds or not ENDED.issuperset(seeds.values())):
                continue  # a seed has not ended yet
            ended = []
            for seed, outcome in sorted(seeds.items()):
                history = read_metrics(work_root / run_key(frozen.number, seed))
                # The last objective measured (a trial validates at some epochs only).
                ended.append({"outcome": outcome,
                              "value": next((m[OBJECTIVE] for m in reversed(history)
                                             if OBJECTIVE in m), None)})
            self._tell(frozen.number, ended)
            told.append(frozen.number)
        return told

    def _complete_curve(self, number: int, trial_id: int) -> None:
        """Epochs seed 0 reported while no driver listened (it was killed, or the trial was
        resumed) are in its own metrics file: every told trial has its whole curve."""
        reported = self._optuna_storage.get_trial(trial_id).intermediate_values
        for metrics in read_metrics(Path(self.context.work_root) / run_key(number, 0)):
            epoch, value = metrics.get("epoch"), metrics.get(OBJECTIVE)
            if epoch is not None and epoch not in reported and _finite(value):
                self._optuna_storage.set_trial_intermediate_value(trial_id, int(epoch),
                                                                  float(value))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


