//! End to end: the `probes` gate of `topoctl rollout` (issue #5 item 4: service probes each
//! daemon runs at its own location, declared per service in the topology, their results read
//! from the daemon's `GET /v1/health`) against three real `topologyd` instances in two regions
//! (eu: ams01 tagged `canary`, fra01; us: iad01), each peering with its own real BIRD 2
//! (harness: `src/fleet.rs`; no gate reads Prometheus).
//!
//! The base topology announces the `resolver` service everywhere. Two pushes, each one
//! `topoctl rollout start … --json` with waves canary (`tag:canary`, bake 3 s) then rest (bake
//! 1 s) and the gates `daemons` and `probes` (`services = ["time"]`, 200 ms × 2), each adding
//! the service `time` (its own prefix, announced everywhere) with one exec health check
//! (200 ms interval, 150 ms timeout, rise 1, fall 1, `on_unhealthy = "withdraw"`):
//!
//! - (1) The check is `/bin/false`: exit 7 (rolled back); the event stream shows the `probes`
//!   gate's `gate_result` `fail` and its `gate_failed` in the canary wave naming ams01 and
//!   `time`, no `daemons` gate failure, no wave passed, the rest wave never started; ams01 was
//!   applied (generation 2) and rolled back (generation 3, verified) to the old hash, and its
//!   health report no longer lists `time`; fra01 and iad01 never applied (generation, hash and
//!   audit log unchanged). A watcher sampling every BIRD every 200 ms for the whole push saw
//!   fra01's and iad01's BIRDs never hold the `time` prefix and no BIRD ever lose a resolver
//!   route; at the end every BIRD holds exactly the resolver's routes.
//! - (2) The same change with `/bin/true`: exit 0, `completed` last, the `probes` gate passed in
//!   both waves (canary before rest), every daemon on the new hash (ams01 generation 4, the
//!   others 2), every BIRD holds the resolver and `time` routes (no resolver route lost on the
//!   way), and every daemon's `GET /v1/health` (through `topoctl health`) reports `time`
//!   checked, healthy (state `healthy`, announced, its last `exec /bin/true` round passed), not
//!   in fail static.
//!
//! Afterwards no process the fleet started is left (checked through `/proc`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use topologyd_harness::fleet::{
    Generation, TestFleet, WatchReport, borrow_files, event_field, event_name, journal_tail,
    leftover_processes, rollout_events,
};

/// How long one rollout may run before the test gives up on it.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(30);

/// Exit codes of `topoctl rollout` (docs/rollouts.md).
const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_ROLLED_BACK: Option<i32> = Some(7);

/// (name, region, tags) of every location.
const LOCATIONS: [(&str, &str, &[&str]); 3] = [
    ("ams01", "eu", &["canary"]),
    ("fra01", "eu", &[]),
    ("iad01", "us", &[]),
];
const CANARY: &str = "ams01";
const REST: [&str; 2] = ["fra01", "iad01"];
const RESOLVER_PREFIXES: [&str; 2] = ["1.1.1.0/24", "2606:4700:4700::/48"];
const TIME_PREFIX: &str = "162.159.200.0/24";

/// Canary first (bake 3 s), then the rest (1 s); both gates in both waves.
const PLAN: &str = r#"
[[wave]]
name = "canary"
select = "tag:canary"
bake_seconds = 3

[[wave]]
name = "rest"
bake_seconds = 1

[[gate]]
name = "daemons"
kind = "daemon"
interval_ms = 200
count = 2
failure_limit = 1
inconclusive_limit = 30

[[gate]]
name = "probes"
kind = "probes"
services = ["time"]
interval_ms = 200
count = 2
failure_limit = 1
inconclusive_limit = 30
"#;

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn net(text: &str) -> IpNet {
    check(text.parse(), text)
}

fn all_names() -> Vec<&'static str> {
    LOCATIONS.iter().map(|(name, _, _)| *name).collect()
}

