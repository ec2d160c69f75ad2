"""The verdict's rules on hand-made searches: one seed is never a win, overlapping intervals
are a tie with every member named, a clear gap is first or behind, the winner set and the
margins say the same, the depth trend grows only when the difference of gaps is separated,
and the mechanism's classes from the direct-path share."""

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from search.compare import compare_to_best
from search.layout import SearchPaths
from search.report.load import Configuration, Run, SearchRecord
from search.report.mechanism import direct_share, mechanism_lines, share_class
from search.report.separation import best_of, by_seed, margin, winner_table
from search.report.trend import depth_trend, trend_lines
from search.report.verdict import (
    WINNERS_NAMED,
    margin_lines,
    placements_line,
    shortcuts_line,
    winner_line,
)

BUDGET = 3
IDENTITY_SHARES = [0.5, 0.5, 0.5, 0.707, 0.707, 1.0]
"""Identity shortcut, identity f, 2 units per stage: 1 inside a stage, a zero pad's 1/sqrt(2)
where a stage begins (units 2 and 4)."""
STAGES = [0, 0, 1, 1, 2, 2]


def config(key, points, activation="full_preact", shortcut="identity", depth=20, rank=1,
           bottleneck=False, shares=None, full_budget=True, **unit):
    """A configuration whose seeds (dict keys) have these validation errors (points)."""
    runs = [Run(f"{key}-s{seed}", seed, "ok", BUDGET, [], {} if shares is None else
                {0: {"stage": STAGES[:len(shares)], "direct_path_share": shares}})
            for seed in points]
    values = [p / 100 for p in points.values()]
    row = pd.Series({"full_budget": full_budget, "epochs": BUDGET, "fail": "",
                     "val_error_mean": float(np.mean(values)), "seeds": len(values)})
    net = {"depth": depth, "unit": {"shortcut": shortcut, "activation": activation,
                                    "bottleneck": bottleneck, **unit}}
    return Configuration(key, key, rank, row, {}, net, runs, {"val_error": values},
                         list(points))


def record(*configs):
    ranked = sorted(configs, key=lambda c: c.row["val_error_mean"])
    for rank, c in enumerate(ranked, start=1):
        c.rank = rank
    return SearchRecord(SearchPaths(Path("/nonexistent"), "rules"), {}, pd.DataFrame(),
                        pd.DataFrame(), ranked, BUDGET)


def seeds(*points):
    return dict(enumerate(points))


# --- per-seed values -------------------------------------------------------------------------

def test_by_seed_is_in_points_and_leaves_nan_out():
    c = config("a", {4: 5.0, 7: 6.0})
    assert by_seed(c) == pytest.approx({4: 5.0, 7: 6.0})
    c.seeds.append(9)
    c.seed_values["val_error"].append(float("nan"))
    assert by_seed(c) == pytest.approx({4: 5.0, 7: 6.0})


# --- first among placements / shortcuts ------------------------------------------------------

def test_a_small_gap_on_one_seed_is_not_resolved_never_yes():
    r = record(config("pre", {0: 48.98}), config("orig", {0: 49.06}, activation="original"))
    line = placements_line(r)
    assert line.startswith("First among placements (identity shortcuts)? Not resolved (one "
                           "seed): with basic units, full pre-activation (48.98%) is not "
                           "resolved (one seed)")
    assert "Yes" not in line and "first of" not in line
    winner = winner_line(r)
    assert winner.startswith("Winner: not resolved (one seed): best on its one seed is pre "
                             "(48.98%), of 2 configurations at the full budget of 3 epochs")
    assert "next: orig (49.06%), +0.08 points" in winner


