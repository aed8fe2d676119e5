//! Proves the real-peer harness (`topologyd_harness::peers`) on its own, with no topologyd involved:
//! pairs of real daemons on loopback reach Established for IPv4 and IPv6, a route originated by one
//! shows up with its attributes in the other's normalized view, a withdrawal removes it and moves
//! the withdrawal counters, graceful-restart helpers keep routes as stale when the sender is
//! SIGKILLed, GTSM refuses a TTL-254 sender, TCP-MD5 needs the right key, and Prometheus scrapes
//! and answers queries.
//!
//! Every test polls with generous timeouts instead of sleeping; each daemon runs in its own
//! temporary directory on its own loopback address or `::1` port, so the tests run in parallel.

use std::time::Duration;

use ipnet::IpNet;
use topologyd_harness::peers::{
    BgpPeer, BirdPeer, Error, ExabgpPeer, Family, FrrPeer, GobgpPeer, ImportCounters, Origin,
    PeerSpec, Prometheus, ReceivedRoute, Result, Route, Transport, TtlProbe, ttl_probe,
};

/// Upper bound for anything to happen; polling returns as soon as it does.
const TIMEOUT: Duration = Duration::from_secs(40);
const ASN_A: u32 = 65001;
const ASN_B: u32 = 4_200_000_002;

fn prefix(text: &str) -> IpNet {
    text.parse().expect("test prefixes are valid")
}

/// A route with every attribute the harness normalizes.
fn rich_route(text: &str) -> Route {
    Route::new(prefix(text))
        .as_path(vec![64999, 4_200_000_123])
        .origin(Origin::Egp)
        .med(50)
        .community(65000, 1)
        .community(65000, 2)
        .large_community(4_200_000_000, 1, 2)
}

/// A simpler route for the opposite direction. It carries a MED because FRR always sends one
/// for a `network` route (0 when unset).
fn plain_route(text: &str) -> Route {
    Route::new(prefix(text)).med(10).community(1, 2)
}

/// Asserts that `received` is `sent` as seen across one eBGP hop from `sender_asn`.
fn assert_same_attributes(received: &ReceivedRoute, sent: &Route, sender_asn: u32) {
    let mut as_path = vec![sender_asn];
    as_path.extend(&sent.as_path);
    assert_eq!(received.prefix, sent.prefix);
    assert_eq!(received.as_path, as_path, "AS path of {}", sent.prefix);
    assert_eq!(
        received.next_hop, sent.next_hop,
        "next hop of {}",
        sent.prefix
    );
    assert_eq!(received.origin, sent.origin, "origin of {}", sent.prefix);
    assert_eq!(received.med, sent.med, "MED of {}", sent.prefix);
    assert_eq!(
        received.communities, sent.communities,
        "communities of {}",
        sent.prefix
    );
    assert_eq!(
        received.large_communities, sent.large_communities,
        "large communities of {}",
        sent.prefix
    );
    assert!(!received.stale, "{} is not stale", sent.prefix);
}

fn only_route<'a>(routes: &'a [ReceivedRoute], wanted: &IpNet) -> &'a ReceivedRoute {
    assert_eq!(routes.len(), 1, "exactly one route expected: {routes:?}");
    let route = &routes[0];
    assert_eq!(&route.prefix, wanted);
    route
}

/// Runs the full exchange between two started daemons: both see the session Established, `a`'s
/// rich route reaches `b` intact and `b`'s plain route reaches `a`; then both withdraw, the routes
/// disappear, and the withdrawal counters move by one.
fn exchange(
    a: &mut impl BgpPeer,
    b: &mut impl BgpPeer,
    a_route: &Route,
    b_route: &Route,
) -> Result<()> {
    a.wait_established(TIMEOUT)?;
    b.wait_established(TIMEOUT)?;
    let a_asn = a.spec().local_asn;
    let b_asn = b.spec().local_asn;

    let at_b = b.wait_for(|routes| !routes.is_empty(), TIMEOUT)?;
    assert_same_attributes(only_route(&at_b, &a_route.prefix), a_route, a_asn);
    let at_a = a.wait_for(|routes| !routes.is_empty(), TIMEOUT)?;
    assert_same_attributes(only_route(&at_a, &b_route.prefix), b_route, b_asn);
    assert_eq!(b.counters()?.withdrawals, 0);
    assert_eq!(a.counters()?.withdrawals, 0);

    a.withdraw(&[a_route.prefix])?;
    b.withdraw(&[b_route.prefix])?;
    b.wait_for(|routes| routes.is_empty(), TIMEOUT)?;
    a.wait_for(|routes| routes.is_empty(), TIMEOUT)?;
    assert_one_withdrawal(a.wait_for_counters(|counters| counters.withdrawals >= 1, TIMEOUT)?);
    assert_one_withdrawal(b.wait_for_counters(|counters| counters.withdrawals >= 1, TIMEOUT)?);
    Ok(())
}

