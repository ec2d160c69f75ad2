"""GPU throughput at the paper's full scale: the trial's training, packed trials, a baseline.

    .venv/bin/python -m bench.gpu            # on a CUDA machine (a few minutes)
    .venv/bin/python -m bench.gpu --quick    # fewer steps, fp32 only

Without CUDA it prints every figure as missing and exits 0: a GPU figure is only ever one
that was measured. On CUDA, on synthetic 32x32 images (throughput does not depend on pixels):

    gpu.<net>.images_per_second      ResNet-110 / ResNet-164 (full pre-activation, width 16,
                                     batch 128) trained through the real trial code
                                     (`run_trial`: on-device batches and augmentation,
                                     channels_last), the second epoch's training images/s
    gpu.<net>.mfu                    model FLOP utilisation: the training step's FLOPs
                                     (counted by torch.utils.flop_counter) x images/s over the
                                     GPU's dense peak for the arithmetic used (TF32, which
                                     cuDNN uses for fp32 convolutions by default; bf16)
    gpu.<net>.bf16.*                 the same with bf16 autocast (opt-in in the platform)
    gpu.packed_<k>.images_per_second k trials of ResNet-110 at once on the one GPU (separate
                                     processes, as fractional --gpus-per-trial), all of them
    gpu.dataloader_fp32.images_per_second
                                     the naive baseline: a DataLoader with worker processes
                                     augmenting per image on the CPU, pinned copies, fp32,
                                     no channels_last, the same ResNet-110
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import tempfile
import time
from typing import Any

import torch

from .common import figure, header, missing, note

NETS = {"resnet110": (110, False), "resnet164": (164, True)}
PACKED = (1, 2, 4, 8)
PEAK_TFLOPS = {  # dense, per GPU: (TF32, BF16); from the vendors' datasheets
    "H100 PCIe": (378.0, 756.0),
    "H100 NVL": (417.5, 835.5),
    "H100": (494.7, 989.4),  # SXM (e.g. "NVIDIA H100 80GB HBM3")
    "H200": (494.7, 989.4),
    "A100": (156.0, 312.0),
    "L40S": (183.0, 366.0),
    "L4": (60.0, 121.0),
}


def figure_names(quick: bool) -> list[str]:
    names = []
    for net in NETS:
        names += [f"gpu.{net}.images_per_second", f"gpu.{net}.mfu"]
        if not quick:
            names += [f"gpu.{net}.bf16.images_per_second", f"gpu.{net}.bf16.mfu"]
    names += [f"gpu.packed_{k}.images_per_second" for k in PACKED]
    return names + ["gpu.dataloader_fp32.images_per_second"]


def peak_flops(name: str, bf16: bool, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for key, (tf32, bf16_peak) in PEAK_TFLOPS.items():  # most specific names first
        if key in name:
            return 1e12 * (bf16_peak if bf16 else tf32)
    return None


# ----------------------------------------------------------------------------------- data


def synthetic(n_train: int, n_eval: int, size: int = 32, seed: int = 0):
    """Random uint8 CIFAR-shaped splits with CIFAR's statistics; flips on."""
    from search.trial import Splits

    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                torch.randint(0, 10, (n,), generator=g))

    return Splits("synthetic", *split(n_train), *split(n_eval), *split(n_eval),
                  [str(i) for i in range(10)], (0.491, 0.482, 0.447), (0.247, 0.243, 0.261),
                  True)


def plan_for(depth: int, bottleneck: bool, epochs: int, width: int | None = None):
    """The full scale's plan for a network (Table 2's space, full pre-activation), with an
    epoch budget instead of the paper's iterations."""
    from spaces import TrialPlan, load_space

    params: dict[str, Any] = {"activation": "full_preact", "bottleneck": bottleneck,
                              "depth": depth}
    if width:
        params["width"] = width
    plan = load_space("paper-table2", "full").plan(params, "full")
    budget: dict[str, Any] = {"epochs": epochs}
    if hasattr(plan.recipe, "iterations"):
        budget["iterations"] = None
    if getattr(plan.recipe, "warmup_iterations", 0):
        budget["warmup_iterations"] = 0
    return TrialPlan(plan.net, dataclasses.replace(plan.recipe, **budget), plan.seed,
                     plan.params)


def flops_per_image(plan, device: str, size: int = 32, batch: int = 32) -> float:
    """FLOPs of one training step (forward and backward) per image, counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    from residual import NetSpec, build_network

    net = build_network(NetSpec.from_dict({**plan.net.to_dict(), "num_classes": 10,
                                           "in_channels": 3})).to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    counter = FlopCounterMode(display=False)
    with counter:
        torch.nn.functional.cross_entropy(net(images), labels).backward()
    return counter.get_total_flops() / batch


# ------------------------------------------------------------------------------- the trial


def trial_throughput(plan, data, device: str, bf16: bool = False, threads: int = 2,
                     barrier=None) -> float:
    """Training images/s of the trial's last epoch through `run_trial` (the first warms up:
    cuDNN's choices, the caching allocator); `barrier` lines up packed trials before it."""
    from search.trial import RunOptions, run_trial

    def report(metrics: dict[str, Any]) -> None:
        if barrier is not None and metrics["epoch"] == 1:
            barrier.wait(timeout=900)

    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as out:
        result = run_trial(plan, data, out, report,
                           RunOptions(device=device, bf16=bf16, threads=threads))
    return float(result.history[-1]["images_per_second"])


