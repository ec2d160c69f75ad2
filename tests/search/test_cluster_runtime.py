"""The Ray a search runs on: a local one locked to the loopback and its token, fractional GPUs
packing trials, devices that fail loud, addresses that cannot work refused, and one CIFAR
download however many trials start at once."""

import ipaddress
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import ray
import torch

from search import SearchConfig, run
from search.cli import main
from search.trainable import trial_device
from search.tuner import start_local_ray

# Ray processes allowed to listen beyond the loopback, with the reason. None since the local
# Ray's node address is 127.0.0.1 (search.tuner.start_local_ray): every Ray 2.60 server binds
# the node address, or the loopback when that is a loopback one.
WILDCARD_ALLOWED: dict[str, str] = {}

# Asks the GCS at argv[1] for its session name with this process's token (or none).
GCS_PROBE = """
import sys
from ray._raylet import GcsClient
try:
    client = GcsClient(address=sys.argv[1])
    client.internal_kv_get(b"session_name", b"session", timeout=10)
    print("ACCEPTED")
except Exception as error:
    print("REFUSED", type(error).__name__, str(error).splitlines()[0][:200])
"""


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(root: int) -> set[int]:
    """`root` and every process it started, and they started."""
    children, found, todo = _children(), {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_address)  # 32-bit words in host (little-endian) order
    return ipaddress.ip_address(b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4)))


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """Listening TCP sockets of this network namespace: inode -> (address, port)."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            host, port = fields[1].split(":")
            sockets[int(fields[9])] = (str(_address(host)), int(port, 16))
    return sockets


def listening(pids: set[int]) -> set[tuple[int, str, str, int]]:
    """(pid, process name, address, port) of every listening TCP socket of `pids`."""
    sockets, found = _listening_sockets(), set()
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # it ended meanwhile
            continue
        for link in links:
            if link.startswith("socket:[") and int(link[8:-1]) in sockets:
                found.add((pid, name, *sockets[int(link[8:-1])]))
    return found


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


def _auth_env(**auth: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    return {**env, **auth}


def test_a_local_search_listens_on_the_loopback_only_and_needs_the_token(tmp_path, cli):
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = _auth_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:
        search = cli("run", "paper-table1", "--scale", "smoke", "--trials", 4, "--epochs", 3,
                     "--scheduler", "none", "--name", "loopback", cwd=tmp_path, env=env,
                     stdout=out, stderr=err, start_new_session=True)
    seen, probes = set(), {}
    try:
        deadline = time.time() + 600
        while search.poll() is None and time.time() < deadline:
            seen |= listening(_tree(search.pid))
            gcs = [f"127.0.0.1:{port}" for _, name, _, port in seen if name == "gcs_server"]
            if gcs and not probes:  # while the search runs: a client with each token
                cases = {"wrong token": _auth_env(RAY_AUTH_MODE="token",
                                                  RAY_AUTH_TOKEN=secrets.token_hex(32)),
                         "no token": _auth_env(RAY_AUTH_MODE="disabled"),
                         "the token": env}
                probes = {case: subprocess.Popen([sys.executable, "-c", GCS_PROBE, gcs[0]],
                                                 env=probe_env, stdout=subprocess.PIPE,
                                                 stderr=subprocess.DEVNULL, text=True)
                          for case, probe_env in cases.items()}
            time.sleep(0.3)
        answers = {case: probe.communicate(timeout=60)[0].strip()
                   for case, probe in probes.items()}
    finally:
        if search.poll() is None:
            os.killpg(search.pid, 9)
        search.wait(60)
    assert search.returncode == 0, (tmp_path / "err.txt").read_text()[-3000:]

    names = {name for _, name, _, _ in seen}
    assert {"gcs_server", "raylet"} <= names, seen
    assert any(name.startswith("ray::") for name in names), seen  # the trials' workers
    exposed = sorted((name, address, port) for _, name, address, port in seen
                     if not is_loopback(address) and name not in WILDCARD_ALLOWED)
    assert not exposed, f"listening beyond the loopback: {exposed}"

    assert answers["the token"] == "ACCEPTED", answers  # the probe can reach the GCS
    for case in ("wrong token", "no token"):
        assert answers[case].startswith("REFUSED AuthenticationError"), answers


@pytest.fixture(scope="module")
def ray_with_one_gpu():
    """A local Ray declaring a GPU this machine need not have, and 4 CPUs."""
    assert not ray.is_initialized()
    start_local_ray(num_cpus=4, num_gpus=1)
    yield
    ray.shutdown()


def _most_at_once(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda event: (event[0], event[1]))  # an end before a start at a tie
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


@pytest.mark.parametrize("gpus_per_trial, concurrency, at_once",
                         [(0.25, None, 4), (0.5, 4, 2)], ids=["quarter", "half"])
def test_fractional_gpus_pack_trials_on_one_gpu(tmp_path, ray_with_one_gpu, mlflow_runs,
                                                gpus_per_trial, concurrency, at_once):
    # device="cpu": the declared GPU is Ray's bookkeeping only; the trials train on the CPU.
    results = tmp_path / "results"
    config = SearchConfig(name="pack", scale="smoke", trials=4, epochs=12, scheduler="none",
                          gpus_per_trial=gpus_per_trial, concurrency=concurrency, device="cpu",
                          results_dir=str(results), progress=False)
    result = run("paper-table1", config)
    assert len(result.trials) == 4 and set(result.trials["outcome"]) <= {"ok", "diverged"}
    _, _, children = mlflow_runs(results)
    intervals = [(r.info.start_time, r.info.end_time) for r in children]
    assert len(intervals) == 4 and all(end for _, end in intervals)
    assert _most_at_once(intervals) == at_once, intervals


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU torch sees")
def test_a_trial_given_a_gpu_torch_cannot_see_fails(ray_with_one_gpu):
    with_gpu = ray.remote(num_gpus=0.25)(trial_device)
    assert ray.get(with_gpu.remote("cpu")) == "cpu"  # asked for: never overridden
    for device in ("auto", "cuda"):
        with pytest.raises(ray.exceptions.RayTaskError, match="torch sees no CUDA device"):
            ray.get(with_gpu.remote(device))
    assert ray.get(ray.remote(trial_device).remote("auto")) == "cpu"  # given no GPU


REFUSED = [
    (["--device", "tpu"], "device='tpu' is invalid; allowed: auto | cpu | cuda | cuda:N"),
    (["--address", "ray://head:10001"], "submit the search as a Ray job"),
]
if not torch.cuda.is_available():
    REFUSED.append((["--device", "cuda"], "device='cuda' is unavailable: no CUDA GPU here"))


@pytest.mark.parametrize("args, expected", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_before_anything_runs(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "paper-table1", "--scale", "smoke", *args]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # no results directory, so no MLflow run


def test_concurrent_first_downloads_download_once(tmp_path, monkeypatch):
    """Trials starting together on one cache: one downloads, the others wait for a complete
    folder (never a half-extracted one)."""
    import torchvision

    from search.trial.data import DataOptions
    from search.trial.data.sources import source_of

    downloads = []

    class SlowCifar:
        base_folder = "cifar-10-batches-py"

        def __init__(self, root, train=True, download=False):
            if download:
                downloads.append(threading.get_ident())
                folder = Path(root, self.base_folder)
                folder.mkdir()
                for name in ("data_batch_1", "test_batch"):  # extracting takes a while
                    time.sleep(0.3)
                    (folder / name).write_bytes(b"x")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", SlowCifar)
    identities = []

    def load():
        source = source_of(DataOptions("cifar10", cache_dir=str(tmp_path)))
        identities.append(source.identity)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(downloads) == 1 and len(identities) == 4
    assert all(len(identity) == 4 for identity in identities)  # the folder and both files
