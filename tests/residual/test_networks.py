"""Networks: the paper's parameter counts and one contract test over every registered variant."""

import pytest
import torch

from residual import NetSpec, UnitSpec, build_network, count_parameters
from residual.variants import list_variants


def _count_on_meta(depth, bottleneck):
    with torch.device("meta"):
        return count_parameters(build_network(NetSpec(depth, UnitSpec(bottleneck=bottleneck))))


@pytest.mark.parametrize("depth, bottleneck, paper", [
    (110, False, 1.7e6),   # Table 3 / Sec. 4: ResNet-110, zero-padded shortcuts
    (164, True, 1.7e6),    # ResNet-164 bottleneck
    (1001, True, 10.2e6),  # ResNet-1001 bottleneck
    (20, False, 0.27e6),   # He et al. 2015 Table 6
])
def test_parameter_counts_match_the_paper(depth, bottleneck, paper):
    assert abs(_count_on_meta(depth, bottleneck) - paper) / paper < 0.02


def test_resnet1001_runs_forward_on_a_tiny_input():
    torch.manual_seed(0)
    net = build_network(NetSpec(1001, UnitSpec("identity", "full_preact", bottleneck=True),
                                width=4, num_classes=10))
    assert len(net.units) == 333
    with torch.no_grad():
        out = net.eval()(torch.randn(1, 3, 8, 8))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


VARIANTS = [(name, spec) for bottleneck in (False, True)
            for name, spec in list_variants(bottleneck).items()]


@pytest.mark.parametrize("name, unit", VARIANTS,
                         ids=[f"{'bottleneck' if u.bottleneck else 'basic'}-{n}"
                              for n, u in VARIANTS])
def test_contract_every_variant(name, unit):
    torch.manual_seed(0)
    depth = 11 if unit.bottleneck else 8
    net = build_network(NetSpec(depth, unit, width=4, num_classes=5, in_channels=2))
    images = torch.randn(4, 2, 8, 8)

    out = net.train()(images)
    assert out.shape == (4, 5)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None, f"{param_name} gets no gradient"
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, f"{param_name} gets a zero gradient"

    net.eval()
    with torch.no_grad():
        assert torch.equal(net(images), net(images)), "eval output must be deterministic"
        first, second = net.train()(images), net(images)
    if unit.shortcut == "dropout":
        assert not torch.equal(first, second), "train-mode dropout shortcut must be random"
    else:
        assert torch.equal(first, second)


def test_dropout_shortcut_expectation():
    """The paper's reading: expectation 1-p in training, (1-p) * x at evaluation."""
    x = torch.ones(200_000)
    for rescale, expected in ((False, 0.5), (True, 1.0)):
        shortcut = build_network(NetSpec(8, UnitSpec("dropout", dropout_rescale=rescale))
                                 ).units[0].shortcut
        train_mean = shortcut.train()(x, x)[0].mean().item()
        assert abs(train_mean - expected) < 0.01
        assert torch.allclose(shortcut.eval()(x, x)[0], x * expected)


def test_same_seed_same_initialisation():
    spec = NetSpec(8, UnitSpec("exclusive_gate", gate_bias=-3.0))
    torch.manual_seed(3)
    a = build_network(spec).state_dict()
    torch.manual_seed(3)
    b = build_network(spec).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
