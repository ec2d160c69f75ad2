"""The verdict: one sentence per question of PAPER.md section 7, each with its numbers.

- Which configurations won (the winner set), and is full pre-activation with identity
  shortcuts first among placements and among shortcuts? Each answer is first, tied first
  (the others named), behind (separated; who is ahead named) or not resolved (one seed), by
  search/compare.py's rule (separation.py says it in words).
- By how much over the original unit, with the interval of the difference (compare.py's test:
  paired t over shared seeds, else Welch t)? If it crosses zero: not separated, and about how
  many seeds the observed spread would need.
- Are the paper's failures (constant scaling with s = 1, exclusive gating near b_g = 0, the
  dropout shortcut) failures here (the ranking's fail label)?

The mechanism's questions (the direct-path share, Eq. 5/8) are mechanism.py's. Differences
are in points of validation error (the ranking's objective), percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from search.compare import compare_to_best, winner_set

from .load import Configuration, SearchRecord
from .separation import (
    BEHIND,
    FIRST,
    NOT_RESOLVED,
    TIED,
    Difference,
    by_seed,
    comparable,
    difference,
    how_compared,
    margin,
    names_of,
    plural,
    seeds_needed,
    standing,
    winner_table,
)

# Re-exported (search.report, trend.py and paper.py read them here); their home is separation.py.
__all__ = ["Difference", "comparable", "difference", "seeds_needed"]

WINNERS_NAMED = 12
"""The winner set's members named in its line; a search of 1,000 trial-seeds had 202."""
PLACEMENT_NAMES = {"original": "the original unit", "bn_after_add": "BN after addition",
                   "relu_before_add": "ReLU before addition",
                   "relu_preact": "ReLU-only pre-activation",
                   "full_preact": "full pre-activation"}


def _best_by(configs: list[Configuration],
             key: Callable[[Configuration], object]) -> dict[object, Configuration]:
    """The best-ranked configuration for each value of `key`, in rank order."""
    best: dict[object, Configuration] = {}
    for config in sorted(configs, key=lambda c: c.rank):
        best.setdefault(key(config), config)
    return best


def _activation(config: Configuration) -> object:
    return config.unit.get("activation")


def _shortcut(config: Configuration) -> object:
    return config.unit.get("shortcut")


def _by_depth(configs: list[Configuration]) -> dict[int | None, list[Configuration]]:
    groups: dict[int | None, list[Configuration]] = {}
    for config in configs:
        groups.setdefault(config.depth, []).append(config)
    return groups


def _at_one_depth(configs: list[Configuration], key: Callable[[Configuration], object],
                  wanted: object) -> tuple[list[Configuration], str]:
    """The configurations of one depth, so that a comparison is like with like: the depth
    where `wanted` is measured among the most values of `key`, the deeper on a tie; and
    " at depth D" to say so (empty when every configuration has the same depth)."""
    groups = _by_depth(configs)
    if len(groups) <= 1:
        return configs, ""

    def score(depth: int | None) -> tuple[bool, int, int]:
        values = {key(c) for c in groups[depth]}
        return wanted in values, len(values), depth or 0

    depth = max(groups, key=score)
    return groups[depth], f" at depth {depth}"


def winner_line(record: SearchRecord) -> str:
    """The winner set (compare.py over every comparable configuration), or why it is not
    resolved."""
    configs = {c.key: c for c in comparable(record)}
    table = winner_table(record).set_index("key", drop=False)
    if table.empty:
        return "Winner: none; no configuration trained the full budget."
    said = {k: f"{configs[k].label} ({table.at[k, 'mean']:.2f}%)" for k in table.index}
    at = f"at the full budget of {record.budget} epochs"
    single = [k for k in table.index if table.at[k, "seeds"] < 2]
    if len(single) == len(table):
        first, *rest = sorted(table.index, key=lambda k: (table.at[k, "mean"], k))
        gap = table.at[rest[0], "mean"] - table.at[first, "mean"] if rest else 0.0
        after = f"; next: {said[rest[0]]}, {gap:+.2f} points" if rest else ""
        return (f"Winner: {NOT_RESOLVED}: best on its one seed is {said[first]}, of "
                f"{plural(len(table), 'configuration')} {at}{after}.")
    best = table.index[0]
    if len(single) == len(table) - 1:
        return (f"Winner: not resolved: {said[best]} over {table.at[best, 'seeds']} seeds is "
                f"the only configuration {at} with two seeds or more; {NOT_RESOLVED}: "
                f"{plural(len(single), 'configuration')}.")
    values = {k: by_seed(configs[k]) for k in table.index}
    winners = winner_set(table.reset_index(drop=True))
    behind = [configs[k].label for k in table.index if table.at[k, "status"] == "behind"]
    text = (f"Winner set {at} (not separated from the best, {how_compared(table, values)}): "
            + names_of([said[k] for k in winners], WINNERS_NAMED)
            + (" alone" if len(winners) == 1 else ""))
    if behind:
        text += f"; separated behind: {names_of(behind)}"
    if single:
        text += f"; {NOT_RESOLVED}: {plural(len(single), 'configuration')}"
    return text + "."


