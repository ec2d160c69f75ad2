"""The report's sections, a builder each: the ranking, the advantage with depth, why (the
direct path), what the search found, whether the procedure was sound, and the compute
(against the paper: `paper_section`).

A builder reads the search's record, adds what it measures (tables, rank agreements, plots) to
the `Parts` it is handed, and returns its `Section`, or None where the search has nothing to
show there. `report()` calls them in a fixed order: a later section reads a table an earlier
one added (the screen reads the propagation table), and `Report` lists its tables and plots in
the order they were made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from search.config import SearchConfig, grace_period
from search.ranking import fail_threshold

from .display import formatted, importance_display, propagation_display, ranking_display
from .importance import load_study_frame, parameter_importance
from .load import SearchRecord
from .paper import TauResult
from .plots import (
    CURVES_NAMED,
    axis_plot,
    curve_plot,
    error_plot,
    importance_plot,
    propagation_plot,
)
from .render import Section
from .replay import (
    ReplayResult,
    curves_from_record,
    grace_table,
    measured_epochs,
    replay_asha,
    replayable,
    rungs,
    screen,
)
from .separation import best_of
from .trend import depth_trend, loss_plot, trend_lines, trend_plot
from .why import propagation_table


@dataclass
class Parts:
    """What the section builders share: the search's record and the folder for their plots;
    and what they add for `Report`: its tables, rank agreements and plots."""

    record: SearchRecord
    figures: Path
    tables: dict[str, pd.DataFrame]
    taus: dict[str, TauResult] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    def plot(self, section: Section, key: str, path: Path | None, caption: str) -> None:
        """A plot into `section` and `Report.paths`; nothing where there was nothing to draw
        (the plot function returned None)."""
        if path is not None:
            self.paths[key] = path
            section.image(path, caption)


def fail_rule(record: SearchRecord) -> tuple[float | None, str]:
    """The test error above which a configuration is labelled fail, and the rule in words."""
    if record.trials.empty or record.ranking.empty:
        return None, "no fail label"
    try:
        return fail_threshold(record.ranking, record.trials, record.scale or "full",
                              record.num_classes)
    except (KeyError, ValueError):
        return None, "fail label as in ranking.csv"


def depth_section(parts: Parts) -> tuple[Section | None, list[str]]:
    """The pre-activation advantage per depth (paper-depth, or any search with the cells),
    and the verdict's sentences on it."""
    trend = depth_trend(parts.record)
    parts.tables["depth_trend"] = trend
    lines = trend_lines(trend)
    if trend.empty:
        return None, lines
    section = Section("The advantage with depth")
    section.table(formatted(trend, {"gap": 2, "low": 2, "high": 2}), "Original unit minus "
                  "pre-activation, identity shortcuts, per unit type and depth: points "
                  "of validation error, the 95% Welch interval over seeds (low, high); "
                  "positive: pre-activation is better.")
    parts.plot(section, "depth_trend", trend_plot(trend, parts.figures / "depth_trend.png"),
               "The gap per depth with its 95% interval.")
    parts.plot(section, "training_loss",
               loss_plot(parts.record, parts.figures / "training_loss.png"),
               "Training loss, the original unit against full "
               "pre-activation at the deepest depth measured, each seed a line: the paper's "
               "Fig. 6 has the original unit's loss falling slowly at first.")
    return section, lines


def ranking_section(parts: Parts, marks: dict[str, str], threshold: float | None,
                    rule: str) -> Section:
    """The error plot (the paper's places beside it), the ranking table and the paper's
    failure families (`parts.tables["failures"]`)."""
    record = parts.record
    section = Section("Ranking")
    parts.plot(section, "errors",
               error_plot(record.ranking, parts.figures / "errors.png", marks, threshold),
               "Error by configuration, best first: mean "
               "validation error with its 95% interval over seeds (dots), mean test "
               "error (crosses). " + ("Right: the paper's place for the rows it "
                                      "reports (#1 best; fail tied last). "
                                      if marks else "") +
               "Configurations labelled fail in red.")
    section.table(ranking_display(record.ranking),
                  f"Errors in %, ± the half-width of the 95% Student-t interval over "
                  f"seeds. {rule[0].upper() + rule[1:]}.")
    failure_table = parts.tables["failures"]
    if not failure_table.empty:
        section.table(failure_table, "The paper's failure families (Table 1) and how many "
                      "of their configurations are labelled fail here.")
    return section


