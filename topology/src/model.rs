//! The compiled topology ([`Topology`]) and its read-only queries: the routes each location must
//! announce ([`Topology::desired`]), where a route is announced, and why an address is handled
//! the way it is ([`Topology::explain`]). Building it is `compile/`'s job; comparing two is
//! `plan/`'s.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topologyd_config::{
    AnnounceMode, Community, Diagnostic, LargeCommunity, Lifecycle, LocationState, NotFoundPolicy,
    PackedSpan, PrefixEvidence, Roa, Settings, Source, SourceLocation, SourceMap, Span,
};

use crate::binding_list::BindingList;
use crate::location_set::LocationSet;
use crate::route_coverage::{RouteCoverage, TaggedRoutes};

/// A location of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    pub region: String,
    pub metro: String,
    pub country: String,
    /// Sorted, without duplicates.
    pub tags: Vec<String>,
    pub state: LocationState,
}

impl Location {
    /// Whether this location's `attribute` is `value` (for tags: includes it).
    pub fn has(&self, attribute: topologyd_config::Attribute, value: &str) -> bool {
        use topologyd_config::Attribute;
        match attribute {
            Attribute::Region => self.region == value,
            Attribute::Metro => self.metro == value,
            Attribute::Country => self.country == value,
            Attribute::Location => self.name == value,
            Attribute::State => self.state.as_str() == value,
            Attribute::Tag => self.tags.iter().any(|tag| tag == value),
        }
    }

    /// Whether `selector` selects this location, evaluated at it alone (the compile evaluates
    /// a service's selector over the whole fleet at once).
    pub fn selected_by(&self, selector: &topologyd_config::Selector) -> bool {
        selector.selects(&|attribute, value| self.has(attribute, value))
    }
}

/// The BGP attributes a service gives its routes (the origin ASN comes from the prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct RouteAttributes {
    /// Sorted, without duplicates.
    pub communities: Vec<Community>,
    /// Sorted, without duplicates.
    pub large_communities: Vec<LargeCommunity>,
    pub med: Option<u32>,
    /// How many times the origin ASN is prepended (0–3).
    pub as_path_prepend: u8,
}

/// A service and the locations its topology selects.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub lifecycle: Lifecycle,
    /// The selector in canonical form.
    pub topology: String,
    pub announce_at_test_locations: bool,
    pub attributes: RouteAttributes,
    /// Local health checks (`[service.health]`); none: always healthy.
    pub health: Option<topologyd_config::health::HealthSpec>,
    /// Addresses bound on a local interface while the service is announced at a location.
    pub local_addresses: Vec<IpNet>,
    /// Locations the selector matches, whatever their state.
    #[serde(skip)]
    pub(crate) matched: LocationSet,
    /// Locations where this service's routes are announced: matched and live (or test, when
    /// the service asks for it); empty for a pending service.
    #[serde(skip)]
    pub(crate) announcing: LocationSet,
    #[serde(skip)]
    pub(crate) span: Span,
}

impl Service {
    /// Locations the topology selector matches, whatever their state.
    pub fn matched(&self) -> &LocationSet {
        &self.matched
    }

    /// Locations where this service's routes are announced.
    pub fn announcing(&self) -> &LocationSet {
        &self.announcing
    }
}

/// An onboarded prefix.
#[derive(Debug, Clone, Serialize)]
pub struct Prefix {
    pub cidr: IpNet,
    pub origin_asn: u32,
    /// Shared by every prefix of the same owner (one allocation per owner, not per prefix).
    pub owner: std::sync::Arc<str>,
    pub advertise: bool,
    pub announce: AnnounceMode,
    pub roa: Option<Roa>,
    /// G5's policy for routes of this prefix that no VRP covers.
    pub rpki: NotFoundPolicy,
    /// The IRR and rDNS tokens and the signed evidence, when the prefix has any (read them with
    /// [`Prefix::irr_token`], [`Prefix::rdns_token`] and [`Prefix::evidence`]).
    pub ownership: Option<Box<PrefixOwnership>>,
    /// Where its cidr was written (packed: 72 bytes a prefix instead of 80).
    #[serde(skip)]
    pub(crate) span: PackedSpan,
}

