"""The unit skips exactly the multiplies by 1.0, and nothing changes but time."""

import torch

from bench.common import parse_figures
from bench.unit_gain import main, unit_gain_forced
from residual import NetSpec, UnitSpec, build_network


def net(shortcut, **unit):
    return build_network(NetSpec(depth=8, unit=UnitSpec(shortcut=shortcut, **unit), width=4))


def test_only_a_gain_of_one_is_skipped_and_the_output_is_the_same():
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    for model, gain_one in ((net("identity"), True),
                            (net("scaling", lam=0.5, branch_scale=0.5), False)):
        expected = model(x)
        (grad,) = torch.autograd.grad(expected.sum(), x)
        # The unit returns F itself for a gain of 1.0: no multiply in its autograd graph.
        branch = model.units[0].terms(torch.randn(4, 4, 8, 8)).branch
        assert (type(branch.grad_fn).__name__ != "MulBackward0") == gain_one
        with unit_gain_forced(model) as units:
            assert units == 3
            forced = model(x)
            assert torch.equal(forced, expected)
            assert torch.equal(torch.autograd.grad(forced.sum(), x)[0], grad)
        assert all("forward" not in vars(m.shortcut) for m in model.units)


def test_script_prints_the_saving(capsys):
    assert main(["--rounds", "1", "--steps", "1"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    assert figures["unit_gain.same_losses"][0] == "1"
    assert float(figures["unit_gain.with_ms"][0]) > 0
