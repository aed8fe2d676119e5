//! The routes phase of the compiler: **G1** (an advertised prefix without a default binding is
//! an error and is never announced) and the announced routes (the prefix itself, or its split
//! more-specifics), each governed by the longest binding covering it.

use std::collections::BTreeMap;

use ipnet::IpNet;
use topologyd_config::{AnnounceMode, Collector, Lifecycle};

use super::bindings::BindingTable;
use super::{INPUT_BYTES_PER_EXTRA_ROUTE, ROUTE_ALLOWANCE};
use crate::PrefixList;
use crate::model::{Route, Service};

/// Routes in prefix order, and per service how many routes it governs. At most
/// [`ROUTE_ALLOWANCE`] routes plus one per [`INPUT_BYTES_PER_EXTRA_ROUTE`] bytes of topology
/// text (`input_bytes`): splitting multiplies routes without multiplying text, and a route costs
/// about 60 bytes compiled, so this keeps a compile's memory within a small multiple of its
/// input (a 35 KB file of 256 IPv6 /32s split into /48s would otherwise make 16.7 million).
pub(super) fn compile_routes(
    prefixes: &PrefixList,
    services: &[Service],
    table: &BindingTable,
    input_bytes: usize,
    collector: &mut Collector,
) -> (Vec<Route>, Vec<u32>) {
    let budget = ROUTE_ALLOWANCE.saturating_add(input_bytes as u64 / INPUT_BYTES_PER_EXTRA_ROUTE);
    let mut planned = 0_u64;
    let mut exceeded = false;
    let BindingTable {
        bindings,
        default_binding,
        more_specific_count,
        ..
    } = table;
    let longest = |network: &IpNet| table.longest(network);
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
                Some(prefix.span.get()),
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
        let count = match prefix.announce {
            AnnounceMode::Aggregate => 1,
            AnnounceMode::Split(length) => {
                1_u64 << u32::from(length.saturating_sub(prefix.cidr.prefix_len())).min(63)
            }
        };
        if planned.saturating_add(count) > budget {
            // Reported once, at the prefix that crosses: the topology does not compile, and
            // repeating it for every later prefix says nothing new.
            if exceeded {
                continue;
            }
            exceeded = true;
            collector.error(
                Some(prefix.span.get()),
                format!(
                    "announcing prefix {} as {count} route(s) would bring the topology past {budget} routes, the most {input_bytes} bytes of topology text may produce ({ROUTE_ALLOWANCE} plus one per {INPUT_BYTES_PER_EXTRA_ROUTE} bytes)",
                    prefix.cidr
                ),
                Some(
                    "announce shorter routes (a smaller split length, or the aggregate), or onboard fewer prefixes"
                        .into(),
                ),
            );
            continue;
        }
        planned += count;
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
                    Some(prefix.span.get()),
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

    (routes, service_routes)
}
