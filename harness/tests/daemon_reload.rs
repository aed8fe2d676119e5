//! End to end: SIGHUP reloads the daemon configuration without disturbing what did not change.
//!
//! - two BIRD peers; the configuration is rewritten to add a third and remove one, then
//!   SIGHUP: the new peer gets every route, the removed one loses its session (and, as the
//!   peer is gone for good, its routes, and every series of it leaves `/metrics`), and the untouched peer's session is not reset (BIRD's
//!   state-change time is unchanged) and it has received nothing: no withdrawal, no re-sent
//!   route;
//! - an invalid configuration on SIGHUP is refused with the error in the log, and everything
//!   keeps running as before;
//! - the reload rule (`PeerConfig::session_reset_needed`): a next-hop change applies in place
//!   (the session stays, only the routes of that family are sent again), a hold-time change
//!   resets the session, which comes back with every route.

use topologyd_harness::daemon_fixture;

use std::time::Duration;

use daemon_fixture::{AMS01_ROUTES, LOCAL_ASN, WAIT, check, start_bird, topology, wait_for_routes};
use topologyd_harness::peers::{BgpPeer, BirdPeer};
use topologyd_harness::topologyd::{DaemonConfig, Topologyd, wait_until};

/// BIRD's protocol line once it has settled, as the baseline a later line is compared with:
/// the session up and its state no longer changing (a channel may still finish after the
/// session is up), taken once two reads 300 ms apart show the same session.
fn settled_protocol_line(bird: &BirdPeer) -> String {
    let mut line = protocol_line(bird);
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let again = protocol_line(bird);
        if same_session(&again, &line) {
            return line;
        }
        line = again;
    }
    line
}

/// BIRD's `show protocols` line of the BGP session: its `Since` column is the time of the last
/// state change, so a line whose other columns are unchanged and whose `Since` has not moved
/// means the session was not reset.
fn protocol_line(bird: &BirdPeer) -> String {
    let output = check(bird.birdc(&["show", "protocols"]), "birdc show protocols");
    output
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some("BGP"))
        .unwrap_or_else(|| panic!("no BGP protocol in:\n{output}"))
        .to_string()
}

/// How far BIRD's `Since` column may move without a state change. BIRD keeps the time of the
/// last change on its monotonic clock and prints it as wall time, by the offset between the
/// two clocks at the time of printing, so the same instant can print a millisecond apart. A
/// reset moves it by the time the session takes to come back up, hundreds of milliseconds at
/// least.
const SINCE_JITTER_MS: i64 = 50;

/// Asserts that two of BIRD's protocol lines show the same session (see [`same_session`]).
fn assert_same_session(after: &str, before: &str, what: &str) {
    assert!(
        same_session(after, before),
        "{what}:\nbefore: {before}\nafter:  {after}"
    );
}

/// Whether two of BIRD's protocol lines show the same session: every column equal but
/// `Since`, and `Since` within [`SINCE_JITTER_MS`].
fn same_session(after: &str, before: &str) -> bool {
    let columns = |line: &str| -> Vec<String> {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let (after_columns, before_columns) = (columns(after), columns(before));
    let since = |columns: &[String]| columns.get(4).and_then(|since| since_ms(since));
    let moved = match (since(&after_columns), since(&before_columns)) {
        (Some(after_ms), Some(before_ms)) => {
            // A day has 86,400,000 ms: the shorter way round the clock face.
            let difference = (after_ms - before_ms).rem_euclid(86_400_000);
            difference.min(86_400_000 - difference)
        }
        _ => i64::MAX,
    };
    let others = |columns: &[String]| {
        columns
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != 4)
            .map(|(_, column)| column.clone())
            .collect::<Vec<_>>()
    };
    others(&after_columns) == others(&before_columns) && moved <= SINCE_JITTER_MS
}

/// Milliseconds since midnight of BIRD's `hh:mm:ss.fff` time column.
fn since_ms(column: &str) -> Option<i64> {
    let (clock, fraction) = column.split_once('.')?;
    let mut parts = clock.split(':').map(|part| part.parse::<i64>().ok());
    let (hours, minutes, seconds) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || fraction.len() != 3 {
        return None;
    }
    let milliseconds = fraction.parse::<i64>().ok()?;
    Some(((hours * 60 + minutes) * 60 + seconds) * 1000 + milliseconds)
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
    daemon_fixture::wait_converged(&mut topologyd, &[&kept, &removed]);
    wait_for_routes(&kept, AMS01_ROUTES);
    wait_for_routes(&removed, AMS01_ROUTES);
    let kept_line = settled_protocol_line(&kept);
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
    assert_same_session(
        &protocol_line(&kept),
        &kept_line,
        "the untouched peer's session was reset",
    );
    assert!(
        !topologyd.log().contains("session down peer=kept"),
        "the untouched peer's session went down:\n{}",
        topologyd.log()
    );
    assert_eq!(
        check(kept.counters(), "BIRD counters"),
        kept_counters,
        "the untouched peer received something"
    );
    assert_eq!(check(kept.routes(), "BIRD routes").len(), AMS01_ROUTES);
    let (_, metrics) = check(topologyd.admin_get("/metrics"), "GET /metrics");
    // Every series of a removed peer goes (a stale session state would page someone): they
    // are read from the running peers at scrape time, and it is not running any more.
    assert!(
        !metrics.contains("peer=\"removed\""),
        "the removed peer's series stayed:\n{metrics}"
    );
    assert!(
        metrics.contains("topologyd_bgp_session_state{peer=\"kept\"} 6"),
        "{metrics}"
    );
    // The added peer's series appear with its session (read from its status at scrape time).
    check(
        wait_until("the added peer's session state metric", WAIT, || {
            let (_, metrics) = topologyd
                .admin_get("/metrics")
                .map_err(|error| error.to_string())?;
            if metrics.contains("topologyd_bgp_session_state{peer=\"added\"} 6") {
                Ok(())
            } else {
                Err(metrics)
            }
        }),
        "topologyd",
    );

    // An invalid configuration: refused, logged, nothing changes.
    let added_line = settled_protocol_line(&added);
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
    assert_same_session(
        &protocol_line(&kept),
        &kept_line,
        "a refused reload reset the untouched peer's session",
    );
    assert_same_session(
        &protocol_line(&added),
        &added_line,
        "a refused reload reset the added peer's session",
    );
    assert_eq!(check(kept.counters(), "BIRD counters"), kept_counters);
    assert_eq!(check(added.routes(), "BIRD routes").len(), AMS01_ROUTES);
    let (status, _) = check(topologyd.admin_get("/ready"), "GET /ready");
    assert_eq!(status, 200);
}

