//! The control API server: HTTPS with client-certificate authentication, JSON in and out.
//!
//! Owns: the control listener, the TLS handshake of each connection, the identity → role
//! check, request parsing and size limits, the audit log file, and the translation of each
//! request into an [`EngineCommand`] sent to the engine task (answer on a `oneshot`).
//!
//! Must not touch: what a plan, apply or rollback means (the engine decides; this file only
//! carries requests and maps [`EngineError`] kinds to statuses), engine state, BGP.
//!
//! Endpoints: `POST /v1/plan`, `POST /v1/apply`, `POST /v1/rollback`, `GET /v1/status`,
//! `GET /v1/routes[?peer=NAME]`, `GET /v1/health`, `POST /v1/drain`, `GET /v1/topology`.
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
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;

use crate::engine_api::{EngineCommand, EngineError, MutationOutcome, Reply};
use crate::listener_limits::{Admission, BusyMarker, ConnectionCaps, ConnectionLimiter};
use crate::state_store::SourceBundle;

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

/// What a client identity may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Plan, apply, roll back, read.
    Admin,
    /// Plan (dry run) and read only.
    Reader,
}

/// `POST /v1/plan` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRequest {
    /// The sources to plan.
    pub bundle: SourceBundle,
    /// Intent lines (free text, recorded with the generation).
    #[serde(default)]
    pub intent: Vec<String>,
}

/// `POST /v1/apply` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The sources to apply.
    pub bundle: SourceBundle,
    /// Intent lines.
    pub intent: Vec<String>,
    /// Compare-and-swap: the generation the pusher planned against; 409 if it is not running.
    pub expected_generation: Option<u64>,
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
}

/// `phase` of the record written before a mutation takes effect.
pub const PHASE_INTENT: &str = "intent";
/// `phase` of the record written once the answer is decided.
pub const PHASE_OUTCOME: &str = "outcome";

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unix seconds when the record was written.
    pub time: u64,
    /// Ties a mutation's `intent` record to its `outcome` record.
    #[serde(default)]
    pub id: Option<String>,
    /// `intent` (written and fsync'd before a mutation takes effect) or `outcome`; absent on
    /// the engine's own records (health transitions).
    #[serde(default)]
    pub phase: Option<String>,
    /// The client certificate's identity.
    pub who: String,
    /// Its role, if it has one.
    pub role: Option<Role>,
    /// Client address.
    pub remote: String,
    /// `POST /v1/apply`, …
    pub endpoint: String,
    /// What was asked: for an apply the bundle's SHA-256, size, file names, intent and
    /// expected generation; for a rollback the generation; for a drain its arguments.
    #[serde(default)]
    pub request: Option<Value>,
    /// Running generation before, when known.
    pub generation_before: Option<u64>,
    /// Running generation after, when known.
    pub generation_after: Option<u64>,
    /// Hash of the plan applied or refused, when one was computed.
    pub plan_hash: Option<String>,
    /// On an `intent` record: the plan's verdict the change goes ahead on
    /// (`changes_allowed`, `drain`, `undrain`).
    #[serde(default)]
    pub intended_verdict: Option<String>,
    /// `intent` on an intent record; otherwise `applied`, `invalid`, `refused`, `conflict`,
    /// `not_found`, `internal`, `no_space`, `forbidden`, `rejected` (unreadable request or
    /// too large), `method_not_allowed`, `handshake_refused`, `unavailable` (engine not running).
    pub verdict: String,
    /// The HTTP status answered.
    pub status: u16,
    /// The error message, if any.
    pub message: Option<String>,
}

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
    #[error("control API: audit log {}: {source}", path.display())]
    Audit {
        /// The audit log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl ControlError {
    /// True when the audit log's file system is full (the mutation is answered 507).
    pub fn is_no_space(&self) -> bool {
        matches!(self, ControlError::Audit { source, .. } if crate::state_store::is_storage_full(source))
    }
}

/// The write-ahead half of a mutation's audit: what the control API knows (identity, request),
/// completed by the engine with the plan hash and intended verdict and written, fsync'd, before
/// the change takes effect.
#[derive(Debug, Clone)]
pub struct WriteAhead {
    log: AuditLog,
    record: AuditRecord,
}

