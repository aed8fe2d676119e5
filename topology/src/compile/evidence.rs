//! **G6**: a customer prefix is advertised only with valid signed evidence of its ownership and
//! intent. When `[settings.onboarding]` names the operator's own `owner`, every prefix with
//! another owner and `advertise = true` must carry a `[prefix.evidence]` that verifies, with one
//! of `evidence_keys`, for the prefix's own cidr, owner and origin ASN, and whose signed longest
//! announced length (what the ROA check verified) is at least the length the entry announces
//! (`announce = { split = N }`, or the prefix itself), and whose token digest is not in the
//! settings' `revoked` list. Pure: the public keys are
//! in the settings, the signature check needs no network.
//!
//! Cost: only customer prefixes are verified, all of them in one Ed25519 batch (one
//! multi-scalar multiplication instead of one check each); a failing batch is re-checked one by
//! one to name the culprits. Compiled against a baseline (a push to a running daemon), a
//! prefix whose cidr, owner, origin ASN and evidence are those the baseline advertised under the
//! same `[settings.onboarding]` was verified then and is not verified again.
//!
//! Owns: G6. Must not touch: how evidence is produced (topoctl's onboarding), the onboarding
//! store's revocation list (a plan-time refusal topoctl applies; G6 reads only the digests
//! copied into `[settings.onboarding] revoked`).

use std::collections::HashMap;
use std::sync::Arc;

use ipnet::IpNet;
use topologyd_config::{
    AnnounceMode, Collector, Located, Names, OnboardingPolicy, PrefixEvidence, RawPrefix, Settings,
    Span,
};
use topologyd_ownership::evidence::{EvidenceKeys, Prepared, WrittenEvidence, verify_all};

use super::network_key;
use crate::model::{Prefix, Topology};

/// The prefixes G6 checks: advertised, of another owner than the operator (a copy; none
/// without an onboarding policy).
pub(super) fn customer_prefixes(
    prefixes: &[RawPrefix],
    names: &Names,
    settings: &Settings,
) -> Vec<CustomerPrefix> {
    let Some(policy) = &settings.onboarding else {
        return Vec::new();
    };
    prefixes
        .iter()
        .filter(|prefix| prefix.advertise && **names.get(prefix.owner) != *policy.operator_owner)
        .map(|prefix| CustomerPrefix {
            owner: Arc::clone(names.get(prefix.owner)),
            prefix: prefix.clone(),
        })
        .collect()
}

/// A customer prefix as written, with its owner's name.
pub(super) struct CustomerPrefix {
    prefix: RawPrefix,
    owner: Arc<str>,
}

/// Reports G6 for every advertised customer prefix whose evidence is missing or does not
/// verify (`customer_prefixes`: what [`customer_prefixes`] gave).
pub(super) fn check_customer_evidence(
    customer_prefixes: &[CustomerPrefix],
    settings: &Settings,
    baseline: Option<&Topology>,
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
    let verified_before = verified_in(baseline, policy);
    let mut items: Vec<Prepared> = Vec::new();
    let mut verified: Vec<(&CustomerPrefix, Span)> = Vec::new();
    // In (cidr, place) order, not the raw list's: the batch check draws its coefficients from
    // the items in order, and an incremental compile appends the prefixes it reuses.
    let mut customer_prefixes: Vec<&CustomerPrefix> = customer_prefixes.iter().collect();
    customer_prefixes.sort_unstable_by_key(|customer| {
        (
            network_key(&customer.prefix.cidr),
            customer.prefix.cidr_span(),
        )
    });
    for customer in customer_prefixes {
        let prefix = &customer.prefix;
        let Some(evidence) = prefix.evidence() else {
            report(
                customer,
                prefix.cidr_span(),
                "it has no [prefix.evidence]",
                collector,
            );
            continue;
        };
        if !announce_is_covered(customer, evidence, collector) {
            continue;
        }
        let digest = evidence.value.token_sha256.to_ascii_lowercase();
        if policy.revoked.contains(&digest) {
            report(
                customer,
                evidence.span,
                &format!(
                    "its evidence (token {digest}) is revoked in [settings.onboarding] revoked"
                ),
                collector,
            );
            continue;
        }
        let unchanged = verified_before.get(&prefix.cidr).is_some_and(|old| {
            *old.owner == *customer.owner
                && old.origin_asn == prefix.origin_asn
                && old.evidence() == Some(&evidence.value)
        });
        if unchanged {
            continue;
        }
        match keys.prepare(
            prefix.cidr.trunc(),
            &customer.owner,
            prefix.origin_asn,
            written(&evidence.value),
        ) {
            Ok(item) => {
                items.push(item);
                verified.push((customer, evidence.span));
            }
            Err(error) => report(customer, evidence.span, &error.to_string(), collector),
        }
    }
    for (result, (prefix, span)) in verify_all(&items).into_iter().zip(verified) {
        if let Err(error) = result {
            report(prefix, span, &error.to_string(), collector);
        }
    }
}

