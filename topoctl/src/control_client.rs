//! The control API client `topoctl` uses: HTTPS/1.1 with a client certificate, JSON answers.
//!
//! Owns: one TLS connection per call (a `topoctl` run makes one or two calls), request framing,
//! reading each answer as its typed view (`topologyd_api`; a missing or ill-typed field is a
//! [`ClientError::View`] naming it) and non-2xx answers as [`ClientError::Status`] with the
//! server's typed error body.
//!
//! Must not touch: printing or exit codes (the `topoctl` binary decides), the daemon's state.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use percent_encoding::utf8_percent_encode;
use rustls_pki_types::ServerName;
use serde::Deserialize as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use topologyd_transport::http_client::{ExchangeError, OneShot, exchange};

use crate::text_cache::{PATCH_MIN_BYTES, TextCache};

use topologyd_api::delta::digests;
use topologyd_api::{
    ApplyRequest, BundleDelta, DrainRequest, DrainView, ErrorBody, ErrorView, FilePatch,
    GenerationsView, HealthView, Intent, LeaseClaim, LeaseRequest, LeaseView, MutationOutcome,
    PlanRequest, PlanView, RollbackRequest, RoutesView, SourceBundle, SourceDigest, SourceFile,
    SourcesView, StatusView, TopologyView,
};

/// Keeps the large texts of `files` (each with its digest as listed) in `texts`, to send edits
/// of them next time. A cache that cannot keep one costs only the next push's size.
fn keep_texts<'a>(
    texts: &TextCache,
    files: impl Iterator<Item = (&'a SourceFile, &'a SourceDigest)>,
) {
    for (file, digest) in files {
        let _ = texts.put(&digest.sha256, &file.text);
    }
}

/// Moves each large file of `carried` whose name the base lists once, under another digest,
/// and whose base text `texts` keeps, into `delta` as edits of that text, when they weigh less
/// than a quarter of the file (`FilePatch::between`); gives back the files so moved.
fn patch_carried(
    texts: &TextCache,
    base: &SourcesView,
    carried: &mut Vec<SourceFile>,
    delta: &mut BundleDelta,
) -> Vec<SourceFile> {
    let mut base_digests: HashMap<&str, Option<&str>> = HashMap::new();
    for file in &base.files {
        base_digests
            .entry(file.name.as_str())
            // A name listed twice: which text is the base is not clear.
            .and_modify(|digest| *digest = None)
            .or_insert(Some(file.sha256.as_str()));
    }
    let mut patched = Vec::new();
    for file in std::mem::take(carried) {
        let patch = (file.text.len() >= PATCH_MIN_BYTES)
            .then(|| base_digests.get(file.name.as_str()).copied().flatten())
            .flatten()
            .and_then(|base_sha256| {
                let base_text = texts.get(base_sha256)?;
                FilePatch::between(&file.name, base_sha256, &base_text, &file.text)
            });
        match patch {
            Some(patch) => {
                delta.patches.push(patch);
                patched.push(file);
            }
            None => carried.push(file),
        }
    }
    patched
}

/// What a plan or apply sends: every file's name and digest, and the texts of the files that
/// travel. A bundle in memory is one; `topoctl push`'s files on disk, read only as far as
/// needed, are another ([`crate::local_bundle::LocalBundle`]).
pub trait PushSources: Sync {
    /// How many files.
    fn count(&self) -> usize;
    /// Every file by name and digest, in order.
    fn digests(&self) -> Vec<SourceDigest>;
    /// The files at `indices` of [`PushSources::digests`], in that order, with their texts;
    /// each text is the one its digest was taken of.
    fn files(&self, indices: &[usize]) -> Result<Vec<SourceFile>, ClientError>;
    /// Every file, with its text, for a request that lists no digest (the whole bundle).
    fn whole(&self) -> Result<Vec<SourceFile>, ClientError> {
        self.files(&(0..self.count()).collect::<Vec<_>>())
    }
}

