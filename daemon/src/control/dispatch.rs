//! What each control API endpoint does once the caller may call it: read the typed request,
//! ask the engine ([`EngineCommand`], answer on a `oneshot`), and turn the typed view or the
//! engine's error into an [`Answer`]; mutations carry a [`WriteAhead`] describing who asked
//! what, which the engine writes before the change takes effect.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use topologyd_api::{
    ApplyRequest, BundleDelta, DrainRequest, LeaseRequest, PlanRequest, RollbackRequest,
    SourceBundle,
};

use super::answer::Answer;
use super::body::{query_parameter, read_json};
use super::{Caller, Endpoint, Role, Shared};
use crate::audit::{AuditRecord, WriteAhead};
use crate::engine_api::{EngineCommand, MutationChecks, MutationTerms, Reply};

/// What one request needs besides its body: who asks, the body limit of their role, the
/// engine, and the audit record so far (for a mutation's write-ahead).
struct Call<'a> {
    shared: &'a Shared,
    caller: &'a Caller,
    base: &'a AuditRecord,
    limit: u64,
}

impl Call<'_> {
    fn engine(&self) -> &mpsc::Sender<EngineCommand> {
        &self.shared.engine
    }

    /// The write-ahead of a mutation asking `summary`.
    fn write_ahead(&self, summary: &Value) -> Option<WriteAhead> {
        Some(WriteAhead::new(
            self.shared.settings.audit_log.clone(),
            AuditRecord {
                request: Some(summary.clone()),
                ..self.base.clone()
            },
        ))
    }
}

/// Serves one request of a caller whose role allows `endpoint`.
pub(super) async fn dispatch(
    shared: &Shared,
    caller: &Caller,
    endpoint: Endpoint,
    request: Request<Incoming>,
    base: &AuditRecord,
) -> Answer {
    let limit = match caller.role {
        Some(Role::Admin) => shared.settings.body_limit,
        _ => shared.settings.reader_body_limit,
    };
    let call = Call {
        shared,
        caller,
        base,
        limit,
    };
    serve(&call, endpoint, request)
        .await
        .unwrap_or_else(|unreadable| unreadable)
}

/// Reads the request (its JSON body or query) and serves it; `Err` is the answer to a request
/// that could not be read.
async fn serve(
    call: &Call<'_>,
    endpoint: Endpoint,
    request: Request<Incoming>,
) -> Result<Answer, Answer> {
    let engine = call.engine();
    let limit = call.limit;
    Ok(match endpoint {
        Endpoint::Plan => plan(call, read_json(request, limit).await?).await,
        Endpoint::Apply => {
            let arrived = std::time::Instant::now();
            let body = read_json(request, limit).await?;
            apply(call, body, arrived).await
        }
        Endpoint::Rollback => rollback(call, read_json(request, limit).await?).await,
        Endpoint::Drain => drain(call, read_json(request, limit).await?).await,
        Endpoint::Lease => lease(call, read_json(request, limit).await?).await,
        Endpoint::Status => answer(ask(engine, |reply| EngineCommand::Status { reply }).await),
        Endpoint::Routes => {
            let peer = query_parameter(request.uri().query(), "peer").map_err(invalid)?;
            answer(ask(engine, |reply| EngineCommand::Routes { peer, reply }).await)
        }
        Endpoint::Health => answer(ask(engine, |reply| EngineCommand::Health { reply }).await),
        Endpoint::Rpki => answer(ask(engine, |reply| EngineCommand::Rpki { reply }).await),
        Endpoint::Visibility => {
            match crate::bmp::listener::served_view(
                &call.shared.visibility,
                crate::bmp::listener::unix_ms(),
            ) {
                Some(view) => Answer::ok(&view),
                None => Answer::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the BMP station has stopped: what the routers hold is unknown".to_string(),
                ),
            }
        }
        Endpoint::Topology => {
            let generation =
                match query_parameter(request.uri().query(), "generation").map_err(invalid)? {
                    None => None,
                    Some(text) => Some(text.parse::<u64>().map_err(|_| {
                        invalid(format!("generation `{text}` is not a whole number"))
                    })?),
                };
            answer(
                ask(engine, |reply| EngineCommand::Topology {
                    generation,
                    reply,
                })
                .await,
            )
        }
        Endpoint::Generations => {
            answer(ask(engine, |reply| EngineCommand::Generations { reply }).await)
        }
        Endpoint::Sources => {
            let running = ask(engine, |reply| EngineCommand::Running { reply }).await?;
            answer(
                call.shared
                    .sources
                    .view(running)
                    .await
                    .map(|view| (*view).clone()),
            )
        }
    })
}