def test_overlapping_intervals_are_tied_first_with_every_member_named():
    r = record(config("pre", seeds(5.0, 5.6, 5.2)),
               config("orig", seeds(5.3, 5.1, 5.5), activation="original"),
               config("relu", seeds(9.0, 9.1, 9.2), activation="relu_preact"))
    line = placements_line(r)
    assert line.startswith("First among placements (identity shortcuts)? Tied: ")
    assert "full pre-activation (5.27%, the best) is tied first of 3 with 1 other whose " \
           "intervals overlap (paired t over 3 seeds, Bonferroni over 2 comparisons): the " \
           "original unit (5.30%, +0.03 points, 97.5% interval" in line
    assert "ReLU-only pre-activation" not in line.split("overlap")[1]  # separated: not named


def test_a_clear_gap_over_three_seeds_is_first_and_separated():
    r = record(config("pre", seeds(5.0, 5.1, 5.2)),
               config("orig", seeds(6.0, 6.05, 6.3), activation="original"))
    line = placements_line(r)
    diffs = np.array([1.0, 0.95, 1.1])
    ci = stats.ttest_rel(diffs, np.zeros(3)).confidence_interval(0.95)
    assert line == ("First among placements (identity shortcuts)? Yes: with basic units, full "
                    "pre-activation (5.10%) is first of 2, separated from every other (paired t "
                    "over 3 seeds, Bonferroni over 1 comparison; closest: the original unit "
                    f"(6.12%, +1.02 points, 95% interval {ci.low:+.2f} to {ci.high:+.2f})).")


def test_behind_and_separated_names_the_best():
    r = record(config("pre", seeds(6.0, 6.05, 6.3)),
               config("orig", seeds(5.0, 5.1, 5.2), activation="original"))
    line = placements_line(r)
    assert line.startswith("First among placements (identity shortcuts)? No: with basic units, "
                           "full pre-activation (6.12%) is behind, separated from the best, the "
                           "original unit (5.10%): +1.02 points, 95% interval")


def test_one_seed_configurations_are_left_out_and_counted():
    r = record(config("pre", seeds(5.0, 5.1, 5.2)),
               config("orig", seeds(6.0, 6.05, 6.3), activation="original"),
               config("bn", {0: 4.0}, activation="bn_after_add"))
    line = placements_line(r)
    assert "full pre-activation (5.10%) is first of 2, separated" in line
    assert line.endswith("; not resolved (one seed): 1 other placement (BN after addition "
                         "(4.00%)).")
    alone = placements_line(record(config("pre", seeds(5.0, 5.1)),
                                   config("orig", {0: 4.0}, activation="original")))
    assert "Not resolved (one seed)" in alone and "every other placement has one seed" in alone


def test_shortcuts_line_follows_the_same_rule():
    r = record(config("id", seeds(5.0, 5.1, 5.2)),
               config("gate", seeds(5.1, 5.0, 5.3), shortcut="exclusive_gate", gate_bias=-6.0),
               config("conv", seeds(8.0, 8.2, 8.1), shortcut="conv1x1"))
    line = shortcuts_line(r)
    assert line.startswith("First among shortcuts (with full pre-activation)? Tied: identity "
                           "(5.10%, the best) is tied first of 3 with 1 other")
    assert "exclusive_gate (5.13%" in line and "conv1x1" not in line
    one = shortcuts_line(record(config("id", {0: 5.0}),
                                config("gate", {0: 5.1}, shortcut="exclusive_gate")))
    assert one.startswith("First among shortcuts (with full pre-activation)? Not resolved (one "
                          "seed): identity (5.00%) is not resolved (one seed)")


# --- the winner set and the margins ----------------------------------------------------------

def test_the_winner_set_names_the_tied_the_separated_and_counts_one_seed_ones():
    singles = [config(f"one{i}", {0: 3.0 + i}, activation="original", depth=20 + i)
               for i in range(3)]
    r = record(config("A", seeds(5.0, 5.6, 5.2)),
               config("B", seeds(5.3, 5.1, 5.5), activation="original"),
               config("C", seeds(9.0, 9.1, 9.2), activation="relu_preact"),
               config("D", seeds(12.0, 12.1, 12.3), activation="bn_after_add"), *singles)
    assert winner_line(r) == (
        "Winner set at the full budget of 3 epochs (not separated from the best, paired t "
        "over 3 seeds, Bonferroni over 3 comparisons): A (5.27%), B (5.30%); separated "
        "behind: C, D; not resolved (one seed): 3 configurations.")
    clear = record(config("A", seeds(5.0, 5.1, 5.2)),
                   config("B", seeds(6.0, 6.05, 6.3), activation="original"))
    assert "): A (5.10%) alone; separated behind: B." in winner_line(clear)


