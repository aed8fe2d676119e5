use std::net::Ipv4Addr;

use proptest::prelude::*;

use super::*;
use crate::bmp::findings::{ExpectedRoute, OwnPrefix};

const OURS: u32 = 13_335;
const EDGE: u32 = 64_500;
const OTHER: u32 = 64_666;
const ROUTER: RouterId = 1;

fn us() -> PeerKey {
    PeerKey {
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        asn: OURS,
        bgp_id: Ipv4Addr::new(10, 0, 0, 1),
        distinguisher: 0,
    }
}

fn transit() -> PeerKey {
    PeerKey {
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)),
        asn: OTHER,
        bgp_id: Ipv4Addr::new(10, 0, 0, 9),
        distinguisher: 0,
    }
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn sent() -> ExpectedRoute {
    ExpectedRoute {
        as_path: vec![OURS],
        med: Some(10),
        communities: vec![(OURS << 16) | 10],
        large_communities: vec![],
    }
}

/// 198.51.100.0/23 split in /24s (both announced here), 203.0.113.0/24 aggregate.
fn expectation() -> Arc<Expectation> {
    Arc::new(Expectation {
        router_id: Some(us().bgp_id),
        own_prefixes: vec![
            OwnPrefix {
                cidr: net("198.51.100.0/23"),
                origin_asn: OURS,
                announced_length: 24,
            },
            OwnPrefix {
                cidr: net("203.0.113.0/24"),
                origin_asn: OURS,
                announced_length: 24,
            },
        ],
        announced: [
            (net("198.51.100.0/24"), sent()),
            (net("198.51.101.0/24"), sent()),
        ]
        .into_iter()
        .collect(),
        no_longer_sent: BTreeMap::new(),
    })
}

fn attributes(path: &[u32], med: Option<u32>) -> Arc<SeenAttributes> {
    Arc::new(SeenAttributes {
        as_path: path.to_vec(),
        origin_asn: path.last().copied(),
        med,
        communities: vec![(OURS << 16) | 10],
        large_communities: vec![],
    })
}

fn announce(
    peer: PeerKey,
    rib: RibKind,
    prefixes: &[&str],
    attrs: Arc<SeenAttributes>,
) -> BmpEvent {
    BmpEvent::Routes {
        peer,
        rib,
        withdrawn: vec![],
        announced: prefixes
            .iter()
            .map(|text| RouteKey::single(net(text)))
            .collect(),
        attributes: Some(attrs),
        end_of_rib: false,
    }
}

fn withdraw(peer: PeerKey, rib: RibKind, prefixes: &[&str]) -> BmpEvent {
    BmpEvent::Routes {
        peer,
        rib,
        withdrawn: prefixes
            .iter()
            .map(|text| RouteKey::single(net(text)))
            .collect(),
        announced: vec![],
        attributes: None,
        end_of_rib: false,
    }
}

fn end_of_rib(peer: PeerKey, rib: RibKind) -> BmpEvent {
    BmpEvent::Routes {
        peer,
        rib,
        withdrawn: vec![],
        announced: vec![],
        attributes: None,
        end_of_rib: true,
    }
}

fn station() -> Station {
    let mut station = Station::new(5_000);
    station.set_expectation(expectation());
    station.connect(ROUTER, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    station.handle(
        ROUTER,
        BmpEvent::Initiation {
            sys_name: Some("edge1".into()),
        },
    );
    station
}

fn kinds(station: &Station) -> Vec<(FindingKind, IpNet)> {
    station
        .findings()
        .map(|finding| (finding.key.kind, finding.key.prefix))
        .collect()
}

/// The router holds both our /24s from us post-policy, and has said so completely.
fn synced(station: &mut Station) {
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: us(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.100.0/24", "198.51.101.0/24"],
            attributes(&[OURS], Some(10)),
        ),
    );
    station.handle(ROUTER, end_of_rib(us(), RibKind::AdjRibInPost));
}

#[test]
fn exact_and_subprefix_hijacks_raise_and_clear() {
    let mut station = station();
    synced(&mut station);
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &["198.51.100.0/24"],
            attributes(&[OTHER], None),
        ),
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &["203.0.113.128/25"],
            attributes(&[OTHER], None),
        ),
    );
    let changes = station.evaluate(1_000);
    assert_eq!(changes.len(), 2);
    assert_eq!(
        kinds(&station),
        vec![
            (FindingKind::ExactHijack, net("198.51.100.0/24")),
            (FindingKind::SubprefixHijack, net("203.0.113.128/25")),
        ]
    );
    let hijack = station.findings().next().unwrap();
    assert_eq!(hijack.key.router, "edge1 (127.0.0.2)");
    assert_eq!(hijack.key.peer, transit());
    assert_eq!(hijack.evidence.as_path, vec![OTHER]);
    assert_eq!(hijack.first_seen_ms, 1_000);
    station.evaluate(2_000);
    let hijack = station.findings().next().unwrap();
    assert_eq!((hijack.first_seen_ms, hijack.last_seen_ms), (1_000, 2_000));

    station.handle(
        ROUTER,
        withdraw(transit(), RibKind::AdjRibInPre, &["198.51.100.0/24"]),
    );
    let changes = station.evaluate(3_000);
    assert!(
        matches!(&changes[..], [FindingChange::Cleared(finding)] if finding.key.kind == FindingKind::ExactHijack)
    );
    station.handle(ROUTER, BmpEvent::PeerDown { peer: transit() });
    station.evaluate(4_000);
    assert!(kinds(&station).is_empty());
}

