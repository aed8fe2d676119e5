//! Interoperability with a real OpenBGPD (`bgpd` 7.7, Debian's `openbgpd`): every generic
//! scenario of `topologyd_harness::interop` (listed there) but inbound counting and TCP-MD5.
//!
//! No inbound-counting test: that scenario has the peer originate a 4-octet AS path, and
//! OpenBGPD can only originate routes with its own ASN (`prepend-self`); what topologyd counts
//! inbound is the same code the other daemons' runs of that scenario check. No TCP-MD5 test:
//! Debian's portable 7.7 build cannot sign on Linux (see `src/peers/openbgpd.rs`).

use topologyd_harness::interop;

use interop::PeerKind;
use topologyd_harness::peers::{Family, OpenbgpdPeer, Transport};

const OPENBGPD: PeerKind<OpenbgpdPeer> = PeerKind {
    start: OpenbgpdPeer::start,
    request_refresh: Some(OpenbgpdPeer::request_refresh),
};

#[test]
fn openbgpd_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop::attributes_then_withdrawal(&OPENBGPD, Transport::V4);
}

#[test]
fn openbgpd_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop::attributes_then_withdrawal(&OPENBGPD, Transport::V6);
}

#[test]
fn rfc2918_openbgpd_route_refresh_gets_every_route_again() {
    interop::route_refresh_resends(&OPENBGPD);
}

#[test]
fn rfc4724_openbgpd_keeps_stale_routes_across_sigkill_and_sees_no_withdrawal() {
    interop::graceful_restart_after_sigkill(&OPENBGPD);
}

#[test]
fn rfc5082_openbgpd_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop::gtsm_peer_establishes_ttl_254_refused(&OPENBGPD);
}

#[test]
fn rfc4271_6_8_openbgpd_connection_collision_settles_on_one_session() {
    interop::collision_settles_on_one_session(&OPENBGPD);
}

#[test]
fn openbgpd_restart_gets_every_route_again() {
    interop::peer_restart_gets_every_route_again(&OPENBGPD);
}

#[test]
fn openbgpd_accepts_2048_packed_routes_and_their_withdrawal() {
    interop::many_routes_are_packed_and_all_arrive(&OPENBGPD);
}

#[test]
fn rfc4760_openbgpd_offering_only_ipv4_gets_only_ipv4_routes() {
    interop::single_family_peer_gets_only_its_family(&OPENBGPD, Family::Ipv4Unicast);
}

#[test]
fn rfc4760_openbgpd_offering_only_ipv6_gets_only_ipv6_routes() {
    interop::single_family_peer_gets_only_its_family(&OPENBGPD, Family::Ipv6Unicast);
}

#[test]
fn rfc4271_4_2_openbgpd_short_hold_time_is_negotiated_and_kept_alive() {
    interop::short_hold_time_is_negotiated(&OPENBGPD);
}
