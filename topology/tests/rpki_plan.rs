//! G5 at plan time: origin validation (RFC 6811) of the routes a change leaves announced,
//! against a VRP set. A split beyond a ROA's max-length and a change of origin are refused,
//! naming the route and the covering VRPs; no intent or override lifts it; a route invalid
//! before and kept as it is is reported, not refused, unless the change announces it at more
//! locations or gives it another origin; declared ROAs the RPKI does not hold are called out;
//! not-found routes follow their prefix's `rpki` policy (allow, warn, refuse). And, over random changes and
//! VRP sets, G5 names exactly the (route, location) pairs an oracle computes from `desired`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use proptest::prelude::*;
use topologyd_topology::{
    Callout, Guard, GuardViolation, Intent, Override, RpkiState, Source, Topology, Verdict, Vrp,
    VrpSet, compile, plan_with_vrps,
};

fn topology(prefixes: &str, web_topology: &str) -> Topology {
    let mut text = String::new();
    for name in ["ams01", "fra01", "lhr01", "iad01"] {
        text += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"{}\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n",
            if name == "iad01" { "us" } else { "eu" }
        );
    }
    text += &format!("[[service]]\nname = \"web\"\ntopology = '{web_topology}'\n");
    text += prefixes;
    compile(&[Source::new("topology.toml", text)], 1).unwrap()
}

fn prefix(cidr: &str, origin: u32, announce: &str) -> String {
    format!(
        "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = {origin}\nowner = \"o\"\nadvertise = true\nannounce = {announce}\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"web\"\n"
    )
}

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

fn g5(result: &topologyd_topology::Plan) -> BTreeMap<IpNet, (RpkiState, Vec<String>)> {
    result
        .violations_of(Guard::G5)
        .filter_map(|violation| match violation {
            GuardViolation::RpkiInvalid {
                route,
                state,
                locations,
                ..
            } => Some((*route, (*state, locations.to_vec()))),
            _ => None,
        })
        .collect()
}

fn everything() -> Intent {
    Intent::default()
        .with_service("web")
        .with_override(Override::BlastRadius)
        .with_override(Override::GlobalWithdrawal(
            "198.51.100.0/22".parse().unwrap(),
        ))
}

