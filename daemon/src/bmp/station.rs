//! The visibility core: every connected router's state and the findings computed from it
//! against the [`Expectation`]. Pure and synchronous: the shell (`listener.rs`) feeds it decoded
//! events and the time, and reads the findings back.
//!
//! Owns: [`Station`] (the routers, the shared attribute interner, the index of routes inside
//! own prefixes, the finding book). Must not touch: sockets, tasks, clocks, the engine.
//!
//! Evaluation is from scratch over the routes inside own prefixes (kept in a small index as they
//! arrive, so a full table costs one containment check per route and nothing per evaluation)
//! and over the routes this location announces; the book keeps first-seen times across
//! evaluations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use topologyd_config::daemon::{
    DEFAULT_BMP_MAX_PEERS_PER_ROUTER, DEFAULT_BMP_MAX_ROUTES_PER_ROUTER,
};
use topologyd_rpki::VrpSet;

use super::codec::{BmpEvent, PeerKey, RibKind, RouteKey, SeenAttributes};
use super::findings::{
    Evidence, Expectation, ExpectedRoute, Finding, FindingBook, FindingChange, FindingKey,
    FindingKind,
};
use super::rib::{AttributeInterner, NO_ORIGIN, PeerRibs, RibTable, RouterRib};

/// The station's number for one router connection.
pub type RouterId = u64;

/// One connected router.
#[derive(Debug)]
pub struct RouterState {
    /// sysName from its Initiation, or its address until then: what it calls itself, for
    /// display only (two routers may say the same name).
    pub name: String,
    pub address: IpAddr,
    pub rib: RouterRib,
    pub messages: u64,
    /// The router sent more routes or peers than the station holds for one router: its state
    /// was dropped and everything it sends is ignored until it reconnects (it is never
    /// synchronised meanwhile, so no gate passes on it).
    pub over_limit: bool,
}

impl RouterState {
    /// How findings and holdings name the router: its name and the address it connects from,
    /// so that two routers reporting the same sysName stay apart.
    pub fn label(&self) -> String {
        if self.name == self.address.to_string() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.address)
        }
    }
}

/// A summary of one router for views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSummary {
    pub name: String,
    pub address: IpAddr,
    pub peers: usize,
    pub routes: usize,
    pub messages: u64,
}

/// What one router holds of the routes this location announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterHoldings {
    /// The station's number for the router's connection: unique, unlike its name.
    pub router_id: RouterId,
    /// The router's [`RouterState::label`], for display.
    pub router: String,
    pub synchronised: bool,
    pub held: Vec<IpNet>,
    pub missing: Vec<IpNet>,
}

/// One held route inside an own prefix: every path of an ADD-PATH session is one (a hijack
/// seen as one of several paths is still a hijack).
type RelevantKey = (RouterId, PeerKey, RibKind, RouteKey);

/// Which per-router bound a router went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `[bmp] max_routes_per_router`.
    MaxRoutes,
    /// `[bmp] max_peers_per_router`.
    MaxPeers,
}

impl Bound {
    /// The metric's `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::MaxRoutes => "max_routes",
            Bound::MaxPeers => "max_peers",
        }
    }
}

/// Which publication of this location's routes an expectation was built from: the generation
/// (`LocationRoutes::generation`) and its publication counter (`LocationRoutes::version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutesRevision {
    pub generation: u64,
    pub version: u64,
}

/// The revision the station judges now, and since when: what a gate needs to know whether a
/// view is of the routes it waits for, and whether a route just sent had time to arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JudgedRevision {
    pub revision: RoutesRevision,
    /// The first evaluation against it (unix ms).
    pub since_ms: u64,
}

/// A router whose state was dropped for going over a bound: what the shell logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterDropped {
    pub router: RouterId,
    pub address: IpAddr,
    pub name: String,
    pub bound: Bound,
    /// The bound's value.
    pub limit: usize,
}

