//! End to end: the fleet lock — one rollout at a time — with `topoctl rollout` against three
//! real `topologyd` instances (ams01 the canary, fra01, iad01), each peering with its own real
//! BIRD 2, scraped by a real Prometheus (harness: `src/fleet/`). One fleet, the scenarios in
//! order:
//!
//! - (a) Two rollouts of two different changes, with different state directories, started at
//!   the same moment: exactly one proceeds and completes; the other is refused before applying
//!   anything (exit 1, naming the holder and the time left). Every daemon's audit log shows one
//!   applied push and every daemon runs generation 2 with the winner's hash: no location ever
//!   ran a third topology. Once the first has finished (and given the lease back), the second
//!   starts again and completes.
//! - (b) A controller SIGKILLed in its canary bake keeps the lease (short ttl, 9 s): a second
//!   rollout is refused naming it, and `topoctl lease show` names it at every daemon, while
//!   `topoctl rollout resume` of the first takes the lease again (same holder) and completes;
//!   then the second proceeds.
//! - (c) A lease held by hand at one daemon (`topoctl lease acquire`, 4 s) refuses a rollout
//!   (nothing applied anywhere, the leases it took elsewhere given back) until it expires by
//!   itself; then the rollout proceeds. `topoctl rollout status` names the holder.
//!
//! - (d) A controller whose lease is taken from it mid-bake (broken and re-taken by another
//!   holder at a location not yet changed) stops acting at once: its next renewal is refused,
//!   it journals a pause naming the lost lock and exits 8 without applying anything more;
//!   once the other holder lets go, `rollout abort` takes the lease again and rolls the canary
//!   back.
//!
//! Afterwards no process the fleet started is left (checked through `/proc`).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use topologyd_harness::fleet::{
    Generation, TestFleet, event_field, event_name, leftover_processes, rollout_events,
};
use topologyd_harness::topologyd::{TopoctlOutput, binaries};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_ERROR: Option<i32> = Some(1);

/// (name, tags) of every location with a daemon.
const LOCATIONS: [(&str, &[&str]); 3] = [("ams01", &["canary"]), ("fra01", &[]), ("iad01", &[])];
const RESOLVER_PREFIX: &str = "1.1.1.0/24";
/// Version `k` onboards the first `k` of these (each version a different topology, and each
/// later one adds to every earlier one: nothing is withdrawn).
const TIME_PREFIXES: [&str; 8] = [
    "162.159.200.0/24",
    "162.159.201.0/24",
    "162.159.202.0/24",
    "162.159.203.0/24",
    "162.159.204.0/24",
    "162.159.205.0/24",
    "162.159.206.0/24",
    "162.159.207.0/24",
];

/// Canary alone, then the rest; a short lease (renewed every 3 s) so that a dead controller's
/// lease runs out within the test.
const PLAN: &str = r#"
[[wave]]
name = "canary"
select = 'tag:canary'
bake_seconds = 4

[[wave]]
name = "rest"
share = 1.0
bake_seconds = 1

[[gate]]
name = "daemons"
kind = "daemon"
interval_ms = 300
count = 2
failure_limit = 1
inconclusive_limit = 30
"#;
const LEASE_SECONDS: u64 = 9;

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn names() -> Vec<&'static str> {
    LOCATIONS.iter().map(|(name, _)| *name).collect()
}

