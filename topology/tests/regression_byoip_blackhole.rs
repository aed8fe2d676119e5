//! Regression: BYOIP onboarding (shared/seed). A prefix is announced only with a default binding
//! spanning it (G1); layered services must run wherever the covering route is announced.

#![allow(clippy::unwrap_used)]

mod common;

use common::{binding, compiled, fleet, location, prefix, service, sources};
use topologyd_topology::{Intent, Verdict, compile, plan};

fn fleet_text() -> String {
    fleet(&[
        location("ams01", "eu", &[], "live"),
        location("fra01", "eu", &[], "live"),
        location("iad01", "us", &[], "live"),
        location("sin01", "apac", &[], "live"),
    ])
}

fn services_text(cdn_topology: &str) -> String {
    service("spectrum", "active", "all", "13335:10010")
        + &service("cdn", "active", cdn_topology, "13335:10020")
}

fn base_prefixes() -> String {
    prefix("198.51.100.0/24", true) + &binding("198.51.100.0/24", "spectrum")
}

#[test]
fn a_prefix_with_only_more_specific_bindings_is_never_announced() {
    let prefixes =
        base_prefixes() + &prefix("192.0.2.0/24", true) + &binding("192.0.2.128/25", "cdn");
    let failure = compile(
        sources(&[
            ("fleet.toml", fleet_text()),
            ("services.toml", services_text("all")),
            ("prefixes.toml", prefixes),
        ]),
        1,
    )
    .unwrap_err();
    let text = failure.to_string();
    assert_eq!(failure.errors().count(), 1, "{text}");
    assert!(
        text.contains(
            "prefixes.toml:12:8: error: G1: prefix 192.0.2.0/24 is advertised but has no default binding, so it is not announced: it has only more-specific bindings (192.0.2.128/25 → cdn)"
        ),
        "{text}"
    );
    assert!(
        text.contains("help: add [[binding]] cidr = \"192.0.2.0/24\""),
        "{text}"
    );
}

#[test]
fn adding_the_default_binding_makes_it_announceable() {
    let before = compiled(
        &[
            ("fleet.toml", fleet_text()),
            ("services.toml", services_text("all")),
            ("prefixes.toml", base_prefixes()),
        ],
        1,
    );
    let prefixes = base_prefixes()
        + &prefix("192.0.2.0/24", true)
        + &binding("192.0.2.0/24", "spectrum")
        + &binding("192.0.2.128/25", "cdn");
    let after = compiled(
        &[
            ("fleet.toml", fleet_text()),
            ("services.toml", services_text("all")),
            ("prefixes.toml", prefixes),
        ],
        2,
    );
    for location in ["ams01", "fra01", "iad01", "sin01"] {
        let desired = after.desired(location).unwrap();
        let route = desired
            .iter()
            .find(|route| route.prefix.to_string() == "192.0.2.0/24")
            .unwrap();
        assert_eq!(route.service, "spectrum");
        assert_eq!(route.binding.to_string(), "192.0.2.0/24");
    }
    let explanation = after.explain("192.0.2.130".parse().unwrap());
    assert_eq!(explanation.service.as_deref(), Some("cdn"));
    assert_eq!(
        explanation.route.map(|route| route.to_string()).as_deref(),
        Some("192.0.2.0/24")
    );
    let result = plan(&before, &after, &Intent::default());
    assert_eq!(
        result.verdict(),
        Verdict::ChangesAllowed,
        "{}",
        result.render_text()
    );
    assert_eq!(result.summary.announced_pairs, 4);
}

#[test]
fn a_layered_service_absent_where_the_covering_route_is_announced_is_a_blackhole() {
    let prefixes = base_prefixes()
        + &prefix("192.0.2.0/24", true)
        + &binding("192.0.2.0/24", "spectrum")
        + &binding("192.0.2.128/25", "cdn");
    let failure = compile(
        sources(&[
            ("fleet.toml", fleet_text()),
            ("services.toml", services_text("region = \"eu\"")),
            ("prefixes.toml", prefixes),
        ]),
        1,
    )
    .unwrap_err();
    let text = failure.to_string();
    assert!(
        text.contains("blackhole by construction: binding 192.0.2.128/25 (service `cdn`) lies under route 192.0.2.0/24 (service `spectrum`), which is announced at 2 location(s) where `cdn` is absent: iad01, sin01"),
        "{text}"
    );
}
