//! Interoperability with a real ExaBGP (Debian's 4.2): every generic scenario of
//! `topologyd_harness::interop` (listed there), ExaBGP asking for route refresh with
//! `announce route-refresh` on its API. ExaBGP keeps no RIB: for graceful restart the harness
//! replays its JSON stream as a helper would (see `src/peers/exabgp.rs`).

use topologyd_harness::interop;

use interop::PeerKind;
use topologyd_harness::peers::{ExabgpPeer, Family, Transport};

const EXABGP: PeerKind<ExabgpPeer> = PeerKind {
    start: ExabgpPeer::start,
    request_refresh: Some(ExabgpPeer::request_route_refresh),
};

#[test]
fn exabgp_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop::attributes_then_withdrawal(&EXABGP, Transport::V4);
}

#[test]
fn exabgp_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop::attributes_then_withdrawal(&EXABGP, Transport::V6);
}

#[test]
fn rfc2918_exabgp_route_refresh_resends_every_route() {
    interop::route_refresh_resends(&EXABGP);
}

#[test]
fn rfc4724_exabgp_keeps_stale_routes_across_sigkill_and_sees_no_withdrawal() {
    interop::graceful_restart_after_sigkill(&EXABGP);
}

#[test]
fn rfc2385_exabgp_md5_right_key_establishes_wrong_key_never() {
    interop::md5_right_key_establishes_wrong_key_never(&EXABGP);
}

#[test]
fn rfc5082_exabgp_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop::gtsm_peer_establishes_ttl_254_refused(&EXABGP);
}

#[test]
fn rfc4271_6_8_exabgp_connection_collision_settles_on_one_session() {
    interop::collision_settles_on_one_session(&EXABGP);
}

#[test]
fn exabgp_announcements_and_withdrawals_are_counted_not_imported() {
    interop::inbound_routes_are_counted(&EXABGP);
}

#[test]
fn exabgp_restart_gets_every_route_again() {
    interop::peer_restart_gets_every_route_again(&EXABGP);
}

#[test]
fn exabgp_accepts_2048_packed_routes_and_their_withdrawal() {
    interop::many_routes_are_packed_and_all_arrive(&EXABGP);
}

#[test]
fn rfc4760_exabgp_offering_only_ipv4_gets_only_ipv4_routes() {
    interop::single_family_peer_gets_only_its_family(&EXABGP, Family::Ipv4Unicast);
}

#[test]
fn rfc4760_exabgp_offering_only_ipv6_gets_only_ipv6_routes() {
    interop::single_family_peer_gets_only_its_family(&EXABGP, Family::Ipv6Unicast);
}

#[test]
fn rfc4271_4_2_exabgp_short_hold_time_is_negotiated_and_kept_alive() {
    interop::short_hold_time_is_negotiated(&EXABGP);
}
