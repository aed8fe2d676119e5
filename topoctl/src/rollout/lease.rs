//! The controller's side of the fleet lock: one lease per daemon, held for one rollout
//! (holder = the rollout id) with a fencing token (1 for the local controller; a leader
//! elected elsewhere sets a higher one in [`super::driver::Context::lease`]).
//!
//! Owns: taking the lock before the first apply ([`acquire_fleet`]: the first location in
//! name order alone, then the rest in parallel, so of two rollouts started at once exactly one
//! takes the first and the other takes nothing; any refusal gives back what was taken), the
//! keeper that renews every third of the ttl ([`keep`]; a renewal the daemons refuse means the
//! lock is lost: [`LockWatch`] tells the driver to stop acting at once), and the release at
//! the end ([`release_fleet`]).
//!
//! Must not touch: rollout decisions (`machine.rs`), how the daemons decide (`POST /v1/lease`).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::driver::Context;
use super::journal::LeadershipCheck;
use super::journal::read_journal;
use super::machine::{Machine, Phase};

use crate::control_client::{ClientError, ControlClient};
use tokio::sync::watch;
use topologyd_api::{LeaseAction, LeaseClaim, LeaseRequest, LeaseView};

/// The error kinds with which a daemon refuses a lease (or a mutation under one).
pub const LEASE_REFUSALS: [&str; 3] = ["lease_held", "stale_token", "lease_not_held"];

/// The fencing token of the local controller (one leader per rollout id, the process that
/// started or took it over).
pub const LOCAL_TOKEN: u64 = 1;

/// Whether `error` is a daemon refusing in the name of the fleet lock.
pub fn is_lease_refusal(error: &ClientError) -> bool {
    matches!(error, ClientError::Status { status: 409, body } if LEASE_REFUSALS.contains(&body.error.kind.as_str()))
}

/// Whether `error` is a daemon refusing because our lease is not held there any more (it
/// expired while the daemon or the controller could not be reached): taken again, the call
/// can be settled and retried; the lock is not lost.
pub fn is_lease_lapsed(error: &ClientError) -> bool {
    matches!(error, ClientError::Status { status: 409, body } if body.error.kind == "lease_not_held")
}

/// Takes the lease of `claim` again at one location whose lease lapsed. `Err` with the
/// daemon's refusal when the lock's rules refuse it (another holder took it, or a higher
/// token): the lock is lost there.
pub async fn retake_at(
    client: &ControlClient,
    claim: &LeaseClaim,
    ttl_seconds: u64,
) -> Result<(), ClientError> {
    match client
        .lease(&request(claim, ttl_seconds, LeaseAction::Acquire))
        .await
    {
        Err(error) if is_lease_refusal(&error) => Err(error),
        // Not answered: the settle that follows finds out; the keeper tries again.
        _ => Ok(()),
    }
}

/// Says when the lock is lost; the driver stops acting at once when it is.
#[derive(Debug)]
pub struct LockWatch {
    lost: watch::Sender<Option<String>>,
}

impl Default for LockWatch {
    fn default() -> Self {
        LockWatch {
            lost: watch::channel(None).0,
        }
    }
}

