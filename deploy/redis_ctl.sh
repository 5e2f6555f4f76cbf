#!/usr/bin/env bash
# Runs the Redis that holds test-looper's live state.
#   deploy/redis_ctl.sh start|stop|restart|status
# Port: $REDIS_PORT (default 1115). Data, log and pid under $TEST_LOOPER_INSTALL/redis.
# Memory: $REDIS_MAXMEMORY (default 2gb; 0 = no limit). Past it Redis evicts only keys with a
# time to live, i.e. the live run logs (their full copy is each run's test_looper_log.txt
# artifact); the scheduler's state has none and is never evicted: once only it is left,
# writes fail (OOM) and the server retries them instead of losing state (volatile-lru).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir="$TEST_LOOPER_INSTALL/redis"
pidfile="$TEST_LOOPER_INSTALL/pidfiles/redis.pid"

start() {
    if pid_alive "$pidfile"; then echo "redis already running (pid $(cat "$pidfile"), port $REDIS_PORT)"; return 0; fi
    command -v redis-server >/dev/null || "$PROJ_ROOT/deploy/install_deps.sh" redis
    mkdir -p "$dir"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --dbfilename db.rdb \
        --save 900 1 --save 300 10 --save 60 10000 --appendonly yes \
        --maxmemory "${REDIS_MAXMEMORY:-2gb}" --maxmemory-policy volatile-lru \
        --logfile "$dir/log.txt" --daemonize yes --pidfile "$pidfile"
    for _ in $(seq 1 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && { echo "redis running on 127.0.0.1:$REDIS_PORT"; return 0; }
        sleep 0.1
    done
    echo "redis did not start; see $dir/log.txt" >&2
    return 1
}

stop() {
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        echo "redis is not running"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    # A clean shutdown saves the data; redis removes its own pid file, so wait on the pid.
    redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "redis stopped"; return 0; }
        sleep 0.1
    done
    echo "redis did not stop within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "redis stopped"
}

status() {
    if pid_alive "$pidfile"; then echo "redis running (pid $(cat "$pidfile"), port $REDIS_PORT)"; else echo "redis stopped"; return 3; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 1 ;;
esac
