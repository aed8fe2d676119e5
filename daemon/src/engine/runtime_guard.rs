//! The runtime guard: the last line of defence, on what is about to be sent from this location.
//! The routes that would change must be exactly the ones the plan (and so its guards) approved
//! for this location, and every route announced must still have a binding covering all of it
//! (G1). Pure: the route lists and the topology in, the problems out.
//!
//! Both route lists are sorted by cidr, so the guard compares them side by side (a list that is
//! not sorted as promised is compared as sets). G1 asks the topology for every route at once:
//! each route's longest binding, each search starting where the last one ended, and a route is
//! called covered only when the binding found contains all of it, so a wrong answer can only be
//! a refusal. The running generation answers for the routes it was asked about when the new one
//! shares its binding records: at 300,000 bindings and 16,000 routes, searching for every route
//! took 6 ms of a toggle's CPU (a cache miss a probe), the routes a toggle adds a fraction of one.
//!
//! Owns nothing; must not touch the running generation.

use std::collections::BTreeSet;

use ipnet::IpNet;
use topologyd_topology::{Plan, Topology};

use crate::announce::LocationRoutes;

/// The problems with sending `after` in place of `before` from `location` under `plan`, or
/// `Ok` when there are none: [`unplanned`]'s, then [`uncovered`]'s.
pub fn runtime_guard(
    plan: &Plan,
    location: &str,
    before: &LocationRoutes,
    after: &LocationRoutes,
    topology: &Topology,
) -> Result<(), Vec<String>> {
    verdict(
        unplanned(plan, location, before, after),
        uncovered(after, topology, None),
    )
}