def _answer(answers: list[str]) -> str:
    """One word for several parts' answers (FIRST, TIED, BEHIND, NOT_RESOLVED)."""
    resolved = [a for a in answers if a != NOT_RESOLVED]
    if not resolved:
        return "Not resolved (one seed)"
    word = ("Yes" if all(a == FIRST for a in resolved) else
            "No" if all(a == BEHIND for a in resolved) else
            "Tied" if BEHIND not in resolved else "Partly")
    return word + (" where resolved" if len(resolved) < len(answers) else "")


def placements_line(record: SearchRecord) -> str | None:
    """Is full pre-activation first among placements (identity shortcuts), per unit type at
    one depth?"""
    configs = [c for c in comparable(record) if c.unit.get("shortcut") == "identity"]
    parts, answers = [], []
    for bottleneck, name in ((False, "basic"), (True, "bottleneck")):
        mine, where = _at_one_depth([c for c in configs
                                     if bool(c.unit.get("bottleneck")) == bottleneck],
                                    _activation, "full_preact")
        values = {a: by_seed(c) for a, c in _best_by(mine, _activation).items()}
        values = {a: v for a, v in values.items() if v}
        if len(values) < 2:
            continue
        if "full_preact" not in values:
            top = min(values, key=lambda a: np.mean(list(values[a].values())))
            parts.append(f"full pre-activation is not measured with {name} units{where} "
                         f"(lowest mean: {PLACEMENT_NAMES.get(top, top)}, "
                         f"{np.mean(list(values[top].values())):.2f}%)")
            continue
        names = {a: PLACEMENT_NAMES.get(a, str(a)) for a in values}
        answer, words = standing("full_preact", values, names, "placement")
        answers.append(answer)
        parts.append(f"with {name} units{where}, {words}")
    if not parts:
        activations = {c.unit.get("activation") for c in comparable(record)}
        if len(activations) == 1:
            only = activations.pop()
            return (f"First among placements? Not searched: every configuration has "
                    f"{PLACEMENT_NAMES.get(only, only)}.")
        return None
    answer = _answer(answers) if answers else "Not measured"
    return f"First among placements (identity shortcuts)? {answer}: " + "; ".join(parts) + "."


def shortcuts_line(record: SearchRecord) -> str | None:
    """Is the identity shortcut first among shortcut types, with full pre-activation where it
    is measured (else the placement with the most shortcut types), at one depth?"""
    by_activation: dict[str, list[Configuration]] = {}
    for c in comparable(record):
        by_activation.setdefault(c.unit.get("activation", "original"), []).append(c)
    depths = {a: _at_one_depth(cs, _shortcut, "identity") for a, cs in by_activation.items()}
    candidates = {}
    for a, (cs, _) in depths.items():
        values = {s: by_seed(c) for s, c in _best_by(cs, _shortcut).items()}
        candidates[a] = {s: v for s, v in values.items() if v}
    candidates = {a: values for a, values in candidates.items() if len(values) >= 2}
    if not candidates:
        return None
    activation = ("full_preact" if "full_preact" in candidates
                  else max(candidates, key=lambda a: len(candidates[a])))
    values = candidates[activation]
    where = f"with {PLACEMENT_NAMES.get(activation, activation)}{depths[activation][1]}"
    if "identity" not in values:
        top = min(values, key=lambda s: np.mean(list(values[s].values())))
        return (f"First among shortcuts? Not measured: no identity shortcut {where} "
                f"(lowest mean: {top}, {np.mean(list(values[top].values())):.2f}%).")
    answer, words = standing("identity", values, {s: str(s) for s in values}, "shortcut type")
    word = {FIRST: "Yes", TIED: "Tied", BEHIND: "No"}.get(answer, "Not resolved (one seed)")
    return f"First among shortcuts ({where})? {word}: {words}."


