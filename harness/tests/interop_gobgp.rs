//! Interoperability with a real GoBGP (`gobgpd`, Debian's 3.10): every generic scenario of
//! `topologyd_harness::interop` (listed there) but route refresh.
//!
//! No route-refresh test: GoBGP keeps every received path in its Adj-RIB-In, and
//! `gobgp neighbor ADDR softresetin` only re-runs its import policy over it; it never sends a
//! ROUTE-REFRESH message.

use topologyd_harness::interop;

use interop::PeerKind;
use topologyd_harness::peers::{Family, GobgpPeer, Transport};

const GOBGP: PeerKind<GobgpPeer> = PeerKind {
    start: GobgpPeer::start,
    request_refresh: None,
};

#[test]
fn gobgp_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop::attributes_then_withdrawal(&GOBGP, Transport::V4);
}

#[test]
fn gobgp_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop::attributes_then_withdrawal(&GOBGP, Transport::V6);
}

#[test]
fn rfc4724_gobgp_keeps_stale_routes_across_sigkill_and_sees_no_withdrawal() {
    interop::graceful_restart_after_sigkill(&GOBGP);
}

#[test]
fn rfc2385_gobgp_md5_right_key_establishes_wrong_key_never() {
    interop::md5_right_key_establishes_wrong_key_never(&GOBGP);
}

#[test]
fn rfc5082_gobgp_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop::gtsm_peer_establishes_ttl_254_refused(&GOBGP);
}

#[test]
fn rfc4271_6_8_gobgp_connection_collision_settles_on_one_session() {
    interop::collision_settles_on_one_session(&GOBGP);
}

#[test]
fn gobgp_announcements_and_withdrawals_are_counted_not_imported() {
    interop::inbound_routes_are_counted(&GOBGP);
}

#[test]
fn gobgp_restart_gets_every_route_again() {
    interop::peer_restart_gets_every_route_again(&GOBGP);
}

#[test]
fn gobgp_accepts_2048_packed_routes_and_their_withdrawal() {
    interop::many_routes_are_packed_and_all_arrive(&GOBGP);
}

#[test]
fn rfc4760_gobgp_offering_only_ipv4_gets_only_ipv4_routes() {
    interop::single_family_peer_gets_only_its_family(&GOBGP, Family::Ipv4Unicast);
}

#[test]
fn rfc4760_gobgp_offering_only_ipv6_gets_only_ipv6_routes() {
    interop::single_family_peer_gets_only_its_family(&GOBGP, Family::Ipv6Unicast);
}

#[test]
fn rfc4271_4_2_gobgp_short_hold_time_is_negotiated_and_kept_alive() {
    interop::short_hold_time_is_negotiated(&GOBGP);
}
