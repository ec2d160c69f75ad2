"""The contract between a search and one trial: a frozen, typed `TrialConfig`.

The searcher (and the final retraining) make one per seed run; Ray Tune carries it as a plain
dict (`to_dict`), and everything downstream reads it back with `TrialConfig.from_dict`: the
trainable, the MLflow tracker, the progress lines, the tuner, `resnet-search train` and the
report. `from_dict` is the one place where a missing key gets its default and a bad value
becomes a one-line `TrialConfigError`.

Also here, for the same readers: `run_key` (the name of a seed run's directory and MLflow run)
and the names of a trial directory's files. No torch, Ray or MLflow: the report and the command
line read this module in a fraction of a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from residual import NetSpec
from residual.validation import check_int
from spaces import Recipe, SpaceError, TrialPlan

from .device import check_device_name

STAGES = ("search", "final", "race")
"""search: a seed run of a sampled configuration; final: the retraining of a finalist on every
training image (`--final-retrain`); race: a further seed of a finalist (`--race`)."""

# A trial directory's files (written by `directory.py`, read by the tracker and the report).
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
PROPAGATION = "propagation.json"
RESULT = "result.json"
PLAN = "plan.json"
LEARNING_CURVE = "learning_curve.png"
PROPAGATION_PLOT = "propagation.png"
TRIAL_FILES = (CHECKPOINT, METRICS, PROPAGATION, RESULT, PLAN, LEARNING_CURVE, PROPAGATION_PLOT)


class TrialConfigError(ValueError):
    """A trial configuration is invalid or incomplete; the message names the value."""


def run_key(optuna_trial: int, seed: int, stage: str = "search") -> str:
    """`0003-s1`: the seed run's directory and MLflow run, stable across driver restarts (Ray
    trial ids are not). The final retraining's runs are `final-0003-s1`."""
    return f"{'final-' if stage == 'final' else ''}{optuna_trial:04d}-s{seed}"


def plan_to_dict(plan: TrialPlan) -> dict[str, Any]:
    return {"net": plan.net.to_dict(), "recipe": plan.recipe.to_dict(), "seed": plan.seed,
            "params": plan.params}


def plan_from_dict(data: dict[str, Any]) -> TrialPlan:
    return TrialPlan(NetSpec.from_dict(data["net"]), Recipe(**data["recipe"]), data["seed"],
                     data.get("params", {}))


@dataclass(frozen=True)
class RunOptions:
    """How to run a trial (not what to train): device and speed settings."""

    device: str = "auto"
    """auto | cpu | cuda | cuda:N; what auto means is `device.choose_device`'s to say."""
    bf16: bool = False
    """bf16 autocast on CUDA (ignored on CPU). Opt-in: it changes the science (a gate's
    1 - g at b_g = -6 is 0.99753 in fp32, 0.99609 in bf16); the shortcut arithmetic stays
    fp32 under it (`residual.units`)."""
    channels_last: bool = True
    """channels_last memory format on CUDA (ignored on CPU)."""
    threads: int | None = None
    """torch CPU threads; a search sets it to the trial's CPU share."""
    stop_at_chance: int | None = None
    """Stop a trial whose training error is still at chance after this many epochs (it keeps
    its measured errors, outcome "stopped"); None, the default, trains every budget out."""
    validate_every: int = 1
    """Validate, and measure propagation, after every this many epochs (0: only where
    `validates` must). The weights and training losses do not depend on it. A search passes
    its own (`SearchConfig.validate_every`, 0 by default); one trial run by hand validates
    every epoch, for a person watching it."""
    validate_at: frozenset[int] = frozenset()
    """Epochs at which a scheduler reads the objective (ASHA's rungs): validated whatever
    `validate_every` says."""

    def __post_init__(self) -> None:
        check_device_name(self.device)
        check_int("", "validate_every", self.validate_every, 0)
        for name in ("threads", "stop_at_chance"):
            if getattr(self, name) is not None:
                check_int("", name, getattr(self, name), 1)
        for name in ("bf16", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} is invalid; allowed: "
                                 "True | False")
        object.__setattr__(self, "validate_at", frozenset(self.validate_at))

    def validates(self, epoch: int, last: bool) -> bool:
        """Whether the trial measures its validation error and propagation after `epoch`:
        always at its last epoch (`last`: the budget's end, or it stops) and at the epochs
        something reads the objective."""
        return (last or epoch in self.validate_at
                or (self.validate_every > 0 and epoch % self.validate_every == 0))


