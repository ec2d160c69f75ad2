"""Where a search keeps what it writes, under its results directory (default `./results`):

    mlflow.db, mlartifacts/     the default MLflow store (SQLite) and its artifacts
    optuna.db                   the Optuna studies, one per search name
    ray/<name>/                 Ray Tune's experiment state and trial checkpoints (--storage)
    searches/<name>/            search.json, ranking.csv/.md, trials.csv, trials/<run key>/,
                                tracking.jsonl (the MLflow journal) and tracking.sent.json;
                                race.csv and race_trials.csv after a race (`--race`)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path


class PathError(ValueError):
    """A directory the command would write cannot be written."""


def check_writable(path: str | Path, what: str) -> None:
    """Fail before anything is written when `path` (which may not exist yet) could not be
    created and written: under a file, on a read-only or pseudo file system, not permitted."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise PathError(f"{what} {str(path)!r} is invalid: {existing} is a file; allowed: a "
                        "directory path")
    try:  # os.access says yes to root everywhere, so try it
        os.rmdir(tempfile.mkdtemp(prefix=".resnet-search-probe-", dir=existing))
    except OSError as error:
        raise PathError(f"{what} {str(path)!r} is not writable ({error.strerror}); allowed: "
                        "a directory you can write") from None


@dataclass(frozen=True)
class SearchPaths:
    root: Path
    """The results directory."""
    name: str
    """The search's name."""

    @property
    def search(self) -> Path:
        return self.root / "searches" / self.name

    @property
    def work(self) -> Path:
        """Trial directories, one per configuration and seed (`search.trial.TrialDir`)."""
        return self.search / "trials"

    @property
    def state(self) -> Path:
        """search.json: the search's identity, tracking URI and Optuna storage."""
        return self.search / "search.json"

    @property
    def race_rounds(self) -> Path:
        """race.csv: the race, one row per finalist per round (`search.race`)."""
        return self.search / "race.csv"

    @property
    def race_trials(self) -> Path:
        """race_trials.csv: the race's seed runs, one row each, as trials.csv has the
        search's."""
        return self.search / "race_trials.csv"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def optuna_uri(self) -> str:
        return f"sqlite:///{self.root / 'optuna.db'}"

    @property
    def ray_storage(self) -> Path:
        return self.root / "ray"
