//! Incremental compile of a change to a compiled topology: a file whose name and text are those
//! of a baseline file (wherever it now is in the bundle), and that holds only `[[prefix]]` and
//! `[[binding]]` tables, is not parsed again — its prefixes and bindings are taken, already
//! compiled and sorted, from the baseline (they keep every value a raw item has, and the spans
//! later phases report at): under the baseline's `[settings]` a prefix's own checks passed
//! there and are not run again, under other settings it is rebuilt as a raw item and checked
//! anew. Every check that involves several items (overlaps, bindings placed in prefixes, G1,
//! blackholes, services) then runs over the whole topology as a full compile does, merging the
//! sorted reused items with the parsed ones instead of sorting them all — unless the changed
//! files hold the same cidrs as before, when `patch.rs` takes the baseline's prefixes and
//! bindings whole instead of merging, checking overlaps and placing them (the bindings shared,
//! not copied, and the prefixes too when no changed file holds one), and blackholes are
//! looked for only under the prefixes it compiled again. A self-serve BYOIP change touches
//! one customer file among thousands; parsing is the larger part of a compile
//! (≈ 60 % at 300,000 bindings), so skipping the files that did not change is where most of the
//! time goes. A file that holds only `[settings]`, locations and services (the fleet and service
//! files), unchanged at the same place in the bundle, is not parsed either: its definitions are
//! taken as the baseline parsed them ([`Definitions`]), spans and all, and every phase runs on
//! them as on parsed ones — but for the locations and services phases when every definition is
//! the baseline's and no parsed file defines anything (a customer's push): their results are
//! then the baseline's, taken with the findings they made (`CompiledDefinitions`).
//!
//! Given the texts the running generation was compiled from
//! ([`compile_incremental_with_previous`]), a file of bindings that a push changed in a few
//! tables is read in part (the daemon gives them for large files only): only its changed tables (`table_diff.rs`), the running
//! bindings of the others taken, moved (a 1 % change of 300,000 bindings changes tables all
//! over its file, and parsing it whole was most of that push's compile). Such a compile must
//! patch (`patch.rs`); when it cannot, it stops and runs again without reading any file in
//! part.
//!
//! Exactness: the result equals a full compile of the same sources (routes, warnings, hash) —
//! the property test in `tests/incremental_compile.rs` checks it over generated change
//! sequences. Whenever anything fails, the full compile runs instead and its diagnostics are
//! returned: errors are reported exactly as a full compile reports them, never from rebuilt
//! items (so a refused push whose parse succeeds runs the phases twice).
//!
//! Owns: which files are reused or read in part, the reused and rebuilt items, the per-file
//! item counts, the fallback. Must not touch: the
//! phases themselves (they are the full compile's).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ipnet::IpNet;
use topologyd_config::{
    Diagnostics, Located, RawBinding, RawLocation, RawPrefix, RawService, RawTopology, Settings,
    Source, Span, ValueSpans, parse_topology_sources_except, parse_topology_sources_with_warnings,
    read_binding_tables,
};

use super::table_diff::{TableDiff, diff_tables};
use crate::model::{Prefix, Service, Topology};

/// What a compiled topology remembers of each of its files, so that the next compile can take
/// an unchanged file's items from it instead of parsing the file again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceFingerprint {
    pub(crate) sha256: [u8; 32],
    /// The file defines prefixes and bindings only: no settings, location or service.
    pub(crate) items_only: bool,
    /// The file defines no prefix and no binding (its definitions, if any, are all it holds).
    pub(crate) definitions_only: bool,
    /// How many of the compiled topology's prefixes and bindings are written in the file
    /// (filled in once they are compiled: [`count_items`]). A patched compile checks a changed
    /// file's parsed items against these instead of walking every item's span.
    pub(crate) items: ItemCounts,
}

/// How many compiled prefixes and bindings a file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ItemCounts {
    pub(crate) prefixes: usize,
    pub(crate) bindings: usize,
}

/// How many prefixes and bindings each of `files` files holds among the parsed ones.
pub(super) fn parsed_item_counts(
    files: usize,
    prefixes: &[RawPrefix],
    bindings: &[RawBinding],
) -> Vec<ItemCounts> {
    let mut counts = vec![ItemCounts::default(); files];
    for prefix in prefixes {
        if let Some(count) = counts.get_mut(prefix.spans.source() as usize) {
            count.prefixes += 1;
        }
    }
    for binding in bindings {
        if let Some(count) = counts.get_mut(binding.spans.source() as usize) {
            count.bindings += 1;
        }
    }
    counts
}

