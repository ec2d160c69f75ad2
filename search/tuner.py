"""Ray Tune assembly: join or start Ray, size the concurrency, build (or restore) the Tuner.

The trainable is `trainable.trial_function`; the searcher, the scheduler (ASHA or FIFO) and the
callbacks (MLflow tracking, progress) are wired here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import sys

import ray
from ray import tune
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher

from spaces import SearchSpace

from .config import SearchConfig, SearchConfigError, Settings, grace_period
from .progress import ProgressPrinter, ResourceWatch
from .searcher import SpaceSearcher
from .stores import FINAL
from .tracking.journal import Journal
from .tracking.tracker import MlflowTracker
from .trainable import StagedData, trial_function
from .trial import DeviceError, TrialConfig, choose_device
from .trial.device import unavailable
from .tune_fixes import forget_parked_decisions, snapshot_period

LOOPBACK = "127.0.0.1"


def connect_ray(config: SearchConfig) -> bool:
    """Join the configured cluster, or start a local Ray; True if we started it."""
    if ray.is_initialized():
        return False
    # Experiment state (searcher included) saved every second rather than every ten: a
    # driver killed mid-search loses at most a second of bookkeeping (`snapshot_period`).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    snapshot_period()
    if config.address not in (None, "auto"):
        _check_listening(config.address)
    _set_output(config.verbose)
    options = {**_INIT_OPTIONS, **({"log_to_driver": True, "logging_level": "INFO"}
                                   if config.verbose else {})}
    try:
        if config.address is None:
            start_local_ray(**options)
        else:
            ray.init(address=config.address, **options)
    except SearchConfigError:  # a local Ray beyond the loopback (`check_loopback`)
        raise
    except Exception as error:
        where = config.address or "a local Ray instance"
        raise SearchConfigError(f"cannot start or join Ray at {where}: "
                                f"{str(error).splitlines()[0]}") from None
    return True


def _check_listening(address: str, timeout: float = 10.0) -> None:
    """Ray retries a GCS that is not there for minutes; a TCP connect says so in seconds."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SearchConfigError(f"address={address!r} is unreachable ({reason}); allowed: the "
                                "GCS address of a running Ray cluster (`ray start --head` "
                                "prints it) or auto on one of its nodes") from None


def _set_output(verbose: bool) -> None:
    """Quiet by default: the search prints its own progress lines; Tune's experiment box and
    TensorBoard hint, MLflow's store messages and the workers' output only with `verbose`."""
    if not verbose:
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the old reporter, at verbose=0: silent
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # if it was imported already
        # A trial's error is one progress line naming its file, not Tune's logged traceback.
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)


_INIT_OPTIONS = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR",
                 "configure_logging": True}


def start_local_ray(**options) -> None:
    """Start a one-machine Ray whose servers listen on the loopback only.

    Every Ray server (GCS, raylet and object manager, workers' and the driver's gRPC servers,
    runtime-env and dashboard agents) binds the node's IP address, or the loopback when that
    address is a loopback one. `ray.init` rewrites a `_node_ip_address` of 127.0.0.1 into the
    machine's external address (`services.resolve_ip_for_localhost`), except where Ray
    clusters are disabled (its Windows/macOS default); that switch is held off for the
    duration of this call only, so a later `ray.init(address=...)` in this process resolves
    addresses as usual. Token authentication stays as Ray sets it (on for a local Ray unless
    RAY_AUTH_MODE=disabled). `options`: more of `ray.init`'s, e.g. num_cpus, num_gpus (tests
    declare GPUs a machine does not have).
    """
    from ray._private import ray_constants

    clusters = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(address="local", _node_ip_address=LOOPBACK, **{**_INIT_OPTIONS, **options})
    finally:
        if clusters is None:
            del ray_constants.ENABLE_RAY_CLUSTER
        else:
            ray_constants.ENABLE_RAY_CLUSTER = clusters
    try:  # a Ray whose internals moved: stop, unless the user accepts the risk
        accepted = check_loopback(ray_addresses(), ray.__version__,
                                  os.environ.get(ALLOW_EXPOSED, "") in ("1", "true", "yes"))
    except SearchConfigError:
        ray.shutdown()
        raise
    if accepted:
        print(f"resnet-search: warning: {accepted}", file=sys.stderr, flush=True)


ALLOW_EXPOSED = "RESNET_SEARCH_ALLOW_EXPOSED_RAY"
"""Set to 1, a local Ray that listens beyond the loopback runs anyway (`check_loopback`)."""


