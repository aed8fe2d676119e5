//! RPKI unit tests: RFC 6811 validation states, reading rpki-client JSON with positioned errors,
//! and the trie against a naive list over generated VRP sets (insert, remove, validate).

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

/// RFC 6811 §2 written as plainly as possible over a list: the reference for the trie.
fn naive_validate(list: &[Vrp], prefix: &IpNet, origin: u32) -> Validation {
    let mut covering: Vec<Vrp> = list
        .iter()
        .filter(|vrp| vrp.prefix.contains(prefix))
        .copied()
        .collect();
    covering.sort_unstable();
    covering.dedup();
    let state = if covering.is_empty() {
        RpkiState::NotFound
    } else if covering
        .iter()
        .any(|vrp| origin != 0 && vrp.asn == origin && prefix.prefix_len() <= vrp.max_length)
    {
        RpkiState::Valid
    } else if covering.iter().any(|vrp| origin != 0 && vrp.asn == origin) {
        RpkiState::InvalidLength
    } else {
        RpkiState::InvalidOrigin
    };
    Validation { state, covering }
}

/// VRPs and routes drawn from a small corner of 10.0.0.0/8 (and 2001:db8::/32), so that they
/// overlap often: every state is reached.
fn arbitrary_prefix() -> impl proptest::strategy::Strategy<Value = IpNet> {
    use proptest::prelude::*;
    prop_oneof![
        (0u8..4, 0u8..4, 8u8..=26).prop_map(|(second, third, length)| {
            IpNet::V4(
                Ipv4Net::new(std::net::Ipv4Addr::new(10, second, third * 64, 0), length).unwrap(),
            )
            .trunc()
        }),
        (0u16..4, 32u8..=50).prop_map(|(third, length)| {
            IpNet::V6(
                Ipv6Net::new(
                    std::net::Ipv6Addr::new(0x2001, 0xdb8, third << 14, 0, 0, 0, 0, 0),
                    length,
                )
                .unwrap(),
            )
            .trunc()
        }),
    ]
}

fn arbitrary_vrp() -> impl proptest::strategy::Strategy<Value = Vrp> {
    use proptest::prelude::*;
    (arbitrary_prefix(), 0u8..=8, 0u32..4).prop_map(|(prefix, extra, asn)| Vrp {
        prefix,
        max_length: (prefix.prefix_len() + extra).min(prefix.max_prefix_len()),
        asn,
    })
}

proptest::proptest! {
    /// The trie's verdict and covering VRPs equal the naive list's, after inserts and removals.
    #[test]
    fn rfc6811_trie_agrees_with_a_naive_list(
        inserted in proptest::collection::vec(arbitrary_vrp(), 0..40),
        removed in proptest::collection::vec(0usize..40, 0..10),
        routes in proptest::collection::vec((arbitrary_prefix(), 0u32..4), 1..20),
    ) {
        let mut set = VrpSet::new();
        let mut list: Vec<Vrp> = Vec::new();
        for vrp in &inserted {
            set.insert(*vrp);
            if !list.contains(vrp) {
                list.push(*vrp);
            }
        }
        for index in removed {
            if let Some(vrp) = inserted.get(index) {
                let held = list.contains(vrp);
                proptest::prop_assert_eq!(set.remove(vrp), held);
                list.retain(|kept| kept != vrp);
            }
        }
        proptest::prop_assert_eq!(set.len(), list.len());
        let mut all: Vec<Vrp> = set.iter().collect();
        all.sort_unstable();
        let mut expected = list.clone();
        expected.sort_unstable();
        proptest::prop_assert_eq!(all, expected);
        for (prefix, origin) in routes {
            let expected = naive_validate(&list, &prefix, origin);
            proptest::prop_assert_eq!(set.state(&prefix, origin), expected.state);
            proptest::prop_assert_eq!(set.validate(&prefix, origin), expected);
        }
    }
}

/// Prefixes of every length, around a few addresses across the whole IPv4 space (so that
/// covering prefixes start in other /16 buckets than the routes) and 2001:db8::/32.
fn spread_prefix() -> impl proptest::strategy::Strategy<Value = IpNet> {
    use proptest::prelude::*;
    prop_oneof![
        (
            prop_oneof![Just(0u8), Just(10), Just(255)],
            0u8..3,
            0u8..4,
            0u8..=32
        )
            .prop_map(|(first, second, third, length)| {
                IpNet::V4(
                    Ipv4Net::new(
                        std::net::Ipv4Addr::new(first, second, third * 64, third),
                        length,
                    )
                    .unwrap(),
                )
                .trunc()
            }),
        (0u16..3, 0u8..=128).prop_map(|(third, length)| {
            IpNet::V6(
                Ipv6Net::new(
                    std::net::Ipv6Addr::new(0x2001, 0xdb8, third << 14, 0, 0, 0, 0, third),
                    length,
                )
                .unwrap(),
            )
            .trunc()
        }),
    ]
}

