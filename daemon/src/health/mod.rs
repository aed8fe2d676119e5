//! The health-check state machine of a location (issue #6): pure and synchronous, no tokio, no
//! clock of its own — every call takes the time as `now_ms`, milliseconds on any monotonic clock
//! the caller chooses (the health task uses milliseconds since it started; tests use virtual time).
//!
//! Owns:
//! - [`ProbeOutcome`], the result of one probe, and [`probe_label`], the text that names a check;
//! - [`ServiceHealth`], one service's rise/fall/hold-down tracker with flap damping;
//! - [`HealthBoard`], every tracker of the location plus fail static, the *published* verdicts the
//!   engine acts on, the transition events, and the serialisable [`HealthView`];
//! - [`expand`], the `{name}` placeholder expansion of probe targets.
//!
//! Must not touch: sockets, processes, tasks (probes are `probe.rs`, scheduling is
//! `health_task.rs`), routes and announcements (the engine reads the view and decides).
//!
//! ## Rules
//! - A round runs every check of a service; it passes when all pass. An [`ProbeOutcome::Error`]
//!   (the probe could not run) counts as a failed round for rise and fall.
//! - A tracker starts [`HealthState::Unknown`], which counts as healthy (announced): a daemon
//!   restart, or a new topology generation, must not withdraw every checked service until the
//!   first rounds have come back. Unknown turns Healthy after `rise` passing rounds and Unhealthy
//!   after `fall` failing ones.
//! - Healthy → Unhealthy after `fall` consecutive failed rounds. Unhealthy → Healthy after `rise`
//!   consecutive passing rounds *and* once the hold-down has elapsed since the turn to unhealthy;
//!   [`HealthState::HeldDown`] is "rise reached, hold-down not over" (still unhealthy).
//! - Flap damping: a turn to unhealthy within [`FLAP_WINDOW_FACTOR`] × the current hold-down
//!   after the last recovery doubles the hold-down (capped at `max_hold_down_ms`); a service that
//!   stays healthy for that long gets `hold_down_ms` back.
//! - A *transition* is a change of the observed verdict (healthy ↔ unhealthy). Unknown → Healthy
//!   and Unhealthy ↔ HeldDown change the state, not the verdict, and are not transitions.
//!
//! ## Published verdicts
//! What the engine acts on is [`ServiceView::healthy`], not the tracker's observation:
//! - **Corroboration.** A turn to unhealthy is published only once every *other* checked
//!   service has *settled* since: completed a round after the turn that either passed or left it
//!   unhealthy (not one midway between its first failure and `fall`). So a location-wide failure
//!   (every service killed at once, the checker broken) is seen as a whole — and fail static
//!   engages — before the first service to reach `fall` is withdrawn, even when the services'
//!   rounds are out of phase or their `fall` counts differ. A real single-service withdrawal is
//!   delayed by one round of the slowest other service (up to `fall` rounds of one that is itself
//!   failing). Recoveries are published at once.
//! - **Fail static.** After each round, if (unhealthy services ≥ `fail_static_min_services` and
//!   unhealthy / checked > `fail_static_share`) or (services whose last round had an Error ≥
//!   `fail_static_min_services` and their share > `fail_static_share`), the published verdicts
//!   freeze at what they were just before that round; a reason names the rule and the services.
//!   It disengages when neither rule holds any more, and verdicts follow the trackers again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use serde::Serialize;
use topologyd_config::daemon::HealthConfig;
use topologyd_config::health::{
    DnsRecordType, FLAP_WINDOW_FACTOR, HealthSpec, ProbeSpec, UnhealthyAction,
};
mod expand;
pub use expand::{ExpandError, expand, placeholder_vars};

/// How many events the view keeps for late readers (see [`HealthView::events_after`]).
pub const EVENT_RING: usize = 256;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The service answered as expected.
    Pass,
    /// The service answered wrongly, or refused: it is down here.
    Fail { detail: String },
    /// The probe could not run (timeout, spawn failure, runner broken): says little about the
    /// service, much about the checker. Counts as a failed round; feeds the fail-static rule.
    Error { detail: String },
}

