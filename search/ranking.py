"""The ranked table that ends a search: one row per configuration, mean and spread over seeds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

NET_KEYS = ("shortcut", "lam", "branch_scale", "gate_bias", "dropout_p", "dropout_rescale",
            "activation", "bottleneck", "depth", "width", "downsample")


def label(params: dict[str, Any], net_name: str) -> str:
    """A configuration's short name: the network's name, plus any non-network parameter,
    e.g. `resnet56-exclusive_gate-bg-6-original [lr=0.05]`."""
    rest = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items() if k not in NET_KEYS)
    return f"{net_name} [{rest}]" if rest else net_name


def trials_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per Ray trial: configuration, seed, outcome and final metrics."""
    return pd.DataFrame(records)


def rank(trials: pd.DataFrame) -> pd.DataFrame:
    """Configurations ranked by mean validation error over their seeds (lower is better).

    A trial stopped early by the scheduler counts with the error it had when stopped; a
    diverged one with the penalty; an errored one not at all (shown in `outcomes`).
    """
    rows = []
    for number, group in trials.groupby("optuna_trial", sort=False):
        valid = group[group["outcome"] != "error"]
        row = {"optuna_trial": int(number), "configuration": group["configuration"].iloc[0],
               "seeds": len(group),
               "outcomes": ", ".join(f"{o} x{n}" if n > 1 else o
                                     for o, n in group["outcome"].value_counts().items())}
        for metric in ("val_error", "test_error", "train_error"):
            values = valid[metric].dropna() if metric in valid else pd.Series(dtype=float)
            row[f"{metric}_mean"] = values.mean() if len(values) else math.nan
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        row["epochs"] = int(group["epochs"].max()) if "epochs" in group else 0
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values(["val_error_mean", "optuna_trial"], na_position="last")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def _percent(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{100 * mean:.2f}" + ("" if math.isnan(std) else f" ± {100 * std:.2f}")


def to_markdown(ranking: pd.DataFrame, title: str = "") -> str:
    header = ["rank", "configuration", "val error %", "test error %", "train error %",
              "seeds", "outcomes", "optuna trial"]
    lines = [f"## {title}", ""] if title else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, r in ranking.iterrows():
        cells = [str(r["rank"]), r["configuration"].replace("|", "/"),
                 _percent(r["val_error_mean"], r["val_error_std"]),
                 _percent(r["test_error_mean"], r["test_error_std"]),
                 _percent(r["train_error_mean"], r["train_error_std"]),
                 str(r["seeds"]), r["outcomes"], str(r["optuna_trial"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_text(ranking: pd.DataFrame, limit: int = 20) -> str:
    """The table for a terminal: aligned columns, best first."""
    rows = [("#", "configuration", "val err %", "test err %", "seeds", "outcomes")]
    for _, r in ranking.head(limit).iterrows():
        rows.append((str(r["rank"]), r["configuration"],
                     _percent(r["val_error_mean"], r["val_error_std"]),
                     _percent(r["test_error_mean"], r["test_error_std"]), str(r["seeds"]),
                     r["outcomes"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)
    if len(ranking) > limit:
        text += f"\n... {len(ranking) - limit} more in ranking.csv"
    return text


def save(ranking: pd.DataFrame, trials: pd.DataFrame, directory: Path, title: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "ranking.csv", directory / "ranking.md", directory / "trials.csv"]
    ranking.to_csv(paths[0], index=False)
    paths[1].write_text(to_markdown(ranking, title))
    trials.to_csv(paths[2], index=False)
    return paths