def propagation_section(parts: Parts) -> Section | None:
    """The first unit's direct-path share, measured beside Eq. 5 and 8's prediction."""
    propagation = propagation_table(parts.record)
    parts.tables["propagation"] = propagation
    if propagation.empty:
        return None
    section = Section("Why: the direct path (Eq. 5 and 8)")
    # Kept in `Report.paths` even as None (nothing to draw), as it always was.
    parts.paths["propagation"] = propagation_plot(propagation,
                                                  parts.figures / "propagation.png")
    relative = bool((propagation["shortcut"] != "identity").any())
    section.image(parts.paths["propagation"], "Direct-path share of the first unit: "
                  "||dE/dx_0|| through the shortcuts alone over ||dE/dx_L||. Predicted: "
                  "Eq. 5 (1 for identity) and Eq. 8 (the product of lambda, of the "
                  "measured 1 - g for gates, of 1 - p for the paper's dropout); none for "
                  "a 1x1 conv shortcut. " + (
                      "Right: divided by the identity-shortcut configuration with the "
                      "same placement, which cancels what the prediction leaves out (the "
                      "ReLU after the addition, the subsampling where a stage begins)."
                      if relative else "The prediction leaves out the operation after "
                      "the addition (f) and the subsampling where a stage begins."))
    section.table(propagation_display(propagation), "The first unit's direct-path share, "
                  "mean over seeds, at initialisation and after the last epoch; f is the "
                  "operation after the addition (Eq. 5 and 8 assume the identity). "
                  "Where the last stage has two units or more, the share at its second "
                  "unit, which no change of shape separates from x_L.")
    return section


# The replay of the search's scheduler, read by two sections.

def replayed_scheduler(record: SearchRecord) -> tuple[int, int, str]:
    """The ASHA the replay repeats on the full curves: the search's own (search.json), or the
    command line's default one for a search run without ASHA (or recorded before the
    scheduler was); with the words that say which."""
    saved = record.state.get("scheduler") or {}
    if saved.get("name") == "asha":
        return int(saved["grace_period"]), int(saved["reduction_factor"]), "the search's ASHA"
    return (grace_period(None, record.budget), SearchConfig.reduction_factor,
            "the default ASHA")


@dataclass(frozen=True)
class Replayed:
    """The search's scheduler (`replayed_scheduler`) replayed on its full learning curves."""

    curves: dict[str, list[float]]
    """`curves_from_record`: the configurations that trained the whole budget."""
    grace: int
    factor: int
    which: str
    unvalidated: bool
    """The search did not validate at every rung of that scheduler: no replay."""
    result: ReplayResult | None
    """None: no replay (see `soundness_section` for the reasons)."""


def replay_search(record: SearchRecord) -> Replayed:
    """The replay the curve plot and the soundness section both read: made once, where the
    search validated every rung and at least two configurations trained the whole budget."""
    curves = curves_from_record(record)
    grace, factor, which = replayed_scheduler(record)
    unvalidated = not replayable(curves, grace, factor, record.budget)
    result = None
    if len(curves) >= 2 and record.budget > 1 and not unvalidated:
        result = replay_asha(curves, grace, factor, record.budget)
    return Replayed(curves, grace, factor, which, unvalidated, result)


def found_section(parts: Parts, replay: ReplayResult | None,
                  optuna_storage: str | None) -> Section | None:
    """The learning curves (where the replayed ASHA would stop each), the objective per
    parameter value, and parameter importance."""
    record = parts.record
    section = Section("What the search found")
    curves = _median_curves(record)
    if curves:
        top = (best_of(record) or min(record.configurations, key=lambda c: c.rank)).label
        parts.plot(section, "curves",
                   curve_plot(curves, parts.figures / "curves.png", replay, highlight=top),
                   "Learning curves of every configuration: median "
                   "validation error over seeds per epoch; the winner drawn thick in black"
                   + (f"; past the best {CURVES_NAMED}, grey" if len(curves) > CURVES_NAMED
                      else "") + ".")
    frame, source = load_study_frame(record, optuna_storage)
    importance = parameter_importance(frame)
    parts.tables["importance"] = importance
    parts.plot(section, "axes",
               axis_plot(frame, parts.figures / "axes.png") if not frame.empty else None,
               "The objective (mean validation error over seeds; the "
               "sampler's penalty for a diverged configuration) per value of each "
               "parameter: every configuration a dot, the median a bar.")
    importance_path = importance_plot(importance, parts.figures / "importance.png")
    parts.plot(section, "importance", importance_path, "Parameter importance: one-way ANOVA "
               "eta-squared, the share of the objective's variance between a parameter's "
               "values, top-level axes over all configurations, conditional parameters within "
               "their branch.")
    if importance_path is not None:
        section.table(importance_display(importance), f"Importance from {source}. Method per "
                      "row; eta² near 1 with few configurations per value can be chance.")
    return section if section.blocks else None