impl WriteAhead {
    /// Appends and fsyncs the `intent` record. An `Err` means the mutation must not happen.
    pub async fn record(
        &self,
        generation_before: u64,
        generation_after: u64,
        plan_hash: Option<String>,
        intended_verdict: &str,
    ) -> Result<(), ControlError> {
        let mut record = self.record.clone();
        record.time = unix_now();
        record.phase = Some(PHASE_INTENT.to_owned());
        record.generation_before = Some(generation_before);
        record.generation_after = Some(generation_after);
        record.plan_hash = plan_hash;
        record.intended_verdict = Some(intended_verdict.to_owned());
        record.verdict = PHASE_INTENT.to_owned();
        self.log.append(&record).await
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

/// The append-only audit log: one JSON object per line, fsync'd after each.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl AuditLog {
    /// Opens (creating with mode 0600) the audit log for appending.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, ControlError> {
        let path = path.into();
        let audit_error = |source| ControlError::Audit {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(audit_error)?;
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(audit_error)?;
        }
        Ok(AuditLog {
            path,
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record and fsyncs (on a blocking thread).
    pub async fn append(&self, record: &AuditRecord) -> Result<(), ControlError> {
        let mut line = serde_json::to_vec(record).map_err(|error| ControlError::Audit {
            path: self.path.clone(),
            source: std::io::Error::other(error),
        })?;
        line.push(b'\n');
        let file = Arc::clone(&self.file);
        let written = tokio::task::spawn_blocking(move || {
            // A poisoned lock only means another append panicked; the file is still usable.
            let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .unwrap_or_else(|join_error| Err(std::io::Error::other(join_error)));
        written.map_err(|source| ControlError::Audit {
            path: self.path.clone(),
            source,
        })
    }
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
    /// ([`crate::tls::server_config`] does).
    pub async fn bind(
        address: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        settings: ControlSettings,
        engine: mpsc::Sender<EngineCommand>,
    ) -> Result<Self, ControlError> {
        let listener = crate::listener_limits::bind_listener(address)
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
            }),
            connections: ConnectionLimiter::new(CONNECTION_CAPS),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes; connections in flight finish on their own tasks.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ControlError> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                () = &mut shutdown => return Ok(()),
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) if crate::listener_limits::is_transient_accept_error(&error) => {
                        tracing::warn!(%error, "control API: accept failed, retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(source) => return Err(ControlError::Accept { address: self.address, source }),
                },
            };
            let admission = match self.connections.admit(remote.ip()) {
                Ok(admission) => admission,
                Err(refused) => {
                    tracing::warn!(%remote, %refused, "control API: closing a new connection");
                    crate::listener_limits::refuse(stream);
                    continue;
                }
            };
            let acceptor = TlsAcceptor::from(Arc::clone(&self.tls));
            let shared = Arc::clone(&self.shared);
            tokio::spawn(serve_admitted(acceptor, shared, stream, remote, admission));
        }
    }
}

/// Serves one admitted connection until it ends or a newcomer displaces it while idle.
async fn serve_admitted(
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    mut admission: Admission,
) {
    let marker = admission.marker();
    tokio::select! {
        () = serve_connection(acceptor, shared, stream, remote, marker) => {}
        _ = &mut admission.evicted => {
            tracing::debug!(%remote, "control API: closed an idle connection to make room");
        }
    }
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    marker: BusyMarker,
) {
    let (handshake, refused_identity) = crate::tls::record_refused_identity(tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        acceptor.accept(stream),
    ))
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
    let identity = match leaf.map(crate::tls::certificate_identity) {
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
    Drain,
    Topology,
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
            "/v1/drain" => (Endpoint::Drain, Method::POST),
            "/v1/topology" => (Endpoint::Topology, Method::GET),
            _ => return None,
        })
    }

    fn mutates(self) -> bool {
        matches!(self, Endpoint::Apply | Endpoint::Rollback | Endpoint::Drain)
    }
}

/// A decided answer plus what the audit log records about it.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: Value,
    verdict: &'static str,
    generation_before: Option<u64>,
    generation_after: Option<u64>,
    plan_hash: Option<String>,
    message: Option<String>,
    /// What was asked, for the audit record (mutations whose body could be read).
    request: Option<Value>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Answer {
            status: StatusCode::OK,
            body,
            verdict: "ok",
            generation_before: None,
            generation_after: None,
            plan_hash: None,
            message: None,
            request: None,
        }
    }

    fn error(status: StatusCode, verdict: &'static str, message: String) -> Self {
        Answer {
            status,
            body: json!({ "error": { "kind": verdict, "message": message, "detail": null } }),
            verdict,
            generation_before: None,
            generation_after: None,
            plan_hash: None,
            message: Some(message),
            request: None,
        }
    }

    fn applied(outcome: MutationOutcome) -> Self {
        Answer {
            status: StatusCode::OK,
            verdict: "applied",
            generation_before: Some(outcome.generation_before),
            generation_after: Some(outcome.generation_after),
            plan_hash: Some(outcome.plan_hash.clone()),
            message: None,
            request: None,
            body: serde_json::to_value(&outcome).unwrap_or(Value::Null),
        }
    }

    fn engine_error(error: EngineError) -> Self {
        let verdict = match error.kind {
            crate::engine_api::EngineErrorKind::Invalid => "invalid",
            crate::engine_api::EngineErrorKind::Refused => "refused",
            crate::engine_api::EngineErrorKind::Conflict => "conflict",
            crate::engine_api::EngineErrorKind::NotFound => "not_found",
            crate::engine_api::EngineErrorKind::Internal => "internal",
            crate::engine_api::EngineErrorKind::NoSpace => "no_space",
            crate::engine_api::EngineErrorKind::TooLarge => "too_large",
            crate::engine_api::EngineErrorKind::Busy => "busy",
        };
        Answer {
            status: StatusCode::from_u16(error.kind.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: json!({ "error": {
                "kind": verdict,
                "message": error.message,
                "detail": error.detail,
            } }),
            verdict,
            generation_before: error.generation,
            generation_after: error.generation,
            plan_hash: error.plan_hash,
            message: Some(error.message),
            request: None,
        }
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
                Some(_) => dispatch(shared, caller, endpoint, request, &base).await,
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
            if let Some(body) = answer.body.as_object_mut() {
                body.insert(
                    "audit_warning".to_owned(),
                    Value::String(format!(
                        "the outcome of this request could not be appended to the audit log: {error}"
                    )),
                );
            }
            respond(answer)
        }
    }
}

