//! Each view reads the JSON the daemon answers today and writes it back unchanged; a view
//! missing a required field is an error naming it.

#![allow(clippy::unwrap_used)]

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::intent::Verdict;

fn round_trip<T: Serialize + DeserializeOwned>(wire: &Value) -> T {
    let typed: T = serde_json::from_value(wire.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), wire);
    typed
}

/// Every required field of `wire` (an object), removed one at a time, is an error naming it.
fn each_field_is_required<T: DeserializeOwned + std::fmt::Debug>(wire: &Value) {
    for key in wire.as_object().unwrap().keys() {
        let mut without = wire.clone();
        without.as_object_mut().unwrap().remove(key);
        let error = serde_json::from_value::<T>(without).unwrap_err();
        assert!(error.to_string().contains(key.as_str()), "{key}: {error}");
    }
}

fn peer() -> Value {
    json!({
        "name": "bird", "address": "127.0.0.2", "state": "Established", "established": true,
        "established_since": 1_700_000_000u64, "generation_synced": 4, "generation_desired": 4,
        "version_synced": 9, "routes_desired_ipv4": 2, "routes_desired_ipv6": 1,
        "updates_sent": 3, "prefixes_announced_sent": 3, "prefixes_withdrawn_sent": 0,
        "updates_received": 0, "prefixes_received_ipv4": 0, "prefixes_received_ipv6": 0,
        "withdrawals_received": 0, "routes_unencodable": 0, "encode_error": null,
        "last_error": null,
    })
}

fn status() -> Value {
    json!({
        "location": "ams01", "generation": 4, "hash": "ab12", "applied_at": 1_700_000_000u64,
        "applied_by": "alice", "ready": true, "ready_reason": "ready: 1 of 1 peers hold 4",
        "routes": { "ipv4": 2, "ipv6": 1 }, "routes_topology": { "ipv4": 2, "ipv6": 1 },
        "published_version": 9, "runtime_guard_refusals": 0,
        "health": {
            "fail_static": false, "location_drained": false, "unhealthy": ["dns"],
            "drained": [], "withdrawn": ["dns"], "degraded": [],
        },
        "peers": [peer()],
    })
}

#[test]
fn status_round_trips_and_requires_its_fields() {
    let view: StatusView = round_trip(&status());
    assert_eq!(view.peers[0].generation_synced, Some(4));
    assert_eq!(view.lease, None);
    each_field_is_required::<StatusView>(&status());
    // A daemon holding the fleet lock's lease says so; without one (or before the lock
    // existed) the key is absent and reads as no lease.
    let mut leased = status();
    leased["lease"] = json!({
        "holder": "r-1", "token": 2, "ttl_seconds": 60,
        "expires_unix_ms": 1_700_000_060_000u64, "remaining_ms": 59_000,
    });
    let view: StatusView = round_trip(&leased);
    assert_eq!(view.lease.map(|lease| lease.holder), Some("r-1".to_owned()));
    // The daemon's clock at the snapshot; absent (a daemon before deadlines) reads as 0.
    assert_eq!(round_trip::<StatusView>(&status()).time_unix_ms, 0);
    let mut timed = status();
    timed["time_unix_ms"] = json!(1_700_000_000_123u64);
    assert_eq!(
        round_trip::<StatusView>(&timed).time_unix_ms,
        1_700_000_000_123
    );
    each_field_is_required::<PeerStatus>(&peer());
}

fn routes() -> Value {
    json!({
        "generation": 4,
        "peers": { "bird": {
            "families": ["ipv4", "ipv6"], "established": true, "generation_synced": 4,
            "routes": [{
                "prefix": "192.0.2.0/24", "service": "web", "degraded": false,
                "as_path": ["65000 65001"], "next_hop": "192.0.2.254", "med": null,
                "communities": ["65000:1"], "large_communities": [],
                "announced_since": 1_764_921_481,
            }],
        } },
    })
}

