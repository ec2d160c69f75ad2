"""The verdict: one sentence per question of PAPER.md section 7, each with its numbers.

- Which configuration won, and is full pre-activation with identity shortcuts first among
  placements and among shortcuts?
- By how much over the original unit, with the 95% interval of the difference (Welch t over
  seeds)? If the interval crosses zero: not separated, and about how many seeds the observed
  spread would need.
- Are the paper's failures (constant scaling with s = 1, exclusive gating near b_g = 0, the
  dropout shortcut) failures here (the ranking's fail label)?

Differences are in points of validation error (the ranking's objective), percent.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .load import Configuration, SearchRecord

PLACEMENT_NAMES = {"original": "the original unit", "bn_after_add": "BN after addition",
                   "relu_before_add": "ReLU before addition",
                   "relu_preact": "ReLU-only pre-activation",
                   "full_preact": "full pre-activation"}


@dataclass(frozen=True)
class Difference:
    """a - b in points of validation error, with the 95% Welch interval over seeds."""

    a: str
    b: str
    mean: float
    low: float
    high: float
    n_a: int
    n_b: int
    sd: float
    """The observed spread: sqrt((sd_a^2 + sd_b^2) / 2), points."""

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def separated(self) -> bool:
        return self.has_interval and (self.low > 0 or self.high < 0)

    def seeds_needed(self, limit: int = 10_000) -> int | None:
        return seeds_needed(self.mean, self.sd, limit)

    def describe(self) -> str:
        text = f"{self.mean:+.2f} points"
        if not self.has_interval:
            return text + f" (no interval: {min(self.n_a, self.n_b)} seed)"
        text += (f" (95% interval {self.low:+.2f} to {self.high:+.2f}, Welch t over "
                 f"{self.n_a} and {self.n_b} seeds)")
        if self.separated:
            return text + ": separated"
        needed = self.seeds_needed()
        more = ("no number of seeds would separate them" if needed is None
                else f"the observed spread (sd {self.sd:.2f} points) would need about "
                     f"{needed} seeds per configuration")
        return text + f": not separated; {more}"


def difference(a: Configuration, b: Configuration) -> Difference:
    """a's validation error minus b's over their seeds at the budget (percent points)."""
    x = 100 * np.asarray(a.values("val_error"), dtype=float)
    y = 100 * np.asarray(b.values("val_error"), dtype=float)
    if len(x) == 0 or len(y) == 0:
        mean = 100 * (float(a.row.get("val_error_mean", math.nan))
                      - float(b.row.get("val_error_mean", math.nan)))
        return Difference(a.label, b.label, mean, math.nan, math.nan, len(x), len(y), math.nan)
    mean = float(x.mean() - y.mean())
    sd_x = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    sd_y = float(y.std(ddof=1)) if len(y) > 1 else math.nan
    sd = math.sqrt((sd_x ** 2 + sd_y ** 2) / 2)
    low = high = math.nan
    if len(x) > 1 and len(y) > 1:
        if sd_x == 0 and sd_y == 0:
            low = high = mean
        else:
            interval = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
            low, high = float(interval.low), float(interval.high)
    return Difference(a.label, b.label, mean, low, high, len(x), len(y), sd)


def seeds_needed(diff: float, sd: float, limit: int = 10_000) -> int | None:
    """The smallest n (seeds per configuration) with t(0.975, 2n-2) * sd * sqrt(2/n) < |diff|:
    how many seeds the observed spread needs before a difference this size is separated.
    None when no n up to `limit` is enough (or there is no difference)."""
    if math.isnan(diff) or math.isnan(sd) or diff == 0:
        return None
    for n in range(2, limit + 1):
        if stats.t.ppf(0.975, 2 * n - 2) * sd * math.sqrt(2 / n) < abs(diff):
            return n
    return None


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _err(config: Configuration) -> str:
    return f"{100 * float(config.row.get('val_error_mean', math.nan)):.2f}%"


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


def comparable(record: SearchRecord) -> list[Configuration]:
    return [c for c in record.configurations if c.comparable]


def winner_line(record: SearchRecord) -> str:
    configs = comparable(record)
    if not configs:
        return "Winner: none; no configuration trained the full budget."
    top = min(configs, key=lambda c: c.rank)
    r = top.row
    half = r.get("val_error_ci95")
    spread = "" if half is None or math.isnan(half) else f" ± {100 * half:.2f}"
    test = r.get("test_error_mean")
    test = "" if test is None or math.isnan(test) else f", test {100 * test:.2f}%"
    return (f"Winner: {top.label}, rank {top.rank} of {len(record.configurations)} at the "
            f"full budget of {record.budget} epochs (validation error {_err(top)}{spread} "
            f"over {int(r.get('seeds', 0))} seeds{test}).")


def placements_line(record: SearchRecord) -> str | None:
    configs = [c for c in comparable(record) if c.unit.get("shortcut") == "identity"]
    parts, places = [], []
    for bottleneck, name in ((False, "basic"), (True, "bottleneck")):
        mine, where = _at_one_depth([c for c in configs
                                     if bool(c.unit.get("bottleneck")) == bottleneck],
                                    _activation, "full_preact")
        best = _best_by(mine, _activation)
        if len(best) < 2:
            continue
        order = list(best)
        top = best[order[0]]
        if "full_preact" not in best:
            parts.append(f"full pre-activation is not measured with {name} units{where} "
                         f"(best: {PLACEMENT_NAMES.get(order[0], order[0])}, {_err(top)})")
            continue
        place = order.index("full_preact") + 1
        places.append(place)
        tail = "" if place == 1 else f" vs {PLACEMENT_NAMES.get(order[0])}'s {_err(top)}"
        parts.append(f"full pre-activation is {_ordinal(place)} of {len(order)} with {name} "
                     f"units{where} ({_err(best['full_preact'])}{tail})")
    if not parts:
        activations = {c.unit.get("activation") for c in comparable(record)}
        if len(activations) == 1:
            only = activations.pop()
            return (f"First among placements? Not searched: every configuration has "
                    f"{PLACEMENT_NAMES.get(only, only)}.")
        return None
    answer = ("Not measured" if not places else "Yes" if all(p == 1 for p in places)
              else "Partly" if 1 in places else "No")
    return f"First among placements (identity shortcuts)? {answer}: " + "; ".join(parts) + "."


def shortcuts_line(record: SearchRecord) -> str | None:
    configs = comparable(record)
    by_activation: dict[str, list[Configuration]] = {}
    for c in configs:
        by_activation.setdefault(c.unit.get("activation", "original"), []).append(c)
    depths = {a: _at_one_depth(cs, _shortcut, "identity") for a, cs in by_activation.items()}
    candidates = {a: _best_by(cs, _shortcut) for a, (cs, _) in depths.items()}
    candidates = {a: best for a, best in candidates.items() if len(best) >= 2}
    if not candidates:
        return None
    activation = ("full_preact" if "full_preact" in candidates
                  else max(candidates, key=lambda a: len(candidates[a])))
    best = candidates[activation]
    order = list(best)
    where = f"with {PLACEMENT_NAMES.get(activation, activation)}{depths[activation][1]}"
    top = best[order[0]]
    if "identity" not in best:
        return (f"First among shortcuts? Not measured: no identity shortcut {where} "
                f"(best: {order[0]}, {_err(top)}).")
    place = order.index("identity") + 1
    identity = best["identity"]
    tail = "" if place == 1 else f" vs {order[0]}'s {_err(top)}"
    return (f"First among shortcuts ({where})? {'Yes' if place == 1 else 'No'}: identity is "
            f"{_ordinal(place)} of {len(order)} shortcut types ({_err(identity)}{tail}).")


def margin_lines(record: SearchRecord) -> list[str]:
    """Full pre-activation over the original unit (identity shortcuts, one depth) where both
    are measured; otherwise the winner over the identity/original unit; and the winner over the
    runner-up."""
    configs = sorted(comparable(record), key=lambda c: c.rank)
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
            diff = difference(mine["full_preact"], mine["original"])
            lines.append(f"Margin of full pre-activation over the original unit ({name} "
                         f"units{where}, pre-activation minus original, validation error): "
                         f"{diff.describe()}.")
    if lines or len(configs) < 2:
        return lines
    top = configs[0]
    reference = next((c for c in identity if c.unit.get("activation") == "original"
                      and not c.unit.get("bottleneck")), None)
    if reference is not None and reference is not top:
        diff = difference(top, reference)
        lines.append(f"Margin of the winner over the original unit ({top.label} minus "
                     f"{reference.label}): {diff.describe()}.")
    runner_up = configs[1]
    if runner_up is not reference:
        diff = difference(top, runner_up)
        lines.append(f"Margin of the winner over the runner-up ({top.label} minus "
                     f"{runner_up.label}): {diff.describe()}.")
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
