#!/usr/bin/env bash
# Creates the demo's local git repos from test_looper_tests/test_projects, with fixed dates so the
# hashes are the same on every machine:
#   simple_project    master: 5 commits incl. one with a broken .testlooper.yml and its fix,
#                     plus a merge of branch `feature` (2 commits of its own)
#   simple_project_2  pins simple_project's first commit and depends on its build
#   deploy/make_demo_repos.sh DEST_DIR      (does nothing for repos that already exist)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:?usage: $0 DEST_DIR}"
projects="$root/test_looper_tests/test_projects"
mkdir -p "$dest"

export GIT_AUTHOR_NAME="Demo Author" GIT_AUTHOR_EMAIL="demo@example.com"
export GIT_COMMITTER_NAME="Demo Author" GIT_COMMITTER_EMAIL="demo@example.com"
clock=1767225600   # 2026-01-01T00:00:00Z, one hour per commit

commit() {  # commit MESSAGE
    clock=$((clock + 3600))
    GIT_AUTHOR_DATE="@$clock +0000" GIT_COMMITTER_DATE="@$clock +0000" \
        git commit -q --allow-empty -m "$1"
}

make_simple_project() {
    local repo="$dest/simple_project"
    [ -d "$repo/.git" ] && return 0
    git init -q -b master "$repo"
    cd "$repo"
    cp -r "$projects/simple_project/." .
    git add -A && commit "Initial demo project: a staged build and four tests"

    echo "# Notes" > NOTES.md
    git add NOTES.md && commit "Add notes"

    git checkout -q -b feature
    sed -i 's/tests\/flaky.sh 30/tests\/flaky.sh 10/' .testlooper.yml
    git add -A && commit "feature: make the flaky test flake less"
    echo "- the flaky test is less flaky on this branch" >> NOTES.md
    git add -A && commit "feature: document the flake rate"

    git checkout -q master
    cp .testlooper.yml /tmp/.testlooper.yml.$$
    printf 'looper_version: 4\ntests:\n  unit/linux:\n    command: [this is not a string\n' > .testlooper.yml
    git add -A && commit "Break the definitions file <b>on purpose</b>"
    cp /tmp/.testlooper.yml.$$ .testlooper.yml && rm -f /tmp/.testlooper.yml.$$
    git add -A && commit "Fix the definitions file"
    clock=$((clock + 3600))
    GIT_AUTHOR_DATE="@$clock +0000" GIT_COMMITTER_DATE="@$clock +0000" \
        git merge -q --no-ff feature -m "Merge branch 'feature'"
    # Detach HEAD so that every branch can receive pushes.
    git checkout -q --detach
}

make_simple_project_2() {
    local repo="$dest/simple_project_2"
    [ -d "$repo/.git" ] && return 0
    local pinned
    pinned="$(git -C "$dest/simple_project" rev-list --max-parents=0 master)"
    git init -q -b master "$repo"
    cd "$repo"
    mkdir -p tests
    cat > .testlooper.yml <<YML
looper_version: 4
repos:
  lib: simple_project/$pinned
environments:
  linux:
    base: lib/linux
tests:
  integration/linux:
    command: bash src/tests/integration.sh
    dependencies:
      src: HEAD
      libs: lib/build/linux/libs
YML
    cat > tests/integration.sh <<'SH'
#!/bin/bash
# Uses the pinned simple_project build's library.
set -euo pipefail
cat "$TEST_INPUTS/libs/libdemo.txt"
SH
    git add -A && commit "Integration tests against a pinned simple_project"
    git checkout -q --detach
}

make_simple_project
make_simple_project_2
echo "demo repos in $dest"
