//! End to end: a real Prometheus server scrapes the real `topologyd` (peering with a real
//! BIRD 2) and every assertion goes through Prometheus's HTTP query API, so the exposition is
//! checked as Prometheus parses it (names, units, labels, types):
//!
//! - `topologyd_bgp_session_state` is 6 (Established) for the peer;
//! - `topologyd_routes_desired` and `topologyd_routes_announced` per family equal what the
//!   topology makes the location announce;
//! - `topologyd_generation_info` carries the running generation and its hash;
//! - after a push through the control API: the apply latency histogram counts one apply, the
//!   generation moves to 2, the per-family counts follow, the last-apply time is set, and the
//!   prefix counters say one more route was sent.
//! - the per-peer series are read at scrape time: the moment `/ready` shows a peer's session
//!   went down (or came back), one scrape taken right then already shows the new session state,
//!   routes announced and readiness — no waiting for a fold.

use topologyd_harness::daemon_fixture;

use daemon_fixture::{
    AMS01_IPV4_ROUTES, AMS01_IPV6_ROUTES, AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, WAIT,
    check, start_bird, topology, wait_for_routes,
};
use topologyd_harness::peers::{Labels, Prometheus};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, Topologyd, wait_until, write_files,
};

const PEER: &str = "edge-bird";

/// Waits until `promql` yields exactly one sample equal to `expected`; returns its labels.
fn wait_for_value(prometheus: &Prometheus, promql: &str, expected: f64) -> Labels {
    check(
        wait_until(promql, WAIT, || {
            let samples = prometheus
                .query(promql)
                .map_err(|error| error.to_string())?;
            match samples.as_slice() {
                [(labels, value)] if *value == expected => Ok(labels.clone()),
                _ => Err(format!("expected one sample = {expected}, got {samples:?}")),
            }
        }),
        "Prometheus",
    )
}

#[test]
fn prometheus_scrapes_session_state_routes_generation_and_apply_latency() {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[("sre-admin", "admin")],
    ));
    let (bird, neighbor) = start_bird(&daemon, PEER);
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);

    let admin_address = topologyd.config.admin;
    let prometheus = check(Prometheus::start(&[admin_address]), "starting Prometheus");
    check(
        prometheus.wait_for_target_up(admin_address, WAIT),
        "Prometheus never scraped topologyd",
    );

    wait_for_value(
        &prometheus,
        &format!("topologyd_bgp_session_state{{peer=\"{PEER}\"}}"),
        6.0,
    );
    for (family, routes) in [
        ("ipv4-unicast", AMS01_IPV4_ROUTES),
        ("ipv6-unicast", AMS01_IPV6_ROUTES),
    ] {
        for metric in ["topologyd_routes_desired", "topologyd_routes_announced"] {
            wait_for_value(
                &prometheus,
                &format!("{metric}{{peer=\"{PEER}\",family=\"{family}\"}}"),
                routes as f64,
            );
        }
    }
    let (_, status) = check(topologyd.admin_get("/metrics"), "GET /metrics");
    let hash = status
        .lines()
        .find_map(|line| line.strip_prefix("topologyd_generation_info{generation=\"1\",hash=\""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no generation_info for generation 1 in:\n{status}"))
        .to_string();
    let labels = wait_for_value(&prometheus, "topologyd_generation_info", 1.0);
    assert_eq!(
        labels.get("generation").map(String::as_str),
        Some("1"),
        "{labels:?}"
    );
    assert_eq!(labels.get("hash"), Some(&hash), "{labels:?}");
    wait_for_value(&prometheus, "topologyd_generation", 1.0);
    wait_for_value(&prometheus, "topologyd_apply_duration_seconds_count", 0.0);
    wait_for_value(
        &prometheus,
        &format!(
            "sum(topologyd_bgp_prefixes_total{{peer=\"{PEER}\",direction=\"sent\",kind=\"announced\"}})"
        ),
        AMS01_ROUTES as f64,
    );

    // One push through the control API: one more IPv4 route.
    let bundle = check(tempfile::tempdir(), "a bundle directory");
    let added = format!(
        "{PREFIXES}\n[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"resolver\"\n"
    );
    let files = check(
        write_files(
            bundle.path(),
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &added),
            ],
        ),
        "writing the bundle",
    );
    let listen = topologyd
        .config
        .control
        .as_ref()
        .map(|control| control.listen)
        .unwrap_or_else(|| panic!("no [control]"));
    let admin = Topoctl::new(
        listen,
        &pki.ca,
        check(pki.client("sre-admin"), "a client certificate"),
    );
    let arguments: Vec<String> = files
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let push = check(admin.run("push", &arguments), "topoctl push");
    assert_eq!(push.code, Some(2), "changes made: {push}");
    wait_for_routes(&bird, AMS01_ROUTES + 1);

    wait_for_value(&prometheus, "topologyd_apply_duration_seconds_count", 1.0);
    wait_for_value(&prometheus, "topologyd_generation", 2.0);
    let labels = wait_for_value(&prometheus, "topologyd_generation_info", 1.0);
    assert_eq!(
        labels.get("generation").map(String::as_str),
        Some("2"),
        "{labels:?}"
    );
    assert_ne!(labels.get("hash"), Some(&hash), "the hash of generation 2");
    wait_for_value(
        &prometheus,
        &format!("topologyd_routes_announced{{peer=\"{PEER}\",family=\"ipv4-unicast\"}}"),
        (AMS01_IPV4_ROUTES + 1) as f64,
    );
    wait_for_value(
        &prometheus,
        &format!(
            "sum(topologyd_bgp_prefixes_total{{peer=\"{PEER}\",direction=\"sent\",kind=\"announced\"}})"
        ),
        (AMS01_ROUTES + 1) as f64,
    );
    wait_for_value(
        &prometheus,
        "topologyd_last_successful_apply_timestamp_seconds > bool 1700000000",
        1.0,
    );
    check(topologyd.check_running(), "topologyd");
}

