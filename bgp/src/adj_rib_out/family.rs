//! The two address families of the Adj-RIB-Out behind one trait, so that the bookkeeping of a
//! family's routes (announce, withdraw, re-queue, pack) is written once.
//!
//! Owns: the compact route keys (IPv4 `u64` = address << 8 | length, IPv6 `(u128, u8)`), the
//! per-family table (prefix → entry, pending withdrawals), and the family-specific UPDATE
//! framing the packer fills: IPv4 in the Withdrawn Routes and NLRI fields (RFC 4271 §4.3), IPv6
//! in MP_UNREACH_NLRI / MP_REACH_NLRI (RFC 4760 §3-4). Must not touch: the attribute sets'
//! interning (see `attribute_sets`), the session's send order.
//!
//! The maps hash with FxHash (`rustc-hash`): keys are prefixes chosen by us or by a configured
//! peer and every map is per peer, so hash flooding is not a concern, and SipHash would cost
//! about a third of the packer's time at a million routes.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

use bytes::{BufMut, BytesMut};
use ipnet::{Ipv4Net, Ipv6Net};
use rustc_hash::FxHashMap;

use super::attribute_sets::{AttributeSets, AttributeSlot};
use super::{NO_ATTRIBUTES, RibCounters, release_if_large};
use crate::codec::Family;
use crate::codec::nlri::{prefix_wire_len, put_ipv4_prefix, put_ipv6_prefix};
use crate::codec::update::{
    UPDATE_FIXED_LEN, begin_message, begin_mp_reach_ipv6, begin_mp_unreach_ipv6, finish_message,
    mp_reach_overhead, patch_u16,
};

/// One route's state in four octets: its attribute-set index (or [`NO_ATTRIBUTES`]) in the low
/// 31 bits and whether it is queued ([`Entry::queued`]) in the top bit. With the
/// four-octet-aligned keys below, an IPv4 route takes 12 octets of map slot instead of 16 (an
/// IPv6 route 24 instead of 48): at a million routes, 9 MB per peer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry(u32);

/// The index bits of an [`Entry`]; all ones stands for [`NO_ATTRIBUTES`]. Attribute-set
/// indices stay far below it (each set is an allocation of its own).
pub(super) const INDEX_BITS: u32 = u32::MAX >> 1;
const QUEUED_BIT: u32 = !INDEX_BITS;

impl Entry {
    pub(super) fn new(attributes: u32, queued: bool) -> Entry {
        let mut entry = Entry(0);
        entry.set_attributes(attributes);
        entry.set_queued(queued);
        entry
    }

    pub(super) fn attributes(self) -> u32 {
        match self.0 & INDEX_BITS {
            INDEX_BITS => NO_ATTRIBUTES,
            index => index,
        }
    }

    /// The key was put in a pending list (of its attribute set, or of withdrawals) and may not
    /// have been sent yet. Cleared only when a validated drain sends it; the fast drain of a
    /// clean list leaves it set, which is conservative (see `AttributeSlot::needs_validation`).
    pub(super) fn queued(self) -> bool {
        self.0 & QUEUED_BIT != 0
    }

    pub(super) fn set_attributes(&mut self, attributes: u32) {
        debug_assert!(attributes == NO_ATTRIBUTES || attributes < INDEX_BITS);
        self.0 = (self.0 & QUEUED_BIT) | attributes.min(INDEX_BITS);
    }

    pub(super) fn set_queued(&mut self, queued: bool) {
        self.0 = if queued {
            self.0 | QUEUED_BIT
        } else {
            self.0 & INDEX_BITS
        };
    }
}

/// An IPv4 prefix as a map key, ordered by address then length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ipv4Key {
    address: u32,
    length: u8,
}

impl Hash for Ipv4Key {
    /// One word for the hasher (FxHash costs a step per write).
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64((u64::from(self.address) << 8) | u64::from(self.length));
    }
}

