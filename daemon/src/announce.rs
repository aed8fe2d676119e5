//! The one place where topology announcements become BGP routes.
//!
//! Owns [`LocationRoutes`] (what this location announces in one generation, shared by every peer
//! task through a `watch` channel) and the translation of a route's topology attributes into the
//! path attributes one peer is sent ([`PeerRouteContext::path_attributes`]). `topology` and `bgp`
//! never depend on each other; this module is the bridge.
//!
//! AS path rule: towards an external peer the path is our ASN, then the prefix's origin ASN when
//! it differs from ours (a customer's BYOIP origin behind us), with the origin repeated
//! `as_path_prepend` more times. Towards an internal peer our own ASN is not added and LOCAL_PREF
//! 100 is sent (RFC 4271 §5.1.5).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;
use rustc_hash::FxHashMap;
use topologyd_bgp::PathAttributes;
use topologyd_bgp::codec::{Ipv6NextHop, LargeCommunity, Origin};
use topologyd_topology::{DesiredRoute, RouteAttributes};

/// LOCAL_PREF sent to internal peers.
pub const INTERNAL_LOCAL_PREF: u32 = 100;

/// The topology-level attributes of a route: what the service and the prefix say, before any
/// peer-specific next hop or AS path is added.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteIntent {
    pub origin_asn: u32,
    pub attributes: RouteAttributes,
    /// The service the routes belong to (health and drains act per service).
    pub service: Arc<str>,
    /// Health made the service less preferred here (see `overlay.rs`).
    pub degraded: bool,
}

/// Everything this location announces in one generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocationRoutes {
    pub generation: u64,
    /// Publication counter: bumps on every publish, also when health or a drain changes what
    /// is announced within one generation (peers report the version they have sent).
    pub version: u64,
    /// Sorted by prefix, each with an index into `intents`. Shared: a publication that keeps
    /// every route and its intent index (no service withdrawn here, no two intents merged by a
    /// degrade, none held back by RPKI) shares the running generation's list instead of
    /// holding a second copy (24 bytes a route); a change copies it first (`Arc::make_mut`).
    pub routes: Arc<Vec<(IpNet, u32)>>,
    /// Distinct attribute sets; routes sharing one are packed together.
    pub intents: Vec<RouteIntent>,
}

impl LocationRoutes {
    /// Builds the set from a topology's desired routes for one location.
    pub fn from_desired(generation: u64, desired: &[DesiredRoute<'_>]) -> LocationRoutes {
        LocationRoutes::from_desired_routes(generation, desired.len(), desired.iter().cloned())
    }

    /// [`LocationRoutes::from_desired`] from the routes as they come
    /// ([`topologyd_topology::Topology::desired_routes`]), `count` of them.
    pub fn from_desired_routes<'t>(
        generation: u64,
        count: usize,
        desired: impl Iterator<Item = DesiredRoute<'t>>,
    ) -> LocationRoutes {
        let mut index_of: HashMap<(u32, &RouteAttributes, &str), u32> = HashMap::new();
        // In front of `index_of`: the routes of one service borrow one attribute set and one
        // name, so their addresses find the index without hashing the attributes (communities
        // and all) of every route. The same addresses are the same contents: the same index.
        let mut index_at: FxHashMap<(u32, usize, usize, usize), u32> = FxHashMap::default();
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        let mut intents = Vec::new();
        let mut routes = Vec::with_capacity(count);
        for route in desired {
            let address = (
                route.origin_asn,
                std::ptr::from_ref(route.attributes) as usize,
                route.service.as_ptr() as usize,
                route.service.len(),
            );
            if let Some(&index) = index_at.get(&address) {
                routes.push((route.prefix, index));
                continue;
            }
            let index = *index_of
                .entry((route.origin_asn, route.attributes, route.service))
                .or_insert_with(|| {
                    let service = names
                        .entry(route.service)
                        .or_insert_with(|| Arc::from(route.service))
                        .clone();
                    intents.push(RouteIntent {
                        origin_asn: route.origin_asn,
                        attributes: route.attributes.clone(),
                        service,
                        degraded: false,
                    });
                    u32::try_from(intents.len() - 1).unwrap_or(u32::MAX)
                });
            index_at.insert(address, index);
            routes.push((route.prefix, index));
        }
        routes.sort_unstable_by_key(|(prefix, _)| *prefix);
        routes.dedup_by_key(|(prefix, _)| *prefix);
        LocationRoutes {
            generation,
            version: 0,
            routes: Arc::new(routes),
            intents,
        }
    }

