//! The `topoctl rollout` subcommands: `start` (plan before anything moves, then run),
//! `resume` and `abort` (through a running controller, or by taking over its journal),
//! `pause` and `promote` (through the control file), `status` (`status.rs`).
//!
//! Owns: the preflight (every location's status and hash, the running bundle, local compile,
//! plan and guards, then the checks of `preflight.rs`: the wave plan and every daemon's own plan;
//! `--dry-run`), the state directory's lock and control file protocol as seen by the commands,
//! and exit codes (see [`super`]).
//!
//! Must not touch: rollout decisions (`machine.rs`), effects (`driver.rs`), argument parsing
//! (`topoctl.rs` owns the clap definitions).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use topologyd_config::load_sources;
use topologyd_topology::{Intent, Plan, Topology, Verdict, compile_owned, plan};

use super::driver::{
    self, CONTROL_FILE, Context, ControlLine, RunOptions, clients_for, delta_json, sources_of,
};
use super::journal::{Command, Journal, LocationBefore, Record, Started, read_journal, unix_time};
use super::lease;
use super::machine::{Event, Machine, Output, Phase};
use super::preflight::{self, PreflightReport, Stop, WaveCheck};
use super::progress::{Mode, Progress, RolloutMetrics};
use super::waves::Wave;
use super::{EXIT_COMPLETED, EXIT_ERROR, EXIT_REFUSED, exit_code_of};
use crate::control_client::ControlClient;
use topologyd_api::SourceBundle;
use topologyd_api::StatusView;
use topologyd_config::fleet::{Fleet, FleetError, load_fleet};
use topologyd_transport::admin::{AdminServer, Readiness};

pub use super::status::{report_status, status};

/// The lock file a running controller holds (`flock`) in the state directory.
pub const LOCK_FILE: &str = "lock";
/// How long a control command waits for the controller to journal it.
pub const ACKNOWLEDGE_TIMEOUT: Duration = Duration::from_secs(10);

/// `topoctl rollout start`.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub fleet: PathBuf,
    pub state_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub intents: Vec<String>,
    pub overrides: Vec<String>,
    pub dry_run: bool,
    /// A first wave that selects no location is a warning, not a refusal.
    pub no_canary: bool,
    pub json: bool,
    pub exit_on_pause: bool,
    pub metrics_listen: Option<SocketAddr>,
    /// Keep the journal, the control commands and the leadership in etcd instead of
    /// `state_dir` (the etcd mode).
    pub etcd: Option<super::etcd::EtcdOptions>,
}

/// How a takeover run shows progress and behaves.
#[derive(Debug, Clone)]
pub struct RunFlags {
    pub json: bool,
    pub exit_on_pause: bool,
    pub metrics_listen: Option<SocketAddr>,
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
}

/// Prints an error (and a JSON error event with `--json`) and answers [`EXIT_ERROR`].
pub(crate) fn fail(json: bool, message: &str) -> i32 {
    if json {
        println!(
            "{}",
            json!({"event": "error", "time": unix_time(), "message": message})
        );
    }
    eprintln!("topoctl: {message}");
    EXIT_ERROR
}

/// Tries to take the state directory's lock: `Some(file)` (hold it), `None` if a controller
/// holds it.
fn try_lock(dir: &Path) -> Result<Option<File>, String> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(error)) => Err(format!("{}: {error}", path.display())),
    }
}

/// Whether a controller is running in `dir`.
pub fn controller_running(dir: &Path) -> bool {
    matches!(try_lock(dir), Ok(None))
}

/// `topoctl rollout start`.
pub fn start(options: StartOptions) -> i32 {
    let json = options.json;
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(message) => return fail(json, &message),
    };
    runtime.block_on(start_async(options))
}

fn parse_intent(intents: &[String], overrides: &[String]) -> Result<(Intent, Vec<String>), String> {
    let intent = Intent::from_arguments(intents, overrides).map_err(|error| error.to_string())?;
    Ok((intent, intents.iter().chain(overrides).cloned().collect()))
}

fn bundle_of(files: &[PathBuf]) -> Result<SourceBundle, String> {
    let sources = load_sources(files).map_err(|error| error.to_string())?;
    Ok(SourceBundle::from_files(sources))
}

