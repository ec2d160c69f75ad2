"""Structure: each unit computes exactly the paper's formula (Table 1 rows x Table 2 rows),
pre-activation nets carry the appendix extras, projections read the pre-activated input."""

import pytest
import torch
from torch import nn

from residual import ACTIVATIONS, NetSpec, UnitSpec, build_network

relu = torch.relu


def _basic_unit(activation, shortcut="identity", index=1, **unit):
    torch.manual_seed(0)
    net = build_network(NetSpec(14, UnitSpec(shortcut, activation, **unit), width=4))
    net.train()
    return net, net.units[index]


def _layers(unit):
    """The residual branch's modules by role: convs W1, W2 and the BNs between/after them."""
    convs = [m for m in unit.residual if isinstance(m, nn.Conv2d)]
    bns = [m for m in unit.residual if isinstance(m, nn.BatchNorm2d)]
    return convs, bns


# Paper Table 2, written out with the unit's own layers (x: unit input, W1/W2 convs).
FORMULAS = {
    "original": lambda u, W, B, x: relu(x + B[1](W[1](relu(B[0](W[0](x)))))),
    "bn_after_add": lambda u, W, B, x: relu(u.after_add[0](x + W[1](relu(B[0](W[0](x)))))),
    "relu_before_add": lambda u, W, B, x: x + relu(B[1](W[1](relu(B[0](W[0](x)))))),
    "relu_preact": lambda u, W, B, x: x + B[1](W[1](relu(B[0](W[0](relu(x)))))),
    "full_preact": lambda u, W, B, x: x + W[1](relu(B[0](W[0](relu(u.branch_start[0](x)))))),
}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_unit_computes_table2_formula(activation):
    _, unit = _basic_unit(activation)
    convs, bns = _layers(unit)
    assert len(convs) == 2
    x = torch.randn(3, 4, 6, 6)
    expected = FORMULAS[activation](unit, convs, bns, x)
    assert torch.allclose(unit(x), expected, atol=1e-6)


def _branch(unit, x):
    return unit.residual(unit.branch_start(x))


def _gate(unit, x):
    return torch.sigmoid(unit.shortcut.gate.conv(x))


# Paper Table 1 with full pre-activation (identity f), so y is the unit's output.
SHORTCUT_FORMULAS = {
    "identity": ({}, lambda u, x: x + _branch(u, x)),
    "scaling": ({"lam": 0.3, "branch_scale": 0.7}, lambda u, x: 0.3 * x + 0.7 * _branch(u, x)),
    "exclusive_gate": ({"gate_bias": -2.0},
                       lambda u, x: (1 - _gate(u, x)) * x + _gate(u, x) * _branch(u, x)),
    "shortcut_gate": ({"gate_bias": -2.0},
                      lambda u, x: (1 - _gate(u, x)) * x + _branch(u, x)),
    "conv1x1": ({}, lambda u, x: u.shortcut.bn(u.shortcut.conv(x)) + _branch(u, x)),
}


@pytest.mark.parametrize("shortcut", list(SHORTCUT_FORMULAS))
def test_unit_computes_table1_formula(shortcut):
    params, formula = SHORTCUT_FORMULAS[shortcut]
    _, unit = _basic_unit("full_preact", shortcut, **params)
    x = torch.randn(3, 4, 6, 6)
    assert torch.allclose(unit(x), formula(unit, x), atol=1e-6)


def test_dropout_shortcut_masks_x_without_rescaling():
    _, unit = _basic_unit("full_preact", "dropout", dropout_p=0.5)
    x = torch.rand(3, 4, 6, 6) + 1.0
    unit.eval()
    assert torch.allclose(unit(x), 0.5 * x + _branch(unit, x), atol=1e-6)
    unit.train()
    torch.manual_seed(1)
    kept = unit(x) - _branch(unit, x)
    # Each element of x is either dropped or kept unscaled: never the 1/(1-p) = 2x of PyTorch.
    assert torch.all(torch.isclose(kept, x, atol=1e-5) | torch.isclose(kept, 0 * x, atol=1e-5))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("bottleneck", [False, True])
