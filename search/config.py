"""`SearchConfig`: everything about a search except its space, checked when it is made.

No Ray, Optuna, MLflow or torch here: the command line reads its choices without importing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spaces import SCALES

from .layout import SearchPaths

SAMPLERS = ("tpe", "random", "gp", "cmaes", "grid")

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
    bf16: bool = False
    """bf16 autocast on CUDA; fp32 (the default) is the paper's arithmetic."""
    stop_at_chance: int | None = None
    """Stop trials still at chance after this many epochs (None: train every budget out)."""
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
        if self.stop_at_chance is not None:
            self._check_int("stop_at_chance", 1)
        if not isinstance(self.bf16, bool):
            raise SearchConfigError(f"bf16={self.bf16!r} is invalid; allowed: True | False")
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

    @property
    def name(self) -> str:
        return self.paths.name
