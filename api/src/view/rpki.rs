//! `GET /v1/rpki`: where this daemon's VRPs come from (its RTR caches, their sync state,
//! serial and age), the run-time policy for routes that turn invalid, and the RFC 6811 state of
//! every route the location's topology announces, with the VRPs that decided it.
//!
//! The route states are spelled as the RPKI crate spells them (`valid`, `invalid_origin`,
//! `invalid_length`, `not_found`); the API keeps its own enum so that it stays pure data.

use serde::{Deserialize, Serialize};

/// The RPKI document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpkiView {
    /// Whether the daemon's configuration has an `[rpki]` section. When `false`, every other
    /// field is empty and every route is `not_found`: a gate reading this must not pass.
    pub enabled: bool,
    /// What happens to an announced route that turns invalid at run time.
    pub invalid_policy: RpkiInvalidPolicy,
    /// Where the VRP set stands.
    pub sync: RpkiSyncState,
    /// The cache whose data the VRP set is (`HOST:PORT`); `null` before the first update.
    #[serde(deserialize_with = "super::required")]
    pub cache: Option<String>,
    /// Every configured cache, in preference order.
    pub caches: Vec<RpkiCacheView>,
    /// Session id and serial of the last End of Data; `null` before the first.
    #[serde(deserialize_with = "super::required")]
    pub session_id: Option<u16>,
    #[serde(deserialize_with = "super::required")]
    pub serial: Option<u32>,
    /// When the last update completed (unix milliseconds); `null` before the first.
    #[serde(deserialize_with = "super::required")]
    pub last_update_unix_ms: Option<u64>,
    /// Seconds since the last update; `null` before the first.
    #[serde(deserialize_with = "super::required")]
    pub last_update_age_seconds: Option<u64>,
    /// Timers of the last End of Data (seconds).
    pub refresh_seconds: u32,
    pub retry_seconds: u32,
    pub expire_seconds: u32,
    /// VRPs held, by family.
    pub vrps_ipv4: u64,
    pub vrps_ipv6: u64,
    /// Routes of this location's topology by state.
    pub counts: RpkiRouteCounts,
    /// Every route of this location's topology, sorted by prefix.
    pub routes: Vec<RpkiRouteView>,
    /// The daemon's wall clock (unix milliseconds) at which the view was taken.
    pub time_unix_ms: u64,
}

/// What the daemon does with an announced route that turns invalid because the VRPs changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpkiInvalidPolicy {
    /// Fail static (the default): keep announcing it and raise the alarm.
    Keep,
    /// Withdraw it until it is valid or not found again.
    Withdraw,
}

/// Where the daemon's VRP set stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpkiSyncState {
    /// No `[rpki]` section.
    Disabled,
    /// No cache has completed an update yet.
    Connecting,
    /// The set is the current data of a connected cache.
    InSync,
    /// The session to the cache that served the set is gone; the set is kept until expiry.
    Stale,
    /// No cache for longer than `expire`: the set was emptied, every route is not found.
    Expired,
}

/// One configured RTR cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpkiCacheView {
    /// `HOST:PORT`.
    pub address: String,
    /// Lower is preferred.
    pub preference: u8,
    /// Whether the VRP set currently comes from this cache.
    pub serving: bool,
    /// The last error talking to this cache; `null` when none.
    #[serde(deserialize_with = "super::required")]
    pub last_error: Option<String>,
}

/// Routes by RFC 6811 state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpkiRouteCounts {
    pub valid: u64,
    pub invalid: u64,
    pub not_found: u64,
}

/// The RFC 6811 state of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteRpkiState {
    Valid,
    /// Covered, but no covering VRP names the origin.
    InvalidOrigin,
    /// Covered by a VRP naming the origin, but longer than its max-length.
    InvalidLength,
    NotFound,
}

impl RouteRpkiState {
    pub fn is_invalid(self) -> bool {
        matches!(
            self,
            RouteRpkiState::InvalidOrigin | RouteRpkiState::InvalidLength
        )
    }
}

/// One route and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpkiRouteView {
    /// The route's prefix.
    pub prefix: ipnet::IpNet,
    /// The origin AS it is announced with.
    pub origin_asn: u32,
    /// The service it is bound to.
    pub service: String,
    /// Its state against the current VRP set.
    pub state: RouteRpkiState,
    /// Every VRP covering it.
    pub covering: Vec<RpkiVrpView>,
    /// Whether the peers are sent it (false when the `withdraw` policy holds it back, or when
    /// health or a drain does).
    pub announced: bool,
    /// Since when (unix milliseconds) the route has had this state. Without `[rpki]` routes are
    /// not judged one by one: every route is not found since the running generation was loaded
    /// or applied.
    pub since_unix_ms: u64,
}

/// One Validated ROA Payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RpkiVrpView {
    pub prefix: ipnet::IpNet,
    pub max_length: u8,
    pub asn: u32,
}