/// The visibility core.
#[derive(Debug, Default)]
pub struct Station {
    routers: BTreeMap<RouterId, RouterState>,
    interner: AttributeInterner,
    expectation: Arc<Expectation>,
    vrps: Option<Arc<VrpSet>>,
    /// Held routes inside an own prefix: the only ones hijack findings look at.
    relevant: BTreeSet<RelevantKey>,
    book: FindingBook,
    settle_ms: u64,
    /// When each router's peer was first seen by an evaluation: a peer whose router sends no
    /// End-of-RIB for it (FRR sends them only after its initial dump) counts as synchronised
    /// once it has been known for the settle time.
    peers_known_since: BTreeMap<(RouterId, PeerKey), u64>,
    last_evaluation_ms: u64,
    /// The revision of the routes the expectation was built from (`None` until the shell says).
    revision: Option<RoutesRevision>,
    /// When an evaluation first judged `revision` (unix ms): `None` until one has.
    revision_judged_since_ms: Option<u64>,
    /// Bounds per router (`[bmp] max_routes_per_router`, `max_peers_per_router`).
    pub max_routes_per_router: usize,
    pub max_peers_per_router: usize,
    /// Routers whose state was dropped for going over each bound, since the start.
    pub routers_dropped_max_routes: u64,
    pub routers_dropped_max_peers: u64,
    /// Drops not yet taken by the shell ([`Station::take_dropped`]): one per connection at most.
    dropped: Vec<RouterDropped>,
}

impl Station {
    /// A station that raises a settling finding after `settle_ms`.
    pub fn new(settle_ms: u64) -> Station {
        Station {
            settle_ms,
            max_routes_per_router: DEFAULT_BMP_MAX_ROUTES_PER_ROUTER,
            max_peers_per_router: DEFAULT_BMP_MAX_PEERS_PER_ROUTER,
            ..Station::default()
        }
    }

    pub fn connect(&mut self, router: RouterId, address: IpAddr) {
        self.routers.insert(
            router,
            RouterState {
                name: address.to_string(),
                address,
                rib: RouterRib::default(),
                messages: 0,
                over_limit: false,
            },
        );
    }

    /// The connection closed: the router's state goes.
    pub fn disconnect(&mut self, router: RouterId) {
        if let Some(mut state) = self.routers.remove(&router) {
            state.rib.clear(&mut self.interner);
        }
        self.relevant.retain(|key| key.0 != router);
    }

    /// Applies one decoded message of `router` (ignored for a router not connected).
    pub fn handle(&mut self, router: RouterId, event: BmpEvent) {
        let Some(state) = self.routers.get_mut(&router) else {
            return;
        };
        state.messages += 1;
        if state.over_limit && !matches!(event, BmpEvent::Termination) {
            return;
        }
        match event {
            BmpEvent::Initiation { sys_name } => {
                if let Some(name) = sys_name.filter(|name| !name.trim().is_empty()) {
                    state.name = name.trim().chars().take(64).collect();
                }
            }
            BmpEvent::Termination => {
                state.rib.clear(&mut self.interner);
                self.relevant.retain(|key| key.0 != router);
            }
            BmpEvent::PeerUp { peer, router_asn } => {
                if router_asn.is_some() {
                    state.rib.router_asn = router_asn;
                }
                // A new session: whatever an earlier one left is gone (RFC 7854 §4.10).
                state.rib.drop_peer(&mut self.interner, &peer);
                state.rib.peers.entry(peer).or_default();
                self.peers_known_since.remove(&(router, peer));
                self.relevant.retain(|key| key.0 != router || key.1 != peer);
                if state.rib.peers.len() > self.max_peers_per_router {
                    self.drop_over_limit(router, Bound::MaxPeers);
                }
            }
            BmpEvent::PeerDown { peer } => {
                state.rib.drop_peer(&mut self.interner, &peer);
                self.peers_known_since.remove(&(router, peer));
                self.relevant.retain(|key| key.0 != router || key.1 != peer);
            }
            BmpEvent::Routes {
                peer,
                rib,
                withdrawn,
                announced,
                attributes,
                end_of_rib,
            } => {
                if end_of_rib {
                    state.rib.mark_end_of_rib(peer, rib);
                    return;
                }
                state.rib.apply_routes(
                    &mut self.interner,
                    peer,
                    rib,
                    &withdrawn,
                    &announced,
                    attributes.as_ref(),
                );
                for route in withdrawn {
                    if self.expectation.covering(&route.prefix).is_some() {
                        self.relevant.remove(&(router, peer, rib, route));
                    }
                }
                if attributes.is_some() {
                    for route in announced {
                        if self.expectation.covering(&route.prefix).is_some() {
                            self.relevant.insert((router, peer, rib, route));
                        }
                    }
                }
                if state.rib.route_count() > self.max_routes_per_router {
                    self.drop_over_limit(router, Bound::MaxRoutes);
                }
            }
            BmpEvent::Statistics { .. } | BmpEvent::Ignored => {}
        }
    }

