//! The typed messages the engine task answers, and how its errors map onto HTTP statuses.
//!
//! Owns: [`EngineCommand`] (what the control API, and later the rollout and health tasks, may
//! ask the engine) and [`EngineError`]. Requests arrive parsed (typed [`Intent`]); the reply
//! payloads are the control API's views (`topologyd_api`), which the control server serialises
//! and its clients read back with every field required.
//!
//! Must not touch: the semantics of a command (the engine, `engine.rs`, owns them), sockets,
//! HTTP framing (see `control.rs`).
//!
//! ```text
//!                       SIGHUP / SIGTERM
//!   signal handler ───────────────────────┐
//!                                         │ reload / drain-and-stop
//!   control server (HTTPS, mTLS)          ▼
//!     one task per connection ──EngineCommand──►┌──────────────────────────┐
//!       └─ oneshot reply ◄──────────────────────│       engine task        │
//!                                               │ owns: running generation,│
//!   health prober (later) ──EngineCommand──────►│ what each peer was sent, │
//!   RTR client ([rpki]) ──watch<RtrSnapshot>───►│ rollout state, state dir,│
//!                                               │ every route's RPKI state │
//!                                               └──┬──────────▲────────┬───┘
//!                          the published routes    │          │ peer   │ peer directory,
//!                          (one watch, all peers)  ▼          │ reports│ generation snapshot,
//!                                          ┌────────────────┐ │        ▼ readiness, STATUS=
//!                                          │ BGP peer task  │─┘   admin server (HTTP):
//!                                          │ one per peer:  │     /metrics /ready /live
//!                                          │ TCP (MD5/GTSM),│───► reads snapshots only: the
//!                                          │ FSM, timers    │     metrics collector reads each
//!                                          └────────────────┘     peer's status (watch) per scrape
//! ```
//!
//! Every arrow into the engine is a bounded `tokio::sync::mpsc` channel; every reply is a
//! `tokio::sync::oneshot`. Nothing but the engine task mutates its state.

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use topologyd_api::{
    DrainView, ErrorDetail, GenerationsView, HealthView, Intent, LeaseClaim, LeaseRequest,
    LeaseView, PlanView, RoutesView, StatusView, TopologyView,
};

pub use crate::audit::WriteAhead;
pub use crate::state_store::{SourceBundle, SourceFile};
pub use topologyd_api::MutationOutcome;

/// How a command's answer travels back.
pub type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

/// What must hold for an apply or rollback to commit, checked when it arrives and again at
/// commit (a commit may run while it compiles).
#[derive(Debug, Clone, Default)]
pub struct MutationChecks {
    /// Compare-and-swap: only if this is the running generation (`None`: don't check).
    pub expected_generation: Option<u64>,
    /// The fleet lock claim of whoever acts, checked in the same step as the swap.
    pub lease: Option<LeaseClaim>,
    /// Unix milliseconds after which it is refused (`deadline_passed`).
    pub deadline_unix_ms: Option<u64>,
}

/// What an apply and a rollback both carry besides their input.
#[derive(Debug)]
pub struct MutationTerms {
    /// What must hold for it to commit.
    pub checks: MutationChecks,
    /// The requester's identity from their client certificate.
    pub who: String,
    /// The audit record to write (and fsync) before the change takes effect; `None` when no
    /// audit log is configured.
    pub write_ahead: Option<WriteAhead>,
    /// What was applied.
    pub reply: Reply<MutationOutcome>,
}

/// A request to the engine task.
#[derive(Debug)]
pub enum EngineCommand {
    /// Dry run: compile `bundle`, plan against what is announced, run the guards; change nothing.
    Plan {
        /// The pushed sources.
        bundle: SourceBundle,
        /// Each file's SHA-256, when the control API checked them (a delta's files).
        digests: Option<Vec<[u8; 32]>>,
        /// The places of the files whose digest in `digests` is listed, not yet checked (the
        /// texts a delta's edits made): the compile checks them.
        unchecked: Vec<usize>,
        /// What the pusher means to do, parsed where the request arrived.
        intent: Intent,
        /// The plan and guard verdicts.
        reply: Reply<PlanView>,
    },
    /// Compile, plan, guard and, if allowed, commit and send `bundle` as the next generation.
    Apply {
        /// The pushed sources.
        bundle: SourceBundle,
        /// Each file's SHA-256, when the control API checked them (a delta's files) or
        /// computed them from the texts (a whole bundle's, hashed for the audit record).
        digests: Option<Vec<[u8; 32]>>,
        /// As for plan.
        unchecked: Vec<usize>,
        /// What the pusher means to do, parsed where the request arrived.
        intent: Intent,
        /// Who asks, what must hold, the audit record and where the answer goes.
        terms: MutationTerms,
    },
    /// Make a kept previous generation's sources the next generation.
    Rollback {
        /// The generation whose sources to restore.
        generation: u64,
        /// As for apply.
        terms: MutationTerms,
    },
    /// Generation, hash, per-peer session state and route counts.
    Status {
        /// The status document.
        reply: Reply<StatusView>,
    },
    /// The routes announced, to one peer or to all.
    Routes {
        /// Restrict to this peer (its configured name or address).
        peer: Option<String>,
        /// The routes document.
        reply: Reply<RoutesView>,
    },
    /// Drain (withdraw here by hand) or undrain a service, or the whole location; persisted.
    Drain {
        /// The service; `None` for the whole location.
        service: Option<String>,
        /// `true` drains, `false` undrains.
        drain: bool,
        /// Withdraw even services no other live location announces (past the floor).
        force: bool,
        /// Why, for the record.
        reason: String,
        /// The requester's identity.
        who: String,
        /// As for apply.
        write_ahead: Option<WriteAhead>,
        /// Say whether the state would change; change nothing.
        dry_run: bool,
        /// The per-service decisions after the change.
        reply: Reply<DrainView>,
    },
    /// Per-service health, drains and what this location does with each service.
    Health {
        /// The health document.
        reply: Reply<HealthView>,
    },
    /// Where the VRPs stand and every route's RFC 6811 state (`GET /v1/rpki`).
    Rpki {
        /// The RPKI document.
        reply: Reply<topologyd_api::RpkiView>,
    },
    /// Acquire, release or break the fleet lock's lease; persisted before it takes effect.
    Lease {
        /// What is asked.
        request: LeaseRequest,
        /// The requester's identity (for the log).
        who: String,
        /// The lease held afterwards, and one line saying what changed (for the audit log).
        reply: Reply<(Option<LeaseView>, String)>,
    },
    /// The running generation's sources, as `Apply` takes them (for rollout controllers).
    Topology {
        /// A kept generation instead of the running one.
        generation: Option<u64>,
        /// `{generation, hash, bundle}`.
        reply: Reply<TopologyView>,
    },
    /// The running generation, its compiled topology (shared, not copied) and the state
    /// store holding its sources: a delta push is resolved against them where the request
    /// arrived, off the engine task.
    Running {
        /// The generation number, the topology and the store.
        reply: Reply<(
            u64,
            std::sync::Arc<topologyd_topology::Topology>,
            std::sync::Arc<crate::state_store::StateStore>,
        )>,
    },
    /// The kept generations, newest first.
    Generations {
        /// `{location, running, generations}`.
        reply: Reply<GenerationsView>,
    },
}