/// `GET /v1/status` of every location, at most `concurrency` at once: each answer (or why
/// there is none) and how long it took.
async fn statuses(
    clients: &BTreeMap<String, ControlClient>,
    concurrency: usize,
) -> BTreeMap<String, (Result<StatusView, String>, Duration)> {
    preflight::ask_every_location(clients, concurrency, |_, client| async move {
        client.status().await
    })
    .await
    .into_iter()
    .map(|(name, (answer, duration))| {
        (
            name,
            (answer.map_err(|error| crate::error_chain(&error)), duration),
        )
    })
    .collect()
}

/// Why `rollout start` ended before driving the rollout: an error (printed by [`fail`]) or an
/// exit code whose report is already printed (refused, no change, dry run).
#[derive(Debug)]
enum Ended {
    Error(String),
    Exit(i32),
    /// Refused or failed before anything was applied: printed like an error, with its code.
    Stop(Stop),
}

impl From<String> for Ended {
    fn from(message: String) -> Ended {
        Ended::Error(message)
    }
}

async fn start_async(options: StartOptions) -> i32 {
    let json = options.json;
    match start_checked(options).await {
        Ok(code) | Err(Ended::Exit(code)) => code,
        Err(Ended::Error(message)) => fail(json, &message),
        Err(Ended::Stop(stop)) => stop_with(json, &stop),
    }
}

/// Prints why `rollout start` stopped (a `refused` event for [`EXIT_REFUSED`], an `error`
/// event otherwise, with `--json`) and answers its code.
fn stop_with(json: bool, stop: &Stop) -> i32 {
    if json {
        let event = if stop.code == EXIT_REFUSED {
            "refused"
        } else {
            "error"
        };
        println!(
            "{}",
            json!({"event": event, "time": unix_time(), "message": stop.message})
        );
    }
    eprintln!("topoctl: {}", stop.message);
    stop.code
}

/// `rollout start`, phase by phase: load the inputs, check the fleet (statuses), plan and
/// guard, check the waves, ask every daemon for its own plan (pre-flight; stop there with
/// `--dry-run`), open the journal, drive.
async fn start_checked(options: StartOptions) -> Result<i32, Ended> {
    let inputs = load_inputs(&options)?;
    let converged = check_statuses(&inputs.fleet, &inputs.clients, options.json).await?;
    let (old_bundle, old, old_previous_form) =
        running_topology(&inputs.fleet, &inputs.clients, &converged).await?;
    let fleet_plan = guard_plan(&old, &inputs.new, &inputs.intent, options.json)?;
    let WaveCheck { waves, warnings } =
        preflight::check_waves(&inputs.fleet, &inputs.new, options.no_canary)
            .map_err(Ended::Stop)?;
    if !(options.dry_run && options.json) {
        preflight::print_warnings(&warnings, options.json);
    }
    let expected: BTreeMap<String, u64> = converged
        .before
        .iter()
        .map(|(name, before)| (name.clone(), before.generation))
        .collect();
    let everywhere = preflight::plan_everywhere(
        &inputs.clients,
        inputs.fleet.preflight_concurrency,
        &inputs.new_bundle,
        &inputs.intent,
        &expected,
    )
    .await;
    if options.dry_run {
        let report = DryRun {
            fleet: &inputs.fleet,
            old: &old,
            new: &inputs.new,
            plan: &fleet_plan,
            waves: &waves,
            warnings: &warnings,
            before: &converged.before,
            preflight: &everywhere,
        };
        if options.json {
            report.print_json();
        } else {
            report.print_text();
        }
        return Ok(match everywhere.refusal() {
            Some(stop) => {
                eprintln!("topoctl: {}", stop.message);
                stop.code
            }
            None => EXIT_COMPLETED,
        });
    }
    report_preflight(&everywhere, options.json)?;
    let rollout_id = new_rollout_id(&inputs.new.hash_hex());
    // The etcd mode: the leadership first (nothing else happens without it); its fencing token
    // is the claim at the fleet lock.
    let etcd_journal = match &options.etcd {
        Some(etcd) => Some(super::etcd::commands::open_for_start(etcd, options.json)?),
        None => None,
    };
    let mut claim = lease::local_claim(&rollout_id);
    if let Some(token) = etcd_journal.as_ref().and_then(Journal::fencing_token) {
        claim.token = token;
    }
    // The fleet lock, before anything is journaled or applied: refused, nothing happened.
    lease::acquire_fleet(&inputs.clients, &claim, inputs.fleet.lease_seconds).await?;
    let (lock, journal) = match etcd_journal {
        Some(journal) => (None, journal),
        None => match open_state(&options.state_dir) {
            Ok((lock, journal)) => (Some(lock), journal),
            Err(message) => {
                let names: Vec<String> = inputs.clients.keys().cloned().collect();
                lease::release_fleet(&inputs.clients, &names, &claim).await;
                return Err(message.into());
            }
        },
    };
    let started = Box::new(Started {
        rollout: rollout_id,
        old_hash: old.hash_hex(),
        new_hash: inputs.new.hash_hex(),
        old_hash_previous_form: old_previous_form,
        new_hash_previous_form: inputs.new.previous_form_hash_hex(),
        intent: inputs.intent_lines,
        waves,
        gates: inputs.fleet.gates.clone(),
        locations: inputs.fleet.locations.clone(),
        timeout_seconds: inputs.fleet.timeout_seconds,
        lease_seconds: inputs.fleet.lease_seconds,
        before: converged.before,
        old_bundle,
        new_bundle: inputs.new_bundle,
    });
    let code = drive_started(started, journal, &options).await?;
    drop(lock);
    Ok(code)
}

