//! Validation tokens: the single-use secret a customer publishes to prove control of a prefix,
//! and the exact text to publish it with (an IRR `route:`/`route6:` object, reverse-DNS TXT
//! records in every covering zone).
//!
//! A token is [`TOKEN_RANDOM_BYTES`] bytes of randomness (192 bits) written in hex after
//! [`TOKEN_LABEL`]. It is bound to one prefix, owner and origin ASN by the onboarding record
//! that issued it (topoctl's store) and by the signed evidence, which carries its SHA-256
//! ([`token_digest`]), never the token itself: the topology holds no secret.
//!
//! Owns: the token's form, its expiry rule, the publication text. Must not touch: randomness
//! or the clock (the caller passes the random bytes and the time in), the store.

use std::fmt::Write as _;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::reverse_zone::challenge_record_names;

/// Random bytes in a token: 192 bits, above the 128 a guess must beat.
pub const TOKEN_RANDOM_BYTES: usize = 24;
/// What every token starts with, so that a person reading a TXT record or a route object's
/// `remarks:` knows what it is for.
pub const TOKEN_LABEL: &str = "topologyd-verify-";
/// How long a token stays usable unless the operator says otherwise: 14 days.
pub const DEFAULT_TOKEN_LIFETIME_SECONDS: u64 = 14 * 24 * 3600;
/// The TTL suggested for the challenge TXT records.
pub const CHALLENGE_TTL_SECONDS: u32 = 300;

/// A token issued for one prefix, owner and origin ASN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationToken {
    /// The text to publish (`topologyd-verify-<48 hex digits>`).
    pub token: String,
    pub prefix: IpNet,
    pub owner: String,
    pub origin_asn: u32,
    pub issued_at_unix: u64,
    pub expires_at_unix: u64,
}

impl ValidationToken {
    /// A token from `random` (fresh randomness from the caller), valid for `lifetime_seconds`
    /// from `now_unix`. The prefix is kept truncated (host bits cleared).
    pub fn issue(
        random: [u8; TOKEN_RANDOM_BYTES],
        prefix: IpNet,
        owner: &str,
        origin_asn: u32,
        now_unix: u64,
        lifetime_seconds: u64,
    ) -> ValidationToken {
        ValidationToken {
            token: format!("{TOKEN_LABEL}{}", hex(&random)),
            prefix: prefix.trunc(),
            owner: owner.to_string(),
            origin_asn,
            issued_at_unix: now_unix,
            expires_at_unix: now_unix.saturating_add(lifetime_seconds),
        }
    }

    /// Whether the token may no longer be used at `now_unix` (its expiry instant included).
    pub fn is_expired(&self, now_unix: u64) -> bool {
        now_unix >= self.expires_at_unix
    }

    /// The SHA-256 of the token, in hex: what evidence and revocations name.
    pub fn digest(&self) -> String {
        token_digest(&self.token)
    }

    /// What the customer publishes, exactly.
    pub fn publication(&self, irr_source: &str) -> Publication {
        let route_key = match self.prefix {
            IpNet::V4(_) => "route",
            IpNet::V6(_) => "route6",
        };
        let mut irr_object = String::new();
        let _ = writeln!(irr_object, "{route_key}: {}", self.prefix);
        let _ = writeln!(irr_object, "origin: AS{}", self.origin_asn);
        let _ = writeln!(
            irr_object,
            "descr: {} announced by AS{}",
            self.owner, self.origin_asn
        );
        let _ = writeln!(irr_object, "remarks: {}", self.token);
        let _ = writeln!(irr_object, "mnt-by: <your maintainer>");
        let _ = writeln!(irr_object, "source: {irr_source}");
        let rdns_records = challenge_record_names(self.prefix)
            .into_iter()
            .map(|name| RdnsRecord {
                zone_line: format!("{name}. {CHALLENGE_TTL_SECONDS} IN TXT \"{}\"", self.token),
                name,
                value: self.token.clone(),
            })
            .collect();
        Publication {
            irr_object,
            rdns_records,
        }
    }
}

/// The two ways to publish a token; either one proves ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The RPSL object to register, token in `remarks:`, `origin:` our ASN.
    pub irr_object: String,
    /// One TXT record per covering reverse zone (all of them are needed).
    pub rdns_records: Vec<RdnsRecord>,
}

/// One challenge TXT record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RdnsRecord {
    /// The owner name, without a trailing dot.
    pub name: String,
    /// The TXT string: the token.
    pub value: String,
    /// The record as a zone-file line.
    pub zone_line: String,
}

/// The SHA-256 of `token` in lowercase hex.
pub fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The bytes of lowercase or uppercase hex text of exactly `N` bytes.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (index, pair) in bytes.chunks_exact(2).enumerate() {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        out[index] = u8::try_from(high * 16 + low).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(prefix: &str) -> ValidationToken {
        ValidationToken::issue(
            [7; TOKEN_RANDOM_BYTES],
            prefix.parse().expect("a prefix"),
            "acme",
            64500,
            1_000,
            60,
        )
    }

    #[test]
    fn a_token_carries_192_bits_in_hex_and_expires() {
        let token = token("198.51.100.0/24");
        assert_eq!(
            token.token.len(),
            TOKEN_LABEL.len() + 2 * TOKEN_RANDOM_BYTES
        );
        assert!(!token.is_expired(1_059));
        assert!(token.is_expired(1_060));
        assert_eq!(token.digest().len(), 64);
        assert_ne!(token.digest(), token_digest("another"));
    }

    #[test]
    fn a_slash_23_is_published_in_both_zones_and_as_a_route_object() {
        let publication = token("198.51.100.0/23").publication("RIPE");
        assert!(
            publication
                .irr_object
                .starts_with("route: 198.51.100.0/23\norigin: AS64500\n")
        );
        assert!(
            publication
                .irr_object
                .contains("remarks: topologyd-verify-0707")
        );
        assert_eq!(publication.rdns_records.len(), 2);
        assert_eq!(
            publication.rdns_records[1].zone_line,
            format!(
                "_topologyd-challenge.101.51.198.in-addr.arpa. 300 IN TXT \"{}\"",
                publication.rdns_records[1].value
            )
        );
    }

    #[test]
    fn ipv6_uses_route6() {
        let publication = token("2001:db8::/32").publication("RADB");
        assert!(
            publication
                .irr_object
                .starts_with("route6: 2001:db8::/32\n")
        );
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex::<4>(&hex(&bytes)), Some(bytes));
        assert_eq!(unhex::<4>("00"), None);
        assert_eq!(unhex::<1>("zz"), None);
    }
}
