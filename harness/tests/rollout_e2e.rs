//! End to end: `topoctl rollout` against a fleet of six real `topologyd` instances in three
//! regions (eu: ams01 canary, fra01; us: iad01, sjc01 canary; apac: sin01, nrt01), each peering
//! with its own real BIRD 2, all scraped every second by one real Prometheus that labels every
//! series with its `location` (harness: `src/fleet.rs`). The topology also names `tst01`, a
//! `state = "test"` location with no daemon: the location the resolver incident (shared/seed)
//! attached to the DLS service.
//!
//! One fleet is started once; the scenarios run in order in one test (a 2-core machine cannot
//! afford a fleet per scenario), each step printed with its time:
//!
//! - (0) The harness itself: every daemon converged on generation 1 with the same hash, every BIRD
//!   holds exactly its location's routes, Prometheus scrapes every daemon (`up` = 1 per
//!   `location`).
//! - (a) A good change (a new service `time` and its prefix, announced everywhere) rolls through
//!   every wave (canary → eu → rest-1 → rest-2) to completion: exit 0, `completed` last, no
//!   location of a later wave applied before the earlier wave passed, every BIRD holds the new
//!   route, every daemon runs the new hash, the journal ends `completed`.
//! - (b) The incident's change as it would reach production (the resolver's prefixes bound to
//!   `dls`, whose topology becomes `location = "tst01"`): refused by the plan guards without
//!   intent (exit 3, nothing applied); forced with `--intent service:resolver --intent
//!   service:dls --override global-withdrawal:CIDR… --override blast-radius`, it is applied at
//!   the canary wave only, fails the canary-versus-control PromQL gate on
//!   `topologyd_service_routes_announced{service="resolver"}` and is rolled back by itself: exit
//!   3, every canary daemon back on the old hash, every BIRD holds every resolver route again,
//!   and a watcher sampling every BIRD outside the canary wave every 200 ms for the whole
//!   scenario never saw a resolver route missing (while a second watcher proves the canary
//!   BIRDs did lose them).
//! - (c) The controller SIGKILLed during the bake of wave 1 (seen in its `--json` events) and
//!   continued with `topoctl rollout resume` completes, and every daemon's audit log shows
//!   exactly one applied `POST /v1/apply` for the rollout, its generation one more than before,
//!   with the new hash.
//! - (d) A PromQL gate pointing at an address where nothing listens is inconclusive, which pauses
//!   the rollout in the canary wave; a `promote` while paused promotes nothing, later waves are
//!   never applied; `topoctl rollout abort` rolls the canary back (exit 8, `aborted`).
//!
//! Afterwards no process the fleet started is left (checked through `/proc`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use topologyd_harness::fleet::{
    Generation, TestFleet, event_field, event_name, journal_tail, leftover_processes,
    rollout_events,
};
use topologyd_harness::peers::alloc;

/// How long one rollout may run before the test gives up on it.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);

/// Exit codes of `topoctl rollout` (docs/rollouts.md).
const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_REFUSED: Option<i32> = Some(3);
const EXIT_ROLLED_BACK: Option<i32> = Some(7);
const EXIT_ABORTED: Option<i32> = Some(8);

/// (name, region, tags) of every location with a daemon.
const LOCATIONS: [(&str, &str, &[&str]); 6] = [
    ("ams01", "eu", &["canary", "dls-eu"]),
    ("fra01", "eu", &["dls-eu"]),
    ("iad01", "us", &[]),
    ("sjc01", "us", &["canary"]),
    ("sin01", "apac", &[]),
    ("nrt01", "apac", &[]),
];
const CANARY: [&str; 2] = ["ams01", "sjc01"];
const OUTSIDE_CANARY: [&str; 4] = ["fra01", "iad01", "sin01", "nrt01"];
const RESOLVER_PREFIXES: [&str; 3] = ["1.1.1.0/24", "1.0.0.0/24", "2606:4700:4700::/48"];
const DLS_PREFIX: &str = "203.0.113.0/24";
/// The new service's prefixes: one more per good change.
const TIME_PREFIXES: [&str; 3] = ["162.159.200.0/24", "162.159.201.0/24", "162.159.202.0/24"];