def margin_lines(record: SearchRecord) -> list[str]:
    """Full pre-activation over the original unit (identity shortcuts, one depth) where both
    are measured; otherwise the winner (the winner set's best) over the identity/original unit;
    and the winner over the runner-up. compare.py's test (`separation.margin`), so a margin and
    the winner set, or the placements line, never disagree."""
    configs = comparable(record)
    table = winner_table(record)
    lines = []
    identity = [c for c in configs if c.unit.get("shortcut") == "identity"]
    for bottleneck, name in ((False, "basic"), (True, "bottleneck")):
        groups = _by_depth([c for c in identity if bool(c.unit.get("bottleneck")) == bottleneck])
        both = {depth: mine for depth, mine in
                ((d, _best_by(cs, _activation)) for d, cs in groups.items())
                if "full_preact" in mine and "original" in mine}
        if both:  # at one depth, the deepest: the paper's advantage grows with depth
            depth = max(both, key=lambda d: d or 0)
            mine = both[depth]
            where = f" at depth {depth}" if len(groups) > 1 else ""
            placements = compare_to_best({c.key: by_seed(c) for c in mine.values()})
            diff = margin(mine["full_preact"], mine["original"],
                          {"the winner set": table,
                           f"the placements compared ({name} units{where})": placements})
            lines.append(f"Margin of full pre-activation over the original unit ({name} "
                         f"units{where}, pre-activation minus original, validation error): "
                         f"{diff.describe()}.")
    if lines or len(table) < 2:
        return lines
    keys, families = {c.key: c for c in configs}, {"the winner set": table}
    top = keys[table["key"].iloc[0]]
    reference = next((c for c in sorted(identity, key=lambda c: c.rank)
                      if c.unit.get("activation") == "original"
                      and not c.unit.get("bottleneck")), None)
    if reference is not None and reference is not top:
        lines.append(f"Margin of the winner over the original unit ({top.label} minus "
                     f"{reference.label}): {margin(top, reference, families).describe()}.")
    rest = table.iloc[1:]
    runner_up = keys[(rest[rest["seeds"] >= 2] if (rest["seeds"] >= 2).any()
                      else rest)["key"].iloc[0]]
    if runner_up is not reference:
        lines.append(f"Margin of the winner over the runner-up ({top.label} minus "
                     f"{runner_up.label}): {margin(top, runner_up, families).describe()}.")
    return lines


FAILURE_FAMILIES = (
    ("constant scaling with s = 1 and lambda <= 0.5",
     lambda u: u.get("shortcut") == "scaling" and _close(u.get("branch_scale"), 1.0)
     and _number(u.get("lam")) <= 0.5 + 1e-9),
    ("exclusive gating with b_g in [-5, 0]",
     lambda u: u.get("shortcut") == "exclusive_gate" and (u.get("gate_bias") or 0.0) >= -5.0),
    ("the dropout shortcut with p >= 0.5",
     lambda u: u.get("shortcut") == "dropout" and not u.get("dropout_rescale")
     and _number(u.get("dropout_p")) >= 0.5 - 1e-9),
)
"""Table 1's "fail" rows as families, within the ranges the paper measured: s = 1 failed at
lambda 0 and 0.5, exclusive gating for every b_g from 0 to -5, the dropout shortcut at p = 0.5.
A sampled lambda near 1 (or p near 0) is nearly the identity shortcut, which the paper never
called a failure, so it is not counted as one of its failures either way."""


def _number(value: object) -> float:
    """A unit's parameter as a float; NaN (never in a family) when it is missing."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _close(a: object, b: float) -> bool:
    return abs(_number(a) - b) < 1e-6


def failures(record: SearchRecord) -> list[dict[str, object]]:
    """Per failure family: the configurations measured and those labelled fail here."""
    out = []
    for family, test in FAILURE_FAMILIES:
        mine = [c for c in comparable(record) if test(c.unit)]
        if mine:
            failed = [c for c in mine if c.fail]
            out.append({"family": family, "measured": len(mine), "fail here": len(failed),
                        "configurations": ", ".join(f"{c.label} ({c.fail or 'no fail'}, "
                                                    f"test {_test(c)})" for c in mine)})
    return out


def _test(config: Configuration) -> str:
    value = config.row.get("test_error_mean")
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def failures_line(record: SearchRecord, rule: str) -> str | None:
    rows = failures(record)
    if not rows:
        return None
    total = sum(int(r["measured"]) for r in rows)
    failed = sum(int(r["fail here"]) for r in rows)
    parts = ", ".join(f"{r['family']} {r['fail here']}/{r['measured']}" for r in rows)
    answer = "Yes" if failed == total else "Partly" if failed else "No"
    others = [c for c in comparable(record) if c.fail
              and not any(test(c.unit) for _, test in FAILURE_FAMILIES)]
    extra = (f"; {len(others)} configuration{'s' if len(others) != 1 else ''} outside "
             f"these families fail here too ({', '.join(c.label for c in others[:4])}"
             f"{', ...' if len(others) > 4 else ''})" if others else "")
    return (f"The paper's failures fail here? {answer}: {parts} labelled fail{extra} "
            f"({rule}).")
