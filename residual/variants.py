"""Every registered unit variant by name: the timm-style list a contract test iterates over."""

from __future__ import annotations

from .placements import PLACEMENTS
from .shortcuts import SHORTCUT_REGISTRY
from .specs import UnitSpec


def list_variants(bottleneck: bool = False) -> dict[str, UnitSpec]:
    """`shortcut+activation` -> UnitSpec with the shortcut's default parameters, for all
    registered shortcuts x placements (6 x 5 = 30 per unit type)."""
    return {f"{shortcut}+{activation}": UnitSpec(shortcut, activation, bottleneck=bottleneck)
            for shortcut in SHORTCUT_REGISTRY for activation in PLACEMENTS}
