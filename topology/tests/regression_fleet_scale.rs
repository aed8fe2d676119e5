//! Regressions at fleet scale (300 live locations in 6 regions, plus test and offline ones):
//! for every cause class that can leave a still-bound route announced from no live location,
//! the change is refused by G3 even with every intent and `--override blast-radius`, and
//! passes only once an override names each such route. Then G4 on 3-, 20- and 300-location
//! fleets: small, well-scoped changes need no override; large ones still do.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use ipnet::IpNet;
use topologyd_topology::{
    Guard, GuardViolation, Intent, Override, Plan, Source, Topology, Verdict, compile, plan,
};

const REGIONS: [&str; 6] = ["eu", "us", "apac", "latam", "mea", "oc"];

/// A fleet of `per_region` live locations in each of `regions` regions, plus `tst01` (test)
/// and `off01` (offline) in the first region.
fn fleet(regions: usize, per_region: usize) -> String {
    let mut text = String::new();
    for region in &REGIONS[..regions] {
        for number in 1..=per_region {
            text += &format!(
                "[[location]]\nname = \"{region}{number:03}\"\nregion = \"{region}\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [{}]\nstate = \"live\"\n\n",
                region.to_uppercase(),
                if *region == "eu" { "\"dls-eu\"" } else { "" }
            );
        }
    }
    text += "[[location]]\nname = \"tst01\"\nregion = \"eu\"\nmetro = \"EU\"\ncountry = \"XX\"\ntags = [\"test\"]\nstate = \"test\"\n\n";
    text += "[[location]]\nname = \"off01\"\nregion = \"eu\"\nmetro = \"EU\"\ncountry = \"XX\"\nstate = \"offline\"\n\n";
    text
}

/// The knobs the cause classes turn.
#[derive(Clone)]
struct Knobs {
    regions: usize,
    per_region: usize,
    resolver_lifecycle: &'static str,
    resolver_topology: &'static str,
    resolver_v6_service: &'static str,
    resolver_advertise: bool,
    offboard_one_one: bool,
    dls_lifecycle: &'static str,
    dls_topology: &'static str,
    regional_topology: &'static str,
    /// States of the first region's live locations (`eu001`..).
    first_region_state: &'static str,
    /// Whether the first region's live locations exist at all.
    first_region_present: bool,
    spectrum_announce: &'static str,
    spectrum_default: &'static str,
    spectrum_layered: bool,
    /// Filler /24s bound to `web` (to give the fleet realistic pair counts).
    web_prefixes: usize,
    web_unadvertised: usize,
}

impl Knobs {
    fn new(regions: usize, per_region: usize) -> Knobs {
        Knobs {
            regions,
            per_region,
            resolver_lifecycle: "active",
            resolver_topology: "all",
            resolver_v6_service: "resolver",
            resolver_advertise: true,
            offboard_one_one: false,
            dls_lifecycle: "pending",
            dls_topology: "tag = \"dls-eu\"",
            regional_topology: "region = \"us\"",
            first_region_state: "live",
            first_region_present: true,
            spectrum_announce: "{ split = 24 }",
            spectrum_default: "spectrum",
            spectrum_layered: true,
            web_prefixes: 40,
            web_unadvertised: 0,
        }
    }

