"""`report(name)`: read what a finished search left, write report.md, report.html and the
plots into its directory, and return the tables, the verdict and the rank agreements."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from search.config import SearchConfig, grace_period
from search.ranking import fail_threshold

from .importance import load_study_frame, parameter_importance
from .load import SearchRecord, load_search
from .paper import TauResult, column_taus, table1, table2, table3, table3_tau, table_tau
from .plots import axis_plot, curve_plot, error_plot, importance_plot, propagation_plot
from .render import Document, Section, to_html, to_markdown
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
from .trend import depth_trend, loss_plot, trend_lines, trend_plot
from .verdict import (
    PLACEMENT_NAMES,
    failures,
    failures_line,
    margin_lines,
    placements_line,
    shortcuts_line,
    winner_line,
)
from .why import propagation_table

PLOTS = "report_plots"
"""The folder, inside the search's directory, that holds the report's PNGs."""
MAX_PAIRS = 12
"""Discordant pairs shown; the rest stay in the returned table."""


def replayed_scheduler(record: SearchRecord) -> tuple[int, int, str]:
    """The ASHA the replay repeats on the full curves: the search's own (search.json), or the
    command line's default one for a search run without ASHA (or recorded before the
    scheduler was); with the words that say which."""
    saved = record.state.get("scheduler") or {}
    if saved.get("name") == "asha":
        return int(saved["grace_period"]), int(saved["reduction_factor"]), "the search's ASHA"
    return (grace_period(None, record.budget), SearchConfig.reduction_factor,
            "the default ASHA")


@dataclass
class Report:
    name: str
    directory: Path
    title: str
    verdict: list[str]
    """One sentence per question, with its numbers (PAPER.md section 7)."""
    tables: dict[str, pd.DataFrame]
    """ranking, table1, table2, table3, pairs, failures, propagation, importance, replay,
    grace, screen, screen_features: numbers unformatted (errors in percent where the column
    says %)."""
    tau: dict[str, TauResult] = field(default_factory=dict)
    replay: ReplayResult | None = None
    paths: dict[str, Path] = field(default_factory=dict)
    """markdown, html, and one entry per plot."""

    @property
    def summary(self) -> str:
        """A few lines: the verdict, for the parent MLflow run's description and the
        terminal."""
        return "\n".join([self.title, *(f"- {line}" for line in self.verdict)])

    @property
    def markdown(self) -> Path:
        return self.paths["markdown"]

    @property
    def html(self) -> Path:
        return self.paths["html"]


def report(name: str, results_dir: str | Path = "results",
           optuna_storage: str | None = None) -> Report:
    """The report of search `name` under `results_dir` (see the package docstring)."""
    record = load_search(name, results_dir)
    directory = record.paths.search
    figures = directory / PLOTS
    figures.mkdir(exist_ok=True)
    tables: dict[str, pd.DataFrame] = {"ranking": record.ranking}
    taus: dict[str, TauResult] = {}
    paths: dict[str, Path] = {}

    threshold, rule = _fail_rule(record)
    sections: list[Section] = []

    # Against the paper.
    marks: dict[str, str] = {}
    if record.builtin:
        section = Section("Against the paper")
        for key, title, build in (("table1", "Table 1", table1),
                                  ("table2", "Table 2", table2)):
            table = build(record)
            if int(table["comparable"].sum()) < 2:  # one row measured: nothing to compare
                continue
            tables[key] = table
            taus[title] = table_tau(title, table, record)
            if key == "table2":
                taus.update({t.table: t for t in column_taus(table, record)})
            marks.update(_paper_marks(table))
            section.table(_paper_display(table), _paper_caption(title, record))
        third = table3(record)
        if not third.empty:
            tables["table3"] = third
            taus["Table 3"] = table3_tau(third, record)
            section.table(_table3_display(third), "Table 3, original -> full pre-activation: "
                          "change in points (pre-activation minus original; negative: "
                          "pre-activation better), ours in validation error with the 95% "
                          "Welch interval over seeds. Basic units stand for ResNet-110, "
                          "bottleneck units for ResNet-164.")
        if taus:
            section.items([t.sentence() for t in taus.values()])
            # Table 2's per-column pairs are among its own: listed once.
            whole = [t for t in taus.values() if not t.pairs.empty and "," not in t.table]
            pairs = (pd.concat([t.pairs.assign(table=t.table) for t in whole],
                               ignore_index=True) if whole else pd.DataFrame())
            tables["pairs"] = pairs
            if not pairs.empty:
                discordant = pairs[pairs["agreement"] == "discordant"]
                # Those our intervals separate first: they are the real disagreements.
                discordant = discordant.sort_values("intervals overlap", key=lambda s:
                                                    s.map({"no": 0, "no interval": 1,
                                                           "yes": 2}), kind="stable")
                more = len(discordant) - MAX_PAIRS
                section.table(discordant[["table", "row a", "row b", "intervals overlap"]]
                              .head(MAX_PAIRS),
                              "Discordant pairs: the paper puts row a first, we put row b "
                              "first. Overlapping 95% intervals (validation error over seeds) "
                              "mean the seeds cannot tell the two apart."
                              + (f" {more} more in report.tables['pairs']." if more > 0
                                 else ""))
            section.text("Our order is the ranking's (mean validation error at the full "
                         "budget, diverged configurations last); the paper's is its CIFAR "
                         "test error with its \"fail\" rows tied last. Kendall tau-b is "
                         "scipy.stats.kendalltau(variant=\"b\") over the rows measured.")
        if section.blocks:
            sections.append(section)

    # The verdict.
    lines = [winner_line(record)]
    for line in (placements_line(record), shortcuts_line(record)):
        if line:
            lines.append(line)
    lines += margin_lines(record)
    failure_line = failures_line(
        record, rule if threshold is None else f"fail: test error above {100 * threshold:.1f}%")
    if failure_line:
        lines.append(failure_line)
    if taus:
        lines.append("Rank agreement with the paper: " + "; ".join(
            f"{t.table} tau-b {t.tau:+.2f} over {t.n} rows" if t.n >= 2 else
            f"{t.table} fewer than two rows" for t in taus.values()) + ".")
    failure_table = pd.DataFrame(failures(record))
    tables["failures"] = failure_table

    # The pre-activation advantage with depth (paper-depth, or any search with the cells).
    trend = depth_trend(record)
    tables["depth_trend"] = trend
    lines += trend_lines(trend)
    if not trend.empty:
        section = Section("The advantage with depth")
        section.table(_fmt(trend, {"gap": 2, "low": 2, "high": 2}), "Original unit minus "
                      "pre-activation, identity shortcuts, per unit type and depth: points "
                      "of validation error, the 95% Welch interval over seeds (low, high); "
                      "positive: pre-activation is better.")
        for key, draw, caption in (
                ("depth_trend", trend_plot, "The gap per depth with its 95% interval."),
                ("training_loss", loss_plot, "Training loss, the original unit against full "
                 "pre-activation at the deepest depth measured, each seed a line: the paper's "
                 "Fig. 6 has the original unit's loss falling slowly at first.")):
            path = (draw(trend, figures / f"{key}.png") if key == "depth_trend"
                    else draw(record, figures / f"{key}.png"))
            if path is not None:
                paths[key] = path
                section.image(path, caption)
        sections.append(section)

    # The ranking.
    ranking_section = Section("Ranking")
    paths["errors"] = error_plot(record.ranking, figures / "errors.png", marks, threshold)
    ranking_section.image(paths["errors"], "Error by configuration, best first: mean "
                          "validation error with its 95% interval over seeds (dots), mean test "
                          "error (crosses). " + ("Right: the paper's place for the rows it "
                                                 "reports (#1 best; fail tied last). "
                                                 if marks else "") +
                          "Configurations labelled fail in red.")
    ranking_section.table(_ranking_display(record.ranking),
                          f"Errors in %, ± the half-width of the 95% Student-t interval over "
                          f"seeds. {rule[0].upper() + rule[1:]}.")
    if not failure_table.empty:
        ranking_section.table(failure_table, "The paper's failure families (Table 1) and how many "
                              "of their configurations are labelled fail here.")
    sections.insert(0, ranking_section)

    # Why: propagation.
    propagation = propagation_table(record)
    tables["propagation"] = propagation
    if not propagation.empty:
        section = Section("Why: the direct path (Eq. 5 and 8)")
        paths["propagation"] = propagation_plot(propagation,
                                                      figures / "propagation.png")
        relative = bool((propagation["shortcut"] != "identity").any())
        section.image(paths["propagation"], "Direct-path share of the first unit: "
                      "||dE/dx_0|| through the shortcuts alone over ||dE/dx_L||. Predicted: "
                      "Eq. 5 (1 for identity) and Eq. 8 (the product of lambda, of the "
                      "measured 1 - g for gates, of 1 - p for the paper's dropout); none for "
                      "a 1x1 conv shortcut. " + (
                          "Right: divided by the identity-shortcut configuration with the "
                          "same placement, which cancels what the prediction leaves out (the "
                          "ReLU after the addition, the subsampling where a stage begins)."
                          if relative else "The prediction leaves out the operation after "
                          "the addition (f) and the subsampling where a stage begins."))
        section.table(_propagation_display(propagation), "The first unit's direct-path share, "
                      "mean over seeds, at initialisation and after the last epoch; f is the "
                      "operation after the addition (Eq. 5 and 8 assume the identity). "
                      "Where the last stage has two units or more, the share at its second "
                      "unit, which no change of shape separates from x_L.")
        sections.append(section)

    # What the search found.
    curves_all = _median_curves(record)
    full_curves = curves_from_record(record)
    default_replay = None
    grace, factor, which = replayed_scheduler(record)
    unvalidated = not replayable(full_curves, grace, factor, record.budget)
    if len(full_curves) >= 2 and record.budget > 1 and not unvalidated:
        default_replay = replay_asha(full_curves, grace, factor, record.budget)
    found = Section("What the search found")
    if curves_all:
        top = min(record.configurations, key=lambda c: c.rank).label
        paths["curves"] = curve_plot(curves_all, figures / "curves.png", default_replay,
                                           highlight=top)
        found.image(paths["curves"], "Learning curves of every configuration: median "
                    "validation error over seeds per epoch; the winner drawn thick.")
    frame, source = load_study_frame(record, optuna_storage)
    importance = parameter_importance(frame)
    tables["importance"] = importance
    axis_path = axis_plot(frame, figures / "axes.png") if not frame.empty else None
    if axis_path is not None:
        paths["axes"] = axis_path
        found.image(axis_path, "The objective (mean validation error over seeds; the "
                    "sampler's penalty for a diverged configuration) per value of each "
                    "parameter: every configuration a dot, the median a bar.")
    importance_path = importance_plot(importance, figures / "importance.png")
    if importance_path is not None:
        paths["importance"] = importance_path
        found.image(importance_path, "Parameter importance: one-way ANOVA eta-squared, the "
                    "share of the objective's variance between a parameter's values, "
                    "top-level axes over all configurations, conditional parameters within "
                    "their branch.")
        found.table(_importance_display(importance), f"Importance from {source}. Method per "
                    "row; eta² near 1 with few configurations per value can be chance.")
    if found.blocks:
        sections.append(found)

    # Was the procedure sound?
    sound = Section("Was the search procedure sound?")
    if default_replay is not None:
        grace_rows = grace_table(full_curves, factor, record.budget)
        tables["grace"] = grace_rows
        tables["replay"] = default_replay.table()
        kept = "keeps" if not default_replay.winner_stopped_async else "stops"
        sound.text(
            f"{which[0].upper()}{which[1:]} replayed on the {len(full_curves)} full learning "
            f"curves (grace period {grace}, reduction factor {factor}, rungs at epochs "
            f"{', '.join(map(str, default_replay.rungs)) or 'none'}): it would stop "
            f"{len(default_replay.stopped_async)} configurations and {kept} the eventual "
            f"winner, {default_replay.winner}; synchronous successive halving would stop "
            f"{len(default_replay.stopped_sync)} and "
            f"{'stop' if default_replay.winner_stopped_sync else 'keep'} it.")
        stopped = [f"{k} (epoch {v})" for k, v in default_replay.asynchronous.items()
                   if v is not None]
        if stopped:
            sound.items(["ASHA would stop: " + "; ".join(stopped)])
        sound.table(_fmt(grace_rows, {"ASHA epochs %": 0, "sync SH epochs %": 0}),
                    f"Replay over grace periods (reduction factor {factor}): configurations "
                    "stopped, whether the winner survives, and the share of the full budget "
                    "trained. Configurations start in the search's order, all at once. "
                    "Only grace periods whose rungs the search validated (every one with "
                    "`--validate-every 1`).")
    elif record.budget <= 1:
        sound.text("A one-epoch budget: no early stopping to replay.")
    elif unvalidated and full_curves:
        sound.text(f"No replay of {which}: the search validated its trials at epochs "
                   f"{', '.join(map(str, sorted(measured_epochs(full_curves))))} only, not at "
                   f"its rungs ({', '.join(map(str, rungs(grace, factor, record.budget)))}); "
                   "run a search with `--validate-every 1` for full learning curves.")
    else:
        sound.text("Fewer than two configurations trained the whole budget: no replay.")
    rules, features = screen(propagation)
    tables["screen"], tables["screen_features"] = rules, features
    if not rules.empty:
        sound.table(_fmt(rules, {"threshold": 3, "precision": 2, "recall": 2}),
                    "A zero-cost screen: rules on the propagation at initialisation alone "
                    "that predict the fail label, precision and recall against the measured "
                    "labels. The fitted rules choose their threshold on these same labels, "
                    "so they flatter themselves.")
    sections.append(sound)

    tables["compute"] = compute = compute_table(record)
    sections.append(Section("Compute").table(
        _fmt(compute, {"trial time h": 2, "s per epoch": 1}),
        "Trial time: the seconds each seed run spent training and evaluating, summed over "
        "the epochs it recorded (an epoch trained again after a resume counts once; actor "
        "start-up, data loading and the driver are not in it). Divide by the concurrency for "
        "the wall time of the trials."))

    identity = record.identity
    title = f"Search {record.paths.name}: what it found, and why"
    subtitle = (f"space {record.space or '?'}, {record.scale or '?'} scale, dataset "
                f"{record.dataset or '?'}, sampler {identity.get('sampler', '?')}, "
                f"{len(record.configurations)} configurations x {identity.get('seeds', '?')} "
                f"seeds, budget {record.budget} epochs")
    document = Document(title, subtitle, lines, sections)
    paths["markdown"] = directory / "report.md"
    paths["html"] = directory / "report.html"
    paths["markdown"].write_text(to_markdown(document, directory))
    paths["html"].write_text(to_html(document))
    return Report(record.paths.name, directory, title, lines, tables, taus, default_replay,
                  paths)


def compute_table(record: SearchRecord) -> pd.DataFrame:
    """What the search's trials cost: seed runs, epochs trained, trial time."""
    runs = [run for config in record.configurations for run in config.runs]
    seconds = sum(run.seconds for run in runs)
    epochs = sum(len(run.curve) for run in runs)
    return pd.DataFrame([{
        "seed runs": len(runs), "epochs trained": epochs,
        "trial time s": round(seconds), "trial time h": round(seconds / 3600, 2),
        "s per epoch": round(seconds / epochs, 1) if epochs else math.nan}])


