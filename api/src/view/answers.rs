//! The answers of the planning and mutating endpoints and of `GET /v1/topology`, and the error
//! body every endpoint answers with when it does not succeed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Document;
use crate::intent::Verdict;
use crate::source::SourceBundle;

/// `POST /v1/plan`: the plan of a pushed bundle against the running generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    /// The plan's verdict.
    pub verdict: Verdict,
    /// `topoctl`'s exit code for it.
    pub exit_code: i32,
    /// The plan as the topology crate renders it (`topology/src/plan/view.rs`).
    pub plan: Document,
    /// The plan as text.
    pub text: String,
    /// What changes at this daemon's location.
    pub location_delta: Document,
}

/// `POST /v1/apply` and `/v1/rollback`: what was applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MutationOutcome {
    /// The running generation before.
    pub generation_before: u64,
    /// The running generation after (equal to before when nothing changed).
    pub generation_after: u64,
    /// Hash of the plan that was applied.
    pub plan_hash: String,
    /// The plan's verdict and text.
    pub detail: OutcomeDetail,
    /// Set when the outcome could not be appended to the audit log (the change stands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_warning: Option<String>,
}

/// The plan behind a [`MutationOutcome`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeDetail {
    /// The plan's verdict.
    pub verdict: Verdict,
    /// The plan's counts (absent when nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Document>,
    /// The plan as text.
    pub text: String,
}

impl OutcomeDetail {
    /// The detail of a plan with `verdict`, its counts if anything changed, and its text.
    pub fn new(verdict: Verdict, summary: Option<Document>, text: String) -> Self {
        OutcomeDetail {
            verdict,
            summary,
            text,
        }
    }
}

/// What this location does with one service's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAction {
    /// Announce them.
    Announce,
    /// Withdraw them here.
    Withdraw,
    /// Announce them with the degrade attributes.
    Degrade,
}

impl ServiceAction {
    /// The action as the views write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceAction::Announce => "announce",
            ServiceAction::Withdraw => "withdraw",
            ServiceAction::Degrade => "degrade",
        }
    }
}

/// `POST /v1/drain`: the decisions after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainView {
    /// This daemon's location.
    pub location: String,
    /// The service drained or undrained, or `location`.
    pub target: String,
    /// `true` for a drain, `false` for an undrain.
    pub drained: bool,
    /// The drain state changed (for a dry run: would change). Read as `false` from daemons
    /// that predate the field.
    #[serde(default)]
    pub changed: bool,
    /// Drained services the floor keeps announced.
    pub floor_held: Vec<String>,
    /// Every service's decision.
    pub services: BTreeMap<String, ServiceDecisionView>,
    /// Set when the outcome could not be appended to the audit log (the change stands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_warning: Option<String>,
}

/// One service's decision at this location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDecisionView {
    /// What is done with its routes.
    pub action: ServiceAction,
    /// `None` when the service has no health checks (or health is disabled).
    #[serde(deserialize_with = "super::required")]
    pub healthy: Option<bool>,
    /// Drained here.
    pub drained: bool,
    /// A withdrawal was wanted and the floor kept the service announced.
    pub floor_held: bool,
    /// Other live locations announcing the service.
    pub other_live_locations: u64,
}

/// `GET /v1/topology`: the running generation's sources, as an apply takes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyView {
    /// The running generation.
    pub generation: u64,
    /// Its content hash.
    pub hash: String,
    /// Its sources.
    pub bundle: SourceBundle,
}

/// `GET /v1/generations`: the generations the daemon keeps (the running one and those it can
/// roll back to), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationsView {
    /// This daemon's location.
    pub location: String,
    /// The running generation.
    pub running: u64,
    /// Every kept generation that loads, newest first.
    pub generations: Vec<GenerationView>,
}

/// One kept generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationView {
    /// Its number.
    pub generation: u64,
    /// Its content hash.
    pub hash: String,
    /// When it was applied (unix seconds).
    pub applied_at: u64,
    /// Who applied it (the client certificate's identity, or `local`).
    pub applied_by: String,
    /// The intent lines given with the push (`service:NAME`, overrides; a rollback's own).
    pub intent: Vec<String>,
    /// The names of its sources.
    pub sources: Vec<String>,
}

/// The body of every answer that is not 2xx.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorView,
    /// Set when the outcome could not be appended to the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_warning: Option<String>,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorView {
    /// The class of failure (`invalid`, `refused`, `conflict`, `not_found`, `forbidden`,
    /// `rejected`, `no_space`, `too_large`, `busy`, `unavailable`, `internal`, …).
    pub kind: String,
    /// One line for humans.
    pub message: String,
    /// Structured detail, `null` when there is none.
    #[serde(deserialize_with = "super::required")]
    pub detail: Option<ErrorDetail>,
}

/// The structured detail of an error, by the shape the daemon writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ErrorDetail {
    /// The topology does not compile: the diagnostics, with `file:line:column`, and as text.
    Compile {
        /// The diagnostics as the configuration crate serialises them.
        diagnostics: Document,
        /// As text.
        text: String,
    },
    /// A guard refused the plan.
    Refused {
        /// The plan.
        plan: Document,
        /// As text.
        text: String,
    },
    /// The runtime guard refused what would be sent.
    RuntimeGuard {
        /// What differs from the plan.
        problems: Vec<String>,
    },
    /// The compare-and-swap failed.
    Conflict {
        /// The generation running instead.
        running_generation: u64,
    },
    /// The state directory is full; these files could be deleted to make room.
    NoSpace {
        /// The files, with their sizes.
        prunable: Document,
    },
    /// Health checks of the pushed topology cannot run at this location.
    HealthChecks {
        /// One line per check.
        health_errors: Vec<String>,
    },
    /// The fleet lock refused the request: the live lease it was measured against.
    Lease {
        /// The lease held.
        lease: crate::lease::LeaseView,
    },
    /// A detail of a shape this client does not know, carried as it is.
    Other(Document),
}

impl ErrorDetail {
    /// The detail of a plan the guards refused.
    pub fn refused(plan: Document, text: String) -> Self {
        ErrorDetail::Refused { plan, text }
    }

    /// The detail's text form, where it has one.
    pub fn text(&self) -> Option<&str> {
        match self {
            ErrorDetail::Compile { text, .. } | ErrorDetail::Refused { text, .. } => Some(text),
            _ => None,
        }
    }
}
