//! The compiler: [`RawTopology`] → validated [`Topology`]. Resolves every cross-reference,
//! reports every error of a run at once (with `file:line:column` and a fix), computes each
//! service's location set as a bitset, enumerates the announced routes, and builds the binding
//! tries used for longest-prefix match.
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
//! (`eu` and `EU` select different locations); an advertised prefix whose routes belong to a pending service; an active service with
//! bound routes whose topology matches locations but no live one. That last case is a warning,
//! not an error, on purpose: it is how a topology change withdraws routes that are announced
//! today (the resolver incident), and refusing that is the plan's job (G3), which names every
//! route and location lost; a compile error would hide the plan.
//!
//! Cost model (so large topologies stay fast): selectors are evaluated as bitset algebra over
//! per-attribute location sets; prefixes, bindings and routes are sorted once and searched by
//! binary search; a route stores only its governing service, whose bitset says where it is
//! announced, so no (route, location) pair is ever materialised.

use std::collections::{BTreeMap, HashMap};

use ipnet::IpNet;
use prefix_trie::PrefixMap;
use sha2::{Digest, Sha256};
use topologyd_config::health::{DnsRecordType, ProbeSpec, UnhealthyAction};
use topologyd_config::{
    AnnounceMode, Attribute, Collector, Diagnostics, Lifecycle, Located, LocationState,
    RawTopology, Selector, Source, Span, parse_topology_sources_owned,
};

use crate::location_set::LocationSet;
use crate::model::{Binding, Location, Prefix, Route, RouteAttributes, Service, Topology};

/// An onboarded prefix may be split into at most this many routes.
pub const MAX_ROUTES_PER_PREFIX: u32 = 65_536;
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
    compile_raw(
        parse_topology_sources_owned(sources.into_sources())?,
        generation,
    )
}

/// [`compile`] for an owned `Vec<Source>`, spelled out for callers that want to make the move
/// (no copy of large texts) explicit.
pub fn compile_owned(sources: Vec<Source>, generation: u64) -> Result<Topology, Diagnostics> {
    compile(sources, generation)
}

