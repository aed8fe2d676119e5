//! The source texts of the stored generations, kept once per distinct text (format 2).
//!
//! Owns: `<state dir>/sources/`, one file per distinct source text, named by the lower-case hex
//! SHA-256 of its bytes, and the list of references a generation file keeps instead of its
//! texts ([`SourceRef`]: name, digest, length). A push that changes one file of a 27 MB bundle
//! writes that file's text and a generation file of a few hundred bytes, instead of the whole
//! bundle again; a rollback writes no text at all. Every read checks each text against its
//! length, and against its digest unless this process hashed or compared that very file less
//! than ten minutes ago (the same device, inode, length, modification and change times, before
//! and after the read, all more than 2 s old when it was checked; a delta push reads the
//! running generation's texts each time, and hashing 27 MB again told nothing new), so a
//! stored generation stays complete and verifiable. A large text a push wrote (or compared)
//! moments ago, whose stamp cannot stand for its content yet, is read as the very bytes that
//! were hashed and written, kept shared with the push for [`RECENT_FOR`] ([`RecentText`]): a
//! push right after another does not hash the tens of megabytes it just wrote again. A text of
//! a megabyte or more is otherwise mapped read-only instead of copied into memory ([`topologyd_api::Text`] shares the mapping): the
//! store never writes a text file in place (a text is written under a temporary name and
//! renamed, then only renamed or unlinked), so a mapping keeps the bytes that were checked.
//! Editing a file under `sources/` in place while the daemon runs is not supported.
//!
//! Must not touch: generation files and their numbering (the parent module writes those, after
//! [`SourceTexts::store`] made the texts durable), what a text means.
//!
//! Hand-written rather than a content-addressed store crate: the store is a directory of
//! immutable files written with the same atomic write (temp file, fsync, rename, fsync the
//! directory) and the same error and quarantine rules as every other state file.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read as _, Seek as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use topologyd_api::Text;
use topologyd_api::delta::file_sha256;

use super::{SourceFile, StateError, TEMP_PREFIX, io_error};

/// The directory of the texts under the state dir.
pub(super) const SOURCES_DIR: &str = "sources";

/// How a format-2 generation file names one of its sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceRef {
    /// The file's name in the bundle.
    pub name: String,
    /// The SHA-256 of its text, lower-case hex: the name of the file holding the text.
    pub sha256: String,
    /// The text's length in bytes.
    pub bytes: u64,
}

/// Whether `digest` can name a text file: 64 lower-case hex digits (never a path).
pub(super) fn is_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The texts' directory of a state dir.
#[derive(Debug)]
pub(super) struct SourceTexts {
    dir: PathBuf,
    /// Held while a commit (or a first start's staging) stores texts and writes the generation
    /// file naming them, and while a text found corrupt is moved aside: a reader never moves a
    /// text a commit has just written or checked.
    writing: Mutex<()>,
    /// The texts this process hashed or compared byte for byte, by digest, with the file's
    /// stamp then and when: a commit trusts such a file without reading it again, a read
    /// without hashing it again, for [`TRUSTED_FOR`] and while the stamp holds.
    verified: Mutex<HashMap<String, Checked>>,
    /// How many texts reads have hashed (the others were trusted by their stamp).
    hashed_reads: std::sync::atomic::AtomicU64,
    /// The large texts a push stored in the last [`RECENT_FOR`], oldest first.
    recent: Mutex<Vec<RecentText>>,
    /// [`RECENT_FOR`], but in tests that must not depend on the machine's speed.
    recent_for: std::time::Duration,
    /// The texts staged and not yet named by a generation file (nor given up), by digest,
    /// with how many stagings hold each: a sweep keeps them. A push stages its texts while it
    /// compiles, before the commit, so the commit's sweep of the generation before can meet
    /// them on disk.
    pinned: Arc<Mutex<HashMap<String, usize>>>,
}

/// Whether texts no kept generation names may be on disk (see `StateStore::unnamed_texts`),
/// and how many times that was said since the store opened: a sweep or a commit that found
/// none clears it only if no mark came after the moment it looked as of.
#[derive(Debug)]
pub(super) struct UnnamedTexts(Mutex<UnnamedState>);

#[derive(Debug)]
struct UnnamedState {
    may_be_any: bool,
    marks: u64,
}

impl UnnamedTexts {
    /// Some may be on disk: true from the start.
    pub(super) fn new() -> UnnamedTexts {
        UnnamedTexts(Mutex::new(UnnamedState {
            may_be_any: true,
            marks: 0,
        }))
    }

