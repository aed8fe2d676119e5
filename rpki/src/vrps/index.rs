//! [`VrpIndex`]: a frozen, compact copy of a [`VrpSet`] for judging many routes fast.
//!
//! The trie of [`VrpSet`] takes updates one VRP at a time; walking it costs one cache miss per
//! level (about twenty for a random IPv4 route in a global-sized set). The index trades updates
//! for speed and size: per family, every distinct VRP prefix in one array of small nodes sorted
//! by (start address, length) — a pre-order walk of the prefix tree —, each with the position
//! of its nearest enclosing prefix (its parent) and its first (ASN, max-length) entry inline
//! (further entries in a second array), and a table of 65,536 buckets by 16 address bits (those
//! after the leading bits all the family's prefixes share) pointing into the node array.
//!
//! Finding the VRPs covering a route (address `a`, length `L`): the bucket narrows the array to
//! the prefixes starting in the route's bucket (a handful), a binary search finds the last prefix
//! `C` not after `(a, L)`, and the deepest covering prefix is `C` or the first of `C`'s
//! ancestors that covers the route (prefixes nest or are disjoint; a covering prefix deeper
//! than that would sort after `C`). Every ancestor of the deepest covering prefix covers the
//! route too, so the covering VRPs are that prefix's chain of parents. Each node carries a
//! 64-bit filter of the ASNs of its and its ancestors' entries, so a route whose origin no
//! covering VRP names is known invalid without walking the chain.
//!
//! Owns: building the index from a set, RFC 6811 `state`/`validate`/`covering` on it (always
//! equal to the set's), and its memory size. Must not touch: updates (rebuild from the set).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::{Entries, RpkiState, Validation, Vrp, VrpSet};

/// No parent.
const NONE: u32 = u32::MAX;
/// Buckets per family: 16 bits of the address, after the bits every prefix shares.
const BUCKET_BITS: u32 = 16;
const LAST_BUCKET: usize = (1 << BUCKET_BITS) - 1;
/// How many routes [`VrpIndex::states`] judges together.
const STATE_GROUP: usize = 16;

/// An address of one family, as an unsigned integer.
trait Address: Copy + Ord + Default {
    /// The address in the top bits of a `u128`.
    fn wide(self) -> u128;
    /// The first `length` bits, the rest zero.
    fn masked(self, length: u8) -> Self;
    fn network(self, length: u8) -> IpNet;
}

impl Address for u32 {
    fn wide(self) -> u128 {
        u128::from(self) << 96
    }

    fn masked(self, length: u8) -> u32 {
        match length {
            0 => 0,
            32.. => self,
            _ => self & (u32::MAX << (32 - u32::from(length))),
        }
    }

    fn network(self, length: u8) -> IpNet {
        IpNet::V4(Ipv4Net::new(self.into(), length).unwrap_or_default())
    }
}

impl Address for u128 {
    fn wide(self) -> u128 {
        self
    }

    fn masked(self, length: u8) -> u128 {
        match length {
            0 => 0,
            128.. => self,
            _ => self & (u128::MAX << (128 - u32::from(length))),
        }
    }

    fn network(self, length: u8) -> IpNet {
        IpNet::V6(Ipv6Net::new(self.into(), length).unwrap_or_default())
    }
}

/// A prefix (masked start, length) and its (ASN, max-length) entries.
type PrefixEntries<'set, A> = (A, u8, &'set [(u32, u8)]);

/// One prefix: where it starts, its length, its parent and its first entry inline (one cache
/// line holds several nodes, so a lookup touches few lines).
#[derive(Debug, Clone, Copy, Default)]
struct Node<A> {
    start: A,
    parent: u32,
    /// The entries after the first: `more[more_from..]` up to the next node's `more_from`.
    more_from: u32,
    asn: u32,
    /// One bit per ASN (of 64, by hash) of every entry of this prefix and its ancestors: an
    /// origin whose bit is clear is named by no covering VRP, without walking the ancestors.
    origins: u64,
    length: u8,
    max_length: u8,
}

