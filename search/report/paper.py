"""The search against the paper: its configurations matched to the rows of Tables 1-3, and the
rank agreement (Kendall tau-b) between our order and the published one.

A configuration matches a row when its network's unit (plan.json `net.unit`) equals the row's
`UnitSpec` field by field, floats compared at float32 (the precision the network sees). Depth
is not compared: reduced scales shrink ResNet-110/164, so Table 2's two columns are told apart
by the unit type (basic or bottleneck), and Table 1's rows by the unit alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from residual.kinds import SHORTCUT_PARAMS
from residual.paper import TABLE1, TABLE2, TABLE3, PaperRow

from .load import Configuration, SearchRecord

FAIL_VALUE = 1e9
"""The paper's "fail" as a number for ranking: tied last, behind every published error."""

UNIT_FIELDS = ("shortcut", "activation", "bottleneck", *SHORTCUT_PARAMS)
"""The `UnitSpec` fields a match compares: the unit's kind and placement, and every
parameter a shortcut kind may use."""


def _same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    try:
        return bool(np.float32(a) == np.float32(b))
    except (TypeError, ValueError):
        return a == b


def same_unit(unit: dict[str, Any], row: PaperRow) -> bool:
    """Does a network's unit (a `UnitSpec.to_dict()`) equal the paper row's, at float32?"""
    paper = row.unit.to_dict()
    return all(_same_value(unit.get(name), paper.get(name)) for name in UNIT_FIELDS)


def match(configurations: list[Configuration], row: PaperRow) -> Configuration | None:
    """The configuration that measures `row`: among those with its unit, the comparable one
    (full budget or diverged) at the greatest depth (the closest to the paper's), then with the
    most seeds, then the best ranked. Tables pass the configurations of `one_depth`."""
    found = [c for c in configurations if same_unit(c.unit, row)]
    if not found:
        return None
    return min(found, key=lambda c: (not c.comparable, -(c.depth or 0),
                                     -int(c.row.get("seeds", 0) or 0), c.rank))


def one_depth(configurations: list[Configuration],
              rows: list[PaperRow] | tuple[PaperRow, ...]) -> list[Configuration]:
    """The configurations of one depth per unit type (basic, bottleneck), so that a table of
    the paper's rows compares like with like when a search measures a row at several depths:
    the depth where most rows are measured at the full budget, the deeper on a tie."""
    chosen = []
    for bottleneck in {bool(c.unit.get("bottleneck")) for c in configurations}:
        mine = [c for c in configurations if bool(c.unit.get("bottleneck")) == bottleneck]

        def measured(depth: int | None, mine=mine) -> tuple[int, int, int]:
            at = [c for c in mine if c.depth == depth]
            return (sum(any(c.comparable and same_unit(c.unit, r) for c in at) for r in rows),
                    sum(any(same_unit(c.unit, r) for c in at) for r in rows), depth or 0)

        depth = max({c.depth for c in mine}, key=measured)
        chosen += [c for c in mine if c.depth == depth]
    return chosen


def _pct(value: Any) -> float:
    return math.nan if value is None or pd.isna(value) else 100 * float(value)


def paper_table(record: SearchRecord, rows: tuple[PaperRow, ...],
                column: str = "") -> pd.DataFrame:
    """The paper's rows with our measurement beside each (errors in percent)."""
    configurations = one_depth(record.configurations, rows)
    out = []
    for row in rows:
        config = match(configurations, row)
        r = config.row if config is not None else pd.Series(dtype=object)
        out.append({
            "paper row": row.label if not column else row.label.rsplit(" ResNet-", 1)[0],
            "paper network": f"ResNet-{row.depth}",
            "paper error %": row.error,
            "paper": "fail" if row.error is None else f"{row.error:.2f}",
            "configuration": config.label if config else "",
            "configuration_key": config.key if config else "",
            "rank": config.rank if config else math.nan,
            "epochs": r.get("epochs", math.nan),
            "seeds": r.get("seeds", math.nan),
            "val mean %": _pct(r.get("val_error_mean")),
            "val median %": _pct(r.get("val_error_median")),
            "val ci95 %": _pct(r.get("val_error_ci95")),
            "test mean %": _pct(r.get("test_error_mean")),
            "test median %": _pct(r.get("test_error_median")),
            "test ci95 %": _pct(r.get("test_error_ci95")),
            "fail": config.fail if config else "",
            "comparable": bool(config.comparable) if config else False,
        })
    return pd.DataFrame(out)