/// An IPv6 prefix as a map key, ordered by address then length: the address as four
/// big-endian words (most significant first), so that the key is aligned to four octets
/// (a `u128` would align the map's slots to sixteen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Ipv6Key {
    words: [u32; 4],
    length: u8,
}

impl Ipv6Key {
    fn address(self) -> u128 {
        self.words
            .iter()
            .fold(0u128, |address, word| (address << 32) | u128::from(*word))
    }
}

impl From<&Ipv4Net> for Ipv4Key {
    fn from(prefix: &Ipv4Net) -> Self {
        Self {
            address: u32::from(prefix.network()),
            length: prefix.prefix_len(),
        }
    }
}

impl From<&Ipv6Net> for Ipv6Key {
    fn from(prefix: &Ipv6Net) -> Self {
        let address = u128::from(prefix.network());
        Self {
            words: [
                (address >> 96) as u32,
                (address >> 64) as u32,
                (address >> 32) as u32,
                address as u32,
            ],
            length: prefix.prefix_len(),
        }
    }
}

/// Positions inside an UPDATE being packed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Framing {
    /// Where the message starts (truncate here when nothing was packed).
    pub(super) start: usize,
    /// Prefixes may be written up to here.
    pub(super) limit: usize,
    /// The length field of the withdrawn routes (IPv4) or of the path attributes (IPv6).
    lengths: usize,
    /// The length field of MP_REACH_NLRI / MP_UNREACH_NLRI (IPv6 only).
    multiprotocol: usize,
}

/// What differs between the address families: the key, where its pending list and attribute
/// block live in an attribute slot, and where its prefixes go in an UPDATE.
pub(super) trait RouteKey: Copy + Eq + Hash + Ord + Debug {
    const FAMILY: Family;
    /// Octets of the key that matter for its order ([`Self::digit`]).
    const DIGITS: usize;

    /// Octet `index` of the key in order of significance, 0 the least significant, so that
    /// comparing the octets from `DIGITS - 1` down to 0 orders keys as `Ord` does.
    fn digit(self, index: usize) -> u8;

    /// Octets of the prefix in an NLRI field.
    fn wire_len(self) -> usize;
    /// Writes the prefix in NLRI layout.
    fn put(self, out: &mut BytesMut);

    /// This family's table.
    fn table(tables: &mut FamilyTables) -> &mut FamilyTable<Self>;
    /// This family's pending announcements of a slot.
    fn pending(slot: &mut AttributeSlot) -> &mut VecDeque<Self>;

    /// Starts an UPDATE that withdraws prefixes of this family.
    fn begin_withdrawals(out: &mut BytesMut, max_message_len: usize) -> Framing;
    /// Completes the length fields of a withdrawal UPDATE.
    fn finish_withdrawals(out: &mut BytesMut, framing: &Framing);
    /// Starts an UPDATE that announces prefixes of this family with `slot`'s attributes;
    /// `None` when the slot cannot be sent in this family on this session (no attribute block,
    /// or one that leaves no room for a prefix).
    fn begin_announcements(
        out: &mut BytesMut,
        max_message_len: usize,
        slot: &AttributeSlot,
    ) -> Option<Framing>;
    /// Completes an announcement UPDATE.
    fn finish_announcements(out: &mut BytesMut, framing: &Framing, slot: &AttributeSlot);
}

impl RouteKey for Ipv4Key {
    const FAMILY: Family = Family::Ipv4Unicast;
    const DIGITS: usize = 5;

    fn digit(self, index: usize) -> u8 {
        match index {
            0 => self.length,
            _ => (self.address >> (8 * (index - 1))) as u8,
        }
    }

    fn wire_len(self) -> usize {
        prefix_wire_len(self.length)
    }

    fn put(self, out: &mut BytesMut) {
        put_ipv4_prefix(out, self.address, self.length);
    }

    fn table(tables: &mut FamilyTables) -> &mut FamilyTable<Self> {
        &mut tables.ipv4
    }

