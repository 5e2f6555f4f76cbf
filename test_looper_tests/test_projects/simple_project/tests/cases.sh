#!/bin/bash
# Reports individual test cases in testSummary.json.
set -euo pipefail
cat > "$TEST_OUTPUT_DIR/testSummary.json" <<JSON
{"Group1.addition": {"success": true}, "Group1.subtraction": {"success": true}, "Group2.division": {"success": false}}
JSON
echo "wrote 3 test cases"
