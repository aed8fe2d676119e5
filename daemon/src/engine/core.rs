//! The engine's decisions, pure: [`EngineCore::handle`] takes one [`Event`] and the current
//! time and returns the [`Effect`]s the async shell (`engine/mod.rs`) must run, in order. No
//! tokio, no sockets, no files, no clock: time is an argument, replies are addressed by
//! [`RequestId`], and every I/O result comes back as another event.
//!
//! It owns the running generation (the compare-and-swap, the re-plan when a compile raced a
//! commit, the commit verdict: guards, no change, runtime guard), what is published to the
//! peers (health verdicts and drains folded through `overlay.rs`, the publication counter),
//! the local service addresses' lifecycle (bound before their routes are announced, unbound
//! only once every peer reported the withdrawal sent, or after a timeout) and the peer-set
//! diff of a reload (`engine/peer_set.rs`).
//!
//! Golden replays of recorded event sequences live in `daemon/tests/conformance/`.
//!
//! Must not touch: sockets, files, channels, the wall clock, metrics handles.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use topologyd_api::{Document, ErrorDetail, OutcomeDetail};
use topologyd_config::daemon::PeerConfig;
use topologyd_topology::{Topology, Verdict};

use super::lease::LeaseBook;
use super::peer_set::{PeerSetDiff, peer_set_diff};
use super::prepare::Prepared;
use super::rpki::{RouteRpkiChange, RpkiBook, RpkiUpdate};
use crate::announce::LocationRoutes;
use crate::engine_api::{EngineError, EngineErrorKind, MutationChecks, MutationOutcome};
use crate::overlay::{self, OverlayInput, ServiceAction, ServiceDecision};
use crate::state_store::{DrainState, GenerationMeta, StoredGeneration};

/// An address is unbound only after the peers have sent the withdrawal of its routes, or after
/// this long if a peer does not finish sending.
pub const UNBIND_AFTER_WITHDRAWAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the bound service addresses are compared with the interface's.
pub const ADDRESS_VERIFY_INTERVAL: Duration = Duration::from_secs(2);

/// Names a request whose answer the shell holds the reply channel for.
pub type RequestId = u64;

/// The running generation.
#[derive(Debug, Clone)]
pub struct Running {
    pub topology: Arc<Topology>,
    pub meta: GenerationMeta,
    pub routes: Arc<LocationRoutes>,
}

/// What one peer last reported about its session and what it has sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSync {
    pub established: bool,
    /// The publication ([`LocationRoutes::version`]) whose routes have all been written.
    pub version_synced: Option<u64>,
}

/// The current time: monotonic (timers), unix seconds (records) and unix milliseconds (the
/// fleet lock's lease expiry, which must survive a restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub monotonic: Duration,
    pub unix_seconds: u64,
    pub unix_ms: u64,
}

/// `now` in unix seconds as a route's age is kept (until 2106; later saturates).
fn unix_seconds(now: Now) -> u32 {
    u32::try_from(now.unix_seconds).unwrap_or(u32::MAX)
}

