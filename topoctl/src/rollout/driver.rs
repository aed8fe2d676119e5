//! The rollout controller's tokio shell: runs the [`Machine`], carries out its effects over
//! the daemons' control API ([`ControlClient`]) and against Prometheus, writes the journal
//! before acting, polls the control file of the state directory for operator commands, and
//! reports progress (a live view, plain lines or a JSON event stream) and metrics.
//!
//! Owns: carrying out effects (the calls that change a location, their deadlines and settling
//! them are in `driver/calls.rs`; gate evaluation here), the control file protocol, signals,
//! the event loop (which feeds every journaled record to the doubts, `doubt.rs`, and stalls
//! the location of an effect task that panicked).
//!
//! Only the event loop writes the journal; the tasks carrying out effects answer with events.
//! When the loop returns (finished, paused with `--exit-on-pause`, interrupted) it drops the
//! tasks still in flight, so nothing is journaled after the exit: a call left in flight is in
//! doubt in the journal, and the next controller settles it.
//!
//! Must not touch: rollout decisions (`machine.rs`), gate verdict rules (`gates.rs`), the
//! journal format (`journal.rs`), the CLI surface (`commands.rs`, `topoctl`).

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use topologyd_config::Source;
use topologyd_topology::{AnnouncedRoute, Intent, Topology, compile_owned};

use super::doubt::Doubts;
use super::gates::{self, GateVerdict, HealthView};
use super::journal::{Command, Journal, Line, Record, Started};
use super::lease::{LOCAL_TOKEN, LockWatch, is_lease_refusal};
use super::machine::{Effect, Event, Machine, MachinePlan, Output};
use super::progress::{Progress, RolloutMetrics};
use super::{EXIT_ERROR, EXIT_PAUSED, exit_code_of};
use crate::control_client::{ClientError, ControlClient};
use topologyd_api::LeaseClaim;
use topologyd_api::{SourceBundle, StatusView};
use topologyd_config::fleet::{FleetLocation, GateKind};
use topologyd_transport::tls::{TlsFiles, client_config};

/// The control file in the state directory: one JSON command per line.
pub const CONTROL_FILE: &str = "control";
/// How often the control file is read and the machine ticked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long a rollback waits for the routes to be back before it reports them unverified.
pub const ROLLBACK_VERIFY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two route checks while verifying a rollback.
pub const VERIFY_INTERVAL: Duration = Duration::from_millis(250);
/// How much longer than the request timeout a single apply or rollback may stay undecided
/// (the deadline it carries): once that is past by the daemon's clock, a lost answer's "not
/// done" is final and the call can be made again within the location's stall bound.
pub const CALL_WINDOW_MARGIN_MS: u64 = 2_000;
/// Longest pause between two attempts to reach an unreachable daemon.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Everything an effect needs, shared by the tasks that carry them out.
#[derive(Debug)]
pub struct Context {
    pub started: Box<Started>,
    pub clients: BTreeMap<String, ControlClient>,
    pub expected_new: BTreeMap<String, Vec<AnnouncedRoute>>,
    pub expected_old: BTreeMap<String, Vec<AnnouncedRoute>>,
    /// The journaled intent lines, parsed once here.
    pub intent: Intent,
    pub timeout: Duration,
    pub progress: Arc<Progress>,
    /// The fleet lock claim every apply and rollback carries: the rollout id and the fencing
    /// token (local controller: [`LOCAL_TOKEN`]; a leader elected elsewhere sets its own).
    pub lease: LeaseClaim,
    /// Says when the lock is lost (a renewal or a mutation refused by the fleet lock).
    pub lock: Arc<LockWatch>,
    /// Where each location's doubt began and the deadlines of the calls dropped there: fed by
    /// the run loop with every journaled record (rebuilt from the journal on resume).
    pub doubts: std::sync::Mutex<Doubts>,
    /// Whether this controller still leads (the etcd mode): asked before every call that
    /// changes a daemon. `None`: the local mode.
    pub leadership: Option<super::journal::LeadershipCheck>,
}

