//! Test-only helpers shared by the unit tests of this crate: a small tmpfs that a test mounts
//! (and unmounts when dropped) to run the file-system-full paths for real.
//!
//! Must not touch: anything outside the temporary directory it creates. Needs root (the test
//! machines run the suite as root, as the network-namespace tests do).

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted on a fresh temporary directory; unmounted on drop.
pub(crate) struct SmallTmpfs {
    directory: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `bytes` (rounded up to pages by the kernel). Panics with the reason if
    /// mounting is impossible.
    pub(crate) fn mount(bytes: u64) -> SmallTmpfs {
        let directory = tempfile::tempdir().expect("creating the mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(directory.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed ({status}); these tests need root",
            directory.path().display()
        );
        SmallTmpfs { directory }
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        self.directory.path()
    }

    /// Writes a filler file until the file system refuses with ENOSPC; returns its path (remove
    /// it to make room again).
    pub(crate) fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
            .expect("creating the filler");
        let block = vec![0_u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => {
                    assert!(
                        crate::state_store::is_storage_full(&error),
                        "filling the tmpfs failed otherwise: {error}"
                    );
                    break;
                }
            }
        }
        // A last few bytes may still fit in a partly used page; take them too.
        while let Ok(written) = file.write(&block[..1]) {
            if written == 0 {
                break;
            }
        }
        filler
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        // Lazy: a file still open elsewhere in the test must not keep the mount alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.directory.path())
            .status();
    }
}
