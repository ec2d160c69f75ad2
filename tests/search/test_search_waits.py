"""A search whose trials wait for resources the cluster lacks says why, in quiet mode too: which
resource and how many trials wait, each node launch Ray's autoscaler fails and its reason, and,
past --wait-for-resources, it stops with exit status 4 and resumes when run again."""

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ray.tune import ExperimentAnalysis

from search.cli.commands import EXIT_NO_RESOURCES
from search.progress import lacking, launch_failures

RAY = str(Path(sys.executable).with_name("ray"))

# Ray's fake multi-node provider, refusing every launch as AWS does with a spot quota of 0: the
# autoscaler records the NodeLaunchException (category and description) that `ray status`
# shows under "Recent failures".
REFUSING_PROVIDER = '''
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.node_launch_exception import NodeLaunchException


class RefusingProvider(FakeMultiNodeProvider):
    def create_node_with_resources_and_labels(self, node_config, tags, count, resources,
                                              labels):
        raise NodeLaunchException("MaxSpotInstanceCountExceeded", "Max spot instance count "
                                  "exceeded (G and VT spot quota: 0 vCPUs)", None)
'''

AUTOSCALING_CONFIG = {
    "cluster_name": "refusing", "max_workers": 1, "idle_timeout_minutes": 1,
    "upscaling_speed": 1.0,
    "provider": {"type": "external", "module": "refusing_provider.RefusingProvider",
                 "use_node_id_as_ip": True, "disable_launch_config_check": True,
                 "disable_node_updaters": True},
    "auth": {"ssh_user": "nobody"},
    "available_node_types": {
        "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
        "gpu_worker": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {},
                       "min_workers": 0, "max_workers": 1}},
    "head_node_type": "ray.head.default",
    **{key: [] for key in ("cluster_synced_files", "rsync_exclude", "rsync_filter",
                           "initialization_commands", "setup_commands", "head_setup_commands",
                           "worker_setup_commands", "head_start_ray_commands",
                           "worker_start_ray_commands")},
    "file_mounts": {}, "file_mounts_sync_continuously": False,
}


