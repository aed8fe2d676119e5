//! Delta pushes: a plan or apply that carries only the files that changed against the running
//! generation. The pusher first reads [`SourcesView`] (`GET /v1/sources`: the running
//! generation, its bundle digest and one digest per file), then sends the files whose text
//! differs in the request's bundle and a [`BundleDelta`] naming the base (generation and bundle
//! digest: a compare-and-swap) and every file of the new bundle, in order, with its digest. The
//! daemon rebuilds the whole bundle with [`BundleDelta::resolve`] before anything else sees it:
//! what is compiled, stored and audited is always a complete bundle.
//!
//! Owns: the digests ([`file_sha256`], [`bundle_sha256`]), the pusher's side
//! ([`BundleDelta::against`]) and the daemon's ([`BundleDelta::resolve`]), and the reasons a
//! delta does not resolve ([`DeltaError`]).
//!
//! Must not touch: I/O. Pure functions over texts and digests.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::source::{SourceBundle, SourceFile};

/// One file of a bundle by name and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDigest {
    /// The file's name.
    pub name: String,
    /// SHA-256 of its text, lower-case hex.
    pub sha256: String,
}

/// `GET /v1/sources`: the running generation's files by digest, what a delta push is made
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourcesView {
    /// The running generation.
    pub generation: u64,
    /// [`bundle_sha256`] of its files.
    pub sources_sha256: String,
    /// Its files, in order.
    pub files: Vec<SourceDigest>,
}

/// What a delta push carries besides the changed files: the base it was made against and the
/// new bundle's files in order. A file listed here whose text the request does not carry is
/// the base's file of that name, which must have that digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleDelta {
    /// The generation the delta was made against; it must be the one running.
    pub base_generation: u64,
    /// That generation's [`bundle_sha256`]; it must match (compare-and-swap).
    pub base_sources_sha256: String,
    /// Every file of the new bundle, in order.
    pub files: Vec<SourceDigest>,
}

/// Why a delta does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The running generation is not the delta's base (or its files differ): the pusher must
    /// read `/v1/sources` again and make a new delta (or send the whole bundle).
    #[error(
        "the delta was made against generation {base_generation} (sources {}), but generation {running_generation} (sources {}) is running; read the running sources again (topoctl does) or push the whole bundle",
        short(base_sources_sha256),
        short(running_sources_sha256)
    )]
    BaseChanged {
        /// The delta's base.
        base_generation: u64,
        /// The delta's base digest.
        base_sources_sha256: String,
        /// The running generation.
        running_generation: u64,
        /// Its digest.
        running_sources_sha256: String,
    },
    /// A listed file is neither carried nor in the base with that digest.
    #[error(
        "`{name}` (sha256 {}) is neither in the request nor the base generation's file of that name; send its text",
        short(sha256)
    )]
    MissingFile {
        /// The file.
        name: String,
        /// The digest the delta gave it.
        sha256: String,
    },
    /// A carried file's text does not have the digest the delta lists for it.
    #[error(
        "the text sent for `{name}` does not have the digest the delta lists for it (sha256 {listed}, the text's {actual})"
    )]
    DigestMismatch {
        /// The file.
        name: String,
        /// The digest listed.
        listed: String,
        /// The text's digest.
        actual: String,
    },
    /// A carried file is not listed, or a name is listed twice.
    #[error("`{name}` {what}; list every file of the new bundle once, in order")]
    Malformed {
        /// The file.
        name: String,
        /// What is wrong.
        what: &'static str,
    },
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// SHA-256 of a file's text, lower-case hex.
pub fn file_sha256(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// The digest of a bundle from its files' digests: SHA-256 over each file's name (length
/// first, so no two lists of names frame the same bytes) and text digest, in order.
pub fn bundle_sha256(files: &[SourceDigest]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update((file.name.len() as u64).to_be_bytes());
        hasher.update(file.name.as_bytes());
        hasher.update(file.sha256.as_bytes());
    }
    hex(&hasher.finalize())
}

/// The digests of `files`, in order.
pub fn digests(files: &[SourceFile]) -> Vec<SourceDigest> {
    files
        .iter()
        .map(|file| SourceDigest {
            name: file.name.clone(),
            sha256: file_sha256(&file.text),
        })
        .collect()
}

/// The view of `files` running as generation `generation`.
pub fn sources_view(generation: u64, files: &[SourceFile]) -> SourcesView {
    let files = digests(files);
    SourcesView {
        generation,
        sources_sha256: bundle_sha256(&files),
        files,
    }
}

