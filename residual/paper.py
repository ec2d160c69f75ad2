"""The paper's published rows (He et al. 2016, Tables 1-3), the known answers of every search.

Errors are CIFAR-10 test error in percent; None marks the paper's "fail" (above 20%).
"""

from __future__ import annotations

from dataclasses import dataclass

from .specs import UnitSpec

FAIL_THRESHOLD = 20.0
"""Test error (%) above which the paper reports "fail"."""


@dataclass(frozen=True)
class PaperRow:
    label: str
    unit: UnitSpec
    error: float | None
    """Published error in percent; None = "fail"."""
    depth: int = 110


def _row(label: str, error: float | None, depth: int = 110, **unit) -> PaperRow:
    return PaperRow(label, UnitSpec(**unit), error, depth)


TABLE1 = (
    _row("original", 6.61, shortcut="identity"),
    _row("constant scaling lambda=0 s=1", None, shortcut="scaling", lam=0.0, branch_scale=1.0),
    _row("constant scaling lambda=0.5 s=1", None, shortcut="scaling", lam=0.5, branch_scale=1.0),
    _row("constant scaling lambda=0.5 s=0.5", 12.35, shortcut="scaling", lam=0.5,
         branch_scale=0.5),
    _row("exclusive gating b_g=0", None, shortcut="exclusive_gate", gate_bias=0.0),
    _row("exclusive gating b_g=-6", 8.70, shortcut="exclusive_gate", gate_bias=-6.0),
    _row("exclusive gating b_g=-7", 9.81, shortcut="exclusive_gate", gate_bias=-7.0),
    _row("shortcut-only gating b_g=0", 12.86, shortcut="shortcut_gate", gate_bias=0.0),
    _row("shortcut-only gating b_g=-6", 6.91, shortcut="shortcut_gate", gate_bias=-6.0),
    _row("1x1 conv shortcut", 12.22, shortcut="conv1x1"),
    _row("dropout shortcut p=0.5", None, shortcut="dropout", dropout_p=0.5),
)
"""Table 1: shortcut variants on ResNet-110 with the original unit."""

_TABLE2_ERRORS = {  # activation: (ResNet-110, ResNet-164)
    "original": (6.61, 5.93),
    "bn_after_add": (8.17, 6.50),
    "relu_before_add": (7.84, 6.14),
    "relu_preact": (6.71, 5.91),
    "full_preact": (6.37, 5.46),
}
TABLE2 = tuple(
    _row(f"{activation} ResNet-{depth}", errors[column], depth, shortcut="identity",
         activation=activation, bottleneck=depth == 164)
    for column, depth in enumerate((110, 164))
    for activation, errors in _TABLE2_ERRORS.items()
)
"""Table 2: activation placements with identity shortcuts, ResNet-110 and ResNet-164."""

TABLE3 = {  # (dataset, network): (original, pre-activation)
    ("cifar10", "ResNet-110 (1-layer units)"): (9.90, 8.91),
    ("cifar10", "ResNet-110"): (6.61, 6.37),
    ("cifar10", "ResNet-164"): (5.93, 5.46),
    ("cifar10", "ResNet-1001"): (7.61, 4.92),
    ("cifar100", "ResNet-164"): (25.16, 24.33),
    ("cifar100", "ResNet-1001"): (27.82, 22.71),
}
"""Table 3: original unit versus full pre-activation."""