def test_a_margin_uses_the_winner_sets_row_so_they_never_disagree():
    # Paired differences 0.6, 1.0, 1.4: separated at 95% (t 4.33 > 4.30), not at 97.5%.
    r = record(config("pre", seeds(5.0, 5.0, 5.0)),
               config("orig", seeds(5.6, 6.0, 6.4), activation="original"),
               config("far", seeds(20.0, 20.5, 21.0), shortcut="conv1x1"))
    (line,) = margin_lines(r)
    assert line.startswith("Margin of full pre-activation over the original unit (basic units, "
                           "pre-activation minus original, validation error): -1.00 points "
                           "(97.5% interval")
    assert "paired t over 3 shared seeds, Bonferroni over 2 comparisons with the best, as the " \
           "winner set): not separated" in line
    assert "): pre (5.00%), orig (6.00%); separated behind: far." in winner_line(r)
    alone = margin(r.configurations[0], r.configurations[1])  # no table: 95%, separated
    assert alone.test == "paired t" and alone.level == 0.95 and alone.separated


def test_a_margin_follows_the_placements_line_it_quantifies():
    # The same pair, the original unit now the placements' best: the placements line says
    # tied (97.5%, two comparisons), so the margin does too, though 95% alone would separate.
    r = record(config("pre", seeds(5.6, 6.0, 6.4)),
               config("orig", seeds(5.0, 5.0, 5.0), activation="original"),
               config("relu", seeds(20.0, 20.5, 21.0), activation="relu_preact"),
               config("conv", seeds(1.0, 1.1, 1.2), shortcut="conv1x1"))
    assert "full pre-activation (6.00%, +1.00 points, 97.5% interval" in placements_line(r)
    assert "is tied first of 3 with 1 other" in placements_line(r)
    (line,) = margin_lines(r)
    assert line.startswith("Margin of full pre-activation over the original unit (basic units, "
                           "pre-activation minus original, validation error): +1.00 points "
                           "(97.5% interval")
    assert line.endswith("paired t over 3 shared seeds, Bonferroni over 2 comparisons with the "
                         "best, as the placements compared (basic units)): not separated; the "
                         "observed spread (sd 0.40 points) would need about 4 seeds per "
                         "configuration.")


def test_a_margin_without_shared_seeds_is_welch():
    a = config("a", {0: 5.0, 1: 5.2, 2: 5.1})
    b = config("b", {5: 6.0, 6: 6.4}, activation="original")
    d = margin(a, b)
    ci = stats.ttest_ind([5.0, 5.2, 5.1], [6.0, 6.4], equal_var=False).confidence_interval(0.95)
    assert d.test == "Welch t" and (d.low, d.high) == pytest.approx((ci.low, ci.high))
    assert "Welch t over 3 and 2 seeds" in d.describe()


# --- the depth trend -------------------------------------------------------------------------

def trend_record(shallow_original, deep_original, same=(5.0, 5.1, 5.2)):
    return record(config("o20", seeds(*shallow_original), activation="original", depth=20),
                  config("p20", seeds(*same), depth=20),
                  config("o56", seeds(*deep_original), activation="original", depth=56),
                  config("p56", seeds(*same), depth=56))


def test_noisy_increasing_gaps_are_not_called_growth():
    trend = depth_trend(trend_record((4.0, 5.1, 6.2), (4.0, 6.1, 7.2)))
    (line,) = trend_lines(trend)
    assert "Not separated: original minus full pre-activation is +0.00 at depth 20, +0.67 at " \
           "depth 56 points of validation error; means increase, not separated: depth 56 minus " \
           "depth 20 is +0.67 points (95% interval" in line