    /// Drops everything `router` told the station and ignores what it sends until it
    /// reconnects: it went over a per-router bound. Counted, and kept for the shell to log.
    fn drop_over_limit(&mut self, router: RouterId, bound: Bound) {
        if let Some(state) = self.routers.get_mut(&router) {
            state.rib.clear(&mut self.interner);
            state.over_limit = true;
            let limit = match bound {
                Bound::MaxRoutes => {
                    self.routers_dropped_max_routes += 1;
                    self.max_routes_per_router
                }
                Bound::MaxPeers => {
                    self.routers_dropped_max_peers += 1;
                    self.max_peers_per_router
                }
            };
            self.dropped.push(RouterDropped {
                router,
                address: state.address,
                name: state.name.clone(),
                bound,
                limit,
            });
        }
        self.relevant.retain(|key| key.0 != router);
        self.peers_known_since.retain(|key, _| key.0 != router);
    }

    /// The routers dropped for going over a bound since the last call, oldest first.
    pub fn take_dropped(&mut self) -> Vec<RouterDropped> {
        std::mem::take(&mut self.dropped)
    }

    /// Whether `router` went over a per-router bound (its state is dropped).
    pub fn is_over_limit(&self, router: RouterId) -> bool {
        self.routers
            .get(&router)
            .is_some_and(|state| state.over_limit)
    }

    /// A new expectation (a new publication or generation). The index of relevant routes is
    /// rebuilt when the onboarded prefixes changed.
    pub fn set_expectation(&mut self, mut expectation: Arc<Expectation>) {
        // A route whose communities changed is held as sent only once the router dropped the
        // ones we stopped sending (it may still hold the route as it was).
        Arc::make_mut(&mut expectation).remember_no_longer_sent(&self.expectation);
        let rebuild = expectation.own_prefixes != self.expectation.own_prefixes;
        self.expectation = expectation;
        if !rebuild {
            return;
        }
        self.relevant.clear();
        for (router, state) in &self.routers {
            for (peer, ribs) in &state.rib.peers {
                for (rib, table) in &ribs.tables {
                    for (route, _) in table.iter() {
                        if self.expectation.covering(&route.prefix).is_some() {
                            self.relevant.insert((*router, *peer, *rib, route));
                        }
                    }
                }
            }
        }
    }

    /// A new expectation built from `revision` of this location's routes. A revision not
    /// judged before restarts the clock [`Station::judged_revision`] reports: the first
    /// evaluation after this one is when the station began judging it. The same revision again
    /// (the onboarded prefixes changed, not the routes) keeps it.
    pub fn set_expectation_of(&mut self, revision: RoutesRevision, expectation: Arc<Expectation>) {
        if self.revision != Some(revision) {
            self.revision = Some(revision);
            self.revision_judged_since_ms = None;
        }
        self.set_expectation(expectation);
    }

