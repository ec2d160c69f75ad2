"""Where BN and ReLU sit around the addition: the five cases of paper Table 2 / Fig. 4.

A placement is data, not code, and this module is the one place that declares it: which
operations open the residual branch before its first weight layer (pre-activation), which close
it after its last weight layer, and which follow the addition (f in x_{l+1} = f(y_l)). Between
two weight layers there is always BN then ReLU. `UnitSpec.activation` validates against
`PLACEMENTS`, `ResidualUnit` builds from it, `NetSpec.name` labels with it; a new placement is
one `register_placement(Placement(...))`. Reading the table below against the paper's formulas
is the test of this module. Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from .validation import check_choice, choices

OPS = ("bn", "relu")
"""The operations a placement may put around the weight layers (`units.bn_relu_ops` builds them)."""


@dataclass(frozen=True)
class Placement:
    """One row of paper Table 2: x_{l+1} = f(h(x_l) + F(x_l)) with BN/ReLU at given places."""

    name: str
    formula: str
    """x_{l+1} for a basic unit, as printed in paper Table 2 (W = a 3x3 conv)."""
    branch_start: tuple[str, ...]
    branch_end: tuple[str, ...]
    after_add: tuple[str, ...]
    label: str = ""
    """The placement's part of `NetSpec.name`; empty means the name itself."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Placement.name={self.name!r} is invalid; allowed: an identifier")
        for where in ("branch_start", "branch_end", "after_add"):
            ops = getattr(self, where)
            if not isinstance(ops, tuple):
                raise ValueError(f"Placement.{where}={ops!r} is invalid; allowed: a tuple of "
                                 f"{choices(OPS)}")
            for op in ops:
                check_choice("Placement", where, op, OPS)
        if not self.label:
            object.__setattr__(self, "label", self.name)

    @property
    def preactivation(self) -> bool:
        """The branch opens with BN/ReLU (Fig. 4 d, e): the network then needs the appendix
        extras, a stem BN+ReLU shared by the first unit and a final BN+ReLU."""
        return bool(self.branch_start)


_BUILTIN = (
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
)

ACTIVATIONS: tuple[str, ...] = tuple(p.name for p in _BUILTIN)
"""The paper's five placements (Table 2 / Fig. 4), the built-ins; `PLACEMENTS` also holds any
registered later."""

PLACEMENTS: dict[str, Placement] = {p.name: p for p in _BUILTIN}
"""Every placement `UnitSpec.activation` accepts, by name."""


def register_placement(placement: Placement) -> Placement:
    """Declare a placement beyond Table 2, from any file; `UnitSpec(activation=name)` then
    validates and `build_network` builds it. A name is registered once."""
    if not isinstance(placement, Placement):
        raise TypeError(f"register_placement needs a Placement, got {type(placement).__name__}")
    if placement.name in PLACEMENTS:
        raise ValueError(f"placement {placement.name!r} is already registered")
    PLACEMENTS[placement.name] = placement
    return placement


def unregister_placement(name: str) -> Placement:
    """Remove a registered placement (a test's, say); the paper's five stay."""
    if name in ACTIVATIONS:
        raise ValueError(f"placement {name!r} is one of the paper's and stays registered")
    if name not in PLACEMENTS:
        raise KeyError(f"placement {name!r} is not registered")
    return PLACEMENTS.pop(name)
