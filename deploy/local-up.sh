#!/usr/bin/env bash
# `ray up cluster-local.yaml` for real, on this machine: a head at 10.77.0.1 and a worker at
# 10.77.0.2, each a Linux "machine" made of an sshd (Debian's openssh-server) in namespaces of its
# own, reached over SSH by Ray's local provider with the cluster's own key. It runs the file's
# own setup and start commands (the v1 autoscaler: RAY_UP_enable_autoscaler_v2=0), submits a
# smoke search with `ray job submit`, checks that the head's MLflow server (over HTTP) and Optuna
# study (on the head) hold every trial, runs `ray down`, and checks that nothing of the cluster is
# left: no Ray process on either node, no MLflow, its ports closed. Every step prints its time.
# Linux, as root; docs/cluster.md ("ray up on this machine") has a run's output and times.
#
#   bash deploy/local-up.sh              the whole run (about 6 minutes once the nodes' virtual
#                                        environment exists; the first run installs it, ~5 more)
#   bash deploy/local-up.sh --worktree   the same, with the nodes given the working tree as it
#                                        would be committed (tracked and untracked files that git
#                                        does not ignore) instead of the commit at HEAD
#   bash deploy/local-up.sh --prepare    the fast pieces only (~10 s): packages, the node account,
#                                        the token and key, build/cluster, the filled-in cluster
#                                        file, the wheelhouse's key, both machines with one SSH
#                                        login to each, and the cleanup (no Ray)
#   bash deploy/local-up.sh --purge      remove what the runs keep: the node account and its home
#                                        (the virtual environment), the state directory
#
# Isolation, so that the file's commands run as they are on a machine shared with other Ray
# clusters:
#   - the head (and `ray up`) live in a network namespace of their own, the worker in another,
#     joined by a veth pair (10.77.0.0/24) and nothing else: the file's fixed ports (22, 6379,
#     8076, 8265, 5000) meet no other process's, and no node reaches the internet (the install
#     is offline or fails). Why not 127.0.0.1 and 127.0.0.2 on one loopback: Ray 2.60 binds a
#     node's servers to 127.0.0.1 when that is its address, and to every address otherwise, so
#     the worker's raylet cannot bind --object-manager-port=8076 beside the head's ("Failed to
#     start the grpc server. The specified port is 8076"), nor its workers' ports;
#   - the nodes' account ($RESNET_SEARCH_LOCAL_USER, default rscluster) is not root, and each
#     node's sshd runs in a PID namespace of its own with a private /tmp: the file's `ray stop`
#     (every start command, and `ray down`) sees and stops that node's Ray only;
#   - `ray up` runs with HOME=$STATE/ctl/home: its ~/.ray/auth_token (deploy/cluster/auth-token.sh
#     new) and ~/.ssh/resnet-search-cluster (deploy/cluster/cluster-key.sh) are the cluster's,
#     not the caller's. The head's dashboard and MLflow (127.0.0.1 in the head's namespace) are
#     reached as on the head itself, without `ray dashboard`'s port forward.
# Head and worker share the account's home (/home/rscluster), as two machines with one NFS
# home would: the worker's install.sh finds the head's virtual environment complete.
#
# What the runs keep (so that the next is fast): the node account's home with ~/venv, the
# wheelhouse in $STATE/shared/resnet-search/wheels/KEY (filled once from this machine's pip
# index or cache with the lock's hashes checked; the head's `install.sh --build` then finds its
# COMPLETE file and downloads nothing), and the sshd host key. Each run starts from empty stores
# (MLflow, Optuna, Ray Tune's storage) and ends with every process gone.
#
# Environment: RESNET_SEARCH_LOCAL_STATE (default /var/tmp/resnet-search-local),
# RESNET_SEARCH_LOCAL_USER (default rscluster), RAY (the ray CLI; default: `ray` on PATH, else
# the checkout's .venv), RESNET_SEARCH_LOCAL_JOB_TIMEOUT (seconds, default 600).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self=$here/$(basename "${BASH_SOURCE[0]}")
top=$(cd "$here/.." && pwd)
state=${RESNET_SEARCH_LOCAL_STATE:-/var/tmp/resnet-search-local}
user=${RESNET_SEARCH_LOCAL_USER:-rscluster}
home=/home/$user   # cluster-local.yaml names /home/YOUR_SSH_USER for the head's stores
shared=$state/shared
ctl=$state/ctl
# Two "machines" joined by a veth pair, each with its own network namespace (see below).
head_ip=10.77.0.1
worker_ip=10.77.0.2
job_timeout=${RESNET_SEARCH_LOCAL_JOB_TIMEOUT:-600}
if [ -z "${RAY:-}" ]; then
    RAY=$(command -v ray || true)
    [ -n "$RAY" ] || RAY=$top/.venv/bin/ray
