"""The trial's data layer (search/trial/data) on real data: sklearn digits, generated image
trees, real CIFAR-10."""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from search.trial.data import (
    ALLOWED_DATASETS,
    Batches,
    DataError,
    DataOptions,
    augment,
    clear_memo,
    load_data,
    stratified_split,
)


@pytest.fixture(autouse=True)
def fresh_memo():
    clear_memo()
    yield
    clear_memo()


def digits(tmp_path: Path, **kwargs) -> DataOptions:
    return DataOptions(dataset="digits", cache_dir=str(tmp_path / "cache"), **kwargs)


def assert_stratified(subset: torch.Tensor, population: torch.Tensor, n_classes: int) -> None:
    """Every class count in ``subset`` is within 1 of its proportional share."""
    have = torch.bincount(subset, minlength=n_classes)
    share = torch.bincount(population, minlength=n_classes) * len(subset) / len(population)
    assert (have - share).abs().max() < 1, (have, share)


# ------------------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_fixed_test_split(tmp_path):
    s = load_data(digits(tmp_path))
    assert s.num_classes == 10 and s.classes == [str(i) for i in range(10)]
    assert s.in_channels == 1 and s.image_size == 8 and s.flip is False
    assert s.train_x.shape == (1438, 1, 8, 8) and s.test_x.shape == (359, 1, 8, 8)
    assert s.val_x.shape == (0, 1, 8, 8)
    for x in (s.train_x, s.val_x, s.test_x):
        assert x.dtype == torch.uint8
    for y in (s.train_y, s.val_y, s.test_y):
        assert y.dtype == torch.int64
    assert int(s.train_x.max()) == 255  # 0..16 scaled to 0..255
    all_labels = torch.as_tensor(load_digits().target)
    assert_stratified(s.test_y, all_labels, 10)
    assert "digits" in s.describe() and "\n" not in s.describe()

    # A different split seed, another cache dir and a fresh process memo: same test set.
    clear_memo()
    other = load_data(DataOptions(val_size=100, split_seed=7, cache_dir=str(tmp_path / "c2")))
    assert torch.equal(other.test_x, s.test_x) and torch.equal(other.test_y, s.test_y)


def test_digits_validation_split_is_stratified_and_stats_come_from_train(tmp_path):
    s = load_data(digits(tmp_path, val_size=300))
    assert len(s.val_y) == 300 and len(s.train_y) == 1438 - 300
    assert_stratified(s.val_y, torch.cat([s.train_y, s.val_y]), 10)
    x = s.train_x.double() / 255
    assert s.mean[0] == pytest.approx(float(x.mean()), abs=1e-9)
    assert s.std[0] == pytest.approx(float(x.std(unbiased=False)), abs=1e-9)


def test_digits_subset_is_stratified_deterministic_and_seeded(tmp_path):
    a = load_data(digits(tmp_path, train_size=200, val_size=100, split_seed=1))
    b = load_data(digits(tmp_path, train_size=200, val_size=100, split_seed=1))
    c = load_data(digits(tmp_path, train_size=200, val_size=100, split_seed=2))
    assert len(a.train_y) == 200 and len(a.val_y) == 100
    assert_stratified(a.train_y, torch.cat([a.train_y, a.val_y]), 10)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_x, b.val_x)
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.val_x, c.val_x)
    # The validation set does not depend on train_size, so trials of any size compare fairly.
    bigger = load_data(digits(tmp_path, train_size=400, val_size=100, split_seed=1))
    assert torch.equal(bigger.val_x, a.val_x)


def test_stratified_split_exact_counts_and_largest_remainder():
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)[
        torch.randperm(10, generator=torch.Generator().manual_seed(1))
    ]
    taken, rest = stratified_split(labels, 5, torch.Generator().manual_seed(0))
    # Shares 2.5, 1.5, 1.0: one extra goes to the lower class of the tied remainders.
    assert Counter(labels[taken].tolist()) == {0: 3, 1: 1, 2: 1}
    assert sorted(torch.cat([taken, rest]).tolist()) == list(range(10))
    # Shares 2.0, 1.2, 0.8: the remaining one goes to the largest remainder, the last class.
    taken, _ = stratified_split(labels, 4, torch.Generator().manual_seed(0))
    assert Counter(labels[taken].tolist()) == {0: 2, 1: 1, 2: 1}


