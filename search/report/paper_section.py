"""The report's "Against the paper" section: the paper's Tables 1-3 beside the search's
measurements, the rank agreement (Kendall tau-b) of each, and the pairs of rows the two orders
disagree on; with the paper's place of each configuration, which the error plot shows."""

from __future__ import annotations

import math

import pandas as pd

from .display import paper_display, table3_display
from .load import SearchRecord
from .paper import column_taus, table1, table2, table3, table3_tau, table_tau
from .render import Section
from .sections import Parts

MAX_PAIRS = 12
"""Discordant pairs shown; the rest stay in the returned table."""


def paper_section(parts: Parts) -> tuple[Section | None, dict[str, str]]:
    """The paper's Tables 1-3 beside this search, the rank agreements and the discordant
    pairs; with the paper's place of each configuration that measures one of its rows (for
    the error plot). Nothing for a space of the user's, which the paper has no rows for."""
    if not parts.record.builtin:
        return None, {}
    section = Section("Against the paper")
    marks = _tables_1_and_2(parts, section)
    _table_3(parts, section)
    if parts.taus:
        _rank_agreement(parts, section)
    return (section if section.blocks else None), marks


def _tables_1_and_2(parts: Parts, section: Section) -> dict[str, str]:
    record, marks = parts.record, {}
    for key, title, build in (("table1", "Table 1", table1),
                              ("table2", "Table 2", table2)):
        table = build(record)
        if int(table["comparable"].sum()) < 2:  # one row measured: nothing to compare
            continue
        parts.tables[key] = table
        parts.taus[title] = table_tau(title, table, record)
        if key == "table2":
            parts.taus.update({t.table: t for t in column_taus(table, record)})
        marks.update(_paper_marks(table))
        section.table(paper_display(table), _paper_caption(title, record))
    return marks


def _table_3(parts: Parts, section: Section) -> None:
    third = table3(parts.record)
    if third.empty:
        return
    parts.tables["table3"] = third
    parts.taus["Table 3"] = table3_tau(third, parts.record)
    section.table(table3_display(third), "Table 3, original -> full pre-activation: "
                  "change in points (pre-activation minus original; negative: "
                  "pre-activation better), ours in validation error with the 95% "
                  "Welch interval over seeds. Basic units stand for ResNet-110, "
                  "bottleneck units for ResNet-164.")


def _rank_agreement(parts: Parts, section: Section) -> None:
    section.items([t.sentence() for t in parts.taus.values()])
    # Table 2's per-column pairs are among its own: listed once.
    whole = [t for t in parts.taus.values() if not t.pairs.empty and "," not in t.table]
    pairs = (pd.concat([t.pairs.assign(table=t.table) for t in whole],
                       ignore_index=True) if whole else pd.DataFrame())
    parts.tables["pairs"] = pairs
    if not pairs.empty:
        _discordant_pairs(pairs, section)
    section.text("Our order is the ranking's (mean validation error at the full "
                 "budget, diverged configurations last); the paper's is its CIFAR "
                 "test error with its \"fail\" rows tied last. Kendall tau-b is "
                 "scipy.stats.kendalltau(variant=\"b\") over the rows measured.")


def _discordant_pairs(pairs: pd.DataFrame, section: Section) -> None:
    discordant = pairs[pairs["agreement"] == "discordant"]
    # Those our intervals separate first: they are the real disagreements.
    discordant = discordant.sort_values("intervals overlap", key=lambda s:
                                        s.map({"no": 0, "no interval": 1,
                                               "yes": 2}), kind="stable")
    more = len(discordant) - MAX_PAIRS
    section.table(discordant[["table", "row a", "row b", "intervals overlap"]]
                  .head(MAX_PAIRS),
                  "Discordant pairs: the paper puts row a first, we put row b "
                  "first. Overlapping 95% intervals (validation error over seeds) "
                  "mean the seeds cannot tell the two apart."
                  + (f" {more} more in report.tables['pairs']." if more > 0
                     else ""))


def _paper_marks(table: pd.DataFrame) -> dict[str, str]:
    """configuration_key -> "paper #k (x.xx%)" over the measured rows of a paper table."""
    measured = table[table["configuration"] != ""]
    # Within a column of the paper's table (Table 2: ResNet-110 and ResNet-164 apart).
    order = measured.groupby("paper network")["paper error %"].rank(method="min")
    columns = measured["paper network"].nunique() > 1
    out = {}
    for (_, row), place in zip(measured.iterrows(), order):
        where = f" of {row['paper network']}" if columns else ""
        out[row["configuration_key"]] = ("paper: fail" if math.isnan(place)
                                         else f"paper #{int(place)}{where} ({row['paper']}%)")
    return out


def _paper_caption(title: str, record: SearchRecord) -> str:
    what = ("shortcut variants on ResNet-110 with the original unit" if title == "Table 1"
            else "activation placements with identity shortcuts, ResNet-110 (basic units) and "
                 "ResNet-164 (bottleneck units)")
    return (f"{title} of the paper ({what}; CIFAR-10 test error %) beside this search "
            f"({record.scale} scale, {record.dataset}): errors in %, mean ± the half-width of "
            f"the 95% interval over seeds. Matched by the unit (floats at float32), not the "
            f"depth, which the scale reduces.")


