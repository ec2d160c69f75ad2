"""An interrupted search (driver killed) resumes: nothing lost, nothing run twice."""

import contextlib
import json
import os
import random
import signal
import subprocess
import time

from optuna.trial import TrialState

ARGS = ["run", "paper-table2", "--scale", "smoke", "--trials", 6, "--concurrency", 2,
        "--epochs", 6, "--scheduler", "none", "--name", "resumed"]


def _kill_group(pid: int) -> None:
    """SIGKILL what is left of a driver's process group: nothing, if the driver was killed
    before it started Ray."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def test_killed_driver_resumes_without_repeating_or_losing_anything(
        tmp_path, cli, read_until, mlflow_runs, study, one_truth):
    driver = cli(*ARGS, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 start_new_session=True)

    def finished(lines):
        return [line.split()[2] for line in lines if "] ok " in line]  # e.g. "#0/s0"

    try:
        finished_first = finished(read_until(driver, lambda lines: len(finished(lines)) == 2))
        assert len(finished_first) == 2, "the first run never finished two trials"
        driver.send_signal(signal.SIGKILL)  # the driver only: its trials are mid-epoch
        driver.wait()
    finally:
        time.sleep(1)
        _kill_group(driver.pid)  # then the Ray processes it left behind

    results = tmp_path / "results"
    work = results / "searches" / "resumed" / "trials"
    finished_keys = [f"{int(name[1:].split('/')[0]):04d}-s0" for name in finished_first]
    trained = {key: (work / key / "checkpoint.pt").stat().st_mtime_ns for key in finished_keys}

    # Twice more, at random points of the resumed search: killed, then run again.
    delays = [random.uniform(2, 10) for _ in range(2)]
    for delay in delays:
        driver = cli(*ARGS, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
        time.sleep(delay)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        time.sleep(1)
        _kill_group(driver.pid)

    resumed = cli(*ARGS, cwd=tmp_path)
    assert resumed.returncode == 0, (delays, resumed.stderr[-3000:])
    for key, mtime in trained.items():  # finished before the kill: not trained again
        assert (work / key / "checkpoint.pt").stat().st_mtime_ns == mtime, key

    client, parents, children = mlflow_runs(results)
    assert len(parents) == 1
    keys = [r.data.tags["run_key"] for r in children]
    assert sorted(keys) == [f"{n:04d}-s0" for n in range(6)]  # one run each, none twice
    for run_ in children:
        assert run_.info.status == "FINISHED" and run_.data.tags["outcome"] == "ok"
        steps = [m.step for m in client.get_metric_history(run_.info.run_id, "train/loss")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6]  # no epoch missing, none logged twice

    trials = [t for t in study(results, "resumed").trials if t.state != TrialState.WAITING]
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert [t.params["activation"] for t in trials] == [
        "original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact",
        "original"]  # the anchors, in order, each once

    for key in keys:  # each trial's own record: epochs 1..6, each once
        lines = work / key / "metrics.jsonl"
        epochs = [json.loads(line)["epoch"] for line in lines.read_text().splitlines()]
        assert epochs == [1, 2, 3, 4, 5, 6]

    one_truth(results, "resumed", 6)

    # A name holds one search: re-running it differently is refused, and changes nothing.
    changed = cli(*ARGS, "--sampler", "random", cwd=tmp_path)
    assert changed.returncode == 2
    assert "was started with sampler='tpe', not 'random'" in changed.stderr
    assert len(mlflow_runs(results)[2]) == 6
