//! A decided answer of the control API ([`Answer`]): its status, its body (a typed view of
//! `topologyd_api`, or the typed error body) and what the audit log records about it; and how
//! it is written to the wire ([`respond`]).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use topologyd_api::{ErrorBody, ErrorDetail, ErrorView};

use crate::engine_api::{EngineError, EngineErrorKind, MutationOutcome};

/// A decided answer plus what the audit log records about it.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// The view, serialised; kept as a JSON value so that an audit warning can be added to it.
    pub(super) body: Value,
    pub(super) verdict: &'static str,
    pub(super) generation_before: Option<u64>,
    pub(super) generation_after: Option<u64>,
    pub(super) plan_hash: Option<String>,
    pub(super) message: Option<String>,
    /// What was asked, for the audit record (mutations whose body could be read).
    pub(super) request: Option<Value>,
}

/// A view as the body of an answer. The views serialise without fail (plain data); `null` is
/// written should one ever not.
fn body_of<T: Serialize>(view: &T) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

impl Answer {
    pub(super) fn ok<T: Serialize>(view: &T) -> Self {
        Answer {
            status: StatusCode::OK,
            body: body_of(view),
            verdict: "ok",
            generation_before: None,
            generation_after: None,
            plan_hash: None,
            message: None,
            request: None,
        }
    }

    /// An error answered by the control server itself (no structured detail).
    pub(super) fn error(status: StatusCode, verdict: &'static str, message: String) -> Self {
        Self::error_with(status, verdict, message, None)
    }

    pub(super) fn error_with(
        status: StatusCode,
        verdict: &'static str,
        message: String,
        detail: Option<ErrorDetail>,
    ) -> Self {
        let body = ErrorBody {
            error: ErrorView {
                kind: verdict.to_owned(),
                message: message.clone(),
                detail,
            },
            audit_warning: None,
        };
        Answer {
            status,
            body: body_of(&body),
            verdict,
            generation_before: None,
            generation_after: None,
            plan_hash: None,
            message: Some(message),
            request: None,
        }
    }

    pub(super) fn applied(outcome: MutationOutcome) -> Self {
        Answer {
            status: StatusCode::OK,
            verdict: "applied",
            generation_before: Some(outcome.generation_before),
            generation_after: Some(outcome.generation_after),
            plan_hash: Some(outcome.plan_hash.clone()),
            message: None,
            request: None,
            body: body_of(&outcome),
        }
    }

    pub(super) fn engine_error(error: EngineError) -> Self {
        let verdict = match error.kind {
            EngineErrorKind::Invalid => "invalid",
            EngineErrorKind::Refused => "refused",
            EngineErrorKind::Conflict => "conflict",
            EngineErrorKind::NotFound => "not_found",
            EngineErrorKind::Internal => "internal",
            EngineErrorKind::NoSpace => "no_space",
            EngineErrorKind::TooLarge => "too_large",
            EngineErrorKind::Busy => "busy",
            EngineErrorKind::BasePatch => "base_patch",
            EngineErrorKind::LeaseHeld => "lease_held",
            EngineErrorKind::StaleToken => "stale_token",
            EngineErrorKind::LeaseNotHeld => "lease_not_held",
            EngineErrorKind::DeadlinePassed => "deadline_passed",
        };
        let status = StatusCode::from_u16(error.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Answer {
            generation_before: error.generation,
            generation_after: error.generation,
            plan_hash: error.plan_hash,
            ..Self::error_with(
                status,
                verdict,
                error.message,
                error.detail.map(|detail| *detail),
            )
        }
    }

    /// Adds the warning that the audit log could not record this answer.
    pub(super) fn warn_audit(&mut self, warning: String) {
        if let Some(body) = self.body.as_object_mut() {
            body.insert("audit_warning".to_owned(), Value::String(warning));
        }
    }
}

/// The HTTP response of an answer: pretty JSON and a newline.
pub(super) fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(&answer.body).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = answer.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