    fn pending(slot: &mut AttributeSlot) -> &mut VecDeque<Self> {
        &mut slot.pending_ipv4
    }

    fn begin_withdrawals(out: &mut BytesMut, max_message_len: usize) -> Framing {
        let start = begin_message(out);
        let lengths = out.len();
        out.put_u16(0);
        // The path attributes length (0) follows the withdrawn routes.
        let limit = start + max_message_len - 2;
        Framing {
            start,
            limit,
            lengths,
            multiprotocol: lengths,
        }
    }

    fn finish_withdrawals(out: &mut BytesMut, framing: &Framing) {
        let withdrawn_len = out.len() - framing.lengths - 2;
        patch_u16(out, framing.lengths, withdrawn_len);
        out.put_u16(0);
        finish_message(out, framing.start);
    }

    fn begin_announcements(
        out: &mut BytesMut,
        max_message_len: usize,
        slot: &AttributeSlot,
    ) -> Option<Framing> {
        let block = slot.encoded(Self::FAMILY)?;
        if UPDATE_FIXED_LEN + block.len() + 5 > max_message_len {
            return None;
        }
        let start = begin_message(out);
        out.put_u16(0);
        let lengths = out.len();
        out.put_u16(u16::try_from(block.len()).unwrap_or(0));
        out.put_slice(block);
        Some(Framing {
            start,
            limit: start + max_message_len,
            lengths,
            multiprotocol: lengths,
        })
    }

    fn finish_announcements(out: &mut BytesMut, framing: &Framing, _slot: &AttributeSlot) {
        finish_message(out, framing.start);
    }
}

impl RouteKey for Ipv6Key {
    const FAMILY: Family = Family::Ipv6Unicast;
    const DIGITS: usize = 17;

    fn digit(self, index: usize) -> u8 {
        match index {
            0 => self.length,
            _ => {
                let octet = index - 1;
                (self.words[3 - octet / 4] >> (8 * (octet % 4))) as u8
            }
        }
    }

    fn wire_len(self) -> usize {
        prefix_wire_len(self.length)
    }

    fn put(self, out: &mut BytesMut) {
        put_ipv6_prefix(out, self.address(), self.length);
    }

    fn table(tables: &mut FamilyTables) -> &mut FamilyTable<Self> {
        &mut tables.ipv6
    }

    fn pending(slot: &mut AttributeSlot) -> &mut VecDeque<Self> {
        &mut slot.pending_ipv6
    }

    fn begin_withdrawals(out: &mut BytesMut, max_message_len: usize) -> Framing {
        let start = begin_message(out);
        out.put_u16(0);
        let lengths = out.len();
        out.put_u16(0);
        let multiprotocol = begin_mp_unreach_ipv6(out);
        Framing {
            start,
            limit: start + max_message_len,
            lengths,
            multiprotocol,
        }
    }

    fn finish_withdrawals(out: &mut BytesMut, framing: &Framing) {
        let multiprotocol_len = out.len() - framing.multiprotocol - 2;
        patch_u16(out, framing.multiprotocol, multiprotocol_len);
        let attributes_len = out.len() - framing.lengths - 2;
        patch_u16(out, framing.lengths, attributes_len);
        finish_message(out, framing.start);
    }

    fn begin_announcements(
        out: &mut BytesMut,
        max_message_len: usize,
        slot: &AttributeSlot,
    ) -> Option<Framing> {
        let block = slot.encoded(Self::FAMILY)?;
        let next_hop = slot.attributes.ipv6_next_hop?;
        if UPDATE_FIXED_LEN + mp_reach_overhead(&next_hop) + block.len() + 17 > max_message_len {
            return None;
        }
        let start = begin_message(out);
        out.put_u16(0);
        let lengths = out.len();
        out.put_u16(0);
        let multiprotocol = begin_mp_reach_ipv6(out, &next_hop);
        Some(Framing {
            start,
            // The attribute block is written after MP_REACH_NLRI.
            limit: start + max_message_len - block.len(),
            lengths,
            multiprotocol,
        })
    }