/// What happened, as the core sees it.
#[derive(Debug)]
pub enum Event {
    /// An apply or rollback arrived: check its fleet lock claim and compare-and-swap.
    MutationRequested {
        request: RequestId,
        /// Its deadline is passed once `now.unix_ms` is past it (`core/deadline.rs`).
        checks: MutationChecks,
    },
    /// A mutation's compile (on the blocking pool) finished.
    Compiled {
        request: RequestId,
        base_generation: u64,
        checks: MutationChecks,
        result: Box<Result<Prepared, EngineError>>,
        who: String,
        rollback_of: Option<u64>,
    },
    /// The shell wrote (or failed to write) the generation a [`Effect::Commit`] named.
    Committed {
        request: RequestId,
        result: Result<(), EngineError>,
    },
    /// The health board's verdicts changed (or another round was counted).
    HealthVerdicts {
        verdicts: BTreeMap<String, bool>,
        fail_static: bool,
    },
    /// A drain change was persisted; it takes effect now.
    DrainsPersisted { drains: DrainState },
    /// A peer reported its session state or a publication fully sent.
    PeerReported { peer: String, sync: PeerSync },
    /// A new daemon configuration's peers (`reload`); the restart-only fields were checked.
    Reload {
        request: RequestId,
        before: Vec<PeerConfig>,
        after: Vec<PeerConfig>,
        min_other_locations: usize,
        /// Said in the report: a `[health]` change that applies at the next restart.
        health_restart_needed: bool,
    },
    /// The outcome of an [`Effect::Bind`]: `Ok(true)` when the address was an operator's.
    AddressBound {
        address: IpNet,
        result: Result<bool, String>,
    },
    /// The outcome of an [`Effect::Unbind`].
    AddressUnbound {
        address: IpNet,
        result: Result<(), String>,
    },
    /// The outcome of an [`Effect::ListAddresses`]: what the interface holds.
    AddressesListed { present: BTreeSet<IpNet> },
    /// The RTR task published a VRP set (or a change of its sync state).
    RpkiUpdated(Box<RpkiUpdate>),
    /// Time passed (the shell's ticker).
    Tick,
}

/// What the shell must do, in order.
#[derive(Debug)]
pub enum Effect {
    /// Compile, plan and guard the request's input against the running generation, off the
    /// engine task; the result comes back as [`Event::Compiled`].
    Compile {
        request: RequestId,
        base_generation: u64,
    },
    /// The mutation takes back the pushed bundle its discarded preparation holds: it is
    /// planned again (a [`Effect::Compile`] follows), and its compile job was lent the bundle,
    /// not given a copy.
    KeepSources {
        request: RequestId,
        bundle: crate::engine_api::SourceBundle,
    },
    /// Count guard refusals in the metrics.
    CountGuardRefusals { guard: String, count: u64 },
    /// Write the intent record ahead (if the request has one), then the generation, fsync'd;
    /// the result comes back as [`Event::Committed`].
    Commit {
        request: RequestId,
        stored: Box<StoredGeneration>,
        /// The SHA-256 of each source text, as the compile computed them (a text already in
        /// the state directory is then neither hashed nor written again).
        digests: Option<crate::state_store::SourceDigests>,
        /// The texts as the compile staged them, if it did (else the commit stages them).
        staging: Option<super::prepare::EarlyStaging>,
        generation_before: u64,
        plan_hash: String,
        intended_verdict: String,
        rollback_of: Option<u64>,
    },
    /// The new generation runs: metrics, the apply log line, the memory trim.
    GenerationApplied {
        request: RequestId,
        meta: GenerationMeta,
    },
    /// Free the previous generation off the engine task.
    Release(Box<Running>),
    /// Hand the health task the running generation's checks.
    UpdateHealthSpecs,
    /// A service's action here changed (logged).
    ServiceChanged {
        service: String,
        decision: ServiceDecision,
        first: bool,
    },
    /// Bind a service address (before its routes are announced).
    Bind { address: IpNet },
    /// Unbind a service address (its withdrawal was sent).
    Unbind { address: IpNet },
    /// List the interface's addresses (verification).
    ListAddresses,
    /// A bound address was removed from outside the daemon; it is bound again (logged).
    AddressVanished { address: IpNet },
    /// Send the peers this publication.
    Publish(Arc<LocationRoutes>),
    /// Fold the per-service state into the metrics.
    ReportServices,
    /// Stop a peer task (reload), withdrawing its routes first or not.
    StopPeer { peer: String, withdraw_first: bool },
    /// Start a peer task (reload).
    StartPeer { peer: String },
    /// Hand a running peer task its new configuration (reload).
    ReconfigurePeer { peer: String },
    /// A route's RPKI state or holding changed (logged and audited).
    RouteRpki(Box<RouteRpkiChange>),
    /// Answer a request.
    Reply {
        request: RequestId,
        answer: Result<Answer, EngineError>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Mutation(MutationOutcome),
    Reload(String),
}

/// A local address waiting for its routes' withdrawal to reach the peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUnbind {
    pub address: IpNet,
    /// The publication that withdrew the routes.
    pub version: u64,
    pub deadline: Duration,
}

