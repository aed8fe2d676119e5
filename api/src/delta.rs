//! Delta pushes: a plan or apply that carries only the files that changed against the running
//! generation. The pusher first reads [`SourcesView`] (`GET /v1/sources`: the running
//! generation, its bundle digest and one digest per file), then sends the files whose text
//! differs in the request's bundle and a [`BundleDelta`] naming the base (generation and bundle
//! digest: a compare-and-swap) and every file of the new bundle, in order, with its digest. The
//! daemon rebuilds the whole bundle with [`BundleDelta::resolve`] before anything else sees it:
//! what is compiled, stored and audited is always a complete bundle.
//!
//! Owns: the digests ([`file_sha256`], [`bundle_sha256`]), the pusher's side
//! ([`BundleDelta::against`]) and the daemon's ([`BundleDelta::resolve`], files sent as edits
//! included: [`crate::patch`]), and the reasons a delta does not resolve ([`DeltaError`]).
//!
//! Must not touch: I/O. Pure functions over texts and digests.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::patch::{FilePatch, PatchError};
use crate::source::{SourceBundle, SourceFile, Text};

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
    /// Whether this daemon takes changed files as edits of its own ([`BundleDelta::patches`]);
    /// absent from an older daemon's view, which does not.
    #[serde(default)]
    pub takes_patches: bool,
}