/// A prefix's proofs of ownership and intent, boxed together in [`Prefix`]: few prefixes have
/// any (customer prefixes being onboarded), and every prefix would otherwise hold their size,
/// 40 bytes, which is a third of a prefix record at a million prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrefixOwnership {
    pub irr_token: Option<Box<str>>,
    pub rdns_token: Option<Box<str>>,
    /// `[prefix.evidence]`: the signed proof of a customer prefix's ownership (checked by G6).
    pub evidence: Option<PrefixEvidence>,
}

impl PrefixOwnership {
    /// The boxed proofs, or `None` when there are none (what most prefixes hold).
    pub fn boxed(
        irr_token: Option<&str>,
        rdns_token: Option<&str>,
        evidence: Option<&PrefixEvidence>,
    ) -> Option<Box<PrefixOwnership>> {
        (irr_token.is_some() || rdns_token.is_some() || evidence.is_some()).then(|| {
            Box::new(PrefixOwnership {
                irr_token: irr_token.map(Box::from),
                rdns_token: rdns_token.map(Box::from),
                evidence: evidence.cloned(),
            })
        })
    }
}

impl Prefix {
    /// The IRR token (`irr_token`), if the prefix has one.
    pub fn irr_token(&self) -> Option<&str> {
        self.ownership.as_ref()?.irr_token.as_deref()
    }

    /// The reverse-DNS token (`rdns_token`), if the prefix has one.
    pub fn rdns_token(&self) -> Option<&str> {
        self.ownership.as_ref()?.rdns_token.as_deref()
    }

    /// `[prefix.evidence]`, if the prefix has one.
    pub fn evidence(&self) -> Option<&PrefixEvidence> {
        self.ownership.as_ref()?.evidence.as_ref()
    }
}

/// A (cidr, service) binding; `service` and `prefix` are indices into the topology.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding {
    pub(crate) cidr: IpNet,
    pub(crate) service: u32,
    pub(crate) prefix: u32,
    /// Where its cidr was written when this record was made (packed: 36 bytes a binding
    /// instead of 40). A record in a [`BindingList`] may have moved since: read its span with
    /// [`BindingList::span`].
    pub(crate) made_span: PackedSpan,
}

/// One announced route: a prefix (the onboarded prefix or one of its split more-specifics) and
/// the longest binding covering it, whose service decides where it is announced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) prefix: IpNet,
    /// The cidr of `binding`, kept here so that listing routes touches one array: listing
    /// every location's routes reads the routes once per location, and reading the bindings
    /// beside them made that half as slow again (at a million routes and 500 locations,
    /// 2.3 s became 3.5 s) for 16 MB saved.
    pub(crate) binding_cidr: IpNet,
    /// Its prefix's, kept here for the same reason: reading it from the prefix made listing
    /// every location's routes of a million-route topology a third slower (1.7 s, 2.2 s).
    pub(crate) origin_asn: u32,
    pub(crate) onboarded: u32,
    pub(crate) binding: u32,
    pub(crate) service: u32,
}

/// A route one location must announce, borrowed from the topology (cheap enough to list every
/// location's routes of a large topology).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DesiredRoute<'t> {
    pub prefix: IpNet,
    pub origin_asn: u32,
    pub attributes: &'t RouteAttributes,
    /// The binding the route comes from (the longest binding covering it).
    pub binding: IpNet,
    pub service: &'t str,
}

impl DesiredRoute<'_> {
    pub fn to_announced(&self) -> AnnouncedRoute {
        AnnouncedRoute {
            prefix: self.prefix,
            origin_asn: self.origin_asn,
            attributes: self.attributes.clone(),
            binding: self.binding,
            service: self.service.to_string(),
        }
    }
}

/// An owned [`DesiredRoute`], as carried by plans and applied by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AnnouncedRoute {
    pub prefix: IpNet,
    pub origin_asn: u32,
    pub attributes: RouteAttributes,
    pub binding: IpNet,
    pub service: String,
}

/// A failed query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("unknown location `{0}`")]
    UnknownLocation(String),
}

/// Why an address is (or is not) announced and who handles it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub address: IpAddr,
    /// The onboarded prefix containing the address.
    pub prefix: Option<IpNet>,
    pub advertised: bool,
    /// The longest binding covering the address and its service: who handles the traffic.
    pub binding: Option<IpNet>,
    pub binding_location: Option<SourceLocation>,
    pub service: Option<String>,
    /// The route covering the address, the binding and service deciding where it is announced.
    pub route: Option<IpNet>,
    pub route_binding: Option<IpNet>,
    pub route_service: Option<String>,
    /// Locations announcing the route.
    pub announced_at: Vec<String>,
    /// Human-readable reasoning, in order.
    pub reasons: Vec<String>,
}

