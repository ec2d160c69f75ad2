"""The share of a trial's wall time spent on MLflow: default SQLite store, and a local server.

    .venv/bin/python -m bench.tracking_share            # a 10-epoch small trial (about 3 min)
    .venv/bin/python -m bench.tracking_share --quick    # a 2-epoch small trial (about 1 min)

One real `small` trial trains on real CIFAR-10 (the benchmark's trial: `bench.trial_vs_bare`).
Then the search's own tracker (`search.tracking.MlflowTracker`) records that trial as a search
does, once per store: the run with its params and tags when the trial starts, each epoch's
metrics as it is reported, and at the end its artifacts (metrics, plan, propagation, plots,
final metrics) and its outcome. The tracker journals each of them (search/tracking/journal.py)
and the sender (search/tracking/sender.py) delivers it; in a search the sender is a background
thread, here it is called after each step so both are timed, on the driver:

    tracking_share.<store>.share           tracking seconds of the trial / the trial's wall time
    tracking_share.<store>.trial_seconds   start + every epoch + the end
    tracking_share.<store>.epoch_ms        one epoch's metrics (the median)
    tracking_share.<store>.end_seconds     the end: artifacts, plots, outcome
    tracking_share.<store>.search_seconds  once per search, not per trial: the parent run and
                                           connecting (the SQLite store's schema check)
    tracking_share.<store>.in.<part>_seconds
                                           where the trial's tracking time goes: the plots
                                           the sender draws again, the journal, MLflow client
                                           calls, the run id written into the Optuna study

`sqlite` is the default store (`sqlite:///<results>/mlflow.db`), `server` an `mlflow server`
on 127.0.0.1 over its own SQLite file, started here and left to settle before it is used.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .common import Timers, default_dataset, figure, header, missing, note
from .trial_vs_bare import make_plan, platform_trial

RUN_KEY = "0000-s0"


@contextmanager
def mlflow_server(folder: Path, timeout: float = 120.0):
    """A local `mlflow server` on a free port; yields its URI."""
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "server-artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if requests.get(uri + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start: see {folder / 'server.log'}")
            time.sleep(0.5)
        settle(process.pid, deadline + 60)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by process `root` and its descendants (Linux /proc)."""
    parents, cpu = {}, {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total = 0.0
    for pid in cpu:
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += cpu[pid]
    return total


def settle(root: int, deadline: float, window: float = 2.0) -> None:
    """Wait until the server is idle (under 5% of a core): MLflow 3 starts its job runner
    and job consumers after it answers /health, about 20 s of a core here. A server on a
    cluster's head has long settled when trials start, so the measurement waits too."""
    while time.time() < deadline:
        before = tree_cpu_seconds(root)
        time.sleep(window)
        if tree_cpu_seconds(root) - before < 0.05 * window:
            return


def fake_ray_trial(plan, work_root: Path, last: dict[str, Any]) -> SimpleNamespace:
    """What the tracker reads from a Ray trial: its `TrialConfig` as Ray carries it."""
    from search.trial import TrialConfig, TrialContext

    config = TrialConfig(plan, 0, "bench", TrialContext(work_root=str(work_root)),
                         params=plan.params)
    assert config.run_key == RUN_KEY, config.run_key
    return SimpleNamespace(config=config.to_dict(), trial_id="bench_00000", last_result=last,
                           checkpoint=None, error_file=None)


def track(uri: str, work: Path, history: list[dict[str, Any]], plan, folder: Path
          ) -> dict[str, Any]:
    """Record one finished trial into `uri` as a search does: the tracker journals, the sender
    delivers. Both count: the sender runs in the background, but on the driver's machine."""
    import optuna

    from search import SearchConfig
    from search.tracking import Journal, MlflowTracker, Sender, start_search_run
    from spaces import load_space

    space = load_space("paper-table1", "small")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = Journal(folder / "search")
    sender = Sender(journal, uri, progress=False)
    started = time.perf_counter()
    artifacts = (folder / "mlartifacts").as_uri() if uri.startswith("sqlite") else None
    start_search_run(journal, SearchConfig(name="bench", scale="small"), space, "bench",
                     "cifar10", artifacts)
    storage = f"sqlite:///{folder / 'optuna.db'}"  # the run ids go to the study too
    study = optuna.create_study(storage=storage, study_name="bench")
    study.ask()
    tracker = MlflowTracker(journal, "bench", space.name, str(work.parent), storage)
    sender.send()
    search_seconds = time.perf_counter() - started

    import mlflow

    trial = fake_ray_trial(plan, work.parent, history[-1])
    timers = Timers()  # where the trial's tracking time goes
    # The plots of a trial without them, drawn by the sender in its plotting process.
    timers.wrap(Sender, "_render", "plots")
    # The run id written into the Optuna study: the storage calls the sender makes for it.
    for name in ("__init__", "get_study_id_from_name", "get_trial_id_from_study_id_trial_number",
                 "set_trial_user_attr", "set_study_user_attr"):
        timers.wrap(optuna.storages.RDBStorage, name, "optuna_link")
    timers.wrap(Journal, "append", "journal")
    for name in ("create_run", "search_runs", "log_batch", "log_artifacts", "set_tag",
                 "set_terminated"):
        timers.wrap(mlflow.MlflowClient, name)

    def timed(step) -> float:
        started = time.perf_counter()
        step()
        sender.send()  # what the background sender does with it
        return time.perf_counter() - started

    with timers:
        start_seconds = timed(lambda: tracker.on_trial_start(0, [trial], trial))
        epochs = [timed(lambda m=metrics: tracker.on_trial_result(0, [trial], trial, m))
                  for metrics in history]
        end_seconds = timed(lambda: tracker.on_trial_complete(0, [trial], trial))
    return {"search": search_seconds, "start": start_seconds, "epochs": epochs,
            "end": end_seconds, "trial": start_seconds + sum(epochs) + end_seconds,
            "parts": dict(timers.seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.tracking_share",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 2-epoch trial")
    parser.add_argument("--epochs", type=int, help="the trial's budget (small: 10)")
    parser.add_argument("--scale", default="small")
    parser.add_argument("--dataset", help="default: the CIFAR-10 JPEG archive, else digits")
    parser.add_argument("--no-server", action="store_true", help="the default store only")
    args = parser.parse_args(argv)
    header("bench.tracking_share", args.quick, argv)
    from search.trial import load_trial_data

    plan = make_plan(args.scale, args.epochs or (2 if args.quick else None))
    dataset = args.dataset or default_dataset()
    data = load_trial_data(plan.recipe, dataset)
    with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
        folder = Path(tmp)
        work = folder / "trials" / RUN_KEY
        trial = platform_trial(plan, data, threads=1, out_dir=str(work))
        history = trial["result"].history
        note(f"the trial: {plan.net.name}, {len(history)} epochs on {data.describe()}: "
             f"{trial['seconds']:.1f} s")
        figure("tracking_share.trial_wall_seconds", trial["seconds"], "s")
        stores = [("sqlite", None)] + ([] if args.no_server else [("server", "server")])
        for name, kind in stores:
            store = folder / name
            store.mkdir()
            try:
                if kind == "server":
                    with mlflow_server(store) as uri:
                        seconds = track(uri, work, history, plan, store)
                else:
                    seconds = track(f"sqlite:///{store / 'mlflow.db'}", work, history, plan,
                                    store)
            except RuntimeError as error:
                missing(f"tracking_share.{name}.share", str(error))
                continue
            figure(f"tracking_share.{name}.share", 100 * seconds["trial"] / trial["seconds"],
                   "% of the trial's wall time")
            figure(f"tracking_share.{name}.trial_seconds", seconds["trial"], "s")
            figure(f"tracking_share.{name}.start_seconds", seconds["start"], "s")
            figure(f"tracking_share.{name}.epoch_ms", 1000 * statistics.median(
                seconds["epochs"]), "ms")
            figure(f"tracking_share.{name}.end_seconds", seconds["end"], "s")
            for part, value in sorted(seconds["parts"].items()):
                figure(f"tracking_share.{name}.in.{part}_seconds", value, "s")
            figure(f"tracking_share.{name}.search_seconds", seconds["search"],
                   "s (per search)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
