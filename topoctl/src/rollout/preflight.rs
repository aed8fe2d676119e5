//! The checks `rollout start` makes before anything is applied, beyond the fleet-wide plan:
//! the wave plan against the new topology (every value a wave selector names exists, and a
//! canary — the first `[[wave]]` — selects at least one location unless `--no-canary`), and the
//! pre-flight at every daemon: each location's own dry-run plan (`POST /v1/plan`) of the
//! change, asked in parallel with a bound, every call under the fleet timeout.
//!
//! Owns: the [`WaveCheck`] (waves, warnings, or a refusal at `file:line:column`), the
//! [`PreflightReport`] (per location `ok`, `refused` or `unreachable`, the reason and the
//! duration; its `preflight` event and text), and [`ask_every_location`] (the bounded fan-out,
//! also used for the status check).
//!
//! Must not touch: what a plan means (the daemons and `topology` decide), the journal (nothing
//! here is journaled: a refused pre-flight leaves no rollout behind), exit codes beyond
//! choosing between [`EXIT_REFUSED`] and [`EXIT_ERROR`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control_client::{ClientError, ControlClient};
use serde_json::{Value, json};
use topologyd_api::SourceBundle;
use topologyd_api::{PlanView, Verdict};
use topologyd_config::fleet::Fleet;
use topologyd_config::{Collector, Diagnostic, Diagnostics, SourceMap};
use topologyd_topology::{Intent, Topology};

use super::journal::unix_time;
use super::waves::{Wave, assign_waves, canary_dropped, unknown_selector_names};
use super::{EXIT_ERROR, EXIT_REFUSED, EXIT_UNREACHABLE};

/// How many lines of a daemon's refusal detail a pre-flight reason keeps.
pub const REASON_LINES: usize = 4;

/// Why `rollout start` stops before anything is applied: the exit code and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub code: i32,
    pub message: String,
}

/// The wave plan, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveCheck {
    pub waves: Vec<Wave>,
    /// The wave planner's warnings, and with `--no-canary` what would otherwise refuse.
    pub warnings: Vec<String>,
}

