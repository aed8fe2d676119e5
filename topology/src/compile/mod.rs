//! The compiler: [`RawTopology`] → validated [`Topology`]. Resolves every cross-reference,
//! reports every error of a run at once (with `file:line:column` and a fix), computes each
//! service's location set as a bitset, enumerates the announced routes, and builds the binding
//! index used for longest-prefix match.
//!
//! Errors: duplicate location, service or prefix names; unknown services, regions, metros,
//! countries, locations, states or tags (with "did you mean"); host bits set; split lengths or
//! ROA lengths that do not fit the family; announce lengths outside `[settings]` (default
//! /8–/24, /16–/48); RPKI-invalid routes (ROA origin or max_length); overlapping onboarded
//! prefixes; bindings outside every onboarded prefix; a cidr bound twice; **G1** (an advertised
//! prefix without a default binding is never announced); **blackholes by construction** (a
//! more-specific binding whose service is absent at a location announcing the covering route);
//! an active service with bound routes whose topology matches no location at all; a service's
//! local address that no binding of the service itself covers (all of it, by longest match).
//! A more-specific binding to a *pending* service under an announced route is a blackhole by
//! construction too: a pending service runs nowhere.
//! Warnings: a service without bindings; location attribute values that differ only in case
//! (`eu` and `EU` select different locations); an advertised prefix whose routes belong to a
//! pending service; an active service with bound routes whose topology matches locations but
//! no live one. That last case is a warning, not an error, on purpose: it is how a topology
//! change withdraws routes that are announced today (the resolver incident), and refusing that
//! is the plan's job (G3), which names every route and location lost; a compile error would
//! hide the plan.
//!
//! Cost model (so large topologies stay fast): selectors are evaluated as bitset algebra over
//! per-attribute location sets; prefixes, bindings and routes are sorted once and searched by
//! binary search or matched by one sweep; a route stores only its governing service, whose
//! bitset says where it is announced, so no (route, location) pair is ever materialised.

//!
//! One function per phase, each in its own file, sharing one [`Collector`]: `fleet`
//! (locations, attribute index), `services` (selectors, announcing sets), `prefixes` (lengths,
//! ROAs, overlaps), `bindings` (services, duplicates, the longest-match index), `routes` (G1 and
//! the announced routes), `checks` (local addresses, blackholes, service-level findings) and
//! `hash` (the canonical content hash). This file holds the entry points and the helpers the
//! phases share; `incremental` compiles a change against a running generation without parsing
//! again the files of prefixes and bindings that did not change, and `patch` takes the running
//! generation's prefixes and bindings whole when the changed files hold the same cidrs (a
//! toggle), in place of the prefixes and bindings phases, and names the prefixes whose routes
//! the routes phase makes again (it shares or copies the others' running routes). A topology keeps its
//! compiled locations and services with their findings ([`CompiledDefinitions`]) for the next
//! compile whose definitions are its own, which takes them in place of those two phases.

use std::sync::Arc;

use ipnet::IpNet;
use topologyd_config::{
    Collector, Diagnostics, Located, RawLocation, RawService, RawTopology, Source, escape_text,
    parse_topology_sources_owned,
};

use crate::PrefixList;
use crate::model::Topology;
use bindings::BindingTable;

pub(crate) use hash::{TopologyHash, previous_form_hash};
pub use incremental::CompileReuse;
pub(crate) use incremental::{Definitions, SourceFingerprint};
pub use incremental::{
    RunningText, compile_incremental, compile_incremental_with_digests,
    compile_incremental_with_previous,
};

mod bindings;
mod checks;
mod evidence;
mod fleet;
mod hash;
mod incremental;
mod patch;
mod prefixes;
mod routes;
mod services;
mod table_diff;

