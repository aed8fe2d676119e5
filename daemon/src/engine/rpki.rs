//! Route origin validation at run time, pure: [`RpkiBook`] holds the daemon's VRP set (as the
//! RTR task last published it), the RFC 6811 verdict of every route of the running generation at
//! this location (none kept without `[rpki]`: see [`RpkiBook::verdict`]), and which routes the
//! `[rpki] invalid_policy` holds back from the peers.
//!
//! The rules (the policy is [`InvalidPolicy`]):
//! - `keep` (fail static, the default): a route that turns invalid while announced stays
//!   announced (the alarm is the verdict, its log line and the metrics); `withdraw`: it is held
//!   back until it is valid or not found again.
//! - Either way, an invalid route is never newly announced: not when a generation adds it or
//!   it was held back, and not when a drain or a health withdrawal of its service ends (under
//!   `keep` it is held back from then on, until it is valid or not found again).
//! - An empty set (no `[rpki]`, no cache yet, or expired) makes every route not found: nothing
//!   is held back.
//! - A VRP update re-judges only the routes a changed VRP covers (an address-range search in
//!   the sorted routes); a replaced set (reset, expiry, a missed update) re-judges every route.
//!
//! Every change of a route's state or of its holding is returned as a [`RouteRpkiChange`] for
//! the shell to log and audit. Must not touch: the clock, channels, the RTR client.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use topologyd_api::RpkiSyncState;
use topologyd_config::daemon::InvalidPolicy;
use topologyd_rpki::{RpkiState, Vrp, VrpSet};

use crate::announce::LocationRoutes;

/// A VRP set the RTR task published, with where it stands.
#[derive(Debug, Clone)]
pub struct RpkiUpdate {
    pub vrps: Arc<VrpSet>,
    /// The prefixes of the VRPs that changed since the set the book holds; `None`: the whole
    /// set was replaced (every route is judged again).
    pub changed_prefixes: Option<Arc<[IpNet]>>,
    pub sync: RpkiSyncState,
    pub cache: Option<String>,
    pub session_id: Option<u16>,
    pub serial: Option<u32>,
    pub refresh_seconds: u32,
    pub retry_seconds: u32,
    pub expire_seconds: u32,
    /// When the last update completed (unix milliseconds).
    pub updated_unix_ms: Option<u64>,
    pub last_error: Option<String>,
}

impl RpkiUpdate {
    /// Where a book starts: no data yet (`Disabled` without `[rpki]`).
    pub fn initial(sync: RpkiSyncState) -> RpkiUpdate {
        RpkiUpdate {
            vrps: Arc::new(VrpSet::new()),
            changed_prefixes: None,
            sync,
            cache: None,
            session_id: None,
            serial: None,
            refresh_seconds: 0,
            retry_seconds: 0,
            expire_seconds: 0,
            updated_unix_ms: None,
            last_error: None,
        }
    }
}

/// One route's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteVerdict {
    pub prefix: IpNet,
    pub origin_asn: u32,
    pub state: RpkiState,
    /// Every VRP covering the route, sorted.
    pub covering: Vec<Vrp>,
    /// Since when the route has had `state` (unix milliseconds).
    pub since_unix_ms: u64,
    /// Held back from the peers by the policy.
    pub held: bool,
}

/// A route whose state or holding changed (logged and audited by the shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRpkiChange {
    pub prefix: IpNet,
    pub origin_asn: u32,
    pub service: Arc<str>,
    /// `None` for a route the generation just added.
    pub before: Option<RpkiState>,
    pub after: RpkiState,
    pub covering: Vec<Vrp>,
    pub held_before: bool,
    pub held_after: bool,
}

impl RouteRpkiChange {
    /// What happens to the route, in words.
    pub fn action(&self) -> &'static str {
        match (self.held_before, self.held_after, self.after.is_invalid()) {
            (false, true, _) if self.before == Some(self.after) => {
                "held back: not announced again while invalid"
            }
            (false, true, _) => "withdrawn from the peers",
            (true, false, _) => "announced again",
            (true, true, _) => "held back",
            (false, false, true) => "kept announced (invalid_policy keep): alarm",
            (false, false, false) => "announced",
        }
    }
}

/// The daemon's VRP set and every route's verdict against it.
#[derive(Debug)]
pub struct RpkiBook {
    /// `None` without `[rpki]`.
    pub policy: Option<InvalidPolicy>,
    /// The last update (its set is the one routes are judged against).
    pub status: RpkiUpdate,
    /// Parallel to the running generation's `LocationRoutes::routes` (sorted by prefix).
    /// Empty without `[rpki]`: every route would have the same verdict (not found, never
    /// held), and a million routes would hold 56 MB of them; see [`RpkiBook::verdict`].
    pub verdicts: Vec<RouteVerdict>,
    /// When the running generation was last judged (unix milliseconds).
    pub judged_unix_ms: u64,
    /// The prefixes held back (the `verdicts` with `held`).
    pub held: HashSet<IpNet>,
}

