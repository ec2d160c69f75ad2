"""Why: the propagation each configuration measured, beside what Eq. 5 and 8 predict.

The direct-path share of unit l is ||dE/dx_l|| through the shortcuts alone over ||dE/dx_L||.
With identity shortcuts and an identity after-addition f it is 1 (Eq. 5's "1"); a shortcut
that multiplies x by a factor puts the product of the factors of units l..L-1 on it (Eq. 8):
lambda for constant scaling, 1 - g for a gate (the measured mean carry per unit), 1 - p for the
paper's (unscaled) dropout, in expectation. A 1x1 conv shortcut puts a product of Jacobians
there: no closed form, no prediction.

The prediction assumes f = identity and no change of shape; the measured share also carries
what the network adds to that ideal (the ReLU after the addition of the original unit, the
zero-padded subsampling where a stage begins). Dividing by the share of the identity-shortcut
configuration with the same placement, unit type and depth cancels those, and leaves what the
shortcut itself does: that ratio is the one to hold against the prediction. Where the last
stage has two units or more, its second unit sees no change of shape down to x_L: there the
measured share of an identity shortcut with identity f is exactly Eq. 5's 1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from residual.placements import PLACEMENTS

from .load import Configuration, SearchRecord


def unit_factor(unit: dict[str, Any], gate_carry: float | None) -> float:
    """What one unit's shortcut multiplies the direct path by (Eq. 5/8); NaN if unknown."""
    kind = unit.get("shortcut")
    if kind == "identity":
        return 1.0
    if kind == "scaling":
        return float(unit.get("lam", 0.5))
    if unit.get("gate_bias") is not None and kind in ("exclusive_gate", "shortcut_gate"):
        return math.nan if gate_carry is None else float(gate_carry)
    if kind == "dropout":
        return 1.0 if unit.get("dropout_rescale") else 1.0 - float(unit.get("dropout_p", 0.5))
    return math.nan


def predicted_share(unit: dict[str, Any], num_units: int,
                    gate_carry: list[float] | None = None) -> list[float]:
    """Eq. 5/8's direct-path share at every unit l: the product of the factors of l..L-1."""
    factors = [unit_factor(unit, None if gate_carry is None else gate_carry[i])
               for i in range(num_units)]
    shares, product = [], 1.0
    for factor in reversed(factors):
        product *= factor
        shares.append(product)
    return shares[::-1]


def _mean_profile(profiles: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Element-wise mean over seeds of the per-unit lists (same network, same length)."""
    if not profiles:
        return None
    out: dict[str, Any] = {"stage": profiles[0].get("stage")}
    for field in ("direct_path_share", "grad_norm", "input_norm", "shortcut_branch_ratio",
                  "gate_carry"):
        lists = [p.get(field) for p in profiles if p.get(field) is not None]
        lengths = {len(v) for v in lists}
        out[field] = (list(np.mean(np.asarray(lists, dtype=float), axis=0))
                      if lists and len(lengths) == 1 else None)
    return out


def profiles(config: Configuration) -> tuple[dict | None, dict | None, int]:
    """The seed-mean profile at initialisation and at the last epoch every seed reached."""
    runs = [r for r in config.runs if r.propagation and r.outcome != "error"]
    init = _mean_profile([r.propagation[0] for r in runs if 0 in r.propagation])
    ends = [max(r.propagation) for r in runs if len(r.propagation) > 1]
    end_epoch = min(ends) if ends else 0
    end = _mean_profile([r.propagation[end_epoch] for r in runs
                         if end_epoch in r.propagation]) if end_epoch else None
    return init, end, end_epoch


def _first(profile: dict | None, field: str) -> float:
    if profile is None or not profile.get(field):
        return math.nan
    return float(profile[field][0])


def _grad_ratio(profile: dict | None) -> float:
    if profile is None or not profile.get("grad_norm"):
        return math.nan
    grads = profile["grad_norm"]
    return float(grads[0] / max(grads[-1], 1e-30))


def after_addition(activation: str | None) -> str:
    """f in x_{l+1} = f(y_l), in words: Eq. 5 and 8 hold as written only where it is the
    identity."""
    placement = PLACEMENTS.get(activation or "original")
    if placement is None:
        return "?"
    return "+".join(op.upper() if op == "bn" else "ReLU" for op in placement.after_add) \
        or "identity"


def inner_unit(stage: list[int]) -> int | None:
    """The second unit of the last stage: from there to x_L no shape changes, so Eq. 5's
    direct path is exactly the shortcuts' product (None when the last stage has one unit)."""
    if not stage:
        return None
    first = stage.index(max(stage))
    inner = first + 1
    return inner if inner < len(stage) and stage[inner] == stage[first] else None


def _reference_key(config: Configuration) -> tuple:
    unit = config.unit
    return unit.get("activation"), bool(unit.get("bottleneck")), config.depth


def propagation_table(record: SearchRecord) -> pd.DataFrame:
    """Per configuration (rank order): the first unit's direct-path share, predicted (Eq. 5/8)
    and measured, at initialisation and at the end of training, and relative to the
    identity-shortcut configuration with the same placement, unit type and depth."""
    rows = []
    for config in record.configurations:
        init, end, end_epoch = profiles(config)
        if init is None:
            continue
        n = len(init["direct_path_share"] or [])
        predicted_init = predicted_share(config.unit, n, init.get("gate_carry"))
        predicted_end = (predicted_share(config.unit, n, end.get("gate_carry"))
                         if end is not None else [math.nan] * n)
        inner = inner_unit(init.get("stage") or [])
        shares = init["direct_path_share"] or []
        rows.append({
            "rank": config.rank, "configuration": config.label,
            "shortcut": config.unit.get("shortcut"), "activation": config.unit.get("activation"),
            "f": after_addition(config.unit.get("activation")),
            "fail": config.fail, "units": n, "end epoch": end_epoch,
            "predicted init": predicted_init[0] if n else math.nan,
            "measured init": _first(init, "direct_path_share"),
            "predicted end": predicted_end[0] if n else math.nan,
            "measured end": _first(end, "direct_path_share"),
            "last stage unit": math.nan if inner is None else inner,
            "last stage predicted init": math.nan if inner is None else predicted_init[inner],
            "last stage measured init": math.nan if inner is None else float(shares[inner]),
            "gate carry init": (float(np.mean(init["gate_carry"])) if init.get("gate_carry")
                                else math.nan),
            "grad first/last init": _grad_ratio(init),
            "_reference": _reference_key(config),
            "_identity": config.unit.get("shortcut") == "identity",
        })
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    references: dict[tuple, tuple[float, float]] = {}
    for _, r in table[table["_identity"]].iterrows():
        references.setdefault(r["_reference"], (r["measured init"], r["measured end"]))
    relative_init, relative_end = [], []
    for _, r in table.iterrows():
        ref = references.get(r["_reference"])
        relative_init.append(r["measured init"] / ref[0] if ref and ref[0] else math.nan)
        relative_end.append(r["measured end"] / ref[1] if ref and ref[1] else math.nan)
    table["relative init"] = relative_init
    table["relative end"] = relative_end
    return table.drop(columns=["_reference", "_identity"])
