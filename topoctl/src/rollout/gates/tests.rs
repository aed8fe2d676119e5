//! Gate verdicts on typed daemon views and Prometheus answers: routes against the plan,
//! sessions, probes, PromQL, and that no data — a view missing a field included — is never a
//! pass.

#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::json;
use topologyd_api::PeerStatus;
use topologyd_api::view::{RouteCounts, StatusHealth};
use topologyd_topology::RouteAttributes;

fn status_view() -> StatusView {
    let counts = RouteCounts { ipv4: 1, ipv6: 0 };
    StatusView {
        location: "ams01".into(),
        generation: 5,
        hash: "new".into(),
        applied_at: 0,
        applied_by: "alice".into(),
        ready: true,
        ready_reason: "ready".into(),
        routes: counts,
        routes_topology: counts,
        published_version: 1,
        runtime_guard_refusals: 0,
        health: StatusHealth {
            fail_static: false,
            location_drained: false,
            unhealthy: vec![],
            drained: vec![],
            withdrawn: vec![],
            degraded: vec![],
        },
        peers: vec![],
        lease: None,
        time_unix_ms: 0,
    }
}

fn route(prefix: &str, service: &str, med: Option<u32>) -> AnnouncedRoute {
    AnnouncedRoute {
        prefix: prefix.parse().unwrap(),
        origin_asn: 13335,
        attributes: RouteAttributes {
            communities: vec![],
            large_communities: vec![],
            med,
            as_path_prepend: 0,
        },
        binding: prefix.parse().unwrap(),
        service: service.into(),
    }
}

/// A routes view: each peer's `routes` and, unless given, both families, Established and
/// synced to generation 5.
fn routes_document(peers: Value) -> RoutesView {
    let mut peers = peers;
    for peer in peers.as_object_mut().unwrap().values_mut() {
        let peer = peer.as_object_mut().unwrap();
        peer.entry("families").or_insert(json!(["ipv4", "ipv6"]));
        peer.entry("established").or_insert(json!(true));
        peer.entry("generation_synced").or_insert(json!(5));
    }
    serde_json::from_value(json!({ "generation": 5, "peers": peers })).unwrap()
}

fn entry(prefix: &str, med: Option<u32>) -> Value {
    json!({ "prefix": prefix, "service": "resolver", "degraded": false, "as_path": [],
            "med": med, "communities": [], "large_communities": [] })
}

/// A health view of `services`, each given by its decision's keys (the rest filled in).
fn health_document(location_drained: bool, services: Value) -> Value {
    let mut services = services;
    for service in services.as_object_mut().unwrap().values_mut() {
        let service = service.as_object_mut().unwrap();
        for (key, value) in [
            ("floor_held", json!(false)),
            ("other_live_locations", json!(1)),
            ("routes_announced", json!(0)),
            ("rounds", json!(3)),
            (
                "last_round",
                json!([{ "check": "tcp 127.0.0.1:53", "result": "fail", "detail": "" }]),
            ),
        ] {
            service.entry(key).or_insert(value);
        }
        if service["checked"] == json!(false) {
            service.remove("rounds");
            service.remove("last_round");
        }
    }
    json!({
        "location": "ams01", "generation": 5, "enabled": true, "fail_static": false,
        "fail_static_reason": null, "location_drained": location_drained,
        "drains": { "drained": location_drained, "who": "", "reason": "", "changed_at": 0 },
        "min_other_locations": 1, "address_interface": null, "addresses_bound": [],
        "addresses_foreign": [], "addresses_pending_unbind": [], "address_errors": {},
        "services": services,
    })
}

#[test]
fn promql_vectors_scalars_and_errors() {
    let vector = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"location": "ams01"}, "value": [1700000000.1, "0.5"]},
        {"metric": {}, "value": [1700000000.1, "NaN"]}
    ]}});
    let samples = parse_promql(&vector).unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0].labels["location"], "ams01");
    assert_eq!(samples[0].value, 0.5);
    assert!(samples[1].value.is_nan());
    let scalar =
        json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "+Inf"]}});
    assert_eq!(parse_promql(&scalar).unwrap()[0].value, f64::INFINITY);
    let error =
        json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 3"});
    assert_eq!(
        parse_promql(&error).unwrap_err(),
        "Prometheus: bad_data: parse error at char 3"
    );
    let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
    assert!(parse_promql(&matrix).unwrap_err().contains("matrix"));
    assert!(parse_promql(&json!({"data": 1})).is_err());
    let bad_value = json!({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {}, "value": [1.0, "many"]}]}});
    assert!(
        parse_promql(&bad_value)
            .unwrap_err()
            .contains("not a number")
    );
}

