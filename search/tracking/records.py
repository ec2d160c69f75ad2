"""The search's MLflow runs, through its journal: the parent run, the names of the metrics,
and the trial records the ranking is read back from.

Nothing here calls MLflow: every write is journaled (`journal.py`) and the sender delivers it
(`sender.py`); the records are replayed from the journal, so a search ranks and reports even
when its server was down throughout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import SearchConfig
from ..ranking import label
from .journal import PARENT, Journal, replay
from .sender import TrackingError

METRIC_NAMES = {
    "epoch": "epoch", "train_loss": "train/loss", "train_error": "train/error",
    "lr": "train/lr", "val_error": "val/error", "objective": "val/objective",
    "test_error": "test/error", "epoch_seconds": "time/train_seconds",
    "eval_seconds": "time/eval_seconds", "images_per_second": "time/images_per_second",
}
"""A trial's metric -> its MLflow name: prefixes group the charts in the MLflow UI (train/,
val/, test/, prop/ for the propagation summaries, time/)."""
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""MLflow 3's UI opens an experiment so tagged as model training, not as a GenAI project."""


def check_tracking_uri(uri: str) -> str | None:
    """Something that is not an MLflow server fails here, in seconds; a server that is down
    only now does not: the search journals its tracking (`journal.py`) and sends it once
    the server is back. Returns a warning then."""
    if not uri.startswith(("http://", "https://")):
        return None
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=5)
    except requests.RequestException as error:
        return (f"MLflow at {uri} is unreachable now ({type(error).__name__}); the search "
                "journals its tracking and sends it when the server is back")
    if response.status_code != 200:
        raise TrackingError(f"tracking server {uri} answered /health with HTTP "
                            f"{response.status_code}; is it an MLflow server?")
    return None


def start_search_run(journal: Journal, config: SearchConfig, space, name: str, dataset: str,
                     artifact_location: str | None, generation: int = 0) -> None:
    """The search's parent run, with its configuration as params and the space file as an
    artifact. A search resumed where its results directory is gone (a new cluster: the stores
    outlived `ray down`, the head's disk did not) finds its parent run by name instead of
    starting a second one beside its own trials."""
    journal.experiment(config.experiment, artifact_location, EXPERIMENT_KIND)
    identity = {"search": name, "generation": str(generation), "parent": "true"}
    tags = {**identity, "space": space.name, "space_source": space.source,
            "scale": config.scale, "dataset": dataset, **provenance_tags(),
            **({"simulated": "true"} if config.simulate else {})}
    journal.create_run(PARENT, name, tags, find=identity)
    params = {k: v for k, v in asdict(config).items()
              if k not in ("progress", "verbose", "fresh") and v is not None}
    params.update(name=name, space=space.name, space_source=space.source,
                  space_fixed=json.dumps(space.fixed), anchors=len(space.anchors))
    journal.log(PARENT, params={k: str(v)[:6000] for k, v in params.items()})
    source = Path(space.source.rpartition(":")[0])
    if source.suffix == ".py" and source.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(source, tmp)
            journal.artifacts(PARENT, Path(tmp), "space")


def trial_records(journal: Journal, run_ids: dict[str, str],
                  stage: str = "search") -> list[dict[str, Any]]:
    """One record per child run of a stage ("search", or "final" for the final retraining):
    configuration, seed, outcome, final metrics, params. `run_ids`: ref -> MLflow run id,
    for those the sender has delivered."""
    records = []
    for ref, run in replay(journal).items():
        tags, metrics, params = run.tags, run.metrics, run.params
        if ref == PARENT or tags.get("stage", "search") != stage:
            continue
        sampled = json.loads(tags.get("params", "{}"))
        records.append({
            "optuna_trial": int(tags["optuna_trial"]), "seed": int(tags["seed"]),
            "configuration": label(sampled, tags.get("network", "")),
            "configuration_key": tags.get("configuration_key", tags["optuna_trial"]),
            "outcome": tags.get("outcome", "running"), "epochs": int(metrics.get("epoch", 0)),
            **{k: metrics.get(METRIC_NAMES[k]) for k in ("val_error", "test_error",
                                                         "train_error", "train_loss")},
            "mlflow_run_id": run_ids.get(ref, ""), "ray_trial_id": tags.get("ray_trial_id", ""),
            "run_key": ref, **{f"param.{k}": v for k, v in sampled.items()},
            "params_flat": json.dumps({k: params[k] for k in sorted(params)})})
    return records


def mark_failures(journal: Journal, trials, ranking) -> None:
    """Tag every child run with its configuration's fail label (`ranking.label_failures`)."""
    labels = dict(zip(ranking["configuration_key"], ranking["fail"]))
    for ref, key in zip(trials["run_key"], trials["configuration_key"]):
        if labels.get(key):
            journal.tags(ref, {"fail": labels[key]})


def finish_search_run(journal: Journal, files: list[Path] = (),
                      metrics: dict[str, float] | None = None,
                      tags: dict[str, str] | None = None) -> None:
    """Log the search's results on its parent run and mark it FINISHED."""
    if files:
        with tempfile.TemporaryDirectory() as tmp:
            for path in files:
                shutil.copy(path, tmp)
            journal.artifacts(PARENT, Path(tmp))
    if metrics:
        journal.log(PARENT, metrics=[(k, v, 0, 0) for k, v in metrics.items()])
    if tags:
        journal.tags(PARENT, tags)
    journal.status(PARENT, "FINISHED")


def provenance_tags() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    tags = {}
    for package in ("resnet-search", "torch", "ray", "optuna", "mlflow"):
        try:
            tags[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5)
        if commit.returncode == 0:
            tags["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return tags
