//! Crash-safe persistence of applied generations in the daemon's state dir.
//!
//! Owns: the files under the state dir — one JSON file per applied generation (its metadata and
//! the names and digests of the sources it was compiled from), the source texts themselves
//! (once per distinct text, in `sources.rs`), the persisted drain state, and the lock file that
//! keeps a second daemon away. Every write is atomic: a temp file in the same dir, write, fsync
//! the file, rename over the target, fsync the directory. A crash at any point leaves either the
//! old file or the new one, never a torn one; a temp file left behind by a crash is removed when
//! the store is opened.
//!
//! Must not touch: compiling or validating the sources (the engine does that before `commit`;
//! a first start stages its texts before the compile and commits the generation naming them
//! after it: `stage_texts`, `commit_staged`; a push stages its texts while it compiles:
//! `stage_pushed_texts`, and a sweep keeps the texts of a staging until a generation
//! names them or the staging is given up), nor any socket or task. All functions here block
//! on the file system; async callers run them through `tokio::task::spawn_blocking`.
//!
//! Layout:
//!
//! ```text
//! <state dir>/lock                                 held (flock) while the store is open
//! <state dir>/generations/00000000000000000042.json  one per kept generation (format 2: its
//!                                                  sources by name, SHA-256 and length)
//! <state dir>/sources/<sha256>                     one per distinct source text a kept
//!                                                  generation names (or a first start or a
//!                                                  push staged for the generation it commits)
//! <state dir>/quarantine/00000000000000000042.json.<unix seconds>[.<n>]  moved-aside corrupt files
//! <state dir>/drain.json                           persisted drain state
//! <state dir>/lease.json                           the fleet lock's lease and fences
//! <state dir>/.tmp-*                               leftovers of a crash, removed on open
//! ```
//!
//! Generations are monotonic: the current generation is the newest one on disk, and a rollback
//! is committed by the engine as a new generation carrying an older generation's sources. The
//! current generation and the `keep_previous` ones before it (last known good) are kept, and
//! the texts they name; a text no kept generation names is removed. A format-1 file (every
//! text inline, as releases before format 2 wrote) is still read; it is never rewritten.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};

/// How many generations before the current one are kept when none is configured.
pub const DEFAULT_KEEP_PREVIOUS: usize = 10;

/// Version of the on-disk generation file format this daemon writes (sources by digest, their
/// texts under `sources/`); a file of a version it does not read is reported as corrupt rather
/// than misread.
pub const FORMAT_VERSION: u32 = 2;

/// Each source's name and the SHA-256 of its text, in bundle order, as the compile computed
/// them: handed to [`StateStore::commit_with_digests`].
pub type SourceDigests = Vec<(String, [u8; 32])>;

/// The format older releases wrote (every text inline in the generation file); still read.
pub const FORMAT_INLINE: u32 = 1;

/// The mode of every file the store writes (owner read and write only).
pub const FILE_MODE: u32 = 0o600;

const GENERATIONS_DIR: &str = "generations";
/// Where unreadable generation files are moved aside.
pub const QUARANTINE_DIR: &str = "quarantine";
const LOCK_FILE: &str = "lock";
const DRAIN_FILE: &str = "drain.json";
const LEASE_FILE: &str = "lease.json";
const TEMP_PREFIX: &str = ".tmp-";

// The named TOML sources of a bundle are the control API's types (one type across crates).
pub use topologyd_api::{SourceBundle, SourceFile};

/// What is recorded about an applied generation besides its sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationMeta {
    /// The generation number; strictly increasing across commits.
    pub generation: u64,
    /// The content hash the engine computed for the compiled topology.
    pub hash: String,
    /// When it was applied, in unix seconds.
    pub applied_at: u64,
    /// Who applied it (the control client's certificate identity, or `local`).
    pub who: String,
    /// The intent lines given with the push.
    pub intent: Vec<String>,
}

/// An applied generation as stored: metadata plus sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredGeneration {
    /// Metadata.
    pub meta: GenerationMeta,
    /// The sources it was compiled from.
    pub bundle: SourceBundle,
}

/// A kept generation as listed: its metadata and its sources' names, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSummary {
    /// Metadata.
    pub meta: GenerationMeta,
    /// The names of the sources it was compiled from.
    pub sources: Vec<String>,
}

/// The persisted drain state (whether this location, or some of its services, are drained; see
/// `overlay.rs` for what it does) is kept in the form `GET /v1/health` shows it.
pub use topologyd_api::view::{DrainState, ServiceDrain};

