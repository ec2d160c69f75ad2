"""`search.run(space, config)`: one search, end to end, resumable.

    space --SpaceSearcher (Optuna)--> params --spaces--> TrialPlan --Ray Tune--> trial_function
      --tune.report(metrics, checkpoint)--> ASHA decides, Optuna learns, MlflowTracker records
      --end--> ranked table (CSV, Markdown) in the results directory and on the parent run

Layout under `results_dir` (default `./results`):

    mlflow.db, mlartifacts/     the default MLflow store (SQLite) and its artifacts
    optuna.db                   the Optuna studies, one per search name
    ray/<name>/                 Ray Tune's experiment state and trial checkpoints (--storage)
    searches/<name>/            search.json, ranking.csv/.md, trials.csv, trials/<id>/ (work)

Re-running a search with the same name and results directory resumes it (Tuner.restore):
finished trials are not re-run, unfinished ones continue from their checkpoints, the study
continues, and the MLflow runs are re-attached.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from spaces import SCALES, SearchSpace, get_scale, load_space

from .ranking import label, rank
from .searcher import SAMPLERS, SpaceSearcher
from .tracking import check_tracking_uri, client, experiment_id
from .train import load_trial_data

SCHEDULERS = ("asha", "none")


class SearchConfigError(ValueError):
    """A search configuration value is invalid; the message names it and what is allowed."""


@dataclass
class SearchConfig:
    """Everything about a search except its space. Paths may be relative to the cwd."""

    name: str | None = None
    """Search name (default `<space>-<scale>`); re-using a name resumes that search."""
    scale: str = "small"
    dataset: str = "digits"
    data_dir: str | None = None
    cache_dir: str | None = None
    trials: int = 12
    """Configurations to evaluate (Optuna trials); each runs `seeds` Ray trials."""
    seeds: int = 1
    sampler: str = "tpe"
    scheduler: str = "asha"
    grace_period: int = 1
    """ASHA: epochs every trial gets before it can be stopped."""
    reduction_factor: int = 2
    """ASHA: 1/reduction_factor of the trials at a rung go on."""
    epochs: int | None = None
    """Override the scale's epoch budget."""
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int | None = None
    """Trials at once; default: as many as the cluster's CPUs (or GPUs) hold."""
    address: str | None = None
    """None: start a local Ray; "auto" or "ray://host:port": join a cluster."""
    tracking_uri: str | None = None
    """Default `sqlite:///<results_dir>/mlflow.db`; `http://host:port` for a server."""
    experiment: str = "resnet-search"
    results_dir: str = "results"
    storage: str | None = None
    """Ray Tune's storage (default `<results_dir>/ray`); trials on several nodes need a
    shared one: an NFS path or `s3://bucket/prefix`."""
    optuna_storage: str | None = None
    """Default `sqlite:///<results_dir>/optuna.db`; any SQLAlchemy URL."""
    max_failures: int = 1
    """Retries of a trial that raised (not of a diverged one: that is a result)."""
    seed: int = 0
    """Sampler seed."""
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self._check_int("trials", 1)
        self._check_int("seeds", 1)
        self._check_int("grace_period", 1)
        self._check_int("reduction_factor", 2)
        self._check_int("max_failures", 0)
        self._check_int("seed", 0)
        if self.epochs is not None:
            self._check_int("epochs", 1)
        if self.concurrency is not None:
            self._check_int("concurrency", 1)
        self._check_choice("scale", tuple(SCALES))
        self._check_choice("sampler", SAMPLERS)
        self._check_choice("scheduler", SCHEDULERS)
        for name, low in (("cpus_per_trial", 0.0), ("gpus_per_trial", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low \
                    or (name == "cpus_per_trial" and value <= 0):
                allowed = "a number > 0" if name == "cpus_per_trial" else "a number >= 0"
                raise SearchConfigError(f"{name}={value!r} is invalid; allowed: {allowed}")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise SearchConfigError(f"gpus_per_trial={self.gpus_per_trial!r} is invalid; "
                                    "allowed: a fraction <= 1 or a whole number")
        if self.address is not None and not (
                self.address == "auto" or self.address.startswith("ray://")
                or _host_port(self.address)):
            raise SearchConfigError(f"address={self.address!r} is invalid; allowed: auto | "
                                    "ray://HOST:PORT | HOST:PORT")
        if self.tracking_uri is not None and not self.tracking_uri.startswith(
                ("http://", "https://", "sqlite:///", "databricks", "postgresql", "mysql")):
            raise SearchConfigError(f"tracking_uri={self.tracking_uri!r} is invalid; allowed: "
                                    "http(s)://HOST:PORT | sqlite:///PATH | a database URL")

    def _check_int(self, name: str, low: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SearchConfigError(f"{name}={value!r} is invalid; allowed: an integer >= {low}")

    def _check_choice(self, name: str, allowed: tuple[str, ...]) -> None:
        if getattr(self, name) not in allowed:
            raise SearchConfigError(f"{name}={getattr(self, name)!r} is invalid; allowed: "
                                    f"{' | '.join(allowed)}")


def _host_port(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit()


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
    parent_run_id: str
    files: list[Path] = field(default_factory=list)


@dataclass
class _Paths:
    root: Path
    name: str

    @property
    def search(self) -> Path:
        return self.root / "searches" / self.name

    @property
    def work(self) -> Path:
        return self.search / "trials"

    @property
    def state(self) -> Path:
        return self.search / "search.json"


def prepare(space: str | SearchSpace, config: SearchConfig) -> tuple[SearchSpace, dict]:
    """Every check that needs no Ray and writes nothing: space, data, tracking store.

    Returns the loaded space and the resolved settings; raises SpaceError, DataError,
    SearchConfigError or TrackingError with a one-line message.
    """
    scale = get_scale(config.scale)
    space = load_space(space, scale)
    space.check(scale)
    overrides = {"epochs": config.epochs} if config.epochs else {}
    plan = space.plan({**(space.anchors[0] if space.anchors else {}), **overrides}, scale)
    dataset = _absolute_dataset(config.dataset)
    data_dir = _absolute(config.data_dir)
    cache_dir = _absolute(config.cache_dir)
    load_trial_data(plan.recipe, dataset, data_dir, cache_dir)  # decode once, here
    root = Path(config.results_dir).expanduser().resolve()
    uri = config.tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    check_tracking_uri(uri)
    name = config.name or f"{space.name}-{scale.name}"
    if config.sampler == "grid" and not space.anchors:
        raise SearchConfigError(f"sampler='grid' needs anchors; space {space.name!r} has none")
    configurations = len(space.anchors) if config.sampler == "grid" else config.trials
    settings = {
        "name": name, "root": root, "tracking_uri": uri, "dataset": dataset,
        "data_dir": data_dir, "cache_dir": cache_dir, "overrides": overrides,
        "configurations": configurations, "epochs": plan.recipe.epochs,
        "optuna_storage": config.optuna_storage or f"sqlite:///{root / 'optuna.db'}",
        "storage": _storage_uri(config.storage) if config.storage else str(root / "ray"),
        "identity": {"space_source": space.source, "scale": scale.name, "dataset": dataset,
                     "sampler": config.sampler, "seeds": config.seeds, "tracking_uri": uri,
                     "epochs": plan.recipe.epochs, "trials": configurations},
    }
    _check_same_search(_Paths(root, name), settings["identity"])
    return space, settings


def _check_same_search(paths: _Paths, identity: dict) -> None:
    """Resuming continues the search a name holds; it cannot turn it into another one."""
    if not paths.state.exists():
        return
    saved = json.loads(paths.state.read_text()).get("identity", {})
    for key, value in identity.items():
        if key in saved and saved[key] != value:
            raise SearchConfigError(
                f"search {paths.name!r} in {paths.root} was started with {key}="
                f"{saved[key]!r}, not {value!r}; re-run it as it was to resume, or pass "
                "another --name")


def run(space: str | SearchSpace, config: SearchConfig | None = None) -> SearchResult:
    """Run (or resume) a search over `space`; see the module docstring."""
    import ray

    config = config or SearchConfig()
    space, settings = prepare(space, config)  # every check, before anything is written
    if config.progress:
        print(f"search {settings['name']}: space {space.name} ({space.source}), "
              f"{config.scale} scale, {settings['configurations']} configurations x "
              f"{config.seeds} seeds, sampler {config.sampler}, scheduler {config.scheduler}",
              flush=True)
    paths = _Paths(settings["root"], settings["name"])
    started_ray = _connect_ray(config)
    try:
        paths.work.mkdir(parents=True, exist_ok=True)
        state = _search_state(paths, space, config, settings)
        concurrency = config.concurrency or _default_concurrency(config)
        searcher = SpaceSearcher(
            space, config.scale, settings["optuna_storage"], settings["name"],
            sampler=config.sampler, seeds=config.seeds, seed=config.seed,
            configurations=settings["configurations"], overrides=settings["overrides"],
            run_settings={"work_root": str(paths.work), "dataset": settings["dataset"],
                          "data_dir": settings["data_dir"], "cache_dir": settings["cache_dir"],
                          "device": config.device,
                          "threads": max(1, int(config.cpus_per_trial))})
        total = settings["configurations"] * config.seeds
        tuner = _tuner(paths, config, searcher, state, space, settings, total, concurrency)
        tuner.fit()
        return _finish(paths, space, config, state, settings)
    finally:
        if started_ray:
            ray.shutdown()


def _connect_ray(config: SearchConfig) -> bool:
    """Join the configured cluster, or start a local Ray; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    # Experiment state (searcher included) saved every second rather than every ten: a
    # driver killed mid-search loses at most a second of bookkeeping.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
              "configure_logging": True}
    try:
        if config.address is None:
            ray.init(address="local", **kwargs)
        else:
            ray.init(address=config.address, **kwargs)
    except Exception as error:
        where = config.address or "a local Ray instance"
        raise SearchConfigError(f"cannot start or join Ray at {where}: "
                                f"{str(error).splitlines()[0]}") from None
    return True


def _default_concurrency(config: SearchConfig) -> int:
    import ray

    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 1) // config.cpus_per_trial)
    if config.gpus_per_trial:
        by_cpu = min(by_cpu, int(resources.get("GPU", 0) // config.gpus_per_trial))
    return max(1, by_cpu)


def _search_state(paths: _Paths, space: SearchSpace, config: SearchConfig,
                  settings: dict) -> dict:
    """The search's record: its parent MLflow run, created once, re-attached on resume."""
    mlflow_client = client(settings["tracking_uri"])
    if paths.state.exists():  # same identity: `prepare` checked
        state = json.loads(paths.state.read_text())
        mlflow_client.update_run(state["parent_run_id"], status="RUNNING")
        return state
    artifacts = None
    if settings["tracking_uri"].startswith("sqlite:///"):
        artifacts = (settings["root"] / "mlartifacts").as_uri()
    exp = experiment_id(mlflow_client, config.experiment, artifacts)
    tags = {"search": settings["name"], "space": space.name, "space_source": space.source,
            "scale": config.scale, "dataset": settings["dataset"], **_versions()}
    parent = mlflow_client.create_run(exp, run_name=settings["name"], tags=tags)
    from mlflow.entities import Param

    params = {k: v for k, v in asdict(config).items() if k != "progress"}
    params.update(name=settings["name"], space=space.name, space_source=space.source,
                  space_fixed=json.dumps(space.fixed), anchors=len(space.anchors))
    mlflow_client.log_batch(parent.info.run_id,
                            params=[Param(k, str(v)[:6000]) for k, v in params.items()])
    source = Path(space.source.rpartition(":")[0])
    if source.suffix == ".py" and source.is_file():
        mlflow_client.log_artifact(parent.info.run_id, str(source), "space")
    state = {"name": settings["name"], "tracking_uri": settings["tracking_uri"],
             "experiment_id": exp, "parent_run_id": parent.info.run_id,
             "space": space.name, "identity": settings["identity"]}
    paths.state.write_text(json.dumps(state, indent=1))
    return state


def _versions() -> dict[str, str]:
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


def _tuner(paths: _Paths, config: SearchConfig, searcher: SpaceSearcher, state: dict,
           space: SearchSpace, settings: dict, total: int, concurrency: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from .progress import ProgressPrinter
    from .tracking import MlflowTracker
    from .trainable import trial_function

    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    trainable = tune.with_resources(trial_function, resources)
    experiment = f"{settings['storage'].rstrip('/')}/{settings['name']}"
    if tune.Tuner.can_restore(experiment):
        return tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    if config.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr="epoch", max_t=settings["epochs"],
                                  grace_period=min(config.grace_period, settings["epochs"]),
                                  reduction_factor=config.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    callbacks = [MlflowTracker(settings["tracking_uri"], state["experiment_id"],
                               state["parent_run_id"], settings["name"], space.name,
                               str(paths.work))]
    if config.progress:
        callbacks.append(ProgressPrinter(total))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric="objective", mode="min",
            num_samples=total, max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(
            name=settings["name"], storage_path=settings["storage"], callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0))


def _finish(paths: _Paths, space: SearchSpace, config: SearchConfig, state: dict,
            settings: dict) -> SearchResult:
    """Rank the search from MLflow, the record of every trial (also those that finished
    while a driver was down and so are missing from Ray's result grid)."""
    from mlflow.entities import Metric

    from .ranking import save
    from .tracking import child_runs

    mlflow_client = client(settings["tracking_uri"])
    parent = state["parent_run_id"]
    records = []
    for run in child_runs(mlflow_client, state["experiment_id"], parent):
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        sampled = json.loads(tags.get("params", "{}"))
        records.append({
            "optuna_trial": int(tags["optuna_trial"]), "seed": int(tags["seed"]),
            "configuration": label(sampled, tags.get("network", "")),
            "outcome": tags.get("outcome", "running"), "epochs": int(metrics.get("epoch", 0)),
            **{k: metrics.get(k) for k in ("val_error", "test_error", "train_error",
                                           "train_loss")},
            "mlflow_run_id": run.info.run_id, "ray_trial_id": tags.get("ray_trial_id", ""),
            **{f"param.{k}": v for k, v in sampled.items()},
            "params_flat": json.dumps({k: params[k] for k in sorted(params)})})
    if not records:
        mlflow_client.set_terminated(parent, "FINISHED")
        return SearchResult(settings["name"], pd.DataFrame(), pd.DataFrame(), {}, paths.search,
                            settings["tracking_uri"], parent)
    trials = pd.DataFrame(records).sort_values(["optuna_trial", "seed"]).reset_index(drop=True)
    ranking = rank(trials)
    files = save(ranking, trials.drop(columns="params_flat"), paths.search,
                 f"{settings['name']} ({space.name}, {config.scale} scale, "
                 f"{settings['dataset']})")
    for path in files:
        mlflow_client.log_artifact(parent, str(path))
    top = ranking.iloc[0]
    best_row = trials[trials["optuna_trial"] == top["optuna_trial"]].iloc[0]
    best = {k[len("param."):]: v for k, v in best_row.items()
            if k.startswith("param.") and not _missing(v)}
    mlflow_client.log_batch(parent, metrics=[
        Metric("best_val_error", float(top["val_error_mean"]), 0, 0),
        Metric("trials", float(len(trials)), 0, 0)])
    mlflow_client.set_tag(parent, "best_configuration", top["configuration"])
    mlflow_client.set_terminated(parent, "FINISHED")
    return SearchResult(settings["name"], trials, ranking, best, paths.search,
                        settings["tracking_uri"], parent, files)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _storage_uri(storage: str) -> str:
    """A URI (s3://, gs://) as given; a path made absolute (trials run elsewhere)."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


def _absolute_dataset(dataset: str) -> str:
    """Trials run with another working directory: make an imagefolder path absolute."""
    prefix = "imagefolder:"
    if dataset.startswith(prefix):
        return prefix + str(Path(dataset[len(prefix):]).expanduser().resolve())
    return dataset

