//! The engine task: the one owner of the running generation, of what this location announces,
//! and of the peer tasks. Everything else talks to it through [`EngineCommand`] (control API)
//! and [`EngineEvent`] (listeners, signals, the main task); see the diagram in `engine_api.rs`.
//!
//! It is split in a pure core and an async shell:
//!
//! ```text
//!  control API, signals, listeners ──► Engine (this file: the task, its select loop)
//!        │ Event                             ▲ Event (each effect's result)
//!        ▼                                   │
//!  core.rs  EngineCore::handle(event, now) ──► Vec<Effect> ──► effects.rs (runs them)
//!   (generations, commit verdicts, health         compile jobs (prepare.rs, blocking pool),
//!    and drains through overlay.rs, address       fsync'd commits, publish (watch), netlink,
//!    lifecycle, peer-set diff: peer_set.rs)       peer tasks, replies, metrics
//!  views.rs: the status, routes and health answers (read-only)
//!  status.rs: the peers' reports → the core and readiness (at once, no polling)
//! ```
//!
//! The per-peer metrics, readiness and the generation are read at scrape time by the metrics
//! collector (`metrics/collector.rs`) from what the engine and the peer tasks publish; the engine
//! only tells it which peers run ([`Metrics::add_peer`], [`Metrics::remove_peer`]).
//!
//! A push goes: compile → plan against the running generation → guards (G1 at compile, G2–G4
//! on the plan) → the runtime guard on what is about to be sent (`runtime_guard.rs`, the last
//! line of defence: its coverage half runs before the plan, which ends waiting for the
//! canonical hash, its half that compares with the plan after it) → atomic commit to the state
//! directory → publish to every peer at once
//! through one `watch` channel. Any failure before the commit leaves the running generation
//! untouched (fail static); the peers move to generation N+1 together or not at all.
//!
//! Must not touch: sockets (the peer tasks and listeners own them), HTTP framing, BGP encoding.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use topologyd_bgp::{GracefulRestartConfig, MaxPrefixes, SessionConfig};
use topologyd_config::Source;
use topologyd_config::daemon::{DaemonConfig, Family, PeerConfig};
use topologyd_config::health::HealthSpec;
use tracing::{error, info, warn};

use crate::addresses::AddressBinder;
use crate::announce::{LocationRoutes, PeerRouteContext};
use crate::audit::{AuditError, AuditLog, AuditRecord};
use crate::compile::CompileBudget;
use crate::engine_api::{
    EngineCommand, EngineError, EngineErrorKind, MutationTerms, SourceBundle, WriteAhead,
};
use crate::health::{HealthEventKind, HealthView, RoundCounts};
use crate::metrics::Metrics;
use crate::metrics::ServiceReport;
use crate::overlay;
use crate::peer::{PeerCommand, PeerHandle, PeerReport, PeerSpec, ReportTo, spawn_peer};
use crate::readiness::Readiness;
use crate::sockopt::SessionSecurity;
use crate::state_store::{ServiceDrain, StateStore};
use topologyd_api::{Document, DrainView, ErrorDetail, PlanView};

pub mod core;
mod effects;
mod fleet_lock;
pub mod lease;
pub mod peer_set;
pub mod prepare;
pub mod rpki;
mod rpki_task;
pub mod runtime_guard;
mod startup;
mod status;
mod views;

pub use self::core::{ADDRESS_VERIFY_INTERVAL, UNBIND_AFTER_WITHDRAWAL_TIMEOUT};
use self::core::{EngineCore, Event, Now, RequestId};
pub use self::effects::TRIM_AFTER_PUBLISH;
use self::effects::{Compiled, MutationRequest};
use self::peer_set::peer_set_diff;
pub use self::prepare::expanded_health_specs;
use self::prepare::{CompileInput, CompileJob, compile_memory_bytes};
pub use self::runtime_guard::runtime_guard;
pub use self::startup::{StartError, read_md5_key};

/// The connect-retry backoff stops growing at this multiple of `connect_retry_seconds`.
pub const CONNECT_RETRY_BACKOFF_FACTOR: u32 = 4;

/// How often the core's timers are checked (address unbind timeouts and verification) and the
/// fleet lock's lease expiry is noticed. Metrics and readiness do not wait for it: the metrics
/// are read at scrape time and readiness follows the peers' reports.
pub const TICK_INTERVAL: Duration = Duration::from_millis(250);

