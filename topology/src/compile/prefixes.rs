//! The prefixes phase of the compiler: host bits, origin ASN, announce lengths against the
//! `[settings]` limits, the ROA's origin and max-length, and overlapping onboarded prefixes.

use std::sync::Arc;

use ipnet::IpNet;
use topologyd_config::{
    AnnounceMode, Collector, LengthLimits, Located, Names, RawPrefix, RawTopology, Settings,
};

use super::incremental::Reused;
use super::{
    MAX_ROUTES_PER_PREFIX, family_bits, family_name, merge_sorted, network_key, validate_network,
};
use crate::model::{Prefix, PrefixOwnership};

/// Onboarded prefixes, sorted and disjoint (a later overlapping one is an error and dropped):
/// the parsed ones (`raw_prefixes`, taken out of `raw`) checked one by one, and `reused` ones an
/// incremental compile took, already compiled, from the running generation (sorted by cidr;
/// checked there under the same settings, so only the overlaps are checked again).
pub(super) fn compile_prefixes(
    raw_prefixes: Vec<RawPrefix>,
    raw: &RawTopology,
    reused: &Reused<'_>,
    settings: &Settings,
    collector: &mut Collector,
) -> Vec<Prefix> {
    // Each raw prefix is consumed as it is compiled: the compiled list is written into the
    // raw list's memory (a compiled prefix is smaller), then cut to its size, so that a
    // million prefixes are never held in both forms at once.
    let mut prefix_candidates: Vec<Prefix> = raw_prefixes
        .into_iter()
        .map(|raw_prefix| compile_prefix(&raw_prefix, &raw.names, settings, collector))
        .collect();
    prefix_candidates.shrink_to_fit();
    let key = |prefix: &Prefix| (network_key(&prefix.cidr), prefix.span);
    prefix_candidates.sort_unstable_by_key(key);
    drop_overlapping_prefixes(
        raw,
        merge_sorted(reused.prefixes(), prefix_candidates, key),
        collector,
    )
}

/// One onboarded prefix, every problem with it reported (the prefix is kept, for later phases).
pub(super) fn compile_prefix(
    raw_prefix: &RawPrefix,
    names: &Names,
    settings: &Settings,
    collector: &mut Collector,
) -> Prefix {
    let cidr = validate_network(
        &Located::new(raw_prefix.cidr, raw_prefix.cidr_span()),
        "prefix",
        collector,
    );
    let limits = settings.limits_for(&cidr);
    if raw_prefix.origin_asn == 0 {
        collector.error(
            Some(raw_prefix.origin_asn_span()),
            format!("prefix {cidr} has origin AS0, which may never be announced (RFC 7607)"),
            Some("set origin_asn to the ASN that originates the prefix".into()),
        );
    }
    let route_length = route_length(raw_prefix, &cidr, limits, collector);
    check_announce_limits(raw_prefix, &cidr, route_length, limits, collector);
    check_roa(raw_prefix, &cidr, route_length, collector);
    Prefix {
        cidr,
        origin_asn: raw_prefix.origin_asn,
        // One shared name per owner: the parse interns them (and a prefix rebuilt from the
        // running generation interns that generation's).
        owner: Arc::clone(names.get(raw_prefix.owner)),
        advertise: raw_prefix.advertise,
        announce: match raw_prefix.announce {
            AnnounceMode::Split(length) if length == route_length => AnnounceMode::Split(length),
            _ => AnnounceMode::Aggregate,
        },
        roa: raw_prefix.roa,
        rpki: raw_prefix.rpki,
        ownership: PrefixOwnership::boxed(
            raw_prefix.irr_token(),
            raw_prefix.rdns_token(),
            raw_prefix.evidence().map(|evidence| &evidence.value),
        ),
        span: raw_prefix.cidr_span().into(),
    }
}

