//! Scenario tests and properties of the rollout state machine, in virtual time, against
//! simulated daemons that enforce compare-and-swap on their generation like topologyd does.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::rollout::journal::{Line, Outcome};
use crate::rollout::waves::Wave;
use topologyd_config::fleet::{GateKind, GateSpec, OnStall};

fn gate(name: &str, count: u32, failure_limit: u32, inconclusive_limit: u32) -> GateSpec {
    GateSpec {
        name: name.into(),
        kind: GateKind::Daemon,
        interval_ms: 100,
        count,
        failure_limit,
        inconclusive_limit,
        waves: None,
    }
}

fn wave(name: &str, locations: &[&str], bake_seconds: u64, gates: Vec<usize>) -> Wave {
    Wave {
        name: name.into(),
        base: name.into(),
        locations: locations.iter().map(|name| (*name).to_string()).collect(),
        bake_seconds,
        gates,
        skipped_gates: vec![],
        stall_seconds: 30,
        on_stall: OnStall::Pause,
    }
}

fn plan() -> MachinePlan {
    let waves = vec![
        wave("canary", &["ams01"], 1, vec![0, 1]),
        wave("eu", &["fra01", "lhr01"], 1, vec![0, 1]),
        wave("rest", &["ord01", "sin01", "sfo01"], 1, vec![0]),
    ];
    let before = waves
        .iter()
        .flat_map(|wave| wave.locations.iter())
        .enumerate()
        .map(|(index, location)| (location.clone(), 10 + index as u64))
        .collect();
    MachinePlan {
        waves,
        gates: vec![gate("daemons", 2, 1, 3), gate("probes", 1, 2, 3)],
        before,
    }
}

/// A simulated topologyd: its generation and whether it runs the new topology.
#[derive(Debug, Clone)]
struct Daemon {
    generation: u64,
    new: bool,
    applies: u32,
    rollbacks: u32,
}

/// Drives a machine like the driver does, answering effects from simulated daemons.
struct Harness {
    machine: Machine,
    journal: Vec<Line>,
    daemons: BTreeMap<String, Daemon>,
    now: u64,
    pending: Vec<Effect>,
    /// Order in which daemons actually applied / rolled back.
    applied: Vec<String>,
    rolled_back: Vec<String>,
    issued_applies: BTreeMap<String, u32>,
    crash_at: Option<usize>,
    crashed: bool,
    /// A machine was restored from the journal and resumed.
    resumed: bool,
    /// A rollback was journaled (the first `rollback_started`).
    rolling_back: bool,
    /// An apply was issued while paused or after a rollback started.
    apply_after_stop: bool,
}

impl Harness {
    fn new(plan: MachinePlan) -> Harness {
        let daemons = plan
            .before
            .iter()
            .map(|(location, generation)| {
                (
                    location.clone(),
                    Daemon {
                        generation: *generation,
                        new: false,
                        applies: 0,
                        rollbacks: 0,
                    },
                )
            })
            .collect();
        Harness {
            machine: Machine::new(plan),
            journal: Vec::new(),
            daemons,
            now: 0,
            pending: Vec::new(),
            applied: Vec::new(),
            rolled_back: Vec::new(),
            issued_applies: BTreeMap::new(),
            crash_at: None,
            crashed: false,
            resumed: false,
            rolling_back: false,
            apply_after_stop: false,
        }
    }

    fn take(&mut self, outputs: Vec<Output>) {
        let stopped = self.machine.paused().is_some() || self.machine.phase() != Phase::Applying;
        for output in outputs {
            match output {
                Output::Record(record) => {
                    self.rolling_back |= matches!(record, Record::RollbackStarted { .. });
                    self.journal.push(Line {
                        time: self.now as f64,
                        record,
                    });
                }
                Output::Effect(effect) => {
                    if let Effect::Apply { location, .. } = &effect {
                        *self.issued_applies.entry(location.clone()).or_default() += 1;
                        self.apply_after_stop |= self.rolling_back || stopped;
                    }
                    self.pending.push(effect);
                }
            }
        }
    }

    fn handle(&mut self, event: Event) {
        let outputs = self.machine.handle(event, self.now);
        self.take(outputs);
        if let Some(crash_at) = self.crash_at
            && !self.crashed
            && self.journal.len() >= crash_at
        {
            self.crashed = true;
            self.journal.truncate(crash_at);
            self.crash_and_resume(false);
        }
    }

    fn start(&mut self) {
        self.handle(Event::Start);
    }

