//! Metric definitions: every `topologyd_*` metric, its help text and unit, declared as constants
//! beside the handle that records it.
//!
//! Owns: the `prometheus_client` registry. Two kinds of metric live in it:
//! - **Read at scrape time** (`metrics/collector.rs`): everything that is a state some task
//!   already publishes — per-peer session state, routes desired, announced and unencodable, the
//!   UPDATE and prefix counters the peer tasks keep in their status, readiness, the running
//!   generation, the fleet lock's lease, and the RPKI sample (`metrics/rpki.rs`). The
//!   collector reads the peers' status channels, the engine's snapshot and the readiness
//!   verdict when `/metrics` is scraped; nothing copies them on a timer, so a scrape never
//!   shows an older state than `/v1/status`.
//! - **Recorded where the event happens** (typed handles below, cheap to clone): guard refusals,
//!   apply and reconcile durations, health transitions, probe rounds, the per-service state the
//!   engine decides, quarantined state files.
//!
//! Must not touch: sockets, HTTP (see `admin`), or any state the engine owns — a metric is a
//! report of that state, never a second copy that logic reads back.
//!
//! The text exposition is OpenMetrics: counters get a `_total` suffix and metrics registered with
//! a unit get the unit as a suffix (`topologyd_apply_duration` → `topologyd_apply_duration_seconds`).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;
use topologyd_transport::admin::registered;

mod bmp;
mod collector;
mod rpki;

pub use self::bmp::{BmpCounters, BmpSample, FindingSeries};
pub use self::collector::{EngineSnapshot, PeerDirectory};
use self::collector::{Sources, StatusCollector};
pub use self::rpki::RpkiSample;
use crate::peer::PeerStatus;
use crate::readiness::Readiness;

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

/// `topologyd_build_info{version,commit}`: always 1, labels name this binary.
pub const BUILD_INFO: &str = "topologyd_build";
/// Help for [`BUILD_INFO`].
pub const BUILD_INFO_HELP: &str =
    "The topologyd version and the git commit it was built from (value is always 1)";

/// `topologyd_local_address_errors_total{operation}`: service-address operations that failed.
pub const LOCAL_ADDRESS_ERRORS: &str = "topologyd_local_address_errors";
/// Help for [`LOCAL_ADDRESS_ERRORS`].
pub const LOCAL_ADDRESS_ERRORS_HELP: &str = "Service-address operations on the local interface that failed, by operation: bind (the routes are announced anyway), unbind (retried), list";

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
struct OperationLabels {
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GuardLabels {
    guard: String,
}

/// Typed handles to every metric plus the registry they are registered in.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    guard_refusals: Family<GuardLabels, Counter>,
    apply_duration: Histogram,
    reconcile_duration: Histogram,
    last_apply_timestamp: Gauge,
    service_healthy: Family<ServiceLabels, Gauge>,
    service_health_transitions: Family<ServiceToLabels, Counter>,
    probe_rounds: Family<ServiceResultLabels, Counter>,
    health_fail_static: Gauge,
    service_routes_announced: Family<ServiceLabels, Gauge>,
    service_action: Family<ServiceActionLabels, Gauge>,
    service_drained: Family<ServiceLabels, Gauge>,
    location_drained: Gauge,
    local_addresses_bound: Gauge,
    local_address_errors: Family<OperationLabels, Counter>,
    state_quarantined: Counter,
    /// The services [`Metrics::set_services`] last reported.
    known_services: Arc<Mutex<BTreeSet<String>>>,
    /// What the scrape-time collector reads: the engine writes it.
    sources: Sources,
    /// What the RPKI collector reads (`metrics/rpki.rs`).
    rpki: Arc<watch::Sender<Arc<RpkiSample>>>,
    /// What the BMP collector reads (`metrics/bmp.rs`).
    bmp: Arc<watch::Sender<Arc<BmpSample>>>,
    bmp_counters: Arc<BmpCounters>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates every metric and registers it, with a readiness verdict of its own (tests).
    pub fn new() -> Self {
        Self::with_readiness(Readiness::new())
    }

