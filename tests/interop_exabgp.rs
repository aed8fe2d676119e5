//! Interoperability with a real ExaBGP (Debian's 4.2), through the generic scenarios of
//! `tests/interop_common`: exact attributes then withdrawal (IPv4 and IPv6 transport),
//! graceful restart after a SIGKILL (RFC 4724; ExaBGP keeps no RIB, the harness replays its
//! JSON stream as a helper would), TCP-MD5 (RFC 2385) and GTSM (RFC 5082).

mod interop_common;

use interop_common::PeerKind;
use topologyd_suite::peers::{ExabgpPeer, Transport};

const EXABGP: PeerKind<ExabgpPeer> = PeerKind {
    start: ExabgpPeer::start,
    request_refresh: None,
};

#[test]
fn exabgp_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop_common::attributes_then_withdrawal(&EXABGP, Transport::V4);
}

#[test]
fn exabgp_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop_common::attributes_then_withdrawal(&EXABGP, Transport::V6);
}

#[test]
fn rfc4724_exabgp_keeps_stale_routes_across_sigkill_and_sees_no_withdrawal() {
    interop_common::graceful_restart_after_sigkill(&EXABGP);
}

#[test]
fn rfc2385_exabgp_md5_right_key_establishes_wrong_key_never() {
    interop_common::md5_right_key_establishes_wrong_key_never(&EXABGP);
}

#[test]
fn rfc5082_exabgp_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop_common::gtsm_peer_establishes_ttl_254_refused(&EXABGP);
}
