"""What a finished search left on disk, read back for its report (no Ray, no MLflow, no torch).

    searches/<name>/search.json     identity: space, scale, dataset, sampler, seeds, recipe
    searches/<name>/ranking.csv     one row per configuration (`search.ranking.rank`)
    searches/<name>/trials.csv      one row per seed run, with its `param.<name>` columns
    searches/<name>/trials/<key>/   plan.json, metrics.jsonl, propagation.json per seed run
    searches/<name>/race*.csv       the race after the search, if one ran: its rounds and runs

A finalist's race seeds are further seeds of the same configuration: its `seed_values` and
`runs` hold them beside the search's, and its `row` (a copy of its ranking.csv row) has its
statistics over all of them, so every verdict reads everything measured. ranking.csv itself,
and `SearchRecord.ranking`, stay the search's own ranking.

Propagation profiles are read as the plain dicts `residual.propagation.PropagationProfile`
writes (same field names): the report never needs torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from residual.kinds import ONE_MINUS_LAMBDA, SHORTCUT_PARAMS
from search.layout import SearchPaths
from search.ranking import interval95, read
from search.trial.contract import METRICS, PLAN, PROPAGATION, run_key

BUILTIN_SPACES = ("paper-table1", "paper-table2", "paper-joint", "paper-depth",
                  "paper-rediscover")
"""The spaces whose reports carry the paper's columns."""


class ReportError(ValueError):
    """The search's directory lacks what a report needs; the message says what."""


@dataclass
class Run:
    """One seed run of a configuration: its trial directory's records."""

    key: str
    seed: int
    outcome: str
    epochs: int
    curve: list[float]
    """Validation error per epoch (epoch 1 first)."""
    propagation: dict[int, dict[str, Any]]
    """Propagation profile (as a dict) by epoch; 0 = initialisation."""
    train_loss: list[float] = field(default_factory=list)
    """Training loss per epoch (the paper's Fig. 6 curves)."""
    seconds: float = 0.0
    """Trial time: training and evaluation, summed over its epochs (each epoch once)."""


@dataclass
class Configuration:
    """One ranked configuration, its network and its seed runs."""

    key: str
    label: str
    rank: int
    row: pd.Series
    """Its row of ranking.csv."""
    params: dict[str, Any]
    net: dict[str, Any] = field(default_factory=dict)
    """plan.json's `net` (depth, unit, width, num_classes, ...); empty without a trial dir."""
    runs: list[Run] = field(default_factory=list)
    seed_values: dict[str, list[float]] = field(default_factory=dict)
    """val_error, test_error, train_error over the seeds at the configuration's budget."""
    seeds: list[int] = field(default_factory=list)
    """The seed of each of `seed_values`' entries."""

    @property
    def unit(self) -> dict[str, Any]:
        return self.net.get("unit") or _unit_from_params(self.params)

    @property
    def depth(self) -> int | None:
        return self.net.get("depth", self.params.get("depth"))

    @property
    def full_budget(self) -> bool:
        return bool(self.row.get("full_budget", False))

    @property
    def fail(self) -> str:
        value = self.row.get("fail", "")
        return "" if pd.isna(value) else str(value)

    @property
    def comparable(self) -> bool:
        """Trained the full budget, or diverged (a failure, ranked last): the rows any
        comparison across configurations may use."""
        return self.full_budget or self.fail == "diverged"

    def by_seed(self, metric: str = "val_error") -> dict[int, float]:
        """{seed: the metric} at this configuration's budget, race seeds included (NaN kept)."""
        return dict(zip(self.seeds, self.seed_values.get(metric, [])))

    def values(self, metric: str = "val_error") -> list[float]:
        """The metric over the seeds at this configuration's budget (NaN runs left out)."""
        return [v for v in self.seed_values.get(metric, []) if not math.isnan(v)]


@dataclass
class SearchRecord:
    """Everything the report reads, loaded once."""

    paths: SearchPaths
    state: dict[str, Any]
    ranking: pd.DataFrame
    trials: pd.DataFrame
    configurations: list[Configuration]
    budget: int
    race: pd.DataFrame = field(default_factory=pd.DataFrame)
    """race.csv: one row per finalist per round (`search.race`); empty without a race."""

    @property
    def identity(self) -> dict[str, Any]:
        return self.state.get("identity", {})

    @property
    def space(self) -> str:
        return str(self.identity.get("space_source") or self.state.get("space", ""))

    @property
    def builtin(self) -> bool:
        return self.space in BUILTIN_SPACES

    @property
    def scale(self) -> str:
        return str(self.identity.get("scale", ""))

    @property
    def dataset(self) -> str:
        return str(self.identity.get("dataset", ""))

    @property
    def num_classes(self) -> int:
        for config in self.configurations:
            if config.net.get("num_classes"):
                return int(config.net["num_classes"])
        return 10

    def by_key(self) -> dict[str, Configuration]:
        return {c.key: c for c in self.configurations}


