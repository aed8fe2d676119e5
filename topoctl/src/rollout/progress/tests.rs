//! Tests of `progress.rs`.

use super::*;
use crate::rollout::journal::GateResultKind;
use crate::rollout::machine::{Event, MachinePlan};
use crate::rollout::waves::Wave;
use topologyd_api::SourceBundle;
use topologyd_config::fleet::{GateKind, GateSpec, OnStall};

fn started() -> Started {
    Started {
        rollout: "r1".into(),
        old_hash: "old".into(),
        new_hash: "new".into(),
        old_hash_previous_form: String::new(),
        new_hash_previous_form: String::new(),
        intent: vec![],
        waves: vec![
            Wave {
                name: "canary".into(),
                base: "canary".into(),
                locations: vec!["ams01".into()],
                bake_seconds: 10,
                gates: vec![0],
                skipped_gates: vec![],
                stall_seconds: 120,
                on_stall: OnStall::Pause,
            },
            Wave {
                name: "rest-1".into(),
                base: "rest".into(),
                locations: vec!["fra01".into(), "iad01".into()],
                bake_seconds: 1,
                gates: vec![0],
                skipped_gates: vec![],
                stall_seconds: 120,
                on_stall: OnStall::Pause,
            },
        ],
        gates: vec![GateSpec {
            name: "daemons".into(),
            kind: GateKind::Daemon,
            interval_ms: 100,
            count: 2,
            failure_limit: 1,
            inconclusive_limit: 3,
            waves: None,
        }],
        locations: vec![],
        timeout_seconds: 30,
        lease_seconds: 60,
        before: [("ams01", 1), ("fra01", 1), ("iad01", 1)]
            .into_iter()
            .map(|(location, generation)| {
                (
                    location.to_string(),
                    crate::rollout::journal::LocationBefore {
                        generation,
                        runtime_guard_refusals: 0,
                    },
                )
            })
            .collect(),
        old_bundle: SourceBundle { sources: vec![] },
        new_bundle: SourceBundle { sources: vec![] },
    }
}

fn machine(started: &Started) -> Machine {
    Machine::new(MachinePlan {
        waves: started.waves.clone(),
        gates: started.gates.clone(),
        before: started
            .before
            .iter()
            .map(|(location, before)| (location.clone(), before.generation))
            .collect(),
    })
}

#[test]
fn json_events_name_waves_and_the_wave_of_each_location() {
    let started = started();
    let progress = Progress::new(Mode::Json, &started);
    let line = |record| Line { time: 1.5, record };
    let event = progress.event_json(&line(Record::Applied {
        location: "iad01".into(),
        generation: 2,
    }));
    assert_eq!(
        event,
        json!({"event": "location_applied", "time": 1.5, "rollout": "r1", "location": "iad01", "wave": "rest-1", "generation": 2})
    );
    let event = progress.event_json(&line(Record::WavePassed { wave: 0 }));
    assert_eq!(event["wave"], "canary");
    assert_eq!(event["index"], 0);
    let event = progress.event_json(&line(Record::Finished {
        outcome: Outcome::RolledBack,
    }));
    assert_eq!(event["event"], "rolled_back");
    let event = progress.event_json(&line(Record::Started(Box::new(started.clone()))));
    assert_eq!(event["event"], "planned");
    assert_eq!(event["waves"][1]["locations"], json!(["fra01", "iad01"]));
    assert_eq!(event["waves"][1]["gates"], json!(["daemons"]));
    assert_eq!(event["waves"][1]["stall_seconds"], 120);
    assert_eq!(event["waves"][1]["on_stall"], "pause");
    assert!(event.get("old_bundle").is_none());
    let event = progress.event_json(&line(Record::Stalled {
        location: "iad01".into(),
        reason: "no answer".into(),
        stall_seconds: 120,
    }));
    assert_eq!(event["event"], "location_stalled");
    assert_eq!(event["wave"], "rest-1");
    let event = progress.event_json(&line(Record::RollbackPending {
        locations: vec!["iad01".into()],
    }));
    assert_eq!(event["event"], "rollback_pending");
    assert_eq!(event["locations"], json!(["iad01"]));
}

#[test]
fn the_view_shows_every_wave_and_the_gates_of_the_current_one() {
    let started = started();
    let mut machine = machine(&started);
    machine.handle(Event::Start, 0);
    machine.handle(
        Event::Applied {
            location: "ams01".into(),
            generation: 2,
        },
        0,
    );
    let view = render_view("r1", &machine, 4000, &["daemons".to_string()], &[]);
    assert_eq!(
        view,
        "rollout r1: baking, 6.0s left\n\
         ▶ canary       ✓ams01\n    gate daemons              0/2 passes, 0/1 failures, 0/3 inconclusive\n\
         \x20 rest-1       ·fra01 ·iad01\n"
    );
}

#[test]
fn a_stalled_location_is_shown_in_doubt() {
    let started = started();
    let mut machine = machine(&started);
    machine.handle(Event::Start, 0);
    machine.handle(
        Event::Stalled {
            location: "ams01".into(),
            reason: "no answer".into(),
        },
        0,
    );
    let view = render_view("r1", &machine, 0, &["daemons".to_string()], &[]);
    assert!(view.contains("?ams01"), "{view}");
    assert!(
        view.starts_with("rollout r1: PAUSED (ams01 did not answer"),
        "{view}"
    );
}

#[test]
fn metrics_follow_the_records() {
    let started = started();
    let mut machine = machine(&started);
    let metrics = RolloutMetrics::new();
    let mut outputs = machine.handle(Event::Start, 0);
    outputs.extend(machine.handle(
        Event::Applied {
            location: "ams01".into(),
            generation: 2,
        },
        0,
    ));
    let evaluations = machine.handle(Event::Tick, 100);
    let epoch = evaluations
        .iter()
        .find_map(|output| match output {
            crate::rollout::machine::Output::Effect(
                crate::rollout::machine::Effect::Evaluate { epoch, .. },
            ) => Some(*epoch),
            _ => None,
        })
        .unwrap();
    outputs.extend(machine.handle(
        Event::GateEvaluated {
            wave: 0,
            gate: 0,
            epoch,
            result: GateResultKind::Pass,
            detail: String::new(),
        },
        100,
    ));
    for output in &outputs {
        if let crate::rollout::machine::Output::Record(record) = output {
            metrics.observe(record, &machine);
        }
    }
    let text = topologyd_transport::admin::render(&metrics.registry()).unwrap();
    assert!(text.contains("topoctl_rollout_state 2\n"), "{text}");
    assert!(
        text.contains("topoctl_rollout_locations_applied 1\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "topoctl_rollout_gate_evaluations_total{gate=\"daemons\",result=\"pass\"} 1\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("topoctl_rollout_rollbacks_total 0\n"),
        "{text}"
    );
}
