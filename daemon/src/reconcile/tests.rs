//! Tests of the per-peer merge-diff: scenarios, then the diff against a reference model (a map
//! of what the peer holds) over generated route lists.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use topologyd_topology::RouteAttributes;

use super::*;
use crate::announce::RouteIntent;

/// Records what the diff tells the Adj-RIB-Out.
#[derive(Debug, Default)]
struct Recorder {
    announced: Vec<(IpNet, PathAttributes)>,
    withdrawn: Vec<IpNet>,
}

impl RouteChanges for Recorder {
    fn announce(&mut self, prefix: IpNet, attributes: &Arc<PathAttributes>) {
        self.announced.push((prefix, (**attributes).clone()));
    }

    fn withdraw(&mut self, prefix: IpNet) {
        self.withdrawn.push(prefix);
    }
}

fn context(ipv6_next_hop: Option<Ipv6Addr>) -> PeerRouteContext {
    PeerRouteContext {
        local_asn: 13335,
        peer_asn: 64512,
        ipv4_next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ipv6_next_hop,
    }
}

fn intent(med: u32) -> RouteIntent {
    RouteIntent {
        origin_asn: 13335,
        attributes: RouteAttributes {
            med: Some(med),
            ..RouteAttributes::default()
        },
        service: Arc::from("cdn"),
        degraded: false,
    }
}

/// A route list from (prefix, med) pairs: one intent per distinct MED.
fn routes(generation: u64, list: &[(&str, u32)]) -> LocationRoutes {
    let mut meds: Vec<u32> = list.iter().map(|(_, med)| *med).collect();
    meds.sort_unstable();
    meds.dedup();
    let mut routes: Vec<(IpNet, u32)> = list
        .iter()
        .map(|(prefix, med)| {
            let index = meds
                .iter()
                .position(|candidate| candidate == med)
                .unwrap_or(0);
            (prefix.parse().expect("a test prefix"), index as u32)
        })
        .collect();
    routes.sort_unstable_by_key(|(prefix, _)| *prefix);
    LocationRoutes {
        generation,
        version: generation,
        routes: Arc::new(routes),
        intents: meds.into_iter().map(intent).collect(),
    }
}

/// One peer's side of a diff: the routes and their interned attributes.
struct Applied {
    routes: LocationRoutes,
    attributes: Vec<FamilyAttributes>,
}

fn apply(
    interned: &mut Interned,
    context: &PeerRouteContext,
    old: &Applied,
    new: LocationRoutes,
    carried: Carried,
) -> (Applied, Recorder) {
    let attributes = family_attributes(&new, context, interned);
    let mut recorder = Recorder::default();
    diff(
        Side {
            routes: &old.routes,
            attributes: &old.attributes,
        },
        Side {
            routes: &new,
            attributes: &attributes,
        },
        carried,
        &mut recorder,
    );
    (
        Applied {
            routes: new,
            attributes,
        },
        recorder,
    )
}

const BOTH: Carried = Carried {
    ipv4: true,
    ipv6: true,
};

fn empty() -> Applied {
    Applied {
        routes: LocationRoutes::default(),
        attributes: Vec::new(),
    }
}

fn prefixes(announced: &[(IpNet, PathAttributes)]) -> Vec<String> {
    announced
        .iter()
        .map(|(prefix, _)| prefix.to_string())
        .collect()
}

#[test]
fn a_first_generation_announces_every_carried_route() {
    let mut interned = Interned::new();
    let context = context(Some("2001:db8::1".parse().expect("an address")));
    let new = routes(1, &[("192.0.2.0/24", 10), ("2001:db8::/48", 10)]);
    let (_, changes) = apply(&mut interned, &context, &empty(), new, BOTH);
    assert_eq!(
        prefixes(&changes.announced),
        ["192.0.2.0/24", "2001:db8::/48"]
    );
    assert!(changes.withdrawn.is_empty());
}

