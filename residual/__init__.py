"""The residual-unit family of He et al. 2016 as validated PyTorch networks.

    from residual import UnitSpec, NetSpec, build_network
    unit = UnitSpec(shortcut="shortcut_gate", activation="original", gate_bias=-6.0)
    net = build_network(NetSpec(depth=110, unit=unit, num_classes=10))

The specs and the declarations behind them (shortcut kinds, activation placements, the paper's
tables) import without PyTorch, so spaces can be described, listed and checked in a fraction
of a second; the torch names (`ResNet`, `build_network`, `count_parameters`) load on first use
(PEP 562).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .kinds import (
    ONE_MINUS_LAMBDA,
    SHORTCUT_KINDS,
    Param,
    ShortcutKind,
    register_shortcut_kind,
    unregister_shortcut_kind,
)
from .placements import PLACEMENTS, Placement, register_placement, unregister_placement
from .specs import ACTIVATIONS, DOWNSAMPLES, SHORTCUTS, NetSpec, UnitSpec

if TYPE_CHECKING:
    from .network import ResNet, build_network, count_parameters

_LAZY = {"ResNet": "network", "build_network": "network", "count_parameters": "network"}
"""Names that need torch, and the module that defines each."""

__all__ = [
    "ACTIVATIONS",
    "DOWNSAMPLES",
    "ONE_MINUS_LAMBDA",
    "PLACEMENTS",
    "SHORTCUTS",
    "SHORTCUT_KINDS",
    "NetSpec",
    "Param",
    "Placement",
    "ResNet",
    "ShortcutKind",
    "UnitSpec",
    "build_network",
    "count_parameters",
    "register_placement",
    "register_shortcut_kind",
    "unregister_placement",
    "unregister_shortcut_kind",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
