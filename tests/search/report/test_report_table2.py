"""The report of a real paper-table2 search: Table 2's ResNet-110/164 rows matched by unit type
at a reduced depth, Table 3's original -> pre-activation rows, the placement verdict."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from residual import UnitSpec
from residual.paper import TABLE2

NAME = "t2"


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_search):
    return run_search(tmp_path_factory.mktemp("report-t2") / "results", "paper-table2", NAME)


@pytest.fixture(scope="module")
def done(results, run_report):
    return run_report(NAME, results)


@pytest.fixture(scope="module")
def measured(results):
    """Per configuration: its unit (from plan.json), depth, rank, and seed errors."""
    directory = results / "searches" / NAME
    ranking = pd.read_csv(directory / "ranking.csv", dtype={"configuration_key": str})
    trials = pd.read_csv(directory / "trials.csv", dtype={"configuration_key": str})
    out = []
    for _, row in ranking.iterrows():
        runs = trials[trials["configuration_key"] == row["configuration_key"]]
        first = runs.iloc[0]
        plan = json.loads((directory / "trials" / f"{int(first['optuna_trial']):04d}-s"
                           f"{int(first['seed'])}" / "plan.json").read_text())
        out.append({"unit": UnitSpec.from_dict(plan["net"]["unit"]),
                    "depth": plan["net"]["depth"], "rank": row["rank"],
                    "label": row["configuration"], "val": runs["val_error"].tolist(),
                    "seeds": runs["seed"].tolist()})
    return out


def test_table2_rows_are_matched_by_unit_type_not_depth(done, results, measured):
    from search.report import report

    assert "ray" not in done["modules"]
    r = report(NAME, results)
    table = r.tables["table2"]
    assert len(table) == 10 and (table["configuration"] != "").all()
    for _, row in table.iterrows():
        bottleneck = row["paper network"] == "ResNet-164"
        assert row["configuration"].startswith("resnet11-bottleneck-" if bottleneck
                                               else "resnet8-identity-")
        assert row["configuration"].endswith("-" + row["paper row"].split()[0])
    # tau-b, recomputed from the ranking and the paper's rows
    ours, paper = [], []
    for m in measured:
        (row,) = [p for p in TABLE2 if p.unit == m["unit"]]
        ours.append(m["rank"])
        paper.append(row.error)
    expected = stats.kendalltau(ours, paper, variant="b").statistic
    assert done["tau"]["Table 2"][0] == pytest.approx(expected)
    assert done["tau"]["Table 2"][1] == 10


def test_table3_is_original_to_full_preactivation(results, measured):
    from search.report import report

    r = report(NAME, results)
    table3 = r.tables["table3"].set_index("unit")
    assert list(table3.index) == ["basic", "bottleneck"]
    for unit, bottleneck in (("basic", False), ("bottleneck", True)):
        val = {m["unit"].activation: m["val"] for m in measured
               if m["unit"].bottleneck == bottleneck}
        change = 100 * (np.mean(val["full_preact"]) - np.mean(val["original"]))
        assert table3.loc[unit, "change %"] == pytest.approx(change)
        paper = table3.loc[unit, "paper change"]
        assert table3.loc[unit, "same direction"] == ("yes" if np.sign(change)
                                                      == np.sign(paper) else "no")
    assert r.tau["Table 3"].n == 4


def test_the_verdict_places_full_preactivation(done, measured):
    """compare.py's rule, recomputed from the trials: first only when separated from every
    other placement, tied first with every member of the winner set named, else behind."""
    from search.compare import compare_to_best, winner_set
    from search.report.verdict import PLACEMENT_NAMES

    basic = [m for m in measured if not m["unit"].bottleneck]
    values = {m["unit"].activation: {s: 100 * v for s, v in zip(m["seeds"], m["val"])}
              for m in basic}
    table = compare_to_best(values)
    winners = winner_set(table)
    line = next(v for v in done["verdict"] if v.startswith("First among placements"))
    part = line.split("; with bottleneck units")[0]
    assert part.split("?")[1].strip().startswith(
        ("Yes", "Tied", "Partly") if winners == ["full_preact"] else
        ("Tied", "Partly") if "full_preact" in winners else ("No", "Partly"))
    if winners == ["full_preact"]:
        assert "full pre-activation" in part and "is first of 5, separated" in part
    elif "full_preact" in winners:
        assert re.search(rf"is tied first of 5 with {len(winners) - 1} others?", part)
        assert all(PLACEMENT_NAMES[a] in part for a in winners)
    else:
        best = PLACEMENT_NAMES[table["key"].iloc[0]]
        assert f"is behind, separated from the best, {best}" in part
    margins = [v for v in done["verdict"] if v.startswith("Margin of full pre-activation")]
    assert len(margins) == 2 and all(re.search(r"\d% interval", m) for m in margins)
    assert all("paired t over 2 shared seeds" in m for m in margins)
