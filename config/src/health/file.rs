//! The TOML schema of `[service.health]` and `[[service.health.check]]`, as serde reads it:
//! unknown keys rejected, values kept `Spanned` so that the conversion (`health::parse`) can point
//! at them. The service table (`file::ServiceFile`) holds one [`HealthFile`].

use serde::Deserialize;
use toml::Spanned;

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