/// An onboarded prefix may be split into at most this many routes.
pub const MAX_ROUTES_PER_PREFIX: u32 = 65_536;
/// A topology may announce this many routes whatever its size...
pub const ROUTE_ALLOWANCE: u64 = 1_000_000;
/// ...plus one route per this many bytes of its text.
pub const INPUT_BYTES_PER_EXTRA_ROUTE: u64 = 8;
/// At most this many location names are listed in one diagnostic.
const LISTED_NAMES: usize = 8;

/// Anything [`compile`] accepts as sources: a `Vec<Source>` (moved in, no copy) or a borrowed
/// slice, vector or array (copied; the compiled topology keeps its sources).
pub trait IntoSources {
    fn into_sources(self) -> Vec<Source>;
}

impl IntoSources for Vec<Source> {
    fn into_sources(self) -> Vec<Source> {
        self
    }
}

impl IntoSources for &Vec<Source> {
    fn into_sources(self) -> Vec<Source> {
        self.clone()
    }
}

impl IntoSources for &[Source] {
    fn into_sources(self) -> Vec<Source> {
        self.to_vec()
    }
}

impl<const N: usize> IntoSources for &[Source; N] {
    fn into_sources(self) -> Vec<Source> {
        self.to_vec()
    }
}

/// Parses and compiles `sources` into generation `generation` of the topology.
pub fn compile(sources: impl IntoSources, generation: u64) -> Result<Topology, Diagnostics> {
    compile_raw_with(
        parse_topology_sources_owned(sources.into_sources())?,
        generation,
        None,
        Fingerprints::OfTexts,
    )
}

/// [`compile`] for an owned `Vec<Source>`, spelled out for callers that want to make the move
/// (no copy of large texts) explicit.
pub fn compile_owned(sources: Vec<Source>, generation: u64) -> Result<Topology, Diagnostics> {
    compile(sources, generation)
}

/// [`compile_owned`] for texts their owner keeps elsewhere (the daemon writes a bootstrap
/// topology into its state directory first): each text is dropped once parsed and read back
/// through `read` only to report a position in it, so that the compile never holds the texts
/// beside the compiled topology (at a million prefixes, 140 MB of TOML beside 190 MB of
/// records). `digests` are the texts' SHA-256, one per source (hashed here when they do not
/// pair). The result is [`compile_owned`]'s, with the texts put away
/// ([`topologyd_config::SourceMap::put_away_texts`]).
pub fn compile_put_away(
    sources: Vec<Source>,
    digests: Vec<[u8; 32]>,
    read: topologyd_config::ReadText,
    generation: u64,
) -> Result<Topology, Diagnostics> {
    let digests = if digests.len() == sources.len() {
        digests
    } else {
        incremental::digests(&sources)
    };
    let mut raw = parse_topology_sources_owned(sources)?;
    raw.sources.put_away_texts(read);
    compile_raw_with(raw, generation, None, Fingerprints::Digests(digests))
}

/// [`compile`] for a change to `baseline` (the topology running today): findings that involve
/// two places, such as a cidr bound twice, are reported at the place the change added, with the
/// place that was already there named in the help line. Files the baseline compiled unchanged
/// are not parsed again ([`compile_incremental`], whose result is this one's).
pub fn compile_against(
    sources: impl IntoSources,
    generation: u64,
    baseline: &Topology,
) -> Result<Topology, Diagnostics> {
    compile_incremental(sources.into_sources(), generation, baseline).0
}

/// [`compile_against`] parsing every file: the reference the incremental compile is checked
/// against.
pub fn compile_against_in_full(
    sources: impl IntoSources,
    generation: u64,
    baseline: &Topology,
) -> Result<Topology, Diagnostics> {
    compile_raw_with(
        parse_topology_sources_owned(sources.into_sources())?,
        generation,
        Some(baseline),
        Fingerprints::OfTexts,
    )
}

/// Whether `baseline` binds exactly `cidr` to the service called `service`.
fn baseline_binds(baseline: Option<&Topology>, cidr: &IpNet, service: &str) -> bool {
    baseline.is_some_and(|baseline| {
        baseline
            .longest_binding(cidr)
            .is_some_and(|(bound, name)| bound == *cidr && name == service)
    })
}

