//! The rollback and stall half of the rollout [`Machine`]: starting a rollback, issuing every
//! rollback at once in reverse order of application, settling stalled locations again, what a
//! stall does (`on_stall`), and how a rollback ends (with the locations that never answered).
//!
//! Must not touch: applying and baking (`machine.rs`), HTTP, the clock.

use std::collections::BTreeSet;

use super::{Effect, LocationState, Machine, Output, Step};
use crate::rollout::journal::{Outcome, Record};
use crate::rollout::waves::Wave;
use topologyd_config::fleet::OnStall;

impl Machine {
    /// Starts rolling back every applied location (listed in reverse order of application)
    /// and settles again every stalled location.
    pub(super) fn start_rollback(
        &mut self,
        reason: String,
        abort: bool,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let locations: Vec<String> = self
            .applied_order
            .iter()
            .rev()
            .filter(|location| {
                matches!(self.location(location), Some(LocationState::Applied { .. }))
            })
            .cloned()
            .collect();
        let stalled = self.stalled.clone();
        self.commit(
            Record::RollbackStarted {
                reason,
                abort,
                locations,
            },
            now,
            out,
        );
        self.settle_again(&stalled, out);
    }

    /// Settles again the stalled locations (the caller journaled the record that lifts them).
    pub(super) fn settle_again(&self, stalled: &BTreeSet<String>, out: &mut Vec<Output>) {
        for location in stalled {
            match self.location(location) {
                Some(LocationState::Applying {
                    expected_generation,
                }) => out.push(Output::Effect(Effect::SettleApply {
                    location: location.clone(),
                    expected_generation,
                })),
                Some(LocationState::RollingBack {
                    to_generation,
                    expected_generation,
                }) => out.push(Output::Effect(Effect::SettleRollback {
                    location: location.clone(),
                    to_generation,
                    expected_generation,
                })),
                _ => {}
            }
        }
    }

    /// The wave `location` belongs to.
    fn wave_of(&self, location: &str) -> Option<&Wave> {
        self.plan
            .waves
            .iter()
            .find(|wave| wave.locations.iter().any(|name| name == location))
    }

    /// A location in doubt stalled: journal it, then pause or roll back per its wave's
    /// `on_stall` (while rolling back it is left for the end of the rollback to report).
    pub(super) fn stalled_at(
        &mut self,
        location: String,
        reason: String,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        let in_doubt = matches!(
            self.location(&location),
            Some(LocationState::Applying { .. } | LocationState::RollingBack { .. })
        );
        if !in_doubt || self.is_finished() || self.stalled.contains(&location) {
            return;
        }
        let (stall_seconds, on_stall) =
            self.wave_of(&location).map_or((0, OnStall::Pause), |wave| {
                (wave.stall_seconds, wave.on_stall)
            });
        self.commit(
            Record::Stalled {
                location: location.clone(),
                reason: reason.clone(),
                stall_seconds,
            },
            now,
            out,
        );
        if !self.is_active() {
            return;
        }
        let why = format!("{location} did not answer within {stall_seconds} s ({reason})");
        match on_stall {
            OnStall::Pause if self.paused.is_none() => self.commit(
                Record::Paused {
                    reason: format!(
                        "{why}; `topoctl rollout resume` settles it and continues, `abort` rolls back"
                    ),
                },
                now,
                out,
            ),
            OnStall::Pause => {}
            OnStall::Rollback => self.start_rollback(why, false, now, out),
        }
    }

    /// Rolling back: every queued location at once (the queue is in reverse order of
    /// application), then the end once every answer is in or every location left stalled.
    pub(super) fn advance_rollback(&mut self, now: u64, out: &mut Vec<Output>) -> Step {
        let Some(rollback) = self.rollback.clone() else {
            return Step::Wait;
        };
        for location in &rollback.queue {
            let Some(LocationState::Applied { generation }) = self.location(location) else {
                // Not applied after all: nothing to roll back there.
                if let Some(rollback) = &mut self.rollback {
                    rollback.queue.retain(|queued| queued != location);
                }
                continue;
            };
            let to_generation = self.plan.before.get(location).copied().unwrap_or(0);
            self.commit(
                Record::RollingBack {
                    location: location.clone(),
                    to_generation,
                    expected_generation: generation,
                },
                now,
                out,
            );
            out.push(Output::Effect(Effect::Rollback {
                location: location.clone(),
                to_generation,
                expected_generation: generation,
            }));
        }
        let in_doubt: Vec<String> = self
            .locations
            .iter()
            .filter(|(_, state)| {
                matches!(
                    state,
                    LocationState::Applying { .. } | LocationState::RollingBack { .. }
                )
            })
            .map(|(location, _)| location.clone())
            .collect();
        if in_doubt
            .iter()
            .any(|location| !self.stalled.contains(location))
        {
            return Step::Wait;
        }
        let failed = rollback.failed
            || self.any_location(|state| matches!(state, LocationState::RollbackFailed));
        let outcome = if !in_doubt.is_empty() {
            self.commit(
                Record::RollbackPending {
                    locations: in_doubt,
                },
                now,
                out,
            );
            Outcome::RollbackIncomplete
        } else if failed {
            Outcome::RollbackIncomplete
        } else if rollback.abort {
            Outcome::Aborted
        } else {
            Outcome::RolledBack
        };
        self.commit(Record::Finished { outcome }, now, out);
        Step::Wait
    }
}