impl Context {
    /// Ok unless this controller lost its leadership (the etcd mode).
    pub fn still_leading(&self) -> Result<(), String> {
        self.leadership
            .as_ref()
            .map_or(Ok(()), super::journal::LeadershipCheck::check)
    }
}

/// Turns a control-API bundle into topology sources: the files in the order pushed, named as
/// pushed (as the daemon compiles them).
pub fn sources_of(bundle: &SourceBundle) -> Vec<Source> {
    bundle
        .sources
        .iter()
        .map(|file| Source::new(file.name.clone(), file.text.clone()))
        .collect()
}

/// A client for each location (TLS configurations shared between locations with the same files).
/// They keep the large texts they push in `topoctl push`'s cache directory, so that a changed
/// file of the next rollout travels to every location as edits of the text running there.
pub fn clients_for(
    locations: &[FleetLocation],
    timeout: Duration,
) -> Result<BTreeMap<String, ControlClient>, String> {
    let texts = crate::local_bundle::DigestCache::default_directory()
        .and_then(|directory| crate::text_cache::TextCache::open(&directory));
    let mut configs: BTreeMap<(PathBuf, PathBuf, PathBuf), Arc<rustls::ClientConfig>> =
        BTreeMap::new();
    let mut clients = BTreeMap::new();
    for location in locations {
        let key = (
            location.tls.certificate.clone(),
            location.tls.private_key.clone(),
            location.tls.ca.clone(),
        );
        let config = match configs.get(&key) {
            Some(config) => Arc::clone(config),
            None => {
                let config = client_config(&TlsFiles {
                    certificate: key.0.clone(),
                    private_key: key.1.clone(),
                    ca: key.2.clone(),
                })
                .map_err(|error| format!("location {}: {error}", location.name))?;
                configs.insert(key, Arc::clone(&config));
                config
            }
        };
        let client = ControlClient::new(location.control, &location.server_name, config)
            .map_err(|error| format!("location {}: {error}", location.name))?
            .with_timeout(timeout)
            .with_text_cache(texts.clone());
        clients.insert(location.name.clone(), client);
    }
    Ok(clients)
}

/// Each location's desired routes in a topology.
pub fn desired_routes(
    topology: &Topology,
    locations: &[FleetLocation],
) -> Result<BTreeMap<String, Vec<AnnouncedRoute>>, String> {
    locations
        .iter()
        .map(|location| {
            topology
                .desired(&location.name)
                .map(|routes| {
                    (
                        location.name.clone(),
                        routes.iter().map(|route| route.to_announced()).collect(),
                    )
                })
                .map_err(|error| error.to_string())
        })
        .collect()
}

impl Context {
    /// Builds the context of a journaled rollout: compiles both bundles, makes the clients.
    pub fn new(started: Box<Started>, progress: Arc<Progress>) -> Result<Context, String> {
        let timeout = Duration::from_secs(started.timeout_seconds.max(1));
        let old = compile_owned(sources_of(&started.old_bundle), 0).map_err(|diagnostics| {
            format!("the running topology does not compile:\n{diagnostics}")
        })?;
        let new = compile_owned(sources_of(&started.new_bundle), 1)
            .map_err(|diagnostics| format!("the new topology does not compile:\n{diagnostics}"))?;
        let expected_new = desired_routes(&new, &started.locations)?;
        let expected_old = desired_routes(&old, &started.locations).unwrap_or_default();
        let clients = clients_for(&started.locations, timeout)?;
        let intent = Intent::from_lines(&started.intent)
            .map_err(|error| format!("the journaled intent does not parse: {error}"))?;
        let lease = LeaseClaim {
            holder: started.rollout.clone(),
            token: LOCAL_TOKEN,
        };
        Ok(Context {
            lease,
            doubts: std::sync::Mutex::new(Doubts::with_call_window(
                &started.waves,
                timeout
                    .as_millis()
                    .try_into()
                    .unwrap_or(u64::MAX)
                    .saturating_add(CALL_WINDOW_MARGIN_MS),
            )),
            lock: Arc::new(LockWatch::default()),
            leadership: None,
            started,
            clients,
            expected_new,
            expected_old,
            intent,
            timeout,
            progress,
        })
    }

