#!/usr/bin/env bash
# Checks systemd/topologyd.service: `systemd-analyze verify` (any diagnostic fails the check) and
# the `systemd-analyze security` exposure score. Needs the Debian package `systemd` (for
# systemd-analyze), not a running systemd: both run offline against a scratch root that holds
# the unit, the distribution's units and stand-ins for the binaries the unit names.
set -euo pipefail
cd "$(dirname "$0")"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/bin" "$root/usr/lib/systemd" "$root/etc/systemd/system"
printf '#!/bin/sh\n' > "$root/usr/bin/topologyd"
chmod +x "$root/usr/bin/topologyd"
cp "$(type -P kill)" "$root/bin/kill"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp topologyd.service "$root/etc/systemd/system/"
diagnostics=$(systemd-analyze verify --man=no --root="$root" topologyd.service 2>&1) || {
  echo "systemd: verify failed:"; echo "$diagnostics"; exit 1; }
if [ -n "$diagnostics" ]; then
  echo "systemd: verify reported:"; echo "$diagnostics"; exit 1
fi
exposure=$(systemd-analyze security --offline=yes --root="$root" topologyd.service 2>&1 | grep 'Overall exposure level')
echo "systemd: topologyd.service verifies; ${exposure#→ }"
