"""The race after a search (`--race`): the finalists' further seeds, one round at a time, as
runs of the same Optuna trials; cut off by Ctrl-C, the same command resumes it."""

import os
import signal
import subprocess

import pandas as pd

ARGS = ["run", "paper-table1", "--scale", "smoke", "--trials", 2, "--concurrency", 2,
        "--epochs", 3, "--scheduler", "none", "--race", 2, "--race-seeds", 3,
        "--name", "raced"]


def test_a_race_cut_off_resumes_and_runs_each_finalist_seed_once(
        tmp_path, cli, read_until, mlflow_runs, one_truth):
    driver = cli(*ARGS, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                 start_new_session=True)
    try:
        seen = read_until(driver, lambda lines: lines[-1].startswith("race round 1 of"))
        seen += read_until(driver, lambda lines: "] ok " in lines[-1])
        assert "] ok " in seen[-1], "".join(seen)[-3000:]
        os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C during the race's first round
        out = "".join(seen) + driver.communicate(timeout=300)[0]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 3, out[-3000:]
    # Cut off within the round's fit, or caught as its trials ended: no round after it.
    assert ("race run(s) ended in error or did not end" in out
            or "the race was interrupted (Ctrl-C) after round 1" in out), out[-3000:]

    resumed = cli(*ARGS, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = tmp_path / "results"
    search = results / "searches" / "raced"
    rounds = pd.read_csv(search / "race.csv", dtype={"key": str})
    ranking = pd.read_csv(search / "ranking.csv")
    finalists = [int(n) for n in ranking[ranking["full_budget"]]["optuna_trial"].head(2)]
    first = rounds[rounds["round"] == 1]
    assert sorted(first["key"].astype(int)) == sorted(finalists)
    assert set(first["seeds"]) == {2} and (first["test"].iloc[1:] == "paired t").all()
    assert first.iloc[0]["status"] == "best"
    # Who ran each seed: every finalist still in the race, once each.
    expected = {f"race-{int(k):04d}-s{seed}" for seed, table in
                zip(rounds["new_seed"], [rounds[rounds["new_seed"] == s]
                                         for s in rounds["new_seed"]])
                for k in table["key"]}
    client, parents, children = mlflow_runs(results)
    raced = [r for r in children if r.data.tags["stage"] == "race"]
    keys = [r.data.tags["run_key"] for r in raced]
    assert len(keys) == len(set(keys)) and set(keys) == expected, (keys, expected)
    search_params = {r.data.tags["optuna_trial"]: r.data.tags["params"] for r in children
                     if r.data.tags["stage"] == "search"}
    for run_ in raced:  # a further seed of the same configuration, to the full budget
        assert run_.data.tags["outcome"] == "ok" and run_.info.status == "FINISHED"
        assert run_.data.tags["params"] == search_params[run_.data.tags["optuna_trial"]]
        assert run_.data.metrics["epoch"] == 3
    race_trials = pd.read_csv(search / "race_trials.csv")
    assert sorted(race_trials["run_key"]) == sorted(expected)
    one_truth(results, "raced", 3)
    report = (search / "report.md").read_text()
    assert "## Race" in report and "paired t" in report and "Bonferroni" in report
    if rounds["new_seed"].max() == 2:  # the verdict reads the race's seeds beside the search's
        assert "paired t over 3 seeds" in report

    again = cli(*ARGS, cwd=tmp_path)
    assert again.returncode == 0 and "has finished before" in again.stdout, again.stdout[-2000:]