    fn state(&self) -> MutexGuard<'_, UnnamedState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Says some may be on disk now.
    pub(super) fn mark(&self) {
        let mut state = self.state();
        state.may_be_any = true;
        state.marks += 1;
    }

    /// A staging's mark (it writes texts nothing names yet): whether none were said to be on
    /// disk before it, and the count of marks with it.
    fn mark_staging(&self) -> (bool, u64) {
        let mut state = self.state();
        let clean_before = !state.may_be_any;
        state.may_be_any = true;
        state.marks += 1;
        (clean_before, state.marks)
    }

    /// Whether some may be on disk.
    pub(super) fn may_be_any(&self) -> bool {
        self.state().may_be_any
    }

    /// The count of marks so far: what a sweep starting now clears as of.
    pub(super) fn marks(&self) -> u64 {
        self.state().marks
    }

    /// None are on disk as of the count `seen`: cleared unless a mark came since.
    pub(super) fn clear_as_of(&self, seen: u64) {
        let mut state = self.state();
        if state.marks == seen {
            state.may_be_any = false;
        }
    }
}

/// The pin a staging holds on the texts it wrote (see [`SourceTexts`]'s `pinned`), shared by
/// the clones of its [`StagedTexts`]. Released when the generation file naming the texts is
/// written ([`StagedTexts::named`]), or when the last clone goes without that: then the texts
/// are named by nothing, and the store is told a staging should sweep.
#[derive(Debug)]
struct StagePin {
    pinned: Arc<Mutex<HashMap<String, usize>>>,
    digests: Vec<String>,
    /// The store's account of texts no generation names (see `StateStore::unnamed_texts`).
    unnamed_texts: Arc<UnnamedTexts>,
    released: AtomicBool,
}

impl StagePin {
    fn new(
        pinned: &Arc<Mutex<HashMap<String, usize>>>,
        digests: Vec<String>,
        unnamed_texts: &Arc<UnnamedTexts>,
    ) -> StagePin {
        let mut counts = pinned.lock().unwrap_or_else(PoisonError::into_inner);
        for digest in &digests {
            *counts.entry(digest.clone()).or_default() += 1;
        }
        StagePin {
            pinned: Arc::clone(pinned),
            digests,
            unnamed_texts: Arc::clone(unnamed_texts),
            released: AtomicBool::new(false),
        }
    }

    /// Lets the texts go (once): named by a generation file, or given up.
    fn release(&self, named: bool) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut counts = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
        // Marked while the pins are held: a sweep that took the pins before sees the mark
        // after it, one that takes them after finds the texts unpinned.
        if !named {
            self.unnamed_texts.mark();
        }
        for digest in &self.digests {
            if let Some(count) = counts.get_mut(digest) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(digest);
                }
            }
        }
    }
}

impl Drop for StagePin {
    fn drop(&mut self) {
        self.release(false);
    }
}

/// What identifies a file's content without reading it: device, inode, length, modification
/// and change times. The change time cannot be set from user space, so a rewrite that keeps
/// the modification time (`cp -p`, `touch -d`) changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    device: u64,
    inode: u64,
    length: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

/// How old a file's modification and change times must be before its stamp may stand for its
/// content. The kernel stamps writes with a coarse clock (a tick of a few milliseconds), so a
/// file changed in place within a tick of being checked could keep its stamp; one changed
/// longer ago than this cannot be changed again without its stamp changing (git's "racily
/// clean" entries, the same way round).
const SETTLED_AFTER_SECONDS: i64 = 2;

/// How long a check stands: damage below the file system (a bad sector read back after the
/// page cache dropped the file) changes no stamp, so every text is hashed again at least this
/// often while pushes read it.
const TRUSTED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

impl FileStamp {
    fn of(metadata: &fs::Metadata) -> FileStamp {
        FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            length: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }

    /// Whether both times are old enough for the stamp to be trusted.
    fn settled(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        [self.modified.0, self.changed.0]
            .iter()
            .all(|seconds| now.saturating_sub(*seconds) >= SETTLED_AFTER_SECONDS)
    }
}

/// A large text a push stored (wrote, or found stored and compared) with its digest and when:
/// its file's stamp is too new to stand for its content, so for [`RECENT_FOR`] a read takes
/// these bytes (shared with the push, not copied) instead of the file's, hashed again.
#[derive(Debug)]
struct RecentText {
    sha256: String,
    text: Text,
    stored: std::time::Instant,
}