/// The 400 answer to a request whose query could not be read.
fn invalid(message: String) -> Answer {
    Answer::error(StatusCode::BAD_REQUEST, "invalid", message)
}

/// The answer of a read: the view, or the error.
fn answer<T: serde::Serialize>(result: Result<T, Answer>) -> Answer {
    match result {
        Ok(view) => Answer::ok(&view),
        Err(answer) => answer,
    }
}

/// The whole bundle a plan or apply stands for.
struct WholeBundle {
    bundle: SourceBundle,
    /// For a delta, each file's SHA-256: checked while resolving it (so the compile need not
    /// hash them), but for the texts made by edits, at the places `unchecked`, which the
    /// compile checks.
    digests: Option<Vec<[u8; 32]>>,
    unchecked: Vec<usize>,
    /// The sizes of those texts, to learn once an answer says they were checked.
    sizes_once_checked: Vec<([u8; 32], u64)>,
}

/// Learns the sizes of texts made by edits when `answer` is a success (their compile
/// checked their digests).
fn learn_checked_sizes(call: &Call<'_>, sizes: Vec<([u8; 32], u64)>, answer: &Answer) {
    if answer.status.is_success() && !sizes.is_empty() {
        call.shared.sources.learn_sizes(sizes);
    }
}

/// The whole bundle a plan or apply stands for (see `control/delta.rs`).
async fn whole_bundle(
    call: &Call<'_>,
    bundle: SourceBundle,
    delta: Option<BundleDelta>,
) -> Result<WholeBundle, Answer> {
    let Some(delta) = delta else {
        return Ok(WholeBundle {
            bundle,
            digests: None,
            unchecked: Vec::new(),
            sizes_once_checked: Vec::new(),
        });
    };
    let digests = delta.file_digests();
    let running = ask(call.engine(), |reply| EngineCommand::Running { reply }).await?;
    let resolved =
        super::delta::resolve(&call.shared.sources, bundle, delta, running, call.limit).await?;
    // A text whose digest is to be checked against none cannot be: no such delta resolves
    // (its digests are checked hex), but none goes on unchecked either.
    if digests.is_none() && !resolved.unchecked.is_empty() {
        return Err(Answer::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "delta push: files made by edits have no digest to be checked against; push the whole bundle (topoctl push --full-bundle)".to_owned(),
        ));
    }
    Ok(WholeBundle {
        bundle: resolved.bundle,
        digests,
        unchecked: resolved.unchecked,
        sizes_once_checked: resolved.sizes_once_checked,
    })
}

async fn plan(call: &Call<'_>, body: PlanRequest) -> Answer {
    let whole = match whole_bundle(call, body.bundle, body.delta).await {
        Ok(whole) => whole,
        Err(answer) => return answer,
    };
    let planned = answer(
        ask(call.engine(), |reply| EngineCommand::Plan {
            bundle: whole.bundle,
            digests: whole.digests,
            unchecked: whole.unchecked,
            intent: body.intent,
            reply,
        })
        .await,
    );
    learn_checked_sizes(call, whole.sizes_once_checked, &planned);
    planned
}