/// The wave plan of every scenario: canary first, then the rest of eu, then the rest two at a
/// time. Short bakes: the canary's must outlast Prometheus's first scrape after the apply
/// (1 s interval) plus a gate interval, so that a failure shows before the wave could pass; eu's
/// leaves scenario (c) time to kill the controller while it bakes.
const WAVES: &str = r#"
[[wave]]
name = "canary"
select = 'state = "test" or tag:canary'
bake_seconds = 5

[[wave]]
name = "eu"
select = 'region = "eu"'
bake_seconds = 2

[[wave]]
name = "rest"
share = 1.0
max_locations = 2
bake_seconds = 1

[[gate]]
name = "daemons"
kind = "daemon"
interval_ms = 300
count = 2
failure_limit = 1
inconclusive_limit = 30
"#;

/// Canary versus control: the smallest number of resolver routes announced at a location of
/// the wave over the smallest at a location outside it. A wave location with no resolver series
/// at all counts as 0 (through its `topologyd_generation` series), so a service whose routes
/// are all gone cannot hide as "no data".
const RESOLVER_GATE_QUERY: &str = r#"min(sum by (location) (topologyd_service_routes_announced{service="resolver",location=~"{wave}"}) or sum by (location) (0 * topologyd_generation{location=~"{wave}"})) / min(topologyd_service_routes_announced{service="resolver",location=~"{control}"})"#;

fn resolver_gate(prometheus: &str) -> String {
    format!(
        "\n[[gate]]\nname = \"resolver-vs-control\"\nkind = \"promql\"\nprometheus = \"{prometheus}\"\nquery = '{RESOLVER_GATE_QUERY}'\nmin = 0.99\ninterval_ms = 300\ncount = 3\nfailure_limit = 1\ninconclusive_limit = 3\n"
    )
}

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn net(text: &str) -> IpNet {
    check(text.parse(), text)
}

fn nets(texts: &[&str]) -> Vec<IpNet> {
    texts.iter().map(|text| net(text)).collect()
}

// ---------------------------------------------------------------------------------------------
// The topology, in the versions the scenarios roll out.

fn fleet_toml() -> String {
    let mut text = String::new();
    for (name, region, tags) in LOCATIONS {
        let tags: Vec<String> = tags.iter().map(|tag| format!("\"{tag}\"")).collect();
        text += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"{region}\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [{}]\nstate = \"live\"\n\n",
            name[..3].to_uppercase(),
            tags.join(", ")
        );
    }
    text += "[[location]]\nname = \"tst01\"\nregion = \"eu\"\nmetro = \"TST\"\ncountry = \"XX\"\ntags = [\"test\"]\nstate = \"test\"\n";
    text
}

/// One version of the topology.
#[derive(Debug, Clone)]
struct Version {
    /// The service the resolver's prefixes are bound to (`resolver`, or `dls` for the incident).
    resolver_binding: &'static str,
    /// The DLS service's selector.
    dls_topology: &'static str,
    /// How many of [`TIME_PREFIXES`] are onboarded (0: no `time` service at all).
    time_prefixes: usize,
}

const BASE: Version = Version {
    resolver_binding: "resolver",
    dls_topology: "tag = \"dls-eu\"",
    time_prefixes: 0,
};

impl Version {
    fn files(&self) -> Vec<(&'static str, String)> {
        let mut services = String::from(
            "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10000\"]\n\n",
        );
        services += &format!(
            "[[service]]\nname = \"dls\"\nlifecycle = \"active\"\ntopology = '{}'\ncommunities = [\"13335:10030\"]\n\n",
            self.dls_topology
        );
        if self.time_prefixes > 0 {
            services += "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10040\"]\n\n";
        }
        let mut prefixes = String::new();
        let mut onboard = |cidr: &str, service: &str| {
            prefixes += &format!(
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"{service}\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n"
            );
        };
        for cidr in RESOLVER_PREFIXES {
            onboard(cidr, self.resolver_binding);
        }
        onboard(DLS_PREFIX, "dls");
        for cidr in &TIME_PREFIXES[..self.time_prefixes] {
            onboard(cidr, "time");
        }
        vec![
            ("fleet.toml", fleet_toml()),
            ("services.toml", services),
            ("prefixes.toml", prefixes),
        ]
    }

