"""What one suggestion costs each sampler at 20, 500 and 2,000 trials on the paper-joint space.

    .venv/bin/python -m bench.sampler_cost            # 9 suggestions a point (GP at 2,000: 3)
    .venv/bin/python -m bench.sampler_cost --quick    # 3 a point, GP at 2,000 left out

A study is filled with N finished trials drawn at random from paper-joint (its define-by-run
function, conditional axes and all), as a search with ASHA leaves them: most PRUNED after 1, 2,
4 or 8 epochs with their intermediate values, the rest COMPLETE after 10, with a made-up error
that depends on the axes (so TPE has a shape to model) plus noise. Then each sampler, built as
the search builds it (`search.study.make_sampler`), suggests a few more, each timed from
`study.ask()` through the define function's last `suggest_*` (the sampler's whole work) and
told a value afterwards (one untimed suggestion first: it fills caches once per driver):

    sampler_cost.<sampler>.n<N>_ms          median, in-memory storage: the sampler itself
    sampler_cost.tpe.sqlite_n<N>_ms         the same for TPE on a SQLite study in its
                                            default rollback journal, a sync at each commit
    sampler_cost.tpe.sqlite_wal_n<N>_ms     the same study in WAL mode, synchronous=NORMAL,
                                            as the search opens its own (search.study)
    sampler_cost.tpe.running64_n<N>_ms      the WAL study with 64 trials RUNNING, each with 5
                                            intermediate values, as at a cluster's concurrency:
                                            Optuna's own reads (the constant liar re-reads every
                                            trial per parameter group; its cache, the running
                                            trials' values)
    sampler_cost.tpe.search_running64_n<N>_ms  the same ask as the search makes it
                                            (`search.study.one_ask`: the trials read once)
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import TrialState

from search.study import OneReadPerAsk, make_sampler, one_ask
from spaces import SearchSpace, load_space

from .common import figure, header, missing, note

SAMPLERS = ("tpe", "random", "gp", "cmaes")
SIZES = (20, 500, 2000)
RUNNING = 64  # trials left running while the asks are timed: bench.scale's concurrency
SPACE = "paper-joint"
SCALE = "small"
EPOCHS = 10
RUNGS = (1, 2, 4, 8)  # ASHA with grace period 1 and reduction factor 2 at a 10-epoch budget


def made_up_error(params: dict[str, Any], rng: random.Random) -> float:
    """A plausible final validation error: the paper's ordering of designs, plus noise."""
    shortcut = {"identity": 0.30, "conv1x1": 0.34, "shortcut_gate": 0.35,
                "exclusive_gate": 0.45, "scaling": 0.55, "dropout": 0.60}
    activation = {"full_preact": 0.0, "relu_preact": 0.01, "original": 0.02,
                  "relu_before_add": 0.03, "bn_after_add": 0.04}
    error = shortcut.get(params["shortcut"], 0.5) + activation.get(params["activation"], 0.05)
    error += 0.1 * abs(params.get("lam", 1.0) - 1.0) + 0.01 * abs(params.get("gate_bias", -6) + 6)
    error -= 0.0005 * params.get("depth", 20)
    return min(0.9, max(0.05, error + rng.gauss(0, 0.02)))


def fill(study: optuna.Study, space: SearchSpace, n: int, rng: random.Random) -> None:
    """Add finished trials until `study` holds `n`, sampled at random from `space`."""
    sampler = optuna.samplers.RandomSampler(seed=rng.randrange(2**31))
    scratch = optuna.create_study(sampler=sampler)
    frozen = []
    for _ in range(n - len(study.trials)):
        trial = scratch.ask()
        params = space.suggest(trial)
        final = made_up_error(params, rng)
        budget = EPOCHS if rng.random() < 0.1 else rng.choice(RUNGS)
        curve = {e: final + 0.3 * (1 - e / EPOCHS) ** 2 for e in range(1, budget + 1)}
        state = TrialState.COMPLETE if budget == EPOCHS else TrialState.PRUNED
        frozen.append(optuna.trial.create_trial(
            params=trial.params, distributions=trial.distributions, value=curve[budget],
            intermediate_values=curve, state=state,
            user_attrs={"params": params}))
        scratch.tell(trial, curve[budget])
    study.add_trials(frozen)


