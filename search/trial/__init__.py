"""One training run, knowing nothing of searches: no Ray, no MLflow.

It runs the same under Ray Tune, from `resnet-search train`, or in a notebook:

    from search.trial import RunOptions, load_trial_data, run_trial
    data = load_trial_data(plan.recipe, "digits")
    result = run_trial(plan, data, "out/", options=RunOptions(device="cpu"))

    data/          sources, the decoded-tensor cache, splits, on-device batches and augmentation
    loop.py        the recipe's training loop (`run_trial`)
    directory.py   the trial directory: files, checkpoint, resume, result
    result.py      outcomes
    plots.py       the trial's learning curve and propagation plots
"""

from .data import DataError, DataOptions, Splits, load_data, load_trial_data
from .directory import (
    TrialDir,
    TrialDirError,
    checkpoint_epoch,
    load_propagation,
    plan_from_dict,
    plan_to_dict,
    read_metrics,
)
from .loop import RunOptions, run_trial
from .plots import render_trial_plots
from .result import PENALTY_ERROR, TrialResult, trial_outcome

__all__ = [
    "PENALTY_ERROR",
    "DataError",
    "DataOptions",
    "RunOptions",
    "Splits",
    "TrialDir",
    "TrialDirError",
    "TrialResult",
    "checkpoint_epoch",
    "load_data",
    "load_propagation",
    "load_trial_data",
    "plan_from_dict",
    "plan_to_dict",
    "read_metrics",
    "render_trial_plots",
    "run_trial",
    "trial_outcome",
]
