//! The shell's half of the fleet lock: runs a `POST /v1/lease` the pure rules
//! (`engine/lease.rs`) decided — the new book is persisted (atomic write, fsync) before it
//! takes effect — keeps `topologyd_lease_held` current, and logs and audits every change and
//! refusal, including a lease found expired by the ticker.
//!
//! Must not touch: the rules (the core's [`LeaseBook`] decides), HTTP.

use tracing::{info, warn};

use super::lease::LeaseBook;
use super::{Engine, unix_now_ms};
use crate::engine_api::{EngineError, EngineErrorKind};
use topologyd_api::{LeaseRequest, LeaseView};

impl Engine {
    /// Decides `request` against the book held now, persists the new book, and only then
    /// lets it take effect. Answers the lease held afterwards and one line saying what
    /// changed (the control server's audit record carries it).
    pub(super) async fn lease(
        &mut self,
        request: LeaseRequest,
        who: String,
    ) -> Result<(Option<LeaseView>, String), EngineError> {
        let now_ms = unix_now_ms();
        let action = request.action.as_str();
        let (next, change) = match self.core.lease.decide(&request, now_ms) {
            Ok(decided) => decided,
            Err(error) => {
                warn!(%who, holder = %request.holder, token = request.token, action, %error, "fleet lock request refused");
                return Err(self.core.lease_error(error));
            }
        };
        self.persist_lease(&next).await?;
        self.core.lease = next;
        self.lease_live = self.core.lease.live(now_ms).is_some();
        self.metrics.set_lease_held(self.lease_live);
        let line = change.describe(&request);
        info!(%who, action, "{line}");
        Ok((self.core.lease.view(now_ms), line))
    }

    async fn persist_lease(&self, book: &LeaseBook) -> Result<(), EngineError> {
        let store = self.store.clone();
        let book = book.clone();
        tokio::task::spawn_blocking(move || store.store_lease(&book))
            .await
            .map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), None))?
            .map_err(|error| self.state_write_error(error, "the fleet lock's lease"))
    }

    /// A lease seen live that has now expired: said in the log, the audit log and the metric.
    pub(super) fn notice_lease_expiry(&mut self) {
        let now_ms = unix_now_ms();
        let live = self.core.lease.live(now_ms).is_some();
        if self.lease_live && !live {
            let message = match &self.core.lease.lease {
                Some(lease) => format!(
                    "lease of `{}` token {} expired (not renewed within {} s)",
                    lease.holder, lease.token, lease.ttl_seconds
                ),
                None => "lease expired".to_owned(),
            };
            warn!("fleet lock: {message}");
            self.audit("lease", "expired", message);
        }
        self.lease_live = live;
        self.metrics.set_lease_held(live);
    }

    /// A mutation the fleet lock refused: said in the log (the control server audits it).
    pub(super) fn log_lease_refusal(&self, error: &EngineError) {
        if matches!(
            error.kind,
            EngineErrorKind::LeaseHeld
                | EngineErrorKind::StaleToken
                | EngineErrorKind::LeaseNotHeld
        ) {
            warn!(kind = ?error.kind, message = %error.message, "apply or rollback refused by the fleet lock");
        }
    }
}
