"""A simulated search on a real local Ray, with ASHA, the Optuna searcher and MLflow: labelled
simulated everywhere, the three systems agree, its workers never load torch, the same command
shows it again without running anything, and it never mixes with a measured search."""

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from search import SearchConfig
from search.config import SearchConfigError
from search.runner import prepare

TRIALS = 16


class WorkerWatch(threading.Thread):
    """Looks at the Ray trial workers of experiment `name` every quarter second while the
    search runs (Linux /proc): whether torch's libraries are mapped into them, their memory."""

    def __init__(self, name: str):
        super().__init__(daemon=True)
        self.name, self.stop = name, threading.Event()
        self.workers: dict[int, dict] = {}

    def run(self) -> None:
        while not self.stop.wait(0.25):
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    self._look(entry)

    def _look(self, proc: Path) -> None:
        try:
            if not (proc / "cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                return
            if f"/{self.name}/" not in os.readlink(proc / "cwd"):
                return
            maps = (proc / "maps").read_text()
            status = (proc / "status").read_text()
        except OSError:  # gone, or not ours to read
            return
        rss = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:"))
        seen = self.workers.setdefault(int(proc.name), {"torch": False, "rss_kb": 0})
        seen["torch"] |= "/torch/" in maps or "libtorch" in maps
        seen["rss_kb"] = max(seen["rss_kb"], rss)


@pytest.mark.skipif(sys.platform != "linux", reason="reads the workers' /proc entries")
def test_a_simulated_search_is_real_machinery_labelled_simulated(
        tmp_path, cli, mlflow_runs, study, one_truth):
    name = f"simulated-{os.getpid()}"
    measured_args = ["run", "paper-joint", "--trials", TRIALS, "--cpus-per-trial", "0.25",
                     "--name", name]
    args = [*measured_args, "--simulate", "--simulate-epoch-seconds", "0.5",
            "--simulate-speedup", "50"]
    watch = WorkerWatch(name)
    watch.start()
    started = time.time()
    try:
        done = cli(*args, cwd=tmp_path)
    finally:
        watch.stop.set()
        watch.join()
    print(f"\nsimulated search: {TRIALS} trials in {time.time() - started:.0f} s; "
          f"{len(watch.workers)} trial workers, the largest "
          f"{max((w['rss_kb'] for w in watch.workers.values()), default=0) / 1024:.0f} MiB")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "simulated search: each epoch sleeps 0.01 s" in done.stdout
    assert f"Simulated search {name}: what it found" in done.stdout

    # The workers ran the model, not torch.
    assert watch.workers, "no trial worker of the search was seen"
    assert not any(w["torch"] for w in watch.workers.values()), watch.workers

    results = tmp_path / "results"
    client, parents, children = mlflow_runs(results)
    assert len(parents) == 1 and parents[0].data.tags["simulated"] == "true"
    assert parents[0].data.params["simulate"] == "True"
    assert len(children) == TRIALS
    assert all(run.data.tags.get("simulated") == "true" for run in children)
    outcomes = [run.data.tags["outcome"] for run in children]
    assert "stopped" in outcomes and "ok" in outcomes  # ASHA stopped some, others finished
    one_truth(results, name, 10)

    search = results / "searches" / name
    report = (search / "report.md").read_text().splitlines()
    assert report[0] == f"# Simulated search {name}: what it found, and why"
    assert report[2].startswith("SIMULATED: no trial trained")
    assert "Simulated search: every error here is the learning-curve model's" in (
        search / "ranking.md").read_text()
    assert json.loads((search / "search.json").read_text())["identity"]["simulate"] is True

    # The same command again: shown, nothing run again.
    checkpoints = {p: p.stat().st_mtime_ns for p in search.glob("trials/*/checkpoint.json")}
    assert len(checkpoints) == TRIALS
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"search {name} has finished before" in again.stdout
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == checkpoints
    assert len(mlflow_runs(results)[2]) == TRIALS
    assert len(study(results, name).trials) == TRIALS

    # A simulated search is never resumed as a measured one.
    measured = cli(*measured_args, cwd=tmp_path)
    assert measured.returncode == 2
    assert "was started with simulate=True, not False" in measured.stderr
    assert len(mlflow_runs(results)[2]) == TRIALS


def test_a_measured_search_is_never_resumed_as_a_simulated_one(tmp_path):
    """search.json of a measured search, as one written before `simulate` joined the identity
    (no key) and as one written after: --simulate is refused before anything is written."""
    results = tmp_path / "results"
    config = SearchConfig(scale="smoke", name="measured", simulate=True,
                          results_dir=str(results), progress=False)
    space, settings, data = prepare("paper-table1", config)
    assert data is None and settings.dataset == "simulated" and settings.epochs == 3
    state = settings.paths.state
    state.parent.mkdir(parents=True)
    for identity in ({k: v for k, v in settings.identity.items() if k != "simulate"},
                     {**settings.identity, "simulate": False}):
        state.write_text(json.dumps({"identity": identity}))
        before = sorted(results.rglob("*"))
        with pytest.raises(SearchConfigError, match="was started with simulate=False, not "
                                                    "True"):
            prepare("paper-table1", config)
        assert sorted(results.rglob("*")) == before
