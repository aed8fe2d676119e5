//! The views of the control API's answers, one type per answer, every field the daemon always
//! writes required: [`StatusView`] (`GET /v1/status`), [`RoutesView`] (`/v1/routes`),
//! [`HealthView`] (`/v1/health`), [`PlanView`] (`POST /v1/plan`), [`MutationOutcome`]
//! (apply, rollback), [`DrainView`] (`/v1/drain`), [`TopologyView`] (`/v1/topology`),
//! [`RpkiView`] (`/v1/rpki`), [`VisibilityView`] (`/v1/visibility`), [`GenerationsView`] (`/v1/generations`) and [`ErrorBody`] (any answer that is not 2xx). A client reading
//! an answer gets every field or a serde error naming the one missing or ill-typed.

use serde::{Deserialize, Serialize};

mod answers;
mod health;
mod routes;
mod rpki;
mod status;
#[cfg(test)]
mod tests;
mod visibility;

pub use answers::{
    DrainView, ErrorBody, ErrorDetail, ErrorView, GenerationView, GenerationsView, MutationOutcome,
    OutcomeDetail, PlanView, ServiceAction, ServiceDecisionView, TopologyView,
};
pub use health::{
    CheckResult, CheckView, DrainState, HealthStateView, HealthView, ProbeStateView, RoundCounts,
    ServiceDrain, ServiceHealthView, UnhealthyActionView,
};
pub use routes::{PeerRoutesView, RouteView, RoutesView};
pub use rpki::{
    RouteRpkiState, RpkiCacheView, RpkiInvalidPolicy, RpkiRouteCounts, RpkiRouteView,
    RpkiSyncState, RpkiView, RpkiVrpView,
};
pub use status::{PeerStatus, RouteCounts, StatusHealth, StatusView};
pub use visibility::{
    BmpRouterView, FindingKindView, FindingView, RouterHoldsView, VisibilityView,
};

/// Reads an `Option` field that the daemon always writes (as `null` when empty): a missing key
/// is an error naming it, where serde would otherwise read it as `None`.
pub(crate) fn required<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer)
}

/// A document another crate renders and the API carries whole without reading inside it: a
/// plan (`topology/src/plan/view.rs`), a plan's summary or location delta, compile diagnostics.
/// Any JSON value; `null` when absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Document(pub serde_json::Value);

impl Document {
    /// The document of anything serialisable (`null` if it cannot be serialised, which the
    /// derived serialisations of the topology crate never fail to do).
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Document {
        Document(serde_json::to_value(value).unwrap_or_default())
    }

    /// The document parsed from JSON text (`null` if it is not JSON).
    pub fn parse(text: &str) -> Document {
        Document(serde_json::from_str(text).unwrap_or_default())
    }

    /// Reads the document as `T`, naming what is missing or ill-typed when it is not one.
    pub fn read<T: for<'de> Deserialize<'de>>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        self.0.is_null()
    }
}