/// Whether a route in `state` is held back: `held_before` is whether it was, `new` whether the
/// peers were not sent it before (a route the generation adds).
pub fn held(policy: Option<InvalidPolicy>, state: RpkiState, held_before: bool, new: bool) -> bool {
    match policy {
        None => false,
        Some(_) if !state.is_invalid() => false,
        Some(InvalidPolicy::Withdraw) => true,
        Some(InvalidPolicy::Keep) => held_before || new,
    }
}

/// The indices of the routes of `routes` (sorted by prefix) that `covering` contains.
pub fn covered_routes(routes: &[(IpNet, u32)], covering: &IpNet) -> std::ops::Range<usize> {
    let (low, high) = match covering {
        IpNet::V4(net) => (
            IpNet::V4(Ipv4Net::new(net.network(), 0).unwrap_or_default()),
            IpNet::V4(Ipv4Net::new(net.broadcast(), 32).unwrap_or_default()),
        ),
        IpNet::V6(net) => (
            IpNet::V6(Ipv6Net::new(net.network(), 0).unwrap_or_default()),
            IpNet::V6(Ipv6Net::new(net.broadcast(), 128).unwrap_or_default()),
        ),
    };
    let start = routes.partition_point(|(prefix, _)| *prefix < low);
    let end = routes.partition_point(|(prefix, _)| *prefix <= high);
    start..end.max(start)
}

impl RpkiBook {
    /// A book judging nothing yet; `policy` `None` without `[rpki]`.
    pub fn new(policy: Option<InvalidPolicy>) -> RpkiBook {
        let sync = match policy {
            None => RpkiSyncState::Disabled,
            Some(_) => RpkiSyncState::Connecting,
        };
        RpkiBook {
            policy,
            status: RpkiUpdate::initial(sync),
            verdicts: Vec::new(),
            judged_unix_ms: 0,
            held: HashSet::new(),
        }
    }