impl PushSources for SourceBundle {
    fn count(&self) -> usize {
        self.sources.len()
    }

    fn digests(&self) -> Vec<SourceDigest> {
        digests(&self.sources)
    }

    fn files(&self, indices: &[usize]) -> Result<Vec<SourceFile>, ClientError> {
        Ok(indices
            .iter()
            .filter_map(|index| self.sources.get(*index).cloned())
            .collect())
    }
}

/// How long one call may take, connect to last byte, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A failed control API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server name is not a valid DNS name or IP address.
    #[error("control client: invalid server name {name:?}")]
    ServerName {
        /// The name given.
        name: String,
    },
    /// TCP connect failed.
    #[error("control client: cannot connect to {address}: {source}")]
    Connect {
        /// The daemon's control address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (wrong CA, refused client certificate, …).
    #[error("control client: TLS handshake with {address} failed: {source}")]
    Tls {
        /// The daemon's control address.
        address: SocketAddr,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (often: the server closed the connection after refusing the
    /// client certificate).
    #[error("control client: HTTP exchange with {address} failed: {source}")]
    Http {
        /// The daemon's control address.
        address: SocketAddr,
        /// The step that failed.
        #[source]
        source: ExchangeError,
    },
    /// The request could not be built (an invalid path).
    #[error("control client: cannot build a request for {path}: {source}")]
    Request {
        /// The path.
        path: String,
        /// The builder's error.
        #[source]
        source: hyper::http::Error,
    },
    /// The call did not finish in time.
    #[error("control client: {address} did not answer within {timeout:?}")]
    Timeout {
        /// The daemon's control address.
        address: SocketAddr,
        /// The limit.
        timeout: Duration,
    },
    /// The answer is not JSON.
    #[error("control client: {address} answered {status} with a body that is not JSON: {source}")]
    Decode {
        /// The daemon's control address.
        address: SocketAddr,
        /// The HTTP status.
        status: u16,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is JSON but not the view the endpoint answers with (a field missing or of
    /// another type): the message names the field.
    #[error("control client: {address} answered {path} with a body that is not its view: {source}")]
    View {
        /// The daemon's control address.
        address: SocketAddr,
        /// The endpoint.
        path: String,
        /// What is missing or ill-typed.
        #[source]
        source: serde_json::Error,
    },
    /// A file of the push could not be read when its text had to travel, or its text is not
    /// the one hashed when the push began (it changed in between).
    #[error("{path}: {message}; push again")]
    SourceChanged {
        /// The file, as given.
        path: String,
        /// What happened.
        message: String,
    },
    /// The daemon answered with a non-2xx status; `body` is its error document.
    #[error("control API answered {status}: {}", body.error.message)]
    Status {
        /// The HTTP status.
        status: u16,
        /// `{"error": {"kind", "message", "detail"}}`.
        body: Box<ErrorBody>,
    },
}

/// A client of one daemon's control API.
#[derive(Debug, Clone)]
pub struct ControlClient {
    address: SocketAddr,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    /// Send whole bundles instead of deltas against the running generation.
    full_bundles: bool,
    /// The texts of large files pushed before, to send a changed one as edits.
    texts: Option<TextCache>,
}

impl ControlClient {
    /// A client for the daemon at `address` whose certificate is valid for `server_name`.
    /// `tls` comes from [`topologyd_transport::tls::client_config`].
    pub fn new(
        address: SocketAddr,
        server_name: &str,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, ClientError> {
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|_| ClientError::ServerName {
                name: server_name.to_owned(),
            })?;
        Ok(ControlClient {
            address,
            server_name,
            tls,
            timeout: DEFAULT_TIMEOUT,
            full_bundles: false,
            texts: None,
        })
    }

    /// Changes the per-call time limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Plans and applies send the whole bundle (`true`) instead of a delta against the
    /// running generation (the default).
    pub fn with_full_bundles(mut self, full_bundles: bool) -> Self {
        self.full_bundles = full_bundles;
        self
    }

    /// A delta push keeps the large texts it sends in `texts`, and sends a large changed file
    /// as edits of the running text when `texts` keeps that (see `text_cache.rs`).
    pub fn with_text_cache(mut self, texts: Option<TextCache>) -> Self {
        self.texts = texts;
        self
    }

    /// `GET /v1/sources`: the running generation's files by digest.
    pub async fn sources(&self) -> Result<SourcesView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/sources", None).await
    }

    /// `POST /v1/plan`: dry run.
    pub async fn plan(
        &self,
        bundle: &(impl PushSources + ?Sized),
        intent: &Intent,
    ) -> Result<PlanView, ClientError> {
        self.push("/v1/plan", bundle, |bundle, delta| PlanRequest {
            bundle,
            delta,
            intent: intent.clone(),
        })
        .await
    }

    /// A plan or apply of `bundle`: by default only the files that differ from the running
    /// generation's travel, with a delta naming the base (`GET /v1/sources` first). The whole
    /// bundle goes instead when the daemon does not answer `/v1/sources` with the view (an
    /// older daemon), when two files share a name, when every
    /// file changed, and after a 409 `base_*` (the running generation changed in between, or
    /// its texts cannot be read). A large changed file travels as edits of the running text
    /// when the text cache keeps that text and the daemon takes edits
    /// ([`SourcesView::takes_patches`]). Whatever travels, the daemon plans and applies exactly
    /// `bundle` (each file's digest is checked) under the same conditions (an apply's
    /// `expected_generation` goes with either), so the fallback never changes the outcome.
    /// At most three calls.
    async fn push<R: Serialize, V: DeserializeOwned>(
        &self,
        path: &str,
        bundle: &(impl PushSources + ?Sized),
        request: impl Fn(SourceBundle, Option<BundleDelta>) -> R,
    ) -> Result<V, ClientError> {
        let mut listed = None;
        if !self.full_bundles {
            let base = match self.sources().await {
                Ok(base) => Some(base),
                // The daemon answered, but not with the view: send everything.
                Err(ClientError::Status { .. } | ClientError::View { .. }) => None,
                Err(error) => return Err(error),
            };
            let digests = bundle.digests();
            let delta = base.as_ref().and_then(|base| {
                BundleDelta::changed(base, &digests)
                    .filter(|(carried, _)| carried.len() < digests.len())
            });
            if let (Some((carried, mut delta)), Some(base)) = (delta, base) {
                let mut sources = bundle.files(&carried)?;
                if let Some(texts) = self.texts.clone() {
                    // By name: each is listed once in a delta.
                    let digest_of: HashMap<String, String> = carried
                        .iter()
                        .filter_map(|index| digests.get(*index))
                        .map(|digest| (digest.name.clone(), digest.sha256.clone()))
                        .collect();
                    // Reading, hashing, comparing and writing tens of megabytes: not on the
                    // runtime (the rollout controller drives every location from one thread).
                    (sources, delta) = tokio::task::spawn_blocking(move || {
                        // Edits first: keeping the new texts could let the base texts go.
                        let patched = if base.takes_patches {
                            patch_carried(&texts, &base, &mut sources, &mut delta)
                        } else {
                            Vec::new()
                        };
                        for file in sources.iter().chain(&patched) {
                            if let Some(sha256) = digest_of.get(&file.name) {
                                // A cache that cannot keep it costs only the next push's size.
                                let _ = texts.put(sha256, &file.text);
                            }
                        }
                        (sources, delta)
                    })
                    .await
                    .map_err(|join| match join.try_into_panic() {
                        Ok(panic) => std::panic::resume_unwind(panic),
                        Err(_) => ClientError::SourceChanged {
                            path: "the push's files".to_owned(),
                            message: "preparing their edits was cancelled".to_owned(),
                        },
                    })?;
                }
                let carried = SourceBundle { sources };
                match self
                    .call(Method::POST, path, Some(&request(carried, Some(delta))))
                    .await
                {
                    Err(ClientError::Status { status: 409, body })
                        if body.error.kind.starts_with("base_") => {}
                    answer => return answer,
                }
            }
            listed = Some(digests);
        }
        let whole = SourceBundle {
            sources: bundle.whole()?,
        };
        // Every file changed, or the delta was refused: the next push may send edits of these.
        if let (Some(texts), Some(listed)) = (&self.texts, &listed) {
            keep_texts(texts, whole.sources.iter().zip(listed));
        }
        self.call(Method::POST, path, Some(&request(whole, None)))
            .await
    }

    /// `POST /v1/apply` with compare-and-swap on `expected_generation`, carrying the fleet
    /// lock claim `lease` of whoever acts (if any).
    pub async fn apply(
        &self,
        bundle: &(impl PushSources + ?Sized),
        intent: &Intent,
        expected_generation: Option<u64>,
        lease: Option<&LeaseClaim>,
    ) -> Result<MutationOutcome, ClientError> {
        self.apply_by(bundle, intent, expected_generation, lease, None)
            .await
    }

    /// `POST /v1/apply` that the daemon refuses (409 `deadline_passed`) once its clock is past
    /// `deadline_unix_ms`, when it arrives or at commit.
    pub async fn apply_by(
        &self,
        bundle: &(impl PushSources + ?Sized),
        intent: &Intent,
        expected_generation: Option<u64>,
        lease: Option<&LeaseClaim>,
        deadline_unix_ms: Option<u64>,
    ) -> Result<MutationOutcome, ClientError> {
        self.push("/v1/apply", bundle, |bundle, delta| ApplyRequest {
            bundle,
            delta,
            intent: intent.clone(),
            expected_generation,
            lease: lease.cloned(),
            deadline_unix_ms,
        })
        .await
    }

    /// `POST /v1/rollback` to a kept generation, carrying the fleet lock claim (if any).
    pub async fn rollback(
        &self,
        generation: u64,
        expected_generation: Option<u64>,
        lease: Option<&LeaseClaim>,
    ) -> Result<MutationOutcome, ClientError> {
        self.rollback_by(generation, expected_generation, lease, None)
            .await
    }

    /// `POST /v1/rollback` with a deadline, as [`ControlClient::apply_by`].
    pub async fn rollback_by(
        &self,
        generation: u64,
        expected_generation: Option<u64>,
        lease: Option<&LeaseClaim>,
        deadline_unix_ms: Option<u64>,
    ) -> Result<MutationOutcome, ClientError> {
        let request = RollbackRequest {
            generation,
            expected_generation,
            lease: lease.cloned(),
            deadline_unix_ms,
        };
        self.call(Method::POST, "/v1/rollback", Some(&request))
            .await
    }

    /// `POST /v1/lease`: acquire, release or break the fleet lock's lease at this daemon. The
    /// answer is the lease held afterwards (`None` after a release or a break).
    pub async fn lease(&self, request: &LeaseRequest) -> Result<Option<LeaseView>, ClientError> {
        self.call(Method::POST, "/v1/lease", Some(request)).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/status", None).await
    }

    /// `GET /v1/routes`, optionally for one peer.
    pub async fn routes(&self, peer: Option<&str>) -> Result<RoutesView, ClientError> {
        let path = match peer {
            Some(peer) => format!(
                "/v1/routes?peer={}",
                utf8_percent_encode(peer, topologyd_transport::http_client::QUERY_VALUE)
            ),
            None => "/v1/routes".to_owned(),
        };
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// `GET /v1/health`: per-service health, drains and actions at this location.
    pub async fn health(&self) -> Result<HealthView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/health", None).await
    }

    /// `GET /v1/rpki`: the VRPs' sync state and every route's RFC 6811 state.
    pub async fn rpki(&self) -> Result<topologyd_api::RpkiView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/rpki", None).await
    }

    /// `GET /v1/visibility`: the BMP station's routers and findings.
    pub async fn visibility(&self) -> Result<topologyd_api::VisibilityView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/visibility", None)
            .await
    }

    /// `GET /v1/topology`: the running generation's sources.
    pub async fn topology(&self) -> Result<TopologyView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/topology", None).await
    }

    /// `GET /v1/topology?generation=N`: a kept generation's sources (the running one's
    /// without `generation`).
    pub async fn topology_at(&self, generation: Option<u64>) -> Result<TopologyView, ClientError> {
        match generation {
            Some(generation) => {
                let path = format!("/v1/topology?generation={generation}");
                self.call::<(), _>(Method::GET, &path, None).await
            }
            None => self.topology().await,
        }
    }

    /// `GET /v1/generations`: the kept generations, newest first.
    pub async fn generations(&self) -> Result<GenerationsView, ClientError> {
        self.call::<(), _>(Method::GET, "/v1/generations", None)
            .await
    }

    /// `POST /v1/drain`: drain (`drain = true`) or undrain a service, or the whole location.
    pub async fn drain(
        &self,
        service: Option<&str>,
        drain: bool,
        force: bool,
        reason: &str,
    ) -> Result<DrainView, ClientError> {
        self.drain_with(service, drain, force, reason, false).await
    }

    /// `POST /v1/drain`, or with `dry_run` the answer of what would change (nothing changes).
    pub async fn drain_with(
        &self,
        service: Option<&str>,
        drain: bool,
        force: bool,
        reason: &str,
        dry_run: bool,
    ) -> Result<DrainView, ClientError> {
        let request = DrainRequest {
            service: service.map(str::to_owned),
            drain,
            force,
            reason: reason.to_owned(),
            dry_run,
        };
        self.call(Method::POST, "/v1/drain", Some(&request)).await
    }

    /// One call: the 2xx answer read as the endpoint's view `V`, any other as the error body.
    async fn call<T: Serialize, V: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&T>,
    ) -> Result<V, ClientError> {
        let body = body.map(|body| serde_json::to_vec(body).unwrap_or_default());
        let (status, value) = self.raw(method, path, body).await?;
        let view_error = |source| ClientError::View {
            address: self.address,
            path: path.to_owned(),
            source,
        };
        if (200..300).contains(&status) {
            V::deserialize(value).map_err(view_error)
        } else {
            // An answer that is not the API's error body (an empty body from the HTTP layer, a
            // proxy's page) keeps its status: a 503 stays transient for the rollout driver.
            let body = ErrorBody::deserialize(value).unwrap_or_else(|error| ErrorBody {
                error: ErrorView {
                    kind: "unknown".to_owned(),
                    message: format!("HTTP {status} without the API's error body ({error})"),
                    detail: None,
                },
                audit_warning: None,
            });
            Err(ClientError::Status {
                status,
                body: Box::new(body),
            })
        }
    }

    /// One request with a raw body; answers the status and the JSON body (`null` if empty),
    /// whatever the status.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), ClientError> {
        let address = self.address;
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange(method, path, body))
            .await
            .unwrap_or(Err(ClientError::Timeout { address, timeout }))
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Value), ClientError> {
        let address = self.address;
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|source| ClientError::Connect { address, source })?;
        let tls = TlsConnector::from(Arc::clone(&self.tls))
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|source| ClientError::Tls { address, source })?;
        let mut request = OneShot {
            method,
            body: body.map(Bytes::from),
            // The daemon's answers (plans, the running bundle) grow with the topology, which the
            // daemon's own body limit bounds; the client does not cap them again.
            body_limit: Some(usize::MAX),
            ..OneShot::get(self.server_name.to_str().as_ref(), path)
        }
        .header(ACCEPT, "application/json");
        if request.body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let answer = exchange(tls, request).await.map_err(|error| match error {
            ExchangeError::Build { path, source } => ClientError::Request { path, source },
            source => ClientError::Http { address, source },
        })?;
        let status = answer.status.as_u16();
        let bytes = answer.body;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
                address,
                status,
                source,
            })?
        };
        Ok((status, value))
    }
}
