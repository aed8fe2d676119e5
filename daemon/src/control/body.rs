//! Request bodies and query strings of the control API: a body is read within its size limit
//! and deadlines ([`BODY_READ_TIMEOUT`], [`MIN_BODY_BYTES_PER_SECOND`] after
//! [`BODY_RATE_GRACE`]) and parsed into its typed request — intent lines included, so a bad
//! line is an invalid request here, before anything reaches the engine.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, StatusCode};
use serde::de::DeserializeOwned;
use topologyd_api::request::IntentLines;
use topologyd_api::{Document, ErrorDetail, Intent, IntentError};

use super::answer::Answer;
use super::{BODY_RATE_GRACE, BODY_READ_TIMEOUT, MIN_BODY_BYTES_PER_SECOND};

/// Reads and parses a JSON body: 413 over the limit, 400 if unreadable or not the expected
/// shape (the message carries serde's line and column).
pub(super) async fn read_json<T: DeserializeOwned + Send + 'static>(
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
        serde_json::from_slice::<T>(&bytes).map_err(|error| {
            match intent_problem(&bytes).filter(|_| error.is_data()) {
                Some(problem) => BodyError::Intent(problem),
                None => BodyError::Malformed(format!("malformed JSON request body: {error}")),
            }
        })
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
            Answer::error_with(
                StatusCode::BAD_REQUEST,
                "invalid",
                "the topology does not compile: 1 error(s)".into(),
                Some(ErrorDetail::Compile {
                    diagnostics: Document::of(&diagnostics),
                    text: diagnostics.to_string(),
                }),
            )
        }
        // As the engine answered a bad intent line before it was parsed here: invalid, 400.
        BodyError::Intent(problem) => {
            Answer::error(StatusCode::BAD_REQUEST, "invalid", problem.to_string())
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
    /// An intent line does not parse.
    Intent(IntentError),
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
pub(super) fn query_parameter(query: Option<&str>, name: &str) -> Result<Option<String>, String> {
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

/// Strict percent-decoding: a malformed escape (`%zz`, a lone `%`) is an error the caller
/// reports. Written here because the `percent-encoding` crate passes malformed escapes through
/// as text, which would turn a typo in `?peer=` into a silent "no such peer".
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

/// When a plan or apply body does not parse: the intent line that does not, if that is why.
fn intent_problem(bytes: &[u8]) -> Option<IntentError> {
    let lines: IntentLines = serde_json::from_slice(bytes).ok()?;
    Intent::from_lines(&lines.intent).err()
}
