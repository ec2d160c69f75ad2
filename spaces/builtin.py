"""The paper's spaces: Table 1 (shortcuts), Table 2 (activations) and both axes jointly.

Each is a factory of a `Scale`, registered by name; its anchors are the paper's rows
(`residual.paper`), enqueued so every search measures the known answers first.
"""

from __future__ import annotations

from typing import Any

import optuna

from residual import ACTIVATIONS, SHORTCUTS
from residual.paper import TABLE1, TABLE2
from residual.specs import GATED

from .registry import register_space
from .scales import Scale
from .space import ONE_MINUS_LAMBDA, SearchSpace


def suggest_shortcut(trial: optuna.trial.BaseTrial) -> str:
    """Table 1's axis: the shortcut, with the parameter only that shortcut has (conditional)."""
    shortcut = trial.suggest_categorical("shortcut", list(SHORTCUTS))
    if shortcut == "scaling":
        trial.suggest_float("lam", 0.0, 1.0)
        trial.suggest_categorical("branch_scale", [1.0, ONE_MINUS_LAMBDA])
    elif shortcut in GATED:
        trial.suggest_float("gate_bias", -10.0, 0.0)  # the paper searched 0, -1, ..., -10
    elif shortcut == "dropout":
        trial.suggest_float("dropout_p", 0.1, 0.9)
    return shortcut


def _table1_anchor(unit) -> dict[str, Any]:
    """A Table 1 row as the parameters `suggest_shortcut` samples."""
    anchor: dict[str, Any] = {"shortcut": unit.shortcut}
    if unit.shortcut == "scaling":
        frozen = unit.branch_scale != 1.0 and unit.branch_scale == 1.0 - unit.lam
        anchor.update(lam=unit.lam, branch_scale=ONE_MINUS_LAMBDA if frozen else 1.0)
    elif unit.gated:
        anchor["gate_bias"] = unit.gate_bias
    elif unit.shortcut == "dropout":
        anchor["dropout_p"] = unit.dropout_p
    return anchor


@register_space("paper-table1", "shortcut types (Table 1): identity, constant scaling, "
                "exclusive and shortcut-only gating, 1x1 conv, dropout; original unit")
def paper_table1(scale: Scale) -> SearchSpace:
    def define(trial):
        suggest_shortcut(trial)

    return SearchSpace("paper-table1", define, fixed={"activation": "original"},
                       anchors=[_table1_anchor(row.unit) for row in TABLE1])


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