    /// Creates every metric and registers it; `topologyd_ready` and
    /// `topologyd_peers_holding_generation` are read from `readiness` at scrape time.
    pub fn with_readiness(readiness: Readiness) -> Self {
        let mut registry = Registry::default();
        let (peers, peer_directory) = watch::channel(PeerDirectory::new());
        let (engine, engine_snapshot) = watch::channel(EngineSnapshot::default());
        registry.register_collector(Box::new(StatusCollector {
            peers: peer_directory,
            engine: engine_snapshot,
            readiness,
        }));
        let (rpki, rpki_sample) = watch::channel(Arc::new(RpkiSample::default()));
        registry.register_collector(Box::new(rpki::RpkiCollector {
            sample: rpki_sample,
        }));
        let (bmp, bmp_sample) = watch::channel(Arc::new(BmpSample::default()));
        let bmp_counters = Arc::new(BmpCounters::default());
        registry.register_collector(Box::new(bmp::BmpCollector {
            sample: bmp_sample,
            counters: Arc::clone(&bmp_counters),
        }));
        registry.register(
            BUILD_INFO,
            BUILD_INFO_HELP,
            Info::new(vec![
                ("version", crate::build_info::VERSION),
                ("commit", crate::build_info::COMMIT),
            ]),
        );
        Metrics {
            guard_refusals: registered(
                &mut registry,
                (GUARD_REFUSALS, GUARD_REFUSALS_HELP),
                None,
                Family::default(),
            ),
            apply_duration: registered(
                &mut registry,
                (APPLY_DURATION, APPLY_DURATION_HELP),
                Some(Unit::Seconds),
                Histogram::new(latency_buckets()),
            ),
            reconcile_duration: registered(
                &mut registry,
                (RECONCILE_DURATION, RECONCILE_DURATION_HELP),
                Some(Unit::Seconds),
                Histogram::new(latency_buckets()),
            ),
            last_apply_timestamp: registered(
                &mut registry,
                (LAST_APPLY_TIMESTAMP, LAST_APPLY_TIMESTAMP_HELP),
                Some(Unit::Seconds),
                Gauge::default(),
            ),
            service_healthy: registered(
                &mut registry,
                (SERVICE_HEALTHY, SERVICE_HEALTHY_HELP),
                None,
                Family::default(),
            ),
            service_health_transitions: registered(
                &mut registry,
                (SERVICE_HEALTH_TRANSITIONS, SERVICE_HEALTH_TRANSITIONS_HELP),
                None,
                Family::default(),
            ),
            probe_rounds: registered(
                &mut registry,
                (PROBE_ROUNDS, PROBE_ROUNDS_HELP),
                None,
                Family::default(),
            ),
            health_fail_static: registered(
                &mut registry,
                (HEALTH_FAIL_STATIC, HEALTH_FAIL_STATIC_HELP),
                None,
                Gauge::default(),
            ),
            service_routes_announced: registered(
                &mut registry,
                (SERVICE_ROUTES_ANNOUNCED, SERVICE_ROUTES_ANNOUNCED_HELP),
                None,
                Family::default(),
            ),
            service_action: registered(
                &mut registry,
                (SERVICE_ACTION, SERVICE_ACTION_HELP),
                None,
                Family::default(),
            ),
            service_drained: registered(
                &mut registry,
                (SERVICE_DRAINED, SERVICE_DRAINED_HELP),
                None,
                Family::default(),
            ),
            location_drained: registered(
                &mut registry,
                (LOCATION_DRAINED, LOCATION_DRAINED_HELP),
                None,
                Gauge::default(),
            ),
            local_addresses_bound: registered(
                &mut registry,
                (LOCAL_ADDRESSES_BOUND, LOCAL_ADDRESSES_BOUND_HELP),
                None,
                Gauge::default(),
            ),
            local_address_errors: registered(
                &mut registry,
                (LOCAL_ADDRESS_ERRORS, LOCAL_ADDRESS_ERRORS_HELP),
                None,
                Family::default(),
            ),
            state_quarantined: registered(
                &mut registry,
                (STATE_QUARANTINED, STATE_QUARANTINED_HELP),
                None,
                Counter::default(),
            ),
            known_services: Arc::new(Mutex::new(BTreeSet::new())),
            rpki: Arc::new(rpki),
            bmp: Arc::new(bmp),
            bmp_counters,
            sources: Sources {
                peers: Arc::new(peers),
                engine: Arc::new(engine),
            },
            registry: Arc::new(registry),
        }
    }

    /// The counter of quarantined state files, for the state store to increment.
    pub fn state_quarantined_counter(&self) -> Counter {
        self.state_quarantined.clone()
    }