#[test]
fn no_data_is_never_a_pass() {
    assert_eq!(
        judge_promql(&[], Some(1.0), None).result,
        GateResultKind::Inconclusive
    );
    let nan = Sample {
        labels: BTreeMap::new(),
        value: f64::NAN,
    };
    assert_eq!(
        judge_promql(&[nan], Some(1.0), None).result,
        GateResultKind::Inconclusive
    );
}

proptest::proptest! {
    /// Whatever the bounds (none, one, both, any values) and whatever finite samples sit
    /// beside it, a NaN or ±Inf sample — as Prometheus sends them, parsed by `parse_promql` — is
    /// never a pass: a canary/control ratio whose denominator fell to 0 must not promote a change.
    #[test]
    fn a_nan_or_infinite_sample_is_never_a_pass(
        min in proptest::option::of(-1e9f64..1e9),
        max in proptest::option::of(-1e9f64..1e9),
        finite in proptest::collection::vec(-1e9f64..1e9, 0..4),
        special in 0usize..3,
        position in 0usize..4,
    ) {
        let text = ["NaN", "+Inf", "-Inf"][special];
        let mut result: Vec<serde_json::Value> = finite
            .iter()
            .map(|value| json!({"metric": {}, "value": [1700000000.1, value.to_string()]}))
            .collect();
        let at = position.min(result.len());
        result.insert(at, json!({"metric": {"location": "ams01"}, "value": [1700000000.1, text]}));
        let body = json!({"status": "success", "data": {"resultType": "vector", "result": result}});
        let samples = parse_promql(&body).map_err(proptest::test_runner::TestCaseError::fail)?;
        let verdict = judge_promql(&samples, min, max);
        proptest::prop_assert_eq!(verdict.result, GateResultKind::Inconclusive, "{}", verdict.detail);
    }
}

#[test]
fn every_sample_must_be_within_the_bounds() {
    let sample = |value| Sample {
        labels: BTreeMap::from([("location".to_string(), "ams01".to_string())]),
        value,
    };
    assert_eq!(
        judge_promql(&[sample(1.0), sample(0.995)], Some(0.99), None).result,
        GateResultKind::Pass
    );
    let verdict = judge_promql(&[sample(1.0), sample(0.5)], Some(0.99), Some(1.0));
    assert_eq!(verdict.result, GateResultKind::Fail);
    assert_eq!(
        verdict.detail,
        "outside [0.99, 1]: {location=\"ams01\"} 0.5"
    );
    assert_eq!(
        judge_promql(&[sample(2.0)], None, Some(1.0)).result,
        GateResultKind::Fail
    );
}

#[test]
fn placeholders_expand_to_escaped_alternations() {
    let wave = vec!["ams01".to_string(), "fra.01".to_string()];
    let control = vec!["ord01".to_string()];
    assert_eq!(
        expand_query(
            "x{location=~\"{wave}\"} / y{location=~\"{control}\"}",
            &wave,
            &control
        ),
        "x{location=~\"ams01|fra\\\\.01\"} / y{location=~\"ord01\"}"
    );
}

#[test]
fn routes_equal_to_the_plan_pass_and_differences_are_named() {
    let expected = vec![
        route("192.0.2.0/24", "resolver", Some(10)),
        route("198.51.100.0/24", "cdn", None),
    ];
    let health = HealthView::default();
    let good = routes_document(
        json!({"edge": {"established": true, "generation_synced": 5, "routes": [
        entry("192.0.2.0/24", Some(10)), entry("198.51.100.0/24", None)]}}),
    );
    assert_eq!(compare_routes(&expected, &health, &good), Ok(()));
    let bad = routes_document(json!({"edge": {"routes": [
        entry("192.0.2.0/24", Some(20)), entry("203.0.113.0/24", None)]}}));
    let error = compare_routes(&expected, &health, &bad).unwrap_err();
    assert!(
        error.contains("192.0.2.0/24 has MED Some(20), the plan says Some(10)"),
        "{error}"
    );
    assert!(
        error.contains("203.0.113.0/24 is announced but not planned"),
        "{error}"
    );
    assert!(
        error.contains("1 planned route(s) missing: 198.51.100.0/24"),
        "{error}"
    );
}

