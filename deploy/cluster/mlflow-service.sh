#!/usr/bin/env bash
# Runs the MLflow server on the head for as long as Ray runs there, so that `ray stop`, and with
# it `ray down` (which runs `ray stop` on the head and nothing else on Ray's local provider),
# stops MLflow too. cluster.yaml and cluster-local.yaml start it after `ray start --head`:
#
#   mlflow-service.sh mlflow server --host 127.0.0.1 --port 5000 ...   start (again)
#   mlflow-service.sh stop                                              stop it now
#
# Start stops a service left from an earlier start, then runs a small watcher in the background
# in its own process group. The watcher starts the given command (MLflow: its server process
# and the web server's workers, all in that group) and checks every 2 s that Ray's GCS process
# on this node, found at start, is still alive. When it is gone (`ray stop`, `ray down`, a
# crash), or when MLflow exits, or on SIGTERM, the watcher stops the whole group: SIGTERM, then
# SIGKILL after 10 s. A Ray restart by `ray up` therefore also restarts MLflow. It does not
# restart an MLflow that died while Ray runs.
#
# Files, in $RESNET_SEARCH_MLFLOW_DIR (default ~/mlflow): server.log, the server's output;
# service.pid, the watcher's pid (its process group id too).
set -euo pipefail

self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
dir=${RESNET_SEARCH_MLFLOW_DIR:-$HOME/mlflow}
pidfile=$dir/service.pid
# The process `ray stop` ends on a head. Only the tests name another one.
watched=${RESNET_SEARCH_MLFLOW_WATCH:-gcs_server}
interval=2

stop_previous() {
    local pid
    pid=$(cat "$pidfile" 2>/dev/null) || return 0
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
            && grep -qF "mlflow-service.sh" "/proc/$pid/cmdline" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 60); do  # the watcher stops its group within 10 s, then exits
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    fi
    rm -f "$pidfile"
}

watch() {
    # $1: the pid to outlive no longer than; the rest: the server's command line.
    local ray_pid=$1 server
    shift
    stopping=""
    stop_group() {
        [ -n "$stopping" ] && return
        stopping=1
        trap '' TERM INT HUP
        if [ "$(cat "$pidfile" 2>/dev/null)" = "$$" ]; then
            rm -f "$pidfile"
        fi
        kill -TERM -- -$$ 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$server" 2>/dev/null || break
            sleep 0.25
        done
        kill -KILL -- -$$ 2>/dev/null || true  # what is left of the group, the watcher last
    }
    trap 'stop_group' TERM INT HUP
    echo $$ > "$pidfile"
    "$@" < /dev/null &
    server=$!
    echo "mlflow-service.sh: started \`$*\` (pid $server); it stops with Ray's $watched" \
         "(pid $ray_pid)"
    while kill -0 "$ray_pid" 2>/dev/null && kill -0 "$server" 2>/dev/null; do
        sleep "$interval" & wait $! || true
    done
    if kill -0 "$server" 2>/dev/null; then
        echo "mlflow-service.sh: Ray's $watched (pid $ray_pid) is gone: stopping MLflow"
    else
        echo "mlflow-service.sh: the server exited"
    fi
    stop_group
}

case "${1:-}" in
    "")
        echo "usage: mlflow-service.sh COMMAND... | stop" >&2
        exit 2
        ;;
    stop)
        stop_previous
        ;;
    _watch)
        shift
        watch "$@"
        ;;
    *)
        mkdir -p "$dir"
        stop_previous
        ray_pid=$(pgrep -n -u "$(id -u)" -x "$watched" || true)
        if [ -z "$ray_pid" ]; then
            echo "mlflow-service.sh: no $watched process of $(id -un) here: start Ray first" >&2
            exit 1
        fi
        # setsid: the watcher leads a new session and process group, detached from the SSH
        # session of `ray up`, and the group is what it stops.
        setsid bash "$self" _watch "$ray_pid" "$@" \
            < /dev/null >> "$dir/server.log" 2>&1 &
        echo $! > "$pidfile"
        echo "MLflow starts in the background (log: $dir/server.log); it stops with Ray"
        ;;
esac