/// The value of the sample whose line starts with `prefix` in one exposition text.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// Polls `/ready` until it answers `status`, then scrapes `/metrics` once, at once.
fn scrape_when_ready_is(topologyd: &Topologyd, status: u16) -> String {
    check(
        wait_until(
            &format!("/ready to answer {status}"),
            WAIT,
            || match topologyd.admin_get("/ready") {
                Ok((code, _)) if code == status => Ok(()),
                other => Err(format!("{other:?}")),
            },
        ),
        "topologyd",
    );
    check(topologyd.admin_get("/metrics"), "GET /metrics").1
}

#[test]
fn a_scrape_right_after_a_session_change_shows_the_new_state() {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (bird, neighbor) = start_bird(&daemon, PEER);
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    let state = format!("topologyd_bgp_session_state{{peer=\"{PEER}\"}} ");
    let announced =
        format!("topologyd_routes_announced{{peer=\"{PEER}\",family=\"ipv4-unicast\"}} ");

    // The session goes down: the scrape taken as soon as /ready says so shows it.
    check(bird.birdc(&["disable", "peer"]), "birdc disable");
    let down = scrape_when_ready_is(&topologyd, 503);
    assert_ne!(sample(&down, &state), Some(6.0), "{down}");
    assert!(sample(&down, &state).is_some(), "{down}");
    assert_eq!(sample(&down, &announced), Some(0.0), "{down}");
    assert_eq!(sample(&down, "topologyd_ready "), Some(0.0), "{down}");
    assert_eq!(
        sample(&down, "topologyd_peers_holding_generation "),
        Some(0.0),
        "{down}"
    );

    // And back: Established with every route the moment /ready answers 200 again.
    check(bird.birdc(&["enable", "peer"]), "birdc enable");
    let up = scrape_when_ready_is(&topologyd, 200);
    assert_eq!(sample(&up, &state), Some(6.0), "{up}");
    assert_eq!(
        sample(&up, &announced),
        Some(AMS01_IPV4_ROUTES as f64),
        "{up}"
    );
    assert_eq!(sample(&up, "topologyd_ready "), Some(1.0), "{up}");
    assert_eq!(
        sample(&up, "topologyd_peers_holding_generation "),
        Some(1.0),
        "{up}"
    );
    check(topologyd.check_running(), "topologyd");
}
