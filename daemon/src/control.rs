//! The control API server: HTTPS with client-certificate authentication, JSON in and out.
//!
//! Owns: the control listener, the TLS handshake of each connection, the identity → role
//! check, and which requests are audited. Request bodies and their limits are in `control/body.rs`,
//! what each endpoint asks the engine in `control/dispatch.rs`, answers (typed views of
//! `topologyd_api`, serialised) in `control/answer.rs`; the audit log itself is `audit.rs`.
//!
//! Must not touch: what a plan, apply or rollback means (the engine decides; this server only
//! carries requests and maps engine error kinds to statuses), engine state, BGP.
//!
//! Endpoints: `POST /v1/plan`, `POST /v1/apply`, `POST /v1/rollback`, `GET /v1/status`,
//! `GET /v1/routes[?peer=NAME]`, `GET /v1/health`, `GET /v1/visibility`, `POST /v1/drain`,
//! `GET /v1/topology`, `GET /v1/sources` (the running files by digest, what a delta push is
//! made against; a plan or apply carrying a delta is resolved to the whole bundle in
//! `control/delta.rs` before the engine sees it),
//! `POST /v1/lease` (the fleet lock; admin only, audited like a mutation).
//!
//! Authentication happens in the TLS handshake: the server config requires a client
//! certificate chaining to the client CA, so a client without one never reaches a handler.
//! Authorization: the certificate's subject CN is looked up in the configured role map;
//! `reader` may plan (a dry run) and read, `admin` may also apply and roll back, and an
//! identity that is not in the map gets 403 on everything.
//!
//! Audit, write-ahead: a mutation (apply, rollback, drain) carries a [`WriteAhead`] to the
//! engine, which appends and fsyncs an `intent` record (identity, request, plan hash, intended
//! verdict) *before* the change takes effect; if that record cannot be written the mutation is
//! refused and nothing changes. The `outcome` record (same `id`) is appended after. Every other
//! request to a mutation path — refused by role, malformed, 413 — and every 404, 405 and 413 on
//! any path gets an `outcome` record, as does a TLS handshake refused after the client presented
//! a certificate naming an identity (`endpoint: "TLS handshake"`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::engine_api::EngineCommand;
use answer::{Answer, respond};
use topologyd_transport::listener_limits::{BusyMarker, ConnectionCaps, ConnectionLimiter};

mod answer;
mod body;
mod delta;
mod dispatch;
#[cfg(test)]
mod tests;

// The audit log is its own module (the engine writes to it too); the request bodies are the
// API crate's. Re-exported here, where the control API's users have found them.
pub use crate::audit::{
    AuditError, AuditLog, AuditRecord, PHASE_INTENT, PHASE_OUTCOME, Role, WriteAhead,
};
pub use topologyd_api::{ApplyRequest, DrainRequest, PlanRequest, RollbackRequest};

/// Default request body limit: 64 MiB (a large topology bundle is a few MiB).
pub const DEFAULT_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// A client that has not finished the TLS handshake within this time is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client that has not sent its request head within this time is dropped.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A request body must have arrived completely within this time (408 otherwise).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// After [`BODY_RATE_GRACE`], a request body must keep arriving at this many bytes per second
/// on average (408 otherwise): a client trickling a body cannot hold a connection for long.
pub const MIN_BODY_BYTES_PER_SECOND: u64 = 64 * 1024;

/// How long a body may arrive at any rate before [`MIN_BODY_BYTES_PER_SECOND`] applies.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(5);

/// Connection caps of the control API (handshakes included): a newcomer displaces the oldest
/// idle connection (`listener_limits.rs`), so idle or handshaking clients cannot lock anyone
/// out, and connections busy with a request are bounded per source address.
pub const CONNECTION_CAPS: ConnectionCaps = ConnectionCaps {
    total: 256,
    per_source: 32,
};