impl LockWatch {
    /// The lock is lost, for `reason` (the first reason is kept).
    pub fn lose(&self, reason: String) {
        self.lost.send_if_modified(|lost| {
            if lost.is_none() {
                *lost = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Why the lock was lost, if it was.
    pub fn lost_reason(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Waits until the lock is lost; answers why.
    pub async fn lost(&self) -> String {
        let mut receiver = self.lost.subscribe();
        loop {
            if let Some(reason) = receiver.borrow_and_update().clone() {
                return reason;
            }
            if receiver.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

fn request(claim: &LeaseClaim, ttl_seconds: u64, action: LeaseAction) -> LeaseRequest {
    LeaseRequest {
        holder: claim.holder.clone(),
        token: claim.token,
        ttl_seconds,
        action,
    }
}

/// One location's refusal, in words: who holds the lease and for how long.
fn describe_refusal(location: &str, error: &ClientError) -> String {
    match error {
        ClientError::Status { status, body } => {
            let held = match &body.error.detail {
                Some(topologyd_api::ErrorDetail::Lease { lease }) => format!(
                    " [held by `{}` token {}, {:.1} s left]",
                    lease.holder,
                    lease.token,
                    lease.remaining_ms as f64 / 1000.0
                ),
                _ => String::new(),
            };
            format!(
                "{location}: {status} {}: {}{held}",
                body.error.kind, body.error.message
            )
        }
        other => format!("{location}: {}", crate::error_chain(other)),
    }
}

/// Asks every location in `locations` at once; answers each one's result, in name order.
async fn ask_all(
    clients: &BTreeMap<String, ControlClient>,
    locations: &[String],
    lease: &LeaseRequest,
) -> Vec<(String, Result<Option<LeaseView>, ClientError>)> {
    let mut tasks = tokio::task::JoinSet::new();
    for location in locations {
        let Some(client) = clients.get(location).cloned() else {
            continue;
        };
        let location = location.clone();
        let lease = lease.clone();
        tasks.spawn(async move { (location, client.lease(&lease).await) });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by(|left, right| left.0.cmp(&right.0));
    answers
}

/// Takes the lease for `claim` at every location of `clients`: the first in name order alone,
/// then the others in parallel. On any refusal or error, what was taken is released and the
/// answer names every refusal (holder, token, time left). Nothing is applied either way.
pub async fn acquire_fleet(
    clients: &BTreeMap<String, ControlClient>,
    claim: &LeaseClaim,
    ttl_seconds: u64,
) -> Result<(), String> {
    let names: Vec<String> = clients.keys().cloned().collect();
    let Some((first, rest)) = names.split_first() else {
        return Err("the fleet has no location".to_owned());
    };
    let acquire = request(claim, ttl_seconds, LeaseAction::Acquire);
    let mut taken = Vec::new();
    let mut refusals = Vec::new();
    for (location, answer) in ask_all(clients, std::slice::from_ref(first), &acquire).await {
        match answer {
            Ok(_) => taken.push(location),
            Err(error) => refusals.push(describe_refusal(&location, &error)),
        }
    }
    if refusals.is_empty() {
        for (location, answer) in ask_all(clients, rest, &acquire).await {
            match answer {
                Ok(_) => taken.push(location),
                Err(error) => refusals.push(describe_refusal(&location, &error)),
            }
        }
    }
    if refusals.is_empty() {
        return Ok(());
    }
    let released = release_fleet(clients, &taken, claim).await;
    let mut message = format!(
        "the fleet lock is not free: {} location(s) refused the lease for rollout `{}`; nothing was applied:\n  {}",
        refusals.len(),
        claim.holder,
        refusals.join("\n  ")
    );
    if !released.is_empty() {
        message.push_str(&format!(
            "\n  (could not give back the lease at: {}; it expires by itself)",
            released.join("; ")
        ));
    }
    message.push_str("\nwait for the other rollout to finish, or, if its controller is dead, for its lease to expire (`topoctl lease show`) or break it (`topoctl lease break --yes`)");
    Err(message)
}

/// Takes the lease for `claim` again when a controller takes over a journaled rollout
/// (`resume`, `abort`): as [`acquire_fleet`] at every location that answers, but a location
/// that does not answer (connect, TLS, HTTP failure, timeout, 503) is skipped with a warning in
/// the answer instead of refusing — an abort must never wait for a dead daemon. Its calls carry
/// the claim, so it refuses them if another rollout took its lease meanwhile, and they are
/// bounded by the stall bound like any other. Any refusal by a daemon that answers still refuses.
pub async fn reacquire_fleet(
    clients: &BTreeMap<String, ControlClient>,
    claim: &LeaseClaim,
    ttl_seconds: u64,
) -> Result<Vec<String>, String> {
    let acquire = request(claim, ttl_seconds, LeaseAction::Acquire);
    let names: Vec<String> = clients.keys().cloned().collect();
    let (answers, silent) = ask_within(clients, &names, &acquire, REACQUIRE_WAIT).await;
    let mut taken = Vec::new();
    let mut refusals = Vec::new();
    let mut skipped: Vec<String> = silent
        .iter()
        .map(|name| {
            format!("{name}: no answer within {REACQUIRE_WAIT:?}; the fleet lock is not retaken there until it answers")
        })
        .collect();
    for (location, answer) in answers {
        match answer {
            Ok(_) => taken.push(location),
            Err(error) if unanswered(&error) => skipped.push(format!(
                "{}; the fleet lock is not retaken there until it answers",
                describe_refusal(&location, &error)
            )),
            Err(error) => refusals.push(describe_refusal(&location, &error)),
        }
    }
    if refusals.is_empty() {
        return Ok(skipped);
    }
    let _ = release_fleet(clients, &taken, claim).await;
    Err(format!(
        "the fleet lock is not free: {} location(s) refused the lease for rollout `{}`; nothing was done:\n  {}",
        refusals.len(),
        claim.holder,
        refusals.join("\n  ")
    ))
}

/// How long a take-over (or the give-back at the end) waits for the daemons to answer its
/// lease request before it goes on without the ones that did not.
pub const REACQUIRE_WAIT: Duration = Duration::from_secs(3);

/// Whether a lease call got no answer from the daemon (as opposed to a refusal).
fn unanswered(error: &ClientError) -> bool {
    match error {
        ClientError::Status { status, .. } => *status == 503,
        ClientError::Connect { .. }
        | ClientError::Tls { .. }
        | ClientError::Http { .. }
        | ClientError::Timeout { .. } => true,
        _ => false,
    }
}

/// Gives the lease of `claim` back at `locations`; answers the failures (each expires by
/// itself).
pub async fn release_fleet(
    clients: &BTreeMap<String, ControlClient>,
    locations: &[String],
    claim: &LeaseClaim,
) -> Vec<String> {
    let release = request(claim, 0, LeaseAction::Release);
    // Bounded: a daemon that does not answer keeps the lease until it expires, and the
    // controller does not wait for it (an abort never waits for a dead daemon).
    let (answers, silent) = ask_within(clients, locations, &release, REACQUIRE_WAIT).await;
    answers
        .into_iter()
        .filter_map(|(location, answer)| {
            answer
                .err()
                .map(|error| describe_refusal(&location, &error))
        })
        .chain(
            silent
                .into_iter()
                .map(|name| format!("{name}: no answer within {REACQUIRE_WAIT:?}")),
        )
        .collect()
}

/// Asks every location in `locations` at once, waiting at most `wait`: the answers in name
/// order, and the locations that did not answer in time (their calls are stopped).
async fn ask_within(
    clients: &BTreeMap<String, ControlClient>,
    locations: &[String],
    lease: &LeaseRequest,
    wait: Duration,
) -> (
    Vec<(String, Result<Option<LeaseView>, ClientError>)>,
    Vec<String>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    for location in locations {
        let Some(client) = clients.get(location).cloned() else {
            continue;
        };
        let (location, lease) = (location.clone(), lease.clone());
        tasks.spawn(async move { (location, client.lease(&lease).await) });
    }
    let until = tokio::time::Instant::now() + wait;
    let mut answers = Vec::new();
    while let Ok(Some(joined)) = tokio::time::timeout_at(until, tasks.join_next()).await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    // Dropping the set stops the calls still waiting.
    drop(tasks);
    answers.sort_by(|left, right| left.0.cmp(&right.0));
    let silent = locations
        .iter()
        .filter(|name| clients.contains_key(*name))
        .filter(|name| !answers.iter().any(|(answered, _)| answered == *name))
        .cloned()
        .collect();
    (answers, silent)
}

/// Renews the lease at every location every third of `ttl_seconds`, until the task is
/// dropped. A renewal refused by the fleet lock's rules (another holder, a higher token) loses
/// the lock: `watch` says so and the keeper ends. A daemon that does not answer is retried at
/// the next round (its lease may expire; its applies are then refused until it is renewed).
pub async fn keep(
    clients: BTreeMap<String, ControlClient>,
    claim: LeaseClaim,
    ttl_seconds: u64,
    watch: Arc<LockWatch>,
    leadership: Option<LeadershipCheck>,
    warn: impl Fn(&str),
) {
    let period =
        Duration::from_millis(ttl_seconds.saturating_mul(1000) / 3).max(Duration::from_millis(300));
    let names: Vec<String> = clients.keys().cloned().collect();
    let acquire = request(&claim, ttl_seconds, LeaseAction::Acquire);
    loop {
        tokio::time::sleep(period).await;
        // A controller that lost its leadership renews nothing (its successor's token wins).
        if leadership
            .as_ref()
            .is_some_and(|leadership| leadership.check().is_err())
        {
            return;
        }
        // Each round waits at most one period: a daemon that hangs must not hold back the
        // renewal of the others until their leases lapse.
        let (answers, silent) = ask_within(&clients, &names, &acquire, period).await;
        for location in silent {
            warn(&format!(
                "fleet lock: {location} did not answer the renewal within {period:?}; retrying"
            ));
        }
        let mut lost = Vec::new();
        for (location, answer) in answers {
            match answer {
                Ok(_) => {}
                Err(error) if is_lease_refusal(&error) => {
                    lost.push(describe_refusal(&location, &error));
                }
                Err(error) => warn(&format!(
                    "fleet lock: could not renew the lease ({}); retrying in {period:?}",
                    describe_refusal(&location, &error)
                )),
            }
        }
        if !lost.is_empty() {
            watch.lose(format!(
                "the fleet lock was lost (a renewal was refused): {}; stopped acting at once",
                lost.join("; ")
            ));
            return;
        }
    }
}

/// The preflight's look at the lock: the leases the statuses show (`location`, lease). A
/// rollout in flight is named before anything else is checked (the authoritative check is
/// [`acquire_fleet`]'s compare-and-swap at each daemon).
pub fn refuse_if_held<'a>(
    leases: impl IntoIterator<Item = (&'a str, &'a LeaseView)>,
) -> Result<(), String> {
    let held: Vec<String> = leases
        .into_iter()
        .map(|(location, lease)| {
            format!(
                "{location}: held by `{}` token {}, {:.1} s left",
                lease.holder,
                lease.token,
                lease.remaining_ms as f64 / 1000.0
            )
        })
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the fleet lock is not free: another rollout holds the lease at {} location(s); nothing was applied:\n  {}\nwait for it to finish, or, if its controller is dead, for its lease to expire (`topoctl lease show`) or break it (`topoctl lease break --yes`)",
        held.len(),
        held.join("\n  ")
    ))
}

/// The claim of the local controller for `rollout`.
pub fn local_claim(rollout: &str) -> LeaseClaim {
    LeaseClaim {
        holder: rollout.to_owned(),
        token: LOCAL_TOKEN,
    }
}

/// Runs a controller (`run`) while a keeper renews the lease of `context`; once it ends,
/// gives the lease back if the rollout finished (completed, rolled back, aborted; its journal
/// in `state_dir` says so) and the lock was not lost. A paused rollout keeps it until it
/// expires (a resume takes it again).
pub async fn hold_while(
    context: &Arc<Context>,
    state_dir: &Path,
    run: impl Future<Output = i32>,
) -> i32 {
    hold_while_then(context, run, || {
        read_journal(state_dir).is_ok_and(|(_, lines)| {
            matches!(
                Machine::restore(context.machine_plan(), &lines).phase(),
                Phase::Finished(_)
            )
        })
    })
    .await
}

/// [`hold_while`], with whether the rollout finished told by `finished` (asked once `run`
/// has ended; the etcd mode's journal is not in a state directory).
pub async fn hold_while_then(
    context: &Arc<Context>,
    run: impl Future<Output = i32>,
    finished: impl FnOnce() -> bool,
) -> i32 {
    let progress = Arc::clone(&context.progress);
    let keeper = tokio::spawn(keep(
        context.clients.clone(),
        context.lease.clone(),
        context.started.lease_seconds,
        Arc::clone(&context.lock),
        context.leadership.clone(),
        move |message| progress.warn(message),
    ));
    let code = run.await;
    keeper.abort();
    if finished() && context.lock.lost_reason().is_none() {
        let names: Vec<String> = context.clients.keys().cloned().collect();
        for failure in release_fleet(&context.clients, &names, &context.lease).await {
            context.progress.warn(&format!(
                "fleet lock: could not give the lease back ({failure}); it expires by itself"
            ));
        }
    }
    code
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_preflight_names_every_lease_it_sees() {
        assert!(refuse_if_held(std::iter::empty()).is_ok());
        let lease = LeaseView {
            holder: "1700000000-abcd".to_owned(),
            token: 1,
            ttl_seconds: 60,
            expires_unix_ms: 1,
            remaining_ms: 42_500,
        };
        let error = refuse_if_held([("ams01", &lease), ("fra01", &lease)]).unwrap_err();
        assert!(error.contains("the fleet lock is not free"), "{error}");
        assert!(
            error.contains("ams01: held by `1700000000-abcd` token 1, 42.5 s left"),
            "{error}"
        );
        assert!(error.contains("2 location(s)"), "{error}");
        assert!(error.contains("topoctl lease break --yes"), "{error}");
    }

    #[tokio::test]
    async fn a_lost_lock_is_seen_by_every_waiter_with_its_first_reason() {
        let watch = Arc::new(LockWatch::default());
        assert_eq!(watch.lost_reason(), None);
        let waiter = {
            let watch = Arc::clone(&watch);
            tokio::spawn(async move { watch.lost().await })
        };
        tokio::task::yield_now().await;
        watch.lose("renewal refused".to_owned());
        watch.lose("later".to_owned());
        assert_eq!(waiter.await.unwrap(), "renewal refused");
        assert_eq!(watch.lost().await, "renewal refused");
        assert_eq!(watch.lost_reason().as_deref(), Some("renewal refused"));
    }
}
