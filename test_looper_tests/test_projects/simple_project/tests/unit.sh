#!/bin/bash
# Passes when the library artifact of the build is present.
set -euo pipefail
echo "${GREETING:-hi} from unit tests"
test -f "$TEST_INPUTS/libs/libdemo.txt"
echo "library ok"