def test_second_load_in_process_reuses_memory(tmp_path):
    a = load_data(digits(tmp_path))
    b = load_data(digits(tmp_path, val_size=50))
    assert a.test_x.data_ptr() == b.test_x.data_ptr()


def test_resize_digits(tmp_path):
    s = load_data(digits(tmp_path, image_size=16))
    assert s.train_x.shape[1:] == (1, 16, 16) and s.image_size == 16


# -------------------------------------------------------------------------------- imagefolder

CLASSES = ["cat", "ant", "bee"]  # written unsorted; loaded sorted


def colour(label: int, i: int) -> tuple[int, int, int]:
    """A solid colour that encodes (class, image): the decoded pixel tells its label."""
    return (40 + 60 * label, 10 * i + 5, 200)


def write_tree(root: Path, classes=CLASSES, n_train=4, n_test=2) -> Path:
    order = sorted(classes)
    for split, n in (("train", n_train), ("test", n_test)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                image = Image.new("RGB", (12, 12), colour(order.index(name), i))
                image.save(folder / f"{i:03d}.png")
    return root


def make_archive(tree: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname=tree.name)
    return archive


def check_labels(x: torch.Tensor, y: torch.Tensor) -> None:
    red = x[:, 0, 0, 0].long()
    assert torch.equal((red - 40) // 60, y)


def test_imagefolder_directory_loads_with_sorted_classes_and_right_labels(tmp_path):
    tree = write_tree(tmp_path / "tiny")
    s = load_data(DataOptions(f"imagefolder:{tree}", cache_dir=str(tmp_path / "cache")))
    assert s.classes == ["ant", "bee", "cat"]
    assert s.train_x.shape == (12, 3, 12, 12) and s.test_x.shape == (6, 3, 12, 12)
    assert s.flip is True and s.in_channels == 3
    check_labels(s.train_x, s.train_y)
    check_labels(s.test_x, s.test_y)


def test_imagefolder_resize_keeps_solid_colours(tmp_path):
    tree = write_tree(tmp_path / "tiny")
    s = load_data(DataOptions(f"imagefolder:{tree}", image_size=6, cache_dir=str(tmp_path)))
    assert s.train_x.shape == (12, 3, 6, 6) and s.image_size == 6
    check_labels(s.train_x, s.train_y)
    assert (s.train_x == s.train_x[:, :, :1, :1]).all()  # antialiasing a solid image is exact


def test_imagefolder_cache_written_once_and_reused(tmp_path, capfd):
    tree = write_tree(tmp_path / "tiny")
    options = DataOptions(f"imagefolder:{tree}", cache_dir=str(tmp_path / "cache"))
    first = load_data(options)
    err = capfd.readouterr().err
    assert err.count("decoding") == 1 and err.count("\n") == 1 and "18 images" in err
    (cached,) = (tmp_path / "cache" / "tensors").glob("*.pt")
    mtime = cached.stat().st_mtime_ns

    clear_memo()  # as a new trial process would start
    second = load_data(options)
    assert "decoding" not in capfd.readouterr().err
    assert cached.stat().st_mtime_ns == mtime
    assert list((tmp_path / "cache" / "tensors").glob("*")) == [cached]
    assert torch.equal(first.train_x, second.train_x)

    # Adding an image changes the source identity: decoded again into a new cache entry.
    Image.new("RGB", (12, 12), colour(0, 9)).save(tree / "train" / "ant" / "new.png")
    clear_memo()
    third = load_data(options)
    assert len(third.train_y) == 13 and "decoding" in capfd.readouterr().err


def test_imagefolder_archive_matches_directory(tmp_path):
    tree = write_tree(tmp_path / "tiny")
    # One JPEG exercises the batched JPEG decoder next to the PNG one.
    Image.new("RGB", (12, 12), colour(1, 7)).save(tree / "train" / "bee" / "z.jpg", quality=95)
    archive = make_archive(tree, tmp_path / "tiny.tar.gz")
    cache = str(tmp_path / "cache")
    from_dir = load_data(DataOptions(f"imagefolder:{tree}", cache_dir=cache))
    from_tar = load_data(DataOptions(f"imagefolder:{archive}", cache_dir=cache))
    assert from_tar.classes == from_dir.classes == ["ant", "bee", "cat"]
    assert len(from_tar.train_y) == 13
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(from_tar, name), getattr(from_dir, name)), name
    check_labels(from_tar.test_x, from_tar.test_y)


def test_imagefolder_archive_needs_one_tree(tmp_path):
    first, second = write_tree(tmp_path / "a"), write_tree(tmp_path / "b")
    archive = tmp_path / "two.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(first, arcname="a")
        tar.add(second, arcname="b")
    with pytest.raises(DataError, match="one tree"):
        load_data(DataOptions(f"imagefolder:{archive}", cache_dir=str(tmp_path / "cache")))


def test_imagefolder_mismatched_classes(tmp_path):
    tree = write_tree(tmp_path / "tiny")
    (tree / "test" / "cat").rename(tree / "test" / "dog")
    with pytest.raises(DataError, match=r"classes differ.*'cat'.*'dog'"):
        load_data(DataOptions(f"imagefolder:{tree}", cache_dir=str(tmp_path / "cache")))


def test_imagefolder_grey_images_become_rgb_and_corrupt_files_are_named(tmp_path):
    tree = write_tree(tmp_path / "tiny")
    Image.new("L", (12, 12), 77).save(tree / "train" / "ant" / "grey.png")
    s = load_data(DataOptions(f"imagefolder:{tree}", cache_dir=str(tmp_path / "c1")))
    assert s.in_channels == 3 and len(s.train_y) == 13
    (tree / "test" / "bee" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode .*broken.jpg"):
        load_data(DataOptions(f"imagefolder:{tree}", cache_dir=str(tmp_path / "c2")))


def test_imagefolder_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataOptions(f"imagefolder:{tmp_path / 'nope'}", cache_dir=str(tmp_path)))


def test_real_cifar10_jpeg_archive(tmp_path, cifar_archive):
    options = DataOptions(
        f"imagefolder:{cifar_archive}",
        image_size=16,
        train_size=1000,
        val_size=500,
        cache_dir=str(tmp_path),
    )
    s = load_data(options)
    assert s.classes == sorted(
        "airplane automobile bird cat deer dog frog horse ship truck".split()
    )
    assert s.train_x.shape == (1000, 3, 16, 16)
    assert s.val_x.shape == (500, 3, 16, 16)
    assert s.test_x.shape == (10000, 3, 16, 16)
    assert torch.bincount(s.train_y).tolist() == [100] * 10
    assert torch.bincount(s.val_y).tolist() == [50] * 10
    assert torch.bincount(s.test_y).tolist() == [1000] * 10
    for got, want in zip(s.mean, (0.47, 0.48, 0.44), strict=True):
        assert got == pytest.approx(want, abs=0.05)
    for got in s.std:
        assert 0.18 < got < 0.30


# ------------------------------------------------------------------------- errors and options


def test_cifar_empty_data_dir_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError) as info:
        load_data(DataOptions("cifar10", data_dir=str(tmp_path), cache_dir=str(tmp_path)))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "cifar-10-batches-py" in message and "imagefolder:PATH" in message


