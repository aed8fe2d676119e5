#!/usr/bin/env bash
# Side-by-side benchmark of issue 3, item 9: the same routes announced to, then withdrawn from,
# ONE BIRD 2 receiver on loopback by each sender in turn, plus topologyd with N peers.
#
#   benches/bgp_peers.sh [--ipv4 1000000] [--ipv6 200000] [--runs 3] [--slow-runs 1]
#                        [--senders blaster,topologyd,bird,frr,exabgp] [--multi-peers 10]
#                        [--multi-routes 100000] [--timeout 900] [--receiver bird|openbgpd]
#
# Prints a markdown table and writes target/bench/bgp_peers.json (per-run numbers, medians,
# ratios, methods). Needs bird/birdc, /usr/lib/frr/bgpd + vtysh, exabgp, gobgpd/gobgp; runs as
# root (FRR and ExaBGP drop no privileges here). Senders run one at a time, in rounds.
#
# ROUTES: IPv4 /24s counting up from 11.0.0.0 and IPv6 /48s counting up from 3fff::/20, one
# attribute set (ORIGIN IGP, AS_PATH [65001], next hop 192.0.2.1 / 2001:db8::1; BIRD, FRR and
# GoBGP originate with their own defaults for what they add). Attribute values only: every
# session is on 127.0.0.0/8 and nothing is installed in a kernel.
#
# RECEIVER (the same for every sender, a fresh process per run): BIRD 2, one passive eBGP
# session per sender address (AS 64512, IPv4 + IPv6 unicast over IPv4 transport, `import all`,
# `export none`, no graceful restart, hold 240 s), TZ=UTC. With `--receiver openbgpd`: OpenBGPD
# 7.7 (`/usr/sbin/bgpd -d`, as root; `fib-update no`, `allow from any`, `deny to any`, no
# graceful restart, enhanced route refresh on as in BIRD by default), read with `bgpctl -j show neighbor` (`stats.prefixes.received`,
# `stats.update.received.withdraws`); it gives state-change times in whole seconds only, so
# the announce clock starts at the first poll that sees the session Established (±20 ms).
#
# WHAT IS MEASURED (all from the receiver's side):
# - announce: from the receiver's Established time (`show protocols`, `timeformat protocol iso
#   long ms`) until its import counters (`Routes: N imported`, read over the control socket
#   every 20 ms, so ±20 ms) show every route on every session. Loading the routes into the
#   sender happens BEFORE the session is allowed up wherever the daemon permits, and is not
#   timed (`setup` in the JSON).
# - withdraw-all: from the moment the harness triggers the withdrawal until the receiver imports
#   zero routes. The receiver's `Import withdraws: received` counter must show every
#   withdrawal — except for topologyd, whose only withdraw-all path without the control API is
#   SIGTERM with `withdraw_on_stop = true`: it withdraws everything, then closes with a Cease,
#   and BIRD resets its counters with the session; the JSON then holds the most withdrawals
#   the receiver had counted while the session was still up (evidence they were on the wire).
# - sender peak RSS: VmHWM summed over the sender's process group (ExaBGP: exabgp + its API
#   process; FRR: bgpd only — no zebra), sampled every 100 ms and at the end of each phase. It
#   includes start-up (for topologyd: parsing and compiling the 1.2M-prefix topology), so the
#   JSON/table also give the RSS when the receiver first held every route.
#
# SENDERS (how each gets the routes; the fastest honest way found on this machine):
# - blaster (src/bin/bgp_blaster.rs): UPDATEs encoded by topologyd_bgp::AdjRibOut before
#   connecting (4096-octet messages), then OPEN/KEEPALIVE and write_all: the receiver's ingest
#   limit, the baseline of every ratio. Withdraw: pre-encoded withdrawals, on a stdin command.
# - topologyd (release build): bootstrap_topology of 1 location, 1 `all` service and one
#   [[prefix]] + [[binding]] per route (the config fast path); it compiles before it connects,
#   so the clock starts after the compile. Withdraw: SIGTERM, `withdraw_on_stop = true`.
# - BIRD: `protocol static` with one `route P blackhole;` per route, `export all`,
#   `next hop address`; the BGP session is `disabled` until both statics hold every route, then
#   `enable`d. Withdraw: `disable "st*"` (the statics), the session stays up. Note: BIRD 2.0.12
#   sends its last UPDATE ~3 s after the others at every size we tried (1.2k to 1.2M routes).
# - FRR 8.4 bgpd -Z (no zebra): one `network P` per route (no import-check), an outbound
#   route-map setting the next hops, neighbor `shutdown` until the BGP table holds every network,
#   then `no neighbor shutdown`. Withdraw: a `deny 5` entry in both outbound route-maps
#   (route-map delay-timer 0) and `clear bgp * soft out`. (Debian's frr ships no sharpd.)
# - ExaBGP 4.2: every route in the neighbor's `static` block (parsed at start-up, sent once the
#   session is up; with BGP_PEERS_EXABGP_API=1 an API process announces them instead, slower),
#   exabgp.reactor.speed 0.1. Withdraw: the API process writes `withdraw attributes ... nlri`
#   lines of 1,000 prefixes.
# - GoBGP (`--senders gobgp`, not in the default set): `gobgp mrt inject global` of a
#   TABLE_DUMP_V2 file while the neighbor is admin-down, then `neighbor ADDR enable`. Left out
#   because GoBGP 3.10's MRT reader rejected our RIB_IPV6_UNICAST entries and loaded only part of
#   the IPv4 ones; see the report.
# - "N peers × M routes": topologyd with N [[peer]]s (one BIRD with N sessions, one source
#   address each), and N blasters in parallel as its baseline; every session gets the same M
#   routes (5/6 IPv4, 1/6 IPv6). Announce: first Established → every session full.
#
# Debugging: BGP_PEERS_KEEP=1 keeps every run's directories (configs, daemon logs; a failed run's
# are always kept), BGP_PEERS_DEBUG=1 turns on `debug all` in the BIRD sender.
#
# Every daemon runs in its own process group; the trap kills the groups listed in the pid file
# and any process whose command line names one of this run's sender directories.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p target/bench
pids=target/bench/bgp_peers.pids
rm -f "$pids" "${pids%.pids}.dirs"
cleanup() {
  if [[ -f $pids ]]; then
    while read -r pgid; do kill -KILL -- "-$pgid" 2>/dev/null || true; done <"$pids"
  fi
  if [[ -f ${pids%.pids}.dirs ]]; then
    while read -r directory; do
      for proc in /proc/[0-9]*; do
        if { tr '\0' ' ' <"$proc/cmdline"; } 2>/dev/null | grep -qF -- "$directory"; then
          kill -KILL "${proc#/proc/}" 2>/dev/null || true
        fi
      done
    done <"${pids%.pids}.dirs"
  fi
}
trap cleanup EXIT INT TERM
cargo build --release --locked -p topologyd-harness --bin bgp_peers --bin bgp_blaster
cargo build --release --locked -p topologyd --bin topologyd
./target/release/bgp_peers --bin target/release --pids "$pids" --out target/bench/bgp_peers.json "$@"
