//! Tests of `preflight.rs`: the wave check against a compiled topology and a parsed fleet file
//! (positions, did you mean, the canary and `--no-canary`), how a daemon's plan answer is
//! classified, and the report's refusal codes and event.

use std::net::SocketAddr;
use std::path::Path;

use super::*;
use topologyd_api::{Document, ErrorBody, ErrorDetail, ErrorView};
use topologyd_config::Source;
use topologyd_config::fleet::parse_fleet;
use topologyd_topology::compile_owned;

/// The topology's locations: ams01 and sjc01 are tagged canary, nothing is offline.
const TOPOLOGY: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
tags = ["canary"]
state = "live"

[[location]]
name = "fra01"
region = "eu"
metro = "FRA"
country = "DE"
tags = []
state = "live"

[[location]]
name = "sjc01"
region = "us"
metro = "SJC"
country = "US"
tags = ["canary"]
state = "live"
"#;

fn topology() -> Topology {
    compile_owned(vec![Source::new("locations.toml", TOPOLOGY)], 1).unwrap()
}

/// A fleet file with every topology location and `waves` appended.
fn fleet(waves: &str) -> Fleet {
    let mut text = String::from(
        "[defaults]\nca = \"ca.pem\"\ncertificate = \"c.pem\"\nprivate_key = \"k.pem\"\n",
    );
    for (index, name) in ["ams01", "fra01", "sjc01"].iter().enumerate() {
        text += &format!(
            "[[location]]\nname = \"{name}\"\ncontrol = \"127.0.0.{}:9443\"\n",
            index + 1
        );
    }
    text += waves;
    parse_fleet(&Source::new("fleet.toml", text), Path::new("/etc/fleet")).unwrap()
}

/// `file:line:column` of the first occurrence of `needle` in the fleet file.
fn position(fleet: &Fleet, needle: &str) -> String {
    let text = &fleet.source.text;
    let offset = text.find(needle).unwrap();
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |newline| newline + 1) + 1;
    format!("fleet.toml:{line}:{column}")
}

#[test]
fn a_misspelt_canary_tag_is_refused_at_its_position_with_did_you_mean() {
    let fleet =
        fleet("[[wave]]\nname = \"canary\"\nselect = \"tag:canry\"\n[[wave]]\nname = \"rest\"\n");
    let stop = check_waves(&fleet, &topology(), false).unwrap_err();
    assert_eq!(stop.code, EXIT_REFUSED);
    let at_value = position(&fleet, "canry");
    let at_selector = position(&fleet, "tag:canry");
    assert!(
        stop.message.contains(&format!(
            "{at_value}: error: wave `canary` selects unknown tag \"canry\" (not in the new topology)\n  help: did you mean `canary`?"
        )),
        "{}",
        stop.message
    );
    assert!(
        stop.message.contains(&format!(
            "{at_selector}: error: the canary wave `canary` (the first [[wave]]) selects no location: tag = \"canry\"\n  help: fix the selector so that it matches at least one location, or pass --no-canary"
        )),
        "{}",
        stop.message
    );
}

#[test]
fn no_canary_turns_the_canary_refusals_into_warnings() {
    let fleet =
        fleet("[[wave]]\nname = \"canary\"\nselect = \"tag:canry\"\n[[wave]]\nname = \"rest\"\n");
    let checked = check_waves(&fleet, &topology(), true).unwrap();
    assert_eq!(checked.waves.len(), 1);
    assert_eq!(checked.waves[0].name, "rest");
    assert_eq!(checked.warnings.len(), 2, "{:?}", checked.warnings);
    // In file order: the selector, then the value inside it.
    assert!(checked.warnings[1].starts_with(&format!(
        "{}: warning: wave `canary` selects unknown tag",
        position(&fleet, "canry")
    )));
    assert!(
        checked.warnings[0].contains("rolling out without a canary (--no-canary)"),
        "{:?}",
        checked.warnings
    );
}

