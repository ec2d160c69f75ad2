"""A driver killed between telling Optuna a configuration and recording its seed run's end, with
the trial missing from Tune's last snapshot, left that run "running" in MLflow for good and the
search unfinished on every re-run. The tracker closes such runs from their own directories."""

import optuna
from optuna.trial import TrialState

from search.tracking import Journal, MlflowTracker, replay
from search.tracking.journal import PARENT
from search.trial import RunOptions, load_trial_data, run_key, run_trial
from spaces import load_space


def _trained(work, number: int) -> None:
    """A real 2-epoch smoke trial in the seed run's directory."""
    plan = load_space("paper-table1", "smoke").plan({"epochs": 2}, "smoke")
    data = load_trial_data(plan.recipe, "digits")
    run_trial(plan, data, work / run_key(number, 0), options=RunOptions(device="cpu"))


def test_runs_a_driver_lost_after_telling_optuna_are_closed_from_their_directories(tmp_path):
    work, storage = tmp_path / "trials", f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    journal = Journal(tmp_path / "search")
    journal.create_run(PARENT, "s", {"search": "s"})
    for number, state in enumerate((TrialState.PRUNED, TrialState.COMPLETE, None)):
        trial = study.ask()
        if state == TrialState.PRUNED:
            study.tell(trial, state=state)
        elif state == TrialState.COMPLETE:
            study.tell(trial, 0.3)
        _trained(work, number)
        journal.create_run(run_key(number, 0), f"{number}", {
            "search": "s", "stage": "search", "optuna_trial": str(number), "seed": "0",
            "outcome": "running"}, parent=PARENT)
    (work / run_key(0, 0) / "result.json").unlink()  # stopped by the scheduler: no result

    MlflowTracker(journal, "s", "paper-table1", str(work), storage).on_experiment_end(trials=[])

    runs = replay(journal)
    assert runs["0000-s0"].tags["outcome"] == "stopped" and runs["0000-s0"].status == "FINISHED"
    assert runs["0001-s0"].tags["outcome"] == "ok" and runs["0001-s0"].status == "FINISHED"
    assert set(runs["0001-s0"].history["epoch"]) == {1, 2}  # its epochs, from its own file
    # Optuna still waits for this one: it resumes when the search runs again, it is not closed.
    assert runs["0002-s0"].tags["outcome"] == "running" and runs["0002-s0"].status == "RUNNING"
