//! `topoctl health`: per service, the verdict and what this location does with it (announce,
//! withdraw, degrade; drained; held by the floor), the last probe round, drains with who, why
//! and when, and the service addresses. `--json` prints [`HealthView`] as the daemon answers it.

use std::fmt::Write as _;

use crate::control_client::ControlClient;
use topologyd_api::{EXIT_NO_CHANGE, HealthView};

use crate::connection::show;
use crate::render::{Table, list, rfc3339, yes_no};

/// Runs `topoctl health`.
pub async fn run(client: ControlClient, json: bool) -> i32 {
    let answer = client.health().await;
    show(answer, json, render, |_| EXIT_NO_CHANGE)
}

/// The health document as text.
pub fn render(view: &HealthView) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "location {}  generation {}  health checks {}  floor: {} other live location(s)",
        view.location,
        view.generation,
        if view.enabled { "on" } else { "off" },
        view.min_other_locations
    );
    let _ = writeln!(
        text,
        "fail static {}",
        match (&view.fail_static, &view.fail_static_reason) {
            (true, Some(reason)) => format!("ENGAGED: {reason}"),
            (true, None) => "ENGAGED".to_string(),
            (false, _) => "off".to_string(),
        }
    );
    let drains = &view.drains;
    if view.location_drained {
        let by = drained_by(&drains.who, drains.changed_at, drains.force, &drains.reason);
        let _ = writeln!(text, "location DRAINED {by}");
    }
    for (service, drain) in &drains.services {
        let by = drained_by(&drain.who, drain.changed_at, drain.force, &drain.reason);
        let _ = writeln!(text, "service {service} drained {by}");
    }
    if let Some(interface) = &view.address_interface {
        let _ = writeln!(
            text,
            "addresses on {interface}: bound {}; foreign {}; pending unbind {}",
            list(&view.addresses_bound),
            list(&view.addresses_foreign),
            list(&view.addresses_pending_unbind)
        );
        for (address, error) in &view.address_errors {
            let _ = writeln!(text, "address {address}: {error}");
        }
    }
    text.push('\n');
    text.push_str(&service_table(view).to_string());
    text
}

/// "by WHO at TIME[ (forced)]: REASON", of a location or service drain.
fn drained_by(who: &str, changed_at: u64, force: bool, reason: &str) -> String {
    format!(
        "by {who} at {}{}: {}",
        rfc3339(changed_at),
        if force { " (forced)" } else { "" },
        if reason.is_empty() {
            "no reason given"
        } else {
            reason
        }
    )
}

fn service_table(view: &HealthView) -> Table {
    let mut table = Table::new(&[
        "SERVICE",
        "ACTION",
        "STATE",
        "DRAINED",
        "FLOOR HELD",
        "OTHER LOCATIONS",
        "ROUTES",
        "LAST ROUND",
    ]);
    for (name, service) in &view.services {
        let last_round = service
            .probes
            .last_round
            .as_ref()
            .map(|checks| {
                checks
                    .iter()
                    .map(|check| {
                        format!("{} {:?}: {}", check.check, check.result, check.detail)
                            .to_lowercase()
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default();
        table.row(vec![
            name.clone(),
            service.action.as_str().to_string(),
            service.state.as_str().replace('_', " "),
            yes_no(service.drained).to_string(),
            yes_no(service.floor_held).to_string(),
            service.other_live_locations.to_string(),
            service.routes_announced.to_string(),
            last_round,
        ]);
    }
    table
}
