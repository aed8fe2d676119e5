//! The files a `topoctl push` sends, read no further than the push needs them.
//!
//! A delta push sends only the files that the running generation does not hold, found by
//! digest. Reading and hashing every file of a large topology (tens of megabytes) at every
//! push costs more than the rest of the client's work, so each file's digest is remembered
//! ([`DigestCache`]), keyed by the file's identity and stamp as git's index keys its entries:
//! device, inode, size, modification and change times. A file whose stamp has not moved since
//! it was hashed is neither read nor hashed; it is read only if it has to travel (the daemon
//! does not hold it, or the whole bundle is sent), and then hashed and checked against the
//! digest the push listed: a file changed in between stops the push (push again).
//!
//! Only a settled file is remembered: one whose modification and change times are at least
//! [`SETTLED`] before the clock read before it was opened. Any later write sets its change time
//! (which only the kernel, or a network file system's server, sets) to a later tick than the
//! one remembered, so its stamp no longer matches and it is hashed again; a file written within
//! [`SETTLED`] of its reading is hashed at every push until it settles. Each stamp is taken from
//! the file opened (on NFS, an open fetches its attributes afresh); nothing is remembered of a
//! file on a FUSE file system, whose attributes the kernel may answer from a cache.
//!
//! The cache is one JSON file, written whole under a fresh temporary name and renamed into
//! place; one that cannot be read or parsed is ignored (and written anew). It holds digests,
//! never texts. A file found changed since it was hashed is forgotten, so that the next push
//! hashes it again.
//!
//! Owns: the digest cache file and the texts read lazily. Must not touch: the network.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use topologyd_api::delta::{SourceDigest, file_sha256, hex, is_sha256, sha256_each};
use topologyd_api::{SourceBundle, SourceFile, Text};
use topologyd_config::{LoadError, Source, load_sources, load_sources_stamped};

use crate::control_client::{ClientError, PushSources};

/// How long before a file was opened its last write must be for its digest to be remembered:
/// more than the coarsest timestamp tick of a Linux file system (a jiffy; FAT's 2 s).
pub const SETTLED: Duration = Duration::from_secs(3);

/// The most bytes a cache file may hold to be read (a few thousand entries are ≈ 1 MB).
const MOST_CACHE_BYTES: u64 = 16 << 20;

/// `statfs`'s type of a FUSE file system.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;

/// The most files the cache remembers; past it, only the files of the latest push are kept.
const MOST_ENTRIES: usize = 4096;

/// The cache file's name in its directory.
const CACHE_FILE: &str = "push-digests.json";

