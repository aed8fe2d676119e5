//! End to end: what `topoctl rollout start` checks before it applies anything, against a fleet
//! of four real `topologyd` instances (eu: ams01 canary, fra01; us: iad01; apac: sin01), each
//! peering with its own real BIRD 2, scraped by one real Prometheus (harness: `src/fleet/`).
//! Every daemon but sin01 defines the health placeholder `{probe_host}` in its `[health.vars]`.
//!
//! One fleet, the scenarios in order:
//!
//! - (a) A canary wave whose selector misspells its tag (`tag:canry`): refused, exit 3, with the
//!   selector's `file:line:column` in the fleet file, "did you mean `canary`" and what to do;
//!   `--dry-run` refuses the same way; no daemon's generation moved. With `--no-canary` the same
//!   rollout goes ahead (exit 0, every location applied once) and its warnings are `warning`
//!   events in `--json`.
//! - (b) A change whose health check names `{probe_host}`: refused at the pre-flight (exit 3)
//!   naming sin01 and the placeholder, with a `preflight` event (sin01 `refused`, the others
//!   `ok`); `--dry-run --json` shows the same pre-flight and exits 3; no generation moved.
//! - (c) sin01's daemon killed (SIGKILL): refused (exit 6) naming sin01 as unreachable in the
//!   `preflight` event; nothing moved elsewhere. The daemon is started again afterwards.
//! - (d) The controller SIGKILLed while the canary's apply is in flight (right after the
//!   daemon's write-ahead `intent` audit record appears): the daemon finishes the apply and its
//!   audit log holds the `intent` record for the generation it runs; `topoctl rollout resume`
//!   settles the canary without applying it again and completes: one new generation and one
//!   apply intent per location.
//!
//! Afterwards no process the fleet started is left (checked through `/proc`).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use topologyd_harness::fleet::{
    Generation, TestFleet, event_field, event_name, leftover_processes, rollout_events,
};
use topologyd_harness::topologyd::HealthSection;

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);

const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_UNREACHABLE: Option<i32> = Some(6);
const EXIT_REFUSED: Option<i32> = Some(3);

/// (name, region, tags) of every location.
const LOCATIONS: [(&str, &str, &[&str]); 4] = [
    ("ams01", "eu", &["canary"]),
    ("fra01", "eu", &[]),
    ("iad01", "us", &[]),
    ("sin01", "apac", &[]),
];
const CANARY: &str = "ams01";
/// The location whose daemon has no `{probe_host}`.
const WITHOUT_PROBE_HOST: &str = "sin01";
const RESOLVER_PREFIX: &str = "1.1.1.0/24";
/// One more `time` prefix per good change.
const TIME_PREFIXES: [&str; 3] = ["162.159.200.0/24", "162.159.201.0/24", "162.159.202.0/24"];
const WEB_PREFIX: &str = "198.51.100.0/24";

/// Short bakes and a daemon gate: the scenarios are about what happens before and around
/// the applies, not the gates.
const GATES: &str = r#"
[[gate]]
name = "daemons"
kind = "daemon"
interval_ms = 200
count = 1
failure_limit = 1
inconclusive_limit = 30
"#;

fn waves(canary_selector: &str) -> String {
    format!(
        "[[wave]]\nname = \"canary\"\nselect = \"{canary_selector}\"\nbake_seconds = 1\n\n[[wave]]\nname = \"rest\"\nshare = 1.0\nbake_seconds = 1\n{GATES}"
    )
}

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn all_names() -> Vec<&'static str> {
    LOCATIONS.iter().map(|(name, _, _)| *name).collect()
}

