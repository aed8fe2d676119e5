//! The prefixes and bindings of an incremental compile whose changed files onboard the same
//! prefixes and bind the same cidrs as before, to the same services or to others the compile
//! knows (an `advertise` toggled, an `announce` split changed, a ROA or a token set, a comment
//! or a table style changed, bindings moved to other services): the running generation's sorted
//! prefixes and bindings are taken whole, the changed files' prefixes compiled again in their
//! places and their bindings given their new spans and services. Nothing is merged, sorted,
//! placed or checked for overlaps: with the same cidrs in the same places, the merge would give
//! back the running generation's order, placements and nesting. A self-serve BYOIP toggle is
//! this case, and so is a change that moves a share of the bindings to other services; it was
//! the bindings phase over every binding that most of their compile went to. The prefixes are
//! shared with the running generation but for the chunks holding one compiled again
//! (`prefix_list.rs`); the bindings are shared with it when no service changed (the changed
//! ones' new spans kept beside them, `binding_list.rs`), written into a copy that keeps the
//! longest-match index when some did. Only the prefixes compiled again and those holding a
//! binding whose service changed have their routes made again and blackholes looked for under
//! them: the others' routes are the running generation's, shared (`routes.rs`), and the
//! running generation had no blackhole under them.
//!
//! A file read in part (`table_diff.rs`) is a changed file whose changed tables alone were
//! parsed: its parsed bindings replace the running ones written in those tables, one for one,
//! and the running bindings of its other tables stay, their spans moved by how far their table
//! moved in the file.
//!
//! Exactness: the result is the one the merge of the incremental compile makes (and so a full
//! compile's; a property test in `tests/incremental_compile.rs` changes values, services,
//! comments and table styles, which move the items' positions). Whenever a condition does not
//! hold, nothing is taken and the phases run as they do for any other incremental compile;
//! nothing is reported before every condition is known to hold, so a patch never adds a
//! diagnostic the phases would not (a binding naming an unknown service is left to them).
//!
//! Owns: the conditions under which the running items are taken whole, and the patching. Must
//! not touch: the checks of a single prefix (those of the prefixes phase).

use ipnet::IpNet;
use topologyd_config::{Collector, RawBinding, RawPrefix, RawTopology, Settings, Span};

use super::bindings::BindingTable;
use super::incremental::{PartlyRead, Reused};
use super::network_key;
use super::prefixes::compile_prefix;
use super::services::Catalogue;
use crate::PrefixList;
use crate::binding_list::BindingList;
use crate::model::Topology;

/// The bindings of a patched compile: the running generation's with the changed ones' new
/// spans and services.
pub(super) struct PatchedBindings {
    bindings: BindingList,
    /// The places of the prefixes compiled again and of those holding a binding whose service
    /// changed, ascending, each once.
    patched_prefixes: Vec<usize>,
}

impl PatchedBindings {
    /// The patched bindings, which the canonical hash reads (cidr and service) before the
    /// table is made.
    pub(super) fn hashed(&self) -> &BindingList {
        &self.bindings
    }

    /// The places of the prefixes compiled again (those of the changed files) and of those
    /// holding a binding whose service changed, ascending: the only ones whose routes may
    /// differ from the running generation's (but for routes dropped where the route budget is
    /// crossed, which is itself an error).
    pub(super) fn into_patched_prefixes(self) -> Vec<usize> {
        self.patched_prefixes
    }

    /// The binding table of the patched bindings: its per-prefix figures searched when read
    /// (the routes read them at the patched places only), its per-service counts those of
    /// `running` when the records are its own, else counted.
    pub(super) fn table(&self, services: usize, running: Option<&Topology>) -> BindingTable {
        let running_counts = running
            .filter(|running| self.bindings.shares_records_with(&running.bindings))
            .map(|running| running.service_binding_count.as_slice());
        BindingTable::searched_when_read(self.bindings.clone(), services, running_counts)
    }
}