    /// The revision every evaluation since `since_ms` judged against; `None` before the first
    /// evaluation of the current one, or when the expectation came without a revision.
    pub fn judged_revision(&self) -> Option<JudgedRevision> {
        Some(JudgedRevision {
            revision: self.revision?,
            since_ms: self.revision_judged_since_ms?,
        })
    }

    /// How long a condition that settles must last before it is raised (milliseconds).
    pub fn settle_ms(&self) -> u64 {
        self.settle_ms
    }

    pub fn set_vrps(&mut self, vrps: Option<Arc<VrpSet>>) {
        self.vrps = vrps;
    }

    /// Evaluates every condition now and merges them into the book.
    pub fn evaluate(&mut self, now_ms: u64) -> Vec<FindingChange> {
        let mut known = BTreeMap::new();
        for (router, state) in &self.routers {
            for peer in state.rib.peers.keys() {
                let since = self
                    .peers_known_since
                    .get(&(*router, *peer))
                    .copied()
                    .unwrap_or(now_ms);
                known.insert((*router, *peer), since);
            }
        }
        self.peers_known_since = known;
        self.last_evaluation_ms = now_ms;
        if self.revision.is_some() && self.revision_judged_since_ms.is_none() {
            self.revision_judged_since_ms = Some(now_ms);
        }
        let conditions = self.conditions();
        self.book.observe(conditions, now_ms, self.settle_ms)
    }

    /// Every condition that holds now, from the current state alone.
    pub fn conditions(&self) -> BTreeMap<FindingKey, Evidence> {
        let mut conditions = BTreeMap::new();
        for (router, peer, rib, route) in &self.relevant {
            let prefix = &route.prefix;
            let Some(state) = self.routers.get(router) else {
                continue;
            };
            let record = state
                .rib
                .peers
                .get(peer)
                .and_then(|ribs| ribs.tables.get(rib))
                .and_then(|table| table.get(route));
            let (Some(record), Some(own)) = (record, self.expectation.covering(prefix)) else {
                continue;
            };
            let Some(attributes) = self.interner.get(record.attributes) else {
                continue;
            };
            let mut raise = |kind: FindingKind, detail: String| {
                let key = FindingKey {
                    kind,
                    prefix: *prefix,
                    router: state.label(),
                    peer: *peer,
                };
                conditions.entry(key).or_insert_with(|| Evidence {
                    rib: *rib,
                    as_path: attributes.as_path.clone(),
                    origin_asn: attributes.origin_asn,
                    expected_origin_asn: own.origin_asn,
                    detail,
                });
            };
            if let Some(kind) = origin_finding(
                attributes,
                own.origin_asn,
                prefix.prefix_len() > own.announced_length,
            ) {
                raise(kind, origin_detail(kind, own.cidr, attributes));
            }
            if let Some(vrps) = &self.vrps
                && record.origin_asn != NO_ORIGIN
            {
                let verdict = vrps.state(prefix, record.origin_asn);
                if verdict.is_invalid() {
                    raise(FindingKind::RpkiInvalid, format!("RPKI {verdict}"));
                }
            }
        }
        self.visibility_conditions(&mut conditions);
        conditions
    }

    /// Whether `peer`'s post-policy table at `router` is complete enough to judge: the router
    /// sent its End-of-RIB, or the peer has been known for the settle time.
    fn synchronised(&self, router: RouterId, peer: &PeerKey, ribs: &PeerRibs) -> bool {
        if self.is_over_limit(router) {
            return false;
        }
        ribs.end_of_rib.get(&RibKind::AdjRibInPost) == Some(&true)
            || self
                .peers_known_since
                .get(&(router, *peer))
                .is_some_and(|since| {
                    self.last_evaluation_ms.saturating_sub(*since) >= self.settle_ms
                })
    }

