//! `topoctl drain`: withdraw a service (or the whole location) here by hand, or undo it. A
//! whole-location drain must name the location (`--location NAME`, checked against the
//! daemon's); `--dry-run` shows what would change and changes nothing. Prints each service's
//! decision afterwards; `--json` prints [`DrainView`] as the daemon answers it.

use std::fmt::Write as _;

use crate::control_client::ControlClient;
use topologyd_api::{DrainView, EXIT_CHANGES_MADE, EXIT_NO_CHANGE, EXIT_USAGE};

use crate::connection::{report_error, show};
use crate::render::{Table, yes_no};

/// What `topoctl drain` was asked (its arguments, but for the daemon and `--json`).
#[derive(clap::Args, Debug, Clone)]
pub struct DrainArguments {
    /// The service to drain; without it, the whole location.
    #[arg(long)]
    pub service: Option<String>,
    /// Confirms a whole-location drain: must be the daemon's location.
    #[arg(long, value_name = "NAME")]
    pub location: Option<String>,
    /// Undo a drain.
    #[arg(long)]
    pub undrain: bool,
    /// Withdraw even services no other live location announces.
    #[arg(long)]
    pub force: bool,
    /// Why (kept in the drain state and the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Say whether anything would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Why a whole-location drain needs `--location`.
pub const LOCATION_NEEDS_CONFIRMING: &str = "draining the whole location withdraws every service it announces; name the location to confirm (`--location NAME`, as `topoctl status` shows it), or drain one service with --service";

/// Runs `topoctl drain`.
pub async fn run(client: ControlClient, arguments: DrainArguments, json: bool) -> i32 {
    if arguments.service.is_none() && !arguments.undrain {
        let Some(confirmed) = &arguments.location else {
            eprintln!("topoctl: {LOCATION_NEEDS_CONFIRMING}");
            return EXIT_USAGE;
        };
        let location = match client.status().await {
            Ok(status) => status.location,
            Err(error) => return report_error(&error, json),
        };
        if &location != confirmed {
            eprintln!(
                "topoctl: --location {} does not match the daemon's location `{}`; nothing was drained",
                crate::render::inert(confirmed),
                crate::render::inert(&location)
            );
            return EXIT_USAGE;
        }
    }
    let answer = client
        .drain_with(
            arguments.service.as_deref(),
            !arguments.undrain,
            arguments.force,
            &arguments.reason,
            arguments.dry_run,
        )
        .await;
    let dry_run = arguments.dry_run;
    show(
        answer,
        json,
        |view| render(view, dry_run),
        |view| {
            if view.changed {
                EXIT_CHANGES_MADE
            } else {
                EXIT_NO_CHANGE
            }
        },
    )
}

/// The drain's outcome as text.
pub fn render(view: &DrainView, dry_run: bool) -> String {
    let mut text = String::new();
    let verb = if view.drained { "drain" } else { "undrain" };
    let what = if view.target == "location" {
        format!("location {}", view.location)
    } else {
        format!("service {} at {}", view.target, view.location)
    };
    let _ = writeln!(
        text,
        "{}",
        match (dry_run, view.changed) {
            (true, true) => format!("dry run: would {verb} {what} (nothing changed)"),
            (true, false) => format!("dry run: {verb} of {what} would change nothing"),
            (false, true) => format!("{verb}ed {what}"),
            (false, false) => format!("{verb} of {what}: already so, nothing changed"),
        }
    );
    if !view.floor_held.is_empty() {
        let _ = writeln!(
            text,
            "the floor keeps announced: {} (no other live location announces them; --force withdraws them anyway)",
            view.floor_held.join(", ")
        );
    }
    if let Some(warning) = &view.audit_warning {
        let _ = writeln!(text, "warning: {warning}");
    }
    let mut table = Table::new(&[
        "SERVICE",
        "ACTION",
        "HEALTHY",
        "DRAINED",
        "FLOOR HELD",
        "OTHER LOCATIONS",
    ]);
    for (name, decision) in &view.services {
        table.row(vec![
            name.clone(),
            decision.action.as_str().to_string(),
            decision.healthy.map_or_else(
                || "unchecked".to_string(),
                |healthy| yes_no(healthy).to_string(),
            ),
            yes_no(decision.drained).to_string(),
            yes_no(decision.floor_held).to_string(),
            decision.other_live_locations.to_string(),
        ]);
    }
    text.push('\n');
    text.push_str(&table.to_string());
    text
}
