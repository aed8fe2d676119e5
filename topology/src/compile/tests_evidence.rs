//! G6: customer prefixes advertised only with evidence that verifies for their own cidr, owner
//! and origin ASN; the operator's own prefixes, unadvertised ones and topologies without
//! `[settings.onboarding]` are left alone.

#![allow(clippy::unwrap_used)]

use super::*;
use topologyd_ownership::evidence::{EvidenceClaim, key_text, signing_key};
use topologyd_ownership::{CheckKind, token::token_digest};

const FLEET: &str = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\n[[service]]\nname = \"web\"\ntopology = \"all\"\n";

fn settings(secret: u8) -> String {
    format!(
        "[settings.onboarding]\noperator_owner = \"example-net\"\nevidence_keys = [\"{}\"]\n",
        key_text(&signing_key([secret; 32]).verifying_key())
    )
}

/// A prefix table (and its binding) for `cidr` owned by `owner`, with evidence signed by key
/// `secret` for `signed_cidr` when given.
fn prefix(cidr: &str, owner: &str, advertise: bool, signed_for: Option<(&str, u8)>) -> String {
    let mut text = format!(
        "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"{owner}\"\nadvertise = {advertise}\n"
    );
    if let Some((signed_cidr, secret)) = signed_for {
        let evidence = EvidenceClaim {
            prefix: signed_cidr.parse().unwrap(),
            owner: owner.to_string(),
            origin_asn: 64500,
            longest_announced: signed_cidr.parse::<IpNet>().unwrap().prefix_len(),
            token_sha256: token_digest("topologyd-verify-test"),
            checks: vec![CheckKind::Rdns, CheckKind::Roa],
            verified_at_unix: 1_764_936_000,
        }
        .sign(&signing_key([secret; 32]));
        let entry = evidence.topology_entry(advertise);
        let table = entry.split("[prefix.evidence]").nth(1).unwrap();
        text.push_str("\n[prefix.evidence]");
        text.push_str(table);
    }
    text.push_str(&format!(
        "\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"web\"\n\n"
    ));
    text
}

fn compile_with(settings: &str, prefixes: &str) -> Result<Topology, String> {
    let sources = vec![
        Source::new("fleet.toml", format!("{settings}\n{FLEET}")),
        Source::new("prefixes.toml", prefixes.to_string()),
    ];
    compile(&sources, 1).map_err(|diagnostics| diagnostics.to_string())
}

#[test]
fn g6_refuses_a_customer_prefix_without_evidence_and_says_where() {
    let error =
        compile_with(&settings(1), &prefix("198.51.100.0/24", "acme", true, None)).unwrap_err();
    assert!(error.contains("prefixes.toml:2:8"), "{error}");
    assert!(
        error.contains("G6: customer prefix 198.51.100.0/24 (owner \"acme\") is advertised without valid ownership evidence: it has no [prefix.evidence]"),
        "{error}"
    );
    assert!(
        error.contains("topoctl prefix verify 198.51.100.0/24"),
        "{error}"
    );
}

#[test]
fn g6_accepts_valid_evidence_and_leaves_the_operator_alone() {
    let text = [
        prefix(
            "198.51.100.0/24",
            "acme",
            true,
            Some(("198.51.100.0/24", 1)),
        ),
        prefix("203.0.113.0/24", "example-net", true, None),
        prefix("192.0.2.0/24", "other", false, None),
    ]
    .concat();
    let topology = compile_with(&settings(1), &text).unwrap();
    assert!(
        topology
            .prefixes()
            .iter()
            .any(|prefix| prefix.evidence().is_some())
    );
    // Without [settings.onboarding] nothing is required.
    compile_with("", &prefix("192.0.2.0/24", "other", true, None)).unwrap();
}

#[test]
fn g6_refuses_evidence_for_another_prefix_or_key() {
    let moved = compile_with(
        &settings(1),
        &prefix(
            "198.51.100.0/24",
            "acme",
            true,
            Some(("198.51.101.0/24", 1)),
        ),
    )
    .unwrap_err();
    assert!(moved.contains("the signature does not verify"), "{moved}");
    assert!(moved.contains("prefixes.toml:7:1"), "{moved}");
    let stranger = compile_with(
        &settings(1),
        &prefix(
            "198.51.100.0/24",
            "acme",
            true,
            Some(("198.51.100.0/24", 2)),
        ),
    )
    .unwrap_err();
    assert!(
        stranger.contains("not among the configured evidence keys"),
        "{stranger}"
    );
}

#[test]
fn g6_names_each_bad_prefix_among_many_good_ones() {
    let mut text = String::new();
    for index in 0..20 {
        let cidr = format!("10.0.{index}.0/24");
        let signed = if index == 7 {
            "10.0.99.0/24".to_string()
        } else {
            cidr.clone()
        };
        text.push_str(&prefix(&cidr, "acme", true, Some((&signed, 1))));
    }
    let error = compile_with(&settings(1), &text).unwrap_err();
    assert_eq!(error.matches("G6:").count(), 1, "{error}");
    assert!(error.contains("10.0.7.0/24"), "{error}");
}