/// What an apply asked for, as the audit log records it: the bundle's hash, not its text.
fn apply_summary(body: &ApplyRequest) -> Value {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    let mut bytes = 0;
    for source in &body.bundle.sources {
        hasher.update(source.name.as_bytes());
        hasher.update([0]);
        hasher.update(source.text.as_bytes());
        hasher.update([0]);
        bytes += source.text.len();
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    json!({
        "bundle_sha256": digest,
        "bundle_bytes": bytes,
        "sources": body.bundle.sources.iter().map(|source| source.name.as_str()).collect::<Vec<_>>(),
        "intent": body.intent,
        "expected_generation": body.expected_generation,
    })
}

async fn dispatch(
    shared: &Shared,
    caller: &Caller,
    endpoint: Endpoint,
    request: Request<Incoming>,
    base: &AuditRecord,
) -> Answer {
    let write_ahead = |summary: &Value| WriteAhead {
        log: shared.settings.audit_log.clone(),
        record: AuditRecord {
            request: Some(summary.clone()),
            ..base.clone()
        },
    };
    let limit = match caller.role {
        Some(Role::Admin) => shared.settings.body_limit,
        _ => shared.settings.reader_body_limit,
    };
    let engine = &shared.engine;
    match endpoint {
        Endpoint::Plan => {
            let body: PlanRequest = match read_json(request, limit).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            match ask(engine, |reply| EngineCommand::Plan {
                bundle: body.bundle,
                intent: body.intent,
                reply,
            })
            .await
            {
                Ok(plan) => Answer::ok(plan),
                Err(answer) => answer,
            }
        }
        Endpoint::Apply => {
            let body: ApplyRequest = match read_json(request, limit).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let summary = apply_summary(&body);
            let mut answer = match ask(engine, |reply| EngineCommand::Apply {
                bundle: body.bundle,
                intent: body.intent,
                expected_generation: body.expected_generation,
                who: caller.identity.clone(),
                write_ahead: Some(write_ahead(&summary)),
                reply,
            })
            .await
            {
                Ok(outcome) => Answer::applied(outcome),
                Err(answer) => answer,
            };
            answer.request = Some(summary);
            answer
        }
        Endpoint::Rollback => {
            let body: RollbackRequest = match read_json(request, limit).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let summary = json!({
                "generation": body.generation,
                "expected_generation": body.expected_generation,
            });
            let mut answer = match ask(engine, |reply| EngineCommand::Rollback {
                generation: body.generation,
                expected_generation: body.expected_generation,
                who: caller.identity.clone(),
                write_ahead: Some(write_ahead(&summary)),
                reply,
            })
            .await
            {
                Ok(outcome) => Answer::applied(outcome),
                Err(answer) => answer,
            };
            answer.request = Some(summary);
            answer
        }
        Endpoint::Status => match ask(engine, |reply| EngineCommand::Status { reply }).await {
            Ok(status) => Answer::ok(status),
            Err(answer) => answer,
        },
        Endpoint::Routes => {
            let peer = match query_parameter(request.uri().query(), "peer") {
                Ok(peer) => peer,
                Err(message) => return Answer::error(StatusCode::BAD_REQUEST, "invalid", message),
            };
            match ask(engine, |reply| EngineCommand::Routes { peer, reply }).await {
                Ok(routes) => Answer::ok(routes),
                Err(answer) => answer,
            }
        }
        Endpoint::Health => match ask(engine, |reply| EngineCommand::Health { reply }).await {
            Ok(health) => Answer::ok(health),
            Err(answer) => answer,
        },
        Endpoint::Topology => match ask(engine, |reply| EngineCommand::Topology { reply }).await {
            Ok(topology) => Answer::ok(topology),
            Err(answer) => answer,
        },
        Endpoint::Drain => {
            let body: DrainRequest = match read_json(request, limit).await {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            // The audit line says what was asked, whatever the answer.
            let what = format!(
                "{} {}{}: {}",
                if body.drain { "drain" } else { "undrain" },
                body.service.as_deref().map_or_else(
                    || "the location".to_owned(),
                    |service| format!("service {service}")
                ),
                if body.force { " (force)" } else { "" },
                if body.reason.is_empty() {
                    "no reason given"
                } else {
                    body.reason.as_str()
                },
            );
            let summary = json!({
                "service": body.service,
                "drain": body.drain,
                "force": body.force,
                "reason": body.reason,
            });
            let mut answer = match ask(engine, |reply| EngineCommand::Drain {
                service: body.service.clone(),
                drain: body.drain,
                force: body.force,
                reason: body.reason.clone(),
                who: caller.identity.clone(),
                write_ahead: Some(write_ahead(&summary)),
                reply,
            })
            .await
            {
                Ok(result) => {
                    let mut answer = Answer::ok(result);
                    answer.verdict = "applied";
                    answer
                }
                Err(answer) => answer,
            };
            answer.message = Some(match answer.message.take() {
                Some(error) => format!("{what}; {error}"),
                None => what,
            });
            answer.request = Some(summary);
            answer
        }
    }
}

/// Sends a command to the engine and waits for its answer.
async fn ask<T>(
    engine: &mpsc::Sender<EngineCommand>,
    command: impl FnOnce(Reply<T>) -> EngineCommand,
) -> Result<T, Answer> {
    let unavailable = || {
        Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the engine is not running (daemon starting or stopping)".to_owned(),
        )
    };
    let (reply, answer) = oneshot::channel();
    engine
        .send(command(reply))
        .await
        .map_err(|_| unavailable())?;
    match answer.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Answer::engine_error(error)),
        Err(_) => Err(unavailable()),
    }
}

