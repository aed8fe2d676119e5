//! G3 as an invariant, checked against an oracle that never looks at the plan: over random
//! topologies and random changes drawn from every cause class the model allows, the plan
//! refuses (G3) exactly the routes that are announced from at least one live location before the
//! change and whose addresses are not all announced from a live location after it — computed
//! here from `desired(old)` and `desired(new)` alone — and no combination of intents and
//! `blast-radius` lifts any of them; overrides naming exactly those routes lift exactly them.
//!
//! Cause classes: a binding moved to another service (active or pending), a service made
//! pending, a service removed (with its bindings), a selector changed, a location's state
//! changed or the location removed, `advertise = false`, a prefix offboarded, the split length
//! changed, a more-specific binding added or removed.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use proptest::prelude::*;
use topologyd_config::LocationState;
use topologyd_topology::{
    Guard, GuardViolation, Intent, Override, Source, Topology, compile, plan,
};

const SELECTORS: [&str; 6] = [
    "all",
    "region = \"r0\"",
    "region = \"r1\"",
    "tag:a",
    "not tag:a",
    "location = \"l1\"",
];
const STATES: [&str; 4] = ["live", "test", "offline", "draining"];
const ANNOUNCE: [&str; 3] = ["\"aggregate\"", "{ split = 23 }", "{ split = 24 }"];
const SERVICES: usize = 3;
const PREFIXES: usize = 4;

#[derive(Debug, Clone)]
struct Location {
    present: bool,
    region: usize,
    tag: bool,
    state: usize,
}

#[derive(Debug, Clone)]
struct Service {
    present: bool,
    pending: bool,
    selector: usize,
}

#[derive(Debug, Clone)]
struct Prefix {
    present: bool,
    advertise: bool,
    announce: usize,
    default_service: usize,
    /// More-specific bindings: (sub-prefix index among the /24s, service).
    layered: BTreeMap<usize, usize>,
}

#[derive(Debug, Clone)]
struct Model {
    locations: Vec<Location>,
    services: Vec<Service>,
    prefixes: Vec<Prefix>,
}

/// One change, from one of the cause classes.
#[derive(Debug, Clone)]
enum Change {
    MoveDefaultBinding {
        prefix: usize,
        service: usize,
    },
    ServicePending {
        service: usize,
    },
    ServiceRemoved {
        service: usize,
    },
    Selector {
        service: usize,
        selector: usize,
    },
    LocationState {
        location: usize,
        state: usize,
    },
    LocationRemoved {
        location: usize,
    },
    AdvertiseOff {
        prefix: usize,
    },
    Offboard {
        prefix: usize,
    },
    Announce {
        prefix: usize,
        announce: usize,
    },
    AddLayered {
        prefix: usize,
        slot: usize,
        service: usize,
    },
    RemoveLayered {
        prefix: usize,
    },
}

fn prefix_cidr(index: usize) -> IpNet {
    if index < PREFIXES - 1 {
        format!("10.{}.0.0/22", index * 4).parse().unwrap()
    } else {
        "2001:db8::/46".parse().unwrap()
    }
}

/// The more-specific of `prefix` a layered binding in `slot` covers (/24 or /48).
fn layered_cidr(prefix: usize, slot: usize) -> IpNet {
    let cidr = prefix_cidr(prefix);
    let length = cidr.prefix_len() + 2;
    cidr.subnets(length).unwrap().nth(slot % 4).unwrap()
}

fn announce_text(prefix: usize, announce: usize) -> String {
    if prefix == PREFIXES - 1 {
        // IPv6: /46 split into /47s or /48s.
        return ["\"aggregate\"", "{ split = 47 }", "{ split = 48 }"][announce].to_string();
    }
    ANNOUNCE[announce].to_string()
}

