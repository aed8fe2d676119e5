//! `GET /v1/visibility`: what the BMP station sees — the routers connected to it and the
//! findings raised now (hijacks, sub-prefix hijacks, routes the routers do not hold as we send
//! them, RPKI-invalid own routes, unexpected paths), each with the router, peer and path that
//! showed it and when it was first and last seen.

use serde::{Deserialize, Serialize};

/// The visibility document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisibilityView {
    /// Whether the daemon's configuration has a `[bmp]` section. When `false` every list is
    /// empty: a gate reading this must not pass.
    pub enabled: bool,
    /// Routers connected now.
    pub routers: Vec<BmpRouterView>,
    /// Findings raised now, sorted by kind, prefix, router and peer.
    pub findings: Vec<FindingView>,
    /// The routes this location announces that each router holds post-policy from us as we
    /// send them, per router: what the rollout gate `visibility` reads.
    pub held: Vec<RouterHoldsView>,
    /// The daemon's wall clock (unix milliseconds) at which the view was taken.
    pub time_unix_ms: u64,
    /// How old the view was when the daemon answered, by its own clock (milliseconds): a view
    /// that stopped being refreshed (a stalled station) grows old, and a gate must not pass on
    /// it. Absent only in a view not served by the control API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// The generation of this location's routes that `held` judges against (the station's
    /// expectation; `generation` in `GET /v1/status` once it has caught up). Absent from a
    /// daemon that does not say, and before the station's first evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The publication of that generation (it bumps when health or a drain changes what is
    /// announced within one generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes_version: Option<u64>,
    /// When the station first judged that publication (unix milliseconds, the daemon's
    /// clock): a route sent since may not have reached the routers' tables yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judged_since_unix_ms: Option<u64>,
    /// The station's settle time (`[bmp] settle_seconds`, in milliseconds): how long a route
    /// not held is given to arrive before it counts as not visible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
}

/// One connected router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BmpRouterView {
    /// Its sysName (RFC 7854 §4.4), or its address when it sent none.
    pub name: String,
    pub address: String,
    pub peers: u64,
    pub routes: u64,
    pub messages: u64,
}

/// What a finding says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKindView {
    ExactHijack,
    SubprefixHijack,
    NotVisible,
    RpkiInvalid,
    UnexpectedPath,
}

/// One raised finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingView {
    pub kind: FindingKindView,
    pub prefix: String,
    pub router: String,
    /// The router's peer whose table showed it: address and AS.
    pub peer_address: String,
    pub peer_asn: u32,
    /// `adj_rib_in_pre`, `adj_rib_in_post`, `adj_rib_out_pre`, `adj_rib_out_post`, `loc_rib`.
    pub rib: String,
    /// The AS path held (empty for a route not held).
    pub as_path: Vec<u32>,
    /// The origin held; `null` for a route not held or a path without a single origin.
    #[serde(deserialize_with = "super::required")]
    pub origin_asn: Option<u32>,
    pub expected_origin_asn: u32,
    pub detail: String,
    pub first_seen_unix_ms: u64,
    pub last_seen_unix_ms: u64,
}

/// Whether one router's table is complete enough to judge, and what it holds of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterHoldsView {
    pub router: String,
    /// The router has a session with us and has sent the End-of-RIB of its post-policy
    /// Adj-RIB-In for it: `held` and `missing` are its word, not a partial picture.
    pub synchronised: bool,
    /// Routes this location announces that the router holds post-policy as we send them.
    pub held: Vec<String>,
    /// Routes this location announces that it does not (filtered, or other attributes).
    pub missing: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_view_without_the_judged_generation_still_reads() {
        let older = serde_json::json!({
            "enabled": true, "routers": [], "findings": [], "held": [],
            "time_unix_ms": 5_000u64, "age_ms": 100u64,
        });
        let view: VisibilityView = serde_json::from_value(older).unwrap();
        assert_eq!(
            (
                view.generation,
                view.routes_version,
                view.judged_since_unix_ms,
                view.settle_ms
            ),
            (None, None, None, None)
        );
        let newer = VisibilityView {
            generation: Some(4),
            routes_version: Some(9),
            judged_since_unix_ms: Some(4_000),
            settle_ms: Some(60_000),
            ..view
        };
        let json = serde_json::to_value(&newer).unwrap();
        assert_eq!(json["generation"], 4);
        assert_eq!(json["judged_since_unix_ms"], 4_000);
        assert_eq!(
            serde_json::from_value::<VisibilityView>(json).unwrap(),
            newer
        );
    }

    #[test]
    fn a_finding_without_its_origin_field_is_an_error_not_a_default() {
        let finding = FindingView {
            kind: FindingKindView::NotVisible,
            prefix: "198.51.102.0/24".into(),
            router: "edge1".into(),
            peer_address: "192.0.2.1".into(),
            peer_asn: 13_335,
            rib: "adj_rib_in_post".into(),
            as_path: Vec::new(),
            origin_asn: None,
            expected_origin_asn: 13_335,
            detail: "not held post-policy (filtered or rejected)".into(),
            first_seen_unix_ms: 1,
            last_seen_unix_ms: 2,
        };
        let mut json = serde_json::to_value(&finding).unwrap();
        assert_eq!(json["kind"], "not_visible");
        let back: FindingView = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, finding);
        json.as_object_mut().unwrap().remove("origin_asn");
        let error = serde_json::from_value::<FindingView>(json).unwrap_err();
        assert!(error.to_string().contains("origin_asn"), "{error}");
    }
}
