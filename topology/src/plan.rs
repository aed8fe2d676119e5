//! Plans: the difference between two compiled topologies, per route and per location
//! (announce, withdraw with its cause, update), and the guards evaluated on it.
//!
//! Guards (each violation is a [`GuardViolation`] value naming routes, bindings, services and
//! locations):
//! - **G2 — a bound route changes only with intent.** Withdrawing a route from a location that
//!   is live before and after the change, while the route's addresses are still bound to a
//!   service, needs the intent to name the route's old service and its new one (both, when a
//!   binding moved or was removed: the service losing the traffic and the one receiving it must
//!   both be meant). A route that stays announced but moves to another service needs the same.
//!   Locations changing state (draining, going offline) are not G2's business: the state
//!   change is the intent; G3 and G4 still apply.
//! - **G3 — no global withdrawal.** A route announced from at least one live location before the
//!   change, whose addresses are afterwards announced from no live location (by it or an
//!   overlapping route) while still bound to an active service, is refused whatever the intent
//!   unless an override names that route (`global-withdrawal:CIDR`). Un-advertising a prefix
//!   that is still bound is such a change; offboarding it (removing prefix and bindings) is not.
//! - **G4 — blast radius.** Lost (route, location) pairs beyond a share of the announced pairs,
//!   or locations losing any route beyond a share of the announcing locations, are refused
//!   unless overridden (`blast-radius`). The budgets are the stricter of the old and new
//!   topologies' `[settings]` (defaults 10 % and 25 %). A withdrawal is not lost when the same
//!   location announces an overlapping route instead (an aggregate split into more-specifics
//!   or the reverse); G2 does not count those either.
//!
//! Not a guard but shown first: [`Callout`]s for selectors whose match set jumps and for routes
//! that move from one service to another.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topologyd_config::{Lifecycle, LocationState};

use crate::location_set::LocationSet;
use crate::model::{AnnouncedRoute, Route, Topology};

/// Exit code: the plan changes nothing.
pub const EXIT_NO_CHANGE: i32 = 0;
/// Exit code for callers: bad usage or unreadable files (never produced by a plan).
pub const EXIT_USAGE: i32 = 1;
/// Exit code: the plan changes routes and every guard allows it.
pub const EXIT_CHANGES_ALLOWED: i32 = 2;
/// Exit code: a guard refuses the plan.
pub const EXIT_REFUSED: i32 = 3;
/// Exit code: a topology does not compile (no plan could be made).
pub const EXIT_INVALID: i32 = 4;

/// A service whose live match set shrinks to a quarter or less (from at least
/// `SELECTOR_JUMP_MINIMUM` locations), or grows fourfold or more (to at least that many), is
/// called out.
pub const SELECTOR_JUMP_FACTOR: usize = 4;
/// See [`SELECTOR_JUMP_FACTOR`].
pub const SELECTOR_JUMP_MINIMUM: usize = 4;

/// The outcome of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    NoChange,
    ChangesAllowed,
    Refused,
    /// For callers whose topology did not compile; [`plan`] never returns it.
    Invalid,
}

impl Verdict {
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::NoChange => EXIT_NO_CHANGE,
            Verdict::ChangesAllowed => EXIT_CHANGES_ALLOWED,
            Verdict::Refused => EXIT_REFUSED,
            Verdict::Invalid => EXIT_INVALID,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Verdict::NoChange => "no change",
            Verdict::ChangesAllowed => "changes allowed",
            Verdict::Refused => "REFUSED",
            Verdict::Invalid => "invalid",
        })
    }
}

/// An explicit exception to a guard.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// G3: allow this route to be withdrawn from every live location.
    GlobalWithdrawal(IpNet),
    /// G4: allow a change beyond the blast-radius budget.
    BlastRadius,
}

impl fmt::Display for Override {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Override::GlobalWithdrawal(route) => write!(formatter, "global-withdrawal:{route}"),
            Override::BlastRadius => formatter.write_str("blast-radius"),
        }
    }
}

/// An intent or override argument that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntentError {
    #[error("invalid intent `{0}`: expected service:NAME")]
    Intent(String),
    #[error("invalid override `{0}`: expected global-withdrawal:CIDR or blast-radius")]
    Override(String),
}

/// What a change means to do: the services it deliberately affects (G2) and the guard
/// exceptions it asks for (G3, G4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub services: BTreeSet<String>,
    pub overrides: BTreeSet<Override>,
}

impl Intent {
    /// An intent from `--intent` arguments (`service:NAME`) and `--override` arguments.
    pub fn from_arguments(intents: &[String], overrides: &[String]) -> Result<Intent, IntentError> {
        let mut intent = Intent::default();
        for argument in intents {
            intent.parse_arg(argument)?;
        }
        for argument in overrides {
            intent.parse_override(argument)?;
        }
        Ok(intent)
    }

