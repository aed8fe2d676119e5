//! The controller's calls to one location that change it, and how their outcome is found
//! out when the answer is lost: apply and rollback with compare-and-swap and a deadline,
//! settling a call in doubt from `GET /v1/status`, verifying a rollback's routes, and the stall
//! bound measured from when the location's doubt began (`doubt.rs`).
//!
//! Must not touch: rollout decisions (`machine.rs`), the journal, the event loop (`driver.rs`).

use std::time::{Duration, Instant};

use crate::control_client::ClientError;
use topologyd_api::StatusView;

use super::{
    Context, Event, MAX_RETRY_DELAY, ROLLBACK_VERIFY_TIMEOUT, VERIFY_INTERVAL, describe, gates,
    is_lease_refusal, read_health, transient,
};

/// Longest a settle keeps reading the status past the stall bound, for an answer the daemon
/// gives after the deadline of the calls dropped there (the only answer that can say "not done").
pub const SETTLE_GRACE: Duration = Duration::from_secs(5);
/// The longest wait ever armed (an `Instant` cannot hold an unbounded one).
const LONGEST_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The wall clock in unix milliseconds.
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The instant the wall clock reads `unix_ms` (now if past; never overflowing).
fn instant_at(unix_ms: u64) -> Instant {
    let wait = Duration::from_millis(unix_ms.saturating_sub(unix_now_ms())).min(LONGEST_WAIT);
    let now = Instant::now();
    now.checked_add(wait).unwrap_or(now)
}

/// A call at `location` now: the deadline it carries (unix milliseconds) and when the
/// controller drops it, both the end of the stall bound measured from when the location's doubt
/// began; [`Event::Stalled`] when that is over already (no call is made).
fn call_deadline(context: &Context, location: &str, what: &str) -> Result<(u64, Instant), Event> {
    // A controller that lost its leadership makes no call (the event it answers is never
    // journaled: the fenced write fails and the process stops).
    if let Err(reason) = context.still_leading() {
        return Err(Event::Stalled {
            location: location.into(),
            reason: format!("leadership lost, the {what} is not made: {reason}"),
        });
    }
    let now = unix_now_ms();
    let (deadline, bound) = match context.doubts.lock() {
        Ok(mut doubts) => (doubts.begin(location, now, true), doubts.bound_ms(location)),
        Err(_) => (now, 0),
    };
    if now >= deadline {
        return Err(Event::Stalled {
            location: location.into(),
            reason: format!(
                "in doubt for its whole stall bound ({} s) without a definitive answer; the {what} is not tried again",
                bound / 1000
            ),
        });
    }
    Ok((deadline, instant_at(deadline)))
}

/// A settle at `location` now: when it gives up (the end of the location's stall bound plus
/// [`SETTLE_GRACE`], and at least one status read away).
pub(super) fn settle_deadline(context: &Context, location: &str) -> Instant {
    let now = unix_now_ms();
    let (deadline, bound, dropped) = match context.doubts.lock() {
        Ok(mut doubts) => (
            doubts.begin(location, now, false),
            doubts.bound_ms(location),
            doubts.get(location).outlast_unix_ms.is_some(),
        ),
        Err(_) => (now, 0, false),
    };
    // The grace only matters when a dropped call's deadline must be outlasted.
    let grace = if dropped {
        u64::try_from(SETTLE_GRACE.as_millis()).unwrap_or(u64::MAX)
    } else {
        0
    };
    instant_at(deadline.saturating_add(grace)).max(instant_at(now.saturating_add(bound)))
}

/// Whether "not done" is final at `location` for a status answered at `time_unix_ms`.
fn not_done_is_final(context: &Context, location: &str, time_unix_ms: u64) -> bool {
    context
        .doubts
        .lock()
        .is_ok_and(|doubts| doubts.not_done_is_final(location, time_unix_ms))
}