#[test]
fn a_canary_of_known_names_that_selects_nothing_is_refused_too() {
    let fleet = fleet(
        "[[wave]]\nname = \"first\"\nselect = \"state = 'offline'\"\n[[wave]]\nname = \"rest\"\n",
    );
    let stop = check_waves(&fleet, &topology(), false).unwrap_err();
    assert_eq!(stop.code, EXIT_REFUSED);
    assert!(
        stop.message.contains(&format!(
            "{}: error: the canary wave `first`",
            position(&fleet, "state = 'offline'")
        )),
        "{}",
        stop.message
    );
    assert!(check_waves(&fleet, &topology(), true).is_ok());
}

#[test]
fn unknown_names_in_later_waves_are_refused_even_without_a_canary() {
    let fleet = fleet(
        "[[wave]]\nname = \"canary\"\nselect = \"tag:canary\"\n[[wave]]\nname = \"eu\"\nselect = \"region = 'europe' or metro in ['FRA', 'AMZ']\"\n[[wave]]\nname = \"rest\"\n",
    );
    for no_canary in [false, true] {
        let stop = check_waves(&fleet, &topology(), no_canary).unwrap_err();
        assert_eq!(stop.code, EXIT_REFUSED);
        assert!(
            stop.message.contains(&format!(
                "{}: error: wave `eu` selects unknown region \"europe\"",
                position(&fleet, "europe")
            )),
            "{}",
            stop.message
        );
        assert!(
            stop.message.contains(&format!(
                "{}: error: wave `eu` selects unknown metro \"AMZ\" (not in the new topology)\n  help: did you mean `AMS`?",
                position(&fleet, "AMZ")
            )),
            "{}",
            stop.message
        );
    }
}

/// `--no-canary` makes the canary wave's unknown names warnings only when that wave is
/// dropped: a typo next to a working selector is still refused.
#[test]
fn no_canary_still_refuses_a_typo_in_a_canary_wave_that_selects_locations() {
    let fleet = fleet(
        "[[wave]]\nname = \"canary\"\nselect = \"location in ['ams01', 'ams1']\"\n[[wave]]\nname = \"rest\"\n",
    );
    let stop = check_waves(&fleet, &topology(), true).unwrap_err();
    assert_eq!(stop.code, EXIT_REFUSED);
    assert!(
        stop.message.contains(&format!(
            "{}: error: wave `canary` selects unknown location \"ams1\"",
            position(&fleet, "ams1'")
        )),
        "{}",
        stop.message
    );
}

/// A wave plan that cannot be made because of a misspelt name is refused (2) with the name's
/// position and did you mean, then the planner's error — not a bare error (1).
#[test]
fn unknown_names_are_reported_before_a_wave_plan_that_cannot_be_made() {
    let fleet = fleet(
        "[[wave]]\nname = \"canary\"\nselect = \"tag:canary\"\n[[wave]]\nname = \"rest\"\nselect = \"tag:canari\"\n",
    );
    let stop = check_waves(&fleet, &topology(), false).unwrap_err();
    assert_eq!(stop.code, EXIT_REFUSED, "{}", stop.message);
    let error = format!(
        "{}: error: wave `rest` selects unknown tag \"canari\" (not in the new topology)\n  help: did you mean `canary`?",
        position(&fleet, "canari")
    );
    assert!(stop.message.contains(&error), "{}", stop.message);
    let known = fleet_names_unassigned_error(&fleet);
    assert!(
        stop.message.ends_with(&known),
        "the planner's error last: {}",
        stop.message
    );
}

/// The planner's own error for `fleet` (what a bare exit 1 used to say).
fn fleet_names_unassigned_error(fleet: &Fleet) -> String {
    let names: Vec<String> = fleet.locations.iter().map(|l| l.name.clone()).collect();
    assign_waves(&fleet.waves, &fleet.gates, &names, topology().locations())
        .unwrap_err()
        .to_string()
}

