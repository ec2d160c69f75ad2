"""One trial: train a planned network on real data, measure it, checkpoint it, resume it.

The paper's recipe (PAPER.md Sec. 6) scaled to the plan's epoch budget: SGD with momentum 0.9
and weight decay 1e-4, batch 128, lr 0.1 after a 0.01 warm-up, /10 at 50% and 75% of the
budget (cosine and one-cycle as options). After every epoch the trial

- reports train loss/error, validation and test error, lr, training time and throughput,
  and the time spent evaluating and measuring, to a callback (Ray Tune's `tune.report` in a
  search, a progress line on the command line);
- measures propagation (`residual.propagation`: Eq. 4, 5, 8) on a fixed training batch;
- writes everything into its directory: `checkpoint.pt` (model, optimizer, RNG states, epoch;
  the lr is a pure function of the position in the budget, so there is no scheduler state),
  `metrics.jsonl`, `propagation.json`, `plan.json`, and at the end `result.json` and plots.

Re-running with the same directory resumes from `checkpoint.pt` and, on CPU, ends with the same
weights bit for bit as an uninterrupted run. A run whose loss turns non-finite, or whose
training error is still at chance after `recipe.chance_epochs`, ends normally with
outcome "diverged" and the penalty error 1.0: divergence is a result, not a crash.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from residual import NetSpec, build_network
from residual.propagation import PropagationProfile, measure_propagation
from spaces import Recipe, TrialPlan

from .data import Batches, DataOptions, Splits, load_data

PENALTY_ERROR = 1.0
"""The validation/test error a diverged trial reports: worse than any real result."""
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
PROPAGATION = "propagation.json"
RESULT = "result.json"
PLAN = "plan.json"
PROPAGATION_BATCH = 128
MAX_VAL_FRACTION = 0.2
"""At most this share of the training pool is held out, whatever the recipe's val_size."""

Reporter = Callable[[dict[str, Any]], None]


class TrialDirError(ValueError):
    """The output directory holds another trial: resuming it would mix two runs."""


@dataclass(frozen=True)
class RunOptions:
    """How to run a trial (not what to train): device and speed settings."""

    device: str = "auto"
    """auto = cuda when available, else cpu."""
    bf16: bool = True
    """bf16 autocast on CUDA (ignored on CPU)."""
    channels_last: bool = True
    """channels_last memory format on CUDA (ignored on CPU)."""
    threads: int | None = None
    """torch CPU threads; a search sets it to the trial's CPU share."""

    def resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)


@dataclass
class TrialResult:
    outcome: str
    """ok | diverged."""
    epochs: int
    metrics: dict[str, Any]
    """The last epoch's metrics (penalty errors when diverged)."""
    reason: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


def trial_outcome(last_metrics: dict[str, Any] | None, error: bool = False) -> str:
    """ok | diverged | stopped | error, from a trial's last reported metrics.

    A trial reports "running" until its last epoch, so one whose last report still says so
    was stopped early by a scheduler (ASHA); one that raised, or reported nothing, is "error".
    """
    if error or not last_metrics or "outcome" not in last_metrics:
        return "error"
    return "stopped" if last_metrics["outcome"] == "running" else last_metrics["outcome"]


def plan_to_dict(plan: TrialPlan) -> dict[str, Any]:
    return {"net": plan.net.to_dict(), "recipe": plan.recipe.to_dict(), "seed": plan.seed,
            "params": plan.params}


def plan_from_dict(data: dict[str, Any]) -> TrialPlan:
    return TrialPlan(NetSpec.from_dict(data["net"]), Recipe(**data["recipe"]), data["seed"],
                     data.get("params", {}))


def load_trial_data(recipe: Recipe, dataset: str, data_dir: str | None = None,
                    cache_dir: str | None = None) -> Splits:
    """Load the recipe's data regime; the split never depends on the trial's seed, so every
    trial of a search sees the same training, validation and test images.

    The recipe's sizes are upper bounds: a small dataset (digits) keeps at most 20% of its
    training pool for validation and trains on what is left.
    """
    base = DataOptions(dataset, data_dir, recipe.image_size, cache_dir=cache_dir)
    pool = len(load_data(base).train_y)
    val_size = min(recipe.val_size, int(pool * MAX_VAL_FRACTION))
    train_size = recipe.train_size
    if train_size is not None and train_size + val_size >= pool:
        train_size = None
    return load_data(DataOptions(dataset, data_dir, recipe.image_size, train_size, val_size,
                                 cache_dir=cache_dir))


