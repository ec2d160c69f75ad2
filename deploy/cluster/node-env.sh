#!/usr/bin/env bash
# Writes the environment every shell on a cluster node starts with, into ~/.resnet-search.env,
# and sources it at the top of ~/.bashrc, ~/.profile and ~/.bash_profile (where they exist):
# the virtual environment first on PATH, then each NAME=VALUE argument, exported.
# cluster.yaml passes RAY_AUTH_MODE=token, so a shell from `ray attach`, `ray exec` or plain ssh
# talks to the token-protected cluster (`resnet-search run --address auto` included).
# Idempotent: `ray up` re-runs it on every node.
#
#   node-env.sh NAME=VALUE ...
set -euo pipefail

venv=${RESNET_SEARCH_VENV:-$HOME/venv}
env_file=$HOME/.resnet-search.env
source_line='[ -f ~/.resnet-search.env ] && . ~/.resnet-search.env'

{
    echo "# Written by resnet-search deploy/cluster/node-env.sh; rewritten on every \`ray up\`."
    printf 'export PATH=%q:"$PATH"\n' "$venv/bin"
    for assignment in "$@"; do
        name=${assignment%%=*}
        if [[ ! $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ || $name == "$assignment" ]]; then
            echo "node-env.sh: expected NAME=VALUE, got '$assignment'" >&2
            exit 2
        fi
        printf 'export %s=%q\n' "$name" "${assignment#*=}"
    done
} > "$env_file.tmp"
mv "$env_file.tmp" "$env_file"

# At the top: Ubuntu's ~/.bashrc returns early for non-interactive shells, and a login shell
# reads ~/.bash_profile or else ~/.profile, not necessarily ~/.bashrc.
for rc in "$HOME/.bashrc" "$HOME/.profile" "$HOME/.bash_profile"; do
    if [ "$rc" != "$HOME/.bashrc" ] && [ ! -e "$rc" ]; then
        continue
    fi
    if ! grep -qxF "$source_line" "$rc" 2>/dev/null; then
        { echo "$source_line"; cat "$rc" 2>/dev/null || true; } > "$rc.tmp"
        mv "$rc.tmp" "$rc"
    fi
done
