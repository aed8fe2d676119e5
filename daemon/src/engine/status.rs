//! The peers' reports ("Established", "publication N sent", as messages) handed to the core and
//! turned into readiness at once; their snapshots (counters, session states) folded into the
//! metrics every `STATUS_INTERVAL`.
//!
//! Must not touch: the core's decisions (it only reports what each peer has sent).

use std::time::Instant;

use tracing::{info, warn};

use super::Engine;
use super::core::{Event, PeerSync};
use crate::metrics::{
    Direction as MetricDirection, FAMILY_IPV4_UNICAST, FAMILY_IPV6_UNICAST, SessionState,
};
use crate::peer::{PeerReport, PeerStatus};

fn session_state_metric(state: &str) -> SessionState {
    match state {
        "Connect" => SessionState::Connect,
        "Active" => SessionState::Active,
        "OpenSent" => SessionState::OpenSent,
        "OpenConfirm" => SessionState::OpenConfirm,
        "Established" => SessionState::Established,
        _ => SessionState::Idle,
    }
}

impl Engine {
    pub(super) fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.peers
            .values()
            .map(|peer| peer.status.borrow().clone())
            .collect()
    }

    /// A peer task reported a session change or a publication sent: the core decides what
    /// that allows (an address unbind), and readiness is evaluated at once.
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
        // Readiness and the metrics follow the report at once: a scrape right after a session
        // came up (or a publication went out) must not show the state of up to
        // `STATUS_INTERVAL` ago while `/ready` already shows the new one.
        self.refresh_status();
    }

    /// Readiness (`[readiness]`: enough peers hold the running generation; see
    /// `readiness.rs`) from the peers' statuses.
    fn update_readiness(&mut self, statuses: &[PeerStatus]) {
        let generation = self.running.meta.generation;
        let state = crate::readiness::evaluate(&self.config.readiness, generation, statuses);
        self.metrics.set_readiness(state.ready, state.holding);
        let reason = state.reason.clone();
        if self.readiness.set(state) {
            if self.readiness.is_ready() {
                info!(generation, %reason, "ready");
            } else {
                warn!(generation, %reason, "not ready any more");
            }
        }
    }

    /// Folds the peers' snapshots (counters, session states) into the metrics and re-evaluates
    /// readiness, every `STATUS_INTERVAL` (the peers' reports re-evaluate it at once too).
    pub(super) fn refresh_status(&mut self) {
        let started = Instant::now();
        let generation = self.running.meta.generation;
        let mut statuses = Vec::with_capacity(self.peers.len());
        for (name, handle) in &self.peers {
            let mut status = handle.status.borrow().clone();
            if handle.task.is_finished() {
                // A peer task that ended (it should not) holds no session, whatever its last
                // published status said: readiness and metrics must not count it.
                status.established = false;
                status.generation_synced = None;
                status.state = "task ended".into();
            }
            self.metrics
                .set_routes_unencodable(name, status.routes_unencodable);
            self.metrics
                .set_session_state(name, session_state_metric(&status.state));
            self.metrics
                .set_routes_desired(name, FAMILY_IPV4_UNICAST, status.routes_desired_ipv4);
            self.metrics
                .set_routes_desired(name, FAMILY_IPV6_UNICAST, status.routes_desired_ipv6);
            let synced = status.generation_synced == Some(generation);
            let announced = |routes: u64| if status.established { routes } else { 0 };
            self.metrics.set_routes_announced(
                name,
                FAMILY_IPV4_UNICAST,
                announced(if synced {
                    status.routes_desired_ipv4
                } else {
                    0
                }),
            );
            self.metrics.set_routes_announced(
                name,
                FAMILY_IPV6_UNICAST,
                announced(if synced {
                    status.routes_desired_ipv6
                } else {
                    0
                }),
            );
            let previous = self.reported.get(name).cloned().unwrap_or_default();
            let sent_announced = status
                .prefixes_announced_sent
                .saturating_sub(previous.prefixes_announced_sent);
            let sent_withdrawn = status
                .prefixes_withdrawn_sent
                .saturating_sub(previous.prefixes_withdrawn_sent);
            let sent_updates = status.updates_sent.saturating_sub(previous.updates_sent);
            if sent_updates > 0 || sent_announced > 0 || sent_withdrawn > 0 {
                self.metrics.count_updates(
                    name,
                    MetricDirection::Sent,
                    sent_updates,
                    sent_announced,
                    sent_withdrawn,
                );
            }
            let received_updates = status
                .updates_received
                .saturating_sub(previous.updates_received);
            let received_announced = (status.prefixes_received_ipv4
                + status.prefixes_received_ipv6)
                .saturating_sub(previous.prefixes_received_ipv4 + previous.prefixes_received_ipv6);
            let received_withdrawn = status
                .withdrawals_received
                .saturating_sub(previous.withdrawals_received);
            if received_updates > 0 {
                self.metrics.count_updates(
                    name,
                    MetricDirection::Received,
                    received_updates,
                    received_announced,
                    received_withdrawn,
                );
            }
            statuses.push(status.clone());
            self.reported.insert(name.clone(), status);
        }
        self.update_readiness(&statuses);
        self.metrics
            .observe_reconcile(started.elapsed().as_secs_f64());
    }
}
