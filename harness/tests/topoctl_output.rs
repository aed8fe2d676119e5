//! End to end: every `topoctl` daemon command against a real topologyd (location `ams01`, one
//! BIRD neighbor), in its human form and with `--json`, and the exit-code table:
//! - `status`: a peer table row for `edge-bird` with `Established`, an RFC 3339 `SINCE` and
//!   no error; `--json` is the status view;
//! - `routes`: a RIB row per route with the configured next hop and the AS path as text
//!   (`13335`), `--json` with `as_path` text and `next_hop`;
//! - `health`, `generations`, `topology get [--generation N] [--out DIR]`;
//! - `push`: the plan as text then `applied: generation 2 is running`, exit 2; the same push
//!   again: exit 0; `push --dry-run`: the plan, exit 0/2;
//! - `drain`: a whole-location drain without `--location` (exit 1) or with the wrong one
//!   (exit 1) changes nothing; `--dry-run` says what would change (exit 2) and changes nothing;
//!   a service drain exits 2, again exits 0; undrain exits 2;
//! - `rollback --dry-run` shows the plan and changes nothing; `rollback` exits 2, to a
//!   generation not kept exits 4; a compare-and-swap conflict exits 5; a daemon that is not
//!   there exits 6; errors go to stderr and nothing to stdout.

use serde_json::Value;
use topologyd_harness::daemon_fixture::{
    self, AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, check, start_bird, topology,
    wait_for_routes,
};
use topologyd_harness::peers::BirdPeer;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, TopoctlOutput, Topologyd, write_files,
};

const ADMIN: &str = "sre-admin";

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
    admin: Topoctl,
    bundles: tempfile::TempDir,
    /// Holds the certificates' directory for as long as the daemon runs.
    _pki: ControlPki,
}

fn start() -> Setup {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(daemon.local.ip(), &pki, &[(ADMIN, "admin")]);
    let listen = control.listen;
    daemon.control = Some(control);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);
    let admin = Topoctl::new(
        listen,
        &pki.ca,
        check(pki.client(ADMIN), "a client certificate"),
    );
    let bundles = check(tempfile::tempdir(), "a directory for bundles");
    Setup {
        bird,
        topologyd,
        admin,
        bundles,
        _pki: pki,
    }
}

impl Setup {
    /// `topoctl SUBCOMMAND ARGUMENTS…` as an operator types it (no `--json` added).
    fn human(&self, subcommand: &str, arguments: &[&str]) -> TopoctlOutput {
        check(
            self.admin.run_human(subcommand, arguments),
            "running topoctl",
        )
    }

    /// The same with `--json`, parsed.
    fn json(&self, subcommand: &str, arguments: &[&str]) -> (Option<i32>, Value) {
        let mut arguments = arguments.to_vec();
        arguments.push("--json");
        let output = self.human(subcommand, &arguments);
        let value = check(output.json(), &format!("topoctl {subcommand} --json"));
        (output.code, value)
    }

    fn generation(&self) -> u64 {
        let (_, status) = self.json("status", &[]);
        status["generation"].as_u64().unwrap_or_default()
    }

    fn bundle(&self, name: &str, prefixes: &str) -> Vec<String> {
        check(
            write_files(
                &self.bundles.path().join(name),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", SERVICES),
                    ("prefixes.toml", prefixes),
                ],
            ),
            "writing a bundle",
        )
        .iter()
        .map(|path| path.display().to_string())
        .collect()
    }
}

fn strs(arguments: &[String]) -> Vec<&str> {
    arguments.iter().map(String::as_str).collect()
}

/// RFC 3339 UTC, to the second: `2026-12-05T07:58:01Z`.
fn is_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    text.len() == 20
        && text.ends_with('Z')
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && text.chars().enumerate().all(|(index, character)| {
            [4, 7, 10, 13, 16, 19].contains(&index) || character.is_ascii_digit()
        })
}

