//! The store: onboardings survive reopening, a token is accepted once, revocation feeds the
//! revocation list, and a failed verification changes nothing.

use topologyd_ownership::token::TOKEN_RANDOM_BYTES;
use topologyd_ownership::{CheckKind, CheckStatus, EvidenceClaim, ValidationToken};

use super::*;

fn onboarding(prefix: &str, random: u8) -> Onboarding {
    Onboarding::new(
        ValidationToken::issue(
            [random; TOKEN_RANDOM_BYTES],
            prefix.parse().expect("a prefix"),
            "acme",
            64500,
            1_000,
            1_000,
        ),
        24,
    )
}

fn passed(kind: CheckKind) -> CheckEvidence {
    CheckEvidence {
        kind,
        status: CheckStatus::Valid,
        queried: Vec::new(),
        server: "test".into(),
        found: Vec::new(),
        checked_at_unix: 1_500,
        detail: String::new(),
    }
}

fn sign(onboarding: &Onboarding) -> SignedEvidence {
    EvidenceClaim {
        prefix: onboarding.token.prefix,
        owner: onboarding.token.owner.clone(),
        origin_asn: onboarding.token.origin_asn,
        longest_announced: onboarding.longest_announced,
        token_sha256: onboarding.token.digest(),
        checks: onboarding.passed(),
        verified_at_unix: 1_500,
    }
    .sign(&topologyd_ownership::evidence::signing_key([9; 32]))
}

#[test]
fn a_valid_verification_is_durable_and_its_token_is_accepted_once() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("state").join("onboarding.redb");
    let prefix: IpNet = "198.51.100.0/24".parse().expect("a prefix");
    {
        let store = OnboardingStore::open(&path).expect("opens");
        store
            .insert_new(&onboarding("198.51.100.0/24", 1))
            .expect("stored");
        let valid = store
            .record_verification(
                &onboarding("198.51.100.0/24", 1),
                vec![passed(CheckKind::Rdns), passed(CheckKind::Roa)],
                1_500,
                sign,
            )
            .expect("recorded");
        assert_eq!(valid.state, OnboardingState::Valid);
        assert!(valid.evidence.is_some());
    }
    let store = OnboardingStore::open(&path).expect("reopens");
    let stored = store.get(prefix).expect("reads").expect("present");
    assert_eq!(stored.state, OnboardingState::Valid);
    assert!(matches!(
        store.record_verification(
            &onboarding("198.51.100.0/24", 1),
            vec![passed(CheckKind::Rdns), passed(CheckKind::Roa)],
            1_600,
            sign
        ),
        Err(StoreError::Transition(_))
    ));
    assert!(matches!(
        store.insert_new(&onboarding("198.51.100.0/24", 2)),
        Err(StoreError::AlreadyValid(_))
    ));
    // The same token presented again in a new onboarding is refused at verification.
    store.revoke(prefix, 1_700).expect("revoked");
    store
        .insert_new(&onboarding("198.51.100.0/24", 1))
        .expect("stored again");
    assert!(matches!(
        store.record_verification(
            &onboarding("198.51.100.0/24", 1),
            vec![passed(CheckKind::Irr), passed(CheckKind::Roa)],
            1_800,
            sign
        ),
        Err(StoreError::TokenReused(_))
    ));
    // The refused verification changed nothing.
    assert_eq!(
        store.get(prefix).expect("reads").expect("present").state,
        OnboardingState::Pending
    );
}

#[test]
fn revocation_enters_the_list_and_unknown_prefixes_are_named() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = OnboardingStore::open(&directory.path().join("o.redb")).expect("opens");
    let unknown: IpNet = "192.0.2.0/24".parse().expect("a prefix");
    assert!(matches!(
        store.revoke(unknown, 1),
        Err(StoreError::NotOnboarded(_))
    ));
    let first = onboarding("198.51.100.0/24", 3);
    store.insert_new(&first).expect("stored");
    store
        .insert_new(&onboarding("2001:db8::/32", 4))
        .expect("stored");
    assert_eq!(store.list().expect("lists").len(), 2);
    let revoked = store.revoke(first.token.prefix, 2_000).expect("revoked");
    assert_eq!(revoked.state, OnboardingState::Revoked);
    let list = store.revocations().expect("reads");
    assert_eq!(list.len(), 1);
    assert_eq!(list[&first.token.digest()].revoked_at_unix, 2_000);
}