/// What identifies a file's content without reading it: where it lives, its size and the
/// times of its last write and last change, to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of a regular file; `None` for anything else (a FIFO, a device).
    pub fn of(metadata: &std::fs::Metadata) -> Option<Stamp> {
        metadata.is_file().then(|| Stamp {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// Whether both times are at least `settled` before `clock`.
    fn settled_before(&self, clock: SystemTime, settled: Duration) -> bool {
        let Ok(clock) = clock.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let Some(limit) = clock.checked_sub(settled) else {
            return false;
        };
        let before = |(seconds, nanoseconds): (i64, i64)| match (
            u64::try_from(seconds),
            u32::try_from(nanoseconds),
        ) {
            (Ok(seconds), Ok(nanoseconds)) => Duration::new(seconds, nanoseconds) <= limit,
            // Before 1970: long settled.
            (Err(_), _) => true,
            (_, Err(_)) => false,
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// One remembered digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    stamp: Stamp,
    sha256: String,
}

/// The cache file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheFile {
    version: u32,
    entries: Vec<Entry>,
}

/// The digests of settled files, by stamp, in a directory of their own.
#[derive(Debug)]
pub struct DigestCache {
    directory: PathBuf,
    entries: HashMap<(u64, u64), Entry>,
    changed: bool,
    /// [`SETTLED`], but in tests.
    settled: Duration,
    /// Whether the directory is this user's alone (else nothing is read or written there).
    usable: bool,
}

impl DigestCache {
    /// Where the cache lives unless told: `$TOPOCTL_CACHE_DIR`, else `$XDG_CACHE_HOME/topoctl`,
    /// else `$HOME/.cache/topoctl`; `None` when none is set.
    pub fn default_directory() -> Option<PathBuf> {
        let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        set("TOPOCTL_CACHE_DIR").map(PathBuf::from).or_else(|| {
            set("XDG_CACHE_HOME")
                .map(|cache| PathBuf::from(cache).join("topoctl"))
                .or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache/topoctl")))
        })
    }

    /// The cache in `directory`, with what it holds; empty when it holds nothing readable (no
    /// regular file, one too large, or not the cache's JSON), and unused (neither read nor
    /// written) when the directory is not this user's own or others may write to it: an
    /// entry planted there could keep a change from being sent.
    pub fn open(directory: &Path) -> DigestCache {
        let path = directory.join(CACHE_FILE);
        let usable = match std::fs::symlink_metadata(directory) {
            Ok(metadata) => {
                metadata.is_dir()
                    && metadata.uid() == rustix::process::geteuid().as_raw()
                    && metadata.mode() & 0o022 == 0
            }
            Err(_) => true,
        };
        let entries = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|_| usable)
            .filter(|metadata| metadata.is_file() && metadata.len() <= MOST_CACHE_BYTES)
            .and_then(|_| std::fs::read(&path).ok())
            .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
            .filter(|file| file.version == 1)
            .map(|file| {
                file.entries
                    .into_iter()
                    .filter(|entry| is_sha256(&entry.sha256))
                    .map(|entry| ((entry.stamp.dev, entry.stamp.ino), entry))
                    .collect()
            })
            .unwrap_or_default();
        DigestCache {
            directory: directory.to_path_buf(),
            entries,
            changed: false,
            settled: SETTLED,
            usable,
        }
    }

    /// The digest remembered for a file of exactly `stamp`.
    fn digest(&self, stamp: &Stamp) -> Option<&str> {
        self.entries
            .get(&(stamp.dev, stamp.ino))
            .filter(|entry| entry.stamp == *stamp)
            .map(|entry| entry.sha256.as_str())
    }

    /// Remembers `sha256` for a file of `stamp` opened after `clock` was read, if it had
    /// settled by then; forgets what was remembered for that file otherwise.
    fn remember(&mut self, stamp: Stamp, sha256: &str, clock: SystemTime) {
        let key = (stamp.dev, stamp.ino);
        if !stamp.settled_before(clock, self.settled) {
            self.changed |= self.entries.remove(&key).is_some();
            return;
        }
        if self.digest(&stamp) == Some(sha256) {
            return;
        }
        self.entries.insert(
            key,
            Entry {
                stamp,
                sha256: sha256.to_owned(),
            },
        );
        self.changed = true;
    }

    /// Forgets what is remembered of the file of `stamp`.
    fn forget(&mut self, stamp: &Stamp) {
        self.changed |= self.entries.remove(&(stamp.dev, stamp.ino)).is_some();
    }

    /// The cache file.
    pub fn path(&self) -> PathBuf {
        self.directory.join(CACHE_FILE)
    }

    /// Writes the cache if it changed: the whole file under a fresh temporary name (never
    /// one that exists, nor a link), renamed into place. A cache that cannot be written costs
    /// only speed (the next push hashes again).
    pub fn save(&mut self, keep: &[Stamp]) -> std::io::Result<()> {
        if !self.usable {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not this user's own, or others may write to it",
                    self.directory.display()
                ),
            ));
        }
        if !self.changed {
            return Ok(());
        }
        if self.entries.len() > MOST_ENTRIES {
            self.entries
                .retain(|key, _| keep.iter().any(|stamp| (stamp.dev, stamp.ino) == *key));
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.directory)?;
        let mut entries: Vec<Entry> = self.entries.values().cloned().collect();
        entries.sort_by_key(|entry| (entry.stamp.dev, entry.stamp.ino));
        let bytes = serde_json::to_vec(&CacheFile {
            version: 1,
            entries,
        })
        .map_err(std::io::Error::other)?;
        let temporary = self
            .directory
            .join(format!(".{CACHE_FILE}.{}.tmp", std::process::id()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)?;
        std::io::Write::write_all(&mut file, &bytes)
            .and_then(|()| std::fs::rename(&temporary, self.path()))
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&temporary);
            })?;
        self.changed = false;
        Ok(())
    }
}