/// Events from the daemon's other tasks.
#[derive(Debug)]
pub enum EngineEvent {
    /// A BGP listener accepted a connection.
    Inbound {
        stream: TcpStream,
        remote: SocketAddr,
    },
    /// SIGHUP: a new, already validated daemon configuration.
    Reload {
        config: Box<DaemonConfig>,
        done: oneshot::Sender<Result<String, String>>,
    },
    /// SIGTERM: drain and stop; `done` fires when every peer task has finished.
    Shutdown { done: oneshot::Sender<()> },
}

/// What the BMP station needs from the engine besides the published routes.
#[derive(Debug, Clone)]
pub struct VisibilityInputs {
    pub topology: Arc<topologyd_topology::Topology>,
    /// The VRP set pushes are judged against, when there is one.
    pub vrps: Option<Arc<topologyd_rpki::VrpSet>>,
}

/// The engine's state; owned by its task.
pub struct Engine {
    config: DaemonConfig,
    store: Arc<StateStore>,
    /// The decisions and the state they are made from (the running generation, what is
    /// published, drains, health verdicts, addresses); `Engine` derefs to it.
    core: EngineCore,
    /// Monotonic time is measured from here for the core.
    epoch: Instant,
    /// What the peers are sent (the core's [`EngineCore::published`], on a channel).
    routes: watch::Sender<Arc<LocationRoutes>>,
    /// The running topology and the VRP set, for the BMP station's expectation (it reads
    /// them; nothing here waits for it).
    visibility_inputs: watch::Sender<VisibilityInputs>,
    /// The health board's last view, as the API shows it.
    health_view: Arc<HealthView>,
    /// The expanded checks of the services announced here, for the health task.
    health_specs: watch::Sender<Arc<BTreeMap<String, HealthSpec>>>,
    /// The health task's view (`None` until [`Engine::run`] starts the task).
    health: Option<watch::Receiver<Arc<HealthView>>>,
    /// The last health event handled, and each service's probe rounds counted so far.
    health_event_seen: u64,
    probe_rounds_seen: HashMap<String, RoundCounts>,
    /// Health transitions and fail-static changes are recorded here (the control API's log).
    audit: Option<AuditLog>,
    /// Binds services' local addresses (`[health] address_interface`), if configured.
    addresses: Option<AddressBinder>,
    peers: BTreeMap<String, PeerHandle>,
    metrics: Metrics,
    readiness: Readiness,
    /// The daemon came up from a stored generation: advertise the Restart State bit.
    restarting: bool,
    /// The memory the compiles in flight may use together (`compile.rs`).
    compile_budget: Arc<CompileBudget>,
    /// Where compile jobs on the blocking pool hand back a prepared apply or rollback.
    compiled_sender: mpsc::UnboundedSender<Compiled>,
    compiled: Option<mpsc::UnboundedReceiver<Compiled>>,
    /// Where the peer tasks report sessions and publications sent ([`PeerReport`]), and the
    /// number of the last peer task started.
    peer_report_sender: mpsc::UnboundedSender<PeerReport>,
    peer_reports: Option<mpsc::UnboundedReceiver<PeerReport>>,
    next_incarnation: u64,
    /// Applies and rollbacks in flight, by the id the core knows them by.
    mutations: HashMap<RequestId, MutationRequest>,
    next_request: RequestId,
    /// A reload in progress: the stop grace time of the configuration it replaces, and its
    /// answer once the core gives it.
    reload_grace: Duration,
    reload_answer: Option<Result<String, String>>,
    /// The fleet lock's lease was live at the last look (its expiry is noticed on a tick).
    lease_live: bool,
    /// The RTR client (`[rpki]`), the last VRP version handed to the core (`None`: the next
    /// snapshot replaces the set), when a stopped client is started again, and the VRPs by
    /// family (IPv4, IPv6) of that version (`rpki_task.rs`).
    rtr: Option<topologyd_rpki::rtr::RtrHandle>,
    rpki_version_seen: Option<u64>,
    rtr_restart_at: Option<std::time::Instant>,
    rpki_families: (u64, u64),
    /// The sweep of the texts the last commit's pruning left unnamed, run once that
    /// generation was committed (`StateStore::commit_staged`); the next commit waits for it.
    texts_sweep: Option<tokio::task::JoinHandle<()>>,
}