    /// Number of routes per family: (IPv4, IPv6).
    pub fn count_by_family(&self) -> (u64, u64) {
        let ipv4 = self
            .routes
            .iter()
            .filter(|(prefix, _)| matches!(prefix, IpNet::V4(_)))
            .count() as u64;
        (ipv4, self.routes.len() as u64 - ipv4)
    }

    pub fn intent(&self, index: u32) -> Option<&RouteIntent> {
        self.intents.get(index as usize)
    }
}

/// When each route of `next` was first published with its present attributes (unix seconds,
/// parallel to `next.routes`): carried over from `previous` (`since` parallel to its routes)
/// where the route was there with the same intent, `now` otherwise. One merge walk over the
/// two sorted route lists.
pub fn carry_since(
    previous: &LocationRoutes,
    since: &[u32],
    next: &LocationRoutes,
    now: u32,
) -> Vec<u32> {
    let mut carried = Vec::with_capacity(next.routes.len());
    let mut old = previous.routes.iter().zip(since).peekable();
    for (prefix, index) in next.routes.iter() {
        while old.next_if(|((before, _), _)| before < prefix).is_some() {}
        let kept =
            old.next_if(|((before, _), _)| before == prefix)
                .and_then(|((_, old_index), at)| {
                    (previous.intent(*old_index) == next.intent(*index)).then_some(*at)
                });
        carried.push(kept.unwrap_or(now));
    }
    carried
}

/// What one peer needs to turn a [`RouteIntent`] into path attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRouteContext {
    pub local_asn: u32,
    pub peer_asn: u32,
    pub ipv4_next_hop: Option<Ipv4Addr>,
    pub ipv6_next_hop: Option<Ipv6Addr>,
}

impl PeerRouteContext {
    pub fn internal(&self) -> bool {
        self.local_asn == self.peer_asn
    }

