"""What every benchmark shares: figures printed one per line, the machine, the data, timers.

A figure is one line, `name: value unit`, so a script's output can be parsed (`parse_figures`)
and compared with BENCHMARKS.md. A figure that could not be measured here says so on its line
(`name: missing (reason)`) instead of showing a number.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CIFAR_JPEG = Path(os.environ.get(
    "RESNET_SEARCH_CIFAR_JPEG", ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
"""The real CIFAR-10 as JPEGs beside the checkout (as in the tests); override with the env."""

FIGURE = re.compile(r"^(?P<name>[a-z0-9_.]+): (?P<value>\S+)(?: (?P<unit>.*))?$")


def default_dataset() -> str:
    """Real CIFAR-10 when its archive is there, else the bundled digits (said on a line)."""
    if CIFAR_JPEG.exists():
        return f"imagefolder:{CIFAR_JPEG}"
    note(f"{CIFAR_JPEG} is missing: using digits (pass --dataset for another)")
    return "digits"


def figure(name: str, value: float | int | str, unit: str = "") -> None:
    """Print one figure: `name: value unit`."""
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    else:
        text = str(value)
    print(f"{name}: {text}{' ' + unit if unit else ''}", flush=True)


def missing(name: str, reason: str) -> None:
    """A figure this machine cannot measure: never a number that was not measured."""
    print(f"{name}: missing ({reason})", flush=True)


def note(text: str) -> None:
    """Context for a reader, never parsed as a figure (it starts with '#')."""
    print(f"# {text}", flush=True)


def parse_figures(text: str) -> dict[str, tuple[str, str]]:
    """{name: (value, unit)} from a script's output; notes and other lines are skipped."""
    out = {}
    for line in text.splitlines():
        match = FIGURE.match(line.strip())
        if match:
            out[match["name"]] = (match["value"], match["unit"] or "")
    return out


def machine() -> str:
    """One line about where the figures come from."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = f", load average {os.getloadavg()[0]:.2f}"
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    return (f"{cpu}, {os.cpu_count()} cores{load}; {cuda}; python "
            f"{platform.python_version()}, torch {torch.__version__}")


def header(script: str, quick: bool, argv: list[str] | None) -> None:
    note(f"{script} {' '.join(argv or [])}".strip() + (" (quick)" if quick else ""))
    note(machine())


class Timers:
    """Wall and CPU seconds and calls, summed by name: of sections of code (`section`, also a
    trial's phases through `bench.trial_vs_bare.PhaseTimers`), or of functions replaced in
    place by timed ones (`wrap`), where code has no seam to time it through.

    A `with Timers()` block puts every wrapped function back on exit.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)
        """CPU time of the calling thread (what the wall time would be on an idle core)."""
        self.calls: dict[str, int] = defaultdict(int)
        self._undo: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Timers:
        return self

    def __exit__(self, *exc) -> None:
        while self._undo:
            owner, attr, original = self._undo.pop()
            setattr(owner, attr, original)

    def wrap(self, owner: Any, attr: str, name: str | None = None) -> None:
        """Time every call of `owner.attr` (a module function or a class method) under `name`
        (default `attr`). A name that is not there raises: a benchmark must not print a
        figure of nothing, as a renamed function would otherwise make it."""
        try:
            original = getattr(owner, attr)
        except AttributeError:
            where = getattr(owner, "__name__", repr(owner))
            raise AttributeError(f"cannot time {where}.{attr}: there is no such attribute "
                                 "(renamed? update the benchmark)") from None
        key = name or attr
        timers = self

        def timed(*args, **kwargs):
            with timers.section(key):
                return original(*args, **kwargs)

        timed.__wrapped__ = original  # type: ignore[attr-defined]
        self._undo.append((owner, attr, original))
        setattr(owner, attr, timed)

    @contextlib.contextmanager
    def section(self, name: str) -> Iterator[None]:
        """Time the block under `name`."""
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started
            self.cpu_seconds[name] += time.thread_time() - cpu
            self.calls[name] += 1


def quick_flag(argv: list[str] | None) -> bool:
    return "--quick" in (argv if argv is not None else sys.argv[1:])