impl ProbeOutcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, ProbeOutcome::Pass)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, ProbeOutcome::Error { .. })
    }

    /// `pass`, `fail` or `error`.
    pub fn result(&self) -> CheckResult {
        match self {
            ProbeOutcome::Pass => CheckResult::Pass,
            ProbeOutcome::Fail { .. } => CheckResult::Fail,
            ProbeOutcome::Error { .. } => CheckResult::Error,
        }
    }

    /// The detail text (empty for a pass).
    pub fn detail(&self) -> &str {
        match self {
            ProbeOutcome::Pass => "",
            ProbeOutcome::Fail { detail } | ProbeOutcome::Error { detail } => detail,
        }
    }
}

/// [`ProbeOutcome`] without its detail, as the view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    Pass,
    Fail,
    Error,
}

/// One check's result in a round: the check's [`probe_label`] and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub check: String,
    pub outcome: ProbeOutcome,
}

/// The text that names a check in the view and the logs: `http URL`, `tcp ADDRESS`,
/// `dns NAME TYPE @SERVER`, `exec ARGV…`.
pub fn probe_label(probe: &ProbeSpec) -> String {
    match probe {
        ProbeSpec::Http { url, .. } => format!("http {url}"),
        ProbeSpec::Tcp { address } => format!("tcp {address}"),
        ProbeSpec::Dns {
            server,
            name,
            record_type,
            ..
        } => {
            let record_type = match record_type {
                DnsRecordType::A => "A",
                DnsRecordType::Aaaa => "AAAA",
            };
            format!("dns {name} {record_type} @{server}")
        }
        ProbeSpec::Exec { command } => format!("exec {}", command.join(" ")),
    }
}

/// A tracker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// No verdict yet (after start or a changed spec); counts as healthy, see the module docs.
    Unknown,
    Healthy,
    Unhealthy,
    /// `rise` passing rounds reached, the hold-down not over yet: still unhealthy.
    HeldDown,
}

impl HealthState {
    /// Whether this state counts as healthy (announced).
    pub fn is_healthy(self) -> bool {
        matches!(self, HealthState::Unknown | HealthState::Healthy)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Unknown => "unknown",
            HealthState::Healthy => "healthy",
            HealthState::Unhealthy => "unhealthy",
            HealthState::HeldDown => "held_down",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of a tracker's observed verdict, as [`ServiceHealth::record_round`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: HealthState,
    pub to: HealthState,
    pub reason: String,
}

/// One service's rise/fall/hold-down tracker. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct ServiceHealth {
    spec: HealthSpec,
    state: HealthState,
    consecutive_passes: u32,
    consecutive_failures: u32,
    transitions: u64,
    rounds: u64,
    /// Rounds with a check that could not run, and rounds that failed otherwise.
    rounds_errored: u64,
    rounds_failed: u64,
    /// The current hold-down (doubled by flaps).
    hold_down_ms: u64,
    unhealthy_since_ms: Option<u64>,
    last_recovery_ms: Option<u64>,
    last_round: Vec<CheckRecord>,
}

impl ServiceHealth {
    pub fn new(spec: HealthSpec) -> ServiceHealth {
        ServiceHealth {
            hold_down_ms: spec.hold_down_ms,
            spec,
            state: HealthState::Unknown,
            consecutive_passes: 0,
            consecutive_failures: 0,
            transitions: 0,
            rounds: 0,
            rounds_errored: 0,
            rounds_failed: 0,
            unhealthy_since_ms: None,
            last_recovery_ms: None,
            last_round: Vec::new(),
        }
    }

    pub fn spec(&self) -> &HealthSpec {
        &self.spec
    }

    pub fn state(&self) -> HealthState {
        self.state
    }

    /// The tracker's own verdict (Unknown and Healthy count as healthy).
    pub fn observed_healthy(&self) -> bool {
        self.state.is_healthy()
    }

