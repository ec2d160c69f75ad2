"""Was the search procedure sound? Early stopping replayed on the recorded learning curves,
and a zero-cost screen from the propagation at initialisation.

`replay_asha` runs successive halving over full learning curves (validation error per epoch,
lower is better), as if the configurations had been trained under it:

- asynchronous (ASHA, Li et al. 2020, as Ray Tune's `AsyncHyperBandScheduler` with one bracket):
  rungs at grace_period * reduction_factor^k epochs below max_t. When a configuration reaches a
  rung, it is stopped if its error is worse than the 1/reduction_factor quantile of the errors
  recorded at that rung so far (the first to arrive always continues), then its own error is
  recorded. Configurations start in the order given, `concurrency` at a time (None: all at
  once), one epoch per time step; within a step they report in that order.
- synchronous successive halving: at each rung, every survivor is ranked by its error there and
  the best floor(n / reduction_factor) (at least one) go on.

The eventual winner is the configuration with the lowest error at max_t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from search.config import rungs

from .load import SearchRecord


@dataclass(frozen=True)
class ReplayResult:
    grace_period: int
    reduction_factor: float
    max_t: int
    rungs: tuple[int, ...]
    asynchronous: dict[str, int | None]
    """Per configuration: the epoch at which ASHA stops it, None if it trains to max_t."""
    synchronous: dict[str, int | None]
    """The same under synchronous successive halving."""
    winner: str | None
    """The configuration with the lowest error at max_t."""

    @property
    def stopped_async(self) -> list[str]:
        return [k for k, v in self.asynchronous.items() if v is not None]

    @property
    def stopped_sync(self) -> list[str]:
        return [k for k, v in self.synchronous.items() if v is not None]

    @property
    def winner_stopped_async(self) -> bool:
        return self.winner is not None and self.asynchronous.get(self.winner) is not None

    @property
    def winner_stopped_sync(self) -> bool:
        return self.winner is not None and self.synchronous.get(self.winner) is not None

    def epochs(self, mode: str = "async") -> int:
        """Epochs trained in all under the scheduler (max_t for a configuration it keeps)."""
        stops = self.asynchronous if mode == "async" else self.synchronous
        return sum(self.max_t if v is None else v for v in stops.values())

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"configuration": k, "ASHA stops at epoch": self.asynchronous[k],
                              "sync SH stops at epoch": self.synchronous[k],
                              "winner": k == self.winner} for k in self.asynchronous])


def replay_asha(curves: dict[str, list[float]], grace_period: int = 1,
                reduction_factor: float = 2, max_t: int | None = None,
                concurrency: int | None = None) -> ReplayResult:
    """Which configurations ASHA and synchronous successive halving would have stopped, and
    where, given each one's full learning curve (`curves[name][e - 1]`: error at epoch e)."""
    if max_t is None:
        max_t = min((len(c) for c in curves.values()), default=0)
    curves = {k: list(v) for k, v in curves.items()}
    short = [k for k, v in curves.items() if len(v) < max_t]
    if short:
        raise ValueError(f"curves shorter than max_t={max_t}: {short[:3]}; pass the curves "
                         "of configurations that trained the whole budget")
    marks = rungs(grace_period, reduction_factor, max_t)
    final = {k: _value(v[max_t - 1]) for k, v in curves.items()}
    finite = {k: v for k, v in final.items() if not math.isinf(v)}
    winner = min(finite, key=finite.get) if finite else None
    return ReplayResult(grace_period, reduction_factor, max_t, marks,
                        _asynchronous(curves, marks, reduction_factor, max_t, concurrency),
                        _synchronous(curves, marks, reduction_factor), winner)


def _value(v: float) -> float:
    """A missing (NaN) error ranks worst."""
    return math.inf if v is None or math.isnan(v) else float(v)


def _asynchronous(curves: dict[str, list[float]], marks: tuple[int, ...], rf: float,
                  max_t: int, concurrency: int | None) -> dict[str, int | None]:
    names = list(curves)
    slots = len(names) if concurrency is None else max(1, int(concurrency))
    recorded: dict[int, list[float]] = {m: [] for m in marks}
    stopped: dict[str, int | None] = {}
    running: dict[str, int] = {}  # name -> epochs done
    waiting = list(names)
    while waiting or running:
        while waiting and len(running) < slots:
            running[waiting.pop(0)] = 0
        for name in list(running):
            epoch = running[name] + 1
            running[name] = epoch
            value = _value(curves[name][epoch - 1])
            if epoch in recorded:
                seen = recorded[epoch]
                if seen:  # the first to reach a rung always continues
                    finite = [v for v in seen if not math.isinf(v)]
                    cutoff = np.percentile(finite, 100 / rf) if finite else math.inf
                    if value > cutoff:
                        stopped[name] = epoch
                seen.append(value)
            if name in stopped or epoch >= max_t:
                stopped.setdefault(name, None)
                del running[name]
    return {name: stopped[name] for name in names}