fi
ray_python=$(dirname "$RAY")/python   # has setuptools (artifact.sh) and pip (the wheelhouse)
search_name=local-up
trials=4

started=${LOCAL_UP_STARTED:-$(date +%s)}
export LOCAL_UP_STARTED=$started
log() { printf '[local-up %4ss] %s\n' "$(($(date +%s) - started))" "$*"; }
die() { log "FAILED: $*" >&2; exit 1; }

step() {
    # step NAME FUNCTION...: run it, print its time.
    local name=$1 t0 rc=0
    shift
    t0=$(date +%s)
    log "==> $name"
    "$@" || rc=$?
    log "<== $name: $(($(date +%s) - t0)) s$([ $rc -eq 0 ] || echo ", FAILED (exit $rc)")"
    return $rc
}

as_user() { runuser -u "$user" -- "$@"; }

# ---------------------------------------------------------------------------------------------
# On the machine (outside the cluster's namespace)

preflight() {
    [ "$(id -u)" = 0 ] || die "run as root (it creates an account, sshds and namespaces)"
    [ "$(uname -s)" = Linux ] || die "Linux only"
    command -v unshare >/dev/null && command -v ip >/dev/null || die "needs unshare and ip"
    [ -x "$RAY" ] || die "no ray CLI at $RAY (set RAY=...)"
    echo "ray CLI: $RAY"
    unshare --net --pid --fork --mount --mount-proc true \
        || die "cannot create namespaces here (unshare --net --pid --mount)"
}

packages() {
    local missing=()
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v rsync >/dev/null || missing+=(rsync)   # Ray's file_mounts
    /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "openssh-server, rsync and python3-venv are installed"
        return
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
                 --no-install-recommends "${missing[@]}"; }
}

account() {
    if ! getent passwd "$user" >/dev/null; then
        useradd --create-home --home-dir "$home" --shell /bin/bash "$user"
        echo "created the account $user"
    fi
    # Key-only login: '*' is no password, but not a locked account (sshd refuses those).
    usermod -p '*' "$user"
    install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
    [ "$(getent passwd "$user" | cut -d: -f6)" = "$home" ] || die "$user's home is not $home"
}

keys() {
    # The caller's side of the cluster file: its own HOME, so its token and key are the
    # cluster's alone (the project's scripts make them, as a user would).
    install -d -m 700 "$ctl/home"
    HOME=$ctl/home bash "$top/deploy/cluster/auth-token.sh" new
    HOME=$ctl/home bash "$top/deploy/cluster/cluster-key.sh"
    # What `cluster-key.sh USER@HOST` does with ssh-copy-id, done as root: both nodes share it.
    install -m 600 -o "$user" -g "$user" "$ctl/home/.ssh/resnet-search-cluster.pub" \
        "$home/.ssh/authorized_keys"
    install -d -m 700 "$state/sshd"
    [ -s "$state/sshd/host_ed25519" ] || ssh-keygen -q -t ed25519 -N "" -f "$state/sshd/host_ed25519"
    local name ip
    for name in head worker; do
        ip=$head_ip
        [ $name = head ] || ip=$worker_ip
        cat > "$state/sshd/$name.conf" <<CONF
# deploy/local-up.sh: the $name node's sshd, on $ip inside the cluster's network namespace.
ListenAddress $ip:22
HostKey $state/sshd/host_ed25519
PidFile none
AllowUsers $user
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
PrintMotd no
AllowTcpForwarding local
X11Forwarding no
MaxSessions 50
MaxStartups 50
LogLevel ERROR
CONF
    done
    mkdir -p /run/sshd
    /usr/sbin/sshd -t -f "$state/sshd/head.conf"
}

