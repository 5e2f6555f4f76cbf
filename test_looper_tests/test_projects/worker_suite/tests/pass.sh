#!/bin/bash
# Passes, and shows the runtime contract.
set -euo pipefail
echo "${GREETING} from $TEST_LOOPER_TEST_ID in $(pwd)"
test "$(pwd)" = "$TEST_INPUTS"
test -d "$TEST_SCRATCH_DIR" && test -d "$TEST_OUTPUT_DIR"
test -f /opt/suite/README
echo "report" > "$TEST_OUTPUT_DIR/report.txt"
echo "pass ok"
