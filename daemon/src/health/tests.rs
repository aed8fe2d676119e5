//! The health state machine in virtual time: rise/fall, hold-down and flap damping,
//! corroboration, fail static, placeholder expansion.

use super::*;
use proptest::prelude::*;

fn spec(rise: u32, fall: u32, hold_down_ms: u64, max_hold_down_ms: u64) -> HealthSpec {
    HealthSpec {
        interval_ms: 1_000,
        timeout_ms: 500,
        rise,
        fall,
        hold_down_ms,
        max_hold_down_ms,
        on_unhealthy: UnhealthyAction::Withdraw,
        checks: vec![ProbeSpec::Tcp {
            address: "127.0.0.1:1".to_string(),
        }],
    }
}

fn pass() -> Vec<CheckRecord> {
    vec![CheckRecord {
        check: "tcp 127.0.0.1:1".to_string(),
        outcome: ProbeOutcome::Pass,
    }]
}

fn fail() -> Vec<CheckRecord> {
    vec![CheckRecord {
        check: "tcp 127.0.0.1:1".to_string(),
        outcome: ProbeOutcome::Fail {
            detail: "connection refused".to_string(),
        },
    }]
}

fn error() -> Vec<CheckRecord> {
    vec![CheckRecord {
        check: "tcp 127.0.0.1:1".to_string(),
        outcome: ProbeOutcome::Error {
            detail: "timed out after 500 ms".to_string(),
        },
    }]
}

fn policy() -> FailStaticPolicy {
    FailStaticPolicy {
        share: 0.5,
        min_services: 2,
    }
}

#[test]
fn unknown_counts_healthy_and_confirms_after_rise() {
    let mut health = ServiceHealth::new(spec(2, 2, 0, 0));
    assert_eq!(health.state(), HealthState::Unknown);
    assert!(health.observed_healthy());
    assert_eq!(health.record_round(0, pass()), None);
    assert_eq!(health.state(), HealthState::Unknown);
    assert_eq!(health.record_round(1_000, pass()), None);
    assert_eq!(health.state(), HealthState::Healthy);
    assert_eq!(health.transitions(), 0);
}

#[test]
fn falls_after_fall_failures_and_alternation_never_transitions() {
    let mut health = ServiceHealth::new(spec(2, 2, 0, 0));
    let mut now = 0;
    for round in 0..40 {
        let results = if round % 2 == 0 { fail() } else { pass() };
        assert_eq!(health.record_round(now, results), None, "round {round}");
        now += 1_000;
    }
    assert!(health.observed_healthy());
    assert_eq!(health.transitions(), 0);

    assert_eq!(health.record_round(now, fail()), None);
    now += 1_000;
    let transition = health.record_round(now, fail()).expect("turns unhealthy");
    assert_eq!(transition.to, HealthState::Unhealthy);
    assert!(
        transition.reason.contains("connection refused"),
        "{}",
        transition.reason
    );
    assert_eq!(health.transitions(), 1);
    assert_eq!(health.consecutive_failures(), 2);
}

#[test]
fn rises_after_recovery() {
    let mut health = ServiceHealth::new(spec(3, 1, 0, 0));
    assert!(health.record_round(0, fail()).is_some());
    assert_eq!(health.record_round(1_000, pass()), None);
    assert_eq!(health.record_round(2_000, pass()), None);
    assert_eq!(health.state(), HealthState::Unhealthy);
    let transition = health.record_round(3_000, pass()).expect("recovers");
    assert_eq!(transition.from, HealthState::Unhealthy);
    assert_eq!(transition.to, HealthState::Healthy);
    assert_eq!(health.transitions(), 2);
}

