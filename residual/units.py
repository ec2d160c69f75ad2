"""One residual unit, y_l = h(x_l) + F(x_l, W_l), x_{l+1} = f(y_l) (paper Eq. 1-2).

The shortcut h comes from `shortcuts.py`, the BN/ReLU placement from `placements.py`, the
weight layers from the unit type: two 3x3 convs (basic) or 1x1, 3x3, 1x1 with 4x expansion
(bottleneck, the stride on the 3x3 as in the paper's code).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .placements import PLACEMENTS
from .shortcuts import build_shortcut
from .specs import UnitSpec

BOTTLENECK_EXPANSION = 4


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def bn_relu_ops(names: tuple[str, ...], channels: int) -> nn.Sequential:
    """A run of "bn"/"relu" operations from a placement, as modules."""
    ops = {"bn": lambda: nn.BatchNorm2d(channels), "relu": lambda: nn.ReLU(inplace=False)}
    return nn.Sequential(*(ops[name]() for name in names))


class ZeroPadIdentity(nn.Module):
    """The parameter-free shape change of ResNet-110 (He et al. 2015, option A).

    Subsamples the map by `stride` and pads the new channels with zeros, so the shortcut stays
    an identity on the channels it keeps.
    """

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


class UnitTerms(NamedTuple):
    """The two addends of y_l: the shortcut term h(x_l) and the (gained) branch term F(x_l)."""

    shortcut: Tensor
    branch: Tensor


class ResidualUnit(nn.Module):
    """x_{l+1} = f(h(x_l) + F(x_l, W_l)) for any shortcut x placement x unit type.

    `stem_activated` marks the first unit of a pre-activation network: the stem's BN+ReLU
    already is its pre-activation, applied before the split (paper appendix), so the unit does
    not repeat it.
    """

    def __init__(self, spec: UnitSpec, in_channels: int, width: int, stride: int,
                 downsample: str, stem_activated: bool = False):
        super().__init__()
        placement = PLACEMENTS[spec.activation]
        out_channels = width * BOTTLENECK_EXPANSION if spec.bottleneck else width
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride

        start = () if stem_activated else placement.branch_start
        self.branch_start = bn_relu_ops(start, in_channels)
        self.residual = self._branch(spec, placement.branch_end, in_channels, width, stride)
        self.reshape = self._reshape(downsample, "bn" in placement.branch_start,
                                     in_channels, out_channels, stride)
        self.shortcut = build_shortcut(spec, in_channels, out_channels, stride)
        self.after_add = bn_relu_ops(placement.after_add, out_channels)
        self.formula = placement.formula

    @staticmethod
    def _branch(spec: UnitSpec, end: tuple[str, ...], in_channels: int, width: int,
                stride: int) -> nn.Sequential:
        """W1 BN ReLU W2 [BN ReLU W3] + the placement's closing ops (pre-activation excluded)."""
        if spec.bottleneck:
            out = width * BOTTLENECK_EXPANSION
            weights = [conv1x1(in_channels, width), conv3x3(width, width, stride),
                       conv1x1(width, out)]
        else:
            out = width
            weights = [conv3x3(in_channels, width, stride), conv3x3(width, width)]
        layers: list[nn.Module] = [weights[0]]
        for weight in weights[1:]:
            layers += [*bn_relu_ops(("bn", "relu"), weight.in_channels), weight]
        return nn.Sequential(*layers, *bn_relu_ops(end, out))

    @staticmethod
    def _reshape(downsample: str, normalised: bool, in_channels: int, out_channels: int,
                 stride: int) -> nn.Module | None:
        """How the shortcut reaches the output shape at a stage's first unit (None inside)."""
        if stride == 1 and in_channels == out_channels:
            return None
        if downsample == "zero_pad":
            return ZeroPadIdentity(stride, out_channels - in_channels)
        projection = conv1x1(in_channels, out_channels, stride)
        # Full pre-activation shares one BN+ReLU between both paths (paper appendix), so the
        # projection reads a normalised input. Every other input is unnormalised, ReLU-only
        # pre-activation's ReLU(x) included, and the projection takes its own BN, as in He et
        # al. 2015 (PAPER.md Sec. 4: one BN+ReLU shared only where the pre-activation has one).
        return projection if normalised else nn.Sequential(projection,
                                                           nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        y = self.terms(x)
        return self.after_add(y.shortcut + y.branch)

    def terms(self, x: Tensor) -> UnitTerms:
        """h(x_l) and gain * F(x_l, W_l), the addends of y_l, for forward and propagation.

        Under mixed precision (bf16 autocast, opt-in) the branch F runs in bf16 but the shortcut
        arithmetic stays fp32: a gate's 1 - g at b_g = -6 is 0.99753 in fp32 and 0.99609 in
        bf16, and over 54 units that is a carry of 0.875 against 0.81 (DESIGN.md).
        """
        activated = self.branch_start(x)
        branch = self.residual(activated)
        with torch.autocast(x.device.type, enabled=False):
            h, gain = self.shortcut(self.shortcut_input(x, activated).float(), x.float())
            if isinstance(gain, float) and gain == 1.0:
                # Every shortcut but constant scaling and exclusive gating: 1.0 * F is F bit
                # for bit, and the multiply with its backward cost 1.7-3% of a training step
                # (bench.unit_gain, BENCHMARKS.md).
                return UnitTerms(h, branch.float())
            return UnitTerms(h, gain * branch.float())

    def shortcut_input(self, x: Tensor, activated: Tensor) -> Tensor:
        """x itself inside a stage; zero-padded x, or the projected pre-activated x, at a
        stage's first unit (a projection shares the pre-activation, a zero-pad keeps raw x)."""
        if self.reshape is None:
            return x
        if isinstance(self.reshape, ZeroPadIdentity):
            return self.reshape(x)
        return self.reshape(activated)

    def extra_repr(self) -> str:
        return f"x_next = {self.formula}"
