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

//!
//! One function per phase, each in its own file, sharing one [`Collector`]: `fleet`
//! (locations, attribute index), `services` (selectors, announcing sets), `prefixes` (lengths,
//! ROAs, overlaps), `bindings` (services, duplicates, the longest-match tries), `routes` (G1 and
//! the announced routes), `checks` (local addresses, blackholes, service-level findings) and
//! `hash` (the canonical content hash). This file holds the entry points and the helpers the
//! phases share.

use ipnet::IpNet;
use topologyd_config::{
    Collector, Diagnostics, Located, RawTopology, Source, escape_text, parse_topology_sources_owned,
};

use crate::model::Topology;

mod bindings;
mod checks;
mod fleet;
mod hash;
mod prefixes;
mod routes;
mod services;

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

/// Warns about names of one kind that differ only in case (`ams01` and `AMS01`): a selector or
/// a binding naming one silently misses the other. Reported at the later one.
fn warn_names_differing_in_case<'a>(
    names: impl Iterator<Item = &'a Located<String>>,
    what: &str,
    sources: &topologyd_config::SourceMap,
    collector: &mut Collector,
) {
    let mut seen: std::collections::HashMap<String, &Located<String>> =
        std::collections::HashMap::new();
    let mut names: Vec<&Located<String>> = names.collect();
    names.sort_by_key(|name| name.span);
    for name in names {
        match seen.entry(name.value.to_lowercase()) {
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
    let settings = raw.settings.clone();
    let fleet = fleet::compile_locations(&raw, &mut collector);
    let catalogue = services::compile_services(&raw, &fleet, &mut collector);
    let prefixes = prefixes::compile_prefixes(&raw, &settings, &mut collector);
    let table = bindings::compile_bindings(&raw, &catalogue, &prefixes, baseline, &mut collector);
    let (routes, service_routes) = routes::compile_routes(
        &prefixes,
        &catalogue.services,
        &table,
        raw.sources
            .sources()
            .iter()
            .map(|source| source.text.len())
            .sum(),
        &mut collector,
    );
    checks::local_addresses(&raw, &catalogue, &table, &mut collector);
    checks::blackholes(
        &routes,
        &catalogue.services,
        &table.bindings,
        &fleet.locations,
        &mut collector,
    );
    checks::service_findings(
        &catalogue.services,
        &table.service_binding_count,
        &service_routes,
        &fleet,
        &mut collector,
    );

    let has_errors = collector.has_errors();
    let diagnostics = collector.finish(&raw.sources);
    if has_errors {
        return Err(diagnostics);
    }
    let services::Catalogue {
        services,
        service_index,
        ..
    } = catalogue;
    let bindings::BindingTable {
        bindings,
        bindings_v4,
        bindings_v6,
        ..
    } = table;
    let fleet::Fleet {
        locations,
        location_index,
        live,
        ..
    } = fleet;
    let hash = hash::canonical_hash(&settings, &locations, &services, &prefixes, &bindings);
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
    use super::hash::{CanonicalHasher, hash_health};
    use super::*;
    use sha2::{Digest, Sha256};
    use topologyd_config::health::ProbeSpec;

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

    #[test]
    fn splitting_cannot_multiply_routes_beyond_the_input_s_allowance() {
        // 256 IPv6 /32s split into /48s: 16.7 million routes from 35 KB of text.
        let mut text = String::from(
            "[[location]]\nname = \"a\"\nregion = \"r\"\nmetro = \"m\"\ncountry = \"c\"\nstate = \"live\"\n[[service]]\nname = \"web\"\ntopology = \"all\"\n",
        );
        for index in 0..256 {
            text += &format!(
                "[[prefix]]\ncidr = \"2001:{index:x}::/32\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = {{ split = 48 }}\n[[binding]]\ncidr = \"2001:{index:x}::/32\"\nservice = \"web\"\n"
            );
        }
        let error = compile(&[Source::new("t.toml", text.clone())], 1).unwrap_err();
        let first = error.errors().next().unwrap().to_string();
        // 15 prefixes (983,040 routes) fit; the 16th would pass 1,000,000 plus one per 8 bytes.
        assert!(
            first.contains(
                "announcing prefix 2001:f::/32 as 65536 route(s) would bring the topology past"
            ),
            "{first}"
        );
        assert!(first.contains("help: announce shorter routes"), "{first}");
    }

    #[test]
    fn names_differing_only_in_case_are_warned_about() {
        let text = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                    [[location]]\nname = \"AMS01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                    [[service]]\nname = \"cdn\"\ntopology = \"all\"\n[[service]]\nname = \"CDN\"\ntopology = \"all\"\n\
                    [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                    [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"cdn\"\n\
                    [[prefix]]\ncidr = \"198.51.100.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                    [[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"CDN\"\n";
        let topology = compile(&[Source::new("t.toml", text)], 1).unwrap();
        let warnings: Vec<String> = topology
            .warnings()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            warnings.iter().any(|warning| warning.starts_with(
                "t.toml:8:8: warning: location `AMS01` differs only in case from location `ams01`"
            )),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|warning| warning
                    .contains("service `CDN` differs only in case from service `cdn`")),
            "{warnings:?}"
        );
    }
}