#[test]
fn a_split_beyond_max_length_is_refused_naming_the_vrp() {
    let set = vrps(&[("198.51.100.0/22", 23, 64500)]);
    let old = topology(&prefix("198.51.100.0/22", 64500, "\"aggregate\""), "all");
    let to_23 = topology(&prefix("198.51.100.0/22", 64500, "{ split = 23 }"), "all");
    let to_24 = topology(&prefix("198.51.100.0/22", 64500, "{ split = 24 }"), "all");
    let allowed = plan_with_vrps(&old, &to_23, &everything(), Some(&set));
    assert_eq!(
        allowed.verdict(),
        Verdict::ChangesAllowed,
        "{}",
        allowed.render_text()
    );
    assert_eq!(allowed.rpki.as_ref().unwrap().valid, 2);
    let refused = plan_with_vrps(&old, &to_24, &everything(), Some(&set));
    assert_eq!(refused.verdict(), Verdict::Refused);
    let named = g5(&refused);
    assert_eq!(named.len(), 4, "{}", refused.render_text());
    for (state, locations) in named.values() {
        assert_eq!(*state, RpkiState::InvalidLength);
        assert_eq!(locations.len(), 4);
    }
    let text = refused.render_text();
    assert!(
        text.contains("G5 route 198.51.100.0/24 from AS64500 would be RPKI-invalid (longer than the max-length of its VRPs)"),
        "{text}"
    );
    assert!(
        text.contains("covering VRPs: 198.51.100.0/22 max-length 23 AS64500"),
        "{text}"
    );
    assert!(text.contains("no argument lifts that"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&refused.to_json()).unwrap();
    assert_eq!(json["refusal"]["unlockable"], false);
    assert_eq!(json["violations"][0]["unlock"]["by"], "publish_roa");
}

#[test]
fn an_origin_change_is_refused_and_a_not_found_route_is_reported() {
    let set = vrps(&[("198.51.100.0/22", 24, 64500)]);
    let old = topology(&prefix("198.51.100.0/22", 64500, "\"aggregate\""), "all");
    let hijacked = topology(&prefix("198.51.100.0/22", 4755, "\"aggregate\""), "all");
    let result = plan_with_vrps(&old, &hijacked, &everything(), Some(&set));
    assert_eq!(
        g5(&result)
            .get(&"198.51.100.0/22".parse().unwrap())
            .map(|(state, _)| *state),
        Some(RpkiState::InvalidOrigin),
        "{}",
        result.render_text()
    );
    // A new prefix no VRP covers: allowed, and reported.
    let more = topology(
        &(prefix("198.51.100.0/22", 64500, "\"aggregate\"")
            + &prefix("203.0.113.0/24", 64500, "\"aggregate\"")),
        "all",
    );
    let result = plan_with_vrps(&old, &more, &Intent::default(), Some(&set));
    assert_eq!(result.verdict(), Verdict::ChangesAllowed);
    assert_eq!(
        result.rpki.as_ref().unwrap().not_found_new,
        vec!["203.0.113.0/24".parse::<IpNet>().unwrap()]
    );
    assert!(result.render_text().contains("not found in the RPKI"));
}

#[test]
fn an_invalid_route_kept_as_it_is_is_reported_and_spreading_it_is_refused() {
    // The ROA was deleted while the route was announced: the next, unrelated change must not
    // be blocked, but the route must not reach more locations either.
    let set = vrps(&[("198.51.100.0/22", 22, 64999)]);
    let prefixes = prefix("198.51.100.0/22", 64500, "\"aggregate\"");
    let eu = topology(&prefixes, "region = \"eu\"");
    let same = topology(&prefixes, "region = \"eu\"");
    let kept = plan_with_vrps(&eu, &same, &Intent::default(), Some(&set));
    assert_eq!(kept.violations_of(Guard::G5).count(), 0);
    assert_eq!(kept.rpki.as_ref().unwrap().invalid_kept.len(), 1);
    assert!(
        kept.render_text()
            .contains("announced RPKI-invalid before and after")
    );
    let everywhere = topology(&prefixes, "all");
    let spread = plan_with_vrps(&eu, &everywhere, &everything(), Some(&set));
    let named = g5(&spread);
    assert_eq!(
        named
            .values()
            .next()
            .map(|(_, locations)| locations.clone()),
        Some(vec!["iad01".to_string()]),
        "{}",
        spread.render_text()
    );
}

#[test]
fn a_declared_roa_the_rpki_does_not_hold_is_called_out() {
    let text = prefix("198.51.100.0/22", 64500, "\"aggregate\"").replace(
        "announce = \"aggregate\"",
        "announce = \"aggregate\"\nroa = { asn = 64500, max_length = 24 }",
    );
    let old = topology(&text, "all");
    let set = vrps(&[("198.51.100.0/22", 22, 64500)]);
    let result = plan_with_vrps(&old, &old, &Intent::default(), Some(&set));
    assert!(
        result.callouts.iter().any(|callout| matches!(
            callout,
            Callout::DeclaredRoaNotInRpki {
                asn: 64500,
                max_length: 24,
                ..
            }
        )),
        "{:?}",
        result.callouts
    );
    let held = vrps(&[("198.51.100.0/22", 24, 64500)]);
    let result = plan_with_vrps(&old, &old, &Intent::default(), Some(&held));
    assert!(result.callouts.is_empty(), "{:?}", result.callouts);
}

/// A naive RFC 6811 validator for the oracle.
fn naive_invalid(vrps: &[(IpNet, u8, u32)], route: &IpNet, origin: u32) -> bool {
    let covering: Vec<_> = vrps
        .iter()
        .filter(|(prefix, _, _)| prefix.contains(route))
        .collect();
    !covering.is_empty()
        && !covering.iter().any(|(_, max_length, asn)| {
            *asn == origin && origin != 0 && route.prefix_len() <= *max_length
        })
}

/// (route, location, origin) announced invalid, from `desired` alone.
fn invalid_pairs(topology: &Topology, vrps: &[(IpNet, u8, u32)]) -> BTreeSet<(IpNet, String, u32)> {
    let mut pairs = BTreeSet::new();
    for location in topology.locations() {
        for route in topology.desired(&location.name).unwrap() {
            if naive_invalid(vrps, &route.prefix, route.origin_asn) {
                pairs.insert((route.prefix, location.name.clone(), route.origin_asn));
            }
        }
    }
    pairs
}

const SELECTORS: [&str; 3] = ["all", "region = \"eu\"", "location = \"iad01\""];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn g5_names_exactly_the_newly_invalid_pairs(
        old_origin in prop::sample::select(vec![64500_u32, 64501]),
        new_origin in prop::sample::select(vec![64500_u32, 64501]),
        old_split in prop::sample::select(vec!["\"aggregate\"", "{ split = 23 }", "{ split = 24 }"]),
        new_split in prop::sample::select(vec!["\"aggregate\"", "{ split = 23 }", "{ split = 24 }"]),
        old_selector in 0..SELECTORS.len(),
        new_selector in 0..SELECTORS.len(),
        raw_vrps in prop::collection::vec(
            (prop::sample::select(vec!["198.51.100.0/22", "198.51.100.0/23", "198.51.102.0/24", "198.51.0.0/16"]),
             0..3_u8,
             prop::sample::select(vec![64500_u32, 64501, 0])),
            0..4,
        ),
    ) {
        let old = topology(&prefix("198.51.100.0/22", old_origin, old_split), SELECTORS[old_selector]);
        let new = topology(&prefix("198.51.100.0/22", new_origin, new_split), SELECTORS[new_selector]);
        let entries: Vec<(IpNet, u8, u32)> = raw_vrps
            .iter()
            .map(|(prefix, extra, asn)| {
                let prefix: IpNet = prefix.parse().unwrap();
                (prefix, prefix.prefix_len() + extra * 4, *asn)
            })
            .collect();
        let mut set = VrpSet::new();
        for (prefix, max_length, asn) in &entries {
            set.insert(Vrp { prefix: *prefix, max_length: (*max_length).min(32), asn: *asn });
        }
        let entries: Vec<(IpNet, u8, u32)> = entries
            .into_iter()
            .map(|(prefix, max_length, asn)| (prefix, max_length.min(32), asn))
            .collect();
        // Invalid after and not invalid before with the same origin: another origin is a new
        // announcement of the route, even if it was invalid before too.
        let expected: BTreeSet<(IpNet, String)> = invalid_pairs(&new, &entries)
            .difference(&invalid_pairs(&old, &entries))
            .map(|(route, location, _)| (*route, location.clone()))
            .collect();
        let result = plan_with_vrps(&old, &new, &everything(), Some(&set));
        let named: BTreeSet<(IpNet, String)> = g5(&result)
            .into_iter()
            .flat_map(|(route, (_, locations))| {
                locations.into_iter().map(move |location| (route, location))
            })
            .collect();
        prop_assert_eq!(&named, &expected, "{}", result.render_text());
        if !expected.is_empty() {
            prop_assert_eq!(result.verdict(), Verdict::Refused);
        }
    }
}