def run_trial(plan: TrialPlan, data: Splits, out_dir: str | Path,
              report: Reporter | None = None, options: RunOptions | None = None) -> TrialResult:
    """Train `plan` on `data`, writing into `out_dir`; resume if it holds a checkpoint."""
    options = options or RunOptions()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_plan(out, plan)
    if (out / RESULT).exists():  # finished before: nothing to redo
        return _load_result(out)
    if options.threads:
        torch.set_num_threads(options.threads)
    device = options.resolve_device()
    cuda = device.type == "cuda"
    recipe = plan.recipe

    _seed_everything(plan.seed)
    net_spec = NetSpec.from_dict({**plan.net.to_dict(), "num_classes": data.num_classes,
                                  "in_channels": data.in_channels})
    model = build_network(net_spec).to(device)
    if cuda and options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay)
    batch_order = torch.Generator().manual_seed(plan.seed)
    probe = _probe_batch(data, device)
    propagation: dict[str, dict] = {}
    history: list[dict[str, Any]] = []
    start_epoch = 0

    if (out / CHECKPOINT).exists():
        state = torch.load(out / CHECKPOINT, weights_only=True, map_location="cpu")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"], batch_order, device)
        start_epoch = state["epoch"]
        history = _read_metrics(out, upto=start_epoch)
        propagation = {epoch: profile for epoch, profile
                       in json.loads((out / PROPAGATION).read_text()).items()
                       if int(epoch) <= start_epoch}
    else:
        propagation["0"] = measure_propagation(model, *probe).to_dict()
        _write_json(out / PLAN, {**plan_to_dict(plan), "net": net_spec.to_dict(),
                                 "data": data.describe()})
        _write_json(out / PROPAGATION, propagation)
        (out / METRICS).write_text("")

    train = data.batches("train", recipe.batch_size, device, generator=batch_order,
                         channels_last=cuda and options.channels_last)
    evals = {split: data.batches(split, max(256, recipe.batch_size), device,
                                 channels_last=cuda and options.channels_last)
             for split in ("val", "test")}
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and options.bf16)
    chance = 1.0 - 1.0 / data.num_classes

    outcome, reason = "ok", ""
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        loss_sum, wrong, seen = _train_epoch(model, optimizer, train, recipe, epoch, autocast)
        train_loss = loss_sum / seen
        seconds = time.perf_counter() - started
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_error": wrong / seen,
            "lr": recipe.lr_at(epoch + 1 - 1e-9),
            "epoch_seconds": seconds,
            "images_per_second": seen / seconds,
        }
        if not math.isfinite(train_loss):
            outcome, reason = "diverged", f"non-finite training loss at epoch {epoch + 1}"
        elif epoch + 1 >= recipe.chance_epochs and wrong / seen >= 0.98 * chance:
            outcome, reason = "diverged", (f"training error {wrong / seen:.3f} still at chance "
                                           f"({chance:.3f}) after {epoch + 1} epochs")
        if outcome == "diverged":
            metrics.update(val_error=PENALTY_ERROR, test_error=PENALTY_ERROR)
        else:
            started = time.perf_counter()
            for split, batches in evals.items():
                metrics[f"{split}_error"] = _error(model, batches, autocast)
            profile = measure_propagation(model, *probe)
            propagation[str(epoch + 1)] = profile.to_dict()
            metrics.update({f"prop_{k}": v for k, v in profile.summary().items()})
            metrics["eval_seconds"] = time.perf_counter() - started
        metrics["outcome"] = outcome if outcome == "diverged" or epoch + 1 == recipe.epochs \
            else "running"
        metrics["objective"] = metrics["val_error"]
        history.append(metrics)
        _save_epoch(out, model, optimizer, batch_order, device, epoch + 1, metrics, propagation)
        final = outcome == "diverged" or epoch + 1 == recipe.epochs
        if final:  # before the last report: a scheduler may end the process right after it
            _write_result(out, outcome, reason, history)
        if report:
            report(metrics)
        if final:
            break
    else:  # resumed with nothing left to train
        _write_result(out, outcome, reason, history)

    from .plots import render_trial_plots

    render_trial_plots(out)
    return TrialResult(outcome, len(history), history[-1] if history else {}, reason, history)


