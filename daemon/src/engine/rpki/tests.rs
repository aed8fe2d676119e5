//! Tests of the run-time RPKI judgement: the policies, re-judging only the routes a changed
//! VRP covers, and (proptest) the invariants of `keep` and `withdraw` over random VRP changes.

use std::sync::Arc;

use ipnet::IpNet;
use proptest::prelude::*;
use topologyd_api::RpkiSyncState;
use topologyd_config::daemon::InvalidPolicy;
use topologyd_rpki::{RpkiState, Vrp, VrpSet};
use topologyd_topology::RouteAttributes;

use super::{RpkiBook, RpkiUpdate, covered_routes};
use crate::announce::{LocationRoutes, RouteIntent};

const ORIGIN: u32 = 64500;

fn net(text: &str) -> IpNet {
    text.parse().unwrap_or_else(|_| panic!("{text}"))
}

fn routes(prefixes: &[&str]) -> LocationRoutes {
    let mut routes: Vec<(IpNet, u32)> = prefixes.iter().map(|prefix| (net(prefix), 0)).collect();
    routes.sort_unstable();
    LocationRoutes {
        generation: 1,
        version: 0,
        routes: Arc::new(routes),
        intents: vec![RouteIntent {
            origin_asn: ORIGIN,
            attributes: RouteAttributes::default(),
            service: Arc::from("web"),
            degraded: false,
        }],
    }
}

fn vrp(prefix: &str, max_length: u8, asn: u32) -> Vrp {
    Vrp {
        prefix: net(prefix),
        max_length,
        asn,
    }
}

fn update(vrps: &[Vrp], changed: Option<Vec<IpNet>>) -> RpkiUpdate {
    let mut set = VrpSet::new();
    for vrp in vrps {
        set.insert(*vrp);
    }
    RpkiUpdate {
        vrps: Arc::new(set),
        changed_prefixes: changed.map(Arc::from),
        ..RpkiUpdate::initial(RpkiSyncState::InSync)
    }
}

/// What the peers are sent of `routes` when they were sent all of them before.
fn announced(book: &mut RpkiBook, routes: &LocationRoutes) -> Vec<IpNet> {
    sent(book, routes, routes)
}

/// What the peers are sent of `wanted` (the routes after drains and health) when they are
/// sent `published` now.
fn sent(book: &mut RpkiBook, wanted: &LocationRoutes, published: &LocationRoutes) -> Vec<IpNet> {
    let mut next = wanted.clone();
    book.hold_back(&mut next, published);
    next.routes.iter().map(|(prefix, _)| *prefix).collect()
}

/// `routes` without `drained`.
fn without(routes: &LocationRoutes, drained: &[IpNet]) -> LocationRoutes {
    let mut wanted = routes.clone();
    Arc::make_mut(&mut wanted.routes).retain(|(prefix, _)| !drained.contains(prefix));
    wanted
}

#[test]
fn keep_does_not_announce_again_a_route_that_turned_invalid_while_drained() {
    let routes = routes(&["192.0.2.0/24", "198.51.100.0/24"]);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Keep));
    book.judge_generation(&routes, &routes, 0);
    book.update(update(&[vrp("192.0.2.0/24", 24, ORIGIN)], None), &routes, 1);
    // The service of 192.0.2.0/24 is drained: the peers are sent only the other route.
    let drained = without(&routes, &[net("192.0.2.0/24")]);
    assert_eq!(
        sent(&mut book, &drained, &routes),
        vec![net("198.51.100.0/24")]
    );
    // While drained, its ROA names another AS.
    book.update(
        update(
            &[vrp("192.0.2.0/24", 24, 64999)],
            Some(vec![net("192.0.2.0/24")]),
        ),
        &routes,
        2,
    );
    assert_eq!(book.verdicts[0].state, RpkiState::InvalidOrigin);
    // The drain ends: the invalid route is held back, not announced again, and said so.
    let mut next = routes.clone();
    let changes = book.hold_back(&mut next, &drained);
    let prefixes: Vec<IpNet> = next.routes.iter().map(|(prefix, _)| *prefix).collect();
    assert_eq!(prefixes, vec![net("198.51.100.0/24")]);
    assert_eq!(changes.len(), 1);
    assert!(changes[0].held_after && !changes[0].held_before);
    assert_eq!(
        changes[0].action(),
        "held back: not announced again while invalid"
    );
    // The ROA is fixed: the route goes out again.
    let changes = book.update(
        update(
            &[vrp("192.0.2.0/24", 24, ORIGIN)],
            Some(vec![net("192.0.2.0/24")]),
        ),
        &routes,
        3,
    );
    assert!(
        changes
            .iter()
            .any(|change| change.held_before && !change.held_after)
    );
    assert_eq!(sent(&mut book, &routes, &drained).len(), 2);
}

