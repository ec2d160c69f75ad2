#!/usr/bin/env bash
# Installs resnet-search on one cluster node, into a virtual environment (never the system
# Python), from a wheelhouse and nothing else: the packages of requirements.lock (Ray with its
# dashboard and autoscaler, torch 2.14.1, MLflow, the `cluster` extra, ...) with
# `pip install --no-index --require-hashes`, then the project's own wheel that
# deploy/cluster/artifact.sh built from a commit (project.txt names it with its hash).
# cluster.yaml and cluster-local.yaml run it as a setup command; `ray up` re-runs it on every
# node, so it is idempotent.
#
#   install.sh --build WHEELHOUSE   the head: fill WHEELHOUSE from PyPI once, then install
#   install.sh WHEELHOUSE           a worker: install from WHEELHOUSE; never from the internet
#   install.sh --check-driver       print the CUDA version the locked torch needs ("none" for
#                                   a CPU build), or fail if this node's NVIDIA driver is too
#                                   old for it
#
# WHEELHOUSE is s3://BUCKET/PREFIX (cluster.yaml: the worker role may read it, not write it) or
# a directory that every machine mounts at the same path (cluster-local.yaml). The wheels of one
# lock live under WHEELHOUSE/KEY, KEY = the lock's sha256 (16 digits), the Python tag and the
# machine (say 3f0c...-cp312-x86_64): Ray already requires one Python version on every node, and
# one image gives them one platform, so the head's downloads fit every worker. A new lock gets a
# new KEY and so a new wheelhouse; KEY/COMPLETE, written last, marks one that is whole.
#
# Why the head downloads and the workers do not: a worker the autoscaler adds in the middle of a
# search installs in seconds from the region's S3 (or the shared disk), cannot differ from the
# head, and does not stop when PyPI or a mirror does. The hashes make the wheelhouse tamper-proof:
# pip refuses any file whose sha256 the lock does not list.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# The directory file_mounts copy to ~/resnet-search: build/cluster from artifact.sh.
artifact=$(cd "$here/../.." && pwd)
venv=${RESNET_SEARCH_VENV:-$HOME/venv}
lock=${RESNET_SEARCH_LOCK:-$here/requirements.lock}
# A worker's copy of an S3 wheelhouse (a directory wheelhouse is read where it is).
cache=${RESNET_SEARCH_WHEEL_CACHE:-$HOME/wheelhouse}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

driver_cuda() {
    # The CUDA version the installed driver supports, "13.0" -> 130; nothing without a GPU.
    command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]\).*/\1\2/p' | head -n 1
}

check_driver() {
    # PyPI's torch brings its own CUDA runtime (nvidia-cuda-runtime in the lock); the driver
    # must support at least that CUDA version, or every trial would silently train on the CPU.
    local needed driver
    needed=$(sed -n 's/^nvidia-cuda-runtime[-a-z0-9]*==\([0-9]*\)\.\([0-9]\).*/\1\2/p' "$lock" |
             head -n 1)
    if [ -z "$needed" ]; then
        echo "none"  # a lock without CUDA (a CPU torch): any node runs it
        return 0
    fi
    driver=$(driver_cuda)
    if [ -n "$driver" ] && [ "$driver" -lt "$needed" ]; then
        die "the NVIDIA driver supports CUDA ${driver:0:-1}.${driver: -1} only; the locked" \
            "torch needs CUDA ${needed:0:-1}.${needed: -1}: use a newer image (cluster.yaml's" \
            "ImageId) or driver"
    fi
    echo "cuda${needed:0:-1}.${needed: -1}"
}

if [ "${1:-}" = "--check-driver" ]; then
    check_driver
    exit
fi

build=""
if [ "${1:-}" = "--build" ]; then
    build=1
    shift