/// How long a text a push stored is read from memory: until its stamp has settled (and a
/// second more), when a read hashes the file once and then trusts its stamp.
const RECENT_FOR: std::time::Duration =
    std::time::Duration::from_secs(SETTLED_AFTER_SECONDS.unsigned_abs() + 1);

/// Texts smaller than this are not kept: hashing them again costs little.
const RECENT_LEAST_BYTES: usize = 1 << 20;

/// The most bytes of recent texts kept at once (the oldest go first).
const RECENT_MOST_BYTES: usize = 64 << 20;

/// A check of a text: the file's stamp then, and when.
#[derive(Debug, Clone, Copy)]
struct Checked {
    stamp: FileStamp,
    at: std::time::Instant,
}

impl SourceTexts {
    /// The texts under `state_dir` (the directory is created by [`SourceTexts::create`]).
    pub(super) fn at(state_dir: &Path) -> SourceTexts {
        SourceTexts {
            dir: state_dir.join(SOURCES_DIR),
            writing: Mutex::default(),
            verified: Mutex::default(),
            hashed_reads: std::sync::atomic::AtomicU64::new(0),
            recent: Mutex::default(),
            recent_for: RECENT_FOR,
            pinned: Arc::default(),
        }
    }

    /// Taken by a commit for as long as it stores texts and writes the generation file, and by
    /// staging while it stores texts.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the text of digest `sha256` is stored as `text`: a regular file of its length
    /// this process already checked (with `trust_stamp`), or whose bytes are `text`'s (then
    /// remembered). Anything else (missing, another length, other bytes, not a file,
    /// unreadable) is written again. Without `trust_stamp`, `text` is only ever compared: a
    /// text whose digest was listed, not checked, is its digest's only when its bytes are.
    fn holds(&self, sha256: &str, text: &str, trust_stamp: bool) -> bool {
        let path = self.path(sha256);
        let Ok(metadata) = fs::symlink_metadata(&path) else {
            return false;
        };
        if !metadata.is_file() || metadata.len() != text.len() as u64 {
            return false;
        }
        let stamp = FileStamp::of(&metadata);
        if trust_stamp && self.trusted(sha256, stamp) {
            return true;
        }
        let same = same_bytes(&path, text.as_bytes()).unwrap_or(false);
        if same {
            self.remember(sha256, stamp);
        }
        same
    }

