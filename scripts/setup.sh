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
# dnsmasq-base: the real local HTTP and DNS services the health-check tests probe; etcd-server:
# the real etcd cluster the rollout controller's etcd mode is tested against;
# protobuf-compiler and libprotobuf-dev: protoc and the well-known .proto files it imports
# (google/protobuf/*.proto; a Recommends of protobuf-compiler, so not installed with it here),
# which the etcd client crate (etcd-client) needs at build time;
# stayrtr: the real RPKI-to-Router cache the RPKI tests start on loopback; graphviz: `dot`,
# which `topoctl graph --format svg` runs.
# The packages' own instances are not wanted (the tests start and stop their own): while
# installing, a policy-rc.d that refuses every start keeps them from starting, so that nothing
# this script did not start has to be stopped. An existing policy-rc.d is left as it is.
policy=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  ours=1
fi
status=0
$SUDO apt-get install -y -qq --no-install-recommends \
  bird2 frr gobgpd exabgp prometheus iproute2 procps ca-certificates systemd \
  busybox curl dnsmasq-base etcd-server protobuf-compiler libprotobuf-dev stayrtr graphviz poppler-utils >/dev/null || status=$?
if [ -n "$ours" ]; then $SUDO rm -f "$policy"; fi
[ "$status" = 0 ] || { echo "setup: apt-get install failed ($status)" >&2; exit "$status"; }
command -v cargo >/dev/null || { echo "setup: cargo is missing: install Rust with rustup" >&2; exit 1; }
echo "setup: bird $(bird --version 2>&1 | awk '{print $3}'), $(gobgpd --version), exabgp $(exabgp --version 2>&1 | awk '/ExaBGP/{print $3}'), $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), etcd $(etcd --version 2>&1 | awk '/etcd Version/{print $3}'), $(protoc --version)"
