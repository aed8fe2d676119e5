#!/usr/bin/env bash
# The whole test suite, as CI runs it: set up the machine, check formatting and lints, then run
# every test of the workspace, all of them even after a failure so that one run names every
# failure (unit, property, fuzz-corpus replay, and the end-to-end suites
# against real BIRD, FRR, GoBGP, ExaBGP and Prometheus on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
# The build and the suites need room: a full test build of the workspace takes several GB. Say
# how much there is, so that a run that dies of a full disk says so at its top.
disk_free() { df -Pk . | awk 'NR == 2 { printf "%d", $4 / 1048576 }'; }
echo "test.sh: $(disk_free) GiB free on the disk of $PWD"
if [ "$(disk_free)" -lt 8 ]; then
  echo "test.sh: warning: less than 8 GiB free; the build may fail with 'No space left on device'" >&2
fi
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
bash systemd/check.sh
mkdir -p target
set +e
# Build every test, binary and example once, with the features the tests unify; the end-to-end
# suites then start these binaries (TOPOLOGYD_BIN_DIR) instead of each test process asking cargo
# to build them again with the packages' own features (a second build of the dependencies).
# Only binaries this build wrote are used (newer than the stamp); otherwise each suite builds.
touch target/.test-build-stamp
cargo test --workspace --locked --no-run 2>&1 | tee target/test-output.log
status=${PIPESTATUS[0]}
fresh() { [ -x "$1" ] && [ "$1" -nt target/.test-build-stamp ]; }
if [ "$status" -eq 0 ] && fresh target/debug/topologyd && fresh target/debug/topoctl \
  && fresh target/debug/examples/address_binder; then
  export TOPOLOGYD_BIN_DIR="$PWD/target/debug"
  # The package check takes the same binaries (build-deb.sh reads only this variable).
  export TOPOLOGYD_DEB_BINARIES="$TOPOLOGYD_BIN_DIR"
else
  echo "test.sh: the test build left no fresh binaries; each suite builds its own" >&2
fi
cargo test --workspace --locked --no-fail-fast 2>&1 | tee -a target/test-output.log
status=$(( status | PIPESTATUS[0] ))
set -e
# The Debian package: built from the debug binaries the tests built, installed with dpkg -i,
# `topologyd --check` on the installed configuration, then purged (packaging/check-deb.sh).
if ! bash packaging/check-deb.sh debug 2>&1 | tee -a target/test-output.log; then
  status=1
fi
echo "test.sh: finished in $(( $(date +%s) - started )) s, $(du -sh target | cut -f1) in target/," \
  "$(disk_free) GiB left free"
# One closing line for the whole run (cargo's last "test result" is the doc tests').
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' \
  target/test-output.log
exit "$status"