/// The headline numbers of a compiled topology (for status endpoints and logs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySummary {
    pub generation: u64,
    pub hash: String,
    pub locations: usize,
    pub live_locations: usize,
    pub services: usize,
    pub prefixes: usize,
    pub bindings: usize,
    pub routes: usize,
    pub warnings: usize,
}

/// A compiled, validated topology: generation `N` of the sources.
#[derive(Debug)]
pub struct Topology {
    pub(crate) generation: u64,
    pub(crate) hash: crate::compile::TopologyHash,
    pub(crate) sources: SourceMap,
    /// Per source: its digest, whether it holds only prefixes and bindings, and whether it
    /// holds only definitions (what the next compile against this one needs to reuse its
    /// items or its definitions).
    pub(crate) fingerprints: Vec<crate::compile::SourceFingerprint>,
    /// `fingerprints` were made from the texts (false for [`crate::compile_raw`]).
    pub(crate) digests_kept: bool,
    pub(crate) settings: Settings,
    /// Sorted by name.
    pub(crate) locations: Arc<Vec<Location>>,
    pub(crate) location_index: Arc<HashMap<String, u32>>,
    /// Locations in state `live`.
    pub(crate) live: LocationSet,
    /// Sorted by name.
    pub(crate) services: Arc<Vec<Service>>,
    pub(crate) service_index: Arc<HashMap<String, u32>>,
    /// Sorted by cidr; disjoint. In chunks shared with the thread hashing them (see `hash`)
    /// and with the generations patched from this one (`prefix_list.rs`).
    pub(crate) prefixes: crate::PrefixList,
    /// Sorted by cidr, with their longest-prefix match index; shared with the generation a
    /// patched compile took them from when it moved no binding to another service (else a
    /// copy that shares the index).
    pub(crate) bindings: BindingList,
    /// Per service: how many bindings name it (a patched compile that shares the records
    /// takes them).
    pub(crate) service_binding_count: Vec<u32>,
    /// Sorted by prefix; disjoint. In chunks shared with the generations patched from this
    /// one, each with its routes' services densely, for the per-location scan of
    /// [`Topology::desired`] (`route_list.rs`).
    pub(crate) routes: crate::route_list::RouteList,
    pub(crate) warnings: Vec<Diagnostic>,
    /// The settings, locations and services as parsed, for the next incremental compile.
    pub(crate) definitions: Arc<crate::compile::Definitions>,
    /// The first answer [`Topology::uncovered_routes`] gave, for the next generation that
    /// shares these binding records.
    pub(crate) route_coverage: OnceLock<RouteCoverage>,
    /// The locations and services as compiled, for the next compile whose definitions are
    /// these.
    pub(crate) compiled_definitions: std::sync::Arc<crate::compile::CompiledDefinitions>,
}

impl Topology {
    /// The generation number the caller gave [`crate::compile`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// SHA-256 over a canonical, sorted serialisation of the model (not the file text): the
    /// same topology split differently over files, reordered, reformatted or commented has the
    /// same hash. The generation is not part of it.
    ///
    /// Computed beside the compile: the first read (of this, [`Topology::hash_hex`] or
    /// [`Topology::summary`]) waits for the thread computing it.
    pub fn hash(&self) -> [u8; 32] {
        self.hash.get()
    }

    pub fn summary(&self) -> TopologySummary {
        TopologySummary {
            generation: self.generation,
            hash: self.hash_hex(),
            locations: self.locations.len(),
            live_locations: self.live.len(),
            services: self.services.len(),
            prefixes: self.prefixes.len(),
            bindings: self.bindings.len(),
            routes: self.routes.len(),
            warnings: self.warnings.len(),
        }
    }

    /// [`Topology::hash`] as lower-case hex.
    pub fn hash_hex(&self) -> String {
        hex(&self.hash())
    }

    /// The hash in the canonical form of the releases before this one (form 1: every item in
    /// line, see `compile/hash.rs`), which daemons of the previous release report: `topoctl`
    /// recognises them by it during an upgrade. Computed on this thread at every call (tens of
    /// milliseconds at 300,000 bindings); the daemon never needs it.
    pub fn previous_form_hash_hex(&self) -> String {
        hex(&crate::compile::previous_form_hash(self))
    }

