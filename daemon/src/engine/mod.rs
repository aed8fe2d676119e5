//! The engine task: the one owner of the running generation, of what this location announces,
//! and of the peer tasks. Everything else talks to it through [`EngineCommand`] (control API)
//! and [`EngineEvent`] (listeners, signals, the main task); see the diagram in `engine_api.rs`.
//!
//! A push goes: compile → plan against the running generation → guards (G1 at compile, G2–G4
//! on the plan) → the runtime guard on what is about to be sent ([`runtime_guard`], the last line
//! of defence) → atomic commit to the state directory → publish to every peer at once through
//! one `watch` channel. Any failure before the commit leaves the running generation untouched
//! (fail static); the peers move to generation N+1 together or not at all.
//!
//! Must not touch: sockets (the peer tasks and listeners own them), HTTP framing, BGP encoding.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use topologyd_bgp::{GracefulRestartConfig, MaxPrefixes, SessionConfig};
use topologyd_config::Source;
use topologyd_config::daemon::{DaemonConfig, Family, PeerConfig};
use topologyd_config::health::HealthSpec;
use topologyd_topology::{
    Intent, Plan, Topology, Verdict, compile_owned, plan, rollback_overrides,
};
use tracing::{error, info, warn};

use crate::addresses::{AddressBinder, BindOutcome};
use crate::admin::Readiness;
use crate::announce::{LocationRoutes, PeerRouteContext};
use crate::bundle::{compile_bundle, compile_bundle_against};
use crate::compile::{BudgetError, CompileBudget, Reservation};
use crate::control::{AuditLog, AuditRecord};
use crate::engine_api::{
    EngineCommand, EngineError, EngineErrorKind, MutationOutcome, SourceBundle, SourceFile,
    WriteAhead,
};
use crate::health::{HealthEventKind, HealthView, RoundCounts, expand};
use crate::metrics::ServiceReport;
use crate::metrics::{
    Direction as MetricDirection, FAMILY_IPV4_UNICAST, FAMILY_IPV6_UNICAST, Metrics, SessionState,
};
use crate::overlay::{self, OverlayInput, ServiceAction, ServiceDecision};
use crate::peer::{PeerCommand, PeerHandle, PeerSpec, PeerStatus, spawn_peer};
use crate::sockopt::SessionSecurity;
use crate::state_store::{DrainState, GenerationMeta, ServiceDrain, StateStore, StoredGeneration};

mod views;

/// The connect-retry backoff stops growing at this multiple of `connect_retry_seconds`.
pub const CONNECT_RETRY_BACKOFF_FACTOR: u32 = 4;

/// How long after a publish the freed heap is returned to the kernel.
pub const TRIM_AFTER_PUBLISH: Duration = Duration::from_secs(2);

/// How often peer snapshots are folded into the metrics and readiness is re-evaluated.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// An address is unbound only after the peers have sent the withdrawal of its routes, or after
/// this long if a peer does not finish sending.
pub const UNBIND_AFTER_WITHDRAWAL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the bound service addresses are compared with the interface's.
pub const ADDRESS_VERIFY_INTERVAL: Duration = Duration::from_secs(2);

/// A local address waiting for its routes' withdrawal to reach the peers.
#[derive(Debug, Clone)]
struct PendingUnbind {
    address: IpNet,
    /// The publication that withdrew the routes.
    version: u64,
    deadline: Instant,
}

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

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state directory: {0}")]
    State(#[from] crate::state_store::StateError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the bootstrap topology does not compile:\n{0}")]
    Bootstrap(topologyd_topology::Diagnostics),
    #[error(
        "the state directory holds no generation and `bootstrap_topology` names no files: nothing to announce"
    )]
    NothingToAnnounce,
    #[error("location `{0}` is not in the topology's fleet")]
    UnknownLocation(String),
    #[error("no stored generation compiles; last error:\n{0}")]
    NoGoodGeneration(String),
    #[error("peer `{peer}`: {message}")]
    Peer { peer: String, message: String },
    #[error("local service addresses: {0}")]
    Addresses(String),
}

/// The running generation.
struct Running {
    topology: Arc<Topology>,
    meta: GenerationMeta,
    routes: Arc<LocationRoutes>,
}