    /// The reconcile-duration histogram, for the peer tasks to record each pass in.
    pub fn reconcile_histogram(&self) -> Histogram {
        self.reconcile_duration.clone()
    }

    /// The registry, for the admin listener to render.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Renders the OpenMetrics text exposition.
    pub fn render(&self) -> Result<String, fmt::Error> {
        render(&self.registry)
    }

    /// Lists a started peer task: its series are read from `status` at every scrape.
    pub fn add_peer(&self, peer: &str, status: watch::Receiver<PeerStatus>) {
        self.sources.peers.send_modify(|peers| {
            peers.insert(peer.to_owned(), status);
        });
    }

    /// Counts routes a guard refused (`G1`, `G2`, …).
    pub fn count_guard_refusals(&self, guard: &str, routes: u64) {
        self.guard_refusals
            .get_or_create(&GuardLabels {
                guard: guard.to_owned(),
            })
            .inc_by(routes);
    }

    /// The RPKI sample the collector reads at the next scrape.
    pub fn set_rpki(&self, sample: RpkiSample) {
        self.rpki.send_replace(Arc::new(sample));
    }

    /// The BMP station's sample the collector reads at the next scrape.
    pub fn set_bmp(&self, sample: BmpSample) {
        self.bmp.send_replace(Arc::new(sample));
    }

    /// The counters the BMP connection tasks bump.
    pub fn bmp_counters(&self) -> Arc<BmpCounters> {
        Arc::clone(&self.bmp_counters)
    }

    /// Records the running generation; the info series of the previous one disappears.
    pub fn set_generation(&self, generation: u64, hash: &str) {
        self.sources.engine.send_if_modified(|snapshot| {
            let changed = snapshot.generation != generation || snapshot.hash != hash;
            snapshot.generation = generation;
            hash.clone_into(&mut snapshot.hash);
            changed
        });
    }

    /// Records a successful apply: its latency, and the time it finished (unix seconds).
    pub fn observe_apply(&self, seconds: f64, finished_at_unix: u64) {
        self.apply_duration.observe(seconds);
        self.last_apply_timestamp
            .set(saturating_i64(finished_at_unix));
    }

    /// Sets the time of the last successful apply (unix seconds) without observing a latency:
    /// at start-up, from the running generation's commit time.
    pub fn set_last_apply_timestamp(&self, applied_at_unix: u64) {
        self.last_apply_timestamp
            .set(saturating_i64(applied_at_unix));
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
        self.sources.engine.send_if_modified(|snapshot| {
            let changed = snapshot.lease_held != held;
            snapshot.lease_held = held;
            changed
        });
    }

    /// Records whether the whole location is drained.
    pub fn set_location_drained(&self, drained: bool) {
        self.location_drained.set(i64::from(drained));
    }

    /// Records how many service addresses are bound locally.
    pub fn set_local_addresses_bound(&self, bound: usize) {
        self.local_addresses_bound.set(saturating_i64(bound as u64));
    }

