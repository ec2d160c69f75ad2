"""The simulated trial without Ray: the learning-curve model against the measured rows it was
and was not fitted on, the trial's records, resume and sleeps, and its imports (no torch)."""

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import kendalltau, spearmanr

from search.trial import (
    RunOptions,
    TrialConfig,
    TrialConfigError,
    TrialContext,
    configuration_key,
)
from search.trial.curve_model import (
    COEFFICIENTS,
    JOINT,
    MEASURED,
    SPREAD,
    curve,
    fit,
    net_of,
    predict,
)
from search.trial.simulated import (
    SIMULATED_CHECKPOINT,
    run_simulated_trial,
    simulated_checkpoint_epoch,
)
from spaces import load_space

ROOT = Path(__file__).resolve().parents[2]
TABLE1_MEASURED = (0.64, 0.71, 0.77, 0.82, 0.71, 0.82, 0.75, 0.85, 0.93)
"""Kendall tau of the order after epoch 1..9 against the final order, Table 1's eleven rows
at seed 0 (docs/RESULTS.md, "The default ASHA grace period"): never fitted on."""


def test_the_hard_coded_coefficients_are_the_fit_of_the_measured_rows():
    fitted = fit()
    assert fitted.keys() == COEFFICIENTS.keys()
    assert all(abs(fitted[k] - COEFFICIENTS[k]) <= 0.006 for k in fitted), fitted
    residuals = [predict(net_of(config)) - error for config, error, _ in MEASURED]
    print(f"\nin-sample: {len(MEASURED)} rows, mean absolute error "
          f"{statistics.mean(map(abs, residuals)):.2f} points")


def test_held_out_rows_are_predicted_in_order():
    """The error against rows the fit never saw (the module docstring states these figures)."""
    predicted = [predict(net_of(config)) for config, _ in JOINT]
    measured = [error for _, error in JOINT]
    joint_mae = statistics.mean(abs(p - m) for p, m in zip(predicted, measured))
    joint_rho = spearmanr(predicted, measured)[0]
    oracle = statistics.mean(abs(m - statistics.median(measured)) for m in measured)
    # Depth extrapolation: fitted without the deepest rows of each unit type.
    deepest = [row for row in MEASURED if row[0]["depth"] == (164 if row[0].get("bottleneck")
                                                                  else 110)]
    shallower = fit([row for row in MEASURED if row not in deepest])
    depth_predicted = [predict(net_of(config), shallower) for config, *_ in deepest]
    depth_measured = [error for _, error, _ in deepest]
    depth_mae = statistics.mean(abs(p - m) for p, m in zip(depth_predicted, depth_measured))
    depth_rho = spearmanr(depth_predicted, depth_measured)[0]
    print(f"\njoint search, {len(JOINT)} rows: MAE {joint_mae:.2f} points (an oracle constant "
          f"{oracle:.2f}), Spearman {joint_rho:+.2f}\ndepth extrapolation, {len(deepest)} "
          f"rows: MAE {depth_mae:.2f} points, Spearman {depth_rho:+.2f}")
    assert len(deepest) == 6
    assert joint_rho > 0 and depth_rho > 0


def test_simulated_orders_settle_over_the_epochs_as_measured_ones_do():
    table1 = [config for config, *_ in MEASURED
              if config["depth"] == 56 and config["activation"] == "original"
              and not config.get("bottleneck")]
    assert len(table1) == 11
    seeds, taus = 100, [0.0] * 9
    for seed in range(seeds):
        curves = [curve(net_of(config), 10, 5000, f"table1-{i}", seed)
                  for i, config in enumerate(table1)]
        final = [c.val_error(10) for c in curves]
        for epoch in range(1, 10):
            taus[epoch - 1] += kendalltau([c.val_error(epoch) for c in curves], final)[0] / seeds
    print("\nKendall tau, order after epoch e vs final, e = 1..9:\n  simulated "
          + " ".join(f"{t:.2f}" for t in taus) + "\n  measured  "
          + " ".join(f"{t:.2f}" for t in TABLE1_MEASURED))
    assert taus[0] < taus[-1] < 1.0  # configurations cross on the way, fewer late


def test_the_seed_spread_is_the_measured_one():
    identity = net_of({"depth": 56, "activation": "original"})
    finals = [100 * curve(identity, 10, 5000, "spread", seed).final for seed in range(400)]
    low_sd = SPREAD[0][1]
    assert abs(statistics.mean(finals) - predict(identity)) < 0.3
    assert 0.8 * low_sd < statistics.stdev(finals) < 1.2 * low_sd