    /// The path attributes this peer is sent for a route with `intent`.
    pub fn path_attributes(&self, intent: &RouteIntent) -> PathAttributes {
        let mut as_path = Vec::with_capacity(2 + usize::from(intent.attributes.as_path_prepend));
        if !self.internal() {
            as_path.push(self.local_asn);
        }
        let origin_repeats = 1 + usize::from(intent.attributes.as_path_prepend);
        if intent.origin_asn != self.local_asn {
            as_path.extend(std::iter::repeat_n(intent.origin_asn, origin_repeats));
        } else {
            // Our own origin: the first copy is the one above (or none towards iBGP).
            as_path.extend(std::iter::repeat_n(
                self.local_asn,
                usize::from(intent.attributes.as_path_prepend),
            ));
        }
        let attributes = PathAttributes {
            origin: Origin::Igp,
            next_hop: self.ipv4_next_hop,
            ipv6_next_hop: self.ipv6_next_hop.map(|global| Ipv6NextHop {
                global,
                link_local: None,
            }),
            med: intent.attributes.med,
            local_pref: self.internal().then_some(INTERNAL_LOCAL_PREF),
            communities: intent
                .attributes
                .communities
                .iter()
                .map(|community| (u32::from(community.0) << 16) | u32::from(community.1))
                .collect(),
            large_communities: intent
                .attributes
                .large_communities
                .iter()
                .map(|community| LargeCommunity {
                    global_administrator: community.0,
                    local_data_1: community.1,
                    local_data_2: community.2,
                })
                .collect(),
            ..PathAttributes::default()
        };
        attributes.with_as_sequence(as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topologyd_config::{Community, LargeCommunity as TopologyLargeCommunity};

    fn intent(origin_asn: u32, prepend: u8) -> RouteIntent {
        RouteIntent {
            origin_asn,
            attributes: RouteAttributes {
                communities: vec![Community(13335, 100)],
                large_communities: vec![TopologyLargeCommunity(13335, 1, 2)],
                med: Some(10),
                as_path_prepend: prepend,
            },
            service: Arc::from("cdn"),
            degraded: false,
        }
    }

    fn context(peer_asn: u32) -> PeerRouteContext {
        PeerRouteContext {
            local_asn: 13335,
            peer_asn,
            ipv4_next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6_next_hop: None,
        }
    }

    fn as_sequence(attributes: &PathAttributes) -> Vec<u32> {
        attributes
            .as_path
            .iter()
            .flat_map(|segment| match segment {
                topologyd_bgp::codec::AsPathSegment::Sequence(asns)
                | topologyd_bgp::codec::AsPathSegment::Set(asns) => asns.clone(),
            })
            .collect()
    }

    /// Routes whose attributes are equal share one intent whether they borrow one attribute set
    /// or two copies of it; other attributes, another name or another origin make another.
    #[test]
    fn routes_share_an_intent_exactly_when_their_intents_are_equal() {
        let plain = RouteAttributes::default();
        let copy = plain.clone();
        let prepended = RouteAttributes {
            as_path_prepend: 1,
            ..RouteAttributes::default()
        };
        let (web, web_copy) = ("web".to_owned(), "web".to_owned());
        let kinds = [
            (13335, &plain, web.as_str()),
            (13335, &copy, web_copy.as_str()),
            (13335, &prepended, web.as_str()),
            (13335, &plain, "dns"),
            (64500, &plain, web.as_str()),
        ];
        let desired: Vec<DesiredRoute<'_>> = (0..40_u32)
            .map(|place| {
                let (origin_asn, attributes, service) = kinds[(place * 7 % 5) as usize];
                let prefix = IpNet::V4(
                    ipnet::Ipv4Net::new(Ipv4Addr::from(0x0A00_0000 | (place << 8)), 24)
                        .unwrap_or_else(|_| unreachable!()),
                );
                DesiredRoute {
                    prefix,
                    origin_asn,
                    attributes,
                    binding: prefix,
                    service,
                }
            })
            .collect();
        let routes = LocationRoutes::from_desired(1, &desired);
        assert_eq!(routes.intents.len(), 4, "{:?}", routes.intents);
        for (route, (prefix, index)) in desired.iter().zip(routes.routes.iter()) {
            let intent = &routes.intents[*index as usize];
            assert_eq!(route.prefix, *prefix);
            assert_eq!(
                (
                    intent.origin_asn,
                    &intent.attributes,
                    intent.service.as_ref()
                ),
                (route.origin_asn, route.attributes, route.service)
            );
        }
    }

    #[test]
    fn external_peer_sees_our_asn_then_the_prepended_origin() {
        let own = context(64512).path_attributes(&intent(13335, 2));
        assert_eq!(as_sequence(&own), vec![13335, 13335, 13335]);
        let byoip = context(64512).path_attributes(&intent(64999, 1));
        assert_eq!(as_sequence(&byoip), vec![13335, 64999, 64999]);
        assert_eq!(byoip.communities, vec![(13335 << 16) | 100]);
        assert_eq!(byoip.local_pref, None);
        assert_eq!(byoip.med, Some(10));
    }

    #[test]
    fn internal_peer_gets_local_pref_and_no_own_asn() {
        let attributes = context(13335).path_attributes(&intent(13335, 0));
        assert!(as_sequence(&attributes).is_empty());
        assert_eq!(attributes.local_pref, Some(INTERNAL_LOCAL_PREF));
    }

    /// A location's routes from `(third octet, intent index)` pairs over two intents.
    fn location_routes(routes: &[(u8, u32)]) -> LocationRoutes {
        let mut routes: Vec<(IpNet, u32)> = routes
            .iter()
            .map(|(third, index)| {
                let prefix: IpNet = format!("10.0.{third}.0/24")
                    .parse()
                    .unwrap_or_else(|_| panic!("a prefix"));
                (prefix, *index)
            })
            .collect();
        routes.sort_unstable();
        routes.dedup_by_key(|(prefix, _)| *prefix);
        LocationRoutes {
            generation: 1,
            version: 0,
            routes: Arc::new(routes),
            intents: vec![intent(13335, 0), intent(13335, 1)],
        }
    }

    proptest::proptest! {
        /// A route keeps its age while it stays with the same attributes; a route that is new,
        /// or whose attributes changed, is as old as the publication.
        #[test]
        fn ages_carry_over_exactly_the_unchanged_routes(
            before in proptest::collection::vec((0u8..32, 0u32..2), 0..24),
            after in proptest::collection::vec((0u8..32, 0u32..2), 0..24),
        ) {
            let (previous, next) = (location_routes(&before), location_routes(&after));
            let since: Vec<u32> = (0..previous.routes.len()).map(|at| 100 + at as u32).collect();
            let carried = carry_since(&previous, &since, &next, 5_000);
            proptest::prop_assert_eq!(carried.len(), next.routes.len());
            for ((prefix, index), age) in next.routes.iter().zip(&carried) {
                let kept = previous
                    .routes
                    .iter()
                    .position(|(old, old_index)| old == prefix && old_index == index);
                proptest::prop_assert_eq!(*age, kept.map_or(5_000, |at| since[at]));
            }
        }
    }
}
