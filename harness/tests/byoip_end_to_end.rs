//! BYOIP end to end, as an operator runs it, with the real servers: `topoctl prefix onboard`
//! prints what to publish; the customer publishes it — the TXT records into Knot DNS (a /23 in
//! both of its /24 reverse zones) or the route object into IRRd 4; `topoctl prefix verify`,
//! with settings naming that Knot and that IRRd and an rpki-client VRP file for the ROA check,
//! makes the onboardings valid and prints the signed evidence; the evidence goes into the
//! topology, `topoctl check` accepts it, and `topologyd` announces the customer's routes to a
//! real BIRD 2.
//!
//! On the way, in the same run: before anything is published `verify` says missing (never
//! valid) and the topology advertising the prefixes without evidence is refused (G6); a TXT
//! carrying another token makes its onboarding invalid; verifying a valid onboarding again (its
//! token already used) is refused, and so is onboarding it again.
//!
//! Each server starts once; IRRd (the slow one) starts while Knot does and while the binaries
//! build.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;
use topologyd_harness::daemon_fixture::{
    FLEET, LOCAL_ASN, SERVICES, check, prefix, start_bird, wait_converged, wait_for_routes,
};
use topologyd_harness::peers::{Irrd, Knot, ReverseZone};
use topologyd_harness::topologyd::{DaemonConfig, Topologyd, binaries, write_files};

/// Proven with reverse DNS: a TXT record in each of its two /24 zones; announced as /24s.
const BY_RDNS: &str = "198.51.100.0/23";
/// Proven with an IRR route object.
const BY_IRR: &str = "203.0.113.0/24";
/// Its zone carries somebody else's token.
const IMPOSTOR: &str = "192.0.2.0/24";
const OWNER: &str = "byoip-customer";
const ORIGIN: u32 = 64999;
const CHALLENGE: &str = "_topologyd-challenge";
/// An object of another network, so the TEST source is never empty.
const UNRELATED_ROUTE: &str = "route: 10.0.0.0/8\norigin: AS64500\ndescr: another network\nmnt-by: MAINT-TEST\nsource: TEST\n\n";

/// `topoctl ARGS` with the onboarding settings in the environment: exit code, stdout, stderr.
fn topoctl(settings: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = check(
        Command::new(check(binaries(), "binaries").join("topoctl"))
            .args(args)
            .env("TOPOCTL_ONBOARDING", settings)
            .env_remove("TOPOCTL_DAEMON")
            .stdin(Stdio::null())
            .output(),
        "running topoctl",
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json(text: &str) -> Value {
    check(
        serde_json::from_str(text),
        &format!("topoctl's JSON: {text}"),
    )
}

/// The onboarding settings: our ASN and owner, the key and store next to the file, and the
/// servers the checks ask.
fn write_settings(directory: &Path, knot: &Knot, irrd: &Irrd) -> PathBuf {
    let path = directory.join("onboarding.toml");
    let text = format!(
        "operator_asn = 13335\noperator_owner = \"resolver\"\nsigning_key = \"onboarding.key\"\nstore = \"onboarding.redb\"\n\n[rdns]\nnameservers = [\"{}\"]\ntimeout_ms = 1000\nattempts = 1\n\n[irr]\nserver = \"{}\"\nsources = [\"TEST\"]\ntimeout_ms = 5000\n",
        knot.address(),
        irrd.whois()
    );
    check(
        std::fs::write(&path, text),
        "writing the onboarding settings",
    );
    path
}

/// The customer's ROAs, as rpki-client writes them.
fn write_vrps(directory: &Path) -> String {
    let path = directory.join("vrps.json");
    let roas: Vec<String> = [BY_RDNS, BY_IRR, IMPOSTOR]
        .iter()
        .map(|cidr| {
            format!("{{\"prefix\": \"{cidr}\", \"maxLength\": 24, \"asn\": \"AS{ORIGIN}\"}}")
        })
        .collect();
    check(
        std::fs::write(&path, format!("{{\"roas\": [{}]}}", roas.join(", "))),
        "writing the VRPs",
    );
    path.display().to_string()
}

/// One TXT record as `onboard` prints it: `NAME. TTL IN TXT "VALUE"`.
#[derive(Debug)]
struct TxtLine {
    zone: String,
    owner: String,
    value: String,
}

/// The TXT records in `onboard`'s human output, split into zone and owner label.
fn txt_lines(output: &str) -> Vec<TxtLine> {
    output
        .lines()
        .filter(|line| line.contains(" IN TXT "))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 5, "{line}");
            let name = fields[0].trim_end_matches('.');
            let (owner, zone) = name
                .split_once('.')
                .unwrap_or_else(|| panic!("a record name with a zone: {line}"));
            TxtLine {
                zone: zone.to_string(),
                owner: owner.to_string(),
                value: fields[4].trim_matches('"').to_string(),
            }
        })
        .collect()
}

