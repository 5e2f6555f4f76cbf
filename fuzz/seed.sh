#!/usr/bin/env bash
# Fill fuzz/corpus/resolve with seeds: the committed ones in seeds/resolve, the yml texts of
# the conformance suite's script cases (when ../shared is present) and the demo project.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
corpus="$here/corpus/resolve"
mkdir -p "$corpus"
cp "$here"/seeds/resolve/* "$corpus"/
conformance="$here/../../shared/conformance/script"
if [ -d "$conformance" ]; then
  for case in "$conformance"/*.json; do
    jq -r '.text' "$case" > "$corpus/conformance-$(basename "$case" .json).yml"
  done
fi
cp "$here/../test_looper_tests/test_projects/simple_project/.testlooper.yml" "$corpus/simple_project.yml"
echo "$(ls "$corpus" | wc -l) seeds in $corpus"
