"""The residual-unit family of He et al. 2016 as validated PyTorch networks.

    from residual import UnitSpec, NetSpec, build_network
    unit = UnitSpec(shortcut="shortcut_gate", activation="original", gate_bias=-6.0)
    net = build_network(NetSpec(depth=110, unit=unit, num_classes=10))
"""

from .network import ResNet, build_network, count_parameters
from .specs import ACTIVATIONS, DOWNSAMPLES, SHORTCUTS, NetSpec, UnitSpec

__all__ = [
    "ACTIVATIONS",
    "DOWNSAMPLES",
    "SHORTCUTS",
    "NetSpec",
    "ResNet",
    "UnitSpec",
    "build_network",
    "count_parameters",
]