    /// The router's sessions with us (the peers with our BGP identifier: one carrying every
    /// family, or one per family, e.g. an IPv4 and an IPv6 session), and whether all of them
    /// have a synchronised post-policy table (none: not).
    fn our_sessions<'s>(
        &self,
        router: RouterId,
        state: &'s RouterState,
    ) -> (Vec<(&'s PeerKey, &'s PeerRibs)>, bool) {
        let Some(router_id) = self.expectation.router_id else {
            return (Vec::new(), false);
        };
        let sessions: Vec<(&PeerKey, &PeerRibs)> = state
            .rib
            .peers
            .iter()
            .filter(|(peer, _)| peer.bgp_id == router_id)
            .collect();
        let synchronised = !sessions.is_empty()
            && sessions
                .iter()
                .all(|(peer, ribs)| self.synchronised(router, peer, ribs));
        (sessions, synchronised)
    }

    /// Whether one of our `sessions` at the router holds `prefix` post-policy as we send it.
    fn held_as_sent(
        &self,
        state: &RouterState,
        sessions: &[(&PeerKey, &PeerRibs)],
        prefix: &IpNet,
        expected: &ExpectedRoute,
    ) -> bool {
        sessions.iter().any(|(_, ribs)| {
            ribs.tables
                .get(&RibKind::AdjRibInPost)
                .is_some_and(|table| {
                    self.held_paths(table, prefix).any(|attributes| {
                        self.expectation.holds_as_sent(
                            prefix,
                            expected,
                            attributes,
                            state.rib.router_asn,
                        )
                    })
                })
        })
    }

    /// `not_visible`: for each router whose post-policy tables of its sessions with us are
    /// synchronised, every announced route none of them holds as we send it.
    fn visibility_conditions(&self, conditions: &mut BTreeMap<FindingKey, Evidence>) {
        for (router, state) in &self.routers {
            let (sessions, synchronised) = self.our_sessions(*router, state);
            if !synchronised {
                continue;
            }
            for (prefix, expected) in &self.expectation.announced {
                if !state.rib.monitors_family_of(prefix)
                    || self.held_as_sent(state, &sessions, prefix, expected)
                {
                    continue;
                }
                // The session that holds it otherwise, or else the one of its address family.
                let shown = sessions.iter().find_map(|(peer, ribs)| {
                    let table = ribs.tables.get(&RibKind::AdjRibInPost)?;
                    self.held_paths(table, prefix)
                        .next()
                        .map(|attributes| (*peer, attributes))
                });
                let Some((of_family, _)) = sessions
                    .iter()
                    .find(|(peer, _)| peer.address.is_ipv4() == prefix.addr().is_ipv4())
                    .or(sessions.first())
                else {
                    continue;
                };
                let (peer, as_path, origin_asn, detail) = match shown {
                    Some((peer, attributes)) => (
                        *peer,
                        attributes.as_path.clone(),
                        attributes.origin_asn,
                        "held post-policy with other attributes than we send".to_string(),
                    ),
                    None => (
                        **of_family,
                        Vec::new(),
                        None,
                        "not held post-policy (filtered or rejected)".to_string(),
                    ),
                };
                let key = FindingKey {
                    kind: FindingKind::NotVisible,
                    prefix: *prefix,
                    router: state.label(),
                    peer,
                };
                conditions.insert(
                    key,
                    Evidence {
                        rib: RibKind::AdjRibInPost,
                        as_path,
                        origin_asn,
                        expected_origin_asn: expected.as_path.last().copied().unwrap_or_default(),
                        detail,
                    },
                );
            }
        }
    }

    /// The attributes of every path of `prefix` in `table` (one without ADD-PATH): our route
    /// is held when any path of our session has our attributes.
    fn held_paths<'t>(
        &'t self,
        table: &'t RibTable,
        prefix: &'t IpNet,
    ) -> impl Iterator<Item = &'t Arc<SeenAttributes>> + Clone + 't {
        table
            .paths_of(prefix)
            .filter_map(|record| self.interner.get(record.attributes))
    }

    /// Per router, whether its post-policy table of its session with us is synchronised, and
    /// which routes this location announces it holds as we send them and which not.
    pub fn holdings(&self) -> Vec<RouterHoldings> {
        self.routers
            .iter()
            .map(|(router, state)| {
                let (sessions, synchronised) = self.our_sessions(*router, state);
                let (held, missing) = self
                    .expectation
                    .announced
                    .iter()
                    .filter(|(prefix, _)| state.rib.monitors_family_of(prefix))
                    .partition::<Vec<_>, _>(|(prefix, expected)| {
                        self.held_as_sent(state, &sessions, prefix, expected)
                    });
                RouterHoldings {
                    router_id: *router,
                    router: state.label(),
                    synchronised,
                    held: held.into_iter().map(|(prefix, _)| *prefix).collect(),
                    missing: missing.into_iter().map(|(prefix, _)| *prefix).collect(),
                }
            })
            .collect()
    }

    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.book.raised()
    }

    pub fn finding_count(&self, kind: FindingKind) -> usize {
        self.book.count(kind)
    }

    /// Raised findings per kind and own route ([`Expectation::own_route_of`]): as many entries
    /// as the topology has own routes at most, however many more-specifics a hijacker sends.
    /// A finding on a prefix outside every own route (none is raised today) counts under the
    /// finding's prefix.
    pub fn finding_counts_by_own_route(&self) -> BTreeMap<(FindingKind, IpNet), u64> {
        let mut counts = BTreeMap::new();
        for finding in self.book.raised() {
            let own = self
                .expectation
                .own_route_of(&finding.key.prefix)
                .unwrap_or(finding.key.prefix);
            *counts.entry((finding.key.kind, own)).or_insert(0) += 1;
        }
        counts
    }

    pub fn routers(&self) -> Vec<RouterSummary> {
        self.routers
            .values()
            .map(|state| RouterSummary {
                name: state.name.clone(),
                address: state.address,
                peers: state.rib.peers.len(),
                routes: state.rib.route_count(),
                messages: state.messages,
            })
            .collect()
    }

    pub fn router_count(&self) -> usize {
        self.routers.len()
    }

    pub fn route_count(&self) -> usize {
        self.routers
            .values()
            .map(|state| state.rib.route_count())
            .sum()
    }

    /// Approximate heap bytes of every router's tables and the interned attribute sets.
    pub fn approximate_bytes(&self) -> usize {
        self.routers
            .values()
            .map(|state| state.rib.approximate_bytes())
            .sum::<usize>()
            + self.interner.approximate_bytes()
            + self.relevant.len() * 96
    }
}

/// Which origin finding a route inside an own prefix raises, if any.
fn origin_finding(
    attributes: &SeenAttributes,
    expected_origin: u32,
    more_specific: bool,
) -> Option<FindingKind> {
    if attributes.as_path.is_empty() {
        // Originated inside the router's own AS (no path to judge).
        return None;
    }
    let carries_ours = attributes.as_path.contains(&expected_origin);
    match attributes.origin_asn {
        Some(origin) if origin == expected_origin => None,
        Some(_) if !carries_ours => Some(if more_specific {
            FindingKind::SubprefixHijack
        } else {
            FindingKind::ExactHijack
        }),
        _ => Some(FindingKind::UnexpectedPath),
    }
}

fn origin_detail(kind: FindingKind, own: IpNet, attributes: &SeenAttributes) -> String {
    let origin = attributes
        .origin_asn
        .map_or_else(|| "no single origin".to_string(), |asn| format!("AS{asn}"));
    match kind {
        FindingKind::SubprefixHijack => format!("more-specific of {own} originated by {origin}"),
        FindingKind::ExactHijack => format!("{own} originated by {origin}"),
        _ => format!("path carries our origin but ends in {origin}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "station_tests.rs"]
mod tests;
