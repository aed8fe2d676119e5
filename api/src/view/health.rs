//! `GET /v1/health`: per service, the health verdict and what this location does with it
//! (announce, withdraw, degrade; drained; held by the floor), the health board's probe state for
//! checked services, fail static, drains and the service addresses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::answers::ServiceAction;

/// The health document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthView {
    /// This daemon's location.
    pub location: String,
    /// The running generation.
    pub generation: u64,
    /// `[health] enabled`.
    pub enabled: bool,
    /// Fail static is engaged: verdicts frozen.
    pub fail_static: bool,
    /// Which rule engaged it and for which services.
    #[serde(deserialize_with = "super::required")]
    pub fail_static_reason: Option<String>,
    /// The whole location is drained.
    pub location_drained: bool,
    /// The persisted drain state.
    pub drains: DrainState,
    /// `[health] min_other_locations`: the floor.
    pub min_other_locations: u64,
    /// `[health] address_interface`, if service addresses are bound.
    #[serde(deserialize_with = "super::required")]
    pub address_interface: Option<String>,
    /// Service addresses bound by this daemon.
    pub addresses_bound: Vec<String>,
    /// Wanted addresses already on the interface, bound by someone else.
    pub addresses_foreign: Vec<String>,
    /// Addresses waiting for their routes' withdrawal before they are unbound.
    pub addresses_pending_unbind: Vec<String>,
    /// The last failure to bind or unbind, per address.
    pub address_errors: BTreeMap<String, String>,
    /// Every service the topology announces here.
    pub services: BTreeMap<String, ServiceHealthView>,
}

/// One service in the health document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceHealthView {
    /// The service has health checks here.
    pub checked: bool,
    /// The verdict acted on (an unchecked service counts as healthy).
    pub healthy: bool,
    /// What this location does with the service's routes.
    pub action: ServiceAction,
    /// Drained here (by a service or location drain).
    pub drained: bool,
    /// A withdrawal was wanted and the floor kept the service announced.
    pub floor_held: bool,
    /// Other live locations announcing the service.
    pub other_live_locations: u64,
    /// Routes of the service this location announces.
    pub routes_announced: u64,
    /// The health board's state, `unchecked` for a service without checks.
    pub state: HealthStateView,
    /// The health board's probe state: present exactly when `checked`.
    #[serde(flatten)]
    pub probes: ProbeStateView,
}

/// A service's health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStateView {
    /// No verdict yet; counts as healthy.
    Unknown,
    /// Passing.
    Healthy,
    /// Failing.
    Unhealthy,
    /// Passing again, the hold-down not over yet: still unhealthy.
    HeldDown,
    /// The service has no health checks here.
    Unchecked,
}

impl HealthStateView {
    /// The state as the view writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStateView::Unknown => "unknown",
            HealthStateView::Healthy => "healthy",
            HealthStateView::Unhealthy => "unhealthy",
            HealthStateView::HeldDown => "held_down",
            HealthStateView::Unchecked => "unchecked",
        }
    }
}

/// The health board's state of a checked service. Every field is present for a checked
/// service and absent for an unchecked one; a reader that needs one names it when it is missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeStateView {
    /// The tracker's own verdict (before corroboration and fail static).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_healthy: Option<bool>,
    /// Observed unhealthy, published still healthy: waiting for the other services to settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawal_pending: Option<bool>,
    /// Verdict changes so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitions: Option<u64>,
    /// Passing rounds in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_passes: Option<u32>,
    /// Failing rounds in a row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Probe rounds so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u64>,
    /// Probe rounds by outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds_by_result: Option<RoundCounts>,
    /// The current hold-down (doubled by flaps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_down_ms: Option<u64>,
    /// What is left of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_down_remaining_ms: Option<u64>,
    /// Each check's result in the last round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_round: Option<Vec<CheckView>>,
    /// What the location does while the service is unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_unhealthy: Option<UnhealthyActionView>,
}

/// Probe rounds by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundCounts {
    /// Every check passed.
    pub passed: u64,
    /// A check failed.
    pub failed: u64,
    /// A check could not run.
    pub errored: u64,
}

/// One check's result in a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckView {
    /// The check (`http URL`, `tcp ADDRESS`, `dns NAME TYPE @SERVER`, `exec ARGV…`).
    pub check: String,
    /// Its outcome.
    pub result: CheckResult,
    /// What the probe saw.
    pub detail: String,
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    /// It passed.
    Pass,
    /// It failed.
    Fail,
    /// It could not run (timeout, the program would not start).
    Error,
}

/// `on_unhealthy` of a service's health declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum UnhealthyActionView {
    /// Stop announcing the service's routes here.
    Withdraw,
    /// Keep announcing them with a worse path.
    Degrade {
        /// Extra copies of the origin ASN.
        as_path_prepend: u8,
        /// Replaces the service's MED.
        med: Option<u32>,
        /// Added communities (`ASN:VALUE`).
        communities: Vec<String>,
    },
}

/// The persisted drain state: whether this location, or some of its services, are drained
/// (withdrawn here by hand). The state directory keeps it in this form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainState {
    /// True while the whole location is drained.
    pub drained: bool,
    /// Who changed the location drain last.
    pub who: String,
    /// Why.
    pub reason: String,
    /// When it was changed, in unix seconds (0 if never).
    pub changed_at: u64,
    /// The location drain withdraws even services no other live location announces.
    #[serde(default)]
    pub force: bool,
    /// Drained services, by name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceDrain>,
}

/// One drained service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDrain {
    /// Who drained it.
    pub who: String,
    /// Why.
    pub reason: String,
    /// When, in unix seconds.
    pub changed_at: u64,
    /// Withdraw even when no other live location announces the service (past the floor).
    #[serde(default)]
    pub force: bool,
}
