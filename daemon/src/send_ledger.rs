//! The account of one connection's output stream: where each queued BGP message ends and which
//! UPDATE counters each queued Adj-RIB-Out chunk carries, against how many octets have been
//! written to the socket. The peer driver (`peer.rs`) asks it whether a write completed a
//! message (RFC 9687 §3: only a message sent restarts the send hold timer), which counters are
//! now written (the "sent" metrics count what reached the socket, never what is only queued),
//! and whether the stream stands at a message boundary (where a NOTIFICATION can still be
//! slipped in before an abort).
//!
//! Pure: offsets and counters only; the octets themselves stay in the driver's buffer.

use std::collections::VecDeque;

use topologyd_bgp::RibCounters;

/// The BGP message header length (RFC 4271 §4.1); octets 16-17 hold the message length.
const HEADER_LENGTH: usize = 19;

/// Offsets are octets since the connection opened.
#[derive(Debug, Default)]
pub struct SendLedger {
    queued: u64,
    written: u64,
    /// Ends of queued messages not yet reached by `written`.
    message_ends: VecDeque<u64>,
    /// The last message end reached by `written`.
    last_message_end: u64,
    /// Counters of queued chunks, credited once the chunk ending at the offset is written.
    counters: VecDeque<(u64, RibCounters)>,
}

impl SendLedger {
    /// Records whole messages appended to the output; `counters` are the UPDATE counts they
    /// carry.
    pub fn queued(&mut self, messages: &[u8], counters: RibCounters) {
        let start = self.queued;
        let mut offset = 0usize;
        while let Some(header) = messages.get(offset..offset + HEADER_LENGTH) {
            let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
            if length < HEADER_LENGTH {
                break;
            }
            offset += length;
            if offset < messages.len() {
                self.message_ends.push_back(start + offset as u64);
            }
        }
        self.queued += messages.len() as u64;
        if !messages.is_empty() {
            self.message_ends.push_back(self.queued);
        }
        if counters.updates > 0 || counters.announced > 0 || counters.withdrawn > 0 {
            self.counters.push_back((self.queued, counters));
        }
    }

    /// `count` more octets were written: whether that completed at least one message, and the
    /// counters of the chunks now fully written.
    pub fn written(&mut self, count: usize) -> (bool, RibCounters) {
        self.written = (self.written + count as u64).min(self.queued);
        let mut message_written = false;
        while let Some(end) = self.message_ends.front().copied()
            && end <= self.written
        {
            self.message_ends.pop_front();
            self.last_message_end = end;
            message_written = true;
        }
        let mut counters = RibCounters::default();
        while let Some((end, chunk)) = self.counters.front().copied()
            && end <= self.written
        {
            self.counters.pop_front();
            counters.updates += chunk.updates;
            counters.announced += chunk.announced;
            counters.withdrawn += chunk.withdrawn;
        }
        (message_written, counters)
    }

    /// Whether the written stream ends exactly after a whole message (or is empty).
    pub fn at_message_boundary(&self) -> bool {
        self.written == self.last_message_end
    }

    /// Everything queued and not written is dropped (never counted).
    pub fn discard(&mut self) {
        self.message_ends.clear();
        self.counters.clear();
        self.queued = self.written;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn message(length: usize) -> Vec<u8> {
        let mut bytes = vec![0xFF; 16];
        bytes.extend(u16::try_from(length).unwrap_or(u16::MAX).to_be_bytes());
        bytes.resize(length, 2);
        bytes
    }

    proptest! {
        /// For any chunks of messages and any way the socket takes the octets: a write reports
        /// progress exactly when it completes a message, the counters credited are exactly
        /// those of the chunks whose last octet is written, and the boundary flag is true
        /// exactly where a message ends.
        #[test]
        fn progress_and_counters_follow_the_octets_written(
            chunks in prop::collection::vec(
                (prop::collection::vec(19usize..300, 1..6), 0u64..50),
                1..20,
            ),
            writes in prop::collection::vec(1usize..700, 1..200),
        ) {
            let mut ledger = SendLedger::default();
            let mut ends = Vec::new();
            let mut chunk_ends = Vec::new();
            let mut total = 0u64;
            for (lengths, announced) in &chunks {
                let mut bytes = Vec::new();
                for length in lengths {
                    bytes.extend(message(*length));
                    ends.push(total + bytes.len() as u64);
                }
                total += bytes.len() as u64;
                let counters = RibCounters {
                    updates: lengths.len() as u64,
                    announced: *announced,
                    ..RibCounters::default()
                };
                chunk_ends.push((total, counters));
                ledger.queued(&bytes, counters);
            }
            let mut written = 0u64;
            let mut credited = RibCounters::default();
            for count in writes {
                let before = written;
                written = (written + count as u64).min(total);
                let (progress, counters) = ledger.written(count);
                let completed = ends.iter().any(|end| *end > before && *end <= written);
                prop_assert_eq!(progress, completed);
                credited.updates += counters.updates;
                credited.announced += counters.announced;
                let expected: (u64, u64) = chunk_ends
                    .iter()
                    .filter(|(end, _)| *end <= written)
                    .fold((0, 0), |sum, (_, chunk)| (sum.0 + chunk.updates, sum.1 + chunk.announced));
                prop_assert_eq!((credited.updates, credited.announced), expected);
                prop_assert_eq!(
                    ledger.at_message_boundary(),
                    written == 0 || ends.contains(&written)
                );
            }
        }
    }

    #[test]
    fn discarded_octets_are_never_counted() {
        let mut ledger = SendLedger::default();
        let mut bytes = message(19);
        bytes.extend(message(40));
        let counters = RibCounters {
            updates: 2,
            announced: 9,
            ..RibCounters::default()
        };
        ledger.queued(&bytes, counters);
        assert_eq!(ledger.written(30), (true, RibCounters::default()));
        assert!(!ledger.at_message_boundary());
        ledger.discard();
        assert_eq!(ledger.written(100), (false, RibCounters::default()));
        ledger.queued(&message(19), RibCounters::default());
        assert_eq!(ledger.written(19), (true, RibCounters::default()));
    }
}
