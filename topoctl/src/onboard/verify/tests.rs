//! Verification: the path from passed checks to evidence that G6 accepts, the ROA check's
//! inputs, expiry, and many prefixes under the concurrency bound (the placeholder network
//! checks leave them pending).

use std::path::Path;

use topologyd_ownership::evidence::{EvidenceKeys, key_text, signing_key};
use topologyd_rpki::Vrp;

use super::*;
use crate::onboard::command::{OnboardRequest, issue};

const SETTINGS: &str = "operator_asn = 64500\noperator_owner = \"example-net\"\nsigning_key = \"k\"\nstore = \"s.redb\"\nconcurrency = 4\n[rdns]\nnameservers = [\"127.0.0.1:5353\"]\n[irr]\nserver = \"127.0.0.1:4343\"\nsources = [\"TEST\"]\n";

fn setup(directory: &Path) -> (OnboardingSettings, OnboardingStore) {
    let settings = OnboardingSettings::parse(SETTINGS, directory).expect("valid settings");
    let store = OnboardingStore::open(&settings.store).expect("opens");
    (settings, store)
}

fn request(cidr: &str, split: Option<u8>) -> OnboardRequest {
    OnboardRequest {
        cidr: cidr.parse().expect("a prefix"),
        owner: "acme".into(),
        origin_asn: 64500,
        split,
        irr_source: "TEST".into(),
    }
}

fn vrps(max_length: u8) -> VrpInput {
    VrpInput {
        vrps: Some(
            [Vrp {
                prefix: "198.51.100.0/22".parse().expect("a prefix"),
                max_length,
                asn: 64500,
            }]
            .into_iter()
            .collect(),
        ),
        source: "vrps.json".into(),
    }
}

fn rdns_passed(now: u64) -> CheckEvidence {
    CheckEvidence {
        kind: CheckKind::Rdns,
        status: CheckStatus::Valid,
        queried: vec!["_topologyd-challenge.100.51.198.in-addr.arpa".into()],
        server: "127.0.0.1:5353".into(),
        found: vec!["topologyd-verify-…".into()],
        checked_at_unix: now,
        detail: "token found in every zone".into(),
    }
}

#[test]
fn passed_checks_make_evidence_that_verifies_for_the_prefix() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let (settings, store) = setup(directory.path());
    let now = now_unix();
    let onboarding = issue(
        &settings,
        &store,
        &request("198.51.100.0/22", Some(24)),
        now,
    )
    .expect("issued");
    let key = signing_key([4; 32]);
    let checks = vec![rdns_passed(now), roa_check(&onboarding, &vrps(24), now)];
    let valid = complete_verification(&store, &key, &onboarding, checks, now).expect("recorded");
    assert_eq!(valid.state, OnboardingState::Valid);
    let evidence = valid.evidence.expect("signed");
    let keys = EvidenceKeys::parse([key_text(&key.verifying_key()).as_str()]).expect("a key");
    let names = evidence.check_names();
    assert_eq!(names, ["rdns", "roa"]);
    assert_eq!(
        keys.verify(
            onboarding.token.prefix,
            "acme",
            64500,
            evidence.written(&names)
        ),
        Ok(())
    );
}

#[test]
fn a_roa_too_short_for_the_split_or_an_expired_token_is_not_valid() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let (settings, store) = setup(directory.path());
    let now = now_unix();
    let onboarding = issue(
        &settings,
        &store,
        &request("198.51.100.0/22", Some(24)),
        now,
    )
    .expect("issued");
    let key = signing_key([4; 32]);
    let checks = vec![rdns_passed(now), roa_check(&onboarding, &vrps(23), now)];
    let outcome = complete_verification(&store, &key, &onboarding, checks, now).expect("recorded");
    assert_eq!(outcome.state, OnboardingState::Invalid);
    assert!(outcome.evidence.is_none());
    let late = now + settings.token_lifetime_seconds;
    let checks = vec![rdns_passed(late), roa_check(&onboarding, &vrps(24), late)];
    let outcome = complete_verification(&store, &key, &onboarding, checks, late).expect("recorded");
    assert_eq!(outcome.state, OnboardingState::Expired);
    // The operator's own prefixes and host bits are refused at onboarding.
    let mut own = request("203.0.113.0/24", None);
    own.owner = "example-net".into();
    assert!(issue(&settings, &store, &own, now).is_err());
    assert!(issue(&settings, &store, &request("203.0.113.1/24", None), now).is_err());
}

#[test]
fn many_prefixes_run_under_the_bound_and_stay_pending_without_network_checks() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let (settings, store) = setup(directory.path());
    let now = now_unix();
    let prefixes: Vec<IpNet> = (0..40)
        .map(|index| {
            issue(
                &settings,
                &store,
                &request(&format!("10.{index}.0.0/24"), None),
                now,
            )
            .expect("issued")
            .token
            .prefix
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut all = prefixes.clone();
    all.push("192.0.2.0/24".parse().expect("a prefix"));
    let outcomes = runtime.block_on(verify_many(
        Arc::new(settings),
        Arc::new(store),
        Arc::new(signing_key([4; 32])),
        Arc::new(VrpInput::default()),
        all,
    ));
    assert_eq!(outcomes.len(), 41);
    for (prefix, outcome) in &outcomes[..40] {
        let onboarding = outcome.as_ref().expect("verified");
        assert_eq!(onboarding.token.prefix, *prefix);
        assert_eq!(onboarding.state, OnboardingState::Pending);
        assert!(
            onboarding
                .checks
                .iter()
                .all(|check| check.status == CheckStatus::Unreachable)
        );
    }
    assert!(
        outcomes[40]
            .1
            .as_ref()
            .is_err_and(|message| message.contains("no onboarding"))
    );
}
