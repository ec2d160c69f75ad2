"""The report of a search at cluster size (hundreds of configurations) stays readable: its
figures draw a bounded number of rows and legend entries, its verdict names a bounded number of
configurations, and a Bonferroni level over many comparisons is not printed as 100%."""

import numpy as np
import pandas as pd
from PIL import Image

from search.report.plots import CURVES_NAMED, ROWS_DRAWN, curve_figure, error_plot, shown_rows
from search.report.separation import percent_level

CONFIGURATIONS = 300


def ranking(n: int = CONFIGURATIONS) -> pd.DataFrame:
    error = np.linspace(0.05, 0.5, n)
    return pd.DataFrame({"rank": range(1, n + 1), "configuration": [f"c{i}" for i in range(n)],
                         "configuration_key": [f"k{i}" for i in range(n)],
                         "val_error_mean": error, "val_error_ci95": 0.01,
                         "test_error_mean": error + 0.01, "fail": ""})


def test_the_error_plot_draws_the_best_rows_and_the_papers_beyond_them(tmp_path):
    marks = {"k3": "paper #1", "k250": "paper #2", "k299": "paper #3"}
    rows = shown_rows(ranking(), marks)
    assert list(rows["rank"]) == [*range(1, ROWS_DRAWN + 1), 251, 300]
    # A small search keeps every row.
    assert len(shown_rows(ranking(12), marks)) == 12
    height = Image.open(error_plot(ranking(), tmp_path / "errors.png", marks)).size[1]
    # 42 rows: about 0.38 inch (38 pixels) each, where 300 rows drew over 11,000 pixels.
    assert height < 60 * (ROWS_DRAWN + 2)


def test_the_curve_plot_names_the_best_curves_and_the_winner_and_counts_the_rest():
    curves = {f"c{i}": [0.6 - 0.001 * i, 0.5 - 0.001 * i] for i in range(CONFIGURATIONS)}
    winner = f"c{CONFIGURATIONS - 1}"  # last in the dict: still named
    legend = [t.get_text() for t in curve_figure(curves, highlight=winner).axes[0]
              .get_legend().get_texts()]
    assert legend[:CURVES_NAMED] == [f"c{i}" for i in range(CURVES_NAMED)]
    assert legend[CURVES_NAMED:] == [f"{winner} (winner)",
                                     f"{CONFIGURATIONS - CURVES_NAMED - 1} more configurations"]
    few = curve_figure({"a": [0.5, 0.4], "b": [0.6, 0.5]}, highlight="a")
    assert [t.get_text() for t in few.axes[0].get_legend().get_texts()] == ["a (winner)", "b"]


def test_a_bonferroni_level_keeps_the_digits_that_tell_it_from_100_percent():
    assert percent_level(0.95) == "95%"
    assert percent_level(1 - 0.05 / 3) == "98.3%"
    assert percent_level(1 - 0.05 / 201) == "99.98%"
    assert percent_level(1 - 0.05 / 2 / 201) == "99.99%"
    assert percent_level(1 - 1e-9) == "99.9999999%"
