//! Properties over random small topologies:
//! - longest-prefix match in the compiled trie equals a linear scan over all bindings;
//! - applying plan(old, new) to desired(old) gives desired(new) at every location;
//! - no change lets a bound route vanish from every live location without G3 firing;
//! - compiling is deterministic, and independent of how items are split over files.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use topologyd_topology::{AnnouncedRoute, GuardViolation, Intent, Source, Topology, compile, plan};

const SELECTORS: [&str; 7] = [
    "all",
    "region = \"r0\"",
    "tag:a",
    "not tag:b",
    "region = \"r1\" or tag:a",
    "location = \"loc02\"",
    "state != \"offline\"",
];
const STATES: [&str; 6] = ["live", "live", "live", "test", "offline", "draining"];

#[derive(Debug, Clone)]
struct Spec {
    states: [usize; 6],
    regions: [bool; 6],
    tags: [(bool, bool); 6],
    extra_location: bool,
    /// (selector, pending, announce at test locations, community)
    services: [(usize, bool, bool, u16); 3],
    /// (present, advertise, split, default service, has default binding)
    prefixes: [(bool, bool, bool, usize, bool); 6],
    /// (prefix, extra length, offset)
    layered: Vec<(usize, u8, u32)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop::array::uniform6(0..STATES.len()),
        prop::array::uniform6(any::<bool>()),
        prop::array::uniform6((any::<bool>(), any::<bool>())),
        any::<bool>(),
        prop::array::uniform3((
            0..SELECTORS.len(),
            prop::bool::weighted(0.2),
            any::<bool>(),
            1..4_u16,
        )),
        prop::array::uniform6((
            prop::bool::weighted(0.8),
            prop::bool::weighted(0.8),
            any::<bool>(),
            0..3_usize,
            prop::bool::weighted(0.9),
        )),
        prop::collection::vec((0..6_usize, 1..4_u8, any::<u32>()), 0..6),
    )
        .prop_map(
            |(states, regions, tags, extra_location, services, prefixes, layered)| Spec {
                states,
                regions,
                tags,
                extra_location,
                services,
                prefixes,
                layered,
            },
        )
}

fn prefix_cidr(index: usize) -> IpNet {
    if index < 4 {
        format!("10.{}.0.0/22", index * 4).parse().unwrap()
    } else {
        format!("2001:db8:{:x}::/46", index * 4).parse().unwrap()
    }
}

/// The items (one TOML table each) of a topology.
fn items(spec: &Spec) -> Vec<String> {
    let mut items = Vec::new();
    let count = if spec.extra_location { 7 } else { 6 };
    for index in 0..count {
        let (state, region, (tag_a, tag_b)) = if index < 6 {
            (
                STATES[spec.states[index]],
                spec.regions[index],
                spec.tags[index],
            )
        } else {
            ("live", false, (false, false))
        };
        // loc00 and loc01 guarantee that every region and tag a selector names exists.
        let region = if index == 0 || (index > 1 && region) {
            "r0"
        } else {
            "r1"
        };
        let mut tags = Vec::new();
        if index == 0 || tag_a {
            tags.push("\"a\"");
        }
        if index == 1 || tag_b {
            tags.push("\"b\"");
        }
        items.push(format!(
            "[[location]]\nname = \"loc{index:02}\"\nregion = \"{region}\"\nmetro = \"M\"\ncountry = \"C\"\ntags = [{}]\nstate = \"{state}\"\n",
            tags.join(", ")
        ));
    }
    for (index, (selector, pending, test, community)) in spec.services.iter().enumerate() {
        // s0 selects everything so that layered bindings (always s0) are never blackholes.
        let selector = if index == 0 {
            "all"
        } else {
            SELECTORS[*selector]
        };
        items.push(format!(
            "[[service]]\nname = \"s{index}\"\nlifecycle = \"{}\"\ntopology = '{selector}'\nannounce_at_test_locations = {test}\ncommunities = [\"64500:{community}\"]\n",
            if *pending { "pending" } else { "active" }
        ));
    }
    let mut layered_seen = std::collections::BTreeSet::new();
    for (index, (present, advertise, split, service, has_default)) in
        spec.prefixes.iter().enumerate()
    {
        if !present {
            continue;
        }
        let cidr = prefix_cidr(index);
        let split_length = if index < 4 { 24 } else { 48 };
        let announce = if *split {
            format!("{{ split = {split_length} }}")
        } else {
            "\"aggregate\"".to_string()
        };
        let advertise = *advertise && *has_default;
        items.push(format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = {advertise}\nannounce = {announce}\n"
        ));
        if *has_default {
            items.push(format!(
                "[[binding]]\ncidr = \"{cidr}\"\nservice = \"s{service}\"\n"
            ));
        }
        for (prefix, extra, offset) in &spec.layered {
            if *prefix != index {
                continue;
            }
            let length = cidr.prefix_len() + extra;
            let subnets: Vec<IpNet> = cidr.subnets(length).unwrap().collect();
            let layered = subnets[*offset as usize % subnets.len()];
            if layered_seen.insert(layered) {
                items.push(format!(
                    "[[binding]]\ncidr = \"{layered}\"\nservice = \"s0\"\n"
                ));
            }
        }
    }
    items
}

