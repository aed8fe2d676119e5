//! The peer task's side of its status: the snapshot on its status channel (session state,
//! counters written, last error, the publication sent completely) and the [`PeerSynced`]
//! messages it sends the engine when one of those changes. Part of the peer driver
//! (`peer.rs`).
//!
//! Must not touch: the session's protocol decisions, the Adj-RIB-Out's content.

use topologyd_bgp::State;

use super::{PeerDriver, PeerReport, PeerSynced};

/// A sync that wrote at least this many prefixes (a full table at session up or route refresh,
/// a large change) is followed by a trim of the allocator: its send queues and sort buffers
/// are freed, and glibc keeps freed pages mapped (see `crate::memory`).
const TRIM_AFTER_PREFIXES_WRITTEN: u64 = 100_000;

impl PeerDriver {
    pub(super) fn update_synced(&mut self) {
        let flushed = self
            .connection
            .as_ref()
            .is_some_and(|connection| connection.output.is_empty());
        if self.is_established() && flushed && !self.rib.has_pending() && !self.synced {
            self.synced = true;
            let generation = self.applied.generation;
            let version = self.applied.version;
            let counters = self.written;
            self.status.send_modify(|status| {
                status.generation_synced = Some(generation);
                status.version_synced = Some(version);
                status.updates_sent = counters.updates;
                status.prefixes_announced_sent = counters.announced;
                status.prefixes_withdrawn_sent = counters.withdrawn;
            });
            let prefixes_written = counters.announced + counters.withdrawn;
            if prefixes_written.saturating_sub(self.written_at_trim) >= TRIM_AFTER_PREFIXES_WRITTEN
            {
                self.written_at_trim = prefixes_written;
                // Later (other peers may still be sending their own full tables), and merged
                // with any trim already waiting.
                crate::memory::release_free_memory_after(crate::engine::TRIM_AFTER_PUBLISH);
            }
        }
    }

    pub(super) fn is_established(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|connection| connection.session.state() == State::Established)
    }

    pub(super) fn is_established_status(&self) -> bool {
        self.status.borrow().established
    }

    pub(super) fn set_state(&mut self, state: State) {
        self.session_state = state;
        self.status
            .send_modify(|status| status.state = format!("{state:?}"));
    }

    pub(super) fn set_error(&mut self, error: String) {
        self.status
            .send_modify(|status| status.last_error = Some(error));
    }

    pub(super) fn publish_status(&mut self) {
        let counters = self.written;
        self.status.send_if_modified(|status| {
            let changed = status.updates_sent != counters.updates
                || status.prefixes_announced_sent != counters.announced
                || status.prefixes_withdrawn_sent != counters.withdrawn;
            status.updates_sent = counters.updates;
            status.prefixes_announced_sent = counters.announced;
            status.prefixes_withdrawn_sent = counters.withdrawn;
            changed
        });
        self.report_synced();
    }

    /// Tells the engine when the session came up or went down, or a publication was sent
    /// completely.
    pub(super) fn report_synced(&mut self) {
        let synced = {
            let status = self.status.borrow();
            PeerSynced {
                state: self.session_state,
                established: status.established,
                version_synced: status.version_synced,
                generation_synced: status.generation_synced,
            }
        };
        if self.reported != Some(synced) {
            self.reported = Some(synced);
            // The engine gone means the daemon is stopping: nobody to tell.
            let _ = self.reports.sender.send(PeerReport {
                peer: self.spec.name.clone(),
                incarnation: self.reports.incarnation,
                synced,
            });
        }
    }
}
