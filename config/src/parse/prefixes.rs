//! `[[prefix]]` and `[[binding]]` tables, the bulk of a large topology (the fast path reads most of
//! them): CIDR text, announce modes, ROAs, and the owner, token and service names checked.

use super::values::{check_name, check_spanned_name, located_string, parse_cidr};
use crate::diagnostic::Collector;
use crate::file::{BindingFile, PrefixFile};
use crate::model::{AnnounceMode, Located, PrefixEvidence, RawBinding, RawPrefix, Roa};
use crate::source::span_of;

/// Appends one file's prefixes to `prefixes`; a prefix whose CIDR does not parse is left out.
pub(super) fn convert_prefixes(
    source_id: u32,
    files: Vec<PrefixFile>,
    prefixes: &mut Vec<RawPrefix>,
    collector: &mut Collector,
) {
    for prefix in files {
        // `owner` and the tokens keep no span of their own: reported at the prefix's cidr.
        let prefix_span = span_of(source_id, &prefix.cidr);
        check_name(prefix_span, "owner", &prefix.owner, collector);
        for token in [&prefix.irr_token, &prefix.rdns_token]
            .into_iter()
            .flatten()
        {
            check_name(prefix_span, "token", token, collector);
        }
        let Some(cidr) = parse_cidr(source_id, &prefix.cidr, "prefix", collector) else {
            continue;
        };
        let (announce, announce_span) = match &prefix.announce {
            Some(announce) => (announce.get_ref().0, span_of(source_id, announce)),
            None => (AnnounceMode::Aggregate, cidr.span),
        };
        prefixes.push(RawPrefix {
            cidr,
            origin_asn: Located::new(
                *prefix.origin_asn.get_ref(),
                span_of(source_id, &prefix.origin_asn),
            ),
            owner: prefix.owner,
            advertise: prefix.advertise,
            announce: Located::new(announce, announce_span),
            roa: prefix.roa.map(|roa| {
                let span = span_of(source_id, &roa);
                let roa = roa.into_inner();
                Located::new(
                    Roa {
                        asn: roa.asn,
                        max_length: roa.max_length,
                    },
                    span,
                )
            }),
            rpki: prefix.rpki.unwrap_or_default(),
            irr_token: prefix.irr_token,
            rdns_token: prefix.rdns_token,
            evidence: prefix.evidence.map(|evidence| {
                let span = span_of(source_id, &evidence);
                let evidence = evidence.into_inner();
                Located::new(
                    PrefixEvidence {
                        longest_announced: evidence.longest_announced,
                        token_sha256: evidence.token_sha256,
                        checks: evidence.checks,
                        verified_at: evidence.verified_at,
                        key: evidence.key,
                        signature: evidence.signature,
                    },
                    span,
                )
            }),
        });
    }
}

/// Appends one file's bindings to `bindings`; a binding whose CIDR does not parse is left out.
pub(super) fn convert_bindings(
    source_id: u32,
    files: Vec<BindingFile>,
    bindings: &mut Vec<RawBinding>,
    collector: &mut Collector,
) {
    bindings.reserve(files.len());
    for binding in files {
        check_spanned_name(source_id, "service name", &binding.service, collector);
        let Some(cidr) = parse_cidr(source_id, &binding.cidr, "binding", collector) else {
            continue;
        };
        bindings.push(RawBinding {
            cidr,
            service: located_string(source_id, binding.service),
        });
    }
}