    fn finish_announcements(out: &mut BytesMut, framing: &Framing, slot: &AttributeSlot) {
        let multiprotocol_len = out.len() - framing.multiprotocol - 2;
        patch_u16(out, framing.multiprotocol, multiprotocol_len);
        if let Some(block) = slot.encoded(Self::FAMILY) {
            out.put_slice(block);
        }
        let attributes_len = out.len() - framing.lengths - 2;
        patch_u16(out, framing.lengths, attributes_len);
        finish_message(out, framing.start);
    }
}

/// The routes of one family and the withdrawals still to send.
#[derive(Debug)]
pub(super) struct FamilyTable<K> {
    pub(super) routes: FxHashMap<K, Entry>,
    pub(super) withdrawals: VecDeque<K>,
    /// Set by a withdraw-all: sent withdrawals stay in the map and are removed by one pass over
    /// it when the list drains. The list is sorted, so looking each route up as it is sent
    /// would be one random memory access per route (several times the cost of the rest).
    sweep_withdrawn: bool,
    /// Some listed withdrawal may be stale (re-announced since) or listed twice; only consulted
    /// while `sweep_withdrawn` (otherwise every withdrawal is checked as it is sent).
    withdrawals_need_validation: bool,
    /// Some withdrawal was listed after one not below it: the list is sorted before it drains.
    withdrawals_unsorted: bool,
}

impl<K> Default for FamilyTable<K> {
    fn default() -> Self {
        Self {
            routes: FxHashMap::default(),
            withdrawals: VecDeque::new(),
            sweep_withdrawn: false,
            withdrawals_need_validation: false,
            withdrawals_unsorted: false,
        }
    }
}

/// Both families' tables.
#[derive(Debug, Default)]
pub(super) struct FamilyTables {
    pub(super) ipv4: FamilyTable<Ipv4Key>,
    pub(super) ipv6: FamilyTable<Ipv6Key>,
}

/// A route's previous attribute set and whether it may still be listed there.
pub(super) type Previous = (u32, bool);

impl<K: RouteKey> FamilyTable<K> {
    /// Points `key` at attribute set `id`; `None` when it already was. Queued for sending when
    /// the family is `active`.
    pub(super) fn announce(
        &mut self,
        key: K,
        id: u32,
        active: bool,
        sets: &mut AttributeSets,
    ) -> Option<Previous> {
        let entry = self
            .routes
            .entry(key)
            .or_insert(Entry::new(NO_ATTRIBUTES, false));
        if entry.attributes() == id {
            return None;
        }
        let previous = (entry.attributes(), entry.queued());
        if previous == (NO_ATTRIBUTES, true) {
            // Its withdrawal may still be listed.
            self.withdrawals_need_validation = true;
        }
        entry.set_attributes(id);
        entry.set_queued(active);
        if active {
            sets.queue(id, key);
        }
        Some(previous)
    }

    /// Withdraws `key`; `None` when it was not announced.
    pub(super) fn withdraw(&mut self, key: K, active: bool) -> Option<Previous> {
        let entry = self.routes.get_mut(&key)?;
        let previous = (entry.attributes(), entry.queued());
        if previous.0 == NO_ATTRIBUTES {
            return None;
        }
        if active {
            // Whether the announcement already went out is not tracked (the fast drain does
            // not touch the map), so a withdrawal is always sent; for a prefix the peer never
            // saw it is a no-op (RFC 4271 §9.1.3 / §4.3).
            entry.set_attributes(NO_ATTRIBUTES);
            entry.set_queued(true);
            self.list_withdrawal(key);
        } else {
            self.routes.remove(&key);
        }
        Some(previous)
    }

    /// Lists a withdrawal to send, noting when it breaks the list's ascending order.
    fn list_withdrawal(&mut self, key: K) {
        if self.withdrawals.back().is_some_and(|last| *last >= key) {
            self.withdrawals_unsorted = true;
        }
        self.withdrawals.push_back(key);
    }