/// An apply whose request reached the control API at `arrived` (its head read, its body not).
async fn apply(call: &Call<'_>, mut body: ApplyRequest, arrived: std::time::Instant) -> Answer {
    // Where a push's latency starts: `daemon_bench` measures from `body_us` before this line
    // (when the request's head was read) to the first UPDATE of the new generation on the
    // wire. Reading and parsing a bundle of tens of megabytes is part of what a push waits for.
    tracing::info!(
        files = body.bundle.sources.len(),
        delta = body.delta.is_some(),
        patched = body.delta.as_ref().map_or(0, |delta| delta.patches.len()),
        body_us = arrived.elapsed().as_micros(),
        "apply request received"
    );
    let (asked, whole_digests) = AskedBundle::of(&body);
    let carried = std::mem::take(&mut body.bundle);
    let (digests, unchecked, sizes_once_checked);
    // A delta's digests were checked while resolving it (but for the texts made by edits,
    // which the compile checks); a whole bundle's were just computed from its texts.
    (body.bundle, digests, unchecked, sizes_once_checked) =
        match whole_bundle(call, carried, body.delta.take()).await {
            Ok(whole) => (
                whole.bundle,
                whole.digests.or(whole_digests),
                whole.unchecked,
                whole.sizes_once_checked,
            ),
            Err(mut answer) => {
                // Refused before the engine: audited with what was asked.
                answer.request = Some(asked.summary(&body, None));
                return answer;
            }
        };
    let bytes = body.bundle.sources.iter().map(|file| file.text.len()).sum();
    let summary = asked.summary(&body, Some(bytes));
    let checks = MutationChecks {
        expected_generation: body.expected_generation,
        lease: body.lease,
        deadline_unix_ms: body.deadline_unix_ms,
    };
    let applied = mutation(call, summary, checks, |terms| EngineCommand::Apply {
        bundle: body.bundle,
        digests,
        unchecked,
        intent: body.intent,
        terms,
    })
    .await;
    learn_checked_sizes(call, sizes_once_checked, &applied);
    applied
}

async fn rollback(call: &Call<'_>, body: RollbackRequest) -> Answer {
    let summary = json!({
        "generation": body.generation,
        "expected_generation": body.expected_generation,
        "lease": body.lease,
    });
    let checks = MutationChecks {
        expected_generation: body.expected_generation,
        lease: body.lease,
        deadline_unix_ms: body.deadline_unix_ms,
    };
    mutation(call, summary, checks, |terms| EngineCommand::Rollback {
        generation: body.generation,
        terms,
    })
    .await
}

/// An apply or rollback: asked with its write-ahead, answered with what was applied, and
/// audited with `summary` whatever the answer.
async fn mutation(
    call: &Call<'_>,
    summary: Value,
    checks: MutationChecks,
    command: impl FnOnce(MutationTerms) -> EngineCommand,
) -> Answer {
    let terms = |reply| MutationTerms {
        checks,
        who: call.caller.identity.clone(),
        write_ahead: call.write_ahead(&summary),
        reply,
    };
    let mut answer = match ask(call.engine(), |reply| command(terms(reply))).await {
        Ok(outcome) => Answer::applied(outcome),
        Err(answer) => answer,
    };
    answer.request = Some(summary);
    answer
}

