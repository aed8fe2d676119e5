//! The compiled bindings of a topology as one shared list: the bindings sorted by cidr and
//! their longest-match index live behind one `Arc`, so that a compile which binds the same
//! cidrs to the same services as the running generation (an `advertise` toggled: see
//! `compile/patch.rs`) takes them without copying them, and two generations alive at once (the
//! running one and a push being planned) hold one copy. What such a compile changes of a
//! binding is only where it is written (the changed file's text moved): those spans are kept
//! beside the shared list, and every span is read through [`BindingList::span`]. A compile that
//! binds the same cidrs to other services (`compile/patch.rs` too) writes a copy of the records
//! with them, and shares the index.
//!
//! The list keeps its digest in the canonical hash once read (`compile/hash.rs`), with the
//! service names it was taken under, so that a generation sharing the records does not hash
//! 300,000 bindings again; a copy with moved spans keeps it (spans are not hashed), one with
//! other services starts without.
//!
//! Owns: the list, its nesting index, its digest and the moved spans. Must not touch: what the
//! bindings mean (the compile's phases decide that).

use std::sync::{Arc, OnceLock};

use ipnet::IpNet;
use topologyd_config::{PackedSpan, Span};

use crate::model::Binding;
use crate::nesting::Nesting;

/// Bindings sorted by cidr, one per cidr, shared between generations; see the module comment.
#[derive(Debug, Clone, Default)]
pub(crate) struct BindingList {
    shared: Arc<Shared>,
    /// The spans that differ from the shared records', by binding index, ascending.
    moved: Box<[(u32, PackedSpan)]>,
}

#[derive(Debug, Default)]
struct Shared {
    bindings: Vec<Binding>,
    /// Depends on the cidrs only: a list written anew with its moved spans keeps it.
    nesting: Arc<Nesting>,
    /// The digest of the cidrs and services, and the digest of the service names it was
    /// taken under (a binding names its service by number); see [`BindingList::digest`].
    digest: OnceLock<([u8; 32], [u8; 32])>,
}

/// Moved spans beyond this share of the list (and at least [`MOVED_FLOOR`]) are written into a
/// copy of the list instead: a lookup stays a short binary search, and a list patched many times
/// over does not keep growing beside itself.
const MOVED_SHARE_DIVISOR: usize = 16;
const MOVED_FLOOR: usize = 1024;

impl BindingList {
    /// The list of `bindings` (sorted by cidr without duplicates; a list that is not gives
    /// wrong answers, never a panic) with its longest-match index.
    pub(crate) fn new(bindings: Vec<Binding>) -> BindingList {
        let nesting = Arc::new(Nesting::of_sorted(
            bindings.iter().map(|binding| binding.cidr),
        ));
        BindingList {
            shared: Arc::new(Shared {
                bindings,
                nesting,
                digest: OnceLock::new(),
            }),
            moved: Box::default(),
        }
    }

    /// The same bindings, shared, with the spans of the bindings at the given indices replaced
    /// (an index past the end is ignored; of two moves of one index the last one counts).
    pub(crate) fn with_moved_spans(
        &self,
        moves: impl IntoIterator<Item = (usize, Span)>,
    ) -> BindingList {
        let length = self.shared.bindings.len();
        let mut moved: Vec<(u32, PackedSpan)> = moves
            .into_iter()
            .filter(|(index, _)| *index < length)
            .filter_map(|(index, span)| Some((u32::try_from(index).ok()?, span.into())))
            .collect();
        if moved.is_empty() {
            return self.clone();
        }
        // The new moves first, so that deduplicating by index keeps them over older ones
        // (a stable sort keeps that order among equal indices, and the last of two new moves
        // of one index is put first by reversing them).
        moved.reverse();
        moved.extend(self.moved.iter().copied());
        moved.sort_by_key(|(index, _)| *index);
        moved.dedup_by_key(|(index, _)| *index);
        if moved.len() > MOVED_FLOOR.max(length / MOVED_SHARE_DIVISOR) {
            let mut bindings = self.shared.bindings.clone();
            for (index, span) in moved {
                if let Some(binding) = bindings.get_mut(index as usize) {
                    binding.made_span = span;
                }
            }
            return BindingList {
                shared: Arc::new(Shared {
                    bindings,
                    nesting: Arc::clone(&self.shared.nesting),
                    // Spans are not hashed.
                    digest: self.shared.digest.clone(),
                }),
                moved: Box::default(),
            };
        }
        BindingList {
            shared: Arc::clone(&self.shared),
            moved: moved.into_boxed_slice(),
        }
    }