    /// Withdraws every route in one pass over the map; when `active` the withdrawals are
    /// listed in ascending prefix order (and swept from the map once sent).
    pub(super) fn withdraw_all(&mut self, active: bool, sets: &mut AttributeSets) {
        if !active {
            for entry in self.routes.values() {
                sets.leave(entry.attributes(), entry.queued());
            }
            self.routes.clear();
            return;
        }
        // Keys listed before may be stale or listed again below.
        self.withdrawals_need_validation |= !self.withdrawals.is_empty();
        // One allocation for the whole list (growing it by doubling copies it several times).
        self.withdrawals.reserve(self.routes.len());
        for (key, entry) in &mut self.routes {
            if entry.attributes() == NO_ATTRIBUTES {
                continue;
            }
            sets.leave(entry.attributes(), entry.queued());
            // Always sent, as in `withdraw`.
            entry.set_attributes(NO_ATTRIBUTES);
            entry.set_queued(true);
            self.withdrawals.push_back(*key);
        }
        sort_ascending(self.withdrawals.make_contiguous());
        self.withdrawals_unsorted = false;
        self.sweep_withdrawn = true;
    }

    /// Drops the list of withdrawals to send (the session is reset).
    pub(super) fn clear_withdrawals(&mut self) {
        self.withdrawals.clear();
        self.withdrawals_need_validation = false;
        self.withdrawals_unsorted = false;
    }

    /// Session down: withdrawn routes are forgotten and nothing is marked as queued.
    pub(super) fn forget_sent_state(&mut self) {
        self.routes
            .retain(|_, entry| entry.attributes() != NO_ATTRIBUTES);
        for entry in self.routes.values_mut() {
            entry.set_queued(false);
        }
        self.clear_withdrawals();
        self.sweep_withdrawn = false;
    }

    /// Marks every route for sending and queues it (withdrawals still owed, too), each list in
    /// ascending prefix order: the map is walked in hash order, then the lists are sorted.
    /// Receivers ingest a table sent in prefix order much faster (their own tables are ordered),
    /// and sorting the keys costs far less than the UPDATEs they go into.
    ///
    /// During a withdraw-all's sweep, withdrawals already sent are listed (and sent) again: a
    /// withdrawal of a prefix the peer does not hold is a no-op (RFC 4271 §9.1.3).
    pub(super) fn requeue(&mut self, sets: &mut AttributeSets) {
        sets.expect_duplicates::<K>();
        self.withdrawals_need_validation |= !self.withdrawals.is_empty();
        for (key, entry) in &mut self.routes {
            if entry.attributes() == NO_ATTRIBUTES {
                if entry.queued() {
                    self.withdrawals.push_back(*key);
                }
                continue;
            }
            entry.set_queued(true);
            sets.queue(entry.attributes(), *key);
        }
        sort_ascending(self.withdrawals.make_contiguous());
        self.withdrawals_unsorted = false;
        sets.sort_pending::<K>();
    }

    /// Packs one UPDATE of pending withdrawals (nothing when none is still owed).
    pub(super) fn pack_withdrawals(
        &mut self,
        max_message_len: usize,
        out: &mut BytesMut,
        counters: &mut RibCounters,
    ) {
        if self.withdrawals_unsorted {
            sort_ascending(self.withdrawals.make_contiguous());
            self.withdrawals_unsorted = false;
        }
        let framing = K::begin_withdrawals(out, max_message_len);
        let sweep = self.sweep_withdrawn;
        let validate = !sweep || self.withdrawals_need_validation;
        let mut count = 0u64;
        while let Some(key) = self.withdrawals.pop_front() {
            if validate {
                let Some(entry) = self.routes.get_mut(&key) else {
                    continue;
                };
                if entry.attributes() != NO_ATTRIBUTES || !entry.queued() {
                    continue;
                }
                if out.len() + key.wire_len() > framing.limit {
                    self.withdrawals.push_front(key);
                    break;
                }
                entry.set_queued(false);
            } else if out.len() + key.wire_len() > framing.limit {
                self.withdrawals.push_front(key);
                break;
            }
            key.put(out);
            if !sweep {
                self.routes.remove(&key);
            }
            count += 1;
        }
        if self.withdrawals.is_empty() {
            if sweep {
                // Every withdrawn route left in the map has been sent.
                self.routes
                    .retain(|_, entry| entry.attributes() != NO_ATTRIBUTES);
                self.sweep_withdrawn = false;
            }
            self.withdrawals_need_validation = false;
            release_if_large(&mut self.withdrawals);
        }
        if count == 0 {
            out.truncate(framing.start);
            return;
        }
        K::finish_withdrawals(out, &framing);
        counters.updates += 1;
        counters.withdrawn += count;
    }