#[test]
fn health_withdrawals_and_degradations_are_taken_into_account() {
    let expected = vec![
        route("192.0.2.0/24", "resolver", Some(10)),
        route("198.51.100.0/24", "cdn", None),
    ];
    let health = HealthView::parse(&health_document(false, json!({
        "resolver": {"checked": true, "healthy": false, "state": "unhealthy", "action": "withdraw", "drained": false},
        "cdn": {"checked": true, "healthy": false, "state": "unhealthy", "action": "degrade", "drained": false}
    })))
    .unwrap();
    let routes = routes_document(json!({"edge": {"routes": [
        {"prefix": "198.51.100.0/24", "service": "cdn", "as_path": [], "med": 1000,
         "communities": ["13335:666"], "large_communities": [], "degraded": true}]}}));
    assert_eq!(compare_routes(&expected, &health, &routes), Ok(()));
    assert_eq!(
        check_probes(&health, &["resolver".to_string()]).result,
        GateResultKind::Fail
    );
}

#[test]
fn a_drain_the_floor_holds_back_stays_announced() {
    let expected = vec![route("192.0.2.0/24", "resolver", None)];
    let health = HealthView::parse(&health_document(true, json!({
        "resolver": {"checked": false, "healthy": true, "state": "unchecked", "action": "announce", "drained": true, "floor_held": true}
    })))
    .unwrap();
    let routes = routes_document(json!({"edge": {"routes": [entry("192.0.2.0/24", None)]}}));
    assert_eq!(compare_routes(&expected, &health, &routes), Ok(()));
}

#[test]
fn single_family_peers_and_declared_families() {
    let expected = vec![
        route("192.0.2.0/24", "resolver", None),
        route("2001:db8::/48", "resolver", None),
    ];
    let health = HealthView::default();
    let ipv4_only = routes_document(
        json!({"v4": {"families": ["ipv4"], "routes": [entry("192.0.2.0/24", None)]}}),
    );
    assert_eq!(compare_routes(&expected, &health, &ipv4_only), Ok(()));
    let declared = routes_document(
        json!({"v4": {"families": ["ipv4", "ipv6"], "routes": [entry("192.0.2.0/24", None)]}}),
    );
    assert!(compare_routes(&expected, &health, &declared).is_err());
}

#[test]
fn daemon_gate_verdicts() {
    let expected = vec![route("192.0.2.0/24", "resolver", None)];
    let status = |hash: &str, established: bool, synced: u64, refusals: u64| StatusView {
        hash: hash.to_string(),
        runtime_guard_refusals: refusals,
        peers: vec![PeerStatus {
            name: "edge".into(),
            established,
            state: "Established".into(),
            generation_synced: Some(synced),
            ..PeerStatus::default()
        }],
        ..status_view()
    };
    let routes = routes_document(json!({"edge": {"routes": [entry("192.0.2.0/24", None)]}}));
    let health = HealthView::default();
    let check =
        |status: &StatusView| check_daemon(status, &routes, &health, &expected, "new", 2).result;
    assert_eq!(check(&status("new", true, 5, 2)), GateResultKind::Pass);
    assert_eq!(check(&status("old", true, 5, 2)), GateResultKind::Fail);
    assert_eq!(check(&status("new", false, 5, 2)), GateResultKind::Fail);
    assert_eq!(
        check(&status("new", true, 4, 2)),
        GateResultKind::Inconclusive
    );
    assert_eq!(check(&status("new", true, 5, 3)), GateResultKind::Fail);
}