/// The bit of `asn` in [`Node::origins`].
fn origin_bit(asn: u32) -> u64 {
    1 << (asn.wrapping_mul(0x9e37_79b1) >> 26)
}

/// The bucket table: the 16 address bits after the `shared` leading bits every prefix start
/// has in common (so that a family whose prefixes all sit in 2000::/16 still spreads).
/// Monotonic in the address: an address below the shared range is bucket 0, above it the last.
#[derive(Debug, Clone, Default)]
struct Buckets {
    shared: u32,
    /// The shared bits, in the top bits.
    common: u128,
    /// `first[b]`: the first node whose start is in bucket `b` or a later one.
    first: Vec<u32>,
}

impl Buckets {
    fn of(&self, wide: u128) -> usize {
        let shift = 128 - self.shared;
        let mine = wide.checked_shr(shift).unwrap_or(0);
        let common = self.common.checked_shr(shift).unwrap_or(0);
        if mine < common {
            0
        } else if mine > common {
            LAST_BUCKET
        } else {
            ((wide << self.shared) >> (128 - BUCKET_BITS)) as usize
        }
    }
}

/// One family's prefixes in pre-order, with parents, entries and buckets (see the module doc).
#[derive(Debug, Clone, Default)]
struct FamilyIndex<A> {
    nodes: Vec<Node<A>>,
    more: Vec<(u32, u8)>,
    buckets: Buckets,
}

impl<A: Address> FamilyIndex<A> {
    /// From `(start, length, entries)` in any order; every start already masked, every
    /// prefix with at least one entry.
    fn build(mut prefixes: Vec<PrefixEntries<'_, A>>) -> FamilyIndex<A> {
        prefixes.retain(|(_, _, entries)| !entries.is_empty());
        prefixes.sort_unstable_by_key(|(start, length, _)| (*start, *length));
        let mut nodes: Vec<Node<A>> = Vec::with_capacity(prefixes.len());
        let mut more = Vec::new();
        // The prefixes enclosing the current one, innermost last.
        let mut open: Vec<u32> = Vec::new();
        for (position, (start, length, entries)) in prefixes.iter().enumerate() {
            while let Some(&top) = open.last() {
                let top = &nodes[top as usize];
                if start.masked(top.length) == top.start {
                    break;
                }
                open.pop();
            }
            let (asn, max_length) = entries[0];
            let parent = open.last().copied().unwrap_or(NONE);
            let inherited = nodes
                .get(parent as usize)
                .map_or(0, |parent| parent.origins);
            let origins = entries
                .iter()
                .fold(inherited, |bits, (asn, _)| bits | origin_bit(*asn));
            nodes.push(Node {
                start: *start,
                parent,
                more_from: more.len() as u32,
                asn,
                origins,
                length: *length,
                max_length,
            });
            more.extend_from_slice(&entries[1..]);
            open.push(position as u32);
        }
        let shared = match (nodes.first(), nodes.last()) {
            (Some(first), Some(last)) => (first.start.wide() ^ last.start.wide())
                .leading_zeros()
                .min(128 - BUCKET_BITS),
            _ => 0,
        };
        let common = match nodes.first() {
            Some(first) if shared > 0 => first.start.wide() & (u128::MAX << (128 - shared)),
            _ => 0,
        };
        let mut buckets = Buckets {
            shared,
            common,
            first: vec![0; LAST_BUCKET + 2],
        };
        let mut position = 0usize;
        for bucket in 0..buckets.first.len() {
            while position < nodes.len() && buckets.of(nodes[position].start.wide()) < bucket {
                position += 1;
            }
            buckets.first[bucket] = position as u32;
        }
        FamilyIndex {
            nodes,
            more,
            buckets,
        }
    }