fn spread_vrp() -> impl proptest::strategy::Strategy<Value = Vrp> {
    use proptest::prelude::*;
    (
        prop_oneof![spread_prefix(), arbitrary_prefix()],
        0u8..=8,
        0u32..4,
    )
        .prop_map(|(prefix, extra, asn)| Vrp {
            prefix,
            max_length: (prefix.prefix_len() + extra).min(prefix.max_prefix_len()),
            asn,
        })
}

fn spread_route() -> impl proptest::strategy::Strategy<Value = (IpNet, u32)> {
    use proptest::prelude::*;
    (prop_oneof![spread_prefix(), arbitrary_prefix()], 0u32..4)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

    /// The compact index gives the naive RFC 6811 definition's state, covering VRPs and
    /// verdict for every route, built after inserts and removals.
    #[test]
    fn rfc6811_index_agrees_with_a_naive_list(
        inserted in proptest::collection::vec(spread_vrp(), 0..60),
        removed in proptest::collection::vec(0usize..60, 0..10),
        routes in proptest::collection::vec(spread_route(), 1..40),
    ) {
        let mut set = VrpSet::new();
        for vrp in &inserted {
            set.insert(*vrp);
        }
        for index in removed {
            if let Some(vrp) = inserted.get(index) {
                set.remove(vrp);
            }
        }
        let list: Vec<Vrp> = set.iter().collect();
        let index = set.index();
        proptest::prop_assert_eq!(index.len(), list.len());
        let mut sorted = routes.clone();
        sorted.sort_unstable();
        let batch = index.states(&sorted);
        proptest::prop_assert_eq!(batch.len(), sorted.len());
        for ((prefix, origin), batch_state) in sorted.iter().zip(batch) {
            let expected = naive_validate(&list, prefix, *origin);
            proptest::prop_assert_eq!(index.state(prefix, *origin), expected.state);
            proptest::prop_assert_eq!(batch_state, expected.state);
            proptest::prop_assert_eq!(index.validate(prefix, *origin), expected.clone());
            proptest::prop_assert_eq!(set.validate(prefix, *origin), expected);
        }
    }

    /// After any update, every route whose state changed is among the affected routes, and
    /// the affected routes are exactly those inside a changed VRP's prefix; re-judging them
    /// gives the naive verdict.
    #[test]
    fn affected_routes_hold_every_changed_verdict(
        before in proptest::collection::vec(spread_vrp(), 0..40),
        withdrawn in proptest::collection::vec(0usize..40, 0..6),
        announced in proptest::collection::vec(spread_vrp(), 0..6),
        routes in proptest::collection::vec(spread_route(), 1..40),
    ) {
        let mut set = VrpSet::new();
        for vrp in &before {
            set.insert(*vrp);
        }
        let old_list: Vec<Vrp> = set.iter().collect();
        let mut changed = Vec::new();
        for index in withdrawn {
            if let Some(vrp) = before.get(index) && set.remove(vrp) {
                changed.push(*vrp);
            }
        }
        for vrp in &announced {
            if !set.iter().any(|held| held == *vrp) {
                set.insert(*vrp);
                changed.push(*vrp);
            }
        }
        let new_list: Vec<Vrp> = set.iter().collect();
        let mut route_index = RouteIndex::new();
        let mut held: Vec<(IpNet, u32)> = Vec::new();
        for (prefix, origin) in &routes {
            route_index.insert(*prefix, *origin);
            if !held.contains(&(*prefix, *origin)) {
                held.push((*prefix, *origin));
            }
        }
        proptest::prop_assert_eq!(route_index.len(), held.len());
        let affected = route_index.affected_routes(&changed);
        let mut expected: Vec<(IpNet, u32)> = held
            .iter()
            .filter(|(prefix, _)| changed.iter().any(|vrp| vrp.prefix.contains(prefix)))
            .copied()
            .collect();
        expected.sort_unstable();
        proptest::prop_assert_eq!(&affected, &expected);
        for (prefix, origin) in &held {
            let old = naive_validate(&old_list, prefix, *origin).state;
            let new = naive_validate(&new_list, prefix, *origin).state;
            if old != new {
                proptest::prop_assert!(affected.contains(&(*prefix, *origin)));
            }
        }
        for (prefix, origin, state) in route_index.revalidate(&set, &changed) {
            proptest::prop_assert_eq!(state, naive_validate(&new_list, &prefix, origin).state);
        }
        if let Some((prefix, origin)) = held.first() {
            proptest::prop_assert!(route_index.remove(prefix, *origin));
            proptest::prop_assert!(!route_index.remove(prefix, *origin));
        }
    }
}