    /// Packs one UPDATE of this family's pending announcements of slot `id`; false when
    /// nothing was written (the list is empty, stale, or cannot be sent on this session).
    pub(super) fn pack_announcements(
        &mut self,
        id: u32,
        slot: &mut AttributeSlot,
        max_message_len: usize,
        out: &mut BytesMut,
        counters: &mut RibCounters,
    ) -> bool {
        if K::pending(slot).is_empty() {
            return false;
        }
        let Some(framing) = K::begin_announcements(out, max_message_len, slot) else {
            let pending = K::pending(slot);
            counters.unencodable += pending.len() as u64;
            pending.clear();
            return false;
        };
        slot.sort_pending_if_needed::<K>();
        let validate = slot.needs_validation;
        let pending = K::pending(slot);
        let mut count = 0u64;
        while let Some(key) = pending.pop_front() {
            if validate {
                let Some(entry) = self.routes.get_mut(&key) else {
                    continue;
                };
                if entry.attributes() != id || !entry.queued() {
                    continue;
                }
                entry.set_queued(false);
            }
            if out.len() + key.wire_len() > framing.limit {
                pending.push_front(key);
                if validate && let Some(entry) = self.routes.get_mut(&key) {
                    entry.set_queued(true);
                }
                break;
            }
            key.put(out);
            count += 1;
        }
        slot.release_if_drained();
        if count == 0 {
            out.truncate(framing.start);
            return false;
        }
        K::finish_announcements(out, &framing, slot);
        counters.updates += 1;
        counters.announced += count;
        true
    }
}

/// Sorts keys ascending: a least-significant-digit radix sort (one counting pass for every
/// octet, then one scatter pass per octet in which the keys differ; a table of /24s needs three),
/// several times faster than a comparison sort for the full-table sends. Uses a scratch copy of
/// the keys while it runs.
pub(super) fn sort_ascending<K: RouteKey>(keys: &mut [K]) {
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    let mut counts = vec![[0usize; 256]; K::DIGITS];
    for key in keys.iter() {
        for (digit, count) in counts.iter_mut().enumerate() {
            count[usize::from(key.digit(digit))] += 1;
        }
    }
    let mut scratch = keys.to_vec();
    let mut sorted_in_scratch = false;
    for (digit, count) in counts.iter().enumerate() {
        if count.contains(&keys.len()) {
            // Every key has the same octet here: this pass would not move anything.
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut next = 0;
        for (offset, count) in offsets.iter_mut().zip(count) {
            *offset = next;
            next += count;
        }
        let (from, to): (&[K], &mut [K]) = if sorted_in_scratch {
            (&scratch, keys)
        } else {
            (keys, &mut scratch)
        };
        for key in from {
            let offset = &mut offsets[usize::from(key.digit(digit))];
            if let Some(place) = to.get_mut(*offset) {
                *place = *key;
            }
            *offset += 1;
        }
        sorted_in_scratch = !sorted_in_scratch;
    }
    if sorted_in_scratch {
        keys.copy_from_slice(&scratch);
    }
}