    /// The deepest prefix covering the route `address/length` (address masked), if any.
    fn deepest_covering(&self, address: A, length: u8) -> Option<usize> {
        let bucket = self.buckets.of(address.wide());
        let low = *self.buckets.first.get(bucket)? as usize;
        let high = *self.buckets.first.get(bucket + 1)? as usize;
        let within = self.nodes.get(low..high)?;
        // The last prefix in the bucket not after (address, length).
        let not_after =
            within.partition_point(|node| (node.start, node.length) <= (address, length));
        let mut candidate = if not_after > 0 {
            (low + not_after - 1) as u32
        } else if low > 0 {
            (low - 1) as u32
        } else {
            NONE
        };
        while candidate != NONE {
            let node = &self.nodes[candidate as usize];
            if node.length <= length && address.masked(node.length) == node.start {
                return Some(candidate as usize);
            }
            candidate = node.parent;
        }
        None
    }

    /// See [`VrpIndex::touch`].
    fn touch(&self, address: A, node: bool) -> u64 {
        let bucket = self.buckets.of(address.wide());
        let low = self.buckets.first.get(bucket).copied().unwrap_or(0);
        if !node {
            return u64::from(low);
        }
        let high = self.buckets.first.get(bucket + 1).copied().unwrap_or(low);
        let middle = (low as usize + high as usize) / 2;
        self.nodes
            .get(middle)
            .map_or(0, |node| u64::from(node.parent))
    }

    /// The entries of node `position` after its first.
    fn more_of(&self, position: usize) -> &[(u32, u8)] {
        let from = self.nodes[position].more_from as usize;
        let to = self
            .nodes
            .get(position + 1)
            .map_or(self.more.len(), |next| next.more_from as usize);
        self.more.get(from..to).unwrap_or_default()
    }

    fn state(&self, address: A, length: u8, origin: u32) -> RpkiState {
        let Some(mut position) = self.deepest_covering(address, length) else {
            return RpkiState::NotFound;
        };
        if origin == 0 || self.nodes[position].origins & origin_bit(origin) == 0 {
            // Covered, and no covering VRP names the origin (AS0 never matches).
            return RpkiState::InvalidOrigin;
        }
        let mut origin_authorised = false;
        loop {
            let node = &self.nodes[position];
            if origin != 0 {
                let first = std::iter::once((node.asn, node.max_length));
                for (asn, max_length) in first.chain(self.more_of(position).iter().copied()) {
                    if asn == origin {
                        if length <= max_length {
                            return RpkiState::Valid;
                        }
                        origin_authorised = true;
                    }
                }
            }
            match node.parent {
                NONE => break,
                parent => position = parent as usize,
            }
        }
        if origin_authorised {
            RpkiState::InvalidLength
        } else {
            RpkiState::InvalidOrigin
        }
    }

    fn covering(&self, address: A, length: u8, into: &mut Vec<Vrp>) {
        let mut next = self
            .deepest_covering(address, length)
            .map_or(NONE, |position| position as u32);
        while next != NONE {
            let position = next as usize;
            let node = &self.nodes[position];
            let prefix = node.start.network(node.length);
            let first = std::iter::once((node.asn, node.max_length));
            for (asn, max_length) in first.chain(self.more_of(position).iter().copied()) {
                into.push(Vrp {
                    prefix,
                    max_length,
                    asn,
                });
            }
            next = node.parent;
        }
    }

    fn memory_bytes(&self) -> usize {
        self.nodes.capacity() * size_of::<Node<A>>()
            + self.more.capacity() * size_of::<(u32, u8)>()
            + self.buckets.first.capacity() * 4
    }
}

/// A frozen copy of a [`VrpSet`] laid out for fast RFC 6811 verdicts (module doc). Build it
/// after a complete update; judge with it; rebuild after the next.
#[derive(Debug, Clone, Default)]
pub struct VrpIndex {
    ipv4: FamilyIndex<u32>,
    ipv6: FamilyIndex<u128>,
    count: usize,
}

