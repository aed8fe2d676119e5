//! End to end: the etcd mode of `topoctl rollout` (issue #18 item 6: a controller that survives
//! its machine) against a real three-member etcd cluster on loopback (harness `src/etcd.rs`,
//! Debian `etcd-server`) and three real `topologyd` instances (ams01 tagged `canary`, fra01,
//! iad01), each with its own real BIRD 2 (harness `src/fleet/`). Waves: canary (bake 4 s), then
//! rest (bake 1 s), gated by the `daemons` gate. Each change adds one prefix to the `time`
//! service; every location starts at generation 1.
//!
//! `controller_crash_and_partition`:
//! - (a) A leader (`rollout start --etcd`) and a standby (`rollout resume --etcd --standby`);
//!   the leader is SIGKILLed in the canary's bake. The standby takes over within the lease TTL
//!   (5 s) plus a margin, completes (exit 0), and no location was applied twice (every daemon
//!   at generation 2, one applied push in each audit). The takeover time (kill → the standby's
//!   first journal write) is printed. While the standby leads, `rollout status --etcd` names
//!   it (its pid) as a living leader and `rollout promote --etcd` is acknowledged (journaled);
//!   at the end `status` says `completed`, no controller running, and a new `start` on the
//!   prefix is refused (it holds a journal) with nothing applied.
//! - (b) The next change: the leader is stopped (SIGSTOP) in the canary's bake; a standby takes
//!   over after the lease expires; the old leader is resumed (SIGCONT): it stops with exit 8
//!   and "leadership lost", journals nothing after its resumption (every journal record
//!   written by it precedes the standby's first), every daemon's fleet-lock lease names the
//!   rollout with the standby's higher token, a push carrying the old leader's claim is refused
//!   `stale_token`, and no location is applied twice (every daemon at generation 3).
//! - (e) The next change: the leader key is deleted under a live leader (as `etcdctl del`
//!   would; its lease is still alive, so only the journal fence can notice): its next journal
//!   write is refused, it exits 8 naming the refusal; a standby then completes the rollout,
//!   every daemon at generation 4.
//!
//! `etcd_member_and_quorum_loss` (the cluster speaks TLS only and asks for client
//! certificates: topoctl's `--etcd-ca`, `--etcd-cert`, `--etcd-key`):
//! - (c) One etcd member SIGKILLed in the canary's bake: the rollout completes (exit 0).
//! - (d) The next change, with that member still dead: a second member SIGKILLed in the
//!   canary's bake (quorum lost): the controller exits 8 with "leadership lost" within the TTL
//!   plus a margin, and nothing is applied after the quorum loss (fra01 and iad01 keep their
//!   generation; the canary keeps the one it was applied to).
//!
//! Afterwards no process the test started is left (checked through `/proc`).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use topologyd_harness::etcd::EtcdCluster;
use topologyd_harness::fleet::{
    Generation, RolloutRun, TestFleet, borrow_files, event_name, leftover_processes,
};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);
/// The controller's lease TTL (topoctl's `LEASE_TTL_SECONDS`) and a generous margin.
const TAKEOVER_BOUND: Duration = Duration::from_secs(15);

const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_PAUSED: Option<i32> = Some(8);

const LOCATIONS: [(&str, &str, &[&str]); 3] = [
    ("ams01", "eu", &["canary"]),
    ("fra01", "eu", &[]),
    ("iad01", "us", &[]),
];
const CANARY: &str = "ams01";
const REST: [&str; 2] = ["fra01", "iad01"];
const RESOLVER_PREFIX: &str = "1.1.1.0/24";
const TIME_PREFIXES: [&str; 3] = ["162.159.200.0/24", "162.159.201.0/24", "162.159.202.0/24"];

const PLAN: &str = r#"
[[wave]]
name = "canary"
select = "tag:canary"
bake_seconds = 4

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
"#;

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn all_names() -> Vec<&'static str> {
    LOCATIONS.iter().map(|(name, _, _)| *name).collect()
}

