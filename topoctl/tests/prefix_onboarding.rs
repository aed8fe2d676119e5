//! `topoctl prefix` as an operator runs it: onboard prints what to publish (both /24 zones of a
//! /23), verify runs the checks and records them (the network checks are not in this build, so
//! the prefix stays pending), the library path that follows passed checks makes signed
//! evidence, `check` accepts the topology with it and refuses it without (G6, file:line:col),
//! the LOA renders as a PDF that `pdftotext` reads back, and a revoked onboarding makes `plan`
//! refuse a topology that still advertises the prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use topoctl::onboard::settings::{OnboardingSettings, load_signing_key};
use topoctl::onboard::store::OnboardingStore;
use topoctl::onboard::verify::{VrpInput, complete_verification, now_unix, roa_check};
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus, OnboardingState};

const CIDR: &str = "198.51.100.0/23";

fn topoctl(arguments: &[&str], settings: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topoctl"))
        .args(arguments)
        .env("TOPOCTL_ONBOARDING", settings)
        .output()
        .unwrap_or_else(|error| panic!("running topoctl: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/topology")
        .join(name)
}

/// A topology whose prefixes file declares the operator and key and holds the customer prefix
/// (`evidence`: its [prefix.evidence] table, or nothing).
fn topology(directory: &Path, public_key: &str, advertise: bool, evidence: &str) -> Vec<String> {
    let path = directory.join(format!("prefixes-{advertise}-{}.toml", evidence.len()));
    write(
        &path,
        &format!(
            "[settings.onboarding]\noperator_owner = \"example-net\"\nevidence_keys = [\"{public_key}\"]\n\n[[prefix]]\ncidr = \"{CIDR}\"\norigin_asn = 64500\nowner = \"acme\"\nadvertise = {advertise}\nannounce = {{ split = 24 }}\n{evidence}\n[[binding]]\ncidr = \"{CIDR}\"\nservice = \"cdn\"\n"
        ),
    );
    let services = directory.join("services.toml");
    write(
        &services,
        "[[service]]\nname = \"cdn\"\ntopology = \"all\"\n",
    );
    vec![
        example("fleet.toml").display().to_string(),
        services.display().to_string(),
        path.display().to_string(),
    ]
}

fn with(first: &[&str], files: &[String]) -> Vec<String> {
    first
        .iter()
        .map(|item| (*item).to_string())
        .chain(files.iter().cloned())
        .collect()
}

fn run(arguments: &[String], settings: &Path) -> Output {
    let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
    topoctl(&borrowed, settings)
}

#[test]
fn onboard_verify_evidence_check_loa_and_revoke() {
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("tempdir: {error}"));
    let root = directory.path();
    let settings = root.join("onboarding.toml");
    write(
        &settings,
        "operator_asn = 64500\noperator_owner = \"example-net\"\nsigning_key = \"onboarding.key\"\nstore = \"state/onboarding.redb\"\n[rdns]\nnameservers = [\"127.0.0.1:53535\"]\ntimeout_ms = 200\n[irr]\nserver = \"127.0.0.1:43434\"\nsources = [\"TEST\"]\ntimeout_ms = 200\n",
    );
    let vrps = root.join("vrps.json");
    write(
        &vrps,
        "{\"roas\": [{\"prefix\": \"198.51.100.0/23\", \"maxLength\": 24, \"asn\": \"AS64500\"}]}",
    );

    let key = topoctl(&["prefix", "key", "--generate", "--json"], &settings);
    assert_eq!(key.status.code(), Some(0), "{}", text(&key.stderr));
    let key: serde_json::Value = serde_json::from_slice(&key.stdout).unwrap_or_default();
    let public_key = key["public_key"].as_str().unwrap_or_default().to_string();
    assert!(public_key.starts_with("ed25519:"), "{key}");

    let onboard = topoctl(
        &[
            "prefix",
            "onboard",
            CIDR,
            "--owner",
            "acme",
            "--split",
            "24",
            "--irr-source",
            "TEST",
        ],
        &settings,
    );
    let printed = text(&onboard.stdout);
    assert_eq!(onboard.status.code(), Some(0), "{}", text(&onboard.stderr));
    assert!(printed.contains("route: 198.51.100.0/23"), "{printed}");
    assert!(printed.contains("origin: AS64500"), "{printed}");
    assert!(
        printed.contains(
            "_topologyd-challenge.100.51.198.in-addr.arpa. 300 IN TXT \"topologyd-verify-"
        ),
        "{printed}"
    );
    assert!(
        printed.contains("_topologyd-challenge.101.51.198.in-addr.arpa. 300 IN TXT"),
        "{printed}"
    );

    // The network checks are not in this build: the prefix stays pending; the ROA check ran.
    let vrps_text = vrps.display().to_string();
    let verify = topoctl(&["prefix", "verify", CIDR, "--vrps", &vrps_text], &settings);
    assert_eq!(verify.status.code(), Some(3), "{}", text(&verify.stdout));
    assert!(
        text(&verify.stdout).contains("198.51.100.0/23: pending"),
        "{}",
        text(&verify.stdout)
    );
    assert!(
        text(&verify.stdout).contains("roa valid at"),
        "{}",
        text(&verify.stdout)
    );

    // What `verify` does once the ownership check passed: the library path.
    let loaded = OnboardingSettings::load(&settings).unwrap_or_else(|error| panic!("{error}"));
    {
        let store = OnboardingStore::open(&loaded.store).unwrap_or_else(|error| panic!("{error}"));
        let signing =
            load_signing_key(&loaded.signing_key).unwrap_or_else(|error| panic!("{error}"));
        let prefix = CIDR.parse().unwrap_or_else(|error| panic!("{error}"));
        let onboarding = store
            .get(prefix)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("onboarded"));
        let now = now_unix();
        let vrp_set = topologyd_rpki::VrpSet::from_rpki_client_json(
            "vrps.json",
            &std::fs::read_to_string(&vrps).unwrap_or_default(),
        )
        .ok();
        let checks = vec![
            CheckEvidence {
                kind: CheckKind::Rdns,
                status: CheckStatus::Valid,
                queried: topologyd_ownership::challenge_record_names(prefix),
                server: "127.0.0.1:53535".into(),
                found: vec![onboarding.token.token.clone()],
                checked_at_unix: now,
                detail: "the token is in every covering zone".into(),
            },
            roa_check(
                &onboarding,
                &VrpInput {
                    vrps: vrp_set,
                    source: vrps_text.clone(),
                },
                now,
            ),
        ];
        let valid = complete_verification(&store, &signing, &onboarding, checks, now)
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(valid.state, OnboardingState::Valid);
    }

    let status = topoctl(&["prefix", "status", CIDR], &settings);
    let shown = text(&status.stdout);
    assert!(shown.contains("valid"), "{shown}");
    let evidence = shown
        .split("[prefix.evidence]")
        .nth(1)
        .unwrap_or_else(|| panic!("no evidence in {shown}"));
    let evidence = format!("\n[prefix.evidence]{}", evidence.trim_end());

    // G6: accepted with the evidence, refused without it, at file:line:col.
    let accepted = run(
        &with(&["check"], &topology(root, &public_key, true, &evidence)),
        &settings,
    );
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}{}",
        text(&accepted.stdout),
        text(&accepted.stderr)
    );
    let refused = run(
        &with(&["check"], &topology(root, &public_key, true, "")),
        &settings,
    );
    let diagnostics = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert_eq!(refused.status.code(), Some(4), "{diagnostics}");
    assert!(
        diagnostics.contains("G6: customer prefix 198.51.100.0/23"),
        "{diagnostics}"
    );
    assert!(diagnostics.contains(".toml:6:8"), "{diagnostics}");

    // The LOA: a PDF that pdftotext reads back, and the same content as JSON.
    let pdf = root.join("loa.pdf");
    let loa = topoctl(
        &["prefix", "loa", CIDR, "--out", &pdf.display().to_string()],
        &settings,
    );
    assert_eq!(loa.status.code(), Some(0), "{}", text(&loa.stderr));
    let extracted = Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .unwrap_or_else(|error| panic!("pdftotext (poppler-utils): {error}"));
    let extracted = text(&extracted.stdout);
    assert!(
        extracted.contains("Route origin authorisation: 198.51.100.0/23"),
        "{extracted}"
    );
    assert!(
        extracted.contains("Authorised origin ASN: AS64500"),
        "{extracted}"
    );
    assert!(
        extracted.contains("198.51.100.0/23 max-length 24 AS64500"),
        "{extracted}"
    );
    // pdftoppm renders the first page (an image to look at when the layout changes).
    let rendered = Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-f", "1", "-l", "1"])
        .arg(&pdf)
        .arg(root.join("page"))
        .status()
        .unwrap_or_else(|error| panic!("pdftoppm (poppler-utils): {error}"));
    assert!(rendered.success());
    let png = std::fs::read(root.join("page-1.png")).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 2_000,
        "{} bytes",
        png.len()
    );
    let json = topoctl(&["prefix", "loa", CIDR, "--json"], &settings);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap_or_default();
    assert_eq!(json["authorised_origin_asn"], 64500);
    let fingerprint = json["key_fingerprint"].as_str().unwrap_or_default();
    assert!(
        extracted.contains(fingerprint),
        "{fingerprint} not in {extracted}"
    );

    // Revoked: plan refuses a topology that still advertises it, not one that withdraws it.
    let revoke = topoctl(&["prefix", "revoke", CIDR], &settings);
    assert_eq!(revoke.status.code(), Some(2), "{}", text(&revoke.stderr));
    let advertised = topology(root, &public_key, true, &evidence);
    let mut plan = vec!["plan".to_string(), "--old".into()];
    plan.extend(advertised.iter().cloned());
    plan.push("--new".into());
    plan.extend(advertised.iter().cloned());
    let refused = run(&plan, &settings);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stdout));
    assert!(text(&refused.stderr).contains("prefix 198.51.100.0/23 (owner \"acme\") is still advertised, but its onboarding was revoked"), "{}", text(&refused.stderr));
    let withdrawn = topology(root, &public_key, false, &evidence);
    let mut plan = vec!["plan".to_string(), "--old".into()];
    plan.extend(advertised.iter().cloned());
    plan.push("--new".into());
    plan.extend(withdrawn.iter().cloned());
    // The explicit withdrawal is judged by the guards like any other (G2 and G3 want it meant).
    for route in ["198.51.100.0/24", "198.51.101.0/24"] {
        plan.push("--override".into());
        plan.push(format!("global-withdrawal:{route}"));
    }
    plan.extend(["--intent".to_string(), "service:cdn".to_string()]);
    let allowed = run(&plan, &settings);
    assert_eq!(
        allowed.status.code(),
        Some(2),
        "{}{}",
        text(&allowed.stdout),
        text(&allowed.stderr)
    );
    assert!(
        !text(&allowed.stderr).contains("revoked"),
        "{}",
        text(&allowed.stderr)
    );
    // A second verification of the used token is refused.
    let again = topoctl(&["prefix", "verify", CIDR, "--vrps", &vrps_text], &settings);
    assert!(
        text(&again.stdout).contains("revoked"),
        "{}",
        text(&again.stdout)
    );
}
