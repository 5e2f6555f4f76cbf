#!/usr/bin/env bash
# Starts and stops the test-looper server.
#   deploy/looper_ctl.sh start [CONFIG]    build if needed, start Redis and the server (daemon)
#   deploy/looper_ctl.sh stop              stop the server, its workers' containers, and Redis
#   deploy/looper_ctl.sh restart [CONFIG]
#   deploy/looper_ctl.sh status
# Without CONFIG (or $TEST_LOOPER_CONFIG), `start` sets up the demo: local git repos made from
# test_looper_tests/test_projects, a local Docker machine pool, and http://127.0.0.1:9081.
# Everything lives under $TEST_LOOPER_INSTALL (default deploy/install): pidfiles/, logs/, repos/, ...
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pidfile="$TEST_LOOPER_INSTALL/pidfiles/test_looper_server.pid"
logfile="$TEST_LOOPER_INSTALL/logs/test_looper_server.log"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TEST_LOOPER_CACHE/target}"
bin_dir="$CARGO_TARGET_DIR/release"

build() {
    echo "building release binaries (incremental; the first build takes a while)"
    (cd "$PROJ_ROOT" && cargo build --release --locked -q -p test_looper_server -p test_looper_worker)
}

setup_demo() {
    "$PROJ_ROOT/deploy/make_demo_repos.sh" "$TEST_LOOPER_INSTALL/repos" >/dev/null
    "$PROJ_ROOT/deploy/build_base_image.sh" >/dev/null
    "$PROJ_ROOT/deploy/install_deps.sh" xterm
    local secret_file="$TEST_LOOPER_INSTALL/webhook_secret"
    if [ ! -s "$secret_file" ]; then
        (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret_file")
    fi
    cp "$PROJ_ROOT/deploy/demo.config.yml" "$TEST_LOOPER_INSTALL/config.yml"
}

# The demo's first start puts `master` of both demo repos under test through the public API, so
# builds, tests, live logs and artifacts show without a click. Later starts keep whatever the
# user chose since (the settings live in Redis).
enable_demo_branches() {
    local port="$1" base="http://127.0.0.1:$1" marker="$TEST_LOOPER_INSTALL/demo_branches_enabled"
    [ -f "$marker" ] && return 0
    local token repo
    token="$(curl -fsS "$base/repos" | sed -n 's/.*name="csrf-token" content="\([^"]*\)".*/\1/p')"
    for repo in simple_project simple_project_2; do
        # The first scan of the repos may still be running: retry for up to 30 s.
        local attempt
        for attempt in $(seq 1 150); do
            curl -fsS -o /dev/null -X POST "$base/api/actions/branch" -H "X-CSRF-Token: $token" \
                -H 'Content-Type: application/json' -H "Origin: $base" \
                -d "{\"repo\":\"$repo\",\"branch\":\"master\",\"under_test\":\"true\"}" \
                2>/dev/null && break
            [ "$attempt" = 150 ] && { echo "could not enable $repo/master (see $logfile)" >&2; return 0; }
            sleep 0.2
        done
    done
    touch "$marker"
    echo "demo: master of simple_project and simple_project_2 is under test; runs start now"
}

start() {
    local config="${1:-${TEST_LOOPER_CONFIG:-}}"
    if pid_alive "$pidfile"; then echo "test-looper already running (pid $(cat "$pidfile"))"; return 0; fi
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
    build
    local demo=0
    if [ -z "$config" ]; then
        demo=1
        setup_demo
        config="$TEST_LOOPER_INSTALL/config.yml"
    fi
    [ -f "$TEST_LOOPER_INSTALL/webhook_secret" ] && export TEST_LOOPER_WEBHOOK_SECRET="$(cat "$TEST_LOOPER_INSTALL/webhook_secret")"
    "$bin_dir/test-looper-server" --check-config "$config" >/dev/null
    "$PROJ_ROOT/deploy/redis_ctl.sh" start
    echo "$(date -u +%FT%TZ) starting: $bin_dir/test-looper-server $config" >> "$logfile"
    # setsid: the server leads its own process group, so `stop` can take its workers with it.
    setsid "$bin_dir/test-looper-server" "$config" >> "$logfile" 2>&1 < /dev/null &
    echo $! > "$pidfile"
    local port
    port="$(sed -n 's/^ *http_port: *\([0-9]*\).*/\1/p; s/^ *http_port: *\${TEST_LOOPER_PORT:-\([0-9]*\)}.*/\1/p' "$config" | tail -n 1)"
    port="${TEST_LOOPER_PORT:-${port:-9081}}"
    for _ in $(seq 1 150); do
        if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
            echo "test-looper running (pid $(cat "$pidfile")): http://127.0.0.1:$port/"
            if [ "$demo" = 1 ]; then
                echo "demo repos: $TEST_LOOPER_INSTALL/repos; webhook secret: $TEST_LOOPER_INSTALL/webhook_secret"
                enable_demo_branches "$port"
            fi
            return 0
        fi
        pid_alive "$pidfile" || { echo "test-looper exited; see $logfile" >&2; tail -n 20 "$logfile" >&2; return 1; }
        sleep 0.2
    done
    echo "test-looper did not become healthy within 30 s; see $logfile" >&2
    return 1
}

stop() {
    stop_pid test-looper "$pidfile"
    # Containers of the demo's local machine pool (label set by the local Docker pool).
    if command -v docker >/dev/null; then
        local leftovers
        leftovers="$(docker ps -aq --filter label=test-looper.scope=test_looper_demo 2>/dev/null || true)"
        [ -n "$leftovers" ] && docker rm -f $leftovers >/dev/null 2>&1 || true
    fi
    "$PROJ_ROOT/deploy/redis_ctl.sh" stop
}

status() {
    local rc=0
    if pid_alive "$pidfile"; then echo "test-looper running (pid $(cat "$pidfile"))"; else echo "test-looper stopped"; rc=3; fi
    "$PROJ_ROOT/deploy/redis_ctl.sh" status || rc=3
    return $rc
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop) stop ;;
    restart) stop; start "${2:-}" ;;
    status) status ;;
    *) echo "usage: $0 start [CONFIG]|stop|restart [CONFIG]|status" >&2; exit 1 ;;
esac
