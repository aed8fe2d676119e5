//! The engine shell's RPKI half, thin: starts the RTR client (`topologyd_rpki::rtr`, its own
//! task) on `[rpki] caches`, turns each snapshot it publishes into an [`Event::RpkiUpdated`]
//! for the core (`engine/rpki.rs` judges), logs and audits every route whose RPKI state
//! changed, answers `GET /v1/rpki` and hands the metrics their scrape-time sample.
//!
//! ```text
//!  RTR client task ──watch<RtrSnapshot>──► Engine::on_rtr ──Event::RpkiUpdated──► core
//!                                                 core ──Effect::RouteRpki──► log + audit
//! ```
//!
//! Must not touch: the verdicts and the policy (the core's), the RTR protocol (the rpki crate's).

use std::sync::Arc;

use topologyd_api::{
    RouteRpkiState, RpkiCacheView, RpkiInvalidPolicy, RpkiRouteCounts, RpkiRouteView,
    RpkiSyncState, RpkiView, RpkiVrpView,
};
use topologyd_config::daemon::InvalidPolicy;
use topologyd_rpki::rtr::{CacheEndpoint, RtrHandle, RtrSnapshot, SyncState};
use topologyd_rpki::{RpkiState, Vrp};
use tracing::{error, info, warn};

use super::core::Event;
use super::prepare::PushRpki;
use super::rpki::{RouteRpkiChange, RpkiUpdate};
use super::{Engine, unix_now_ms};
use crate::metrics::RpkiSample;

/// The API's spelling of a route state.
pub fn route_state(state: RpkiState) -> RouteRpkiState {
    match state {
        RpkiState::Valid => RouteRpkiState::Valid,
        RpkiState::InvalidOrigin => RouteRpkiState::InvalidOrigin,
        RpkiState::InvalidLength => RouteRpkiState::InvalidLength,
        RpkiState::NotFound => RouteRpkiState::NotFound,
    }
}

fn vrp_view(vrp: &Vrp) -> RpkiVrpView {
    RpkiVrpView {
        prefix: vrp.prefix,
        max_length: vrp.max_length,
        asn: vrp.asn,
    }
}

