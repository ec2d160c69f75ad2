"""What the driver no longer does per result or per trial at a cluster's size (bench.scale,
BENCHMARKS.md "At cluster size (simulated)"): each failed before its fix."""

import contextlib
import json

import mlflow
import optuna

from search.tracking.journal import Journal
from search.tracking.sender import Sender
from search.trial.contract import LEARNING_CURVE, METRICS
from search.tune_fixes import snapshot_period

RUNNING_TRIALS_READ = ("FROM trial_intermediate_values WHERE "
                       "trial_intermediate_values.trial_id IN")
"""In a statement (whitespace collapsed): Optuna's cache reading its unfinished trials' values,
together (one trial alone is read with `? = trial_id`)."""


def test_the_experiment_state_period_grows_with_its_write_time(monkeypatch):
    """A second between snapshots while writing one is quick; 19 times the write once it is
    not (5% of the driver), as Ray's "auto" rule does without its 10-second floor."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")
    original = _ExperimentCheckpointManager._update_auto_checkpoint_time
    try:
        snapshot_period()
        snapshot_period()  # idempotent: one wrapper
        manager = object.__new__(_ExperimentCheckpointManager)
        manager._update_auto_checkpoint_time(0.01)
        assert manager._checkpoint_period == 1.0
        manager._update_auto_checkpoint_time(0.5)  # before: stayed at 1 s, 50% of the driver
        assert manager._checkpoint_period == 9.5
    finally:
        _ExperimentCheckpointManager._update_auto_checkpoint_time = original


def test_the_sender_draws_a_stopped_trials_plots_off_the_drivers_thread(tmp_path):
    """A trial stopped early reaches the journal with `render`: its learning curve is drawn
    by the sender, in its plotting process, and sent with the run's other artifacts."""
    trial = tmp_path / "trial"
    trial.mkdir()
    lines = [{"epoch": e, "train_loss": 2.0 / e, "train_error": 0.9 / e, "val_error": 0.8 / e,
              "lr": 0.1} for e in (1, 2, 3)]
    (trial / METRICS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    journal = Journal(tmp_path / "search")
    journal.experiment("plots", str(tmp_path / "artifacts"), {})  # not ./mlruns
    journal.create_run("0000-s0", "stopped-early", {"run_key": "0000-s0"})
    journal.artifacts("0000-s0", trial, render=True)
    assert not (trial / LEARNING_CURVE).exists()  # nothing drawn where the driver journals
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sender = Sender(journal, uri, progress=False).start()
    assert sender.close(timeout=120)
    assert sender._plotter is not None  # drawn in the sender's plotting process
    run_id = sender.run_id("0000-s0")
    names = {f.path for f in mlflow.MlflowClient(uri).list_artifacts(run_id)}
    assert {LEARNING_CURVE, METRICS} <= names


def test_a_result_reads_no_study(tmp_path, monkeypatch):
    """Seed 0's intermediate values reach the study without listing its trials per result
    (each listing reads every trial: most of the searcher's time at 1,000 trials)."""
    from search.searcher import SpaceSearcher
    from search.trial import TrialContext
    from spaces import SearchSpace

    space = SearchSpace("s", lambda t: t.suggest_float("gate_bias", -8.0, 0.0) and None,
                        fixed={"shortcut": "shortcut_gate", "activation": "original"})
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    searcher = SpaceSearcher(space, "smoke", storage, "unit",
                             context=TrialContext(work_root=str(tmp_path)), configurations=4)
    for i in range(4):
        searcher.suggest(f"t{i}")
    listings = []
    get_trials = optuna.Study.get_trials
    monkeypatch.setattr(optuna.Study, "get_trials",
                        lambda self, *a, **k: listings.append(1) or get_trials(self, *a, **k))
    for epoch in (1, 2, 3):
        for i in range(4):
            searcher.on_trial_result(f"t{i}", {"objective": 0.5 - 0.01 * epoch,
                                               "epoch": epoch})
    assert len(listings) <= 4  # once per configuration (its storage id), not per result
    monkeypatch.undo()
    study = optuna.load_study(study_name="unit", storage=storage)
    assert all(t.intermediate_values == {1: 0.49, 2: 0.48, 3: 0.47} for t in study.trials)


def test_the_sender_sends_a_run_of_results_as_one_request_per_run(tmp_path, monkeypatch,
                                                                   capsys):
    """Results journaled one after another, by many trials, reach MLflow as one request per
    run (before: one per result, most of the sender's time at a cluster's rate); a value
    MLflow refuses among them is still skipped alone, the rest delivered."""
    calls = []
    log_batch = mlflow.MlflowClient.log_batch
    monkeypatch.setattr(mlflow.MlflowClient, "log_batch",
                        lambda self, run_id, **kw: calls.append(run_id) or log_batch(
                            self, run_id, **kw))
    journal = Journal(tmp_path / "search")
    journal.experiment("batched", None, {})
    keys = [f"000{n}-s0" for n in range(3)]
    for key in keys:
        journal.create_run(key, key, {"run_key": key})
        journal.log(key, params={"lr": "0.1"})
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    sender = Sender(journal, uri, progress=True)
    assert sender.send()
    calls.clear()
    for epoch in range(1, 11):
        for key in keys:
            journal.log(key, [("val/error", 1.0 / epoch, 1000 * epoch, epoch)])
    journal.tags(keys[0], {"outcome": "ok"})
    assert sender.send()
    assert sorted(calls) == sorted(sender.ids.values())  # 31 entries, 3 requests

    journal.log(keys[1], [("val/error", 0.05, 11000, 11)], {"lr": "0.2"})  # refused: a change
    journal.log(keys[2], [("val/error", 0.04, 11000, 11)])
    assert sender.send()
    assert sender.pending == 0
    assert "MLflow refused a log of '0001-s0'" in capsys.readouterr().err
    client = mlflow.MlflowClient(uri)
    history = {key: client.get_metric_history(sender.run_id(key), "val/error") for key in keys}
    assert [len(points) for points in history.values()] == [10, 10, 11]
    assert client.get_run(sender.run_id(keys[1])).data.params == {"lr": "0.1"}
    assert client.get_run(sender.run_id(keys[0])).data.tags["outcome"] == "ok"


def test_the_study_commits_to_a_write_ahead_log(tmp_path):
    """Each intermediate value, tell and attribute is a commit; SQLite's default journal made
    each wait on the disk in Tune's loop (4,446 commits at 200 trial-seeds)."""
    import sqlite3

    from search.study import optuna_storage

    storage = optuna_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(storage=storage, study_name="wal")
    study.tell(study.ask(), 0.5)
    with sqlite3.connect(tmp_path / "optuna.db") as db:
        assert db.execute("pragma journal_mode").fetchone() == ("wal",)
    with storage.engine.connect() as connection:  # every connection of the driver's
        assert connection.exec_driver_sql("pragma synchronous").scalar() == 1  # NORMAL


def test_an_ask_reads_the_running_trials_once_and_draws_what_optunas_own_reads_draw(tmp_path):
    """TPE's constant liar re-read every trial for each parameter it sampled, and Optuna's cache
    re-read each RUNNING trial's values from the database every time: six reads per ask of
    paper-rediscover. `one_ask` answers them from one read, and the draws are the same."""
    import sqlite3
    import zlib

    import sqlalchemy

    from search.study import OneReadPerAsk, make_sampler, one_ask, open_study, optuna_storage
    from spaces import load_space

    space = load_space("paper-rediscover", "small")
    study, _ = open_study(f"sqlite:///{tmp_path / 'filled.db'}", "liar", make_sampler("tpe", 0),
                          space)
    for number in range(40):  # the anchors, then TPE's; the last 8 still running
        trial = study.ask()
        space.suggest(trial)
        error = 0.3 + 0.01 * (zlib.crc32(str(trial.params).encode()) % 40)
        for epoch in (1, 2, 3):
            trial.report(error / epoch, epoch)
        if number < 32:
            study.tell(trial, error)

    def asks(one_read: bool) -> tuple[list[dict], list[int]]:
        path = tmp_path / f"{one_read}.db"
        with sqlite3.connect(tmp_path / "filled.db") as filled, sqlite3.connect(path) as copy:
            filled.backup(copy)  # its write-ahead log included
        rdb = optuna_storage(f"sqlite:///{path}")
        store = OneReadPerAsk(rdb) if one_read else rdb
        again = optuna.load_study(study_name="liar", storage=store, sampler=make_sampler("tpe", 1))
        reads = []
        sqlalchemy.event.listen(rdb.engine, "before_cursor_execute", lambda *a: reads.append(
            RUNNING_TRIALS_READ in " ".join(a[2].split())))
        drawn, per_ask = [], []
        for _ in range(4):
            reads.clear()
            with one_ask(again, store, None) if one_read else contextlib.nullcontext():
                trial = again.ask()
                space.suggest(trial)
            per_ask.append(sum(reads))
            drawn.append(trial.params)
        return drawn, per_ask

    (own, own_reads), (once, once_reads) = asks(False), asks(True)
    assert once == own
    assert once_reads == [1, 1, 1, 1]
    assert min(own_reads) > 1  # what it was: one read per parameter group


def test_a_configuration_asked_again_is_answered_from_the_asks_own_read(tmp_path):
    """TPE often proposes a configuration already running (bench.scale: 296 asks for 100
    configurations); each repeat is answered from the read its ask made, not a second one."""
    import sqlalchemy
    from ray.tune.search import Searcher

    from search.searcher import SpaceSearcher
    from search.trial import TrialContext
    from spaces import SearchSpace

    space = SearchSpace("two", lambda t: t.suggest_categorical("shortcut", ["identity", "conv1x1"])
                        and None, fixed={"activation": "original"})
    searcher = SpaceSearcher(space, "smoke", f"sqlite:///{tmp_path / 'optuna.db'}", "again",
                             context=TrialContext(work_root=str(tmp_path)), configurations=3)
    while len(searcher.groups) < 2:  # both configurations running, then only repeats are left
        assert searcher.suggest(f"t{len(searcher.live)}") is not None
    statements = []
    listen = (sqlalchemy.engine.Engine, "before_cursor_execute",
              lambda *a: statements.append(" ".join(a[2].split())))
    sqlalchemy.event.listen(*listen)
    try:
        assert searcher.suggest("t-last") is Searcher.FINISHED  # exhausted after 100 repeats
    finally:
        sqlalchemy.event.remove(*listen)
    asks = sum(s.startswith("INSERT INTO trials ") for s in statements)
    reads = sum(RUNNING_TRIALS_READ in s for s in statements)
    assert asks == 100
    assert reads == asks  # one per ask, its repeat's answer included (two each before)