    pub fn consecutive_passes(&self) -> u32 {
        self.consecutive_passes
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// Verdict changes so far (healthy ↔ unhealthy).
    pub fn transitions(&self) -> u64 {
        self.transitions
    }

    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// Rounds by outcome so far: (passed, failed, errored). An errored round had a check that
    /// could not run; a failed one had a check that ran and failed.
    pub fn rounds_by_result(&self) -> (u64, u64, u64) {
        let passed = self.rounds - self.rounds_failed - self.rounds_errored;
        (passed, self.rounds_failed, self.rounds_errored)
    }

    /// The current hold-down (the configured one, or more after flaps).
    pub fn hold_down_ms(&self) -> u64 {
        self.hold_down_ms
    }

    /// How long the hold-down still keeps the service unhealthy (0 when healthy or over).
    pub fn hold_down_remaining_ms(&self, now_ms: u64) -> u64 {
        match (self.state, self.unhealthy_since_ms) {
            (HealthState::Unhealthy | HealthState::HeldDown, Some(since)) => since
                .saturating_add(self.hold_down_ms)
                .saturating_sub(now_ms),
            _ => 0,
        }
    }

    pub fn last_round(&self) -> &[CheckRecord] {
        &self.last_round
    }

    /// Whether the last round had a check that could not run.
    pub fn last_round_errored(&self) -> bool {
        self.last_round
            .iter()
            .any(|record| record.outcome.is_error())
    }

    fn rise(&self) -> u32 {
        self.spec.rise.max(1)
    }

    fn fall(&self) -> u32 {
        self.spec.fall.max(1)
    }

    fn flap_window_ms(&self) -> u64 {
        self.hold_down_ms
            .saturating_mul(u64::from(FLAP_WINDOW_FACTOR))
    }

    /// Folds one round in. Returns the transition when the observed verdict changed.
    pub fn record_round(&mut self, now_ms: u64, results: Vec<CheckRecord>) -> Option<Transition> {
        let passed = results.iter().all(|record| record.outcome.is_pass());
        self.rounds = self.rounds.saturating_add(1);
        if results.iter().any(|record| record.outcome.is_error()) {
            self.rounds_errored += 1;
        } else if !passed {
            self.rounds_failed += 1;
        }
        if passed {
            self.consecutive_passes = self.consecutive_passes.saturating_add(1);
            self.consecutive_failures = 0;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_passes = 0;
        }
        let first_failure = results
            .iter()
            .find(|record| !record.outcome.is_pass())
            .map(|record| {
                format!(
                    "{} {}: {}",
                    record.check,
                    match record.outcome.result() {
                        CheckResult::Error => "error",
                        _ => "failed",
                    },
                    record.outcome.detail()
                )
            });
        self.last_round = results;

        // A stable period gives the configured hold-down back.
        if self.state == HealthState::Healthy
            && let Some(recovered) = self.last_recovery_ms
            && now_ms.saturating_sub(recovered) >= self.flap_window_ms()
        {
            self.hold_down_ms = self.spec.hold_down_ms;
        }

        match self.state {
            HealthState::Unknown | HealthState::Healthy => {
                if !passed && self.consecutive_failures >= self.fall() {
                    let flapped = self.last_recovery_ms.is_some_and(|recovered| {
                        now_ms.saturating_sub(recovered) < self.flap_window_ms()
                    });
                    let previous_hold_down = self.hold_down_ms;
                    if flapped {
                        let cap = self.spec.max_hold_down_ms.max(self.spec.hold_down_ms);
                        self.hold_down_ms = self.hold_down_ms.saturating_mul(2).min(cap);
                    } else {
                        self.hold_down_ms = self.spec.hold_down_ms;
                    }
                    let mut reason = format!(
                        "{} consecutive failed rounds ({})",
                        self.consecutive_failures,
                        first_failure.unwrap_or_default()
                    );
                    if flapped {
                        reason.push_str(&format!(
                            "; flapping: hold-down {} ms -> {} ms",
                            previous_hold_down, self.hold_down_ms
                        ));
                    }
                    return Some(self.turn(HealthState::Unhealthy, now_ms, reason));
                }
                if self.state == HealthState::Unknown
                    && passed
                    && self.consecutive_passes >= self.rise()
                {
                    self.state = HealthState::Healthy;
                }
                None
            }
            HealthState::Unhealthy | HealthState::HeldDown => {
                if !passed {
                    self.state = HealthState::Unhealthy;
                    return None;
                }
                if self.consecutive_passes < self.rise() {
                    return None;
                }
                let since = self.unhealthy_since_ms.unwrap_or(now_ms);
                if now_ms.saturating_sub(since) >= self.hold_down_ms {
                    let reason = format!(
                        "{} consecutive passing rounds, hold-down of {} ms over",
                        self.consecutive_passes, self.hold_down_ms
                    );
                    Some(self.turn(HealthState::Healthy, now_ms, reason))
                } else {
                    self.state = HealthState::HeldDown;
                    None
                }
            }
        }
    }

    fn turn(&mut self, to: HealthState, now_ms: u64, reason: String) -> Transition {
        let from = self.state;
        self.state = to;
        self.transitions = self.transitions.saturating_add(1);
        if to.is_healthy() {
            self.last_recovery_ms = Some(now_ms);
        } else {
            self.unhealthy_since_ms = Some(now_ms);
        }
        Transition { from, to, reason }
    }
}

/// The fail-static thresholds (from `[health]` in the daemon configuration).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailStaticPolicy {
    pub share: f64,
    pub min_services: usize,
}

