//! Plan unit tests: intents, causes, the well-scoped G4, call-outs and rollback overrides.

#![allow(clippy::unwrap_used)]

use super::callouts::similar_values;
use super::*;
use crate::compile::compile;
use topologyd_config::Source;

fn topology(states: [&str; 3], split: bool, generation: u64) -> Topology {
    let mut text = String::new();
    for (index, state) in states.iter().enumerate() {
        text += &format!(
            "[[location]]\nname = \"edge{index:02}\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"{state}\"\n"
        );
    }
    text += "[[service]]\nname = \"web\"\ntopology = \"all\"\n";
    text += &format!(
        "[[prefix]]\ncidr = \"192.0.2.0/23\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\nannounce = {}\n",
        if split {
            "{ split = 24 }"
        } else {
            "\"aggregate\""
        }
    );
    text += "[[binding]]\ncidr = \"192.0.2.0/23\"\nservice = \"web\"\n";
    compile(&[Source::new("t.toml", text)], generation).unwrap()
}

#[test]
fn intent_arguments_parse() {
    let mut intent = Intent::default();
    intent.parse_arg("service:dls").unwrap();
    intent
        .parse_override("global-withdrawal:1.1.1.0/24")
        .unwrap();
    intent.parse_override("blast-radius").unwrap();
    assert!(intent.services.contains("dls"));
    assert!(intent.overrides.contains(&Override::BlastRadius));
    assert!(
        intent
            .overrides
            .contains(&Override::GlobalWithdrawal("1.1.1.0/24".parse().unwrap()))
    );
    assert!(intent.parse_arg("dls").is_err());
    assert!(intent.parse_arg("service:").is_err());
    assert!(intent.parse_override("global-withdrawal:nonsense").is_err());
    assert_eq!(Verdict::Refused.exit_code(), EXIT_REFUSED);
}

#[test]
fn identical_topologies_plan_no_change() {
    let result = plan(
        &topology(["live"; 3], false, 1),
        &topology(["live"; 3], false, 2),
        &Intent::default(),
    );
    assert_eq!(result.verdict(), Verdict::NoChange);
    assert_eq!(result.exit_code(), EXIT_NO_CHANGE);
    assert!(result.render_text().contains("no change"));
}

#[test]
fn draining_a_location_is_caused_by_its_state_and_needs_no_intent() {
    let result = plan(
        &topology(["live"; 3], false, 1),
        &topology(["live", "live", "draining"], false, 2),
        &Intent::default(),
    );
    let change = &result.changes[0];
    assert_eq!(
        change.withdrawals[0].cause,
        WithdrawalCause::LocationStateChanged {
            from: LocationState::Live,
            to: Some(LocationState::Draining)
        }
    );
    // G2 applies to locations live before and after; a change at one location is
    // well-scoped, so G4 lets a third of a three-location fleet drain.
    assert_eq!(result.violations_of(Guard::G2).count(), 0);
    assert_eq!(result.violations_of(Guard::G4).count(), 0);
    assert_eq!(result.verdict(), Verdict::ChangesAllowed);
    assert_eq!(result.delta("edge02").withdraw.len(), 1);
    // Two of three at once loses two thirds of the reach, however few the routes.
    let two = plan(
        &topology(["live"; 3], false, 1),
        &topology(["live", "draining", "draining"], false, 2),
        &Intent::default(),
    );
    assert_eq!(
        two.violations_of(Guard::G4).count(),
        1,
        "{}",
        two.render_text()
    );
}

#[test]
fn splitting_an_aggregate_keeps_the_addresses_reachable() {
    let result = plan(
        &topology(["live"; 3], false, 1),
        &topology(["live"; 3], true, 2),
        &Intent::default(),
    );
    // The /23 is withdrawn (announce mode changed) while both /24s are announced at the
    // same locations: no address is lost, so no guard objects.
    assert_eq!(
        result.verdict(),
        Verdict::ChangesAllowed,
        "{}",
        result.render_text()
    );
    assert_eq!(result.summary.withdrawn_pairs, 3);
    assert_eq!(result.summary.lost_pairs, 0);
    assert_eq!(result.changes.len(), 3);
    assert_eq!(
        result.changes[0].withdrawals[0].cause,
        WithdrawalCause::AnnounceModeChanged
    );
    let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
    assert_eq!(
        json["changes"][0]["withdrawals"][0]["cause"]["kind"],
        "announce_mode_changed"
    );
    assert_eq!(json["changes"][1]["announce"].as_array().unwrap().len(), 3);
}

