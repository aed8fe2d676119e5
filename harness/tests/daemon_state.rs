//! End to end: the state directory heals and reports a full disk, driven by the real `topoctl`
//! against the real `topologyd` peering with a real BIRD 2 on loopback.
//!
//! - a corrupt newest generation file: the daemon falls back to the one before, moves the file
//!   to `state/quarantine/` (kept, not deleted), counts it in
//!   `topologyd_state_quarantined_total`, and later pushes and rollbacks take the next free
//!   generation number (no "generation N is already stored" wedge);
//! - source texts stored once: a push that changes one file adds that file's text only, and
//!   with the texts gone the daemon refuses to start (naming them and how to put them back)
//!   rather than announce its bootstrap topology; put back, it starts at the same generation;
//! - the state directory on a tmpfs filled to the last byte: a push and a rollback are refused
//!   with `topoctl` exit code 6 and a message naming what could be pruned, nothing changes at
//!   BIRD, and once room is made the same push applies;
//! - a generation stored by a release whose canonical hash differs: after a restart the
//!   daemon reports it by this release's hash, so the same topology pushed again is no change;
//! - write-ahead audit: with the audit log on a full tmpfs, a push, a rollback and a drain are
//!   refused (exit 5, "nothing changed") and BIRD sees nothing; with room, every mutation's
//!   `intent` record (identity, request, plan hash, intended verdict) precedes its `outcome`;
//! - a push writes its texts while it compiles: one that does not compile or that a guard
//!   refuses leaves no text that no kept generation names.

use topologyd_harness::daemon_fixture;

use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon_fixture::{
    AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, WAIT, check, start_bird, topology,
    wait_for_routes,
};
use serde_json::Value;
use topologyd_harness::peers::{BgpPeer, BirdPeer};
use topologyd_harness::tmpfs::SmallTmpfs;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, TopoctlOutput, Topologyd, wait_until,
    write_files,
};

const ADMIN: &str = "sre-admin";
const EXIT_OK: Option<i32> = Some(0);
/// topoctl: a push or rollback changed the running generation.
const EXIT_CHANGES_MADE: Option<i32> = Some(2);
/// topoctl: the daemon cannot act — here its state (or audit) file system is full; nothing
/// changed.
const EXIT_NO_SPACE: Option<i32> = Some(6);
/// topoctl: refused by a guard.
const EXIT_REFUSED: Option<i32> = Some(3);
/// topoctl: the topology does not compile.
const EXIT_INVALID: Option<i32> = Some(4);

/// Two more resolver routes, announced at every location.
const ADDED_A: &str = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "resolver"
"#;

const ADDED_B: &str = r#"
[[prefix]]
cidr = "198.18.0.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "198.18.0.0/24"
service = "resolver"
"#;

const ADDED_C: &str = r#"
[[prefix]]
cidr = "198.18.1.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "198.18.1.0/24"
service = "resolver"
"#;

struct Setup {
    bird: BirdPeer,
    topologyd: Topologyd,
    admin: Topoctl,
    bundles: tempfile::TempDir,
    _pki: ControlPki,
}

fn start() -> Setup {
    start_with_audit_dir(None)
}

/// [`start`], with the audit log in `audit_dir` instead of the PKI's directory.
fn start_with_audit_dir(audit_dir: Option<&Path>) -> Setup {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let mut control = ControlSection::new(daemon.local.ip(), &pki, &[(ADMIN, "admin")]);
    if let Some(directory) = audit_dir {
        control.audit_log = directory.join("audit.jsonl");
    }
    let address = control.listen;
    daemon.control = Some(control);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);
    let admin = Topoctl::new(
        address,
        &pki.ca,
        check(pki.client(ADMIN), "issuing a client certificate"),
    );
    Setup {
        bird,
        topologyd,
        admin,
        bundles: check(tempfile::tempdir(), "a directory for bundles"),
        _pki: pki,
    }
}

