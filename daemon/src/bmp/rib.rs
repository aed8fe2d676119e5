//! What one monitored router holds, as its BMP feed says: its peers and, per peer and RIB kind,
//! route (prefix and ADD-PATH path id) → [`RouteRecord`] (the origin ASN and an interned
//! attribute-set id, 8 bytes), plus the attribute sets themselves, interned once for every
//! router and reference counted. A peer whose session carries path ids has one route per path;
//! any other has path id 0, so one route per prefix.
//!
//! Owns: [`AttributeInterner`], [`RouterRib`] and [`PeerRibs`]. Must not touch: findings (what
//! the routes mean, `findings.rs`), the wire (`codec.rs`), time.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use rustc_hash::FxHashMap;

use super::codec::{PeerKey, RibKind, RouteKey, SeenAttributes};

/// An interned attribute set's id.
pub type AttributeId = u32;

/// One held route: 8 bytes beside its prefix key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRecord {
    /// The origin ASN, or [`NO_ORIGIN`] when the path does not end in an AS_SEQUENCE.
    pub origin_asn: u32,
    pub attributes: AttributeId,
}

/// `origin_asn` of a route whose path has no single origin.
pub const NO_ORIGIN: u32 = 0;

/// Attribute sets shared by every router's routes: one copy per distinct set, freed when the
/// last route holding it goes.
#[derive(Debug, Default)]
pub struct AttributeInterner {
    ids: FxHashMap<Arc<SeenAttributes>, AttributeId>,
    slots: Vec<Option<(Arc<SeenAttributes>, u32)>>,
    free: Vec<AttributeId>,
}

impl AttributeInterner {
    /// The id of `attributes`, holding one more reference to it.
    pub fn acquire(&mut self, attributes: &Arc<SeenAttributes>) -> AttributeId {
        if let Some(id) = self.ids.get(attributes) {
            if let Some((_, count)) = &mut self.slots[*id as usize] {
                *count += 1;
            }
            return *id;
        }
        let entry = Some((Arc::clone(attributes), 1));
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = entry;
                id
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as AttributeId
            }
        };
        self.ids.insert(Arc::clone(attributes), id);
        id
    }

    /// Drops one reference to `id`; the set goes with its last reference.
    pub fn release(&mut self, id: AttributeId) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        let Some((attributes, count)) = slot else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.ids.remove(&**attributes);
            *slot = None;
            self.free.push(id);
        }
    }

    pub fn get(&self, id: AttributeId) -> Option<&Arc<SeenAttributes>> {
        self.slots
            .get(id as usize)
            .and_then(|slot| slot.as_ref().map(|(attributes, _)| attributes))
    }

    /// Distinct attribute sets held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Approximate heap bytes (tables and the sets themselves).
    pub fn approximate_bytes(&self) -> usize {
        let per_set = std::mem::size_of::<SeenAttributes>() + 64;
        let sets: usize = self
            .ids
            .keys()
            .map(|set| {
                per_set
                    + 4 * (set.as_path.len() + set.communities.len())
                    + 12 * set.large_communities.len()
            })
            .sum();
        sets + self.ids.capacity() * 16 + self.slots.capacity() * 16 + self.free.capacity() * 4
    }
}

/// One RIB of one peer: route → record. Routes with path id 0 (every route of a session
/// without ADD-PATH, the common case) are keyed by prefix alone, so that they cost no more
/// than before path ids were read (a 28-byte entry); routes with another path id (ADD-PATH
/// sessions only) are keyed by prefix and path id (32 bytes).
#[derive(Debug, Default)]
pub struct RibTable {
    first_paths: FxHashMap<IpNet, RouteRecord>,
    other_paths: FxHashMap<RouteKey, RouteRecord>,
}

impl RibTable {
    pub fn get(&self, route: &RouteKey) -> Option<&RouteRecord> {
        if route.path_id == 0 {
            self.first_paths.get(&route.prefix)
        } else {
            self.other_paths.get(route)
        }
    }

    pub fn remove(&mut self, route: &RouteKey) -> Option<RouteRecord> {
        if route.path_id == 0 {
            self.first_paths.remove(&route.prefix)
        } else {
            self.other_paths.remove(route)
        }
    }

    /// Holds `record` for `route`; returns the record it replaces.
    pub fn insert(&mut self, route: RouteKey, record: RouteRecord) -> Option<RouteRecord> {
        if route.path_id == 0 {
            self.first_paths.insert(route.prefix, record)
        } else {
            self.other_paths.insert(route, record)
        }
    }