/// The engine's state; owned by its task.
pub struct Engine {
    config: DaemonConfig,
    store: Arc<StateStore>,
    running: Running,
    /// What the peers are sent: the running routes after health and drains (`overlay.rs`).
    routes: watch::Sender<Arc<LocationRoutes>>,
    /// Publication counter of `routes` ([`LocationRoutes::version`]).
    publish_version: u64,
    /// Manual drains, persisted in the state directory.
    drains: DrainState,
    /// The health verdict of each checked service (frozen by the health board under fail static).
    health_verdicts: BTreeMap<String, bool>,
    /// The health board's last view, as the API shows it.
    health_view: Value,
    health_fail_static: bool,
    /// The expanded checks of the services announced here, for the health task.
    health_specs: watch::Sender<Arc<BTreeMap<String, HealthSpec>>>,
    /// The health task's view (`None` until [`Engine::run`] starts the task).
    health: Option<watch::Receiver<Arc<HealthView>>>,
    /// The last health event handled, and each service's probe rounds counted so far.
    health_event_seen: u64,
    probe_rounds_seen: HashMap<String, RoundCounts>,
    /// The overlay's decision per service announced here.
    decisions: BTreeMap<String, ServiceDecision>,
    /// Health transitions and fail-static changes are recorded here (the control API's log).
    audit: Option<AuditLog>,
    /// Routes the runtime guard refused since start.
    runtime_guard_refusals: u64,
    /// Binds services' local addresses (`[health] address_interface`), if configured.
    addresses: Option<AddressBinder>,
    /// The service addresses bound by us and still wanted or awaiting their unbind.
    bound_addresses: BTreeSet<IpNet>,
    /// Addresses to unbind once every peer has sent the publication withdrawing their routes.
    pending_unbind: Vec<PendingUnbind>,
    /// The last failure to bind or unbind, per address.
    address_errors: BTreeMap<IpNet, String>,
    /// Wanted addresses already on the interface without our marker (an operator's): usable,
    /// never bound or unbound by us.
    foreign_addresses: BTreeSet<IpNet>,
    /// When the bound addresses were last compared with the kernel's.
    addresses_verified: Instant,
    peers: BTreeMap<String, PeerHandle>,
    metrics: Metrics,
    readiness: Readiness,
    /// Per peer: the counters last folded into the metrics.
    reported: HashMap<String, PeerStatus>,
    /// The daemon came up from a stored generation: advertise the Restart State bit.
    restarting: bool,
    /// The memory the compiles in flight may use together (`compile.rs`).
    compile_budget: Arc<CompileBudget>,
    /// Where compile jobs on the blocking pool hand back a prepared apply or rollback.
    compiled_sender: mpsc::UnboundedSender<Compiled>,
    compiled: Option<mpsc::UnboundedReceiver<Compiled>>,
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

pub(crate) fn to_sources(bundle: &SourceBundle) -> Vec<Source> {
    bundle
        .sources
        .iter()
        .map(|file| Source::new(file.name.clone(), file.text.clone()))
        .collect()
}

fn to_bundle(sources: &[Source]) -> SourceBundle {
    SourceBundle {
        sources: sources
            .iter()
            .map(|source| SourceFile {
                name: source.name.clone(),
                text: source.text.clone(),
            })
            .collect(),
    }
}

fn diagnostics_json(diagnostics: &topologyd_topology::Diagnostics) -> Value {
    serde_json::to_value(diagnostics).unwrap_or(Value::Null)
}

fn plan_json(plan: &Plan) -> Value {
    serde_json::from_str(&plan.to_json()).unwrap_or(Value::Null)
}

fn plan_hash(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(serde_json::to_vec(plan).unwrap_or_default());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn parse_intent(lines: &[String]) -> Result<Intent, EngineError> {
    let mut intent = Intent::default();
    for line in lines {
        let parsed = if line.starts_with("service:") {
            intent.parse_arg(line)
        } else {
            intent.parse_override(line)
        };
        parsed.map_err(|error| EngineError {
            kind: EngineErrorKind::Invalid,
            message: error.to_string(),
            detail: Value::Null,
            generation: None,
            plan_hash: None,
        })?;
    }
    Ok(intent)
}

/// The routes `topology` makes `location` announce.
fn location_routes(topology: &Topology, location: &str) -> Result<LocationRoutes, String> {
    let desired = topology
        .desired(location)
        .map_err(|error| error.to_string())?;
    Ok(LocationRoutes::from_desired(
        topology.generation(),
        &desired,
    ))
}

/// The health checks of every service `topology` announces at `location`, with their
/// `{placeholders}` expanded from the location's attributes and the daemon's `[health.vars]`;
/// every expansion failure as one line naming the service, the check and the placeholder.
pub fn expanded_health_specs(
    topology: &Topology,
    config: &DaemonConfig,
) -> (BTreeMap<String, HealthSpec>, Vec<String>) {
    let mut specs = BTreeMap::new();
    let mut errors = Vec::new();
    if !config.health.enabled {
        return (specs, errors);
    }
    let Some(index) = topology
        .locations()
        .iter()
        .position(|location| location.name == config.location)
    else {
        return (specs, errors);
    };
    let location = &topology.locations()[index];
    let mut vars = config.health.vars.clone();
    vars.insert("location".into(), location.name.clone());
    vars.insert("region".into(), location.region.clone());
    vars.insert("metro".into(), location.metro.clone());
    vars.insert("country".into(), location.country.clone());
    for service in topology.services() {
        let Some(spec) = &service.health else {
            continue;
        };
        if !service.announcing().contains(index) {
            continue;
        }
        match expand(&service.name, spec, &vars) {
            Ok(expanded) => {
                specs.insert(service.name.clone(), expanded);
            }
            Err(error) => errors.push(error.to_string()),
        }
    }
    (specs, errors)
}

/// The last line of defence, on what is about to be sent from this location: the routes that
/// would change must be exactly the ones the plan (and so its guards) approved for this
/// location, and every route announced must still have a binding covering all of it (G1).
pub fn runtime_guard(
    plan: &Plan,
    location: &str,
    before: &LocationRoutes,
    after: &LocationRoutes,
    topology: &Topology,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let delta = plan.delta(location);
    let before_set: BTreeSet<IpNet> = before.routes.iter().map(|(prefix, _)| *prefix).collect();
    let after_set: BTreeSet<IpNet> = after.routes.iter().map(|(prefix, _)| *prefix).collect();
    let withdrawn: BTreeSet<IpNet> = before_set.difference(&after_set).copied().collect();
    let announced: BTreeSet<IpNet> = after_set.difference(&before_set).copied().collect();
    let planned_withdrawn: BTreeSet<IpNet> = delta.withdraw.iter().copied().collect();
    let planned_announced: BTreeSet<IpNet> =
        delta.announce.iter().map(|route| route.prefix).collect();
    for prefix in withdrawn.difference(&planned_withdrawn) {
        problems.push(format!("G2/G3 runtime: {prefix} would be withdrawn here, but the plan approved no such withdrawal"));
    }
    for prefix in announced.difference(&planned_announced) {
        problems.push(format!(
            "runtime: {prefix} would be announced here, but the plan approved no such announcement"
        ));
    }
    for (prefix, _) in &after.routes {
        match topology.longest_binding(prefix) {
            Some((binding, _)) if binding.contains(prefix) => {}
            _ => problems.push(format!(
                "G1 runtime: {prefix} has no binding covering all of it"
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn session_state_metric(state: &str) -> SessionState {
    match state {
        "Connect" => SessionState::Connect,
        "Active" => SessionState::Active,
        "OpenSent" => SessionState::OpenSent,
        "OpenConfirm" => SessionState::OpenConfirm,
        "Established" => SessionState::Established,
        _ => SessionState::Idle,
    }
}

/// Reads a peer's MD5 key file (trailing newline removed).
pub fn read_md5_key(peer: &PeerConfig) -> Result<Option<Vec<u8>>, StartError> {
    let Some(path) = &peer.md5_key_file else {
        return Ok(None);
    };
    let mut key = std::fs::read(path).map_err(|source| StartError::Read {
        path: path.display().to_string(),
        source,
    })?;
    while key
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        key.pop();
    }
    if key.is_empty() || key.len() > 80 {
        return Err(StartError::Peer {
            peer: peer.name.clone(),
            message: format!(
                "the MD5 key in {} must be 1 to 80 bytes (RFC 2385)",
                path.display()
            ),
        });
    }
    Ok(Some(key))
}

impl Engine {
    /// Loads the running generation (the last one applied, or the bootstrap topology on first
    /// start) and computes what this location announces. Blocking: call before the runtime
    /// serves anything, or from `spawn_blocking`.
    pub fn start(
        config: DaemonConfig,
        metrics: Metrics,
        readiness: Readiness,
    ) -> Result<Engine, StartError> {
        let store = StateStore::open(&config.state_dir, config.retained_generations)?
            .with_quarantine_counter(metrics.state_quarantined_counter());
        let recovered = store.load_current()?;
        for skipped in &recovered.skipped {
            warn!(%skipped, "skipped an unreadable stored generation");
        }
        if !recovered.skipped.is_empty() {
            warn!(
                quarantined = ?recovered.quarantined,
                next_generation = store.next_generation(),
                "fell back past unreadable generations; pushes and rollbacks continue from the next free number"
            );
        }
        let (running, restarting) = match recovered.current {
            Some(stored) => (Self::recover(&store, &config, stored)?, true),
            None => (Self::bootstrap(&store, &config)?, false),
        };
        metrics.set_generation(running.meta.generation, &running.meta.hash);
        crate::memory::release_free_memory();
        let drains = store.load_drain()?;
        if drains.drained || !drains.services.is_empty() {
            warn!(
                location_drained = drains.drained,
                services = ?drains.services.keys().collect::<Vec<_>>(),
                "starting drained (persisted by topoctl drain)"
            );
        }
        let (routes, _) = watch::channel(running.routes.clone());
        let (compiled_sender, compiled) = mpsc::unbounded_channel();
        let config_for_budget = config.control.clone();
        info!(
            generation = running.meta.generation,
            hash = %running.meta.hash,
            routes = running.routes.routes.len(),
            restarting,
            "running generation loaded"
        );
        Ok(Engine {
            config,
            store: Arc::new(store),
            running,
            routes,
            publish_version: 0,
            drains,
            health_verdicts: BTreeMap::new(),
            health_view: Value::Null,
            health_fail_static: false,
            health_specs: watch::channel(Arc::new(BTreeMap::new())).0,
            health: None,
            health_event_seen: 0,
            probe_rounds_seen: HashMap::new(),
            decisions: BTreeMap::new(),
            audit: None,
            runtime_guard_refusals: 0,
            addresses: None,
            bound_addresses: BTreeSet::new(),
            pending_unbind: Vec::new(),
            address_errors: BTreeMap::new(),
            foreign_addresses: BTreeSet::new(),
            addresses_verified: Instant::now(),
            peers: BTreeMap::new(),
            metrics,
            readiness,
            reported: HashMap::new(),
            restarting,
            compile_budget: CompileBudget::new(compile_memory_bytes(&config_for_budget)),
            compiled_sender,
            compiled: Some(compiled),
        })
        .map(|mut engine| {
            if let Some(next) = engine.next_publication() {
                engine.publish_version = next.version;
                engine.routes.send_replace(Arc::new(next));
            }
            engine.report_services();
            engine
        })
    }

    /// Opens the netlink binder of `[health] address_interface` and brings the addresses we
    /// bound (found by their marker, also from an earlier run) to what is announced now.
    /// Call before the peers start: nothing is announced yet, so stale addresses go at once.
    pub async fn start_addresses(&mut self) -> Result<(), StartError> {
        let Some(interface) = self.config.health.address_interface.clone() else {
            return Ok(());
        };
        let binder = AddressBinder::new(&interface)
            .await
            .map_err(|error| StartError::Addresses(error.to_string()))?;
        let desired = self.desired_addresses();
        let (bound, unbound) = binder
            .reconcile(&desired)
            .await
            .map_err(|error| StartError::Addresses(error.to_string()))?;
        for (address, outcome) in &bound {
            info!(%address, %interface, outcome = outcome.as_str(), "service address bound");
        }
        for address in &unbound {
            info!(%address, %interface, "stale service address unbound");
        }
        for (address, outcome) in &bound {
            if matches!(outcome, BindOutcome::Foreign { .. }) {
                self.foreign_addresses.insert(*address);
            } else {
                self.bound_addresses.insert(*address);
            }
        }
        self.bound_addresses
            .extend(binder.owned().await.unwrap_or_default());
        self.addresses = Some(binder);
        self.metrics
            .set_local_addresses_bound(self.bound_addresses.len());
        Ok(())
    }

    /// The local addresses of every service this location announces now (announced or
    /// degraded, not withdrawn).
    fn desired_addresses(&self) -> BTreeSet<IpNet> {
        self.decisions
            .iter()
            .filter(|(_, decision)| decision.action != ServiceAction::Withdraw)
            .filter_map(|(name, _)| self.running.topology.service(name))
            .flat_map(|service| service.local_addresses.iter().copied())
            .collect()
    }

    /// Binds the wanted addresses that are not bound yet (before their routes are announced).
    async fn bind_missing(&mut self, desired: &BTreeSet<IpNet>) {
        let Some(binder) = &self.addresses else {
            return;
        };
        for address in desired {
            // Wanted again before its unbind: keep it.
            self.pending_unbind
                .retain(|pending| pending.address != *address);
            if self.bound_addresses.contains(address) || self.foreign_addresses.contains(address) {
                continue;
            }
            match binder.bind(*address).await {
                Ok(outcome) => {
                    info!(%address, interface = binder.interface(), outcome = outcome.as_str(), "service address bound");
                    self.address_errors.remove(address);
                    if matches!(outcome, BindOutcome::Foreign { .. }) {
                        self.foreign_addresses.insert(*address);
                    } else {
                        self.bound_addresses.insert(*address);
                    }
                }
                Err(error) => {
                    // Withdrawing here would let a netlink hiccup take every service down at
                    // once (the failure fail static guards against); the error is in
                    // /v1/health and the log, and the next verification retries.
                    error!(%address, %error, "could not bind a service address; its routes are announced anyway");
                    self.address_errors.insert(*address, error.to_string());
                }
            }
        }
        self.metrics
            .set_local_addresses_bound(self.bound_addresses.len());
    }

    /// Every [`ADDRESS_VERIFY_INTERVAL`]: re-binds wanted addresses that disappeared from the
    /// interface (removed from outside), and retries failed binds.
    async fn verify_addresses(&mut self) {
        if self.addresses.is_none() || self.addresses_verified.elapsed() < ADDRESS_VERIFY_INTERVAL {
            return;
        }
        self.addresses_verified = Instant::now();
        let Some(binder) = &self.addresses else {
            return;
        };
        let present = match binder.bound().await {
            Ok(present) => present,
            Err(error) => {
                warn!(%error, "could not list the interface's addresses");
                return;
            }
        };
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
            error!(%address, interface = binder.interface(), "a bound service address was removed from outside; binding it again");
            self.bound_addresses.remove(address);
            self.foreign_addresses.remove(address);
        }
        if !vanished.is_empty() || !self.address_errors.is_empty() {
            let desired = self.desired_addresses();
            self.bind_missing(&desired).await;
        }
    }

    /// Queues the bound addresses no longer wanted for unbinding after the withdrawal is sent.
    fn schedule_unbind(&mut self, desired: &BTreeSet<IpNet>) {
        let deadline = Instant::now() + UNBIND_AFTER_WITHDRAWAL_TIMEOUT;
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
    async fn unbind_withdrawn(&mut self) {
        if self.pending_unbind.is_empty() {
            return;
        }
        let Some(binder) = &self.addresses else {
            self.pending_unbind.clear();
            return;
        };
        let statuses = self.peer_statuses();
        let now = Instant::now();
        let (ready, waiting): (Vec<PendingUnbind>, Vec<PendingUnbind>) =
            std::mem::take(&mut self.pending_unbind)
                .into_iter()
                .partition(|pending| {
                    // A peer whose session is down may still hold our routes as stale
                    // (graceful restart): it counts as not synced, so the timeout applies.
                    now >= pending.deadline
                        || statuses.iter().all(|status| {
                            status.established
                                && status
                                    .version_synced
                                    .is_some_and(|synced| synced >= pending.version)
                        })
                });
        self.pending_unbind = waiting;
        for pending in ready {
            match binder.unbind(pending.address).await {
                Ok(outcome) => {
                    info!(address = %pending.address, outcome = outcome.as_str(), "service address unbound after its withdrawal");
                    self.bound_addresses.remove(&pending.address);
                    self.address_errors.remove(&pending.address);
                }
                Err(error) => {
                    error!(address = %pending.address, %error, "could not unbind a service address; retrying");
                    self.address_errors
                        .insert(pending.address, error.to_string());
                    self.pending_unbind.push(PendingUnbind {
                        deadline: now,
                        ..pending
                    });
                }
            }
        }
        self.metrics
            .set_local_addresses_bound(self.bound_addresses.len());
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
        let changed =
            verdicts != self.health_verdicts || view.fail_static != self.health_fail_static;
        self.health_verdicts = verdicts;
        self.health_fail_static = view.fail_static;
        self.health_view = serde_json::to_value(&*view).unwrap_or(Value::Null);
        // Most views only count another passing round: recompute the routes only on a change.
        if changed {
            self.republish().await;
        }
    }

    /// Records health transitions and fail-static changes in the control API's audit log.
    pub fn set_audit_log(&mut self, audit: AuditLog) {
        self.audit = Some(audit);
    }

    /// Recomputes what this location announces from the running routes, health and drains,
    /// and publishes it to the peers if it changed: addresses are bound before their routes
    /// are announced, and unbound only after the withdrawal has been sent.
    async fn republish(&mut self) {
        let next = self.next_publication();
        let desired = self.desired_addresses();
        self.bind_missing(&desired).await;
        if let Some(next) = next {
            self.publish_version = next.version;
            self.routes.send_replace(Arc::new(next));
        }
        self.schedule_unbind(&desired);
        self.report_services();
    }

    /// Decides every service's action and returns the routes to publish, if they changed.
    fn next_publication(&mut self) -> Option<LocationRoutes> {
        let decisions = overlay::decide(&OverlayInput {
            topology: &self.running.topology,
            location: &self.config.location,
            health: &self.health_verdicts,
            drains: &self.drains,
            min_other_locations: self.config.health.min_other_locations,
        });
        for (service, decision) in &decisions {
            let before = self.decisions.get(service);
            if before.map(|before| (before.action, before.floor_held))
                != Some((decision.action, decision.floor_held))
            {
                if decision.floor_held {
                    warn!(%service, other_live_locations = decision.other_live_locations, "withdrawal held by the floor: too few other live locations announce the service");
                } else if before.is_some() || decision.action != ServiceAction::Announce {
                    info!(%service, action = decision.action.as_str(), drained = decision.drained, healthy = ?decision.healthy, "service action here changed");
                }
            }
        }
        let current = self.routes.borrow().clone();
        let next = overlay::apply(
            &self.running.routes,
            &self.running.topology,
            &decisions,
            self.publish_version + 1,
        );
        self.decisions = decisions;
        if next.generation == current.generation
            && next.routes == current.routes
            && next.intents == current.intents
        {
            return None;
        }
        Some(next)
    }

    /// Folds the per-service state into the metrics.
    fn report_services(&self) {
        let published = self.routes.borrow().clone();
        let counts = overlay::routes_per_service(&published);
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
    async fn drain(
        &mut self,
        service: Option<String>,
        drain: bool,
        force: bool,
        reason: String,
        who: String,
        write_ahead: Option<WriteAhead>,
    ) -> Result<Value, EngineError> {
        if let Some(name) = &service
            && self.running.topology.service(name).is_none()
            && !self.drains.services.contains_key(name)
        {
            return Err(self.error(
                EngineErrorKind::NotFound,
                format!("no service named `{name}` in the running topology"),
                Value::Null,
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
            .map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), Value::Null))?
            .map_err(|error| self.state_write_error(error, "the drain state"))?;
        self.drains = next;
        let target = service.clone().unwrap_or_else(|| "location".into());
        info!(%target, drain, force, %who, %reason, "drain state changed");
        self.republish().await;
        let held: Vec<&String> = self
            .decisions
            .iter()
            .filter(|(name, decision)| {
                decision.floor_held
                    && decision.drained
                    && service.as_ref().is_none_or(|wanted| wanted == *name)
            })
            .map(|(name, _)| name)
            .collect();
        Ok(json!({
            "location": self.config.location,
            "target": target,
            "drained": drain,
            "floor_held": held,
            "services": self.decisions,
        }))
    }

    fn running_from(
        config: &DaemonConfig,
        topology: Topology,
        meta: GenerationMeta,
    ) -> Result<Running, StartError> {
        if topology.location(&config.location).is_none() {
            return Err(StartError::UnknownLocation(config.location.clone()));
        }
        let routes = location_routes(&topology, &config.location)
            .map_err(|_| StartError::UnknownLocation(config.location.clone()))?;
        Ok(Running {
            topology: Arc::new(topology),
            meta,
            routes: Arc::new(routes),
        })
    }

    fn recover(
        store: &StateStore,
        config: &DaemonConfig,
        stored: StoredGeneration,
    ) -> Result<Running, StartError> {
        // The newest generation first, then the older ones (last known good).
        let mut candidates = vec![stored.meta.generation];
        candidates.extend(
            store
                .list()?
                .into_iter()
                .map(|meta| meta.generation)
                .filter(|generation| *generation != stored.meta.generation),
        );
        let mut last_error = String::new();
        for generation in candidates {
            let candidate = if generation == stored.meta.generation {
                stored.clone()
            } else {
                match store.load(generation) {
                    Ok(candidate) => candidate,
                    Err(error) => {
                        last_error = error.to_string();
                        continue;
                    }
                }
            };
            match compile_bundle(candidate.bundle.clone(), generation) {
                Ok(topology) => {
                    if generation != stored.meta.generation {
                        warn!(
                            generation,
                            "fell back to an older stored generation (last known good)"
                        );
                    }
                    return Self::running_from(config, topology, candidate.meta);
                }
                Err(diagnostics) => {
                    error!(generation, %diagnostics, "stored generation does not compile");
                    last_error = diagnostics.to_string();
                }
            }
        }
        Err(StartError::NoGoodGeneration(last_error))
    }

    fn bootstrap(store: &StateStore, config: &DaemonConfig) -> Result<Running, StartError> {
        if config.bootstrap_topology.is_empty() {
            return Err(StartError::NothingToAnnounce);
        }
        let sources =
            topologyd_config::load_sources(&config.bootstrap_topology).map_err(|error| {
                StartError::Read {
                    path: error.path.clone(),
                    source: error.error,
                }
            })?;
        // Generation 1 on a first start; after every stored generation was quarantined, the next
        // number past them (the store refuses to reuse one).
        let generation = store.next_generation();
        let topology = compile_owned(sources, generation).map_err(StartError::Bootstrap)?;
        let meta = GenerationMeta {
            generation,
            hash: topology.hash_hex(),
            applied_at: unix_now(),
            who: "bootstrap".into(),
            intent: Vec::new(),
        };
        let bundle = to_bundle(topology.sources());
        let running = Self::running_from(config, topology, meta.clone())?;
        store.commit(&StoredGeneration { meta, bundle })?;
        Ok(running)
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
        let handle = spawn_peer(spec, self.routes.subscribe());
        self.peers.insert(peer.name.clone(), handle);
        Ok(())
    }

    /// Runs until a shutdown event has drained every peer.
    pub async fn run(
        mut self,
        mut commands: mpsc::Receiver<EngineCommand>,
        mut events: mpsc::Receiver<EngineEvent>,
    ) {
        let mut ticker = tokio::time::interval(STATUS_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.start_health();
        let Some(mut compiled) = self.compiled.take() else {
            error!("the engine runs only once");
            return;
        };
        loop {
            let health_changed = async {
                match self.health.as_mut() {
                    Some(health) => health.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
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
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command).await,
                    None => {
                        // The control server is gone; keep running on events.
                        std::future::pending::<()>().await;
                    }
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
                _ = ticker.tick() => {
                    self.refresh_status();
                    self.unbind_withdrawn().await;
                    self.verify_addresses().await;
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
                intent,
                reply,
            } => {
                // Compiled, planned and rendered on the blocking pool, answered from there.
                let job = self.compile_job(CompileInput::Bundle { bundle, intent });
                tokio::task::spawn_blocking(move || {
                    let location = job.location.clone();
                    let result = job.run().map(|prepared| {
                        json!({
                            "verdict": prepared.plan.verdict(),
                            "exit_code": prepared.plan.exit_code(),
                            "plan": prepared.plan_json,
                            "text": prepared.text,
                            "location_delta": prepared.plan.delta(&location),
                        })
                    });
                    let _ = reply.send(result);
                });
            }
            EngineCommand::Apply {
                bundle,
                intent,
                expected_generation,
                who,
                write_ahead,
                reply,
            } => {
                self.start_mutation(MutationRequest {
                    input: CompileInput::Bundle { bundle, intent },
                    expected_generation,
                    who,
                    write_ahead,
                    reply,
                    started: Instant::now(),
                });
            }
            EngineCommand::Rollback {
                generation,
                expected_generation,
                who,
                write_ahead,
                reply,
            } => {
                self.start_mutation(MutationRequest {
                    input: CompileInput::Rollback { generation },
                    expected_generation,
                    who,
                    write_ahead,
                    reply,
                    started: Instant::now(),
                });
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
                reply,
            } => {
                let result = self
                    .drain(service, drain, force, reason, who, write_ahead)
                    .await;
                let _ = reply.send(result);
            }
            EngineCommand::Health { reply } => {
                let _ = reply.send(Ok(self.health_json()));
            }
            EngineCommand::Topology { reply } => {
                let _ = reply.send(Ok(json!({
                    "generation": self.running.meta.generation,
                    "hash": self.running.meta.hash,
                    "bundle": to_bundle(self.running.topology.sources()),
                })));
            }
        }
    }

    fn error(
        &self,
        kind: EngineErrorKind,
        message: impl Into<String>,
        detail: Value,
    ) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
            detail,
            generation: Some(self.running.meta.generation),
            plan_hash: None,
        }
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
        }
    }

    /// Checks an apply's or rollback's compare-and-swap, then compiles it on the blocking pool;
    /// [`Engine::on_compiled`] commits it. The engine keeps serving meanwhile.
    fn start_mutation(&mut self, request: MutationRequest) {
        if let Err(error) = self.check_expected(request.expected_generation) {
            let _ = request.reply.send(Err(error));
            return;
        }
        let job = self.compile_job(request.input.clone());
        let sender = self.compiled_sender.clone();
        tokio::task::spawn_blocking(move || {
            let base_generation = job.base_generation;
            let result = job.run();
            let _ = sender.send(Compiled {
                base_generation,
                result,
                request,
            });
        });
    }

    /// A mutation's compile finished: commit it if the running generation is still the one it
    /// was planned against; otherwise plan it again against the new one (or answer the
    /// compare-and-swap conflict).
    async fn on_compiled(&mut self, done: Compiled) {
        let Compiled {
            base_generation,
            result,
            request,
        } = done;
        if base_generation != self.running.meta.generation {
            drop(result);
            self.start_mutation(request);
            return;
        }
        let MutationRequest {
            input,
            who,
            write_ahead,
            reply,
            started,
            ..
        } = request;
        let answer = match result {
            Ok(prepared) => {
                let (who, rollback_of) = match input {
                    CompileInput::Rollback { generation } => (
                        format!("{who} (rollback to {generation})"),
                        Some(generation),
                    ),
                    CompileInput::Bundle { .. } => (who, None),
                };
                self.commit(prepared, who, started, rollback_of, write_ahead)
                    .await
            }
            Err(error) => Err(error),
        };
        let _ = reply.send(answer);
    }

    /// The running generation + 1, or past any higher number on disk (a newer file that could
    /// not be read and was quarantined keeps its number).
    fn next_generation(&self) -> u64 {
        (self.running.meta.generation + 1).max(self.store.next_generation())
    }

    /// The engine error for an intent record that could not be written: the mutation is
    /// refused (507 when the audit log's file system is full).
    fn audit_error(&self, error: crate::control::ControlError) -> EngineError {
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
            Value::Null,
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
                json!({ "prunable": prunable })
            }
            _ => Value::Null,
        };
        self.error(
            kind,
            format!("could not persist {what}, nothing changed: {error}"),
            detail,
        )
    }

    fn check_expected(&self, expected: Option<u64>) -> Result<(), EngineError> {
        match expected {
            Some(expected) if expected != self.running.meta.generation => Err(self.error(
                EngineErrorKind::Conflict,
                format!(
                    "the running generation is {}, not {expected}: plan again against it",
                    self.running.meta.generation
                ),
                json!({ "running_generation": self.running.meta.generation }),
            )),
            _ => Ok(()),
        }
    }

    /// Guards, persists and publishes a prepared push; `started` is when the request reached
    /// the engine (the apply latency metric covers compile, plan, guards and the commit).
    /// `rollback_of` names a rollback's target, which a full-disk error never offers to prune.
    async fn commit(
        &mut self,
        prepared: Prepared,
        who: String,
        started: Instant,
        rollback_of: Option<u64>,
        write_ahead: Option<WriteAhead>,
    ) -> Result<MutationOutcome, EngineError> {
        let Prepared {
            topology,
            plan,
            routes,
            intent,
            plan_json,
            text,
            hash,
            runtime_guard: runtime_verdict,
            bundle,
        } = prepared;
        let generation_before = self.running.meta.generation;
        if plan.verdict() == Verdict::Refused {
            for violation in &plan.violations {
                self.metrics
                    .count_guard_refusals(&format!("{:?}", violation.guard()), 1);
            }
            return Err(EngineError {
                kind: EngineErrorKind::Refused,
                message: format!(
                    "refused by the guards: {} violation(s)",
                    plan.violations.len()
                ),
                detail: json!({ "plan": plan_json, "text": text }),
                generation: Some(generation_before),
                plan_hash: Some(hash),
            });
        }
        if plan.verdict() == Verdict::NoChange && topology.hash_hex() == self.running.meta.hash {
            return Ok(MutationOutcome {
                generation_before,
                generation_after: generation_before,
                plan_hash: hash,
                detail: json!({ "verdict": plan.verdict(), "text": text }),
            });
        }
        if let Err(problems) = runtime_verdict {
            self.metrics
                .count_guard_refusals("runtime", problems.len() as u64);
            self.runtime_guard_refusals += problems.len() as u64;
            error!(?problems, "runtime guard refused what was about to be sent");
            return Err(EngineError {
                kind: EngineErrorKind::Refused,
                message: "refused by the runtime guard: what would be sent differs from the plan"
                    .into(),
                detail: json!({ "problems": problems }),
                generation: Some(generation_before),
                plan_hash: Some(hash),
            });
        }
        let meta = GenerationMeta {
            generation: topology.generation(),
            hash: topology.hash_hex(),
            applied_at: unix_now(),
            who,
            intent: intent
                .services
                .iter()
                .map(|service| format!("service:{service}"))
                .chain(intent.overrides.iter().map(ToString::to_string))
                .collect(),
        };
        let stored = StoredGeneration {
            meta: meta.clone(),
            bundle,
        };
        if let Some(write_ahead) = &write_ahead {
            let intended = serde_json::to_value(plan.verdict())
                .ok()
                .and_then(|verdict| verdict.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", plan.verdict()));
            write_ahead
                .record(
                    generation_before,
                    meta.generation,
                    Some(hash.clone()),
                    &intended,
                )
                .await
                .map_err(|error| {
                    let mut error = self.audit_error(error);
                    error.plan_hash = Some(hash.clone());
                    error
                })?;
        }
        let store = self.store.clone();
        let persist_started = Instant::now();
        let needed: Vec<u64> = rollback_of.into_iter().collect();
        tokio::task::spawn_blocking(move || {
            store
                .commit(&stored)
                .map_err(|error| store.with_prunable(error, &needed))
        })
        .await
        .map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), Value::Null))?
        .map_err(|error| {
            let mut error = self.state_write_error(error, "the generation");
            error.plan_hash = Some(hash.clone());
            error
        })?;
        let routes = Arc::new(routes);
        let previous = std::mem::replace(
            &mut self.running,
            Running {
                topology: Arc::new(topology),
                meta: meta.clone(),
                routes: routes.clone(),
            },
        );
        // Freeing a large topology takes time too: not on the engine task.
        tokio::task::spawn_blocking(move || drop(previous));
        let persist_ms = persist_started.elapsed().as_millis() as u64;
        drop(routes);
        self.update_health_specs();
        self.republish().await;
        // Give the compile's freed pages back once the peers have sent the change: a trim
        // holds the allocator's locks, which the peer tasks need right after a publish.
        tokio::spawn(async {
            tokio::time::sleep(TRIM_AFTER_PUBLISH).await;
            let _ = tokio::task::spawn_blocking(crate::memory::release_free_memory).await;
        });
        self.metrics.set_generation(meta.generation, &meta.hash);
        self.metrics
            .observe_apply(started.elapsed().as_secs_f64(), unix_now());
        info!(
            generation = meta.generation,
            hash = %meta.hash,
            who = %meta.who,
            apply_ms = started.elapsed().as_millis() as u64,
            persist_ms,
            "generation applied"
        );
        Ok(MutationOutcome {
            generation_before,
            generation_after: meta.generation,
            plan_hash: hash,
            detail: json!({
                "verdict": plan.verdict(),
                "summary": plan.summary,
                "text": text,
            }),
        })
    }

    fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|peer| peer.status.borrow().clone())
            .collect()
    }