def _fail_rule(record: SearchRecord) -> tuple[float | None, str]:
    if record.trials.empty or record.ranking.empty:
        return None, "no fail label"
    try:
        return fail_threshold(record.ranking, record.trials, record.scale or "full",
                              record.num_classes)
    except (KeyError, ValueError):
        return None, "fail label as in ranking.csv"


def _median_curves(record: SearchRecord) -> dict[str, list[float]]:
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


def _paper_marks(table: pd.DataFrame) -> dict[str, str]:
    """configuration_key -> "paper #k (x.xx%)" over the measured rows of a paper table."""
    measured = table[table["configuration"] != ""]
    # Within a column of the paper's table (Table 2: ResNet-110 and ResNet-164 apart).
    order = measured.groupby("paper network")["paper error %"].rank(method="min")
    columns = measured["paper network"].nunique() > 1
    out = {}
    for (_, row), place in zip(measured.iterrows(), order):
        where = f" of {row['paper network']}" if columns else ""
        out[row["configuration_key"]] = ("paper: fail" if math.isnan(place)
                                         else f"paper #{int(place)}{where} ({row['paper']}%)")
    return out


def _num(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _pm(mean: float, half: float) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.2f}" + ("" if half is None or math.isnan(half) else f" ± {half:.2f}")