fn fleet(locations: &[(&str, &str, &str)], web_topology: &str) -> Topology {
    let mut text = String::new();
    for (name, region, state) in locations {
        text += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"{region}\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"{state}\"\n"
        );
    }
    text += &format!("[[service]]\nname = \"web\"\ntopology = '{web_topology}'\n");
    text += "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\n";
    text += "[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    compile(&[Source::new("t.toml", text)], 1).unwrap()
}

#[test]
fn a_new_attribute_value_one_slip_from_a_known_one_is_called_out() {
    let old = fleet(&[("a1", "europe", "live"), ("a2", "europe", "live")], "all");
    let new = fleet(
        &[
            ("a1", "europe", "live"),
            ("a2", "europe", "live"),
            ("a3", "eruope", "live"),
            ("a4", "Europe", "live"),
            ("a5", "asia", "live"),
        ],
        "all",
    );
    let result = plan(&old, &new, &Intent::default());
    let similar: Vec<(&str, &str)> = result
        .callouts
        .iter()
        .filter_map(|callout| match callout {
            Callout::SimilarAttributeValue {
                location, value, ..
            } => Some((location.as_str(), value.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(similar, [("a3", "eruope"), ("a4", "Europe")]);
    assert!(
        result
            .render_text()
            .contains("location `a4` has region `Europe`")
    );
    // Short codes are only compared without case: `NL` and `NO` are both real.
    assert!(!similar_values("NL", "NO"));
    assert!(similar_values("nl", "NL"));
}

#[test]
fn selector_jumps_count_test_locations_too() {
    let mut locations: Vec<(String, &str, &str)> = (0..4)
        .map(|index| (format!("t{index}"), "eu", "test"))
        .collect();
    locations.push(("live1".to_string(), "us", "live"));
    let borrowed: Vec<(&str, &str, &str)> = locations
        .iter()
        .map(|(name, region, state)| (name.as_str(), *region, *state))
        .collect();
    let old = fleet(&borrowed, "all");
    let new = fleet(&borrowed, "region = \"us\"");
    let result = plan(&old, &new, &Intent::default());
    // Live locations alone: 1 -> 1, no jump; over live and test: 5 -> 1.
    assert!(
        result.callouts.iter().any(|callout| matches!(
            callout,
            Callout::SelectorJump {
                before: 5,
                after: 1,
                live_before: 1,
                live_after: 1,
                ..
            }
        )),
        "{:?}",
        result.callouts
    );
}

#[test]
fn a_rollback_withdraws_what_it_undoes_but_not_what_the_target_still_binds() {
    let fleet = "[[location]]\nname = \"a1\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                 [[location]]\nname = \"t1\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"test\"\n";
    let build = |services: &str, prefixes: &str| {
        compile(
            &[Source::new(
                "t.toml",
                format!("{fleet}{services}{prefixes}"),
            )],
            1,
        )
        .unwrap()
    };
    let services = "[[service]]\nname = \"web\"\ntopology = \"all\"\n\
                    [[service]]\nname = \"later\"\nlifecycle = \"pending\"\ntopology = \"all\"\n";
    let base = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let extra = |service: &str| {
        format!(
            "[[prefix]]\ncidr = \"198.51.100.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
             [[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"{service}\"\n"
        )
    };
    let running = build(services, &format!("{base}{}", extra("web")));
    let extra_route = Override::GlobalWithdrawal("198.51.100.0/24".parse().unwrap());
    // Undoing an onboarding, and undoing an activation: withdrawn by design.
    assert_eq!(
        rollback_overrides(&running, &build(services, base)),
        std::slice::from_ref(&extra_route)
    );
    assert_eq!(
        rollback_overrides(
            &running,
            &build(services, &format!("{base}{}", extra("later")))
        ),
        [extra_route]
    );
    // A target that binds the route to an active service announced nowhere live: refused.
    let test_only = services.replacen(
        "topology = \"all\"",
        "topology = \"state = 'test'\"\nannounce_at_test_locations = true",
        1,
    );
    let target = build(&test_only, &format!("{base}{}", extra("web")));
    assert!(rollback_overrides(&running, &target).is_empty());
    assert_eq!(
        plan(&running, &target, &Intent::default())
            .violations_of(Guard::G3)
            .count(),
        2
    );
}

#[test]
fn a_rollback_of_a_moved_prefix_names_both_services_and_passes_g2() {
    let fleet = "[[location]]\nname = \"a1\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                 [[service]]\nname = \"a\"\ntopology = \"all\"\n\
                 [[service]]\nname = \"b\"\ntopology = \"all\"\n\
                 [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n";
    let bound_to = |service: &str| {
        compile(
            &[Source::new(
                "t.toml",
                format!("{fleet}[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"{service}\"\n"),
            )],
            1,
        )
        .unwrap()
    };
    // The running generation moved the prefix from `a` to `b`; rolling back moves it again.
    let (running, target) = (bound_to("b"), bound_to("a"));
    assert!(
        plan(&running, &target, &Intent::default())
            .violations_of(Guard::G2)
            .count()
            > 0
    );
    let intent = rollback_intent(&running, &target);
    assert!(intent.services.contains("a") && intent.services.contains("b"));
    assert!(intent.overrides.contains(&Override::BlastRadius));
    let rollback = plan(&running, &target, &intent);
    assert_eq!(rollback.violations_of(Guard::G2).count(), 0);
    assert_eq!(rollback.verdict, Verdict::ChangesAllowed);
}

#[test]
fn a_split_that_rebinds_most_of_a_prefix_is_judged_on_every_address() {
    // The /16 leaves 19 of 20 locations: 255 of its 256 /24s now belong to a service at one
    // location. One /24 still announced everywhere does not make the others reachable.
    let mut fleet = String::new();
    for index in 0..20 {
        fleet += &format!(
            "[[location]]\nname = \"l{index:02}\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n"
        );
    }
    let services = "[[service]]\nname = \"cdn\"\ntopology = \"all\"\n[[service]]\nname = \"one\"\ntopology = 'location = \"l00\"'\n";
    let old = compile(
        &[Source::new(
            "t.toml",
            format!(
                "{fleet}{services}[[prefix]]\ncidr = \"10.0.0.0/16\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[[binding]]\ncidr = \"10.0.0.0/16\"\nservice = \"cdn\"\n"
            ),
        )],
        1,
    )
    .unwrap();
    let new = compile(
        &[Source::new(
            "t.toml",
            format!(
                "{fleet}{services}[[prefix]]\ncidr = \"10.0.0.0/16\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = {{ split = 24 }}\n[[binding]]\ncidr = \"10.0.0.0/16\"\nservice = \"one\"\n[[binding]]\ncidr = \"10.0.0.0/24\"\nservice = \"cdn\"\n"
            ),
        )],
        2,
    )
    .unwrap();
    let result = plan(&old, &new, &Intent::default());
    let text = result.render_text();
    assert!(
        result.violations.iter().any(|violation| matches!(
            violation,
            GuardViolation::UndeclaredWithdrawal { route, locations, .. }
                if route.to_string() == "10.0.0.0/16" && locations.len() == 19
        )),
        "{text}"
    );
    assert!(
        text.contains("10.0.0.0/16 (20 -> 1 live locations)"),
        "concentration: {text}"
    );
    assert_eq!(result.summary.lost_pairs, 19, "{text}");
}

/// A topology of the named locations (in any order: the compile sorts them), with one service
/// announced at every location.
fn fleet_of(names: &[&str]) -> Topology {
    let mut text = String::new();
    for name in names {
        text += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n"
        );
    }
    text += "[[service]]\nname = \"web\"\ntopology = \"all\"\n";
    compile(&[Source::new("t.toml", text)], 1).unwrap()
}

/// The universe maps each topology's location sets into one location list: the sets of a
/// topology whose locations are the universe's are taken as they are, the others' indices
/// moved (locations added, removed, or both).
#[test]
fn sets_map_into_the_universe_whether_or_not_the_fleet_changed() {
    let names_of = |context: &context::Context<'_>, set: &crate::location_set::LocationSet| {
        set.iter()
            .map(|index| context.universe.names[index].clone())
            .collect::<Vec<_>>()
    };
    for (old, new) in [
        (vec!["b", "a", "c"], vec!["a", "b", "c"]),
        (vec!["a", "c"], vec!["a", "b", "c", "d"]),
        (vec!["a", "b", "c", "d"], vec!["b", "d"]),
        (vec!["a", "x"], vec!["b", "y", "z"]),
    ] {
        let (old_topology, new_topology) = (fleet_of(&old), fleet_of(&new));
        let context = context::Context::new(&old_topology, &new_topology);
        let mut expected_old = old.clone();
        expected_old.sort_unstable();
        let mut expected_new = new.clone();
        expected_new.sort_unstable();
        assert_eq!(names_of(&context, &context.old_live), expected_old);
        assert_eq!(names_of(&context, &context.new_live), expected_new);
        assert_eq!(names_of(&context, &context.old_sets[0]), expected_old);
        assert_eq!(names_of(&context, &context.new_sets[0]), expected_new);
        let universe = context.universe.names.len();
        for set in [&context.old_live, &context.new_live, &context.old_sets[0]] {
            assert!(set.sized_for(universe), "{old:?} → {new:?}");
        }
    }
}

/// The diff and G3 pass over the route chunks two topologies share only when that changes
/// nothing: with a service's locations changed (a compile would not share chunks then, but
/// the plan must not rely on it), a plan against a topology sharing chunks with the running
/// one equals the plan against the same topology whose routes share nothing.
#[test]
fn shared_route_chunks_are_passed_over_only_when_their_services_are_unchanged() {
    let sources = |advertised: bool| {
        let mut fleet = String::new();
        for index in 0..3 {
            fleet += &format!(
                "[[location]]\nname = \"edge{index}\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n"
            );
        }
        fleet += "[[service]]\nname = \"web\"\ntopology = \"all\"\n";
        fleet += "[[service]]\nname = \"dns\"\ntopology = 'metro = \"M\"'\n";
        // Prefix 2,000 (in the third prefix chunk) alone in a file of its own.
        let (mut items, mut toggled) = (String::new(), String::new());
        for index in 0..2_100 {
            let cidr = format!("10.{}.{}.0/24", index / 256, index % 256);
            let advertise = advertised || index != 2_000;
            let service = if index % 2 == 0 { "web" } else { "dns" };
            let item = format!(
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = {advertise}\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{service}\"\n"
            );
            if index == 2_000 {
                toggled = item;
            } else {
                items += &item;
            }
        }
        vec![
            Source::new("fleet.toml", fleet),
            Source::new("items.toml", items),
            Source::new("customer.toml", toggled),
        ]
    };
    let running = compile(sources(true), 1).unwrap();
    let patched = || {
        let (result, reuse) = crate::compile_incremental(sources(false), 2, &running);
        assert!(reuse.items_patched, "{reuse:?}");
        result.unwrap()
    };
    let intent = Intent::default();
    // Nothing changed; a service announced at one location fewer; one announced nowhere (its
    // routes withdrawn everywhere: G3).
    for changed in [None, Some(("web", 1)), Some(("dns", 3))] {
        let (mut shared, mut apart) = (patched(), patched());
        assert_eq!(shared.route_chunks_shared_with(&running), (2, 3));
        apart.routes = apart.routes.unshared();
        assert_eq!(apart.route_chunks_shared_with(&running), (0, 3));
        if let Some((name, fewer)) = changed {
            for topology in [&mut shared, &mut apart] {
                let index = topology.service_index[name] as usize;
                let service = &mut std::sync::Arc::make_mut(&mut topology.services)[index];
                for location in 0..fewer {
                    service.announcing.remove(location);
                }
            }
        }
        let (by_shared, by_apart) = (
            plan(&running, &shared, &intent),
            plan(&running, &apart, &intent),
        );
        assert_eq!(by_shared.to_json(), by_apart.to_json(), "{changed:?}");
        let routes_changed = by_apart.changes.len();
        match changed {
            None => assert_eq!(routes_changed, 1, "the toggled route alone"),
            Some(_) => assert!(routes_changed > 1_000, "{routes_changed}"),
        }
        let withdrawn_everywhere = by_apart
            .violations
            .iter()
            .filter(|violation| matches!(violation, GuardViolation::GlobalWithdrawal { .. }))
            .count();
        let expected = match changed {
            // The toggled route, and every route of the service announced nowhere.
            Some((_, 3)) => 1 + 1_050,
            _ => 1,
        };
        assert_eq!(withdrawn_everywhere, expected, "{changed:?}");
    }
}
