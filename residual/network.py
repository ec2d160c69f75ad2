"""CIFAR-style residual networks built from a `NetSpec` (paper Sec. 4-5, appendix).

stem 3x3 conv + BN + ReLU -> 3 stages of n units (maps 1, 1/2, 1/4; widths w, 2w, 4w, times 4
at bottleneck outputs) -> [BN + ReLU for pre-activation nets] -> global average pool -> linear.

For pre-activation units the stem's BN+ReLU is the first unit's pre-activation, moved before
the split, and the final BN+ReLU follows the last addition: the two appendix extras. A common
public port omits the final one; `tests/residual/test_structure.py` catches that.
"""

from __future__ import annotations

from torch import Tensor, nn

from .placements import PLACEMENTS
from .shortcuts import Shortcut
from .specs import NetSpec
from .units import ResidualUnit, bn_relu_ops, conv3x3


class ResNet(nn.Module):
    """x_L = units(stem(x)), logits = head(x_L) (paper Eq. 1-2 stacked; Sec. 4, appendix)."""

    def __init__(self, spec: NetSpec):
        super().__init__()
        self.spec = spec
        unit = spec.unit
        preactivation = PLACEMENTS[unit.activation].preactivation
        self.stem = nn.Sequential(conv3x3(spec.in_channels, spec.width),
                                  *bn_relu_ops(("bn", "relu"), spec.width))

        units: list[ResidualUnit] = []
        self.stage_of_unit: list[int] = []
        channels = spec.width
        for stage in range(3):
            width = spec.width * 2**stage
            for index in range(spec.units_per_stage):
                block = ResidualUnit(unit, channels, width, stride=2 if stage and not index else 1,
                                     downsample=spec.downsample,
                                     stem_activated=preactivation and not units)
                units.append(block)
                self.stage_of_unit.append(stage)
                channels = block.out_channels
        self.units = nn.ModuleList(units)

        self.final = bn_relu_ops(("bn", "relu") if preactivation else (), channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, spec.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming normal, fan-out) convs, unit BN, then each shortcut's own values (a
        gate's b_g, Table 1)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():  # after the convs: a gate's conv bias is b_g, not 0
            if isinstance(module, Shortcut):
                module.reset_parameters()

    def head(self, x_last: Tensor) -> Tensor:
        """Logits from x_L, the last unit's output: [final BN+ReLU], pool, linear. Shared by
        `forward` and the propagation measurements, which run the units themselves."""
        return self.fc(self.pool(self.final(x_last)).flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = unit(x)
        return self.head(x)


def build_network(spec: NetSpec) -> ResNet:
    """The network a `NetSpec` describes, freshly initialised."""
    if not isinstance(spec, NetSpec):
        raise TypeError(f"build_network needs a NetSpec, got {type(spec).__name__}")
    return ResNet(spec)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
