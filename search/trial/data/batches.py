"""Minibatches on the model's device, with the paper's augmentation done there as tensor ops.

No DataLoader worker processes: the uint8 images move to the device once, and each batch is
indexed, padded-and-cropped, flipped and normalised where the model runs.

What a training step costs here, besides the random draws (BENCHMARKS.md, "augmentation"):
one row copy of the batch's padded images, one gather, one float conversion and an in-place
normalisation. The index grid of a crop is built once per image size and device, the
training images are padded once, and the only per-step transfer to the device is the batch's
(n, 3) table of indices and crop offsets (pinned and asynchronous on CUDA, so a step never
waits for the GPU to drain).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=32)
def _crop_grid(h: int, w: int, pad: int, device: torch.device) -> torch.Tensor:
    """(2, h * w) flat offsets, into a padded (h + 2 pad) x (w + 2 pad) image, of the h x w
    crop at (0, 0): row 0 plain, row 1 mirrored. Built once per size and device."""
    side = w + 2 * pad
    rows = torch.arange(h).view(h, 1) * side
    cols = torch.arange(w)
    grid = torch.stack([rows + cols, rows + (w - 1 - cols)]).view(2, h * w)
    return grid.to(device)


def _draw_crops(n: int, pad: int, flip: bool, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, drawn on CPU: its crop's row and column offsets in the padded image and
    whether it is mirrored, each (n,). The draws, in order: row offsets, column offsets, flip
    coins, each of shape (n, 1), so a seeded run draws the same numbers as it always has."""
    offset_y = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    offset_x = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    if flip:
        mirrored = (torch.rand(n, 1, generator=generator) < 0.5).view(n)
    else:
        mirrored = torch.zeros(n, dtype=torch.bool)
    return offset_y.view(n), offset_x.view(n), mirrored


def _crop(padded: torch.Tensor, corner: torch.Tensor, mirrored: torch.Tensor, h: int, w: int,
          pad: int) -> torch.Tensor:
    """The (n, C, h, w) crops of padded uint8 images (n, C, h + 2 pad, w + 2 pad) at flat
    corner offsets, mirrored where asked: one gather, indices on the padded images' device."""
    n, c = padded.shape[:2]
    # index_select, not grid[mirrored]: a row copy instead of an element-wise index kernel.
    index = _crop_grid(h, w, pad, padded.device).index_select(0, mirrored.long())
    index = index.add_(corner.view(n, 1)).view(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)


def augment(
    images_u8: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The paper's training augmentation on a uint8 batch (N, C, H, W), on its own device.

    Zero-pads ``pad`` pixels per side (black, since it precedes normalisation), takes a random
    H x W crop per sample and, if ``flip``, mirrors each sample with probability 0.5 (He et al.
    2016, Sec. 4; ``pad`` is 4 at 32 px). Random numbers are drawn on CPU from ``generator`` so a
    seeded run is reproducible on any device. Crop and flip are one gather over a per-sample
    index grid rather than a Python loop.
    """
    n, c, h, w = images_u8.shape
    offset_y, offset_x, mirrored = _draw_crops(n, pad, flip, generator)
    corner = offset_y * (w + 2 * pad) + offset_x
    table = _to_device(torch.stack([corner, mirrored.long()]), images_u8.device)
    padded = F.pad(images_u8, (pad, pad, pad, pad))
    return _crop(padded, table[0], table[1], h, w, pad)


def _to_device(table: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on ``device``; on CUDA from pinned memory without waiting, so the
    host keeps queueing work (a pageable copy would wait for the GPU at every step)."""
    if device.type != "cuda":
        return table
    return table.pin_memory().to(device, non_blocking=True)


class Batches:
    """Minibatches of (float images normalised by mean/std, labels) on ``device``.

    The uint8 images move to ``device`` once and stay there; each batch is indexed, augmented
    (training only) and normalised there, so no DataLoader workers are needed. Training
    shuffles every epoch with ``generator`` (kept on CPU so its state can be checkpointed);
    evaluation yields every sample once, in order.
    """

    def __init__(
        self,
        images_u8: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        mean: tuple[float, ...] | list[float],
        std: tuple[float, ...] | list[float],
        device: torch.device | str,
        train: bool,
        flip: bool,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        drop_last: bool = False,
    ) -> None:
        if images_u8.dtype != torch.uint8 or images_u8.dim() != 4:
            raise ValueError(
                f"images_u8 must be uint8 (N, C, H, W), got {images_u8.dtype} "
                f"{tuple(images_u8.shape)}"
            )
        if len(labels) != len(images_u8):
            raise ValueError(f"{len(images_u8)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid; use an int >= 1")
        self.device = torch.device(device)
        self.images = images_u8.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.train = train
        self.flip = flip
        self.generator = generator
        self.channels_last = channels_last
        self.drop_last = drop_last
        # Padding scales with resolution; 4 px at the paper's 32 px.
        self.pad = max(1, round(images_u8.shape[-1] / 8))
        # x/255 then (x - mean)/std, folded into one subtract and one divide per batch.
        shape = (1, -1, 1, 1)
        self._shift = torch.tensor(mean, dtype=torch.float32).view(shape).mul(255).to(self.device)
        self._scale = torch.tensor(std, dtype=torch.float32).view(shape).mul(255).to(self.device)
        self._padded: torch.Tensor | None = None  # the training images padded once, on demand

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not self.train:  # in order: slices of the resident tensors, no index at all
            for b in range(len(self)):
                rows = slice(b * self.batch_size, (b + 1) * self.batch_size)
                yield self._normalise(self.images[rows]), self.labels[rows]
            return
        if self._padded is None:
            p = self.pad
            self._padded = F.pad(self.images, (p, p, p, p))
        n, side = len(self.labels), self.images.shape[-1] + 2 * self.pad
        h, w = self.images.shape[-2:]
        order = torch.randperm(n, generator=self.generator)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            offset_y, offset_x, mirrored = _draw_crops(len(idx), self.pad, self.flip,
                                                       self.generator)
            # One (3, n) table, one transfer: indices, crop corners, mirror flags.
            table = torch.stack([idx, offset_y * side + offset_x, mirrored.long()])
            idx, corner, mirrored = _to_device(table, self.device)
            # index_select copies whole images; images[idx] indexes element by element
            # (measured 16x slower on a CPU for a 128 x 3 x 40 x 40 batch).
            x = _crop(self._padded.index_select(0, idx), corner, mirrored, h, w, self.pad)
            yield self._normalise(x), self.labels.index_select(0, idx)

    def _normalise(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = x_u8.float().sub_(self._shift).div_(self._scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x