    /// Folds the peers' snapshots into the metrics and re-evaluates readiness (`[readiness]`:
    /// enough peers hold the running generation; see `readiness.rs`).
    fn refresh_status(&mut self) {
        let started = Instant::now();
        let generation = self.running.meta.generation;
        let mut statuses = Vec::with_capacity(self.peers.len());
        for (name, handle) in &self.peers {
            let mut status = handle.status.borrow().clone();
            if handle.task.is_finished() {
                // A peer task that ended (it should not) holds no session, whatever its last
                // published status said: readiness and metrics must not count it.
                status.established = false;
                status.generation_synced = None;
                status.state = "task ended".into();
            }
            self.metrics
                .set_routes_unencodable(name, status.routes_unencodable);
            self.metrics
                .set_session_state(name, session_state_metric(&status.state));
            self.metrics
                .set_routes_desired(name, FAMILY_IPV4_UNICAST, status.routes_desired_ipv4);
            self.metrics
                .set_routes_desired(name, FAMILY_IPV6_UNICAST, status.routes_desired_ipv6);
            let synced = status.generation_synced == Some(generation);
            let announced = |routes: u64| if status.established { routes } else { 0 };
            self.metrics.set_routes_announced(
                name,
                FAMILY_IPV4_UNICAST,
                announced(if synced {
                    status.routes_desired_ipv4
                } else {
                    0
                }),
            );
            self.metrics.set_routes_announced(
                name,
                FAMILY_IPV6_UNICAST,
                announced(if synced {
                    status.routes_desired_ipv6
                } else {
                    0
                }),
            );
            let previous = self.reported.get(name).cloned().unwrap_or_default();
            let sent_announced = status
                .prefixes_announced_sent
                .saturating_sub(previous.prefixes_announced_sent);
            let sent_withdrawn = status
                .prefixes_withdrawn_sent
                .saturating_sub(previous.prefixes_withdrawn_sent);
            let sent_updates = status.updates_sent.saturating_sub(previous.updates_sent);
            if sent_updates > 0 || sent_announced > 0 || sent_withdrawn > 0 {
                self.metrics.count_updates(
                    name,
                    MetricDirection::Sent,
                    sent_updates,
                    sent_announced,
                    sent_withdrawn,
                );
            }
            let received_updates = status
                .updates_received
                .saturating_sub(previous.updates_received);
            let received_announced = (status.prefixes_received_ipv4
                + status.prefixes_received_ipv6)
                .saturating_sub(previous.prefixes_received_ipv4 + previous.prefixes_received_ipv6);
            let received_withdrawn = status
                .withdrawals_received
                .saturating_sub(previous.withdrawals_received);
            if received_updates > 0 {
                self.metrics.count_updates(
                    name,
                    MetricDirection::Received,
                    received_updates,
                    received_announced,
                    received_withdrawn,
                );
            }
            statuses.push(status.clone());
            self.reported.insert(name.clone(), status);
        }
        let state = crate::readiness::evaluate(&self.config.readiness, generation, &statuses);
        self.metrics.set_readiness(state.ready, state.holding);
        let reason = state.reason.clone();
        if self.readiness.set(state) {
            if self.readiness.is_ready() {
                info!(generation, %reason, "ready");
            } else {
                warn!(generation, %reason, "not ready any more");
            }
        }
        self.metrics
            .observe_reconcile(started.elapsed().as_secs_f64());
    }

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
        let old: BTreeMap<String, PeerConfig> = self
            .config
            .peers
            .iter()
            .map(|peer| (peer.name.clone(), peer.clone()))
            .collect();
        let new: BTreeMap<String, PeerConfig> = config
            .peers
            .iter()
            .map(|peer| (peer.name.clone(), peer.clone()))
            .collect();
        let mut report = Vec::new();
        // (peer, withdraw first): a removed peer, or one that becomes another router (address,
        // ASN), has our routes withdrawn; a session reset for the same router closes without a
        // NOTIFICATION, so the router keeps the routes through graceful restart meanwhile.
        let mut to_stop: Vec<(String, bool)> = Vec::new();
        let mut to_start = Vec::new();
        let mut to_update = Vec::new();
        for (name, old_peer) in &old {
            match new.get(name) {
                None => {
                    to_stop.push((name.clone(), true));
                    report.push(format!("removed {name}"));
                }
                Some(new_peer) if old_peer.session_reset_needed(new_peer) => {
                    let other_router =
                        old_peer.address != new_peer.address || old_peer.asn != new_peer.asn;
                    to_stop.push((name.clone(), other_router));
                    to_start.push(new_peer.clone());
                    report.push(format!("reset {name}"));
                }
                Some(new_peer) if old_peer != new_peer => {
                    to_update.push(new_peer.clone());
                    report.push(format!("updated {name} in place"));
                }
                Some(_) => {}
            }
        }
        for (name, new_peer) in &new {
            if !old.contains_key(name) {
                to_start.push(new_peer.clone());
                report.push(format!("added {name}"));
            }
        }
        // Validate keys of the peers to start before stopping anything.
        for peer in &to_start {
            read_md5_key(peer).map_err(|error| error.to_string())?;
        }
        // A peer that cannot take its withdrawals (a full TCP window) must not hold the engine,
        // and with it every push and the next reload, for longer than the stop grace time.
        let grace = Duration::from_secs(u64::from(self.config.shutdown.grace_seconds));
        for (name, withdraw_first) in &to_stop {
            if let Some(handle) = self.peers.remove(name) {
                let task = handle.task.abort_handle();
                if tokio::time::timeout(grace, stop_peer(handle, *withdraw_first))
                    .await
                    .is_err()
                {
                    warn!(peer = %name, ?grace, "peer did not stop within the grace time; aborting its task");
                    task.abort();
                }
                self.metrics.remove_peer(name);
                self.reported.remove(name);
            }
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
        self.config = config;
        self.compile_budget
            .set_limit(compile_memory_bytes(&self.config.control));
        for peer in &to_start {
            self.start_peer(peer).map_err(|error| error.to_string())?;
        }
        for peer in &to_update {
            let spec = self.peer_spec(peer).map_err(|error| error.to_string())?;
            if let Some(handle) = self.peers.get(&peer.name) {
                let _ = handle
                    .commands
                    .send(PeerCommand::Reconfigure(Box::new(spec)))
                    .await;
            }
        }
        if report.is_empty() {
            report.push("no peer changed".into());
        }
        // `[health] vars` and `min_other_locations` apply now; the fail-static policy, `enabled`
        // and `address_interface` belong to tasks started once, and apply at the next start.
        if health_restart_needed {
            report.push("[health] enabled, fail-static policy or address_interface changed: applies at the next restart".into());
        }
        self.update_health_specs();
        self.republish().await;
        Ok(report.join(", "))
    }

