"""A cluster's load on this machine: a simulated search (`--simulate`) of 1,000 trial-seeds, 64
at once with ASHA, on 16 simulated GPU nodes that Ray's autoscaler launches for it, measured
against Ray Tune's own scalability bar.

    .venv/bin/python -m bench.scale                  # 500 configurations x 2 seeds, 16 nodes
    .venv/bin/python -m bench.scale --quick          # 100 x 2 on 8 nodes (under 3 minutes)
    .venv/bin/python -m bench.scale --fault nodes    # SIGKILL a quarter of the nodes half-way
    .venv/bin/python -m bench.scale --fault driver   # SIGKILL the driver half-way, run it again
    .venv/bin/python -m bench.scale --optuna postgres
    .venv/bin/python -m bench.scale --warm           # the 16 nodes up before the driver starts

Real parts, except the GPUs and the training: a head with Ray's fake multi-node autoscaler
(`bench.sim_cluster`), every node a real raylet declaring 4 GPUs; the driver (`resnet-search
run`, timed from inside by `bench.scale_driver`) joins it with `--address` and token
authentication; a real `mlflow server` and a real Optuna storage (SQLite, or PostgreSQL from
Debian's packages). Each trial sleeps its simulated epochs and reports the learning-curve
model's errors; the searcher, ASHA, Tune's bookkeeping and checkpoints, the tracker, the
journal and its sender, MLflow and Optuna do their real work.

The figures (`name: value unit`):
    scale.wall_over_min     wall time from the driver's start to its exit, over the theoretical
                            minimum: the simulated epochs actually run x their seconds /
                            concurrency (Ray's release test allows 1.28; the target is 1.15)
    scale.ramp_s, scale.running_over_min, scale.end_s  the wall in three: from the driver's
                            start to the first epoch (nodes and workers starting), from there
                            to the last result (over the minimum), and on to the driver's exit;
    scale.after_ramp_over_min  the wall from the first epoch, over the minimum: here the ramp
                            is 64 workers importing Ray Tune on 2 cores, on a cluster each
                            node's few workers on its own cores
    scale.nodes_ready_s, scale.from_nodes_ready_over_min  when the nodes the search needs
                            (concurrency / 4 GPUs) first ran their raylets, and the wall from
                            then over the minimum: Ray's own bar starts with its cluster up
    scale.slots_held_mean, scale.hold_over_epochs  while trials ran: slots held on average
                            (of `concurrency`), and a trial's slot time over its epochs' time
    driver.cpu_ms_per_result  the driver's CPU (all threads) per reported result, and
    driver.busy_share_256     what it means on 256 GPUs, one trial each, 25-second epochs;
    driver.main_cpu_seconds, driver.sender_cpu_seconds  of that CPU, Tune's loop (searcher,
                            ASHA, callbacks) and the MLflow sender thread
    optuna.ask_ms_p50/_p95  `Study.ask` in the driver, over the last tenth of the asks (the
                            study at its largest, with `concurrency` trials running);
    optuna.configuration_ms_p50/_p95  the same for a whole new configuration: the ask and the
                            space's sampling (define-by-run: TPE works in the `suggest_*`
                            calls), asked again past configurations already run
    mlflow.*                runs and metric points in the server's store against the journal;
                            seconds from the end of `Tuner.fit` until the journal is empty
    driver.peak_rss_mib, tune.state_*  the driver's memory; Ray's experiment state (size,
                            and the time of each write)
    tune.wait_s_per_epoch   how long a trial waited between its epochs, on average: from its
                            report to the driver's next `train` call (Tune's result and save
                            of its checkpoint, each a trip through the driver's loop): each
                            trial's first-to-last result (Tune's whole-second timestamps)
                            less the time inside its steps (`time_this_iter_s`)
    audit.problems          trial-seeds not accounted for in the records, Ray, Optuna and
                            MLflow alike (`bench.scale_audit`): 0 or the search lost something
    cpu.machine_busy_share, cpu.<kind>_seconds  how busy this machine's cores were while the
                            search ran, and which processes used them (`bench.cpu_census`):
                            the simulated cluster and the driver share the same cores
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from search.cli.commands import EXIT_UNFINISHED

from .common import ROOT, figure, note
from .cpu_census import CpuCensus
from .scale_audit import Audit
from .scale_phases import Span, phases, trial_results, wait_per_epoch
from .servers import postgres
from .sim_cluster import SimulatedCluster
from .tracking_share import mlflow_server

SPACE = "paper-rediscover"
SCALE = "small"
BUDGET = 10
"""The small scale's epochs: ASHA's rungs at 3 and 6 (grace 30%, reduction factor 2)."""
FULL = {"trials": 500, "seeds": 2, "nodes": 16, "concurrency": 64, "epoch_seconds": 5.0}
QUICK = {"trials": 100, "seeds": 2, "nodes": 8, "concurrency": 32, "epoch_seconds": 0.5}
GPUS_PER_NODE = 4
CPUS_PER_NODE = 4
CPUS_PER_TRIAL = CPUS_PER_NODE // GPUS_PER_NODE  # a trial per GPU
NAME = "scale"
WARM_SETTLE_S = 15
"""--warm: how long the nodes must stay exactly those the search needs (the fake provider's
over-launched ones gone) before the driver starts."""
RERUNS = 3


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 x 2 trial-seeds, 8 nodes")
    for name in FULL:
        parser.add_argument(f"--{name.replace('_', '-')}",
                            type=float if name == "epoch_seconds" else int)
    parser.add_argument("--fault", choices=("none", "nodes", "driver"), default="none")
    parser.add_argument("--optuna", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--warm", action="store_true",
                        help="start the driver once the nodes it needs are up, as on a standing "
                             "cluster and in Ray's release test (default: the autoscaler "
                             "launches them for the search's demand)")
    parser.add_argument("--work", type=Path, help="keep everything here (default: a temp dir)")
    parser.add_argument("--profile", action="store_true", help="cProfile the driver")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


@dataclass
class Driver:
    """The search's driver as a user runs it, possibly twice (a driver killed, run again)."""

    command: list[str]
    work: Path
    env: dict
    runs: list[dict] = field(default_factory=list)
    process: subprocess.Popen | None = None

    def start(self) -> None:
        for earlier in self.work.glob("stats*.json"):  # a run of this bench writes its own
            if self.runs:
                earlier.rename(self.work / f"stats-{len(self.runs) - 1}.json")
            else:
                earlier.unlink()
        log = (self.work / f"driver-{len(self.runs)}.log").open("w")
        self.runs.append({"start": time.monotonic(), "started_at": time.time(), "log": log.name})
        self.process = subprocess.Popen(self.command, cwd=self.work, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def stats(self) -> dict:
        """The timings from inside the driver (`bench.scale_driver`) of the run that took the
        most results: a SIGKILLed driver writes none, and a run again after exit 3 may only
        end the last few trials."""
        runs = [json.loads(path.read_text()) for path in self.work.glob("stats*.json")]
        return max(runs, key=lambda stats: stats["results"])


def driver_command(args, address: str, tracking_uri: str, storage: str, work: Path) -> list:
    return [sys.executable, "-m", "bench.scale_driver", str(work / "stats.json"), "run", SPACE,
            "--simulate", "--simulate-epoch-seconds", str(args.epoch_seconds),
            "--scale", SCALE, "--trials", str(args.trials), "--seeds", str(args.seeds),
            "--concurrency", str(args.concurrency), "--gpus-per-trial", "1",
            "--cpus-per-trial", str(CPUS_PER_TRIAL), "--address", address,
            "--tracking-uri", tracking_uri, "--optuna-storage", storage, "--name", NAME,
            "--results-dir", str(work / "results")]


def _errors(driver: Driver) -> str:
    """The error lines of the driver's last run (the progress printer's), shortened."""
    lines = [line.split("] error", 1)[1].strip()[:160]
             for line in Path(driver.runs[-1]["log"]).read_text().splitlines()
             if "] error " in line]
    return "; ".join(lines) or "no error line"


def done_trials(driver: Driver) -> int:
    """Trial-seeds ended, as the driver's last status line says (`N/total done`)."""
    done = re.findall(r" (\d+)/\d+ done", Path(driver.runs[-1]["log"]).read_text())
    return int(done[-1]) if done else 0


def run_search(args, cluster: SimulatedCluster, driver: Driver) -> tuple[float, list[str]]:
    """(wall seconds of the driver's runs, what was done to it); applies `args.fault` when
    half of the trial-seeds have ended."""
    events: list[str] = []
    try:
        _follow(args, cluster, driver, events)
    finally:
        if driver.process.poll() is None:  # the bench itself was stopped
            os.killpg(driver.process.pid, signal.SIGKILL)
    if driver.process.returncode != 0:
        tail = Path(driver.runs[-1]["log"]).read_text()[-3000:]
        raise RuntimeError(f"the search exited {driver.process.returncode}:\n{tail}")
    return driver.runs[-1]["end"] - driver.runs[0]["start"], events


def _follow(args, cluster: SimulatedCluster, driver: Driver, events: list[str]) -> None:
    """Run the search, apply the fault once, and run the same command again when the search
    says so (exit 3: a trial ended in error, e.g. its actor lost with a node), as a user
    would, up to RERUNS times; each time is an event."""
    total, faulted = args.trials * args.seeds, False
    driver.start()
    while True:
        time.sleep(0.5)
        if driver.process.poll() is not None:
            if driver.process.returncode != EXIT_UNFINISHED or len(driver.runs) > RERUNS:
                break
            events.append(f"the search exited {EXIT_UNFINISHED} (unfinished: "
                          f"{_errors(driver)}); ran the same command again")
            driver.start()
            continue
        if faulted or args.fault == "none" or done_trials(driver) < total // 2:
            continue
        faulted = True
        if args.fault == "nodes":
            killed = cluster.kill_nodes(args.nodes // 4)
            events.append(f"SIGKILLed {len(killed)} of {args.nodes} nodes at "
                          f"{done_trials(driver)}/{total} trial-seeds")
        else:
            os.killpg(driver.process.pid, signal.SIGKILL)
            driver.process.wait()
            events.append(f"SIGKILLed the driver at {done_trials(driver)}/{total} "
                          "trial-seeds; ran the same command again")
            driver.start()
    driver.runs[-1]["end"], driver.runs[-1]["ended_at"] = time.monotonic(), time.time()


class NodeCounter(threading.Thread):
    """The most worker nodes up at once, and when `needed` of them first ran their raylets
    (`ready_at`, wall-clock: the clock of Tune's records), sampled every second."""

    def __init__(self, cluster: SimulatedCluster, needed: int):
        super().__init__(daemon=True)
        self.cluster, self.needed, self.peak, self.running = cluster, needed, 0, True
        self.ready_at: float | None = None

    def sample(self) -> None:
        live = len(self.cluster.live_nodes())
        self.peak = max(self.peak, live)
        if self.ready_at is None and live >= self.needed:
            self.ready_at = time.time()

    def run(self) -> None:
        while self.running:
            self.sample()
            time.sleep(1)


def report(args, wall: float, span: Span, stats: dict, audit: Audit, results: Path) -> None:
    minimum = audit.epochs * args.epoch_seconds / args.concurrency
    trials = trial_results(results / "ray" / NAME)
    figure("scale.trial_seeds", audit.trial_seeds)
    figure("audit.at_budget", audit.at_budget, "(ok or diverged at the full budget)")
    figure("audit.asha_stopped", audit.asha_stopped, "(stopped by ASHA before it)")
    figure("scale.epochs_run", audit.epochs)
    figure("scale.wall", wall, "s")
    figure("scale.theoretical_min", minimum, "s")
    figure("scale.wall_over_min", wall / minimum)
    phases(minimum, span, trials)
    figure("driver.results", stats["results"])
    per_result = stats["cpu_seconds"] / max(stats["results"], 1)
    figure("driver.cpu_seconds", stats["cpu_seconds"], "s")
    figure("driver.cpu_ms_per_result", per_result * 1000, "ms")
    figure("driver.busy_share_256", per_result * 256 / 25, "(256 trials at once, 25-s epochs)")
    for part in ("main", "sender"):
        if f"{part}_cpu_seconds" in stats:  # not from a driver that was killed
            figure(f"driver.{part}_cpu_seconds", stats[f"{part}_cpu_seconds"], "s")
    figure("driver.peak_rss_mib", stats["peak_rss_mib"], "MiB")
    figure("optuna.asks", len(stats["ask_seconds"]))
    for name, seconds in (("ask", stats["ask_seconds"]),
                          ("configuration", stats.get("configuration_seconds", []))):
        late = sorted(seconds[-max(len(seconds) // 10, 1):])
        if late:  # none: every configuration was asked before a driver restart
            figure(f"optuna.{name}_ms_p50", statistics.median(late) * 1000, "ms")
            figure(f"optuna.{name}_ms_p95", late[int(0.95 * (len(late) - 1))] * 1000, "ms")
    figure("mlflow.runs", audit.mlflow_runs)
    figure("mlflow.metric_points", audit.mlflow_points)
    figure("mlflow.journal_points", audit.journal_points)
    if stats.get("drained") and stats.get("fit_end"):
        figure("mlflow.drain_after_fit", stats["drained"] - stats["fit_end"], "s")
    # The last written (a restored driver writes files of its own beside the first driver's).
    state = sorted((results / "ray" / NAME).glob("experiment_state-*.json"))[-1:]
    searcher = sorted((results / "ray" / NAME).glob("searcher-state-*.pkl"))[-1:]
    figure("tune.state_bytes", sum(p.stat().st_size for p in state + searcher), "B")
    writes = stats["state_write_seconds"]
    figure("tune.state_writes", len(writes))
    figure("tune.state_write_ms_p50", statistics.median(writes) * 1000, "ms")
    figure("tune.state_write_ms_max", max(writes) * 1000, "ms")
    figure("tune.wait_s_per_epoch", wait_per_epoch(trials), "s")
    figure("audit.problems", len(audit.problems))
    for problem in audit.problems[:20]:
        note(f"problem: {problem}")


def report_cpu(census: CpuCensus, seconds: dict[str, float]) -> None:
    """Where the cores went while the search ran: the simulated cluster shares this machine."""
    cores = os.cpu_count() or 1
    figure("cpu.machine_busy_share", census.busy / (cores * census.wall),
           f"(of {cores} cores, {census.wall:.0f} s)")
    for kind, used in sorted(seconds.items(), key=lambda item: -item[1]):
        figure(f"cpu.{kind}_seconds", used, "s")


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the cluster on a kill
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    note(f"{args.trials} configurations x {args.seeds} seeds, {args.concurrency} at once, "
         f"{args.nodes} nodes of {GPUS_PER_NODE} GPUs, {args.epoch_seconds:g} s per simulated "
         f"epoch, Optuna on {args.optuna}, fault: {args.fault}; in {work}")
    with SimulatedCluster(work / "cluster", nodes=args.nodes, cpus=CPUS_PER_NODE,
                          gpus=GPUS_PER_NODE, idle_minutes=0.5) as cluster, \
            mlflow_server(_folder(work / "mlflow")) as uri, \
            (postgres() if args.optuna == "postgres"
             else contextlib.nullcontext(f"sqlite:///{work / 'optuna.db'}")) as storage:
        env = {**cluster.env, "PYTHONPATH": str(ROOT)}
        if args.profile:
            env["RESNET_SEARCH_PROFILE"] = str(work / "driver.prof")
        driver = Driver(driver_command(args, cluster.address, uri, storage, work), work, env)
        nodes = NodeCounter(cluster, min(math.ceil(args.concurrency / GPUS_PER_NODE),
                                         args.nodes))
        census = CpuCensus()
        if args.warm:  # the autoscaler's nodes up before the search: Ray's bar starts there
            began = time.monotonic()
            cluster.request_slots(args.concurrency, CPUS_PER_TRIAL, 1, settle=WARM_SETTLE_S)
            nodes.sample()
            note(f"warm: {nodes.needed} nodes up, and no more for {WARM_SETTLE_S:g} s, "
                 f"{time.monotonic() - began:.0f} s after asked for, before the driver started")
        nodes.start()
        census.start()
        wall, events = run_search(args, cluster, driver)
        if args.warm:
            cluster.request_slots(0, 0, 0)  # withdrawn: the idle nodes go, as in a cold run
        nodes.running = False
        cpu = census.stop()
        for event in events:
            note(event)
        audit = Audit.of(work / "results", NAME, storage, work / "mlflow" / "server.db",
                         args.seeds, BUDGET)
        span = Span(driver.runs[0]["started_at"], driver.runs[-1]["ended_at"], nodes.needed,
                    nodes.ready_at)
        report(args, wall, span, driver.stats(), audit, work / "results")
        report_cpu(census, cpu)
        figure("scale.nodes_peak", nodes.peak)
        idle = time.monotonic()
        while cluster.live_nodes() and time.monotonic() - idle < 120:
            time.sleep(1)
        figure("scale.nodes_left_after_idle", len(cluster.live_nodes()),
               f"({time.monotonic() - idle:.0f} s after the search)")
    return 1 if audit.problems else 0


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
