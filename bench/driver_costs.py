"""What the driver pays per journal entry and per Optuna commit, the way it pays it now and the
way it paid it before bench.scale's last round of fixes, side by side on the same machine.

    .venv/bin/python -m bench.driver_costs            # 64 trials x 10 epochs
    .venv/bin/python -m bench.driver_costs --quick    # 16 x 5

1. **The sender** (search/tracking/sender.py) delivers a journal written as a search of
   `--trials` trials running at once writes it (each trial's run and params, then their epochs'
   metrics interleaved, then each trial's outcome and status) to a real `mlflow server`: once
   one request per entry (`WINDOW = 1`, as before), once with consecutive metrics and tags
   merged per run (now). `sender.<how>.cpu_ms_per_entry` is the sender thread's CPU,
   `.requests` the HTTP requests it made.
2. **The journal's append**, in Tune's loop: `journal.append_ms_p50` now (handed to the kernel),
   `journal.fsync_ms_p50` what each append also waited for before (an fsync; now the sender's).
3. **Optuna's commits**, in Tune's loop: one configuration's ask, an intermediate value per
   epoch and its tell, on SQLite with its default rollback journal (before) and in
   write-ahead-log mode (now, `search.study.optuna_storage`): `optuna.<mode>.ms_per_commit`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import figure, header, note
from .tracking_share import mlflow_server


def journal_of_a_search(journal, trials: int, epochs: int) -> int:
    """Entries as `trials` trials running at once journal them; returns their count."""
    keys = [f"{n:04d}-s0" for n in range(trials)]
    journal.experiment("driver-costs", None, {})
    for key in keys:
        journal.create_run(key, key, {"run_key": key})
        journal.log(key, params={"lr": "0.1", "depth": "20", "unit": "full_preact"})
        journal.tags(key, {"outcome": "running"})
        journal.status(key, "RUNNING")
    for epoch in range(1, epochs + 1):
        for key in keys:
            journal.log(key, [(name, 1.0 / epoch, 1000 * epoch, epoch) for name in
                              ("train/loss", "train/error", "val/error", "lr")])
    for key in keys:
        journal.tags(key, {"outcome": "ok"})
        journal.status(key, "FINISHED")
    return 1 + trials * (4 + epochs + 2)


def sender_cost(folder: Path, uri: str, trials: int, epochs: int, window: int) -> None:
    from mlflow.utils import rest_utils

    from search.tracking import sender as module
    from search.tracking.journal import Journal

    journal = Journal(folder / f"window-{window}")
    entries = journal_of_a_search(journal, trials, epochs)
    requests = 0
    original = rest_utils.http_request  # every REST call of MLflow's client goes through it

    def counted(*args, **kwargs):
        nonlocal requests
        requests += 1
        return original(*args, **kwargs)

    how = "per_entry" if window == 1 else "merged"
    saved, module.WINDOW = module.WINDOW, window
    rest_utils.http_request = counted
    try:
        sender = module.Sender(journal, uri, progress=False)
        cpu, wall = time.thread_time(), time.perf_counter()
        assert sender.send(), sender.last_error
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    finally:
        module.WINDOW = saved
        rest_utils.http_request = original
    figure(f"sender.{how}.entries", entries)
    figure(f"sender.{how}.requests", requests)
    figure(f"sender.{how}.cpu_ms_per_entry", 1000 * cpu / entries, "ms")
    figure(f"sender.{how}.wall_ms_per_entry", 1000 * wall / entries, "ms")


def journal_cost(folder: Path, entries: int) -> None:
    from search.tracking.journal import Journal

    journal = Journal(folder / "appends")
    appends, syncs = [], []
    for epoch in range(entries):
        start = time.perf_counter()
        journal.log("0000-s0", [("val/error", 0.5, 1000 * epoch, epoch)])
        appends.append(time.perf_counter() - start)
        with journal.path.open("rb") as file:  # what each append waited for before
            start = time.perf_counter()
            os.fsync(file.fileno())
            syncs.append(time.perf_counter() - start)
    figure("journal.append_ms_p50", 1000 * statistics.median(appends), "ms")
    figure("journal.fsync_ms_p50", 1000 * statistics.median(syncs), "ms")


def optuna_cost(folder: Path, configurations: int, epochs: int) -> None:
    import optuna

    from search.study import optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for mode, make in (("rollback_journal", optuna.storages.RDBStorage),
                       ("write_ahead_log", optuna_storage)):
        storage = make(f"sqlite:///{folder / f'{mode}.db'}")
        study = optuna.create_study(storage=storage, study_name=mode,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        start = time.perf_counter()
        for _ in range(configurations):
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            for epoch in range(1, epochs + 1):
                trial.report(1.0 / epoch, epoch)
            study.tell(trial, 0.5)
        commits = configurations * (epochs + 2)
        figure(f"optuna.{mode}.ms_per_commit",
               1000 * (time.perf_counter() - start) / commits, "ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.driver_costs", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    trials, epochs = (16, 5) if args.quick else (64, 10)
    header("bench.driver_costs", args.quick, argv)
    with tempfile.TemporaryDirectory(prefix="driver-costs-") as tmp:
        folder = Path(tmp)
        (folder / "mlflow").mkdir()
        with mlflow_server(folder / "mlflow") as uri:
            note(f"{trials} trials x {epochs} epochs, against an mlflow server at {uri}")
            from search.tracking.sender import WINDOW

            for window in (1, WINDOW):  # one request per entry (before), merged (now)
                sender_cost(folder, uri, trials, epochs, window)
        journal_cost(folder, trials * epochs)
        optuna_cost(folder, trials, epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
