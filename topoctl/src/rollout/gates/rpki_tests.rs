//! The `rpki` gate on typed `/v1/rpki` views: it passes exactly when the daemon validates, its
//! VRP set is in sync with a named cache, and no route is invalid — over generated views, so
//! that no combination of missing data slips through as a pass.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use topologyd_api::{
    RouteRpkiState, RpkiCacheView, RpkiInvalidPolicy, RpkiRouteCounts, RpkiRouteView,
    RpkiSyncState, RpkiView, RpkiVrpView,
};

use super::*;

fn in_sync_view(routes: Vec<RpkiRouteView>) -> RpkiView {
    let count = |wanted: fn(RouteRpkiState) -> bool| {
        routes.iter().filter(|route| wanted(route.state)).count() as u64
    };
    RpkiView {
        enabled: true,
        invalid_policy: RpkiInvalidPolicy::Keep,
        sync: RpkiSyncState::InSync,
        cache: Some("127.0.0.1:8282".into()),
        caches: vec![RpkiCacheView {
            address: "127.0.0.1:8282".into(),
            preference: 0,
            serving: true,
            last_error: None,
        }],
        session_id: Some(1),
        serial: Some(9),
        last_update_unix_ms: Some(1_000),
        last_update_age_seconds: Some(3),
        refresh_seconds: 3600,
        retry_seconds: 600,
        expire_seconds: 7200,
        vrps_ipv4: 2,
        vrps_ipv6: 0,
        counts: RpkiRouteCounts {
            valid: count(|state| state == RouteRpkiState::Valid),
            invalid: count(RouteRpkiState::is_invalid),
            not_found: count(|state| state == RouteRpkiState::NotFound),
        },
        routes,
        time_unix_ms: 4_000,
    }
}

fn route(prefix: &str, state: RouteRpkiState) -> RpkiRouteView {
    RpkiRouteView {
        prefix: prefix.parse().unwrap(),
        origin_asn: 64500,
        service: "resolver".into(),
        state,
        covering: vec![RpkiVrpView {
            prefix: "192.0.2.0/22".parse().unwrap(),
            max_length: 24,
            asn: 64500,
        }],
        announced: true,
        since_unix_ms: 0,
    }
}

#[test]
fn in_sync_without_invalid_routes_passes() {
    let view = in_sync_view(vec![
        route("192.0.2.0/24", RouteRpkiState::Valid),
        route("203.0.113.0/24", RouteRpkiState::NotFound),
    ]);
    let verdict = check_rpki(&view);
    assert_eq!(verdict.result, GateResultKind::Pass, "{}", verdict.detail);
    assert!(
        verdict.detail.contains("127.0.0.1:8282"),
        "{}",
        verdict.detail
    );
}

#[test]
fn an_invalid_route_fails_naming_it_and_its_covering_vrps() {
    let view = in_sync_view(vec![
        route("192.0.2.0/24", RouteRpkiState::Valid),
        route("192.0.2.0/25", RouteRpkiState::InvalidLength),
    ]);
    let verdict = check_rpki(&view);
    assert_eq!(verdict.result, GateResultKind::Fail);
    assert!(
        verdict.detail.contains(
            "192.0.2.0/25 from AS64500 (beyond max-length; covered by 192.0.2.0/22-24 AS64500)"
        ),
        "{}",
        verdict.detail
    );
    let combined = combine(vec![("ams01".into(), verdict)]);
    assert!(
        combined
            .detail
            .starts_with("ams01: 1 route(s) RPKI-invalid"),
        "{}",
        combined.detail
    );
}

#[test]
fn counts_and_routes_each_fail_alone() {
    let mut counted = in_sync_view(vec![route("192.0.2.0/24", RouteRpkiState::Valid)]);
    counted.counts.invalid = 2;
    let verdict = check_rpki(&counted);
    assert_eq!(verdict.result, GateResultKind::Fail);
    assert!(verdict.detail.contains("2 route(s)"), "{}", verdict.detail);

    let mut listed = in_sync_view(vec![route("192.0.2.0/25", RouteRpkiState::InvalidOrigin)]);
    listed.counts.invalid = 0;
    assert_eq!(check_rpki(&listed).result, GateResultKind::Fail);
}

