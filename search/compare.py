"""Which configurations are separated from the best: the one rule the race and the verdict share.

Each configuration brings its objective per seed (points of validation error). The best is the
lowest mean among those with two seeds or more (one seed has no spread to compare). Every other
configuration is compared with it:

- **paired t** over the seeds both ran, when they share two or more: seed s is the same data
  order and split for every configuration, so differences are taken seed by seed (a randomised
  block design, as irace's races pair instances);
- **Welch t** over their seeds otherwise (both with two seeds or more);
- none with one seed: "unresolved".

**Bonferroni** over the m comparisons with the best: each interval is at level 1 - alpha/m, and
a configuration is separated when its interval lies above zero. The interval shown is the test:
a reader never sees an interval that excludes zero beside "tied" (Holm's step-down would
separate a little more often, at the price of intervals that no longer say the decision).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
"""Familywise error rate of one set of comparisons with the best."""

STATUSES = ("best", "tied", "behind", "unresolved")
"""best: the lowest mean; tied: not separated from it (the winner set is best + tied);
behind: separated worse; unresolved: one seed, no interval."""

COLUMNS = ["key", "seeds", "mean", "diff", "low", "high", "level", "test", "status"]


def compare_to_best(values: Mapping[str, Mapping[int, float]],
                    alpha: float = ALPHA) -> pd.DataFrame:
    """One row per configuration, best first then by mean: `key`, `seeds`, `mean`, `diff`
    (its mean minus the best's over the seeds compared), the interval `low`..`high` at
    `level`, `test` (paired t | Welch t | none) and `status` (`STATUSES`)."""
    rows = {key: pd.Series(by_seed, dtype=float).dropna() for key, by_seed in values.items()}
    rows = {key: s for key, s in rows.items() if len(s)}
    if not rows:
        return pd.DataFrame(columns=COLUMNS)
    means = {key: float(s.mean()) for key, s in rows.items()}
    spread = [key for key, s in rows.items() if len(s) >= 2]
    best = min(spread or rows, key=lambda k: (means[k], k))
    m = sum(1 for key in rows if key != best and _testable(rows[best], rows[key]))
    level = 1 - alpha / max(m, 1)
    out = [{"key": best, "seeds": len(rows[best]), "mean": means[best], "diff": 0.0,
            "low": math.nan, "high": math.nan, "level": level, "test": "none",
            "status": "best"}]
    for key in sorted(set(rows) - {best}, key=lambda k: (means[k], k)):
        test, diff, low, high = _interval(rows[key], rows[best], level)
        status = ("unresolved" if test == "none" else "behind" if low > 0 else "tied")
        out.append({"key": key, "seeds": len(rows[key]), "mean": means[key], "diff": diff,
                    "low": low, "high": high, "level": level, "test": test,
                    "status": status})
    return pd.DataFrame(out, columns=COLUMNS)


def winner_set(table: pd.DataFrame) -> list[str]:
    """The configurations not separated from the best (the best first)."""
    return list(table.loc[table["status"].isin(["best", "tied"]), "key"])


def _testable(a: pd.Series, b: pd.Series) -> bool:
    return len(a.index.intersection(b.index)) >= 2 or (len(a) >= 2 and len(b) >= 2)


def _interval(x: pd.Series, best: pd.Series,
              level: float) -> tuple[str, float, float, float]:
    """(test, x - best, low, high): paired over shared seeds, else Welch, else none."""
    shared = x.index.intersection(best.index)
    if len(shared) >= 2:
        d = (x[shared] - best[shared]).to_numpy()
        if np.ptp(d) == 0:  # every seed the same difference: no spread to scale
            return "paired t", float(d[0]), float(d[0]), float(d[0])
        ci = stats.ttest_rel(x[shared], best[shared]).confidence_interval(level)
        return "paired t", float(d.mean()), float(ci.low), float(ci.high)
    if len(x) >= 2 and len(best) >= 2:
        return ("Welch t", *welch(x, best, level))
    return "none", float(x.mean() - best.mean()), math.nan, math.nan


def welch(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """(mean x - mean y, low, high): the Welch t interval at `level` of two samples of two or
    more values each (no spread in either: the interval is the difference itself)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    diff = float(x.mean() - y.mean())
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return diff, diff, diff
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(level)
    return diff, float(ci.low), float(ci.high)
