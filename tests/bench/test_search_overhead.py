"""The search-overhead benchmark: the workers' observer records the trial's phases, and the
slot time is split so that the parts add up."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bench.common import ROOT
from bench.search_overhead import EVENTS_ENV, actor_timeline, analyse, read_events
from search.trial import PHASES


def event(name, start, end, key=""):
    return {"event": name, "start": start, "end": end, "key": key, "pid": 1}


def test_slot_time_is_split_into_parts_that_add_up():
    events = [event("data", 8, 10), event("trial", 10, 50), event("records", 10, 10.5),
              event("build", 10.5, 11), event("propagation_at_init", 11, 12),
              event("train", 12, 30), event("val", 30, 33), event("propagation", 33, 34),
              event("test", 34, 35), event("checkpoint", 35, 36), event("report", 37, 40),
              event("persist", 37, 38), event("plots", 45, 47)]
    parts = analyse(events, wall=60, concurrency=2)
    assert parts["own"] == 18 + 3 + 1 + 1
    assert parts["data_loading"] == 2 and parts["trial_records"] == 0.5
    assert parts["checkpointing"] == 2 and parts["report_wait"] == 2
    assert parts["trial_plots"] == 2 and parts["trial_propagation_at_init"] == 1
    assert parts["trial_build"] == 0.5
    assert parts["trial_other"] == 40 - (23 + 0.5 + 0.5 + 1 + 1 + 3 + 2)
    assert sum(parts.values()) == pytest.approx(120)


def test_every_phase_of_a_trial_has_its_own_part():
    """A phase the split does not name would count as trial_other: when the trial layer adds
    one, this fails, and the benchmark decides where it belongs."""
    events = [event("trial", 0, 100)] + [event(name, i, i + 1) for i, name in enumerate(PHASES)]
    assert analyse(events, wall=100, concurrency=1)["trial_other"] == 100 - len(PHASES)


def test_worker_observer_records_a_real_trial(tmp_path):
    # A fresh process, as a Ray worker: the hook installs its observer for the whole process.
    script = textwrap.dedent(f"""
        from bench.search_overhead import instrument_worker
        from search import trainable
        from search.trial import (RunOptions, TrialConfig, TrialContext, load_trial_data,
                                  run_trial)
        from spaces import load_space
        observer = instrument_worker()
        plan = load_space("paper-table1", "smoke").plan({{"epochs": 2}}, "smoke")
        config = TrialConfig(plan, 3, "bench", TrialContext(work_root={str(tmp_path)!r}))
        phases = observer(config)
        with phases("data"):
            data = load_trial_data(plan.recipe, "digits")
        with phases("trial"):
            run_trial(plan, data, config.directory, lambda metrics: None,
                      RunOptions(device="cpu", threads=1), phases=phases)
    """)
    env = {**os.environ, EVENTS_ENV: str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    events = read_events(tmp_path)
    names = [e["event"] for e in events]
    assert names[0] == "process"
    assert set(PHASES) <= set(names)
    assert names.count("train") == names.count("checkpoint") == names.count("report") == 2
    assert names.count("data") == names.count("trial") == 1
    run = next(e for e in events if e["event"] == "trial")
    assert run["end"] > run["start"]
    assert all(e["key"] == "0003-s0" for e in events if e["event"] != "process")
    assert all(run["start"] <= e["start"] <= e["end"] <= run["end"] for e in events
               if e["event"] in PHASES)
    json.dumps(events)  # plain data


def test_actor_timeline_splits_the_time_outside_trials():
    events = [{**event("trial", 2, 5), "pid": 1}, {**event("trial", 6, 9), "pid": 1},
              {**event("trial", 3, 10), "pid": 2}]
    assert actor_timeline(events, start=0, end=12) == {
        "to_first_trial": 2 + 3, "between_trials": 1, "after_last_trial": 3 + 2}


def test_the_driver_timers_find_every_function_they_time():
    """A function the bench times on the driver that was renamed or moved fails here, at once,
    not after a ten-minute search."""
    from bench.common import Timers
    from bench.search_overhead import driver_timers

    with Timers() as timers:
        driver_timers(timers)
        from search import stores

        assert getattr(stores.start_search_run, "__wrapped__", None) is not None
