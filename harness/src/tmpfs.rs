//! A small tmpfs a test mounts (and unmounts when dropped) to drive the daemon's
//! file-system-full paths for real: the state directory and the audit log on a disk that fills.
//!
//! Must not touch: anything but the directory it mounts on. Needs root, like the
//! network-namespace tests.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs of a fixed size; lazily unmounted on drop.
#[derive(Debug)]
pub struct SmallTmpfs {
    mount_point: PathBuf,
    /// Keeps a mount point this value created alive until after the unmount.
    _owned: Option<tempfile::TempDir>,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `bytes` on a fresh temporary directory.
    pub fn mount(bytes: u64) -> Result<SmallTmpfs, String> {
        let directory = tempfile::tempdir().map_err(|error| format!("a mount point: {error}"))?;
        let mut tmpfs = SmallTmpfs::mount_at(directory.path(), bytes)?;
        tmpfs._owned = Some(directory);
        Ok(tmpfs)
    }

    /// Mounts a tmpfs of `bytes` on `mount_point` (an existing, empty directory).
    pub fn mount_at(mount_point: &Path, bytes: u64) -> Result<SmallTmpfs, String> {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(mount_point)
            .status()
            .map_err(|error| format!("running mount: {error}"))?;
        if !status.success() {
            return Err(format!(
                "mounting a {bytes}-byte tmpfs on {} failed ({status}); the test needs root",
                mount_point.display()
            ));
        }
        Ok(SmallTmpfs {
            mount_point: mount_point.to_path_buf(),
            _owned: None,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Fills the file system with `<mount point>/filler` until writes fail with ENOSPC;
    /// returns the filler's path (remove it to make room again).
    pub fn fill(&self) -> Result<PathBuf, String> {
        let filler = self.mount_point.join("filler");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&filler)
            .map_err(|error| format!("creating {}: {error}", filler.display()))?;
        for size in [65_536, 4096, 1] {
            let block = vec![0_u8; size];
            loop {
                match file.write(&block) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(error) => return Err(format!("filling the tmpfs: {error}")),
                }
            }
        }
        Ok(filler)
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mount_point)
            .status();
    }
}