impl BundleDelta {
    /// The delta that turns `base` into `new`: the files of `new` whose name and digest are not
    /// in the base (to send as the request's bundle), and the delta itself. `new_digests` are
    /// [`digests`]`(&new.sources)`, computed once when one bundle goes to many daemons.
    pub fn against(
        base: &SourcesView,
        new: &SourceBundle,
        new_digests: &[SourceDigest],
    ) -> (SourceBundle, BundleDelta) {
        let in_base: HashSet<(&str, &str)> = base
            .files
            .iter()
            .map(|file| (file.name.as_str(), file.sha256.as_str()))
            .collect();
        let changed = new
            .sources
            .iter()
            .zip(new_digests)
            .filter(|(_, digest)| {
                !in_base.contains(&(digest.name.as_str(), digest.sha256.as_str()))
            })
            .map(|(file, _)| file.clone())
            .collect();
        (
            SourceBundle { sources: changed },
            BundleDelta {
                base_generation: base.generation,
                base_sources_sha256: base.sources_sha256.clone(),
                files: new_digests.to_vec(),
            },
        )
    }

    /// The whole bundle this delta and the `carried` files stand for, given the running
    /// generation's files `running` and their view `running_view` ([`sources_view`] of them;
    /// the caller keeps it per generation so that the texts are not hashed on every push).
    /// The running texts are only read: the unchanged ones are copied out.
    pub fn resolve(
        &self,
        carried: SourceBundle,
        running_view: &SourcesView,
        running: &[SourceFile],
    ) -> Result<SourceBundle, DeltaError> {
        if self.base_generation != running_view.generation
            || self.base_sources_sha256 != running_view.sources_sha256
            || running_view.files.len() != running.len()
        {
            return Err(DeltaError::BaseChanged {
                base_generation: self.base_generation,
                base_sources_sha256: self.base_sources_sha256.clone(),
                running_generation: running_view.generation,
                running_sources_sha256: running_view.sources_sha256.clone(),
            });
        }
        let mut listed = HashSet::new();
        for file in &self.files {
            if !listed.insert(file.name.as_str()) {
                return Err(DeltaError::Malformed {
                    name: file.name.clone(),
                    what: "is listed twice",
                });
            }
        }
        let mut carried_by_name: HashMap<String, String> = HashMap::new();
        for file in carried.sources {
            if !listed.contains(file.name.as_str()) {
                return Err(DeltaError::Malformed {
                    name: file.name,
                    what: "is sent but not listed in the delta",
                });
            }
            if carried_by_name.contains_key(&file.name) {
                return Err(DeltaError::Malformed {
                    name: file.name,
                    what: "is sent twice",
                });
            }
            carried_by_name.insert(file.name, file.text);
        }
        let base_by_name: HashMap<&str, (&str, &str)> = running
            .iter()
            .zip(&running_view.files)
            .map(|(file, digest)| {
                (
                    file.name.as_str(),
                    (digest.sha256.as_str(), file.text.as_str()),
                )
            })
            .collect();
        let mut sources = Vec::with_capacity(self.files.len());
        for file in &self.files {
            let text = match carried_by_name.remove(&file.name) {
                Some(text) => {
                    let actual = file_sha256(&text);
                    if actual != file.sha256 {
                        return Err(DeltaError::DigestMismatch {
                            name: file.name.clone(),
                            listed: file.sha256.clone(),
                            actual,
                        });
                    }
                    text
                }
                None => match base_by_name.get(file.name.as_str()) {
                    Some((sha256, text)) if *sha256 == file.sha256 => (*text).to_owned(),
                    _ => {
                        return Err(DeltaError::MissingFile {
                            name: file.name.clone(),
                            sha256: file.sha256.clone(),
                        });
                    }
                },
            };
            sources.push(SourceFile {
                name: file.name.clone(),
                text,
            });
        }
        Ok(SourceBundle { sources })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bundle(files: &[(&str, &str)]) -> SourceBundle {
        SourceBundle {
            sources: files
                .iter()
                .map(|(name, text)| SourceFile::new(*name, *text))
                .collect(),
        }
    }

    fn delta(
        base: &SourceBundle,
        generation: u64,
        new: &SourceBundle,
    ) -> (SourceBundle, BundleDelta) {
        let view = sources_view(generation, &base.sources);
        BundleDelta::against(&view, new, &digests(&new.sources))
    }

    #[test]
    fn only_changed_files_travel_and_the_whole_bundle_comes_back_in_order() {
        let base = bundle(&[
            ("fleet.toml", "a"),
            ("services.toml", "b"),
            ("bindings.toml", "c"),
        ]);
        let new = bundle(&[
            ("services.toml", "b"),
            ("fleet.toml", "a2"),
            ("new.toml", "d"),
        ]);
        let (carried, delta) = delta(&base, 7, &new);
        let names: Vec<_> = carried
            .sources
            .iter()
            .map(|file| file.name.as_str())
            .collect();
        assert_eq!(names, ["fleet.toml", "new.toml"]);
        assert_eq!(
            delta
                .resolve(carried, &sources_view(7, &base.sources), &base.sources)
                .unwrap(),
            new
        );
    }

    #[test]
    fn a_delta_against_another_generation_or_other_files_is_refused() {
        let base = bundle(&[("fleet.toml", "a")]);
        let new = bundle(&[("fleet.toml", "a"), ("b.toml", "b")]);
        let (carried, delta) = delta(&base, 7, &new);
        let error = delta
            .resolve(
                carried.clone(),
                &sources_view(8, &base.sources),
                &base.sources,
            )
            .unwrap_err();
        assert!(matches!(
            error,
            DeltaError::BaseChanged {
                running_generation: 8,
                ..
            }
        ));
        assert!(error.to_string().contains("generation 7"), "{error}");
        // Same generation number, other files (a daemon whose state directory was replaced).
        let other = bundle(&[("fleet.toml", "x")]);
        assert!(matches!(
            delta
                .resolve(carried, &sources_view(7, &other.sources), &other.sources)
                .unwrap_err(),
            DeltaError::BaseChanged { .. }
        ));
    }

    #[test]
    fn a_text_that_does_not_match_its_digest_or_an_unlisted_file_is_refused() {
        let base = bundle(&[("fleet.toml", "a")]);
        let new = bundle(&[("fleet.toml", "a2")]);
        let (_, delta_made) = delta(&base, 1, &new);
        let error = delta_made
            .resolve(
                bundle(&[("fleet.toml", "tampered")]),
                &sources_view(1, &base.sources),
                &base.sources,
            )
            .unwrap_err();
        assert!(
            matches!(error, DeltaError::DigestMismatch { .. }),
            "{error}"
        );
        let error = delta_made
            .resolve(
                bundle(&[("fleet.toml", "a2"), ("extra.toml", "")]),
                &sources_view(1, &base.sources),
                &base.sources,
            )
            .unwrap_err();
        assert!(matches!(error, DeltaError::Malformed { .. }), "{error}");
        // A listed file the request does not carry and the base does not hold.
        let error = delta_made
            .resolve(
                SourceBundle::default(),
                &sources_view(1, &base.sources),
                &base.sources,
            )
            .unwrap_err();
        assert!(matches!(error, DeltaError::MissingFile { .. }), "{error}");
        let mut twice = delta_made.clone();
        twice.files.push(twice.files[0].clone());
        assert!(matches!(
            twice
                .resolve(
                    SourceBundle::default(),
                    &sources_view(1, &base.sources),
                    &base.sources
                )
                .unwrap_err(),
            DeltaError::Malformed { .. }
        ));
    }

    #[test]
    fn the_bundle_digest_frames_names() {
        let one = [SourceDigest {
            name: "ab".into(),
            sha256: file_sha256(""),
        }];
        let other = [SourceDigest {
            name: "a".into(),
            sha256: file_sha256(""),
        }];
        assert_ne!(bundle_sha256(&one), bundle_sha256(&other));
        assert_eq!(bundle_sha256(&[]).len(), 64);
    }

    fn files() -> impl Strategy<Value = Vec<(String, String)>> {
        // Few names and texts, so that bases and new bundles share, move and rename files.
        proptest::collection::vec(
            (
                prop::sample::select(vec!["a.toml", "b.toml", "c.toml", "d.toml", "e.toml"]),
                prop::sample::select(vec!["", "x", "y", "x\ny", "[[prefix]]"]),
            ),
            0..6,
        )
        .prop_map(|files| {
            let mut seen = HashSet::new();
            files
                .into_iter()
                .filter(|(name, _)| seen.insert(*name))
                .map(|(name, text)| (name.to_owned(), text.to_owned()))
                .collect()
        })
    }

    fn to_bundle(files: &[(String, String)]) -> SourceBundle {
        SourceBundle {
            sources: files
                .iter()
                .map(|(name, text)| SourceFile::new(name.clone(), text.clone()))
                .collect(),
        }
    }

    proptest! {
        /// Whatever the base and the new bundle, the delta resolves against its base to exactly
        /// the new bundle, carries no file the base already holds by name and digest, and is
        /// refused against any other set of files.
        #[test]
        fn a_delta_resolves_to_exactly_the_new_bundle(
            base in files(), new in files(), other in files(), generation in 0u64..4,
        ) {
            let (base, new, other) = (to_bundle(&base), to_bundle(&new), to_bundle(&other));
            let (carried, delta) = delta(&base, generation, &new);
            let base_view = sources_view(generation, &base.sources);
            for file in &carried.sources {
                let digest = SourceDigest { name: file.name.clone(), sha256: file_sha256(&file.text) };
                prop_assert!(!base_view.files.contains(&digest));
            }
            prop_assert_eq!(delta.resolve(carried.clone(), &sources_view(generation, &base.sources), &base.sources).unwrap(), new);
            let resolved_elsewhere = delta.resolve(carried, &sources_view(generation, &other.sources), &other.sources);
            if other != base {
                let refused = matches!(resolved_elsewhere, Err(DeltaError::BaseChanged { .. }));
                prop_assert!(refused);
            }
        }
    }
}
