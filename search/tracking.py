"""MLflow tracking, written only by the driver (DESIGN.md): a Ray Tune callback.

One parent run per search, one nested child run per Ray trial. Workers never talk to the
tracking server; SQLite never sees two writers; artifacts come from the trial's directory
(or, on a cluster without a shared disk, from its last Ray checkpoint). Re-attaching to an
existing search finds its runs by tag, so a resumed search duplicates nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ray import tune

from .config import SearchConfig
from .ranking import label
from .trial import plan_from_dict, read_metrics, render_trial_plots, trial_outcome
from .trial.directory import METRICS, PLAN, PROPAGATION
from .trial.plots import LEARNING_CURVE, PROPAGATION_PLOT

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
PARENT_TAG = "mlflow.parentRunId"
TRIAL_FILES = (METRICS, PLAN, PROPAGATION, LEARNING_CURVE, PROPAGATION_PLOT)
"""What a trial's directory contributes to its MLflow run's artifacts (with final_metrics.json)."""


class TrackingError(RuntimeError):
    """The tracking server or store cannot be used; the message says which and why."""


def check_tracking_uri(uri: str) -> None:
    """Fail in seconds, not minutes, when a tracking server is not there."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        response = requests.get(uri.rstrip("/") + "/health", timeout=5)
    except requests.RequestException as error:
        reason = type(error).__name__
        raise TrackingError(f"tracking server {uri} is unreachable ({reason}); start it "
                            "(`mlflow server`) or pass another --tracking-uri") from None
    if response.status_code != 200:
        raise TrackingError(f"tracking server {uri} answered /health with HTTP "
                            f"{response.status_code}; is it an MLflow server?")