    /// The same cidrs with the spans at `moves` replaced and the services at `services`
    /// replaced: with no service listed, [`BindingList::with_moved_spans`]; with any, the
    /// records are written into a copy (every reader reads a binding's service from its
    /// record; 300,000 records are about 11 MB), which shares the longest-match index (it
    /// depends on the cidrs only). Indices past the end are ignored; of two changes of one
    /// index the last one counts.
    pub(crate) fn with_changes(
        &self,
        moves: impl IntoIterator<Item = (usize, Span)>,
        services: &[(usize, u32)],
    ) -> BindingList {
        if services.is_empty() {
            return self.with_moved_spans(moves);
        }
        // One copy, the changes written into it in order (no sort of the moves).
        let mut bindings = self.shared.bindings.clone();
        let earlier = self
            .moved
            .iter()
            .map(|(index, span)| (*index as usize, span.get()));
        for (index, span) in earlier.chain(moves) {
            if let Some(binding) = bindings.get_mut(index) {
                binding.made_span = span.into();
            }
        }
        for (index, service) in services {
            if let Some(binding) = bindings.get_mut(*index) {
                binding.service = *service;
            }
        }
        BindingList {
            shared: Arc::new(Shared {
                bindings,
                nesting: Arc::clone(&self.shared.nesting),
                digest: OnceLock::new(),
            }),
            moved: Box::default(),
        }
    }

    /// The records' digest in the canonical hash under the service names whose digest is
    /// `names`: kept from an earlier read under the same names, else computed by `digest_of`
    /// and kept (the first names a list is read under are the ones kept); `None` when
    /// `digest_of` gives up (a cancelled hash), and nothing is kept.
    pub(crate) fn digest(
        &self,
        names: [u8; 32],
        digest_of: impl FnOnce(&[Binding]) -> Option<[u8; 32]>,
    ) -> Option<[u8; 32]> {
        if let Some((kept_names, digest)) = self.shared.digest.get()
            && *kept_names == names
        {
            return Some(*digest);
        }
        let digest = digest_of(&self.shared.bindings)?;
        let _ = self.shared.digest.set((names, digest));
        Some(digest)
    }

    /// The bindings, sorted by cidr. Their `made_span` fields may be stale: read spans through
    /// [`BindingList::span`] or [`BindingList::spans`].
    pub(crate) fn as_slice(&self) -> &[Binding] {
        &self.shared.bindings
    }

    /// Where binding `index` is written (the default span for an index past the end).
    pub(crate) fn span(&self, index: usize) -> Span {
        let moved = u32::try_from(index).ok().and_then(|index| {
            self.moved
                .binary_search_by_key(&index, |(moved, _)| *moved)
                .ok()
        });
        match moved {
            Some(place) => self.moved[place].1.get(),
            None => self
                .shared
                .bindings
                .get(index)
                .map(|binding| binding.made_span.get())
                .unwrap_or_default(),
        }
    }