/// Fills in each fingerprint's [`ItemCounts`]. Of a patched compile (`patched`: what it
/// reused, and [`parsed_item_counts`]), a file reused in place holds what it held in the
/// running generation, and any other file what was parsed of it: a patched compile compiles
/// every parsed item, one for one with a running one (an item may move from one changed file
/// to another, so a changed file's count is not the running one's). Of any other compile,
/// counted from where each compiled item is written.
pub(super) fn count_items(
    fingerprints: &mut [SourceFingerprint],
    patched: Option<(&Reused<'_>, Vec<ItemCounts>)>,
    prefix_sources: impl Iterator<Item = u32>,
    binding_sources: impl Iterator<Item = u32>,
) {
    if let Some((reused, parsed)) = patched
        && let Some(baseline) = reused.baseline_in_place()
        && baseline.fingerprints.len() == fingerprints.len()
        && parsed.len() == fingerprints.len()
    {
        for (index, fingerprint) in fingerprints.iter_mut().enumerate() {
            let running = baseline.fingerprints[index].items;
            fingerprint.items = match (reused.place_of(index), reused.partly_read(index)) {
                (Some(place), _) if place == index => running,
                // Its kept tables' bindings, and those read from its changed tables.
                (_, Some(file)) => ItemCounts {
                    prefixes: 0,
                    bindings: running.bindings.saturating_sub(file.running_in_changed)
                        + parsed[index].bindings,
                },
                _ => parsed[index],
            };
        }
        return;
    }
    for fingerprint in fingerprints.iter_mut() {
        fingerprint.items = ItemCounts::default();
    }
    for source in prefix_sources {
        if let Some(fingerprint) = fingerprints.get_mut(source as usize) {
            fingerprint.items.prefixes += 1;
        }
    }
    for source in binding_sources {
        if let Some(fingerprint) = fingerprints.get_mut(source as usize) {
            fingerprint.items.bindings += 1;
        }
    }
}

/// The settings, locations and services a compiled topology was compiled from, as parsed (in
/// file order, spans into its sources): the next compile against it takes those of a file
/// that holds nothing else and is unchanged at the same place in the bundle instead of
/// parsing that file again. A few kilobytes a service; the fleet and service files are most
/// of what a push of one customer's file parses.
#[derive(Debug, Clone, Default)]
pub(crate) struct Definitions {
    pub(crate) locations: Vec<RawLocation>,
    pub(crate) services: Vec<RawService>,
    /// `[settings]` and where it was written, if a file wrote it.
    pub(crate) settings: Option<(Settings, Span)>,
}

/// The SHA-256 of every text, in order (the large ones on threads of their own).
pub(super) fn digests(sources: &[Source]) -> Vec<[u8; 32]> {
    let texts: Vec<&str> = sources.iter().map(|source| source.text.as_str()).collect();
    topologyd_api::delta::sha256_each(&texts)
}

/// Each file's fingerprint: its digest, whether it defines anything (settings, locations,
/// services) and whether it holds any prefix or binding, both read from the raw topology and
/// from the baseline's definitions when they are `shared` (then not in `raw`). A
/// file whose items an incremental compile reused defines nothing (it was reused for that)
/// and its items are not in `raw`, so it is marked as holding none; either way it is not a
/// file whose definitions the next compile may take.
pub(super) fn fingerprints(
    raw: &RawTopology,
    shared: Option<&Definitions>,
    digests: Vec<[u8; 32]>,
) -> Vec<SourceFingerprint> {
    let (shared_locations, shared_services) = shared.map_or((&[][..], &[][..]), |shared| {
        (&shared.locations[..], &shared.services[..])
    });
    let mark_all = |spans: &mut dyn Iterator<Item = u32>| {
        let mut marked = vec![false; digests.len()];
        for source in spans {
            if let Some(flag) = marked.get_mut(source as usize) {
                *flag = true;
            }
        }
        marked
    };
    let defines = mark_all(
        &mut raw
            .settings_span
            .iter()
            .map(|span| span.source)
            .chain(
                raw.locations
                    .iter()
                    .map(|location| location.name.span.source),
            )
            .chain(raw.services.iter().map(|service| service.name.span.source))
            .chain(
                shared_locations
                    .iter()
                    .map(|location| location.name.span.source),
            )
            .chain(
                shared_services
                    .iter()
                    .map(|service| service.name.span.source),
            ),
    );
    let holds_items = mark_all(
        &mut raw
            .prefixes
            .iter()
            .map(|prefix| prefix.spans.source())
            .chain(raw.bindings.iter().map(|binding| binding.spans.source())),
    );
    digests
        .into_iter()
        .zip(defines.into_iter().zip(holds_items))
        .map(|(sha256, (defines, holds_items))| SourceFingerprint {
            sha256,
            items_only: !defines,
            definitions_only: defines && !holds_items,
            items: ItemCounts::default(),
        })
        .collect()
}

/// How a compile against a baseline went: how many files were taken from the baseline instead
/// of parsed, and whether it fell back to the full compile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileReuse {
    /// Files taken from the baseline instead of parsed: files of prefixes and bindings (their
    /// items rebuilt from it) and files of definitions only (their definitions as it parsed
    /// them).
    pub reused_files: usize,
    /// Files parsed whole.
    pub parsed_files: usize,
    /// Large files of bindings of which only the changed tables were read, the running
    /// bindings of the others taken ([`compile_incremental_with_previous`]).
    pub partly_read_files: usize,
    /// A file was read in part, its changed tables did not patch into the running bindings,
    /// and the compile ran again without reading any file in part (this is its result).
    pub partly_read_refused: bool,
    /// The incremental compile failed and the full compile ran instead (its result is the one
    /// returned).
    pub fell_back: bool,
    /// The changed files onboard and bind the same cidrs as before: the running generation's
    /// prefixes and bindings were taken whole, the changed ones patched in (no merge, sort or
    /// placement; see `compile/patch.rs`).
    pub items_patched: bool,
    /// The definitions are the baseline's (no parsed file defines anything): its compiled
    /// locations and services were taken, not compiled again.
    pub definitions_reused: bool,
}