#[test]
fn routes_round_trip_and_require_their_fields() {
    let view: RoutesView = round_trip(&routes());
    assert_eq!(view.peers["bird"].routes[0].prefix, "192.0.2.0/24");
    each_field_is_required::<RoutesView>(&routes());
    // `next_hop` and `announced_since` are new: daemons that predate them omit them, read as
    // `null`.
    let mut route = routes()["peers"]["bird"]["routes"][0].clone();
    route.as_object_mut().unwrap().remove("next_hop");
    route.as_object_mut().unwrap().remove("announced_since");
    each_field_is_required::<RouteView>(&route);
    let older: RouteView = serde_json::from_value(route).unwrap();
    assert_eq!(older.next_hop, None);
    assert_eq!(older.announced_since, None);
    assert_eq!(
        view.peers["bird"].routes[0].announced_since,
        Some(1_764_921_481)
    );
    assert_eq!(
        view.peers["bird"].routes[0].next_hop.as_deref(),
        Some("192.0.2.254")
    );
}

fn checked_service() -> Value {
    json!({
        "checked": true, "healthy": false, "action": "withdraw", "drained": false,
        "floor_held": false, "other_live_locations": 3, "routes_announced": 0,
        "state": "held_down", "observed_healthy": true, "withdrawal_pending": false,
        "transitions": 2, "consecutive_passes": 3, "consecutive_failures": 0, "rounds": 12,
        "rounds_by_result": { "passed": 9, "failed": 3, "errored": 0 },
        "hold_down_ms": 10000, "hold_down_remaining_ms": 4000,
        "last_round": [{ "check": "tcp 127.0.0.1:53", "result": "pass", "detail": "" }],
        "on_unhealthy": { "action": "degrade", "as_path_prepend": 3, "med": 1000,
                          "communities": ["13335:666"] },
    })
}

fn health() -> Value {
    json!({
        "location": "ams01", "generation": 4, "enabled": true, "fail_static": false,
        "fail_static_reason": null, "location_drained": false,
        "drains": { "drained": false, "who": "", "reason": "", "changed_at": 0, "force": false,
                    "services": { "web": { "who": "alice", "reason": "maintenance",
                                           "changed_at": 5, "force": false } } },
        "min_other_locations": 1, "address_interface": "lo",
        "addresses_bound": ["192.0.2.53/32"], "addresses_foreign": [],
        "addresses_pending_unbind": [], "address_errors": { "192.0.2.54/32": "EPERM" },
        "services": {
            "dns": checked_service(),
            "web": { "checked": false, "healthy": true, "action": "withdraw", "drained": true,
                     "floor_held": false, "other_live_locations": 2, "routes_announced": 0,
                     "state": "unchecked" },
        },
    })
}

#[test]
fn health_round_trips_with_and_without_probe_state() {
    let view: HealthView = round_trip(&health());
    let dns = &view.services["dns"];
    assert_eq!(dns.state, HealthStateView::HeldDown);
    assert_eq!(dns.probes.rounds, Some(12));
    assert_eq!(view.services["web"].probes, ProbeStateView::default());
    each_field_is_required::<HealthView>(&health());
    let mut decision = checked_service();
    for key in [
        "checked",
        "healthy",
        "action",
        "drained",
        "floor_held",
        "other_live_locations",
        "routes_announced",
        "state",
    ] {
        decision.as_object_mut().unwrap().remove(key);
        let error = serde_json::from_value::<ServiceHealthView>(decision.clone()).unwrap_err();
        assert!(error.to_string().contains(key), "{key}: {error}");
        decision = checked_service();
    }
    let mut ill_typed = checked_service();
    ill_typed["healthy"] = json!("yes");
    assert!(serde_json::from_value::<ServiceHealthView>(ill_typed).is_err());
}

