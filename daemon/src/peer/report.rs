//! What a peer task tells the engine, as messages: its session state, whether it is
//! Established, which publication it has sent completely, and — from a guard dropped with the
//! task — that it ended. The engine decides readiness and address unbinding from these without
//! polling; the metrics collector reads the task's status channel at scrape time instead.
//!
//! Must not touch: the session, the Adj-RIB-Out, sockets.

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, watch};
use topologyd_bgp::State;

use super::PeerStatus;

/// What a peer task tells the engine, as a message, whenever it changes: its session state,
/// whether it is Established and which publication it has sent completely (and, once, that the
/// task ended). The engine decides readiness and address unbinding from these, without polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSynced {
    /// The session state (RFC 4271 §8.2.2); a change re-evaluates readiness's reason line.
    pub state: State,
    pub established: bool,
    /// The publication ([`crate::announce::LocationRoutes::version`]) whose routes have all
    /// been written.
    pub version_synced: Option<u64>,
    pub generation_synced: Option<u64>,
}

/// A [`PeerSynced`] from one peer task.
#[derive(Debug, Clone)]
pub struct PeerReport {
    pub peer: String,
    /// Which task of the peer sent it (a reset peer's old task may still have reports queued).
    pub incarnation: u64,
    pub synced: PeerSynced,
}

/// Where a peer task sends its [`PeerReport`]s, and which incarnation it is.
#[derive(Debug, Clone)]
pub struct ReportTo {
    pub sender: mpsc::UnboundedSender<PeerReport>,
    pub incarnation: u64,
    /// Where each reconcile pass's duration is recorded (`topologyd_reconcile_duration`).
    pub reconcile_duration: Histogram,
}

/// Whether the task publishing on `status` has ended (its sender is gone): such a peer holds no
/// session, whatever it last published.
pub fn task_ended(status: &watch::Receiver<PeerStatus>) -> bool {
    status.has_changed().is_err()
}

/// Sends the engine a last report when the task ends, however it ends (returned, panicked or
/// aborted). Declared after the status sender in `PeerDriver`, so the channel is already
/// closed ([`task_ended`]) when the report arrives.
pub(super) struct EndReport {
    pub peer: String,
    pub reports: ReportTo,
}

impl Drop for EndReport {
    fn drop(&mut self) {
        // The engine gone means the daemon is stopping: nobody to tell.
        let _ = self.reports.sender.send(PeerReport {
            peer: std::mem::take(&mut self.peer),
            incarnation: self.reports.incarnation,
            synced: PeerSynced {
                state: State::Idle,
                established: false,
                version_synced: None,
                generation_synced: None,
            },
        });
    }
}
