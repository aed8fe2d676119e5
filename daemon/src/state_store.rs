//! Crash-safe persistence of applied generations in the daemon's state dir.
//!
//! Owns: the files under the state dir — one JSON file per applied generation (its metadata and
//! the source bundle it was compiled from), the persisted drain state, and the lock file that
//! keeps a second daemon away. Every write is atomic: a temp file in the same dir, write, fsync
//! the file, rename over the target, fsync the directory. A crash at any point leaves either the
//! old file or the new one, never a torn one; a temp file left behind by a crash is removed when
//! the store is opened.
//!
//! Must not touch: compiling or validating the sources (the engine does that before `commit`),
//! nor any socket or task. All functions here block on the file system; async callers run them
//! through `tokio::task::spawn_blocking`.
//!
//! Layout:
//!
//! ```text
//! <state dir>/lock                                 held (flock) while the store is open
//! <state dir>/generations/00000000000000000042.json  one per kept generation
//! <state dir>/drain.json                           persisted drain state
//! <state dir>/.tmp-*                               leftovers of a crash, removed on open
//! ```
//!
//! Generations are monotonic: the current generation is the newest one on disk, and a rollback
//! is committed by the engine as a new generation carrying an older generation's sources. The
//! current generation and the `keep_previous` ones before it (last known good) are kept.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// How many generations before the current one are kept when none is configured.
pub const DEFAULT_KEEP_PREVIOUS: usize = 10;

/// Version of the on-disk generation file format; a file with another version is reported as
/// corrupt rather than misread.
pub const FORMAT_VERSION: u32 = 1;

const GENERATIONS_DIR: &str = "generations";
const LOCK_FILE: &str = "lock";
const DRAIN_FILE: &str = "drain.json";
const TEMP_PREFIX: &str = ".tmp-";

/// One named TOML source of a pushed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// The name the pushing client gave it (used in `file:line:col` diagnostics).
    pub name: String,
    /// The TOML text.
    pub text: String,
}

/// The sources one generation was compiled from, in the order they were pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceBundle {
    /// The TOML sources.
    pub sources: Vec<SourceFile>,
}

impl SourceBundle {
    /// The bundle a pusher sends for files read from disk: each named by its file name alone
    /// (the daemon's diagnostics then say `services.toml:3:1`, not the pusher's paths).
    pub fn from_files(sources: Vec<topologyd_config::Source>) -> SourceBundle {
        SourceBundle {
            sources: sources
                .into_iter()
                .map(|source| SourceFile {
                    name: Path::new(&source.name)
                        .file_name()
                        .map_or(source.name.clone(), |name| {
                            name.to_string_lossy().into_owned()
                        }),
                    text: source.text,
                })
                .collect(),
        }
    }
}

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

/// The on-disk wrapper of a generation file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerationFile {
    format: u32,
    meta: GenerationMeta,
    bundle: SourceBundle,
}

/// The persisted drain state: whether this location, or some of its services, are drained
/// (withdrawn here by hand). Survives restarts; see `overlay.rs` for what it does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainState {
    /// True while the whole location is drained.
    pub drained: bool,
    /// Who changed the location drain last.
    pub who: String,
    /// Why.
    pub reason: String,
    /// When it was changed, in unix seconds (0 if never).
    pub changed_at: u64,
    /// The location drain withdraws even services no other live location announces.
    #[serde(default)]
    pub force: bool,
    /// Drained services, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceDrain>,
}

/// One drained service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDrain {
    pub who: String,
    pub reason: String,
    pub changed_at: u64,
    /// Withdraw even when no other live location announces the service (past the floor).
    #[serde(default)]
    pub force: bool,
}

/// What `load_current` found: the newest intact generation, and every newer file that had to
/// be skipped because it could not be read (each a `Corrupt` or `Io` error naming the file).
#[derive(Debug)]
pub struct Recovered {
    /// The newest generation that loaded, or `None` on first start (or if none loaded).
    pub current: Option<StoredGeneration>,
    /// The newer generation files that were skipped, newest first. Non-empty means the daemon
    /// fell back to an older generation and must say so loudly.
    pub skipped: Vec<StateError>,
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
    /// A commit whose generation number does not exceed the newest stored one.
    #[error("state store: cannot commit generation {new}: generation {newest} is already stored")]
    NotNewer {
        /// The generation being committed.
        new: u64,
        /// The newest generation on disk.
        newest: u64,
    },
}