    async fn shutdown(&mut self) {
        let withdraw_first = self.config.shutdown.withdraw_on_stop;
        let grace = Duration::from_secs(u64::from(self.config.shutdown.grace_seconds));
        info!(withdraw_first, ?grace, "draining peers");
        let mut stops = tokio::task::JoinSet::new();
        for handle in std::mem::take(&mut self.peers).into_values() {
            stops.spawn(stop_peer(handle, withdraw_first));
        }
        if tokio::time::timeout(grace, stops.join_all()).await.is_err() {
            warn!("shutdown grace time over; exiting with peers still draining");
        }
    }
}

/// A compiled, planned and guarded push, ready to commit; everything expensive (compile,
/// plan, rendering, hashing, the runtime guard, the bundle copy) is done on the blocking pool.
struct Prepared {
    topology: Topology,
    plan: Plan,
    routes: LocationRoutes,
    intent: Intent,
    plan_json: Value,
    text: String,
    hash: String,
    /// The runtime guard's verdict against the routes the plan was made against.
    runtime_guard: Result<(), Vec<String>>,
    /// The sources as stored.
    bundle: SourceBundle,
}

/// What a compile job compiles.
#[derive(Debug, Clone)]
enum CompileInput {
    /// A pushed bundle and its intent lines.
    Bundle {
        bundle: SourceBundle,
        intent: Vec<String>,
    },
    /// The sources of a kept generation (a rollback).
    Rollback { generation: u64 },
}

