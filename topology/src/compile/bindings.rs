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
    /// Per prefix: its default binding and more-specific count.
    per_prefix: PerPrefix,
    /// Per service: how many bindings name it.
    pub(super) service_binding_count: Vec<u32>,
}

/// Per prefix place: the binding of exactly its cidr, if any, and how many more-specific
/// bindings it holds.
enum PerPrefix {
    /// Made for every place in one sweep (a full compile reads every place).
    Every {
        default_binding: Vec<Option<u32>>,
        more_specific_count: Vec<u32>,
    },
    /// Searched in the bindings when read: a patched compile reads only the places it
    /// patched, and sweeping 300,000 bindings for them was a tenth of a toggle's compile.
    Searched,
}

impl BindingTable {
    /// The index of the longest binding covering `network`.
    pub(super) fn longest(&self, network: &IpNet) -> Option<u32> {
        self.bindings.longest(network)
    }

    /// The index of the binding of exactly the cidr of the prefix at `place`, if any.
    pub(super) fn default_binding(&self, place: usize, prefixes: &PrefixList) -> Option<u32> {
        match &self.per_prefix {
            PerPrefix::Every {
                default_binding, ..
            } => default_binding.get(place).copied().flatten(),
            PerPrefix::Searched => self.searched(place, prefixes).0,
        }
    }

    /// How many bindings more specific than the prefix at `place` it holds.
    pub(super) fn more_specific_count(&self, place: usize, prefixes: &PrefixList) -> u32 {
        match &self.per_prefix {
            PerPrefix::Every {
                more_specific_count,
                ..
            } => more_specific_count.get(place).copied().unwrap_or(0),
            PerPrefix::Searched => self.searched(place, prefixes).1,
        }
    }

    /// The default binding and more-specific count of the prefix at `place`, from the
    /// bindings it holds: sorted by cidr, each in its prefix, the bindings come in their
    /// prefixes' order, so a prefix's are one run found by two binary searches.
    fn searched(&self, place: usize, prefixes: &PrefixList) -> (Option<u32>, u32) {
        let Some(prefix) = prefixes.get(place) else {
            return (None, 0);
        };
        let bindings = self.bindings.as_slice();
        let start = bindings.partition_point(|binding| (binding.prefix as usize) < place);
        let end = bindings.partition_point(|binding| (binding.prefix as usize) <= place);
        let mut found = (None, 0);
        for (index, binding) in bindings.iter().enumerate().take(end).skip(start) {
            if binding.cidr == prefix.cidr {
                found.0 = Some(index as u32);
            } else {
                found.1 += 1;
            }
        }
        found
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
            per_prefix: PerPrefix::Every {
                default_binding,
                more_specific_count,
            },
            service_binding_count,
        }
    }

    /// The table of a patched compile's `bindings`, whose per-prefix figures are searched when
    /// read (see [`PerPrefix::Searched`]); the per-service counts are `running_counts` (those
    /// of the running generation whose records `bindings` shares) or counted.
    pub(super) fn searched_when_read(
        bindings: BindingList,
        services: usize,
        running_counts: Option<&[u32]>,
    ) -> BindingTable {
        let service_binding_count = match running_counts {
            Some(counts) if counts.len() == services => counts.to_vec(),
            _ => {
                let mut counts = vec![0; services];
                for binding in bindings.iter() {
                    if let Some(count) = counts.get_mut(binding.service as usize) {
                        *count += 1;
                    }
                }
                counts
            }
        };
        BindingTable {
            bindings,
            per_prefix: PerPrefix::Searched,
            service_binding_count,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix(cidr: IpNet) -> crate::model::Prefix {
        crate::model::Prefix {
            cidr,
            origin_asn: 64500,
            owner: std::sync::Arc::from("o"),
            advertise: true,
            announce: topologyd_config::AnnounceMode::Aggregate,
            roa: None,
            rpki: topologyd_config::NotFoundPolicy::Warn,
            ownership: None,
            span: Span::default().into(),
        }
    }

    proptest! {
        /// Searched when read, a table gives every prefix the default binding and
        /// more-specific count the sweep gives it, and counts the services alike: for /16
        /// prefixes holding any mix of their own cidr and /24s, some holding none.
        #[test]
        fn a_searched_table_reads_as_the_swept_one(
            held in proptest::collection::vec(
                (any::<bool>(), proptest::collection::btree_set(0u8..8, 0..5)),
                0..40,
            ),
            services in 1usize..4,
        ) {
            let mut prefixes = Vec::new();
            let mut bindings = Vec::new();
            for (place, (whole, subnets)) in held.iter().enumerate() {
                let base = [10, place as u8, 0, 0];
                let cidr: IpNet = format!("{}.{}.0.0/16", base[0], base[1]).parse().unwrap();
                prefixes.push(prefix(cidr));
                let mut cidrs: Vec<IpNet> = Vec::new();
                if *whole {
                    cidrs.push(cidr);
                }
                cidrs.extend(subnets.iter().map(|third| {
                    format!("{}.{}.{third}.0/24", base[0], base[1]).parse::<IpNet>().unwrap()
                }));
                for cidr in cidrs {
                    bindings.push(Binding {
                        cidr,
                        service: (bindings.len() % services) as u32,
                        prefix: place as u32,
                        made_span: Span::default().into(),
                    });
                }
            }
            let prefixes = PrefixList::from_vec(prefixes);
            let list = BindingList::new(bindings);
            let swept = BindingTable::of(list.clone(), &prefixes, services);
            let searched = BindingTable::searched_when_read(list.clone(), services, None);
            prop_assert_eq!(&searched.service_binding_count, &swept.service_binding_count);
            for place in 0..=prefixes.len() {
                prop_assert_eq!(
                    searched.default_binding(place, &prefixes),
                    swept.default_binding(place, &prefixes)
                );
                prop_assert_eq!(
                    searched.more_specific_count(place, &prefixes),
                    swept.more_specific_count(place, &prefixes)
                );
            }
            let taken = BindingTable::searched_when_read(list, services, Some(&[7; 3][..services]));
            prop_assert_eq!(taken.service_binding_count, vec![7; services], "the running counts");
        }
    }
}