    /// Adds one `--intent` argument: `service:NAME`.
    pub fn parse_arg(&mut self, argument: &str) -> Result<(), IntentError> {
        match argument.split_once(':') {
            Some(("service", name)) if !name.is_empty() => {
                self.services.insert(name.to_string());
                Ok(())
            }
            _ => Err(IntentError::Intent(argument.to_string())),
        }
    }

    /// Adds one `--override` argument: `global-withdrawal:CIDR` or `blast-radius`.
    pub fn parse_override(&mut self, argument: &str) -> Result<(), IntentError> {
        if argument == "blast-radius" {
            self.overrides.insert(Override::BlastRadius);
            return Ok(());
        }
        match argument.split_once(':') {
            Some(("global-withdrawal", cidr)) => {
                let route: IpNet = cidr
                    .parse()
                    .map_err(|_| IntentError::Override(argument.to_string()))?;
                self.overrides
                    .insert(Override::GlobalWithdrawal(route.trunc()));
                Ok(())
            }
            _ => Err(IntentError::Override(argument.to_string())),
        }
    }

    pub fn with_service(mut self, name: &str) -> Intent {
        self.services.insert(name.to_string());
        self
    }

    pub fn with_override(mut self, item: Override) -> Intent {
        self.overrides.insert(item);
        self
    }
}

/// Why a route stops being announced at a location.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WithdrawalCause {
    /// The onboarded prefix was removed.
    PrefixOffboarded,
    /// The prefix now has `advertise = false`.
    AdvertiseOff,
    /// The prefix is announced differently (aggregate / split length), so this route is gone.
    AnnounceModeChanged,
    /// The binding the route came from was removed (a shorter one now decides).
    BindingRemoved { binding: IpNet, service: String },
    /// The route's binding now belongs to another service.
    BindingMoved {
        binding: IpNet,
        from: String,
        to: String,
    },
    /// The route's service became pending.
    ServiceBecamePending { service: String },
    /// The service's topology no longer selects the location (its selector changed, or the
    /// attributes of the location did).
    ServiceTopologyChanged { service: String },
    /// The location changed state (or was removed: `to` is `None`).
    LocationStateChanged {
        from: LocationState,
        to: Option<LocationState>,
    },
}

impl fmt::Display for WithdrawalCause {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WithdrawalCause::PrefixOffboarded => formatter.write_str("prefix offboarded"),
            WithdrawalCause::AdvertiseOff => formatter.write_str("advertise turned off"),
            WithdrawalCause::AnnounceModeChanged => formatter.write_str("announce mode changed"),
            WithdrawalCause::BindingRemoved { binding, service } => {
                write!(formatter, "binding {binding} (`{service}`) removed")
            }
            WithdrawalCause::BindingMoved { binding, from, to } => {
                write!(formatter, "binding {binding} moved from `{from}` to `{to}`")
            }
            WithdrawalCause::ServiceBecamePending { service } => {
                write!(formatter, "service `{service}` became pending")
            }
            WithdrawalCause::ServiceTopologyChanged { service } => {
                write!(
                    formatter,
                    "topology of service `{service}` no longer selects it"
                )
            }
            WithdrawalCause::LocationStateChanged { from, to } => match to {
                Some(to) => write!(formatter, "location state changed from {from} to {to}"),
                None => write!(formatter, "location removed (was {from})"),
            },
        }
    }
}

/// Locations losing a route for one cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    pub cause: WithdrawalCause,
    /// Indices into [`Plan::locations`].
    pub locations: LocationSet,
}

/// Everything that changes about one route. Location sets index [`Plan::locations`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    pub prefix: IpNet,
    /// The route as announced before (absent if it did not exist).
    pub old: Option<AnnouncedRoute>,
    /// The route as announced after (absent if it no longer exists).
    pub new: Option<AnnouncedRoute>,
    /// Locations that start announcing it.
    pub announce: LocationSet,
    /// Locations that keep announcing it with new attributes, binding or service.
    pub update: LocationSet,
    pub withdrawals: Vec<Withdrawal>,
}

impl RouteChange {
    /// All locations that stop announcing it.
    pub fn withdrawn(&self) -> LocationSet {
        let mut all = LocationSet::default();
        for withdrawal in &self.withdrawals {
            all.union_with(&withdrawal.locations);
        }
        all
    }

    /// The service the change is listed under (the new one if any, else the old one).
    pub fn service(&self) -> &str {
        self.new
            .as_ref()
            .or(self.old.as_ref())
            .map_or("", |route| route.service.as_str())
    }
}

/// A binding added, removed, or moved to another service. Bindings more specific than the
/// routes they sit under change no announcement, but they change which service receives the
/// traffic, so plans list them too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingChange {
    pub cidr: IpNet,
    pub old_service: Option<String>,
    pub new_service: Option<String>,
}