def table1(record: SearchRecord) -> pd.DataFrame:
    return paper_table(record, TABLE1)


def table2(record: SearchRecord) -> pd.DataFrame:
    """Table 2's layout: one row per placement, ResNet-110 (basic) and ResNet-164
    (bottleneck) rows one after the other."""
    return paper_table(record, TABLE2, column="network")


@dataclass
class TauResult:
    """Kendall tau-b between our order and the paper's over the rows measured."""

    table: str
    tau: float
    p_value: float
    n: int
    concordant: int
    discordant: int
    tied: int
    """Pairs tied in the paper's order (two "fail" rows, say): neither kind."""
    pairs: pd.DataFrame
    """One row per pair of measured rows: the two rows, both orders, concordant or not, and
    for a discordant pair whether the two 95% intervals overlap."""

    @property
    def discordant_overlapping(self) -> int:
        d = self.pairs[self.pairs["agreement"] == "discordant"]
        return int((d["intervals overlap"] == "yes").sum())

    def sentence(self) -> str:
        if self.n < 2 or math.isnan(self.tau):
            return f"{self.table}: fewer than two rows measured, no rank agreement."
        tied = f", {self.tied} tied in the paper" if self.tied else ""
        return (f"{self.table}: Kendall tau-b {self.tau:+.2f} over {self.n} rows "
                f"(p = {self.p_value:.2g}); {self.concordant} pairs concordant, "
                f"{self.discordant} discordant ({self.discordant_overlapping} of them within "
                f"overlapping 95% intervals){tied}.")


def kendall(table: str, labels: list[str], ours: list[float], paper: list[float],
            intervals: list[tuple[float, float]] | None = None) -> TauResult:
    """tau-b (scipy.stats.kendalltau, variant "b") between `ours` and `paper` (lower = better in
    both; FAIL_VALUE for the paper's fails), with every pair classified."""
    n = len(labels)
    if n < 2:
        return TauResult(table, math.nan, math.nan, n, 0, 0, 0, pd.DataFrame(
            columns=["row a", "row b", "paper", "ours", "agreement", "intervals overlap"]))
    result = stats.kendalltau(ours, paper, variant="b")
    intervals = intervals or [(math.nan, math.nan)] * n
    pairs, counts = [], {"concordant": 0, "discordant": 0, "tied": 0}
    for i, j in combinations(range(n), 2):
        p, o = np.sign(paper[i] - paper[j]), np.sign(ours[i] - ours[j])
        kind = "tied" if p == 0 or o == 0 else ("concordant" if p == o else "discordant")
        counts[kind] += 1
        overlap = ""
        if kind == "discordant":
            (a_lo, a_hi), (b_lo, b_hi) = intervals[i], intervals[j]
            overlap = ("no interval" if any(map(math.isnan, (a_lo, a_hi, b_lo, b_hi)))
                       else "yes" if a_lo <= b_hi and b_lo <= a_hi else "no")
        # Row a is the one the paper puts first (or, tied there, the one we put first).
        first, second = (i, j) if (paper[i], ours[i]) <= (paper[j], ours[j]) else (j, i)
        pairs.append({"row a": labels[first], "row b": labels[second],
                      "paper": _order(paper[first], paper[second]),
                      "ours": _order(ours[first], ours[second]),
                      "agreement": kind, "intervals overlap": overlap})
    return TauResult(table, float(result.statistic), float(result.pvalue), n,
                     counts["concordant"], counts["discordant"], counts["tied"],
                     pd.DataFrame(pairs))


def _order(a: float, b: float) -> str:
    return "a first" if a < b else "b first" if a > b else "tied"


