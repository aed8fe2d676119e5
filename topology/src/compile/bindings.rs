//! The bindings phase of the compiler: each binding's service resolved, a cidr bound twice
//! reported (at the binding a change added, when compiling against the running topology), each
//! binding placed in its onboarded prefix by one merge sweep, and the longest-match index made.

use ipnet::IpNet;
use topologyd_config::{Collector, Located, RawBinding, RawTopology, Span};

use super::incremental::Reused;
use super::services::Catalogue;
use super::{baseline_binds, merge_sorted, network_key, suggestion, validate_network};
use crate::PrefixList;
use crate::binding_list::BindingList;
use crate::model::{Binding, Topology};

/// The compiled bindings and the indexes the later phases use.
pub(super) struct BindingTable {
    /// Sorted by cidr, one per cidr, with their longest-prefix match index.
    pub(super) bindings: BindingList,
    /// Per prefix: the binding of exactly its cidr, if any.
    pub(super) default_binding: Vec<Option<u32>>,
    /// Per prefix: how many more-specific bindings it holds.
    pub(super) more_specific_count: Vec<u32>,
    /// Per service: how many bindings name it.
    pub(super) service_binding_count: Vec<u32>,
}

impl BindingTable {
    /// The index of the longest binding covering `network`.
    pub(super) fn longest(&self, network: &IpNet) -> Option<u32> {
        self.bindings.longest(network)
    }
}

/// Bindings (the parsed ones and the `reused` ones): services resolved, sorted once, placed in
/// their onboarded prefixes.
pub(super) fn compile_bindings(
    raw_bindings: Vec<RawBinding>,
    raw: &RawTopology,
    reused: &Reused<'_>,
    catalogue: &Catalogue,
    prefixes: &PrefixList,
    baseline: Option<&Topology>,
    collector: &mut Collector,
) -> BindingTable {
    let sources = &raw.sources;
    let (services, service_index) = (&catalogue.services, &catalogue.service_index);
    // Bindings: resolve services, sort once, then find each binding's onboarded prefix with a
    // single merge sweep over the (also sorted, disjoint) prefixes.
    let resolve = |cidr: IpNet, name: &str, name_span: Span, collector: &mut Collector| {
        let service = service_index.get(name).copied();
        if service.is_none() {
            collector.error(
                Some(name_span),
                format!("binding {cidr} names unknown service `{name}`"),
                Some(suggestion(
                    name,
                    services.iter().map(|service| service.name.as_str()),
                    "service",
                )),
            );
        }
        service
    };
    // Each raw binding is consumed as it is resolved, and the raw list is freed before the sort
    // and the table are built beside the resolved ones.
    // A name found is looked up once per name, not once per binding; an unknown one (or an id
    // outside the names, in a raw topology a caller built) is reported at every binding.
    let mut found: Vec<Option<u32>> = vec![None; raw.names.len()];
    let mut parsed: Vec<(u32, Span, IpNet)> = Vec::with_capacity(raw_bindings.len());
    for raw_binding in raw_bindings {
        let cidr_span = raw_binding.cidr_span();
        let cidr = validate_network(
            &Located::new(raw_binding.cidr, cidr_span),
            "binding",
            collector,
        );
        let slot = found.get_mut(raw_binding.service.0 as usize);
        let service = match slot {
            Some(Some(service)) => Some(*service),
            Some(slot) => {
                let name = raw.names.get(raw_binding.service);
                let service = resolve(cidr, name, raw_binding.service_span(), collector);
                *slot = service;
                service
            }
            None => resolve(cidr, "", raw_binding.service_span(), collector),
        };
        if let Some(service) = service {
            parsed.push((service, cidr_span, cidr));
        }
    }
    let key = |(_, span, cidr): &(u32, Span, IpNet)| (network_key(cidr), *span);
    parsed.sort_unstable_by_key(key);
    // A reused binding compiled before (its cidr has no host bits); its service is looked up
    // by name once per service of its generation, not once per binding.
    let reused_services = reused.services();
    let mut renumbered: Vec<Option<u32>> = vec![None; reused_services.len()];
    let kept = reused.bindings().filter_map(|(old, span, cidr)| {
        let old = old as usize;
        if let Some(service) = renumbered.get(old).copied().flatten() {
            return Some((service, span, cidr));
        }
        let name = reused_services
            .get(old)
            .map_or("", |service| service.name.as_str());
        let service = resolve(cidr, name, span, collector)?;
        if let Some(slot) = renumbered.get_mut(old) {
            *slot = Some(service);
        }
        Some((service, span, cidr))
    });
    let binding_candidates = merge_sorted(kept, parsed, key);
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
                let replaced = (last.service, last.made_span.get());
                last.service = service;
                last.made_span = span.into();
                ((service, span), replaced)
            } else {
                ((last.service, last.made_span.get()), (service, span))
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
            made_span: span.into(),
        });
    }
    BindingTable::of(BindingList::new(bindings), prefixes, services.len())
}

impl BindingTable {
    /// The table of `bindings` (sorted by cidr, each placed in its prefix): the per-prefix
    /// default binding and more-specific count, the per-service binding count.
    pub(super) fn of(
        bindings: BindingList,
        prefixes: &PrefixList,
        services: usize,
    ) -> BindingTable {
        let mut default_binding: Vec<Option<u32>> = vec![None; prefixes.len()];
        let mut more_specific_count: Vec<u32> = vec![0; prefixes.len()];
        let mut service_binding_count: Vec<u32> = vec![0; services];
        // Sorted by cidr, each in its prefix, the bindings come in their prefixes' order: the
        // prefixes are read beside them rather than looked up one by one (a chunk lookup and
        // a cache miss a binding were most of a toggle's table). Out of order, looked up.
        let mut cidrs = prefixes.iter().map(|prefix| prefix.cidr).enumerate();
        let mut current: Option<(usize, IpNet)> = cidrs.next();
        for (index, binding) in bindings.iter().enumerate() {
            service_binding_count[binding.service as usize] += 1;
            let place = binding.prefix as usize;
            while current.is_some_and(|(at, _)| at < place) {
                current = cidrs.next();
            }
            let prefix_cidr = match current {
                Some((at, cidr)) if at == place => cidr,
                _ => prefixes[place].cidr,
            };
            if prefix_cidr == binding.cidr {
                default_binding[binding.prefix as usize] = Some(index as u32);
            } else {
                more_specific_count[binding.prefix as usize] += 1;
            }
        }
        BindingTable {
            bindings,
            default_binding,
            more_specific_count,
            service_binding_count,
        }
    }
}
