//! G1 asked of a location's routes, remembered: which of the routes no binding covers whole,
//! kept by the topology that answered so that the next topology sharing its binding records
//! (an `advertise` toggled: `compile/patch.rs`) asks its bindings only about the routes it adds.
//!
//! Whether a binding covers a network whole depends on the binding cidrs alone, so two binding
//! lists that share their records (`BindingList::shares_records_with`) answer every network the
//! same: a remembered answer is the answer. A route of the new list that the remembered list
//! does not hold is searched for as before (`BindingList::longest_each`). Lists that are not
//! ascending, and lists checked against other records, are searched for whole.
//!
//! Owns: the remembered answer (the routes asked, shared with their owner, and the uncovered
//! ones). Must not touch: what a route is announced with (the caller's tag is carried, never read).

use std::sync::Arc;

use ipnet::IpNet;

use crate::binding_list::BindingList;

/// A location's routes as the daemon keeps them: each network (ascending there; any order is
/// answered) with a tag of the caller's (the index of its attribute set) never read here.
pub type TaggedRoutes = Arc<Vec<(IpNet, u32)>>;

/// The answer for one list of routes: the list (shared with whoever keeps it, never copied)
/// and the networks of it that no binding covers whole, ascending.
#[derive(Debug)]
pub(crate) struct RouteCoverage {
    routes: TaggedRoutes,
    uncovered: Vec<IpNet>,
}

impl RouteCoverage {
    /// The networks of `routes` that no binding of `bindings` covers whole (the longest binding
    /// found must contain all of the network), in the order of `routes`, with the answer to
    /// remember. `known`, an answer taken with the same binding records, answers every route it
    /// holds; the others are searched for.
    pub(crate) fn answer(
        bindings: &BindingList,
        routes: &TaggedRoutes,
        known: Option<&RouteCoverage>,
    ) -> (Vec<IpNet>, Option<RouteCoverage>) {
        let ascending = strictly_ascending(routes);
        let (asked, mut uncovered) = match known.filter(|_| ascending) {
            Some(known) => known.split(routes),
            None => ((0..routes.len()).collect(), Vec::new()),
        };
        let longest = bindings.longest_each(asked.iter().map(|&place| &routes[place].0));
        for (place, longest) in asked.into_iter().zip(longest) {
            let network = routes[place].0;
            let covered = longest.is_some_and(|index| {
                bindings
                    .get(index as usize)
                    .is_some_and(|binding| binding.cidr.contains(&network))
            });
            if !covered {
                uncovered.push((place, network));
            }
        }
        uncovered.sort_unstable_by_key(|(place, _)| *place);
        let uncovered: Vec<IpNet> = uncovered.into_iter().map(|(_, network)| network).collect();
        // Only an ascending list can be walked beside the next one.
        let remembered = ascending.then(|| RouteCoverage {
            routes: Arc::clone(routes),
            uncovered: uncovered.clone(),
        });
        (uncovered, remembered)
    }

    /// Walks `routes` (ascending) beside the remembered list: the places of the routes it does
    /// not hold (to search for), and the remembered uncovered ones it does, with their places.
    fn split(&self, routes: &[(IpNet, u32)]) -> (Vec<usize>, Vec<(usize, IpNet)>) {
        let (mut asked, mut uncovered) = (Vec::new(), Vec::new());
        let (mut known, mut known_uncovered) = (self.routes.iter().peekable(), 0_usize);
        for (place, (network, _)) in routes.iter().enumerate() {
            while known.next_if(|(held, _)| held < network).is_some() {}
            if known.next_if(|(held, _)| held == network).is_none() {
                asked.push(place);
                continue;
            }
            while self
                .uncovered
                .get(known_uncovered)
                .is_some_and(|held| held < network)
            {
                known_uncovered += 1;
            }
            if self.uncovered.get(known_uncovered) == Some(network) {
                uncovered.push((place, *network));
            }
        }
        (asked, uncovered)
    }
}