/// What `load_current` found: the newest intact generation, and every newer file that had to
/// be skipped because it could not be read (each a `Corrupt` or `Io` error naming the file).
#[derive(Debug)]
pub struct Recovered {
    /// The newest generation that loaded, or `None` on first start (or if none loaded).
    pub current: Option<StoredGeneration>,
    /// The newer generation files that were skipped, newest first. Non-empty means the daemon
    /// fell back to an older generation and must say so loudly.
    pub skipped: Vec<StateError>,
    /// Where each skipped file that could be moved aside now is (under `quarantine/`).
    pub quarantined: Vec<PathBuf>,
}

/// A file that could be deleted to make room, as a full-disk error lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prunable {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Why it may go (`quarantined`, `kept generation N`).
    pub what: String,
}

/// A failure of the state store; every variant names the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file-system operation failed.
    #[error("state store: {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading`, `renaming`, …).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("state store: {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Another process holds the state dir.
    #[error("state store: {} is locked by another process (is another topologyd running?)", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The requested generation is not (or no longer) kept.
    #[error("state store: generation {generation} is not kept in {}", dir.display())]
    NotFound {
        /// The requested generation.
        generation: u64,
        /// The generations directory.
        dir: PathBuf,
    },
    /// The file system holding the state dir is full (ENOSPC) or over quota (EDQUOT).
    #[error(
        "state store: no space left on the file system of {} while {what} (nothing was changed); free space, for example by removing {}",
        path.display(),
        describe_prunable(prunable)
    )]
    NoSpace {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Files that could go to make room, largest first (quarantined files, then generations
        /// the current one and a rollback target do not need).
        prunable: Vec<Prunable>,
    },
    /// A source text a generation names is missing or does not match its digest. The
    /// generation file itself is intact (it is not moved aside); a text found corrupt is.
    #[error(
        "state store: source `{name}` of generation {generation} ({}) {reason}; until then the generation cannot be read",
        path.display()
    )]
    Source {
        /// The generation naming the text.
        generation: u64,
        /// The source's name in the bundle.
        name: String,
        /// The file that should hold the text.
        path: PathBuf,
        /// Whether the file exists but holds another text (it is moved to quarantine).
        corrupt: bool,
        /// What is wrong.
        reason: String,
    },
    /// A commit whose generation number does not exceed the newest stored one.
    #[error("state store: cannot commit generation {new}: generation {newest} is already stored")]
    NotNewer {
        /// The generation being committed.
        new: u64,
        /// The newest generation on disk.
        newest: u64,
    },
}

impl StateError {
    /// True for a full file system; the caller reports it as such (HTTP 507, its own exit code).
    pub fn is_no_space(&self) -> bool {
        matches!(self, StateError::NoSpace { .. })
    }
}

/// True when `error` says the file system is full or the quota is exhausted.
pub fn is_storage_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(error.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
}

