"""One set of validation helpers, shared by every spec, recipe and configuration of the platform.

Every check raises one ValueError with one line in one shape,

    {owner}.{name}={value!r} is invalid; allowed: {allowed}

(`{name}=...` when there is no owner), so an error names the field, the value and what would
have been accepted wherever it comes from (DESIGN.md: "clear error if invalid"). `error=` lets
a caller raise its own ValueError subclass (spaces.SpaceError, search's SearchConfigError).
Bools are refused wherever a number is asked for: `True` is an int to Python, never a depth or a
learning rate to a researcher. Torch-free, like every module a spec needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """An int or float that is not a bool (finite or not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def choices(values: Iterable[Any]) -> str:
    """`a | b | c`: how an error lists the allowed values (strings unquoted, as typed on a CLI)."""
    return " | ".join(str(v) for v in values)


def fail(owner: str, name: str, value: Any, allowed: str,
         error: type[ValueError] = ValueError) -> ValueError:
    """The error (returned, for the caller to raise) for `owner.name=value`."""
    where = f"{owner}.{name}" if owner else name
    return error(f"{where}={value!r} is invalid; allowed: {allowed}")


def number_range(low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> str:
    """The words for a range of finite numbers: `a finite number in [0, 1)`, `... >= 0`."""
    if low is not None and high is not None:
        return (f"a finite number in {'(' if low_open else '['}{low:g}, "
                f"{high:g}{')' if high_open else ']'}")
    if low is not None:
        return f"a finite number {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"a finite number {'<' if high_open else '<='} {high:g}"
    return "a finite number"


def in_range(value: float, low: float | None = None, high: float | None = None, *,
             low_open: bool = False, high_open: bool = False) -> bool:
    """Whether a number lies within the bounds (None: unbounded on that side)."""
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


def check_number(owner: str, name: str, value: Any, low: float | None = None,
                 high: float | None = None, *, low_open: bool = False, high_open: bool = False,
                 error: type[ValueError] = ValueError) -> float:
    """`value` as a float if it is a finite number within the bounds; else raise."""
    if not (is_number(value) and math.isfinite(value)
            and in_range(value, low, high, low_open=low_open, high_open=high_open)):
        raise fail(owner, name, value, number_range(low, high, low_open=low_open,
                                                    high_open=high_open), error)
    return float(value)


def check_int(owner: str, name: str, value: Any, low: int | None = None, *,
              error: type[ValueError] = ValueError) -> int:
    """`value` if it is an int (not a bool) >= low; else raise."""
    if not is_int(value) or (low is not None and value < low):
        raise fail(owner, name, value, "an integer" if low is None else f"an integer >= {low}",
                   error)
    return value


def check_choice(owner: str, name: str, value: T, allowed: Iterable[Any], *,
                 error: type[ValueError] = ValueError) -> T:
    """`value` if it is one of `allowed`; else raise, listing them.

    A bool matches only a bool: `1` is not `True`, and `True` is not the choice `1`.
    """
    allowed = tuple(allowed)
    if not any(_same(value, a) for a in allowed):
        raise fail(owner, name, value, choices(allowed), error)
    return value


def _same(value: Any, allowed: Any) -> bool:
    if isinstance(value, bool) != isinstance(allowed, bool):
        return False
    try:
        return bool(value == allowed)
    except Exception:  # an odd type whose == raises or is not a truth value is simply not it
        return False
