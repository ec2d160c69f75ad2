"""What this project changes in Ray Tune (2.60) itself, each for a cause measured here.

`CtrlC` takes SIGINT from Tune for the whole search (a Ctrl-C was lost between two fits). The
other two replace one private method of Tune's, once per process (calling them again does
nothing), because no setting of Tune's reaches them: `forget_parked_decisions` (a resumed
trial cut short, issue 24) and `snapshot_period` (the experiment state at a cluster's size,
BENCHMARKS.md "At cluster size (simulated)"). Their tests: tests/search/test_resume_root_cause.py
and tests/search/test_driver_costs.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

PARKED = ("_cached_trial_decisions", "_queued_trial_decisions")
"""TuneController's decisions waiting on a trial's save (`forget_parked_decisions`)."""


def forget_parked_decisions() -> None:
    """Make a restored Tune forget the decisions its previous driver parked (idempotent).

    Why a resumed trial was cut short (issue 24): each report with a checkpoint makes Tune ask
    the trial's actor for it (`save`), and the decision taken on that result waits in
    `TuneController._cached_trial_decisions` until the save returns. If the trial fails then
    (its node lost, --max-failures 0), `_schedule_trial_stop` parks a STOP there for a save
    that never returns; only a retry or a pause would remove it (`_try_recover`,
    `pause_trial`), and `__getstate__` writes it into the experiment state. A restored driver
    reads it back (`resume`), resumes the trial, and the STOP fires after the trial's first
    save: TERMINATED one epoch later, without `done`. No Tune setting avoids it (every
    checkpoint goes through a save; `num_to_keep` and `reuse_actors` play no part). The node
    must die between the worker's report and the driver's handling of the save's answer:
    about a tenth of an epoch under load, much less without. A new driver has no save in
    flight, so every parked decision is stale: cleared once `resume` has read them."""
    from ray.tune.execution.tune_controller import TuneController

    resume = TuneController.resume
    if getattr(resume, "forgets_parked_decisions", False):
        return

    def resume_without_parked_decisions(self, *args, **kwargs):
        resume(self, *args, **kwargs)
        for name in PARKED:
            getattr(self, name, {}).clear()

    resume_without_parked_decisions.forgets_parked_decisions = True
    TuneController.resume = resume_without_parked_decisions


def snapshot_period() -> None:
    """Tune's experiment state at most every TUNE_GLOBAL_CHECKPOINT_S seconds, and so that
    writing it takes at most 5% of the driver: Ray's own "auto" rule (19 times the last
    write), which Ray applies only with its 10-second floor. A fixed second does not scale:
    the state grows with the trials (about 32 kB each; 6.4 MB at 200, written in 100 ms at
    the median and up to 3 s on this machine, bench.scale), so writing it every second took
    a tenth of the driver at 200 trials and would take half at a thousand."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager as manager

    if getattr(manager._update_auto_checkpoint_time, "floor_from_env", False):
        return

    def update(self, time_taken: float) -> None:
        floor = os.environ.get("TUNE_GLOBAL_CHECKPOINT_S", "auto")
        self._checkpoint_period = max(10.0 if floor == "auto" else float(floor),
                                      19 * time_taken)

    update.floor_from_env = True
    manager._update_auto_checkpoint_time = update


class CtrlC:
    """Ctrl-C stops a search wherever it lands, and the search knows it did (`received`).

    Tune installs its own SIGINT handler at each fit and puts the previous one back only when a
    signal comes. A Ctrl-C between two fits (a race's rounds, the rerun of unfinished trials)
    went to a finished fit's handler and was lost; one caught as a fit's last trials ended left
    no trace either. Both times the search went on to its next stage (found by a test that
    failed once in eight clean CI runs: tests/search/test_search_race.py). While it is installed
    Tune's SIGINT handler stays off (`TUNE_DISABLE_SIGINT_HANDLER`, read at each fit): this one
    records the interrupt and asks a running fit for Tune's own graceful stop through SIGUSR1,
    which Tune always handles so. A second Ctrl-C stops at once (KeyboardInterrupt). `install`
    at the search's start, `restore` at its end; off the main thread, where no handler can be
    set, both do nothing."""

    def __init__(self) -> None:
        self.received = False
        self._active = threading.current_thread() is threading.main_thread()

    def install(self) -> CtrlC:
        if self._active:
            self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def restore(self) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            if self._env is None:
                os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
            else:
                os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    def _on_sigint(self, signum, frame) -> None:
        if self.received:
            raise KeyboardInterrupt
        self.received = True
        # os.write, not print: the handler runs between two bytecodes of the main thread,
        # which may be inside a print of its own (Python refuses a reentrant buffered write).
        with contextlib.suppress(OSError):
            os.write(2, b"interrupted (Ctrl-C): stopping once Ray Tune has saved its state; run "
                        b"the same command to go on (Ctrl-C again: stop at once)\n")
        if callable(signal.getsignal(signal.SIGUSR1)):  # Tune's: a fit's, or a past fit's
            os.kill(os.getpid(), signal.SIGUSR1)