async fn drain(call: &Call<'_>, body: DrainRequest) -> Answer {
    // A drain's reason is shown to every later reader (status, health, logs): no control or
    // bidirectional characters in it, nor in the service name (invisible joiners, which some
    // scripts and emoji need, are allowed: readers show them escaped).
    if let Some(bad) = [Some(body.reason.as_str()), body.service.as_deref()]
        .into_iter()
        .flatten()
        .find(|text| {
            text.chars().any(|character| {
                character.is_control()
                    || topologyd_config::text::is_bidirectional_control(character)
            })
        })
    {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "`{}` holds a control or bidirectional character; write plain text",
                topologyd_config::diagnostic::escape_text(bad)
            ),
        );
    }
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
        "dry_run": body.dry_run,
    });
    let mut answer = match ask(call.engine(), |reply| EngineCommand::Drain {
        service: body.service.clone(),
        drain: body.drain,
        force: body.force,
        reason: body.reason.clone(),
        who: call.caller.identity.clone(),
        write_ahead: (!body.dry_run)
            .then(|| call.write_ahead(&summary))
            .flatten(),
        dry_run: body.dry_run,
        reply,
    })
    .await
    {
        Ok(result) => {
            let mut answer = Answer::ok(&result);
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

/// `POST /v1/lease`: the engine decides and persists; the audit record says what changed or
/// why it was refused.
async fn lease(call: &Call<'_>, body: LeaseRequest) -> Answer {
    let summary = json!({
        "action": body.action.as_str(),
        "holder": body.holder,
        "token": body.token,
        "ttl_seconds": body.ttl_seconds,
    });
    let what = format!(
        "lease {} by `{}` token {}",
        body.action.as_str(),
        body.holder,
        body.token
    );
    let mut answer = match ask(call.engine(), |reply| EngineCommand::Lease {
        request: body,
        who: call.caller.identity.clone(),
        reply,
    })
    .await
    {
        Ok((view, line)) => {
            let mut answer = Answer::ok(&view);
            answer.verdict = "applied";
            answer.message = Some(line);
            answer
        }
        Err(mut answer) => {
            answer.message = answer.message.map(|error| format!("{what}: {error}"));
            answer
        }
    };
    answer.request = Some(summary);
    answer
}

/// What an apply asked for, as the audit log records it: the whole bundle's digest (the one
/// `GET /v1/sources` reports once it runs) and file names, not its text; for a delta push also
/// its base and what travelled.
struct AskedBundle {
    sources_sha256: String,
    sources: Vec<String>,
    delta: Option<Value>,
}

impl AskedBundle {
    /// What `body` asks for, and for a whole bundle each file's SHA-256 (hashed here for the
    /// audit record, handed to the compile so that it does not hash the texts again).
    fn of(body: &ApplyRequest) -> (AskedBundle, Option<Vec<[u8; 32]>>) {
        use topologyd_api::delta::{bundle_sha256, digests_and_sha256};
        let sent = || {
            body.bundle
                .sources
                .iter()
                .map(|source| source.name.clone())
                .collect::<Vec<_>>()
        };
        match &body.delta {
            // The digests the pusher listed: the resolved bundle has exactly these (each text is
            // checked), so this is its digest without hashing it again.
            Some(delta) => {
                let asked = AskedBundle {
                    sources_sha256: bundle_sha256(&delta.files),
                    sources: delta.files.iter().map(|file| file.name.clone()).collect(),
                    delta: Some(json!({
                        "base_generation": delta.base_generation,
                        "sent_sources": sent(),
                        "sent_bytes": body.bundle.sources.iter().map(|source| source.text.len()).sum::<usize>(),
                        "patched_sources": delta.patches.iter().map(|patch| json!({
                            "name": patch.name,
                            "base_sha256": patch.base_sha256,
                            "edits": patch.edits.len(),
                            "inserted_bytes": patch.edits.iter().map(|edit| edit.insert.len()).sum::<usize>(),
                        })).collect::<Vec<_>>(),
                    })),
                };
                (asked, None)
            }
            None => {
                let (listed, sha256) = digests_and_sha256(&body.bundle.sources);
                let asked = AskedBundle {
                    sources_sha256: bundle_sha256(&listed),
                    sources: sent(),
                    delta: None,
                };
                (asked, Some(sha256))
            }
        }
    }

    /// The audit summary; `bytes` is the whole bundle's size once known. A delta refused before
    /// it resolved names no bundle: the digest its pusher listed is kept apart.
    fn summary(&self, body: &ApplyRequest, bytes: Option<usize>) -> Value {
        let unresolved = bytes.is_none() && self.delta.is_some();
        let mut summary = json!({
            "sources_sha256": (!unresolved).then_some(&self.sources_sha256),
            "bundle_bytes": bytes,
            "sources": self.sources,
            "intent": body.intent.to_lines(),
            "expected_generation": body.expected_generation,
            "lease": body.lease,
        });
        if let Some(delta) = &self.delta {
            summary["delta"] = delta.clone();
            if unresolved {
                summary["delta"]["listed_sources_sha256"] = json!(self.sources_sha256);
            }
        }
        summary
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