/// A sort key ordering networks exactly like `IpNet`'s `Ord` (IPv4 first, then by address,
/// then by length), but compared as plain integers.
fn network_key(network: &IpNet) -> (u8, u128, u8) {
    match network {
        IpNet::V4(network) => (
            4,
            u128::from(u32::from(network.addr())),
            network.prefix_len(),
        ),
        IpNet::V6(network) => (6, u128::from(network.addr()), network.prefix_len()),
    }
}

fn family_bits(network: &IpNet) -> u8 {
    match network {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    }
}

fn family_name(network: &IpNet) -> &'static str {
    match network {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}

pub(crate) fn levenshtein(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut row: Vec<usize> = (0..=right.len()).collect();
    for (index, left_char) in left.chars().enumerate() {
        let mut previous = row[0];
        row[0] = index + 1;
        for (column, right_char) in right.iter().enumerate() {
            let substitution = previous + usize::from(left_char != *right_char);
            previous = row[column + 1];
            row[column + 1] = substitution.min(row[column] + 1).min(previous + 1);
        }
    }
    row[right.len()]
}

/// "did you mean `x`?" (the closest of `known` to `wanted`, if close enough) or the list of
/// known names of that `kind`. Shared with other checks of names against a topology (the
/// rollout controller's wave selectors).
pub fn suggestion<'a>(
    wanted: &str,
    known: impl Iterator<Item = &'a str> + Clone,
    kind: &str,
) -> String {
    let best = known
        .clone()
        .map(|name| (levenshtein(wanted, name), name))
        .min();
    match best {
        Some((distance, name)) if distance <= 2.max(wanted.len() / 3) => {
            format!("did you mean `{name}`?")
        }
        _ => {
            let mut names: Vec<&str> = known.collect();
            names.sort_unstable();
            names.dedup();
            let shown = names.len().min(LISTED_NAMES);
            let more = if names.len() > shown { ", …" } else { "" };
            if names.is_empty() {
                format!("no {kind} is defined yet")
            } else {
                format!("known {kind}s: {}{more}", names[..shown].join(", "))
            }
        }
    }
}

fn list_names(names: &[&str]) -> String {
    let shown = names.len().min(LISTED_NAMES);
    let more = if names.len() > shown {
        format!(" and {} more", names.len() - shown)
    } else {
        String::new()
    };
    format!("{}{more}", names[..shown].join(", "))
}

/// Merges `left` and `right`, each sorted by `key`, into one sorted list; of equal keys,
/// `left`'s come first. One pass: an incremental compile's reused items are already in order
/// (and come straight from the running generation, never collected on their own), and sorting
/// them again with the few parsed ones would cost a sort of the whole topology.
fn merge_sorted<T, K: Ord>(
    left: impl Iterator<Item = T>,
    right: Vec<T>,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    let mut left = left.peekable();
    if left.peek().is_none() {
        // A full compile: nothing reused, and the parsed list stays where it is.
        return right;
    }
    let (least, most) = left.size_hint();
    let mut merged = Vec::with_capacity(most.unwrap_or(least) + right.len());
    let mut right = right.into_iter().peekable();
    while right.peek().is_some() {
        let Some(item) = left.next() else {
            break;
        };
        while let Some(next) = right.next_if(|next| key(next) < key(&item)) {
            merged.push(next);
        }
        merged.push(item);
    }
    // One of them is used up: the rest of the other goes as it is, without comparing keys.
    merged.extend(left);
    merged.extend(right);
    merged
}

