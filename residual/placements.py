"""Where BN and ReLU sit around the addition: the five cases of paper Table 2 / Fig. 4.

A placement is data, not code: which operations open the residual branch before its first weight
layer (pre-activation), which close it after its last weight layer, and which follow the
addition (f in x_{l+1} = f(y_l)). Between two weight layers there is always BN then ReLU. Reading
the table below against the paper's formulas is the test of this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from .specs import ACTIVATIONS


@dataclass(frozen=True)
class Placement:
    name: str
    formula: str
    """x_{l+1} for a basic unit, as printed in paper Table 2 (W = a 3x3 conv)."""
    branch_start: tuple[str, ...]
    branch_end: tuple[str, ...]
    after_add: tuple[str, ...]

    @property
    def preactivation(self) -> bool:
        return bool(self.branch_start)


PLACEMENTS: dict[str, Placement] = {p.name: p for p in (
    Placement("original", "ReLU(x + BN(W2 ReLU(BN(W1 x))))",
              branch_start=(), branch_end=("bn",), after_add=("relu",)),
    Placement("bn_after_add", "ReLU(BN(x + W2 ReLU(BN(W1 x))))",
              branch_start=(), branch_end=(), after_add=("bn", "relu")),
    Placement("relu_before_add", "x + ReLU(BN(W2 ReLU(BN(W1 x))))",
              branch_start=(), branch_end=("bn", "relu"), after_add=()),
    Placement("relu_preact", "x + BN(W2 ReLU(BN(W1 ReLU(x))))",
              branch_start=("relu",), branch_end=("bn",), after_add=()),
    Placement("full_preact", "x + W2 ReLU(BN(W1 ReLU(BN(x))))",
              branch_start=("bn", "relu"), branch_end=(), after_add=()),
)}
assert tuple(PLACEMENTS) == ACTIVATIONS, "placements and UnitSpec.activation disagree"
