//! Delta pushes at the control API: the running generation's file digests (`GET /v1/sources`,
//! kept by the compiled topology: no read of the state directory) and the resolution of a plan
//! or apply that carries a [`BundleDelta`] into the whole bundle, before the engine sees it.
//! The engine, the state directory and the audit log only ever see complete bundles. The
//! running topology does not keep its texts: they are read from the state directory, on the
//! blocking pool (the large ones mapped, not copied: see `state_store::sources`).
//!
//! The texts a delta's edits make are built in memory mapped for them ([`built_text`]).
//!
//! Owns: the per-generation digest cache, the quoted sizes of the last resolved bundle's texts
//! (for the body limit). Must not touch: the engine's state (it reads the
//! running topology and the store through shared handles), what the bundle means.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use hyper::StatusCode;
use tokio::sync::Semaphore;
use topologyd_api::delta::{sources_view, sources_view_of_digests};
use topologyd_api::{BundleDelta, DeltaError, SourceBundle, SourcesView};
use topologyd_topology::Topology;

use super::answer::Answer;
use crate::state_store::StateStore;

/// The running generation as a delta is resolved against it: its number, its compiled
/// topology (the cache's key) and the store holding its texts.
pub(super) type RunningGeneration = (u64, Arc<Topology>, Arc<StateStore>);

/// The digests of the running generation's files, kept for the topology they were computed
/// from (a weak handle: the cache never keeps an old topology alive), and the permits that
/// bound how many resolutions read the state directory at once.
#[derive(Debug)]
pub(super) struct SourcesCache {
    cached: Mutex<Option<(Weak<Topology>, Arc<SourcesView>)>>,
    reads: Arc<Semaphore>,
    /// The size as a JSON string of each text of the last bundle a delta resolved to, by
    /// SHA-256 (each text checked against its digest: those edits made once their compile
    /// checked them, see [`SourcesCache::learn_sizes`]): a delta's unchanged files are counted
    /// once, not at every push, and a file sent as edits is counted from its base's size and
    /// the edits.
    quoted_sizes: Mutex<HashMap<[u8; 32], u64>>,
}

/// At most this many delta resolutions (or digest computations, for a topology that keeps no
/// digests) read the running generation's texts at once; more wait.
const CONCURRENT_READS: usize = 2;

impl Default for SourcesCache {
    fn default() -> SourcesCache {
        SourcesCache {
            cached: Mutex::default(),
            reads: Arc::new(Semaphore::new(CONCURRENT_READS)),
            quoted_sizes: Mutex::default(),
        }
    }
}

impl SourcesCache {
    /// Learns the sizes of texts made by edits (a [`Resolved`]'s), once a compile checked
    /// their digests: the next delta made against them counts them from their size.
    pub(super) fn learn_sizes(&self, sizes: Vec<([u8; 32], u64)>) {
        if let Ok(mut known) = self.quoted_sizes.lock() {
            known.extend(sizes);
        }
    }

    fn get(&self, generation: u64, topology: &Arc<Topology>) -> Option<Arc<SourcesView>> {
        let cached = self.cached.lock().ok()?;
        let (weak, view) = cached.as_ref()?;
        (Weak::ptr_eq(weak, &Arc::downgrade(topology)) && view.generation == generation)
            .then(|| Arc::clone(view))
    }

    fn put(&self, topology: &Arc<Topology>, view: SourcesView) -> Arc<SourcesView> {
        let view = Arc::new(view);
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((Arc::downgrade(topology), Arc::clone(&view)));
        }
        view
    }

    /// `GET /v1/sources`: the cached view, or one made from the digests the compiled topology
    /// keeps of its texts, or (a topology that keeps none) one computed from the stored texts.
    pub(super) async fn view(
        &self,
        (generation, topology, store): RunningGeneration,
    ) -> Result<Arc<SourcesView>, Answer> {
        if let Some(view) = self.get(generation, &topology) {
            return Ok(view);
        }
        if let Some(digests) = topology.source_digests() {
            return Ok(self.put(&topology, sources_view_of_digests(generation, digests)));
        }
        let permit = Arc::clone(&self.reads)
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        // Another request may have computed it meanwhile.
        if let Some(view) = self.get(generation, &topology) {
            return Ok(view);
        }
        // The permit goes with the blocking work: a request dropped meanwhile (its client
        // gone) still counts against the bound until the read is over.
        let view = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            store
                .read(generation)
                .map(|stored| sources_view(generation, &stored.bundle.sources))
        })
        .await
        .map_err(|error| internal(format!("digesting the running sources failed: {error}")))?
        .map_err(|error| unavailable(generation, &error))?;
        Ok(self.put(&topology, view))
    }
}

