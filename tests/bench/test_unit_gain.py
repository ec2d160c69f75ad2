"""The unit-gain benchmark skips exactly the multiplies by 1.0, and nothing changes but time."""

import torch

from bench.common import parse_figures
from bench.unit_gain import main, unit_gain_skipped
from residual import NetSpec, UnitSpec, build_network


def net(shortcut, **unit):
    return build_network(NetSpec(depth=8, unit=UnitSpec(shortcut=shortcut, **unit), width=4))


def test_only_a_gain_of_one_is_skipped_and_the_output_is_the_same():
    x = torch.randn(4, 3, 8, 8)
    for model in (net("identity"), net("scaling", lam=0.5, branch_scale=0.5)):
        expected = model(x)
        with unit_gain_skipped(model) as units:
            assert units == 3
            assert torch.equal(model(x), expected)
        assert all("forward" not in vars(m.shortcut) for m in model.units)


def test_script_prints_the_saving(capsys):
    assert main(["--rounds", "1", "--steps", "1"]) == 0
    figures = parse_figures(capsys.readouterr().out)
    assert figures["unit_gain.same_losses"][0] == "1"
    assert float(figures["unit_gain.with_ms"][0]) > 0
