//! The rollout state machine: pure and synchronous, no I/O, no clock (time is an argument in
//! milliseconds of a monotonic clock the caller owns).
//!
//! ```text
//! planned ─► wave i applying ─► wave i baking ─(gates passed, bake over or promoted)─► wave i+1 … ─► completed
//!                 │  ▲ paused (by hand, or inconclusive gates) ▲ │
//!                 └──┴──────────── resume ──────────────────────┴┘
//!   gate failed / apply refused ─► rolling back (reverse order of application) ─► rolled back
//!   abort (any time before the end) ─► rolling back ─► aborted
//!   a location unanswered for its wave's stall bound ─► paused (or rolling back, `on_stall`)
//!   rolling back with locations that never answer ─► rollback pending ─► rollback incomplete
//!     └─ abort again (no controller running) ─► rolling back …
//! ```
//!
//! A rollback issues every rollback at once, in reverse order of application, and never waits
//! for a location whose apply or rollback is in doubt: that one is settled when it answers (an
//! apply that happened is then rolled back too), or reported when it stalls.
//!
//! The caller feeds [`Event`]s (a location applied, a gate result, an operator command, a tick)
//! and gets [`Output`]s: journal [`Record`]s, to be written durably *before* the [`Effect`]s
//! that follow them are carried out (apply location X with compare-and-swap on generation G,
//! roll back location X to generation P with CAS on A, evaluate a gate, settle an apply or
//! rollback left in doubt by a crash). Every state change goes through
//! [`Machine::apply_record`], the same function that replays a journal
//! ([`Machine::restore`]), so a restored machine is the machine that wrote the journal.
//!
//! Must not touch: HTTP, files, the wall clock, how a gate is evaluated (`gates.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

use super::journal::{Command, GateResultKind, Line, Outcome, Record};
use super::waves::Wave;
use topologyd_config::fleet::GateSpec;

/// What the machine needs to know about the rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct MachinePlan {
    pub waves: Vec<Wave>,
    pub gates: Vec<GateSpec>,
    /// Each location's running generation before the rollout (the apply CAS, the rollback target).
    pub before: BTreeMap<String, u64>,
}

/// Where the rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Planned,
    Applying,
    Baking,
    RollingBack,
    Finished(Outcome),
}

/// Where one location is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LocationState {
    Pending,
    Applying {
        expected_generation: u64,
    },
    Applied {
        generation: u64,
    },
    ApplyFailed,
    RollingBack {
        to_generation: u64,
        expected_generation: u64,
    },
    RolledBack {
        generation: u64,
    },
    RollbackFailed,
}

/// An input.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Begin a fresh rollout.
    Start,
    /// Time passed.
    Tick,
    /// The daemon applied the new topology (answer to `Apply`, or a settled apply).
    Applied { location: String, generation: u64 },
    /// The daemon refused the apply or runs something else: nothing was applied there.
    ApplyFailed { location: String, reason: String },
    /// A settled apply did not happen: the daemon still runs the expected generation.
    ApplyNotDone { location: String },
    /// The apply, rollback or settle at `location` got no answer within its wave's stall bound:
    /// what happened there is unknown (in doubt) and nothing is in flight there any more.
    Stalled { location: String, reason: String },
    /// One evaluation of a gate (answer to `Evaluate`).
    GateEvaluated {
        wave: usize,
        gate: usize,
        epoch: u64,
        result: GateResultKind,
        detail: String,
    },
    /// The daemon runs the old topology again.
    RolledBack {
        location: String,
        generation: u64,
        verified: bool,
    },
    /// The rollback could not be done at this location.
    RollbackFailed { location: String, reason: String },
    /// A settled rollback did not happen: the daemon still runs what we applied.
    RollbackNotDone { location: String },
    /// An operator command.
    Command(Command),
}

