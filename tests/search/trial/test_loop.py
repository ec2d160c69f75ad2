"""The trial: real training on real data, resume bit for bit, divergence as a result."""

import contextlib
import json
import math

import optuna
import pytest
import torch

from search.trial import (
    PENALTY_ERROR,
    RunOptions,
    TrialDirError,
    load_propagation,
    load_trial_data,
    run_trial,
)
from search.trial.directory import CHECKPOINT, METRICS, TrialDir
from search.trial.loop import PHASES, TrialPhases
from spaces import load_space

CPU = RunOptions(device="cpu", threads=1)


def _plan(params, seed=0, space="paper-table1", **recipe):
    return load_space(space, "smoke").plan({**params, **recipe}, "smoke", seed=seed)


@pytest.fixture(scope="module")
def digits():
    return load_trial_data(_plan({}).recipe, "digits")


@pytest.mark.parametrize("name", ["paper-table1", "paper-table2", "paper-joint"])
def test_every_builtin_space_samples_builds_and_trains_one_epoch(name, digits, tmp_path):
    space = load_space(name, "smoke")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    trial = study.ask()
    params = space.suggest(trial)
    plan = space.plan({**params, "epochs": 1}, "smoke")
    reports = []
    result = run_trial(plan, digits, tmp_path, reports.append, CPU)
    assert result.outcome in ("ok", "diverged") and result.epochs == 1
    assert len(reports) == 1
    metrics = reports[0]
    for key in ("train_loss", "train_error", "val_error", "test_error", "lr", "epoch_seconds",
                "images_per_second"):
        assert key in metrics
    assert 0.0 <= metrics["val_error"] <= 1.0 and metrics["images_per_second"] > 0
    for file in (CHECKPOINT, METRICS, "propagation.json", "plan.json", "result.json",
                 "learning_curve.png", "propagation.png"):
        assert (tmp_path / file).stat().st_size > 0, file
    study.tell(trial, metrics["objective"])


def test_training_learns_and_reports_every_epoch(digits, tmp_path):
    reports = []
    result = run_trial(_plan({"shortcut": "identity", "activation": "full_preact"}, epochs=4,
                             depth=14),
                       digits, tmp_path, reports.append, CPU)
    assert result.outcome == "ok"
    assert [m["epoch"] for m in reports] == [1, 2, 3, 4]
    assert [m["outcome"] for m in reports] == ["running"] * 3 + ["ok"]
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    assert reports[-1]["val_error"] < 0.8  # chance is 0.9: it learned
    # Validation every epoch (RunOptions' default), the test set once, at the end.
    assert ["test_error" in m for m in reports] == [False] * 3 + [True]
    lines = (tmp_path / METRICS).read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    profiles = load_propagation(tmp_path)
    assert sorted(profiles) == [0, 1, 2, 3, 4]  # at initialisation and after every epoch
    assert profiles[0].direct_path_share[-1] == pytest.approx(1.0, abs=1e-6)


def test_sparse_validation_measures_where_it_is_read_and_trains_the_same(digits, tmp_path):
    """validate_every=0 with a rung at epoch 2 (as a search with ASHA runs it): validation,
    objective and propagation at epoch 2 and the last only; the same training bit for bit."""
    plan = _plan({"shortcut": "identity", "activation": "full_preact"}, epochs=4)
    dense = run_trial(plan, digits, tmp_path / "dense", None, CPU)
    sparse_options = RunOptions(device="cpu", threads=1, validate_every=0,
                                validate_at=frozenset({2}))
    sparse = run_trial(plan, digits, tmp_path / "sparse", None, sparse_options)
    assert [m["train_loss"] for m in sparse.history] == [m["train_loss"] for m in dense.history]
    for key in ("val_error", "objective", "prop_direct_path_share_first_unit", "eval_seconds"):
        assert [m["epoch"] for m in sparse.history if key in m] == [2, 4], key
    assert [m["val_error"] for m in sparse.history if "val_error" in m] == \
        [dense.history[1]["val_error"], dense.history[3]["val_error"]]
    assert sparse.metrics["test_error"] == dense.metrics["test_error"]
    assert sorted(load_propagation(tmp_path / "sparse")) == [0, 2, 4]
    every_third = RunOptions(device="cpu", threads=1, validate_every=3)
    assert [e for e in range(1, 8) if every_third.validates(e, e == 7)] == [3, 6, 7]
    with pytest.raises(ValueError, match=r"validate_every=-1 is invalid; allowed: an integer "
                       ">= 0"):
        RunOptions(validate_every=-1)


class RecordingPhases(TrialPhases):
    """Every phase entered and left, in order, and every training step's loss."""

    def __init__(self):
        self.events, self.losses = [], []

    @contextlib.contextmanager
    def __call__(self, name):
        self.events.append(("enter", name))
        yield
        self.events.append(("exit", name))

    def step_loss(self, loss):
        self.losses.append(loss.detach().clone())


