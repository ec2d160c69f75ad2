"""The code reaches the nodes as the package would install it, not as the working tree (issue
24, item 5), judged by Ray's own config hash.

`ray up` (Ray 2.60, ray/autoscaler/_private/commands.py) computes
`hash_runtime_conf(config["file_mounts"], None, config)` and restarts Ray on a node whose tag
differs. A clone of this repository plays the operator's checkout: deploy/cluster/artifact.sh
builds build/cluster there, and Ray's function hashes the cluster file as `ray up` would from
that directory. Unrelated local changes keep the hash; a commit that changes code changes it.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ARTIFACT = REPO / "deploy" / "cluster" / "artifact.sh"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]


def git(checkout: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=checkout, check=True, capture_output=True,
                          text=True).stdout


def build(checkout: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", str(ARTIFACT)], cwd=checkout, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(checkout.parent),
                               "PYTHON": sys.executable}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def ray_up_hash(config: dict) -> str:
    """The runtime hash of `ray up`, from the current directory, as a new process computes it."""
    from ray.autoscaler._private import util

    util._hash_cache.clear()
    config = util.prepare_config(copy.deepcopy(config))
    runtime, _ = util.hash_runtime_conf(config["file_mounts"], None, config)
    return runtime


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    clone = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clone)], check=True)
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a" * 64)
    monkeypatch.setenv("HOME", str(home))  # the token's mount, as on the operator's machine
    monkeypatch.chdir(clone)  # `ray up mine/cluster.yaml` runs from the checkout's top
    return clone


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster-local.yaml"])
def test_the_file_mount_holds_only_the_artifact(name):
    config = yaml.safe_load((REPO / name).read_text())
    assert config["file_mounts"]["~/resnet-search"] == "build/cluster"
    assert "build/" in (REPO / ".gitignore").read_text().split()  # never committed by mistake
    assert "rsync_exclude" not in config  # nothing left to exclude (Ray's hash ignored it)


def test_unrelated_changes_keep_rays_hash_and_a_code_commit_changes_it(checkout):
    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    old_way = {**config, "file_mounts": {**config["file_mounts"], "~/resnet-search": "."}}
    build(checkout)
    first, first_old = ray_up_hash(config), ray_up_hash(old_way)
    wheel = next((checkout / "build" / "cluster").glob("*.whl"))
    assert sorted(p.name for p in (checkout / "build" / "cluster").iterdir()) == sorted([
        "deploy", wheel.name, "project.txt"])

    # What sits in a checkout between two `ray up`s, none of it committed.
    (checkout / "notes.txt").write_text("an untracked file\n")
    (checkout / "results" / "search").mkdir(parents=True)
    (checkout / "results" / "search" / "search.json").write_text("{}")
    (checkout / ".venv" / "lib").mkdir(parents=True)
    (checkout / ".venv" / "lib" / "x.py").write_text("x = 1\n")
    (checkout / "mine").mkdir()
    (checkout / "mine" / "cluster.yaml").write_text("secret: yes\n")
    edited = checkout / "search" / "__init__.py"
    committed = edited.read_text()
    edited.write_text(committed + "\nUNCOMMITTED = 1\n")
    done = build(checkout)
    assert "uncommitted changes" in done.stderr  # said, and left out
    assert ray_up_hash(config) == first  # `ray up` restarts nothing
    assert ray_up_hash(old_way) != first_old  # the checkout as the mount: a restart everywhere
    shipped = zipfile.ZipFile(next((checkout / "build" / "cluster").glob("*.whl")))
    assert shipped.read("search/__init__.py").decode() == committed
    names = "\n".join(p.as_posix() for p in (checkout / "build").rglob("*"))
    assert not any(s in names for s in ("notes.txt", "results", ".venv", "mine", "secret"))

    # A commit that changes what the package installs: a new hash, so `ray up` restarts Ray.
    git(checkout, "commit", "--quiet", "-am", "change the code")
    build(checkout)
    assert ray_up_hash(config) != first
