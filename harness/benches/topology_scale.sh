#!/usr/bin/env bash
# Growth curve of the topology engine: for each size, one process (so peak RSS is its own)
# generates the synthetic topology, and measures a baseline TOML parse of the same files, the
# full compile (read, validate, tries, every location's desired set), its peak RSS, and the plan
# of a change touching 1% of the bindings. Prints one JSON line per size.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p topologyd-harness --bin topology_scale
for bindings in "${@:-100000 300000 1000000}"; do
  for size in $bindings; do
    ./target/release/topology_scale "$size"
  done
done
