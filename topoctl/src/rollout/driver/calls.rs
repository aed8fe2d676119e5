//! The controller's calls to one location that change it, and how their outcome is found
//! out when the answer is lost: apply and rollback with compare-and-swap and a deadline,
//! settling a call in doubt from `GET /v1/status`, verifying a rollback's routes, and the stall
//! bound measured from when the location's doubt began (`doubt.rs`).
//!
//! Must not touch: rollout decisions (`machine.rs`), the journal, the event loop (`driver.rs`).

use std::time::{Duration, Instant};

use crate::control_client::{ClientError, ControlClient};
use topologyd_api::{MutationOutcome, StatusView};

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
fn settle_deadline(context: &Context, location: &str) -> Instant {
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

/// The two calls that change a location. They are made, answered and settled alike; they
/// differ only in the events they lead to and in what "done" means (a rollback's routes are
/// verified back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mutation {
    Apply,
    Rollback,
}

impl Mutation {
    fn name(self) -> &'static str {
        match self {
            Mutation::Apply => "apply",
            Mutation::Rollback => "rollback",
        }
    }

    /// The call failed at `location` for `reason`.
    fn failed(self, location: &str, reason: String) -> Event {
        let location = location.into();
        match self {
            Mutation::Apply => Event::ApplyFailed { location, reason },
            Mutation::Rollback => Event::RollbackFailed { location, reason },
        }
    }

    /// The call is known not to have taken effect at `location`.
    fn not_done(self, location: &str) -> Event {
        let location = location.into();
        match self {
            Mutation::Apply => Event::ApplyNotDone { location },
            Mutation::Rollback => Event::RollbackNotDone { location },
        }
    }

    /// The hash `location` runs once the call took effect.
    fn target_hash(self, context: &Context) -> &str {
        match self {
            Mutation::Apply => &context.started.new_hash,
            Mutation::Rollback => &context.started.old_hash,
        }
    }

    /// Why a location that runs `generation` (`hash`), neither the one the call expected nor
    /// the call's target, cannot be settled.
    fn changed_by_someone_else(self, generation: u64, hash: &str, expected: u64) -> String {
        match self {
            Mutation::Apply => format!(
                "the daemon runs generation {generation} (hash {hash}), neither the one we planned against ({expected}) nor the new topology: someone else changed it"
            ),
            Mutation::Rollback => format!(
                "the daemon runs generation {generation} (hash {hash}), not the one we applied ({expected}): someone else changed it"
            ),
        }
    }

    /// The call took effect at `location`, which runs `generation` now (a rollback waits for
    /// its routes to be verified back).
    async fn done(self, context: &Context, location: &str, generation: u64) -> Event {
        match self {
            Mutation::Apply => Event::Applied {
                location: location.into(),
                generation,
            },
            Mutation::Rollback => {
                let verified = verify_rollback(context, location, generation).await;
                Event::RolledBack {
                    location: location.into(),
                    generation,
                    verified,
                }
            }
        }
    }
}

/// Finds out from `GET /v1/status` whether a call in doubt happened; "not done" only from a
/// status answered after the deadline of every call dropped there (see `doubt.rs`). Gives up
/// at the location's [`settle_deadline`].
pub(super) async fn settle(
    context: &Context,
    mutation: Mutation,
    location: &str,
    expected_generation: u64,
) -> Event {
    let deadline = settle_deadline(context, location);
    loop {
        let status = match status_until_answered(context, location, deadline).await {
            Ok(status) => status,
            Err(unanswered) => {
                return unanswered.event(location, |reason| mutation.failed(location, reason));
            }
        };
        let generation = status.generation;
        // A daemon of the previous release names the topologies in its canonical form.
        let hash = context.started.in_current_form(&status.hash);
        if hash == mutation.target_hash(context) && generation > expected_generation {
            return mutation.done(context, location, generation).await;
        }
        if generation != expected_generation {
            let reason = mutation.changed_by_someone_else(generation, hash, expected_generation);
            return mutation.failed(location, reason);
        }
        if not_done_is_final(context, location, status.time_unix_ms) {
            return mutation.not_done(location);
        }
        if let Some(stalled) =
            still_in_doubt(location, mutation.name(), status.time_unix_ms, deadline).await
        {
            return stalled;
        }
    }
}

