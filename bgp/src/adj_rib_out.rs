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
//! - one hash map per family with compact keys aligned to four octets: IPv4 (address, length),
//!   8 octets, IPv6 (four address words, length), 20 octets; value 4 octets (attribute-set
//!   index and the queued flag), so a slot is 12 octets for IPv4 and 24 for IPv6;
//! - attribute sets are interned once per peer (`Arc<PathAttributes>` → index) and their
//!   attribute block is encoded once per session and copied into every UPDATE;
//! - pending announcements are lists of keys per attribute set (lazy: an entry that changed
//!   again since it was queued is skipped when its list is drained), so a burst of changes to
//!   one prefix costs one list slot each and a single UPDATE entry at most;
//! - order: every pending list drains in ascending prefix order per family and attribute set
//!   (withdrawals per family), because receivers ingest ordered prefixes much faster than hash
//!   or arrival order. A full-table send (session up, re-sync, route refresh) and a withdraw-all
//!   sort their lists once (radix sort); incremental changes are appended and a list that was
//!   appended to out of order is sorted when it next drains (a flag per list, so an ordered
//!   list costs nothing);
//! - prefixes are written straight into the output `BytesMut` (see `codec::nlri`).
//!
//! Layout: this file holds the public API and the send order; `family` the per-family route
//! tables and UPDATE framing, generic over the address family (one implementation of the
//! bookkeeping for IPv4 and IPv6); `attribute_sets` the interned attribute sets and their queue.

mod attribute_sets;
mod family;

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;
use thiserror::Error;

use self::attribute_sets::{AttributeSets, encode_blocks};
use self::family::{Entry, FamilyTables, Ipv4Key, Ipv6Key, Previous, RouteKey};
use crate::codec::update::put_end_of_rib;
use crate::codec::{
    EncodeContext, EncodeError, Family, Message, PathAttributes, RouteRefresh, RouteRefreshSubtype,
    encode_message,
};
use crate::session::Negotiated;

