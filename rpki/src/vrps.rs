//! Route origin validation (RFC 6811) against a set of Validated ROA Payloads (VRPs), and the
//! rpki-client JSON file that carries them. Pure: the caller reads the file or runs the RTR
//! session; this module only holds the set and judges routes.
//!
//! A VRP *covers* a route when its prefix contains the route's; it *matches* when it covers it,
//! the route is no longer than the VRP's max-length, and the route's origin is the VRP's ASN
//! (never AS0, RFC 6483 §4). A route is **valid** when a VRP matches it, **invalid** when VRPs
//! cover it but none matches, and **not found** when none covers it.

use std::fmt;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use serde::{Deserialize, Serialize};

mod affected;
mod entries;
mod index;

use entries::Entries;

pub use affected::RouteIndex;
pub use index::VrpIndex;

/// One Validated ROA Payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Vrp {
    pub prefix: IpNet,
    pub max_length: u8,
    pub asn: u32,
}

impl fmt::Display for Vrp {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} max-length {} AS{}",
            self.prefix, self.max_length, self.asn
        )
    }
}

/// The RFC 6811 state of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpkiState {
    Valid,
    /// Covered, but no covering VRP names the origin.
    InvalidOrigin,
    /// Covered by a VRP naming the origin, but the route is longer than its max-length.
    InvalidLength,
    NotFound,
}

impl RpkiState {
    pub fn is_invalid(self) -> bool {
        matches!(self, RpkiState::InvalidOrigin | RpkiState::InvalidLength)
    }
}

impl fmt::Display for RpkiState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            RpkiState::Valid => "valid",
            RpkiState::InvalidOrigin => "invalid (no VRP authorises the origin)",
            RpkiState::InvalidLength => "invalid (longer than the max-length of its VRPs)",
            RpkiState::NotFound => "not found",
        })
    }
}

/// A route's state and the VRPs that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    pub state: RpkiState,
    /// Every VRP covering the route, sorted.
    pub covering: Vec<Vrp>,
}

/// A VRP file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VrpFileError {
    #[error("{file}:{line}:{column}: not rpki-client JSON: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: roas[{index}] ({prefix}): {message}")]
    Entry {
        file: String,
        index: usize,
        prefix: String,
        message: String,
    },
}

/// VRPs held in one prefix trie per family; each prefix keeps its (ASN, max-length) pairs.
#[derive(Debug, Clone, Default)]
pub struct VrpSet {
    ipv4: PrefixMap<Ipv4Net, Entries>,
    ipv6: PrefixMap<Ipv6Net, Entries>,
    count: usize,
}

#[derive(Deserialize)]
struct RpkiClientFile {
    roas: Vec<RpkiClientRoa>,
}

#[derive(Deserialize)]
struct RpkiClientRoa {
    prefix: String,
    #[serde(rename = "maxLength")]
    max_length: u8,
    asn: AsnValue,
}

/// rpki-client writes the ASN as a number; other tools write `"AS13335"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum AsnValue {
    Number(u32),
    Text(String),
}

impl VrpSet {
    pub fn new() -> VrpSet {
        VrpSet::default()
    }

    /// Adds a VRP (a duplicate is kept once).
    pub fn insert(&mut self, vrp: Vrp) {
        let entry = (vrp.asn, vrp.max_length);
        let list = match vrp.prefix.trunc() {
            IpNet::V4(prefix) => self.ipv4.entry(prefix).or_default(),
            IpNet::V6(prefix) => self.ipv6.entry(prefix).or_default(),
        };
        if list.insert(entry) {
            self.count += 1;
        }
    }