def ray_addresses() -> dict[str, str]:
    """The addresses the running Ray reports for this node's servers: its GCS, its raylet
    (the object manager and the agents bind the same node address) and this driver."""
    context = ray.get_runtime_context()
    node = next((n for n in ray.nodes() if n.get("NodeID") == context.get_node_id()), {})
    return {"GCS": context.gcs_address or "", "raylet": node.get("NodeManagerAddress", ""),
            "driver": ray.util.get_node_ip_address() or ""}


def beyond_loopback(addresses: dict[str, str]) -> dict[str, str]:
    """Those of `addresses` (server -> host or host:port) not on the loopback; a server whose
    address is missing counts as beyond it (fail closed)."""
    import ipaddress

    out = {}
    for server, address in addresses.items():
        host = address.rpartition(":")[0] if address.count(":") == 1 or "]:" in address \
            else address
        host = host.strip("[]")
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            out[server] = host or "an unreported address"
    return out


def check_loopback(addresses: dict[str, str], version: str, accepted: bool) -> str | None:
    """Refuse (SearchConfigError, one line) a local Ray whose servers report an address beyond
    the loopback: `start_local_ray`'s switch no longer holds in this Ray version. `accepted`
    (RESNET_SEARCH_ALLOW_EXPOSED_RAY=1): the same line is returned, as a warning, instead."""
    exposed = beyond_loopback(addresses)
    if not exposed:
        return None
    hosts: dict[str, list[str]] = {}
    for server, host in exposed.items():
        hosts.setdefault(host, []).append(server)
    where = ", ".join(f"{host} ({', '.join(servers)})" for host, servers in hosts.items())
    said = (f"the local Ray (ray {version}) listens on {where}, not only on {LOOPBACK}: this "
            "Ray no longer keeps a local Ray on the loopback")
    if accepted:
        return f"{said}; {ALLOW_EXPOSED}=1 accepts it: token authentication is its only guard"
    raise SearchConfigError(f"{said}; allowed: {ALLOW_EXPOSED}=1 to run it anyway (token "
                            "authentication then its only guard), or --address with a Ray "
                            "you started")


