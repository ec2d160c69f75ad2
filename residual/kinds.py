"""The shortcut kinds h of paper Table 1 / Fig. 2, each declared once, as data.

A `ShortcutKind` says everything the platform needs to know about a shortcut except its
tensors: its name, the paper's equation, its parameters (`Param`: default, the range a
`UnitSpec` accepts, the range or choices a search samples), its part of a network's name, and
how a row of Table 1 reads as search-space parameters. `UnitSpec` validates from it,
`NetSpec.name` labels from it, `spaces.builtin.suggest_shortcut` samples from it and the
Table 1 anchors come from it; the PyTorch module that computes h is registered under the same
name in `residual.shortcuts`. Adding a shortcut is one `register_shortcut_kind(...)` here and
one `@register_shortcut(name)` class there, from any file.

Torch-free (and Optuna-free: a search trial is only duck-typed), so a space can be described,
listed and checked without importing either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from .validation import check_choice, check_number, choices, fail, number_range

if TYPE_CHECKING:
    import optuna

_UnitSpec = Any  # a residual.specs.UnitSpec, not imported: specs imports this module

SHORTCUT_PARAMS = ("lam", "branch_scale", "gate_bias", "dropout_p", "dropout_rescale")
"""The optional `UnitSpec` fields a shortcut kind may use; each kind uses some or none."""

ONE_MINUS_LAMBDA = "1-lambda"
"""A searched `branch_scale` value meaning s = 1 - lambda (Table 1's "frozen gating" row)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a shortcut kind: a `UnitSpec` field, its default and its ranges.

    `low`/`high` bound what a `UnitSpec` accepts (None: unbounded; a bool default makes it a
    True | False flag). `search` (a float range) or `choices` is what a search space samples;
    neither means the parameter is not searched and keeps its default unless a space fixes it.
    """

    name: str
    default: float | bool
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    search: tuple[float, float] | None = None
    choices: tuple[Any, ...] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if self.name not in SHORTCUT_PARAMS:
            raise fail("Param", "name", self.name, f"a UnitSpec field: {choices(SHORTCUT_PARAMS)}")
        if self.search is not None and self.choices is not None:
            raise ValueError(f"Param {self.name!r}: give search or choices, not both")
        if self.is_flag and (self.low is not None or self.high is not None):
            raise ValueError(f"Param {self.name!r}: a True | False flag has no range")
        self.check(self.default, owner="Param.default")
        if self.search is not None:
            if len(self.search) != 2 or not self.search[0] < self.search[1]:
                raise fail("Param", "search", self.search, "a (low, high) pair with low < high")
            for bound in self.search:
                self.check(bound, owner="Param.search")
        for value in self.choices or ():
            if not isinstance(value, str):  # a string is a kind's token (ONE_MINUS_LAMBDA)
                self.check(value, owner="Param.choices")

    @property
    def is_flag(self) -> bool:
        return isinstance(self.default, bool)

    @property
    def searched(self) -> bool:
        return self.search is not None or self.choices is not None

    @property
    def allowed(self) -> str:
        """What `UnitSpec` accepts, in the words an error uses."""
        if self.is_flag:
            return "True | False"
        return number_range(self.low, self.high, high_open=self.high_open)

    def check(self, value: Any, owner: str = "UnitSpec") -> float | bool:
        """`value` validated and normalised (a float, or a bool for a flag); else ValueError."""
        if self.is_flag:
            return check_choice(owner, self.name, value, (True, False))
        return check_number(owner, self.name, value, self.low, self.high,
                            high_open=self.high_open)

    def accepts(self, value: Any) -> bool:
        try:
            self.check(value)
        except ValueError:
            return False
        return True

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Sample this parameter on an Optuna trial, under its own name (define-by-run)."""
        if self.search is not None:
            return trial.suggest_float(self.name, *self.search)
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        raise ValueError(f"Param {self.name!r} is not searched")


@dataclass(frozen=True)
class ShortcutKind:
    """A shortcut h of y = h(x) + F(x) (paper Eq. 1, Table 1), declared as data.

    `label` is a `str.format` template over the parameters, the kind's part of `NetSpec.name`
    (`"-bg{gate_bias:g}"` gives `resnet56-exclusive_gate-bg-6-original`). `gated`: the module
    has a gate g(x) whose mean(1 - g) propagation reports (Eq. 5's carry under gating).
    """

    name: str
    equation: str
    """The paper's formula for y, e.g. `y = lambda * x + s * F(x)`."""
    paper: str
    """Where the paper shows it (table, figure, equation)."""
    params: tuple[Param, ...] = ()
    label: str = ""
    gated: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise fail("ShortcutKind", "name", self.name, "an identifier")
        if not all(isinstance(p, Param) for p in self.params):
            raise fail("ShortcutKind", "params", self.params, "a tuple of Param")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise fail("ShortcutKind", "params", names, "each UnitSpec field once")
        try:  # a typo in the template fails at declaration, not when a table is printed
            self.label.format(**{p.name: p.default for p in self.params})
        except (KeyError, IndexError, ValueError) as error:
            raise fail("ShortcutKind", "label", self.label,
                       f"a format string over {choices(names) or 'no parameters'} ({error})"
                       ) from None

    def param(self, name: str) -> Param | None:
        """The kind's parameter `name`, or None if the kind does not use that field."""
        return next((p for p in self.params if p.name == name), None)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def label_fragment(self, unit: _UnitSpec) -> str:
        """The kind's part of `NetSpec.name`: `-lam0.5-s1`, `-bg-6`, `-p0.5`, or empty."""
        return self.label.format(**{p.name: getattr(unit, p.name) for p in self.params})

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sample every searched parameter of this kind (the conditional part of Table 1's
        axis: a gate bias exists only once a gate has been chosen)."""
        return {p.name: p.suggest(trial) for p in self.params if p.searched}

    def to_search_params(self, unit: _UnitSpec) -> dict[str, Any]:
        """A Table 1 row as the parameters a search samples: `{"shortcut": name, **params}`,
        leaving out an unsearched parameter at its default (so an anchor is exactly what a
        sampled trial would hold). `from_search_params` reads it back to the same unit."""
        values = {p.name: getattr(unit, p.name) for p in self.params
                  if p.searched or getattr(unit, p.name) != p.default}
        return {"shortcut": self.name, **values}

    def from_search_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Sampled parameters as `UnitSpec` values: the inverse of `to_search_params`."""
        return dict(values)


@dataclass(frozen=True)
class ConstantScalingKind(ShortcutKind):
    """Constant scaling, whose Table 1 row s = 1 - lambda is searched as the token "1-lambda"
    (the frozen-gating reading: lambda on the shortcut, 1 - lambda on the branch)."""

    def to_search_params(self, unit: _UnitSpec) -> dict[str, Any]:
        values = super().to_search_params(unit)
        if unit.branch_scale != 1.0 and unit.branch_scale == 1.0 - unit.lam:
            values["branch_scale"] = ONE_MINUS_LAMBDA
        return values

    def from_search_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        values = dict(values)
        lam = values.get("lam", self.param("lam").default)
        # A lambda that is no number is left for UnitSpec to name; resolving it would hide it.
        if values.get("branch_scale") == ONE_MINUS_LAMBDA and self.param("lam").accepts(lam):
            values["branch_scale"] = 1.0 - lam
        return values


GATE_BIAS = Param("gate_bias", 0.0, search=(-10.0, 0.0),  # the paper tried 0, -1, ..., -10
                  doc="Initial bias b_g of the gate g(x) = sigmoid(conv1x1(x) + b_g).")

# Defaults are the paper's readings: lambda = 0.5 with s = 1 (Table 1's second scaling row),
# b_g = 0 (an untouched conv bias), p = 0.5 without 1/(1-p) rescaling (Sec. 3.1).
_BUILTIN: tuple[ShortcutKind, ...] = (
    ShortcutKind("identity", "y = x + F(x)", "Table 1 'original', Eq. 4-5, Fig. 2a"),
    ConstantScalingKind(
        "scaling", "y = lambda * x + s * F(x)", "Table 1 'constant scaling', Eq. 8, Fig. 2b",
        params=(Param("lam", 0.5, search=(0.0, 1.0), doc="Shortcut factor lambda."),
                Param("branch_scale", 1.0, choices=(1.0, ONE_MINUS_LAMBDA),
                      doc="Branch factor s.")),
        label="-lam{lam:g}-s{branch_scale:g}"),
    ShortcutKind("exclusive_gate", "y = (1 - g(x)) * x + g(x) * F(x)",
                 "Table 1 'exclusive gating', Fig. 2c", params=(GATE_BIAS,),
                 label="-bg{gate_bias:g}", gated=True),
    ShortcutKind("shortcut_gate", "y = (1 - g(x)) * x + F(x)",
                 "Table 1 'shortcut-only gating', Fig. 2d", params=(GATE_BIAS,),
                 label="-bg{gate_bias:g}", gated=True),
    ShortcutKind("conv1x1", "y = BN(conv1x1(x)) + F(x)", "Table 1 '1x1 conv shortcut', Fig. 2e"),
    ShortcutKind(
        "dropout", "y = dropout_p(x) + F(x)", "Table 1 'dropout shortcut', Fig. 2f",
        params=(Param("dropout_p", 0.5, low=0.0, high=1.0, high_open=True, search=(0.1, 0.9),
                      doc="Drop probability p."),
                Param("dropout_rescale", False,
                      doc="True: inverted dropout (expectation 1); False: the paper's reading "
                          "(expectation 1 - p).")),
        label="-p{dropout_p:g}"),
)

SHORTCUTS: tuple[str, ...] = tuple(k.name for k in _BUILTIN)
"""The paper's six shortcut kinds (Table 1 / Fig. 2), the built-ins. `SHORTCUT_KINDS` also
holds any registered later; the built-in spaces search these six only."""

SHORTCUT_KINDS: dict[str, ShortcutKind] = {k.name: k for k in _BUILTIN}
"""Every shortcut kind `UnitSpec.shortcut` accepts, by name."""


def register_shortcut_kind(kind: ShortcutKind) -> ShortcutKind:
    """Declare a shortcut beyond Table 1, from any file: `UnitSpec(shortcut=kind.name)` then
    validates and labels, and `residual.shortcuts.register_shortcut(kind.name)` may give it its
    module. A name is declared once; the same declaration again (a file imported twice) is
    accepted, a different one under a taken name is refused."""
    if not isinstance(kind, ShortcutKind):
        raise TypeError(f"register_shortcut_kind needs a ShortcutKind, got "
                        f"{type(kind).__name__}")
    old = SHORTCUT_KINDS.get(kind.name)
    if old is not None and not _same_declaration(old, kind):
        raise ValueError(f"shortcut kind {kind.name!r} is already registered "
                         f"({old.equation}); pick another name")
    SHORTCUT_KINDS[kind.name] = kind
    return kind


def unregister_shortcut_kind(name: str) -> ShortcutKind:
    """Remove a registered kind (a test's, say); the paper's six stay. The module registered
    for it, if any, goes with `residual.shortcuts.unregister_shortcut`."""
    if name in SHORTCUTS:
        raise ValueError(f"shortcut kind {name!r} is one of the paper's and stays registered")
    if name not in SHORTCUT_KINDS:
        raise KeyError(f"shortcut kind {name!r} is not registered")
    return SHORTCUT_KINDS.pop(name)


def _same_declaration(old: ShortcutKind, new: ShortcutKind) -> bool:
    """Equal fields and the same class by module and name (a re-executed file makes a new
    class object, which dataclass equality would call different)."""
    same_class = (type(old).__module__, type(old).__qualname__) == (
        type(new).__module__, type(new).__qualname__)
    return same_class and all(getattr(old, f.name) == getattr(new, f.name) for f in fields(old))