/// The topology files; with `time_check`, the `time` service and its prefix, health-checked by
/// that exec command.
fn topology(time_check: Option<&str>) -> Vec<(&'static str, String)> {
    let mut locations = String::new();
    for (name, region, tags) in LOCATIONS {
        let tags: Vec<String> = tags.iter().map(|tag| format!("\"{tag}\"")).collect();
        locations += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"{region}\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [{}]\nstate = \"live\"\n\n",
            name[..3].to_uppercase(),
            tags.join(", ")
        );
    }
    let mut services = String::from(
        "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10000\"]\n\n",
    );
    let mut prefixes = String::new();
    let mut onboard = |cidr: &str, service: &str| {
        prefixes += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"{service}\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n"
        );
    };
    for cidr in RESOLVER_PREFIXES {
        onboard(cidr, "resolver");
    }
    if let Some(command) = time_check {
        services += &format!(
            "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10040\"]\n\n[service.health]\ninterval_ms = 200\ntimeout_ms = 150\nrise = 1\nfall = 1\non_unhealthy = \"withdraw\"\n\n[[service.health.check]]\nkind = \"exec\"\ncommand = [\"{command}\"]\n\n"
        );
        onboard(TIME_PREFIX, "time");
    }
    vec![
        ("fleet.toml", locations),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

fn resolver_routes() -> BTreeSet<IpNet> {
    RESOLVER_PREFIXES.iter().map(|text| net(text)).collect()
}

fn with_time() -> BTreeSet<IpNet> {
    let mut routes = resolver_routes();
    routes.insert(net(TIME_PREFIX));
    routes
}

/// Waits until the BIRD of every location in `names` holds exactly `expected`.
fn wait_for_birds(fleet: &TestFleet, names: &[&str], expected: &BTreeSet<IpNet>, what: &str) {
    if let Err(error) = fleet.wait_for_birds(names, what, WAIT, |_, held| held == expected) {
        panic!("{error}\n{}", fleet.report());
    }
}

fn generations(fleet: &TestFleet) -> BTreeMap<String, Generation> {
    check(fleet.generations(), "reading every generation")
}

fn named<'a>(events: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |event| event_name(event) == name)
}

/// The `locations` of the events named `name`, in order.
fn locations_of(events: &[Value], name: &str) -> Vec<String> {
    named(events, name)
        .map(|event| event_field(event, "location").to_string())
        .collect()
}

/// The `time` of the first event named `name`.
fn event_time(events: &[Value], name: &str) -> f64 {
    named(events, name)
        .next()
        .and_then(|event| event.get("time").and_then(Value::as_f64))
        .unwrap_or(f64::NAN)
}

/// The `planned` event: checks the wave plan and returns (old hash, new hash).
fn check_plan(events: &[Value], output: &impl Display) -> (String, String) {
    let planned = named(events, "planned")
        .next()
        .unwrap_or_else(|| panic!("no `planned` event: {output}"));
    let waves: Vec<(String, Vec<String>, Vec<String>)> = planned["waves"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|wave| {
            let strings = |key: &str| -> Vec<String> {
                wave[key]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|value| value.as_str().map(str::to_string))
                    .collect()
            };
            (
                event_field(wave, "name").to_string(),
                strings("locations"),
                strings("gates"),
            )
        })
        .collect();
    let gates = vec!["daemons".to_string(), "probes".to_string()];
    assert_eq!(
        waves,
        [
            (
                "canary".to_string(),
                vec![CANARY.to_string()],
                gates.clone()
            ),
            (
                "rest".to_string(),
                REST.iter().map(|name| name.to_string()).collect(),
                gates
            ),
        ],
        "the wave plan: {output}"
    );
    let old_hash = event_field(planned, "old_hash").to_string();
    let new_hash = event_field(planned, "new_hash").to_string();
    assert!(
        !old_hash.is_empty() && !new_hash.is_empty() && old_hash != new_hash,
        "{planned}"
    );
    (old_hash, new_hash)
}

/// `topoctl health` at `name`: the daemon's `GET /v1/health`.
fn health(fleet: &TestFleet, name: &str) -> Value {
    let topoctl = check(fleet.topoctl(name), "a topoctl client");
    let output = check(topoctl.run::<&str>("health", &[]), "topoctl health");
    assert_eq!(output.code, Some(0), "{name}: {output}");
    check(output.json(), "topoctl health's JSON")
}

/// Samples of `location` in which `prefix` was missing.
fn missing_samples(report: &WatchReport, location: &str, prefix: IpNet) -> u64 {
    report
        .missing
        .iter()
        .filter(|missing| missing.location == location && missing.prefix == prefix)
        .count() as u64
}

