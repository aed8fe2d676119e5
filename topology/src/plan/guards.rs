//! The guards, judged on the diff (each violation is a typed value naming routes, bindings,
//! services and locations; see the module comment of `plan` for the rules):
//! - G2 ([`undeclared_changes`]): a still-bound route leaving live locations, or moving to
//!   another service, without the intent naming both services;
//! - G3 ([`global_withdrawals`]): one invariant over the announced address space before and
//!   after, whatever the cause;
//! - G4 ([`blast_radius`]): the well-scoped floor, the two shares, and route concentration.
//! - G5 ([`rpki_invalid`]): routes newly announced RPKI-invalid, when VRPs are given, and
//!   routes newly announced RPKI-not-found under their prefix's `rpki = "refuse"`.
//!
//! [`judge`] runs them all into one [`GuardFindings`], the plan's only guard accumulator. Also
//! [`rollback_overrides`], the G3 overrides a rollback carries by itself, and [`rollback_intent`].

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use topologyd_config::{Lifecycle, NotFoundPolicy};

use super::context::Context;
use super::diff::{RouteDiff, find};
use super::{
    CONCENTRATION_FACTOR, CONCENTRATION_MINIMUM, ConcentratedRoute, Guard, GuardViolation, Intent,
    LocationNames, Override, PlanSummary, RpkiSummary, WithdrawalCause, plan,
};
use crate::location_set::LocationSet;
use crate::model::{Route, Topology};
use crate::rpki::{RpkiState, VrpSet};

/// Turns plan location sets into shared name lists, once per distinct set.
struct NameCache<'a> {
    names: &'a [String],
    cache: HashMap<LocationSet, LocationNames>,
}

impl NameCache<'_> {
    fn get(&mut self, set: &LocationSet) -> LocationNames {
        if let Some(names) = self.cache.get(set) {
            return names.clone();
        }
        let names: LocationNames = set
            .iter()
            .map(|index| self.names[index].clone())
            .collect::<Vec<_>>()
            .into();
        self.cache.insert(set.clone(), names.clone());
        names
    }
}

/// What the guards conclude about one diff: the refusals, the figures G4 judged, and the
/// overrides that allowed a global withdrawal (or named nothing). The diff never holds these.
pub(super) struct GuardFindings {
    /// Ordered by guard, then route.
    pub(super) violations: Vec<GuardViolation>,
    pub(super) summary: PlanSummary,
    pub(super) rpki: Option<RpkiSummary>,
    pub(super) global_withdrawals_overridden: Vec<IpNet>,
    pub(super) unused_overrides: Vec<Override>,
}

/// Judges `diffs` with G2, G3 and G4 under `intent`, and with G5 when `vrps` are given.
pub(super) fn judge(
    context: &Context<'_>,
    diffs: &[RouteDiff],
    intent: &Intent,
    vrps: Option<&VrpSet>,
) -> GuardFindings {
    let mut name_cache = NameCache {
        names: &context.universe.names,
        cache: HashMap::new(),
    };
    let mut violations = undeclared_changes(context, diffs, intent, &mut name_cache);
    let mut overridden = Vec::new();
    violations.extend(global_withdrawals(
        context,
        diffs,
        intent,
        &mut name_cache,
        &mut overridden,
    ));
    let (summary, blast_radius) = blast_radius(context, diffs, intent);
    violations.extend(blast_radius);
    let rpki = vrps.map(|vrps| {
        let (invalid, summary) = rpki_invalid(context, vrps, &mut name_cache);
        violations.extend(invalid);
        summary
    });
    violations.sort_by_key(|violation| (violation.guard(), violation.route()));
    let unused_overrides: Vec<Override> = intent
        .overrides
        .iter()
        .filter(|item| match item {
            Override::GlobalWithdrawal(route) => overridden.binary_search(route).is_err(),
            Override::BlastRadius => false,
        })
        .cloned()
        .collect();
    GuardFindings {
        violations,
        summary,
        rpki,
        global_withdrawals_overridden: overridden,
        unused_overrides,
    }
}

