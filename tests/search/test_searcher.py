"""SpaceSearcher against a real Optuna study in SQLite, driven as Ray Tune drives it."""

import math
import pickle

import optuna
import pytest
from optuna.trial import TrialState

from search.config import SAMPLERS
from search.searcher import SpaceSearcher, make_sampler
from search.trial import TrialContext
from spaces import SearchSpace


def define(trial):
    shortcut = trial.suggest_categorical("shortcut", ["identity", "shortcut_gate", "scaling"])
    if shortcut == "shortcut_gate":
        trial.suggest_float("gate_bias", -8.0, 0.0)
    elif shortcut == "scaling":
        trial.suggest_float("lam", 0.0, 1.0)
    trial.suggest_categorical("activation", ["original", "full_preact"])


SPACE = SearchSpace("unit-space", define, anchors=[
    {"shortcut": "identity", "activation": "full_preact"},
    {"shortcut": "shortcut_gate", "gate_bias": -6.0, "activation": "original", "lr": 0.05}])


def _searcher(tmp_path, **kwargs):
    options = {"sampler": "tpe", "seeds": 1, "configurations": 6, **kwargs}
    return SpaceSearcher(SPACE, "smoke", f"sqlite:///{tmp_path / 'optuna.db'}", "unit",
                         context=TrialContext(work_root=str(tmp_path)), **options)


def _result(value, epoch=3, outcome="ok"):
    return {"objective": value, "val_error": value, "epoch": epoch, "outcome": outcome}


def _study(tmp_path):
    return optuna.load_study(study_name="unit", storage=f"sqlite:///{tmp_path / 'optuna.db'}")


def test_anchors_first_with_every_value_then_sampled(tmp_path):
    searcher = _searcher(tmp_path)
    configs = [searcher.suggest(f"t{i}") for i in range(4)]
    assert configs[0]["params"] == SPACE.anchors[0]
    assert configs[1]["params"] == SPACE.anchors[1]
    assert configs[1]["plan"]["recipe"]["lr"] == 0.05  # an anchor's value define never asks
    assert [c["optuna_trial"] for c in configs] == [0, 1, 2, 3]
    assert configs[0]["work_root"] == str(tmp_path) and configs[0]["run_key"] == "0000-s0"


def test_outcomes_reach_the_study_and_an_error_waits_for_its_resume(tmp_path):
    searcher = _searcher(tmp_path)
    for i in range(5):
        searcher.suggest(f"t{i}")
    searcher.on_trial_result("t0", _result(0.3, epoch=1, outcome="running"))
    searcher.on_trial_complete("t0", _result(0.2))                          # ok
    searcher.on_trial_complete("t1", _result(1.0, outcome="diverged"))      # penalty
    searcher.on_trial_complete("t2", {**_result(0.7, epoch=1, outcome="running"),
                                      "done": True})  # ASHA's stop: Tune marks it done
    searcher.on_trial_complete("t3", None, error=True)                      # raised
    searcher.on_trial_complete("t4", _result(math.nan))                     # NaN never told
    trials = _study(tmp_path).trials
    assert [t.state for t in trials[:5]] == [TrialState.COMPLETE, TrialState.COMPLETE,
                                             TrialState.PRUNED, TrialState.RUNNING,
                                             TrialState.FAIL]
    assert trials[0].value == 0.2 and trials[1].value == 1.0
    assert trials[0].intermediate_values == {1: 0.3, 3: 0.2}
    assert trials[2].intermediate_values == {1: 0.7}
    assert trials[1].user_attrs["outcomes"] == ["diverged"]
    # The errored trial is resumable (a re-run restores it): it is told when it ends.
    assert trials[3].user_attrs["errored"] is True
    searcher.on_trial_complete("t3", _result(0.25))
    resumed = _study(tmp_path).trials[3]
    assert resumed.state == TrialState.COMPLETE and resumed.value == 0.25
    assert resumed.user_attrs["errored"] is False


def test_seeds_share_a_configuration_and_its_mean_is_told(tmp_path):
    searcher = _searcher(tmp_path, seeds=3)
    configs = [searcher.suggest(f"t{i}") for i in range(6)]
    assert [c["optuna_trial"] for c in configs] == [0, 0, 0, 1, 1, 1]
    assert [c["seed"] for c in configs] == [0, 1, 2, 0, 1, 2]
    assert configs[0]["params"] == configs[2]["params"]
    assert [c["plan"]["seed"] for c in configs[:3]] == [0, 1, 2]
    searcher.on_trial_complete("t0", _result(0.2))
    searcher.on_trial_complete("t1", _result(0.4))
    assert _study(tmp_path).trials[0].state == TrialState.RUNNING  # waits for every seed
    searcher.on_trial_complete("t2", _result(0.3))
    assert _study(tmp_path).trials[0].value == pytest.approx(0.3)


def test_budget_and_grid_end_the_search(tmp_path):
    capped = _searcher(tmp_path, configurations=2)
    assert capped.suggest("a") and not capped.nothing_left_to_ask()
    assert capped.suggest("b") and capped.nothing_left_to_ask()
    assert capped.suggest("c") == "FINISHED"
    # The driver's own copy, never run by Tune, reads the same answer from the study.
    assert _searcher(tmp_path, configurations=2).nothing_left_to_ask()
    assert not _searcher(tmp_path, configurations=3).nothing_left_to_ask()
    grid = _searcher(tmp_path / "grid", sampler="grid", configurations=None, seeds=2)
    (tmp_path / "grid").mkdir()
    configs = [grid.suggest(f"g{i}") for i in range(5)]
    assert [c["params"] for c in configs[:4]] == [SPACE.anchors[0]] * 2 + [SPACE.anchors[1]] * 2
    assert configs[4] == "FINISHED" and grid.nothing_left_to_ask()


