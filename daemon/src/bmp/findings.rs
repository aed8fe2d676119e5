//! What the topology expects the edge routers to hold, the finding kinds, and the finding book
//! that turns conditions observed at each evaluation into findings with first-seen and last-seen
//! times, raised and cleared.
//!
//! Owns: [`Expectation`] (built from what this location publishes and the onboarded prefixes),
//! [`FindingKind`], [`Finding`], [`FindingBook`]. Must not touch: the RIBs (`rib.rs`), time
//! sources (time is an argument, unix milliseconds), tokio.
//!
//! Kinds, for every onboarded prefix and its more-specifics:
//! - `exact_hijack`: an own prefix, or one of its announced routes, seen with another origin;
//! - `subprefix_hijack`: a longer prefix inside an own prefix seen with another origin;
//! - `unexpected_path`: an own prefix's route whose AS path carries its origin ASN somewhere
//!   other than at the end (a forged or leaked path), or ends in an AS_SET;
//! - `rpki_invalid`: an own prefix's route that is RPKI-invalid under the daemon's VRP set;
//! - `not_visible`: a route this location announces that the router does not hold in the
//!   post-policy Adj-RIB-In of its session with us, or holds with another AS path or MED,
//!   without a community we send, or with one we stopped sending (the route as it was). Raised only once the condition has lasted the settle time, and
//!   only for a router whose table is synchronised: it sent the End-of-RIB of that table, or
//!   the session has been known for the settle time; and only in a family the router has shown
//!   any route of (a router that monitors no IPv6 route says nothing about IPv6 routes).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::IpNet;
use topologyd_bgp::codec::AsPathSegment;

use super::codec::{PeerKey, RibKind, SeenAttributes};
use crate::announce::{LocationRoutes, PeerRouteContext};

/// One onboarded prefix: its origin and the length of the routes it is announced as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnPrefix {
    pub cidr: IpNet,
    pub origin_asn: u32,
    /// The prefix's own length (aggregate) or its split length.
    pub announced_length: u8,
}

/// What a route this location announces looks like to the router that receives it from us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRoute {
    pub as_path: Vec<u32>,
    pub med: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

/// Communities an earlier expectation of a prefix had and the current one has not (sorted): a
/// router still holding one of them holds the route as it was, not as we send it now. Kept
/// only for the prefixes whose communities changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoLongerSent {
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

impl NoLongerSent {
    /// Whether `held` still carries one of them.
    pub fn held_in(&self, held: &SeenAttributes) -> bool {
        self.communities
            .iter()
            .any(|community| held.communities.binary_search(community).is_ok())
            || self
                .large_communities
                .iter()
                .any(|community| held.large_communities.binary_search(community).is_ok())
    }
}

/// `(sent ∪ stopped) − now`, sorted, for sorted inputs.
fn no_longer_sent<T: Ord + Copy>(sent: &[T], stopped: &[T], now: &[T]) -> Vec<T> {
    let mut gone: Vec<T> = sent
        .iter()
        .chain(stopped)
        .filter(|community| now.binary_search(community).is_err())
        .copied()
        .collect();
    gone.sort_unstable();
    gone.dedup();
    gone
}

impl ExpectedRoute {
    /// Whether `held` is this route as we send it. The router may add communities of its own
    /// (import policy); it must not drop ours nor change the path or the MED. Some routers
    /// (FRR 8.4) report monitored routes with their own AS (`router_asn`) prepended, as they
    /// would send them on: a path is also ours when it is ours after that one AS.
    pub fn matches(&self, held: &SeenAttributes, router_asn: Option<u32>) -> bool {
        let path = match (held.as_path.split_first(), router_asn) {
            (Some((first, rest)), Some(router)) if *first == router && rest == self.as_path => rest,
            _ => &held.as_path[..],
        };
        path == self.as_path
            && held.med == self.med
            && self
                .communities
                .iter()
                .all(|community| held.communities.binary_search(community).is_ok())
            && self
                .large_communities
                .iter()
                .all(|community| held.large_communities.binary_search(community).is_ok())
    }
}

/// What the topology expects: our identity as the routers' BMP feeds name it, the onboarded
/// prefixes, and what this location announces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// Our BGP identifier: the router's session with us is the peer with this id.
    pub router_id: Option<Ipv4Addr>,
    /// Sorted by cidr; onboarded prefixes never overlap (the compiler refuses it).
    pub own_prefixes: Vec<OwnPrefix>,
    pub announced: BTreeMap<IpNet, ExpectedRoute>,
    /// Per announced prefix whose communities changed: the ones no longer sent.
    pub no_longer_sent: BTreeMap<IpNet, NoLongerSent>,
}