/// G2: withdrawing a still-bound route from locations live before and after, or moving a
/// route that stays announced to another service, needs the intent to name the service it
/// leaves and the one it goes to.
fn undeclared_changes(
    context: &Context<'_>,
    diffs: &[RouteDiff],
    intent: &Intent,
    name_cache: &mut NameCache<'_>,
) -> Vec<GuardViolation> {
    let (old, new) = (context.old, context.new);
    let live_both = context.old_live.intersection(&context.new_live);
    let mut violations = Vec::new();
    for diff in diffs {
        let prefix = diff.change.prefix;
        let lost_live = diff.lost.intersection(&live_both);
        if let Some(old_service) = diff.old_service
            && !lost_live.is_empty()
            && let Some(bound) = new.longest_binding_index(&prefix)
        {
            let binding = new.bindings[bound as usize];
            let mut services = vec![old.services[old_service as usize].name.clone()];
            let now = new.services[binding.service as usize].name.clone();
            if !services.contains(&now) {
                services.push(now);
            }
            let missing_intent = missing(intent, &services);
            if !missing_intent.is_empty() {
                violations.push(GuardViolation::UndeclaredWithdrawal {
                    route: prefix,
                    binding: binding.cidr,
                    services,
                    missing_intent,
                    locations: name_cache.get(&lost_live),
                });
                // The service-change check would repeat the same intent request.
                continue;
            }
        }
        if let (Some(before), Some(after)) = (&diff.change.old, &diff.change.new)
            && before.service != after.service
            && diff.kept_live
        {
            let missing_intent = missing(intent, &[before.service.clone(), after.service.clone()]);
            if !missing_intent.is_empty() {
                violations.push(GuardViolation::UndeclaredServiceChange {
                    route: prefix,
                    binding: after.binding,
                    from: before.service.clone(),
                    to: after.service.clone(),
                    missing_intent,
                });
            }
        }
    }
    violations
}

/// Those of `services` the intent does not name.
fn missing(intent: &Intent, services: &[String]) -> Vec<String> {
    services
        .iter()
        .filter(|service| !intent.services.contains(*service))
        .cloned()
        .collect()
}

