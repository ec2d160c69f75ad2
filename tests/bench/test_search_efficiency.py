"""The search-efficiency benchmark's grid and its replay of a search's epochs."""

import pytest

from bench.search_efficiency import epochs_until_winner, grid_params


@pytest.mark.parametrize(("scale", "size"), [("smoke", 11 * 5 * 2), ("small", 11 * 5 * 3)])
def test_grid_is_table1_rows_by_activations_by_depths(scale, size):
    grid = grid_params(scale)
    assert len(grid) == size
    assert len({tuple(sorted(p.items())) for p in grid}) == size  # no configuration twice
    assert {p["activation"] for p in grid} == {"original", "bn_after_add", "relu_before_add",
                                               "relu_preact", "full_preact"}
    assert sum(p["shortcut"] == "identity" and p["activation"] == "original"
               for p in grid) == len({p["depth"] for p in grid})


def test_epochs_until_the_winner_finishes_its_budget():
    events = [(1, 1, "a", 1), (2, 1, "b", 1), (3, 2, "a", 2), (4, 1, "c", 1),
              (5, 3, "a", 3), (6, 2, "b", 2), (7, 3, "b", 3)]
    assert epochs_until_winner(events, "a", 3) == 5
    assert epochs_until_winner(events, "b", 3) == 7