def default_concurrency(config: SearchConfig, total: int) -> int:
    """`SearchConfig.concurrency`'s default: see its docstring."""
    if config.concurrency is not None:
        return config.concurrency
    if config.address is not None:  # a cluster: never capped at the nodes already up
        return total
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 1) // config.cpus_per_trial)
    if config.gpus_per_trial:
        by_cpu = min(by_cpu, int(resources.get("GPU", 0) // config.gpus_per_trial))
    return max(1, min(by_cpu, total))


def check_local_device(config: SearchConfig) -> None:
    """A cuda device for a local search needs a GPU torch can see: checked before Ray starts,
    by the decision the trials make (`choose_device`)."""
    if config.device.startswith("cuda") and config.address is None:
        try:
            choose_device(config.device)
        except DeviceError as error:  # the API's callers catch SearchConfigError
            raise SearchConfigError(str(error)) from None


def check_ray_devices(config: SearchConfig) -> None:
    """Refuse, once Ray is up and before anything is written, a search whose trials could not
    use the GPU they ask for or, on a local Ray, would wait forever for one. A cluster's GPUs are
    those of the nodes up now."""
    wants_cuda = config.device.startswith("cuda")
    local = config.address is None
    gpus = ray.cluster_resources().get("GPU", 0)
    where = "the local Ray" if local else f"the Ray cluster at {config.address}"
    if wants_cuda and not gpus:
        raise SearchConfigError(unavailable(config.device, f"{where} has no GPU"))
    if local and config.gpus_per_trial and not gpus:
        raise SearchConfigError(f"gpus_per_trial={config.gpus_per_trial:g} is unavailable: "
                                f"{where} has no GPU; allowed: 0")
    if config.device == "auto" and not config.gpus_per_trial and gpus and config.progress:
        print(f"note: trials train on the CPU; {where} has {gpus:g} GPU(s): pass "
              "--gpus-per-trial (e.g. 0.25 to share one among 4 trials) to use them",
              file=sys.stderr, flush=True)


def trial_dirname(trial) -> str:
    """A Ray trial's directory: its run key (Optuna number and seed, as in the trials/
    directory and the MLflow run), not Tune's parameter dump."""
    return f"{TrialConfig.from_dict(trial.config).run_key}-{trial.trial_id}"


MOVED_MODULES = {"search.journal": "search.tracking.journal"}
"""Modules that moved, by the name a search begun before the move pickled them under (its
tracker's journal, in Tune's tuner.pkl)."""


def _know_moved_modules() -> None:
    """Let a restored Tuner unpickle what an earlier layout of this package pickled."""
    from importlib import import_module

    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, import_module(new))


class FixedRuns(Searcher):
    """Hands Ray Tune a fixed list of trials, in order: the final retraining's, or those Tune
    cut short, run again."""

    def __init__(self, runs: list[TrialConfig]):
        super().__init__(metric="objective", mode="min")
        self.runs = list(runs)

    # Pickled as the contract's dicts, read back by `from_dict` (see `SpaceSearcher`).
    def __getstate__(self) -> dict:
        return {**self.__dict__, "runs": [run.to_dict() for run in self.runs]}

    def __setstate__(self, state: dict) -> None:
        state["runs"] = [TrialConfig.from_dict(run) for run in state["runs"]]
        self.__dict__.update(state)

    def suggest(self, trial_id: str) -> dict | None:
        return self.runs.pop(0).to_dict() if self.runs else Searcher.FINISHED

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        pass


def make_tuner(config: SearchConfig, settings: Settings, searcher: SpaceSearcher | None,
               journal: Journal, space: SearchSpace, total: int, concurrency: int,
               data: StagedData | None = None, retrain: list[TrialConfig] | None = None,
               suffix: str = FINAL) -> tune.Tuner:
    """A new Tuner, or the search's own restored one when its experiment state exists.

    `data`, the dataset the driver staged, reaches every trial through Ray's object store
    (`tune.with_parameters`), on any node: no worker needs the driver's data path. A restored
    Tuner gets the same wrapping (Tuner.restore needs the trainable again). `retrain`: runs
    each trained once, to its end, in an experiment of its own, named with `suffix`: the
    final retraining's, or the trials Tune cut short, run again."""
    # A trial reports `objective` only at the epochs it validates (`SearchConfig.validate_every`:
    # ASHA's rungs and the end at least). ASHA and the searcher skip a result without it; Tune's
    # check that every result has it would fail the search instead.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    resources = {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(trial_function, data=data), resources)
    name = settings.name + (suffix if retrain else "")
    experiment = f"{settings.storage.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(experiment):
        _know_moved_modules()
        forget_parked_decisions()
        return with_run_callbacks(tune.Tuner.restore(
            experiment, trainable=trainable, resume_unfinished=True,
            resume_errored=not config.give_up_errored), config)
    if retrain:
        search_alg, scheduler = FixedRuns(retrain), FIFOScheduler()
    elif config.scheduler == "asha":
        search_alg = searcher
        scheduler = ASHAScheduler(time_attr="epoch", max_t=settings.epochs,
                                  grace_period=grace_period(config.grace_period,
                                                            settings.epochs),
                                  reduction_factor=config.reduction_factor)
    else:
        search_alg, scheduler = searcher, FIFOScheduler()
    callbacks = [MlflowTracker(journal, settings.name, space.name, str(settings.paths.work),
                               settings.optuna_storage, settings.generation)]
    if config.progress:
        callbacks.append(ProgressPrinter(total))
    return with_run_callbacks(tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=search_alg, scheduler=scheduler, metric="objective", mode="min",
            num_samples=total, max_concurrent_trials=concurrency, reuse_actors=True,
            trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=settings.storage, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1 if config.verbose else 0)), config)


def with_run_callbacks(tuner: tune.Tuner, config: SearchConfig) -> tune.Tuner:
    """`tuner` with this run's callbacks: Tune's per-trial result.json and progress.csv (what
    its `ExperimentAnalysis` reads) but not its TensorBoard event files, and this run's
    `ResourceWatch` (its progress lines and --wait-for-resources) last. Set once the Tuner
    exists, new or restored: Tune pickles the first run's RunConfig, callbacks included, into
    the experiment (tuner.pkl) and `Tuner.restore` brings it back, with no public way to change
    it; a watch pickled there would apply an earlier run's limit, and a search begun before
    the watch existed would have none.

    Tune adds its three loggers itself unless TUNE_DISABLE_AUTO_CALLBACK_LOGGERS is set. Its
    TensorBoard logger writes and flushes an event file per result in Tune's loop, the largest
    part of Tune's cost per result in the driver's profile (BENCHMARKS.md, "At cluster size"),
    for files no part of this platform reads: MLflow holds every metric."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    run_config = tuner._local_tuner.get_run_config()  # Ray Client (ray://) is refused
    callbacks = [c for c in run_config.callbacks or []
                 if not isinstance(c, (ResourceWatch, TBXLoggerCallback))]
    callbacks += [logger() for logger in (CSVLoggerCallback, JsonLoggerCallback)
                  if not any(isinstance(c, logger) for c in callbacks)]
    if config.progress or config.wait_for_resources:
        callbacks.append(ResourceWatch(config.wait_for_resources, config.progress))
    run_config.callbacks = callbacks
    return tuner
