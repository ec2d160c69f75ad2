"""search.compare: the separation rule the race and the verdict share."""

import math

import pytest
from scipy import stats

from search.compare import compare_to_best, winner_set


def test_paired_differences_with_bonferroni_decide_and_the_interval_shows_the_decision():
    values = {"a": {0: 50.0, 1: 51.0, 2: 50.5},   # best
              "b": {0: 50.4, 1: 51.6, 2: 51.0},   # always a little worse: separated paired
              "c": {0: 49.0, 1: 53.5, 2: 50.5}}   # as good on average, noisy: tied
    table = compare_to_best(values).set_index("key")
    assert table.loc["a", "status"] == "best"
    assert table.loc["b", "test"] == "paired t" and table.loc["b", "status"] == "behind"
    assert table.loc["c", "status"] == "tied"
    level = 1 - 0.05 / 2  # two comparisons with the best
    assert table["level"].eq(level).all()
    low, high = stats.ttest_rel([50.4, 51.6, 51.0],
                                [50.0, 51.0, 50.5]).confidence_interval(level)
    assert table.loc["b", ["low", "high"]].tolist() == pytest.approx([low, high])
    assert table.loc["b", "diff"] == pytest.approx(0.5)
    for _, row in table.iloc[1:].iterrows():  # separated exactly when the interval is above 0
        assert (row["status"] == "behind") == (row["low"] > 0)
    assert winner_set(compare_to_best(values)) == ["a", "c"]


def test_one_seed_is_unresolved_and_never_the_best_beside_configurations_with_spread():
    values = {"lucky": {0: 40.0}, "x": {0: 50.0, 1: 50.2}, "y": {0: 60.0, 1: 61.0}}
    table = compare_to_best(values).set_index("key")
    assert table.loc["x", "status"] == "best"  # lowest mean among those with two seeds
    assert table.loc["lucky", "status"] == "unresolved"
    assert math.isnan(table.loc["lucky", "low"])
    assert table.loc["y", "test"] == "paired t"
    only_one = compare_to_best({"a": {0: 48.9}, "b": {0: 49.0}})
    assert list(only_one["status"]) == ["best", "unresolved"]
    assert winner_set(only_one) == ["a"]


def test_without_shared_seeds_it_is_welch():
    table = compare_to_best({"a": {0: 50.0, 1: 51.0}, "b": {2: 60.0, 3: 61.0}}).set_index("key")
    assert table.loc["b", "test"] == "Welch t"
    low, _ = stats.ttest_ind([60.0, 61.0], [50.0, 51.0],
                             equal_var=False).confidence_interval(0.95)
    assert table.loc["b", "low"] == pytest.approx(low)