/// A rollout id no other start can have: unix seconds, the new hash's first 8 hex digits and
/// 32 random bits (the fleet lock's holder: two starts of the same change in the same second
/// must not share a lease). The standard library's randomly keyed hasher is the random source
/// (keys from the operating system), so no crate is needed for four bytes.
fn new_rollout_id(new_hash: &str) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos()),
    );
    format!(
        "{}-{}-{:08x}",
        unix_time() as u64,
        new_hash.get(..8).unwrap_or(""),
        hasher.finish() as u32
    )
}

/// What `rollout start` reads before asking the fleet anything.
struct StartInputs {
    fleet: Fleet,
    intent: Intent,
    intent_lines: Vec<String>,
    new_bundle: SourceBundle,
    new: Topology,
    clients: BTreeMap<String, ControlClient>,
}

/// Phase 1: the fleet file, the intent, the new topology (compiled here) and a control client
/// per location.
fn load_inputs(options: &StartOptions) -> Result<StartInputs, String> {
    let fleet: Fleet = match load_fleet(&options.fleet) {
        Ok(fleet) => fleet,
        Err(FleetError::Invalid(diagnostics)) => {
            return Err(format!("invalid fleet file:\n{diagnostics}"));
        }
        Err(error) => return Err(error.to_string()),
    };
    let (intent, intent_lines) = parse_intent(&options.intents, &options.overrides)?;
    let new_bundle = bundle_of(&options.files)?;
    let new = compile_owned(sources_of(&new_bundle), 1)
        .map_err(|diagnostics| format!("the new topology is invalid:\n{diagnostics}"))?;
    let timeout = Duration::from_secs(fleet.timeout_seconds);
    let clients = clients_for(&fleet.locations, timeout)?;
    Ok(StartInputs {
        fleet,
        intent,
        intent_lines,
        new_bundle,
        new,
        clients,
    })
}

/// What the preflight learnt: every location's state before the rollout, and the locations
/// by the hash they report: one topology's, in one canonical form or in two (daemons of this
/// release and of the previous one during an upgrade; the running bundle's compile tells).
struct Preflight {
    before: BTreeMap<String, LocationBefore>,
    by_hash: BTreeMap<String, Vec<String>>,
}

/// The refusal of a fleet whose locations run different topologies.
fn not_converged(by_hash: &BTreeMap<String, Vec<String>>) -> String {
    let groups: Vec<String> = by_hash
        .iter()
        .map(|(hash, locations)| format!("{hash}: {}", locations.join(", ")))
        .collect();
    format!(
        "the fleet is not converged (locations run different topologies); nothing was applied:\n  {}",
        groups.join("\n  ")
    )
}

/// The pre-flight's outcome: its `preflight` event with `--json` (its summary on stderr
/// otherwise), and the refusal when a location did not answer `ok`.
fn report_preflight(report: &PreflightReport, json: bool) -> Result<(), Ended> {
    if json {
        report.print(true);
    }
    match report.refusal() {
        Some(stop) => Err(Ended::Stop(stop)),
        None => {
            if !json {
                report.print(false);
            }
            Ok(())
        }
    }
}