/// Why the engine did not do what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineErrorKind {
    /// The request does not compile or is malformed (400).
    Invalid,
    /// A guard refused the plan (422).
    Refused,
    /// `expected_generation` does not match the running generation (409).
    Conflict,
    /// A named generation or peer does not exist (404).
    NotFound,
    /// Something broke inside the daemon (500).
    Internal,
    /// The state directory's (or audit log's) file system is full: nothing changed (507).
    NoSpace,
    /// The bundle's compile would exceed the compile memory budget on its own (413).
    TooLarge,
    /// The compiles in flight use the compile memory budget; retry later (503).
    Busy,
    /// A file a delta sent as edits is not the text its digest names once they are applied:
    /// the pusher sends the whole bundle (409 `base_patch`).
    BasePatch,
    /// Another holder's fleet lock lease is live here, or the request claims none (409).
    LeaseHeld,
    /// The claim's fencing token is below the highest seen for its holder (409).
    StaleToken,
    /// The claim names a lease not held here: the holder must acquire it again (409).
    LeaseNotHeld,
    /// The request's deadline passed (by this daemon's clock) before it could commit (409).
    DeadlinePassed,
}

impl EngineErrorKind {
    /// The HTTP status the control API answers with.
    pub fn http_status(self) -> u16 {
        match self {
            EngineErrorKind::Invalid => 400,
            EngineErrorKind::Refused => 422,
            EngineErrorKind::Conflict => 409,
            EngineErrorKind::NotFound => 404,
            EngineErrorKind::Internal => 500,
            EngineErrorKind::NoSpace => 507,
            EngineErrorKind::TooLarge => 413,
            EngineErrorKind::Busy => 503,
            EngineErrorKind::BasePatch
            | EngineErrorKind::LeaseHeld
            | EngineErrorKind::StaleToken
            | EngineErrorKind::LeaseNotHeld
            | EngineErrorKind::DeadlinePassed => 409,
        }
    }
}

/// An engine refusal or failure, as values the client can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct EngineError {
    /// The class of failure; decides the HTTP status.
    pub kind: EngineErrorKind,
    /// One line for humans.
    pub message: String,
    /// Structured detail: compile errors with `file:line:col`, guard violations, the running
    /// generation on a conflict, … (`None`: written as `null`).
    pub detail: Option<Box<ErrorDetail>>,
    /// The running generation when the engine answered, if it knows (for the audit log).
    #[serde(default)]
    pub generation: Option<u64>,
    /// The hash of the plan that was refused, if one was computed (for the audit log).
    #[serde(default)]
    pub plan_hash: Option<String>,
}

impl EngineError {
    /// An error with no structured detail.
    pub fn new(kind: EngineErrorKind, message: impl Into<String>) -> Self {
        EngineError {
            kind,
            message: message.into(),
            detail: None,
            generation: None,
            plan_hash: None,
        }
    }

    /// Adds structured detail.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.detail = Some(Box::new(detail));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_map_to_http_statuses() {
        let statuses: Vec<u16> = [
            EngineErrorKind::Invalid,
            EngineErrorKind::Refused,
            EngineErrorKind::Conflict,
            EngineErrorKind::NotFound,
            EngineErrorKind::Internal,
            EngineErrorKind::NoSpace,
            EngineErrorKind::TooLarge,
            EngineErrorKind::Busy,
            EngineErrorKind::BasePatch,
            EngineErrorKind::LeaseHeld,
            EngineErrorKind::StaleToken,
            EngineErrorKind::LeaseNotHeld,
            EngineErrorKind::DeadlinePassed,
        ]
        .into_iter()
        .map(EngineErrorKind::http_status)
        .collect();
        assert_eq!(
            statuses,
            vec![
                400, 422, 409, 404, 500, 507, 413, 503, 409, 409, 409, 409, 409
            ]
        );
    }
}
