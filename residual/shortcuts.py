"""The shortcut operations h of paper Table 1 / Fig. 2 as PyTorch modules, registered by name.

What a shortcut is (its parameters, defaults, ranges, label) is declared once, torch-free, in
`residual.kinds`; this module holds only the tensors, one class per declared kind, registered
under the kind's name with `@register_shortcut(name)`.

Every shortcut returns the pair (h(x), gain) of the generalised unit

    y = h(x) + gain * F(x)

so one `ResidualUnit.forward` covers all six rows: gain is 1 except for constant scaling (s) and
exclusive gating (g(x)). `base` is the unit input already brought to the output shape (the
identity inside a stage; zero-padded or projected at a stage's first unit, see `units.py`);
`x` is the raw unit input, which a gate's 1x1 conv reads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kinds import SHORTCUT_KINDS, SHORTCUTS, unregister_shortcut_kind
from .specs import UnitSpec

ShortcutFactory = Callable[[UnitSpec, int, int, int], "Shortcut"]
SHORTCUT_REGISTRY: dict[str, ShortcutFactory] = {}
"""The module class of every shortcut kind that has one, by kind name (timm-style)."""


def register_shortcut(name: str) -> Callable[[type[Shortcut]], type[Shortcut]]:
    """Register a shortcut class under the kind name it implements (paper Table 1's rows).

    The kind must be declared first (`residual.kinds.register_shortcut_kind`): a module whose
    parameters nobody validates would build from unchecked specs. A name gets one class; the
    same class again (its file imported twice) is accepted.
    """
    if name not in SHORTCUT_KINDS:
        raise ValueError(f"shortcut {name!r} has no declared kind; declare it first with "
                         f"residual.kinds.register_shortcut_kind (declared: "
                         f"{' | '.join(SHORTCUT_KINDS)})")

    def decorate(cls: type[Shortcut]) -> type[Shortcut]:
        old = SHORTCUT_REGISTRY.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                       cls.__qualname__):
            raise ValueError(f"shortcut {name!r} already has its module {old.__qualname__}")
        SHORTCUT_REGISTRY[name] = cls
        return cls

    return decorate


def unregister_shortcut(name: str) -> None:
    """Remove a registered shortcut's module and its kind (a test's, say); the paper's six
    stay."""
    if name in SHORTCUTS:
        raise ValueError(f"shortcut {name!r} is one of the paper's and stays registered")
    SHORTCUT_REGISTRY.pop(name, None)
    if name in SHORTCUT_KINDS:
        unregister_shortcut_kind(name)


class Shortcut(nn.Module):
    """h in y = h(x) + gain * F(x). Subclasses are built as cls(spec, in_ch, out_ch, stride)."""

    def __init__(self, spec: UnitSpec, in_channels: int, out_channels: int, stride: int):
        super().__init__()

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, Tensor | float]:
        raise NotImplementedError

    def reset_parameters(self) -> None:
        """Set the shortcut's own initial values, after the network's He initialisation has
        set every conv (a gate's bias b_g, say). Nothing by default."""


@register_shortcut("identity")
class IdentityShortcut(Shortcut):
    """y = x + F(x): Eq. 4/5's clean path, the paper's winner."""

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, float]:
        return base, 1.0


@register_shortcut("scaling")
class ScalingShortcut(Shortcut):
    """y = lambda * x + s * F(x) (Table 1, Eq. 8): the direct path becomes prod(lambda)."""

    def __init__(self, spec: UnitSpec, in_channels: int, out_channels: int, stride: int):
        super().__init__(spec, in_channels, out_channels, stride)
        self.lam = float(spec.lam)
        self.branch_scale = float(spec.branch_scale)

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, float]:
        return self.lam * base, self.branch_scale

    def extra_repr(self) -> str:
        return f"lam={self.lam:g}, branch_scale={self.branch_scale:g}"


class _Gate(nn.Module):
    """g(x) = sigmoid(conv1x1(x) + b_g), element-wise, b_g initialised to the spec's gate bias.

    At a stage's first unit the conv has the unit's stride and output channels, so g matches
    the subsampled, widened shortcut it multiplies (PAPER.md Sec. 4 convention).
    """

    def __init__(self, gate_bias: float, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=True)
        self.gate_bias = gate_bias

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.conv(x))


class GatedShortcut(Shortcut):
    """Common parent of the two gates; `gate(x)` is what propagation reads for mean(1 - g)."""

    def __init__(self, spec: UnitSpec, in_channels: int, out_channels: int, stride: int):
        super().__init__(spec, in_channels, out_channels, stride)
        self.gate = _Gate(float(spec.gate_bias), in_channels, out_channels, stride)

    def reset_parameters(self) -> None:
        # Table 1's gate rows differ only in b_g: it decides how open the shortcut starts.
        nn.init.constant_(self.gate.conv.bias, self.gate.gate_bias)


@register_shortcut("exclusive_gate")
class ExclusiveGateShortcut(GatedShortcut):
    """y = (1 - g(x)) * x + g(x) * F(x): highway-style exclusive gating (Table 1)."""

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        g = self.gate(x)
        return (1 - g) * base, g


@register_shortcut("shortcut_gate")
class ShortcutOnlyGateShortcut(GatedShortcut):
    """y = (1 - g(x)) * x + F(x): only the shortcut is gated (Table 1)."""

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, float]:
        return (1 - self.gate(x)) * base, 1.0


@register_shortcut("conv1x1")
class Conv1x1Shortcut(Shortcut):
    """y = BN(conv1x1(x)) + F(x) (Table 1): contains the identity, yet optimises worse.

    It acts on `base`, so at a stage's first unit it follows the zero-pad or projection with a
    stride-1 conv; inside a stage `base` is x itself.
    """

    def __init__(self, spec: UnitSpec, in_channels: int, out_channels: int, stride: int):
        super().__init__(spec, in_channels, out_channels, stride)
        self.conv = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, float]:
        return self.bn(self.conv(base)), 1.0


@register_shortcut("dropout")
class DropoutShortcut(Shortcut):
    """y = dropout_p(x) + F(x) (Table 1).

    The paper's dropout "imposes a scale with expectation 1-p" on the shortcut: a Bernoulli
    mask without the 1/(1-p) rescale, and (1-p) * x at evaluation. `dropout_rescale=True`
    gives ordinary inverted dropout (expectation 1) for comparison.
    """

    def __init__(self, spec: UnitSpec, in_channels: int, out_channels: int, stride: int):
        super().__init__(spec, in_channels, out_channels, stride)
        self.p = float(spec.dropout_p)
        self.rescale = bool(spec.dropout_rescale)

    def forward(self, base: Tensor, x: Tensor) -> tuple[Tensor, float]:
        kept = F.dropout(base, self.p, self.training)  # inverted: E = x, eval = x
        return (kept if self.rescale else (1 - self.p) * kept), 1.0

    def extra_repr(self) -> str:
        return f"p={self.p:g}, rescale={self.rescale}"


def build_shortcut(spec: UnitSpec, in_channels: int, out_channels: int, stride: int) -> Shortcut:
    """The module h for a unit (paper Eq. 1), from the class registered for its kind."""
    if spec.shortcut not in SHORTCUT_REGISTRY:
        raise ValueError(f"shortcut {spec.shortcut!r} is declared but has no module; register "
                         "one with @residual.shortcuts.register_shortcut")
    return SHORTCUT_REGISTRY[spec.shortcut](spec, in_channels, out_channels, stride)