/// A sorted list of location names. Violations naming the same locations share one list, so a
/// plan refusing 25,000 routes at 500 locations stays small.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocationNames(Arc<[String]>);

impl LocationNames {
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl Deref for LocationNames {
    type Target = [String];

    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl From<Vec<String>> for LocationNames {
    fn from(names: Vec<String>) -> LocationNames {
        LocationNames(names.into())
    }
}

impl PartialEq<Vec<String>> for LocationNames {
    fn eq(&self, other: &Vec<String>) -> bool {
        self.0.as_ref() == other.as_slice()
    }
}

impl Serialize for LocationNames {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LocationNames {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(deserializer).map(LocationNames::from)
    }
}

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

/// Which guard a violation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Guard {
    G2,
    G3,
    G4,
}

/// A guard refusing (part of) a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum GuardViolation {
    /// G2: a still-bound route is withdrawn from live locations without intent.
    UndeclaredWithdrawal {
        route: IpNet,
        /// The binding that now decides the route's addresses.
        binding: IpNet,
        /// The services the intent must name (old and new).
        services: Vec<String>,
        /// Those of `services` the intent does not name.
        missing_intent: Vec<String>,
        /// Live locations losing the route.
        locations: LocationNames,
    },
    /// G2: a route stays announced but moves to another service without intent.
    UndeclaredServiceChange {
        route: IpNet,
        binding: IpNet,
        from: String,
        to: String,
        missing_intent: Vec<String>,
    },
    /// G3: a route bound to an active service is left announced from no live location.
    GlobalWithdrawal {
        route: IpNet,
        binding: IpNet,
        service: String,
        /// Live locations announcing it before.
        locations_lost: LocationNames,
    },
    /// G4: withdrawals beyond the blast-radius budget.
    BlastRadius {
        withdrawn_pairs: u64,
        announced_pairs: u64,
        max_withdrawn_pair_share: f64,
        affected_locations: u64,
        announcing_locations: u64,
        max_affected_location_share: f64,
    },
}

impl GuardViolation {
    pub fn guard(&self) -> Guard {
        match self {
            GuardViolation::UndeclaredWithdrawal { .. }
            | GuardViolation::UndeclaredServiceChange { .. } => Guard::G2,
            GuardViolation::GlobalWithdrawal { .. } => Guard::G3,
            GuardViolation::BlastRadius { .. } => Guard::G4,
        }
    }

    /// The route named, if the violation is about one.
    pub fn route(&self) -> Option<IpNet> {
        match self {
            GuardViolation::UndeclaredWithdrawal { route, .. }
            | GuardViolation::UndeclaredServiceChange { route, .. }
            | GuardViolation::GlobalWithdrawal { route, .. } => Some(*route),
            GuardViolation::BlastRadius { .. } => None,
        }
    }
}

/// Something a reviewer must see first, though no guard refuses it by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Callout {
    /// A service's live match set shrinks to a quarter or less, or grows fourfold or more.
    SelectorJump {
        service: String,
        live_before: usize,
        live_after: usize,
        live_fleet: usize,
        lost: Vec<String>,
        gained: Vec<String>,
    },
    /// Routes move from one service to another.
    ServiceChangedHands {
        from: String,
        to: String,
        routes: Vec<IpNet>,
    },
}

/// Counts for the summary line and G4.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub routes_changed: u64,
    pub announced_pairs: u64,
    pub withdrawn_pairs: u64,
    /// Withdrawn pairs whose location announces no overlapping route instead: what G4 counts.
    pub lost_pairs: u64,
    pub updated_pairs: u64,
    /// Route×location pairs announced before the change.
    pub announced_pairs_before: u64,
    /// Locations with lost pairs.
    pub locations_losing_routes: u64,
    /// Locations announcing at least one route before the change.
    pub announcing_locations_before: u64,
    pub max_withdrawn_pair_share: f64,
    pub max_affected_location_share: f64,
}

/// The difference between two topologies with the guards' verdict.
#[derive(Debug, Clone)]
pub struct Plan {
    pub old_generation: u64,
    pub new_generation: u64,
    pub old_hash: String,
    pub new_hash: String,
    /// Every location of either topology, sorted; location sets in the plan index this.
    pub locations: Vec<String>,
    pub callouts: Vec<Callout>,
    /// Ordered by prefix.
    pub changes: Vec<RouteChange>,
    /// Ordered by cidr.
    pub binding_changes: Vec<BindingChange>,
    pub violations: Vec<GuardViolation>,
    pub summary: PlanSummary,
    pub intent: Intent,
    verdict: Verdict,
}

