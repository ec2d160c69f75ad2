"""Shortcut kinds seen from the spaces: light imports, Table 1 rows as anchors that round-trip,
sampling within each kind's declared ranges, and the built-in spaces kept to the paper's six."""

import subprocess
import sys

import optuna
import pytest

from residual import (
    SHORTCUT_KINDS,
    SHORTCUTS,
    Param,
    ShortcutKind,
    UnitSpec,
    register_shortcut_kind,
    unregister_shortcut_kind,
)
from residual.paper import TABLE1
from spaces import ONE_MINUS_LAMBDA, SearchSpace, load_space, suggest_shortcut
from spaces.builtin import table1_anchor
from spaces.space import UNIT_KEYS

# Torch-free: the spaces never build a network, so a kind needs no module here.
HALVED = ShortcutKind("halved", "y = lam * x + F(x), lam in [0, 1]", "a test's own",
                      params=(Param("lam", 0.5, low=0.0, high=1.0, search=(0.0, 1.0)),),
                      label="-h{lam:g}")


@pytest.fixture
def halved():
    register_shortcut_kind(HALVED)
    yield HALVED
    unregister_shortcut_kind(HALVED.name)


@pytest.mark.parametrize("module", ["spaces", "residual"])
def test_import_loads_neither_torch_nor_optuna(module):
    code = f"import sys, {module}; print(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded = set(done.stdout.split())
    assert module in loaded
    assert not {"torch", "optuna"} & loaded


def test_the_torch_names_of_residual_load_on_first_use():
    code = ("import sys, residual; assert 'torch' not in sys.modules; "
            "from residual import build_network, ResNet, count_parameters; "
            "assert 'torch' in sys.modules and callable(build_network); "
            "assert set(residual.__all__) <= set(dir(residual))")
    subprocess.run([sys.executable, "-c", code], timeout=120, check=True)


@pytest.mark.parametrize("row", TABLE1, ids=[row.label for row in TABLE1])
def test_every_table1_row_round_trips_through_the_space(row):
    anchor = SHORTCUT_KINDS[row.unit.shortcut].to_search_params(row.unit)
    assert anchor == table1_anchor(row.unit)
    plan = load_space("paper-table1", "full").plan(anchor, "full")
    assert plan.net.unit == row.unit


def test_frozen_gating_row_is_searched_as_one_minus_lambda():
    row = next(r for r in TABLE1 if r.label == "constant scaling lambda=0.5 s=0.5")
    assert table1_anchor(row.unit) == {"shortcut": "scaling", "lam": 0.5,
                                       "branch_scale": ONE_MINUS_LAMBDA}
    dropout = next(r for r in TABLE1 if r.unit.shortcut == "dropout")
    assert table1_anchor(dropout.unit) == {"shortcut": "dropout", "dropout_p": 0.5}
    rescaled = UnitSpec("dropout", dropout_rescale=True)  # not searched, but not the default
    assert load_space("paper-table1").plan(table1_anchor(rescaled)).net.unit == rescaled


def test_unit_keys_are_the_unitspec_fields():
    assert UNIT_KEYS == ("shortcut", "activation", "lam", "branch_scale", "gate_bias",
                         "dropout_p", "dropout_rescale", "bottleneck")


def test_suggest_shortcut_samples_within_each_kinds_declared_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(60):
        trial = study.ask()
        shortcut = suggest_shortcut(trial)
        seen.add(shortcut)
        kind = SHORTCUT_KINDS[shortcut]
        assert set(trial.params) == {"shortcut"} | {p.name for p in kind.params if p.searched}
        for param in kind.params:
            if param.search is not None:
                low, high = param.search
                assert low <= trial.params[param.name] <= high
            elif param.choices is not None:
                assert trial.params[param.name] in param.choices
        study.tell(trial, 0.0)
    assert seen == set(SHORTCUTS)


def test_a_registered_kind_stays_out_of_the_builtin_spaces(halved):
    for name in ("paper-table1", "paper-joint"):
        study = optuna.create_study()
        trial = study.ask()
        load_space(name, "smoke").suggest(trial)
        assert trial.distributions["shortcut"].choices == SHORTCUTS


def test_a_users_space_searches_a_registered_kind(halved):
    def define(trial):
        suggest_shortcut(trial, ["identity", halved])

    space = SearchSpace("mine", define, anchors=[{"shortcut": "halved", "lam": 0.25}])
    space.check("smoke", samples=16)
    plan = space.plan({"shortcut": "halved", "lam": 0.25}, "smoke")
    assert plan.net.unit == UnitSpec("halved", lam=0.25)
    assert plan.net.name == "resnet8-halved-h0.25-original"
    with pytest.raises(ValueError, match="'nope' is not registered"):
        suggest_shortcut(optuna.create_study().ask(), ["identity", "nope"])