    /// The sources this topology was compiled from (names with empty texts once
    /// [`Topology::take_sources`] handed them out, or once put away after the parse:
    /// [`crate::compile_put_away`]).
    pub fn sources(&self) -> &[Source] {
        self.sources.sources()
    }

    /// Hands out the sources' texts, keeping their names: the daemon stores them in its state
    /// directory and does not hold them in memory while the generation runs. Afterwards
    /// [`Topology::explain`] names binding locations by file only (line and column 0);
    /// everything else (routes, plans, guards, queries) is unchanged.
    pub fn take_sources(&mut self) -> Vec<Source> {
        self.sources.take_texts()
    }

    /// Each source's name and the SHA-256 of its text as compiled (kept when the texts are
    /// handed out), or `None` for a topology compiled from a raw topology a caller built
    /// ([`crate::compile_raw`]), whose items need not be its texts'.
    pub fn source_digests(&self) -> Option<Vec<(&str, [u8; 32])>> {
        let sources = self.sources.sources();
        (self.digests_kept && self.fingerprints.len() == sources.len()).then(|| {
            sources
                .iter()
                .zip(&self.fingerprints)
                .map(|(source, fingerprint)| (source.name.as_str(), fingerprint.sha256))
                .collect()
        })
    }

    /// Whether source `index` holds bindings only (no definition, no prefix): the kind of file
    /// a compile given the running texts may read in part
    /// ([`crate::compile_incremental_with_previous`]).
    pub fn holds_bindings_only(&self, index: usize) -> bool {
        self.fingerprints
            .get(index)
            .is_some_and(|fingerprint| fingerprint.items_only && fingerprint.items.prefixes == 0)
    }

    /// Whether the texts are not held: [`Topology::take_sources`] handed them out, or the
    /// compile put them away once parsed ([`crate::compile_put_away`]).
    pub fn sources_released(&self) -> bool {
        self.sources.texts_released()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Warnings found while compiling.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// Locations, sorted by name.
    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    pub fn location(&self, name: &str) -> Option<&Location> {
        self.location_index
            .get(name)
            .map(|index| &self.locations[*index as usize])
    }

    /// Services, sorted by name.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.service_index
            .get(name)
            .map(|index| &self.services[*index as usize])
    }

    /// Onboarded prefixes, sorted.
    pub fn prefixes(&self) -> &crate::PrefixList {
        &self.prefixes
    }

    /// How many of this topology's route chunks are `other`'s at the same place, and how many
    /// chunks hold its routes (a test reads it to see that a patch copied only what it
    /// changed).
    #[doc(hidden)]
    pub fn route_chunks_shared_with(&self, other: &Topology) -> (usize, usize) {
        (
            self.routes.chunks_shared_with(&other.routes),
            self.routes.chunk_count(),
        )
    }

    /// Every binding as (cidr, service name), sorted by cidr.
    pub fn bindings(&self) -> impl Iterator<Item = (IpNet, &str)> {
        self.bindings.iter().map(|binding| {
            (
                binding.cidr,
                self.services[binding.service as usize].name.as_str(),
            )
        })
    }

    /// Number of routes of advertised prefixes (announced somewhere or not).
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The names of the locations in `set`.
    pub fn location_names(&self, set: &LocationSet) -> Vec<&str> {
        set.iter()
            .filter_map(|index| {
                self.locations
                    .get(index)
                    .map(|location| location.name.as_str())
            })
            .collect()
    }

    /// The longest binding covering `network` (equal or shorter), as (cidr, service name):
    /// longest-prefix match over the bindings.
    pub fn longest_binding(&self, network: &IpNet) -> Option<(IpNet, &str)> {
        self.longest_binding_index(network).map(|index| {
            let binding = &self.bindings[index as usize];
            (
                binding.cidr,
                self.services[binding.service as usize].name.as_str(),
            )
        })
    }