#[test]
fn sighup_applies_a_next_hop_change_in_place_and_resets_on_a_hold_time_change() {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (bird, mut neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors = vec![neighbor.clone()];
    let mut topologyd = check(
        Topologyd::start(daemon.clone(), &topology()),
        "starting topologyd",
    );
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);
    let line = settled_protocol_line(&bird);
    let counters = check(bird.counters(), "BIRD counters");

    // The next hop applies in place (PeerConfig::session_reset_needed): the one IPv6 route is
    // sent again with the new next hop; the session stays; nothing is withdrawn.
    let new_next_hop = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
    neighbor.next_hop_ipv6 = Some(new_next_hop);
    daemon.neighbors = vec![neighbor.clone()];
    check(
        topologyd.rewrite_config(daemon.clone()),
        "rewriting the configuration",
    );
    check(topologyd.signal("HUP"), "SIGHUP");
    check(
        wait_until("the new IPv6 next hop at BIRD", WAIT, || {
            let routes = bird.routes().map_err(|error| error.to_string())?;
            let moved = routes
                .iter()
                .filter(|route| route.prefix.addr().is_ipv6())
                .all(|route| route.next_hop == std::net::IpAddr::V6(new_next_hop));
            if moved && routes.len() == AMS01_ROUTES {
                Ok(())
            } else {
                Err(format!(
                    "{routes:?}; topologyd log:\n{}",
                    topologyd.log_tail()
                ))
            }
        }),
        "BIRD",
    );
    assert_same_session(
        &protocol_line(&bird),
        &line,
        "a next-hop change reset the session",
    );
    let after = check(bird.counters(), "BIRD counters");
    assert_eq!(
        after.withdrawals, counters.withdrawals,
        "a next-hop change withdrew routes"
    );
    assert_eq!(after.removed, counters.removed);
    assert_eq!(
        after.updates,
        counters.updates + 1,
        "only the IPv6 route's next hop changed"
    );

    // The hold time is negotiated in the OPEN: the session is reset (closed without a
    // NOTIFICATION, so BIRD keeps the routes through graceful restart), and comes back with
    // every route.
    neighbor.hold_time_seconds = 60;
    daemon.neighbors = vec![neighbor];
    check(
        topologyd.rewrite_config(daemon),
        "rewriting the configuration",
    );
    check(topologyd.signal("HUP"), "SIGHUP");
    check(
        wait_until(
            "the session to be reset and Established again",
            WAIT,
            || {
                let log = topologyd.log();
                let reset = log.contains("reset edge-bird")
                    && log.matches("Established peer=edge-bird").count() >= 2;
                if reset
                    && bird
                        .session_state()
                        .is_ok_and(|state| state.is_established())
                {
                    Ok(())
                } else {
                    Err(topologyd.log_tail())
                }
            },
        ),
        "topologyd",
    );
    wait_for_routes(&bird, AMS01_ROUTES);
    check(topologyd.check_running(), "topologyd");
}

#[test]
fn the_same_session_allows_the_clock_jitter_and_nothing_else() {
    let line = |since: &str, state: &str| {
        format!("kept       BGP        ---        up     {since}  {state}   ")
    };
    let before = line("04:09:24.785", "Established");
    assert_same_session(&line("04:09:24.786", "Established"), &before, "jitter");
    assert_same_session(&line("04:09:24.785", "Established"), &before, "unchanged");
    assert_eq!(since_ms("23:59:59.999"), Some(86_399_999));
    assert_eq!(since_ms("04:09:24"), None);
    assert_same_session(
        &line("00:00:00.010", "Established"),
        &line("23:59:59.990", "Established"),
        "across midnight",
    );
    for (after, why) in [
        (line("04:09:25.400", "Established"), "a reset moves Since"),
        (line("04:09:24.785", "Active"), "a session not up"),
        (
            line("2026-12-07", "Established"),
            "a Since that is not a time",
        ),
    ] {
        let caught = std::panic::catch_unwind(|| assert_same_session(&after, &before, why));
        assert!(caught.is_err(), "{why} was taken for the same session");
    }
}
