#!/usr/bin/env bash
# CI check of the Debian package (needs root): builds it (debug profile by default, which the
# test suite has built already), installs it with dpkg -i, and checks what the package promises:
# the postinst neither started nor enabled the service, the user and directories exist, the
# installed configuration passes `topologyd --check`, --version names the commit, the man pages
# and completions are in place. Then it purges the package and removes the user and the
# directories it created, so the machine is left as it was found. It refuses to run where a
# topologyd package is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if dpkg-query -W -f='${Status}' topologyd 2>/dev/null | grep -q "ok installed"; then
  echo "check-deb: a topologyd package is installed on this machine; not touching it" >&2
  exit 1
fi
deb=$(bash packaging/build-deb.sh "${1:-debug}")
user_before=$(getent passwd topologyd || true)
created=()
for directory in /etc/topologyd /var/lib/topologyd /var/log/topologyd; do
  [ -e "$directory" ] || created+=("$directory")
done
cleanup() {
  dpkg --purge topologyd >/dev/null 2>&1 || true
  if [ -z "$user_before" ] && getent passwd topologyd >/dev/null; then
    userdel topologyd 2>/dev/null || true
    getent group topologyd >/dev/null && groupdel topologyd 2>/dev/null || true
  fi
  for directory in "${created[@]}"; do rm -rf "$directory"; done
}
trap cleanup EXIT
fail() { echo "check-deb: $*" >&2; exit 1; }

dpkg -i "$deb" >/dev/null
if [ -d /run/systemd/system ]; then
  systemctl is-active --quiet topologyd && fail "the postinst started the service"
  systemctl is-enabled --quiet topologyd 2>/dev/null && fail "the postinst enabled the service"
fi
getent passwd topologyd >/dev/null || fail "no topologyd user"
if ps -u topologyd -o pid= | grep -q .; then fail "a process runs as the topologyd user"; fi
[ -d /var/lib/topologyd ] || fail "no /var/lib/topologyd"
[ "$(stat -c %G /etc/topologyd/topologyd.toml)" = topologyd ] || fail "the configuration is not readable by group topologyd"
/usr/bin/topologyd --version | grep -q "(commit " || fail "--version names no commit"
/usr/bin/topologyd --check --config /etc/topologyd/topologyd.toml || fail "the installed configuration does not pass --check"
/usr/bin/topoctl check /etc/topologyd/topology/*.toml >/dev/null || fail "the installed example topology does not check"
for page in topologyd topoctl topoctl-push topoctl-status; do
  zcat "/usr/share/man/man1/$page.1.gz" | grep -q '^\.TH' || fail "man page $page.1 missing or empty"
done
for binary in topologyd topoctl; do
  bash -n "/usr/share/bash-completion/completions/$binary" || fail "bash completion of $binary"
  [ -s "/usr/share/zsh/vendor-completions/_$binary" ] || fail "zsh completion of $binary"
  [ -s "/usr/share/fish/vendor_completions.d/$binary.fish" ] || fail "fish completion of $binary"
done
dpkg-query -W -f='${Conffiles}\n' topologyd | grep -q /etc/topologyd/topologyd.toml || fail "topologyd.toml is not a conffile"
echo "check-deb: $deb installs; topologyd --check passes on the installed configuration; not started"
