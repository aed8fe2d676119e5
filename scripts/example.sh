#!/usr/bin/env bash
# The main job on the bundled example: topologyd for location ams01 peers with a real BIRD on
# loopback (127.0.0.1 ↔ 127.0.0.2), announces what the example topology says ams01 announces,
# and BIRD's own view of the routes it learned is printed. Everything started here is stopped
# on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p topologyd -p topoctl --bins
work=$(mktemp -d)
bird_pid=""
topologyd_pid=""
cleanup() {
  [ -n "$topologyd_pid" ] && kill "$topologyd_pid" 2>/dev/null || true
  [ -n "$bird_pid" ] && kill "$bird_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
rm -rf target/example
bird -f -c examples/daemon/bird.conf -s "$work/bird.ctl" >"$work/bird.log" 2>&1 &
bird_pid=$!
./target/debug/topologyd --config examples/daemon/topologyd.toml >"$work/topologyd.log" 2>&1 &
topologyd_pid=$!
echo "example: waiting for topologyd to converge (admin /ready on 127.0.0.1:9179)..."
for _ in $(seq 1 100); do
  if exec 3<>/dev/tcp/127.0.0.1/9179 2>/dev/null; then
    printf 'GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
    if head -n 1 <&3 | grep -q " 200"; then exec 3>&-; break; fi
    exec 3>&-
  fi
  sleep 0.2
done
echo
echo "== ./target/debug/topoctl compile --location ams01 (what the topology says ams01 announces)"
./target/debug/topoctl compile --location ams01 examples/topology/*.toml || true
echo
echo "== birdc show protocols topologyd"
birdc -s "$work/bird.ctl" show protocols topologyd
echo
echo "== birdc show route all (the routes BIRD learned from topologyd)"
birdc -s "$work/bird.ctl" show route all
echo
echo "== topologyd log"
sed 's/\x1b\[[0-9;]*m//g' "$work/topologyd.log" | tail -n 8