/// The length of the routes the prefix is announced as: its own length, or the split length when
/// that is valid (an invalid split is reported and the prefix falls back to its own length).
fn route_length(
    raw_prefix: &RawPrefix,
    cidr: &IpNet,
    limits: LengthLimits,
    collector: &mut Collector,
) -> u8 {
    let AnnounceMode::Split(length) = raw_prefix.announce else {
        return cidr.prefix_len();
    };
    let bits = family_bits(cidr);
    let problem = if length > bits {
        Some((
            format!(
                "family mismatch: split = {length} is longer than an {} address ({bits} bits)",
                family_name(cidr)
            ),
            format!("use at most {} for {}", limits.longest, family_name(cidr)),
        ))
    } else if length < cidr.prefix_len() {
        Some((
            format!("split = {length} is shorter than the prefix {cidr} itself"),
            format!(
                "split into lengths between /{} and /{}, or announce = \"aggregate\"",
                cidr.prefix_len(),
                limits.longest
            ),
        ))
    } else if length - cidr.prefix_len() > MAX_ROUTES_PER_PREFIX.trailing_zeros() as u8 {
        Some((
            format!(
                "splitting {cidr} into /{length}s makes more than {MAX_ROUTES_PER_PREFIX} routes"
            ),
            "onboard smaller prefixes, or split into shorter routes".to_string(),
        ))
    } else {
        None
    };
    match problem {
        Some((message, fix)) => {
            collector.error(Some(raw_prefix.announce_span()), message, Some(fix));
            cidr.prefix_len()
        }
        None => length,
    }
}

/// Routes must fall inside the `[settings]` announce-length limits of their family.
fn check_announce_limits(
    raw_prefix: &RawPrefix,
    cidr: &IpNet,
    route_length: u8,
    limits: LengthLimits,
    collector: &mut Collector,
) {
    if route_length >= limits.shortest && route_length <= limits.longest {
        return;
    }
    let how = if route_length > limits.longest {
        format!(
            "routes longer than /{} are filtered by most networks; raise [settings] {}_announce_lengths.longest only if your peers accept them",
            limits.longest,
            family_name(cidr).to_lowercase()
        )
    } else {
        format!(
            "announce it as {{ split = {} }} or onboard it as smaller prefixes",
            limits.shortest
        )
    };
    collector.error(
        Some(raw_prefix.announce_span()),
        format!(
            "prefix {cidr} would be announced as /{route_length} routes, outside the {} limits /{}–/{}",
            family_name(cidr),
            limits.shortest,
            limits.longest
        ),
        Some(how),
    );
}

/// The ROA, when there is one, must authorise the origin ASN and the announced route length.
fn check_roa(raw_prefix: &RawPrefix, cidr: &IpNet, route_length: u8, collector: &mut Collector) {
    let (Some(roa), Some(roa_span)) = (raw_prefix.roa, raw_prefix.roa_span()) else {
        return;
    };
    if roa.asn != raw_prefix.origin_asn {
        collector.error(
            Some(roa_span),
            format!(
                "RPKI-invalid: the ROA of {cidr} authorises AS{}, but the prefix is originated by AS{}",
                roa.asn, raw_prefix.origin_asn
            ),
            Some("fix origin_asn, or publish a ROA for the originating ASN".into()),
        );
    }
    if roa.max_length > family_bits(cidr) {
        collector.error(
            Some(roa_span),
            format!(
                "family mismatch: ROA max_length {} is longer than an {} address",
                roa.max_length,
                family_name(cidr)
            ),
            None,
        );
    } else if roa.max_length < route_length {
        collector.error(
            Some(roa_span),
            format!(
                "RPKI-invalid: routes of {cidr} are /{route_length}, longer than the ROA's max_length {}",
                roa.max_length
            ),
            Some(format!(
                "publish a ROA with max_length ≥ {route_length}, or announce shorter routes"
            )),
        );
    }
}

/// Keeps the first of overlapping prefixes (sorted by network, then by where they were written)
/// and reports each later one that repeats or sits inside it. In place: the list is the whole
/// topology's.
fn drop_overlapping_prefixes(
    raw: &RawTopology,
    mut prefixes: Vec<Prefix>,
    collector: &mut Collector,
) -> Vec<Prefix> {
    prefixes.dedup_by(|prefix, last| {
        if !last.cidr.contains(&prefix.cidr) {
            return false;
        }
        let message = if last.cidr == prefix.cidr {
            format!("prefix {} is onboarded twice", prefix.cidr)
        } else {
            format!(
                "onboarded prefix {} overlaps onboarded prefix {}",
                prefix.cidr, last.cidr
            )
        };
        collector.error(
            Some(prefix.span.get()),
            message,
            Some(format!(
                "{} is onboarded at {}; onboard each address once (use bindings to give part of a prefix to another service)",
                last.cidr,
                raw.sources.locate(last.span.get())
            )),
        );
        true
    });
    prefixes
}