#[test]
fn every_no_data_case_is_not_a_pass() {
    let base = in_sync_view(vec![route("192.0.2.0/24", RouteRpkiState::Valid)]);
    let mut disabled = base.clone();
    disabled.enabled = false;
    disabled.sync = RpkiSyncState::Disabled;
    let verdict = check_rpki(&disabled);
    assert_eq!(verdict.result, GateResultKind::Fail);
    assert!(verdict.detail.contains("disabled"), "{}", verdict.detail);
    for sync in [
        RpkiSyncState::Connecting,
        RpkiSyncState::Stale,
        RpkiSyncState::Expired,
        RpkiSyncState::Disabled,
    ] {
        let mut view = base.clone();
        view.sync = sync;
        assert_eq!(
            check_rpki(&view).result,
            GateResultKind::Inconclusive,
            "{sync:?}"
        );
    }
    let mut no_cache = base.clone();
    no_cache.cache = None;
    assert_eq!(check_rpki(&no_cache).result, GateResultKind::Inconclusive);
    let mut no_serial = base.clone();
    no_serial.serial = None;
    assert_eq!(check_rpki(&no_serial).result, GateResultKind::Inconclusive);
    let mut no_age = base;
    no_age.last_update_age_seconds = None;
    assert_eq!(check_rpki(&no_age).result, GateResultKind::Inconclusive);
}

#[test]
fn a_view_missing_a_field_is_an_error_not_a_view() {
    let view = in_sync_view(vec![route("192.0.2.0/24", RouteRpkiState::Valid)]);
    let document = serde_json::to_value(&view).unwrap();
    for field in ["enabled", "sync", "cache", "serial", "counts", "routes"] {
        let mut without = document.clone();
        without.as_object_mut().unwrap().remove(field);
        assert!(
            serde_json::from_value::<RpkiView>(without).is_err(),
            "a view without `{field}` was read"
        );
    }
}

fn state_strategy() -> impl Strategy<Value = RouteRpkiState> {
    prop_oneof![
        Just(RouteRpkiState::Valid),
        Just(RouteRpkiState::InvalidOrigin),
        Just(RouteRpkiState::InvalidLength),
        Just(RouteRpkiState::NotFound),
    ]
}

fn sync_strategy() -> impl Strategy<Value = RpkiSyncState> {
    prop_oneof![
        Just(RpkiSyncState::Disabled),
        Just(RpkiSyncState::Connecting),
        Just(RpkiSyncState::InSync),
        Just(RpkiSyncState::Stale),
        Just(RpkiSyncState::Expired),
    ]
}

prop_compose! {
    fn view_strategy()(
        enabled in any::<bool>(),
        sync in sync_strategy(),
        cache in proptest::option::of(Just("127.0.0.1:8282".to_string())),
        serial in proptest::option::of(any::<u32>()),
        age in proptest::option::of(0u64..100_000),
        states in proptest::collection::vec(state_strategy(), 0..12),
        // Counts that may disagree with the listed routes (a daemon bug must not pass).
        count_skew in prop_oneof![Just(0u64), 0u64..3],
    ) -> RpkiView {
        let routes = states
            .iter()
            .enumerate()
            .map(|(index, state)| route(&format!("10.0.{index}.0/24"), *state))
            .collect();
        let mut view = in_sync_view(routes);
        view.enabled = enabled;
        view.sync = sync;
        view.cache = cache;
        view.serial = serial;
        view.last_update_age_seconds = age;
        view.counts.invalid += count_skew;
        view
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The gate passes iff RPKI is enabled, in sync with a named cache, serial and age, and
    /// no route is invalid by the counts or by its state; any invalid route fails and is named.
    #[test]
    fn rpki_gate_passes_iff_enabled_in_sync_and_nothing_invalid(view in view_strategy()) {
        let verdict = check_rpki(&view);
        let any_invalid = view.counts.invalid > 0
            || view.routes.iter().any(|route| route.state.is_invalid());
        let should_pass = view.enabled
            && view.sync == RpkiSyncState::InSync
            && view.cache.is_some()
            && view.serial.is_some()
            && view.last_update_age_seconds.is_some()
            && !any_invalid;
        prop_assert_eq!(verdict.result == GateResultKind::Pass, should_pass, "{}", verdict.detail);
        prop_assert!(!verdict.detail.is_empty());
        if view.enabled && any_invalid {
            prop_assert_eq!(verdict.result, GateResultKind::Fail);
            for invalid in view.routes.iter().filter(|route| route.state.is_invalid()).take(RPKI_ROUTES_NAMED) {
                let named = format!("{} from AS", invalid.prefix);
                prop_assert!(verdict.detail.contains(&named), "{}", verdict.detail);
            }
        }
        // Across locations, a location that does not pass keeps the whole gate from passing
        // and is named in the reason.
        let ok = in_sync_view(vec![route("192.0.2.0/24", RouteRpkiState::Valid)]);
        let combined = combine(vec![
            ("ams01".to_string(), check_rpki(&ok)),
            ("fra01".to_string(), verdict.clone()),
        ]);
        prop_assert_eq!(combined.result == GateResultKind::Pass, should_pass);
        if !should_pass {
            prop_assert!(combined.detail.contains("fra01: "), "{}", combined.detail);
        }
    }
}
