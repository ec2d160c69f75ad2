"""The offline install path (issue 24, item 3), run for real: deploy/cluster/install.sh as the
head runs it (`--build`: fill a wheelhouse from the package index, hashes checked), then as a
worker runs it, in a fresh home and a fresh virtual environment, with pip's configuration and
every proxy pointing nowhere: `pip install --no-index --require-hashes` from the wheelhouse.

Why a subset of the lock proves the path: the full lock is several GB (torch's CUDA libraries),
too much for a test on two cores. install.sh treats every entry alike: the same `pip download
--only-binary :all: --require-hashes` fills the wheelhouse, the same `pip install --no-index
--require-hashes` empties it, so entries copied verbatim from the real lock, hashes and all,
exercise every step: a compiled wheel (PyYAML), pure-Python ones, and a dependency between
them (python-dateutil on six), which pip must find in the wheelhouse and in the lock. The
project itself comes as the real wheel that deploy/cluster/artifact.sh builds from a commit
(project.txt, with its hash). A file whose hash the lock does not list is refused. The package
index is what this machine's pip uses (PyPI here); without it the test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "deploy" / "cluster" / "requirements.lock"
SUBSET = {"six", "python-dateutil", "pyyaml", "packaging"}
NOWHERE = "http://127.0.0.1:9"  # a closed port: any attempt to reach an index fails


def subset_lock(path: Path) -> Path:
    """The SUBSET's entries of the real lock, verbatim (markers and hashes included)."""
    blocks = re.split(r"\n(?=\S)", LOCK.read_text())
    kept = [b.split("\n    # via")[0] for b in blocks
            if (m := re.match(r"([a-z0-9.-]+)==", b)) and m.group(1) in SUBSET]
    assert len(kept) == len(SUBSET)
    path.write_text("\n".join(kept) + "\n")
    return path


def node_env(home: Path, lock: Path, offline: bool) -> dict:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "RESNET_SEARCH_LOCK": str(lock),
           "TMPDIR": str(home)}
    if offline:
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", http_proxy=NOWHERE,
                   https_proxy=NOWHERE, HTTP_PROXY=NOWHERE, HTTPS_PROXY=NOWHERE)
    else:
        env.update({k: v for k, v in os.environ.items() if k.startswith("PIP_")})
    return env


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """build/cluster of a commit holding this working tree's deploy/cluster (the node scripts
    under test), made by artifact.sh as an operator makes it."""
    if shutil.which("python3") is None:
        pytest.skip("no python3 on PATH to make the nodes' virtual environments")
    clone = tmp_path_factory.mktemp("checkout") / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clone)], check=True)
    shutil.copytree(REPO / "deploy" / "cluster", clone / "deploy" / "cluster",
                    dirs_exist_ok=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "add", "-A", "deploy/cluster"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "node scripts"],
                   cwd=clone, check=True)
    subprocess.run(["bash", "deploy/cluster/artifact.sh"], cwd=clone, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    return clone / "build" / "cluster"


def install(artifact: Path, home: Path, lock: Path, *args: str, offline: bool):
    return subprocess.run(["bash", str(artifact / "deploy" / "cluster" / "install.sh"), *args],
                          env=node_env(home, lock, offline), capture_output=True, text=True,
                          timeout=300)


def test_the_head_builds_a_wheelhouse_and_a_worker_installs_from_it_offline(artifact, tmp_path):
    lock = subset_lock(tmp_path / "subset.lock")
    shared = tmp_path / "shared" / "wheels"
    head, worker = tmp_path / "head", tmp_path / "worker"
    head.mkdir()
    worker.mkdir()

    # A worker before the head: nothing to install from, and it says so (no download instead).
    early = install(artifact, worker, lock, str(shared), offline=True)
    assert early.returncode != 0 and "no wheelhouse" in early.stderr

    built = install(artifact, head, lock, "--build", str(shared), offline=False)
    if built.returncode != 0 and re.search(r"(?i)connection|resolve|network|No matching",
                                           built.stderr):
        pytest.skip(f"no package index reachable: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    (house,) = shared.iterdir()
    assert (house / "COMPLETE").exists()
    wheels = sorted(p.name for p in house.glob("*.whl"))
    assert len(wheels) == len(SUBSET) and all(w.endswith(".whl") for w in wheels)
    assert any("manylinux" in w for w in wheels)  # a compiled one among them

    done = install(artifact, worker, lock, str(shared), offline=True)
    assert done.returncode == 0, done.stderr
    python = worker / "venv" / "bin" / "python"
    listing = subprocess.run([str(python), "-m", "pip", "list", "--format=json"],
                             capture_output=True, text=True, env={"PIP_CONFIG_FILE": os.devnull},
                             check=True).stdout
    installed = {p["name"].lower(): p["version"] for p in json.loads(listing)}
    assert {"six", "python-dateutil", "pyyaml", "packaging", "resnet-search"} <= set(installed)
    # The project came from the commit's wheel, not from this checkout.
    where = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print(u.find_spec('search').origin)"],
                           capture_output=True, text=True, check=True, cwd=worker).stdout
    assert where.startswith(str(worker / "venv")) and str(REPO) not in where

    # A second `ray up` re-runs it: still offline, nothing to download, same result.
    again = install(artifact, worker, lock, str(shared), offline=True)
    assert again.returncode == 0, again.stderr

    # A wheel that is not the locked file is refused, even from the wheelhouse.
    six = next(house.glob("six-*.whl"))
    six.write_bytes(six.read_bytes() + b"\0")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    tampered = install(artifact, fresh, lock, str(shared), offline=True)
    assert tampered.returncode != 0 and "hash" in tampered.stderr.lower()
