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
//! - **G3 — no global withdrawal, whatever the cause.** A route announced from at least one
//!   live location before the change, some of whose addresses are announced from no live
//!   location after it (by it or overlapping routes), is refused unless an override names that
//!   exact route (`global-withdrawal:CIDR`). Intent and `blast-radius` never lift it. Written
//!   once over the announced sets before and after, not per cause.
//! - **G4 — blast radius.** Judges reach lost, not churn (see [`guards`]): beyond a share of the
//!   announced route×location pairs, or of the announcing locations each losing (net) more
//!   than that share of their routes, when reach is lost at more than one location; and any
//!   route left on less than half of its live locations. Up to `small_change_routes` routes
//!   withdrawn everywhere (each named by a G3 override) do not count. Lifted by `blast-radius`.
//!   A location replaces a withdrawn route only where overlapping routes cover all of it.
//! - **G5 — RPKI**, when the plan is given VRPs: a route newly announced invalid, or given
//!   another origin while invalid, at any location. Nothing lifts it.
//!
//! Files: `context` (both topologies in one location space), `diff` (what changes, with
//! causes), `guards` (G2 to G5 judged on the diff, their findings kept apart from it),
//! `callouts`, `view` (the JSON form); this file holds the types and the entry point.
//!
//! Not a guard but shown first: [`Callout`]s (selector jumps, routes changing hands or bound to
//! a pending service, production services at test locations, attribute values one slip from a
//! known one, declared ROAs the RPKI lacks).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use topologyd_config::{Diagnostic, LocationState};

use crate::location_set::LocationSet;
use crate::model::{AnnouncedRoute, Topology};
use crate::rpki::{RpkiState, Vrp, VrpSet};

mod callouts;
mod context;
mod diff;
mod guards;
#[cfg(test)]
mod tests;
mod view;

pub use callouts::SIMILAR_VALUE_MINIMUM_LENGTH;
// The plan vocabulary a request carries (intent, overrides, verdicts) is the control API's.
pub use guards::{rollback_intent, rollback_overrides};
pub use topologyd_api::{
    EXIT_CHANGES_ALLOWED, EXIT_INVALID, EXIT_NO_CHANGE, EXIT_REFUSED, EXIT_USAGE, Intent,
    IntentError, Override, Verdict,
};

use context::Context;

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

