"""`report(name)`: read what a finished search left, write report.md, report.html and the
plots into its directory, and return the tables, the verdict and the rank agreements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .load import SearchRecord, load_search
from .mechanism import mechanism_lines
from .paper import TauResult
from .paper_section import paper_section
from .race_section import race_section
from .render import Document, to_html, to_markdown
from .replay import ReplayResult
from .sections import (
    Parts,
    compute_section,
    compute_table,
    depth_section,
    fail_rule,
    found_section,
    propagation_section,
    ranking_section,
    replay_search,
    replayed_scheduler,
    soundness_section,
)
from .verdict import (
    failures,
    failures_line,
    margin_lines,
    placements_line,
    shortcuts_line,
    winner_line,
)

__all__ = ["PLOTS", "Report", "compute_table", "replayed_scheduler", "report"]

PLOTS = "report_plots"
"""The folder, inside the search's directory, that holds the report's PNGs."""


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
           optuna_storage: str | None = None, out: str | Path | None = None) -> Report:
    """The report of search `name` under `results_dir` (see the package docstring), written
    into the search's directory, or into `out` (records read, nothing written beside them)."""
    record = load_search(name, results_dir)
    directory = Path(out).expanduser().resolve() if out else record.paths.search
    parts = Parts(record, directory / PLOTS, {"ranking": record.ranking})
    parts.figures.mkdir(parents=True, exist_ok=True)
    threshold, rule = fail_rule(record)
    # The builders run in this order, whatever order the document shows: each adds its
    # tables and plots to `parts`, where `Report` lists them in the order they were made.
    paper, marks = paper_section(parts)
    verdict = verdict_lines(record, parts.taus, threshold, rule)
    parts.tables["failures"] = pd.DataFrame(failures(record))
    depth, depth_lines = depth_section(parts)
    ranking = ranking_section(parts, marks, threshold, rule)
    race = race_section(parts)
    why = propagation_section(parts)
    replayed = replay_search(record)
    found = found_section(parts, replayed.result, optuna_storage)
    sound = soundness_section(parts, replayed)
    compute = compute_section(parts)
    sections = [s for s in (ranking, race, paper, depth, why, found, sound, compute)
                if s is not None]
    document = Document(_title(record), _subtitle(record), verdict + depth_lines, sections)
    _write(document, parts)
    return Report(record.paths.name, directory, document.title, document.verdict,
                  parts.tables, parts.taus, replayed.result, parts.paths)


def _title(record: SearchRecord) -> str:
    simulated = "Simulated search" if record.identity.get("simulate") else "Search"
    return f"{simulated} {record.paths.name}: what it found, and why"


def _subtitle(record: SearchRecord) -> str:
    identity = record.identity
    banner = ("SIMULATED: no trial trained; every error is the learning-curve model's "
              "(search/trial/curve_model.py). " if identity.get("simulate") else "")
    return (f"{banner}space {record.space or '?'}, {record.scale or '?'} scale, dataset "
            f"{record.dataset or '?'}, sampler {identity.get('sampler', '?')}, "
            f"{len(record.configurations)} configurations x {identity.get('seeds', '?')} "
            f"seeds, budget {record.budget} epochs")


def _write(document: Document, parts: Parts) -> None:
    """report.md (its plots beside it) and report.html (its plots inside) beside the plots'
    folder; their paths into `parts.paths`."""
    directory = parts.figures.parent
    parts.paths["markdown"] = directory / "report.md"
    parts.paths["html"] = directory / "report.html"
    parts.paths["markdown"].write_text(to_markdown(document, directory))
    parts.paths["html"].write_text(to_html(document))


def verdict_lines(record: SearchRecord, taus: dict[str, TauResult], threshold: float | None,
                  rule: str) -> list[str]:
    """One sentence per question, with its numbers (PAPER.md section 7): the winner set, first
    among placements and shortcuts, the margins, the mechanism (direct-path share), the
    paper's failures, rank agreement."""
    lines = [winner_line(record)]
    for line in (placements_line(record), shortcuts_line(record)):
        if line:
            lines.append(line)
    lines += margin_lines(record)
    lines += mechanism_lines(record)
    failure_line = failures_line(
        record, rule if threshold is None else f"fail: test error above {100 * threshold:.1f}%")
    if failure_line:
        lines.append(failure_line)
    if taus:
        lines.append("Rank agreement with the paper: " + "; ".join(
            f"{t.table} tau-b {t.tau:+.2f} over {t.n} rows" if t.n >= 2 else
            f"{t.table} fewer than two rows" for t in taus.values()) + ".")
    return lines