/// Phase 2: every location answers and runs the same topology; nothing is applied otherwise.
/// Locations that do not answer are reported as the `status` stage of the pre-flight.
async fn check_statuses(
    fleet: &Fleet,
    clients: &BTreeMap<String, ControlClient>,
    json: bool,
) -> Result<Preflight, Ended> {
    let started = Instant::now();
    let answers = statuses(clients, fleet.preflight_concurrency).await;
    let mut results = Vec::new();
    let mut by_hash: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut before = BTreeMap::new();
    for location in &fleet.locations {
        let no_answer = Err("no answer".to_string());
        let (answer, duration) = match answers.get(&location.name) {
            Some((answer, duration)) => (answer, *duration),
            None => (&no_answer, Duration::ZERO),
        };
        let result = match answer {
            Ok(status) => {
                by_hash
                    .entry(status.hash.clone())
                    .or_default()
                    .push(location.name.clone());
                before.insert(
                    location.name.clone(),
                    LocationBefore {
                        generation: status.generation,
                        runtime_guard_refusals: status.runtime_guard_refusals,
                    },
                );
                preflight::Answer::Ok
            }
            Err(error) => preflight::Answer::Unreachable(error.clone()),
        };
        results.push(preflight::LocationResult {
            location: location.name.clone(),
            answer: result,
            duration,
        });
    }
    let report = PreflightReport {
        stage: "status",
        results,
        duration: started.elapsed(),
        concurrency: fleet.preflight_concurrency,
    };
    if !report.passed() {
        report_preflight(&report, json)?;
    }
    lease::refuse_if_held(answers.iter().filter_map(|(location, answer)| {
        let lease = answer.0.as_ref().ok()?.lease.as_ref()?;
        Some((location.as_str(), lease))
    }))?;
    // One topology is named by at most two hashes, one per canonical form.
    if by_hash.is_empty() || by_hash.len() > 2 {
        return Err(Ended::Error(not_converged(&by_hash)));
    }
    Ok(Preflight { before, by_hash })
}

/// Phase 2, continued: the running bundle, from the first location, compiled here to the hash
/// the fleet reports; with its hash in the previous releases' canonical form (computed once,
/// for the journal too).
async fn running_topology(
    fleet: &Fleet,
    clients: &BTreeMap<String, ControlClient>,
    preflight: &Preflight,
) -> Result<(SourceBundle, Topology, String), String> {
    let first = fleet
        .locations
        .first()
        .ok_or_else(|| "the fleet has no location".to_string())?;
    let first_client = clients
        .get(&first.name)
        .ok_or_else(|| "the fleet has no location".to_string())?;
    let running = first_client.topology().await.map_err(|error| {
        format!(
            "cannot read the running topology from {} (GET /v1/topology): {error}",
            first.name
        )
    })?;
    let old_bundle: SourceBundle = running.bundle;
    let old = compile_owned(sources_of(&old_bundle), 0).map_err(|diagnostics| {
        if preflight.by_hash.len() > 1 {
            // Two hashes may be one topology in two canonical forms: only its compile tells.
            format!(
                "{}\nand the running topology from {} does not compile here, so whether they are one topology in two canonical forms cannot be told:\n{diagnostics}",
                not_converged(&preflight.by_hash),
                first.name
            )
        } else {
            format!("the running topology does not compile here:\n{diagnostics}")
        }
    })?;
    let names = [old.hash_hex(), old.previous_form_hash_hex()];
    check_fleet_runs(&preflight.by_hash, &names, &first.name)?;
    let [_, previous_form] = names;
    Ok((old_bundle, old, previous_form))
}

/// That every location reports the running topology compiled here, named by `names` (its
/// hash in this release's canonical form, then in the previous one's): locations reporting
/// anything else make the fleet not converged, or, when they all report one other hash, the
/// bundle read from `first` not the one they run.
fn check_fleet_runs(
    by_hash: &BTreeMap<String, Vec<String>>,
    names: &[String; 2],
    first: &str,
) -> Result<(), String> {
    let unnamed = |hash: &String| !names.contains(hash);
    if by_hash.len() > 1 && by_hash.keys().any(unnamed) {
        return Err(not_converged(by_hash));
    }
    match by_hash.keys().find(|hash| unnamed(hash)) {
        Some(reported) => Err(format!(
            "the running topology from {first} compiles to hash {} ({} in the canonical form of the releases before), but the fleet reports {reported}",
            names[0], names[1]
        )),
        None => Ok(()),
    }
}