artifact() {
    # build/cluster, what file_mounts copy, next to the filled-in cluster file (`ray up` runs
    # in $ctl, where the file's relative "build/cluster" points).
    local out=$ctl/build/cluster
    if [ -z "${worktree:-}" ]; then
        (cd "$top" && PYTHON=$ray_python bash deploy/cluster/artifact.sh "$out")
        return
    fi
    # The working tree as it would be committed, committed in a scratch repository (the
    # checkout's own history and index are not touched), with HEAD's date.
    local snap
    snap=$(mktemp -d "$state/.snapshot.XXXXXX")
    (cd "$top" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$top" && while IFS= read -r -d '' f; do
            [ -e "$f" ] && printf '%s\0' "$f"; done) |
        (cd "$top" && xargs -0 cp --parents -t "$snap")
    local date
    date=$(git -C "$top" log -1 --format=%cI)
    (cd "$snap" && git init -q && git add -A &&
        GIT_AUTHOR_NAME=local-up GIT_AUTHOR_EMAIL=local-up@localhost GIT_AUTHOR_DATE=$date \
        GIT_COMMITTER_NAME=local-up GIT_COMMITTER_EMAIL=local-up@localhost \
        GIT_COMMITTER_DATE=$date git commit -q -m "working tree of $top" &&
        PYTHON=$ray_python bash deploy/cluster/artifact.sh "$out")
    rm -rf "$snap"
}

config() {
    # cluster-local.yaml with its placeholders filled in; the checkout's file is not changed.
    sed -e "s/YOUR_HEAD_IP/$head_ip/g" \
        -e "s/worker_ips: \[YOUR_WORKER_IP_1, YOUR_WORKER_IP_2\]/worker_ips: [$worker_ip]/" \
        -e "s/YOUR_SSH_USER/$user/g" -e "s#YOUR_SHARED_DIR#$shared#g" \
        -e "s#ssh_private_key: ~/.ssh/resnet-search-cluster#ssh_private_key: $ctl/home/.ssh/resnet-search-cluster#" \
        "$top/cluster-local.yaml" > "$ctl/cluster-local.yaml"
    if grep -v '^ *#' "$ctl/cluster-local.yaml" | grep -n 'YOUR_'; then
        die "placeholders left in $ctl/cluster-local.yaml (above)"
    fi
    grep -A3 '^provider:' "$ctl/cluster-local.yaml"
    # Ray hands ssh_private_key to ssh as it is written, and ssh expands ~ with the account's home
    # from the password database, not $HOME: the key is named by its full path here.
    grep -q "ssh_private_key: $ctl/home/" "$ctl/cluster-local.yaml" || die "ssh_private_key not filled in"
    grep 'YOUR_\|resnet-search/wheels\|RESNET_SEARCH_STORAGE' "$ctl/cluster-local.yaml" | grep -v '^ *#' || true
}

wheelhouse() {
    # install.sh's KEY: the lock's sha256 (16 digits), the nodes' Python tag and machine. The
    # nodes' Python is the account's python3 (/usr/bin/python3 here).
    local lock=$ctl/build/cluster/deploy/cluster/requirements.lock key dir
    [ -s "$lock" ] || die "no $lock: build/cluster lacks the lock (is it committed? --worktree)"
    key=$(sha256sum "$lock" | cut -c1-16)-$(as_user /usr/bin/python3 -c \
        'import platform, sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{platform.machine()}")')
    dir=$shared/resnet-search/wheels/$key
    install -d -o "$user" -g "$user" "$shared" "$shared/resnet-search"
    if [ -e "$dir/COMPLETE" ]; then
        echo "wheelhouse $dir: complete ($(ls "$dir" | grep -c '\.whl$') wheels)"
        return
    fi
    if [ -n "${prepare_only:-}" ]; then
        echo "wheelhouse $dir: not there yet (the full run fills it; --prepare downloads nothing)"
        return
    fi
    # As the head's `install.sh --build` would, from this machine's pip configuration (its
    # local index or cache first): every file checked against the lock's hashes.
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    "$ray_python" -m pip download --quiet --disable-pip-version-check --only-binary :all: \
        --no-deps --require-hashes -r "$lock" -d "$dir.partial"
    cp "$lock" "$dir.partial/requirements.lock"
    date -u +%FT%TZ > "$dir.partial/COMPLETE"
    mv "$dir.partial" "$dir"
    echo "wheelhouse $dir: filled ($(ls "$dir" | grep -c '\.whl$') wheels)"
}

