#!/usr/bin/env bash
# The Ray token of the cluster: ~/.ray/auth_token, which Ray reads when RAY_AUTH_MODE=token and
# cluster.yaml / cluster-local.yaml copy to every node (file_mounts, file mode included).
#
#   auth-token.sh new      on your machine, once: make a token if there is none; either way the
#                          file ends up mode 0600 and ~/.ray 0700. Use it instead of
#                          `ray get-auth-token --generate`, which (Ray 2.60) writes the file
#                          with your umask, usually 0644, and keeps any token already there.
#   auth-token.sh rotate   on your machine: replace the token with a new one (mode 0600, an
#                          atomic rename), then run `ray up` on the cluster file: the token is
#                          part of Ray's config hash, so Ray restarts on the head with it and the
#                          head's autoscaler re-runs setup and Ray's start on every worker.
#   auth-token.sh check    on a node (a setup command): the copied token must be there; makes it
#                          0600 and ~/.ray 0700 whatever mode it came with.
#
# A token is 32 random bytes in hex, as Ray's own (secrets.token_hex(32)). Nothing secret is
# printed. Ray prefers RAY_AUTH_TOKEN and RAY_AUTH_TOKEN_PATH to the file; with either set,
# new and rotate refuse, as the cluster would get a token other than the one Ray uses here.
set -euo pipefail

dir=$HOME/.ray
file=$dir/auth_token

die() {
    echo "auth-token.sh: $*" >&2
    exit "${code:-1}"
}

refuse_overrides() {
    local name
    for name in RAY_AUTH_TOKEN RAY_AUTH_TOKEN_PATH; do
        if [ -n "${!name:-}" ]; then
            code=2 die "$name is set, and Ray uses it before $file, which is the token the" \
                "cluster files copy to the nodes: unset it first"
        fi
    done
}

private() {
    chmod 700 "$dir"
    chmod 600 "$file"
}

write_new() {
    local token tmp
    token=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    [[ $token =~ ^[0-9a-f]{64}$ ]] || die "could not read 32 random bytes from /dev/urandom"
    mkdir -p "$dir"
    chmod 700 "$dir"
    # mktemp creates the file 0600 under any umask; the rename replaces the old token at once.
    tmp=$(mktemp "$dir/.auth_token.XXXXXX")
    printf '%s' "$token" > "$tmp"
    chmod 600 "$tmp"
    mv -f "$tmp" "$file"
}

case "${1:-}" in
    new)
        refuse_overrides
        if [ -s "$file" ]; then
            private
            echo "kept the token in $file (mode 0600); \`auth-token.sh rotate\` replaces it"
        else
            write_new
            echo "new token in $file (mode 0600)"
        fi
        ;;
    rotate)
        refuse_overrides
        write_new
        echo "new token in $file (mode 0600); now \`ray up\` your cluster file to restart Ray" \
             "on every node with it"
        ;;
    check)
        [ -s "$file" ] || die "no token at $file: the cluster file's file_mounts copy yours" \
            "(auth-token.sh new on your machine, then ray up)"
        private
        ;;
    *)
        code=2 die "usage: auth-token.sh new | rotate | check"
        ;;
esac
