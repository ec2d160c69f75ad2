"""The mechanism: does the direct path of Eq. 5/8 say who won and who failed?

Each configuration is classed by its direct-path share at initialisation (why.py's profile,
the mean over seeds of each unit's measured share): how much of dE/dx_L reaches a unit through
the shortcuts and after-addition operations alone.

The class reads the share **across the network with the shape changes divided out**:

    S = prod over units l that keep the shape of  s_l / s_{l+1}     (s_L = 1)

where s_l is unit l's measured share (`direct_path_share[l]`). s_l / s_{l+1} is what unit l's
shortcut and f do to the direct path (Eq. 5's factor 1 for an identity shortcut with identity
f, exactly; Eq. 8's lambda for constant scaling); the units that change the shape (the first of
stages 2 and 3, and the first of all with bottleneck units, whose 64 channels the stem's 16
are not) are left out. Their zero-padded or projected shortcut is the same for every
configuration of a depth and unit type, so it says nothing about a design, yet a zero pad alone
drops half the channels' gradient: the raw first-unit share of an identity shortcut with full
pre-activation is about 0.5 at any depth, which would class the paper's own design as partial.
Neither the raw first-unit share nor the minimum over units can tell identity from a blocking
shortcut for that reason; S can: 1 for identity with identity f, lambda^(units kept) for
constant scaling, the product of the ReLU's masks for the original unit (f = ReLU). S is 0
when nothing reaches the first unit (s_0 = 0: a reshape never zeroes a gradient, so some unit
blocks the path); NaN ("not measured") without a profile, or when every unit changes shape.

- **identity-like**: S >= 0.9;
- **path-blocking**: S < 0.5 (less than half of the direct path is left);
- **partial**: in between.
"""

from __future__ import annotations

import math

import pandas as pd

from .load import Configuration, SearchRecord
from .separation import NOT_RESOLVED, comparable, names_of, plural, versus_best, winner_table
from .verdict import PLACEMENT_NAMES
from .why import profiles

IDENTITY_LIKE, PATH_BLOCKING = 0.9, 0.5
PRE_ACTIVATIONS = ("relu_preact", "full_preact")
CLASSES = ("identity-like", "partial", "path-blocking", "not measured")


def direct_share(config: Configuration) -> float:
    """S of the module docstring, from the seed-mean profile at initialisation."""
    init = profiles(config)[0]
    shares = (init or {}).get("direct_path_share") or []
    stage = (init or {}).get("stage") or []
    if not shares or len(stage) != len(shares):
        return math.nan
    if shares[0] == 0:
        return 0.0
    reshapes = {l for l in range(1, len(stage)) if stage[l] != stage[l - 1]}
    if config.unit.get("bottleneck"):
        reshapes.add(0)
    kept = [l for l in range(len(shares)) if l not in reshapes]
    if not kept:
        return math.nan
    s = [*shares, 1.0]
    product = 1.0
    for l in kept:
        product *= s[l] / s[l + 1] if s[l + 1] > 0 else 0.0
    return product


def share_class(share: float) -> str:
    if math.isnan(share):
        return "not measured"
    return ("identity-like" if share >= IDENTITY_LIKE else
            "path-blocking" if share < PATH_BLOCKING else "partial")


def _described(config: Configuration, share: float) -> str:
    placement = config.unit.get("activation", "original")
    measured = "not measured" if math.isnan(share) else f"share {share:.2f}, {share_class(share)}"
    return f"{config.label} ({measured}, {PLACEMENT_NAMES.get(placement, placement)})"


def mechanism_lines(record: SearchRecord) -> list[str]:
    """The three questions: the winner set's class, the path-blocking configurations' fate,
    and where identity with full pre-activation stands. None without a configuration at the
    full budget."""
    configs = {c.key: c for c in comparable(record)}
    table = winner_table(record).set_index("key", drop=False)
    if table.empty:
        return []
    shares = {k: direct_share(c) for k, c in configs.items()}
    resolved = bool((table["test"] != "none").any())
    return [_winner_set_line(table, configs, shares, resolved),
            _blocking_line(table, configs, shares),
            _full_preact_line(record, table, configs, resolved)]