    /// Keeps `text` (of digest `sha256`, just stored) for [`RECENT_FOR`] when it is large,
    /// shared (never a copy) and not already trusted by a settled stamp.
    fn keep_recent(&self, sha256: &str, text: &Text) {
        if text.len() < RECENT_LEAST_BYTES || !text.is_shared() {
            return;
        }
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sha256)
            .is_some_and(|checked| checked.at.elapsed() < TRUSTED_FOR);
        if remembered {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|kept| kept.stored.elapsed() < self.recent_for && kept.sha256 != sha256);
        recent.push(RecentText {
            sha256: sha256.to_owned(),
            text: text.clone(),
            stored: std::time::Instant::now(),
        });
        let mut bytes: usize = recent.iter().map(|kept| kept.text.len()).sum();
        while bytes > RECENT_MOST_BYTES && !recent.is_empty() {
            bytes -= recent.remove(0).text.len();
        }
    }

    /// Keeps recent texts for `recent_for` instead of [`RECENT_FOR`].
    #[cfg(test)]
    pub(super) fn set_recent_for(&mut self, recent_for: std::time::Duration) {
        self.recent_for = recent_for;
    }

    /// The text of digest `sha256` a push stored less than [`RECENT_FOR`] ago.
    fn recent_text(&self, sha256: &str) -> Option<Text> {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|kept| kept.stored.elapsed() < self.recent_for);
        recent
            .iter()
            .find(|kept| kept.sha256 == sha256)
            .map(|kept| kept.text.clone())
    }

    /// Lets go of the recent texts older than [`RECENT_FOR`] (or of `sha256`'s); how many are
    /// still kept.
    pub(super) fn forget_recent(&self, sha256: Option<&str>) -> usize {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|kept| {
            kept.stored.elapsed() < self.recent_for && Some(kept.sha256.as_str()) != sha256
        });
        recent.len()
    }

    /// Whether the text of digest `sha256` was checked, with this stamp, less than
    /// [`TRUSTED_FOR`] ago.
    fn trusted(&self, sha256: &str, stamp: FileStamp) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(sha256)
            .is_some_and(|checked| checked.stamp == stamp && checked.at.elapsed() < TRUSTED_FOR)
    }

    /// Remembers that the text of digest `sha256` was checked with `stamp` (a settled one
    /// only: see [`SETTLED_AFTER_SECONDS`]).
    fn remember(&self, sha256: &str, stamp: FileStamp) {
        if stamp.settled() {
            self.verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(
                    sha256.to_owned(),
                    Checked {
                        stamp,
                        at: std::time::Instant::now(),
                    },
                );
        }
    }

    /// Moves the text at `path` aside with `quarantine` if it still does not hash to its
    /// name (a commit may have written it again since it was read); `None` when it stays.
    pub(super) fn quarantine_if_corrupt(
        &self,
        path: &Path,
        quarantine: impl FnOnce(&Path) -> Result<PathBuf, StateError>,
    ) -> Option<Result<PathBuf, StateError>> {
        let _writing = self.lock();
        let name = path.file_name()?.to_str()?;
        // Gone meanwhile (swept, or moved by another reader): nothing to move.
        let bytes = fs::read(path).ok()?;
        if hex(&sha2::Sha256::digest(&bytes).into()) == name {
            return None;
        }
        if let Ok(mut verified) = self.verified.lock() {
            verified.remove(name);
        }
        Some(quarantine(path))
    }

    pub(super) fn create(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(io_error("creating", &self.dir))
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding the text of digest `sha256` (checked by the caller with [`is_digest`]).
    pub(super) fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(sha256)
    }

    /// Makes every text of `files` durable (each one not already stored is written with
    /// `place`, which writes a file atomically but does not sync its directory; the directory
    /// is synced once after, on every call, so that a text an earlier failed commit left
    /// behind is durable too) and returns the references a generation file keeps. A stored
    /// text is trusted only once compared byte for byte (or written) by this process and
    /// unchanged since; otherwise it is written again. `digests`, when given, are the files'
    /// names and SHA-256 as already computed (one per file, in order; not used when a name
    /// does not pair): a text already stored under its digest is then not hashed, and a text
    /// about to be written is always hashed (its name is its own digest, whatever was given);
    /// a text at one of the places `unchecked` is compared byte for byte with the text stored
    /// under the digest given, never trusted by that file's stamp, and hashed unless the same. With `keep_recent` (a push's texts), the large shared ones are kept for [`RECENT_FOR`].
    /// The caller holds [`SourceTexts::lock`].
    pub(super) fn store(
        &self,
        files: &[SourceFile],
        digests: Option<&[(String, [u8; 32])]>,
        unchecked: &[usize],
        keep_recent: bool,
        place: impl Fn(&Path, &[u8]) -> Result<(), StateError>,
    ) -> Result<Vec<SourceRef>, StateError> {
        let digests = digests.filter(|digests| {
            digests.len() == files.len()
                && digests
                    .iter()
                    .zip(files)
                    .all(|((name, _), file)| *name == file.name)
        });
        let mut refs = Vec::with_capacity(files.len());
        for (index, file) in files.iter().enumerate() {
            let bytes = file.text.len() as u64;
            // A digest listed, not checked, stands for the text only if the text stored
            // under it has the same bytes; else the text is hashed.
            let checked = !unchecked.contains(&index);
            let given = digests.map(|digests| hex(&digests[index].1));
            let stored = given.filter(|sha256| self.holds(sha256, &file.text, checked));
            let sha256 = match stored {
                Some(sha256) => sha256,
                None => {
                    let sha256 = file_sha256(&file.text);
                    if !self.holds(&sha256, &file.text, true) {
                        place(&self.path(&sha256), file.text.as_bytes())?;
                    }
                    sha256
                }
            };
            if keep_recent {
                self.keep_recent(&sha256, &file.text);
            }
            refs.push(SourceRef {
                name: file.name.clone(),
                sha256,
                bytes,
            });
        }
        if !refs.is_empty() {
            super::sync_dir(&self.dir)?;
        }
        Ok(refs)
    }

    /// The texts `refs` name, each checked against its length and digest. A text that is
    /// missing or does not match is [`StateError::Source`] naming the file.
    pub(super) fn load(
        &self,
        file: &Path,
        generation: u64,
        refs: Vec<SourceRef>,
    ) -> Result<Vec<SourceFile>, StateError> {
        let mut files = Vec::with_capacity(refs.len());
        for reference in refs {
            let text = self.load_one(file, generation, &reference)?;
            files.push(SourceFile {
                name: reference.name,
                text,
            });
        }
        Ok(files)
    }

    fn load_one(
        &self,
        file: &Path,
        generation: u64,
        reference: &SourceRef,
    ) -> Result<Text, StateError> {
        let failure = |path: PathBuf, corrupt: bool, reason: String| StateError::Source {
            generation,
            name: reference.name.clone(),
            path,
            corrupt,
            reason,
        };
        // `check_file` refused a generation file naming anything but digests; checked again
        // here because a path must never come from a file.
        if !is_digest(&reference.sha256) {
            return Err(StateError::Corrupt {
                path: file.to_path_buf(),
                reason: format!(
                    "generation {generation} names source `{}` by `{}`, which is not a SHA-256",
                    reference.name, reference.sha256
                ),
            });
        }
        if let Some(text) = self
            .recent_text(&reference.sha256)
            .filter(|text| text.len() as u64 == reference.bytes)
        {
            return Ok(text);
        }
        let path = self.path(&reference.sha256);
        let (stored, stamp) = match read_text(&path) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(failure(
                    path,
                    false,
                    "is missing; put the file's text back there (the file's name is the SHA-256 of its bytes: `sha256sum FILE`), or push the same file again".to_owned(),
                ));
            }
            Err(error) => {
                return Err(failure(
                    path,
                    false,
                    format!(
                        "cannot be read ({error}); give it back to the daemon's user (mode 0600)"
                    ),
                ));
            }
        };
        let bytes = stored.bytes();
        if bytes.len() as u64 != reference.bytes {
            // The text still hashing to its name is intact: the generation file's length is
            // what is wrong, and the text (other generations may name it) stays.
            if hex(&sha2::Sha256::digest(bytes).into()) == reference.sha256 {
                return Err(StateError::Corrupt {
                    path: file.to_path_buf(),
                    reason: format!(
                        "generation {generation} says source `{}` ({}) is {} bytes long; it is {}",
                        reference.name,
                        reference.sha256,
                        reference.bytes,
                        bytes.len()
                    ),
                });
            }
            return Err(failure(
                path,
                true,
                format!(
                    "holds {} bytes where {} were stored; it is moved to quarantine and the next push carrying the same file stores it again",
                    bytes.len(),
                    reference.bytes
                ),
            ));
        }
        let text = stored
            .into_text()
            .ok_or_else(|| failure(path.clone(), true, "is not UTF-8".to_owned()))?;
        if stamp.is_some_and(|stamp| self.trusted(&reference.sha256, stamp)) {
            return Ok(text);
        }
        self.hashed_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let actual = file_sha256(&text);
        if actual != reference.sha256 {
            return Err(failure(
                path,
                true,
                format!(
                    "holds a text of SHA-256 {actual}; it is moved to quarantine and the next push carrying the same file stores it again"
                ),
            ));
        }
        // Checked against its name: a commit naming it need not compare it again.
        if let Some(stamp) = stamp {
            self.remember(&reference.sha256, stamp);
        }
        Ok(text)
    }

    /// How many texts reads have hashed so far.
    #[cfg(test)]
    pub(super) fn hashed_reads(&self) -> u64 {
        self.hashed_reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes every stored text no kept generation references (`referenced`) and no staging
    /// holds, and temp files a crash left; returns how many texts went, and whether some
    /// staging held texts (kept, and named by nothing yet).
    pub(super) fn sweep(&self, referenced: &HashSet<String>) -> Result<(usize, bool), StateError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((0, false)),
            Err(source) => return Err(io_error("listing", &self.dir)(source)),
        };
        let pinned: HashSet<String> = self
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(io_error("listing", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let unreferenced =
                is_digest(name) && !referenced.contains(name) && !pinned.contains(name);
            if unreferenced && let Ok(mut verified) = self.verified.lock() {
                verified.remove(name);
            }
            if unreferenced {
                self.forget_recent(Some(name));
            }
            if unreferenced || name.starts_with(TEMP_PREFIX) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_error("removing", &path))?;
                removed += 1;
            }
        }
        if removed > 0 {
            super::sync_dir(&self.dir)?;
        }
        Ok((removed, !pinned.is_empty()))
    }

    /// The size of the stored text of digest `sha256` (0 when it is not stored).
    pub(super) fn size(&self, sha256: &str) -> u64 {
        if !is_digest(sha256) {
            return 0;
        }
        fs::metadata(self.path(sha256)).map_or(0, |metadata| metadata.len())
    }
}