    /// The networks of `routes` (a location's routes, ascending as the daemon keeps them; any
    /// order is answered) that no binding covers whole: G1 asked of every route at once, a route
    /// being covered only when the longest binding found contains all of it, so that a wrong
    /// search can only be a refusal. `previous`, the generation this one was compiled against,
    /// answers from what it was asked, when the two share their binding records: only the
    /// routes it was not asked about are searched for (see `route_coverage.rs`). The first
    /// answer is remembered for the next generation.
    pub fn uncovered_routes(
        &self,
        routes: &TaggedRoutes,
        previous: Option<&Topology>,
    ) -> Vec<IpNet> {
        let known = previous
            .filter(|previous| previous.bindings.shares_records_with(&self.bindings))
            .and_then(|previous| previous.route_coverage.get());
        let (uncovered, remembered) = RouteCoverage::answer(&self.bindings, routes, known);
        if let Some(remembered) = remembered {
            // A second answer is not kept: the first one stays (each one is whole in itself).
            let _ = self.route_coverage.set(remembered);
        }
        uncovered
    }

    pub(crate) fn longest_binding_index(&self, network: &IpNet) -> Option<u32> {
        self.bindings.longest(network)
    }

    pub(crate) fn prefix_containing(&self, network: &IpNet) -> Option<usize> {
        let place = self
            .prefixes
            .partition_point(|prefix| prefix.cidr <= *network)
            .checked_sub(1)?;
        self.prefixes[place].cidr.contains(network).then_some(place)
    }

    pub(crate) fn route_index(&self, prefix: &IpNet) -> Option<usize> {
        let place = self.routes.partition_point(|route| route.prefix < *prefix);
        self.routes
            .get(place)
            .is_some_and(|route| route.prefix == *prefix)
            .then_some(place)
    }

    pub(crate) fn route_containing(&self, network: &IpNet) -> Option<usize> {
        let place = self
            .routes
            .partition_point(|route| route.prefix <= *network)
            .checked_sub(1)?;
        self.routes[place].prefix.contains(network).then_some(place)
    }