/// [`compile`] for a change to `baseline` (the topology running today): findings that involve
/// two places, such as a cidr bound twice, are reported at the place the change added, with the
/// place that was already there named in the help line.
pub fn compile_against(
    sources: impl IntoSources,
    generation: u64,
    baseline: &Topology,
) -> Result<Topology, Diagnostics> {
    compile_raw_with(
        parse_topology_sources_owned(sources.into_sources())?,
        generation,
        Some(baseline),
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

/// "did you mean `x`?" or the list of known names.
fn suggestion<'a>(
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

/// Location sets per attribute value, for evaluating selectors as bitset algebra.
struct AttributeIndex {
    capacity: usize,
    by_attribute: HashMap<(Attribute, String), LocationSet>,
}

impl AttributeIndex {
    fn new(locations: &[Location]) -> AttributeIndex {
        let capacity = locations.len();
        let mut by_attribute: HashMap<(Attribute, String), LocationSet> = HashMap::new();
        let mut add = |attribute, value: &str, index| {
            by_attribute
                .entry((attribute, value.to_string()))
                .or_insert_with(|| LocationSet::empty(capacity))
                .insert(index);
        };
        for (index, location) in locations.iter().enumerate() {
            add(Attribute::Location, &location.name, index);
            add(Attribute::Region, &location.region, index);
            add(Attribute::Metro, &location.metro, index);
            add(Attribute::Country, &location.country, index);
            add(Attribute::State, location.state.as_str(), index);
            for tag in &location.tags {
                add(Attribute::Tag, tag, index);
            }
        }
        AttributeIndex {
            capacity,
            by_attribute,
        }
    }

    fn known(&self, attribute: Attribute) -> impl Iterator<Item = &str> + Clone {
        self.by_attribute
            .keys()
            .filter(move |(kind, _)| *kind == attribute)
            .map(|(_, value)| value.as_str())
    }

    fn evaluate(&self, selector: &Selector) -> LocationSet {
        match selector {
            Selector::All => LocationSet::full(self.capacity),
            Selector::None => LocationSet::empty(self.capacity),
            Selector::Match {
                attribute,
                values,
                negated,
            } => {
                let mut set = LocationSet::empty(self.capacity);
                for value in values {
                    if let Some(members) = self.by_attribute.get(&(*attribute, value.value.clone()))
                    {
                        set.union_with(members);
                    }
                }
                if *negated {
                    LocationSet::full(self.capacity).difference(&set)
                } else {
                    set
                }
            }
            Selector::Not(inner) => {
                LocationSet::full(self.capacity).difference(&self.evaluate(inner))
            }
            Selector::And(items) => items
                .iter()
                .fold(LocationSet::full(self.capacity), |set, item| {
                    set.intersection(&self.evaluate(item))
                }),
            Selector::Or(items) => items
                .iter()
                .fold(LocationSet::empty(self.capacity), |set, item| {
                    set.union(&self.evaluate(item))
                }),
        }
    }
}

/// Sorts `items` by `key` (stable, so the first in source order comes first) and reports every
/// later duplicate; returns the indices of the first of each key, in key order.
fn sort_and_deduplicate<K: Ord + Clone, T>(
    items: &[T],
    key: impl Fn(&T) -> K,
    mut duplicate: impl FnMut(&T, &T),
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|index| key(&items[*index]));
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

/// Feeds a canonical, length-prefixed serialisation into SHA-256.
struct CanonicalHasher(Sha256);

impl CanonicalHasher {
    fn text(&mut self, text: &str) {
        self.0.update((text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
    }

    fn number(&mut self, number: u64) {
        self.0.update(number.to_le_bytes());
    }

    fn network(&mut self, network: &IpNet) {
        let (family, address, length) = network_key(network);
        self.0.update([family, length]);
        self.0.update(address.to_le_bytes());
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

/// Warns about location attribute values that differ only in case (`eu` and `EU`): selectors
/// compare exactly, so one of them is almost certainly a slip that silently changes what a
/// selector matches. Reported at the first use of each less common spelling.
fn warn_case_variants(raw: &RawTopology, location_order: &[usize], collector: &mut Collector) {
    type Field = fn(&topologyd_config::RawLocation) -> Vec<&Located<String>>;
    let fields: [(&str, Field); 4] = [
        ("region", |location| vec![&location.region]),
        ("metro", |location| vec![&location.metro]),
        ("country", |location| vec![&location.country]),
        ("tag", |location| location.tags.iter().collect()),
    ];
    for (attribute, values_of) in fields {
        // lower-cased value -> spelling -> (uses, first use)
        let mut spellings: BTreeMap<String, BTreeMap<&str, (usize, &Located<String>)>> =
            BTreeMap::new();
        for index in location_order {
            for value in values_of(&raw.locations[*index]) {
                let entry = spellings
                    .entry(value.value.to_lowercase())
                    .or_default()
                    .entry(value.value.as_str())
                    .or_insert((0, value));
                entry.0 += 1;
            }
        }
        for variants in spellings.values().filter(|variants| variants.len() > 1) {
            let Some((common, (common_uses, _))) =
                variants.iter().max_by_key(|(_, (uses, _))| *uses)
            else {
                continue;
            };
            for (spelling, (uses, first)) in variants {
                if spelling == common {
                    continue;
                }
                collector.warning(
                    Some(first.span),
                    format!(
                        "{attribute} `{}` ({uses} location(s)) differs only in case from `{}` ({common_uses} location(s)); selectors compare exactly, so they select different locations",
                        spelling.escape_debug(),
                        common.escape_debug()
                    ),
                    Some(format!("write `{}` if it is the same {attribute}", common.escape_debug())),
                );
            }
        }
    }
}

/// Compiles a parsed topology into generation `generation`.
pub fn compile_raw(raw: RawTopology, generation: u64) -> Result<Topology, Diagnostics> {
    compile_raw_with(raw, generation, None)
}

fn compile_raw_with(
    raw: RawTopology,
    generation: u64,
    baseline: Option<&Topology>,
) -> Result<Topology, Diagnostics> {
    let mut collector = Collector::new();
    let sources = &raw.sources;
    let settings = raw.settings.clone();

    // Locations.
    let location_order = sort_and_deduplicate(
        &raw.locations,
        |location| location.name.value.clone(),
        |duplicate, first| {
            collector.error(
                Some(duplicate.name.span),
                format!("location `{}` is defined twice", duplicate.name.value),
                Some(format!(
                    "it is first defined at {}; rename or remove one",
                    sources.locate(first.name.span)
                )),
            );
        },
    );
    let locations: Vec<Location> = location_order
        .iter()
        .map(|index| {
            let raw_location = &raw.locations[*index];
            let mut tags: Vec<String> = raw_location
                .tags
                .iter()
                .map(|tag| tag.value.clone())
                .collect();
            tags.sort_unstable();
            tags.dedup();
            Location {
                name: raw_location.name.value.clone(),
                region: raw_location.region.value.clone(),
                metro: raw_location.metro.value.clone(),
                country: raw_location.country.value.clone(),
                tags,
                state: raw_location.state.value,
            }
        })
        .collect();
    let location_index: HashMap<String, u32> = locations
        .iter()
        .enumerate()
        .map(|(index, location)| (location.name.clone(), index as u32))
        .collect();
    let capacity = locations.len();
    let mut live = LocationSet::empty(capacity);
    let mut test = LocationSet::empty(capacity);
    for (index, location) in locations.iter().enumerate() {
        match location.state {
            LocationState::Live => live.insert(index),
            LocationState::Test => test.insert(index),
            LocationState::Offline | LocationState::Draining => {}
        }
    }
    let attribute_index = AttributeIndex::new(&locations);
    warn_case_variants(&raw, &location_order, &mut collector);

    // Services.
    let service_order = sort_and_deduplicate(
        &raw.services,
        |service| service.name.value.clone(),
        |duplicate, first| {
            collector.error(
                Some(duplicate.name.span),
                format!("service `{}` is defined twice", duplicate.name.value),
                Some(format!(
                    "it is first defined at {}; rename or remove one",
                    sources.locate(first.name.span)
                )),
            );
        },
    );
    let mut services: Vec<Service> = Vec::with_capacity(service_order.len());
    for index in &service_order {
        let raw_service = &raw.services[*index];
        raw_service
            .topology
            .value
            .for_each_value(&mut |attribute, value| {
                let known = match attribute {
                    Attribute::State => LocationState::parse(&value.value).is_some(),
                    _ => attribute_index
                        .by_attribute
                        .contains_key(&(attribute, value.value.clone())),
                };
                if !known {
                    let help = match attribute {
                        Attribute::State => {
                            "states are live, offline, test and draining".to_string()
                        }
                        _ => suggestion(
                            &value.value,
                            attribute_index.known(attribute),
                            attribute.keyword(),
                        ),
                    };
                    collector.error(
                        Some(value.span),
                        format!(
                            "unknown {} \"{}\" in the topology of service `{}`",
                            attribute.keyword(),
                            value.value,
                            raw_service.name.value
                        ),
                        Some(help),
                    );
                }
            });
        let matched = attribute_index.evaluate(&raw_service.topology.value);
        let announcing = match raw_service.lifecycle.value {
            Lifecycle::Pending => LocationSet::empty(capacity),
            Lifecycle::Active if raw_service.announce_at_test_locations => {
                matched.intersection(&live.union(&test))
            }
            Lifecycle::Active => matched.intersection(&live),
        };
        let mut communities = raw_service.communities.clone();
        communities.sort_unstable();
        communities.dedup();
        let mut large_communities = raw_service.large_communities.clone();
        large_communities.sort_unstable();
        large_communities.dedup();
        services.push(Service {
            name: raw_service.name.value.clone(),
            lifecycle: raw_service.lifecycle.value,
            topology: raw_service.topology.value.to_string(),
            announce_at_test_locations: raw_service.announce_at_test_locations,
            attributes: RouteAttributes {
                communities,
                large_communities,
                med: raw_service.med,
                as_path_prepend: raw_service.as_path_prepend,
            },
            health: raw_service
                .health
                .as_ref()
                .map(|health| health.value.clone()),
            local_addresses: {
                let mut addresses: Vec<IpNet> = raw_service
                    .local_addresses
                    .iter()
                    .map(|address| address.value)
                    .collect();
                addresses.sort_unstable_by_key(network_key);
                addresses.dedup();
                addresses
            },
            matched,
            announcing,
            span: raw_service.name.span,
        });
    }
    let service_index: HashMap<String, u32> = services
        .iter()
        .enumerate()
        .map(|(index, service)| (service.name.clone(), index as u32))
        .collect();

    // Prefixes: host bits, lengths, ROA, overlaps.
    let mut prefix_candidates: Vec<Prefix> = Vec::with_capacity(raw.prefixes.len());
    for raw_prefix in &raw.prefixes {
        let cidr = validate_network(&raw_prefix.cidr, "prefix", &mut collector);
        let bits = family_bits(&cidr);
        let limits = settings.limits_for(&cidr);
        if raw_prefix.origin_asn.value == 0 {
            collector.error(
                Some(raw_prefix.origin_asn.span),
                format!("prefix {cidr} has origin AS0, which may never be announced (RFC 7607)"),
                Some("set origin_asn to the ASN that originates the prefix".into()),
            );
        }
        let route_length = match raw_prefix.announce.value {
            AnnounceMode::Aggregate => cidr.prefix_len(),
            AnnounceMode::Split(length) => {
                if length > bits {
                    collector.error(
                        Some(raw_prefix.announce.span),
                        format!(
                            "family mismatch: split = {length} is longer than an {} address ({bits} bits)",
                            family_name(&cidr)
                        ),
                        Some(format!(
                            "use at most {} for {}",
                            limits.longest,
                            family_name(&cidr)
                        )),
                    );
                    cidr.prefix_len()
                } else if length < cidr.prefix_len() {
                    collector.error(
                        Some(raw_prefix.announce.span),
                        format!("split = {length} is shorter than the prefix {cidr} itself"),
                        Some(format!(
                            "split into lengths between /{} and /{}, or announce = \"aggregate\"",
                            cidr.prefix_len(),
                            limits.longest
                        )),
                    );
                    cidr.prefix_len()
                } else if length - cidr.prefix_len() > MAX_ROUTES_PER_PREFIX.trailing_zeros() as u8
                {
                    collector.error(
                        Some(raw_prefix.announce.span),
                        format!(
                            "splitting {cidr} into /{length}s makes more than {MAX_ROUTES_PER_PREFIX} routes"
                        ),
                        Some("onboard smaller prefixes, or split into shorter routes".into()),
                    );
                    cidr.prefix_len()
                } else {
                    length
                }
            }
        };
        if route_length < limits.shortest || route_length > limits.longest {
            let how = if route_length > limits.longest {
                format!(
                    "routes longer than /{} are filtered by most networks; raise [settings] {}_announce_lengths.longest only if your peers accept them",
                    limits.longest,
                    family_name(&cidr).to_lowercase()
                )
            } else {
                format!(
                    "announce it as {{ split = {} }} or onboard it as smaller prefixes",
                    limits.shortest
                )
            };
            collector.error(
                Some(raw_prefix.announce.span),
                format!(
                    "prefix {cidr} would be announced as /{route_length} routes, outside the {} limits /{}–/{}",
                    family_name(&cidr),
                    limits.shortest,
                    limits.longest
                ),
                Some(how),
            );
        }
        if let Some(roa) = &raw_prefix.roa {
            if roa.value.asn != raw_prefix.origin_asn.value {
                collector.error(
                    Some(roa.span),
                    format!(
                        "RPKI-invalid: the ROA of {cidr} authorises AS{}, but the prefix is originated by AS{}",
                        roa.value.asn, raw_prefix.origin_asn.value
                    ),
                    Some("fix origin_asn, or publish a ROA for the originating ASN".into()),
                );
            }
            if roa.value.max_length > bits {
                collector.error(
                    Some(roa.span),
                    format!(
                        "family mismatch: ROA max_length {} is longer than an {} address",
                        roa.value.max_length,
                        family_name(&cidr)
                    ),
                    None,
                );
            } else if roa.value.max_length < route_length {
                collector.error(
                    Some(roa.span),
                    format!(
                        "RPKI-invalid: routes of {cidr} are /{route_length}, longer than the ROA's max_length {}",
                        roa.value.max_length
                    ),
                    Some(format!(
                        "publish a ROA with max_length ≥ {route_length}, or announce shorter routes"
                    )),
                );
            }
        }
        prefix_candidates.push(Prefix {
            cidr,
            origin_asn: raw_prefix.origin_asn.value,
            owner: raw_prefix.owner.clone(),
            advertise: raw_prefix.advertise,
            announce: match raw_prefix.announce.value {
                AnnounceMode::Split(length) if length == route_length => {
                    AnnounceMode::Split(length)
                }
                _ => AnnounceMode::Aggregate,
            },
            roa: raw_prefix.roa.as_ref().map(|roa| roa.value),
            irr_token: raw_prefix.irr_token.clone(),
            rdns_token: raw_prefix.rdns_token.clone(),
            span: raw_prefix.cidr.span,
        });
    }
    prefix_candidates.sort_unstable_by_key(|prefix| (network_key(&prefix.cidr), prefix.span));
    let mut prefixes: Vec<Prefix> = Vec::with_capacity(prefix_candidates.len());
    for prefix in prefix_candidates {
        if let Some(last) = prefixes.last()
            && last.cidr.contains(&prefix.cidr)
        {
            let message = if last.cidr == prefix.cidr {
                format!("prefix {} is onboarded twice", prefix.cidr)
            } else {
                format!(
                    "onboarded prefix {} overlaps onboarded prefix {}",
                    prefix.cidr, last.cidr
                )
            };
            collector.error(
                Some(prefix.span),
                message,
                Some(format!(
                    "{} is onboarded at {}; onboard each address once (use bindings to give part of a prefix to another service)",
                    last.cidr,
                    sources.locate(last.span)
                )),
            );
            continue;
        }
        prefixes.push(prefix);
    }

    // Bindings: resolve services, sort once, then find each binding's onboarded prefix with a
    // single merge sweep over the (also sorted, disjoint) prefixes.
    let mut binding_candidates: Vec<(u32, Span, IpNet)> = Vec::with_capacity(raw.bindings.len());
    for raw_binding in &raw.bindings {
        let cidr = validate_network(&raw_binding.cidr, "binding", &mut collector);
        let Some(service) = service_index.get(&raw_binding.service.value) else {
            collector.error(
                Some(raw_binding.service.span),
                format!(
                    "binding {cidr} names unknown service `{}`",
                    raw_binding.service.value
                ),
                Some(suggestion(
                    &raw_binding.service.value,
                    services.iter().map(|service| service.name.as_str()),
                    "service",
                )),
            );
            continue;
        };
        binding_candidates.push((*service, raw_binding.cidr.span, cidr));
    }
    binding_candidates.sort_unstable_by_key(|(_, span, cidr)| (network_key(cidr), *span));
    let mut bindings: Vec<Binding> = Vec::with_capacity(binding_candidates.len());
    let mut prefix_cursor = 0_usize;
    for (service, span, cidr) in binding_candidates {
        if let Some(last) = bindings.last_mut()
            && last.cidr == cidr
        {
            // Report the binding the change added; the one already running is named in help.
            let (kept, added) = if baseline_binds(baseline, &cidr, &services[service as usize].name)
                && !baseline_binds(baseline, &cidr, &services[last.service as usize].name)
            {
                let replaced = (last.service, last.span);
                last.service = service;
                last.span = span;
                ((service, span), replaced)
            } else {
                ((last.service, last.span), (service, span))
            };
            collector.error(
                Some(added.1),
                format!(
                    "{cidr} is bound twice: already bound to service `{}`",
                    services[kept.0 as usize].name
                ),
                Some(format!(
                    "the other binding is at {}; a cidr has exactly one service, so remove one (bind a more-specific cidr to layer another service)",
                    sources.locate(kept.1)
                )),
            );
            continue;
        }
        let key = network_key(&cidr);
        while prefix_cursor + 1 < prefixes.len()
            && network_key(&prefixes[prefix_cursor + 1].cidr) <= key
        {
            prefix_cursor += 1;
        }
        let containing = prefixes
            .get(prefix_cursor)
            .filter(|prefix| prefix.cidr.contains(&cidr));
        if containing.is_none() {
            let first_after = prefixes.partition_point(|prefix| network_key(&prefix.cidr) < key);
            let inside = prefixes
                .get(first_after)
                .filter(|prefix| cidr.contains(&prefix.cidr))
                .map(|prefix| prefix.cidr);
            let help = match inside {
                Some(inside) => format!(
                    "{cidr} is wider than the onboarded prefix {inside}; bind {inside} (or a more-specific) instead"
                ),
                None => "onboard a [[prefix]] containing it first, or fix the cidr".to_string(),
            };
            collector.error(
                Some(span),
                format!("binding {cidr} is outside every onboarded prefix"),
                Some(help),
            );
            continue;
        }
        bindings.push(Binding {
            cidr,
            service,
            prefix: prefix_cursor as u32,
            span,
        });
    }
    let mut bindings_v4 = PrefixMap::new();
    let mut bindings_v6 = PrefixMap::new();
    let mut default_binding: Vec<Option<u32>> = vec![None; prefixes.len()];
    let mut more_specific_count: Vec<u32> = vec![0; prefixes.len()];
    let mut service_binding_count: Vec<u32> = vec![0; services.len()];
    for (index, binding) in bindings.iter().enumerate() {
        match binding.cidr {
            IpNet::V4(network) => {
                bindings_v4.insert(network, index as u32);
            }
            IpNet::V6(network) => {
                bindings_v6.insert(network, index as u32);
            }
        }
        service_binding_count[binding.service as usize] += 1;
        if prefixes[binding.prefix as usize].cidr == binding.cidr {
            default_binding[binding.prefix as usize] = Some(index as u32);
        } else {
            more_specific_count[binding.prefix as usize] += 1;
        }
    }

    // G1 and routes.
    let longest = |network: &IpNet| -> Option<u32> {
        match network {
            IpNet::V4(network) => bindings_v4.get_lpm(network).map(|(_, index)| *index),
            IpNet::V6(network) => bindings_v6.get_lpm(network).map(|(_, index)| *index),
        }
    };
    let mut routes: Vec<Route> = Vec::with_capacity(prefixes.len());
    let mut service_routes: Vec<u32> = vec![0; services.len()];
    let mut pending_warned: BTreeMap<(usize, u32), ()> = BTreeMap::new();
    for (prefix_index, prefix) in prefixes.iter().enumerate() {
        if !prefix.advertise {
            continue;
        }
        let Some(default) = default_binding[prefix_index] else {
            let layered: Vec<String> = bindings
                .iter()
                .filter(|binding| binding.prefix as usize == prefix_index)
                .take(3)
                .map(|binding| {
                    format!(
                        "{} → {}",
                        binding.cidr, services[binding.service as usize].name
                    )
                })
                .collect();
            let detail = if layered.is_empty() {
                "it has no bindings at all".to_string()
            } else {
                format!(
                    "it has only more-specific bindings ({}{})",
                    layered.join(", "),
                    if more_specific_count[prefix_index] > 3 {
                        ", …"
                    } else {
                        ""
                    }
                )
            };
            collector.error(
                Some(prefix.span),
                format!(
                    "G1: prefix {} is advertised but has no default binding, so it is not announced: {detail}",
                    prefix.cidr
                ),
                Some(format!(
                    "add [[binding]] cidr = \"{}\" with the service that receives the rest of the prefix's traffic, or set advertise = false until it exists",
                    prefix.cidr
                )),
            );
            continue;
        };
        let pieces: Box<dyn Iterator<Item = IpNet>> = match prefix.announce {
            AnnounceMode::Aggregate => Box::new(std::iter::once(prefix.cidr)),
            AnnounceMode::Split(length) => match prefix.cidr.subnets(length) {
                Ok(subnets) => Box::new(subnets),
                Err(_) => Box::new(std::iter::once(prefix.cidr)),
            },
        };
        for piece in pieces {
            let binding = if piece == prefix.cidr {
                default
            } else {
                longest(&piece).unwrap_or(default)
            };
            let service = bindings[binding as usize].service;
            service_routes[service as usize] += 1;
            if services[service as usize].lifecycle == Lifecycle::Pending
                && pending_warned.insert((prefix_index, service), ()).is_none()
            {
                collector.warning(
                    Some(prefix.span),
                    format!(
                        "prefix {} is advertised, but its route(s) are bound to pending service `{}` and are not announced",
                        prefix.cidr, services[service as usize].name
                    ),
                    Some("activate the service (lifecycle = \"active\") when it is ready".into()),
                );
            }
            routes.push(Route {
                prefix: piece,
                binding_cidr: bindings[binding as usize].cidr,
                origin_asn: prefix.origin_asn,
                onboarded: prefix_index as u32,
                binding,
                service,
            });
        }
    }

    // Local addresses: the longest binding covering each must be one of the service's own,
    // and cover all of it, or the address would take traffic another service handles.
    for (index, raw_index) in service_order.iter().enumerate() {
        let raw_service = &raw.services[*raw_index];
        for address in &raw_service.local_addresses {
            let network = address.value.trunc();
            let host = IpNet::from(address.value.addr());
            let service = &services[index].name;
            match longest(&host).map(|binding| &bindings[binding as usize]) {
                None => collector.error(
                    Some(address.span),
                    format!(
                        "local address {} of service `{service}` is inside no binding",
                        address.value
                    ),
                    Some(format!(
                        "bind a cidr containing it to `{service}` (inside an onboarded \
                         [[prefix]]), or remove it from local_addresses"
                    )),
                ),
                Some(binding) if binding.service as usize != index => collector.error(
                    Some(address.span),
                    format!(
                        "local address {} of service `{service}` is handled by service `{}`: \
                         the longest binding covering it is {} ({})",
                        address.value,
                        services[binding.service as usize].name,
                        binding.cidr,
                        sources.locate(binding.span)
                    ),
                    Some(format!(
                        "a service binds only addresses of its own bindings: bind a cidr \
                         containing {} to `{service}`, or remove the address",
                        address.value.addr()
                    )),
                ),
                Some(binding) if !binding.cidr.contains(&network) => collector.error(
                    Some(address.span),
                    format!(
                        "local address {} of service `{service}` is wider than its binding {}",
                        address.value, binding.cidr
                    ),
                    Some(format!(
                        "write the address alone, \"{}\"",
                        IpNet::from(address.value.addr())
                    )),
                ),
                Some(_) => {}
            }
        }
    }

    // Blackholes by construction: a layered binding whose service is absent where the route
    // covering it is announced.
    for binding in &bindings {
        let Some(route_index) =
            crate::model::find_containing(&routes, &binding.cidr, |route| route.prefix)
        else {
            continue;
        };
        let route = &routes[route_index];
        if route.prefix == binding.cidr {
            continue;
        }
        let route_service = &services[route.service as usize];
        let layered_service = &services[binding.service as usize];
        if route_service.announcing.is_empty() || route.service == binding.service {
            continue;
        }
        if layered_service.lifecycle == Lifecycle::Pending {
            // A pending service runs nowhere: the binding's addresses would arrive with the
            // covering route and find no service to handle them.
            collector.error(
                Some(binding.span),
                format!(
                    "blackhole by construction: binding {} is bound to pending service `{}` under route {} (service `{}`), which is announced at {} location(s): its traffic would arrive where no service handles it",
                    binding.cidr,
                    layered_service.name,
                    route.prefix,
                    route_service.name,
                    route_service.announcing.len(),
                ),
                Some(format!(
                    "activate `{}` first (lifecycle = \"active\", with a topology covering those locations), or add the binding when the service is ready",
                    layered_service.name
                )),
            );
            continue;
        }
        let missing = route_service
            .announcing
            .difference(&layered_service.matched);
        if !missing.is_empty() {
            let names: Vec<&str> = missing
                .iter()
                .map(|index| locations[index].name.as_str())
                .collect();
            collector.error(
                Some(binding.span),
                format!(
                    "blackhole by construction: binding {} (service `{}`) lies under route {} (service `{}`), which is announced at {} location(s) where `{}` is absent: {}",
                    binding.cidr,
                    layered_service.name,
                    route.prefix,
                    route_service.name,
                    names.len(),
                    layered_service.name,
                    list_names(&names)
                ),
                Some(format!(
                    "widen the topology of `{}` to those locations, narrow `{}`, or remove the binding",
                    layered_service.name, route_service.name
                )),
            );
        }
    }

    // Service-level checks.
    for (index, service) in services.iter().enumerate() {
        if service_binding_count[index] == 0 {
            collector.warning(
                Some(service.span),
                format!("service `{}` has no bindings", service.name),
                Some("bind a cidr to it, or remove it".into()),
            );
            continue;
        }
        if service.lifecycle == Lifecycle::Active
            && service_routes[index] > 0
            && service.matched.intersection(&live).is_empty()
        {
            if service.matched.is_empty() {
                collector.error(
                    Some(service.span),
                    format!(
                        "active service `{}` has bound routes but its topology `{}` matches no location",
                        service.name, service.topology
                    ),
                    Some("fix the selector so that it selects live locations, or make the service pending".into()),
                );
            } else {
                let names: Vec<String> = service
                    .matched
                    .iter()
                    .map(|index| format!("{} ({})", locations[index].name, locations[index].state))
                    .collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                collector.warning(
                    Some(service.span),
                    format!(
                        "active service `{}` has bound routes but its topology `{}` matches no live location (only {}): its routes are announced nowhere",
                        service.name,
                        service.topology,
                        list_names(&names)
                    ),
                    Some("a plan that withdraws routes announced today this way is refused (G3)".into()),
                );
            }
        }
    }

    let has_errors = collector.has_errors();
    let diagnostics = collector.finish(sources);
    if has_errors {
        return Err(diagnostics);
    }
    let hash = canonical_hash(&settings, &locations, &services, &prefixes, &bindings);
    let route_services = routes.iter().map(|route| route.service).collect();
    Ok(Topology {
        generation,
        hash,
        sources: raw.sources,
        settings,
        locations,
        location_index,
        live,
        services,
        service_index,
        prefixes,
        bindings,
        bindings_v4,
        bindings_v6,
        routes,
        route_services,
        warnings: diagnostics.items,
    })
}

fn canonical_hash(
    settings: &topologyd_config::Settings,
    locations: &[Location],
    services: &[Service],
    prefixes: &[Prefix],
    bindings: &[Binding],
) -> [u8; 32] {
    let mut hasher = CanonicalHasher(Sha256::new());
    hasher.text("topologyd-topology-v1");
    for limits in [
        settings.ipv4_announce_lengths,
        settings.ipv6_announce_lengths,
    ] {
        hasher.number(u64::from(limits.shortest));
        hasher.number(u64::from(limits.longest));
    }
    hasher.number(settings.max_withdrawn_pair_share.to_bits());
    hasher.number(settings.max_affected_location_share.to_bits());
    // Hashed only when set, so that topologies written before the setting existed keep their
    // hash (daemons of two releases must agree on it during a rollout).
    if settings.small_change_routes != topologyd_config::DEFAULT_SMALL_CHANGE_ROUTES {
        hasher.text("small_change_routes");
        hasher.number(settings.small_change_routes);
    }
    hasher.number(locations.len() as u64);
    for location in locations {
        for text in [
            &location.name,
            &location.region,
            &location.metro,
            &location.country,
        ] {
            hasher.text(text);
        }
        hasher.text(location.state.as_str());
        hasher.number(location.tags.len() as u64);
        for tag in &location.tags {
            hasher.text(tag);
        }
    }
    hasher.number(services.len() as u64);
    for service in services {
        hasher.text(&service.name);
        hasher.text(service.lifecycle.as_str());
        hasher.text(&service.topology);
        hasher.number(u64::from(service.announce_at_test_locations));
        let attributes = &service.attributes;
        hasher.number(attributes.communities.len() as u64);
        for community in &attributes.communities {
            hasher.number(u64::from(community.0) << 16 | u64::from(community.1));
        }
        hasher.number(attributes.large_communities.len() as u64);
        for community in &attributes.large_communities {
            hasher.number(u64::from(community.0));
            hasher.number(u64::from(community.1) << 32 | u64::from(community.2));
        }
        hasher.number(attributes.med.map_or(u64::MAX, u64::from));
        hasher.number(u64::from(attributes.as_path_prepend));
        hash_health(&mut hasher, service);
    }
    hasher.number(prefixes.len() as u64);
    for prefix in prefixes {
        hasher.network(&prefix.cidr);
        hasher.number(u64::from(prefix.origin_asn));
        hasher.text(&prefix.owner);
        hasher.number(u64::from(prefix.advertise));
        hasher.number(match prefix.announce {
            AnnounceMode::Aggregate => 0,
            AnnounceMode::Split(length) => u64::from(length) + 1,
        });
        match prefix.roa {
            Some(roa) => {
                hasher.number(u64::from(roa.asn));
                hasher.number(u64::from(roa.max_length));
            }
            None => hasher.number(u64::MAX),
        }
        hasher.text(prefix.irr_token.as_deref().unwrap_or(""));
        hasher.text(prefix.rdns_token.as_deref().unwrap_or(""));
    }
    hasher.number(bindings.len() as u64);
    for binding in bindings {
        hasher.network(&binding.cidr);
        hasher.text(&services[binding.service as usize].name);
    }
    hasher.0.finalize().into()
}

/// Marks the optional health part of a service in the canonical form. Services without health
/// checks or local addresses add nothing, so their hashes are those of before health checks
/// existed; the marker cannot be mistaken for what may follow a service (the length of the next
/// service's name, or the number of prefixes).
const HEALTH_MARKER: u64 = u64::MAX - 1;

/// The health checks and local addresses of `service`, in canonical form: every field of the
/// spec, the checks in their written order (that is the order a round reports them in), the
/// local addresses sorted.
fn hash_health(hasher: &mut CanonicalHasher, service: &Service) {
    if service.health.is_none() && service.local_addresses.is_empty() {
        return;
    }
    hasher.number(HEALTH_MARKER);
    hasher.number(service.local_addresses.len() as u64);
    for address in &service.local_addresses {
        hasher.network(address);
    }
    let Some(health) = &service.health else {
        hasher.number(0);
        return;
    };
    hasher.number(1);
    for number in [
        health.interval_ms,
        health.timeout_ms,
        u64::from(health.rise),
        u64::from(health.fall),
        health.hold_down_ms,
        health.max_hold_down_ms,
    ] {
        hasher.number(number);
    }
    match &health.on_unhealthy {
        UnhealthyAction::Withdraw => hasher.number(0),
        UnhealthyAction::Degrade(degrade) => {
            hasher.number(1);
            hasher.number(u64::from(degrade.as_path_prepend));
            hasher.number(degrade.med.map_or(u64::MAX, u64::from));
            hasher.number(degrade.communities.len() as u64);
            for community in &degrade.communities {
                hasher.number(u64::from(community.0) << 16 | u64::from(community.1));
            }
        }
    }
    hasher.number(health.checks.len() as u64);
    for check in &health.checks {
        match check {
            ProbeSpec::Http { url, expect_status } => {
                hasher.text("http");
                hasher.text(url);
                hasher.number(u64::from(*expect_status));
            }
            ProbeSpec::Tcp { address } => {
                hasher.text("tcp");
                hasher.text(address);
            }
            ProbeSpec::Dns {
                server,
                name,
                record_type,
                expect,
            } => {
                hasher.text("dns");
                hasher.text(server);
                hasher.text(name);
                hasher.text(match record_type {
                    DnsRecordType::A => "A",
                    DnsRecordType::Aaaa => "AAAA",
                });
                match expect {
                    Some(expect) => {
                        hasher.number(1);
                        hasher.text(expect);
                    }
                    None => hasher.number(0),
                }
            }
            ProbeSpec::Exec { command } => {
                hasher.text("exec");
                hasher.number(command.len() as u64);
                for argument in command {
                    hasher.text(argument);
                }
            }
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
tags = ["canary"]
state = "live"

[[location]]
name = "iad01"
region = "us"
metro = "IAD"
country = "US"
state = "live"

[[location]]
name = "tst01"
region = "eu"
metro = "AMS"
country = "NL"
state = "test"
"#;

    fn errors(services: &str, prefixes: &str) -> String {
        let sources = vec![
            Source::new("fleet.toml", FLEET),
            Source::new("services.toml", services),
            Source::new("prefixes.toml", prefixes),
        ];
        match compile(&sources, 1) {
            Ok(topology) => {
                let warnings: Vec<String> = topology
                    .warnings()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                format!("OK\n{}", warnings.join("\n"))
            }
            Err(diagnostics) => diagnostics.to_string(),
        }
    }

    const SERVICES: &str = r#"
[[service]]
name = "web"
topology = "all"

[[service]]
name = "eu-only"
topology = 'region = "eu"'
"#;

    #[test]
    fn reports_every_error_at_once_with_positions() {
        let prefixes = r#"
[[prefix]]
cidr = "192.0.2.1/24"
origin_asn = 64500
owner = "o"
advertise = true

[[prefix]]
cidr = "192.0.2.0/25"
origin_asn = 64500
owner = "o"
advertise = true

[[prefix]]
cidr = "10.0.0.0/7"
origin_asn = 64500
owner = "o"
advertise = true

[[prefix]]
cidr = "2001:db8::/32"
origin_asn = 64500
owner = "o"
advertise = true
announce = { split = 64 }

[[binding]]
cidr = "192.0.2.0/24"
service = "webb"

[[binding]]
cidr = "198.51.100.0/24"
service = "web"

[[binding]]
cidr = "10.0.0.0/7"
service = "web"

[[binding]]
cidr = "10.0.0.0/7"
service = "eu-only"

[[binding]]
cidr = "2001:db8::/32"
service = "web"
"#;
        let text = errors(SERVICES, prefixes);
        for expected in [
            "prefixes.toml:3:8: error: prefix 192.0.2.1/24 has host bits set\n  help: did you mean \"192.0.2.0/24\"?",
            "prefixes.toml:9:8: error: onboarded prefix 192.0.2.0/25 overlaps onboarded prefix 192.0.2.0/24",
            "prefixes.toml:15:8: error: prefix 10.0.0.0/7 would be announced as /7 routes, outside the IPv4 limits /8–/24",
            "prefixes.toml:25:12: error: splitting 2001:db8::/32 into /64s makes more than 65536 routes",
            "prefixes.toml:9:8: error: prefix 192.0.2.0/25 would be announced as /25 routes, outside the IPv4 limits /8–/24",
            "prefixes.toml:29:11: error: binding 192.0.2.0/24 names unknown service `webb`\n  help: did you mean `web`?",
            "prefixes.toml:32:8: error: binding 198.51.100.0/24 is outside every onboarded prefix",
            "prefixes.toml:40:8: error: 10.0.0.0/7 is bound twice: already bound to service `web`",
            "G1: prefix 192.0.2.0/24 is advertised but has no default binding",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn unknown_selector_values_point_inside_the_string() {
        let services =
            "[[service]]\nname = \"web\"\ntopology = 'region = \"eu\" or tag = \"canry\"'\n";
        let text = errors(services, "");
        assert!(
            text.contains("services.toml:3:37: error: unknown tag \"canry\" in the topology of service `web`\n  help: did you mean `canary`?"),
            "{text}"
        );
    }

    #[test]
    fn roa_must_authorise_every_announced_route() {
        let prefixes = r#"
[[prefix]]
cidr = "192.0.2.0/23"
origin_asn = 64500
owner = "o"
advertise = true
announce = { split = 24 }
roa = { asn = 64501, max_length = 23 }

[[binding]]
cidr = "192.0.2.0/23"
service = "web"
"#;
        let text = errors(SERVICES, prefixes);
        assert!(
            text.contains("RPKI-invalid: the ROA of 192.0.2.0/23 authorises AS64501"),
            "{text}"
        );
        assert!(
            text.contains("RPKI-invalid: routes of 192.0.2.0/23 are /24"),
            "{text}"
        );
    }

    #[test]
    fn a_service_matching_nothing_with_bound_routes_is_an_error() {
        let services =
            "[[service]]\nname = \"web\"\ntopology = 'region = \"eu\" and region = \"us\"'\n";
        let prefixes = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
        let text = errors(services, prefixes);
        assert!(
            text.contains(
                "services.toml:2:8: error: active service `web` has bound routes but its topology"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_pending_service_under_an_announced_route_is_a_blackhole() {
        let services = format!(
            "{SERVICES}\n[[service]]\nname = \"later\"\nlifecycle = \"pending\"\ntopology = \"all\"\n"
        );
        let prefixes = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 64500
owner = "o"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "web"

[[binding]]
cidr = "192.0.2.64/26"
service = "later"
"#;
        let text = errors(&services, prefixes);
        assert!(
            text.contains("prefixes.toml:13:8: error: blackhole by construction: binding 192.0.2.64/26 is bound to pending service `later` under route 192.0.2.0/24"),
            "{text}"
        );
        assert!(text.contains("activate `later` first"), "{text}");
        // Not advertised: nothing arrives, so nothing is blackholed; only the unused service
        // is worth a warning.
        let text = errors(
            &services,
            &prefixes.replace("advertise = true", "advertise = false"),
        );
        assert!(text.starts_with("OK"), "{text}");
        assert!(
            text.contains("warning: service `eu-only` has no bindings"),
            "{text}"
        );
    }

    #[test]
    fn attribute_values_differing_only_in_case_are_warned_about() {
        let fleet = "[[location]]\nname = \"a1\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                     [[location]]\nname = \"a2\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                     [[location]]\nname = \"a3\"\nregion = \"EU\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                     [[service]]\nname = \"web\"\ntopology = \"all\"\n\
                     [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                     [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
        let topology = compile(&[Source::new("t.toml", fleet)], 1).unwrap();
        let warnings: Vec<String> = topology
            .warnings()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("t.toml:15:10: warning: region `EU` (1 location(s)) differs only in case from `eu` (2 location(s))"),
            "{warnings:?}"
        );
    }

    #[test]
    fn hash_ignores_file_order_and_formatting_but_not_content() {
        let prefixes = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
        let compile_files = |files: Vec<(&str, String)>| {
            let sources: Vec<Source> = files
                .into_iter()
                .map(|(name, text)| Source::new(name, text))
                .collect();
            compile(&sources, 7).unwrap()
        };
        let one = compile_files(vec![
            ("fleet.toml", FLEET.into()),
            ("services.toml", SERVICES.into()),
            ("prefixes.toml", prefixes.into()),
        ]);
        let reordered = compile_files(vec![
            ("prefixes.toml", format!("# comment\n{prefixes}")),
            ("all.toml", format!("{SERVICES}\n{FLEET}")),
        ]);
        assert_eq!(one.hash(), reordered.hash());
        assert_eq!(one.generation(), 7);
        let changed = compile_files(vec![
            ("fleet.toml", FLEET.into()),
            ("services.toml", SERVICES.replace("\"all\"", "'tag:canary'")),
            ("prefixes.toml", prefixes.into()),
        ]);
        assert_ne!(one.hash(), changed.hash());
        let bundle = SourceBundle::of(&one);
        let json = serde_json::to_string(&bundle).unwrap();
        let restored: SourceBundle = serde_json::from_str(&json).unwrap();
        assert_eq!(restored.compile().unwrap().hash(), one.hash());
    }

    const HEALTH_PREFIXES: &str = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 64500
owner = "o"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "web"

[[binding]]
cidr = "192.0.2.128/25"
service = "api"

[[prefix]]
cidr = "2001:db8::/48"
origin_asn = 64500
owner = "o"
advertise = true

[[binding]]
cidr = "2001:db8::/48"
service = "web"
"#;

    /// Two services, `web` with `web_addresses` and a health block, `api` with `api_addresses`.
    fn health_services(web_addresses: &str, api_addresses: &str, check: &str) -> String {
        format!(
            "[[service]]\nname = \"web\"\ntopology = \"all\"\nlocal_addresses = [{web_addresses}]\n\n[service.health]\ninterval_ms = 1000\ntimeout_ms = 500\n\n[[service.health.check]]\n{check}\n\n[[service]]\nname = \"api\"\ntopology = \"all\"\nlocal_addresses = [{api_addresses}]\n"
        )
    }

    const TCP_CHECK: &str = "kind = \"tcp\"\naddress = \"{location}.example.test:80\"";

    fn compile_health(services: &str) -> Result<Topology, Diagnostics> {
        compile(
            &[
                Source::new("fleet.toml", FLEET),
                Source::new("services.toml", services),
                Source::new("prefixes.toml", HEALTH_PREFIXES),
            ],
            1,
        )
    }

    #[test]
    fn health_and_local_addresses_reach_the_service() {
        let topology = compile_health(&health_services(
            "\"2001:db8::10/128\", \"192.0.2.10/32\", \"192.0.2.10/32\"",
            "\"192.0.2.130/32\", \"192.0.2.131/32\"",
            TCP_CHECK,
        ))
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
        let web = topology.service("web").unwrap();
        let addresses: Vec<String> = web
            .local_addresses
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(addresses, ["192.0.2.10/32", "2001:db8::10/128"]);
        let health = web.health.as_ref().unwrap();
        assert_eq!(health.interval_ms, 1000);
        assert_eq!(
            health.checks,
            [ProbeSpec::Tcp {
                address: "{location}.example.test:80".into()
            }]
        );
        let api = topology.service("api").unwrap();
        assert!(api.health.is_none());
        assert_eq!(api.local_addresses.len(), 2);
        // What `topoctl` and the control API print.
        let json = serde_json::to_value(web).unwrap();
        assert_eq!(
            json["local_addresses"],
            serde_json::json!(["192.0.2.10/32", "2001:db8::10/128"])
        );
        assert_eq!(
            json["health"]["on_unhealthy"],
            serde_json::json!({"action": "withdraw"})
        );
        assert_eq!(
            json["health"]["checks"],
            serde_json::json!([{"kind": "tcp", "address": "{location}.example.test:80"}])
        );
        assert_eq!(
            serde_json::to_value(api).unwrap()["health"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn local_addresses_must_lie_in_the_services_own_bindings() {
        let text = match compile_health(&health_services(
            "\"192.0.2.10/32\", \"192.0.2.200/32\", \"198.51.100.1/32\"",
            "\"192.0.2.130/32\"",
            TCP_CHECK,
        )) {
            Ok(_) => panic!("compiled"),
            Err(diagnostics) => diagnostics.to_string(),
        };
        for expected in [
            "services.toml:4:37: error: local address 192.0.2.200/32 of service `web` is handled by service `api`: the longest binding covering it is 192.0.2.128/25 (prefixes.toml:13:8)\n  help: a service binds only addresses of its own bindings: bind a cidr containing 192.0.2.200 to `web`, or remove the address",
            "services.toml:4:55: error: local address 198.51.100.1/32 of service `web` is inside no binding\n  help: bind a cidr containing it to `web`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(text.contains("2 error(s)"), "{text}");
    }

    #[test]
    fn hash_covers_health_and_local_addresses_but_not_their_layout() {
        let hash = |web: &str, check: &str| -> [u8; 32] {
            compile_health(&health_services(web, "", check))
                .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
                .hash()
        };
        let base = hash("\"192.0.2.10/32\", \"2001:db8::10/128\"", TCP_CHECK);
        // Order and duplicates of the local addresses, and file layout, do not matter.
        assert_eq!(
            base,
            hash(
                "\"2001:db8::10/128\", \"192.0.2.10/32\", \"2001:db8::10/128\"",
                TCP_CHECK
            )
        );
        let split = compile(
            &[
                Source::new("prefixes.toml", format!("# moved\n{HEALTH_PREFIXES}")),
                Source::new(
                    "all.toml",
                    format!(
                        "{}\n{FLEET}",
                        health_services(
                            "\"192.0.2.10/32\",\n  \"2001:db8::10/128\"",
                            "",
                            "address = \"{location}.example.test:80\"   # the same check\nkind = 'tcp'"
                        )
                    ),
                ),
            ],
            2,
        )
        .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
        assert_eq!(base, split.hash());
        // Any change of the health spec or the addresses changes it.
        for (web, check) in [
            ("\"192.0.2.10/32\"", TCP_CHECK),
            ("\"192.0.2.11/32\", \"2001:db8::10/128\"", TCP_CHECK),
            (
                "\"192.0.2.10/32\", \"2001:db8::10/128\"",
                "kind = \"tcp\"\naddress = \"{location}.example.test:81\"",
            ),
            (
                "\"192.0.2.10/32\", \"2001:db8::10/128\"",
                "kind = \"http\"\nurl = \"http://{location}.example.test:80/\"",
            ),
            (
                "\"192.0.2.10/32\", \"2001:db8::10/128\"",
                "kind = \"dns\"\nserver = \"{location}.example.test:80\"\nname = \"n\"\nrecord_type = \"A\"",
            ),
            (
                "\"192.0.2.10/32\", \"2001:db8::10/128\"",
                "kind = \"dns\"\nserver = \"{location}.example.test:80\"\nname = \"n\"\nrecord_type = \"A\"\nexpect = \"192.0.2.1\"",
            ),
            (
                "\"192.0.2.10/32\", \"2001:db8::10/128\"",
                &format!(
                    "{TCP_CHECK}\n[[service.health.check]]\nkind = \"exec\"\ncommand = [\"/bin/true\"]"
                ),
            ),
            (
                "\"192.0.2.10/32\", \"2001:db8::10/128\"",
                &format!("{TCP_CHECK}\n[service.health.degrade]\nmed = 5"),
            ),
        ] {
            let changed = if check.contains("degrade") {
                let services = health_services(web, "", check).replace(
                    "timeout_ms = 500\n",
                    "timeout_ms = 500\non_unhealthy = \"degrade\"\n",
                );
                compile_health(&services)
                    .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
                    .hash()
            } else {
                hash(web, check)
            };
            assert_ne!(base, changed, "{web} {check}");
        }
        for (from, to) in [
            ("interval_ms = 1000", "interval_ms = 1001"),
            ("timeout_ms = 500", "timeout_ms = 501"),
            ("timeout_ms = 500", "timeout_ms = 500\nrise = 2"),
            ("timeout_ms = 500", "timeout_ms = 500\nfall = 2"),
            ("timeout_ms = 500", "timeout_ms = 500\nhold_down_ms = 1"),
            (
                "timeout_ms = 500",
                "timeout_ms = 500\nmax_hold_down_ms = 300001",
            ),
        ] {
            let services =
                health_services("\"192.0.2.10/32\", \"2001:db8::10/128\"", "", TCP_CHECK)
                    .replacen(from, to, 1);
            let changed = compile_health(&services)
                .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
                .hash();
            assert_ne!(base, changed, "{to}");
        }
        // Without health and local addresses, a service hashes as before they existed.
        let without = compile_health(
            "[[service]]\nname = \"web\"\ntopology = \"all\"\n[[service]]\nname = \"api\"\ntopology = \"all\"\n",
        )
        .unwrap();
        assert_ne!(base, without.hash());
        let mut plain = CanonicalHasher(Sha256::new());
        plain.text("web");
        let mut marked = CanonicalHasher(Sha256::new());
        marked.text("web");
        hash_health(&mut marked, &without.services()[1]);
        assert_eq!(without.services()[1].name, "web");
        assert_eq!(plain.0.finalize(), marked.0.finalize());
    }
}