/// Attribute-set index meaning "withdrawn".
const NO_ATTRIBUTES: u32 = u32::MAX;

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
    tables: FamilyTables,
    sets: AttributeSets,
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
        self.tables.ipv4.routes.reserve(ipv4);
        self.tables.ipv6.routes.reserve(ipv6);
    }

    /// Number of routes (announced or pending announcement).
    #[must_use]
    pub fn len(&self) -> usize {
        self.sets.routes()
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
        fn table<K>(table: &family::FamilyTable<K>) -> usize {
            let key = std::mem::size_of::<K>();
            table.routes.capacity() * (key + std::mem::size_of::<Entry>() + 1)
                + table.withdrawals.capacity() * key
        }
        table(&self.tables.ipv4) + table(&self.tables.ipv6) + self.sets.memory_estimate()
    }

    /// Whether anything (routes, End-of-RIB, BoRR/EoRR) is waiting to be sent.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        let Some(sending) = &self.sending else {
            return false;
        };
        !self.tables.ipv4.withdrawals.is_empty()
            || !self.tables.ipv6.withdrawals.is_empty()
            || self.sets.has_queued()
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
        match prefix {
            IpNet::V4(net) => self.announce_key(Ipv4Key::from(&net), attributes),
            IpNet::V6(net) => self.announce_key(Ipv6Key::from(&net), attributes),
        }
    }

    fn announce_key<K: RouteKey>(
        &mut self,
        key: K,
        attributes: &Arc<PathAttributes>,
    ) -> Result<(), RibError> {
        let four_octet_as = self
            .sending
            .as_ref()
            .is_none_or(|sending| sending.four_octet_as);
        let id = self.sets.intern(attributes, K::FAMILY, four_octet_as)?;
        let active = self.family_active(K::FAMILY);
        if let Some(previous) = K::table(&mut self.tables).announce(key, id, active, &mut self.sets)
        {
            self.sets.reference(id);
            self.leave(previous);
        }
        Ok(())
    }

    /// Withdraws `prefix` (no-op when absent).
    pub fn withdraw(&mut self, prefix: IpNet) {
        match prefix {
            IpNet::V4(net) => self.withdraw_key(Ipv4Key::from(&net)),
            IpNet::V6(net) => self.withdraw_key(Ipv6Key::from(&net)),
        }
    }

    fn withdraw_key<K: RouteKey>(&mut self, key: K) {
        let active = self.family_active(K::FAMILY);
        if let Some(previous) = K::table(&mut self.tables).withdraw(key, active) {
            self.leave(previous);
        }
    }

    fn leave(&mut self, (id, was_queued): Previous) {
        self.sets.leave(id, was_queued);
    }

    /// Withdraws every route; the withdrawals go out in ascending prefix order per family.
    pub fn withdraw_all(&mut self) {
        let active = self.family_active(Family::Ipv4Unicast);
        self.tables.ipv4.withdraw_all(active, &mut self.sets);
        let active = self.family_active(Family::Ipv6Unicast);
        self.tables.ipv6.withdraw_all(active, &mut self.sets);
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
        self.sets.encode_for(negotiated.four_octet_as);
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
        self.sets.clear_pending();
        self.tables.ipv4.forget_sent_state();
        self.tables.ipv6.forget_sent_state();
    }

    fn reset_pending(&mut self) {
        self.sets.clear_pending();
        self.tables.ipv4.clear_withdrawals();
        self.tables.ipv6.clear_withdrawals();
    }

    /// Marks every route of `family` for sending and queues it.
    fn requeue_family(&mut self, family: Family) {
        match family {
            Family::Ipv4Unicast => self.tables.ipv4.requeue(&mut self.sets),
            Family::Ipv6Unicast => self.tables.ipv6.requeue(&mut self.sets),
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
        let max_message_len = sending.max_message_len;
        if !self.tables.ipv4.withdrawals.is_empty() {
            (self.tables.ipv4).pack_withdrawals(max_message_len, out, &mut self.counters);
            if out.len() > start {
                return true;
            }
        }
        if !self.tables.ipv6.withdrawals.is_empty() {
            (self.tables.ipv6).pack_withdrawals(max_message_len, out, &mut self.counters);
            if out.len() > start {
                return true;
            }
        }
        while self.sets.has_queued() {
            let written = self.pack_announcements(max_message_len, out);
            self.sets.dequeue_if_drained();
            if written {
                return true;
            }
        }
        if !self.tables.ipv4.withdrawals.is_empty() || !self.tables.ipv6.withdrawals.is_empty() {
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

    /// Packs one UPDATE of pending announcements of the first queued slot (IPv4 first, then
    /// IPv6); false when nothing was written.
    fn pack_announcements(&mut self, max_message_len: usize, out: &mut BytesMut) -> bool {
        let Some((id, slot)) = self.sets.front() else {
            return false;
        };
        let counters = &mut self.counters;
        (self.tables.ipv4).pack_announcements(id, slot, max_message_len, out, counters)
            || (self.tables.ipv6).pack_announcements(id, slot, max_message_len, out, counters)
    }

    fn put_refresh(&mut self, family: Family, subtype: RouteRefreshSubtype, out: &mut BytesMut) {
        let message = Message::RouteRefresh(RouteRefresh::new(family, subtype));
        if let Ok(bytes) = encode_message(&message, &EncodeContext::default()) {
            out.put_slice(&bytes);
        }
    }
}

/// Whether routes of `family` can be announced with `attributes`: the check
/// [`AdjRibOut::announce`] makes, without an Adj-RIB-Out (for counting routes that never can
/// be sent to a peer).
///
/// # Errors
///
/// [`RibError`] when the attribute set lacks the family's next hop or cannot be encoded.
pub fn check_encodable(attributes: &PathAttributes, family: Family) -> Result<(), RibError> {
    let blocks = encode_blocks(attributes, true)?;
    if blocks[slot_index(family)].is_some() {
        Ok(())
    } else {
        Err(RibError::MissingNextHop(family))
    }
}

/// After an initial sync the drained pending list of a large table would keep its capacity
/// (8-32 octets per route); give it back.
fn release_if_large<T>(list: &mut VecDeque<T>) {
    if list.capacity() > 4096 {
        *list = VecDeque::new();
    }
}

#[cfg(test)]
mod tests;