    pub fn len(&self) -> usize {
        self.first_paths.len() + self.other_paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every route and its record, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (RouteKey, &RouteRecord)> {
        self.first_paths
            .iter()
            .map(|(prefix, record)| (RouteKey::single(*prefix), record))
            .chain(
                self.other_paths
                    .iter()
                    .map(|(route, record)| (*route, record)),
            )
    }

    /// Every path of `prefix`: a lookup, plus a scan of the other paths of an ADD-PATH
    /// session (meant for the small table of the session with us).
    pub fn paths_of<'t>(
        &'t self,
        prefix: &'t IpNet,
    ) -> impl Iterator<Item = &'t RouteRecord> + Clone + 't {
        self.first_paths.get(prefix).into_iter().chain(
            self.other_paths
                .iter()
                .filter(move |(route, _)| route.prefix == *prefix)
                .map(|(_, record)| record),
        )
    }

    /// Approximate heap bytes (buckets times entry size, plus control bytes).
    pub fn approximate_bytes(&self) -> usize {
        let first = std::mem::size_of::<(IpNet, RouteRecord)>() + 1;
        let other = std::mem::size_of::<(RouteKey, RouteRecord)>() + 1;
        (self.first_paths.capacity() * first + self.other_paths.capacity() * other) * 8 / 7
    }

    fn into_records(self) -> impl Iterator<Item = RouteRecord> {
        self.first_paths
            .into_values()
            .chain(self.other_paths.into_values())
    }
}

/// One peer's RIBs, and which of them have sent their End-of-RIB.
#[derive(Debug, Default)]
pub struct PeerRibs {
    pub tables: BTreeMap<RibKind, RibTable>,
    pub end_of_rib: BTreeMap<RibKind, bool>,
}

impl PeerRibs {
    pub fn route_count(&self) -> usize {
        self.tables.values().map(|table| table.len()).sum()
    }
}

/// Everything one router connection has told the station.
#[derive(Debug, Default)]
pub struct RouterRib {
    pub peers: BTreeMap<PeerKey, PeerRibs>,
    /// Whether the router has sent any IPv4 / IPv6 route: a router that monitors no route of a
    /// family says nothing about it.
    pub families_seen: [bool; 2],
    /// The router's own AS, from the OPEN of a Peer Up.
    pub router_asn: Option<u32>,
    /// Routes held over every peer and RIB (kept as they change: the station bounds it).
    routes_held: usize,
}

impl RouterRib {
    /// Applies one Route Monitoring message. Routes for a peer not yet up create it (Loc-RIB
    /// has no Peer Up).
    pub fn apply_routes(
        &mut self,
        interner: &mut AttributeInterner,
        peer: PeerKey,
        rib: RibKind,
        withdrawn: &[RouteKey],
        announced: &[RouteKey],
        attributes: Option<&Arc<SeenAttributes>>,
    ) {
        let ribs = self.peers.entry(peer).or_default();
        let table = ribs.tables.entry(rib).or_default();
        for route in withdrawn {
            if let Some(old) = table.remove(route) {
                interner.release(old.attributes);
                self.routes_held -= 1;
            }
        }
        let Some(attributes) = attributes else {
            return;
        };
        let origin_asn = attributes.origin_asn.unwrap_or(NO_ORIGIN);
        for route in announced {
            self.families_seen[usize::from(matches!(route.prefix, IpNet::V6(_)))] = true;
            let id = interner.acquire(attributes);
            let record = RouteRecord {
                origin_asn,
                attributes: id,
            };
            match table.insert(*route, record) {
                Some(old) => interner.release(old.attributes),
                None => self.routes_held += 1,
            }
        }
    }

    pub fn mark_end_of_rib(&mut self, peer: PeerKey, rib: RibKind) {
        self.peers
            .entry(peer)
            .or_default()
            .end_of_rib
            .insert(rib, true);
    }

    /// Forgets `peer` and its routes (Peer Down).
    pub fn drop_peer(&mut self, interner: &mut AttributeInterner, peer: &PeerKey) {
        if let Some(ribs) = self.peers.remove(peer) {
            self.routes_held -= ribs.route_count();
            release_all(interner, ribs);
        }
    }

    /// Forgets everything (Termination, or the connection closed).
    pub fn clear(&mut self, interner: &mut AttributeInterner) {
        for (_, ribs) in std::mem::take(&mut self.peers) {
            release_all(interner, ribs);
        }
        self.families_seen = [false; 2];
        self.routes_held = 0;
    }

