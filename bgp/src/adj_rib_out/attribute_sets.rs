//! The attribute sets of one peer's Adj-RIB-Out: interned once (`Arc<PathAttributes>` → slot
//! index), encoded once per session into the attribute block each family copies into every
//! UPDATE, reference-counted by the routes that use them, and queued with the keys of their
//! pending announcements.
//!
//! Owns: slots, the interner, the queue of slots with pending announcements, and the encoding of
//! attribute blocks. Must not touch: the routes themselves (see `family`), message order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::family::{INDEX_BITS, Ipv4Key, Ipv6Key, RouteKey, sort_ascending};
use super::{NO_ATTRIBUTES, RibError, release_if_large, slot_index};
use crate::codec::attributes::{NextHopPlacement, encode_attributes};
use crate::codec::update::{UPDATE_FIXED_LEN, mp_reach_overhead};
use crate::codec::{EncodeError, Family, MAX_MESSAGE_LEN, PathAttributes};

/// One interned attribute set.
#[derive(Debug)]
pub(super) struct AttributeSlot {
    pub(super) attributes: Arc<PathAttributes>,
    pub(super) references: u32,
    /// Encoded attribute block per family (IPv4 with NEXT_HOP, IPv6 without), for the
    /// AS-number width in `encoded_four_octet`; `None` without a next hop for the family.
    encoded: [Option<Bytes>; 2],
    encoded_four_octet: bool,
    pub(super) pending_ipv4: VecDeque<Ipv4Key>,
    pub(super) pending_ipv6: VecDeque<Ipv6Key>,
    /// Per family: some key was listed after a key not below it, so the list must be sorted
    /// before it is drained (every list drains in ascending prefix order).
    pub(super) unsorted: [bool; 2],
    queued: bool,
    /// Some key in the pending lists may be stale (its route moved to another set or was
    /// withdrawn) or duplicated. While false, every listed key is known to be current and
    /// unique, so the packer writes it without looking the route up — one random memory access
    /// per route saved on the initial sync, which is most of the packer's cost.
    pub(super) needs_validation: bool,
}

impl AttributeSlot {
    /// The attribute block for `family`, if the set has its next hop.
    #[inline]
    pub(super) fn encoded(&self, family: Family) -> Option<&Bytes> {
        self.encoded[slot_index(family)].as_ref()
    }

    fn is_drained(&self) -> bool {
        self.pending_ipv4.is_empty() && self.pending_ipv6.is_empty()
    }

    /// Once both pending lists are drained nothing listed can be stale; a large drained list
    /// gives its capacity back.
    pub(super) fn release_if_drained(&mut self) {
        if self.is_drained() {
            self.needs_validation = false;
            release_if_large(&mut self.pending_ipv4);
            release_if_large(&mut self.pending_ipv6);
        }
    }

    /// Sorts the pending list of family `K` if a key was listed out of order since it was last
    /// sorted (the packer calls this before it drains the list).
    pub(super) fn sort_pending_if_needed<K: RouteKey>(&mut self) {
        let index = slot_index(K::FAMILY);
        if self.unsorted[index] {
            sort_ascending(K::pending(self).make_contiguous());
            self.unsorted[index] = false;
        }
    }

    fn clear_pending(&mut self) {
        self.pending_ipv4.clear();
        self.pending_ipv6.clear();
        self.unsorted = [false; 2];
        self.queued = false;
        self.needs_validation = false;
    }

    fn memory_estimate(&self) -> usize {
        self.pending_ipv4.capacity() * std::mem::size_of::<Ipv4Key>()
            + self.pending_ipv6.capacity() * std::mem::size_of::<Ipv6Key>()
            + self.encoded.iter().flatten().map(Bytes::len).sum::<usize>()
            + std::mem::size_of::<Self>()
            + std::mem::size_of::<PathAttributes>()
    }
}

/// The interned attribute sets and the queue of those with pending announcements.
#[derive(Debug, Default)]
pub(super) struct AttributeSets {
    slots: Vec<AttributeSlot>,
    free_slots: Vec<u32>,
    interner: HashMap<Arc<PathAttributes>, u32>,
    last_interned: Option<(Arc<PathAttributes>, u32)>,
    /// Slots with pending announcements, in the order they were first queued.
    queue: VecDeque<u32>,
}

