//! End to end: the control API over mTLS, driven by the real `topoctl` binary against the real
//! `topologyd` peering with a real BIRD 2, all on loopback, with certificates generated per test.
//!
//! - `status` reports generation 1 and the peer Established;
//! - `push --dry-run` prints the plan, exits 2 (changes allowed) and changes nothing;
//! - `push` applies a change and BIRD receives exactly the difference (one new route; the
//!   unchanged routes are not sent again: BIRD's per-route import counter grows by one);
//! - a push refused by guard G2 exits 3, changes nothing at BIRD and moves
//!   `topologyd_guard_refusals_total`; an invalid push exits 4 with `file:line:column` inside the
//!   pushed bundle; a stale `--expect-generation` is a conflict and applies nothing;
//! - `rollback 1` restores generation 1's routes at BIRD (the new route withdrawn);
//! - every mutation request is an `outcome` line in the audit log, with the certificate's
//!   identity, and each that took effect has an `intent` line (same id, plan hash) before it;
//! - the reader role may read but not push; an identity with no role gets 403; a certificate
//!   from an untrusted CA is refused in the TLS handshake (and audited under the name it claims).

use topologyd_harness::daemon_fixture;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use daemon_fixture::{
    AMS01_IPV4_ROUTES, AMS01_IPV6_ROUTES, AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, WAIT,
    check, prefix, start_bird, topology, wait_for_routes,
};
use serde_json::Value;
use topologyd_harness::peers::{BgpPeer, BirdPeer};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, TopoctlOutput, Topologyd, wait_until,
    write_files,
};

const ADMIN: &str = "sre-admin";
const READER: &str = "sre-reader";

/// topoctl's exit codes (README): 0 nothing to do, 2 changes made or allowed, 3 refused by a
/// guard, 4 invalid topology, 5 conflict, 6 unreachable, TLS refused or no role.
const EXIT_OK: Option<i32> = Some(0);
const EXIT_CHANGES_ALLOWED: Option<i32> = Some(2);
const EXIT_CHANGES_MADE: Option<i32> = Some(2);
const EXIT_REFUSED: Option<i32> = Some(3);
const EXIT_INVALID: Option<i32> = Some(4);
const EXIT_CONFLICT: Option<i32> = Some(5);
const EXIT_UNREACHABLE: Option<i32> = Some(6);

/// A resolver route added to the prefixes file: announced at every location.
const ADDED_PREFIX: &str = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "resolver"
"#;

struct Setup {
    bird: BirdPeer,
    topologyd: Topologyd,
    pki: ControlPki,
    admin: Topoctl,
    audit_log: PathBuf,
    bundles: tempfile::TempDir,
}

fn start() -> Setup {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[(ADMIN, "admin"), (READER, "reader")],
    );
    let audit_log = control.audit_log.clone();
    daemon.control = Some(control);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);
    let admin = client(&topologyd, &pki, ADMIN);
    let bundles = check(tempfile::tempdir(), "a directory for pushed bundles");
    Setup {
        bird,
        topologyd,
        pki,
        admin,
        audit_log,
        bundles,
    }
}

fn control_address(topologyd: &Topologyd) -> SocketAddr {
    topologyd
        .config
        .control
        .as_ref()
        .map(|control| control.listen)
        .unwrap_or_else(|| panic!("no [control] configured"))
}

fn client(topologyd: &Topologyd, pki: &ControlPki, identity: &str) -> Topoctl {
    let certificate = check(pki.client(identity), "issuing a client certificate");
    Topoctl::new(control_address(topologyd), &pki.ca, certificate)
}

impl Setup {
    /// Writes a bundle (fleet, services, the given prefixes file) into its own directory.
    fn bundle(&self, name: &str, services: &str, prefixes: &str) -> Vec<PathBuf> {
        check(
            write_files(
                &self.bundles.path().join(name),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", services),
                    ("prefixes.toml", prefixes),
                ],
            ),
            "writing a bundle",
        )
    }

    fn topoctl(&self, subcommand: &str, arguments: &[String]) -> TopoctlOutput {
        check(self.admin.run(subcommand, arguments), "running topoctl")
    }

    fn status(&self) -> Value {
        let output = self.topoctl("status", &[]);
        assert_eq!(output.code, EXIT_OK, "{output}");
        check(output.json(), "topoctl status")
    }

    /// The daemon's log line of the last push compiled and planned.
    fn last_compile_line(&self) -> String {
        let log = self.topologyd.log();
        log.lines()
            .rev()
            .find(|line| line.contains("push compiled and planned"))
            .unwrap_or_default()
            .to_string()
    }

    fn generation(&self) -> u64 {
        self.status()["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no generation in the status"))
    }

    /// Waits until the peer reports the running generation written out (End-of-RIB included).
    fn wait_synced(&self, generation: u64) {
        check(
            wait_until("the peer to hold the generation", WAIT, || {
                let status = self.status();
                let synced = status["peers"][0]["generation_synced"].as_u64();
                if synced == Some(generation) {
                    Ok(())
                } else {
                    Err(format!("{status}"))
                }
            }),
            "topologyd",
        );
    }

    fn guard_refusals(&self) -> f64 {
        let (_, metrics) = check(self.topologyd.admin_get("/metrics"), "GET /metrics");
        metrics
            .lines()
            .filter(|line| line.starts_with("topologyd_guard_refusals_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn audit_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .map(|line| check(serde_json::from_str(line), &format!("audit line {line}")))
            .collect()
    }
}

fn paths(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|path| path.display().to_string())
        .collect()
}

