"""`search.run(space, config)`: one search, end to end, resumable.

    space --SpaceSearcher (Optuna)--> params --spaces--> TrialPlan --Ray Tune--> trial_function
      --tune.report(metrics, checkpoint)--> ASHA decides, Optuna learns, MlflowTracker records
      --end--> ranked table (CSV, Markdown) in the results directory and on the parent run

Where things are written: `layout.py`. Re-running a search with the same name and results
directory resumes it (Tuner.restore): finished trials are not re-run, unfinished ones continue
from their checkpoints, the study continues, and the MLflow runs are re-attached.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import ray

from spaces import SearchSpace, get_scale, load_space

from .config import SearchConfig, SearchConfigError, Settings, scheduler_rungs
from .layout import SearchPaths, check_writable
from .race import race, save_race
from .ranking import fail_threshold, label_failures, rank, read, save
from .result import SearchResult
from .rounds import final_retrain, outcomes, run_again
from .searcher import SpaceSearcher
from .stores import (
    absolute,
    absolute_dataset,
    check_same_search,
    check_stores,
    record_search,
    save_state,
    saved_state,
    start_over,
    storage_uri,
)
from .study import SCREENED
from .tracking.journal import Journal
from .tracking.records import (
    check_tracking_uri,
    finish_search_run,
    mark_failures,
    trial_records,
)
from .tracking.sender import Sender
from .trainable import StagedData, data_regime
from .trial import UNFINISHED, RunOptions, TrialContext, load_trial_data
from .trial.simulated import DATA_LABEL, SIMULATED_DATA, simulated_epochs
from .tune_fixes import CtrlC
from .tuner import (
    check_local_device,
    check_ray_devices,
    connect_ray,
    default_concurrency,
    make_tuner,
)

__all__ = ["SearchResult", "prepare", "run", "trial_context"]

INTERRUPTED = "the search was interrupted (Ctrl-C)"

SIMULATED_LEGEND = ("simulated search: every error here is the learning-curve model's "
                    "(search/trial/curve_model.py), not a measurement; nothing was trained.")
SEND_AT_END_SECONDS = 10.0
"""How long the end of a search waits for MLflow before it leaves the rest to `sync`."""


def prepare(space: str | SearchSpace,
            config: SearchConfig) -> tuple[SearchSpace, Settings, StagedData | None]:
    """Every check that needs no Ray and writes nothing: space, data, tracking store.

    Returns the loaded space, the resolved settings and the data, loaded once here: the trials
    get it from Ray's object store, so the data path is read on this machine only (and may be
    gone once this returns); None for a simulated search, which loads nothing. Raises
    SpaceError, DataError, SearchConfigError or TrackingError with a one-line message.
    """
    scale = get_scale(config.scale)
    space = load_space(space, scale)
    space.check(scale)
    overrides = {"epochs": config.epochs} if config.epochs else {}
    plan = space.plan({**(space.anchors[0] if space.anchors else {}), **overrides}, scale)
    dataset = absolute_dataset(config.dataset)
    data_dir, cache_dir = absolute(config.data_dir), absolute(config.cache_dir)
    if cache_dir:
        check_writable(cache_dir, "--cache-dir")
    if config.simulate:  # nothing to load: CIFAR-10's shape, which the model was fitted on
        data, dataset, epochs = None, DATA_LABEL, simulated_epochs(plan.recipe)
        shape = {k: SIMULATED_DATA[k] for k in ("num_classes", "in_channels")}
        if config.progress:
            print(f"simulated search: each epoch sleeps {config.simulated_sleep():g} s and "
                  "reports the learning-curve model's errors; nothing trains", flush=True)
    else:
        data = load_trial_data(plan.recipe, dataset, data_dir, cache_dir)  # decode once, here
        epochs = plan.recipe.budget_epochs(len(data.train_y))
        shape = {"num_classes": data.num_classes, "in_channels": data.in_channels}
    paths = SearchPaths(Path(config.results_dir).expanduser().resolve(),
                        config.name or f"{space.name}-{scale.name}")
    check_writable(paths.root, "--results-dir")
    check_stores(config)
    uri = config.tracking_uri or paths.mlflow_uri
    warning = check_tracking_uri(uri)
    if warning and config.progress:
        print(f"resnet-search: warning: {warning}", file=sys.stderr, flush=True)
    if plan.recipe.val_size < 1:
        raise SearchConfigError(f"val_size={plan.recipe.val_size} is invalid for a search; "
                                "allowed: an integer >= 1 (the objective is the validation "
                                "error; --final-retrain trains on every image afterwards)")
    if config.sampler == "grid" and not space.anchors:
        raise SearchConfigError(f"sampler='grid' needs anchors; space {space.name!r} has none")
    configurations = len(space.anchors) if config.sampler == "grid" else config.trials
    if config.race > configurations:
        where = (f"the grid of space {space.name!r} has" if config.sampler == "grid"
                 else "--trials asks for")
        raise SearchConfigError(f"race={config.race} is invalid: {where} {configurations} "
                                f"configuration(s); allowed: 2 to {configurations} finalists")
    settings = Settings(
        paths=paths, tracking_uri=uri,
        optuna_storage=config.optuna_storage or paths.optuna_uri,
        storage=storage_uri(config.storage) if config.storage else str(paths.ray_storage),
        dataset=dataset, data_dir=data_dir, cache_dir=cache_dir, overrides=overrides,
        configurations=configurations, epochs=epochs, **shape,
        identity={"simulate": config.simulate, "space_source": space.source,
                  "scale": scale.name, "dataset": dataset,
                  "sampler": config.sampler, "seeds": config.seeds, "tracking_uri": uri,
                  "recipe": plan.recipe.to_dict(), "trials": configurations})
    if not config.fresh:
        check_same_search(paths, settings.identity)
    staged = None if data is None else StagedData(data_regime(plan.recipe, dataset), data)
    return space, settings, staged


def run(space: str | SearchSpace, config: SearchConfig | None = None) -> SearchResult:
    """Run (or resume) a search over `space`; see the module docstring."""
    config = config or SearchConfig()
    space, settings, data = prepare(space, config)  # every check, before anything is written
    paths = settings.paths
    state = saved_state(paths)
    if not config.fresh and state.get("finished") and (
            not config.race or state.get("race", {}).get("done")):
        return _finished_before(settings)
    check_local_device(config)  # before Ray starts
    started_ray = connect_ray(config)
    sender, ctrl_c = None, CtrlC().install()
    try:
        check_ray_devices(config)  # before anything is written
        if config.progress:
            print(f"search {settings.name}: space {space.name} ({space.source}), "
                  f"{config.scale} scale, {settings.configurations} configurations x "
                  f"{config.seeds} seeds, sampler {config.sampler}, scheduler "
                  f"{config.scheduler}", flush=True)
        settings = replace(settings, generation=start_over(settings) if config.fresh else
                           saved_state(paths).get("generation", 0))
        paths.work.mkdir(parents=True, exist_ok=True)
        journal = Journal(paths.search)
        record_search(space, config, settings, journal)
        sender = Sender(journal, settings.tracking_uri, config.progress).start()
        searcher = SpaceSearcher(
            space, config.scale, settings.optuna_storage, settings.name,
            sampler=config.sampler, seeds=config.seeds, seed=config.seed,
            configurations=settings.configurations, overrides=settings.overrides,
            context=trial_context(config, settings, space),
            data_shape={"num_classes": settings.num_classes,
                        "in_channels": settings.in_channels}, screen=config.screen)
        total = settings.configurations * config.seeds
        tuner = make_tuner(config, settings, searcher, journal, space, total=total,
                           concurrency=default_concurrency(config, total), data=data)
        tuner.fit()
        result = _finish(space, config, settings, journal, sender)
        if not ctrl_c.received and run_again(space, config, settings, journal, searcher,
                                             result.trials):
            result = _finish(space, config, settings, journal, sender)
            searcher.tell_ended(outcomes(result.trials))
        if config.screen:
            _record_screened(searcher, settings, journal)
        if config.give_up_errored:
            _give_up_errored(searcher, result, config.progress)
        unfinished = _interrupted(ctrl_c, _unfinished(result, searcher, config.give_up_errored))
        if config.race and not unfinished and not result.ranking.empty:
            rounds, left = race(space, config, settings, journal, sender, searcher,
                                result.ranking, result.trials, lambda: ctrl_c.received)
            unfinished += left
            if not rounds.empty:
                result = replace(result, race=rounds,
                                 files=result.files + save_race(settings, journal, sender,
                                                                rounds))
        unfinished = _interrupted(ctrl_c, unfinished)
        if config.final_retrain and not unfinished and not result.ranking.empty:
            result = final_retrain(space, config, settings, journal, sender, searcher, result)
            unfinished += result.unfinished
        result = _report(settings, journal, result)
        save_state(paths, {**saved_state(paths), "finished": not unfinished})
        sender.close(timeout=SEND_AT_END_SECONDS)
        return replace(result, parent_run_id=sender.run_id() or "", unsent=sender.pending,
                       unfinished=unfinished)
    finally:
        if sender is not None:
            sender.close(timeout=0)  # an interrupted search: what is sent is sent, the rest waits
        if started_ray:
            ray.shutdown()
        ctrl_c.restore()


def trial_context(config: SearchConfig, settings: Settings, space: SearchSpace) -> TrialContext:
    """What every trial of the search shares: its space, data, trials directory and how it
    runs (validating at least where the scheduler reads the objective)."""
    options = RunOptions(device=config.device, bf16=config.bf16,
                         threads=max(1, int(config.cpus_per_trial)),
                         stop_at_chance=config.stop_at_chance,
                         validate_every=config.validate_every,
                         validate_at=frozenset(scheduler_rungs(config, settings.epochs)))
    return TrialContext(work_root=str(settings.paths.work), space_source=space.source,
                        scale=config.scale, dataset=settings.dataset,
                        data_dir=settings.data_dir, cache_dir=settings.cache_dir,
                        options=options, simulate=config.simulated_sleep())


def _give_up_errored(searcher: SpaceSearcher, result: SearchResult, progress: bool) -> None:
    """Tell Optuna the configurations whose trials ended in error, from their recorded
    outcomes (`SearchConfig.give_up_errored`)."""
    if result.trials.empty:
        return
    told = searcher.tell_ended(outcomes(result.trials), errored=True)
    if told and progress:
        print(f"gave up on {len(told)} configuration(s) whose trials ended in error (Optuna "
              f"trial(s) {', '.join(map(str, told))}): told from the seeds that finished, FAIL "
              "where none did", flush=True)


def _unfinished(result: SearchResult, searcher: SpaceSearcher,
                errors_final: bool = False) -> list[str]:
    """What the same command, run again, would still do (Tuner.restore): trials that ended in
    error (unless `errors_final`: --give-up-errored) or that an interrupt (Ctrl-C) left
    running, and configurations not asked yet."""
    outcomes = result.trials.get("outcome", pd.Series(dtype=str)).value_counts()
    resumable = {"error": "ended in error"} if not errors_final else {}
    resumable["running"] = "did not end (interrupted)"
    resumable[UNFINISHED] = "ended short of their budget without a scheduler's decision"
    left = [f"{outcomes[o]} trial(s) {said}" for o, said in resumable.items()
            if outcomes.get(o, 0)]
    if not searcher.nothing_left_to_ask():
        left.append("configurations are left to ask")
    return left


def _interrupted(ctrl_c: CtrlC, unfinished: list[str]) -> list[str]:
    """`unfinished`, and the interrupt once Ctrl-C came: no stage starts after it."""
    if ctrl_c.received and INTERRUPTED not in unfinished:
        return [*unfinished, INTERRUPTED]
    return unfinished


def _report(settings: Settings, journal: Journal, result: SearchResult) -> SearchResult:
    """The report that ends the search (search.report), on the parent run as artifacts and its
    summary as the run's description. A report that cannot be written never fails a search:
    it says why, and `resnet-search report NAME` writes it later."""
    from .report import report

    if result.ranking.empty:
        return result
    try:
        written = report(settings.name, settings.paths.root, settings.optuna_storage)
    except Exception as error:  # the search's own results are safe: say so, go on
        print(f"resnet-search: warning: the report was not written ({type(error).__name__}: "
              f"{error}); run `resnet-search report {settings.name}`", file=sys.stderr)
        return result
    files = [path for path in written.paths.values() if Path(path).is_file()]
    finish_search_run(journal, files, tags={"mlflow.note.content": written.summary})
    return replace(result, report=written)


def _finished_before(settings: Settings) -> SearchResult:
    """A finished search, shown again from its files (no Ray): re-running a name never
    silently replays it."""
    paths = settings.paths
    ranking, trials = read(paths.search)
    sender = Sender(Journal(paths.search), settings.tracking_uri, progress=False)
    return SearchResult(settings.name, trials, ranking, {}, paths.search,
                        settings.tracking_uri, sender.run_id() or "", finished_before=True,
                        unsent=sender.pending)


def _record_screened(searcher: SpaceSearcher, settings: Settings, journal: Journal) -> None:
    """The configurations `screen` skipped, from the study (the truth after any restore):
    screened.csv in the search's directory and on the parent run."""
    rows = [{"optuna_trial": t.number, "why": t.user_attrs[SCREENED],
             **{f"param.{k}": v for k, v in t.user_attrs.get("params", {}).items()}}
            for t in searcher.study.get_trials(deepcopy=False) if SCREENED in t.user_attrs]
    path = settings.paths.search / "screened.csv"
    pd.DataFrame(rows, columns=["optuna_trial", "why"] if not rows else None).to_csv(
        path, index=False)
    finish_search_run(journal, [path], metrics={"screened": float(len(rows))})