def load_search(name: str, results_dir: str | Path = "results") -> SearchRecord:
    paths = SearchPaths(Path(results_dir).expanduser().resolve(), name)
    if not paths.search.is_dir():
        raise ReportError(f"no search {name!r} in {paths.root} ({paths.search} is missing); "
                          "pass the search's --results-dir")
    for required in ("ranking.csv", "trials.csv"):
        if not (paths.search / required).exists():
            raise ReportError(f"search {name!r} has no {required} yet (it ends a search): "
                              f"{paths.search / required}")
    state = json.loads(paths.state.read_text()) if paths.state.exists() else {"name": name}
    ranking, trials = read(paths.search)
    keys = {"configuration_key": str}
    budget = int(state.get("identity", {}).get("recipe", {}).get("epochs") or 0)
    if not budget and len(ranking):
        budget = int(ranking["epochs"].max())
    race = _read_csv(paths.race_rounds, {"key": str})
    runs = pd.concat([trials.assign(stage="search"),
                      _read_csv(paths.race_trials, keys).assign(stage="race")],
                     ignore_index=True)
    configurations = [_configuration(row, runs, paths, budget) for _, row in ranking.iterrows()]
    return SearchRecord(paths, state, ranking, trials, configurations, budget, race)


def _read_csv(path: Path, dtype: dict[str, type]) -> pd.DataFrame:
    return pd.read_csv(path, dtype=dtype) if path.exists() else pd.DataFrame()


def _configuration(row: pd.Series, trials: pd.DataFrame, paths: SearchPaths,
                   budget: int) -> Configuration:
    mine = trials[trials["configuration_key"] == row["configuration_key"]]
    params = {}
    if len(mine):
        params = {k[len("param."):]: _plain(v) for k, v in mine.iloc[0].items()
                  if k.startswith("param.") and not _missing(v)}
    config = Configuration(str(row["configuration_key"]), str(row["configuration"]),
                           int(row["rank"]), row, params)
    reached = int(row.get("epochs", 0) or 0)
    seed_values: dict[str, list[float]] = {"val_error": [], "test_error": [], "train_error": []}
    for _, trial in mine.iterrows():
        directory = _run_dir(paths.work, trial)
        run = _read_run(directory, trial)
        if directory is not None and not config.net:
            plan = directory / PLAN
            if plan.exists():
                config.net = json.loads(plan.read_text()).get("net", {})
        config.runs.append(run)
        if trial["outcome"] != "error" and int(trial["epochs"]) == reached:
            config.seeds.append(int(trial["seed"]))
            for metric in seed_values:
                value = trial.get(metric)
                seed_values[metric].append(math.nan if _missing(value) else float(value))
    config.seed_values = seed_values
    if (mine["stage"] == "race").any():  # race seeds too: the row's statistics over every seed
        config.row = _over_seeds(row, seed_values)
    return config


def _over_seeds(row: pd.Series, seed_values: dict[str, list[float]]) -> pd.Series:
    """A ranking row's mean, median, spread and 95% interval over `seed_values`."""
    row = row.copy()
    for metric, values in seed_values.items():
        series = pd.Series(values, dtype=float)
        row[f"{metric}_mean"], row[f"{metric}_median"] = series.mean(), series.median()
        row[f"{metric}_std"], row[f"{metric}_ci95"] = series.std(), interval95(series)
    row["seeds"] = len(seed_values["val_error"])
    return row


def _run_key(trial: pd.Series) -> str:
    """The seed run's key, its trial directory's name (`0003-s1`, a race's `race-0003-s1`)."""
    key = trial.get("run_key")
    return str(key) if isinstance(key, str) else run_key(int(trial["optuna_trial"]),
                                                         int(trial["seed"]))


def _run_dir(work: Path, trial: pd.Series) -> Path | None:
    directory = work / _run_key(trial)
    return directory if directory.is_dir() else None


def _read_run(directory: Path | None, trial: pd.Series) -> Run:
    curve: list[float] = []
    train_loss: list[float] = []
    propagation: dict[int, dict[str, Any]] = {}
    seconds = 0.0
    if directory is not None:
        metrics = directory / METRICS
        if metrics.exists():
            lines = [json.loads(line) for line in metrics.read_text().splitlines()
                     if line.strip()]
            by_epoch = {int(m["epoch"]): m for m in lines}
            epochs = range(1, max(by_epoch, default=0) + 1)
            curve = [_float(by_epoch.get(e, {}).get("val_error")) for e in epochs]
            train_loss = [_float(by_epoch.get(e, {}).get("train_loss")) for e in epochs]
            # An epoch trained again after a resume is recorded again: the last record counts.
            seconds = sum(m.get("epoch_seconds", 0.0) + m.get("eval_seconds", 0.0)
                          for m in by_epoch.values())
        profile = directory / PROPAGATION
        if profile.exists():
            propagation = {int(k): v for k, v in json.loads(profile.read_text()).items()}
    return Run(directory.name if directory else _run_key(trial), int(trial["seed"]),
               str(trial["outcome"]), int(trial["epochs"]), curve, propagation, train_loss,
               seconds)


def _unit_from_params(params: dict[str, Any]) -> dict[str, Any]:
    """A unit from sampled parameters, when no plan.json is there (values the space never
    samples are the defaults: identity, original, basic)."""
    unit = {"shortcut": params.get("shortcut", "identity"),
            "activation": params.get("activation", "original"),
            "bottleneck": bool(params.get("bottleneck", False))}
    for name in SHORTCUT_PARAMS:
        if name in params:
            unit[name] = params[name]
    if unit.get("branch_scale") == ONE_MINUS_LAMBDA and isinstance(unit.get("lam"), float):
        unit["branch_scale"] = 1.0 - unit["lam"]
    return unit


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _plain(value: Any) -> Any:
    """numpy scalars as Python values; "True"/"False" strings as bools."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, str) and value in ("True", "False"):
        return value == "True"
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value
