"""How a trial ended: its outcome, the epochs it trained and its last metrics.

Outcomes: `ok` (trained its whole budget), `diverged` (a non-finite loss, or training error
still at chance: a result, not a crash), `stopped` (a scheduler ended it early), `error` (it
raised), `unfinished` (Ray Tune ended it short of its budget without a scheduler's decision: it
did not end, and runs again). The first two are written by the trial itself; the others are
read off what a search's scheduler saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UNFINISHED = "unfinished"
"""The outcome of a trial Ray Tune ended short of its budget without a scheduler's decision."""
PENALTY_ERROR = 1.0
"""The objective a diverged trial reports to a sampler (as if every image were wrong): worse
than any real result, and never shown as a measured error, which stays the last finite one."""


@dataclass
class TrialResult:
    outcome: str
    """ok | diverged | stopped (at chance, when opted in)."""
    epochs: int
    metrics: dict[str, Any]
    """The last epoch's metrics (a diverged trial's errors are its last finite ones)."""
    reason: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)


def trial_outcome(last_metrics: dict[str, Any] | None, error: bool = False) -> str:
    """ok | diverged | stopped | unfinished | error, from a trial's last reported metrics.

    A trial reports "running" until its last epoch. One whose last report still says so was
    stopped early when a scheduler (ASHA) decided it: Ray Tune marks the result it decided on
    `done`. Without that mark, Tune ended it for no decision of the search's (a fault: a
    restored trial cut short), and it is "unfinished", never a result. One that raised, or
    reported nothing, is "error".
    """
    if error or not last_metrics or "outcome" not in last_metrics:
        return "error"
    if last_metrics["outcome"] != "running":
        return last_metrics["outcome"]
    return "stopped" if last_metrics.get("done") else UNFINISHED
