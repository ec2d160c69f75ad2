"""MLflow tracking, one concern in four modules (DESIGN.md: the driver is the only writer):

    journal.py   every MLflow write of a search, appended to a local file first
    sender.py    delivers the journal to MLflow, in order, in the background or once (`sync`)
    records.py   the parent run, the metrics' names, the trial records read back for ranking
    tracker.py   the Ray Tune callback that mirrors each trial into a nested run

Names load lazily (PEP 562): `resnet-search sync` reads the journal without Ray.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Journal": "journal", "PARENT": "journal", "replay": "journal",
    "Sender": "sender", "TrackingError": "sender",
    "METRIC_NAMES": "records", "check_tracking_uri": "records",
    "finish_search_run": "records", "mark_failures": "records",
    "start_search_run": "records", "trial_records": "records",
    "MlflowTracker": "tracker", "numeric_metrics": "tracker",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
