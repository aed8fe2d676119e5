//! Gate evaluation: turning what the daemons and Prometheus report into pass / fail /
//! inconclusive. *No data is never a pass.*
//!
//! Owns: the verdict rules of the gate kinds (`daemon`, `probes`, `promql`, `rpki`, and
//! `visibility` in `gates/visibility.rs`; see
//! `docs/rollouts.md`), the comparison of a daemon's per-peer routes (`GET /v1/routes`) with
//! what a topology desires at its location minus what health or drain withdrew
//! (`GET /v1/health`) — also used to verify a rollback —, PromQL placeholder expansion and
//! response parsing, and the plain-HTTP Prometheus query.
//!
//! Must not touch: when gates are evaluated or what a result leads to (`machine.rs`), the
//! daemons' control API client (`control_client.rs`; the driver fetches and passes the typed
//! views in: a view missing a field never gets here, it is an inconclusive gate naming the field).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use hyper::header::ACCEPT;
use percent_encoding::utf8_percent_encode;
use serde::Deserialize as _;
use serde_json::Value;
use topologyd_api::view::CheckResult;
use topologyd_api::{
    HealthView as HealthDocument, RouteView, RoutesView, RpkiSyncState, RpkiView, StatusView,
};
use topologyd_topology::AnnouncedRoute;
use topologyd_transport::http_client::{self, OneShot, QUERY_VALUE};

use super::journal::GateResultKind;

mod visibility;
pub use visibility::{RunningGeneration, check_visibility};

/// A gate verdict with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub result: GateResultKind,
    pub detail: String,
}

impl GateVerdict {
    pub fn pass(detail: impl Into<String>) -> GateVerdict {
        GateVerdict {
            result: GateResultKind::Pass,
            detail: detail.into(),
        }
    }

    pub fn fail(detail: impl Into<String>) -> GateVerdict {
        GateVerdict {
            result: GateResultKind::Fail,
            detail: detail.into(),
        }
    }

    pub fn inconclusive(detail: impl Into<String>) -> GateVerdict {
        GateVerdict {
            result: GateResultKind::Inconclusive,
            detail: detail.into(),
        }
    }
}

/// Combines per-location verdicts: any fail fails, else any inconclusive is inconclusive.
pub fn combine(verdicts: Vec<(String, GateVerdict)>) -> GateVerdict {
    let worst = |kind: GateResultKind| {
        verdicts
            .iter()
            .filter(|(_, verdict)| verdict.result == kind)
            .map(|(location, verdict)| format!("{location}: {}", verdict.detail))
            .collect::<Vec<_>>()
    };
    let failed = worst(GateResultKind::Fail);
    if !failed.is_empty() {
        return GateVerdict::fail(failed.join("; "));
    }
    let unsure = worst(GateResultKind::Inconclusive);
    if !unsure.is_empty() {
        return GateVerdict::inconclusive(unsure.join("; "));
    }
    if verdicts.is_empty() {
        return GateVerdict::inconclusive("no location to evaluate");
    }
    GateVerdict::pass(format!("{} location(s) ok", verdicts.len()))
}

/// One service in a daemon's health report, as the gates judge it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceHealth {
    pub checked: bool,
    pub healthy: bool,
    pub state: String,
    /// Probe rounds run since the service's checks (re)started at this location.
    pub rounds: u64,
    /// The last round ran and every check of it passed.
    pub last_round_passed: bool,
    /// `announce`, `withdraw` or `degrade`.
    pub action: String,
    pub drained: bool,
}

/// A daemon's `GET /v1/health`, as the gates judge it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    pub fail_static: bool,
    pub fail_static_reason: Option<String>,
    pub location_drained: bool,
    pub services: BTreeMap<String, ServiceHealth>,
}

impl HealthView {
    /// Reads the typed `GET /v1/health` answer. A checked service whose probe state is missing
    /// is an error naming the service and the field, never a default: *no data is never a pass*.
    pub fn from_view(view: &HealthDocument) -> Result<HealthView, String> {
        let mut services = BTreeMap::new();
        for (name, service) in &view.services {
            let missing = |field: &str| {
                format!("the health report's service `{name}` is checked but has no `{field}`")
            };
            let (rounds, last_round_passed) = if service.checked {
                let rounds = service.probes.rounds.ok_or_else(|| missing("rounds"))?;
                let last_round = service
                    .probes
                    .last_round
                    .as_ref()
                    .ok_or_else(|| missing("last_round"))?;
                let passed = !last_round.is_empty()
                    && last_round
                        .iter()
                        .all(|check| check.result == CheckResult::Pass);
                (rounds, passed)
            } else {
                (0, false)
            };
            services.insert(
                name.clone(),
                ServiceHealth {
                    checked: service.checked,
                    healthy: service.healthy,
                    state: service.state.as_str().to_string(),
                    rounds,
                    last_round_passed,
                    action: service.action.as_str().to_string(),
                    drained: service.drained,
                },
            );
        }
        Ok(HealthView {
            fail_static: view.fail_static,
            fail_static_reason: view.fail_static_reason.clone(),
            location_drained: view.location_drained,
            services,
        })
    }