/// What one location must do to go from the old topology's routes to the new one's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationDelta {
    pub location: String,
    pub announce: Vec<AnnouncedRoute>,
    pub update: Vec<AnnouncedRoute>,
    pub withdraw: Vec<IpNet>,
}

impl LocationDelta {
    /// Applies the delta to a location's announced routes (keyed by prefix).
    pub fn apply(&self, routes: &mut BTreeMap<IpNet, AnnouncedRoute>) {
        for prefix in &self.withdraw {
            routes.remove(prefix);
        }
        for route in self.announce.iter().chain(&self.update) {
            routes.insert(route.prefix, route.clone());
        }
    }
}

impl Plan {
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    pub fn exit_code(&self) -> i32 {
        self.verdict.exit_code()
    }

    /// Names of the locations in a plan location set.
    pub fn location_names(&self, set: &LocationSet) -> Vec<&str> {
        set.iter()
            .filter_map(|index| self.locations.get(index).map(String::as_str))
            .collect()
    }

    /// The violations of one guard.
    pub fn violations_of(&self, guard: Guard) -> impl Iterator<Item = &GuardViolation> {
        self.violations
            .iter()
            .filter(move |violation| violation.guard() == guard)
    }

    /// What `location` must announce, update and withdraw.
    pub fn delta(&self, location: &str) -> LocationDelta {
        let mut delta = LocationDelta {
            location: location.to_string(),
            ..LocationDelta::default()
        };
        let Ok(index) = self
            .locations
            .binary_search_by(|name| name.as_str().cmp(location))
        else {
            return delta;
        };
        for change in &self.changes {
            if let Some(new) = &change.new {
                if change.announce.contains(index) {
                    delta.announce.push(new.clone());
                }
                if change.update.contains(index) {
                    delta.update.push(new.clone());
                }
            }
            if change
                .withdrawals
                .iter()
                .any(|withdrawal| withdrawal.locations.contains(index))
            {
                delta.withdraw.push(change.prefix);
            }
        }
        delta
    }

    /// The JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }
}

#[derive(Serialize)]
struct WithdrawalView<'a> {
    cause: &'a WithdrawalCause,
    locations: Vec<&'a str>,
}

#[derive(Serialize)]
struct RouteChangeView<'a> {
    prefix: IpNet,
    service: &'a str,
    old: &'a Option<AnnouncedRoute>,
    new: &'a Option<AnnouncedRoute>,
    announce: Vec<&'a str>,
    update: Vec<&'a str>,
    withdrawals: Vec<WithdrawalView<'a>>,
}

#[derive(Serialize)]
struct PlanView<'a> {
    verdict: Verdict,
    exit_code: i32,
    old_generation: u64,
    new_generation: u64,
    old_hash: &'a str,
    new_hash: &'a str,
    intent: &'a Intent,
    summary: &'a PlanSummary,
    callouts: &'a [Callout],
    violations: &'a [GuardViolation],
    changes: Vec<RouteChangeView<'a>>,
    binding_changes: &'a [BindingChange],
}

impl Serialize for Plan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PlanView {
            verdict: self.verdict,
            exit_code: self.exit_code(),
            old_generation: self.old_generation,
            new_generation: self.new_generation,
            old_hash: &self.old_hash,
            new_hash: &self.new_hash,
            intent: &self.intent,
            summary: &self.summary,
            callouts: &self.callouts,
            violations: &self.violations,
            changes: self
                .changes
                .iter()
                .map(|change| RouteChangeView {
                    prefix: change.prefix,
                    service: change.service(),
                    old: &change.old,
                    new: &change.new,
                    announce: self.location_names(&change.announce),
                    update: self.location_names(&change.update),
                    withdrawals: change
                        .withdrawals
                        .iter()
                        .map(|withdrawal| WithdrawalView {
                            cause: &withdrawal.cause,
                            locations: self.location_names(&withdrawal.locations),
                        })
                        .collect(),
                })
                .collect(),
            binding_changes: &self.binding_changes,
        }
        .serialize(serializer)
    }
}

/// Maps one topology's location indices into the plan's location list.
struct Universe {
    names: Vec<String>,
    old_map: Vec<usize>,
    new_map: Vec<usize>,
}