fn family_prefixes<P, A>(
    trie: &PrefixMap<P, Entries>,
    address: impl Fn(&P) -> A,
) -> Vec<PrefixEntries<'_, A>>
where
    P: prefix_trie::Prefix,
{
    trie.iter()
        .map(|(prefix, entries)| (address(&prefix), prefix.prefix_len(), entries.as_slice()))
        .collect()
}

impl VrpIndex {
    /// The index of `set` (O(n log n)).
    pub fn new(set: &VrpSet) -> VrpIndex {
        VrpIndex {
            ipv4: FamilyIndex::build(family_prefixes(&set.ipv4, |prefix: &Ipv4Net| {
                u32::from(prefix.network())
            })),
            ipv6: FamilyIndex::build(family_prefixes(&set.ipv6, |prefix: &Ipv6Net| {
                u128::from(prefix.network())
            })),
            count: set.len(),
        }
    }

    /// How many VRPs it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The RFC 6811 state alone (no allocation); equal to [`VrpSet::state`] on its set.
    pub fn state(&self, prefix: &IpNet, origin: u32) -> RpkiState {
        match prefix {
            IpNet::V4(prefix) => {
                self.ipv4
                    .state(u32::from(prefix.network()), prefix.prefix_len(), origin)
            }
            IpNet::V6(prefix) => {
                self.ipv6
                    .state(u128::from(prefix.network()), prefix.prefix_len(), origin)
            }
        }
    }

    /// Every VRP covering `prefix`, sorted; equal to [`VrpSet::covering`] on its set.
    pub fn covering(&self, prefix: &IpNet) -> Vec<Vrp> {
        let mut covering = Vec::new();
        match prefix {
            IpNet::V4(prefix) => self.ipv4.covering(
                u32::from(prefix.network()),
                prefix.prefix_len(),
                &mut covering,
            ),
            IpNet::V6(prefix) => self.ipv6.covering(
                u128::from(prefix.network()),
                prefix.prefix_len(),
                &mut covering,
            ),
        }
        covering.sort_unstable();
        covering
    }

    /// RFC 6811 validation with the covering VRPs; equal to [`VrpSet::validate`] on its set.
    pub fn validate(&self, prefix: &IpNet, origin: u32) -> Validation {
        Validation {
            state: self.state(prefix, origin),
            covering: self.covering(prefix),
        }
    }

    /// The states of many routes, in their order; equal to [`VrpIndex::state`] of each. Routes
    /// are judged in groups: first every route's bucket is read, then the middle node of each
    /// bucket, then the verdicts — the memory reads of a group overlap instead of waiting for
    /// each other. Routes in address order run fastest (what they touch stays in cache).
    pub fn states(&self, routes: &[(IpNet, u32)]) -> Vec<RpkiState> {
        let mut states = Vec::with_capacity(routes.len());
        for group in routes.chunks(STATE_GROUP) {
            let mut touched = 0u64;
            for (prefix, _) in group {
                touched ^= self.touch(prefix, false);
            }
            for (prefix, _) in group {
                touched ^= self.touch(prefix, true);
            }
            std::hint::black_box(touched);
            states.extend(
                group
                    .iter()
                    .map(|(prefix, origin)| self.state(prefix, *origin)),
            );
        }
        states
    }

    /// Reads what a lookup of `prefix` reads first: its bucket, and with `node` the middle node
    /// of the bucket (the first probe of the search). The value only keeps the reads.
    fn touch(&self, prefix: &IpNet, node: bool) -> u64 {
        match prefix {
            IpNet::V4(prefix) => self.ipv4.touch(u32::from(prefix.network()), node),
            IpNet::V6(prefix) => self.ipv6.touch(u128::from(prefix.network()), node),
        }
    }

    /// Heap bytes it holds.
    pub fn memory_bytes(&self) -> usize {
        self.ipv4.memory_bytes() + self.ipv6.memory_bytes()
    }
}
