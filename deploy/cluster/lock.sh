#!/usr/bin/env bash
# Regenerates deploy/cluster/requirements.lock, the environment of every cluster node: each
# package the project and its `cluster` extra need, pinned with `==` and with the sha256 of every
# file PyPI holds for that version. install.sh installs exactly this file with
# `pip install --no-index --require-hashes`, so a node runs the packages that were locked here,
# byte for byte, or none.
#
#   bash deploy/cluster/lock.sh          on your machine (PyPI reachable), after changing
#                                        pyproject.toml's dependencies or constraints.txt;
#                                        it then runs the check below
#   bash deploy/cluster/lock.sh --check  resolve the lock as a node would, from PyPI's metadata
#                                        only (no wheel is downloaded, ~30 s): every package has
#                                        a wheel for the nodes (CPython 3.12, manylinux x86_64)
#                                        and every dependency is in the lock with its hashes
#
# The lock is universal (`--universal`): one file for every Python from pyproject.toml's floor
# (3.10) up and every platform, with markers where versions differ. The nodes' image fixes the
# Python they run (3.12 on the pinned Deep Learning AMI); a machine of cluster-local.yaml may run
# another one, and the same file serves it. constraints.txt holds the versions that must not
# move (Ray, the same on the nodes as on your machine; torch 2.14.1 and torchvision 0.29.1;
# MLflow; Optuna); every other package gets the newest release that fits.
#
# Commit the new lock together with the change that needed it: the head builds a new wheelhouse
# for it on the next `ray up` (its name is the lock's hash, install.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project=$(cd "$here/../.." && pwd)
# uv resolves for other Pythons and platforms than the one it runs on, which pip-compile cannot;
# pinned, so that the same inputs give the same lock.
uv_version=0.13.9
lock=$here/requirements.lock

check() {
    # pip's resolver in --require-hashes mode refuses any package the lock lacks; --platform and
    # --only-binary make it pick the wheels the nodes' pip will pick (a node never builds from
    # source: the wheelhouse holds PyPI's files, whose hashes the lock lists). glibc 2.39 is
    # Ubuntu 24.04's; pip takes only the platform tags it is given, hence the list.
    local platforms=() minor target
    for minor in $(seq 39 -1 5); do
        platforms+=(--platform "manylinux_2_${minor}_x86_64")
    done
    target=$(mktemp -d)
    PIP_CONFIG_FILE=/dev/null python3 -m pip install --quiet --disable-pip-version-check \
        --dry-run --ignore-installed --target "$target" \
        --only-binary :all: "${platforms[@]}" --platform manylinux2014_x86_64 \
        --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
        --require-hashes -r "$lock"
    rmdir "$target"
    echo "$lock resolves for the nodes (CPython 3.12, manylinux x86_64) from wheels alone"
}

if [ "${1:-}" = "--check" ]; then
    check
    exit
fi

uv=$(command -v uv || true)
if [ -z "$uv" ] || [ "$("$uv" --version | awk '{print $2}')" != "$uv_version" ]; then
    tools=$(mktemp -d)
    trap 'rm -rf "$tools"' EXIT
    python3 -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
    uv=$tools/bin/uv
fi

cd "$project"
"$uv" pip compile pyproject.toml --extra cluster \
    --constraint deploy/cluster/constraints.txt \
    --universal --python-version 3.10 \
    --generate-hashes \
    --custom-compile-command "bash deploy/cluster/lock.sh" \
    --output-file deploy/cluster/requirements.lock > /dev/null
echo "wrote $lock"
check
echo "commit it with the change that needed it"