impl AttributeSets {
    /// Routes referencing a set.
    pub(super) fn routes(&self) -> usize {
        self.slots.iter().map(|slot| slot.references as usize).sum()
    }

    pub(super) fn memory_estimate(&self) -> usize {
        self.slots.iter().map(AttributeSlot::memory_estimate).sum()
    }

    pub(super) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Interns an attribute set (validating it once) and returns its slot index.
    #[inline]
    pub(super) fn intern(
        &mut self,
        attributes: &Arc<PathAttributes>,
        family: Family,
        four_octet_as: bool,
    ) -> Result<u32, RibError> {
        let id = match &self.last_interned {
            Some((last, id)) if Arc::ptr_eq(last, attributes) => *id,
            _ => {
                let id = match self.interner.get(attributes) {
                    Some(id) => *id,
                    None => self.new_slot(attributes, four_octet_as)?,
                };
                self.last_interned = Some((Arc::clone(attributes), id));
                id
            }
        };
        let slot = self
            .slots
            .get(id as usize)
            .ok_or(RibError::Encode(EncodeError::Invalid(
                "attribute slot lost",
            )))?;
        if slot.encoded(family).is_some() {
            Ok(id)
        } else {
            Err(RibError::MissingNextHop(family))
        }
    }

    fn new_slot(
        &mut self,
        attributes: &Arc<PathAttributes>,
        four_octet_as: bool,
    ) -> Result<u32, RibError> {
        let slot = AttributeSlot {
            attributes: Arc::clone(attributes),
            references: 0,
            encoded: encode_blocks(attributes, four_octet_as)?,
            encoded_four_octet: four_octet_as,
            pending_ipv4: VecDeque::new(),
            pending_ipv6: VecDeque::new(),
            unsorted: [false; 2],
            queued: false,
            needs_validation: false,
        };
        let id = match self.free_slots.pop() {
            Some(id) => {
                if let Some(place) = self.slots.get_mut(id as usize) {
                    *place = slot;
                }
                id
            }
            None => {
                // A route's entry has room for indices below INDEX_BITS only.
                let id = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|id| *id < INDEX_BITS)
                    .ok_or(RibError::Encode(EncodeError::Invalid(
                        "too many distinct attribute sets",
                    )))?;
                self.slots.push(slot);
                id
            }
        };
        self.interner.insert(Arc::clone(attributes), id);
        Ok(id)
    }

    #[inline]
    pub(super) fn reference(&mut self, id: u32) {
        if let Some(slot) = self.slots.get_mut(id as usize) {
            slot.references += 1;
        }
    }

    fn release(&mut self, id: u32) {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return;
        };
        slot.references = slot.references.saturating_sub(1);
        if slot.references == 0 {
            self.interner.remove(&slot.attributes);
            slot.pending_ipv4 = VecDeque::new();
            slot.pending_ipv6 = VecDeque::new();
            slot.unsorted = [false; 2];
            slot.needs_validation = false;
            if self
                .last_interned
                .as_ref()
                .is_some_and(|(_, last)| *last == id)
            {
                self.last_interned = None;
            }
            self.free_slots.push(id);
        }
    }

    /// A route left attribute set `id`; if it may still be listed there, the list needs
    /// validation when drained.
    #[inline]
    pub(super) fn leave(&mut self, id: u32, was_queued: bool) {
        if id == NO_ATTRIBUTES {
            return;
        }
        if was_queued && let Some(slot) = self.slots.get_mut(id as usize) {
            slot.needs_validation = true;
        }
        self.release(id);
    }

    /// Lists `key` as a pending announcement of set `id` (out of order if it is not above the
    /// last listed key: the list is sorted before it drains).
    #[inline]
    pub(super) fn queue<K: RouteKey>(&mut self, id: u32, key: K) {
        if let Some(slot) = self.slots.get_mut(id as usize) {
            let pending = K::pending(slot);
            let in_order = pending.back().is_none_or(|last| *last < key);
            pending.push_back(key);
            if !in_order {
                slot.unsorted[slot_index(K::FAMILY)] = true;
            }
            if !slot.queued {
                slot.queued = true;
                self.queue.push_back(id);
            }
        }
    }

    /// Sorts every pending list of family `K` into ascending prefix order (drained front first).
    pub(super) fn sort_pending<K: RouteKey>(&mut self) {
        for slot in &mut self.slots {
            let pending = K::pending(slot);
            if pending.len() > 1 {
                sort_ascending(pending.make_contiguous());
            }
            slot.unsorted[slot_index(K::FAMILY)] = false;
        }
    }

    /// Before every route of family `K` is listed again: keys of `K` already listed would be
    /// listed twice, so slots with a non-empty `K` list need validation. (The other family's
    /// list cannot hold duplicates of these keys, so it alone does not make a slot validate:
    /// a validated drain looks every route up, in list order, and sorted lists turn those
    /// look-ups into random memory accesses.)
    pub(super) fn expect_duplicates<K: RouteKey>(&mut self) {
        for slot in &mut self.slots {
            if !K::pending(slot).is_empty() {
                slot.needs_validation = true;
            }
        }
    }

    pub(super) fn clear_pending(&mut self) {
        for slot in &mut self.slots {
            slot.clear_pending();
        }
        self.queue.clear();
    }

    /// Re-encodes the attribute blocks of used sets for the session's AS-number width.
    pub(super) fn encode_for(&mut self, four_octet_as: bool) {
        for slot in &mut self.slots {
            if slot.encoded_four_octet != four_octet_as && slot.references > 0 {
                slot.encoded = encode_blocks(&slot.attributes, four_octet_as).unwrap_or_default();
                slot.encoded_four_octet = four_octet_as;
            }
        }
    }

    /// The first queued slot, with its index.
    pub(super) fn front(&mut self) -> Option<(u32, &mut AttributeSlot)> {
        let id = *self.queue.front()?;
        match self.slots.get_mut(id as usize) {
            Some(slot) => Some((id, slot)),
            None => {
                self.queue.pop_front();
                None
            }
        }
    }

    /// Takes the first queued slot off the queue if its lists are drained.
    pub(super) fn dequeue_if_drained(&mut self) {
        let Some(&id) = self.queue.front() else {
            return;
        };
        let slot = self.slots.get_mut(id as usize);
        if slot.as_ref().is_none_or(|slot| slot.is_drained()) {
            self.queue.pop_front();
            if let Some(slot) = slot {
                slot.queued = false;
            }
        }
    }
}