def test_final_bn_relu_exactly_for_preactivation_nets(activation, bottleneck):
    net = build_network(NetSpec(11 if bottleneck else 8, UnitSpec(activation=activation,
                                                                  bottleneck=bottleneck)))
    kinds = [type(m) for m in net.final]
    stem_kinds = [type(m) for m in net.stem]
    assert stem_kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    if activation in ("relu_preact", "full_preact"):
        assert kinds == [nn.BatchNorm2d, nn.ReLU]
        assert len(net.units[0].branch_start) == 0, "stem BN+ReLU is the first pre-activation"
        expected_start = 2 if activation == "full_preact" else 1
        assert all(len(u.branch_start) == expected_start for u in net.units[1:])
    else:
        assert kinds == []
        assert all(len(u.branch_start) == 0 for u in net.units)


def test_final_bn_relu_changes_the_output():
    """A port without the final BN+ReLU computes something else: this test would see it."""
    torch.manual_seed(0)
    net = build_network(NetSpec(8, UnitSpec(activation="full_preact"))).eval()
    x = torch.randn(2, 3, 8, 8)
    with_final = net(x)
    without = net.fc(net.pool(_features_without_final(net, x)).flatten(1))
    assert not torch.allclose(with_final, without)


def _features_without_final(net, x):
    x = net.stem(x)
    for unit in net.units:
        x = unit(x)
    return x


@pytest.mark.parametrize("activation", ["relu_preact", "full_preact"])
def test_projection_reads_the_preactivated_input(activation):
    torch.manual_seed(0)
    net = build_network(NetSpec(20, UnitSpec(activation=activation, bottleneck=True), width=4))
    assert net.spec.downsample == "projection"
    unit = net.units[2]  # first unit of stage 2: stride 2, 16 -> 32 channels
    assert unit.stride == 2
    # Full pre-activation shares its BN+ReLU with the projection; ReLU-only pre-activation
    # shares its ReLU, and the projection of that unnormalised input takes its own BN.
    if activation == "relu_preact":
        assert [type(m) for m in unit.reshape] == [nn.Conv2d, nn.BatchNorm2d]
    else:
        assert isinstance(unit.reshape, nn.Conv2d)
    conv = unit.reshape if isinstance(unit.reshape, nn.Conv2d) else unit.reshape[0]
    seen = {}
    conv.register_forward_hook(lambda m, inp, out: seen.update(input=inp[0]))
    x = torch.randn(2, unit.in_channels, 8, 8)
    unit(x)
    assert torch.equal(seen["input"], unit.branch_start(x))
    assert not torch.equal(seen["input"], x)


def test_projection_after_raw_input_has_its_own_bn():
    net = build_network(NetSpec(20, UnitSpec(bottleneck=True), width=4))
    kinds = [type(m) for m in net.units[2].reshape]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d]


def test_zero_pad_is_parameter_free_subsampled_identity():
    net = build_network(NetSpec(8, UnitSpec(activation="full_preact"), width=4))
    unit = net.units[1]
    assert list(unit.reshape.parameters()) == []
    x = torch.randn(2, 4, 8, 8)
    padded = unit.reshape(x)
    assert padded.shape == (2, 8, 4, 4)
    assert torch.equal(padded[:, :4], x[:, :, ::2, ::2])
    assert torch.count_nonzero(padded[:, 4:]) == 0


@pytest.mark.parametrize("shortcut", ["exclusive_gate", "shortcut_gate"])
def test_gate_bias_initialised_to_gate_bias(shortcut):
    net = build_network(NetSpec(20, UnitSpec(shortcut, gate_bias=-6.0)))
    biases = [u.shortcut.gate.conv.bias for u in net.units]
    assert len(biases) == 9
    assert all(torch.all(b == -6.0) for b in biases)
    # Where a stage widens, the gate has the unit's stride and output channels.
    first_of_stage2 = net.units[3].shortcut.gate.conv
    assert first_of_stage2.stride == (2, 2) and first_of_stage2.out_channels == 32


def test_bottleneck_unit_orders_three_weight_layers():
    net = build_network(NetSpec(11, UnitSpec(activation="original", bottleneck=True), width=4))
    unit = net.units[0]
    kinds = [type(m).__name__ for m in unit.residual]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "ReLU",
                     "Conv2d", "BatchNorm2d"]
    sizes = [m.kernel_size for m in unit.residual if isinstance(m, nn.Conv2d)]
    assert sizes == [(1, 1), (3, 3), (1, 1)] and unit.out_channels == 16


def test_he_initialisation_of_convs():
    torch.manual_seed(0)
    net = build_network(NetSpec(56, UnitSpec(), width=16))
    conv = net.units[20].residual[0]
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert abs(conv.weight.std().item() - (2 / fan_out) ** 0.5) < 0.05 * (2 / fan_out) ** 0.5