impl Universe {
    fn new(old: &Topology, new: &Topology) -> Universe {
        let mut names: Vec<String> = old
            .locations
            .iter()
            .chain(&new.locations)
            .map(|location| location.name.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        let position = |name: &str| {
            names
                .binary_search_by(|item| item.as_str().cmp(name))
                .unwrap_or(0)
        };
        let old_map = old
            .locations
            .iter()
            .map(|location| position(&location.name))
            .collect();
        let new_map = new
            .locations
            .iter()
            .map(|location| position(&location.name))
            .collect();
        Universe {
            names,
            old_map,
            new_map,
        }
    }

    fn map(&self, set: &LocationSet, map: &[usize]) -> LocationSet {
        let mut mapped = LocationSet::empty(self.names.len());
        for index in set.iter() {
            if let Some(target) = map.get(index) {
                mapped.insert(*target);
            }
        }
        mapped
    }
}

struct Context<'a> {
    old: &'a Topology,
    new: &'a Topology,
    universe: Universe,
    old_sets: Vec<LocationSet>,
    new_sets: Vec<LocationSet>,
    old_live: LocationSet,
    new_live: LocationSet,
    /// Per old service: the new service with the same name, if any.
    old_to_new: Vec<Option<u32>>,
    /// Per old service: same name, attributes and announcing set in the new topology.
    service_unchanged: Vec<bool>,
    /// Per plan location: its state before and after.
    old_states: Vec<Option<LocationState>>,
    new_states: Vec<Option<LocationState>>,
    /// Plan locations that existed before and changed state or were removed.
    state_changed: LocationSet,
}

impl Context<'_> {
    fn announced(&self, route: &Route, topology: &Topology) -> AnnouncedRoute {
        topology.desired_route(route).to_announced()
    }

    /// The cause shared by every location losing `route` whose state did not change.
    fn route_cause(&self, old_route: &Route, new_route: Option<&Route>) -> WithdrawalCause {
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

    /// G3 for a route announced from live locations before: refused if no live location
    /// announces its addresses afterwards while they are still bound to an active service,
    /// unless an override names the route.
    fn global_withdrawal(
        &self,
        old_route: &Route,
        intent: &Intent,
        name_cache: &mut NameCache<'_>,
    ) -> Option<GuardViolation> {
        let prefix = old_route.prefix;
        if self.still_reachable(&prefix)
            || intent
                .overrides
                .contains(&Override::GlobalWithdrawal(prefix))
        {
            return None;
        }
        let binding = self.new.bindings[self.new.longest_binding_index(&prefix)? as usize];
        let service = &self.new.services[binding.service as usize];
        if service.lifecycle != Lifecycle::Active {
            return None;
        }
        let lost = self.old_sets[old_route.service as usize].intersection(&self.old_live);
        Some(GuardViolation::GlobalWithdrawal {
            route: prefix,
            binding: binding.cidr,
            service: service.name.clone(),
            locations_lost: name_cache.get(&lost),
        })
    }

    /// Where the new topology announces routes overlapping `prefix` other than `prefix` itself.
    fn replacement(&self, prefix: &IpNet) -> LocationSet {
        let mut locations = LocationSet::empty(self.universe.names.len());
        let mut add = |route: &Route| {
            if route.prefix != *prefix {
                locations.union_with(&self.new_sets[route.service as usize]);
            }
        };
        if let Some(index) = self.new.route_containing(prefix) {
            add(&self.new.routes[index]);
        }
        let start = self
            .new
            .routes
            .partition_point(|route| route.prefix < *prefix);
        for route in self.new.routes[start..]
            .iter()
            .take_while(|route| prefix.contains(&route.prefix))
        {
            add(route);
        }
        locations
    }

    /// Whether some route of the new topology overlapping `prefix` is announced at a live
    /// location.
    fn still_reachable(&self, prefix: &IpNet) -> bool {
        let live = |route: &Route| {
            self.new.services[route.service as usize]
                .announcing
                .intersection_len(&self.new.live)
                > 0
        };
        if let Some(index) = self.new.route_containing(prefix)
            && live(&self.new.routes[index])
        {
            return true;
        }
        let start = self
            .new
            .routes
            .partition_point(|route| route.prefix < *prefix);
        self.new.routes[start..]
            .iter()
            .take_while(|route| prefix.contains(&route.prefix))
            .any(live)
    }
}