    /// Reads a `GET /v1/health` answer from JSON: a missing or ill-typed field is an error
    /// naming it.
    pub fn parse(value: &Value) -> Result<HealthView, String> {
        let view = HealthDocument::deserialize(value)
            .map_err(|error| format!("the health report is not a health view: {error}"))?;
        HealthView::from_view(&view)
    }

    /// Whether the daemon withdrew `service` for health or drain. The daemon's `action` is
    /// authoritative: a drain or an unhealthy verdict the floor holds back (`floor_held`)
    /// leaves the service announced, and a location drain shows in every service's action.
    pub fn withdrawn(&self, service: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|health| health.action == "withdraw")
    }

    /// Whether the daemon announces `service` with degraded attributes.
    pub fn degraded(&self, service: &str) -> bool {
        self.services
            .get(service)
            .is_some_and(|health| health.action == "degrade")
    }
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut items = items.to_vec();
    items.sort();
    items
}

fn is_ipv6(prefix: &str) -> bool {
    prefix.contains(':')
}

/// Compares every peer's routes (`GET /v1/routes`) with `expected` minus the services `health`
/// says are withdrawn. Degraded routes (the route's `degraded` flag, or the service's action)
/// are compared by prefix only. A planned route of a family the peer does not carry (its
/// `families`) is not missing.
pub fn compare_routes(
    expected: &[AnnouncedRoute],
    health: &HealthView,
    routes: &RoutesView,
) -> Result<(), String> {
    let wanted: BTreeMap<String, &AnnouncedRoute> = expected
        .iter()
        .filter(|route| !health.withdrawn(&route.service))
        .map(|route| (route.prefix.to_string(), route))
        .collect();
    let mut problems = Vec::new();
    for (peer, view) in &routes.peers {
        let families: BTreeSet<String> = view
            .families
            .iter()
            .map(|family| family.to_lowercase())
            .collect();
        let carries = |ipv6: bool| families.contains(if ipv6 { "ipv6" } else { "ipv4" });
        let mut seen = BTreeSet::new();
        for route in &view.routes {
            let prefix = route.prefix.as_str();
            seen.insert(prefix.to_string());
            let Some(want) = wanted.get(prefix) else {
                problems.push(format!(
                    "peer {peer}: {prefix} is announced but not planned"
                ));
                continue;
            };
            if route.degraded || health.degraded(&want.service) {
                continue;
            }
            compare_attributes(&mut problems, peer, route, want);
        }
        let missing: Vec<&String> = wanted
            .keys()
            .filter(|prefix| !seen.contains(*prefix) && carries(is_ipv6(prefix)))
            .collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing
                .iter()
                .take(5)
                .map(|prefix| prefix.as_str())
                .collect();
            problems.push(format!(
                "peer {peer}: {} planned route(s) missing: {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        let total = problems.len();
        problems.truncate(8);
        let mut text = problems.join("; ");
        if total > 8 {
            text.push_str(&format!("; and {} more", total - 8));
        }
        Err(text)
    }
}

/// A route that is not degraded carries exactly the planned MED and communities.
fn compare_attributes(
    problems: &mut Vec<String>,
    peer: &str,
    route: &RouteView,
    want: &AnnouncedRoute,
) {
    let prefix = &route.prefix;
    if route.med != want.attributes.med {
        problems.push(format!(
            "peer {peer}: {prefix} has MED {:?}, the plan says {:?}",
            route.med, want.attributes.med
        ));
    }
    let planned = |values: Vec<String>| sorted(&values);
    let lists = [
        (
            "communities",
            &route.communities,
            planned(
                want.attributes
                    .communities
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ),
        (
            "large communities",
            &route.large_communities,
            planned(
                want.attributes
                    .large_communities
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ),
    ];
    for (what, announced, planned) in lists {
        let announced = sorted(announced);
        if announced != planned {
            problems.push(format!(
                "peer {peer}: {prefix} has {what} {announced:?}, the plan says {planned:?}"
            ));
        }
    }
}

/// Sessions and sync from `GET /v1/status`: every peer Established and holding `generation`.
/// `Err(verdict)` when not.
pub fn check_sessions(status: &StatusView, generation: u64) -> Result<(), GateVerdict> {
    let mut down = Vec::new();
    let mut unsynced = Vec::new();
    for peer in &status.peers {
        let name = &peer.name;
        if !peer.established {
            down.push(format!("{name} ({})", peer.state));
        } else if peer.generation_synced != Some(generation) {
            unsynced.push(format!(
                "{name} (synced {})",
                peer.generation_synced
                    .map_or_else(|| "nothing".to_string(), |synced| synced.to_string())
            ));
        }
    }
    if !down.is_empty() {
        return Err(GateVerdict::fail(format!(
            "session(s) not Established: {}",
            down.join(", ")
        )));
    }
    if !unsynced.is_empty() {
        return Err(GateVerdict::inconclusive(format!(
            "peer(s) not yet synced to generation {generation}: {}",
            unsynced.join(", ")
        )));
    }
    Ok(())
}

/// The `daemon` gate at one location.
pub fn check_daemon(
    status: &StatusView,
    routes: &RoutesView,
    health: &HealthView,
    expected: &[AnnouncedRoute],
    new_hash: &str,
    refusals_before: u64,
) -> GateVerdict {
    let hash = status.hash.as_str();
    if hash != new_hash {
        return GateVerdict::fail(format!(
            "runs topology {}, not the new one {}",
            short(hash),
            short(new_hash)
        ));
    }
    let generation = status.generation;
    let refusals = status.runtime_guard_refusals;
    if refusals > refusals_before {
        return GateVerdict::fail(format!(
            "runtime guard refusals rose from {refusals_before} to {refusals}"
        ));
    }
    if let Err(verdict) = check_sessions(status, generation) {
        return verdict;
    }
    if routes.generation != generation {
        return GateVerdict::inconclusive("the generation changed between two reads");
    }
    match compare_routes(expected, health, routes) {
        Ok(()) => GateVerdict::pass(format!("generation {generation} synced, routes as planned")),
        Err(problems) => {
            GateVerdict::fail(format!("Adj-RIB-Out differs from the plan: {problems}"))
        }
    }
}

/// The `probes` gate at one location.
pub fn check_probes(health: &HealthView, services: &[String]) -> GateVerdict {
    if health.fail_static {
        return GateVerdict::inconclusive(format!(
            "the location is in fail static ({})",
            health
                .fail_static_reason
                .as_deref()
                .unwrap_or("no reason given")
        ));
    }
    let mut unhealthy = Vec::new();
    let mut unchecked = Vec::new();
    for service in services {
        match health.services.get(service) {
            None => unhealthy.push(format!("{service} (not in the health report)")),
            Some(report) if !report.checked => unchecked.push(service.clone()),
            Some(report) if !report.healthy => {
                unhealthy.push(format!("{service} ({})", report.state));
            }
            // A service starts `unknown`, which the daemon counts as healthy so that a restart
            // withdraws nothing; a gate needs evidence: no round yet is no data, and a failed
            // last round that has not reached `fall` is not a pass either.
            Some(report) if report.rounds == 0 => {
                unchecked.push(format!("{service} (no probe round yet)"));
            }
            Some(report) if !report.last_round_passed => {
                unchecked.push(format!("{service} (last round did not pass)"));
            }
            Some(_) => {}
        }
    }
    if !unhealthy.is_empty() {
        return GateVerdict::fail(format!("unhealthy: {}", unhealthy.join(", ")));
    }
    if !unchecked.is_empty() {
        return GateVerdict::inconclusive(format!("not checked yet: {}", unchecked.join(", ")));
    }
    GateVerdict::pass(format!("healthy: {}", services.join(", ")))
}

/// How many invalid routes an `rpki` verdict names (the rest are counted).
const RPKI_ROUTES_NAMED: usize = 5;

/// The `rpki` gate at one location (`GET /v1/rpki`). Passes only when the daemon validates
/// (`enabled`), its VRP set is the current data of a connected cache (`in_sync`, with the cache,
/// serial and age of an End of Data) and no route is invalid — neither by the counts nor by any
/// route's state. Invalid routes, or RPKI switched off at the location, fail; a set that is not
/// (or no longer) in sync is inconclusive: no data is never a pass.
pub fn check_rpki(view: &RpkiView) -> GateVerdict {
    if !view.enabled {
        return GateVerdict::fail(
            "RPKI is disabled at this location (no [rpki] in its configuration): no route's origin is validated",
        );
    }
    let invalid: Vec<String> = view
        .routes
        .iter()
        .filter(|route| route.state.is_invalid())
        .map(|route| {
            let covering: Vec<String> = route
                .covering
                .iter()
                .map(|vrp| format!("{}-{} AS{}", vrp.prefix, vrp.max_length, vrp.asn))
                .collect();
            format!(
                "{} from AS{} ({}; covered by {})",
                route.prefix,
                route.origin_asn,
                match route.state {
                    topologyd_api::RouteRpkiState::InvalidLength => "beyond max-length",
                    _ => "origin not authorised",
                },
                if covering.is_empty() {
                    "no VRP listed".to_string()
                } else {
                    covering.join(", ")
                }
            )
        })
        .collect();
    if view.counts.invalid > 0 || !invalid.is_empty() {
        let total = invalid
            .len()
            .max(usize::try_from(view.counts.invalid).unwrap_or(usize::MAX));
        let mut named = invalid;
        named.truncate(RPKI_ROUTES_NAMED);
        let rest = total.saturating_sub(named.len());
        return GateVerdict::fail(format!(
            "{total} route(s) RPKI-invalid: {}{}",
            if named.is_empty() {
                "the counts say so, but no route is listed".to_string()
            } else {
                named.join("; ")
            },
            if rest > 0 && !named.is_empty() {
                format!("; and {rest} more")
            } else {
                String::new()
            }
        ));
    }
    if view.sync != RpkiSyncState::InSync {
        return GateVerdict::inconclusive(format!(
            "the VRP set is not in sync ({}): no data is never a pass",
            match view.sync {
                RpkiSyncState::Disabled => "disabled",
                RpkiSyncState::Connecting => "connecting: no cache has completed an update yet",
                RpkiSyncState::Stale => "stale: the serving cache's session is gone",
                RpkiSyncState::Expired => "expired: no cache for longer than expire",
                RpkiSyncState::InSync => "in sync",
            }
        ));
    }
    let (Some(cache), Some(serial), Some(age)) =
        (&view.cache, view.serial, view.last_update_age_seconds)
    else {
        return GateVerdict::inconclusive(
            "the VRP set is said to be in sync but names no cache, serial or update age",
        );
    };
    GateVerdict::pass(format!(
        "in sync with {cache} (serial {serial}, {age} s old, {} VRPs); {} valid, {} not found, \
         none invalid",
        view.vrps_ipv4 + view.vrps_ipv6,
        view.counts.valid,
        view.counts.not_found
    ))
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A regex alternation matching exactly these names (RE2 metacharacters escaped).
pub fn regex_alternation(names: &[String]) -> String {
    names
        .iter()
        .map(|name| {
            let mut escaped = String::with_capacity(name.len());
            for character in name.chars() {
                if "\\.+*?()|[]{}^$".contains(character) {
                    escaped.push('\\');
                    // PromQL string literals need the backslash itself escaped.
                    escaped.push('\\');
                }
                escaped.push(character);
            }
            escaped
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// Replaces `{wave}` and `{control}` in a PromQL query.
pub fn expand_query(query: &str, wave: &[String], control: &[String]) -> String {
    query
        .replace("{wave}", &regex_alternation(wave))
        .replace("{control}", &regex_alternation(control))
}

/// One sample of an instant query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses a Prometheus `/api/v1/query` answer into samples (a scalar is one sample).
/// `Err` on an error answer or an unexpected shape.
pub fn parse_promql(body: &Value) -> Result<Vec<Sample>, String> {
    match body["status"].as_str() {
        Some("success") => {}
        Some("error") => {
            return Err(format!(
                "Prometheus: {}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no message")
            ));
        }
        _ => return Err("not a Prometheus query answer (no status)".into()),
    }
    let data = &body["data"];
    let value_of = |pair: &Value| -> Result<f64, String> {
        let text = pair
            .get(1)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("sample value is not [time, \"value\"]: {pair}"))?;
        match text {
            "NaN" => Ok(f64::NAN),
            "+Inf" | "Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            _ => text
                .parse::<f64>()
                .map_err(|_| format!("sample value `{text}` is not a number")),
        }
    };
    match data["resultType"].as_str() {
        Some("vector") => {
            let result = data["result"]
                .as_array()
                .ok_or_else(|| "vector result is not a list".to_string())?;
            result
                .iter()
                .map(|item| {
                    let labels = item["metric"]
                        .as_object()
                        .map(|metric| {
                            metric
                                .iter()
                                .map(|(key, value)| {
                                    (key.clone(), value.as_str().unwrap_or("").to_string())
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(Sample {
                        labels,
                        value: value_of(&item["value"])?,
                    })
                })
                .collect()
        }
        Some("scalar") => Ok(vec![Sample {
            labels: BTreeMap::new(),
            value: value_of(&data["result"])?,
        }]),
        Some(other) => Err(format!(
            "result type `{other}` is not supported (use an instant vector or a scalar)"
        )),
        None => Err("the answer has no resultType".into()),
    }
}

/// Judges samples against the bounds: every sample within them passes; empty, NaN or ±Inf is
/// inconclusive.
pub fn judge_promql(samples: &[Sample], min: Option<f64>, max: Option<f64>) -> GateVerdict {
    if samples.is_empty() {
        return GateVerdict::inconclusive("the query returned no data");
    }
    let describe = |sample: &Sample| {
        if sample.labels.is_empty() {
            format!("{}", sample.value)
        } else {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(key, value)| format!("{key}=\"{value}\""))
                .collect();
            format!("{{{}}} {}", labels.join(","), sample.value)
        }
    };
    // NaN and ±Inf are never a pass, whatever the bounds: a ratio whose denominator fell to 0
    // is +Inf, and "+Inf ≥ 0.99" must not send a change to the whole fleet.
    if let Some(sample) = samples.iter().find(|sample| !sample.value.is_finite()) {
        return GateVerdict::inconclusive(format!(
            "{} sample (no data is never a pass): {}",
            if sample.value.is_nan() {
                "NaN"
            } else {
                "infinite"
            },
            describe(sample)
        ));
    }
    let out_of_bounds: Vec<String> = samples
        .iter()
        .filter(|sample| {
            min.is_some_and(|min| sample.value < min) || max.is_some_and(|max| sample.value > max)
        })
        .map(describe)
        .collect();
    let bounds = match (min, max) {
        (Some(min), Some(max)) => format!("[{min}, {max}]"),
        (Some(min), None) => format!("≥ {min}"),
        (None, Some(max)) => format!("≤ {max}"),
        (None, None) => "any".into(),
    };
    if out_of_bounds.is_empty() {
        let values: Vec<String> = samples.iter().take(4).map(describe).collect();
        GateVerdict::pass(format!("{} within {bounds}", values.join(", ")))
    } else {
        GateVerdict::fail(format!("outside {bounds}: {}", out_of_bounds.join(", ")))
    }
}

/// `GET {base}/api/v1/query?query=…` over plain HTTP/1.1; the JSON answer (also for 4xx/5xx
/// answers that carry Prometheus' error document).
pub async fn query_prometheus(base: &str, query: &str, timeout: Duration) -> Result<Value, String> {
    let authority = base.strip_prefix("http://").unwrap_or(base).to_string();
    let path = format!(
        "/api/v1/query?query={}",
        utf8_percent_encode(query, QUERY_VALUE)
    );
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|error| format!("cannot connect to Prometheus at {authority}: {error}"))?;
        let request = OneShot::get(authority.as_str(), path).header(ACCEPT, "application/json");
        let answer = http_client::exchange(tcp, request)
            .await
            .map_err(|error| format!("Prometheus at {authority}: {error}"))?;
        serde_json::from_slice::<Value>(&answer.body).map_err(|error| {
            format!(
                "Prometheus at {authority} answered {} with a body that is not JSON: {error}",
                answer.status.as_u16()
            )
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "Prometheus at {authority} did not answer within {timeout:?}"
            ))
        })
}

/// Evaluates a promql gate: expand, query, parse, judge. Errors are inconclusive.
pub async fn evaluate_promql(
    base: &str,
    query: &str,
    wave: &[String],
    control: &[String],
    min: Option<f64>,
    max: Option<f64>,
    timeout: Duration,
) -> GateVerdict {
    let expanded = expand_query(query, wave, control);
    match query_prometheus(base, &expanded, timeout).await {
        Ok(body) => match parse_promql(&body) {
            Ok(samples) => judge_promql(&samples, min, max),
            Err(error) => GateVerdict::inconclusive(error),
        },
        Err(error) => GateVerdict::inconclusive(error),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod rpki_tests;
