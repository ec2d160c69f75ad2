"""MLflow tracking, written only by the driver (DESIGN.md): a Ray Tune callback.

One parent run per search (`records.py`), one nested child run per Ray trial. Workers never
talk to the tracking server; SQLite never sees two writers; artifacts come from the trial's
directory (or, on a cluster without a shared disk, from its last Ray checkpoint). Everything
goes through the search's journal, which a background sender delivers: an MLflow outage
delays tracking, it never stops a search.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ray import tune

from ..trial import UNFINISHED, TrialConfig, read_metrics, trial_outcome
from ..trial.contract import (
    LEARNING_CURVE,
    METRICS,
    PLAN,
    PROPAGATION,
    PROPAGATION_PLOT,
    RESULT,
)
from .journal import PARENT, Journal, replay
from .records import METRIC_NAMES

RUN_STATUS = {"error": "FAILED", UNFINISHED: "KILLED"}
"""The MLflow status of a run by its trial's outcome (FINISHED otherwise). An unfinished run
is KILLED until the search runs it again, and RUNNING then."""
ARTIFACTS = (METRICS, PLAN, PROPAGATION, LEARNING_CURVE, PROPAGATION_PLOT)
"""What a trial's directory contributes to its MLflow run's artifacts (with final_metrics.json)."""


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The trial's own metrics (not Ray's bookkeeping) under their MLflow names; a NaN loss
    is logged as NaN: it is how a diverged trial looks."""
    names = {k: METRIC_NAMES.get(k) or ("prop/" + k[len("prop_"):] if k.startswith("prop_")
                                        else None) for k in result}
    return {name: float(result[k]) for k, name in names.items()
            if name and isinstance(result[k], (int, float)) and not isinstance(result[k], bool)}


