"""The report that ends a search: what it found, against the paper, and why (PAPER.md section 7).

    from search.report import report
    r = report("paper-table1-small", results_dir="results")
    print(r.summary)            # the verdict, a few lines
    r.tables["table1"]          # the paper's Table 1 beside our measurements
    r.tau["Table 1"].tau        # Kendall tau-b against the paper's order

It reads what the search left under `results/searches/<name>/` (search.json, ranking.csv,
trials.csv, the trial directories) and the Optuna study, and writes `report.md`, a
self-contained `report.html` (plots embedded) and the plots (`report_plots/*.png`) there.
No Ray, no MLflow, no torch: it runs in seconds, after the search or long after.

    load.py        what a search left, read back
    paper.py       configurations matched to the paper's rows; Kendall tau-b
    verdict.py     one sentence per question, with its numbers; Welch intervals, seeds needed
    why.py         the direct-path share measured beside Eq. 5/8's prediction
    replay.py      ASHA and synchronous successive halving replayed on full learning curves;
                   a zero-cost screen from the propagation at initialisation
    importance.py  parameter importance that knows conditional axes
    sections.py    the report's sections, a builder each, and what the trials cost
                   (`compute_table`); paper_section.py: the section against the paper
    display.py     the tables as printed: rounded, intervals as "mean ± half-width"
    core.py        `report()`: the sections composed into report.md and report.html
    plots.py, render.py   the figures; Markdown and HTML
"""

from .core import Report, report
from .importance import parameter_importance, record_frame, study_frame
from .load import ReportError, SearchRecord, load_search
from .paper import TauResult, kendall, match, same_unit
from .replay import ReplayResult, curves_from_record, grace_table, replay_asha, rungs, screen
from .verdict import Difference, difference, seeds_needed
from .why import predicted_share

__all__ = [
    "Difference",
    "ReplayResult",
    "Report",
    "ReportError",
    "SearchRecord",
    "TauResult",
    "curves_from_record",
    "difference",
    "grace_table",
    "kendall",
    "load_search",
    "match",
    "parameter_importance",
    "predicted_share",
    "record_frame",
    "replay_asha",
    "report",
    "rungs",
    "same_unit",
    "screen",
    "seeds_needed",
    "study_frame",
]
