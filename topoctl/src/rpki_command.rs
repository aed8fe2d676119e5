//! `topoctl rpki`: a daemon's `GET /v1/rpki` for people. Where its VRPs come from (sync state,
//! the serving cache, serial, age, VRP counts), the run-time policy for routes that turn
//! invalid, the routes by RFC 6811 state, and a table of the routes that need attention (invalid
//! and not found, or every route with `--all`) with the VRPs that cover each.
//!
//! Owns: the call and rendering the typed [`RpkiView`] as text. Must not touch: reaching the
//! daemon and exit codes of failures (`connection.rs`), the JSON form (`--json` prints the
//! view as the daemon sends it).

use std::fmt::Write as _;

use topologyd_api::{
    RouteRpkiState, RpkiInvalidPolicy, RpkiRouteView, RpkiSyncState, RpkiView, RpkiVrpView,
};
use topologyd_config::diagnostic::escape_text;

use crate::connection::show;
use crate::control_client::ControlClient;

/// Runs `topoctl rpki`: a view is information only, so it exits 0.
pub async fn run(client: ControlClient, all: bool, json: bool) -> i32 {
    let selection = if all {
        RouteSelection::All
    } else {
        RouteSelection::NeedingAttention
    };
    let answer = client.rpki().await;
    show(
        answer,
        json,
        |view| render(view, selection),
        |_| topologyd_api::EXIT_NO_CHANGE,
    )
}

/// Which routes the table lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSelection {
    /// Invalid and not-found routes only.
    NeedingAttention,
    /// Every route.
    All,
}

/// The human form of a `/v1/rpki` answer. Text the daemon sends (cache addresses, errors,
/// service names) is escaped for the terminal.
pub fn render(view: &RpkiView, selection: RouteSelection) -> String {
    let mut text = String::new();
    if !view.enabled {
        text.push_str(
            "RPKI: disabled (the daemon's configuration has no [rpki] section); \
             every route is not found\n",
        );
    } else {
        render_source(&mut text, view);
    }
    let counts = &view.counts;
    let _ = writeln!(
        text,
        "routes: {} valid, {} invalid, {} not found",
        counts.valid, counts.invalid, counts.not_found
    );
    let listed: Vec<&RpkiRouteView> = view
        .routes
        .iter()
        .filter(|route| selection == RouteSelection::All || route.state != RouteRpkiState::Valid)
        .collect();
    if listed.is_empty() {
        if selection == RouteSelection::NeedingAttention && !view.routes.is_empty() {
            text.push_str("no invalid or not-found route (--all lists every route)\n");
        }
        return text;
    }
    text.push('\n');
    render_table(&mut text, &listed);
    text
}

/// Sync state, caches, serial, age, VRP counts and policy.
fn render_source(text: &mut String, view: &RpkiView) {
    let serving = view
        .cache
        .as_deref()
        .map_or_else(|| "no cache yet".to_string(), escape_text);
    let _ = writeln!(text, "RPKI: {} — {serving}", sync_text(view.sync));
    match (view.session_id, view.serial) {
        (Some(session), Some(serial)) => {
            let _ = writeln!(text, "session {session}, serial {serial}");
        }
        _ => text.push_str("no End of Data received yet\n"),
    }
    match view.last_update_age_seconds {
        Some(age) => {
            let _ = writeln!(
                text,
                "last update {} ago (refresh {} s, retry {} s, expire {} s)",
                duration_text(age),
                view.refresh_seconds,
                view.retry_seconds,
                view.expire_seconds
            );
        }
        None => text.push_str("last update: never\n"),
    }
    let _ = writeln!(
        text,
        "VRPs: {} ({} IPv4, {} IPv6)",
        view.vrps_ipv4 + view.vrps_ipv6,
        view.vrps_ipv4,
        view.vrps_ipv6
    );
    for cache in &view.caches {
        let _ = writeln!(
            text,
            "  cache {} preference {}{}{}",
            escape_text(&cache.address),
            cache.preference,
            if cache.serving { ", serving" } else { "" },
            cache
                .last_error
                .as_deref()
                .map_or_else(String::new, |error| format!(
                    ", last error: {}",
                    escape_text(error)
                ))
        );
    }
    let _ = writeln!(
        text,
        "invalid policy: {}",
        match view.invalid_policy {
            RpkiInvalidPolicy::Keep =>
                "keep (a route that turns invalid stays announced and is alarmed)",
            RpkiInvalidPolicy::Withdraw => "withdraw (a route that turns invalid is withdrawn)",
        }
    );
}

fn sync_text(sync: RpkiSyncState) -> &'static str {
    match sync {
        RpkiSyncState::Disabled => "disabled",
        RpkiSyncState::Connecting => "connecting (no cache has completed an update yet)",
        RpkiSyncState::InSync => "in sync",
        RpkiSyncState::Stale => "stale (the serving cache's session is gone; kept until expire)",
        RpkiSyncState::Expired => "expired (no cache for longer than expire; VRPs dropped)",
    }
}

/// `45 s`, `3 min 20 s`, `2 h 5 min`.
fn duration_text(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, (seconds % 3600) / 60),
    }
}

pub fn state_text(state: RouteRpkiState) -> &'static str {
    match state {
        RouteRpkiState::Valid => "valid",
        RouteRpkiState::InvalidOrigin => "invalid (origin)",
        RouteRpkiState::InvalidLength => "invalid (max-length)",
        RouteRpkiState::NotFound => "not found",
    }
}

/// `192.0.2.0/24-24 AS64500`: prefix, max-length, ASN.
pub fn vrp_text(vrp: &RpkiVrpView) -> String {
    format!("{}-{} AS{}", vrp.prefix, vrp.max_length, vrp.asn)
}

/// One row per route, columns aligned; the covering VRPs last, comma-separated.
fn render_table(text: &mut String, routes: &[&RpkiRouteView]) {
    let header = [
        "PREFIX",
        "ORIGIN",
        "STATE",
        "SERVICE",
        "ANNOUNCED",
        "COVERING VRPS",
    ];
    let rows: Vec<[String; 6]> = routes
        .iter()
        .map(|route| {
            let covering = if route.covering.is_empty() {
                "-".to_string()
            } else {
                route
                    .covering
                    .iter()
                    .map(vrp_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            [
                route.prefix.to_string(),
                format!("AS{}", route.origin_asn),
                state_text(route.state).to_string(),
                escape_text(&route.service),
                if route.announced { "yes" } else { "no" }.to_string(),
                covering,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 6]| {
        let mut row = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index + 1 == cells.len() {
                row.push_str(cell);
            } else {
                let _ = write!(row, "{cell:<width$}  ", width = widths[index]);
            }
        }
        let _ = writeln!(text, "{}", row.trim_end());
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}

#[cfg(test)]
mod tests;
