"""The race after a search (`--race K`): irace's post-selection race over its finalists.

A search ranks most configurations on one seed, and one seed's ranking is noise where the
configurations are close. The K best that trained the full budget (the finalists) get further
seeds, one round at a time: in a round every finalist still in the race runs the same new seed
(the same Optuna trial's configuration, `stage=race`), so the differences are paired by seed.
After the round each finalist is compared with the best over every seed it has
(`search.compare`: paired t, Bonferroni over the comparisons of the round); one separated
worse leaves. The race ends when one is left (the best is separated from every other), or
when the finalists have `race_seeds` seeds.

Every round is a Ray experiment of its own (`<name>-race-s<seed>`) and search.json keeps the
finalists, so running the same command again resumes a race where it was cut off.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from spaces import SearchSpace

from .compare import compare_to_best
from .config import SearchConfig, Settings
from .rounds import fit_runs, run_again
from .searcher import ENDED, SpaceSearcher
from .stores import race_round, save_state, saved_state
from .tracking.journal import Journal
from .tracking.records import finish_search_run, trial_records
from .tracking.sender import Sender


def finalists(ranking: pd.DataFrame, k: int) -> list[int]:
    """The Optuna trial numbers of the K best configurations that trained the full budget
    (a diverged one, ranked last among them, is no finalist)."""
    eligible = ranking[ranking["full_budget"] & (ranking["fail"].fillna("") != "diverged")]
    return [int(n) for n in eligible["optuna_trial"].head(k)]


def seed_values(runs: pd.DataFrame, budget: int) -> dict[int, dict[int, float]]:
    """Optuna trial -> seed -> validation error in points, at the full budget (a diverged run
    with its last finite error, as the ranking counts it; an errored one not at all)."""
    if runs.empty:
        return {}
    counted = runs[(runs["outcome"] != "error")
                   & ((runs["epochs"] >= budget) | (runs["outcome"] == "diverged"))]
    return {int(n): dict(zip(group["seed"].astype(int), 100 * group["val_error"].astype(float)))
            for n, group in counted.groupby("optuna_trial")}


def race(space: SearchSpace, config: SearchConfig, settings: Settings, journal: Journal,
         sender: Sender, searcher: SpaceSearcher, ranking: pd.DataFrame,
         search_trials: pd.DataFrame,
         interrupted: Callable[[], bool] = lambda: False) -> tuple[pd.DataFrame, list[str]]:
    """Run (or resume) the race; returns its rounds and what is left to do (race runs that
    ended in error or did not end, or rounds an interrupt left: the same command runs them).
    `interrupted` says whether Ctrl-C came (`search.tune_fixes.CtrlC`): no round starts after
    it."""
    paths = settings.paths
    state = saved_state(paths).get("race") or {"finalists": finalists(ranking, config.race)}
    if len(state["finalists"]) < 2:
        _save(paths, state, None, done=True)
        if config.progress:
            print(f"race: {len(state['finalists'])} configuration(s) trained the full budget; "
                  "a race needs two", flush=True)
        return pd.DataFrame(), []
    labels = dict(zip(ranking["optuna_trial"].astype(int), ranking["configuration"]))
    alive, rounds = list(state["finalists"]), []
    for seed in range(config.seeds, config.race_seeds):
        _save(paths, state, seed)
        records = _run_round(space, config, settings, journal, sender, searcher, alive, seed)
        ran = records[records["seed"] == seed] if not records.empty else records
        errored = [key for key, o in zip(ran["run_key"], ran["outcome"]) if o not in ENDED]
        if errored:
            return _rounds(rounds), [f"{len(errored)} race run(s) ended in error or did not "
                                     f"end ({', '.join(errored)})"]
        values = seed_values(pd.concat([search_trials, records]), settings.epochs)
        table = compare_to_best({str(n): values.get(n, {}) for n in alive})
        table.insert(0, "round", seed - config.seeds + 1)
        table.insert(1, "new_seed", seed)
        table.insert(3, "configuration", [labels.get(int(k), k) for k in table["key"]])
        rounds.append(table)
        if config.progress:
            _print_round(table)
        if interrupted():
            return _rounds(rounds), [f"the race was interrupted (Ctrl-C) after round "
                                     f"{seed - config.seeds + 1}"]
        alive = [int(k) for k, s in zip(table["key"], table["status"]) if s != "behind"]
        if len(alive) == 1:
            break
    _save(paths, state, None, done=True)
    return _rounds(rounds), []


def _run_round(space: SearchSpace, config: SearchConfig, settings: Settings, journal: Journal,
               sender: Sender, searcher: SpaceSearcher, alive: list[int],
               seed: int) -> pd.DataFrame:
    """Seed `seed` of every finalist in `alive`, each once to the full budget (a round that
    already ran is not run again); the race's records so far."""
    records = _records(journal, sender)
    runs = [searcher.trial_config(number, seed, "race") for number in alive]
    if config.progress:
        print(f"race round {seed - config.seeds + 1} of at most "
              f"{config.race_seeds - config.seeds}: seed {seed} of {len(runs)} finalists "
              f"(Optuna trials {', '.join(map(str, alive))})", flush=True)
    if fit_runs(space, config, settings, journal, runs, race_round(seed), records):
        records = _records(journal, sender)
        if run_again(space, config, settings, journal, searcher, records, "race"):
            records = _records(journal, sender)
    return records


def _records(journal: Journal, sender: Sender) -> pd.DataFrame:
    return pd.DataFrame(trial_records(journal, sender.ids, stage="race"))


def _save(paths, state: dict, seed: int | None, done: bool = False) -> None:
    """The race's finalists and the seeds its rounds ran (their Ray experiments), in
    search.json: what a resumed race and `--fresh` read."""
    seeds = sorted(set(state.get("seeds", [])) | ({seed} if seed is not None else set()))
    state.update(seeds=seeds, done=done)
    save_state(paths, {**saved_state(paths), "race": state})


def _rounds(rounds: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(rounds, ignore_index=True) if rounds else pd.DataFrame()


def _print_round(table: pd.DataFrame) -> None:
    best = table.iloc[0]
    parts = [f"best #{best['key']} {best['mean']:.2f}% over {best['seeds']} seeds"]
    for _, row in table.iloc[1:].iterrows():
        parts.append(f"#{row['key']} {row['diff']:+.2f} ({row['low']:+.2f} to "
                     f"{row['high']:+.2f}) {row['status']}"
                     + (": leaves" if row["status"] == "behind" else ""))
    print(f"race round {int(best['round'])}: " + "; ".join(parts), flush=True)


def save_race(settings: Settings, journal: Journal, sender: Sender,
              rounds: pd.DataFrame) -> list:
    """race.csv (one row per finalist per round: its seeds, mean, difference from the best with
    its interval, the test, and `status`: best | tied | behind, which left the race) and
    race_trials.csv into the search's directory and onto its parent run."""
    files = [settings.paths.race_rounds, settings.paths.race_trials]
    rounds.to_csv(files[0], index=False)
    _records(journal, sender).drop(columns="params_flat", errors="ignore").to_csv(
        files[1], index=False)
    finish_search_run(journal, files)
    return files