/// G4 and the plan's counts. G4 judges **reach lost**, not churn: a route moved from some
/// locations to as many others loses nothing, a route drained from four locations loses four
/// pairs. Routes withdrawn from every location (G3 asks for each by name) count only when the
/// change withdraws more than `small_change_routes` of them. Then G4 refuses
/// - when reach is lost at more than one location and either share is exceeded: the reach
///   lost, of the announced route×location pairs; or the announcing locations that each lose
///   (net of what they gain) more than that share of their own routes;
/// - whatever the scope, when a route still announced somewhere is left on less than half of
///   the (at least four) live locations that announced it (concentration).
fn blast_radius(
    context: &Context<'_>,
    diffs: &[RouteDiff],
    intent: &Intent,
) -> (PlanSummary, Option<GuardViolation>) {
    let (old, new) = (context.old, context.new);
    let capacity = context.universe.names.len();
    let mut summary = PlanSummary {
        routes_changed: diffs.len() as u64,
        max_withdrawn_pair_share: old
            .settings
            .max_withdrawn_pair_share
            .min(new.settings.max_withdrawn_pair_share),
        max_affected_location_share: old
            .settings
            .max_affected_location_share
            .min(new.settings.max_affected_location_share),
        small_change_routes: old
            .settings
            .small_change_routes
            .min(new.settings.small_change_routes),
        ..PlanSummary::default()
    };
    // Pairs before, per location. The routes' services are read from their dense copy (4
    // bytes a route, not the route records' tens).
    let mut routes_per_service = vec![0_u64; old.services.len()];
    for (_, chunk) in old.routes.chunks() {
        for service in chunk.services() {
            routes_per_service[*service as usize] += 1;
        }
    }
    let mut announcing_before = LocationSet::empty(capacity);
    let mut pairs_before = vec![0_u64; capacity];
    for (index, count) in routes_per_service.iter().enumerate() {
        if *count > 0 {
            summary.announced_pairs_before += count * context.old_sets[index].len() as u64;
            announcing_before.union_with(&context.old_sets[index]);
            for location in context.old_sets[index].iter() {
                pairs_before[location] += count;
            }
        }
    }
    summary.announcing_locations_before = announcing_before.len() as u64;
    let withdrawn_everywhere = |diff: &RouteDiff| !diff.lost.is_empty() && diff.reach_after == 0;
    summary.withdrawn_everywhere = diffs
        .iter()
        .filter(|diff| withdrawn_everywhere(diff))
        .count() as u64;
    let count_everywhere = summary.withdrawn_everywhere > summary.small_change_routes;
    // Pairs lost and gained, grouped by location set, so that no (route, location) pair is
    // materialised.
    let mut lost_by_set: HashMap<&LocationSet, u64> = HashMap::new();
    let mut gained_by_set: HashMap<&LocationSet, u64> = HashMap::new();
    let mut concentrated = Vec::new();
    for diff in diffs {
        let change = &diff.change;
        summary.announced_pairs += change.announce.len() as u64;
        summary.updated_pairs += change.update.len() as u64;
        for withdrawal in &change.withdrawals {
            summary.withdrawn_pairs += withdrawal.locations.len() as u64;
        }
        if !change.announce.is_empty() {
            *gained_by_set.entry(&change.announce).or_default() += 1;
        }
        if diff.lost.is_empty() {
            continue;
        }
        summary.lost_pairs += diff.lost.len() as u64;
        summary.lost_routes += 1;
        if withdrawn_everywhere(diff) && !count_everywhere {
            continue;
        }
        summary.reach_lost_pairs += diff.reach_before.saturating_sub(diff.reach_after);
        *lost_by_set.entry(&diff.lost).or_default() += 1;
        if diff.live_before >= CONCENTRATION_MINIMUM
            && diff.live_after > 0
            && diff.live_after * CONCENTRATION_FACTOR < diff.live_before
        {
            concentrated.push(ConcentratedRoute {
                route: change.prefix,
                live_before: diff.live_before,
                live_after: diff.live_after,
            });
        }
    }
    let mut net_loss = vec![0_i64; capacity];
    for (set, count) in &lost_by_set {
        for location in set.iter() {
            net_loss[location] += *count as i64;
        }
    }
    for (set, count) in &gained_by_set {
        for location in set.iter() {
            net_loss[location] -= *count as i64;
        }
    }
    summary.locations_losing_routes = net_loss.iter().filter(|loss| **loss > 0).count() as u64;
    summary.locations_hit = net_loss
        .iter()
        .zip(&pairs_before)
        .filter(|(loss, before)| {
            **loss > 0 && **loss as f64 > summary.max_withdrawn_pair_share * **before as f64
        })
        .count() as u64;
    summary.concentrated_routes = concentrated.len() as u64;
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let over_shares = summary.locations_losing_routes > 1
        && (share(summary.reach_lost_pairs, summary.announced_pairs_before)
            > summary.max_withdrawn_pair_share
            || share(summary.locations_hit, summary.announcing_locations_before)
                > summary.max_affected_location_share);
    let violation = ((over_shares || !concentrated.is_empty())
        && !intent.overrides.contains(&Override::BlastRadius))
    .then_some(GuardViolation::BlastRadius {
        withdrawn_pairs: summary.reach_lost_pairs,
        announced_pairs: summary.announced_pairs_before,
        max_withdrawn_pair_share: summary.max_withdrawn_pair_share,
        affected_locations: summary.locations_hit,
        announcing_locations: summary.announcing_locations_before,
        max_affected_location_share: summary.max_affected_location_share,
        lost_routes: summary.lost_routes,
        small_change_routes: summary.small_change_routes,
        locations_losing_routes: summary.locations_losing_routes,
        over_shares,
        concentrated,
    });
    (summary, violation)
}

/// The G3 overrides a rollback from `running` to `target` carries by itself: one per route that
/// G3 would refuse and that `target` does not bind to an active service (its prefix is not
/// onboarded or not advertised there, or its binding belongs to a pending service). Returning to
/// such a generation withdraws them by design: it undoes the onboarding or activation that
/// announced them. Routes `target` still binds to an active service stay refused: a rollback to
/// a generation that would leave them announced nowhere is the incident again.
pub fn rollback_overrides(running: &Topology, target: &Topology) -> Vec<Override> {
    let probe = plan(running, target, &Intent::default());
    probe
        .violations_of(Guard::G3)
        .filter_map(|violation| match violation {
            GuardViolation::GlobalWithdrawal {
                route, bound_to, ..
            } => {
                let active = bound_to.as_ref().is_some_and(|service| {
                    target
                        .service(service)
                        .is_some_and(|service| service.lifecycle == Lifecycle::Active)
                });
                let announced_there = target
                    .prefix_containing(route)
                    .is_some_and(|index| target.prefixes[index].advertise);
                (!active || !announced_there).then_some(Override::GlobalWithdrawal(*route))
            }
            _ => None,
        })
        .collect()
}