    /// The machine's view of the plan.
    pub fn machine_plan(&self) -> MachinePlan {
        MachinePlan {
            waves: self.started.waves.clone(),
            gates: self.started.gates.clone(),
            before: self
                .started
                .before
                .iter()
                .map(|(location, before)| (location.clone(), before.generation))
                .collect(),
        }
    }

    fn client(&self, location: &str) -> Result<&ControlClient, String> {
        self.clients
            .get(location)
            .ok_or_else(|| format!("location {location} is not in the fleet"))
    }
}

/// Whether an error is worth retrying (the daemon may not have received or answered the call).
fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Status { status, .. } => *status == 503,
        // An answer that is not its view would be the same again.
        ClientError::ServerName { .. } | ClientError::Request { .. } | ClientError::View { .. } => {
            false
        }
        _ => true,
    }
}

/// The message of a daemon's error answer, with its rendered detail when there is one.
fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Status { status, body } => {
            let error = &body.error;
            let mut text = format!("{status} {}: {}", error.kind, error.message);
            if let Some(detail) = error.detail.as_ref().and_then(|detail| detail.text()) {
                let first: Vec<&str> = detail.lines().take(6).collect();
                text.push_str(" — ");
                text.push_str(&first.join(" / "));
            }
            text
        }
        other => crate::error_chain(other),
    }
}

/// `GET /v1/health`; a daemon without the endpoint (404) reports everything announced.
async fn read_health(client: &ControlClient) -> Result<HealthView, String> {
    match client.health().await {
        Ok(view) => HealthView::from_view(&view),
        Err(ClientError::Status { status: 404, .. }) => Ok(HealthView::default()),
        Err(error) => Err(describe(&error)),
    }
}

async fn daemon_gate_at(context: &Context, location: &str) -> GateVerdict {
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => return GateVerdict::inconclusive(reason),
    };
    let status = match client.status().await {
        Ok(status) => status,
        Err(error) => return GateVerdict::inconclusive(describe(&error)),
    };
    let health = match read_health(client).await {
        Ok(health) => health,
        Err(error) => return GateVerdict::inconclusive(error),
    };
    let routes = match client.routes(None).await {
        Ok(routes) => routes,
        Err(error) => return GateVerdict::inconclusive(describe(&error)),
    };
    let refusals_before = context
        .started
        .before
        .get(location)
        .map_or(0, |before| before.runtime_guard_refusals);
    let expected = context
        .expected_new
        .get(location)
        .map_or(&[][..], Vec::as_slice);
    // A daemon of the previous release names the topologies in its canonical form.
    let status = StatusView {
        hash: context.started.in_current_form(&status.hash).to_owned(),
        ..status
    };
    gates::check_daemon(
        &status,
        &routes,
        &health,
        expected,
        &context.started.new_hash,
        refusals_before,
    )
}

async fn probes_gate_at(context: &Context, location: &str, services: &[String]) -> GateVerdict {
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => return GateVerdict::inconclusive(reason),
    };
    match client.health().await {
        Ok(view) => match HealthView::from_view(&view) {
            Ok(health) => gates::check_probes(&health, services),
            Err(error) => GateVerdict::inconclusive(error),
        },
        Err(error) => GateVerdict::inconclusive(describe(&error)),
    }
}

/// `GET /v1/rpki` at one location; an unreachable daemon, an answer missing a field or a
/// daemon without the endpoint is inconclusive, never a pass.
async fn rpki_gate_at(context: &Context, location: &str) -> GateVerdict {
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => return GateVerdict::inconclusive(reason),
    };
    match client.rpki().await {
        Ok(view) => gates::check_rpki(&view),
        Err(ClientError::Status { status: 404, .. }) => GateVerdict::inconclusive(
            "the daemon has no GET /v1/rpki (upgrade it before gating on RPKI)",
        ),
        Err(error) => GateVerdict::inconclusive(describe(&error)),
    }
}

