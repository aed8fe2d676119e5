//! The intent check: does a VRP authorise our origin ASN for the prefix, down to every route
//! the topology announces for it (`split = 24` announces /24s, so a ROA for the /22 needs
//! max-length 24 or more)?
//!
//! Owns: the verdict over the VRPs covering the prefix. Must not touch: where VRPs come from
//! (an rpki-client JSON file or an RTR cache, loaded by topoctl), the clock.

use ipnet::IpNet;
use topologyd_rpki::Vrp;

use crate::check::{CheckEvidence, CheckKind, CheckStatus};

/// What the intent check needs to know about the prefix.
#[derive(Debug, Clone, Copy)]
pub struct IntentQuery {
    pub prefix: IpNet,
    pub origin_asn: u32,
    /// The longest route announced for the prefix: its own length, or the split length.
    pub longest_announced: u8,
}

/// The ROA check over `covering` (every VRP covering the prefix, as `VrpSet::covering`
/// answers), from `source` (the VRP file or cache), at `now_unix`.
pub fn check_roa(
    query: IntentQuery,
    covering: &[Vrp],
    source: &str,
    now_unix: u64,
) -> CheckEvidence {
    let IntentQuery {
        prefix,
        origin_asn,
        longest_announced,
    } = query;
    let longest = longest_announced.max(prefix.prefix_len());
    let relevant: Vec<&Vrp> = covering
        .iter()
        .filter(|vrp| vrp.prefix.contains(&prefix.trunc()))
        .collect();
    let ours: Vec<&&Vrp> = relevant
        .iter()
        .filter(|vrp| vrp.asn == origin_asn && vrp.asn != 0)
        .collect();
    let (status, detail) = if ours.iter().any(|vrp| vrp.max_length >= longest) {
        (
            CheckStatus::Valid,
            format!("a ROA authorises AS{origin_asn} for {prefix} down to /{longest}"),
        )
    } else if let Some(best) = ours.iter().map(|vrp| vrp.max_length).max() {
        (
            CheckStatus::Invalid,
            format!(
                "the ROA for AS{origin_asn} has max-length {best}, shorter than the /{longest} routes announced for {prefix}: ask the holder to raise it to {longest}"
            ),
        )
    } else if !relevant.is_empty() {
        (
            CheckStatus::MismatchAsn,
            format!(
                "ROAs cover {prefix} but none authorises AS{origin_asn}: ask the holder for a ROA with origin AS{origin_asn} and max-length {longest}"
            ),
        )
    } else {
        (
            CheckStatus::Missing,
            format!(
                "no ROA covers {prefix}: ask the holder for a ROA with origin AS{origin_asn} and max-length {longest}"
            ),
        )
    };
    CheckEvidence {
        kind: CheckKind::Roa,
        status,
        queried: vec![format!(
            "VRPs covering {prefix} for AS{origin_asn} max-length >= {longest}"
        )],
        server: source.to_string(),
        found: relevant.iter().map(|vrp| vrp.to_string()).collect(),
        checked_at_unix: now_unix,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vrp(prefix: &str, max_length: u8, asn: u32) -> Vrp {
        Vrp {
            prefix: prefix.parse().expect("a prefix"),
            max_length,
            asn,
        }
    }

    fn status(covering: &[Vrp], longest: u8) -> CheckStatus {
        let query = IntentQuery {
            prefix: "198.51.100.0/22".parse().expect("a prefix"),
            origin_asn: 64500,
            longest_announced: longest,
        };
        check_roa(query, covering, "vrps.json", 1).status
    }

    #[test]
    fn a_roa_must_reach_the_split_length() {
        let roa = [vrp("198.51.100.0/22", 24, 64500)];
        assert_eq!(status(&roa, 24), CheckStatus::Valid);
        assert_eq!(
            status(&[vrp("198.51.100.0/22", 23, 64500)], 24),
            CheckStatus::Invalid
        );
        assert_eq!(
            status(&[vrp("198.51.100.0/22", 22, 64500)], 22),
            CheckStatus::Valid
        );
    }

    #[test]
    fn another_origin_or_nothing() {
        assert_eq!(
            status(&[vrp("198.51.0.0/16", 24, 64999)], 24),
            CheckStatus::MismatchAsn
        );
        assert_eq!(
            status(&[vrp("198.51.100.0/22", 24, 0)], 24),
            CheckStatus::MismatchAsn
        );
        assert_eq!(status(&[], 22), CheckStatus::Missing);
        // A more-specific VRP does not cover the prefix.
        assert_eq!(
            status(&[vrp("198.51.100.0/24", 24, 64500)], 24),
            CheckStatus::Missing
        );
    }
}