#[test]
fn hold_down_holds() {
    let mut health = ServiceHealth::new(spec(1, 1, 10_000, 60_000));
    assert!(health.record_round(0, fail()).is_some());
    assert_eq!(health.hold_down_remaining_ms(4_000), 6_000);
    assert_eq!(health.record_round(1_000, pass()), None);
    assert_eq!(health.state(), HealthState::HeldDown);
    assert!(!health.observed_healthy());
    assert_eq!(health.record_round(5_000, fail()), None);
    assert_eq!(health.state(), HealthState::Unhealthy);
    assert_eq!(health.record_round(9_999, pass()), None);
    assert_eq!(health.state(), HealthState::HeldDown);
    let transition = health.record_round(10_000, pass()).expect("hold-down over");
    assert_eq!(transition.from, HealthState::HeldDown);
    assert_eq!(health.state(), HealthState::Healthy);
    assert_eq!(health.hold_down_remaining_ms(10_000), 0);
}

#[test]
fn flaps_double_the_hold_down_up_to_the_cap_and_stability_resets_it() {
    let mut health = ServiceHealth::new(spec(1, 1, 1_000, 5_000));
    let mut now = 0;
    // First turn: no recovery before, configured hold-down.
    assert!(health.record_round(now, fail()).is_some());
    assert_eq!(health.hold_down_ms(), 1_000);
    let mut expected = [2_000, 4_000, 5_000, 5_000].into_iter();
    for _ in 0..4 {
        now += health.hold_down_ms();
        assert!(
            health.record_round(now, pass()).is_some(),
            "recovers at {now}"
        );
        now += 100;
        let transition = health.record_round(now, fail()).expect("flaps");
        let want = expected.next().expect("four flaps");
        assert_eq!(health.hold_down_ms(), want);
        assert!(
            transition.reason.contains("flapping"),
            "{}",
            transition.reason
        );
    }
    // Stay healthy longer than FLAP_WINDOW_FACTOR × 5 s: the hold-down is reset.
    now += health.hold_down_ms();
    assert!(health.record_round(now, pass()).is_some());
    now += u64::from(FLAP_WINDOW_FACTOR) * 5_000;
    assert_eq!(health.record_round(now, pass()), None);
    assert_eq!(health.hold_down_ms(), 1_000);
    now += 1_000;
    let transition = health.record_round(now, fail()).expect("falls");
    assert!(!transition.reason.contains("flapping"));
    assert_eq!(health.hold_down_ms(), 1_000);
}

fn board_with(services: &[&str], rise: u32, fall: u32) -> HealthBoard {
    let mut board = HealthBoard::new(policy());
    let specs = services
        .iter()
        .map(|name| (name.to_string(), spec(rise, fall, 0, 0)))
        .collect();
    board.set_specs(0, &specs);
    board
}

#[test]
fn single_failing_service_among_three_is_withdrawn_after_corroboration() {
    let mut board = board_with(&["a", "b", "c"], 1, 2);
    let mut now = 0;
    for _ in 0..2 {
        board.record_round("a", now, fail());
        board.record_round("b", now, pass());
        board.record_round("c", now, pass());
        now += 1_000;
    }
    // a turned unhealthy in its second round; b and c have reported since.
    assert!(!board.fail_static());
    assert_eq!(board.verdict("a"), Some(false));
    assert_eq!(board.verdict("b"), Some(true));
    let view = board.view(now);
    assert_eq!(view.unhealthy(), vec!["a".to_string()]);
    let events = board.drain_events();
    assert_eq!(events.len(), 1);
    assert!(matches!(
        &events[0].kind,
        HealthEventKind::Transition { service, to: HealthState::Unhealthy, .. } if service == "a"
    ));
}

#[test]
fn withdrawal_waits_for_the_other_services_round() {
    let mut board = board_with(&["a", "b", "c"], 1, 1);
    board.record_round("b", 0, pass());
    board.record_round("c", 0, pass());
    board.record_round("a", 10, fail());
    let view = board.view(10);
    assert!(!view.services["a"].observed_healthy);
    assert!(view.services["a"].healthy);
    assert!(view.services["a"].withdrawal_pending);
    board.record_round("b", 20, pass());
    assert_eq!(board.verdict("a"), Some(true));
    board.record_round("c", 30, pass());
    assert_eq!(board.verdict("a"), Some(false));
}

