#!/bin/bash
# Builds one stage into $TEST_BUILD_OUTPUT_DIR/<stage>.
set -euo pipefail
stage="$1"
out="$TEST_BUILD_OUTPUT_DIR/$stage"
mkdir -p "$out"
case "$stage" in
    headers) echo "int suite(void);" > "$out/suite.h" ;;
    libs)
        echo "suite library, cores=$TEST_CORES_AVAILABLE" > "$out/libsuite.txt"
        echo "scratch" > "$out/intermediate.tmp"
        ;;
esac
echo "built $stage"
