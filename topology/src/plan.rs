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

use topologyd_config::Diagnostic;

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

/// A service whose match set over live and test locations shrinks to a quarter or less (from at
/// least `SELECTOR_JUMP_MINIMUM` locations), or grows fourfold or more (to at least that many),
/// is called out.
pub const SELECTOR_JUMP_FACTOR: usize = 4;
/// See [`SELECTOR_JUMP_FACTOR`].
pub const SELECTOR_JUMP_MINIMUM: usize = 4;
/// G4: a route still announced somewhere whose live reach shrinks to less than
/// `1 / CONCENTRATION_FACTOR` of at least `CONCENTRATION_MINIMUM` live locations is a blast
/// radius by itself, however few routes change: the traffic of the locations it leaves lands on
/// the fewer that keep it (the resolver incident's first change moved seven routes from 54
/// locations to 18).
pub const CONCENTRATION_FACTOR: u64 = 2;
/// See [`CONCENTRATION_FACTOR`].
pub const CONCENTRATION_MINIMUM: u64 = 4;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    /// G3: a route announced from at least one live location before the change would have
    /// addresses announced from no live location after it, whatever the cause.
    GlobalWithdrawal {
        route: IpNet,
        /// The service announcing it before.
        service: String,
        /// The binding deciding its addresses after the change, if any is left.
        binding: Option<IpNet>,
        /// That binding's service.
        bound_to: Option<String>,
        /// Why the route leaves the live locations (the causes of its withdrawals).
        causes: Vec<WithdrawalCause>,
        /// Live locations announcing it before.
        locations_lost: LocationNames,
    },
    /// G4: withdrawals beyond the blast-radius budget (see [`PlanSummary`] for the rule).
    BlastRadius {
        withdrawn_pairs: u64,
        announced_pairs: u64,
        max_withdrawn_pair_share: f64,
        /// Locations that lose more than `max_withdrawn_pair_share` of their own pairs.
        affected_locations: u64,
        announcing_locations: u64,
        max_affected_location_share: f64,
        /// Routes losing at least one location, and the well-scoped floor.
        lost_routes: u64,
        small_change_routes: u64,
        /// Locations losing at least one route.
        locations_losing_routes: u64,
        /// Whether the shares were exceeded by a change that is not well-scoped.
        over_shares: bool,
        /// Routes whose live reach shrinks to less than half (never exempt by scope).
        concentrated: Vec<ConcentratedRoute>,
    },
}

/// A route whose traffic would concentrate on less than half of the live locations that
/// announced it (from at least [`CONCENTRATION_MINIMUM`]; see [`CONCENTRATION_FACTOR`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcentratedRoute {
    pub route: IpNet,
    pub live_before: u64,
    pub live_after: u64,
}

/// How a refusal can be lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlockKind {
    /// `--intent service:NAME` (G2).
    Intent,
    /// `--override blast-radius` (G4).
    Override,
    /// `--override global-withdrawal:CIDR`, one per route (G3); nothing else lifts it.
    PerRouteOverride,
}

