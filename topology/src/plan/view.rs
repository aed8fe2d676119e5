//! The JSON form of a [`Plan`]: location sets as names, each violation with what lifts it, and
//! the refusal at a glance.

use ipnet::IpNet;
use serde::Serialize;
use topologyd_config::Diagnostic;

use super::{
    BindingChange, Callout, Guard, GuardViolation, Intent, Override, Plan, PlanSummary,
    RouteChange, RpkiSummary, Unlock, UnlockKind, Verdict, WithdrawalCause,
};
use crate::location_set::LocationSet;
use crate::model::AnnouncedRoute;

#[derive(Serialize)]
struct WithdrawalView<'a> {
    cause: &'a WithdrawalCause,
    locations: Names<'a>,
}

#[derive(Serialize)]
struct RouteChangeView<'a> {
    prefix: IpNet,
    service: &'a str,
    old: &'a Option<AnnouncedRoute>,
    new: &'a Option<AnnouncedRoute>,
    announce: Names<'a>,
    update: Names<'a>,
    withdrawals: Withdrawals<'a>,
}

/// A location set as the array of its locations' names ([`Plan::location_names`]), written as
/// it is read: a plan of thousands of route changes over hundreds of locations would otherwise
/// hold every name list at once. The JSON is the same as that of the list.
struct Names<'a> {
    plan: &'a Plan,
    set: &'a LocationSet,
}

impl Serialize for Names<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.set
                .iter()
                .filter_map(|index| self.plan.locations.get(index).map(String::as_str)),
        )
    }
}

/// A route change's withdrawals, written as they are read (as [`Names`]).
struct Withdrawals<'a> {
    plan: &'a Plan,
    change: &'a RouteChange,
}

impl Serialize for Withdrawals<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let plan = self.plan;
        serializer.collect_seq(
            self.change
                .withdrawals
                .iter()
                .map(|withdrawal| WithdrawalView {
                    cause: &withdrawal.cause,
                    locations: Names {
                        plan,
                        set: &withdrawal.locations,
                    },
                }),
        )
    }
}

/// The route changes, written as they are read (as [`Names`]).
struct Changes<'a>(&'a Plan);

impl Serialize for Changes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let plan = self.0;
        serializer.collect_seq(plan.changes.iter().map(|change| RouteChangeView {
            prefix: change.prefix,
            service: change.service(),
            old: &change.old,
            new: &change.new,
            announce: Names {
                plan,
                set: &change.announce,
            },
            update: Names {
                plan,
                set: &change.update,
            },
            withdrawals: Withdrawals { plan, change },
        }))
    }
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
    /// False when G5 refuses: no argument lifts it (a ROA must be published first).
    unlockable: bool,
    intent: Vec<String>,
    overrides: Vec<String>,
    per_route_overrides: Vec<String>,
    /// Routes refused by G5.
    rpki_invalid: Vec<IpNet>,
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
    rpki: &'a Option<RpkiSummary>,
    refusal: Option<RefusalView>,
    violations: Vec<ViolationView<'a>>,
    changes: Changes<'a>,
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
            rpki: &self.rpki,
            refusal: (!self.violations.is_empty()).then(|| {
                let mut arguments = self.unlock_arguments();
                let per_route = arguments
                    .remove(&UnlockKind::PerRouteOverride)
                    .unwrap_or_default();
                let rpki_invalid: Vec<IpNet> = self
                    .violations_of(Guard::G5)
                    .filter_map(GuardViolation::route)
                    .collect();
                RefusalView {
                    unlockable_without_per_route_overrides: per_route.is_empty(),
                    unlockable: rpki_invalid.is_empty(),
                    rpki_invalid,
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
            changes: Changes(self),
            binding_changes: &self.binding_changes,
        }
        .serialize(serializer)
    }
}
