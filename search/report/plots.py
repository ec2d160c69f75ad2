"""The report's figures, as PNG files (the HTML embeds them as data URIs).

Drawn on `matplotlib.figure.Figure` objects, never pyplot: no global state, no GUI backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from .replay import ReplayResult

DPI = 100
FAIL_COLOUR = "#c0392b"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
ROWS_DRAWN = 40
"""The error plot's rows at most (the best, and the paper's rows beyond them): a search of
500 configurations drew a figure 19,150 pixels tall. ranking.csv has every one."""
CURVES_NAMED = 2 * len(COLOURS)
"""Learning curves with a colour (solid, then dashed) and a legend entry; the rest grey."""
OTHER_COLOUR = "#bbbbbb"
WINNER_COLOUR = "black"


def save_figure(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def error_plot(ranking: pd.DataFrame, path: Path, paper_marks: dict[str, str] | None = None,
               threshold: float | None = None) -> Path:
    """Error by configuration, best first: mean validation error with its 95% interval over
    seeds, mean test error beside it; the paper's place for each row it measures on the right.
    `ranking` is ranking.csv's frame; `paper_marks` maps configuration_key to a short mark.
    Beyond ROWS_DRAWN rows, the best ROWS_DRAWN and the paper's rows are drawn."""
    rows = shown_rows(ranking, paper_marks or {})
    n = len(rows)
    fig = Figure(figsize=(10, 1.5 + 0.38 * max(n, 2)))
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    val = 100 * rows["val_error_mean"].astype(float)
    ci = 100 * rows["val_error_ci95"].astype(float).fillna(0)
    test = 100 * rows["test_error_mean"].astype(float)
    ax.errorbar(val, y, xerr=ci, fmt="o", color=COLOURS[0], ecolor="#9ecae1", capsize=3,
                label="validation error, mean ± 95% interval")
    ax.plot(test, y, "x", color=COLOURS[1], label="test error, mean")
    if threshold is not None:
        ax.axvline(100 * threshold, color=FAIL_COLOUR, linestyle="--", linewidth=1,
                   label=f"fail above {100 * threshold:.1f}% test error")
    labels = [f"{r['rank']}. {r['configuration']}" for _, r in rows.iterrows()]
    ax.set_yticks(y, labels, fontsize=8)
    for tick, (_, r) in zip(ax.get_yticklabels(), rows.iterrows()):
        if r.get("fail"):
            tick.set_color(FAIL_COLOUR)
    upper = np.nanmax(np.concatenate([val.to_numpy(), test.to_numpy(), [10.0]]))
    ax.set_xlim(0, min(100.0, upper * 1.15 + 5))
    if paper_marks:
        for yy, (_, r) in zip(y, rows.iterrows()):
            mark = paper_marks.get(r["configuration_key"])
            if mark:
                ax.annotate(mark, (1.01, yy), xycoords=("axes fraction", "data"), fontsize=8,
                            va="center", color="#555555", annotation_clip=False)
    ax.set_xlabel("error (%)" if n == len(ranking) else
                  f"error (%): the best {ROWS_DRAWN} of {len(ranking)} configurations"
                  + (", then the paper's rows" if n > ROWS_DRAWN else "")
                  + "; every one in ranking.csv")
    ax.set_ylim(-0.7, n - 0.3)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3,
              frameon=False)
    return save_figure(fig, path)


def shown_rows(ranking: pd.DataFrame, paper_marks: dict[str, str]) -> pd.DataFrame:
    """The error plot's rows, best first: every row up to ROWS_DRAWN; beyond, the best
    ROWS_DRAWN and the rows the paper marks."""
    rows = ranking.reset_index(drop=True)
    keep = (rows.index < ROWS_DRAWN) | rows["configuration_key"].isin(list(paper_marks))
    return rows[keep].reset_index(drop=True)


