//! The monitoring kit (`monitoring/`) against the real tools and the daemon's own metrics:
//!
//! - `promtool check rules` accepts the alert rules and `promtool test rules` passes their unit
//!   tests (`monitoring/alerts_test.yml`);
//! - both Grafana dashboards are valid dashboard JSON (uid, title, panels with positions and
//!   Prometheus targets), and every PromQL expression in them parses: each is handed to
//!   `promtool check rules` as a recording rule, with Grafana's variables substituted;
//! - every `topologyd_*` metric the rules and dashboards use is one the daemon exposes: the
//!   names are checked against the classic exposition of a registry in which every family has
//!   a series (the RPKI family included: a sample with every state is published).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tokio::sync::watch;
use topologyd::metrics::exposition::{Exposition, to_prometheus_text};
use topologyd::metrics::{Metrics, RpkiSample, ServiceReport};
use topologyd::peer::PeerStatus;
use topologyd_api::{RpkiRouteCounts, RpkiSyncState};

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(
        || PathBuf::from("../monitoring"),
        |root| root.join("monitoring"),
    )
}

fn dashboards() -> Vec<PathBuf> {
    let directory = monitoring().join("grafana");
    let mut dashboards: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "json")
        })
        .collect();
    dashboards.sort();
    assert!(
        dashboards.len() >= 2,
        "a location and a fleet dashboard: {dashboards:?}"
    );
    dashboards
}

/// Runs promtool; panics with everything it said unless it succeeded.
fn promtool(arguments: &[&str], directory: &Path) -> String {
    let output = Command::new("promtool")
        .args(arguments)
        .current_dir(directory)
        .output()
        .unwrap_or_else(|error| panic!("promtool (Debian package prometheus): {error}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {arguments:?} failed:\n{said}"
    );
    said
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests_pass() {
    let said = promtool(&["check", "rules", "alerts.yml"], &monitoring());
    assert!(said.contains("SUCCESS"), "{said}");
    let said = promtool(&["test", "rules", "alerts_test.yml"], &monitoring());
    assert!(said.contains("SUCCESS"), "{said}");
}

fn expressions(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match inner {
                    Value::String(expression) if key == "expr" => found.push(expression.clone()),
                    _ => expressions(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| expressions(item, found)),
        _ => {}
    }
}

/// Grafana's variables replaced by what they stand for at query time.
fn substitute(expression: &str) -> String {
    expression
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "6h")
        .replace("$instance", "ams01:9179")
}

fn dashboard_expressions(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let dashboard: Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{}: not JSON: {error}", path.display()));
    let name = path.display();
    for key in ["uid", "title"] {
        assert!(
            dashboard[key].as_str().is_some_and(|text| !text.is_empty()),
            "{name}: no {key}"
        );
    }
    assert!(
        dashboard["schemaVersion"].is_u64(),
        "{name}: no schemaVersion"
    );
    let panels = dashboard["panels"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no panels"));
    assert!(!panels.is_empty(), "{name}: no panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "{name}: a panel without a title");
        assert!(
            ids.insert(panel["id"].as_u64()),
            "{name}: panel id repeated"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "{name}: {title}: gridPos.{key}"
            );
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        assert!(!targets.is_empty(), "{name}: {title}: no targets");
        for target in targets {
            assert_eq!(
                target["datasource"]["type"], "prometheus",
                "{name}: {title}"
            );
            assert!(
                target["expr"].as_str().is_some_and(|expr| !expr.is_empty()),
                "{name}: {title}: a target without expr"
            );
        }
    }
    let mut found = Vec::new();
    expressions(&dashboard, &mut found);
    found
}

#[test]
fn the_dashboards_are_grafana_json_and_every_expression_parses() {
    let mut rules = String::from("groups:\n  - name: dashboard_expressions\n    rules:\n");
    let mut count = 0;
    for dashboard in dashboards() {
        for expression in dashboard_expressions(&dashboard) {
            let expression = substitute(&expression);
            assert!(
                !expression.contains('$'),
                "{}: an unknown Grafana variable in {expression}",
                dashboard.display()
            );
            count += 1;
            let quoted = serde_json::to_string(&expression).unwrap_or_default();
            rules.push_str(&format!(
                "      - record: dashboard:expression_{count}\n        expr: {quoted}\n"
            ));
        }
    }
    assert!(count >= 20, "only {count} expressions");
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let file = directory.path().join("dashboard_expressions.yml");
    std::fs::write(&file, &rules).unwrap_or_else(|error| panic!("writing rules: {error}"));
    let said = promtool(
        &["check", "rules", "dashboard_expressions.yml"],
        directory.path(),
    );
    assert!(
        said.contains(&format!("SUCCESS: {count} rules found")),
        "{said}\n{rules}"
    );
}

/// A registry in which every family has at least one series, rendered in the classic format.
fn full_exposition() -> String {
    let metrics = Metrics::new();
    let (_sender, status) = watch::channel(PeerStatus {
        name: "edge1".into(),
        state: "Established".into(),
        established: true,
        updates_sent: 1,
        prefixes_announced_sent: 1,
        prefixes_withdrawn_sent: 1,
        updates_received: 1,
        ..PeerStatus::default()
    });
    metrics.add_peer("edge1", status);
    metrics.count_guard_refusals("G2", 1);
    metrics.set_generation(3, "sha256:abcd");
    metrics.observe_apply(0.1, 1_700_000_000);
    metrics.observe_reconcile(0.01);
    metrics.set_services(&[ServiceReport {
        service: "resolver".into(),
        healthy: Some(true),
        action: "announce",
        drained: true,
        routes_announced: 2,
    }]);
    metrics.count_health_transition("resolver", "healthy");
    metrics.count_probe_rounds("resolver", "pass", 1);
    metrics.set_fail_static(false);
    metrics.set_lease_held(false);
    metrics.set_location_drained(false);
    metrics.set_local_addresses_bound(1);
    metrics.count_address_error("bind");
    metrics.state_quarantined_counter().inc();
    metrics.set_rpki(RpkiSample {
        sync: Some(RpkiSyncState::InSync),
        caches: vec![("127.0.0.1:3323".into(), true, true)],
        serial: Some(7),
        last_update_unix_ms: Some(1_700_000_000_000),
        vrps_ipv4: 1,
        vrps_ipv6: 1,
        counts: RpkiRouteCounts {
            valid: 1,
            invalid: 1,
            not_found: 1,
        },
        invalid_announced: 1,
    });
    let openmetrics = metrics
        .render()
        .unwrap_or_else(|error| panic!("render: {error}"));
    assert_eq!(Exposition::negotiate(None), Exposition::PrometheusText);
    to_prometheus_text(&openmetrics)
}

/// Every `topologyd_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("topologyd_") {
        let before = rest[..start].chars().last();
        let tail = &rest[start..];
        let end = tail
            .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|character| character.is_ascii_alphanumeric() || character == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_kit_uses_is_one_the_daemon_exposes() {
    let exposition = full_exposition();
    let exposed: BTreeSet<String> = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    let mut used = metric_names(
        &std::fs::read_to_string(monitoring().join("alerts.yml"))
            .unwrap_or_else(|error| panic!("alerts.yml: {error}")),
    );
    for dashboard in dashboards() {
        for expression in dashboard_expressions(&dashboard) {
            used.extend(metric_names(&expression));
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|name| !exposed.contains(*name))
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics used by monitoring/ that the daemon does not expose: {unknown:?}\nexposed: {exposed:?}"
    );
}