/// Something the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `POST /v1/apply` with `expected_generation`.
    Apply {
        location: String,
        expected_generation: u64,
    },
    /// `POST /v1/rollback {generation: to_generation, expected_generation}`, then verify.
    Rollback {
        location: String,
        to_generation: u64,
        expected_generation: u64,
    },
    /// Evaluate gate `gate` (index into the plan's gates) for wave `wave`; answer with
    /// [`Event::GateEvaluated`] carrying the same `epoch`.
    Evaluate {
        wave: usize,
        gate: usize,
        epoch: u64,
    },
    /// Find out whether an apply journaled but not answered happened.
    SettleApply {
        location: String,
        expected_generation: u64,
    },
    /// Find out whether a rollback journaled but not answered happened.
    SettleRollback {
        location: String,
        to_generation: u64,
        expected_generation: u64,
    },
}

/// An output: a record to journal, or an effect to carry out (in this order).
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Record(Record),
    Effect(Effect),
}

/// A gate's progress in the current wave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct GateProgress {
    /// Consecutive passes.
    pub passes: u32,
    /// Failed evaluations in this wave.
    pub failures: u32,
    /// Consecutive inconclusive evaluations.
    pub inconclusive: u32,
    #[serde(skip)]
    in_flight: bool,
    #[serde(skip)]
    next_due_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Rollback {
    abort: bool,
    queue: VecDeque<String>,
    failed: bool,
}

/// The rollout state machine.
#[derive(Debug, Clone)]
pub struct Machine {
    plan: MachinePlan,
    phase: Phase,
    wave: usize,
    locations: BTreeMap<String, LocationState>,
    applied_order: Vec<String>,
    paused: Option<String>,
    promoted: bool,
    bake_started_ms: u64,
    gates: Vec<GateProgress>,
    epoch: u64,
    rollback: Option<Rollback>,
    rollback_reason: Option<String>,
    /// Locations in doubt whose last call stalled: nothing is in flight there until the machine
    /// settles them again (on resume, on a rollback).
    stalled: BTreeSet<String>,
}

impl Machine {
    /// A machine for a rollout that has not started.
    pub fn new(plan: MachinePlan) -> Machine {
        let locations = plan
            .waves
            .iter()
            .flat_map(|wave| wave.locations.iter())
            .map(|location| (location.clone(), LocationState::Pending))
            .collect();
        let gates = vec![GateProgress::default(); plan.gates.len()];
        Machine {
            plan,
            phase: Phase::Planned,
            wave: 0,
            locations,
            applied_order: Vec::new(),
            paused: None,
            promoted: false,
            bake_started_ms: 0,
            gates,
            epoch: 0,
            rollback: None,
            rollback_reason: None,
            stalled: BTreeSet::new(),
        }
    }

    /// Rebuilds the machine that wrote `lines` (a journal). Call [`Machine::resume`] next.
    pub fn restore(plan: MachinePlan, lines: &[Line]) -> Machine {
        let mut machine = Machine::new(plan);
        for line in lines {
            machine.apply_record(&line.record, 0);
        }
        machine
    }

    pub fn plan(&self) -> &MachinePlan {
        &self.plan
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current wave's index.
    pub fn wave(&self) -> usize {
        self.wave
    }

    /// Why the rollout is paused, if it is.
    pub fn paused(&self) -> Option<&str> {
        self.paused.as_deref()
    }

    pub fn promoted(&self) -> bool {
        self.promoted
    }

    pub fn rollback_reason(&self) -> Option<&str> {
        self.rollback_reason.as_deref()
    }

    pub fn location(&self, name: &str) -> Option<LocationState> {
        self.locations.get(name).copied()
    }

    /// Whether an apply is in flight at `name` (its answer is awaited).
    fn is_applying(&self, name: &str) -> bool {
        matches!(self.location(name), Some(LocationState::Applying { .. }))
    }

    /// Whether a rollback is in flight at `name`.
    fn is_rolling_back(&self, name: &str) -> bool {
        matches!(self.location(name), Some(LocationState::RollingBack { .. }))
    }

    pub fn locations(&self) -> &BTreeMap<String, LocationState> {
        &self.locations
    }

    /// Locations in doubt whose last call stalled (nothing in flight there).
    pub fn stalled(&self) -> &BTreeSet<String> {
        &self.stalled
    }

    /// Locations in the order they were applied.
    pub fn applied_order(&self) -> &[String] {
        &self.applied_order
    }

    /// The progress of gate `index` in the current wave.
    pub fn gate_progress(&self, index: usize) -> Option<GateProgress> {
        self.gates.get(index).copied()
    }

    /// Milliseconds of bake left in the current wave (0 when over or promoted).
    pub fn bake_remaining_ms(&self, now: u64) -> u64 {
        if self.phase != Phase::Baking || self.promoted {
            return 0;
        }
        let bake = self.bake_ms();
        (self.bake_started_ms + bake).saturating_sub(now)
    }

    fn bake_ms(&self) -> u64 {
        self.plan
            .waves
            .get(self.wave)
            .map_or(0, |wave| wave.bake_seconds.saturating_mul(1000))
    }

    /// Whether the rollout is over.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_))
    }

    fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Applying | Phase::Baking)
    }

    /// Continues a restored machine: restarts the current wave's bake and gates, settles every
    /// apply or rollback left in doubt, lifts a pause (`abort`: starts the rollback instead,
    /// also again after a rollback that ended incomplete).
    pub fn resume(&mut self, now: u64, abort: bool) -> Vec<Output> {
        let mut out = Vec::new();
        if self.phase == Phase::Baking {
            self.restart_gates(now);
        }
        for (location, state) in &self.locations {
            match *state {
                LocationState::Applying {
                    expected_generation,
                } => out.push(Output::Effect(Effect::SettleApply {
                    location: location.clone(),
                    expected_generation,
                })),
                LocationState::RollingBack {
                    to_generation,
                    expected_generation,
                } => out.push(Output::Effect(Effect::SettleRollback {
                    location: location.clone(),
                    to_generation,
                    expected_generation,
                })),
                _ => {}
            }
        }
        // Every location in doubt is being settled above: none is stalled any more.
        self.stalled.clear();
        if abort {
            let again = self.phase == Phase::Finished(Outcome::RollbackIncomplete);
            if again || (!self.is_finished() && self.phase != Phase::RollingBack) {
                self.start_rollback("aborted by hand".into(), true, now, &mut out);
            }
        } else if self.paused.is_some() && self.is_active() {
            self.commit(Record::Resumed, now, &mut out);
        }
        if self.phase == Phase::Planned {
            self.begin(now, &mut out);
        }
        self.advance(now, &mut out);
        out
    }

    /// Handles one event at time `now` (milliseconds).
    pub fn handle(&mut self, event: Event, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                if self.phase == Phase::Planned {
                    self.begin(now, &mut out);
                }
            }
            Event::Tick => {}
            Event::Applied {
                location,
                generation,
            } => {
                if self.is_applying(&location) {
                    self.commit(
                        Record::Applied {
                            location,
                            generation,
                        },
                        now,
                        &mut out,
                    );
                }
            }
            Event::ApplyFailed { location, reason } => {
                if self.is_applying(&location) {
                    self.commit(
                        Record::ApplyFailed {
                            location: location.clone(),
                            reason: reason.clone(),
                        },
                        now,
                        &mut out,
                    );
                    if self.is_active() {
                        self.start_rollback(
                            format!("apply at {location} failed: {reason}"),
                            false,
                            now,
                            &mut out,
                        );
                    }
                }
            }
            Event::ApplyNotDone { location } => {
                if self.is_applying(&location) {
                    if self.phase == Phase::RollingBack || self.is_finished() {
                        self.commit(
                            Record::ApplyFailed {
                                location,
                                reason: "not applied (the rollout is rolling back)".into(),
                            },
                            now,
                            &mut out,
                        );
                    } else {
                        // Pending again: applied afresh once the wave is not paused.
                        self.commit(Record::ApplyNotDone { location }, now, &mut out);
                    }
                }
            }
            Event::Stalled { location, reason } => self.stalled_at(location, reason, now, &mut out),
            Event::GateEvaluated {
                wave,
                gate,
                epoch,
                result,
                detail,
            } => self.gate_evaluated(wave, gate, epoch, result, detail, now, &mut out),
            Event::RolledBack {
                location,
                generation,
                verified,
            } => {
                if self.is_rolling_back(&location) {
                    self.commit(
                        Record::RolledBack {
                            location,
                            generation,
                            verified,
                        },
                        now,
                        &mut out,
                    );
                }
            }
            Event::RollbackFailed { location, reason } => {
                if self.is_rolling_back(&location) {
                    self.commit(Record::RollbackFailed { location, reason }, now, &mut out);
                }
            }
            Event::RollbackNotDone { location } => {
                if let Some(LocationState::RollingBack {
                    to_generation,
                    expected_generation,
                }) = self.location(&location)
                {
                    // The retry is journaled as the first call was, so that a replay knows
                    // when it began (the deadline it carries runs from then).
                    self.commit(
                        Record::RollingBack {
                            location: location.clone(),
                            to_generation,
                            expected_generation,
                        },
                        now,
                        &mut out,
                    );
                    out.push(Output::Effect(Effect::Rollback {
                        location,
                        to_generation,
                        expected_generation,
                    }));
                }
            }
            Event::Command(command) => self.command(command, now, &mut out),
        }
        self.advance(now, &mut out);
        out
    }

    fn command(&mut self, command: Command, now: u64, out: &mut Vec<Output>) {
        match command {
            Command::Pause => {
                if self.is_active() && self.paused.is_none() {
                    self.commit(
                        Record::Paused {
                            reason: "paused by hand".into(),
                        },
                        now,
                        out,
                    );
                }
            }
            Command::Resume => {
                if self.is_active() && self.paused.is_some() {
                    let stalled = self.stalled.clone();
                    self.commit(Record::Resumed, now, out);
                    self.settle_again(&stalled, out);
                }
            }
            Command::Promote => {
                if self.is_active() && !self.promoted {
                    self.commit(Record::Promoted { wave: self.wave }, now, out);
                }
            }
            Command::Abort => {
                if !self.is_finished() && self.phase != Phase::RollingBack {
                    self.start_rollback("aborted by hand".into(), true, now, out);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn gate_evaluated(
        &mut self,
        wave: usize,
        gate: usize,
        epoch: u64,
        result: GateResultKind,
        detail: String,
        now: u64,
        out: &mut Vec<Output>,
    ) {
        if epoch != self.epoch || wave != self.wave || self.phase != Phase::Baking {
            return;
        }
        let Some(spec) = self.plan.gates.get(gate).cloned() else {
            return;
        };
        let Some(progress) = self.gates.get_mut(gate) else {
            return;
        };
        progress.in_flight = false;
        progress.next_due_ms = now + spec.interval_ms;
        if self.paused.is_some() {
            return;
        }
        let mut next = *progress;
        match result {
            GateResultKind::Pass => {
                next.passes += 1;
                next.inconclusive = 0;
            }
            GateResultKind::Fail => {
                next.passes = 0;
                next.failures += 1;
                next.inconclusive = 0;
            }
            GateResultKind::Inconclusive => {
                next.passes = 0;
                next.inconclusive += 1;
            }
        }
        self.commit(
            Record::GateResult {
                wave,
                gate: spec.name.clone(),
                result,
                detail: detail.clone(),
                passes: next.passes,
                failures: next.failures,
                inconclusive: next.inconclusive,
            },
            now,
            out,
        );
        if next.failures >= spec.failure_limit {
            self.commit(
                Record::GateFailed {
                    wave,
                    gate: spec.name.clone(),
                    detail: detail.clone(),
                },
                now,
                out,
            );
            let wave_name = self
                .plan
                .waves
                .get(wave)
                .map_or_else(String::new, |wave| wave.name.clone());
            self.start_rollback(
                format!(
                    "gate `{}` failed in wave `{wave_name}`: {detail}",
                    spec.name
                ),
                false,
                now,
                out,
            );
        } else if next.inconclusive >= spec.inconclusive_limit {
            self.commit(
                Record::Paused {
                    reason: format!(
                        "gate `{}` inconclusive {} times in a row: {detail}",
                        spec.name, next.inconclusive
                    ),
                },
                now,
                out,
            );
        }
    }

    fn begin(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.plan.waves.is_empty() {
            self.commit(
                Record::Finished {
                    outcome: Outcome::Completed,
                },
                now,
                out,
            );
        } else {
            self.commit(Record::WaveStarted { wave: 0 }, now, out);
        }
    }

    fn restart_gates(&mut self, now: u64) {
        self.epoch += 1;
        self.bake_started_ms = now;
        for (index, progress) in self.gates.iter_mut().enumerate() {
            let interval = self
                .plan
                .gates
                .get(index)
                .map_or(0, |gate| gate.interval_ms);
            *progress = GateProgress {
                next_due_ms: now + interval,
                ..GateProgress::default()
            };
        }
    }

    /// Records `record` (the caller journals it) and applies it to the state.
    fn commit(&mut self, record: Record, now: u64, out: &mut Vec<Output>) {
        self.apply_record(&record, now);
        out.push(Output::Record(record));
    }

    /// Applies one record to the state: used both live and to replay a journal.
    pub fn apply_record(&mut self, record: &Record, now: u64) {
        match record {
            Record::Started(_) | Record::Command { .. } | Record::GateFailed { .. } => {}
            Record::WaveStarted { wave } => {
                self.wave = *wave;
                self.phase = Phase::Applying;
                self.promoted = false;
                self.restart_gates(now);
            }
            Record::Applying {
                location,
                expected_generation,
            } => {
                self.locations.insert(
                    location.clone(),
                    LocationState::Applying {
                        expected_generation: *expected_generation,
                    },
                );
            }
            Record::Applied {
                location,
                generation,
            } => {
                self.locations.insert(
                    location.clone(),
                    LocationState::Applied {
                        generation: *generation,
                    },
                );
                self.applied_order.push(location.clone());
                self.stalled.remove(location);
                if let Some(rollback) = &mut self.rollback
                    && self.phase == Phase::RollingBack
                {
                    rollback.queue.push_front(location.clone());
                }
            }
            Record::ApplyFailed { location, .. } => {
                self.locations
                    .insert(location.clone(), LocationState::ApplyFailed);
                self.stalled.remove(location);
            }
            Record::ApplyNotDone { location } => {
                self.locations
                    .insert(location.clone(), LocationState::Pending);
                self.stalled.remove(location);
            }
            Record::Stalled { location, .. } => {
                self.stalled.insert(location.clone());
            }
            Record::RollbackPending { .. } => {}
            Record::Baking { wave } => {
                self.wave = *wave;
                self.phase = Phase::Baking;
                self.restart_gates(now);
            }
            Record::GateResult {
                gate,
                passes,
                failures,
                inconclusive,
                ..
            } => {
                if let Some(index) = self.plan.gates.iter().position(|spec| &spec.name == gate)
                    && let Some(progress) = self.gates.get_mut(index)
                {
                    progress.passes = *passes;
                    progress.failures = *failures;
                    progress.inconclusive = *inconclusive;
                }
            }
            Record::WavePassed { .. } => {}
            Record::Promoted { .. } => self.promoted = true,
            Record::Paused { reason } => self.paused = Some(reason.clone()),
            Record::Resumed => {
                self.paused = None;
                self.stalled.clear();
                if self.phase == Phase::Baking {
                    self.restart_gates(now);
                }
            }
            Record::RollbackStarted {
                reason,
                abort,
                locations,
            } => {
                self.phase = Phase::RollingBack;
                self.paused = None;
                self.stalled.clear();
                self.rollback_reason = Some(reason.clone());
                self.rollback = Some(Rollback {
                    abort: *abort,
                    queue: locations.iter().cloned().collect(),
                    failed: false,
                });
            }
            Record::RollingBack {
                location,
                to_generation,
                expected_generation,
            } => {
                self.locations.insert(
                    location.clone(),
                    LocationState::RollingBack {
                        to_generation: *to_generation,
                        expected_generation: *expected_generation,
                    },
                );
                if let Some(rollback) = &mut self.rollback {
                    rollback.queue.retain(|queued| queued != location);
                }
            }
            Record::RolledBack {
                location,
                generation,
                ..
            } => {
                self.locations.insert(
                    location.clone(),
                    LocationState::RolledBack {
                        generation: *generation,
                    },
                );
                self.stalled.remove(location);
            }
            Record::RollbackFailed { location, .. } => {
                self.locations
                    .insert(location.clone(), LocationState::RollbackFailed);
                self.stalled.remove(location);
                if let Some(rollback) = &mut self.rollback {
                    rollback.failed = true;
                }
            }
            Record::Finished { outcome } => self.phase = Phase::Finished(*outcome),
        }
    }

    fn any_location(&self, predicate: impl Fn(&LocationState) -> bool) -> bool {
        self.locations.values().any(predicate)
    }

    /// Moves the rollout forward as far as it can go without waiting for an answer.
    fn advance(&mut self, now: u64, out: &mut Vec<Output>) {
        loop {
            let step = match self.phase {
                Phase::Planned | Phase::Finished(_) => Step::Wait,
                Phase::RollingBack => self.advance_rollback(now, out),
                Phase::Applying => self.advance_apply(now, out),
                Phase::Baking => self.advance_bake(now, out),
            };
            if step == Step::Wait {
                return;
            }
        }
    }

    /// Applying a wave: the next pending location (one at a time), or the bake once every
    /// location of the wave is applied.
    fn advance_apply(&mut self, now: u64, out: &mut Vec<Output>) -> Step {
        if self.paused.is_some()
            || self.any_location(|state| matches!(state, LocationState::Applying { .. }))
        {
            return Step::Wait;
        }
        let Some(wave) = self.plan.waves.get(self.wave) else {
            return Step::Wait;
        };
        let next = wave
            .locations
            .iter()
            .find(|location| matches!(self.location(location), Some(LocationState::Pending)))
            .cloned();
        let Some(location) = next else {
            self.commit(Record::Baking { wave: self.wave }, now, out);
            return Step::Again;
        };
        let expected_generation = self.plan.before.get(&location).copied().unwrap_or(0);
        self.commit(
            Record::Applying {
                location: location.clone(),
                expected_generation,
            },
            now,
            out,
        );
        out.push(Output::Effect(Effect::Apply {
            location,
            expected_generation,
        }));
        Step::Wait
    }

    /// Baking a wave: pass it (and start the next, or finish) once its gates have passed and
    /// its bake time is over (or it was promoted); otherwise evaluate the gates that are due.
    fn advance_bake(&mut self, now: u64, out: &mut Vec<Output>) -> Step {
        if self.paused.is_some() {
            return Step::Wait;
        }
        let Some(wave) = self.plan.waves.get(self.wave).cloned() else {
            return Step::Wait;
        };
        let all_passed = wave.gates.iter().all(|index| {
            match (self.gates.get(*index), self.plan.gates.get(*index)) {
                (Some(progress), Some(spec)) => progress.passes >= spec.count,
                _ => true,
            }
        });
        let baked = self.promoted || now >= self.bake_started_ms + self.bake_ms();
        if all_passed && baked {
            self.commit(Record::WavePassed { wave: self.wave }, now, out);
            if self.wave + 1 < self.plan.waves.len() {
                self.commit(
                    Record::WaveStarted {
                        wave: self.wave + 1,
                    },
                    now,
                    out,
                );
                return Step::Again;
            }
            self.commit(
                Record::Finished {
                    outcome: Outcome::Completed,
                },
                now,
                out,
            );
            return Step::Wait;
        }
        for index in &wave.gates {
            if let Some(progress) = self.gates.get_mut(*index)
                && !progress.in_flight
                && now >= progress.next_due_ms
            {
                progress.in_flight = true;
                out.push(Output::Effect(Effect::Evaluate {
                    wave: self.wave,
                    gate: *index,
                    epoch: self.epoch,
                }));
            }
        }
        Step::Wait
    }
}

/// What one step of [`Machine::advance`] leaves: the phase moved on and may go further, or the
/// machine waits for an answer or for time to pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Again,
    Wait,
}

mod rollback;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