def _trial(tmp_path: Path, seconds: float = 0.5, seed: int = 0) -> TrialConfig:
    space = load_space("paper-table1", "small")
    plan = space.plan(space.anchors[0], "small", seed=seed)
    options = RunOptions(validate_every=0, validate_at=frozenset({3, 6}))
    context = TrialContext(work_root=str(tmp_path), space_source="paper-table1",
                           scale="small", dataset="simulated", options=options,
                           simulate=seconds)
    return TrialConfig(plan, 0, configuration_key(plan), context)


def test_a_simulated_trial_reports_like_a_trained_one_and_resumes_exactly(tmp_path):
    trial = _trial(tmp_path)
    slept, reports = [], []
    whole = run_simulated_trial(trial, reports.append, sleep=slept.append)
    assert slept == [0.5] * 10 and [m["epoch"] for m in reports] == list(range(1, 11))
    validated = [m["epoch"] for m in reports if "objective" in m]
    assert validated == [3, 6, 10] and "test_error" in reports[-1]
    assert whole.outcome == "ok" and reports[-1]["outcome"] == "ok"
    assert all(m["outcome"] == "running" for m in reports[:-1])
    val = [m["val_error"] for m in reports if "val_error" in m]
    assert 0.9 > val[0] > val[1] > val[2] > 0.3  # from chance down to its final error
    names = sorted(p.name for p in trial.directory.iterdir())
    assert names == sorted([SIMULATED_CHECKPOINT, "metrics.jsonl", "plan.json", "result.json"])

    # Cut off after epoch 4 (the checkpoint says 4; a fifth line was written before a kill).
    other = tmp_path / "cut"
    cut = _trial(other)
    run_simulated_trial(cut, sleep=lambda s: None)
    lines = (cut.directory / "metrics.jsonl").read_text().splitlines()
    (cut.directory / "metrics.jsonl").write_text("\n".join(lines[:5]) + "\n")
    (cut.directory / SIMULATED_CHECKPOINT).write_text(json.dumps({"epoch": 4}))
    (cut.directory / "result.json").unlink()
    resumed_reports, resumed_sleeps = [], []
    resumed = run_simulated_trial(cut, resumed_reports.append, sleep=resumed_sleeps.append)
    assert [m["epoch"] for m in resumed_reports] == list(range(5, 11))
    assert len(resumed_sleeps) == 6 and simulated_checkpoint_epoch(cut.directory) == 10

    def without_time(history):
        return [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in history]

    assert without_time(resumed.history) == without_time(whole.history)  # the same curve
    again = run_simulated_trial(cut, sleep=resumed_sleeps.append)  # finished: nothing runs
    assert len(resumed_sleeps) == 6 and again.metrics == resumed.metrics


def test_seeds_differ_and_repeat(tmp_path):
    first = run_simulated_trial(_trial(tmp_path / "a", seed=0), sleep=lambda s: None)
    again = run_simulated_trial(_trial(tmp_path / "b", seed=0), sleep=lambda s: None)
    other = run_simulated_trial(_trial(tmp_path / "c", seed=1), sleep=lambda s: None)
    assert first.metrics["val_error"] == again.metrics["val_error"]
    assert first.metrics["val_error"] != other.metrics["val_error"]
    assert math.isfinite(other.metrics["test_error"])


@pytest.mark.parametrize("seconds", [0, -1.5, float("nan"), True, "1"])
def test_the_contract_refuses_a_bad_simulated_epoch_time(tmp_path, seconds):
    data = {**_trial(tmp_path).to_dict(), "simulate": seconds}
    with pytest.raises(TrialConfigError, match=r"^simulate=.* is invalid; allowed: None or a "
                                               r"number of seconds > 0$"):
        TrialConfig.from_dict(data)
    assert TrialConfig.from_dict({**data, "simulate": None}).context.simulate is None


TORCH_MODULES = ("torch", "torchvision", "residual.network", "residual.units",
                 "residual.shortcuts", "residual.propagation", "search.trial.loop",
                 "search.trial.directory", "search.trial.data")


def test_the_simulated_path_imports_no_torch(tmp_path):
    """What a worker of a simulated trial imports: the trainable, Ray Tune, the trial."""
    code = f"""
import sys
import search.trainable
from ray import tune
from search.trial import RunOptions, TrialConfig, TrialContext, configuration_key
from search.trial.simulated import run_simulated_trial
from spaces import load_space
space = load_space("paper-joint", "small")
plan = space.plan(space.anchors[0], "small")
context = TrialContext(work_root={str(tmp_path)!r}, simulate=0.001, options=RunOptions())
result = run_simulated_trial(TrialConfig(plan, 0, configuration_key(plan), context))
assert result.outcome == "ok", result
print(" ".join(sorted(sys.modules)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(done.stdout.split())
    assert "search.trial.simulated" in loaded and "ray.tune" in loaded
    assert not loaded & set(TORCH_MODULES), sorted(loaded & set(TORCH_MODULES))
