"""A test run again and again beside CPU hogs: how a flaky test, or a race that only a slow
machine hits, is found and then shown gone.

    .venv/bin/python -m bench.under_load tests/search/test_search_cluster.py -k lost_worker \\
        --runs 30 --count "parked decisions: \\{'"

Each run is `pytest ARGS` (the arguments this script does not know) in a fresh process, with a
base temp dir of its own, while `--hogs` busy loops (2: one per core here) compete for the CPU.
A failed run's output and temp dir are kept under `--keep` for reading; a passed run's are
removed.

The figures (`name: value unit`):
    under_load.runs, .passed, .failed   the runs, and how they ended
    under_load.matched                  runs whose output has a line matching `--count` (the
                                        lost-worker test prints the decisions Tune parked:
                                        those runs hit the race that cut a resume short)
    under_load.secs_p50, .secs_max      the time of one run
    under_load.load_avg_mean            the 1-minute load average, sampled after each run
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, figure, note

HOG = "while True: pass"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.under_load", description=__doc__.split("\n")[0])
    parser.add_argument("tests", nargs="+", help="what to run: pytest's arguments, e.g. "
                        "tests/x.py -k name")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--hogs", type=int, default=2, help="busy loops beside the test")
    parser.add_argument("--count", default=None, help="a regex: count the runs it matches")
    parser.add_argument("--keep", type=Path, default=Path("results/under-load"),
                        help="where failed runs' output and temp dirs are kept")
    args, pytest_args = parser.parse_known_args(argv)
    pytest_args = args.tests + pytest_args
    if args.runs < 1 or args.hogs < 0:
        parser.error(f"--runs {args.runs} / --hogs {args.hogs}: runs >= 1, hogs >= 0")
    pattern = re.compile(args.count, re.MULTILINE) if args.count else None
    args.keep.mkdir(parents=True, exist_ok=True)
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    seconds, loads, passed, matched = [], [], 0, 0
    try:
        for run in range(1, args.runs + 1):
            ok, found, took = one_run(pytest_args, args.keep / f"run{run}", pattern)
            passed += ok
            matched += found
            seconds.append(took)
            loads.append(os.getloadavg()[0])
            note(f"run {run}: {'passed' if ok else 'FAILED'} in {took:.0f} s"
                 f"{' (matched)' if found else ''}; {passed} of {run} passed")
    finally:
        for hog in hogs:
            hog.kill()
    figure("under_load.runs", args.runs)
    figure("under_load.passed", passed)
    figure("under_load.failed", args.runs - passed)
    if pattern:
        figure("under_load.matched", matched)
    figure("under_load.secs_p50", statistics.median(seconds), "s")
    figure("under_load.secs_max", max(seconds), "s")
    figure("under_load.load_avg_mean", statistics.fmean(loads))
    return 0 if passed == args.runs else 1


def one_run(pytest_args: list[str], keep: Path,
            pattern: re.Pattern | None) -> tuple[bool, bool, float]:
    """(passed, output matched, seconds) of one pytest run; its files kept if it failed."""
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True)
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rP", "-p", "no:cacheprovider", *pytest_args,
         f"--basetemp={keep / 'tmp'}"], cwd=ROOT, capture_output=True, text=True)
    took = time.monotonic() - start
    output = done.stdout + done.stderr
    found = bool(pattern and pattern.search(output))
    if done.returncode == 0:
        shutil.rmtree(keep)
    else:
        (keep / "pytest.log").write_text(output)
    return done.returncode == 0, found, took


if __name__ == "__main__":
    sys.exit(main())