#[test]
fn our_own_routes_and_foreign_prefixes_raise_nothing() {
    let mut station = station();
    synced(&mut station);
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &["198.51.100.0/24"],
            attributes(&[OTHER, OURS], Some(10)),
        ),
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &["192.0.2.0/24"],
            attributes(&[OTHER], None),
        ),
    );
    station.evaluate(1_000);
    assert!(kinds(&station).is_empty(), "{:?}", kinds(&station));
}

#[test]
fn a_path_carrying_our_origin_elsewhere_is_unexpected() {
    let mut station = station();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPost,
            &["203.0.113.0/24"],
            attributes(&[OTHER, OURS, 65_001], None),
        ),
    );
    station.evaluate(1_000);
    assert_eq!(
        kinds(&station),
        vec![(FindingKind::UnexpectedPath, net("203.0.113.0/24"))]
    );
}

#[test]
fn a_filtered_route_is_not_visible_after_the_settle_time() {
    let mut station = station();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: us(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.100.0/24"],
            attributes(&[OURS], Some(10)),
        ),
    );
    // Before the End-of-RIB, nothing is judged.
    station.evaluate(1_000);
    assert!(kinds(&station).is_empty());
    station.handle(ROUTER, end_of_rib(us(), RibKind::AdjRibInPost));
    assert!(station.evaluate(2_000).is_empty(), "settling");
    station.evaluate(7_000);
    let findings: Vec<&Finding> = station.findings().collect();
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].key.kind, FindingKind::NotVisible);
    assert_eq!(findings[0].key.prefix, net("198.51.101.0/24"));
    assert_eq!(findings[0].first_seen_ms, 2_000);
    // Held with another MED: still not visible as we send it.
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.101.0/24"],
            attributes(&[OURS], Some(99)),
        ),
    );
    station.evaluate(8_000);
    assert_eq!(station.finding_count(FindingKind::NotVisible), 1);
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.101.0/24"],
            attributes(&[OURS], Some(10)),
        ),
    );
    station.evaluate(9_000);
    assert!(kinds(&station).is_empty());
}

#[test]
fn a_peer_restart_raises_nothing_until_it_has_resynced() {
    let mut station = station();
    synced(&mut station);
    station.evaluate(1_000);
    station.handle(ROUTER, BmpEvent::PeerDown { peer: us() });
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: us(),
            router_asn: None,
        },
    );
    station.evaluate(10_000);
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.100.0/24", "198.51.101.0/24"],
            attributes(&[OURS], Some(10)),
        ),
    );
    station.evaluate(20_000);
    station.handle(ROUTER, end_of_rib(us(), RibKind::AdjRibInPost));
    station.evaluate(30_000);
    assert!(kinds(&station).is_empty());
}

#[test]
fn termination_and_disconnect_drop_the_router_and_its_findings() {
    let mut station = station();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::LocRib,
            &["198.51.100.0/24"],
            attributes(&[OTHER], None),
        ),
    );
    station.evaluate(1_000);
    assert_eq!(station.findings().count(), 1);
    station.handle(ROUTER, BmpEvent::Termination);
    station.evaluate(2_000);
    assert_eq!(station.findings().count(), 0);
    assert_eq!(station.route_count(), 0);
    station.disconnect(ROUTER);
    assert_eq!(station.router_count(), 0);
}

#[test]
fn rpki_invalid_own_routes_are_found_with_a_vrp_set() {
    let mut vrps = VrpSet::new();
    vrps.insert(topologyd_rpki::Vrp {
        prefix: net("203.0.113.0/24"),
        max_length: 24,
        asn: OURS,
    });
    let mut station = station();
    station.set_vrps(Some(Arc::new(vrps)));
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &["203.0.113.0/25"],
            attributes(&[OTHER], None),
        ),
    );
    station.evaluate(1_000);
    assert_eq!(
        kinds(&station),
        vec![
            (FindingKind::SubprefixHijack, net("203.0.113.0/25")),
            (FindingKind::RpkiInvalid, net("203.0.113.0/25")),
        ]
    );
}