def test_cifar_missing_data_dir(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        load_data(DataOptions("cifar100", data_dir=str(missing), cache_dir=str(tmp_path)))
    assert str(missing) in str(info.value) and "cifar-100-python" in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "imagefolder:", "CIFAR10"])
def test_unknown_dataset_lists_allowed_forms(name):
    with pytest.raises(DataError, match="unknown") as info:
        DataOptions(dataset=name)
    assert ALLOWED_DATASETS in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"image_size": 2}, "image_size=2"),
        ({"val_size": -1}, "val_size=-1"),
        ({"train_size": 0}, "train_size=0"),
    ],
)
def test_bad_options_name_the_field(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        DataOptions(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"train_size": 5000}, "train_size=5000"),
        ({"train_size": 1400, "val_size": 100}, r"train_size=1400 \+ val_size=100"),
        ({"train_size": 5}, "train_size=5 .*at least 10"),
        ({"val_size": 1438}, "val_size=1438"),
    ],
)
def test_sizes_checked_against_the_data(tmp_path, kwargs, pattern):
    with pytest.raises(DataError, match=pattern):
        load_data(digits(tmp_path, **kwargs))


# ---------------------------------------------------------------------- batches, augmentation


def random_images(n=50, c=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def batches(images, *, train, seed=0, batch_size=16, flip=True, **kwargs):
    labels = torch.arange(len(images))
    return Batches(
        images,
        labels,
        batch_size=batch_size,
        mean=(0.5, 0.4, 0.3),
        std=(0.2, 0.25, 0.3),
        device="cpu",
        train=train,
        flip=flip,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def epoch(b: Batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*b, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_train_batches_shapes_and_reproducibility():
    images = random_images()
    b = batches(images, train=True)
    shapes = [(tuple(x.shape), x.dtype, y.dtype) for x, y in b]
    assert len(b) == len(shapes) == 4
    assert shapes[0] == ((16, 3, 16, 16), torch.float32, torch.int64)
    assert shapes[-1][0] == (2, 3, 16, 16)
    assert len(batches(images, train=True, drop_last=True)) == 3

    x1, y1 = epoch(batches(images, train=True, seed=3))
    x2, y2 = epoch(batches(images, train=True, seed=3))
    x3, y3 = epoch(batches(images, train=True, seed=4))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(y1, y3) and not torch.equal(x1, x3)
    assert sorted(y1.tolist()) == list(range(50))  # a permutation: each sample once per epoch
    # The generator carries over, so the next epoch is shuffled differently.
    b = batches(images, train=True, seed=3)
    assert not torch.equal(epoch(b)[1], epoch(b)[1])


def test_eval_batches_are_normalised_in_order_and_complete():
    images = random_images(c=3)
    b = batches(images, train=False, batch_size=7)
    x, y = epoch(b)
    assert torch.equal(y, torch.arange(50))
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(x, (images.float() / 255 - mean) / std)
    assert torch.equal(x, epoch(b)[0])


def test_splits_batches_normalise_train_to_zero_mean_unit_std(tmp_path):
    s = load_data(digits(tmp_path, val_size=100))
    x, _ = epoch(s.batches("train", 256, train=False))
    assert float(x.mean()) == pytest.approx(0, abs=1e-4)
    assert float(x.std()) == pytest.approx(1, abs=1e-3)
    val = s.batches("val", 64)
    assert val.train is False and len(val) == 2
    assert s.batches("train", 64).train is True and s.batches("train", 64).flip is False


def test_channels_last_and_padding_scale():
    x, _ = next(iter(batches(random_images(), train=True, channels_last=True)))
    assert x.is_contiguous(memory_format=torch.channels_last)
    pads = {s: batches(random_images(n=2, size=s), train=True).pad for s in (4, 8, 16, 32)}
    assert pads == {4: 1, 8: 1, 16: 2, 32: 4}


def crops(image: torch.Tensor, pad: int, mirror: bool) -> list[torch.Tensor]:
    """Every crop (optionally mirrored) of the zero-padded image, by slicing."""
    c, h, w = image.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad, dtype=image.dtype)
    padded[:, pad : pad + h, pad : pad + w] = image
    out = [padded[:, i : i + h, j : j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return [o.flip(-1) for o in out] if mirror else out


@pytest.mark.parametrize("flip", [False, True])
def test_augment_pads_with_zeros_crops_and_flips(flip):
    # A pattern with no zero and no symmetry, so crops and mirrors are all distinguishable.
    image = (torch.arange(2 * 6 * 6) + 1).view(2, 6, 6).to(torch.uint8)
    n = 400
    out = augment(image.expand(n, -1, -1, -1), 1, flip, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == (n, 2, 6, 6)
    plain, mirrored = crops(image, 1, mirror=False), crops(image, 1, mirror=True)
    kinds = []
    for sample in out:
        is_plain = any(torch.equal(sample, c) for c in plain)
        is_mirrored = any(torch.equal(sample, c) for c in mirrored)
        assert is_plain or is_mirrored
        kinds.append("mirrored" if is_mirrored else "plain")
    assert any(not torch.equal(sample, image) for sample in out)
    assert (out == 0).any()  # padding is black, before normalisation
    counts = Counter(kinds)
    if flip:
        assert 150 < counts["mirrored"] < 250  # probability 0.5
    else:
        assert counts["mirrored"] == 0
    # Each of the 9 offsets turns up.
    assert len({bytes(s.numpy()) for s in out}) == (18 if flip else 9)
