//! The outcome of one ownership or intent check: which kind, its verdict, and the evidence
//! behind it (what was asked, of which server, what came back, when).
//!
//! Owns: [`CheckKind`], [`CheckStatus`], [`CheckEvidence`]. Must not touch: how a check is
//! performed (topoctl's onboarding checks) or how evidence is signed.

use serde::{Deserialize, Serialize};

/// Which check produced a piece of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// The validation token in a TXT record of the prefix's reverse DNS zone(s).
    Rdns,
    /// The validation token in an IRR `route:`/`route6:` object for the exact prefix.
    Irr,
    /// An RPKI ROA (as a VRP) authorising our origin ASN for the prefix and its routes.
    Roa,
}

/// A check's verdict. Only [`CheckStatus::Valid`] proves anything; every other status says
/// why not, in words an operator can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The token (or a covering ROA) was found where it must be.
    Valid,
    /// Nothing was published yet (NXDOMAIN, no TXT, no route object, no VRP).
    Missing,
    /// Something was published but it is not ours: another token, a covering-but-not-exact
    /// route object, a ROA whose max-length is too short, an unaccepted IRR source.
    Invalid,
    /// The route object or ROA names another origin ASN.
    MismatchAsn,
    /// The server could not be asked or gave no usable answer (timeout, SERVFAIL, refused,
    /// garbage). Says nothing about ownership: try again.
    Unreachable,
}

/// What one check asked, of whom, what it found and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckEvidence {
    pub kind: CheckKind,
    pub status: CheckStatus,
    /// What was asked: DNS names queried, the whois query sent, the VRP lookup.
    pub queried: Vec<String>,
    /// Which server(s) answered (address:port), or the VRP source.
    pub server: String,
    /// What came back that bears on the verdict (TXT strings, route object lines, VRPs).
    pub found: Vec<String>,
    /// When the check ran, seconds since the Unix epoch.
    pub checked_at_unix: u64,
    /// The verdict in one sentence, with what to do when it is not `valid`.
    pub detail: String,
}
