//! End to end: bounded stalls and an abort that never waits (issue #18 item 5), with
//! `topoctl rollout` against three real `topologyd` instances (eu: ams01 tagged `canary`,
//! fra01; us: iad01), each peering with its own real BIRD 2 (harness: `src/fleet.rs`).
//!
//! The change adds the service `time` and its prefix everywhere; waves canary (ams01, bake 1 s)
//! then rest (fra01, iad01 in that order, bake 1 s) with a `daemons` gate. In every scenario
//! the test stops iad01's daemon with SIGSTOP (a process this test started; a guard sends
//! SIGCONT whatever happens), so its apply gets no answer:
//!
//! - (1) `on_stall = "pause"`, `stall_seconds = 4`, `--exit-on-pause`: the rollout pauses one
//!   stall bound after iad01's apply started, naming iad01 (`location_stalled`, `paused`), and
//!   the controller exits 8 at once; the journal holds iad01 `applying` without `applied` (in
//!   doubt). `topoctl rollout abort` (no controller running) rolls ams01 and fra01 back while
//!   iad01 is still stopped (their BIRDs hold the old routes again, their daemons the old hash),
//!   then reports iad01 (`rollback_pending`) and exits 1 (`rollback_incomplete`). After SIGCONT,
//!   `abort` again settles iad01 (it never applied) and ends `aborted` (exit 8).
//! - (2) `on_stall = "rollback"`, `stall_seconds = 3`: the stall rolls ams01 and fra01 back by
//!   itself (reason naming iad01), iad01 is reported, exit 1; SIGCONT and `abort` end it.
//! - (3) `abort` mid-wave, `stall_seconds = 12`: while iad01's apply is in flight, `topoctl
//!   rollout abort` through the running controller rolls ams01 and fra01 back at once — well
//!   within the stall bound, asserted at their BIRDs and daemons while iad01 is still stopped —
//!   and the controller exits 1 naming iad01 once its bound is over (`warning`s name it while
//!   it waits); SIGCONT and `abort` again end it `aborted`.
//! - (4) `--exit-on-pause` and `topoctl rollout pause` while iad01's apply is in flight
//!   (`stall_seconds = 30`): the controller exits 8 at once, its journal ends with `paused` and
//!   nothing is written to it afterwards; after SIGCONT, `abort` settles iad01 and ends it.
//! - (5) iad01 applied, then stopped during the rest wave's bake (its gate cannot pass), and
//!   `abort`: the rollbacks are issued at once in reverse order (iad01, fra01, ams01); ams01 and
//!   fra01 are back at once, iad01 is reported (`rollback_pending`) after its bound, exit 1;
//!   after SIGCONT, `abort` again settles its rollback (not done), rolls it back, `aborted`.
//!
//! After each scenario every daemon runs the old topology and every BIRD holds exactly the
//! resolver's routes. Afterwards no process the fleet started is left (checked through `/proc`).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use topologyd_harness::fleet::{
    RolloutRun, TestFleet, borrow_files, event_field, event_name, leftover_processes,
    rollout_events,
};
use topologyd_harness::topologyd::TopoctlOutput;

/// How long one controller run may take before the test gives up on it.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(30);

/// Exit codes of `topoctl rollout` (docs/rollouts.md).
const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_ERROR: Option<i32> = Some(1);
const EXIT_PAUSED_OR_ABORTED: Option<i32> = Some(8);

/// (name, region, tags) of every location.
const LOCATIONS: [(&str, &str, &[&str]); 3] = [
    ("ams01", "eu", &["canary"]),
    ("fra01", "eu", &[]),
    ("iad01", "us", &[]),
];
/// The locations that answer, in order of application.
const REACHABLE: [&str; 2] = ["ams01", "fra01"];
/// The location whose daemon the test stops.
const STOPPED: &str = "iad01";
const RESOLVER_PREFIXES: [&str; 2] = ["1.1.1.0/24", "2606:4700:4700::/48"];
const TIME_PREFIX: &str = "162.159.200.0/24";