fresh_stores() {
    # Each run's search starts from empty stores (the venv stays).
    rm -rf "$home/resnet-search-data" "$home/mlflow" "$shared/resnet-search/ray"
    rm -rf "$state/nodes" "$ctl/tmp"
    install -d -m 1777 "$state/nodes/head/tmp" "$state/nodes/worker/tmp" "$ctl/tmp"
}

leftovers() {
    # Processes of the nodes' account, one per line (pid, comm, args).
    ps -u "$user" -o pid=,comm=,args= 2>/dev/null || true
}

final_check() {
    local left
    for _ in $(seq 1 20); do
        left=$(leftovers)
        [ -z "$left" ] && break
        sleep 0.5
    done
    if [ -n "$left" ]; then
        echo "$left"
        die "processes of $user are left (above)"
    fi
    echo "no process of $user is left on this machine"
}

purge() {
    if getent passwd "$user" >/dev/null; then
        [ -z "$(leftovers)" ] || die "$user still runs processes: $(leftovers | head -3)"
        userdel -r "$user" 2>/dev/null || userdel "$user"
        rm -rf "$home"
    fi
    rm -rf "$state"
    echo "removed $user, $home and $state"
}

# ---------------------------------------------------------------------------------------------
# Inside the cluster's network namespace (and a mount namespace with a private /tmp)

node_pids=()

start_node() {
    # start_node NAME [--net]: its sshd, in a PID namespace of its own (so `ray stop` there sees
    # only this node) with a private /tmp (Ray's session directory, sockets, ssh control paths);
    # --net: and a network namespace of its own, whose address the caller sets up (sshd starts
    # once it is there). --kill-child: when unshare goes, the namespace's init and so every
    # process in it goes. setpriv --pdeathsig: and when this script goes, unshare goes.
    local name=$1 ip=$head_ip
    [ "$name" = head ] || ip=$worker_ip
    setpriv --pdeathsig KILL -- unshare ${2:-} --pid --fork --kill-child --mount --mount-proc \
        --propagation private -- \
        bash -c 'mount --bind "$1" /tmp || exit 1
                 until ip -o addr show | grep -q " $4/"; do sleep 0.1; done
                 /usr/sbin/sshd -D -e -f "$2" 2>> "$3" &
                 while :; do wait; sleep 1; done' \
        node "$state/nodes/$name/tmp" "$state/sshd/$name.conf" "$state/nodes/$name/sshd.log" \
        "$ip" &
    node_pids+=($!)
}

link_worker() {
    # The wire between the two machines: a veth pair, the head's end here (the namespace of
    # `ray up` and the head), the worker's end in the worker's namespace. A default route on
    # each end, so that Ray's own address detection (the source address of a route to 8.8.8.8)
    # finds the machine's address; nothing beyond the pair answers.
    local init=""
    for _ in $(seq 1 50); do
        init=$(pgrep -P "${node_pids[1]}" | head -n 1)
        [ -n "$init" ] && break
        sleep 0.1
    done
    [ -n "$init" ] || die "the worker's namespace did not start"
    ip link add rs-head type veth peer name rs-worker netns "$init"
    ip addr add "$head_ip/24" dev rs-head
    ip link set rs-head up
    ip route add default dev rs-head
    nsenter -t "$init" -n sh -c "ip link set lo up && ip addr add $worker_ip/24 dev rs-worker &&
        ip link set rs-worker up && ip route add default dev rs-worker"
}

stop_nodes() {
    local pid
    # SIGKILL: unshare waits on the namespace's init, which ignores SIGTERM (as any PID 1 does
    # for signals it has no handler for); unshare's death kills that init (--kill-child), and
    # the init's death kills every process of its namespace.
    for pid in "${node_pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${node_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    node_pids=()
}

ssh_node() {
    # ssh_node IP COMMAND: as Ray's local provider does, with the cluster's key.
    local ip=$1
    shift
    ssh -i "$ctl/home/.ssh/resnet-search-cluster" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
        -o ConnectTimeout=5 "$user@$ip" "$@"
}

