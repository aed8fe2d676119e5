//! Signed evidence: the proof, carried in a prefix's entry of the topology, that the prefix's
//! ownership (reverse DNS or IRR) and intent (ROA) were verified, signed with the onboarding key
//! (Ed25519) so that `topology::compile` can check it with the public key alone — no network.
//!
//! The signature covers a canonical text ([`EvidenceClaim::message`]) binding the prefix, the
//! owner and the origin ASN — taken from the prefix's own entry when verifying, never from the
//! evidence, so evidence moved to another prefix, owner or ASN does not verify — plus the
//! longest announced prefix length the ROA check verified, the token's SHA-256, the checks that
//! passed and when. The longest announced length is written in the evidence and signed: the
//! topology compiler refuses an entry announcing longer routes than the evidence vouches for.
//!
//! Owns: the claim, its canonical message, signing, single and batch verification, key text
//! (`ed25519:<hex>`) and key fingerprints. Must not touch: where keys are stored, the clock.

use ed25519_dalek::{Signature, Signer};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::check::CheckKind;
use crate::token::{hex, unhex};

/// What a public key's text starts with.
pub const KEY_TEXT_PREFIX: &str = "ed25519:";
/// The first line of every signed message: a version, so that a later format cannot be
/// confused with this one.
/// v2 binds the longest announced length; v1 (which did not) is no longer accepted.
const MESSAGE_HEADER: &str = "topologyd-byoip-evidence-v2";

/// What the onboarding key vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceClaim {
    pub prefix: IpNet,
    pub owner: String,
    pub origin_asn: u32,
    /// The longest route length announced for the prefix (its own length, or the split
    /// length) that the ROA check verified the ROA's max-length reaches.
    pub longest_announced: u8,
    /// SHA-256 of the validation token, hex.
    pub token_sha256: String,
    /// The checks that passed, in [`CheckKind`] order: an ownership check and `roa`.
    pub checks: Vec<CheckKind>,
    /// When the last of them passed, seconds since the Unix epoch.
    pub verified_at_unix: u64,
}

/// A claim with its signature, as it is written into the topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvidence {
    pub claim: EvidenceClaim,
    /// [`key_id`] of the signing key.
    pub key_id: String,
    /// The Ed25519 signature of [`EvidenceClaim::message`], hex (128 digits).
    pub signature: String,
}

/// Why evidence does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("evidence lists checks {0}, but needs `roa` and one of `rdns` or `irr`")]
    IncompleteChecks(String),
    #[error("unknown check `{0}` (expected rdns, irr or roa)")]
    UnknownCheck(String),
    #[error("token_sha256 must be 64 hex digits")]
    MalformedDigest,
    #[error("signature must be 128 hex digits")]
    MalformedSignature,
    #[error("signed by key {0}, which is not among the configured evidence keys")]
    UnknownKey(String),
    #[error(
        "the signature does not verify for this prefix, owner and origin ASN (evidence made for another prefix, owner or ASN, or altered)"
    )]
    BadSignature,
    #[error("public key `{0}` is not `ed25519:` followed by 64 hex digits of a valid key")]
    MalformedKey(String),
}

impl EvidenceClaim {
    /// The exact bytes signed: one `name=value` line each, in a fixed order.
    pub fn message(&self) -> Vec<u8> {
        let checks: Vec<&str> = self.checks.iter().map(|kind| check_name(*kind)).collect();
        format!(
            "{MESSAGE_HEADER}\nprefix={}\nowner={}\norigin_asn={}\nlongest_announced={}\ntoken_sha256={}\nchecks={}\nverified_at={}\n",
            self.prefix.trunc(),
            self.owner,
            self.origin_asn,
            self.longest_announced,
            self.token_sha256.to_ascii_lowercase(),
            checks.join(","),
            self.verified_at_unix,
        )
        .into_bytes()
    }