/// Assigns the fleet's locations to waves of the `new` topology. Refused ([`EXIT_REFUSED`],
/// every finding at its `file:line:column` in the fleet file) when a wave selector names a tag,
/// region, metro, country, state or location the topology does not have, or when the canary
/// (the first `[[wave]]`) selects no location. With `no_canary`, both about the canary wave are
/// warnings instead. A wave plan that cannot be made at all is an [`EXIT_ERROR`].
pub fn check_waves(fleet: &Fleet, new: &Topology, no_canary: bool) -> Result<WaveCheck, Stop> {
    let sources = SourceMap::new(vec![fleet.source.clone()]);
    let mut collector = Collector::new();
    // Unknown names in the canary wave are decided once it is known whether that wave is
    // dropped: only then does `--no-canary` make them warnings.
    let mut canary_unknowns = Vec::new();
    for unknown in unknown_selector_names(&fleet.waves, new.locations()) {
        let wave = fleet
            .waves
            .get(unknown.wave)
            .map_or("", |wave| wave.name.as_str());
        let message = format!(
            "wave `{wave}` selects unknown {} \"{}\" (not in the new topology)",
            unknown.attribute.keyword(),
            unknown.value
        );
        if unknown.wave == 0 {
            canary_unknowns.push((unknown.span, message, unknown.help));
        } else {
            collector.error(Some(unknown.span), message, Some(unknown.help));
        }
    }
    let fleet_names: Vec<String> = fleet
        .locations
        .iter()
        .map(|location| location.name.clone())
        .collect();
    let planned = assign_waves(&fleet.waves, &fleet.gates, &fleet_names, new.locations());
    let canary_is_dropped = planned
        .as_ref()
        .is_ok_and(|(waves, _)| canary_dropped(&fleet.waves, waves));
    for (span, message, help) in canary_unknowns {
        if no_canary && canary_is_dropped {
            collector.warning(Some(span), message, Some(help));
        } else {
            collector.error(Some(span), message, Some(help));
        }
    }
    let (waves, mut warnings) = match planned {
        Ok(planned) => planned,
        Err(error) => {
            // The unknown names usually explain why no plan could be made: report them (at
            // their file:line:column), then the planner's error.
            let diagnostics = collector.finish(&sources);
            if !diagnostics.has_errors() {
                return Err(Stop {
                    code: EXIT_ERROR,
                    message: error.to_string(),
                });
            }
            return Err(wave_plan_refused(&diagnostics, Some(&error)));
        }
    };
    if canary_dropped(&fleet.waves, &waves)
        && let Some(canary) = fleet.waves.first()
    {
        let selector = canary
            .select
            .as_ref()
            .map_or_else(|| "(every location)".to_string(), ToString::to_string);
        let message = format!(
            "the canary wave `{}` (the first [[wave]]) selects no location: {selector}",
            canary.name
        );
        if no_canary {
            collector.warning(
                canary.select_span,
                format!("{message}; rolling out without a canary (--no-canary)"),
                None,
            );
        } else {
            collector.error(
                canary.select_span,
                message,
                Some(
                    "fix the selector so that it matches at least one location, or pass \
                     --no-canary to roll out without a canary"
                        .into(),
                ),
            );
        }
    }
    let diagnostics = collector.finish(&sources);
    if diagnostics.has_errors() {
        return Err(wave_plan_refused(&diagnostics, None));
    }
    let mut all = diagnostics
        .warnings()
        .map(Diagnostic::to_string)
        .collect::<Vec<_>>();
    // The planner's own warning about the dropped canary is said above, with its position.
    if canary_dropped(&fleet.waves, &waves) {
        let dropped = fleet
            .waves
            .first()
            .map(|canary| format!("wave `{}` selects no location", canary.name));
        warnings.retain(|warning| {
            dropped
                .as_ref()
                .is_none_or(|text| !warning.starts_with(text))
        });
    }
    all.extend(warnings);
    Ok(WaveCheck {
        waves,
        warnings: all,
    })
}
/// The refusal of a wave plan: every error and warning of `diagnostics`, then the planner's
/// own `error` if it refused too.
fn wave_plan_refused(diagnostics: &Diagnostics, error: Option<&dyn std::fmt::Display>) -> Stop {
    let mut message = String::from("the wave plan is refused; nothing was applied:");
    for diagnostic in diagnostics.errors().chain(diagnostics.warnings()) {
        message.push('\n');
        message.push_str(&diagnostic.to_string());
    }
    if let Some(error) = error {
        message.push('\n');
        message.push_str(&error.to_string());
    }
    Stop {
        code: EXIT_REFUSED,
        message,
    }
}

/// Prints warnings: `{"event":"warning",…}` lines with `--json` (the rollout id is not known
/// yet), `topoctl: warning:` on stderr otherwise.
pub fn print_warnings(warnings: &[String], json: bool) {
    for warning in warnings {
        if json {
            println!(
                "{}",
                json!({"event": "warning", "time": unix_time(), "message": warning})
            );
        } else {
            eprintln!("topoctl: warning: {warning}");
        }
    }
}

/// What one location answered in the pre-flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its own plan of the change is allowed.
    Ok,
    /// It answered, and would refuse the change (guards, compile, health checks, a generation
    /// other than the one planned against): the daemon's reason.
    Refused(String),
    /// No answer within the timeout (connect, TLS, HTTP): the error.
    Unreachable(String),
}

impl Answer {
    pub fn as_str(&self) -> &'static str {
        match self {
            Answer::Ok => "ok",
            Answer::Refused(_) => "refused",
            Answer::Unreachable(_) => "unreachable",
        }
    }

    fn reason(&self) -> Option<&str> {
        match self {
            Answer::Ok => None,
            Answer::Refused(reason) | Answer::Unreachable(reason) => Some(reason),
        }
    }
}

