"""Which configurations of a search are separated: search/compare.py's rule (the race uses it
too) applied to its configurations, and the words every verdict line says it with.

The best is the lowest mean among configurations with two seeds or more; every other is
compared with it, by paired t over the seeds both ran (two or more), else Welch t, at
1 - 0.05/m (Bonferroni over the m comparisons with the best). A configuration is then

- **first**: the best, and separated from every other configuration compared;
- **tied first with N others**: not separated from the best (its interval reaches zero), the
  others named; the best and those tied with it are the **winner set**;
- **behind**: separated from the best, which is named;
- **not resolved (one seed)**: one seed has no spread; it is left out of a comparison among
  configurations with two seeds or more, and counted.

A margin between two configurations (`margin`) takes the same test at 95%; where one side is
the best of a comparison a verdict line states (the winner set, the placements), that line's own
row (its level), so a margin never calls separated what a verdict line calls tied.
`difference` is Welch t at 95% over all seeds (the depth trend, Table 3).
Values are points of validation error (percent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from search.compare import compare_to_best, welch, winner_set

from .load import Configuration, SearchRecord

NOT_RESOLVED = "not resolved (one seed)"
FIRST, TIED, BEHIND = "first", "tied first", "behind"


@dataclass(frozen=True)
class Difference:
    """a - b in points of validation error, with its interval over seeds."""

    a: str
    b: str
    mean: float
    low: float
    high: float
    n_a: int
    n_b: int
    sd: float
    """The observed spread: sqrt((sd_a^2 + sd_b^2) / 2) for Welch t, the sd of the per-seed
    differences for paired t (points)."""
    test: str = "Welch t"
    level: float = 0.95
    shared: int = 0
    """Seeds both ran (the paired t's n)."""
    comparisons: int = 1
    """m of the Bonferroni level, when it is a verdict line's row (1: a 95% interval)."""
    family: str = ""
    """The verdict line whose comparison it is ("the winner set"), if it is one's row."""

    @property
    def has_interval(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def separated(self) -> bool:
        return self.has_interval and (self.low > 0 or self.high < 0)

    def seeds_needed(self, limit: int = 10_000) -> int | None:
        return seeds_needed(self.mean, self.sd, limit, self.test == "paired t", self.level)

    def describe(self) -> str:
        text = f"{self.mean:+.2f} points"
        if not self.has_interval:
            return text + f" (no interval: {min(self.n_a, self.n_b)} seed)"
        over = (f"over {self.shared} shared seeds" if self.test == "paired t"
                else f"over {self.n_a} and {self.n_b} seeds")
        bonferroni = (f", Bonferroni over {plural(self.comparisons, 'comparison')} with the "
                      f"best, as {self.family}" if self.family else "")
        text += (f" ({percent_level(self.level)} interval {self.low:+.2f} to {self.high:+.2f}, "
                 f"{self.test} {over}{bonferroni})")
        if self.separated:
            return text + ": separated"
        needed = self.seeds_needed()
        more = ("no number of seeds would separate them" if needed is None
                else f"the observed spread (sd {self.sd:.2f} points) would need about "
                     f"{needed} seeds per configuration")
        return text + f": not separated; {more}"


def difference(a: Configuration, b: Configuration) -> Difference:
    """a's validation error minus b's over all their seeds at the budget, Welch t at 95%."""
    x = 100 * np.asarray(a.values("val_error"), dtype=float)
    y = 100 * np.asarray(b.values("val_error"), dtype=float)
    if len(x) == 0 or len(y) == 0:
        mean = 100 * (float(a.row.get("val_error_mean", math.nan))
                      - float(b.row.get("val_error_mean", math.nan)))
        return Difference(a.label, b.label, mean, math.nan, math.nan, len(x), len(y), math.nan)
    mean, low, high = (welch(x, y) if len(x) > 1 and len(y) > 1
                       else (float(x.mean() - y.mean()), math.nan, math.nan))
    return Difference(a.label, b.label, mean, low, high, len(x), len(y), _pooled_sd(x, y))


def _pooled_sd(x: np.ndarray, y: np.ndarray) -> float:
    sd_x = float(x.std(ddof=1)) if len(x) > 1 else math.nan
    sd_y = float(y.std(ddof=1)) if len(y) > 1 else math.nan
    return math.sqrt((sd_x ** 2 + sd_y ** 2) / 2)


def seeds_needed(diff: float, sd: float, limit: int = 10_000, paired: bool = False,
                 level: float = 0.95) -> int | None:
    """The smallest n (seeds per configuration) with t(q, 2n-2) * sd * sqrt(2/n) < |diff|
    (paired: t(q, n-1) * sd / sqrt(n), sd of the per-seed differences), q = 1 - (1-level)/2:
    how many seeds the observed spread needs before a difference this size is separated at
    `level`. None when no n up to `limit` is enough (or there is no difference)."""
    if math.isnan(diff) or math.isnan(sd) or diff == 0:
        return None
    q = 1 - (1 - level) / 2
    for n in range(2, limit + 1):
        half = (stats.t.ppf(q, n - 1) * sd / math.sqrt(n) if paired
                else stats.t.ppf(q, 2 * n - 2) * sd * math.sqrt(2 / n))
        if half < abs(diff):
            return n
    return None


def by_seed(config: Configuration, metric: str = "val_error") -> dict[int, float]:
    """{seed: the metric in points (percent)} at the configuration's budget, a race's seeds
    included; NaN values left out."""
    return {seed: 100 * float(v) for seed, v in config.by_seed(metric).items()
            if not math.isnan(float(v))}


def percent_level(level: float) -> str:
    """95%, 98.3%, 99.98%: as many digits as it takes not to round a Bonferroni level over
    many comparisons up to an impossible 100%."""
    for digits in range(3, 16):
        text = f"{100 * level:.{digits}g}"
        if float(text) < 100 or level >= 1:
            return text + "%"
    return text + "%"


def how_compared(table: pd.DataFrame, values: Mapping[object, Mapping]) -> str:
    """The tests and the Bonferroni count of a `compare_to_best` table, in words: "paired t
    over 3 seeds, Bonferroni over 4 comparisons" (paired: the seeds shared with the best;
    Welch: the fewer of the two seed counts)."""
    best = table["key"].iloc[0]
    counts: dict[str, set[int]] = {}
    tested = table[table["test"] != "none"]
    for _, row in tested.iterrows():
        n = (len(set(values[row["key"]]) & set(values[best])) if row["test"] == "paired t"
             else min(int(row["seeds"]), len(values[best])))
        counts.setdefault(row["test"], set()).add(n)
    tests = " and ".join(f"{test} over {min(ns)}{f' to {max(ns)}' if len(ns) > 1 else ''} "
                         f"seeds" for test, ns in counts.items())
    return f"{tests}, Bonferroni over {len(tested)} comparison{_s(len(tested))}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{_s(n)}"


def versus_best(row: pd.Series) -> str:
    """A `compare_to_best` row's difference from the best with its interval."""
    return (f"{row['diff']:+.2f} points, {percent_level(row['level'])} interval "
            f"{row['low']:+.2f} to {row['high']:+.2f}")


def standing(target: object, values: Mapping[object, Mapping], names: Mapping[object, str],
             kind: str) -> tuple[str, str]:
    """(answer, the words): where `target` stands among `values` ({key: {seed: points}}) by
    compare.py: FIRST, TIED, BEHIND or NOT_RESOLVED; `kind` names what is compared (singular)."""
    table = compare_to_best(values).set_index("key", drop=False)
    single = [k for k in table.index if table.at[k, "seeds"] < 2 and k != target]
    compared = len(table) - len(single)

    def said(k: object, interval: bool = False) -> str:
        row = table.loc[k]
        if not interval:
            return f"{names[k]} ({row['mean']:.2f}%)"
        if row["status"] == "best":
            return f"{names[k]} ({row['mean']:.2f}%, the best)"
        return f"{names[k]} ({row['mean']:.2f}%, {versus_best(row)})"

    tail = (f"; {NOT_RESOLVED}: {plural(len(single), 'other ' + kind)} "
            f"({', '.join(map(said, single))})" if single else "")
    if table.at[target, "seeds"] < 2 or compared < 2:
        alone = "" if table.at[target, "seeds"] < 2 else f"; every other {kind} has one seed"
        return NOT_RESOLVED, f"{said(target)} is {NOT_RESOLVED}{alone}{tail}"
    how = how_compared(table, values)
    winners = winner_set(table.reset_index(drop=True))
    if winners == [target]:
        closest = table.index[table["status"] == "behind"][0]
        return FIRST, (f"{said(target)} is first of {compared}, separated from every other "
                       f"({how}; closest: {said(closest, True)}){tail}")
    if target in winners:
        others = [k for k in winners if k != target]
        return TIED, (f"{said(target, True)} is tied first of {compared} with {len(others)} "
                      f"other{_s(len(others))} whose intervals overlap ({how}): "
                      f"{', '.join(said(k, True) for k in others)}{tail}")
    return BEHIND, (f"{names[target]} ({table.at[target, 'mean']:.2f}%) is behind, separated "
                    f"from the best, {said(table.index[0])}: {versus_best(table.loc[target])} "
                    f"({how}){tail}")


def comparable(record: SearchRecord) -> list[Configuration]:
    return [c for c in record.configurations if c.comparable]


def winner_table(record: SearchRecord) -> pd.DataFrame:
    """compare_to_best over every comparable configuration, keyed by configuration key."""
    return compare_to_best({c.key: by_seed(c) for c in comparable(record)})


def best_of(record: SearchRecord) -> Configuration | None:
    """The configuration the verdict calls best (`winner_table`'s first): the lowest mean of
    those with two seeds or more at the budget, a one-seed one only when none has two. Not
    always rank 1: under ASHA a configuration whose other seed was stopped can rank first on
    its one seed. None when no configuration is comparable."""
    table = winner_table(record)
    if table.empty:
        return None
    return {c.key: c for c in comparable(record)}[table["key"].iloc[0]]


def names_of(labels: list[str], limit: int = 6) -> str:
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return ", ".join(labels[:limit]) + more


def margin(a: Configuration, b: Configuration,
           families: Mapping[str, pd.DataFrame] | None = None) -> Difference:
    """a - b (points of validation error) by compare.py's test: paired t over the seeds both
    ran where they share two or more, else Welch t, at 95%.

    `families` are the comparisons a verdict line has stated ({name: compare_to_best table,
    keyed by configuration key}: the winner set, the placements compared). Where one of them
    has a or b as its best and tests the other, its row is the margin instead, at its level
    (Bonferroni over its comparisons); of several, the highest level. The pair's test is the
    same in every family (same seeds), so the intervals are nested: a margin separated at the
    highest level is separated in every family, and one that is not says what that family
    says. A margin never calls separated what a verdict line calls tied."""
    x, y = by_seed(a), by_seed(b)
    found = []
    for name, table in (families or {}).items():
        if not len(table) or table["key"].iloc[0] not in (a.key, b.key):
            continue
        best = table["key"].iloc[0]
        rows = table[(table["key"] == (b.key if best == a.key else a.key))
                     & (table["test"] != "none")]
        if len(rows):
            found.append((float(rows["level"].iloc[0]), name, rows.iloc[0],
                          -1.0 if best == a.key else 1.0, int((table["test"] != "none").sum())))
    if found:
        _, family, row, sign, m = max(found, key=lambda f: f[0])
    else:
        pair = compare_to_best({"a": x, "b": y})
        if len(pair) < 2 or pair["test"].iloc[1] == "none":
            return difference(a, b)
        row, sign, m, family = pair.iloc[1], (1.0 if pair["key"].iloc[1] == "a" else -1.0), 1, ""
    shared = sorted(set(x) & set(y), key=str)
    paired = row["test"] == "paired t"
    sd = (float(np.std([x[s] - y[s] for s in shared], ddof=1)) if paired
          else _pooled_sd(np.array(list(x.values())), np.array(list(y.values()))))
    low, high = sorted((sign * row["low"], sign * row["high"]))
    return Difference(a.label, b.label, sign * float(row["diff"]), float(low), float(high),
                      len(x), len(y), sd, str(row["test"]), float(row["level"]),
                      len(shared) if paired else 0, m, family)
