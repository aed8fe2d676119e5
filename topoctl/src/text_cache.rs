//! The texts of the large files a push applied, kept by digest, so that the next push of a
//! changed version of one sends its edits instead of the whole file
//! (`topologyd_api::patch`). A file of tens of megabytes changed in a few thousand lines then
//! travels as those lines: the daemon neither receives nor parses megabytes of JSON for it.
//!
//! The cache is a directory `texts/` beside the digest cache (`local_bundle.rs`), one file per
//! text named by its SHA-256, written under a fresh temporary name and renamed into place. A
//! text read back is hashed and used only if it has the digest its name says (a damaged or
//! planted one is removed, and the file travels whole); a daemon checks the text the edits
//! make against the digest the push lists in any case. It holds at most [`MOST_TEXTS`] texts
//! and [`MOST_BYTES`] bytes: the least recently used go first. Like the digest cache, it is
//! neither read nor written in a directory that is not this user's own or that others may
//! write to.
//!
//! Owns: the `texts/` directory. Must not touch: the network.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use topologyd_api::delta::{file_sha256, is_sha256};

/// Files smaller than this travel whole: their JSON costs the daemon little.
pub const PATCH_MIN_BYTES: usize = 256 << 10;

/// The most texts kept.
pub const MOST_TEXTS: usize = 16;

/// The most bytes kept, all texts together.
pub const MOST_BYTES: u64 = 512 << 20;

/// How old a temporary file must be to count as the leftover of a write that did not finish.
const UNFINISHED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// The texts a push applied, by digest.
#[derive(Debug, Clone)]
pub struct TextCache {
    directory: PathBuf,
}

/// Whether `directory` is this user's own and no one else may write to it (or does not exist
/// yet, to be made so).
fn is_own(directory: &Path) -> bool {
    match std::fs::symlink_metadata(directory) {
        Ok(metadata) => {
            metadata.is_dir()
                && metadata.uid() == rustix::process::geteuid().as_raw()
                && metadata.mode() & 0o022 == 0
        }
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
    }
}

impl TextCache {
    /// The cache in `texts/` under `cache_directory` (the digest cache's directory); `None`
    /// when either is not this user's own or others may write to it.
    pub fn open(cache_directory: &Path) -> Option<TextCache> {
        let directory = cache_directory.join("texts");
        (is_own(cache_directory) && is_own(&directory)).then_some(TextCache { directory })
    }