    fn render(&self) -> String {
        let mut text = fleet(self.regions, self.per_region);
        if !self.first_region_present {
            // Keep the test and offline locations: the eu selectors still match something.
            let kept: Vec<&str> = text
                .split("\n\n")
                .filter(|block| !block.contains("name = \"eu0"))
                .collect();
            text = kept.join("\n\n");
            text += "\n\n";
        } else if self.first_region_state != "live" {
            let mut rewritten = String::new();
            for block in text.split("\n\n") {
                if block.contains("name = \"eu0") {
                    rewritten += &block.replace(
                        "state = \"live\"",
                        &format!("state = \"{}\"", self.first_region_state),
                    );
                } else {
                    rewritten += block;
                }
                rewritten += "\n\n";
            }
            text = rewritten;
        }
        let service = |name: &str, lifecycle: &str, topology: &str, community: u32| {
            format!(
                "[[service]]\nname = \"{name}\"\nlifecycle = \"{lifecycle}\"\ntopology = '{topology}'\ncommunities = [\"13335:{community}\"]\n\n"
            )
        };
        text += &service(
            "resolver",
            self.resolver_lifecycle,
            self.resolver_topology,
            10000,
        );
        text += &service("dls", self.dls_lifecycle, self.dls_topology, 10030);
        text += &service("spectrum", "active", "all", 10040);
        text += &service("cdn", "active", "all", 10050);
        text += &service("regional", "active", self.regional_topology, 10060);
        text += &service("web", "active", "all", 10070);
        let prefix = |cidr: &str, advertise: bool, announce: &str| {
            format!(
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"o\"\nadvertise = {advertise}\nannounce = {announce}\n\n"
            )
        };
        let binding = |cidr: &str, service: &str| {
            format!("[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n\n")
        };
        if !self.offboard_one_one {
            text += &prefix("1.1.1.0/24", self.resolver_advertise, "\"aggregate\"");
            text += &binding("1.1.1.0/24", "resolver");
        }
        text += &prefix("1.0.0.0/24", self.resolver_advertise, "\"aggregate\"");
        text += &binding("1.0.0.0/24", "resolver");
        text += &prefix("2606:4700:4700::/48", true, "\"aggregate\"");
        text += &binding("2606:4700:4700::/48", self.resolver_v6_service);
        text += &prefix("203.0.113.0/24", true, "\"aggregate\"");
        text += &binding("203.0.113.0/24", "dls");
        text += &prefix("198.51.100.0/23", true, self.spectrum_announce);
        text += &binding("198.51.100.0/23", self.spectrum_default);
        if self.spectrum_layered {
            text += &binding("198.51.100.0/24", "cdn");
        }
        text += &prefix("192.0.2.0/24", true, "\"aggregate\"");
        text += &binding("192.0.2.0/24", "regional");
        for index in 0..self.web_prefixes {
            let cidr = format!("100.64.{index}.0/24");
            text += &prefix(&cidr, index >= self.web_unadvertised, "\"aggregate\"");
            text += &binding(&cidr, "web");
        }
        text
    }

    fn compile(&self, generation: u64) -> Topology {
        match compile(&[Source::new("topology.toml", self.render())], generation) {
            Ok(topology) => topology,
            Err(diagnostics) => panic!("does not compile:\n{diagnostics}"),
        }
    }
}

fn every_intent() -> Intent {
    let mut intent = Intent::default().with_override(Override::BlastRadius);
    for service in ["resolver", "dls", "spectrum", "cdn", "regional", "web"] {
        intent = intent.with_service(service);
    }
    intent
}

fn g3_routes(result: &Plan) -> BTreeSet<IpNet> {
    result
        .violations_of(Guard::G3)
        .filter_map(GuardViolation::route)
        .collect()
}

fn routes(cidrs: &[&str]) -> BTreeSet<IpNet> {
    cidrs.iter().map(|cidr| cidr.parse().unwrap()).collect()
}

/// The change from `base` to `changed` withdraws exactly `lost` from every live location:
/// refused by G3 with every intent and blast-radius, allowed once each route is overridden.
fn assert_global_withdrawal(cause: &str, base: &Knobs, changed: &Knobs, lost: &[&str]) {
    let old = base.compile(1);
    let new = changed.compile(2);
    let expected = routes(lost);
    let bare = plan(&old, &new, &Intent::default());
    assert_eq!(
        g3_routes(&bare),
        expected,
        "{cause}:\n{}",
        bare.render_text()
    );
    let hinted = plan(&old, &new, &every_intent());
    assert_eq!(
        hinted.verdict(),
        Verdict::Refused,
        "{cause}: every intent and blast-radius must not unlock it:\n{}",
        hinted.render_text()
    );
    assert_eq!(g3_routes(&hinted), expected, "{cause}");
    assert!(
        hinted
            .violations
            .iter()
            .all(|violation| violation.guard() == Guard::G3),
        "{cause}: only G3 is left:\n{}",
        hinted.render_text()
    );
    let text = bare.render_text();
    assert!(
        text.contains("no --intent and no --override blast-radius lifts that"),
        "{cause}: {text}"
    );
    let json: serde_json::Value = serde_json::from_str(&bare.to_json()).unwrap();
    assert_eq!(
        json["refusal"]["unlockable_without_per_route_overrides"], false,
        "{cause}"
    );
    assert_eq!(
        json["refusal"]["per_route_overrides"]
            .as_array()
            .unwrap()
            .len(),
        expected.len(),
        "{cause}"
    );
    // Overriding all but one still refuses that one.
    let mut overridden = every_intent();
    for route in expected.iter().skip(1) {
        overridden = overridden.with_override(Override::GlobalWithdrawal(*route));
    }
    let partial = plan(&old, &new, &overridden);
    assert_eq!(partial.verdict(), Verdict::Refused, "{cause}");
    let first = *expected.iter().next().unwrap();
    assert_eq!(g3_routes(&partial), BTreeSet::from([first]), "{cause}");
    let allowed = plan(
        &old,
        &new,
        &overridden.with_override(Override::GlobalWithdrawal(first)),
    );
    assert_eq!(
        allowed.verdict(),
        Verdict::ChangesAllowed,
        "{cause}:\n{}",
        allowed.render_text()
    );
    // What the overrides let through is shown first, and named.
    let overridden: BTreeSet<IpNet> = allowed
        .global_withdrawals_overridden
        .iter()
        .copied()
        .collect();
    assert_eq!(overridden, expected, "{cause}");
    assert!(
        allowed
            .render_text()
            .contains(&format!("GLOBAL WITHDRAWAL: {} route(s)", expected.len())),
        "{cause}"
    );
    // An override naming another route is reported as unused, and lifts nothing.
    let typo = Override::GlobalWithdrawal("192.0.2.128/25".parse().unwrap());
    let mistyped = plan(&old, &new, &every_intent().with_override(typo.clone()));
    assert_eq!(mistyped.unused_overrides, [typo], "{cause}");
    assert!(
        mistyped
            .render_text()
            .contains("note: --override global-withdrawal:192.0.2.128/25 names no route"),
        "{cause}"
    );
    assert_eq!(g3_routes(&mistyped), expected, "{cause}");
}

