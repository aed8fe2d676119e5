//! How a peer's session stops: at once (graceful restart keeps the routes at the peer), or,
//! with `withdraw_first`, after every route is withdrawn and the peer has applied the
//! withdrawals ([`StopFence`]: a route refresh whose EoRR can only come after them), then a
//! Cease. Part of the peer driver (`peer.rs`), split out as the stop's own concern.
//!
//! Must not touch: the session's protocol decisions (the sans-IO `Session` makes them).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use topologyd_bgp::Input;
use topologyd_bgp::codec::Family as WireFamily;
use tracing::{info, warn};

use super::PeerDriver;

/// How long a stop waits for the peer's EoRRs (the fence of [`StopFence`]) before its Cease.
const STOP_FENCE_LIMIT: Duration = Duration::from_secs(5);
/// What a stop keeps of its grace time for the Cease and the close after the fence.
const STOP_MARGIN: Duration = Duration::from_secs(1);

/// A processing fence before a stop's Cease. A peer that is sent a Cease right behind a table
/// of withdrawals may take the session down before it has applied them all (OpenBGPD's session
/// engine reads ahead of its route engine), and then removes the rest by flushing the session,
/// several times slower than it applies withdrawals. A peer answers messages in order, so its
/// answer to a route refresh request — with enhanced route refresh (RFC 7313), a BoRR and an
/// EoRR even when it has nothing to send — comes after every withdrawal before the request.
/// Bounded by [`STOP_FENCE_LIMIT`] and by the stop's grace time (less [`STOP_MARGIN`] for the
/// Cease and the close); a session without (enhanced) route refresh stops at once.
#[derive(Debug)]
pub(super) struct StopFence {
    /// EoRRs still to come per family: the fence's own request and any earlier one in flight.
    pub(super) awaiting: BTreeMap<WireFamily, u32>,
    pub(super) until: Instant,
}

impl PeerDriver {
    pub(super) fn on_command_shutdown(&mut self, withdraw_first: bool) {
        self.connecting = None;
        self.idle_timers.clear();
        self.parked = None;
        if self.stopping.is_none() {
            let (done, _) = oneshot::channel();
            self.stopping = Some(done);
        }
        if withdraw_first && self.is_established() {
            // The withdrawals are pulled like any UPDATE (below the output high-water mark), so
            // encoding overlaps with the peer reading them; the Cease follows the last one
            // (`stop_when_withdrawn`).
            self.rib.withdraw_all();
            self.withdrawing_then_stop = true;
        } else if let Some(connection) = self.connection.as_mut() {
            // No NOTIFICATION: the peer keeps our routes as stale (RFC 4724 §4.2).
            connection.closing = true;
            connection.discard_queue();
        }
        self.idle_session = None;
    }

    /// Asks the peer for a route refresh of `family`, counting it while an EoRR can answer it.
    pub(super) fn request_route_refresh(&mut self, family: WireFamily) {
        if self.is_established()
            && self
                .fence_families
                .as_ref()
                .is_some_and(|families| families.contains(&family))
        {
            *self.refresh_outstanding.entry(family).or_insert(0) += 1;
        }
        self.feed(Input::RequestRouteRefresh(family), false);
    }

    /// After a stop with `withdraw_first`: once every withdrawal is in the output buffer (or
    /// the session is gone), stop the session with a Cease; it is written after them.
    pub(super) fn stop_when_withdrawn(&mut self) {
        if self.withdrawing_then_stop && !(self.is_established() && self.rib.has_pending()) {
            self.withdrawing_then_stop = false;
            let now = Instant::now();
            let until = self
                .stop_deadline
                .map_or(now + STOP_FENCE_LIMIT, |deadline| {
                    (now + STOP_FENCE_LIMIT).min(deadline.checked_sub(STOP_MARGIN).unwrap_or(now))
                });
            match self.fence_families.clone() {
                Some(families) if self.is_established() && !families.is_empty() && until > now => {
                    for family in &families {
                        self.request_route_refresh(*family);
                    }
                    info!(peer = %self.spec.name, ?families, "stop: every withdrawal written; the Cease waits for the peer's EoRR (route refresh as a fence)");
                    self.stop_fence = Some(StopFence {
                        awaiting: families
                            .iter()
                            .map(|family| {
                                (
                                    *family,
                                    self.refresh_outstanding.get(family).copied().unwrap_or(1),
                                )
                            })
                            .collect(),
                        until,
                    });
                }
                _ => self.feed(Input::ManualStop, false),
            }
        }
        let fence_passed = self.stop_fence.as_ref().is_some_and(|fence| {
            fence.awaiting.is_empty() || Instant::now() >= fence.until || !self.is_established()
        });
        if fence_passed {
            if let Some(fence) = self.stop_fence.take() {
                if fence.awaiting.is_empty() {
                    info!(peer = %self.spec.name, "stop: the peer answered with its EoRR; sending the Cease");
                } else {
                    warn!(peer = %self.spec.name, awaiting = ?fence.awaiting, "stop: no EoRR from the peer in time; sending the Cease");
                }
            }
            self.feed(Input::ManualStop, false);
        }
    }
}