/// Whether the entry announces no longer routes than its evidence's signed longest announced
/// length; reports G6 at the entry's announce mode when it does.
fn announce_is_covered(
    customer: &CustomerPrefix,
    evidence: &Located<PrefixEvidence>,
    collector: &mut Collector,
) -> bool {
    let prefix = &customer.prefix;
    let cidr: IpNet = prefix.cidr;
    let announced = match prefix.announce {
        AnnounceMode::Aggregate => cidr.prefix_len(),
        AnnounceMode::Split(length) => length,
    };
    let signed = evidence.value.longest_announced;
    if announced <= signed {
        return true;
    }
    collector.error(
        Some(prefix.announce_span()),
        format!(
            "G6: customer prefix {cidr} (owner \"{}\") announces routes of /{announced} ({}), but its evidence was verified for routes up to /{signed} only (the ROA check covered no longer routes)",
            customer.owner, prefix.announce
        ),
        Some(format!(
            "verify again for the new length: `topoctl prefix onboard {cidr} --owner {} --split {announced}` (the ROA's max-length must reach /{announced}) and `topoctl prefix verify {cidr}`, then paste the new [prefix.evidence]; or announce as before",
            customer.owner
        )),
    );
    false
}

/// The customer prefixes `baseline` advertised with evidence under the same onboarding
/// settings (so G6 verified them when it compiled), by cidr.
fn verified_in<'a>(
    baseline: Option<&'a Topology>,
    policy: &OnboardingPolicy,
) -> HashMap<IpNet, &'a Prefix> {
    let Some(baseline) = baseline else {
        return HashMap::new();
    };
    let same_policy = baseline.settings().onboarding.as_ref().is_some_and(|old| {
        old.operator_owner == policy.operator_owner
            && old.evidence_keys == policy.evidence_keys
            && old.revoked == policy.revoked
    });
    if !same_policy {
        return HashMap::new();
    }
    baseline
        .prefixes()
        .iter()
        .filter(|prefix| {
            prefix.advertise
                && *prefix.owner != *policy.operator_owner
                && prefix.evidence().is_some()
        })
        .map(|prefix| (prefix.cidr, prefix))
        .collect()
}

fn written(evidence: &PrefixEvidence) -> WrittenEvidence<'_> {
    WrittenEvidence {
        longest_announced: evidence.longest_announced,
        token_sha256: &evidence.token_sha256,
        checks: &evidence.checks,
        verified_at_unix: evidence.verified_at,
        key_id: &evidence.key,
        signature: &evidence.signature,
    }
}

fn report(customer: &CustomerPrefix, span: Span, why: &str, collector: &mut Collector) {
    let cidr: IpNet = customer.prefix.cidr;
    collector.error(
        Some(span),
        format!(
            "G6: customer prefix {cidr} (owner \"{}\") is advertised without valid ownership evidence: {why}",
            customer.owner
        ),
        Some(format!(
            "run `topoctl prefix onboard {cidr} --owner {}` and `topoctl prefix verify {cidr}`, and paste the [prefix.evidence] it prints; or set advertise = false until it is verified",
            customer.owner
        )),
    );
}