/// What would lift one refusal, and whether that would be enough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlock {
    pub by: UnlockKind,
    /// The command-line arguments that lift this refusal.
    pub arguments: Vec<String>,
    /// The plan is refused by G3 as well: these arguments alone never make it pass.
    pub still_refused_by_g3: bool,
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
    /// A service's match set over live and test locations shrinks to a quarter or less, or
    /// grows fourfold or more.
    SelectorJump {
        service: String,
        /// Live and test locations matched before and after.
        before: usize,
        after: usize,
        /// Live and test locations of the new fleet.
        fleet: usize,
        live_before: usize,
        live_after: usize,
        lost: Vec<String>,
        gained: Vec<String>,
    },
    /// Routes move from one service to another.
    ServiceChangedHands {
        from: String,
        to: String,
        routes: Vec<IpNet>,
    },
    /// Routes announced before are now bound to a pending service, which announces nothing.
    BoundToPendingService { service: String, routes: Vec<IpNet> },
    /// A production service (announced at live locations before) is newly announced at test
    /// locations.
    ProductionAtTestLocations {
        service: String,
        locations: Vec<String>,
    },
    /// A location attribute value that the old fleet did not use, and that differs only in case
    /// or by one edit from one it did: likely a typo that changes what selectors match.
    SimilarAttributeValue {
        location: String,
        attribute: String,
        value: String,
        similar: String,
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
    /// Routes losing at least one location (what the well-scoped floor counts).
    pub lost_routes: u64,
    /// Locations losing more than `max_withdrawn_pair_share` of their own pairs.
    pub locations_hit: u64,
    /// The well-scoped floor: a change losing at most this many routes, or losing routes at
    /// one location only, is not held to the two shares.
    pub small_change_routes: u64,
    /// Routes whose live reach shrinks to less than half.
    pub concentrated_routes: u64,
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
    /// Routes this change leaves on no live location because an override names them: allowed,
    /// and shown first.
    pub global_withdrawals_overridden: Vec<IpNet>,
    /// `global-withdrawal` overrides naming no route this change leaves on no live location
    /// (a typo, or a change that no longer does what the override was written for).
    pub unused_overrides: Vec<Override>,
    /// The new topology's compile warnings (with `file:line:column`).
    pub warnings: Vec<Diagnostic>,
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

    /// Whether G3 refuses the plan: then no intent and no `blast-radius` override can make it
    /// pass, only one `global-withdrawal` override per route.
    pub fn refused_by_g3(&self) -> bool {
        self.violations_of(Guard::G3).next().is_some()
    }

    /// What would lift `violation`, and whether that alone would be enough.
    pub fn unlock(&self, violation: &GuardViolation) -> Unlock {
        let still_refused_by_g3 = self.refused_by_g3();
        match violation {
            GuardViolation::UndeclaredWithdrawal { missing_intent, .. }
            | GuardViolation::UndeclaredServiceChange { missing_intent, .. } => Unlock {
                by: UnlockKind::Intent,
                arguments: missing_intent
                    .iter()
                    .map(|service| format!("--intent service:{service}"))
                    .collect(),
                still_refused_by_g3,
            },
            GuardViolation::GlobalWithdrawal { route, .. } => Unlock {
                by: UnlockKind::PerRouteOverride,
                arguments: vec![format!("--override global-withdrawal:{route}")],
                still_refused_by_g3: false,
            },
            GuardViolation::BlastRadius { .. } => Unlock {
                by: UnlockKind::Override,
                arguments: vec!["--override blast-radius".to_string()],
                still_refused_by_g3,
            },
        }
    }

    /// Every argument that lifts a refusal, by kind, without duplicates.
    pub fn unlock_arguments(&self) -> BTreeMap<UnlockKind, Vec<String>> {
        let mut arguments: BTreeMap<UnlockKind, BTreeSet<String>> = BTreeMap::new();
        for violation in &self.violations {
            let unlock = self.unlock(violation);
            arguments
                .entry(unlock.by)
                .or_default()
                .extend(unlock.arguments);
        }
        arguments
            .into_iter()
            .map(|(kind, arguments)| (kind, arguments.into_iter().collect()))
            .collect()
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
struct ViolationView<'a> {
    guard: Guard,
    #[serde(flatten)]
    violation: &'a GuardViolation,
    unlock: Unlock,
}

/// The plan's refusals at a glance: what lifts them, and whether intent and `blast-radius`
/// could ever be enough.
#[derive(Serialize)]
struct RefusalView {
    /// False when G3 refuses: only per-route overrides lift it.
    unlockable_without_per_route_overrides: bool,
    intent: Vec<String>,
    overrides: Vec<String>,
    per_route_overrides: Vec<String>,
    message: String,
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
    global_withdrawals_overridden: &'a [IpNet],
    unused_overrides: &'a [Override],
    warnings: &'a [Diagnostic],
    summary: &'a PlanSummary,
    callouts: &'a [Callout],
    refusal: Option<RefusalView>,
    violations: Vec<ViolationView<'a>>,
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
            global_withdrawals_overridden: &self.global_withdrawals_overridden,
            unused_overrides: &self.unused_overrides,
            warnings: &self.warnings,
            summary: &self.summary,
            callouts: &self.callouts,
            refusal: (!self.violations.is_empty()).then(|| {
                let mut arguments = self.unlock_arguments();
                let per_route = arguments
                    .remove(&UnlockKind::PerRouteOverride)
                    .unwrap_or_default();
                RefusalView {
                    unlockable_without_per_route_overrides: per_route.is_empty(),
                    intent: arguments.remove(&UnlockKind::Intent).unwrap_or_default(),
                    overrides: arguments.remove(&UnlockKind::Override).unwrap_or_default(),
                    message: self.refusal_message(),
                    per_route_overrides: per_route,
                }
            }),
            violations: self
                .violations
                .iter()
                .map(|violation| ViolationView {
                    guard: violation.guard(),
                    violation,
                    unlock: self.unlock(violation),
                })
                .collect(),
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
    let mut to_pending: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
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
    let mut lost_routes = 0_u64;
    // Lost pairs grouped by location set, so that no (route, location) pair is materialised.
    let mut lost_by_set: HashMap<LocationSet, u64> = HashMap::new();
    let mut concentrated: Vec<ConcentratedRoute> = Vec::new();
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
        if let (Some(left), Some(right)) = (old_route, new_route)
            && context.old_to_new[left.service as usize] == Some(right.service)
            && context.service_unchanged[left.service as usize]
            && old.bindings[left.binding as usize].cidr == new.bindings[right.binding as usize].cidr
            && old.prefixes[left.onboarded as usize].origin_asn
                == new.prefixes[right.onboarded as usize].origin_asn
        {
            continue;
        }
        if let Some(right) = new_route {
            let service = &new.services[right.service as usize];
            let was_announced =
                old_route.is_some_and(|left| !context.old_sets[left.service as usize].is_empty());
            if service.lifecycle == Lifecycle::Pending && was_announced {
                to_pending
                    .entry(service.name.clone())
                    .or_default()
                    .push(right.prefix);
            }
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
            let replacement = context.replacement(&prefix);
            let lost = withdrawn.difference(&replacement);
            if !lost.is_empty() {
                effective_withdrawn_pairs += lost.len() as u64;
                lost_routes += 1;
                losing.union_with(&lost);
                *lost_by_set.entry(lost.clone()).or_default() += 1;
            }
            // G4's concentration: the route stays live somewhere, on less than half of the
            // live locations that announced it.
            let live_before = old_set.intersection_len(&context.old_live) as u64;
            let mut reach_after = new_set.clone();
            reach_after.union_with(&replacement);
            let live_after = reach_after.intersection_len(&context.new_live) as u64;
            if live_before >= CONCENTRATION_MINIMUM
                && live_after > 0
                && live_after * CONCENTRATION_FACTOR < live_before
            {
                concentrated.push(ConcentratedRoute {
                    route: prefix,
                    live_before,
                    live_after,
                });
            }

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

    // G3: one invariant over the announced address space, whatever the cause.
    let mut overridden = Vec::new();
    violations.extend(global_withdrawals(
        &context,
        &old_service_live,
        &new_service_live,
        &changes,
        intent,
        &mut name_cache,
        &mut overridden,
    ));
    let unused_overrides: Vec<Override> = intent
        .overrides
        .iter()
        .filter(|item| match item {
            Override::GlobalWithdrawal(route) => overridden.binary_search(route).is_err(),
            Override::BlastRadius => false,
        })
        .cloned()
        .collect();

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
        small_change_routes: old
            .settings
            .small_change_routes
            .min(new.settings.small_change_routes),
        ..PlanSummary::default()
    };
    let mut routes_per_service = vec![0_u64; old.services.len()];
    for route in &old.routes {
        routes_per_service[route.service as usize] += 1;
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
    let mut lost_at = vec![0_u64; capacity];
    for (set, count) in &lost_by_set {
        for location in set.iter() {
            lost_at[location] += count;
        }
    }
    summary.locations_hit = lost_at
        .iter()
        .zip(&pairs_before)
        .filter(|(lost, before)| {
            **lost > 0 && **lost as f64 > summary.max_withdrawn_pair_share * **before as f64
        })
        .count() as u64;
    summary.announcing_locations_before = announcing_before.len() as u64;
    for change in &changes {
        summary.announced_pairs += change.announce.len() as u64;
        summary.updated_pairs += change.update.len() as u64;
        for withdrawal in &change.withdrawals {
            summary.withdrawn_pairs += withdrawal.locations.len() as u64;
        }
    }
    summary.lost_pairs = effective_withdrawn_pairs;
    summary.lost_routes = lost_routes;
    summary.locations_losing_routes = losing.len() as u64;
    summary.concentrated_routes = concentrated.len() as u64;
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let well_scoped =
        summary.lost_routes <= summary.small_change_routes || summary.locations_losing_routes <= 1;
    let over_shares = !well_scoped
        && (share(summary.lost_pairs, summary.announced_pairs_before)
            > summary.max_withdrawn_pair_share
            || share(summary.locations_hit, summary.announcing_locations_before)
                > summary.max_affected_location_share);
    if (over_shares || !concentrated.is_empty())
        && !intent.overrides.contains(&Override::BlastRadius)
    {
        violations.push(GuardViolation::BlastRadius {
            withdrawn_pairs: summary.lost_pairs,
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
    }

    violations.sort_by_key(|violation| (violation.guard(), violation.route()));
    let binding_changes = binding_changes(&context);
    let callouts = callouts(&context, hands, to_pending);
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
        global_withdrawals_overridden: overridden,
        unused_overrides,
        warnings: new.warnings.clone(),
        verdict,
    }
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

/// The first and last address of `network`, as numbers.
fn address_range(network: &IpNet) -> (u128, u128) {
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
    for route in new.routes[start..]
        .iter()
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
    old_service_live: &[bool],
    new_service_live: &[bool],
    changes: &[RouteChange],
    intent: &Intent,
    name_cache: &mut NameCache<'_>,
    overridden: &mut Vec<IpNet>,
) -> Vec<GuardViolation> {
    let (old, new) = (context.old, context.new);
    let mut violations = Vec::new();
    for old_route in &old.routes {
        let prefix = old_route.prefix;
        if !old_service_live[old_route.service as usize]
            || covered_after(new, new_service_live, &prefix)
        {
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
        let causes: BTreeSet<WithdrawalCause> = changes
            .binary_search_by(|change| change.prefix.cmp(&prefix))
            .ok()
            .map(|index| {
                changes[index]
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
fn similar_values(left: &str, right: &str) -> bool {
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

fn callouts(
    context: &Context<'_>,
    hands: BTreeMap<(String, String), Vec<IpNet>>,
    to_pending: BTreeMap<String, Vec<IpNet>>,
) -> Vec<Callout> {
    let mut callouts = Vec::new();
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
        let matched_before = context
            .universe
            .map(&service.matched, &context.universe.old_map);
        let matched_after = context
            .universe
            .map(&new_service.matched, &context.universe.new_map);
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
    for ((from, to), routes) in hands {
        callouts.push(Callout::ServiceChangedHands { from, to, routes });
    }
    for (service, routes) in to_pending {
        callouts.push(Callout::BoundToPendingService { service, routes });
    }
    // Attribute values the old fleet did not use, one slip from one it did.
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
        for location in &context.new.locations {
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
        // G2 applies to locations live before and after; a change at one location is
        // well-scoped, so G4 lets a third of a three-location fleet drain.
        assert_eq!(result.violations_of(Guard::G2).count(), 0);
        assert_eq!(result.violations_of(Guard::G4).count(), 0);
        assert_eq!(result.verdict(), Verdict::ChangesAllowed);
        assert_eq!(result.delta("edge02").withdraw.len(), 1);
        // Two of three at once is no longer well-scoped.
        let two = plan(
            &topology(["live"; 3], false, 1),
            &topology(["live", "draining", "draining"], false, 2),
            &Intent::default(),
        );
        assert_eq!(
            two.violations_of(Guard::G4).count(),
            0,
            "one route is a small change"
        );
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

    fn fleet(locations: &[(&str, &str, &str)], web_topology: &str) -> Topology {
        let mut text = String::new();
        for (name, region, state) in locations {
            text += &format!(
                "[[location]]\nname = \"{name}\"\nregion = \"{region}\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"{state}\"\n"
            );
        }
        text += &format!("[[service]]\nname = \"web\"\ntopology = '{web_topology}'\n");
        text += "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = true\n";
        text += "[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
        compile(&[Source::new("t.toml", text)], 1).unwrap()
    }

    #[test]
    fn a_new_attribute_value_one_slip_from_a_known_one_is_called_out() {
        let old = fleet(&[("a1", "europe", "live"), ("a2", "europe", "live")], "all");
        let new = fleet(
            &[
                ("a1", "europe", "live"),
                ("a2", "europe", "live"),
                ("a3", "eruope", "live"),
                ("a4", "Europe", "live"),
                ("a5", "asia", "live"),
            ],
            "all",
        );
        let result = plan(&old, &new, &Intent::default());
        let similar: Vec<(&str, &str)> = result
            .callouts
            .iter()
            .filter_map(|callout| match callout {
                Callout::SimilarAttributeValue {
                    location, value, ..
                } => Some((location.as_str(), value.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(similar, [("a3", "eruope"), ("a4", "Europe")]);
        assert!(
            result
                .render_text()
                .contains("location `a4` has region `Europe`")
        );
        // Short codes are only compared without case: `NL` and `NO` are both real.
        assert!(!similar_values("NL", "NO"));
        assert!(similar_values("nl", "NL"));
    }

    #[test]
    fn selector_jumps_count_test_locations_too() {
        let mut locations: Vec<(String, &str, &str)> = (0..4)
            .map(|index| (format!("t{index}"), "eu", "test"))
            .collect();
        locations.push(("live1".to_string(), "us", "live"));
        let borrowed: Vec<(&str, &str, &str)> = locations
            .iter()
            .map(|(name, region, state)| (name.as_str(), *region, *state))
            .collect();
        let old = fleet(&borrowed, "all");
        let new = fleet(&borrowed, "region = \"us\"");
        let result = plan(&old, &new, &Intent::default());
        // Live locations alone: 1 -> 1, no jump; over live and test: 5 -> 1.
        assert!(
            result.callouts.iter().any(|callout| matches!(
                callout,
                Callout::SelectorJump {
                    before: 5,
                    after: 1,
                    live_before: 1,
                    live_after: 1,
                    ..
                }
            )),
            "{:?}",
            result.callouts
        );
    }

    #[test]
    fn a_rollback_withdraws_what_it_undoes_but_not_what_the_target_still_binds() {
        let fleet = "[[location]]\nname = \"a1\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                     [[location]]\nname = \"t1\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"test\"\n";
        let build = |services: &str, prefixes: &str| {
            compile(
                &[Source::new(
                    "t.toml",
                    format!("{fleet}{services}{prefixes}"),
                )],
                1,
            )
            .unwrap()
        };
        let services = "[[service]]\nname = \"web\"\ntopology = \"all\"\n\
                        [[service]]\nname = \"later\"\nlifecycle = \"pending\"\ntopology = \"all\"\n";
        let base = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                    [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
        let extra = |service: &str| {
            format!(
                "[[prefix]]\ncidr = \"198.51.100.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                 [[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"{service}\"\n"
            )
        };
        let running = build(services, &format!("{base}{}", extra("web")));
        let extra_route = Override::GlobalWithdrawal("198.51.100.0/24".parse().unwrap());
        // Undoing an onboarding, and undoing an activation: withdrawn by design.
        assert_eq!(
            rollback_overrides(&running, &build(services, base)),
            std::slice::from_ref(&extra_route)
        );
        assert_eq!(
            rollback_overrides(
                &running,
                &build(services, &format!("{base}{}", extra("later")))
            ),
            [extra_route]
        );
        // A target that binds the route to an active service announced nowhere live: refused.
        let test_only = services.replacen(
            "topology = \"all\"",
            "topology = \"state = 'test'\"\nannounce_at_test_locations = true",
            1,
        );
        let target = build(&test_only, &format!("{base}{}", extra("web")));
        assert!(rollback_overrides(&running, &target).is_empty());
        assert_eq!(
            plan(&running, &target, &Intent::default())
                .violations_of(Guard::G3)
                .count(),
            2
        );
    }
}
