"""The rounds after a search's own trials: seed runs Tune cut short run again, and the final
retraining of the top configurations on every training image."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from spaces import SearchSpace

from .config import SearchConfig, Settings
from .ranking import interval95, save
from .result import SearchResult
from .searcher import ENDED, SpaceSearcher
from .stores import AGAIN, FINAL, STAGE_SUFFIX, remove_experiment, save_state, saved_state
from .tracking.journal import Journal
from .tracking.records import finish_search_run, trial_records
from .tracking.sender import Sender
from .trial import UNFINISHED, TrialConfig
from .tuner import default_concurrency, make_tuner


def outcomes(trials: pd.DataFrame) -> dict[int, dict[int, str]]:
    """Optuna trial number -> seed -> outcome, as the records say."""
    return {int(number): dict(zip(runs["seed"].astype(int), runs["outcome"]))
            for number, runs in trials.groupby("optuna_trial")}


def run_again(space: SearchSpace, config: SearchConfig, settings: Settings, journal: Journal,
               searcher: SpaceSearcher, records: pd.DataFrame, stage: str = "search") -> bool:
    """Seed runs of `stage` that Ray Tune ended short of their budget without a scheduler's
    decision (`unfinished`) run again, each from its own directory's checkpoint, in a Ray
    experiment of their own (FIFO, to their budget). The round's run keys are kept in
    search.json: a round an interrupt cut off goes on when the search runs again. A search
    interrupted now runs nothing more. `records`: the stage's trial records. Returns whether a
    round ran."""
    if records.empty:
        return False
    state, round_key = saved_state(settings.paths), f"again_{stage}"
    pending = set(state.get(round_key, []))
    outcome = dict(zip(records["run_key"], records["outcome"]))
    if any(o == "running" and key not in pending for key, o in outcome.items()):
        return False
    keys = sorted(key for key, o in outcome.items()
                  if o == UNFINISHED or key in pending and o not in ENDED)
    if not keys:
        return False
    rows = records.set_index("run_key").loc[keys]
    runs = [final_runs(searcher, int(n))[int(seed)] if stage == "final"
            else searcher.trial_config(int(n), int(seed), stage)
            for n, seed in zip(rows["optuna_trial"], rows["seed"])]
    if config.progress:
        print(f"{len(runs)} trial(s) ended short of their budget without a scheduler's "
              "decision: running them again from their checkpoints", flush=True)
    save_state(settings.paths, {**state, round_key: keys})
    return fit_runs(space, config, settings, journal, runs, STAGE_SUFFIX[stage] + AGAIN)


def fit_runs(space: SearchSpace, config: SearchConfig, settings: Settings, journal: Journal,
             runs: list[TrialConfig], suffix: str, records: pd.DataFrame | None = None) -> bool:
    """Train each of `runs` once, to its budget, in a Ray experiment of its own (the search's
    name + `suffix`, FIFO). Runs whose `records` say they ended are not run again; the others
    continue from their own trial directories' checkpoints. The experiment starts anew every
    time: what a cut-off one trained is in those directories, and Tune could not restore it
    (its fixed-runs searcher is saved only now and then, so a cut-off one may have nothing to
    restore). Returns whether anything ran."""
    ended = set() if records is None or records.empty else set(
        records.loc[records["outcome"].isin(ENDED), "run_key"])
    pending = [run for run in runs if run.run_key not in ended]
    if not pending:
        return False
    remove_experiment(settings.storage, settings.name + suffix)
    make_tuner(config, settings, None, journal, space, total=len(pending), suffix=suffix,
               concurrency=default_concurrency(config, len(pending)), retrain=pending).fit()
    return True


def final_retrain(space: SearchSpace, config: SearchConfig, settings: Settings,
                   journal: Journal, sender: Sender, searcher: SpaceSearcher,
                   result: SearchResult) -> SearchResult:
    """Retrain the top configurations on every training image (no validation split, as the
    paper's test numbers were measured), each seed once, to the full budget; their test error
    becomes the ranking's `final_test_error` columns, the ones to compare with the paper."""
    top = result.ranking[result.ranking["full_budget"]].head(config.final_retrain)
    runs = [run for number in top["optuna_trial"] for run in final_runs(searcher, int(number))]
    if config.progress:
        print(f"final retraining: {len(top)} configurations x {config.seeds} seeds on every "
              "training image", flush=True)
    before = pd.DataFrame(trial_records(journal, sender.ids, stage="final"))
    fit_runs(space, config, settings, journal, runs, FINAL, before)
    final = pd.DataFrame(trial_records(journal, sender.ids, stage="final"))
    if run_again(space, config, settings, journal, searcher, final, "final"):
        final = pd.DataFrame(trial_records(journal, sender.ids, stage="final"))
    if final.empty:
        return result
    short = int((final["outcome"] == UNFINISHED).sum())
    if short:  # cut short again: the same command runs them once more
        result = replace(result, unfinished=[f"{short} final retraining run(s) ended short of "
                                             "their budget"])
    stats = final[final["outcome"] == "ok"].groupby("configuration_key")["test_error"].agg(
        final_test_error_mean="mean", final_test_error_ci95=interval95,
        final_seeds="count")
    ranking = result.ranking.merge(stats, how="left", left_on="configuration_key",
                                   right_index=True)
    files = save(ranking, result.trials.drop(columns="params_flat", errors="ignore"),
                 settings.paths.search, f"{settings.name} ({space.name}, {config.scale} "
                 f"scale, {settings.dataset}), final retraining of the top "
                 f"{len(top)}", result.legend)
    finish_search_run(journal, files)
    return replace(result, ranking=ranking, files=files)


def final_runs(searcher: SpaceSearcher, number: int) -> list[TrialConfig]:
    """The final retraining of configuration `number`: each seed once, to the full budget, on
    every training image (no validation split), as the paper's test numbers were measured:
    the search's training and validation images together (its 45k + 5k)."""
    searched = searcher.trial_config(number, 0).plan.recipe
    every_image = {"val_size": 0, "train_size": None if searched.train_size is None
                   else searched.train_size + searched.val_size}
    return [searcher.trial_config(number, seed, "final", every_image)
            for seed in range(searcher.seeds)]