/// A delta resolved into a whole bundle.
#[derive(Debug)]
pub(super) struct Resolved {
    pub(super) bundle: SourceBundle,
    /// The places of the files made by edits, whose listed digests are still to be checked
    /// (the compile job does).
    pub(super) unchecked: Vec<usize>,
    /// Those files' sizes as JSON by their listed digests, to learn once they are checked
    /// ([`SourcesCache::learn_sizes`] after a successful answer).
    pub(super) sizes_once_checked: Vec<([u8; 32], u64)>,
}

/// The whole bundle a request carrying `delta` stands for: the files it lists, the changed
/// ones from `bundle` and the others copied from the running generation (each checked against
/// the digest listed, but for the files made by edits: see [`Resolved`]). A delta made against another generation is a conflict
/// (409 `base_changed`, told before the store is read when the digests are cached); one that
/// does not add up is invalid (400); one whose whole bundle is larger than `limit` (the
/// caller's body limit) is refused as that body would be (413).
pub(super) async fn resolve(
    cache: &SourcesCache,
    bundle: SourceBundle,
    delta: BundleDelta,
    (generation, topology, store): RunningGeneration,
    limit: u64,
) -> Result<Resolved, Answer> {
    if let Some(view) = cache.get(generation, &topology)
        && !delta.is_against(&view)
    {
        return Err(refusal(delta.base_changed(&view)));
    }
    let listed = delta.file_digests();
    let known_sizes = cache
        .quoted_sizes
        .lock()
        .map(|sizes| sizes.clone())
        .unwrap_or_default();
    let permit = Arc::clone(&cache.reads)
        .acquire_owned()
        .await
        .map_err(|_| closed())?;
    let resolved = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let (stored, digests) = store
            .read_digested(generation)
            .map_err(|error| error.to_string())?;
        // The sizes of the texts edits make, at their places (never by the digest listed,
        // which is not checked yet).
        let made_sizes = digests
            .as_ref()
            .map(|digests| patched_sizes(&delta, &stored.bundle.sources, digests, &known_sizes))
            .unwrap_or_default();
        // The store checked every text against the digest it names (hashed, or hashed by this
        // process within minutes with the file unchanged since): no second hashing.
        // The texts edits make are not hashed here: the compile job checks their digests
        // beside the compile (see `engine/prepare.rs`).
        let (view, resolved) = match &digests {
            Some(digests) => delta.resolve_leaving_patched_unhashed(
                bundle,
                generation,
                stored.bundle.sources,
                digests,
                &built_text,
            ),
            None => {
                let (view, resolved) = delta.resolve(bundle, generation, stored.bundle.sources);
                (view, resolved.map(|bundle| (bundle, Vec::new())))
            }
        };
        // What this bundle would weigh as a whole push: the caller's body limit holds for it.
        let encoded = resolved
            .as_ref()
            .ok()
            .filter(|(bundle, _)| !surely_within(bundle, limit))
            .map(|(bundle, unchecked)| {
                let sizes = KnownSizes {
                    by_digest: known_sizes,
                    made: made_sizes,
                    unchecked,
                };
                encoded_size(bundle, listed.as_deref(), sizes)
            });
        Ok::<_, String>((view, resolved, encoded))
    })
    .await
    .map_err(|error| internal(format!("resolving the delta failed: {error}")))?
    .map_err(|error| unavailable(generation, &error))?;
    let (view, resolved, encoded) = resolved;
    let mut sizes_once_checked = Vec::new();
    let encoded = encoded.map(|counted| {
        if let Ok(mut cached) = cache.quoted_sizes.lock() {
            *cached = counted.checked;
        }
        sizes_once_checked = counted.unchecked;
        counted.total
    });
    // The view of the stored texts replaces the cached one only for a topology that keeps no
    // digests of its own: the running topology's digests are what runs (were the stored texts
    // changed behind the daemon's back, a delta made against what runs is refused below as
    // made against another base).
    if topology.source_digests().is_none() {
        cache.put(&topology, view);
    }
    let (bundle, unchecked) = resolved.map_err(refusal)?;
    if let Some(encoded) = encoded
        && encoded > limit
    {
        return Err(Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "rejected",
            format!(
                "the bundle this delta stands for ({encoded} bytes as a whole push) exceeds the limit of {limit} bytes"
            ),
        ));
    }
    Ok(Resolved {
        bundle,
        unchecked,
        sizes_once_checked,
    })
}

