"""The faster batches are the same batches: the same random draws, the same tensors, bit for
bit, as the implementation they replaced (kept in bench/augmentation.py)."""

import pytest
import torch

from bench.augmentation import ReferenceBatches, main, reference_augment
from bench.common import parse_figures
from search.trial.data import Batches, augment


@pytest.mark.parametrize(("size", "n", "batch", "flip", "drop_last", "channels"), [
    (16, 300, 128, True, False, 3), (32, 129, 64, False, True, 3), (8, 50, 7, True, False, 1),
    (5, 33, 8, True, False, 3)])
def test_batches_equal_the_reference_bit_for_bit(size, n, batch, flip, drop_last, channels):
    g = torch.Generator().manual_seed(size)
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,), generator=g)
    for train in (True, False):
        kwargs = dict(batch_size=batch, mean=(0.5,) * channels, std=(0.25,) * channels,
                      device="cpu", train=train, flip=flip, drop_last=drop_last)
        now = Batches(images, labels, generator=torch.Generator().manual_seed(3), **kwargs)
        ref = ReferenceBatches(images, labels, generator=torch.Generator().manual_seed(3),
                               **kwargs)
        for _ in range(3):  # the generator carries over from epoch to epoch
            pairs = list(zip(now, ref, strict=True))
            assert pairs
            for (x1, y1), (x2, y2) in pairs:
                assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(now.generator.get_state(), ref.generator.get_state())


@pytest.mark.parametrize("flip", [False, True])
def test_augment_equals_the_reference(flip):
    images = torch.randint(0, 256, (64, 3, 12, 12), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    assert torch.equal(augment(images, 2, flip, torch.Generator().manual_seed(5)),
                       reference_augment(images, 2, flip, torch.Generator().manual_seed(5)))


def test_script_prints_before_and_now(capsys):
    assert main(["--quick", "--epochs", "1"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    for size in (16, 32):
        assert float(figures[f"augmentation.{size}px.now_ms"][0]) > 0
        assert float(figures[f"augmentation.{size}px.before_ms"][0]) > 0