fi
[ $# -eq 1 ] || { echo "usage: install.sh [--build] WHEELHOUSE | --check-driver" >&2; exit 2; }
wheelhouse=${1%/}
[ -s "$lock" ] || die "no lock at $lock"
[ -s "$artifact/project.txt" ] || die "no $artifact/project.txt: file_mounts copy" \
    "build/cluster, which deploy/cluster/artifact.sh makes before \`ray up\`"
check_driver >/dev/null

# Ubuntu's python3 lacks ensurepip until python3-venv is installed (the pinned image has it);
# a fresh instance may still hold the apt lock (unattended upgrades), hence the lock timeout.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
        sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
        sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv
        python3 -m venv --clear "$venv"
    fi
fi
# The venv's own pip, as the image's Python brought it: upgrading it would be a download.
pip=("$venv/bin/python" -m pip --disable-pip-version-check)

key=$(sha256sum "$lock" | cut -c1-16)-$("$venv/bin/python" -c \
    'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
case $wheelhouse in
    s3://*)
        command -v aws >/dev/null 2>&1 || die "no aws command here for $wheelhouse (the Deep" \
            "Learning AMI has AWS CLI v2)"
        remote=$wheelhouse/$key
        published() { aws s3 ls "$remote/COMPLETE" >/dev/null 2>&1; }
        local_dir=$cache/$key
        ;;
    /*)
        remote=$wheelhouse/$key
        published() { [ -e "$remote/COMPLETE" ]; }
        local_dir=$remote
        ;;
    *)
        die "WHEELHOUSE must be s3://... or an absolute directory, not '$wheelhouse'"
        ;;
esac

if [ -n "$build" ] && ! published; then
    # Every wheel of the lock that this node's Python and platform use, from PyPI, each checked
    # against its hash as it arrives; --only-binary: a node never builds from source.
    staging=$(mktemp -d "${TMPDIR:-/tmp}/wheelhouse.XXXXXX")
    trap 'rm -rf "$staging"' EXIT
    "${pip[@]}" download --quiet --only-binary :all: --no-deps --require-hashes \
        -r "$lock" -d "$staging"
    cp "$lock" "$staging/requirements.lock"  # what the wheelhouse was made from
    case $wheelhouse in
        s3://*)
            aws s3 sync --only-show-errors "$staging" "$remote"
            ;;
        *)
            # Copy beside the target, then rename: a worker never sees half a wheelhouse.
            mkdir -p "$wheelhouse"
            rm -rf "$remote.partial"
            cp -r "$staging" "$remote.partial"
            rm -rf "$remote"
            mv "$remote.partial" "$remote"
            ;;
    esac
    date -u +%FT%TZ > "$staging/COMPLETE"
    case $wheelhouse in
        s3://*) aws s3 cp --only-show-errors "$staging/COMPLETE" "$remote/COMPLETE" ;;
        *) cp "$staging/COMPLETE" "$remote/COMPLETE" ;;
    esac
    echo "built the wheelhouse $remote ($(ls "$staging" | grep -c '\.whl$') wheels)"
fi
published || die "no wheelhouse at $remote (or it is incomplete): the head's setup builds it" \
    "(install.sh --build, in head_setup_commands); run \`ray up\` again"
if [ "$local_dir" != "$remote" ]; then
    aws s3 sync --only-show-errors "$remote" "$local_dir"
fi

# From the wheelhouse alone (--no-index), every file checked against the lock's hashes.
"${pip[@]}" install --quiet --no-index --find-links "$local_dir" --require-hashes -r "$lock"
# The project's wheel, as built from the commit: its version does not change with the code, so
# --force-reinstall; --no-deps, as the lock above holds its dependencies (tests/cluster checks).
(cd "$artifact" && "${pip[@]}" install --quiet --no-index --no-deps --force-reinstall \
    --require-hashes -r project.txt)

if [ -n "$(driver_cuda)" ]; then
    # Fail the node's setup here rather than let trials silently train on the CPU.
    "$venv/bin/python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
        f"torch {torch.__version__} cannot use this GPU; check nvidia-smi")'
fi
echo "resnet-search installed in $venv from $remote and $artifact/project.txt"
