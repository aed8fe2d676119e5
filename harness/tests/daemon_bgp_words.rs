//! End to end: BGP problems in words, where operators look.
//!
//! - A real BIRD 2 whose AS is not the one configured for it: topologyd refuses its OPEN with
//!   Bad Peer AS, and both `/v1/status`'s `last_error` (through the real `topoctl`) and the WARN
//!   log line say so in words — "OPEN message error / Bad Peer AS: expected 64513, the peer sent
//!   64512" — instead of `Notification { code: 2, subcode: 2, data: … }`.
//! - A peer nobody listens for: the refused connections are logged once at WARN, with the
//!   back-off summary promised, not once per attempt (the per-attempt lines are DEBUG), and the
//!   refusal is the status's `last_error`.

use std::time::Duration;

use topologyd_harness::daemon_fixture::{BIRD_ASN, LOCAL_ASN, WAIT, check, start_bird, topology};
use topologyd_harness::peers::alloc;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, NeighborConfig, Topoctl, Topologyd, wait_until,
};

const PEER: &str = "edge-bird";

/// The daemon's status as JSON through the real `topoctl` (JSON by default, or `--json`).
fn status(topoctl: &Topoctl) -> Result<serde_json::Value, String> {
    let output = topoctl
        .run::<&str>("status", &[])
        .map_err(|error| error.to_string())?;
    if let Ok(json) = output.json() {
        return Ok(json);
    }
    topoctl
        .run("status", &["--json"])
        .map_err(|error| error.to_string())?
        .json()
}

/// The named peer's `last_error` in the status, once it contains `needle`.
fn wait_for_last_error(topoctl: &Topoctl, peer: &str, needle: &str) -> String {
    check(
        wait_until(
            &format!("{peer}'s last_error with {needle:?}"),
            WAIT,
            || {
                let status = status(topoctl)?;
                let error = status["peers"]
                    .as_array()
                    .and_then(|peers| peers.iter().find(|entry| entry["name"] == peer))
                    .and_then(|entry| entry["last_error"].as_str())
                    .unwrap_or_default()
                    .to_owned();
                if error.contains(needle) {
                    Ok(error)
                } else {
                    Err(format!("{status}"))
                }
            },
        ),
        "status",
    )
}

fn start_with_control(
    mut daemon: DaemonConfig,
    environment: &[(&str, &str)],
) -> (Topologyd, Topoctl, ControlPki) {
    let pki = check(ControlPki::generate(), "generating the PKI");
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[("sre-reader", "reader")],
    ));
    let control = daemon.control.as_ref().map(|control| control.listen);
    let topologyd = check(
        Topologyd::start_with_environment(daemon, &topology(), environment),
        "starting topologyd",
    );
    let identity = check(pki.client("sre-reader"), "issuing a client certificate");
    let topoctl = Topoctl::new(
        control.unwrap_or_else(|| panic!("no control listener")),
        &pki.ca,
        identity,
    );
    (topologyd, topoctl, pki)
}

#[test]
fn a_wrong_peer_asn_is_worded_in_the_status_and_the_log() {
    let daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (_bird, mut neighbor) = start_bird(&daemon, PEER);
    let configured = BIRD_ASN + 1;
    neighbor.asn = configured;
    let mut daemon = daemon;
    daemon.neighbors.push(neighbor);
    let (topologyd, topoctl, _pki) = start_with_control(daemon, &[]);

    let expected = format!(
        "NOTIFICATION sent: OPEN message error / Bad Peer AS: expected {configured}, the peer sent {BIRD_ASN}"
    );
    let error = wait_for_last_error(&topoctl, PEER, &expected);
    assert!(!error.contains("Notification {"), "{error}");
    check(
        wait_until("the worded WARN line", WAIT, || {
            let log = topologyd.log();
            log.lines()
                .find(|line| {
                    line.contains("WARN")
                        && line.contains(&format!(
                            "NOTIFICATION sent: OPEN message error / Bad Peer AS: expected {configured}, the peer sent {BIRD_ASN}"
                        ))
                })
                .map(|_| ())
                .ok_or(log)
        }),
        "log",
    );
    assert!(
        topologyd.log().contains("session down") && !topologyd.log().contains("Notification {"),
        "{}",
        topologyd.log()
    );
}

#[test]
fn refused_connections_are_summarised_not_logged_per_attempt() {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    // A loopback address and port nobody listens on: every connect is refused.
    let refusing = alloc::RefusingEndpoint::new(topologyd_harness::peers::Transport::V4);
    let nobody = refusing.address();
    daemon
        .neighbors
        .push(NeighborConfig::new("edge-gone", nobody, BIRD_ASN));
    let (topologyd, topoctl, _pki) =
        start_with_control(daemon, &[("TOPOLOGYD_LOG", "info,topologyd::peer=debug")]);

    let error = wait_for_last_error(&topoctl, "edge-gone", "Connection refused");
    assert!(error.contains(&nobody.to_string()), "{error}");
    // Several attempts (connect_retry_seconds = 1, doubling), each a DEBUG line.
    check(
        wait_until("three refused attempts", WAIT, || {
            let attempts = topologyd
                .log()
                .matches("outbound connection failed")
                .count();
            if attempts >= 3 {
                Ok(())
            } else {
                Err(format!("{attempts} attempts so far"))
            }
        }),
        "log",
    );
    std::thread::sleep(Duration::from_millis(200));
    let log = topologyd.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("connect to the peer"))
        .collect();
    assert_eq!(warnings.len(), 1, "one WARN line for the failures:\n{log}");
    assert!(
        warnings[0].contains("Connection refused") && warnings[0].contains("summary"),
        "{}",
        warnings[0]
    );
}