#[test]
fn keep_keeps_an_announced_route_that_turns_invalid_and_alarms() {
    let routes = routes(&["192.0.2.0/24", "198.51.100.0/24"]);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Keep));
    book.judge_generation(&routes, &routes, 0);
    let valid = [vrp("192.0.2.0/24", 24, ORIGIN)];
    book.update(update(&valid, None), &routes, 1);
    assert_eq!(book.verdicts[0].state, RpkiState::Valid);
    // The ROA now names another AS: invalid, kept.
    let changes = book.update(
        update(
            &[vrp("192.0.2.0/24", 24, 64999)],
            Some(vec![net("192.0.2.0/24")]),
        ),
        &routes,
        2,
    );
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].after, RpkiState::InvalidOrigin);
    assert!(!changes[0].held_after);
    assert_eq!(book.verdicts[0].since_unix_ms, 2);
    assert_eq!(announced(&mut book, &routes).len(), 2);
}

#[test]
fn withdraw_holds_an_invalid_route_back_until_it_is_valid_again() {
    let routes = routes(&["192.0.2.0/24", "198.51.100.0/24"]);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Withdraw));
    book.judge_generation(&routes, &routes, 0);
    book.update(update(&[vrp("192.0.2.0/22", 22, ORIGIN)], None), &routes, 1);
    assert_eq!(book.verdicts[0].state, RpkiState::InvalidLength);
    assert_eq!(announced(&mut book, &routes), vec![net("198.51.100.0/24")]);
    let changes = book.update(
        update(
            &[vrp("192.0.2.0/22", 24, ORIGIN)],
            Some(vec![net("192.0.2.0/22")]),
        ),
        &routes,
        2,
    );
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].action(), "announced again");
    assert_eq!(announced(&mut book, &routes).len(), 2);
}

#[test]
fn a_route_a_generation_adds_invalid_is_never_newly_announced_even_under_keep() {
    let before = routes(&["198.51.100.0/24"]);
    let after = routes(&["192.0.2.0/24", "198.51.100.0/24"]);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Keep));
    book.judge_generation(&before, &before, 0);
    book.update(
        update(
            &[
                vrp("192.0.2.0/24", 24, 64999),
                vrp("198.51.100.0/24", 24, 64999),
            ],
            None,
        ),
        &before,
        1,
    );
    let changes = book.judge_generation(&after, &before, 2);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(changes[0].held_after);
    // The route already announced stays (keep); the new one is held back.
    assert_eq!(announced(&mut book, &after), vec![net("198.51.100.0/24")]);
}

#[test]
fn an_expired_set_makes_everything_not_found_and_holds_nothing() {
    let routes = routes(&["192.0.2.0/24"]);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Withdraw));
    book.judge_generation(&routes, &routes, 0);
    book.update(update(&[vrp("192.0.2.0/24", 24, 64999)], None), &routes, 1);
    assert!(announced(&mut book, &routes).is_empty());
    let expired = RpkiUpdate::initial(RpkiSyncState::Expired);
    book.update(expired, &routes, 2);
    assert_eq!(book.verdicts[0].state, RpkiState::NotFound);
    assert_eq!(announced(&mut book, &routes), vec![net("192.0.2.0/24")]);
    assert!(book.plan_vrps().is_none());
}

#[test]
fn an_incremental_update_rejudges_only_the_routes_it_covers() {
    let routes = routes(&["10.0.0.0/16", "10.1.0.0/24", "10.1.1.0/24", "10.2.0.0/24"]);
    assert_eq!(covered_routes(&routes.routes, &net("10.1.0.0/16")), 1..3);
    assert_eq!(covered_routes(&routes.routes, &net("10.0.0.0/8")), 0..4);
    assert_eq!(covered_routes(&routes.routes, &net("2001:db8::/32")), 4..4);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Keep));
    book.judge_generation(&routes, &routes, 0);
    // The update claims only 10.1.0.0/16 changed: a VRP elsewhere that it does not name is
    // not looked at (which shows the other routes were not re-judged).
    let changes = book.update(
        update(
            &[
                vrp("10.1.0.0/16", 24, ORIGIN),
                vrp("10.2.0.0/16", 24, ORIGIN),
            ],
            Some(vec![net("10.1.0.0/16")]),
        ),
        &routes,
        1,
    );
    let changed: Vec<IpNet> = changes.iter().map(|change| change.prefix).collect();
    assert_eq!(changed, vec![net("10.1.0.0/24"), net("10.1.1.0/24")]);
    assert_eq!(book.verdicts[3].state, RpkiState::NotFound);
}