    /// A crash: everything in flight is lost, a new machine replays the journal and resumes.
    fn crash_and_resume(&mut self, abort: bool) {
        self.resumed = true;
        self.pending.clear();
        let plan = self.machine.plan().clone();
        self.machine = Machine::restore(plan, &self.journal);
        let outputs = self.machine.resume(self.now, abort);
        self.take(outputs);
    }

    /// Carries out one pending effect; `gate_result` decides gate evaluations; `refuse` makes
    /// the daemon refuse an apply; `lose_answer` performs the call but loses the answer
    /// (the driver then settles by asking the daemon).
    fn step(
        &mut self,
        index: usize,
        gate_result: GateResultKind,
        refuse: bool,
        lose_answer: bool,
        rollback_fails: bool,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let effect = self.pending.remove(index % self.pending.len());
        let event = match effect {
            Effect::Apply {
                location,
                expected_generation,
            } => {
                let daemon = self.daemons.get_mut(&location).unwrap();
                if refuse {
                    Event::ApplyFailed {
                        location,
                        reason: "refused by the guards".into(),
                    }
                } else if daemon.generation == expected_generation && !daemon.new {
                    daemon.generation += 1;
                    daemon.new = true;
                    daemon.applies += 1;
                    self.applied.push(location.clone());
                    if lose_answer {
                        // The answer is lost: the driver settles.
                        self.pending.push(Effect::SettleApply {
                            location,
                            expected_generation,
                        });
                        return;
                    }
                    Event::Applied {
                        location,
                        generation: daemon.generation,
                    }
                } else {
                    // 409: the driver asks the daemon what it runs.
                    settle_apply(daemon, &location, expected_generation)
                }
            }
            Effect::SettleApply {
                location,
                expected_generation,
            } => settle_apply(&self.daemons[&location], &location, expected_generation),
            Effect::Rollback {
                location,
                to_generation: _,
                expected_generation,
            } => {
                let daemon = self.daemons.get_mut(&location).unwrap();
                if rollback_fails {
                    Event::RollbackFailed {
                        location,
                        reason: "conflict".into(),
                    }
                } else if daemon.generation == expected_generation && daemon.new {
                    daemon.generation += 1;
                    daemon.new = false;
                    daemon.rollbacks += 1;
                    self.rolled_back.push(location.clone());
                    if lose_answer {
                        self.pending.push(Effect::SettleRollback {
                            location,
                            to_generation: 0,
                            expected_generation,
                        });
                        return;
                    }
                    Event::RolledBack {
                        location,
                        generation: daemon.generation,
                        verified: true,
                    }
                } else {
                    settle_rollback(daemon, &location, expected_generation)
                }
            }
            Effect::SettleRollback {
                location,
                expected_generation,
                ..
            } => settle_rollback(&self.daemons[&location], &location, expected_generation),
            Effect::Evaluate { wave, gate, epoch } => Event::GateEvaluated {
                wave,
                gate,
                epoch,
                result: gate_result,
                detail: "simulated".into(),
            },
        };
        self.handle(event);
    }

    fn tick(&mut self, milliseconds: u64) {
        self.now += milliseconds;
        self.handle(Event::Tick);
    }

    /// Runs with every gate passing until finished (or the step budget runs out).
    fn run_to_end(&mut self, gate_result: GateResultKind) {
        for _ in 0..10_000 {
            if self.machine.is_finished() {
                return;
            }
            if self.pending.is_empty() {
                self.tick(50);
            } else {
                self.step(0, gate_result, false, false, false);
            }
        }
    }

    fn records(&self) -> Vec<&'static str> {
        self.journal
            .iter()
            .map(|line| line.record.event_name())
            .collect()
    }

    fn outcome(&self) -> Option<Outcome> {
        match self.machine.phase() {
            Phase::Finished(outcome) => Some(outcome),
            _ => None,
        }
    }
}

/// What the driver decides for an apply in doubt, from the daemon's status.
fn settle_apply(daemon: &Daemon, location: &str, expected_generation: u64) -> Event {
    if daemon.new && daemon.generation > expected_generation {
        Event::Applied {
            location: location.into(),
            generation: daemon.generation,
        }
    } else if daemon.generation == expected_generation {
        Event::ApplyNotDone {
            location: location.into(),
        }
    } else {
        Event::ApplyFailed {
            location: location.into(),
            reason: "the daemon runs something else".into(),
        }
    }
}

fn settle_rollback(daemon: &Daemon, location: &str, expected_generation: u64) -> Event {
    if !daemon.new && daemon.generation > expected_generation {
        Event::RolledBack {
            location: location.into(),
            generation: daemon.generation,
            verified: true,
        }
    } else if daemon.generation == expected_generation && daemon.new {
        Event::RollbackNotDone {
            location: location.into(),
        }
    } else {
        Event::RollbackFailed {
            location: location.into(),
            reason: "the daemon runs something else".into(),
        }
    }
}