fn assert_one_withdrawal(counters: ImportCounters) {
    assert_eq!(counters.withdrawals, 1, "{counters:?}");
    assert!(counters.updates >= 1, "{counters:?}");
    if let Some(removed) = counters.removed {
        assert_eq!(removed, 1, "{counters:?}");
    }
}

/// Prefixes for one transport: IPv4 over `127.a.b.c`, IPv6 over `::1`.
fn prefixes(transport: Transport) -> (&'static str, &'static str) {
    match transport {
        Transport::V4 => ("198.51.100.0/24", "203.0.113.0/24"),
        Transport::V6 => ("2001:db8:100::/48", "2001:db8:200::/48"),
    }
}

#[test]
fn bird_and_gobgp_exchange_ipv4_and_ipv6() -> Result<()> {
    for transport in [Transport::V4, Transport::V6] {
        let (a_prefix, b_prefix) = prefixes(transport);
        let (a_route, b_route) = (rich_route(a_prefix), plain_route(b_prefix));
        let (a, b) = PeerSpec::pair(ASN_A, ASN_B, transport);
        let mut bird = BirdPeer::start(a.originate(vec![a_route.clone()]))?;
        let mut gobgp = GobgpPeer::start(b.originate(vec![b_route.clone()]))?;
        exchange(&mut bird, &mut gobgp, &a_route, &b_route)?;
    }
    Ok(())
}

#[test]
fn frr_and_bird_exchange_ipv4_and_ipv6() -> Result<()> {
    for transport in [Transport::V4, Transport::V6] {
        let (a_prefix, b_prefix) = prefixes(transport);
        let (a_route, b_route) = (rich_route(a_prefix), plain_route(b_prefix));
        let (a, b) = PeerSpec::pair(ASN_A, ASN_B, transport);
        // FRR only accepts, BIRD connects: both directions of session set-up get exercised.
        let mut frr = FrrPeer::start(a.originate(vec![a_route.clone()]).passive(true))?;
        let mut bird = BirdPeer::start(b.originate(vec![b_route.clone()]))?;
        exchange(&mut frr, &mut bird, &a_route, &b_route)?;
    }
    Ok(())
}

#[test]
fn exabgp_and_bird_exchange_ipv4_and_ipv6() -> Result<()> {
    for transport in [Transport::V4, Transport::V6] {
        let (a_prefix, b_prefix) = prefixes(transport);
        let (a_route, b_route) = (rich_route(a_prefix), plain_route(b_prefix));
        let (a, b) = PeerSpec::pair(ASN_A, ASN_B, transport);
        let mut exabgp = ExabgpPeer::start(a.originate(vec![a_route.clone()]))?;
        let mut bird = BirdPeer::start(b.originate(vec![b_route.clone()]).passive(true))?;
        exchange(&mut exabgp, &mut bird, &a_route, &b_route)?;
    }
    Ok(())
}

#[test]
fn ipv6_routes_over_ipv4_transport_with_mp_bgp() -> Result<()> {
    let families = vec![Family::Ipv4Unicast, Family::Ipv6Unicast];
    let (a, b) = PeerSpec::pair(ASN_A, ASN_B, Transport::V4);
    let v6_route = rich_route("2001:db8:300::/48");
    let v4_route = plain_route("198.51.100.0/24");
    let mut bird = BirdPeer::start(
        a.families(families.clone())
            .originate(vec![v6_route.clone()]),
    )?;
    let mut frr = FrrPeer::start(b.families(families).originate(vec![v4_route.clone()]))?;
    exchange(&mut bird, &mut frr, &v6_route, &v4_route)
}

/// SIGKILL the sender: every helper keeps the route, flagged stale where the daemon can tell, and
/// counts no withdrawal; after the sender comes back the route is fresh again.
fn helper_keeps_stale_routes<P: BgpPeer>(start: impl Fn(PeerSpec) -> Result<P>) -> Result<()> {
    let (a, b) = PeerSpec::pair(ASN_A, ASN_B, Transport::V4);
    let route = rich_route("198.51.100.0/24");
    let a = a.originate(vec![route.clone()]);
    let mut sender = BirdPeer::start(a.clone())?;
    let helper = start(b)?;
    helper.wait_for(|routes| routes.len() == 1, TIMEOUT)?;

    sender.kill()?;
    let stale = helper.wait_for(|routes| routes.len() == 1 && routes[0].stale, TIMEOUT)?;
    assert_eq!(stale[0].med, route.med);
    assert!(!helper.session_state()?.is_established());
    let counters = helper.counters()?;
    assert_eq!(counters.withdrawals, 0, "{counters:?}");
    assert_eq!(counters.removed.unwrap_or(0), 0, "{counters:?}");

    let restarted = BirdPeer::start(a)?;
    restarted.wait_established(TIMEOUT)?;
    let fresh = helper.wait_for(|routes| routes.len() == 1 && !routes[0].stale, TIMEOUT)?;
    assert_same_attributes(&fresh[0], &route, ASN_A);
    assert_eq!(helper.counters()?.withdrawals, 0);
    Ok(())
}

