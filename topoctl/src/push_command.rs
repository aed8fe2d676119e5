//! `topoctl push`: apply topology files on a running daemon, printing the plan as `plan` does
//! and what was applied; `--dry-run` asks the daemon for its plan and verdict and changes
//! nothing. `--json` prints [`MutationOutcome`] (applied) or [`PlanView`] (dry run).

use std::fmt::Write as _;

use crate::control_client::{ControlClient, PushSources};
use topologyd_api::{
    EXIT_CHANGES_MADE, EXIT_NO_CHANGE, Intent, LeaseClaim, MutationOutcome, PlanView,
};

use crate::connection::show;
use crate::render::inert;
use crate::status_command::short_hash;

/// What an apply or rollback is conditioned on: the generation it was planned against, the
/// lease it acts under.
#[derive(Debug, Clone, Default)]
pub struct Apply {
    /// Compare-and-swap on the running generation.
    pub expect_generation: Option<u64>,
    /// The fleet lock claim.
    pub lease: Option<LeaseClaim>,
}

/// Runs `topoctl push` with the bundle read and the intent parsed.
pub async fn run(
    client: ControlClient,
    bundle: impl PushSources,
    intent: Intent,
    apply: Apply,
    dry_run: bool,
    json: bool,
) -> i32 {
    if dry_run {
        let answer = client.plan(&bundle, &intent).await;
        return show_plan(answer, json);
    }
    let answer = client
        .apply(
            &bundle,
            &intent,
            apply.expect_generation,
            apply.lease.as_ref(),
        )
        .await;
    show_outcome(answer, json, "applied")
}

/// Prints a daemon's plan (its text, or [`PlanView`] as JSON) and answers the plan's exit
/// code (0 no change, 2 changes allowed, 3 refused).
pub fn show_plan(answer: Result<PlanView, crate::control_client::ClientError>, json: bool) -> i32 {
    show(
        answer,
        json,
        |view| inert(&view.text),
        |view| view.exit_code,
    )
}

/// Prints an apply's or rollback's outcome and answers 2 when the running generation changed,
/// 0 when nothing did.
pub fn show_outcome(
    answer: Result<MutationOutcome, crate::control_client::ClientError>,
    json: bool,
    verb: &'static str,
) -> i32 {
    show(
        answer,
        json,
        |outcome| render_outcome(outcome, verb),
        |outcome| {
            if outcome.generation_after == outcome.generation_before {
                EXIT_NO_CHANGE
            } else {
                EXIT_CHANGES_MADE
            }
        },
    )
}

/// An outcome as text: the plan as `topoctl plan` prints it, then one line saying what runs.
pub fn render_outcome(outcome: &MutationOutcome, verb: &str) -> String {
    let mut text = inert(&outcome.detail.text);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if outcome.generation_after == outcome.generation_before {
        let _ = writeln!(
            text,
            "no change: generation {} stays running",
            outcome.generation_before
        );
    } else {
        let _ = writeln!(
            text,
            "{verb}: generation {} is running (was {}); plan {}",
            outcome.generation_after,
            outcome.generation_before,
            short_hash(&outcome.plan_hash)
        );
    }
    if let Some(warning) = &outcome.audit_warning {
        let _ = writeln!(text, "warning: {}", inert(warning));
    }
    text
}
