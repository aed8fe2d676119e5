//! The onboarded prefixes of a compiled topology, sorted by cidr, stored in chunks of
//! [`CHUNK_LEN`] that generations share: a compile that changes a few prefixes in place (an
//! `advertise` toggled, see `compile/patch.rs`) copies the chunks holding them and shares the
//! rest with the running generation. One vector of every prefix made that compile copy the
//! whole list (7 MB at 100,000 prefixes, most of its time in page faults), and the running
//! generation's drop free it all again.
//!
//! A chunk is small enough (72 KB) to come from the allocator's heap, not a mapping of its own.
//! It keeps its digest in the canonical hash once that was read (`compile/hash.rs`), so that a
//! generation sharing it does not hash it again; a copied chunk starts without one.
//! The slice API is not kept (the chunks are not one slice): readers index, iterate, search
//! with [`PrefixList::partition_point`].
//!
//! Owns: the storage and its sharing. Must not touch: what a prefix is or how it is checked
//! (the compile's prefixes phase).

use std::sync::{Arc, OnceLock};

use crate::model::Prefix;

/// How many prefixes a chunk holds (a power of two: a place is split by a shift and a mask).
/// Part of the canonical hash's form 2, which digests each chunk: another length changes every
/// topology's hash, which needs a form of its own (`compile/hash.rs`); a test pins hashes of
/// 2,500 prefixes.
const CHUNK_BITS: u32 = 10;
pub(crate) const CHUNK_LEN: usize = 1 << CHUNK_BITS;

/// Prefixes sorted by cidr in shared chunks; see the module comment. Cloning it shares every
/// chunk.
#[derive(Clone, Default)]
pub struct PrefixList {
    /// Every chunk holds [`CHUNK_LEN`] prefixes but the last, which holds at least one.
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

/// Up to [`CHUNK_LEN`] prefixes and, once read, their digest in the canonical hash.
#[derive(Debug)]
struct Chunk {
    prefixes: Vec<Prefix>,
    digest: OnceLock<[u8; 32]>,
}

impl Chunk {
    fn new(prefixes: Vec<Prefix>) -> Chunk {
        Chunk {
            prefixes,
            digest: OnceLock::new(),
        }
    }
}

/// A copy is made to be changed: it starts without a digest.
impl Clone for Chunk {
    fn clone(&self) -> Chunk {
        Chunk::new(self.prefixes.clone())
    }
}

impl PrefixList {
    /// The list of `prefixes`, in their order. The vector is cut from its end, and shrunk as
    /// it goes, so that the list's peak holds the prefixes about once, not twice.
    pub(crate) fn from_vec(mut prefixes: Vec<Prefix>) -> PrefixList {
        let len = prefixes.len();
        let mut chunks: Vec<Arc<Chunk>> = Vec::with_capacity(len.div_ceil(CHUNK_LEN));
        while !prefixes.is_empty() {
            let start = (prefixes.len() - 1) & !(CHUNK_LEN - 1);
            chunks.push(Arc::new(Chunk::new(prefixes.split_off(start))));
            prefixes.shrink_to_fit();
        }
        chunks.reverse();
        PrefixList { chunks, len }
    }

    /// How many prefixes there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The prefix at `place`, if there is one.
    #[inline]
    pub fn get(&self, place: usize) -> Option<&Prefix> {
        self.chunks
            .get(place >> CHUNK_BITS)?
            .prefixes
            .get(place & (CHUNK_LEN - 1))
    }

