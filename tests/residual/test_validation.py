"""residual.validation: one error shape for every spec, recipe and configuration."""

import math

import pytest

from residual.validation import check_choice, check_int, check_number, fail, is_int


class OwnError(ValueError):
    pass


def test_fail_names_owner_field_value_and_what_is_allowed():
    assert str(fail("Recipe", "lr", -1, "a finite number >= 0")) == \
        "Recipe.lr=-1 is invalid; allowed: a finite number >= 0"
    assert str(fail("", "trials", 0, "an integer >= 1")) == \
        "trials=0 is invalid; allowed: an integer >= 1"
    assert isinstance(fail("", "x", 1, "y", OwnError), OwnError)


@pytest.mark.parametrize("kwargs, good, bad, allowed", [
    ({}, -1e9, math.nan, "a finite number"),
    ({"low": 0}, 0, -0.1, "a finite number >= 0"),
    ({"low": 0, "low_open": True}, 0.1, 0, "a finite number > 0"),
    ({"high": 1}, 1, 1.5, "a finite number <= 1"),
    ({"low": 0, "high": 1, "high_open": True}, 0, 1.0, "a finite number in [0, 1)"),
    ({"low": -10, "high": 0}, -10, math.inf, "a finite number in [-10, 0]"),
    ({}, 1, True, "a finite number"),
    ({}, 2.5, "2.5", "a finite number"),
])
def test_check_number(kwargs, good, bad, allowed):
    assert check_number("S", "x", good, **kwargs) == float(good)
    assert isinstance(check_number("S", "x", good, **kwargs), float)
    with pytest.raises(ValueError) as info:
        check_number("S", "x", bad, **kwargs)
    assert str(info.value) == f"S.x={bad!r} is invalid; allowed: {allowed}"


def test_check_int_refuses_bools_floats_and_small_values():
    assert check_int("Recipe", "epochs", 3, 1) == 3
    for bad in (True, 3.0, "3", 0):
        with pytest.raises(ValueError, match="Recipe.epochs=.* allowed: an integer >= 1"):
            check_int("Recipe", "epochs", bad, 1)
    with pytest.raises(OwnError, match="^seed=1.5 is invalid; allowed: an integer$"):
        check_int("", "seed", 1.5, error=OwnError)
    assert is_int(3) and not is_int(True) and not is_int(3.0)


def test_check_choice_lists_the_choices_and_keeps_bools_apart():
    assert check_choice("R", "schedule", "step", ("step", "cosine")) == "step"
    with pytest.raises(OwnError) as info:
        check_choice("", "sampler", "bayes", ("tpe", "random"), error=OwnError)
    assert str(info.value) == "sampler='bayes' is invalid; allowed: tpe | random"
    assert check_choice("U", "bottleneck", False, (True, False)) is False
    for bad in (0, 1, "yes", None):
        with pytest.raises(ValueError, match=r"allowed: True \| False$"):
            check_choice("U", "bottleneck", bad, (True, False))
    with pytest.raises(ValueError):
        check_choice("N", "depth", True, (1, 2))
    assert check_choice("N", "depth", 2, (1, 2)) == 2