    /// Counts a failed service-address operation (`bind`, `unbind`, `list`).
    pub fn count_address_error(&self, operation: &str) {
        self.local_address_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_owned(),
            })
            .inc();
    }

    /// Forgets a stopped peer task: its series disappear from the next scrape.
    pub fn remove_peer(&self, peer: &str) {
        self.sources
            .peers
            .send_if_modified(|peers| peers.remove(peer).is_some());
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

pub use topologyd_transport::admin::{render, render_as};
pub use topologyd_transport::exposition;

pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A peer's status channel as a peer task publishes it: Established, generation 42 sent.
    fn established_peer() -> (watch::Sender<PeerStatus>, watch::Receiver<PeerStatus>) {
        watch::channel(PeerStatus {
            name: "192.0.2.1".into(),
            state: "Established".into(),
            established: true,
            generation_synced: Some(42),
            routes_desired_ipv4: 120,
            updates_sent: 1,
            prefixes_announced_sent: 7,
            prefixes_withdrawn_sent: 2,
            updates_received: 1,
            ..PeerStatus::default()
        })
    }

    #[test]
    fn renders_every_metric_with_units_help_and_labels() {
        let readiness = Readiness::new();
        let metrics = Metrics::with_readiness(readiness.clone());
        let (_peer, status) = established_peer();
        metrics.add_peer("192.0.2.1", status);
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
        readiness.release();
        let text = metrics.render().unwrap();
        for expected in [
            "# HELP topologyd_bgp_session_state BGP session state",
            "topologyd_bgp_session_state{peer=\"192.0.2.1\"} 6",
            "topologyd_routes_desired{peer=\"192.0.2.1\",family=\"ipv4-unicast\"} 120",
            "topologyd_routes_announced{peer=\"192.0.2.1\",family=\"ipv4-unicast\"} 120",
            "topologyd_routes_unencodable{peer=\"192.0.2.1\"} 0",
            "# TYPE topologyd_bgp_update_messages counter",
            "topologyd_bgp_update_messages_total{peer=\"192.0.2.1\",direction=\"sent\"} 1",
            "topologyd_bgp_update_messages_total{peer=\"192.0.2.1\",direction=\"received\"} 1",
            "topologyd_bgp_prefixes_total{peer=\"192.0.2.1\",direction=\"sent\",kind=\"announced\"} 7",
            "topologyd_bgp_prefixes_total{peer=\"192.0.2.1\",direction=\"sent\",kind=\"withdrawn\"} 2",
            "topologyd_guard_refusals_total{guard=\"G2\"} 3",
            "topologyd_generation_info{generation=\"42\",hash=\"sha256:bbbb\"} 1",
            "\ntopologyd_generation 42\n",
            "\ntopologyd_ready 1\n",
            "\ntopologyd_peers_holding_generation 0\n",
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

    /// The collector's exposition, line for line, is what the registry wrote when these were
    /// gauge and counter families: names, labels, HELP (with the registry's full stop), TYPE.
    #[test]
    fn collector_lines_match_the_registry_encoding_of_the_same_values() {
        let readiness = Readiness::new();
        let metrics = Metrics::with_readiness(readiness);
        let (_peer, status) = established_peer();
        metrics.add_peer("192.0.2.1", status);
        metrics.set_generation(42, "sha256:bbbb");
        let mut reference = Registry::default();
        type Labels = Vec<(String, String)>;
        type Series = Vec<(Labels, i64)>;
        let labels = |pairs: &[(&str, &str)]| -> Labels {
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect()
        };
        let peer = "192.0.2.1";
        let gauges: [(&str, &str, Series); 8] = [
            (
                SESSION_STATE,
                SESSION_STATE_HELP,
                vec![(labels(&[("peer", peer)]), 6)],
            ),
            (
                ROUTES_DESIRED,
                ROUTES_DESIRED_HELP,
                vec![
                    (
                        labels(&[("peer", peer), ("family", FAMILY_IPV4_UNICAST)]),
                        120,
                    ),
                    (
                        labels(&[("peer", peer), ("family", FAMILY_IPV6_UNICAST)]),
                        0,
                    ),
                ],
            ),
            (
                ROUTES_ANNOUNCED,
                ROUTES_ANNOUNCED_HELP,
                vec![
                    (
                        labels(&[("peer", peer), ("family", FAMILY_IPV4_UNICAST)]),
                        120,
                    ),
                    (
                        labels(&[("peer", peer), ("family", FAMILY_IPV6_UNICAST)]),
                        0,
                    ),
                ],
            ),
            (
                ROUTES_UNENCODABLE,
                ROUTES_UNENCODABLE_HELP,
                vec![(labels(&[("peer", peer)]), 0)],
            ),
            (READY, READY_HELP, vec![(Vec::new(), 0)]),
            (PEERS_HOLDING, PEERS_HOLDING_HELP, vec![(Vec::new(), 0)]),
            (
                GENERATION_INFO,
                GENERATION_INFO_HELP,
                vec![(labels(&[("generation", "42"), ("hash", "sha256:bbbb")]), 1)],
            ),
            (GENERATION, GENERATION_HELP, vec![(Vec::new(), 42)]),
        ];
        for (name, help, series) in gauges {
            if series[0].0.is_empty() {
                let gauge = Gauge::<i64>::default();
                gauge.set(series[0].1);
                reference.register(name, help, gauge);
            } else {
                let family = Family::<Labels, Gauge>::default();
                for (labels, value) in series {
                    family.get_or_create(&labels).set(value);
                }
                reference.register(name, help, family);
            }
        }
        reference.register(LEASE_HELD, LEASE_HELD_HELP, Gauge::<i64>::default());
        let updates = Family::<Labels, Counter>::default();
        let prefixes = Family::<Labels, Counter>::default();
        for direction in ["sent", "received"] {
            let sent = direction == "sent";
            updates
                .get_or_create(&labels(&[("peer", peer), ("direction", direction)]))
                .inc();
            for (kind, count) in [("announced", 7), ("withdrawn", 2)] {
                prefixes
                    .get_or_create(&labels(&[
                        ("peer", peer),
                        ("direction", direction),
                        ("kind", kind),
                    ]))
                    .inc_by(if sent { count } else { 0 });
            }
        }
        reference.register(UPDATE_MESSAGES, UPDATE_MESSAGES_HELP, updates);
        reference.register(PREFIXES, PREFIXES_HELP, prefixes);
        let mut expected: Vec<String> = render(&reference)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        expected.sort();
        let collected = metrics.render().unwrap();
        let mut lines: Vec<String> = collected
            .lines()
            .filter(|line| !line.starts_with("# EOF") && !line.starts_with("# UNIT"))
            .filter(|line| {
                expected.iter().any(|wanted| {
                    let name = |line: &str| {
                        line.trim_start_matches("# HELP ")
                            .trim_start_matches("# TYPE ")
                            .split(['{', ' '])
                            .next()
                            .unwrap_or_default()
                            .trim_end_matches("_total")
                            .to_owned()
                    };
                    name(wanted) == name(line)
                })
            })
            .map(str::to_owned)
            .collect();
        lines.sort();
        expected.retain(|line| line != "# EOF");
        assert_eq!(lines, expected, "collected:\n{collected}");
    }

    #[test]
    fn a_scrape_right_after_a_state_change_shows_the_new_state() {
        let readiness = Readiness::new();
        let metrics = Metrics::with_readiness(readiness.clone());
        let (peer, status) = watch::channel(PeerStatus {
            state: "Active".into(),
            ..PeerStatus::default()
        });
        metrics.add_peer("edge-a", status);
        metrics.set_generation(7, "sha256:cccc");
        let text = metrics.render().unwrap();
        assert!(
            text.contains("topologyd_bgp_session_state{peer=\"edge-a\"} 3"),
            "{text}"
        );
        // The peer task publishes Established with generation 7 sent; the very next scrape
        // shows it (no tick, no fold in between).
        peer.send_modify(|status| {
            status.state = "Established".into();
            status.established = true;
            status.generation_synced = Some(7);
            status.routes_desired_ipv6 = 5;
        });
        let text = metrics.render().unwrap();
        assert!(
            text.contains("topologyd_bgp_session_state{peer=\"edge-a\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("topologyd_routes_announced{peer=\"edge-a\",family=\"ipv6-unicast\"} 5"),
            "{text}"
        );
        readiness.release();
        assert!(metrics.render().unwrap().contains("\ntopologyd_ready 1\n"));
        peer.send_modify(|status| {
            status.state = "Idle".into();
            status.established = false;
            status.generation_synced = None;
        });
        let text = metrics.render().unwrap();
        assert!(
            text.contains("topologyd_bgp_session_state{peer=\"edge-a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("topologyd_routes_announced{peer=\"edge-a\",family=\"ipv6-unicast\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn a_peer_whose_task_ended_shows_no_session() {
        let metrics = Metrics::new();
        let (peer, status) = established_peer();
        metrics.add_peer("192.0.2.1", status);
        metrics.set_generation(42, "sha256:bbbb");
        drop(peer);
        let text = metrics.render().unwrap();
        assert!(
            text.contains("topologyd_bgp_session_state{peer=\"192.0.2.1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "topologyd_routes_announced{peer=\"192.0.2.1\",family=\"ipv4-unicast\"} 0"
            ),
            "{text}"
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
        let (_peer_a, status_a) = established_peer();
        let (_peer_b, status_b) = established_peer();
        metrics.add_peer("peer-a", status_a);
        metrics.add_peer("peer-b", status_b);
        metrics.remove_peer("peer-a");
        let text = metrics.render().unwrap();
        assert!(!text.contains("peer-a"), "{text}");
        assert!(
            text.contains("topologyd_bgp_session_state{peer=\"peer-b\"} 6"),
            "{text}"
        );
        metrics.remove_peer("peer-b");
        let text = metrics.render().unwrap();
        // No peer left: the per-peer families are not written at all (as empty families were not).
        assert!(!text.contains(SESSION_STATE), "{text}");
        assert!(!text.contains(UPDATE_MESSAGES), "{text}");
    }
}
