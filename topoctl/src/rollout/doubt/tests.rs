//! Tests of the doubt bookkeeping: the bound runs from the first unanswered call, "not done"
//! is final only past every dropped call's deadline, and a replayed journal agrees.

use super::*;
use crate::rollout::journal::Line;

fn waves() -> Vec<Wave> {
    vec![Wave {
        name: "canary".into(),
        base: "canary".into(),
        locations: vec!["ams1".into()],
        bake_seconds: 0,
        gates: Vec::new(),
        skipped_gates: Vec::new(),
        stall_seconds: 30,
        on_stall: Default::default(),
    }]
}

fn applying() -> Record {
    Record::Applying {
        location: "ams1".into(),
        expected_generation: 4,
    }
}

#[test]
fn the_bound_runs_from_the_first_unanswered_call_not_from_each_retry() {
    let mut doubts = Doubts::new(&waves());
    doubts.observe(&applying(), 1_000);
    assert_eq!(doubts.begin("ams1", 1_050, true), 31_000);
    // Not done, pending again, applied afresh: the same doubt, the same deadline.
    doubts.observe(
        &Record::ApplyNotDone {
            location: "ams1".into(),
        },
        20_000,
    );
    doubts.observe(&applying(), 20_001);
    assert_eq!(doubts.begin("ams1", 20_002, true), 31_000);
    // A definitive outcome ends it: the next apply begins a new one.
    doubts.observe(
        &Record::Applied {
            location: "ams1".into(),
            generation: 5,
        },
        21_000,
    );
    assert_eq!(doubts.get("ams1"), Doubt::default());
    doubts.observe(&applying(), 40_000);
    assert_eq!(doubts.begin("ams1", 40_001, true), 70_000);
}

#[test]
fn not_done_is_final_only_from_a_status_past_every_dropped_deadline() {
    let mut doubts = Doubts::new(&waves());
    assert!(doubts.not_done_is_final("ams1", 5), "no call dropped");
    doubts.observe(&applying(), 1_000);
    let deadline = doubts.begin("ams1", 1_000, true);
    assert!(!doubts.not_done_is_final("ams1", deadline - 1));
    assert!(!doubts.not_done_is_final("ams1", deadline));
    assert!(doubts.not_done_is_final("ams1", deadline + 1));
    // A stall ends the doubt but not the deadline to outlast; a settle begins a new doubt.
    doubts.observe(
        &Record::Stalled {
            location: "ams1".into(),
            reason: "no answer".into(),
            stall_seconds: 30,
        },
        31_000,
    );
    assert_eq!(doubts.get("ams1").since_unix_ms, None);
    assert_eq!(doubts.begin("ams1", 50_000, false), 80_000);
    assert_eq!(doubts.get("ams1").outlast_unix_ms, Some(deadline));
    assert!(!doubts.not_done_is_final("ams1", deadline));
}

#[test]
fn an_old_daemon_is_final_only_in_a_doubt_begun_after_the_deadline() {
    let mut doubts = Doubts::new(&waves());
    doubts.observe(&applying(), 1_000);
    let deadline = doubts.begin("ams1", 1_000, true);
    assert!(
        !doubts.not_done_is_final("ams1", 0),
        "the first doubt ends stalled"
    );
    doubts.observe(
        &Record::Stalled {
            location: "ams1".into(),
            reason: "no answer".into(),
            stall_seconds: 30,
        },
        deadline,
    );
    doubts.begin("ams1", deadline + 1, false);
    assert!(doubts.not_done_is_final("ams1", 0));
}

#[test]
fn a_replayed_journal_never_gives_an_earlier_deadline() {
    let mut live = Doubts::new(&waves());
    let line = |time: f64, record: Record| Line { time, record };
    let lines = vec![
        line(1.0, applying()),
        line(
            2.0,
            Record::ApplyNotDone {
                location: "ams1".into(),
            },
        ),
        line(2.5, applying()),
    ];
    // Live: a settle began the doubt before the first journaled call.
    live.begin("ams1", 900, false);
    for line in &lines {
        live.observe(&line.record, unix_ms_of(line.time));
        live.begin("ams1", unix_ms_of(line.time) + 10, true);
    }
    let mut replayed = Doubts::new(&waves());
    replayed.replay(&lines);
    let (live, replayed) = (live.get("ams1"), replayed.get("ams1"));
    assert!(replayed.outlast_unix_ms >= live.outlast_unix_ms);
    assert_eq!(replayed.outlast_unix_ms, Some(31_000));
}

#[test]
fn a_huge_bound_saturates_instead_of_overflowing() {
    let mut waves = waves();
    waves[0].stall_seconds = u64::MAX;
    let mut doubts = Doubts::new(&waves);
    assert_eq!(doubts.begin("ams1", 1_000, true), u64::MAX);
}

#[test]
fn with_a_call_window_a_lost_answer_is_decided_one_window_later_within_the_bound() {
    let mut doubts = Doubts::with_call_window(&waves(), 5_000);
    doubts.observe(&applying(), 1_000);
    // The call carries now + window, well inside the 30 s bound.
    let first = doubts.begin("ams1", 1_010, true);
    assert_eq!(first, 6_010);
    // The journal record assumed a later call: "not done" is final only past both.
    let outlast = doubts.get("ams1").outlast_unix_ms.unwrap();
    assert!(outlast >= first, "{outlast} < {first}");
    assert!(!doubts.not_done_is_final("ams1", first));
    assert!(doubts.not_done_is_final("ams1", outlast + 1));
    doubts.observe(
        &Record::ApplyNotDone {
            location: "ams1".into(),
        },
        outlast + 2,
    );
    // The same doubt: the next call's deadline is capped by the bound, never past it.
    doubts.observe(&applying(), 29_000);
    assert_eq!(doubts.begin("ams1", 29_000, true), 31_000);
    // A replay of the same journal never assumes an earlier deadline than a call carried.
    let mut replayed = Doubts::with_call_window(&waves(), 5_000);
    replayed.observe(&applying(), 1_000);
    assert!(replayed.get("ams1").outlast_unix_ms.unwrap() >= first);
}

#[test]
fn a_journaled_rollback_retry_moves_the_deadline_a_replay_outlasts() {
    let rolling_back = Record::RollingBack {
        location: "ams1".into(),
        to_generation: 4,
        expected_generation: 5,
    };
    let mut live = Doubts::with_call_window(&waves(), 5_000);
    live.observe(&rolling_back, 1_000);
    live.begin("ams1", 1_000, true);
    // Not done: the machine journals the retry before making it.
    live.observe(&rolling_back, 20_000);
    let retry = live.begin("ams1", 20_001, true);
    assert_eq!(retry, 25_001);
    let mut replayed = Doubts::with_call_window(&waves(), 5_000);
    replayed.observe(&rolling_back, 1_000);
    replayed.observe(&rolling_back, 20_000);
    let outlast = replayed.get("ams1").outlast_unix_ms.unwrap();
    assert!(outlast >= retry, "{outlast} < {retry}");
    assert!(!replayed.not_done_is_final("ams1", retry));
}