/// A text made by edits from this many bytes is built in an anonymous mapping of its own.
const MAPPED_TEXT_MIN_BYTES: usize = 1 << 20;

/// A text made by edits, in an anonymous mapping of its own. Only [`built_text`] writes it,
/// before it is wrapped; from then on it is only read (its pages are not made read-only: that
/// was a millisecond of changing 4,300 page table entries).
struct BuiltText(memmap2::MmapMut);

impl topologyd_api::SharedText for BuiltText {
    fn text(&self) -> &str {
        #[allow(unsafe_code)]
        // SAFETY: the mapping holds the pieces of the text (each a `&str`) copied one after
        // the other and nothing else (it is as long as they are together), so its bytes are
        // UTF-8; it is private (anonymous, not shared with a child) and never written since
        // (this type gives no mutable access to it).
        unsafe {
            std::str::from_utf8_unchecked(&self.0)
        }
    }
}

/// The text of `size` bytes a delta's edits make of `pieces`. A large one goes into an
/// anonymous mapping whose pages the kernel makes all at once as it maps it: built in a fresh
/// heap allocation, a 17 MB file took 4,300 page faults one at a time, ≈ 4 ms more of a
/// push's way to the wire. (Huge pages were tried: where the kernel zeroes them on demand they
/// cost tens of milliseconds at times.) Without a mapping, the text is built all the same.
fn built_text(size: usize, pieces: &mut topologyd_api::patch::Pieces<'_>) -> topologyd_api::Text {
    if size < MAPPED_TEXT_MIN_BYTES {
        return topologyd_api::delta::owned_text(size, pieces);
    }
    let pieces: Vec<&str> = pieces.collect();
    let total: usize = pieces.iter().map(|piece| piece.len()).sum();
    let mapped = memmap2::MmapOptions::new()
        .len(total)
        .populate()
        .map_anon()
        .ok()
        .and_then(|mut map| {
            let mut at = 0;
            for piece in &pieces {
                map.get_mut(at..at + piece.len())?
                    .copy_from_slice(piece.as_bytes());
                at += piece.len();
            }
            Some(map)
        });
    match mapped {
        Some(map) => topologyd_api::Text::shared(Arc::new(BuiltText(map))),
        None => topologyd_api::delta::owned_text(total, &mut pieces.into_iter()),
    }
}

/// Whether `bundle` as JSON is surely no larger than `limit` bytes without encoding it: each
/// byte of a name or text takes at most 6 bytes escaped (`\u00XX`), each file's framing less
/// than 64 bytes.
fn surely_within(bundle: &SourceBundle, limit: u64) -> bool {
    let worst: u64 = bundle
        .sources
        .iter()
        .map(|file| 6 * (file.name.len() as u64 + file.text.len() as u64) + 64)
        .sum();
    worst.saturating_add(64) <= limit
}

/// The size of `bundle` as JSON (what a whole push of it would send), counted, not written:
/// `serde_json`'s compact form, each string escaped as it escapes them. Counted by hand
/// because serialising tens of megabytes only to count them was a tenth of a delta push's
/// CPU; these are counts of byte classes, which the compiler vectorises. A test checks the
/// figure against `serde_json` itself. With `digests` (each file's SHA-256, listed), a text
/// whose size `sizes` knows is not counted again: a text made by edits by its size derived at
/// its place, any other checked text by its digest. The sizes of this bundle's texts are
/// handed back by digest, to be known at the next push: the checked ones at once, those of
/// the texts made by edits once their digests are checked.
fn encoded_size(
    bundle: &SourceBundle,
    digests: Option<&[[u8; 32]]>,
    sizes: KnownSizes<'_>,
) -> CountedSize {
    // `{"sources":[` … `]}`, a comma between two files, and per file
    // `{"name":` NAME `,"text":` TEXT `}`.
    const BUNDLE_FRAMING: u64 = 14;
    const FILE_FRAMING: u64 = 17;
    let digests = digests.filter(|digests| digests.len() == bundle.sources.len());
    let mut counted = CountedSize {
        total: BUNDLE_FRAMING + (bundle.sources.len() as u64).saturating_sub(1),
        checked: HashMap::new(),
        unchecked: Vec::new(),
    };
    for (index, file) in bundle.sources.iter().enumerate() {
        let digest = digests.and_then(|digests| digests.get(index));
        let unchecked = sizes.unchecked.contains(&index);
        let known = if unchecked {
            sizes.made.get(&index)
        } else {
            digest.and_then(|digest| sizes.by_digest.get(digest))
        };
        let text = known
            .copied()
            .unwrap_or_else(|| quoted_size(file.text.as_bytes()));
        match digest {
            Some(digest) if unchecked => counted.unchecked.push((*digest, text)),
            Some(digest) => {
                counted.checked.insert(*digest, text);
            }
            None => {}
        }
        counted.total += FILE_FRAMING + quoted_size(file.name.as_bytes()) + text;
    }
    counted
}

