//! End to end: the real `topologyd` binary peering with a real BIRD 2 on loopback.
//!
//! - what BIRD learns is exactly what the topology says the location announces, attribute by
//!   attribute (AS path with prepends, MED, communities, large communities, next hops);
//! - RFC 4724: after a SIGKILL of topologyd, BIRD keeps every route (stale) and, once topologyd
//!   has restarted from its state directory, BIRD has seen zero withdrawals and holds the same
//!   routes;
//! - a SIGTERM with `withdraw_on_stop` withdraws every route before the session closes; without
//!   it (the default) the routes stay at BIRD as stale, for the restart to refresh.

use topologyd_harness::daemon_fixture;

use std::net::IpAddr;
use std::time::Duration;

use daemon_fixture::{
    AMS01_ROUTES, LOCAL_ASN, by_prefix, check, prefix, start_bird, topology, wait_converged,
    wait_for_routes,
};
use topologyd_harness::peers::{BgpPeer, BirdPeer};
use topologyd_harness::topologyd::{DaemonConfig, Topologyd};

const WAIT: Duration = daemon_fixture::WAIT;

/// BIRD waits for topologyd (passive); topologyd connects to it.
fn start_pair(configure: impl FnOnce(&mut DaemonConfig)) -> (BirdPeer, Topologyd) {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    configure(&mut daemon);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    wait_converged(&mut topologyd, &[&bird]);
    (bird, topologyd)
}

#[test]
fn bird_learns_exactly_the_routes_and_attributes_of_the_location() {
    let (bird, topologyd) = start_pair(|_| {});
    // ams01: the resolver (v4 + v6) and the four /24s of the split BYOIP /22; not fra-only.
    let routes = wait_for_routes(&bird, AMS01_ROUTES);
    assert!(
        !routes.contains_key(&prefix("203.0.113.0/24")),
        "fra-only must not be announced at ams01"
    );

    let resolver = &routes[&prefix("1.1.1.0/24")];
    assert_eq!(resolver.as_path, vec![LOCAL_ASN]);
    assert_eq!(resolver.communities, vec![(13335, 10000)]);
    assert_eq!(resolver.large_communities, vec![(13335, 1, 100)]);
    assert_eq!(resolver.med, None);
    assert_eq!(resolver.next_hop, topologyd.config.local.ip());

    let resolver_v6 = &routes[&prefix("2606:4700:4700::/48")];
    assert_eq!(resolver_v6.as_path, vec![LOCAL_ASN]);
    assert_eq!(
        resolver_v6.next_hop,
        "2001:db8::1"
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::from([0u8; 16]))
    );

    for index in 0..4 {
        let split = &routes[&prefix(&format!("198.51.{}.0/24", 100 + index))];
        // Our ASN, then the BYOIP origin prepended twice more.
        assert_eq!(
            split.as_path,
            vec![LOCAL_ASN, 64999, 64999, 64999],
            "{split:?}"
        );
        assert_eq!(split.med, Some(50));
        assert_eq!(split.communities, vec![(13335, 20000), (65000, 1)]);
    }
    let (status, metrics) = topologyd
        .admin_get("/metrics")
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(status, 200);
    assert!(metrics.contains("topologyd_"), "{metrics}");
}

#[test]
fn rfc4724_sigkill_and_restart_cause_no_withdrawal_at_bird() {
    let (bird, mut topologyd) = start_pair(|_| {});
    let before = wait_for_routes(&bird, AMS01_ROUTES);
    let counters_before = bird.counters().unwrap_or_else(|error| panic!("{error}"));

    topologyd.kill().unwrap_or_else(|error| panic!("{error}"));
    // The session is gone; BIRD keeps every route as stale (graceful restart helper).
    bird.wait_for(
        |routes| routes.len() == AMS01_ROUTES && routes.iter().all(|route| route.stale),
        WAIT,
    )
    .unwrap_or_else(|error| panic!("BIRD did not keep the routes as stale: {error}"));

    topologyd.spawn().unwrap_or_else(|error| panic!("{error}"));
    topologyd
        .wait_ready(WAIT)
        .unwrap_or_else(|error| panic!("restarted topologyd never converged: {error}"));
    bird.wait_for(
        |routes| routes.len() == AMS01_ROUTES && routes.iter().all(|route| !route.stale),
        WAIT,
    )
    .unwrap_or_else(|error| panic!("routes never became fresh again: {error}"));
    let after = by_prefix(bird.routes().unwrap_or_else(|error| panic!("{error}")));
    assert_eq!(before, after, "the same routes with the same attributes");
    let counters_after = bird.counters().unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(
        counters_after.withdrawals, counters_before.withdrawals,
        "BIRD received a withdrawal across the restart"
    );
    assert_eq!(
        counters_after.removed, counters_before.removed,
        "BIRD removed a route across the restart"
    );
}

#[test]
fn sigterm_with_withdraw_on_stop_withdraws_everything_first() {
    let (bird, mut topologyd) = start_pair(|daemon| daemon.withdraw_on_stop = true);
    wait_for_routes(&bird, AMS01_ROUTES);
    let exit = topologyd
        .terminate(WAIT)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(exit, Some(0));
    bird.wait_for(|routes| routes.is_empty(), WAIT)
        .unwrap_or_else(|error| panic!("routes stayed after a withdrawing stop: {error}"));
    // BIRD negotiates enhanced route refresh: the Cease waited for its EoRR, so every
    // withdrawal was applied before the session went down (BIRD shows no counters for a
    // channel that is down, so the log is the witness).
    let log = topologyd.log();
    assert!(
        log.contains("the peer answered with its EoRR; sending the Cease"),
        "the stop did not wait for BIRD's EoRR:\n{log}"
    );
}

#[test]
fn sigterm_by_default_leaves_the_routes_at_bird_as_stale() {
    let (bird, mut topologyd) = start_pair(|_| {});
    wait_for_routes(&bird, AMS01_ROUTES);
    let exit = topologyd
        .terminate(WAIT)
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(exit, Some(0));
    bird.wait_for(
        |routes| routes.len() == AMS01_ROUTES && routes.iter().all(|route| route.stale),
        WAIT,
    )
    .unwrap_or_else(|error| panic!("a graceful stop must leave the routes as stale: {error}"));
}
