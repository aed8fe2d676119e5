//! The topology files' TOML schema, as serde reads it: one struct per table, unknown keys
//! rejected, values kept `Spanned` so that later checks point at them. Shared by the full parser
//! (`parse`) and its fast path (`fast`); the `[service.health]` tables' schema is the health
//! module's own (`health::file`).

use serde::Deserialize;
use toml::Spanned;

use crate::health::file::HealthFile;
use crate::model::{AnnounceMode, Lifecycle, LocationState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileModel {
    pub(crate) settings: Option<Spanned<SettingsFile>>,
    #[serde(default)]
    pub(crate) location: Vec<LocationFile>,
    #[serde(default)]
    pub(crate) service: Vec<ServiceFile>,
    #[serde(default)]
    pub(crate) prefix: Vec<PrefixFile>,
    #[serde(default)]
    pub(crate) binding: Vec<BindingFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsFile {
    pub(crate) ipv4_announce_lengths: Option<LengthLimitsFile>,
    pub(crate) ipv6_announce_lengths: Option<LengthLimitsFile>,
    pub(crate) blast_radius: Option<BlastRadiusFile>,
    pub(crate) onboarding: Option<Spanned<OnboardingFile>>,
}

/// `[settings.onboarding]`: who the operator is and the keys BYOIP evidence is signed with.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OnboardingFile {
    pub(crate) operator_owner: Spanned<String>,
    #[serde(default)]
    pub(crate) evidence_keys: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) revoked: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LengthLimitsFile {
    pub(crate) shortest: u8,
    pub(crate) longest: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BlastRadiusFile {
    pub(crate) max_withdrawn_pair_share: Option<Spanned<f64>>,
    pub(crate) max_affected_location_share: Option<Spanned<f64>>,
    pub(crate) small_change_routes: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LocationFile {
    pub(crate) name: Spanned<String>,
    pub(crate) region: Spanned<String>,
    pub(crate) metro: Spanned<String>,
    pub(crate) country: Spanned<String>,
    #[serde(default)]
    pub(crate) tags: Vec<Spanned<String>>,
    pub(crate) state: Spanned<LocationState>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceFile {
    pub(crate) name: Spanned<String>,
    pub(crate) lifecycle: Option<Spanned<Lifecycle>>,
    pub(crate) topology: Spanned<String>,
    #[serde(default)]
    pub(crate) announce_at_test_locations: bool,
    #[serde(default)]
    pub(crate) communities: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) large_communities: Vec<Spanned<String>>,
    pub(crate) med: Option<u32>,
    pub(crate) as_path_prepend: Option<Spanned<u8>>,
    #[serde(default)]
    pub(crate) local_addresses: Vec<Spanned<String>>,
    pub(crate) health: Option<Spanned<HealthFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrefixFile {
    pub(crate) cidr: Spanned<String>,
    pub(crate) origin_asn: Spanned<u32>,
    pub(crate) owner: String,
    pub(crate) advertise: bool,
    pub(crate) announce: Option<Spanned<AnnounceFile>>,
    pub(crate) roa: Option<Spanned<RoaFile>>,
    pub(crate) rpki: Option<crate::model::NotFoundPolicy>,
    pub(crate) irr_token: Option<String>,
    pub(crate) rdns_token: Option<String>,
    /// Boxed: few prefixes carry it, and unboxed it would be a third of every prefix's size.
    pub(crate) evidence: Option<Box<Spanned<EvidenceFile>>>,
}

/// `[prefix.evidence]`: the signed proof of a customer prefix's ownership and intent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EvidenceFile {
    pub(crate) longest_announced: u8,
    pub(crate) token_sha256: String,
    pub(crate) checks: Vec<String>,
    pub(crate) verified_at: u64,
    pub(crate) key: String,
    pub(crate) signature: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoaFile {
    pub(crate) asn: u32,
    pub(crate) max_length: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BindingFile {
    pub(crate) cidr: Spanned<String>,
    pub(crate) service: Spanned<String>,
}

/// `announce = "aggregate"` or `announce = { split = 24 }`; written by hand for clear errors.
pub(crate) struct AnnounceFile(pub(crate) AnnounceMode);

impl<'de> Deserialize<'de> for AnnounceFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AnnounceFile;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("\"aggregate\" or { split = LENGTH }")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<AnnounceFile, E> {
                if value == "aggregate" {
                    Ok(AnnounceFile(AnnounceMode::Aggregate))
                } else {
                    Err(E::custom(format!(
                        "unknown announce mode \"{value}\", expected \"aggregate\" or {{ split = LENGTH }}"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<AnnounceFile, A::Error> {
                let mut split = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "split" {
                        split = Some(map.next_value::<u8>()?);
                    } else {
                        return Err(serde::de::Error::custom(format!(
                            "unknown key `{key}` in announce, expected `split`"
                        )));
                    }
                }
                split
                    .map(|length| AnnounceFile(AnnounceMode::Split(length)))
                    .ok_or_else(|| {
                        serde::de::Error::custom("announce table needs `split = LENGTH`")
                    })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
