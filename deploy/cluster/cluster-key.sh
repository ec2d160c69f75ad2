#!/usr/bin/env bash
# The SSH key of cluster-local.yaml: a key for the cluster alone, never your personal one.
# `ray up` copies the cluster file's ssh_private_key to the head (~/ray_bootstrap_key.pem), where
# Ray's autoscaler uses it to reach the workers; anyone who can run code on the head (anyone with
# the Ray token) can read it there. With this key, what leaks is access to the cluster's machines
# as YOUR_SSH_USER, revocable in one step, and not every machine your own key opens.
#
#   cluster-key.sh                        make the key if there is none (ed25519, no passphrase:
#                                         the autoscaler uses it unattended), mode 0600
#   cluster-key.sh USER@HOST ...          that, then authorize it on each machine (ssh-copy-id,
#                                         which logs in with your usual key or password)
#   cluster-key.sh --revoke USER@HOST ... remove it from each machine's ~/.ssh/authorized_keys
#
# The key: $RESNET_SEARCH_CLUSTER_KEY, default ~/.ssh/resnet-search-cluster (the path
# cluster-local.yaml names), and its .pub beside it.
set -euo pipefail

key=${RESNET_SEARCH_CLUSTER_KEY:-$HOME/.ssh/resnet-search-cluster}

make_key() {
    if [ -e "$key" ]; then
        chmod 600 "$key"
        echo "kept the cluster key $key"
        return
    fi
    if [ ! -d "$(dirname "$key")" ]; then
        mkdir -p "$(dirname "$key")"
        chmod 700 "$(dirname "$key")"
    fi
    ssh-keygen -q -t ed25519 -N "" -C "resnet-search cluster key ($(hostname), $(date +%F))" \
        -f "$key"
    chmod 600 "$key"
    echo "new cluster key $key"
}

if [ "${1:-}" = "--revoke" ]; then
    shift
    [ -s "$key.pub" ] || { echo "cluster-key.sh: no $key.pub to revoke" >&2; exit 1; }
    # The key's base64 body identifies its line; the file keeps its mode (cat, not mv).
    body=$(awk '{print $2}' "$key.pub")
    for target in "$@"; do
        ssh "$target" "f=~/.ssh/authorized_keys; [ -f \"\$f\" ] || exit 0;
            grep -vF -- '$body' \"\$f\" > \"\$f.tmp\" || true; cat \"\$f.tmp\" > \"\$f\";
            rm -f \"\$f.tmp\""
        echo "revoked the cluster key on $target"
    done
    exit 0
fi

make_key
for target in "$@"; do
    ssh-copy-id -i "$key.pub" "$target"
done