/// The topology files of version `time_prefixes`.
fn version(time_prefixes: usize) -> Vec<(&'static str, String)> {
    let mut fleet = String::new();
    for (name, tags) in LOCATIONS {
        let tags: Vec<String> = tags.iter().map(|tag| format!("\"{tag}\"")).collect();
        fleet += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"eu\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [{}]\nstate = \"live\"\n\n",
            name[..3].to_uppercase(),
            tags.join(", ")
        );
    }
    let mut services = String::from(
        "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10000\"]\n\n",
    );
    if time_prefixes > 0 {
        services += "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10040\"]\n\n";
    }
    let mut prefixes = String::new();
    let mut onboard = |cidr: &str, service: &str| {
        prefixes += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"{service}\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n"
        );
    };
    onboard(RESOLVER_PREFIX, "resolver");
    for cidr in &TIME_PREFIXES[..time_prefixes] {
        onboard(cidr, "time");
    }
    vec![
        ("fleet.toml", fleet),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

struct Lock {
    fleet: TestFleet,
    fleet_file: String,
    test_started: Instant,
}

impl Lock {
    fn step(&self, name: &str) {
        eprintln!("\n==== [+{:.1?}] {name}", self.test_started.elapsed());
    }

    /// Writes version `k` and answers its file paths.
    fn files(&self, k: usize) -> Vec<String> {
        let files = version(k);
        let borrowed: Vec<(&str, &str)> = files
            .iter()
            .map(|(file, text)| (*file, text.as_str()))
            .collect();
        check(
            self.fleet
                .write_topology(&format!("version-{k}"), &borrowed),
            "writing a topology",
        )
        .iter()
        .map(|path| path.display().to_string())
        .collect()
    }

    /// `rollout start` arguments of version `k` into state directory `state`.
    fn start_arguments(&self, k: usize, state: &str) -> Vec<String> {
        let state_dir = check(self.fleet.state_dir(state), "a state directory");
        let mut arguments: Vec<String> = vec![
            "start".into(),
            "--fleet".into(),
            self.fleet_file.clone(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--json".into(),
        ];
        arguments.extend(self.files(k));
        arguments
    }

    fn rollout(&self, arguments: &[String]) -> TopoctlOutput {
        let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
        check(
            self.fleet.rollout(&borrowed, ROLLOUT_TIMEOUT),
            "topoctl rollout",
        )
    }

    fn generations(&self) -> BTreeMap<String, Generation> {
        check(self.fleet.generations(), "reading every generation")
    }

    fn applied_pushes(&self) -> BTreeMap<String, usize> {
        names()
            .into_iter()
            .map(|name| {
                (
                    name.to_owned(),
                    check(self.fleet.applied_pushes(name), "an audit log"),
                )
            })
            .collect()
    }

    /// `topoctl lease ACTION` at `location`.
    fn lease(&self, location: &str, action: &str, arguments: &[&str]) -> TopoctlOutput {
        let client = check(self.fleet.topoctl(location), "a topoctl client");
        let binary = check(binaries(), "the binaries").join("topoctl");
        let output = check(
            Command::new(binary)
                .args(["lease", action, "--json", "--daemon"])
                .arg(client.daemon.to_string())
                .arg("--cert")
                .arg(&client.identity.certificate)
                .arg("--key")
                .arg(&client.identity.private_key)
                .arg("--ca")
                .arg(&client.ca)
                .args(arguments)
                .env_remove("TOPOCTL_DAEMON")
                .env_remove("TOPOCTL_SERVER_NAME")
                .stdin(Stdio::null())
                .output(),
            "running topoctl lease",
        );
        TopoctlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The lease `location`'s daemon holds (`null`: none).
    fn lease_at(&self, location: &str) -> Value {
        let output = self.lease(location, "show", &[]);
        assert_eq!(output.code, EXIT_COMPLETED, "{output}");
        check(output.json(), "lease show")["lease"].clone()
    }

    /// Waits until no daemon holds a lease.
    fn wait_no_lease(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let held: Vec<(&str, Value)> = names()
                .into_iter()
                .map(|name| (name, self.lease_at(name)))
                .filter(|(_, lease)| !lease.is_null())
                .collect();
            if held.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "leases still held: {held:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every location runs `hash` at generation `number`.
    fn assert_everywhere(&self, hash: &str, number: u64) {
        let generations = self.generations();
        for (name, generation) in &generations {
            assert_eq!(
                (generation.hash.as_str(), generation.number),
                (hash, number),
                "{name}: {generations:?}\n{}",
                self.fleet.report()
            );
        }
    }
}

fn rollout_id(events: &[Value]) -> String {
    // The pre-flight's events come before the rollout has an id.
    events
        .iter()
        .map(|event| event_field(event, "rollout"))
        .find(|rollout| !rollout.is_empty())
        .unwrap_or_default()
        .to_owned()
}

fn planned_hash(events: &[Value]) -> String {
    events
        .iter()
        .find(|event| event_name(event) == "planned")
        .map(|event| event_field(event, "new_hash").to_owned())
        .unwrap_or_else(|| panic!("no `planned` event in {events:?}"))
}

/// A refusal by the fleet lock: exit 1, nothing applied, the holder named with its time left.
fn assert_lock_refused(output: &TopoctlOutput, holder: &str) {
    assert_eq!(output.code, EXIT_ERROR, "{output}");
    assert!(
        output.stderr.contains("the fleet lock is not free"),
        "{output}"
    );
    assert!(
        output.stderr.contains(&format!("held by `{holder}`")) && output.stderr.contains("s left"),
        "the refusal names {holder} and its time left: {output}"
    );
    assert!(
        !rollout_events(&output.stdout)
            .iter()
            .any(|event| event_name(event) == "location_applied"),
        "{output}"
    );
}

#[test]
fn one_rollout_at_a_time_across_the_fleet() {
    let test_started = Instant::now();
    let base = version(0);
    let borrowed: Vec<(&str, &str)> = base
        .iter()
        .map(|(file, text)| (*file, text.as_str()))
        .collect();
    let fleet = check(TestFleet::start(&names(), &borrowed), "starting the fleet");
    let markers = fleet.process_markers();
    let fleet_file = check(fleet.write_fleet_file("fleet.toml", PLAN), "a fleet file");
    // The lease ttl goes into the harness's [defaults] table.
    let text = check(
        std::fs::read_to_string(&fleet_file),
        "reading the fleet file",
    );
    let text = text.replacen(
        "[defaults]\n",
        &format!("[defaults]\nlease_seconds = {LEASE_SECONDS}\n"),
        1,
    );
    check(std::fs::write(&fleet_file, text), "writing the fleet file");
    let lock = Lock {
        fleet,
        fleet_file: fleet_file.display().to_string(),
        test_started,
    };
    let base_generations = lock.generations();
    assert!(
        base_generations
            .values()
            .all(|generation| generation.number == 1)
    );

    // (a) ------------------------------------------------------------------------------------
    lock.step("a: two rollouts started at the same moment");
    let first_arguments = lock.start_arguments(1, "rollout-a1");
    let second_arguments = lock.start_arguments(2, "rollout-a2");
    let spawn = |arguments: &[String]| {
        let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
        check(lock.fleet.spawn_rollout(&borrowed), "starting a rollout")
    };
    let started_at = Instant::now();
    let mut first = spawn(&first_arguments);
    let mut second = spawn(&second_arguments);
    let first_output = check(first.wait(ROLLOUT_TIMEOUT), "rollout a1");
    let second_output = check(second.wait(ROLLOUT_TIMEOUT), "rollout a2");
    eprintln!(
        "[a] both rollouts ended {:.1?} after they were started",
        started_at.elapsed()
    );
    let (winner, loser, loser_arguments) = match (first_output.code, second_output.code) {
        (EXIT_COMPLETED, EXIT_ERROR) => (first_output, second_output, second_arguments),
        (EXIT_ERROR, EXIT_COMPLETED) => (second_output, first_output, first_arguments),
        _ => panic!(
            "exactly one of two rollouts started at once may proceed:\n{first_output}\n---\n{second_output}\n{}",
            lock.fleet.report()
        ),
    };
    let winner_events = rollout_events(&winner.stdout);
    let winner_hash = planned_hash(&winner_events);
    assert_lock_refused(&loser, &rollout_id(&winner_events));
    // No third topology anywhere: one applied push per daemon, generation 2, the winner's hash.
    lock.assert_everywhere(&winner_hash, 2);
    assert!(
        lock.applied_pushes().values().all(|count| *count == 1),
        "{:?}",
        lock.applied_pushes()
    );
    lock.wait_no_lease(Duration::from_secs(5));
    // The second starts again, from its own state directory, with its change on top of the
    // first's (version 3 holds both).
    let mut again_arguments = loser_arguments[..6].to_vec();
    again_arguments.extend(lock.files(3));
    let again = lock.rollout(&again_arguments);
    assert_eq!(
        again.code,
        EXIT_COMPLETED,
        "{again}\n{}",
        lock.fleet.report()
    );
    lock.assert_everywhere(&planned_hash(&rollout_events(&again.stdout)), 3);

    // (b) ------------------------------------------------------------------------------------
    lock.step("b: a SIGKILLed controller keeps the lock; its resume completes");
    let killed_arguments = lock.start_arguments(4, "rollout-b1");
    let state_b1 = killed_arguments[4].clone();
    let mut killed = spawn(&killed_arguments);
    check(
        killed.wait_event("the canary bake", ROLLOUT_TIMEOUT, |event| {
            event_name(event) == "baking" && event_field(event, "wave") == "canary"
        }),
        "rollout b1",
    );
    killed.kill();
    let killed_events = killed.events();
    let killed_id = rollout_id(&killed_events);
    let killed_hash = planned_hash(&killed_events);
    let pushes_at_kill = lock.applied_pushes();
    for name in names() {
        let lease = lock.lease_at(name);
        assert_eq!(lease["holder"], killed_id.as_str(), "{name}: {lease}");
    }
    let other_arguments = lock.start_arguments(5, "rollout-b2");
    let refused = lock.rollout(&other_arguments);
    assert_lock_refused(&refused, &killed_id);
    assert_eq!(
        lock.applied_pushes(),
        pushes_at_kill,
        "the refused rollout applied something"
    );
    let status = lock.rollout(&["status".into(), "--state-dir".into(), state_b1.clone()]);
    assert!(
        status
            .stdout
            .contains(&format!("fleet lock: holder `{killed_id}`")),
        "{status}"
    );
    let resumed = lock.rollout(&[
        "resume".into(),
        "--state-dir".into(),
        state_b1,
        "--json".into(),
    ]);
    assert_eq!(
        resumed.code,
        EXIT_COMPLETED,
        "{resumed}\n{}",
        lock.fleet.report()
    );
    lock.assert_everywhere(&killed_hash, 4);
    lock.wait_no_lease(Duration::from_secs(5));
    let proceeded = lock.rollout(&other_arguments);
    assert_eq!(proceeded.code, EXIT_COMPLETED, "{proceeded}");
    lock.assert_everywhere(&planned_hash(&rollout_events(&proceeded.stdout)), 5);

    // (c) ------------------------------------------------------------------------------------
    lock.step("c: a lease held by hand refuses rollouts until it expires");
    let held = lock.lease(
        "fra01",
        "acquire",
        &["--holder", "maintenance", "--ttl", "4"],
    );
    assert_eq!(held.code, EXIT_COMPLETED, "{held}");
    let pushes_before = lock.applied_pushes();
    let arguments = lock.start_arguments(6, "rollout-c");
    let refused = lock.rollout(&arguments);
    assert_lock_refused(&refused, "maintenance");
    assert_eq!(lock.applied_pushes(), pushes_before);
    // The leases it took at ams01 (and maybe iad01) were given back.
    assert!(lock.lease_at("ams01").is_null(), "ams01 kept a lease");
    lock.wait_no_lease(Duration::from_secs(10));
    let proceeded = lock.rollout(&arguments);
    assert_eq!(proceeded.code, EXIT_COMPLETED, "{proceeded}");
    lock.assert_everywhere(&planned_hash(&rollout_events(&proceeded.stdout)), 6);

    // (d) ------------------------------------------------------------------------------------
    lock.step("d: a controller that loses the lock stops at once");
    let before = lock.generations();
    let arguments = lock.start_arguments(7, "rollout-d");
    let state_d = arguments[4].clone();
    let mut run = spawn(&arguments);
    check(
        run.wait_event("the canary bake", ROLLOUT_TIMEOUT, |event| {
            event_name(event) == "baking" && event_field(event, "wave") == "canary"
        }),
        "rollout d",
    );
    let holder = rollout_id(&run.events());
    let pushes_at_bake = lock.applied_pushes();
    // Another holder takes iad01's lease (retried: the keeper may renew in between).
    let mut taken = false;
    for _ in 0..5 {
        assert_eq!(
            lock.lease("iad01", "break", &["--yes"]).code,
            EXIT_COMPLETED
        );
        let intruder = lock.lease("iad01", "acquire", &["--holder", "intruder", "--ttl", "60"]);
        if intruder.code == EXIT_COMPLETED {
            taken = true;
            break;
        }
    }
    assert!(taken, "could not take iad01's lease from {holder}");
    let taken_at = Instant::now();
    let stopped = check(run.wait(ROLLOUT_TIMEOUT), "rollout d");
    eprintln!(
        "[d] the controller stopped {:.1?} after its lease was taken (renewal every {} s)",
        taken_at.elapsed(),
        LEASE_SECONDS / 3
    );
    assert_eq!(stopped.code, Some(8), "{stopped}\n{}", lock.fleet.report());
    let paused = rollout_events(&stopped.stdout)
        .into_iter()
        .rfind(|event| event_name(event) == "paused")
        .map(|event| event_field(&event, "reason").to_owned())
        .unwrap_or_default();
    assert!(paused.contains("the fleet lock was lost"), "{stopped}");
    assert!(
        paused.contains("intruder"),
        "the reason names the new holder: {paused}"
    );
    assert_eq!(
        lock.applied_pushes(),
        pushes_at_bake,
        "applied after losing the lock"
    );
    let stopped_at = lock.generations();
    for name in ["fra01", "iad01"] {
        assert_eq!(stopped_at[name], before[name], "{name} changed");
    }
    assert_ne!(
        stopped_at["ams01"], before["ams01"],
        "the canary was applied"
    );
    let released = lock.lease(
        "iad01",
        "release",
        &["--holder", "intruder", "--token", "1"],
    );
    assert_eq!(released.code, EXIT_COMPLETED, "{released}");
    let aborted = lock.rollout(&[
        "abort".into(),
        "--state-dir".into(),
        state_d,
        "--json".into(),
    ]);
    assert_eq!(aborted.code, Some(8), "{aborted}\n{}", lock.fleet.report());
    assert_eq!(
        rollout_events(&aborted.stdout).last().map(event_name),
        Some("aborted"),
        "{aborted}"
    );
    let after = lock.generations();
    assert_eq!(after["ams01"].hash, before["ams01"].hash, "{after:?}");
    assert_eq!(
        after["ams01"].number,
        before["ams01"].number + 2,
        "{after:?}"
    );
    lock.wait_no_lease(Duration::from_secs(5));

    eprintln!("==== [+{:.1?}] done", lock.test_started.elapsed());
    drop(lock);
    let left = leftover_processes(&markers);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
