"""A new shortcut, declared in the tests only (tests/conftest.py, as a user would in their own
file), goes everywhere a paper shortcut goes: spec validation, a network, its label, the
propagation measurements, a conditional search space and a real trial. No project file names
it."""

import math

import optuna
import pytest
import torch

from residual import SHORTCUT_KINDS, NetSpec, UnitSpec, build_network
from residual.propagation import measure_propagation
from search.trial import RunOptions, load_trial_data, run_trial
from spaces import SearchSpace


def define(trial):
    shortcut = trial.suggest_categorical("shortcut", ["identity", "learned_lambda"])
    if shortcut == "learned_lambda":
        SHORTCUT_KINDS["learned_lambda"].suggest(trial)  # lam, in the kind's search range


def test_a_new_shortcut_goes_through_the_whole_platform(learned_lambda, tmp_path):
    # Validation: its parameter, its default, its range, and nobody else's parameters.
    assert UnitSpec("learned_lambda").lam == 0.5
    with pytest.raises(ValueError, match="UnitSpec.lam=3.0 is invalid"):
        UnitSpec("learned_lambda", lam=3.0)
    with pytest.raises(ValueError, match="UnitSpec.gate_bias"):
        UnitSpec("learned_lambda", gate_bias=-6.0)

    # A network and its label.
    spec = NetSpec(20, UnitSpec("learned_lambda", "full_preact", lam=0.8), width=4)
    assert spec.name == "resnet20-learned_lambda-ll0.8-full_preact"
    torch.manual_seed(0)
    net = build_network(spec)
    assert all(unit.shortcut.alpha.item() == pytest.approx(0.8) for unit in net.units)

    # Propagation: at initialisation the direct path inside a stage is prod(alpha) (Eq. 8).
    profile = measure_propagation(net, torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,)))
    assert profile.direct_path_share[-1] == pytest.approx(0.8, rel=1e-5)
    assert profile.direct_path_share[-2] == pytest.approx(0.8 ** 2, rel=1e-5)

    # A conditional search space: lam exists only when the new shortcut is chosen.
    space = SearchSpace("mine", define, fixed={"activation": "full_preact"},
                        anchors=[{"shortcut": "learned_lambda", "lam": 0.3}])
    space.check("smoke")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    space.enqueue_anchors(study)
    sampled = [space.suggest(study.ask()) for _ in range(12)]
    assert sampled[0] == {"shortcut": "learned_lambda", "lam": 0.3}
    for params in sampled:
        assert ("lam" in params) == (params["shortcut"] == "learned_lambda")
        assert 0.1 <= params.get("lam", 0.1) <= 1.0

    # A real trial: it trains, and the learned lambdas moved.
    plan = space.plan({**sampled[0], "epochs": 2}, "smoke")
    data = load_trial_data(plan.recipe, "digits")
    result = run_trial(plan, data, tmp_path, options=RunOptions(device="cpu", threads=1))
    assert result.outcome == "ok" and result.epochs == 2
    assert math.isfinite(result.metrics["val_error"]) and result.metrics["val_error"] < 0.9
    weights = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    alphas = [v.item() for k, v in weights.items() if k.endswith("shortcut.alpha")]
    assert len(alphas) == 3 and any(abs(a - 0.3) > 1e-4 for a in alphas)