def client(uri: str):
    import mlflow

    # The client's default retries take minutes to give up; a reachable server needs few.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    return mlflow.MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client, name: str, artifact_location: str | None) -> str:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location,
                                               tags=EXPERIMENT_KIND)
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            mlflow_client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def numeric_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The trial's own metrics (not Ray's bookkeeping) under their MLflow names; a NaN loss
    is logged as NaN: it is how a diverged trial looks."""
    names = {k: METRIC_NAMES.get(k) or ("prop/" + k[len("prop_"):] if k.startswith("prop_")
                                        else None) for k in result}
    return {name: float(result[k]) for k, name in names.items()
            if name and isinstance(result[k], (int, float)) and not isinstance(result[k], bool)}


class MlflowTracker(tune.Callback):
    """Mirrors every trial into a nested MLflow run under the search's parent run.

    Runs are keyed by the trial's `run_key` (configuration and seed), which survives a driver
    restart, so a resumed or re-queued trial logs into its existing run.
    """

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str,
                 search_name: str, space_name: str, work_root: str,
                 optuna_storage: str | None = None):
        self.tracking_uri = tracking_uri
        self.optuna_storage = optuna_storage
        """The study's storage: each Optuna trial gets its MLflow run ids (`_link`)."""
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.search_name, self.space_name = search_name, space_name
        self.work_root = work_root
        self._client = None
        self._optuna = None
        self.runs: dict[str, str] = {}
        """run key -> MLflow run id."""
        self.logged: dict[str, set[int]] = {}
        """run key -> epochs whose metrics are in MLflow."""

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None, "_optuna": None, "runs": {}, "logged": {}}

    def get_state(self) -> dict[str, Any]:
        return {}  # everything worth keeping is in MLflow itself; see `_attach`

    def set_state(self, state: dict[str, Any]) -> None:
        pass

    @property
    def mlflow(self):
        if self._client is None:
            self._client = client(self.tracking_uri)
            self._attach()
        return self._client

    def _attach(self) -> None:
        """Find this search's existing child runs: a resumed search logs into them."""
        for run in child_runs(self._client, self.experiment_id, self.parent_run_id):
            key = run.data.tags.get("run_key")
            if key:
                self.runs[key] = run.info.run_id
                self.logged[key] = {m.step for m in self._client.get_metric_history(
                    run.info.run_id, "epoch")}

    def setup(self, **info) -> None:
        self.mlflow  # noqa: B018  connect now: a bad store fails before any trial runs

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        client_, key = self.mlflow, trial.config["run_key"]  # connecting attaches old runs
        if key in self.runs:  # resumed, or queued again after a driver restart
            client_.set_tag(self.runs[key], "ray_trial_id", trial.trial_id)
            client_.update_run(self.runs[key], status="RUNNING")
        else:
            self._run_of(trial)

    def _run_of(self, trial) -> str:
        """The trial's MLflow run, created with its params and tags the first time."""
        from mlflow.entities import Param

        client_ = self.mlflow
        key = trial.config["run_key"]
        if key in self.runs:
            return self.runs[key]
        config = trial.config
        plan = plan_from_dict(config["plan"])
        number, seed = config["optuna_trial"], config["seed"]
        tags = {PARENT_TAG: self.parent_run_id, "run_key": key, "ray_trial_id": trial.trial_id,
                "optuna_trial": str(number), "seed": str(seed), "search": self.search_name,
                "space": self.space_name, "network": plan.net.name, "outcome": "running",
                "configuration_key": config["configuration_key"],
                "stage": config.get("stage", "search"),
                "params": json.dumps(config["params"])}
        final = "final-" if config.get("stage") == "final" else ""
        run = client_.create_run(self.experiment_id,
                                 run_name=f"{final}{number}-{plan.net.name}-s{seed}",
                                 tags=tags)
        params = {k: v for k, v in {**plan.flat(), "optuna_trial": number}.items()
                  if v is not None}
        client_.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.runs[key] = run.info.run_id
        self.logged[key] = set()
        self._link(number, seed, run.info.run_id)
        return run.info.run_id

    def _link(self, number: int, seed: int, run_id: str) -> None:
        """The other direction of the lineage: the Optuna trial holds its MLflow run ids
        (user attribute `mlflow_run_id.s<seed>`), as the run holds `optuna_trial`."""
        if not self.optuna_storage:
            return
        import optuna

        if self._optuna is None:  # one storage (and engine) for the search, not one per run
            self._optuna = optuna.storages.RDBStorage(self.optuna_storage)
        storage = self._optuna
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(self.search_name), number)
        try:
            storage.set_trial_user_attr(trial_id, f"mlflow_run_id.s{seed}", run_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # told before this run was created (a resumed search): the run has the link

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._log_epochs(trial, [result])

    def _log_epochs(self, trial, results: list[dict]) -> None:
        """Per-epoch metrics with step = epoch, each epoch once (a restart may repeat one)."""
        from mlflow.entities import Metric

        run_id = self._run_of(trial)
        logged = self.logged[trial.config["run_key"]]
        now = int(time.time() * 1000)
        batch = []
        for result in results:
            epoch = int(result.get("epoch", 0))
            if epoch and epoch not in logged:
                batch += [Metric(k, v, now, epoch) for k, v in numeric_metrics(result).items()]
                logged.add(epoch)
        if batch:
            self.mlflow.log_batch(run_id, metrics=batch)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, trial_outcome(trial.last_result))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, "error")

    def _finish(self, trial, outcome: str) -> None:
        run_id = self._run_of(trial)
        final = {"outcome": outcome, **(trial.last_result or {})}
        with tempfile.TemporaryDirectory() as tmp:
            source = self._trial_files(trial, Path(tmp))
            staged = Path(tmp, "artifacts")
            staged.mkdir()
            if source is not None:
                # Epochs reported while the driver was down reach MLflow from the trial's file.
                self._log_epochs(trial, read_metrics(source))
                if _plots_stale(source):  # a trial stopped early never drew its own
                    render_trial_plots(source)
                for name in TRIAL_FILES:
                    if (source / name).exists():
                        shutil.copy(source / name, staged / name)
            (staged / "final_metrics.json").write_text(json.dumps(
                {k: v for k, v in final.items() if _jsonable(v)}, indent=1))
            if outcome == "error" and trial.error_file and os.path.exists(trial.error_file):
                shutil.copy(trial.error_file, staged / "error.txt")
            try:
                self.mlflow.log_artifacts(run_id, str(staged))
            except Exception as error:  # never silently: the run says so, and so do we
                message = f"{type(error).__name__}: {error}".splitlines()[0][:250]
                self.mlflow.set_tag(run_id, "artifacts", f"failed: {message}")
                key = trial.config["run_key"]
                print(f"resnet-search: warning: artifacts of trial {key} not logged "
                      f"({message}); its files stay in {Path(self.work_root) / key} and in "
                      "its Ray checkpoint", file=sys.stderr)
        self.mlflow.set_tag(run_id, "outcome", outcome)
        self.mlflow.set_terminated(run_id, "FAILED" if outcome == "error" else "FINISHED")

    def _trial_files(self, trial, tmp: Path) -> Path | None:
        """The trial's directory here, else a download of its last Ray checkpoint."""
        local = Path(self.work_root) / trial.config["run_key"]
        if local.exists():
            return local
        if trial.checkpoint is not None:
            return Path(trial.checkpoint.to_directory(str(tmp / "checkpoint")))
        return None


