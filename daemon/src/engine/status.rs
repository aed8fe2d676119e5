//! The peers' reports (session state, "publication N sent", task ended — as messages) handed to
//! the core and turned into readiness at once. Nothing here is polled: a peer task reports every
//! change that can move readiness, and the metrics are read from the peers' status channels at
//! scrape time (`metrics/collector.rs`), not folded here.
//!
//! Must not touch: the core's decisions (it only reports what each peer has sent), the metrics.

use tracing::{info, warn};

use super::Engine;
use super::core::{Event, PeerSync};
use crate::peer::{PeerReport, PeerStatus, task_ended};

impl Engine {
    /// Each running peer's last published status; a peer whose task ended holds no session,
    /// whatever it last published.
    pub(super) fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|handle| {
                let mut status = handle.status.borrow().clone();
                if task_ended(&handle.status) {
                    status.established = false;
                    status.generation_synced = None;
                    status.state = "task ended".into();
                }
                status
            })
            .collect()
    }

    /// A peer task reported a session change, a publication sent or its end: the core decides
    /// what that allows (an address unbind), and readiness is evaluated at once.
    pub(super) async fn on_peer_report(&mut self, report: PeerReport) {
        let current = self
            .peers
            .get(&report.peer)
            .is_some_and(|handle| handle.incarnation == report.incarnation);
        if !current {
            // From a task already stopped (a reload reset or removed the peer).
            return;
        }
        self.handle(Event::PeerReported {
            peer: report.peer,
            sync: PeerSync {
                established: report.synced.established,
                version_synced: report.synced.version_synced,
            },
        })
        .await;
        // `/ready`, the STATUS= line and `topologyd_ready` follow the report at once.
        self.refresh_readiness();
    }

    /// Readiness (`[readiness]`: enough peers hold the running generation; see
    /// `readiness.rs`) from the peers' statuses: after every peer report, a peer started or
    /// stopped, and a new generation applied.
    pub(super) fn refresh_readiness(&mut self) {
        let generation = self.running.meta.generation;
        let statuses = self.peer_statuses();
        let state = crate::readiness::evaluate(&self.config.readiness, generation, &statuses);
        let reason = state.reason.clone();
        if self.readiness.set(state) {
            if self.readiness.is_ready() {
                info!(generation, %reason, "ready");
            } else {
                warn!(generation, %reason, "not ready any more");
            }
        }
    }
}
