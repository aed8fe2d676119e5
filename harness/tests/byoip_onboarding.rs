//! End to end: BYOIP onboarding to BIRD. A customer's /22 (split into /24s) is onboarded and
//! verified — the ROA check against an rpki-client VRP file, the ownership check's passed
//! result handed to the same library step `topoctl prefix verify` takes after its checks, which
//! signs the evidence — and then, with the real `topologyd` peering with a real BIRD 2:
//!
//! - staged with `advertise = false`, nothing of it reaches BIRD;
//! - advertised without evidence, the push is invalid (G6, with `file:line:column`) and BIRD
//!   holds what it held;
//! - advertised with the evidence, the push applies and BIRD learns the four /24s;
//! - once the onboarding is revoked, the next push that still advertises the prefix is refused
//!   at plan time (exit 3) — nothing new reaches BIRD and nothing is withdrawn.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use topologyd_harness::daemon_fixture::{
    FLEET, LOCAL_ASN, SERVICES, check, prefix, start_bird, wait_converged, wait_for_routes,
};
use topologyd_harness::peers::BgpPeer;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topologyd, binaries, write_files,
};

use topoctl::onboard::command::{OnboardRequest, issue};
use topoctl::onboard::settings::{OnboardingSettings, generate_signing_key};
use topoctl::onboard::store::OnboardingStore;
use topoctl::onboard::verify::{VrpInput, complete_verification, now_unix, roa_check};
use topologyd_ownership::evidence::key_text;
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus, OnboardingState};

const ADMIN: &str = "sre-admin";
const CUSTOMER: &str = "198.51.100.0/22";

/// The operator's prefixes (the resolver) and the customer's, which `customer` completes
/// (`advertise = …` and its evidence, if any).
fn prefixes(public_key: &str, customer: &str) -> String {
    format!(
        r#"[settings.onboarding]
operator_owner = "resolver"
evidence_keys = ["{public_key}"]

[[prefix]]
cidr = "1.1.1.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "1.1.1.0/24"
service = "resolver"

[[binding]]
cidr = "{CUSTOMER}"
service = "cdn"

[[prefix]]
cidr = "{CUSTOMER}"
origin_asn = 64999
owner = "byoip-customer"
announce = {{ split = 24 }}
{customer}
"#
    )
}

/// Onboards and verifies the customer's prefix in a store under `directory`; answers the
/// settings file and the public key.
fn onboard_and_verify(directory: &Path) -> (PathBuf, String, String) {
    let settings_path = directory.join("onboarding.toml");
    check(
        std::fs::write(
            &settings_path,
            "operator_asn = 13335\noperator_owner = \"resolver\"\nsigning_key = \"onboarding.key\"\nstore = \"onboarding.redb\"\n[rdns]\nnameservers = [\"127.0.0.1:53\"]\n[irr]\nserver = \"127.0.0.1:43\"\nsources = [\"TEST\"]\n",
        ),
        "writing the onboarding settings",
    );
    let settings = check(
        OnboardingSettings::load(&settings_path),
        "onboarding settings",
    );
    let key = check(
        generate_signing_key(&settings.signing_key),
        "the onboarding key",
    );
    let store = check(
        OnboardingStore::open(&settings.store),
        "the onboarding store",
    );
    let now = now_unix();
    let request = OnboardRequest {
        cidr: prefix(CUSTOMER),
        owner: "byoip-customer".into(),
        origin_asn: 64999,
        split: Some(24),
        irr_source: "TEST".into(),
    };
    let onboarding = check(issue(&settings, &store, &request, now), "onboarding");
    let vrps = topologyd_rpki_vrps(directory);
    let ownership = CheckEvidence {
        kind: CheckKind::Rdns,
        status: CheckStatus::Valid,
        queried: topologyd_ownership::challenge_record_names(prefix(CUSTOMER)),
        server: "127.0.0.1:53".into(),
        found: vec![onboarding.token.token.clone()],
        checked_at_unix: now,
        detail: "the token is in every covering zone".into(),
    };
    let checks = vec![ownership, roa_check(&onboarding, &vrps, now)];
    let valid = check(
        complete_verification(&store, &key, &onboarding, checks, now),
        "verifying",
    );
    assert_eq!(valid.state, OnboardingState::Valid, "{:?}", valid.checks);
    let evidence = valid
        .evidence
        .unwrap_or_else(|| panic!("a valid onboarding carries evidence"));
    let entry = evidence.topology_entry(true);
    let table = entry
        .split("[prefix.evidence]")
        .nth(1)
        .unwrap_or_else(|| panic!("{entry}"));
    (
        settings_path,
        key_text(&key.verifying_key()),
        format!("[prefix.evidence]{table}"),
    )
}

