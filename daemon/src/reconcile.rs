//! The merge-diff of one peer's routes: given the route list a peer's Adj-RIB-Out holds and the
//! newly published one (both sorted by prefix, see [`LocationRoutes`]), tell the Adj-RIB-Out only
//! what differs. Pure and synchronous (no tokio, no sockets); the peer task (`peer.rs`) calls it
//! when the engine publishes, and `announce.rs` beside it defines what a route's attributes are.
//!
//! The rule, tested against a reference model over generated inputs (`reconcile/tests.rs`):
//! - a prefix in the old list and not in the new one is withdrawn (whatever its family: the
//!   Adj-RIB-Out ignores a withdrawal of what it never held);
//! - a prefix in the new list of a family the peer carries is announced when it is new, or when
//!   its interned path attributes are not the very same ones it had (attribute sets are interned
//!   per peer, so an unchanged attribute set is one pointer comparison);
//! - nothing else is touched: an unchanged route costs one comparison and sends nothing.
//!
//! Must not touch: sockets, timers, the session state machine, the engine.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;
use topologyd_bgp::codec::Family as WireFamily;
use topologyd_bgp::{AdjRibOut, PathAttributes, check_encodable};

use crate::announce::{LocationRoutes, PeerRouteContext};

/// One intent's path attributes for its IPv4 routes and for its IPv6 routes. Each set carries
/// only its own family's next hop (the other is never encoded for that family), so a reload
/// that changes one family's next hop leaves the other family's attribute sets, and so its
/// routes in the Adj-RIB-Out, untouched: only the routes whose UPDATE changes are re-sent.
#[derive(Debug, Clone)]
pub struct FamilyAttributes {
    pub ipv4: Arc<PathAttributes>,
    pub ipv6: Arc<PathAttributes>,
}

impl FamilyAttributes {
    pub fn of(&self, prefix: &IpNet) -> &Arc<PathAttributes> {
        match prefix {
            IpNet::V4(_) => &self.ipv4,
            IpNet::V6(_) => &self.ipv6,
        }
    }
}

/// The path attribute sets one peer holds, each once.
pub type Interned = HashMap<PathAttributes, Arc<PathAttributes>>;

/// The families a peer carries: routes of another family are not its routes (never
/// announced, never counted, never warned about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Carried {
    pub fn of(families: &[WireFamily]) -> Carried {
        Carried {
            ipv4: families.contains(&WireFamily::Ipv4Unicast),
            ipv6: families.contains(&WireFamily::Ipv6Unicast),
        }
    }

    pub fn carries(self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(_) => self.ipv4,
            IpNet::V6(_) => self.ipv6,
        }
    }
}

/// Where the diff goes: the Adj-RIB-Out in the peer task, a recorder in tests.
pub trait RouteChanges {
    fn announce(&mut self, prefix: IpNet, attributes: &Arc<PathAttributes>);
    fn withdraw(&mut self, prefix: IpNet);
}

impl RouteChanges for AdjRibOut {
    fn announce(&mut self, prefix: IpNet, attributes: &Arc<PathAttributes>) {
        // An unencodable route fails here; [`count_unencodable`] counts those over the
        // generation.
        let _ = AdjRibOut::announce(self, prefix, attributes);
    }

    fn withdraw(&mut self, prefix: IpNet) {
        AdjRibOut::withdraw(self, prefix);
    }
}

/// Per intent of `routes`, the path attributes this peer is sent, interned in `interned` (so
/// that an attribute set unchanged since the last generation is the same `Arc`).
pub fn family_attributes(
    routes: &LocationRoutes,
    context: &PeerRouteContext,
    interned: &mut Interned,
) -> Vec<FamilyAttributes> {
    let mut intern = |attributes: PathAttributes| {
        interned
            .entry(attributes.clone())
            .or_insert_with(|| Arc::new(attributes))
            .clone()
    };
    routes
        .intents
        .iter()
        .map(|intent| {
            let attributes = context.path_attributes(intent);
            FamilyAttributes {
                ipv4: intern(PathAttributes {
                    ipv6_next_hop: None,
                    ..attributes.clone()
                }),
                ipv6: intern(PathAttributes {
                    next_hop: None,
                    ..attributes
                }),
            }
        })
        .collect()
}

