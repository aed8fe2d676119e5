//! The control API's vocabulary, shared by the daemon (which answers) and its clients
//! (`topoctl`, the rollout controller): one type per request body and per answer, with the
//! fields each answer always has required, so a client that reads an answer gets either every
//! field or an error naming the missing one — never a silent default.
//!
//! Owns: [`SourceFile`] and [`SourceBundle`] (the one named-TOML-source type: config, topology,
//! state store and harness use it), [`Intent`] (parsed once, where a request arrives), the
//! request bodies ([`request`]), delta pushes ([`delta`]: only the changed files travel, large
//! ones as edits: [`patch`]) and the views of every answer ([`view`]).
//!
//! Must not touch: I/O, HTTP, the meaning of a request (the daemon's engine decides). Pure data.
//! Documents the topology crate renders (a plan, its summary, compile diagnostics) are carried
//! whole as [`Document`]s: the API passes them on and never reads inside them.

pub mod delta;
pub mod intent;
pub mod lease;
pub mod patch;
pub mod request;
pub mod source;
pub mod view;

pub use delta::{BundleDelta, DeltaError, SourceDigest, SourcesView};
pub use intent::{
    EXIT_CHANGES_ALLOWED, EXIT_CHANGES_MADE, EXIT_CONFLICT, EXIT_INVALID, EXIT_NO_CHANGE,
    EXIT_PAUSED, EXIT_REFUSED, EXIT_ROLLED_BACK, EXIT_UNREACHABLE, EXIT_USAGE, Intent, IntentError,
    Override, Verdict,
};
pub use lease::{LeaseAction, LeaseClaim, LeaseRequest, LeaseView};
pub use patch::{FilePatch, PatchError, TextEdit};
pub use request::{ApplyRequest, DrainRequest, PlanRequest, RollbackRequest};
pub use source::{SharedText, SourceBundle, SourceFile, Text};
pub use view::{
    Document, DrainView, ErrorBody, ErrorDetail, ErrorView, GenerationView, GenerationsView,
    HealthView, MutationOutcome, OutcomeDetail, PeerRoutesView, PeerStatus, PlanView, RouteCounts,
    RouteRpkiState, RouteView, RoutesView, RpkiCacheView, RpkiInvalidPolicy, RpkiRouteCounts,
    RpkiRouteView, RpkiSyncState, RpkiView, RpkiVrpView, ServiceAction, ServiceDecisionView,
    ServiceHealthView, StatusHealth, StatusView, TopologyView, VisibilityView,
};
