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
                    "label": row["configuration"], "val": runs["val_error"].tolist()})
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
    basic = sorted((m for m in measured if not m["unit"].bottleneck), key=lambda m: m["rank"])
    place = [m["unit"].activation for m in basic].index("full_preact") + 1
    line = next(v for v in done["verdict"] if v.startswith("First among placements"))
    assert re.search(rf"full pre-activation is {place}\w\w of 5 with basic units", line)
    assert line.split("?")[1].strip().startswith("Yes" if place == 1 else ("No", "Partly"))
    margins = [v for v in done["verdict"] if v.startswith("Margin of full pre-activation")]
    assert len(margins) == 2 and all("95% interval" in m for m in margins)