/// The topology: the locations, the resolver, `time` with `time_prefixes` prefixes, and with
/// `web` a service whose exec health check names `{probe_host}`.
fn topology(time_prefixes: usize, web: bool) -> Vec<(&'static str, String)> {
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
        "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\n\n",
    );
    let mut prefixes = String::new();
    let mut onboard = |cidr: &str, service: &str| {
        prefixes += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"{service}\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n"
        );
    };
    onboard(RESOLVER_PREFIX, "resolver");
    if time_prefixes > 0 {
        services += "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\n\n";
        for cidr in &TIME_PREFIXES[..time_prefixes] {
            onboard(cidr, "time");
        }
    }
    if web {
        services += "[[service]]\nname = \"web\"\nlifecycle = \"active\"\ntopology = \"all\"\n[service.health]\ninterval_ms = 500\ntimeout_ms = 400\n[[service.health.check]]\nkind = \"exec\"\ncommand = [\"/bin/true\", \"{probe_host}\"]\n\n";
        onboard(WEB_PREFIX, "web");
    }
    vec![
        ("fleet.toml", locations),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

fn write_topology(fleet: &TestFleet, name: &str, files: &[(&'static str, String)]) -> Vec<String> {
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(file, text)| (*file, text.as_str()))
        .collect();
    check(fleet.write_topology(name, &borrowed), "writing a topology")
        .iter()
        .map(|path| path.display().to_string())
        .collect()
}

fn generations(fleet: &TestFleet) -> BTreeMap<String, Generation> {
    check(fleet.generations(), "reading every generation")
}

/// `path:line:column` of the first `needle` in the file at `path`.
fn position_in(path: &Path, needle: &str) -> String {
    let text = check(std::fs::read_to_string(path), "reading the fleet file");
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in {text}"));
    let line = text[..offset].matches('\n').count() + 1;
    let column = offset - text[..offset].rfind('\n').map_or(0, |newline| newline + 1) + 1;
    format!("{}:{line}:{column}", path.display())
}

/// `rollout start` arguments: the fleet file, a new state directory, `extra`, the files.
fn start_arguments(
    fleet: &TestFleet,
    fleet_file: &Path,
    state: &str,
    extra: &[&str],
    files: &[String],
) -> Vec<String> {
    let state = check(fleet.state_dir(state), "a state directory");
    let mut arguments: Vec<String> = vec![
        "start".into(),
        "--fleet".into(),
        fleet_file.display().to_string(),
        "--state-dir".into(),
        state.display().to_string(),
    ];
    arguments.extend(extra.iter().map(|argument| argument.to_string()));
    arguments.extend(files.iter().cloned());
    arguments
}

fn run(fleet: &TestFleet, arguments: &[String]) -> topologyd_harness::topologyd::TopoctlOutput {
    let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
    check(fleet.rollout(&borrowed, ROLLOUT_TIMEOUT), "topoctl rollout")
}

/// The `preflight` event's result for every location.
fn preflight_results(event: &Value) -> BTreeMap<String, (String, String)> {
    event["locations"]
        .as_array()
        .map(|locations| {
            locations
                .iter()
                .map(|location| {
                    (
                        event_field(location, "location").to_string(),
                        (
                            event_field(location, "result").to_string(),
                            event_field(location, "reason").to_string(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The audit records of `POST /v1/apply` written before the change (`phase` = `intent`).
fn apply_intents(fleet: &TestFleet, name: &str) -> Vec<Value> {
    check(fleet.audit(name), "reading an audit log")
        .into_iter()
        .filter(|record| {
            event_field(record, "endpoint").contains("/v1/apply")
                && event_field(record, "phase") == "intent"
        })
        .collect()
}

/// Sends `signal` to the process `pid` (one this test started).
#[allow(unsafe_code)]
fn signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).unwrap_or_else(|_| panic!("pid {pid}"));
    // SAFETY: kill(2) has no memory effects; the pid is a child of this test.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

fn step(test_started: Instant, name: &str) {
    eprintln!("\n==== [+{:.1?}] {name}", test_started.elapsed());
}

#[test]
fn rollouts_refuse_before_applying_anything_and_survive_a_controller_killed_mid_apply() {
    let test_started = Instant::now();
    step(
        test_started,
        "0: start the fleet (4 topologyd + 4 BIRD + Prometheus)",
    );
    let base = topology(0, false);
    let borrowed: Vec<(&str, &str)> = base
        .iter()
        .map(|(file, text)| (*file, text.as_str()))
        .collect();
    let mut fleet = check(
        TestFleet::start_configured(&all_names(), &borrowed, &|name, config| {
            let mut health = HealthSection::default();
            if name != WITHOUT_PROBE_HOST {
                health.vars = vec![("probe_host".into(), "127.0.0.1".into())];
            }
            config.health = Some(health);
        }),
        "starting the fleet",
    );
    let markers = fleet.process_markers();
    let before = generations(&fleet);
    assert!(
        before.values().all(|generation| generation.number == 1),
        "{before:?}"
    );

    // (a) ------------------------------------------------------------------------------------
    step(
        test_started,
        "a: a misspelt canary tag is refused; --no-canary goes ahead",
    );
    let typo_file = check(
        fleet.write_fleet_file("fleet-canry.toml", &waves("tag:canry")),
        "writing the fleet file",
    );
    let files_a = write_topology(&fleet, "topology-a", &topology(1, false));
    let at_selector = position_in(&typo_file, "tag:canry");
    let at_value = position_in(&typo_file, "canry\"");
    for (state, extra) in [
        ("a-refused", &["--json"][..]),
        ("a-dry", &["--dry-run"][..]),
    ] {
        let refused = run(
            &fleet,
            &start_arguments(&fleet, &typo_file, state, extra, &files_a),
        );
        assert_eq!(refused.code, EXIT_REFUSED, "{refused}");
        assert!(
            refused.stderr.contains(&format!(
                "{at_selector}: error: the canary wave `canary` (the first [[wave]]) selects no location"
            )),
            "{refused}"
        );
        assert!(refused.stderr.contains("--no-canary"), "{refused}");
        assert!(
            refused.stderr.contains(&format!(
                "{at_value}: error: wave `canary` selects unknown tag \"canry\""
            )) && refused.stderr.contains("did you mean `canary`?"),
            "{refused}"
        );
    }
    assert_eq!(
        generations(&fleet),
        before,
        "a refused rollout applies nothing"
    );
    let no_canary = run(
        &fleet,
        &start_arguments(
            &fleet,
            &typo_file,
            "a-no-canary",
            &["--json", "--no-canary"],
            &files_a,
        ),
    );
    assert_eq!(
        no_canary.code,
        EXIT_COMPLETED,
        "{no_canary}\n{}",
        fleet.report()
    );
    let events = rollout_events(&no_canary.stdout);
    let warnings: Vec<&str> = events
        .iter()
        .filter(|event| event_name(event) == "warning")
        .map(|event| event_field(event, "message"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|warning| warning.starts_with(&at_selector)
                && warning.contains("rolling out without a canary (--no-canary)")),
        "{no_canary}"
    );
    let preflight = events
        .iter()
        .find(|event| event_name(event) == "preflight")
        .unwrap_or_else(|| panic!("no preflight event: {no_canary}"));
    assert_eq!(preflight["passed"], true, "{preflight}");
    assert!(
        preflight_results(preflight)
            .values()
            .all(|(result, _)| result == "ok"),
        "{preflight}"
    );
    let after_a = generations(&fleet);
    let hash_a = after_a[CANARY].hash.clone();
    for (name, generation) in &after_a {
        assert_eq!(generation.number, 2, "{name}: {after_a:?}");
        assert_eq!(generation.hash, hash_a, "{name}: {after_a:?}");
    }

    // (b) ------------------------------------------------------------------------------------
    step(
        test_started,
        "b: a health placeholder one daemon lacks is refused at the pre-flight",
    );
    let good_file = check(
        fleet.write_fleet_file("fleet.toml", &waves("tag:canary")),
        "writing the fleet file",
    );
    let files_b = write_topology(&fleet, "topology-b", &topology(1, true));
    let refused = run(
        &fleet,
        &start_arguments(&fleet, &good_file, "b", &["--json"], &files_b),
    );
    assert_eq!(refused.code, EXIT_REFUSED, "{refused}");
    let events = rollout_events(&refused.stdout);
    let preflight = events
        .iter()
        .find(|event| event_name(event) == "preflight")
        .unwrap_or_else(|| panic!("no preflight event: {refused}"));
    let results = preflight_results(preflight);
    for name in all_names() {
        let (result, reason) = &results[name];
        if name == WITHOUT_PROBE_HOST {
            assert_eq!(result, "refused", "{preflight}");
            assert!(reason.contains("probe_host"), "{preflight}");
        } else {
            assert_eq!(result, "ok", "{name}: {preflight}");
        }
    }
    assert!(
        refused
            .stderr
            .contains(&format!("{WITHOUT_PROBE_HOST} refused: answered 400 (invalid): health checks cannot run at location `{WITHOUT_PROBE_HOST}`")),
        "{refused}"
    );
    assert!(
        !events.iter().any(|event| event_name(event) == "planned"),
        "no journal is started: {refused}"
    );
    let dry = run(
        &fleet,
        &start_arguments(
            &fleet,
            &good_file,
            "b-dry",
            &["--dry-run", "--json"],
            &files_b,
        ),
    );
    assert_eq!(dry.code, EXIT_REFUSED, "{dry}");
    let document = check(dry.json(), "the dry run's JSON");
    assert_eq!(
        preflight_results(&document["preflight"])[WITHOUT_PROBE_HOST].0,
        "refused",
        "{dry}"
    );
    assert!(document["warnings"].is_array(), "{dry}");
    assert_eq!(
        generations(&fleet),
        after_a,
        "a refused pre-flight applies nothing"
    );

    // (c) ------------------------------------------------------------------------------------
    step(test_started, "c: a stopped daemon is named unreachable");
    check(
        check(fleet.location_mut(WITHOUT_PROBE_HOST), "sin01")
            .daemon
            .kill(),
        "killing sin01's daemon",
    );
    let files_c = write_topology(&fleet, "topology-c", &topology(2, false));
    let unreachable = run(
        &fleet,
        &start_arguments(&fleet, &good_file, "c", &["--json"], &files_c),
    );
    assert_eq!(unreachable.code, EXIT_UNREACHABLE, "{unreachable}");
    let events = rollout_events(&unreachable.stdout);
    let preflight = events
        .iter()
        .find(|event| event_name(event) == "preflight")
        .unwrap_or_else(|| panic!("no preflight event: {unreachable}"));
    let results = preflight_results(preflight);
    assert_eq!(results[WITHOUT_PROBE_HOST].0, "unreachable", "{preflight}");
    assert!(
        unreachable
            .stderr
            .contains(&format!("{WITHOUT_PROBE_HOST} unreachable:")),
        "{unreachable}"
    );
    for name in ["ams01", "fra01", "iad01"] {
        assert_eq!(results[name].0, "ok", "{name}: {preflight}");
        assert_eq!(
            check(fleet.generation(name), "a generation"),
            after_a[name],
            "{name}"
        );
    }
    {
        let location = check(fleet.location_mut(WITHOUT_PROBE_HOST), "sin01");
        check(location.daemon.spawn(), "restarting sin01's daemon");
        check(location.daemon.wait_ready(WAIT), "sin01 ready again");
    }

    // (d) ------------------------------------------------------------------------------------
    step(
        test_started,
        "d: the controller is SIGKILLed while the canary's apply is in flight, then resumed",
    );
    let files_d = write_topology(&fleet, "topology-d", &topology(3, false));
    let before_d = generations(&fleet);
    let intents_before: BTreeMap<&str, usize> = all_names()
        .into_iter()
        .map(|name| (name, apply_intents(&fleet, name).len()))
        .collect();
    let arguments = start_arguments(&fleet, &good_file, "d", &["--json"], &files_d);
    let state_d = arguments[4].clone();
    let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let mut controller = check(fleet.spawn_rollout(&borrowed), "starting rollout d");
    let applying = check(
        controller.wait_event("the canary's apply", ROLLOUT_TIMEOUT, |event| {
            event_name(event) == "location_applying"
        }),
        "rollout d",
    );
    assert_eq!(event_field(&applying, "location"), CANARY, "{applying}");
    // The daemon's write-ahead record says the apply reached it and is about to take effect:
    // the daemon is frozen there (before it can answer), the controller killed, the daemon
    // let go; it finishes the apply for a client that is gone.
    let canary = check(fleet.location(CANARY), "the canary");
    let audit_log = canary.audit_log.clone();
    let daemon_pid = canary
        .daemon
        .pid()
        .unwrap_or_else(|| panic!("the canary runs"));
    let deadline = Instant::now() + WAIT;
    let mut size = 0;
    loop {
        let now = std::fs::metadata(&audit_log).map_or(0, |metadata| metadata.len());
        if now != size {
            size = now;
            if apply_intents(&fleet, CANARY).len() > intents_before[CANARY] {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the canary never wrote its write-ahead record:\n{}",
            fleet.report()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    signal(daemon_pid, libc::SIGSTOP);
    controller.kill();
    signal(daemon_pid, libc::SIGCONT);
    let events_before_kill = controller.events();
    assert!(
        !events_before_kill
            .iter()
            .any(|event| event_name(event) == "location_applied"),
        "the controller was killed before the canary's answer: {events_before_kill:?}"
    );
    // The daemon finishes the apply on its own and its audit says so.
    let deadline = Instant::now() + WAIT;
    let applied = loop {
        let generation = check(fleet.generation(CANARY), "the canary's generation");
        if generation.number > before_d[CANARY].number || Instant::now() >= deadline {
            break generation;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        applied.number,
        before_d[CANARY].number + 1,
        "the canary applied the push whose client died: {}",
        fleet.report()
    );
    let intents = apply_intents(&fleet, CANARY);
    let intent = intents.last().cloned().unwrap_or_default();
    assert_eq!(
        intent.get("generation_after").and_then(Value::as_u64),
        Some(applied.number),
        "the write-ahead record names the generation the canary runs: {intent}"
    );
    assert_eq!(
        event_field(&intent, "who"),
        "rollout-controller",
        "{intent}"
    );
    for name in ["fra01", "iad01", "sin01"] {
        assert_eq!(
            check(fleet.generation(name), "a generation"),
            before_d[name],
            "{name} not applied before the kill"
        );
    }
    let resumed = run(
        &fleet,
        &[
            "resume".into(),
            "--state-dir".into(),
            state_d,
            "--json".into(),
        ],
    );
    assert_eq!(
        resumed.code,
        EXIT_COMPLETED,
        "{resumed}\n{}",
        fleet.report()
    );
    let after_d = generations(&fleet);
    for name in all_names() {
        assert_eq!(after_d[name].hash, applied.hash, "{name}: {after_d:?}");
        assert_eq!(
            after_d[name].number,
            before_d[name].number + 1,
            "{name}: exactly one new generation: {before_d:?} → {after_d:?}"
        );
        assert_eq!(
            apply_intents(&fleet, name).len(),
            intents_before[name] + 1,
            "{name}: exactly one apply reached the daemon"
        );
    }

    step(test_started, "stop everything");
    drop(fleet);
    let leftovers = leftover_processes(&markers);
    assert!(leftovers.is_empty(), "left running: {leftovers:#?}");
    eprintln!(
        "rollout pre-flight end-to-end: {:.1?} in all",
        test_started.elapsed()
    );
}