fn plan(stall_seconds: u64, on_stall: &str) -> String {
    format!(
        r#"
[[wave]]
name = "canary"
select = "tag:canary"
bake_seconds = 2

[[wave]]
name = "rest"
bake_seconds = 1
stall_seconds = {stall_seconds}
on_stall = "{on_stall}"

[[gate]]
name = "daemons"
kind = "daemon"
interval_ms = 200
count = 1
failure_limit = 1
inconclusive_limit = 30
"#
    )
}

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn net(text: &str) -> IpNet {
    check(text.parse(), text)
}

fn all_names() -> Vec<&'static str> {
    LOCATIONS.iter().map(|(name, _, _)| *name).collect()
}

/// The topology files; with `time`, the `time` service and its prefix everywhere.
fn topology(time: bool) -> Vec<(&'static str, String)> {
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
    if time {
        services += "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10040\"]\n\n";
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

/// A daemon stopped with SIGSTOP; SIGCONT when dropped (also when the test panics).
struct Stopped<'a> {
    fleet: &'a TestFleet,
    name: &'a str,
    stopped_at: Instant,
}

impl<'a> Stopped<'a> {
    fn new(fleet: &'a TestFleet, name: &'a str) -> Stopped<'a> {
        let location = check(fleet.location(name), name);
        check(location.daemon.signal("STOP"), "SIGSTOP");
        eprintln!("[stall] {name} stopped (SIGSTOP)");
        Stopped {
            fleet,
            name,
            stopped_at: Instant::now(),
        }
    }
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if let Ok(location) = self.fleet.location(self.name) {
            let _ = location.daemon.signal("CONT");
        }
        eprintln!(
            "[stall] {} continued (SIGCONT) after {:.1?}",
            self.name,
            self.stopped_at.elapsed()
        );
    }
}

/// The events named `name`.
fn named<'a>(events: &'a [Value], name: &'a str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event_name(event) == name)
        .collect()
}

/// The `time` of the first event named `name` at `location` (any location when empty).
fn time_of(events: &[Value], name: &str, location: &str) -> f64 {
    named(events, name)
        .into_iter()
        .find(|event| location.is_empty() || event_field(event, "location") == location)
        .and_then(|event| event.get("time").and_then(Value::as_f64))
        .unwrap_or(f64::NAN)
}

/// The `locations` of the `rollback_pending` events.
fn pending_locations(events: &[Value]) -> Vec<String> {
    named(events, "rollback_pending")
        .iter()
        .flat_map(|event| {
            event["locations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|value| value.as_str().map(str::to_string))
        })
        .collect()
}

/// The BIRDs of `names` hold exactly the resolver's routes, and their daemons run `hash`.
fn assert_old_topology_at(fleet: &TestFleet, names: &[&str], hash: &str) {
    let expected = resolver_routes();
    check(
        fleet.wait_for_birds(names, "the old routes", WAIT, |_, held| *held == expected),
        "the BIRDs hold the old routes",
    );
    for name in names {
        let generation = check(fleet.generation(name), name);
        assert_eq!(generation.hash, hash, "{name} runs the old topology");
    }
}

fn run(fleet: &TestFleet, arguments: &[&str]) -> TopoctlOutput {
    check(fleet.rollout(arguments, ROLLOUT_TIMEOUT), "topoctl rollout")
}

fn start_arguments<'a>(
    fleet_file: &'a str,
    state_dir: &'a str,
    files: &'a [String],
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut arguments = vec![
        "start",
        "--fleet",
        fleet_file,
        "--state-dir",
        state_dir,
        "--json",
    ];
    arguments.extend(extra);
    arguments.extend(files.iter().map(String::as_str));
    arguments
}

