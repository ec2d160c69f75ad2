"""`resnet-search` as a user runs it, with the driver's costs timed where they are spent:

    python -m bench.scale_driver STATS.json run SPACE ... (the CLI's own arguments)

It runs `search.cli.main` unchanged, with timers around four calls, and at exit writes
STATS.json:

    ask_seconds          every `optuna.Study.ask` (the searcher's, with its storage's
                         queries), in order
    configuration_seconds  every new configuration the searcher took from Optuna
                         (`SpaceSearcher._ask`): the ask, the space's define-by-run sampling
                         (where TPE does its work), again while it proposes configurations
                         already run, in order
    state_write_seconds  every save of Ray Tune's experiment state (`TuneController.save_to_dir`:
                         the trials' JSON and the searcher's pickle)
    results              the results the driver's tracker took (`MlflowTracker.on_trial_result`)
    fit_end, drained     when `Tuner.fit` returned, and when the tracking journal was first
                         empty after it (time.monotonic)
    cpu_seconds          the driver process's user + system CPU time, all threads; of it
    main_cpu_seconds     the main thread's until `Tuner.fit` returned (Tune's loop, the
                         searcher, ASHA, the callbacks), and
    sender_cpu_seconds   the MLflow sender thread's
    peak_rss_mib         its peak resident memory
    profile              with RESNET_SEARCH_PROFILE=PATH, a cProfile of the whole driver there

Nothing here changes what the search does: the figures are those of the real driver.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

PROFILE_ENV = "RESNET_SEARCH_PROFILE"


def _timed(owner, name: str, into: list[float]) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)

    setattr(owner, name, timed)


def instrument(stats: dict) -> None:
    import optuna
    from ray.tune import Tuner
    from ray.tune.execution.tune_controller import TuneController

    from search.searcher import SpaceSearcher
    from search.tracking import sender, tracker

    stats.update(ask_seconds=[], configuration_seconds=[], state_write_seconds=[], results=0,
                 fit_end=None, drained=None)
    _timed(optuna.Study, "ask", stats["ask_seconds"])
    _timed(SpaceSearcher, "_ask", stats["configuration_seconds"])
    _timed(TuneController, "save_to_dir", stats["state_write_seconds"])

    on_result = tracker.MlflowTracker.on_trial_result

    def counted(self, *args, **kwargs):
        stats["results"] += 1
        return on_result(self, *args, **kwargs)

    tracker.MlflowTracker.on_trial_result = counted
    senders = []
    start = sender.Sender.start

    def started(self):
        senders.append(self)
        return start(self)

    sender.Sender.start = started
    loop = sender.Sender._loop

    def timed_loop(self):  # the sender thread's own CPU, read inside it as it ends
        try:
            loop(self)
        finally:
            stats["sender_cpu_seconds"] = stats.get("sender_cpu_seconds", 0) + time.thread_time()

    sender.Sender._loop = timed_loop
    fit = Tuner.fit

    def fitted(self, *args, **kwargs):
        try:
            return fit(self, *args, **kwargs)
        finally:
            stats["fit_end"] = time.monotonic()
            stats["main_cpu_seconds"] = time.thread_time()  # Tune's loop and its callbacks
            threading.Thread(target=_watch_drain, args=(stats, senders), daemon=True).start()

    Tuner.fit = fitted


def _watch_drain(stats: dict, senders: list) -> None:
    """Note when the journal is first empty after the last `Tuner.fit`."""
    while senders and senders[-1].pending:
        time.sleep(0.05)
    stats["drained"] = time.monotonic()


def _write(path: Path, stats: dict) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.update(cpu_seconds=usage.ru_utime + usage.ru_stime, peak_rss_mib=usage.ru_maxrss / 1024)
    path.write_text(json.dumps(stats))


def main(argv: list[str]) -> int:
    from search.cli import main as cli

    path, args = Path(argv[0]), argv[1:]
    stats: dict = {}
    instrument(stats)
    atexit.register(_write, path, stats)
    profile = os.environ.get(PROFILE_ENV)
    if not profile:
        return cli(args)
    import cProfile

    profiler = cProfile.Profile()
    try:
        return profiler.runcall(cli, args)
    finally:
        profiler.dump_stats(profile)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
