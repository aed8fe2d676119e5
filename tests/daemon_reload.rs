//! End to end: SIGHUP reloads the daemon configuration without disturbing what did not change.
//!
//! - two BIRD peers; the configuration is rewritten to add a third and remove one, then
//!   SIGHUP: the new peer gets every route, the removed one loses its session (and, as the
//!   peer is gone for good, its routes), and the untouched peer's session is not reset (BIRD's
//!   state-change time is unchanged) and it has received nothing: no withdrawal, no re-sent
//!   route;
//! - an invalid configuration on SIGHUP is refused with the error in the log, and everything
//!   keeps running as before.

mod daemon_common;

use std::time::Duration;

use daemon_common::{AMS01_ROUTES, LOCAL_ASN, WAIT, check, start_bird, topology, wait_for_routes};
use topologyd_suite::peers::{BgpPeer, BirdPeer};
use topologyd_suite::topologyd::{DaemonConfig, Topologyd, wait_until};

/// BIRD's `show protocols` line of the BGP session: its `Since` column is the time of the last
/// state change, so an unchanged line means the session was not reset.
fn protocol_line(bird: &BirdPeer) -> String {
    let output = check(bird.birdc(&["show", "protocols"]), "birdc show protocols");
    output
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("BGP"))
        .unwrap_or_else(|| panic!("no BGP protocol in:\n{output}"))
        .to_string()
}

fn config_file(topologyd: &Topologyd) -> std::path::PathBuf {
    topologyd.directory().join("topologyd.toml")
}

#[test]
fn sighup_adds_and_removes_peers_without_resetting_the_others() {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (kept, kept_neighbor) = start_bird(&daemon, "kept");
    let (removed, removed_neighbor) = start_bird(&daemon, "removed");
    let (added, added_neighbor) = start_bird(&daemon, "added");
    daemon.neighbors = vec![kept_neighbor.clone(), removed_neighbor];
    let mut topologyd = check(
        Topologyd::start(daemon.clone(), &topology()),
        "starting topologyd",
    );
    check(topologyd.wait_ready(WAIT), "topologyd never converged");
    wait_for_routes(&kept, AMS01_ROUTES);
    wait_for_routes(&removed, AMS01_ROUTES);
    let kept_line = protocol_line(&kept);
    let kept_counters = check(kept.counters(), "BIRD counters");

    daemon.neighbors = vec![kept_neighbor, added_neighbor];
    check(
        topologyd.rewrite_config(daemon),
        "rewriting the configuration",
    );
    check(topologyd.signal("HUP"), "SIGHUP");

    check(
        wait_until("the added peer to get every route", WAIT, || {
            match added.routes() {
                Ok(routes) if routes.len() == AMS01_ROUTES => Ok(()),
                other => Err(format!(
                    "{other:?}; topologyd log:\n{}",
                    topologyd.log_tail()
                )),
            }
        }),
        "BIRD",
    );
    check(
        wait_until(
            "the removed peer's session to close",
            WAIT,
            || match removed.session_state() {
                Ok(state) if !state.is_established() => Ok(()),
                other => Err(format!("{other:?}")),
            },
        ),
        "BIRD",
    );
    wait_for_routes(&removed, 0);
    check(
        wait_until("the reload to be logged", WAIT, || {
            if topologyd.log().contains("configuration reloaded") {
                Ok(())
            } else {
                Err(topologyd.log_tail())
            }
        }),
        "topologyd",
    );
    assert_eq!(
        protocol_line(&kept),
        kept_line,
        "the untouched peer's session was reset"
    );
    assert_eq!(
        check(kept.counters(), "BIRD counters"),
        kept_counters,
        "the untouched peer received something"
    );
    assert_eq!(check(kept.routes(), "BIRD routes").len(), AMS01_ROUTES);
    let (_, metrics) = check(topologyd.admin_get("/metrics"), "GET /metrics");
    // The gauges of a removed peer go (a stale session state would page someone); its
    // counters may stay until the next restart.
    for gauge in [
        "topologyd_bgp_session_state{peer=\"removed\"",
        "topologyd_routes_desired{peer=\"removed\"",
        "topologyd_routes_announced{peer=\"removed\"",
    ] {
        assert!(!metrics.contains(gauge), "{gauge} stayed:\n{metrics}");
    }
    assert!(
        metrics.contains("topologyd_bgp_session_state{peer=\"added\"} 6"),
        "{metrics}"
    );

    // An invalid configuration: refused, logged, nothing changes.
    let added_line = protocol_line(&added);
    check(
        std::fs::write(
            config_file(&topologyd),
            "location = \"ams01\"\nlocal_asn = \"not a number\"\n",
        ),
        "writing a broken configuration",
    );
    check(topologyd.signal("HUP"), "SIGHUP");
    check(
        wait_until("the refused reload to be logged", WAIT, || {
            if topologyd.log().contains("reload refused") {
                Ok(())
            } else {
                Err(topologyd.log_tail())
            }
        }),
        "topologyd",
    );
    let log = topologyd.log();
    assert!(
        log.contains("topologyd.toml:2:"),
        "the error names file:line:column:\n{log}"
    );
    std::thread::sleep(Duration::from_millis(500));
    check(
        topologyd.check_running(),
        "topologyd after a refused reload",
    );
    assert_eq!(protocol_line(&kept), kept_line);
    assert_eq!(protocol_line(&added), added_line);
    assert_eq!(check(kept.counters(), "BIRD counters"), kept_counters);
    assert_eq!(check(added.routes(), "BIRD routes").len(), AMS01_ROUTES);
    let (status, _) = check(topologyd.admin_get("/ready"), "GET /ready");
    assert_eq!(status, 200);
}
