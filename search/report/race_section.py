"""The race section: each round of the race over the finalists (`--race`), who stayed, who
left, and the intervals that decided it (race.csv, written by `search.race`)."""

from __future__ import annotations

import pandas as pd

from .display import formatted
from .render import Section
from .sections import Parts

METHOD = (
    "Each round every finalist still in the race trains the same new seed to the full budget; "
    "each is then compared with the best (the lowest mean validation error) over every seed "
    "both have. Test: paired t on the seed-by-seed differences (seed s is the same data order "
    "and split for every configuration, so pairing removes that part of the noise, as irace's "
    "races pair instances). Correction: Bonferroni over the round's comparisons with the best, "
    "so the chance that any finalist leaves while truly as good as the best stays below 5% "
    "per round; the interval shown is at that corrected level, so an interval above zero is "
    "exactly a finalist that left. The race stops when one finalist is left or at the last "
    "seed.")


def race_table(race: pd.DataFrame) -> pd.DataFrame:
    """race.csv as the report shows it: errors and differences in points."""
    return pd.DataFrame({
        "round": race["round"], "new seed": race["new_seed"],
        "configuration": race["configuration"], "seeds": race["seeds"],
        "val error %": race["mean"], "minus best": race["diff"],
        "interval": [_interval(low, high, level) for low, high, level
                     in zip(race["low"], race["high"], race["level"])],
        "test": race["test"], "status": race["status"].map(_status)})


def race_section(parts: Parts) -> Section | None:
    race = parts.record.race
    if race.empty:
        return None
    parts.tables["race"] = table = race_table(race)
    rounds = race.groupby("round")
    first, last = rounds.get_group(race["round"].min()), rounds.get_group(race["round"].max())
    left = race[race["status"] == "behind"]
    stayed = last[last["status"] != "behind"]
    summary = (f"{len(first)} finalists raced over {int(last['seeds'].max())} seeds in "
               f"{race['round'].nunique()} round(s); "
               + (f"{len(left)} left ({', '.join(_left(left))}); " if len(left) else
                  "none left; ")
               + f"{len(stayed)} stayed: {', '.join(stayed['configuration'])}.")
    return (Section("Race").text(summary).text(METHOD)
            .table(formatted(table, {"val error %": 2, "minus best": 2}),
                   "One row per finalist per round, the best first. val error %: mean over "
                   "its seeds so far; minus best: mean paired difference from the best; "
                   "interval: at the level shown (Bonferroni-corrected)."))


def _interval(low: float, high: float, level: float) -> str:
    if pd.isna(low):
        return ""
    return f"{low:+.2f} to {high:+.2f} ({100 * level:.1f}%)"


def _status(status: str) -> str:
    return {"behind": "separated behind: leaves", "tied": "not separated: stays",
            "best": "best"}.get(status, status)


def _left(left: pd.DataFrame) -> list[str]:
    return [f"{c} after round {int(r)}" for c, r in zip(left["configuration"], left["round"])]
