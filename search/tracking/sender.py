"""Delivers a search's tracking journal (`journal.py`) to MLflow, in order.

A `Sender` keeps its place in `tracking.sent.json` beside the journal: the offset of the first
entry not yet delivered, the experiment id, and the MLflow run id of every ref. It runs as a
thread in the driver while a search runs (`start`, `close`), or once (`send`) from
`resnet-search sync NAME`. An entry the server cannot take now (unreachable, an error on its
side) is tried again later, in order; an entry it refuses for good (HTTP 4xx: a value MLflow
does not accept) is skipped with a warning, so one bad value never holds back the rest.
Consecutive metrics and tags entries go as one `log_batch` per run, and the place is saved
once for them all.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from .journal import PARENT, Journal

SENT = "tracking.sent.json"
PARENT_TAG = "mlflow.parentRunId"
RETRY_SECONDS = 5.0
COALESCED = {"log", "tags"}
"""Entries sent as one request per run when several follow each other."""
WINDOW = 500
"""At most this many entries per window: the offset moves on at least that often."""


class TrackingError(RuntimeError):
    """The tracking server or store cannot be used; the message says which and why."""


def client(uri: str):
    import mlflow

    # The sender retries by itself, in the background: a request that cannot get through should
    # say so in seconds, not keep the journal waiting through the client's own minutes of retries.
    # Nor does the client send a request twice: it would resend any, a POST included, whose
    # answer timed out, and a create_run sent twice makes two runs (bench.scale at full size:
    # an empty RUNNING run beside the trial's own).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    # The client prints a link per finished run to stdout: the search says where things are.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return mlflow.MlflowClient(tracking_uri=uri)


class Sender:
    def __init__(self, journal: Journal, uri: str, progress: bool = True):
        self.journal, self.uri, self.progress = journal, uri, progress
        self.state_path = journal.directory / SENT
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.offset: int = state.get("offset", 0)
        self.experiment_id: str | None = state.get("experiment_id")
        self.ids: dict[str, str] = state.get("ids", {})
        # A run whose create_run went unanswered, with its `find` tags: that request may still
        # make a run after the retry made its own; checked when the run ends (`_delete_strays`).
        self.unanswered: dict[str, dict[str, str]] = state.get("unanswered", {})
        self.down_since: float | None = None
        self.last_error = ""
        self._client = None
        self._optuna: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._plotter: ProcessPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """Bytes of journal not yet delivered."""
        return self.journal.size() - self.offset

    def run_id(self, ref: str = PARENT) -> str | None:
        return self.ids.get(ref)

    # -- delivery ------------------------------------------------------------------------------
    def send(self) -> bool:
        """Deliver every entry written so far; False (and `last_error`) if the server stopped
        it. Entries delivered stay delivered: the next call starts after them."""
        self.journal.sync()
        window: list[tuple[int, dict[str, Any]]] = []  # consecutive metrics and tags
        for end, entry in self.journal.entries(self.offset):
            if window and (entry["op"] not in COALESCED or len(window) == WINDOW):
                if not self._deliver(window):
                    return False
                window = []
            if entry["op"] in COALESCED:
                window.append((end, entry))
            elif not self._deliver([(end, entry)]):
                return False
        if window and not self._deliver(window):
            return False
        if self.down_since is not None:
            self._say(f"MLflow at {self.uri} is reachable again; the journal is sent")
            self.down_since = None
        return True

    def _deliver(self, items: list[tuple[int, dict[str, Any]]]) -> bool:
        """Apply one entry, or a window of metrics and tags (one request per run in it, not
        one per entry: a journal that fell behind catches up in half the requests), then move
        the offset past them; False if the server cannot take them now."""
        try:
            if items[0][1]["op"] in COALESCED:
                self._log(items)
            else:
                self._apply(items[0][1])
        except Exception as error:
            if not _refused_for_good(error):
                self._went_down(error)
                return False
            if len(items) > 1:  # one bad value among many: each entry alone, to skip only it
                return all(self._deliver([item]) for item in items)
            entry = items[0][1]
            self._say(f"warning: MLflow refused a {entry['op']} of {entry.get('ref')!r} "
                      f"({_one_line(error)}); skipped")
        self.offset = items[-1][0]
        self._save()
        return True

    def _log(self, items: list[tuple[int, dict[str, Any]]]) -> None:
        """Metrics, params and tags entries, merged per run in journal order (a later tag
        overwrites an earlier one, as it would have on the server)."""
        merged: dict[str, dict[str, Any]] = {}
        for _, entry in items:
            run_id = self.ids.get(entry["ref"])
            if run_id is None:  # its run was refused: nothing of it can be written
                continue
            run = merged.setdefault(run_id, {"metrics": {}, "params": {}, "tags": {}})
            if entry["op"] == "tags":
                run["tags"].update(entry["tags"])
                continue
            run["metrics"].update(dict.fromkeys(map(tuple, entry["metrics"])))
            for key, value in entry["params"].items():
                if run["params"].setdefault(key, value) != value:  # refused on the server:
                    raise _ParamChanged(key)  # each entry alone then, to skip only that one
        for run_id, run in merged.items():
            _log_batch(self._mlflow(), run_id, list(run["metrics"]), run["params"], run["tags"])

    def _apply(self, entry: dict[str, Any]) -> None:
        op, ref = entry["op"], entry.get("ref")
        mlflow = self._mlflow()
        if op == "experiment":
            self.experiment_id = _experiment(mlflow, entry)
            return
        if op == "create_run":
            self.ids[ref] = self._create_run(mlflow, entry)
            return
        run_id = self.ids.get(ref)
        if run_id is None:  # its run was refused: nothing of it can be written
            return
        if op == "status":
            if entry["status"] == "RUNNING":
                mlflow.update_run(run_id, status="RUNNING")
            else:
                mlflow.set_terminated(run_id, entry["status"])
                if ref in self.unanswered:
                    self._delete_strays(mlflow, ref, run_id)
        elif op == "artifacts":
            staged = self.journal.directory / entry["dir"]
            if staged.exists():  # gone: delivered before the state file said so
                if entry.get("render"):
                    self._render(staged)
                mlflow.log_artifacts(run_id, str(staged), entry["path"])
                shutil.rmtree(staged)

    def _render(self, staged) -> None:
        """Draw a trial's plots from its staged files, in the sender's plotting process: off
        the driver's interpreter (its lock is Tune's loop's), and matplotlib imported once."""
        if self._plotter is None:
            self._plotter = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            self._plotter.submit(_render_plots, str(staged)).result()
        except Exception as error:  # noqa: BLE001 - the run keeps its files, without plots
            self._say(f"warning: the plots of {staged.name} were not drawn ({_one_line(error)})")

    def _create_run(self, mlflow, entry: dict[str, Any]) -> str:
        tags = dict(entry["tags"])
        if entry["parent"]:
            tags[PARENT_TAG] = self.ids[entry["parent"]]
        found = self._find(mlflow, entry["find"])
        if found:
            run_id = found[0].info.run_id
            _log_batch(mlflow, run_id, tags=tags)
            mlflow.update_run(run_id, status="RUNNING")
        else:
            try:
                run_id = mlflow.create_run(self.experiment_id, run_name=entry["run_name"],
                                           tags=tags).info.run_id
            except Exception as error:
                # Unanswered, made or not (a refusal made nothing): MLflow's create has no
                # idempotency key.
                if entry["find"] and not _refused_for_good(error):
                    self.unanswered[entry["ref"]] = entry["find"]
                    self._save()
                raise
        if entry.get("optuna"):
            self._link_optuna(entry["optuna"], run_id)
        return run_id

    def _find(self, mlflow, find: dict[str, str]) -> list:
        """The runs with the tags `find`, oldest first (none when there are no tags)."""
        return mlflow.search_runs(
            [self.experiment_id], order_by=["attributes.start_time ASC"],
            filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in find.items())
        ) if find else []

    def _delete_strays(self, mlflow, ref: str, run_id: str) -> None:
        """Delete the runs a create_run left unanswered made beside `run_id` (each empty: the
        sender writes to `run_id` alone). By the run's end that request has long been served."""
        for stray in self._find(mlflow, self.unanswered[ref]):
            if stray.info.run_id != run_id:
                mlflow.delete_run(stray.info.run_id)
                self._say(f"deleted run {stray.info.run_id}, a second run of {ref} made by a "
                          "create_run whose answer was lost")
        del self.unanswered[ref]

    def _link_optuna(self, link: dict[str, Any], run_id: str) -> None:
        """The run id on its Optuna trial (user attribute `mlflow_run_id.s<seed>`); a trial
        that finished before its run reached MLflow is closed to attributes, so then on the
        study (`mlflow_run_id.<number>.s<seed>`)."""
        import optuna

        from ..study import optuna_storage

        if link["storage"] not in self._optuna:  # one engine per storage, not one per run
            self._optuna[link["storage"]] = optuna_storage(link["storage"])
        storage = self._optuna[link["storage"]]
        study = storage.get_study_id_from_name(link["study"])
        trial = storage.get_trial_id_from_study_id_trial_number(study, link["number"])
        try:
            storage.set_trial_user_attr(trial, f"mlflow_run_id.s{link['seed']}", run_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            storage.set_study_user_attr(
                study, f"mlflow_run_id.{link['number']}.s{link['seed']}", run_id)

    def _mlflow(self):
        if self._client is None:
            self._client = client(self.uri)
        return self._client

    def _save(self) -> None:
        state = {"offset": self.offset, "experiment_id": self.experiment_id, "ids": self.ids,
                 "unanswered": self.unanswered}
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self.state_path)  # never half-written

    def _went_down(self, error: Exception) -> None:
        self.last_error = _one_line(error)
        if self.down_since is None:
            self.down_since = time.time()
            self._say(f"warning: MLflow at {self.uri} is unreachable ({self.last_error}); "
                      f"the search goes on and journals its tracking in {self.journal.path}")

    def _say(self, message: str) -> None:
        if self.progress:
            print(f"resnet-search: {message}", file=sys.stderr, flush=True)

    # -- in the background ---------------------------------------------------------------------
    def start(self) -> Sender:
        self._thread = threading.Thread(target=self._loop, name="mlflow-sender", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            delivered = self.send()
            self._stop.wait(0.2 if delivered else RETRY_SECONDS)

    def drain(self, timeout: float) -> bool:
        """Wait (the thread sends) until everything written so far is delivered, the server
        is found down, or `timeout` passes; True when nothing is left."""
        deadline = time.time() + timeout
        while self.pending > 0 and self.down_since is None and time.time() < deadline:
            time.sleep(0.1)
        return self.pending == 0

    def close(self, timeout: float = 60.0) -> bool:
        """Stop the thread, then keep delivering for up to `timeout` seconds (0: not at all,
        as when a search is interrupted: the rest waits in the journal); True when nothing is
        left. Closing again does nothing more."""
        if self._stop.is_set():
            return self.pending == 0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.time() + timeout
        while timeout > 0 and not self.send() and time.time() < deadline:
            time.sleep(min(RETRY_SECONDS, max(0.0, deadline - time.time())))
        if self._plotter is not None:
            self._plotter.shutdown()
        return self.pending == 0


def _render_plots(directory: str) -> None:
    """In the plotting process: a trial's PNGs from its metrics and propagation files."""
    from ..trial import render_trial_plots

    render_trial_plots(directory)


def _log_batch(mlflow, run_id: str, metrics: list[tuple] = (),
               params: dict[str, str] | None = None, tags: dict[str, str] | None = None) -> None:
    """As few requests as MLflow's batch limits allow (1,000 metrics, 100 params and 100
    tags, 1,000 in all). metrics: (name, value, timestamp ms, step)."""
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric(*metric) for metric in metrics]
    params = [Param(key, value) for key, value in (params or {}).items()]
    tags = [RunTag(key, value) for key, value in (tags or {}).items()]
    while metrics or params or tags:
        some_params, params = params[:100], params[100:]
        some_tags, tags = tags[:100], tags[100:]
        room = 1000 - len(some_params) - len(some_tags)
        some_metrics, metrics = metrics[:room], metrics[room:]
        mlflow.log_batch(run_id, metrics=some_metrics, params=some_params, tags=some_tags)


def _experiment(mlflow, entry: dict[str, Any]) -> str:
    experiment = mlflow.get_experiment_by_name(entry["name"])
    if experiment is None:
        return mlflow.create_experiment(entry["name"], entry["artifact_location"],
                                        tags=entry["tags"])
    for key, value in entry["tags"].items():
        if experiment.tags.get(key) != value:
            mlflow.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


class _ParamChanged(Exception):
    """A param given two values in one window: MLflow keeps the first and refuses the other."""


def _refused_for_good(error: Exception) -> bool:
    """MLflow said no to the value itself (HTTP 4xx), not to being asked now."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, _ParamChanged):
        return True
    return isinstance(error, MlflowException) and 400 <= error.get_http_status_code() < 500 \
        and "Max retries" not in str(error)


def _one_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:200]