#[test]
fn a_changed_expectation_re_indexes_routes_already_held() {
    let mut station = Station::new(0);
    station.connect(ROUTER, IpAddr::V4(Ipv4Addr::LOCALHOST));
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &["203.0.113.0/24"],
            attributes(&[OTHER], None),
        ),
    );
    station.evaluate(1);
    assert!(kinds(&station).is_empty(), "nothing is ours yet");
    station.set_expectation(expectation());
    station.evaluate(2);
    assert_eq!(
        kinds(&station),
        vec![(FindingKind::ExactHijack, net("203.0.113.0/24"))]
    );
}

#[derive(Debug, Clone)]
enum Step {
    PeerUp(bool),
    PeerDown(bool),
    Announce {
        ours: bool,
        rib: usize,
        prefix: usize,
        origin: usize,
        med: bool,
    },
    Withdraw {
        ours: bool,
        rib: usize,
        prefix: usize,
    },
    EndOfRib(bool),
    Termination,
    Evaluate,
}

const PREFIXES: [&str; 6] = [
    "198.51.100.0/24",
    "198.51.101.0/24",
    "198.51.100.0/23",
    "198.51.101.128/25",
    "203.0.113.0/24",
    "192.0.2.0/24",
];
const ORIGINS: [&[u32]; 4] = [&[OURS], &[OTHER], &[OTHER, OURS, 1], &[EDGE, OURS]];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        any::<bool>().prop_map(Step::PeerUp),
        any::<bool>().prop_map(Step::PeerDown),
        (
            any::<bool>(),
            0..5usize,
            0..PREFIXES.len(),
            0..ORIGINS.len(),
            any::<bool>()
        )
            .prop_map(|(ours, rib, prefix, origin, med)| Step::Announce {
                ours,
                rib,
                prefix,
                origin,
                med
            }),
        (any::<bool>(), 0..5usize, 0..PREFIXES.len())
            .prop_map(|(ours, rib, prefix)| Step::Withdraw { ours, rib, prefix }),
        any::<bool>().prop_map(Step::EndOfRib),
        Just(Step::Termination),
        Just(Step::Evaluate),
    ]
}

fn apply(station: &mut Station, step: &Step) {
    let peer = |ours: bool| if ours { us() } else { transit() };
    let event = match step {
        Step::PeerUp(ours) => BmpEvent::PeerUp {
            peer: peer(*ours),
            router_asn: None,
        },
        Step::PeerDown(ours) => BmpEvent::PeerDown { peer: peer(*ours) },
        Step::Announce {
            ours,
            rib,
            prefix,
            origin,
            med,
        } => announce(
            peer(*ours),
            RibKind::ALL[*rib],
            &[PREFIXES[*prefix]],
            attributes(ORIGINS[*origin], med.then_some(10)),
        ),
        Step::Withdraw { ours, rib, prefix } => {
            withdraw(peer(*ours), RibKind::ALL[*rib], &[PREFIXES[*prefix]])
        }
        Step::EndOfRib(ours) => end_of_rib(peer(*ours), RibKind::AdjRibInPost),
        Step::Termination => BmpEvent::Termination,
        Step::Evaluate => return,
    };
    station.handle(ROUTER, event);
}

