//! Adj-RIB-Out of one peer (RFC 4271 §3.2, §9.2) and the UPDATE packer.
//!
//! Owns: what we want the peer to hold (prefix → shared attribute set), what still has to be
//! sent (coalesced: last write per prefix wins, withdrawals go first), packing of pending routes
//! that share an attribute set into as few UPDATEs as fit the negotiated maximum size (4096, or
//! 65535 with RFC 8654), End-of-RIB after the initial sync (RFC 4724 §2), full re-send on route
//! refresh (RFC 2918 §4) wrapped in BoRR/EoRR when enhanced route refresh is negotiated
//! (RFC 7313 §4). Must not touch: sockets, timers, the session state machine.
//!
//! Back pressure: nothing is queued as messages. The driver calls [`AdjRibOut::next_update`]
//! when its socket has room; UPDATEs are encoded from the coalesced state at that moment, so a
//! slow peer costs memory proportional to the number of routes, never to the number of changes.
//!
//! Memory and speed (target: 1 M IPv4 /24 + 200 k IPv6 /48 with one attribute set, ≤ 150 octets
//! per route per peer, within 1.5× of writing pre-encoded bytes):
//! - one hash map per family with compact keys: IPv4 `u64` = address << 8 | length, IPv6
//!   `(u128, u8)`, value 8 octets (attribute-set index + flags);
//! - attribute sets are interned once per peer (`Arc<PathAttributes>` → index) and their
//!   attribute block is encoded once per session and copied into every UPDATE;
//! - pending announcements are lists of keys per attribute set (lazy: an entry that changed
//!   again since it was queued is skipped when its list is drained), so a burst of changes to
//!   one prefix costs one list slot each and a single UPDATE entry at most;
//! - prefixes are written straight into the output `BytesMut` (see `codec::nlri`).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;
use thiserror::Error;

use crate::codec::attributes::{NextHopPlacement, encode_attributes};
use crate::codec::nlri::{
    ipv4_prefix_wire_len, ipv6_prefix_wire_len, put_ipv4_prefix, put_ipv6_prefix,
};
use crate::codec::update::{
    UPDATE_FIXED_LEN, begin_message, begin_mp_reach_ipv6, begin_mp_unreach_ipv6, finish_message,
    mp_reach_overhead, patch_u16, put_end_of_rib,
};
use crate::codec::{
    EncodeContext, EncodeError, Family, MAX_MESSAGE_LEN, Message, PathAttributes, RouteRefresh,
    RouteRefreshSubtype, encode_message,
};
use crate::fast_hash::FastHasher;
use crate::session::Negotiated;

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Attribute-set index meaning "withdrawn".
const NO_ATTRIBUTES: u32 = u32::MAX;
/// Flag: the key was put in a pending list (of its attribute set, or of withdrawals) and may
/// not have been sent yet. Cleared only when a validated drain sends it; the fast drain of a
/// clean list leaves it set, which is conservative (see `AttributeSlot::needs_validation`).
const QUEUED: u8 = 1;

/// A route cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RibError {
    /// The attribute set has no next hop for the prefix's family.
    #[error("attribute set has no next hop for {0}")]
    MissingNextHop(Family),
    /// The attribute set cannot be encoded or is too large for a 4096-octet UPDATE.
    #[error("attribute set cannot be encoded: {0}")]
    Encode(#[from] EncodeError),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    attributes: u32,
    flags: u8,
}

#[derive(Debug)]
struct AttributeSlot {
    attributes: Arc<PathAttributes>,
    references: u32,
    /// Encoded attribute block for IPv4 (with NEXT_HOP) and for IPv6 (without), for the
    /// AS-number width in `encoded_four_octet`.
    encoded_ipv4: Option<Bytes>,
    encoded_ipv6: Option<Bytes>,
    encoded_four_octet: bool,
    pending_ipv4: Vec<u64>,
    pending_ipv6: Vec<(u128, u8)>,
    queued: bool,
    /// Some key in the pending lists may be stale (its route moved to another set or was
    /// withdrawn) or duplicated. While false, every listed key is known to be current and
    /// unique, so the packer writes it without looking the route up — one random memory access
    /// per route saved on the initial sync, which is most of the packer's cost.
    needs_validation: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Idle,
    /// BoRR to send, then the re-sent routes, then EoRR (RFC 7313 §4).
    BeginPending,
    EndPending,
}

