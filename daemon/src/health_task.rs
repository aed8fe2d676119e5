//! The health task (issue #6): schedules every checked service's probe rounds, folds the results
//! into the one [`HealthBoard`] it owns and publishes a [`HealthView`] on a watch channel.
//!
//! Owns: the board, the per-service schedule, the round tasks (each round runs its checks
//! concurrently, one tokio task per probe) and the board clock (milliseconds since the task
//! started).
//!
//! Must not touch: routes, the engine's state, metrics, the audit log. The engine reads the view
//! (verdicts, fail static, events) and decides what to announce.
//!
//! ## Channels
//! - In: a `watch::Receiver<HealthSpecs>`, service name → *expanded* [`HealthSpec`] (see
//!   [`crate::health::expand`]), sent by the engine for every topology generation. A service
//!   whose spec is unchanged keeps its tracker; a new or changed one starts Unknown (healthy); a
//!   service missing from the map is not checked and not in the view. The task ends when the
//!   sender is dropped.
//! - Out: a `watch::Receiver<Arc<HealthView>>`, replaced after every round or spec change that
//!   changed the board (a healthy service's pass counter grows each round, so in practice after
//!   every round). `hold_down_remaining_ms` is as of the view's `as_of_ms`.
//! - Events: the view carries the last [`crate::health::EVENT_RING`] events, numbered. A reader
//!   keeps the last `seq` it handled and calls [`HealthView::events_after`], which also says how
//!   many it missed (only if more than the ring's worth happened between two reads). Chosen over
//!   a separate mpsc so there is one channel, the health task never blocks on a slow engine, and
//!   a reader that starts late still sees recent history. The task itself logs every event with
//!   `tracing` (info for a transition, warn for fail static), so the log is complete anyway.
//!
//! ## Schedule
//! Each service's first round starts at once plus a random delay of up to 10% of its interval
//! (so services with one interval do not probe in lock-step); then every `interval_ms` measured
//! from the previous round's start. A round still running when the next is due delays it: one
//! round per service at a time. A round whose task dies is folded in as an Error on every check
//! (the runner is broken, which the fail-static rule counts).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{AbortHandle, Id, JoinHandle, JoinSet};
use tokio::time::Instant;
use topologyd_config::daemon::HealthConfig;
use topologyd_config::health::{HealthSpec, ProbeSpec};

use crate::health::{
    CheckRecord, FailStaticPolicy, HealthBoard, HealthEvent, HealthEventKind, HealthView,
    ProbeOutcome, probe_label,
};
use crate::probe::run_probe;

/// Service name → expanded health spec, for one topology generation.
pub type HealthSpecs = Arc<BTreeMap<String, HealthSpec>>;

/// Shortest interval the task honours: a guard against a busy loop on `interval_ms = 0` (the
/// topology parser already refuses less than `MIN_HEALTH_INTERVAL_MS`).
pub const MIN_INTERVAL_MS: u64 = 10;

/// The first round of a service is delayed by up to interval / this (10%).
const FIRST_ROUND_JITTER_DIVISOR: u64 = 10;

/// Starts the health task. Returns the view channel (it holds an empty view until the first
/// specs are folded in; with `config.enabled == false` it holds [`HealthView::disabled`] for
/// good) and the task's handle (abort it, or drop the specs sender, to stop).
pub fn spawn_health_task(
    specs: watch::Receiver<HealthSpecs>,
    config: HealthConfig,
) -> (watch::Receiver<Arc<HealthView>>, JoinHandle<()>) {
    let (view_tx, view_rx) = watch::channel(Arc::new(HealthView::disabled()));
    let handle = tokio::spawn(run(specs, config, view_tx));
    (view_rx, handle)
}

struct Schedule {
    spec: HealthSpec,
    /// Distinguishes this schedule from an earlier one of the same service (a changed spec), so
    /// a late round of the old spec is dropped.
    epoch: u64,
    next_due: Instant,
    in_flight: Option<AbortHandle>,
}

struct RoundDone {
    service: String,
    epoch: u64,
    results: Vec<CheckRecord>,
}

/// Who a round task is, should it die before reporting.
struct RoundIdentity {
    service: String,
    epoch: u64,
    labels: Vec<String>,
}

