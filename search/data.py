"""Data layer of one training trial: load, cache, split and batch image classification data.

Follows the CIFAR recipe of He et al. 2016, "Identity Mappings in Deep Residual Networks"
(Sec. 4, which trains as in He et al. 2015, Sec. 4.2): a 45k/5k train/validation split of the
50k training images for choosing hyperparameters, and for training 4-pixel zero padding, a
random 32x32 crop and a random horizontal flip. Inputs are normalised by per-channel mean and
std, as in the authors' Torch code (resnet-1k-layers); the 2015 paper subtracted the per-pixel
mean instead.

Images are decoded once per source and image size and cached on disk as uint8 tensors; every
trial then splits and subsets them in memory, and :class:`Batches` augments on the model's
device with tensor ops, so no DataLoader worker processes are needed.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "DataError",
    "DataOptions",
    "Splits",
    "Batches",
    "load_data",
    "augment",
    "stratified_split",
    "clear_memo",
    "default_cache_dir",
]

ALLOWED_DATASETS = "cifar10 | cifar100 | digits | imagefolder:PATH"
# Bump when the cached tensor layout changes, so stale .pt files are never read.
_CACHE_VERSION = 1
# Fixed forever: the digits test set must be the same in every run and on every machine.
_DIGITS_TEST_SEED = 0
_DIGITS_TEST_FRACTION = 0.2


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
        if not (name in ("cifar10", "cifar100", "digits") or _imagefolder_path(name)):
            raise DataError(f"dataset={name!r} is unknown; allowed: {ALLOWED_DATASETS}")
        if self.image_size is not None and (not _is_int(self.image_size) or self.image_size < 4):
            raise ValueError(f"image_size={self.image_size!r} is invalid; use None or an int >= 4")
        if self.train_size is not None and (not _is_int(self.train_size) or self.train_size < 1):
            raise ValueError(f"train_size={self.train_size!r} is invalid; use None or an int >= 1")
        if not _is_int(self.val_size) or self.val_size < 0:
            raise ValueError(f"val_size={self.val_size!r} is invalid; use an int >= 0")
        if not _is_int(self.split_seed):
            raise ValueError(f"split_seed={self.split_seed!r} is invalid; use an int")

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _imagefolder_path(dataset: str) -> str | None:
    prefix = "imagefolder:"
    if dataset.startswith(prefix) and len(dataset) > len(prefix):
        return dataset[len(prefix) :]
    return None


# --------------------------------------------------------------------------------------------
# Splits


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


def stratified_split(
    labels: torch.Tensor, n_take: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into ``n_take`` class-balanced ones and the rest (both sorted).

    Each class gets its proportional share, rounded by largest remainder so the total is exact;
    members are drawn from a per-class permutation, so with one seed a smaller draw is a subset
    of a larger one.
    """
    labels = labels.cpu()
    n = len(labels)
    if not 0 <= n_take <= n:
        raise ValueError(f"cannot take {n_take} of {n} samples")
    classes, counts = torch.unique(labels, return_counts=True)
    quotas = [n_take * int(c) / n for c in counts]
    takes = [math.floor(q) for q in quotas]
    # Largest remainder; ties go to the lower class index so the result is fully determined.
    by_remainder = sorted(range(len(quotas)), key=lambda k: (takes[k] - quotas[k], k))
    for k in by_remainder[: n_take - sum(takes)]:
        takes[k] += 1
    taken, rest = [], []
    for cls, count, take in zip(classes.tolist(), counts.tolist(), takes, strict=True):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(count, generator=generator)]
        taken.append(members[:take])
        rest.append(members[take:])
    return torch.cat(taken).sort().values, torch.cat(rest).sort().values


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std in 0..1 units, from 256-bin histograms (fast on uint8)."""
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)
        p = counts / counts.sum()
        mean = float((p * values).sum())
        means.append(mean)
        stds.append(max(float((p * values.square()).sum()) - mean * mean, 0.0) ** 0.5)
    return tuple(means), tuple(stds)


def load_data(options: DataOptions) -> Splits:
    """Load ``options.dataset`` (decoded once, then cached) and split it per ``options``."""
    source = _source(options)
    full = _load_full(source, options)
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


# --------------------------------------------------------------------------------------------
# Sources and the tensor cache

# Full decoded tensors by cache key: a second load_data in one process costs no I/O.
_MEMO: dict[str, dict] = {}


def clear_memo() -> None:
    """Forget the in-process copies (the on-disk cache stays)."""
    _MEMO.clear()


@dataclass(frozen=True)
class _Source:
    label: str  # short, file-name safe
    identity: tuple  # changes whenever the underlying data may have changed
    flip: bool
    # Returns native-or-resized uint8 train/test tensors and the class names.
    decode: Callable[[int | None], dict]


def _source(options: DataOptions) -> _Source:
    if options.dataset == "digits":
        return _digits_source()
    if options.dataset in ("cifar10", "cifar100"):
        return _cifar_source(options)
    path = _imagefolder_path(options.dataset)
    assert path is not None  # DataOptions validated the name
    return _imagefolder_source(path)


def _load_full(source: _Source, options: DataOptions) -> dict:
    """Memo, then the on-disk cache, then decode; the decode result is cached atomically."""
    key_text = repr((_CACHE_VERSION, source.identity, options.image_size))
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    if key in _MEMO:
        return _MEMO[key]
    size = f"{options.image_size}px" if options.image_size else "native"
    path = options.resolved_cache_dir() / "tensors" / f"{source.label}-{size}-{key}.pt"
    if path.exists():
        full = torch.load(path, weights_only=True)
    else:
        full = source.decode(options.image_size)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Temp file + os.replace: concurrent trials see either no file or a complete one.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(full, f)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    _MEMO[key] = full
    return full


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Square antialiased bilinear resize of uint8 (N, C, H, W), rounded back to uint8."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    for src, dst in zip(images.split(2048), out.split(2048), strict=True):
        resized = F.interpolate(
            src.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        dst.copy_(resized.round_().clamp_(0, 255))
    return out


def _tensors(train_x, train_y, test_x, test_y, classes, size: int | None) -> dict:
    return {
        "train_x": _resize(train_x, size).contiguous(),
        "train_y": torch.as_tensor(train_y, dtype=torch.int64),
        "test_x": _resize(test_x, size).contiguous(),
        "test_y": torch.as_tensor(test_y, dtype=torch.int64),
        "classes": [str(c) for c in classes],
    }


def _digits_source() -> _Source:
    import sklearn

    def decode(size: int | None) -> dict:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Values are 0..16; scale to the 0..255 range that every other source uses.
        images = torch.from_numpy(digits.images * (255.0 / 16.0)).round().to(torch.uint8)
        images = images.unsqueeze(1)
        labels = torch.from_numpy(digits.target).to(torch.int64)
        n_test = round(_DIGITS_TEST_FRACTION * len(labels))
        generator = torch.Generator().manual_seed(_DIGITS_TEST_SEED)
        test, train = stratified_split(labels, n_test, generator)
        names = [str(c) for c in digits.target_names]
        return _tensors(images[train], labels[train], images[test], labels[test], names, size)

    # Mirrored digits are different symbols, so flipping would corrupt labels.
    return _Source("digits", ("digits", sklearn.__version__), flip=False, decode=decode)


def _cifar_source(options: DataOptions) -> _Source:
    import torchvision

    name = options.dataset
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    folder_name = cls.base_folder
    fix = f"pass --data-dir DIR containing {folder_name}, or use imagefolder:PATH"
    if options.data_dir is not None:
        root = Path(options.data_dir).expanduser().resolve()
        if not root.is_dir():
            raise DataError(f"{name}: data directory {root} does not exist; {fix}")
    else:
        root = options.resolved_cache_dir().resolve() / "torchvision"
    folder = root / folder_name
    if not folder.is_dir():
        # Only the default root is downloaded into: an explicit data_dir is the user's data,
        # and a typo in it should be reported, not silently filled with a 170 MB download.
        if options.data_dir is not None:
            raise DataError(f"{name} not found in {root} (no {folder_name} there); {fix}")
        try:
            root.mkdir(parents=True, exist_ok=True)
            cls(str(root), train=True, download=True)
        except Exception as err:  # offline: URLError; anything else is equally fatal here
            reason = " ".join(str(err).split()) or type(err).__name__
            raise DataError(
                f"{name} not found in {root} and download failed ({reason}); {fix}"
            ) from err

    def decode(size: int | None) -> dict:
        try:
            train = cls(str(root), train=True, download=False)
            test = cls(str(root), train=False, download=False)
        except RuntimeError as err:  # torchvision's "not found or corrupted"
            raise DataError(f"{name} in {folder} is incomplete or corrupt; {fix}") from err

        def nchw(array) -> torch.Tensor:
            return torch.from_numpy(array).permute(0, 3, 1, 2)

        return _tensors(
            nchw(train.data), train.targets, nchw(test.data), test.targets, train.classes, size
        )

    files = [folder, *sorted(folder.iterdir())]  # a handful of batch files
    return _Source(name, (name, *map(_stat, files)), flip=True, decode=decode)


def _stat(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _imagefolder_source(spec: str) -> _Source:
    path = Path(spec).expanduser().resolve()
    if not path.exists():
        raise DataError(f"imagefolder path {path} does not exist")
    if path.is_dir():
        # Directory mtimes change when files are added, removed or renamed: a cheap change
        # detector that avoids stat-ing every image of a 60k-image tree at each trial start.
        # (Overwriting an image in place is not detected; delete the cache file then.)
        dirs = [path, *_subdirs(path), *(d for s in ("train", "test") for d in _subdirs(path / s))]
        identity: tuple = ("imagefolder", *map(_stat, dirs))
        label, listing = path.name, partial(_list_tree, path)
    elif path.name.endswith((".tar.gz", ".tgz")):
        identity = ("imagefolder-archive", _stat(path))
        label = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
        listing = partial(_list_archive, path)
    else:
        raise DataError(f"imagefolder path {path} is neither a directory nor a .tar.gz/.tgz file")
    label = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label) or "imagefolder"

    def decode(size: int | None) -> dict:
        print(
            f"resnet-search: decoding {path} (first use; cached afterwards) ...",
            end="",
            file=sys.stderr,
            flush=True,
        )
        start = time.perf_counter()
        try:
            splits = listing()
            classes = _same_classes(path, splits)
            index = {name: i for i, name in enumerate(classes)}
            out = {}
            for split, samples in splits.items():
                out[split] = _decode_blobs(samples, size), [index[c] for c, _, _ in samples]
        except BaseException:
            print(" failed", file=sys.stderr, flush=True)  # end the line before the traceback
            raise
        n = len(out["train"][1]) + len(out["test"][1])
        print(f" {n} images in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        (train_x, train_y), (test_x, test_y) = out["train"], out["test"]
        return _tensors(train_x, train_y, test_x, test_y, classes, size)

    return _Source(label, identity, flip=True, decode=decode)


def _subdirs(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir()) if path.is_dir() else []


# One split: (class name, file name, encoded bytes) per image, in ImageFolder's order.
_Samples = list[tuple[str, str, bytes]]


def _list_tree(root: Path) -> dict[str, _Samples]:
    from torchvision.datasets import ImageFolder

    splits = {}
    for split in ("train", "test"):
        try:
            folder = ImageFolder(str(root / split))
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"imagefolder {root / split}: {' '.join(str(err).split())}") from err
        names = folder.classes
        splits[split] = [(names[y], p, Path(p).read_bytes()) for p, y in folder.samples]
    return splits


def _list_archive(archive: Path) -> dict[str, _Samples]:
    """Read ``[top/]{train,test}/<class>/**/<image>`` from a tar archive, in memory.

    Streaming the members is much faster than extracting them (Python's tarfile took
    10-50 s to write CIFAR-10's 60k small files here, versus 2.5 s to read them), and the
    decoded tensors are cached anyway, so the archive is read once per image size.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    splits: dict[str, _Samples] = {"train": [], "test": []}
    tops = set()
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                parts = [p for p in PurePosixPath(member.name).parts if p != "."]
                if not member.isfile() or not parts[-1].lower().endswith(IMG_EXTENSIONS):
                    continue
                top = "" if parts[0] in splits else parts[0]
                rest = parts[1:] if top else parts
                if len(rest) < 3 or rest[0] not in splits:
                    continue  # not under a split's class folder; ImageFolder ignores it too
                tops.add(top)
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                splits[rest[0]].append((rest[1], member.name, data))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"cannot read archive {archive}: {' '.join(str(err).split())}") from err
    if len(tops) != 1 or not all(splits.values()):
        raise DataError(
            f"archive {archive} must hold one tree with train/<class>/* and test/<class>/* "
            f"images, at its top or inside one top-level folder; found tops {sorted(tops)[:5]}"
        )
    for samples in splits.values():
        samples.sort(key=lambda s: (s[0], s[1]))  # ImageFolder: sorted classes, sorted paths
    return splits