/// Sorts `items` by `key` (stable, so the first in source order comes first) and reports every
/// later duplicate; returns the indices of the first of each key, in key order.
fn sort_and_deduplicate<K: Ord + ?Sized, T>(
    items: &[T],
    key: impl Fn(&T) -> &K,
    mut duplicate: impl FnMut(&T, &T),
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    // Stable: of equal keys, the first written stays first (and is the one kept).
    order.sort_by(|left, right| key(&items[*left]).cmp(key(&items[*right])));
    let mut kept: Vec<usize> = Vec::with_capacity(order.len());
    for index in order {
        if let Some(last) = kept.last()
            && key(&items[*last]) == key(&items[index])
        {
            duplicate(&items[index], &items[*last]);
            continue;
        }
        kept.push(index);
    }
    kept
}

/// A named definition: a location or a service.
trait Definition {
    fn name(&self) -> &Located<String>;
}

impl Definition for RawLocation {
    fn name(&self) -> &Located<String> {
        &self.name
    }
}

impl Definition for RawService {
    fn name(&self) -> &Located<String> {
        &self.name
    }
}

/// Sorts definitions of one kind (`location`, `service`) by name and reports every later one
/// whose name is already defined; returns the indices of the first of each name, in name order.
fn deduplicate_definitions<T: Definition>(
    items: &[T],
    what: &str,
    sources: &topologyd_config::SourceMap,
    collector: &mut Collector,
) -> Vec<usize> {
    sort_and_deduplicate(
        items,
        |item| item.name().value.as_str(),
        |duplicate, first| {
            collector.error(
                Some(duplicate.name().span),
                format!("{what} `{}` is defined twice", duplicate.name().value),
                Some(format!(
                    "it is first defined at {}; rename or remove one",
                    sources.locate(first.name().span)
                )),
            );
        },
    )
}

/// Warns about names of one kind that differ only in case (`ams01` and `AMS01`): a selector or
/// a binding naming one silently misses the other. Reported at the later one.
fn warn_names_differing_in_case<T: Definition>(
    items: &[T],
    what: &str,
    sources: &topologyd_config::SourceMap,
    collector: &mut Collector,
) {
    let mut seen: std::collections::HashMap<std::borrow::Cow<'_, str>, &Located<String>> =
        std::collections::HashMap::with_capacity(items.len());
    let mut names: Vec<&Located<String>> = items.iter().map(Definition::name).collect();
    names.sort_by_key(|name| name.span);
    for name in names {
        // Most names are lower-case ASCII already: their own key, not a copy.
        let folded = if name
            .value
            .bytes()
            .any(|byte| byte.is_ascii_uppercase() || !byte.is_ascii())
        {
            std::borrow::Cow::Owned(name.value.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(name.value.as_str())
        };
        match seen.entry(folded) {
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(name);
            }
            std::collections::hash_map::Entry::Occupied(entry)
                if entry.get().value != name.value =>
            {
                collector.warning(
                    Some(name.span),
                    format!(
                        "{what} `{}` differs only in case from {what} `{}`",
                        escape_text(&name.value),
                        escape_text(&entry.get().value)
                    ),
                    Some(format!(
                        "names compare exactly, so these are two {what}s; the other is at {}: rename one if they are meant to be the same",
                        sources.locate(entry.get().span)
                    )),
                );
            }
            std::collections::hash_map::Entry::Occupied(_) => {}
        }
    }
}

fn validate_network(network: &Located<IpNet>, what: &str, collector: &mut Collector) -> IpNet {
    let truncated = network.value.trunc();
    if truncated != network.value {
        collector.error(
            Some(network.span),
            format!("{what} {} has host bits set", network.value),
            Some(format!("did you mean \"{truncated}\"?")),
        );
    }
    truncated
}

/// Compiles a parsed topology into generation `generation`. Nothing says its items are those
/// of its source texts (a caller may have edited them), so a compile against the result parses
/// every file again.
pub fn compile_raw(raw: RawTopology, generation: u64) -> Result<Topology, Diagnostics> {
    compile_raw_with(raw, generation, None, Fingerprints::NotReusable)
}

