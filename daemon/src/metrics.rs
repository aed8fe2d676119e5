//! Metric definitions: every `topologyd_*` metric, its help text and unit, declared as constants
//! beside the handle that records it.
//!
//! Owns: the `prometheus_client` registry and typed handles to each metric. Handles are cheap to
//! clone (shared atomics), so the engine and the peer tasks each keep a `Metrics` clone and
//! record directly; the admin listener only renders the registry.
//!
//! Must not touch: sockets, HTTP (see `admin`), or any state the engine owns — a metric is a
//! report of that state, never a second copy that logic reads back.
//!
//! The text exposition is OpenMetrics: counters get a `_total` suffix and metrics registered with
//! a unit get the unit as a suffix (`topologyd_apply_duration` → `topologyd_apply_duration_seconds`).

use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `topologyd_bgp_session_state{peer}`: numeric BGP FSM state (RFC 4271 §8.2.2).
pub const SESSION_STATE: &str = "topologyd_bgp_session_state";
/// Help for [`SESSION_STATE`].
pub const SESSION_STATE_HELP: &str = "BGP session state per peer (RFC 4271 8.2.2): 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established";

/// `topologyd_routes_desired{peer,family}`: routes the running generation wants at the peer.
pub const ROUTES_DESIRED: &str = "topologyd_routes_desired";
/// Help for [`ROUTES_DESIRED`].
pub const ROUTES_DESIRED_HELP: &str =
    "Routes the running generation wants announced to the peer, per address family";

/// `topologyd_routes_announced{peer,family}`: routes the peer has been sent and not withdrawn.
pub const ROUTES_ANNOUNCED: &str = "topologyd_routes_announced";
/// Help for [`ROUTES_ANNOUNCED`].
pub const ROUTES_ANNOUNCED_HELP: &str =
    "Routes currently announced to the peer (sent and not withdrawn), per address family";

/// `topologyd_routes_unencodable{peer}`: routes of the running generation that could not be
/// encoded for the peer (never sent; such a peer does not hold the generation).
pub const ROUTES_UNENCODABLE: &str = "topologyd_routes_unencodable";
/// Help for [`ROUTES_UNENCODABLE`].
pub const ROUTES_UNENCODABLE_HELP: &str = "Routes the running generation wants at the peer that could not be encoded for it (never sent); a peer with any does not hold the generation";

/// `topologyd_ready`: 1 while `/ready` answers 200.
pub const READY: &str = "topologyd_ready";
/// Help for [`READY`].
pub const READY_HELP: &str =
    "1 while /ready answers 200: enough peers hold the running generation ([readiness])";

/// `topologyd_peers_holding_generation`: peers Established with the running generation written.
pub const PEERS_HOLDING: &str = "topologyd_peers_holding_generation";
/// Help for [`PEERS_HOLDING`].
pub const PEERS_HOLDING_HELP: &str = "Peers whose session is Established with every route of the running generation written and none failing to encode";

/// `topologyd_bgp_update_messages_total{peer,direction}`.
pub const UPDATE_MESSAGES: &str = "topologyd_bgp_update_messages";
/// Help for [`UPDATE_MESSAGES`].
pub const UPDATE_MESSAGES_HELP: &str = "BGP UPDATE messages sent to and received from the peer";

/// `topologyd_bgp_prefixes_total{peer,direction,kind}`.
pub const PREFIXES: &str = "topologyd_bgp_prefixes";
/// Help for [`PREFIXES`].
pub const PREFIXES_HELP: &str = "Prefixes carried in BGP UPDATE messages sent to and received from the peer, announced or withdrawn";

/// `topologyd_guard_refusals_total{guard}`.
pub const GUARD_REFUSALS: &str = "topologyd_guard_refusals";
/// Help for [`GUARD_REFUSALS`].
pub const GUARD_REFUSALS_HELP: &str = "Routes refused by a runtime guard (never sent), by guard";

/// `topologyd_generation_info{generation,hash}`: always 1, labels name the running generation.
pub const GENERATION_INFO: &str = "topologyd_generation_info";
/// Help for [`GENERATION_INFO`].
pub const GENERATION_INFO_HELP: &str =
    "The running topology generation and its content hash (value is always 1)";

/// `topologyd_generation`: the running generation number, for arithmetic and alerts.
pub const GENERATION: &str = "topologyd_generation";
/// Help for [`GENERATION`].
pub const GENERATION_HELP: &str = "The running topology generation number";