    /// The prefixes in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            chunks: self.chunks.iter(),
            current: [].iter(),
            left: self.len,
        }
    }

    /// The first place whose prefix does not satisfy `before` (the list being partitioned by
    /// it: every prefix that does comes first), as [`slice::partition_point`].
    pub fn partition_point(&self, before: impl Fn(&Prefix) -> bool) -> usize {
        // The chunks whose last prefix is before are wholly before.
        let chunk = self
            .chunks
            .partition_point(|chunk| chunk.prefixes.last().is_some_and(&before));
        match self.chunks.get(chunk) {
            Some(prefixes) => (chunk << CHUNK_BITS) + prefixes.prefixes.partition_point(before),
            None => self.len,
        }
    }

    /// The same list with the prefix at each given place replaced (a place past the end is
    /// ignored): the chunks holding them are copied, the others shared.
    pub(crate) fn with_replaced(
        &self,
        replacements: impl IntoIterator<Item = (usize, Prefix)>,
    ) -> PrefixList {
        let mut list = self.clone();
        for (place, prefix) in replacements {
            if place >= list.len {
                continue;
            }
            if let Some(chunk) = list.chunks.get_mut(place >> CHUNK_BITS)
                && let Some(slot) = Arc::make_mut(chunk)
                    .prefixes
                    .get_mut(place & (CHUNK_LEN - 1))
            {
                *slot = prefix;
            }
        }
        list
    }

    /// The canonical digest of every chunk in order, each computed by `digest_of` from the
    /// chunk's prefixes the first time it is read and kept with the chunk (shared with the
    /// generations that share the chunk); `None` as soon as `digest_of` gives up (a cancelled
    /// hash), and nothing is kept for that chunk.
    pub(crate) fn chunk_digests(
        &self,
        mut digest_of: impl FnMut(&[Prefix]) -> Option<[u8; 32]>,
    ) -> Option<Vec<[u8; 32]>> {
        self.chunks
            .iter()
            .map(|chunk| match chunk.digest.get() {
                Some(digest) => Some(*digest),
                None => {
                    let digest = digest_of(&chunk.prefixes)?;
                    Some(*chunk.digest.get_or_init(|| digest))
                }
            })
            .collect()
    }

    /// How many of this list's chunks are shared with `other`'s at the same place (a test
    /// reads it to see that a patch copied only what it changed).
    #[doc(hidden)]
    pub fn chunks_shared_with(&self, other: &PrefixList) -> usize {
        self.chunks
            .iter()
            .zip(&other.chunks)
            .filter(|(left, right)| Arc::ptr_eq(left, right))
            .count()
    }

    /// How many chunks hold the list (for the tests, as above).
    #[doc(hidden)]
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

impl std::ops::Index<usize> for PrefixList {
    type Output = Prefix;

    /// The prefix at `place`; panics past the end, as a slice does (the compile's places are
    /// always within the list).
    #[inline]
    fn index(&self, place: usize) -> &Prefix {
        &self.chunks[place >> CHUNK_BITS].prefixes[place & (CHUNK_LEN - 1)]
    }
}

impl std::fmt::Debug for PrefixList {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for PrefixList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'list> IntoIterator for &'list PrefixList {
    type Item = &'list Prefix;
    type IntoIter = Iter<'list>;

    fn into_iter(self) -> Iter<'list> {
        self.iter()
    }
}

/// The prefixes of a [`PrefixList`] in order.
#[derive(Debug, Clone)]
pub struct Iter<'list> {
    chunks: std::slice::Iter<'list, Arc<Chunk>>,
    current: std::slice::Iter<'list, Prefix>,
    left: usize,
}

impl<'list> Iterator for Iter<'list> {
    type Item = &'list Prefix;