/// Awaits `call` to `location` until `deadline`, with a `warning` every [`MAX_RETRY_DELAY`]
/// while it has no answer; `None` at the deadline (the call is dropped: in doubt).
async fn answer_by<T>(
    context: &Context,
    location: &str,
    what: &str,
    deadline: Instant,
    call: impl std::future::Future<Output = T>,
) -> Option<T> {
    let started = Instant::now();
    let mut call = std::pin::pin!(call);
    loop {
        let next = (Instant::now() + MAX_RETRY_DELAY).min(deadline);
        match tokio::time::timeout_at(tokio::time::Instant::from_std(next), call.as_mut()).await {
            Ok(answer) => return Some(answer),
            Err(_) if next >= deadline => return None,
            Err(_) => context.progress.warn(&format!(
                "{location}: no answer to the {what} after {:.1?}; waiting {:.1?} more (stall bound)",
                started.elapsed(),
                deadline.saturating_duration_since(Instant::now())
            )),
        }
    }
}

/// Why a status read gave no usable answer.
enum Unanswered {
    /// The daemon answered with an error that would be the same again.
    Error(String),
    /// No answer before the deadline (the last error).
    Stalled(String),
}

impl Unanswered {
    /// The event for `location`: a stall, or `failed` with the error.
    fn event(self, location: &str, failed: impl FnOnce(String) -> Event) -> Event {
        match self {
            Unanswered::Error(reason) => failed(reason),
            Unanswered::Stalled(reason) => Event::Stalled {
                location: location.into(),
                reason,
            },
        }
    }
}