def _write_result(out: Path, outcome: str, reason: str, history: list[dict[str, Any]]) -> None:
    _write_json(out / RESULT, {"outcome": outcome, "reason": reason, "epochs": len(history),
                               "metrics": history[-1] if history else {}})


def _train_epoch(model, optimizer, batches, recipe: Recipe, epoch: int,
                 autocast) -> tuple[float, int, int]:
    model.train()
    steps = len(batches)
    loss_sum = torch.zeros((), device=next(model.parameters()).device, dtype=torch.float64)
    wrong = torch.zeros((), device=loss_sum.device, dtype=torch.int64)
    seen = 0
    for step, (images, labels) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(epoch + step / steps)
        with autocast:
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accumulate on the device: one synchronisation per epoch, not per step.
        loss_sum += loss.detach().double() * len(labels)
        wrong += (logits.argmax(1) != labels).sum()
        seen += len(labels)
    return loss_sum.item(), int(wrong.item()), seen


@torch.no_grad()
def _error(model, batches, autocast) -> float:
    model.eval()
    wrong = total = 0
    for images, labels in batches:
        with autocast:
            wrong += int((model(images).argmax(1) != labels).sum())
        total += len(labels)
    return wrong / max(total, 1)


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


def _rng_state(batch_order: torch.Generator, device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "batch_order": batch_order.get_state(),
             "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], batch_order: torch.Generator,
                   device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    batch_order.set_state(state["batch_order"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_epoch(out: Path, model, optimizer, batch_order, device, epoch: int,
                metrics: dict[str, Any], propagation: dict[str, dict]) -> None:
    """The epoch's records first, the checkpoint last (atomically): a kill at any point
    leaves records at least as new as the checkpoint, and resuming trims them back to it."""
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(metrics) + "\n")
    _write_json(out / PROPAGATION, propagation)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "rng": _rng_state(batch_order, device), "epoch": epoch}
    tmp = out / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)


def checkpoint_epoch(out: str | Path) -> int:
    """The epoch a trial directory's checkpoint ends (0 when it has none)."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        return 0
    return int(torch.load(path, weights_only=True, mmap=True, map_location="cpu")["epoch"])


def _read_metrics(out: Path, upto: int) -> list[dict[str, Any]]:
    """The metrics of epochs 1..upto; later lines (written after the checkpoint) are dropped."""
    path = out / METRICS
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [m for m in lines if m["epoch"] <= upto]
    path.write_text("".join(json.dumps(m) + "\n" for m in kept))
    return kept


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _check_same_plan(out: Path, plan: TrialPlan) -> None:
    """Refuse to resume a directory that holds a different trial."""
    path = out / PLAN
    if not path.exists():
        return
    saved = json.loads(path.read_text())
    mine = plan_to_dict(plan)
    same = (saved["recipe"] == mine["recipe"] and saved["seed"] == mine["seed"]
            and {**saved["net"], "num_classes": 0, "in_channels": 0}
            == {**mine["net"], "num_classes": 0, "in_channels": 0})
    if not same:
        raise TrialDirError(f"{out} holds a different trial ({saved['net']['unit']}, seed "
                         f"{saved['seed']}); choose another output directory")


def _load_result(out: Path) -> TrialResult:
    saved = json.loads((out / RESULT).read_text())
    history = _read_metrics(out, upto=saved["epochs"])
    return TrialResult(saved["outcome"], saved["epochs"], saved["metrics"], saved["reason"],
                       history)


def load_propagation(out: str | Path) -> dict[int, PropagationProfile]:
    """The propagation profiles a trial wrote, by epoch (0 = initialisation)."""
    data = json.loads((Path(out) / PROPAGATION).read_text())
    return {int(epoch): PropagationProfile.from_dict(p) for epoch, p in data.items()}
