"""bench.cpu_census: a process's CPU time is counted under its kind while the census runs."""

import os
import subprocess
import sys

from bench.cpu_census import CpuCensus, kind_of

# Busy for 1.5 s of CPU; the comment puts "mlflow" in its command line, which sets its kind.
BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass  # mlflow"


def test_a_busy_process_is_counted_under_its_kind():
    census = CpuCensus(period=0.1)
    census.start()
    subprocess.run([sys.executable, "-c", BUSY], check=True, timeout=120)
    seconds = census.stop()
    # Its last tenth of a second may end between two readings; the rest is counted.
    assert 1.2 <= seconds["mlflow"] <= 2.0
    assert census.busy >= seconds["mlflow"]


def test_a_process_is_counted_under_the_kind_it_execs_into():
    """Seen first with its parent's command line (as between a fork and its exec), then
    busy as what it became: the busy seconds count under the new kind."""
    census = CpuCensus(period=0.1)
    census.start()
    becomes = ("import os, sys, time\ntime.sleep(0.5)\n"  # its command line: no "mlflow"
               "os.execv(sys.executable, [sys.executable, '-c', os.environ['BUSY']])")
    subprocess.run([sys.executable, "-c", becomes], check=True, timeout=120,
                   env={**os.environ, "BUSY": BUSY})
    seconds = census.stop()
    assert 1.2 <= seconds["mlflow"] <= 2.0


def test_kinds_by_command_line():
    assert kind_of("python -m bench.scale_driver run ...") == "driver"
    assert kind_of("ray::ImplicitFunc.train") == "trial_workers"
    assert kind_of("ray::DashboardAgent") == "ray_daemons"
    assert kind_of(".venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet") \
        == "ray_daemons"
    assert kind_of(".venv/bin/python .../ray/_private/log_monitor.py --logs-dir=...") \
        == "ray_log_monitors"
    assert kind_of("postgres: writer") == "optuna_db"
    assert kind_of("bash") == "other"
