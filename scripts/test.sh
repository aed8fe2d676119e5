#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up the machine, check formatting and lints, then run
# every test of the workspace (unit, property, fuzz-corpus replay, and the end-to-end suites
# against real BIRD, FRR, GoBGP, ExaBGP and Prometheus on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash systemd/check.sh
cargo test --workspace --locked