/// Texts of at least this many bytes are mapped rather than read ([`StoredBytes::Mapped`]):
/// below it, a copy costs less than setting up and tearing down a mapping.
pub(super) const MAP_MIN_BYTES: u64 = 1 << 20;

/// A stored text's bytes: read into memory, or (a large one) mapped read-only, with whether
/// they are UTF-8 (checked as the mapping was read through).
enum StoredBytes {
    Read(Vec<u8>),
    Mapped { map: memmap2::Mmap, utf8: bool },
}

impl StoredBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            StoredBytes::Read(bytes) => bytes,
            StoredBytes::Mapped { map, .. } => map,
        }
    }

    /// The text, or `None` when the bytes are not UTF-8.
    fn into_text(self) -> Option<Text> {
        match self {
            StoredBytes::Read(bytes) => String::from_utf8(bytes).ok().map(Text::from),
            StoredBytes::Mapped { map, utf8 } => {
                utf8.then(|| Text::shared(std::sync::Arc::new(MappedText(map))))
            }
        }
    }
}

/// A stored text mapped from its file, whose bytes this very read checked to be UTF-8
/// ([`read_text`]). The store never writes a text file in place: each is written once under a
/// temporary name and renamed to the digest of its bytes, then only renamed (to quarantine)
/// or unlinked, which leaves a mapping's pages as they were. Only a regular file with one
/// link, named itself (not a symbolic link), is mapped, and kept only when its stamp held
/// while it was checked.
struct MappedText(memmap2::Mmap);