/// The journal records (`record` field) of a state directory, as JSON values.
fn journal(state_dir: &Path) -> Vec<Value> {
    rollout_events(&std::fs::read_to_string(state_dir.join("journal.jsonl")).unwrap_or_default())
}

/// `abort` again once every daemon answers: ends `aborted`, and the fleet runs `hash` again.
fn abort_again_ends_consistent(fleet: &TestFleet, state_dir: &str, hash: &str) {
    let output = run(fleet, &["abort", "--state-dir", state_dir, "--json"]);
    assert_eq!(output.code, EXIT_PAUSED_OR_ABORTED, "{output}");
    let events = rollout_events(&output.stdout);
    assert_eq!(events.last().map(event_name), Some("aborted"), "{output}");
    assert_old_topology_at(fleet, &all_names(), hash);
}

struct Scenario<'a> {
    fleet: &'a TestFleet,
    files: &'a [String],
    base_hash: &'a str,
}

impl Scenario<'_> {
    fn fleet_file(&self, name: &str, stall_seconds: u64, on_stall: &str) -> String {
        check(
            self.fleet
                .write_fleet_file(name, &plan(stall_seconds, on_stall)),
            "writing the fleet file",
        )
        .display()
        .to_string()
    }

    fn state_dir(&self, name: &str) -> String {
        check(self.fleet.state_dir(name), "a state directory")
            .display()
            .to_string()
    }

    /// (1) pause on stall, `--exit-on-pause`, then abort with no controller running.
    fn pause_then_abort(&self) {
        let fleet_file = self.fleet_file("fleet-pause.toml", 4, "pause");
        let state_dir = self.state_dir("rollout-pause");
        let arguments = start_arguments(&fleet_file, &state_dir, self.files, &["--exit-on-pause"]);
        let (mut controller, stopped) = self.start_then_stop(&arguments);
        let output = check(controller.wait(ROLLOUT_TIMEOUT), "the controller");
        assert_eq!(output.code, EXIT_PAUSED_OR_ABORTED, "{output}");
        let events = rollout_events(&output.stdout);
        let stalled = named(&events, "location_stalled");
        assert_eq!(stalled.len(), 1, "{output}");
        assert_eq!(event_field(stalled[0], "location"), STOPPED, "{output}");
        assert_eq!(event_field(stalled[0], "wave"), "rest", "{output}");
        let paused = named(&events, "paused");
        assert_eq!(paused.len(), 1, "{output}");
        let reason = event_field(paused[0], "reason");
        assert!(
            reason.contains(STOPPED) && reason.contains("4 s"),
            "{reason}"
        );
        let waited =
            time_of(&events, "paused", "") - time_of(&events, "location_applying", STOPPED);
        eprintln!("[1] paused {waited:.2} s after {STOPPED}'s apply started (bound 4 s)");
        assert!(
            (3.8..20.0).contains(&waited),
            "paused after {waited} s: {output}"
        );
        let applied: Vec<&str> = named(&events, "location_applied")
            .iter()
            .map(|event| event_field(event, "location"))
            .collect();
        assert_eq!(applied, REACHABLE, "{output}");
        // In doubt in the journal: applying without applied.
        let records = journal(Path::new(&state_dir));
        let at_stopped = |kind: &str| {
            records.iter().any(|record| {
                event_field(record, "record") == kind && event_field(record, "location") == STOPPED
            })
        };
        assert!(
            at_stopped("applying") && !at_stopped("applied"),
            "{records:?}"
        );
        let status = run(self.fleet, &["status", "--state-dir", &state_dir, "--json"]);
        let status: Value = check(serde_json::from_str(&status.stdout), "status --json");
        assert_eq!(status["state"], "paused", "{status}");
        assert_eq!(
            status["locations"][STOPPED]["state"]["state"], "applying",
            "{status}"
        );
        assert_eq!(status["locations"][STOPPED]["stalled"], true, "{status}");

        // abort with no controller running, iad01 still stopped.
        let abort_started = Instant::now();
        let mut abort = check(
            self.fleet
                .spawn_rollout(&["abort", "--state-dir", &state_dir, "--json"]),
            "topoctl rollout abort",
        );
        self.wait_rolled_back(&mut abort, "(1)");
        eprintln!(
            "[1] ams01 and fra01 rolled back {:.2?} after abort, {STOPPED} still stopped",
            abort_started.elapsed()
        );
        assert_old_topology_at(self.fleet, &REACHABLE, self.base_hash);
        let output = check(abort.wait(ROLLOUT_TIMEOUT), "abort");
        assert_eq!(output.code, EXIT_ERROR, "{output}");
        let events = rollout_events(&output.stdout);
        assert_eq!(pending_locations(&events), [STOPPED], "{output}");
        // The last event other than warnings (the lease's give-back may warn about iad01).
        assert_eq!(
            events
                .iter()
                .rev()
                .map(event_name)
                .find(|name| *name != "warning"),
            Some("rollback_incomplete"),
            "{output}"
        );
        drop(stopped);
        abort_again_ends_consistent(self.fleet, &state_dir, self.base_hash);
    }

    /// Starts the controller and stops iad01 once the canary is applied (the controller's
    /// pre-flight needs every daemon).
    fn start_then_stop(&self, arguments: &[&str]) -> (RolloutRun, Stopped<'_>) {
        let mut controller = check(self.fleet.spawn_rollout(arguments), "topoctl rollout");
        check(
            controller.wait_event("the canary applied", ROLLOUT_TIMEOUT, |event| {
                event_name(event) == "location_applied"
            }),
            "the canary",
        );
        (controller, Stopped::new(self.fleet, STOPPED))
    }

    /// Waits for ams01 and fra01 to be rolled back (events of `run`).
    fn wait_rolled_back(&self, run: &mut RolloutRun, scenario: &str) {
        let mut rolled_back = BTreeSet::new();
        while rolled_back.len() < REACHABLE.len() {
            let event = check(
                run.wait_event("a location rolled back", WAIT, |event| {
                    event_name(event) == "location_rolled_back"
                }),
                scenario,
            );
            rolled_back.insert(event_field(&event, "location").to_string());
        }
        let expected: BTreeSet<String> = REACHABLE.iter().map(|name| name.to_string()).collect();
        assert_eq!(rolled_back, expected, "{scenario}");
    }

    /// (2) `on_stall = "rollback"`.
    fn rollback_on_stall(&self) {
        let fleet_file = self.fleet_file("fleet-rollback.toml", 3, "rollback");
        let state_dir = self.state_dir("rollout-rollback");
        let arguments = start_arguments(&fleet_file, &state_dir, self.files, &[]);
        let (mut controller, stopped) = self.start_then_stop(&arguments);
        let started = check(
            controller.wait_event("rollback_started", ROLLOUT_TIMEOUT, |event| {
                event_name(event) == "rollback_started"
            }),
            "(2)",
        );
        let reason = event_field(&started, "reason");
        assert!(reason.contains(STOPPED), "{started}");
        self.wait_rolled_back(&mut controller, "(2)");
        assert_old_topology_at(self.fleet, &REACHABLE, self.base_hash);
        let output = check(controller.wait(ROLLOUT_TIMEOUT), "the controller");
        assert_eq!(output.code, EXIT_ERROR, "{output}");
        let events = rollout_events(&output.stdout);
        assert_eq!(pending_locations(&events), [STOPPED], "{output}");
        assert!(named(&events, "paused").is_empty(), "{output}");
        drop(stopped);
        abort_again_ends_consistent(self.fleet, &state_dir, self.base_hash);
    }

    /// (4) `pause` by hand with `--exit-on-pause` while iad01's apply is in flight: the
    /// controller exits at once (not one stall bound later) and journals nothing afterwards.
    fn exit_on_pause_with_a_call_in_flight(&self) {
        let fleet_file = self.fleet_file("fleet-in-flight.toml", 30, "pause");
        let state_dir = self.state_dir("rollout-in-flight");
        let arguments = start_arguments(&fleet_file, &state_dir, self.files, &["--exit-on-pause"]);
        let (mut controller, stopped) = self.start_then_stop(&arguments);
        check(
            controller.wait_event("iad01 applying", ROLLOUT_TIMEOUT, |event| {
                event_name(event) == "location_applying"
                    && event_field(event, "location") == STOPPED
            }),
            "(4)",
        );
        let pause_started = Instant::now();
        let output = run(self.fleet, &["pause", "--state-dir", &state_dir]);
        assert_eq!(output.code, EXIT_COMPLETED, "{output}");
        let output = check(controller.wait(ROLLOUT_TIMEOUT), "the controller");
        let exited = pause_started.elapsed();
        eprintln!("[4] exited {exited:.2?} after `pause` with {STOPPED}'s apply in flight");
        assert_eq!(output.code, EXIT_PAUSED_OR_ABORTED, "{output}");
        assert!(
            exited < Duration::from_secs(10),
            "waited for the call: {exited:?}"
        );
        let records = journal(Path::new(&state_dir));
        assert_eq!(
            records.last().map(|record| event_field(record, "record")),
            Some("paused"),
            "{records:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(
            journal(Path::new(&state_dir)),
            records,
            "written after the exit"
        );
        drop(stopped);
        abort_again_ends_consistent(self.fleet, &state_dir, self.base_hash);
    }

    /// (5) `abort` while iad01, applied, has stopped answering (its bake's gate cannot pass):
    /// ams01 and fra01 are rolled back at once, iad01's rollback is reported after its bound,
    /// and `abort` again (SIGCONT) rolls it back.
    fn abort_with_an_applied_location_unreachable(&self) {
        let fleet_file = self.fleet_file("fleet-applied.toml", 4, "pause");
        let state_dir = self.state_dir("rollout-applied");
        let arguments = start_arguments(&fleet_file, &state_dir, self.files, &[]);
        let mut controller = check(self.fleet.spawn_rollout(&arguments), "topoctl rollout");
        check(
            controller.wait_event("iad01 applied", ROLLOUT_TIMEOUT, |event| {
                event_name(event) == "location_applied" && event_field(event, "location") == STOPPED
            }),
            "(5)",
        );
        let stopped = Stopped::new(self.fleet, STOPPED);
        let abort_started = Instant::now();
        let output = run(self.fleet, &["abort", "--state-dir", &state_dir]);
        assert_eq!(output.code, EXIT_COMPLETED, "{output}");
        self.wait_rolled_back(&mut controller, "(5)");
        eprintln!(
            "[5] ams01 and fra01 rolled back {:.2?} after abort, {STOPPED} (applied) stopped",
            abort_started.elapsed()
        );
        assert_old_topology_at(self.fleet, &REACHABLE, self.base_hash);
        let output = check(controller.wait(ROLLOUT_TIMEOUT), "the controller");
        assert_eq!(output.code, EXIT_ERROR, "{output}");
        let events = rollout_events(&output.stdout);
        assert_eq!(pending_locations(&events), [STOPPED], "{output}");
        let started = named(&events, "rollback_started");
        assert_eq!(started.len(), 1, "{output}");
        assert_eq!(
            started[0]["locations"],
            serde_json::json!([STOPPED, "fra01", "ams01"]),
            "in reverse order of application: {output}"
        );
        assert!(
            !named(&events, "location_rolled_back")
                .iter()
                .any(|event| event_field(event, "location") == STOPPED),
            "{output}"
        );
        drop(stopped);
        abort_again_ends_consistent(self.fleet, &state_dir, self.base_hash);
    }

    /// (3) `abort` through the running controller while iad01's apply is in flight.
    fn abort_mid_wave(&self) {
        let fleet_file = self.fleet_file("fleet-abort.toml", 12, "pause");
        let state_dir = self.state_dir("rollout-abort");
        let arguments = start_arguments(&fleet_file, &state_dir, self.files, &[]);
        let (mut controller, stopped) = self.start_then_stop(&arguments);
        check(
            controller.wait_event("iad01 applying", ROLLOUT_TIMEOUT, |event| {
                event_name(event) == "location_applying"
                    && event_field(event, "location") == STOPPED
            }),
            "(3)",
        );
        let apply_started = Instant::now();
        let output = run(self.fleet, &["abort", "--state-dir", &state_dir]);
        assert_eq!(output.code, EXIT_COMPLETED, "{output}");
        self.wait_rolled_back(&mut controller, "(3)");
        let prompt = apply_started.elapsed();
        eprintln!(
            "[3] ams01 and fra01 rolled back {prompt:.2?} after {STOPPED}'s apply started (abort included), {STOPPED} in flight"
        );
        assert!(prompt < Duration::from_secs(10), "not at once: {prompt:?}");
        assert_old_topology_at(self.fleet, &REACHABLE, self.base_hash);
        assert!(controller.pid().is_some());
        let records = journal(Path::new(&state_dir));
        assert!(
            !records
                .iter()
                .any(|record| event_field(record, "record") == "finished"),
            "the controller still waits for {STOPPED}: {records:?}"
        );
        let output = check(controller.wait(ROLLOUT_TIMEOUT), "the controller");
        assert_eq!(output.code, EXIT_ERROR, "{output}");
        let events = rollout_events(&output.stdout);
        assert_eq!(pending_locations(&events), [STOPPED], "{output}");
        // While it is retried, warnings name it.
        let warned = named(&events, "warning")
            .iter()
            .filter(|event| event_field(event, "message").starts_with(&format!("{STOPPED}: ")))
            .count();
        assert!(warned >= 1, "no warning names {STOPPED}: {output}");
        let waited = apply_started.elapsed();
        assert!(
            waited >= Duration::from_secs(11),
            "gave up early: {waited:?}"
        );
        drop(stopped);
        abort_again_ends_consistent(self.fleet, &state_dir, self.base_hash);
    }
}