def _winner_set_line(table: pd.DataFrame, configs: dict[str, Configuration],
                     shares: dict[str, float], resolved: bool) -> str:
    question = ("Mechanism: is every configuration in the winner set identity-like (direct-path "
                "share S >= 0.9 at initialisation, shape changes divided out) with a "
                "pre-activation placement?")
    winners = list(table.index[table["status"].isin(["best", "tied"])]) if resolved else []
    if not resolved:
        best = min(table.index, key=lambda k: (table.at[k, "mean"], k))
        return (f"{question} Not resolved (one seed): no winner set; the best by mean is "
                f"{_described(configs[best], shares[best])}.")
    good = [k for k in winners if share_class(shares[k]) == "identity-like"
            and configs[k].unit.get("activation") in PRE_ACTIVATIONS]
    unmeasured = [k for k in winners if math.isnan(shares[k])]
    bad = [k for k in winners if k not in good and k not in unmeasured]
    answer = ("No" if bad else "Not measured" if unmeasured else "Yes")
    parts = [f"{plural(len(winners), 'configuration')} in the winner set"]
    if bad:
        parts.append("not identity-like with pre-activation: "
                     + ", ".join(_described(configs[k], shares[k]) for k in bad))
    if good:
        parts.append("identity-like with pre-activation: "
                     + ", ".join(_described(configs[k], shares[k]) for k in good))
    if unmeasured:
        parts.append("not measured: " + names_of([configs[k].label for k in unmeasured]))
    return f"{question} {answer}: " + "; ".join(parts) + "."


def _blocking_line(table: pd.DataFrame, configs: dict[str, Configuration],
                   shares: dict[str, float]) -> str:
    question = ("Mechanism: is every path-blocking configuration (S < 0.5) that trained the "
                "full budget separated worse than the best?")
    blocking = [k for k in table.index if configs[k].full_budget
                and share_class(shares[k]) == "path-blocking"]
    unmeasured = sum(1 for k in table.index if configs[k].full_budget and math.isnan(shares[k]))
    missing = f" ({plural(unmeasured, 'configuration')} not measured)" if unmeasured else ""
    if not blocking:
        return f"{question} None measured: no path-blocking configuration{missing}."
    status = {k: table.at[k, "status"] for k in blocking}

    def said(k: str) -> str:
        row = table.loc[k]
        where = "the best" if row["status"] == "best" else (
            "one seed" if row["status"] == "unresolved" else versus_best(row))
        return f"{configs[k].label} (S {shares[k]:.2f}, {row['mean']:.2f}%, {where})"

    groups = {"separated behind": "behind", "in the winner set": ("best", "tied"),
              NOT_RESOLVED: "unresolved"}
    parts = [f"{name}: " + ", ".join(said(k) for k in blocking if status[k] in wanted)
             for name, wanted in groups.items()
             if any(status[k] in wanted for k in blocking)]
    answer = ("No" if any(s in ("best", "tied") for s in status.values()) else
              "Not resolved (one seed)" if "unresolved" in status.values() else "Yes")
    best = table.index[0]
    return (f"{question} {answer}: {plural(len(blocking), 'path-blocking configuration')}, "
            f"the best {configs[best].label} ({table.at[best, 'mean']:.2f}%); "
            + "; ".join(parts) + f"{missing}.")


def _full_preact_line(record: SearchRecord, table: pd.DataFrame,
                      configs: dict[str, Configuration], resolved: bool) -> str:
    question = "Mechanism: is identity with full pre-activation itself in the winner set?"
    mine = [k for k in table.index if configs[k].unit.get("shortcut") == "identity"
            and configs[k].unit.get("activation") == "full_preact"]
    if not mine:
        sampled = any(c.unit.get("shortcut") == "identity"
                      and c.unit.get("activation") == "full_preact" for c in record.configurations)
        return (f"{question} Not sampled: no configuration with identity shortcuts and full "
                f"pre-activation {'trained the full budget' if sampled else 'was sampled'}.")
    words = {"best": "the best", "tied": "tied with the best", "behind": "separated behind",
             "unresolved": NOT_RESOLVED}

    def said(k: str) -> str:
        row = table.loc[k]
        if not resolved:
            return f"{configs[k].label} ({row['mean']:.2f}%, {NOT_RESOLVED})"
        extra = f", {versus_best(row)}" if row["status"] in ("tied", "behind") else ""
        return f"{configs[k].label} ({row['mean']:.2f}%, {words[row['status']]}{extra})"

    status = [table.at[k, "status"] for k in mine] if resolved else ["unresolved"]
    inside = [s in ("best", "tied") for s in status]
    answer = ("Yes" if all(inside) else "Partly" if any(inside) else
              "Not resolved (one seed)" if "behind" not in status else "No")
    return f"{question} {answer}: " + ", ".join(said(k) for k in mine) + "."