def child_runs(mlflow_client, experiment: str, parent_run_id: str) -> list:
    return mlflow_client.search_runs(
        [experiment], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        max_results=50_000)


def _plots_stale(trial_dir: Path) -> bool:
    """True when the trial's plots are missing or older than its metrics: `run_trial` draws
    them when a trial ends, so only one a scheduler stopped needs them drawn here."""
    plots = [trial_dir / LEARNING_CURVE, trial_dir / PROPAGATION_PLOT]
    metrics = trial_dir / METRICS
    if not all(p.exists() for p in plots):
        return True
    return metrics.exists() and metrics.stat().st_mtime_ns > min(
        p.stat().st_mtime_ns for p in plots)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


def start_search_run(uri: str, config: SearchConfig, space, name: str, dataset: str,
                     artifact_location: str | None) -> tuple[str, str]:
    """The search's parent run, with its configuration as params and the space file as an
    artifact; returns (experiment id, run id)."""
    from mlflow.entities import Param

    mlflow_client = client(uri)
    experiment = experiment_id(mlflow_client, config.experiment, artifact_location)
    # A search resumed where its results directory is gone (a new cluster: the stores outlived
    # `ray down`, the head's disk did not) finds its parent run by name instead of starting a
    # second one beside its own trials.
    earlier = mlflow_client.search_runs(
        [experiment], filter_string=f"tags.search = '{name}' and tags.parent = 'true'",
        max_results=1)
    if earlier:
        return experiment, earlier[0].info.run_id
    tags = {"search": name, "parent": "true", "space": space.name,
            "space_source": space.source, "scale": config.scale, "dataset": dataset,
            **provenance_tags()}
    run_id = mlflow_client.create_run(experiment, run_name=name, tags=tags).info.run_id
    params = {k: v for k, v in asdict(config).items() if k != "progress" and v is not None}
    params.update(name=name, space=space.name, space_source=space.source,
                  space_fixed=json.dumps(space.fixed), anchors=len(space.anchors))
    mlflow_client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    source = Path(space.source.rpartition(":")[0])
    if source.suffix == ".py" and source.is_file():
        mlflow_client.log_artifact(run_id, str(source), "space")
    return experiment, run_id


def trial_records(uri: str, experiment: str, parent_run_id: str,
                  stage: str = "search") -> list[dict[str, Any]]:
    """One record per child run of a stage ("search", or "final" for the final retraining):
    configuration, seed, outcome, final metrics, params."""
    mlflow_client = client(uri)
    records = []
    for run in child_runs(mlflow_client, experiment, parent_run_id):
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        if tags.get("stage", "search") != stage:
            continue
        sampled = json.loads(tags.get("params", "{}"))
        records.append({
            "optuna_trial": int(tags["optuna_trial"]), "seed": int(tags["seed"]),
            "configuration": label(sampled, tags.get("network", "")),
            "configuration_key": tags.get("configuration_key", tags["optuna_trial"]),
            "outcome": tags.get("outcome", "running"), "epochs": int(metrics.get("epoch", 0)),
            **{k: metrics.get(METRIC_NAMES[k]) for k in ("val_error", "test_error",
                                                         "train_error", "train_loss")},
            "mlflow_run_id": run.info.run_id, "ray_trial_id": tags.get("ray_trial_id", ""),
            **{f"param.{k}": v for k, v in sampled.items()},
            "params_flat": json.dumps({k: params[k] for k in sorted(params)})})
    return records


def mark_failures(uri: str, trials, ranking) -> None:
    """Tag every child run with its configuration's fail label (`ranking.label_failures`)."""
    mlflow_client = client(uri)
    labels = dict(zip(ranking["configuration_key"], ranking["fail"]))
    for run_id, key in zip(trials["mlflow_run_id"], trials["configuration_key"]):
        if labels.get(key):
            mlflow_client.set_tag(run_id, "fail", labels[key])


def finish_search_run(uri: str, run_id: str, files: list[Path] = (),
                      metrics: dict[str, float] | None = None,
                      tags: dict[str, str] | None = None) -> None:
    """Log the search's results on its parent run and mark it FINISHED."""
    from mlflow.entities import Metric

    mlflow_client = client(uri)
    for path in files:
        mlflow_client.log_artifact(run_id, str(path))
    if metrics:
        mlflow_client.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    for key, value in (tags or {}).items():
        mlflow_client.set_tag(run_id, key, value)
    mlflow_client.set_terminated(run_id, "FINISHED")


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