    /// Whether the checks prove ownership and intent: `roa` and one of `rdns`, `irr`.
    pub fn check_completeness(&self) -> Result<(), EvidenceError> {
        let has = |kind| self.checks.contains(&kind);
        if has(CheckKind::Roa) && (has(CheckKind::Rdns) || has(CheckKind::Irr)) {
            return Ok(());
        }
        let names: Vec<&str> = self.checks.iter().map(|kind| check_name(*kind)).collect();
        Err(EvidenceError::IncompleteChecks(format!(
            "[{}]",
            names.join(", ")
        )))
    }

    /// Signs the claim (its checks sorted first) with `key`.
    pub fn sign(mut self, key: &SigningKey) -> SignedEvidence {
        self.checks.sort_by_key(|kind| check_order(*kind));
        self.checks.dedup();
        let signature = key.sign(&self.message());
        SignedEvidence {
            key_id: key_id(&key.verifying_key()),
            signature: hex(&signature.to_bytes()),
            claim: self,
        }
    }
}

/// The name of a check as the topology writes it.
pub fn check_name(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::Rdns => "rdns",
        CheckKind::Irr => "irr",
        CheckKind::Roa => "roa",
    }
}

/// A check from its name in the topology.
pub fn parse_check(name: &str) -> Result<CheckKind, EvidenceError> {
    match name {
        "rdns" => Ok(CheckKind::Rdns),
        "irr" => Ok(CheckKind::Irr),
        "roa" => Ok(CheckKind::Roa),
        other => Err(EvidenceError::UnknownCheck(other.to_string())),
    }
}

fn check_order(kind: CheckKind) -> u8 {
    match kind {
        CheckKind::Rdns => 0,
        CheckKind::Irr => 1,
        CheckKind::Roa => 2,
    }
}

/// A key's short name: the first 8 bytes of the SHA-256 of its 32 bytes, hex.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex(&digest[..8])
}

/// A key's full fingerprint: the SHA-256 of its 32 bytes, hex in groups of four.
pub fn key_fingerprint(key: &VerifyingKey) -> String {
    let digest = hex(&Sha256::digest(key.as_bytes()));
    digest
        .as_bytes()
        .chunks(4)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// `ed25519:<hex>` of a public key.
pub fn key_text(key: &VerifyingKey) -> String {
    format!("{KEY_TEXT_PREFIX}{}", hex(key.as_bytes()))
}

/// A public key from `ed25519:<64 hex digits>`.
pub fn parse_key(text: &str) -> Result<VerifyingKey, EvidenceError> {
    let malformed = || EvidenceError::MalformedKey(text.to_string());
    let bytes = text
        .strip_prefix(KEY_TEXT_PREFIX)
        .and_then(unhex::<32>)
        .ok_or_else(malformed)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| malformed())
}

/// A signing key from its 32 secret bytes.
pub fn signing_key(secret: [u8; 32]) -> SigningKey {
    SigningKey::from_bytes(&secret)
}

/// The configured public keys evidence may be signed with.
#[derive(Debug, Clone, Default)]
pub struct EvidenceKeys {
    keys: Vec<(String, VerifyingKey)>,
}

/// Evidence as the topology writes it, before its text is checked.
#[derive(Debug, Clone, Copy)]
pub struct WrittenEvidence<'a> {
    pub longest_announced: u8,
    pub token_sha256: &'a str,
    pub checks: &'a [String],
    pub verified_at_unix: u64,
    pub key_id: &'a str,
    pub signature: &'a str,
}

/// One item ready for signature verification: its message, signature and key.
#[derive(Debug, Clone)]
pub struct Prepared {
    message: Vec<u8>,
    signature: Signature,
    key: VerifyingKey,
}