#[test]
fn read_commands_print_tables_for_people_and_views_for_json() {
    let setup = start();

    // status: one line per peer, in words.
    let status = setup.human("status", &[]);
    assert_eq!(status.code, Some(0), "{status}");
    assert!(
        status
            .stdout
            .starts_with("location ams01  generation 1  hash "),
        "{status}"
    );
    let header = status
        .stdout
        .lines()
        .find(|line| line.starts_with("PEER"))
        .unwrap_or_default();
    for column in [
        "ADDRESS",
        "STATE",
        "SINCE",
        "UPTIME",
        "ROUTES V4/V6",
        "LAST ERROR",
    ] {
        assert!(header.contains(column), "{column} missing: {status}");
    }
    let row: Vec<&str> = status
        .stdout
        .lines()
        .find(|line| line.starts_with("edge-bird"))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(2), Some(&"Established"), "{status}");
    assert!(
        row.get(3).is_some_and(|since| is_rfc3339(since)),
        "{status}"
    );
    assert_eq!(row.last(), Some(&"-"), "no error: {status}");
    let (code, view) = setup.json("status", &[]);
    assert_eq!(code, Some(0));
    assert_eq!(view["location"], "ams01");
    assert_eq!(view["peers"][0]["state"], "Established", "{view}");

    // routes: a RIB with next hop and the AS path as text.
    let routes = setup.human("routes", &["--peer", "edge-bird"]);
    assert_eq!(routes.code, Some(0), "{routes}");
    assert!(
        routes.stdout.contains(&format!(
            "peer edge-bird (ipv4, ipv6): Established, holds generation 1, {AMS01_ROUTES} routes"
        )),
        "{routes}"
    );
    let header = routes
        .stdout
        .lines()
        .find(|line| line.starts_with("PREFIX"))
        .unwrap_or_default();
    assert!(
        header.contains("NEXT HOP") && header.contains("AS PATH"),
        "{routes}"
    );
    let (_, view) = setup.json("routes", &["--peer", "edge-bird"]);
    let listed = view["peers"]["edge-bird"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), AMS01_ROUTES, "{view}");
    for route in &listed {
        let as_path = route["as_path"][0].as_str().unwrap_or_default();
        assert!(
            as_path.starts_with(&LOCAL_ASN.to_string())
                && as_path.split(' ').all(|asn| asn.parse::<u32>().is_ok()),
            "AS path as text: {route}"
        );
        let prefix = route["prefix"].as_str().unwrap_or_default();
        let line = routes
            .stdout
            .lines()
            .find(|line| line.starts_with(&format!("{prefix} ")))
            .unwrap_or_default();
        let next_hop = route["next_hop"].as_str().unwrap_or("local address");
        assert!(
            line.contains(next_hop),
            "{prefix} next hop {next_hop}: {routes}"
        );
        assert!(line.contains(&format!("  {as_path}  ")), "{line}");
    }
    assert!(
        listed.iter().any(|route| route["next_hop"].is_string()),
        "{view}"
    );

    // health: a service table; --json the health view.
    let health = setup.human("health", &[]);
    assert_eq!(health.code, Some(0), "{health}");
    assert!(
        health.stdout.contains("SERVICE") && health.stdout.contains("ACTION"),
        "{health}"
    );
    assert!(
        health
            .stdout
            .lines()
            .any(|line| line.starts_with("resolver ") && line.contains("announce")),
        "{health}"
    );
    let (_, view) = setup.json("health", &[]);
    assert_eq!(view["services"]["resolver"]["action"], "announce", "{view}");

    // generations and topology get.
    let generations = setup.human("generations", &[]);
    assert_eq!(generations.code, Some(0), "{generations}");
    let row = generations
        .stdout
        .lines()
        .find(|line| line.starts_with("1 (running)"))
        .unwrap_or_default();
    assert!(
        row.split_whitespace().nth(2).is_some_and(is_rfc3339),
        "{generations}"
    );
    let (_, view) = setup.json("generations", &[]);
    assert_eq!(view["running"], 1);
    assert_eq!(
        view["generations"][0]["sources"].as_array().map(Vec::len),
        Some(3),
        "{view}"
    );
    let topology = setup.human("topology get", &[]);
    assert_eq!(topology.code, Some(0), "{topology}");
    assert!(
        topology
            .stdout
            .lines()
            .any(|line| line.starts_with("# file: ") && line.ends_with("prefixes.toml")),
        "{topology}"
    );
    assert!(topology.stdout.contains("[[binding]]"), "{topology}");
    let out = setup.bundles.path().join("running");
    let out_text = out.display().to_string();
    let written = setup.human("topology get", &["--out", &out_text]);
    assert_eq!(written.code, Some(0), "{written}");
    let text = check(
        std::fs::read_to_string(out.join("prefixes.toml")),
        "the written prefixes.toml",
    );
    assert_eq!(text, PREFIXES);
    let again = setup.human("topology get", &["--out", &out_text]);
    assert_eq!(
        again.code,
        Some(1),
        "an existing file is not overwritten: {again}"
    );
    assert!(again.stderr.contains("--force"), "{again}");
    drop(setup.bird);
}