/// Reads and parses a JSON body: 413 over the limit, 400 if unreadable or not the expected
/// shape (the message carries serde's line and column).
async fn read_json<T: DeserializeOwned + Send + 'static>(
    request: Request<Incoming>,
    limit: u64,
) -> Result<T, Answer> {
    let too_large = || {
        Answer::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "rejected",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes = read_body(Limited::new(request.into_body(), limit_bytes))
        .await
        .map_err(|failure| match failure {
            BodyFailure::TooLarge => too_large(),
            BodyFailure::TooSlow(message) => {
                Answer::error(StatusCode::REQUEST_TIMEOUT, "rejected", message)
            }
            BodyFailure::Unreadable(message) => Answer::error(
                StatusCode::BAD_REQUEST,
                "rejected",
                format!("cannot read request body: {message}"),
            ),
        })?;
    let small = bytes.len() <= PARSE_INLINE_BYTES;
    // A file of the bundle that is not UTF-8 is an invalid topology (exit 4 at topoctl),
    // reported at the file's line and column like a compile error; anything else that does not
    // parse is a malformed request.
    let parse = move || {
        if let Some(diagnostic) = crate::bundle::undecodable_file(&bytes) {
            return Err(BodyError::Undecodable(diagnostic));
        }
        serde_json::from_slice::<T>(&bytes)
            .map_err(|error| BodyError::Malformed(format!("malformed JSON request body: {error}")))
    };
    let parsed = if small {
        parse()
    } else {
        // A large body takes a while to parse: not on a runtime worker the engine shares.
        tokio::task::spawn_blocking(parse)
            .await
            .unwrap_or_else(|join| {
                Err(BodyError::Malformed(format!(
                    "parsing the request body failed: {join}"
                )))
            })
    };
    parsed.map_err(|failure| match failure {
        BodyError::Undecodable(diagnostic) => {
            let diagnostics = topologyd_config::Diagnostics {
                items: vec![diagnostic],
            };
            let mut answer = Answer::error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the topology does not compile: 1 error(s)".into(),
            );
            answer.body["error"]["detail"] = json!({
                "diagnostics": serde_json::to_value(&diagnostics).unwrap_or(Value::Null),
                "text": diagnostics.to_string(),
            });
            answer
        }
        BodyError::Malformed(message) => {
            Answer::error(StatusCode::BAD_REQUEST, "rejected", message)
        }
    })
}

/// Why a request body that arrived whole cannot be used.
enum BodyError {
    /// A file of the bundle is not UTF-8.
    Undecodable(topologyd_config::Diagnostic),
    Malformed(String),
}

enum BodyFailure {
    TooLarge,
    TooSlow(String),
    Unreadable(String),
}

/// Reads a body within [`BODY_READ_TIMEOUT`], at [`MIN_BODY_BYTES_PER_SECOND`] on average once
/// [`BODY_RATE_GRACE`] has passed.
async fn read_body(mut body: Limited<Incoming>) -> Result<Bytes, BodyFailure> {
    let started = tokio::time::Instant::now();
    let mut received: Vec<u8> = Vec::new();
    loop {
        let elapsed = started.elapsed();
        if elapsed >= BODY_READ_TIMEOUT {
            return Err(BodyFailure::TooSlow(format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            )));
        }
        let required = elapsed.saturating_sub(BODY_RATE_GRACE).as_secs_f64()
            * MIN_BODY_BYTES_PER_SECOND as f64;
        if (received.len() as f64) < required {
            return Err(BodyFailure::TooSlow(format!(
                "the request body arrives at less than {MIN_BODY_BYTES_PER_SECOND} bytes per second ({} bytes in {:.1} s)",
                received.len(),
                elapsed.as_secs_f64()
            )));
        }
        // Check the rate at least every 250 ms while waiting for the next frame.
        let frame = tokio::time::timeout(Duration::from_millis(250), body.frame()).await;
        match frame {
            Err(_) => continue,
            Ok(None) => return Ok(Bytes::from(received)),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    received.extend_from_slice(&data);
                }
            }
            Ok(Some(Err(error))) => {
                return Err(if error.downcast_ref::<LengthLimitError>().is_some() {
                    BodyFailure::TooLarge
                } else {
                    BodyFailure::Unreadable(error.to_string())
                });
            }
        }
    }
}

