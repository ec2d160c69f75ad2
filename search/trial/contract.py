"""The contract between a search and one trial: a frozen, typed `TrialConfig`.

The searcher (and the final retraining) make one per seed run; Ray Tune carries it as a plain
dict (`to_dict`), and everything downstream reads it back with `TrialConfig.from_dict`: the
trainable, the MLflow tracker, the progress lines, the tuner, `resnet-search train` and the
report. `from_dict` is the one place where a missing key gets its default and a bad value
becomes a one-line `TrialConfigError`.

Also here, for the same readers: `run_key` (the name of a seed run's directory and MLflow run),
the names of a trial directory's files, the reader of its metrics and the atomic JSON write its
records use. No torch, Ray or MLflow: the report, the command line and the driver read this
module in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from residual import NetSpec
from residual.validation import check_choice, check_int, fail, is_int
from spaces import Recipe, TrialPlan

from .device import check_device_name

STAGES = ("search", "race", "final")
"""search: a seed run of a sampled configuration; race: a further seed of a finalist after the
search (`--race`), the same recipe; final: the retraining of a finalist on every training image
(`--final-retrain`)."""

# A trial directory's files (written by `directory.py`, read by the tracker and the report).
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
PROPAGATION = "propagation.json"
RESULT = "result.json"
PLAN = "plan.json"
LEARNING_CURVE = "learning_curve.png"
PROPAGATION_PLOT = "propagation.png"
TRIAL_FILES = (CHECKPOINT, METRICS, PROPAGATION, RESULT, PLAN, LEARNING_CURVE, PROPAGATION_PLOT)


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """Every epoch's metrics a trial directory holds (none if it has no metrics file)."""
    path = Path(out) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def metrics_upto(out: str | Path, upto: int) -> list[dict[str, Any]]:
    """The metrics of epochs 1..upto a trial directory holds; later lines (written after the
    checkpoint the trial resumes from) are dropped from the file too."""
    lines = read_metrics(out)
    kept = [m for m in lines if m["epoch"] <= upto]
    if len(kept) != len(lines):
        (Path(out) / METRICS).write_text("".join(json.dumps(m) + "\n" for m in kept))
    return kept