fn covering_text(covering: &[Vrp]) -> String {
    if covering.is_empty() {
        return "none".into();
    }
    covering
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long a stopped RTR client waits before it is started again (no busy loop if it keeps
/// stopping at once).
pub const RTR_RESTART_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// The core's update from the RTR client's snapshot; `seen_version` is the last VRP version
/// handed to the core (`None` or a skipped version: the whole set is judged again).
pub fn update_from_snapshot(
    snapshot: &RtrSnapshot,
    seen_version: Option<u64>,
    now_unix_ms: u64,
) -> RpkiUpdate {
    let follows = seen_version.and_then(|seen| seen.checked_add(1)) == Some(snapshot.vrps_version);
    let changed_prefixes = if follows {
        snapshot.changed_prefixes.clone()
    } else {
        None
    };
    RpkiUpdate {
        vrps: Arc::clone(&snapshot.vrps),
        changed_prefixes,
        sync: match snapshot.state {
            SyncState::Connecting => RpkiSyncState::Connecting,
            SyncState::InSync => RpkiSyncState::InSync,
            SyncState::Stale => RpkiSyncState::Stale,
            SyncState::Expired => RpkiSyncState::Expired,
        },
        cache: snapshot.cache.clone(),
        session_id: snapshot.session_id,
        serial: snapshot.serial,
        refresh_seconds: snapshot.refresh,
        retry_seconds: snapshot.retry,
        expire_seconds: snapshot.expire,
        updated_unix_ms: snapshot.updated.map(|updated| {
            let elapsed = u64::try_from(updated.elapsed().as_millis()).unwrap_or(u64::MAX);
            now_unix_ms.saturating_sub(elapsed)
        }),
        last_error: snapshot.last_error.clone(),
    }
}

/// Waits for the next snapshot of the RTR client (forever without one); false when it stopped.
pub(super) async fn rtr_changed(rtr: &mut Option<RtrHandle>) -> bool {
    match rtr.as_mut() {
        Some(handle) => handle.snapshots.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Starts the RTR client on `[rpki] caches`, if configured.
    pub(super) fn start_rpki(&mut self) {
        let Some(rpki) = &self.config.rpki else {
            return;
        };
        let caches = rpki
            .caches
            .iter()
            .map(|cache| CacheEndpoint {
                address: cache.address.clone(),
                preference: cache.preference,
            })
            .collect();
        match topologyd_rpki::rtr::spawn(caches) {
            Ok(handle) => self.rtr = Some(handle),
            Err(error) => {
                error!(%error, "the RTR client did not start: every route stays not found");
            }
        }
    }

    /// The RTR client's task ended (it should not: a bug or a panic in it). The VRP set it
    /// last served stays, marked stale (so the `rpki` gate and the in-sync metric no longer
    /// count it as current), and the client is started again after [`RTR_RESTART_DELAY`]. The
    /// stale set stays until the new client delivers a set of its own, or until its expire
    /// interval ends ([`Self::rtr_tick`]) — never replaced by the new client's empty start.
    pub(super) async fn rtr_stopped(&mut self) {
        error!(
            restart_in_seconds = RTR_RESTART_DELAY.as_secs(),
            "the RTR client stopped; keeping its last VRP set as stale and starting it again"
        );
        self.rtr = None;
        self.rpki_version_seen = None;
        self.rtr_restart_at = Some(std::time::Instant::now() + RTR_RESTART_DELAY);
        let mut update = self.core.rpki.status.clone();
        if matches!(update.sync, RpkiSyncState::InSync) {
            update.sync = RpkiSyncState::Stale;
            update.changed_prefixes = None;
            update.last_error = Some("the RTR client stopped; it is being started again".into());
            self.handle(Event::RpkiUpdated(Box::new(update))).await;
            self.report_rpki();
        }
    }

    /// On the engine's tick: starts a stopped RTR client again once its delay has passed, and
    /// expires the set a stopped client left once its expire interval has ended with no new
    /// set (RFC 8210 §6: every route is then not found, none is withdrawn).
    pub(super) async fn rtr_tick(&mut self) {
        if self
            .rtr_restart_at
            .is_some_and(|at| std::time::Instant::now() >= at)
        {
            self.rtr_restart_at = None;
            self.start_rpki();
        }
        let status = &self.core.rpki.status;
        let expired = self.rpki_version_seen.is_none()
            && status.sync == RpkiSyncState::Stale
            && status.expire_seconds > 0
            && status.updated_unix_ms.is_some_and(|updated| {
                unix_now_ms().saturating_sub(updated) >= u64::from(status.expire_seconds) * 1_000
            });
        if expired {
            warn!(
                "RTR data expired: the RTR client was restarted and no cache answered within the expire interval"
            );
            let mut update = RpkiUpdate::initial(RpkiSyncState::Expired);
            update.last_error = status.last_error.clone();
            self.handle(Event::RpkiUpdated(Box::new(update))).await;
            self.rpki_families = (0, 0);
            self.report_rpki();
        }
    }

    /// A new snapshot: the core re-judges the routes it may change.
    pub(super) async fn on_rtr(&mut self) {
        let Some(handle) = self.rtr.as_mut() else {
            return;
        };
        let snapshot = handle.snapshots.borrow_and_update().clone();
        if snapshot.vrps_version == 0 && self.core.rpki.status.sync == RpkiSyncState::Stale {
            // A restarted client with no set of its own yet: the stale set stays; only its
            // errors are news.
            let mut update = self.core.rpki.status.clone();
            update.changed_prefixes = None;
            if snapshot.last_error.is_some() {
                update.last_error.clone_from(&snapshot.last_error);
            }
            self.handle(Event::RpkiUpdated(Box::new(update))).await;
            return;
        }
        let update = update_from_snapshot(&snapshot, self.rpki_version_seen, unix_now_ms());
        if update.sync != self.core.rpki.status.sync {
            info!(from = ?self.core.rpki.status.sync, to = ?update.sync, cache = ?update.cache, vrps = update.vrps.len(), "RPKI sync state changed");
        }
        let version_changed = Some(snapshot.vrps_version) != self.rpki_version_seen;
        self.rpki_version_seen = Some(snapshot.vrps_version);
        self.handle(Event::RpkiUpdated(Box::new(update))).await;
        if version_changed {
            // Counted after the verdicts: a small delta reaches the routes first.
            self.rpki_families = vrp_families(&snapshot.vrps);
            self.report_rpki();
        }
    }

    /// Logs and audits one route's change of RPKI state or holding.
    pub(super) fn route_rpki_changed(&self, change: &RouteRpkiChange) {
        let before = change
            .before
            .map_or_else(|| "new".to_owned(), |state| state.to_string());
        let covering = covering_text(&change.covering);
        let action = change.action();
        let (prefix, origin, service) = (change.prefix, change.origin_asn, &change.service);
        if change.after.is_invalid() {
            warn!(%prefix, origin_asn = origin, %service, from = %before, to = %change.after, %covering, action, "route RPKI state changed");
        } else {
            info!(%prefix, origin_asn = origin, %service, from = %before, to = %change.after, %covering, action, "route RPKI state changed");
        }
        let verdict = match change.after {
            RpkiState::Valid => "rpki_valid",
            RpkiState::InvalidOrigin | RpkiState::InvalidLength => "rpki_invalid",
            RpkiState::NotFound => "rpki_not_found",
        };
        self.audit(
            "rpki",
            verdict,
            format!(
                "route {prefix} origin AS{origin} (service {service}): {before} -> {}; covering VRPs: {covering}; {action}",
                change.after
            ),
        );
    }

    /// What G5 judges a push against now.
    pub(super) fn push_rpki(&self) -> PushRpki {
        let book = &self.core.rpki;
        let vrps = book.plan_vrps();
        let skipped = (book.policy.is_some() && vrps.is_none()).then(|| {
            let state = match book.status.sync {
                RpkiSyncState::Expired => "expired (no cache for longer than expire)",
                _ => "not there yet (no cache has answered)",
            };
            format!("the daemon's RPKI data is {state}: the push was not checked against the RPKI")
        });
        PushRpki { vrps, skipped }
    }

    /// `GET /v1/rpki`.
    pub(super) fn rpki_view(&self) -> RpkiView {
        let book = &self.core.rpki;
        let status = &book.status;
        let now = unix_now_ms();
        let published = &self.core.published.routes;
        let announced = |prefix: &ipnet::IpNet| {
            published
                .binary_search_by_key(prefix, |(prefix, _)| *prefix)
                .is_ok()
        };
        let mut counts = RpkiRouteCounts::default();
        let routes: Vec<RpkiRouteView> = self
            .running
            .routes
            .routes
            .iter()
            .enumerate()
            .map(|(at, (prefix, index))| {
                let origin_asn = self
                    .running
                    .routes
                    .intent(*index)
                    .map_or(0, |intent| intent.origin_asn);
                let verdict = book.verdict(at, *prefix, origin_asn);
                count(&mut counts, verdict.state);
                RpkiRouteView {
                    prefix: verdict.prefix,
                    origin_asn: verdict.origin_asn,
                    service: self
                        .running
                        .routes
                        .intent(*index)
                        .map_or_else(String::new, |intent| intent.service.to_string()),
                    state: route_state(verdict.state),
                    covering: verdict.covering.iter().map(vrp_view).collect(),
                    announced: announced(&verdict.prefix),
                    since_unix_ms: verdict.since_unix_ms,
                }
            })
            .collect();
        let (vrps_ipv4, vrps_ipv6) = self.rpki_families;
        let caches = self
            .config
            .rpki
            .as_ref()
            .map(|rpki| {
                let mut caches: Vec<RpkiCacheView> = rpki
                    .caches
                    .iter()
                    .map(|cache| RpkiCacheView {
                        address: cache.address.clone(),
                        preference: cache.preference,
                        serving: status.sync == RpkiSyncState::InSync
                            && status.cache.as_deref() == Some(cache.address.as_str()),
                        last_error: status
                            .last_error
                            .as_ref()
                            .filter(|error| error.contains(cache.address.as_str()))
                            .cloned(),
                    })
                    .collect();
                caches.sort_by_key(|cache| cache.preference);
                caches
            })
            .unwrap_or_default();
        RpkiView {
            enabled: book.policy.is_some(),
            invalid_policy: match book.policy {
                Some(InvalidPolicy::Withdraw) => RpkiInvalidPolicy::Withdraw,
                _ => RpkiInvalidPolicy::Keep,
            },
            sync: status.sync,
            cache: status.cache.clone(),
            caches,
            session_id: status.session_id,
            serial: status.serial,
            last_update_unix_ms: status.updated_unix_ms,
            last_update_age_seconds: status
                .updated_unix_ms
                .map(|updated| now.saturating_sub(updated) / 1000),
            refresh_seconds: status.refresh_seconds,
            retry_seconds: status.retry_seconds,
            expire_seconds: status.expire_seconds,
            vrps_ipv4,
            vrps_ipv6,
            counts,
            routes,
            time_unix_ms: now,
        }
    }

    /// The metrics' sample: the view without its routes, and the invalid routes announced.
    pub(super) fn report_rpki(&self) {
        self.publish_visibility_inputs();
        let book = &self.core.rpki;
        if book.policy.is_none() {
            return;
        }
        let mut counts = RpkiRouteCounts::default();
        for verdict in &book.verdicts {
            count(&mut counts, verdict.state);
        }
        let published = &self.core.published.routes;
        let invalid_announced = book
            .verdicts
            .iter()
            .filter(|verdict| verdict.state.is_invalid())
            .filter(|verdict| {
                published
                    .binary_search_by_key(&verdict.prefix, |(prefix, _)| *prefix)
                    .is_ok()
            })
            .count() as u64;
        let status = &book.status;
        let (vrps_ipv4, vrps_ipv6) = self.rpki_families;
        self.metrics.set_rpki(RpkiSample {
            sync: Some(status.sync),
            caches: self
                .config
                .rpki
                .as_ref()
                .map(|rpki| {
                    rpki.caches
                        .iter()
                        .map(|cache| {
                            let serving = status.cache.as_deref() == Some(cache.address.as_str());
                            (
                                cache.address.clone(),
                                serving && status.sync == RpkiSyncState::InSync,
                                serving
                                    && matches!(
                                        status.sync,
                                        RpkiSyncState::InSync | RpkiSyncState::Stale
                                    ),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            serial: status.serial,
            last_update_unix_ms: status.updated_unix_ms,
            vrps_ipv4,
            vrps_ipv6,
            counts,
            invalid_announced,
        });
    }
}

fn count(counts: &mut RpkiRouteCounts, state: RpkiState) {
    match state {
        RpkiState::Valid => counts.valid += 1,
        RpkiState::InvalidOrigin | RpkiState::InvalidLength => counts.invalid += 1,
        RpkiState::NotFound => counts.not_found += 1,
    }
}

/// VRPs by family (IPv4, IPv6).
fn vrp_families(vrps: &topologyd_rpki::VrpSet) -> (u64, u64) {
    let ipv4 = vrps
        .iter()
        .filter(|vrp| matches!(vrp.prefix, ipnet::IpNet::V4(_)))
        .count() as u64;
    (ipv4, vrps.len() as u64 - ipv4)
}
