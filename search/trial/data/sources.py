"""Where images come from: scikit-learn's digits, torchvision's CIFAR, an ImageFolder tree or
archive. Each source decodes to full uint8 train/test tensors (resized once, at cache time).
"""

from __future__ import annotations

import io
import sys
import tarfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .options import DataError, DataOptions, imagefolder_path
from .stratify import stratified_split

# Fixed forever: the digits test set must be the same in every run and on every machine.
_DIGITS_TEST_SEED = 0
_DIGITS_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Source:
    label: str  # short, file-name safe
    identity: tuple  # changes whenever the underlying data may have changed
    flip: bool
    # Returns native-or-resized uint8 train/test tensors and the class names.
    decode: Callable[[int | None], dict]


def source_of(options: DataOptions) -> Source:
    if options.dataset == "digits":
        return _digits_source()
    if options.dataset in ("cifar10", "cifar100"):
        return _cifar_source(options)
    path = imagefolder_path(options.dataset)
    assert path is not None  # DataOptions validated the name
    return _imagefolder_source(path)


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


def _digits_source() -> Source:
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
    return Source("digits", ("digits", sklearn.__version__), flip=False, decode=decode)


def _cifar_source(options: DataOptions) -> Source:
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
    if options.data_dir is not None:
        # Only the default root is downloaded into: an explicit data_dir is the user's data,
        # and a typo in it should be reported, not silently filled with a 170 MB download.
        if not folder.is_dir():
            raise DataError(f"{name} not found in {root} (no {folder_name} there); {fix}")
    else:
        _download_once(cls, name, root, folder, fix)

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
    return Source(name, (name, *map(_stat, files)), flip=True, decode=decode)


def _download_once(cls, name: str, root: Path, folder: Path, fix: str) -> None:
    """Download into the default root unless it holds the dataset, one process at a time.

    Trials of a search (several per node, several nodes on one shared cache) start together;
    without the lock each would see no folder and download, and one would read the folder
    while another was still extracting into it. Readers wait on the lock too, so a folder
    seen here is complete.
    """
    from filelock import FileLock

    lock = root / f".{folder.name}.lock"
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock.touch()
    except OSError as err:
        raise DataError(f"{name}: cannot write {lock} ({err.strerror}); {fix}") from err
    with FileLock(lock):
        if folder.is_dir():
            return
        try:
            cls(str(root), train=True, download=True)
        except Exception as err:  # offline: URLError; anything else is equally fatal here
            reason = " ".join(str(err).split()) or type(err).__name__
            raise DataError(
                f"{name} not found in {root} and download failed ({reason}); {fix}"
            ) from err


def _stat(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _imagefolder_source(spec: str) -> Source:
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

    return Source(label, identity, flip=True, decode=decode)


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