#[test]
fn an_unreachable_location_pauses_or_rolls_back_after_its_stall_bound_and_abort_never_waits() {
    let base = topology(false);
    let fleet = check(
        TestFleet::start(&all_names(), &borrow_files(&base)),
        "starting the fleet",
    );
    let markers = fleet.process_markers();
    check(
        fleet.wait_for_birds(&all_names(), "the resolver", WAIT, |_, held| {
            *held == resolver_routes()
        }),
        "the fleet converges",
    );
    let base_hash = check(fleet.generation("ams01"), "ams01").hash;
    let files: Vec<String> = check(
        fleet.write_topology("topology-time", &borrow_files(&topology(true))),
        "writing a topology",
    )
    .iter()
    .map(|path| path.display().to_string())
    .collect();
    let scenario = Scenario {
        fleet: &fleet,
        files: &files,
        base_hash: &base_hash,
    };
    let steps: [(&str, &dyn Fn()); 5] = [
        ("1: pause on stall, exit on pause, abort", &|| {
            scenario.pause_then_abort()
        }),
        ("2: on_stall = rollback", &|| scenario.rollback_on_stall()),
        ("3: abort mid-wave", &|| scenario.abort_mid_wave()),
        ("4: exit on pause with a call in flight", &|| {
            scenario.exit_on_pause_with_a_call_in_flight()
        }),
        ("5: abort with an applied location unreachable", &|| {
            scenario.abort_with_an_applied_location_unreachable()
        }),
    ];
    for (name, step) in steps {
        let started = Instant::now();
        eprintln!("\n==== {name}");
        step();
        eprintln!("==== {name}: done in {:.1?}", started.elapsed());
    }
    drop(fleet);
    let left = leftover_processes(&markers);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
