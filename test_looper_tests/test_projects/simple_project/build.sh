#!/bin/bash
# Builds one stage of the demo project into $TEST_BUILD_OUTPUT_DIR/<stage>.
set -euo pipefail
stage="$1"
out="$TEST_BUILD_OUTPUT_DIR/$stage"
mkdir -p "$out"
case "$stage" in
    headers) echo "int demo(void);" > "$out/demo.h" ;;
    libs) printf 'demo library built at %s\n' "$(date -u +%FT%TZ)" > "$out/libdemo.txt" ;;
esac
echo "built $stage"
