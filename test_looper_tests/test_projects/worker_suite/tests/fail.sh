#!/bin/bash
# Always fails.
echo "expected 4, got 5" >&2
exit 3
