#!/bin/bash
# Fails about $1 percent of the time.
set -u
percent="${1:-30}"
roll=$(( RANDOM % 100 ))
echo "rolled $roll (fails below $percent)"
[ "$roll" -ge "$percent" ]
