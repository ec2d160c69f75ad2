"""Which parameters decided the objective, in a space with conditional axes.

A conditional parameter (a gate's b_g) exists only on some trials; importance tools that fill
the gaps or drop those trials mix branches. Here every parameter is measured where it exists:

- a top-level axis (set on every trial) over all trials;
- a conditional parameter within its branch: the trials where it is set, which is where a
  top-level axis takes certain values (gate_bias: shortcut in {exclusive_gate, shortcut_gate}).

The method, named in every row: one-way ANOVA eta-squared, the share of the objective's variance
between the parameter's values (SS_between / SS_total); a numeric parameter with more than six
distinct values is grouped into quartile bins first. Numeric parameters also get Spearman's rank
correlation, which sees a monotone effect whatever the bins. With few trials per value eta-squared
runs high by chance: read it beside the trial count.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .load import SearchRecord

OBJECTIVE = "objective"
MAX_LEVELS = 6
"""A numeric parameter with more distinct values than this is binned into quartiles."""
PENALTY = 1.0
"""What the sampler is told for a diverged configuration (`search.trial.PENALTY_ERROR`)."""


def study_frame(study: Any) -> pd.DataFrame:
    """One row per finished configuration of an Optuna study: its parameters (the
    `params` user attribute where set, which holds an anchor's extras too) and `objective`.
    Repeats (`duplicate_of`) and trials without a value are left out."""
    import optuna

    rows = []
    for trial in study.trials:
        if trial.user_attrs.get("duplicate_of") is not None:
            continue
        if trial.state != optuna.trial.TrialState.COMPLETE or trial.value is None:
            continue
        params = trial.user_attrs.get("params") or trial.params
        rows.append({**params, OBJECTIVE: float(trial.value)})
    return pd.DataFrame(rows)


def record_frame(record: SearchRecord) -> pd.DataFrame:
    """The same from the ranking, without the study: comparable configurations, their
    sampled parameters and mean validation error (a diverged one at the sampler's penalty)."""
    rows = []
    for config in record.configurations:
        if not config.comparable:
            continue
        value = config.row.get("val_error_mean")
        value = PENALTY if value is None or math.isnan(value) else float(value)
        rows.append({**config.params, OBJECTIVE: value})
    return pd.DataFrame(rows)


def _categorical(values: pd.Series) -> bool:
    return not all(isinstance(v, (int, float, np.integer, np.floating))
                   and not isinstance(v, (bool, np.bool_)) for v in values)


def _groups(values: pd.Series) -> tuple[pd.Series, str]:
    if _categorical(values):
        return values.map(str), "one-way ANOVA eta² over its values"
    numeric = values.astype(float)
    if numeric.nunique() <= MAX_LEVELS:
        return numeric, "one-way ANOVA eta² over its values"
    bins = pd.qcut(numeric, 4, duplicates="drop")
    return bins.astype(str), "one-way ANOVA eta² over quartile bins"


def eta_squared(objective: pd.Series, groups: pd.Series) -> tuple[float, float]:
    """(eta², F-test p-value) of `objective` between the levels of `groups`."""
    y = objective.astype(float)
    total = float(((y - y.mean()) ** 2).sum())
    levels = [y[groups == g] for g in groups.unique()]
    if total == 0 or len(levels) < 2:
        return math.nan, math.nan
    between = sum(len(v) * (v.mean() - y.mean()) ** 2 for v in levels)
    p = math.nan
    if all(len(v) > 0 for v in levels) and len(y) > len(levels):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(stats.f_oneway(*levels).pvalue)
    return float(between / total), p


def branches(frame: pd.DataFrame) -> dict[str, tuple[str, tuple] | None]:
    """For every conditional parameter: the top-level axis and values where it is set
    (None if no top-level axis explains where it exists)."""
    params = [c for c in frame.columns if c != OBJECTIVE]
    top = [c for c in params if frame[c].notna().all()]
    out: dict[str, tuple[str, tuple] | None] = {}
    for name in params:
        if name in top:
            continue
        present = frame[name].notna()
        found = None
        for axis in top:
            values = tuple(sorted(set(frame.loc[present, axis].map(str))))
            if (frame[axis].map(str).isin(values) == present).all() and (
                    found is None or len(values) < len(found[1])):
                found = (axis, values)
        out[name] = found
    return out


def _scope(branch: tuple[str, tuple] | None) -> str:
    if branch is None:
        return "trials where it is set"
    axis, values = branch
    return f"{axis} = {values[0]}" if len(values) == 1 else \
        f"{axis} in {{{', '.join(values)}}}"


def parameter_importance(frame: pd.DataFrame, objective: str = OBJECTIVE) -> pd.DataFrame:
    """One row per parameter (top-level axes first, then each conditional parameter within its
    branch), most important first: eta², its p-value, Spearman's rho for numeric ones."""
    if frame.empty or objective not in frame:
        return pd.DataFrame()
    frame = frame.rename(columns={objective: OBJECTIVE})
    frame = frame[frame[OBJECTIVE].notna()]
    conditional = branches(frame)
    rows = []
    for name in [c for c in frame.columns if c != OBJECTIVE]:
        scope_rows = frame[frame[name].notna()]
        values = scope_rows[name]
        if values.map(str).nunique() < 2 or len(scope_rows) < 3:
            continue
        groups, method = _groups(values)
        eta2, p = eta_squared(scope_rows[OBJECTIVE], groups)
        rho = math.nan
        if not _categorical(values):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rho = float(stats.spearmanr(values.astype(float), scope_rows[OBJECTIVE]).statistic)
        is_top = name not in conditional
        rows.append({"parameter": name, "level": "top-level" if is_top else "conditional",
                     "scope": "all trials" if is_top else _scope(conditional[name]),
                     "trials": len(scope_rows), "values": int(values.map(str).nunique()),
                     "method": method, "eta²": eta2, "p-value": p, "spearman rho": rho})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["_top"] = table["level"] != "top-level"
    table = table.sort_values(["_top", "scope", "eta²"], ascending=[True, True, False],
                              na_position="last")
    return table.drop(columns="_top").reset_index(drop=True)


def load_study_frame(record: SearchRecord, storage: str | None) -> tuple[pd.DataFrame, str]:
    """The study's frame if the study can be read, else the ranking's; and which it is. The
    study is where `storage` says, else where the search kept it, else in the results dir."""
    url = storage or record.state.get("optuna_storage") or record.paths.optuna_uri
    if not storage and _absent(url):  # the records moved (committed, copied): the results dir's
        url = record.paths.optuna_uri
    if _absent(url):
        return record_frame(record), "ranking.csv (no Optuna study found)"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=record.paths.name, storage=url)
        frame = study_frame(study)
        if not frame.empty:
            return frame, f"the Optuna study {record.paths.name!r} ({_safe(url)})"
    except Exception as error:  # a missing or unreadable study: fall back to the ranking
        why = type(error).__name__
        return record_frame(record), f"ranking.csv (Optuna study unreadable: {why})"
    return record_frame(record), "ranking.csv"


def _absent(url: str) -> bool:
    return url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists()


def _safe(url: str) -> str:
    """A storage URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
