//! Preparing a push or a rollback: compile, plan against the running generation, render, hash
//! and run the runtime guard — everything expensive, done off the engine task (the shell runs
//! [`CompileJob::run`] on the blocking pool for applies and rollbacks alike). [`prepare`] is
//! pure; the job adds the state-store read of a rollback's sources, the compile memory
//! reservation, and an apply's staging of its texts while it compiles ([`EarlyStaging`]).
//!
//! Must not touch: the running generation, the peers, the state directory's writes but for
//! that staging (texts no generation names until the commit writes the generation file).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use topologyd_config::daemon::DaemonConfig;
use topologyd_config::health::HealthSpec;
use topologyd_topology::{
    Intent, Plan, RunningText, Topology, Verdict, plan_with_vrps, rollback_intent,
};
use tracing::info;

use super::runtime_guard;
use crate::announce::LocationRoutes;
use crate::bundle::compile_bundle_against_texts;
use crate::compile::{BudgetError, CompileBudget, Reservation};
use crate::engine_api::{EngineError, EngineErrorKind, SourceBundle};
use crate::health::expand;
use crate::state_store::{StagedTexts, StateError, StateStore};
use topologyd_api::{Document, ErrorDetail};

/// The plan's hash: the SHA-256 of its JSON (`serde_json::to_vec`), hashed as it is written
/// (a plan of thousands of route changes is megabytes of JSON), through a buffer so that
/// SHA-256 is handed whole blocks. A plan that does not serialise hashes as no bytes.
fn plan_hash(plan: &Plan) -> String {
    use sha2::{Digest, Sha256};
    let mut writer = std::io::BufWriter::with_capacity(64 * 1024, Sha256::new());
    let digest = match serde_json::to_writer(&mut writer, plan) {
        Ok(()) => writer
            .into_inner()
            .map_or_else(|_| Sha256::digest([]), Digest::finalize),
        Err(_) => Sha256::digest([]),
    };
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The routes `topology` makes `location` announce.
pub fn location_routes(topology: &Topology, location: &str) -> Result<LocationRoutes, String> {
    let (count, desired) = topology
        .desired_routes(location)
        .map_err(|error| error.to_string())?;
    Ok(LocationRoutes::from_desired_routes(
        topology.generation(),
        count,
        desired,
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

/// A compiled, planned and guarded push, ready to commit; everything expensive (compile,
/// plan, rendering, hashing, the runtime guard, the bundle copy) is done on the blocking pool.
pub struct Prepared {
    pub topology: Topology,
    pub plan: Plan,
    pub routes: LocationRoutes,
    pub intent: Intent,
    /// The plan as a JSON document when the guards refused it (the refusal carries it); else
    /// `None`, and whoever needs it makes it from `plan` ([`Prepared::plan_document`]): an
    /// applied push never sends it, and a plan of thousands of binding changes takes tens of
    /// milliseconds to make.
    pub plan_json: Option<Value>,
    pub text: String,
    pub hash: String,
    /// The runtime guard's verdict against the routes the plan was made against.
    pub runtime_guard: Result<(), Vec<String>>,
    /// The sources as stored.
    pub bundle: SourceBundle,
    /// The sources being written into the state directory since the compile started (a
    /// push's, not a plan's or a rollback's); the commit waits for them.
    pub staging: Option<EarlyStaging>,
}

/// A push's texts written into the state directory on a thread of their own while the push
/// compiles (`CompileJob::start_staging`): the commit then only waits for what is left of
/// the write (a changed file of 15 MB is tens of milliseconds of hashing, writing and
/// fsyncing). Until a generation file names them, a sweep keeps them; given up (a push that
/// does not compile, or is refused), they go at the sweep that follows the refusal, or at
/// the next staging.
pub struct EarlyStaging(Staging);

/// Where an [`EarlyStaging`] is.
enum Staging {
    Running(std::thread::JoinHandle<Result<StagedTexts, StateError>>),
    /// Waited for already (its texts' digests checked the push's unchecked ones); `None` when
    /// its thread panicked.
    Done(Option<Result<StagedTexts, StateError>>),
}

impl EarlyStaging {
    /// The staging's outcome, once it is done; `None` when its thread panicked.
    pub fn wait(self) -> Option<Result<StagedTexts, StateError>> {
        match self.0 {
            Staging::Running(thread) => thread.join().ok(),
            Staging::Done(outcome) => outcome,
        }
    }
}

impl std::fmt::Debug for EarlyStaging {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let finished = match &self.0 {
            Staging::Running(thread) => thread.is_finished(),
            Staging::Done(_) => true,
        };
        formatter
            .debug_struct("EarlyStaging")
            .field("finished", &finished)
            .finish()
    }
}

/// The texts of a push whose SHA-256 its pusher listed and nobody checked yet (those a
/// delta's edits made: hashing a 17 MB text at the control API was ≈ 10 ms on the way to the
/// wire). They are checked beside the compile: by the staging, which hashes them anyway to
/// store them, or else by a thread of their own. A push whose text is not the one listed is
/// refused (409 `base_patch`: the pusher sends it whole), and nothing it staged is named.
struct UncheckedTexts {
    /// Each one's place in the bundle, name, listed digest and text (shared with the bundle).
    files: Vec<(usize, String, [u8; 32], topologyd_api::Text)>,
    /// Their digests, hashed on a thread of their own when no staging hashes them.
    hashing: Option<std::thread::JoinHandle<Vec<[u8; 32]>>>,
    /// A place with no digest or no file: nothing to check it against, so the push fails.
    unmatched: Option<usize>,
}

impl UncheckedTexts {
    /// The texts at `places` of `bundle` with their digests in `digests`; a place with no
    /// digest there (or no file) makes the check fail.
    fn of(
        bundle: &mut SourceBundle,
        digests: Option<&[[u8; 32]]>,
        places: &[usize],
    ) -> UncheckedTexts {
        let mut unmatched = None;
        let mut files = Vec::with_capacity(places.len());
        for &place in places {
            let digest = digests.and_then(|digests| digests.get(place));
            match (digest, bundle.sources.get_mut(place)) {
                (Some(digest), Some(file)) => {
                    files.push((place, file.name.clone(), *digest, file.text.share()));
                }
                _ => unmatched = unmatched.or(Some(place)),
            }
        }
        UncheckedTexts {
            files,
            hashing: None,
            unmatched,
        }
    }

    /// The places to hash whatever their listed digests say.
    fn places(&self) -> Vec<usize> {
        self.files.iter().map(|(place, ..)| *place).collect()
    }

    /// Starts hashing them on a thread of their own (when no staging will).
    fn start_hashing(&mut self) {
        if self.files.is_empty() {
            return;
        }
        let texts: Vec<topologyd_api::Text> =
            self.files.iter().map(|(.., text)| text.clone()).collect();
        self.hashing = std::thread::Builder::new()
            .name("check-texts".into())
            .spawn(move || sha256_of(&texts))
            .ok();
    }

    /// The staging back (waited for when it checked these texts), and the refusal when one
    /// text is not the one listed. A staging that failed, or a hashing thread that did not
    /// run, has the texts hashed here.
    fn check(
        self,
        staging: Option<EarlyStaging>,
        base_generation: u64,
    ) -> (Option<EarlyStaging>, Result<(), EngineError>) {
        if let Some(place) = self.unmatched {
            let error = compile_error(
                base_generation,
                EngineErrorKind::Internal,
                format!(
                    "delta push: file {place} was made by edits but has no digest to check it against; push the whole bundle (topoctl push --full-bundle)"
                ),
                None,
            );
            return (staging, Err(error));
        }
        if self.files.is_empty() {
            return (staging, Ok(()));
        }
        let mut actual: Option<Vec<[u8; 32]>> = None;
        let staging = staging.map(|staging| {
            let outcome = staging.wait();
            if let Some(Ok(staged)) = &outcome {
                let stored = staged.digests();
                actual = self
                    .files
                    .iter()
                    .map(|(place, ..)| stored.get(*place).copied())
                    .collect();
            }
            EarlyStaging(Staging::Done(outcome))
        });
        let actual = actual
            .or_else(|| self.hashing.and_then(|thread| thread.join().ok()))
            .unwrap_or_else(|| {
                let texts: Vec<topologyd_api::Text> =
                    self.files.iter().map(|(.., text)| text.clone()).collect();
                sha256_of(&texts)
            });
        let other = self
            .files
            .iter()
            .zip(&actual)
            .find(|((_, _, listed, _), actual)| listed != *actual);
        let Some(((_, name, listed, _), actual)) = other else {
            return (staging, Ok(()));
        };
        let refusal = topologyd_api::delta::DeltaError::Patch {
            name: name.clone(),
            error: topologyd_api::patch::PatchError::OtherText {
                listed: topologyd_api::delta::hex(listed),
                actual: topologyd_api::delta::hex(actual),
            },
        };
        let error = compile_error(
            base_generation,
            EngineErrorKind::BasePatch,
            format!("delta push: {refusal}"),
            None,
        );
        (staging, Err(error))
    }
}

/// The SHA-256 of each of `texts`.
fn sha256_of(texts: &[topologyd_api::Text]) -> Vec<[u8; 32]> {
    let texts: Vec<&str> = texts.iter().map(|text| text.as_str()).collect();
    topologyd_api::delta::sha256_each(&texts)
}

impl Prepared {
    /// The plan as a JSON document.
    pub fn plan_document(&self) -> Document {
        Document(
            self.plan_json
                .clone()
                .unwrap_or_else(|| self.plan.to_value()),
        )
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Prepared")
            .field("generation", &self.topology.generation())
            .field("verdict", &self.plan.verdict())
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

/// What a compile job compiles.
#[derive(Debug, Clone)]
pub(crate) enum CompileInput {
    /// A pushed bundle and its intent. A mutation keeps it until it commits (it may be
    /// compiled again against a newer generation) but lends it to its compile job
    /// ([`CompileInput::lend`]), which hands it back when it does not prepare
    /// ([`CompileJob::run_lent`]); a preparation discarded to plan the mutation again gives it
    /// back through the core (`Effect::KeepSources`). The texts are never copied (a copy of
    /// tens of megabytes was a tenth of a delta push's CPU).
    Bundle {
        /// `None` while lent to a compile job.
        bundle: Option<SourceBundle>,
        /// Each file's SHA-256, when the control API checked or computed them.
        digests: Option<Vec<[u8; 32]>>,
        /// The places of the files whose digest in `digests` was listed by the pusher and not
        /// checked (texts a delta's edits made): the compile job checks them beside the
        /// compile ([`CompileJob::run_lent`]).
        unchecked: Vec<usize>,
        intent: Intent,
    },
    /// The sources of a kept generation (a rollback).
    Rollback { generation: u64 },
}

impl CompileInput {
    /// What a compile job of this input compiles, the bundle moved out of `self` (given
    /// back with [`CompileInput::give_back`]).
    pub(crate) fn lend(&mut self) -> CompileInput {
        match self {
            CompileInput::Bundle {
                bundle,
                digests,
                unchecked,
                intent,
            } => CompileInput::Bundle {
                bundle: bundle.take(),
                digests: digests.clone(),
                unchecked: unchecked.clone(),
                intent: intent.clone(),
            },
            CompileInput::Rollback { generation } => CompileInput::Rollback {
                generation: *generation,
            },
        }
    }

    /// Takes back the bundle a compile job was lent.
    pub(crate) fn give_back(&mut self, returned: SourceBundle) {
        if let CompileInput::Bundle { bundle, .. } = self {
            *bundle = Some(returned);
        }
    }
}

/// A compile on the blocking pool, with snapshots of what it needs from the engine.
pub(crate) struct CompileJob {
    pub input: CompileInput,
    pub old: Arc<Topology>,
    pub old_routes: Arc<LocationRoutes>,
    pub base_generation: u64,
    pub next_generation: u64,
    pub location: String,
    pub config: DaemonConfig,
    pub store: Arc<StateStore>,
    pub budget: Arc<CompileBudget>,
    pub rpki: PushRpki,
    /// Whether a pushed bundle's texts are written into the state directory while it
    /// compiles (an apply's: a plan's never commit).
    pub stage_early: bool,
}

/// What G5 judges a push against: the daemon's VRP set when a cache served one (in sync or
/// stale), or why it is skipped (`[rpki]` configured, but no data: connecting or expired).
#[derive(Debug, Clone, Default)]
pub struct PushRpki {
    pub vrps: Option<Arc<topologyd_rpki::VrpSet>>,
    pub skipped: Option<String>,
}

/// The compile memory budget configured for the control API's compiles.
pub(crate) fn compile_memory_bytes(
    control: &Option<topologyd_config::daemon::ControlConfig>,
) -> u64 {
    control.as_ref().map_or(
        topologyd_config::daemon::DEFAULT_COMPILE_MEMORY_BYTES,
        |control| control.compile_memory_bytes,
    )
}

impl CompileJob {
    /// Starts writing `bundle`'s texts into the state directory on a thread of their own
    /// ([`EarlyStaging`]); its texts become shared (not copied) with that thread. `None` when
    /// no thread can be made: the commit stages them then.
    fn start_staging(
        &self,
        bundle: &mut SourceBundle,
        digests: Option<&[[u8; 32]]>,
        unchecked: Vec<usize>,
    ) -> Option<EarlyStaging> {
        let files: Vec<topologyd_api::SourceFile> = bundle
            .sources
            .iter_mut()
            .map(|file| topologyd_api::SourceFile {
                name: file.name.clone(),
                text: file.text.share(),
            })
            .collect();
        let named: Option<crate::state_store::SourceDigests> = digests
            .filter(|digests| digests.len() == files.len())
            .map(|digests| {
                files
                    .iter()
                    .zip(digests)
                    .map(|(file, digest)| (file.name.clone(), *digest))
                    .collect()
            });
        let store = Arc::clone(&self.store);
        std::thread::Builder::new()
            .name("stage-texts".into())
            .spawn(move || store.stage_pushed_texts(&files, named.as_deref(), &unchecked))
            .ok()
            .map(|thread| EarlyStaging(Staging::Running(thread)))
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
            compile_error(self.base_generation, kind, error.to_string(), None)
        })
    }

    /// Loads a rollback's sources, reserves the compile memory, then [`prepare`]s; blocking
    /// (runs on the blocking pool).
    pub fn run(self) -> Result<Prepared, EngineError> {
        self.run_lent().0
    }

    /// [`CompileJob::run`], handing back the pushed bundle when the job did not prepare (a
    /// prepared push carries it in [`Prepared::bundle`]).
    pub fn run_lent(mut self) -> (Result<Prepared, EngineError>, Option<SourceBundle>) {
        let input = std::mem::replace(&mut self.input, CompileInput::Rollback { generation: 0 });
        let pushed = matches!(input, CompileInput::Bundle { .. });
        let (mut bundle, digests, unchecked, intent, rollback_of) = match input {
            CompileInput::Bundle {
                bundle: Some(bundle),
                digests,
                unchecked,
                intent,
            } => (bundle, digests, unchecked, intent, None),
            CompileInput::Bundle { bundle: None, .. } => {
                let error = compile_error(
                    self.base_generation,
                    EngineErrorKind::Internal,
                    "the push's sources are with another compile of it".to_owned(),
                    None,
                );
                return (Err(error), None);
            }
            CompileInput::Rollback { generation } => match self.store.load(generation) {
                Ok(stored) => (
                    stored.bundle,
                    None,
                    Vec::new(),
                    Intent::default(),
                    Some(generation),
                ),
                Err(error) => {
                    let message = match &error {
                        crate::state_store::StateError::NotFound { .. } => {
                            format!("generation {generation} is not kept: {error}")
                        }
                        _ => format!("generation {generation} is kept but cannot be read: {error}"),
                    };
                    let error = compile_error(
                        self.base_generation,
                        EngineErrorKind::NotFound,
                        message,
                        None,
                    );
                    return (Err(error), None);
                }
            },
        };
        // Only a pushed bundle goes back (a rollback's is read from the store again, and is
        // freed here, off the engine task).
        let returned = |bundle: Option<SourceBundle>| bundle.filter(|_| pushed);
        let _reservation = match self.reserve(&bundle) {
            Ok(reservation) => reservation,
            Err(error) => return (Err(error), returned(Some(bundle))),
        };
        // Where a push's compile starts (its request may have waited for the engine, or for
        // another compile's memory): the time from "apply request received" to this line.
        info!(
            generation = self.next_generation,
            base = self.base_generation,
            rollback = rollback_of.is_some(),
            "compile started"
        );
        let mut unchecked = UncheckedTexts::of(&mut bundle, digests.as_deref(), &unchecked);
        let staging = (pushed && self.stage_early)
            .then(|| self.start_staging(&mut bundle, digests.as_deref(), unchecked.places()))
            .flatten();
        if staging.is_none() {
            unchecked.start_hashing();
        }
        let read_back = if pushed {
            self.read_back(&bundle, digests.as_deref())
        } else {
            None
        };
        let context = PrepareContext {
            old: &self.old,
            old_routes: &self.old_routes,
            base_generation: self.base_generation,
            next_generation: self.next_generation,
            location: &self.location,
            config: &self.config,
            rpki: &self.rpki,
        };
        let prepared = prepare_lent(&context, bundle, digests, intent, rollback_of, read_back);
        // A text that is not the one listed makes the push fail whatever its compile said
        // (the compile trusted the listed digest): nothing it staged is named.
        let (staging, checked) = unchecked.check(staging, self.base_generation);
        if let Err(error) = checked {
            drop(staging.and_then(EarlyStaging::wait));
            let bundle = match prepared {
                Ok(mut prepared) => Some(std::mem::take(&mut prepared.bundle)),
                Err((_, bundle)) => bundle,
            };
            return (Err(error), returned(bundle));
        }
        match prepared {
            Ok(mut prepared) => {
                if prepared.plan.verdict() == Verdict::Refused || prepared.runtime_guard.is_err() {
                    // A push its guards refuse gives its texts up before its answer too (one
                    // committed all the same stages them again).
                    drop(staging.and_then(EarlyStaging::wait));
                } else {
                    prepared.staging = staging;
                }
                (Ok(prepared), None)
            }
            Err((error, bundle)) => {
                // Its texts are given up once written, before the answer: the sweep that
                // follows a refusal finds them released.
                drop(staging.and_then(EarlyStaging::wait));
                (Err(error), returned(bundle))
            }
        }
    }
}

/// A pushed file at least this large, changed, at its place under the same name as a running
/// file, has the running generation's texts read back from the state directory, so that its
/// compile may read only its changed tables: below it, parsing the file whole is about as
/// quick as the read and the comparison.
const PARTLY_READ_MIN_BYTES: usize = 256 << 10;

/// The running generation's texts as read back from the state directory, with their SHA-256
/// (as the store checked them: hashed, or known by their unchanged stamp), and how long the
/// read took.
#[derive(Debug)]
struct ReadBack {
    files: Vec<topologyd_api::SourceFile>,
    digests: Vec<[u8; 32]>,
    took: std::time::Duration,
}

impl CompileJob {
    /// The running generation's texts (the large ones mapped) when a pushed file may be read
    /// in part: of [`PARTLY_READ_MIN_BYTES`] or more, changed, at its place under the same
    /// name as a running file of bindings only. `None` when none may, when the push's digests
    /// are not known, or when the store does not give the texts with their digests (the files
    /// are then parsed whole).
    fn read_back(&self, bundle: &SourceBundle, digests: Option<&[[u8; 32]]>) -> Option<ReadBack> {
        let started = Instant::now();
        let running = self.old.source_digests()?;
        let wanted = bundle
            .sources
            .iter()
            .zip(digests?)
            .zip(&running)
            .enumerate()
            .any(|(index, ((file, digest), (name, running_digest)))| {
                file.text.len() >= PARTLY_READ_MIN_BYTES
                    && file.name == *name
                    && digest != running_digest
                    && self.old.holds_bindings_only(index)
            });
        if !wanted {
            return None;
        }
        let (stored, digests) = self.store.read_digested(self.base_generation).ok()?;
        let digests = digests?
            .iter()
            .map(|digest| crate::state_store::unhex(digest))
            .collect::<Option<Vec<[u8; 32]>>>()?;
        (digests.len() == stored.bundle.sources.len()).then(|| ReadBack {
            files: stored.bundle.sources,
            digests,
            took: started.elapsed(),
        })
    }
}

/// What a push is compiled, planned and guarded against.
#[derive(Debug, Clone, Copy)]
pub struct PrepareContext<'a> {
    /// The running topology and the routes it has this location announce.
    pub old: &'a Topology,
    pub old_routes: &'a LocationRoutes,
    pub base_generation: u64,
    /// The number the new generation gets.
    pub next_generation: u64,
    pub location: &'a str,
    pub config: &'a DaemonConfig,
    /// G5's VRPs (`None`: skipped, the plan text says why when `[rpki]` is configured).
    pub rpki: &'a PushRpki,
}

/// An error of a compile planned against `base_generation`.
fn compile_error(
    base_generation: u64,
    kind: EngineErrorKind,
    message: String,
    detail: Option<ErrorDetail>,
) -> EngineError {
    EngineError {
        kind,
        message,
        detail: detail.map(Box::new),
        generation: Some(base_generation),
        plan_hash: None,
    }
}

/// Compiles `bundle` (a push, or the sources of generation `rollback_of`), plans it against the
/// running generation, renders the plan and runs the runtime guard on it. Pure (and slow: call
/// it off the engine task).
pub fn prepare(
    context: &PrepareContext<'_>,
    bundle: SourceBundle,
    digests: Option<Vec<[u8; 32]>>,
    intent: Intent,
    rollback_of: Option<u64>,
) -> Result<Prepared, EngineError> {
    prepare_lent(context, bundle, digests, intent, rollback_of, None).map_err(|(error, _)| error)
}

/// [`prepare`], handing the bundle back with the error when it does not prepare (`None` only
/// if it was lost, which no path does today).
fn prepare_lent(
    context: &PrepareContext<'_>,
    bundle: SourceBundle,
    digests: Option<Vec<[u8; 32]>>,
    mut intent: Intent,
    rollback_of: Option<u64>,
    read_back: Option<ReadBack>,
) -> Result<Prepared, (EngineError, Option<SourceBundle>)> {
    let started = Instant::now();
    // Compiled against the running topology, so that a finding involving two places (a
    // cidr bound twice) is reported at the one the push added, as `topoctl plan` does. The
    // bundle moves into the topology. The texts read back are let go once it is compiled.
    let running_texts: Vec<RunningText<'_>> = read_back
        .iter()
        .flat_map(|read| read.files.iter().zip(&read.digests))
        .map(|(file, sha256)| RunningText {
            name: &file.name,
            text: file.text.as_str(),
            sha256: *sha256,
        })
        .collect();
    let (compiled, reuse) = compile_bundle_against_texts(
        bundle,
        digests,
        context.next_generation,
        context.old,
        &running_texts,
    );
    drop(running_texts);
    let read_back_ms = read_back.map_or(0, |read| read.took.as_millis() as u64);
    let mut new = compiled.map_err(|(diagnostics, bundle)| {
        let error = compile_error(
            context.base_generation,
            EngineErrorKind::Invalid,
            format!(
                "the topology does not compile: {} error(s)",
                diagnostics.errors().count()
            ),
            Some(ErrorDetail::Compile {
                diagnostics: Document::of(&diagnostics),
                text: diagnostics.to_string(),
            }),
        );
        (error, Some(bundle))
    })?;
    let compiled = started.elapsed();
    if rollback_of.is_some() {
        // A rollback names every service, may pass G4, and G3 lets go only the routes the
        // target does not bind to an active service (`rollback_intent`).
        intent = rollback_intent(context.old, &new);
    }
    let ((routes, routed), (plan, planned)) = routes_beside_plan(context, &new, &intent);
    let (routes, uncovered) = match routes {
        Ok(routes) => routes,
        Err(message) => {
            let error = compile_error(
                context.base_generation,
                EngineErrorKind::Invalid,
                format!(
                    "this daemon's location `{}` is not in the new topology: {message}",
                    context.location
                ),
                None,
            );
            return Err((error, Some(sources_of(&mut new))));
        }
    };
    // The plan's hash (its JSON written through SHA-256: for a plan of thousands of binding
    // changes, megabytes and ≈ 10 ms) is made on a thread of its own while this one expands
    // the health checks, runs the runtime guard and renders the plan's text (and its JSON,
    // for a refusal).
    let (rendered, hash, (health_errors, runtime_guard)) = std::thread::scope(|scope| {
        let hash = || plan_hash(&plan);
        let hashing = std::thread::Builder::new().spawn_scoped(scope, hash).ok();
        let (_, health_errors) = expanded_health_specs(&new, context.config);
        let runtime_guard = runtime_guard::verdict(
            runtime_guard::unplanned(&plan, context.location, context.old_routes, &routes),
            uncovered,
        );
        let rendered = render_plan(&plan, context);
        // A hashing thread that could not be made, or panicked, is done again here.
        let hash = hashing
            .and_then(|handle| handle.join().ok())
            .unwrap_or_else(hash);
        (rendered, hash, (health_errors, runtime_guard))
    });
    if !health_errors.is_empty() {
        let error = compile_error(
            context.base_generation,
            EngineErrorKind::Invalid,
            format!(
                "health checks cannot run at location `{}`: {}; define the placeholder in this daemon's [health.vars] or fix the check",
                context.location,
                health_errors.join("; ")
            ),
            Some(ErrorDetail::HealthChecks { health_errors }),
        );
        return Err((error, Some(sources_of(&mut new))));
    }
    let (plan_json, text) = rendered;
    let prepared = Prepared {
        plan_json,
        text,
        hash,
        // Moved out, not copied: the state directory keeps the texts, the running topology
        // does not.
        bundle: sources_of(&mut new),
        staging: None,
        runtime_guard,
        topology: new,
        plan,
        routes,
        intent,
    };
    info!(
        generation = context.next_generation,
        compile_ms = compiled.as_millis() as u64,
        files_reused = reuse.reused_files,
        files_parsed = reuse.parsed_files,
        read_back_ms,
        files_read_in_part = reuse.partly_read_files,
        read_in_part_refused = reuse.partly_read_refused,
        items_patched = reuse.items_patched,
        definitions_reused = reuse.definitions_reused,
        routes_ms = routed.as_millis() as u64,
        plan_ms = planned.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "push compiled and planned (off the engine task)"
    );
    Ok(prepared)
}

/// A location's routes and the runtime guard's findings that need no plan, or why the
/// location has none (it is not in the topology).
type RoutesAndUncovered = Result<(LocationRoutes, Vec<String>), String>;

/// The location's routes with the runtime guard's half that needs no plan, and the plan, each
/// with how long it took. The routes are made on a thread of their own while this one plans
/// (each is milliseconds at a million routes, and neither reads what the other makes); the
/// plan ends waiting for the canonical hash, which its own thread computes meanwhile.
fn routes_beside_plan(
    context: &PrepareContext<'_>,
    new: &Topology,
    intent: &Intent,
) -> ((RoutesAndUncovered, Duration), (Plan, Duration)) {
    std::thread::scope(|scope| {
        let route = || {
            let started = Instant::now();
            let routes = location_routes(new, context.location).map(|routes| {
                let uncovered = runtime_guard::uncovered(&routes, new, Some(context.old));
                (routes, uncovered)
            });
            (routes, started.elapsed())
        };
        let routing = std::thread::Builder::new().spawn_scoped(scope, route).ok();
        let plan_started = Instant::now();
        let plan = plan_with_vrps(context.old, new, intent, context.rpki.vrps.as_deref());
        let planned = plan_started.elapsed();
        // A thread that could not be made, or panicked, is done again here.
        let routes = routing
            .and_then(|handle| handle.join().ok())
            .unwrap_or_else(route);
        (routes, (plan, planned))
    })
}

/// What a prepared push says of its plan: its JSON when the guards refused it, and its text.
fn render_plan(plan: &Plan, context: &PrepareContext<'_>) -> (Option<Value>, String) {
    let json = (plan.verdict() == Verdict::Refused).then(|| plan.to_value());
    let text = match &context.rpki.skipped {
        Some(reason) => format!("{}rpki: G5 skipped: {reason}\n", plan.render_text()),
        None => plan.render_text(),
    };
    (json, text)
}

/// The texts of a compiled topology, moved out of it.
fn sources_of(topology: &mut Topology) -> SourceBundle {
    SourceBundle {
        sources: topology.take_sources(),
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};
    use topologyd_topology::{Intent, Source, compile, plan};

    use super::plan_hash;

    /// A topology of two locations and two services with `prefixes` /24s, each bound to
    /// `first` or the other service by the prefix's parity.
    fn topology(prefixes: usize, first: &str, generation: u64) -> topologyd_topology::Topology {
        let mut text = String::from(
            "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\n\
             state = \"live\"\n\n[[location]]\nname = \"fra01\"\nregion = \"eu\"\nmetro = \"FRA\"\n\
             country = \"DE\"\nstate = \"live\"\n\n[[service]]\nname = \"a\"\ntopology = \"all\"\n\n\
             [[service]]\nname = \"b\"\ntopology = \"location = 'ams01'\"\n",
        );
        for index in 0..prefixes {
            let cidr = format!("10.{}.{}.0/24", index / 256, index % 256);
            let service = if index % 2 == 0 { first } else { "a" };
            text.push_str(&format!(
                "\n[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"us\"\n\
                 advertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n"
            ));
        }
        match compile(vec![Source::new("topology.toml", text)], generation) {
            Ok(topology) => topology,
            Err(diagnostics) => panic!("{diagnostics}"),
        }
    }

    /// The hash written as the JSON is made is the SHA-256 of the JSON whole: for plans of no
    /// change, a few, and enough that the JSON is many times the hash's buffer.
    #[test]
    fn the_plan_hash_is_the_sha256_of_the_plan_json() {
        for prefixes in [0, 3, 2_000] {
            let old = topology(prefixes, "a", 1);
            let new = topology(prefixes, "b", 2);
            let planned = plan(&old, &new, &Intent::default());
            let json = serde_json::to_vec(&planned).expect("a plan serialises");
            if prefixes == 2_000 {
                assert!(json.len() > 4 * 64 * 1024, "{} bytes", json.len());
            }
            let whole: String = Sha256::digest(&json)
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
            assert_eq!(plan_hash(&planned), whole, "{prefixes} prefixes");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod unchecked_tests {
    use super::{EarlyStaging, EngineErrorKind, SourceBundle, Staging, UncheckedTexts};
    use crate::state_store::StateError;
    use topologyd_api::SourceFile;

    fn bundle() -> SourceBundle {
        SourceBundle {
            sources: vec![
                SourceFile::new("fleet.toml", "a = 1\n"),
                SourceFile::new("bindings.toml", "b = 2\n"),
            ],
        }
    }

    fn digests(texts: &[&str]) -> Vec<[u8; 32]> {
        topologyd_api::delta::sha256_each(texts)
    }

    /// The texts listed but not checked are checked whichever way their digests come: by a
    /// thread of their own, hashed in place (no staging, no thread), or hashed in place when
    /// the staging failed (its failure kept for the commit to report). Another text than the
    /// one listed is refused with `BasePatch` naming the file; texts not listed as unchecked
    /// are not looked at; a place that cannot be checked fails the push.
    #[test]
    fn unchecked_texts_are_checked_however_their_digests_come() {
        let right = digests(&["a = 1\n", "b = 2\n"]);
        let wrong = digests(&["a = 1\n", "b = 3\n"]);
        let refused = |outcome: Result<(), crate::engine_api::EngineError>| {
            let error = outcome.unwrap_err();
            assert_eq!(error.kind, EngineErrorKind::BasePatch);
            assert!(error.message.contains("bindings.toml"), "{}", error.message);
        };
        for threaded in [true, false] {
            let check = |listed: &[[u8; 32]], places: &[usize]| {
                let mut bundle = bundle();
                let mut unchecked = UncheckedTexts::of(&mut bundle, Some(listed), places);
                if threaded {
                    unchecked.start_hashing();
                }
                let (staging, outcome) = unchecked.check(None, 7);
                assert!(staging.is_none());
                outcome
            };
            check(&right, &[1]).unwrap();
            refused(check(&wrong, &[1]));
            // Only the listed places are checked.
            check(&wrong, &[0]).unwrap();
        }
        let failed = || {
            EarlyStaging(Staging::Done(Some(Err(StateError::Corrupt {
                path: "texts".into(),
                reason: "test".into(),
            }))))
        };
        for (listed, fine) in [(&right, true), (&wrong, false)] {
            let mut bundle = bundle();
            let unchecked = UncheckedTexts::of(&mut bundle, Some(listed), &[1]);
            let (staging, outcome) = unchecked.check(Some(failed()), 7);
            assert!(matches!(
                staging.and_then(EarlyStaging::wait),
                Some(Err(StateError::Corrupt { .. }))
            ));
            if fine {
                outcome.unwrap();
            } else {
                refused(outcome);
            }
        }
        // A place with no digest, or no file, cannot be checked: the push fails.
        for (listed, place) in [(None, 1), (Some(&right[..]), 5)] {
            let mut bundle = bundle();
            let (_, outcome) = UncheckedTexts::of(&mut bundle, listed, &[place]).check(None, 7);
            assert_eq!(outcome.unwrap_err().kind, EngineErrorKind::Internal);
        }
    }
}