def _same_classes(source: Path, splits: dict[str, _Samples]) -> list[str]:
    train = sorted({c for c, _, _ in splits["train"]})
    test = sorted({c for c, _, _ in splits["test"]})
    if train != test:
        raise DataError(
            f"imagefolder {source}: train and test classes differ (only in train: "
            f"{sorted(set(train) - set(test))}, only in test: {sorted(set(test) - set(train))})"
        )
    return train


def _decode_pil(name: str, data: bytes) -> torch.Tensor:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    except OSError as err:  # PIL's UnidentifiedImageError included
        raise DataError(f"cannot decode {name}: {' '.join(str(err).split())}") from err


def _decode_blobs(samples: _Samples, size: int | None) -> torch.Tensor:
    """Decode images to RGB uint8 (N, 3, S, S); without ``size`` all must share one square size.

    RGB always, as ImageFolder's loader does, so grey or palette files mix with colour ones.
    """
    images: list[torch.Tensor | None] = [None] * len(samples)
    jpegs = [
        i for i, (_, name, _) in enumerate(samples) if name.lower().endswith((".jpg", ".jpeg"))
    ]
    with warnings.catch_warnings():
        # torchvision.io's decoders are deprecated since 0.29 in favour of torchcodec (not a
        # dependency here) but are the fastest at hand: batched decode_jpeg beat per-file
        # decoding and PIL about 3x on CIFAR's 32 px JPEGs. PIL takes over once they are gone.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError:
            jpegs = []
        for chunk in (jpegs[i : i + 1024] for i in range(0, len(jpegs), 1024)):
            blobs = [torch.frombuffer(bytearray(samples[i][2]), dtype=torch.uint8) for i in chunk]
            try:
                decoded = decode_jpeg(blobs, mode=ImageReadMode.RGB)
            except RuntimeError:
                continue  # PIL below decodes the chunk or names the bad file
            for i, image in zip(chunk, decoded, strict=True):
                images[i] = image
    for i, (_, name, data) in enumerate(samples):
        if images[i] is None:
            images[i] = _decode_pil(name, data)

    shapes = {tuple(im.shape[-2:]) for im in images}
    if size is None:
        (h, w), *others = shapes
        if others or h != w:
            raise DataError(
                f"images have sizes {sorted(shapes)[:3]}; pass image_size to resize them to "
                "one square size"
            )
        return torch.stack(images)
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for shape in shapes:  # resize same-shaped images together, in batches
        idx = [i for i, im in enumerate(images) if tuple(im.shape[-2:]) == shape]
        out[idx] = _resize(torch.stack([images[i] for i in idx]), size)
    return out


