"""Frozen, validated descriptions of a residual unit and a CIFAR-style network.

The two specs are the only thing the rest of the platform hands to `residual`: a search space
turns sampled parameters into a `NetSpec`, `build_network` turns the `NetSpec` into modules.
Every field is checked here, once, so a bad combination fails before any tensor is allocated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SHORTCUTS = ("identity", "scaling", "exclusive_gate", "shortcut_gate", "conv1x1", "dropout")
"""Paper Table 1 / Fig. 2: the shortcut operation h."""

ACTIVATIONS = ("original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
"""Paper Table 2 / Fig. 4: where BN and ReLU sit relative to the addition."""

PREACTIVATION = ("relu_preact", "full_preact")
"""Placements whose networks need the appendix extras (stem BN+ReLU, final BN+ReLU)."""

DOWNSAMPLES = ("zero_pad", "projection")
"""How the shortcut changes shape where a stage halves the map and widens the channels."""

GATED = ("exclusive_gate", "shortcut_gate")

# Which optional UnitSpec field belongs to which shortcut, and its default when left out.
# Defaults are the paper's readings: lambda = 0.5 with s = 1 (Table 1's second scaling row),
# b_g = 0 (an untouched conv bias), p = 0.5 without 1/(1-p) rescaling (Sec. 3.1).
SHORTCUT_DEFAULTS: dict[str, dict[str, Any]] = {
    "scaling": {"lam": 0.5, "branch_scale": 1.0},
    "exclusive_gate": {"gate_bias": 0.0},
    "shortcut_gate": {"gate_bias": 0.0},
    "dropout": {"dropout_p": 0.5, "dropout_rescale": False},
}
SHORTCUT_PARAMS = ("lam", "branch_scale", "gate_bias", "dropout_p", "dropout_rescale")
"""The optional UnitSpec fields, each used by one or two shortcuts only."""


def _choices(values: tuple[str, ...]) -> str:
    return " | ".join(values)


def _fail(cls: str, name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{cls}.{name}={value!r} is invalid; allowed: {allowed}")


def _check_finite(cls: str, name: str, value: Any, low: float | None = None,
                  high: float | None = None, high_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        bracket = ")" if high_open or high is None else "]"
        raise _fail(cls, name, value, f"a finite number in [{lo}, {hi}{bracket}")
    return float(value)


@dataclass(frozen=True)
class UnitSpec:
    """One residual unit: y = h(x) + F(x), x_next = f(y) (paper Eq. 1-2).

    `shortcut` picks h (Table 1), `activation` picks where BN/ReLU sit (Table 2). The optional
    fields apply to one shortcut each and must be left as None for the others; left as None for
    their own shortcut they take the paper's default (see `SHORTCUT_DEFAULTS`), so a validated
    spec always holds concrete values.
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
        if self.shortcut not in SHORTCUTS:
            raise _fail("UnitSpec", "shortcut", self.shortcut, _choices(SHORTCUTS))
        if self.activation not in ACTIVATIONS:
            raise _fail("UnitSpec", "activation", self.activation, _choices(ACTIVATIONS))
        if not isinstance(self.bottleneck, bool):
            raise _fail("UnitSpec", "bottleneck", self.bottleneck, "True | False")
        own = SHORTCUT_DEFAULTS.get(self.shortcut, {})
        for name in SHORTCUT_PARAMS:
            value = getattr(self, name)
            if name not in own:
                if value is not None:
                    users = [s for s, p in SHORTCUT_DEFAULTS.items() if name in p]
                    raise _fail("UnitSpec", name, value,
                                f"None with shortcut={self.shortcut!r} "
                                f"(only used by {_choices(tuple(users))})")
                continue
            if value is None:
                object.__setattr__(self, name, own[name])
        if self.shortcut == "scaling":
            object.__setattr__(self, "lam", _check_finite("UnitSpec", "lam", self.lam))
            object.__setattr__(self, "branch_scale",
                               _check_finite("UnitSpec", "branch_scale", self.branch_scale))
        if self.shortcut in GATED:
            object.__setattr__(self, "gate_bias",
                               _check_finite("UnitSpec", "gate_bias", self.gate_bias))
        if self.shortcut == "dropout":
            object.__setattr__(self, "dropout_p", _check_finite(
                "UnitSpec", "dropout_p", self.dropout_p, 0.0, 1.0, high_open=True))
            if not isinstance(self.dropout_rescale, bool):
                raise _fail("UnitSpec", "dropout_rescale", self.dropout_rescale, "True | False")

    @property
    def preactivation(self) -> bool:
        return self.activation in PREACTIVATION

    @property
    def gated(self) -> bool:
        return self.shortcut in GATED

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
            raise _fail("NetSpec", "unit", self.unit, "a UnitSpec")
        per_unit = 9 if self.unit.bottleneck else 6
        kind = "bottleneck" if self.unit.bottleneck else "basic"
        if (not _is_int(self.depth) or self.depth < per_unit + 2
                or (self.depth - 2) % per_unit):
            raise _fail("NetSpec", "depth", self.depth,
                        f"{per_unit}n+2 with n >= 1 for {kind} units "
                        f"(e.g. {', '.join(str(per_unit * n + 2) for n in (1, 3, 18))})")
        for name, low in (("width", 1), ("num_classes", 2), ("in_channels", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise _fail("NetSpec", name, value, f"an integer >= {low}")
        if self.downsample is None:
            object.__setattr__(self, "downsample",
                               "projection" if self.unit.bottleneck else "zero_pad")
        elif self.downsample not in DOWNSAMPLES:
            raise _fail("NetSpec", "downsample", self.downsample, _choices(DOWNSAMPLES))

    @property
    def units_per_stage(self) -> int:
        return (self.depth - 2) // (9 if self.unit.bottleneck else 6)

    @property
    def num_units(self) -> int:
        return 3 * self.units_per_stage

    @property
    def name(self) -> str:
        """A short label for tables and plots, e.g. `resnet110-identity-full_preact`."""
        unit = self.unit
        extra = ""
        if unit.shortcut == "scaling":
            extra = f"-lam{unit.lam:g}-s{unit.branch_scale:g}"
        elif unit.gated:
            extra = f"-bg{unit.gate_bias:g}"
        elif unit.shortcut == "dropout":
            extra = f"-p{unit.dropout_p:g}"
        return f"resnet{self.depth}-{unit.shortcut}{extra}-{unit.activation}"

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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _known_keys(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}.from_dict needs a dict, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise _fail(cls.__name__, unknown[0], data[unknown[0]],
                    f"fields {_choices(tuple(sorted(names)))}")
    return dict(data)