#[test]
fn a_good_change_rolls_through_every_wave_in_order() {
    let mut harness = Harness::new(plan());
    harness.start();
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Completed));
    assert_eq!(
        harness.applied,
        ["ams01", "fra01", "lhr01", "ord01", "sin01", "sfo01"]
    );
    assert!(
        harness
            .daemons
            .values()
            .all(|daemon| daemon.new && daemon.applies == 1)
    );
    let records = harness.records();
    assert_eq!(
        records
            .iter()
            .filter(|name| **name == "wave_passed")
            .count(),
        3
    );
    assert_eq!(records.last(), Some(&"completed"));
    // Each apply is journaled before it is made, with the location's own generation as CAS.
    let first_apply = harness
        .journal
        .iter()
        .position(|line| matches!(line.record, Record::Applying { .. }))
        .unwrap();
    assert_eq!(
        harness.journal[first_apply].record,
        Record::Applying {
            location: "ams01".into(),
            expected_generation: 10
        }
    );
}

#[test]
fn a_wave_waits_for_its_bake_and_its_gate_count() {
    let mut harness = Harness::new(plan());
    harness.start();
    harness.step(0, GateResultKind::Pass, false, false, false); // apply ams01
    assert_eq!(harness.machine.phase(), Phase::Baking);
    // Gates are first due one interval after the bake starts.
    assert!(harness.pending.is_empty());
    harness.tick(100);
    assert_eq!(harness.pending.len(), 2);
    harness.step(0, GateResultKind::Pass, false, false, false);
    harness.step(0, GateResultKind::Pass, false, false, false);
    // probes (count 1) passed, daemons (count 2) not yet; the bake (1 s) is not over either.
    harness.tick(100);
    harness.step(0, GateResultKind::Pass, false, false, false);
    harness.step(0, GateResultKind::Pass, false, false, false);
    assert_eq!(harness.machine.wave(), 0);
    assert_eq!(harness.machine.bake_remaining_ms(harness.now), 800);
    for _ in 0..8 {
        harness.tick(100);
        while !harness.pending.is_empty() {
            harness.step(0, GateResultKind::Pass, false, false, false);
        }
    }
    assert_eq!(harness.machine.wave(), 1);
    assert_eq!(harness.applied, ["ams01", "fra01", "lhr01"]);
}

#[test]
fn a_failed_gate_rolls_back_every_applied_location_in_reverse_order() {
    let mut harness = Harness::new(plan());
    harness.start();
    // Let the canary and the eu wave pass, then fail in the rest wave after two applies.
    while harness.machine.wave() < 2 {
        harness.run_step_pass();
    }
    while harness.applied.len() < 5 {
        harness.run_step_pass();
    }
    // sin01 is applied; sfo01 next; fail the gate when it is evaluated.
    while harness.machine.phase() != Phase::Baking {
        harness.run_step_pass();
    }
    harness.tick(100);
    harness.step(0, GateResultKind::Fail, false, false, false);
    assert_eq!(harness.machine.phase(), Phase::RollingBack);
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::RolledBack));
    let mut reversed = harness.applied.clone();
    reversed.reverse();
    assert_eq!(harness.rolled_back, reversed);
    assert!(harness.daemons.values().all(|daemon| !daemon.new));
    assert!(harness.records().contains(&"gate_failed"));
}

#[test]
fn failure_limit_counts_failures_in_the_wave_not_in_a_row() {
    let mut plan = plan();
    plan.gates[0].failure_limit = 2;
    let mut harness = Harness::new(plan);
    harness.start();
    harness.step(0, GateResultKind::Pass, false, false, false);
    harness.tick(100);
    // daemons: fail, pass, fail → second failure fails the gate.
    for result in [
        GateResultKind::Fail,
        GateResultKind::Pass,
        GateResultKind::Fail,
    ] {
        let index = harness
            .pending
            .iter()
            .position(|effect| matches!(effect, Effect::Evaluate { gate: 0, .. }))
            .unwrap();
        harness.step(index, result, false, false, false);
        harness.tick(100);
    }
    assert_eq!(harness.machine.phase(), Phase::RollingBack);
}

