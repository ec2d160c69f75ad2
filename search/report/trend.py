"""The pre-activation advantage as it grows with depth (the paper's Table 3 and Fig. 6).

For each unit type and depth: the original unit's validation error minus full pre-activation's
(and minus ReLU-only pre-activation's), in points, with the 95% Welch interval over seeds
(`verdict.difference`). The paper's message: the gap is small at ResNet-110 (6.61 vs 6.37) and
grows with depth (ResNet-164 5.93 vs 5.46, ResNet-1001 7.61 vs 4.92).

"Grows" is a claim about a difference of differences, D = gap(deepest) - gap(shallowest), so it
needs D's own interval, not the two gaps' (see `growth`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from scipy import stats

from .load import Configuration, SearchRecord
from .plots import COLOURS, save_figure
from .verdict import PLACEMENT_NAMES, comparable, difference

PRE_ACTIVATIONS = ("full_preact", "relu_preact")
UNIT_TYPES = {False: "basic", True: "bottleneck"}
GAP_ERRORS = "gap_errors"
"""`depth_trend(...).attrs[GAP_ERRORS]`: {(unit, depth, original minus): (se, df)}, each gap's
Welch standard error and its Welch-Satterthwaite degrees of freedom (NaN below two seeds a
side). In attrs, not columns, so the table the report prints stays as it was."""


def _by_cell(record: SearchRecord) -> dict[tuple[bool, int, str], Configuration]:
    """Identity-shortcut configurations at the full budget, by (bottleneck, depth, placement)."""
    return {(bool(c.unit.get("bottleneck")), int(c.depth), c.unit.get("activation")): c
            for c in comparable(record)
            if c.unit.get("shortcut") == "identity" and c.depth is not None}


def gap_error(a: Configuration, b: Configuration) -> tuple[float, float]:
    """(se, df) of mean(a) - mean(b) over their seeds at the budget (points): Welch's
    sqrt(s_a^2/n_a + s_b^2/n_b) and Welch-Satterthwaite's df; NaN below two seeds a side."""
    parts = []
    for config in (a, b):
        x = 100 * np.asarray(config.values("val_error"), dtype=float)
        if len(x) < 2:
            return math.nan, math.nan
        parts.append((float(x.var(ddof=1)) / len(x), len(x) - 1))
    return _combined(parts)


def _combined(parts: list[tuple[float, float]]) -> tuple[float, float]:
    """Variances of independent means with their df -> (se of their sum, Satterthwaite df)."""
    total = sum(v for v, _ in parts)
    share = sum(v * v / df for v, df in parts)
    return math.sqrt(total), (total * total / share if share > 0 else math.inf)


def depth_trend(record: SearchRecord) -> pd.DataFrame:
    """One row per unit type, depth and pre-activation: the gap and its interval; each gap's
    standard error in `attrs[GAP_ERRORS]`."""
    cells = _by_cell(record)
    rows, errors = [], {}
    for bottleneck, depth in sorted({(b, d) for b, d, _ in cells}):
        original = cells.get((bottleneck, depth, "original"))
        for placement in PRE_ACTIVATIONS:
            other = cells.get((bottleneck, depth, placement))
            if original is None or other is None:
                continue
            gap = difference(original, other)
            rows.append({"unit": UNIT_TYPES[bottleneck], "depth": depth,
                         "original minus": placement, "gap": gap.mean, "low": gap.low,
                         "high": gap.high, "seeds": min(gap.n_a, gap.n_b),
                         "separated": gap.separated})
            errors[(UNIT_TYPES[bottleneck], depth, placement)] = gap_error(original, other)
    table = pd.DataFrame(rows)
    table.attrs[GAP_ERRORS] = errors
    return table


def growth(deep: float, shallow: float, deep_error: tuple[float, float],
           shallow_error: tuple[float, float]) -> tuple[float, float, float]:
    """D = deep - shallow (gaps, points) and its 95% interval (low, high).

    Method: the four cells (original and full pre-activation at the two depths) are
    independent groups of seed runs, so D's standard error is the root of the sum of their
    four s^2/n, and its degrees of freedom Welch-Satterthwaite's over those four terms (the two
    gaps' (se, df) combine to exactly that); interval D +- t(0.975, df) * se, scipy's t. It
    ignores any positive correlation between cells run on the same seed, so it is
    conservative where seeds pair. NaN bounds when a cell has one seed; D itself when every
    cell has no spread."""
    d = deep - shallow
    if any(math.isnan(v) for v in (*deep_error, *shallow_error)):
        return d, math.nan, math.nan
    parts = [(se * se, df) for se, df in (deep_error, shallow_error)]
    se, df = _combined(parts)
    if se == 0:
        return d, d, d
    half = float(stats.t.ppf(0.975, df)) * se
    return d, d - half, d + half


