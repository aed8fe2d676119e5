//! `GET /v1/status`: the running generation, readiness, route counts, the health summary and
//! one [`PeerStatus`] per peer, and the fleet lock's lease.

use serde::{Deserialize, Serialize};

/// The status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// This daemon's location.
    pub location: String,
    /// The running generation.
    pub generation: u64,
    /// Its content hash.
    pub hash: String,
    /// When it was applied (unix seconds).
    pub applied_at: u64,
    /// Who applied it.
    pub applied_by: String,
    /// The readiness verdict (`/ready`).
    pub ready: bool,
    /// Why, in one line.
    pub ready_reason: String,
    /// Routes the peers are sent (after health and drains).
    pub routes: RouteCounts,
    /// Routes the topology gives this location.
    pub routes_topology: RouteCounts,
    /// The publication counter of what the peers are sent.
    pub published_version: u64,
    /// Routes the runtime guard refused since start.
    pub runtime_guard_refusals: u64,
    /// Health and drains at a glance.
    pub health: StatusHealth,
    /// Every configured peer's session and counters.
    pub peers: Vec<PeerStatus>,
    /// The fleet lock lease this daemon holds, if a live one. Written only when held, and read
    /// as `None` when absent, so answers of daemons that predate the lock still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<crate::lease::LeaseView>,
    /// The daemon's wall clock (unix milliseconds) the snapshot is valid at: every apply or
    /// rollback with a deadline before it that could ever commit is reflected in it. 0 from
    /// daemons that predate deadlines (and not written when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_unix_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// Routes by family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteCounts {
    /// IPv4 unicast routes.
    pub ipv4: u64,
    /// IPv6 unicast routes.
    pub ipv6: u64,
}

/// The status document's health summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusHealth {
    /// Fail static is engaged (verdicts frozen).
    pub fail_static: bool,
    /// The whole location is drained.
    pub location_drained: bool,
    /// Services whose verdict is unhealthy.
    pub unhealthy: Vec<String>,
    /// Services drained here.
    pub drained: Vec<String>,
    /// Services withdrawn here.
    pub withdrawn: Vec<String>,
    /// Services announced degraded here.
    pub degraded: Vec<String>,
}

/// A snapshot of one peer, published after every change by its task; read by the engine, the
/// metrics and `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The configured name.
    pub name: String,
    /// The peer's address.
    pub address: String,
    /// The session state (`Established`, `Active`, …).
    pub state: String,
    /// The session is Established.
    pub established: bool,
    /// Unix seconds when the session last became Established.
    #[serde(deserialize_with = "super::required")]
    pub established_since: Option<u64>,
    /// The generation whose routes have all been written to the socket (End-of-RIB included).
    #[serde(deserialize_with = "super::required")]
    pub generation_synced: Option<u64>,
    /// The generation the task reconciled its Adj-RIB-Out to.
    pub generation_desired: u64,
    /// The publication whose routes have all been written.
    #[serde(deserialize_with = "super::required")]
    pub version_synced: Option<u64>,
    /// IPv4 routes the peer should have.
    pub routes_desired_ipv4: u64,
    /// IPv6 routes the peer should have.
    pub routes_desired_ipv6: u64,
    /// UPDATEs written to the socket (what is only queued is not counted).
    pub updates_sent: u64,
    /// Prefixes announced in them.
    pub prefixes_announced_sent: u64,
    /// Prefixes withdrawn in them.
    pub prefixes_withdrawn_sent: u64,
    /// UPDATEs received.
    pub updates_received: u64,
    /// IPv4 prefixes received.
    pub prefixes_received_ipv4: u64,
    /// IPv6 prefixes received.
    pub prefixes_received_ipv6: u64,
    /// Withdrawals received.
    pub withdrawals_received: u64,
    /// Routes of the generation, in a family the peer carries, that cannot be encoded for it
    /// (never sent): such a peer does not hold the generation.
    pub routes_unencodable: u64,
    /// The first of them and why; kept while the session is up (unlike `last_error`).
    #[serde(deserialize_with = "super::required")]
    pub encode_error: Option<String>,
    /// The last session error.
    #[serde(deserialize_with = "super::required")]
    pub last_error: Option<String>,
}
