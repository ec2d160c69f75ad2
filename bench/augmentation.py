"""What a training batch costs to make: indexing, crop, flip and normalisation, before and now.

    .venv/bin/python -m bench.augmentation            # 20 epochs of batches a point
    .venv/bin/python -m bench.augmentation --quick    # 5

`search.trial.data.Batches` against `ReferenceBatches`, the implementation it replaced (kept
here, verbatim in what it computes): per step that one built int64 index tensors on the CPU
(and copied them to the device), indexed the batch element by element, padded it and
normalised out of place. Both draw the same random numbers in the same order and yield the
same tensors bit for bit (`tests/bench/test_augmentation.py`). Per batch of 128, one thread:

    augmentation.<size>px.before_ms / now_ms    milliseconds per training batch, CPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from search.trial.data import Batches

from .common import figure, header, missing, note


def reference_augment(images_u8: torch.Tensor, pad: int, flip: bool,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """The augmentation as it was: per-step index grids, built on the CPU."""
    n, c, h, w = images_u8.shape
    device = images_u8.device
    offset_y = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    offset_x = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    cols = torch.arange(w).expand(n, w)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    rows = offset_y + torch.arange(h)
    cols = offset_x + cols
    flat = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]
    flat = flat.view(n, 1, h * w).expand(n, c, h * w).to(device)
    padded = F.pad(images_u8, (pad, pad, pad, pad))
    return padded.view(n, c, -1).gather(2, flat).view(n, c, h, w)


class ReferenceBatches(Batches):
    """`Batches` as it iterated before: the reference for speed and for the random stream."""

    def __init__(self, images_u8: torch.Tensor, labels: torch.Tensor, *,
                 mean: tuple[float, ...], std: tuple[float, ...], **options) -> None:
        super().__init__(images_u8, labels, mean=mean, std=std, **options)
        # x/255 then (x - mean)/std in one subtract and one divide, as `Batches` folds it.
        shape = (1, -1, 1, 1)
        self.shift = torch.tensor(mean, dtype=torch.float32).view(shape).mul(255).to(self.device)
        self.scale = torch.tensor(std, dtype=torch.float32).view(shape).mul(255).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size].to(self.device)
            x = self.images[idx]
            if self.train:
                x = reference_augment(x, self.pad, self.flip, self.generator)
            x = (x.float() - self.shift) / self.scale
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


def per_batch_ms(kind: type[Batches], images: torch.Tensor, labels: torch.Tensor,
                 epochs: int, device: str = "cpu") -> float:
    """Median milliseconds per training batch over `epochs` passes (after one warm-up)."""
    batches = kind(images, labels, batch_size=128, mean=(0.49, 0.48, 0.45),
                   std=(0.25, 0.24, 0.26), device=device, train=True, flip=True,
                   generator=torch.Generator().manual_seed(0))
    for _ in batches:
        pass
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _ in batches:
            pass
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - started) / len(batches))
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.augmentation",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, help="passes a point (20; quick 5)")
    args = parser.parse_args(argv)
    header("bench.augmentation", args.quick, argv)
    torch.set_num_threads(1)
    epochs = args.epochs or (5 if args.quick else 20)
    n = 10_000
    note(f"{n} random images, batch 128, flips on, {epochs} passes, one thread")
    g = torch.Generator().manual_seed(0)
    for size in (16, 32):
        images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g)
        before = per_batch_ms(ReferenceBatches, images, labels, epochs)
        now = per_batch_ms(Batches, images, labels, epochs)
        figure(f"augmentation.{size}px.before_ms", before, "ms per batch")
        figure(f"augmentation.{size}px.now_ms", now, "ms per batch")
    if torch.cuda.is_available():
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,), generator=g)
        for name, kind in (("before", ReferenceBatches), ("now", Batches)):
            figure(f"augmentation.cuda_32px.{name}_ms",
                   per_batch_ms(kind, images, labels, epochs, "cuda"), "ms per batch")
    else:
        for name in ("before", "now"):
            missing(f"augmentation.cuda_32px.{name}_ms", "no CUDA device on this machine")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