/// The running generation's prefixes with the changed files' patched in, and its bindings
/// patched, when the changed files hold the same cidrs (see the module comment); `None`,
/// having reported nothing, when they do not. `raw_prefixes` and `raw_bindings` are the
/// parsed ones (those of the changed files), `reused` says which files were reused where.
pub(super) fn same_cidrs(
    raw_prefixes: &[RawPrefix],
    raw_bindings: &[RawBinding],
    raw: &RawTopology,
    reused: &Reused<'_>,
    catalogue: &Catalogue,
    settings: &Settings,
    collector: &mut Collector,
) -> Option<(PrefixList, PatchedBindings)> {
    let baseline = reused.baseline_in_place()?;
    let changed = changed_files(raw, reused, baseline)?;
    same_services(catalogue, baseline)?;
    // Of a file read in part: its changed tables hold as many running bindings as were read
    // there, and its kept tables' bindings move with their tables.
    let kept_moved = kept_tables_moved(reused, baseline)?;
    // How many running items the changed files hold, from the running generation's counts
    // (walking every item's span for them was a tenth of a toggle's compile); of a file read
    // in part, the bindings its changed tables held.
    let (running_prefixes, running_bindings) = changed
        .iter()
        .zip(&baseline.fingerprints)
        .enumerate()
        .filter(|(_, (changed, _))| **changed)
        .fold((0, 0), |(prefixes, bindings), (index, (_, fingerprint))| {
            let held = reused
                .partly_read(index)
                .map_or(fingerprint.items.bindings, |file| file.running_in_changed);
            (prefixes + fingerprint.items.prefixes, bindings + held)
        });
    // A running binding the changed items replace: in a changed file, and in a changed table
    // of a file read in part.
    let replaced = |span: Span| {
        in_files(&changed, span)
            && reused
                .partly_read(span.source as usize)
                .is_none_or(|file| file.diff.in_changed(span.start as usize))
    };
    debug_assert_eq!(
        (running_prefixes, running_bindings),
        (
            baseline
                .prefixes
                .iter()
                .filter(|prefix| in_files(&changed, prefix.span.get()))
                .count(),
            baseline
                .bindings
                .spans()
                .filter(|span| replaced(*span))
                .count()
        ),
        "the running generation's item counts per file are those of its items"
    );
    let prefix_places = places(
        raw_prefixes
            .iter()
            .map(|prefix| (prefix.cidr, prefix.cidr_span())),
        baseline.prefixes.len(),
        |place| baseline.prefixes[place].cidr,
        running_prefixes,
        |place| {
            let span = baseline.prefixes.get(place)?.span.get();
            in_files(&changed, span).then_some(span)
        },
        &changed,
    )?;
    let binding_places = places(
        raw_bindings
            .iter()
            .map(|binding| (binding.cidr, binding.cidr_span())),
        baseline.bindings.len(),
        |place| baseline.bindings.as_slice()[place].cidr,
        running_bindings,
        |place| Some(baseline.bindings.span(place)).filter(|span| replaced(*span)),
        &changed,
    )?;
    // Each changed binding names a service the compile knows (an unknown one is the bindings
    // phase's to report): the running one (same names, same indices) or another. A name is
    // looked up once, not once per binding.
    let mut found: Vec<Option<Option<u32>>> = vec![None; raw.names.len()];
    let mut reassigned: Vec<(usize, u32)> = Vec::new();
    let mut reassigned_prefixes: Vec<usize> = Vec::new();
    for (raw_binding, place) in raw_bindings.iter().zip(&binding_places) {
        let slot = found.get_mut(raw_binding.service.0 as usize)?;
        let service = *slot.get_or_insert_with(|| {
            let name = raw.names.get(raw_binding.service);
            catalogue.service_index.get(name.as_ref()).copied()
        });
        let running = baseline.bindings.get(*place)?;
        let service = service?;
        if service != running.service {
            reassigned.push((*place, service));
            reassigned_prefixes.push(running.prefix as usize);
        }
    }
    // Every condition holds: from here on, the result is the merge's.
    // The running prefixes are shared, but for the chunks holding one compiled again (a
    // toggle copied 100,000 prefixes when they were one vector).
    let prefixes = baseline
        .prefixes
        .with_replaced(
            raw_prefixes
                .iter()
                .zip(&prefix_places)
                .map(|(raw_prefix, place)| {
                    (
                        *place,
                        compile_prefix(raw_prefix, &raw.names, settings, collector),
                    )
                }),
        );
    let mut patched_prefixes = prefix_places;
    patched_prefixes.extend(reassigned_prefixes);
    patched_prefixes.sort_unstable();
    patched_prefixes.dedup();
    let moved = kept_moved.into_iter().chain(
        binding_places
            .into_iter()
            .zip(raw_bindings.iter().map(RawBinding::cidr_span)),
    );
    let bindings = PatchedBindings {
        bindings: baseline.bindings.with_changes(moved, &reassigned),
        patched_prefixes,
    };
    Some((prefixes, bindings))
}

