"""The platform's `small` trial against a bare PyTorch loop doing the same work: wall ratio.

    .venv/bin/python -m bench.trial_vs_bare            # 10 epochs each (about 5 min, 1 thread)
    .venv/bin/python -m bench.trial_vs_bare --quick    # 2 epochs each (about 1.5 min)
    .venv/bin/python -m bench.trial_vs_bare --profile  # also the top of the trial's profile
    .venv/bin/python -m bench.trial_vs_bare --validate-every 1  # validating every epoch

The trial goes through the real trial code (`search.trial.run_trial`: trial directory,
checkpoint per epoch, validation and propagation where a default search validates: ASHA's
rungs and the last epoch, test at the end, plots), its phases timed through the trial's own
seam (`search.trial.loop.TrialPhases`). The bare loop (`bench.bare_loop`) does the same work
the plain way: the same network (seeded the same way), the same data tensors, batch size,
learning-rate schedule, augmentation (the same random draws from the same generator, so the
same batches: `tests/bench` checks both lose the same at every step) and thread count. It
validates at the same epochs and tests at the end, each pass timed apart, so one run gives
both comparisons:

    trial_vs_bare.ratio                  trial / (bare training + test): a plain script
    trial_vs_bare.ratio_validating_bare  trial / (bare training + validation + test): what is
                                         left is the platform's own machinery

Both run in this process after a warm-up on a few images, so one-time imports (torch._dynamo on
the first optimiser, about 2 s; matplotlib) are paid by neither.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import io
import math
import pstats
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from search.config import SearchConfig, scheduler_rungs
from search.trial import RunOptions, Splits, load_trial_data, run_trial
from search.trial.loop import TrialPhases
from spaces import TrialPlan, load_space

from .bare_loop import BareLoop, bare_loop
from .common import Timers, default_dataset, figure, header, note

SPACE = "paper-table1"
PARAMS = {"shortcut": "identity", "activation": "full_preact"}
QUICK_EPOCHS = 2


def make_plan(scale: str = "small", epochs: int | None = None, seed: int = 0,
              **recipe: Any) -> TrialPlan:
    """The benchmark's trial: identity shortcuts, full pre-activation, at `scale`."""
    overrides = {"epochs": epochs} if epochs else {}
    return load_space(SPACE, scale).plan({**PARAMS, **overrides, **recipe}, scale, seed=seed)


# ------------------------------------------------------------------------------ the trial

BREAKDOWN = {
    "build": ("build",),
    "train": ("train",),
    "validation": ("val",),
    "test": ("test",),
    "propagation_per_epoch": ("propagation",),
    "propagation_at_init": ("propagation_at_init",),
    "checkpoint_and_records": ("checkpoint", "records"),
    "plots": ("plots",),
}
"""The trial's figures (`trial_vs_bare.trial_<name>_seconds`) from its phases (`PHASES`). The
report phase is left out: interleaved, it holds the bare loop, whose time is taken off apart;
what the callback itself costs stays in `other`."""

UNFIGURED = frozenset({"report"})


def search_options(epochs: int, threads: int = 1, validate_every: int = 0) -> RunOptions:
    """The options a default search runs a trial with on the CPU: validation at ASHA's rungs
    and the last epoch (`SearchConfig.validate_every`, default 0), or every
    `validate_every` epochs besides."""
    config = SearchConfig(validate_every=validate_every)
    return RunOptions(device="cpu", threads=threads, validate_every=config.validate_every,
                      validate_at=frozenset(scheduler_rungs(config, epochs)))


class PhaseTimers(TrialPhases):
    """The trial's phases timed into `timers` (wall and the thread's CPU time, by phase name),
    and, where `losses` is given, every training step's loss kept there."""

    def __init__(self, timers: Timers, losses: list[torch.Tensor] | None = None) -> None:
        self.timers = timers
        self.losses = losses

    def __call__(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.timers.section(name)

    def step_loss(self, loss: torch.Tensor) -> None:
        if self.losses is not None:
            self.losses.append(loss.detach().clone())


def platform_trial(plan: TrialPlan, data: Splits, threads: int = 1, out_dir: str | None = None,
                   losses: list[torch.Tensor] | None = None,
                   report: Callable[[dict[str, Any]], None] | None = None,
                   options: RunOptions | None = None) -> dict[str, Any]:
    """Run the real trial (with `options`, by default as a default search runs it); its wall
    and CPU time, metrics and where the time went (seconds, CPU seconds and calls by phase).
    Every training step's loss goes to `losses`."""
    options = options or search_options(plan.recipe.budget_epochs(len(data.train_y)), threads)
    timers = Timers()
    with contextlib.ExitStack() as stack:
        out = out_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        started, cpu = time.perf_counter(), time.thread_time()
        result = run_trial(plan, data, out, report, options, phases=PhaseTimers(timers, losses))
        seconds, cpu_seconds = time.perf_counter() - started, time.thread_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "result": result,
            "parts": dict(timers.seconds), "cpu_parts": dict(timers.cpu_seconds),
            "calls": dict(timers.calls)}