/// Encodes the attribute blocks of a set: IPv4 (with NEXT_HOP) and IPv6 (without), each `None`
/// when the set has no next hop for that family. Refuses sets too large for a 4096-octet UPDATE
/// with at least one prefix (so every set works with every peer).
pub(super) fn encode_blocks(
    attributes: &PathAttributes,
    four_octet_as: bool,
) -> Result<[Option<Bytes>; 2], RibError> {
    let room = usize::from(MAX_MESSAGE_LEN) - UPDATE_FIXED_LEN;
    let too_long = |overhead: usize| {
        RibError::Encode(EncodeError::MessageTooLong {
            size: overhead + UPDATE_FIXED_LEN,
            limit: usize::from(MAX_MESSAGE_LEN),
        })
    };
    let ipv4 = match attributes.next_hop {
        Some(_) => {
            let block =
                encode_attributes(attributes, NextHopPlacement::ClassicIpv4, four_octet_as)?;
            if block.len() + 5 > room {
                return Err(too_long(block.len() + 5));
            }
            Some(Bytes::from(block))
        }
        None => None,
    };
    let ipv6 = match attributes.ipv6_next_hop {
        Some(next_hop) => {
            let block = encode_attributes(attributes, NextHopPlacement::Omitted, four_octet_as)?;
            let needed = block.len() + mp_reach_overhead(&next_hop) + 17;
            if needed > room {
                return Err(too_long(needed));
            }
            Some(Bytes::from(block))
        }
        None => None,
    };
    if ipv4.is_none() && ipv6.is_none() {
        // Validate the rest of the set even without a next hop, so errors surface early.
        encode_attributes(attributes, NextHopPlacement::Omitted, four_octet_as)?;
    }
    Ok([ipv4, ipv6])
}
