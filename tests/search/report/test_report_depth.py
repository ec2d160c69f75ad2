"""paper-depth: its grid at the smoke scale end to end, and the report's depth trend, whose
intervals are recomputed here from the trials with scipy."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.cli import main
from search.report import report
from spaces import SCALES, load_space

NAME = "depth"
ROOT = Path(__file__).resolve().parents[3]


def test_listed_and_its_anchors_are_the_grid_once(capsys):
    assert main(["list-spaces"]) == 0
    assert "paper-depth" in capsys.readouterr().out
    for scale in SCALES.values():
        space = load_space("paper-depth", scale)
        cells = {(a["activation"], a["bottleneck"], a["depth"]) for a in space.anchors}
        assert len(cells) == len(space.anchors) == 3 * sum(map(len, scale.trend_depths.values()))
        for anchor in space.anchors:  # every depth builds for both unit types
            for bottleneck in (False, True):
                space.plan({**anchor, "bottleneck": bottleneck}, scale)


@pytest.fixture(scope="module")
def results(tmp_path_factory, run_search):
    return run_search(tmp_path_factory.mktemp("report-depth") / "results", "paper-depth", NAME)


def test_the_trend_table_is_welchs_interval_over_seeds(results):
    written = report(NAME, results)
    trend = written.tables["depth_trend"]
    directory = results / "searches" / NAME
    trials = pd.read_csv(directory / "trials.csv")
    cells = {}
    for _, trial in trials.iterrows():
        net = json.loads((directory / "trials" / f"{int(trial['optuna_trial']):04d}-s"
                          f"{int(trial['seed'])}" / "plan.json").read_text())["net"]
        cell = (net["unit"]["bottleneck"], net["depth"], net["unit"]["activation"])
        cells.setdefault(cell, []).append(100 * trial["val_error"])
    assert len(trend) == 2 * 2 * 2  # unit types x depths x the two pre-activations
    for _, row in trend.iterrows():
        bottleneck = row["unit"] == "bottleneck"
        x = np.array(cells[(bottleneck, row["depth"], "original")])
        y = np.array(cells[(bottleneck, row["depth"], row["original minus"])])
        assert row["gap"] == pytest.approx(x.mean() - y.mean())
        interval = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
        assert (row["low"], row["high"]) == pytest.approx((interval.low, interval.high))
        assert row["separated"] == (interval.low > 0 or interval.high < 0)
    trend_lines = [line for line in written.verdict if "with depth" in line]
    assert len(trend_lines) == 2  # one per unit type
    assert {"depth_trend", "training_loss"} <= set(written.paths)
    assert "The advantage with depth" in (directory / "report.md").read_text()


def test_the_results_check_finds_a_changed_figure(results, tmp_path):
    """docs/check_results.py: a table copied from the report matches; one changed figure is
    named."""
    section = (results / "searches" / NAME / "report.md").read_text().split(
        "## The advantage with depth\n")[1].split("\n## ")[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    copied = f"<!-- report: {NAME} / The advantage with depth -->\n{table}\n<!-- end -->\n"
    page = tmp_path / "RESULTS.md"
    script = [sys.executable, str(ROOT / "docs" / "check_results.py"), str(results),
              "--results", str(page)]
    page.write_text(copied)
    same = subprocess.run(script, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "8 rows compared, 0 differ" in same.stdout
    first_row = table.splitlines()[2]
    gap = first_row.split("|")[4].strip()
    page.write_text(copied.replace(first_row, first_row.replace(f"| {gap} |", "| 99.99 |")))
    changed = subprocess.run(script, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert changed.returncode == 1
    assert f"RESULTS.md says '99.99', the results say '{gap}'" in changed.stdout
    # A search the results directory does not hold: named once, however many tables it has.
    gone = copied.replace(f"report: {NAME} /", "report: gone /")
    page.write_text(gone + gone)
    missing = subprocess.run(script, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert missing.returncode == 2
    assert missing.stdout.count("gone: no report") == 1 and "2 missing" in missing.stdout