#[test]
fn inconclusive_gates_pause_and_never_promote() {
    let mut harness = Harness::new(plan());
    harness.start();
    harness.step(0, GateResultKind::Pass, false, false, false);
    for _ in 0..200 {
        harness.tick(100);
        while !harness.pending.is_empty() {
            harness.step(0, GateResultKind::Inconclusive, false, false, false);
        }
    }
    assert_eq!(harness.machine.phase(), Phase::Baking);
    assert_eq!(harness.machine.wave(), 0);
    assert!(
        harness
            .machine
            .paused()
            .unwrap()
            .contains("inconclusive 3 times")
    );
    assert_eq!(harness.applied, ["ams01"]);
    // Promote does not skip gates: still paused, still wave 0.
    harness.handle(Event::Command(Command::Promote));
    harness.tick(5000);
    assert_eq!(harness.machine.wave(), 0);
    assert!(harness.pending.is_empty());
    // Resume restarts the gates; with passing gates and the promote, the wave passes at once.
    harness.handle(Event::Command(Command::Resume));
    assert!(harness.machine.paused().is_none());
    harness.tick(100);
    while !harness.pending.is_empty() {
        harness.step(0, GateResultKind::Pass, false, false, false);
    }
    harness.tick(100);
    while !harness.pending.is_empty() {
        harness.step(0, GateResultKind::Pass, false, false, false);
    }
    assert_eq!(harness.machine.wave(), 1);
}

#[test]
fn promote_skips_the_bake_but_not_the_gates() {
    let mut plan = plan();
    plan.waves[0].bake_seconds = 3600;
    let mut harness = Harness::new(plan);
    harness.start();
    harness.step(0, GateResultKind::Pass, false, false, false);
    harness.handle(Event::Command(Command::Promote));
    assert_eq!(harness.machine.wave(), 0);
    harness.tick(100);
    while !harness.pending.is_empty() {
        harness.step(0, GateResultKind::Pass, false, false, false);
    }
    assert_eq!(harness.machine.wave(), 0, "daemons needs two passes");
    harness.tick(100);
    while !harness.pending.is_empty() {
        harness.step(0, GateResultKind::Pass, false, false, false);
    }
    assert_eq!(harness.machine.wave(), 1);
    assert!(!harness.machine.promoted(), "a promote is for one wave");
}

#[test]
fn pause_by_hand_stops_applying_and_abort_rolls_back() {
    let mut harness = Harness::new(plan());
    harness.start();
    while harness.machine.wave() < 1 {
        harness.run_step_pass();
    }
    // fra01's apply is in flight; pause: it finishes, lhr01 is not started.
    assert!(matches!(harness.pending[0], Effect::Apply { .. }));
    harness.handle(Event::Command(Command::Pause));
    harness.step(0, GateResultKind::Pass, false, false, false);
    harness.tick(10_000);
    assert!(harness.pending.is_empty());
    assert_eq!(harness.applied, ["ams01", "fra01"]);
    harness.handle(Event::Command(Command::Abort));
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Aborted));
    assert_eq!(harness.rolled_back, ["fra01", "ams01"]);
}

#[test]
fn abort_during_an_apply_waits_for_it_and_rolls_it_back_first() {
    let mut harness = Harness::new(plan());
    harness.start();
    harness.handle(Event::Command(Command::Abort));
    assert_eq!(harness.machine.phase(), Phase::RollingBack);
    // The apply in flight lands; it is rolled back.
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Aborted));
    assert_eq!(harness.applied, ["ams01"]);
    assert_eq!(harness.rolled_back, ["ams01"]);
}

#[test]
fn a_refused_apply_rolls_back_what_was_applied() {
    let mut harness = Harness::new(plan());
    harness.start();
    while harness.machine.wave() < 1 {
        harness.run_step_pass();
    }
    harness.step(0, GateResultKind::Pass, true, false, false);
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::RolledBack));
    assert_eq!(harness.rolled_back, ["ams01"]);
    assert_eq!(
        harness.machine.location("fra01"),
        Some(LocationState::ApplyFailed)
    );
}

#[test]
fn a_failed_rollback_is_reported_and_the_others_still_roll_back() {
    let mut harness = Harness::new(plan());
    harness.start();
    while harness.applied.len() < 2 {
        harness.run_step_pass();
    }
    harness.handle(Event::Command(Command::Abort));
    // Both applied locations are rolled back at once, in reverse order, without waiting for
    // the apply in flight at lhr01.
    assert_eq!(
        harness.pending_rollbacks(),
        ["fra01", "ams01"],
        "{:?}",
        harness.pending
    );
    let fra01 = harness
        .pending
        .iter()
        .position(
            |effect| matches!(effect, Effect::Rollback { location, .. } if location == "fra01"),
        )
        .unwrap();
    harness.step(fra01, GateResultKind::Pass, false, false, true);
    // lhr01's apply lands during the rollback: it is rolled back too.
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::RollbackIncomplete));
    assert_eq!(harness.applied, ["ams01", "fra01", "lhr01"]);
    assert_eq!(harness.rolled_back, ["ams01", "lhr01"]);
    assert_eq!(
        harness.machine.location("fra01"),
        Some(LocationState::RollbackFailed)
    );
}