#[test]
fn an_unchanged_generation_sends_nothing() {
    let mut interned = Interned::new();
    let context = context(None);
    let list = [("192.0.2.0/24", 10), ("198.51.100.0/24", 20)];
    let (first, _) = apply(&mut interned, &context, &empty(), routes(1, &list), BOTH);
    let (_, changes) = apply(&mut interned, &context, &first, routes(2, &list), BOTH);
    assert!(changes.announced.is_empty(), "{changes:?}");
    assert!(changes.withdrawn.is_empty(), "{changes:?}");
}

#[test]
fn only_the_difference_is_sent() {
    let mut interned = Interned::new();
    let context = context(None);
    let before = [
        ("192.0.2.0/24", 10),
        ("198.51.100.0/24", 10),
        ("203.0.113.0/24", 10),
    ];
    let after = [
        ("192.0.2.0/24", 10),
        ("198.51.100.0/24", 20),
        ("198.51.101.0/24", 10),
    ];
    let (first, _) = apply(&mut interned, &context, &empty(), routes(1, &before), BOTH);
    let (_, changes) = apply(&mut interned, &context, &first, routes(2, &after), BOTH);
    assert_eq!(
        prefixes(&changes.announced),
        ["198.51.100.0/24", "198.51.101.0/24"]
    );
    assert_eq!(changes.announced[0].1.med, Some(20));
    assert_eq!(
        changes.withdrawn,
        ["203.0.113.0/24".parse::<IpNet>().expect("a prefix")]
    );
}

#[test]
fn a_family_the_peer_does_not_carry_is_never_announced() {
    let mut interned = Interned::new();
    let context = context(Some("2001:db8::1".parse().expect("an address")));
    let ipv4_only = Carried {
        ipv4: true,
        ipv6: false,
    };
    let new = routes(1, &[("192.0.2.0/24", 10), ("2001:db8::/48", 10)]);
    let (_, changes) = apply(&mut interned, &context, &empty(), new, ipv4_only);
    assert_eq!(prefixes(&changes.announced), ["192.0.2.0/24"]);
}

#[test]
fn a_changed_ipv6_next_hop_leaves_the_ipv4_routes_alone() {
    let mut interned = Interned::new();
    let list = [("192.0.2.0/24", 10), ("2001:db8::/48", 10)];
    let before = context(Some("2001:db8::1".parse().expect("an address")));
    let after = context(Some("2001:db8::2".parse().expect("an address")));
    let (first, _) = apply(&mut interned, &before, &empty(), routes(1, &list), BOTH);
    let (_, changes) = apply(&mut interned, &after, &first, routes(2, &list), BOTH);
    assert_eq!(prefixes(&changes.announced), ["2001:db8::/48"]);
}

#[test]
fn unencodable_routes_are_counted_only_in_carried_families() {
    let mut interned = Interned::new();
    // No IPv6 next hop: an IPv6 route cannot be encoded for this peer.
    let context = context(None);
    let new = routes(
        1,
        &[
            ("192.0.2.0/24", 10),
            ("2001:db8::/48", 10),
            ("2001:db8:1::/48", 10),
        ],
    );
    let attributes = family_attributes(&new, &context, &mut interned);
    let (count, first) = count_unencodable(&new, &attributes, BOTH);
    assert_eq!(count, 2);
    assert!(first.is_some_and(|first| first.starts_with("2001:db8::/48")));
    let ipv4_only = Carried {
        ipv4: true,
        ipv6: false,
    };
    assert_eq!(count_unencodable(&new, &attributes, ipv4_only), (0, None));
}

#[test]
fn unused_attribute_sets_are_released() {
    let mut interned = Interned::new();
    let context = context(None);
    let (first, _) = apply(
        &mut interned,
        &context,
        &empty(),
        routes(1, &[("192.0.2.0/24", 10)]),
        BOTH,
    );
    let (second, _) = apply(
        &mut interned,
        &context,
        &first,
        routes(2, &[("192.0.2.0/24", 20)]),
        BOTH,
    );
    drop(first);
    release_unused(&mut interned);
    // One intent, two families: two sets left, both MED 20.
    assert_eq!(interned.len(), 2);
    assert!(interned.keys().all(|attributes| attributes.med == Some(20)));
    drop(second);
}