impl From<&HealthConfig> for FailStaticPolicy {
    fn from(config: &HealthConfig) -> FailStaticPolicy {
        FailStaticPolicy {
            share: config.fail_static_share,
            min_services: config.fail_static_min_services,
        }
    }
}

/// A health event, numbered for readers that may miss some (see [`HealthView::events_after`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthEvent {
    /// 1, 2, 3… over the board's life.
    pub seq: u64,
    /// The board clock when it happened.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: HealthEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum HealthEventKind {
    /// A service's observed verdict changed (healthy ↔ unhealthy). The published verdict may
    /// follow later (corroboration) or not at all (fail static).
    Transition {
        service: String,
        from: HealthState,
        to: HealthState,
        reason: String,
    },
    FailStaticEngaged {
        reason: String,
    },
    FailStaticDisengaged {
        reason: String,
    },
}

/// One check's line in the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckView {
    pub check: String,
    pub result: CheckResult,
    pub detail: String,
}

/// One service in the view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceView {
    /// Always true for services in the view (a service without checks is not in it).
    pub checked: bool,
    /// The verdict to act on: frozen under fail static, delayed by corroboration.
    pub healthy: bool,
    pub state: HealthState,
    /// The tracker's own verdict.
    pub observed_healthy: bool,
    /// Observed unhealthy, published still healthy: waiting for the other services to settle.
    pub withdrawal_pending: bool,
    pub transitions: u64,
    pub consecutive_passes: u32,
    pub consecutive_failures: u32,
    pub rounds: u64,
    /// Rounds so far by outcome.
    pub rounds_by_result: RoundCounts,
    /// The current hold-down (doubled by flaps).
    pub hold_down_ms: u64,
    /// As of the view's `as_of_ms`.
    pub hold_down_remaining_ms: u64,
    pub last_round: Vec<CheckView>,
    pub on_unhealthy: UnhealthyAction,
}

/// Probe rounds of a service by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoundCounts {
    pub passed: u64,
    pub failed: u64,
    pub errored: u64,
}

/// Everything the engine, the control API and the metrics read about the location's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthView {
    /// Bumped by every change the board makes; a reader can skip views it has seen.
    pub version: u64,
    /// False when `[health] enabled = false`: no service is checked, all count as healthy.
    pub enabled: bool,
    /// The board clock when the view was taken.
    pub as_of_ms: u64,
    pub fail_static: bool,
    pub fail_static_reason: Option<String>,
    /// Only services with health checks; any other service counts as healthy.
    pub services: BTreeMap<String, ServiceView>,
    /// The last [`EVENT_RING`] events, oldest first.
    pub recent_events: Vec<HealthEvent>,
}

impl HealthView {
    /// The view of a location that checks nothing (`enabled = false`, or before the first specs).
    pub fn disabled() -> HealthView {
        HealthView {
            version: 0,
            enabled: false,
            as_of_ms: 0,
            fail_static: false,
            fail_static_reason: None,
            services: BTreeMap::new(),
            recent_events: Vec::new(),
        }
    }

    /// The verdict to act on for `service`: true when it has no checks here.
    pub fn is_healthy(&self, service: &str) -> bool {
        self.services
            .get(service)
            .is_none_or(|service| service.healthy)
    }