/// Bodies up to this size are parsed on the connection's task; larger ones on the blocking pool.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

/// The value of `name` in a query string, percent-decoded.
fn query_parameter(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == name {
            return percent_decode(value).map(Some).ok_or_else(|| {
                format!("query parameter {name} is not valid percent-encoded UTF-8")
            });
        }
    }
    Ok(None)
}

fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        if byte == b'%' {
            let high = char::from(input.next()?).to_digit(16)?;
            let low = char::from(input.next()?).to_digit(16)?;
            bytes.push(u8::try_from(high * 16 + low).ok()?);
        } else {
            bytes.push(byte);
        }
    }
    String::from_utf8(bytes).ok()
}

fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(&answer.body).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = answer.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::control_client::{ClientError, ControlClient};
    use crate::engine_api::EngineErrorKind;
    use crate::state_store::SourceFile;
    use crate::tls::{self, TlsFiles};
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    struct Identity {
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        certificate_pem: String,
        key_pem: String,
    }

    struct Pki {
        dir: tempfile::TempDir,
        ca: CertificateDer<'static>,
        ca_pem: String,
        server: Identity,
        admin: Identity,
        reader: Identity,
        stranger: Identity,
        untrusted: Identity,
    }

    fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    fn issue(ca: &CertifiedIssuer<'static, KeyPair>, common_name: &str, dns: &[&str]) -> Identity {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = dns.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let certificate = params.signed_by(&key, ca).unwrap();
        Identity {
            chain: vec![certificate.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            certificate_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn pki() -> Pki {
        let ca = certificate_authority("topologyd test CA");
        let other_ca = certificate_authority("someone else's CA");
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            server: issue(&ca, "topologyd", &["localhost"]),
            admin: issue(&ca, "alice", &[]),
            reader: issue(&ca, "robot-reader", &[]),
            stranger: issue(&ca, "mallory", &[]),
            untrusted: issue(&other_ca, "alice", &[]),
        }
    }

    /// A fake engine: answers every command and forwards a description of it to the test.
    fn fake_engine() -> (mpsc::Sender<EngineCommand>, mpsc::UnboundedReceiver<String>) {
        let (commands, mut receiver) = mpsc::channel::<EngineCommand>(8);
        let (seen, seen_receiver) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(command) = receiver.recv().await {
                match command {
                    EngineCommand::Plan { bundle, reply, .. } => {
                        let _ = seen.send(format!("plan {}", bundle.sources.len()));
                        let _ = reply.send(Ok(json!({ "changes": 1 })));
                    }
                    EngineCommand::Apply {
                        expected_generation,
                        who,
                        write_ahead,
                        reply,
                        ..
                    } => {
                        let _ = seen.send(format!("apply by {who}"));
                        // As the engine does: the intent record first, or no change.
                        let recorded = match (&write_ahead, expected_generation) {
                            (Some(write_ahead), Some(7)) => write_ahead
                                .record(7, 8, Some("sha256:feed".to_owned()), "changes_allowed")
                                .await
                                .map_err(|error| {
                                    EngineError::new(
                                        if error.is_no_space() {
                                            EngineErrorKind::NoSpace
                                        } else {
                                            EngineErrorKind::Internal
                                        },
                                        format!("refused, nothing changed: {error}"),
                                    )
                                }),
                            _ => Ok(()),
                        };
                        let answer = if let Err(error) = recorded {
                            Err(error)
                        } else if expected_generation == Some(7) {
                            Ok(MutationOutcome {
                                generation_before: 7,
                                generation_after: 8,
                                plan_hash: "sha256:feed".to_owned(),
                                detail: json!({}),
                            })
                        } else {
                            let mut error = EngineError::new(
                                EngineErrorKind::Conflict,
                                "running generation is 7",
                            );
                            error.generation = Some(7);
                            Err(error)
                        };
                        let _ = reply.send(answer);
                    }
                    EngineCommand::Rollback { reply, .. } => {
                        let _ = reply.send(Err(EngineError::new(
                            EngineErrorKind::NotFound,
                            "generation 3 is not kept",
                        )));
                    }
                    EngineCommand::Status { reply } => {
                        let _ = seen.send("status".to_owned());
                        let _ = reply.send(Ok(json!({ "generation": 7 })));
                    }
                    EngineCommand::Routes { peer, reply } => {
                        let _ = seen.send(format!("routes {peer:?}"));
                        let _ = reply.send(Ok(json!({ "routes": [] })));
                    }
                    other => {
                        let _ = seen.send(format!("{other:?}"));
                    }
                }
            }
        });
        (commands, seen_receiver)
    }

    struct Running {
        address: SocketAddr,
        audit: PathBuf,
        seen: mpsc::UnboundedReceiver<String>,
    }

    async fn start(pki: &Pki, body_limit: u64) -> Running {
        start_with_audit(pki, body_limit, pki.dir.path()).await
    }

    async fn start_with_audit(pki: &Pki, body_limit: u64, audit_dir: &Path) -> Running {
        start_with(pki, body_limit, body_limit, audit_dir).await
    }

    async fn start_with(
        pki: &Pki,
        body_limit: u64,
        reader_body_limit: u64,
        audit_dir: &Path,
    ) -> Running {
        // The server loads its material from PEM files, as the daemon does.
        let write = |name: &str, pem: &str| {
            let path = pki.dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let files = TlsFiles {
            certificate: write("server.pem", &pki.server.certificate_pem),
            private_key: write("server.key", &pki.server.key_pem),
            ca: write("ca.pem", &pki.ca_pem),
        };
        let audit = audit_dir.join("audit.jsonl");
        let settings = ControlSettings {
            roles: HashMap::from([
                ("alice".to_owned(), Role::Admin),
                ("robot-reader".to_owned(), Role::Reader),
            ]),
            body_limit,
            reader_body_limit,
            audit_log: AuditLog::open(&audit).unwrap(),
        };
        let (engine, seen) = fake_engine();
        let server = ControlServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            tls::server_config(&files).unwrap(),
            settings,
            engine,
        )
        .await
        .unwrap();
        let address = server.local_addr();
        tokio::spawn(server.run(std::future::pending()));
        Running {
            address,
            audit,
            seen,
        }
    }

    fn client(pki: &Pki, running: &Running, identity: Option<&Identity>) -> ControlClient {
        let identity = identity.map(|identity| (identity.chain.clone(), identity.key.clone_key()));
        let config =
            tls::client_config_from(identity, vec![pki.ca.clone()], Path::new("test CA")).unwrap();
        ControlClient::new(running.address, "localhost", config).unwrap()
    }

    fn bundle() -> SourceBundle {
        SourceBundle {
            sources: vec![SourceFile {
                name: "services.toml".to_owned(),
                text: "[service.web]\n".to_owned(),
            }],
        }
    }

    fn status_of(error: &ClientError) -> Option<u16> {
        match error {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    #[tokio::test]
    async fn client_without_certificate_is_refused_in_the_handshake() {
        let pki = pki();
        let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
        // TLS 1.3: the client learns of the refusal from the server's alert on its first read.
        let error = client(&pki, &running, None).status().await.unwrap_err();
        assert_eq!(status_of(&error), None, "{error}");
        assert!(
            format!("{error:?}").contains("CertificateRequired"),
            "{error:?}"
        );
        let untrusted = client(&pki, &running, Some(&pki.untrusted));
        let error = untrusted.status().await.unwrap_err();
        assert_eq!(status_of(&error), None, "{error}");
        assert!(format!("{error:?}").contains("UnknownCA"), "{error:?}");
        assert!(running.seen.try_recv().is_err(), "a handler ran");
        // No certificate names no one; the untrusted one names "alice" (as claimed): audited.
        let records = wait_for_records(&running.audit, 1).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].who, "alice");
        assert_eq!(records[0].endpoint, "TLS handshake");
        assert_eq!(records[0].verdict, "handshake_refused");
        assert_eq!(records[0].role, None);
        let message = records[0].message.as_deref().unwrap_or("");
        assert!(message.contains("not verified"), "{message}");
    }

    /// The audit log's records once it holds at least `count` (the server appends after it
    /// answers, or after a handshake fails).
    async fn wait_for_records(audit: &Path, count: usize) -> Vec<AuditRecord> {
        for _ in 0..100 {
            let text = std::fs::read_to_string(audit).unwrap();
            let records: Vec<AuditRecord> = text
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            if records.len() >= count {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the audit log never held {count} records");
    }

    #[tokio::test]
    async fn reader_may_read_and_plan_but_not_apply() {
        let pki = pki();
        let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
        let reader = client(&pki, &running, Some(&pki.reader));
        assert_eq!(reader.status().await.unwrap(), json!({ "generation": 7 }));
        assert_eq!(running.seen.recv().await.unwrap(), "status");
        reader.routes(Some("192.0.2.1 x")).await.unwrap();
        assert_eq!(
            running.seen.recv().await.unwrap(),
            "routes Some(\"192.0.2.1 x\")"
        );
        reader.plan(&bundle(), &[]).await.unwrap();
        assert_eq!(running.seen.recv().await.unwrap(), "plan 1");
        let error = reader
            .apply(&bundle(), &["x".to_owned()], Some(7))
            .await
            .unwrap_err();
        assert_eq!(status_of(&error), Some(403), "{error}");
        assert!(running.seen.try_recv().is_err(), "apply reached the engine");
        let audit = std::fs::read_to_string(&running.audit).unwrap();
        let record: AuditRecord = serde_json::from_str(audit.trim()).unwrap();
        assert_eq!(record.who, "robot-reader");
        assert_eq!(record.verdict, "forbidden");

        let stranger = client(&pki, &running, Some(&pki.stranger));
        let error = stranger.status().await.unwrap_err();
        assert_eq!(status_of(&error), Some(403), "{error}");
    }

    #[tokio::test]
    async fn admin_apply_reaches_the_engine_and_is_audited() {
        let pki = pki();
        let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
        // topoctl loads its material from PEM files.
        let write = |name: &str, pem: &str| {
            let path = pki.dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let files = TlsFiles {
            certificate: write("alice.pem", &pki.admin.certificate_pem),
            private_key: write("alice.key", &pki.admin.key_pem),
            ca: write("ca.pem", &pki.ca_pem),
        };
        let admin = ControlClient::new(
            running.address,
            "localhost",
            tls::client_config(&files).unwrap(),
        )
        .unwrap();
        let outcome = admin
            .apply(&bundle(), &["add web".to_owned()], Some(7))
            .await
            .unwrap();
        assert_eq!(outcome["generation_after"], 8);
        assert_eq!(running.seen.recv().await.unwrap(), "apply by alice");
        let error = admin.apply(&bundle(), &[], Some(6)).await.unwrap_err();
        assert_eq!(status_of(&error), Some(409), "{error}");
        let error = admin.rollback(3, None).await.unwrap_err();
        assert_eq!(status_of(&error), Some(404), "{error}");

        let audit = std::fs::read_to_string(&running.audit).unwrap();
        let records: Vec<AuditRecord> = audit
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(records.len(), 4, "{audit}");
        // Write-ahead: the intent (identity, request, plan hash, intended verdict), then the
        // outcome under the same id.
        assert_eq!(records[0].phase.as_deref(), Some(PHASE_INTENT));
        assert_eq!(records[0].who, "alice");
        assert_eq!(records[0].endpoint, "POST /v1/apply");
        assert_eq!(records[0].plan_hash.as_deref(), Some("sha256:feed"));
        assert_eq!(
            records[0].intended_verdict.as_deref(),
            Some("changes_allowed")
        );
        let request = records[0].request.clone().unwrap();
        assert_eq!(request["intent"], json!(["add web"]));
        assert_eq!(request["sources"], json!(["services.toml"]));
        assert_eq!(request["expected_generation"], 7);
        assert!(request["bundle_sha256"].as_str().unwrap().len() == 64);
        assert_eq!(records[1].phase.as_deref(), Some(PHASE_OUTCOME));
        assert_eq!(records[1].id, records[0].id);
        assert_eq!(records[1].verdict, "applied");
        assert_eq!(records[1].generation_before, Some(7));
        assert_eq!(records[1].generation_after, Some(8));
        assert_eq!(records[1].plan_hash.as_deref(), Some("sha256:feed"));
        assert_eq!(records[2].verdict, "conflict");
        assert_eq!(records[2].status, 409);
        assert_ne!(records[2].id, records[1].id);
        assert_eq!(records[3].endpoint, "POST /v1/rollback");
        assert_eq!(records[3].verdict, "not_found");
        assert_eq!(records[3].request.clone().unwrap()["generation"], 3);
    }

    #[tokio::test]
    async fn a_full_audit_file_system_refuses_the_mutation() {
        let pki = pki();
        let tmpfs = crate::test_support::SmallTmpfs::mount(64 * 1024);
        let running = start_with_audit(&pki, DEFAULT_BODY_LIMIT, tmpfs.path()).await;
        let admin = client(&pki, &running, Some(&pki.admin));
        let filler = tmpfs.fill();
        let error = admin.apply(&bundle(), &[], Some(7)).await.unwrap_err();
        assert_eq!(status_of(&error), Some(507), "{error}");
        let ClientError::Status { body, .. } = &error else {
            unreachable!()
        };
        assert_eq!(body["error"]["kind"], "no_space", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("nothing changed"), "{message}");
        assert!(body["audit_warning"].is_string(), "{body}");
        std::fs::remove_file(filler).unwrap();
        admin.apply(&bundle(), &[], Some(7)).await.unwrap();
        let records = wait_for_records(&running.audit, 2).await;
        assert_eq!(records[0].phase.as_deref(), Some(PHASE_INTENT));
        assert_eq!(records[1].verdict, "applied");
        drop(running);
    }

    #[tokio::test]
    async fn oversize_and_malformed_bodies_are_refused_before_the_engine() {
        let pki = pki();
        let mut running = start(&pki, 1024).await;
        let admin = client(&pki, &running, Some(&pki.admin));
        let mut large = bundle();
        large.sources[0].text = "#".repeat(4096);
        let error = admin.apply(&large, &[], Some(7)).await.unwrap_err();
        assert_eq!(status_of(&error), Some(413), "{error}");

        let (status, body) = admin
            .raw(Method::POST, "/v1/apply", Some(b"{\"bundle\": [".to_vec()))
            .await
            .unwrap();
        assert_eq!(status, 400);
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("malformed JSON"), "{message}");
        assert!(message.contains("column"), "{message}");

        let (status, _) = admin
            .raw(Method::POST, "/v1/apply", Some(b"{\"bundle\":{\"sources\":[]},\"intent\":[],\"expected_generation\":7,\"extra\":1}".to_vec()))
            .await
            .unwrap();
        assert_eq!(status, 400);
        let (status, _) = admin.raw(Method::GET, "/v1/apply", None).await.unwrap();
        assert_eq!(status, 405);
        let (status, _) = admin.raw(Method::GET, "/v1/nothing", None).await.unwrap();
        assert_eq!(status, 404);
        assert!(
            running.seen.try_recv().is_err(),
            "a bad request reached the engine"
        );
        // Every one of them is audited, 405 and 404 included.
        let records = wait_for_records(&running.audit, 5).await;
        let seen: Vec<(u16, &str)> = records
            .iter()
            .map(|record| (record.status, record.endpoint.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (413, "POST /v1/apply"),
                (400, "POST /v1/apply"),
                (400, "POST /v1/apply"),
                (405, "GET /v1/apply"),
                (404, "GET /v1/nothing"),
            ]
        );
        assert!(records.iter().all(|record| record.who == "alice"));
    }

    #[tokio::test]
    async fn readers_have_a_smaller_body_limit_than_admins() {
        let pki = pki();
        let mut running = start_with(&pki, 64 * 1024, 4 * 1024, pki.dir.path()).await;
        let mut medium = bundle();
        medium.sources[0].text = "#".repeat(16 * 1024);
        let reader = client(&pki, &running, Some(&pki.reader));
        let error = reader.plan(&medium, &[]).await.unwrap_err();
        assert_eq!(status_of(&error), Some(413), "{error}");
        assert!(
            running.seen.try_recv().is_err(),
            "the reader's plan reached the engine"
        );
        let admin = client(&pki, &running, Some(&pki.admin));
        admin.plan(&medium, &[]).await.unwrap();
        assert_eq!(running.seen.recv().await.unwrap(), "plan 1");
        // The reader's 413 is audited (a 413 on any path is).
        let records = wait_for_records(&running.audit, 1).await;
        assert_eq!(records[0].who, "robot-reader");
        assert_eq!(records[0].status, 413);
    }

    #[tokio::test]
    async fn a_body_trickling_below_the_minimum_rate_is_cut_off_with_408() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let pki = pki();
        let mut running = start(&pki, DEFAULT_BODY_LIMIT).await;
        let config = tls::client_config_from(
            Some((pki.admin.chain.clone(), pki.admin.key.clone_key())),
            vec![pki.ca.clone()],
            Path::new("test CA"),
        )
        .unwrap();
        let stream = tokio::net::TcpStream::connect(running.address)
            .await
            .unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        stream
            .write_all(
                b"POST /v1/apply HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n{",
            )
            .await
            .unwrap();
        let mut answer = Vec::new();
        let reader = async {
            let mut buffer = [0_u8; 4096];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        answer.extend_from_slice(&buffer[..read]);
                        if answer.windows(4).any(|window| window == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
                // One byte per half second keeps the client "sending".
                let _ = stream.write_all(b" ").await;
            }
        };
        tokio::time::timeout(BODY_RATE_GRACE + Duration::from_secs(10), reader)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            started.elapsed() >= BODY_RATE_GRACE,
            "cut off before the grace period"
        );
        assert!(
            running.seen.try_recv().is_err(),
            "the apply reached the engine"
        );
    }

    #[tokio::test]
    async fn a_pushed_file_that_is_not_utf8_is_invalid_at_its_line_and_column() {
        let pki = pki();
        let mut running = start(&pki, 1 << 20).await;
        let reader = client(&pki, &running, Some(&pki.reader));
        let mut body =
            br#"{"bundle":{"sources":[{"name":"fleet.toml","text":"[[location]]\nname = \"z"#
                .to_vec();
        body.push(0xFC);
        body.extend_from_slice(br#"rich\"\n"}]},"intent":[]}"#);
        let (status, answer) = reader
            .raw(Method::POST, "/v1/plan", Some(body))
            .await
            .unwrap();
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["kind"], "invalid", "{answer}");
        let text = answer["error"]["detail"]["text"].as_str().unwrap();
        assert!(
            text.starts_with("fleet.toml:2:10: error: the file is not UTF-8: byte 0xFC"),
            "{text}"
        );
        assert_eq!(
            answer["error"]["detail"]["diagnostics"]["items"][0]["location"]["line"],
            2
        );
        assert!(
            running.seen.try_recv().is_err(),
            "an undecodable bundle reached the engine"
        );
    }

    #[test]
    fn refused_handshakes_are_audited_up_to_a_rate_per_source_then_counted() {
        let mut limiter = RefusedHandshakeAudit::default();
        let start = std::time::Instant::now();
        let flood: std::net::IpAddr = "127.9.9.9"
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let other: std::net::IpAddr = "127.9.9.10"
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let admitted = (0..1000).filter(|_| limiter.admit(flood, start).0).count();
        assert_eq!(admitted, REFUSED_HANDSHAKE_AUDITS_PER_MINUTE as usize);
        // Another source is not held back by the flood.
        assert_eq!(limiter.admit(other, start), (true, 0));
        // A minute later: audited again, with the count of those that were not.
        let later = start + std::time::Duration::from_secs(61);
        assert_eq!(limiter.admit(flood, later), (true, 990));
        assert_eq!(limiter.admit(flood, later), (true, 0));
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        assert_eq!(
            query_parameter(Some("a=1&peer=2001%3adb8%3A%3A1"), "peer").unwrap(),
            Some("2001:db8::1".to_owned())
        );
        assert_eq!(query_parameter(None, "peer").unwrap(), None);
        assert!(query_parameter(Some("peer=%zz"), "peer").is_err());
    }
}
