//! The core's refusals of a mutation before it commits: a request whose deadline passed
//! (`deadline_passed`, checked when it arrives and again in the step that decides its commit)
//! and the fleet lock's refusals; and the wall-clock time a status snapshot is valid at.
//!
//! Why a deadline is safe to reason about from a status: the engine core decides a commit in
//! one step (the `Compiled` event) together with the deadline check, by its own clock, and
//! until that commit is written and running ([`EngineCore::snapshot_time_ms`]) a status says it
//! was taken just before the decision. So a status whose time is past a request's deadline
//! reflects every commit that request could ever make: a controller that dropped the call
//! learns from it, without comparing clocks, that the call will never take effect.

use topologyd_api::ErrorDetail;

use super::{EngineCore, Now};
use crate::engine::lease::LeaseError;
use crate::engine_api::{EngineError, EngineErrorKind, MutationChecks};

impl EngineCore {
    /// Refuses (409 `deadline_passed`) a request whose deadline is before `now`.
    pub fn deadline_check(
        &self,
        deadline_unix_ms: Option<u64>,
        now: Now,
    ) -> Result<(), EngineError> {
        match deadline_unix_ms {
            Some(deadline) if now.unix_ms > deadline => Err(self.error(
                EngineErrorKind::DeadlinePassed,
                format!(
                    "the request's deadline passed {} ms ago by this daemon's clock (deadline {deadline}, now {}): nothing was changed; the caller gave up on it and must ask again",
                    now.unix_ms - deadline,
                    now.unix_ms
                ),
                None,
            )),
            _ => Ok(()),
        }
    }

    /// Refuses a mutation whose deadline has passed or whose lease claim does not hold now.
    pub fn deadline_and_lease_check(
        &self,
        checks: &MutationChecks,
        now: Now,
    ) -> Result<(), EngineError> {
        self.deadline_check(checks.deadline_unix_ms, now)?;
        self.lease
            .check(checks.lease.as_ref(), now.unix_ms)
            .map_err(|error| self.lease_error(error))
    }

    /// The wall-clock time (unix milliseconds) a status answered at `now_unix_ms` is valid at:
    /// `now_unix_ms`, or just before the decision of a commit still being written (whose result
    /// the status does not show yet).
    pub fn snapshot_time_ms(&self, now_unix_ms: u64) -> u64 {
        if self.committing.is_some() {
            now_unix_ms.min(self.committing_decided_ms.saturating_sub(1))
        } else {
            now_unix_ms
        }
    }

    /// The engine error of a fleet lock refusal (409, kind `lease_held`, `stale_token` or
    /// `lease_not_held`, the live lease in the detail).
    pub fn lease_error(&self, error: LeaseError) -> EngineError {
        let kind = match &error {
            LeaseError::Held { .. } => EngineErrorKind::LeaseHeld,
            LeaseError::StaleToken { .. } => EngineErrorKind::StaleToken,
            LeaseError::NotHeld { .. } => EngineErrorKind::LeaseNotHeld,
            LeaseError::Invalid(_) => EngineErrorKind::Invalid,
        };
        let detail = error
            .lease()
            .cloned()
            .map(|lease| ErrorDetail::Lease { lease });
        self.error(kind, error.to_string(), detail)
    }
}
