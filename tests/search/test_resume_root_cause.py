"""The root cause of a resumed trial cut short (issue 24, item 1), forced deterministically.

A node is lost while Tune saves a trial's checkpoint: the result of epoch 1 has reached the
driver, which asked the trial's actor for the checkpoint (`save`), and the actor dies before it
answers. With --max-failures 0, Ray Tune (2.60) ends the trial in error and, because it was
saving, parks a STOP for it in `TuneController._cached_trial_decisions`, a decision meant for
the save that never returns. That dict is part of the experiment state Tune writes, and a
restored driver reads it back: the re-run resumes the trial, trains one epoch, and the parked
STOP fires after that epoch's save. The trial ends TERMINATED short of its budget, without
`done`, as the worker-loss test saw under load (the lost node's actor must die in the few
milliseconds a save takes).

Here the node is lost on purpose at that moment: a real Ray actor killed, and known dead, from
a Tune callback on the driver, between the result and the save Tune schedules right after it.
"""

import json
import time
from pathlib import Path

import ray
from ray.exceptions import RayActorError
from ray.tune import ExperimentAnalysis

from search import SearchConfig, run
from search.tracking.tracker import MlflowTracker
from spaces import SearchSpace

BUDGET = 3
LOST_AT = 1


def lose_the_node_while_tune_saves(monkeypatch, epoch: int) -> list[str]:
    """The first trial that reports `epoch` loses its actor (as with its node) before Tune's
    save of that epoch's checkpoint reaches it; returns the trial ids it happened to."""
    lost: list[str] = []
    on_trial_result = MlflowTracker.on_trial_result

    def then_lose_the_actor(self, iteration, trials, trial, result, **info):
        on_trial_result(self, iteration, trials, trial, result, **info)
        if result.get("epoch") != epoch or lost:
            return
        actor = trial.temporary_state.ray_actor
        ray.kill(actor, no_restart=True)
        deadline = time.time() + 30
        while time.time() < deadline:  # dead before Tune schedules the save
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=5)
            except RayActorError:
                lost.append(trial.trial_id)
                return
            time.sleep(0.05)
        raise AssertionError("the killed actor still answers")

    monkeypatch.setattr(MlflowTracker, "on_trial_result", then_lose_the_actor)
    return lost


def newest_experiment_state(experiment: Path) -> dict:
    return json.loads(sorted(experiment.glob("experiment_state-*.json"))[-1].read_text())


def test_a_trial_lost_while_tune_saved_it_resumes_to_its_budget(tmp_path, monkeypatch,
                                                                 one_truth):
    space = SearchSpace("one", lambda trial: None, fixed={"activation": "full_preact"},
                        anchors=[{"shortcut": "identity"}])
    results = tmp_path / "results"
    config = SearchConfig(name="lost", scale="smoke", sampler="grid", scheduler="none",
                          epochs=BUDGET, concurrency=1, max_failures=0,
                          results_dir=str(results), progress=False)
    experiment = results / "ray" / "lost"

    with monkeypatch.context() as patch:
        lost = lose_the_node_while_tune_saves(patch, LOST_AT)
        first = run(space, config)
    assert len(lost) == 1 and first.unfinished, first.unfinished
    assert first.trials["outcome"].tolist() == ["error"]
    # The race was forced: Ray parked a STOP for the trial's save, and wrote it down.
    parked = newest_experiment_state(experiment)["runner_data"]["_cached_trial_decisions"]
    assert parked == {lost[0]: "STOP"}, "Ray no longer parks the STOP: see search/tuner.py"

    again = run(space, config)  # the same command: the errored trial resumes
    assert again.unfinished == []
    assert again.trials["outcome"].tolist() == ["ok"]
    assert again.trials["epochs"].tolist() == [BUDGET]
    # Ray itself trained it to its budget; the safety net (`rounds.run_again`) had nothing
    # to run again. Before the fix: TERMINATED after epoch 2, then "lost-again" finished it.
    assert not (results / "ray" / "lost-again").exists()
    [trial] = ExperimentAnalysis(str(experiment)).trials
    assert trial.trial_id == lost[0] and trial.status == "TERMINATED"
    assert trial.last_result["epoch"] == BUDGET and trial.last_result["outcome"] == "ok"
    lines = (again.directory / "trials" / "0000-s0" / "metrics.jsonl").read_text()
    assert lines.count("\n") == BUDGET  # each epoch trained once
    one_truth(results, "lost", BUDGET)