fn fleet300() -> Knobs {
    Knobs::new(6, 50)
}

#[test]
fn binding_moved_to_a_pending_service() {
    let base = fleet300();
    let changed = Knobs {
        resolver_v6_service: "dls",
        ..base.clone()
    };
    assert_global_withdrawal(
        "binding moved to pending dls",
        &base,
        &changed,
        &["2606:4700:4700::/48"],
    );
}

#[test]
fn binding_moved_to_an_active_service_announced_at_no_live_location() {
    let base = Knobs {
        dls_lifecycle: "active",
        ..fleet300()
    };
    let changed = Knobs {
        resolver_v6_service: "dls",
        dls_topology: "location = \"tst01\"",
        ..base.clone()
    };
    // dls's own prefix goes with it.
    assert_global_withdrawal(
        "binding moved to an active service on a test location",
        &base,
        &changed,
        &["203.0.113.0/24", "2606:4700:4700::/48"],
    );
}

#[test]
fn service_made_pending() {
    let base = fleet300();
    let changed = Knobs {
        resolver_lifecycle: "pending",
        ..base.clone()
    };
    assert_global_withdrawal(
        "resolver made pending",
        &base,
        &changed,
        &["1.0.0.0/24", "1.1.1.0/24", "2606:4700:4700::/48"],
    );
}

#[test]
fn selector_changed_to_a_test_location() {
    let base = fleet300();
    let changed = Knobs {
        resolver_topology: "location = \"tst01\"",
        ..base.clone()
    };
    assert_global_withdrawal(
        "resolver selector narrowed to a test location",
        &base,
        &changed,
        &["1.0.0.0/24", "1.1.1.0/24", "2606:4700:4700::/48"],
    );
}

#[test]
fn every_selected_location_changes_state() {
    let base = Knobs {
        regional_topology: "region = \"eu\"",
        ..fleet300()
    };
    let changed = Knobs {
        first_region_state: "draining",
        ..base.clone()
    };
    assert_global_withdrawal(
        "all eu locations draining",
        &base,
        &changed,
        &["192.0.2.0/24"],
    );
}

#[test]
fn every_selected_location_removed() {
    let base = Knobs {
        regional_topology: "region = \"eu\"",
        ..fleet300()
    };
    let changed = Knobs {
        first_region_present: false,
        dls_topology: "region = \"eu\"",
        ..base.clone()
    };
    assert_global_withdrawal(
        "all live eu locations removed",
        &base,
        &changed,
        &["192.0.2.0/24"],
    );
}

#[test]
fn advertise_turned_off() {
    let base = fleet300();
    let changed = Knobs {
        resolver_advertise: false,
        ..base.clone()
    };
    assert_global_withdrawal(
        "advertise = false",
        &base,
        &changed,
        &["1.0.0.0/24", "1.1.1.0/24"],
    );
}

#[test]
fn prefix_offboarded() {
    let base = fleet300();
    let changed = Knobs {
        offboard_one_one: true,
        ..base.clone()
    };
    assert_global_withdrawal("1.1.1.0/24 offboarded", &base, &changed, &["1.1.1.0/24"]);
}

#[test]
fn split_length_changed() {
    // Split, the /24 under `cdn` is announced; aggregated, the /23 belongs to the pending
    // default service and nothing of it is announced.
    let base = Knobs {
        spectrum_default: "dls",
        ..fleet300()
    };
    let changed = Knobs {
        spectrum_announce: "\"aggregate\"",
        ..base.clone()
    };
    assert_global_withdrawal(
        "split changed to aggregate",
        &base,
        &changed,
        &["198.51.100.0/24"],
    );
}