/// A fresh station fed only what `station` holds now: each peer's routes and End-of-RIBs.
fn replayed(station: &Station) -> Station {
    let mut fresh = Station::new(0);
    fresh.set_expectation(expectation());
    fresh.connect(ROUTER, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    fresh.handle(
        ROUTER,
        BmpEvent::Initiation {
            sys_name: Some("edge1".into()),
        },
    );
    let Some(state) = station.routers.get(&ROUTER) else {
        return fresh;
    };
    // Which families the router has shown is part of its state, not of its tables.
    if let Some(fresh_state) = fresh.routers.get_mut(&ROUTER) {
        fresh_state.rib.families_seen = state.rib.families_seen;
    }
    for (peer, ribs) in &state.rib.peers {
        fresh.handle(
            ROUTER,
            BmpEvent::PeerUp {
                peer: *peer,
                router_asn: None,
            },
        );
        for (rib, table) in &ribs.tables {
            for (route, record) in table.iter() {
                let attributes = station.interner.get(record.attributes).cloned();
                fresh.handle(
                    ROUTER,
                    BmpEvent::Routes {
                        peer: *peer,
                        rib: *rib,
                        withdrawn: vec![],
                        announced: vec![route],
                        attributes,
                        end_of_rib: false,
                    },
                );
            }
        }
        for (rib, done) in &ribs.end_of_rib {
            if *done {
                fresh.handle(ROUTER, end_of_rib(*peer, *rib));
            }
        }
    }
    fresh
}

proptest! {
    /// Findings depend on what the router holds now, never on how it got there: the findings
    /// kept up incrementally over any event sequence equal those of a station fed only the
    /// final state. And after a Termination nothing is left, neither routes nor findings.
    #[test]
    fn incremental_findings_equal_findings_from_scratch(steps in prop::collection::vec(step(), 1..60)) {
        let mut station = station();
        station.settle_ms = 0;
        let mut now = 0;
        for step in &steps {
            apply(&mut station, step);
            now += 1;
            station.evaluate(now);
        }
        let mut fresh = replayed(&station);
        fresh.evaluate(now);
        let incremental: Vec<&FindingKey> = station.findings().map(|finding| &finding.key).collect();
        let scratch: Vec<&FindingKey> = fresh.findings().map(|finding| &finding.key).collect();
        prop_assert_eq!(incremental, scratch);
        for finding in station.findings() {
            prop_assert!(finding.first_seen_ms <= finding.last_seen_ms);
            prop_assert_eq!(finding.last_seen_ms, now);
        }

        station.handle(ROUTER, BmpEvent::Termination);
        station.evaluate(now + 1);
        prop_assert_eq!(station.findings().count(), 0);
        prop_assert_eq!(station.route_count(), 0);
        prop_assert!(station.interner.is_empty());
        prop_assert!(station.relevant.is_empty());
    }
}

#[test]
fn holdings_say_what_each_router_holds_of_ours() {
    let mut station = station();
    assert_eq!(
        station.holdings(),
        vec![RouterHoldings {
            router_id: ROUTER,
            router: "edge1 (127.0.0.2)".into(),
            synchronised: false,
            held: vec![],
            missing: vec![],
        }],
        "a router that has shown no IPv4 route says nothing about ours"
    );
    synced(&mut station);
    station.handle(
        ROUTER,
        withdraw(us(), RibKind::AdjRibInPost, &["198.51.101.0/24"]),
    );
    let holdings = station.holdings();
    assert!(holdings[0].synchronised);
    assert_eq!(holdings[0].held, vec![net("198.51.100.0/24")]);
    assert_eq!(holdings[0].missing, vec![net("198.51.101.0/24")]);
}

#[test]
fn a_route_still_carrying_a_community_we_stopped_sending_is_not_held_as_sent() {
    let mut station = station();
    synced(&mut station);
    let ours = (OURS << 16) | 10;
    // The next revision sends 198.51.100.0/24 without our community.
    let mut changed = (*expectation()).clone();
    if let Some(route) = changed.announced.get_mut(&net("198.51.100.0/24")) {
        route.communities.clear();
    }
    station.set_expectation(Arc::new(changed.clone()));
    let holdings = station.holdings();
    assert_eq!(
        holdings[0].missing,
        vec![net("198.51.100.0/24")],
        "the router still holds the route as it was (with the community): not as we send it"
    );
    assert_eq!(holdings[0].held, vec![net("198.51.101.0/24")]);
    // The router takes the update: held. A community of the router's own is still fine.
    let router_own = (64_999 << 16) | 1;
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.100.0/24"],
            Arc::new(SeenAttributes {
                communities: vec![router_own],
                ..(*attributes(&[OURS], Some(10))).clone()
            }),
        ),
    );
    assert_eq!(station.holdings()[0].missing, Vec::<IpNet>::new());
    // The same revision set again (another input changed) keeps what was stopped.
    station.set_expectation(Arc::new(changed));
    assert_eq!(
        station.expectation.no_longer_sent[&net("198.51.100.0/24")].communities,
        vec![ours]
    );
    // Sending it again clears it.
    station.set_expectation(expectation());
    assert!(station.expectation.no_longer_sent.is_empty());
    assert_eq!(
        station.holdings()[0].missing,
        vec![net("198.51.100.0/24")],
        "now the community is expected again and the router holds the route without it"
    );
}

