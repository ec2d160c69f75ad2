#!/usr/bin/env bash
# Runs the MLflow server on the head as a checked service: a supervisor restarts it when it
# fails, and the head's start commands wait until it answers /health, so that `ray up` fails
# (non-zero, with the server's last log lines) instead of reporting a cluster without MLflow.
# cluster.yaml and cluster-local.yaml start it after `ray start --head`:
#
#   mlflow-service.sh mlflow server --host 127.0.0.1 --port 5000 ...   start (again)
#   mlflow-service.sh wait http://127.0.0.1:5000 [SECONDS]              wait for /health
#   mlflow-service.sh stop                                              stop it now
#   mlflow-service.sh unit                                              print the systemd unit
#
# Two supervisors, chosen by RESNET_SEARCH_MLFLOW_SUPERVISOR (default auto: systemd where the
# machine booted with systemd and sudo needs no password, as on the AWS image; loop otherwise):
#
# systemd   the unit resnet-search-mlflow runs the command (Restart=always, 2 s apart, never
#           giving up). On AWS `ray down` deletes the instance, so nothing ties it to Ray.
# loop      a small watcher in the background, in its own session, restarts the server when it
#           exits (2 s, growing to 30 s while it keeps failing), each start in a process group of
#           its own, so that what is left of a dead server (MLflow's web workers, which hold the
#           port) is stopped before the next start. It also checks every 2 s that Ray's GCS
#           process on this node, found at start, is alive; once it is gone (`ray stop`, and so
#           `ray down` on Ray's local provider, which runs `ray stop` on the head and nothing
#           else), or on SIGTERM, it stops the server: SIGTERM, then SIGKILL after 10 s.
#           cluster-local.yaml uses this one, for the tie to Ray.
#
# `wait` polls URL/health until it answers 200, for SECONDS (default 300: a first start on an
# empty PostgreSQL runs MLflow's migrations). It gives up early once the server has exited
# $RESNET_SEARCH_MLFLOW_START_TRIES times (default 3) since its start: a bad --backend-store-uri
# fails the same way every time. Giving up prints the last 40 lines of the server's log.
#
# Files, in $RESNET_SEARCH_MLFLOW_DIR (default ~/mlflow): server.log, the server's output (every
# start appends); service.pid, the loop watcher's pid; exits, how often the server exited since
# its start; supervisor, which one runs it; server.sh, the command systemd runs.
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
dir=${RESNET_SEARCH_MLFLOW_DIR:-$HOME/mlflow}
pidfile=$dir/service.pid
log=$dir/server.log
unit_name=resnet-search-mlflow
unit_file=/etc/systemd/system/$unit_name.service
# The process `ray stop` ends on a head. Only the tests name another one.
watched=${RESNET_SEARCH_MLFLOW_WATCH:-gcs_server}
interval=2

supervisor() {
    local chosen=${RESNET_SEARCH_MLFLOW_SUPERVISOR:-auto}
    if [ "$chosen" = auto ]; then
        # sd_booted(3)'s test: systemd is PID 1 exactly when this directory exists.
        if [ -d /run/systemd/system ] && sudo -n true 2>/dev/null; then
            chosen=systemd
        else
            chosen=loop
        fi
    fi
    case $chosen in
        systemd|loop) echo "$chosen" ;;
        *) echo "mlflow-service.sh: RESNET_SEARCH_MLFLOW_SUPERVISOR must be auto, systemd or" \
                "loop, not '$chosen'" >&2; exit 2 ;;
    esac
}

unit() {
    cat <<UNIT
# Written by resnet-search deploy/cluster/mlflow-service.sh on every start.
[Unit]
Description=resnet-search MLflow server
After=network-online.target
Wants=network-online.target
# Never stop restarting: the start commands' /health wait is what reports a broken server.
StartLimitIntervalSec=0

[Service]
User=$(id -un)
WorkingDirectory=$HOME
ExecStart=/bin/bash $dir/server.sh
Restart=always
RestartSec=2
# The server and its web workers, all of them, on stop and before each restart.
KillMode=control-group
TimeoutStopSec=10
StandardOutput=append:$log
StandardError=inherit
UNIT
}

write_server_script() {
    # systemd starts the server with an empty environment: keep the caller's PATH (the virtual
    # environment) and MLflow's settings (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, ...).
    local name
    {
        echo "#!/usr/bin/env bash"
        echo "# Written by mlflow-service.sh on every start: the server's command, its environment."
        printf 'export PATH=%q\n' "$PATH"
        for name in $(compgen -e | grep '^MLFLOW_' || true); do
            printf 'export %s=%q\n' "$name" "${!name}"
        done
        printf 'exec'
        printf ' %q' "$@"
        printf '\n'
    } > "$dir/server.sh.tmp"
    mv "$dir/server.sh.tmp" "$dir/server.sh"
}

stop_previous() {
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && grep -qF "mlflow-service.sh" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do  # the watcher stops the server within 10 s, then exits
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    fi
    rm -f "$pidfile"
}

