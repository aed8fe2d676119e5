//! The topology files' TOML schema, as serde reads it: one struct per table, unknown keys
//! rejected, values kept `Spanned` so that later checks point at them; and the helpers that turn
//! those spans (and offsets inside a string value) into [`Span`]s. Shared by the full parser
//! (`parse`), its fast path (`fast`) and the health-check conversion (`health::parse`).

use serde::Deserialize;
use toml::Spanned;

use crate::model::{AnnounceMode, Lifecycle, LocationState};
use crate::source::Span;

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

/// `[service.health]`: every key optional except at least one `[[service.health.check]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthFile {
    pub(crate) interval_ms: Option<Spanned<u64>>,
    pub(crate) timeout_ms: Option<Spanned<u64>>,
    pub(crate) rise: Option<Spanned<u32>>,
    pub(crate) fall: Option<Spanned<u32>>,
    pub(crate) hold_down_ms: Option<Spanned<u64>>,
    pub(crate) max_hold_down_ms: Option<Spanned<u64>>,
    pub(crate) on_unhealthy: Option<Spanned<String>>,
    pub(crate) degrade: Option<Spanned<DegradeFile>>,
    #[serde(default)]
    pub(crate) check: Vec<Spanned<CheckFile>>,
}

/// `degrade = { as_path_prepend = 3, med = 1000, communities = ["13335:666"] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DegradeFile {
    pub(crate) as_path_prepend: Option<Spanned<u8>>,
    pub(crate) med: Option<u32>,
    #[serde(default)]
    pub(crate) communities: Vec<Spanned<String>>,
}

/// One `[[service.health.check]]`. Flat rather than a tagged enum so that every value keeps its
/// span and a key of the wrong kind gets its own error (serde's tagged enums lose both).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckFile {
    pub(crate) kind: Spanned<String>,
    pub(crate) url: Option<Spanned<String>>,
    pub(crate) expect_status: Option<Spanned<u16>>,
    pub(crate) address: Option<Spanned<String>>,
    pub(crate) server: Option<Spanned<String>>,
    pub(crate) name: Option<Spanned<String>>,
    pub(crate) record_type: Option<Spanned<String>>,
    pub(crate) expect: Option<Spanned<String>>,
    pub(crate) command: Option<Spanned<Vec<Spanned<String>>>>,
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
    pub(crate) irr_token: Option<String>,
    pub(crate) rdns_token: Option<String>,
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

/// Maps byte offsets inside a TOML string's decoded value back to the source. Exact when the
/// value appears verbatim after the opening quote (no escapes, no line continuations); otherwise
/// every offset conservatively maps to the opening quote.
pub(crate) struct StringPositions {
    pub(crate) span: Span,
    pub(crate) content_start: Option<usize>,
}

impl StringPositions {
    pub(crate) fn new(text: &str, span: Span, value: &str) -> StringPositions {
        let raw = text.get(span.start as usize..).unwrap_or("");
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let start = span.start as usize + quote;
        let content_start = (text.get(start..start + value.len()) == Some(value)).then_some(start);
        StringPositions {
            span,
            content_start,
        }
    }

    pub(crate) fn locate(&self, offset: usize, length: usize) -> Span {
        match self.content_start {
            Some(start) => Span::new(self.span.source, start + offset..start + offset + length),
            None => self.span,
        }
    }
}

pub(crate) fn span_of<T>(source: u32, spanned: &Spanned<T>) -> Span {
    Span::new(source, spanned.span())
}