    /// Names of the services whose published verdict is unhealthy.
    pub fn unhealthy(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|(_, service)| !service.healthy)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The highest event number so far (0: none).
    pub fn last_event_seq(&self) -> u64 {
        self.recent_events.last().map_or(0, |event| event.seq)
    }

    /// Events newer than `seen` (the last seq the reader handled), and how many of those fell
    /// out of the ring before the reader came back (0 normally).
    pub fn events_after(&self, seen: u64) -> (&[HealthEvent], u64) {
        let start = self
            .recent_events
            .partition_point(|event| event.seq <= seen);
        let events = &self.recent_events[start..];
        let lost = events
            .first()
            .map_or(0, |first| first.seq.saturating_sub(seen.saturating_add(1)));
        (events, lost)
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    health: ServiceHealth,
    /// The verdict the board publishes outside fail static.
    published: bool,
    /// The board's round number of this service's last round (0: none yet).
    last_round_seq: u64,
    /// Observed unhealthy, not yet published (see the module docs: corroboration).
    pending: Option<PendingWithdrawal>,
}

#[derive(Debug, Clone)]
struct PendingWithdrawal {
    /// The board round in which the service turned unhealthy.
    since_seq: u64,
    /// The other services that have not settled since.
    waiting: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct FailStatic {
    reason: String,
    /// The published verdicts at the moment it engaged; services missing here count healthy.
    frozen: BTreeMap<String, bool>,
}

/// Every tracker of a location, fail static, the published verdicts and the events.
#[derive(Debug, Clone)]
pub struct HealthBoard {
    policy: FailStaticPolicy,
    services: BTreeMap<String, Tracked>,
    fail_static: Option<FailStatic>,
    round_seq: u64,
    version: u64,
    event_seq: u64,
    undrained: Vec<HealthEvent>,
    recent: VecDeque<HealthEvent>,
}

impl HealthBoard {
    pub fn new(policy: FailStaticPolicy) -> HealthBoard {
        HealthBoard {
            policy,
            services: BTreeMap::new(),
            fail_static: None,
            round_seq: 0,
            version: 1,
            event_seq: 0,
            undrained: Vec::new(),
            recent: VecDeque::new(),
        }
    }

    /// Bumped by every change; equal versions mean equal views (apart from `as_of_ms` and the
    /// hold-down countdown).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn fail_static(&self) -> bool {
        self.fail_static.is_some()
    }

    pub fn fail_static_reason(&self) -> Option<&str> {
        self.fail_static.as_ref().map(|fail| fail.reason.as_str())
    }

    pub fn tracker(&self, service: &str) -> Option<&ServiceHealth> {
        self.services.get(service).map(|tracked| &tracked.health)
    }

    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// The verdict to act on; `None` for a service without checks here.
    pub fn verdict(&self, service: &str) -> Option<bool> {
        let tracked = self.services.get(service)?;
        Some(self.published_of(service, tracked))
    }

    fn published_of(&self, service: &str, tracked: &Tracked) -> bool {
        match &self.fail_static {
            Some(fail) => fail.frozen.get(service).copied().unwrap_or(true),
            None => tracked.published,
        }
    }

    fn published_verdicts(&self) -> BTreeMap<String, bool> {
        self.services
            .iter()
            .map(|(name, tracked)| (name.clone(), self.published_of(name, tracked)))
            .collect()
    }

    /// Replaces the set of checked services (a new topology generation): a service whose spec is
    /// unchanged keeps its tracker; a new or changed one starts Unknown; a missing one leaves.
    pub fn set_specs(&mut self, now_ms: u64, specs: &BTreeMap<String, HealthSpec>) {
        let before = self.published_verdicts();
        let mut changed = false;
        self.services.retain(|name, tracked| {
            let keep = specs.get(name) == Some(tracked.health.spec());
            changed |= !keep;
            keep
        });
        for (name, spec) in specs {
            if !self.services.contains_key(name) {
                changed = true;
                self.services.insert(
                    name.clone(),
                    Tracked {
                        health: ServiceHealth::new(spec.clone()),
                        published: true,
                        last_round_seq: 0,
                        pending: None,
                    },
                );
            }
        }
        if let Some(fail) = &mut self.fail_static {
            fail.frozen.retain(|name, _| specs.contains_key(name));
        }
        if changed {
            self.version += 1;
            self.settle(now_ms, before);
        }
    }