/// Compares `old` and `new` and evaluates the guards under `intent`.
pub fn plan(old: &Topology, new: &Topology, intent: &Intent) -> Plan {
    let universe = Universe::new(old, new);
    let old_sets: Vec<LocationSet> = old
        .services
        .iter()
        .map(|service| universe.map(&service.announcing, &universe.old_map))
        .collect();
    let new_sets: Vec<LocationSet> = new
        .services
        .iter()
        .map(|service| universe.map(&service.announcing, &universe.new_map))
        .collect();
    let old_to_new: Vec<Option<u32>> = old
        .services
        .iter()
        .map(|service| new.service_index.get(&service.name).copied())
        .collect();
    let service_unchanged = old
        .services
        .iter()
        .enumerate()
        .map(|(index, service)| {
            old_to_new[index].is_some_and(|new_index| {
                new.services[new_index as usize].attributes == service.attributes
                    && new_sets[new_index as usize] == old_sets[index]
            })
        })
        .collect();
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
    let context = Context {
        state_changed,
        old_live: universe.map(&old.live, &universe.old_map),
        new_live: universe.map(&new.live, &universe.new_map),
        universe,
        old,
        new,
        old_sets,
        new_sets,
        old_to_new,
        service_unchanged,
        old_states,
        new_states,
    };
    let capacity = context.universe.names.len();
    let empty = LocationSet::empty(capacity);
    let live_both = context.old_live.intersection(&context.new_live);

    let mut changes: Vec<RouteChange> = Vec::new();
    let mut violations: Vec<GuardViolation> = Vec::new();
    let mut hands: BTreeMap<(String, String), Vec<IpNet>> = BTreeMap::new();
    let old_service_live: Vec<bool> = context
        .old_sets
        .iter()
        .map(|set| set.intersection_len(&context.old_live) > 0)
        .collect();
    let new_service_live: Vec<bool> = context
        .new_sets
        .iter()
        .map(|set| set.intersection_len(&context.new_live) > 0)
        .collect();
    let mut effective_withdrawn_pairs = 0_u64;
    let mut name_cache = NameCache {
        names: &context.universe.names,
        cache: HashMap::new(),
    };
    let mut losing = LocationSet::empty(capacity);
    let (mut old_position, mut new_position) = (0, 0);
    loop {
        let old_route = old.routes.get(old_position);
        let new_route = new.routes.get(new_position);
        let (old_route, new_route) = match (old_route, new_route) {
            (None, None) => break,
            (Some(left), Some(right)) if left.prefix == right.prefix => {
                old_position += 1;
                new_position += 1;
                (Some(left), Some(right))
            }
            (Some(left), Some(right)) if left.prefix < right.prefix => {
                old_position += 1;
                (Some(left), None)
            }
            (Some(left), None) => {
                old_position += 1;
                (Some(left), None)
            }
            (_, Some(right)) => {
                new_position += 1;
                (None, Some(right))
            }
        };
        // G3: announced from live locations before, from none after (by this route or an
        // overlapping one), still bound to an active service. Checked before the unchanged
        // fast path: a location changing state can leave a route's announcing set unchanged
        // while it stops being live.
        if let Some(left) = old_route
            && old_service_live[left.service as usize]
            && new_route.is_none_or(|right| !new_service_live[right.service as usize])
            && let Some(violation) = context.global_withdrawal(left, intent, &mut name_cache)
        {
            violations.push(violation);
        }
        if let (Some(left), Some(right)) = (old_route, new_route)
            && context.old_to_new[left.service as usize] == Some(right.service)
            && context.service_unchanged[left.service as usize]
            && old.bindings[left.binding as usize].cidr == new.bindings[right.binding as usize].cidr
            && old.prefixes[left.onboarded as usize].origin_asn
                == new.prefixes[right.onboarded as usize].origin_asn
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
        let prefix = old_route.or(new_route).map_or_else(
            || IpNet::from(std::net::IpAddr::from([0, 0, 0, 0])),
            |route| route.prefix,
        );
        let mut withdrawals: Vec<Withdrawal> = Vec::new();
        if let Some(old_route) = old_route
            && !withdrawn.is_empty()
        {
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
            withdrawals = grouped
                .into_iter()
                .map(|(cause, locations)| Withdrawal { cause, locations })
                .collect();
            // Locations that announce an overlapping route instead (an aggregate split into
            // more-specifics, or the reverse) lose no addresses: G2 and G4 do not count them.
            let lost = withdrawn.difference(&context.replacement(&prefix));
            effective_withdrawn_pairs += lost.len() as u64;
            losing.union_with(&lost);

            // G2: still-bound route leaving live locations.
            let lost_live = lost.intersection(&live_both);
            let bound = new.longest_binding_index(&prefix);
            let mut withdrawal_refused = false;
            if !lost_live.is_empty()
                && let Some(bound) = bound
            {
                let binding = new.bindings[bound as usize];
                let mut services = vec![old.services[old_route.service as usize].name.clone()];
                let now = new.services[binding.service as usize].name.clone();
                if !services.contains(&now) {
                    services.push(now);
                }
                let missing_intent: Vec<String> = services
                    .iter()
                    .filter(|service| !intent.services.contains(*service))
                    .cloned()
                    .collect();
                if !missing_intent.is_empty() {
                    withdrawal_refused = true;
                    violations.push(GuardViolation::UndeclaredWithdrawal {
                        route: prefix,
                        binding: binding.cidr,
                        services,
                        missing_intent,
                        locations: name_cache.get(&lost_live),
                    });
                }
            }
            if withdrawal_refused {
                // The service-change check below would repeat the same intent request.
                if let (Some(before), Some(after)) = (&old_announced, &new_announced)
                    && before.service != after.service
                {
                    hands
                        .entry((before.service.clone(), after.service.clone()))
                        .or_default()
                        .push(prefix);
                }
                changes.push(RouteChange {
                    prefix,
                    old: old_announced,
                    new: new_announced,
                    announce,
                    update,
                    withdrawals,
                });
                continue;
            }
        }
        if let (Some(before), Some(after)) = (&old_announced, &new_announced)
            && before.service != after.service
        {
            hands
                .entry((before.service.clone(), after.service.clone()))
                .or_default()
                .push(prefix);
            let kept_live = old_set
                .intersection(new_set)
                .intersection_len(&context.old_live)
                > 0;
            let missing_intent: Vec<String> = [&before.service, &after.service]
                .into_iter()
                .filter(|service| !intent.services.contains(*service))
                .cloned()
                .collect();
            if kept_live && !missing_intent.is_empty() {
                violations.push(GuardViolation::UndeclaredServiceChange {
                    route: prefix,
                    binding: after.binding,
                    from: before.service.clone(),
                    to: after.service.clone(),
                    missing_intent,
                });
            }
        }
        changes.push(RouteChange {
            prefix,
            old: old_announced,
            new: new_announced,
            announce,
            update,
            withdrawals,
        });
    }

    // G4 and the summary.
    let mut summary = PlanSummary {
        routes_changed: changes.len() as u64,
        max_withdrawn_pair_share: old
            .settings
            .max_withdrawn_pair_share
            .min(new.settings.max_withdrawn_pair_share),
        max_affected_location_share: old
            .settings
            .max_affected_location_share
            .min(new.settings.max_affected_location_share),
        ..PlanSummary::default()
    };
    let mut routes_per_service = vec![0_u64; old.services.len()];
    for route in &old.routes {
        routes_per_service[route.service as usize] += 1;
    }
    let mut announcing_before = LocationSet::empty(capacity);
    for (index, count) in routes_per_service.iter().enumerate() {
        if *count > 0 {
            summary.announced_pairs_before += count * context.old_sets[index].len() as u64;
            announcing_before.union_with(&context.old_sets[index]);
        }
    }
    summary.announcing_locations_before = announcing_before.len() as u64;
    for change in &changes {
        summary.announced_pairs += change.announce.len() as u64;
        summary.updated_pairs += change.update.len() as u64;
        for withdrawal in &change.withdrawals {
            summary.withdrawn_pairs += withdrawal.locations.len() as u64;
        }
    }
    summary.lost_pairs = effective_withdrawn_pairs;
    summary.locations_losing_routes = losing.len() as u64;
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let over_budget = share(summary.lost_pairs, summary.announced_pairs_before)
        > summary.max_withdrawn_pair_share
        || share(
            summary.locations_losing_routes,
            summary.announcing_locations_before,
        ) > summary.max_affected_location_share;
    if over_budget && !intent.overrides.contains(&Override::BlastRadius) {
        violations.push(GuardViolation::BlastRadius {
            withdrawn_pairs: summary.lost_pairs,
            announced_pairs: summary.announced_pairs_before,
            max_withdrawn_pair_share: summary.max_withdrawn_pair_share,
            affected_locations: summary.locations_losing_routes,
            announcing_locations: summary.announcing_locations_before,
            max_affected_location_share: summary.max_affected_location_share,
        });
    }

    violations.sort_by_key(|violation| (violation.guard(), violation.route()));
    let binding_changes = binding_changes(&context);
    let callouts = callouts(&context, hands);
    let verdict = if !violations.is_empty() {
        Verdict::Refused
    } else if changes.is_empty() && binding_changes.is_empty() {
        Verdict::NoChange
    } else {
        Verdict::ChangesAllowed
    };
    Plan {
        old_generation: old.generation,
        new_generation: new.generation,
        old_hash: old.hash_hex(),
        new_hash: new.hash_hex(),
        locations: context.universe.names,
        callouts,
        changes,
        binding_changes,
        violations,
        summary,
        intent: intent.clone(),
        verdict,
    }
}