/// A generated route list: up to 24 prefixes from a pool of IPv4 and IPv6 ones, each with one
/// of three MEDs.
fn route_list() -> impl Strategy<Value = BTreeMap<IpNet, u32>> {
    prop::collection::btree_map(
        (0u8..16, any::<bool>()).prop_map(|(index, ipv6)| -> IpNet {
            if ipv6 {
                format!("2001:db8:{index:x}::/48")
                    .parse()
                    .expect("a prefix")
            } else {
                format!("10.{index}.0.0/16").parse().expect("a prefix")
            }
        }),
        0u32..3,
        0..24,
    )
}

fn to_routes(generation: u64, list: &BTreeMap<IpNet, u32>) -> LocationRoutes {
    let text: Vec<(String, u32)> = list
        .iter()
        .map(|(prefix, med)| (prefix.to_string(), *med))
        .collect();
    let borrowed: Vec<(&str, u32)> = text
        .iter()
        .map(|(prefix, med)| (prefix.as_str(), *med))
        .collect();
    routes(generation, &borrowed)
}

proptest! {
    /// The invariant: applying the diff to what the peer held gives exactly what it must hold
    /// now (every carried route with its new attributes), and the diff is minimal (an announce
    /// only for a new or changed route, a withdrawal only for a route that went away).
    #[test]
    fn the_diff_matches_the_reference_model(
        old in route_list(),
        new in route_list(),
        ipv4 in any::<bool>(),
        ipv6 in any::<bool>(),
        next_hop_changes in any::<bool>(),
    ) {
        let carried = Carried { ipv4, ipv6 };
        let mut interned = Interned::new();
        let first_context = context(Some("2001:db8::1".parse().expect("an address")));
        let second_context = if next_hop_changes {
            context(Some("2001:db8::2".parse().expect("an address")))
        } else {
            first_context.clone()
        };
        let (applied, _) = apply(&mut interned, &first_context, &empty(), to_routes(1, &old), carried);
        let held: BTreeMap<IpNet, PathAttributes> = applied
            .routes
            .routes
            .iter()
            .filter(|(prefix, _)| carried.carries(prefix))
            .map(|(prefix, intent)| (*prefix, (**applied.attributes[*intent as usize].of(prefix)).clone()))
            .collect();
        let (next, changes) = apply(&mut interned, &second_context, &applied, to_routes(2, &new), carried);
        let wanted: BTreeMap<IpNet, PathAttributes> = next
            .routes
            .routes
            .iter()
            .filter(|(prefix, _)| carried.carries(prefix))
            .map(|(prefix, intent)| (*prefix, (**next.attributes[*intent as usize].of(prefix)).clone()))
            .collect();
        // Applying the changes to what was held gives what is wanted.
        let mut model = held.clone();
        for prefix in &changes.withdrawn {
            model.remove(prefix);
        }
        for (prefix, attributes) in &changes.announced {
            model.insert(*prefix, attributes.clone());
        }
        prop_assert_eq!(&model, &wanted);
        // Minimal: withdrawals are exactly the prefixes that went away, in order, each once.
        let expected_withdrawn: Vec<IpNet> = old.keys().filter(|prefix| !new.contains_key(prefix)).copied().collect();
        prop_assert_eq!(&changes.withdrawn, &expected_withdrawn);
        // Minimal: announcements are exactly the carried routes that are new or changed.
        let expected_announced: BTreeSet<IpNet> = wanted
            .iter()
            .filter(|(prefix, attributes)| held.get(prefix) != Some(attributes))
            .map(|(prefix, _)| *prefix)
            .collect();
        let announced: Vec<IpNet> = changes.announced.iter().map(|(prefix, _)| *prefix).collect();
        prop_assert_eq!(announced.len(), expected_announced.len(), "a prefix announced twice");
        prop_assert_eq!(announced.into_iter().collect::<BTreeSet<_>>(), expected_announced);
    }
}