    /// Folds one round of `service` in (ignored for a service the board does not check).
    /// Returns whether the view changed.
    pub fn record_round(&mut self, service: &str, now_ms: u64, results: Vec<CheckRecord>) -> bool {
        if !self.services.contains_key(service) {
            return false;
        }
        let before = self.published_verdicts();
        self.round_seq += 1;
        let round_seq = self.round_seq;
        let Some(tracked) = self.services.get_mut(service) else {
            return false;
        };
        let transition = tracked.health.record_round(now_ms, results);
        tracked.last_round_seq = round_seq;
        if tracked.health.observed_healthy() {
            tracked.published = true;
            tracked.pending = None;
        } else if tracked.published
            && tracked.pending.is_none()
            && tracked.health.consecutive_failures() > 0
        {
            // Only a failing round starts a withdrawal: a service left announced while it
            // recovers (see the end of fail static in `settle`) keeps its routes while it passes.
            tracked.pending = Some(PendingWithdrawal {
                since_seq: round_seq,
                waiting: BTreeSet::new(),
            });
            let others: BTreeSet<String> = self
                .services
                .keys()
                .filter(|name| name.as_str() != service)
                .cloned()
                .collect();
            if let Some(pending) = self
                .services
                .get_mut(service)
                .and_then(|tracked| tracked.pending.as_mut())
            {
                pending.waiting = others;
            }
        }
        if let Some(transition) = transition {
            self.push_event(
                now_ms,
                HealthEventKind::Transition {
                    service: service.to_string(),
                    from: transition.from,
                    to: transition.to,
                    reason: transition.reason,
                },
            );
        }
        // Every round changes at least the counters or the round count.
        self.version += 1;
        self.settle(now_ms, before);
        true
    }

    /// Publishes corroborated withdrawals, then re-evaluates fail static against `before` (the
    /// published verdicts before the change being folded in).
    fn settle(&mut self, now_ms: u64, before: BTreeMap<String, bool>) {
        // A service has settled when its last round passed or left it unhealthy.
        let settled: BTreeMap<String, (u64, bool)> = self
            .services
            .iter()
            .map(|(name, tracked)| {
                let health = &tracked.health;
                let settled = health.consecutive_failures() == 0 || !health.observed_healthy();
                (name.clone(), (tracked.last_round_seq, settled))
            })
            .collect();
        for tracked in self.services.values_mut() {
            let Some(pending) = &mut tracked.pending else {
                continue;
            };
            let since = pending.since_seq;
            pending.waiting.retain(|other| {
                settled
                    .get(other)
                    .is_some_and(|(last, settled)| !(*last > since && *settled))
            });
            if pending.waiting.is_empty() {
                tracked.published = false;
                tracked.pending = None;
            }
        }

        let reasons = self.fail_static_reasons();
        match (&mut self.fail_static, reasons) {
            (None, Some(reason)) => {
                self.fail_static = Some(FailStatic {
                    reason: reason.clone(),
                    frozen: before,
                });
                self.version += 1;
                self.push_event(now_ms, HealthEventKind::FailStaticEngaged { reason });
            }
            (Some(fail), Some(reason)) => {
                if fail.reason != reason {
                    fail.reason = reason;
                    self.version += 1;
                }
            }
            (Some(fail), None) => {
                // A service that was announced when fail static began and whose last round
                // passed is recovering: it stays announced rather than flapping now and coming
                // back `rise` rounds later. One that still fails takes its action at once.
                let frozen = std::mem::take(&mut fail.frozen);
                for (name, tracked) in &mut self.services {
                    if frozen.get(name).copied().unwrap_or(true)
                        && !tracked.published
                        && tracked.health.consecutive_failures() == 0
                    {
                        tracked.published = true;
                        tracked.pending = None;
                    }
                }
                let reason = format!(
                    "{} of {} checked services unhealthy, {} with probes that could not run: \
                     below the thresholds",
                    self.services
                        .values()
                        .filter(|tracked| !tracked.health.observed_healthy())
                        .count(),
                    self.services.len(),
                    self.services
                        .values()
                        .filter(|tracked| tracked.health.last_round_errored())
                        .count(),
                );
                self.fail_static = None;
                self.version += 1;
                self.push_event(now_ms, HealthEventKind::FailStaticDisengaged { reason });
            }
            (None, None) => {}
        }
    }