/// The plan with wave `eu` (fra01, lhr01) set to `on_stall`.
fn plan_on_stall(on_stall: OnStall) -> MachinePlan {
    let mut plan = plan();
    plan.waves[1].on_stall = on_stall;
    plan
}

/// Runs until fra01's apply (wave eu) is in flight.
fn until_fra01_applying(harness: &mut Harness) {
    harness.start();
    while !harness
        .pending
        .iter()
        .any(|effect| matches!(effect, Effect::Apply { location, .. } if location == "fra01"))
    {
        harness.run_step_pass();
    }
}

#[test]
fn a_stall_pauses_naming_the_location_and_resume_settles_it() {
    let mut harness = Harness::new(plan());
    until_fra01_applying(&mut harness);
    // The daemon applied, but the answer never came within the stall bound.
    harness.stall_location("fra01", true);
    let records = harness.records();
    assert_eq!(records[records.len() - 2..], ["location_stalled", "paused"]);
    let reason = harness.machine.paused().unwrap().to_string();
    assert!(
        reason.contains("fra01") && reason.contains("30 s"),
        "{reason}"
    );
    assert!(matches!(
        harness.machine.location("fra01"),
        Some(LocationState::Applying { .. })
    ));
    assert!(harness.pending.is_empty(), "{:?}", harness.pending);
    harness.tick(60_000);
    assert!(harness.pending.is_empty(), "nothing moves while paused");
    harness.handle(Event::Command(Command::Resume));
    assert!(matches!(
        harness.pending.as_slice(),
        [Effect::SettleApply { location, .. }] if location == "fra01"
    ));
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Completed));
    assert_eq!(harness.daemons["fra01"].applies, 1);
    assert_eq!(
        harness.issued_applies["fra01"], 1,
        "settled, not applied again"
    );
}

#[test]
fn a_stall_settled_as_not_applied_is_applied_again_only_after_resume() {
    let mut harness = Harness::new(plan());
    until_fra01_applying(&mut harness);
    harness.stall_location("fra01", false);
    harness.handle(Event::Command(Command::Resume));
    harness.handle(Event::Command(Command::Pause));
    // The settle answers "not applied" while paused: pending again, no apply issued.
    harness.step(0, GateResultKind::Pass, false, false, false);
    assert_eq!(
        harness.machine.location("fra01"),
        Some(LocationState::Pending)
    );
    assert!(harness.pending.is_empty(), "{:?}", harness.pending);
    harness.handle(Event::Command(Command::Resume));
    assert!(matches!(
        harness.pending.as_slice(),
        [Effect::Apply { location, .. }] if location == "fra01"
    ));
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Completed));
}

#[test]
fn on_stall_rollback_rolls_back_and_reports_a_location_that_never_answers() {
    let mut harness = Harness::new(plan_on_stall(OnStall::Rollback));
    until_fra01_applying(&mut harness);
    harness.stall_location("fra01", true);
    assert_eq!(harness.machine.phase(), Phase::RollingBack);
    let reason = harness.machine.rollback_reason().unwrap().to_string();
    assert!(reason.contains("fra01"), "{reason}");
    // ams01 is rolled back at once; fra01 (in doubt) is settled again at the same time.
    assert_eq!(harness.pending_rollbacks(), ["ams01"]);
    assert!(harness.pending.iter().any(
        |effect| matches!(effect, Effect::SettleApply { location, .. } if location == "fra01")
    ));
    harness.stall_location("fra01", false);
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::RollbackIncomplete));
    assert_eq!(harness.rolled_back, ["ams01"]);
    assert!(harness.journal.iter().any(|line| matches!(
        &line.record,
        Record::RollbackPending { locations } if locations == &["fra01".to_string()]
    )));
    // fra01 answers again; `abort` (no controller running) settles it and rolls it back.
    harness.crash_and_resume(true);
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Aborted));
    assert_eq!(harness.rolled_back, ["ams01", "fra01"]);
    assert!(harness.daemons.values().all(|daemon| !daemon.new));
}

