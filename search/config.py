"""`SearchConfig`: everything about a search except its space, checked when it is made.

No Ray, Optuna, MLflow or torch here: the command line reads its choices without importing them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from residual.validation import check_choice, check_int
from spaces import SCALES

from .layout import SearchPaths
from .trial.device import check_device_name

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")

SCHEDULERS = ("asha", "none")


class SearchConfigError(ValueError):
    """A search configuration value is invalid; the message names it and what is allowed."""


GRACE_SHARE = 0.3
"""The default grace period as a share of the budget (SearchConfig.grace_period)."""


def grace_period(configured: int | None, budget: int) -> int:
    """ASHA's grace period: the configured one, or 30% of the budget, within [1, budget]."""
    grace = configured or math.ceil(GRACE_SHARE * budget)
    return max(1, min(grace, budget))


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> tuple[int, ...]:
    """The epochs at which successive halving decides (Ray Tune's ASHA milestones below its
    budget): grace * rf^k < max_t, ascending."""
    if grace_period < 1 or reduction_factor <= 1:
        raise ValueError(f"grace_period={grace_period} and reduction_factor="
                         f"{reduction_factor} are invalid; allowed: grace_period >= 1, "
                         "reduction_factor > 1")
    out, milestone = [], float(grace_period)
    while milestone < max_t:
        out.append(int(round(milestone)))
        milestone *= reduction_factor
    return tuple(sorted(set(out)))


def scheduler_rungs(config: SearchConfig, budget: int) -> tuple[int, ...]:
    """The epochs at which the search's scheduler reads the objective before the last."""
    if config.scheduler != "asha":
        return ()
    return rungs(grace_period(config.grace_period, budget), config.reduction_factor, budget)


