"""What a user watches while a search runs: one line per finished trial, a status line now
and then (running / done / diverged / stopped, best so far, elapsed)."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray import tune

from .ranking import label
from .trial import UNFINISHED, TrialConfig, trial_outcome


def _elapsed(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class ProgressPrinter(tune.Callback):
    def __init__(self, total: int, every_seconds: float = 30.0, stream=None):
        self.total = total
        self.every = every_seconds
        self.stream = stream
        self._start = self._last = 0.0
        self.outcomes: dict[str, str] = {}
        self.best: tuple[float, str] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}

    def get_state(self) -> dict[str, Any]:
        return {}

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    def _print(self, text: str) -> None:
        print(f"[{_elapsed(time.time() - self._start)}] {text}", file=self.stream or sys.stdout,
              flush=True)

    def setup(self, **info) -> None:
        self._start = self._last = time.time()

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._print(f"{'start':8s} {_name(trial)}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._done(trials, trial, trial_outcome(trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._done(trials, trial, "error")

    def _done(self, trials, trial, outcome: str) -> None:
        result = trial.last_result or {}
        if outcome == UNFINISHED:  # not done: the search runs it again
            self._print(f"{outcome:8s} {_name(trial)} after {result.get('epoch')} epochs: Ray "
                        "Tune ended it short of its budget without a scheduler's decision; it "
                        "runs again from its checkpoint")
            return
        self.outcomes[trial.trial_id] = outcome
        detail = ""
        if outcome in ("ok", "stopped"):
            val, test = result.get("val_error"), result.get("test_error")
            errors = "".join(f" {name} {100 * value:.2f}%" for name, value
                             in (("val", val), ("test", test)) if value is not None)
            detail = f"{errors} after {result.get('epoch')} epochs"
            if outcome == "ok" and val is not None and (self.best is None or val < self.best[0]):
                self.best = (val, _name(trial))
        elif outcome == "error":
            detail = f" ({_last_line(trial.error_file)}; the whole error: {trial.error_file})"
        self._print(f"{outcome:8s} {_name(trial)}{detail}")
        self._status(trials)

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.time() - self._last >= self.every:
            self._status(trials)

    def _status(self, trials) -> None:
        self._last = time.time()
        running = sum(t.status == "RUNNING" and t.trial_id not in self.outcomes for t in trials)
        counts = {o: list(self.outcomes.values()).count(o)
                  for o in ("diverged", "stopped", "error")}
        extra = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
        best = f", best val {100 * self.best[0]:.2f}% {self.best[1]}" if self.best else ""
        self._print(f"{'status':8s} {running} running, {len(self.outcomes)}/{self.total} done"
                    f"{f' ({extra})' if extra else ''}{best}")


def _name(trial) -> str:
    """`#3/s0 resnet56-exclusive_gate-bg-6-original`: Optuna trial, seed, configuration."""
    config = TrialConfig.from_dict(trial.config)
    return f"#{config.optuna_trial}/s{config.seed} {label(config.params, config.plan.net.name)}"


def _last_line(error_file: str | None) -> str:
    """The exception line of a Ray trial's error file (Tune logs the traceback itself only
    with --verbose)."""
    try:
        lines = [line for line in open(error_file).read().splitlines() if line.strip()]
    except (OSError, TypeError):
        return "no error file"
    exception = next((line for line in reversed(lines) if "Error" in line.split(":")[0]),
                     lines[-1] if lines else "")
    return exception.strip()[:160]
