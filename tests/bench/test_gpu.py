"""The GPU benchmark: never a GPU figure without a GPU; its measurements run (on the CPU, on
tiny sizes, here) so the CUDA run has no untried code path."""

import pytest
import torch

from bench import gpu
from bench.common import parse_figures


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_every_figure_is_missing_and_it_exits_0(capsys):
    assert gpu.main(["--quick"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    assert set(figures) == set(gpu.figure_names(quick=True))
    assert all(value == "missing" for value, _ in figures.values())


def test_resnet110_training_flops_are_the_known_ones():
    # He et al.: ResNet-110 is about 0.25 G multiply-adds forward; training is about 3x.
    flops = gpu.flops_per_image(gpu.plan_for(110, False, epochs=1), "cpu", batch=2)
    assert 1.2e9 < flops < 1.8e9


def test_peaks_are_found_by_device_name():
    assert gpu.peak_flops("NVIDIA H100 80GB HBM3", False, None) == 494.7e12
    assert gpu.peak_flops("NVIDIA H100 PCIe", True, None) == 756e12
    assert gpu.peak_flops("Some GPU", False, None) is None
    assert gpu.peak_flops("Some GPU", False, 100.0) == 100e12


def test_trial_packed_and_baseline_paths_run():
    plan = gpu.plan_for(8, False, epochs=2, width=4)
    data = gpu.synthetic(256, 32, size=8)
    assert gpu.trial_throughput(plan, data, "cpu", threads=1) > 0
    assert gpu.dataloader_throughput(plan, data, "cpu", steps=2, warmup=1, workers=0) > 0
    assert gpu.packed_throughput(2, plan, 128, 16, size=8, device="cpu") > 0