#[test]
fn more_specific_binding_removed() {
    let base = Knobs {
        spectrum_default: "dls",
        ..fleet300()
    };
    let changed = Knobs {
        spectrum_layered: false,
        ..base.clone()
    };
    assert_global_withdrawal(
        "layered cdn binding removed",
        &base,
        &changed,
        &["198.51.100.0/24"],
    );
}

#[test]
fn the_fleet_has_the_size_the_issue_asks_for() {
    let topology = fleet300().compile(1);
    let live = topology
        .locations()
        .iter()
        .filter(|location| location.state == topologyd_config::LocationState::Live)
        .count();
    let regions: BTreeSet<&str> = topology
        .locations()
        .iter()
        .map(|location| location.region.as_str())
        .collect();
    assert!(live >= 300 && regions.len() >= 6, "{live} {regions:?}");
}

// G4 on fleets of 3, 20 and 300 live locations.

fn fleets() -> [Knobs; 3] {
    [Knobs::new(3, 1), Knobs::new(4, 5), Knobs::new(6, 50)]
}

fn g4(old: &Knobs, new: &Knobs, intent: &Intent) -> usize {
    plan(&old.compile(1), &new.compile(2), intent)
        .violations_of(Guard::G4)
        .count()
}

#[test]
fn small_well_scoped_changes_need_no_blast_radius_override() {
    for base in fleets() {
        let size = base.regions * base.per_region;
        let intent = every_intent_without_overrides();
        // Offboarding one unused /24 (G3 asks for its own override; G4 asks nothing).
        let mut one_gone = base.clone();
        one_gone.web_unadvertised = 1;
        assert_eq!(
            g4(&base, &one_gone, &intent),
            0,
            "{size}: one /24 un-advertised"
        );
        // Draining one location.
        let old = base.compile(1);
        let text = base
            .render()
            .replacen("state = \"live\"", "state = \"draining\"", 1);
        let new = compile(&[Source::new("topology.toml", text)], 2).unwrap();
        let result = plan(&old, &new, &intent);
        assert_eq!(
            result.violations_of(Guard::G4).count(),
            0,
            "{size}: one location drained:\n{}",
            result.render_text()
        );
        // Moving one /24 from one service to another (both everywhere).
        let moved_text = base.render().replacen(
            "cidr = \"100.64.0.0/24\"\nservice = \"web\"",
            "cidr = \"100.64.0.0/24\"\nservice = \"cdn\"",
            1,
        );
        let moved = compile(&[Source::new("topology.toml", moved_text)], 2).unwrap();
        let result = plan(&old, &moved, &intent);
        assert_eq!(
            result.verdict(),
            Verdict::ChangesAllowed,
            "{size}: one /24 moved:\n{}",
            result.render_text()
        );
        // Splitting an aggregate, and changing a service's attributes.
        let split = Knobs {
            spectrum_announce: "\"aggregate\"",
            spectrum_layered: false,
            ..base.clone()
        };
        let resplit = Knobs {
            spectrum_announce: "{ split = 24 }",
            spectrum_layered: false,
            ..base.clone()
        };
        assert_eq!(g4(&split, &resplit, &intent), 0, "{size}: split");
        let regional_moved = Knobs {
            regional_topology: "region = \"eu\"",
            ..base.clone()
        };
        assert_eq!(
            g4(&base, &regional_moved, &intent),
            0,
            "{size}: one regional service moved between regions of equal size"
        );
    }
}

fn every_intent_without_overrides() -> Intent {
    let mut intent = Intent::default();
    for service in ["resolver", "dls", "spectrum", "cdn", "regional", "web"] {
        intent = intent.with_service(service);
    }
    intent
}