/// An apply or rollback waiting for its compile.
struct MutationRequest {
    input: CompileInput,
    expected_generation: Option<u64>,
    who: String,
    write_ahead: Option<WriteAhead>,
    reply: crate::engine_api::Reply<MutationOutcome>,
    /// When the request reached the engine (the apply latency metric starts here).
    started: Instant,
}

/// A finished compile of a mutation, back on the engine task.
struct Compiled {
    /// The running generation it was planned against.
    base_generation: u64,
    result: Result<Prepared, EngineError>,
    request: MutationRequest,
}

/// A compile on the blocking pool, with snapshots of what it needs from the engine.
struct CompileJob {
    input: CompileInput,
    old: Arc<Topology>,
    old_routes: Arc<LocationRoutes>,
    base_generation: u64,
    next_generation: u64,
    location: String,
    config: DaemonConfig,
    store: Arc<StateStore>,
    budget: Arc<CompileBudget>,
}

/// The compile memory budget configured for the control API's compiles.
fn compile_memory_bytes(control: &Option<topologyd_config::daemon::ControlConfig>) -> u64 {
    control.as_ref().map_or(
        topologyd_config::daemon::DEFAULT_COMPILE_MEMORY_BYTES,
        |control| control.compile_memory_bytes,
    )
}

impl CompileJob {
    fn error(&self, kind: EngineErrorKind, message: String, detail: Value) -> EngineError {
        EngineError {
            kind,
            message,
            detail,
            generation: Some(self.base_generation),
            plan_hash: None,
        }
    }