def test_a_separated_difference_of_gaps_grows():
    o20, o56, same = (5.0, 5.1, 5.2), (7.0, 7.1, 7.3), (5.0, 5.1, 5.2)
    (line,) = trend_lines(depth_trend(trend_record(o20, o56, same)))
    variances = [np.var(x, ddof=1) / 3 for x in (o20, o56, same, same)]
    se = math.sqrt(sum(variances))
    df = sum(variances) ** 2 / sum(v * v / 2 for v in variances)
    d = np.mean(o56) - np.mean(o20)
    half = stats.t.ppf(0.975, df) * se
    assert line.startswith("Does the original unit fall further behind full pre-activation "
                           "with depth (basic units)? Yes: ")
    assert (f"grows: depth 56 minus depth 20 is {d:+.2f} points (95% interval "
            f"{d - half:+.2f} to {d + half:+.2f}, Welch-Satterthwaite") in line
    assert line.endswith("separated from zero at depth 56 (95% interval "
                         + re.search(r"depth 56 \(95% interval (.+)\)\.$", line).group(1) + ").")


def test_gaps_that_shrink_do_not_grow_and_one_seed_is_not_resolved():
    (line,) = trend_lines(depth_trend(trend_record((7.0, 7.1, 7.3), (5.0, 5.1, 5.2))))
    assert "? No: " in line and "; does not grow: depth 56 minus depth 20 is -2.03" in line
    r = record(config("o20", {0: 5.0}, activation="original"), config("p20", {0: 5.0}),
               config("o56", {0: 7.0}, activation="original", depth=56),
               config("p56", {0: 5.0}, depth=56))
    (line,) = trend_lines(depth_trend(r))
    assert "? Not resolved (one seed): " in line and "no interval: a cell has one seed" in line


# --- the mechanism ---------------------------------------------------------------------------

def scaled(factor, reshape=0.707):
    """Shares of 6 units where every unit multiplies the direct path by `factor` and the two
    stage-starting units also by a zero pad's `reshape`."""
    shares, s = [], 1.0
    for l in reversed(range(6)):
        s *= factor * (reshape if l in (2, 4) else 1.0)
        shares.append(s)
    return shares[::-1]


def test_direct_share_divides_the_shape_changes_out():
    identity = config("id", seeds(5.0), shares=IDENTITY_SHARES)
    assert IDENTITY_SHARES[0] == 0.5  # the raw first-unit share would call it partial
    assert direct_share(identity) == pytest.approx(1.0)
    assert share_class(direct_share(identity)) == "identity-like"
    half = config("s", seeds(5.0), shortcut="scaling", lam=0.5, shares=scaled(0.5))
    assert direct_share(half) == pytest.approx(0.5 ** 4)  # units 0, 1, 3, 5
    assert share_class(direct_share(half)) == "path-blocking"
    relu = config("o", seeds(5.0), activation="original", shares=scaled(0.9))
    assert direct_share(relu) == pytest.approx(0.9 ** 4) and share_class(0.9 ** 4) == "partial"
    bottleneck = config("b", seeds(5.0), bottleneck=True, shares=scaled(0.9))
    assert direct_share(bottleneck) == pytest.approx(0.9 ** 3)  # unit 0 reshapes too
    assert direct_share(config("z", seeds(5.0), shares=[0.0] * 6)) == 0.0
    assert math.isnan(direct_share(config("n", seeds(5.0))))
    assert share_class(math.nan) == "not measured"


