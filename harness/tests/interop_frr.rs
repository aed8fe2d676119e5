//! Interoperability with a real FRR `bgpd` (Debian's FRR 8.4): every generic scenario of
//! `topologyd_harness::interop` (listed there), FRR asking for route refresh with
//! `clear bgp NEIGHBOR soft in` and running GTSM as `ttl-security hops 1`.

use topologyd_harness::interop;

use interop::PeerKind;
use topologyd_harness::peers::{BgpPeer, Family, FrrPeer, Result, Transport};

const FRR: PeerKind<FrrPeer> = PeerKind {
    start: FrrPeer::start,
    request_refresh: Some(request_refresh),
};

/// `clear bgp NEIGHBOR soft in`: FRR sends ROUTE-REFRESH for every negotiated family.
fn request_refresh(frr: &FrrPeer) -> Result<()> {
    let neighbor = frr.spec().neighbor.ip();
    frr.vtysh(&[&format!("clear bgp {neighbor} soft in")])
        .map(drop)
}

#[test]
fn frr_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop::attributes_then_withdrawal(&FRR, Transport::V4);
}

#[test]
fn frr_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop::attributes_then_withdrawal(&FRR, Transport::V6);
}

#[test]
fn rfc2918_frr_route_refresh_resends_every_route() {
    interop::route_refresh_resends(&FRR);
}

#[test]
fn rfc4724_frr_keeps_stale_routes_across_sigkill_and_sees_no_withdrawal() {
    interop::graceful_restart_after_sigkill(&FRR);
}

#[test]
fn rfc2385_frr_md5_right_key_establishes_wrong_key_never() {
    interop::md5_right_key_establishes_wrong_key_never(&FRR);
}

#[test]
fn rfc5082_frr_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop::gtsm_peer_establishes_ttl_254_refused(&FRR);
}

#[test]
fn rfc4271_6_8_frr_connection_collision_settles_on_one_session() {
    interop::collision_settles_on_one_session(&FRR);
}

#[test]
fn frr_announcements_and_withdrawals_are_counted_not_imported() {
    interop::inbound_routes_are_counted(&FRR);
}

#[test]
fn frr_restart_gets_every_route_again() {
    interop::peer_restart_gets_every_route_again(&FRR);
}

#[test]
fn frr_accepts_2048_packed_routes_and_their_withdrawal() {
    interop::many_routes_are_packed_and_all_arrive(&FRR);
}

#[test]
fn rfc4760_frr_offering_only_ipv4_gets_only_ipv4_routes() {
    interop::single_family_peer_gets_only_its_family(&FRR, Family::Ipv4Unicast);
}

#[test]
fn rfc4760_frr_offering_only_ipv6_gets_only_ipv6_routes() {
    interop::single_family_peer_gets_only_its_family(&FRR, Family::Ipv6Unicast);
}

#[test]
fn rfc4271_4_2_frr_short_hold_time_is_negotiated_and_kept_alive() {
    interop::short_hold_time_is_negotiated(&FRR);
}
