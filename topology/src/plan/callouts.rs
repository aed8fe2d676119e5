//! What a reviewer must see first, though no guard refuses it by itself: selector jumps over
//! live and test locations, routes changing hands, routes bound to a pending service, a
//! production service newly at test locations, attribute values one slip from a known one; and
//! the binding changes a plan lists.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use topologyd_config::{Lifecycle, LocationState};

use super::context::Context;
use super::diff::RouteDiff;
use super::{BindingChange, Callout, SELECTOR_JUMP_FACTOR, SELECTOR_JUMP_MINIMUM};
use crate::location_set::LocationSet;
use crate::model::Topology;
use crate::rpki::VrpSet;

pub(super) fn binding_changes(context: &Context<'_>) -> Vec<BindingChange> {
    let (old, new) = (context.old, context.new);
    // The very records of the running generation (a patched compile that moved no binding
    // to another service shares them), each service where it was: nothing to walk.
    let services_in_place = context
        .old_to_new
        .iter()
        .enumerate()
        .all(|(index, new_index)| *new_index == u32::try_from(index).ok());
    if services_in_place && new.bindings.shares_records_with(&old.bindings) {
        return Vec::new();
    }
    let name = |topology: &Topology, service: u32| topology.services[service as usize].name.clone();
    let mut result = Vec::new();
    let (mut old_position, mut new_position) = (0, 0);
    loop {
        match (
            old.bindings.get(old_position),
            new.bindings.get(new_position),
        ) {
            (None, None) => break,
            (Some(left), Some(right)) if left.cidr == right.cidr => {
                old_position += 1;
                new_position += 1;
                if context.old_to_new[left.service as usize] != Some(right.service) {
                    result.push(BindingChange {
                        cidr: left.cidr,
                        old_service: Some(name(old, left.service)),
                        new_service: Some(name(new, right.service)),
                    });
                }
            }
            (Some(left), right) if right.is_none_or(|right| left.cidr < right.cidr) => {
                old_position += 1;
                result.push(BindingChange {
                    cidr: left.cidr,
                    old_service: Some(name(old, left.service)),
                    new_service: None,
                });
            }
            (_, Some(right)) => {
                new_position += 1;
                result.push(BindingChange {
                    cidr: right.cidr,
                    old_service: None,
                    new_service: Some(name(new, right.service)),
                });
            }
            (Some(_), None) => break,
        }
    }
    result
}

/// Locations of `topology` in `state`, as a plan location set.
fn in_state(
    context: &Context<'_>,
    topology: &Topology,
    map: &[usize],
    state: LocationState,
) -> LocationSet {
    let mut set = LocationSet::empty(context.universe.names.len());
    for (index, location) in topology.locations.iter().enumerate() {
        if location.state == state {
            set.insert(map[index]);
        }
    }
    set
}

/// Whether two attribute values are one slip apart: equal but for case, or (for values of at
/// least [`SIMILAR_VALUE_MINIMUM_LENGTH`] characters) one edit or one swap of neighbours apart.
pub(super) fn similar_values(left: &str, right: &str) -> bool {
    if left == right {
        return false;
    }
    if left.to_lowercase() == right.to_lowercase() {
        return true;
    }
    left.chars().count() >= SIMILAR_VALUE_MINIMUM_LENGTH
        && right.chars().count() >= SIMILAR_VALUE_MINIMUM_LENGTH
        && (crate::compile::levenshtein(left, right) == 1 || one_swap_apart(left, right))
}

/// Whether swapping two neighbouring characters of `left` gives `right` (`eruope`, `europe`).
fn one_swap_apart(left: &str, right: &str) -> bool {
    let (left, right): (Vec<char>, Vec<char>) = (left.chars().collect(), right.chars().collect());
    if left.len() != right.len() {
        return false;
    }
    let differing: Vec<usize> = (0..left.len())
        .filter(|&index| left[index] != right[index])
        .collect();
    matches!(differing.as_slice(), [first, second]
        if *second == first + 1 && left[*first] == right[*second] && left[*second] == right[*first])
}

/// Shorter values (country codes, metro codes) are often one edit from another real one, so
/// only a difference in case is called out for them.
pub const SIMILAR_VALUE_MINIMUM_LENGTH: usize = 4;

pub(super) fn callouts(context: &Context<'_>, diffs: &[RouteDiff]) -> Vec<Callout> {
    let mut callouts = Vec::new();
    // Routes changing hands, and routes announced before now bound to a pending service.
    let mut hands: BTreeMap<(String, String), Vec<IpNet>> = BTreeMap::new();
    let mut to_pending: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    for diff in diffs {
        if let (Some(before), Some(after)) = (&diff.change.old, &diff.change.new)
            && before.service != after.service
        {
            hands
                .entry((before.service.clone(), after.service.clone()))
                .or_default()
                .push(diff.change.prefix);
        }
        if let (Some(old_service), Some(new_service)) = (diff.old_service, diff.new_service) {
            let service = &context.new.services[new_service as usize];
            if service.lifecycle == Lifecycle::Pending
                && !context.old_sets[old_service as usize].is_empty()
            {
                to_pending
                    .entry(service.name.clone())
                    .or_default()
                    .push(diff.change.prefix);
            }
        }
    }
    // A topology whose services and locations are the running one's (a change of prefixes
    // or bindings only) has no selector, test location or attribute value to call out.
    if !context.same_definitions {
        selector_callouts(context, &mut callouts);
    }
    for ((from, to), routes) in hands {
        callouts.push(Callout::ServiceChangedHands { from, to, routes });
    }
    for (service, routes) in to_pending {
        callouts.push(Callout::BoundToPendingService { service, routes });
    }
    if !context.same_definitions {
        attribute_callouts(context, &mut callouts);
    }
    callouts
}

