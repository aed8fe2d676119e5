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
//! them: the others' routes are the running generation's, copied (`routes.rs`), and the
//! running generation had no blackhole under them.
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
use super::incremental::Reused;
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

    /// The binding table of the patched bindings.
    pub(super) fn table(&self, prefixes: &PrefixList, services: usize) -> BindingTable {
        BindingTable::of(self.bindings.clone(), prefixes, services)
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
    // How many running items the changed files hold, from the running generation's counts
    // (walking every item's span for them was a tenth of a toggle's compile).
    let (running_prefixes, running_bindings) = changed
        .iter()
        .zip(&baseline.fingerprints)
        .filter(|(changed, _)| **changed)
        .fold((0, 0), |(prefixes, bindings), (_, fingerprint)| {
            (
                prefixes + fingerprint.items.prefixes,
                bindings + fingerprint.items.bindings,
            )
        });
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
                .filter(|span| in_files(&changed, *span))
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
        |place| baseline.prefixes.get(place).map(|prefix| prefix.span.get()),
        &changed,
    )?;
    let binding_places = places(
        raw_bindings
            .iter()
            .map(|binding| (binding.cidr, binding.cidr_span())),
        baseline.bindings.len(),
        |place| baseline.bindings.as_slice()[place].cidr,
        running_bindings,
        |place| Some(baseline.bindings.span(place)),
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
    let moved = binding_places
        .into_iter()
        .zip(raw_bindings.iter().map(RawBinding::cidr_span));
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
            .zip(&baseline.services)
            .all(|(new, old)| new.name == old.name);
    same.then_some(())
}

/// Whether `span` is in one of the files marked in `files`.
fn in_files(files: &[bool], span: Span) -> bool {
    files.get(span.source as usize).copied().unwrap_or(false)
}

/// The place among the `running` items (sorted by cidr, one item per cidr; `cidr` reads the
/// one at a place, below `running`, and `span` where the item at a place is written; the
/// changed files hold `running_in_changed` of them) of each of the `parsed` items, when they
/// are, one for one, the running items written in the changed files: as many, written without
/// host bits, each cidr found once, in a changed file.
fn places(
    parsed: impl ExactSizeIterator<Item = (IpNet, Span)>,
    running: usize,
    cidr: impl Fn(usize) -> IpNet,
    running_in_changed: usize,
    span: impl Fn(usize) -> Option<Span>,
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
        if place >= running || cidr(place) != parsed_cidr || !in_changed(span(place)?) {
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