/// Phase 3: the fleet-wide plan and its guards. A refused plan ends with [`EXIT_REFUSED`], a
/// change to the topology the fleet already runs with [`EXIT_COMPLETED`].
fn guard_plan(old: &Topology, new: &Topology, intent: &Intent, json: bool) -> Result<Plan, Ended> {
    let fleet_plan = plan(old, new, intent);
    if fleet_plan.verdict() == Verdict::Refused {
        if json {
            let plan_value: Value =
                serde_json::from_str(&fleet_plan.to_json()).unwrap_or(Value::Null);
            println!(
                "{}",
                json!({"event": "refused", "time": unix_time(), "plan": plan_value})
            );
        }
        eprint!("{}", fleet_plan.render_text());
        eprintln!("topoctl: the plan guards refused the change; nothing was applied");
        return Err(Ended::Exit(EXIT_REFUSED));
    }
    if old.hash_hex() == new.hash_hex() {
        if json {
            println!(
                "{}",
                json!({"event": "no_change", "time": unix_time(), "hash": new.hash_hex()})
            );
        } else {
            println!(
                "the fleet already runs this topology ({}); nothing to roll out",
                new.hash_hex()
            );
        }
        return Err(Ended::Exit(EXIT_COMPLETED));
    }
    Ok(fleet_plan)
}

/// `rollout start --dry-run`: every wave with its gates, locations and their deltas.
struct DryRun<'a> {
    fleet: &'a Fleet,
    old: &'a Topology,
    new: &'a Topology,
    plan: &'a Plan,
    waves: &'a [Wave],
    warnings: &'a [String],
    before: &'a BTreeMap<String, LocationBefore>,
    preflight: &'a PreflightReport,
}

impl DryRun<'_> {
    fn gate_names(&self, indices: &[usize]) -> Vec<String> {
        indices
            .iter()
            .filter_map(|index| self.fleet.gates.get(*index).map(|gate| gate.name.clone()))
            .collect()
    }

    fn print_json(&self) {
        let waves_json: Vec<Value> = self
            .waves
            .iter()
            .map(|wave| {
                json!({
                    "name": wave.name,
                    "bake_seconds": wave.bake_seconds,
                    "gates": self.gate_names(&wave.gates),
                    "skipped_gates": self.gate_names(&wave.skipped_gates),
                    "locations": wave.locations.iter().map(|location| delta_json(&self.plan.delta(location))).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "old_hash": self.old.hash_hex(),
                "new_hash": self.new.hash_hex(),
                "verdict": self.plan.verdict(),
                "warnings": self.warnings,
                "preflight": self.preflight.to_json(),
                "waves": waves_json,
            }))
            .unwrap_or_default()
        );
    }

    fn print_text(&self) {
        print!("{}", self.plan.render_text());
        println!();
        println!(
            "rollout plan: {} → {}, {} wave(s), {} location(s)",
            self.old.hash_hex(),
            self.new.hash_hex(),
            self.waves.len(),
            self.fleet.locations.len()
        );
        for (index, wave) in self.waves.iter().enumerate() {
            let skipped = self.gate_names(&wave.skipped_gates);
            println!(
                "wave {index} {} — bake {} s, gates: {}{}",
                wave.name,
                wave.bake_seconds,
                if wave.gates.is_empty() {
                    "none".to_string()
                } else {
                    self.gate_names(&wave.gates).join(", ")
                },
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (skipped here: {})", skipped.join(", "))
                }
            );
            for location in &wave.locations {
                self.print_location(location);
            }
        }
        print!("{}", self.preflight.to_text());
    }

    fn print_location(&self, location: &str) {
        let delta = self.plan.delta(location);
        println!(
            "  {location}: {} announce, {} update, {} withdraw (generation {})",
            delta.announce.len(),
            delta.update.len(),
            delta.withdraw.len(),
            self.before
                .get(location)
                .map_or(0, |before| before.generation)
        );
        for route in &delta.announce {
            println!("    + {} ({})", route.prefix, route.service);
        }
        for route in &delta.update {
            println!("    ~ {} ({})", route.prefix, route.service);
        }
        for prefix in &delta.withdraw {
            println!("    - {prefix}");
        }
    }
}