/// The intent of a rollback from `running` to `target`, the same wherever a rollback is
/// planned (the daemon's rollback and `topoctl rollback --dry-run`): a rollback deliberately
/// touches every service either generation has, so it names them all (G2) and is allowed past
/// the blast-radius budget (G4); G3 still applies, except to the routes
/// [`rollback_overrides`] lets go.
pub fn rollback_intent(running: &Topology, target: &Topology) -> Intent {
    let mut intent = Intent::default();
    for service in running.services().iter().chain(target.services().iter()) {
        intent = intent.with_service(&service.name);
    }
    for item in rollback_overrides(running, target) {
        intent = intent.with_override(item);
    }
    intent.with_override(Override::BlastRadius)
}

/// The first and last address of `network`, as numbers.
pub(super) fn address_range(network: &IpNet) -> (u128, u128) {
    match network {
        IpNet::V4(network) => (
            u128::from(u32::from(network.network())),
            u128::from(u32::from(network.broadcast())),
        ),
        IpNet::V6(network) => (
            u128::from(network.network()),
            u128::from(network.broadcast()),
        ),
    }
}

/// Whether every address of `prefix` is announced from a live location by some route of the
/// new topology: the route itself, one containing it, or more-specifics that cover it all.
fn covered_after(new: &Topology, new_service_live: &[bool], prefix: &IpNet) -> bool {
    let live = |route: &Route| new_service_live[route.service as usize];
    if let Some(index) = new.route_containing(prefix)
        && live(&new.routes[index])
    {
        return true;
    }
    let (first, last) = address_range(prefix);
    // The first address not yet known to be covered; `None` once past the last address.
    let mut next = Some(first);
    let start = new.routes.partition_point(|route| route.prefix < *prefix);
    for route in new
        .routes
        .iter_from(start)
        .take_while(|route| prefix.contains(&route.prefix))
        .filter(|route| live(route))
    {
        let Some(needed) = next else {
            break;
        };
        let (route_first, route_last) = address_range(&route.prefix);
        if route_first > needed {
            return false;
        }
        next = route_last.checked_add(1).map(|after| after.max(needed));
    }
    next.is_none_or(|needed| needed > last)
}

/// G3, written once over the announced sets before and after: a route announced from at least
/// one live location before the change, some of whose addresses are announced from no live
/// location after it, is refused — whatever caused it (a binding moved to any service, a
/// service made pending or removed, a selector, location states, `advertise = false`, an
/// offboarded prefix, a split length) — unless an override names that exact route. Intent and
/// `blast-radius` never lift it.
fn global_withdrawals(
    context: &Context<'_>,
    diffs: &[RouteDiff],
    intent: &Intent,
    name_cache: &mut NameCache<'_>,
    overridden: &mut Vec<IpNet>,
) -> Vec<GuardViolation> {
    let (old_service_live, new_service_live) =
        (&context.old_service_live, &context.new_service_live);
    let (old, new) = (context.old, context.new);
    let mut violations = Vec::new();
    // Both route lists are sorted: walk them together, so that the common case — the same
    // route announced live after — costs one comparison, not a search. A route chunk both
    // share stays announced live when every service live before is live after.
    let pass_over = context.live_kept_in_place;
    let mut new_routes = new.routes.outside_shared(&old.routes, pass_over).peekable();
    for old_route in old.routes.outside_shared(&new.routes, pass_over) {
        let prefix = old_route.prefix;
        if !old_service_live[old_route.service as usize] {
            continue;
        }
        while new_routes.next_if(|route| route.prefix < prefix).is_some() {}
        let same_route_live = new_routes.peek().is_some_and(|route| {
            route.prefix == prefix && new_service_live[route.service as usize]
        });
        if same_route_live || covered_after(new, new_service_live, &prefix) {
            continue;
        }
        if intent
            .overrides
            .contains(&Override::GlobalWithdrawal(prefix))
        {
            overridden.push(prefix);
            continue;
        }
        let binding = new
            .longest_binding_index(&prefix)
            .map(|index| new.bindings[index as usize]);
        let causes: BTreeSet<WithdrawalCause> = find(diffs, &prefix)
            .map(|index| {
                diffs[index]
                    .change
                    .withdrawals
                    .iter()
                    .map(|withdrawal| withdrawal.cause.clone())
                    .collect()
            })
            .unwrap_or_default();
        let lost = context.old_sets[old_route.service as usize].intersection(&context.old_live);
        violations.push(GuardViolation::GlobalWithdrawal {
            route: prefix,
            service: old.services[old_route.service as usize].name.clone(),
            binding: binding.map(|binding| binding.cidr),
            bound_to: binding.map(|binding| new.services[binding.service as usize].name.clone()),
            causes: causes.into_iter().collect(),
            locations_lost: name_cache.get(&lost),
        });
    }
    violations
}

