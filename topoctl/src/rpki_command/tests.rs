//! The text form of `/v1/rpki`: what an operator reads must say the sync state, where the VRPs
//! come from, and which routes need attention with their covering VRPs.

use topologyd_api::{
    RouteRpkiState, RpkiCacheView, RpkiInvalidPolicy, RpkiRouteCounts, RpkiRouteView,
    RpkiSyncState, RpkiView, RpkiVrpView,
};

use super::{RouteSelection, render};

fn route(
    prefix: &str,
    origin: u32,
    state: RouteRpkiState,
    covering: &[(&str, u8, u32)],
) -> RpkiRouteView {
    RpkiRouteView {
        prefix: prefix.parse().expect("prefix"),
        origin_asn: origin,
        service: "resolver".to_string(),
        state,
        covering: covering
            .iter()
            .map(|(prefix, max_length, asn)| RpkiVrpView {
                prefix: prefix.parse().expect("prefix"),
                max_length: *max_length,
                asn: *asn,
            })
            .collect(),
        announced: true,
        since_unix_ms: 1_700_000_000_000,
    }
}

fn view() -> RpkiView {
    RpkiView {
        enabled: true,
        invalid_policy: RpkiInvalidPolicy::Keep,
        sync: RpkiSyncState::InSync,
        cache: Some("127.0.0.1:8282".to_string()),
        caches: vec![
            RpkiCacheView {
                address: "127.0.0.1:8282".to_string(),
                preference: 0,
                serving: true,
                last_error: None,
            },
            RpkiCacheView {
                address: "127.0.0.1:8283".to_string(),
                preference: 1,
                serving: false,
                last_error: Some("connection refused\u{1b}[2J".to_string()),
            },
        ],
        session_id: Some(7),
        serial: Some(42),
        last_update_unix_ms: Some(1_700_000_000_000),
        last_update_age_seconds: Some(125),
        refresh_seconds: 3600,
        retry_seconds: 600,
        expire_seconds: 7200,
        vrps_ipv4: 3,
        vrps_ipv6: 1,
        counts: RpkiRouteCounts {
            valid: 1,
            invalid: 1,
            not_found: 1,
        },
        routes: vec![
            route(
                "192.0.2.0/24",
                64500,
                RouteRpkiState::Valid,
                &[("192.0.2.0/22", 24, 64500)],
            ),
            route(
                "198.51.100.0/25",
                64500,
                RouteRpkiState::InvalidLength,
                &[("198.51.100.0/22", 24, 64500)],
            ),
            route("203.0.113.0/24", 64500, RouteRpkiState::NotFound, &[]),
        ],
        time_unix_ms: 1_700_000_125_000,
    }
}

#[test]
fn summary_names_sync_cache_serial_age_counts_and_policy() {
    let text = render(&view(), RouteSelection::NeedingAttention);
    for expected in [
        "RPKI: in sync — 127.0.0.1:8282",
        "session 7, serial 42",
        "last update 2 min 5 s ago (refresh 3600 s, retry 600 s, expire 7200 s)",
        "VRPs: 4 (3 IPv4, 1 IPv6)",
        "cache 127.0.0.1:8282 preference 0, serving",
        "invalid policy: keep",
        "routes: 1 valid, 1 invalid, 1 not found",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // A cache's error is the daemon's text: escaped, never sent to the terminal raw.
    assert!(
        text.contains("last error: connection refused\\u{1b}[2J"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn table_lists_invalid_and_not_found_with_covering_vrps_and_all_on_request() {
    let text = render(&view(), RouteSelection::NeedingAttention);
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("PREFIX"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[1].starts_with("198.51.100.0/25"), "{text}");
    assert!(rows[1].contains("invalid (max-length)"), "{text}");
    assert!(rows[1].ends_with("198.51.100.0/22-24 AS64500"), "{text}");
    assert!(rows[2].starts_with("203.0.113.0/24"), "{text}");
    assert!(
        rows[2].contains("not found") && rows[2].ends_with('-'),
        "{text}"
    );
    // Columns line up: every row's STATE starts where the header's does.
    let column = rows[0].find("STATE").expect("header");
    assert!(rows[1][column..].starts_with("invalid"), "{text}");

    let all = render(&view(), RouteSelection::All);
    assert!(
        all.lines().any(|line| line.starts_with("192.0.2.0/24")),
        "{all}"
    );
}

#[test]
fn disabled_and_connecting_say_so() {
    let mut disabled = view();
    disabled.enabled = false;
    disabled.sync = RpkiSyncState::Disabled;
    assert!(render(&disabled, RouteSelection::All).starts_with("RPKI: disabled"));

    let mut connecting = view();
    connecting.sync = RpkiSyncState::Connecting;
    connecting.cache = None;
    connecting.session_id = None;
    connecting.serial = None;
    connecting.last_update_age_seconds = None;
    let text = render(&connecting, RouteSelection::NeedingAttention);
    assert!(text.contains("RPKI: connecting"), "{text}");
    assert!(text.contains("no cache yet"), "{text}");
    assert!(text.contains("no End of Data received yet"), "{text}");
    assert!(text.contains("last update: never"), "{text}");
}

#[test]
fn all_valid_routes_say_nothing_needs_attention() {
    let mut all_valid = view();
    all_valid.routes.truncate(1);
    let text = render(&all_valid, RouteSelection::NeedingAttention);
    assert!(text.contains("no invalid or not-found route"), "{text}");
    assert!(!text.contains("PREFIX"), "{text}");
}