    /// What BIRD at `location` must hold under this version.
    fn expected_at(&self, location: &str) -> BTreeSet<IpNet> {
        let (_, _, tags) = LOCATIONS
            .iter()
            .find(|(name, _, _)| *name == location)
            .copied()
            .unwrap_or(("", "", &[]));
        let dls_here = match self.dls_topology {
            "tag = \"dls-eu\"" => tags.contains(&"dls-eu"),
            _ => false,
        };
        let mut routes = BTreeSet::new();
        if self.resolver_binding == "resolver" || dls_here {
            routes.extend(nets(&RESOLVER_PREFIXES));
        }
        if dls_here {
            routes.insert(net(DLS_PREFIX));
        }
        routes.extend(nets(&TIME_PREFIXES[..self.time_prefixes]));
        routes
    }

    fn write(&self, fleet: &TestFleet, name: &str) -> Vec<String> {
        let files = self.files();
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(file, text)| (*file, text.as_str()))
            .collect();
        check(fleet.write_topology(name, &borrowed), "writing a topology")
            .iter()
            .map(|path| path.display().to_string())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers over the fleet.

struct Step {
    started: Instant,
    test_started: Instant,
    name: String,
}

impl Step {
    fn new(test_started: Instant, name: &str) -> Step {
        eprintln!("\n==== [+{:.1?}] {name}", test_started.elapsed());
        Step {
            started: Instant::now(),
            test_started,
            name: name.to_string(),
        }
    }

    fn done(self) {
        eprintln!(
            "==== [+{:.1?}] {} done in {:.1?}",
            self.test_started.elapsed(),
            self.name,
            self.started.elapsed()
        );
    }
}

/// Waits until every location's BIRD holds exactly what `version` announces there.
fn wait_for_version_at_birds(fleet: &TestFleet, version: &Version, names: &[&str]) {
    if let Err(error) = fleet.wait_for_birds(names, "the topology's routes", WAIT, |name, held| {
        *held == version.expected_at(name)
    }) {
        panic!("{error}\n{}", fleet.report());
    }
}

fn all_names() -> Vec<&'static str> {
    LOCATIONS.iter().map(|(name, _, _)| *name).collect()
}

/// The `time` of the first event named `name` (and matching `wave`, if given).
fn event_time(events: &[Value], name: &str, wave: Option<&str>) -> f64 {
    events
        .iter()
        .find(|event| {
            event_name(event) == name && wave.is_none_or(|wave| event_field(event, "wave") == wave)
        })
        .and_then(|event| event.get("time").and_then(Value::as_f64))
        .unwrap_or(f64::NAN)
}

/// The `new_hash` of the `planned` event.
fn planned_hash(events: &[Value]) -> String {
    events
        .iter()
        .find(|event| event_name(event) == "planned")
        .map(|event| event_field(event, "new_hash").to_string())
        .unwrap_or_else(|| panic!("no `planned` event in {events:?}"))
}

