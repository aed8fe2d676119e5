//! Gate evaluation: turning what the daemons and Prometheus report into pass / fail /
//! inconclusive. *No data is never a pass.*
//!
//! Owns: the verdict rules of the three gate kinds (`daemon`, `probes`, `promql`; see
//! `docs/rollouts.md`), the comparison of a daemon's per-peer routes (`GET /v1/routes`) with
//! what a topology desires at its location minus what health or drain withdrew
//! (`GET /v1/health`) — also used to verify a rollback —, PromQL placeholder expansion and
//! response parsing, and the plain-HTTP Prometheus query.
//!
//! Must not touch: when gates are evaluated or what a result leads to (`machine.rs`), the
//! daemons' control API client (`control_client.rs`; the driver fetches and passes JSON in).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::Request;
use hyper::header::{ACCEPT, HOST};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use topologyd_topology::AnnouncedRoute;

use super::journal::GateResultKind;

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

/// One service in a daemon's health report.
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

/// A daemon's `GET /v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthView {
    pub fail_static: bool,
    pub fail_static_reason: Option<String>,
    pub location_drained: bool,
    pub services: BTreeMap<String, ServiceHealth>,
}

impl HealthView {
    /// Parses `GET /v1/health`; `None` (the daemon has no health endpoint) means "everything
    /// announced".
    pub fn parse(value: &Value) -> Result<HealthView, String> {
        let object = value
            .as_object()
            .ok_or_else(|| "the health report is not a JSON object".to_string())?;
        let mut services = BTreeMap::new();
        if let Some(map) = object.get("services").and_then(Value::as_object) {
            for (name, service) in map {
                services.insert(
                    name.clone(),
                    ServiceHealth {
                        checked: service["checked"].as_bool().unwrap_or(false),
                        healthy: service["healthy"].as_bool().unwrap_or(false),
                        state: service["state"].as_str().unwrap_or("unknown").to_string(),
                        rounds: service["rounds"].as_u64().unwrap_or(0),
                        last_round_passed: service["last_round"].as_array().is_some_and(|checks| {
                            !checks.is_empty()
                                && checks.iter().all(|check| check["result"] == "pass")
                        }),
                        action: service["action"].as_str().unwrap_or("announce").to_string(),
                        drained: service["drained"].as_bool().unwrap_or(false),
                    },
                );
            }
        }
        Ok(HealthView {
            fail_static: object
                .get("fail_static")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            fail_static_reason: object
                .get("fail_static_reason")
                .and_then(Value::as_str)
                .map(str::to_string),
            location_drained: object
                .get("location_drained")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            services,
        })
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

fn strings(value: &Value) -> Vec<String> {
    let mut items: Vec<String> = value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    items.sort();
    items
}

fn is_ipv6(prefix: &str) -> bool {
    prefix.contains(':')
}

/// Compares every peer's routes (`GET /v1/routes`) with `expected` minus the services `health`
/// says are withdrawn. Degraded routes (the route's `degraded` flag, or the service's action)
/// are compared by prefix only. A family a peer carries no route of while `expected` has
/// some is only accepted when the routes document lists the peer's families without it.
pub fn compare_routes(
    expected: &[AnnouncedRoute],
    health: &HealthView,
    routes: &Value,
) -> Result<(), String> {
    let wanted: BTreeMap<String, &AnnouncedRoute> = expected
        .iter()
        .filter(|route| !health.withdrawn(&route.service))
        .map(|route| (route.prefix.to_string(), route))
        .collect();
    let peers = routes["peers"]
        .as_object()
        .ok_or_else(|| "the routes document has no peers object".to_string())?;
    let mut problems = Vec::new();
    for (peer, view) in peers {
        let list = view["routes"].as_array().cloned().unwrap_or_default();
        let families: Option<BTreeSet<String>> = view["families"].as_array().map(|families| {
            families
                .iter()
                .filter_map(|family| family.as_str().map(str::to_lowercase))
                .collect()
        });
        let carries = |ipv6: bool| -> bool {
            match &families {
                Some(families) => families.contains(if ipv6 { "ipv6" } else { "ipv4" }),
                None => true,
            }
        };
        let mut seen = BTreeSet::new();
        for route in &list {
            let Some(prefix) = route["prefix"].as_str() else {
                problems.push(format!("peer {peer}: a route without a prefix"));
                continue;
            };
            seen.insert(prefix.to_string());
            let Some(want) = wanted.get(prefix) else {
                problems.push(format!(
                    "peer {peer}: {prefix} is announced but not planned"
                ));
                continue;
            };
            let degraded =
                route["degraded"].as_bool().unwrap_or(false) || health.degraded(&want.service);
            if degraded {
                continue;
            }
            let med = route["med"]
                .as_u64()
                .and_then(|med| u32::try_from(med).ok());
            if med != want.attributes.med {
                problems.push(format!(
                    "peer {peer}: {prefix} has MED {med:?}, the plan says {:?}",
                    want.attributes.med
                ));
            }
            let communities = strings(&route["communities"]);
            let mut planned: Vec<String> = want
                .attributes
                .communities
                .iter()
                .map(ToString::to_string)
                .collect();
            planned.sort();
            if communities != planned {
                problems.push(format!(
                    "peer {peer}: {prefix} has communities {communities:?}, the plan says {planned:?}"
                ));
            }
            let large = strings(&route["large_communities"]);
            let mut planned_large: Vec<String> = want
                .attributes
                .large_communities
                .iter()
                .map(ToString::to_string)
                .collect();
            planned_large.sort();
            if large != planned_large {
                problems.push(format!(
                    "peer {peer}: {prefix} has large communities {large:?}, the plan says {planned_large:?}"
                ));
            }
        }
        let has_family = |ipv6: bool| seen.iter().any(|prefix| is_ipv6(prefix) == ipv6);
        let missing: Vec<&String> = wanted
            .keys()
            .filter(|prefix| !seen.contains(*prefix))
            .filter(|prefix| {
                let ipv6 = is_ipv6(prefix);
                // Without a families list, a peer with no route at all of a family is taken
                // not to carry that family (single-family sessions).
                carries(ipv6) && (families.is_some() || has_family(ipv6))
            })
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

/// Sessions and sync from `GET /v1/status`: every peer Established and holding `generation`.
/// `Err(verdict)` when not.
pub fn check_sessions(status: &Value, generation: u64) -> Result<(), GateVerdict> {
    let peers = status["peers"].as_array().cloned().unwrap_or_default();
    let mut down = Vec::new();
    let mut unsynced = Vec::new();
    for peer in &peers {
        let name = peer["name"].as_str().unwrap_or("?");
        if !peer["established"].as_bool().unwrap_or(false) {
            down.push(format!(
                "{name} ({})",
                peer["state"].as_str().unwrap_or("not established")
            ));
        } else if peer["generation_synced"].as_u64() != Some(generation) {
            unsynced.push(format!(
                "{name} (synced {})",
                peer["generation_synced"]
                    .as_u64()
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
    status: &Value,
    routes: &Value,
    health: &HealthView,
    expected: &[AnnouncedRoute],
    new_hash: &str,
    refusals_before: u64,
) -> GateVerdict {
    let hash = status["hash"].as_str().unwrap_or("");
    if hash != new_hash {
        return GateVerdict::fail(format!(
            "runs topology {}, not the new one {}",
            short(hash),
            short(new_hash)
        ));
    }
    let Some(generation) = status["generation"].as_u64() else {
        return GateVerdict::inconclusive("the status has no generation");
    };
    let refusals = status["runtime_guard_refusals"].as_u64().unwrap_or(0);
    if refusals > refusals_before {
        return GateVerdict::fail(format!(
            "runtime guard refusals rose from {refusals_before} to {refusals}"
        ));
    }
    if let Err(verdict) = check_sessions(status, generation) {
        return verdict;
    }
    if routes["generation"]
        .as_u64()
        .is_some_and(|routes_generation| routes_generation != generation)
    {
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

/// Judges samples against the bounds: every sample within them passes; empty or NaN is
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
    if let Some(sample) = samples.iter().find(|sample| sample.value.is_nan()) {
        return GateVerdict::inconclusive(format!("NaN sample: {}", describe(sample)));
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

/// Percent-encodes a query-string value (RFC 3986 §2.3 unreserved characters kept).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `GET {base}/api/v1/query?query=…` over plain HTTP/1.1; the JSON answer (also for 4xx/5xx
/// answers that carry Prometheus' error document).
pub async fn query_prometheus(base: &str, query: &str, timeout: Duration) -> Result<Value, String> {
    let authority = base.strip_prefix("http://").unwrap_or(base).to_string();
    let path = format!("/api/v1/query?query={}", percent_encode(query));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|error| format!("cannot connect to Prometheus at {authority}: {error}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|error| format!("Prometheus at {authority}: {error}"))?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .uri(path.as_str())
            .header(HOST, authority.as_str())
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|error| format!("cannot build the Prometheus request: {error}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("Prometheus at {authority}: {error}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("Prometheus at {authority}: {error}"))?
            .to_bytes();
        driver.abort();
        serde_json::from_slice::<Value>(&bytes).map_err(|error| {
            format!(
                "Prometheus at {authority} answered {status} with a body that is not JSON: {error}"
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use topologyd_topology::RouteAttributes;

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

    fn routes_document(peers: Value) -> Value {
        json!({ "generation": 5, "peers": peers })
    }

    fn entry(prefix: &str, med: Option<u32>) -> Value {
        json!({ "prefix": prefix, "as_path": [], "med": med, "communities": [], "large_communities": [] })
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
        let health = HealthView::parse(&json!({
            "location": "ams01", "fail_static": false, "location_drained": false,
            "services": {
                "resolver": {"checked": true, "healthy": false, "state": "unhealthy", "action": "withdraw", "drained": false},
                "cdn": {"checked": true, "healthy": false, "state": "unhealthy", "action": "degrade", "drained": false}
            }
        }))
        .unwrap();
        let routes = routes_document(json!({"edge": {"routes": [
            {"prefix": "198.51.100.0/24", "med": 1000, "communities": ["13335:666"], "large_communities": [], "degraded": true}]}}));
        assert_eq!(compare_routes(&expected, &health, &routes), Ok(()));
        assert_eq!(
            check_probes(&health, &["resolver".to_string()]).result,
            GateResultKind::Fail
        );
    }

    #[test]
    fn a_drain_the_floor_holds_back_stays_announced() {
        let expected = vec![route("192.0.2.0/24", "resolver", None)];
        let health = HealthView::parse(&json!({
            "fail_static": false, "location_drained": true,
            "services": {"resolver": {"checked": false, "healthy": true, "action": "announce", "drained": true, "floor_held": true}}
        }))
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
        let ipv4_only = routes_document(json!({"v4": {"routes": [entry("192.0.2.0/24", None)]}}));
        assert_eq!(compare_routes(&expected, &health, &ipv4_only), Ok(()));
        let declared = routes_document(
            json!({"v4": {"families": ["ipv4", "ipv6"], "routes": [entry("192.0.2.0/24", None)]}}),
        );
        assert!(compare_routes(&expected, &health, &declared).is_err());
    }

    #[test]
    fn daemon_gate_verdicts() {
        let expected = vec![route("192.0.2.0/24", "resolver", None)];
        let status = |hash: &str, established: bool, synced: u64, refusals: u64| {
            json!({"generation": 5, "hash": hash, "runtime_guard_refusals": refusals, "peers": [
                {"name": "edge", "established": established, "state": "Established", "generation_synced": synced}]})
        };
        let routes = routes_document(json!({"edge": {"routes": [entry("192.0.2.0/24", None)]}}));
        let health = HealthView::default();
        let check =
            |status: &Value| check_daemon(status, &routes, &health, &expected, "new", 2).result;
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
}