def test_phase_observer_sees_every_phase_and_changes_nothing(digits, tmp_path):
    plan = _plan({"shortcut": "dropout"}, epochs=2)  # dropout: the random state matters too
    plain = run_trial(plan, digits, tmp_path / "plain", None, CPU)
    seen = RecordingPhases()
    observed = run_trial(plan, digits, tmp_path / "observed", [].append, CPU, phases=seen)

    timings = ("epoch_seconds", "images_per_second", "eval_seconds")
    assert [{k: v for k, v in m.items() if k not in timings} for m in observed.history] == \
        [{k: v for k, v in m.items() if k not in timings} for m in plain.history]
    a = torch.load(tmp_path / "plain" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "observed" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    entered = [name for kind, name in seen.events if kind == "enter"]
    epoch = ["train", "val", "propagation"]
    assert entered == ["records", "build", "propagation_at_init", "records",
                       *epoch, "checkpoint", "report",
                       *epoch, "test", "checkpoint", "records", "report", "plots"]
    assert sorted(set(entered)) == sorted(PHASES)
    # Phases do not nest: each is left before the next is entered.
    assert seen.events == [(kind, name) for name in entered for kind in ("enter", "exit")]
    n, batch = len(digits.train_y), plan.recipe.batch_size
    sizes = [min(batch, n - start) for start in range(0, n, batch)]
    assert len(seen.losses) == 2 * len(sizes)
    first_epoch = sum(float(loss) * size for loss, size in zip(seen.losses, sizes)) / n
    assert first_epoch == pytest.approx(plain.history[0]["train_loss"], rel=1e-6)


def test_checkpoint_loads_with_weights_only(digits, tmp_path):
    run_trial(_plan({}, epochs=1), digits, tmp_path, None, CPU)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1 and "model" in state and "optimizer" in state
    assert {"torch", "batch_order", "python"} <= set(state["rng"])


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_after", [1, 3])
def test_killed_trial_resumes_to_the_same_weights(digits, tmp_path, kill_after):
    plan = _plan({"shortcut": "dropout"}, epochs=4)  # dropout: the RNG state matters too
    straight = run_trial(plan, digits, tmp_path / "straight", None, CPU)

    def kill(metrics):
        if metrics["epoch"] == kill_after:
            raise Killed  # after the epoch's checkpoint, like a SIGKILL between epochs

    with pytest.raises(Killed):
        run_trial(plan, digits, tmp_path / "resumed", kill, CPU)
    seen = []
    resumed = run_trial(plan, digits, tmp_path / "resumed", seen.append, CPU)
    assert [m["epoch"] for m in seen] == list(range(kill_after + 1, 5))
    assert resumed.epochs == straight.epochs == 4
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [m["epoch"] for m in resumed.history] == [1, 2, 3, 4]


def test_finished_trial_is_not_retrained(digits, tmp_path):
    plan = _plan({}, epochs=1)
    first = run_trial(plan, digits, tmp_path, None, CPU)
    seen = []
    again = run_trial(plan, digits, tmp_path, seen.append, CPU)
    assert seen == [] and again.metrics == first.metrics


def test_directory_of_another_trial_is_refused(digits, tmp_path):
    run_trial(_plan({}, epochs=1), digits, tmp_path, None, CPU)
    with pytest.raises(TrialDirError, match="different trial"):
        run_trial(_plan({}, epochs=1, seed=1), digits, tmp_path, None, CPU)


def test_divergence_is_a_recorded_result_with_its_last_measured_errors(digits, tmp_path):
    reports = []
    # lr 0.1 for an epoch (measured errors), then a million: the loss becomes NaN.
    plan = _plan({}, lr=1e6, warmup_iterations=16, warmup_lr=0.1, epochs=3)
    result = run_trial(plan, digits, tmp_path, reports.append, CPU)
    assert result.outcome == "diverged" and "non-finite" in result.reason
    first, last = reports[0], reports[-1]
    assert first["outcome"] == "running" and last["outcome"] == "diverged"
    assert not math.isfinite(last["train_loss"])
    # The error is the last one measured, never the sampler's penalty; the test set is
    # measured at the end of a budget only, which a diverged trial never reached.
    assert last["val_error"] == first["val_error"] and "test_error" not in last
    assert last["val_error"] < 0.9
    assert last["objective"] == PENALTY_ERROR
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["outcome"] == "diverged"


def test_stopping_at_chance_is_opt_in_and_keeps_measured_errors(digits, tmp_path):
    plan = _plan({}, lr=10.0, epochs=4)
    by_default = run_trial(plan, digits, tmp_path / "default", None, CPU)
    assert by_default.epochs == 4  # trained out, whatever its error

    opted_in = RunOptions(device="cpu", threads=1, stop_at_chance=2)
    result = run_trial(plan, digits, tmp_path / "opted-in", None, opted_in)
    assert result.outcome == "stopped" and "at chance" in result.reason
    assert result.epochs == 2
    assert 0.8 <= result.metrics["val_error"] <= 1.0  # measured, not a penalty
    assert result.metrics["objective"] == result.metrics["val_error"]


@pytest.mark.parametrize("name, garbage", [("checkpoint.pt", b"not a checkpoint"),
                                           ("plan.json", b"{oops"),
                                           ("metrics.jsonl", b"{oops\n")])
def test_corrupted_file_is_named_with_the_way_out(digits, tmp_path, name, garbage):
    plan = _plan({}, epochs=2)
    run_trial(plan, digits, tmp_path, None, CPU)
    (tmp_path / "result.json").unlink()  # as if killed before the end: it would resume
    (tmp_path / name).write_bytes(garbage)
    with pytest.raises(TrialDirError, match=f"{name} is corrupted .*--fresh"):
        run_trial(plan, digits, tmp_path, None, CPU)
    TrialDir(tmp_path).clear()  # what --fresh does: the trial starts over
    assert run_trial(plan, digits, tmp_path, None, CPU).epochs == 2