#[test]
fn plan_outcome_drain_and_topology_answers_round_trip() {
    let plan = json!({
        "verdict": "changes_allowed", "exit_code": 2,
        "plan": { "verdict": "changes_allowed", "changes": [] },
        "text": "1 route changes", "location_delta": { "location": "ams01", "announce": [],
                                                       "update": [], "withdraw": [] },
    });
    let view: PlanView = round_trip(&plan);
    assert_eq!(view.verdict, Verdict::ChangesAllowed);
    each_field_is_required::<PlanView>(&plan);
    let applied = json!({
        "generation_before": 4, "generation_after": 5, "plan_hash": "cd34",
        "detail": { "verdict": "changes_allowed", "summary": { "routes_changed": 1 },
                    "text": "1 route changes" },
    });
    let outcome: MutationOutcome = round_trip(&applied);
    assert_eq!(outcome.generation_after, 5);
    each_field_is_required::<MutationOutcome>(&applied);
    round_trip::<MutationOutcome>(&json!({
        "generation_before": 4, "generation_after": 4, "plan_hash": "cd34",
        "detail": { "verdict": "no_change", "text": "no change" },
        "audit_warning": "the outcome of this request could not be appended",
    }));
    let drain = json!({
        "location": "ams01", "target": "web", "drained": true, "floor_held": ["web"],
        "services": { "web": { "action": "announce", "healthy": null, "drained": true,
                               "floor_held": true, "other_live_locations": 0 } },
    });
    each_field_is_required::<DrainView>(&drain);
    // `changed` is new: read as `false` from daemons that predate it.
    assert!(
        !serde_json::from_value::<DrainView>(drain.clone())
            .unwrap()
            .changed
    );
    let mut changed = drain.clone();
    changed["changed"] = json!(true);
    assert!(round_trip::<DrainView>(&changed).changed);
    let generations = json!({
        "location": "ams01", "running": 3,
        "generations": [{ "generation": 3, "hash": "ab12", "applied_at": 1_700_000_000u64,
                          "applied_by": "sre-admin", "intent": ["service:web"],
                          "sources": ["fleet.toml"] }],
    });
    round_trip::<GenerationsView>(&generations);
    each_field_is_required::<GenerationsView>(&generations);
    each_field_is_required::<GenerationView>(&generations["generations"][0]);
    let topology = json!({
        "generation": 4, "hash": "ab12",
        "bundle": { "sources": [{ "name": "fleet.toml", "text": "" }] },
    });
    round_trip::<TopologyView>(&topology);
    each_field_is_required::<TopologyView>(&topology);
}

#[test]
fn error_bodies_round_trip_with_each_detail_shape() {
    let details = [
        json!(null),
        json!({ "diagnostics": { "items": [] }, "text": "fleet.toml:1:1: error" }),
        json!({ "plan": { "verdict": "refused" }, "text": "REFUSED" }),
        json!({ "problems": ["192.0.2.0/24 would be sent but is not planned"] }),
        json!({ "running_generation": 5 }),
        json!({ "prunable": [{ "path": "/var/lib/topologyd/generations/1.json", "bytes": 9 }] }),
        json!({ "health_errors": ["service dns, check 1: {probe_host} is not defined"] }),
    ];
    let expected_text = [None, Some("fleet.toml:1:1: error"), Some("REFUSED")];
    for (index, detail) in details.into_iter().enumerate() {
        let wire = json!({ "error": { "kind": "invalid", "message": "m", "detail": detail } });
        let body: ErrorBody = round_trip(&wire);
        assert!(
            !matches!(body.error.detail, Some(ErrorDetail::Other(_))),
            "{wire}"
        );
        if let Some(text) = expected_text.get(index) {
            assert_eq!(
                body.error.detail.as_ref().and_then(ErrorDetail::text),
                *text
            );
        }
    }
    let missing = json!({ "error": { "kind": "invalid", "detail": null } });
    let error = serde_json::from_value::<ErrorBody>(missing).unwrap_err();
    assert!(error.to_string().contains("message"), "{error}");
}