def _fmt(frame: pd.DataFrame, digits: dict[str, int]) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        out[column] = [_num(v, digits.get(column, 2)) for v in out[column]]
    return out


def _paper_display(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for _, r in table.iterrows():
        measured = bool(r["configuration"])
        rows.append({
            "paper row": ROW_NAMES.get(r["paper row"], r["paper row"]),
            "network": r["paper network"],
            "paper %": r["paper"], "ours: configuration": r["configuration"] or "not measured",
            "rank": _num(r["rank"], 0) if measured else "-",
            "epochs": _num(r["epochs"], 0), "seeds": _num(r["seeds"], 0),
            "val mean ± 95%": _pm(r["val mean %"], r["val ci95 %"]),
            "val median": _num(r["val median %"]),
            "test mean ± 95%": _pm(r["test mean %"], r["test ci95 %"]),
            "test median": _num(r["test median %"]), "fail": r["fail"]})
    return pd.DataFrame(rows)


ROW_NAMES = {**PLACEMENT_NAMES, "original": "original"}
"""Table 2's rows in the paper's words."""


def _paper_caption(title: str, record: SearchRecord) -> str:
    what = ("shortcut variants on ResNet-110 with the original unit" if title == "Table 1"
            else "activation placements with identity shortcuts, ResNet-110 (basic units) and "
                 "ResNet-164 (bottleneck units)")
    return (f"{title} of the paper ({what}; CIFAR-10 test error %) beside this search "
            f"({record.scale} scale, {record.dataset}): errors in %, mean ± the half-width of "
            f"the 95% interval over seeds. Matched by the unit (floats at float32), not the "
            f"depth, which the scale reduces.")


def _table3_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "paper network": r["paper network"], "unit": r["unit"],
        "paper original %": _num(r["paper original %"]),
        "paper pre-act %": _num(r["paper pre-act %"]),
        "paper change": f"{r['paper change']:+.2f}",
        "ours original %": _num(r["original val %"]), "ours pre-act %": _num(r["pre-act val %"]),
        "ours change (95%)": f"{r['change %']:+.2f}" + (
            "" if math.isnan(r["change ci95 low"]) else
            f" ({r['change ci95 low']:+.2f} to {r['change ci95 high']:+.2f})"),
        "same direction": r["same direction"]} for _, r in table.iterrows()])


