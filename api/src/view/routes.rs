//! `GET /v1/routes[?peer=]`: per peer, the routes it is sent with their path attributes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The routes document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutesView {
    /// The running generation.
    pub generation: u64,
    /// By peer name.
    pub peers: BTreeMap<String, PeerRoutesView>,
}

/// One peer's routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRoutesView {
    /// The families the peer carries (`ipv4`, `ipv6`).
    pub families: Vec<String>,
    /// The session is Established.
    pub established: bool,
    /// The generation whose routes have all been written to it.
    #[serde(deserialize_with = "super::required")]
    pub generation_synced: Option<u64>,
    /// The routes it is sent.
    pub routes: Vec<RouteView>,
}

/// One route as a peer is sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteView {
    /// The prefix.
    pub prefix: String,
    /// The service it belongs to.
    pub service: String,
    /// Announced with the service's degrade attributes.
    pub degraded: bool,
    /// AS_PATH segments as text, one per segment: an AS_SEQUENCE as its numbers separated by
    /// spaces (`64500 64501`), an AS_SET in braces (`{64500 64501}`).
    pub as_path: Vec<String>,
    /// The NEXT_HOP the peer is sent; `null` when none is configured and the session's own
    /// local address is used (also read as `null` from daemons that predate the field).
    #[serde(default)]
    pub next_hop: Option<String>,
    /// MULTI_EXIT_DISC.
    #[serde(deserialize_with = "super::required")]
    pub med: Option<u32>,
    /// Standard communities (`ASN:VALUE`).
    pub communities: Vec<String>,
    /// Large communities (`ASN:DATA1:DATA2`).
    pub large_communities: Vec<String>,
    /// Since when (unix seconds) the peer has been sent the route as it is: the later of its
    /// publication with these attributes and the session's establishment; `null` while the
    /// session is down (and from daemons that predate the field).
    #[serde(default)]
    pub announced_since: Option<u64>,
}
