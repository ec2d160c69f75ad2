"""A GPU cluster's scheduling on this machine: a Ray head whose autoscaler, Ray's own fake
multi-node provider (`FakeMultiNodeProvider`, what Ray tests its autoscaler with), launches
worker nodes declaring GPUs for the search's demand and removes them once idle.

    with SimulatedCluster(work, nodes=16, gpus=4, cpus=4) as cluster:
        cluster.request_slots(64, cpus=1, gpus=1)  # optional: the nodes up before the search
        resnet-search run ... --simulate --address cluster.address --gpus-per-trial 1
        cluster.kill_nodes(4)          # spot preemption: SIGKILL four nodes' every process

Every node is a real raylet with its own workers, object store and agents, all on 127.0.0.1
(Ray's switch `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes the autoscaler's nodes bind the
loopback, as the search's own local Ray does); the head's log monitor tails every node's logs
(`NodesWithoutLogMonitors`); token authentication is on. The head declares
no CPU or GPU, as in cluster.yaml: the trials run only on the nodes the autoscaler launched.
The GPUs are declared, not real: a simulated trial (`--simulate`) computes nothing.

Everything the cluster starts is in one process session, and only there: `stop` SIGKILLs that
session (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray._private.node as ray_node
from ray.autoscaler._private.fake_multi_node.node_provider import (
    FAKE_HEAD_NODE_ID,
    FakeMultiNodeProvider,
)

from .common import ROOT

RAY = str(Path(sys.executable).with_name("ray"))
NODE_TYPE = "gpu_node"
NODE_ID_ENV = "RAY_OVERRIDE_NODE_ID_FOR_TESTING"
"""Set by the fake provider in each node's environment, so in every process of that node."""
LOG_MONITOR_PACE = {"RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0", "LOG_NAME_UPDATE_INTERVAL_S": "5"}
"""The head's log monitor lists the logs directory every 5 s, not 10 times a second: the fake
provider's nodes share the head's session, so it tails every node's workers (641 files)."""
REQUEST = ("import json, sys, ray; from ray.autoscaler.sdk import request_resources; "
           "ray.init(address=sys.argv[1], logging_level='ERROR'); "
           "request_resources(bundles=json.loads(sys.argv[2]))")


class _NodeWithoutLogMonitor(ray_node.Node):
    def start_log_monitor(self) -> None:
        """None: the head's log monitor already tails this node's logs (one session dir)."""


class NodesWithoutLogMonitors(FakeMultiNodeProvider):
    """Ray's fake multi-node provider, each worker node started without a log monitor of its
    own. Its nodes share the head's session directory, so every node's monitor would list,
    stat and tail every worker's log file of every node: 17 monitors over the same 641 files
    took 0.3 of this machine's 2 cores (217-224 CPU-s in a 700-s search), more than every other
    Ray daemon together. On a cluster a node's monitor reads only its own workers' files, on its
    own cores; here the head's monitor reads them all, once."""

    def _create_node_with_resources_and_labels(self, *args, **kwargs):
        # Ray's provider starts `ray._private.node.Node`; the launcher threads take turns on
        # the provider's (reentrant) lock, so the swap is seen by this launch alone.
        with self.lock:
            ray_node.Node, node_class = _NodeWithoutLogMonitor, ray_node.Node
            try:
                super()._create_node_with_resources_and_labels(*args, **kwargs)
            finally:
                ray_node.Node = node_class


