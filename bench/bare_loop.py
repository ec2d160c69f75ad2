"""The bare PyTorch loop `bench.trial_vs_bare` holds the platform's trial against.

It does the trial's work the plain way, with nothing of the platform but the network builder:
the same network (seeded the same way), the same data tensors, batch size, learning-rate
schedule and augmentation (the same random draws from the same generator, so the same
batches: `tests/bench` checks both lose the same at every step) and thread count. It
validates at the epochs `RunOptions.validates` names and tests at the end, each pass timed
apart (wall and the thread's CPU time).
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from residual import NetSpec, build_network
from search.trial import RunOptions, Splits
from spaces import TrialPlan

EVAL_BATCH = 256


class PlainAugment:
    """The trial's training augmentation written out: pad by 1/8 of the side, crop at a
    random offset, mirror half the images (where the data allows), normalise."""

    def __init__(self, data: Splits) -> None:
        images = data.train_x
        n, c, h, w = images.shape
        self.pad = max(1, round(w / 8))  # 4 px at 32 px, as the paper
        self.side = w + 2 * self.pad
        self.shape = (c, h, w)
        self.flip = data.flip
        self.shift = torch.tensor(data.mean, dtype=torch.float32).view(1, -1, 1, 1).mul(255)
        self.scale = torch.tensor(data.std, dtype=torch.float32).view(1, -1, 1, 1).mul(255)
        pad = self.pad
        # Padded once, not per step.
        self.padded = F.pad(images, (pad, pad, pad, pad)).view(n, c, self.side * self.side)
        ys, xs = torch.arange(h), torch.arange(w)
        # Offsets of the H x W crop at (0, 0) in a padded image: plain, then mirrored.
        self.grid = torch.stack([ys[:, None] * self.side + xs,
                                 ys[:, None] * self.side + (w - 1 - xs)]).view(2, -1)

    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        return (images_u8.float() - self.shift) / self.scale

    def batch(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The augmented training images at `index`; the draws are the trial's, in its order:
        vertical offsets, horizontal offsets, then flips."""
        m = len(index)
        c, h, w = self.shape
        dy = torch.randint(0, 2 * self.pad + 1, (m, 1), generator=generator)
        dx = torch.randint(0, 2 * self.pad + 1, (m, 1), generator=generator)
        crop = (self.grid[(torch.rand(m, generator=generator) < 0.5).long()] if self.flip
                else self.grid[:1])
        where = (crop + (dy * self.side + dx))[:, None, :].expand(m, c, h * w)
        return self.normalise(self.padded[index].gather(2, where).view(m, c, h, w))


class BareTraining:
    """The network, optimiser, batch order and augmentation of one bare run, seeded as the
    trial seeds them, so both start from the same weights and draw the same batches."""

    def __init__(self, plan: TrialPlan, data: Splits) -> None:
        self.recipe, seed = plan.recipe, plan.seed
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        net = NetSpec.from_dict({**plan.net.to_dict(), "num_classes": data.num_classes,
                                 "in_channels": data.in_channels})
        self.model = build_network(net)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=self.recipe.lr, momentum=self.recipe.momentum,
            weight_decay=self.recipe.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.augment = PlainAugment(data)
        self.labels = data.train_y
        n = len(data.train_y)
        self.steps_per_epoch = math.ceil(n / self.recipe.batch_size)
        self.total_steps = self.recipe.total_steps(n)
        self.epochs = self.recipe.budget_epochs(n)

    def train_epoch(self, epoch: int, losses: list[torch.Tensor] | None = None) -> float:
        """One epoch (cut where the budget ends, as the trial cuts it); its mean loss. Each
        step's loss goes to `losses`."""
        batch_size, first = self.recipe.batch_size, epoch * self.steps_per_epoch
        self.model.train()
        order = torch.randperm(len(self.labels), generator=self.generator)
        loss_sum, seen = torch.zeros((), dtype=torch.float64), 0
        for step in range(first, min(first + self.steps_per_epoch, self.total_steps)):
            index = order[(step - first) * batch_size:][:batch_size]
            images = self.augment.batch(index, self.generator)
            for group in self.optimizer.param_groups:
                group["lr"] = self.recipe.lr_at(step, self.total_steps)
            loss = F.cross_entropy(self.model(images), self.labels[index])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach().double() * len(index)
            seen += len(index)
            if losses is not None:
                losses.append(loss.detach().clone())
        return loss_sum.item() / seen

    @torch.no_grad()
    def error(self, images_u8: torch.Tensor, labels: torch.Tensor) -> float:
        """The network's error on un-augmented images, in evaluation mode."""
        self.model.eval()
        wrong = 0
        for start in range(0, len(labels), EVAL_BATCH):
            images = self.augment.normalise(images_u8[start:start + EVAL_BATCH])
            wrong += int((self.model(images).argmax(1) != labels[start:start + EVAL_BATCH]).sum())
        return wrong / len(labels)


