//! `topoctl status`: the daemon's running generation, readiness, route counts, health summary
//! and one row per peer in the style of a routing daemon's protocol table (peer, state, uptime,
//! routes, last error). `--json` prints [`StatusView`] as the daemon answers it.

use std::fmt::Write as _;

use crate::control_client::ControlClient;
use topologyd_api::{EXIT_NO_CHANGE, StatusView};

use crate::connection::show;
use crate::render::{Table, duration, list, now_unix, rfc3339, rfc3339_millis, yes_no};

/// Runs `topoctl status`.
pub async fn run(client: ControlClient, json: bool) -> i32 {
    let answer = client.status().await;
    show(
        answer,
        json,
        |view| render(view, now_unix()),
        |_| EXIT_NO_CHANGE,
    )
}

/// The status as text, uptimes measured to `now` (unix seconds).
pub fn render(view: &StatusView, now: u64) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "location {}  generation {}  hash {}",
        view.location,
        view.generation,
        short_hash(&view.hash)
    );
    let _ = writeln!(
        text,
        "applied  {} by {}",
        time_or_never(view.applied_at),
        if view.applied_by.is_empty() {
            "-"
        } else {
            &view.applied_by
        }
    );
    let _ = writeln!(
        text,
        "ready    {} ({})",
        yes_no(view.ready),
        view.ready_reason
    );
    let _ = writeln!(
        text,
        "routes   {} IPv4, {} IPv6 sent (topology: {} IPv4, {} IPv6); runtime guard refusals {}",
        view.routes.ipv4,
        view.routes.ipv6,
        view.routes_topology.ipv4,
        view.routes_topology.ipv6,
        view.runtime_guard_refusals
    );
    let health = &view.health;
    let _ = writeln!(
        text,
        "health   fail static {}; location drained {}; unhealthy: {}; drained: {}; withdrawn: {}; degraded: {}",
        if health.fail_static { "ENGAGED" } else { "off" },
        yes_no(health.location_drained),
        list(&health.unhealthy),
        list(&health.drained),
        list(&health.withdrawn),
        list(&health.degraded)
    );
    if let Some(lease) = &view.lease {
        let _ = writeln!(
            text,
            "lease    held by {} (token {}) until {}",
            lease.holder,
            lease.token,
            rfc3339_millis(lease.expires_unix_ms)
        );
    }
    if view.time_unix_ms > 0 {
        let _ = writeln!(text, "as of    {}", rfc3339_millis(view.time_unix_ms));
    }
    text.push('\n');
    text.push_str(&peer_table(view, now).to_string());
    text
}

/// One row per peer: name, address, state, since when and for how long, the routes it should
/// have and the generation it holds, the last error.
fn peer_table(view: &StatusView, now: u64) -> Table {
    let mut table = Table::new(&[
        "PEER",
        "ADDRESS",
        "STATE",
        "SINCE",
        "UPTIME",
        "ROUTES V4/V6",
        "SENT UPDATES",
        "SYNCED GEN",
        "LAST ERROR",
    ]);
    for peer in &view.peers {
        let since = peer.established_since.filter(|_| peer.established);
        let error = match (&peer.encode_error, &peer.last_error) {
            (Some(encode), _) => format!("cannot encode: {encode}"),
            (None, Some(error)) => error.clone(),
            (None, None) => String::new(),
        };
        table.row(vec![
            peer.name.clone(),
            peer.address.clone(),
            peer.state.clone(),
            since.map(rfc3339).unwrap_or_default(),
            since
                .map(|since| duration(now.saturating_sub(since)))
                .unwrap_or_default(),
            format!("{}/{}", peer.routes_desired_ipv4, peer.routes_desired_ipv6),
            peer.updates_sent.to_string(),
            peer.generation_synced
                .map(|generation| generation.to_string())
                .unwrap_or_default(),
            error,
        ]);
    }
    table
}

/// A content hash's first 12 characters, enough to tell generations apart.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// An RFC 3339 time, or `never` for 0.
pub fn time_or_never(unix_seconds: u64) -> String {
    if unix_seconds == 0 {
        "never".to_string()
    } else {
        rfc3339(unix_seconds)
    }
}

#[cfg(test)]
mod tests {
    use topologyd_api::{PeerStatus, RouteCounts, StatusHealth};

    use super::*;

    #[test]
    fn status_reads_like_a_protocol_table() {
        let view = StatusView {
            location: "ams01".into(),
            generation: 7,
            hash: "0123456789abcdef0123".into(),
            applied_at: 1_764_921_481,
            applied_by: "CN=admin".into(),
            ready: true,
            ready_reason: "every peer holds generation 7".into(),
            routes: RouteCounts { ipv4: 3, ipv6: 1 },
            routes_topology: RouteCounts { ipv4: 3, ipv6: 1 },
            published_version: 9,
            runtime_guard_refusals: 0,
            health: StatusHealth {
                fail_static: false,
                location_drained: false,
                unhealthy: vec![],
                drained: vec!["web".into()],
                withdrawn: vec![],
                degraded: vec![],
            },
            peers: vec![
                PeerStatus {
                    name: "edge-bird".into(),
                    address: "127.0.0.2".into(),
                    state: "Established".into(),
                    established: true,
                    established_since: Some(1_764_921_481),
                    generation_synced: Some(7),
                    routes_desired_ipv4: 3,
                    routes_desired_ipv6: 1,
                    updates_sent: 4,
                    ..PeerStatus::default()
                },
                PeerStatus {
                    name: "core".into(),
                    address: "127.0.0.3".into(),
                    state: "Active".into(),
                    last_error: Some("connection refused".into()),
                    ..PeerStatus::default()
                },
            ],
            lease: None,
            time_unix_ms: 0,
        };
        let text = render(&view, 1_764_921_481 + 3_725);
        assert!(
            text.starts_with("location ams01  generation 7  hash 0123456789ab\n"),
            "{text}"
        );
        assert!(
            text.contains("applied  2025-12-05T07:58:01Z by CN=admin"),
            "{text}"
        );
        assert!(text.contains("drained: web;"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .skip_while(|line| !line.starts_with("PEER"))
            .collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(
            rows[1].starts_with("edge-bird  127.0.0.2  Established  2025-12-05T07:58:01Z  1h02m"),
            "{text}"
        );
        assert!(rows[2].ends_with("connection refused"), "{text}");
        assert!(rows[2].contains("Active"), "{text}");
    }
}
