//! Longest-prefix match over a sorted list of distinct networks (the compiled bindings), kept as
//! one parent index per network: the longest other network of the list that contains it.
//!
//! Why not a trie (`prefix_trie::PrefixMap`, which the RPKI index uses): the bindings are
//! already a vector sorted by network for the compile's sweeps, and every push compiles the
//! whole table again. A trie copies each of them into its own node (tens of bytes each, plus
//! the branch nodes) and is built by one insertion per binding; the parent index is four bytes
//! per binding, made by one pass over the sorted list, and answers a query with a binary search
//! and a walk up at most one network per length (33 for IPv4, 129 for IPv6).
//!
//! Why it is exact: in `IpNet`'s order (family, address, length) every network that contains
//! another comes before it. For a query Q, let P be the last network not after Q. The longest
//! network C containing Q, if any, is P or contains P (P lies between C and Q, so its address is
//! inside C, and a network shorter than C with its address inside C would start at C's address
//! and sort before C); so C is P or one of P's ancestors, and the walk up from P meets it before
//! any shorter network that contains Q. The property test in `tests` checks it against a trie.
//!
//! Owns: the parent index. Must not touch: the list itself (the caller keeps it sorted).

use ipnet::IpNet;

/// No network of the list contains this one.
const ROOT: u32 = u32::MAX;

/// Per network of a sorted, duplicate-free list: the index of its nearest container in the list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Nesting {
    parent: Vec<u32>,
}

impl Nesting {
    /// The index of `networks`, which must be sorted by `IpNet`'s order without duplicates (a
    /// list that is not gives wrong answers, never a panic).
    pub(crate) fn of_sorted(networks: impl ExactSizeIterator<Item = IpNet>) -> Nesting {
        let mut parent = Vec::with_capacity(networks.len());
        // The chain of networks containing the current one, shortest first.
        let mut open: Vec<(u32, IpNet)> = Vec::with_capacity(32);
        for (index, network) in networks.enumerate() {
            while open
                .last()
                .is_some_and(|(_, container)| !container.contains(&network))
            {
                open.pop();
            }
            parent.push(open.last().map_or(ROOT, |(container, _)| *container));
            // An index past u32 cannot be a binding: the compile refuses such a topology first.
            open.push((u32::try_from(index).unwrap_or(ROOT), network));
        }
        Nesting { parent }
    }