fn compile_on(baseline: &Topology, settings: &str, prefixes: &str) -> Result<Topology, String> {
    let sources = vec![
        Source::new("fleet.toml", format!("{settings}\n{FLEET}")),
        Source::new("prefixes.toml", prefixes.to_string()),
    ];
    compile_against(sources, 2, baseline).map_err(|diagnostics| diagnostics.to_string())
}

#[test]
fn g6_against_a_baseline_verifies_again_whatever_it_did_not_verify_the_same_way() {
    let two_keys = format!(
        "[settings.onboarding]\noperator_owner = \"example-net\"\nevidence_keys = [\"{}\", \"{}\"]\n",
        key_text(&signing_key([1; 32]).verifying_key()),
        key_text(&signing_key([2; 32]).verifying_key())
    );
    let signed_by_first = prefix(
        "198.51.100.0/24",
        "acme",
        true,
        Some(("198.51.100.0/24", 1)),
    );
    let baseline = compile_with(&two_keys, &signed_by_first).unwrap();
    // Unchanged: accepted (verified when the baseline compiled).
    compile_on(&baseline, &two_keys, &signed_by_first).unwrap();
    // The first key removed from the settings: verified again, and refused.
    let error = compile_on(&baseline, &settings(2), &signed_by_first).unwrap_err();
    assert!(
        error.contains("not among the configured evidence keys"),
        "{error}"
    );
    // Evidence the baseline did not advertise (so never verified) is verified when flipped.
    let moved = prefix(
        "198.51.100.0/24",
        "acme",
        false,
        Some(("198.51.101.0/24", 1)),
    );
    let staged = compile_with(&two_keys, &moved).unwrap();
    let error = compile_on(
        &staged,
        &two_keys,
        &moved.replace("advertise = false", "advertise = true"),
    )
    .unwrap_err();
    assert!(error.contains("the signature does not verify"), "{error}");
}

/// `prefix`'s text for 198.51.100.0/22 owned by acme, with evidence signed for routes up to
/// `/signed_longest`, announced with `announce`.
fn split_prefix(signed_longest: u8, announce: &str) -> String {
    let evidence = EvidenceClaim {
        prefix: "198.51.100.0/22".parse().unwrap(),
        owner: "acme".into(),
        origin_asn: 64500,
        longest_announced: signed_longest,
        token_sha256: token_digest("topologyd-verify-test"),
        checks: vec![CheckKind::Rdns, CheckKind::Roa],
        verified_at_unix: 1_764_936_000,
    }
    .sign(&signing_key([1; 32]));
    let entry = evidence.topology_entry(true).replace(
        "advertise = true\n",
        &format!("advertise = true\n{announce}"),
    );
    format!("{entry}\n[[binding]]\ncidr = \"198.51.100.0/22\"\nservice = \"web\"\n")
}

#[test]
fn g6_refuses_an_entry_announcing_longer_routes_than_its_evidence_was_verified_for() {
    compile_with(&settings(1), &split_prefix(22, "")).unwrap();
    compile_with(
        &settings(1),
        &split_prefix(24, "announce = { split = 24 }\n"),
    )
    .unwrap();
    compile_with(
        &settings(1),
        &split_prefix(24, "announce = { split = 23 }\n"),
    )
    .unwrap();
    let longer = compile_with(
        &settings(1),
        &split_prefix(22, "announce = { split = 24 }\n"),
    )
    .unwrap_err();
    assert!(longer.contains("prefixes.toml:6:"), "{longer}");
    assert!(
        longer.contains("announces routes of /24 (split /24), but its evidence was verified for routes up to /22 only"),
        "{longer}"
    );
    assert!(
        longer.contains("topoctl prefix onboard 198.51.100.0/22 --owner acme --split 24"),
        "{longer}"
    );
    // Raising the written length without signing it again breaks the signature.
    let forged = split_prefix(22, "announce = { split = 24 }\n")
        .replace("longest_announced = 22", "longest_announced = 24");
    let forged = compile_with(&settings(1), &forged).unwrap_err();
    assert!(forged.contains("the signature does not verify"), "{forged}");
}

#[test]
fn g6_refuses_evidence_whose_token_digest_is_revoked_in_the_settings() {
    let text = prefix(
        "198.51.100.0/24",
        "acme",
        true,
        Some(("198.51.100.0/24", 1)),
    );
    let accepted = compile_with(&settings(1), &text).unwrap();
    let revoked = format!(
        "{}revoked = [\"{}\"]\n",
        settings(1),
        token_digest("topologyd-verify-test").to_ascii_uppercase()
    );
    let error = compile_with(&revoked, &text).unwrap_err();
    assert!(error.contains("prefixes.toml:7:1"), "{error}");
    assert!(
        error.contains("is revoked in [settings.onboarding] revoked"),
        "{error}"
    );
    // Pushed against a running generation that advertised it, it is still refused.
    let error = compile_on(&accepted, &revoked, &text).unwrap_err();
    assert!(error.contains("is revoked"), "{error}");
    // Another token's digest leaves it alone.
    let other = format!(
        "{}revoked = [\"{}\"]\n",
        settings(1),
        token_digest("another")
    );
    compile_with(&other, &text).unwrap();
}