/// `GET /v1/visibility` at one location against the routes the plan announces there, once
/// `GET /v1/status` says the daemon runs the new topology (and which generation number it is).
async fn visibility_gate_at(
    context: &Context,
    location: &str,
    routers: Option<u32>,
) -> GateVerdict {
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => return GateVerdict::inconclusive(reason),
    };
    let expected = context
        .expected_new
        .get(location)
        .map_or(&[][..], Vec::as_slice);
    let status = match client.status().await {
        Ok(status) => status,
        Err(error) => return GateVerdict::inconclusive(describe(&error)),
    };
    let running = gates::RunningGeneration {
        generation: status.generation,
        published_version: status.published_version,
        hash: context.started.in_current_form(&status.hash),
        new_hash: &context.started.new_hash,
    };
    match client.visibility().await {
        Ok(view) => gates::check_visibility(&view, &running, expected, routers),
        Err(ClientError::Status { status: 404, .. }) => GateVerdict::inconclusive(
            "the daemon has no GET /v1/visibility (upgrade it before gating on visibility)",
        ),
        Err(error) => GateVerdict::inconclusive(describe(&error)),
    }
}

/// Evaluates gate `gate` of wave `wave`.
async fn evaluate(context: Arc<Context>, wave: usize, gate: usize) -> GateVerdict {
    let (Some(wave_plan), Some(spec)) = (
        context.started.waves.get(wave),
        context.started.gates.get(gate),
    ) else {
        return GateVerdict::inconclusive("unknown wave or gate");
    };
    let locations = wave_plan.locations.clone();
    match &spec.kind {
        GateKind::Daemon
        | GateKind::Probes { .. }
        | GateKind::Rpki
        | GateKind::Visibility { .. } => {
            let mut tasks = tokio::task::JoinSet::new();
            for location in locations {
                let context = Arc::clone(&context);
                let kind = spec.kind.clone();
                tasks.spawn(async move {
                    let verdict = match &kind {
                        GateKind::Probes { services } => {
                            probes_gate_at(&context, &location, services).await
                        }
                        GateKind::Rpki => rpki_gate_at(&context, &location).await,
                        GateKind::Visibility { routers } => {
                            visibility_gate_at(&context, &location, *routers).await
                        }
                        _ => daemon_gate_at(&context, &location).await,
                    };
                    (location, verdict)
                });
            }
            let mut verdicts = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                match joined {
                    Ok(verdict) => verdicts.push(verdict),
                    Err(error) => verdicts.push((
                        "?".to_string(),
                        GateVerdict::inconclusive(format!("evaluation task failed: {error}")),
                    )),
                }
            }
            verdicts.sort_by(|left, right| left.0.cmp(&right.0));
            gates::combine(verdicts)
        }
        GateKind::Promql {
            prometheus,
            query,
            min,
            max,
        } => {
            let control: Vec<String> = context
                .started
                .locations
                .iter()
                .map(|location| location.name.clone())
                .filter(|name| !locations.contains(name))
                .collect();
            gates::evaluate_promql(
                prometheus,
                query,
                &locations,
                &control,
                *min,
                *max,
                context.timeout,
            )
            .await
        }
    }
}

/// The stream of `kind` signals, or `None` (the error said) when it cannot be handled.
fn handle_signal(
    context: &Context,
    kind: tokio::signal::unix::SignalKind,
    name: &str,
) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .map_err(|error| {
            context
                .progress
                .error(&format!("cannot handle {name}: {error}"));
        })
        .ok()
}

/// Carries out one effect and answers with the event it leads to; a call to a location gives
/// up after its wave's stall bound ([`Event::Stalled`]).
async fn carry_out(context: Arc<Context>, effect: Effect) -> Event {
    match effect {
        Effect::Apply {
            location,
            expected_generation,
        } => apply(&context, &location, expected_generation).await,
        Effect::SettleApply {
            location,
            expected_generation,
        } => settle(&context, Mutation::Apply, &location, expected_generation).await,
        Effect::Rollback {
            location,
            to_generation,
            expected_generation,
        } => rollback(&context, &location, to_generation, expected_generation).await,
        Effect::SettleRollback {
            location,
            expected_generation,
            ..
        } => settle(&context, Mutation::Rollback, &location, expected_generation).await,
        Effect::Evaluate { wave, gate, epoch } => {
            let verdict = evaluate(Arc::clone(&context), wave, gate).await;
            Event::GateEvaluated {
                wave,
                gate,
                epoch,
                result: verdict.result,
                detail: verdict.detail,
            }
        }
    }
}