def interleaved(plan: TrialPlan, data: Splits, threads: int = 1,
                options: RunOptions | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The trial and the bare loop epoch by epoch: after each of the trial's epochs (in its
    report callback, where a search reports to Ray) the bare loop runs the same epoch,
    validating at the same epochs. Both see the same load from whatever else runs on the
    machine; the trial's time is its wall time less the bare loop's pieces."""
    options = options or search_options(plan.recipe.budget_epochs(len(data.train_y)), threads)
    bare = BareLoop(plan, data, threads, options=options)

    def report(metrics: dict[str, Any]) -> None:
        bare.step()
        if metrics.get("outcome", "running") != "running":
            bare.finish()

    trial = platform_trial(plan, data, threads, report=report, options=options)
    bare_stats = bare.finish()
    trial["seconds"] -= bare.seconds
    trial["cpu_seconds"] -= bare.cpu_seconds
    return trial, bare_stats


def breakdown(trial: dict[str, Any]) -> dict[str, float]:
    """The trial's wall time by figure (`BREAKDOWN`); `other` is what no phase accounts for."""
    parts = trial["parts"]
    unknown = set(parts) - UNFIGURED - {p for phases in BREAKDOWN.values() for p in phases}
    if unknown:  # its seconds would silently land in `other`
        raise ValueError(f"trial phases {sorted(unknown)} have no figure in BREAKDOWN")
    figures = {name: sum(parts.get(phase, 0.0) for phase in phases)
               for name, phases in BREAKDOWN.items()}
    figures["other"] = trial["seconds"] - sum(figures.values())
    return figures


def subset(data: Splits, n: int, seed: int = 0) -> Splits:
    """`n` images of each split (a fixed random choice: the splits may be sorted by class),
    with the full data's statistics, for warm-ups and tests."""
    def pick(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:n]
        return x[keep], y[keep]

    return Splits(data.dataset, *pick(data.train_x, data.train_y),
                  *pick(data.val_x, data.val_y), *pick(data.test_x, data.test_y),
                  list(data.classes), data.mean, data.std, data.flip)


def warm_up(plan: TrialPlan, data: Splits, threads: int) -> None:
    """One epoch of both on a few images: lazy imports and first-call costs paid here."""
    budget = {"epochs": 1, **({"iterations": None} if hasattr(plan.recipe, "iterations") else {})}
    tiny = TrialPlan(plan.net, dataclasses.replace(plan.recipe, **budget), plan.seed, plan.params)
    small = subset(data, 2 * plan.recipe.batch_size)
    bare_loop(tiny, small, threads)
    platform_trial(tiny, small, threads)


# -------------------------------------------------------------------------------- profile


def profile(plan: TrialPlan, data: Splits, threads: int, top: int = 12) -> None:
    """The top of the trial's profile: Python functions (cProfile, cumulative) and PyTorch
    operators (torch.profiler, self CPU time), for one trial of `plan`."""
    profiler = cProfile.Profile()
    profiler.enable()
    platform_trial(plan, data, threads)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(
        r"search|residual|torch/(optim|nn/modules/module)|matplotlib/figure", top * 2)
    note("cProfile of run_trial (cumulative seconds, project and framework entry points):")
    for line in text.getvalue().splitlines():
        if line.strip():
            note(line.rstrip())
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        platform_trial(plan, data, threads)
    note("torch.profiler of run_trial (operators by self CPU time):")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)
    for line in table.splitlines():
        note(line)