def autoscaling_config(address: str, nodes: int, cpus: int, gpus: int,
                       idle_minutes: float) -> dict:
    """The cluster launcher config Ray's fake multi-node provider reads: one worker type of
    `cpus` CPUs and `gpus` GPUs, from 0 to `nodes`; a head with no trial resources."""
    return {
        "cluster_name": "simulated", "max_workers": nodes, "upscaling_speed": float(nodes),
        "idle_timeout_minutes": idle_minutes,
        "provider": {"type": "external", "gcs_address": address,
                     "module": f"{__name__}.{NodesWithoutLogMonitors.__name__}",
                     "launch_multiple": True, "use_node_id_as_ip": True,
                     "disable_launch_config_check": True, "disable_node_updaters": True},
        "auth": {"ssh_user": "nobody"},
        "available_node_types": {
            "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
            NODE_TYPE: {"resources": {"CPU": cpus, "GPU": gpus}, "node_config": {},
                        "min_workers": 0, "max_workers": nodes}},
        "head_node_type": "ray.head.default",
        **{key: [] for key in ("cluster_synced_files", "rsync_exclude", "rsync_filter",
                               "initialization_commands", "setup_commands",
                               "head_setup_commands", "worker_setup_commands",
                               "head_start_ray_commands", "worker_start_ray_commands")},
        "file_mounts": {}, "file_mounts_sync_continuously": False,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(session: int) -> list[int]:
    """The processes of a session (the field after state, ppid and pgrp in /proc/PID/stat)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == session:
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass  # ended meanwhile
    return pids


def kill_session(session: int) -> None:
    """SIGKILL every process of a session at once, as when a node's machine is lost. Not the
    process group: Ray puts each worker in a group of its own, and a worker whose raylet was
    killed goes on training, and reporting to the driver, for about two seconds."""
    for _ in range(3):  # again, for any process forked during the previous pass
        for pid in session_pids(session):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass  # ended meanwhile


class SimulatedCluster:
    """A head on 127.0.0.1 and up to `nodes` autoscaled worker nodes of `cpus` CPUs and `gpus`
    GPUs each; `env` is what a driver joining it (`--address`) needs (the token)."""

    def __init__(self, work: Path, nodes: int = 16, cpus: int = 4, gpus: int = 4,
                 idle_minutes: float = 0.5):
        self.work = Path(work)
        self.nodes, self.cpus, self.gpus = nodes, cpus, gpus
        self.idle_minutes = idle_minutes
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._session: int | None = None
        # Ray's socket paths have a length limit: a short temp dir of its own.
        self._temp = Path(tempfile.mkdtemp(prefix="rs-sim-", dir="/tmp"))
        token = self.work / "auth_token"
        self.work.mkdir(parents=True, exist_ok=True)
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's own switch for a machine-local cluster.
        # Every process binds and dials 127.0.0.1 (the head's autoscaler, so its nodes; a
        # driver, which would otherwise rewrite 127.0.0.1 to the machine's address).
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

    def start(self) -> SimulatedCluster:
        config = self.work / "autoscaling.json"
        config.write_text(json.dumps(autoscaling_config(
            self.address, self.nodes, self.cpus, self.gpus, self.idle_minutes)))
        # PYTHONPATH: the head's autoscaler imports this module's provider.
        head_env = {**self.env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                    "PYTHONPATH": str(ROOT), **LOG_MONITOR_PACE}
        process = subprocess.Popen(
            [RAY, "start", "--head", "--port", str(self.port), "--node-ip-address",
             "127.0.0.1", "--num-cpus", "0", "--num-gpus", "0", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir={self._temp}",
             f"--autoscaling-config={config}"],
            env=head_env, start_new_session=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        self._session = process.pid
        output, _ = process.communicate(timeout=180)
        if process.returncode != 0:
            self.stop()
            raise RuntimeError(f"the simulated cluster's head did not start:\n{output[-2000:]}")
        return self

    def request_slots(self, count: int, cpus: float, gpus: float, settle: float = 15,
                      timeout: float = 300) -> None:
        """Ask the autoscaler now for room for `count` trials of `cpus` CPUs and `gpus` GPUs
        each, as a user scales a cluster up before a job (`ray.autoscaler.sdk.request_resources`
        in the trials' own shape), and wait until the nodes that hold them have run, and no
        others, for `settle` seconds: Ray's fake provider over-launches (its nodes are listed
        only once up, so the autoscaler asks again) and then removes the extra ones. The request
        stands until the next; 0 withdraws it, and the idle nodes are then removed."""
        per_node = min(self.cpus / cpus if cpus else math.inf,
                       self.gpus / gpus if gpus else math.inf)
        nodes = min(math.ceil(count / math.floor(per_node)), self.nodes) if count else 0
        bundles = [{"CPU": cpus, "GPU": gpus}] * count
        subprocess.run([sys.executable, "-c", REQUEST, self.address, json.dumps(bundles)],
                       env=self.env, check=True, capture_output=True, timeout=120)
        if not nodes:
            return
        deadline, since = time.monotonic() + timeout, None
        while since is None or time.monotonic() - since < settle:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{nodes} nodes were not up, and no more, {timeout:.0f} s "
                                   f"after asked for (up: {len(self.live_nodes())})")
            time.sleep(1)
            if len(self.live_nodes()) != nodes:
                since = None
            elif since is None:
                since = time.monotonic()

    def processes(self) -> list[int]:
        """Every live process of the cluster: the head's, its autoscaler's, the nodes'."""
        return session_pids(self._session) if self._session is not None else []

    def node_processes(self) -> dict[str, list[int]]:
        """{node id: its live process ids}, for the worker nodes the autoscaler launched."""
        nodes: dict[str, list[int]] = {}
        for pid in self.processes():
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for entry in environ:
                if entry.startswith(NODE_ID_ENV.encode() + b"="):
                    node = entry.split(b"=", 1)[1].decode()
                    if node != FAKE_HEAD_NODE_ID:  # the head has one too
                        nodes.setdefault(node, []).append(pid)
        return nodes

    def live_nodes(self) -> list[str]:
        """The worker nodes whose raylet runs."""
        return sorted(node for node, pids in self.node_processes().items()
                      if any(_is_raylet(pid) for pid in pids))

    def kill_nodes(self, count: int) -> list[str]:
        """SIGKILL every process of `count` live worker nodes at once, as a spot preemption
        loses the machine: the raylet, its agents and the trials' workers."""
        victims = self.live_nodes()[:count]
        processes = self.node_processes()
        for node in victims:
            for pid in processes.get(node, []):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass  # ended meanwhile
        return victims

    def stop(self) -> None:
        """SIGKILL the cluster's session: the head, the autoscaler and every node it launched."""
        if self._session is not None:
            kill_session(self._session)
        # The autoscaler's own account (what it launched and removed, and why) outlives Ray's
        # temp dir: beside the cluster's other files.
        for log in (self._temp / "session_latest" / "logs").glob("monitor.*"):
            shutil.copy(log, self.work / log.name)
        shutil.rmtree(self._temp, ignore_errors=True)

    def __enter__(self) -> SimulatedCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _is_raylet(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "raylet"
    except OSError:
        return False
