"""Where a search keeps what it writes, under its results directory (default `./results`):

    mlflow.db, mlartifacts/     the default MLflow store (SQLite) and its artifacts
    optuna.db                   the Optuna studies, one per search name
    ray/<name>/                 Ray Tune's experiment state and trial checkpoints (--storage)
    searches/<name>/            search.json, ranking.csv/.md, trials.csv, trials/<run key>/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
        """search.json: the search's identity and its parent MLflow run."""
        return self.search / "search.json"

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
