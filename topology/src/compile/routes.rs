//! The routes phase of the compiler: **G1** (an advertised prefix without a default binding is
//! an error and is never announced) and the announced routes (the prefix itself, or its split
//! more-specifics), each governed by the longest binding covering it, in chunks of one prefix
//! chunk's routes (`route_list.rs`). A patched compile (`patch.rs`) shares the running chunks
//! none of whose prefixes it compiled again, and copies the running routes of the others'
//! prefixes it did not compile again beside the ones it did.

use std::collections::BTreeMap;

use ipnet::IpNet;
use topologyd_config::{AnnounceMode, Collector, Lifecycle};

use super::bindings::BindingTable;
use super::{INPUT_BYTES_PER_EXTRA_ROUTE, ROUTE_ALLOWANCE};
use crate::PrefixList;
use crate::model::{Prefix, Route, Service};
use crate::prefix_list::CHUNK_LEN as PREFIX_CHUNK_LEN;
use crate::route_list::{RouteList, RouteListBuilder};

/// The running generation's routes, for a patched compile (`patch.rs`): every prefix at the
/// same place with the same cidr, and only those at the `patched` places (ascending) compiled
/// again; the others' routes are the running ones (a compiled generation has all its routes,
/// none dropped), shared by chunk or copied, counted and warned about as compiled ones are.
/// A debug build checks each copied route against its prefix and binding; a chunk shared
/// whole is not read route by route.
pub(super) struct RunningRoutes<'running> {
    pub(super) routes: &'running RouteList,
    pub(super) patched: &'running [usize],
}

/// Routes in prefix order, and per service how many routes it governs. At most
/// [`ROUTE_ALLOWANCE`] routes plus one per [`INPUT_BYTES_PER_EXTRA_ROUTE`] bytes of topology
/// text (`input_bytes`): splitting multiplies routes without multiplying text, and a route costs
/// about 60 bytes compiled, so this keeps a compile's memory within a small multiple of its
/// input (a 35 KB file of 256 IPv6 /32s split into /48s would otherwise make 16.7 million).
/// With `running`, the prefixes not patched take their running routes (the same checks made in
/// the same order, so the same routes and diagnostics as compiling them again).
pub(super) fn compile_routes(
    prefixes: &PrefixList,
    services: &[Service],
    table: &BindingTable,
    input_bytes: usize,
    running: Option<RunningRoutes<'_>>,
    collector: &mut Collector,
) -> (RouteList, Vec<u32>) {
    let mut budget = Budget {
        budget: ROUTE_ALLOWANCE.saturating_add(input_bytes as u64 / INPUT_BYTES_PER_EXTRA_ROUTE),
        input_bytes,
        planned: 0,
        exceeded: false,
    };
    let bindings = &table.bindings;
    let mut routes = RouteListBuilder::default();
    let mut counts = RouteCounts {
        services,
        pending: services
            .iter()
            .map(|service| service.lifecycle == Lifecycle::Pending)
            .collect(),
        service_routes: vec![0; services.len()],
        pending_warned: BTreeMap::new(),
    };
    // The running routes are taken a chunk at a time: their chunk `k` holds the routes of
    // the prefixes at the places of prefix chunk `k`, which are the same prefixes here.
    let chunk_count = prefixes.len().div_ceil(PREFIX_CHUNK_LEN);
    let running = running.filter(|running| running.routes.chunk_count() == chunk_count);
    let mut patched_at = 0_usize;
    for chunk in 0..chunk_count {
        let places = chunk * PREFIX_CHUNK_LEN..((chunk + 1) * PREFIX_CHUNK_LEN).min(prefixes.len());
        let running_chunk = running
            .as_ref()
            .and_then(|running| Some((running.patched, running.routes.chunk(chunk)?)));
        // A running chunk none of whose prefixes is compiled again is shared whole, unless a
        // prefix of it is refused by the budget (the compile fails then).
        let mut sharing = running_chunk.as_ref().is_some_and(|(patched, _)| {
            patched
                .get(patched_at)
                .is_none_or(|place| *place >= places.end)
        });
        // Shared whole at once when none of its routes is a pending service's (whose prefixes
        // are warned about one by one) and all of them fit the budget: the same counts and
        // findings as taking them prefix by prefix.
        if sharing
            && let Some((_, running_chunk)) = &running_chunk
            && counts.take_chunk(running_chunk.services(), &mut budget)
        {
            routes.share(running_chunk);
            continue;
        }
        // At most the running chunk's routes and the patched prefixes' own, or every prefix's
        // (none when the running chunk may still be shared).
        if !sharing {
            routes.reserve(
                places
                    .clone()
                    .filter(|place| {
                        running_chunk
                            .as_ref()
                            .is_none_or(|(patched, _)| patched.binary_search(place).is_ok())
                    })
                    .map(|place| route_count(&prefixes[place]))
                    .sum::<u64>()
                    .saturating_add(
                        running_chunk
                            .as_ref()
                            .map_or(0, |(_, chunk)| chunk.routes().len() as u64),
                    )
                    .min(budget.budget.saturating_sub(budget.planned))
                    .try_into()
                    .unwrap_or(0),
            );
        }
        // Where the running routes of the prefix at hand start in the running chunk.
        let mut running_at = 0_usize;
        for prefix_index in places {
            let prefix = &prefixes[prefix_index];
            if let Some((patched, running_chunk)) = &running_chunk {
                let of_chunk = &running_chunk.routes()[running_at..];
                let of_prefix = of_chunk
                    .iter()
                    .take_while(|route| route.onboarded as usize == prefix_index)
                    .count();
                let taken = &of_chunk[..of_prefix];
                running_at += of_prefix;
                if patched.get(patched_at) == Some(&prefix_index) {
                    patched_at += 1;
                } else {
                    if taken.is_empty() {
                        continue;
                    }
                    if !budget.admits(prefix, taken.len() as u64, collector) {
                        if sharing {
                            // The prefixes before it were all taken: copied after all.
                            sharing = false;
                            for route in &running_chunk.routes()[..running_at - of_prefix] {
                                routes.push(*route);
                            }
                        }
                        continue;
                    }
                    for route in taken {
                        // What the copy relies on (and the plan's diff reads from a route):
                        // its prefix's origin, and its binding, at the same place, as before.
                        debug_assert!(
                            route.origin_asn == prefix.origin_asn
                                && bindings.get(route.binding as usize).is_some_and(|binding| {
                                    binding.cidr == route.binding_cidr
                                        && binding.service == route.service
                                }),
                            "a running route of {} is not the patched compile's",
                            prefix.cidr
                        );
                        counts.count(prefix_index, prefix, route.service, collector);
                        if !sharing {
                            routes.push(*route);
                        }
                    }
                    continue;
                }
            }
            compile_prefix(
                (prefix_index, prefix),
                prefixes,
                services,
                table,
                (&mut budget, &mut counts, collector),
                &mut routes,
            );
        }
        match running_chunk {
            Some((_, running_chunk)) if sharing => routes.share(running_chunk),
            _ => routes.end_chunk(),
        }
    }
    (routes.finish(), counts.service_routes)
}