def _synchronous(curves: dict[str, list[float]], marks: tuple[int, ...],
                 rf: float) -> dict[str, int | None]:
    alive = list(curves)
    stopped: dict[str, int | None] = dict.fromkeys(curves)
    for mark in marks:
        keep = max(1, int(len(alive) // rf))
        order = sorted(alive, key=lambda k: _value(curves[k][mark - 1]))  # stable: given order
        for name in order[keep:]:
            stopped[name] = mark
        alive = order[:keep]
    return stopped


def curves_from_record(record: SearchRecord) -> dict[str, list[float]]:
    """Per configuration that trained the whole budget, the mean over its full-budget seeds
    of the validation error at each epoch (the value the sampler is told), in the order the
    search ran them (Optuna trial number)."""
    out: dict[str, tuple[int, list[float]]] = {}
    for config in record.configurations:
        if not config.full_budget:
            continue
        full = [r.curve[:record.budget] for r in config.runs
                if r.outcome != "error" and len(r.curve) >= record.budget]
        if full:
            order = int(config.row.get("optuna_trial", config.rank))
            # NaN at the epochs the search did not validate (`--validate-every`).
            out[config.label] = (order, list(pd.DataFrame(full, dtype=float).mean(axis=0)))
    return {k: v for k, (_, v) in sorted(out.items(), key=lambda item: item[1][0])}


def measured_epochs(curves: dict[str, list[float]]) -> set[int]:
    """The epochs at which some configuration's error was measured: a search validates every
    trial at the same epochs (ASHA's rungs, the last, every `validate_every`)."""
    return {epoch for curve in curves.values()
            for epoch, value in enumerate(curve, start=1) if math.isfinite(_value(value))}


def replayable(curves: dict[str, list[float]], grace_period: int, reduction_factor: float,
               max_t: int) -> bool:
    """Whether every rung of that scheduler falls on a measured epoch (an unmeasured one would
    rank every configuration worst there)."""
    return set(rungs(grace_period, reduction_factor, max_t)) <= measured_epochs(curves)


def grace_table(curves: dict[str, list[float]], reduction_factor: float = 2,
                max_t: int | None = None, graces: list[int] | None = None,
                concurrency: int | None = None) -> pd.DataFrame:
    """One row per grace period whose rungs were all measured: rungs, configurations each
    scheduler stops, whether it keeps the winner, and the share of the full budget it
    trains."""
    if max_t is None:
        max_t = min((len(c) for c in curves.values()), default=0)
    graces = graces or list(range(1, max_t))
    rows = []
    total = max(1, len(curves) * max_t)
    for grace in graces:
        if grace >= max_t or not replayable(curves, grace, reduction_factor, max_t):
            continue
        r = replay_asha(curves, grace, reduction_factor, max_t, concurrency)
        rows.append({"grace period": grace, "rungs": ", ".join(map(str, r.rungs)),
                     "ASHA stops": len(r.stopped_async),
                     "ASHA keeps winner": "no" if r.winner_stopped_async else "yes",
                     "ASHA epochs %": 100 * r.epochs("async") / total,
                     "sync SH stops": len(r.stopped_sync),
                     "sync SH keeps winner": "no" if r.winner_stopped_sync else "yes",
                     "sync SH epochs %": 100 * r.epochs("sync") / total})
    return pd.DataFrame(rows)


def screen(propagation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A zero-cost screen: rules on the propagation at initialisation alone that predict the
    ranking's fail label, with their precision and recall against the measured labels.

    - a priori: the first unit's direct-path share below half that of the identity-shortcut
      configuration with the same placement (more than half of Eq. 5's direct path lost);
    - fitted (in-sample, optimistic): the threshold on the first unit's share that maximises
      F1 on this search's own labels;
    - fitted on |log(||dE/dx_0|| / ||dE/dx_L||)| (vanishing or exploding gradients).

    Returns (rules, per-configuration features and labels).
    """
    if propagation.empty:
        return pd.DataFrame(), pd.DataFrame()
    data = propagation[["rank", "configuration", "fail", "measured init", "relative init",
                        "grad first/last init"]].copy()
    data["measured fail"] = data["fail"].astype(bool)
    log_grad = np.abs(np.log(data["grad first/last init"].clip(lower=1e-30)))
    rules = [_rule("a priori: share relative to identity < 0.5", data["relative init"] < 0.5,
                   data["measured fail"], 0.5)]
    for name, feature, low in (("fitted: share of unit 0 < t", data["measured init"], True),
                               ("fitted: |log grad first/last| > t", log_grad, False)):
        rules.append(_fit(name, feature, data["measured fail"], low))
    data["a priori predicts fail"] = data["relative init"] < 0.5
    return pd.DataFrame(rules), data.drop(columns="fail")


def _rule(name: str, predicted: pd.Series, actual: pd.Series, threshold: float) -> dict:
    predicted = predicted.fillna(False).astype(bool)
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    return {"rule": name, "threshold": threshold, "predicted fail": int(predicted.sum()),
            "measured fail": int(actual.sum()), "true positives": tp,
            "precision": tp / (tp + fp) if tp + fp else math.nan,
            "recall": tp / (tp + fn) if tp + fn else math.nan, "configurations": len(actual)}


def _fit(name: str, feature: pd.Series, actual: pd.Series, low: bool) -> dict:
    best, best_f1 = None, -1.0
    for t in sorted(set(feature.dropna())):
        # A threshold between observed values: just above t (low) or just below it (high).
        predicted = feature <= t if low else feature >= t
        row = _rule(name, predicted, actual, float(t))
        p, r = row["precision"], row["recall"]
        f1 = 0.0 if math.isnan(p) or math.isnan(r) or p + r == 0 else 2 * p * r / (p + r)
        if f1 > best_f1:
            best, best_f1 = row, f1
    if best is None:
        return _rule(name, pd.Series(False, index=actual.index), actual, math.nan)
    best["rule"] = name.replace(" t", f" {best['threshold']:.3g}").replace(
        "< ", "<= ").replace("> ", ">= ")
    return best