def write_json(path: Path, data: Any) -> None:
    """Temp file + rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


class TrialConfigError(ValueError):
    """A trial configuration is invalid or incomplete; the message names the value."""


def run_key(optuna_trial: int, seed: int, stage: str = "search") -> str:
    """`0003-s1`: the seed run's directory and MLflow run, stable across driver restarts (Ray
    trial ids are not). The race's are `race-0003-s1`, the final retraining's `final-0003-s1`."""
    return f"{'' if stage == 'search' else stage + '-'}{optuna_trial:04d}-s{seed}"


def plan_to_dict(plan: TrialPlan) -> dict[str, Any]:
    return {"net": plan.net.to_dict(), "recipe": plan.recipe.to_dict(), "seed": plan.seed,
            "params": plan.params}


def plan_from_dict(data: dict[str, Any]) -> TrialPlan:
    return TrialPlan(NetSpec.from_dict(data["net"]), Recipe(**data["recipe"]), data["seed"],
                     data.get("params", {}))


def configuration_key(plan: TrialPlan) -> str:
    """The configuration a plan trains, canonical: the space's fixed values and the scale's
    defaults filled in (the plan did that), floats rounded to the float32 the network sees,
    the seed left out. Two proposals with one key are one configuration: one Optuna trial."""
    import numpy as np  # float32 rounding that saturates to inf, as the network's would

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in sorted(value.items())}
        if isinstance(value, float):
            return float(np.float32(value))
        return value

    data = plan_to_dict(plan)
    text = json.dumps(canonical({"net": data["net"], "recipe": data["recipe"]}),
                      separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


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
            check_choice("", name, getattr(self, name), (True, False))
        at = self.validate_at
        if isinstance(at, (str, bytes)) or not hasattr(at, "__iter__") or not all(
                is_int(epoch) and epoch >= 1 for epoch in at):
            raise fail("", "validate_at", at, "epochs, integers >= 1")
        object.__setattr__(self, "validate_at", frozenset(at))

    def validates(self, epoch: int, last: bool) -> bool:
        """Whether the trial measures its validation error and propagation after `epoch`:
        always at its last epoch (`last`: the budget's end, or it stops) and at the epochs
        something reads the objective."""
        return (last or epoch in self.validate_at
                or (self.validate_every > 0 and epoch % self.validate_every == 0))


_OPTIONS = ("device", "bf16", "channels_last", "threads", "stop_at_chance", "validate_every",
            "validate_at")
"""The run options a trial's dict carries."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one search shares: its space, its data, where its trial
    directories go and how it runs."""

    work_root: str
    """The search's trials directory: a seed run's is `work_root / run_key`."""
    space_source: str = ""
    """Where the space comes from (a built-in name, or `path/file.py:name`)."""
    scale: str = "small"
    dataset: str = "digits"
    data_dir: str | None = None
    cache_dir: str | None = None
    options: RunOptions = field(default_factory=RunOptions)
    simulate: float | None = None
    """None: the trial trains. A number: it is simulated (`simulated.run_simulated_trial`,
    `--simulate`): each epoch sleeps this many seconds and reports the learning-curve model's
    errors; nothing is loaded or trained."""

    def __post_init__(self) -> None:
        for name in ("work_root", "space_source", "scale", "dataset"):
            if not isinstance(getattr(self, name), str):
                raise fail("", name, getattr(self, name), "a string", TrialConfigError)
        if self.simulate is not None and (
                isinstance(self.simulate, bool) or not isinstance(self.simulate, (int, float))
                or not math.isfinite(self.simulate) or self.simulate <= 0):
            raise fail("", "simulate", self.simulate, "None or a number of seconds > 0",
                       TrialConfigError)

    def to_dict(self) -> dict[str, Any]:
        options = {name: getattr(self.options, name) for name in _OPTIONS}
        options["validate_at"] = sorted(self.options.validate_at)
        return {"work_root": self.work_root, "dataset": self.dataset,
                "data_dir": self.data_dir, "cache_dir": self.cache_dir, **options,
                "space_source": self.space_source, "scale": self.scale,
                "simulate": self.simulate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialContext:
        """The inverse of `to_dict`; extra keys are ignored, missing ones take defaults."""
        try:
            options = RunOptions(**{k: data[k] for k in _OPTIONS if k in data})
            return cls(options=options, **{f.name: data[f.name] for f in fields(cls)
                                           if f.name != "options" and f.name in data})
        except TrialConfigError:
            raise
        except (TypeError, ValueError) as error:
            raise TrialConfigError(_first_line(error)) from None


@dataclass(frozen=True)
class TrialConfig:
    """One seed run of one configuration: what trains (`plan`), the lineage that ties it to
    its Optuna trial and MLflow run, and the search's shared `context`. Nothing about how it
    is scheduled."""

    plan: TrialPlan
    """The network that trains (with the data's channels and classes), its recipe and seed."""
    optuna_trial: int
    configuration_key: str
    """The canonical configuration (`configuration_key`): one per Optuna trial."""
    context: TrialContext
    params: dict[str, Any] = field(default_factory=dict)
    """The space's parameters, as the sampler proposed them."""
    stage: str = "search"

    def __post_init__(self) -> None:
        check_choice("", "stage", self.stage, STAGES, error=TrialConfigError)
        check_int("", "optuna_trial", self.optuna_trial, 0, error=TrialConfigError)
        check_int("", "seed", self.plan.seed, 0, error=TrialConfigError)
        if not isinstance(self.configuration_key, str):
            raise fail("", "configuration_key", self.configuration_key, "a string",
                       TrialConfigError)
        if not isinstance(self.params, dict):
            raise fail("", "params", self.params, "a dict of the space's parameters",
                       TrialConfigError)

    @property
    def seed(self) -> int:
        return self.plan.seed

    @property
    def run_key(self) -> str:
        return run_key(self.optuna_trial, self.seed, self.stage)

    @property
    def directory(self) -> Path:
        """The seed run's trial directory."""
        return Path(self.context.work_root) / self.run_key

    def to_dict(self) -> dict[str, Any]:
        """The plain dict Ray Tune carries, JSON-able: the context's keys beside the run's, the
        plan nested (`run_key` and `seed` are spelled out for whoever reads Ray's files)."""
        return {"stage": self.stage, "optuna_trial": self.optuna_trial, "seed": self.seed,
                "run_key": self.run_key, "params": dict(self.params),
                "configuration_key": self.configuration_key, "plan": plan_to_dict(self.plan),
                **self.context.to_dict()}

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
                                   "made by a resnet-search searcher (start the search over "
                                   "with --fresh)")
        try:
            plan = plan_from_dict(data["plan"])
            config = cls(plan=plan, context=TrialContext.from_dict(data),
                         **{k: data[k] for k in ("optuna_trial", "configuration_key",
                                                 "params", "stage") if k in data})
        except TrialConfigError:
            raise
        except KeyError as error:
            raise TrialConfigError(f"trial configuration's plan has no {error}") from None
        except (TypeError, ValueError) as error:
            raise TrialConfigError(_first_line(error)) from None
        for name in ("seed", "run_key"):  # spelled out beside the plan: they must agree
            if name in data and data[name] != getattr(config, name):
                raise TrialConfigError(f"trial configuration {name}={data[name]!r} disagrees "
                                       f"with its plan's {getattr(config, name)!r}")
        return config


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__
