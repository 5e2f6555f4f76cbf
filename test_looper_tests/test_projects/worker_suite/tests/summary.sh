#!/bin/bash
# Reports individual cases in testSummary.json, one with its own log.
set -euo pipefail
mkdir -p "$TEST_OUTPUT_DIR/logs"
echo "division by zero" > "$TEST_OUTPUT_DIR/logs/division.log"
cat > "$TEST_OUTPUT_DIR/testSummary.json" <<JSON
{"Group1.addition": true,
 "Group1.subtraction": {"success": true},
 "Group2.division": {"success": false, "logs": ["$TEST_OUTPUT_DIR/logs/division.log"]}}
JSON
echo "wrote 3 cases"
