"""Train, validation and test splits of a decoded dataset, and their channel statistics.

The validation split is stratified and fixed by `split_seed`, never by a trial's seed, so every
trial of a search is judged on the same images (the paper's 45k/5k split, scaled down).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from spaces import Recipe

from .batches import Batches
from .cache import load_full
from .options import DataError, DataOptions
from .sources import source_of
from .stratify import stratified_split


@dataclass
class Splits:
    """Train/validation/test uint8 images (N, C, H, W) with int64 labels, and their statistics.

    ``mean`` and ``std`` are per channel, in 0..1 units, computed on the training subset only
    (as in the paper's per-channel normalisation), so validation and test never leak into them.
    """

    dataset: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool  # horizontal flips are label-preserving (natural images, not digits)
    image_size: int = field(init=False)

    def __post_init__(self) -> None:
        self.image_size = int(self.train_x.shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split={name!r} is invalid; use 'train', 'val' or 'test'")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def batches(
        self,
        split: str,
        batch_size: int,
        device: torch.device | str = "cpu",
        *,
        train: bool | None = None,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
        drop_last: bool = False,
    ) -> Batches:
        """Batches of one split; ``train`` defaults to True for the training split only."""
        images, labels = self.split(split)
        return Batches(
            images,
            labels,
            batch_size=batch_size,
            mean=self.mean,
            std=self.std,
            device=device,
            train=split == "train" if train is None else train,
            flip=self.flip,
            generator=generator,
            channels_last=channels_last,
            drop_last=drop_last,
        )

    def describe(self) -> str:
        c, s = self.in_channels, self.image_size
        mean = "/".join(f"{m:.3f}" for m in self.mean)
        std = "/".join(f"{v:.3f}" for v in self.std)
        return (
            f"{self.dataset}: {self.num_classes} classes, {c}x{s}x{s}, "
            f"train {len(self.train_y)} / val {len(self.val_y)} / test {len(self.test_y)}, "
            f"mean {mean}, std {std}, flip {'on' if self.flip else 'off'}"
        )


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std in 0..1 units, from 256-bin histograms (fast on uint8)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        p = counts / counts.sum()
        mean = float((p * values).sum())
        means.append(mean)
        std = max(float((p * values.square()).sum()) - mean * mean, 0.0) ** 0.5
        # A constant channel (std 0) would divide by zero: one grey level is the floor.
        stds.append(max(std, 1.0 / 255.0))
    return tuple(means), tuple(stds)


def load_data(options: DataOptions) -> Splits:
    """Load ``options.dataset`` (decoded once, then cached) and split it per ``options``."""
    source = source_of(options)
    full = load_full(source, options)
    train_x, train_y = full["train_x"], full["train_y"]
    classes: list[str] = list(full["classes"])
    n_classes, n_train = len(classes), len(train_y)
    if options.train_size is not None and options.train_size < n_classes:
        raise DataError(
            f"train_size={options.train_size} is too small; {options.dataset} has "
            f"{n_classes} classes, so use at least {n_classes}"
        )
    if options.train_size is None and options.val_size >= n_train:
        raise DataError(
            f"val_size={options.val_size} leaves no training images; {options.dataset} has "
            f"{n_train}, so use val_size < {n_train}"
        )
    if options.val_size + (options.train_size or 0) > n_train:
        raise DataError(
            f"train_size={options.train_size} + val_size={options.val_size} exceeds the "
            f"{n_train} training images of {options.dataset}"
        )
    generator = torch.Generator().manual_seed(options.split_seed)
    val_idx, pool = stratified_split(train_y, options.val_size, generator)
    if options.train_size is not None:
        keep, _ = stratified_split(train_y[pool], options.train_size, generator)
        pool = pool[keep]
    if len(pool) < n_train:  # else keep sharing the memoised tensors instead of copying
        train_x, train_y = train_x[pool], train_y[pool]
    mean, std = _channel_stats(train_x)
    return Splits(
        dataset=options.dataset,
        train_x=train_x,
        train_y=train_y,
        val_x=full["train_x"][val_idx],
        val_y=full["train_y"][val_idx],
        test_x=full["test_x"],
        test_y=full["test_y"],
        classes=classes,
        mean=mean,
        std=std,
        flip=source.flip,
    )


MAX_VAL_FRACTION = 0.2
"""At most this share of the training pool is held out, whatever the recipe's val_size."""


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