fn io_error<'path>(
    what: &'static str,
    path: &'path Path,
) -> impl FnOnce(io::Error) -> StateError + 'path {
    move |source| {
        if is_storage_full(&source) {
            StateError::NoSpace {
                what,
                path: path.to_path_buf(),
                prunable: Vec::new(),
            }
        } else {
            StateError::Io {
                what,
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// The generation number a file name under `generations/` or `quarantine/` stands for.
fn generation_of(name: &str) -> Option<u64> {
    let number = name.get(..20)?;
    if !number.bytes().all(|byte| byte.is_ascii_digit()) || !name[20..].starts_with(".json") {
        return None;
    }
    number.parse().ok()
}

/// True for errors that say the file itself is bad (not that the system is short of something
/// for a moment): those files are moved aside.
fn is_quarantinable(error: &StateError) -> bool {
    match error {
        StateError::Corrupt { .. } => true,
        StateError::Io { source, .. } => !matches!(
            source.raw_os_error(),
            Some(code) if code == libc::EMFILE || code == libc::ENFILE || code == libc::ENOMEM || code == libc::EINTR || code == libc::EAGAIN
        ),
        _ => false,
    }
}

/// The state dir, opened and locked.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    generations: PathBuf,
    quarantine: PathBuf,
    texts: SourceTexts,
    keep_previous: usize,
    // Held for the lifetime of the store: the OS releases the lock when it is closed.
    _lock: File,
    temp_counter: AtomicU64,
    /// The highest generation number seen on disk, in `generations/` or `quarantine/`.
    highest: AtomicU64,
    /// Counts files moved to quarantine (the daemon registers it as a metric).
    quarantined: Counter,
    /// Whether texts no kept generation names may be on disk: true from the start, from a
    /// staging (or a commit's writing) until the commit names its texts without pruning, from
    /// a staging given up, from a prune until the sweep after it, from a full-disk error
    /// (whose listed generation files the operator deletes by hand) and from a generation file
    /// moved to quarantine; false once a sweep read every generation and removed what none
    /// names (and no staging held texts). A staging sweeps only when it is true: reading every
    /// kept generation file is not on the way from a push to its routes. A sweep or a commit
    /// sets it false only as of the count of marks it looked at (see `UnnamedTexts`): a mark
    /// made meanwhile keeps it true.
    unnamed_texts: Arc<sources::UnnamedTexts>,
}

impl StateStore {
    /// Opens (creating if needed) the state dir, takes its lock, and removes temp files a crash
    /// left behind. Keeps the current generation and `keep_previous` older ones.
    pub fn open(dir: impl Into<PathBuf>, keep_previous: usize) -> Result<Self, StateError> {
        let dir = dir.into();
        let generations = dir.join(GENERATIONS_DIR);
        fs::create_dir_all(&generations).map_err(io_error("creating", &generations))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("opening", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StateError::Io {
                    what: "locking",
                    path: lock_path,
                    source,
                });
            }
        }
        let quarantine = dir.join(QUARANTINE_DIR);
        let texts = SourceTexts::at(&dir);
        texts.create()?;
        // The new directories' entries are durable before anything is written in them.
        sync_dir(&dir)?;
        let store = StateStore {
            texts,
            dir,
            generations,
            quarantine,
            keep_previous,
            _lock: lock,
            temp_counter: AtomicU64::new(0),
            highest: AtomicU64::new(0),
            quarantined: Counter::default(),
            unnamed_texts: Arc::new(sources::UnnamedTexts::new()),
        };
        store.remove_temp_files(&store.dir)?;
        store.remove_temp_files(&store.generations)?;
        store.remove_temp_files(store.texts.dir())?;
        for (generation, path) in store.generation_files()? {
            // Files written by older versions (or restored by hand) may be world-readable.
            if let Ok(metadata) = fs::metadata(&path)
                && metadata.permissions().mode() & 0o777 != FILE_MODE
            {
                fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))
                    .map_err(io_error("restricting the mode of", &path))?;
            }
            store.highest.fetch_max(generation, Ordering::Relaxed);
        }
        for (generation, _) in store.quarantined_files()? {
            store.highest.fetch_max(generation, Ordering::Relaxed);
        }
        Ok(store)
    }

    /// Counts quarantined files in `counter` (a registered metric) instead of a private one.
    pub fn with_quarantine_counter(mut self, counter: Counter) -> Self {
        counter.inc_by(self.quarantined.get());
        self.quarantined = counter;
        self
    }

    /// How many files this store has moved to quarantine since it was opened.
    pub fn quarantined_count(&self) -> u64 {
        self.quarantined.get()
    }

    /// The number the next commit must use: the highest generation ever seen on disk + 1
    /// (quarantined files included, so a number is never used twice).
    pub fn next_generation(&self) -> u64 {
        self.highest.load(Ordering::Relaxed).saturating_add(1)
    }

    /// The state dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the newest intact generation. A newer file that cannot be read or parsed is
    /// skipped and reported in [`Recovered::skipped`] (the caller logs it and counts it); this
    /// returns `Err` only when the generations directory itself cannot be listed.
    pub fn load_current(&self) -> Result<Recovered, StateError> {
        let mut skipped = Vec::new();
        let mut quarantined = Vec::new();
        for (generation, path) in self.generation_files()?.into_iter().rev() {
            match read_generation(&path, generation, &self.texts) {
                Ok(stored) => {
                    return Ok(Recovered {
                        current: Some(stored),
                        skipped,
                        quarantined,
                    });
                }
                Err(error) => {
                    if let Some(moved) = self.quarantine_after(&path, &error) {
                        quarantined.push(moved);
                    }
                    skipped.push(error);
                }
            }
        }
        Ok(Recovered {
            current: None,
            skipped,
            quarantined,
        })
    }

    /// The metadata of every kept generation that loads, newest first. Unreadable files are
    /// moved to quarantine (and logged). The texts are not read (a format-2 file names them).
    pub fn list(&self) -> Result<Vec<GenerationMeta>, StateError> {
        Ok(self
            .list_protecting(None)?
            .into_iter()
            .map(|summary| summary.meta)
            .collect())
    }

    /// The numbers of the generations [`StateStore::list`] gives, newest first.
    #[cfg(test)]
    pub(super) fn listed_generations(&self) -> Vec<u64> {
        self.list()
            .expect("the generations list")
            .iter()
            .map(|meta| meta.generation)
            .collect()
    }

    /// [`StateStore::list`] with each generation's source names, but generation `protected`
    /// (the running one) is never moved to quarantine, only skipped when unreadable.
    pub fn list_protecting(
        &self,
        protected: Option<u64>,
    ) -> Result<Vec<GenerationSummary>, StateError> {
        let mut listed = Vec::new();
        for (generation, path) in self.generation_files()?.into_iter().rev() {
            match read_header(&path, generation) {
                Ok(header) => listed.push(GenerationSummary {
                    sources: header.source_names(),
                    meta: header.meta,
                }),
                Err(error) => {
                    tracing::warn!(%error, "skipping unreadable generation");
                    if protected != Some(generation) {
                        self.quarantine_after(&path, &error);
                    }
                }
            }
        }
        Ok(listed)
    }

    /// Loads one kept generation. A file that cannot be read is moved to quarantine and the
    /// error says where it went.
    pub fn load(&self, generation: u64) -> Result<StoredGeneration, StateError> {
        let path = self.kept_path(generation)?;
        read_generation(&path, generation, &self.texts).map_err(|error| {
            match (self.quarantine_after(&path, &error), error) {
                // The generation file is intact; the corrupt text went aside.
                (
                    Some(moved),
                    StateError::Source {
                        generation,
                        name,
                        path,
                        corrupt,
                        reason,
                    },
                ) => StateError::Source {
                    generation,
                    name,
                    path,
                    corrupt,
                    reason: format!("{reason} (moved to {})", moved.display()),
                },
                (Some(moved), error) => StateError::Corrupt {
                    path: moved,
                    reason: format!("{error}; moved to quarantine"),
                },
                (None, error) => error,
            }
        })
    }

    /// Reads one kept generation and leaves its file where it is whatever happens: the reads
    /// of the running generation's sources (`/v1/topology`, delta pushes) must never move its
    /// only copy aside; start-up and rollbacks, which [`StateStore::load`], judge the file. A
    /// text that does not match its digest is moved aside, though (it is no good copy of
    /// anything), so that the next push carrying the file stores it again.
    pub fn read(&self, generation: u64) -> Result<StoredGeneration, StateError> {
        self.read_digested(generation).map(|(stored, _)| stored)
    }

    /// [`StateStore::read`], with the SHA-256 of each source text (lower-case hex, in order)
    /// when the generation file names them (format 2: each text was checked against it while
    /// read, so they need not be computed again).
    pub fn read_digested(
        &self,
        generation: u64,
    ) -> Result<(StoredGeneration, Option<Vec<String>>), StateError> {
        let path = self.kept_path(generation)?;
        read_generation_digested(&path, generation, &self.texts).inspect_err(|error| {
            if matches!(error, StateError::Source { corrupt: true, .. }) {
                self.quarantine_after(&path, error);
            }
        })
    }

    /// Moves an unreadable generation file aside (if `error` says the file is bad), logs it and
    /// counts it; returns where it went. Never deletes: a failure to move is logged and the
    /// file stays (the next generation number skips past it anyway).
    /// A text found corrupt ([`StateError::Source`]) is moved aside instead of the generation
    /// file naming it, so that the next push carrying the same text stores it again.
    fn quarantine_after(&self, path: &Path, error: &StateError) -> Option<PathBuf> {
        let moved = match error {
            StateError::Source {
                corrupt: true,
                path: text,
                ..
            } => self
                .texts
                .quarantine_if_corrupt(text, |text| self.quarantine(text))?,
            _ if is_quarantinable(error) => self.quarantine(path),
            _ => return None,
        };
        match moved {
            Ok(moved) => {
                self.quarantined.inc();
                tracing::error!(
                    %error,
                    quarantined = %moved.display(),
                    "moved an unreadable stored generation to quarantine (kept for inspection; never deleted)"
                );
                Some(moved)
            }
            Err(move_error) => {
                tracing::error!(%error, %move_error, "could not move an unreadable stored generation to quarantine");
                None
            }
        }
    }

    fn quarantine(&self, path: &Path) -> Result<PathBuf, StateError> {
        // A generation file moved aside may have named texts the sweep can no longer read.
        self.mark_unnamed_texts();
        fs::create_dir_all(&self.quarantine).map_err(io_error("creating", &self.quarantine))?;
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let mut target = self.quarantine.join(format!("{name}.{stamp}"));
        let mut attempt = 1;
        while target.exists() {
            target = self.quarantine.join(format!("{name}.{stamp}.{attempt}"));
            attempt += 1;
        }
        fs::rename(path, &target).map_err(io_error("moving to quarantine", path))?;
        sync_dir(&self.quarantine)?;
        sync_dir(path.parent().unwrap_or(&self.generations))?;
        Ok(target)
    }

    /// The files under `quarantine/` that name a generation, oldest first.
    fn quarantined_files(&self) -> Result<Vec<(u64, PathBuf)>, StateError> {
        let entries = match fs::read_dir(&self.quarantine) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io_error("listing", &self.quarantine)(source)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.quarantine))?;
            if let Some(generation) = entry.file_name().to_str().and_then(generation_of) {
                files.push((generation, entry.path()));
            }
        }
        files.sort_unstable();
        Ok(files)
    }

    /// Durably records `new` as the current generation, then prunes all but the newest
    /// `keep_previous + 1`. When this returns `Ok`, the generation survives a crash. A full
    /// file system is [`StateError::NoSpace`], listing what could go except the generations in
    /// `needed` and `new`'s predecessor.
    pub fn commit(&self, new: &StoredGeneration) -> Result<(), StateError> {
        self.commit_with_digests(new, None)
    }

    /// [`StateStore::commit`], given the name and SHA-256 of each source text as the compile
    /// computed them (one per file, in order; not used where a name does not pair): a text
    /// already stored is then neither hashed nor written again.
    pub fn commit_with_digests(
        &self,
        new: &StoredGeneration,
        digests: Option<&[(String, [u8; 32])]>,
    ) -> Result<(), StateError> {
        self.commit_naming(&new.meta, None, |store| {
            store
                .texts
                .store(&new.bundle.sources, digests, &[], false, |path, bytes| {
                    store.place(path, bytes)
                })
        })
        .map(|_| ())
    }

    /// Writes `files`' texts durably ahead of the generation that will name them (the
    /// bootstrap's, whose compile then need not hold them: see [`StagedTexts`]). Nothing names
    /// them until [`StateStore::commit_staged`]; the next staging or commit removes them if
    /// that never comes.
    pub fn stage_texts(&self, files: &[SourceFile]) -> Result<StagedTexts, StateError> {
        self.stage_texts_with_digests(files, None)
    }

    /// [`StateStore::stage_texts`], given the name and SHA-256 of each text as the compile
    /// computed them (as [`StateStore::commit_with_digests`] takes them). A push stages its
    /// texts while its intent record is written, then commits them with
    /// [`StateStore::commit_staged`]: the texts and the record are made durable side by side,
    /// and both before the generation file that names the texts.
    pub fn stage_texts_with_digests(
        &self,
        files: &[SourceFile],
        digests: Option<&[(String, [u8; 32])]>,
    ) -> Result<StagedTexts, StateError> {
        self.stage(files, digests, &[], false)
    }

    /// [`StateStore::stage_texts_with_digests`] of a push: its large texts (shared with it, not
    /// copied) are also kept in memory until their files' stamps settle, so that a push right
    /// after reads them without hashing them again (see `sources.rs`; the owner lets them go
    /// with [`StateStore::forget_recent_texts`]). The digests `digests` gives of the texts at
    /// the places `unchecked` were listed, not checked: such a text is compared with the text
    /// stored under that digest, and hashed unless it is the same; the staged texts' digests
    /// are then what checks them.
    pub fn stage_pushed_texts(
        &self,
        files: &[SourceFile],
        digests: Option<&[(String, [u8; 32])]>,
        unchecked: &[usize],
    ) -> Result<StagedTexts, StateError> {
        self.stage(files, digests, unchecked, true)
    }

    /// Lets go of the texts a push stored that have settled since; how many are still kept.
    /// The engine calls it at every tick; reads and stores let them go too.
    pub fn forget_recent_texts(&self) -> usize {
        self.texts.forget_recent(None)
    }

    fn stage(
        &self,
        files: &[SourceFile],
        digests: Option<&[(String, [u8; 32])]>,
        unchecked: &[usize],
        keep_recent: bool,
    ) -> Result<StagedTexts, StateError> {
        let _writing = self.texts.lock();
        // Texts staged before by a start that failed are named by nothing: they go first, so
        // that failed starts cannot fill the disk.
        if self.unnamed_texts.may_be_any() {
            self.sweep_texts(HashSet::new());
        }
        let refs = self
            .texts
            .store(files, digests, unchecked, keep_recent, |path, bytes| {
                self.place(path, bytes)
            })
            .map_err(|error| {
                self.sweep_texts(HashSet::new());
                self.with_prunable(error, &[])
            })?;
        // Whether the texts this staging wrote are the only unnamed ones (then its commit,
        // naming them, leaves none) is asked as they are marked.
        Ok(self.texts.staged(refs, &self.unnamed_texts))
    }

    /// Says that texts no kept generation names may be on disk: the next staging sweeps.
    pub(super) fn mark_unnamed_texts(&self) {
        self.unnamed_texts.mark();
    }

    /// Removes the texts no kept generation names: those a push staged for a generation that
    /// will not be written (its intent record or its commit failed), at once rather than at
    /// the next commit, so that a disk they filled does not stay full for them; and those of
    /// the generation a [`StateStore::commit_staged`] pruned.
    pub fn sweep_unnamed_texts(&self) {
        let _writing = self.texts.lock();
        self.sweep_texts(HashSet::new());
    }

    /// [`StateStore::sweep_unnamed_texts`] when texts no generation names may be on disk (a
    /// staging given up, a prune), else nothing.
    pub fn sweep_unnamed_texts_if_any(&self) {
        let _writing = self.texts.lock();
        if self.unnamed_texts.may_be_any() {
            self.sweep_texts(HashSet::new());
        }
    }

    /// [`StateStore::commit`] of generation `meta` naming the texts `staged` wrote (each still
    /// there with its length, else [`StateError::Source`]). The staging swept the texts just
    /// before when some may have been left, so the commit does not sweep them again, and the texts of a generation it
    /// prunes stay until [`StateStore::sweep_unnamed_texts`], which the caller runs once the
    /// generation is in use, when this returns `true` (a generation was pruned): reading every
    /// kept generation file twice more is not on the way from a push to its routes (at 3 kept
    /// generations, ≈ 3 ms of a toggle).
    pub fn commit_staged(
        &self,
        meta: &GenerationMeta,
        staged: &StagedTexts,
    ) -> Result<bool, StateError> {
        self.commit_naming(meta, Some(staged), |store| {
            store.texts.still_staged(staged, meta.generation)
        })
    }

    /// The commit: `texts` stores (or checks) the texts and gives their references, after a
    /// sweep of unnamed texts when nothing was `staged` (a staging sweeps before it stores).
    /// Whether a generation was pruned.
    fn commit_naming(
        &self,
        meta: &GenerationMeta,
        staged: Option<&StagedTexts>,
        texts: impl FnOnce(&Self) -> Result<Vec<sources::SourceRef>, StateError>,
    ) -> Result<bool, StateError> {
        // No text is moved aside while this commit stores and names texts.
        let _writing = self.texts.lock();
        let files = self.generation_files()?;
        let newest = files
            .last()
            .map_or(0, |(newest, _)| *newest)
            .max(self.highest.load(Ordering::Relaxed));
        if newest >= meta.generation {
            return Err(StateError::NotNewer {
                new: meta.generation,
                newest,
            });
        }
        // A text left by a generation pruned by hand (to make room) goes before anything is
        // written; the staging of staged texts swept just before, if any may have been left.
        if staged.is_none() {
            self.sweep_texts(HashSet::new());
            // The texts this commit writes are named by nothing until its generation file is.
            self.mark_unnamed_texts();
        }
        // The texts are durable before the file naming them.
        let refs = texts(self).map_err(|error| {
            // The texts this commit did write are named by no generation: they go.
            self.sweep_texts(HashSet::new());
            self.with_prunable(error, &[])
        })?;
        let file = GenerationFile {
            format: FORMAT_VERSION,
            meta: meta.clone(),
            bundle: None,
            files: Some(refs),
        };
        let bytes = serde_json::to_vec(&file).map_err(|error| StateError::Corrupt {
            path: self.generation_path(meta.generation),
            reason: format!("cannot serialise: {error}"),
        })?;
        self.write_atomically(&self.generation_path(meta.generation), &bytes)
            .map_err(|error| {
                // The texts this commit wrote are named by no generation: they go.
                self.sweep_texts(HashSet::new());
                self.with_prunable(error, &[])
            })?;
        self.highest.fetch_max(meta.generation, Ordering::Relaxed);
        if let Some(staged) = staged {
            staged.named();
        }
        // The generation is durable now: a failed prune only leaves old files behind, and
        // must not report the commit as failed (a restart would run it).
        let pruned = match self.prune() {
            Ok(pruned) => pruned > 0,
            Err(error) => {
                tracing::warn!(%error, "old generations could not be pruned; they stay on disk");
                // Some may have gone before the error: their texts are swept as theirs.
                true
            }
        };
        // A staged commit's caller sweeps once the generation is in use (`commit_staged`); its
        // texts are named now, and were the only unnamed ones unless it pruned.
        if staged.is_none() {
            self.sweep_texts(HashSet::new());
        } else if let Some(staged) = staged
            && staged.clean_before()
            && !pruned
        {
            // Its texts were the only unnamed ones: none are left, unless a mark (another
            // staging, a staging given up, a prune, a quarantine) came after its own.
            self.unnamed_texts.clear_as_of(staged.marks());
        }
        Ok(pruned)
    }

    /// Removes the texts no kept generation names, except those in `referenced`. Nothing is
    /// removed when a generation file cannot be read (the texts it names are unknown); a
    /// failure only leaves texts behind.
    fn sweep_texts(&self, mut referenced: HashSet<String>) {
        // What the sweep finds is as of now: a mark while it runs (a prune, a staging given
        // up) keeps the flag up.
        let seen = self.unnamed_texts.marks();
        let Ok(files) = self.generation_files() else {
            return;
        };
        for (generation, path) in files {
            // A format-1 file names no text: not parsed (it weighs a whole bundle).
            if generation_file::is_inline(&path) {
                continue;
            }
            match read_header(&path, generation) {
                Ok(header) => referenced.extend(header.digests().map(str::to_owned)),
                Err(_) => return,
            }
        }
        // A generation file moved aside (a transient read error, an older release's
        // downgrade) keeps its texts: it may be moved back by hand.
        for (generation, path) in self.quarantined_files().unwrap_or_default() {
            if let Ok(header) = read_header(&path, generation) {
                referenced.extend(header.digests().map(str::to_owned));
            }
        }
        // Texts a staging holds stay unnamed after the sweep: the flag stays up for them.
        match self.texts.sweep(&referenced) {
            Ok((removed, held)) => {
                if !held {
                    self.unnamed_texts.clear_as_of(seen);
                }
                if removed > 0 {
                    tracing::debug!(removed, "removed source texts no kept generation names");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "unnamed source texts could not be removed; they stay on disk")
            }
        }
    }

    /// Rewrites every kept format-2 generation file as format 1 (its texts inline), which
    /// releases before format 2 read: for a downgrade, with the daemon stopped (the store's
    /// lock keeps a running one away). Each file is checked (texts against their digests)
    /// and replaced atomically; the texts stay until a format-2 daemon prunes them. Returns
    /// the generations rewritten, oldest first.
    pub fn rewrite_inline(&self) -> Result<Vec<u64>, StateError> {
        let mut rewritten = Vec::new();
        for (generation, path) in self.generation_files()? {
            if read_header(&path, generation)?.format == FORMAT_INLINE {
                continue;
            }
            let stored = read_generation(&path, generation, &self.texts)?;
            let file = GenerationFile {
                format: FORMAT_INLINE,
                meta: stored.meta,
                bundle: Some(stored.bundle),
                files: None,
            };
            let bytes = serde_json::to_vec(&file).map_err(|error| StateError::Corrupt {
                path: path.clone(),
                reason: format!("cannot serialise: {error}"),
            })?;
            self.write_atomically(&path, &bytes)
                .map_err(|error| self.with_prunable(error, &[]))?;
            rewritten.push(generation);
        }
        Ok(rewritten)
    }

    /// Loads the persisted drain state; the default (not drained) if none was ever stored.
    pub fn load_drain(&self) -> Result<DrainState, StateError> {
        self.load_json(DRAIN_FILE, "")
    }

    /// Durably stores the drain state.
    pub fn store_drain(&self, drain: &DrainState) -> Result<(), StateError> {
        self.store_json(DRAIN_FILE, drain)
    }

    /// Loads the fleet lock's book (the engine's `LeaseBook`); the default (no lease, no
    /// fences) if none was ever stored. A corrupt file is an error naming it, never a guess.
    pub fn load_lease<T: serde::de::DeserializeOwned + Default>(&self) -> Result<T, StateError> {
        self.load_json(
            LEASE_FILE,
            "; remove the file to start with no lease and no fences",
        )
    }

    /// Durably stores the fleet lock's book (atomic write, fsync'd).
    pub fn store_lease<T: Serialize>(&self, book: &T) -> Result<(), StateError> {
        self.store_json(LEASE_FILE, book)
    }

    /// Loads the JSON state file `file`; the default if it was never stored. A file that does
    /// not parse is [`StateError::Corrupt`], its reason followed by `if_corrupt`.
    fn load_json<T: serde::de::DeserializeOwned + Default>(
        &self,
        file: &str,
        if_corrupt: &str,
    ) -> Result<T, StateError> {
        let path = self.dir.join(file);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| StateError::Corrupt {
                path,
                reason: format!("{error}{if_corrupt}"),
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(T::default()),
            Err(source) => Err(StateError::Io {
                what: "reading",
                path,
                source,
            }),
        }
    }

    /// Durably stores `value` as the JSON state file `file` (atomic write, fsync'd).
    fn store_json<T: Serialize>(&self, file: &str, value: &T) -> Result<(), StateError> {
        let path = self.dir.join(file);
        let bytes = serde_json::to_vec_pretty(value).map_err(|error| StateError::Corrupt {
            path: path.clone(),
            reason: format!("cannot serialise: {error}"),
        })?;
        self.write_atomically(&path, &bytes)
            .map_err(|error| self.with_prunable(error, &[]))
    }

    /// The file of kept generation `generation`, or [`StateError::NotFound`].
    fn kept_path(&self, generation: u64) -> Result<PathBuf, StateError> {
        let path = self.generation_path(generation);
        if path.exists() {
            Ok(path)
        } else {
            Err(StateError::NotFound {
                generation,
                dir: self.generations.clone(),
            })
        }
    }

    fn generation_path(&self, generation: u64) -> PathBuf {
        self.generations.join(format!("{generation:020}.json"))
    }

    /// The generation files on disk, oldest first. Files whose names are not generation files
    /// are ignored.
    fn generation_files(&self) -> Result<Vec<(u64, PathBuf)>, StateError> {
        let entries =
            fs::read_dir(&self.generations).map_err(io_error("listing", &self.generations))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.generations))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 25 {
                continue;
            }
            if let Some(generation) = generation_of(name) {
                files.push((generation, entry.path()));
            }
        }
        files.sort_unstable_by_key(|(generation, _)| *generation);
        if let Some((newest, _)) = files.last() {
            self.highest.fetch_max(*newest, Ordering::Relaxed);
        }
        Ok(files)
    }

    /// Removes the generations past the newest `keep_previous + 1`; how many.
    fn prune(&self) -> Result<usize, StateError> {
        let files = self.generation_files()?;
        let excess = files.len().saturating_sub(self.keep_previous + 1);
        for (_, path) in files.iter().take(excess) {
            fs::remove_file(path).map_err(io_error("removing", path))?;
        }
        if excess > 0 {
            sync_dir(&self.generations)?;
        }
        Ok(excess)
    }

    fn remove_temp_files(&self, dir: &Path) -> Result<(), StateError> {
        let entries = fs::read_dir(dir).map_err(io_error("listing", dir))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", dir))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                tracing::info!(path = %path.display(), "removing temp file left by an interrupted write");
                fs::remove_file(&path).map_err(io_error("removing", &path))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Temp file in the target's dir, write, fsync, rename, fsync the dir.
    fn write_atomically(&self, target: &Path, bytes: &[u8]) -> Result<(), StateError> {
        self.place(target, bytes)?;
        sync_dir(target.parent().unwrap_or(&self.dir))
    }

    /// Temp file in the target's dir, write, fsync, rename; the caller syncs the dir (once
    /// for several files).
    fn place(&self, target: &Path, bytes: &[u8]) -> Result<(), StateError> {
        let dir = target.parent().unwrap_or(&self.dir);
        let file_name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{file_name}-{}-{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&temp)
                .map_err(io_error("creating", &temp))?;
            // The umask may have taken bits away from the mode; set it exactly.
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .map_err(io_error("setting the mode of", &temp))?;
            file.write_all(bytes).map_err(io_error("writing", &temp))?;
            file.sync_all().map_err(io_error("syncing", &temp))?;
            drop(file);
            fs::rename(&temp, target).map_err(io_error("renaming into place", target))
        })();
        if result.is_err() {
            // Best effort: a leftover is also removed on the next open.
            let _ = fs::remove_file(&temp);
        }
        result.map_err(|error| match error {
            // Name the file being written, not its temp file (gone by now).
            StateError::NoSpace { what, prunable, .. } => StateError::NoSpace {
                what,
                path: target.to_path_buf(),
                prunable,
            },
            other => other,
        })
    }
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("syncing directory", dir))
}

mod generation_file;
mod prunable;
mod sources;
use generation_file::{GenerationFile, read_generation, read_generation_digested, read_header};
pub use generation_file::{read_stored_generation, stored_generations};
use prunable::describe_prunable;
use sources::SourceTexts;
pub use sources::StagedTexts;
pub(crate) use sources::{read_again, unhex};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod texts_tests;