#[test]
fn mutations_print_plans_and_exit_by_the_table() {
    let setup = start();
    let added = setup.bundle("added", &format!("{PREFIXES}{ADDED_PREFIX}"));

    // push --dry-run: the plan as text, exit 2, nothing applied.
    let mut arguments = strs(&added);
    arguments.push("--dry-run");
    let dry_run = setup.human("push", &arguments);
    assert_eq!(dry_run.code, Some(2), "{dry_run}");
    assert!(dry_run.stdout.contains("192.0.2.0/24"), "{dry_run}");
    assert!(
        !dry_run.stdout.contains("\\n"),
        "not an escaped JSON string: {dry_run}"
    );
    assert_eq!(setup.generation(), 1);

    // push: the plan, then what runs; exit 2. Again: nothing to do, exit 0.
    let pushed = setup.human("push", &strs(&added));
    assert_eq!(pushed.code, Some(2), "{pushed}");
    assert!(pushed.stdout.contains("192.0.2.0/24"), "{pushed}");
    assert!(
        pushed
            .stdout
            .contains("applied: generation 2 is running (was 1)"),
        "{pushed}"
    );
    wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    let unchanged = setup.human("push", &strs(&added));
    assert_eq!(unchanged.code, Some(0), "{unchanged}");
    assert!(
        unchanged
            .stdout
            .contains("no change: generation 2 stays running"),
        "{unchanged}"
    );

    // Compare-and-swap: exit 5, the error on stderr only.
    let mut arguments = strs(&added);
    arguments.extend(["--expect-generation", "1"]);
    let conflict = setup.human("push", &arguments);
    assert_eq!(conflict.code, Some(5), "{conflict}");
    assert!(conflict.stdout.is_empty(), "{conflict}");
    assert!(conflict.stderr.contains("409 (conflict)"), "{conflict}");

    // Whole-location drain: refused without --location or with another location.
    let unconfirmed = setup.human("drain", &[]);
    assert_eq!(unconfirmed.code, Some(1), "{unconfirmed}");
    assert!(unconfirmed.stderr.contains("--location"), "{unconfirmed}");
    let wrong = setup.human("drain", &["--location", "fra01"]);
    assert_eq!(wrong.code, Some(1), "{wrong}");
    assert!(wrong.stderr.contains("`ams01`"), "{wrong}");
    let (_, health) = setup.json("health", &[]);
    assert_eq!(health["location_drained"], false, "{health}");
    let dry = setup.human("drain", &["--location", "ams01", "--dry-run"]);
    assert_eq!(dry.code, Some(2), "{dry}");
    assert!(
        dry.stdout
            .starts_with("dry run: would drain location ams01"),
        "{dry}"
    );
    let (_, health) = setup.json("health", &[]);
    assert_eq!(
        health["location_drained"], false,
        "a dry run drained: {health}"
    );

    // Service drain: 2, again 0 (already drained), undrain 2.
    let drained = setup.human("drain", &["--service", "resolver", "--reason", "test"]);
    assert_eq!(drained.code, Some(2), "{drained}");
    assert!(
        drained
            .stdout
            .starts_with("drained service resolver at ams01"),
        "{drained}"
    );
    let (code, view) = setup.json("drain", &["--service", "resolver"]);
    assert_eq!(code, Some(0), "{view}");
    assert_eq!(view["changed"], false, "{view}");
    let undrained = setup.human("drain", &["--service", "resolver", "--undrain"]);
    assert_eq!(undrained.code, Some(2), "{undrained}");

    // Rollback: a dry run plans the withdrawal and changes nothing; then exit 2; a
    // generation never kept: exit 4.
    let dry = setup.human("rollback", &["1", "--dry-run"]);
    assert_eq!(dry.code, Some(2), "{dry}");
    assert!(dry.stdout.contains("192.0.2.0/24"), "{dry}");
    assert_eq!(setup.generation(), 2, "a dry run rolled back");
    let rolled_back = setup.human("rollback", &["1"]);
    assert_eq!(rolled_back.code, Some(2), "{rolled_back}");
    assert!(
        rolled_back
            .stdout
            .contains("rolled back: generation 3 is running (was 2)"),
        "{rolled_back}"
    );
    let (code, view) = setup.json("topology get", &["--generation", "2"]);
    assert_eq!(code, Some(0));
    assert_eq!(view["generation"], 2, "{view}");
    let missing = setup.human("rollback", &["99"]);
    assert_eq!(missing.code, Some(4), "{missing}");
    assert!(missing.stdout.is_empty(), "{missing}");

    // Unreachable: exit 6.
    let nobody = Topoctl::new(
        "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!()),
        &setup.admin.ca,
        setup.admin.identity.clone(),
    );
    let unreachable = check(nobody.run_human("status", &[] as &[&str]), "topoctl status");
    assert_eq!(unreachable.code, Some(6), "{unreachable}");
    assert!(
        unreachable.stderr.contains("cannot connect"),
        "{unreachable}"
    );
    drop(setup.topologyd);
}