/// A failure of the control server.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Binding the listen address failed.
    #[error("control API: cannot bind {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Accepting failed in a way that stops the listener.
    #[error("control API on {address}: accept failed: {source}")]
    Accept {
        /// The listen address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The audit log could not be opened or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl ControlError {
    /// True when the audit log's file system is full (the mutation is answered 507).
    pub fn is_no_space(&self) -> bool {
        matches!(self, ControlError::Audit(error) if error.is_no_space())
    }
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A request id unique within this daemon's audit log: start time of the process's counter
/// (nanoseconds) and a sequence number.
fn request_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!(
        "{nanos:x}-{}",
        REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What the control server needs besides its socket and TLS config.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Identity (client certificate subject CN) → role.
    pub roles: HashMap<String, Role>,
    /// Largest request body accepted from an `admin`; larger answers 413.
    pub body_limit: u64,
    /// Largest request body accepted from a `reader` (its plans); larger answers 413.
    pub reader_body_limit: u64,
    /// Where mutations are recorded.
    pub audit_log: AuditLog,
}

#[derive(Debug)]
struct Shared {
    settings: ControlSettings,
    engine: mpsc::Sender<EngineCommand>,
    refused_handshakes: std::sync::Mutex<RefusedHandshakeAudit>,
    /// The BMP station's view (`GET /v1/visibility`), read without asking the engine.
    visibility: watch::Receiver<Arc<topologyd_api::VisibilityView>>,
    /// The running generation's file digests, computed once per generation.
    sources: delta::SourcesCache,
}

/// Refused handshakes are audited one by one up to [`REFUSED_HANDSHAKE_AUDITS_PER_MINUTE`] per
/// source address and minute; beyond that they are counted, and the count is audited once with
/// the source's next refusal in a later minute. Anyone can present a self-signed certificate
/// with any name: without this, a handshake flood would grow the audit log (fsync'd) without
/// bound until the disk is full, and then every mutation is refused.
pub const REFUSED_HANDSHAKE_AUDITS_PER_MINUTE: u32 = 10;
/// At most this many source addresses are tracked; past it the oldest windows are forgotten.
const REFUSED_HANDSHAKE_SOURCES: usize = 4096;

#[derive(Debug, Default)]
struct RefusedHandshakeAudit {
    /// Per source: the start of its current minute, refusals in it, and those not audited.
    sources: std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32, u64)>,
}

