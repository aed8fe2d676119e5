//! The plan's view of two topologies: one location space for both (the [`Universe`]), each
//! service's announcing set in it, the locations' states before and after, and the queries the
//! diff and the guards share (a route's announcement, the cause of its withdrawal, where an
//! overlapping route replaces it).

use ipnet::IpNet;
use topologyd_config::{Lifecycle, LocationState};

use super::WithdrawalCause;
use super::guards::address_range;
use crate::location_set::LocationSet;
use crate::model::{AnnouncedRoute, Route, Topology};

/// Maps one topology's location indices into the plan's location list.
pub(super) struct Universe {
    pub(super) names: Vec<String>,
    pub(super) old_map: Vec<usize>,
    pub(super) new_map: Vec<usize>,
    /// Whether a map is the identity (the universe is that topology's locations).
    old_identity: bool,
    new_identity: bool,
}

impl Universe {
    fn new(old: &Topology, new: &Topology) -> Universe {
        let mut names: Vec<String> = old
            .locations
            .iter()
            .chain(new.locations.iter())
            .map(|location| location.name.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        let position = |name: &str| {
            names
                .binary_search_by(|item| item.as_str().cmp(name))
                .unwrap_or(0)
        };
        let old_map: Vec<usize> = old
            .locations
            .iter()
            .map(|location| position(&location.name))
            .collect();
        let new_map: Vec<usize> = new
            .locations
            .iter()
            .map(|location| position(&location.name))
            .collect();
        let identity = |map: &[usize]| {
            map.len() == names.len() && map.iter().enumerate().all(|(index, to)| index == *to)
        };
        Universe {
            old_identity: identity(&old_map),
            new_identity: identity(&new_map),
            names,
            old_map,
            new_map,
        }
    }

    /// `set`, a set of the old topology's locations, as a set of the universe's.
    pub(super) fn map_old(&self, set: &LocationSet) -> LocationSet {
        self.map(set, &self.old_map, self.old_identity)
    }

    /// `set`, a set of the new topology's locations, as a set of the universe's.
    pub(super) fn map_new(&self, set: &LocationSet) -> LocationSet {
        self.map(set, &self.new_map, self.new_identity)
    }

    fn map(&self, set: &LocationSet, map: &[usize], identity: bool) -> LocationSet {
        // The common case, a push that changes no location: the universe is the topology's
        // own locations, in the same order, and a set is itself (a plan maps thousands).
        if identity && set.sized_for(self.names.len()) {
            return set.clone();
        }
        let mut mapped = LocationSet::empty(self.names.len());
        for index in set.iter() {
            if let Some(target) = map.get(index) {
                mapped.insert(*target);
            }
        }
        mapped
    }
}

pub(super) struct Context<'a> {
    pub(super) old: &'a Topology,
    pub(super) new: &'a Topology,
    pub(super) universe: Universe,
    pub(super) old_sets: Vec<LocationSet>,
    pub(super) new_sets: Vec<LocationSet>,
    pub(super) old_live: LocationSet,
    pub(super) new_live: LocationSet,
    /// Per old service: the new service with the same name, if any.
    pub(super) old_to_new: Vec<Option<u32>>,
    /// Per old service: same name, attributes and announcing set in the new topology.
    pub(super) service_unchanged: Vec<bool>,
    /// Per plan location: its state before and after.
    pub(super) old_states: Vec<Option<LocationState>>,
    pub(super) new_states: Vec<Option<LocationState>>,
    /// Plan locations that existed before and changed state or were removed.
    pub(super) state_changed: LocationSet,
    /// Per service: whether it announces at a live location, before and after.
    pub(super) old_service_live: Vec<bool>,
    pub(super) new_service_live: Vec<bool>,
    /// Every service is unchanged at the same index: a route the two topologies share is
    /// unchanged (the diff passes over their shared route chunks).
    pub(super) services_unchanged_in_place: bool,
    /// Every service live before is live after at the same index: a route the two topologies
    /// share stays announced live (G3 passes over their shared route chunks).
    pub(super) live_kept_in_place: bool,
    /// The two topologies hold the same services and locations (shared by a compile that
    /// changed prefixes or bindings only), with the same live locations: nothing a location
    /// or a service's selector is called out for can differ.
    pub(super) same_definitions: bool,
}