@dataclass
class SearchConfig:
    """Everything about a search except its space. Paths may be relative to the cwd."""

    name: str | None = None
    """Search name (default `<space>-<scale>`); re-using a name resumes that search."""
    scale: str = "small"
    """Network and recipe size: smoke | small | full."""
    dataset: str = "digits"
    """cifar10 | cifar100 | digits | imagefolder:PATH (a tree with train/ and test/, or a
    .tar.gz of one)."""
    data_dir: str | None = None
    """Where torchvision datasets are (or are downloaded)."""
    cache_dir: str | None = None
    """The decoded-tensor cache (default $RESNET_SEARCH_CACHE, else ~/.cache/resnet-search)."""
    trials: int = 12
    """Configurations to evaluate (Optuna trials); each runs `seeds` Ray trials."""
    seeds: int = 1
    """Seeds per configuration: its objective is the mean over them."""
    sampler: str = "tpe"
    """The Optuna sampler: tpe | random | gp | cmaes | grid (grid: the space's anchors
    exactly)."""
    scheduler: str = "asha"
    """Early stopping: asha | none."""
    grace_period: int | None = None
    """ASHA: epochs every trial gets before it can be stopped. None: 30% of the budget (3 of
    the small scale's 10 epochs), from a replay on full learning curves (README, "What the
    numbers mean"): rankings settle there, at the end of the one-cycle ramp."""
    reduction_factor: int = 2
    """ASHA: 1/reduction_factor of the trials at a rung go on."""
    epochs: int | None = None
    """Override the scale's epoch budget."""
    validate_every: int = 0
    """Also validate (and measure propagation) every this many epochs, for learning curves.
    Whatever it says, a trial validates where the objective is read: at ASHA's rungs, at its
    last epoch and when it stops. 0 (the default): only there (at the small scale a validation
    pass costs 12% of an epoch; BENCHMARKS.md). 1: every epoch, the full curves the report's
    replay over other grace periods needs."""
    cpus_per_trial: float = 1.0
    """CPUs Ray reserves for each trial (also its torch threads)."""
    gpus_per_trial: float = 0.0
    """GPUs Ray reserves for each trial; fractions share a GPU (0.25: four trials on one)."""
    concurrency: int | None = None
    """Trials at once (running or waiting for resources). Default: on a local Ray, as many as
    the machine's CPUs (and GPUs, with `gpus_per_trial`) hold; on a cluster (`address`), every
    trial of the search, so trials waiting for resources show as demand to Ray's autoscaler and
    the cluster grows to them instead of being capped at the nodes already up. The sampler
    suggests that many at once: TPE's constant liar (and the anchors, which run first) keep
    parallel suggestions apart. Give a number to cap it."""
    address: str | None = None
    """None: start a local Ray on 127.0.0.1 (token auth). "auto" or "HOST:PORT" (the GCS
    address): join a running cluster from one of its nodes. "ray://" (Ray Client) is refused:
    the SQLite stores and results would be written on the client, not the cluster."""
    tracking_uri: str | None = None
    """Default `sqlite:///<results_dir>/mlflow.db`; `http://host:port` for a server."""
    experiment: str = "resnet-search"
    """The MLflow experiment."""
    results_dir: str = "results"
    """Where the MLflow store, the Optuna study and Ray's results go by default."""
    storage: str | None = None
    """Ray Tune's storage (default `<results_dir>/ray`); trials on several nodes need a
    shared one: an NFS path or `s3://bucket/prefix`."""
    optuna_storage: str | None = None
    """Default `sqlite:///<results_dir>/optuna.db`; any SQLAlchemy URL."""
    wait_for_resources: float | None = None
    """Minutes a search waits with trials pending and none running (resources the cluster lacks,
    nodes its autoscaler cannot launch) before it stops, unfinished, saying why (the command
    exits with status 4; running it again resumes the search). None: wait forever."""
    max_failures: int = 1
    """Retries of a trial that raised (not of a diverged one: that is a result)."""
    give_up_errored: bool = False
    """Trials that end in error (after `max_failures` retries) are final: their configurations
    are told to Optuna from the seeds that did finish (FAIL when none did) and the search can
    finish. False: they stay resumable, and running the search again resumes them."""
    seed: int = 0
    """Sampler seed."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N. auto: cuda in a trial Ray gave a GPU (`gpus_per_trial` > 0),
    else cpu. A cuda device on a Ray without GPUs is refused before anything runs, and a trial
    given a GPU that torch cannot see fails (never trains on the CPU instead); cpu trains on
    the CPU even in a trial given a GPU."""
    bf16: bool = False
    """bf16 autocast on CUDA; fp32 (the default) is the paper's arithmetic."""
    stop_at_chance: int | None = None
    """Stop trials still at chance after this many epochs (None: train every budget out)."""
    fresh: bool = False
    """Start the search over: its directory, Ray experiment and Optuna study are removed first
    (its MLflow runs stay, beside the new ones: a new generation). False: the same name resumes
    an unfinished search and shows a finished one."""
    screen: bool = False
    """Skip configurations the propagation at initialisation predicts to fail (a direct-path
    share below half the identity shortcut's: search/screen.py); opt-in."""
    final_retrain: int = 0
    """After the search, retrain the top K full-budget configurations on every training image
    (no validation split), each seed, for the test error that compares with the paper."""
    race: int = 0
    """After the search, race its K best full-budget configurations over more seeds (irace's
    post-selection race): one new seed a round, the same for every finalist; a finalist
    separated worse than the best leaves. 0: off; otherwise at least 2."""
    race_seeds: int = 5
    """The race's last round: it stops when a finalist has this many seeds, or earlier when the
    best is separated from every other finalist. Above `seeds`."""
    simulate: bool = False
    """Simulate the trials instead of training them: each epoch sleeps
    `simulate_epoch_seconds / simulate_speedup` and reports the errors of a learning-curve model
    fitted to this project's measured small-scale CIFAR-10 results (search/trial/curve_model.py),
    with the seed-to-seed spread measured there. Everything else is real (the sampler, ASHA,
    Ray Tune's reports and checkpoints, resume, MLflow, the Optuna study): for trying a sampler,
    scheduler, concurrency or seed count at cluster size before paying for GPUs. No data is
    loaded, no torch imported by the trials. Labelled simulated in MLflow, the ranking and the
    report; a search started one way is never resumed the other."""
    simulate_epoch_seconds: float = 25.0
    """Simulate: the seconds one epoch stands for, e.g. a full-scale epoch on your GPU (25 s: a
    planning figure for a ResNet-110 epoch on one GPU, not measured here)."""
    simulate_speedup: float = 1.0
    """Simulate: each epoch sleeps simulate_epoch_seconds divided by this (>= 1)."""
    progress: bool = True
    """Print what the search does: a line per trial that ends, a status line now and then."""
    verbose: bool = False
    """Ray's, Tune's and MLflow's own output too (quiet by default: the search's progress
    lines only)."""

    def __post_init__(self) -> None:
        self._check_int("trials", 1)
        self._check_int("seeds", 1)
        if self.grace_period is not None:
            self._check_int("grace_period", 1)
        self._check_int("reduction_factor", 2)
        self._check_int("max_failures", 0)
        self._check_int("seed", 0)
        if self.seed >= 2**63:  # Optuna's and numpy's seeds are 64-bit
            raise SearchConfigError(f"seed={self.seed} is invalid; allowed: an integer in "
                                    "[0, 2**63)")
        self._check_int("final_retrain", 0)
        self._check_int("race", 0)
        if self.race == 1:
            raise SearchConfigError("race=1 is invalid; allowed: 0 (no race) or an integer "
                                    ">= 2 (a race needs two finalists)")
        self._check_int("race_seeds", 2)
        if self.race and self.race_seeds <= self.seeds:
            raise SearchConfigError(f"race_seeds={self.race_seeds} is invalid with seeds="
                                    f"{self.seeds}; allowed: an integer > seeds (the race adds "
                                    "seeds to the search's)")
        if self.epochs is not None:
            self._check_int("epochs", 1)
        self._check_int("validate_every", 0)
        if self.concurrency is not None:
            self._check_int("concurrency", 1)
        if self.stop_at_chance is not None:
            self._check_int("stop_at_chance", 1)
        for name in ("bf16", "fresh", "verbose", "screen", "give_up_errored"):
            if not isinstance(getattr(self, name), bool):
                raise SearchConfigError(f"{name}={getattr(self, name)!r} is invalid; allowed: "
                                        "True | False")
        self._check_choice("scale", tuple(SCALES))
        self._check_choice("sampler", SAMPLERS)
        self._check_choice("scheduler", SCHEDULERS)
        for name, low in (("cpus_per_trial", 0.0), ("gpus_per_trial", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < low \
                    or (name == "cpus_per_trial" and value <= 0):
                allowed = "a number > 0" if name == "cpus_per_trial" else "a number >= 0"
                raise SearchConfigError(f"{name}={value!r} is invalid; allowed: {allowed}")
        self._check_minutes("wait_for_resources")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise SearchConfigError(f"gpus_per_trial={self.gpus_per_trial!r} is invalid; "
                                    "allowed: a fraction <= 1 or a whole number")
        if isinstance(self.address, str) and self.address.startswith("ray://"):
            # Ray Client runs the driver on this machine: the SQLite stores, the Optuna study
            # and the results would be written here while trials run on the cluster.
            raise SearchConfigError(
                f"address={self.address!r} is not supported: submit the search as a Ray job "
                "(`ray job submit --address http://HEAD:8265 -- resnet-search run ...`) or run "
                "it on the head node with --address auto")
        if self.address is not None and not (
                self.address == "auto" or _host_port(self.address)):
            raise SearchConfigError(f"address={self.address!r} is invalid; allowed: auto | "
                                    "HOST:PORT (a cluster's GCS address)")
        check_device_name(self.device, error=SearchConfigError)
        self._check_simulation()
        if self.name is not None and not (isinstance(self.name, str)
                                          and _NAME.fullmatch(self.name)):
            raise SearchConfigError(f"name={self.name!r} is invalid; allowed: letters, digits, "
                                    "'.', '_' and '-', starting with a letter or digit (it "
                                    "names a directory, an MLflow run and an Optuna study)")
        if not isinstance(self.experiment, str) or not self.experiment.strip():
            raise SearchConfigError(f"experiment={self.experiment!r} is invalid; allowed: a "
                                    "non-empty MLflow experiment name")
        if self.optuna_storage is not None and not (
                isinstance(self.optuna_storage, str) and _URL.fullmatch(self.optuna_storage)):
            raise SearchConfigError(f"optuna_storage={self.optuna_storage!r} is invalid; "
                                    "allowed: a SQLAlchemy database URL such as "
                                    "sqlite:///PATH or postgresql://HOST/DB")
        if self.tracking_uri is not None and not self.tracking_uri.startswith(
                ("http://", "https://", "sqlite:///", "databricks", "postgresql", "mysql")):
            raise SearchConfigError(f"tracking_uri={self.tracking_uri!r} is invalid; allowed: "
                                    "http(s)://HOST:PORT | sqlite:///PATH | a database URL")

    def _check_simulation(self) -> None:
        """The simulation's own values, and the options a simulated trial has no use for."""
        if not isinstance(self.simulate, bool):
            raise SearchConfigError(f"simulate={self.simulate!r} is invalid; allowed: True | "
                                    "False")
        for name, low, allowed in (("simulate_epoch_seconds", 0.0, "a number of seconds > 0"),
                                   ("simulate_speedup", 1.0, "a number >= 1")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < low or value == 0:
                raise SearchConfigError(f"{name}={value!r} is invalid; allowed: {allowed}")
        if not self.simulate:
            return
        unused = [(self.dataset != "digits", "dataset", self.dataset,
                   "digits, the default (a simulated trial loads no data)"),
                  (self.final_retrain != 0, "final_retrain", self.final_retrain,
                   "0 (a simulated trial trains nothing to retrain)"),
                  (self.bf16, "bf16", self.bf16, "False (a simulated trial computes nothing)"),
                  (self.device.startswith("cuda"), "device", self.device,
                   "auto | cpu (a simulated trial uses no GPU)")]
        for bad, name, value, allowed in unused:
            if bad:
                raise SearchConfigError(f"{name}={value!r} is invalid with simulate=True; "
                                        f"allowed: {allowed}")

    def simulated_sleep(self) -> float | None:
        """The seconds a simulated trial's epoch sleeps; None when the trials train."""
        return self.simulate_epoch_seconds / self.simulate_speedup if self.simulate else None

    def _check_minutes(self, name: str) -> None:
        value = getattr(self, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or value <= 0):
            raise SearchConfigError(f"{name}={value!r} is invalid; allowed: a positive number "
                                    "of minutes, or None (wait forever)")

    def _check_int(self, name: str, low: int) -> None:
        check_int("", name, getattr(self, name), low, error=SearchConfigError)

    def _check_choice(self, name: str, allowed: tuple[str, ...]) -> None:
        check_choice("", name, getattr(self, name), allowed, error=SearchConfigError)


def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's documentation, the string literal under it in the class body
    (PEP 257's attribute docstrings), on one line: the one source of the API's reference and
    the command line's help."""
    import ast
    import inspect

    try:
        body = ast.parse(inspect.getsource(cls)).body[0].body
    except (OSError, TypeError):  # installed without its sources: help without the prose
        return {}
    return {field.target.id: " ".join(doc.value.value.split())
            for field, doc in zip(body, body[1:])
            if isinstance(field, ast.AnnAssign) and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)}


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://.+")


def _host_port(address: object) -> bool:
    if not isinstance(address, str):
        return False
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit()


@dataclass(frozen=True)
class Settings:
    """A `SearchConfig` resolved against its space: absolute paths, stores and the budget."""

    paths: SearchPaths
    tracking_uri: str
    optuna_storage: str
    storage: str
    """Ray Tune's storage: a local path or a URI."""
    dataset: str
    data_dir: str | None
    cache_dir: str | None
    overrides: dict[str, Any]
    """Values that beat the sampled ones (an --epochs budget)."""
    configurations: int
    epochs: int
    """The full budget: what a configuration must reach to be ranked among the finished."""
    num_classes: int
    in_channels: int
    identity: dict[str, Any]
    """What a resumed search must agree on with the one it resumes."""
    generation: int = 0
    """How many times the search was started over (`SearchConfig.fresh`): its MLflow runs
    carry it, so a new generation never attaches to the old one's runs."""

    @property
    def name(self) -> str:
        return self.paths.name
