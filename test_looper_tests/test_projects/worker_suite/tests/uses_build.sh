#!/bin/bash
# Passes when the build's library artifact is in its inputs (and the excluded file is not).
set -euo pipefail
cat "$TEST_INPUTS/libs/libsuite.txt"
test ! -e "$TEST_INPUTS/libs/intermediate.tmp"
echo "library ok"