#[test]
fn moving_from_one_invalid_origin_to_another_is_refused() {
    let set = vrps(&[("198.51.100.0/22", 22, 13335)]);
    let old = topology(&prefix("198.51.100.0/22", 64500, "\"aggregate\""), "all");
    let new = topology(&prefix("198.51.100.0/22", 64501, "\"aggregate\""), "all");
    let result = plan_with_vrps(&old, &new, &everything(), Some(&set));
    assert_eq!(g5(&result).len(), 1, "{}", result.render_text());
    assert_eq!(result.verdict(), Verdict::Refused);
}

fn prefix_with_policy(cidr: &str, origin: u32, policy: &str) -> String {
    prefix(cidr, origin, "\"aggregate\"").replace(
        "advertise = true\n",
        &format!("advertise = true\nrpki = \"{policy}\"\n"),
    )
}

#[test]
fn not_found_routes_follow_their_prefix_policy() {
    // One VRP elsewhere, so every route here is not found.
    let set = vrps(&[("203.0.113.0/24", 24, 64500)]);
    let old = topology(&prefix("192.0.2.0/24", 64500, "\"aggregate\""), "all");
    let new_prefixes = [
        prefix("192.0.2.0/24", 64500, "\"aggregate\""),
        prefix_with_policy("198.51.100.0/24", 64500, "allow"),
        prefix_with_policy("198.51.101.0/24", 64500, "warn"),
        prefix_with_policy("198.51.102.0/24", 64500, "refuse"),
    ]
    .concat();
    let new = topology(&new_prefixes, "all");
    let result = plan_with_vrps(&old, &new, &everything(), Some(&set));
    assert_eq!(
        result.verdict(),
        Verdict::Refused,
        "{}",
        result.render_text()
    );
    let refused: Vec<_> = result.violations_of(Guard::G5).collect();
    assert_eq!(refused.len(), 1, "{}", result.render_text());
    match refused[0] {
        GuardViolation::RpkiNotFound {
            route, locations, ..
        } => {
            assert_eq!(route.to_string(), "198.51.102.0/24");
            assert_eq!(locations.len(), 4);
        }
        other => panic!("expected RpkiNotFound, got {other:?}"),
    }
    let summary = result.rpki.as_ref().unwrap();
    assert_eq!(summary.not_found, 4);
    // warn (and the default, announced before, not new) is listed; allow is not.
    let listed: Vec<String> = summary
        .not_found_new
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(listed, vec!["198.51.101.0/24".to_string()]);
    let text = result.render_text();
    assert!(
        text.contains("G5 route 198.51.102.0/24 from AS64500 would be announced RPKI-not-found"),
        "{text}"
    );
    assert!(text.contains("rpki = \"refuse\""), "{text}");
    // The same route kept as it is (announced before) is not refused under `refuse`.
    let kept = plan_with_vrps(&new, &new, &Intent::default(), Some(&set));
    assert_eq!(
        kept.violations_of(Guard::G5).count(),
        0,
        "{}",
        kept.render_text()
    );
    // Another origin is a new announcement: refused again.
    let moved = topology(
        &new_prefixes.replace(
            "cidr = \"198.51.102.0/24\"\norigin_asn = 64500",
            "cidr = \"198.51.102.0/24\"\norigin_asn = 64501",
        ),
        "all",
    );
    let result = plan_with_vrps(&new, &moved, &everything(), Some(&set));
    assert_eq!(
        result.violations_of(Guard::G5).count(),
        1,
        "{}",
        result.render_text()
    );
}

#[test]
fn an_unknown_rpki_policy_is_an_error_at_its_line() {
    let text = format!(
        "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n[[service]]\nname = \"web\"\ntopology = 'all'\n{}",
        prefix_with_policy("192.0.2.0/24", 64500, "deny")
    );
    let error = compile(&[Source::new("topology.toml", text)], 1).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("topology.toml:15:8:"), "{message}");
    assert!(message.contains("allow"), "{message}");
}