/// The VRPs of an rpki-client JSON file: the customer's ROA for our split.
fn topologyd_rpki_vrps(directory: &Path) -> VrpInput {
    let path = directory.join("vrps.json");
    let text = format!(
        "{{\"roas\": [{{\"prefix\": \"{CUSTOMER}\", \"maxLength\": 24, \"asn\": \"AS64999\"}}]}}"
    );
    check(std::fs::write(&path, &text), "writing the VRPs");
    VrpInput {
        vrps: Some(check(
            topologyd_rpki::VrpSet::from_rpki_client_json("vrps.json", &text),
            "the VRPs",
        )),
        source: path.display().to_string(),
    }
}

/// `topoctl push FILES` as the admin, with the onboarding settings in the environment.
fn push(
    daemon: &Topologyd,
    pki: &ControlPki,
    settings: &Path,
    files: &[PathBuf],
) -> (Option<i32>, String) {
    let identity = check(pki.client(ADMIN), "a client certificate");
    let control = daemon
        .config
        .control
        .as_ref()
        .map(|control| control.listen)
        .unwrap_or_else(|| panic!("no control listener"));
    let output = check(
        Command::new(check(binaries(), "binaries").join("topoctl"))
            .arg("push")
            .args(["--daemon", &control.to_string()])
            .arg("--cert")
            .arg(&identity.certificate)
            .arg("--key")
            .arg(&identity.private_key)
            .arg("--ca")
            .arg(&pki.ca)
            .args(["--intent", "service:cdn"])
            .args(files)
            .env("TOPOCTL_ONBOARDING", settings)
            .env(
                "TOPOCTL_CACHE_DIR",
                settings.with_extension("topoctl-cache"),
            )
            .env_remove("TOPOCTL_DAEMON")
            .stdin(Stdio::null())
            .output(),
        "running topoctl push",
    );
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn verified_evidence_reaches_bird_and_revocation_refuses_the_next_push() {
    let scratch = check(tempfile::tempdir(), "a scratch directory");
    let (settings, public_key, evidence) = onboard_and_verify(scratch.path());
    let bundle = |name: &str, customer: &str| {
        check(
            write_files(
                &scratch.path().join(name),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", SERVICES),
                    ("prefixes.toml", &prefixes(&public_key, customer)),
                ],
            ),
            "writing a bundle",
        )
    };

    // Staged: advertise = false, with the evidence already in place.
    let staged = prefixes(&public_key, &format!("advertise = false\n\n{evidence}"));
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[(ADMIN, "admin")],
    ));
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(
        Topologyd::start(
            daemon,
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &staged),
            ],
        ),
        "starting topologyd with the staged prefix",
    );
    wait_converged(&mut topologyd, &[&bird]);
    let before = wait_for_routes(&bird, 1);
    assert!(before.contains_key(&prefix("1.1.1.0/24")), "{before:?}");

    // Advertised without evidence: invalid, BIRD unchanged.
    let (code, output) = push(
        &topologyd,
        &pki,
        &settings,
        &bundle("bare", "advertise = true\n"),
    );
    assert_eq!(code, Some(4), "{output}");
    assert!(
        output.contains("G6: customer prefix 198.51.100.0/22 (owner \"byoip-customer\") is advertised without valid ownership evidence"),
        "{output}"
    );
    assert!(output.contains("prefixes.toml:"), "{output}");
    assert_eq!(check(bird.routes(), "BIRD routes").len(), 1);

    // Advertised with the evidence: applied, BIRD learns the four /24s.
    let flipped = bundle("flipped", &format!("advertise = true\n\n{evidence}"));
    let (code, output) = push(&topologyd, &pki, &settings, &flipped);
    assert_eq!(code, Some(2), "{output}");
    let routes = wait_for_routes(&bird, 5);
    for index in 0..4 {
        let route = &routes[&prefix(&format!("198.51.{}.0/24", 100 + index))];
        assert_eq!(route.as_path.last(), Some(&64999), "{route:?}");
    }

    // Revoked: a push that still advertises it is refused before the daemon is asked.
    let revoke = check(
        Command::new(check(binaries(), "binaries").join("topoctl"))
            .args(["prefix", "revoke", CUSTOMER])
            .env("TOPOCTL_ONBOARDING", &settings)
            .output(),
        "running topoctl prefix revoke",
    );
    assert_eq!(revoke.status.code(), Some(2), "{revoke:?}");
    let with_more = prefixes(
        &public_key,
        &format!(
            "advertise = true\n\n{evidence}\n[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"resolver\"\n"
        ),
    );
    let files = check(
        write_files(
            &scratch.path().join("after-revoke"),
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &with_more),
            ],
        ),
        "writing a bundle",
    );
    let (code, output) = push(&topologyd, &pki, &settings, &files);
    assert_eq!(code, Some(3), "{output}");
    assert!(
        output.contains("prefix 198.51.100.0/22 (owner \"byoip-customer\") is still advertised, but its onboarding was revoked"),
        "{output}"
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    let after = check(bird.routes(), "BIRD routes");
    assert_eq!(
        after.len(),
        5,
        "nothing added, nothing withdrawn: {after:?}"
    );
}