def _finish(space: SearchSpace, config: SearchConfig, settings: Settings, journal: Journal,
            sender: Sender) -> SearchResult:
    """Rank the search from its journal, the record of every trial (also those that finished
    while a driver was down and so are missing from Ray's result grid)."""
    sender.drain(timeout=SEND_AT_END_SECONDS)  # the run ids of the ranking's rows, if it can
    records = trial_records(journal, sender.ids)
    if not records:
        finish_search_run(journal)
        return SearchResult(settings.name, pd.DataFrame(), pd.DataFrame(), {},
                            settings.paths.search, settings.tracking_uri)
    trials = pd.DataFrame(records).sort_values(["optuna_trial", "seed"]).reset_index(drop=True)
    ranking = rank(trials, settings.epochs)
    threshold, legend = fail_threshold(ranking, trials, config.scale, settings.num_classes)
    if config.simulate:
        legend = f"{SIMULATED_LEGEND} {legend[0].upper()}{legend[1:]}"
    ranking = label_failures(ranking, threshold)
    mark_failures(journal, trials, ranking)
    files = save(ranking, trials.drop(columns="params_flat"), settings.paths.search,
                 f"{settings.name} ({space.name}, {config.scale} scale, {settings.dataset})",
                 legend)
    top = ranking.iloc[0]
    best_row = trials[trials["optuna_trial"] == top["optuna_trial"]].iloc[0]
    best = {k[len("param."):]: v for k, v in best_row.items()
            if k.startswith("param.") and not pd.isna(v)}
    finish_search_run(journal, files, {"best_val_error": float(top["val_error_mean"]),
                                       "trials": float(len(trials))},
                      {"best_configuration": top["configuration"]})
    return SearchResult(settings.name, trials, ranking, best, settings.paths.search,
                        settings.tracking_uri, files=files, legend=legend)


