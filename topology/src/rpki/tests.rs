//! RPKI unit tests: RFC 6811 validation states, and reading rpki-client JSON with positioned errors.

#![allow(clippy::unwrap_used)]

use super::*;

fn vrps(entries: &[(&str, u8, u32)]) -> VrpSet {
    let mut set = VrpSet::new();
    for (prefix, max_length, asn) in entries {
        set.insert(Vrp {
            prefix: prefix.parse().unwrap(),
            max_length: *max_length,
            asn: *asn,
        });
    }
    set
}

fn state(set: &VrpSet, prefix: &str, origin: u32) -> RpkiState {
    set.validate(&prefix.parse().unwrap(), origin).state
}

#[test]
fn rfc6811_states() {
    let set = vrps(&[
        ("1.1.1.0/24", 24, 13335),
        ("198.51.100.0/22", 23, 64500),
        ("2606:4700::/32", 48, 13335),
        ("203.0.113.0/24", 24, 0),
    ]);
    assert_eq!(state(&set, "1.1.1.0/24", 13335), RpkiState::Valid);
    assert_eq!(state(&set, "1.1.1.0/24", 4755), RpkiState::InvalidOrigin);
    assert_eq!(state(&set, "1.1.1.0/25", 13335), RpkiState::InvalidLength);
    assert_eq!(state(&set, "198.51.100.0/23", 64500), RpkiState::Valid);
    assert_eq!(
        state(&set, "198.51.100.0/24", 64500),
        RpkiState::InvalidLength
    );
    assert_eq!(state(&set, "2606:4700:4700::/48", 13335), RpkiState::Valid);
    assert_eq!(state(&set, "8.8.8.0/24", 15169), RpkiState::NotFound);
    // An AS0 VRP covers and never matches (RFC 6483 §4).
    assert_eq!(state(&set, "203.0.113.0/24", 0), RpkiState::InvalidOrigin);
    assert_eq!(
        state(&set, "203.0.113.0/24", 64500),
        RpkiState::InvalidOrigin
    );
    // A second VRP for the same prefix authorises another origin.
    let mut two = set.clone();
    two.insert(Vrp {
        prefix: "1.1.1.0/24".parse().unwrap(),
        max_length: 25,
        asn: 4755,
    });
    assert_eq!(state(&two, "1.1.1.0/25", 4755), RpkiState::Valid);
    assert_eq!(two.len(), 5);
    assert_eq!(
        two.validate(&"1.1.1.0/25".parse().unwrap(), 1)
            .covering
            .len(),
        2
    );
}

#[test]
fn reads_rpki_client_json_and_says_where_it_is_wrong() {
    let text = r#"{"metadata":{"buildtime":"2026-12-04T00:00:00Z"},"roas":[
        {"prefix":"1.1.1.0/24","maxLength":24,"asn":13335,"ta":"apnic","expires":1},
        {"prefix":"2606:4700::/32","maxLength":48,"asn":"AS13335","ta":"arin","expires":1}]}"#;
    let set = VrpSet::from_rpki_client_json("vrps.json", text).unwrap();
    assert_eq!(set.len(), 2);
    assert_eq!(state(&set, "2606:4700:4700::/48", 13335), RpkiState::Valid);
    let error = VrpSet::from_rpki_client_json("vrps.json", "{\"roas\": [}").unwrap_err();
    assert!(error.to_string().starts_with("vrps.json:1:"), "{error}");
    let error = VrpSet::from_rpki_client_json(
        "vrps.json",
        r#"{"roas":[{"prefix":"1.1.1.0/24","maxLength":16,"asn":1}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "vrps.json: roas[0] (1.1.1.0/24): maxLength 16 is outside /24../32"
    );
    let error = VrpSet::from_rpki_client_json(
        "vrps.json",
        r#"{"roas":[{"prefix":"1.1.1.1/24","maxLength":24,"asn":1}]}"#,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("did you mean 1.1.1.0/24"),
        "{error}"
    );
}
