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
    ipv4: PrefixMap<Ipv4Net, Vec<(u32, u8)>>,
    ipv6: PrefixMap<Ipv6Net, Vec<(u32, u8)>>,
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
        if !list.contains(&entry) {
            list.push(entry);
            self.count += 1;
        }
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
            IpNet::V4(prefix) => self
                .ipv4
                .cover(prefix)
                .flat_map(|(network, list)| {
                    list.iter().map(move |(asn, max_length)| Vrp {
                        prefix: IpNet::V4(network),
                        max_length: *max_length,
                        asn: *asn,
                    })
                })
                .collect(),
            IpNet::V6(prefix) => self
                .ipv6
                .cover(prefix)
                .flat_map(|(network, list)| {
                    list.iter().map(move |(asn, max_length)| Vrp {
                        prefix: IpNet::V6(network),
                        max_length: *max_length,
                        asn: *asn,
                    })
                })
                .collect(),
        };
        covering.sort_unstable();
        covering
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vrps(entries: &[(&str, u8, u32)]) -> VrpSet {
        let mut set = VrpSet::new();
        for (prefix, max_length, asn) in entries {
            set.insert(Vrp {
                prefix: prefix.parse().unwrap(),
                max_length: *max_length,
                asn: *asn,
            });
        }
        set
    }

    fn state(set: &VrpSet, prefix: &str, origin: u32) -> RpkiState {
        set.validate(&prefix.parse().unwrap(), origin).state
    }

    #[test]
    fn rfc6811_states() {
        let set = vrps(&[
            ("1.1.1.0/24", 24, 13335),
            ("198.51.100.0/22", 23, 64500),
            ("2606:4700::/32", 48, 13335),
            ("203.0.113.0/24", 24, 0),
        ]);
        assert_eq!(state(&set, "1.1.1.0/24", 13335), RpkiState::Valid);
        assert_eq!(state(&set, "1.1.1.0/24", 4755), RpkiState::InvalidOrigin);
        assert_eq!(state(&set, "1.1.1.0/25", 13335), RpkiState::InvalidLength);
        assert_eq!(state(&set, "198.51.100.0/23", 64500), RpkiState::Valid);
        assert_eq!(
            state(&set, "198.51.100.0/24", 64500),
            RpkiState::InvalidLength
        );
        assert_eq!(state(&set, "2606:4700:4700::/48", 13335), RpkiState::Valid);
        assert_eq!(state(&set, "8.8.8.0/24", 15169), RpkiState::NotFound);
        // An AS0 VRP covers and never matches (RFC 6483 §4).
        assert_eq!(state(&set, "203.0.113.0/24", 0), RpkiState::InvalidOrigin);
        assert_eq!(
            state(&set, "203.0.113.0/24", 64500),
            RpkiState::InvalidOrigin
        );
        // A second VRP for the same prefix authorises another origin.
        let mut two = set.clone();
        two.insert(Vrp {
            prefix: "1.1.1.0/24".parse().unwrap(),
            max_length: 25,
            asn: 4755,
        });
        assert_eq!(state(&two, "1.1.1.0/25", 4755), RpkiState::Valid);
        assert_eq!(two.len(), 5);
        assert_eq!(
            two.validate(&"1.1.1.0/25".parse().unwrap(), 1)
                .covering
                .len(),
            2
        );
    }

    #[test]
    fn reads_rpki_client_json_and_says_where_it_is_wrong() {
        let text = r#"{"metadata":{"buildtime":"2026-12-04T00:00:00Z"},"roas":[
            {"prefix":"1.1.1.0/24","maxLength":24,"asn":13335,"ta":"apnic","expires":1},
            {"prefix":"2606:4700::/32","maxLength":48,"asn":"AS13335","ta":"arin","expires":1}]}"#;
        let set = VrpSet::from_rpki_client_json("vrps.json", text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(state(&set, "2606:4700:4700::/48", 13335), RpkiState::Valid);
        let error = VrpSet::from_rpki_client_json("vrps.json", "{\"roas\": [}").unwrap_err();
        assert!(error.to_string().starts_with("vrps.json:1:"), "{error}");
        let error = VrpSet::from_rpki_client_json(
            "vrps.json",
            r#"{"roas":[{"prefix":"1.1.1.0/24","maxLength":16,"asn":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "vrps.json: roas[0] (1.1.1.0/24): maxLength 16 is outside /24../32"
        );
        let error = VrpSet::from_rpki_client_json(
            "vrps.json",
            r#"{"roas":[{"prefix":"1.1.1.1/24","maxLength":24,"asn":1}]}"#,
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("did you mean 1.1.1.0/24"),
            "{error}"
        );
    }
}
