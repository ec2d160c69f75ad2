"""The report's tables as a reader sees them: numbers rounded to their meaning, intervals as
"mean ± half-width", missing values as "-". The frames `Report.tables` returns stay
unformatted; these are only what report.md and report.html print."""

from __future__ import annotations

import math

import pandas as pd

from .verdict import PLACEMENT_NAMES

ROW_NAMES = {**PLACEMENT_NAMES, "original": "original"}
"""Table 2's rows in the paper's words."""


def number(value: object, digits: int = 2) -> str:
    """A value at `digits` decimals if it is a float; "-" for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def plus_minus(mean: float, half: float) -> str:
    """`12.34 ± 0.56`: a mean with the half-width of its interval, when it has one."""
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.2f}" + ("" if half is None or math.isnan(half) else f" ± {half:.2f}")


def share(value: float) -> str:
    """A direct-path share at three significant digits (they span orders of magnitude)."""
    if value is None or math.isnan(value):
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def formatted(frame: pd.DataFrame, digits: dict[str, int]) -> pd.DataFrame:
    """Every cell through `number`, at its column's digits (2 where `digits` does not say)."""
    out = frame.copy()
    for column in out.columns:
        out[column] = [number(v, digits.get(column, 2)) for v in out[column]]
    return out


def paper_display(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 or 2 of the paper beside our measurement of each row."""
    rows = []
    for _, r in table.iterrows():
        measured = bool(r["configuration"])
        rows.append({
            "paper row": ROW_NAMES.get(r["paper row"], r["paper row"]),
            "network": r["paper network"],
            "paper %": r["paper"], "ours: configuration": r["configuration"] or "not measured",
            "rank": number(r["rank"], 0) if measured else "-",
            "epochs": number(r["epochs"], 0), "seeds": number(r["seeds"], 0),
            "val mean ± 95%": plus_minus(r["val mean %"], r["val ci95 %"]),
            "val median": number(r["val median %"]),
            "test mean ± 95%": plus_minus(r["test mean %"], r["test ci95 %"]),
            "test median": number(r["test median %"]), "fail": r["fail"]})
    return pd.DataFrame(rows)


def table3_display(table: pd.DataFrame) -> pd.DataFrame:
    """Table 3's change from the original unit to full pre-activation, the paper's and ours."""
    return pd.DataFrame([{
        "paper network": r["paper network"], "unit": r["unit"],
        "paper original %": number(r["paper original %"]),
        "paper pre-act %": number(r["paper pre-act %"]),
        "paper change": f"{r['paper change']:+.2f}",
        "ours original %": number(r["original val %"]),
        "ours pre-act %": number(r["pre-act val %"]),
        "ours change (95%)": f"{r['change %']:+.2f}" + (
            "" if math.isnan(r["change ci95 low"]) else
            f" ({r['change ci95 low']:+.2f} to {r['change ci95 high']:+.2f})"),
        "same direction": r["same direction"]} for _, r in table.iterrows()])


def ranking_display(ranking: pd.DataFrame) -> pd.DataFrame:
    """ranking.csv's rows with the error fractions as percentages."""
    return pd.DataFrame([{
        "rank": int(r["rank"]), "configuration": r["configuration"], "epochs": int(r["epochs"]),
        "val err % (95%)": plus_minus(100 * r["val_error_mean"], 100 * r["val_error_ci95"]),
        "val median": number(100 * r["val_error_median"]),
        "test err % (95%)": plus_minus(100 * r["test_error_mean"], 100 * r["test_error_ci95"]),
        "train err %": number(100 * r["train_error_mean"]),
        "seeds": int(r["seeds"]), "outcomes": r["outcomes"], "fail": r["fail"]}
        for _, r in ranking.iterrows()])


def propagation_display(table: pd.DataFrame) -> pd.DataFrame:
    """The direct-path shares, predicted beside measured; the relative and last-stage columns
    only where they say something."""
    inner = table["last stage unit"].notna().any()
    relative = (table["shortcut"] != "identity").any()  # else every ratio is 1
    return pd.DataFrame([{
        "rank": r["rank"], "configuration": r["configuration"], "f": r["f"],
        "units": r["units"],
        "predicted (init)": share(r["predicted init"]),
        "measured (init)": share(r["measured init"]),
        "predicted (end)": share(r["predicted end"]),
        "end epoch": r["end epoch"], "measured (end)": share(r["measured end"]),
        **({"relative to identity (init)": share(r["relative init"]),
            "relative (end)": share(r["relative end"])} if relative else {}),
        **({"last stage: unit": number(r["last stage unit"], 0),
            "last stage: predicted": share(r["last stage predicted init"]),
            "last stage: measured (init)": share(r["last stage measured init"])}
           if inner else {}),
        "mean 1-g (init)": share(r["gate carry init"]),
        "grad first/last (init)": share(r["grad first/last init"]),
        "fail": r["fail"]} for _, r in table.iterrows()])


def importance_display(table: pd.DataFrame) -> pd.DataFrame:
    """Parameter importance, one row per parameter and the scope it was measured in."""
    return pd.DataFrame([{
        "parameter": r["parameter"], "where": r["scope"], "configurations": r["trials"],
        "values": r["values"], "eta²": number(r["eta²"]), "p": number(r["p-value"], 3),
        "spearman rho": number(r["spearman rho"]), "method": r["method"]}
        for _, r in table.iterrows()])
