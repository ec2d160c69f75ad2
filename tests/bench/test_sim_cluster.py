"""The simulated cluster (`bench.sim_cluster`): nodes asked of its autoscaler come up, each
without a log monitor of its own (the head's tails their shared session), and go once the
request is withdrawn."""

import time
from pathlib import Path

from bench.sim_cluster import SimulatedCluster


def _log_monitors(pids: list[int]) -> list[int]:
    found = []
    for pid in pids:
        try:
            if b"log_monitor.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass  # ended meanwhile
    return found


def test_requested_nodes_come_up_without_log_monitors_and_go_when_withdrawn(tmp_path):
    with SimulatedCluster(tmp_path, nodes=3, idle_minutes=0.1) as cluster:
        assert cluster.live_nodes() == []  # nothing asked for yet
        cluster.request_slots(8, cpus=1, gpus=1)  # two nodes of 4 GPUs
        assert len(cluster.live_nodes()) == 2  # the request's, not the provider's maximum
        on_nodes = [pid for pids in cluster.node_processes().values() for pid in pids]
        assert on_nodes and _log_monitors(on_nodes) == []
        assert len(_log_monitors(cluster.processes())) == 1  # the head's
        cluster.request_slots(0, 0, 0)
        deadline = time.monotonic() + 90
        while cluster.live_nodes() and time.monotonic() < deadline:
            time.sleep(1)
        assert cluster.live_nodes() == []
