#!/bin/bash
# Always fails, with a message.
echo "expected 4, got 5" >&2
exit 1