fn binding_changes(context: &Context<'_>) -> Vec<BindingChange> {
    let (old, new) = (context.old, context.new);
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

fn callouts(context: &Context<'_>, hands: BTreeMap<(String, String), Vec<IpNet>>) -> Vec<Callout> {
    let mut callouts = Vec::new();
    for (old_index, service) in context.old.services.iter().enumerate() {
        let Some(new_index) = context.old_to_new[old_index] else {
            continue;
        };
        let new_service = &context.new.services[new_index as usize];
        let before = context
            .universe
            .map(&service.matched, &context.universe.old_map)
            .intersection(&context.old_live);
        let after = context
            .universe
            .map(&new_service.matched, &context.universe.new_map)
            .intersection(&context.new_live);
        let (count_before, count_after) = (before.len(), after.len());
        let shrank = count_before >= SELECTOR_JUMP_MINIMUM
            && count_after * SELECTOR_JUMP_FACTOR <= count_before;
        let grew = count_after >= SELECTOR_JUMP_MINIMUM
            && count_before * SELECTOR_JUMP_FACTOR <= count_after;
        if shrank || grew {
            let names = |set: &LocationSet| -> Vec<String> {
                set.iter()
                    .map(|index| context.universe.names[index].clone())
                    .collect()
            };
            callouts.push(Callout::SelectorJump {
                service: service.name.clone(),
                live_before: count_before,
                live_after: count_after,
                live_fleet: context.new_live.len(),
                lost: names(&before.difference(&after)),
                gained: names(&after.difference(&before)),
            });
        }
    }
    for ((from, to), routes) in hands {
        callouts.push(Callout::ServiceChangedHands { from, to, routes });
    }
    callouts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use topologyd_config::Source;

    fn topology(states: [&str; 3], split: bool, generation: u64) -> Topology {
        let mut text = String::new();
        for (index, state) in states.iter().enumerate() {
            text += &format!(
                "[[location]]\nname = \"edge{index:02}\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"{state}\"\n"
            );
        }
        text += "[[service]]\nname = \"web\"\ntopology = \"all\"\n";
        text += &format!(
            "[[prefix]]\ncidr = \"192.0.2.0/23\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\nannounce = {}\n",
            if split {
                "{ split = 24 }"
            } else {
                "\"aggregate\""
            }
        );
        text += "[[binding]]\ncidr = \"192.0.2.0/23\"\nservice = \"web\"\n";
        compile(&[Source::new("t.toml", text)], generation).unwrap()
    }

    #[test]
    fn intent_arguments_parse() {
        let mut intent = Intent::default();
        intent.parse_arg("service:dls").unwrap();
        intent
            .parse_override("global-withdrawal:1.1.1.0/24")
            .unwrap();
        intent.parse_override("blast-radius").unwrap();
        assert!(intent.services.contains("dls"));
        assert!(intent.overrides.contains(&Override::BlastRadius));
        assert!(
            intent
                .overrides
                .contains(&Override::GlobalWithdrawal("1.1.1.0/24".parse().unwrap()))
        );
        assert!(intent.parse_arg("dls").is_err());
        assert!(intent.parse_arg("service:").is_err());
        assert!(intent.parse_override("global-withdrawal:nonsense").is_err());
        assert_eq!(Verdict::Refused.exit_code(), EXIT_REFUSED);
    }

    #[test]
    fn identical_topologies_plan_no_change() {
        let result = plan(
            &topology(["live"; 3], false, 1),
            &topology(["live"; 3], false, 2),
            &Intent::default(),
        );
        assert_eq!(result.verdict(), Verdict::NoChange);
        assert_eq!(result.exit_code(), EXIT_NO_CHANGE);
        assert!(result.render_text().contains("no change"));
    }

    #[test]
    fn draining_a_location_is_caused_by_its_state_and_needs_no_intent() {
        let result = plan(
            &topology(["live"; 3], false, 1),
            &topology(["live", "live", "draining"], false, 2),
            &Intent::default(),
        );
        let change = &result.changes[0];
        assert_eq!(
            change.withdrawals[0].cause,
            WithdrawalCause::LocationStateChanged {
                from: LocationState::Live,
                to: Some(LocationState::Draining)
            }
        );
        // G2 applies to locations live before and after; one location of three losing its
        // routes exceeds the default 25 % location budget (G4).
        assert_eq!(result.violations_of(Guard::G2).count(), 0);
        assert_eq!(result.violations_of(Guard::G4).count(), 1);
        assert_eq!(result.delta("edge02").withdraw.len(), 1);
    }

    #[test]
    fn splitting_an_aggregate_keeps_the_addresses_reachable() {
        let result = plan(
            &topology(["live"; 3], false, 1),
            &topology(["live"; 3], true, 2),
            &Intent::default(),
        );
        // The /23 is withdrawn (announce mode changed) while both /24s are announced at the
        // same locations: no address is lost, so no guard objects.
        assert_eq!(
            result.verdict(),
            Verdict::ChangesAllowed,
            "{}",
            result.render_text()
        );
        assert_eq!(result.summary.withdrawn_pairs, 3);
        assert_eq!(result.summary.lost_pairs, 0);
        assert_eq!(result.changes.len(), 3);
        assert_eq!(
            result.changes[0].withdrawals[0].cause,
            WithdrawalCause::AnnounceModeChanged
        );
        let json: serde_json::Value = serde_json::from_str(&result.to_json()).unwrap();
        assert_eq!(
            json["changes"][0]["withdrawals"][0]["cause"]["kind"],
            "announce_mode_changed"
        );
        assert_eq!(json["changes"][1]["announce"].as_array().unwrap().len(), 3);
    }
}
