"""What a search costs beyond its trials' own training: 12 small-like trials at concurrency 2.

    .venv/bin/python -m bench.search_overhead            # small scale, 3 epochs (about 6 min)
    .venv/bin/python -m bench.search_overhead --quick    # 1,000 images, 2 epochs (about 2 min)

A real search (`search.run`: local Ray, Optuna TPE on SQLite, MLflow on SQLite, Ray Tune
checkpoints) over paper-table1 (its 11 anchors and one TPE proposal), no early stopping, on the
real CIFAR-10 at the `small` scale's network and image size. The figure is

    search_overhead.ratio = wall time x concurrency / sum of the trials' own time

where a trial's own time is what a bare loop also spends: training, validation, test (and the
propagation measurements, part of the trial's science), timed inside the worker. Everything
else is overhead, broken down from timings taken in the workers (a Ray worker setup hook
observes every trial's phases through `search.trainable.observe_trials`, and times Ray's
persisting of a checkpoint) and in the driver (the searcher's and the MLflow tracker's
methods):

    actor_startup   slot time no trial phase accounts for: Ray scheduling, new worker
                    processes and their imports, actor reuse, the end of the search
    data_loading    the "data" phase: a trial loading its own data in the worker
    checkpointing   the "checkpoint" phase (each epoch's metrics and checkpoint; a resume's
                    reading them back), and Ray copying the trial directory into its storage
                    at each report
    report_wait     the rest of the "report" phase: the worker waiting for the driver to take
                    the result (Tune's bookkeeping, the callbacks below, ASHA, the searcher)
    trial_build, trial_propagation_at_init, trial_plots
                    the "build", "propagation_at_init" and "plots" phases: run_trial's work
                    before the first epoch and after the last
    trial_records   the "records" phase: the trial directory's plan, description and result
    trial_other     the rest of the "trial" phase: Python between the phases
    driver: tracking and sampler seconds (MLflow callbacks and the search's parent run; the
    searcher's suggest/result/complete), measured where they run, on the driver: they reach
    the trials through report_wait and actor_startup, and take CPU from them.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from search.trial import TrialConfig, TrialPhases

from .common import ROOT, Timers, default_dataset, figure, header, note

EVENTS_ENV = "RESNET_SEARCH_BENCH_EVENTS"
TRIALS = 12
CONCURRENCY = 2
OWN_PHASES = ("train", "val", "test", "propagation")
"""The trial's own work: what a bare loop also does (propagation is part of its science)."""


# ------------------------------------------------------------------ worker instrumentation


class PhaseEvents(TrialPhases):
    """One trial's phases, each appended to `path` as an event keyed by the trial's run key."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.time()
        try:
            yield
        finally:  # a trial that raises still shows where its time went
            record(self.path, name, start, time.time(), self.key)


class TrialEvents:
    """The observer a worker's hook installs (`search.trainable.observe_trials`): every trial
    the process runs records its phases into the process's events file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, config: TrialConfig) -> PhaseEvents:
        return PhaseEvents(self.path, config.run_key)


def instrument_worker() -> TrialEvents | None:
    """Ray worker setup hook: record this process's trials' phases into
    `$EVENTS_ENV/<pid>.jsonl`; the observer it installed (None without `$EVENTS_ENV`)."""
    folder = os.environ.get(EVENTS_ENV)
    if not folder:
        return None
    path = Path(folder) / f"{os.getpid()}.jsonl"
    record(path, "process", _process_start(), time.time())

    from search import trainable

    observer = TrialEvents(path)
    trainable.observe_trials(observer)
    _time_ray_persist(path)
    return observer


def record(path: Path, event: str, start: float, end: float, key: str = "") -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"event": event, "start": start, "end": end, "key": key,
                            "pid": os.getpid()}) + "\n")