/// Selectors that matched far fewer or far more counted locations than before, and production
/// services newly announced at test locations.
fn selector_callouts(context: &Context<'_>, callouts: &mut Vec<Callout>) {
    let names = |set: &LocationSet| -> Vec<String> {
        set.iter()
            .map(|index| context.universe.names[index].clone())
            .collect()
    };
    let old_test = in_state(
        context,
        context.old,
        &context.universe.old_map,
        LocationState::Test,
    );
    let new_test = in_state(
        context,
        context.new,
        &context.universe.new_map,
        LocationState::Test,
    );
    let mut old_counted = context.old_live.clone();
    old_counted.union_with(&old_test);
    let mut new_counted = context.new_live.clone();
    new_counted.union_with(&new_test);
    for (old_index, service) in context.old.services.iter().enumerate() {
        let Some(new_index) = context.old_to_new[old_index] else {
            continue;
        };
        let new_service = &context.new.services[new_index as usize];
        let matched_before = context.universe.map_old(&service.matched);
        let matched_after = context.universe.map_new(&new_service.matched);
        let before = matched_before.intersection(&old_counted);
        let after = matched_after.intersection(&new_counted);
        let (count_before, count_after) = (before.len(), after.len());
        let shrank = count_before >= SELECTOR_JUMP_MINIMUM
            && count_after * SELECTOR_JUMP_FACTOR <= count_before;
        let grew = count_after >= SELECTOR_JUMP_MINIMUM
            && count_before * SELECTOR_JUMP_FACTOR <= count_after;
        if shrank || grew {
            callouts.push(Callout::SelectorJump {
                service: service.name.clone(),
                before: count_before,
                after: count_after,
                fleet: new_counted.len(),
                live_before: matched_before.intersection_len(&context.old_live),
                live_after: matched_after.intersection_len(&context.new_live),
                lost: names(&before.difference(&after)),
                gained: names(&after.difference(&before)),
            });
        }
        // A production service newly announced at test locations.
        let was_production = context.old_sets[old_index].intersection_len(&context.old_live) > 0;
        if was_production && new_service.lifecycle == Lifecycle::Active {
            let newly_at_test = context.new_sets[new_index as usize]
                .intersection(&new_test)
                .difference(&context.old_sets[old_index]);
            if !newly_at_test.is_empty() {
                callouts.push(Callout::ProductionAtTestLocations {
                    service: service.name.clone(),
                    locations: names(&newly_at_test),
                });
            }
        }
    }
}

/// Attribute values the old fleet did not use, one slip from one it did.
fn attribute_callouts(context: &Context<'_>, callouts: &mut Vec<Callout>) {
    type Attribute = fn(&crate::model::Location) -> &str;
    let attributes: [(&str, Attribute); 3] = [
        ("region", |location| location.region.as_str()),
        ("metro", |location| location.metro.as_str()),
        ("country", |location| location.country.as_str()),
    ];
    for (attribute, value_of) in attributes {
        let known: BTreeSet<&str> = context.old.locations.iter().map(value_of).collect();
        if known.is_empty() {
            continue;
        }
        for location in context.new.locations.iter() {
            let value = value_of(location);
            if known.contains(value) {
                continue;
            }
            if let Some(similar) = known.iter().find(|known| similar_values(value, known)) {
                callouts.push(Callout::SimilarAttributeValue {
                    location: location.name.clone(),
                    attribute: attribute.to_string(),
                    value: value.to_string(),
                    similar: (*similar).to_string(),
                });
            }
        }
    }
}

/// Declared ROAs (`roa = { asn, max_length }` on a prefix) that the RPKI does not hold: no VRP
/// covering the prefix names that ASN with at least that max-length.
pub(super) fn declared_roas_not_in_rpki(topology: &Topology, vrps: &VrpSet) -> Vec<Callout> {
    topology
        .prefixes
        .iter()
        .filter_map(|prefix| {
            let roa = prefix.roa?;
            let held = vrps
                .covering(&prefix.cidr)
                .iter()
                .any(|vrp| vrp.asn == roa.asn && vrp.max_length >= roa.max_length);
            (!held).then_some(Callout::DeclaredRoaNotInRpki {
                prefix: prefix.cidr,
                asn: roa.asn,
                max_length: roa.max_length,
            })
        })
        .collect()
}
