"""The paper's spaces: Table 1 (shortcuts), Table 2 (activations), both axes jointly, and the
placement's advantage with depth (Table 3, Fig. 6).

Each is a factory of a `Scale`, registered by name; its anchors are the paper's rows
(`residual.paper`), enqueued so every search measures the known answers first. What a shortcut
samples and how its Table 1 row reads as parameters is its kind's declaration
(`residual.kinds`), so this module names no shortcut parameter itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from residual import ACTIVATIONS, SHORTCUT_KINDS, SHORTCUTS, ShortcutKind, UnitSpec
from residual.paper import TABLE1, TABLE2

from .registry import register_space
from .scales import Scale
from .space import SearchSpace, SpaceError

if TYPE_CHECKING:
    import optuna


def suggest_shortcut(trial: optuna.trial.BaseTrial,
                     kinds: Iterable[str | ShortcutKind] = SHORTCUTS) -> str:
    """Table 1's axis: the shortcut, then the parameters only that shortcut has (conditional),
    each within its kind's declared search range or choices.

    `kinds` defaults to the paper's six, whatever else is registered, so a built-in space
    searches Table 1 exactly; a space of one's own passes its kinds (names or `ShortcutKind`s).
    """
    by_name = {kind.name: kind for kind in map(_kind, kinds)}
    shortcut = trial.suggest_categorical("shortcut", list(by_name))
    by_name[shortcut].suggest(trial)
    return shortcut


def table1_anchor(unit: UnitSpec) -> dict[str, Any]:
    """A Table 1 row as the parameters `suggest_shortcut` samples (its kind's mapping)."""
    return SHORTCUT_KINDS[unit.shortcut].to_search_params(unit)


def _kind(kind: str | ShortcutKind) -> ShortcutKind:
    if isinstance(kind, ShortcutKind):
        return kind
    if kind not in SHORTCUT_KINDS:
        raise SpaceError(f"shortcut kind {kind!r} is not registered; allowed: "
                         f"{' | '.join(SHORTCUT_KINDS)}")
    return SHORTCUT_KINDS[kind]


@register_space("paper-table1", "shortcut types (Table 1): identity, constant scaling, "
                "exclusive and shortcut-only gating, 1x1 conv, dropout; original unit")
def paper_table1(scale: Scale) -> SearchSpace:
    def define(trial):
        suggest_shortcut(trial)

    return SearchSpace("paper-table1", define, fixed={"activation": "original"},
                       anchors=[table1_anchor(row.unit) for row in TABLE1])


@register_space("paper-table2", "activation placements (Table 2) with identity shortcuts, "
                "basic (ResNet-110 at full scale) and bottleneck (ResNet-164) units")
def paper_table2(scale: Scale) -> SearchSpace:
    def define(trial):
        trial.suggest_categorical("activation", list(ACTIVATIONS))
        trial.suggest_categorical("bottleneck", [False, True])

    anchors = [{"activation": row.unit.activation, "bottleneck": row.unit.bottleneck}
               for row in TABLE2]
    return SearchSpace("paper-table2", define, fixed={"shortcut": "identity"}, anchors=anchors)


@register_space("paper-joint", "shortcut x activation x depth (basic units), conditional "
                "shortcut parameters; anchors: original vs full pre-activation")
def paper_joint(scale: Scale) -> SearchSpace:
    def define(trial):
        suggest_shortcut(trial)
        trial.suggest_categorical("activation", list(ACTIVATIONS))
        trial.suggest_categorical("depth", list(scale.depth_choices))

    anchors = [{"shortcut": "identity", "activation": activation, "depth": scale.basic_depth}
               for activation in ("original", "full_preact")]
    return SearchSpace("paper-joint", define, anchors=anchors)


DEPTH_PLACEMENTS = ("original", "relu_preact", "full_preact")
"""The paper's Fig. 6 and Table 3 contrast: the original unit against pre-activation."""


@register_space("paper-depth", "activation placement (original, ReLU-only and full "
                "pre-activation) x depth x unit type, identity shortcuts: the pre-activation "
                "advantage as it grows with depth (Table 3, Fig. 6)")
def paper_depth(scale: Scale) -> SearchSpace:
    depths = sorted(set().union(*scale.trend_depths.values()))

    def define(trial):
        trial.suggest_categorical("activation", list(DEPTH_PLACEMENTS))
        trial.suggest_categorical("bottleneck", [False, True])
        trial.suggest_categorical("depth", depths)

    anchors = [{"activation": activation, "bottleneck": bottleneck, "depth": depth}
               for bottleneck in (False, True) for depth in scale.trend_depths[bottleneck]
               for activation in DEPTH_PLACEMENTS]
    return SearchSpace("paper-depth", define, fixed={"shortcut": "identity"}, anchors=anchors)


@register_space("paper-rediscover", "Table 1's shortcuts (with their conditional parameters) x "
                "Table 2's five placements, deep bottleneck units (ResNet-56 at small, "
                "ResNet-164 at full); the one anchor is the paper's baseline, not its answer")
def paper_rediscover(scale: Scale) -> SearchSpace:
    # Fixed before any search ran, from the depth search (docs/RESULTS.md): with bottleneck
    # units the original unit's gap to full pre-activation is separated at three seeds from
    # ResNet-56 up (+3.95 points at 56, +7.25 at 110), so that is where a search can tell the
    # placements apart; ResNet-56 is the depth that fits a session on two CPU cores. The answer
    # (identity with full pre-activation) is not an anchor: the search must find it.
    def define(trial):
        suggest_shortcut(trial)
        trial.suggest_categorical("activation", list(ACTIVATIONS))

    return SearchSpace("paper-rediscover", define, fixed={"bottleneck": True},
                       anchors=[{"shortcut": "identity", "activation": "original"}])
