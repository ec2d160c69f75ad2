"""Ctrl-C on a running search: it stops, says how to resume, and the same command finishes it."""

import json
import os
import re
import signal
import subprocess

ARGS = ["run", "paper-table2", "--scale", "smoke", "--trials", 4, "--concurrency", 2,
        "--epochs", 6, "--scheduler", "none", "--name", "ctrl-c"]


def test_interrupted_search_is_not_finished_and_the_same_command_completes_it(
        tmp_path, cli, read_until, mlflow_runs, one_truth):
    driver = cli(*ARGS, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 start_new_session=True)
    try:
        seen = read_until(driver, lambda lines: "] ok " in lines[-1])
        assert seen and "] ok " in seen[-1], "".join(seen)[-3000:]
        os.killpg(driver.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        out = "".join(seen) + driver.communicate(timeout=300)[0]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)

    assert driver.returncode == 3, out[-3000:]  # not finished: a script must not go on
    last = out.strip().splitlines()[-1]  # the last thing the interrupted command says
    assert re.match(r"search ctrl-c is not finished: [12] trial\(s\) did not end \(interrupted\)",
                    last), out[-3000:]
    assert last.endswith("run the same command again to resume it (trials continue from their "
                         "last checkpoints)"), out[-3000:]
    state = tmp_path / "results" / "searches" / "ctrl-c" / "search.json"
    assert json.loads(state.read_text())["finished"] is False

    resumed = cli(*ARGS, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "already finished" not in resumed.stdout
    assert json.loads(state.read_text())["finished"] is True
    client, parents, children = mlflow_runs(tmp_path / "results")
    assert len(parents) == 1 and len(children) == 4
    for run_ in children:
        assert run_.data.tags["outcome"] == "ok"
        steps = [m.step for m in client.get_metric_history(run_.info.run_id, "train/loss")]
        assert sorted(steps) == [1, 2, 3, 4, 5, 6]
    one_truth(tmp_path / "results", "ctrl-c", 6)