def curve_plot(curves: dict[str, list[float]], path: Path,
               replay: ReplayResult | None = None, highlight: str | None = None) -> Path:
    return save_figure(curve_figure(curves, replay, highlight), path)


def curve_figure(curves: dict[str, list[float]], replay: ReplayResult | None = None,
                 highlight: str | None = None) -> Figure:
    """Every configuration's learning curve (median validation error over seeds per epoch),
    overlaid; a cross where ASHA, replayed, would have stopped it. `curves` in rank order:
    the first CURVES_NAMED (and `highlight`) in colour and in the legend, the rest grey."""
    fig = Figure(figsize=(10, 5))
    ax = fig.add_subplot()
    named = [name for i, name in enumerate(curves) if i < CURVES_NAMED or name == highlight]
    others = [name for name in curves if name not in named]
    stops = replay.asynchronous if replay else {}
    for name in others:  # first, so that the named curves are drawn over them
        _draw_curve(ax, curves[name], stops.get(name), color=OTHER_COLOUR, linewidth=0.8,
                    alpha=0.6, cross=5)
    for i, name in enumerate(named):
        if name == highlight:  # a colour of its own: it may rank past the named ones
            _draw_curve(ax, curves[name], stops.get(name), color=WINNER_COLOUR, linewidth=2.6,
                        label=f"{name} (winner)")
        else:
            _draw_curve(ax, curves[name], stops.get(name), color=COLOURS[i % len(COLOURS)],
                        linestyle="-" if i < len(COLOURS) else "--", linewidth=1.2,
                        alpha=0.85, label=name)
    if others:
        ax.plot([], [], color=OTHER_COLOUR, label=f"{len(others)} more configurations")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation error (%), median over seeds")
    ax.grid(alpha=0.3)
    if replay is not None:
        ax.set_title(f"x: where ASHA (grace {replay.grace_period}, reduction factor "
                     f"{replay.reduction_factor:g}) would stop it", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _draw_curve(ax, curve: list[float], stop: int | None, cross: float = 9, **style) -> None:
    """One curve, its validated epochs only (`--validate-every`) joined, a dot on each when
    sparse; a cross of size `cross` at `stop`."""
    values = 100 * np.asarray(curve, dtype=float)
    epochs = np.arange(1, len(values) + 1)
    measured = np.isfinite(values)
    ax.plot(epochs[measured], values[measured], marker=None if measured.all() else ".",
            **style)
    if stop is not None and stop <= len(values):
        ax.plot([stop], [values[stop - 1]], "x", color=style["color"], markersize=cross,
                mew=cross / 4.5)


def axis_plot(frame: pd.DataFrame, path: Path, objective: str = "objective",
              axes: list[str] | None = None) -> Path | None:
    """The empirical distribution of the objective per value of each axis (every trial as a
    point, the median as a bar)."""
    axes = axes or [c for c in frame.columns if c != objective
                    and frame[c].dropna().map(str).nunique() >= 2]
    if not axes:
        return None
    fig = Figure(figsize=(min(4.2 * len(axes), 16), 4.2))
    for i, name in enumerate(axes):
        ax = fig.add_subplot(1, len(axes), i + 1)
        data = frame[frame[name].notna()]
        keys = data[name].map(_short)
        levels = _levels(data[name])
        for x, level in enumerate(levels):
            values = 100 * data.loc[keys == level, objective].astype(float)
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            ax.plot(x + np.asarray(jitter), values, "o", alpha=0.7, color=COLOURS[0],
                    markersize=5)
            if len(values):
                ax.plot([x - 0.3, x + 0.3], [values.median()] * 2, color="black")
        ax.set_xticks(range(len(levels)), levels, rotation=35, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if i == 0:
            ax.set_ylabel("objective: validation error (%)")
    return save_figure(fig, path)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _levels(values: pd.Series) -> list[str]:
    """Distinct values in order (numbers numerically); many numeric values are binned."""
    distinct = values.dropna().unique()
    try:
        return [_short(v) for v in sorted(distinct)]
    except TypeError:
        return sorted({_short(v) for v in distinct})


def importance_plot(table: pd.DataFrame, path: Path) -> Path | None:
    """eta² per parameter and scope, top-level axes and conditional parameters apart."""
    if table.empty or table["eta²"].isna().all():
        return None
    rows = table.reset_index(drop=True)
    fig = Figure(figsize=(9, 0.9 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    y = np.arange(len(rows))[::-1]
    colours = [COLOURS[0] if level == "top-level" else COLOURS[2] for level in rows["level"]]
    ax.barh(y, rows["eta²"].fillna(0), color=colours)
    labels = [p if s == "all trials" else f"{p}  [{s}]"
              for p, s in zip(rows["parameter"], rows["scope"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("eta²: share of the objective's variance between the parameter's values",
                  fontsize=8)
    ax.set_title("blue: top-level axis, over all configurations; green: conditional, within "
                 "its [branch]", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(fig, path)


def zero_position(shares: ArrayLike) -> float:
    """Where a log axis of direct-path shares draws zero (no direct path at all): at 1e-4, or
    a decade below the smallest positive share, so that 1e-11 (0.5 to the 27th power, Eq. 8)
    is drawn where it is and not among the zeros."""
    shares = np.asarray(shares, dtype=float).ravel()
    smallest = shares[shares > 0].min(initial=1e-3)
    return float(min(1e-4, 10 ** (np.floor(np.log10(smallest)) - 1)))


def propagation_plot(table: pd.DataFrame, path: Path) -> Path | None:
    """The first unit's direct-path share per configuration, predicted (Eq. 5/8) and measured
    at initialisation and at the end, on a log scale; left absolute, right relative to the
    identity-shortcut configuration with the same placement."""
    if table.empty:
        return None
    rows = table.reset_index(drop=True)
    y = np.arange(len(rows))[::-1]
    panels = [("absolute (Eq. 5: 1 for identity, full pre-activation)",
               ("predicted init", "measured init", "measured end"))]
    if (rows["shortcut"] != "identity").any():  # else every ratio is 1 by construction
        panels.append(("relative to identity with the same placement",
                       ("predicted init", "relative init", "relative end")))
    floor = zero_position(rows[list({c: None for _, cs in panels for c in cs})])
    fig = Figure(figsize=(6 + 6 * (len(panels) - 1) + 2, 1.4 + 0.36 * max(len(rows), 3)))
    styles = {"predicted init": ("D", "none", "#555555", "predicted (Eq. 5/8)"),
              "measured init": ("o", COLOURS[0], COLOURS[0], "measured at initialisation"),
              "measured end": ("^", COLOURS[1], COLOURS[1], "measured at the end"),
              "relative init": ("o", COLOURS[0], COLOURS[0], "measured at initialisation"),
              "relative end": ("^", COLOURS[1], COLOURS[1], "measured at the end")}
    for i, (title, columns) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for column in columns:
            marker, face, edge, label = styles[column]
            values = rows[column].astype(float)
            shown = values.clip(lower=floor)
            ax.plot(shown, y, marker, markerfacecolor=face, markeredgecolor=edge,
                    linestyle="none", label=label, markersize=7)
        ax.set_xscale("log")
        ax.set_xlim(floor / 2, 10)
        ax.axvline(1.0, color="grey", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        if i == 0:
            labels = [f"{r['rank']}. {r['configuration']}" for _, r in rows.iterrows()]
            ax.set_yticks(y, labels, fontsize=8)
            for tick, fail in zip(ax.get_yticklabels(), rows["fail"]):
                if fail:
                    tick.set_color(FAIL_COLOUR)
        else:
            ax.set_yticks(y, [""] * len(y))
        ax.set_xlabel(f"direct-path share of unit 0 (log; 0 drawn at {floor:g})", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")  # the best rows, near 1, leave it free
    return save_figure(fig, path)

