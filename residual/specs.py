"""Frozen, validated descriptions of a residual unit and a CIFAR-style network.

The two specs are the only thing the rest of the platform hands to `residual`: a search space
turns sampled parameters into a `NetSpec`, `build_network` turns the `NetSpec` into modules.
Every field is checked here, once, so a bad combination fails before any tensor is allocated.
What a shortcut's parameters are, and what values they take, is declared by its kind
(`residual.kinds`); where BN/ReLU sit, by its placement (`residual.placements`); this module
only applies those declarations. Torch-free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .kinds import SHORTCUT_KINDS, SHORTCUT_PARAMS, SHORTCUTS
from .placements import ACTIVATIONS, PLACEMENTS
from .validation import check_choice, check_int, choices, fail, is_int

DOWNSAMPLES = ("zero_pad", "projection")
"""How the shortcut changes shape where a stage halves the map and widens the channels."""

__all__ = ["ACTIVATIONS", "DOWNSAMPLES", "SHORTCUTS", "SHORTCUT_PARAMS", "NetSpec", "UnitSpec"]


@dataclass(frozen=True)
class UnitSpec:
    """One residual unit: y = h(x) + F(x), x_next = f(y) (paper Eq. 1-2).

    `shortcut` picks h (Table 1), `activation` picks where BN/ReLU sit (Table 2). The optional
    fields belong to the shortcut kinds that declare them (`residual.kinds`) and must be left
    as None for the others; left as None for their own shortcut they take the kind's default,
    so a validated spec always holds concrete values, checked against the kind's range.
    """

    shortcut: str = "identity"
    activation: str = "original"
    lam: float | None = None
    """Constant-scaling shortcut factor lambda in h(x) = lambda * x (Eq. 8)."""
    branch_scale: float | None = None
    """Scale s on the residual branch for constant scaling: y = lambda*x + s*F(x)."""
    gate_bias: float | None = None
    """Initial bias b_g of the gate g(x) = sigmoid(conv1x1(x) + b_g)."""
    dropout_p: float | None = None
    """Drop probability of the dropout shortcut."""
    dropout_rescale: bool | None = None
    """True: inverted dropout (expectation 1). False: the paper's reading (expectation 1-p)."""
    bottleneck: bool = False

    def __post_init__(self) -> None:
        kind = SHORTCUT_KINDS.get(self.shortcut) if isinstance(self.shortcut, str) else None
        if kind is None:
            raise fail("UnitSpec", "shortcut", self.shortcut, choices(SHORTCUT_KINDS))
        if not isinstance(self.activation, str) or self.activation not in PLACEMENTS:
            raise fail("UnitSpec", "activation", self.activation, choices(PLACEMENTS))
        check_choice("UnitSpec", "bottleneck", self.bottleneck, (True, False))
        for name in SHORTCUT_PARAMS:
            value = getattr(self, name)
            param = kind.param(name)
            if param is None:
                if value is not None:  # a lambda on a gate is a mistake, not a no-op
                    users = [k.name for k in SHORTCUT_KINDS.values() if k.param(name)]
                    raise fail("UnitSpec", name, value,
                               f"None with shortcut={self.shortcut!r} "
                               f"(only used by {choices(users) or 'no registered shortcut'})")
                continue
            object.__setattr__(self, name, param.check(param.default if value is None else value))

    @property
    def gated(self) -> bool:
        """The shortcut has a gate g(x) (Table 1's gating rows): propagation reports mean(1-g)."""
        return SHORTCUT_KINDS[self.shortcut].gated

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that apply: a logged spec never shows a lambda on a gate."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitSpec:
        return cls(**_known_keys(cls, data))


@dataclass(frozen=True)
class NetSpec:
    """A CIFAR-style residual network (paper Sec. 4, Table 3; He et al. 2015 Sec. 4.2).

    A stem 3x3 conv with `width` channels, three stages of n units on maps of 1, 1/2 and 1/4 the
    input size with width, 2*width, 4*width channels (4x that at the output of bottleneck units),
    global average pooling and one linear layer. depth = 6n+2 for basic units, 9n+2 for bottleneck.
    """

    depth: int
    unit: UnitSpec = field(default_factory=UnitSpec)
    width: int = 16
    num_classes: int = 10
    in_channels: int = 3
    downsample: str | None = None
    """None picks the paper's choice: zero_pad for basic units, projection for bottleneck."""

    def __post_init__(self) -> None:
        if not isinstance(self.unit, UnitSpec):
            raise fail("NetSpec", "unit", self.unit, "a UnitSpec")
        per_unit = 9 if self.unit.bottleneck else 6
        kind = "bottleneck" if self.unit.bottleneck else "basic"
        if (not is_int(self.depth) or self.depth < per_unit + 2
                or (self.depth - 2) % per_unit):
            raise fail("NetSpec", "depth", self.depth,
                        f"{per_unit}n+2 with n >= 1 for {kind} units "
                        f"(e.g. {', '.join(str(per_unit * n + 2) for n in (1, 3, 18))})")
        for name, low in (("width", 1), ("num_classes", 2), ("in_channels", 1)):
            check_int("NetSpec", name, getattr(self, name), low)
        if self.downsample is None:
            object.__setattr__(self, "downsample",
                               "projection" if self.unit.bottleneck else "zero_pad")
        else:
            check_choice("NetSpec", "downsample", self.downsample, DOWNSAMPLES)

    @property
    def units_per_stage(self) -> int:
        return (self.depth - 2) // (9 if self.unit.bottleneck else 6)

    @property
    def num_units(self) -> int:
        return 3 * self.units_per_stage

    @property
    def name(self) -> str:
        """A short label for tables and plots, e.g. `resnet110-identity-full_preact`,
        `resnet56-bottleneck-identity-original`: basic and bottleneck networks of one depth
        (the small scale's ResNet-56 pair) are told apart."""
        unit = self.unit
        shortcut = SHORTCUT_KINDS[unit.shortcut].label_fragment(unit)
        kind = "-bottleneck" if unit.bottleneck else ""
        return (f"resnet{self.depth}{kind}-{unit.shortcut}{shortcut}-"
                f"{PLACEMENTS[unit.activation].label}")

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["unit"] = self.unit.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetSpec:
        data = _known_keys(cls, data)
        unit = data.get("unit", {})
        if isinstance(unit, dict):
            data["unit"] = UnitSpec.from_dict(unit)
        return cls(**data)


def _known_keys(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise fail(cls.__name__, unknown[0], data[unknown[0]], f"fields {choices(sorted(names))}")
    return dict(data)


if set(SHORTCUT_PARAMS) - {f.name for f in fields(UnitSpec)}:  # kinds may only name real fields
    raise RuntimeError("residual.kinds.SHORTCUT_PARAMS names a field UnitSpec does not have")