pub(super) async fn apply(context: &Context, location: &str, expected_generation: u64) -> Event {
    let mutation = Mutation::Apply;
    call(
        context,
        mutation,
        location,
        expected_generation,
        |client, deadline_unix_ms| {
            client.apply_by(
                &context.started.new_bundle,
                &context.intent,
                Some(expected_generation),
                Some(&context.lease),
                Some(deadline_unix_ms),
            )
        },
    )
    .await
}

pub(super) async fn rollback(
    context: &Context,
    location: &str,
    to_generation: u64,
    expected_generation: u64,
) -> Event {
    let mutation = Mutation::Rollback;
    call(
        context,
        mutation,
        location,
        expected_generation,
        |client, deadline_unix_ms| {
            client.rollback_by(
                to_generation,
                Some(expected_generation),
                Some(&context.lease),
                Some(deadline_unix_ms),
            )
        },
    )
    .await
}

/// Makes a call at `location` with `send` (given the client and the deadline the call carries,
/// in unix milliseconds), waits for its answer up to the stall bound and answers with the event
/// it leads to.
async fn call<'context, Sent>(
    context: &'context Context,
    mutation: Mutation,
    location: &str,
    expected_generation: u64,
    send: impl FnOnce(&'context ControlClient, u64) -> Sent,
) -> Event
where
    Sent: std::future::Future<Output = Result<MutationOutcome, ClientError>>,
{
    let client = match context.client(location) {
        Ok(client) => client,
        Err(reason) => return mutation.failed(location, reason),
    };
    let (deadline_unix_ms, deadline) = match call_deadline(context, location, mutation.name()) {
        Ok(deadlines) => deadlines,
        Err(stalled) => return stalled,
    };
    let answer = answer_by(
        context,
        location,
        mutation.name(),
        deadline,
        send(client, deadline_unix_ms),
    )
    .await;
    conclude(
        context,
        client,
        mutation,
        location,
        expected_generation,
        answer,
    )
    .await
}

/// The event a call's `answer` leads to: done, refused, or in doubt and settled from the
/// status (a lost answer, a conflict, or our lapsed lease taken again first).
async fn conclude(
    context: &Context,
    client: &ControlClient,
    mutation: Mutation,
    location: &str,
    expected_generation: u64,
    answer: Option<Result<MutationOutcome, ClientError>>,
) -> Event {
    let what = mutation.name();
    let Some(answer) = answer else {
        return Event::Stalled {
            location: location.into(),
            reason: format!("the {what} got no answer"),
        };
    };
    match answer {
        Ok(outcome) => {
            mutation
                .done(context, location, outcome.generation_after)
                .await
        }
        Err(error) if super::super::lease::is_lease_lapsed(&error) => {
            match retake_lapsed(context, client, location, &error).await {
                Ok(()) => settle(context, mutation, location, expected_generation).await,
                Err(RetakeRefused::Stalled(stalled)) => stalled,
                Err(RetakeRefused::LockLost(reason)) => mutation.failed(location, reason),
            }
        }
        Err(error) if is_lease_refusal(&error) => {
            let reason = lock_lost(context, location, &error);
            mutation.failed(location, reason)
        }
        Err(ClientError::Status { status: 409, .. }) => {
            settle(context, mutation, location, expected_generation).await
        }
        Err(error) if transient(&error) => {
            context.progress.warn(&format!(
                "{location}: {what} answer lost ({}); asking the daemon what it runs",
                describe(&error)
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
            settle(context, mutation, location, expected_generation).await
        }
        Err(error) => mutation.failed(location, describe(&error)),
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
    client: &ControlClient,
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