    /// Where each binding is written, in order: one walk beside the moved spans (no search per
    /// binding, however many moved).
    pub(crate) fn spans(&self) -> impl ExactSizeIterator<Item = Span> + '_ {
        let mut moved = self.moved.iter().peekable();
        self.shared
            .bindings
            .iter()
            .enumerate()
            .map(move |(index, binding)| {
                match moved.next_if(|(place, _)| *place as usize == index) {
                    Some((_, span)) => span.get(),
                    None => binding.made_span.get(),
                }
            })
    }

    /// The index of the longest binding covering `network` (equal or shorter).
    pub(crate) fn longest(&self, network: &IpNet) -> Option<u32> {
        self.shared
            .nesting
            .longest(&self.shared.bindings, |binding| binding.cidr, network)
    }

    /// [`BindingList::longest`] of each of `networks`, fastest when they ascend (see
    /// `Nesting::longest_each`).
    pub(crate) fn longest_each<'network>(
        &self,
        networks: impl Iterator<Item = &'network IpNet>,
    ) -> Vec<Option<u32>> {
        self.shared
            .nesting
            .longest_each(&self.shared.bindings, |binding| binding.cidr, networks)
    }

    /// Whether `other` holds these very records (shared, not equal copies: the same cidrs,
    /// services and prefixes, whatever their spans).
    pub(crate) fn shares_records_with(&self, other: &BindingList) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl std::ops::Deref for BindingList {
    type Target = [Binding];

    fn deref(&self) -> &[Binding] {
        self.as_slice()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(index: u32) -> Binding {
        let cidr: IpNet = format!("10.{}.{}.0/24", index / 256, index % 256)
            .parse()
            .unwrap();
        Binding {
            cidr,
            service: 0,
            prefix: 0,
            made_span: Span::new(0, index as usize..index as usize + 1).into(),
        }
    }

    proptest! {
        /// Any sequence of moves reads as the same moves applied to a copy of the list, whether
        /// the list stays shared or is copied once the moves grow past their share.
        #[test]
        fn moved_spans_read_as_a_copy_with_the_spans_written(
            length in 1_usize..3000,
            rounds in proptest::collection::vec(
                proptest::collection::vec((0_usize..3100, 0_u32..1_000_000), 0..1500),
                1..4,
            ),
        ) {
            let mut list = BindingList::new((0..length as u32).map(binding).collect());
            let mut expected: Vec<Span> = (0..length).map(|index| list.span(index)).collect();
            for moves in rounds {
                let moves: Vec<(usize, Span)> = moves
                    .into_iter()
                    .map(|(index, start)| (index, Span::new(1, start as usize..start as usize + 2)))
                    .collect();
                let before = list.clone();
                list = list.with_moved_spans(moves.iter().copied());
                for (index, span) in &moves {
                    if let Some(slot) = expected.get_mut(*index) {
                        *slot = *span;
                    }
                }
                for (index, span) in expected.iter().enumerate() {
                    prop_assert_eq!(list.span(index), *span, "binding {}", index);
                }
                prop_assert_eq!(list.spans().collect::<Vec<_>>(), expected.clone());
                prop_assert_eq!(list.len(), length);
                prop_assert!(list.moved.len() <= MOVED_FLOOR.max(length / MOVED_SHARE_DIVISOR));
                if moves.iter().all(|(index, _)| *index >= length) {
                    prop_assert!(list.shares_records_with(&before));
                }
            }
            prop_assert_eq!(list.span(length), Span::default());
        }
    }

    /// The digest is computed once per list and names: kept by shares and by copies with moved
    /// spans, computed again for other names or other services, and not kept when given up.
    #[test]
    fn the_digest_is_kept_with_the_records_and_the_names() {
        let list = BindingList::new((0..2_000).map(binding).collect());
        let computed = std::cell::Cell::new(0);
        let digest_of = |records: &[Binding]| {
            computed.set(computed.get() + 1);
            let mut digest = [0_u8; 32];
            digest[0] = records.iter().map(|binding| binding.service as u8).sum();
            digest[1] = records.len() as u8;
            Some(digest)
        };
        let (names, other_names) = ([1_u8; 32], [2_u8; 32]);
        assert_eq!(list.digest(names, |_| None), None, "given up: nothing kept");
        let digest = list.digest(names, digest_of).unwrap();
        assert_eq!(computed.get(), 1);
        assert_eq!(list.clone().digest(names, digest_of), Some(digest));
        let few = list.with_moved_spans([(3, Span::new(1, 0..1))]);
        let many = list.with_moved_spans((0..1_500).map(|index| (index, Span::new(1, 0..1))));
        assert!(!many.shares_records_with(&list));
        assert_eq!(few.digest(names, digest_of), Some(digest));
        assert_eq!(many.digest(names, digest_of), Some(digest));
        assert_eq!(computed.get(), 1, "spans are not hashed: kept");
        assert_eq!(list.digest(other_names, digest_of), Some(digest));
        assert_eq!(computed.get(), 2, "other names: computed again");
        let changed = list.with_changes([], &[(5, 1)]);
        let changed_digest = changed.digest(names, digest_of).unwrap();
        assert_eq!(computed.get(), 3, "other services: computed again");
        assert_ne!(changed_digest, digest);
    }

    #[test]
    fn many_moves_are_written_into_a_copy_that_keeps_the_index() {
        let length = 20_000;
        let list = BindingList::new((0..length).map(binding).collect());
        let moves = (0..1300).map(|index| (index * 7, Span::new(3, index..index + 1)));
        let moved = list.with_moved_spans(moves);
        assert!(!moved.shares_records_with(&list));
        assert!(moved.moved.is_empty());
        assert!(Arc::ptr_eq(&moved.shared.nesting, &list.shared.nesting));
        assert_eq!(moved.span(7 * 1299), Span::new(3, 1299..1300));
        assert_eq!(moved.span(1), list.span(1));
        assert_eq!(list.span(7), Span::new(0, 7..8));
    }

    proptest! {
        /// Services changed with spans read as a copy with both written in (the last change of
        /// an index counting), keep the index, and never share the records they changed.
        #[test]
        fn changed_services_read_as_a_copy_with_them_written(
            length in 1_usize..2000,
            earlier in proptest::collection::vec((0_usize..2100, 0_u32..1_000), 0..300),
            moves in proptest::collection::vec((0_usize..2100, 0_u32..1_000), 0..300),
            services in proptest::collection::vec((0_usize..2100, 0_u32..50), 0..300),
        ) {
            let span = |start: u32, source: u32| Span::new(source, start as usize..start as usize + 3);
            let list = BindingList::new((0..length as u32).map(binding).collect())
                .with_moved_spans(earlier.iter().map(|(index, start)| (*index, span(*start, 1))));
            let changed =
                list.with_changes(moves.iter().map(|(index, start)| (*index, span(*start, 2))), &services);
            let mut expected: Vec<Binding> = (0..length)
                .map(|index| Binding { made_span: list.span(index).into(), ..list[index] })
                .collect();
            for (index, start) in &moves {
                if let Some(binding) = expected.get_mut(*index) {
                    binding.made_span = span(*start, 2).into();
                }
            }
            for (index, service) in &services {
                if let Some(binding) = expected.get_mut(*index) {
                    binding.service = *service;
                }
            }
            for (index, binding) in expected.iter().enumerate() {
                prop_assert_eq!(changed.span(index), binding.made_span.get());
                prop_assert_eq!(changed[index].service, binding.service);
                prop_assert_eq!(changed[index].cidr, binding.cidr);
            }
            prop_assert_eq!(changed.len(), length);
            prop_assert!(Arc::ptr_eq(&changed.shared.nesting, &list.shared.nesting));
            if !services.is_empty() {
                prop_assert!(!changed.shares_records_with(&list));
                prop_assert!(list.iter().all(|binding| binding.service == 0));
            }
        }
    }

    #[test]
    fn a_few_moves_share_the_records_and_the_index() {
        let list = BindingList::new((0..100).map(binding).collect());
        let moved = list.with_moved_spans([(7, Span::new(2, 40..45))]);
        assert!(moved.shares_records_with(&list));
        assert_eq!(moved.span(7), Span::new(2, 40..45));
        assert_eq!(list.span(7), Span::new(0, 7..8));
        let host: IpNet = "10.0.7.9/32".parse().unwrap();
        assert_eq!(moved.longest(&host), Some(7));
    }
}