@contextlib.contextmanager
def timed(out: dict[str, Any], part: str) -> Iterator[None]:
    """Add the block's wall and CPU seconds to `out["<part>_seconds"]` and
    `out["<part>_cpu_seconds"]`."""
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        out[f"{part}_seconds"] += time.perf_counter() - started
        out[f"{part}_cpu_seconds"] += time.thread_time() - cpu


def bare_epochs(plan: TrialPlan, data: Splits, threads: int = 1,
                losses: list[torch.Tensor] | None = None,
                options: RunOptions | None = None) -> Iterator[dict[str, Any]]:
    """Train `plan` on `data` the plain way: yields after each epoch (trained, then validated
    at the epochs `options` validates, every epoch without) and once more after the test, with
    the figures so far. Per-step losses go to `losses`."""
    torch.set_num_threads(threads)
    run = BareTraining(plan, data)
    out: dict[str, Any] = {f"{part}{kind}_seconds": 0.0 for part in ("train", "validation", "test")
                           for kind in ("", "_cpu")}
    out.update(train_loss=[], val_error=[])
    for epoch in range(run.epochs):
        torch.set_num_threads(threads)  # whatever ran between two epochs may have changed it
        with timed(out, "train"):
            out["train_loss"].append(run.train_epoch(epoch, losses))
        if options is None or options.validates(epoch + 1, epoch + 1 == run.epochs):
            with timed(out, "validation"):
                out["val_error"].append(run.error(data.val_x, data.val_y))
        yield out
    with timed(out, "test"):
        out["test_error"] = run.error(data.test_x, data.test_y)
    yield out


class BareLoop:
    """`bare_epochs` run a piece at a time, each piece timed (wall and CPU) and kept apart from
    whatever runs between pieces: the global random states are its own."""

    def __init__(self, plan: TrialPlan, data: Splits, threads: int = 1,
                 losses: list[torch.Tensor] | None = None,
                 options: RunOptions | None = None) -> None:
        self.pieces = bare_epochs(plan, data, threads, losses, options)
        self.rng: tuple | None = None
        self.stats: dict[str, Any] = {}
        self.seconds = self.cpu_seconds = 0.0
        self.done = False

    def step(self) -> bool:
        """Run the next piece (an epoch, or the test); False once there is none."""
        if self.done:
            return False
        outer = rng_states()
        if self.rng is not None:
            set_rng_states(self.rng)
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self.stats = next(self.pieces)
        except StopIteration:
            self.done = True
        finally:
            self.seconds += time.perf_counter() - started
            self.cpu_seconds += time.thread_time() - cpu
            self.rng = rng_states()
            set_rng_states(outer)
        return not self.done

    def finish(self) -> dict[str, Any]:
        while self.step():
            pass
        return {**self.stats, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


def rng_states() -> tuple:
    """The global random states a run draws from: torch's, Python's and NumPy's."""
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def set_rng_states(states: tuple) -> None:
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])


def bare_loop(plan: TrialPlan, data: Splits, threads: int = 1,
              losses: list[torch.Tensor] | None = None,
              options: RunOptions | None = None) -> dict[str, Any]:
    """The whole bare run at once: its figures, wall and CPU seconds."""
    return BareLoop(plan, data, threads, losses, options).finish()