def _median_curves(record: SearchRecord) -> dict[str, list[float]]:
    """Per configuration, the median over its seeds of the validation error per epoch."""
    out = {}
    for config in record.configurations:
        curves = [r.curve for r in config.runs if r.curve and r.outcome != "error"]
        if not curves:
            continue
        length = max(len(c) for c in curves)
        padded = [c + [math.nan] * (length - len(c)) for c in curves]
        frame = pd.DataFrame(padded)
        out[config.label] = list(frame.median(axis=0, skipna=True))
    return out


def soundness_section(parts: Parts, replayed: Replayed) -> Section:
    """Early stopping replayed on the full curves (or why not), and the zero-cost screen
    (reads `parts.tables["propagation"]`)."""
    record = parts.record
    section = Section("Was the search procedure sound?")
    if replayed.result is not None:
        _replay_blocks(parts, section, replayed, replayed.result)
    elif record.budget <= 1:
        section.text("A one-epoch budget: no early stopping to replay.")
    elif replayed.unvalidated and replayed.curves:
        section.text(
            f"No replay of {replayed.which}: the search validated its trials at epochs "
            f"{', '.join(map(str, sorted(measured_epochs(replayed.curves))))} only, not at "
            f"its rungs "
            f"({', '.join(map(str, rungs(replayed.grace, replayed.factor, record.budget)))}); "
            "run a search with `--validate-every 1` for full learning curves.")
    else:
        section.text("Fewer than two configurations trained the whole budget: no replay.")
    rules, features = screen(parts.tables["propagation"])
    parts.tables["screen"], parts.tables["screen_features"] = rules, features
    if not rules.empty:
        section.table(formatted(rules, {"threshold": 3, "precision": 2, "recall": 2}),
                      "A zero-cost screen: rules on the propagation at initialisation alone "
                      "that predict the fail label, precision and recall against the measured "
                      "labels. The fitted rules choose their threshold on these same labels, "
                      "so they flatter themselves.")
    return section


def _replay_blocks(parts: Parts, section: Section, replayed: Replayed,
                   replay: ReplayResult) -> None:
    """What the replayed scheduler would stop, and the replay over grace periods."""
    factor, budget = replayed.factor, parts.record.budget
    grace_rows = grace_table(replayed.curves, factor, budget)
    parts.tables["grace"] = grace_rows
    parts.tables["replay"] = replay.table()
    which = replayed.which
    kept = "keeps" if not replay.winner_stopped_async else "stops"
    section.text(
        f"{which[0].upper()}{which[1:]} replayed on the {len(replayed.curves)} full learning "
        f"curves (grace period {replayed.grace}, reduction factor {factor}, rungs at epochs "
        f"{', '.join(map(str, replay.rungs)) or 'none'}): it would stop "
        f"{len(replay.stopped_async)} configurations and {kept} the eventual "
        f"winner, {replay.winner}; synchronous successive halving would stop "
        f"{len(replay.stopped_sync)} and "
        f"{'stop' if replay.winner_stopped_sync else 'keep'} it.")
    stopped = [f"{k} (epoch {v})" for k, v in replay.asynchronous.items() if v is not None]
    if stopped:
        section.items(["ASHA would stop: " + "; ".join(stopped)])
    section.table(formatted(grace_rows, {"ASHA epochs %": 0, "sync SH epochs %": 0}),
                  f"Replay over grace periods (reduction factor {factor}): configurations "
                  "stopped, whether the winner survives, and the share of the full budget "
                  "trained. Configurations start in the search's order, all at once. "
                  "Only grace periods whose rungs the search validated (every one with "
                  "`--validate-every 1`).")


def compute_table(record: SearchRecord) -> pd.DataFrame:
    """What the search's trials cost: seed runs, epochs trained, trial time."""
    runs = [run for config in record.configurations for run in config.runs]
    seconds = sum(run.seconds for run in runs)
    epochs = sum(len(run.curve) for run in runs)
    return pd.DataFrame([{
        "seed runs": len(runs), "epochs trained": epochs,
        "trial time s": round(seconds), "trial time h": round(seconds / 3600, 2),
        "s per epoch": round(seconds / epochs, 1) if epochs else math.nan}])


def compute_section(parts: Parts) -> Section:
    """What the trials cost (`compute_table`)."""
    parts.tables["compute"] = compute = compute_table(parts.record)
    return Section("Compute").table(
        formatted(compute, {"trial time h": 2, "s per epoch": 1}),
        "Trial time: the seconds each seed run spent training and evaluating, summed over "
        "the epochs it recorded (an epoch trained again after a resume counts once; actor "
        "start-up, data loading and the driver are not in it). Divide by the concurrency for "
        "the wall time of the trials.")