fn sources_of(items: &[String], files: usize) -> Vec<Source> {
    let files = files.max(1);
    (0..files)
        .map(|file| {
            let text: Vec<&str> = items
                .iter()
                .skip(file)
                .step_by(files)
                .map(String::as_str)
                .collect();
            Source::new(format!("part{file}.toml"), text.join("\n"))
        })
        .collect()
}

fn build(spec: &Spec) -> Option<Topology> {
    compile(sources_of(&items(spec), 1), 1).ok()
}

fn desired_map(topology: &Topology, location: &str) -> BTreeMap<IpNet, AnnouncedRoute> {
    topology
        .desired(location)
        .map(|routes| {
            routes
                .iter()
                .map(|route| (route.prefix, route.to_announced()))
                .collect()
        })
        .unwrap_or_default()
}

fn location_names(old: &Topology, new: &Topology) -> Vec<String> {
    let mut names: Vec<String> = old
        .locations()
        .iter()
        .chain(new.locations())
        .map(|location| location.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn longest_prefix_match_equals_a_linear_scan(
        layered in prop::collection::vec((9..=32_u8, any::<u32>(), any::<bool>()), 0..40),
        probes in prop::collection::vec(any::<u32>(), 1..40),
    ) {
        let mut text = String::from(
            "[[location]]\nname = \"l\"\nregion = \"r\"\nmetro = \"m\"\ncountry = \"c\"\nstate = \"live\"\n\
             [[service]]\nname = \"x\"\ntopology = \"all\"\n[[service]]\nname = \"y\"\ntopology = \"all\"\n\
             [[prefix]]\ncidr = \"10.0.0.0/8\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
             [[binding]]\ncidr = \"10.0.0.0/8\"\nservice = \"x\"\n",
        );
        let mut bindings: BTreeMap<IpNet, &str> = BTreeMap::new();
        bindings.insert("10.0.0.0/8".parse().unwrap(), "x");
        for (length, bits, which) in layered {
            let address = std::net::Ipv4Addr::from((10 << 24) | (bits & 0x00ff_ffff));
            let network = IpNet::new(IpAddr::V4(address), length).unwrap().trunc();
            let service = if which { "x" } else { "y" };
            if let std::collections::btree_map::Entry::Vacant(entry) = bindings.entry(network) {
                entry.insert(service);
                text += &format!("[[binding]]\ncidr = \"{network}\"\nservice = \"{service}\"\n");
            }
        }
        let topology = compile(&[Source::new("t.toml", text)], 1).unwrap();
        for probe in probes {
            let address = IpAddr::V4(std::net::Ipv4Addr::from((10 << 24) | (probe & 0x00ff_ffff)));
            let host = IpNet::from(address);
            let expected = bindings
                .iter()
                .filter(|(network, _)| network.contains(&address))
                .max_by_key(|(network, _)| network.prefix_len())
                .map(|(network, service)| (*network, *service));
            prop_assert_eq!(topology.longest_binding(&host), expected);
            let explanation = topology.explain(address);
            prop_assert_eq!(explanation.binding, expected.map(|(network, _)| network));
        }
    }

    #[test]
    fn applying_the_plan_to_desired_old_gives_desired_new(old in spec(), new in spec()) {
        let (Some(old), Some(new)) = (build(&old), build(&new)) else {
            return Ok(());
        };
        let result = plan(&old, &new, &Intent::default());
        // The document handed out as JSON is the JSON text's.
        let parsed: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
        prop_assert_eq!(result.to_value(), parsed);
        for location in location_names(&old, &new) {
            let mut routes = desired_map(&old, &location);
            result.delta(&location).apply(&mut routes);
            prop_assert_eq!(&routes, &desired_map(&new, &location), "at {}", location);
        }
        if result.changes.is_empty() && result.binding_changes.is_empty() {
            prop_assert_eq!(result.exit_code(), 0);
        }
    }

    #[test]
    fn no_bound_route_vanishes_from_every_live_location_without_g3(
        old in spec(),
        new in spec(),
        declare_all in any::<bool>(),
    ) {
        let (Some(old), Some(new)) = (build(&old), build(&new)) else {
            return Ok(());
        };
        let mut intent = Intent::default();
        if declare_all {
            for name in ["s0", "s1", "s2"] {
                intent = intent.with_service(name);
            }
        }
        let result = plan(&old, &new, &intent);
        let live = |topology: &Topology| -> Vec<String> {
            topology
                .locations()
                .iter()
                .filter(|location| location.state == topologyd_config::LocationState::Live)
                .map(|location| location.name.clone())
                .collect()
        };
        let announced_live = |topology: &Topology| -> Vec<IpNet> {
            live(topology)
                .iter()
                .flat_map(|location| desired_map(topology, location).into_keys())
                .collect()
        };
        let new_live = announced_live(&new);
        for route in announced_live(&old) {
            let still_reachable = new_live
                .iter()
                .any(|other| other.contains(&route) || route.contains(other));
            let bound_active = new.longest_binding(&route).is_some_and(|(_, service)| {
                new.service(service).unwrap().lifecycle == topologyd_config::Lifecycle::Active
            });
            if !still_reachable && bound_active {
                prop_assert!(
                    result.violations.iter().any(|violation| matches!(
                        violation,
                        GuardViolation::GlobalWithdrawal { route: named, .. } if *named == route
                    )),
                    "{} vanished without G3:\n{}",
                    route,
                    result.render_text()
                );
                prop_assert_eq!(result.exit_code(), 3);
            }
        }
    }

    #[test]
    fn compiling_is_deterministic_and_independent_of_file_layout(
        spec in spec(),
        files in 1..5_usize,
        rotation in any::<usize>(),
    ) {
        let items = items(&spec);
        let Ok(first) = compile(sources_of(&items, 1), 1) else {
            return Ok(());
        };
        let second = compile(sources_of(&items, 1), 1).unwrap();
        prop_assert_eq!(first.hash(), second.hash());
        let mut rotated = items.clone();
        let length = rotated.len();
        rotated.rotate_left(rotation % length.max(1));
        let reshuffled = compile(sources_of(&rotated, files), 2).unwrap();
        prop_assert_eq!(first.hash(), reshuffled.hash());
        for location in first.locations() {
            prop_assert_eq!(
                desired_map(&first, &location.name),
                desired_map(&reshuffled, &location.name)
            );
        }
        let identical = plan(&first, &reshuffled, &Intent::default());
        prop_assert!(identical.changes.is_empty());
        prop_assert_eq!(identical.exit_code(), 0);
    }
}
