"""The trial as a Ray Tune function trainable.

Each epoch is reported with a checkpoint of the trial's directory, so a scheduler (ASHA) can
stop it and a restored search resumes it. The directory itself lives under the search's
results (`<results>/searches/<name>/trials/<run key>`, one per configuration and seed): on the
machine that ran it, a restart resumes from there even when the driver died before Ray
registered the last checkpoint; on another node it is rebuilt from Ray's copy.

The data comes from the driver, through Ray's object store (`StagedData`), so a trial on a node
without the driver's data path still trains; a trial whose recipe asks for another data regime
(a searched image_size, train_size or val_size) loads its own from the path.

A simulated trial (`TrialContext.simulate`, `--simulate`) runs the learning-curve model
instead (`search.trial.simulated`), with the same reports and checkpoints. This module imports
torch only on the training path, so the worker of a simulated trial never does.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spaces import Recipe, load_space

from .trial import TrialConfig, TrialContext, choose_device
from .trial.simulated import run_simulated_trial, simulated_checkpoint_epoch

if TYPE_CHECKING:  # these need torch: imported where a trial trains
    from .trial import Splits, TrialPhases


def data_regime(recipe: Recipe, dataset: str) -> tuple:
    """What `load_trial_data` makes of a recipe: equal regimes, equal splits."""
    return (dataset, recipe.image_size, recipe.train_size, recipe.val_size)


@dataclass(frozen=True)
class StagedData:
    """Splits the driver loaded once, for the trials whose recipes share their regime."""

    regime: tuple
    splits: Splits


TrialObserver = Callable[[TrialConfig], "TrialPhases"]
_observer: TrialObserver | None = None


def observe_trials(observer: TrialObserver | None) -> None:
    """Show every trial this process runs from now on to `observer(config)`, whose
    `TrialPhases` sees the trial's phases: those of `run_trial`, and around them "data" (its
    data, when it loads its own) and "trial" (the whole run). For benchmarks, from a Ray worker
    setup hook; None stops observing."""
    global _observer
    _observer = observer


def trial_function(config: dict[str, Any], data: StagedData | None = None) -> None:
    from ray import tune

    context = TrialContext.from_dict(config)
    if ":" in context.space_source:
        # A user's file may declare shortcut kinds or placements: import it here too, so this
        # worker knows them before it reads the plan.
        load_space(context.space_source, context.scale)
    trial = TrialConfig.from_dict(config)
    if context.simulate is not None:
        simulated_trial(trial)
        return
    from .trial import TrialPhases, checkpoint_epoch, load_trial_data, run_trial

    work = trial.directory
    options = replace(context.options, device=trial_device(context.options.device))
    phases = _observer(trial) if _observer else TrialPhases()
    _take_newer_checkpoint(tune.get_checkpoint(), work, checkpoint_epoch)
    if data is not None and data.regime == data_regime(trial.plan.recipe, context.dataset):
        splits = data.splits
    else:
        with phases("data"):
            splits = load_trial_data(trial.plan.recipe, context.dataset, context.data_dir,
                                     context.cache_dir)
    reported = []

    def report(metrics: dict[str, Any]) -> None:
        reported.append(metrics["epoch"])
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))

    with phases("trial"):
        result = run_trial(trial.plan, splits, work, report, options, phases=phases)
    if not reported:  # it had finished before a driver restart: hand Ray its result once
        tune.report(result.metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))


def simulated_trial(trial: TrialConfig) -> None:
    """The trial as the learning-curve model (`search.trial.simulated`), reported to Ray Tune
    epoch by epoch with its (small) trial directory as the checkpoint."""
    from ray import tune

    work = trial.directory
    _take_newer_checkpoint(tune.get_checkpoint(), work, simulated_checkpoint_epoch)
    reported = []

    def report(metrics: dict[str, Any]) -> None:
        reported.append(metrics["epoch"])
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))

    result = run_simulated_trial(trial, report)
    if not reported:  # it had finished before a driver restart: hand Ray its result once
        tune.report(result.metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))


def _take_newer_checkpoint(checkpoint, work: Path, epoch_of: Callable[[Path], int]) -> None:
    if checkpoint is None:
        return
    with checkpoint.as_directory() as restored:
        if epoch_of(restored) > epoch_of(work):
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(restored, work)


def trial_device(device: str) -> str:
    """The device this Ray trial trains on, from the GPUs Ray gave it (`choose_device`)."""
    import ray

    return choose_device(device, ray.get_gpu_ids())