#[test]
fn withdrawal_waits_while_the_others_are_midway_failing() {
    // a falls after one round, b and c after three: all die at once.
    let mut board = HealthBoard::new(policy());
    let mut specs = BTreeMap::new();
    specs.insert("a".to_string(), spec(1, 1, 0, 0));
    specs.insert("b".to_string(), spec(1, 3, 0, 0));
    specs.insert("c".to_string(), spec(1, 3, 0, 0));
    board.set_specs(0, &specs);
    for name in ["a", "b", "c"] {
        board.record_round(name, 0, pass());
    }
    let mut now = 1_000;
    for _ in 0..3 {
        for name in ["a", "b", "c"] {
            board.record_round(name, now, fail());
            now += 10;
            assert_eq!(board.verdict("a"), Some(true), "a never withdrawn");
        }
        now += 1_000;
    }
    assert!(board.fail_static());
    assert!(board.view(now).unhealthy().is_empty());
}

#[test]
fn fail_static_engages_when_everything_fails_at_once_and_freezes_verdicts() {
    let mut board = board_with(&["a", "b", "c"], 1, 2);
    let mut now = 0;
    for _ in 0..3 {
        for name in ["a", "b", "c"] {
            board.record_round(name, now, pass());
        }
        now += 1_000;
    }
    for _ in 0..4 {
        for name in ["a", "b", "c"] {
            board.record_round(name, now, fail());
            now += 10;
        }
        now += 1_000;
    }
    assert!(board.fail_static());
    let reason = board.fail_static_reason().expect("reason");
    assert!(reason.contains("unhealthy"), "{reason}");
    let view = board.view(now);
    for name in ["a", "b", "c"] {
        assert!(view.services[name].healthy, "{name} stays announced");
        assert!(!view.services[name].observed_healthy);
    }
    assert!(view.fail_static);
    let events = board.drain_events();
    assert!(
        events
            .iter()
            .any(|event| matches!(event.kind, HealthEventKind::FailStaticEngaged { .. }))
    );

    // Two recover: 1 of 3 unhealthy is below the share, fail static disengages and the one
    // still failing is withdrawn.
    for _ in 0..2 {
        board.record_round("a", now, pass());
        board.record_round("b", now, pass());
        board.record_round("c", now, fail());
        now += 1_000;
    }
    assert!(!board.fail_static());
    assert_eq!(board.verdict("a"), Some(true));
    assert_eq!(board.verdict("b"), Some(true));
    assert_eq!(board.verdict("c"), Some(false));
    let events = board.drain_events();
    assert!(
        events
            .iter()
            .any(|event| matches!(event.kind, HealthEventKind::FailStaticDisengaged { .. }))
    );
}

#[test]
fn services_recovering_when_fail_static_ends_stay_announced() {
    // rise 3: when fail static ends, b has passed twice and is not healthy yet.
    let mut board = board_with(&["a", "b", "c", "d"], 3, 2);
    let mut now = 0;
    for _ in 0..3 {
        for name in ["a", "b", "c", "d"] {
            board.record_round(name, now, fail());
            now += 10;
        }
        now += 1_000;
    }
    assert!(board.fail_static());
    // The services come back one after the other; d stays down.
    let mut withdrawn_while_recovering = Vec::new();
    for (round, passing) in [
        ["a"].as_slice(),
        &["a", "b"],
        &["a", "b", "c"],
        &["a", "b", "c"],
    ]
    .iter()
    .enumerate()
    {
        for name in ["a", "b", "c", "d"] {
            let result = if passing.contains(&name) {
                pass()
            } else {
                fail()
            };
            board.record_round(name, now, result);
            now += 10;
            for recovering in passing.iter() {
                if board.verdict(recovering) == Some(false) {
                    withdrawn_while_recovering.push((round, *recovering));
                }
            }
        }
        now += 1_000;
    }
    assert!(!board.fail_static());
    assert!(
        withdrawn_while_recovering.is_empty(),
        "no recovering service is withdrawn: {withdrawn_while_recovering:?}"
    );
    assert_eq!(
        board.verdict("d"),
        Some(false),
        "the one still failing is withdrawn"
    );
    assert_eq!(
        board.tracker("b").map(ServiceHealth::state),
        Some(HealthState::Healthy)
    );
    // c has passed twice (below rise), announced while it recovers: a failing round
    // withdraws it again once the others have reported.
    assert_eq!(board.verdict("c"), Some(true));
    assert!(
        !board
            .tracker("c")
            .is_some_and(ServiceHealth::observed_healthy)
    );
    board.record_round("c", now, fail());
    for name in ["a", "b", "d"] {
        board.record_round(name, now + 10, if name == "d" { fail() } else { pass() });
    }
    assert_eq!(board.verdict("c"), Some(false));
}

