//! The services phase of the compiler: names de-duplicated, every value a selector names
//! checked against the fleet (with "did you mean"), the matched and announcing location sets as
//! bitsets, and the attributes in canonical order.

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;
use topologyd_config::{Attribute, Collector, Lifecycle, LocationState, RawTopology};

use super::fleet::Fleet;
use super::{deduplicate_definitions, network_key, suggestion};
use crate::location_set::LocationSet;
use crate::model::{RouteAttributes, Service};

/// The compiled services.
#[derive(Debug)]
pub(super) struct Catalogue {
    /// Sorted by name.
    pub(super) services: Arc<Vec<Service>>,
    pub(super) service_index: Arc<HashMap<String, u32>>,
    /// For each service, the index of its raw definition.
    pub(super) service_order: Vec<usize>,
}

/// Services: sorted, de-duplicated, selectors resolved against `fleet`.
pub(super) fn compile_services(
    raw: &RawTopology,
    fleet: &Fleet,
    collector: &mut Collector,
) -> Catalogue {
    let sources = &raw.sources;
    let Fleet {
        locations,
        live,
        test,
        attribute_index,
        ..
    } = fleet;
    let capacity = locations.len();
    super::warn_names_differing_in_case(&raw.services, "service", sources, collector);
    let service_order = deduplicate_definitions(&raw.services, "service", sources, collector);
    let mut services: Vec<Service> = Vec::with_capacity(service_order.len());
    // Services share selectors (`region = "eu"`, `all`): each distinct one, by its canonical
    // text, is evaluated once (a selector whose values hold a double quote, whose text may be
    // another's, every time).
    let mut evaluated: HashMap<String, LocationSet> = HashMap::new();
    for index in &service_order {
        let raw_service = &raw.services[*index];
        // A value holding a double quote would make two selectors print alike.
        let mut quoted = false;
        raw_service
            .topology
            .value
            .for_each_value(&mut |attribute, value| {
                quoted |= value.value.contains('"');
                let known = match attribute {
                    Attribute::State => LocationState::parse(&value.value).is_some(),
                    _ => attribute_index.members(attribute, &value.value).is_some(),
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
        let topology = raw_service.topology.value.to_string();
        let matched = match evaluated.get(&topology) {
            Some(matched) if !quoted => matched.clone(),
            _ => {
                let matched = attribute_index.evaluate(&raw_service.topology.value);
                if !quoted {
                    evaluated.insert(topology.clone(), matched.clone());
                }
                matched
            }
        };
        let announcing = match raw_service.lifecycle.value {
            Lifecycle::Pending => LocationSet::empty(capacity),
            Lifecycle::Active if raw_service.announce_at_test_locations => {
                matched.intersection(&live.union(test))
            }
            Lifecycle::Active => matched.intersection(live),
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
            topology,
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

    Catalogue {
        services: Arc::new(services),
        service_index: Arc::new(service_index),
        service_order,
    }
}