#[test]
fn a_good_wave_plan_passes_with_the_planners_warnings() {
    let fleet = fleet(
        "[[wave]]\nname = \"canary\"\nselect = \"tag:canary\"\n[[wave]]\nname = \"empty\"\nselect = \"region = 'eu'\"\nmax_locations = 1\n[[wave]]\nname = \"rest\"\n[[wave]]\nname = \"after\"\n",
    );
    let checked = check_waves(&fleet, &topology(), false).unwrap();
    let names: Vec<&str> = checked
        .waves
        .iter()
        .map(|wave| wave.name.as_str())
        .collect();
    assert_eq!(names, ["canary", "empty"]);
    assert_eq!(
        checked.warnings,
        [
            "wave `rest` selects no location and is dropped",
            "wave `after` selects no location and is dropped"
        ]
    );
}

fn address() -> SocketAddr {
    "127.0.0.1:9443".parse().unwrap()
}

fn plan_view(verdict: Verdict, old_generation: u64, text: &str) -> PlanView {
    PlanView {
        verdict,
        exit_code: 0,
        plan: Document(json!({"old_generation": old_generation})),
        text: text.into(),
        location_delta: Document(Value::Null),
    }
}

#[test]
fn plan_answers_are_ok_refused_or_unreachable() {
    let ok = Ok(plan_view(Verdict::ChangesAllowed, 4, "fine"));
    assert_eq!(classify(&ok, Some(4)), Answer::Ok);
    // Planned against another generation than the status said: a compare-and-swap conflict.
    let Answer::Refused(reason) = classify(&ok, Some(3)) else {
        panic!("a generation mismatch must refuse");
    };
    assert!(
        reason.contains("runs generation 4, the rollout planned against 3"),
        "{reason}"
    );
    let refused = Ok(plan_view(
        Verdict::Refused,
        4,
        "line 1\nline 2\n\nline 3\nline 4\nline 5\nline 6\n",
    ));
    let Answer::Refused(reason) = classify(&refused, Some(4)) else {
        panic!("a refused plan must refuse");
    };
    assert_eq!(
        reason,
        "its plan is refused:\nline 1\nline 2\nline 3\n… (3 more line(s))"
    );
    let health = Err(ClientError::Status {
        status: 422,
        body: Box::new(ErrorBody {
            error: ErrorView {
                kind: "invalid".into(),
                message: "health checks cannot run at location `fra01`: service `web` check 1 names {probe_host}".into(),
                detail: Some(ErrorDetail::HealthChecks {
                    health_errors: vec!["service `web` check 1 names {probe_host}".into()],
                }),
            },
            audit_warning: None,
        }),
    });
    let Answer::Refused(reason) = classify(&health, Some(4)) else {
        panic!("a 422 must refuse");
    };
    assert!(
        reason.starts_with("answered 422 (invalid): health checks cannot run at location `fra01`"),
        "{reason}"
    );
    let compile = Err(ClientError::Status {
        status: 400,
        body: Box::new(ErrorBody {
            error: ErrorView {
                kind: "invalid".into(),
                message: "the topology does not compile".into(),
                detail: Some(ErrorDetail::Compile {
                    diagnostics: Document(Value::Null),
                    text: "services.toml:3:1: error: x\u{1b}[2J".into(),
                }),
            },
            audit_warning: None,
        }),
    });
    let Answer::Refused(reason) = classify(&compile, Some(4)) else {
        panic!("a compile error must refuse");
    };
    assert!(
        reason.ends_with("services.toml:3:1: error: x\\u{1b}[2J"),
        "{reason}"
    );
    let down = Err(ClientError::Connect {
        address: address(),
        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
    });
    assert!(
        matches!(classify(&down, Some(4)), Answer::Unreachable(reason) if reason.contains("cannot connect to 127.0.0.1:9443"))
    );
    let slow = Err(ClientError::Timeout {
        address: address(),
        timeout: Duration::from_secs(1),
    });
    assert!(matches!(classify(&slow, Some(4)), Answer::Unreachable(_)));
    // Busy (503) or failing (5xx): unreachable for now (exit 6), as the driver retries it.
    for (status, kind) in [(503, "busy"), (500, "internal")] {
        let busy = Err(ClientError::Status {
            status,
            body: Box::new(ErrorBody {
                error: ErrorView {
                    kind: kind.into(),
                    message: "the compile memory budget is in use".into(),
                    detail: None,
                },
                audit_warning: None,
            }),
        });
        assert!(
            matches!(classify(&busy, Some(4)), Answer::Unreachable(reason) if reason.starts_with(&format!("answered {status} ({kind})"))),
            "{status}"
        );
    }
}

