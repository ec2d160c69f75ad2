"""One trial: train a planned network on real data, measure it, checkpoint it, resume it.

The paper's recipe (PAPER.md Sec. 6) scaled to the plan's budget: SGD with momentum 0.9 and
weight decay 1e-4, batch 128, lr 0.1 after 400 steps at 0.01, /10 at 50% and 75% of the budget
(the paper's 32k and 48k of 64k iterations; cosine and one-cycle as options). `run_trial`
reads as the recipe: build the network, then each epoch train, decide (has it diverged? is it
the last?), evaluate and measure propagation (Eq. 4, 5, 8) where `RunOptions.validates` says,
checkpoint, report. Every epoch's metrics go to a callback (Ray Tune's `tune.report` in a
search, a progress line on the command line) and into the trial directory (`directory.py`).
An observer (`TrialPhases`, a benchmark's timers) may be told where each phase starts and ends.

Re-running with the same directory resumes from its checkpoint and, on CPU, ends with the same
weights bit for bit as an uninterrupted run. A run whose loss turns non-finite ends normally
with outcome "diverged" and its last measured errors: divergence is a result, not a crash.
Every other run trains its whole budget unless `RunOptions.stop_at_chance` says otherwise.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from residual import NetSpec, build_network
from residual.propagation import measure_propagation
from spaces import Recipe, TrialPlan

from .contract import RunOptions
from .data import Batches, Splits
from .device import choose_device
from .directory import TrialDir
from .plots import render_trial_plots
from .result import PENALTY_ERROR, TrialResult

PROPAGATION_BATCH = 128

Reporter = Callable[[dict[str, Any]], None]

PHASES = ("records", "build", "propagation_at_init", "train", "val", "propagation", "test",
          "checkpoint", "report", "plots")
"""The phases `run_trial` brackets, in the order a new trial first meets them (`TrialPhases`)."""


class TrialPhases:
    """What `run_trial(..., phases=...)` tells an observer such as a benchmark's timers.

    `phases(name)` is entered around each phase of `PHASES`: "records" (the trial directory's
    plan, description and result files), "build" (network, optimiser, batches on the device),
    "propagation_at_init", then per epoch "train", "val", "propagation" and "test" (where
    `RunOptions.validates` says), "checkpoint" (saving or resuming one), "report" (the report
    callback), and "plots" at the end. `step_loss(loss)` sees each training step's loss tensor
    (still on the graph: `detach` it to keep it). The base class observes nothing and costs
    nothing beyond a call; an observer overrides either or both. Neither may change the
    tensors or the random state: the trial must train the same with and without observer.
    """

    def __call__(self, name: str) -> AbstractContextManager[object]:
        return nullcontext()

    def step_loss(self, loss: torch.Tensor) -> None:
        pass


UNOBSERVED = TrialPhases()


@dataclass
class _Setup:
    """Everything an epoch needs: the network, its optimiser and the data on its device."""

    model: torch.nn.Module
    net: NetSpec
    optimizer: torch.optim.Optimizer
    batch_order: torch.Generator
    device: torch.device
    train: Batches
    evals: dict[str, Batches]
    probe: tuple[torch.Tensor, torch.Tensor]
    autocast: Any
    total_steps: int
    """The budget in SGD steps (`Recipe.total_steps` for this training set)."""
    epochs: int
    """The epochs the budget spans."""


def run_trial(plan: TrialPlan, data: Splits, out_dir: str | Path,
              report: Reporter | None = None, options: RunOptions | None = None, *,
              phases: TrialPhases = UNOBSERVED) -> TrialResult:
    """Train `plan` on `data`, writing into `out_dir`; resume if it holds a checkpoint.
    `phases` is told where each phase starts and ends (`TrialPhases`)."""
    options = options or RunOptions()
    trial_dir = TrialDir(out_dir)
    with phases("records"):
        trial_dir.open(plan)
    if trial_dir.finished:  # nothing to redo
        return trial_dir.result()
    with phases("build"):
        setup = build(plan, data, options)
    start, history, propagation = begin(trial_dir, plan, data, setup, phases)

    recipe = plan.recipe
    result = TrialResult("ok", len(history), history[-1] if history else {}, "", history)
    for epoch in range(start, setup.epochs):
        with phases("train"):
            metrics = train_epoch(setup, recipe, epoch, phases.step_loss)
        if math.isfinite(metrics["train_loss"]):
            reason = at_chance(metrics, options.stop_at_chance, data.num_classes)
            outcome = "stopped" if reason else "ok"
            final = bool(reason) or epoch + 1 == setup.epochs
            if options.validates(epoch + 1, final):
                has_val = len(data.val_y) > 0  # a final retraining has no validation split
                metrics.update(validate(setup, has_val, propagation, epoch + 1, final, phases))
                # What a sampler and a scheduler learn from; absent where nothing was measured.
                metrics["objective"] = metrics.get("val_error", math.nan)
        else:  # the weights are no longer numbers: keep the last error that was measured
            metrics["val_error"] = next((m["val_error"] for m in reversed(history)
                                         if "val_error" in m), math.nan)
            outcome, final = "diverged", True
            reason = f"non-finite training loss at epoch {epoch + 1}"
            # A penalty that never appears among the measured errors.
            metrics["objective"] = PENALTY_ERROR
        metrics["outcome"] = outcome if final else "running"
        history.append(metrics)
        with phases("checkpoint"):
            trial_dir.save_epoch(setup.model, setup.optimizer, setup.batch_order, setup.device,
                                 metrics, propagation)
        result = TrialResult(outcome, len(history), metrics, reason, history)
        if final:  # before the last report: a scheduler may end the process right after it
            with phases("records"):
                trial_dir.write_result(result)
        if report:
            with phases("report"):
                report(metrics)
        if final:
            break
    else:  # resumed with nothing left to train
        with phases("records"):
            trial_dir.write_result(result)
    with phases("plots"):
        render_trial_plots(out_dir)
    return result


def begin(trial_dir: TrialDir, plan: TrialPlan, data: Splits, setup: _Setup,
          phases: TrialPhases) -> tuple[int, list[dict[str, Any]], dict[str, dict]]:
    """The first epoch to train, the history so far and the propagation profiles: from the
    checkpoint when there is one, else from a fresh trial directory and a first measurement
    of the untrained network."""
    if trial_dir.has_checkpoint:
        with phases("checkpoint"):
            return trial_dir.resume(setup.model, setup.optimizer, setup.batch_order,
                                    setup.device)
    with phases("propagation_at_init"):
        initial = measure_propagation(setup.model, *setup.probe)
    with phases("records"):
        return 0, [], trial_dir.start(plan, setup.net, data.describe(), initial)


def build(plan: TrialPlan, data: Splits, options: RunOptions) -> _Setup:
    """The planned network, sized to the data, with its optimiser and batches on the device."""
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(choose_device(options.device))
    cuda = device.type == "cuda"
    channels_last = cuda and options.channels_last
    recipe = plan.recipe

    _seed_everything(plan.seed)
    net = NetSpec.from_dict({**plan.net.to_dict(), "num_classes": data.num_classes,
                             "in_channels": data.in_channels})
    model = build_network(net).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    batch_order = torch.Generator().manual_seed(plan.seed)
    train = data.batches("train", recipe.batch_size, device, generator=batch_order,
                         channels_last=channels_last)
    evals = {split: data.batches(split, max(256, recipe.batch_size), device,
                                 channels_last=channels_last)
             for split in ("val", "test")}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and options.bf16)
    images = len(data.train_y)
    return _Setup(model, net, optimizer, batch_order, device, train, evals,
                  _probe_batch(data, device), autocast, recipe.total_steps(images),
                  recipe.budget_epochs(images))


def train_epoch(setup: _Setup, recipe: Recipe, epoch: int,
                step_loss: Callable[[torch.Tensor], None] = UNOBSERVED.step_loss
                ) -> dict[str, Any]:
    """One pass over the training set at the recipe's per-step learning rate, cut short where
    the budget's last step falls (the paper stops at 64k iterations, mid-epoch). Each step's
    loss is shown to `step_loss`."""
    model, optimizer = setup.model, setup.optimizer
    model.train()
    started = time.perf_counter()
    first = epoch * len(setup.train)
    loss_sum = torch.zeros((), device=setup.device, dtype=torch.float64)
    wrong = torch.zeros((), device=setup.device, dtype=torch.int64)
    seen = 0
    for step, (images, labels) in enumerate(setup.train, start=first):
        if step >= setup.total_steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step, setup.total_steps)
        with setup.autocast:
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step_loss(loss)
        # Accumulate on the device: one synchronisation per epoch, not per step.
        loss_sum += loss.detach().double() * len(labels)
        wrong += (logits.argmax(1) != labels).sum()
        seen += len(labels)
    seconds = time.perf_counter() - started
    return {"epoch": epoch + 1, "train_loss": loss_sum.item() / seen,
            "train_error": int(wrong.item()) / seen, "lr": optimizer.param_groups[0]["lr"],
            "epoch_seconds": seconds, "images_per_second": seen / seconds}


def at_chance(metrics: dict[str, Any], after: int | None, num_classes: int) -> str:
    """Why an opted-in trial stops at chance (training error still at chance after `after`
    epochs, a compute saving), or "" to go on."""
    chance = 1.0 - 1.0 / num_classes
    if after is None or metrics["epoch"] < after or metrics["train_error"] < 0.98 * chance:
        return ""
    return (f"training error {metrics['train_error']:.3f} still at chance ({chance:.3f}) "
            f"after {metrics['epoch']} epochs")


def validate(setup: _Setup, has_val: bool, propagation: dict[str, dict], epoch: int,
             final: bool, phases: TrialPhases) -> dict[str, float]:
    """The measurements of an epoch where the objective is read: the validation error (if
    there is a validation split), propagation, and on the final epoch the test error."""
    started = time.perf_counter()
    metrics = {}
    if has_val:
        with phases("val"):
            metrics.update(evaluate(setup, "val"))
    with phases("propagation"):
        metrics.update(measure(setup, propagation, epoch))
    if final:
        # The test set is measured once, at the end: a search selects on validation error,
        # and the test error of a half-trained network is read by no one.
        with phases("test"):
            metrics.update(evaluate(setup, "test"))
    metrics["eval_seconds"] = time.perf_counter() - started
    return metrics


@torch.no_grad()
def evaluate(setup: _Setup, split: str) -> dict[str, float]:
    """The error on one split ("val" or "test") of the network in evaluation mode."""
    setup.model.eval()
    wrong = torch.zeros((), device=setup.device, dtype=torch.int64)  # one synchronisation
    total = 0
    for images, labels in setup.evals[split]:
        with setup.autocast:
            wrong += (setup.model(images).argmax(1) != labels).sum()
        total += len(labels)
    return {f"{split}_error": int(wrong.item()) / max(total, 1)}


def measure(setup: _Setup, propagation: dict[str, dict], epoch: int) -> dict[str, float]:
    """Propagation (Eq. 4, 5, 8) on the fixed probe batch: kept per epoch, summarised as
    metrics."""
    profile = measure_propagation(setup.model, *setup.probe)
    propagation[str(epoch)] = profile.to_dict()
    return {f"prop_{k}": v for k, v in profile.summary().items()}


def _probe_batch(data: Splits, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, un-augmented batch of training images for the propagation measurements."""
    index = torch.randperm(len(data.train_y),
                           generator=torch.Generator().manual_seed(0))[:PROPAGATION_BATCH]
    batches = Batches(data.train_x[index], data.train_y[index], batch_size=len(index),
                      mean=data.mean, std=data.std, device=device, train=False, flip=False)
    return next(iter(batches))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