#[test]
fn a_router_with_an_ipv4_and_an_ipv6_session_from_us_holds_each_family_on_its_own_session() {
    let mut station = Station::new(5_000);
    let mut both = (*expectation()).clone();
    both.own_prefixes.push(OwnPrefix {
        cidr: net("2001:db8::/48"),
        origin_asn: OURS,
        announced_length: 48,
    });
    both.announced.insert(net("2001:db8::/48"), sent());
    station.set_expectation(Arc::new(both));
    station.connect(ROUTER, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    // Two sessions from us (one BGP identifier): IPv4 routes on one, IPv6 on the other.
    let over_ipv6 = PeerKey {
        address: "::1".parse().unwrap(),
        ..us()
    };
    for (peer, prefixes) in [
        (us(), &["198.51.100.0/24", "198.51.101.0/24"][..]),
        (over_ipv6, &["2001:db8::/48"][..]),
    ] {
        station.handle(
            ROUTER,
            BmpEvent::PeerUp {
                peer,
                router_asn: None,
            },
        );
        station.handle(
            ROUTER,
            announce(
                peer,
                RibKind::AdjRibInPost,
                prefixes,
                attributes(&[OURS], Some(10)),
            ),
        );
        station.handle(ROUTER, end_of_rib(peer, RibKind::AdjRibInPost));
    }
    station.evaluate(1_000);
    station.evaluate(10_000);
    let holdings = station.holdings();
    assert!(holdings[0].synchronised);
    assert_eq!(holdings[0].missing, Vec::<IpNet>::new());
    assert_eq!(holdings[0].held.len(), 3);
    assert_eq!(
        kinds(&station),
        vec![],
        "no route is missing on the other family's session"
    );
    // The IPv6 route filtered: missing, and the finding names the IPv6 session.
    station.handle(
        ROUTER,
        withdraw(over_ipv6, RibKind::AdjRibInPost, &["2001:db8::/48"]),
    );
    station.evaluate(20_000);
    station.evaluate(30_000);
    assert_eq!(station.holdings()[0].missing, vec![net("2001:db8::/48")]);
    let findings: Vec<&Finding> = station.findings().collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0].key.kind, FindingKind::NotVisible);
    assert_eq!(findings[0].key.peer, over_ipv6);
}

#[test]
fn without_an_end_of_rib_a_session_is_judged_after_the_settle_time() {
    let mut station = station();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: us(),
            router_asn: None,
        },
    );
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.100.0/24"],
            attributes(&[OURS], Some(10)),
        ),
    );
    station.evaluate(1_000);
    assert!(!station.holdings()[0].synchronised);
    station.evaluate(6_000);
    assert!(
        station.holdings()[0].synchronised,
        "known for the settle time"
    );
    station.evaluate(11_000);
    assert_eq!(
        kinds(&station),
        vec![(FindingKind::NotVisible, net("198.51.101.0/24"))]
    );
    // A new session starts the wait again.
    station.handle(ROUTER, BmpEvent::PeerDown { peer: us() });
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: us(),
            router_asn: None,
        },
    );
    station.evaluate(12_000);
    assert!(!station.holdings()[0].synchronised);
    assert!(kinds(&station).is_empty());
}

#[test]
fn a_path_reported_with_the_routers_own_as_prepended_is_still_ours() {
    let mut station = station();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: us(),
            router_asn: Some(EDGE),
        },
    );
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.100.0/24", "198.51.101.0/24"],
            attributes(&[EDGE, OURS], Some(10)),
        ),
    );
    station.handle(ROUTER, end_of_rib(us(), RibKind::AdjRibInPost));
    station.evaluate(1_000);
    station.evaluate(10_000);
    assert!(kinds(&station).is_empty(), "{:?}", kinds(&station));
    assert_eq!(station.holdings()[0].held.len(), 2);
    // Another AS in front is not the router's: not ours as we send it.
    station.handle(
        ROUTER,
        announce(
            us(),
            RibKind::AdjRibInPost,
            &["198.51.101.0/24"],
            attributes(&[OTHER, OURS], Some(10)),
        ),
    );
    station.evaluate(11_000);
    station.evaluate(20_000);
    assert_eq!(station.finding_count(FindingKind::NotVisible), 1);
}

#[test]
fn routers_with_the_same_name_stay_apart() {
    let mut station = station();
    synced(&mut station);
    let twin: RouterId = ROUTER + 1;
    station.connect(twin, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    station.handle(
        twin,
        BmpEvent::Initiation {
            sys_name: Some("edge1".into()),
        },
    );
    let holdings = station.holdings();
    assert_eq!(holdings.len(), 2);
    assert_eq!(
        holdings
            .iter()
            .map(|holding| (
                holding.router_id,
                holding.router.as_str(),
                holding.synchronised
            ))
            .collect::<Vec<_>>(),
        vec![
            (ROUTER, "edge1 (127.0.0.2)", true),
            (twin, "edge1 (127.0.0.3)", false)
        ],
        "the twin that has sent nothing must not hide behind the synchronised one"
    );
    let view = crate::bmp::listener::view(&station, 0);
    assert_eq!(view.held.len(), 2, "{view:?}");
    assert!(view.held.iter().any(|router| !router.synchronised));
}

#[test]
fn a_router_over_the_route_bound_is_dropped_and_ignored_until_it_reconnects() {
    let mut station = station();
    station.max_routes_per_router = 3;
    let peer = transit();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer,
            router_asn: Some(64_512),
        },
    );
    station.handle(
        ROUTER,
        announce(
            peer,
            RibKind::AdjRibInPre,
            &["192.0.2.0/24", "192.0.2.128/25"],
            attributes(&[64_999], None),
        ),
    );
    assert!(!station.is_over_limit(ROUTER));
    station.handle(
        ROUTER,
        announce(
            peer,
            RibKind::AdjRibInPost,
            &["203.0.113.0/24", "203.0.113.128/25"],
            attributes(&[64_999], None),
        ),
    );
    assert!(station.is_over_limit(ROUTER));
    assert_eq!(
        (
            station.routers_dropped_max_routes,
            station.routers_dropped_max_peers
        ),
        (1, 0)
    );
    assert_eq!(
        station.take_dropped(),
        vec![RouterDropped {
            router: ROUTER,
            address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            name: "edge1".into(),
            bound: Bound::MaxRoutes,
            limit: 3,
        }]
    );
    assert!(station.take_dropped().is_empty(), "taken once");
    // Nothing it sends is held any more.
    station.handle(
        ROUTER,
        announce(
            peer,
            RibKind::AdjRibInPre,
            &["198.18.0.0/24"],
            attributes(&[64_999], None),
        ),
    );
    assert!(station.is_over_limit(ROUTER));
    // A new connection starts afresh.
    station.disconnect(ROUTER);
    station.connect(ROUTER, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    assert!(!station.is_over_limit(ROUTER));
}