fn report(answers: &[Answer]) -> PreflightReport {
    PreflightReport {
        stage: "plan",
        results: answers
            .iter()
            .enumerate()
            .map(|(index, answer)| LocationResult {
                location: format!("loc{index}"),
                answer: answer.clone(),
                duration: Duration::from_millis(12),
            })
            .collect(),
        duration: Duration::from_millis(30),
        concurrency: 32,
    }
}

#[test]
fn the_report_refuses_with_2_for_a_refusal_and_1_when_only_unreachable() {
    assert_eq!(report(&[Answer::Ok, Answer::Ok]).refusal(), None);
    let mixed = report(&[
        Answer::Ok,
        Answer::Unreachable("cannot connect".into()),
        Answer::Refused("guards\nG3".into()),
    ]);
    let stop = mixed.refusal().unwrap();
    assert_eq!(stop.code, EXIT_REFUSED);
    assert!(
        stop.message.contains("loc1 unreachable: cannot connect"),
        "{}",
        stop.message
    );
    assert!(
        stop.message.contains("loc2 refused: guards\n      G3"),
        "{}",
        stop.message
    );
    assert!(!stop.message.contains("loc0"), "{}", stop.message);
    let unreachable = report(&[Answer::Unreachable("timeout".into()), Answer::Ok]);
    assert_eq!(unreachable.refusal().unwrap().code, EXIT_UNREACHABLE);
    let event = mixed.to_json();
    assert_eq!(event["event"], "preflight");
    assert_eq!(event["stage"], "plan");
    assert_eq!(event["passed"], false);
    assert_eq!(
        (
            event["ok"].as_u64(),
            event["refused"].as_u64(),
            event["unreachable"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(event["locations"][0]["result"], "ok");
    assert_eq!(event["locations"][0]["reason"], Value::Null);
    assert_eq!(event["locations"][2]["result"], "refused");
    assert_eq!(event["locations"][2]["reason"], "guards\nG3");
    assert_eq!(event["locations"][2]["duration_ms"], 12.0);
}

/// Clients for `count` locations (never connected to: the calls below do not use them).
fn idle_clients(count: usize) -> BTreeMap<String, ControlClient> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let config = Arc::new(config);
    (0..count)
        .map(|index| {
            (
                format!("loc{index:03}"),
                ControlClient::new(address(), "localhost", Arc::clone(&config)).unwrap(),
            )
        })
        .collect()
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Every location is asked exactly once, and never more than `concurrency` at once.
        #[test]
        fn the_fan_out_is_bounded_and_asks_everyone_once(
            count in 0usize..40,
            concurrency in 1usize..12,
        ) {
            let clients = idle_clients(count);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let most = Arc::new(AtomicUsize::new(0));
            let asked = Arc::new(AtomicUsize::new(0));
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let answers = runtime.block_on(ask_every_location(&clients, concurrency, |name, _| {
                let (in_flight, most, asked) =
                    (Arc::clone(&in_flight), Arc::clone(&most), Arc::clone(&asked));
                async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<String, ClientError>(name)
                }
            }));
            prop_assert_eq!(asked.load(Ordering::SeqCst), count);
            prop_assert!(most.load(Ordering::SeqCst) <= concurrency);
            prop_assert_eq!(answers.len(), count);
            for (name, (answer, _)) in &answers {
                prop_assert_eq!(answer.as_ref().ok(), Some(name));
            }
            if count >= concurrency {
                prop_assert_eq!(most.load(Ordering::SeqCst), concurrency);
            }
        }
    }
}