#[test]
fn large_changes_still_need_the_blast_radius_override() {
    for base in fleets() {
        let size = base.regions * base.per_region;
        let intent = every_intent_without_overrides();
        // The BYOIP clean-up: a quarter of all prefixes un-advertised (G3 overridden per route,
        // as an operator who means it would).
        let cleanup = Knobs {
            web_unadvertised: 12,
            ..base.clone()
        };
        let mut overridden = intent.clone();
        for index in 0..12 {
            overridden = overridden.with_override(Override::GlobalWithdrawal(
                format!("100.64.{index}.0/24").parse().unwrap(),
            ));
        }
        let result = plan(&base.compile(1), &cleanup.compile(2), &overridden);
        assert_eq!(
            result.violations_of(Guard::G4).count(),
            1,
            "{size}: clean-up of a quarter of the prefixes:\n{}",
            result.render_text()
        );
        assert_eq!(result.verdict(), Verdict::Refused);
        assert!(result.violations_of(Guard::G3).next().is_none());
        let allowed = plan(
            &base.compile(1),
            &cleanup.compile(2),
            &overridden.with_override(Override::BlastRadius),
        );
        assert_eq!(allowed.verdict(), Verdict::ChangesAllowed);
    }
    // Concentration: the resolver from every location to one region of six is a blast radius
    // however few its routes (and whatever the intent).
    let base = fleet300();
    let narrowed = Knobs {
        resolver_topology: "region = \"eu\"",
        ..base.clone()
    };
    let result = plan(
        &base.compile(1),
        &narrowed.compile(2),
        &every_intent_without_overrides(),
    );
    let text = result.render_text();
    assert_eq!(result.violations_of(Guard::G4).count(), 1, "{text}");
    assert!(
        text.contains("3 route(s) would concentrate on less than half of their live locations"),
        "{text}"
    );
    assert!(
        text.contains("1.1.1.0/24 (300 -> 50 live locations)"),
        "{text}"
    );
    // Draining half of a 20-location fleet.
    let twenty = Knobs::new(2, 10);
    let drained = Knobs {
        first_region_state: "draining",
        ..twenty.clone()
    };
    let result = plan(
        &twenty.compile(1),
        &drained.compile(2),
        &every_intent_without_overrides(),
    );
    assert_eq!(
        result.violations_of(Guard::G4).count(),
        1,
        "{}",
        result.render_text()
    );
}

/// A fleet of `counts` live locations per region, and `routes` /24s per service
/// (`service name`, `selector`).
fn small_topology(
    counts: &[(&str, usize)],
    services: &[(&str, &str, usize)],
    drained: &str,
) -> Topology {
    let mut text = String::new();
    for (region, count) in counts {
        for number in 0..*count {
            text += &format!(
                "[[location]]\nname = \"{region}{number:02}\"\nregion = \"{region}\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"{}\"\n",
                if *region == drained {
                    "draining"
                } else {
                    "live"
                }
            );
        }
    }
    let mut third = 0;
    for (name, selector, routes) in services {
        text += &format!("[[service]]\nname = \"{name}\"\ntopology = '{selector}'\n");
        for _ in 0..*routes {
            let cidr = format!("10.1.{third}.0/24");
            third += 1;
            text += &format!(
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{name}\"\n"
            );
        }
    }
    compile(&[Source::new("topology.toml", text)], 1).unwrap()
}

#[test]
fn reach_lost_at_many_locations_needs_the_override_however_few_the_routes() {
    // Draining every EU location (4 of 9) of a three-route topology loses 44 % of the reach.
    let fleet = [("eu", 4), ("us", 5)];
    let services = [("web", "all", 3)];
    let result = plan(
        &small_topology(&fleet, &services, ""),
        &small_topology(&fleet, &services, "eu"),
        &Intent::default(),
    );
    assert_eq!(
        result.violations_of(Guard::G4).count(),
        1,
        "{}",
        result.render_text()
    );
}

#[test]
fn moving_a_service_between_regions_of_equal_size_loses_no_reach() {
    // 20 locations; a regional service of 20 routes moves from 5 EU locations to 5 US ones.
    let fleet = [("eu", 5), ("us", 5), ("ap", 10)];
    let before = [("regional", "region = \"eu\"", 20), ("web", "all", 5)];
    let after = [("regional", "region = \"us\"", 20), ("web", "all", 5)];
    let result = plan(
        &small_topology(&fleet, &before, ""),
        &small_topology(&fleet, &after, ""),
        &Intent::default().with_service("regional"),
    );
    assert_eq!(
        result.summary.reach_lost_pairs,
        0,
        "{}",
        result.render_text()
    );
    assert_eq!(
        result.verdict(),
        Verdict::ChangesAllowed,
        "{}",
        result.render_text()
    );
    // Three locations: a nine-route service moved from one location to another.
    let fleet = [("a", 1), ("b", 1), ("c", 1)];
    let result = plan(
        &small_topology(
            &fleet,
            &[("svc", "region = \"a\"", 9), ("web", "all", 2)],
            "",
        ),
        &small_topology(
            &fleet,
            &[("svc", "region = \"b\"", 9), ("web", "all", 2)],
            "",
        ),
        &Intent::default().with_service("svc"),
    );
    assert_eq!(
        result.verdict(),
        Verdict::ChangesAllowed,
        "{}",
        result.render_text()
    );
}