impl Expectation {
    /// Built from the onboarded prefixes and what this location publishes, with the AS path
    /// an external peer is sent (`announce.rs` decides it; this only reads it).
    pub fn new(
        local_asn: u32,
        router_id: Ipv4Addr,
        prefixes: &topologyd_topology::PrefixList,
        routes: &LocationRoutes,
    ) -> Expectation {
        let mut own_prefixes: Vec<OwnPrefix> = prefixes
            .iter()
            .map(|prefix| OwnPrefix {
                cidr: prefix.cidr,
                origin_asn: prefix.origin_asn,
                announced_length: match prefix.announce {
                    topologyd_config::AnnounceMode::Aggregate => prefix.cidr.prefix_len(),
                    topologyd_config::AnnounceMode::Split(length) => length,
                },
            })
            .collect();
        own_prefixes.sort_by_key(|prefix| prefix.cidr);
        let context = PeerRouteContext {
            local_asn,
            peer_asn: 0,
            ipv4_next_hop: None,
            ipv6_next_hop: None,
        };
        let expected: Vec<ExpectedRoute> = routes
            .intents
            .iter()
            .map(|intent| {
                let attributes = context.path_attributes(intent);
                let mut large_communities: Vec<[u32; 3]> = attributes
                    .large_communities
                    .iter()
                    .map(|community| {
                        [
                            community.global_administrator,
                            community.local_data_1,
                            community.local_data_2,
                        ]
                    })
                    .collect();
                large_communities.sort_unstable();
                let mut communities = attributes.communities.clone();
                communities.sort_unstable();
                ExpectedRoute {
                    as_path: attributes
                        .as_path
                        .iter()
                        .flat_map(|segment| match segment {
                            AsPathSegment::Sequence(asns) | AsPathSegment::Set(asns) => {
                                asns.iter().copied()
                            }
                        })
                        .collect(),
                    med: attributes.med,
                    communities,
                    large_communities,
                }
            })
            .collect();
        let announced = routes
            .routes
            .iter()
            .filter_map(|(prefix, index)| {
                expected
                    .get(*index as usize)
                    .map(|route| (*prefix, route.clone()))
            })
            .collect();
        Expectation {
            router_id: Some(router_id),
            own_prefixes,
            announced,
            no_longer_sent: BTreeMap::new(),
        }
    }

    /// The onboarded prefix that contains `prefix` (equal or shorter), if any.
    pub fn covering(&self, prefix: &IpNet) -> Option<&OwnPrefix> {
        let after = self
            .own_prefixes
            .partition_point(|own| own.cidr.network() <= prefix.network());
        self.own_prefixes[..after]
            .iter()
            .rev()
            .take_while(|own| own.cidr.network() <= prefix.network())
            .find(|own| own.cidr.contains(prefix))
    }
}

impl Expectation {
    /// Carries over from `previous` (the expectation this one replaces) the communities each
    /// announced prefix no longer sends: what the previous one sent or had stopped sending,
    /// minus what this one sends.
    pub fn remember_no_longer_sent(&mut self, previous: &Expectation) {
        let mut no_longer_sent_now = BTreeMap::new();
        for (prefix, route) in &self.announced {
            let Some(before) = previous.announced.get(prefix) else {
                continue;
            };
            let stopped = previous.no_longer_sent.get(prefix);
            let unchanged = before.communities == route.communities
                && before.large_communities == route.large_communities;
            if unchanged && stopped.is_none() {
                continue;
            }
            let empty = NoLongerSent::default();
            let stopped = stopped.unwrap_or(&empty);
            let gone = NoLongerSent {
                communities: no_longer_sent(
                    &before.communities,
                    &stopped.communities,
                    &route.communities,
                ),
                large_communities: no_longer_sent(
                    &before.large_communities,
                    &stopped.large_communities,
                    &route.large_communities,
                ),
            };
            if gone != empty {
                no_longer_sent_now.insert(*prefix, gone);
            }
        }
        self.no_longer_sent = no_longer_sent_now;
    }

    /// Whether `held` is the route we send for `prefix` now (see [`ExpectedRoute::matches`]),
    /// and carries no community we stopped sending.
    pub fn holds_as_sent(
        &self,
        prefix: &IpNet,
        expected: &ExpectedRoute,
        held: &SeenAttributes,
        router_asn: Option<u32>,
    ) -> bool {
        expected.matches(held, router_asn)
            && !self
                .no_longer_sent
                .get(prefix)
                .is_some_and(|gone| gone.held_in(held))
    }

