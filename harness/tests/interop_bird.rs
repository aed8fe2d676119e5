//! Interoperability with a real BIRD 2 (Debian's 2.0.12): the generic scenarios of
//! `topologyd_harness::interop` (listed there) that `tests/daemon_bird.rs` does not cover already,
//! BIRD asking for route refresh with `birdc reload in` and running GTSM as
//! `ttl security yes`. Attributes over IPv4, SIGKILL + restart (RFC 4724) and both stop modes
//! against BIRD are in `tests/daemon_bird.rs`.

use topologyd_harness::interop;

use interop::PeerKind;
use topologyd_harness::peers::{BirdPeer, Family, Result, Transport};

const BIRD: PeerKind<BirdPeer> = PeerKind {
    start: BirdPeer::start,
    request_refresh: Some(request_refresh),
};

/// `birdc reload in PROTOCOL`: BIRD sends ROUTE-REFRESH for every channel.
fn request_refresh(bird: &BirdPeer) -> Result<()> {
    bird.birdc(&["reload", "in", "peer"]).map(drop)
}

#[test]
fn bird_learns_exact_attributes_then_a_push_withdraws_over_ipv4() {
    interop::attributes_then_withdrawal(&BIRD, Transport::V4);
}

#[test]
fn bird_learns_exact_attributes_then_a_push_withdraws_over_ipv6() {
    interop::attributes_then_withdrawal(&BIRD, Transport::V6);
}

#[test]
fn rfc2918_bird_route_refresh_resends_every_route() {
    interop::route_refresh_resends(&BIRD);
}

#[test]
fn rfc2385_bird_md5_right_key_establishes_wrong_key_never() {
    interop::md5_right_key_establishes_wrong_key_never(&BIRD);
}

#[test]
fn rfc5082_bird_gtsm_establishes_and_a_ttl_254_sender_is_refused() {
    interop::gtsm_peer_establishes_ttl_254_refused(&BIRD);
}

#[test]
fn rfc4271_6_8_bird_connection_collision_settles_on_one_session() {
    interop::collision_settles_on_one_session(&BIRD);
}

#[test]
fn bird_announcements_and_withdrawals_are_counted_not_imported() {
    interop::inbound_routes_are_counted(&BIRD);
}

#[test]
fn bird_restart_gets_every_route_again() {
    interop::peer_restart_gets_every_route_again(&BIRD);
}

#[test]
fn bird_accepts_2048_packed_routes_and_their_withdrawal() {
    interop::many_routes_are_packed_and_all_arrive(&BIRD);
}

#[test]
fn rfc4760_bird_offering_only_ipv4_gets_only_ipv4_routes() {
    interop::single_family_peer_gets_only_its_family(&BIRD, Family::Ipv4Unicast);
}

#[test]
fn rfc4760_bird_offering_only_ipv6_gets_only_ipv6_routes() {
    interop::single_family_peer_gets_only_its_family(&BIRD, Family::Ipv6Unicast);
}

#[test]
fn rfc4271_4_2_bird_short_hold_time_is_negotiated_and_kept_alive() {
    interop::short_hold_time_is_negotiated(&BIRD);
}
