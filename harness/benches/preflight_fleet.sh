#!/usr/bin/env bash
# Time to pre-flight a fleet: LOCATIONS (default 100) real topologyd daemons on loopback
# (127.a.b.c, mTLS control API, no BGP peer), then `topoctl rollout start --dry-run --json`
# RUNS times (default 5) per CONCURRENCY (default 32 = the fleet file's default): every
# location's status, then every location's own plan of the change (POST /v1/plan). Prints one
# JSON line per concurrency with the pre-flight's duration and the whole dry run's wall time.
# Release binaries; the daemons are stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p topologyd -p topoctl --bins
cargo build --release --locked -p topologyd-harness --bin preflight_fleet
locations="${1:-100}"
runs="${2:-5}"
shift $(( $# > 2 ? 2 : $# ))
TOPOLOGYD_BIN_DIR="$PWD/target/release" ./target/release/preflight_fleet "$locations" "$runs" "${@:-32}"