#[test]
fn a_router_over_the_peer_bound_is_dropped() {
    let mut station = station();
    station.max_peers_per_router = 2;
    for index in 0..3u8 {
        let mut peer = transit();
        peer.address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, index + 10));
        station.handle(
            ROUTER,
            BmpEvent::PeerUp {
                peer,
                router_asn: Some(64_512),
            },
        );
    }
    assert!(station.is_over_limit(ROUTER));
    // Dropped once: what it sends afterwards (more peers) is ignored, not counted again.
    let mut peer = transit();
    peer.address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer,
            router_asn: Some(64_512),
        },
    );
    assert_eq!(
        (
            station.routers_dropped_max_routes,
            station.routers_dropped_max_peers
        ),
        (0, 1)
    );
    let dropped = station.take_dropped();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!((dropped[0].bound, dropped[0].limit), (Bound::MaxPeers, 2));
    assert_eq!(dropped[0].bound.as_str(), "max_peers");
    // A second router over the peer bound counts again.
    station.connect(2, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    for index in 0..3u8 {
        let mut peer = transit();
        peer.address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, index + 10));
        station.handle(
            2,
            BmpEvent::PeerUp {
                peer,
                router_asn: Some(64_512),
            },
        );
    }
    assert_eq!(station.routers_dropped_max_peers, 2);
    assert_eq!(station.take_dropped()[0].address.to_string(), "127.0.0.3");
}

#[test]
fn findings_count_by_the_own_route_they_concern_however_many_prefixes_a_hijacker_sends() {
    let mut station = station();
    station.handle(
        ROUTER,
        BmpEvent::PeerUp {
            peer: transit(),
            router_asn: None,
        },
    );
    // Three more-specifics of the aggregate /24, two of one announced /24 of the split /23,
    // and the /23 itself.
    station.handle(
        ROUTER,
        announce(
            transit(),
            RibKind::AdjRibInPre,
            &[
                "203.0.113.0/25",
                "203.0.113.128/26",
                "203.0.113.192/27",
                "198.51.101.0/25",
                "198.51.101.128/25",
                "198.51.100.0/23",
            ],
            attributes(&[OTHER], None),
        ),
    );
    station.evaluate(1_000);
    assert_eq!(station.findings().count(), 6);
    let counts: Vec<_> = station.finding_counts_by_own_route().into_iter().collect();
    assert_eq!(
        counts,
        vec![
            ((FindingKind::ExactHijack, net("198.51.100.0/23")), 1),
            ((FindingKind::SubprefixHijack, net("198.51.101.0/24")), 2),
            ((FindingKind::SubprefixHijack, net("203.0.113.0/24")), 3),
        ]
    );
    station.handle(
        ROUTER,
        withdraw(
            transit(),
            RibKind::AdjRibInPre,
            &["203.0.113.0/25", "203.0.113.128/26", "203.0.113.192/27"],
        ),
    );
    station.evaluate(2_000);
    let counts = station.finding_counts_by_own_route();
    assert!(
        !counts.contains_key(&(FindingKind::SubprefixHijack, net("203.0.113.0/24"))),
        "a cleared route has no entry: {counts:?}"
    );
    assert_eq!(counts.len(), 2);
}

#[test]
fn the_own_route_of_a_prefix_is_the_most_specific_announced_or_onboarded_one() {
    let expectation = expectation();
    for (prefix, own) in [
        ("198.51.100.0/23", Some("198.51.100.0/23")),
        ("198.51.100.0/24", Some("198.51.100.0/24")),
        ("198.51.100.77/32", Some("198.51.100.0/24")),
        ("203.0.113.0/24", Some("203.0.113.0/24")),
        ("203.0.113.200/29", Some("203.0.113.0/24")),
        ("192.0.2.0/24", None),
        ("198.51.100.0/22", None),
    ] {
        assert_eq!(
            expectation.own_route_of(&net(prefix)),
            own.map(net),
            "{prefix}"
        );
    }
}

