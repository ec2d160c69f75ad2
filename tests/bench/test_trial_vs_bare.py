"""The trial-versus-bare benchmark compares like with like: the same network on the same
batches, so the same loss at every step; and the script prints parseable figures."""

import pytest
import torch

from bench.bare_loop import bare_loop
from bench.common import parse_figures
from bench.trial_vs_bare import (
    BREAKDOWN,
    UNFIGURED,
    breakdown,
    interleaved,
    main,
    make_plan,
    platform_trial,
)
from search.trial import Splits
from search.trial.loop import PHASES


def synthetic(n_train=300, n_eval=40, size=16, seed=0) -> Splits:
    """Random RGB images, flips on: exercises every draw of the augmentation."""
    g = torch.Generator().manual_seed(seed)

    def split(n):
        return (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                torch.randint(0, 10, (n,), generator=g))

    return Splits("synthetic", *split(n_train), *split(n_eval), *split(n_eval),
                  [str(i) for i in range(10)], (0.5, 0.45, 0.4), (0.25, 0.24, 0.26), True)


@pytest.fixture(scope="module")
def data():
    return synthetic()


def test_trial_and_bare_loop_train_the_same_network_on_the_same_batches(data, tmp_path):
    plan = make_plan("small", epochs=2)  # the benchmark's network: ResNet-56, width 8
    bare_losses, trial_losses = [], []
    bare = bare_loop(plan, data, threads=1, losses=bare_losses)
    trial = platform_trial(plan, data, threads=1, out_dir=str(tmp_path), losses=trial_losses)
    assert len(bare_losses) == len(trial_losses) == 2 * 3  # 300 images, batch 128: 3 steps
    # The first step: same initial weights, same batch (shuffle, crops, flips, normalisation).
    assert torch.equal(bare_losses[0], trial_losses[0])
    # After the first step: same optimiser and learning rate too.
    assert torch.equal(bare_losses[1], trial_losses[1])
    torch.testing.assert_close(torch.stack(bare_losses), torch.stack(trial_losses))
    history = trial["result"].history
    assert [m["train_loss"] for m in history] == pytest.approx(bare["train_loss"], rel=1e-6)
    assert trial["result"].metrics["test_error"] == pytest.approx(bare["test_error"])


def test_a_different_seed_is_caught(data, tmp_path):
    """The check above can fail: another seed gives other weights and other batches."""
    bare_losses, trial_losses = [], []
    bare_loop(make_plan("small", epochs=1, seed=1), data, losses=bare_losses)
    platform_trial(make_plan("small", epochs=1, seed=0), data, out_dir=str(tmp_path),
                   losses=trial_losses)
    assert not torch.equal(bare_losses[0], trial_losses[0])


def test_script_prints_parseable_figures(capsys):
    assert main(["--scale", "smoke", "--dataset", "digits", "--epochs", "1"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    ratio, unit = figures["trial_vs_bare.ratio"]
    assert float(ratio) > 0 and unit.startswith("x")
    assert float(figures["trial_vs_bare.train_loss_max_difference"][0]) == 0.0
    for phase in ("train", "validation", "test", "checkpoint_and_records", "other"):
        assert float(figures[f"trial_vs_bare.trial_{phase}_seconds"][0]) >= 0 or \
            phase == "other"


def test_epoch_by_epoch_interleaving_changes_neither_run(data):
    plan = make_plan("small", epochs=4)
    trial, bare = interleaved(plan, data)
    history = trial["result"].history
    assert [m["train_loss"] for m in history] == pytest.approx(bare["train_loss"], rel=1e-6)
    # Both validate where a default search would: ASHA's rung (grace 30% of 4: epoch 2) and
    # the last epoch, the same errors.
    assert [m["epoch"] for m in history if "val_error" in m] == [2, 4]
    assert bare["val_error"] == [m["val_error"] for m in history if "val_error" in m]
    assert 0 < trial["seconds"] and 0 < bare["seconds"]


def test_every_phase_of_the_trial_has_a_figure_or_a_reason_not_to():
    figured = {phase for phases in BREAKDOWN.values() for phase in phases}
    assert figured | UNFIGURED == set(PHASES) and not figured & UNFIGURED


def test_a_phase_without_a_figure_is_refused():
    """Its seconds would otherwise land silently in `other`."""
    with pytest.raises(ValueError, match="'warm_up'"):
        breakdown({"seconds": 1.0, "parts": {"train": 0.5, "warm_up": 0.1}})
