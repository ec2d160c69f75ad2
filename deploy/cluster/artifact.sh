#!/usr/bin/env bash
# Before `ray up`: makes build/cluster, the one directory the cluster files copy to the nodes
# (file_mounts "~/resnet-search"), from the commit at HEAD and from nothing else in the checkout:
#
#   build/cluster/resnet_search-VERSION-py3-none-any.whl   the project's wheel, built from
#                                                          `git archive HEAD`
#   build/cluster/project.txt                              that wheel with its sha256, which
#                                                          install.sh installs with --require-hashes
#   build/cluster/deploy/cluster/...                       the node scripts and requirements.lock,
#                                                          as HEAD holds them
#
#   bash deploy/cluster/artifact.sh [OUT]   from the checkout (default OUT: build/cluster there)
#
# Why: `ray up` hashes every file under a file mount, and restarts Ray on every node (stopping a
# running search) when the hash changes; it also copies everything there, secrets included.
# With the checkout as the mount, an edited notes file, results/, .venv or mine/ did both. Here
# only a commit that changes what the package installs, or the node scripts, changes the hash:
# the wheel is byte-for-byte the same for the same sources (file times are the commit's, and
# SOURCE_DATE_EPOCH pins the zip's), and uncommitted changes never reach a node.
#
# The wheel is built by the Python on PATH (or $PYTHON), which needs setuptools >= 77 (your
# environment from `pip install -e '.[cluster]'` has it): no download, no build isolation. A new
# setuptools version there changes the wheel's WHEEL file, and so restarts the cluster once.
set -euo pipefail

python=${PYTHON:-python3}
top=$(git rev-parse --show-toplevel)
out=${1:-$top/build/cluster}
out=$(mkdir -p "$(dirname "$out")" && cd "$(dirname "$out")" && pwd)/$(basename "$out")
commit=$(git -C "$top" rev-parse --verify HEAD)

if [ -n "$(git -C "$top" status --porcelain --untracked-files=no)" ]; then
    echo "artifact.sh: note: uncommitted changes to tracked files are left out; commit them" \
         "first if the nodes need them" >&2
fi

# Beside OUT, so that the last step is a rename on one file system.
work=$(mktemp -d "$(dirname "$out")/.artifact.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/dist" "$work/out"
git -C "$top" archive --format=tar "$commit" | tar -x -C "$work/src"
SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct "$commit")
export SOURCE_DATE_EPOCH
"$python" -m pip wheel --quiet --disable-pip-version-check --no-index --no-deps \
    --no-build-isolation --wheel-dir "$work/dist" "$work/src"
wheels=("$work"/dist/*.whl)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "artifact.sh: no wheel built" >&2; exit 1; }
wheel=$(basename "${wheels[0]}")
mv "${wheels[0]}" "$work/out/$wheel"
echo "./$wheel --hash=sha256:$(sha256sum "$work/out/$wheel" | cut -d' ' -f1)" \
    > "$work/out/project.txt"
git -C "$top" archive --format=tar "$commit" deploy/cluster | tar -x -C "$work/out"

rm -rf "$out"
mv "$work/out" "$out"
echo "$out: $wheel and deploy/cluster from $commit"