proptest! {
    /// Whatever a router streams inside or outside our prefixes, the findings metric has at
    /// most one series per kind and own route.
    #[test]
    fn findings_series_are_bounded_by_the_topology(
        routes in proptest::collection::vec((any::<u32>(), 8u8..=32, any::<bool>()), 0..200),
    ) {
        let mut station = station();
        station.handle(ROUTER, BmpEvent::PeerUp { peer: transit(), router_asn: None });
        for (address, length, inside) in routes {
            let base = if inside { u32::from(Ipv4Addr::new(203, 0, 113, 0)) } else { 0 };
            let address = Ipv4Addr::from(base | (address & if inside { 0xff } else { u32::MAX }));
            let prefix = IpNet::new(IpAddr::V4(address), length.max(if inside { 24 } else { 8 }))
                .unwrap()
                .trunc();
            station.handle(
                ROUTER,
                BmpEvent::Routes {
                    peer: transit(),
                    rib: RibKind::AdjRibInPre,
                    withdrawn: vec![],
                    announced: vec![RouteKey::single(prefix)],
                    attributes: Some(attributes(&[OTHER], None)),
                    end_of_rib: false,
                },
            );
        }
        station.evaluate(1_000);
        let own_routes = [
            net("198.51.100.0/23"),
            net("198.51.100.0/24"),
            net("198.51.101.0/24"),
            net("203.0.113.0/24"),
        ];
        let counts = station.finding_counts_by_own_route();
        prop_assert!(counts.len() <= FindingKind::ALL.len() * own_routes.len());
        prop_assert!(counts.keys().all(|(_, own)| own_routes.contains(own)));
        prop_assert_eq!(counts.values().sum::<u64>(), station.findings().count() as u64);
    }
}

fn path(prefix: &str, path_id: u32) -> RouteKey {
    RouteKey {
        prefix: net(prefix),
        path_id,
    }
}

fn paths_event(
    peer: PeerKey,
    rib: RibKind,
    withdrawn: &[RouteKey],
    announced: &[RouteKey],
    attrs: Option<Arc<SeenAttributes>>,
) -> BmpEvent {
    BmpEvent::Routes {
        peer,
        rib,
        withdrawn: withdrawn.to_vec(),
        announced: announced.to_vec(),
        attributes: attrs,
        end_of_rib: false,
    }
}

#[test]
fn rfc7911_a_hijack_seen_as_one_of_several_paths_is_raised_and_one_path_withdrawn_clears_it() {
    let mut station = station();
    synced(&mut station);
    let (ours, theirs) = (path("198.51.100.0/24", 1), path("198.51.100.0/24", 2));
    for (route, attrs) in [
        (ours, attributes(&[EDGE, OURS], None)),
        (theirs, attributes(&[EDGE, OTHER], None)),
    ] {
        station.handle(
            ROUTER,
            paths_event(transit(), RibKind::AdjRibInPre, &[], &[route], Some(attrs)),
        );
    }
    assert_eq!(
        station.route_count(),
        4,
        "two of ours, two paths of one prefix"
    );
    station.evaluate(1_000);
    assert_eq!(
        kinds(&station),
        vec![(FindingKind::ExactHijack, net("198.51.100.0/24"))]
    );
    station.handle(
        ROUTER,
        paths_event(transit(), RibKind::AdjRibInPre, &[theirs], &[], None),
    );
    assert_eq!(station.route_count(), 3, "the other path stays");
    station.evaluate(2_000);
    assert!(kinds(&station).is_empty());
}

#[test]
fn rfc7911_our_route_is_held_while_any_path_of_our_session_has_our_attributes() {
    let mut station = station();
    synced(&mut station);
    // Our session carries path ids: a second path of the same prefix with other attributes.
    let (ours, changed) = (path("198.51.100.0/24", 0), path("198.51.100.0/24", 1));
    station.handle(
        ROUTER,
        paths_event(
            us(),
            RibKind::AdjRibInPost,
            &[],
            &[changed],
            Some(attributes(&[OURS], Some(99))),
        ),
    );
    station.evaluate(1_000);
    assert!(kinds(&station).is_empty(), "one path still has ours");
    assert_eq!(station.holdings()[0].missing, Vec::<IpNet>::new());
    station.handle(
        ROUTER,
        paths_event(us(), RibKind::AdjRibInPost, &[ours], &[], None),
    );
    station.evaluate(2_000);
    station.evaluate(8_000);
    assert_eq!(
        kinds(&station),
        vec![(FindingKind::NotVisible, net("198.51.100.0/24"))]
    );
    let finding = station.findings().next().unwrap();
    assert_eq!(
        finding.evidence.detail,
        "held post-policy with other attributes than we send"
    );
    assert_eq!(station.holdings()[0].missing, vec![net("198.51.100.0/24")]);
}