/// `topologyd_apply_duration_seconds`: histogram.
pub const APPLY_DURATION: &str = "topologyd_apply_duration";
/// Help for [`APPLY_DURATION`].
pub const APPLY_DURATION_HELP: &str =
    "Time from an apply request to the new generation being committed and handed to every peer";

/// `topologyd_reconcile_duration_seconds`: histogram.
pub const RECONCILE_DURATION: &str = "topologyd_reconcile_duration";
/// Help for [`RECONCILE_DURATION`].
pub const RECONCILE_DURATION_HELP: &str =
    "Time to reconcile every peer's Adj-RIB-Out with the desired routes";

/// `topologyd_last_successful_apply_timestamp_seconds`.
pub const LAST_APPLY_TIMESTAMP: &str = "topologyd_last_successful_apply_timestamp";
/// Help for [`LAST_APPLY_TIMESTAMP`].
pub const LAST_APPLY_TIMESTAMP_HELP: &str = "Unix time of the last successful apply";

/// `topologyd_service_healthy{service}`: 1 healthy, 0 unhealthy (the verdict acted on).
pub const SERVICE_HEALTHY: &str = "topologyd_service_healthy";
/// Help for [`SERVICE_HEALTHY`].
pub const SERVICE_HEALTHY_HELP: &str = "Whether the service's local health checks pass at this location (1) or not (0); only services with checks";

/// `topologyd_service_health_transitions_total{service,to}`.
pub const SERVICE_HEALTH_TRANSITIONS: &str = "topologyd_service_health_transitions";
/// Help for [`SERVICE_HEALTH_TRANSITIONS`].
pub const SERVICE_HEALTH_TRANSITIONS_HELP: &str =
    "Health state changes of the service at this location, by the state entered";

/// `topologyd_probe_rounds_total{service,result}`: probe rounds by outcome (pass, fail, error).
pub const PROBE_ROUNDS: &str = "topologyd_probe_rounds";
/// Help for [`PROBE_ROUNDS`].
pub const PROBE_ROUNDS_HELP: &str = "Health-check rounds of the service, by outcome: pass, fail (a check failed), error (a check could not run)";

/// `topologyd_lease_held`: 1 while a rollout holds the fleet lock's lease at this daemon.
pub const LEASE_HELD: &str = "topologyd_lease_held";
/// Help for [`LEASE_HELD`].
pub const LEASE_HELD_HELP: &str = "1 while a rollout holds the fleet lock's lease here (applies and rollbacks without its claim are refused); the holder is in /v1/status";
/// `topologyd_health_fail_static`: 1 while the health checker is presumed broken.
pub const HEALTH_FAIL_STATIC: &str = "topologyd_health_fail_static";
/// Help for [`HEALTH_FAIL_STATIC`].
pub const HEALTH_FAIL_STATIC_HELP: &str = "1 while health-driven changes are frozen because too many services look unhealthy at once or the probes cannot run (fail static); alert on it";

/// `topologyd_service_routes_announced{service}`: routes of the service announced from here,
/// after health and drains.
pub const SERVICE_ROUTES_ANNOUNCED: &str = "topologyd_service_routes_announced";
/// Help for [`SERVICE_ROUTES_ANNOUNCED`].
pub const SERVICE_ROUTES_ANNOUNCED_HELP: &str = "Routes of the service this location announces, after health checks and drains (degraded routes included)";

/// `topologyd_service_state{service,state}`: 1 for the service's current action here.
pub const SERVICE_ACTION: &str = "topologyd_service_action";
/// Help for [`SERVICE_ACTION`].
pub const SERVICE_ACTION_HELP: &str = "What this location does with the service's routes: 1 on the current action (announce, withdraw, degrade), 0 on the others";

/// `topologyd_service_drained{service}` and `topologyd_location_drained`.
pub const SERVICE_DRAINED: &str = "topologyd_service_drained";
/// Help for [`SERVICE_DRAINED`].
pub const SERVICE_DRAINED_HELP: &str =
    "1 while the service is drained at this location by hand (topoctl drain)";
/// `topologyd_location_drained`.
pub const LOCATION_DRAINED: &str = "topologyd_location_drained";
/// Help for [`LOCATION_DRAINED`].
pub const LOCATION_DRAINED_HELP: &str =
    "1 while the whole location is drained by hand (topoctl drain without --service)";

