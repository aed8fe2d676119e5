//! [`VrpIndex`]: a frozen, compact copy of a [`VrpSet`] for judging many routes fast.
//!
//! The trie of [`VrpSet`] takes updates one VRP at a time; walking it costs one cache miss per
//! level (about twenty for a random IPv4 route in a global-sized set). The index trades updates
//! for speed and size: per family, every distinct VRP prefix in one array sorted by (start
//! address, length) — a pre-order walk of the prefix tree —, each with the position of its
//! nearest enclosing prefix (its parent) and its (ASN, max-length) entries in flat arrays, and a
//! table of 65,536 buckets by the address's top 16 bits pointing into the sorted array.
//!
//! Finding the VRPs covering a route (address `a`, length `L`): the bucket narrows the array to
//! the prefixes starting in the route's /16 (a handful), a binary search finds the last prefix
//! `C` not after `(a, L)`, and the deepest covering prefix is `C` or the first of `C`'s
//! ancestors that covers the route (prefixes nest or are disjoint; a covering prefix deeper
//! than that would sort after `C`). Every ancestor of the deepest covering prefix covers the
//! route too, so the covering VRPs are that prefix's chain of parents.
//!
//! Owns: building the index from a set, RFC 6811 `state`/`validate`/`covering` on it (always
//! equal to the set's), and its memory size. Must not touch: updates (rebuild from the set).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::{Entries, RpkiState, Validation, Vrp, VrpSet};

/// No parent.
const NONE: u32 = u32::MAX;
/// Buckets per family: the top 16 bits of the address.
const BUCKET_BITS: u32 = 16;

/// An address of one family, as an unsigned integer.
trait Address: Copy + Ord + Default {
    /// The top [`BUCKET_BITS`] bits.
    fn bucket(self) -> usize;
    /// The first `length` bits, the rest zero.
    fn masked(self, length: u8) -> Self;
    fn network(self, length: u8) -> IpNet;
}

impl Address for u32 {
    fn bucket(self) -> usize {
        (self >> (32 - BUCKET_BITS)) as usize
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
    fn bucket(self) -> usize {
        (self >> (128 - BUCKET_BITS)) as usize
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

/// One family's prefixes in pre-order, with parents, entries and buckets (see the module doc).
#[derive(Debug, Clone, Default)]
struct FamilyIndex<A> {
    starts: Vec<A>,
    lengths: Vec<u8>,
    parents: Vec<u32>,
    /// `entries_from[i]..entries_from[i + 1]` are prefix `i`'s entries.
    entries_from: Vec<u32>,
    asns: Vec<u32>,
    max_lengths: Vec<u8>,
    /// `buckets[b]`: the first prefix whose start's top bits are `b` or more.
    buckets: Vec<u32>,
}

impl<A: Address> FamilyIndex<A> {
    /// From `(start, length, entries)` in any order; every start already masked.
    fn build(mut prefixes: Vec<PrefixEntries<'_, A>>) -> FamilyIndex<A> {
        prefixes.sort_unstable_by_key(|(start, length, _)| (*start, *length));
        let count = prefixes.len();
        let entry_count: usize = prefixes.iter().map(|(_, _, entries)| entries.len()).sum();
        let mut index = FamilyIndex {
            starts: Vec::with_capacity(count),
            lengths: Vec::with_capacity(count),
            parents: Vec::with_capacity(count),
            entries_from: Vec::with_capacity(count + 1),
            asns: Vec::with_capacity(entry_count),
            max_lengths: Vec::with_capacity(entry_count),
            buckets: vec![0; (1 << BUCKET_BITS) + 1],
        };
        // The prefixes enclosing the current one, innermost last.
        let mut open: Vec<u32> = Vec::new();
        for (position, (start, length, entries)) in prefixes.iter().enumerate() {
            while let Some(&top) = open.last() {
                let top = top as usize;
                if start.masked(index.lengths[top]) == index.starts[top] {
                    break;
                }
                open.pop();
            }
            index.parents.push(open.last().copied().unwrap_or(NONE));
            open.push(position as u32);
            index.starts.push(*start);
            index.lengths.push(*length);
            index.entries_from.push(index.asns.len() as u32);
            for (asn, max_length) in entries.iter() {
                index.asns.push(*asn);
                index.max_lengths.push(*max_length);
            }
        }
        index.entries_from.push(index.asns.len() as u32);
        // buckets[b] = number of prefixes whose bucket is below b.
        let mut position = 0usize;
        for (bucket, first) in index.buckets.iter_mut().enumerate() {
            while position < count && index.starts[position].bucket() < bucket {
                position += 1;
            }
            *first = position as u32;
        }
        index
    }

    /// The deepest prefix covering the route `address/length` (address masked), if any.
    fn deepest_covering(&self, address: A, length: u8) -> Option<usize> {
        let bucket = address.bucket();
        let low = *self.buckets.get(bucket)? as usize;
        let high = *self.buckets.get(bucket + 1)? as usize;
        let within = self.starts.get(low..high)?;
        let lengths = self.lengths.get(low..high)?;
        // The last prefix in the bucket not after (address, length).
        let after = within.partition_point(|start| *start <= address);
        let mut not_after = after;
        while not_after > 0 && within[not_after - 1] == address && lengths[not_after - 1] > length {
            not_after -= 1;
        }
        let mut candidate = if not_after > 0 {
            (low + not_after - 1) as u32
        } else if low > 0 {
            (low - 1) as u32
        } else {
            NONE
        };
        while candidate != NONE {
            let position = candidate as usize;
            let prefix_length = self.lengths[position];
            if prefix_length <= length && address.masked(prefix_length) == self.starts[position] {
                return Some(position);
            }
            candidate = self.parents[position];
        }
        None
    }

    fn state(&self, address: A, length: u8, origin: u32) -> RpkiState {
        let Some(mut position) = self.deepest_covering(address, length) else {
            return RpkiState::NotFound;
        };
        let mut origin_authorised = false;
        loop {
            let entries =
                self.entries_from[position] as usize..self.entries_from[position + 1] as usize;
            if origin != 0 {
                for entry in entries {
                    if self.asns[entry] == origin {
                        if length <= self.max_lengths[entry] {
                            return RpkiState::Valid;
                        }
                        origin_authorised = true;
                    }
                }
            }
            match self.parents[position] {
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
            let prefix = self.starts[position].network(self.lengths[position]);
            for entry in
                self.entries_from[position] as usize..self.entries_from[position + 1] as usize
            {
                into.push(Vrp {
                    prefix,
                    max_length: self.max_lengths[entry],
                    asn: self.asns[entry],
                });
            }
            next = self.parents[position];
        }
    }

    fn memory_bytes(&self) -> usize {
        self.starts.capacity() * size_of::<A>()
            + self.lengths.capacity()
            + self.parents.capacity() * 4
            + self.entries_from.capacity() * 4
            + self.asns.capacity() * 4
            + self.max_lengths.capacity()
            + self.buckets.capacity() * 4
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

    /// The states of many routes, in their order. Routes in address order run fastest (the
    /// buckets and prefixes they touch stay in cache).
    pub fn states<'a>(
        &'a self,
        routes: impl IntoIterator<Item = &'a (IpNet, u32)> + 'a,
    ) -> impl Iterator<Item = RpkiState> + 'a {
        routes
            .into_iter()
            .map(|(prefix, origin)| self.state(prefix, *origin))
    }

    /// Heap bytes it holds.
    pub fn memory_bytes(&self) -> usize {
        self.ipv4.memory_bytes() + self.ipv6.memory_bytes()
    }
}
