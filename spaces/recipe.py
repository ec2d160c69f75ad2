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
MILESTONES = (0.5, 0.75)
"""Where the step schedule divides the learning rate by 10, as shares of the budget: the
paper's 32k and 48k of 64k iterations."""


@dataclass(frozen=True)
class Recipe:
    """SGD with momentum, weight decay and a warm-up; defaults are the paper's full recipe.

    The budget is counted in SGD steps, whatever the training set size: `iterations` (the
    paper's 64k), or `epochs` passes over the training set (exactly one of the two). The
    learning rate is a function of the step alone, so a checkpoint needs no scheduler state.
    """

    epochs: int | None = None
    iterations: int | None = 64_000
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iterations: int = 400
    """Steps at `warmup_lr` before `lr` (the paper: 400 at 0.01). The one-cycle schedule ramps
    up by itself and takes none."""
    warmup_lr: float = 0.01
    schedule: str = "step"
    """step: lr / 10 at 50% and 75% of the budget (the paper's 32k/48k of 64k iterations);
    cosine: cosine decay to 0; onecycle: linear ramp to lr over 30% then cosine down."""
    image_size: int = 32
    train_size: int | None = None
    """Training images (a stratified subset); None = all that the validation split leaves."""
    val_size: int = 5000
    """Stratified validation images held out of the training set (the paper's 45k/5k); 0
    trains on them too (the paper's test numbers, after the search chose on the split)."""

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError(f"Recipe.epochs={self.epochs!r} is invalid with iterations="
                             f"{self.iterations!r}; allowed: exactly one of the two budgets")
        # val_size 0 trains on every image (a final retraining); a search needs its objective,
        # the validation error, and refuses it (search.runner.prepare).
        for name, low in (("epochs", 1), ("iterations", 1), ("batch_size", 1),
                          ("image_size", 4), ("val_size", 0), ("warmup_iterations", 0)):
            if getattr(self, name) is not None:
                check_int("Recipe", name, getattr(self, name), low)
        if self.train_size is not None:
            check_int("Recipe", "train_size", self.train_size, 1)
        for name in ("lr", "momentum", "weight_decay", "warmup_lr"):
            check_number("Recipe", name, getattr(self, name), 0)
        check_choice("Recipe", "schedule", self.schedule, SCHEDULES)
        if self.schedule == "onecycle" and self.warmup_iterations:
            raise ValueError(f"Recipe.warmup_iterations={self.warmup_iterations!r} is invalid "
                             "with schedule='onecycle'; allowed: 0 (one-cycle ramps up itself)")

    def steps_per_epoch(self, train_images: int) -> int:
        return math.ceil(train_images / self.batch_size)

    def total_steps(self, train_images: int) -> int:
        """The budget in SGD steps for a training set of `train_images`."""
        return self.iterations or self.epochs * self.steps_per_epoch(train_images)

    def budget_epochs(self, train_images: int) -> int:
        """Epochs the budget spans (the last one may be cut short at `total_steps`)."""
        return math.ceil(self.total_steps(train_images) / self.steps_per_epoch(train_images))

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate at SGD step `step` (from 0) of a budget of `total_steps`."""
        progress = step / total_steps
        if self.schedule == "onecycle":
            rise = 0.3
            if progress < rise:
                return self.lr * max(progress / rise, 0.04)
            return self.lr * 0.5 * (1 + math.cos(math.pi * (progress - rise) / (1 - rise)))
        if step < self.warmup_iterations:
            return self.warmup_lr
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * 0.1 ** sum(step >= m * total_steps for m in MILESTONES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPE_FIELDS = tuple(f.name for f in fields(Recipe))
