//! **G6**: a customer prefix is advertised only with valid signed evidence of its ownership and
//! intent. When `[settings.onboarding]` names the operator's own `owner`, every prefix with
//! another owner and `advertise = true` must carry a `[prefix.evidence]` that verifies, with one
//! of `evidence_keys`, for the prefix's own cidr, owner and origin ASN. Pure: the public keys are
//! in the settings, the signature check needs no network.
//!
//! Cost: only customer prefixes are verified, all of them in one Ed25519 batch (one
//! multi-scalar multiplication instead of one check each); a failing batch is re-checked one by
//! one to name the culprits.
//!
//! Owns: G6. Must not touch: how evidence is produced (topoctl's onboarding), revocation (a
//! plan-time refusal topoctl applies from its onboarding store).

use ipnet::IpNet;
use topologyd_config::{Collector, PrefixEvidence, RawPrefix, RawTopology, Settings, Span};
use topologyd_ownership::evidence::{EvidenceKeys, Prepared, WrittenEvidence, verify_all};

/// Reports G6 for every advertised customer prefix whose evidence is missing or does not
/// verify.
pub(super) fn check_customer_evidence(
    raw: &RawTopology,
    settings: &Settings,
    collector: &mut Collector,
) {
    let Some(policy) = &settings.onboarding else {
        return;
    };
    let keys = match EvidenceKeys::parse(policy.evidence_keys.iter().map(String::as_str)) {
        Ok(keys) => keys,
        Err(error) => {
            collector.error(
                Some(policy.span),
                format!("[settings.onboarding] evidence_keys: {error}"),
                Some(
                    "write each key as printed by `topoctl prefix key` (ed25519:<64 hex digits>)"
                        .into(),
                ),
            );
            EvidenceKeys::default()
        }
    };
    let mut items: Vec<Prepared> = Vec::new();
    let mut verified: Vec<(&RawPrefix, Span)> = Vec::new();
    for prefix in raw
        .prefixes
        .iter()
        .filter(|prefix| prefix.advertise && prefix.owner != policy.operator_owner)
    {
        let Some(evidence) = &prefix.evidence else {
            report(
                prefix,
                prefix.cidr.span,
                "it has no [prefix.evidence]",
                collector,
            );
            continue;
        };
        match keys.prepare(
            prefix.cidr.value.trunc(),
            &prefix.owner,
            prefix.origin_asn.value,
            written(&evidence.value),
        ) {
            Ok(item) => {
                items.push(item);
                verified.push((prefix, evidence.span));
            }
            Err(error) => report(prefix, evidence.span, &error.to_string(), collector),
        }
    }
    for (result, (prefix, span)) in verify_all(&items).into_iter().zip(verified) {
        if let Err(error) = result {
            report(prefix, span, &error.to_string(), collector);
        }
    }
}

fn written(evidence: &PrefixEvidence) -> WrittenEvidence<'_> {
    WrittenEvidence {
        token_sha256: &evidence.token_sha256,
        checks: &evidence.checks,
        verified_at_unix: evidence.verified_at,
        key_id: &evidence.key,
        signature: &evidence.signature,
    }
}

fn report(prefix: &RawPrefix, span: Span, why: &str, collector: &mut Collector) {
    let cidr: IpNet = prefix.cidr.value;
    collector.error(
        Some(span),
        format!(
            "G6: customer prefix {cidr} (owner \"{}\") is advertised without valid ownership evidence: {why}",
            prefix.owner
        ),
        Some(format!(
            "run `topoctl prefix onboard {cidr} --owner {}` and `topoctl prefix verify {cidr}`, and paste the [prefix.evidence] it prints; or set advertise = false until it is verified",
            prefix.owner
        )),
    );
}