async fn run(
    mut specs: watch::Receiver<HealthSpecs>,
    config: HealthConfig,
    view_tx: watch::Sender<Arc<HealthView>>,
) {
    if !config.enabled {
        tracing::info!("health checks disabled: every service counts as healthy");
        view_tx.send_replace(Arc::new(HealthView::disabled()));
        while specs.changed().await.is_ok() {}
        return;
    }
    let mut task = HealthTask {
        start: Instant::now(),
        board: HealthBoard::new(FailStaticPolicy::from(&config)),
        schedule: BTreeMap::new(),
        rounds: JoinSet::new(),
        identities: HashMap::new(),
        next_epoch: 0,
        published_version: 0,
        view_tx,
    };
    let first = specs.borrow_and_update().clone();
    task.apply_specs(&first);
    task.publish();
    loop {
        task.start_due_rounds();
        let next_due = task.next_due();
        tokio::select! {
            changed = specs.changed() => {
                if changed.is_err() {
                    break;
                }
                let specs = specs.borrow_and_update().clone();
                task.apply_specs(&specs);
                task.publish();
            }
            Some(joined) = task.rounds.join_next_with_id(), if !task.rounds.is_empty() => {
                task.fold(joined);
                task.publish();
            }
            () = sleep_until_or_forever(next_due) => {}
        }
    }
    task.rounds.shutdown().await;
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

struct HealthTask {
    start: Instant,
    board: HealthBoard,
    schedule: BTreeMap<String, Schedule>,
    rounds: JoinSet<RoundDone>,
    identities: HashMap<Id, RoundIdentity>,
    next_epoch: u64,
    published_version: u64,
    view_tx: watch::Sender<Arc<HealthView>>,
}

impl HealthTask {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn apply_specs(&mut self, specs: &BTreeMap<String, HealthSpec>) {
        let now = Instant::now();
        self.schedule.retain(|name, schedule| {
            let keep = specs.get(name) == Some(&schedule.spec);
            if !keep && let Some(round) = schedule.in_flight.take() {
                round.abort();
            }
            keep
        });
        for (name, spec) in specs {
            if self.schedule.contains_key(name) {
                continue;
            }
            self.next_epoch += 1;
            let interval = interval_ms(spec);
            let jitter = rand::random_range(0..=interval / FIRST_ROUND_JITTER_DIVISOR);
            tracing::info!(
                service = %name,
                checks = spec.checks.len(),
                interval_ms = interval,
                "health checks scheduled"
            );
            self.schedule.insert(
                name.clone(),
                Schedule {
                    spec: spec.clone(),
                    epoch: self.next_epoch,
                    next_due: now + Duration::from_millis(jitter),
                    in_flight: None,
                },
            );
        }
        let now_ms = self.now_ms();
        self.board.set_specs(now_ms, specs);
    }

    fn next_due(&self) -> Option<Instant> {
        self.schedule
            .values()
            .filter(|schedule| schedule.in_flight.is_none())
            .map(|schedule| schedule.next_due)
            .min()
    }

    fn start_due_rounds(&mut self) {
        let now = Instant::now();
        for (name, schedule) in &mut self.schedule {
            if schedule.in_flight.is_some() || schedule.next_due > now {
                continue;
            }
            schedule.next_due = now + Duration::from_millis(interval_ms(&schedule.spec));
            let checks = schedule.spec.checks.clone();
            let labels = checks.iter().map(probe_label).collect();
            let timeout = Duration::from_millis(schedule.spec.timeout_ms);
            let round = self
                .rounds
                .spawn(run_round(name.clone(), schedule.epoch, checks, timeout));
            self.identities.insert(
                round.id(),
                RoundIdentity {
                    service: name.clone(),
                    epoch: schedule.epoch,
                    labels,
                },
            );
            schedule.in_flight = Some(round);
        }
    }

    fn fold(&mut self, joined: Result<(Id, RoundDone), tokio::task::JoinError>) {
        let done = match joined {
            Ok((id, done)) => {
                self.identities.remove(&id);
                done
            }
            Err(join_error) => {
                let Some(identity) = self.identities.remove(&join_error.id()) else {
                    return;
                };
                if join_error.is_cancelled() {
                    // Aborted because the spec changed or left; its schedule is gone already.
                    return;
                }
                tracing::error!(
                    service = %identity.service,
                    error = %join_error,
                    "health round task died"
                );
                RoundDone {
                    service: identity.service,
                    epoch: identity.epoch,
                    results: identity
                        .labels
                        .into_iter()
                        .map(|check| CheckRecord {
                            check,
                            outcome: ProbeOutcome::Error {
                                detail: format!("probe runner failed: {join_error}"),
                            },
                        })
                        .collect(),
                }
            }
        };
        let Some(schedule) = self.schedule.get_mut(&done.service) else {
            return;
        };
        if schedule.epoch != done.epoch {
            return;
        }
        schedule.in_flight = None;
        let now_ms = self.now_ms();
        self.board.record_round(&done.service, now_ms, done.results);
    }

    /// Logs the new events and replaces the view when the board changed.
    fn publish(&mut self) {
        for event in self.board.drain_events() {
            log_event(&event);
        }
        if self.board.version() == self.published_version {
            return;
        }
        self.published_version = self.board.version();
        let view = self.board.view(self.now_ms());
        self.view_tx.send_replace(Arc::new(view));
    }
}

fn interval_ms(spec: &HealthSpec) -> u64 {
    spec.interval_ms.max(MIN_INTERVAL_MS)
}

fn log_event(event: &HealthEvent) {
    match &event.kind {
        HealthEventKind::Transition {
            service,
            from,
            to,
            reason,
        } => tracing::info!(
            %service,
            %from,
            %to,
            seq = event.seq,
            "health transition: {reason}"
        ),
        HealthEventKind::FailStaticEngaged { reason } => tracing::warn!(
            seq = event.seq,
            "health fail static engaged, announcements frozen: {reason}"
        ),
        HealthEventKind::FailStaticDisengaged { reason } => tracing::warn!(
            seq = event.seq,
            "health fail static disengaged, verdicts follow the checks again: {reason}"
        ),
    }
}

/// One round: every check at once, results in the spec's order.
async fn run_round(
    service: String,
    epoch: u64,
    checks: Vec<ProbeSpec>,
    timeout: Duration,
) -> RoundDone {
    let labels: Vec<String> = checks.iter().map(probe_label).collect();
    let mut probes = JoinSet::new();
    let mut index_of = HashMap::new();
    for (index, check) in checks.into_iter().enumerate() {
        let handle = probes.spawn(async move { (index, run_probe(&check, timeout).await) });
        index_of.insert(handle.id(), index);
    }
    let mut outcomes: Vec<Option<ProbeOutcome>> = vec![None; labels.len()];
    while let Some(joined) = probes.join_next_with_id().await {
        match joined {
            Ok((_, (index, outcome))) => outcomes[index] = Some(outcome),
            Err(join_error) => {
                if let Some(index) = index_of.get(&join_error.id()) {
                    outcomes[*index] = Some(ProbeOutcome::Error {
                        detail: format!("probe runner failed: {join_error}"),
                    });
                }
            }
        }
    }
    let results = labels
        .into_iter()
        .zip(outcomes)
        .map(|(check, outcome)| CheckRecord {
            check,
            outcome: outcome.unwrap_or_else(|| ProbeOutcome::Error {
                detail: "probe runner lost the result".to_string(),
            }),
        })
        .collect();
    RoundDone {
        service,
        epoch,
        results,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthState;
    use tokio::net::TcpListener;
    use topologyd_config::health::UnhealthyAction;

    fn tcp_spec(address: String, interval_ms: u64) -> HealthSpec {
        HealthSpec {
            interval_ms,
            timeout_ms: 500,
            rise: 2,
            fall: 2,
            hold_down_ms: 0,
            max_hold_down_ms: 0,
            on_unhealthy: UnhealthyAction::Withdraw,
            checks: vec![ProbeSpec::Tcp { address }],
        }
    }

    async fn wait_for(
        views: &mut watch::Receiver<Arc<HealthView>>,
        what: &str,
        condition: impl Fn(&HealthView) -> bool,
    ) -> Arc<HealthView> {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                {
                    let view = views.borrow_and_update();
                    if condition(&view) {
                        return Arc::clone(&view);
                    }
                }
                if views.changed().await.is_err() {
                    panic!("health task ended while waiting for {what}");
                }
            }
        })
        .await;
        match waited {
            Ok(view) => view,
            Err(_) => panic!("timed out waiting for {what}: {:?}", views.borrow()),
        }
    }

    #[tokio::test]
    async fn disabled_publishes_an_empty_view() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut specs = BTreeMap::new();
        specs.insert(
            "web".to_string(),
            tcp_spec(listener.local_addr().expect("address").to_string(), 20),
        );
        let (specs_tx, specs_rx) = watch::channel(Arc::new(specs));
        let config = HealthConfig {
            enabled: false,
            ..HealthConfig::default()
        };
        let (views, handle) = spawn_health_task(specs_rx, config);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let view = views.borrow().clone();
        assert!(!view.enabled);
        assert!(view.services.is_empty());
        assert!(view.is_healthy("web"));
        drop(specs_tx);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("ends with the specs sender")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_dying_service_is_withdrawn_and_comes_back() {
        let web = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let web_address = web.local_addr().expect("address");
        let dns = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let dns_address = dns.local_addr().expect("address");
        let mut specs = BTreeMap::new();
        specs.insert("web".to_string(), tcp_spec(web_address.to_string(), 30));
        specs.insert("dns".to_string(), tcp_spec(dns_address.to_string(), 30));
        let (specs_tx, specs_rx) = watch::channel(Arc::new(specs.clone()));
        let (mut views, handle) = spawn_health_task(specs_rx, HealthConfig::default());

        let view = wait_for(&mut views, "both healthy", |view| {
            view.services.len() == 2
                && view
                    .services
                    .values()
                    .all(|service| service.state == HealthState::Healthy)
        })
        .await;
        assert!(view.enabled);
        let seen = view.last_event_seq();

        drop(web);
        let view = wait_for(&mut views, "web withdrawn", |view| !view.is_healthy("web")).await;
        assert!(view.is_healthy("dns"));
        assert!(!view.fail_static);
        let (events, lost) = view.events_after(seen);
        assert_eq!(lost, 0);
        assert!(events.iter().any(|event| matches!(
            &event.kind,
            HealthEventKind::Transition { service, to: HealthState::Unhealthy, .. } if service == "web"
        )));

        // The same address again: the service is back.
        let web = TcpListener::bind(web_address).await.expect("rebind");
        let view = wait_for(&mut views, "web back", |view| view.is_healthy("web")).await;
        assert_eq!(view.services["web"].transitions, 2);

        // A new generation that changes dns's spec and keeps web's: web keeps its tracker.
        specs.insert("dns".to_string(), tcp_spec(dns_address.to_string(), 40));
        specs_tx.send_replace(Arc::new(specs.clone()));
        let view = wait_for(&mut views, "dns reset", |view| {
            view.services.get("dns").is_some_and(|dns| dns.rounds <= 1)
        })
        .await;
        assert_eq!(view.services["web"].transitions, 2);

        // A generation without web: web leaves the view.
        specs.remove("web");
        specs_tx.send_replace(Arc::new(specs));
        wait_for(&mut views, "web gone", |view| {
            !view.services.contains_key("web")
        })
        .await;

        drop(specs_tx);
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("ends with the specs sender")
            .expect("no panic");
        drop((web, dns));
    }

    #[tokio::test]
    async fn killing_every_service_at_once_engages_fail_static_without_withdrawals() {
        let mut listeners = Vec::new();
        let mut specs = BTreeMap::new();
        for name in ["a", "b", "c"] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            specs.insert(
                name.to_string(),
                tcp_spec(listener.local_addr().expect("address").to_string(), 30),
            );
            listeners.push(listener);
        }
        let (_specs_tx, specs_rx) = watch::channel(Arc::new(specs));
        let (mut views, handle) = spawn_health_task(specs_rx, HealthConfig::default());
        wait_for(&mut views, "all healthy", |view| {
            view.services.len() == 3
                && view
                    .services
                    .values()
                    .all(|service| service.state == HealthState::Healthy)
        })
        .await;
        let mut check = views.clone();
        drop(listeners);
        let monitor = tokio::spawn(async move {
            // No view may ever publish a withdrawal.
            loop {
                {
                    let view = check.borrow_and_update();
                    assert!(view.unhealthy().is_empty(), "withdrawn: {view:?}");
                    if view.fail_static
                        && view
                            .services
                            .values()
                            .all(|service| !service.observed_healthy)
                    {
                        return;
                    }
                }
                if check.changed().await.is_err() {
                    return;
                }
            }
        });
        let view = wait_for(&mut views, "fail static", |view| {
            view.fail_static
                && view
                    .services
                    .values()
                    .all(|service| !service.observed_healthy)
        })
        .await;
        assert!(view.fail_static_reason.is_some());
        tokio::time::timeout(Duration::from_secs(5), monitor)
            .await
            .expect("monitor ends")
            .expect("no withdrawal was ever published");
        handle.abort();
    }
}