/// The first place in `low..high` that is not `before`, the places being partitioned by it
/// (as [`slice::partition_point`], over places rather than items).
fn first_not_before(mut low: usize, mut high: usize, before: impl Fn(usize) -> bool) -> usize {
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// Per file of the new bundle, whether it is a changed file whose items may be patched: every
/// file is where it was in the running generation, under the same name, and is either reused
/// there (its items, or its definitions, taken unchanged) or a changed file that held only
/// prefixes and bindings there and defines nothing now.
fn changed_files(raw: &RawTopology, reused: &Reused<'_>, baseline: &Topology) -> Option<Vec<bool>> {
    let new = raw.sources.sources();
    let old = baseline.sources();
    if new.len() != old.len() || baseline.fingerprints.len() != old.len() {
        return None;
    }
    let mut changed = vec![false; new.len()];
    for (index, ((new, old), fingerprint)) in
        new.iter().zip(old).zip(&baseline.fingerprints).enumerate()
    {
        if new.name != old.name {
            return None;
        }
        match reused.place_of(index) {
            Some(place) if place == index => {}
            Some(_) => return None,
            None if reused.kept_definitions(index) => {}
            None if fingerprint.items_only => changed[index] = true,
            None => return None,
        }
    }
    let in_changed = |span: Span| changed.get(span.source as usize).copied().unwrap_or(true);
    // Definitions shared with the baseline (not in `raw`, see `incremental.rs`) are all in
    // kept files, none in a changed one: reading `raw`'s alone gives the same answer.
    let defines = raw.settings_span.is_some_and(in_changed)
        || raw
            .locations
            .iter()
            .any(|location| in_changed(location.name.span))
        || raw
            .services
            .iter()
            .any(|service| in_changed(service.name.span));
    (!defines).then_some(changed)
}

/// Whether the compiled services are the running generation's, in the same order (so that a
/// running binding's service index names the same service).
fn same_services(catalogue: &Catalogue, baseline: &Topology) -> Option<()> {
    let same = catalogue.services.len() == baseline.services.len()
        && catalogue
            .services
            .iter()
            .zip(baseline.services.iter())
            .all(|(new, old)| new.name == old.name);
    same.then_some(())
}

/// Whether `span` is in one of the files marked in `files`.
fn in_files(files: &[bool], span: Span) -> bool {
    files.get(span.source as usize).copied().unwrap_or(false)
}

/// The place among the `running` items (sorted by cidr, one item per cidr; `cidr` reads the
/// one at a place, below `running`, and `replaced` where the item at a place is written when
/// the changed items replace it, `running_in_changed` of them) of each of the `parsed` items,
/// when they are, one for one, the running items they replace: as many, written without host
/// bits, each cidr found once, in a changed file.
fn places(
    parsed: impl ExactSizeIterator<Item = (IpNet, Span)>,
    running: usize,
    cidr: impl Fn(usize) -> IpNet,
    running_in_changed: usize,
    replaced: impl Fn(usize) -> Option<Span>,
    changed: &[bool],
) -> Option<Vec<usize>> {
    let in_changed = |span: Span| in_files(changed, span);
    if parsed.len() != running_in_changed {
        return None;
    }
    let mut places: Vec<usize> = Vec::with_capacity(parsed.len());
    for (parsed_cidr, parsed_span) in parsed {
        if parsed_cidr.trunc() != parsed_cidr || !in_changed(parsed_span) {
            return None;
        }
        // Items written in address order (or in runs of it) are found by galloping on from
        // the place of the one before, not by a search over every item.
        let key = network_key(&parsed_cidr);
        let before = |place: usize| place < running && network_key(&cidr(place)) < key;
        let next = places.last().map_or(0, |last| last + 1);
        let place = if next > 0 && !before(next - 1) {
            first_not_before(0, running, before)
        } else {
            let mut step = 1;
            while before(next + step - 1) {
                step *= 2;
            }
            // The first place not before the key is in next + step / 2 ..= next + step - 1 (or
            // is `next` itself when step is 1): searched from one place before.
            let low = (next + step / 2).saturating_sub(1).min(running);
            let high = (next + step).min(running);
            first_not_before(low, high, before)
        };
        if place >= running || cidr(place) != parsed_cidr || replaced(place).is_none() {
            return None;
        }
        places.push(place);
    }
    // Each running item is taken once (a cidr written twice is not this case).
    let mut sorted = places.clone();
    sorted.sort_unstable();
    if sorted.windows(2).any(|pair| pair[0] == pair[1]) {
        return None;
    }
    Some(places)
}

/// The new spans of the running bindings in the kept tables of files read in part, where a
/// changed table before them changed length; `None` when a span would not fit, or when their
/// changed tables do not hold as many running bindings as the line scanner read there (the
/// compile then runs again without reading any file in part). One walk over the running
/// bindings, only when a file was read in part.
fn kept_tables_moved(reused: &Reused<'_>, baseline: &Topology) -> Option<Vec<(usize, Span)>> {
    let files: Vec<(usize, &PartlyRead)> = (0..baseline.fingerprints.len())
        .filter_map(|index| Some((index, reused.partly_read(index)?)))
        .collect();
    if files.is_empty() {
        return Some(Vec::new());
    }
    let mut in_changed = vec![0_usize; files.len()];
    let locators: Vec<_> = files.iter().map(|(_, file)| file.diff.locator()).collect();
    let mut moved = Vec::new();
    for (place, span) in baseline.bindings.spans().enumerate() {
        let Some(at) = files
            .iter()
            .position(|(index, _)| *index == span.source as usize)
        else {
            continue;
        };
        let Some(shift) = locators[at].locate(span.start as usize) else {
            in_changed[at] += 1;
            continue;
        };
        if shift != 0 {
            let moved_to = |offset: u32| u32::try_from(i64::from(offset) + shift).ok();
            moved.push((
                place,
                Span {
                    start: moved_to(span.start)?,
                    end: moved_to(span.end)?,
                    ..span
                },
            ));
        }
    }
    let as_read = files
        .iter()
        .zip(&in_changed)
        .all(|((_, file), held)| file.running_in_changed == *held);
    as_read.then_some(moved)
}