fn onboarding_of(prefix: &str, owner: &str, random: u8) -> Onboarding {
    Onboarding::new(
        ValidationToken::issue(
            [random; TOKEN_RANDOM_BYTES],
            prefix.parse().expect("a prefix"),
            owner,
            64500,
            1_000,
            1_000,
        ),
        24,
    )
}

#[test]
fn another_owner_cannot_onboard_an_equal_covering_or_covered_prefix() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = OnboardingStore::open(&directory.path().join("o.redb")).expect("opens");
    store
        .insert_new(&onboarding_of("198.51.100.0/24", "acme", 1))
        .expect("stored");
    // Pending: already refused for another owner.
    for overlapping in ["198.51.100.0/24", "198.51.100.128/25", "198.51.0.0/16"] {
        let error = store
            .insert_new(&onboarding_of(overlapping, "mallory", 2))
            .expect_err("overlaps a pending onboarding of acme");
        let text = error.to_string();
        assert!(
            matches!(error, StoreError::OverlapsOtherOwner { .. }),
            "{text}"
        );
        assert!(
            text.contains("198.51.100.0/24") && text.contains("acme"),
            "{text}"
        );
        assert!(text.contains("revoke"), "{text}");
    }
    store
        .record_verification(
            &onboarding_of("198.51.100.0/24", "acme", 1),
            vec![passed(CheckKind::Rdns), passed(CheckKind::Roa)],
            1_500,
            sign,
        )
        .expect("valid");
    for overlapping in ["198.51.100.0/24", "198.51.100.64/26", "198.0.0.0/8"] {
        assert!(matches!(
            store.insert_new(&onboarding_of(overlapping, "mallory", 3)),
            Err(StoreError::OverlapsOtherOwner { .. })
        ));
    }
    // The same owner may onboard a more-specific; a disjoint prefix is anyone's.
    store
        .insert_new(&onboarding_of("198.51.100.0/25", "acme", 4))
        .expect("same owner");
    store
        .insert_new(&onboarding_of("198.51.101.0/24", "mallory", 5))
        .expect("disjoint");
    // Once revoked, the prefix is free for another owner.
    store
        .revoke("198.51.100.0/24".parse().expect("a prefix"), 1_600)
        .expect("revoked");
    store
        .revoke("198.51.100.0/25".parse().expect("a prefix"), 1_600)
        .expect("revoked");
    store
        .insert_new(&onboarding_of("198.51.100.0/24", "mallory", 6))
        .expect("free after revocation");
}

#[test]
fn a_verification_of_an_onboarding_replaced_meanwhile_signs_nothing() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let store = OnboardingStore::open(&directory.path().join("o.redb")).expect("opens");
    let checked = onboarding("198.51.100.0/24", 1);
    store.insert_new(&checked).expect("stored");
    // While the checks ran, the prefix was onboarded again: a new token, and a longer split.
    let mut longer = checked.clone();
    longer.longest_announced = 25;
    for replacement in [onboarding("198.51.100.0/24", 2), longer] {
        store.insert_new(&replacement).expect("replaced");
        let outcome = store.record_verification(
            &checked,
            vec![passed(CheckKind::Rdns), passed(CheckKind::Roa)],
            1_500,
            |_| panic!("nothing may be signed"),
        );
        let error = outcome.expect_err("the stored onboarding changed");
        assert!(
            matches!(error, StoreError::ChangedDuringVerification(_)),
            "{error}"
        );
        assert!(error.to_string().contains("verify again"), "{error}");
        let stored = store
            .get(checked.token.prefix)
            .expect("reads")
            .expect("present");
        assert_eq!(stored, replacement);
    }
}
