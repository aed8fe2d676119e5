//! Interoperability with a real GoBGP (`gobgpd`, Debian's 3.10), through the generic scenarios
//! of `tests/interop_common`: exact attributes then withdrawal (IPv4 and IPv6 transport),
//! graceful restart after a SIGKILL (RFC 4724), TCP-MD5 (RFC 2385) and GTSM (RFC 5082,
//! `ttl-security`).
//!
//! No route-refresh test: GoBGP keeps every received path in its Adj-RIB-In, and
//! `gobgp neighbor ADDR softresetin` only re-runs its import policy over it; it never sends a
//! ROUTE-REFRESH message.

mod interop_common;

use interop_common::PeerKind;
use topologyd_suite::peers::{GobgpPeer, Transport};

const GOBGP: PeerKind<GobgpPeer> = PeerKind {
    start: GobgpPeer::start,
    request_refresh: None,
};

#[test]
fn gobgp_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop_common::attributes_then_withdrawal(&GOBGP, Transport::V4);
}

#[test]
fn gobgp_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop_common::attributes_then_withdrawal(&GOBGP, Transport::V6);
}

#[test]
fn rfc4724_gobgp_keeps_stale_routes_across_sigkill_and_sees_no_withdrawal() {
    interop_common::graceful_restart_after_sigkill(&GOBGP);
}

#[test]
fn rfc2385_gobgp_md5_right_key_establishes_wrong_key_never() {
    interop_common::md5_right_key_establishes_wrong_key_never(&GOBGP);
}

#[test]
fn rfc5082_gobgp_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop_common::gtsm_peer_establishes_ttl_254_refused(&GOBGP);
}