/// `topologyd_local_addresses_bound`: service addresses bound on the local interface.
pub const LOCAL_ADDRESSES_BOUND: &str = "topologyd_local_addresses_bound";
/// Help for [`LOCAL_ADDRESSES_BOUND`].
pub const LOCAL_ADDRESSES_BOUND_HELP: &str =
    "Service addresses topologyd has bound on its local interface";

/// `topologyd_state_quarantined_total`: unreadable generation files moved to quarantine.
pub const STATE_QUARANTINED: &str = "topologyd_state_quarantined";
/// Help for [`STATE_QUARANTINED`].
pub const STATE_QUARANTINED_HELP: &str = "Stored generation files that could not be read or parsed and were moved to the state directory's quarantine/ (kept, never deleted); alert on any increase";

/// The `family` label of the per-family metrics for IPv4 unicast (AFI 1, SAFI 1).
pub const FAMILY_IPV4_UNICAST: &str = "ipv4-unicast";
/// The `family` label of the per-family metrics for IPv6 unicast (AFI 2, SAFI 1).
pub const FAMILY_IPV6_UNICAST: &str = "ipv6-unicast";

/// Latency buckets shared by the histograms: 1 ms doubling up to about 32 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 16)
}

/// BGP FSM states as exported by [`SESSION_STATE`] (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum SessionState {
    /// Idle.
    Idle = 1,
    /// Connect.
    Connect = 2,
    /// Active.
    Active = 3,
    /// OpenSent.
    OpenSent = 4,
    /// OpenConfirm.
    OpenConfirm = 5,
    /// Established.
    Established = 6,
}

/// Direction of BGP traffic.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// To the peer.
    Sent,
    /// From the peer.
    Received,
}

/// Whether a prefix was announced or withdrawn.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum PrefixKind {
    /// Announced (NLRI / MP_REACH_NLRI).
    Announced,
    /// Withdrawn (withdrawn routes / MP_UNREACH_NLRI).
    Withdrawn,
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        })
    }
}