/// What a delta push carries besides the changed files: the base it was made against and the
/// new bundle's files in order. A file listed here whose text the request neither carries nor
/// patches is the base's file of that name, which must have that digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleDelta {
    /// The generation the delta was made against; it must be the one running.
    pub base_generation: u64,
    /// That generation's [`bundle_sha256`]; it must match (compare-and-swap).
    pub base_sources_sha256: String,
    /// Every file of the new bundle, in order.
    pub files: Vec<SourceDigest>,
    /// Changed files sent as edits of the base's file of the same name (see [`crate::patch`]),
    /// when the pusher keeps a copy of that file: listed in `files`, with the digest the edited
    /// text must have, and not carried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<FilePatch>,
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
    /// A patched file's base is not the base generation's file of that name.
    #[error(
        "`{name}` is sent as edits of a text (sha256 {}) the base generation holds under no file of that name; send the file whole (topoctl does so by itself when this is refused)",
        short(base_sha256)
    )]
    PatchBase {
        /// The file.
        name: String,
        /// The digest the patch gave its base.
        base_sha256: String,
    },
    /// A patched file's edits do not apply to its base, or make another text than listed.
    #[error(
        "the edits sent for `{name}` do not make its text from the base generation's file: {error}; send the file whole (topoctl does so by itself when this is refused; `topoctl push --no-digest-cache` sends changed files whole)"
    )]
    Patch {
        /// The file.
        name: String,
        /// Why.
        error: PatchError,
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

/// A SHA-256 written as 64 lower-case hex digits (as [`is_sha256`] wants it), as bytes.
pub(crate) fn digest_bytes(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text
        .chars()
        .map(|digit| match digit {
            '0'..='9' | 'a'..='f' => digit
                .to_digit(16)
                .and_then(|value| u8::try_from(value).ok()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if digits.len() != 64 {
        return None;
    }
    let mut bytes = [0_u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
        *byte = pair.iter().fold(0, |value, digit| value << 4 | digit);
    }
    Some(bytes)
}

/// Bytes as lower-case hex (a SHA-256 as [`file_sha256`] writes it).
pub fn hex(bytes: &[u8]) -> String {
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

/// The digest of a bundle from its files' digests: SHA-256 over each file's name and text
/// digest (each length first, so no two lists frame the same bytes), in order.
pub fn bundle_sha256(files: &[SourceDigest]) -> String {
    let mut hasher = Sha256::new();
    for file in files {
        for part in [&file.name, &file.sha256] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex(&hasher.finalize())
}

/// The digests of `files`, in order.
pub fn digests(files: &[SourceFile]) -> Vec<SourceDigest> {
    digests_and_sha256(files).0
}

/// [`digests`], and each file's SHA-256 as bytes (what a compile takes, so that it does not
/// hash the texts again).
pub fn digests_and_sha256(files: &[SourceFile]) -> (Vec<SourceDigest>, Vec<[u8; 32]>) {
    let texts: Vec<&str> = files.iter().map(|file| file.text.as_str()).collect();
    let sha256 = sha256_each(&texts);
    let listed = files
        .iter()
        .zip(&sha256)
        .map(|(file, digest)| SourceDigest {
            name: file.name.clone(),
            sha256: hex(digest),
        })
        .collect();
    (listed, sha256)
}

/// Texts shorter than this are hashed on the calling thread.
pub(crate) const PARALLEL_HASH_BYTES: usize = 1 << 20;

/// The SHA-256 of each text, in order. The large ones are shared out, largest first, among
/// as many threads as there are cores (at most four): a topology is a few files of tens of
/// megabytes and many small ones, and is hashed on every push by the pusher and the daemon.
pub fn sha256_each(texts: &[&str]) -> Vec<[u8; 32]> {
    let sha256 = |text: &str| -> [u8; 32] { Sha256::digest(text.as_bytes()).into() };
    let mut large: Vec<usize> = (0..texts.len())
        .filter(|index| texts[*index].len() >= PARALLEL_HASH_BYTES)
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(large.len());
    if workers < 2 {
        return texts.iter().map(|text| sha256(text)).collect();
    }
    // Longest first, each to the least loaded worker.
    large.sort_unstable_by_key(|index| std::cmp::Reverse(texts[*index].len()));
    let mut shares: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); workers];
    for index in large {
        if let Some(share) = shares.iter_mut().min_by_key(|(load, _)| *load) {
            share.0 += texts[index].len();
            share.1.push(index);
        }
    }
    let mut digests: Vec<Option<[u8; 32]>> = vec![None; texts.len()];
    std::thread::scope(|scope| {
        // The calling thread hashes the first share and the small texts; a share whose thread
        // cannot be made (the process's limit reached) is hashed at the end.
        let own = shares.remove(0).1;
        let handles: Vec<_> = shares
            .into_iter()
            .filter_map(|(_, share)| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || {
                        share
                            .into_iter()
                            .map(|index| (index, sha256(texts[index])))
                            .collect::<Vec<_>>()
                    })
                    .ok()
            })
            .collect();
        for index in own {
            digests[index] = Some(sha256(texts[index]));
        }
        for (index, text) in texts.iter().enumerate() {
            if text.len() < PARALLEL_HASH_BYTES {
                digests[index] = Some(sha256(text));
            }
        }
        for handle in handles {
            let hashed = handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (index, digest) in hashed {
                digests[index] = Some(digest);
            }
        }
    });
    texts
        .iter()
        .zip(digests)
        .map(|(text, digest)| digest.unwrap_or_else(|| sha256(text)))
        .collect()
}

/// The view of `files` running as generation `generation`.
pub fn sources_view(generation: u64, files: &[SourceFile]) -> SourcesView {
    let files = digests(files);
    SourcesView {
        generation,
        sources_sha256: bundle_sha256(&files),
        files,
        takes_patches: true,
    }
}

/// The view of generation `generation` from its files' names and SHA-256 digests (as
/// [`file_sha256`] computes them, in bytes), without their texts.
pub fn sources_view_of_digests<'a>(
    generation: u64,
    files: impl IntoIterator<Item = (&'a str, [u8; 32])>,
) -> SourcesView {
    let files: Vec<SourceDigest> = files
        .into_iter()
        .map(|(name, digest)| SourceDigest {
            name: name.to_owned(),
            sha256: hex(&digest),
        })
        .collect();
    SourcesView {
        generation,
        sources_sha256: bundle_sha256(&files),
        files,
        takes_patches: true,
    }
}

/// Whether `digest` is a SHA-256 as [`file_sha256`] writes it (64 lower-case hex digits).
pub fn is_sha256(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

impl BundleDelta {
    /// The delta that turns `base` into `new`: the files of `new` whose name and digest are not
    /// in the base (to send as the request's bundle), and the delta itself. `new_digests` are
    /// [`digests`]`(&new.sources)`, computed once when one bundle goes to many daemons. `None`
    /// when two files of `new` have the same name (a delta names files by name: send the whole
    /// bundle).
    pub fn against(
        base: &SourcesView,
        new: &SourceBundle,
        new_digests: &[SourceDigest],
    ) -> Option<(SourceBundle, BundleDelta)> {
        let (changed, delta) = BundleDelta::changed(base, new_digests)?;
        let sources = changed
            .into_iter()
            .filter_map(|index| new.sources.get(index).cloned())
            .collect();
        Some((SourceBundle { sources }, delta))
    }

    /// [`BundleDelta::against`] from the new bundle's digests alone: the indices (into
    /// `new_digests`) of the files to send, and the delta.
    pub fn changed(
        base: &SourcesView,
        new_digests: &[SourceDigest],
    ) -> Option<(Vec<usize>, BundleDelta)> {
        let mut names = HashSet::new();
        if !new_digests
            .iter()
            .all(|file| names.insert(file.name.as_str()))
        {
            return None;
        }
        let in_base: HashSet<(&str, &str)> = base
            .files
            .iter()
            .map(|file| (file.name.as_str(), file.sha256.as_str()))
            .collect();
        let changed = new_digests
            .iter()
            .enumerate()
            .filter(|(_, digest)| {
                !in_base.contains(&(digest.name.as_str(), digest.sha256.as_str()))
            })
            .map(|(index, _)| index)
            .collect();
        Some((
            changed,
            BundleDelta {
                base_generation: base.generation,
                base_sources_sha256: base.sources_sha256.clone(),
                files: new_digests.to_vec(),
                patches: Vec::new(),
            },
        ))
    }

    /// Each listed file's SHA-256 as bytes, in order (`None` when one is not 64 lower-case hex
    /// digits, which [`BundleDelta::resolve`] refuses too).
    /// Once the delta resolved, each is the SHA-256 of its file in the resolved bundle: the
    /// carried texts were checked against it and the others taken from the base by it, so a
    /// compile may use them instead of hashing the texts again.
    pub fn file_digests(&self) -> Option<Vec<[u8; 32]>> {
        self.files
            .iter()
            .map(|file| digest_bytes(&file.sha256))
            .collect()
    }

    /// The files this delta lists, checked: each name once, each digest a SHA-256.
    fn checked_files(&self) -> Result<HashSet<&str>, DeltaError> {
        let mut listed = HashSet::new();
        for file in &self.files {
            if !is_sha256(&file.sha256) {
                return Err(DeltaError::Malformed {
                    name: file.name.clone(),
                    what: "is listed with a digest that is not 64 lower-case hex digits",
                });
            }
            if !listed.insert(file.name.as_str()) {
                return Err(DeltaError::Malformed {
                    name: file.name.clone(),
                    what: "is listed twice",
                });
            }
        }
        Ok(listed)
    }

    /// The view of the running generation `running_generation`'s files `running` (hashed here:
    /// what is copied out is checked against the digest the pusher listed, whatever a caller
    /// cached), and the whole bundle this delta and the `carried` files stand for. The running
    /// files are taken by value: the unchanged texts move into the bundle, not copied (a
    /// topology's files are tens of megabytes).
    pub fn resolve(
        &self,
        carried: SourceBundle,
        running_generation: u64,
        running: Vec<SourceFile>,
    ) -> (SourcesView, Result<SourceBundle, DeltaError>) {
        let running_view = sources_view(running_generation, &running);
        let resolved = self.resolve_against(carried, &running_view, running);
        (running_view, resolved)
    }

    /// [`BundleDelta::resolve`] with the running texts' SHA-256 already known (`digests`, one
    /// per file in order, lower-case hex, each checked against its text by the caller — the
    /// daemon's state directory checks every text it reads). Digests that do not pair with
    /// `running` one to one are ignored and the texts hashed.
    pub fn resolve_with_digests(
        &self,
        carried: SourceBundle,
        running_generation: u64,
        running: Vec<SourceFile>,
        digests: &[String],
    ) -> (SourcesView, Result<SourceBundle, DeltaError>) {
        let Some(running_view) = digested_view(running_generation, &running, digests) else {
            return self.resolve(carried, running_generation, running);
        };
        let resolved = self.resolve_against(carried, &running_view, running);
        (running_view, resolved)
    }

    /// [`BundleDelta::resolve_with_digests`], except that the texts its edits make are not
    /// hashed: with the bundle come the places of those files, whose listed digests the
    /// caller must check before it trusts them (the daemon hashes them beside the compile, as
    /// it stores them: hashing a 17 MB text is ≈ 10 ms on the way to the wire). Such a file
    /// whose text is not the one listed is then [`DeltaError::Patch`] with
    /// [`PatchError::OtherText`]. Without digests that pair with `running`, every text is
    /// hashed here, and no place is handed back.
    /// Each such text is built by `build` from its size and pieces ([`owned_text`] builds a
    /// `String`).
    pub fn resolve_leaving_patched_unhashed(
        &self,
        carried: SourceBundle,
        running_generation: u64,
        running: Vec<SourceFile>,
        digests: &[String],
        build: BuildText<'_>,
    ) -> (SourcesView, Result<(SourceBundle, Vec<usize>), DeltaError>) {
        let Some(running_view) = digested_view(running_generation, &running, digests) else {
            let (view, resolved) = self.resolve(carried, running_generation, running);
            return (view, resolved.map(|bundle| (bundle, Vec::new())));
        };
        let resolved = self.resolve_hashing(carried, &running_view, running, Some(build));
        (running_view, resolved)
    }

    fn resolve_against(
        &self,
        carried: SourceBundle,
        running_view: &SourcesView,
        running: Vec<SourceFile>,
    ) -> Result<SourceBundle, DeltaError> {
        self.resolve_hashing(carried, running_view, running, None)
            .map(|(bundle, _)| bundle)
    }

    /// The whole bundle, and the places of the files made by edits that were not hashed: those
    /// `build_unhashed` builds (none without it: every text is hashed and checked here).
    fn resolve_hashing(
        &self,
        carried: SourceBundle,
        running_view: &SourcesView,
        mut running: Vec<SourceFile>,
        build_unhashed: Option<BuildText<'_>>,
    ) -> Result<(SourceBundle, Vec<usize>), DeltaError> {
        if !self.is_against(running_view) {
            return Err(self.base_changed(running_view));
        }
        let listed = self.checked_files()?;
        let mut carried_by_name: HashMap<String, Text> = HashMap::new();
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
        let mut patched_by_name: HashMap<&str, &FilePatch> = HashMap::new();
        for patch in &self.patches {
            let what = if !listed.contains(patch.name.as_str()) {
                Some("is sent as edits but not listed in the delta")
            } else if carried_by_name.contains_key(&patch.name) {
                Some("is sent both whole and as edits")
            } else if patched_by_name.insert(&patch.name, patch).is_some() {
                Some("is sent as edits twice")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(DeltaError::Malformed {
                    name: patch.name.clone(),
                    what,
                });
            }
        }
        // By name and digest: a base may hold two files of one name (pushed whole). Each
        // (name, digest) is listed at most once (names are), so each text moves out once.
        let base: HashMap<(&str, &str), usize> = running_view
            .files
            .iter()
            .take(running.len())
            .enumerate()
            .map(|(index, file)| ((file.name.as_str(), file.sha256.as_str()), index))
            .collect();
        let mut sources = Vec::with_capacity(self.files.len());
        let mut unhashed = Vec::new();
        for file in &self.files {
            let patched = patched_by_name
                .get(file.name.as_str())
                .map(|patch| patched_text(patch, &base, &running, build_unhashed))
                .transpose()?;
            let text = match patched {
                Some((text, None)) => {
                    unhashed.push(sources.len());
                    text
                }
                Some((text, Some(actual))) => {
                    if actual != file.sha256 {
                        return Err(DeltaError::Patch {
                            name: file.name.clone(),
                            error: PatchError::OtherText {
                                listed: file.sha256.clone(),
                                actual,
                            },
                        });
                    }
                    text
                }
                None => match carried_by_name.remove(&file.name) {
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
                    None => match base
                        .get(&(file.name.as_str(), file.sha256.as_str()))
                        .and_then(|index| running.get_mut(*index))
                    {
                        Some(base_file) => std::mem::take(&mut base_file.text),
                        None => {
                            return Err(DeltaError::MissingFile {
                                name: file.name.clone(),
                                sha256: file.sha256.clone(),
                            });
                        }
                    },
                },
            };
            sources.push(SourceFile {
                name: file.name.clone(),
                text,
            });
        }
        Ok((SourceBundle { sources }, unhashed))
    }

    /// The refusal of this delta against `running_view`, which is not its base.
    pub fn base_changed(&self, running_view: &SourcesView) -> DeltaError {
        DeltaError::BaseChanged {
            base_generation: self.base_generation,
            base_sources_sha256: self.base_sources_sha256.clone(),
            running_generation: running_view.generation,
            running_sources_sha256: running_view.sources_sha256.clone(),
        }
    }

    /// Whether this delta was made against `view` (a cheap check before the texts are read).
    pub fn is_against(&self, view: &SourcesView) -> bool {
        self.base_generation == view.generation && self.base_sources_sha256 == view.sources_sha256
    }
}

/// How a text made by edits is built from its size in bytes and its pieces, in order.
pub type BuildText<'a> = &'a dyn Fn(usize, &mut crate::patch::Pieces<'_>) -> Text;

/// A text made by edits built as a `String` of its own.
pub fn owned_text(size: usize, pieces: &mut crate::patch::Pieces<'_>) -> Text {
    let mut text = String::with_capacity(size);
    pieces.for_each(|piece| text.push_str(piece));
    Text::from(text)
}

/// The view of the running generation `generation`'s files `running` whose SHA-256 are
/// `digests` (checked by the caller), or `None` when they do not pair one to one.
fn digested_view(
    generation: u64,
    running: &[SourceFile],
    digests: &[String],
) -> Option<SourcesView> {
    if digests.len() != running.len() {
        return None;
    }
    let files: Vec<SourceDigest> = running
        .iter()
        .zip(digests)
        .map(|(file, sha256)| SourceDigest {
            name: file.name.clone(),
            sha256: sha256.clone(),
        })
        .collect();
    Some(SourcesView {
        generation,
        sources_sha256: bundle_sha256(&files),
        files,
        takes_patches: true,
    })
}

/// The text `patch` makes of its base, the running file `base` finds by name and digest, and
/// its SHA-256 (`None` when not `hash`).
fn patched_text(
    patch: &FilePatch,
    base: &HashMap<(&str, &str), usize>,
    running: &[SourceFile],
    unhashed: Option<BuildText<'_>>,
) -> Result<(Text, Option<String>), DeltaError> {
    let base_text = base
        .get(&(patch.name.as_str(), patch.base_sha256.as_str()))
        .and_then(|index| running.get(*index))
        .ok_or_else(|| DeltaError::PatchBase {
            name: patch.name.clone(),
            base_sha256: patch.base_sha256.clone(),
        })?;
    let made = match unhashed {
        None => patch
            .apply_hashed(&base_text.text)
            .map(|(text, digest)| (Text::from(text), Some(hex(&digest)))),
        Some(build) => patch
            .apply_built(&base_text.text, build)
            .map(|text| (text, None)),
    };
    made.map_err(|error| DeltaError::Patch {
        name: patch.name.clone(),
        error,
    })
}

/// The base the `resolve_delta` fuzz target resolves against (generation 1).
#[doc(hidden)]
pub fn fuzz_base() -> Vec<SourceFile> {
    vec![
        SourceFile::new("fleet.toml", "[[location]]\nname = \"ams01\"\n"),
        SourceFile::new("services.toml", "[[service]]\nname = \"web\"\n"),
    ]
}

/// The `resolve_delta` fuzz target and its corpus replay: arbitrary bytes as the body of a plan
/// or apply, read as the control API reads it; a delta in it is resolved against
/// [`fuzz_base`] (its base fields set to that base's, so that the rest is explored). Must never
/// panic, and a delta that resolves gives exactly the files it lists, in order.
#[doc(hidden)]
pub fn fuzz_resolve(data: &[u8]) {
    let Ok(request) = serde_json::from_slice::<crate::ApplyRequest>(data) else {
        return;
    };
    let Some(delta) = request.delta else {
        return;
    };
    let base = fuzz_base();
    let view = sources_view(1, &base);
    let delta = BundleDelta {
        base_generation: view.generation,
        base_sources_sha256: view.sources_sha256.clone(),
        ..delta
    };
    let base_digests: Vec<String> = base.iter().map(|file| file_sha256(&file.text)).collect();
    let (_, unhashed) = delta.resolve_leaving_patched_unhashed(
        request.bundle.clone(),
        1,
        base.clone(),
        &base_digests,
        &owned_text,
    );
    let (_, resolved) = delta.resolve(request.bundle, 1, base);
    // Left unhashed, the texts edits made are the same; only their digests are not checked.
    match (&resolved, unhashed) {
        (Ok(bundle), Ok((same, _))) => assert_eq!(*bundle, same),
        (
            Err(DeltaError::Patch {
                error: PatchError::OtherText { .. },
                ..
            }),
            Ok((_, places)),
        ) => assert!(!places.is_empty()),
        (Err(error), Err(other)) => assert_eq!(error.to_string(), other.to_string()),
        (resolved, unhashed) => panic!("{resolved:?} but unhashed {unhashed:?}"),
    }
    if let Ok(bundle) = resolved {
        assert_eq!(digests(&bundle.sources), delta.files);
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
    ) -> Option<(SourceBundle, BundleDelta)> {
        let view = sources_view(generation, &base.sources);
        BundleDelta::against(&view, new, &digests(&new.sources))
    }

    /// `delta.resolve` with the error alone.
    fn resolve(
        delta: &BundleDelta,
        carried: SourceBundle,
        generation: u64,
        running: &SourceBundle,
    ) -> Result<SourceBundle, DeltaError> {
        let (view, resolved) = delta.resolve(carried, generation, running.sources.clone());
        assert_eq!(view, sources_view(generation, &running.sources));
        resolved
    }

    /// The bytes handed to a compile are the digests listed, each its text's SHA-256, in order
    /// (large texts are hashed on other threads where there are several cores).
    #[test]
    fn the_sha256_bytes_are_the_listed_digests_of_the_texts() {
        let large = "x".repeat(PARALLEL_HASH_BYTES + 1);
        let other = "y".repeat(PARALLEL_HASH_BYTES + 7);
        let files = bundle(&[
            ("a.toml", "a"),
            ("b.toml", &large),
            ("c.toml", ""),
            ("d", &other),
        ]);
        let (listed, sha256) = digests_and_sha256(&files.sources);
        assert_eq!(sha256.len(), files.sources.len());
        assert_eq!(
            hex(&sha256[0]),
            "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",
            "SHA-256 of \"a\""
        );
        for ((file, digest), bytes) in files.sources.iter().zip(&listed).zip(&sha256) {
            assert_eq!(digest.name, file.name);
            assert_eq!(
                *bytes,
                <[u8; 32]>::from(Sha256::digest(file.text.as_bytes()))
            );
            assert_eq!(digest.sha256, hex(bytes));
        }
    }

    #[test]
    fn a_view_from_digests_is_the_view_from_texts() {
        let files = bundle(&[("fleet.toml", "a"), ("b.toml", "ü\n"), ("b.toml", "")]);
        let digests: Vec<(&str, [u8; 32])> = files
            .sources
            .iter()
            .map(|file| {
                (
                    file.name.as_str(),
                    Sha256::digest(file.text.as_bytes()).into(),
                )
            })
            .collect();
        assert_eq!(
            sources_view_of_digests(3, digests),
            sources_view(3, &files.sources)
        );
    }

    #[test]
    fn texts_hashed_on_threads_have_their_own_digests_in_order() {
        let large: Vec<String> = (0..5_u8)
            .map(|seed| {
                char::from(b'a' + seed)
                    .to_string()
                    .repeat(PARALLEL_HASH_BYTES + usize::from(seed))
            })
            .collect();
        let mut texts: Vec<&str> = vec!["", "small"];
        texts.extend(large.iter().map(String::as_str));
        texts.insert(3, "between");
        let expected: Vec<[u8; 32]> = texts
            .iter()
            .map(|text| Sha256::digest(text.as_bytes()).into())
            .collect();
        assert_eq!(sha256_each(&texts), expected);
        assert_eq!(sha256_each(&[]), Vec::<[u8; 32]>::new());
    }

    #[test]
    fn file_digests_are_the_listed_digests_as_bytes() {
        let text = "[[prefix]]\n";
        let mut delta = BundleDelta {
            base_generation: 1,
            base_sources_sha256: String::new(),
            files: vec![SourceDigest {
                name: "a.toml".into(),
                sha256: file_sha256(text),
            }],
            patches: Vec::new(),
        };
        let expected: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        assert_eq!(delta.file_digests(), Some(vec![expected]));
        for bad in [
            "+f".repeat(32),
            "ab".repeat(31),
            "é".repeat(32),
            "AB".repeat(32),
            "ab".repeat(33),
        ] {
            delta.files[0].sha256 = bad;
            assert_eq!(delta.file_digests(), None);
        }
        delta.files[0].sha256 = "ab".repeat(32);
        assert_eq!(delta.file_digests(), Some(vec![[0xab; 32]]));
    }

    /// A delta whose changed file travels as edits of the base's file resolves to the same
    /// bundle as the one carrying it whole; edits that name another base, do not apply, make
    /// another text, or come with the text itself are refused, naming the file.
    #[test]
    fn a_file_sent_as_edits_resolves_as_if_sent_whole() {
        let old_bindings: String = (0..200)
            .map(|index| format!("[[binding]]\ncidr = \"10.0.{index}.0/24\"\nservice = \"a\"\n\n"))
            .collect();
        let new_bindings = old_bindings.replacen("service = \"a\"", "service = \"b\"", 3);
        let running = bundle(&[("fleet.toml", "f"), ("bindings.toml", &old_bindings)]);
        let new = bundle(&[
            ("fleet.toml", "f2"),
            ("bindings.toml", &new_bindings),
            ("added.toml", "x"),
        ]);
        let (carried, delta) = delta(&running, 4, &new).unwrap();
        let whole = resolve(&delta, carried.clone(), 4, &running).unwrap();
        assert_eq!(whole, new);
        let patch = FilePatch::between(
            "bindings.toml",
            &file_sha256(&old_bindings),
            &old_bindings,
            &new_bindings,
        )
        .unwrap();
        assert_eq!(patch.base_sha256, file_sha256(&old_bindings));
        assert_eq!(patch.edits.len(), 3);
        let patched_delta = BundleDelta {
            patches: vec![patch.clone()],
            ..delta.clone()
        };
        let without_bindings = SourceBundle {
            sources: carried
                .sources
                .iter()
                .filter(|file| file.name != "bindings.toml")
                .cloned()
                .collect(),
        };
        assert_eq!(
            resolve(&patched_delta, without_bindings.clone(), 4, &running).unwrap(),
            new
        );
        // Through JSON, as it travels.
        let travelled: BundleDelta =
            serde_json::from_str(&serde_json::to_string(&patched_delta).unwrap()).unwrap();
        assert_eq!(travelled, patched_delta);
        let refused = |patches: Vec<FilePatch>, carried: &SourceBundle| {
            let delta = BundleDelta {
                patches,
                ..delta.clone()
            };
            resolve(&delta, carried.clone(), 4, &running).unwrap_err()
        };
        let other_base = FilePatch {
            base_sha256: file_sha256("another text"),
            ..patch.clone()
        };
        assert!(matches!(
            refused(vec![other_base], &without_bindings),
            DeltaError::PatchBase { name, .. } if name == "bindings.toml"
        ));
        let mut past_end = patch.clone();
        past_end.edits.push(crate::patch::TextEdit {
            at: old_bindings.len() as u64 + 1,
            remove: 0,
            insert: String::new(),
        });
        assert!(matches!(
            refused(vec![past_end], &without_bindings),
            DeltaError::Patch { name, error: PatchError::PastEnd { .. } } if name == "bindings.toml"
        ));
        let mut other_text = patch.clone();
        other_text.edits[0].insert.push('#');
        assert!(matches!(
            refused(vec![other_text.clone()], &without_bindings),
            DeltaError::Patch { name, error: PatchError::OtherText { .. } } if name == "bindings.toml"
        ));
        // Left unhashed: the same bundle, with the place of the file the edits made (whose
        // digest the caller checks), the other text included; refusals otherwise the same.
        let running_digests: Vec<String> = running
            .sources
            .iter()
            .map(|file| file_sha256(&file.text))
            .collect();
        let unhashed = |patches: Vec<FilePatch>, carried: &SourceBundle| {
            let delta = BundleDelta {
                patches,
                ..delta.clone()
            };
            let (view, resolved) = delta.resolve_leaving_patched_unhashed(
                carried.clone(),
                4,
                running.sources.clone(),
                &running_digests,
                &owned_text,
            );
            assert_eq!(view, sources_view(4, &running.sources));
            resolved
        };
        let place = new
            .sources
            .iter()
            .position(|file| file.name == "bindings.toml")
            .unwrap();
        assert_eq!(
            unhashed(vec![patch.clone()], &without_bindings).unwrap(),
            (new.clone(), vec![place])
        );
        let (made, places) = unhashed(vec![other_text.clone()], &without_bindings).unwrap();
        assert_eq!(places, vec![place]);
        assert_ne!(
            file_sha256(&made.sources[place].text),
            delta.files[place].sha256
        );
        assert!(matches!(
            unhashed(vec![patch.clone()], &carried).unwrap_err(),
            DeltaError::Malformed { .. }
        ));
        // Without digests that pair with the running files, everything is hashed here.
        let short = delta.resolve_leaving_patched_unhashed(
            without_bindings.clone(),
            4,
            running.sources.clone(),
            &running_digests[..1],
            &owned_text,
        );
        let patched_short = BundleDelta {
            patches: vec![other_text],
            ..delta.clone()
        };
        assert!(
            short.1.is_err(),
            "the delta without its patch lacks the file"
        );
        let (_, hashed) = patched_short.resolve_leaving_patched_unhashed(
            without_bindings.clone(),
            4,
            running.sources.clone(),
            &running_digests[..1],
            &owned_text,
        );
        assert!(matches!(
            hashed.unwrap_err(),
            DeltaError::Patch {
                error: PatchError::OtherText { .. },
                ..
            }
        ));
        assert!(matches!(
            refused(vec![patch.clone()], &carried),
            DeltaError::Malformed {
                what: "is sent both whole and as edits",
                ..
            }
        ));
        assert!(matches!(
            refused(vec![patch.clone(), patch.clone()], &without_bindings),
            DeltaError::Malformed {
                what: "is sent as edits twice",
                ..
            }
        ));
        let unlisted = FilePatch {
            name: "unlisted.toml".into(),
            ..patch
        };
        assert!(matches!(
            refused(vec![unlisted], &without_bindings),
            DeltaError::Malformed {
                what: "is sent as edits but not listed in the delta",
                ..
            }
        ));
    }

    #[test]
    fn resolving_with_known_digests_is_resolving_with_hashed_texts() {
        let base = bundle(&[("fleet.toml", "a"), ("b.toml", "b"), ("b.toml", "c")]);
        let new = bundle(&[("b.toml", "c"), ("fleet.toml", "a2")]);
        let (carried, delta) = delta(&base, 7, &new).unwrap();
        let digests: Vec<String> = base
            .sources
            .iter()
            .map(|file| file_sha256(&file.text))
            .collect();
        let hashed = delta.resolve(carried.clone(), 7, base.sources.clone());
        let known = delta.resolve_with_digests(carried.clone(), 7, base.sources.clone(), &digests);
        assert_eq!(known, hashed);
        assert_eq!(known.1.unwrap(), new);
        // Digests that do not pair with the files are not used.
        let short = delta.resolve_with_digests(carried, 7, base.sources.clone(), &digests[..1]);
        assert_eq!(short, hashed);
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
        let (carried, delta) = delta(&base, 7, &new).unwrap();
        let names: Vec<_> = carried
            .sources
            .iter()
            .map(|file| file.name.as_str())
            .collect();
        assert_eq!(names, ["fleet.toml", "new.toml"]);
        assert_eq!(resolve(&delta, carried, 7, &base).unwrap(), new);
    }

    #[test]
    fn a_delta_against_another_generation_or_other_files_is_refused() {
        let base = bundle(&[("fleet.toml", "a")]);
        let new = bundle(&[("fleet.toml", "a"), ("b.toml", "b")]);
        let (carried, delta) = delta(&base, 7, &new).unwrap();
        let error = resolve(&delta, carried.clone(), 8, &base).unwrap_err();
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
            resolve(&delta, carried, 7, &other).unwrap_err(),
            DeltaError::BaseChanged { .. }
        ));
    }

    #[test]
    fn a_text_that_does_not_match_its_digest_or_an_unlisted_file_is_refused() {
        let base = bundle(&[("fleet.toml", "a")]);
        let new = bundle(&[("fleet.toml", "a2")]);
        let (_, made) = delta(&base, 1, &new).unwrap();
        let error = resolve(&made, bundle(&[("fleet.toml", "tampered")]), 1, &base).unwrap_err();
        assert!(
            matches!(error, DeltaError::DigestMismatch { .. }),
            "{error}"
        );
        let error = resolve(
            &made,
            bundle(&[("fleet.toml", "a2"), ("extra.toml", "")]),
            1,
            &base,
        )
        .unwrap_err();
        assert!(matches!(error, DeltaError::Malformed { .. }), "{error}");
        // A listed file the request does not carry and the base does not hold.
        let error = resolve(&made, SourceBundle::default(), 1, &base).unwrap_err();
        assert!(matches!(error, DeltaError::MissingFile { .. }), "{error}");
        let mut twice = made.clone();
        twice.files.push(twice.files[0].clone());
        assert!(matches!(
            resolve(&twice, SourceBundle::default(), 1, &base).unwrap_err(),
            DeltaError::Malformed { .. }
        ));
        let mut not_a_digest = made.clone();
        not_a_digest.files[0].sha256 = "A".repeat(64);
        assert!(matches!(
            resolve(&not_a_digest, SourceBundle::default(), 1, &base).unwrap_err(),
            DeltaError::Malformed { .. }
        ));
    }

    #[test]
    fn a_bundle_with_two_files_of_one_name_has_no_delta() {
        let base = bundle(&[("x.toml", "a")]);
        let new = bundle(&[("x.toml", "a"), ("x.toml", "b")]);
        assert!(delta(&base, 1, &new).is_none());
    }

    #[test]
    fn the_bundle_digest_frames_names_and_digests() {
        let digest = |name: &str, sha256: &str| SourceDigest {
            name: name.into(),
            sha256: sha256.into(),
        };
        assert_ne!(
            bundle_sha256(&[digest("ab", "")]),
            bundle_sha256(&[digest("a", "")])
        );
        assert_ne!(
            bundle_sha256(&[digest("a", "bc"), digest("d", "")]),
            bundle_sha256(&[digest("a", "b"), digest("cd", "")])
        );
        assert_eq!(bundle_sha256(&[]).len(), 64);
    }

    fn files() -> impl Strategy<Value = Vec<(String, String)>> {
        // Few names and texts, so that bases and new bundles share, move, rename and repeat
        // files (a whole bundle may hold two files of one name).
        proptest::collection::vec(
            (
                prop::sample::select(vec!["a.toml", "b.toml", "c.toml", "d.toml"]),
                prop::sample::select(vec!["", "x", "y", "x\ny", "[[prefix]]"]),
            ),
            0..6,
        )
        .prop_map(|files| {
            files
                .into_iter()
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
        /// Whatever the base and the new bundle: a delta exists when the new bundle's names are
        /// unique; it resolves against its base to exactly the new bundle, carries no file the
        /// base holds by name and digest, and is refused against any other set of files.
        #[test]
        fn a_delta_resolves_to_exactly_the_new_bundle(
            base in files(), new in files(), other in files(), generation in 0u64..4,
        ) {
            let (base, new, other) = (to_bundle(&base), to_bundle(&new), to_bundle(&other));
            let unique = new.sources.iter().map(|file| &file.name).collect::<HashSet<_>>().len()
                == new.sources.len();
            let made = delta(&base, generation, &new);
            prop_assert_eq!(made.is_some(), unique);
            let Some((carried, delta)) = made else { return Ok(()); };
            let base_view = sources_view(generation, &base.sources);
            for file in &carried.sources {
                let digest = SourceDigest { name: file.name.clone(), sha256: file_sha256(&file.text) };
                prop_assert!(!base_view.files.contains(&digest));
            }
            prop_assert_eq!(resolve(&delta, carried.clone(), generation, &base).unwrap(), new);
            if other != base {
                let refused = matches!(
                    resolve(&delta, carried, generation, &other),
                    Err(DeltaError::BaseChanged { .. })
                );
                prop_assert!(refused);
            }
        }
    }
}