/// Which guard a violation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Guard {
    G2,
    G3,
    G4,
    G5,
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
        /// Locations that lose, net, more than `max_withdrawn_pair_share` of their own pairs.
        affected_locations: u64,
        announcing_locations: u64,
        max_affected_location_share: f64,
        /// Routes losing at least one location, and how many withdrawals from every location
        /// the shares forgive.
        lost_routes: u64,
        small_change_routes: u64,
        /// Locations losing more routes than they gain.
        locations_losing_routes: u64,
        /// Whether a share was exceeded by a change losing reach at more than one location.
        over_shares: bool,
        /// Routes whose live reach shrinks to less than half (never exempt by scope).
        concentrated: Vec<ConcentratedRoute>,
    },
    /// G5: a route would be announced RPKI-invalid where it was not before (newly announced,
    /// or made invalid by the change).
    RpkiInvalid {
        route: IpNet,
        origin_asn: u32,
        state: RpkiState,
        /// The VRPs covering it.
        covering: Vec<Vrp>,
        /// Locations that would announce it invalid and did not before.
        locations: LocationNames,
    },
    /// G5 under a prefix's `rpki = "refuse"`: a route no VRP covers would be newly announced
    /// (or announced with another origin) at these locations.
    RpkiNotFound {
        route: IpNet,
        origin_asn: u32,
        locations: LocationNames,
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
    /// No argument: a ROA authorising the route must be published first (G5).
    PublishRoa,
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
            GuardViolation::RpkiInvalid { .. } | GuardViolation::RpkiNotFound { .. } => Guard::G5,
        }
    }

    /// The route named, if the violation is about one.
    pub fn route(&self) -> Option<IpNet> {
        match self {
            GuardViolation::UndeclaredWithdrawal { route, .. }
            | GuardViolation::UndeclaredServiceChange { route, .. }
            | GuardViolation::GlobalWithdrawal { route, .. } => Some(*route),
            GuardViolation::BlastRadius { .. } => None,
            GuardViolation::RpkiInvalid { route, .. }
            | GuardViolation::RpkiNotFound { route, .. } => Some(*route),
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
    /// A prefix's declared `roa` that the RPKI does not hold (no VRP covering it names that ASN
    /// with at least that max-length).
    DeclaredRoaNotInRpki {
        prefix: IpNet,
        asn: u32,
        max_length: u8,
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
    /// Withdrawn pairs whose location announces no overlapping routes covering all of the
    /// route instead.
    pub lost_pairs: u64,
    pub updated_pairs: u64,
    /// Route×location pairs announced before the change.
    pub announced_pairs_before: u64,
    /// Locations that lose more routes than they gain.
    pub locations_losing_routes: u64,
    /// Locations announcing at least one route before the change.
    pub announcing_locations_before: u64,
    pub max_withdrawn_pair_share: f64,
    pub max_affected_location_share: f64,
    /// Routes losing at least one location.
    pub lost_routes: u64,
    /// Route×location pairs of reach lost (per route: locations before minus after), what G4's
    /// pair share counts; routes withdrawn everywhere only when more than
    /// `small_change_routes` are.
    pub reach_lost_pairs: u64,
    /// Routes withdrawn from every location.
    pub withdrawn_everywhere: u64,
    /// Locations losing, net of what they gain, more than `max_withdrawn_pair_share` of their
    /// own pairs.
    pub locations_hit: u64,
    /// Routes withdrawn from every location count in G4's shares only when more than this
    /// many are.
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
    /// Origin validation of the new topology's routes, when the plan was given VRPs.
    pub rpki: Option<RpkiSummary>,
    verdict: Verdict,
}

/// Origin validation (RFC 6811) of the routes a plan leaves announced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpkiSummary {
    pub vrps: usize,
    pub valid: u64,
    pub invalid: u64,
    pub not_found: u64,
    /// Invalid routes announced before the change as they are after it (not refused: refusing
    /// would block the change that fixes them; shown so that they are fixed).
    pub invalid_kept: Vec<IpNet>,
    /// Routes the change newly announces that no VRP covers.
    pub not_found_new: Vec<IpNet>,
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
            GuardViolation::RpkiInvalid { .. } | GuardViolation::RpkiNotFound { .. } => Unlock {
                by: UnlockKind::PublishRoa,
                arguments: Vec::new(),
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

    /// The JSON form as a document: what [`Plan::to_json`] parses back into, made without
    /// printing and parsing it (a plan of a few thousand binding changes is megabytes of JSON).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Compares `old` and `new` and evaluates the guards under `intent`: the diff first, then G2,
/// G3 and G4 on it, then the call-outs.
pub fn plan(old: &Topology, new: &Topology, intent: &Intent) -> Plan {
    plan_with_vrps(old, new, intent, None)
}

/// [`plan`], with origin validation against `vrps` when given: G5 refuses a route that would
/// be announced RPKI-invalid at a location where it was not before, and declared ROAs the RPKI
/// does not hold are called out.
pub fn plan_with_vrps(
    old: &Topology,
    new: &Topology,
    intent: &Intent,
    vrps: Option<&VrpSet>,
) -> Plan {
    let context = Context::new(old, new);
    // What changes: per route and per location, with causes.
    let diffs = diff::diff_routes(&context);
    let binding_changes = callouts::binding_changes(&context);
    // What is refused: the guards judge the diff, and nothing else writes their findings.
    let guards::GuardFindings {
        violations,
        summary,
        rpki,
        global_withdrawals_overridden,
        unused_overrides,
    } = guards::judge(&context, &diffs, intent, vrps);
    let mut callouts = callouts::callouts(&context, &diffs);
    if let Some(vrps) = vrps {
        callouts.extend(callouts::declared_roas_not_in_rpki(new, vrps));
    }
    let changes: Vec<RouteChange> = diffs.into_iter().map(|diff| diff.change).collect();
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
        global_withdrawals_overridden,
        unused_overrides,
        warnings: new.warnings.clone(),
        rpki,
        verdict,
    }
}