#[test]
fn graceful_restart_helpers_keep_stale_routes() -> Result<()> {
    let bird = std::thread::spawn(|| helper_keeps_stale_routes(BirdPeer::start));
    let frr = std::thread::spawn(|| helper_keeps_stale_routes(FrrPeer::start));
    let gobgp = std::thread::spawn(|| helper_keeps_stale_routes(GobgpPeer::start));
    let exabgp = std::thread::spawn(|| helper_keeps_stale_routes(ExabgpPeer::start));
    for (name, handle) in [
        ("BIRD", bird),
        ("FRR", frr),
        ("GoBGP", gobgp),
        ("ExaBGP", exabgp),
    ] {
        match handle.join() {
            Ok(result) => result?,
            Err(_) => panic!("{name} helper test panicked"),
        }
    }
    Ok(())
}

/// Starts a passive daemon with GTSM on each transport and probes it at TTL 255 and 254.
fn gtsm_refuses_ttl_254<P: BgpPeer>(
    start: impl Fn(PeerSpec) -> Result<P>,
    transports: &[Transport],
) -> Result<()> {
    for &transport in transports {
        let (a, _) = PeerSpec::pair(ASN_A, ASN_B, transport);
        let spec = a.ttl_security(true).passive(true);
        let peer = start(spec.clone())?;
        let probe_timeout = Duration::from_secs(3);
        let daemon = peer.daemon();
        assert_eq!(
            ttl_probe(daemon, &spec, 255, probe_timeout)?,
            TtlProbe::Accepted,
            "{daemon} {transport:?}: TTL 255 must pass"
        );
        let refused = ttl_probe(daemon, &spec, 254, probe_timeout)?;
        assert!(
            matches!(refused, TtlProbe::Refused(_)),
            "{daemon} {transport:?}: TTL 254 must be refused, got {refused:?}"
        );
    }
    Ok(())
}

#[test]
fn gtsm_refuses_a_ttl_254_sender() -> Result<()> {
    let both = [Transport::V4, Transport::V6];
    let bird = std::thread::spawn(move || gtsm_refuses_ttl_254(BirdPeer::start, &both));
    let frr = std::thread::spawn(move || gtsm_refuses_ttl_254(FrrPeer::start, &both));
    let gobgp = std::thread::spawn(move || gtsm_refuses_ttl_254(GobgpPeer::start, &both));
    // ExaBGP 4.2 is left out: its `incoming-ttl` is not dependable on the accepting side (a
    // TTL-254 sender sometimes gets a KEEPALIVE over IPv4, always over IPv6).
    for (name, handle) in [("BIRD", bird), ("FRR", frr), ("GoBGP", gobgp)] {
        match handle.join() {
            Ok(result) => result?,
            Err(_) => panic!("{name} GTSM test panicked"),
        }
    }
    Ok(())
}

#[test]
fn md5_needs_the_right_key() -> Result<()> {
    let (a, b) = PeerSpec::pair(ASN_A, ASN_B, Transport::V4);
    let right_a = BirdPeer::start(a.md5_password("s3cret key"))?;
    let right_b = GobgpPeer::start(b.md5_password("s3cret key"))?;
    let (c, d) = PeerSpec::pair(ASN_A, ASN_B, Transport::V4);
    let wrong_c = BirdPeer::start(c.md5_password("one key"))?;
    let wrong_d = BirdPeer::start(d.md5_password("another key"))?;
    right_a.wait_established(TIMEOUT)?;
    right_b.wait_established(TIMEOUT)?;
    // The wrong-key pair has been trying for as long as the right pair needed, and a little more.
    match wrong_c.wait_established(Duration::from_secs(3)) {
        Err(Error::Timeout { .. }) => {}
        other => panic!("a session with mismatched MD5 keys: {other:?}"),
    }
    let state = wrong_d.session_state()?;
    assert!(
        !state.is_established(),
        "mismatched MD5 keys, yet {state:?}"
    );
    Ok(())
}

#[test]
fn prometheus_scrapes_and_answers_queries() -> Result<()> {
    let prometheus = Prometheus::start(&[])?;
    prometheus.wait_for_target_up(prometheus.address(), TIMEOUT)?;
    let samples = prometheus.query("up")?;
    let own = samples
        .iter()
        .find(|(labels, _)| labels.get("job").map(String::as_str) == Some("prometheus"))
        .expect("Prometheus scrapes itself");
    assert_eq!(own.1, 1.0);
    assert_eq!(prometheus.query("1 + 1")?, vec![(Default::default(), 2.0)]);
    Ok(())
}
