//! [`RouteIndex`]: the routes a speaker announces, held by prefix, to find the routes whose
//! RFC 6811 state a VRP update can change.
//!
//! A route's state depends only on the VRPs covering it, so an update (VRPs announced or
//! withdrawn) can change the state only of routes inside a changed VRP's prefix: the routes
//! of the subtrie under each changed prefix. Re-judging those alone brings every affected
//! verdict up to date without touching the rest.
//!
//! Owns: the routes by prefix (origins per prefix) and the affected-route query. Must not touch:
//! the VRPs themselves ([`VrpSet`]), what a new state leads to (the daemon).

use std::collections::BTreeSet;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::{RpkiState, Vrp, VrpSet};

/// Routes (prefix, origin AS) in one prefix trie per family.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    ipv4: PrefixMap<Ipv4Net, Vec<u32>>,
    ipv6: PrefixMap<Ipv6Net, Vec<u32>>,
    count: usize,
}

impl RouteIndex {
    pub fn new() -> RouteIndex {
        RouteIndex::default()
    }

    /// Adds a route (a duplicate is kept once).
    pub fn insert(&mut self, prefix: IpNet, origin: u32) {
        let origins = match prefix.trunc() {
            IpNet::V4(prefix) => self.ipv4.entry(prefix).or_default(),
            IpNet::V6(prefix) => self.ipv6.entry(prefix).or_default(),
        };
        if !origins.contains(&origin) {
            origins.push(origin);
            self.count += 1;
        }
    }

    /// Removes a route; false when it was not held.
    pub fn remove(&mut self, prefix: &IpNet, origin: u32) -> bool {
        let removed = match prefix.trunc() {
            IpNet::V4(prefix) => remove_origin(&mut self.ipv4, &prefix, origin),
            IpNet::V6(prefix) => remove_origin(&mut self.ipv6, &prefix, origin),
        };
        if removed {
            self.count -= 1;
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every route inside the prefix of at least one of `changed` (the VRPs an update
    /// announced or withdrew), sorted, each once: exactly the routes whose state the update
    /// can change.
    pub fn affected_routes<'a>(
        &self,
        changed: impl IntoIterator<Item = &'a Vrp>,
    ) -> Vec<(IpNet, u32)> {
        let prefixes: BTreeSet<IpNet> = changed.into_iter().map(|vrp| vrp.prefix.trunc()).collect();
        let mut affected = Vec::new();
        // A changed prefix inside another changed prefix adds nothing: skip it.
        let mut last: Option<IpNet> = None;
        for prefix in prefixes {
            if last.is_some_and(|outer| outer.contains(&prefix)) {
                continue;
            }
            last = Some(prefix);
            match prefix {
                IpNet::V4(network) => collect(&self.ipv4, &network, &mut affected),
                IpNet::V6(network) => collect(&self.ipv6, &network, &mut affected),
            }
        }
        affected.sort_unstable();
        affected.dedup();
        affected
    }

    /// The affected routes (see [`RouteIndex::affected_routes`]) with their state in `vrps`,
    /// the set after the update.
    pub fn revalidate<'a>(
        &self,
        vrps: &VrpSet,
        changed: impl IntoIterator<Item = &'a Vrp>,
    ) -> Vec<(IpNet, u32, RpkiState)> {
        self.affected_routes(changed)
            .into_iter()
            .map(|(prefix, origin)| (prefix, origin, vrps.state(&prefix, origin)))
            .collect()
    }
}

/// The routes of one family's trie at and under `network`.
fn collect<P>(trie: &PrefixMap<P, Vec<u32>>, network: &P, into: &mut Vec<(IpNet, u32)>)
where
    P: prefix_trie::Prefix,
    IpNet: From<P>,
{
    for (prefix, origins) in trie.children(network) {
        let prefix = IpNet::from(prefix);
        into.extend(origins.iter().map(|origin| (prefix, *origin)));
    }
}

fn remove_origin<P: prefix_trie::Prefix>(
    trie: &mut PrefixMap<P, Vec<u32>>,
    prefix: &P,
    origin: u32,
) -> bool {
    let Some(origins) = trie.get_mut(prefix) else {
        return false;
    };
    let Some(position) = origins.iter().position(|held| *held == origin) else {
        return false;
    };
    origins.swap_remove(position);
    if origins.is_empty() {
        trie.remove(prefix);
    }
    true
}
