"""How a trial trains: the paper's CIFAR recipe (Sec. 6 of PAPER.md), scaled to a budget.

The recipe also fixes the data regime the network sees (image size, training subset,
validation split), because shrinking those is how a search is scaled down to a laptop.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from residual.validation import check_choice, check_int, check_number

SCHEDULES = ("step", "cosine", "onecycle")


@dataclass(frozen=True)
class Recipe:
    """SGD with momentum, weight decay and a warm-up; defaults are the paper's full recipe."""

    epochs: int = 164
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    """Epochs at `warmup_lr` before `lr`: the paper's 400 iterations at 0.01 (about one epoch)."""
    warmup_lr: float = 0.01
    schedule: str = "step"
    """step: lr / 10 at 50% and 75% of the budget (the paper's 32k/48k of 64k iterations);
    cosine: cosine decay to 0; onecycle: linear ramp to lr over 30% then cosine down."""
    image_size: int = 32
    train_size: int | None = None
    """Training images (a stratified subset); None = all that the validation split leaves."""
    val_size: int = 5000
    """Stratified validation images held out of the training set (the paper's 45k/5k)."""
    chance_epochs: int = 3
    """A trial whose training error is still at chance after this many epochs has diverged."""

    def __post_init__(self) -> None:
        # val_size >= 1: the search's objective is the validation error.
        for name, low in (("epochs", 1), ("batch_size", 1), ("image_size", 4), ("val_size", 1),
                          ("chance_epochs", 1)):
            check_int("Recipe", name, getattr(self, name), low)
        if self.train_size is not None:
            check_int("Recipe", "train_size", self.train_size, 1)
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "warmup_lr"):
            check_number("Recipe", name, getattr(self, name), 0)
        check_choice("Recipe", "schedule", self.schedule, SCHEDULES)

    def lr_at(self, epoch: float) -> float:
        """Learning rate at a (fractional) epoch of the budget."""
        progress = epoch / self.epochs
        if self.schedule == "onecycle":
            rise = 0.3
            if progress < rise:
                return self.lr * max(progress / rise, 0.04)
            return self.lr * 0.5 * (1 + math.cos(math.pi * (progress - rise) / (1 - rise)))
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * 0.1 ** sum(progress >= m for m in (0.5, 0.75))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))