# --------------------------------------------------------------------------------------------
# Batches and augmentation


def augment(
    images_u8: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The paper's training augmentation on a uint8 batch (N, C, H, W), on its own device.

    Zero-pads ``pad`` pixels per side (black, since it precedes normalisation), takes a random
    H x W crop per sample and, if ``flip``, mirrors each sample with probability 0.5 (He et al.
    2016, Sec. 4; ``pad`` is 4 at 32 px). Random numbers are drawn on CPU from ``generator`` so a
    seeded run is reproducible on any device. Crop and flip are one gather over a per-sample
    index grid rather than a Python loop (about 1.5 ms per 512 CIFAR images on one CPU core).
    """
    n, c, h, w = images_u8.shape
    device = images_u8.device
    offset_y = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    offset_x = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator)
    cols = torch.arange(w).expand(n, w)
    if flip:
        mirrored = torch.rand(n, 1, generator=generator) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    rows = offset_y + torch.arange(h)  # rows/cols index the padded image
    cols = offset_x + cols
    flat = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]
    flat = flat.view(n, 1, h * w).expand(n, c, h * w).to(device)
    padded = F.pad(images_u8, (pad, pad, pad, pad))
    return padded.view(n, c, -1).gather(2, flat).view(n, c, h, w)


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

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.train:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size].to(self.device)
            x = self.images[idx]
            if self.train:
                x = augment(x, self.pad, self.flip, self.generator)
            x = (x.float() - self._shift) / self._scale
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]
