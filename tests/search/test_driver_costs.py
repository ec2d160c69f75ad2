"""What the driver no longer does per result or per trial at a cluster's size (bench.scale,
BENCHMARKS.md "At cluster size (simulated)"): each failed before its fix."""

import json

import mlflow
import optuna

from search.tracking.journal import Journal
from search.tracking.sender import Sender
from search.trial.contract import LEARNING_CURVE, METRICS
from search.tune_fixes import snapshot_period


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
