"""The local Ray fails closed: if its servers report an address beyond the loopback (a later Ray
that no longer honours the switch `start_local_ray` relies on), the search stops with one line
naming the Ray version and RESNET_SEARCH_ALLOW_EXPOSED_RAY, the variable that accepts the risk."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from search.config import SearchConfigError
from search.tuner import ALLOW_EXPOSED, beyond_loopback, check_loopback

REPO = Path(__file__).resolve().parents[2]

# The addresses two real local Rays report: one started as Ray starts any local instance (its
# node address resolved to the machine's, as a Ray that ignores the switch would), one by
# `start_local_ray`.
BOTH_RAYS = """
import json, ray
from search.tuner import ray_addresses, start_local_ray
ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
free = ray_addresses()
ray.shutdown()
start_local_ray(num_cpus=1)
pinned = ray_addresses()
ray.shutdown()
print("ADDRESSES", json.dumps({"free": free, "pinned": pinned}))
"""

# `resnet-search run` on a Ray that resolves the loopback to the machine's address whatever the
# switch says: the one Ray function replaced, in this child process only, is the one whose
# behaviour a later Ray could change.
LATER_RAY = """
import sys
from ray._private import services
services.resolve_ip_for_localhost = lambda host: services.node_ip_address_from_perspective()
from search.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _machine_address() -> str:
    from ray._private.services import node_ip_address_from_perspective

    return node_ip_address_from_perspective()


def test_the_check_passes_a_pinned_ray_and_refuses_one_beyond_the_loopback():
    done = subprocess.run([sys.executable, "-c", BOTH_RAYS], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    reported = json.loads(done.stdout.rpartition("ADDRESSES ")[2])
    pinned, free = reported["pinned"], reported["free"]
    assert set(pinned) == {"GCS", "raylet", "driver"}
    assert beyond_loopback(pinned) == {} and check_loopback(pinned, ray.__version__, False) is None
    if not beyond_loopback(free):
        pytest.skip("this machine has no address beyond the loopback for Ray to take")
    host = free["raylet"]
    assert beyond_loopback(free) == {"GCS": host, "raylet": host, "driver": host}
    with pytest.raises(SearchConfigError) as refused:
        check_loopback(free, ray.__version__, accepted=False)
    assert str(refused.value) == (
        f"the local Ray (ray {ray.__version__}) listens on {host} (GCS, raylet, driver), not "
        "only on 127.0.0.1: this Ray no longer keeps a local Ray on the loopback; allowed: "
        f"{ALLOW_EXPOSED}=1 to run it anyway (token authentication then its only guard), or "
        "--address with a Ray you started")
    assert check_loopback(free, ray.__version__, accepted=True) == (
        f"the local Ray (ray {ray.__version__}) listens on {host} (GCS, raylet, driver), not "
        f"only on 127.0.0.1: this Ray no longer keeps a local Ray on the loopback; "
        f"{ALLOW_EXPOSED}=1 accepts it: token authentication is its only guard")


def test_an_unreported_or_named_address_counts_as_beyond_the_loopback():
    assert beyond_loopback({"GCS": "[::1]:6379", "raylet": "localhost", "driver": "127.0.0.5"}) \
        == {}
    assert beyond_loopback({"GCS": "10.0.0.7:6379", "raylet": "", "driver": "head.internal"}) \
        == {"GCS": "10.0.0.7", "raylet": "an unreported address", "driver": "head.internal"}


def test_a_search_on_a_ray_beyond_the_loopback_stops_before_anything_is_written(tmp_path):
    host = _machine_address()
    if beyond_loopback({"machine": host}) == {}:
        pytest.skip("this machine has no address beyond the loopback for Ray to take")
    done = subprocess.run(
        [sys.executable, "-c", LATER_RAY, "run", "paper-table1", "--scale", "smoke",
         "--trials", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != ALLOW_EXPOSED},
             "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"resnet-search: error: the local Ray (ray {ray.__version__}) listens on {host} (GCS, "
        "raylet, driver), not only on 127.0.0.1: this Ray no longer keeps a local Ray on the "
        f"loopback; allowed: {ALLOW_EXPOSED}=1 to run it anyway (token authentication then its "
        "only guard), or --address with a Ray you started"]
    assert list(tmp_path.iterdir()) == []  # no results directory: no MLflow run, no study