impl Model {
    fn render(&self) -> String {
        let mut text = String::new();
        for (index, location) in self.locations.iter().enumerate() {
            if !location.present {
                continue;
            }
            text += &format!(
                "[[location]]\nname = \"l{index}\"\nregion = \"r{}\"\nmetro = \"M\"\ncountry = \"C\"\ntags = [{}]\nstate = \"{}\"\n\n",
                location.region,
                if location.tag { "\"a\"" } else { "" },
                STATES[location.state]
            );
        }
        for (index, service) in self.services.iter().enumerate() {
            if !service.present {
                continue;
            }
            text += &format!(
                "[[service]]\nname = \"s{index}\"\nlifecycle = \"{}\"\ntopology = '{}'\ncommunities = [\"64500:{index}\"]\n\n",
                if service.pending { "pending" } else { "active" },
                SELECTORS[service.selector]
            );
        }
        for (index, prefix) in self.prefixes.iter().enumerate() {
            if !prefix.present {
                continue;
            }
            let cidr = prefix_cidr(index);
            text += &format!(
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = {}\nannounce = {}\n\n",
                prefix.advertise,
                announce_text(index, prefix.announce)
            );
            if self.services[prefix.default_service].present {
                text += &format!(
                    "[[binding]]\ncidr = \"{cidr}\"\nservice = \"s{}\"\n\n",
                    prefix.default_service
                );
            }
            for (slot, service) in &prefix.layered {
                if self.services[*service].present {
                    text += &format!(
                        "[[binding]]\ncidr = \"{}\"\nservice = \"s{service}\"\n\n",
                        layered_cidr(index, *slot)
                    );
                }
            }
        }
        text
    }

    fn compile(&self, generation: u64) -> Option<Topology> {
        compile(&[Source::new("topology.toml", self.render())], generation).ok()
    }

    fn apply(&mut self, change: &Change) {
        match *change {
            Change::MoveDefaultBinding { prefix, service } => {
                self.prefixes[prefix].default_service = service;
            }
            Change::ServicePending { service } => self.services[service].pending = true,
            Change::ServiceRemoved { service } => {
                self.services[service].present = false;
                // Prefixes left without a default binding are offboarded with it.
                for prefix in &mut self.prefixes {
                    if prefix.default_service == service {
                        prefix.present = false;
                    }
                }
            }
            Change::Selector { service, selector } => self.services[service].selector = selector,
            Change::LocationState { location, state } => self.locations[location].state = state,
            Change::LocationRemoved { location } => self.locations[location].present = false,
            Change::AdvertiseOff { prefix } => self.prefixes[prefix].advertise = false,
            Change::Offboard { prefix } => self.prefixes[prefix].present = false,
            Change::Announce { prefix, announce } => self.prefixes[prefix].announce = announce,
            Change::AddLayered {
                prefix,
                slot,
                service,
            } => {
                self.prefixes[prefix].layered.insert(slot, service);
            }
            Change::RemoveLayered { prefix } => {
                let first = self.prefixes[prefix].layered.keys().next().copied();
                if let Some(slot) = first {
                    self.prefixes[prefix].layered.remove(&slot);
                }
            }
        }
    }
}

fn model() -> impl Strategy<Value = Model> {
    (
        prop::collection::vec(
            (
                0..3_usize,
                any::<bool>(),
                prop::sample::select(vec![0, 0, 0, 1, 2, 3]),
            ),
            6,
        ),
        prop::collection::vec((prop::bool::weighted(0.15), 0..SELECTORS.len()), SERVICES),
        prop::collection::vec(
            (
                prop::bool::weighted(0.9),
                prop::bool::weighted(0.9),
                0..3_usize,
                0..SERVICES,
                prop::collection::btree_map(0..4_usize, 0..SERVICES, 0..2),
            ),
            PREFIXES,
        ),
    )
        .prop_map(|(locations, services, prefixes)| {
            let mut locations: Vec<Location> = locations
                .into_iter()
                .map(|(region, tag, state)| Location {
                    present: true,
                    region,
                    tag,
                    state,
                })
                .collect();
            // l0 and l1 exist in every region and tag a selector names, so selectors compile.
            locations[0] = Location {
                present: true,
                region: 0,
                tag: true,
                state: 0,
            };
            locations[1].region = 1;
            Model {
                locations,
                services: services
                    .into_iter()
                    .map(|(pending, selector)| Service {
                        present: true,
                        pending,
                        selector,
                    })
                    .collect(),
                prefixes: prefixes
                    .into_iter()
                    .map(
                        |(present, advertise, announce, default_service, layered)| Prefix {
                            present,
                            advertise,
                            announce,
                            default_service,
                            layered,
                        },
                    )
                    .collect(),
            }
        })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (0..PREFIXES, 0..SERVICES)
            .prop_map(|(prefix, service)| Change::MoveDefaultBinding { prefix, service }),
        (0..SERVICES).prop_map(|service| Change::ServicePending { service }),
        (0..SERVICES).prop_map(|service| Change::ServiceRemoved { service }),
        (0..SERVICES, 0..SELECTORS.len())
            .prop_map(|(service, selector)| Change::Selector { service, selector }),
        // l0 stays, so that selectors naming its region and tag still compile.
        (1..6_usize, 0..STATES.len())
            .prop_map(|(location, state)| Change::LocationState { location, state }),
        (2..6_usize).prop_map(|location| Change::LocationRemoved { location }),
        (0..PREFIXES).prop_map(|prefix| Change::AdvertiseOff { prefix }),
        (0..PREFIXES).prop_map(|prefix| Change::Offboard { prefix }),
        (0..PREFIXES, 0..3_usize)
            .prop_map(|(prefix, announce)| Change::Announce { prefix, announce }),
        (0..PREFIXES, 0..4_usize, 0..SERVICES).prop_map(|(prefix, slot, service)| {
            Change::AddLayered {
                prefix,
                slot,
                service,
            }
        }),
        (0..PREFIXES).prop_map(|prefix| Change::RemoveLayered { prefix }),
    ]
}

