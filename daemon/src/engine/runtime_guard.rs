//! The runtime guard: the last line of defence, on what is about to be sent from this location.
//! The routes that would change must be exactly the ones the plan (and so its guards) approved
//! for this location, and every route announced must still have a binding covering all of it
//! (G1). Pure: the route lists and the topology in, the problems out.
//!
//! Both route lists and the topology's bindings are sorted by cidr, so the guard walks them
//! side by side: at 300,000 bindings a toggle's guard took 5 ms with a set per list and a
//! binary search per route, against a fraction of that walked. A list that is not sorted as
//! promised is checked the slow way; and the walk can only err towards a refusal (a route is
//! called covered only when a binding that contains it was found).
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
        uncovered(after, topology),
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
pub fn uncovered(after: &LocationRoutes, topology: &Topology) -> Vec<String> {
    let after = routes_of(after);
    let bindings = topology.binding_cidrs();
    // The walk reads the bindings up to the last route; a search per route reads about
    // log2(bindings) of them: a location with few routes searches.
    let walked = after
        .len()
        .saturating_mul(bindings.len().checked_ilog2().unwrap_or(0) as usize + 1)
        >= bindings.len();
    let covered = walked.then(|| covered(after, bindings)).flatten();
    let covered = covered.unwrap_or_else(|| {
        after
            .iter()
            .map(|(prefix, _)| {
                topology
                    .longest_binding(prefix)
                    .is_some_and(|(binding, _)| binding.contains(prefix))
            })
            .collect()
    });
    after
        .iter()
        .zip(covered)
        .filter(|(_, covered)| !covered)
        .map(|((prefix, _), _)| format!("G1 runtime: {prefix} has no binding covering all of it"))
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

/// For each of `routes`, whether one of `bindings` contains all of it; None when `routes`,
/// or the bindings read (those that sort up to the last route), are not in strictly ascending
/// order. Bindings out of order after the last route go unnoticed: they could only make a
/// covered route look uncovered, a refusal.
///
/// One walk over both: `open` holds the bindings met so far that may still contain a later
/// route, each inside the one below it. Cidrs are nested or disjoint, and a binding that sorts
/// before a route and contains the route's first address contains the whole route; so one
/// that does not contain a route ends before it, and before every later one. (This holds for
/// cidrs without host bits, which is all the compiler lets through; one written with host bits
/// can only be called uncovered.)
fn covered(routes: &Routes, bindings: impl Iterator<Item = IpNet>) -> Option<Vec<bool>> {
    if !ascending(routes) {
        return None;
    }
    let mut covered = Vec::with_capacity(routes.len());
    let mut open: Vec<Range> = Vec::new();
    let mut last: Option<Range> = None;
    let mut next = bindings.map(Range::of).peekable();
    for (route, _) in routes {
        let route = Range::of(*route);
        while let Some(binding) = next.next_if(|binding| binding.order <= route.order) {
            if last.is_some_and(|last| last.order >= binding.order) {
                return None;
            }
            last = Some(binding);
            while open.last().is_some_and(|outer| !outer.contains(&binding)) {
                open.pop();
            }
            open.push(binding);
        }
        while open.last().is_some_and(|outer| !outer.contains(&route)) {
            open.pop();
        }
        covered.push(!open.is_empty());
    }
    Some(covered)
}

/// A cidr as plain integers, for the walk's many comparisons: `IpNet`'s order (the family,
/// then the address as written, then the length) and the first and last address it covers.
#[derive(Debug, Clone, Copy)]
struct Range {
    order: (u8, u128, u8),
    first: u128,
    last: u128,
}

impl Range {
    fn of(net: IpNet) -> Range {
        match net {
            IpNet::V4(v4) => Range {
                order: order(net),
                first: u32::from(v4.network()).into(),
                last: u32::from(v4.broadcast()).into(),
            },
            IpNet::V6(v6) => Range {
                order: order(net),
                first: v6.network().into(),
                last: v6.broadcast().into(),
            },
        }
    }

    /// Whether `self` covers all of `other` (as `IpNet::contains`).
    fn contains(&self, other: &Range) -> bool {
        self.order.0 == other.order.0 && self.first <= other.first && other.last <= self.last
    }
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

    /// Networks as written, host bits and all.
    fn written() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32).prop_map(|(address, length)| {
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(address), length).unwrap_or_default())
            }),
            (any::<u128>(), 0u8..=128).prop_map(|(address, length)| {
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(address), length).unwrap_or_default())
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
        /// The walk says a route is covered exactly when some binding contains all of it.
        #[test]
        fn the_walk_finds_a_covering_binding_exactly_when_there_is_one(
            bindings in proptest::collection::vec(network(), 0..60),
            routes in proptest::collection::vec(network(), 0..60),
        ) {
            let (bindings, routes) = (sorted(bindings), sorted(routes));
            let walked = covered(&super::tests::routes(&routes), bindings.iter().copied())
                .ok_or_else(|| TestCaseError::fail("sorted lists"))?;
            let searched: Vec<bool> = routes
                .iter()
                .map(|route| bindings.iter().any(|binding| binding.contains(route)))
                .collect();
            prop_assert_eq!(walked, searched);
        }

        /// The integer form orders and contains as `IpNet` does.
        #[test]
        fn ranges_order_and_contain_as_networks_do(
            a in prop_oneof![network(), written()],
            b in prop_oneof![network(), written()],
        ) {
            let (x, y) = (Range::of(a), Range::of(b));
            prop_assert_eq!(x.order.cmp(&y.order), a.cmp(&b));
            prop_assert_eq!(x.contains(&y), a.contains(&b));
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
    /// anything else is named, whether the lists come sorted (walked) or not (searched).
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

    #[test]
    fn unsorted_lists_are_not_walked() {
        let net = |text: &str| text.parse::<IpNet>().unwrap_or_else(|_| unreachable!());
        let (a, b) = (net("10.0.0.0/24"), net("10.0.1.0/24"));
        let walk =
            |list: &[IpNet], bindings: &[IpNet]| covered(&routes(list), bindings.iter().copied());
        assert_eq!(walk(&[b, a], &[a, b]), None);
        assert_eq!(walk(&[a, b], &[b, a]), None);
        assert_eq!(walk(&[a, a], &[a]), None);
        assert_eq!(walk(&[a, b], &[net("10.0.0.0/23")]), Some(vec![true, true]));
        assert_eq!(
            walk(&[net("10.0.0.0/23")], &[a, b]),
            Some(vec![false]),
            "two halves are not one binding covering the whole"
        );
    }
}
