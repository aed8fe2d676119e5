//! The checks that need the whole compiled picture: service local addresses inside the
//! service's own bindings, **blackholes by construction** (a more-specific binding whose service
//! is absent, or pending, where the covering route is announced), and service-level findings
//! (no bindings; an active service with bound routes matching no location, or no live one).

use ipnet::IpNet;
use topologyd_config::{Collector, Lifecycle, RawService, RawTopology};

use super::bindings::BindingTable;
use super::fleet::Fleet;
use super::services::Catalogue;
use super::{list_names, network_key};
use crate::binding_list::BindingList;
use crate::model::{Location, Service};
use crate::route_list::RouteList;

/// What the checks of the whole compiled picture read.
pub(super) struct Picture<'compile> {
    pub(super) raw: &'compile RawTopology,
    /// The services as parsed (`raw`'s, or the baseline's when they are shared with it).
    pub(super) raw_services: &'compile [RawService],
    pub(super) fleet: &'compile Fleet,
    pub(super) catalogue: &'compile Catalogue,
    pub(super) table: &'compile BindingTable,
    pub(super) routes: &'compile RouteList,
    /// Per service, how many routes it governs.
    pub(super) service_routes: &'compile [u32],
}

/// Every check of this module, in order: local addresses, blackholes (under the prefixes at
/// `checked` only, see [`blackholes`]), service findings.
pub(super) fn whole_picture(
    picture: Picture<'_>,
    checked: Option<&[usize]>,
    collector: &mut Collector,
) {
    let Picture {
        raw,
        raw_services,
        fleet,
        catalogue,
        table,
        routes,
        service_routes,
    } = picture;
    local_addresses(raw, raw_services, catalogue, table, collector);
    blackholes(
        routes,
        &catalogue.services,
        &table.bindings,
        &fleet.locations,
        checked,
        collector,
    );
    service_findings(
        &catalogue.services,
        &table.service_binding_count,
        service_routes,
        fleet,
        collector,
    );
}

/// Local addresses: the longest binding covering each must be one of the service's own, and
/// cover all of it, or the address would take traffic another service handles.
pub(super) fn local_addresses(
    raw: &RawTopology,
    raw_services: &[RawService],
    catalogue: &Catalogue,
    table: &BindingTable,
    collector: &mut Collector,
) {
    let sources = &raw.sources;
    let Catalogue {
        services,
        service_order,
        ..
    } = catalogue;
    let bindings = &table.bindings;
    let longest = |network: &IpNet| table.longest(network);
    for (index, raw_index) in service_order.iter().enumerate() {
        let raw_service = &raw_services[*raw_index];
        for address in &raw_service.local_addresses {
            let network = address.value.trunc();
            let host = IpNet::from(address.value.addr());
            let service = &services[index].name;
            let covering = longest(&host).map(|index| index as usize);
            match covering.map(|index| (index, &bindings[index])) {
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
                Some((binding_index, binding)) if binding.service as usize != index => collector
                    .error(
                        Some(address.span),
                        format!(
                            "local address {} of service `{service}` is handled by service `{}`: \
                         the longest binding covering it is {} ({})",
                            address.value,
                            services[binding.service as usize].name,
                            binding.cidr,
                            sources.locate(bindings.span(binding_index))
                        ),
                        Some(format!(
                            "a service binds only addresses of its own bindings: bind a cidr \
                         containing {} to `{service}`, or remove the address",
                            address.value.addr()
                        )),
                    ),
                Some((_, binding)) if !binding.cidr.contains(&network) => collector.error(
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
}

/// Blackholes by construction: a layered binding whose service is absent where the route
/// covering it is announced. Only the bindings of the prefixes at `checked` (ascending places
/// in the topology's prefixes) are looked at, or every binding when `checked` is `None`: a
/// compile that patched a few prefixes into an error-free generation, with its cidrs, its
/// service and location definitions unchanged (`compile/patch.rs`), can only have a blackhole
/// under those prefixes' routes (the ones compiled again and those holding a binding moved to
/// another service), the others' being the running generation's (or dropped where the route
/// budget is crossed, itself an error).
pub(super) fn blackholes(
    routes: &RouteList,
    services: &[Service],
    bindings: &BindingList,
    locations: &[Location],
    checked: Option<&[usize]>,
    collector: &mut Collector,
) {
    let Some(places) = checked else {
        blackholes_in(
            routes,
            services,
            bindings,
            0..bindings.len(),
            locations,
            collector,
        );
        return;
    };
    for place in places {
        let place = u32::try_from(*place).unwrap_or(u32::MAX);
        // A prefix's bindings are contiguous: both lists are sorted by cidr and the prefixes
        // are disjoint.
        let range = bindings.partition_point(|binding| binding.prefix < place)
            ..bindings.partition_point(|binding| binding.prefix <= place);
        blackholes_in(routes, services, bindings, range, locations, collector);
    }
}

/// [`blackholes`] over the bindings at `range`.
fn blackholes_in(
    routes: &RouteList,
    services: &[Service],
    bindings: &BindingList,
    range: std::ops::Range<usize>,
    locations: &[Location],
    collector: &mut Collector,
) {
    let Some(in_range) = bindings.get(range.clone()) else {
        return;
    };
    // Both lists are sorted (the same order as `network_key`) and routes are disjoint: the
    // route containing each binding, if any, is the last route not after it, found by one
    // sweep (from the first binding's place) instead of a binary search per binding.
    let not_after = in_range.first().map_or(0, |first| {
        let key = network_key(&first.cidr);
        routes.partition_point(|route| network_key(&route.prefix) <= key)
    });
    let mut last_not_after = not_after.checked_sub(1).and_then(|place| routes.get(place));
    let mut after = routes.iter_from(not_after).peekable();
    for (index, binding) in range.zip(in_range) {
        let key = network_key(&binding.cidr);
        while let Some(route) = after.next_if(|route| network_key(&route.prefix) <= key) {
            last_not_after = Some(route);
        }
        let Some(route) = last_not_after.filter(|route| route.prefix.contains(&binding.cidr))
        else {
            continue;
        };
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
                Some(bindings.span(index)),
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
        // Most layered bindings are fine: the subset test allocates nothing, the difference
        // is made only for the error.
        if route_service.announcing.is_subset(&layered_service.matched) {
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
                Some(bindings.span(index)),
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
}

/// Service-level findings.
pub(super) fn service_findings(
    services: &[Service],
    service_binding_count: &[u32],
    service_routes: &[u32],
    fleet: &Fleet,
    collector: &mut Collector,
) {
    let (live, locations) = (&fleet.live, &fleet.locations);
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
            && service.matched.intersection(live).is_empty()
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
}
