"""The platform's `small` trial against a bare PyTorch loop doing the same work: wall ratio.

    .venv/bin/python -m bench.trial_vs_bare            # 10 epochs each (about 5 min, 1 thread)
    .venv/bin/python -m bench.trial_vs_bare --quick    # 2 epochs each (about 1.5 min)
    .venv/bin/python -m bench.trial_vs_bare --profile  # also the top of the trial's profile
    .venv/bin/python -m bench.trial_vs_bare --validate-every 1  # validating every epoch

The trial goes through the real trial code (`search.trial.run_trial`: trial directory,
checkpoint per epoch, validation and propagation where a default search validates: ASHA's
rungs and the last epoch, test at the end, plots). The bare loop is written below in about 60
lines: the same network (seeded the same way), the same data tensors, batch size,
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
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from residual import NetSpec, build_network
from search.config import SearchConfig, scheduler_rungs
from search.trial import RunOptions, Splits, load_trial_data, run_trial
from search.trial import loop as trial_loop
from search.trial.directory import TrialDir
from spaces import TrialPlan, load_space

from .common import Timers, default_dataset, figure, header, note

SPACE = "paper-table1"
PARAMS = {"shortcut": "identity", "activation": "full_preact"}
QUICK_EPOCHS = 2


def make_plan(scale: str = "small", epochs: int | None = None, seed: int = 0,
              **recipe: Any) -> TrialPlan:
    """The benchmark's trial: identity shortcuts, full pre-activation, at `scale`."""
    overrides = {"epochs": epochs} if epochs else {}
    return load_space(SPACE, scale).plan({**PARAMS, **overrides, **recipe}, scale, seed=seed)


# ------------------------------------------------------------------------------- bare loop


def search_options(epochs: int, threads: int = 1, validate_every: int = 0) -> RunOptions:
    """The options a default search runs a trial with on the CPU: validation at ASHA's rungs
    and the last epoch (`SearchConfig.validate_every`, default 0), or every
    `validate_every` epochs besides."""
    config = SearchConfig(validate_every=validate_every)
    return RunOptions(device="cpu", threads=threads, validate_every=config.validate_every,
                      validate_at=frozenset(scheduler_rungs(config, epochs)))