def _packed_worker(rank: int, plan, n_train: int, n_eval: int, size: int, device: str,
                   barrier, results) -> None:
    data = synthetic(n_train, n_eval, size=size, seed=rank)
    ips = trial_throughput(plan, data, device, barrier=barrier, threads=1)
    results.put((rank, ips, n_train))


def packed_throughput(k: int, plan, n_train: int, n_eval: int, size: int = 32,
                      device: str = "cuda") -> float:
    """Aggregate training images/s of `k` trials sharing the GPU, each its own process; their
    timed epochs start together. The sum of their rates (they end within a few percent)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(k), context.Queue()
    workers = [context.Process(target=_packed_worker,
                               args=(rank, plan, n_train, n_eval, size, device, barrier,
                                     results))
               for rank in range(k)]
    for worker in workers:
        worker.start()
    rates: list[float] = []
    deadline = time.time() + 1800
    while len(rates) < k:
        try:
            rates.append(results.get(timeout=5)[1])
        except queue.Empty:
            failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if failed or time.time() > deadline:
                for worker in workers:
                    worker.kill()
                raise RuntimeError(f"packed trials failed (exit codes {failed})") from None
    for worker in workers:
        worker.join()
    return sum(rates)


# ------------------------------------------------------------------------------ baseline


class _Augmented(torch.utils.data.Dataset):
    """Per-image CPU augmentation, as a torchvision pipeline does it: pad (4 at 32 px),
    random crop, random flip, to float, normalise."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean, std) -> None:
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.images.shape[-1]
        pad = max(1, round(size / 8))  # 4 at 32 px
        image = torch.nn.functional.pad(self.images[i], (pad, pad, pad, pad))
        y, x = torch.randint(0, 2 * pad + 1, (2,)).tolist()
        image = image[:, y:y + size, x:x + size]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return (image.float() / 255 - self.mean) / self.std, self.labels[i]


def dataloader_throughput(plan, data, device: str, steps: int, warmup: int = 10,
                          workers: int = 4) -> float:
    """Training images/s of a plain DataLoader loop, fp32, after `warmup` steps."""
    from residual import NetSpec, build_network

    net = build_network(NetSpec.from_dict({**plan.net.to_dict(), "num_classes": 10,
                                           "in_channels": 3})).to(device)
    recipe = plan.recipe
    opt = torch.optim.SGD(net.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    loader = torch.utils.data.DataLoader(
        _Augmented(data.train_x, data.train_y, data.mean, data.std),
        batch_size=recipe.batch_size, shuffle=True, drop_last=True, num_workers=workers,
        pin_memory=device.startswith("cuda"), persistent_workers=workers > 0)
    net.train()
    seen, started = 0, None
    while seen < steps + warmup:
        for images, labels in loader:
            if seen == warmup:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(net(images), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += 1
            if seen == steps + warmup:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * recipe.batch_size / (time.perf_counter() - started)


# ----------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps; fp32 only")
    parser.add_argument("--peak-tflops", type=float,
                        help="the GPU's dense peak for the arithmetic measured, if it is not "
                        f"one of: {', '.join(PEAK_TFLOPS)}")
    parser.add_argument("--workers", type=int, default=4, help="the baseline's DataLoader")
    args = parser.parse_args(argv)
    header("bench.gpu", args.quick, argv)
    if not torch.cuda.is_available():
        for name in figure_names(args.quick):
            missing(name, "no CUDA device on this machine")
        return 0
    name = torch.cuda.get_device_name(0)
    note(f"{name}; synthetic CIFAR-shaped data; the trial's own batches and augmentation")
    n_train = 128 * (100 if args.quick else 352)  # the paper's 45k is 352 steps
    data = synthetic(n_train, 1000 if args.quick else 5000)
    for net, (depth, bottleneck) in NETS.items():
        plan = plan_for(depth, bottleneck, epochs=2)
        flops = flops_per_image(plan, "cuda")
        note(f"{net}: {flops / 1e9:.3f} GFLOPs per training image (forward and backward)")
        for bf16 in (False,) if args.quick else (False, True):
            suffix = ".bf16" if bf16 else ""
            ips = trial_throughput(plan, data, "cuda", bf16=bf16)
            figure(f"gpu.{net}{suffix}.images_per_second", ips, "images/s")
            peak = peak_flops(name, bf16, args.peak_tflops)
            if peak is None:
                missing(f"gpu.{net}{suffix}.mfu", f"peak of {name!r} unknown: --peak-tflops")
            else:
                figure(f"gpu.{net}{suffix}.mfu", 100 * flops * ips / peak,
                       f"% of {peak / 1e12:.0f} TFLOPS ({'BF16' if bf16 else 'TF32'} dense)")
    plan = plan_for(110, False, epochs=2)
    per_trial = 128 * (30 if args.quick else 60)
    for k in PACKED:
        ips = packed_throughput(k, plan, per_trial, 512)
        figure(f"gpu.packed_{k}.images_per_second", ips, "images/s (all trials)")
    ips = dataloader_throughput(plan, data, "cuda", steps=50 if args.quick else 200,
                                workers=args.workers)
    figure("gpu.dataloader_fp32.images_per_second", ips, f"images/s ({args.workers} workers)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
