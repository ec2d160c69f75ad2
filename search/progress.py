"""What a user watches while a search runs: one line per finished trial, a status line now
and then (running / done / diverged / stopped, best so far, elapsed), and why nothing runs
when trials wait (`ResourceWatch`: resources the cluster lacks, nodes that fail to launch,
the end of `--wait-for-resources`)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import ray
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
        for trial in trials:  # ended under an earlier driver: a restored Tune reports them not
            if trial.status == "TERMINATED" and trial.trial_id not in self.outcomes:
                self.outcomes[trial.trial_id] = trial_outcome(trial.last_result)
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



class ResourcesUnavailable(RuntimeError):
    """Trials waited `SearchConfig.wait_for_resources` minutes with none running: the search
    stopped there, unfinished (Ray Tune's experiment state keeps its pending trials), and
    running it again resumes it. The message is one line: how many waited, how long, and why."""


def lacking(request: dict[str, float], cluster: dict[str, float]) -> list[str]:
    """What one trial asks for beyond everything the cluster has (`ray.cluster_resources()`),
    e.g. `GPU: 1 per trial, the cluster has 0`: such a trial waits until a node brings more."""
    return [f"{name}: {amount:g} per trial, the cluster has {cluster.get(name, 0):g}"
            for name, amount in sorted(request.items()) if amount > cluster.get(name, 0)]


Failure = tuple[str, str, float]
"""A failed node launch: (node type, reason, when it was tried, Unix seconds)."""


def launch_failures(status: dict | None, error: str | None = None) -> list[Failure]:
    """Each node type whose last launch failed, from Ray's v1 autoscaler status record (the
    JSON `ray status` reads and shows under "Recent failures"), and the autoscaler's own
    error if it reported one (`ray status` prints it too; when: now)."""
    report = (status or {}).get("autoscaler_report") or {}
    records = (report.get("node_availability_summary") or {}).get("node_availabilities") or {}
    found = []
    for node_type, record in sorted(records.items()):
        if not record.get("is_available", True):
            info = record.get("unavailable_node_information") or {}
            found.append((node_type, _reason(info.get("category"), info.get("description")),
                          float(record.get("last_checked_timestamp") or 0)))
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    if lines:
        found.append(("the autoscaler", _reason("error", lines[-1]), time.time()))
    return found


def _reason(category: str | None, description: str | None) -> str:
    first = (description or "").strip().splitlines()[:1]
    return ": ".join([category or "LaunchFailed", *first])[:300]


def autoscaler_failures() -> list[Failure]:
    """The failed launches Ray's autoscaler reports now (`launch_failures`; with autoscaler v2,
    its cluster status). Empty where there is no autoscaler (a local Ray, a fixed cluster), and
    whenever it cannot be read: watching never stops a search."""
    try:
        from ray._private import ray_constants
        from ray.autoscaler.v2.utils import is_autoscaler_v2
        from ray.experimental import internal_kv

        if is_autoscaler_v2(fetch_from_server=True):
            from ray.autoscaler.v2.sdk import get_cluster_status

            status = get_cluster_status(ray.get_runtime_context().gcs_address)
            return [(launch.ray_node_type_name, _reason("LaunchFailed", launch.details),
                     float(launch.failed_ts_s or launch.request_ts_s or 0))
                    for launch in status.failed_launches]
        raw = internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        error = internal_kv._internal_kv_get(ray_constants.DEBUG_AUTOSCALING_ERROR)
        return launch_failures(json.loads(raw) if raw else None,
                               error.decode(errors="replace") if error else None)
    except Exception:  # noqa: BLE001 - an observer only
        return []


class ResourceWatch(tune.Callback):
    """Why nothing runs, in the search's own lines (quiet mode hides Tune's warning and the
    autoscaler's events): one `waiting` line when trials wait for resources the cluster lacks,
    again only when that changes; one `launch` line for each node launch that failed since
    this run began (node type and reason; the same reason again only after that type
    launched); and, past `wait_minutes` with trials pending and none running,
    `ResourcesUnavailable`, which ends `Tuner.fit` (the experiment's state stays as Tune last
    saved it, every second: the pending trials, resumed by the next run)."""

    def __init__(self, wait_minutes: float | None = None, progress: bool = True,
                 every_seconds: float = 5.0, stream=None):
        self.wait_minutes, self.progress, self.every = wait_minutes, progress, every_seconds
        self.stream = stream
        self._start = self._checked = 0.0
        self._since: float | None = None
        self._short: list[str] = []
        self._said: tuple | None = None
        self._failures: dict[tuple[str, str], None] = {}  # ordered, said

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "stream": None}

    def setup(self, **info) -> None:
        self._start, self._checked = time.time(), 0.0

    def _print(self, text: str) -> None:
        if self.progress:
            print(f"[{_elapsed(time.time() - self._start)}] {text}",
                  file=self.stream or sys.stdout, flush=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        now = time.time()
        pending = [t for t in trials if t.status == "PENDING"]
        if pending and now - self._checked >= self.every:
            self._checked = now
            try:
                self._look(pending)
            except Exception:  # noqa: BLE001 - a GCS that does not answer: Tune will say so
                pass
        if not pending or any(t.status == "RUNNING" for t in trials):
            self._since = None
            return
        self._since = self._since or now
        if self.wait_minutes is not None and now - self._since >= 60 * self.wait_minutes:
            why = "; ".join(self._short + [f"{node_type} launches failed: {reason}"
                                           for node_type, reason in self._failures])
            raise ResourcesUnavailable(
                f"{len(pending)} trial(s) waited {self.wait_minutes:g} minute(s) for resources "
                f"with none running (--wait-for-resources {self.wait_minutes:g})"
                + (f": {why}" if why else ""))

    def _look(self, pending: list) -> None:
        """What the pending trials lack, and the autoscaler's new failures: said once each."""
        cluster = ray.cluster_resources()
        self._short = sorted({line for trial in pending for line in lacking(
            trial.placement_group_factory.required_resources, cluster)})
        said = (len(pending), tuple(self._short)) if self._short else None
        if said and said != self._said:
            self._print(f"{'waiting':8s} {len(pending)} trial(s) pending for resources the "
                        f"cluster lacks: {'; '.join(self._short)} (`ray status` shows what its "
                        "autoscaler does about it)")
        self._said = said
        failures = [(node_type, reason) for node_type, reason, when in autoscaler_failures()
                    if when >= int(self._start)]  # not those of an earlier run
        for failure in failures:
            if failure not in self._failures:
                self._print(f"{'launch':8s} a {failure[0]} node failed to launch: {failure[1]}")
        failed = {node_type for node_type, _ in failures}
        self._failures = dict.fromkeys([*(f for f in self._failures if f[0] in failed),
                                        *failures])