#[derive(Debug, Clone, Copy)]
struct Sending {
    max_message_len: usize,
    four_octet_as: bool,
    families: [bool; 2],
    end_of_rib_pending: [bool; 2],
    enhanced_route_refresh: bool,
    refresh: [Refresh; 2],
}

const fn slot_index(family: Family) -> usize {
    match family {
        Family::Ipv4Unicast => 0,
        Family::Ipv6Unicast => 1,
    }
}

fn ipv4_key(prefix: &ipnet::Ipv4Net) -> u64 {
    (u64::from(u32::from(prefix.network())) << 8) | u64::from(prefix.prefix_len())
}

fn ipv6_key(prefix: &ipnet::Ipv6Net) -> (u128, u8) {
    (u128::from(prefix.network()), prefix.prefix_len())
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RibCounters {
    /// UPDATE messages produced (End-of-RIB included).
    pub updates: u64,
    /// Prefixes announced on the wire.
    pub announced: u64,
    /// Prefixes withdrawn on the wire.
    pub withdrawn: u64,
    /// Prefixes dropped because their attribute set could not be encoded for this session.
    pub unencodable: u64,
}

/// Adj-RIB-Out of one peer.
#[derive(Debug, Default)]
pub struct AdjRibOut {
    ipv4: FastMap<u64, Entry>,
    ipv6: FastMap<(u128, u8), Entry>,
    slots: Vec<AttributeSlot>,
    free_slots: Vec<u32>,
    interner: HashMap<Arc<PathAttributes>, u32>,
    last_interned: Option<(Arc<PathAttributes>, u32)>,
    withdraw_ipv4: Vec<u64>,
    withdraw_ipv6: Vec<(u128, u8)>,
    queue: VecDeque<u32>,
    sending: Option<Sending>,
    counters: RibCounters,
}

impl AdjRibOut {
    /// An empty Adj-RIB-Out, not sending (call [`Self::session_established`]).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reserves room for `ipv4` more IPv4 and `ipv6` more IPv6 routes (avoids rehashing while
    /// a large table is loaded).
    pub fn reserve(&mut self, ipv4: usize, ipv6: usize) {
        self.ipv4.reserve(ipv4);
        self.ipv6.reserve(ipv6);
    }

    /// Number of routes (announced or pending announcement).
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.iter().map(|slot| slot.references as usize).sum()
    }

    /// Whether there are no routes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters since creation.
    #[must_use]
    pub fn counters(&self) -> RibCounters {
        self.counters
    }

    /// Approximate heap use in octets (maps, pending lists, attribute sets).
    #[must_use]
    pub fn memory_estimate(&self) -> usize {
        let entry = std::mem::size_of::<Entry>();
        let ipv4 = self.ipv4.capacity() * (std::mem::size_of::<u64>() + entry + 1);
        let ipv6 = self.ipv6.capacity() * (std::mem::size_of::<(u128, u8)>() + entry + 1);
        let lists: usize = self
            .slots
            .iter()
            .map(|slot| {
                slot.pending_ipv4.capacity() * 8
                    + slot.pending_ipv6.capacity() * 32
                    + slot.encoded_ipv4.as_ref().map_or(0, Bytes::len)
                    + slot.encoded_ipv6.as_ref().map_or(0, Bytes::len)
                    + std::mem::size_of::<AttributeSlot>()
                    + std::mem::size_of::<PathAttributes>()
            })
            .sum();
        ipv4 + ipv6 + lists + self.withdraw_ipv4.capacity() * 8 + self.withdraw_ipv6.capacity() * 32
    }

    /// Whether anything (routes, End-of-RIB, BoRR/EoRR) is waiting to be sent.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        let Some(sending) = &self.sending else {
            return false;
        };
        !self.withdraw_ipv4.is_empty()
            || !self.withdraw_ipv6.is_empty()
            || !self.queue.is_empty()
            || sending.end_of_rib_pending.iter().any(|pending| *pending)
            || sending
                .refresh
                .iter()
                .any(|refresh| *refresh != Refresh::Idle)
    }

    fn family_active(&self, family: Family) -> bool {
        self.sending
            .as_ref()
            .is_some_and(|sending| sending.families[slot_index(family)])
    }

    /// Interns an attribute set (validating it once) and returns its slot index.
    fn intern(
        &mut self,
        attributes: &Arc<PathAttributes>,
        family: Family,
    ) -> Result<u32, RibError> {
        let id = match &self.last_interned {
            Some((last, id)) if Arc::ptr_eq(last, attributes) => *id,
            _ => {
                let id = match self.interner.get(attributes) {
                    Some(id) => *id,
                    None => self.new_slot(attributes)?,
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
        let has_next_hop = match family {
            Family::Ipv4Unicast => slot.encoded_ipv4.is_some(),
            Family::Ipv6Unicast => slot.encoded_ipv6.is_some(),
        };
        if has_next_hop {
            Ok(id)
        } else {
            Err(RibError::MissingNextHop(family))
        }
    }

    fn new_slot(&mut self, attributes: &Arc<PathAttributes>) -> Result<u32, RibError> {
        let four_octet_as = self
            .sending
            .as_ref()
            .is_none_or(|sending| sending.four_octet_as);
        let (ipv4, ipv6) = encode_blocks(attributes, four_octet_as)?;
        let slot = AttributeSlot {
            attributes: Arc::clone(attributes),
            references: 0,
            encoded_ipv4: ipv4,
            encoded_ipv6: ipv6,
            encoded_four_octet: four_octet_as,
            pending_ipv4: Vec::new(),
            pending_ipv6: Vec::new(),
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
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).unwrap_or(NO_ATTRIBUTES - 1)
            }
        };
        self.interner.insert(Arc::clone(attributes), id);
        Ok(id)
    }

    fn reference(&mut self, id: u32) {
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
            slot.pending_ipv4 = Vec::new();
            slot.pending_ipv6 = Vec::new();
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

    fn queue_ipv4(&mut self, id: u32, key: u64) {
        if let Some(slot) = self.slots.get_mut(id as usize) {
            slot.pending_ipv4.push(key);
            if !slot.queued {
                slot.queued = true;
                self.queue.push_back(id);
            }
        }
    }

    fn queue_ipv6(&mut self, id: u32, key: (u128, u8)) {
        if let Some(slot) = self.slots.get_mut(id as usize) {
            slot.pending_ipv6.push(key);
            if !slot.queued {
                slot.queued = true;
                self.queue.push_back(id);
            }
        }
    }

    /// Announces `prefix` with `attributes` (replacing any previous announcement). Pass the
    /// same `Arc` for routes sharing attributes: the set is interned and they are packed
    /// together. Host bits of `prefix` are ignored.
    ///
    /// # Errors
    ///
    /// [`RibError`] when the attribute set lacks the family's next hop or cannot be encoded.
    pub fn announce(
        &mut self,
        prefix: IpNet,
        attributes: &Arc<PathAttributes>,
    ) -> Result<(), RibError> {
        let family = Family::of(&prefix);
        let id = self.intern(attributes, family)?;
        let active = self.family_active(family);
        let previous = match prefix {
            IpNet::V4(net) => {
                let key = ipv4_key(&net);
                let entry = self.ipv4.entry(key).or_insert(Entry {
                    attributes: NO_ATTRIBUTES,
                    flags: 0,
                });
                if entry.attributes == id {
                    return Ok(());
                }
                let previous = (entry.attributes, entry.flags & QUEUED != 0);
                entry.attributes = id;
                entry.flags = if active { QUEUED } else { 0 };
                if active {
                    self.queue_ipv4(id, key);
                }
                previous
            }
            IpNet::V6(net) => {
                let key = ipv6_key(&net);
                let entry = self.ipv6.entry(key).or_insert(Entry {
                    attributes: NO_ATTRIBUTES,
                    flags: 0,
                });
                if entry.attributes == id {
                    return Ok(());
                }
                let previous = (entry.attributes, entry.flags & QUEUED != 0);
                entry.attributes = id;
                entry.flags = if active { QUEUED } else { 0 };
                if active {
                    self.queue_ipv6(id, key);
                }
                previous
            }
        };
        self.reference(id);
        self.leave(previous.0, previous.1);
        Ok(())
    }

    /// Withdraws `prefix` (no-op when absent).
    pub fn withdraw(&mut self, prefix: IpNet) {
        let active = self.family_active(Family::of(&prefix));
        let released = match prefix {
            IpNet::V4(net) => {
                let key = ipv4_key(&net);
                let Some(entry) = self.ipv4.get_mut(&key) else {
                    return;
                };
                let previous = (entry.attributes, entry.flags & QUEUED != 0);
                if previous.0 == NO_ATTRIBUTES {
                    return;
                }
                if active {
                    // Whether the announcement already went out is not tracked (the fast
                    // drain does not touch the map), so a withdrawal is always sent; for a
                    // prefix the peer never saw it is a no-op (RFC 4271 §9.1.3 / §4.3).
                    entry.attributes = NO_ATTRIBUTES;
                    entry.flags = QUEUED;
                    self.withdraw_ipv4.push(key);
                } else {
                    self.ipv4.remove(&key);
                }
                previous
            }
            IpNet::V6(net) => {
                let key = ipv6_key(&net);
                let Some(entry) = self.ipv6.get_mut(&key) else {
                    return;
                };
                let previous = (entry.attributes, entry.flags & QUEUED != 0);
                if previous.0 == NO_ATTRIBUTES {
                    return;
                }
                if active {
                    entry.attributes = NO_ATTRIBUTES;
                    entry.flags = QUEUED;
                    self.withdraw_ipv6.push(key);
                } else {
                    self.ipv6.remove(&key);
                }
                previous
            }
        };
        self.leave(released.0, released.1);
    }

    /// A route left attribute set `id`; if it may still be listed there, the list needs
    /// validation when drained.
    fn leave(&mut self, id: u32, was_queued: bool) {
        if id == NO_ATTRIBUTES {
            return;
        }
        if was_queued && let Some(slot) = self.slots.get_mut(id as usize) {
            slot.needs_validation = true;
        }
        self.release(id);
    }

    /// Withdraws every route.
    pub fn withdraw_all(&mut self) {
        let ipv4: Vec<u64> = self
            .ipv4
            .iter()
            .filter(|(_, entry)| entry.attributes != NO_ATTRIBUTES)
            .map(|(key, _)| *key)
            .collect();
        for key in ipv4 {
            if let Ok(net) = ipnet::Ipv4Net::new(
                std::net::Ipv4Addr::from((key >> 8) as u32),
                (key & 0xff) as u8,
            ) {
                self.withdraw(IpNet::V4(net));
            }
        }
        let ipv6: Vec<(u128, u8)> = self
            .ipv6
            .iter()
            .filter(|(_, entry)| entry.attributes != NO_ATTRIBUTES)
            .map(|(key, _)| *key)
            .collect();
        for (address, length) in ipv6 {
            if let Ok(net) = ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(address), length) {
                self.withdraw(IpNet::V6(net));
            }
        }
    }

    /// The session reached Established: everything is (re)sent for the negotiated families,
    /// followed by End-of-RIB per family (RFC 4724 §2 — also what a restarting speaker needs
    /// so the peer can drop stale routes we did not re-announce, RFC 4724 §4.2).
    pub fn session_established(&mut self, negotiated: &Negotiated) {
        let families = [
            negotiated.has_family(Family::Ipv4Unicast),
            negotiated.has_family(Family::Ipv6Unicast),
        ];
        self.sending = Some(Sending {
            max_message_len: usize::from(negotiated.max_message_len()),
            four_octet_as: negotiated.four_octet_as,
            families,
            end_of_rib_pending: families,
            enhanced_route_refresh: negotiated.enhanced_route_refresh,
            refresh: [Refresh::Idle; 2],
        });
        for slot in &mut self.slots {
            if slot.encoded_four_octet != negotiated.four_octet_as && slot.references > 0 {
                match encode_blocks(&slot.attributes, negotiated.four_octet_as) {
                    Ok((ipv4, ipv6)) => {
                        slot.encoded_ipv4 = ipv4;
                        slot.encoded_ipv6 = ipv6;
                    }
                    Err(_) => {
                        slot.encoded_ipv4 = None;
                        slot.encoded_ipv6 = None;
                    }
                }
                slot.encoded_four_octet = negotiated.four_octet_as;
            }
        }
        self.reset_pending();
        for family in Family::ALL {
            if families[slot_index(family)] {
                self.requeue_family(family);
            }
        }
    }

    /// The session went down: nothing is advertised any more; routes stay for the next session.
    pub fn session_down(&mut self) {
        self.sending = None;
        self.reset_pending();
        self.ipv4
            .retain(|_, entry| entry.attributes != NO_ATTRIBUTES);
        self.ipv6
            .retain(|_, entry| entry.attributes != NO_ATTRIBUTES);
        for entry in self.ipv4.values_mut().chain(self.ipv6.values_mut()) {
            entry.flags = 0;
        }
    }

    fn reset_pending(&mut self) {
        for slot in &mut self.slots {
            slot.pending_ipv4.clear();
            slot.pending_ipv6.clear();
            slot.queued = false;
            slot.needs_validation = false;
        }
        self.queue.clear();
        self.withdraw_ipv4.clear();
        self.withdraw_ipv6.clear();
    }

    /// Marks every route of `family` for sending and queues it.
    fn requeue_family(&mut self, family: Family) {
        // Keys already listed would be listed twice.
        for slot in &mut self.slots {
            if !slot.pending_ipv4.is_empty() || !slot.pending_ipv6.is_empty() {
                slot.needs_validation = true;
            }
        }
        match family {
            Family::Ipv4Unicast => {
                for (key, entry) in &mut self.ipv4 {
                    if entry.attributes == NO_ATTRIBUTES {
                        if entry.flags & QUEUED != 0 {
                            self.withdraw_ipv4.push(*key);
                        }
                        continue;
                    }
                    entry.flags = QUEUED;
                    if let Some(slot) = self.slots.get_mut(entry.attributes as usize) {
                        slot.pending_ipv4.push(*key);
                        if !slot.queued {
                            slot.queued = true;
                            self.queue.push_back(entry.attributes);
                        }
                    }
                }
            }
            Family::Ipv6Unicast => {
                for (key, entry) in &mut self.ipv6 {
                    if entry.attributes == NO_ATTRIBUTES {
                        if entry.flags & QUEUED != 0 {
                            self.withdraw_ipv6.push(*key);
                        }
                        continue;
                    }
                    entry.flags = QUEUED;
                    if let Some(slot) = self.slots.get_mut(entry.attributes as usize) {
                        slot.pending_ipv6.push(*key);
                        if !slot.queued {
                            slot.queued = true;
                            self.queue.push_back(entry.attributes);
                        }
                    }
                }
            }
        }
    }

    /// The peer asked for a re-send of `family` (RFC 2918 §4). With enhanced route refresh
    /// negotiated the re-send is wrapped in BoRR/EoRR (RFC 7313 §4).
    pub fn route_refresh(&mut self, family: Family) {
        if !self.family_active(family) {
            return;
        }
        // Queued entries stay queued; duplicates in a list are skipped when drained.
        self.requeue_family(family);
        if let Some(sending) = &mut self.sending
            && sending.enhanced_route_refresh
        {
            sending.refresh[slot_index(family)] = Refresh::BeginPending;
        }
    }

    /// Encodes the next UPDATE(s) for the socket: at least one message when anything is
    /// pending, and more while the total stays under `budget_bytes` (so the result is at most
    /// `budget_bytes` + one maximum-size message). `None` when there is nothing to send or the
    /// session is not Established. Order: BoRR, withdrawals, announcements, EoRR, End-of-RIB.
    pub fn next_update(&mut self, budget_bytes: usize) -> Option<Bytes> {
        let sending = self.sending?;
        let mut out =
            BytesMut::with_capacity(budget_bytes.min(1 << 20).max(sending.max_message_len));
        // `write_one` updates the live refresh / End-of-RIB state, so re-read it every time.
        while let Some(sending) = self.sending {
            if !out.is_empty() && out.len() >= budget_bytes {
                break;
            }
            if !self.write_one(&sending, &mut out) {
                break;
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }

    /// Writes one message; false when nothing is pending.
    fn write_one(&mut self, sending: &Sending, out: &mut BytesMut) -> bool {
        let start = out.len();
        for family in Family::ALL {
            if sending.refresh[slot_index(family)] == Refresh::BeginPending {
                self.put_refresh(family, RouteRefreshSubtype::Begin, out);
                if let Some(live) = &mut self.sending {
                    live.refresh[slot_index(family)] = Refresh::EndPending;
                }
                return true;
            }
        }
        if !self.withdraw_ipv4.is_empty() {
            self.pack_ipv4_withdrawals(sending, out);
            if out.len() > start {
                return true;
            }
        }
        if !self.withdraw_ipv6.is_empty() {
            self.pack_ipv6_withdrawals(sending, out);
            if out.len() > start {
                return true;
            }
        }
        while let Some(&id) = self.queue.front() {
            let written = self.pack_announcements(id, sending, out);
            let drained = self
                .slots
                .get(id as usize)
                .is_none_or(|slot| slot.pending_ipv4.is_empty() && slot.pending_ipv6.is_empty());
            if drained {
                self.queue.pop_front();
                if let Some(slot) = self.slots.get_mut(id as usize) {
                    slot.queued = false;
                }
            }
            if written {
                return true;
            }
        }
        if !self.withdraw_ipv4.is_empty() || !self.withdraw_ipv6.is_empty() {
            return false;
        }
        for family in Family::ALL {
            let index = slot_index(family);
            if sending.refresh[index] == Refresh::EndPending {
                self.put_refresh(family, RouteRefreshSubtype::End, out);
                if let Some(live) = &mut self.sending {
                    live.refresh[index] = Refresh::Idle;
                }
                return true;
            }
        }
        for family in Family::ALL {
            let index = slot_index(family);
            if let Some(live) = &mut self.sending
                && live.end_of_rib_pending[index]
            {
                live.end_of_rib_pending[index] = false;
                put_end_of_rib(out, family);
                self.counters.updates += 1;
                return true;
            }
        }
        false
    }

    fn put_refresh(&mut self, family: Family, subtype: RouteRefreshSubtype, out: &mut BytesMut) {
        let message = Message::RouteRefresh(RouteRefresh::new(family, subtype));
        if let Ok(bytes) = encode_message(&message, &EncodeContext::default()) {
            out.put_slice(&bytes);
        }
    }

    fn pack_ipv4_withdrawals(&mut self, sending: &Sending, out: &mut BytesMut) {
        let start = begin_message(out);
        let limit = start + sending.max_message_len - 2;
        let length_position = out.len();
        out.put_u16(0);
        let mut count = 0u64;
        while let Some(key) = self.withdraw_ipv4.pop() {
            let Some(entry) = self.ipv4.get(&key) else {
                continue;
            };
            if entry.attributes != NO_ATTRIBUTES || entry.flags & QUEUED == 0 {
                continue;
            }
            let length = (key & 0xff) as u8;
            if out.len() + ipv4_prefix_wire_len(length) > limit {
                self.withdraw_ipv4.push(key);
                break;
            }
            put_ipv4_prefix(out, (key >> 8) as u32, length);
            self.ipv4.remove(&key);
            count += 1;
        }
        if self.withdraw_ipv4.is_empty() {
            release_if_large(&mut self.withdraw_ipv4);
        }
        if count == 0 {
            out.truncate(start);
            return;
        }
        let withdrawn_len = out.len() - length_position - 2;
        patch_u16(out, length_position, withdrawn_len);
        out.put_u16(0);
        finish_message(out, start);
        self.counters.updates += 1;
        self.counters.withdrawn += count;
    }

    fn pack_ipv6_withdrawals(&mut self, sending: &Sending, out: &mut BytesMut) {
        let start = begin_message(out);
        let limit = start + sending.max_message_len;
        out.put_u16(0);
        let attributes_position = out.len();
        out.put_u16(0);
        let mp_position = begin_mp_unreach_ipv6(out);
        let mut count = 0u64;
        while let Some(key) = self.withdraw_ipv6.pop() {
            let Some(entry) = self.ipv6.get(&key) else {
                continue;
            };
            if entry.attributes != NO_ATTRIBUTES || entry.flags & QUEUED == 0 {
                continue;
            }
            if out.len() + ipv6_prefix_wire_len(key.1) > limit {
                self.withdraw_ipv6.push(key);
                break;
            }
            put_ipv6_prefix(out, key.0, key.1);
            self.ipv6.remove(&key);
            count += 1;
        }
        if self.withdraw_ipv6.is_empty() {
            release_if_large(&mut self.withdraw_ipv6);
        }
        if count == 0 {
            out.truncate(start);
            return;
        }
        let mp_len = out.len() - mp_position - 2;
        patch_u16(out, mp_position, mp_len);
        let attributes_len = out.len() - attributes_position - 2;
        patch_u16(out, attributes_position, attributes_len);
        finish_message(out, start);
        self.counters.updates += 1;
        self.counters.withdrawn += count;
    }

    /// Packs one UPDATE of pending announcements of slot `id` (IPv4 first, then IPv6).
    fn pack_announcements(&mut self, id: u32, sending: &Sending, out: &mut BytesMut) -> bool {
        let Some(slot) = self.slots.get_mut(id as usize) else {
            return false;
        };
        if !slot.pending_ipv4.is_empty() {
            let Some(block) = slot.encoded_ipv4.clone() else {
                self.counters.unencodable += slot.pending_ipv4.len() as u64;
                slot.pending_ipv4.clear();
                return false;
            };
            if UPDATE_FIXED_LEN + block.len() + 5 > sending.max_message_len {
                self.counters.unencodable += slot.pending_ipv4.len() as u64;
                slot.pending_ipv4.clear();
                return false;
            }
            let start = begin_message(out);
            let limit = start + sending.max_message_len;
            out.put_u16(0);
            out.put_u16(u16::try_from(block.len()).unwrap_or(0));
            out.put_slice(&block);
            let mut count = 0u64;
            let validate = slot.needs_validation;
            while let Some(key) = slot.pending_ipv4.pop() {
                if validate {
                    let Some(entry) = self.ipv4.get_mut(&key) else {
                        continue;
                    };
                    if entry.attributes != id || entry.flags & QUEUED == 0 {
                        continue;
                    }
                    entry.flags = 0;
                }
                let length = (key & 0xff) as u8;
                if out.len() + ipv4_prefix_wire_len(length) > limit {
                    slot.pending_ipv4.push(key);
                    if validate && let Some(entry) = self.ipv4.get_mut(&key) {
                        entry.flags = QUEUED;
                    }
                    break;
                }
                put_ipv4_prefix(out, (key >> 8) as u32, length);
                count += 1;
            }
            if slot.pending_ipv4.is_empty() && slot.pending_ipv6.is_empty() {
                slot.needs_validation = false;
                release_if_large(&mut slot.pending_ipv4);
                release_if_large(&mut slot.pending_ipv6);
            }
            if count == 0 {
                out.truncate(start);
            } else {
                finish_message(out, start);
                self.counters.updates += 1;
                self.counters.announced += count;
                return true;
            }
        }
        if !slot.pending_ipv6.is_empty() {
            let next_hop = slot.attributes.ipv6_next_hop;
            let (Some(block), Some(next_hop)) = (slot.encoded_ipv6.clone(), next_hop) else {
                self.counters.unencodable += slot.pending_ipv6.len() as u64;
                slot.pending_ipv6.clear();
                return false;
            };
            if UPDATE_FIXED_LEN + mp_reach_overhead(&next_hop) + block.len() + 17
                > sending.max_message_len
            {
                self.counters.unencodable += slot.pending_ipv6.len() as u64;
                slot.pending_ipv6.clear();
                return false;
            }
            let start = begin_message(out);
            let limit = start + sending.max_message_len - block.len();
            out.put_u16(0);
            let attributes_position = out.len();
            out.put_u16(0);
            let mp_position = begin_mp_reach_ipv6(out, &next_hop);
            let mut count = 0u64;
            let validate = slot.needs_validation;
            while let Some(key) = slot.pending_ipv6.pop() {
                if validate {
                    let Some(entry) = self.ipv6.get_mut(&key) else {
                        continue;
                    };
                    if entry.attributes != id || entry.flags & QUEUED == 0 {
                        continue;
                    }
                    entry.flags = 0;
                }
                if out.len() + ipv6_prefix_wire_len(key.1) > limit {
                    slot.pending_ipv6.push(key);
                    if validate && let Some(entry) = self.ipv6.get_mut(&key) {
                        entry.flags = QUEUED;
                    }
                    break;
                }
                put_ipv6_prefix(out, key.0, key.1);
                count += 1;
            }
            if slot.pending_ipv4.is_empty() && slot.pending_ipv6.is_empty() {
                slot.needs_validation = false;
                release_if_large(&mut slot.pending_ipv4);
                release_if_large(&mut slot.pending_ipv6);
            }
            if count == 0 {
                out.truncate(start);
                return false;
            }
            let mp_len = out.len() - mp_position - 2;
            patch_u16(out, mp_position, mp_len);
            out.put_slice(&block);
            let attributes_len = out.len() - attributes_position - 2;
            patch_u16(out, attributes_position, attributes_len);
            finish_message(out, start);
            self.counters.updates += 1;
            self.counters.announced += count;
            return true;
        }
        false
    }
}

/// After an initial sync the drained pending list of a large table would keep its capacity
/// (8-32 octets per route); give it back.
/// Whether routes of `family` can be announced with `attributes`: the check
/// [`AdjRibOut::announce`] makes, without an Adj-RIB-Out (for counting routes that never can
/// be sent to a peer).
///
/// # Errors
///
/// [`RibError`] when the attribute set lacks the family's next hop or cannot be encoded.
pub fn check_encodable(attributes: &PathAttributes, family: Family) -> Result<(), RibError> {
    let (ipv4, ipv6) = encode_blocks(attributes, true)?;
    let present = match family {
        Family::Ipv4Unicast => ipv4.is_some(),
        Family::Ipv6Unicast => ipv6.is_some(),
    };
    if present {
        Ok(())
    } else {
        Err(RibError::MissingNextHop(family))
    }
}

fn release_if_large<T>(list: &mut Vec<T>) {
    if list.capacity() > 4096 {
        *list = Vec::new();
    }
}

/// Encodes the attribute blocks of a set: IPv4 (with NEXT_HOP) and IPv6 (without), each `None`
/// when the set has no next hop for that family. Refuses sets too large for a 4096-octet UPDATE
/// with at least one prefix (so every set works with every peer).
fn encode_blocks(
    attributes: &PathAttributes,
    four_octet_as: bool,
) -> Result<(Option<Bytes>, Option<Bytes>), RibError> {
    let room = usize::from(MAX_MESSAGE_LEN) - UPDATE_FIXED_LEN;
    let ipv4 = match attributes.next_hop {
        Some(_) => {
            let block =
                encode_attributes(attributes, NextHopPlacement::ClassicIpv4, four_octet_as)?;
            if block.len() + 5 > room {
                return Err(RibError::Encode(EncodeError::MessageTooLong {
                    size: block.len() + 5 + UPDATE_FIXED_LEN,
                    limit: usize::from(MAX_MESSAGE_LEN),
                }));
            }
            Some(Bytes::from(block))
        }
        None => None,
    };
    let ipv6 = match attributes.ipv6_next_hop {
        Some(next_hop) => {
            let block = encode_attributes(attributes, NextHopPlacement::Omitted, four_octet_as)?;
            if block.len() + mp_reach_overhead(&next_hop) + 17 > room {
                return Err(RibError::Encode(EncodeError::MessageTooLong {
                    size: block.len() + mp_reach_overhead(&next_hop) + 17 + UPDATE_FIXED_LEN,
                    limit: usize::from(MAX_MESSAGE_LEN),
                }));
            }
            Some(Bytes::from(block))
        }
        None => None,
    };
    if ipv4.is_none() && ipv6.is_none() {
        // Validate the rest of the set even without a next hop, so errors surface early.
        encode_attributes(attributes, NextHopPlacement::Omitted, four_octet_as)?;
    }
    Ok((ipv4, ipv6))
}

#[cfg(test)]
mod tests;
