//! One-shot HTTP/1.1 exchanges over a stream the caller connected: the client half shared by
//! the HTTP health probes, the control client (over TLS) and the rollout controller's PromQL
//! queries.
//!
//! Owns: the HTTP/1.1 handshake, driving the connection beside the request (so a server that
//! closes early is seen as an error, not a hang), and reading the answer's body up to a cap.
//!
//! Must not touch: connecting (callers connect plain TCP or TLS and pass the stream),
//! deadlines (callers wrap the whole exchange in their own timeout), what the body means.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::io::{AsyncRead, AsyncWrite};

/// What a query-string value keeps unencoded: the unreserved characters of RFC 3986 §2.3.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest answer body an exchange reads unless the caller says otherwise: control-API answers
/// (plans of large topologies) and PromQL vectors fit; a server streaming without end does not
/// exhaust memory.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024 * 1024;

/// What to ask.
#[derive(Debug, Clone)]
pub struct OneShot {
    /// The method.
    pub method: Method,
    /// The request target (path and query).
    pub path: String,
    /// The `Host` header.
    pub host: String,
    /// Further headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (none: an empty body).
    pub body: Option<Bytes>,
    /// How much of the answer's body to read: `None` reads none (only the status matters).
    pub body_limit: Option<usize>,
}

impl OneShot {
    /// A `GET` of `path` on `host` that reads up to [`DEFAULT_BODY_LIMIT`] of the answer.
    pub fn get(host: impl Into<String>, path: impl Into<String>) -> OneShot {
        OneShot {
            method: Method::GET,
            path: path.into(),
            host: host.into(),
            headers: Vec::new(),
            body: None,
            body_limit: Some(DEFAULT_BODY_LIMIT),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: &'static str) -> OneShot {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }
}

/// The answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The body (empty when the request asked for none).
    pub body: Bytes,
}

/// Why an exchange failed; every variant says at which step.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request could not be built (a path or header the HTTP library refuses).
    #[error("cannot build the request for {path}: {source}")]
    Build {
        /// The request target.
        path: String,
        /// The cause.
        #[source]
        source: hyper::http::Error,
    },
    /// The HTTP/1.1 handshake failed.
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// Sending the request or reading the answer's head failed.
    #[error("{0}")]
    Send(#[source] hyper::Error),
    /// Reading the answer's body failed, or it was larger than the limit.
    #[error("reading the answer: {0}")]
    Body(String),
}

/// Sends `request` over `io` and reads the answer. The connection is closed afterwards.
pub async fn exchange<I>(io: I, request: OneShot) -> Result<Answer, ExchangeError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = Request::builder()
        .method(request.method)
        .uri(request.path.as_str())
        .header(HOST, request.host.as_str());
    for (name, value) in request.headers {
        builder = builder.header(name, value);
    }
    let built = builder
        .body(Full::new(request.body.unwrap_or_default()))
        .map_err(|source| ExchangeError::Build {
            path: request.path.clone(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(ExchangeError::Handshake)?;
    // The connection is driven beside the request: if it ends first with an error, that error
    // is the answer; if it ends cleanly, the request's own result still comes.
    let mut connection = std::pin::pin!(connection);
    let answer = async {
        let response = sender
            .send_request(built)
            .await
            .map_err(ExchangeError::Send)?;
        let status = response.status();
        let body = match request.body_limit {
            None => Bytes::new(),
            Some(limit) => Limited::new(response.into_body(), limit)
                .collect()
                .await
                .map_err(|error| ExchangeError::Body(error.to_string()))?
                .to_bytes(),
        };
        Ok(Answer { status, body })
    };
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        biased;
        answered = &mut answer => answered,
        ended = &mut connection => match ended {
            Err(error) => Err(ExchangeError::Send(error)),
            Ok(()) => answer.await,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection server on loopback that answers `raw` after reading the request head.
    async fn answering(raw: &'static [u8]) -> tokio::net::TcpStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("bind: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("local_addr: {error}"));
        tokio::spawn(async move {
            if let Ok((mut stream, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let _ = stream.write_all(raw).await;
                let _ = stream.shutdown().await;
            }
        });
        tokio::net::TcpStream::connect(address)
            .await
            .unwrap_or_else(|error| panic!("connect: {error}"))
    }

    #[tokio::test]
    async fn reads_status_and_body() {
        let stream = answering(b"HTTP/1.1 201 Created\r\ncontent-length: 5\r\n\r\nhello").await;
        let answer = exchange(stream, OneShot::get("localhost", "/x"))
            .await
            .unwrap_or_else(|error| panic!("exchange: {error}"));
        assert_eq!(answer.status, StatusCode::CREATED);
        assert_eq!(&answer.body[..], b"hello");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_an_error_not_a_truncation() {
        let stream = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789").await;
        let request = OneShot {
            body_limit: Some(4),
            ..OneShot::get("localhost", "/")
        };
        let error = exchange(stream, request).await.err();
        assert!(matches!(error, Some(ExchangeError::Body(_))), "{error:?}");
    }

    #[tokio::test]
    async fn without_a_body_limit_only_the_status_is_read() {
        let stream =
            answering(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 3\r\n\r\nno!").await;
        let request = OneShot {
            body_limit: None,
            ..OneShot::get("localhost", "/")
        };
        let answer = exchange(stream, request)
            .await
            .unwrap_or_else(|error| panic!("exchange: {error}"));
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.body.is_empty());
    }

    #[tokio::test]
    async fn a_server_that_closes_without_answering_is_an_error() {
        let stream = answering(b"").await;
        let error = exchange(stream, OneShot::get("localhost", "/")).await.err();
        assert!(matches!(error, Some(ExchangeError::Send(_))), "{error:?}");
    }
}
