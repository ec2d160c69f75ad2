#!/usr/bin/env bash
# Installs resnet-search on one cluster node, into a virtual environment (never the system
# Python): Ray with its dashboard and autoscaler (`ray[default]`), the project with its `cluster`
# extra, and a torch build that the node's NVIDIA driver can run. cluster.yaml and
# cluster-local.yaml run it as a setup command; `ray up` re-runs it on every node, so it is
# idempotent.
#
#   install.sh                   install (or bring up to date) $RESNET_SEARCH_VENV, default ~/venv
#   install.sh --torch-indexes   print the PyTorch wheel indexes it would try here, best first
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project=$(cd "$here/../.." && pwd)
venv=${RESNET_SEARCH_VENV:-$HOME/venv}
# Every node installs exactly these versions: a worker the autoscaler adds a week later must run
# the same Ray as the head (Ray refuses a node of another version) and the same torch.
constraints=$here/constraints.txt
# PyTorch's CUDA builds (cu130 = CUDA 13.0), newest first. A driver runs a build whose CUDA
# version is at most the one `nvidia-smi` reports; torch brings its own CUDA runtime.
cuda_builds=${RESNET_SEARCH_TORCH_CUDA_BUILDS:-"130 129 128 126"}

driver_cuda() {
    # The CUDA version the installed driver supports, "13.0" -> 130; nothing without a GPU.
    command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9]*\)\.\([0-9]\).*/\1\2/p' | head -n 1
}

torch_indexes() {
    local cuda build found=""
    cuda=$(driver_cuda)
    if [ -z "$cuda" ]; then
        echo cpu  # the head (no GPU): the CPU build, without gigabytes of CUDA libraries
        return 0
    fi
    for build in $cuda_builds; do
        if [ "$build" -le "$cuda" ]; then
            echo "cu$build"
            found=1
        fi
    done
    if [ -z "$found" ]; then
        echo "the NVIDIA driver supports CUDA ${cuda:0:-1}.${cuda: -1} only; no PyTorch build" \
             "(cu${cuda_builds// /, cu}) runs on it: use a newer image or driver" >&2
        return 1
    fi
}

if [ "${1:-}" = "--torch-indexes" ]; then
    torch_indexes
    exit
fi

indexes=$(torch_indexes)

# Ubuntu's python3 lacks ensurepip until python3-venv is installed; a fresh instance may still
# hold the apt lock (unattended upgrades), hence the lock timeout.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
        sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
        sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv
        python3 -m venv --clear "$venv"
    fi
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip

installed=""
for index in $indexes; do
    # A torch version need not exist for every CUDA build: fall back to the next one.
    if "${pip[@]}" install --quiet --constraint "$constraints" \
            --index-url "https://download.pytorch.org/whl/$index" torch torchvision; then
        installed=$index
        break
    fi
done
if [ -z "$installed" ]; then
    echo "no torch build from $(echo "$indexes" | tr '\n' ' ')matches $constraints" >&2
    exit 1
fi

# torch is already satisfied, so this keeps the build chosen above.
"${pip[@]}" install --quiet --constraint "$constraints" "$project[cluster]"

if [ "$installed" != cpu ]; then
    # Fail the node's setup here rather than let trials silently train on the CPU.
    "$venv/bin/python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else
        f"torch {torch.__version__} cannot use this GPU; check nvidia-smi and the torch build")'
fi
echo "resnet-search installed in $venv (torch from the $installed index)"