fn generations(fleet: &TestFleet) -> BTreeMap<String, Generation> {
    check(fleet.generations(), "reading every generation")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn rollouts_promote_good_changes_roll_back_the_resolver_incident_resume_and_pause() {
    let test_started = Instant::now();
    let base_files = BASE.files();
    let borrowed: Vec<(&str, &str)> = base_files
        .iter()
        .map(|(file, text)| (*file, text.as_str()))
        .collect();

    let step = Step::new(
        test_started,
        "0: start the fleet (6 topologyd + 6 BIRD + Prometheus)",
    );
    let fleet = check(
        TestFleet::start(&all_names(), &borrowed),
        "starting the fleet",
    );
    let markers = fleet.process_markers();
    wait_for_version_at_birds(&fleet, &BASE, &all_names());
    let before = generations(&fleet);
    let hashes: BTreeSet<&String> = before.values().map(|generation| &generation.hash).collect();
    assert_eq!(hashes.len(), 1, "one topology everywhere: {before:?}");
    assert!(
        before.values().all(|generation| generation.number == 1),
        "{before:?}"
    );
    let up = check(
        fleet.prometheus().query("up{job=\"targets\"}"),
        "querying up",
    );
    let scraped: BTreeSet<String> = up
        .iter()
        .filter(|(_, value)| *value == 1.0)
        .filter_map(|(labels, _)| labels.get("location").cloned())
        .collect();
    let every: BTreeSet<String> = all_names().iter().map(|name| name.to_string()).collect();
    assert_eq!(scraped, every, "Prometheus scrapes every location: {up:?}");
    step.done();

    let good_plan = format!(
        "{WAVES}{}",
        resolver_gate(&fleet.prometheus().address().to_string())
    );
    let good_fleet_file = check(
        fleet.write_fleet_file("fleet-good.toml", &good_plan),
        "writing the fleet file",
    );
    let good_fleet_file = good_fleet_file.display().to_string();

    // (a) ------------------------------------------------------------------------------------
    let step = Step::new(test_started, "a: a good change rolls through every wave");
    let version_a = Version {
        time_prefixes: 1,
        ..BASE
    };
    let files_a = version_a.write(&fleet, "topology-a");
    let state_a = check(fleet.state_dir("rollout-a"), "a state directory");
    let mut arguments = vec![
        "start",
        "--fleet",
        &good_fleet_file,
        "--state-dir",
        state_a.to_str().unwrap_or_default(),
        "--json",
    ];
    arguments.extend(files_a.iter().map(String::as_str));
    let output = check(fleet.rollout(&arguments, ROLLOUT_TIMEOUT), "rollout a");
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    let events = rollout_events(&output.stdout);
    assert_eq!(events.last().map(event_name), Some("completed"), "{output}");
    let hash_a = planned_hash(&events);
    // Waves in order, each location applied once, never before the previous wave passed.
    let mut applied: Vec<String> = Vec::new();
    let mut passed: Vec<String> = Vec::new();
    for event in &events {
        match event_name(event) {
            "location_applied" => {
                let wave = event_field(event, "wave");
                let expected_previous = match wave {
                    "canary" => None,
                    "eu" => Some("canary"),
                    "rest-1" => Some("eu"),
                    "rest-2" => Some("rest-1"),
                    other => panic!("unexpected wave {other}: {output}"),
                };
                if let Some(previous) = expected_previous {
                    assert!(
                        passed.iter().any(|wave| wave == previous),
                        "{wave} applied before {previous} passed: {output}"
                    );
                }
                applied.push(event_field(event, "location").to_string());
            }
            "wave_passed" => passed.push(event_field(event, "wave").to_string()),
            _ => {}
        }
    }
    assert_eq!(
        applied,
        ["ams01", "sjc01", "fra01", "iad01", "nrt01", "sin01"],
        "{output}"
    );
    assert_eq!(passed, ["canary", "eu", "rest-1", "rest-2"], "{output}");
    let started_at = event_time(&events, "planned", None);
    let promotions: Vec<String> = passed
        .iter()
        .map(|wave| {
            format!(
                "{wave} passed at +{:.1}s",
                event_time(&events, "wave_passed", Some(wave)) - started_at
            )
        })
        .collect();
    eprintln!(
        "[a] timing: {}; completed at +{:.1}s",
        promotions.join(", "),
        event_time(&events, "completed", None) - started_at
    );
    wait_for_version_at_birds(&fleet, &version_a, &all_names());
    let after_a = generations(&fleet);
    for (name, generation) in &after_a {
        assert_eq!(generation.hash, hash_a, "{name}: {after_a:?}");
        assert_eq!(generation.number, 2, "{name}: {after_a:?}");
        assert_eq!(
            check(fleet.applied_pushes(name), "reading an audit log"),
            1,
            "{name}"
        );
    }
    assert!(
        journal_tail(&state_a).contains("completed"),
        "{}",
        journal_tail(&state_a)
    );
    let status = check(
        fleet.rollout(
            &[
                "status",
                "--state-dir",
                state_a.to_str().unwrap_or_default(),
            ],
            WAIT,
        ),
        "rollout status",
    );
    assert_eq!(status.code, EXIT_COMPLETED, "{status}");
    assert!(status.stdout.contains("completed"), "{status}");
    step.done();

    // (b) ------------------------------------------------------------------------------------
    let step = Step::new(
        test_started,
        "b: the resolver incident, forced past the guards, fails its canary gate and rolls back",
    );
    let version_b = Version {
        resolver_binding: "dls",
        dls_topology: "location = \"tst01\"",
        ..version_a.clone()
    };
    let files_b = version_b.write(&fleet, "topology-b");
    // Watched from before the first attempt until the rollback is verified.
    let resolver = nets(&RESOLVER_PREFIXES);
    let outside_watcher = fleet.watch(&resolver, &CANARY);
    let canary_watcher = fleet.watch(&resolver, &OUTSIDE_CANARY);
    // Without intent: refused by the plan guards, nothing moves.
    let state_refused = check(fleet.state_dir("rollout-b-refused"), "a state directory");
    let mut arguments = vec![
        "start",
        "--fleet",
        &good_fleet_file,
        "--state-dir",
        state_refused.to_str().unwrap_or_default(),
        "--json",
    ];
    arguments.extend(files_b.iter().map(String::as_str));
    let refused = check(
        fleet.rollout(&arguments, ROLLOUT_TIMEOUT),
        "rollout b refused",
    );
    assert_eq!(refused.code, EXIT_REFUSED, "{refused}");
    assert!(
        refused.stderr.contains("G3") || refused.stdout.contains("G3"),
        "the refusal names G3: {refused}"
    );
    assert_eq!(
        generations(&fleet),
        after_a,
        "a refused change applies nothing"
    );

    // Forced: every guard overridden explicitly.
    let mut forced: Vec<String> = vec![
        "--intent".into(),
        "service:resolver".into(),
        "--intent".into(),
        "service:dls".into(),
        "--override".into(),
        "blast-radius".into(),
    ];
    for cidr in RESOLVER_PREFIXES.iter().chain([&DLS_PREFIX]) {
        forced.push("--override".into());
        forced.push(format!("global-withdrawal:{cidr}"));
    }
    let state_b = check(fleet.state_dir("rollout-b"), "a state directory");
    let mut arguments = vec![
        "start",
        "--fleet",
        &good_fleet_file,
        "--state-dir",
        state_b.to_str().unwrap_or_default(),
        "--json",
    ];
    arguments.extend(forced.iter().map(String::as_str));
    arguments.extend(files_b.iter().map(String::as_str));
    let output = check(fleet.rollout(&arguments, ROLLOUT_TIMEOUT), "rollout b");
    assert_eq!(
        output.code,
        EXIT_ROLLED_BACK,
        "{output}\n{}",
        fleet.report()
    );
    let events = rollout_events(&output.stdout);
    let hash_b = planned_hash(&events);
    let applied_at = event_time(&events, "location_applied", None);
    eprintln!(
        "[b] timing: first canary apply → gate failed {:.2}s, gate failed → rolled back (verified at every canary) {:.2}s",
        event_time(&events, "gate_failed", None) - applied_at,
        event_time(&events, "rolled_back", None) - event_time(&events, "gate_failed", None)
    );
    assert!(
        events.iter().any(|event| event_name(event) == "gate_failed"
            && event_field(event, "wave") == "canary"
            && event_field(event, "gate") == "resolver-vs-control"),
        "the canary-versus-control gate fails in the canary wave: {output}"
    );
    assert!(
        !events
            .iter()
            .any(|event| event_name(event) == "wave_passed"),
        "{output}"
    );
    let applied_b: BTreeSet<&str> = events
        .iter()
        .filter(|event| event_name(event) == "location_applied")
        .map(|event| event_field(event, "location"))
        .collect();
    assert_eq!(applied_b, CANARY.into_iter().collect(), "{output}");
    let rolled_back: BTreeSet<&str> = events
        .iter()
        .filter(|event| event_name(event) == "location_rolled_back")
        .map(|event| event_field(event, "location"))
        .collect();
    assert_eq!(rolled_back, CANARY.into_iter().collect(), "{output}");
    assert_eq!(
        events.last().map(event_name),
        Some("rolled_back"),
        "{output}"
    );
    // Every BIRD holds every resolver route again (the canary ones were withdrawn meanwhile).
    wait_for_version_at_birds(&fleet, &version_a, &all_names());
    // A late withdrawal anywhere would still show: keep watching a moment longer.
    std::thread::sleep(Duration::from_secs(1));
    let outside = outside_watcher.finish();
    let canary = canary_watcher.finish();
    eprintln!(
        "[b] outside the canary: {:?} samples over {:.1?}, worst gap {:.1?}, {} missing, {} errors; canary BIRDs: {} samples missing a resolver route",
        outside.samples,
        outside.duration,
        outside.worst_gap(),
        outside.missing.len(),
        outside.errors.len(),
        canary.missing.len()
    );
    assert!(
        outside.missing.is_empty(),
        "a BIRD outside the canary wave lost a resolver route: {:?}",
        outside.missing
    );
    assert!(outside.errors.is_empty(), "{:?}", outside.errors);
    assert!(
        outside.worst_gap() < Duration::from_secs(2),
        "the watch was not continuous: {:?}",
        outside.longest_gap
    );
    assert!(
        OUTSIDE_CANARY
            .iter()
            .all(|name| outside.samples.get(*name).copied().unwrap_or(0) >= 3),
        "{:?}",
        outside.samples
    );
    assert!(
        !canary.missing.is_empty(),
        "the canary BIRDs never lost the resolver routes: was the change applied at all?"
    );
    let after_b = generations(&fleet);
    for name in CANARY {
        let generation = &after_b[name];
        assert_eq!(generation.hash, hash_a, "{name} back on the old topology");
        assert_eq!(generation.number, 4, "{name}: applied (3), rolled back (4)");
        assert_ne!(generation.hash, hash_b);
    }
    for name in OUTSIDE_CANARY {
        assert_eq!(after_b[name], after_a[name], "{name} never changed");
    }
    step.done();

    // (c) ------------------------------------------------------------------------------------
    let step = Step::new(
        test_started,
        "c: the controller is SIGKILLed in the bake of wave 1 and resumed",
    );
    let version_c = Version {
        time_prefixes: 2,
        ..version_a.clone()
    };
    let files_c = version_c.write(&fleet, "topology-c");
    let state_c = check(fleet.state_dir("rollout-c"), "a state directory");
    let before_c = generations(&fleet);
    let pushes_before: BTreeMap<&str, usize> = all_names()
        .into_iter()
        .map(|name| {
            (
                name,
                check(fleet.applied_pushes(name), "reading an audit log"),
            )
        })
        .collect();
    let mut arguments = vec![
        "start",
        "--fleet",
        &good_fleet_file,
        "--state-dir",
        state_c.to_str().unwrap_or_default(),
        "--json",
    ];
    arguments.extend(files_c.iter().map(String::as_str));
    let mut run = check(fleet.spawn_rollout(&arguments), "starting rollout c");
    check(
        run.wait_event("the bake of wave 1", ROLLOUT_TIMEOUT, |event| {
            event_name(event) == "baking" && event_field(event, "wave") == "eu"
        }),
        "rollout c",
    );
    run.kill();
    let mut events = run.events();
    let hash_c = planned_hash(&events);
    let at_kill = generations(&fleet);
    for name in ["ams01", "sjc01", "fra01"] {
        assert_eq!(at_kill[name].hash, hash_c, "{name} applied before the kill");
    }
    for name in ["iad01", "sin01", "nrt01"] {
        assert_eq!(at_kill[name], before_c[name], "{name} not applied yet");
    }
    let resumed = check(
        fleet.rollout(
            &[
                "resume",
                "--state-dir",
                state_c.to_str().unwrap_or_default(),
                "--json",
            ],
            ROLLOUT_TIMEOUT,
        ),
        "rollout resume",
    );
    assert_eq!(
        resumed.code,
        EXIT_COMPLETED,
        "{resumed}\n{}",
        fleet.report()
    );
    events.extend(rollout_events(&resumed.stdout));
    assert_eq!(
        events.last().map(event_name),
        Some("completed"),
        "{resumed}"
    );
    wait_for_version_at_birds(&fleet, &version_c, &all_names());
    let after_c = generations(&fleet);
    for name in all_names() {
        assert_eq!(after_c[name].hash, hash_c, "{name}: {after_c:?}");
        assert_eq!(
            after_c[name].number,
            before_c[name].number + 1,
            "{name}: exactly one new generation: {before_c:?} → {after_c:?}"
        );
        assert_eq!(
            check(fleet.applied_pushes(name), "reading an audit log"),
            pushes_before[name] + 1,
            "{name}: exactly one applied push in the audit log"
        );
        let last_apply = check(fleet.audit(name), "reading an audit log")
            .into_iter()
            .rfind(|record| {
                event_field(record, "endpoint").contains("/v1/apply")
                    && event_field(record, "verdict") == "applied"
            })
            .and_then(|record| record.get("generation_after").and_then(Value::as_u64));
        assert_eq!(
            last_apply,
            Some(after_c[name].number),
            "{name}: the one apply made the running generation"
        );
    }
    let status = check(
        fleet.rollout(
            &[
                "status",
                "--state-dir",
                state_c.to_str().unwrap_or_default(),
            ],
            WAIT,
        ),
        "rollout status",
    );
    assert!(status.stdout.contains("completed"), "{status}");
    step.done();

    // (d) ------------------------------------------------------------------------------------
    let step = Step::new(
        test_started,
        "d: an erroring PromQL gate pauses the rollout; abort rolls it back",
    );
    let dead = alloc::RefusingEndpoint::new(topologyd_harness::peers::Transport::V4);
    let dead_plan = format!("{WAVES}{}", resolver_gate(&dead.address().to_string()));
    let dead_fleet_file = check(
        fleet.write_fleet_file("fleet-dead-prometheus.toml", &dead_plan),
        "writing the fleet file",
    );
    let dead_fleet_file = dead_fleet_file.display().to_string();
    let version_d = Version {
        time_prefixes: 3,
        ..version_a.clone()
    };
    let files_d = version_d.write(&fleet, "topology-d");
    let state_d = check(fleet.state_dir("rollout-d"), "a state directory");
    let state_d_text = state_d.to_str().unwrap_or_default().to_string();
    let mut arguments = vec![
        "start",
        "--fleet",
        &dead_fleet_file,
        "--state-dir",
        &state_d_text,
        "--json",
    ];
    arguments.extend(files_d.iter().map(String::as_str));
    let mut run = check(fleet.spawn_rollout(&arguments), "starting rollout d");
    check(
        run.wait_event("paused", ROLLOUT_TIMEOUT, |event| {
            event_name(event) == "paused"
        }),
        "rollout d",
    );
    let hash_d = planned_hash(&run.events());
    let paused_at = generations(&fleet);
    for name in CANARY {
        assert_eq!(
            paused_at[name].hash, hash_d,
            "{name}: the canary was applied"
        );
    }
    // A promote while paused promotes nothing: the rollout stays in the canary wave.
    let promote = check(
        fleet.rollout(&["promote", "--state-dir", &state_d_text], WAIT),
        "rollout promote",
    );
    assert_eq!(
        promote.code, EXIT_COMPLETED,
        "promote acknowledged: {promote}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let status = check(
        fleet.rollout(&["status", "--state-dir", &state_d_text], WAIT),
        "rollout status",
    );
    assert!(status.stdout.contains("paused"), "{status}");
    for name in OUTSIDE_CANARY {
        assert_eq!(
            check(fleet.generation(name), "a generation"),
            after_c[name],
            "{name}: a later wave was applied while paused"
        );
    }
    let abort = check(
        fleet.rollout(&["abort", "--state-dir", &state_d_text], WAIT),
        "rollout abort",
    );
    assert_eq!(abort.code, EXIT_COMPLETED, "abort acknowledged: {abort}");
    let output = check(run.wait(ROLLOUT_TIMEOUT), "rollout d after abort");
    assert_eq!(output.code, EXIT_ABORTED, "{output}\n{}", fleet.report());
    let events = run.events();
    assert!(
        !events
            .iter()
            .any(|event| event_name(event) == "wave_passed"),
        "{output}"
    );
    assert!(
        events.iter().any(|event| event_name(event) == "gate_result"
            && event_field(event, "gate") == "resolver-vs-control"
            && event_field(event, "result") == "inconclusive"),
        "{output}"
    );
    assert!(
        !events.iter().any(|event| event_name(event) == "gate_result"
            && event_field(event, "gate") == "resolver-vs-control"
            && event_field(event, "result") == "pass"),
        "no data is never a pass: {output}"
    );
    assert_eq!(events.last().map(event_name), Some("aborted"), "{output}");
    wait_for_version_at_birds(&fleet, &version_c, &all_names());
    let after_d = generations(&fleet);
    for name in all_names() {
        assert_eq!(
            after_d[name].hash, hash_c,
            "{name}: back on (or never left) c"
        );
    }
    for name in OUTSIDE_CANARY {
        assert_eq!(after_d[name], after_c[name], "{name} never changed");
    }
    step.done();

    let step = Step::new(test_started, "stop everything");
    drop(fleet);
    let leftovers = leftover_processes(&markers);
    assert!(leftovers.is_empty(), "left running: {leftovers:#?}");
    step.done();
    eprintln!("rollout end-to-end: {:.1?} in all", test_started.elapsed());
}