/// The guard's verdict of the problems of its two halves.
pub fn verdict(unplanned: Vec<String>, uncovered: Vec<String>) -> Result<(), Vec<String>> {
    let mut problems = unplanned;
    problems.extend(uncovered);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The routes that would change (withdrawn or announced) from `location` that the plan did
/// not approve there.
pub fn unplanned(
    plan: &Plan,
    location: &str,
    before: &LocationRoutes,
    after: &LocationRoutes,
) -> Vec<String> {
    let delta = plan.delta(location);
    let planned_withdrawn: BTreeSet<IpNet> = delta.withdraw.iter().copied().collect();
    let planned_announced: BTreeSet<IpNet> =
        delta.announce.iter().map(|route| route.prefix).collect();
    let (withdrawn, announced) = changes(routes_of(before), routes_of(after));
    let mut problems = Vec::new();
    for prefix in withdrawn
        .iter()
        .filter(|prefix| !planned_withdrawn.contains(prefix))
    {
        problems.push(format!(
            "G2/G3 runtime: {prefix} would be withdrawn here, but the plan approved no such withdrawal"
        ));
    }
    for prefix in announced
        .iter()
        .filter(|prefix| !planned_announced.contains(prefix))
    {
        problems.push(format!(
            "runtime: {prefix} would be announced here, but the plan approved no such announcement"
        ));
    }
    problems
}

/// G1 at runtime: every route of `after` that no binding of `topology` covers whole. Needs no
/// plan (a push runs it before its plan, which ends waiting for the canonical hash).
/// `previous`, the running generation a push was compiled against, answers for the routes it
/// was asked about when it shares the new one's binding records (a toggle asks only about the
/// routes it adds).
pub fn uncovered(
    after: &LocationRoutes,
    topology: &Topology,
    previous: Option<&Topology>,
) -> Vec<String> {
    topology
        .uncovered_routes(&after.routes, previous)
        .into_iter()
        .map(|prefix| format!("G1 runtime: {prefix} has no binding covering all of it"))
        .collect()
}

/// A location's routes: each prefix with the index of its attribute set.
type Routes = [(IpNet, u32)];

fn routes_of(routes: &LocationRoutes) -> &Routes {
    routes.routes.as_slice()
}

/// Whether `routes` are in strictly ascending order (sorted, each prefix once).
fn ascending(routes: &Routes) -> bool {
    routes
        .windows(2)
        .all(|pair| order(pair[0].0) < order(pair[1].0))
}

/// `IpNet`'s order as plain integers: the family, then the address as written, then the
/// length.
fn order(net: IpNet) -> (u8, u128, u8) {
    match net {
        IpNet::V4(net) => (4, u32::from(net.addr()).into(), net.prefix_len()),
        IpNet::V6(net) => (6, net.addr().into(), net.prefix_len()),
    }
}

/// The prefixes only `before` holds (withdrawn) and those only `after` holds (announced), each
/// in ascending order.
fn changes(before: &Routes, after: &Routes) -> (Vec<IpNet>, Vec<IpNet>) {
    if !ascending(before) || !ascending(after) {
        let before_set: BTreeSet<IpNet> = before.iter().map(|(prefix, _)| *prefix).collect();
        let after_set: BTreeSet<IpNet> = after.iter().map(|(prefix, _)| *prefix).collect();
        return (
            before_set.difference(&after_set).copied().collect(),
            after_set.difference(&before_set).copied().collect(),
        );
    }
    let (mut withdrawn, mut announced) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (
        before.iter().map(|(prefix, _)| *prefix).peekable(),
        after.iter().map(|(prefix, _)| *prefix).peekable(),
    );
    loop {
        match (
            old.peek().copied().map(order),
            new.peek().copied().map(order),
        ) {
            (Some(gone), Some(kept)) if gone < kept => withdrawn.extend(old.next()),
            (Some(gone), Some(came)) if gone > came => announced.extend(new.next()),
            (Some(_), Some(_)) => {
                old.next();
                new.next();
            }
            (Some(_), None) => withdrawn.extend(old.next()),
            (None, Some(_)) => announced.extend(new.next()),
            (None, None) => break,
        }
    }
    (withdrawn, announced)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::{Ipv4Net, Ipv6Net};
    use proptest::prelude::*;

    use super::*;

    /// Small address spaces, so that generated cidrs nest, touch and repeat often.
    fn network() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (0u32..64, 26u8..=32).prop_map(|(host, length)| {
                let address = Ipv4Addr::from(0x0a00_0000 | (host << 2));
                IpNet::V4(Ipv4Net::new(address, length).unwrap_or_default().trunc())
            }),
            (0u128..64, 122u8..=128).prop_map(|(host, length)| {
                let address = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (host << 2));
                IpNet::V6(Ipv6Net::new(address, length).unwrap_or_default().trunc())
            }),
        ]
    }

    fn sorted(mut list: Vec<IpNet>) -> Vec<IpNet> {
        list.sort_unstable();
        list.dedup();
        list
    }

    fn routes(list: &[IpNet]) -> Vec<(IpNet, u32)> {
        list.iter().map(|prefix| (*prefix, 0)).collect()
    }

    proptest! {
        /// G1 at runtime names exactly the routes no binding contains all of, in the routes'
        /// order, sorted or not: bindings generated inside an onboarded /16 (compiled, so as
        /// the compiler lets them through), routes in and around it, wider and narrower;
        /// whether asked alone, or after a previous generation answered an earlier list: with
        /// the same records, which answer for the routes both lists hold, or with other
        /// bindings, whose answers are not taken.
        #[test]
        fn uncovered_names_the_routes_no_binding_contains(
            bindings in proptest::collection::vec((0u32..256, 18u8..=26), 0..40),
            routes in proptest::collection::vec((0u32..512, 15u8..=28), 0..60),
            earlier in proptest::collection::vec((0u32..512, 15u8..=28), 0..60),
            sort in any::<bool>(),
            previous in 0_u8..3,
        ) {
            let net = |(third, length): (u32, u8)| {
                let address = Ipv4Addr::from(0x0a00_0000 | (third << 8));
                IpNet::V4(Ipv4Net::new(address, length).unwrap_or_default().trunc())
            };
            let bindings = sorted(bindings.into_iter().map(net).collect());
            let mut text = format!(
                "{FLEET}\n[[prefix]]\ncidr = \"10.0.0.0/16\"\norigin_asn = 13335\nowner = \"us\"\nadvertise = false\n"
            );
            for binding in &bindings {
                text += &format!("\n[[binding]]\ncidr = \"{binding}\"\nservice = \"web\"\n");
            }
            let topology = compiled(&text);
            // Another generation: the /16 bound whole, so that it covers every route in it.
            let other = compiled(&format!(
                "{FLEET}\n[[prefix]]\ncidr = \"10.0.0.0/16\"\norigin_asn = 13335\nowner = \"us\"\nadvertise = false\n\n[[binding]]\ncidr = \"10.0.0.0/16\"\nservice = \"web\"\n"
            ));
            let mut list: Vec<IpNet> = routes.into_iter().map(net).collect();
            if sort {
                list = sorted(list);
            }
            let after = LocationRoutes {
                routes: std::sync::Arc::new(super::tests::routes(&list)),
                ..at_ams01(&topology)
            };
            let expected: Vec<String> = list
                .iter()
                .filter(|route| !bindings.iter().any(|binding| binding.contains(*route)))
                .map(|route| format!("G1 runtime: {route} has no binding covering all of it"))
                .collect();
            let previous = [None, Some(&topology), Some(&other)][usize::from(previous)];
            if let Some(previous) = previous {
                let earlier = LocationRoutes {
                    routes: std::sync::Arc::new(super::tests::routes(&sorted(
                        earlier.into_iter().map(net).collect(),
                    ))),
                    ..at_ams01(previous)
                };
                // The first answer is the one kept: the earlier list's.
                let _ = uncovered(&earlier, previous, None);
            }
            prop_assert_eq!(uncovered(&after, &topology, previous), expected);
        }

        /// The merge finds what the sets' differences find, for sorted and unsorted lists.
        #[test]
        fn the_changes_are_the_differences_of_the_sets(
            before in proptest::collection::vec(network(), 0..60),
            after in proptest::collection::vec(network(), 0..60),
            sort in any::<bool>(),
        ) {
            let (before, after) = if sort { (sorted(before), sorted(after)) } else { (before, after) };
            let before_set: BTreeSet<IpNet> = before.iter().copied().collect();
            let after_set: BTreeSet<IpNet> = after.iter().copied().collect();
            let (withdrawn, announced) = changes(&routes(&before), &routes(&after));
            prop_assert_eq!(withdrawn, before_set.difference(&after_set).copied().collect::<Vec<_>>());
            prop_assert_eq!(announced, after_set.difference(&before_set).copied().collect::<Vec<_>>());
        }
    }

    const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"

