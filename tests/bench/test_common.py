"""Figures are one parseable line each; a missing one says why and has no number."""

import pytest

from bench.common import Timers, figure, missing, note, parse_figures


def test_figures_round_trip_and_notes_are_not_figures(capsys):
    figure("a.ratio", 1.04321, "x (trial / bare)")
    figure("a.count", 12)
    missing("gpu.b.mfu", "no CUDA device")
    note("machine: nothing: here")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "a.ratio: 1.043 x (trial / bare)"
    figures = parse_figures(out)
    assert figures == {"a.ratio": ("1.043", "x (trial / bare)"), "a.count": ("12", ""),
                       "gpu.b.mfu": ("missing", "(no CUDA device)")}


def test_timers_time_and_put_back():
    class Owner:
        @staticmethod
        def work(x):
            return 2 * x

    original = Owner.work
    with Timers() as timers:
        timers.wrap(Owner, "work", "w")
        assert Owner.work(3) == 6 and Owner.work(4) == 8
    assert timers.calls["w"] == 2 and timers.seconds["w"] >= 0 and timers.cpu_seconds["w"] >= 0
    assert Owner.work is original


def test_timing_a_function_that_is_not_there_raises():
    """A renamed function must break the benchmark, not print a figure of zero seconds."""
    class Owner:
        pass

    with Timers() as timers, pytest.raises(AttributeError, match=r"Owner\.absent"):
        timers.wrap(Owner, "absent")
    assert not timers.calls


def test_sections_time_blocks_by_name():
    timers = Timers()
    for _ in range(2):
        with timers.section("block"):
            sum(range(1000))
    assert timers.calls["block"] == 2
    assert timers.seconds["block"] > 0 and timers.cpu_seconds["block"] >= 0