    /// The own route a finding on `prefix` concerns: the most specific route this location
    /// announces, or else onboarded prefix, that contains `prefix` (equal or shorter). `None`
    /// for a prefix outside both. Every finding is on a route inside an onboarded prefix or on
    /// an announced route, so what this returns is one of a set the topology fixes, whatever
    /// the routers send: the findings metric is labelled with it.
    pub fn own_route_of(&self, prefix: &IpNet) -> Option<IpNet> {
        let own = self.covering(prefix);
        let shortest = own.map_or(0, |own| own.cidr.prefix_len());
        (shortest..=prefix.prefix_len())
            .rev()
            .filter_map(|length| IpNet::new(prefix.addr(), length).ok())
            .map(|candidate| candidate.trunc())
            .find(|candidate| self.announced.contains_key(candidate))
            .or(own.map(|own| own.cidr))
    }
}

/// What a finding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    ExactHijack,
    SubprefixHijack,
    NotVisible,
    RpkiInvalid,
    UnexpectedPath,
}

impl FindingKind {
    pub const ALL: [FindingKind; 5] = [
        FindingKind::ExactHijack,
        FindingKind::SubprefixHijack,
        FindingKind::NotVisible,
        FindingKind::RpkiInvalid,
        FindingKind::UnexpectedPath,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ExactHijack => "exact_hijack",
            FindingKind::SubprefixHijack => "subprefix_hijack",
            FindingKind::NotVisible => "not_visible",
            FindingKind::RpkiInvalid => "rpki_invalid",
            FindingKind::UnexpectedPath => "unexpected_path",
        }
    }

    /// Whether the condition must last the settle time before it is raised (a route we just
    /// announced takes a moment to reach the router's tables).
    pub fn settles(self) -> bool {
        self == FindingKind::NotVisible
    }
}

/// What identifies a finding: it is raised once and cleared once.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FindingKey {
    pub kind: FindingKind,
    pub prefix: IpNet,
    /// The router's sysName, or its address when it sent none.
    pub router: String,
    pub peer: PeerKey,
}

/// What showed a condition: the table, the path and origin held (none for a route not held),
/// and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub rib: RibKind,
    pub as_path: Vec<u32>,
    pub origin_asn: Option<u32>,
    pub expected_origin_asn: u32,
    pub detail: String,
}

/// A raised finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub key: FindingKey,
    pub evidence: Evidence,
    /// Unix milliseconds: when the condition was first observed, and last.
    pub first_seen_ms: u64,
    pub last_seen_ms: u64,
}

/// A raise or a clear, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindingChange {
    Raised(Finding),
    Cleared(Finding),
}

/// The findings raised now, and conditions still settling.
#[derive(Debug, Default)]
pub struct FindingBook {
    raised: BTreeMap<FindingKey, Finding>,
    settling: BTreeMap<FindingKey, u64>,
}

impl FindingBook {
    /// Merges the conditions observed at `now` (every one, from scratch): new ones are raised
    /// (after `settle_ms` for kinds that settle), held ones get `last_seen`, the others clear.
    pub fn observe(
        &mut self,
        conditions: BTreeMap<FindingKey, Evidence>,
        now_ms: u64,
        settle_ms: u64,
    ) -> Vec<FindingChange> {
        let mut changes = Vec::new();
        let mut settling = BTreeMap::new();
        let mut raised = BTreeMap::new();
        for (key, evidence) in conditions {
            if let Some(mut finding) = self.raised.remove(&key) {
                finding.last_seen_ms = now_ms;
                finding.evidence = evidence;
                raised.insert(key, finding);
                continue;
            }
            let since = self.settling.get(&key).copied().unwrap_or(now_ms);
            if key.kind.settles() && now_ms.saturating_sub(since) < settle_ms {
                settling.insert(key, since);
                continue;
            }
            let finding = Finding {
                key: key.clone(),
                evidence,
                first_seen_ms: since,
                last_seen_ms: now_ms,
            };
            changes.push(FindingChange::Raised(finding.clone()));
            raised.insert(key, finding);
        }
        for (_, finding) in std::mem::take(&mut self.raised) {
            changes.push(FindingChange::Cleared(finding));
        }
        self.raised = raised;
        self.settling = settling;
        changes
    }

    pub fn raised(&self) -> impl Iterator<Item = &Finding> {
        self.raised.values()
    }

    pub fn len(&self) -> usize {
        self.raised.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raised.is_empty()
    }

    /// Raised findings of each kind.
    pub fn count(&self, kind: FindingKind) -> usize {
        self.raised.keys().filter(|key| key.kind == kind).count()
    }
}