def bare_epochs(plan: TrialPlan, data: Splits, threads: int = 1,
                losses: list[torch.Tensor] | None = None,
                options: RunOptions | None = None) -> Iterator[dict[str, Any]]:
    """Train `plan` on `data` the plain way: yields after each epoch (trained, then validated
    at the epochs `options` validates, every epoch without) and once more after the test, with
    the figures so far. Per-step losses go to `losses`."""
    torch.set_num_threads(threads)
    recipe, seed = plan.recipe, plan.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    net = NetSpec.from_dict({**plan.net.to_dict(), "num_classes": data.num_classes,
                             "in_channels": data.in_channels})
    model = build_network(net)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    shift = torch.tensor(data.mean, dtype=torch.float32).view(1, -1, 1, 1).mul(255)
    scale = torch.tensor(data.std, dtype=torch.float32).view(1, -1, 1, 1).mul(255)
    images, labels = data.train_x, data.train_y
    n, c, h, w = images.shape
    pad = max(1, round(w / 8))  # 4 px at 32 px, as the paper
    side = w + 2 * pad
    padded = F.pad(images, (pad, pad, pad, pad)).view(n, c, side * side)  # once, not per step
    ys, xs = torch.arange(h), torch.arange(w)
    # Offsets of the H x W crop at (0, 0) in a padded image: plain, then mirrored.
    grid = torch.stack([ys[:, None] * side + xs, ys[:, None] * side + (w - 1 - xs)]).view(2, -1)
    steps, total = math.ceil(n / recipe.batch_size), recipe.total_steps(n)

    def error(x_u8: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        wrong = 0
        with torch.no_grad():
            for start in range(0, len(y), 256):
                x = (x_u8[start:start + 256].float() - shift) / scale
                wrong += int((model(x).argmax(1) != y[start:start + 256]).sum())
        return wrong / len(y)

    out = {"train_seconds": 0.0, "train_cpu_seconds": 0.0, "validation_seconds": 0.0,
           "validation_cpu_seconds": 0.0, "test_seconds": 0.0, "train_loss": [],
           "val_error": []}
    epochs = recipe.budget_epochs(n)
    for epoch in range(epochs):
        torch.set_num_threads(threads)
        started, cpu = time.perf_counter(), time.thread_time()
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum, seen = torch.zeros((), dtype=torch.float64), 0
        for step in range(epoch * steps, min((epoch + 1) * steps, total)):
            idx = order[(step - epoch * steps) * recipe.batch_size:][:recipe.batch_size]
            m = len(idx)
            dy = torch.randint(0, 2 * pad + 1, (m, 1), generator=gen)
            dx = torch.randint(0, 2 * pad + 1, (m, 1), generator=gen)
            crop = grid[(torch.rand(m, generator=gen) < 0.5).long()] if data.flip else grid[:1]
            where = (crop + (dy * side + dx))[:, None, :].expand(m, c, h * w)
            x = (padded[idx].gather(2, where).view(m, c, h, w).float() - shift) / scale
            for group in opt.param_groups:
                group["lr"] = recipe.lr_at(step, total)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * m
            seen += m
            if losses is not None:
                losses.append(loss.detach().clone())
        out["train_loss"].append(loss_sum.item() / seen)
        out["train_seconds"] += time.perf_counter() - started
        out["train_cpu_seconds"] += time.thread_time() - cpu
        if options is None or options.validates(epoch + 1, epoch + 1 == epochs):
            started, cpu = time.perf_counter(), time.thread_time()
            out["val_error"].append(error(data.val_x, data.val_y))
            out["validation_seconds"] += time.perf_counter() - started
            out["validation_cpu_seconds"] += time.thread_time() - cpu
        yield out
    started = time.perf_counter()
    out["test_error"] = error(data.test_x, data.test_y)
    out["test_seconds"] = time.perf_counter() - started
    yield out


class BareLoop:
    """`bare_epochs` run a piece at a time, each piece timed (wall and CPU) and kept apart from
    whatever runs between pieces: the global random states are its own."""

    def __init__(self, plan: TrialPlan, data: Splits, threads: int = 1,
                 losses: list[torch.Tensor] | None = None,
                 options: RunOptions | None = None) -> None:
        self._pieces = bare_epochs(plan, data, threads, losses, options)
        self._rng: tuple | None = None
        self.stats: dict[str, Any] = {}
        self.seconds = self.cpu_seconds = 0.0
        self.done = False

    def step(self) -> bool:
        """Run the next piece (an epoch, or the test); False once there is none."""
        if self.done:
            return False
        outer = _rng_states()
        if self._rng is not None:
            _set_rng_states(self._rng)
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self.stats = next(self._pieces)
        except StopIteration:
            self.done = True
        finally:
            self.seconds += time.perf_counter() - started
            self.cpu_seconds += time.thread_time() - cpu
            self._rng = _rng_states()
            _set_rng_states(outer)
        return not self.done

    def finish(self) -> dict[str, Any]:
        while self.step():
            pass
        return {**self.stats, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds}


def _rng_states() -> tuple:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()


def _set_rng_states(states: tuple) -> None:
    torch.set_rng_state(states[0])
    random.setstate(states[1])
    np.random.set_state(states[2])


def bare_loop(plan: TrialPlan, data: Splits, threads: int = 1,
              losses: list[torch.Tensor] | None = None,
              options: RunOptions | None = None) -> dict[str, Any]:
    """The whole bare run at once: its figures, wall and CPU seconds."""
    return BareLoop(plan, data, threads, losses, options).finish()


# ------------------------------------------------------------------------------ the trial


@contextlib.contextmanager
def trial_losses(losses: list[torch.Tensor]) -> Iterator[None]:
    """Record every training-step loss `run_trial` computes (its `F.cross_entropy` calls;
    propagation measures through its own module and is not recorded)."""
    real = trial_loop.F

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def cross_entropy(*args, **kwargs):
            loss = real.cross_entropy(*args, **kwargs)
            if torch.is_grad_enabled():
                losses.append(loss.detach().clone())
            return loss

    trial_loop.F = Recording()
    try:
        yield
    finally:
        trial_loop.F = real


def _split_key(setup, split: str = "?", *args, **kwargs) -> str:
    return f"evaluate_{split}"


def platform_trial(plan: TrialPlan, data: Splits, threads: int = 1, out_dir: str | None = None,
                   losses: list[torch.Tensor] | None = None,
                   report: Callable[[dict[str, Any]], None] | None = None,
                   options: RunOptions | None = None) -> dict[str, Any]:
    """Run the real trial (with `options`, by default as a default search runs it); its wall
    and CPU time, metrics and where the time went."""
    with contextlib.ExitStack() as stack:
        out = out_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-"))
        timers = stack.enter_context(Timers())
        for attr in ("build", "train_epoch", "measure", "measure_propagation",
                     "render_trial_plots"):
            timers.wrap(trial_loop, attr)
        _wrap_keyed(timers, trial_loop, "evaluate", _split_key)
        for attr in ("open", "start", "save_epoch", "write_result"):
            timers.wrap(TrialDir, attr, f"dir_{attr}")
        if losses is not None:
            stack.enter_context(trial_losses(losses))
        options = options or search_options(plan.recipe.budget_epochs(len(data.train_y)),
                                            threads)
        started, cpu = time.perf_counter(), time.thread_time()
        result = run_trial(plan, data, out, report, options)
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


def _wrap_keyed(timers: Timers, owner: Any, attr: str, key) -> None:
    original = getattr(owner, attr, None)
    if original is None:
        return

    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            name = key(*args, **kwargs)
            timers.seconds[name] += time.perf_counter() - started
            timers.calls[name] += 1

    timers._undo.append((owner, attr, original))
    setattr(owner, attr, timed)


def breakdown(trial: dict[str, Any]) -> dict[str, float]:
    """The trial's wall time by phase; `other` is what no timed function accounts for."""
    parts = trial["parts"]
    init_propagation = parts.get("measure_propagation", 0.0) - parts.get("measure", 0.0)
    phases = {
        "build": parts.get("build", 0.0),
        "train": parts.get("train_epoch", 0.0),
        "validation": parts.get("evaluate_val", 0.0),
        "test": parts.get("evaluate_test", 0.0),
        "propagation_per_epoch": parts.get("measure", 0.0),
        "propagation_at_init": max(init_propagation, 0.0),
        "checkpoint_and_records": sum(parts.get(f"dir_{a}", 0.0)
                                      for a in ("open", "start", "save_epoch", "write_result")),
        "plots": parts.get("render_trial_plots", 0.0),
    }
    phases["other"] = trial["seconds"] - sum(phases.values())
    return phases


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


def main(argv: list[str] | None = None) -> int:
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
    args = parser.parse_args(argv)
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

    ratios, validating, cpu_ratios = [], [], []
    for repeat in range(args.repeats):
        if args.sequential:
            bare = bare_loop(plan, data, args.threads, options=options)
            trial = platform_trial(plan, data, args.threads, options=options)
        else:
            trial, bare = interleaved(plan, data, args.threads, options)
        # The plain script trains and tests; the validating one also validates at the epochs
        # the trial does (its objective): the same run, its validation passes timed apart.
        plain = bare["seconds"] - bare["validation_seconds"]
        ratios.append(trial["seconds"] / plain)
        validating.append(trial["seconds"] / bare["seconds"])
        cpu_ratios.append(trial["cpu_seconds"] / (bare["cpu_seconds"]
                                                   - bare["validation_cpu_seconds"]))
        suffix = f".{repeat + 1}" if args.repeats > 1 else ""
        figure(f"trial_vs_bare.bare_seconds{suffix}", plain, "s")
        figure(f"trial_vs_bare.bare_validating_seconds{suffix}", bare["seconds"], "s")
        figure(f"trial_vs_bare.trial_seconds{suffix}", trial["seconds"], "s")
        for part in ("train", "validation", "test"):
            figure(f"trial_vs_bare.bare_{part}_seconds{suffix}", bare[f"{part}_seconds"], "s")
        for phase, seconds in breakdown(trial).items():
            figure(f"trial_vs_bare.trial_{phase}_seconds{suffix}", seconds, "s")
        figure(f"trial_vs_bare.bare_train_cpu_seconds{suffix}", bare["train_cpu_seconds"], "s")
        figure(f"trial_vs_bare.trial_train_cpu_seconds{suffix}",
               trial["cpu_parts"].get("train_epoch", math.nan), "s")
        history = trial["result"].history
        figure(f"trial_vs_bare.trial_test_error{suffix}",
               trial["result"].metrics.get("test_error", math.nan))
        figure(f"trial_vs_bare.bare_test_error{suffix}", bare["test_error"])
        same = [abs(m["train_loss"] - b) for m, b in zip(history, bare["train_loss"])]
        figure(f"trial_vs_bare.train_loss_max_difference{suffix}", max(same))
    figure("trial_vs_bare.ratio", float(np.median(ratios)), "x (trial wall / bare wall)")
    figure("trial_vs_bare.ratio_validating_bare", float(np.median(validating)),
           "x (trial wall / wall of a bare loop that also validates where the trial does)")
    figure("trial_vs_bare.cpu_ratio", float(np.median(cpu_ratios)),
           "x (the same with the thread's CPU time)")
    if args.profile:
        profile(plan, data, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
