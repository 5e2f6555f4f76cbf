#!/usr/bin/env bash
# Runs several builds of one bench interleaved, ROUNDS times, pausing every cargo/rustc process
# and flushing dirty pages before each run, so that before/after figures share one sitting.
#   test_looper_tests/bench/interleave.sh [-r ROUNDS] BINARY... [-- BENCH ARGS]
# e.g. (bench_scheduler of two commits, skipping (a)):
#   test_looper_tests/bench/interleave.sh /tmp/old/bench_scheduler /tmp/new/bench_scheduler -- 10 2
set -euo pipefail
rounds=3
if [ "${1:-}" = "-r" ]; then rounds="$2"; shift 2; fi
binaries=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do binaries+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
[ "${#binaries[@]}" -gt 0 ] || { sed -n 2,6p "$0"; exit 2; }
for round in $(seq 1 "$rounds"); do
    for binary in "${binaries[@]}"; do
        pids=$(pgrep -f 'rustc|cargo|clippy-driver' | tr '\n' ' ' || true)
        [ -n "$pids" ] && kill -STOP $pids 2>/dev/null || true
        sync
        sleep 1
        echo "--- round $round: $binary"
        (cd "${TMPDIR:-/tmp}" && "$binary" "$@") || echo "(exit $?)"
        [ -n "$pids" ] && kill -CONT $pids 2>/dev/null || true
    done
done
