#!/usr/bin/env bash
# Builds the Debian package of topologyd with dpkg-deb alone (no packaging tool to install):
# both binaries, the hardened unit, sysusers and tmpfiles snippets, a commented
# /etc/topologyd/topologyd.toml with the example topology, man pages and shell completions
# generated from the binaries' clap definitions. Prints the path of the .deb.
#   bash packaging/build-deb.sh [release|debug]      (default: release; debug takes the
#   binaries in TOPOLOGYD_DEB_BINARIES when scripts/test.sh sets it)
# The postinst creates the user and directories and never starts or enables the service.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-release}
case "$profile" in
  release) cargo build --locked --release -p topologyd -p topoctl --bins >&2; binaries=target/release ;;
  debug)
    # The test run's binaries when scripts/test.sh names them, else a build of their own.
    if [ -n "${TOPOLOGYD_DEB_BINARIES:-}" ] && [ -x "$TOPOLOGYD_DEB_BINARIES/topologyd" ] \
      && [ -x "$TOPOLOGYD_DEB_BINARIES/topoctl" ]; then
      binaries=$TOPOLOGYD_DEB_BINARIES
      echo "build-deb: packaging the test run's binaries in $binaries" >&2
    else
      cargo build --locked -p topologyd -p topoctl --bins >&2; binaries=target/debug
    fi ;;
  *) echo "build-deb: profile must be release or debug, not $profile" >&2; exit 1 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
architecture=$(dpkg --print-architecture)
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

install -D -m 0755 "$binaries/topologyd" "$root/usr/bin/topologyd"
install -D -m 0755 "$binaries/topoctl" "$root/usr/bin/topoctl"
install -D -m 0644 systemd/topologyd.service "$root/usr/lib/systemd/system/topologyd.service"
install -D -m 0644 systemd/topologyd.sysusers "$root/usr/lib/sysusers.d/topologyd.conf"
install -D -m 0644 systemd/topologyd.tmpfiles "$root/usr/lib/tmpfiles.d/topologyd.conf"
install -D -m 0640 packaging/topologyd.toml "$root/etc/topologyd/topologyd.toml"
for file in fleet services prefixes; do
  install -D -m 0644 "examples/topology/$file.toml" "$root/etc/topologyd/topology/$file.toml"
done
install -D -m 0644 docs/daemon-config.md "$root/usr/share/doc/topologyd/daemon-config.md"
install -D -m 0644 docs/upgrade.md "$root/usr/share/doc/topologyd/upgrade.md"
install -d "$root/usr/share/doc/topologyd/monitoring"
cp -r monitoring/. "$root/usr/share/doc/topologyd/monitoring/"

# Man pages and completions, from the binaries themselves (packaging/src/lib.rs).
for binary in topologyd topoctl; do
  TOPOLOGYD_GENERATE_PACKAGING_FILES="$work/generated" "$binaries/$binary"
done
install -d "$root/usr/share/man/man1"
for page in "$work"/generated/man/*.1; do
  gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"
done
for binary in topologyd topoctl; do
  install -D -m 0644 "$work/generated/completions/$binary" "$root/usr/share/bash-completion/completions/$binary"
  install -D -m 0644 "$work/generated/completions/_$binary" "$root/usr/share/zsh/vendor-completions/_$binary"
  install -D -m 0644 "$work/generated/completions/$binary.fish" "$root/usr/share/fish/vendor_completions.d/$binary.fish"
done

install -d "$root/DEBIAN"
install -m 0755 packaging/postinst packaging/postrm "$root/DEBIAN/"
find "$root/etc" -type f | sed "s#^$root##" | sort > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: topologyd
Version: $version
Architecture: $architecture
Maintainer: topologyd maintainers <topologyd@localhost>
Installed-Size: $size
Depends: libc6
Recommends: systemd
Section: net
Priority: optional
Description: BGP route-advertisement daemon with a service-topology engine
 topologyd announces its location's share of a declarative service topology to
 the edge routers over BGP; topoctl checks, plans and pushes topologies and runs
 fleet rollouts. Built from commit $commit.
CONTROL
mkdir -p target/debian
output="target/debian/topologyd_${version}_${architecture}.deb"
dpkg-deb --root-owner-group --build "$root" "$output" >&2
echo "$output"
