//! The data types of a service's health checks, with every default a documented constant: what
//! to probe ([`ProbeSpec`]), how often and how many rounds decide ([`HealthSpec`]), what an
//! unhealthy service does at a location ([`UnhealthyAction`]), and which `{name}` placeholders a
//! probe target may hold.

use serde::{Deserialize, Serialize};

use crate::community::Community;

/// Milliseconds between two probe rounds of a service.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 2_000;
/// How long one probe may take before it counts as a failure that could not run (a timeout).
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 1_000;
/// Consecutive passing rounds before an unhealthy service is healthy again.
pub const DEFAULT_HEALTH_RISE: u32 = 3;
/// Consecutive failing rounds before a healthy service is unhealthy.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// After a service turns unhealthy, it stays unhealthy at least this long (hold-down).
pub const DEFAULT_HOLD_DOWN_MS: u64 = 10_000;
/// Each further turn to unhealthy within [`FLAP_WINDOW_FACTOR`] × the current hold-down of the
/// last recovery doubles the hold-down, up to this ceiling.
pub const DEFAULT_MAX_HOLD_DOWN_MS: u64 = 300_000;
/// A flap is a turn to unhealthy within this multiple of the current hold-down after recovery.
pub const FLAP_WINDOW_FACTOR: u32 = 4;
/// Expected HTTP status when none is written.
pub const DEFAULT_HTTP_EXPECT_STATUS: u16 = 200;

/// What a location does with a service that is unhealthy there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum UnhealthyAction {
    /// Stop announcing the service's routes from this location.
    Withdraw,
    /// Keep announcing them with a worse path, so this location stays a last resort.
    Degrade(DegradeAttributes),
}

/// How a degraded route is made less preferred; applied on top of the service's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DegradeAttributes {
    /// Extra copies of the origin ASN (added to the service's own prepend; total capped at 10).
    pub as_path_prepend: u8,
    /// Replaces the service's MED.
    pub med: Option<u32>,
    /// Added to the service's communities (e.g. a "last resort" community the edge matches on).
    pub communities: Vec<Community>,
}

/// One probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ProbeSpec {
    /// `GET url` over HTTP/1.1 (plain HTTP); passes on `expect_status`.
    Http { url: String, expect_status: u16 },
    /// A TCP connect to `address` (`host:port`, `[v6]:port`); passes when it is accepted.
    Tcp { address: String },
    /// A DNS query over UDP to `server` (`host:port`); passes when the answer section holds
    /// `expect` (an address), or, without `expect`, when the response code is NOERROR with at
    /// least one answer.
    Dns {
        server: String,
        name: String,
        /// `A` or `AAAA`.
        record_type: DnsRecordType,
        expect: Option<String>,
    },
    /// Runs `command` (argv, no shell); passes on exit status 0.
    Exec { command: Vec<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DnsRecordType {
    A,
    #[serde(rename = "AAAA")]
    Aaaa,
}

/// A service's health checks: a round runs every check; the round passes when all pass.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthSpec {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    pub hold_down_ms: u64,
    pub max_hold_down_ms: u64,
    pub on_unhealthy: UnhealthyAction,
    pub checks: Vec<ProbeSpec>,
}

/// The shortest interval between two probe rounds (ten rounds a second at most).
pub const MIN_HEALTH_INTERVAL_MS: u64 = 100;
/// A degraded route carries at most this many prepends in all (the service's plus `degrade`'s).
pub const MAX_TOTAL_AS_PATH_PREPEND: u8 = 10;
/// Placeholders every location fills from the topology; `[health.vars]` may not redefine them.
pub const BUILTIN_PLACEHOLDERS: [&str; 4] = ["location", "region", "metro", "country"];

/// Whether `name` may be a `{name}` placeholder (and so a `[health.vars]` key): one or more of
/// `a-z`, `0-9` and `_`.
pub fn is_placeholder_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}