def _time_ray_persist(path: Path) -> None:
    """Record Ray's copy of a checkpoint into its storage as "persist" events.

    The one wrapper left in the workers, on a third-party method: Ray persists inside
    `tune.report`, which the trial's "report" phase brackets whole, and this splits that
    phase into copying (checkpointing) and waiting for the driver (report_wait). A Ray
    without the method raises, so that the split never silently reads zero."""
    try:
        from ray.train._internal.storage import StorageContext
    except ImportError:  # another Ray layout: the whole report counts as waiting
        return
    try:
        original = StorageContext.persist_current_checkpoint
    except AttributeError:
        raise AttributeError("cannot time StorageContext.persist_current_checkpoint: Ray no "
                             "longer has it (update the benchmark)") from None

    @functools.wraps(original)
    def persist(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            record(path, "persist", start, time.time())

    StorageContext.persist_current_checkpoint = persist


def _process_start() -> float:
    """When this process was created, in epoch seconds (Linux), else now."""
    try:
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return time.time()


def read_events(folder: Path) -> list[dict[str, Any]]:
    events = []
    for path in sorted(folder.glob("*.jsonl")):
        events += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return events


# --------------------------------------------------------------------------------- search


def start_ray(events: Path) -> None:
    """A local Ray whose workers run `instrument_worker` first, started the way a search
    starts its own when the platform's helper is there."""
    from search import tuner

    runtime_env = {"worker_process_setup_hook": "bench.search_overhead.instrument_worker",
                   "env_vars": {EVENTS_ENV: str(events),
                                "PYTHONPATH": os.pathsep.join(
                                    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}}
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")  # as `search.tuner.connect_ray`
    if hasattr(tuner, "start_local_ray"):
        tuner.start_local_ray(runtime_env=runtime_env)
    else:
        import ray

        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", runtime_env=runtime_env)


def driver_timers(timers: Timers) -> None:
    """Time the searcher and the tracker where they run: on the driver."""
    from search import runner, stores, tracking
    from search.searcher import SpaceSearcher

    for attr in ("suggest", "on_trial_result", "on_trial_complete"):
        timers.wrap(SpaceSearcher, attr, f"sampler.{attr}")
    for attr in ("setup", "on_trial_start", "on_trial_result", "on_trial_complete",
                 "on_trial_error", "on_experiment_end"):
        timers.wrap(tracking.MlflowTracker, attr, f"tracking.{attr}")
    # Where each is called from: the search's record is written by `stores`.
    timers.wrap(stores, "start_search_run", "tracking.start_search_run")
    for attr in ("finish_search_run", "trial_records", "mark_failures"):
        timers.wrap(runner, attr, f"tracking.{attr}")
    timers.wrap(runner, "load_trial_data", "driver.load_trial_data")


def quick_space():
    """paper-table1 on 1,000 training and 500 validation images (fixed by the space)."""
    from spaces import SearchSpace, load_space

    table1 = load_space("paper-table1", "small")
    return SearchSpace("paper-table1-1k", table1.define,
                       fixed={**table1.fixed, "train_size": 1000, "val_size": 500},
                       anchors=table1.anchors)


def actor_timeline(events: list[dict[str, Any]], start: float, end: float) -> dict[str, float]:
    """Where the slot time outside the trials goes, per worker process, summed: from the
    search's start to the process's first trial (scheduling, a new process, its imports, its
    data), between two trials of one process (actor reuse), after its last trial to the
    search's end (the last trials running alone, the search's wrap-up)."""
    by_pid = defaultdict(list)
    for e in events:
        if e["event"] == "trial":
            by_pid[e["pid"]].append(e)
    out = {"to_first_trial": 0.0, "between_trials": 0.0, "after_last_trial": 0.0}
    for runs in by_pid.values():
        runs.sort(key=lambda e: e["start"])
        out["to_first_trial"] += runs[0]["start"] - start
        out["between_trials"] += sum(b["start"] - a["end"] for a, b in zip(runs, runs[1:]))
        out["after_last_trial"] += end - runs[-1]["end"]
    return out


def analyse(events: list[dict[str, Any]], wall: float, concurrency: int) -> dict[str, float]:
    """Slot seconds by kind, from the workers' events (see the module docstring). The phases
    of `run_trial` lie inside "trial", one after another; "persist" lies inside "report"."""
    total = defaultdict(float)
    for e in events:
        total[e["event"]] += e["end"] - e["start"]
    parts = {"own": sum(total[name] for name in OWN_PHASES), "data_loading": total["data"],
             "checkpointing": total["checkpoint"] + total["persist"],
             "report_wait": total["report"] - total["persist"], "trial_plots": total["plots"],
             "trial_propagation_at_init": total["propagation_at_init"],
             "trial_build": total["build"], "trial_records": total["records"]}
    # Every part but the data lies inside "trial" (persist through report): the rest of it is
    # trial_other, so a phase this split does not name lands there, not outside the sum.
    parts["trial_other"] = total["trial"] - (sum(parts.values()) - parts["data_loading"])
    parts["actor_startup"] = wall * concurrency - sum(parts.values())
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.search_overhead",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1,000 training and 500 validation images, 2 epochs")
    parser.add_argument("--epochs", type=int, help="budget per trial (3; quick 2)")
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--dataset", help="default: the CIFAR-10 JPEG archive, else digits")
    parser.add_argument("--scale", default="small")
    args = parser.parse_args(argv)
    header("bench.search_overhead", args.quick, argv)

    import ray

    from search import SearchConfig, run
    from spaces import load_space

    space = quick_space() if args.quick else load_space("paper-table1", args.scale)
    epochs = args.epochs or (2 if args.quick else 3)
    dataset = args.dataset or default_dataset()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp, Timers() as timers:
        events = Path(tmp) / "events"
        events.mkdir()
        started = time.time()
        start_ray(events)
        ray_start = time.time() - started
        driver_timers(timers)
        config = SearchConfig(name="bench", scale=args.scale, dataset=dataset,
                              trials=args.trials, sampler="tpe", scheduler="none",
                              epochs=epochs, concurrency=args.concurrency,
                              results_dir=str(Path(tmp) / "results"), progress=False)
        try:
            started = time.time()
            result = run(space, config)
            ended = time.time()
            wall = ended - started
        finally:
            ray.shutdown()
        log = read_events(events)
    ran = [e for e in log if e["event"] == "trial"]
    trial_pids = {e["pid"] for e in ran}
    note(f"{len(ran)} trials ({len(result.trials)} in MLflow) of {space.name} at the "
         f"{args.scale} scale, {epochs} epochs each, on {dataset}; concurrency "
         f"{args.concurrency}; {len(trial_pids)} worker processes ran them")
    parts = analyse(log, wall, args.concurrency)
    figure("search_overhead.ratio", wall * args.concurrency / parts["own"],
           "x (wall x concurrency / trials' own time)")
    figure("search_overhead.wall_seconds", wall, "s")
    figure("search_overhead.own_seconds", parts["own"], "s")
    figure("search_overhead.ray_start_seconds", ray_start, "s (before the search, not counted)")
    for name, seconds in parts.items():
        if name != "own":
            figure(f"search_overhead.{name}_seconds", seconds, "s (slot seconds)")
    for name, seconds in actor_timeline(log, started, ended).items():
        figure(f"search_overhead.actor_startup.{name}_seconds", seconds, "s (slot seconds)")
    figure("search_overhead.per_trial_seconds",
           (wall * args.concurrency - parts["own"]) / max(len(ran), 1),
           "s (slot seconds not the trials' own, per trial)")
    figure("search_overhead.worker_processes", len(trial_pids), "")
    seconds = timers.seconds
    figure("search_overhead.driver_tracking_seconds",
           sum(v for k, v in seconds.items() if k.startswith("tracking.")), "s")
    figure("search_overhead.driver_sampler_seconds",
           sum(v for k, v in seconds.items() if k.startswith("sampler.")), "s")
    figure("search_overhead.driver_data_loading_seconds",
           seconds.get("driver.load_trial_data", 0.0), "s")
    for name in sorted(seconds):
        if name.startswith(("tracking.", "sampler.")) and timers.calls[name]:
            figure(f"search_overhead.driver.{name}_seconds", seconds[name],
                   f"s ({timers.calls[name]} calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