nodes_up() {
    start_node head
    start_node worker --net
    link_worker
    local ip ok
    for ip in $head_ip $worker_ip; do
        ok=""
        for _ in $(seq 1 50); do
            if ssh_node "$ip" 'echo "$(id -un)@$(echo $SSH_CONNECTION | cut -d" " -f3): $(ps -e --no-headers | wc -l) processes in its PID namespace"' 2>/dev/null; then
                ok=1
                break
            fi
            sleep 0.2
        done
        [ -n "$ok" ] || die "no SSH login to $user@$ip (log: $state/nodes/*/sshd.log)"
    done
}

ray_cli() {
    # The ray CLI as a user of the cluster file: its HOME (token, key), token auth on, and the
    # v1 autoscaler (RAY_UP_enable_autoscaler_v2=0, as cluster-local.yaml's header says: Ray
    # 2.60's v2, `ray up`'s default, never launches the local provider's workers).
    (cd "$ctl" && HOME=$ctl/home RAY_AUTH_MODE=token RAY_UP_enable_autoscaler_v2=0 "$RAY" "$@")
}

ray_up() {
    ray_cli up -y --no-config-cache cluster-local.yaml
}

wait_worker() {
    # The head's autoscaler sets the worker up over SSH (setup, then Ray's start); the search is
    # submitted once the worker is in the cluster, under its own address.
    local deadline=$((SECONDS + 300)) nodes
    while [ $SECONDS -lt $deadline ]; do
        # Ray's state API over HTTP, with the token, as `ray list nodes` would ask it.
        nodes=$(python3 - "$ctl/home/.ray/auth_token" <<'PY' 2>/dev/null || true
import json, sys, urllib.request
token = open(sys.argv[1]).read().strip()
request = urllib.request.Request("http://127.0.0.1:8265/api/v0/nodes?limit=100",
                                 headers={"Authorization": "Bearer " + token})
with urllib.request.urlopen(request, timeout=10) as answer:
    body = json.load(answer)
found = []
def walk(value):
    if isinstance(value, dict):
        if "node_ip" in value and "state" in value:
            found.append("%s:%s" % (value["node_ip"], value["state"]))
        else:
            for item in value.values():
                walk(item)
    elif isinstance(value, list):
        for item in value:
            walk(item)
walk(body)
print(" ".join(sorted(found)))
PY
)
        if [[ " $nodes " == *" $worker_ip:ALIVE "* ]] && [[ " $nodes " == *" $head_ip:ALIVE "* ]]; then
            echo "Ray nodes: $nodes"
            return 0
        fi
        sleep 3
    done
    echo "Ray nodes: ${nodes:-none}; the autoscaler's log on the head:"
    # (session_latest links to /tmp/ray/..., the head's private /tmp)
    tail -n 40 "$(ls -td "$state"/nodes/head/tmp/ray/session_2*/ | head -n 1)logs/monitor.log" \
        2>/dev/null || true
    return 1
}

job() {
    # The file's documented job, at the smoke scale, on the head (`ray job submit` waits for it
    # and exits non-zero if it fails). The head's dashboard is 127.0.0.1:8265 in this network
    # namespace, so no `ray dashboard` port forward is needed.
    timeout "$job_timeout" bash -c 'cd "$1" && shift && HOME=$1 && shift && export HOME RAY_AUTH_MODE=token && exec "$@"' \
        _ "$ctl" "$ctl/home" "$RAY" job submit --address http://127.0.0.1:8265 \
        --submission-id "$search_name-$started" -- \
        resnet-search run paper-table1 --scale smoke --trials "$trials" --epochs 2 \
        --name "$search_name" --address auto --tracking-uri http://127.0.0.1:5000 \
        --storage "$shared/resnet-search/ray" \
        --optuna-storage "sqlite:///$home/resnet-search-data/optuna.db" \
        --results-dir "$home/resnet-search-data/results" \
        --cpus-per-trial 1 --max-failures 2
}

