#!/usr/bin/env bash
# Sets up a fresh Debian machine for topologyd: the peer daemons and tools the tests and the
# example use. Idempotent; needs root (CI and the dev machines run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# bird2, frr, gobgpd, exabgp: real BGP peers for the interop suite; prometheus: the real scraper;
# iproute2: network namespaces; systemd: systemd-analyze for the unit; busybox (httpd) and
# dnsmasq-base: the real local HTTP and DNS services the health-check tests probe.
$SUDO apt-get install -y -qq --no-install-recommends \
  bird2 frr gobgpd exabgp prometheus iproute2 procps ca-certificates systemd \
  busybox dnsmasq-base >/dev/null
# The Debian packages try to start their own instances where an init system runs; the tests start
# and stop their own, so make sure none of the packaged ones hold a port.
for unit in bird frr prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    $SUDO systemctl stop "$unit" || true
  fi
done
pkill -x bird 2>/dev/null || true
command -v cargo >/dev/null || { echo "setup: cargo is missing: install Rust with rustup" >&2; exit 1; }
echo "setup: bird $(bird --version 2>&1 | awk '{print $3}'), $(gobgpd --version), exabgp $(exabgp --version 2>&1 | awk '/ExaBGP/{print $3}'), $(prometheus --version 2>&1 | head -1 | awk '{print $3}')"