class MlflowTracker(tune.Callback):
    """Mirrors every trial into a nested MLflow run under the search's parent run, through the
    search's journal (the sender delivers it).

    Runs are keyed by the trial's `run_key` (configuration and seed), which survives a driver
    restart, so a resumed or re-queued trial logs into its existing run, each epoch once.
    """

    def __init__(self, journal: Journal, search_name: str, space_name: str, work_root: str,
                 optuna_storage: str | None = None, generation: int = 0):
        self.journal = journal
        self.generation = str(generation)
        """A search started over (`fresh`) is a new generation: its runs are new ones."""
        self.optuna_storage = optuna_storage
        self.search_name, self.space_name = search_name, space_name
        self.work_root = work_root
        self.logged: dict[str, set[int]] | None = None
        """run key -> epochs in the journal (read from it on first use: a restored Tuner
        unpickles this callback)."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "logged": None}

    def get_state(self) -> dict[str, Any]:
        return {}  # everything worth keeping is in the journal itself

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def _logged(self) -> dict[str, set[int]]:
        if self.logged is None:
            self.logged = {ref: set(run.history.get("epoch", {}))
                           for ref, run in replay(self.journal).items() if ref != PARENT}
        return self.logged

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        key = TrialConfig.from_dict(trial.config).run_key
        if key in self._logged():  # resumed, or queued again after a driver restart
            self.journal.tags(key, {"ray_trial_id": trial.trial_id, "outcome": "running"})
            self.journal.status(key, "RUNNING")
        else:
            self._create(trial)

    def _create(self, trial) -> None:
        """The trial's run, with its params and tags, the first time."""
        config = TrialConfig.from_dict(trial.config)
        key, plan = config.run_key, config.plan
        number, seed = config.optuna_trial, config.seed
        identity = {"search": self.search_name, "generation": self.generation, "run_key": key}
        tags = {**identity, "ray_trial_id": trial.trial_id, "optuna_trial": str(number),
                "seed": str(seed), "space": self.space_name,
                "network": plan.net.name, "outcome": "running",
                "configuration_key": config.configuration_key,
                "stage": config.stage, "params": json.dumps(config.params),
                **({"simulated": "true"} if config.context.simulate is not None else {})}
        stage = "" if config.stage == "search" else f"{config.stage}-"
        # The other direction of the lineage: the Optuna trial gets the run's id (its search
        # seeds: the objective Optuna was told).
        link = {"storage": self.optuna_storage, "study": self.search_name, "number": number,
                "seed": seed} if self.optuna_storage and not stage else None
        self.journal.create_run(key, f"{stage}{number}-{plan.net.name}-s{seed}", tags,
                                parent=PARENT, find=identity,
                                optuna=link)
        params = {k: str(v) for k, v in {**plan.flat(), "optuna_trial": number}.items()
                  if v is not None}
        self.journal.log(key, params=params)
        self._logged()[key] = set()

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._log_epochs(self._run_key(trial), [result])

    def _run_key(self, trial) -> str:
        """The trial's run key, its MLflow run created the first time it is seen."""
        key = TrialConfig.from_dict(trial.config).run_key
        if key not in self._logged():
            self._create(trial)
        return key

    def _log_epochs(self, key: str, results: list[dict]) -> None:
        """Per-epoch metrics with step = epoch, each epoch once (a restart may repeat one)."""
        logged = self._logged()[key]
        now = int(time.time() * 1000)
        batch = []
        for result in results:
            epoch = int(result.get("epoch", 0))
            if epoch and epoch not in logged:
                batch += [(k, v, now, epoch) for k, v in numeric_metrics(result).items()]
                logged.add(epoch)
        if batch:
            self.journal.log(key, metrics=batch)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, trial_outcome(trial.last_result))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, "error")

    def _finish(self, trial, outcome: str) -> None:
        key = self._run_key(trial)
        error_file = trial.error_file if outcome == "error" else None
        simulated = TrialConfig.from_dict(trial.config).context.simulate is not None
        with tempfile.TemporaryDirectory() as tmp:
            self._close(key, outcome, self._trial_files(key, trial, Path(tmp)),
                        trial.last_result or {}, error_file, Path(tmp), plots=not simulated)

    def on_experiment_end(self, trials: list, **info) -> None:
        """Close the seed runs a driver lost: the journal shows them running although Optuna
        was told their configuration. Telling Optuna happens just before this callback
        records the end, and a driver killed between the two, before Tune's next snapshot,
        leaves a trial no restore reports again: its run would stay "running" and the search
        unfinished forever. Told means every seed ended (Tune has ended every trial by now,
        interrupted or not); one without its own result file was stopped by the scheduler."""
        if not self.optuna_storage:
            return
        open_runs = {ref: run for ref, run in replay(self.journal).items()
                     if ref != PARENT and run.tags.get("stage") == "search"
                     and run.tags.get("outcome") == "running"}
        if not open_runs:
            return
        import optuna

        study = optuna.load_study(study_name=self.search_name, storage=self.optuna_storage)
        told = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        for ref, run in open_runs.items():
            if int(run.tags["optuna_trial"]) in told:
                source = Path(self.work_root) / ref
                history = read_metrics(source)
                result = source / RESULT
                ended = json.loads(result.read_text())["outcome"] if result.exists() \
                    else "stopped"
                with tempfile.TemporaryDirectory() as tmp:
                    self._close(ref, ended, source if source.exists() else None,
                                history[-1] if history else {}, None, Path(tmp),
                                plots=run.tags.get("simulated") != "true")

    def _close(self, key: str, outcome: str, source: Path | None, last_result: dict,
               error_file: str | None, tmp: Path, plots: bool = True) -> None:
        """The run's end: the epochs its directory holds that MLflow lacks, its artifacts and
        final metrics, its outcome and status.

        A trial stopped early never drew its plots: the sender draws them from the staged
        files (`render`), in a process of its own, never here in Tune's loop, where drawing
        them was the driver's largest cost at a cluster's size (bench.scale). A simulated
        trial's are not drawn (`plots`): its curves are a model's, in MLflow's metrics."""
        final = {"outcome": outcome, **last_result}
        staged = tmp / "artifacts"
        staged.mkdir()
        render = False
        if source is not None:
            # Epochs reported while the driver was down reach MLflow from the trial's file.
            self._log_epochs(key, read_metrics(source))
            render = plots and _plots_stale(source)
            for name in ARTIFACTS:
                if (source / name).exists():
                    shutil.copy(source / name, staged / name)
        (staged / "final_metrics.json").write_text(json.dumps(
            {k: v for k, v in final.items() if _jsonable(v)}, indent=1))
        if error_file and os.path.exists(error_file):
            shutil.copy(error_file, staged / "error.txt")
        self.journal.artifacts(key, staged, render=render)
        self.journal.tags(key, {"outcome": outcome})
        self.journal.status(key, RUN_STATUS.get(outcome, "FINISHED"))

    def _trial_files(self, key: str, trial, tmp: Path) -> Path | None:
        """The trial's directory here, else a download of its last Ray checkpoint."""
        local = Path(self.work_root) / key
        if local.exists():
            return local
        if trial.checkpoint is not None:
            return Path(trial.checkpoint.to_directory(str(tmp / "checkpoint")))
        return None


def _plots_stale(trial_dir: Path) -> bool:
    """True when the trial's plots are missing or older than its metrics: `run_trial` draws
    them when a trial ends, so only one a scheduler stopped needs them drawn here."""
    plots = [trial_dir / LEARNING_CURVE, trial_dir / PROPAGATION_PLOT]
    metrics = trial_dir / METRICS
    if not all(p.exists() for p in plots):
        return True
    return metrics.exists() and metrics.stat().st_mtime_ns > min(
        p.stat().st_mtime_ns for p in plots)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


