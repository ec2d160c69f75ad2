"""How much of an exhaustive grid a TPE + ASHA search spends before it finds its winner.

    .venv/bin/python -m bench.search_efficiency            # small scale, CIFAR-10, 40 trials
    .venv/bin/python -m bench.search_efficiency --quick    # SMOKE scale (digits), 40 trials
    .venv/bin/python -m bench.search_efficiency --quick --grid   # and train the grid too

A real search (`search.run`: TPE, ASHA with grace period 1 and reduction factor 2, concurrency
2, one seed) over paper-joint. Every epoch a trial reports reaches MLflow with a timestamp;
replaying them in order, the search has spent E epochs when its eventual winner (rank 1 of the
final ranking) finishes its budget and so is ranked first. The exhaustive grid is the paper's
discrete choices on the same space: the 11 shortcut rows of Table 1 x 5 activation placements
x the scale's depths, each trained for the full budget.

    search_efficiency.ratio     E / the grid's epochs (the grid's size x the budget)

With `--grid` the grid itself is trained too (in this process, one trial after another), and
the figures say where the search's winner would rank in it. `--quick` runs the SMOKE scale
(ResNet-8/14 on 8x8 digits, 3 epochs): a grid there is 110 configurations x 3 epochs; the
`small` scale's is 165 x 10 and its search takes hours on two CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import default_dataset, figure, header, note

TRIALS = 40


def grid_params(scale: str) -> list[dict[str, Any]]:
    """Table 1's shortcut rows (paper-table1's anchors) x every activation placement x the
    scale's depths: the paper's discrete choices over paper-joint."""
    from residual import ACTIVATIONS
    from spaces import get_scale, load_space

    rows = load_space("paper-table1", scale).anchors
    return [{**row, "activation": activation, "depth": depth}
            for row in rows for activation in ACTIVATIONS
            for depth in get_scale(scale).depth_choices]


def epoch_events(result) -> list[tuple[int, int, str, int]]:
    """(timestamp ms, step, configuration key, epoch) of every epoch MLflow received."""
    from search.tracking.sender import client

    mlflow_client = client(result.tracking_uri)
    events = []
    for _, row in result.trials.iterrows():
        for metric in mlflow_client.get_metric_history(row["mlflow_run_id"], "epoch"):
            events.append((metric.timestamp, metric.step, row["configuration_key"],
                           int(metric.value)))
    return sorted(events)


def epochs_until_winner(events: list[tuple[int, int, str, int]], winner: str,
                        budget: int) -> int:
    """Epochs spent, all trials together, until `winner` reported its budget's last epoch."""
    for spent, (_, _, key, epoch) in enumerate(events, start=1):
        if key == winner and epoch >= budget:
            return spent
    return len(events)


def train_grid(params: list[dict[str, Any]], scale: str, dataset: str,
               epochs: int | None) -> list[tuple[float, dict[str, Any]]]:
    """Every grid configuration trained in this process: (final validation error, params)."""
    from search.trial import RunOptions, load_trial_data, run_trial
    from spaces import load_space

    space = load_space("paper-joint", scale)
    overrides = {"epochs": epochs} if epochs else {}
    data = load_trial_data(space.plan({**params[0], **overrides}, scale).recipe, dataset)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        for i, p in enumerate(params):
            plan = space.plan({**p, **overrides}, scale)
            result = run_trial(plan, data, Path(tmp) / str(i), None,
                               RunOptions(device="cpu", threads=1))
            out.append((result.metrics["val_error"], p))
    return sorted(out, key=lambda item: item[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.search_efficiency",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the SMOKE scale, on digits")
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--scale", help="default: small (quick: smoke)")
    parser.add_argument("--dataset", help="default: CIFAR-10 (quick: digits)")
    parser.add_argument("--epochs", type=int, help="override the scale's budget")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", action="store_true", help="also train the whole grid")
    args = parser.parse_args(argv)
    header("bench.search_efficiency", args.quick, argv)
    from search import SearchConfig, run
    from spaces import get_scale

    scale = args.scale or ("smoke" if args.quick else "small")
    dataset = args.dataset or ("digits" if args.quick else default_dataset())
    if scale == "smoke":
        note("SMOKE scale: ResNet-8/14 on 8x8 digits, a stand-in for the small scale's search")
    budget = args.epochs or get_scale(scale).recipe.epochs
    grid = grid_params(scale)
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp:
        started = time.time()
        result = run("paper-joint", SearchConfig(
            name="bench", scale=scale, dataset=dataset, trials=args.trials, sampler="tpe",
            scheduler="asha", grace_period=1, reduction_factor=2, epochs=args.epochs,
            concurrency=args.concurrency, seed=args.seed, results_dir=tmp, progress=False))
        wall = time.time() - started
        events = epoch_events(result)
    top = result.ranking.iloc[0]
    spent = epochs_until_winner(events, top["configuration_key"], budget)
    note(f"{len(result.trials)} trials, {len(events)} epochs in {wall:.0f} s; winner "
         f"{top['configuration']} at {100 * top['val_error_mean']:.2f}% validation error")
    figure("search_efficiency.ratio", spent / (len(grid) * budget),
           "(epochs until the winner ranks first / the grid's epochs)")
    figure("search_efficiency.epochs_until_winner", spent, "epochs")
    figure("search_efficiency.search_epochs", len(events), "epochs")
    figure("search_efficiency.grid_epochs", len(grid) * budget, "epochs")
    figure("search_efficiency.winner_val_error", float(top["val_error_mean"]), "")
    figure("search_efficiency.search_wall_seconds", wall, "s")
    if args.grid:
        trained = train_grid(grid, scale, dataset, args.epochs)
        errors = [error for error, _ in trained]
        figure("search_efficiency.grid_best_val_error", errors[0], "")
        rank = 1 + sum(error < float(top["val_error_mean"]) for error in errors)
        figure("search_efficiency.winner_rank_in_grid", rank, f"of {len(errors)}")
        note(f"the grid's best: {trained[0][1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
