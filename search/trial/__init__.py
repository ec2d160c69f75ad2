"""One training run, knowing nothing of searches: no Ray, no MLflow.

It runs the same under Ray Tune, from `resnet-search train`, or in a notebook:

    from search.trial import RunOptions, load_trial_data, run_trial
    data = load_trial_data(plan.recipe, "digits")
    result = run_trial(plan, data, "out/", options=RunOptions(device="cpu"))

    contract.py    `TrialConfig`, what a search hands each trial; run keys; the files' names
    device.py      the one device decision (`choose_device`)
    data/          sources, the decoded-tensor cache, splits, on-device batches and augmentation
    loop.py        the recipe's training loop (`run_trial`)
    directory.py   the trial directory: files, checkpoint, resume, result
    result.py      outcomes
    plots.py       the trial's learning curve and propagation plots
    simulated.py   a simulated trial (`--simulate`): the learning-curve model of curve_model.py
                   in place of training, the same reports, records and resume; no torch

The contract, the device decision and the outcomes import without torch, so the report and the
command line read them in a fraction of a second; the rest loads on first use (PEP 562).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .contract import (
    STAGES,
    RunOptions,
    TrialConfig,
    TrialConfigError,
    TrialContext,
    configuration_key,
    plan_from_dict,
    plan_to_dict,
    read_metrics,
    run_key,
)
from .device import DeviceError, choose_device
from .result import PENALTY_ERROR, UNFINISHED, TrialResult, trial_outcome

if TYPE_CHECKING:
    from .data import DataError, DataOptions, Splits, load_data, load_trial_data
    from .directory import (
        TrialDir,
        TrialDirError,
        checkpoint_epoch,
        load_propagation,
    )
    from .loop import PHASES, TrialPhases, run_trial
    from .plots import render_trial_plots

_LAZY = {
    "DataError": "data", "DataOptions": "data", "Splits": "data", "load_data": "data",
    "load_trial_data": "data", "TrialDir": "directory", "TrialDirError": "directory",
    "checkpoint_epoch": "directory", "load_propagation": "directory",
    "PHASES": "loop", "TrialPhases": "loop", "run_trial": "loop",
    "render_trial_plots": "plots",
}
"""Names that need torch (or numpy's data stack), and the module that defines each."""

__all__ = [
    "PENALTY_ERROR",
    "PHASES",
    "STAGES",
    "DataError",
    "DataOptions",
    "DeviceError",
    "RunOptions",
    "Splits",
    "TrialConfig",
    "TrialConfigError",
    "TrialContext",
    "TrialDir",
    "TrialDirError",
    "TrialPhases",
    "TrialResult",
    "UNFINISHED",
    "checkpoint_epoch",
    "choose_device",
    "configuration_key",
    "load_data",
    "load_propagation",
    "load_trial_data",
    "plan_from_dict",
    "plan_to_dict",
    "read_metrics",
    "render_trial_plots",
    "run_key",
    "run_trial",
    "trial_outcome",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