@pytest.fixture
def gpu_less_cluster(tmp_path, free_port, sessions):
    """A head with no GPU whose autoscaler may add a GPU worker but every launch fails; token
    authentication on. `add_gpu_node()` starts a worker declaring one GPU by hand."""
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    (tmp_path / "provider").mkdir()
    (tmp_path / "provider" / "refusing_provider.py").write_text(REFUSING_PROVIDER)
    config = tmp_path / "autoscaling.json"
    config.write_text(json.dumps(AUTOSCALING_CONFIG))
    temp = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # Ray's socket paths are short
    common = ["--num-cpus", "1", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = []

    def ray_start(*args, extra_env=None):
        process = subprocess.Popen([RAY, "start", *args, *common], env={**env, **(extra_env or {})},
                                   start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        started.append(process.pid)
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output[-2000:]

    address = f"127.0.0.1:{free_port}"
    try:
        ray_start("--head", "--port", str(free_port), "--node-ip-address", "127.0.0.1",
                  "--num-gpus", "0", "--include-dashboard=false",
                  f"--autoscaling-config={config}",
                  extra_env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                             "PYTHONPATH": str(tmp_path / "provider")})
        yield address, env, lambda: ray_start("--address", address, "--num-gpus", "1")
    finally:
        for session in started:
            sessions.kill(session)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_stuck_search_says_why_stops_and_resumes(tmp_path, gpu_less_cluster, cli):
    address, env, add_gpu_node = gpu_less_cluster
    args = ["run", "paper-table1", "--scale", "smoke", "--trials", 1, "--epochs", 1,
            "--scheduler", "none", "--name", "stuck", "--address", address,
            "--gpus-per-trial", 1, "--device", "cpu", "--wait-for-resources", 0.2]
    stuck = cli(*args, cwd=tmp_path, env=env, timeout=300)
    assert stuck.returncode == EXIT_NO_RESOURCES, stuck.stdout[-2000:] + stuck.stderr[-2000:]
    waiting = [line for line in stuck.stdout.splitlines() if "] waiting " in line]
    assert len(waiting) == 1, stuck.stdout  # said once, not at every status line
    assert waiting[0].endswith("waiting  1 trial(s) pending for resources the cluster lacks: "
                               "GPU: 1 per trial, the cluster has 0 (`ray status` shows what "
                               "its autoscaler does about it)")
    launch = [line for line in stuck.stdout.splitlines() if "] launch " in line]
    assert len(launch) == 1, stuck.stdout
    assert launch[0].endswith("launch   a gpu_worker node failed to launch: "
                              "MaxSpotInstanceCountExceeded: Max spot instance count exceeded "
                              "(G and VT spot quota: 0 vCPUs)")
    assert stuck.stderr.strip().splitlines() == [
        "resnet-search: stopped: 1 trial(s) waited 0.2 minute(s) for resources with none "
        "running (--wait-for-resources 0.2): GPU: 1 per trial, the cluster has 0; gpu_worker "
        "launches failed: MaxSpotInstanceCountExceeded: Max spot instance count exceeded (G and "
        "VT spot quota: 0 vCPUs); run the same command again to resume the search"]
    results = tmp_path / "results"
    assert not json.loads((results / "searches" / "stuck" / "search.json").read_text()).get(
        "finished")
    pending = ExperimentAnalysis(str(results / "ray" / "stuck")).trials
    assert [t.status for t in pending] == ["PENDING"]

    add_gpu_node()  # the quota raised: the same command resumes the search and finishes it
    resumed = cli(*args, cwd=tmp_path, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    trials = ExperimentAnalysis(str(results / "ray" / "stuck")).trials
    assert sorted(t.trial_id for t in trials) == sorted(t.trial_id for t in pending)
    assert all(t.status == "TERMINATED" and t.last_result["outcome"] in ("ok", "diverged")
               for t in trials)
    assert json.loads((results / "searches" / "stuck" / "search.json").read_text())["finished"]


def test_what_a_trial_lacks_and_the_autoscalers_failures_are_read_from_rays_records():
    assert lacking({"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0, "memory": 1e9}) == [
        "GPU: 1 per trial, the cluster has 0"]
    assert lacking({"CPU": 16.0}, {"CPU": 8.0}) == ["CPU: 16 per trial, the cluster has 8"]
    assert lacking({"CPU": 1.0, "GPU": 0.25}, {"CPU": 8.0, "GPU": 1.0}) == []
    # The v1 autoscaler's record as `ray status` reads it (its JSON in the GCS), and its error.
    status = {"autoscaler_report": {"node_availability_summary": {"node_availabilities": {
        "gpu_worker": {"node_type": "gpu_worker", "is_available": False,
                       "last_checked_timestamp": 1.0,
                       "unavailable_node_information": {
                           "category": "UnauthorizedOperation",
                           "description": "You are not authorized to perform this operation."
                                          "\nEncoded authorization failure message: ..."}},
        "cpu_worker": {"node_type": "cpu_worker", "is_available": True,
                       "last_checked_timestamp": 1.0, "unavailable_node_information": None}}}}}
    failures = launch_failures(status, "Traceback ...\nbotocore.exceptions.NoCredentialsError: "
                                       "Unable to locate credentials\n")
    assert [failure[:2] for failure in failures] == [
        ("gpu_worker", "UnauthorizedOperation: You are not authorized to perform this "
                       "operation."),
        ("the autoscaler", "error: botocore.exceptions.NoCredentialsError: Unable to locate "
                           "credentials")]
    assert failures[0][2] == 1.0 and failures[1][2] > 1.0  # the record's attempt; now
    assert launch_failures(None) == [] and launch_failures({"autoscaler_report": {}}) == []