/// The routes of the prefix at `prefix_index`, compiled (G1 checked, split, each piece's
/// longest binding found), pushed into `routes`.
fn compile_prefix(
    (prefix_index, prefix): (usize, &Prefix),
    prefixes: &PrefixList,
    services: &[Service],
    table: &BindingTable,
    (budget, counts, collector): (&mut Budget, &mut RouteCounts<'_>, &mut Collector),
    routes: &mut RouteListBuilder,
) {
    let bindings = &table.bindings;
    let longest = |network: &IpNet| table.longest(network);
    {
        if !prefix.advertise {
            return;
        }
        let Some(default) = table.default_binding(prefix_index, prefixes) else {
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
                    if table.more_specific_count(prefix_index, prefixes) > 3 {
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
            return;
        };
        let count = route_count(prefix);
        if !budget.admits(prefix, count, collector) {
            return;
        }
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
            counts.count(prefix_index, prefix, service, collector);
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
}

/// How many routes `prefix` is announced as, when it is announced.
fn route_count(prefix: &Prefix) -> u64 {
    if !prefix.advertise {
        return 0;
    }
    match prefix.announce {
        AnnounceMode::Aggregate => 1,
        AnnounceMode::Split(length) => {
            1_u64 << u32::from(length.saturating_sub(prefix.cidr.prefix_len())).min(63)
        }
    }
}

/// The route budget of a compile and the routes planned so far.
struct Budget {
    budget: u64,
    input_bytes: usize,
    planned: u64,
    exceeded: bool,
}

impl Budget {
    /// Whether `prefix`'s `count` routes fit (then they are planned); the prefix that first
    /// crosses the budget is reported.
    fn admits(&mut self, prefix: &Prefix, count: u64, collector: &mut Collector) -> bool {
        if self.planned.saturating_add(count) <= self.budget {
            self.planned += count;
            return true;
        }
        // Reported once, at the prefix that crosses: the topology does not compile, and
        // repeating it for every later prefix says nothing new.
        if !self.exceeded {
            self.exceeded = true;
            let (budget, input_bytes) = (self.budget, self.input_bytes);
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
        }
        false
    }
}

/// Per service how many routes it governs, and the warning for each prefix with routes bound
/// to a pending service (once per prefix and service).
struct RouteCounts<'services> {
    services: &'services [Service],
    /// Per service, whether it is pending (read for every route: a flag, not the service).
    pending: Vec<bool>,
    service_routes: Vec<u32>,
    pending_warned: BTreeMap<(usize, u32), ()>,
}

impl RouteCounts<'_> {
    /// Counts a whole chunk of running routes (their services given), when none is a pending
    /// service's and `budget` admits all of them; `false` (and nothing counted) otherwise.
    fn take_chunk(&mut self, services: &[u32], budget: &mut Budget) -> bool {
        let routes = services.len() as u64;
        if budget.planned.saturating_add(routes) > budget.budget
            || services
                .iter()
                .any(|service| self.pending[*service as usize])
        {
            return false;
        }
        budget.planned += routes;
        for service in services {
            self.service_routes[*service as usize] += 1;
        }
        true
    }

    fn count(
        &mut self,
        prefix_index: usize,
        prefix: &Prefix,
        service: u32,
        collector: &mut Collector,
    ) {
        self.service_routes[service as usize] += 1;
        if self.pending[service as usize]
            && self
                .pending_warned
                .insert((prefix_index, service), ())
                .is_none()
        {
            collector.warning(
                Some(prefix.span.get()),
                format!(
                    "prefix {} is advertised, but its route(s) are bound to pending service `{}` and are not announced",
                    prefix.cidr, self.services[service as usize].name
                ),
                Some("activate the service (lifecycle = \"active\") when it is ready".into()),
            );
        }
    }
}