/// The read-only views (`views.rs`) and the shell read the core's state through the engine.
impl std::ops::Deref for Engine {
    type Target = EngineCore;

    fn deref(&self) -> &EngineCore {
        &self.core
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Engine")
            .field("location", &self.config.location)
            .field("generation", &self.running.meta.generation)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// The latest wall-clock reading the engine has handed out (unix milliseconds).
static LATEST_UNIX_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The wall clock in unix milliseconds, never going backwards within this process: deadlines
/// and the status time (`time_unix_ms`) are compared on it, and a clock stepped back (NTP, a
/// migrated VM) must not let a call commit after a status already said its deadline had passed.
fn unix_now_ms() -> u64 {
    let read = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    let previous = LATEST_UNIX_MS.fetch_max(read, std::sync::atomic::Ordering::SeqCst);
    previous.max(read)
}

pub(crate) fn to_sources(bundle: &SourceBundle) -> Vec<Source> {
    bundle
        .sources
        .iter()
        .map(|file| Source::new(file.name.clone(), file.text.clone()))
        .collect()
}

impl Engine {
    /// The current time, as the core takes it.
    fn now(&self) -> Now {
        Now {
            monotonic: self.epoch.elapsed(),
            unix_seconds: unix_now(),
            unix_ms: unix_now_ms(),
        }
    }

    /// Starts the health task on the running generation's checks.
    fn start_health(&mut self) {
        self.update_health_specs();
        let (view, _task) = crate::health_task::spawn_health_task(
            self.health_specs.subscribe(),
            self.config.health.clone(),
        );
        self.health = Some(view);
    }

    /// Hands the health task the checks of the running generation (and daemon config).
    fn update_health_specs(&mut self) {
        let (specs, errors) = expanded_health_specs(&self.running.topology, &self.config);
        for error in errors {
            error!(%error, "a health check cannot be expanded; the service counts as healthy here");
        }
        if **self.health_specs.borrow() != specs {
            self.health_specs.send_replace(Arc::new(specs));
        }
    }

    /// A new view from the health task: record its events, then republish.
    async fn on_health(&mut self) {
        let Some(view) = self
            .health
            .as_mut()
            .map(|health| health.borrow_and_update().clone())
        else {
            return;
        };
        let (events, lost) = view.events_after(self.health_event_seen);
        if lost > 0 {
            warn!(lost, "health events were missed");
        }
        let mut audits = Vec::new();
        for event in events {
            match &event.kind {
                HealthEventKind::Transition {
                    service,
                    from,
                    to,
                    reason,
                } => {
                    self.metrics.count_health_transition(service, to.as_str());
                    audits.push((
                        "health",
                        to.as_str().to_owned(),
                        format!("service {service}: {from} -> {to}: {reason}"),
                    ));
                }
                HealthEventKind::FailStaticEngaged { reason } => {
                    audits.push(("health", "fail_static".to_owned(), reason.clone()));
                }
                HealthEventKind::FailStaticDisengaged { reason } => {
                    audits.push(("health", "fail_static_cleared".to_owned(), reason.clone()));
                }
            }
        }
        self.health_event_seen = view.last_event_seq().max(self.health_event_seen);
        for (endpoint, verdict, message) in audits {
            self.audit(endpoint, &verdict, message);
        }
        for (service, state) in &view.services {
            let counts = state.rounds_by_result;
            let seen = self.probe_rounds_seen.entry(service.clone()).or_default();
            for (result, now, before) in [
                ("pass", counts.passed, seen.passed),
                ("fail", counts.failed, seen.failed),
                ("error", counts.errored, seen.errored),
            ] {
                if now > before {
                    self.metrics
                        .count_probe_rounds(service, result, now - before);
                }
            }
            *seen = counts;
        }
        let verdicts: BTreeMap<String, bool> = view
            .services
            .iter()
            .map(|(name, state)| (name.clone(), state.healthy))
            .collect();
        let fail_static = view.fail_static;
        self.health_view = view;
        self.handle(Event::HealthVerdicts {
            verdicts,
            fail_static,
        })
        .await;
    }

    /// Records health transitions and fail-static changes in the control API's audit log.
    pub fn set_audit_log(&mut self, audit: AuditLog) {
        self.audit = Some(audit);
    }

    /// Folds the per-service state into the metrics.
    fn report_services(&self) {
        let counts = overlay::routes_per_service(&self.core.published);
        let reports: Vec<ServiceReport> = self
            .decisions
            .iter()
            .map(|(service, decision)| ServiceReport {
                service: service.clone(),
                healthy: decision.healthy,
                action: decision.action.as_str(),
                drained: decision.drained,
                routes_announced: counts.get(service.as_str()).copied().unwrap_or(0),
            })
            .collect();
        self.metrics.set_services(&reports);
        self.metrics.set_location_drained(self.drains.drained);
        self.metrics.set_fail_static(self.health_fail_static);
    }

    /// Appends an engine-side record (health, drains) to the audit log, if there is one.
    fn audit(&self, endpoint: &str, verdict: &str, message: String) {
        let Some(audit) = self.audit.clone() else {
            return;
        };
        let record = AuditRecord {
            time: unix_now(),
            id: None,
            phase: None,
            who: "topologyd".into(),
            role: None,
            remote: String::new(),
            endpoint: endpoint.into(),
            request: None,
            intended_verdict: None,
            generation_before: Some(self.running.meta.generation),
            generation_after: Some(self.running.meta.generation),
            plan_hash: None,
            verdict: verdict.into(),
            status: 0,
            message: Some(message),
        };
        tokio::spawn(async move {
            if let Err(error) = audit.append(&record).await {
                warn!(%error, "could not write the audit log");
            }
        });
    }

    /// Drains or undrains a service, or the whole location; persisted before it takes effect.
    /// A dry run answers whether the state would change and changes nothing.
    async fn drain(
        &mut self,
        request: topologyd_api::DrainRequest,
        who: String,
        write_ahead: Option<WriteAhead>,
    ) -> Result<DrainView, EngineError> {
        let topologyd_api::DrainRequest {
            service,
            drain,
            force,
            reason,
            dry_run,
        } = request;
        if let Some(name) = &service
            && self.running.topology.service(name).is_none()
            && !self.drains.services.contains_key(name)
        {
            return Err(self.error(
                EngineErrorKind::NotFound,
                format!("no service named `{name}` in the running topology"),
                None,
            ));
        }
        let mut next = self.drains.clone();
        let now = unix_now();
        match &service {
            Some(name) if drain => {
                next.services.insert(
                    name.clone(),
                    ServiceDrain {
                        who: who.clone(),
                        reason: reason.clone(),
                        changed_at: now,
                        force,
                    },
                );
            }
            Some(name) => {
                next.services.remove(name);
            }
            None => {
                next.drained = drain;
                next.force = drain && force;
                next.who = who.clone();
                next.reason = reason.clone();
                next.changed_at = now;
            }
        }
        let changed = views::drain_changes(&self.drains, &next, service.as_deref());
        if dry_run {
            return Ok(self.drain_view(service, drain, changed));
        }
        if let Some(write_ahead) = &write_ahead {
            let generation = self.running.meta.generation;
            write_ahead
                .record(
                    generation,
                    generation,
                    None,
                    if drain { "drain" } else { "undrain" },
                )
                .await
                .map_err(|error| self.audit_error(error))?;
        }
        let store = self.store.clone();
        let stored = next.clone();
        tokio::task::spawn_blocking(move || store.store_drain(&stored))
            .await
            .map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), None))?
            .map_err(|error| self.state_write_error(error, "the drain state"))?;
        let target = service.clone().unwrap_or_else(|| "location".into());
        info!(%target, drain, force, %who, %reason, "drain state changed");
        self.handle(Event::DrainsPersisted { drains: next }).await;
        Ok(self.drain_view(service, drain, changed))
    }

    /// The generation this engine runs.
    pub fn generation(&self) -> u64 {
        self.running.meta.generation
    }

    fn peer_spec(&self, peer: &PeerConfig) -> Result<PeerSpec, StartError> {
        let families = peer
            .families
            .iter()
            .map(|family| match family {
                Family::Ipv4 => topologyd_bgp::Family::Ipv4Unicast,
                Family::Ipv6 => topologyd_bgp::Family::Ipv6Unicast,
            })
            .collect();
        let mut session =
            SessionConfig::new(self.config.local_asn, peer.asn, self.config.router_id);
        session.hold_time = peer.hold_time_seconds;
        session.send_hold_time = peer
            .send_hold_time_seconds
            .map(|seconds| Duration::from_secs(u64::from(seconds)));
        session.passive = peer.passive;
        session.families = families;
        session.extended_messages = peer.extended_messages;
        session.backoff.initial = Duration::from_secs(u64::from(peer.connect_retry_seconds));
        // Back off at most to four times the configured interval: a router that comes back is
        // found within seconds, not minutes.
        session.backoff.maximum = session.backoff.initial * CONNECT_RETRY_BACKOFF_FACTOR;
        session.max_prefixes = MaxPrefixes {
            ipv4_unicast: peer
                .max_prefix
                .map(|limit| u32::try_from(limit).unwrap_or(u32::MAX)),
            ipv6_unicast: peer
                .max_prefix
                .map(|limit| u32::try_from(limit).unwrap_or(u32::MAX)),
        };
        session.graceful_restart =
            self.config
                .graceful_restart
                .enabled
                .then_some(GracefulRestartConfig {
                    restart_time: self.config.graceful_restart.restart_time_seconds,
                    restarting: self.restarting,
                    forwarding_preserved: true,
                });
        Ok(PeerSpec {
            name: peer.name.clone(),
            remote: SocketAddr::new(peer.address, peer.port),
            local_address: peer.local_address,
            session,
            security: SessionSecurity {
                md5_key: read_md5_key(peer)?,
                gtsm_hops: peer.ttl_security_hops,
            },
            route_context: PeerRouteContext {
                local_asn: self.config.local_asn,
                peer_asn: peer.asn,
                ipv4_next_hop: peer.ipv4_next_hop(),
                ipv6_next_hop: peer.ipv6_next_hop(),
            },
        })
    }

    /// The published routes and the running topology and VRPs, for the BMP station.
    pub fn visibility_inputs(
        &self,
    ) -> (
        watch::Receiver<Arc<LocationRoutes>>,
        watch::Receiver<VisibilityInputs>,
    ) {
        (self.routes.subscribe(), self.visibility_inputs.subscribe())
    }

    /// Publishes the running topology and the VRP set when either changed. The topology it
    /// replaces is often the last share of the previous generation: it is freed on the
    /// blocking pool, not on the engine task while the channel is locked (a large topology
    /// takes milliseconds to free, right when the peers read the routes just published).
    fn publish_visibility_inputs(&self) {
        let topology = &self.core.running.topology;
        let vrps = self.core.rpki.plan_vrps();
        let mut replaced = None;
        self.visibility_inputs.send_if_modified(|inputs| {
            let same_vrps = match (&inputs.vrps, &vrps) {
                (Some(old), Some(new)) => Arc::ptr_eq(old, new),
                (None, None) => true,
                _ => false,
            };
            if Arc::ptr_eq(&inputs.topology, topology) && same_vrps {
                return false;
            }
            replaced = Some(std::mem::replace(
                &mut inputs.topology,
                Arc::clone(topology),
            ));
            inputs.vrps = vrps.clone();
            true
        });
        if let Some(previous) = replaced.filter(|previous| Arc::strong_count(previous) == 1) {
            tokio::task::spawn_blocking(move || drop(previous));
        }
    }

    /// Starts the task of every configured peer.
    pub fn start_peers(&mut self) -> Result<(), StartError> {
        let peers = self.config.peers.clone();
        for peer in &peers {
            self.start_peer(peer)?;
        }
        Ok(())
    }

    fn start_peer(&mut self, peer: &PeerConfig) -> Result<(), StartError> {
        let spec = self.peer_spec(peer)?;
        self.next_incarnation += 1;
        let reports = ReportTo {
            sender: self.peer_report_sender.clone(),
            incarnation: self.next_incarnation,
            reconcile_duration: self.metrics.reconcile_histogram(),
        };
        let handle = spawn_peer(spec, self.routes.subscribe(), reports);
        self.metrics.add_peer(&peer.name, handle.status.clone());
        self.peers.insert(peer.name.clone(), handle);
        self.core.peer_started(&peer.name);
        Ok(())
    }

    /// Runs until a shutdown event has drained every peer.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<EngineCommand>,
        mut events: mpsc::Receiver<EngineEvent>,
    ) {
        let mut ticker = tokio::time::interval(TICK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.start_health();
        self.start_rpki();
        // The first verdict over the peers just started (with no peer to wait for, ready now).
        self.refresh_readiness();
        let (Some(mut compiled), Some(mut peer_reports)) =
            (self.compiled.take(), self.peer_reports.take())
        else {
            error!("the engine runs only once");
            return;
        };
        let mut commands_open = true;
        loop {
            let (health, rtr) = (&mut self.health, &mut self.rtr);
            let health_changed = async move {
                match health.as_mut() {
                    Some(health) => health.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let rtr_changed = rpki_task::rtr_changed(rtr);
            tokio::select! {
                alive = health_changed => {
                    if alive {
                        self.on_health().await;
                    } else {
                        error!("the health task stopped; keeping the last health verdicts (fail static)");
                        self.health = None;
                    }
                }
                Some(done) = compiled.recv() => self.on_compiled(done).await,
                alive = rtr_changed => {
                    if alive {
                        self.on_rtr().await;
                    } else {
                        self.rtr_stopped().await;
                    }
                }
                command = commands.recv(), if commands_open => match command {
                    Some(command) => self.on_command(command).await,
                    // No control API (none configured, or it stopped): keep serving everything
                    // else. Waiting here instead would stop the whole engine loop — peers'
                    // reports, health, metrics, reloads and shutdown with it.
                    None => commands_open = false,
                },
                event = events.recv() => match event {
                    Some(EngineEvent::Inbound { stream, remote }) => self.on_inbound(stream, remote).await,
                    Some(EngineEvent::Reload { config, done }) => {
                        let result = self.reload(*config).await;
                        let _ = done.send(result);
                    }
                    Some(EngineEvent::Shutdown { done }) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.shutdown().await;
                        return;
                    }
                },
                Some(report) = peer_reports.recv() => self.on_peer_report(report).await,
                _ = ticker.tick() => {
                    // The texts a push kept in memory until their stamps settled (a lock and a
                    // look at a list of a few).
                    self.store.forget_recent_texts();
                    self.rtr_tick().await;
                    self.handle(Event::Tick).await;
                    self.notice_lease_expiry();
                }
            }
        }
    }

    async fn on_inbound(&mut self, stream: TcpStream, remote: SocketAddr) {
        let peer = self
            .peers
            .values()
            .find(|peer| peer.address == remote.ip() || mapped_equal(peer.address, remote.ip()));
        match peer {
            Some(peer) => {
                if peer
                    .commands
                    .send(PeerCommand::Inbound(stream))
                    .await
                    .is_err()
                {
                    warn!(%remote, "peer task is gone; dropping the connection");
                }
            }
            None => warn!(%remote, "BGP connection from an unconfigured address refused"),
        }
    }

    async fn on_command(&mut self, command: EngineCommand) {
        match command {
            EngineCommand::Plan {
                bundle,
                digests,
                unchecked,
                intent,
                reply,
            } => {
                // Compiled, planned and rendered on the blocking pool, answered from there.
                let job = self.compile_job(CompileInput::Bundle {
                    bundle: Some(bundle),
                    digests,
                    unchecked,
                    intent,
                });
                tokio::task::spawn_blocking(move || {
                    let location = job.location.clone();
                    let result = job.run().map(|prepared| PlanView {
                        verdict: prepared.plan.verdict(),
                        exit_code: prepared.plan.exit_code(),
                        location_delta: Document::of(&prepared.plan.delta(&location)),
                        plan: prepared.plan_document(),
                        text: prepared.text,
                    });
                    let _ = reply.send(result);
                });
            }
            EngineCommand::Apply {
                bundle,
                digests,
                unchecked,
                intent,
                terms,
            } => {
                self.start_mutation(
                    CompileInput::Bundle {
                        bundle: Some(bundle),
                        digests,
                        unchecked,
                        intent,
                    },
                    terms,
                )
                .await;
            }
            EngineCommand::Rollback { generation, terms } => {
                self.start_mutation(CompileInput::Rollback { generation }, terms)
                    .await;
            }
            EngineCommand::Status { reply } => {
                let _ = reply.send(Ok(self.status_json()));
            }
            EngineCommand::Routes { peer, reply } => {
                let _ = reply.send(self.routes_json(peer.as_deref()));
            }
            EngineCommand::Drain {
                service,
                drain,
                force,
                reason,
                who,
                write_ahead,
                dry_run,
                reply,
            } => {
                let request = topologyd_api::DrainRequest {
                    service,
                    drain,
                    force,
                    reason,
                    dry_run,
                };
                let result = self.drain(request, who, write_ahead).await;
                let _ = reply.send(result);
            }
            EngineCommand::Health { reply } => {
                let _ = reply.send(Ok(self.health_json()));
            }
            EngineCommand::Rpki { reply } => {
                let _ = reply.send(Ok(self.rpki_view()));
            }
            EngineCommand::Lease {
                request,
                who,
                reply,
            } => {
                let result = self.lease(request, who).await;
                let _ = reply.send(result);
            }
            EngineCommand::Generations { reply } => {
                let _ = reply.send(self.generations().await);
            }
            EngineCommand::Running { reply } => {
                let _ = reply.send(Ok((
                    self.running.meta.generation,
                    Arc::clone(&self.running.topology),
                    Arc::clone(&self.store),
                )));
            }
            EngineCommand::Topology { generation, reply } => {
                // The texts are in the state directory only (the running topology does not
                // keep them): read there on the blocking pool, answered from its own task so
                // that the engine goes on meanwhile.
                let running = (self.running.meta.generation, self.running.meta.hash.clone());
                let generation = generation.unwrap_or(running.0);
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    let _ = reply.send(views::stored_topology(store, generation, running).await);
                });
            }
        }
    }

    /// An engine error naming the running generation.
    fn error(
        &self,
        kind: EngineErrorKind,
        message: impl Into<String>,
        detail: Option<ErrorDetail>,
    ) -> EngineError {
        self.core.error(kind, message, detail)
    }

    /// What a compile job needs from the engine: snapshots, nothing borrowed.
    fn compile_job(&self, input: CompileInput) -> CompileJob {
        CompileJob {
            input,
            old: Arc::clone(&self.running.topology),
            old_routes: Arc::clone(&self.running.routes),
            base_generation: self.running.meta.generation,
            next_generation: self.next_generation(),
            location: self.config.location.clone(),
            config: self.config.clone(),
            store: Arc::clone(&self.store),
            budget: Arc::clone(&self.compile_budget),
            rpki: self.push_rpki(),
            stage_early: false,
        }
    }

    /// Hands an apply or rollback to the core, which checks its compare-and-swap and has it
    /// compiled on the blocking pool ([`Effect::Compile`]); the engine keeps serving meanwhile.
    async fn start_mutation(&mut self, input: CompileInput, terms: MutationTerms) {
        let id = self.next_request;
        self.next_request += 1;
        let checks = terms.checks.clone();
        self.mutations.insert(
            id,
            MutationRequest {
                input,
                terms,
                started: Instant::now(),
                persist_ms: 0,
            },
        );
        self.handle(Event::MutationRequested {
            request: id,
            checks,
        })
        .await;
    }

    /// The running generation + 1, or past any higher number on disk (a newer file that could
    /// not be read and was quarantined keeps its number).
    fn next_generation(&self) -> u64 {
        (self.running.meta.generation + 1).max(self.store.next_generation())
    }

    /// The engine error for an intent record that could not be written: the mutation is
    /// refused (507 when the audit log's file system is full).
    fn audit_error(&self, error: AuditError) -> EngineError {
        let kind = if error.is_no_space() {
            EngineErrorKind::NoSpace
        } else {
            EngineErrorKind::Internal
        };
        error!(%error, "the audit record could not be written ahead of a change; refused");
        self.error(
            kind,
            format!(
                "the audit record could not be written before the change, so it was refused and nothing changed: {error}"
            ),
            None,
        )
    }

    /// The engine error for a failed write to the state directory: a full file system is its own
    /// kind (HTTP 507) whose message and detail name what could be pruned.
    fn state_write_error(&self, error: crate::state_store::StateError, what: &str) -> EngineError {
        let kind = if error.is_no_space() {
            EngineErrorKind::NoSpace
        } else {
            EngineErrorKind::Internal
        };
        let detail = match &error {
            crate::state_store::StateError::NoSpace { prunable, .. } => {
                Some(ErrorDetail::NoSpace {
                    prunable: Document::of(prunable),
                })
            }
            _ => None,
        };
        self.error(
            kind,
            format!("could not persist {what}, nothing changed: {error}"),
            detail,
        )
    }

    /// SIGHUP: checks what only a restart may change and the key files of the peers to start,
    /// then hands the new peer set to the core, which decides what stops, starts and changes
    /// in place (`peer_set.rs`), and republishes.
    async fn reload(&mut self, config: DaemonConfig) -> Result<String, String> {
        if config.location != self.config.location
            || config.local_asn != self.config.local_asn
            || config.router_id != self.config.router_id
            || config.state_dir != self.config.state_dir
        {
            return Err(
                "location, local_asn, router_id and state_dir change only with a restart".into(),
            );
        }
        // Validate keys of the peers to start before stopping anything.
        let diff = peer_set_diff(&self.config.peers, &config.peers);
        for peer in config
            .peers
            .iter()
            .filter(|peer| diff.start.contains(&peer.name))
        {
            read_md5_key(peer).map_err(|error| error.to_string())?;
        }
        let health_restart_needed = config.health.enabled != self.config.health.enabled
            || config.health.fail_static_share != self.config.health.fail_static_share
            || config.health.fail_static_min_services
                != self.config.health.fail_static_min_services
            || config.health.address_interface != self.config.health.address_interface;
        let mut config = config;
        if health_restart_needed {
            config.health.enabled = self.config.health.enabled;
            config.health.fail_static_share = self.config.health.fail_static_share;
            config.health.fail_static_min_services = self.config.health.fail_static_min_services;
            config
                .health
                .address_interface
                .clone_from(&self.config.health.address_interface);
        }
        if config.rpki != self.config.rpki {
            warn!("[rpki] changed: the RTR caches and invalid_policy apply at the next restart");
            config.rpki.clone_from(&self.config.rpki);
        }
        // Peers stop within the grace time of the configuration being replaced.
        self.reload_grace = Duration::from_secs(u64::from(self.config.shutdown.grace_seconds));
        let before = std::mem::replace(&mut self.config, config);
        self.compile_budget
            .set_limit(compile_memory_bytes(&self.config.control));
        self.reload_answer = None;
        self.handle(Event::Reload {
            request: RequestId::MAX,
            before: before.peers,
            after: self.config.peers.clone(),
            min_other_locations: self.config.health.min_other_locations,
            health_restart_needed,
        })
        .await;
        self.reload_answer
            .take()
            .unwrap_or_else(|| Err("the reload was not answered".into()))
    }

    async fn shutdown(&mut self) {
        let withdraw_first = self.config.shutdown.withdraw_on_stop;
        let grace = Duration::from_secs(u64::from(self.config.shutdown.grace_seconds));
        info!(withdraw_first, ?grace, "draining peers");
        let mut stops = tokio::task::JoinSet::new();
        let deadline = Instant::now() + grace;
        for handle in std::mem::take(&mut self.peers).into_values() {
            stops.spawn(stop_peer(handle, withdraw_first, deadline));
        }
        if tokio::time::timeout(grace, stops.join_all()).await.is_err() {
            warn!("shutdown grace time over; exiting with peers still draining");
        }
    }
}

/// Stops one peer task; `deadline` is when the stop's grace time ends (the task bounds its
/// EoRR fence and its graceful close by it).
async fn stop_peer(handle: PeerHandle, withdraw_first: bool, deadline: Instant) {
    let (done, finished) = oneshot::channel();
    if handle
        .commands
        .send(PeerCommand::Shutdown {
            withdraw_first,
            deadline,
            done,
        })
        .await
        .is_ok()
    {
        let _ = finished.await;
    }
    let _ = handle.task.await;
}

fn mapped_equal(configured: IpAddr, remote: IpAddr) -> bool {
    match (configured, remote) {
        (IpAddr::V4(v4), IpAddr::V6(v6)) | (IpAddr::V6(v6), IpAddr::V4(v4)) => {
            v6.to_ipv4_mapped() == Some(v4)
        }
        _ => false,
    }
}