impl<'a> Context<'a> {
    /// Everything the diff and the guards look up, in the plan's location space.
    pub(super) fn new(old: &'a Topology, new: &'a Topology) -> Context<'a> {
        let universe = Universe::new(old, new);
        let old_sets: Vec<LocationSet> = old
            .services
            .iter()
            .map(|service| universe.map_old(&service.announcing))
            .collect();
        // The same services over the same locations (a change of prefixes or bindings only,
        // whose compile shared them with the running generation): each is itself, unchanged.
        let same_services = std::sync::Arc::ptr_eq(&old.services, &new.services)
            && std::sync::Arc::ptr_eq(&old.locations, &new.locations);
        let new_sets: Vec<LocationSet> = if same_services {
            old_sets.clone()
        } else {
            new.services
                .iter()
                .map(|service| universe.map_new(&service.announcing))
                .collect()
        };
        let old_to_new: Vec<Option<u32>> = if same_services {
            (0..old.services.len())
                .map(|index| u32::try_from(index).ok())
                .collect()
        } else {
            old.services
                .iter()
                .map(|service| new.service_index.get(&service.name).copied())
                .collect()
        };
        let service_unchanged: Vec<bool> = if same_services {
            vec![true; old.services.len()]
        } else {
            old.services
                .iter()
                .enumerate()
                .map(|(index, service)| {
                    old_to_new[index].is_some_and(|new_index| {
                        new.services[new_index as usize].attributes == service.attributes
                            && new_sets[new_index as usize] == old_sets[index]
                    })
                })
                .collect()
        };
        let services_unchanged_in_place = old.services.len() == new.services.len()
            && old_to_new.iter().zip(&service_unchanged).enumerate().all(
                |(index, (new_index, unchanged))| *unchanged && *new_index == Some(index as u32),
            );
        let mut old_states = vec![None; universe.names.len()];
        for (index, location) in old.locations.iter().enumerate() {
            old_states[universe.old_map[index]] = Some(location.state);
        }
        let mut new_states = vec![None; universe.names.len()];
        for (index, location) in new.locations.iter().enumerate() {
            new_states[universe.new_map[index]] = Some(location.state);
        }
        let mut state_changed = LocationSet::empty(universe.names.len());
        for (index, (before, after)) in old_states.iter().zip(&new_states).enumerate() {
            if before.is_some() && before != after {
                state_changed.insert(index);
            }
        }
        let old_live = universe.map_old(&old.live);
        let new_live = universe.map_new(&new.live);
        let old_service_live: Vec<bool> = old_sets
            .iter()
            .map(|set| set.intersection_len(&old_live) > 0)
            .collect();
        let new_service_live: Vec<bool> = new_sets
            .iter()
            .map(|set| set.intersection_len(&new_live) > 0)
            .collect();
        let live_kept_in_place = old_service_live.len() == new_service_live.len()
            && old_service_live
                .iter()
                .zip(&new_service_live)
                .all(|(before, after)| !before || *after);
        let same_definitions = same_services && old.live == new.live;
        Context {
            same_definitions,
            state_changed,
            old_live,
            new_live,
            old_service_live,
            new_service_live,
            services_unchanged_in_place,
            live_kept_in_place,
            universe,
            old,
            new,
            old_sets,
            new_sets,
            old_to_new,
            service_unchanged,
            old_states,
            new_states,
        }
    }

    pub(super) fn announced(&self, route: &Route, topology: &Topology) -> AnnouncedRoute {
        topology.desired_route(route).to_announced()
    }

    /// The cause shared by every location losing `route` whose state did not change.
    pub(super) fn route_cause(
        &self,
        old_route: &Route,
        new_route: Option<&Route>,
    ) -> WithdrawalCause {
        let old_binding = self.old.bindings[old_route.binding as usize].cidr;
        let old_service = &self.old.services[old_route.service as usize];
        let Some(new_route) = new_route else {
            return match self.new.prefix_containing(&old_route.prefix) {
                None => WithdrawalCause::PrefixOffboarded,
                Some(index) if !self.new.prefixes[index].advertise => WithdrawalCause::AdvertiseOff,
                Some(_) => WithdrawalCause::AnnounceModeChanged,
            };
        };
        let new_service = &self.new.services[new_route.service as usize];
        let binding_kept = self
            .new
            .longest_binding_index(&old_binding)
            .is_some_and(|index| self.new.bindings[index as usize].cidr == old_binding);
        if !binding_kept {
            WithdrawalCause::BindingRemoved {
                binding: old_binding,
                service: old_service.name.clone(),
            }
        } else if new_service.name != old_service.name {
            WithdrawalCause::BindingMoved {
                binding: self.new.bindings[new_route.binding as usize].cidr,
                from: old_service.name.clone(),
                to: new_service.name.clone(),
            }
        } else if new_service.lifecycle == Lifecycle::Pending
            && old_service.lifecycle == Lifecycle::Active
        {
            WithdrawalCause::ServiceBecamePending {
                service: new_service.name.clone(),
            }
        } else {
            WithdrawalCause::ServiceTopologyChanged {
                service: new_service.name.clone(),
            }
        }
    }

    /// Where the new topology announces, by routes other than `prefix` itself, **every**
    /// address of `prefix`: where a route containing it is announced, or where more-specifics
    /// that together cover all of it are all announced. A location announcing only part of the
    /// addresses replaces nothing (its other addresses are lost there).
    pub(super) fn replacement(&self, prefix: &IpNet) -> LocationSet {
        let capacity = self.universe.names.len();
        if let Some(index) = self.new.route_containing(prefix) {
            let route = &self.new.routes[index];
            return if route.prefix == *prefix {
                LocationSet::empty(capacity)
            } else {
                self.new_sets[route.service as usize].clone()
            };
        }
        // Routes of one topology are disjoint: the more-specifics tile `prefix` only if they
        // leave no gap, and then the locations announcing all of them replace it.
        let (first, last) = address_range(prefix);
        let mut next = Some(first);
        let mut everywhere: Option<LocationSet> = None;
        let start = self
            .new
            .routes
            .partition_point(|route| route.prefix < *prefix);
        for route in self
            .new
            .routes
            .iter_from(start)
            .take_while(|route| prefix.contains(&route.prefix))
        {
            let Some(needed) = next else {
                break;
            };
            let (route_first, route_last) = address_range(&route.prefix);
            if route_first > needed {
                return LocationSet::empty(capacity);
            }
            next = route_last.checked_add(1).map(|after| after.max(needed));
            let set = &self.new_sets[route.service as usize];
            everywhere = Some(match everywhere {
                None => set.clone(),
                Some(so_far) => so_far.intersection(set),
            });
        }
        match (next, everywhere) {
            (next, Some(everywhere)) if next.is_none_or(|needed| needed > last) => everywhere,
            _ => LocationSet::empty(capacity),
        }
    }
}
