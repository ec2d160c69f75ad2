"""Where a simulated search's wall goes (`bench.scale`'s phases), from Tune's own records of
its results (`result.json`: whole-second timestamps) and the driver's span on the same clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .common import figure, note


@dataclass(frozen=True)
class Span:
    """The driver's runs, first start to last end, and when the nodes the search needs were
    first up (None: never), all wall-clock seconds, the clock of Tune's result records."""

    start: float
    end: float
    nodes_needed: int
    nodes_ready: float | None


def trial_results(experiment: Path) -> list[list[dict]]:
    """Each trial's results as Tune recorded them (result.json), a restored trial's included."""
    trials = []
    for path in experiment.glob("*/result.json"):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows:
            trials.append(rows)
    return trials


def wait_per_epoch(trials: list[list[dict]]) -> float:
    """The mean time a trial waited on the driver between two of its epochs, from Tune's own
    records of its results (`tune.wait_s_per_epoch`)."""
    waited = waits = 0
    for rows in trials:
        if len(rows) > 1:
            inside = sum(row["time_this_iter_s"] for row in rows[1:])
            waited += rows[-1]["timestamp"] - rows[0]["timestamp"] - inside
            waits += len(rows) - 1
    return waited / max(waits, 1)


def phases(minimum: float, span: Span, trials: list[list[dict]]) -> None:
    """Where the wall went beyond the minimum, from Tune's results (whole-second timestamps):
    the ramp until the first trial's first epoch began (the autoscaler's nodes and the trials'
    workers starting on this machine's cores); while trials ran, how many slots were held on
    average and how much longer a trial held its slot than its epochs took; the end, from the
    last result to the driver's exit (the report); and the wall from when the nodes the search
    needs were up."""
    if span.nodes_ready is None:
        note(f"{span.nodes_needed} nodes were never up at once")
    else:  # Ray's own bar starts with its cluster up
        ready = max(span.nodes_ready - span.start, 0)
        figure("scale.nodes_ready_s", ready, f"s (driver start to {span.nodes_needed} nodes up)")
        figure("scale.from_nodes_ready_over_min", (span.end - span.start - ready) / minimum)
    if not trials:  # the audit says what became of them
        note("no trial results in Tune's records: no phases")
        return
    starts = [rows[0]["timestamp"] - rows[0]["time_this_iter_s"] for rows in trials]
    ends = [rows[-1]["timestamp"] for rows in trials]
    first, last = min(starts), max(ends)
    held = sum(end - start for start, end in zip(starts, ends))
    inside = sum(row["time_this_iter_s"] for rows in trials for row in rows)
    figure("scale.ramp_s", first - span.start, "s (driver start to the first epoch)")
    figure("scale.running_over_min", (last - first) / minimum,
           "(first epoch's start to last result, over the minimum)")
    figure("scale.slots_held_mean", held / max(last - first, 1), "(trials running, on average)")
    figure("scale.hold_over_epochs", held / max(inside, 1e-9),
           "(a trial's slot time over its epochs')")
    figure("scale.end_s", span.end - last, "s (last result to the driver's exit)")
    figure("scale.after_ramp_over_min", (span.end - first) / minimum,
           "(first epoch's start to the driver's exit, over the minimum)")
