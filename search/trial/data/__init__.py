"""The data layer of one trial: sources, the decoded-tensor cache, splits, on-device batches.

    from search.trial.data import DataOptions, load_data
    splits = load_data(DataOptions("digits", image_size=8, val_size=200))
    for images, labels in splits.batches("train", 128, "cpu"): ...
"""

from .batches import Batches, augment
from .cache import clear_memo
from .options import ALLOWED_DATASETS, DataError, DataOptions, default_cache_dir
from .splits import Splits, load_data, load_trial_data
from .stratify import stratified_split

__all__ = [
    "ALLOWED_DATASETS",
    "Batches",
    "DataError",
    "DataOptions",
    "Splits",
    "augment",
    "clear_memo",
    "default_cache_dir",
    "load_data",
    "load_trial_data",
    "stratified_split",
]