/// One file of a push.
#[derive(Debug)]
struct LocalFile {
    path: PathBuf,
    /// Its name as sent (the file name alone) and its digest.
    digest: SourceDigest,
    /// Its text, when it was read to be hashed.
    text: Option<Text>,
    /// Its stamp when its digest came from the cache.
    remembered: Option<Stamp>,
}

/// The files of a push: each file's digest, its text only when it was read.
#[derive(Debug)]
pub struct LocalBundle {
    files: Vec<LocalFile>,
    stamps: Vec<Stamp>,
    /// The cache's directory, where a file found changed is forgotten.
    cache: Option<PathBuf>,
}

/// The stamp of the regular file at `path`, taken from the file opened; `None` for anything
/// else, for a file that cannot be opened, and for one on FUSE.
fn stamp_of(path: &Path) -> Option<Stamp> {
    // Only a regular file is opened here (opening a FIFO would wait for a writer).
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let on_fuse =
        rustix::fs::fstatfs(&file).map_or(true, |statfs| statfs.f_type as u64 == FUSE_SUPER_MAGIC);
    if on_fuse {
        return None;
    }
    Stamp::of(&file.metadata().ok()?)
}

impl LocalBundle {
    /// The files at `paths`, each file's digest taken from `cache` when its stamp has not moved
    /// since it was hashed; the others are read (on a few threads, with the errors of
    /// `load_sources`) and hashed, and remembered in `cache` once settled.
    pub fn load(
        paths: &[PathBuf],
        cache: Option<&mut DigestCache>,
    ) -> Result<LocalBundle, LoadError> {
        LocalBundle::load_at(paths, cache, SystemTime::now())
    }

    /// [`LocalBundle::load`] with the clock read before any file is opened given.
    fn load_at(
        paths: &[PathBuf],
        mut cache: Option<&mut DigestCache>,
        clock: SystemTime,
    ) -> Result<LocalBundle, LoadError> {
        let mut known: Vec<Option<(String, Stamp)>> = vec![None; paths.len()];
        if let Some(cache) = cache.as_deref() {
            for (slot, path) in known.iter_mut().zip(paths) {
                *slot = stamp_of(path)
                    .and_then(|stamp| Some((cache.digest(&stamp)?.to_owned(), stamp)));
            }
        }
        let unknown: Vec<&PathBuf> = paths
            .iter()
            .zip(&known)
            .filter(|(_, known)| known.is_none())
            .map(|(path, _)| path)
            .collect();
        let read = load_sources_stamped(&unknown)?;
        let texts: Vec<&str> = read
            .iter()
            .map(|(source, _)| source.text.as_str())
            .collect();
        let hashed = sha256_each(&texts);
        let mut read = read.into_iter().zip(hashed);
        let mut files = Vec::with_capacity(paths.len());
        let mut stamps = Vec::with_capacity(paths.len());
        for (path, known) in paths.iter().zip(known) {
            let name = SourceBundle::name_of(&path.display().to_string());
            let (sha256, text, remembered) = match known {
                Some((sha256, stamp)) => {
                    stamps.push(stamp);
                    (sha256, None, Some(stamp))
                }
                None => {
                    let Some(((source, metadata), digest)) = read.next() else {
                        // Every unknown file was read, in order, or `load_sources` failed.
                        unreachable_read(path)?
                    };
                    let sha256 = hex(&digest);
                    if let Some(cache) = cache.as_deref_mut()
                        && let Some(stamp) = Stamp::of(&metadata)
                        && !on_fuse(path)
                    {
                        cache.remember(stamp, &sha256, clock);
                        stamps.push(stamp);
                    }
                    (sha256, Some(source.text), None)
                }
            };
            files.push(LocalFile {
                path: path.clone(),
                digest: SourceDigest { name, sha256 },
                text,
                remembered,
            });
        }
        Ok(LocalBundle {
            files,
            stamps,
            cache: cache.map(|cache| cache.directory.clone()),
        })
    }