/// What the compiled topology records of its files for the next incremental compile.
enum Fingerprints {
    /// The raw topology was parsed from its source texts: hash them.
    OfTexts,
    /// As `OfTexts`, with the texts' SHA-256 already computed.
    Digests(Vec<[u8; 32]>),
    /// Not parsed from its texts alone: no file may be reused.
    NotReusable,
}

impl Fingerprints {
    /// The files' fingerprints (`incremental::fingerprints`), the definitions read from `raw`
    /// and from `shared` (the baseline's, when they are not in `raw`).
    fn of(
        self,
        raw: &RawTopology,
        shared: Option<&incremental::Definitions>,
    ) -> Vec<SourceFingerprint> {
        match self {
            Fingerprints::OfTexts => {
                incremental::fingerprints(raw, shared, incremental::digests(raw.sources.sources()))
            }
            Fingerprints::Digests(digests) => incremental::fingerprints(raw, shared, digests),
            Fingerprints::NotReusable => Vec::new(),
        }
    }
}

/// The phases, in order, over a parsed topology.
fn compile_raw_with(
    raw: RawTopology,
    generation: u64,
    baseline: Option<&Topology>,
    fingerprints: Fingerprints,
) -> Result<Topology, Diagnostics> {
    compile_phases(
        raw,
        &incremental::Reused::default(),
        generation,
        baseline,
        fingerprints,
    )
    .map_err(|(diagnostics, _)| diagnostics)
}

/// The bindings of a compile: compiled by their phase, or patched from the running ones.
enum Bindings {
    Compiled(bindings::BindingTable),
    Patched(patch::PatchedBindings),
}

/// The raw items of a compile, taken from the raw topology so that each is consumed by its
/// phase (see [`compile_phases`]).
struct Items {
    raw_prefixes: Vec<topologyd_config::RawPrefix>,
    raw_bindings: Vec<topologyd_config::RawBinding>,
    /// G6's copy of the customer prefixes as written.
    customer_prefixes: Vec<evidence::CustomerPrefix>,
}

/// The prefixes and bindings phases: patched from the running ones when every cidr is where it
/// was (`patch.rs`), compiled otherwise; then G6 over the customer prefixes. `None` when a file
/// read in part could not be patched (its items are not all here: the caller compiles again).
fn compile_items(
    items: Items,
    raw: &RawTopology,
    reused: &incremental::Reused<'_>,
    catalogue: &services::Catalogue,
    baseline: Option<&Topology>,
    collector: &mut Collector,
) -> Option<(PrefixList, Bindings)> {
    let Items {
        raw_prefixes,
        raw_bindings,
        customer_prefixes,
    } = items;
    let settings = &raw.settings;
    let patched = patch::same_cidrs(
        &raw_prefixes,
        &raw_bindings,
        raw,
        reused,
        catalogue,
        settings,
        collector,
    );
    reused.set_patched(patched.is_some());
    if patched.is_none() && reused.reads_partly() {
        reused.refuse_partly_read();
        return None;
    }
    let (prefixes, patched) = match patched {
        Some((prefixes, bindings)) => (prefixes, Some(bindings)),
        None => (
            PrefixList::from_vec(prefixes::compile_prefixes(
                raw_prefixes,
                raw,
                reused,
                settings,
                collector,
            )),
            None,
        ),
    };
    evidence::check_customer_evidence(&customer_prefixes, settings, baseline, collector);
    drop(customer_prefixes);
    let bindings = match patched {
        Some(bindings) => Bindings::Patched(bindings),
        None => Bindings::Compiled(bindings::compile_bindings(
            raw_bindings,
            raw,
            reused,
            catalogue,
            &prefixes,
            baseline,
            collector,
        )),
    };
    Some((prefixes, bindings))
}

