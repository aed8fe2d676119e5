//! What could go to make room when the state directory's file system is full: quarantined
//! files, then kept generations the daemon does not need, each with the bytes deleting it
//! frees (its file and the texts no other kept generation names), largest first.
//!
//! Owns: listing and describing [`Prunable`] files for [`StateError::NoSpace`]. Must not touch:
//! deleting anything (an operator decides what goes).

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::generation_file::read_header;
use super::{Prunable, StateError, StateStore};

pub(super) fn describe_prunable(prunable: &[Prunable]) -> String {
    if prunable.is_empty() {
        return "files outside the state directory (nothing in it can go)".to_owned();
    }
    prunable
        .iter()
        .map(|file| {
            format!(
                "{} ({}, {} bytes)",
                file.path.display(),
                file.what,
                file.bytes
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl StateStore {
    /// What could be deleted to make room, largest first: every quarantined file, then every
    /// kept generation not in `needed` (the running one, a rollback target).
    pub fn prunable(&self, needed: &[u64]) -> Vec<Prunable> {
        let size = |path: &Path| fs::metadata(path).map_or(0, |metadata| metadata.len());
        // Every quarantined file: generation files and source texts moved aside.
        let mut quarantined: Vec<Prunable> = fs::read_dir(&self.quarantine)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.is_file())
                    .map(|path| Prunable {
                        bytes: size(&path),
                        what: "quarantined".to_owned(),
                        path,
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A generation's size: its file and the texts no other kept generation names (what
        // deleting its file frees at the next commit).
        let files = self.generation_files().unwrap_or_default();
        let named: Vec<HashSet<String>> = files
            .iter()
            .map(|(generation, path)| {
                read_header(path, *generation)
                    .map(|header| header.digests().map(str::to_owned).collect())
                    .unwrap_or_default()
            })
            .collect();
        let mut generations: Vec<Prunable> = files
            .into_iter()
            .zip(&named)
            .enumerate()
            .filter(|(_, ((generation, _), _))| !needed.contains(generation))
            .map(|(index, ((generation, path), digests))| {
                let own: u64 = digests
                    .iter()
                    .filter(|digest| {
                        named
                            .iter()
                            .enumerate()
                            .all(|(other, set)| other == index || !set.contains(*digest))
                    })
                    .map(|digest| self.texts.size(digest))
                    .sum();
                Prunable {
                    bytes: size(&path) + own,
                    what: format!("kept generation {generation}"),
                    path,
                }
            })
            .collect();
        quarantined.sort_by_key(|file| std::cmp::Reverse(file.bytes));
        generations.sort_by_key(|file| std::cmp::Reverse(file.bytes));
        quarantined.extend(generations);
        quarantined
    }

    /// Fills in what could be pruned on a [`StateError::NoSpace`]; the newest intact
    /// generation (the running one) and `needed` are never listed.
    pub fn with_prunable(&self, error: StateError, needed: &[u64]) -> StateError {
        match error {
            StateError::NoSpace { what, path, .. } => {
                // The files it lists are for the operator to delete: the texts they name are
                // then named by nothing, and the next staging sweeps them before it writes.
                self.mark_unnamed_texts();
                let mut keep = needed.to_vec();
                if let Some((newest, _)) = self.generation_files().unwrap_or_default().last() {
                    keep.push(*newest);
                }
                StateError::NoSpace {
                    what,
                    path,
                    prunable: self.prunable(&keep),
                }
            }
            other => other,
        }
    }
}
