//! `[[service]]` tables: the topology selector, communities, AS-path prepend, lifecycle, local
//! addresses and `[service.health]` (converted by the health module), each checked with its
//! error at the value.

use std::net::IpAddr;

use ipnet::IpNet;

use super::values::check_spanned_name;
use crate::community::parse_communities;
use crate::diagnostic::Collector;
use crate::file::ServiceFile;
use crate::health::HealthSpec;
use crate::health::parse::{Checker, convert_health};
use crate::model::{Community, LargeCommunity, Lifecycle, Located, RawService};
use crate::selector::{Selector, parse_selector};
use crate::source::{Span, StringPositions, span_of, value_or};

/// Appends one file's services to `services`; a service with an error is left out.
pub(super) fn convert_services(
    source_id: u32,
    text: &str,
    files: Vec<ServiceFile>,
    services: &mut Vec<RawService>,
    collector: &mut Collector,
) {
    for service in files {
        check_spanned_name(source_id, "service name", &service.name, collector);
        if let Some(service) = convert_service(source_id, text, service, collector) {
            services.push(service);
        }
    }
}

/// One `[[service]]`, phase by phase; `None` when any of its values has an error (every error is
/// reported first).
fn convert_service(
    source: u32,
    text: &str,
    file: ServiceFile,
    collector: &mut Collector,
) -> Option<RawService> {
    let topology_span = span_of(source, &file.topology);
    let topology = parse_topology_selector(text, &file, topology_span, collector);
    let communities = parse_communities(
        source,
        &file.communities,
        Community::parse,
        "community",
        "a community is two 16-bit numbers, \"ASN:VALUE\", such as \"13335:100\"; use \
         large_communities for 32-bit ASNs",
        collector,
    );
    let large_communities = parse_communities(
        source,
        &file.large_communities,
        LargeCommunity::parse,
        "large community",
        "a large community is three 32-bit numbers, such as \"13335:1:2\"",
        collector,
    );
    let (prepend, prepend_valid) = check_prepend(source, &file, collector);
    let (lifecycle, lifecycle_span) = match &file.lifecycle {
        Some(lifecycle) => (*lifecycle.get_ref(), span_of(source, lifecycle)),
        None => (Lifecycle::Active, span_of(source, &file.name)),
    };
    let local_addresses = convert_local_addresses(source, &file, collector);
    let (health, health_valid) = convert_service_health(source, text, &file, prepend, collector);
    let topology = topology?;
    let (Some(communities), Some(large_communities), Some(local_addresses), true, true) = (
        communities,
        large_communities,
        local_addresses,
        prepend_valid,
        health_valid,
    ) else {
        return None;
    };
    Some(RawService {
        name: Located::new(file.name.get_ref().clone(), span_of(source, &file.name)),
        lifecycle: Located::new(lifecycle, lifecycle_span),
        topology: Located::new(topology, topology_span),
        announce_at_test_locations: file.announce_at_test_locations,
        communities,
        large_communities,
        med: file.med,
        as_path_prepend: prepend,
        health,
        local_addresses,
    })
}

/// `topology`: the selector, with an error at the offending token inside the string.
fn parse_topology_selector(
    text: &str,
    file: &ServiceFile,
    topology_span: Span,
    collector: &mut Collector,
) -> Option<Selector> {
    let positions = StringPositions::new(text, topology_span, file.topology.get_ref());
    match parse_selector(file.topology.get_ref(), &|offset, length| {
        positions.locate(offset, length)
    }) {
        Ok(selector) => Some(selector),
        Err(failure) => {
            collector.error(
                Some(positions.locate(failure.offset, failure.length)),
                format!(
                    "invalid topology selector of service `{}`: {}",
                    file.name.get_ref(),
                    failure.message
                ),
                failure.help,
            );
            None
        }
    }
}

/// `as_path_prepend` (0 when absent) and whether it is valid (0 to 3).
fn check_prepend(source: u32, file: &ServiceFile, collector: &mut Collector) -> (u8, bool) {
    let prepend = value_or(&file.as_path_prepend, 0);
    if let Some(spanned) = file.as_path_prepend.as_ref().filter(|_| prepend > 3) {
        collector.error(
            Some(span_of(source, spanned)),
            format!("as_path_prepend = {prepend} is more than 3"),
            Some("prepend the origin ASN 0 to 3 times".into()),
        );
        return (prepend, false);
    }
    (prepend, true)
}

/// `local_addresses`: each one host address with its full prefix length; `None` when any is
/// not.
fn convert_local_addresses(
    source: u32,
    file: &ServiceFile,
    collector: &mut Collector,
) -> Option<Vec<Located<IpNet>>> {
    let mut local_addresses = Vec::with_capacity(file.local_addresses.len());
    let mut valid = true;
    for address in &file.local_addresses {
        match address.get_ref().parse::<IpNet>() {
            Ok(network) if network.prefix_len() == network.max_prefix_len() => {
                local_addresses.push(Located::new(network, span_of(source, address)));
            }
            Ok(network) => {
                valid = false;
                collector.error(
                    Some(span_of(source, address)),
                    format!(
                        "local address \"{}\" of service `{}` is a network, not one address",
                        address.get_ref(),
                        file.name.get_ref()
                    ),
                    Some(format!(
                        "a local address is bound on an interface as one host address: write \"{}/{}\"",
                        network.addr(),
                        network.max_prefix_len()
                    )),
                );
            }
            Err(_) => {
                valid = false;
                let help = match address.get_ref().parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => format!(
                        "add the prefix length: \"{}/32\" for the address alone",
                        address.get_ref()
                    ),
                    Ok(IpAddr::V6(_)) => format!(
                        "add the prefix length: \"{}/128\" for the address alone",
                        address.get_ref()
                    ),
                    Err(_) => "write an address with its prefix length, such as \"192.0.2.53/32\" \
                               or \"2001:db8::53/128\""
                        .to_string(),
                };
                collector.error(
                    Some(span_of(source, address)),
                    format!(
                        "invalid local address \"{}\" of service `{}`",
                        address.get_ref(),
                        file.name.get_ref()
                    ),
                    Some(help),
                );
            }
        }
    }
    valid.then_some(local_addresses)
}

/// `[service.health]`, converted by the health module: the health spec (when there is one) and
/// whether it was valid.
fn convert_service_health(
    source: u32,
    text: &str,
    file: &ServiceFile,
    prepend: u8,
    collector: &mut Collector,
) -> (Option<Located<HealthSpec>>, bool) {
    let Some(health) = file.health.as_ref() else {
        return (None, true);
    };
    let mut checker = Checker {
        source,
        text,
        collector,
        valid: true,
    };
    let converted = convert_health(&mut checker, file.name.get_ref(), prepend, health);
    (converted, checker.valid)
}
