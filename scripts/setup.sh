#!/usr/bin/env bash
# Sets up a fresh Debian machine for topologyd: the peer daemons and tools the tests and the
# example use. Idempotent; needs root (CI and the dev machines run as root).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
# bird2, frr, gobgpd, exabgp, openbgpd: real BGP peers for the interop suite; prometheus: the real scraper;
# iproute2: network namespaces; systemd: systemd-analyze for the unit; busybox (httpd) and
# dnsmasq-base: the real local HTTP and DNS services the health-check tests probe; etcd-server:
# the real etcd cluster the rollout controller's etcd mode is tested against;
# protobuf-compiler and libprotobuf-dev: protoc and the well-known .proto files it imports
# (google/protobuf/*.proto; a Recommends of protobuf-compiler, so not installed with it here),
# which the etcd client crate (etcd-client) needs at build time;
# stayrtr: the real RPKI-to-Router cache the RPKI tests start on loopback; graphviz: `dot`,
# which `topoctl graph --format svg` runs; knot: the authoritative DNS server the BYOIP
# reverse-DNS checks are tested against; postgresql and redis-server: the stores of IRRd 4,
# the IRR whois server of the BYOIP IRR checks (IRRd itself comes from PyPI, below, into its own
# virtualenv made with Debian's python3-venv); poppler-utils: pdftotext and pdftoppm, which read
# back the LOA document `topoctl prefix loa` writes.
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
  bird2 frr gobgpd exabgp openbgpd prometheus iproute2 procps ca-certificates systemd \
  busybox curl dnsmasq-base etcd-server protobuf-compiler libprotobuf-dev stayrtr graphviz \
  knot postgresql redis-server python3-venv poppler-utils >/dev/null || status=$?
if [ -n "$ours" ]; then $SUDO rm -f "$policy"; fi
[ "$status" = 0 ] || { echo "setup: apt-get install failed ($status)" >&2; exit "$status"; }
# IRRd 4 for the IRR check tests (harness/src/peers/irrd.rs), pinned, in a virtualenv of its
# own (TOPOLOGYD_IRRD_VENV overrides the path); reinstalled only when the pinned version is not
# there. Debian's python3 (not whatever python3 is first on PATH): IRRd runs as `nobody`.
irrd_venv=${TOPOLOGYD_IRRD_VENV:-/opt/topologyd-test-irrd}
irrd_version=4.5.4
if ! "$irrd_venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('irrd') != '$irrd_version')" 2>/dev/null; then
  $SUDO /usr/bin/python3 -m venv "$irrd_venv"
  $SUDO "$irrd_venv/bin/pip" install -q --disable-pip-version-check "irrd==$irrd_version" \
    || { echo "setup: pip install irrd==$irrd_version failed" >&2; exit 1; }
fi
command -v cargo >/dev/null || { echo "setup: cargo is missing: install Rust with rustup" >&2; exit 1; }
echo "setup: bird $(bird --version 2>&1 | awk '{print $3}'), $(gobgpd --version), exabgp $(exabgp --version 2>&1 | awk '/ExaBGP/{print $3}'), $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), etcd $(etcd --version 2>&1 | awk '/etcd Version/{print $3}'), $(protoc --version), knot $(knotd --version 2>&1 | awk '{print $NF}'), irrd $irrd_version"