impl RefusedHandshakeAudit {
    /// Whether to audit this refusal, and how many earlier ones from the source were counted
    /// without a record of their own.
    fn admit(&mut self, source: std::net::IpAddr, now: std::time::Instant) -> (bool, u64) {
        let minute = std::time::Duration::from_secs(60);
        if self.sources.len() >= REFUSED_HANDSHAKE_SOURCES && !self.sources.contains_key(&source) {
            self.sources
                .retain(|_, (started, _, _)| now.duration_since(*started) < minute);
        }
        let entry = self.sources.entry(source).or_insert((now, 0, 0));
        if now.duration_since(entry.0) >= minute {
            let suppressed = entry.2;
            *entry = (now, 1, 0);
            return (true, suppressed);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 <= REFUSED_HANDSHAKE_AUDITS_PER_MINUTE {
            (true, 0)
        } else {
            entry.2 = entry.2.saturating_add(1);
            (false, 0)
        }
    }
}

/// The authenticated client of one connection.
#[derive(Debug)]
struct Caller {
    identity: String,
    role: Option<Role>,
    remote: SocketAddr,
}

/// The control server, bound and ready to serve.
#[derive(Debug)]
pub struct ControlServer {
    listener: TcpListener,
    address: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    shared: Arc<Shared>,
    connections: Arc<ConnectionLimiter>,
}

impl ControlServer {
    /// Binds the control address. `tls` must require client certificates
    /// ([`topologyd_transport::tls::server_config`] does).
    pub async fn bind(
        address: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        settings: ControlSettings,
        engine: mpsc::Sender<EngineCommand>,
    ) -> Result<Self, ControlError> {
        let listener = topologyd_transport::listener_limits::bind_listener(address)
            .map_err(|source| ControlError::Bind { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| ControlError::Bind { address, source })?;
        Ok(ControlServer {
            listener,
            address,
            tls,
            shared: Arc::new(Shared {
                settings,
                engine,
                refused_handshakes: std::sync::Mutex::new(RefusedHandshakeAudit::default()),
                visibility: watch::channel(Arc::new(crate::bmp::listener::disabled_view())).1,
                sources: delta::SourcesCache::default(),
            }),
            connections: ConnectionLimiter::new(CONNECTION_CAPS),
        })
    }

    /// Serves `GET /v1/visibility` from the BMP station's view (without it the view says the
    /// station is off).
    pub fn with_visibility(
        mut self,
        view: watch::Receiver<Arc<topologyd_api::VisibilityView>>,
    ) -> ControlServer {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.visibility = view;
        }
        self
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes; connections in flight finish on their own tasks.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ControlError> {
        let address = self.address;
        topologyd_transport::listener_limits::accept_loop(
            &self.listener,
            &self.connections,
            "control API",
            shutdown,
            |stream, remote, marker| {
                let acceptor = TlsAcceptor::from(Arc::clone(&self.tls));
                serve_connection(acceptor, Arc::clone(&self.shared), stream, remote, marker)
            },
        )
        .await
        .map_err(|source| ControlError::Accept { address, source })
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    marker: BusyMarker,
) {
    let (handshake, refused_identity) = topologyd_transport::tls::record_refused_identity(
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)),
    )
    .await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let (audit, suppressed) = match shared.refused_handshakes.lock() {
                Ok(mut limiter) => limiter.admit(remote.ip(), std::time::Instant::now()),
                Err(_) => (true, 0),
            };
            if !audit {
                return;
            }
            tracing::warn!(%remote, %error, claimed_identity = ?refused_identity, "control API: TLS handshake failed");
            if let Some(identity) = refused_identity {
                // Far enough to name someone: audited, though the name is only claimed.
                let caller = Caller {
                    identity,
                    role: None,
                    remote,
                };
                let record = AuditRecord {
                    phase: Some(PHASE_OUTCOME.to_owned()),
                    verdict: "handshake_refused".to_owned(),
                    message: Some(if suppressed == 0 {
                        format!(
                            "client certificate refused in the TLS handshake (identity as claimed, not verified): {error}"
                        )
                    } else {
                        format!(
                            "client certificate refused in the TLS handshake (identity as claimed, not verified): {error}; {suppressed} earlier refusal(s) from this address were over {REFUSED_HANDSHAKE_AUDITS_PER_MINUTE} a minute and not audited one by one"
                        )
                    }),
                    ..base_record(&caller, "TLS handshake".to_owned())
                };
                if let Err(error) = shared.settings.audit_log.append(&record).await {
                    tracing::error!(%error, ?record, "control API: audit log write failed");
                }
            }
            return;
        }
        Err(_) => {
            tracing::warn!(%remote, "control API: TLS handshake timed out");
            return;
        }
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let identity = match leaf.map(topologyd_transport::tls::certificate_identity) {
        Some(Ok(identity)) => identity,
        Some(Err(error)) => {
            tracing::warn!(%remote, %error, "control API: client certificate refused");
            return;
        }
        None => {
            tracing::warn!(%remote, "control API: no client certificate after handshake");
            return;
        }
    };
    let role = shared.settings.roles.get(&identity).copied();
    let caller = Arc::new(Caller {
        identity,
        role,
        remote,
    });
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let caller = Arc::clone(&caller);
        // Busy (not displaceable) while a request is handled; bounded by the body deadlines.
        let busy = marker.busy();
        async move {
            // On its own task: if the client goes away while a mutation is under way, hyper
            // drops this future, but the mutation and its audit outcome record still finish.
            let handled = tokio::spawn(async move { handle(&shared, &caller, request).await });
            let response = match handled.await {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "control API: request handler failed");
                    respond(Answer::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "the request handler failed".into(),
                    ))
                }
            };
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(tls), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%remote, %error, "control API connection ended with an error");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Plan,
    Apply,
    Rollback,
    Status,
    Routes,
    Health,
    Rpki,
    Visibility,
    Drain,
    Topology,
    Generations,
    Lease,
    Sources,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<(Endpoint, Method)> {
        Some(match path {
            "/v1/plan" => (Endpoint::Plan, Method::POST),
            "/v1/apply" => (Endpoint::Apply, Method::POST),
            "/v1/rollback" => (Endpoint::Rollback, Method::POST),
            "/v1/status" => (Endpoint::Status, Method::GET),
            "/v1/routes" => (Endpoint::Routes, Method::GET),
            "/v1/health" => (Endpoint::Health, Method::GET),
            "/v1/rpki" => (Endpoint::Rpki, Method::GET),
            "/v1/visibility" => (Endpoint::Visibility, Method::GET),
            "/v1/drain" => (Endpoint::Drain, Method::POST),
            "/v1/topology" => (Endpoint::Topology, Method::GET),
            "/v1/generations" => (Endpoint::Generations, Method::GET),
            "/v1/lease" => (Endpoint::Lease, Method::POST),
            "/v1/sources" => (Endpoint::Sources, Method::GET),
            _ => return None,
        })
    }

    fn mutates(self) -> bool {
        matches!(
            self,
            Endpoint::Apply | Endpoint::Rollback | Endpoint::Drain | Endpoint::Lease
        )
    }
}

