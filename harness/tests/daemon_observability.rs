//! End to end: what operators' tools read from a live `topologyd` (peering with a real BIRD 2).
//!
//! - `/metrics` in the classic Prometheus text format (no `Accept`, or `text/plain`) passes the
//!   real `promtool check metrics` (Debian's prometheus package) with no complaint: every family
//!   has HELP and TYPE, counters are named by their samples;
//! - `/metrics` for a scraper asking for OpenMetrics (Prometheus's own `Accept` header) is
//!   OpenMetrics (`# EOF`, `info` type), and a real Prometheus scrapes it (target up) and reads
//!   `topologyd_build_info{version,commit}` from it;
//! - `topologyd_last_successful_apply_timestamp_seconds` is the bootstrap's time right after
//!   the first start, not 0;
//! - text log lines carry no ANSI colours when standard error is not a terminal;
//! - `TOPOLOGYD_LOG_FORMAT=json` makes every log line one JSON object, the first naming the
//!   version and commit; `TOPOLOGYD_LOG=json` (a format where the filter goes) refuses to start
//!   with what to write instead; `--version` names the commit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use topologyd_harness::daemon_fixture::{self, LOCAL_ASN, WAIT, check, start_bird, topology};
use topologyd_harness::peers::Prometheus;
use topologyd_harness::topologyd::{DaemonConfig, Topologyd, binaries};

const PEER: &str = "edge-bird";
/// The `Accept` header Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// `GET /metrics` with an optional `Accept`: (content type, body).
fn scrape(address: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut stream = check(
        TcpStream::connect_timeout(&address, Duration::from_secs(2)),
        "connecting to the admin listener",
    );
    check(
        stream.set_read_timeout(Some(Duration::from_secs(10))),
        "setting a timeout",
    );
    let accept = accept.map_or(String::new(), |accept| format!("Accept: {accept}\r\n"));
    check(
        write!(
            stream,
            "GET /metrics HTTP/1.1\r\nHost: {address}\r\n{accept}Connection: close\r\n\r\n"
        ),
        "sending the request",
    );
    let mut response = String::new();
    check(stream.read_to_string(&mut response), "reading the answer");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (content_type, body.to_owned())
}

/// Runs `promtool check metrics` on `exposition`: (exit status success, everything it said).
fn promtool_check_metrics(exposition: &str) -> (bool, String) {
    let mut child = check(
        Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        "starting promtool (Debian package prometheus)",
    );
    let mut stdin = child.stdin.take().expect("piped stdin");
    check(stdin.write_all(exposition.as_bytes()), "feeding promtool");
    drop(stdin);
    let output = check(child.wait_with_output(), "running promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn both_expositions_pass_the_real_tools_and_carry_build_info_and_the_bootstrap_apply_time() {
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (bird, neighbor) = start_bird(&daemon, PEER);
    daemon.neighbors.push(neighbor);
    // NO_COLOR empty: no preference, so only the missing terminal keeps the colours off.
    let mut topologyd = check(
        Topologyd::start_with_environment(daemon, &topology(), &[("NO_COLOR", "")]),
        "starting topologyd",
    );
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    let admin = topologyd.config.admin;
    let log = topologyd.log();
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log that is not a terminal:\n{log}"
    );

    for accept in [None, Some("text/plain"), Some("*/*")] {
        let (content_type, classic) = scrape(admin, accept);
        assert_eq!(
            content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{accept:?}"
        );
        assert!(!classic.contains("# EOF"), "{classic}");
        let (passed, said) = promtool_check_metrics(&classic);
        assert!(
            passed && said.trim().is_empty(),
            "promtool check metrics complained:\n{said}\non:\n{classic}"
        );
        // Every family the daemon has, per-peer counters included, is in the check.
        for family in [
            "# TYPE topologyd_bgp_update_messages_total counter",
            "# TYPE topologyd_build_info gauge",
            "# TYPE topologyd_bgp_session_state gauge",
        ] {
            assert!(classic.contains(family), "{family} missing:\n{classic}");
        }
        let applied = sample(
            &classic,
            "topologyd_last_successful_apply_timestamp_seconds ",
        )
        .unwrap_or_else(|| panic!("no last-apply time in:\n{classic}"));
        assert!(
            applied >= started_at as f64 - 1.0,
            "the bootstrap's apply time is {applied}, the test started at {started_at}"
        );
    }

    let (content_type, openmetrics) = scrape(admin, Some(PROMETHEUS_ACCEPT));
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(
        openmetrics.contains("# TYPE topologyd_build info\n"),
        "{openmetrics}"
    );

    // Prometheus asks for OpenMetrics and parses it with its own parser: a parse error would
    // leave the target down.
    let prometheus = check(Prometheus::start(&[admin]), "starting Prometheus");
    check(
        prometheus.wait_for_target_up(admin, WAIT),
        "Prometheus never scraped topologyd",
    );
    let build = check(
        prometheus.query("topologyd_build_info"),
        "querying topologyd_build_info",
    );
    let version = check(
        Command::new(binaries().expect("binaries").join("topologyd"))
            .arg("--version")
            .output(),
        "topologyd --version",
    );
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    match build.as_slice() {
        [(labels, value)] => {
            assert_eq!(*value, 1.0);
            let commit = labels.get("commit").cloned().unwrap_or_default();
            let package = labels.get("version").cloned().unwrap_or_default();
            assert!(!commit.is_empty() && !package.is_empty(), "{labels:?}");
            assert_eq!(
                version.trim(),
                format!("topologyd {package} (commit {commit})"),
                "--version and topologyd_build_info disagree"
            );
        }
        other => panic!("expected one topologyd_build_info sample, got {other:?}"),
    }
}

#[test]
fn json_log_lines_name_the_version_and_a_format_given_as_the_filter_is_refused() {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (bird, neighbor) = start_bird(&daemon, PEER);
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(
        Topologyd::start_with_environment(daemon, &topology(), &[("TOPOLOGYD_LOG_FORMAT", "json")]),
        "starting topologyd",
    );
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    let log = topologyd.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line:?}"))
        })
        .collect();
    assert!(lines.len() >= 3, "{log}");
    let first = &lines[0];
    assert_eq!(first["level"], "INFO", "{first}");
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|message| message.contains("starting")),
        "{first}"
    );
    assert!(
        first["commit"]
            .as_str()
            .is_some_and(|commit| !commit.is_empty())
            && first["version"].is_string(),
        "{first}"
    );
    assert!(!log.contains('\u{1b}'), "no ANSI escapes off a terminal");

    let refused = check(
        Command::new(binaries().expect("binaries").join("topologyd"))
            .arg("--check")
            .arg("--config")
            .arg(topologyd.directory().join("topologyd.toml"))
            .env("TOPOLOGYD_LOG", "json")
            .output(),
        "topologyd --check with TOPOLOGYD_LOG=json",
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("TOPOLOGYD_LOG_FORMAT=json"), "{said}");
}