/// Phase 5: the state directory, its lock (held until the rollout ends) and a new journal.
fn open_state(state_dir: &Path) -> Result<(File, Journal), String> {
    std::fs::create_dir_all(state_dir)
        .map_err(|error| format!("cannot create {}: {error}", state_dir.display()))?;
    let lock = try_lock(state_dir)?
        .ok_or_else(|| format!("a controller is already running in {}", state_dir.display()))?;
    let journal = Journal::create(state_dir).map_err(|error| error.to_string())?;
    Ok((lock, journal))
}

/// Phase 6: journal `started`, serve the metrics and drive the machine to its end.
async fn drive_started(
    started: Box<Started>,
    mut journal: Journal,
    options: &StartOptions,
) -> Result<i32, String> {
    let progress = Arc::new(Progress::new(Mode::detect(options.json), &started));
    let mut context = Context::new(started.clone(), Arc::clone(&progress))?;
    if let Some(token) = journal.fencing_token() {
        context.lease.token = token;
    }
    context.leadership = journal.leadership_check();
    let context = Arc::new(context);
    let line = journal
        .append(&Record::Started(started))
        .map_err(|error| error.to_string())?;
    let mut machine = Machine::new(context.machine_plan());
    progress.record(&line, &machine, 0);
    let metrics = serve_metrics(options.metrics_listen).await?;
    let initial = machine.handle(Event::Start, 0);
    let options = RunOptions {
        state_dir: options.state_dir.clone(),
        exit_on_pause: options.exit_on_pause,
    };
    Ok(drive_holding_lease(context, machine, journal, initial, metrics, options).await)
}

/// Drives `machine` from its `initial` outputs ([`driver::run`]) while the fleet lock's lease
/// is kept ([`lease::hold_while_then`], told by the journal whether the rollout finished).
async fn drive_holding_lease(
    context: Arc<Context>,
    machine: Machine,
    journal: Journal,
    initial: Vec<Output>,
    metrics: Option<RolloutMetrics>,
    options: RunOptions,
) -> i32 {
    let finished = journal.finished_flag();
    let run = driver::run(
        Arc::clone(&context),
        machine,
        journal,
        initial,
        metrics,
        options,
    );
    lease::hold_while_then(&context, run, || finished.load(Ordering::SeqCst)).await
}

/// Starts the metrics listener when asked for.
async fn serve_metrics(listen: Option<SocketAddr>) -> Result<Option<RolloutMetrics>, String> {
    let Some(address) = listen else {
        return Ok(None);
    };
    let metrics = RolloutMetrics::new();
    let readiness = Readiness::new();
    readiness.release();
    let server = AdminServer::bind(address, metrics.registry(), readiness)
        .await
        .map_err(|error| error.to_string())?;
    tokio::spawn(async move {
        if let Err(error) = server.run(std::future::pending()).await {
            eprintln!("topoctl: metrics listener stopped: {error}");
        }
    });
    Ok(Some(metrics))
}

/// Replays the journal of `dir` and continues it here (the lock must be free).
fn take_over(dir: &Path, abort: bool, flags: &RunFlags) -> i32 {
    let json = flags.json;
    let lock = match try_lock(dir) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            return fail(
                json,
                &format!("a controller is already running in {}", dir.display()),
            );
        }
        Err(message) => return fail(json, &message),
    };
    let (started, lines) = match read_journal(dir) {
        Ok(read) => read,
        Err(error) => return fail(json, &error.to_string()),
    };
    let code = continue_rollout(
        started,
        &lines,
        || Journal::open(dir).map_err(|error| error.to_string()),
        dir,
        abort,
        flags,
    );
    drop(lock);
    code
}

