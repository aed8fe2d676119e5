//! Regression: the 1.1.1.1 resolver outage of 14 July 2025 (shared/seed), replayed on the model.
//!
//! How the story maps onto the model:
//! - The resolver is a service with topology `all`, bound (default bindings) to its prefixes
//!   1.1.1.0/24, 1.0.0.0/24, 2606:4700:4700::/48 and four more, announced at every live
//!   location of a 54-location fleet in three regions. An offline test location `tst01` exists.
//! - The data-localisation service (DLS) selects a region tag (`tag = "dls-eu"`, carried by the
//!   EU locations) and has its own prefix.
//! - Change 1, the latent error of 6 June ("the resolver's prefixes were included alongside the
//!   DLS prefixes"): in this model, linking prefixes to a service means binding them to it, so
//!   the resolver's bindings are rebound to `dls`. The legacy system let this lie dormant; here
//!   the compiled topology is the whole truth, so the plan shows at once that the resolver's
//!   routes would follow the DLS topology: routes change hands (callout), leave every non-EU
//!   location (G2, which needs both services in the intent) and exceed the blast radius (G4).
//! - Change 2, the trigger of 14 July ("attached a test location to the non-production
//!   service", after which the recomputed DLS topology contained only that location): applied on
//!   top of change 1 as if it had been forced through, the DLS selector becomes
//!   `location = "tst01"`. Every resolver route (now bound to `dls`) would be announced from no
//!   live location: G2 (intent must name `dls`) and G3 (global withdrawal; no intent is enough)
//!   refuse it, naming every resolver prefix and the locations lost.

#![allow(clippy::unwrap_used)]

mod common;

use common::{binding, compiled, fleet, location, prefix, service};
use ipnet::IpNet;
use topologyd_topology::{
    Callout, Guard, GuardViolation, Intent, Override, Severity, Verdict, plan,
};

const RESOLVER_PREFIXES: [&str; 7] = [
    "1.1.1.0/24",
    "1.0.0.0/24",
    "162.159.36.0/24",
    "162.159.46.0/24",
    "172.64.36.0/24",
    "2606:4700:4700::/48",
    "2606:4700:4701::/48",
];
const DLS_PREFIX: &str = "203.0.113.0/24";

fn fleet_text() -> String {
    let mut locations = Vec::new();
    for (region, metros) in [
        ("eu", ["ams", "fra", "lhr"]),
        ("us", ["iad", "sjc", "ord"]),
        ("apac", ["sin", "nrt", "syd"]),
    ] {
        for metro in metros {
            for number in 1..=6 {
                let name = format!("{metro}{number:02}");
                let tags: &[&str] = if region == "eu" { &["dls-eu"] } else { &[] };
                locations.push(location(&name, region, tags, "live"));
            }
        }
    }
    locations.push(location("tst01", "eu", &["test"], "offline"));
    fleet(&locations)
}