check_stores() {
    # MLflow over HTTP (the server on the head), the Optuna study on the head (`ray exec`, the
    # head's own Python and storage URL): every Optuna trial finished and has its MLflow run.
    local study
    study=$(ray_cli exec cluster-local.yaml "python -c '
import json, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = \"sqlite:///$home/resnet-search-data/optuna.db\"
out = {}
for summary in optuna.study.get_all_study_summaries(storage):
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    out[summary.study_name] = {t.number: t.state.name for t in study.trials}
print(\"OPTUNA_JSON\", json.dumps(out))
'" 2>&1 | sed -n 's/^.*OPTUNA_JSON //p' | tail -n 1)
    [ -n "$study" ] || die "could not read the Optuna study on the head"
    python3 - "$study" "$trials" <<'PY'
import json, sys, urllib.request

studies, expected = json.loads(sys.argv[1]), int(sys.argv[2])
base = "http://127.0.0.1:5000/api/2.0/mlflow"

def call(path, body=None):
    request = urllib.request.Request(
        base + path, data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)

if len(studies) != 1:
    sys.exit(f"expected one Optuna study, found {sorted(studies)}")
(name, everything), = studies.items()
# WAITING: enqueued (the space's anchors go into the study up front), never asked for; a search
# resumed with more --trials runs them. Every other trial is one the search ran.
trials = {n: s for n, s in everything.items() if s != "WAITING"}
waiting = len(everything) - len(trials)
print(f"Optuna study {name!r} (on the head): {len(trials)} trial(s) run: "
      + ", ".join(f"#{n} {s}" for n, s in sorted(trials.items(), key=lambda x: int(x[0])))
      + (f"; {waiting} more enqueued (WAITING), not asked for" if waiting else ""))
experiments = call("/experiments/search", {"max_results": 100})["experiments"]
runs = []
for experiment in experiments:
    token = None
    while True:
        body = {"experiment_ids": [experiment["experiment_id"]], "max_results": 1000}
        if token:
            body["page_token"] = token
        answer = call("/runs/search", body)
        runs += answer.get("runs", [])
        token = answer.get("next_page_token")
        if not token:
            break
tags = [{t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs]
children = [(t, r) for t, r in zip(tags, runs) if "optuna_trial" in t and t.get("stage", "search") == "search"]
by_trial = {}
for t, r in children:
    by_trial.setdefault(t["optuna_trial"], []).append(r["info"]["status"])
print(f"MLflow (HTTP, {base}): {len(runs)} run(s) in {len(experiments)} experiment(s); "
      f"trial runs: " + ", ".join(f"#{n} {'/'.join(s)}" for n, s in sorted(by_trial.items(), key=lambda x: int(x[0]))))
problems = []
if len(trials) != expected:
    problems.append(f"the study ran {len(trials)} trials, not {expected}")
unfinished = {n: s for n, s in trials.items() if s not in ("COMPLETE", "PRUNED")}
if unfinished:
    problems.append(f"unfinished Optuna trials: {unfinished}")
missing = sorted(set(trials) - set(by_trial), key=int)
if missing:
    problems.append(f"Optuna trials without an MLflow run: {missing}")
extra = sorted(set(by_trial) - set(trials), key=int)
if extra:
    problems.append(f"MLflow runs of trials the study lacks: {extra}")
bad = {n: s for n, s in by_trial.items() if any(x != "FINISHED" for x in s)}
if bad:
    problems.append(f"MLflow trial runs not FINISHED: {bad}")
if problems:
    sys.exit("; ".join(problems))
print(f"every one of the {expected} trials is in the Optuna study and in MLflow")
PY
}

ray_down() {
    ray_cli down -y cluster-local.yaml
}

node_processes() {
    # node_processes NAME: the account's processes in that node's PID namespace, without the
    # sshd sessions of the SSH connections that are closing (Ray keeps them 10 s).
    local name=$1 index=0 ns pid
    [ "$name" = head ] || index=1
    ns=$(readlink "/proc/$(pgrep -P "${node_pids[$index]}" | head -n 1)/ns/pid" 2>/dev/null) || return 0
    for pid in $(pgrep -u "$user" || true); do
        [ "$(readlink "/proc/$pid/ns/pid" 2>/dev/null)" = "$ns" ] || continue
        case $(cat "/proc/$pid/comm" 2>/dev/null) in
            sshd|sshd-session) continue ;;
        esac
        echo "$pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
    done
}

port_open() {
    python3 -c 'import socket, sys
s = socket.socket(); s.settimeout(2)
sys.exit(0 if s.connect_ex((sys.argv[1], int(sys.argv[2]))) == 0 else 1)' "$1" "$2"
}

check_down() {
    # Nothing of the cluster may be left: the head at once (`ray down` ran `ray stop` there,
    # and MLflow's watcher stops the server within seconds), the worker once its Ray has seen
    # the head's GCS go (Ray's local provider runs nothing on the workers at `ray down`).
    local t0=$SECONDS left name port
    for name in head worker; do
        while :; do
            left=$(node_processes "$name")
            [ -z "$left" ] && break
            if [ $((SECONDS - t0)) -ge 180 ]; then
                echo "$left"
                die "the $name still runs the processes above $((SECONDS - t0)) s after ray down"
            fi
            sleep 1
        done
        echo "$name: no process of the cluster left ($((SECONDS - t0)) s after ray down)"
    done
    if pgrep -u "$user" -f 'mlflow|gunicorn|uvicorn|mlflow-service' >/dev/null; then
        die "an MLflow process is left: $(pgrep -a -u "$user" -f 'mlflow|gunicorn|uvicorn')"
    fi
    for address in 127.0.0.1:5000 127.0.0.1:8265 $head_ip:6379 $worker_ip:8076; do
        ! port_open "${address%:*}" "${address#*:}" || die "$address still answers after ray down"
    done
    echo "no MLflow process; MLflow (127.0.0.1:5000), the dashboard (127.0.0.1:8265), the GCS" \
         "($head_ip:6379) and the worker's object manager ($worker_ip:8076) closed"
}

inside() {
    ip link set lo up
    mount --bind "$ctl/tmp" /tmp   # the local provider's state file, ssh control sockets
    trap 'stop_nodes' EXIT
    step "nodes: sshd on $head_ip (head) and $worker_ip (worker), namespaces of their own" nodes_up
    if [ -n "${prepare_only:-}" ]; then
        return 0
    fi
    local rc=0
    step "ray up cluster-local.yaml (the file's setup and start commands)" ray_up || rc=$?
    [ $rc -ne 0 ] || step "the worker joins (the head's autoscaler sets it up)" wait_worker || rc=$?
    [ $rc -ne 0 ] || step "ray job submit -- resnet-search run paper-table1 --scale smoke" job || rc=$?
    [ $rc -ne 0 ] || step "MLflow (HTTP) and the Optuna study hold every trial" check_stores || rc=$?
    # Always: a failed step above still leaves a cluster to take down.
    step "ray down cluster-local.yaml" ray_down || rc=$?
    [ $rc -ne 0 ] || step "nothing left: no Ray, no MLflow, ports closed" check_down || rc=$?
    return $rc
}

# ---------------------------------------------------------------------------------------------

main() {
    worktree="" prepare_only="" mode=run
    for arg in "$@"; do
        case $arg in
            --worktree) worktree=1 ;;
            --prepare) prepare_only=1 ;;
            --purge) mode=purge ;;
            __inside) mode=inside ;;
            *) echo "usage: local-up.sh [--worktree] [--prepare] | --purge" >&2; exit 2 ;;
        esac
    done
    export worktree prepare_only

    case $mode in
        purge)
            step "purge" purge
            ;;
        inside)
            inside
            ;;
        run)
            step "preflight" preflight
            step "packages (openssh-server, rsync, python3-venv)" packages
            step "the nodes' account $user" account
            step "token, cluster key, sshd configuration" keys
            step "build/cluster ($([ -n "$worktree" ] && echo "working tree" || echo "HEAD"))" artifact
            step "cluster-local.yaml filled in: $ctl/cluster-local.yaml" config
            step "wheelhouse (offline install for the nodes)" wheelhouse
            step "fresh stores" fresh_stores
            rc=0
            # The cluster's network namespace (loopback only) and a private /tmp for `ray up`.
            setpriv --pdeathsig KILL -- unshare --net --mount --fork --kill-child --propagation private -- \
                bash "$self" __inside "$@" || rc=$?
            step "cleanup: no process left" final_check || rc=$?
            if [ $rc -eq 0 ]; then
                log "done: $([ -n "$prepare_only" ] && echo "prepared" || echo "ray up, a smoke search, ray down") in $(($(date +%s) - started)) s"
            fi
            exit $rc
            ;;
    esac
}

# One line, so that bash has read all of the script before it runs any of it.
main "$@"; exit