/// Compiles `sources` as a change to `baseline`; equal to
/// [`compile_against_in_full`](super::compile_against_in_full) of the same sources, faster
/// when files are unchanged.
pub fn compile_incremental(
    sources: Vec<Source>,
    generation: u64,
    baseline: &Topology,
) -> (Result<Topology, Diagnostics>, CompileReuse) {
    let (result, reuse) = compile_incremental_with_digests(sources, None, generation, baseline);
    (result.map_err(|(diagnostics, _)| diagnostics), reuse)
}

/// [`compile_incremental`] with each text's SHA-256 already known (`known`, one per source in
/// order), so that the texts are not hashed again. The caller vouches for them: a digest that
/// is not its text's would have the compile take another text's items. Digests that do not
/// pair with the sources one to one are ignored and the texts hashed. A compile that fails
/// hands the sources back, as they were given, with its diagnostics (a caller that may have
/// to compile them again, against a newer baseline, then keeps no copy of its own).
pub fn compile_incremental_with_digests(
    sources: Vec<Source>,
    known: Option<Vec<[u8; 32]>>,
    generation: u64,
    baseline: &Topology,
) -> (Result<Topology, (Diagnostics, Vec<Source>)>, CompileReuse) {
    compile_incremental_with_previous(sources, known, generation, baseline, &[])
}

/// A text the running generation was compiled from, as its caller read it back (the daemon's
/// state directory keeps them; the running topology does not).
#[derive(Debug, Clone, Copy)]
pub struct RunningText<'a> {
    pub name: &'a str,
    pub text: &'a str,
    /// The text's SHA-256, which the caller vouches for (as for `known` digests).
    pub sha256: [u8; 32],
}