    /// The verdict of the running route at `at` (`prefix`, from `origin_asn`): the stored one,
    /// or, when there is none for it (always without `[rpki]`), not found since the generation
    /// was judged.
    pub fn verdict(&self, at: usize, prefix: IpNet, origin_asn: u32) -> Cow<'_, RouteVerdict> {
        match self.verdicts.get(at) {
            Some(verdict) if verdict.prefix == prefix => Cow::Borrowed(verdict),
            _ => Cow::Owned(RouteVerdict {
                prefix,
                origin_asn,
                state: RpkiState::NotFound,
                covering: Vec::new(),
                since_unix_ms: self.judged_unix_ms,
                held: false,
            }),
        }
    }

    /// The VRP set pushes are judged against (G5): only data a cache served, in sync or stale.
    pub fn plan_vrps(&self) -> Option<Arc<VrpSet>> {
        matches!(
            self.status.sync,
            RpkiSyncState::InSync | RpkiSyncState::Stale
        )
        .then(|| Arc::clone(&self.status.vrps))
    }

    /// Judges the routes of a new generation (`routes`); `announced_before` are the routes
    /// of the one it replaces (a route not among them is new). Keeps the verdicts (and their
    /// `since`) of the routes that stay with the same origin; without `[rpki]` keeps none.
    pub fn judge_generation(
        &mut self,
        routes: &LocationRoutes,
        announced_before: &LocationRoutes,
        now_unix_ms: u64,
    ) -> Vec<RouteRpkiChange> {
        self.judged_unix_ms = now_unix_ms;
        if self.policy.is_none() {
            self.verdicts = Vec::new();
            self.held.clear();
            return Vec::new();
        }
        let previous = std::mem::take(&mut self.verdicts);
        let mut changes = Vec::new();
        let mut verdicts = Vec::with_capacity(routes.routes.len());
        for (prefix, index) in routes.routes.iter() {
            // Every route gets a verdict (they stay parallel to `routes.routes`).
            let intent = routes.intent(*index);
            let origin_asn = intent.map_or(0, |intent| intent.origin_asn);
            let kept = previous
                .binary_search_by_key(prefix, |verdict| verdict.prefix)
                .ok()
                .and_then(|at| previous.get(at))
                .filter(|verdict| verdict.origin_asn == origin_asn);
            if let Some(kept) = kept {
                verdicts.push(kept.clone());
                continue;
            }
            let new = announced_before
                .routes
                .binary_search_by_key(prefix, |(prefix, _)| *prefix)
                .ok()
                .and_then(|at| announced_before.routes.get(at))
                .and_then(|(_, index)| announced_before.intent(*index))
                .is_none_or(|before| before.origin_asn != origin_asn);
            let validation = self.status.vrps.validate(prefix, origin_asn);
            let held = held(self.policy, validation.state, false, new);
            let verdict = RouteVerdict {
                prefix: *prefix,
                origin_asn,
                state: validation.state,
                covering: validation.covering,
                since_unix_ms: now_unix_ms,
                held,
            };
            if verdict.state != RpkiState::NotFound || held {
                changes.push(RouteRpkiChange {
                    prefix: *prefix,
                    origin_asn,
                    service: intent.map_or_else(|| Arc::from(""), |intent| intent.service.clone()),
                    before: None,
                    after: verdict.state,
                    covering: verdict.covering.clone(),
                    held_before: false,
                    held_after: held,
                });
            }
            verdicts.push(verdict);
        }
        self.verdicts = verdicts;
        self.rebuild_held();
        changes
    }

    /// A new VRP set: re-judges the routes it may change (`routes` is the running
    /// generation's, which the verdicts are parallel to).
    pub fn update(
        &mut self,
        update: RpkiUpdate,
        routes: &LocationRoutes,
        now_unix_ms: u64,
    ) -> Vec<RouteRpkiChange> {
        let same_set = Arc::ptr_eq(&update.vrps, &self.status.vrps);
        let affected: Vec<usize> = if same_set {
            Vec::new()
        } else {
            match &update.changed_prefixes {
                Some(changed) => {
                    let mut indices: Vec<usize> = changed
                        .iter()
                        .flat_map(|vrp| {
                            covered_routes(&routes.routes, vrp).filter(|index| {
                                routes
                                    .routes
                                    .get(*index)
                                    .is_some_and(|(prefix, _)| vrp.contains(prefix))
                            })
                        })
                        .collect();
                    indices.sort_unstable();
                    indices.dedup();
                    indices
                }
                None => (0..routes.routes.len()).collect(),
            }
        };
        self.status = update;
        let mut changes = Vec::new();
        for index in affected {
            let (Some((prefix, intent_index)), Some(verdict)) =
                (routes.routes.get(index), self.verdicts.get_mut(index))
            else {
                continue;
            };
            let validation = self.status.vrps.validate(prefix, verdict.origin_asn);
            let held = held(self.policy, validation.state, verdict.held, false);
            if validation.state == verdict.state
                && validation.covering == verdict.covering
                && held == verdict.held
            {
                continue;
            }
            if validation.state != verdict.state || held != verdict.held {
                changes.push(RouteRpkiChange {
                    prefix: *prefix,
                    origin_asn: verdict.origin_asn,
                    service: routes
                        .intent(*intent_index)
                        .map_or_else(|| Arc::from(""), |intent| intent.service.clone()),
                    before: Some(verdict.state),
                    after: validation.state,
                    covering: validation.covering.clone(),
                    held_before: verdict.held,
                    held_after: held,
                });
            }
            if validation.state != verdict.state {
                verdict.since_unix_ms = now_unix_ms;
            }
            verdict.state = validation.state;
            verdict.covering = validation.covering;
            if held != verdict.held {
                // Kept in step here: rebuilding it would cost a pass over every route.
                if held {
                    self.held.insert(*prefix);
                } else {
                    self.held.remove(prefix);
                }
            }
            verdict.held = held;
        }
        changes
    }

    fn rebuild_held(&mut self) {
        self.held = self
            .verdicts
            .iter()
            .filter(|verdict| verdict.held)
            .map(|verdict| verdict.prefix)
            .collect();
    }

    /// Removes the held-back routes from `routes`, what the peers are about to be sent.
    /// `published` is what they are sent now: under `keep`, an invalid route is kept only while
    /// the peers hold it, so one that `routes` would announce anew (undrained, back from a
    /// health withdrawal) is held back too, from now until it is valid or not found again.
    /// Returns the routes this newly holds back, for the log and the audit log.
    pub fn hold_back(
        &mut self,
        routes: &mut LocationRoutes,
        published: &LocationRoutes,
    ) -> Vec<RouteRpkiChange> {
        let mut changes = Vec::new();
        if self.policy == Some(InvalidPolicy::Keep) {
            for verdict in &mut self.verdicts {
                if verdict.held || !verdict.state.is_invalid() {
                    continue;
                }
                let sent = |routes: &LocationRoutes| {
                    routes
                        .routes
                        .binary_search_by_key(&verdict.prefix, |(prefix, _)| *prefix)
                        .ok()
                        .and_then(|at| routes.routes.get(at))
                        .map(|(_, index)| *index)
                };
                let (Some(index), None) = (sent(routes), sent(published)) else {
                    continue;
                };
                verdict.held = true;
                self.held.insert(verdict.prefix);
                changes.push(RouteRpkiChange {
                    prefix: verdict.prefix,
                    origin_asn: verdict.origin_asn,
                    service: routes
                        .intent(index)
                        .map_or_else(|| Arc::from(""), |intent| intent.service.clone()),
                    before: Some(verdict.state),
                    after: verdict.state,
                    covering: verdict.covering.clone(),
                    held_before: false,
                    held_after: true,
                });
            }
        }
        if !self.held.is_empty() {
            Arc::make_mut(&mut routes.routes).retain(|(prefix, _)| !self.held.contains(prefix));
        }
        changes
    }
}

#[cfg(test)]
mod tests;
