//! Evidence verifies only for its own prefix, owner, origin ASN and key: fixed cases and a
//! proptest of random mutations.

use proptest::prelude::*;

use super::*;

fn claim(prefix: &str) -> EvidenceClaim {
    EvidenceClaim {
        prefix: prefix.parse().expect("a prefix"),
        owner: "acme".into(),
        origin_asn: 64500,
        longest_announced: 24,
        token_sha256: crate::token::token_digest("topologyd-verify-00"),
        checks: vec![CheckKind::Roa, CheckKind::Rdns],
        verified_at_unix: 1_764_936_000,
    }
}

fn keys_of(key: &SigningKey) -> EvidenceKeys {
    EvidenceKeys::parse([key_text(&key.verifying_key()).as_str()]).expect("a key")
}

#[test]
fn evidence_verifies_for_its_own_prefix_owner_and_asn_only() {
    let key = signing_key([1; 32]);
    let keys = keys_of(&key);
    let evidence = claim("198.51.100.0/24").sign(&key);
    assert_eq!(evidence.claim.checks, [CheckKind::Rdns, CheckKind::Roa]);
    let names = evidence.check_names();
    let written = evidence.written(&names);
    let prefix: IpNet = "198.51.100.0/24".parse().expect("a prefix");
    assert_eq!(keys.verify(prefix, "acme", 64500, written), Ok(()));
    let other: IpNet = "198.51.101.0/24".parse().expect("a prefix");
    assert_eq!(
        keys.verify(other, "acme", 64500, written),
        Err(EvidenceError::BadSignature)
    );
    assert_eq!(
        keys.verify(prefix, "other", 64500, written),
        Err(EvidenceError::BadSignature)
    );
    assert_eq!(
        keys.verify(prefix, "acme", 64501, written),
        Err(EvidenceError::BadSignature)
    );
    let stranger = keys_of(&signing_key([2; 32]));
    assert!(matches!(
        stranger.verify(prefix, "acme", 64500, written),
        Err(EvidenceError::UnknownKey(_))
    ));
}

#[test]
fn the_longest_announced_length_is_signed() {
    let key = signing_key([1; 32]);
    let keys = keys_of(&key);
    let evidence = claim("198.51.100.0/24").sign(&key);
    let names = evidence.check_names();
    let prefix: IpNet = "198.51.100.0/24".parse().expect("a prefix");
    let mut written = evidence.written(&names);
    assert_eq!(keys.verify(prefix, "acme", 64500, written), Ok(()));
    written.longest_announced = 28;
    assert_eq!(
        keys.verify(prefix, "acme", 64500, written),
        Err(EvidenceError::BadSignature)
    );
    assert!(
        evidence
            .topology_entry(true)
            .contains("longest_announced = 24\n")
    );
}

#[test]
fn ownership_without_intent_is_incomplete() {
    let key = signing_key([1; 32]);
    let mut partial = claim("198.51.100.0/24");
    partial.checks = vec![CheckKind::Rdns];
    let evidence = partial.sign(&key);
    let names = evidence.check_names();
    assert!(matches!(
        keys_of(&key).verify(
            evidence.claim.prefix,
            "acme",
            64500,
            evidence.written(&names)
        ),
        Err(EvidenceError::IncompleteChecks(_))
    ));
}

#[test]
fn batch_verification_names_the_bad_item() {
    let key = signing_key([3; 32]);
    let keys = keys_of(&key);
    let mut items = Vec::new();
    for index in 0..8u8 {
        let prefix = format!("198.51.{index}.0/24");
        let evidence = claim(&prefix).sign(&key);
        let names = evidence.check_names();
        // The fifth is presented for another owner.
        let owner = if index == 4 { "mallory" } else { "acme" };
        items.push(
            keys.prepare(
                evidence.claim.prefix,
                owner,
                64500,
                evidence.written(&names),
            )
            .expect("well formed"),
        );
    }
    let results = verify_all(&items);
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 7);
    assert_eq!(results[4], Err(EvidenceError::BadSignature));
    items.remove(4);
    assert!(verify_all(&items).iter().all(Result::is_ok));
}

#[test]
fn keys_parse_from_their_text_only() {
    let key = signing_key([5; 32]).verifying_key();
    assert_eq!(parse_key(&key_text(&key)), Ok(key));
    assert!(parse_key("ed25519:00").is_err());
    assert!(parse_key(&key_text(&key).replace("ed25519:", "rsa:")).is_err());
    assert_eq!(key_fingerprint(&key).len(), 64 + 15);
}

proptest! {
    /// Any change to the prefix, owner, ASN, digest, checks, time or signature, or another
    /// key, makes the evidence fail; the untouched evidence always verifies.
    #[test]
    fn any_mutation_is_refused(
        address in any::<u32>(),
        length in 8u8..=24,
        asn in any::<u32>(),
        secret in any::<[u8; 32]>(),
        mutation in 0usize..8,
        flip in any::<u8>(),
    ) {
        let prefix = IpNet::new(std::net::IpAddr::V4(address.into()), length).expect("length <= 32").trunc();
        let key = signing_key(secret);
        let keys = keys_of(&key);
        let mut base = claim("10.0.0.0/8");
        base.prefix = prefix;
        base.origin_asn = asn;
        let evidence = base.sign(&key);
        let names = evidence.check_names();
        prop_assert_eq!(keys.verify(prefix, "acme", asn, evidence.written(&names)), Ok(()));
        let mut changed = evidence.clone();
        let mut names_changed = names.clone();
        let (mut prefix2, mut owner2, mut asn2) = (prefix, "acme".to_string(), asn);
        let flip = flip | 1;
        match mutation {
            0 => prefix2 = IpNet::new(std::net::IpAddr::V4((address ^ (1u32 << (32 - u32::from(length)))).into()), length).expect("valid").trunc(),
            1 => owner2.push(char::from(b'a' + flip % 26)),
            2 => asn2 ^= u32::from(flip),
            3 => {
                let mut bytes = changed.claim.token_sha256.into_bytes();
                bytes[usize::from(flip) % 64] = if bytes[usize::from(flip) % 64] == b'0' { b'1' } else { b'0' };
                changed.claim.token_sha256 = String::from_utf8(bytes).expect("ascii");
            }
            4 => names_changed = vec!["irr".into(), "roa".into()],
            5 => changed.claim.verified_at_unix ^= u64::from(flip),
            6 => {
                let mut bytes = changed.signature.into_bytes();
                let at = usize::from(flip) % 128;
                bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
                changed.signature = String::from_utf8(bytes).expect("ascii");
            }
            _ => {
                let other = signing_key(secret.map(|byte| byte ^ flip));
                changed = evidence.claim.clone().sign(&other);
                changed.key_id = evidence.key_id.clone();
            }
        }
        prop_assert!(keys.verify(prefix2, &owner2, asn2, changed.written(&names_changed)).is_err());
    }
}
