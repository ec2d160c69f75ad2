"""A trial Ray Tune ends short of its budget without a scheduler's decision did not end: the
search runs it again, from its own checkpoint, to its budget, and only then tells Optuna.

Ray did this to restored trials under load (TERMINATED after one more epoch, no `done` on the
last result). Here a scheduler does it on purpose, the same way: it calls the controller's
`stop_trial` itself instead of deciding STOP, so the trial ends without `done`.
"""

from ray.tune.schedulers import FIFOScheduler, TrialScheduler

import search.tuner
from search import SearchConfig, run
from search.trial import TrialConfig
from spaces import SearchSpace

CUT_AT = 2
BUDGET = 4


class CutsEachTrialShortOnce(FIFOScheduler):
    """FIFO, except that every seed run is ended by Tune once, after its second epoch."""

    cut: set[str] = set()

    def on_trial_result(self, tune_controller, trial, result):
        key = TrialConfig.from_dict(trial.config).run_key
        if result.get("epoch") == CUT_AT and key not in self.cut:
            self.cut.add(key)
            tune_controller.stop_trial(trial)
            return TrialScheduler.NOOP
        return super().on_trial_result(tune_controller, trial, result)


def test_a_trial_tune_cut_short_runs_again_to_its_budget(tmp_path, monkeypatch, mlflow_runs,
                                                         study, one_truth):
    monkeypatch.setattr(search.tuner, "FIFOScheduler", CutsEachTrialShortOnce)
    space = SearchSpace("two", lambda trial: None, fixed={"activation": "full_preact"},
                        anchors=[{"shortcut": "identity"}, {"shortcut": "conv1x1"}])
    results = tmp_path / "results"
    config = SearchConfig(name="cut", scale="smoke", sampler="grid", scheduler="none",
                          epochs=BUDGET, concurrency=1, results_dir=str(results),
                          progress=False)
    result = run(space, config)
    assert CutsEachTrialShortOnce.cut == {"0000-s0", "0001-s0"}  # both were cut short
    assert result.unfinished == []
    assert result.trials["outcome"].tolist() == ["ok", "ok"]
    assert result.trials["epochs"].tolist() == [BUDGET, BUDGET]  # before: stopped, 2 epochs
    for key in ("0000-s0", "0001-s0"):  # each epoch trained once, resumed from epoch 2
        lines = (result.directory / "trials" / key / "metrics.jsonl").read_text()
        assert lines.count("\n") == BUDGET, key
    _, _, children = mlflow_runs(results)
    assert sorted(r.data.tags["outcome"] for r in children) == ["ok", "ok"]
    assert [t.state.name for t in study(results, "cut").trials] == ["COMPLETE", "COMPLETE"]
    one_truth(results, "cut", BUDGET)