    #[inline]
    fn next(&mut self) -> Option<&'list Prefix> {
        loop {
            if let Some(prefix) = self.current.next() {
                self.left -= 1;
                return Some(prefix);
            }
            self.current = self.chunks.next()?.prefixes.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix(number: u32) -> Prefix {
        Prefix {
            cidr: ipnet::IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(number << 8), 24).unwrap(),
            ),
            origin_asn: number,
            owner: Arc::from("owner"),
            advertise: true,
            announce: topologyd_config::AnnounceMode::Aggregate,
            roa: None,
            rpki: topologyd_config::NotFoundPolicy::Warn,
            ownership: None,
            span: topologyd_config::Span::default().into(),
        }
    }

    proptest! {
        /// Whatever its length, the list reads as the vector it was made of: by place, in
        /// order, by search; a replacement changes that place alone, copies one chunk, and
        /// leaves the list it was made from as it was.
        #[test]
        fn the_list_reads_as_its_vector(
            len in 0usize..5000,
            replaced in proptest::collection::vec(0usize..6000, 0..4),
            searched in 0u32..10_002,
        ) {
            let vector: Vec<Prefix> = (0..len as u32).map(|number| prefix(number * 2)).collect();
            let key = |prefix: &Prefix| (prefix.cidr, prefix.origin_asn);
            let list = PrefixList::from_vec(vector.clone());
            prop_assert_eq!(list.len(), vector.len());
            prop_assert_eq!(list.chunk_count(), len.div_ceil(CHUNK_LEN));
            prop_assert_eq!(list.iter().len(), vector.len());
            prop_assert!(list.iter().map(key).eq(vector.iter().map(key)));
            for (place, prefix) in vector.iter().enumerate() {
                prop_assert_eq!(key(&list[place]), key(prefix));
                prop_assert_eq!(list.get(place).map(key), Some(key(prefix)));
            }
            prop_assert!(list.get(len).is_none());
            let before = |prefix: &Prefix| prefix.origin_asn < searched;
            prop_assert_eq!(list.partition_point(before), vector.partition_point(before));

            let patched = list.with_replaced(replaced.iter().map(|place| (*place, prefix(1))));
            let mut expected = vector.clone();
            for place in &replaced {
                if let Some(slot) = expected.get_mut(*place) {
                    *slot = prefix(1);
                }
            }
            prop_assert!(patched.iter().map(key).eq(expected.iter().map(key)));
            prop_assert!(
                list.iter().map(key).eq(vector.iter().map(key)),
                "the original list changed"
            );
            let touched: std::collections::BTreeSet<usize> = replaced
                .iter()
                .filter(|place| **place < len)
                .map(|place| place >> CHUNK_BITS)
                .collect();
            prop_assert_eq!(
                patched.chunks_shared_with(&list),
                list.chunk_count() - touched.len()
            );

            // Digests: each chunk's is computed once, kept with the chunk, shared with the
            // patched list, and the copied chunks' are computed again from what they hold.
            let summed = |prefixes: &[Prefix]| {
                let sum: u64 = prefixes.iter().map(|prefix| u64::from(prefix.origin_asn)).sum();
                let mut digest = [0_u8; 32];
                digest[..8].copy_from_slice(&sum.to_le_bytes());
                digest[8..16].copy_from_slice(&(prefixes.len() as u64).to_le_bytes());
                digest
            };
            let expected_of = |prefixes: &[Prefix]| -> Vec<[u8; 32]> {
                prefixes.chunks(CHUNK_LEN).map(summed).collect()
            };
            let mut computed = 0;
            let digests = list.chunk_digests(|prefixes| {
                computed += 1;
                Some(summed(prefixes))
            });
            prop_assert_eq!(digests, Some(expected_of(&vector)));
            prop_assert_eq!(computed, list.chunk_count());
            let again = list.chunk_digests(|_| None);
            prop_assert_eq!(again, Some(expected_of(&vector)), "kept: not computed again");
            let mut computed = 0;
            let digests = patched.chunk_digests(|prefixes| {
                computed += 1;
                Some(summed(prefixes))
            });
            prop_assert_eq!(digests, Some(expected_of(&expected)));
            prop_assert_eq!(computed, touched.len(), "only the copied chunks are digested");
            if !touched.is_empty() {
                let fresh = PrefixList::from_vec(expected.clone());
                prop_assert_eq!(fresh.chunk_digests(|_| None), None, "a cancelled digest");
            }
        }
    }
}
