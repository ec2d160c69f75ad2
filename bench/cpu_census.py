"""Where a machine's CPU went during a benchmark, by kind of process: the driver (and its
plotting process), the trials' workers, Ray's log monitors and its other daemons, MLflow, the
Optuna database, the rest.

A thread reads every process's CPU time (`/proc/PID/stat`: user + system) once a second and
keeps the last reading of each; a process that ends between two readings loses at most its
last second. The machine's own total comes from `/proc/stat`, so the shares add up to what the
cores really did, whoever did it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")

KINDS = (  # (kind, a piece of the command line that marks it), the first match wins
    ("driver", "bench.scale_driver"),
    ("driver_plots", "multiprocessing.spawn"),  # the sender's plotting process
    ("ray_daemons", "ray::DashboardAgent"),
    ("ray_daemons", "ray::RuntimeEnvAgent"),
    ("trial_workers", "ray::"),
    ("trial_workers", "default_worker.py"),  # a worker before it names itself ray::...
    ("ray_log_monitors", "log_monitor.py"),  # one per node, tailing the workers' logs
    ("ray_daemons", "/ray/"),
    ("mlflow", "mlflow"),
    ("optuna_db", "postgres"),
)


def kind_of(cmdline: str) -> str:
    return next((kind for kind, mark in KINDS if mark in cmdline), "other")


def machine_busy_seconds() -> float:
    """CPU seconds every core spent on anything but idling and waiting, since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK


class CpuCensus(threading.Thread):
    """Start it before the work and `stop()` it after: `seconds` by kind, `busy` in all."""

    def __init__(self, period: float = 1.0):
        super().__init__(daemon=True, name="cpu-census")
        self.period, self._done = period, threading.Event()
        self._first: dict[int, float] = {}  # CPU a process already had at the first reading
        self._last: dict[int, tuple[str, float]] = {}
        self._start_busy = machine_busy_seconds()
        self.busy = 0.0
        self.wall = time.monotonic()

    def run(self) -> None:
        first = True
        while not self._done.is_set():
            self._read(first)
            first = False
            self._done.wait(self.period)

    def _read(self, first: bool) -> None:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            pid = int(stat.parent.name)
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
                # Read each time: a process first seen between its fork and its exec still
                # shows its parent's command line. A zombie's is empty: it keeps its kind.
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
                kind = (kind_of(cmdline.decode(errors="replace")) if cmdline
                        else self._last.get(pid, ("other",))[0])
                if first and pid not in self._last:
                    self._first[pid] = seconds
            except (OSError, IndexError, ValueError):
                continue  # ended meanwhile
            self._last[pid] = (kind, seconds)

    def stop(self) -> dict[str, float]:
        """Stop, read once more, and return the CPU seconds each kind used meanwhile."""
        self._done.set()
        self.join()
        self._read(False)
        self.busy = machine_busy_seconds() - self._start_busy
        self.wall = time.monotonic() - self.wall
        seconds: dict[str, float] = defaultdict(float)
        for pid, (kind, total) in self._last.items():
            seconds[kind] += total - self._first.get(pid, 0.0)
        return dict(seconds)