[[location]]
name = "fra01"
region = "eu"
metro = "FRA"
country = "DE"
state = "live"

[[service]]
name = "web"
topology = "all"

[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "us"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "web"
"#;

    const SECOND: &str = r#"
[[prefix]]
cidr = "198.51.100.0/24"
origin_asn = 13335
owner = "us"
advertise = true

[[binding]]
cidr = "198.51.100.0/24"
service = "web"

[[prefix]]
cidr = "203.0.113.0/24"
origin_asn = 13335
owner = "us"
advertise = true

[[binding]]
cidr = "203.0.113.0/24"
service = "web"
"#;

    fn compiled(text: &str) -> Topology {
        topologyd_topology::compile(&[topologyd_topology::Source::new("t.toml", text)], 1)
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
    }

    fn at_ams01(topology: &Topology) -> LocationRoutes {
        let desired = topology
            .desired("ams01")
            .unwrap_or_else(|error| panic!("{error}"));
        LocationRoutes::from_desired(1, &desired)
    }

    /// `routes` with `change` made to its list, kept sorted or not.
    fn changed(
        routes: &LocationRoutes,
        sorted: bool,
        change: impl FnOnce(&mut Vec<(IpNet, u32)>),
    ) -> LocationRoutes {
        let mut list = routes.routes.as_ref().clone();
        change(&mut list);
        list.sort_unstable();
        if !sorted {
            list.reverse();
            assert!(!ascending(&list), "at least two routes, out of order");
        }
        LocationRoutes {
            routes: std::sync::Arc::new(list),
            ..routes.clone()
        }
    }

    /// The guard against a compiled topology and a real plan: what the plan approved passes,
    /// anything else is named, whether the lists come sorted or not.
    #[test]
    fn the_guard_lets_through_what_the_plan_approved_and_names_the_rest() {
        let net = |text: &str| text.parse::<IpNet>().unwrap_or_else(|_| unreachable!());
        let old = compiled(FLEET);
        let new = compiled(&format!("{FLEET}{SECOND}"));
        let intent = topologyd_topology::Intent::default();
        let (before, after) = (at_ams01(&old), at_ams01(&new));
        let growing = topologyd_topology::plan(&old, &new, &intent);
        let same = topologyd_topology::plan(&new, &new, &intent);
        assert_eq!(
            runtime_guard(&growing, "ams01", &before, &after, &new),
            Ok(())
        );
        assert_eq!(runtime_guard(&same, "ams01", &after, &after, &new), Ok(()));
        for sorted in [true, false] {
            // The plan made for no change does not approve the new prefix.
            let problems = runtime_guard(&same, "ams01", &before, &after, &new)
                .expect_err("announcements the plan did not approve");
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert!(problems[0].starts_with("runtime: 198.51.100.0/24 would be announced"));
            assert!(problems[1].starts_with("runtime: 203.0.113.0/24 would be announced"));

            let fewer = changed(&after, sorted, |list| {
                list.retain(|(prefix, _)| *prefix != net("192.0.2.0/24"));
            });
            let problems = runtime_guard(&same, "ams01", &after, &fewer, &new)
                .expect_err("a withdrawal the plan did not approve");
            assert_eq!(
                problems,
                vec![
                    "G2/G3 runtime: 192.0.2.0/24 would be withdrawn here, but the plan approved no such withdrawal"
                ]
            );

            let unbound = changed(&after, sorted, |list| list.push((net("100.64.0.0/24"), 0)));
            let problems = runtime_guard(&same, "ams01", &after, &unbound, &new)
                .expect_err("a route with no binding");
            assert_eq!(problems.len(), 2, "{problems:?}");
            assert!(problems[0].starts_with("runtime: 100.64.0.0/24 would be announced"));
            assert_eq!(
                problems[1],
                "G1 runtime: 100.64.0.0/24 has no binding covering all of it"
            );

            // Larger than its binding: the binding covers only half of it.
            let wider = changed(&after, sorted, |list| list.push((net("192.0.2.0/23"), 0)));
            let problems = runtime_guard(&same, "ams01", &after, &wider, &new)
                .expect_err("a route wider than its binding");
            assert!(
                problems.contains(
                    &"G1 runtime: 192.0.2.0/23 has no binding covering all of it".to_owned()
                ),
                "{problems:?}"
            );
        }
    }
}