#[test]
fn fail_static_freezes_an_already_published_withdrawal() {
    let mut board = board_with(&["a", "b", "c", "d"], 1, 1);
    for name in ["a", "b", "c", "d"] {
        board.record_round(name, 0, pass());
    }
    board.record_round("a", 10, fail());
    for name in ["b", "c", "d"] {
        board.record_round(name, 20, pass());
    }
    assert_eq!(board.verdict("a"), Some(false));
    // Now b, c fail too: 3 of 4 unhealthy.
    board.record_round("b", 30, fail());
    board.record_round("c", 40, fail());
    assert!(board.fail_static());
    assert_eq!(board.verdict("a"), Some(false), "frozen as it was");
    assert_eq!(board.verdict("b"), Some(true));
    assert_eq!(board.verdict("c"), Some(true));
    assert_eq!(board.verdict("d"), Some(true));
}

#[test]
fn errors_everywhere_engage_fail_static() {
    // fall = 5: nobody is unhealthy yet, but no probe could run.
    let mut board = board_with(&["a", "b", "c"], 1, 5);
    board.record_round("a", 0, error());
    assert!(!board.fail_static());
    board.record_round("b", 10, error());
    assert!(board.fail_static());
    let reason = board.fail_static_reason().expect("reason");
    assert!(reason.contains("could not run"), "{reason}");
    assert!(reason.contains("a, b"), "{reason}");
    for _ in 0..5 {
        for name in ["a", "b", "c"] {
            board.record_round(name, 100, error());
        }
    }
    assert!(board.fail_static());
    for name in ["a", "b", "c"] {
        assert_eq!(board.verdict(name), Some(true));
    }
    // The runner comes back: probes run again and pass.
    for name in ["a", "b", "c"] {
        board.record_round(name, 200, pass());
    }
    assert!(!board.fail_static());
}

#[test]
fn single_failing_service_does_not_engage_fail_static() {
    let mut board = board_with(&["a", "b", "c"], 1, 1);
    for round in 0..5 {
        board.record_round("a", round * 1_000, error());
        board.record_round("b", round * 1_000, pass());
        board.record_round("c", round * 1_000, pass());
    }
    assert!(!board.fail_static());
    assert_eq!(board.verdict("a"), Some(false));
}

#[test]
fn set_specs_keeps_unchanged_trackers() {
    let mut board = board_with(&["a", "b"], 1, 1);
    board.record_round("a", 0, fail());
    board.record_round("b", 0, pass());
    board.record_round("a", 10, fail());
    assert_eq!(board.verdict("a"), Some(false));
    let mut specs = BTreeMap::new();
    specs.insert("a".to_string(), spec(1, 1, 0, 0));
    specs.insert("b".to_string(), spec(2, 2, 0, 0));
    specs.insert("c".to_string(), spec(1, 1, 0, 0));
    let version = board.version();
    board.set_specs(20, &specs);
    assert!(board.version() > version);
    assert_eq!(board.verdict("a"), Some(false));
    assert_eq!(board.tracker("a").map(ServiceHealth::transitions), Some(1));
    assert_eq!(board.tracker("b").map(ServiceHealth::rounds), Some(0));
    assert_eq!(board.verdict("c"), Some(true));
    specs.remove("a");
    board.set_specs(30, &specs);
    assert_eq!(board.verdict("a"), None);
    assert!(board.view(30).is_healthy("a"));
}