def column_taus(table: pd.DataFrame, record: SearchRecord) -> list[TauResult]:
    """Table 2's tau-b within each of its columns (ResNet-110, ResNet-164), where at least two
    rows of the column are measured."""
    out = []
    for network in dict.fromkeys(table["paper network"]):
        column = table[table["paper network"] == network]
        if int(column["comparable"].sum()) >= 2:
            out.append(table_tau(f"Table 2, {network}", column, record))
    return out


def table_tau(name: str, table: pd.DataFrame, record: SearchRecord) -> TauResult:
    """tau-b over a paper table's measured, comparable rows: our order is the ranking's rank
    (mean validation error at the full budget; diverged last), the paper's its error with
    "fail" tied last."""
    rows = table[table["comparable"]]
    configs = record.by_key()
    labels = [str(r["paper row"]) + (f" ({r['paper network']})" if name.startswith("Table 2")
                                     else "")
              for _, r in rows.iterrows()]
    ours = [float(r["rank"]) for _, r in rows.iterrows()]
    paper = [FAIL_VALUE if pd.isna(r["paper error %"]) else float(r["paper error %"])
             for _, r in rows.iterrows()]
    intervals = [_interval(configs[k]) for k in rows["configuration_key"]]
    return kendall(name, labels, ours, paper, intervals)


def _interval(config: Configuration) -> tuple[float, float]:
    mean, half = config.row.get("val_error_mean"), config.row.get("val_error_ci95")
    if pd.isna(mean) or pd.isna(half):
        return math.nan, math.nan
    return 100 * (mean - half), 100 * (mean + half)


def table3(record: SearchRecord) -> pd.DataFrame:
    """Table 3's original -> full pre-activation rows where both are measured: basic units
    stand for ResNet-110, bottleneck units for ResNet-164 (the scale shrinks the depth)."""
    from .verdict import difference

    dataset = "cifar100" if record.dataset == "cifar100" else "cifar10"
    out = []
    for bottleneck, network in ((False, "ResNet-110"), (True, "ResNet-164")):
        if (dataset, network) not in TABLE3:
            continue
        paper_original, paper_preact = TABLE3[(dataset, network)]
        rows = [_identity_row(activation, bottleneck) for activation in ("original",
                                                                          "full_preact")]
        configurations = one_depth(record.configurations, rows)
        pair = [match(configurations, row) for row in rows]
        if any(c is None or not c.comparable for c in pair):
            continue
        original, preact = pair
        diff = difference(preact, original)
        out.append({
            "paper network": f"{network} ({dataset})", "unit": "bottleneck" if bottleneck
            else "basic", "paper original %": paper_original, "paper pre-act %": paper_preact,
            "paper change": round(paper_preact - paper_original, 2),
            "original": original.label, "pre-act": preact.label,
            "original rank": original.rank, "pre-act rank": preact.rank,
            "original val %": _pct(original.row.get("val_error_mean")),
            "pre-act val %": _pct(preact.row.get("val_error_mean")),
            "change %": diff.mean, "change ci95 low": diff.low, "change ci95 high": diff.high,
            "same direction": "yes" if np.sign(diff.mean) == np.sign(paper_preact
                                                                     - paper_original)
            else "no",
        })
    return pd.DataFrame(out)


def table3_tau(table: pd.DataFrame, record: SearchRecord) -> TauResult:
    """tau-b over Table 3's measured cells (original and pre-activation of each network)."""
    labels, ours, paper, intervals = [], [], [], []
    configs = {c.label: c for c in record.configurations}
    for _, r in table.iterrows():
        for side, paper_col in (("original", "paper original %"),
                                ("pre-act", "paper pre-act %")):
            config = configs[r[side]]
            labels.append(f"{r['paper network']} {side}")
            ours.append(float(config.rank))
            paper.append(float(r[paper_col]))
            intervals.append(_interval(config))
    return kendall("Table 3", labels, ours, paper, intervals)


def _identity_row(activation: str, bottleneck: bool) -> PaperRow:
    return next(r for r in TABLE2 if r.unit.activation == activation
                and r.unit.bottleneck == bottleneck)