#[test]
fn without_rpki_nothing_is_judged_or_held() {
    let routes = routes(&["192.0.2.0/24"]);
    let mut book = RpkiBook::new(None);
    assert!(book.judge_generation(&routes, &routes, 7).is_empty());
    assert_eq!(book.status.sync, RpkiSyncState::Disabled);
    assert!(book.plan_vrps().is_none());
    // Nothing is kept per route; each route reads as not found, since it was judged.
    assert!(book.verdicts.is_empty());
    let prefix = net("192.0.2.0/24");
    let verdict = book.verdict(0, prefix, ORIGIN);
    assert_eq!(
        (verdict.prefix, verdict.origin_asn, verdict.state),
        (prefix, ORIGIN, RpkiState::NotFound)
    );
    assert_eq!((verdict.since_unix_ms, verdict.held), (7, false));
    assert!(verdict.covering.is_empty());
    let mut next = routes.clone();
    assert!(book.hold_back(&mut next, &routes).is_empty());
    assert_eq!(next, routes);
}

fn arbitrary_vrps() -> impl Strategy<Value = Vec<Vrp>> {
    proptest::collection::vec(
        (
            0u8..4,
            22u8..=24,
            0u8..3,
            prop_oneof![Just(ORIGIN), Just(64999)],
        ),
        0..8,
    )
    .prop_map(|items| {
        items
            .into_iter()
            .map(|(third, length, extra, asn)| Vrp {
                prefix: IpNet::new(std::net::Ipv4Addr::new(10, 0, third * 4, 0).into(), length)
                    .map(|prefix| prefix.trunc())
                    .unwrap_or_else(|_| net("10.0.0.0/22")),
                max_length: length + extra,
                asn,
            })
            .collect()
    })
}

proptest! {
    /// Under `keep`, no VRP change ever removes a route from what the peers are sent, and no
    /// invalid route is ever newly sent (when a drain ends, say); under `withdraw`, what they
    /// are sent is the wanted routes less the invalid ones — after any sequence of sets (each
    /// handed over as a replacement or as an incremental delta) and of drains.
    #[test]
    fn policies_hold_over_any_vrp_changes_and_drains(
        sets in proptest::collection::vec(arbitrary_vrps(), 1..6),
        incremental in proptest::collection::vec(any::<bool>(), 6),
        drains in proptest::collection::vec(proptest::collection::vec(any::<bool>(), 5), 6),
    ) {
        let routes = routes(&["10.0.0.0/24", "10.0.1.0/24", "10.0.4.0/23", "10.0.8.0/24", "10.0.12.0/22"]);
        let all: Vec<IpNet> = routes.routes.iter().map(|(prefix, _)| *prefix).collect();
        for policy in [InvalidPolicy::Keep, InvalidPolicy::Withdraw] {
            let mut book = RpkiBook::new(Some(policy));
            book.judge_generation(&routes, &routes, 0);
            let mut published = routes.clone();
            let mut previous: Vec<Vrp> = Vec::new();
            for (step, vrps) in sets.iter().enumerate() {
                let changed = incremental[step].then(|| {
                    previous.iter().chain(vrps.iter()).map(|vrp| vrp.prefix).collect()
                });
                book.update(update(vrps, changed), &routes, step as u64);
                let mut set = VrpSet::new();
                for vrp in vrps {
                    set.insert(*vrp);
                }
                for verdict in &book.verdicts {
                    prop_assert_eq!(verdict.state, set.state(&verdict.prefix, verdict.origin_asn));
                }
                let drained: Vec<IpNet> = all
                    .iter()
                    .zip(&drains[step])
                    .filter(|(_, drained)| **drained)
                    .map(|(prefix, _)| *prefix)
                    .collect();
                let wanted = without(&routes, &drained);
                let before: Vec<IpNet> = published.routes.iter().map(|(prefix, _)| *prefix).collect();
                let now = sent(&mut book, &wanted, &published);
                match policy {
                    InvalidPolicy::Keep => {
                        for prefix in &now {
                            prop_assert!(
                                before.contains(prefix) || !set.state(prefix, ORIGIN).is_invalid(),
                                "{prefix} newly announced while invalid"
                            );
                        }
                        for prefix in &before {
                            prop_assert!(
                                drained.contains(prefix) || now.contains(prefix),
                                "{prefix} withdrawn by keep"
                            );
                        }
                    }
                    InvalidPolicy::Withdraw => {
                        let expected: Vec<IpNet> = all
                            .iter()
                            .filter(|prefix| !drained.contains(prefix))
                            .filter(|prefix| !set.state(prefix, ORIGIN).is_invalid())
                            .copied()
                            .collect();
                        prop_assert_eq!(&now, &expected);
                    }
                }
                published = wanted.clone();
                Arc::make_mut(&mut published.routes).retain(|(prefix, _)| now.contains(prefix));
                previous = vrps.clone();
            }
        }
    }
}