/// The engine's decisions and the state they are made from.
#[derive(Debug)]
pub struct EngineCore {
    pub location: String,
    pub min_other_locations: usize,
    pub running: Running,
    /// What the peers are sent: the running routes after health and drains.
    pub published: Arc<LocationRoutes>,
    /// Publication counter of `published` ([`LocationRoutes::version`]).
    pub publish_version: u64,
    /// Since when (unix seconds) each route of `published` has been published with its
    /// present attributes, parallel to its routes (`topoctl routes`' age).
    pub published_since: Vec<u32>,
    pub drains: DrainState,
    /// The health verdict of each checked service (frozen by the health board under fail static).
    pub health_verdicts: BTreeMap<String, bool>,
    pub health_fail_static: bool,
    /// The overlay's decision per service announced here.
    pub decisions: BTreeMap<String, ServiceDecision>,
    /// Whether service addresses are managed at all (`[health] address_interface`).
    pub addresses_managed: bool,
    /// The service addresses bound by us and still wanted or awaiting their unbind.
    pub bound_addresses: BTreeSet<IpNet>,
    /// Wanted addresses already on the interface without our marker (an operator's): usable,
    /// never bound or unbound by us.
    pub foreign_addresses: BTreeSet<IpNet>,
    /// Addresses to unbind once every peer has sent the publication withdrawing their routes.
    pub pending_unbind: Vec<PendingUnbind>,
    /// The last failure to bind or unbind, per address.
    pub address_errors: BTreeMap<IpNet, String>,
    /// When the bound addresses were last compared with the interface's.
    addresses_verified: Duration,
    /// What each running peer last reported.
    pub peer_sync: BTreeMap<String, PeerSync>,
    /// Routes the runtime guard refused since start.
    pub runtime_guard_refusals: u64,
    /// A prepared generation whose commit the shell is writing.
    committing: Option<(RequestId, Box<Prepared>, GenerationMeta)>,
    /// When the commit in `committing` was decided (unix milliseconds).
    committing_decided_ms: u64,
    /// The fleet lock: the lease held here and the fences (`engine/lease.rs`); changed by the
    /// shell only after the new book is persisted.
    pub lease: LeaseBook,
    /// The VRP set and every running route's RPKI verdict (`engine/rpki.rs`).
    pub rpki: RpkiBook,
}

impl EngineCore {
    /// A core running `running`, publishing nothing yet: call [`EngineCore::start`] next.
    pub fn new(
        location: String,
        min_other_locations: usize,
        running: Running,
        drains: DrainState,
    ) -> EngineCore {
        EngineCore {
            location,
            min_other_locations,
            published: running.routes.clone(),
            running,
            publish_version: 0,
            published_since: Vec::new(),
            drains,
            health_verdicts: BTreeMap::new(),
            health_fail_static: false,
            decisions: BTreeMap::new(),
            addresses_managed: false,
            bound_addresses: BTreeSet::new(),
            foreign_addresses: BTreeSet::new(),
            pending_unbind: Vec::new(),
            address_errors: BTreeMap::new(),
            addresses_verified: Duration::ZERO,
            peer_sync: BTreeMap::new(),
            runtime_guard_refusals: 0,
            committing: None,
            committing_decided_ms: 0,
            lease: LeaseBook::default(),
            rpki: RpkiBook::new(None),
        }
    }

    /// Judges the running routes under `[rpki]`'s policy from now on (before [`Self::start`]).
    pub fn enable_rpki(&mut self, policy: topologyd_config::daemon::InvalidPolicy) {
        self.rpki = RpkiBook::new(Some(policy));
    }

    /// A peer task started: it holds nothing until it reports otherwise.
    pub fn peer_started(&mut self, peer: &str) {
        self.peer_sync.insert(peer.to_owned(), PeerSync::default());
    }