/// Restores the machine from a journal's lines and drives the rollout to its end here, the
/// journal opened by `open_journal` (once it is clear something is left to do).
pub fn continue_rollout(
    started: Box<Started>,
    lines: &[super::journal::Line],
    open_journal: impl FnOnce() -> Result<Journal, String>,
    state_dir: &Path,
    abort: bool,
    flags: &RunFlags,
) -> i32 {
    let json = flags.json;
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(message) => return fail(json, &message),
    };
    let progress = Arc::new(Progress::new(Mode::detect(json), &started));
    let mut context = match Context::new(started, Arc::clone(&progress)) {
        Ok(context) => context,
        Err(message) => return fail(json, &message),
    };
    if let Ok(mut doubts) = context.doubts.lock() {
        doubts.replay(lines);
    }
    let mut machine = Machine::restore(context.machine_plan(), lines);
    // `abort` after a rollback that ended incomplete retries the locations it left.
    let retry =
        abort && machine.phase() == Phase::Finished(super::journal::Outcome::RollbackIncomplete);
    if let Phase::Finished(outcome) = machine.phase()
        && !retry
    {
        if json {
            println!(
                "{}",
                json!({"event": "finished_already", "time": unix_time(), "rollout": context.started.rollout, "outcome": outcome.as_str()})
            );
        } else {
            println!(
                "rollout {} already finished: {}",
                context.started.rollout,
                outcome.as_str()
            );
        }
        return exit_code_of(outcome);
    }
    let journal = match open_journal() {
        Ok(journal) => journal,
        Err(message) => return fail(json, &message),
    };
    if let Some(token) = journal.fencing_token() {
        context.lease.token = token;
    }
    context.leadership = journal.leadership_check();
    let context = Arc::new(context);
    runtime.block_on(async {
        // Take the fleet lock again, as the same holder, before acting on anything (a new
        // etcd leader with its higher token: the old leader's late calls are refused), skipping
        // locations that do not answer: an abort never waits for them.
        match lease::reacquire_fleet(
            &context.clients,
            &context.lease,
            context.started.lease_seconds,
        )
        .await
        {
            Ok(skipped) => skipped
                .iter()
                .for_each(|warning| context.progress.warn(warning)),
            Err(message) => return fail(json, &message),
        }
        let metrics = match serve_metrics(flags.metrics_listen).await {
            Ok(metrics) => metrics,
            Err(message) => return fail(json, &message),
        };
        let initial = machine.resume(0, abort);
        let options = RunOptions {
            state_dir: state_dir.to_path_buf(),
            exit_on_pause: flags.exit_on_pause,
        };
        drive_holding_lease(context, machine, journal, initial, metrics, options).await
    })
}

/// Appends a command to the control file and waits for the controller to journal it.
fn send_command(dir: &Path, command: Command) -> Result<(), String> {
    let control = ControlLine::new(command);
    let line = serde_json::to_string(&control).map_err(|error| error.to_string())?;
    let path = dir.join(CONTROL_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    file.write_all(format!("{line}\n").as_bytes())
        .and_then(|()| file.sync_data())
        .map_err(|error| format!("{}: {error}", path.display()))?;
    if control.acknowledged(|| read_journal(dir).ok().map(|(_, lines)| lines)) {
        return Ok(());
    }
    Err(format!(
        "the controller in {} did not acknowledge `{}` within {ACKNOWLEDGE_TIMEOUT:?}",
        dir.display(),
        command.as_str()
    ))
}

/// `topoctl rollout pause|promote` (and `resume`/`abort` through a running controller).
pub fn control(dir: &Path, command: Command) -> i32 {
    if !dir.join(super::journal::JOURNAL_FILE).exists() {
        return fail(
            false,
            &format!("{} holds no rollout journal", dir.display()),
        );
    }
    if !controller_running(dir) {
        return fail(
            false,
            &format!(
                "no controller is running in {}; `topoctl rollout resume --state-dir {}` continues the rollout, `abort` rolls it back",
                dir.display(),
                dir.display()
            ),
        );
    }
    match send_command(dir, command) {
        Ok(()) => {
            println!("{}: acknowledged by the controller", command.as_str());
            EXIT_COMPLETED
        }
        Err(message) => fail(false, &message),
    }
}

/// `topoctl rollout resume`: through the running controller, or by taking over the journal.
pub fn resume(dir: &Path, flags: &RunFlags) -> i32 {
    if controller_running(dir) {
        return control(dir, Command::Resume);
    }
    take_over(dir, false, flags)
}

/// `topoctl rollout abort`: through the running controller (answers once it has journaled
/// the command; the controller then rolls back and exits 8), or by taking over the journal and
/// rolling back here.
pub fn abort(dir: &Path, flags: &RunFlags) -> i32 {
    if controller_running(dir) {
        return control(dir, Command::Abort);
    }
    take_over(dir, true, flags)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