impl Setup {
    fn push(&self, name: &str, prefixes: &str) -> TopoctlOutput {
        let files = check(
            write_files(
                &self.bundles.path().join(name),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", SERVICES),
                    ("prefixes.toml", prefixes),
                ],
            ),
            "writing a bundle",
        );
        let arguments: Vec<String> = files
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        check(self.admin.run("push", &arguments), "topoctl push")
    }

    fn rollback(&self, generation: u64) -> TopoctlOutput {
        check(
            self.admin.run("rollback", &[generation.to_string()]),
            "topoctl rollback",
        )
    }

    fn generation(&self) -> u64 {
        let output = check(
            self.admin.run("status", &Vec::<String>::new()),
            "topoctl status",
        );
        assert_eq!(output.code, EXIT_OK, "{output}");
        let status: Value = check(output.json(), "status");
        status["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no generation in {status}"))
    }

    fn state_dir(&self) -> PathBuf {
        self.topologyd.directory().join("state")
    }

    fn restart(&mut self) {
        check(self.topologyd.terminate(WAIT), "stopping topologyd");
        check(self.topologyd.spawn(), "starting topologyd again");
        daemon_fixture::wait_converged(&mut self.topologyd, &[&self.bird]);
    }
}

fn generation_file(state_dir: &Path, generation: u64) -> PathBuf {
    state_dir
        .join("generations")
        .join(format!("{generation:020}.json"))
}