fn io_error<'path>(
    what: &'static str,
    path: &'path Path,
) -> impl FnOnce(io::Error) -> StateError + 'path {
    move |source| StateError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The state dir, opened and locked.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    generations: PathBuf,
    keep_previous: usize,
    // Held for the lifetime of the store: the OS releases the lock when it is closed.
    _lock: File,
    temp_counter: AtomicU64,
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
        let store = StateStore {
            dir,
            generations,
            keep_previous,
            _lock: lock,
            temp_counter: AtomicU64::new(0),
        };
        store.remove_temp_files(&store.dir)?;
        store.remove_temp_files(&store.generations)?;
        Ok(store)
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
        for (generation, path) in self.generation_files()?.into_iter().rev() {
            match read_generation(&path, generation) {
                Ok(stored) => {
                    return Ok(Recovered {
                        current: Some(stored),
                        skipped,
                    });
                }
                Err(error) => skipped.push(error),
            }
        }
        Ok(Recovered {
            current: None,
            skipped,
        })
    }

    /// The metadata of every kept generation that loads, newest first. Unreadable files are
    /// left out (and logged).
    pub fn list(&self) -> Result<Vec<GenerationMeta>, StateError> {
        let mut listed = Vec::new();
        for (generation, path) in self.generation_files()?.into_iter().rev() {
            match read_generation(&path, generation) {
                Ok(stored) => listed.push(stored.meta),
                Err(error) => tracing::warn!(%error, "skipping unreadable generation"),
            }
        }
        Ok(listed)
    }

    /// Loads one kept generation.
    pub fn load(&self, generation: u64) -> Result<StoredGeneration, StateError> {
        let path = self.generation_path(generation);
        if !path.exists() {
            return Err(StateError::NotFound {
                generation,
                dir: self.generations.clone(),
            });
        }
        read_generation(&path, generation)
    }

    /// Durably records `new` as the current generation, then prunes all but the newest
    /// `keep_previous + 1`. When this returns `Ok`, the generation survives a crash.
    pub fn commit(&self, new: &StoredGeneration) -> Result<(), StateError> {
        let files = self.generation_files()?;
        if let Some((newest, _)) = files.last()
            && *newest >= new.meta.generation
        {
            return Err(StateError::NotNewer {
                new: new.meta.generation,
                newest: *newest,
            });
        }
        let file = GenerationFile {
            format: FORMAT_VERSION,
            meta: new.meta.clone(),
            bundle: new.bundle.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|error| StateError::Corrupt {
            path: self.generation_path(new.meta.generation),
            reason: format!("cannot serialise: {error}"),
        })?;
        self.write_atomically(&self.generation_path(new.meta.generation), &bytes)?;
        self.prune()
    }

    /// Loads the persisted drain state; the default (not drained) if none was ever stored.
    pub fn load_drain(&self) -> Result<DrainState, StateError> {
        let path = self.dir.join(DRAIN_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| StateError::Corrupt {
                path,
                reason: error.to_string(),
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(DrainState::default()),
            Err(source) => Err(StateError::Io {
                what: "reading",
                path,
                source,
            }),
        }
    }

    /// Durably stores the drain state.
    pub fn store_drain(&self, drain: &DrainState) -> Result<(), StateError> {
        let path = self.dir.join(DRAIN_FILE);
        let bytes = serde_json::to_vec_pretty(drain).map_err(|error| StateError::Corrupt {
            path: path.clone(),
            reason: format!("cannot serialise: {error}"),
        })?;
        self.write_atomically(&path, &bytes)
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
            let Some(number) = name.strip_suffix(".json") else {
                continue;
            };
            if number.len() != 20 || !number.bytes().all(|byte| byte.is_ascii_digit()) {
                continue;
            }
            if let Ok(generation) = number.parse::<u64>() {
                files.push((generation, entry.path()));
            }
        }
        files.sort_unstable_by_key(|(generation, _)| *generation);
        Ok(files)
    }

    fn prune(&self) -> Result<(), StateError> {
        let files = self.generation_files()?;
        let excess = files.len().saturating_sub(self.keep_previous + 1);
        for (_, path) in files.iter().take(excess) {
            fs::remove_file(path).map_err(io_error("removing", path))?;
        }
        if excess > 0 {
            sync_dir(&self.generations)?;
        }
        Ok(())
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
                .open(&temp)
                .map_err(io_error("creating", &temp))?;
            file.write_all(bytes).map_err(io_error("writing", &temp))?;
            file.sync_all().map_err(io_error("syncing", &temp))?;
            drop(file);
            fs::rename(&temp, target).map_err(io_error("renaming into place", target))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            // Best effort: a leftover is also removed on the next open.
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error("syncing directory", dir))
}