/// Runs `topoctl rollout start --json` with the fleet file and `files`; returns the output.
fn start_rollout(
    fleet: &TestFleet,
    fleet_file: &str,
    state_dir: &Path,
    files: &[String],
) -> topologyd_harness::topologyd::TopoctlOutput {
    let mut arguments = vec![
        "start",
        "--fleet",
        fleet_file,
        "--state-dir",
        state_dir.to_str().unwrap_or_default(),
        "--json",
    ];
    arguments.extend(files.iter().map(String::as_str));
    check(
        fleet.rollout(&arguments, ROLLOUT_TIMEOUT),
        "topoctl rollout",
    )
}

fn write_topology(fleet: &TestFleet, name: &str, files: &[(&'static str, String)]) -> Vec<String> {
    check(
        fleet.write_topology(name, &borrow_files(files)),
        "writing a topology",
    )
    .iter()
    .map(|path| path.display().to_string())
    .collect()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_probes_gate_rolls_back_a_failing_probe_and_promotes_a_passing_one() {
    let base = topology(None);
    let fleet = check(
        TestFleet::start(&all_names(), &borrow_files(&base)),
        "starting the fleet",
    );
    let test_started = Instant::now();
    let markers = fleet.process_markers();
    wait_for_birds(&fleet, &all_names(), &resolver_routes(), "the resolver");
    let before = generations(&fleet);
    let base_hash = before[CANARY].hash.clone();
    for (name, generation) in &before {
        assert_eq!(generation.number, 1, "{name}: {before:?}");
        assert_eq!(generation.hash, base_hash, "{name}: {before:?}");
    }
    let fleet_file = check(
        fleet.write_fleet_file("fleet-probes.toml", PLAN),
        "writing the fleet file",
    );
    let fleet_file = fleet_file.display().to_string();
    let time = net(TIME_PREFIX);
    eprintln!(
        "==== [+{:.1?}] fleet converged on {base_hash}",
        test_started.elapsed()
    );

    // (1) ------------------------------------------------------------------------------------
    let push_started = Instant::now();
    let files_bad = write_topology(&fleet, "topology-bad", &topology(Some("/bin/false")));
    let mut watched: Vec<IpNet> = resolver_routes().into_iter().collect();
    watched.push(time);
    let watcher = fleet.watch(&watched, &[]);
    let state_bad = check(fleet.state_dir("rollout-bad"), "a state directory");
    let output = start_rollout(&fleet, &fleet_file, &state_bad, &files_bad);
    assert_eq!(
        output.code,
        EXIT_ROLLED_BACK,
        "{output}\n{}",
        fleet.report()
    );
    let events = rollout_events(&output.stdout);
    let (old_hash, bad_hash) = check_plan(&events, &output);
    assert_eq!(old_hash, base_hash, "{output}");
    assert_eq!(
        events.last().map(event_name),
        Some("rolled_back"),
        "{output}"
    );
    // The probes gate failed in the canary wave, on ams01's `time` probe.
    let probe_failures: Vec<&Value> = named(&events, "gate_result")
        .filter(|event| {
            event_field(event, "gate") == "probes" && event_field(event, "result") == "fail"
        })
        .collect();
    assert!(
        probe_failures
            .iter()
            .all(|event| event_field(event, "wave") == "canary")
            && !probe_failures.is_empty(),
        "a failing probes gate_result in the canary wave: {output}"
    );
    let gate_failed: Vec<&Value> = named(&events, "gate_failed").collect();
    assert_eq!(gate_failed.len(), 1, "{output}");
    let failed = gate_failed[0];
    assert_eq!(event_field(failed, "gate"), "probes", "{output}");
    assert_eq!(event_field(failed, "wave"), "canary", "{output}");
    let detail = event_field(failed, "detail");
    assert!(
        detail.contains(CANARY) && detail.contains("time") && detail.contains("unhealthy"),
        "the failure names the location and the service: {detail}"
    );
    // The daemon gate accepts a route withdrawn by health: it never fails.
    assert!(
        !named(&events, "gate_result").any(|event| event_field(event, "gate") == "daemons"
            && event_field(event, "result") == "fail"),
        "{output}"
    );
    let early_passes = named(&events, "gate_result")
        .filter(|event| {
            event_field(event, "gate") == "probes" && event_field(event, "result") == "pass"
        })
        .count();
    if early_passes > 0 {
        eprintln!(
            "[1] note: the probes gate passed {early_passes} time(s) before failing (a health report read before the first probe round: state `unknown`, reported checked and healthy)"
        );
    }
    assert_eq!(named(&events, "wave_passed").count(), 0, "{output}");
    let started_waves: Vec<&str> = named(&events, "wave_started")
        .map(|event| event_field(event, "wave"))
        .collect();
    assert_eq!(started_waves, ["canary"], "{output}");
    assert_eq!(
        locations_of(&events, "location_applied"),
        [CANARY],
        "{output}"
    );
    let applied = named(&events, "location_applied")
        .next()
        .and_then(|event| event["generation"].as_u64());
    assert_eq!(applied, Some(2), "{output}");
    assert_eq!(
        locations_of(&events, "location_rolled_back"),
        [CANARY],
        "{output}"
    );
    let rolled_back = named(&events, "location_rolled_back")
        .next()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rolled_back["generation"].as_u64(), Some(3), "{output}");
    assert_eq!(rolled_back["verified"].as_bool(), Some(true), "{output}");
    assert!(
        journal_tail(&state_bad).contains("rolled_back"),
        "{}",
        journal_tail(&state_bad)
    );
    let applied_at = event_time(&events, "location_applied");
    eprintln!(
        "[1] timing: canary applied → probes gate failed {:.2}s → rolled back (verified) {:.2}s",
        event_time(&events, "gate_failed") - applied_at,
        event_time(&events, "rolled_back") - event_time(&events, "gate_failed")
    );
    // Where every location stands now.
    let after_bad = generations(&fleet);
    assert_eq!(
        after_bad[CANARY],
        Generation {
            number: 3,
            hash: base_hash.clone()
        },
        "{CANARY}: applied (2), rolled back (3) to the old topology"
    );
    assert_ne!(after_bad[CANARY].hash, bad_hash);
    for name in REST {
        assert_eq!(after_bad[name], before[name], "{name} never applied");
        assert_eq!(
            check(fleet.applied_pushes(name), "reading an audit log"),
            0,
            "{name}: no apply in its audit"
        );
    }
    assert_eq!(
        check(fleet.applied_pushes(CANARY), "reading an audit log"),
        1,
        "{CANARY}'s audit"
    );
    let canary_health = health(&fleet, CANARY);
    assert!(
        canary_health["services"].get("time").is_none(),
        "{CANARY} checks `time` no more after the rollback: {canary_health:#}"
    );
    wait_for_birds(
        &fleet,
        &all_names(),
        &resolver_routes(),
        "the resolver only",
    );
    // A late announcement at fra01 or iad01 would still show: keep watching a moment longer.
    std::thread::sleep(Duration::from_secs(1));
    let report = watcher.finish();
    eprintln!(
        "[1] watcher: {:?} samples over {:.1?}, worst gap {:.1?}, {} sample(s) at {CANARY} held the time prefix, {} errors",
        report.samples,
        report.duration,
        report.worst_gap(),
        report.samples.get(CANARY).copied().unwrap_or(0) - missing_samples(&report, CANARY, time),
        report.errors.len()
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report.worst_gap() < Duration::from_secs(2),
        "the watch was not continuous: {:?}",
        report.longest_gap
    );
    for name in all_names() {
        let samples = report.samples.get(name).copied().unwrap_or(0);
        assert!(samples >= 3, "{name}: {:?}", report.samples);
        for prefix in resolver_routes() {
            assert_eq!(
                missing_samples(&report, name, prefix),
                0,
                "{name}'s BIRD lost {prefix}: {:?}",
                report.missing
            );
        }
    }
    for name in REST {
        assert_eq!(
            missing_samples(&report, name, time),
            report.samples.get(name).copied().unwrap_or(0),
            "{name}'s BIRD held {time} in some sample"
        );
    }
    eprintln!(
        "==== [+{:.1?}] (1) /bin/false rolled back in {:.1?}",
        test_started.elapsed(),
        push_started.elapsed()
    );

    // (2) ------------------------------------------------------------------------------------
    let push_started = Instant::now();
    let files_good = write_topology(&fleet, "topology-good", &topology(Some("/bin/true")));
    let watcher = fleet.watch(&resolver_routes().into_iter().collect::<Vec<_>>(), &[]);
    let state_good = check(fleet.state_dir("rollout-good"), "a state directory");
    let output = start_rollout(&fleet, &fleet_file, &state_good, &files_good);
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    let events = rollout_events(&output.stdout);
    let (old_hash, good_hash) = check_plan(&events, &output);
    assert_eq!(old_hash, base_hash, "{output}");
    assert_ne!(good_hash, bad_hash, "the probe command is part of the hash");
    assert_eq!(events.last().map(event_name), Some("completed"), "{output}");
    assert_eq!(named(&events, "gate_failed").count(), 0, "{output}");
    assert_eq!(named(&events, "rollback_started").count(), 0, "{output}");
    // In order: ams01 applied, canary passed (its probes gate passed), then the rest.
    let mut sequence: Vec<String> = Vec::new();
    for event in &events {
        match event_name(event) {
            "location_applied" => sequence.push(event_field(event, "location").to_string()),
            "wave_passed" => sequence.push(format!("passed {}", event_field(event, "wave"))),
            _ => {}
        }
    }
    assert_eq!(
        sequence,
        ["ams01", "passed canary", "fra01", "iad01", "passed rest"],
        "{output}"
    );
    for wave in ["canary", "rest"] {
        assert!(
            named(&events, "gate_result").any(|event| event_field(event, "wave") == wave
                && event_field(event, "gate") == "probes"
                && event_field(event, "result") == "pass"),
            "the probes gate passed in {wave}: {output}"
        );
    }
    let started_at = event_time(&events, "planned");
    eprintln!(
        "[2] timing: canary passed +{:.1}s, completed +{:.1}s",
        named(&events, "wave_passed")
            .next()
            .and_then(|event| event["time"].as_f64())
            .unwrap_or(f64::NAN)
            - started_at,
        event_time(&events, "completed") - started_at
    );
    assert!(
        journal_tail(&state_good).contains("completed"),
        "{}",
        journal_tail(&state_good)
    );
    let after_good = generations(&fleet);
    assert_eq!(
        after_good[CANARY],
        Generation {
            number: 4,
            hash: good_hash.clone()
        }
    );
    for name in REST {
        assert_eq!(
            after_good[name],
            Generation {
                number: 2,
                hash: good_hash.clone()
            },
            "{name}"
        );
    }
    wait_for_birds(&fleet, &all_names(), &with_time(), "the resolver and time");
    let report = watcher.finish();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report.missing.is_empty(),
        "a BIRD lost a resolver route: {:?}",
        report.missing
    );
    for name in all_names() {
        // The report is read until it shows a finished round (it does already: the gate
        // needed two healthy reports), then checked in full.
        let deadline = Instant::now() + WAIT;
        let report = loop {
            let report = health(&fleet, name);
            if report["services"]["time"]["state"] == "healthy" || Instant::now() >= deadline {
                break report;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let time_health = &report["services"]["time"];
        assert_eq!(report["fail_static"], false, "{name}: {report:#}");
        assert_eq!(
            report["generation"].as_u64(),
            Some(after_good[name].number),
            "{name}: {report:#}"
        );
        assert_eq!(time_health["checked"], true, "{name}: {report:#}");
        assert_eq!(time_health["healthy"], true, "{name}: {report:#}");
        assert_eq!(time_health["state"], "healthy", "{name}: {report:#}");
        assert_eq!(time_health["action"], "announce", "{name}: {report:#}");
        assert!(
            time_health["rounds_by_result"]["passed"]
                .as_u64()
                .is_some_and(|passed| passed >= 1),
            "{name}: {report:#}"
        );
        let last_round = time_health["last_round"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(last_round.len(), 1, "{name}: {report:#}");
        assert_eq!(
            last_round[0]["check"], "exec /bin/true",
            "{name}: {report:#}"
        );
        assert_eq!(last_round[0]["result"], "pass", "{name}: {report:#}");
    }
    eprintln!(
        "==== [+{:.1?}] (2) /bin/true completed in {:.1?}",
        test_started.elapsed(),
        push_started.elapsed()
    );

    drop(fleet);
    let leftovers = leftover_processes(&markers);
    assert!(leftovers.is_empty(), "left running: {leftovers:#?}");
    eprintln!(
        "rollout probes: {:.1?} after the fleet started",
        test_started.elapsed()
    );
}