/// The location an effect acts at (none for a gate evaluation).
fn effect_location(effect: &Effect) -> Option<String> {
    match effect {
        Effect::Apply { location, .. }
        | Effect::SettleApply { location, .. }
        | Effect::Rollback { location, .. }
        | Effect::SettleRollback { location, .. } => Some(location.clone()),
        Effect::Evaluate { .. } => None,
    }
}

/// The event for an effect task at `location` that panicked or could not be joined: what
/// happened there is unknown, so it is in doubt ([`Event::Stalled`]), never silently dropped.
fn task_failed(location: String, error: &tokio::task::JoinError) -> Event {
    Event::Stalled {
        location,
        reason: format!("the task carrying out its call failed ({error}); in doubt"),
    }
}

/// A command line of the control file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlLine {
    pub id: String,
    pub command: Command,
}

impl ControlLine {
    /// A line for `command`, with an id unique to this process and moment.
    pub fn new(command: Command) -> ControlLine {
        let id = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_nanos())
        );
        ControlLine { id, command }
    }

    /// Waits until the journal, read with `journal_lines` (`None`: not readable now), holds
    /// this command; whether it did within [`super::commands::ACKNOWLEDGE_TIMEOUT`].
    pub fn acknowledged(&self, mut journal_lines: impl FnMut() -> Option<Vec<Line>>) -> bool {
        let deadline = Instant::now() + super::commands::ACKNOWLEDGE_TIMEOUT;
        while Instant::now() < deadline {
            if journal_lines().is_some_and(|lines| {
                lines.iter().any(
                    |line| matches!(&line.record, Record::Command { id, .. } if *id == self.id),
                )
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Reads the control file from `offset`; answers the complete lines and the new offset.
pub fn read_control(path: &Path, offset: u64) -> (Vec<ControlLine>, u64) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return (Vec::new(), offset);
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return (Vec::new(), offset);
    }
    let mut text = String::new();
    if file.read_to_string(&mut text).is_err() {
        return (Vec::new(), offset);
    }
    let Some(end) = text.rfind('\n') else {
        return (Vec::new(), offset);
    };
    let commands = text[..end]
        .lines()
        .filter_map(|line| serde_json::from_str::<ControlLine>(line).ok())
        .collect();
    (commands, offset + end as u64 + 1)
}

/// Options of a controller run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub state_dir: PathBuf,
    pub exit_on_pause: bool,
}

/// Runs the machine until the rollout finishes (or pauses with `exit_on_pause`, or a signal
/// stops it). Answers the exit code.
pub async fn run(
    context: Arc<Context>,
    mut machine: Machine,
    mut journal: Journal,
    initial: Vec<Output>,
    metrics: Option<RolloutMetrics>,
    options: RunOptions,
) -> i32 {
    let clock = Instant::now();
    let now = |clock: Instant| u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (events, mut incoming) = mpsc::channel::<Event>(64);
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    use tokio::signal::unix::SignalKind;
    let (Some(mut interrupt), Some(mut terminate)) = (
        handle_signal(&context, SignalKind::interrupt(), "SIGINT"),
        handle_signal(&context, SignalKind::terminate(), "SIGTERM"),
    ) else {
        return EXIT_ERROR;
    };
    let mut outputs = initial;
    // Every effect in flight; dropped (aborted) when this function returns.
    let mut tasks = tokio::task::JoinSet::new();
    // The location of each effect task in flight: a task that panics stalls its location.
    let mut task_locations = BTreeMap::new();
    loop {
        if let Some(reason) = context.lock.lost_reason() {
            // Nothing decided since is journaled or carried out: a resume starts from here.
            return pause_with(&context, &mut machine, &mut journal, reason, now(clock));
        }
        for output in std::mem::take(&mut outputs) {
            match output {
                Output::Record(record) => match journal.append(&record) {
                    Ok(line) => {
                        if let Ok(mut doubts) = context.doubts.lock() {
                            doubts.observe(&line.record, super::doubt::unix_ms_of(line.time));
                        }
                        context.progress.record(&line, &machine, now(clock));
                        if let Some(metrics) = &metrics {
                            metrics.observe(&line.record, &machine);
                        }
                    }
                    Err(error) => {
                        context.progress.error(&format!(
                            "{error}; stopping (nothing further is done without the journal)"
                        ));
                        return EXIT_ERROR;
                    }
                },
                Output::Effect(effect) => {
                    let location = effect_location(&effect);
                    let context = Arc::clone(&context);
                    let events = events.clone();
                    let task = tasks.spawn(async move {
                        let event = carry_out(context, effect).await;
                        let _ = events.send(event).await;
                    });
                    if let Some(location) = location {
                        task_locations.insert(task.id(), location);
                    }
                }
            }
        }
        if let super::machine::Phase::Finished(outcome) = machine.phase() {
            context.progress.finish(&machine, now(clock));
            return exit_code_of(outcome);
        }
        // At once, even with a call in flight (to a daemon that may never answer): the journal
        // holds that location in doubt, and `resume` settles it.
        if options.exit_on_pause && machine.paused().is_some() {
            context.progress.finish(&machine, now(clock));
            return EXIT_PAUSED;
        }
        tokio::select! {
            Some(event) = incoming.recv() => {
                outputs = machine.handle(event, now(clock));
            }
            Some(joined) = tasks.join_next_with_id() => {
                let (id, failure) = match joined {
                    Ok((id, ())) => (id, None),
                    Err(error) => (error.id(), Some(error)),
                };
                let location = task_locations.remove(&id);
                if let (Some(error), Some(location)) = (failure, location) {
                    outputs = machine.handle(task_failed(location, &error), now(clock));
                }
            }
            _ = ticker.tick() => {
                for line in journal.poll_control() {
                    outputs.push(Output::Record(Record::Command { id: line.id, command: line.command }));
                    outputs.extend(machine.handle(Event::Command(line.command), now(clock)));
                }
                outputs.extend(machine.handle(Event::Tick, now(clock)));
                context.progress.tick(&machine, now(clock));
            }
            reason = context.lock.lost() => return pause_with(&context, &mut machine, &mut journal, reason, now(clock)),
            _ = interrupt.recv() => return interrupted(&context, &mut machine, &mut journal, "SIGINT", now(clock)),
            _ = terminate.recv() => return interrupted(&context, &mut machine, &mut journal, "SIGTERM", now(clock)),
        }
    }
}

fn interrupted(
    context: &Context,
    machine: &mut Machine,
    journal: &mut Journal,
    signal: &str,
    now: u64,
) -> i32 {
    let reason = format!("interrupted by {signal}; continue with `topoctl rollout resume`");
    pause_with(context, machine, journal, reason, now)
}

/// Journals a pause for `reason` (if the rollout is active and not paused already) and
/// answers [`EXIT_PAUSED`].
fn pause_with(
    context: &Context,
    machine: &mut Machine,
    journal: &mut Journal,
    reason: String,
    now: u64,
) -> i32 {
    let record = Record::Paused { reason };
    let active = matches!(
        machine.phase(),
        super::machine::Phase::Applying | super::machine::Phase::Baking
    );
    if active && machine.paused().is_none() {
        machine.apply_record(&record, now);
        if let Ok(line) = journal.append(&record) {
            context.progress.record(&line, machine, now);
        }
    }
    context.progress.finish(machine, now);
    EXIT_PAUSED
}

/// A location's delta as `--dry-run --json` shows it.
pub fn delta_json(delta: &topologyd_topology::LocationDelta) -> Value {
    json!({
        "location": delta.location,
        "announce": delta.announce.iter().map(|route| route.prefix.to_string()).collect::<Vec<_>>(),
        "update": delta.update.iter().map(|route| route.prefix.to_string()).collect::<Vec<_>>(),
        "withdraw": delta.withdraw.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

mod calls;

use calls::{Mutation, apply, rollback, settle};
pub use calls::{SETTLE_GRACE, unix_now_ms};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