/// The topology files with the resolver's prefixes bound to `resolver_binding` and the DLS
/// topology `dls_topology`.
fn files(resolver_binding: &str, dls_topology: &str) -> Vec<(&'static str, String)> {
    let services = service("resolver", "active", "all", "13335:10000")
        + &service("dls", "active", dls_topology, "13335:10030");
    let mut prefixes = String::new();
    for cidr in RESOLVER_PREFIXES {
        prefixes += &prefix(cidr, true);
        prefixes += &binding(cidr, resolver_binding);
    }
    prefixes += &prefix(DLS_PREFIX, true);
    prefixes += &binding(DLS_PREFIX, "dls");
    vec![
        ("fleet.toml", fleet_text()),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

fn resolver_routes() -> Vec<IpNet> {
    let mut routes: Vec<IpNet> = RESOLVER_PREFIXES
        .iter()
        .map(|cidr| cidr.parse().unwrap())
        .collect();
    routes.sort();
    routes
}

fn named_routes<'a>(violations: impl Iterator<Item = &'a GuardViolation>) -> Vec<IpNet> {
    let mut routes: Vec<IpNet> = violations.filter_map(GuardViolation::route).collect();
    routes.sort();
    routes.dedup();
    routes
}

#[test]
fn before_the_incident_the_resolver_is_announced_everywhere_live() {
    let base = compiled(&files("resolver", "tag = \"dls-eu\""), 1);
    let live = base
        .locations()
        .iter()
        .filter(|location| location.name != "tst01");
    for location in live {
        let desired = base.desired(&location.name).unwrap();
        let resolver = desired
            .iter()
            .filter(|route| route.service == "resolver")
            .count();
        assert_eq!(resolver, RESOLVER_PREFIXES.len(), "{}", location.name);
    }
    assert!(base.desired("tst01").unwrap().is_empty());
}

#[test]
fn change_1_linking_the_resolver_prefixes_to_dls_is_flagged_at_plan_time() {
    let base = compiled(&files("resolver", "tag = \"dls-eu\""), 1);
    let change_1 = compiled(&files("dls", "tag = \"dls-eu\""), 2);
    let result = plan(&base, &change_1, &Intent::default());
    assert_eq!(
        result.verdict(),
        Verdict::Refused,
        "{}",
        result.render_text()
    );
    // Called out at the top: the resolver's routes change hands.
    assert!(result.callouts.iter().any(|callout| matches!(
        callout,
        Callout::ServiceChangedHands { from, to, routes }
            if from == "resolver" && to == "dls" && routes.len() == RESOLVER_PREFIXES.len()
    )));
    // G2 names every resolver prefix, both services, and the 36 non-EU locations lost.
    assert_eq!(
        named_routes(result.violations_of(Guard::G2)),
        resolver_routes()
    );
    for violation in result.violations_of(Guard::G2) {
        let GuardViolation::UndeclaredWithdrawal {
            services,
            locations,
            ..
        } = violation
        else {
            panic!("unexpected {violation:?}");
        };
        assert_eq!(services, &["resolver", "dls"]);
        assert_eq!(locations.len(), 36);
        assert!(locations.iter().all(|name| !name.starts_with("ams")));
    }
    assert_eq!(result.violations_of(Guard::G3).count(), 0);
    assert_eq!(result.violations_of(Guard::G4).count(), 1);
    let text = result.render_text();
    assert!(
        text.contains("move from service `resolver` to `dls`"),
        "{text}"
    );
    assert!(
        text.contains("--intent service:resolver --intent service:dls"),
        "{text}"
    );
}

#[test]
fn change_2_attaching_the_test_location_is_refused_by_g2_and_g3() {
    let change_1 = compiled(&files("dls", "tag = \"dls-eu\""), 2);
    let change_2 = compiled(&files("dls", "location = \"tst01\""), 3);
    // The compiler already warns that dls is announced nowhere.
    assert!(
        change_2
            .warnings()
            .iter()
            .any(|warning| warning.severity == Severity::Warning
                && warning.message.contains("matches no live location"))
    );

    let result = plan(&change_1, &change_2, &Intent::default());
    assert_eq!(result.verdict(), Verdict::Refused);
    let mut every_dls_route = resolver_routes();
    every_dls_route.push(DLS_PREFIX.parse().unwrap());
    every_dls_route.sort();
    assert_eq!(
        named_routes(result.violations_of(Guard::G2)),
        every_dls_route
    );
    assert_eq!(
        named_routes(result.violations_of(Guard::G3)),
        every_dls_route
    );
    let eu: Vec<String> = ["ams", "fra", "lhr"]
        .iter()
        .flat_map(|metro| (1..=6).map(move |number| format!("{metro}{number:02}")))
        .collect();
    let mut eu_sorted = eu.clone();
    eu_sorted.sort();
    for violation in result.violations_of(Guard::G3) {
        let GuardViolation::GlobalWithdrawal {
            service,
            locations_lost,
            ..
        } = violation
        else {
            panic!("unexpected {violation:?}");
        };
        assert_eq!(service, "dls");
        assert_eq!(locations_lost, &eu_sorted);
    }
    assert!(result.callouts.iter().any(|callout| matches!(
        callout,
        Callout::SelectorJump { service, live_before: 18, live_after: 0, .. } if service == "dls"
    )));
    let text = result.render_text();
    assert!(text.contains("G3 route 1.1.1.0/24"), "{text}");
    assert!(
        text.contains("ams01..ams06 (6), fra01..fra06 (6), lhr01..lhr06 (6)"),
        "{text}"
    );

    // Declaring the DLS service satisfies G2 but not G3.
    let declared = plan(&change_1, &change_2, &Intent::default().with_service("dls"));
    assert_eq!(declared.verdict(), Verdict::Refused);
    assert_eq!(declared.violations_of(Guard::G2).count(), 0);
    assert_eq!(
        named_routes(declared.violations_of(Guard::G3)),
        every_dls_route
    );

    // Only naming every route (and the blast radius) would let it through.
    let mut forced = Intent::default()
        .with_service("dls")
        .with_override(Override::BlastRadius);
    for route in &every_dls_route {
        forced = forced.with_override(Override::GlobalWithdrawal(*route));
    }
    assert_eq!(
        plan(&change_1, &change_2, &forced).verdict(),
        Verdict::ChangesAllowed
    );
}

#[test]
fn both_changes_at_once_are_refused_for_every_resolver_prefix_at_every_live_location() {
    let base = compiled(&files("resolver", "tag = \"dls-eu\""), 1);
    let both = compiled(&files("dls", "location = \"tst01\""), 3);
    let result = plan(
        &base,
        &both,
        &Intent::default()
            .with_service("dls")
            .with_service("resolver"),
    );
    assert_eq!(result.verdict(), Verdict::Refused);
    let g3: Vec<&GuardViolation> = result.violations_of(Guard::G3).collect();
    for route in resolver_routes() {
        let violation = g3
            .iter()
            .find(|violation| violation.route() == Some(route))
            .unwrap();
        let GuardViolation::GlobalWithdrawal { locations_lost, .. } = violation else {
            panic!("unexpected {violation:?}");
        };
        assert_eq!(locations_lost.len(), 54);
    }
    let json = result.to_json();
    assert!(json.contains("\"global_withdrawal\""), "{json}");
}