def trend_lines(trend: pd.DataFrame) -> list[str]:
    """The verdict's sentences: per unit type, does the gap to full pre-activation grow with
    depth? "Grows" (Yes) only when the gap's means increase from depth to depth and D, the
    deepest gap minus the shallowest, is separated above zero (`growth`); "means increase, not
    separated" when they increase and D's interval reaches zero; "does not grow" (No) when they
    do not increase. And is the gap separated from zero at the deepest depth?"""
    lines = []
    if trend.empty:
        return lines
    errors = trend.attrs.get(GAP_ERRORS, {})
    full = trend[trend["original minus"] == "full_preact"]
    for unit, rows in full.groupby("unit", sort=False):
        rows = rows.sort_values("depth")
        gaps = ", ".join(f"{g:+.2f} at depth {d}" for d, g in zip(rows["depth"], rows["gap"]))
        if len(rows) < 2:
            lines.append(f"Gap with depth ({unit} units): one depth measured ({gaps}).")
            continue
        shallowest, deepest = rows.iloc[0], rows.iloc[-1]
        nan = (math.nan, math.nan)
        d, low, high = growth(deepest["gap"], shallowest["gap"],
                              errors.get((unit, deepest["depth"], "full_preact"), nan),
                              errors.get((unit, shallowest["depth"], "full_preact"), nan))
        increase = bool(np.all(np.diff(rows["gap"].to_numpy()) > 0))
        resolved = not math.isnan(low)
        answer, grows = (("No", "does not grow") if not increase else
                         ("Not resolved (one seed)", "means increase, not resolved (one seed)")
                         if not resolved else ("Yes", "grows") if low > 0 else
                         ("Not separated", "means increase, not separated"))
        interval = (f" (95% interval {low:+.2f} to {high:+.2f}, Welch-Satterthwaite over the "
                    f"four cells' seeds)" if resolved else " (no interval: a cell has one seed)")
        lines.append(f"Does the original unit fall further behind full pre-activation with "
                     f"depth ({unit} units)? {answer}: original minus full pre-activation is "
                     f"{gaps} points of validation error; {grows}: depth {deepest['depth']} "
                     f"minus depth {shallowest['depth']} is {d:+.2f} points{interval}; "
                     f"{_at_deepest(deepest)}.")
    return lines


def _at_deepest(deepest: pd.Series) -> str:
    if math.isnan(deepest["low"]):
        return "no interval at the deepest depth (one seed)"
    return (f"{'' if deepest['separated'] else 'not '}separated from zero at depth "
            f"{deepest['depth']} (95% interval {deepest['low']:+.2f} to {deepest['high']:+.2f})")


def trend_plot(trend: pd.DataFrame, path: Path) -> Path | None:
    """The gap per depth with its 95% interval, one panel per unit type."""
    if trend.empty:
        return None
    units = list(dict.fromkeys(trend["unit"]))
    fig = Figure(figsize=(5 * len(units), 3.6))
    for i, unit in enumerate(units, start=1):
        ax = fig.add_subplot(1, len(units), i)
        for colour, placement in zip(COLOURS, PRE_ACTIVATIONS):
            rows = trend[(trend["unit"] == unit) & (trend["original minus"] == placement)]
            if rows.empty:
                continue
            rows = rows.sort_values("depth")
            low = (rows["gap"] - rows["low"]).fillna(0).clip(lower=0)
            high = (rows["high"] - rows["gap"]).fillna(0).clip(lower=0)
            ax.errorbar(rows["depth"], rows["gap"], yerr=[low, high], marker="o", capsize=3,
                        color=colour, label=f"original minus {PLACEMENT_NAMES[placement]}")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xticks(sorted(set(trend["depth"])), [str(d) for d in sorted(set(trend["depth"]))])
        ax.minorticks_off()
        ax.set_xlabel("depth")
        ax.set_ylabel("validation error gap (points)")
        ax.set_title(f"{unit} units: above 0, pre-activation is better", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def loss_plot(record: SearchRecord, path: Path) -> Path | None:
    """Training loss per epoch, original against full pre-activation at the deepest depth
    measured, each seed a line (the shape of the paper's Fig. 6)."""
    cells = _by_cell(record)
    figures = []
    for bottleneck in (False, True):
        depths = [d for b, d, p in cells if b == bottleneck and p == "original"
                  and (b, d, "full_preact") in cells]
        if depths:
            depth = max(depths)
            figures.append((bottleneck, depth, [(p, cells[(bottleneck, depth, p)])
                                                for p in ("original", "full_preact")]))
    if not figures:
        return None
    fig = Figure(figsize=(5 * len(figures), 3.6))
    for i, (bottleneck, depth, pair) in enumerate(figures, start=1):
        ax = fig.add_subplot(1, len(figures), i)
        for colour, (placement, configuration) in zip(COLOURS, pair):
            for j, run in enumerate(configuration.runs):
                if run.train_loss:
                    ax.plot(range(1, len(run.train_loss) + 1), run.train_loss, color=colour,
                            alpha=0.8, label=PLACEMENT_NAMES[placement] if j == 0 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.set_title(f"ResNet-{depth} ({UNIT_TYPES[bottleneck]}): training loss, each seed",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)
