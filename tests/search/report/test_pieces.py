"""The report's pieces on hand-made inputs: matching paper rows, tau-b and its pairs, the Welch
margin and the seeds it needs, Eq. 5/8's predicted direct-path share, the zero-cost screen."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from residual.paper import TABLE1, TABLE2
from search.report import difference, kendall, predicted_share, same_unit, screen, seeds_needed
from search.report.load import Configuration
from search.report.plots import zero_position


def test_units_match_paper_rows_at_float32_and_by_unit_type():
    gate = {"shortcut": "exclusive_gate", "activation": "original", "gate_bias": -6.0000001,
            "bottleneck": False}
    assert same_unit(gate, TABLE1[5])  # b_g = -6 at float32
    assert not same_unit({**gate, "gate_bias": -5.9}, TABLE1[5])
    scaling = {"shortcut": "scaling", "activation": "original", "lam": 0.5,
               "branch_scale": 0.5, "bottleneck": False}
    assert same_unit(scaling, TABLE1[3]) and not same_unit(scaling, TABLE1[2])
    dropout = {"shortcut": "dropout", "activation": "original", "dropout_p": 0.5,
               "dropout_rescale": True, "bottleneck": False}
    assert not same_unit(dropout, TABLE1[10])  # inverted dropout is not the paper's
    bottleneck = {"shortcut": "identity", "activation": "full_preact", "bottleneck": True}
    rows = [r for r in TABLE2 if same_unit(bottleneck, r)]
    assert [r.label for r in rows] == ["full_preact ResNet-164"]


def test_failure_families_cover_the_ranges_the_paper_measured_only():
    from search.report.verdict import FAILURE_FAMILIES

    def families(**unit):
        return [name for name, test in FAILURE_FAMILIES if test(unit)]

    assert families(shortcut="scaling", lam=0.5, branch_scale=1.0) == [FAILURE_FAMILIES[0][0]]
    assert families(shortcut="scaling", lam=0.0, branch_scale=1.0) == [FAILURE_FAMILIES[0][0]]
    assert families(shortcut="scaling", lam=0.98, branch_scale=1.0) == []  # nearly identity
    assert families(shortcut="scaling", lam=0.5, branch_scale=0.5) == []   # the paper's 12.35
    assert families(shortcut="exclusive_gate", gate_bias=-5.0) == [FAILURE_FAMILIES[1][0]]
    assert families(shortcut="exclusive_gate", gate_bias=-6.0) == []
    assert families(shortcut="dropout", dropout_p=0.5) == [FAILURE_FAMILIES[2][0]]
    assert families(shortcut="dropout", dropout_p=0.15) == []
    assert families(shortcut="dropout", dropout_p=0.5, dropout_rescale=True) == []


def test_a_paper_table_takes_one_depth_the_one_where_most_rows_are_measured():
    from search.report.paper import match, one_depth

    def config(activation, depth, rank, full_budget=True):
        unit = {"shortcut": "identity", "activation": activation, "bottleneck": False}
        return Configuration(f"{activation}-{depth}", f"resnet{depth}-{activation}", rank,
                             pd.Series({"full_budget": full_budget}), {},
                             net={"depth": depth, "unit": unit})

    configs = [config("original", 56, 3), config("full_preact", 56, 2),
               config("full_preact", 20, 1), config("relu_before_add", 32, 4),
               config("relu_preact", 110, 5, full_budget=False)]
    rows = [r for r in TABLE2 if not r.unit.bottleneck]
    chosen = one_depth(configs, rows)
    assert {c.depth for c in chosen} == {56}  # two rows there, one at each other depth
    assert [match(chosen, r).label if match(chosen, r) else None for r in rows] == [
        "resnet56-original", None, None, None, "resnet56-full_preact"]


def test_kendall_tau_b_with_the_papers_fails_tied_last():
    labels = ["original", "scaling s=1", "gate -6", "dropout", "1x1"]
    paper = [6.61, 1e9, 8.70, 1e9, 12.22]
    ours = [2, 5, 1, 4, 3]
    intervals = [(10, 20), (30, 40), (15, 25), (45, 50), (21, 22)]
    result = kendall("Table 1", labels, ours, paper, intervals)
    assert result.tau == pytest.approx(stats.kendalltau(ours, paper, variant="b").statistic)
    assert result.tied == 1 and result.concordant + result.discordant == 9
    pairs = result.pairs.set_index(["row a", "row b"])
    assert pairs.loc[("original", "gate -6"), "agreement"] == "discordant"
    assert pairs.loc[("original", "gate -6"), "intervals overlap"] == "yes"
    assert pairs.loc[("gate -6", "1x1"), "agreement"] == "concordant"
    assert pairs.loc[("original", "1x1"), "intervals overlap"] == ""
    # dropout (fail) ahead of scaling s=1 (fail): tied in the paper, no agreement either way
    assert pairs.loc[("dropout", "scaling s=1"), "agreement"] == "tied"
    assert "Kendall tau-b" in result.sentence() and "1 tied" in result.sentence()


def _config(label, values, rank=1):
    row = pd.Series({"val_error_mean": float(np.mean(values)), "full_budget": True,
                     "seeds": len(values), "fail": ""})
    return Configuration(label, label, rank, row, {}, seed_values={"val_error": values})


def test_the_margin_is_welchs_interval_over_seeds():
    a = _config("preact", [0.30, 0.32, 0.31, 0.35])
    b = _config("original", [0.36, 0.40, 0.37])
    diff = difference(a, b)
    x, y = 100 * np.array([0.30, 0.32, 0.31, 0.35]), 100 * np.array([0.36, 0.40, 0.37])
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    assert diff.mean == pytest.approx(x.mean() - y.mean())
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high))
    assert diff.separated and diff.describe().endswith("separated")
    close = difference(_config("a", [0.30, 0.40]), _config("b", [0.33, 0.41]))
    assert not close.separated and "not separated" in close.describe()
    assert f"about {close.seeds_needed()} seeds" in close.describe()
    single = difference(_config("a", [0.30]), _config("b", [0.33, 0.41]))
    assert not single.has_interval and "no interval" in single.describe()


def test_seeds_needed_is_the_smallest_n_that_separates():
    n = seeds_needed(2.0, 3.0)
    t = stats.t.ppf(0.975, 2 * n - 2)
    assert t * 3.0 * math.sqrt(2 / n) < 2.0
    t_before = stats.t.ppf(0.975, 2 * (n - 1) - 2)
    assert t_before * 3.0 * math.sqrt(2 / (n - 1)) >= 2.0
    assert seeds_needed(0.0, 1.0) is None and seeds_needed(1e-9, 5.0, limit=100) is None


def test_eq5_and_eq8_predictions():
    assert predicted_share({"shortcut": "identity"}, 3) == [1.0, 1.0, 1.0]
    assert predicted_share({"shortcut": "scaling", "lam": 0.5}, 3) == [0.125, 0.25, 0.5]
    gates = predicted_share({"shortcut": "exclusive_gate", "gate_bias": 0.0}, 3,
                            [0.9, 0.8, 0.5])
    assert gates == pytest.approx([0.36, 0.4, 0.5])
    assert predicted_share({"shortcut": "dropout", "dropout_p": 0.5,
                            "dropout_rescale": False}, 2) == [0.25, 0.5]
    assert all(math.isnan(v) for v in predicted_share({"shortcut": "conv1x1"}, 2))


def test_the_screen_reports_precision_and_recall():
    table = pd.DataFrame({
        "rank": [1, 2, 3, 4], "configuration": list("abcd"), "fail": ["", "", "fail", "fail"],
        "measured init": [0.3, 0.35, 0.01, 0.2], "relative init": [1.0, 1.1, 0.03, 0.9],
        "grad first/last init": [2.0, 2.1, 1.0, 30.0]})
    rules, features = screen(table)
    a_priori = rules.iloc[0]
    assert a_priori["precision"] == 1.0 and a_priori["recall"] == 0.5
    fitted = rules.iloc[1]
    assert fitted["threshold"] == pytest.approx(0.2) and fitted["recall"] == 1.0
    assert fitted["precision"] == 1.0
    assert features["a priori predicts fail"].tolist() == [False, False, True, False]


def test_zero_is_drawn_below_every_positive_share():
    assert zero_position(np.array([[1.0, 0.2], [0.0, np.nan]])) == 1e-4
    assert zero_position(np.array([0.5 ** 27, 9.2e-12, 0.0, 1.0])) == pytest.approx(1e-13)
    assert zero_position(np.array([0.0, np.nan])) == 1e-4