/// The audit record of one request before anything is known about its answer.
fn base_record(caller: &Caller, endpoint: String) -> AuditRecord {
    AuditRecord {
        time: unix_now(),
        id: Some(request_id()),
        phase: None,
        who: caller.identity.clone(),
        role: caller.role,
        remote: caller.remote.to_string(),
        endpoint,
        request: None,
        generation_before: None,
        generation_after: None,
        plan_hash: None,
        intended_verdict: None,
        verdict: String::new(),
        status: 0,
        message: None,
    }
}

async fn handle(
    shared: &Shared,
    caller: &Caller,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let base = base_record(caller, format!("{} {path}", request.method()));
    let (answer, audited) = match Endpoint::from_path(&path) {
        None => (
            Answer::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no endpoint {path}"),
            ),
            true,
        ),
        Some((_, method)) if request.method() != method => (
            Answer::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{path} takes {method}"),
            ),
            true,
        ),
        Some((endpoint, _)) => {
            let answer = match caller.role {
                None => Answer::error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("identity {:?} has no role on this daemon", caller.identity),
                ),
                Some(Role::Reader) if endpoint.mutates() => Answer::error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "identity {:?} has the reader role and may not {path}",
                        caller.identity
                    ),
                ),
                Some(_) => dispatch::dispatch(shared, caller, endpoint, request, &base).await,
            };
            (answer, endpoint.mutates())
        }
    };
    if !audited && answer.status != StatusCode::PAYLOAD_TOO_LARGE {
        return respond(answer);
    }
    let record = AuditRecord {
        time: unix_now(),
        phase: Some(PHASE_OUTCOME.to_owned()),
        request: answer.request.clone(),
        generation_before: answer.generation_before,
        generation_after: answer.generation_after,
        plan_hash: answer.plan_hash.clone(),
        verdict: answer.verdict.to_owned(),
        status: answer.status.as_u16(),
        message: answer.message.clone(),
        ..base
    };
    match shared.settings.audit_log.append(&record).await {
        Ok(()) => respond(answer),
        Err(error) => {
            // A mutation that took effect has its intent record on disk already (or it would
            // have been refused); the answer stands, with the failure said out loud.
            tracing::error!(%error, ?record, "control API: audit log write failed");
            let mut answer = answer;
            answer.warn_audit(format!(
                "the outcome of this request could not be appended to the audit log: {error}"
            ));
            respond(answer)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