/// Forgets the attribute sets no applied route uses any more.
pub fn release_unused(interned: &mut Interned) {
    interned.retain(|_, attributes| Arc::strong_count(attributes) > 1);
}

/// One side of the diff: a sorted route list and the attributes of its intents.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub routes: &'a LocationRoutes,
    pub attributes: &'a [FamilyAttributes],
}

impl Side<'_> {
    fn attributes_of(&self, prefix: &IpNet, intent: u32) -> Option<&Arc<PathAttributes>> {
        self.attributes
            .get(intent as usize)
            .map(|attributes| attributes.of(prefix))
    }
}

/// Walks `old` and `new` together (both sorted by prefix) and tells `changes` only what
/// differs (see the module comment for the rule).
pub fn diff(old: Side<'_>, new: Side<'_>, carried: Carried, changes: &mut impl RouteChanges) {
    let (old_routes, new_routes) = (&old.routes.routes, &new.routes.routes);
    let (mut old_index, mut new_index) = (0, 0);
    loop {
        match (old_routes.get(old_index), new_routes.get(new_index)) {
            (Some((old_prefix, old_intent)), Some((new_prefix, new_intent))) => {
                if old_prefix == new_prefix {
                    let before = old.attributes_of(old_prefix, *old_intent);
                    let after = new.attributes_of(new_prefix, *new_intent);
                    if let Some(after) = after
                        && before.is_none_or(|before| !Arc::ptr_eq(before, after))
                    {
                        announce(changes, new, carried, *new_prefix, *new_intent);
                    }
                    old_index += 1;
                    new_index += 1;
                } else if old_prefix < new_prefix {
                    changes.withdraw(*old_prefix);
                    old_index += 1;
                } else {
                    announce(changes, new, carried, *new_prefix, *new_intent);
                    new_index += 1;
                }
            }
            (Some((old_prefix, _)), None) => {
                changes.withdraw(*old_prefix);
                old_index += 1;
            }
            (None, Some((new_prefix, new_intent))) => {
                announce(changes, new, carried, *new_prefix, *new_intent);
                new_index += 1;
            }
            (None, None) => break,
        }
    }
}

/// Announces `prefix` with its new attributes, if the peer carries its family.
fn announce(
    changes: &mut impl RouteChanges,
    new: Side<'_>,
    carried: Carried,
    prefix: IpNet,
    intent: u32,
) {
    if carried.carries(&prefix)
        && let Some(after) = new.attributes_of(&prefix, intent)
    {
        changes.announce(prefix, after);
    }
}

/// Counts the routes of `routes` in a carried family whose intent's attributes cannot be
/// encoded; returns the count and the first such route with the reason. One encoding check per
/// intent and family, then one pass over the routes.
pub fn count_unencodable(
    routes: &LocationRoutes,
    attributes: &[FamilyAttributes],
    carried: Carried,
) -> (u64, Option<String>) {
    let problems: Vec<[Option<String>; 2]> = attributes
        .iter()
        .map(|family| {
            [
                check_encodable(&family.ipv4, WireFamily::Ipv4Unicast)
                    .err()
                    .map(|error| error.to_string()),
                check_encodable(&family.ipv6, WireFamily::Ipv6Unicast)
                    .err()
                    .map(|error| error.to_string()),
            ]
        })
        .collect();
    if problems
        .iter()
        .all(|problem| problem[0].is_none() && problem[1].is_none())
    {
        return (0, None);
    }
    let mut count = 0u64;
    let mut first = None;
    for (prefix, intent) in routes.routes.iter() {
        if !carried.carries(prefix) {
            continue;
        }
        let index = usize::from(matches!(prefix, IpNet::V6(_)));
        if let Some(problem) = problems
            .get(*intent as usize)
            .and_then(|problem| problem[index].as_ref())
        {
            count += 1;
            first.get_or_insert_with(|| format!("{prefix}: {problem}"));
        }
    }
    (count, first)
}

#[cfg(test)]
mod tests;