def _ranking_display(ranking: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "rank": int(r["rank"]), "configuration": r["configuration"], "epochs": int(r["epochs"]),
        "val err % (95%)": _pm(100 * r["val_error_mean"], 100 * r["val_error_ci95"]),
        "val median": _num(100 * r["val_error_median"]),
        "test err % (95%)": _pm(100 * r["test_error_mean"], 100 * r["test_error_ci95"]),
        "train err %": _num(100 * r["train_error_mean"]),
        "seeds": int(r["seeds"]), "outcomes": r["outcomes"], "fail": r["fail"]}
        for _, r in ranking.iterrows()])


def _share(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    return "0" if value == 0 else f"{value:.3g}"


def _propagation_display(table: pd.DataFrame) -> pd.DataFrame:
    inner = table["last stage unit"].notna().any()
    relative = (table["shortcut"] != "identity").any()  # else every ratio is 1
    return pd.DataFrame([{
        "rank": r["rank"], "configuration": r["configuration"], "f": r["f"],
        "units": r["units"],
        "predicted (init)": _share(r["predicted init"]),
        "measured (init)": _share(r["measured init"]),
        "predicted (end)": _share(r["predicted end"]),
        "end epoch": r["end epoch"], "measured (end)": _share(r["measured end"]),
        **({"relative to identity (init)": _share(r["relative init"]),
            "relative (end)": _share(r["relative end"])} if relative else {}),
        **({"last stage: unit": _num(r["last stage unit"], 0),
            "last stage: predicted": _share(r["last stage predicted init"]),
            "last stage: measured (init)": _share(r["last stage measured init"])}
           if inner else {}),
        "mean 1-g (init)": _share(r["gate carry init"]),
        "grad first/last (init)": _share(r["grad first/last init"]),
        "fail": r["fail"]} for _, r in table.iterrows()])


def _importance_display(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame([{
        "parameter": r["parameter"], "where": r["scope"], "configurations": r["trials"],
        "values": r["values"], "eta²": _num(r["eta²"]), "p": _num(r["p-value"], 3),
        "spearman rho": _num(r["spearman rho"]), "method": r["method"]}
        for _, r in table.iterrows()])
