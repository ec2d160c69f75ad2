"""What data a trial trains on: the dataset's name, sizes and cache, validated once.

The CIFAR recipe of He et al. 2016 (Sec. 4, training as in He et al. 2015, Sec. 4.2) holds out
5k of the 50k training images for validation; `val_size` and `train_size` scale that down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from residual.validation import is_int

ALLOWED_DATASETS = "cifar10 | cifar100 | digits | imagefolder:PATH"


class DataError(ValueError):
    """The requested data cannot be loaded; the message is one line saying how to fix it."""


def default_cache_dir() -> Path:
    """``$RESNET_SEARCH_CACHE`` if set, else ``~/.cache/resnet-search``."""
    env = os.environ.get("RESNET_SEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "resnet-search"


@dataclass(frozen=True)
class DataOptions:
    """What data a trial trains on. Frozen, so it can be logged and used as a key."""

    dataset: str = "digits"
    data_dir: str | None = None  # torchvision root for cifar; ignored otherwise
    image_size: int | None = None  # None = native size; else square resize at cache time
    train_size: int | None = None  # None = all training images left after the validation split
    val_size: int = 0  # stratified split held out of the training set (the paper: 5k)
    split_seed: int = 0  # seed of the validation split and of the training subset
    cache_dir: str | None = None  # None = default_cache_dir()

    def __post_init__(self) -> None:
        name = self.dataset
        known = name in ("cifar10", "cifar100", "digits") or imagefolder_path(name)
        if not isinstance(name, str) or not known:
            raise DataError(f"dataset={name!r} is unknown; allowed: {ALLOWED_DATASETS}")
        if self.image_size is not None and (not is_int(self.image_size) or self.image_size < 4):
            raise ValueError(f"image_size={self.image_size!r} is invalid; use None or an int >= 4")
        if self.train_size is not None and (not is_int(self.train_size) or self.train_size < 1):
            raise ValueError(f"train_size={self.train_size!r} is invalid; use None or an int >= 1")
        if not is_int(self.val_size) or self.val_size < 0:
            raise ValueError(f"val_size={self.val_size!r} is invalid; use an int >= 0")
        if not is_int(self.split_seed):
            raise ValueError(f"split_seed={self.split_seed!r} is invalid; use an int")

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def imagefolder_path(dataset: object) -> str | None:
    """The PATH of `imagefolder:PATH`, else None."""
    prefix = "imagefolder:"
    if isinstance(dataset, str) and dataset.startswith(prefix) and len(dataset) > len(prefix):
        return dataset[len(prefix) :]
    return None