/// The topology files with the first `time_prefixes` prefixes of the `time` service.
fn topology(time_prefixes: usize) -> Vec<(&'static str, String)> {
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
    onboard(RESOLVER_PREFIX, "resolver");
    if time_prefixes > 0 {
        services += "[[service]]\nname = \"time\"\nlifecycle = \"active\"\ntopology = \"all\"\ncommunities = [\"13335:10040\"]\n\n";
        for cidr in &TIME_PREFIXES[..time_prefixes] {
            onboard(cidr, "time");
        }
    }
    vec![
        ("fleet.toml", locations),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

fn write_topology(fleet: &TestFleet, name: &str, time_prefixes: usize) -> Vec<String> {
    check(
        fleet.write_topology(name, &borrow_files(&topology(time_prefixes))),
        "writing a topology",
    )
    .iter()
    .map(|path| path.display().to_string())
    .collect()
}

fn generations(fleet: &TestFleet) -> BTreeMap<String, Generation> {
    check(fleet.generations(), "reading every generation")
}

/// `topoctl rollout ARGUMENTS… --etcd … --etcd-prefix PREFIX` arguments.
fn with_etcd(arguments: &[&str], etcd: &EtcdCluster, prefix: &str) -> Vec<String> {
    let mut all: Vec<String> = arguments
        .iter()
        .map(|argument| argument.to_string())
        .collect();
    all.extend(etcd.arguments());
    all.push("--etcd-prefix".into());
    all.push(prefix.into());
    all
}

fn strs(arguments: &[String]) -> Vec<&str> {
    arguments.iter().map(String::as_str).collect()
}

/// Starts `topoctl rollout start --etcd … --json FILES`.
fn spawn_start(
    fleet: &TestFleet,
    etcd: &EtcdCluster,
    prefix: &str,
    fleet_file: &str,
    files: &[String],
) -> RolloutRun {
    let mut arguments = with_etcd(&["start", "--fleet", fleet_file, "--json"], etcd, prefix);
    arguments.extend(files.iter().cloned());
    check(
        fleet.spawn_rollout(&strs(&arguments)),
        "starting topoctl rollout",
    )
}

/// Starts a standby: `topoctl rollout resume --etcd … --standby --json`.
fn spawn_standby(fleet: &TestFleet, etcd: &EtcdCluster, prefix: &str) -> RolloutRun {
    let arguments = with_etcd(&["resume", "--standby", "--json"], etcd, prefix);
    check(
        fleet.spawn_rollout(&strs(&arguments)),
        "starting a standby controller",
    )
}

fn wait_canary_baking(run: &mut RolloutRun) {
    check(
        run.wait_event("the canary's bake", WAIT, |event| {
            event_name(event) == "baking"
        }),
        "the leader reaching the canary's bake",
    );
}

/// Sends `signal` to a controller process (it leads its own process group).
fn signal(run: &RolloutRun, signal: &str) {
    let pid = run
        .pid()
        .unwrap_or_else(|| panic!("the controller is not running"));
    let status = check(
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status(),
        "running kill",
    );
    assert!(status.success(), "kill -{signal} {pid}");
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// The `time` of the first event of `run` that is a journal record (has a `time` and is not an
/// error), waiting for it.
fn first_record_time(run: &mut RolloutRun, what: &str) -> f64 {
    let event = check(
        run.wait_event(what, WAIT, |event| {
            event.get("time").is_some() && event_name(event) != "error"
        }),
        what,
    );
    event["time"].as_f64().unwrap_or(f64::NAN)
}

/// Asserts that every location runs generation `number` and has `pushes` applied pushes.
fn assert_applied_once(fleet: &TestFleet, number: u64, pushes: usize, context: &str) {
    let now = generations(fleet);
    let hash = now[CANARY].hash.clone();
    for name in all_names() {
        assert_eq!(
            now[name],
            Generation {
                number,
                hash: hash.clone()
            },
            "{context}: {name} applied exactly once: {now:?}"
        );
        assert_eq!(
            check(fleet.applied_pushes(name), "reading an audit log"),
            pushes,
            "{context}: {name}'s audit"
        );
    }
}

/// The fencing token in a controller's "leading etcd:PREFIX (token N…" line.
fn leading_token(stderr: &str) -> u64 {
    stderr
        .split("(token ")
        .nth(1)
        .and_then(|rest| {
            rest.split(|character: char| !character.is_ascii_digit())
                .next()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or_else(|| panic!("no `(token N` in: {stderr}"))
}

/// `topoctl status` of one daemon (its `GET /v1/status`).
fn daemon_status(fleet: &TestFleet, name: &str) -> Value {
    let topoctl = check(fleet.topoctl(name), "a topoctl client");
    let output = check(topoctl.run::<&str>("status", &[]), "topoctl status");
    assert_eq!(output.code, Some(0), "{name}: {output}");
    check(output.json(), "the daemon's status")
}

/// `topoctl rollout status --etcd … --json`.
fn etcd_status(fleet: &TestFleet, etcd: &EtcdCluster, prefix: &str) -> Value {
    let arguments = with_etcd(&["status", "--json"], etcd, prefix);
    let output = check(
        fleet.rollout(&strs(&arguments), WAIT),
        "topoctl rollout status --etcd",
    );
    assert_eq!(output.code, EXIT_COMPLETED, "{output}");
    check(output.json(), "the status document")
}

// ---------------------------------------------------------------------------------------------

#[test]
fn controller_crash_and_partition() {
    let etcd = check(EtcdCluster::start(3), "starting a 3-member etcd cluster");
    let base = topology(0);
    let fleet = check(
        TestFleet::start(&all_names(), &borrow_files(&base)),
        "starting the fleet",
    );
    let mut markers = fleet.process_markers();
    markers.push(etcd.directory().display().to_string());
    let fleet_file = check(
        fleet.write_fleet_file("fleet-etcd.toml", PLAN),
        "writing the fleet file",
    )
    .display()
    .to_string();
    let before = generations(&fleet);
    for (name, generation) in &before {
        assert_eq!(generation.number, 1, "{name}: {before:?}");
    }

    // (a) SIGKILL the leader in the canary's bake; the standby completes. -------------------
    let files = write_topology(&fleet, "topology-1", 1);
    let mut leader = spawn_start(&fleet, &etcd, "/rollouts/a", &fleet_file, &files);
    wait_canary_baking(&mut leader);
    let mut standby = spawn_standby(&fleet, &etcd, "/rollouts/a");
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = unix_now();
    leader.kill();
    let first_write = first_record_time(&mut standby, "the standby's first journal write");
    let takeover = first_write - killed_at;
    eprintln!("[a] takeover: leader SIGKILLed → the standby's first journal write {takeover:.2}s");
    assert!(
        takeover > 0.0 && takeover < TAKEOVER_BOUND.as_secs_f64(),
        "takeover took {takeover:.2}s"
    );
    // The new leader answers the controls through etcd, and `status` names it.
    let status = etcd_status(&fleet, &etcd, "/rollouts/a");
    assert_eq!(
        status["controller_running"],
        Value::Bool(true),
        "{status:#}"
    );
    let standby_pid = standby.pid().unwrap_or_default().to_string();
    assert!(
        status["leader"]
            .as_str()
            .is_some_and(|leader| leader.contains(&format!("/{standby_pid} "))),
        "{status:#}"
    );
    let arguments = with_etcd(&["promote"], &etcd, "/rollouts/a");
    let promoted = check(
        fleet.rollout(&strs(&arguments), WAIT),
        "topoctl rollout promote --etcd",
    );
    assert_eq!(promoted.code, EXIT_COMPLETED, "{promoted}");
    let output = check(standby.wait(ROLLOUT_TIMEOUT), "the standby's rollout");
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    assert!(
        output.stderr.contains("leading etcd:/rollouts/a"),
        "{output}"
    );
    let events = standby.events();
    assert_eq!(events.last().map(event_name), Some("completed"), "{output}");
    assert!(
        events
            .iter()
            .any(|event| event_name(event) == "command" && event["command"] == "promote"),
        "the promote was journaled: {output}"
    );
    assert_applied_once(&fleet, 2, 1, "(a)");
    let status = etcd_status(&fleet, &etcd, "/rollouts/a");
    assert_eq!(status["state"], "completed", "{status:#}");
    assert_eq!(
        status["controller_running"],
        Value::Bool(false),
        "{status:#}"
    );
    // The prefix holds that rollout's journal: a new `start` there is refused (before
    // anything is applied).
    let next_files = write_topology(&fleet, "topology-2", 2);
    let mut second = with_etcd(&["start", "--fleet", &fleet_file], &etcd, "/rollouts/a");
    second.extend(next_files.iter().cloned());
    let reused = check(
        fleet.rollout(&strs(&second), WAIT),
        "topoctl rollout start on a used prefix",
    );
    assert_eq!(reused.code, Some(1), "{reused}");
    assert!(
        reused.stderr.contains("already holds a rollout journal"),
        "{reused}"
    );
    assert_applied_once(&fleet, 2, 1, "(a) after the refused start");

    // (b) SIGSTOP the leader, let a standby take over, SIGCONT: the old leader stops. --------
    let files = write_topology(&fleet, "topology-2", 2);
    let mut leader = spawn_start(&fleet, &etcd, "/rollouts/b", &fleet_file, &files);
    wait_canary_baking(&mut leader);
    signal(&leader, "STOP");
    let stopped = Instant::now();
    let mut standby = spawn_standby(&fleet, &etcd, "/rollouts/b");
    let first_write = first_record_time(&mut standby, "the standby's first journal write");
    eprintln!(
        "[b] the standby wrote its first record {:.2}s after the leader was stopped",
        stopped.elapsed().as_secs_f64()
    );
    signal(&leader, "CONT");
    let old = check(leader.wait(WAIT), "the old leader after SIGCONT");
    eprintln!("[b] the old leader after SIGCONT: {}", old.stderr.trim());
    assert_eq!(old.code, EXIT_PAUSED, "{old}");
    assert!(old.stderr.contains("leadership lost"), "{old}");
    let late: Vec<Value> = leader
        .events()
        .into_iter()
        .filter(|event| {
            event_name(event) != "leadership_lost"
                && event["time"]
                    .as_f64()
                    .is_some_and(|time| time >= first_write)
        })
        .collect();
    assert!(
        late.is_empty(),
        "the old leader journaled after the takeover: {late:?}"
    );
    // Fencing at the daemons: the standby re-acquired every daemon's lease with its higher
    // token, so the old leader's claim is refused as stale.
    let rollout_id = leader
        .events()
        .iter()
        .find(|event| event_name(event) == "planned")
        .and_then(|event| event["rollout"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no planned event from the old leader"));
    let old_token = leading_token(&old.stderr);
    let new_token = leading_token(&standby.stderr());
    assert!(
        new_token > old_token,
        "tokens: old {old_token}, new {new_token}"
    );
    for name in all_names() {
        let status = daemon_status(&fleet, name);
        assert_eq!(
            status["lease"]["holder"],
            rollout_id.as_str(),
            "{name}: {status:#}"
        );
        assert_eq!(status["lease"]["token"], new_token, "{name}: {status:#}");
    }
    let topoctl = check(fleet.topoctl(CANARY), "a topoctl client");
    let mut push: Vec<String> = files.clone();
    push.extend([
        "--json".to_string(),
        "--lease".to_string(),
        format!("{rollout_id}:{old_token}"),
    ]);
    let stale = check(
        topoctl.run("push", &push),
        "a push with the old leader's claim",
    );
    assert_eq!(stale.code, Some(5), "a conflict: {stale}");
    let body = check(stale.error_json(), "the refusal");
    assert_eq!(body["error"]["kind"], "stale_token", "{stale}");
    let output = check(standby.wait(ROLLOUT_TIMEOUT), "the standby's rollout");
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    assert_applied_once(&fleet, 3, 2, "(b)");

    // (e) The leader key taken away under a live leader (its lease still alive): its next
    // journal write is refused by the fence, it stops; a standby completes. -----------------
    let files = write_topology(&fleet, "topology-3", 3);
    let mut leader = spawn_start(&fleet, &etcd, "/rollouts/e", &fleet_file, &files);
    wait_canary_baking(&mut leader);
    check(etcd.delete("/rollouts/e/leader"), "deleting the leader key");
    let old = check(leader.wait(WAIT), "the leader without its key");
    eprintln!("[e] the leader without its key: {}", old.stderr.trim());
    assert_eq!(old.code, EXIT_PAUSED, "{old}");
    assert!(
        old.stderr.contains("leadership lost") && old.stderr.contains("was refused"),
        "the fenced journal write was refused: {old}"
    );
    let mut standby = spawn_standby(&fleet, &etcd, "/rollouts/e");
    let output = check(standby.wait(ROLLOUT_TIMEOUT), "the standby's rollout");
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    assert_applied_once(&fleet, 4, 3, "(e)");

    drop(fleet);
    drop(etcd);
    let left = leftover_processes(&markers);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[test]
fn etcd_member_and_quorum_loss() {
    let mut etcd = check(
        EtcdCluster::start_tls(3),
        "starting a 3-member etcd cluster with TLS",
    );
    let base = topology(0);
    let fleet = check(
        TestFleet::start(&all_names(), &borrow_files(&base)),
        "starting the fleet",
    );
    let mut markers = fleet.process_markers();
    markers.push(etcd.directory().display().to_string());
    let fleet_file = check(
        fleet.write_fleet_file("fleet-etcd.toml", PLAN),
        "writing the fleet file",
    )
    .display()
    .to_string();

    // (c) One member killed in the canary's bake: no effect. ---------------------------------
    let files = write_topology(&fleet, "topology-1", 1);
    let mut leader = spawn_start(&fleet, &etcd, "/rollouts/c", &fleet_file, &files);
    wait_canary_baking(&mut leader);
    check(etcd.kill(0), "killing etcd member 0");
    let output = check(leader.wait(ROLLOUT_TIMEOUT), "the rollout");
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    assert_applied_once(&fleet, 2, 1, "(c)");

    // (d) A second member killed (quorum lost): the controller stops, nothing more applied. --
    let files = write_topology(&fleet, "topology-2", 2);
    let mut leader = spawn_start(&fleet, &etcd, "/rollouts/d", &fleet_file, &files);
    wait_canary_baking(&mut leader);
    let at_quorum_loss = generations(&fleet);
    assert_eq!(at_quorum_loss[CANARY].number, 3, "{at_quorum_loss:?}");
    let killed = Instant::now();
    check(etcd.kill(1), "killing etcd member 1");
    let output = check(leader.wait(WAIT), "the rollout after the quorum loss");
    let stopped_after = killed.elapsed();
    eprintln!("[d] the controller stopped {stopped_after:.2?} after the quorum loss");
    assert_eq!(output.code, EXIT_PAUSED, "{output}");
    assert!(output.stderr.contains("leadership lost"), "{output}");
    assert!(stopped_after < TAKEOVER_BOUND, "{stopped_after:?}");
    // Give a late apply every chance to show.
    std::thread::sleep(Duration::from_secs(2));
    let after = generations(&fleet);
    assert_eq!(
        after, at_quorum_loss,
        "nothing applied after the quorum loss"
    );
    for name in REST {
        assert_eq!(after[name].number, 2, "{name}: {after:?}");
    }

    drop(fleet);
    drop(etcd);
    let left = leftover_processes(&markers);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
