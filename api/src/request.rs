//! The bodies of the control API's mutating and planning requests: `POST /v1/plan`,
//! `/v1/apply`, `/v1/rollback` and `/v1/drain`. Intent is typed: its wire form is a list of
//! lines, parsed once when the body is read ([`crate::intent::lines`]).

use serde::{Deserialize, Serialize};

use crate::delta::BundleDelta;
use crate::intent::{Intent, lines};
use crate::lease::LeaseClaim;
use crate::source::SourceBundle;

/// `POST /v1/plan` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The sources to plan (with `delta`: only the files that changed).
    pub bundle: SourceBundle,
    /// A delta push: the base the bundle's files change and every file of the new bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<BundleDelta>,
    /// What the change means to do (absent: nothing deliberate).
    #[serde(default, with = "lines")]
    pub intent: Intent,
}

/// `POST /v1/apply` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The sources to apply (with `delta`: only the files that changed).
    pub bundle: SourceBundle,
    /// A delta push, as for plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<BundleDelta>,
    /// What the change means to do.
    #[serde(with = "lines")]
    pub intent: Intent,
    /// Compare-and-swap: the generation the pusher planned against; 409 if it is not running.
    pub expected_generation: Option<u64>,
    /// The fleet lock claim of whoever acts (absent: no claim; refused while a lease is held).
    #[serde(default)]
    pub lease: Option<LeaseClaim>,
    /// Unix milliseconds after which the daemon must not carry this out, by its own clock:
    /// refused (409 `deadline_passed`) when it arrives later and again at commit. Lets a
    /// caller that dropped the call know, from a status answered after it, that it never will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_unix_ms: Option<u64>,
}

/// `POST /v1/rollback` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The kept generation whose sources become the next generation.
    pub generation: u64,
    /// Compare-and-swap, as for apply.
    #[serde(default)]
    pub expected_generation: Option<u64>,
    /// The fleet lock claim, as for apply.
    #[serde(default)]
    pub lease: Option<LeaseClaim>,
    /// The deadline, as for apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_unix_ms: Option<u64>,
}

/// `POST /v1/drain` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// The service to drain; absent for the whole location.
    #[serde(default)]
    pub service: Option<String>,
    /// `true` drains, `false` undrains.
    pub drain: bool,
    /// Withdraw even where no other live location announces the service (past the floor).
    #[serde(default)]
    pub force: bool,
    /// Why, for the record.
    #[serde(default)]
    pub reason: String,
    /// Say what would change and change nothing (no state written, no audit record).
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The intent lines of a plan or apply body, read on their own: when a body does not parse,
/// the control API asks this whether the intent was what failed (an invalid request, 400
/// `invalid`) rather than the JSON (a malformed request).
#[derive(Debug, Deserialize)]
pub struct IntentLines {
    /// The lines as sent.
    #[serde(default)]
    pub intent: Vec<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::intent::Override;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(wire: Value) -> T {
        let typed: T = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), wire);
        typed
    }

    #[test]
    fn plan_and_apply_bodies_keep_their_wire_shape_with_typed_intent() {
        let bundle = json!({ "sources": [{ "name": "fleet.toml", "text": "" }] });
        let plan: PlanRequest = round_trip(json!({
            "bundle": bundle,
            "intent": ["service:web", "blast-radius"],
        }));
        assert!(plan.intent.services.contains("web"));
        assert!(plan.intent.overrides.contains(&Override::BlastRadius));
        let bare: PlanRequest = serde_json::from_value(json!({ "bundle": bundle })).unwrap();
        assert_eq!(bare.intent, Intent::default());
        let apply: ApplyRequest = round_trip(json!({
            "bundle": bundle,
            "intent": ["service:web"],
            "expected_generation": 7,
            "lease": { "holder": "r-1", "token": 1 },
        }));
        assert_eq!(apply.expected_generation, Some(7));
        assert_eq!(apply.deadline_unix_ms, None);
        let with_deadline: ApplyRequest = round_trip(json!({
            "bundle": bundle,
            "intent": [],
            "expected_generation": 7,
            "lease": null,
            "deadline_unix_ms": 1_700_000_000_000u64,
        }));
        assert_eq!(with_deadline.deadline_unix_ms, Some(1_700_000_000_000));
        let error = serde_json::from_value::<PlanRequest>(json!({
            "bundle": bundle, "intent": ["bogus"],
        }))
        .unwrap_err();
        assert!(
            error.to_string().contains("invalid override `bogus`"),
            "{error}"
        );
    }

    #[test]
    fn rollback_and_drain_bodies_keep_their_wire_shape() {
        let rollback: RollbackRequest =
            round_trip(json!({ "generation": 3, "expected_generation": null, "lease": null }));
        assert_eq!(rollback.generation, 3);
        assert_eq!(rollback.deadline_unix_ms, None);
        let with_deadline: RollbackRequest = round_trip(json!({
            "generation": 3, "expected_generation": 2, "lease": null, "deadline_unix_ms": 1_700_000_000_000u64,
        }));
        assert_eq!(with_deadline.deadline_unix_ms, Some(1_700_000_000_000));
        let drain: DrainRequest = round_trip(json!({
            "service": "web", "drain": true, "force": false, "reason": "maintenance",
        }));
        assert!(drain.drain);
        assert!(serde_json::from_value::<DrainRequest>(json!({ "service": "web" })).is_err());
    }
}