    /// The rules that hold now, as a reason; `None` when neither does.
    fn fail_static_reasons(&self) -> Option<String> {
        let checked = self.services.len();
        if checked == 0 {
            return None;
        }
        let unhealthy: Vec<&str> = self
            .services
            .iter()
            .filter(|(_, tracked)| !tracked.health.observed_healthy())
            .map(|(name, _)| name.as_str())
            .collect();
        let errored: Vec<&str> = self
            .services
            .iter()
            .filter(|(_, tracked)| tracked.health.last_round_errored())
            .map(|(name, _)| name.as_str())
            .collect();
        let share_percent = self.policy.share * 100.0;
        let mut reasons = Vec::new();
        if self.exceeds(unhealthy.len(), checked) {
            reasons.push(format!(
                "{} of {} checked services unhealthy at once (more than {share_percent}% and at \
                 least {}): {}",
                unhealthy.len(),
                checked,
                self.policy.min_services,
                unhealthy.join(", ")
            ));
        }
        if self.exceeds(errored.len(), checked) {
            reasons.push(format!(
                "the probes of {} of {} checked services could not run (more than \
                 {share_percent}% and at least {}): {}",
                errored.len(),
                checked,
                self.policy.min_services,
                errored.join(", ")
            ));
        }
        if reasons.is_empty() {
            None
        } else {
            Some(reasons.join("; "))
        }
    }

    fn exceeds(&self, count: usize, checked: usize) -> bool {
        // Service counts are far below 2^52: the division is exact enough.
        let share = count as f64 / checked as f64;
        count >= self.policy.min_services && share > self.policy.share
    }

    fn push_event(&mut self, now_ms: u64, kind: HealthEventKind) {
        self.event_seq += 1;
        let event = HealthEvent {
            seq: self.event_seq,
            at_ms: now_ms,
            kind,
        };
        self.undrained.push(event.clone());
        if self.recent.len() == EVENT_RING {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }

    /// The events since the last drain (for logs, audit, metrics), oldest first.
    pub fn drain_events(&mut self) -> Vec<HealthEvent> {
        std::mem::take(&mut self.undrained)
    }

    /// The view as of `now_ms`.
    pub fn view(&self, now_ms: u64) -> HealthView {
        let services = self
            .services
            .iter()
            .map(|(name, tracked)| {
                let health = &tracked.health;
                let view = ServiceView {
                    checked: true,
                    healthy: self.published_of(name, tracked),
                    state: health.state(),
                    observed_healthy: health.observed_healthy(),
                    withdrawal_pending: tracked.pending.is_some(),
                    transitions: health.transitions(),
                    consecutive_passes: health.consecutive_passes(),
                    consecutive_failures: health.consecutive_failures(),
                    rounds: health.rounds(),
                    rounds_by_result: {
                        let (passed, failed, errored) = health.rounds_by_result();
                        RoundCounts {
                            passed,
                            failed,
                            errored,
                        }
                    },
                    hold_down_ms: health.hold_down_ms(),
                    hold_down_remaining_ms: health.hold_down_remaining_ms(now_ms),
                    last_round: health
                        .last_round()
                        .iter()
                        .map(|record| CheckView {
                            check: record.check.clone(),
                            result: record.outcome.result(),
                            detail: record.outcome.detail().to_string(),
                        })
                        .collect(),
                    on_unhealthy: health.spec().on_unhealthy.clone(),
                };
                (name.clone(), view)
            })
            .collect();
        HealthView {
            version: self.version,
            enabled: true,
            as_of_ms: now_ms,
            fail_static: self.fail_static.is_some(),
            fail_static_reason: self.fail_static.as_ref().map(|fail| fail.reason.clone()),
            services,
            recent_events: self.recent.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests;
