//! The admin listener of the daemon and of the rollout controller: plain HTTP/1.1 on a local
//! address, serving `/metrics`, `/ready`, `/live`.
//!
//! Owns: the admin TCP listener and its per-connection tasks. `/metrics` renders the shared
//! `prometheus_client` registry: OpenMetrics text when the scraper's `Accept` asks for it, the
//! classic Prometheus text format 0.0.4 otherwise (`exposition.rs`); `/ready` answers 200 while the engine's
//! [`Readiness`] verdict says enough peers hold the running generation, and 503 with the
//! reason otherwise (before the first convergence, and again when peers are lost); `/live`
//! answers 200 while the process serves HTTP at all. Both programs fill the registry through
//! [`registered`].
//!
//! Must not touch: engine state (it reads snapshots only: the registry and the latch), the
//! control API (mutations never go through this unauthenticated listener), TLS.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::{Metric, Registry, Unit};
use tokio::net::TcpListener;

use crate::exposition::Exposition;
use crate::listener_limits::{BusyMarker, ConnectionCaps, ConnectionLimiter};

/// How long a client may take to send its request head before the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The admin listener's own connection caps: a newcomer displaces the oldest idle connection
/// (`listener_limits.rs`), so idle clients can never keep a scrape out. Requests here are
/// answered from snapshots at once, so a busy connection frees its slot quickly.
pub const CONNECTION_CAPS: ConnectionCaps = ConnectionCaps {
    total: 128,
    per_source: 16,
};

pub use crate::readiness::Readiness;

/// The registry as OpenMetrics text, as `/metrics` serves it.
pub fn render(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

/// The registry in the exposition a scrape negotiated.
pub fn render_as(registry: &Registry, exposition: Exposition) -> Result<String, std::fmt::Error> {
    let openmetrics = render(registry)?;
    Ok(match exposition {
        Exposition::OpenMetrics => openmetrics,
        Exposition::PrometheusText => crate::exposition::to_prometheus_text(&openmetrics),
    })
}

/// A failure of the admin listener.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the listen address failed.
    #[error("admin listener: cannot bind {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Accepting a connection failed in a way that stops the listener.
    #[error("admin listener on {address}: accept failed: {source}")]
    Accept {
        /// The listen address.
        address: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The admin listener, bound and ready to serve.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    address: SocketAddr,
    registry: Arc<Registry>,
    readiness: Readiness,
    connections: Arc<ConnectionLimiter>,
}

impl AdminServer {
    /// Binds the admin address (port 0 picks a free port; see [`AdminServer::local_addr`]).
    pub async fn bind(
        address: SocketAddr,
        registry: Arc<Registry>,
        readiness: Readiness,
    ) -> Result<Self, AdminError> {
        let listener = crate::listener_limits::bind_listener(address)
            .map_err(|source| AdminError::Bind { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| AdminError::Bind { address, source })?;
        Ok(AdminServer {
            listener,
            address,
            registry,
            readiness,
            connections: ConnectionLimiter::new(CONNECTION_CAPS),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes. Connections in flight finish on their own tasks.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), AdminError> {
        let AdminServer {
            listener,
            address,
            registry,
            readiness,
            connections,
        } = self;
        crate::listener_limits::accept_loop(
            &listener,
            &connections,
            "admin listener",
            shutdown,
            |stream, remote, marker| {
                let registry = Arc::clone(&registry);
                let readiness = readiness.clone();
                serve_connection(stream, remote, marker, registry, readiness)
            },
        )
        .await
        .map_err(|source| AdminError::Accept { address, source })
    }
}

/// Serves one admitted admin connection until it ends.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    marker: BusyMarker,
    registry: Arc<Registry>,
    readiness: Readiness,
) {
    let service = service_fn(move |request| {
        let busy = marker.busy();
        let answer = respond(&request, &registry, &readiness);
        drop(busy);
        async move { Ok::<_, Infallible>(answer) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, %remote, "admin connection ended with an error");
    }
}

fn respond(
    request: &Request<Incoming>,
    registry: &Registry,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let accept = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|value| value.to_str().ok());
            let exposition = Exposition::negotiate(accept);
            match render_as(registry, exposition) {
                Ok(body) => {
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(exposition.content_type()),
                    );
                    response
                }
                Err(error) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot render metrics: {error}\n"),
                ),
            }
        }
        "/ready" => {
            let state = readiness.state();
            let status = if state.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, &format!("{}\n", state.reason))
        }
        "/live" => text(StatusCode::OK, "live\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /ready, /live\n",
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Registers `metric` as `name` with `help` (and `unit`, which the exposition appends to the
/// name), and answers the handle that records it.
pub fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    (name, help): (&str, &str),
    unit: Option<Unit>,
    metric: M,
) -> M {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(address: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        let status = answer[9..12].parse().unwrap();
        let body = answer.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn serves_live_ready_after_latch_and_metrics() {
        let readiness = Readiness::new();
        let mut registry = Registry::default();
        let sessions = prometheus_client::metrics::gauge::Gauge::<i64>::default();
        registry.register("example_sessions", "Sessions up", sessions.clone());
        sessions.set(6);
        let server = AdminServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(registry),
            readiness.clone(),
        )
        .await
        .unwrap();
        let address = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));

        assert_eq!(get(address, "/live").await.0, 200);
        assert_eq!(get(address, "/ready").await.0, 503);
        readiness.release();
        assert_eq!(get(address, "/ready").await.0, 200);
        // The registry is rendered at every scrape: a change shows at once.
        sessions.set(7);
        let (status, body) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("\nexample_sessions 7\n"), "{body}");
        assert_eq!(get(address, "/nope").await.0, 404);

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }
}
