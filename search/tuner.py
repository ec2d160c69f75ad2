"""Ray Tune assembly: join or start Ray, size the concurrency, build (or restore) the Tuner.

The trainable is `trainable.trial_function`; the searcher, the scheduler (ASHA or FIFO) and the
callbacks (MLflow tracking, progress) are wired here and nowhere else.
"""

from __future__ import annotations

import os

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from spaces import SearchSpace

from .config import SearchConfig, SearchConfigError, Settings
from .progress import ProgressPrinter
from .searcher import SpaceSearcher
from .tracking import MlflowTracker
from .trainable import trial_function


def connect_ray(config: SearchConfig) -> bool:
    """Join the configured cluster, or start a local Ray; True if we started it."""
    if ray.is_initialized():
        return False
    # Experiment state (searcher included) saved every second rather than every ten: a
    # driver killed mid-search loses at most a second of bookkeeping.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
              "configure_logging": True}
    try:
        if config.address is None:
            ray.init(address="local", **kwargs)
        else:
            ray.init(address=config.address, **kwargs)
    except Exception as error:
        where = config.address or "a local Ray instance"
        raise SearchConfigError(f"cannot start or join Ray at {where}: "
                                f"{str(error).splitlines()[0]}") from None
    return True


def default_concurrency(config: SearchConfig) -> int:
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 1) // config.cpus_per_trial)
    if config.gpus_per_trial:
        by_cpu = min(by_cpu, int(resources.get("GPU", 0) // config.gpus_per_trial))
    return max(1, by_cpu)


def make_tuner(config: SearchConfig, settings: Settings, searcher: SpaceSearcher, state: dict,
               space: SearchSpace, total: int, concurrency: int) -> tune.Tuner:
    """A new Tuner, or the search's own restored one when its experiment state exists."""
    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    trainable = tune.with_resources(trial_function, resources)
    experiment = f"{settings.storage.rstrip('/')}/{settings.name}"
    if tune.Tuner.can_restore(experiment):
        return tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    if config.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=settings.epochs,
                                  grace_period=min(config.grace_period, settings.epochs),
                                  reduction_factor=config.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    callbacks = [MlflowTracker(settings.tracking_uri, state["experiment_id"],
                               state["parent_run_id"], settings.name, space.name,
                               str(settings.paths.work), settings.optuna_storage)]
    if config.progress:
        callbacks.append(ProgressPrinter(total))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric="objective", mode="min",
            num_samples=total, max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(
            name=settings.name, storage_path=settings.storage, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0))