/// [`compile_raw_with`] with the items an incremental compile reuses, handing the sources back
/// with the diagnostics of a failed compile.
fn compile_phases(
    mut raw: RawTopology,
    reused: &incremental::Reused<'_>,
    generation: u64,
    baseline: Option<&Topology>,
    fingerprints: Fingerprints,
) -> Result<Topology, (Diagnostics, topologyd_config::SourceMap)> {
    let digests_kept = !matches!(fingerprints, Fingerprints::NotReusable);
    // The baseline's locations and services as parsed, when they are this compile's: they are
    // then not in `raw` (`incremental.rs`), and are read from there.
    let shared_definitions = reused.shared_definitions();
    let mut fingerprints = fingerprints.of(&raw, shared_definitions.map(|shared| &**shared));
    let mut collector = Collector::new();
    let settings = raw.settings.clone();
    // The locations and services: the baseline's as they are when this compile's definitions
    // are the baseline's (the same files, unchanged, at the same places), else compiled; their
    // findings reported here either way, as the phases reported them.
    let compiled = match reused.compiled_definitions() {
        Some(compiled) => Arc::clone(compiled),
        None => Arc::new(CompiledDefinitions::of(&raw)),
    };
    collector.append(compiled.findings.clone());
    let (fleet, catalogue) = (&compiled.fleet, &compiled.catalogue);
    // The raw items are not read past their phase: consumed there, not freed at the end, so
    // that the compile's peak holds one form of each (a million raw prefixes are 80 MB).
    // G6 reads a copy of the customer prefixes as written: none without an onboarding policy,
    // and in a fleet of mostly customer prefixes about the raw list again.
    let customer_prefixes = evidence::customer_prefixes(&raw.prefixes, &raw.names, &settings);
    let raw_prefixes = std::mem::take(&mut raw.prefixes);
    let raw_bindings = std::mem::take(&mut raw.bindings);
    let parsed_items =
        incremental::parsed_item_counts(fingerprints.len(), &raw_prefixes, &raw_bindings);
    let Some((prefixes, bindings)) = compile_items(
        Items {
            raw_prefixes,
            raw_bindings,
            customer_prefixes,
        },
        &raw,
        reused,
        catalogue,
        baseline,
        &mut collector,
    ) else {
        // The items of a file read in part are not all here: compiled again, parsed whole.
        let diagnostics = collector.finish(&raw.sources);
        return Err((diagnostics, raw.sources));
    };
    let hash = spawn_hash(&settings, &compiled, &prefixes, &bindings);
    let (table, patched_prefixes) = match bindings {
        Bindings::Compiled(table) => (table, None),
        Bindings::Patched(patched) => (
            patched.table(catalogue.services.len(), reused.baseline_in_place()),
            Some(patched.into_patched_prefixes()),
        ),
    };
    incremental::count_items(
        &mut fingerprints,
        patched_prefixes.as_ref().map(|_| (reused, parsed_items)),
        prefixes.iter().map(|prefix| prefix.span.get().source),
        table.bindings.spans().map(|span| span.source),
    );
    let (routes, service_routes) = routes::compile_routes(
        &prefixes,
        &catalogue.services,
        &table,
        (0..raw.sources.sources().len())
            .map(|index| {
                raw.sources
                    .text_len(u32::try_from(index).unwrap_or(u32::MAX))
            })
            .sum(),
        patched_prefixes.as_deref().and_then(|patched| {
            let baseline = reused.baseline_in_place()?;
            Some(routes::RunningRoutes {
                routes: &baseline.routes,
                patched,
            })
        }),
        &mut collector,
    );
    checks::whole_picture(
        checks::Picture {
            raw: &raw,
            raw_services: shared_definitions.map_or(&raw.services, |shared| &shared.services),
            fleet,
            catalogue,
            table: &table,
            routes: &routes,
            service_routes: &service_routes,
        },
        patched_prefixes.as_deref(),
        &mut collector,
    );

    let has_errors = collector.has_errors();
    let diagnostics = collector.finish(&raw.sources);
    if has_errors {
        return Err((diagnostics, raw.sources));
    }
    let BindingTable {
        bindings,
        service_binding_count,
        ..
    } = table;
    let definitions = match shared_definitions {
        Some(shared) => Arc::clone(shared),
        None => Arc::new(incremental::Definitions {
            locations: raw.locations,
            services: raw.services,
            settings: raw.settings_span.map(|span| (raw.settings, span)),
        }),
    };
    Ok(Topology {
        generation,
        hash,
        sources: raw.sources,
        fingerprints,
        digests_kept,
        settings,
        // Shared with the compiled definitions, not copied: a copy of 2,000 services and their
        // index was ≈ 2 ms of a toggle.
        locations: Arc::clone(&fleet.locations),
        location_index: Arc::clone(&fleet.location_index),
        live: fleet.live.clone(),
        services: Arc::clone(&catalogue.services),
        service_index: Arc::clone(&catalogue.service_index),
        prefixes,
        bindings,
        service_binding_count,
        routes,
        warnings: diagnostics.items,
        definitions,
        route_coverage: std::sync::OnceLock::new(),
        compiled_definitions: compiled,
    })
}

