# Sourced by looper_ctl.sh and redis_ctl.sh: locations and small process helpers.
# Every location can be overridden from the environment.
PROJ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TEST_LOOPER_INSTALL="${TEST_LOOPER_INSTALL:-$PROJ_ROOT/deploy/install}"
TEST_LOOPER_CACHE="${TEST_LOOPER_CACHE:-$HOME/.cache/test-looper}"
REDIS_PORT="${REDIS_PORT:-1115}"
export PROJ_ROOT TEST_LOOPER_INSTALL TEST_LOOPER_CACHE REDIS_PORT
mkdir -p "$TEST_LOOPER_INSTALL"/{pidfiles,logs}

# pid_alive PIDFILE: true when the pid file names a live process.
pid_alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pid NAME PIDFILE: TERM the process group, wait up to 30 s, then KILL it.
stop_pid() {
    local name="$1" pidfile="$2"
    if ! pid_alive "$pidfile"; then
        rm -f "$pidfile"
        echo "$name is not running"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$name did not stop within 30 s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "$name stopped"
}