/// [`compile_incremental_with_digests`] with the `running` texts of the baseline: a file of
/// bindings that a push changed in a few tables has only those tables read, and the running
/// bindings of the others taken (`table_diff.rs`). A running text is used only for the file at
/// its place in the baseline, with its name and the digest the baseline was compiled from. The
/// result is the one without them: when the changed tables do not patch into the running
/// items (`patch.rs`), the compile runs again without reading any file in part.
pub fn compile_incremental_with_previous(
    sources: Vec<Source>,
    known: Option<Vec<[u8; 32]>>,
    generation: u64,
    baseline: &Topology,
    running: &[RunningText<'_>],
) -> (Result<Topology, (Diagnostics, Vec<Source>)>, CompileReuse) {
    let digests = match known {
        Some(known) if known.len() == sources.len() => known,
        _ => digests(&sources),
    };
    match attempt(sources, digests.clone(), generation, baseline, running) {
        Ok(compiled) => compiled,
        Err(sources) => match attempt(sources, digests.clone(), generation, baseline, &[]) {
            Ok((compiled, reuse)) => (
                compiled,
                CompileReuse {
                    partly_read_refused: true,
                    ..reuse
                },
            ),
            // Without running texts no file is read in part, so this is not reached; were it,
            // the full compile's result is this one's.
            Err(sources) => {
                let reuse = CompileReuse {
                    parsed_files: sources.len(),
                    fell_back: true,
                    ..CompileReuse::default()
                };
                (full(sources, generation, baseline, digests), reuse)
            }
        },
    }
}

/// A compile's result (the sources handed back with the diagnostics when it fails) and how
/// it reused the baseline.
type Compiled = (Result<Topology, (Diagnostics, Vec<Source>)>, CompileReuse);

/// One incremental compile; `Err` with the sources when a file was read in part and its
/// changed tables did not patch into the running items (then compiled again without).
fn attempt(
    sources: Vec<Source>,
    digests: Vec<[u8; 32]>,
    generation: u64,
    baseline: &Topology,
    running: &[RunningText<'_>],
) -> Result<Compiled, Vec<Source>> {
    // Per baseline file: the index of the new file that reuses it.
    let moved_to = reused_files(&sources, &digests, baseline);
    let kept_definitions = kept_definition_files(&sources, &digests, baseline);
    let mut reusable = kept_definitions.clone();
    for index in moved_to.iter().flatten() {
        reusable[*index as usize] = true;
    }
    let reused_files = reusable.iter().filter(|reused| **reused).count();
    let mut reuse = CompileReuse {
        reused_files,
        parsed_files: sources.len() - reused_files,
        ..CompileReuse::default()
    };
    if reused_files == 0 {
        return Ok((full(sources, generation, baseline, digests), reuse));
    }
    let partly = partly_read_files(&sources, &reusable, baseline, running);
    let partly_read = partly.iter().filter(|file| file.is_some()).count();
    reuse.parsed_files -= partly_read;
    reuse.partly_read_files = partly_read;
    let mut skip = reusable;
    for (index, file) in partly.iter().enumerate() {
        skip[index] |= file.is_some();
    }
    let (mut raw, diagnostics) = parse_topology_sources_except(sources, &skip);
    let (partly, read_bindings): (Vec<_>, Vec<_>) = partly
        .into_iter()
        .map(|file| match file {
            Some((file, bindings)) => (Some(file), bindings),
            None => (None, Vec::new()),
        })
        .unzip();
    if partly_read > 0 {
        raw.bindings = super::merge_sorted(
            read_bindings
                .into_iter()
                .flatten()
                .map(|(mut binding, name)| {
                    binding.service = raw.names.intern(&name);
                    binding
                }),
            std::mem::take(&mut raw.bindings),
            |binding| binding.spans.source(),
        );
    }
    // The parsed files define nothing, and every definition of the baseline is taken: the
    // definitions are the baseline's, and so are the locations and services compiled from them.
    let definitions_unchanged = raw.settings_span.is_none()
        && raw.locations.is_empty()
        && raw.services.is_empty()
        && all_kept(&baseline.definitions, &kept_definitions);
    // Unchanged, they are shared with the baseline, not copied into the raw topology (≈ 2 ms
    // of a toggle at 500 locations and 2,000 services): only its settings are.
    let taken = if definitions_unchanged {
        take_settings(&mut raw, &baseline.definitions);
        true
    } else {
        take_definitions(&mut raw, &kept_definitions, &baseline.definitions)
    };
    let result = if diagnostics.has_errors() || !taken {
        Err(raw.sources)
    } else {
        let mut reused = reused_items(&mut raw, moved_to, kept_definitions, baseline);
        reused.partly_read = partly;
        reused.definitions_unchanged = definitions_unchanged;
        let compiled = super::compile_phases(
            raw,
            &reused,
            generation,
            Some(baseline),
            super::Fingerprints::Digests(digests.clone()),
        );
        reuse.items_patched = reused.patched.get() && compiled.is_ok();
        reuse.definitions_reused = definitions_unchanged && compiled.is_ok();
        match compiled {
            Err((_, mut sources)) if reused.partly_refused.get() => {
                return Err(sources.take_texts());
            }
            compiled => compiled.map_err(|(_, sources)| sources),
        }
    };
    Ok(match result {
        Ok(topology) => (Ok(topology), reuse),
        Err(mut sources) => {
            // Reported exactly as a full compile reports it, never from rebuilt items.
            reuse.fell_back = true;
            reuse.reused_files = 0;
            reuse.partly_read_files = 0;
            reuse.parsed_files = sources.sources().len();
            let sources = sources.take_texts();
            (full(sources, generation, baseline, digests), reuse)
        }
    })
}

/// A file of the new bundle read in part ([`compile_incremental_with_previous`]): its changed
/// tables, and how many bindings they held in the running text.
#[derive(Debug)]
pub(super) struct PartlyRead {
    pub(super) diff: TableDiff,
    pub(super) running_in_changed: usize,
}

/// Whether `text` holds a multi-line string's quotes: such a string may hold lines that start
/// with a table's header, where the file is cut (`table_diff.rs`), so a file holding one in
/// either text is parsed whole.
fn holds_multi_line_strings(text: &str) -> bool {
    memchr::memmem::find(text.as_bytes(), b"\"\"\"").is_some()
        || memchr::memmem::find(text.as_bytes(), b"'''").is_some()
}

/// A file read in part, and the bindings read from its changed tables, each with its
/// service's name.
type ReadInPart = (PartlyRead, Vec<(RawBinding, std::sync::Arc<str>)>);

/// Per new file, when it is read in part: the changed tables, and the bindings read from them
/// (each with its service's name, interned into the raw topology once it is parsed). A file
/// is read in part when the bundle holds as many files as the baseline, the file is not
/// reused, is at its place in the baseline under the same name with a running text of the
/// digest it was compiled from, held bindings only there (no definition, no prefix), neither
/// text holds a multi-line string's quotes (`"""` or `'''`, even in a comment), both hold as
/// many tables, the changed ones are at most half the new text, ASCII and read by the line
/// scanner in both texts, those of the running text read as the running bindings written
/// there, and the changed tables bind the cidrs they bound (see `table_diff.rs`).
fn partly_read_files(
    sources: &[Source],
    reusable: &[bool],
    baseline: &Topology,
    running: &[RunningText<'_>],
) -> Vec<Option<ReadInPart>> {
    let old_sources = baseline.sources();
    sources
        .iter()
        .enumerate()
        .map(|(index, source)| {
            if reusable.get(index).copied().unwrap_or(true) {
                return None;
            }
            let old = running.get(index)?;
            let fingerprint = baseline.fingerprints.get(index)?;
            let usable = sources.len() == old_sources.len()
                && old.name == source.name
                && old_sources.get(index)?.name == source.name
                && old.sha256 == fingerprint.sha256
                && baseline.holds_bindings_only(index);
            if !usable {
                return None;
            }
            if holds_multi_line_strings(old.text) || holds_multi_line_strings(&source.text) {
                return None;
            }
            let diff = diff_tables(old.text, &source.text, source.text.len() / 2)?;
            let source_id = u32::try_from(index).ok()?;
            let mut names = topologyd_config::Names::default();
            let running_read =
                read_binding_tables(source_id, old.text, &diff.old_changed, &mut names)?;
            // The running text's changed tables read as the running bindings written there,
            // cidr, place and service (a text that is not the one compiled, or lines that are
            // not what the line scanner takes them for, read otherwise).
            // Looked up in cidr order, each search galloping on from the place before (a file
            // need not be written in cidr order: 3,000 searches of 300,000 records from the
            // start, a cache miss a probe, were ≈ 4 ms of a 1 % change's compile).
            let mut order: Vec<&RawBinding> = running_read.iter().collect();
            order.sort_unstable_by_key(|binding| binding.cidr.trunc());
            let places = baseline
                .bindings
                .longest_each(order.iter().map(|binding| &binding.cidr));
            let as_running = order.iter().zip(places).all(|(binding, place)| {
                let place = place.map(|place| place as usize);
                place.is_some_and(|place| {
                    let record = &baseline.bindings.as_slice()[place];
                    record.cidr == binding.cidr
                        && baseline.bindings.span(place) == binding.cidr_span()
                        && baseline
                            .services
                            .get(record.service as usize)
                            .is_some_and(|service| *service.name == **names.get(binding.service))
                })
            });
            if !as_running {
                return None;
            }
            let running_in_changed = running_read.len();
            let read = read_binding_tables(source_id, &source.text, &diff.new_changed, &mut names)?;
            // The changed tables bind the cidrs they bound (else the compile could not patch,
            // and the file is parsed whole at once rather than after a refused attempt).
            let cidrs = |bindings: &[RawBinding]| {
                let mut cidrs: Vec<_> = bindings
                    .iter()
                    .map(|binding| super::network_key(&binding.cidr))
                    .collect();
                cidrs.sort_unstable();
                cidrs
            };
            if cidrs(&running_read) != cidrs(&read) {
                return None;
            }
            let read = read
                .into_iter()
                .map(|binding| {
                    let name = std::sync::Arc::clone(names.get(binding.service));
                    (binding, name)
                })
                .collect();
            Some((
                PartlyRead {
                    diff,
                    running_in_changed,
                },
                read,
            ))
        })
        .collect()
}

/// Which baseline files the new bundle holds unchanged: per baseline file, the index of the new
/// file with the same name and SHA-256, when the baseline file holds only prefixes and
/// bindings. A file may have moved (a file added or removed before it); of several files with
/// one name and text, the first unmatched one is taken, in order.
fn reused_files(sources: &[Source], digests: &[[u8; 32]], baseline: &Topology) -> Vec<Option<u32>> {
    let mut candidates: HashMap<(&str, [u8; 32]), VecDeque<u32>> = HashMap::new();
    for (index, (source, digest)) in sources.iter().zip(digests).enumerate() {
        if let Ok(index) = u32::try_from(index) {
            candidates
                .entry((source.name.as_str(), *digest))
                .or_default()
                .push_back(index);
        }
    }
    baseline
        .fingerprints
        .iter()
        .zip(baseline.sources())
        .map(|(fingerprint, old)| {
            if !fingerprint.items_only {
                return None;
            }
            candidates
                .get_mut(&(old.name.as_str(), fingerprint.sha256))
                .and_then(VecDeque::pop_front)
        })
        .collect()
}

/// Per new file: whether it is a baseline file that defines settings, locations or services
/// and nothing else, unchanged (name and SHA-256) at the same place in the bundle, so that its
/// definitions, parsed for the baseline with their spans, can be taken as they are.
fn kept_definition_files(
    sources: &[Source],
    digests: &[[u8; 32]],
    baseline: &Topology,
) -> Vec<bool> {
    let old_sources = baseline.sources();
    sources
        .iter()
        .zip(digests)
        .enumerate()
        .map(|(index, (source, digest))| {
            baseline
                .fingerprints
                .get(index)
                .zip(old_sources.get(index))
                .is_some_and(|(fingerprint, old)| {
                    fingerprint.definitions_only
                        && fingerprint.sha256 == *digest
                        && old.name == source.name
                })
        })
        .collect()
}

/// Whether every definition of the baseline (`[settings]`, locations, services) is in a file
/// `kept` takes its definitions from.
fn all_kept(baseline: &Definitions, kept: &[bool]) -> bool {
    let is_kept = |span: Span| kept.get(span.source as usize).copied().unwrap_or(false);
    baseline
        .settings
        .as_ref()
        .is_none_or(|(_, span)| is_kept(*span))
        && baseline
            .locations
            .iter()
            .all(|location| is_kept(location.name.span))
        && baseline
            .services
            .iter()
            .all(|service| is_kept(service.name.span))
}

/// Adds to `raw` (parsed without the kept files) the baseline's definitions from the kept
/// files, in file order as a parse of every file lists them. `false` when the whole parse
/// would have reported what the parse of the other files alone could not see (`[settings]`
/// written twice, too many locations): the full compile then runs and reports it.
fn take_definitions(raw: &mut RawTopology, kept: &[bool], baseline: &Definitions) -> bool {
    let is_kept = |span: Span| kept.get(span.source as usize).copied().unwrap_or(false);
    if let Some((settings, span)) = &baseline.settings
        && is_kept(*span)
    {
        if raw.settings_span.is_some() {
            return false;
        }
        raw.settings = settings.clone();
        raw.settings_span = Some(*span);
    }
    raw.locations = in_file_order(
        std::mem::take(&mut raw.locations),
        &baseline.locations,
        |location| location.name.span,
        is_kept,
    );
    raw.services = in_file_order(
        std::mem::take(&mut raw.services),
        &baseline.services,
        |service| service.name.span,
        is_kept,
    );
    raw.locations.len() <= topologyd_config::bounds::MAX_LOCATIONS
}

/// Adds to `raw` the baseline's `[settings]`, when the definitions are the baseline's
/// whole (`definitions_unchanged` in [`attempt`]): its locations and services are not copied
/// in, the compile reads them from the baseline ([`Reused::shared_definitions`]).
fn take_settings(raw: &mut RawTopology, baseline: &Definitions) {
    if let Some((settings, span)) = &baseline.settings {
        raw.settings = settings.clone();
        raw.settings_span = Some(*span);
    }
}

/// `parsed` (in file order) with the `baseline` items (in file order) of the kept files put
/// in their files' places: the two lists never share a file, so merging them by file keeps
/// each file's items in their order.
fn in_file_order<T: Clone>(
    parsed: Vec<T>,
    baseline: &[T],
    span: impl Fn(&T) -> Span,
    is_kept: impl Fn(Span) -> bool,
) -> Vec<T> {
    let kept = baseline.iter().filter(|item| is_kept(span(item))).cloned();
    super::merge_sorted(kept, parsed, |item| span(item).source)
}

/// The full compile against `baseline`, handing the sources back when it fails.
fn full(
    sources: Vec<Source>,
    generation: u64,
    baseline: &Topology,
    digests: Vec<[u8; 32]>,
) -> Result<Topology, (Diagnostics, Vec<Source>)> {
    let (mut raw, diagnostics) = parse_topology_sources_with_warnings(sources);
    if diagnostics.has_errors() {
        return Err((diagnostics, raw.sources.take_texts()));
    }
    super::compile_phases(
        raw,
        &Reused::default(),
        generation,
        Some(baseline),
        super::Fingerprints::Digests(digests),
    )
    .map_err(|(diagnostics, mut sources)| (diagnostics, sources.take_texts()))
}

/// What an incremental compile takes from the running generation instead of parsing it: the
/// reused files' compiled prefixes (when `[settings]` are the running generation's: every check
/// of a single prefix passed there and would pass again, so only overlaps are checked anew) and
/// their bindings, each in cidr order, read straight from there with their spans moved to the
/// file's place in the new bundle (the offsets stay, the text is the same). Every field's span
/// is the item's cidr span: the compiled items keep only that one, and it is the only one a
/// successful compile reports at (a failure is compiled again in full).
#[derive(Default)]
pub(super) struct Reused<'a> {
    baseline: Option<&'a Topology>,
    /// Per baseline file: the index of the new file that reuses it.
    moved_to: Vec<Option<u32>>,
    /// The prefixes are taken compiled (else they were rebuilt as raw items).
    compiled_prefixes: bool,
    /// Per new file: its definitions are taken from the baseline (it was not parsed).
    kept_definitions: Vec<bool>,
    /// The compile patched the changed files' items into the baseline's.
    patched: std::cell::Cell<bool>,
    /// Per new file, when it was read in part.
    partly_read: Vec<Option<PartlyRead>>,
    /// A file was read in part and the changed items did not patch into the running ones: the
    /// compile stopped, to run again with every file parsed whole.
    partly_refused: std::cell::Cell<bool>,
    /// The definitions are exactly the baseline's (no parsed file defines anything, and every
    /// baseline file that does is taken unchanged at its place).
    definitions_unchanged: bool,
}

impl<'a> Reused<'a> {
    /// The baseline's compiled locations and services, when the definitions are its own.
    pub(super) fn compiled_definitions(&self) -> Option<&'a Arc<super::CompiledDefinitions>> {
        self.baseline
            .filter(|_| self.definitions_unchanged)
            .map(|baseline| &baseline.compiled_definitions)
    }

    /// The baseline's definitions as parsed, when they are this compile's (they are then not
    /// in the raw topology: see [`take_settings`]).
    pub(super) fn shared_definitions(&self) -> Option<&'a Arc<Definitions>> {
        self.baseline
            .filter(|_| self.definitions_unchanged)
            .map(|baseline| &baseline.definitions)
    }

    /// The baseline, when its prefixes are taken compiled (its `[settings]` are the new ones).
    pub(super) fn baseline_in_place(&self) -> Option<&'a Topology> {
        self.baseline.filter(|_| self.compiled_prefixes)
    }

    /// The index in the new bundle of the baseline's file `index`, when its items are reused.
    pub(super) fn place_of(&self, index: usize) -> Option<usize> {
        let place = self.moved_to.get(index).copied().flatten()?;
        usize::try_from(place).ok()
    }

    pub(super) fn set_patched(&self, patched: bool) {
        self.patched.set(patched);
    }

    /// How new file `index` was read in part, if it was.
    pub(super) fn partly_read(&self, index: usize) -> Option<&PartlyRead> {
        self.partly_read.get(index).and_then(Option::as_ref)
    }

    /// Whether a file was read in part: then the compile must patch, or stop
    /// ([`Reused::refuse_partly_read`]) to run again with every file parsed whole.
    pub(super) fn reads_partly(&self) -> bool {
        self.partly_read.iter().any(Option::is_some)
    }

    pub(super) fn refuse_partly_read(&self) {
        self.partly_refused.set(true);
    }

    /// Whether the new file `index` is a baseline file whose definitions were taken unparsed.
    pub(super) fn kept_definitions(&self, index: usize) -> bool {
        self.kept_definitions.get(index).copied().unwrap_or(false)
    }

    fn moved(&self, span: Span) -> Option<Span> {
        self.moved_to
            .get(span.source as usize)
            .copied()
            .flatten()
            .map(|source| Span { source, ..span })
    }

    /// The reused prefixes, compiled, in cidr order (none when they were rebuilt as raw items).
    pub(super) fn prefixes(&self) -> impl Iterator<Item = Prefix> + '_ {
        let prefixes = self
            .baseline
            .filter(|_| self.compiled_prefixes)
            .map(|baseline| baseline.prefixes.iter());
        prefixes.into_iter().flatten().filter_map(|prefix| {
            let span = self.moved(prefix.span.get())?;
            Some(Prefix {
                span: span.into(),
                ..prefix.clone()
            })
        })
    }

    /// The reused bindings in cidr order, as (the service's index in [`Self::services`], span,
    /// cidr).
    pub(super) fn bindings(&self) -> impl Iterator<Item = (u32, Span, IpNet)> + '_ {
        let bindings = self.baseline.map(|baseline| &baseline.bindings);
        let records = bindings.map_or(&[][..], |bindings| bindings.as_slice());
        let spans = bindings.into_iter().flat_map(|bindings| bindings.spans());
        records
            .iter()
            .zip(spans)
            .filter_map(|(binding, span)| Some((binding.service, self.moved(span)?, binding.cidr)))
    }

    /// The services of the generation the bindings come from.
    pub(super) fn services(&self) -> &'a [Service] {
        self.baseline.map_or(&[], |baseline| &baseline.services)
    }
}