#[test]
fn abort_never_waits_for_an_apply_in_flight_at_an_unreachable_location() {
    let mut harness = Harness::new(plan());
    until_fra01_applying(&mut harness);
    harness.handle(Event::Command(Command::Abort));
    assert_eq!(harness.pending_rollbacks(), ["ams01"]);
    let ams01 = harness
        .pending
        .iter()
        .position(|effect| matches!(effect, Effect::Rollback { .. }))
        .unwrap();
    harness.step(ams01, GateResultKind::Pass, false, false, false);
    assert_eq!(harness.rolled_back, ["ams01"]);
    assert_eq!(
        harness.machine.phase(),
        Phase::RollingBack,
        "fra01 is in doubt"
    );
    // fra01 never answers: the rollback ends incomplete, naming it.
    harness.stall_location("fra01", false);
    assert_eq!(harness.outcome(), Some(Outcome::RollbackIncomplete));
    assert_eq!(
        harness.records()[harness.records().len() - 3..],
        [
            "location_stalled",
            "rollback_pending",
            "rollback_incomplete"
        ]
    );
    // Abort again once it answers: it never applied, so nothing more to do.
    harness.crash_and_resume(true);
    harness.run_to_end(GateResultKind::Pass);
    assert_eq!(harness.outcome(), Some(Outcome::Aborted));
    assert_eq!(harness.daemons["fra01"].applies, 0);
    assert_eq!(
        harness.machine.location("fra01"),
        Some(LocationState::ApplyFailed)
    );
}

#[test]
fn abort_before_anything_was_applied_ends_aborted() {
    let mut machine = Machine::new(plan());
    let outputs = machine.handle(Event::Command(Command::Abort), 0);
    assert_eq!(machine.phase(), Phase::Finished(Outcome::Aborted));
    assert!(
        outputs
            .iter()
            .all(|output| matches!(output, Output::Record(_)))
    );
}

#[test]
fn stale_gate_results_are_ignored() {
    let mut harness = Harness::new(plan());
    harness.start();
    harness.step(0, GateResultKind::Pass, false, false, false);
    harness.tick(100);
    let stale = harness.pending.clone();
    harness.handle(Event::Command(Command::Pause));
    harness.handle(Event::Command(Command::Resume));
    for effect in stale {
        if let Effect::Evaluate { wave, gate, epoch } = effect {
            harness.handle(Event::GateEvaluated {
                wave,
                gate,
                epoch,
                result: GateResultKind::Fail,
                detail: "late".into(),
            });
        }
    }
    assert_eq!(harness.machine.phase(), Phase::Baking);
}

/// One scripted run: everything passes until wave 1, where the operator pauses, promotes and
/// resumes, and then wave 1's gates fail. With `crash_at`, the controller crashes right after
/// the journal reaches that many records (records of the same step beyond it are lost, effects
/// in flight are lost) and a new machine resumes from the journal.
fn scripted_run(crash_at: Option<usize>) -> Harness {
    let mut harness = Harness::new(plan());
    harness.crash_at = crash_at;
    harness.start();
    let mut commanded = false;
    for _ in 0..10_000 {
        if harness.machine.is_finished() {
            break;
        }
        if harness.machine.wave() == 1 && !commanded {
            commanded = true;
            harness.handle(Event::Command(Command::Pause));
            harness.handle(Event::Command(Command::Promote));
            harness.handle(Event::Command(Command::Resume));
            continue;
        }
        if harness.pending.is_empty() {
            harness.tick(50);
        } else {
            let failing = harness.machine.wave() == 1 && harness.machine.phase() == Phase::Baking;
            let result = if failing {
                GateResultKind::Fail
            } else {
                GateResultKind::Pass
            };
            harness.step(0, result, false, false, false);
        }
    }
    harness
}

/// Crashes after every journal record of a run with a failure: the resumed machine finishes
/// without applying anything twice and rolls back everything it applied.
#[test]
fn a_crash_after_every_record_resumes_without_double_application() {
    let reference = scripted_run(None);
    assert_eq!(reference.outcome(), Some(Outcome::RolledBack));
    let kinds: std::collections::BTreeSet<&str> = reference.records().into_iter().collect();
    for kind in [
        "wave_started",
        "location_applying",
        "location_applied",
        "baking",
        "gate_result",
        "gate_failed",
        "wave_passed",
        "paused",
        "promoted",
        "resumed",
        "rollback_started",
        "location_rolling_back",
        "location_rolled_back",
        "rolled_back",
    ] {
        assert!(
            kinds.contains(kind),
            "the reference run has no {kind} record"
        );
    }
    for crash_at in 1..=reference.journal.len() {
        let harness = scripted_run(Some(crash_at));
        assert!(harness.crashed, "crash at {crash_at} did not happen");
        assert!(
            harness.machine.is_finished(),
            "crash at {crash_at}: not finished"
        );
        for (location, daemon) in &harness.daemons {
            assert!(
                daemon.applies <= 1,
                "crash at {crash_at}: {location} applied twice"
            );
            assert_eq!(
                daemon.applies, daemon.rollbacks,
                "crash at {crash_at}: {location} applied but not rolled back"
            );
        }
        assert!(
            harness.issued_applies.values().all(|issued| *issued <= 2),
            "crash at {crash_at}: an apply was issued more than once after settling"
        );
    }
}