fn read_generation(path: &Path, generation: u64) -> Result<StoredGeneration, StateError> {
    let bytes = fs::read(path).map_err(io_error("reading", path))?;
    let file: GenerationFile =
        serde_json::from_slice(&bytes).map_err(|error| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
    if file.format != FORMAT_VERSION {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "format version {} (this topologyd reads {FORMAT_VERSION})",
                file.format
            ),
        });
    }
    if file.meta.generation != generation {
        return Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "file name says generation {generation} but it holds generation {}",
                file.meta.generation
            ),
        });
    }
    Ok(StoredGeneration {
        meta: file.meta,
        bundle: file.bundle,
    })
}

/// The generation files of the state directory `dir`, newest first, found without opening the
/// store (no lock taken, nothing created or moved): for `topologyd --check`, which looks at what
/// start-up would recover. Read one with [`read_stored_generation`].
pub fn stored_generations(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir.join(GENERATIONS_DIR)) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let number = name.to_str()?.strip_suffix(".json")?;
            if number.len() != 20 || !number.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            Some((number.parse().ok()?, entry.path()))
        })
        .collect();
    files.sort_unstable_by_key(|(generation, _)| std::cmp::Reverse(*generation));
    files
}

/// Reads one generation file found by [`stored_generations`] (read-only).
pub fn read_stored_generation(
    path: &Path,
    generation: u64,
) -> Result<StoredGeneration, StateError> {
    read_generation(path, generation)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn generation(number: u64) -> StoredGeneration {
        StoredGeneration {
            meta: GenerationMeta {
                generation: number,
                hash: format!("sha256:{number:064x}"),
                applied_at: 1_700_000_000 + number,
                who: "alice".to_owned(),
                intent: vec![format!("push {number}")],
            },
            bundle: SourceBundle {
                sources: vec![
                    SourceFile {
                        name: "services.toml".to_owned(),
                        text: format!("[service.web]\nport = {number}\n"),
                    },
                    SourceFile {
                        name: "sites/fra.toml".to_owned(),
                        text: "[location.fra]\n".to_owned(),
                    },
                ],
            },
        }
    }

    #[test]
    fn commit_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path(), DEFAULT_KEEP_PREVIOUS).unwrap();
            assert!(store.load_current().unwrap().current.is_none());
            store.commit(&generation(1)).unwrap();
            store.commit(&generation(2)).unwrap();
        }
        let store = StateStore::open(dir.path(), DEFAULT_KEEP_PREVIOUS).unwrap();
        let recovered = store.load_current().unwrap();
        assert!(recovered.skipped.is_empty());
        assert_eq!(recovered.current, Some(generation(2)));
        assert_eq!(store.load(1).unwrap(), generation(1));
        let listed: Vec<u64> = store
            .list()
            .unwrap()
            .iter()
            .map(|meta| meta.generation)
            .collect();
        assert_eq!(listed, vec![2, 1]);
    }

    #[test]
    fn commit_refuses_a_generation_that_is_not_newer() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        store.commit(&generation(5)).unwrap();
        let error = store.commit(&generation(5)).unwrap_err();
        assert!(
            matches!(error, StateError::NotNewer { new: 5, newest: 5 }),
            "{error}"
        );
        assert!(matches!(
            store.commit(&generation(4)),
            Err(StateError::NotNewer { .. })
        ));
    }

    #[test]
    fn torn_temp_file_is_ignored_and_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = StateStore::open(dir.path(), 3).unwrap();
            store.commit(&generation(1)).unwrap();
        }
        // A crash between create and rename leaves a half-written temp file behind.
        let torn = dir
            .path()
            .join(GENERATIONS_DIR)
            .join(".tmp-00000000000000000002.json-999-0");
        fs::write(&torn, b"{\"format\":1,\"meta\":{\"gener").unwrap();
        let torn_drain = dir.path().join(".tmp-drain.json-999-1");
        fs::write(&torn_drain, b"{").unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        assert!(!torn.exists());
        assert!(!torn_drain.exists());
        let recovered = store.load_current().unwrap();
        assert!(recovered.skipped.is_empty());
        assert_eq!(recovered.current.unwrap().meta.generation, 1);
    }

    #[test]
    fn corrupt_current_falls_back_to_last_known_good_with_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        store.commit(&generation(1)).unwrap();
        store.commit(&generation(2)).unwrap();
        let current = dir
            .path()
            .join(GENERATIONS_DIR)
            .join("00000000000000000002.json");
        fs::write(&current, b"\x00\x00garbage").unwrap();
        let recovered = store.load_current().unwrap();
        assert_eq!(recovered.current.unwrap().meta.generation, 1);
        assert_eq!(recovered.skipped.len(), 1);
        let message = recovered.skipped[0].to_string();
        assert!(message.contains("00000000000000000002.json"), "{message}");
        assert!(message.contains("corrupt"), "{message}");
        assert!(matches!(store.load(2), Err(StateError::Corrupt { .. })));
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn all_generations_corrupt_yields_none_and_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        store.commit(&generation(1)).unwrap();
        let path = dir
            .path()
            .join(GENERATIONS_DIR)
            .join("00000000000000000001.json");
        let mut wrong = serde_json::to_value(GenerationFile {
            format: FORMAT_VERSION,
            meta: generation(7).meta,
            bundle: SourceBundle::default(),
        })
        .unwrap();
        fs::write(&path, wrong.to_string()).unwrap();
        let recovered = store.load_current().unwrap();
        assert!(recovered.current.is_none());
        assert!(
            recovered.skipped[0]
                .to_string()
                .contains("holds generation 7")
        );
        wrong["format"] = 99.into();
        wrong["meta"]["generation"] = 1.into();
        fs::write(&path, wrong.to_string()).unwrap();
        let recovered = store.load_current().unwrap();
        assert!(
            recovered.skipped[0]
                .to_string()
                .contains("format version 99")
        );
    }

    #[test]
    fn pruning_keeps_current_and_n_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        for number in 1..=10 {
            store.commit(&generation(number)).unwrap();
        }
        let listed: Vec<u64> = store
            .list()
            .unwrap()
            .iter()
            .map(|meta| meta.generation)
            .collect();
        assert_eq!(listed, vec![10, 9, 8, 7]);
        assert!(matches!(
            store.load(6),
            Err(StateError::NotFound { generation: 6, .. })
        ));
        let files = fs::read_dir(dir.path().join(GENERATIONS_DIR))
            .unwrap()
            .count();
        assert_eq!(files, 4);
    }

    #[test]
    fn second_open_of_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _store = StateStore::open(dir.path(), 3).unwrap();
        assert!(matches!(
            StateStore::open(dir.path(), 3),
            Err(StateError::Locked { .. })
        ));
    }

    #[test]
    fn drain_state_round_trips_and_defaults_to_not_drained() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        assert_eq!(store.load_drain().unwrap(), DrainState::default());
        let drained = DrainState {
            drained: true,
            who: "bob".to_owned(),
            reason: "maintenance".to_owned(),
            changed_at: 1_700_000_123,
            ..DrainState::default()
        };
        store.store_drain(&drained).unwrap();
        assert_eq!(store.load_drain().unwrap(), drained);
        fs::write(dir.path().join(DRAIN_FILE), b"[").unwrap();
        assert!(matches!(
            store.load_drain(),
            Err(StateError::Corrupt { .. })
        ));
    }
}