#[test]
fn probes_gate_verdicts() {
    let mut health = HealthView::default();
    let services = vec!["resolver".to_string()];
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Fail
    );
    health.services.insert(
        "resolver".into(),
        ServiceHealth {
            checked: false,
            ..ServiceHealth::default()
        },
    );
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Inconclusive
    );
    // Checked, counted healthy, but not probed yet (state unknown): no data.
    health.services.insert(
        "resolver".into(),
        ServiceHealth {
            checked: true,
            healthy: true,
            ..ServiceHealth::default()
        },
    );
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Inconclusive
    );
    // Probed, still counted healthy, but the last round failed: not a pass.
    health.services.insert(
        "resolver".into(),
        ServiceHealth {
            checked: true,
            healthy: true,
            rounds: 1,
            last_round_passed: false,
            ..ServiceHealth::default()
        },
    );
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Inconclusive
    );
    health.services.insert(
        "resolver".into(),
        ServiceHealth {
            checked: true,
            healthy: true,
            rounds: 2,
            last_round_passed: true,
            ..ServiceHealth::default()
        },
    );
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Pass
    );
    health.fail_static = true;
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Inconclusive
    );
}

#[test]
fn combining_locations() {
    let verdicts = vec![
        ("a".to_string(), GateVerdict::pass("ok")),
        ("b".to_string(), GateVerdict::inconclusive("no answer")),
    ];
    assert_eq!(
        combine(verdicts.clone()).result,
        GateResultKind::Inconclusive
    );
    let mut with_failure = verdicts;
    with_failure.push(("c".into(), GateVerdict::fail("down")));
    let combined = combine(with_failure);
    assert_eq!(combined.result, GateResultKind::Fail);
    assert_eq!(combined.detail, "c: down");
    assert_eq!(combine(vec![]).result, GateResultKind::Inconclusive);
}

#[tokio::test]
async fn an_unreachable_prometheus_is_inconclusive() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let verdict = evaluate_promql(
        &format!("http://{address}"),
        "up",
        &[],
        &[],
        Some(1.0),
        None,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(verdict.result, GateResultKind::Inconclusive);
}

#[tokio::test]
async fn a_real_http_answer_is_parsed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = vec![0u8; 4096];
        let read = stream.read(&mut buffer).await.unwrap();
        let request = String::from_utf8_lossy(&buffer[..read]).to_string();
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]}]}}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        request
    });
    let verdict = evaluate_promql(
        &format!("http://{address}"),
        "min(up{location=~\"{wave}\"})",
        &["ams01".to_string()],
        &[],
        Some(1.0),
        None,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(verdict.result, GateResultKind::Pass, "{}", verdict.detail);
    let request = server.await.unwrap();
    assert!(
        request.starts_with(
            "GET /api/v1/query?query=min%28up%7Blocation%3D~%22ams01%22%7D%29 HTTP/1.1"
        ),
        "{request}"
    );
}

/// *No data is never a pass*: a health answer missing a field, or a checked service missing its
/// probe state, is an error naming the field, which the driver turns into an inconclusive gate.
#[test]
fn a_health_view_missing_a_field_is_never_a_pass() {
    let services = vec!["resolver".to_string()];
    let passing = json!({
        "resolver": {"checked": true, "healthy": true, "state": "healthy", "action": "announce",
                     "drained": false,
                     "last_round": [{ "check": "tcp 127.0.0.1:53", "result": "pass", "detail": "" }]}
    });
    let health = HealthView::parse(&health_document(false, passing.clone())).unwrap();
    assert_eq!(
        check_probes(&health, &services).result,
        GateResultKind::Pass
    );
    for field in [
        "healthy",
        "checked",
        "state",
        "action",
        "rounds",
        "last_round",
    ] {
        let mut document = health_document(false, passing.clone());
        document["services"]["resolver"]
            .as_object_mut()
            .unwrap()
            .remove(field);
        let error = HealthView::parse(&document).unwrap_err();
        assert!(error.contains(field), "{field}: {error}");
    }
    let mut ill_typed = health_document(false, passing);
    ill_typed["services"]["resolver"]["healthy"] = json!("true");
    assert!(HealthView::parse(&ill_typed).is_err());
    let mut no_fail_static = health_document(false, json!({}));
    no_fail_static
        .as_object_mut()
        .unwrap()
        .remove("fail_static");
    let error = HealthView::parse(&no_fail_static).unwrap_err();
    assert!(error.contains("fail_static"), "{error}");
}
