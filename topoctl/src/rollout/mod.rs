//! Fleet rollouts (`topoctl rollout`): a topology change deployed to every location in canary
//! waves gated by health signals, rolled back by itself when a gate fails. User documentation:
//! `docs/rollouts.md`.
//!
//! ```text
//! config::fleet (fleet file) ─┐
//! topology (new) ────────┴─► waves.rs (wave plan) ─┐
//! commands.rs: preflight (statuses, running bundle, compile, plan, guards)
//!   ─► preflight.rs (wave selectors, canary, every daemon's own plan) ─► journal `started`
//!        │
//!        ▼
//! driver.rs (tokio) ──Event──► machine.rs (pure) ──Output: Record ─► journal.rs (fsync) ─► progress.rs
//!        ▲                                        └─Output: Effect ─► driver tasks:
//!        │                                             apply / rollback / settle (ControlClient)
//!        └──────────── Event (answers) ◄────────────── evaluate (gates.rs: daemons, Prometheus)
//! control file (pause/resume/abort/promote from other topoctl runs) ─► driver ─► machine
//! ```
//!
//! The machine is the only place that decides; everything it decides is a journal record,
//! written before the effect it leads to, and replayed on resume through the same function.

pub mod commands;
pub mod doubt;
pub mod driver;
pub mod etcd;
pub mod gates;
pub mod journal;
pub mod lease;
pub mod machine;
pub mod preflight;
pub mod progress;
pub mod status;
pub mod waves;

use journal::Outcome;

// The exit codes follow `topoctl`'s one table (README, "Exit codes"; `topologyd_api`): 3 for a
// refusal and 6 for an unreachable fleet as everywhere, and 7 and 8 for what only a rollout
// ends with.

/// The rollout completed (also: a dry run, a status, an acknowledged command).
pub const EXIT_COMPLETED: i32 = 0;
/// An error: usage, invalid input, non-converged fleet, failed rollback.
pub const EXIT_ERROR: i32 = topologyd_api::EXIT_USAGE;
/// Refused before anything was applied: the plan guards, the wave plan (unknown selector names,
/// no canary), or a daemon's own plan in the pre-flight.
pub const EXIT_REFUSED: i32 = topologyd_api::EXIT_REFUSED;
/// Locations did not answer in the pre-flight (none refused): nothing was applied.
pub const EXIT_UNREACHABLE: i32 = topologyd_api::EXIT_UNREACHABLE;
/// A gate failed or an apply was refused, and everything applied was rolled back.
pub const EXIT_ROLLED_BACK: i32 = topologyd_api::EXIT_ROLLED_BACK;
/// Paused (with `--exit-on-pause`, or interrupted), or aborted and rolled back.
pub const EXIT_PAUSED: i32 = topologyd_api::EXIT_PAUSED;

/// The exit code of a finished rollout.
pub fn exit_code_of(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Completed => EXIT_COMPLETED,
        Outcome::RolledBack => EXIT_ROLLED_BACK,
        Outcome::Aborted => EXIT_PAUSED,
        Outcome::RollbackIncomplete => EXIT_ERROR,
    }
}
