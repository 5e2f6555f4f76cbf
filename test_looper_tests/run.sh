#!/usr/bin/env bash
# The whole test suite, against real services: Redis, git, the Docker engine, moto (EC2 + S3)
# and headless Chromium. Installs what is missing (idempotently), builds the base image, then
# runs every test of the workspace plus the format and lint gates.
#   test_looper_tests/run.sh [extra nextest/cargo-test args]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export TEST_LOOPER_CACHE="${TEST_LOOPER_CACHE:-$HOME/.cache/test-looper}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$TEST_LOOPER_CACHE/target}"
export AWS_EC2_METADATA_DISABLED=true
export RUST_BACKTRACE=1

step() { printf '\n== %s (%s)\n' "$1" "$(date -u +%T)"; }

step "installing missing system packages and tools"
deploy/install_deps.sh test

step "building the base image"
deploy/build_base_image.sh

step "checking formatting"
cargo fmt --all -- --check

step "linting"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "running the tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast "$@"
else
    cargo test --workspace --locked --no-fail-fast "$@"
fi