def time_asks(study: optuna.Study, space: SearchSpace, repeats: int, rng: random.Random,
              asking=contextlib.nullcontext) -> list[float]:
    """Milliseconds from ask through the define function, for `repeats` suggestions, each
    within `asking()`."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with asking():
            trial = study.ask()
            params = space.suggest(trial)
        times.append(1000 * (time.perf_counter() - started))
        study.tell(trial, made_up_error(params, rng))
    return times


def start_running(study: optuna.Study, space: SearchSpace, n: int) -> None:
    """Leave `n` trials RUNNING in `study`, each with the intermediate values of 5 epochs."""
    for _ in range(n):
        trial = study.ask()
        space.suggest(trial)
        for epoch in range(1, 6):
            trial.report(0.5 + 0.3 * (1 - epoch / EPOCHS) ** 2, epoch)


def in_memory(trials: list, sampler: str, seed: int) -> optuna.Study:
    study = optuna.create_study(sampler=make_sampler(sampler, seed))
    study.add_trials(trials)
    return study


def sqlite_storage(path: Path, wal: bool) -> optuna.storages.RDBStorage:
    """An Optuna storage on the SQLite file `path`: as the search opens it (the default
    rollback journal, a sync to disk at every commit), or in WAL mode with synchronous=NORMAL
    (BENCHMARKS.md: the change recommended for `search/searcher.py`)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    if wal:
        def synchronous_normal(connection, record) -> None:
            connection.execute("PRAGMA synchronous=NORMAL")

        sqlalchemy.event.listen(storage.engine, "connect", synchronous_normal)
        storage.engine.dispose()  # connections made from now on get the pragma
    return storage


def time_sqlite_asks(db: Path, space: SearchSpace, repeats: int, seed: int, wal: bool,
                     running: int = 0, search: bool = False) -> list[float]:
    """Milliseconds per TPE suggestion on a copy of the SQLite study `db` with `running` trials
    left RUNNING, asked as the search asks (`search`) or with Optuna's own reads, after one
    untimed suggestion (the first loads every trial into the storage's cache: once per driver)."""
    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        copy = Path(tmp) / "optuna.db"
        shutil.copy(db, copy)
        storage = sqlite_storage(copy, wal)
        store = OneReadPerAsk(storage) if search else storage
        study = optuna.load_study(study_name="bench", storage=store,
                                  sampler=make_sampler("tpe", seed))
        start_running(study, space, running)
        asking = (lambda: one_ask(study, store, None)) if search else contextlib.nullcontext
        time_asks(study, space, 1, random.Random(seed), asking)
        times = time_asks(study, space, repeats, random.Random(seed), asking)
        storage.engine.dispose()
        return times


def checkpointed(storage: optuna.storages.RDBStorage) -> None:
    """Everything in the main database file, so a copy of the file is the whole study."""
    with storage.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.sampler_cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, help="suggestions per point (9; quick 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--no-sqlite", action="store_true", help="skip the search's SQLite path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    header("bench.sampler_cost", args.quick, argv)
    repeats = args.repeats or (3 if args.quick else 9)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    space = load_space(SPACE, SCALE)
    rng = random.Random(args.seed)
    note(f"{SPACE} at the {SCALE} scale; {repeats} suggestions a point, median reported")

    pool = optuna.create_study()  # the finished trials, grown size by size
    with tempfile.TemporaryDirectory(prefix="bench-sampler-") as tmp:
        db = Path(tmp) / "optuna.db"
        db.touch()
        storage = sqlite_storage(db, wal=True)  # fast to fill; copies are opened either way
        on_disk = optuna.create_study(storage=storage, study_name="bench")
        for n in sorted(args.sizes):
            before = len(pool.trials)
            fill(pool, space, n, rng)
            for sampler in args.samplers:
                if args.quick and sampler == "gp" and n > 500:
                    missing(f"sampler_cost.gp.n{n}_ms", "left out of --quick: seconds a "
                            "suggestion")
                    continue
                study = in_memory(pool.trials, sampler, args.seed)
                time_asks(study, space, 1, random.Random(args.seed))  # warm-up, as on SQLite
                times = time_asks(study, space, min(repeats, 3) if sampler == "gp" and n > 500
                                  else repeats, random.Random(args.seed))
                figure(f"sampler_cost.{sampler}.n{n}_ms", statistics.median(times), "ms")
            if args.no_sqlite:
                continue
            on_disk.add_trials(pool.trials[before:])
            checkpointed(storage)
            for name, wal, running, search in (("sqlite", False, 0, False),
                                               ("sqlite_wal", True, 0, False),
                                               ("running64", True, RUNNING, False),
                                               ("search_running64", True, RUNNING, True)):
                times = time_sqlite_asks(db, space, repeats, args.seed, wal, running, search)
                figure(f"sampler_cost.tpe.{name}_n{n}_ms", statistics.median(times), "ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
