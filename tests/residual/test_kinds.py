"""Shortcut kinds and placements as declarations: one contract over every registered kind, and
a kind declared outside the project (tests/conftest.py) and a placement declared here,
working end to end."""

import math
import re

import pytest
import torch
from torch import nn

from residual import (
    SHORTCUT_KINDS,
    SHORTCUTS,
    NetSpec,
    Param,
    Placement,
    ShortcutKind,
    UnitSpec,
    build_network,
    register_placement,
    register_shortcut_kind,
    unregister_placement,
    unregister_shortcut_kind,
)
from residual.kinds import SHORTCUT_PARAMS
from residual.placements import PLACEMENTS
from residual.shortcuts import (
    SHORTCUT_REGISTRY,
    Shortcut,
    register_shortcut,
    unregister_shortcut,
)
from residual.variants import list_variants


def _outside(param):
    """A value just outside what the parameter accepts."""
    if param.is_flag:
        return "yes"
    if param.high is not None:
        return param.high if param.high_open else param.high + 1
    if param.low is not None:
        return param.low - 1
    return math.inf


def check_kind_contract(kind):
    defaults = UnitSpec(kind.name)
    for param in kind.params:
        assert getattr(defaults, param.name) == param.default, param.name
        with pytest.raises(ValueError) as info:
            UnitSpec(kind.name, **{param.name: _outside(param)})
        message = str(info.value)
        assert "\n" not in message and f"UnitSpec.{param.name}=" in message
        assert f"allowed: {param.allowed}" in message
    for name in set(SHORTCUT_PARAMS) - set(kind.param_names):
        assert getattr(defaults, name) is None
        with pytest.raises(ValueError, match=f"UnitSpec.{name}=.*shortcut={kind.name!r}"):
            UnitSpec(kind.name, **{name: 0.5})
    fragment = kind.label_fragment(defaults)
    assert NetSpec(8, defaults).name == f"resnet8-{kind.name}{fragment}-original"
    assert all(isinstance(param.default, (float, bool)) for param in kind.params)


@pytest.mark.parametrize("name", list(SHORTCUT_KINDS))
def test_contract_every_registered_kind(name):
    check_kind_contract(SHORTCUT_KINDS[name])


def test_shortcuts_lists_the_papers_six():
    assert SHORTCUTS == ("identity", "scaling", "exclusive_gate", "shortcut_gate", "conv1x1",
                         "dropout")
    assert [k.name for k in SHORTCUT_KINDS.values() if k.gated] == ["exclusive_gate",
                                                                    "shortcut_gate"]


def test_a_kind_declared_outside_the_project_works_end_to_end(learned_lambda):
    check_kind_contract(learned_lambda)
    unit = UnitSpec("learned_lambda", "full_preact", lam=0.25)
    assert unit.lam == 0.25 and not unit.gated
    spec = NetSpec(8, unit, width=4, num_classes=3)
    assert spec.name == "resnet8-learned_lambda-ll0.25-full_preact"
    assert NetSpec.from_dict(spec.to_dict()) == spec
    torch.manual_seed(0)
    net = build_network(spec)
    assert all(u.shortcut.alpha.item() == 0.25 for u in net.units)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(u.shortcut.alpha.grad is not None for u in net.units)
    assert "learned_lambda+original" in list_variants()
    with pytest.raises(ValueError, match=re.escape("only used by exclusive_gate | shortcut_gate)")):
        UnitSpec("learned_lambda", gate_bias=-1.0)


def test_a_test_kind_does_not_outlive_its_test(learned_lambda):
    assert learned_lambda.name in SHORTCUT_KINDS and learned_lambda.name in SHORTCUT_REGISTRY


def test_after_the_fixture_only_the_papers_kinds_remain():
    assert tuple(SHORTCUT_KINDS) == tuple(SHORTCUT_REGISTRY) == SHORTCUTS
    with pytest.raises(ValueError, match="shortcut='learned_lambda'"):
        UnitSpec("learned_lambda")


def test_registration_refuses_what_would_shadow_or_skip_a_declaration(learned_lambda):
    register_shortcut_kind(learned_lambda)  # the same declaration again: its file imported twice
    other = ShortcutKind("learned_lambda", "y = x", "nowhere")
    with pytest.raises(ValueError, match="already registered"):
        register_shortcut_kind(other)
    with pytest.raises(ValueError, match="stays registered"):
        unregister_shortcut_kind("identity")
    with pytest.raises(ValueError, match="stays registered"):
        unregister_shortcut("identity")
    with pytest.raises(ValueError, match="no declared kind"):
        register_shortcut("highway")
    with pytest.raises(ValueError, match="already has its module"):
        register_shortcut("identity")(type("Another", (Shortcut,), {}))


def test_a_declared_kind_without_a_module_fails_at_build_not_at_spec():
    kind = register_shortcut_kind(ShortcutKind("paper_only", "y = x + F(x)", "nowhere"))
    try:
        spec = NetSpec(8, UnitSpec("paper_only"))
        with pytest.raises(ValueError, match="'paper_only' is declared but has no module"):
            build_network(spec)
    finally:
        unregister_shortcut_kind(kind.name)


@pytest.mark.parametrize("make, message", [
    (lambda: Param("alpha", 1.0), "Param.name='alpha'"),
    (lambda: Param("lam", 3.0, low=0.0, high=2.0), "Param.default.lam=3.0"),
    (lambda: Param("lam", 1.0, low=0.0, high=2.0, search=(0.0, 5.0)), "Param.search.lam=5.0"),
    (lambda: Param("dropout_rescale", False, low=0.0), "a True | False flag has no range"),
    (lambda: ShortcutKind("x", "y", "z", label="-{gate_bias:g}"), "ShortcutKind.label"),
    (lambda: ShortcutKind("x", "y", "z", params=(Param("lam", 1.0), Param("lam", 1.0))),
     "each UnitSpec field once"),
])
def test_a_bad_declaration_fails_where_it_is_written(make, message):
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_placement_declared_outside_the_project_works_end_to_end():
    placement = register_placement(Placement(
        "relu_both", "ReLU(x + ReLU(BN(W2 ReLU(BN(W1 x)))))",
        branch_start=(), branch_end=("bn", "relu"), after_add=("relu",)))
    try:
        spec = NetSpec(8, UnitSpec(activation="relu_both"), width=4)
        assert spec.name == "resnet8-identity-relu_both" and not placement.preactivation
        net = build_network(spec)
        assert [type(m) for m in net.units[0].after_add] == [nn.ReLU]
        assert torch.isfinite(net(torch.randn(2, 3, 8, 8))).all()
        with pytest.raises(ValueError, match="already registered"):
            register_placement(placement)
    finally:
        unregister_placement("relu_both")
    assert "relu_both" not in PLACEMENTS
    with pytest.raises(ValueError, match="UnitSpec.activation='relu_both'"):
        UnitSpec(activation="relu_both")
    with pytest.raises(ValueError, match="stays registered"):
        unregister_placement("original")
    bad_op = "Placement.after_add='gelu' is invalid; allowed: bn | relu"
    with pytest.raises(ValueError, match=re.escape(bad_op)):
        Placement("gelu_after", "x", (), (), ("gelu",))