/// G5: origin validation of every route the new topology announces (at any location). A route
/// that is invalid is refused at the locations that would announce it invalid and did not
/// before — newly announced, or made invalid by the change (another origin, a longer split).
/// One announced invalid before and kept as it is is reported, not refused: refusing it would
/// block every change, the one that fixes it included.
fn rpki_invalid(
    context: &Context<'_>,
    vrps: &VrpSet,
    name_cache: &mut NameCache<'_>,
) -> (Vec<GuardViolation>, RpkiSummary) {
    let (old, new) = (context.old, context.new);
    let empty = LocationSet::empty(context.universe.names.len());
    let mut summary = RpkiSummary {
        vrps: vrps.len(),
        ..RpkiSummary::default()
    };
    let mut violations = Vec::new();
    for route in &new.routes {
        let announced = &context.new_sets[route.service as usize];
        if announced.is_empty() {
            continue;
        }
        let validation = vrps.validate(&route.prefix, route.origin_asn);
        let before = old
            .route_index(&route.prefix)
            .map(|index| &old.routes[index]);
        let announced_before =
            before.map_or(&empty, |before| &context.old_sets[before.service as usize]);
        match validation.state {
            RpkiState::Valid => summary.valid += 1,
            RpkiState::NotFound => {
                summary.not_found += 1;
                match new.prefixes[route.onboarded as usize].rpki {
                    NotFoundPolicy::Allow => {}
                    NotFoundPolicy::Warn => {
                        if announced_before.is_empty() {
                            summary.not_found_new.push(route.prefix);
                        }
                    }
                    NotFoundPolicy::Refuse => {
                        // As for invalid routes: one announced before with the same origin is
                        // refused only where it is new.
                        let newly = match before {
                            Some(before) if before.origin_asn == route.origin_asn => {
                                announced.difference(announced_before)
                            }
                            _ => announced.clone(),
                        };
                        if !newly.is_empty() {
                            violations.push(GuardViolation::RpkiNotFound {
                                route: route.prefix,
                                origin_asn: route.origin_asn,
                                locations: name_cache.get(&newly),
                            });
                        }
                    }
                }
            }
            RpkiState::InvalidOrigin | RpkiState::InvalidLength => {
                summary.invalid += 1;
                // Invalid before with the same origin: the change did not make it so. Another
                // origin (even another invalid one) is a new announcement of the route.
                let invalid_before = before.filter(|before| {
                    before.origin_asn == route.origin_asn
                        && vrps.state(&before.prefix, before.origin_asn).is_invalid()
                });
                let newly = match invalid_before {
                    Some(_) => announced.difference(announced_before),
                    None => announced.clone(),
                };
                if newly.is_empty() {
                    summary.invalid_kept.push(route.prefix);
                } else {
                    violations.push(GuardViolation::RpkiInvalid {
                        route: route.prefix,
                        origin_asn: route.origin_asn,
                        state: validation.state,
                        covering: validation.covering,
                        locations: name_cache.get(&newly),
                    });
                }
            }
        }
    }
    (violations, summary)
}