fn with(mut arguments: Vec<String>, extra: &[&str]) -> Vec<String> {
    arguments.extend(extra.iter().map(|argument| (*argument).to_string()));
    arguments
}

/// BIRD's import counters stay at `expected` for a second (what must *not* arrive).
fn assert_counters_stay(bird: &BirdPeer, expected: topologyd_harness::peers::ImportCounters) {
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let counters = check(bird.counters(), "BIRD counters");
        assert_eq!(counters, expected, "BIRD received something unexpected");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn push_plan_guard_refusal_conflict_rollback_and_audit_through_topoctl() {
    let mut setup = start();
    let status = setup.status();
    assert_eq!(status["generation"], 1, "{status}");
    check(
        wait_until("the peer Established in the status", WAIT, || {
            let status = setup.status();
            let peer = &status["peers"][0];
            if peer["name"] == "edge-bird"
                && peer["state"] == "Established"
                && peer["established"] == true
            {
                Ok(())
            } else {
                Err(format!("{status}"))
            }
        }),
        "status",
    );
    let before = check(setup.bird.routes(), "BIRD routes");
    let counters_start = check(setup.bird.counters(), "BIRD counters");

    // Dry run: the plan, exit 2, nothing applied.
    let added = setup.bundle("added", SERVICES, &format!("{PREFIXES}{ADDED_PREFIX}"));
    let dry_run = setup.topoctl("push", &with(paths(&added), &["--dry-run"]));
    assert_eq!(dry_run.code, EXIT_CHANGES_ALLOWED, "{dry_run}");
    assert!(
        dry_run.stdout.contains("192.0.2.0/24"),
        "the plan names the new route: {dry_run}"
    );
    assert_eq!(setup.generation(), 1, "a dry run changed the generation");
    assert_eq!(
        check(setup.bird.routes(), "BIRD routes"),
        before,
        "a dry run changed BIRD's routes"
    );

    // Apply: BIRD gets exactly the new route.
    let applied = setup.topoctl("push", &with(paths(&added), &["--expect-generation", "1"]));
    assert_eq!(applied.code, EXIT_CHANGES_MADE, "{applied}");
    assert!(
        applied
            .stdout
            .contains("applied: generation 2 is running (was 1)"),
        "{applied}"
    );
    let routes = wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    let new_route = &routes[&prefix("192.0.2.0/24")];
    assert_eq!(new_route.as_path, vec![LOCAL_ASN]);
    assert_eq!(new_route.communities, vec![(13335, 10000)]);
    assert_eq!(setup.generation(), 2);
    setup.wait_synced(2);
    let counters_applied = check(setup.bird.counters(), "BIRD counters");
    assert_eq!(
        counters_applied.updates,
        counters_start.updates + 1,
        "BIRD counts received routes: only the one new route may have been sent"
    );
    assert_eq!(counters_applied.withdrawals, counters_start.withdrawals);
    assert_counters_stay(&setup.bird, counters_applied);

    // G2: the resolver leaves ams01 while its prefixes stay bound, without intent.
    let refusals_before = setup.guard_refusals();
    let moved_services = SERVICES.replace(
        "topology = \"all\"",
        "topology = \"location = \\\"fra01\\\"\"",
    );
    let withdrawn = setup.bundle(
        "withdrawn",
        &moved_services,
        &format!("{PREFIXES}{ADDED_PREFIX}"),
    );
    let refused = setup.topoctl("push", &paths(&withdrawn));
    assert_eq!(refused.code, EXIT_REFUSED, "{refused}");
    assert!(
        format!("{}{}", refused.stdout, refused.stderr).contains("G2"),
        "the refusal names the guard: {refused}"
    );
    assert!(
        setup.guard_refusals() > refusals_before,
        "topologyd_guard_refusals_total did not move"
    );
    assert_eq!(
        setup.generation(),
        2,
        "a refused push changed the generation"
    );
    assert_counters_stay(&setup.bird, counters_applied);
    // Compiled incrementally: prefixes.toml (prefixes and bindings only, unchanged) and
    // fleet.toml (locations only, unchanged at its place) were taken from the running
    // generation; services.toml, changed, was parsed.
    let compiled = setup.last_compile_line();
    assert!(
        compiled.contains("files_reused=2 ") && compiled.contains("files_parsed=1 "),
        "{compiled}"
    );

    // Invalid: an unknown service and a syntax error, each located inside the pushed bundle.
    let unknown_service = format!(
        "{PREFIXES}{}",
        ADDED_PREFIX.replace("service = \"resolver\"", "service = \"nonexistent\"")
    );
    let line = unknown_service
        .lines()
        .position(|text| text.contains("nonexistent"))
        .map_or(0, |index| index + 1);
    let invalid = setup.bundle("unknown-service", SERVICES, &unknown_service);
    let answer = setup.topoctl("push", &with(paths(&invalid), &["--full-bundle"]));
    assert_eq!(answer.code, EXIT_INVALID, "{answer}");
    let location = format!("prefixes.toml:{line}:11");
    assert!(
        answer.stderr.contains(&location),
        "expected {location} in: {answer}"
    );
    assert!(answer.stderr.contains("nonexistent"), "{answer}");

    let broken = setup.bundle(
        "syntax",
        "[[service]\nname = \"resolver\"\n",
        &format!("{PREFIXES}{ADDED_PREFIX}"),
    );
    let answer = setup.topoctl("push", &paths(&broken));
    assert_eq!(answer.code, EXIT_INVALID, "{answer}");
    assert!(
        answer.stderr.contains("services.toml:1:"),
        "expected services.toml:1:COLUMN in: {answer}"
    );
    assert_eq!(
        setup.generation(),
        2,
        "an invalid push changed the generation"
    );

    // Compare-and-swap: planned against generation 1, but 2 runs.
    let stale = setup.bundle("stale", SERVICES, PREFIXES);
    let conflict = setup.topoctl(
        "push",
        &with(paths(&stale), &["--expect-generation", "1", "--json"]),
    );
    assert_eq!(conflict.code, EXIT_CONFLICT, "{conflict}");
    assert!(
        conflict.stdout.is_empty(),
        "errors go to stderr: {conflict}"
    );
    assert_eq!(
        check(conflict.error_json(), "conflict")["error"]["kind"],
        "conflict",
        "{conflict}"
    );
    assert_eq!(
        setup.generation(),
        2,
        "a conflicting push changed the generation"
    );
    assert_counters_stay(&setup.bird, counters_applied);

    // Rollback to generation 1: the new route is withdrawn, the others stay.
    let rollback = setup.topoctl("rollback", &["1".to_string()]);
    assert_eq!(rollback.code, EXIT_CHANGES_MADE, "{rollback}");
    let routes = wait_for_routes(&setup.bird, AMS01_ROUTES);
    assert_eq!(
        routes.into_values().collect::<Vec<_>>(),
        before,
        "rollback restores generation 1's routes"
    );
    assert_eq!(setup.generation(), 3);
    setup.wait_synced(3);
    let counters_rolled_back = check(setup.bird.counters(), "BIRD counters");
    assert_eq!(
        counters_rolled_back.withdrawals,
        counters_applied.withdrawals + 1,
        "only the new route is withdrawn"
    );
    assert_eq!(
        counters_rolled_back.updates, counters_applied.updates,
        "a rollback re-sent unchanged routes"
    );

    // One outcome line per mutation request, with who did it; the two that took effect have
    // an intent line (written before the change) under the same id just before their outcome.
    let all = setup.audit_records();
    let phases: Vec<&str> = all
        .iter()
        .map(|record| record["phase"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        phases,
        [
            "intent", "outcome", "outcome", "outcome", "outcome", "outcome", "intent", "outcome"
        ],
        "{all:#?}"
    );
    for intent in [0, 6] {
        assert_eq!(all[intent]["id"], all[intent + 1]["id"], "{all:#?}");
        assert_eq!(all[intent]["plan_hash"], all[intent + 1]["plan_hash"]);
        assert_eq!(all[intent]["intended_verdict"], "changes_allowed");
    }
    let records: Vec<Value> = all
        .into_iter()
        .filter(|record| record["phase"] == "outcome")
        .collect();
    let verdicts: Vec<&str> = records
        .iter()
        .map(|record| record["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        verdicts,
        [
            "applied", "refused", "invalid", "invalid", "conflict", "applied"
        ],
        "{records:#?}"
    );
    assert!(
        records.iter().all(|record| record["who"] == ADMIN),
        "{records:#?}"
    );
    assert_eq!(records[0]["generation_before"], 1);
    assert_eq!(records[0]["generation_after"], 2);
    assert!(records[0]["plan_hash"].is_string(), "{records:#?}");
    // Pushes send only the files that differ from the running generation's: the refused push
    // changed services.toml alone, and the daemon planned the whole bundle it stands for
    // (its digest over all three files). `--full-bundle` sends every file. A delta carries the
    // compare-and-swap on the generation like a whole bundle: the stale push is a conflict.
    let services_only = &records[1]["request"];
    assert_eq!(
        services_only["delta"]["base_generation"], 2,
        "{services_only}"
    );
    assert_eq!(
        services_only["delta"]["sent_sources"],
        serde_json::json!(["services.toml"]),
        "{services_only}"
    );
    assert_eq!(
        services_only["delta"]["sent_bytes"],
        moved_services.len(),
        "{services_only}"
    );
    let withdrawn_files: Vec<topologyd_api::SourceFile> = withdrawn
        .iter()
        .map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            let text = check(std::fs::read_to_string(path), "reading a pushed file");
            topologyd_api::SourceFile::new(name, text)
        })
        .collect();
    assert_eq!(
        services_only["sources_sha256"],
        topologyd_api::delta::bundle_sha256(&topologyd_api::delta::digests(&withdrawn_files)),
        "{services_only}"
    );
    assert!(records[2]["request"]["delta"].is_null(), "{records:#?}");
    assert_eq!(
        records[4]["request"]["delta"]["base_generation"], 2,
        "{records:#?}"
    );
    // The running generation's sources, which it no longer holds in memory, come back whole
    // from the state directory.
    let view = check(
        setup
            .topoctl("topology get", &["--json".to_string()])
            .json(),
        "topoctl topology get",
    );
    assert_eq!(view["generation"], 3, "{view}");
    let texts: Vec<(&str, &str)> = view["bundle"]["sources"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|file| {
                    (
                        file["name"].as_str().unwrap_or(""),
                        file["text"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    // Bootstrapped from files: named by their paths.
    assert_eq!(texts.len(), topology().len(), "{view}");
    for ((name, text), (file, expected)) in texts.iter().zip(topology()) {
        assert!(name.ends_with(&format!("/{file}")), "{name}");
        assert_eq!(*text, expected, "the running generation's {file}");
    }
    assert_eq!(records[5]["endpoint"], "POST /v1/rollback");
    assert_eq!(records[5]["generation_after"], 3);
    check(setup.topologyd.check_running(), "topologyd");
    drop(setup.pki);
}

#[test]
fn roles_and_client_certificates_are_enforced() {
    let setup = start();
    let routes_before = check(setup.bird.routes(), "BIRD routes");
    let added = setup.bundle("added", SERVICES, &format!("{PREFIXES}{ADDED_PREFIX}"));

    // A reader reads and plans, but may not push.
    let reader = client(&setup.topologyd, &setup.pki, READER);
    let status = check(
        reader.run("status", &Vec::<String>::new()),
        "topoctl status",
    );
    assert_eq!(status.code, EXIT_OK, "{status}");
    let status = check(status.json(), "status");
    assert_eq!(status["generation"], 1);
    assert_eq!(status["routes"]["ipv4"], AMS01_IPV4_ROUTES, "{status}");
    assert_eq!(status["routes"]["ipv6"], AMS01_IPV6_ROUTES, "{status}");
    let routes = check(
        reader.run("routes", &["--peer".to_string(), "edge-bird".to_string()]),
        "topoctl routes",
    );
    assert_eq!(routes.code, EXIT_OK, "{routes}");
    let routes = check(routes.json(), "routes");
    let announced = routes["peers"]["edge-bird"]["routes"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(announced, AMS01_ROUTES, "{routes}");
    let plan = check(
        reader.run("push", &with(paths(&added), &["--dry-run"])),
        "topoctl push --dry-run",
    );
    assert_eq!(plan.code, EXIT_CHANGES_ALLOWED, "{plan}");
    let push = check(
        reader.run("push", &with(paths(&added), &["--json"])),
        "topoctl push",
    );
    assert_eq!(push.code, EXIT_UNREACHABLE, "{push}");
    assert_eq!(
        check(push.error_json(), "push")["error"]["kind"],
        "forbidden",
        "{push}"
    );

    // A certificate from the trusted CA whose identity has no role.
    let stranger = client(&setup.topologyd, &setup.pki, "mallory");
    let status = check(
        stranger.run("status", &Vec::<String>::new()),
        "topoctl status",
    );
    assert_eq!(status.code, EXIT_UNREACHABLE, "{status}");
    assert!(status.stderr.contains("forbidden"), "{status}");

    // The admin's name, but signed by a CA the daemon does not trust: refused in the handshake.
    let impostor = Topoctl::new(
        control_address(&setup.topologyd),
        &setup.pki.ca,
        check(
            setup.pki.foreign_client(ADMIN),
            "issuing a foreign certificate",
        ),
    );
    let push = check(impostor.run("push", &paths(&added)), "topoctl push");
    assert_eq!(push.code, EXIT_UNREACHABLE, "{push}");
    assert!(
        push.stderr.contains("UnknownCA") || push.stderr.to_lowercase().contains("certificate"),
        "{push}"
    );

    assert_eq!(
        setup.generation(),
        1,
        "a refused client changed the generation"
    );
    assert_eq!(check(setup.bird.routes(), "BIRD routes"), routes_before);
    let records = setup.audit_records();
    assert_eq!(
        records.len(),
        2,
        "the reader's push and the impostor's handshake: {records:#?}"
    );
    assert_eq!(records[0]["who"], READER);
    assert_eq!(records[0]["role"], "reader");
    assert_eq!(records[0]["verdict"], "forbidden");
    assert_eq!(records[0]["status"], 403);
    // The impostor got far enough to name someone: recorded, as a claim.
    assert_eq!(records[1]["who"], ADMIN);
    assert_eq!(records[1]["role"], Value::Null);
    assert_eq!(records[1]["endpoint"], "TLS handshake");
    assert_eq!(records[1]["verdict"], "handshake_refused");
}

/// The incident of issue 10: a reader-role client sent `/v1/plan` with a selector nested
/// thousands of parentheses deep and the daemon died of a stack overflow. Now the push is
/// invalid (exit 4) with `file:line:column` inside the selector, and the daemon keeps running
/// generation 1 and its session.
#[test]
fn a_reader_cannot_crash_the_daemon_with_a_deeply_nested_selector() {
    let setup = start();
    let reader = client(&setup.topologyd, &setup.pki, READER);
    let routes_before = check(setup.bird.routes(), "BIRD routes");
    for (name, open) in [("depth", 1000), ("length", 3000)] {
        let services = format!(
            "{SERVICES}\n[[service]]\nname = \"deep\"\ntopology = \"{}all{}\"\n",
            "(".repeat(open),
            ")".repeat(open)
        );
        let line = services.lines().count();
        let bundle = setup.bundle(name, &services, PREFIXES);
        let plan = check(
            reader.run("push", &with(paths(&bundle), &["--dry-run"])),
            "topoctl push --dry-run",
        );
        assert_eq!(plan.code, EXIT_INVALID, "{plan}");
        let expected = if open == 1000 {
            format!(
                "services.toml:{line}:77: error: invalid topology selector of service `deep`: \
                 selector nests deeper than 64 levels"
            )
        } else {
            format!(
                "services.toml:{line}:4109: error: invalid topology selector of service `deep`: \
                 selector is 6003 bytes long, more than the limit of 4096 bytes"
            )
        };
        assert!(plan.stderr.contains(&expected), "{plan}");
    }
    assert_eq!(setup.generation(), 1);
    assert_eq!(check(setup.bird.routes(), "BIRD routes"), routes_before);
}

/// `count` onboarded prefixes that are not advertised, each bound to the resolver: a file
/// large enough that its push compiles for a while, changing no route.
fn quiet_prefixes(count: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(count * 140);
    for index in 0..count {
        let (high, low) = (index / 256, index % 256);
        let _ = write!(
            text,
            "[[prefix]]\ncidr = \"10.{high}.{low}.0/24\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = false\n\n[[binding]]\ncidr = \"10.{high}.{low}.0/24\"\nservice = \"resolver\"\n\n"
        );
    }
    text
}

/// The CPU time `pid` has used, in clock ticks (`/proc/PID/stat`: utime + stime).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) start after its closing `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |index: usize| -> u64 {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command.
    field(11) + field(12)
}

/// Two pushes at once: a large one (slow to compile) and, while it compiles, a small one that
/// commits first. The large one, planned against a generation that is no longer running, is
/// planned again against the new one with the files it was pushed with — its compile job was
/// lent the bundle, not given a copy, and handed it back — and applies on top of it.
#[test]
fn a_push_planned_again_after_another_committed_keeps_its_files() {
    let setup = start();
    let before = setup.generation();
    let added = format!("{PREFIXES}{ADDED_PREFIX}");
    let small = setup.bundle("small", SERVICES, &added);
    let mut large = setup.bundle("large", SERVICES, &added);
    large.extend(check(
        write_files(
            &setup.bundles.path().join("large-extra"),
            &[("quiet.toml", quiet_prefixes(60_000).as_str())],
        ),
        "writing the large file",
    ));
    let compiles = |log: &str| log.matches("push compiled and planned").count();
    let started = |log: &str| log.matches("compile started").count();
    let compiled_before = compiles(&setup.topologyd.log());
    let started_before = started(&setup.topologyd.log());
    let pid = setup.topologyd.pid().unwrap_or(0);
    let large_push = {
        let admin = client(&setup.topologyd, &setup.pki, ADMIN);
        let arguments = paths(&large);
        std::thread::spawn(move || admin.run("push", &arguments))
    };
    // The small push goes once the large one's compile has started and the daemon has
    // worked on it for a fifth of a second (of a compile that takes seconds in a debug build).
    // Its request may take longer to read and digest than that: counting the daemon's CPU
    // from the push alone let the small push overtake it on a slow machine.
    check(
        wait_until("the large push's compile to start", WAIT, || {
            let log = setup.topologyd.log();
            if started(&log) > started_before {
                Ok(())
            } else {
                Err(setup.topologyd.log_tail())
            }
        }),
        "topologyd",
    );
    let ticks_started = cpu_ticks(pid);
    check(
        wait_until("the daemon to work on the large compile", WAIT, || {
            if cpu_ticks(pid) >= ticks_started + 20 {
                Ok(())
            } else {
                Err(String::from("idle"))
            }
        }),
        "topologyd",
    );
    let small_output = setup.topoctl("push", &paths(&small));
    assert_eq!(small_output.code, EXIT_CHANGES_MADE, "{small_output}");
    let large_output = match large_push.join() {
        Ok(output) => check(output, "running topoctl"),
        Err(_) => panic!("the large push's thread panicked"),
    };
    assert!(
        matches!(large_output.code, EXIT_CHANGES_MADE | EXIT_OK),
        "the large push, planned again, was not applied: {large_output}"
    );
    assert_eq!(setup.generation(), before + 2, "both pushes applied");
    // Three compiles: the small push's, and the large one's twice (planned against the
    // generation before the small one, then again against it).
    let log = setup.topologyd.log();
    assert_eq!(
        compiles(&log) - compiled_before,
        3,
        "the large push was not planned again:\n{log}"
    );
}

/// `topoctl push` remembers the digests of settled files by their stamps and reads them only
/// when they travel: pushes of settled files, one rewritten in place at the same size, one
/// replaced by a rename, each plan what the files hold as they are — never a remembered text.
#[test]
fn pushes_of_remembered_files_send_what_the_files_hold_now() {
    let setup = start();
    let added = format!("{PREFIXES}{ADDED_PREFIX}");
    let files = setup.bundle("remembered", SERVICES, &added);
    // Settled: last written more than 3 s before the push.
    std::thread::sleep(Duration::from_millis(3_200));
    let first = setup.topoctl("push", &paths(&files));
    assert_eq!(first.code, EXIT_CHANGES_MADE, "{first}");
    let cache = setup.admin.cache_directory().join("push-digests.json");
    let remembered = check(std::fs::read_to_string(&cache), "reading the digest cache");
    for file in &files {
        let text = check(std::fs::read_to_string(file), "reading a pushed file");
        assert!(
            remembered.contains(&topologyd_api::delta::file_sha256(&text)),
            "{} is not remembered: {remembered}",
            file.display()
        );
    }
    // Nothing changed: nothing to do.
    let same = setup.topoctl("push", &paths(&files));
    assert_eq!(same.code, EXIT_OK, "{same}");

    // Rewritten in place at the same length, with the added prefix's `advertise` as given.
    let rewrite = |advertise: &str| {
        let text = format!(
            "{PREFIXES}{}",
            ADDED_PREFIX.replace("advertise = true", advertise)
        );
        assert_eq!(text.len(), added.len());
        check(std::fs::write(&files[2], &text), "rewriting prefixes.toml");
    };
    rewrite("advertise = fals");
    let refused = setup.topoctl("push", &paths(&files));
    assert_eq!(
        refused.code, EXIT_INVALID,
        "the rewrite was not seen: {refused}"
    );
    // No longer advertised.
    rewrite("advertise =false");
    let generation = setup.generation();
    let applied = setup.topoctl(
        "push",
        &with(
            paths(&files),
            &[
                "--intent",
                "service:resolver",
                "--override",
                "global-withdrawal:192.0.2.0/24",
            ],
        ),
    );
    assert_eq!(applied.code, EXIT_CHANGES_MADE, "{applied}");
    assert_eq!(setup.generation(), generation + 1);
    let records = setup.audit_records();
    let last = records.last().cloned().unwrap_or_default();
    assert_eq!(
        last["request"]["delta"]["sent_sources"],
        serde_json::json!(["prefixes.toml"]),
        "{last}"
    );

    // Replaced by a rename with the text running before: the route comes back.
    std::thread::sleep(Duration::from_millis(3_200));
    assert_eq!(setup.topoctl("push", &paths(&files)).code, EXIT_OK);
    let replacement = setup.bundles.path().join("prefixes.toml.new");
    check(
        std::fs::write(&replacement, &added),
        "writing the replacement",
    );
    check(std::fs::rename(&replacement, &files[2]), "renaming it over");
    let restored = setup.topoctl("push", &paths(&files));
    assert_eq!(restored.code, EXIT_CHANGES_MADE, "{restored}");
    assert_eq!(setup.generation(), generation + 2);
}

/// Waits until BIRD holds the route of `prefix` with `communities`.
fn wait_for_routes_where(setup: &Setup, prefix: &ipnet::IpNet, communities: &[(u16, u16)]) {
    check(
        wait_until(
            &format!("BIRD to hold {prefix} with communities {communities:?}"),
            WAIT,
            || {
                let routes = setup.bird.routes().map_err(|error| error.to_string())?;
                match routes.iter().find(|route| route.prefix == *prefix) {
                    Some(route) if route.communities == communities => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        ),
        "the changed route",
    );
}

/// A large file of bindings (over the 256 KiB from which the daemon reads the running
/// generation's texts back from its state directory) changed in one table: the daemon reads
/// that table alone against the running text (`files_read_in_part=1` in its log), and BIRD gets
/// the route with the new service's attributes. `topoctl` sends that file as edits of the text
/// it pushed before; a kept text found damaged is not used (the file travels whole).
#[test]
fn a_large_file_of_bindings_changed_in_one_table_is_read_in_part() {
    let setup = start();
    let block = prefix("198.18.0.0/15");
    let prefixes = format!(
        "{PREFIXES}\n[[prefix]]\ncidr = \"{block}\"\norigin_asn = 13335\nowner = \"bench\"\nadvertise = true\n"
    );
    // The default binding, then 40 more-specific ones, each after a block of comments.
    let bindings = |default_service: &str| {
        let mut text =
            format!("[[binding]]\ncidr = \"{block}\"\nservice = \"{default_service}\"\n\n");
        for index in 0..40 {
            text += &"# padding: a file of bindings as large as a fleet's\n".repeat(140);
            text +=
                &format!("[[binding]]\ncidr = \"198.18.{index}.0/24\"\nservice = \"resolver\"\n\n");
        }
        assert!(text.len() > 256 << 10, "{} bytes", text.len());
        text
    };
    let write = |default_service: &str| {
        check(
            write_files(
                &setup.bundles.path().join("large"),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", SERVICES),
                    ("prefixes.toml", &prefixes),
                    ("bindings.toml", &bindings(default_service)),
                ],
            ),
            "writing the bundle",
        )
    };
    let intents = ["--intent", "service:cdn", "--intent", "service:resolver"];
    let first = setup.topoctl("push", &with(paths(&write("cdn")), &intents));
    assert_eq!(first.code, EXIT_CHANGES_MADE, "{first}");
    let routes = wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    assert_eq!(routes[&block].communities, vec![(13335, 20000), (65000, 1)]);

    let second = setup.topoctl("push", &with(paths(&write("resolver")), &intents));
    assert_eq!(second.code, EXIT_CHANGES_MADE, "{second}");
    wait_for_routes_where(&setup, &block, &[(13335, 10000)]);
    let compiled = setup.last_compile_line();
    assert!(
        compiled.contains("files_read_in_part=1 ") && compiled.contains("items_patched=true "),
        "{compiled}"
    );
    // `topoctl` kept the text it pushed first: the changed file travelled as edits of it.
    let records = setup.audit_records();
    let delta = &records.last().cloned().unwrap_or_default()["request"]["delta"];
    assert_eq!(delta["sent_sources"], serde_json::json!([]), "{delta}");
    assert_eq!(
        delta["patched_sources"][0]["name"],
        serde_json::json!("bindings.toml"),
        "{delta}"
    );
    assert_eq!(
        delta["patched_sources"][0]["base_sha256"],
        serde_json::json!(topologyd_api::delta::file_sha256(&bindings("cdn"))),
        "{delta}"
    );
    assert_eq!(delta["patched_sources"][0]["edits"], serde_json::json!(1));

    // The kept text damaged: the file travels whole, and the change lands all the same.
    let kept = setup
        .admin
        .cache_directory()
        .join("texts")
        .join(topologyd_api::delta::file_sha256(&bindings("resolver")));
    check(std::fs::write(&kept, "damaged"), "damaging the kept text");
    let third = setup.topoctl("push", &with(paths(&write("cdn")), &intents));
    assert_eq!(third.code, EXIT_CHANGES_MADE, "{third}");
    let records = setup.audit_records();
    let delta = &records.last().cloned().unwrap_or_default()["request"]["delta"];
    assert_eq!(
        delta["sent_sources"],
        serde_json::json!(["bindings.toml"]),
        "{delta}"
    );
    assert_eq!(delta["patched_sources"], serde_json::json!([]), "{delta}");
    wait_for_routes_where(&setup, &block, &[(13335, 20000), (65000, 1)]);
}

/// A delta whose edits make another text than the digest it lists is refused with 409
/// `base_patch` (the daemon checks such a text beside its compile, not before it), for a plan
/// and an apply alike, and also when the digest listed is the running text's own (which the
/// compile reads as an unchanged file): nothing changes, and the honest edits then land.
#[test]
fn edits_that_make_another_text_than_listed_are_refused_and_change_nothing() {
    use topologyd_api::delta::{BundleDelta, digests, file_sha256};
    use topologyd_api::{FilePatch, SourceBundle, SourceFile};
    let setup = start();
    // Onboarded, not advertised: a change that lands, and names the files as they are named
    // below.
    let quiet = format!(
        "{PREFIXES}{}",
        ADDED_PREFIX.replace("advertise = true", "advertise = false")
    );
    let files = setup.bundle("edited", SERVICES, &quiet);
    let first = setup.topoctl("push", &paths(&files));
    assert_eq!(first.code, EXIT_CHANGES_MADE, "{first}");
    let generation = setup.generation();
    let arguments = topoctl::connection::DaemonArguments {
        daemon: Some(control_address(&setup.topologyd).to_string()),
        server_name: Some("localhost".to_owned()),
        context: None,
        cert: Some(setup.admin.identity.certificate.clone()),
        key: Some(setup.admin.identity.private_key.clone()),
        ca: Some(setup.admin.ca.clone()),
    };
    let client = check(arguments.client(), "a control client");
    let runtime = check(topoctl::connection::runtime(), "a runtime");
    let base = check(runtime.block_on(client.sources()), "GET /v1/sources");
    let bundle = |prefixes: &str| SourceBundle {
        sources: vec![
            SourceFile::new("fleet.toml", FLEET),
            SourceFile::new("services.toml", SERVICES),
            SourceFile::new("prefixes.toml", prefixes),
        ],
    };
    let added = format!("{PREFIXES}{ADDED_PREFIX}");
    let changed = bundle(&added);
    let (_, delta) = BundleDelta::against(&base, &changed, &digests(&changed.sources))
        .unwrap_or_else(|| panic!("no delta against {base:?}"));
    let honest = FilePatch {
        name: "prefixes.toml".to_owned(),
        base_sha256: file_sha256(&quiet),
        edits: topologyd_api::patch::edits_between(&quiet, &added),
    };
    let mut other_text = honest.clone();
    other_text.edits[0]
        .insert
        .push_str("# not the text the digest names\n");
    // The file listed as unchanged (the running text's digest) but sent as edits.
    let mut listed_running = delta.clone();
    for file in &mut listed_running.files {
        if file.name == "prefixes.toml" {
            file.sha256 = file_sha256(&quiet);
        }
    }
    let post = |path: &str, delta: &BundleDelta, patch: &FilePatch| {
        let delta = BundleDelta {
            patches: vec![patch.clone()],
            ..delta.clone()
        };
        let mut body = serde_json::json!({
            "bundle": SourceBundle::default(), "delta": delta, "intent": [],
        });
        if path == "/v1/apply" {
            body["expected_generation"] = serde_json::json!(generation);
        }
        let body = check(serde_json::to_vec(&body), "the request body");
        check(
            runtime.block_on(client.raw(hyper::Method::POST, path, Some(body))),
            path,
        )
    };
    for (what, delta, patch) in [
        ("edits making another text", &delta, &other_text),
        ("edits listed as the running text", &listed_running, &honest),
    ] {
        for path in ["/v1/plan", "/v1/apply"] {
            let (status, answer) = post(path, delta, patch);
            assert_eq!(status, 409, "{what}, {path}: {answer}");
            assert_eq!(answer["error"]["kind"], "base_patch", "{what}: {answer}");
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("prefixes.toml"), "{what}: {message}");
            assert_eq!(setup.generation(), generation, "{what}, {path}");
        }
    }
    let routes = wait_for_routes(&setup.bird, AMS01_ROUTES);
    assert!(!routes.contains_key(&prefix("192.0.2.0/24")), "{routes:?}");
    // The honest edits land.
    let (status, answer) = post("/v1/apply", &delta, &honest);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(setup.generation(), generation + 1);
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
}
