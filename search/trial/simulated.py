"""A simulated trial: the learning-curve model (`curve_model.py`) in place of training, behind
the boundary a trained trial has (`TrialConfig` in, one metrics dict per epoch out).

A search run with `--simulate` (`SearchConfig.simulate`) hands every trial a `TrialContext`
whose `simulate` is the seconds an epoch sleeps (`--simulate-epoch-seconds` divided by
`--simulate-speedup`). The trial then sleeps that long per epoch and reports what the model
says a trained one would have measured: training loss and error every epoch, the validation
error where `RunOptions.validates` says (ASHA's rungs, the last epoch, every N with
`--validate-every`), the test error at the end. Everything around it is the real machinery:
Ray Tune's reports and checkpoints, ASHA, the Optuna searcher, resume, MLflow.

No torch, torchvision or `residual`'s torch modules are imported here (nor by
`search.trainable` on this path), so a worker holds about a Ray worker's memory and a hundred
simulated trials fit on one machine. Nothing is loaded either: the data's shape is CIFAR-10's
(`SIMULATED_DATA`), which the model was fitted on.

Its trial directory holds what a trained trial's does less what needs a network: plan.json,
metrics.jsonl, result.json, and `checkpoint.json` (the epoch reached, written after the
epoch's metrics, atomically) in place of checkpoint.pt; no propagation.json. The curve is a
function of the configuration, the seed and the epoch, so a resumed trial reports the epochs
it had left exactly as an uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spaces import Recipe, TrialPlan

from .contract import (
    METRICS,
    PLAN,
    RESULT,
    TrialConfig,
    metrics_upto,
    plan_to_dict,
    write_json,
)
from .curve_model import Curve, curve
from .result import TrialResult

SIMULATED_CHECKPOINT = "checkpoint.json"
"""A simulated trial's checkpoint: {"epoch": the last epoch it reported}."""
SIMULATED_DATA = {"num_classes": 10, "in_channels": 3, "pool": 50_000}
"""The shape a simulated search gives its networks: CIFAR-10's classes and channels, and its
50k training images (the pool a recipe's training and validation splits are cut from)."""
DATA_LABEL = "simulated"
"""What a simulated search's records name as its dataset."""

Reporter = Callable[[dict[str, Any]], None]


def simulated_train_images(recipe: Recipe) -> int:
    """The training images a recipe's budget is counted over in a simulated search: its
    train_size, or the CIFAR-10 pool less its validation split (the full scale's 45k)."""
    if recipe.train_size is not None:
        return recipe.train_size
    return SIMULATED_DATA["pool"] - recipe.val_size


def simulated_epochs(recipe: Recipe) -> int:
    """The epochs a recipe's budget spans in a simulated search."""
    return recipe.budget_epochs(simulated_train_images(recipe))


def run_simulated_trial(trial: TrialConfig, report: Reporter | None = None,
                        sleep: Callable[[float], None] = time.sleep) -> TrialResult:
    """Run `trial` on the model, writing into its directory; resume from its checkpoint.json;
    a finished one (result.json) is returned as it ended. Each epoch sleeps
    `trial.context.simulate` seconds first."""
    seconds = trial.context.simulate
    if seconds is None:
        raise ValueError(f"trial {trial.run_key} is not a simulated one (its context's "
                         "simulate is None): run it with run_trial")
    work = trial.directory
    work.mkdir(parents=True, exist_ok=True)
    if (work / RESULT).exists():
        return read_result(work)
    plan, options = trial.plan, trial.context.options
    epochs = simulated_epochs(plan.recipe)
    start = simulated_checkpoint_epoch(work)
    history = metrics_upto(work, upto=start)
    if not start:
        write_json(work / PLAN, {**plan_to_dict(plan), "data": f"{DATA_LABEL}: the "
                                 "learning-curve model of search/trial/curve_model.py"})
    model = curve(plan.net, epochs, plan.recipe.val_size, trial.configuration_key, plan.seed)
    result = TrialResult("ok", len(history), history[-1] if history else {}, "", history)
    for epoch in range(start + 1, epochs + 1):
        started = time.perf_counter()
        sleep(seconds)
        final = epoch == epochs
        metrics = epoch_metrics(model, plan, epoch, options.validates(epoch, final), final)
        metrics["epoch_seconds"] = time.perf_counter() - started
        metrics["outcome"] = "ok" if final else "running"
        history.append(metrics)
        with open(work / METRICS, "a") as f:  # the records first, the checkpoint last
            f.write(json.dumps(metrics) + "\n")
        write_json(work / SIMULATED_CHECKPOINT, {"epoch": epoch})
        result = TrialResult(metrics["outcome"], epoch, metrics, "", history)
        if final:  # before the last report: a scheduler may end the process right after it
            write_result(work, result)
        if report:
            report(metrics)
    if start >= epochs:  # resumed with nothing left to run
        write_result(work, result)
    return result


def epoch_metrics(model: Curve, plan: TrialPlan, epoch: int, validated: bool,
                  final: bool) -> dict[str, Any]:
    """What a trained trial reports after `epoch`, as the model has it (the names of
    `search.trial.loop`'s metrics)."""
    recipe = plan.recipe
    images = simulated_train_images(recipe)
    total = recipe.total_steps(images)
    last_step = min(epoch * recipe.steps_per_epoch(images), total) - 1
    train_error = model.train_error(epoch)
    metrics: dict[str, Any] = {
        "epoch": epoch, "train_loss": math.log(plan.net.num_classes) * train_error
        / model.chance, "train_error": train_error, "lr": recipe.lr_at(last_step, total)}
    if validated:
        metrics["val_error"] = model.val_error(epoch)
        metrics["objective"] = metrics["val_error"]
        metrics["eval_seconds"] = 0.0
    if final:
        metrics["test_error"] = model.test_error()
    return metrics


def simulated_checkpoint_epoch(directory: str | Path) -> int:
    """The epoch a simulated trial directory's checkpoint ends (0 when it has none)."""
    path = Path(directory) / SIMULATED_CHECKPOINT
    if not path.exists():
        return 0
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is corrupted ({type(error).__name__}); start the search "
                         "over with --fresh") from None


def write_result(directory: Path, result: TrialResult) -> None:
    write_json(directory / RESULT, {"outcome": result.outcome, "reason": result.reason,
                                    "epochs": result.epochs, "metrics": result.metrics})


def read_result(directory: Path) -> TrialResult:
    saved = json.loads((directory / RESULT).read_text())
    return TrialResult(saved["outcome"], saved["epochs"], saved["metrics"], saved["reason"],
                       metrics_upto(directory, upto=saved["epochs"]))
