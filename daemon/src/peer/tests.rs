//! Tests of the peer task: reconciling published routes into the Adj-RIB-Out and the status
//! it reports.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use topologyd_config::daemon::ipv6_next_hop_problem;

use super::*;
use crate::announce::RouteIntent;
use ipnet::IpNet;
use topologyd_bgp::check_encodable;
use topologyd_topology::RouteAttributes;

fn routes() -> LocationRoutes {
    let intent = RouteIntent {
        origin_asn: 13335,
        attributes: RouteAttributes::default(),
        service: Arc::from("resolver"),
        degraded: false,
    };
    let mut routes: Vec<(IpNet, u32)> = [
        "192.0.2.0/24",
        "198.51.100.0/24",
        "2001:db8:1::/48",
        "2001:db8:2::/48",
        "2001:db8:3::/48",
    ]
    .iter()
    .map(|prefix| (prefix.parse().unwrap(), 0))
    .collect();
    routes.sort();
    LocationRoutes {
        generation: 1,
        version: 1,
        routes: Arc::new(routes),
        intents: vec![intent],
    }
}

/// A passive peer (it never connects): only the reconcile runs.
fn spec(families: Vec<WireFamily>, ipv6_next_hop: Option<Ipv6Addr>) -> PeerSpec {
    let mut session = SessionConfig::new(13335, 64512, Ipv4Addr::new(192, 0, 2, 1));
    session.passive = true;
    session.families = families;
    PeerSpec {
        name: "edge".into(),
        remote: "127.0.0.2:179".parse().unwrap(),
        local_address: None,
        session,
        security: SessionSecurity::default(),
        route_context: PeerRouteContext {
            local_asn: 13335,
            peer_asn: 64512,
            ipv4_next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6_next_hop,
        },
    }
}

async fn reconciled(spec: PeerSpec) -> PeerStatus {
    let (_routes, receiver) = watch::channel(Arc::new(routes()));
    let (sender, _reports) = mpsc::unbounded_channel();
    let handle = spawn_peer(
        spec,
        receiver,
        ReportTo {
            sender,
            incarnation: 0,
            reconcile_duration: crate::metrics::Metrics::new().reconcile_histogram(),
        },
    );
    let mut status = handle.status.clone();
    let settled = status
        .wait_for(|status| status.generation_desired == 1)
        .await
        .unwrap()
        .clone();
    handle.task.abort();
    settled
}

/// Issue seen in the field: an IPv6 session over ::1 with the default next hop (::1) had
/// every IPv6 route fail to encode while the peer looked healthy. The failures are counted
/// over the whole generation and kept in the status.
#[tokio::test]
async fn routes_that_cannot_be_encoded_are_counted_and_kept_in_the_status() {
    let status = reconciled(spec(
        vec![WireFamily::Ipv4Unicast, WireFamily::Ipv6Unicast],
        Some(Ipv6Addr::LOCALHOST),
    ))
    .await;
    assert_eq!(status.routes_unencodable, 3);
    let error = status.encode_error.unwrap();
    assert!(
        error.starts_with("3 routes cannot be encoded for this peer; first: 2001:db8:1::/48"),
        "{error}"
    );
}

/// A peer that does not carry IPv6 is not told (nor warned) about the IPv6 routes.
#[tokio::test]
async fn routes_of_a_family_the_peer_does_not_carry_are_not_failures() {
    let status = reconciled(spec(vec![WireFamily::Ipv4Unicast], None)).await;
    assert_eq!(status.routes_unencodable, 0);
    assert_eq!(status.encode_error, None);
    assert_eq!(status.last_error, None);
}

/// The configuration refuses exactly the IPv6 next hops the codec can never encode, so
/// `--check` catches them before a session comes up with no routes.
#[test]
fn the_configuration_check_matches_the_codec() {
    for text in [
        "::",
        "::1",
        "fe80::1",
        "ff02::1",
        "2001:db8::1",
        "fd00::1",
        "::ffff:192.0.2.1",
    ] {
        let address: Ipv6Addr = text.parse().unwrap();
        let attributes = PeerRouteContext {
            local_asn: 13335,
            peer_asn: 64512,
            ipv4_next_hop: None,
            ipv6_next_hop: Some(address),
        }
        .path_attributes(&routes().intents[0]);
        let codec = check_encodable(&attributes, WireFamily::Ipv6Unicast).is_ok();
        let config = ipv6_next_hop_problem(address).is_none();
        assert_eq!(
            codec, config,
            "{address}: codec {codec}, configuration {config}"
        );
    }
}