#[test]
fn events_after_reports_losses() {
    let mut board = board_with(&["a"], 1, 1);
    for round in 0..(EVENT_RING as u64 + 11) {
        let results = if round % 2 == 0 { fail() } else { pass() };
        board.record_round("a", round * 1_000, results);
    }
    let view = board.view(0);
    assert_eq!(view.recent_events.len(), EVENT_RING);
    let last = view.last_event_seq();
    let (events, lost) = view.events_after(last - 3);
    assert_eq!((events.len(), lost), (3, 0));
    let (events, lost) = view.events_after(0);
    assert_eq!(events.len(), EVENT_RING);
    assert_eq!(lost, last - EVENT_RING as u64);
    let json = serde_json::to_value(&view).expect("serialises");
    assert_eq!(json["services"]["a"]["state"], "unhealthy");
    assert_eq!(json["services"]["a"]["last_round"][0]["result"], "fail");
    assert_eq!(json["recent_events"][0]["event"], "transition");
}

#[test]
fn expand_replaces_placeholders_and_names_unknown_ones() {
    let mut vars = BTreeMap::new();
    vars.insert("probe_host".to_string(), "127.0.0.5".to_string());
    vars.insert("location".to_string(), "ams01".to_string());
    let mut health = spec(1, 1, 0, 0);
    health.checks = vec![
        ProbeSpec::Http {
            url: "http://{probe_host}:8080/health?at={location}".to_string(),
            expect_status: 200,
        },
        ProbeSpec::Dns {
            server: "{probe_host}:53".to_string(),
            name: "{location}.example.test".to_string(),
            record_type: DnsRecordType::A,
            expect: Some("{probe_host}".to_string()),
        },
        ProbeSpec::Exec {
            command: vec![
                "/usr/bin/awk".to_string(),
                "{print $1}".to_string(),
                "{}".to_string(),
                "{location}".to_string(),
            ],
        },
    ];
    let expanded = expand("resolver", &health, &vars).expect("expands");
    assert_eq!(
        expanded.checks[0],
        ProbeSpec::Http {
            url: "http://127.0.0.5:8080/health?at=ams01".to_string(),
            expect_status: 200,
        }
    );
    assert_eq!(
        expanded.checks[1],
        ProbeSpec::Dns {
            server: "127.0.0.5:53".to_string(),
            name: "ams01.example.test".to_string(),
            record_type: DnsRecordType::A,
            expect: Some("127.0.0.5".to_string()),
        }
    );
    assert_eq!(
        expanded.checks[2],
        ProbeSpec::Exec {
            command: vec![
                "/usr/bin/awk".to_string(),
                "{print $1}".to_string(),
                "{}".to_string(),
                "ams01".to_string(),
            ],
        }
    );

    health.checks = vec![ProbeSpec::Tcp {
        address: "{probe_hots}:853".to_string(),
    }];
    let error = expand("resolver", &health, &vars).expect_err("unknown placeholder");
    assert_eq!(error.placeholder, "probe_hots");
    let text = error.to_string();
    assert!(text.contains("resolver"), "{text}");
    assert!(text.contains("{probe_hots}"), "{text}");
}

#[derive(Debug, Clone, Copy)]
enum Round {
    Pass,
    Fail,
    Error,
}

fn round_strategy() -> impl Strategy<Value = Round> {
    prop_oneof![Just(Round::Pass), Just(Round::Fail), Just(Round::Error)]
}

proptest! {
    #[test]
    fn transitions_are_at_least_min_rise_fall_rounds_apart(
        rise in 1u32..5,
        fall in 1u32..5,
        hold_down_ms in 0u64..5_000,
        rounds in proptest::collection::vec(round_strategy(), 0..200),
    ) {
        let mut health = ServiceHealth::new(spec(rise, fall, hold_down_ms, 20_000));
        let mut last_transition: Option<usize> = None;
        for (index, round) in rounds.iter().enumerate() {
            let results = match round {
                Round::Pass => pass(),
                Round::Fail => fail(),
                Round::Error => error(),
            };
            let now = index as u64 * 1_000;
            if health.record_round(now, results).is_some() {
                if let Some(previous) = last_transition {
                    prop_assert!(
                        index - previous >= rise.min(fall) as usize,
                        "transitions at rounds {previous} and {index}"
                    );
                }
                last_transition = Some(index);
            }
        }
    }
}