def test_the_mechanism_questions_with_their_numbers():
    r = record(config("pre", seeds(5.0, 5.1, 5.2), shares=IDENTITY_SHARES),
               config("orig", seeds(5.1, 5.0, 5.4), activation="original", shares=scaled(0.9)),
               config("lam", seeds(30.0, 31.0, 29.0), shortcut="scaling", lam=0.5,
                      shares=scaled(0.5)),
               config("gate", {0: 40.0}, shortcut="exclusive_gate", shares=scaled(0.1)))
    first, blocking, preact = mechanism_lines(r)
    assert first.startswith("Mechanism: is every configuration in the winner set identity-like")
    assert "? No: 2 configurations in the winner set; not identity-like with pre-activation: " \
           "orig (share 0.66, partial, the original unit); identity-like with pre-activation: " \
           "pre (share 1.00, identity-like, full pre-activation)." in first
    assert blocking.startswith("Mechanism: is every path-blocking configuration (S < 0.5) that "
                               "trained the full budget separated worse than the best? Not "
                               "resolved (one seed): 2 path-blocking configurations")
    assert "separated behind: lam (S 0.06, 30.00%, +24.90 points" in blocking
    assert "not resolved (one seed): gate (S 0.00, 40.00%, one seed)" in blocking
    assert preact == ("Mechanism: is identity with full pre-activation itself in the winner "
                      "set? Yes: pre (5.10%, the best).")


def test_the_mechanism_says_not_sampled_not_measured_and_no():
    r = record(config("orig", seeds(5.0, 5.1, 5.2), activation="original"),
               config("lam", seeds(5.1, 5.0, 5.3), activation="original", shortcut="scaling",
                      shares=scaled(0.5)))
    first, blocking, preact = mechanism_lines(r)
    assert "? No: " in first and "lam (share 0.06, path-blocking, the original unit)" in first
    assert "not measured: orig" in first
    assert blocking.startswith("Mechanism: is every path-blocking configuration (S < 0.5) that "
                               "trained the full budget separated worse than the best? No: ")
    assert "in the winner set: lam (S 0.06, 5.13%, +0.03 points" in blocking
    assert blocking.endswith("(1 configuration not measured).")
    assert preact.endswith("? Not sampled: no configuration with identity shortcuts and full "
                           "pre-activation was sampled.")
    single = mechanism_lines(record(config("pre", {0: 5.0}, shares=IDENTITY_SHARES),
                                    config("orig", {0: 5.1}, activation="original")))
    assert single[0].endswith("Not resolved (one seed): no winner set; the best by mean is pre "
                              "(share 1.00, identity-like, full pre-activation).")
    assert single[2].endswith("? Not resolved (one seed): pre (5.00%, not resolved (one seed)).")


def test_the_winner_table_is_compare_to_best_over_comparable_configurations():
    r = record(config("a", seeds(5.0, 5.1)), config("b", seeds(6.0, 6.2), activation="original"),
               config("c", seeds(1.0, 1.1), activation="relu_preact", full_budget=False))
    expected = compare_to_best({"a": seeds(5.0, 5.1), "b": seeds(6.0, 6.2)})
    pd.testing.assert_frame_equal(winner_table(r), expected)


def test_a_large_winner_set_names_its_best_members_and_counts_the_rest():
    tied = [config(f"T{i:02d}", seeds(5.0 + 0.01 * i, 5.5, 5.2), depth=20 + i)
            for i in range(WINNERS_NAMED + 8)]
    line = winner_line(record(*tied))
    assert "T00 (5.23%), T01 (5.24%)" in line
    assert f"T{WINNERS_NAMED - 1:02d}" in line and f"T{WINNERS_NAMED:02d}" not in line
    assert line.endswith(" and 8 more.")


def test_the_best_is_the_verdicts_not_a_one_seed_rank_one():
    """Under ASHA a configuration whose other seed was stopped can rank first on its one seed;
    the report's winner (the curve plot's thick line) is the winner set's best."""
    r = record(config("lucky", {0: 4.0}), config("A", seeds(5.0, 5.1, 5.2)),
               config("B", seeds(6.0, 6.1, 6.2)))
    assert r.configurations[0].key == "lucky"  # rank 1
    assert best_of(r).key == "A"
    assert best_of(record(config("one", {0: 4.0}), config("two", {0: 5.0}))).key == "one"
    assert best_of(record(config("short", seeds(5.0, 5.1), full_budget=False))) is None