    /// The stamps of the files (to keep in the cache).
    pub fn stamps(&self) -> &[Stamp] {
        &self.stamps
    }

    /// How many files were read (not known by their stamp).
    pub fn read_count(&self) -> usize {
        self.files.iter().filter(|file| file.text.is_some()).count()
    }

    /// Every file with its text (those not read yet are read now and checked against their
    /// digests), named as it is sent: what the revocation check parses.
    pub fn sources(&self) -> Result<Vec<Source>, ClientError> {
        self.files
            .iter()
            .map(|file| Ok(Source::new(file.digest.name.clone(), self.text_of(file)?)))
            .collect()
    }

    /// A file's text: the one read to hash it, or read now and checked against its digest.
    fn text_of(&self, file: &LocalFile) -> Result<Text, ClientError> {
        if let Some(text) = &file.text {
            return Ok(text.clone());
        }
        let changed = |message: String| ClientError::SourceChanged {
            path: file.path.display().to_string(),
            message,
        };
        let source = load_sources(std::slice::from_ref(&file.path))
            .map_err(|error| {
                changed(match error.invalid {
                    Some(diagnostic) => format!("it changed since it was hashed: {diagnostic}"),
                    None => format!("it cannot be read any more ({})", error.error),
                })
            })?
            .pop()
            .ok_or_else(|| changed("it was not read".to_owned()))?;
        let sha256 = file_sha256(&source.text);
        if sha256 != file.digest.sha256 {
            // Forgotten, so that the next push hashes the file whatever its stamp says.
            if let (Some(directory), Some(stamp)) = (&self.cache, &file.remembered) {
                let mut cache = DigestCache::open(directory);
                cache.forget(stamp);
                let _ = cache.save(&self.stamps);
            }
            return Err(changed(format!(
                "it changed since it was hashed (sha256 {} then, {} now){}",
                short(&file.digest.sha256),
                short(&sha256),
                if file.remembered.is_some() {
                    " (its digest was remembered by its stamp; should this repeat, the file \
                     system keeps stamps that do not move: push with --no-digest-cache)"
                } else {
                    ""
                }
            )));
        }
        Ok(source.text)
    }
}

/// Whether the file at `path` is on FUSE (or cannot be asked).
fn on_fuse(path: &Path) -> bool {
    std::fs::File::open(path)
        .ok()
        .and_then(|file| rustix::fs::fstatfs(&file).ok())
        .is_none_or(|statfs| statfs.f_type as u64 == FUSE_SUPER_MAGIC)
}

/// A file `load_sources` answered for without reading it: not possible (it reads every file
/// in order or fails), reported as an I/O error rather than assumed away.
fn unreachable_read<T>(path: &Path) -> Result<T, LoadError> {
    Err(LoadError {
        path: path.display().to_string(),
        error: std::io::Error::other("the file was not read"),
        invalid: None,
    })
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

impl PushSources for LocalBundle {
    fn count(&self) -> usize {
        self.files.len()
    }

    fn digests(&self) -> Vec<SourceDigest> {
        self.files.iter().map(|file| file.digest.clone()).collect()
    }

    fn files(&self, indices: &[usize]) -> Result<Vec<SourceFile>, ClientError> {
        indices
            .iter()
            .filter_map(|index| self.files.get(*index))
            .map(|file| {
                Ok(SourceFile::new(
                    file.digest.name.clone(),
                    self.text_of(file)?,
                ))
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "local_bundle_tests.rs"]
mod tests;