# ----------------------------------------------------------------------------------- main


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.trial_vs_bare", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EPOCHS} epochs")
    parser.add_argument("--epochs", type=int, help="override the budget (small: 10)")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--dataset", help="default: the CIFAR-10 JPEG archive beside the "
                        "checkout, else digits")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="bare/trial pairs")
    parser.add_argument("--validate-every", type=int, default=0, metavar="N",
                        help="the trial's --validate-every (default 0, a search's: validation "
                        "at ASHA's rungs and the last epoch; 1: every epoch)")
    parser.add_argument("--sequential", action="store_true",
                        help="the whole bare loop, then the whole trial (default: epoch by "
                        "epoch, alternating, so both see the same load)")
    parser.add_argument("--profile", action="store_true",
                        help="print the top of the trial's profile (one extra trial)")
    return parser.parse_args(argv)


def pair_figures(trial: dict[str, Any], bare: dict[str, Any], suffix: str
                 ) -> tuple[float, float, float]:
    """Print one pair's figures; its ratios: to the plain script, to the validating one, and
    of CPU time to the plain script's."""
    # The plain script trains and tests; the validating one also validates at the epochs the
    # trial does (its objective): the same run, its validation passes timed apart.
    plain = bare["seconds"] - bare["validation_seconds"]
    figure(f"trial_vs_bare.bare_seconds{suffix}", plain, "s")
    figure(f"trial_vs_bare.bare_validating_seconds{suffix}", bare["seconds"], "s")
    figure(f"trial_vs_bare.trial_seconds{suffix}", trial["seconds"], "s")
    for part in ("train", "validation", "test"):
        figure(f"trial_vs_bare.bare_{part}_seconds{suffix}", bare[f"{part}_seconds"], "s")
    for phase, seconds in breakdown(trial).items():
        figure(f"trial_vs_bare.trial_{phase}_seconds{suffix}", seconds, "s")
    figure(f"trial_vs_bare.bare_train_cpu_seconds{suffix}", bare["train_cpu_seconds"], "s")
    figure(f"trial_vs_bare.trial_train_cpu_seconds{suffix}",
           trial["cpu_parts"].get("train", math.nan), "s")
    figure(f"trial_vs_bare.trial_test_error{suffix}",
           trial["result"].metrics.get("test_error", math.nan))
    figure(f"trial_vs_bare.bare_test_error{suffix}", bare["test_error"])
    same = [abs(m["train_loss"] - b) for m, b in zip(trial["result"].history, bare["train_loss"])]
    figure(f"trial_vs_bare.train_loss_max_difference{suffix}", max(same))
    plain_cpu = bare["cpu_seconds"] - bare["validation_cpu_seconds"]
    return (trial["seconds"] / plain, trial["seconds"] / bare["seconds"],
            trial["cpu_seconds"] / plain_cpu)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    header("bench.trial_vs_bare", args.quick, argv)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else None)
    plan = make_plan(args.scale, epochs, args.seed)
    dataset = args.dataset or default_dataset()
    data = load_trial_data(plan.recipe, dataset)
    note(f"{plan.net.name} on {data.describe()}; {plan.recipe.epochs} epochs, batch "
         f"{plan.recipe.batch_size}, {args.threads} thread(s)")
    warm_up(plan, data, args.threads)
    budget = plan.recipe.budget_epochs(len(data.train_y))
    options = search_options(budget, args.threads, args.validate_every)
    validated = [e for e in range(1, budget + 1) if options.validates(e, e == budget)]
    note(f"validation (and the trial's propagation) after epochs {validated}, both sides")
    figure("trial_vs_bare.validations", len(validated), "passes")

    ratios = []
    for repeat in range(args.repeats):
        if args.sequential:
            bare = bare_loop(plan, data, args.threads, options=options)
            trial = platform_trial(plan, data, args.threads, options=options)
        else:
            trial, bare = interleaved(plan, data, args.threads, options)
        ratios.append(pair_figures(trial, bare, f".{repeat + 1}" if args.repeats > 1 else ""))
    plain, validating, cpu = (float(np.median(column)) for column in zip(*ratios))
    figure("trial_vs_bare.ratio", plain, "x (trial wall / bare wall)")
    figure("trial_vs_bare.ratio_validating_bare", validating,
           "x (trial wall / wall of a bare loop that also validates where the trial does)")
    figure("trial_vs_bare.cpu_ratio", cpu, "x (the same with the thread's CPU time)")
    if args.profile:
        profile(plan, data, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