impl EncodeLabelValue for PrefixKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        encoder.write_str(match self {
            PrefixKind::Announced => "announced",
            PrefixKind::Withdrawn => "withdrawn",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerFamilyLabels {
    peer: String,
    family: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerDirectionLabels {
    peer: String,
    direction: Direction,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrefixLabels {
    peer: String,
    direction: Direction,
    kind: PrefixKind,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceToLabels {
    service: String,
    to: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceResultLabels {
    service: String,
    result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceActionLabels {
    service: String,
    action: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardLabels {
    guard: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenerationLabels {
    generation: String,
    hash: String,
}

/// Typed handles to every metric plus the registry they are registered in.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    session_state: Family<PeerLabels, Gauge>,
    routes_desired: Family<PeerFamilyLabels, Gauge>,
    routes_announced: Family<PeerFamilyLabels, Gauge>,
    routes_unencodable: Family<PeerLabels, Gauge>,
    ready: Gauge,
    peers_holding: Gauge,
    update_messages: Family<PeerDirectionLabels, Counter>,
    prefixes: Family<PrefixLabels, Counter>,
    guard_refusals: Family<GuardLabels, Counter>,
    generation_info: Family<GenerationLabels, Gauge>,
    generation: Gauge,
    apply_duration: Histogram,
    reconcile_duration: Histogram,
    last_apply_timestamp: Gauge,
    service_healthy: Family<ServiceLabels, Gauge>,
    service_health_transitions: Family<ServiceToLabels, Counter>,
    probe_rounds: Family<ServiceResultLabels, Counter>,
    health_fail_static: Gauge,
    lease_held: Gauge,
    service_routes_announced: Family<ServiceLabels, Gauge>,
    service_action: Family<ServiceActionLabels, Gauge>,
    service_drained: Family<ServiceLabels, Gauge>,
    location_drained: Gauge,
    local_addresses_bound: Gauge,
    state_quarantined: Counter,
    /// The services [`Metrics::set_services`] last reported.
    known_services: Arc<Mutex<BTreeSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates every metric and registers it.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let session_state = Family::<PeerLabels, Gauge>::default();
        registry.register(SESSION_STATE, SESSION_STATE_HELP, session_state.clone());
        let routes_desired = Family::<PeerFamilyLabels, Gauge>::default();
        registry.register(ROUTES_DESIRED, ROUTES_DESIRED_HELP, routes_desired.clone());
        let routes_announced = Family::<PeerFamilyLabels, Gauge>::default();
        registry.register(
            ROUTES_ANNOUNCED,
            ROUTES_ANNOUNCED_HELP,
            routes_announced.clone(),
        );
        let routes_unencodable = Family::<PeerLabels, Gauge>::default();
        registry.register(
            ROUTES_UNENCODABLE,
            ROUTES_UNENCODABLE_HELP,
            routes_unencodable.clone(),
        );
        let ready = Gauge::default();
        registry.register(READY, READY_HELP, ready.clone());
        let peers_holding = Gauge::default();
        registry.register(PEERS_HOLDING, PEERS_HOLDING_HELP, peers_holding.clone());
        let update_messages = Family::<PeerDirectionLabels, Counter>::default();
        registry.register(
            UPDATE_MESSAGES,
            UPDATE_MESSAGES_HELP,
            update_messages.clone(),
        );
        let prefixes = Family::<PrefixLabels, Counter>::default();
        registry.register(PREFIXES, PREFIXES_HELP, prefixes.clone());
        let guard_refusals = Family::<GuardLabels, Counter>::default();
        registry.register(GUARD_REFUSALS, GUARD_REFUSALS_HELP, guard_refusals.clone());
        let generation_info = Family::<GenerationLabels, Gauge>::default();
        registry.register(
            GENERATION_INFO,
            GENERATION_INFO_HELP,
            generation_info.clone(),
        );
        let generation = Gauge::default();
        registry.register(GENERATION, GENERATION_HELP, generation.clone());
        let apply_duration = Histogram::new(latency_buckets());
        registry.register_with_unit(
            APPLY_DURATION,
            APPLY_DURATION_HELP,
            Unit::Seconds,
            apply_duration.clone(),
        );
        let reconcile_duration = Histogram::new(latency_buckets());
        registry.register_with_unit(
            RECONCILE_DURATION,
            RECONCILE_DURATION_HELP,
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let last_apply_timestamp = Gauge::default();
        registry.register_with_unit(
            LAST_APPLY_TIMESTAMP,
            LAST_APPLY_TIMESTAMP_HELP,
            Unit::Seconds,
            last_apply_timestamp.clone(),
        );
        let service_healthy = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            SERVICE_HEALTHY,
            SERVICE_HEALTHY_HELP,
            service_healthy.clone(),
        );
        let service_health_transitions = Family::<ServiceToLabels, Counter>::default();
        registry.register(
            SERVICE_HEALTH_TRANSITIONS,
            SERVICE_HEALTH_TRANSITIONS_HELP,
            service_health_transitions.clone(),
        );
        let probe_rounds = Family::<ServiceResultLabels, Counter>::default();
        registry.register(PROBE_ROUNDS, PROBE_ROUNDS_HELP, probe_rounds.clone());
        let health_fail_static = Gauge::default();
        registry.register(
            HEALTH_FAIL_STATIC,
            HEALTH_FAIL_STATIC_HELP,
            health_fail_static.clone(),
        );
        let lease_held = Gauge::default();
        registry.register(LEASE_HELD, LEASE_HELD_HELP, lease_held.clone());
        let service_routes_announced = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            SERVICE_ROUTES_ANNOUNCED,
            SERVICE_ROUTES_ANNOUNCED_HELP,
            service_routes_announced.clone(),
        );
        let service_action = Family::<ServiceActionLabels, Gauge>::default();
        registry.register(SERVICE_ACTION, SERVICE_ACTION_HELP, service_action.clone());
        let service_drained = Family::<ServiceLabels, Gauge>::default();
        registry.register(
            SERVICE_DRAINED,
            SERVICE_DRAINED_HELP,
            service_drained.clone(),
        );
        let location_drained = Gauge::default();
        registry.register(
            LOCATION_DRAINED,
            LOCATION_DRAINED_HELP,
            location_drained.clone(),
        );
        let local_addresses_bound = Gauge::default();
        registry.register(
            LOCAL_ADDRESSES_BOUND,
            LOCAL_ADDRESSES_BOUND_HELP,
            local_addresses_bound.clone(),
        );
        let state_quarantined = Counter::default();
        registry.register(
            STATE_QUARANTINED,
            STATE_QUARANTINED_HELP,
            state_quarantined.clone(),
        );
        Metrics {
            state_quarantined,
            service_healthy,
            service_health_transitions,
            probe_rounds,
            health_fail_static,
            lease_held,
            service_routes_announced,
            service_action,
            service_drained,
            location_drained,
            local_addresses_bound,
            known_services: Arc::new(Mutex::new(BTreeSet::new())),
            registry: Arc::new(registry),
            session_state,
            routes_desired,
            routes_announced,
            routes_unencodable,
            ready,
            peers_holding,
            update_messages,
            prefixes,
            guard_refusals,
            generation_info,
            generation,
            apply_duration,
            reconcile_duration,
            last_apply_timestamp,
        }
    }

    /// The counter of quarantined state files, for the state store to increment.
    pub fn state_quarantined_counter(&self) -> Counter {
        self.state_quarantined.clone()
    }

    /// The registry, for the admin listener to render.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Renders the OpenMetrics text exposition.
    pub fn render(&self) -> Result<String, fmt::Error> {
        render(&self.registry)
    }

    /// Records a peer's FSM state.
    pub fn set_session_state(&self, peer: &str, state: SessionState) {
        self.session_state
            .get_or_create(&peer_labels(peer))
            .set(state as i64);
    }

    /// Records routes desired at a peer for an address family (`ipv4-unicast`, `ipv6-unicast`).
    pub fn set_routes_desired(&self, peer: &str, family: &str, routes: u64) {
        self.routes_desired
            .get_or_create(&peer_family_labels(peer, family))
            .set(saturating_i64(routes));
    }

    /// Records routes currently announced to a peer for an address family.
    pub fn set_routes_announced(&self, peer: &str, family: &str, routes: u64) {
        self.routes_announced
            .get_or_create(&peer_family_labels(peer, family))
            .set(saturating_i64(routes));
    }

    /// Counts `messages` UPDATE messages and the prefixes they carried.
    pub fn count_updates(
        &self,
        peer: &str,
        direction: Direction,
        messages: u64,
        announced: u64,
        withdrawn: u64,
    ) {
        self.update_messages
            .get_or_create(&PeerDirectionLabels {
                peer: peer.to_owned(),
                direction,
            })
            .inc_by(messages);
        for (kind, count) in [
            (PrefixKind::Announced, announced),
            (PrefixKind::Withdrawn, withdrawn),
        ] {
            self.prefixes
                .get_or_create(&PrefixLabels {
                    peer: peer.to_owned(),
                    direction,
                    kind,
                })
                .inc_by(count);
        }
    }

    /// Counts routes a guard refused (`G1`, `G2`, …).
    pub fn count_guard_refusals(&self, guard: &str, routes: u64) {
        self.guard_refusals
            .get_or_create(&GuardLabels {
                guard: guard.to_owned(),
            })
            .inc_by(routes);
    }

    /// Records the running generation; the info series of the previous one disappears.
    pub fn set_generation(&self, generation: u64, hash: &str) {
        self.generation_info.clear();
        self.generation_info
            .get_or_create(&GenerationLabels {
                generation: generation.to_string(),
                hash: hash.to_owned(),
            })
            .set(1);
        self.generation.set(saturating_i64(generation));
    }

    /// Records a successful apply: its latency, and the time it finished (unix seconds).
    pub fn observe_apply(&self, seconds: f64, finished_at_unix: u64) {
        self.apply_duration.observe(seconds);
        self.last_apply_timestamp
            .set(saturating_i64(finished_at_unix));
    }

    /// Records one reconcile pass's latency.
    pub fn observe_reconcile(&self, seconds: f64) {
        self.reconcile_duration.observe(seconds);
    }

    /// Records the per-service state of this location: health verdicts (checked services only),
    /// actions, drains and routes announced. Series of services no longer listed disappear.
    pub fn set_services(&self, services: &[ServiceReport]) {
        // Series are updated in place and only departed services' series removed: clearing
        // first would let a scrape in between see a service without its series.
        let current: BTreeSet<String> = services
            .iter()
            .map(|report| report.service.clone())
            .collect();
        let departed: Vec<String> = {
            // A poisoned lock only means another update panicked; the set is still usable.
            let mut known = self
                .known_services
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let departed = known.difference(&current).cloned().collect();
            known.clone_from(&current);
            departed
        };
        for service in departed {
            let labels = ServiceLabels {
                service: service.clone(),
            };
            self.service_healthy.remove(&labels);
            self.service_routes_announced.remove(&labels);
            self.service_drained.remove(&labels);
            for action in ["announce", "withdraw", "degrade"] {
                self.service_action.remove(&ServiceActionLabels {
                    service: service.clone(),
                    action: action.to_owned(),
                });
            }
        }
        for report in services {
            let labels = ServiceLabels {
                service: report.service.clone(),
            };
            match report.healthy {
                Some(healthy) => {
                    self.service_healthy
                        .get_or_create(&labels)
                        .set(i64::from(healthy));
                }
                None => {
                    self.service_healthy.remove(&labels);
                }
            }
            self.service_routes_announced
                .get_or_create(&labels)
                .set(saturating_i64(report.routes_announced));
            self.service_drained
                .get_or_create(&labels)
                .set(i64::from(report.drained));
            for action in ["announce", "withdraw", "degrade"] {
                self.service_action
                    .get_or_create(&ServiceActionLabels {
                        service: report.service.clone(),
                        action: action.to_owned(),
                    })
                    .set(i64::from(action == report.action));
            }
        }
    }

    /// Counts a health transition of `service` into state `to`.
    pub fn count_health_transition(&self, service: &str, to: &str) {
        self.service_health_transitions
            .get_or_create(&ServiceToLabels {
                service: service.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }

    /// Counts probe rounds of `service` by `result` (`pass`, `fail`, `error`).
    pub fn count_probe_rounds(&self, service: &str, result: &str, rounds: u64) {
        self.probe_rounds
            .get_or_create(&ServiceResultLabels {
                service: service.to_owned(),
                result: result.to_owned(),
            })
            .inc_by(rounds);
    }

    /// Records whether health is failing static.
    pub fn set_fail_static(&self, engaged: bool) {
        self.health_fail_static.set(i64::from(engaged));
    }

    /// Records whether a fleet lock lease is held here.
    pub fn set_lease_held(&self, held: bool) {
        self.lease_held.set(i64::from(held));
    }

    /// Records whether the whole location is drained.
    pub fn set_location_drained(&self, drained: bool) {
        self.location_drained.set(i64::from(drained));
    }

    /// Records how many of a peer's routes could not be encoded for it.
    pub fn set_routes_unencodable(&self, peer: &str, routes: u64) {
        self.routes_unencodable
            .get_or_create(&peer_labels(peer))
            .set(saturating_i64(routes));
    }

    /// Records the readiness verdict and how many peers hold the running generation.
    pub fn set_readiness(&self, ready: bool, peers_holding: usize) {
        self.ready.set(i64::from(ready));
        self.peers_holding.set(saturating_i64(peers_holding as u64));
    }

    /// Records how many service addresses are bound locally.
    pub fn set_local_addresses_bound(&self, bound: usize) {
        self.local_addresses_bound.set(saturating_i64(bound as u64));
    }

    /// Forgets every series of a removed peer.
    pub fn remove_peer(&self, peer: &str) {
        self.session_state.remove(&peer_labels(peer));
        self.routes_unencodable.remove(&peer_labels(peer));
        for family in [FAMILY_IPV4_UNICAST, FAMILY_IPV6_UNICAST] {
            self.routes_desired
                .remove(&peer_family_labels(peer, family));
            self.routes_announced
                .remove(&peer_family_labels(peer, family));
        }
    }
}

/// One service's line in [`Metrics::set_services`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReport {
    pub service: String,
    /// `None`: the service has no health checks.
    pub healthy: Option<bool>,
    /// `announce`, `withdraw` or `degrade`.
    pub action: &'static str,
    pub drained: bool,
    pub routes_announced: u64,
}

/// Renders a registry as OpenMetrics text.
pub fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

fn peer_labels(peer: &str) -> PeerLabels {
    PeerLabels {
        peer: peer.to_owned(),
    }
}

fn peer_family_labels(peer: &str, family: &str) -> PeerFamilyLabels {
    PeerFamilyLabels {
        peer: peer.to_owned(),
        family: family.to_owned(),
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_units_help_and_labels() {
        let metrics = Metrics::new();
        metrics.set_session_state("192.0.2.1", SessionState::Established);
        metrics.set_routes_desired("192.0.2.1", "ipv4-unicast", 120);
        metrics.set_routes_announced("192.0.2.1", "ipv4-unicast", 100);
        metrics.count_updates("192.0.2.1", Direction::Sent, 1, 7, 2);
        metrics.count_updates("192.0.2.1", Direction::Received, 1, 0, 0);
        metrics.count_guard_refusals("G2", 3);
        metrics.set_generation(41, "sha256:aaaa");
        metrics.set_generation(42, "sha256:bbbb");
        metrics.observe_apply(0.25, 1_700_000_000);
        metrics.observe_reconcile(0.004);
        metrics.set_services(&[ServiceReport {
            service: "resolver".into(),
            healthy: Some(true),
            action: "announce",
            drained: false,
            routes_announced: 4,
        }]);
        metrics.count_health_transition("resolver", "unhealthy");
        metrics.count_probe_rounds("resolver", "pass", 3);
        metrics.set_fail_static(true);
        metrics.set_lease_held(true);
        let text = metrics.render().unwrap();
        for expected in [
            "# HELP topologyd_bgp_session_state BGP session state",
            "topologyd_bgp_session_state{peer=\"192.0.2.1\"} 6",
            "topologyd_routes_desired{peer=\"192.0.2.1\",family=\"ipv4-unicast\"} 120",
            "topologyd_routes_announced{peer=\"192.0.2.1\",family=\"ipv4-unicast\"} 100",
            "# TYPE topologyd_bgp_update_messages counter",
            "topologyd_bgp_update_messages_total{peer=\"192.0.2.1\",direction=\"sent\"} 1",
            "topologyd_bgp_prefixes_total{peer=\"192.0.2.1\",direction=\"sent\",kind=\"announced\"} 7",
            "topologyd_bgp_prefixes_total{peer=\"192.0.2.1\",direction=\"sent\",kind=\"withdrawn\"} 2",
            "topologyd_guard_refusals_total{guard=\"G2\"} 3",
            "topologyd_generation_info{generation=\"42\",hash=\"sha256:bbbb\"} 1",
            "topologyd_generation 42",
            "# TYPE topologyd_apply_duration_seconds histogram",
            "# UNIT topologyd_apply_duration_seconds seconds",
            "topologyd_apply_duration_seconds_count 1",
            "topologyd_reconcile_duration_seconds_count 1",
            "topologyd_last_successful_apply_timestamp_seconds 1700000000",
            "topologyd_service_healthy{service=\"resolver\"} 1",
            "topologyd_service_routes_announced{service=\"resolver\"} 4",
            "topologyd_service_action{service=\"resolver\",action=\"announce\"} 1",
            "topologyd_service_action{service=\"resolver\",action=\"withdraw\"} 0",
            "topologyd_service_health_transitions_total{service=\"resolver\",to=\"unhealthy\"} 1",
            "topologyd_probe_rounds_total{service=\"resolver\",result=\"pass\"} 3",
            "topologyd_health_fail_static 1",
            "topologyd_lease_held 1",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            !text.contains("generation=\"41\""),
            "stale generation info:\n{text}"
        );
    }

    #[test]
    fn departed_services_lose_their_series_and_present_ones_keep_them() {
        let metrics = Metrics::new();
        let report = |service: &str, healthy| ServiceReport {
            service: service.into(),
            healthy,
            action: "announce",
            drained: false,
            routes_announced: 1,
        };
        metrics.set_services(&[report("web", Some(true)), report("dns", None)]);
        let text = metrics.render().unwrap();
        assert!(text.contains("topologyd_service_healthy{service=\"web\"} 1"));
        assert!(!text.contains("topologyd_service_healthy{service=\"dns\"}"));
        assert!(text.contains("topologyd_service_routes_announced{service=\"dns\"} 1"));
        metrics.set_services(&[report("web", Some(false))]);
        let text = metrics.render().unwrap();
        assert!(text.contains("topologyd_service_healthy{service=\"web\"} 0"));
        assert!(!text.contains("service=\"dns\""), "{text}");
    }

    #[test]
    fn removing_a_peer_drops_its_series() {
        let metrics = Metrics::new();
        metrics.set_session_state("peer-a", SessionState::Idle);
        metrics.set_routes_desired("peer-a", "ipv6-unicast", 1);
        metrics.remove_peer("peer-a");
        assert!(!metrics.render().unwrap().contains("peer-a"));
    }
}