fn file_names(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn corrupt_newest_generation_is_quarantined_counted_and_pushes_and_rollbacks_continue() {
    let mut setup = start();
    let pushed = setup.push("a", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    assert_eq!(setup.generation(), 2);

    // The newest generation file is damaged while the daemon is down.
    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    let newest = generation_file(&setup.state_dir(), 2);
    check(
        std::fs::write(&newest, b"{\"format\":1,\"meta\":"),
        "corrupting generation 2",
    );
    check(setup.topologyd.spawn(), "starting topologyd again");
    daemon_fixture::wait_converged(&mut setup.topologyd, &[&setup.bird]);

    // Fell back to 1, moved 2 aside (its bytes kept), counted it.
    assert_eq!(setup.generation(), 1);
    wait_for_routes(&setup.bird, AMS01_ROUTES);
    assert!(
        !newest.exists(),
        "the corrupt file is still among the generations"
    );
    let quarantined = file_names(&setup.state_dir().join("quarantine"));
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].starts_with("00000000000000000002.json."),
        "{quarantined:?}"
    );
    let kept = check(
        std::fs::read(setup.state_dir().join("quarantine").join(&quarantined[0])),
        "reading the quarantined file",
    );
    assert_eq!(kept, b"{\"format\":1,\"meta\":");
    assert_eq!(
        check(
            setup.topologyd.metric("topologyd_state_quarantined_total"),
            "metrics"
        ),
        Some(1.0)
    );
    let log = setup.topologyd.log();
    assert!(
        log.contains("quarantine"),
        "the quarantine is not logged:\n{log}"
    );

    // Pushes and rollbacks continue past the quarantined number.
    let pushed = setup.push("b", &format!("{PREFIXES}{ADDED_B}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    assert_eq!(setup.generation(), 3);
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    let rolled_back = setup.rollback(1);
    assert_eq!(rolled_back.code, EXIT_CHANGES_MADE, "{rolled_back}");
    assert_eq!(setup.generation(), 4);
    wait_for_routes(&setup.bird, AMS01_ROUTES);

    // And after another restart, the numbering still moves on.
    setup.restart();
    assert_eq!(setup.generation(), 4);
    let pushed = setup.push("a-again", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    assert_eq!(setup.generation(), 5);

    // Every kept generation damaged: the daemon starts from its bootstrap topology, under the
    // next number past the quarantined ones (not generation 1 again, which the store refuses).
    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    for name in file_names(&setup.state_dir().join("generations")) {
        if name.ends_with(".json") {
            check(
                std::fs::write(
                    setup.state_dir().join("generations").join(&name),
                    b"garbage",
                ),
                "corrupting a generation",
            );
        }
    }
    check(setup.topologyd.spawn(), "starting topologyd again");
    daemon_fixture::wait_converged(&mut setup.topologyd, &[&setup.bird]);
    assert_eq!(setup.generation(), 6);
    wait_for_routes(&setup.bird, AMS01_ROUTES);
    check(setup.topologyd.check_running(), "topologyd");
}

/// A generation stored by a release whose canonical form differs (its file names the
/// topology by another hash) is reported, once restarted, by the hash this release computes:
/// the one it reported before the restart, in its status, its list of generations and its
/// sources' view alike. So the same topology pushed again is no change, and the stored file,
/// history, is left as written.
#[test]
fn a_generation_stored_under_another_canonical_form_is_reported_by_this_releases_hash() {
    let mut setup = start();
    let pushed = setup.push("a", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    let status = |setup: &Setup| -> Value {
        let output = check(
            setup.admin.run("status", &Vec::<String>::new()),
            "topoctl status",
        );
        assert_eq!(output.code, EXIT_OK, "{output}");
        check(output.json(), "status")
    };
    let hash = status(&setup)["hash"].clone();
    assert_eq!(hash.as_str().map(str::len), Some(64), "{hash}");

    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    let file = generation_file(&setup.state_dir(), 2);
    let mut stored: Value = check(
        serde_json::from_slice(&check(std::fs::read(&file), "reading generation 2")),
        "generation 2",
    );
    assert_eq!(stored["meta"]["hash"], hash);
    let older_form = "0123456789abcdef".repeat(4);
    stored["meta"]["hash"] = Value::from(older_form.as_str());
    check(
        std::fs::write(&file, stored.to_string()),
        "writing generation 2",
    );
    check(setup.topologyd.spawn(), "starting topologyd again");
    daemon_fixture::wait_converged(&mut setup.topologyd, &[&setup.bird]);

    let restarted = status(&setup);
    assert_eq!(restarted["generation"], 2);
    assert_eq!(restarted["hash"], hash, "not this release's hash");
    let listed = check(
        setup.admin.run("generations", &Vec::<String>::new()),
        "topoctl generations",
    );
    assert_eq!(listed.code, EXIT_OK, "{listed}");
    let listed: Value = check(listed.json(), "generations");
    let running = listed["generations"]
        .as_array()
        .and_then(|generations| {
            generations
                .iter()
                .find(|generation| generation["generation"] == 2)
        })
        .unwrap_or_else(|| panic!("generation 2 not listed: {listed}"));
    assert_eq!(running["hash"], hash, "listed by another hash: {listed}");
    let sources = check(
        setup.admin.run("topology get", &["--json".to_string()]),
        "topoctl topology",
    );
    assert_eq!(sources.code, EXIT_OK, "{sources}");
    let sources: Value = check(sources.json(), "topology");
    assert_eq!(
        sources["hash"], hash,
        "its sources' view names another hash"
    );
    let log = setup.topologyd.log();
    assert!(
        log.contains("canonical form") && log.contains(&older_form),
        "the new hash is not logged beside the stored one:\n{log}"
    );
    let again = setup.push("a-again", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(
        again.code, EXIT_OK,
        "the same topology is a change: {again}"
    );
    assert_eq!(setup.generation(), 2);
    let kept: Value = check(
        serde_json::from_slice(&check(std::fs::read(&file), "reading generation 2")),
        "generation 2",
    );
    assert_eq!(
        kept["meta"]["hash"],
        older_form.as_str(),
        "history rewritten"
    );
}

#[test]
fn missing_source_texts_stop_start_up_until_they_are_put_back() {
    let mut setup = start();
    let texts_dir = setup.state_dir().join("sources");
    let before = file_names(&texts_dir);
    let pushed = setup.push("a", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    assert_eq!(setup.generation(), 2);
    // The push changed one file: one text more, the others shared with generation 1.
    let after = file_names(&texts_dir);
    assert_eq!(after.len(), before.len() + 1, "{before:?} -> {after:?}");
    assert!(before.iter().all(|name| after.contains(name)));

    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    let saved: Vec<(String, Vec<u8>)> = after
        .iter()
        .map(|name| {
            let path = texts_dir.join(name);
            let bytes = check(std::fs::read(&path), "reading a text");
            check(std::fs::remove_file(&path), "removing a text");
            (name.clone(), bytes)
        })
        .collect();
    check(
        setup.topologyd.spawn(),
        "starting topologyd without its texts",
    );
    check(
        wait_until("topologyd to refuse to start", WAIT, || {
            match setup.topologyd.check_running() {
                Ok(()) => Err("still running".to_owned()),
                Err(_) => Ok(()),
            }
        }),
        "topologyd",
    );
    let log = setup.topologyd.log();
    assert!(
        log.contains("source texts are missing or damaged"),
        "not refused for its texts:\n{log}"
    );
    assert!(log.contains("sha256sum"), "no way back named:\n{log}");
    assert!(
        !generation_file(&setup.state_dir(), 3).exists(),
        "the bootstrap topology was committed"
    );

    for (name, bytes) in saved {
        check(
            std::fs::write(texts_dir.join(name), bytes),
            "restoring a text",
        );
    }
    check(setup.topologyd.spawn(), "starting topologyd again");
    daemon_fixture::wait_converged(&mut setup.topologyd, &[&setup.bird]);
    assert_eq!(setup.generation(), 2);
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
}

#[test]
fn full_state_disk_refuses_push_and_rollback_with_exit_5_naming_what_to_prune() {
    let mut setup = start();
    for (name, prefixes, generation) in [
        ("a", format!("{PREFIXES}{ADDED_A}"), 2),
        ("ab", format!("{PREFIXES}{ADDED_A}{ADDED_B}"), 3),
    ] {
        let pushed = setup.push(name, &prefixes);
        assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
        assert_eq!(setup.generation(), generation);
    }
    wait_for_routes(&setup.bird, AMS01_ROUTES + 2);

    // Move the state directory onto a 1 MiB tmpfs while the daemon is down.
    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    let state = setup.state_dir();
    let saved = setup.topologyd.directory().join("state-saved");
    check(
        std::fs::rename(&state, &saved),
        "moving the state directory",
    );
    check(std::fs::create_dir(&state), "creating the mount point");
    let tmpfs = check(
        SmallTmpfs::mount_at(&state, 1024 * 1024),
        "mounting a tmpfs",
    );
    let copied = check(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", saved.display()))
            .arg(&state)
            .status(),
        "copying the state directory",
    );
    assert!(copied.success(), "cp failed: {copied}");
    check(setup.topologyd.spawn(), "starting topologyd on the tmpfs");
    daemon_fixture::wait_converged(&mut setup.topologyd, &[&setup.bird]);
    assert_eq!(setup.generation(), 3);
    let counters = check(setup.bird.counters(), "BIRD counters");

    let filler = check(tmpfs.fill(), "filling the tmpfs");
    let abc = format!("{PREFIXES}{ADDED_A}{ADDED_B}{ADDED_C}");
    let pushed = setup.push("abc", &abc);
    assert_eq!(pushed.code, EXIT_NO_SPACE, "{pushed}");
    assert!(pushed.stderr.contains("no space left"), "{pushed}");
    // An apply keeps only the running generation: 1 and 2 may go.
    for generation in [1, 2] {
        let name = format!("{generation:020}.json");
        assert!(
            pushed.stderr.contains(&name),
            "{name} not offered: {pushed}"
        );
    }
    assert!(
        !pushed.stderr.contains("00000000000000000003.json"),
        "{pushed}"
    );

    // A rollback to 1 needs 1 (and 3 runs): only 2 is offered.
    let rolled_back = setup.rollback(1);
    assert_eq!(rolled_back.code, EXIT_NO_SPACE, "{rolled_back}");
    let said = format!("{}{}", rolled_back.stdout, rolled_back.stderr);
    assert!(said.contains("00000000000000000002.json"), "{rolled_back}");
    assert!(!said.contains("00000000000000000001.json"), "{rolled_back}");
    assert!(!said.contains("00000000000000000003.json"), "{rolled_back}");

    // Nothing changed anywhere.
    assert_eq!(setup.generation(), 3);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(check(setup.bird.counters(), "BIRD counters"), counters);
    assert!(!generation_file(&state, 4).exists());

    // Room made: the same push applies.
    check(std::fs::remove_file(filler), "removing the filler");
    let pushed = setup.push("abc", &abc);
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    check(
        wait_until("generation 4", WAIT, || match setup.generation() {
            4 => Ok(()),
            other => Err(format!("generation {other}")),
        }),
        "topologyd",
    );
    wait_for_routes(&setup.bird, AMS01_ROUTES + 3);
    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    drop(tmpfs);
}

fn audit_records(path: &Path) -> Vec<Value> {
    check(std::fs::read_to_string(path), "reading the audit log")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| check(serde_json::from_str(line), "an audit line"))
        .collect()
}

/// The texts the kept generations of `state_dir` name, sorted, each once.
fn named_texts(state_dir: &Path) -> Vec<String> {
    let mut named: Vec<String> = file_names(&state_dir.join("generations"))
        .iter()
        .flat_map(|name| {
            let file = check(
                std::fs::read(state_dir.join("generations").join(name)),
                "reading a generation file",
            );
            let file: Value = check(serde_json::from_slice(&file), "a generation file");
            file["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|reference| reference["sha256"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    named.sort();
    named.dedup();
    named
}

#[test]
fn mutations_are_refused_when_their_audit_record_cannot_be_written() {
    let tmpfs = check(SmallTmpfs::mount(64 * 1024), "mounting a tmpfs");
    let audit_log = tmpfs.path().join("audit.jsonl");
    let setup = start_with_audit_dir(Some(tmpfs.path()));
    let pushed = setup.push("a", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    assert_eq!(setup.generation(), 2);
    let counters = check(setup.bird.counters(), "BIRD counters");
    let lines_before = audit_records(&audit_log).len();

    // tmpfs allocates whole pages: pad the log's last page (blank lines) so that the next
    // record needs a new one, then take every free page.
    let size = check(std::fs::metadata(&audit_log), "the audit log's size").len();
    let padding = (4096 - size % 4096) % 4096;
    let mut log = check(
        std::fs::OpenOptions::new().append(true).open(&audit_log),
        "opening the audit log",
    );
    check(
        std::io::Write::write_all(&mut log, &vec![b'\n'; padding as usize]),
        "padding the audit log",
    );
    drop(log);
    let filler = check(tmpfs.fill(), "filling the tmpfs");
    let pushed = setup.push("ab", &format!("{PREFIXES}{ADDED_A}{ADDED_B}"));
    assert_eq!(pushed.code, EXIT_NO_SPACE, "{pushed}");
    assert!(
        pushed.stderr.contains("audit record could not be written"),
        "{pushed}"
    );
    assert!(pushed.stderr.contains("nothing changed"), "{pushed}");
    // A text no later push sends: its push stages it beside the intent record that fails.
    let pushed = setup.push("ab", &format!("{PREFIXES}{ADDED_A}{ADDED_B}# refused\n"));
    assert_eq!(pushed.code, EXIT_NO_SPACE, "{pushed}");
    // Its texts were removed with the refusal, not left for the next commit.
    assert_eq!(
        file_names(&setup.state_dir().join("sources")),
        named_texts(&setup.state_dir())
    );
    let rolled_back = setup.rollback(1);
    assert_eq!(rolled_back.code, EXIT_NO_SPACE, "{rolled_back}");
    let drained = check(
        setup.admin.drain(Some("resolver"), false, "maintenance"),
        "topoctl drain",
    );
    assert_eq!(drained.code, EXIT_NO_SPACE, "{drained}");

    // Nothing took effect: same generation, no drain, BIRD saw nothing.
    assert_eq!(setup.generation(), 2);
    let health = check(
        setup.admin.run("health", &Vec::<String>::new()),
        "topoctl health",
    );
    let health: Value = check(health.json(), "health");
    assert!(
        health["drains"]["services"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty),
        "a drain took effect: {health}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(check(setup.bird.counters(), "BIRD counters"), counters);
    assert_eq!(audit_records(&audit_log).len(), lines_before);

    // With room: the intent record, then the change, then the outcome record.
    check(std::fs::remove_file(filler), "removing the filler");
    let pushed = setup.push("ab", &format!("{PREFIXES}{ADDED_A}{ADDED_B}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    wait_for_routes(&setup.bird, AMS01_ROUTES + 2);
    let records = audit_records(&audit_log);
    let new: Vec<&Value> = records[lines_before..].iter().collect();
    assert_eq!(new.len(), 2, "{new:#?}");
    let (intent, outcome) = (new[0], new[1]);
    assert_eq!(intent["phase"], "intent", "{intent}");
    assert_eq!(intent["who"], ADMIN);
    assert_eq!(intent["endpoint"], "POST /v1/apply");
    assert_eq!(intent["intended_verdict"], "changes_allowed");
    assert_eq!(intent["generation_before"], 2);
    assert_eq!(intent["generation_after"], 3);
    assert!(intent["request"]["sources_sha256"].is_string(), "{intent}");
    assert_eq!(outcome["phase"], "outcome");
    assert_eq!(outcome["verdict"], "applied");
    assert_eq!(outcome["id"], intent["id"]);
    assert_eq!(outcome["plan_hash"], intent["plan_hash"]);
    // Every stored text is one a kept generation names.
    let named = named_texts(&setup.state_dir());
    assert!(!named.is_empty());
    assert_eq!(file_names(&setup.state_dir().join("sources")), named);
    let mut setup = setup;
    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    drop(tmpfs);
}

/// A push writes its texts into the state directory while it compiles. One that does not
/// apply — it does not compile, or a guard refuses it — leaves no text that no kept
/// generation names, and the next push's texts are named by its generation.
#[test]
fn the_texts_of_a_push_that_does_not_apply_do_not_stay_in_the_state_directory() {
    let setup = start();
    let pushed = setup.push("a", &format!("{PREFIXES}{ADDED_A}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    let state = setup.state_dir();
    let only_named = |what: &str| {
        check(
            wait_until(what, WAIT, || {
                let (on_disk, named) = (file_names(&state.join("sources")), named_texts(&state));
                if on_disk == named {
                    Ok(())
                } else {
                    Err(format!("texts {on_disk:?}, named {named:?}"))
                }
            }),
            "the state directory",
        );
    };
    only_named("the applied push's texts, named");
    let not_applied = [
        // Does not compile: a prefix longer than an IPv4 address.
        (
            format!(
                "{PREFIXES}{ADDED_A}{}",
                ADDED_B.replace("198.18.0.0/24", "198.18.0.0/33")
            ),
            EXIT_INVALID,
        ),
        // Refused: the added routes withdrawn while still bound to their service, unasked.
        (
            format!(
                "{PREFIXES}{}",
                ADDED_A.replace("advertise = true", "advertise = false")
            ),
            EXIT_REFUSED,
        ),
    ];
    for (prefixes, code) in not_applied {
        let pushed = setup.push("not-applied", &prefixes);
        assert_eq!(pushed.code, code, "{pushed}");
        only_named(&format!("no text of the push that exited {code:?}"));
    }
    assert_eq!(setup.generation(), 2);
    let pushed = setup.push("ab", &format!("{PREFIXES}{ADDED_A}{ADDED_B}"));
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    assert_eq!(setup.generation(), 3);
    only_named("the next push's texts, named");
}