impl topologyd_api::SharedText for MappedText {
    fn text(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: the bytes were checked to be UTF-8 after they were mapped, and they stay
        // what was checked: the mapping is read-only and its file is never written in place
        // (see the type's comment). This holds while the storage gives back the bytes written
        // (a page evicted and read again is read from the file).
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }
}

/// The bytes of the file at `path`, and its stamp when it was the same before and after they
/// were read (taken from the open file, so it is the stamp of the bytes read). A large one
/// ([`MAP_MIN_BYTES`]) that is a regular file of one link, named itself, is mapped and read
/// through once to check it is UTF-8 before the second stamp; should the stamp have moved
/// meanwhile (something wrote the file in place), the mapping is dropped and the file read
/// instead. A file that cannot be mapped (a file system that refuses it) is read too.
fn read_text(path: &Path) -> io::Result<(StoredBytes, Option<FileStamp>)> {
    read_text_mapping_from(path, MAP_MIN_BYTES)
}

/// [`read_text`], mapping files of `map_min_bytes` or more (the tests map small ones too).
fn read_text_mapping_from(
    path: &Path,
    map_min_bytes: u64,
) -> io::Result<(StoredBytes, Option<FileStamp>)> {
    let mut file = fs::File::open(path)?;
    let metadata = file.metadata()?;
    let before = FileStamp::of(&metadata);
    // The file opened is the one the name holds, not one a link leads to.
    let own_file = fs::symlink_metadata(path).is_ok_and(|link| {
        link.file_type().is_file() && link.dev() == metadata.dev() && link.ino() == metadata.ino()
    });
    if own_file && metadata.nlink() == 1 && before.length >= map_min_bytes {
        #[allow(unsafe_code)]
        // SAFETY: the file is one of the store's texts, which nothing writes in place (see
        // `MappedText`); a text truncated or rewritten in place behind the daemon's back is
        // outside what the store supports, as is any other write to its private directory.
        let mapped = unsafe { memmap2::MmapOptions::new().populate().map(&file) };
        if let Ok(map) = mapped {
            let utf8 = simdutf8::basic::from_utf8(&map).is_ok();
            let after = FileStamp::of(&file.metadata()?);
            if before == after {
                return Ok((StoredBytes::Mapped { map, utf8 }, Some(before)));
            }
            drop(map);
            file.rewind()?;
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(before.length).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    let after = FileStamp::of(&file.metadata()?);
    Ok((
        StoredBytes::Read(bytes),
        (before == after).then_some(before),
    ))
}

/// Texts written into the store ahead of the generation that will name them
/// ([`super::StateStore::stage_texts`]): the references the commit writes
/// ([`super::StateStore::commit_staged`]), and a way to read each text back while the texts
/// are not held in memory (the compile of a large bootstrap topology puts them away once
/// parsed).
#[derive(Debug, Clone)]
pub struct StagedTexts {
    pub(super) refs: Vec<SourceRef>,
    dir: PathBuf,
    /// No other text named by no generation was on disk when these were staged.
    clean_before: bool,
    /// The count of marks of unnamed texts with this staging's own (see [`UnnamedTexts`]).
    marks: u64,
    /// Keeps the texts from sweeps until a generation names them.
    pin: Arc<StagePin>,
}

impl StagedTexts {
    /// Whether no other text named by no generation was on disk when these were staged.
    pub(super) fn clean_before(&self) -> bool {
        self.clean_before
    }

    /// The count of marks of unnamed texts with this staging's own.
    pub(super) fn marks(&self) -> u64 {
        self.marks
    }

    /// A generation file names the texts now: sweeps need not keep them for this staging.
    pub(super) fn named(&self) {
        self.pin.release(true);
    }

    /// Each text's SHA-256, in order.
    pub fn digests(&self) -> Vec<[u8; 32]> {
        self.refs
            .iter()
            .map(|reference| unhex(&reference.sha256).unwrap_or_default())
            .collect()
    }

    /// Opens text `index` again in the store, `None` unless it is a regular file of the staged
    /// length whose bytes have the staged SHA-256 (hashed the first time only: a compile
    /// reporting many positions opens it once per position).
    pub fn read_back(&self) -> topologyd_config::ReadText {
        read_again(
            self.refs
                .iter()
                .map(|reference| {
                    let digest = unhex(&reference.sha256).unwrap_or_default();
                    (self.dir.join(&reference.sha256), reference.bytes, digest)
                })
                .collect(),
        )
    }
}

impl SourceTexts {
    /// The staged form of `refs`, just stored.
    /// The texts of a staging are written: `refs`, pinned. Marks the texts unnamed, and
    /// says whether none were before.
    pub(super) fn staged(
        &self,
        refs: Vec<SourceRef>,
        unnamed_texts: &Arc<UnnamedTexts>,
    ) -> StagedTexts {
        let digests = refs
            .iter()
            .map(|reference| reference.sha256.clone())
            .collect();
        let pin = Arc::new(StagePin::new(&self.pinned, digests, unnamed_texts));
        let (clean_before, marks) = unnamed_texts.mark_staging();
        StagedTexts {
            pin,
            marks,
            refs,
            dir: self.dir.clone(),
            clean_before,
        }
    }

    /// The staged texts' references, each text still a regular file of its staged length (a
    /// commit names only texts that are there), for generation `generation`.
    pub(super) fn still_staged(
        &self,
        staged: &StagedTexts,
        generation: u64,
    ) -> Result<Vec<SourceRef>, StateError> {
        for reference in &staged.refs {
            let path = self.path(&reference.sha256);
            let there = fs::symlink_metadata(&path)
                .is_ok_and(|metadata| metadata.is_file() && metadata.len() == reference.bytes);
            if !there {
                return Err(StateError::Source {
                    generation,
                    name: reference.name.clone(),
                    path,
                    corrupt: false,
                    reason: format!(
                        "was written before the compile and is gone, or no longer {} bytes long, \
                         since; start again (nothing else may write the state directory)",
                        reference.bytes
                    ),
                });
            }
        }
        Ok(staged.refs.clone())
    }
}

/// Whether the file at `path` holds exactly `expected`, read a block at a time (a text of
/// tens of megabytes is compared without a copy of it in memory).
fn same_bytes(path: &Path, expected: &[u8]) -> io::Result<bool> {
    const BLOCK: usize = 1 << 20;
    let mut file = fs::File::open(path)?;
    let mut block = vec![0_u8; BLOCK.min(expected.len().max(1))];
    let mut at = 0;
    loop {
        let read = match file.read(&mut block) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if read == 0 {
            return Ok(at == expected.len());
        }
        if expected.get(at..at + read) != Some(&block[..read]) {
            return Ok(false);
        }
        at += read;
    }
}

/// Opens text `index` of `texts` (path, length, SHA-256) again with [`open_checked`], each
/// hashed the first time only. How a compile reads a put-away text again: the staged texts
/// here, the bootstrap files in `preflight.rs`.
pub(crate) fn read_again(texts: Vec<(PathBuf, u64, [u8; 32])>) -> topologyd_config::ReadText {
    let checked: Vec<std::sync::OnceLock<bool>> =
        texts.iter().map(|_| std::sync::OnceLock::new()).collect();
    std::sync::Arc::new(move |index| {
        let (path, bytes, digest) = texts.get(index as usize)?;
        open_checked(path, *bytes, digest, checked.get(index as usize)?)
    })
}

/// The text at `path` opened at its start, if it is a regular file `bytes` long whose bytes
/// hash to `digest` (SHA-256; hashed once: `checked` remembers the answer, and a later open
/// checks the kind and length only).
fn open_checked(
    path: &Path,
    bytes: u64,
    digest: &[u8; 32],
    checked: &std::sync::OnceLock<bool>,
) -> Option<Box<dyn topologyd_config::TextReader>> {
    use std::io::Seek as _;
    // Looked at before it is opened: opening a FIFO put in a file's place would wait for a
    // writer.
    if !fs::metadata(path).is_ok_and(|metadata| metadata.is_file()) {
        return None;
    }
    let mut file = fs::File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() != bytes {
        return None;
    }
    let same = *checked.get_or_init(|| {
        let mut hasher = sha2::Sha256::new();
        io::copy(&mut file, &mut hasher).is_ok() && <[u8; 32]>::from(hasher.finalize()) == *digest
    });
    file.rewind().ok()?;
    same.then(|| Box::new(io::BufReader::new(file)) as Box<dyn topologyd_config::TextReader>)
}

/// The 32 bytes of a lower-case hex SHA-256 ([`is_digest`]).
pub(crate) fn unhex(digest: &str) -> Option<[u8; 32]> {
    let mut bytes = [0_u8; 32];
    if !is_digest(digest) {
        return None;
    }
    for (byte, pair) in bytes.iter_mut().zip(digest.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(bytes)
}

fn hex(bytes: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(64), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Mapped or read, a stored file reads back as exactly its bytes, becomes a text iff
        /// they are UTF-8, and is mapped iff it is at least the threshold long: over generated
        /// texts and byte strings (empty ones and ones broken inside a character included)
        /// and thresholds below, at and past their length.
        #[test]
        fn a_file_mapped_or_read_gives_back_its_bytes_and_is_a_text_iff_utf8(
            text in "(\\PC|\n){0,300}",
            cut in any::<prop::sample::Index>(),
            broken in any::<bool>(),
            threshold in prop_oneof![Just(0usize), Just(1), Just(usize::MAX)],
            near in -1i64..=1,
        ) {
            let dir = tempfile::tempdir().map_err(|error| TestCaseError::fail(error.to_string()))?;
            let path = dir.path().join("text");
            let mut bytes = text.into_bytes();
            if broken && !bytes.is_empty() {
                // Cut anywhere, a character's tail may go; a stray continuation byte is added.
                bytes.truncate(cut.index(bytes.len() + 1));
                bytes.push(0x80);
            }
            fs::write(&path, &bytes).map_err(|error| TestCaseError::fail(error.to_string()))?;
            let length = bytes.len() as i64;
            let map_min = match threshold {
                usize::MAX => (length + near).max(0) as u64,
                small => small as u64,
            };
            let (stored, stamp) = read_text_mapping_from(&path, map_min)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert!(stamp.is_some(), "nothing wrote the file meanwhile");
            prop_assert_eq!(stored.bytes(), bytes.as_slice());
            let mapped = matches!(stored, StoredBytes::Mapped { .. });
            // An empty file may be refused a mapping; it is then read.
            prop_assert!(mapped == (bytes.len() as u64 >= map_min) || bytes.is_empty());
            let utf8 = std::str::from_utf8(&bytes).is_ok();
            match stored.into_text() {
                Some(text) => {
                    prop_assert!(utf8);
                    prop_assert_eq!(text.as_bytes(), bytes.as_slice());
                    prop_assert_eq!(text.is_shared(), mapped);
                }
                None => prop_assert!(!utf8),
            }
        }

        /// A stored file holds the expected bytes iff they are equal, compared a block at a
        /// time: over files of up to three blocks and expectations equal to them, cut short,
        /// made longer, or with one byte changed anywhere (on either side of a block's end).
        #[test]
        fn a_stored_file_holds_exactly_the_bytes_it_equals(
            blocks in 0usize..3,
            tail in 0usize..4,
            seed in any::<u8>(),
            edit in 0u8..4,
            at in any::<prop::sample::Index>(),
        ) {
            let dir = tempfile::tempdir().map_err(|error| TestCaseError::fail(error.to_string()))?;
            let path = dir.path().join("text");
            let length = blocks * (1 << 20) + tail;
            let stored: Vec<u8> = (0..length).map(|index| (index as u8).wrapping_mul(seed | 1)).collect();
            fs::write(&path, &stored).map_err(|error| TestCaseError::fail(error.to_string()))?;
            let mut expected = stored.clone();
            match edit {
                0 => {}
                1 => expected.truncate(at.index(length + 1)),
                2 => expected.push(seed),
                _ if length > 0 => {
                    let index = at.index(length);
                    expected[index] ^= 1 << (seed % 8);
                }
                _ => {}
            }
            let same = same_bytes(&path, &expected)
                .map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(same, expected == stored);
        }
    }

    #[test]
    fn a_missing_file_is_an_error_not_a_match() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert!(same_bytes(&dir.path().join("absent"), b"").is_err());
    }
}
