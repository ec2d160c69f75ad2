"""Eq. 4, 5 and 8 checked exactly on real networks, and the measurement contract."""

import math

import pytest
import torch

from residual import NetSpec, UnitSpec, build_network
from residual.propagation import (
    PropagationProfile,
    measure_propagation,
    plot_propagation,
    trace_units,
)
from residual.variants import list_variants

DEPTH = 26  # n = 4 units per stage


def _net(unit, depth=DEPTH, width=8):
    torch.manual_seed(0)
    return build_network(NetSpec(depth, unit, width=width))


def _batch(n=16, size=16):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


def _stage_runs(net):
    """(first, last) unit indices of each stage, the stage's first (reshaping) unit excluded."""
    runs = {}
    for index, stage in enumerate(net.stage_of_unit):
        runs.setdefault(stage, []).append(index)
    return [(units[1], units[-1]) for units in runs.values()]


def test_eq4_forward_unrolls_to_a_sum_of_residuals():
    net = _net(UnitSpec("identity", "full_preact"))
    images, _ = _batch()
    with torch.no_grad():
        trace = trace_units(net, images)
    outputs = trace.inputs[1:] + [trace.output]
    for first, last in _stage_runs(net):
        for l in range(first, last + 1):
            x_l, x_L = trace.inputs[l], outputs[last]
            residual_sum = sum(trace.terms[i].branch for i in range(l, last + 1))
            assert torch.allclose(x_L - x_l, residual_sum, atol=1e-4, rtol=1e-5)


def test_eq4_does_not_hold_with_relu_after_addition():
    net = _net(UnitSpec("identity", "original"))
    images, _ = _batch()
    with torch.no_grad():
        trace = trace_units(net, images)
    first, last = _stage_runs(net)[0]
    residual_sum = sum(trace.terms[i].branch for i in range(first, last + 1))
    assert not torch.allclose(trace.inputs[last + 1] - trace.inputs[first], residual_sum,
                              atol=1e-3)


def test_eq5_direct_path_share_is_one_within_a_stage():
    net = _net(UnitSpec("identity", "full_preact"))
    profile = measure_propagation(net, *_batch())
    last_stage_first, last = _stage_runs(net)[-1]
    for l in range(last_stage_first, last + 1):
        assert profile.direct_path_share[l] == pytest.approx(1.0, abs=1e-6)
    # Inside every earlier stage the share is constant: nothing on the direct path scales it.
    for first, last in _stage_runs(net)[:-1]:
        shares = profile.direct_path_share[first: last + 2]
        assert max(shares) - min(shares) < 1e-5 * max(shares)


@pytest.mark.parametrize("lam", [0.5, 0.8])
def test_eq8_constant_scaling_share_is_the_product_of_lambdas(lam):
    net = _net(UnitSpec("scaling", "full_preact", lam=lam, branch_scale=1.0))
    profile = measure_propagation(net, *_batch())
    first, last = _stage_runs(net)[-1]
    L = net.spec.num_units
    for l in range(first, last + 1):
        assert profile.direct_path_share[l] == pytest.approx(lam ** (L - l), rel=1e-5)


def test_eq8_with_zero_lambda_the_direct_path_is_gone():
    profile = measure_propagation(_net(UnitSpec("scaling", "full_preact", lam=0.0)), *_batch())
    assert all(share == 0.0 for share in profile.direct_path_share[:-1])


def test_gate_carry_follows_the_gate_bias():
    closed = measure_propagation(_net(UnitSpec("exclusive_gate", gate_bias=-6.0)), *_batch())
    open_ = measure_propagation(_net(UnitSpec("exclusive_gate", gate_bias=0.0)), *_batch())
    assert min(closed.gate_carry) > 0.95  # sigmoid(-6) ~ 0.0025: the shortcut carries x
    assert sum(open_.gate_carry) / len(open_.gate_carry) < 0.9
    assert measure_propagation(_net(UnitSpec()), *_batch()).gate_carry is None


@pytest.mark.parametrize("bottleneck", [False, True])
def test_measurement_contract_for_every_variant(bottleneck):
    images, labels = _batch(8, 8)
    for name, unit in list_variants(bottleneck).items():
        net = _net(unit, depth=11 if bottleneck else 8, width=4)
        state = {k: v.clone() for k, v in net.state_dict().items()}
        net.eval()
        rng = torch.get_rng_state()
        profile = measure_propagation(net, images, labels)
        assert torch.equal(rng, torch.get_rng_state()), name
        assert not net.training, f"{name}: mode not restored"
        assert all(torch.equal(state[k], v) for k, v in net.state_dict().items()), name
        assert all(p.grad is None for p in net.parameters()), f"{name}: wrote gradients"
        n = net.spec.num_units
        for field in ("input_norm", "grad_norm", "shortcut_branch_ratio",
                      "direct_path_share"):
            values = getattr(profile, field)
            assert len(values) == n and all(math.isfinite(v) for v in values), (name, field)
        assert (profile.gate_carry is not None) == unit.gated, name
        assert math.isfinite(profile.loss) and all(math.isfinite(v)
                                                   for v in profile.summary().values())
        assert PropagationProfile.from_dict(profile.to_dict()) == profile


def test_plot_writes_a_png(tmp_path):
    images, labels = _batch()
    profiles = {name: measure_propagation(_net(unit), images, labels) for name, unit in [
        ("identity", UnitSpec("identity", "full_preact")),
        ("gate", UnitSpec("exclusive_gate", gate_bias=-6.0)),
    ]}
    path = plot_propagation(profiles, tmp_path / "propagation.png", title="two variants")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.parametrize("unit", [
    UnitSpec("exclusive_gate", "original", gate_bias=-6.0),
    UnitSpec("identity", "full_preact"),
    UnitSpec("scaling", "full_preact", lam=0.99),
], ids=["exclusive_gate", "identity", "scaling"])
def test_bf16_keeps_the_shortcut_arithmetic_of_fp32(unit):
    """54 units (ResNet-110) under bf16 autocast: each gate's carry 1 - g and the direct-path
    share of Eq. 5/8 stay those of fp32, because the shortcut runs in fp32 (in bf16 itself,
    1 - g at b_g = -6 would be 0.99609 instead of 0.99753: a carry of 0.81, not 0.875)."""
    torch.manual_seed(0)
    net = build_network(NetSpec(110, unit, width=4))
    images, labels = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    fp32 = measure_propagation(net, images, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = measure_propagation(net, images, labels)
    assert fp32.num_units == 54
    if unit.gated:  # the carry of each gate, and of all 54
        assert 0.8 < math.prod(fp32.gate_carry) < 0.9
        assert bf16.gate_carry == pytest.approx(fp32.gate_carry, rel=1e-3)
        assert math.prod(bf16.gate_carry) == pytest.approx(math.prod(fp32.gate_carry), rel=1e-3)
        return
    # Inside the last stage (after its stride-2 unit): Eq. 5's 1, Eq. 8's prod(lambda).
    expected = 0.99 ** 17 if unit.shortcut == "scaling" else 1.0
    assert fp32.direct_path_share[-17] == pytest.approx(expected, rel=1e-5)
    # Across a stage's zero-padded subsampling the share also depends on where dE/dx_L puts
    # its mass (forward values, which the bf16 branches do change): compare within the stage.
    assert bf16.direct_path_share[-17:] == pytest.approx(fp32.direct_path_share[-17:], rel=1e-3)