fn strictly_ascending(routes: &[(IpNet, u32)]) -> bool {
    routes.windows(2).all(|pair| pair[0].0 < pair[1].0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use ipnet::Ipv4Net;
    use proptest::prelude::*;
    use topologyd_config::Span;

    use super::*;
    use crate::model::Binding;

    fn net(address: u32, length: u8) -> IpNet {
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(address), length)
                .unwrap()
                .trunc(),
        )
    }

    /// Networks over a small space (10.0.0.0/8, ten bits of it free) so that the generated
    /// bindings and routes nest, overlap and coincide often.
    fn network() -> impl Strategy<Value = IpNet> {
        (0_u32..1024, 14_u8..=26).prop_map(|(bits, length)| net(0x0A00_0000 | (bits << 12), length))
    }

    fn bindings(cidrs: Vec<IpNet>) -> BindingList {
        let mut cidrs = cidrs;
        cidrs.sort_unstable();
        cidrs.dedup();
        BindingList::new(
            cidrs
                .into_iter()
                .enumerate()
                .map(|(index, cidr)| Binding {
                    cidr,
                    service: 0,
                    prefix: 0,
                    made_span: Span::new(0, index..index + 1).into(),
                })
                .collect(),
        )
    }

    fn routes(networks: Vec<IpNet>, sorted: bool) -> TaggedRoutes {
        let mut networks = networks;
        if sorted {
            networks.sort_unstable();
            networks.dedup();
        }
        Arc::new(networks.into_iter().map(|network| (network, 7)).collect())
    }

    /// The definition, one route at a time: no binding contains all of the network.
    fn uncovered_by_definition(bindings: &BindingList, routes: &TaggedRoutes) -> Vec<IpNet> {
        routes
            .iter()
            .map(|(network, _)| *network)
            .filter(|network| {
                !bindings
                    .iter()
                    .any(|binding| binding.cidr.contains(network))
            })
            .collect()
    }

    proptest! {
        /// Whatever was remembered of an earlier list under the same records, the answer for
        /// the next list is the definition's, and so is what it remembers for the one after.
        #[test]
        fn a_remembered_answer_answers_as_the_definition_does(
            cidrs in proptest::collection::vec(network(), 0..60),
            lists in proptest::collection::vec(
                (proptest::collection::vec(network(), 0..80), any::<bool>()),
                1..5,
            ),
        ) {
            let bindings = bindings(cidrs);
            let mut known: Option<RouteCoverage> = None;
            for (networks, sorted) in lists {
                let routes = routes(networks, sorted);
                let (uncovered, remembered) =
                    RouteCoverage::answer(&bindings, &routes, known.as_ref());
                prop_assert_eq!(&uncovered, &uncovered_by_definition(&bindings, &routes));
                prop_assert_eq!(remembered.is_some(), strictly_ascending(&routes));
                if remembered.is_some() {
                    known = remembered;
                }
            }
        }
    }

    /// A list that keeps most of the remembered one searches only for the routes it adds.
    #[test]
    fn only_the_routes_not_remembered_are_searched_for() {
        let bindings = bindings(vec![net(0x0A00_0000, 16)]);
        let first = routes(vec![net(0x0A00_0000, 24), net(0x0B00_0000, 24)], true);
        let (uncovered, known) = RouteCoverage::answer(&bindings, &first, None);
        assert_eq!(uncovered, vec![net(0x0B00_0000, 24)]);
        let known = known.unwrap();
        let next = routes(
            vec![
                net(0x0A00_0000, 24),
                net(0x0A00_0100, 24),
                net(0x0B00_0000, 24),
            ],
            true,
        );
        let (asked, remembered) = known.split(&next);
        assert_eq!(asked, vec![1]);
        assert_eq!(remembered, vec![(2, net(0x0B00_0000, 24))]);
        let (uncovered, _) = RouteCoverage::answer(&bindings, &next, Some(&known));
        assert_eq!(uncovered, vec![net(0x0B00_0000, 24)]);
    }
}