/// Whether two `[settings]` are the same but for where they are written: a prefix's own checks
/// read the values only (a file added before the settings' file moves their span).
fn same_settings(new: &Settings, old: &Settings) -> bool {
    let without_place = |settings: &Settings| {
        let mut settings = settings.clone();
        if let Some(onboarding) = settings.onboarding.as_mut() {
            onboarding.span = Span::default();
        }
        settings
    };
    without_place(new) == without_place(old)
}

/// The reused files' items ([`Reused`]). Under other settings than the baseline's, the
/// prefixes are rebuilt as raw items and appended to `raw` instead, to be checked again one by
/// one: the phases order items by (cidr, span) before they read them, so the order of the raw
/// lists changes nothing a compile produces.
fn reused_items<'a>(
    raw: &mut RawTopology,
    moved_to: Vec<Option<u32>>,
    kept_definitions: Vec<bool>,
    baseline: &'a Topology,
) -> Reused<'a> {
    let reused = Reused {
        baseline: Some(baseline),
        moved_to,
        compiled_prefixes: same_settings(&raw.settings, &baseline.settings),
        kept_definitions,
        patched: std::cell::Cell::new(false),
        partly_read: Vec::new(),
        partly_refused: std::cell::Cell::new(false),
        definitions_unchanged: false,
    };
    if reused.compiled_prefixes {
        return reused;
    }
    let rebuilt = baseline
        .prefixes
        .iter()
        .filter_map(|prefix| Some((prefix, reused.moved(prefix.span.get())?)));
    // Reserved once: the raw prefixes are large, and growing the list by doubling copies
    // them over and over.
    raw.prefixes.reserve_exact(rebuilt.clone().count());
    raw.prefixes.extend(rebuilt.map(|(prefix, span)| {
        RawPrefix {
            cidr: prefix.cidr,
            origin_asn: prefix.origin_asn,
            owner: raw.names.intern(&prefix.owner),
            advertise: prefix.advertise,
            announce: prefix.announce,
            roa: prefix.roa,
            rpki: prefix.rpki,
            spans: ValueSpans::new([span; 4]),
            ownership: topologyd_config::RawOwnership::boxed(
                prefix.irr_token().map(str::to_owned),
                prefix.rdns_token().map(str::to_owned),
                prefix
                    .evidence()
                    .map(|evidence| Located::new(evidence.clone(), span)),
            ),
        }
    }));
    reused
}