watch() {
    # $1: the pid to outlive no longer than; the rest: the server's command line.
    local ray_pid=$1 server="" status exits=0 delay
    shift
    stopping=""
    stop_server() {
        [ -n "$server" ] || return 0
        kill -TERM -- "-$server" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 -- "-$server" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL -- "-$server" 2>/dev/null || true
    }
    stop_all() {
        [ -n "$stopping" ] && return
        stopping=1
        trap '' TERM INT HUP
        if [ "$(cat "$pidfile" 2>/dev/null)" = "$$" ]; then
            rm -f "$pidfile"
        fi
        stop_server
        exit 0
    }
    start_server() {
        # setsid: a process group of the server's own, which stop_server signals whole.
        setsid "$@" < /dev/null &
        server=$!
        echo "mlflow-service.sh: started \`$*\` (pid $server); it stops with Ray's $watched" \
             "(pid $ray_pid)"
    }
    trap 'stop_all' TERM INT HUP
    echo $$ > "$pidfile"
    echo 0 > "$dir/exits"
    start_server "$@"
    while kill -0 "$ray_pid" 2>/dev/null; do
        if ! kill -0 "$server" 2>/dev/null; then
            status=0
            wait "$server" || status=$?
            exits=$((exits + 1))
            echo "$exits" > "$dir/exits"
            delay=$((exits * interval < 30 ? exits * interval : 30))
            echo "mlflow-service.sh: the server exited (status $status, $exits time(s) since" \
                 "its start): restarting it in ${delay} s"
            stop_server  # its web workers may outlive it and hold the port
            sleep "$delay" & wait $! || true
            kill -0 "$ray_pid" 2>/dev/null || break
            start_server "$@"
        fi
        sleep "$interval" & wait $! || true
    done
    echo "mlflow-service.sh: Ray's $watched (pid $ray_pid) is gone: stopping MLflow"
    stop_all
}

server_exits() {
    if [ "$(cat "$dir/supervisor" 2>/dev/null)" = systemd ]; then
        systemctl show --property NRestarts --value "$unit_name" 2>/dev/null || echo 0
    else
        cat "$dir/exits" 2>/dev/null || echo 0
    fi
}

health() {
    # python3, not curl: every node has it (the head's virtual environment is made from it).
    python3 - "$1/health" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

wait_healthy() {
    local url=${1%/} seconds=${2:-300} tries=${RESNET_SEARCH_MLFLOW_START_TRIES:-3} deadline
    deadline=$((SECONDS + seconds))
    while [ "$SECONDS" -lt "$deadline" ]; do
        if health "$url"; then
            echo "MLflow answers at $url/health"
            return 0
        fi
        if [ "$(server_exits)" -ge "$tries" ]; then
            fail "MLflow exited $(server_exits) time(s) since its start without answering $url/health"
        fi
        if [ "$(cat "$dir/supervisor" 2>/dev/null)" = loop ] \
                && ! kill -0 "$(cat "$pidfile" 2>/dev/null || echo x)" 2>/dev/null; then
            fail "MLflow's watcher is gone (Ray stopped?), and $url/health does not answer"
        fi
        sleep 1
    done
    fail "MLflow did not answer $url/health within $seconds s"
}

fail() {
    {
        echo "mlflow-service.sh: $*; the last lines of $log:"
        tail -n 40 "$log" 2>/dev/null | sed 's/^/    /'
    } >&2
    exit 1
}

case "${1:-}" in
    "")
        echo "usage: mlflow-service.sh COMMAND... | wait URL [SECONDS] | stop | unit" >&2
        exit 2
        ;;
    stop)
        if [ "$(cat "$dir/supervisor" 2>/dev/null)" = systemd ]; then
            sudo systemctl stop "$unit_name"
        fi
        stop_previous
        ;;
    wait)
        [ $# -ge 2 ] || { echo "usage: mlflow-service.sh wait URL [SECONDS]" >&2; exit 2; }
        wait_healthy "$2" "${3:-300}"
        ;;
    unit)
        unit
        ;;
    _watch)
        shift
        watch "$@"
        ;;
    *)
        mkdir -p "$dir"
        how=$(supervisor)
        stop_previous
        if [ "$how" = systemd ]; then
            write_server_script "$@"
            unit | sudo tee "$unit_file" > /dev/null
            sudo systemctl daemon-reload
            echo systemd > "$dir/supervisor"
            sudo systemctl restart "$unit_name"  # resets its restart count (NRestarts)
            echo "MLflow runs as the systemd service $unit_name (log: $log)"
            exit 0
        fi
        ray_pid=$(pgrep -n -u "$(id -u)" -x "$watched" || true)
        if [ -z "$ray_pid" ]; then
            echo "mlflow-service.sh: no $watched process of $(id -un) here: start Ray first" >&2
            exit 1
        fi
        echo loop > "$dir/supervisor"
        echo 0 > "$dir/exits"
        # setsid: the watcher leads a new session, detached from the SSH session of `ray up`.
        setsid bash "$self" _watch "$ray_pid" "$@" < /dev/null >> "$log" 2>&1 &
        echo $! > "$pidfile"
        echo "MLflow starts in the background (log: $log); it is restarted when it fails and" \
             "stops with Ray"
        ;;
esac