    /// The first publication (health unknown, drains as persisted).
    pub fn start(&mut self, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.addresses_verified = now.monotonic;
        let routes = self.running.routes.clone();
        self.rpki.judge_generation(&routes, &routes, now.unix_ms);
        self.published_since = vec![unix_seconds(now); self.published.routes.len()];
        if let Some(next) = self.next_publication(&mut effects) {
            self.publish(next, now, &mut effects);
        }
        effects.push(Effect::ReportServices);
        effects
    }

    /// Addresses are managed from now on; `bound` and `foreign` are what the start-up
    /// reconciliation with the interface found.
    pub fn manage_addresses(&mut self, bound: BTreeSet<IpNet>, foreign: BTreeSet<IpNet>, now: Now) {
        self.addresses_managed = true;
        self.bound_addresses = bound;
        self.foreign_addresses = foreign;
        self.addresses_verified = now.monotonic;
    }

    /// Decides what `event` makes the shell do.
    pub fn handle(&mut self, event: Event, now: Now) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            Event::MutationRequested { request, checks } => {
                self.on_mutation_requested(request, &checks, now, &mut effects)
            }
            Event::Compiled {
                request,
                base_generation,
                checks,
                result,
                who,
                rollback_of,
            } => {
                if base_generation != self.running.meta.generation {
                    // A commit ran meanwhile: check the claim and the compare-and-swap again,
                    // and plan again against the new generation, with the pushed files the
                    // preparation holds.
                    if let Ok(prepared) = *result {
                        effects.push(Effect::KeepSources {
                            request,
                            bundle: prepared.bundle,
                        });
                    }
                    self.on_mutation_requested(request, &checks, now, &mut effects);
                } else if let Err(error) = self.deadline_and_lease_check(&checks, now) {
                    // The commit is decided here, in one step with the checks: a status answered
                    // past the deadline shows every commit this request can make, and a lease
                    // taken, broken or expired while this compiled is the one held now.
                    effects.push(Effect::Reply {
                        request,
                        answer: Err(error),
                    });
                } else {
                    match *result {
                        Ok(prepared) => {
                            self.on_prepared(request, prepared, who, rollback_of, now, &mut effects)
                        }
                        Err(error) => effects.push(Effect::Reply {
                            request,
                            answer: Err(error),
                        }),
                    }
                }
            }
            Event::Committed { request, result } => {
                self.on_committed(request, result, now, &mut effects);
            }
            Event::HealthVerdicts {
                verdicts,
                fail_static,
            } => {
                let changed =
                    verdicts != self.health_verdicts || fail_static != self.health_fail_static;
                self.health_verdicts = verdicts;
                self.health_fail_static = fail_static;
                // Most views only count another passing round: recompute only on a change.
                if changed {
                    self.republish(now, &mut effects);
                }
            }
            Event::DrainsPersisted { drains } => {
                self.drains = drains;
                self.republish(now, &mut effects);
            }
            Event::PeerReported { peer, sync } => {
                // Only a running peer's report counts (see `peer_started`).
                if let Some(known) = self.peer_sync.get_mut(&peer) {
                    *known = sync;
                    self.unbind_withdrawn(now, &mut effects);
                }
            }
            Event::Reload {
                request,
                before,
                after,
                min_other_locations,
                health_restart_needed,
            } => {
                self.min_other_locations = min_other_locations;
                let diff = peer_set_diff(&before, &after);
                self.reload_effects(request, diff, health_restart_needed, now, &mut effects);
            }
            Event::AddressBound { address, result } => self.on_bound(address, result),
            Event::AddressUnbound { address, result } => self.on_unbound(address, result),
            Event::AddressesListed { present } => self.on_listed(&present, &mut effects),
            Event::RpkiUpdated(update) => {
                let routes = self.running.routes.clone();
                let changes = self.rpki.update(*update, &routes, now.unix_ms);
                let republish = changes
                    .iter()
                    .any(|change| change.held_before != change.held_after);
                effects.extend(
                    changes
                        .into_iter()
                        .map(|change| Effect::RouteRpki(Box::new(change))),
                );
                if republish {
                    self.republish(now, &mut effects);
                } else {
                    effects.push(Effect::ReportServices);
                }
            }
            Event::Tick => {
                self.unbind_withdrawn(now, &mut effects);
                if self.addresses_managed
                    && now.monotonic.saturating_sub(self.addresses_verified)
                        >= ADDRESS_VERIFY_INTERVAL
                {
                    self.addresses_verified = now.monotonic;
                    effects.push(Effect::ListAddresses);
                }
            }
        }
        effects
    }

    /// An engine error naming the running generation.
    pub fn error(
        &self,
        kind: EngineErrorKind,
        message: impl Into<String>,
        detail: Option<ErrorDetail>,
    ) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
            detail: detail.map(Box::new),
            generation: Some(self.running.meta.generation),
            plan_hash: None,
        }
    }

    fn on_mutation_requested(
        &self,
        request: RequestId,
        checks: &MutationChecks,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        if let Err(error) = self.deadline_and_lease_check(checks, now) {
            effects.push(Effect::Reply {
                request,
                answer: Err(error),
            });
            return;
        }
        let running = self.running.meta.generation;
        match checks.expected_generation {
            Some(expected) if expected != running => effects.push(Effect::Reply {
                request,
                answer: Err(self.error(
                    EngineErrorKind::Conflict,
                    format!(
                        "the running generation is {running}, not {expected}: plan again against it"
                    ),
                    Some(ErrorDetail::Conflict {
                        running_generation: running,
                    }),
                )),
            }),
            _ => effects.push(Effect::Compile {
                request,
                base_generation: running,
            }),
        }
    }

    /// The commit verdict of a prepared push: refused by the guards, nothing to change, refused
    /// by the runtime guard, or written (the shell commits, then [`Event::Committed`]).
    fn on_prepared(
        &mut self,
        request: RequestId,
        mut prepared: Prepared,
        who: String,
        rollback_of: Option<u64>,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        let generation_before = self.running.meta.generation;
        let verdict = prepared.plan.verdict();
        let refuse = |message: String, detail: ErrorDetail, hash: &str| EngineError {
            kind: EngineErrorKind::Refused,
            message,
            detail: Some(Box::new(detail)),
            generation: Some(generation_before),
            plan_hash: Some(hash.to_owned()),
        };
        if verdict == Verdict::Refused {
            for violation in &prepared.plan.violations {
                effects.push(Effect::CountGuardRefusals {
                    guard: format!("{:?}", violation.guard()),
                    count: 1,
                });
            }
            let error = refuse(
                format!(
                    "refused by the guards: {} violation(s)",
                    prepared.plan.violations.len()
                ),
                ErrorDetail::refused(prepared.plan_document(), prepared.text.clone()),
                &prepared.hash,
            );
            effects.push(Effect::Reply {
                request,
                answer: Err(error),
            });
            return;
        }
        if verdict == Verdict::NoChange && prepared.topology.hash_hex() == self.running.meta.hash {
            effects.push(Effect::Reply {
                request,
                answer: Ok(Answer::Mutation(MutationOutcome {
                    generation_before,
                    generation_after: generation_before,
                    plan_hash: prepared.hash.clone(),
                    detail: OutcomeDetail::new(verdict, None, prepared.text.clone()),
                    audit_warning: None,
                })),
            });
            return;
        }
        if let Err(problems) = &prepared.runtime_guard {
            self.runtime_guard_refusals += problems.len() as u64;
            effects.push(Effect::CountGuardRefusals {
                guard: "runtime".into(),
                count: problems.len() as u64,
            });
            let error = refuse(
                "refused by the runtime guard: what would be sent differs from the plan".into(),
                ErrorDetail::RuntimeGuard {
                    problems: problems.clone(),
                },
                &prepared.hash,
            );
            effects.push(Effect::Reply {
                request,
                answer: Err(error),
            });
            return;
        }
        let meta = GenerationMeta {
            generation: prepared.topology.generation(),
            hash: prepared.topology.hash_hex(),
            applied_at: now.unix_seconds,
            who: match rollback_of {
                Some(generation) => format!("{who} (rollback to {generation})"),
                None => who,
            },
            intent: prepared
                .intent
                .services
                .iter()
                .map(|service| format!("service:{service}"))
                .chain(prepared.intent.overrides.iter().map(ToString::to_string))
                .collect(),
        };
        let intended_verdict = serde_json::to_value(verdict)
            .ok()
            .and_then(|verdict| verdict.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{verdict:?}"));
        effects.push(Effect::Commit {
            request,
            stored: Box::new(StoredGeneration {
                meta: meta.clone(),
                // Moved, not copied: a pushed bundle can be tens of megabytes.
                bundle: std::mem::take(&mut prepared.bundle),
            }),
            digests: prepared.topology.source_digests().map(|digests| {
                digests
                    .into_iter()
                    .map(|(name, digest)| (name.to_owned(), digest))
                    .collect()
            }),
            staging: prepared.staging.take(),
            generation_before,
            plan_hash: prepared.hash.clone(),
            intended_verdict,
            rollback_of,
        });
        self.committing = Some((request, Box::new(prepared), meta));
        self.committing_decided_ms = now.unix_ms;
    }

    /// The generation is on disk (or could not be written): run it, republish, answer.
    fn on_committed(
        &mut self,
        request: RequestId,
        result: Result<(), EngineError>,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        let Some((pending, prepared, meta)) = self.committing.take() else {
            return;
        };
        if pending != request {
            self.committing = Some((pending, prepared, meta));
            return;
        }
        if let Err(error) = result {
            effects.push(Effect::Reply {
                request,
                answer: Err(error),
            });
            return;
        }
        let generation_before = self.running.meta.generation;
        let Prepared {
            topology,
            plan,
            routes,
            text,
            hash,
            ..
        } = *prepared;
        let previous = std::mem::replace(
            &mut self.running,
            Running {
                topology: Arc::new(topology),
                meta: meta.clone(),
                routes: Arc::new(routes),
            },
        );
        // A route the generation adds invalid is never newly announced (`engine/rpki.rs`).
        let changes =
            self.rpki
                .judge_generation(&self.running.routes, &previous.routes, now.unix_ms);
        effects.extend(
            changes
                .into_iter()
                .map(|change| Effect::RouteRpki(Box::new(change))),
        );
        // Freeing a large topology takes time too: not on the engine task.
        effects.push(Effect::Release(Box::new(previous)));
        effects.push(Effect::UpdateHealthSpecs);
        self.republish(now, effects);
        effects.push(Effect::GenerationApplied {
            request,
            meta: meta.clone(),
        });
        effects.push(Effect::Reply {
            request,
            answer: Ok(Answer::Mutation(MutationOutcome {
                generation_before,
                generation_after: meta.generation,
                plan_hash: hash,
                detail: OutcomeDetail::new(plan.verdict(), Some(Document::of(&plan.summary)), text),
                audit_warning: None,
            })),
        });
    }

    fn reload_effects(
        &mut self,
        request: RequestId,
        diff: PeerSetDiff,
        health_restart_needed: bool,
        now: Now,
        effects: &mut Vec<Effect>,
    ) {
        for (peer, _) in &diff.stop {
            self.peer_sync.remove(peer);
        }
        for peer in &diff.start {
            self.peer_sync.insert(peer.clone(), PeerSync::default());
        }
        for (peer, withdraw_first) in &diff.stop {
            effects.push(Effect::StopPeer {
                peer: peer.clone(),
                withdraw_first: *withdraw_first,
            });
        }
        for peer in &diff.start {
            effects.push(Effect::StartPeer { peer: peer.clone() });
        }
        for peer in &diff.update {
            effects.push(Effect::ReconfigurePeer { peer: peer.clone() });
        }
        let mut report = diff.report;
        if report.is_empty() {
            report.push("no peer changed".into());
        }
        // `[health] vars` and `min_other_locations` apply now; the fail-static policy, `enabled`
        // and `address_interface` belong to tasks started once, and apply at the next start.
        if health_restart_needed {
            report.push("[health] enabled, fail-static policy or address_interface changed: applies at the next restart".into());
        }
        effects.push(Effect::UpdateHealthSpecs);
        self.republish(now, effects);
        effects.push(Effect::Reply {
            request,
            answer: Ok(Answer::Reload(report.join(", "))),
        });
    }

    /// Recomputes what this location announces from the running routes, health and drains,
    /// and publishes it if it changed: addresses are bound before their routes are announced,
    /// and unbound only after the withdrawal has been sent.
    fn republish(&mut self, now: Now, effects: &mut Vec<Effect>) {
        let next = self.next_publication(effects);
        let desired = self.desired_addresses();
        self.bind_missing(&desired, effects);
        if let Some(next) = next {
            self.publish(next, now, effects);
        }
        self.schedule_unbind(&desired, now);
        effects.push(Effect::ReportServices);
    }

    /// Makes `next` what the peers are sent, carrying each unchanged route's age.
    fn publish(&mut self, next: LocationRoutes, now: Now, effects: &mut Vec<Effect>) {
        self.published_since = crate::announce::carry_since(
            &self.published,
            &self.published_since,
            &next,
            unix_seconds(now),
        );
        self.publish_version = next.version;
        self.published = Arc::new(next);
        effects.push(Effect::Publish(self.published.clone()));
    }

    /// Decides every service's action and returns the routes to publish, if they changed.
    fn next_publication(&mut self, effects: &mut Vec<Effect>) -> Option<LocationRoutes> {
        let decisions = overlay::decide(&OverlayInput {
            topology: &self.running.topology,
            location: &self.location,
            health: &self.health_verdicts,
            drains: &self.drains,
            min_other_locations: self.min_other_locations,
        });
        for (service, decision) in &decisions {
            let before = self.decisions.get(service);
            if before.map(|before| (before.action, before.floor_held))
                != Some((decision.action, decision.floor_held))
                && (decision.floor_held
                    || before.is_some()
                    || decision.action != ServiceAction::Announce)
            {
                effects.push(Effect::ServiceChanged {
                    service: service.clone(),
                    decision: decision.clone(),
                    first: before.is_none(),
                });
            }
        }
        let mut next = overlay::apply(
            &self.running.routes,
            &self.running.topology,
            &decisions,
            self.publish_version + 1,
        );
        let held = self.rpki.hold_back(&mut next, &self.published);
        effects.extend(
            held.into_iter()
                .map(|change| Effect::RouteRpki(Box::new(change))),
        );
        self.decisions = decisions;
        let current = &self.published;
        if next.generation == current.generation
            && (Arc::ptr_eq(&next.routes, &current.routes) || next.routes == current.routes)
            && next.intents == current.intents
        {
            return None;
        }
        Some(next)
    }

    /// The local addresses of every service this location announces now (announced or
    /// degraded, not withdrawn).
    pub fn desired_addresses(&self) -> BTreeSet<IpNet> {
        self.decisions
            .iter()
            .filter(|(_, decision)| decision.action != ServiceAction::Withdraw)
            .filter_map(|(name, _)| self.running.topology.service(name))
            .flat_map(|service| service.local_addresses.iter().copied())
            .collect()
    }

    /// Binds the wanted addresses that are not bound yet (before their routes are announced).
    fn bind_missing(&mut self, desired: &BTreeSet<IpNet>, effects: &mut Vec<Effect>) {
        if !self.addresses_managed {
            return;
        }
        for address in desired {
            // Wanted again before its unbind: keep it.
            self.pending_unbind
                .retain(|pending| pending.address != *address);
            if !self.bound_addresses.contains(address) && !self.foreign_addresses.contains(address)
            {
                effects.push(Effect::Bind { address: *address });
            }
        }
    }

    fn on_bound(&mut self, address: IpNet, result: Result<bool, String>) {
        match result {
            Ok(foreign) => {
                self.address_errors.remove(&address);
                if foreign {
                    self.foreign_addresses.insert(address);
                } else {
                    self.bound_addresses.insert(address);
                }
            }
            // Withdrawing here would let a netlink hiccup take every service down at once
            // (the failure fail static guards against): the error is shown, and the next
            // verification retries.
            Err(error) => {
                self.address_errors.insert(address, error);
            }
        }
    }

    /// Queues the bound addresses no longer wanted for unbinding after the withdrawal is sent.
    fn schedule_unbind(&mut self, desired: &BTreeSet<IpNet>, now: Now) {
        let deadline = now.monotonic + UNBIND_AFTER_WITHDRAWAL_TIMEOUT;
        // An operator's address is never ours to unbind; forget it once no service wants it.
        self.foreign_addresses
            .retain(|address| desired.contains(address));
        for address in self.bound_addresses.difference(desired) {
            if !self
                .pending_unbind
                .iter()
                .any(|pending| pending.address == *address)
            {
                self.pending_unbind.push(PendingUnbind {
                    address: *address,
                    version: self.publish_version,
                    deadline,
                });
            }
        }
    }

    /// Unbinds the queued addresses whose withdrawal every Established peer has sent.
    fn unbind_withdrawn(&mut self, now: Now, effects: &mut Vec<Effect>) {
        if self.pending_unbind.is_empty() {
            return;
        }
        if !self.addresses_managed {
            self.pending_unbind.clear();
            return;
        }
        let peers = &self.peer_sync;
        let (ready, waiting): (Vec<PendingUnbind>, Vec<PendingUnbind>) =
            std::mem::take(&mut self.pending_unbind)
                .into_iter()
                .partition(|pending| {
                    // A peer whose session is down may still hold our routes as stale
                    // (graceful restart): it counts as not synced, so the timeout applies.
                    now.monotonic >= pending.deadline
                        || peers.values().all(|sync| {
                            sync.established
                                && sync
                                    .version_synced
                                    .is_some_and(|synced| synced >= pending.version)
                        })
                });
        self.pending_unbind = waiting;
        for pending in ready {
            effects.push(Effect::Unbind {
                address: pending.address,
            });
            // Kept queued (due now) until the unbind is confirmed, so a failure retries.
            self.pending_unbind.push(PendingUnbind {
                deadline: now.monotonic,
                ..pending
            });
        }
    }

    fn on_unbound(&mut self, address: IpNet, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.pending_unbind
                    .retain(|pending| pending.address != address);
                self.bound_addresses.remove(&address);
                self.address_errors.remove(&address);
            }
            Err(error) => {
                // Stays queued, due now: the next tick retries.
                self.address_errors.insert(address, error);
            }
        }
    }

    /// A verification: re-binds wanted addresses that disappeared from the interface (removed
    /// from outside), and retries failed binds.
    fn on_listed(&mut self, present: &BTreeSet<IpNet>, effects: &mut Vec<Effect>) {
        let pending: BTreeSet<IpNet> = self
            .pending_unbind
            .iter()
            .map(|pending| pending.address)
            .collect();
        let vanished: Vec<IpNet> = self
            .bound_addresses
            .iter()
            .chain(self.foreign_addresses.iter())
            .filter(|address| !present.contains(address) && !pending.contains(address))
            .copied()
            .collect();
        for address in &vanished {
            effects.push(Effect::AddressVanished { address: *address });
            self.bound_addresses.remove(address);
            self.foreign_addresses.remove(address);
        }
        if !vanished.is_empty() || !self.address_errors.is_empty() {
            let desired = self.desired_addresses();
            self.bind_missing(&desired, effects);
        }
    }
}

mod display;
mod refusal;

#[cfg(test)]
mod tests;