impl EvidenceKeys {
    /// The keys from their texts; the first malformed one is an error.
    pub fn parse<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Self, EvidenceError> {
        let keys = texts
            .into_iter()
            .map(|text| parse_key(text).map(|key| (key_id(&key), key)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EvidenceKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks everything about `written` for this prefix, owner and ASN except the signature
    /// itself, and answers what to verify.
    pub fn prepare(
        &self,
        prefix: IpNet,
        owner: &str,
        origin_asn: u32,
        written: WrittenEvidence<'_>,
    ) -> Result<Prepared, EvidenceError> {
        if unhex::<32>(written.token_sha256).is_none() {
            return Err(EvidenceError::MalformedDigest);
        }
        let checks = written
            .checks
            .iter()
            .map(|name| parse_check(name))
            .collect::<Result<Vec<_>, _>>()?;
        let claim = EvidenceClaim {
            prefix,
            owner: owner.to_string(),
            origin_asn,
            longest_announced: written.longest_announced,
            token_sha256: written.token_sha256.to_string(),
            checks,
            verified_at_unix: written.verified_at_unix,
        };
        claim.check_completeness()?;
        let signature = unhex::<64>(written.signature)
            .map(|bytes| Signature::from_bytes(&bytes))
            .ok_or(EvidenceError::MalformedSignature)?;
        let key = self
            .keys
            .iter()
            .find(|(id, _)| id.eq_ignore_ascii_case(written.key_id))
            .map(|(_, key)| *key)
            .ok_or_else(|| EvidenceError::UnknownKey(written.key_id.to_string()))?;
        Ok(Prepared {
            message: claim.message(),
            signature,
            key,
        })
    }

    /// Verifies one piece of evidence for this prefix, owner and origin ASN.
    pub fn verify(
        &self,
        prefix: IpNet,
        owner: &str,
        origin_asn: u32,
        written: WrittenEvidence<'_>,
    ) -> Result<(), EvidenceError> {
        verify_one(&self.prepare(prefix, owner, origin_asn, written)?)
    }
}

fn verify_one(item: &Prepared) -> Result<(), EvidenceError> {
    item.key
        .verify_strict(&item.message, &item.signature)
        .map_err(|_| EvidenceError::BadSignature)
}

/// Verifies many prepared items: one batch verification when all are good (about twice as
/// fast as one by one), and one by one to name the bad ones when the batch fails.
pub fn verify_all(items: &[Prepared]) -> Vec<Result<(), EvidenceError>> {
    if items.len() >= 2 {
        let messages: Vec<&[u8]> = items.iter().map(|item| item.message.as_slice()).collect();
        let signatures: Vec<Signature> = items.iter().map(|item| item.signature).collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|item| item.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return items.iter().map(|_| Ok(())).collect();
        }
    }
    items.iter().map(verify_one).collect()
}

impl SignedEvidence {
    /// The evidence as the topology writes it.
    pub fn written<'a>(&'a self, checks: &'a [String]) -> WrittenEvidence<'a> {
        WrittenEvidence {
            longest_announced: self.claim.longest_announced,
            token_sha256: &self.claim.token_sha256,
            checks,
            verified_at_unix: self.claim.verified_at_unix,
            key_id: &self.key_id,
            signature: &self.signature,
        }
    }

    /// The check names as the topology writes them.
    pub fn check_names(&self) -> Vec<String> {
        self.claim
            .checks
            .iter()
            .map(|kind| check_name(*kind).to_string())
            .collect()
    }

    /// The `[prefix.evidence]` sub-table for the prefix's entry in the topology, with the
    /// prefix table's own keys above it.
    pub fn topology_entry(&self, advertise: bool) -> String {
        let checks: Vec<String> = self
            .check_names()
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect();
        format!(
            "[[prefix]]\ncidr = \"{}\"\norigin_asn = {}\nowner = \"{}\"\nadvertise = {advertise}\n\n[prefix.evidence]\nlongest_announced = {}\ntoken_sha256 = \"{}\"\nchecks = [{}]\nverified_at = {}\nkey = \"{}\"\nsignature = \"{}\"\n",
            self.claim.prefix,
            self.claim.origin_asn,
            self.claim.owner,
            self.claim.longest_announced,
            self.claim.token_sha256,
            checks.join(", "),
            self.claim.verified_at_unix,
            self.key_id,
            self.signature,
        )
    }
}

#[cfg(test)]
mod tests;