    /// Removes a VRP; false when the set did not hold it. An emptied prefix leaves its trie.
    pub fn remove(&mut self, vrp: &Vrp) -> bool {
        let entry = (vrp.asn, vrp.max_length);
        let removed = match vrp.prefix.trunc() {
            IpNet::V4(prefix) => remove_from(&mut self.ipv4, &prefix, entry),
            IpNet::V6(prefix) => remove_from(&mut self.ipv6, &prefix, entry),
        };
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Every VRP the set holds, IPv4 first, in trie order.
    pub fn iter(&self) -> impl Iterator<Item = Vrp> + '_ {
        let ipv4 = self.ipv4.iter().flat_map(|(prefix, list)| {
            list.iter().map(move |(asn, max_length)| Vrp {
                prefix: IpNet::V4(prefix),
                max_length: *max_length,
                asn: *asn,
            })
        });
        let ipv6 = self.ipv6.iter().flat_map(|(prefix, list)| {
            list.iter().map(move |(asn, max_length)| Vrp {
                prefix: IpNet::V6(prefix),
                max_length: *max_length,
                asn: *asn,
            })
        });
        ipv4.chain(ipv6)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Parses an rpki-client JSON export (`{"metadata": …, "roas": [{"prefix", "maxLength",
    /// "asn", …}]}`); `file` names it in errors. Every entry must be usable: a VRP set with a
    /// silently dropped entry would judge routes invalid that are not.
    pub fn from_rpki_client_json(file: &str, text: &str) -> Result<VrpSet, VrpFileError> {
        let parsed: RpkiClientFile =
            serde_json::from_str(text).map_err(|error| VrpFileError::Json {
                file: file.to_string(),
                line: error.line(),
                column: error.column(),
                message: error.to_string(),
            })?;
        let mut set = VrpSet::new();
        for (index, roa) in parsed.roas.iter().enumerate() {
            let entry_error = |message: String| VrpFileError::Entry {
                file: file.to_string(),
                index,
                prefix: roa.prefix.escape_debug().to_string(),
                message,
            };
            let prefix: IpNet = roa
                .prefix
                .parse()
                .map_err(|_| entry_error("not a prefix".to_string()))?;
            if prefix.trunc() != prefix {
                return Err(entry_error(format!(
                    "host bits set (did you mean {}?)",
                    prefix.trunc()
                )));
            }
            if roa.max_length < prefix.prefix_len() || roa.max_length > prefix.max_prefix_len() {
                return Err(entry_error(format!(
                    "maxLength {} is outside /{}../{}",
                    roa.max_length,
                    prefix.prefix_len(),
                    prefix.max_prefix_len()
                )));
            }
            let asn = match &roa.asn {
                AsnValue::Number(asn) => *asn,
                AsnValue::Text(text) => text
                    .strip_prefix("AS")
                    .unwrap_or(text)
                    .parse()
                    .map_err(|_| entry_error(format!("asn {:?} is not an AS number", text)))?,
            };
            set.insert(Vrp {
                prefix,
                max_length: roa.max_length,
                asn,
            });
        }
        Ok(set)
    }

    /// Every VRP covering `prefix`, sorted.
    pub fn covering(&self, prefix: &IpNet) -> Vec<Vrp> {
        let mut covering: Vec<Vrp> = match prefix {
            IpNet::V4(prefix) => covering_in(&self.ipv4, prefix),
            IpNet::V6(prefix) => covering_in(&self.ipv6, prefix),
        };
        covering.sort_unstable();
        covering
    }

    /// The RFC 6811 state alone, without listing the covering VRPs (no allocation): the hot
    /// path for judging many routes. Always equal to `validate(prefix, origin).state`.
    pub fn state(&self, prefix: &IpNet, origin: u32) -> RpkiState {
        let length = prefix.prefix_len();
        match prefix {
            IpNet::V4(prefix) => state_in(&self.ipv4, prefix, length, origin),
            IpNet::V6(prefix) => state_in(&self.ipv6, prefix, length, origin),
        }
    }

    /// A frozen copy laid out for judging many routes fast ([`VrpIndex`]).
    pub fn index(&self) -> VrpIndex {
        VrpIndex::new(self)
    }

    /// RFC 6811 origin validation of `prefix` originated by `origin`.
    pub fn validate(&self, prefix: &IpNet, origin: u32) -> Validation {
        let covering = self.covering(prefix);
        let state = if covering.is_empty() {
            RpkiState::NotFound
        } else if covering
            .iter()
            .any(|vrp| vrp.asn == origin && origin != 0 && prefix.prefix_len() <= vrp.max_length)
        {
            RpkiState::Valid
        } else if covering.iter().any(|vrp| vrp.asn == origin && origin != 0) {
            RpkiState::InvalidLength
        } else {
            RpkiState::InvalidOrigin
        };
        Validation { state, covering }
    }
}

impl FromIterator<Vrp> for VrpSet {
    /// Sorts the VRPs first: inserting in address order keeps the trie's upper nodes in cache
    /// (how the RTR client builds the set of a reset).
    fn from_iter<I: IntoIterator<Item = Vrp>>(vrps: I) -> VrpSet {
        let mut vrps: Vec<Vrp> = vrps
            .into_iter()
            .map(|vrp| Vrp {
                prefix: vrp.prefix.trunc(),
                ..vrp
            })
            .collect();
        vrps.sort_unstable();
        let mut set = VrpSet::new();
        for vrp in vrps {
            set.insert(vrp);
        }
        set
    }
}

/// [`VrpSet::state`] in one family's trie.
fn state_in<P: prefix_trie::Prefix>(
    trie: &PrefixMap<P, Entries>,
    prefix: &P,
    length: u8,
    origin: u32,
) -> RpkiState {
    let mut covered = false;
    let mut origin_authorised = false;
    for (_, list) in trie.cover(prefix) {
        for (asn, max_length) in list.iter() {
            covered = true;
            if origin != 0 && *asn == origin {
                if length <= *max_length {
                    return RpkiState::Valid;
                }
                origin_authorised = true;
            }
        }
    }
    if !covered {
        RpkiState::NotFound
    } else if origin_authorised {
        RpkiState::InvalidLength
    } else {
        RpkiState::InvalidOrigin
    }
}

/// Removes `entry` from `prefix`'s list in one family's trie, and the list when it empties.
fn remove_from<P: prefix_trie::Prefix>(
    trie: &mut PrefixMap<P, Entries>,
    prefix: &P,
    entry: (u32, u8),
) -> bool {
    let Some(list) = trie.get_mut(prefix) else {
        return false;
    };
    if !list.remove(entry) {
        return false;
    }
    if list.is_empty() {
        trie.remove(prefix);
    }
    true
}

/// The VRPs one family's trie holds for `prefix` and every prefix containing it.
fn covering_in<P>(trie: &PrefixMap<P, Entries>, prefix: &P) -> Vec<Vrp>
where
    P: prefix_trie::Prefix,
    IpNet: From<P>,
{
    trie.cover(prefix)
        .flat_map(|(network, list)| {
            let network = IpNet::from(network);
            list.iter().map(move |(asn, max_length)| Vrp {
                prefix: network,
                max_length: *max_length,
                asn: *asn,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