/// Prefixes of the ADD-PATH model: two own (exact), one not.
const PATH_PREFIXES: [&str; 3] = ["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"];

proptest! {
    /// Over generated (prefix, path id, origin) announcements and withdrawals written as BMP
    /// bytes on an ADD-PATH session and read back by the codec, the station keeps exactly the
    /// routes of a map keyed by (prefix, path id), and raises a hijack on an own prefix exactly
    /// when some path of it is originated by another AS.
    #[test]
    fn add_path_routes_and_hijacks_equal_a_simple_model(
        steps in prop::collection::vec((any::<bool>(), 0..3usize, 0..3u32, any::<bool>()), 1..40)
    ) {
        use crate::bmp::{codec, writer};
        let mut bytes = bytes::BytesMut::new();
        let both = [((1u16, 1u8), writer::ADD_PATH_BOTH)];
        bytes.extend_from_slice(&writer::peer_up_with_add_path(
            &transit(), RibKind::AdjRibInPre, &both, &both,
        ));
        let mut model: BTreeMap<RouteKey, u32> = BTreeMap::new();
        for (announce, prefix, path_id, hijacker) in &steps {
            let route = path(PATH_PREFIXES[*prefix], *path_id);
            let origin = if *hijacker { OTHER } else { OURS };
            if *announce {
                let seen = SeenAttributes {
                    as_path: vec![EDGE, origin],
                    origin_asn: Some(origin),
                    ..SeenAttributes::default()
                };
                writer::routes(&mut bytes, &transit(), RibKind::AdjRibInPre, &[], &[route], Some(&seen), true);
                model.insert(route, origin);
            } else {
                writer::routes(&mut bytes, &transit(), RibKind::AdjRibInPre, &[route], &[], None, true);
                model.remove(&route);
            }
        }
        let (events, error) = codec::decode_stream(&bytes);
        prop_assert_eq!(error, None);
        let mut station = station();
        station.settle_ms = 0;
        for event in events {
            station.handle(ROUTER, event);
        }
        station.evaluate(1);
        let held: BTreeMap<RouteKey, u32> = station.routers[&ROUTER].rib.peers[&transit()]
            .tables
            .get(&RibKind::AdjRibInPre)
            .map(|table| table.iter().map(|(key, record)| (key, record.origin_asn)).collect())
            .unwrap_or_default();
        prop_assert_eq!(&held, &model);
        let hijacked: Vec<(FindingKind, IpNet)> = PATH_PREFIXES[..2]
            .iter()
            .map(|prefix| net(prefix))
            .filter(|prefix| model.iter().any(|(key, origin)| key.prefix == *prefix && *origin == OTHER))
            .map(|prefix| (FindingKind::ExactHijack, prefix))
            .collect();
        let mut raised = kinds(&station);
        raised.sort();
        let mut expected = hijacked;
        expected.sort();
        prop_assert_eq!(raised, expected);
    }
}

#[test]
fn the_judged_revision_starts_at_its_first_evaluation_and_survives_a_prefix_change() {
    let mut station = Station::new(5_000);
    assert_eq!(station.settle_ms(), 5_000);
    station.evaluate(1_000);
    // An expectation without a revision: nothing to report.
    assert_eq!(station.judged_revision(), None);
    let first = RoutesRevision {
        generation: 4,
        version: 9,
    };
    station.set_expectation_of(first, expectation());
    // Not judged until an evaluation ran against it.
    assert_eq!(station.judged_revision(), None);
    station.evaluate(2_000);
    station.evaluate(2_500);
    let judged = |revision, since_ms| Some(JudgedRevision { revision, since_ms });
    assert_eq!(station.judged_revision(), judged(first, 2_000));
    // The same revision again (the onboarded prefixes or the VRPs changed) keeps its clock.
    station.set_expectation_of(first, Arc::new(Expectation::default()));
    station.evaluate(3_000);
    assert_eq!(station.judged_revision(), judged(first, 2_000));
    // A new publication of the same generation, then a new generation: each restarts it.
    let republished = RoutesRevision {
        generation: 4,
        version: 10,
    };
    station.set_expectation_of(republished, expectation());
    assert_eq!(station.judged_revision(), None);
    station.evaluate(3_500);
    assert_eq!(station.judged_revision(), judged(republished, 3_500));
    let next = RoutesRevision {
        generation: 5,
        version: 11,
    };
    station.set_expectation_of(next, expectation());
    station.evaluate(4_000);
    assert_eq!(station.judged_revision(), judged(next, 4_000));
}
