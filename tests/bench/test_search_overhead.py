"""The search-overhead benchmark: the workers' instrumentation records the trial's phases,
and the slot time is split so that the parts add up."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.common import ROOT
from bench.search_overhead import EVENTS_ENV, actor_timeline, analyse, read_events


def event(name, start, end, key=""):
    return {"event": name, "start": start, "end": end, "key": key, "pid": 1}


def test_slot_time_is_split_into_parts_that_add_up():
    events = [event("run_trial", 10, 50), event("train_epoch", 11, 31),
              event("evaluate", 31, 35), event("measure", 35, 36), event("save_epoch", 36, 37),
              event("report", 37, 40), event("persist", 37, 38),
              event("render_trial_plots", 45, 47), event("build", 10, 10.5),
              event("measure_propagation", 10.5, 11.5), event("measure_propagation", 35, 36)]
    parts = analyse(events, wall=60, concurrency=2)
    assert parts["own"] == 25
    assert parts["checkpointing"] == 2 and parts["report_wait"] == 2
    assert parts["trial_plots"] == 2 and parts["trial_propagation_at_init"] == 1
    assert sum(parts.values()) == pytest.approx(120)


def test_worker_hook_times_a_real_trial(tmp_path):
    script = textwrap.dedent(f"""
        from bench.search_overhead import instrument_worker
        instrument_worker()
        from search import trainable
        from search.trial import RunOptions, load_trial_data
        from spaces import load_space
        plan = load_space("paper-table1", "smoke").plan({{"epochs": 2}}, "smoke")
        data = trainable.load_trial_data(plan.recipe, "digits")
        trainable.run_trial(plan, data, {str(tmp_path / "0003-s0")!r}, None,
                            RunOptions(device="cpu", threads=1))
    """)
    env = {**os.environ, EVENTS_ENV: str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    events = read_events(tmp_path)
    names = [e["event"] for e in events]
    assert names[0] == "process"
    assert names.count("train_epoch") == names.count("save_epoch") == 2
    assert names.count("load_trial_data") == names.count("run_trial") == 1
    run = next(e for e in events if e["event"] == "run_trial")
    assert run["key"] == "0003-s0" and run["end"] > run["start"]
    assert all(run["start"] <= e["start"] <= e["end"] <= run["end"] for e in events
               if e["event"] in ("train_epoch", "evaluate", "save_epoch"))
    json.dumps(events)  # plain data


def test_actor_timeline_splits_the_time_outside_trials():
    events = [{**event("run_trial", 2, 5), "pid": 1}, {**event("run_trial", 6, 9), "pid": 1},
              {**event("run_trial", 3, 10), "pid": 2}]
    assert actor_timeline(events, start=0, end=12) == {
        "to_first_trial": 2 + 3, "between_trials": 1, "after_last_trial": 3 + 2}