/// Routes announced from at least one live location, from `desired` alone.
fn announced_live(topology: &Topology) -> BTreeSet<IpNet> {
    topology
        .locations()
        .iter()
        .filter(|location| location.state == LocationState::Live)
        .flat_map(|location| {
            topology
                .desired(&location.name)
                .unwrap()
                .into_iter()
                .map(|route| route.prefix)
        })
        .collect()
}

/// Whether every address of `route` lies in some network of `announced` (naive halving).
fn covered(route: &IpNet, announced: &BTreeSet<IpNet>) -> bool {
    if announced.iter().any(|other| other.contains(route)) {
        return true;
    }
    if !announced.iter().any(|other| route.contains(other)) {
        return false;
    }
    let halves: Vec<IpNet> = route.subnets(route.prefix_len() + 1).unwrap().collect();
    halves.iter().all(|half| covered(half, announced))
}

/// The oracle: routes live before whose addresses are not all live after.
fn expected_global_withdrawals(old: &Topology, new: &Topology) -> BTreeSet<IpNet> {
    let after = announced_live(new);
    announced_live(old)
        .into_iter()
        .filter(|route| !covered(route, &after))
        .collect()
}

fn refused_by_g3(result: &topologyd_topology::Plan) -> BTreeSet<IpNet> {
    result
        .violations_of(Guard::G3)
        .filter_map(GuardViolation::route)
        .collect()
}