    /// The text of digest `sha256`, if kept and intact (one that is not is removed).
    pub fn get(&self, sha256: &str) -> Option<String> {
        if !is_sha256(sha256) {
            return None;
        }
        let path = self.directory.join(sha256);
        let metadata = std::fs::symlink_metadata(&path).ok()?;
        if !metadata.is_file() || metadata.len() > MOST_BYTES {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok();
        if text.as_deref().map(file_sha256).as_deref() != Some(sha256) {
            let _ = std::fs::remove_file(&path);
            return None;
        }
        // Used: the last to go.
        if let Ok(file) = std::fs::File::options().append(true).open(&path) {
            let _ = file.set_modified(SystemTime::now());
        }
        text
    }

    /// Keeps `text` (of digest `sha256`) if it is large enough to be sent as edits next time,
    /// then drops the least recently used texts past the bounds. A text that cannot be kept
    /// costs only the next push's size.
    pub fn put(&self, sha256: &str, text: &str) -> std::io::Result<()> {
        if text.len() < PATCH_MIN_BYTES || text.len() as u64 > MOST_BYTES || !is_sha256(sha256) {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.directory)?;
        // Made just now, or by someone else meanwhile: used only if it is this user's alone.
        if !self.directory.parent().is_some_and(is_own) || !is_own(&self.directory) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not this user's own, or others may write to it",
                    self.directory.display()
                ),
            ));
        }
        let path = self.directory.join(sha256);
        if std::fs::symlink_metadata(&path).is_ok_and(|metadata| metadata.is_file()) {
            if let Ok(file) = std::fs::File::options().append(true).open(&path) {
                let _ = file.set_modified(SystemTime::now());
            }
        } else {
            let temporary = self.directory.join(format!(
                ".{sha256}.{}.{}.tmp",
                std::process::id(),
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |since| since.subsec_nanos())
            ));
            // The texts are a topology's: readable by this user alone.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)?;
            std::io::Write::write_all(&mut file, text.as_bytes())
                .and_then(|()| std::fs::rename(&temporary, &path))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&temporary);
                })?;
        }
        self.evict();
        Ok(())
    }

    /// Drops the least recently used texts until at most [`MOST_TEXTS`] and [`MOST_BYTES`]
    /// are kept, and the temporary files of writes that did not finish (a push killed while it
    /// wrote) once an hour old.
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return;
        };
        let entries: Vec<std::fs::DirEntry> = entries.filter_map(Result::ok).collect();
        for entry in &entries {
            let stale = entry
                .metadata()
                .ok()
                .and_then(|metadata| metadata.modified().ok());
            let unfinished = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with('.') && name.ends_with(".tmp"));
            if unfinished
                && stale.is_some_and(|modified| {
                    modified.elapsed().is_ok_and(|age| age > UNFINISHED_AFTER)
                })
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let mut kept: Vec<(SystemTime, u64, PathBuf)> = entries
            .into_iter()
            .filter(|entry| entry.file_name().to_str().is_some_and(is_sha256))
            .filter_map(|entry| {
                let metadata = entry.metadata().ok()?;
                Some((metadata.modified().ok()?, metadata.len(), entry.path()))
            })
            .collect();
        kept.sort_by_key(|(modified, _, _)| std::cmp::Reverse(*modified));
        let mut bytes = 0_u64;
        for (index, (_, length, path)) in kept.iter().enumerate() {
            bytes = bytes.saturating_add(*length);
            if index >= MOST_TEXTS || bytes > MOST_BYTES {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn large(seed: char) -> String {
        format!("{seed}\n").repeat(PATCH_MIN_BYTES)
    }

    #[test]
    fn a_kept_text_is_given_back_by_its_digest_and_a_damaged_one_is_not() {
        let root = tempfile::tempdir().unwrap();
        let cache = TextCache::open(root.path()).unwrap();
        let text = large('a');
        let sha256 = file_sha256(&text);
        assert_eq!(cache.get(&sha256), None);
        cache.put(&sha256, &text).unwrap();
        assert_eq!(cache.get(&sha256).as_deref(), Some(text.as_str()));
        // A topology's text: this user's alone.
        let kept = std::fs::metadata(root.path().join("texts").join(&sha256)).unwrap();
        assert_eq!(kept.mode() & 0o777, 0o600);
        // Small texts travel whole: not kept.
        cache.put(&file_sha256("small"), "small").unwrap();
        assert_eq!(cache.get(&file_sha256("small")), None);
        // A text whose content is not its name's digest is removed, not used.
        std::fs::write(root.path().join("texts").join(&sha256), "changed").unwrap();
        assert_eq!(cache.get(&sha256), None);
        assert!(!root.path().join("texts").join(&sha256).exists());
        // Not a digest: never a path.
        assert_eq!(cache.get("../../etc/passwd"), None);
    }

    #[test]
    fn past_its_bound_the_least_recently_used_texts_go() {
        let root = tempfile::tempdir().unwrap();
        let cache = TextCache::open(root.path()).unwrap();
        let texts: Vec<String> = (0..=MOST_TEXTS as u32)
            .map(|index| large(char::from_u32(0x41 + index).unwrap()))
            .collect();
        let first = file_sha256(&texts[0]);
        cache.put(&first, &texts[0]).unwrap();
        let second = file_sha256(&texts[1]);
        cache.put(&second, &texts[1]).unwrap();
        // Times a second apart, whatever the file system's tick.
        let set = |sha256: &str, seconds: u64| {
            let file = std::fs::File::options()
                .append(true)
                .open(root.path().join("texts").join(sha256))
                .unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
                .unwrap();
        };
        set(&first, 1);
        set(&second, 2);
        // The first is used again: the second is now the least recently used.
        assert!(cache.get(&first).is_some());
        for text in &texts[2..] {
            cache.put(&file_sha256(text), text).unwrap();
        }
        assert!(cache.get(&first).is_some());
        assert_eq!(cache.get(&second), None);
        let kept = std::fs::read_dir(root.path().join("texts"))
            .unwrap()
            .count();
        assert_eq!(kept, MOST_TEXTS);
    }

    #[test]
    fn a_directory_others_may_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(TextCache::open(root.path()).is_none());
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(TextCache::open(root.path()).is_some());
    }
}
