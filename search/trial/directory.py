"""The trial directory: what one training run leaves on disk, and how it resumes from it.

    plan.json         the network that trained (with the data's channels and classes) and recipe
    metrics.jsonl     one line per epoch
    propagation.json  the propagation profile at initialisation and after every validated epoch
    checkpoint.pt     model, optimizer, RNG states and epoch, replaced atomically each epoch
    result.json       outcome and last metrics, once the trial has ended
    *.png             learning curve and propagation plots (`plots.py`)

Records are written before the checkpoint, so a kill at any point leaves records at least as new
as the checkpoint; resuming trims them back to it. The learning rate is a pure function of the
position in the budget, so there is no scheduler state to save.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from residual import NetSpec
from residual.propagation import PropagationProfile
from spaces import TrialPlan

from .contract import (
    CHECKPOINT,
    METRICS,
    PLAN,
    PROPAGATION,
    RESULT,
    TRIAL_FILES,
    metrics_upto,
    plan_to_dict,
    write_json,
)
from .result import TrialResult


class TrialDirError(ValueError):
    """The output directory holds another trial (or is unusable); the message says what to do."""


class TrialDir:
    """One trial's files, read and written in the order that keeps them resumable."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def clear(self) -> None:
        """Remove the trial's own files (`--fresh`), and nothing else a directory may hold."""
        for name in TRIAL_FILES:
            for path in (self.file(name), self.file(name + ".tmp")):
                path.unlink(missing_ok=True)

    @property
    def finished(self) -> bool:
        return self.file(RESULT).exists()

    @property
    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).exists()

    def open(self, plan: TrialPlan) -> None:
        """Create the directory, refusing one that holds a different trial."""
        if self.path.exists() and not self.path.is_dir():
            raise TrialDirError(f"{self.path} is a file, not a trial directory; choose another "
                                "output directory")
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.file(PLAN).exists():
            return
        with self.reading(PLAN):
            saved = json.loads(self.file(PLAN).read_text())
        mine = plan_to_dict(plan)
        # The data fills in channels and classes: compare what the plan itself fixes.
        blank = {"num_classes": 0, "in_channels": 0}
        same = (saved["recipe"] == mine["recipe"] and saved["seed"] == mine["seed"]
                and {**saved["net"], **blank} == {**mine["net"], **blank})
        if not same:
            raise TrialDirError(f"{self.path} holds a different trial ({saved['net']['unit']}, "
                                f"seed {saved['seed']}); choose another output directory")

    @contextmanager
    def reading(self, name: str):
        """A file of the directory that cannot be read back is named, with the way out."""
        try:
            yield
        except (OSError, ValueError, KeyError, TypeError, RuntimeError, EOFError,
                pickle.UnpicklingError) as error:
            reason = "not a checkpoint this trial wrote" if name == CHECKPOINT else \
                (str(error).splitlines() or [""])[0][:120] or type(error).__name__
            raise TrialDirError(f"{self.file(name)} is corrupted ({reason}); start the trial "
                                "over with --fresh, or choose another output directory") \
                from None

    def start(self, plan: TrialPlan, net: NetSpec, data_description: str,
              initial: PropagationProfile) -> dict[str, dict]:
        """The first records of a new trial: its plan and the propagation at initialisation."""
        propagation = {"0": initial.to_dict()}
        write_json(self.file(PLAN), {**plan_to_dict(plan), "net": net.to_dict(),
                                     "data": data_description})
        write_json(self.file(PROPAGATION), propagation)
        self.file(METRICS).write_text("")
        return propagation

    def resume(self, model, optimizer, batch_order: torch.Generator,
               device: torch.device) -> tuple[int, list[dict[str, Any]], dict[str, dict]]:
        """Load the checkpoint into model, optimizer and RNGs; the epoch it ends, and the
        metrics and propagation records up to that epoch."""
        with self.reading(CHECKPOINT):
            state = torch.load(self.file(CHECKPOINT), weights_only=True, map_location="cpu")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _set_rng_state(state["rng"], batch_order, device)
            epoch = state["epoch"]
        with self.reading(PROPAGATION):
            propagation = {key: profile for key, profile
                           in json.loads(self.file(PROPAGATION).read_text()).items()
                           if int(key) <= epoch}
        return epoch, self.history(upto=epoch), propagation

    def save_epoch(self, model, optimizer, batch_order: torch.Generator, device: torch.device,
                   metrics: dict[str, Any], propagation: dict[str, dict]) -> None:
        """The epoch's records first, the checkpoint last (atomically)."""
        with open(self.file(METRICS), "a") as f:
            f.write(json.dumps(metrics) + "\n")
        write_json(self.file(PROPAGATION), propagation)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "rng": _rng_state(batch_order, device), "epoch": metrics["epoch"]}
        tmp = self.file(CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.file(CHECKPOINT))

    def history(self, upto: int) -> list[dict[str, Any]]:
        """The metrics of epochs 1..upto (`metrics_upto`); a trial that got this far wrote a
        metrics file, so a missing one is named as corrupted."""
        with self.reading(METRICS):
            self.file(METRICS).stat()
            return metrics_upto(self.path, upto)

    def write_result(self, result: TrialResult) -> None:
        write_json(self.file(RESULT), {"outcome": result.outcome, "reason": result.reason,
                                       "epochs": result.epochs, "metrics": result.metrics})

    def result(self) -> TrialResult:
        with self.reading(RESULT):
            saved = json.loads(self.file(RESULT).read_text())
        return TrialResult(saved["outcome"], saved["epochs"], saved["metrics"], saved["reason"],
                           self.history(upto=saved["epochs"]))

    def propagation(self) -> dict[int, PropagationProfile]:
        data = json.loads(self.file(PROPAGATION).read_text())
        return {int(epoch): PropagationProfile.from_dict(p) for epoch, p in data.items()}


def checkpoint_epoch(out: str | Path) -> int:
    """The epoch a trial directory's checkpoint ends (0 when it has none)."""
    path = Path(out) / CHECKPOINT
    if not path.exists():
        return 0
    with TrialDir(out).reading(CHECKPOINT):
        return int(torch.load(path, weights_only=True, mmap=True, map_location="cpu")["epoch"])


def load_propagation(out: str | Path) -> dict[int, PropagationProfile]:
    """The propagation profiles a trial wrote, by epoch (0 = initialisation)."""
    return TrialDir(out).propagation()


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
