"""The trial as a Ray Tune function trainable.

Each epoch is reported with a checkpoint of the trial's directory, so a scheduler (ASHA) can
stop it and a restored search resumes it. The directory itself lives under the search's
results (`<results>/searches/<name>/trials/<run key>`, one per configuration and seed): on the
machine that ran it, a restart resumes from there even when the driver died before Ray
registered the last checkpoint; on another node it is rebuilt from Ray's copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .trial import RunOptions, checkpoint_epoch, load_trial_data, plan_from_dict, run_trial


def trial_function(config: dict[str, Any]) -> None:
    from ray import tune

    plan = plan_from_dict(config["plan"])
    work = Path(config["work_root"]) / config["run_key"]
    _take_newer_checkpoint(tune.get_checkpoint(), work)
    data = load_trial_data(plan.recipe, config["dataset"], config.get("data_dir"),
                           config.get("cache_dir"))
    reported = []

    def report(metrics: dict[str, Any]) -> None:
        reported.append(metrics["epoch"])
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))

    options = RunOptions(device=config.get("device", "auto"), threads=config.get("threads"),
                         bf16=config.get("bf16", False),
                         stop_at_chance=config.get("stop_at_chance"))
    result = run_trial(plan, data, work, report, options)
    if not reported:  # it had finished before a driver restart: hand Ray its result once
        tune.report(result.metrics, checkpoint=tune.Checkpoint.from_directory(str(work)))


def _take_newer_checkpoint(checkpoint, work: Path) -> None:
    if checkpoint is None:
        return
    with checkpoint.as_directory() as restored:
        if checkpoint_epoch(restored) > checkpoint_epoch(work):
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(restored, work)