/// One location's pre-flight result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationResult {
    pub location: String,
    pub answer: Answer,
    pub duration: Duration,
}

/// The pre-flight of every location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreflightReport {
    /// `status` (every location's status and running topology) or `plan` (every location's
    /// own plan of the change).
    pub stage: &'static str,
    /// In location name order.
    pub results: Vec<LocationResult>,
    /// Wall-clock time of the whole fan-out.
    pub duration: Duration,
    pub concurrency: usize,
}

impl PreflightReport {
    fn count(&self, result: &str) -> usize {
        self.results
            .iter()
            .filter(|item| item.answer.as_str() == result)
            .count()
    }

    /// Whether every location answered `ok`.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|item| item.answer == Answer::Ok)
    }

    /// The `preflight` event (also the `preflight` member of `--dry-run --json`).
    pub fn to_json(&self) -> Value {
        let locations: Vec<Value> = self
            .results
            .iter()
            .map(|item| {
                json!({
                    "location": item.location,
                    "result": item.answer.as_str(),
                    "reason": item.answer.reason(),
                    "duration_ms": millis(item.duration),
                })
            })
            .collect();
        json!({
            "event": "preflight",
            "time": unix_time(),
            "stage": self.stage,
            "passed": self.passed(),
            "ok": self.count("ok"),
            "refused": self.count("refused"),
            "unreachable": self.count("unreachable"),
            "concurrency": self.concurrency,
            "duration_ms": millis(self.duration),
            "locations": locations,
        })
    }

    /// One line of summary, then one line per location that did not answer `ok`.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "pre-flight ({}): {} location(s) in {:.0} ms, {} ok, {} refused, {} unreachable\n",
            self.stage,
            self.results.len(),
            millis(self.duration),
            self.count("ok"),
            self.count("refused"),
            self.count("unreachable"),
        );
        for item in &self.results {
            if let Some(reason) = item.answer.reason() {
                text += &format!(
                    "  {} {}: {}\n",
                    item.location,
                    item.answer.as_str(),
                    reason.replace('\n', "\n      ")
                );
            }
        }
        text
    }

    /// The refusal when a location did not answer `ok`: [`EXIT_REFUSED`] if any refused,
    /// [`EXIT_UNREACHABLE`] if they were only unreachable.
    pub fn refusal(&self) -> Option<Stop> {
        if self.passed() {
            return None;
        }
        let code = if self.count("refused") > 0 {
            EXIT_REFUSED
        } else {
            EXIT_UNREACHABLE
        };
        Some(Stop {
            code,
            message: format!(
                "the pre-flight refused the rollout; nothing was applied:\n{}",
                self.to_text().trim_end()
            ),
        })
    }

    /// Prints the report: the `preflight` event with `--json`, its text on stderr otherwise.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", self.to_json());
        } else {
            eprint!("{}", self.to_text());
        }
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// Calls `call` for every client, at most `concurrency` at once; every answer with how long it
/// took, in name order. Each call is bounded by the client's own timeout (the fleet's).
pub async fn ask_every_location<T, Call, Answering>(
    clients: &BTreeMap<String, ControlClient>,
    concurrency: usize,
    call: Call,
) -> BTreeMap<String, (Result<T, ClientError>, Duration)>
where
    T: Send + 'static,
    Call: Fn(String, ControlClient) -> Answering,
    Answering: Future<Output = Result<T, ClientError>> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (name, client) in clients {
        let answering = call(name.clone(), client.clone());
        let permits = Arc::clone(&permits);
        let name = name.clone();
        tasks.spawn(async move {
            // The semaphore is never closed; without a permit the call still runs.
            let _permit = permits.acquire_owned().await.ok();
            let started = Instant::now();
            let answer = answering.await;
            (name, answer, started.elapsed())
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((name, answer, duration)) = joined {
            answers.insert(name, (answer, duration));
        }
    }
    answers
}

/// The pre-flight: every location's own plan of `bundle` with `intent`, each expected to be
/// planned against the generation `expected` says it runs.
pub async fn plan_everywhere(
    clients: &BTreeMap<String, ControlClient>,
    concurrency: usize,
    bundle: &SourceBundle,
    intent: &Intent,
    expected: &BTreeMap<String, u64>,
) -> PreflightReport {
    let started = Instant::now();
    let bundle = Arc::new(bundle.clone());
    let intent = Arc::new(intent.clone());
    let answers = ask_every_location(clients, concurrency, |_, client| {
        let bundle = Arc::clone(&bundle);
        let intent = Arc::clone(&intent);
        async move { client.plan(bundle.as_ref(), &intent).await }
    })
    .await;
    let results = clients
        .keys()
        .map(|name| {
            let (answer, duration) = match answers.get(name) {
                Some((answer, duration)) => {
                    (classify(answer, expected.get(name).copied()), *duration)
                }
                None => (
                    Answer::Unreachable("the pre-flight task ended without an answer".into()),
                    Duration::ZERO,
                ),
            };
            LocationResult {
                location: name.clone(),
                answer,
                duration,
            }
        })
        .collect();
    PreflightReport {
        stage: "plan",
        results,
        duration: started.elapsed(),
        concurrency,
    }
}

/// What a location's plan answer means for the rollout.
pub fn classify(answer: &Result<PlanView, ClientError>, expected: Option<u64>) -> Answer {
    match answer {
        Ok(view) => {
            let planned_against = view.plan.0.get("old_generation").and_then(Value::as_u64);
            if let (Some(expected), Some(running)) = (expected, planned_against)
                && expected != running
            {
                return Answer::Refused(format!(
                    "compare-and-swap conflict: the daemon runs generation {running}, the rollout \
                     planned against {expected} (someone changed it since the status check)"
                ));
            }
            if view.verdict == Verdict::Refused || view.verdict == Verdict::Invalid {
                return Answer::Refused(first_lines(&format!(
                    "its plan is {}:\n{}",
                    verdict_name(view.verdict),
                    view.text
                )));
            }
            Answer::Ok
        }
        // Busy or failing (503, 5xx): a daemon that cannot answer now, as the driver retries it.
        Err(ClientError::Status { status, body }) if *status >= 500 => {
            Answer::Unreachable(first_lines(&format!(
                "answered {status} ({}): {}",
                body.error.kind, body.error.message
            )))
        }
        Err(ClientError::Status { status, body }) => {
            let mut reason = format!(
                "answered {status} ({}): {}",
                body.error.kind, body.error.message
            );
            if let Some(text) = body.error.detail.as_ref().and_then(|detail| detail.text()) {
                reason = format!("{reason}\n{text}");
            }
            Answer::Refused(first_lines(&reason))
        }
        Err(
            error @ (ClientError::Connect { .. }
            | ClientError::Tls { .. }
            | ClientError::Http { .. }
            | ClientError::Timeout { .. }),
        ) => Answer::Unreachable(crate::error_chain(error)),
        Err(error) => Answer::Refused(first_lines(&crate::error_chain(error))),
    }
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Refused => "refused",
        Verdict::Invalid => "invalid",
        Verdict::NoChange => "no change",
        Verdict::ChangesAllowed => "allowed",
    }
}

/// The first [`REASON_LINES`] non-empty lines of `text`, terminal-safe.
fn first_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    let mut kept: Vec<String> = lines
        .iter()
        .take(REASON_LINES)
        .map(|line| topologyd_config::escape_text(line))
        .collect();
    if lines.len() > REASON_LINES {
        kept.push(format!("… ({} more line(s))", lines.len() - REASON_LINES));
    }
    kept.join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
