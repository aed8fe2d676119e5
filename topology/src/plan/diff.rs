//! The diff: one merge walk over the old and new routes (both sorted by prefix) that lists what
//! changes about each route, per location, with the cause of every withdrawal, and records the
//! facts the guards judge (which locations lose the route's addresses, its live reach before and
//! after). It judges nothing itself.

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::context::Context;
use super::{RouteChange, Withdrawal, WithdrawalCause};
use crate::location_set::LocationSet;
use crate::model::Route;

/// One changed route and what the guards need to know about it.
#[derive(Debug)]
pub(super) struct RouteDiff {
    pub(super) change: RouteChange,
    /// The route's service index in the old topology, if it existed.
    pub(super) old_service: Option<u32>,
    /// The route's service index in the new topology, if it exists.
    pub(super) new_service: Option<u32>,
    /// Locations that stop announcing it and announce no overlapping route instead: they
    /// lose its addresses (G2 and G4 count these).
    pub(super) lost: LocationSet,
    /// Live locations announcing it before, and live locations announcing it or an
    /// overlapping route after (G4's concentration).
    pub(super) live_before: u64,
    pub(super) live_after: u64,
    /// Locations announcing it (or overlapping routes covering all of it) before and after,
    /// whatever their state: what G4's reach counts.
    pub(super) reach_before: u64,
    pub(super) reach_after: u64,
    /// Whether a location live before keeps announcing it (G2's service change).
    pub(super) kept_live: bool,
}

/// Every route that changes, in prefix order.
pub(super) fn diff_routes(context: &Context<'_>) -> Vec<RouteDiff> {
    let (old, new) = (context.old, context.new);
    let capacity = context.universe.names.len();
    let empty = LocationSet::empty(capacity);
    let mut diffs = Vec::new();
    // A route chunk both share holds routes that are unchanged when every service is.
    let pass_over = context.services_unchanged_in_place;
    let mut old_routes = old.routes.outside_shared(&new.routes, pass_over).peekable();
    let mut new_routes = new.routes.outside_shared(&old.routes, pass_over).peekable();
    loop {
        let (old_route, new_route) = match (old_routes.peek(), new_routes.peek()) {
            (None, None) => break,
            (Some(left), Some(right)) if left.prefix == right.prefix => {
                (old_routes.next(), new_routes.next())
            }
            (Some(left), Some(right)) if left.prefix < right.prefix => (old_routes.next(), None),
            (Some(_), None) => (old_routes.next(), None),
            (_, Some(_)) => (None, new_routes.next()),
        };
        if let (Some(left), Some(right)) = (old_route, new_route)
            && unchanged(context, left, right)
        {
            continue;
        }
        let old_set = old_route.map_or(&empty, |route| &context.old_sets[route.service as usize]);
        let new_set = new_route.map_or(&empty, |route| &context.new_sets[route.service as usize]);
        let old_announced = old_route.map(|route| context.announced(route, old));
        let new_announced = new_route.map(|route| context.announced(route, new));
        let announce = new_set.difference(old_set);
        let withdrawn = old_set.difference(new_set);
        let update = if old_announced != new_announced {
            old_set.intersection(new_set)
        } else {
            LocationSet::empty(capacity)
        };
        if announce.is_empty() && withdrawn.is_empty() && update.is_empty() {
            continue;
        }
        let Some(prefix) = old_route.or(new_route).map(|route| route.prefix) else {
            continue;
        };
        let mut diff = RouteDiff {
            change: RouteChange {
                prefix,
                old: old_announced,
                new: new_announced,
                announce,
                update,
                withdrawals: Vec::new(),
            },
            old_service: old_route.map(|route| route.service),
            new_service: new_route.map(|route| route.service),
            lost: LocationSet::empty(capacity),
            live_before: old_set.intersection_len(&context.old_live) as u64,
            live_after: 0,
            reach_before: old_set.len() as u64,
            reach_after: new_set.len() as u64,
            kept_live: old_set
                .intersection(new_set)
                .intersection_len(&context.old_live)
                > 0,
        };
        if let Some(old_route) = old_route
            && !withdrawn.is_empty()
        {
            diff.change.withdrawals = withdrawals(context, old_route, new_route, &withdrawn);
            // Locations that announce an overlapping route instead (an aggregate split into
            // more-specifics, or the reverse) lose no addresses.
            let replacement = context.replacement(&prefix);
            diff.lost = withdrawn.difference(&replacement);
            let mut reach_after = new_set.clone();
            reach_after.union_with(&replacement);
            diff.live_after = reach_after.intersection_len(&context.new_live) as u64;
            diff.reach_after = reach_after.len() as u64;
        }
        diffs.push(diff);
    }
    diffs
}

/// Whether a route present on both sides is announced exactly as before: same service (by
/// name) with the same attributes and announcing set, same binding, same origin (read from the
/// routes themselves, which carry their binding's cidr and their prefix's origin).
fn unchanged(context: &Context<'_>, left: &Route, right: &Route) -> bool {
    context.old_to_new[left.service as usize] == Some(right.service)
        && context.service_unchanged[left.service as usize]
        && left.binding_cidr == right.binding_cidr
        && left.origin_asn == right.origin_asn
}

/// The withdrawals of `old_route` from `withdrawn`, grouped by cause: locations whose state
/// changed have that as their cause; the others share the route's.
fn withdrawals(
    context: &Context<'_>,
    old_route: &Route,
    new_route: Option<&Route>,
    withdrawn: &LocationSet,
) -> Vec<Withdrawal> {
    let capacity = context.universe.names.len();
    let shared = context.route_cause(old_route, new_route);
    let mut grouped: BTreeMap<WithdrawalCause, LocationSet> = BTreeMap::new();
    let shared_locations = withdrawn.difference(&context.state_changed);
    if !shared_locations.is_empty() {
        grouped.insert(shared, shared_locations);
    }
    for location in withdrawn.intersection(&context.state_changed).iter() {
        if let Some(from) = context.old_states[location] {
            let cause = WithdrawalCause::LocationStateChanged {
                from,
                to: context.new_states[location],
            };
            grouped
                .entry(cause)
                .or_insert_with(|| LocationSet::empty(capacity))
                .insert(location);
        }
    }
    grouped
        .into_iter()
        .map(|(cause, locations)| Withdrawal { cause, locations })
        .collect()
}

/// The prefix of a diff, for sorted look-ups.
pub(super) fn find(diffs: &[RouteDiff], prefix: &IpNet) -> Option<usize> {
    diffs
        .binary_search_by(|diff| diff.change.prefix.cmp(prefix))
        .ok()
}