    pub fn route_count(&self) -> usize {
        self.routes_held
    }

    /// Whether the router has shown any route of `prefix`'s family.
    pub fn monitors_family_of(&self, prefix: &IpNet) -> bool {
        self.families_seen[usize::from(matches!(prefix, IpNet::V6(_)))]
    }

    /// Approximate heap bytes of the tables (buckets times entry size, plus control bytes).
    pub fn approximate_bytes(&self) -> usize {
        self.peers
            .values()
            .flat_map(|ribs| ribs.tables.values())
            .map(RibTable::approximate_bytes)
            .sum()
    }
}

fn release_all(interner: &mut AttributeInterner, ribs: PeerRibs) {
    for table in ribs.tables.into_values() {
        for record in table.into_records() {
            interner.release(record.attributes);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn peer() -> PeerKey {
        PeerKey {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            asn: 1,
            bgp_id: Ipv4Addr::LOCALHOST,
            distinguisher: 0,
        }
    }

    fn attributes(origin: u32) -> Arc<SeenAttributes> {
        Arc::new(SeenAttributes {
            as_path: vec![1, origin],
            origin_asn: Some(origin),
            ..SeenAttributes::default()
        })
    }

    #[test]
    fn interned_sets_go_with_their_last_route() {
        let mut interner = AttributeInterner::default();
        let mut rib = RouterRib::default();
        let prefixes: Vec<RouteKey> = ["10.0.0.0/24", "10.0.1.0/24"]
            .iter()
            .map(|prefix| RouteKey::single(prefix.parse().unwrap()))
            .collect();
        rib.apply_routes(
            &mut interner,
            peer(),
            RibKind::AdjRibInPre,
            &[],
            &prefixes,
            Some(&attributes(5)),
        );
        assert_eq!(interner.len(), 1);
        rib.apply_routes(
            &mut interner,
            peer(),
            RibKind::AdjRibInPre,
            &[],
            &prefixes[..1],
            Some(&attributes(6)),
        );
        assert_eq!(interner.len(), 2);
        rib.apply_routes(
            &mut interner,
            peer(),
            RibKind::AdjRibInPre,
            &prefixes[1..],
            &[],
            None,
        );
        assert_eq!(interner.len(), 1, "the origin-5 set has no route left");
        assert_eq!(rib.route_count(), 1);
        rib.clear(&mut interner);
        assert!(interner.is_empty());
        assert_eq!(rib.route_count(), 0);
    }

    #[test]
    fn every_path_of_a_prefix_is_held_and_withdrawn_alone() {
        let mut interner = AttributeInterner::default();
        let mut rib = RouterRib::default();
        let prefix: IpNet = "10.0.0.0/24".parse().unwrap();
        let paths: Vec<RouteKey> = [0, 1, 7]
            .into_iter()
            .map(|path_id| RouteKey { prefix, path_id })
            .collect();
        for (path, origin) in paths.iter().zip([5, 6, 7]) {
            rib.apply_routes(
                &mut interner,
                peer(),
                RibKind::AdjRibInPre,
                &[],
                &[*path],
                Some(&attributes(origin)),
            );
        }
        let table = &rib.peers[&peer()].tables[&RibKind::AdjRibInPre];
        let mut origins: Vec<u32> = table.paths_of(&prefix).map(|r| r.origin_asn).collect();
        origins.sort_unstable();
        assert_eq!(origins, vec![5, 6, 7]);
        rib.apply_routes(
            &mut interner,
            peer(),
            RibKind::AdjRibInPre,
            &paths[..2],
            &[],
            None,
        );
        let table = &rib.peers[&peer()].tables[&RibKind::AdjRibInPre];
        let left: Vec<(RouteKey, u32)> = table.iter().map(|(k, r)| (k, r.origin_asn)).collect();
        assert_eq!(left, vec![(paths[2], 7)]);
        assert_eq!(rib.route_count(), 1);
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn routes_without_path_ids_keep_the_28_byte_entry() {
        assert_eq!(std::mem::size_of::<(IpNet, RouteRecord)>(), 28);
        assert_eq!(std::mem::size_of::<(RouteKey, RouteRecord)>(), 32);
    }

    #[test]
    fn records_stay_eight_bytes() {
        assert_eq!(std::mem::size_of::<RouteRecord>(), 8);
    }
}