/// The sizes as JSON strings [`encoded_size`] need not count again.
struct KnownSizes<'a> {
    /// Of checked texts, by SHA-256.
    by_digest: HashMap<[u8; 32], u64>,
    /// Of the texts made by edits, by place ([`patched_sizes`]).
    made: HashMap<usize, u64>,
    /// The places of the texts whose digests are listed, not checked.
    unchecked: &'a [usize],
}

#[cfg(test)]
impl KnownSizes<'static> {
    /// Sizes of checked texts only.
    fn checked(by_digest: HashMap<[u8; 32], u64>) -> KnownSizes<'static> {
        KnownSizes {
            by_digest,
            made: HashMap::new(),
            unchecked: &[],
        }
    }
}

/// A bundle's size as JSON, and its texts' sizes by digest: of the checked texts, and of
/// those whose digests are still to be checked.
struct CountedSize {
    total: u64,
    checked: HashMap<[u8; 32], u64>,
    unchecked: Vec<([u8; 32], u64)>,
}

/// The size as a JSON string of each text `delta`'s edits make whose base's size `known`
/// holds, by its place in the bundle: the base's size with what the edits remove counted off
/// and what they insert counted in (each byte's escape is its own, so sizes add up), instead
/// of counting tens of megabytes again. Edits that do not apply to `running` (the resolution
/// refuses them) give no size.
fn patched_sizes(
    delta: &BundleDelta,
    running: &[topologyd_api::SourceFile],
    running_digests: &[String],
    known: &HashMap<[u8; 32], u64>,
) -> HashMap<usize, u64> {
    delta
        .patches
        .iter()
        .filter_map(|patch| {
            let base_digest = crate::state_store::unhex(&patch.base_sha256)?;
            let base_size = *known.get(&base_digest)?;
            let place = running
                .iter()
                .zip(running_digests)
                .position(|(file, digest)| {
                    file.name == patch.name && *digest == patch.base_sha256
                })?;
            let base = running.get(place)?.text.as_bytes();
            let listed = delta
                .files
                .iter()
                .position(|file| file.name == patch.name)?;
            let mut size = base_size;
            for edit in &patch.edits {
                let from = usize::try_from(edit.at).ok()?;
                let to = from.checked_add(usize::try_from(edit.remove).ok()?)?;
                // Neither count includes the two quotes of a whole string.
                size = size
                    .checked_sub(quoted_size(base.get(from..to)?) - 2)?
                    .checked_add(quoted_size(edit.insert.as_bytes()) - 2)?;
            }
            Some((listed, size))
        })
        .collect()
}

/// The length of `bytes` as a JSON string, quotes included: `"` and `\\` and the control
/// characters with a short escape (`\b \t \n \f \r`) take two bytes, the other control
/// characters six (`\u00XX`), every other byte one (UTF-8 is written as it is).
fn quoted_size(bytes: &[u8]) -> u64 {
    // Counted in blocks of at most 255 bytes into byte-wide counters, a loop the compiler
    // turns into vector compares: tens of megabytes take milliseconds.
    let (mut quotes, mut controls, mut short_controls) = (0_u64, 0_u64, 0_u64);
    for block in bytes.chunks(255) {
        let (mut block_quotes, mut block_controls, mut block_short) = (0_u8, 0_u8, 0_u8);
        for &byte in block {
            block_quotes += u8::from((byte == b'"') | (byte == b'\\'));
            block_controls += u8::from(byte < 0x20);
            // 8, 9, 10, 12 and 13: \b \t \n \f \r.
            block_short += u8::from((byte.wrapping_sub(8) < 6) & (byte != 11));
        }
        quotes += u64::from(block_quotes);
        controls += u64::from(block_controls);
        short_controls += u64::from(block_short);
    }
    2 + bytes.len() as u64 + quotes + short_controls + 5 * (controls - short_controls)
}