def test_restore_requeues_a_configuration_the_snapshot_lost(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("t0")
    snapshot = pickle.dumps(searcher.get_state())  # the driver's last experiment checkpoint
    lost = searcher.suggest("t1")                   # asked, then the driver was killed
    searcher.on_trial_complete("t0", _result(0.25))

    restored = _searcher(tmp_path)
    restored.set_state(pickle.loads(snapshot))
    again = restored.suggest("t1-new")
    assert again["optuna_trial"] == lost["optuna_trial"] and again["params"] == lost["params"]
    assert again["run_key"] == lost["run_key"]     # it resumes in the same directory
    restored.on_trial_complete("t0", _result(0.25))  # told already: no error, no change
    restored.on_trial_complete("t1-new", _result(0.5))
    states = [t.state for t in _study(tmp_path).trials if t.state != TrialState.WAITING]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert restored.suggest("t2")["optuna_trial"] == 2


def test_a_restore_from_a_snapshot_older_than_a_tell_leaves_the_told_trial_alone(tmp_path):
    """Found at 1,000 trials (`bench.scale --fault driver`): the driver's last snapshot kept
    the storage id a result had cached; the configuration was told before the kill; after the
    restore the resumed seed's next epoch was written to the told trial
    (UpdateFinishedTrialError), and Tune's error path, telling the searcher of an error, failed
    on the told trial's missing id and stopped the driver."""
    searcher = _searcher(tmp_path, seeds=2)
    searcher.suggest("s0")
    searcher.suggest("s1")
    searcher.on_trial_result("s0", _result(0.6, epoch=1, outcome="running"))
    snapshot = pickle.dumps(searcher.get_state())
    searcher.on_trial_complete("s0", _result(0.3, epoch=3))
    searcher.on_trial_complete("s1", _result(0.5, epoch=3))
    told = _study(tmp_path).trials[0]

    restored = _searcher(tmp_path, seeds=2)
    restored.set_state(pickle.loads(snapshot))
    restored.on_trial_result("s0", _result(0.4, epoch=2, outcome="running"))
    restored.on_trial_complete("s0", error=True)
    restored.on_trial_complete("s1", _result(0.5, epoch=3))
    after = _study(tmp_path).trials[0]
    assert after.state == TrialState.COMPLETE and after.value == pytest.approx(0.4)
    assert after.intermediate_values == told.intermediate_values == {1: 0.6, 3: 0.3}
    assert after.user_attrs == told.user_attrs and after.user_attrs["errored"] is False


def test_searcher_pickles_without_its_study(tmp_path):
    searcher = _searcher(tmp_path)
    searcher.suggest("t0")
    copy = pickle.loads(pickle.dumps(searcher))
    assert copy.suggest("t1")["optuna_trial"] == 1


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_drives_a_conditional_space(name):
    study = optuna.create_study(sampler=make_sampler(name, seed=0))
    SPACE.enqueue_anchors(study)
    for _ in range(8):
        trial = study.ask()
        params = SPACE.suggest(trial)
        SPACE.plan(params, "smoke")
        study.tell(trial, 0.5 if params["shortcut"] == "identity" else 0.8)
    assert len(study.trials) == 8 and all(t.state == TrialState.COMPLETE for t in study.trials)


def test_unknown_sampler():
    with pytest.raises(ValueError, match="sampler='bayes' is invalid; allowed: tpe"):
        make_sampler("bayes", 0)


def test_a_searcher_pickled_before_the_trial_contract_resumes(tmp_path):
    searcher = _searcher(tmp_path, seeds=2)
    searcher.suggest("t0")  # seed 1 of configuration 0 waits in the queue
    state = searcher.get_state()
    # Its layout before TrialConfig: shared settings in a dict, the queue as plain dicts.
    seed_run = ("optuna_trial", "seed", "run_key", "params", "configuration_key", "plan")
    legacy = {**state, "run_settings": state.pop("context"),
              "queue": [{k: v for k, v in run.items() if k in seed_run}
                        for run in state["queue"]]}
    restored = _searcher(tmp_path, seeds=2)
    restored.set_state(pickle.loads(pickle.dumps(legacy)))
    assert restored.suggest("t1") == searcher.suggest("t1")
    assert restored.context == searcher.context


def test_a_sampler_stuck_on_a_covered_corner_is_left_by_random_draws(tmp_path):
    """A sampler that proposes only configurations already running (here: always identity,
    whose branch has no parameter of its own) would end the search "exhausted" after
    MAX_DUPLICATES asks; after EXPLORE_AFTER of them in a row the next are drawn at random,
    and the search goes on with new configurations."""
    from search.study import EXPLORE_AFTER

    stuck = optuna.samplers.PartialFixedSampler({"shortcut": "identity"},
                                                optuna.samplers.RandomSampler(seed=0))
    searcher = _searcher(tmp_path, configurations=None)
    searcher.study.sampler = stuck
    suggested = [searcher.suggest(f"t{i}") for i in range(6)]  # nothing ends meanwhile
    assert all(config is not None for config in suggested)
    assert not searcher.exhausted
    keys = [config["configuration_key"] for config in suggested]
    assert len(set(keys)) == len(keys)  # every one new
    shortcuts = [config["params"]["shortcut"] for config in suggested[2:]]  # after the anchors
    assert "identity" in shortcuts and set(shortcuts) - {"identity"}  # left the corner
    duplicates = [t for t in _study(tmp_path).trials if t.state == TrialState.FAIL]
    assert len(duplicates) >= EXPLORE_AFTER  # the stuck sampler's repeats, dropped
    assert searcher.study.sampler is stuck  # the search's own sampler, put back