/// The canonical hash of what the phases so far made; its items' part runs on a thread of its
/// own, beside the routes and the checks and past the end of the compile (a push reads it at
/// the end of its plan). A patched compile's bindings are hashed as patched (shared with the
/// running ones when no service changed).
fn spawn_hash(
    settings: &topologyd_config::Settings,
    compiled: &CompiledDefinitions,
    prefixes: &PrefixList,
    bindings: &Bindings,
) -> hash::TopologyHash {
    // The definitions are hashed on the thread too (shares of them go there): at 500
    // locations and 2,000 services they are ≈ 0.5 ms that a toggle would otherwise wait for.
    let settings = settings.clone();
    let locations = Arc::clone(&compiled.fleet.locations);
    let services = Arc::clone(&compiled.catalogue.services);
    let definitions: hash::DefinitionsToHash = Box::new(move || {
        let hasher =
            hash::hash_definitions(hash::HashForm::Chunked, &settings, &locations, &services);
        let names = services
            .iter()
            .map(|service| service.name.clone())
            .collect();
        (hasher, names)
    });
    hash::TopologyHash::spawn(
        definitions,
        prefixes.clone(),
        match bindings {
            Bindings::Compiled(table) => table.bindings.clone(),
            Bindings::Patched(patched) => patched.hashed().clone(),
        },
    )
}

/// The locations and services as compiled from a topology's definitions, with the findings
/// their phases made: kept by the topology, and shared with the next one whose definitions are
/// the same (the same files, unchanged, at the same places: `incremental.rs`), which takes
/// them instead of compiling them again (≈ 3.4 ms of a toggle's CPU at 500 locations and 2,000
/// services).
#[derive(Debug)]
pub(crate) struct CompiledDefinitions {
    fleet: fleet::Fleet,
    catalogue: services::Catalogue,
    findings: Collector,
}

impl CompiledDefinitions {
    fn of(raw: &RawTopology) -> CompiledDefinitions {
        let mut findings = Collector::new();
        let fleet = fleet::compile_locations(raw, &mut findings);
        let catalogue = services::compile_services(raw, &fleet, &mut findings);
        CompiledDefinitions {
            fleet,
            catalogue,
            findings,
        }
    }
}

/// The sources of a compiled topology, serialisable so that the daemon can persist them and
/// recompile on start (the compiled form itself is not serialised).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceBundle {
    pub generation: u64,
    pub sources: Vec<Source>,
}

impl SourceBundle {
    pub fn of(topology: &Topology) -> SourceBundle {
        SourceBundle {
            generation: topology.generation,
            sources: topology.sources().to_vec(),
        }
    }

    /// Recompiles the bundle.
    pub fn compile(&self) -> Result<Topology, Diagnostics> {
        compile(&self.sources, self.generation)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_evidence;