/// The answer to a delta that does not resolve.
fn refusal(error: DeltaError) -> Answer {
    let (status, kind) = match error {
        DeltaError::BaseChanged { .. } => (StatusCode::CONFLICT, "base_changed"),
        // Edits that do not make the file from the running text: the pusher sends it whole
        // (`topoctl` does on any 409 `base_*`).
        DeltaError::PatchBase { .. } | DeltaError::Patch { .. } => {
            (StatusCode::CONFLICT, "base_patch")
        }
        _ => (StatusCode::BAD_REQUEST, "invalid"),
    };
    Answer::error(status, kind, format!("delta push: {error}"))
}

/// The running generation's texts cannot be read: a pusher sends the whole bundle instead
/// (`topoctl` does so by itself).
fn unavailable(generation: u64, error: &dyn std::fmt::Display) -> Answer {
    Answer::error(
        StatusCode::CONFLICT,
        "base_unavailable",
        format!(
            "the running generation {generation}'s sources cannot be read from the state directory ({error}); push the whole bundle (topoctl push --full-bundle)"
        ),
    )
}

fn closed() -> Answer {
    internal("the sources cache is closed".to_owned())
}

fn internal(message: String) -> Answer {
    Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;
    use topologyd_api::SourceFile;

    use super::*;

    /// A large text made by edits is built in a mapping of its own, a small one as a
    /// `String`; both are the text the edits make.
    #[test]
    fn texts_made_by_edits_are_built_whole_where_they_are_put() {
        let base = "[[binding]]\ncidr = \"10.0.0.0/24\"\nservice = \"a\"\n".repeat(40_000);
        let changed = base.replacen("service = \"a\"", "service = \"é\"", 7);
        let edits = topologyd_api::patch::edits_between(&base, &changed);
        let large = topologyd_api::patch::apply_edits_built(&base, &edits, |size, pieces| {
            assert!(size >= MAPPED_TEXT_MIN_BYTES);
            built_text(size, pieces)
        })
        .unwrap();
        assert!(large.is_shared());
        assert_eq!(large.as_str(), changed);
        let small = topologyd_api::patch::apply_edits_built("a\nb\n", &[], built_text).unwrap();
        assert!(!small.is_shared());
        assert_eq!(small.as_str(), "a\nb\n");
    }

    /// A text made by edits is counted at its place, never by the digest listed for it
    /// (not checked yet): a small one listed under a large file's digest does not make that
    /// file count small, and its size is handed back apart, to learn once it is checked.
    #[test]
    fn a_size_made_by_edits_counts_at_its_place_only() {
        let large = "x".repeat(10_000);
        let bundle = SourceBundle {
            sources: vec![
                SourceFile::new("large.toml", large.clone()),
                SourceFile::new("small.toml", "s\n"),
            ],
        };
        let large_digest = topologyd_api::delta::sha256_each(&[large.as_str()])[0];
        // The small file lists the large one's digest.
        let digests = [large_digest, large_digest];
        let sizes = KnownSizes {
            by_digest: HashMap::new(),
            made: HashMap::from([(1, quoted_size(b"s\n"))]),
            unchecked: &[1],
        };
        let counted = encoded_size(&bundle, Some(&digests), sizes);
        let json = serde_json::to_vec(&bundle).unwrap();
        assert_eq!(counted.total, json.len() as u64);
        assert_eq!(
            counted.checked,
            HashMap::from([(large_digest, quoted_size(large.as_bytes()))])
        );
        assert_eq!(counted.unchecked, vec![(large_digest, quoted_size(b"s\n"))]);
    }

    proptest! {
        /// The shortcut never lets through a bundle whose JSON is over the limit, whatever its
        /// names and texts (control characters, quotes, non-ASCII).
        #[test]
        fn surely_within_never_passes_a_bundle_over_the_limit(
            files in proptest::collection::vec(("\\PC{0,8}|[\\x00-\\x1f\"\\\\]{0,8}", "\\PC{0,40}|[\\x00-\\x1f\"\\\\]{0,40}"), 0..6),
            limit in 0u64..2_000,
        ) {
            let bundle = SourceBundle {
                sources: files
                    .into_iter()
                    .map(|(name, text)| SourceFile { name, text: text.into() })
                    .collect(),
            };
            if surely_within(&bundle, limit) {
                prop_assert!(encoded_size(&bundle, None, KnownSizes::checked(HashMap::new())).total <= limit);
            }
        }

        /// The counted size is the size of the JSON `serde_json` writes for the bundle.
        #[test]
        fn the_counted_size_is_that_of_the_json(
            files in proptest::collection::vec(("\\PC{0,8}|[\\x00-\\x1f\"\\\\\x7f]{0,8}", "\\PC{0,40}|[\\x00-\\x1f\"\\\\\x7f]{0,40}|\\PC{0,3}[\\x00-\\x1f]\\PC{0,3}"), 0..6),
        ) {
            let bundle = SourceBundle {
                sources: files
                    .into_iter()
                    .map(|(name, text)| SourceFile { name, text: text.into() })
                    .collect(),
            };
            let json = serde_json::to_vec(&bundle).map_err(|error| TestCaseError::fail(error.to_string()))?;
            prop_assert_eq!(encoded_size(&bundle, None, KnownSizes::checked(HashMap::new())).total, json.len() as u64);
            // Counted with the texts' digests, then again with the sizes the first count
            // handed back (what the next push of the same texts does): the same figure.
            let texts: Vec<&str> = bundle.sources.iter().map(|file| file.text.as_str()).collect();
            let digests = topologyd_api::delta::sha256_each(&texts);
            let first = encoded_size(&bundle, Some(&digests), KnownSizes::checked(HashMap::new()));
            prop_assert_eq!(first.total, json.len() as u64);
            prop_assert_eq!(
                encoded_size(&bundle, Some(&digests), KnownSizes::checked(first.checked)).total,
                json.len() as u64
            );
        }

        /// The size of a text made by edits, derived from its base's size and the edits, is
        /// the size counted from the text, whatever the lines (escapes, non-ASCII) and edits.
        #[test]
        fn a_size_derived_from_edits_is_the_size_counted(
            old in proptest::collection::vec("\\PC{0,6}|[\\x00-\\x1f\"\\\\]{0,4}|é\\PC{0,2}", 0..40),
            new in proptest::collection::vec("\\PC{0,6}|[\\x00-\\x1f\"\\\\]{0,4}|é\\PC{0,2}", 0..40),
        ) {
            let old: String = old.iter().map(|line| format!("{line}\n")).collect();
            let new: String = new.iter().map(|line| format!("{line}\n")).collect();
            let patch = topologyd_api::FilePatch {
                name: "b.toml".into(),
                base_sha256: topologyd_api::delta::file_sha256(&old),
                edits: topologyd_api::patch::edits_between(&old, &new),
            };
            let running = vec![SourceFile::new("b.toml", old.clone())];
            let running_digests = vec![patch.base_sha256.clone()];
            let delta = BundleDelta {
                files: topologyd_api::delta::digests(&[SourceFile::new("b.toml", new.clone())]),
                patches: vec![patch],
                base_generation: 1,
                base_sources_sha256: String::new(),
            };
            let base_digest = crate::state_store::unhex(&running_digests[0]).unwrap();
            let known = HashMap::from([(base_digest, quoted_size(old.as_bytes()))]);
            let derived = patched_sizes(&delta, &running, &running_digests, &known);
            prop_assert_eq!(derived, HashMap::from([(0, quoted_size(new.as_bytes()))]));
            // Unknown base size, or edits past the base's end: nothing derived.
            prop_assert!(patched_sizes(&delta, &running, &running_digests, &HashMap::new()).is_empty());
            let mut past_end = delta.clone();
            past_end.patches[0].edits.push(topologyd_api::patch::TextEdit {
                at: old.len() as u64 + 1,
                remove: 1,
                insert: String::new(),
            });
            prop_assert!(patched_sizes(&past_end, &running, &running_digests, &known).is_empty());
        }
    }
}