/// The reverse zone of a /24 (`2.0.192.in-addr.arpa`).
fn zone_of(cidr: &str) -> String {
    let octets: Vec<&str> = cidr.split('/').next().unwrap_or(cidr).split('.').collect();
    format!("{}.{}.{}.in-addr.arpa", octets[2], octets[1], octets[0])
}

/// `verify --json`: per prefix, its state, its checks' statuses by kind, and its topology entry.
struct Verified {
    state: String,
    statuses: Vec<(String, String)>,
    entry: Option<String>,
}

fn verified(document: &Value, cidr: &str) -> Verified {
    let item = document["verified"]
        .as_array()
        .and_then(|items| items.iter().find(|item| item["prefix"] == cidr))
        .unwrap_or_else(|| panic!("{cidr} not in {document}"));
    let onboarding = &item["onboarding"];
    Verified {
        state: onboarding["state"].as_str().unwrap_or("").to_string(),
        statuses: onboarding["checks"]
            .as_array()
            .map(|checks| {
                checks
                    .iter()
                    .map(|check| (check["kind"].to_string(), check["status"].to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        entry: item["topology_entry"].as_str().map(str::to_string),
    }
}

impl Verified {
    fn status(&self, kind: &str) -> String {
        self.statuses
            .iter()
            .find(|(found, _)| found.trim_matches('"') == kind)
            .map(|(_, status)| status.trim_matches('"').to_string())
            .unwrap_or_else(|| panic!("no {kind} check in {:?}", self.statuses))
    }
}

/// The operator's prefixes plus `customer` (the customer's [[prefix]] tables, with or without
/// evidence), bound to the cdn service; answers the bundle's files.
fn bundle(directory: &Path, public_key: &str, customer: &str) -> Vec<PathBuf> {
    let prefixes = format!(
        "[settings.onboarding]\noperator_owner = \"resolver\"\nevidence_keys = [\"{public_key}\"]\n\n[[prefix]]\ncidr = \"1.1.1.0/24\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"1.1.1.0/24\"\nservice = \"resolver\"\n\n[[binding]]\ncidr = \"{BY_RDNS}\"\nservice = \"cdn\"\n\n[[binding]]\ncidr = \"{BY_IRR}\"\nservice = \"cdn\"\n\n{customer}"
    );
    check(
        write_files(
            directory,
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &prefixes),
            ],
        ),
        "writing a bundle",
    )
}

/// The customer's prefixes advertised without evidence (what G6 refuses).
fn without_evidence() -> String {
    format!(
        "[[prefix]]\ncidr = \"{BY_RDNS}\"\norigin_asn = {ORIGIN}\nowner = \"{OWNER}\"\nannounce = {{ split = 24 }}\nadvertise = true\n\n[[prefix]]\ncidr = \"{BY_IRR}\"\norigin_asn = {ORIGIN}\nowner = \"{OWNER}\"\nadvertise = true\n"
    )
}

fn path_args(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .map(|file| file.display().to_string())
        .collect()
}

/// Onboards the three prefixes through the CLI; answers the /23's TXT lines and the route
/// object for BY_IRR with our maintainer filled in.
fn onboard_all(settings: &Path) -> (Vec<TxtLine>, String, String) {
    let (code, stdout, stderr) = topoctl(
        settings,
        &[
            "prefix",
            "onboard",
            BY_RDNS,
            "--owner",
            OWNER,
            "--origin-asn",
            "64999",
            "--split",
            "24",
            "--irr-source",
            "TEST",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("2 covering zone(s), all needed"),
        "{stdout}"
    );
    assert!(stdout.contains("max-length >= 24"), "{stdout}");
    let lines = txt_lines(&stdout);
    let zones: Vec<&str> = lines.iter().map(|line| line.zone.as_str()).collect();
    assert_eq!(
        zones,
        [zone_of("198.51.100.0/24"), zone_of("198.51.101.0/24")],
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .all(|line| line.owner == CHALLENGE && line.value == lines[0].value)
    );

    let (code, stdout, stderr) = topoctl(
        settings,
        &[
            "prefix",
            "onboard",
            BY_IRR,
            "--owner",
            OWNER,
            "--origin-asn",
            "64999",
            "--irr-source",
            "TEST",
            "--json",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let document = json(&stdout);
    let token = document["onboarding"]["token"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{document}"))
        .to_string();
    let object = document["publish"]["irr_object"]
        .as_str()
        .unwrap_or_else(|| panic!("{document}"));
    assert!(object.contains(&format!("remarks: {token}")), "{object}");
    assert!(object.contains("origin: AS64999"), "{object}");
    let object = object.replace("<your maintainer>", "MAINT-TEST");

    let (code, stdout, stderr) = topoctl(
        settings,
        &[
            "prefix",
            "onboard",
            IMPOSTOR,
            "--owner",
            OWNER,
            "--origin-asn",
            "64999",
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    (lines, object, token)
}

/// Before anything is published: nothing valid, no evidence, and the topology that advertises
/// the prefixes anyway is refused.
fn nothing_published_yet(settings: &Path, vrps: &str, bare: &[PathBuf]) {
    let (code, stdout, stderr) = topoctl(settings, &["prefix", "verify", "--vrps", vrps, "--json"]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    let document = json(&stdout);
    for cidr in [BY_RDNS, BY_IRR, IMPOSTOR] {
        let outcome = verified(&document, cidr);
        assert_eq!(outcome.state, "missing", "{cidr}: {document}");
        assert_eq!(outcome.status("rdns"), "missing", "{cidr}");
        assert_eq!(outcome.status("irr"), "missing", "{cidr}");
        assert_eq!(outcome.status("roa"), "valid", "{cidr}");
        assert!(
            outcome.entry.is_none(),
            "{cidr}: evidence before publishing"
        );
    }
    let mut args = vec!["check".to_string()];
    args.extend(path_args(bare));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = topoctl(settings, &args);
    assert_eq!(code, Some(4), "{stdout}{stderr}");
    let output = format!("{stdout}{stderr}");
    for cidr in [BY_RDNS, BY_IRR] {
        assert!(
            output.contains(&format!("G6: customer prefix {cidr} (owner \"{OWNER}\") is advertised without valid ownership evidence")),
            "{output}"
        );
    }
}

#[test]
fn onboard_publish_verify_and_announce_through_bird() {
    let began = Instant::now();
    let scratch = check(tempfile::tempdir(), "a scratch directory");
    // The binaries build (when they need to) while IRRd starts.
    let built = std::thread::spawn(binaries);
    let irrd = std::thread::spawn(|| Irrd::start(&[("TEST", UNRELATED_ROUTE)]));
    let knot = check(
        Knot::start(&[
            ReverseZone::new(&zone_of("198.51.100.0/24")),
            ReverseZone::new(&zone_of("198.51.101.0/24")),
            ReverseZone::new(&zone_of(BY_IRR)),
            ReverseZone::new(&zone_of(IMPOSTOR)),
        ]),
        "starting Knot",
    );
    let irrd = check(
        irrd.join()
            .unwrap_or_else(|_| panic!("IRRd's start-up panicked")),
        "starting IRRd",
    );
    check(
        built
            .join()
            .unwrap_or_else(|_| panic!("building the binaries panicked")),
        "building topologyd and topoctl",
    );
    eprintln!("servers up after {:?}", began.elapsed());
    let settings = write_settings(scratch.path(), &knot, &irrd);
    let vrps = write_vrps(scratch.path());

    let (code, stdout, stderr) = topoctl(&settings, &["prefix", "key", "--generate", "--json"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let public_key = json(&stdout)["public_key"]
        .as_str()
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string();

    // 1. Onboard: tokens issued, what to publish printed.
    let (txt, route_object, _) = onboard_all(&settings);
    eprintln!("onboarded after {:?}", began.elapsed());

    // Nothing published yet: missing, and the bare topology is refused.
    let bare = bundle(
        &scratch.path().join("bare"),
        &public_key,
        &without_evidence(),
    );
    nothing_published_yet(&settings, &vrps, &bare);
    eprintln!("refused before publishing after {:?}", began.elapsed());

    // 2. Publish: the /23's TXT in both /24 zones, the route object into IRRd, and somebody
    // else's token in the impostor's zone.
    for line in &txt {
        let zone = ReverseZone::new(&line.zone).txt(&line.owner, &line.value);
        check(knot.publish(&zone), "publishing a TXT record");
    }
    let impostor = ReverseZone::new(&zone_of(IMPOSTOR)).txt(
        CHALLENGE,
        "topologyd-verify-000000000000000000000000000000000000000000000000",
    );
    check(knot.publish(&impostor), "publishing another token");
    check(
        irrd.load("TEST", &format!("{UNRELATED_ROUTE}{route_object}\n")),
        "loading the route object",
    );

    eprintln!("published after {:?}", began.elapsed());

    // 3. Verify against Knot, IRRd and the VRPs.
    let (code, stdout, stderr) = topoctl(
        &settings,
        &[
            "prefix", "verify", BY_RDNS, BY_IRR, IMPOSTOR, "--vrps", &vrps, "--json",
        ],
    );
    assert_eq!(code, Some(3), "the impostor is not valid: {stdout}{stderr}");
    let document = json(&stdout);
    let by_rdns = verified(&document, BY_RDNS);
    assert_eq!(by_rdns.state, "valid", "{document}\n{}", knot.log_tail());
    assert_eq!(by_rdns.status("rdns"), "valid");
    assert_eq!(by_rdns.status("irr"), "missing");
    let by_irr = verified(&document, BY_IRR);
    assert_eq!(by_irr.state, "valid", "{document}\n{}", irrd.log_tail());
    assert_eq!(by_irr.status("irr"), "valid");
    assert_eq!(by_irr.status("rdns"), "missing");
    let impostor = verified(&document, IMPOSTOR);
    assert_eq!(impostor.state, "invalid", "{document}");
    assert_eq!(impostor.status("rdns"), "invalid");
    assert!(impostor.entry.is_none());

    // A token is used once: verifying or onboarding a valid prefix again is refused.
    let (code, stdout, stderr) =
        topoctl(&settings, &["prefix", "verify", BY_RDNS, "--vrps", &vrps]);
    assert_eq!(code, Some(4), "{stdout}{stderr}");
    assert!(stdout.contains("error:"), "{stdout}");
    let (code, stdout, stderr) = topoctl(
        &settings,
        &[
            "prefix",
            "onboard",
            BY_RDNS,
            "--owner",
            OWNER,
            "--origin-asn",
            "64999",
        ],
    );
    assert_eq!(code, Some(4), "{stdout}{stderr}");
    let (code, stdout, _) = topoctl(&settings, &["prefix", "status", BY_RDNS, "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        json(&stdout)["onboardings"][0]["state"],
        "valid",
        "{stdout}"
    );
    drop(knot);
    drop(irrd);
    eprintln!("verified after {:?}", began.elapsed());

    // 4. The evidence into the topology: `check` accepts it, topologyd announces it to BIRD.
    let rdns_entry = by_rdns
        .entry
        .unwrap_or_else(|| panic!("no evidence for {BY_RDNS}"))
        .replacen(
            "\n\n[prefix.evidence]",
            "\nannounce = { split = 24 }\n\n[prefix.evidence]",
            1,
        );
    let irr_entry = by_irr
        .entry
        .unwrap_or_else(|| panic!("no evidence for {BY_IRR}"));
    let customer = format!("{rdns_entry}\n{irr_entry}");
    let signed = bundle(&scratch.path().join("signed"), &public_key, &customer);
    let mut args = vec!["check".to_string()];
    args.extend(path_args(&signed));
    args.extend(["--vrps".to_string(), vrps.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, stderr) = topoctl(&settings, &args);
    assert_eq!(code, Some(0), "{stdout}{stderr}\n{customer}");

    let prefixes = check(
        std::fs::read_to_string(&signed[2]),
        "reading the signed prefixes",
    );
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(
        Topologyd::start(
            daemon,
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &prefixes),
            ],
        ),
        "starting topologyd with the verified prefixes",
    );
    wait_converged(&mut topologyd, &[&bird]);
    let routes = wait_for_routes(&bird, 4);
    assert!(routes.contains_key(&prefix("1.1.1.0/24")), "{routes:?}");
    for cidr in ["198.51.100.0/24", "198.51.101.0/24", BY_IRR] {
        let route = routes
            .get(&prefix(cidr))
            .unwrap_or_else(|| panic!("{cidr} not announced: {routes:?}"));
        assert_eq!(route.as_path.last(), Some(&ORIGIN), "{route:?}");
    }
    eprintln!("announced after {:?}", began.elapsed());
}
