"""ASHA and synchronous successive halving replayed on hand-made learning curves."""

import pytest

from search.report import grace_table, replay_asha, rungs

# Errors per epoch (lower is better). "late" is the worst after one epoch and the best at the
# end: a late bloomer.
CURVES = {
    "steady": [0.30, 0.25, 0.22, 0.20],
    "late": [0.50, 0.30, 0.19, 0.10],
    "poor": [0.40, 0.38, 0.36, 0.35],
}


def test_rungs_are_below_the_budget():
    assert rungs(1, 2, 4) == (1, 2)
    assert rungs(3, 2, 4) == (3,)
    assert rungs(1, 3, 10) == (1, 3, 9)
    assert rungs(4, 2, 4) == ()
    with pytest.raises(ValueError, match="reduction_factor"):
        rungs(1, 1, 4)


def test_a_short_grace_period_kills_the_late_bloomer_and_a_longer_one_keeps_it():
    short = replay_asha(CURVES, grace_period=1, reduction_factor=2, max_t=4)
    assert short.winner == "late"
    assert short.asynchronous == {"steady": None, "late": 1, "poor": 2}
    assert short.winner_stopped_async and short.winner_stopped_sync
    assert short.synchronous == {"steady": None, "late": 1, "poor": 1}
    assert short.epochs("async") == 4 + 1 + 2

    longer = replay_asha(CURVES, grace_period=3, reduction_factor=2, max_t=4)
    assert longer.rungs == (3,)
    assert not longer.winner_stopped_async and not longer.winner_stopped_sync
    assert longer.asynchronous == {"steady": None, "late": None, "poor": 3}
    assert longer.synchronous == {"steady": 3, "late": None, "poor": 3}


def test_the_first_to_reach_a_rung_always_continues():
    """Asynchronous: the order of arrival decides; the late bloomer first survives rung 1."""
    first = {"late": CURVES["late"], "steady": CURVES["steady"], "poor": CURVES["poor"]}
    result = replay_asha(first, grace_period=1, reduction_factor=2, max_t=4)
    assert result.asynchronous["late"] is None
    one_at_a_time = replay_asha(CURVES, 1, 2, 4, concurrency=1)
    assert one_at_a_time.asynchronous["late"] == 1


def test_a_missing_error_ranks_worst_and_short_curves_are_refused():
    curves = {**CURVES, "broken": [float("nan")] * 4}
    result = replay_asha(curves, 1, 2, 4)
    assert result.asynchronous["broken"] == 1 and result.winner == "late"
    with pytest.raises(ValueError, match="shorter than max_t"):
        replay_asha({"a": [0.1, 0.2], "b": [0.1]}, 1, 2, max_t=2)


def test_the_grace_table_shows_where_the_winner_survives():
    table = grace_table(CURVES, reduction_factor=2, max_t=4)
    assert table["grace period"].tolist() == [1, 2, 3]
    assert table["ASHA keeps winner"].tolist() == ["no", "no", "yes"]
    assert table.loc[0, "ASHA stops"] == 2
    assert table.loc[0, "ASHA epochs %"] == pytest.approx(100 * 7 / 12)