_OPTIONS = ("device", "bf16", "threads", "stop_at_chance", "validate_every", "validate_at")
"""The run options a trial's dict carries (channels_last keeps its default in a search)."""


@dataclass(frozen=True)
class TrialConfig:
    """Everything one seed run of one configuration needs, and nothing about how it is
    scheduled: what trains (`plan`), where its data and directory are, how it runs, and the
    lineage that ties it to its Optuna trial and MLflow run."""

    plan: TrialPlan
    """The network that trains (with the data's channels and classes), its recipe and seed."""
    optuna_trial: int
    configuration_key: str
    """The canonical configuration (`searcher.configuration_key`): one per Optuna trial."""
    work_root: str
    """The search's trials directory: this run's is `work_root / run_key`."""
    params: dict[str, Any] = field(default_factory=dict)
    """The space's parameters, as the sampler proposed them."""
    space_source: str = ""
    """Where the space comes from (a built-in name, or `path/file.py:name`)."""
    scale: str = "small"
    dataset: str = "digits"
    data_dir: str | None = None
    cache_dir: str | None = None
    options: RunOptions = field(default_factory=RunOptions)
    stage: str = "search"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise TrialConfigError(f"stage={self.stage!r} is invalid; allowed: "
                                   f"{' | '.join(STAGES)}")
        check_int("", "optuna_trial", self.optuna_trial, 0, error=TrialConfigError)
        check_int("", "seed", self.plan.seed, 0, error=TrialConfigError)
        for name in ("configuration_key", "work_root", "space_source", "scale", "dataset"):
            if not isinstance(getattr(self, name), str):
                raise TrialConfigError(f"{name}={getattr(self, name)!r} is invalid; allowed: "
                                       "a string")

    @property
    def seed(self) -> int:
        return self.plan.seed

    @property
    def run_key(self) -> str:
        return run_key(self.optuna_trial, self.seed, self.stage)

    @property
    def directory(self) -> Path:
        """The seed run's trial directory."""
        return Path(self.work_root) / self.run_key

    def to_dict(self) -> dict[str, Any]:
        """The plain dict Ray Tune carries (JSON-able; `run_key` and `seed` are spelled out
        for whoever reads Ray's own files)."""
        options = {name: getattr(self.options, name) for name in _OPTIONS}
        options["validate_at"] = sorted(self.options.validate_at)
        return {"stage": self.stage, "optuna_trial": self.optuna_trial, "seed": self.seed,
                "run_key": self.run_key, "params": dict(self.params),
                "configuration_key": self.configuration_key, "plan": plan_to_dict(self.plan),
                "work_root": self.work_root, "dataset": self.dataset,
                "data_dir": self.data_dir, "cache_dir": self.cache_dir, **options,
                "space_source": self.space_source, "scale": self.scale}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialConfig:
        """The inverse of `to_dict`. A key that is missing takes the field's default: the
        dicts of a search begun before this contract existed resume as they ran (no stage:
        search; no validate_every: every epoch)."""
        if not isinstance(data, dict):
            raise TrialConfigError(f"a trial configuration must be a dict, not {data!r}")
        missing = [k for k in ("plan", "optuna_trial", "configuration_key", "work_root")
                   if k not in data]
        if missing:
            raise TrialConfigError(f"trial configuration has no {missing[0]!r}; it was not "
                                   "made by this version's searcher (re-run the search with "
                                   "--fresh)")
        try:
            plan = plan_from_dict(data["plan"])
            options = RunOptions(**{k: data[k] for k in _OPTIONS if k in data})
            given = {f.name: data[f.name] for f in fields(cls)
                     if f.name not in ("plan", "options") and f.name in data}
            config = cls(plan=plan, options=options, **given)
        except TrialConfigError:
            raise
        except (KeyError, TypeError, ValueError, SpaceError) as error:
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise TrialConfigError(f"trial configuration is invalid: {text}") from None
        if "seed" in data and data["seed"] != plan.seed:
            raise TrialConfigError(f"seed={data['seed']!r} disagrees with the plan's seed "
                                   f"{plan.seed}")
        return config
