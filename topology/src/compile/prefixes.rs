//! The prefixes phase of the compiler: host bits, origin ASN, announce lengths against the
//! `[settings]` limits, the ROA's origin and max-length, and overlapping onboarded prefixes.

use topologyd_config::{AnnounceMode, Collector, RawTopology, Settings};

use super::{MAX_ROUTES_PER_PREFIX, family_bits, family_name, network_key, validate_network};
use crate::model::Prefix;

/// Onboarded prefixes, sorted and disjoint (a later overlapping one is an error and dropped).
pub(super) fn compile_prefixes(
    raw: &RawTopology,
    settings: &Settings,
    collector: &mut Collector,
) -> Vec<Prefix> {
    let sources = &raw.sources;
    let mut prefix_candidates: Vec<Prefix> = Vec::with_capacity(raw.prefixes.len());
    for raw_prefix in &raw.prefixes {
        let cidr = validate_network(&raw_prefix.cidr, "prefix", collector);
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

    prefixes
}