impl Harness {
    /// The locations of the pending rollbacks, in the order they were issued.
    fn pending_rollbacks(&self) -> Vec<&str> {
        self.pending
            .iter()
            .filter_map(|effect| match effect {
                Effect::Rollback { location, .. } => Some(location.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The pending apply, rollback or settle at `location` never gets an answer within the
    /// stall bound; with `performed`, the daemon carried it out all the same.
    fn stall_location(&mut self, location: &str, performed: bool) {
        let index = self
            .pending
            .iter()
            .position(|effect| mutation_location(effect).is_some_and(|name| name == location));
        if let Some(index) = index {
            self.stall(index, performed);
        }
    }

    /// The `index`th pending mutation stalls (see [`Harness::stall_location`]).
    fn stall(&mut self, index: usize, performed: bool) {
        let mutations: Vec<usize> = (0..self.pending.len())
            .filter(|position| mutation_location(&self.pending[*position]).is_some())
            .collect();
        if mutations.is_empty() {
            return;
        }
        let effect = self.pending.remove(mutations[index % mutations.len()]);
        let Some(location) = mutation_location(&effect).map(str::to_string) else {
            return;
        };
        let daemon = self.daemons.get_mut(&location).unwrap();
        match effect {
            Effect::Apply {
                expected_generation,
                ..
            } if performed && daemon.generation == expected_generation && !daemon.new => {
                daemon.generation += 1;
                daemon.new = true;
                daemon.applies += 1;
                self.applied.push(location.clone());
            }
            Effect::Rollback {
                expected_generation,
                ..
            } if performed && daemon.generation == expected_generation && daemon.new => {
                daemon.generation += 1;
                daemon.new = false;
                daemon.rollbacks += 1;
                self.rolled_back.push(location.clone());
            }
            _ => {}
        }
        self.handle(Event::Stalled {
            location,
            reason: "no answer".into(),
        });
    }

    fn run_step_pass(&mut self) {
        if self.pending.is_empty() {
            self.tick(50);
        } else {
            self.step(0, GateResultKind::Pass, false, false, false);
        }
    }
}

/// The location of an apply, rollback or settle.
fn mutation_location(effect: &Effect) -> Option<&str> {
    match effect {
        Effect::Apply { location, .. }
        | Effect::Rollback { location, .. }
        | Effect::SettleApply { location, .. }
        | Effect::SettleRollback { location, .. } => Some(location),
        Effect::Evaluate { .. } => None,
    }
}

#[derive(Debug, Clone)]
enum Action {
    Step {
        index: usize,
        result: u8,
        refuse: bool,
        lose: bool,
        rollback_fails: bool,
    },
    /// A pending apply, rollback or settle gets no answer within the stall bound (the daemon
    /// may have carried it out).
    Stall {
        index: usize,
        performed: bool,
    },
    Tick(u64),
    Command(u8),
    Crash,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        8 => (any::<usize>(), 0u8..30, prop::bool::weighted(0.03), prop::bool::weighted(0.1), prop::bool::weighted(0.03))
            .prop_map(|(index, result, refuse, lose, rollback_fails)| Action::Step { index, result, refuse, lose, rollback_fails }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(index, performed)| Action::Stall { index, performed }),
        4 => (1u64..1500).prop_map(Action::Tick),
        1 => (0u8..4).prop_map(Action::Command),
        1 => Just(Action::Crash),
    ]
}

/// What a journal replay must reproduce: everything but timers, in-flight gate evaluations
/// and the stalled set (which says what this controller process has in flight; a restored
/// controller settles every location in doubt anyway).
#[allow(clippy::type_complexity)]
fn durable(
    machine: &Machine,
) -> (
    Phase,
    usize,
    BTreeMap<String, LocationState>,
    Vec<String>,
    Option<String>,
    bool,
    Option<Rollback>,
    Option<String>,
    Vec<(u32, u32, u32)>,
) {
    (
        machine.phase,
        machine.wave,
        machine.locations.clone(),
        machine.applied_order.clone(),
        machine.paused.clone(),
        machine.promoted,
        machine.rollback.clone(),
        machine.rollback_reason.clone(),
        machine
            .gates
            .iter()
            .map(|gate| (gate.passes, gate.failures, gate.inconclusive))
            .collect(),
    )
}

/// Every `rollback_started` lists the applied locations in reverse order of application.
fn rollbacks_listed_in_reverse_order(journal: &[Line]) -> bool {
    let mut applied: Vec<&str> = Vec::new();
    for line in journal {
        match &line.record {
            Record::Applied { location, .. } => applied.push(location),
            Record::RollbackStarted { locations, .. } => {
                let expected: Vec<&str> = applied
                    .iter()
                    .rev()
                    .copied()
                    .filter(|location| locations.iter().any(|listed| listed == location))
                    .collect();
                if expected.len() != locations.len()
                    || expected
                        .iter()
                        .zip(locations)
                        .any(|(left, right)| left != right)
                {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// The locations a record of `kind` names (`rollback_failed`, `rollback_pending`).
fn reported(journal: &[Line]) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in journal {
        match &line.record {
            Record::RollbackFailed { location, .. } => {
                names.insert(location.clone());
            }
            Record::RollbackPending { locations } => names.extend(locations.iter().cloned()),
            _ => {}
        }
    }
    names
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever happens — gate results, refusals, lost answers, stalls, operator commands,
    /// crashes at any point — a location is applied at most once; no apply is issued while
    /// paused or after a rollback started; the journal replayed always gives the live
    /// machine; and when the rollout does not complete every applied location is rolled back
    /// (issued in reverse order of application) or reported by name (after `abort` again).
    #[test]
    fn never_applied_twice_and_always_rolled_back(actions in prop::collection::vec(action(), 1..300)) {
        let mut harness = Harness::new(plan_on_stall(OnStall::Rollback));
        harness.start();
        for action in actions {
            if harness.machine.is_finished() {
                break;
            }
            match action {
                Action::Step { index, result, refuse, lose, rollback_fails } => {
                    let result = match result {
                        0 => GateResultKind::Fail,
                        1 => GateResultKind::Inconclusive,
                        _ => GateResultKind::Pass,
                    };
                    harness.step(index, result, refuse, lose, rollback_fails);
                }
                Action::Stall { index, performed } => harness.stall(index, performed),
                Action::Tick(milliseconds) => harness.tick(milliseconds),
                Action::Command(command) => harness.handle(Event::Command(match command {
                    0 => Command::Pause,
                    1 => Command::Resume,
                    2 => Command::Promote,
                    _ => Command::Abort,
                })),
                Action::Crash => harness.crash_and_resume(false),
            }
            let restored = Machine::restore(harness.machine.plan().clone(), &harness.journal);
            let (mut replayed, mut live) = (durable(&restored), durable(&harness.machine));
            if harness.resumed {
                // A resumed controller restarts the wave's gates from zero (unjournaled).
                (replayed.8, live.8) = (Vec::new(), Vec::new());
            }
            prop_assert_eq!(replayed, live);
        }
        // Wind down: abort if still running, and let everything settle; every location still
        // changed is reported by name. A rollback that ended with locations unanswered is
        // then aborted again (they answer now).
        if !harness.machine.is_finished() {
            harness.handle(Event::Command(Command::Abort));
            harness.run_to_end(GateResultKind::Pass);
        }
        if harness.outcome() == Some(Outcome::RollbackIncomplete) {
            let reported = reported(&harness.journal);
            for (location, daemon) in &harness.daemons {
                prop_assert!(!daemon.new || reported.contains(location), "{} still runs the change, unreported", location);
            }
        }
        for _ in 0..3 {
            if harness.outcome() == Some(Outcome::RollbackIncomplete) {
                harness.crash_and_resume(true);
                harness.run_to_end(GateResultKind::Pass);
            }
        }
        prop_assert!(harness.machine.is_finished());
        prop_assert!(!harness.apply_after_stop, "an apply was issued while paused or rolling back");
        for (location, daemon) in &harness.daemons {
            prop_assert!(daemon.applies <= 1, "{} applied {} times", location, daemon.applies);
        }
        prop_assert!(rollbacks_listed_in_reverse_order(&harness.journal));
        let reported = reported(&harness.journal);
        match harness.outcome() {
            Some(Outcome::Completed) => {
                prop_assert!(harness.daemons.values().all(|daemon| daemon.new && daemon.rollbacks == 0));
            }
            Some(Outcome::RolledBack | Outcome::Aborted) => {
                prop_assert!(harness.daemons.values().all(|daemon| !daemon.new));
                let mut applied = harness.applied.clone();
                let mut rolled_back = harness.rolled_back.clone();
                applied.sort();
                rolled_back.sort();
                prop_assert_eq!(applied, rolled_back);
            }
            Some(Outcome::RollbackIncomplete) => {
                prop_assert!(!reported.is_empty());
                for (location, daemon) in &harness.daemons {
                    prop_assert!(!daemon.new || reported.contains(location), "{} still runs the change, unreported", location);
                }
            }
            None => prop_assert!(false, "not finished"),
        }
    }
}