    fn reserve(&self, bundle: &SourceBundle) -> Result<Reservation, EngineError> {
        let bytes: u64 = bundle
            .sources
            .iter()
            .map(|source| (source.name.len() + source.text.len()) as u64)
            .sum();
        self.budget.reserve(bytes).map_err(|error| {
            let kind = match error {
                BudgetError::TooLarge { .. } => EngineErrorKind::TooLarge,
                BudgetError::Busy { .. } => EngineErrorKind::Busy,
            };
            self.error(kind, error.to_string(), Value::Null)
        })
    }

    /// Compile, plan, render and guard; blocking (runs on the blocking pool).
    fn run(self) -> Result<Prepared, EngineError> {
        let started = Instant::now();
        let (bundle, intent_lines, rollback_of) = match &self.input {
            CompileInput::Bundle { bundle, intent } => (bundle.clone(), intent.clone(), None),
            CompileInput::Rollback { generation } => {
                let stored = self.store.load(*generation).map_err(|error| {
                    self.error(
                        EngineErrorKind::NotFound,
                        format!("generation {generation} is not kept: {error}"),
                        Value::Null,
                    )
                })?;
                (stored.bundle, Vec::new(), Some(*generation))
            }
        };
        let _reservation = self.reserve(&bundle)?;
        let mut intent = parse_intent(&intent_lines)?;
        // Compiled against the running topology, so that a finding involving two places (a
        // cidr bound twice) is reported at the one the push added, as `topoctl plan` does. The
        // bundle moves into the topology.
        let new = compile_bundle_against(bundle, self.next_generation, &self.old).map_err(
            |diagnostics| {
                self.error(
                    EngineErrorKind::Invalid,
                    format!(
                        "the topology does not compile: {} error(s)",
                        diagnostics.errors().count()
                    ),
                    json!({ "diagnostics": diagnostics_json(&diagnostics), "text": diagnostics.to_string() }),
                )
            },
        )?;
        let compiled = started.elapsed();
        if rollback_of.is_some() {
            // A rollback deliberately touches every service both generations have: name them
            // all (G2), and allow it past the blast-radius budget (G4). G3 still applies, except
            // to routes the target generation does not bind to an active service at all:
            // undoing an onboarding or an activation withdraws those by design (see
            // `rollback_overrides`).
            let mut lines: Vec<String> = self
                .old
                .services()
                .iter()
                .chain(new.services().iter())
                .map(|service| format!("service:{}", service.name))
                .collect();
            lines.extend(
                rollback_overrides(&self.old, &new)
                    .iter()
                    .map(ToString::to_string),
            );
            lines.push("blast-radius".into());
            lines.sort();
            lines.dedup();
            intent = parse_intent(&lines)?;
        }
        let plan = plan(&self.old, &new, &intent);
        let planned = started.elapsed() - compiled;
        let routes = location_routes(&new, &self.location).map_err(|message| {
            self.error(
                EngineErrorKind::Invalid,
                format!(
                    "this daemon's location `{}` is not in the new topology: {message}",
                    self.location
                ),
                Value::Null,
            )
        })?;
        let (_, health_errors) = expanded_health_specs(&new, &self.config);
        if !health_errors.is_empty() {
            return Err(self.error(
                EngineErrorKind::Invalid,
                format!(
                    "health checks cannot run at location `{}`: {}; define the placeholder in this daemon's [health.vars] or fix the check",
                    self.location,
                    health_errors.join("; ")
                ),
                json!({ "health_errors": health_errors }),
            ));
        }
        let runtime_guard = runtime_guard(&plan, &self.location, &self.old_routes, &routes, &new);
        let prepared = Prepared {
            plan_json: plan_json(&plan),
            text: plan.render_text(),
            hash: plan_hash(&plan),
            bundle: to_bundle(new.sources()),
            runtime_guard,
            topology: new,
            plan,
            routes,
            intent,
        };
        info!(
            generation = self.next_generation,
            compile_ms = compiled.as_millis() as u64,
            plan_ms = planned.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "push compiled and planned (off the engine task)"
        );
        Ok(prepared)
    }
}

async fn stop_peer(handle: PeerHandle, withdraw_first: bool) {
    let (done, finished) = oneshot::channel();
    if handle
        .commands
        .send(PeerCommand::Shutdown {
            withdraw_first,
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
