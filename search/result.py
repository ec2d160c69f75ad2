"""What `search.run` returns: the search's tables, files and what is left to do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class SearchResult:
    name: str
    trials: pd.DataFrame
    """One row per Ray trial: configuration, seed, outcome, final metrics, params."""
    ranking: pd.DataFrame
    """One row per configuration, best first: mean and spread over seeds."""
    best: dict[str, Any]
    """The best configuration's params."""
    directory: Path
    tracking_uri: str
    parent_run_id: str = ""
    """Empty while the parent run has not reached MLflow (`unsent`)."""
    files: list[Path] = field(default_factory=list)
    legend: str = ""
    """The rule of the ranking's fail label, in words."""
    race: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The race over the finalists (`--race`), one row per finalist per round (race.csv);
    empty without one."""
    report: Any = None
    """The search's `search.report.Report` (None if it could not be written)."""
    finished_before: bool = False
    """The search had finished before this call: shown from its files, nothing ran."""
    unsent: int = 0
    """Bytes of tracking journal MLflow has not received (its server was down at the end):
    `resnet-search sync NAME` sends them."""
    unfinished: list[str] = field(default_factory=list)
    """What running the same command again would still do (errored or interrupted trials,
    configurations not asked yet); empty when the search is finished."""