    /// The index of the longest of `items` (the list this index was made of, `key` giving each
    /// one's network) that contains `network` (equal or shorter).
    pub(crate) fn longest<T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> IpNet,
        network: &IpNet,
    ) -> Option<u32> {
        let network = network.trunc();
        let index = items.partition_point(|item| key(item) <= network);
        self.walk_up(items, key, &network, index)
    }

    /// [`Nesting::longest`] of each of `networks` in turn: a search starts where the last one
    /// ended when the networks ascend, and gallops forward from there (a location's routes
    /// against every binding: about log2 of the gap between two routes' places read a route,
    /// instead of log2 of the whole list); a network before the last one is searched whole.
    pub(crate) fn longest_each<'network, T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> IpNet + Copy,
        networks: impl Iterator<Item = &'network IpNet>,
    ) -> Vec<Option<u32>> {
        let mut found = Vec::with_capacity(networks.size_hint().0);
        // Every item before `start` is not after the last network searched.
        let (mut start, mut last) = (0_usize, None::<IpNet>);
        for network in networks {
            let network = network.trunc();
            if last.is_some_and(|last| network < last) {
                start = 0;
            }
            last = Some(network);
            let (mut low, mut step, mut high) = (start, 1_usize, items.len());
            while let Some(probe) = low.checked_add(step).filter(|probe| *probe <= items.len()) {
                if key(&items[probe - 1]) <= network {
                    low = probe;
                    step = step.saturating_mul(2);
                } else {
                    high = probe;
                    break;
                }
            }
            start = low + items[low..high].partition_point(|item| key(item) <= network);
            found.push(self.walk_up(items, key, &network, start));
        }
        found
    }

    /// From the last item before `after` (the place of the first item after `network`), up
    /// its containers to the first that contains `network`.
    fn walk_up<T>(
        &self,
        items: &[T],
        key: impl Fn(&T) -> IpNet,
        network: &IpNet,
        after: usize,
    ) -> Option<u32> {
        let mut index = after.checked_sub(1)?;
        loop {
            if key(items.get(index)?).contains(network) {
                return u32::try_from(index).ok();
            }
            match self.parent.get(index) {
                Some(&parent) if parent != ROOT => index = parent as usize,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::{Ipv4Net, Ipv6Net};
    use prefix_trie::PrefixMap;
    use proptest::prelude::*;

    use super::*;

    /// Networks in a small corner of each family, so that they nest often.
    fn network() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (0_u32..1 << 12, 20_u8..=32).prop_map(|(low, length)| IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | low), length)
                    .map(|net| net.trunc())
                    .unwrap_or_default()
            )),
            (0_u128..1 << 12, 116_u8..=128).prop_map(|(low, length)| IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from((0x2001_0db8_u128 << 96) | low), length)
                    .map(|net| net.trunc())
                    .unwrap_or_default()
            )),
        ]
    }

    /// Queries of any length in the same corners, shorter ones too.
    fn query() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (0_u32..1 << 12, 0_u8..=32).prop_map(|(low, length)| IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 | low), length).unwrap_or_default()
            )),
            (0_u128..1 << 12, 0_u8..=128).prop_map(|(low, length)| IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from((0x2001_0db8_u128 << 96) | low), length)
                    .unwrap_or_default()
            )),
        ]
    }

    fn trie_longest(
        v4: &PrefixMap<Ipv4Net, usize>,
        v6: &PrefixMap<Ipv6Net, usize>,
        query: &IpNet,
    ) -> Option<usize> {
        match query.trunc() {
            IpNet::V4(net) => v4.get_lpm(&net).map(|(_, index)| *index),
            IpNet::V6(net) => v6.get_lpm(&net).map(|(_, index)| *index),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The parent index answers every query as a trie of the same networks does.
        #[test]
        fn longest_match_equals_a_trie(
            mut networks in proptest::collection::vec(network(), 0..200),
            queries in proptest::collection::vec(query(), 1..100),
        ) {
            networks.sort_unstable();
            networks.dedup();
            let nesting = Nesting::of_sorted(networks.iter().copied());
            let mut v4 = PrefixMap::new();
            let mut v6 = PrefixMap::new();
            for (index, network) in networks.iter().enumerate() {
                match network {
                    IpNet::V4(net) => { v4.insert(*net, index); }
                    IpNet::V6(net) => { v6.insert(*net, index); }
                }
            }
            // Every listed network finds itself; every query finds what the trie finds.
            for (index, network) in networks.iter().enumerate() {
                prop_assert_eq!(nesting.longest(&networks, |n| *n, network), Some(index as u32));
            }
            for query in queries.iter().chain(networks.iter()) {
                let expected = trie_longest(&v4, &v6, query).map(|index| index as u32);
                prop_assert_eq!(nesting.longest(&networks, |n| *n, query), expected, "query {}", query);
            }
            // Searched in turn, galloping from the last place: in the queries' order (a network
            // before the last one searched whole) and ascending, each as searched alone.
            let mut ascending = queries.clone();
            ascending.sort_unstable();
            for order in [&queries, &ascending, &networks] {
                let alone: Vec<Option<u32>> = order
                    .iter()
                    .map(|query| nesting.longest(&networks, |n| *n, query))
                    .collect();
                prop_assert_eq!(nesting.longest_each(&networks, |n| *n, order.iter()), alone);
            }
        }
    }

    #[test]
    fn a_query_with_host_bits_is_matched_by_its_network() {
        let networks: Vec<IpNet> = ["10.0.0.0/24", "10.0.0.4/30", "10.0.0.128/25"]
            .iter()
            .filter_map(|text| text.parse().ok())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let nesting = Nesting::of_sorted(networks.iter().copied());
        let query: IpNet = "10.0.0.5/31".parse().unwrap_or_default();
        let found = nesting.longest(&networks, |n| *n, &query);
        assert_eq!(
            found.map(|index| networks[index as usize]),
            networks.get(1).copied()
        );
        let other_family: IpNet = "::/0".parse().unwrap_or_default();
        assert_eq!(nesting.longest(&networks, |n| *n, &other_family), None);
    }
}