/// `base` compiled as generation 1, and with `changes` applied as generation 2; `None` when
/// either does not compile (the generator may draw such changes).
fn before_and_after(base: &Model, changes: &[Change]) -> Option<(Topology, Topology)> {
    let old = base.compile(1)?;
    let mut changed = base.clone();
    for change in changes {
        changed.apply(change);
    }
    Some((old, changed.compile(2)?))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn g3_refuses_exactly_the_routes_left_on_no_live_location(
        base in model(),
        changes in prop::collection::vec(change(), 1..4),
        intents in prop::collection::vec(any::<bool>(), SERVICES),
        blast_radius in any::<bool>(),
    ) {
        let Some((old, new)) = before_and_after(&base, &changes) else {
            return Ok(());
        };
        let expected = expected_global_withdrawals(&old, &new);

        // Bare: exactly the oracle's routes.
        let bare = plan(&old, &new, &Intent::default());
        prop_assert_eq!(&refused_by_g3(&bare), &expected, "{}", bare.render_text());
        if !expected.is_empty() {
            prop_assert_eq!(bare.exit_code(), 3);
            prop_assert!(bare.refused_by_g3());
        }

        // Any intents and blast-radius: still exactly the same routes.
        let mut intent = Intent::default();
        for (index, named) in intents.iter().enumerate() {
            if *named {
                intent = intent.with_service(&format!("s{index}"));
            }
        }
        if blast_radius {
            intent = intent.with_override(Override::BlastRadius);
        }
        let hinted = plan(&old, &new, &intent);
        prop_assert_eq!(&refused_by_g3(&hinted), &expected);
        // Every intent and blast-radius at once: G3 alone decides, and it still refuses.
        let mut everything = Intent::default().with_override(Override::BlastRadius);
        for index in 0..SERVICES {
            everything = everything.with_service(&format!("s{index}"));
        }
        let all_hints = plan(&old, &new, &everything);
        prop_assert_eq!(&refused_by_g3(&all_hints), &expected);
        if expected.is_empty() {
            prop_assert!(all_hints.exit_code() != 3, "{}", all_hints.render_text());
        } else {
            prop_assert_eq!(all_hints.exit_code(), 3);
            // Every other refusal's hint says it is not enough.
            for violation in &bare.violations {
                if violation.guard() != Guard::G3 {
                    prop_assert!(bare.unlock(violation).still_refused_by_g3);
                }
            }
        }

        // Per-route overrides lift exactly the routes they name.
        if let Some(first) = expected.iter().next() {
            let partial = everything
                .clone()
                .with_override(Override::GlobalWithdrawal(*first));
            let mut rest = expected.clone();
            rest.remove(first);
            prop_assert_eq!(&refused_by_g3(&plan(&old, &new, &partial)), &rest);
        }
        let mut overridden = everything;
        for route in &expected {
            overridden = overridden.with_override(Override::GlobalWithdrawal(*route));
        }
        let lifted = plan(&old, &new, &overridden);
        prop_assert!(refused_by_g3(&lifted).is_empty());
        prop_assert!(!lifted.refused_by_g3());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The plan's JSON names each route change's location sets (announce, update, every
    /// withdrawal's) as [`topologyd_topology::Plan::location_names`] does, in the changes'
    /// order: the JSON is written as it is read, without the lists, and must say the same.
    #[test]
    fn the_plan_json_names_every_change_s_locations(
        base in model(),
        changes in prop::collection::vec(change(), 1..4),
    ) {
        let Some((old, new)) = before_and_after(&base, &changes) else {
            return Ok(());
        };
        let planned = plan(&old, &new, &Intent::default());
        let json: serde_json::Value =
            serde_json::from_slice(&serde_json::to_vec(&planned).unwrap()).unwrap();
        let names = |set| serde_json::json!(planned.location_names(set));
        let written = json["changes"].as_array().unwrap();
        prop_assert_eq!(written.len(), planned.changes.len());
        for (change, written) in planned.changes.iter().zip(written) {
            prop_assert_eq!(&written["prefix"], &serde_json::json!(change.prefix));
            prop_assert_eq!(&written["announce"], &names(&change.announce));
            prop_assert_eq!(&written["update"], &names(&change.update));
            let withdrawals = written["withdrawals"].as_array().unwrap();
            prop_assert_eq!(withdrawals.len(), change.withdrawals.len());
            for (withdrawal, written) in change.withdrawals.iter().zip(withdrawals) {
                prop_assert_eq!(&written["locations"], &names(&withdrawal.locations));
            }
        }
    }
}

/// The generator must actually reach every cause class with changes that compile, or the
/// property above proves little: count, over a fixed seed, how often each class produces a
/// compiled change with a global withdrawal.
#[test]
fn every_cause_class_produces_global_withdrawals() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let mut hits: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..3000 {
        let base = model().new_tree(&mut runner).unwrap().current();
        let change = change().new_tree(&mut runner).unwrap().current();
        let Some(old) = base.compile(1) else {
            continue;
        };
        let mut changed = base.clone();
        changed.apply(&change);
        let Some(new) = changed.compile(2) else {
            continue;
        };
        if expected_global_withdrawals(&old, &new).is_empty() {
            continue;
        }
        let class = match change {
            Change::MoveDefaultBinding { .. } => "binding moved",
            Change::ServicePending { .. } => "service made pending",
            Change::ServiceRemoved { .. } => "service removed",
            Change::Selector { .. } => "selector changed",
            Change::LocationState { .. } => "location state changed",
            Change::LocationRemoved { .. } => "location removed",
            Change::AdvertiseOff { .. } => "advertise off",
            Change::Offboard { .. } => "prefix offboarded",
            Change::Announce { .. } => "split length changed",
            Change::AddLayered { .. } => "more-specific binding added",
            Change::RemoveLayered { .. } => "more-specific binding removed",
        };
        *hits.entry(class).or_default() += 1;
    }
    for class in [
        "binding moved",
        "service made pending",
        "service removed",
        "selector changed",
        "location state changed",
        "location removed",
        "advertise off",
        "prefix offboarded",
        "more-specific binding added",
    ] {
        assert!(
            hits.get(class).copied().unwrap_or(0) > 0,
            "no global withdrawal generated for `{class}`: {hits:?}"
        );
    }
}