    pub(crate) fn desired_route(&self, route: &Route) -> DesiredRoute<'_> {
        let service = &self.services[route.service as usize];
        DesiredRoute {
            prefix: route.prefix,
            origin_asn: route.origin_asn,
            attributes: &service.attributes,
            binding: route.binding_cidr,
            service: &service.name,
        }
    }

    /// The routes `location` must announce, ordered by prefix (IPv4 before IPv6).
    pub fn desired(&self, location: &str) -> Result<Vec<DesiredRoute<'_>>, TopologyError> {
        let (count, routes) = self.desired_routes(location)?;
        // Counted first, so that a million routes fill a list made once at their size.
        let mut desired = Vec::with_capacity(count);
        desired.extend(routes);
        Ok(desired)
    }

    /// [`Topology::desired`] without the list: how many routes `location` must announce, and
    /// the routes in prefix order (a list of a million routes is tens of megabytes that a
    /// caller building its own would write and read once).
    pub fn desired_routes(
        &self,
        location: &str,
    ) -> Result<(usize, impl Iterator<Item = DesiredRoute<'_>> + '_), TopologyError> {
        let index = *self
            .location_index
            .get(location)
            .ok_or_else(|| TopologyError::UnknownLocation(location.to_string()))?
            as usize;
        // Shared by the filter of every chunk.
        let present: Arc<[bool]> = self
            .services
            .iter()
            .map(|service| service.announcing.contains(index))
            .collect();
        let announced =
            move |service: &u32| present.get(*service as usize).copied().unwrap_or(false);
        let count = self
            .routes
            .chunks()
            .map(|(_, chunk)| chunk.services().iter().filter(|s| announced(s)).count())
            .sum();
        let routes = self.routes.chunks().flat_map(move |(_, chunk)| {
            let announced = announced.clone();
            chunk
                .services()
                .iter()
                .zip(chunk.routes())
                .filter(move |(service, _)| announced(service))
                .map(|(_, route)| self.desired_route(route))
        });
        Ok((count, routes))
    }

    /// Every route with the locations announcing it, ordered by prefix (routes announced
    /// nowhere, such as those of pending services, included with an empty set).
    pub fn routes(&self) -> impl Iterator<Item = (DesiredRoute<'_>, &LocationSet)> {
        self.routes.iter().map(|route| {
            (
                self.desired_route(route),
                &self.services[route.service as usize].announcing,
            )
        })
    }

    /// The names of the locations announcing the route `prefix`, or `None` if it is no route.
    pub fn announced_locations(&self, prefix: &IpNet) -> Option<Vec<&str>> {
        let route = &self.routes[self.route_index(prefix)?];
        Some(self.location_names(&self.services[route.service as usize].announcing))
    }

    /// Which binding and service handle `address`, which route covers it, where that route is
    /// announced, and why.
    pub fn explain(&self, address: IpAddr) -> Explanation {
        let host = IpNet::from(address);
        let mut explanation = Explanation {
            address,
            prefix: None,
            advertised: false,
            binding: None,
            binding_location: None,
            service: None,
            route: None,
            route_binding: None,
            route_service: None,
            announced_at: Vec::new(),
            reasons: Vec::new(),
        };
        let Some(prefix_index) = self.prefix_containing(&host) else {
            explanation
                .reasons
                .push(format!("{address} is not inside any onboarded prefix"));
            return explanation;
        };
        let prefix = &self.prefixes[prefix_index];
        explanation.prefix = Some(prefix.cidr);
        explanation.advertised = prefix.advertise;
        explanation.reasons.push(format!(
            "{address} is inside onboarded prefix {} (owner {}, origin AS{}, announced {})",
            prefix.cidr, prefix.owner, prefix.origin_asn, prefix.announce
        ));
        if let Some(binding_index) = self.longest_binding_index(&host) {
            let binding = &self.bindings[binding_index as usize];
            let service = &self.services[binding.service as usize];
            let written = self
                .sources
                .locate(self.bindings.span(binding_index as usize));
            explanation.binding = Some(binding.cidr);
            explanation.binding_location = Some(written.clone());
            explanation.service = Some(service.name.clone());
            explanation.reasons.push(format!(
                "the longest binding covering it is {} ({}), so service `{}` handles its traffic",
                binding.cidr, written, service.name
            ));
        } else {
            explanation
                .reasons
                .push("no binding covers it: no service would handle its traffic".to_string());
        }
        if !prefix.advertise {
            explanation.reasons.push(format!(
                "prefix {} has advertise = false, so no route covering it is announced",
                prefix.cidr
            ));
            return explanation;
        }
        let Some(route_index) = self.route_containing(&host) else {
            explanation.reasons.push(
                "no route covers it (the prefix has no default binding and is not announced)"
                    .to_string(),
            );
            return explanation;
        };
        let route = &self.routes[route_index];
        let service = &self.services[route.service as usize];
        let route_binding = self.bindings[route.binding as usize].cidr;
        explanation.route = Some(route.prefix);
        explanation.route_binding = Some(route_binding);
        explanation.route_service = Some(service.name.clone());
        explanation.announced_at = self
            .location_names(&service.announcing)
            .into_iter()
            .map(str::to_string)
            .collect();
        let why = match service.lifecycle {
            Lifecycle::Pending => format!(
                "service `{}` is pending, so the route is announced nowhere",
                service.name
            ),
            Lifecycle::Active => format!(
                "service `{}` has topology `{}`, which selects {} location(s) that announce it",
                service.name,
                service.topology,
                service.announcing.len()
            ),
        };
        explanation.reasons.push(format!(
            "route {} covers it; its longest covering binding is {route_binding}: {why}",
            route.prefix
        ));
        explanation
    }
}

#[cfg(test)]
mod tests {
    use super::{Binding, Prefix, Route};

    /// A daemon holds one prefix, binding and route record per route of the fleet: at a
    /// million routes every byte of these records is a megabyte of its resident memory.
    #[test]
    fn the_per_route_records_stay_small() {
        assert!(
            size_of::<Prefix>() <= 80,
            "Prefix: {} bytes",
            size_of::<Prefix>()
        );
        assert!(
            size_of::<Binding>() <= 40,
            "Binding: {} bytes",
            size_of::<Binding>()
        );
        assert!(
            size_of::<Route>() <= 52,
            "Route: {} bytes",
            size_of::<Route>()
        );
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// A million-route topology holds one of each per prefix, binding and route for as long as
    /// it runs: their sizes are most of the daemon's steady memory.
    #[test]
    fn the_compiled_records_stay_small() {
        let prefix = std::mem::size_of::<Prefix>();
        let binding = std::mem::size_of::<Binding>();
        let route = std::mem::size_of::<Route>();
        assert!(prefix <= 72, "Prefix: {prefix} bytes");
        assert!(binding <= 36, "Binding: {binding} bytes");
        assert!(route <= 52, "Route: {route} bytes");
    }
}

/// `bytes` as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