/// `GET /v1/status`, retried with backoff until the daemon answers (a decision in doubt needs
/// its answer) or `deadline` passes.
async fn status_until_answered(
    context: &Context,
    location: &str,
    deadline: Instant,
) -> Result<StatusView, Unanswered> {
    let client = context.client(location).map_err(Unanswered::Error)?;
    let mut delay = Duration::from_millis(200);
    loop {
        let error =
            match answer_by(context, location, "status read", deadline, client.status()).await {
                Some(Ok(status)) => return Ok(status),
                Some(Err(error)) if transient(&error) => describe(&error),
                Some(Err(error)) => return Err(Unanswered::Error(describe(&error))),
                None => "no answer".to_string(),
            };
        let now = Instant::now();
        if now + delay >= deadline {
            return Err(Unanswered::Stalled(format!(
                "cannot read its status: {error}"
            )));
        }
        context.progress.warn(&format!(
            "{location}: cannot read the status ({error}); retrying in {delay:?}, for {:?} more",
            deadline.duration_since(now)
        ));
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

/// The daemon still runs the generation a call dropped at `location` was made against, but
/// its status was answered before that call's deadline (or it predates deadlines): the call may
/// still commit. Waits to read again, or answers [`Event::Stalled`] (in doubt) at `deadline`.
async fn still_in_doubt(
    location: &str,
    what: &str,
    time_unix_ms: u64,
    deadline: Instant,
) -> Option<Event> {
    let pause = Duration::from_millis(500);
    if Instant::now() + pause < deadline {
        tokio::time::sleep(pause).await;
        return None;
    }
    let clock = if time_unix_ms == 0 {
        "the daemon predates deadlines (it neither reports its clock nor refuses a late call)"
            .to_string()
    } else {
        format!(
            "its clock ({time_unix_ms} ms) has not passed the deadline of the {what} dropped there"
        )
    };
    Some(Event::Stalled {
        location: location.into(),
        reason: format!(
            "in doubt: it still runs the generation the {what} was made against, but {clock}, so the {what} may still take effect"
        ),
    })
}

/// Finds out from `GET /v1/status` whether an apply in doubt happened; "not done" only from a
/// status answered after the deadline of every apply dropped there (see `doubt.rs`).
pub(super) async fn settle_apply(
    context: &Context,
    location: &str,
    expected_generation: u64,
    deadline: Instant,
) -> Event {
    loop {
        let status = match status_until_answered(context, location, deadline).await {
            Ok(status) => status,
            Err(unanswered) => {
                return unanswered.event(location, |reason| Event::ApplyFailed {
                    location: location.into(),
                    reason,
                });
            }
        };
        let generation = status.generation;
        let hash = status.hash.as_str();
        if hash == context.started.new_hash && generation > expected_generation {
            return Event::Applied {
                location: location.into(),
                generation,
            };
        }
        if generation != expected_generation {
            return Event::ApplyFailed {
                location: location.into(),
                reason: format!(
                    "the daemon runs generation {generation} (hash {hash}), neither the one we planned against ({expected_generation}) nor the new topology: someone else changed it"
                ),
            };
        }
        if not_done_is_final(context, location, status.time_unix_ms) {
            return Event::ApplyNotDone {
                location: location.into(),
            };
        }
        if let Some(stalled) =
            still_in_doubt(location, "apply", status.time_unix_ms, deadline).await
        {
            return stalled;
        }
    }
}

pub(super) async fn apply(context: &Context, location: &str, expected_generation: u64) -> Event {
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => {
            return Event::ApplyFailed {
                location: location.into(),
                reason,
            };
        }
    };
    let (deadline_unix_ms, deadline) = match call_deadline(context, location, "apply") {
        Ok(deadlines) => deadlines,
        Err(stalled) => return stalled,
    };
    let call = client.apply_by(
        &context.started.new_bundle,
        &context.intent,
        Some(expected_generation),
        Some(&context.lease),
        Some(deadline_unix_ms),
    );
    let Some(answer) = answer_by(context, location, "apply", deadline, call).await else {
        return Event::Stalled {
            location: location.into(),
            reason: "the apply got no answer".into(),
        };
    };
    match answer {
        Ok(outcome) => Event::Applied {
            location: location.into(),
            generation: outcome.generation_after,
        },
        Err(error) if super::super::lease::is_lease_lapsed(&error) => {
            match retake_lapsed(context, client, location, &error).await {
                Ok(()) => {
                    let deadline = settle_deadline(context, location);
                    settle_apply(context, location, expected_generation, deadline).await
                }
                Err(RetakeRefused::Stalled(stalled)) => stalled,
                Err(RetakeRefused::LockLost(reason)) => Event::ApplyFailed {
                    location: location.into(),
                    reason,
                },
            }
        }
        Err(error) if is_lease_refusal(&error) => {
            let reason = lock_lost(context, location, &error);
            Event::ApplyFailed {
                location: location.into(),
                reason,
            }
        }
        Err(ClientError::Status { status: 409, .. }) => {
            let deadline = settle_deadline(context, location);
            settle_apply(context, location, expected_generation, deadline).await
        }
        Err(error) if transient(&error) => {
            context.progress.warn(&format!(
                "{location}: apply answer lost ({}); asking the daemon what it runs",
                describe(&error)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let deadline = settle_deadline(context, location);
            settle_apply(context, location, expected_generation, deadline).await
        }
        Err(error) => Event::ApplyFailed {
            location: location.into(),
            reason: describe(&error),
        },
    }
}

/// Why a lapsed lease was not taken again at a location.
enum RetakeRefused {
    /// This controller lost its leadership: the call is not made (the event to answer).
    Stalled(Event),
    /// The lock's rules refused it (another holder, a higher token): the lock is lost.
    LockLost(String),
}

/// Takes our lease again at `location`, where a call was refused `lease_not_held` (`error`):
/// the lease lapsed while the daemon or the controller could not be reached.
async fn retake_lapsed(
    context: &Context,
    client: &crate::control_client::ControlClient,
    location: &str,
    error: &ClientError,
) -> Result<(), RetakeRefused> {
    context.progress.warn(&format!(
        "{location}: our lease lapsed there ({}); taking it again",
        describe(error)
    ));
    if let Err(reason) = context.still_leading() {
        return Err(RetakeRefused::Stalled(Event::Stalled {
            location: location.into(),
            reason: format!("leadership lost, the lease is not taken again: {reason}"),
        }));
    }
    super::super::lease::retake_at(client, &context.lease, context.started.lease_seconds)
        .await
        .map_err(|error| RetakeRefused::LockLost(lock_lost(context, location, &error)))
}

/// Waits until `location` announces what the old topology desires there, every peer synced
/// to `generation`.
async fn verify_rollback(context: &Context, location: &str, generation: u64) -> bool {
    let Ok(client) = context.client(location) else {
        return false;
    };
    let Some(expected) = context.expected_old.get(location) else {
        return false;
    };
    let deadline = Instant::now() + ROLLBACK_VERIFY_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        let outcome = async {
            let status = client.status().await.map_err(|error| describe(&error))?;
            gates::check_sessions(&status, generation).map_err(|verdict| verdict.detail)?;
            let health = read_health(client).await?;
            let routes = client
                .routes(None)
                .await
                .map_err(|error| describe(&error))?;
            gates::compare_routes(expected, &health, &routes)
        }
        .await;
        match outcome {
            Ok(()) => return true,
            Err(problem) => last = problem,
        }
        tokio::time::sleep(VERIFY_INTERVAL).await;
    }
    context.progress.warn(&format!(
        "{location}: routes not verified back within {ROLLBACK_VERIFY_TIMEOUT:?}: {last}"
    ));
    false
}

/// Finds out whether a rollback in doubt happened; "not done" as for [`settle_apply`].
pub(super) async fn settle_rollback(
    context: &Context,
    location: &str,
    expected_generation: u64,
    deadline: Instant,
) -> Event {
    loop {
        let status = match status_until_answered(context, location, deadline).await {
            Ok(status) => status,
            Err(unanswered) => {
                return unanswered.event(location, |reason| Event::RollbackFailed {
                    location: location.into(),
                    reason,
                });
            }
        };
        let generation = status.generation;
        let hash = status.hash.as_str();
        if hash == context.started.old_hash && generation > expected_generation {
            let verified = verify_rollback(context, location, generation).await;
            return Event::RolledBack {
                location: location.into(),
                generation,
                verified,
            };
        }
        if generation != expected_generation {
            return Event::RollbackFailed {
                location: location.into(),
                reason: format!(
                    "the daemon runs generation {generation} (hash {hash}), not the one we applied ({expected_generation}): someone else changed it"
                ),
            };
        }
        if not_done_is_final(context, location, status.time_unix_ms) {
            return Event::RollbackNotDone {
                location: location.into(),
            };
        }
        if let Some(stalled) =
            still_in_doubt(location, "rollback", status.time_unix_ms, deadline).await
        {
            return stalled;
        }
    }
}

pub(super) async fn rollback(
    context: &Context,
    location: &str,
    to_generation: u64,
    expected_generation: u64,
) -> Event {
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => {
            return Event::RollbackFailed {
                location: location.into(),
                reason,
            };
        }
    };
    let (deadline_unix_ms, deadline) = match call_deadline(context, location, "rollback") {
        Ok(deadlines) => deadlines,
        Err(stalled) => return stalled,
    };
    let call = client.rollback_by(
        to_generation,
        Some(expected_generation),
        Some(&context.lease),
        Some(deadline_unix_ms),
    );
    let Some(answer) = answer_by(context, location, "rollback", deadline, call).await else {
        return Event::Stalled {
            location: location.into(),
            reason: "the rollback got no answer".into(),
        };
    };
    match answer {
        Ok(outcome) => {
            let generation = outcome.generation_after;
            let verified = verify_rollback(context, location, generation).await;
            Event::RolledBack {
                location: location.into(),
                generation,
                verified,
            }
        }
        Err(error) if super::super::lease::is_lease_lapsed(&error) => {
            match retake_lapsed(context, client, location, &error).await {
                Ok(()) => {
                    let deadline = settle_deadline(context, location);
                    settle_rollback(context, location, expected_generation, deadline).await
                }
                Err(RetakeRefused::Stalled(stalled)) => stalled,
                Err(RetakeRefused::LockLost(reason)) => Event::RollbackFailed {
                    location: location.into(),
                    reason,
                },
            }
        }
        Err(error) if is_lease_refusal(&error) => {
            let reason = lock_lost(context, location, &error);
            Event::RollbackFailed {
                location: location.into(),
                reason,
            }
        }
        Err(ClientError::Status { status: 409, .. }) => {
            let deadline = settle_deadline(context, location);
            settle_rollback(context, location, expected_generation, deadline).await
        }
        Err(error) if transient(&error) => {
            context.progress.warn(&format!(
                "{location}: rollback answer lost ({}); asking the daemon what it runs",
                describe(&error)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let deadline = settle_deadline(context, location);
            settle_rollback(context, location, expected_generation, deadline).await
        }
        Err(error) => Event::RollbackFailed {
            location: location.into(),
            reason: describe(&error),
        },
    }
}

/// A mutation refused by the fleet lock: this controller no longer holds it and stops acting
/// (the run loop pauses before anything else is done; the failure it answers is never
/// journaled). Answers the reason.
fn lock_lost(context: &Context, location: &str, error: &ClientError) -> String {
    let reason = format!(
        "the fleet lock was lost: {location} refused a change ({}); stopped acting at once",
        describe(error)
    );
    context.lock.lose(reason.clone());
    reason
}
