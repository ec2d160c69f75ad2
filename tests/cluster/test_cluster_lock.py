"""Nodes install nothing from the internet (issue 24, item 3): the hashed lock and its use.

deploy/cluster/requirements.lock (made by deploy/cluster/lock.sh) is the environment of every
node. These tests read it as pip does (requirement, markers, hashes) and check it against
pyproject.toml, against the metadata of the packages installed here where the versions are the
same, and against the cluster files, which must install from the head's wheelhouse with
`--no-index`. The install itself runs in tests/cluster/test_wheelhouse.py.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "deploy" / "cluster"
LOCK = CLUSTER / "requirements.lock"
CLUSTER_FILES = ["cluster.yaml", "cluster-local.yaml"]
# The nodes: the pinned Deep Learning AMI (Ubuntu 24.04: CPython 3.12, x86_64 Linux).
NODE = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
        "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
        "os_name": "posix", "implementation_name": "cpython",
        "platform_python_implementation": "CPython"}
HERE = default_environment()


def entries() -> list[tuple[Requirement, list[str]]]:
    """Each `name==version ; marker --hash=...` entry, continuation lines joined."""
    text = "\n".join(line for line in LOCK.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    found = []
    for entry in text.replace("\\\n", " ").splitlines():
        if entry.strip():
            requirement, *hashes = entry.split(" --hash=")
            found.append((Requirement(requirement.strip()), [h.strip() for h in hashes]))
    return found


def pins(environment: dict) -> dict[str, Version]:
    """What pip installs from the lock in this environment: the entries whose marker holds."""
    active = {}
    for requirement, _ in entries():
        if requirement.marker is None or requirement.marker.evaluate(environment):
            name = canonicalize_name(requirement.name)
            assert name not in active, f"two active pins for {name}"
            (spec,) = requirement.specifier
            active[name] = Version(spec.version)
    return active


def project() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def wanted(requirement: Requirement, environment: dict, extra: str = "") -> bool:
    return requirement.marker is None or requirement.marker.evaluate({**environment,
                                                                      "extra": extra})


def test_every_entry_is_pinned_exactly_with_sha256_hashes():
    found = entries()
    assert len(found) > 100  # the whole environment, not the five pins of constraints.txt
    for requirement, hashes in found:
        (spec,) = requirement.specifier
        assert spec.operator == "==" and "*" not in spec.version, requirement
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), (
            requirement)


def test_torch_is_pinned_at_the_tested_versions_and_constraints_hold():
    for environment in (NODE, HERE):
        locked = pins(environment)
        assert locked["torch"] == Version("2.14.1")
        assert locked["torchvision"] == Version("0.29.1")
    locked = pins(NODE)
    for line in (CLUSTER / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            assert locked[canonicalize_name(name)] == Version(version), line


@pytest.mark.parametrize("environment", [NODE, HERE], ids=["node", "here"])
def test_the_lock_covers_every_dependency_of_pyproject(environment):
    """Every dependency, the `cluster` extra's included, and the extras of Ray they ask for
    (ray[tune], ray[default]), read from the metadata of the Ray installed here, which is the
    locked one."""
    locked = pins(environment)
    required = [Requirement(r) for r in project()["dependencies"]
                + project()["optional-dependencies"]["cluster"]]
    ray_extras = set()
    for requirement in required:
        name = canonicalize_name(requirement.name)
        if not wanted(requirement, environment):
            continue
        assert name in locked, f"{requirement} is not in the lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            requirement, locked[name])
        if name == "ray":
            ray_extras |= requirement.extras
    assert ray_extras == {"tune", "default"}
    assert Version(importlib.metadata.version("ray")) == locked["ray"]
    for text in importlib.metadata.requires("ray") or []:
        requirement = Requirement(text)
        if any(wanted(requirement, environment, extra) for extra in ray_extras) and not wanted(
                requirement, environment):
            name = canonicalize_name(requirement.name)
            assert name in locked, f"ray's {requirement} is not in the lock"
            assert requirement.specifier.contains(locked[name], prereleases=True)


def test_the_lock_is_closed_under_the_dependencies_installed_here():
    """For each locked package installed here at its locked version, every dependency it
    declares for this machine is in the lock too, at a version it accepts."""
    locked = pins(HERE)
    checked = 0
    for name, version in locked.items():
        try:
            installed = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if Version(installed.version) != version:
            continue
        checked += 1
        for text in installed.requires or []:
            requirement = Requirement(text)
            if wanted(requirement, HERE):
                dependency = canonicalize_name(requirement.name)
                assert dependency in locked, f"{name} needs {requirement}, not in the lock"
                assert requirement.specifier.contains(locked[dependency], prereleases=True), (
                    name, requirement, locked[dependency])
    assert checked >= 40, f"only {checked} locked packages installed here to check"


def test_the_lock_says_how_to_regenerate_it():
    header = LOCK.read_text().splitlines()[:3]
    assert "#    bash deploy/cluster/lock.sh" in header
    script = (CLUSTER / "lock.sh").read_text()
    assert "--generate-hashes" in script and "--constraint deploy/cluster/constraints.txt" in script
    assert "--extra cluster" in script


def setup_commands(config: dict, kind: str) -> list[str]:
    return config["setup_commands"] + config[f"{kind}_setup_commands"]


def install_argv(commands: list[str]) -> list[str]:
    (command,) = [c for c in commands if "deploy/cluster/install.sh" in c]
    return shlex.split(command)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_the_head_builds_the_wheelhouse_and_every_node_installs_from_it(name):
    config = yaml.safe_load((REPO / name).read_text())
    head = install_argv(setup_commands(config, "head"))
    worker = install_argv(setup_commands(config, "worker"))
    assert head[2:] == ["--build", worker[-1]]  # one wheelhouse: the head fills it
    assert worker[2:] == [worker[-1]]  # a worker only reads it
    if config["provider"]["type"] == "aws":
        assert worker[-1] == "s3://YOUR_BUCKET/resnet-search/wheels"
    else:  # on the directory every machine mounts, beside the trials' storage
        storage = [a for a in config["setup_commands"][0].split() if "STORAGE=" in a][0]
        shared = storage.split("=", 1)[1].removesuffix("/resnet-search/ray")
        assert worker[-1] == f"{shared}/resnet-search/wheels"
    # Every install goes through the wheelhouse and the hashes; only --build downloads.
    script = (CLUSTER / "install.sh").read_text().replace("\\\n", " ")  # one line a command
    installs = re.findall(r'"\$\{pip\[@\]\}" install[^\n]*', script)
    assert len(installs) == 2
    for command in installs:
        assert "--no-index" in command and "--require-hashes" in command
    downloads = re.findall(r'"\$\{pip\[@\]\}" download[^\n]*', script)
    assert len(downloads) == 1 and "--require-hashes" in downloads[0]
    assert "--upgrade pip" not in script and "--index-url" not in script


def test_the_python_tag_of_the_wheelhouse_key_matches_this_python():
    """install.sh names a wheelhouse by the lock's hash, the Python and the machine; the
    wheelhouse test relies on the same computation here."""
    script = (CLUSTER / "install.sh").read_text()
    assert 'cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}' in script
    assert sys.version_info >= (3, 10)
