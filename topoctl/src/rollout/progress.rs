//! What a running rollout shows: a live per-wave view redrawn in place on a terminal, plain
//! lines when stdout is not one, or one JSON event per line (`--json`); and the rollout's
//! Prometheus metrics (`--metrics-listen`).
//!
//! Owns: rendering journal records for people and programs, metric names and help texts.
//!
//! Must not touch: decisions (`machine.rs`), the journal file (`journal.rs`), HTTP to daemons.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde_json::{Map, Value, json};
use topologyd_transport::admin::registered;

use super::journal::{Line, Outcome, Record, Started};
use super::machine::{LocationState, Machine, Phase};

/// `topoctl_rollout_state`: see [`STATE_HELP`].
pub const STATE: &str = "topoctl_rollout_state";
pub const STATE_HELP: &str = "Rollout state: 0 planned, 1 applying, 2 baking, 3 paused, 4 rolling back, 5 completed, 6 rolled back, 7 aborted, 8 rollback incomplete";
/// `topoctl_rollout_wave`: the current wave's index.
pub const WAVE: &str = "topoctl_rollout_wave";
pub const WAVE_HELP: &str = "Index of the current wave (0 = the first)";
/// `topoctl_rollout_gate_evaluations_total{gate,result}`.
pub const GATE_EVALUATIONS: &str = "topoctl_rollout_gate_evaluations";
pub const GATE_EVALUATIONS_HELP: &str =
    "Gate evaluations by gate and result (pass, fail, inconclusive)";
/// `topoctl_rollout_locations_applied`.
pub const LOCATIONS_APPLIED: &str = "topoctl_rollout_locations_applied";
pub const LOCATIONS_APPLIED_HELP: &str =
    "Locations the new topology was applied to by this rollout";
/// `topoctl_rollout_rollbacks_total`.
pub const ROLLBACKS: &str = "topoctl_rollout_rollbacks";
pub const ROLLBACKS_HELP: &str = "Locations rolled back by this rollout";
/// `topoctl_rollout_wave_duration_seconds`: histogram.
pub const WAVE_DURATION: &str = "topoctl_rollout_wave_duration";
pub const WAVE_DURATION_HELP: &str =
    "Time from a wave's start to its passing (applies, bake and gates)";
/// `topoctl_rollout_rollback_duration_seconds`: histogram.
pub const ROLLBACK_DURATION: &str = "topoctl_rollout_rollback_duration";
pub const ROLLBACK_DURATION_HELP: &str =
    "Time from the decision to roll back to the last location rolled back";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabels {
    gate: String,
    result: String,
}

/// The numeric state of [`STATE`].
pub fn state_number(machine: &Machine) -> i64 {
    if machine.paused().is_some() && !machine.is_finished() {
        return 3;
    }
    match machine.phase() {
        Phase::Planned => 0,
        Phase::Applying => 1,
        Phase::Baking => 2,
        Phase::RollingBack => 4,
        Phase::Finished(Outcome::Completed) => 5,
        Phase::Finished(Outcome::RolledBack) => 6,
        Phase::Finished(Outcome::Aborted) => 7,
        Phase::Finished(Outcome::RollbackIncomplete) => 8,
    }
}

/// The rollout's metrics.
#[derive(Debug, Clone)]
pub struct RolloutMetrics {
    registry: Arc<Registry>,
    state: Gauge,
    wave: Gauge,
    gate_evaluations: Family<GateLabels, Counter>,
    locations_applied: Gauge,
    rollbacks: Counter,
    wave_duration: Histogram,
    rollback_duration: Histogram,
    wave_started: Arc<Mutex<Option<Instant>>>,
    rollback_started: Arc<Mutex<Option<Instant>>>,
}

impl Default for RolloutMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RolloutMetrics {
    pub fn new() -> RolloutMetrics {
        let mut registry = Registry::default();
        RolloutMetrics {
            state: registered(&mut registry, (STATE, STATE_HELP), None, Gauge::default()),
            wave: registered(&mut registry, (WAVE, WAVE_HELP), None, Gauge::default()),
            gate_evaluations: registered(
                &mut registry,
                (GATE_EVALUATIONS, GATE_EVALUATIONS_HELP),
                None,
                Family::default(),
            ),
            locations_applied: registered(
                &mut registry,
                (LOCATIONS_APPLIED, LOCATIONS_APPLIED_HELP),
                None,
                Gauge::default(),
            ),
            rollbacks: registered(
                &mut registry,
                (ROLLBACKS, ROLLBACKS_HELP),
                None,
                Counter::default(),
            ),
            wave_duration: registered(
                &mut registry,
                (WAVE_DURATION, WAVE_DURATION_HELP),
                Some(Unit::Seconds),
                Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            ),
            rollback_duration: registered(
                &mut registry,
                (ROLLBACK_DURATION, ROLLBACK_DURATION_HELP),
                Some(Unit::Seconds),
                Histogram::new(exponential_buckets(0.25, 2.0, 14)),
            ),
            registry: Arc::new(registry),
            wave_started: Arc::new(Mutex::new(None)),
            rollback_started: Arc::new(Mutex::new(None)),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// Folds a journaled record (already applied to `machine`) into the metrics.
    pub fn observe(&self, record: &Record, machine: &Machine) {
        let lock = |slot: &Arc<Mutex<Option<Instant>>>| {
            slot.lock()
                .map(|mut guard| guard.take())
                .unwrap_or_default()
        };
        match record {
            Record::GateResult { gate, result, .. } => {
                self.gate_evaluations
                    .get_or_create(&GateLabels {
                        gate: gate.clone(),
                        result: result.as_str().to_string(),
                    })
                    .inc();
            }
            Record::WaveStarted { .. } => {
                if let Ok(mut started) = self.wave_started.lock() {
                    *started = Some(Instant::now());
                }
            }
            Record::WavePassed { .. } => {
                if let Some(started) = lock(&self.wave_started) {
                    self.wave_duration.observe(started.elapsed().as_secs_f64());
                }
            }
            Record::RollbackStarted { .. } => {
                if let Ok(mut started) = self.rollback_started.lock() {
                    *started = Some(Instant::now());
                }
            }
            Record::RolledBack { .. } => {
                self.rollbacks.inc();
            }
            Record::Finished { .. } => {
                if let Some(started) = lock(&self.rollback_started) {
                    self.rollback_duration
                        .observe(started.elapsed().as_secs_f64());
                }
            }
            _ => {}
        }
        self.state.set(state_number(machine));
        self.wave
            .set(i64::try_from(machine.wave()).unwrap_or(i64::MAX));
        let applied = machine
            .locations()
            .values()
            .filter(|state| matches!(state, LocationState::Applied { .. }))
            .count();
        self.locations_applied
            .set(i64::try_from(applied).unwrap_or(i64::MAX));
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One JSON object per line on stdout.
    Json,
    /// A view redrawn in place.
    Terminal,
    /// One line per event.
    Plain,
}

impl Mode {
    /// `--json`, else a terminal view when stdout is one.
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stdout().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }
}

/// Longest event line the terminal view shows (longer ones are cut).
const RECENT_WIDTH: usize = 150;

#[derive(Debug, Default)]
struct View {
    drawn_lines: usize,
    recent: Vec<String>,
    last_draw_ms: u64,
}

/// The progress reporter of one controller run.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    rollout: String,
    waves: Vec<String>,
    gates: Vec<String>,
    /// Location → the name of its wave.
    wave_of: std::collections::BTreeMap<String, String>,
    view: Mutex<View>,
}

/// Seconds with one decimal.
fn seconds(milliseconds: u64) -> String {
    format!("{:.1}s", milliseconds as f64 / 1000.0)
}

impl Progress {
    pub fn new(mode: Mode, started: &Started) -> Progress {
        Progress {
            mode,
            rollout: started.rollout.clone(),
            waves: started.waves.iter().map(|wave| wave.name.clone()).collect(),
            gates: started.gates.iter().map(|gate| gate.name.clone()).collect(),
            wave_of: started
                .waves
                .iter()
                .flat_map(|wave| {
                    wave.locations
                        .iter()
                        .map(move |location| (location.clone(), wave.name.clone()))
                })
                .collect(),
            view: Mutex::new(View::default()),
        }
    }

    fn wave_name(&self, index: usize) -> &str {
        self.waves.get(index).map_or("?", String::as_str)
    }

    /// The JSON event of a journal line.
    pub fn event_json(&self, line: &Line) -> Value {
        let mut object = Map::new();
        object.insert("event".into(), json!(line.record.event_name()));
        object.insert("time".into(), json!(line.time));
        object.insert("rollout".into(), json!(self.rollout));
        match &line.record {
            Record::Started(started) => {
                object.insert("old_hash".into(), json!(started.old_hash));
                object.insert("new_hash".into(), json!(started.new_hash));
                object.insert(
                    "waves".into(),
                    json!(
                        started
                            .waves
                            .iter()
                            .map(|wave| json!({
                                "name": wave.name,
                                "locations": wave.locations,
                                "bake_seconds": wave.bake_seconds,
                                "stall_seconds": wave.stall_seconds,
                                "on_stall": wave.on_stall.as_str(),
                                "gates": wave.gates.iter().filter_map(|index| self.gates.get(*index)).collect::<Vec<_>>(),
                                "skipped_gates": wave.skipped_gates.iter().filter_map(|index| self.gates.get(*index)).collect::<Vec<_>>(),
                            }))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            record => {
                if let Ok(Value::Object(fields)) = serde_json::to_value(record) {
                    for (key, value) in fields {
                        if key == "record" {
                            continue;
                        }
                        if key == "wave"
                            && let Some(index) = value.as_u64()
                        {
                            let index = usize::try_from(index).unwrap_or(usize::MAX);
                            object.insert("wave".into(), json!(self.wave_name(index)));
                            object.insert("index".into(), json!(index));
                            continue;
                        }
                        if key == "location"
                            && let Some(wave) = value
                                .as_str()
                                .and_then(|location| self.wave_of.get(location))
                        {
                            object.insert("wave".into(), json!(wave));
                        }
                        object.insert(key, value);
                    }
                }
            }
        }
        Value::Object(object)
    }

    /// One line for people.
    pub fn describe(&self, record: &Record, machine: &Machine) -> String {
        match record {
            Record::Started(started) => format!(
                "rollout {}: {} → {}, {} wave(s)",
                started.rollout,
                short(&started.old_hash),
                short(&started.new_hash),
                started.waves.len()
            ),
            Record::WaveStarted { wave } => {
                let locations = machine
                    .plan()
                    .waves
                    .get(*wave)
                    .map(|wave| wave.locations.join(", "))
                    .unwrap_or_default();
                format!("wave {} started: {locations}", self.wave_name(*wave))
            }
            Record::Applying {
                location,
                expected_generation,
            } => format!("applying at {location} (expected generation {expected_generation})"),
            Record::Applied {
                location,
                generation,
            } => format!("applied at {location}: generation {generation}"),
            Record::ApplyFailed { location, reason } => {
                format!("apply at {location} FAILED: {reason}")
            }
            Record::Baking { wave } => {
                let bake = machine
                    .plan()
                    .waves
                    .get(*wave)
                    .map_or(0, |wave| wave.bake_seconds);
                format!(
                    "wave {} baking ({bake} s) and gating",
                    self.wave_name(*wave)
                )
            }
            Record::GateResult {
                gate,
                result,
                detail,
                passes,
                failures,
                inconclusive,
                ..
            } => format!(
                "gate {gate}: {} ({passes} pass, {failures} fail, {inconclusive} inconclusive) — {detail}",
                result.as_str()
            ),
            Record::GateFailed { wave, gate, detail } => {
                format!(
                    "gate {gate} FAILED in wave {}: {detail}",
                    self.wave_name(*wave)
                )
            }
            Record::WavePassed { wave } => format!("wave {} passed", self.wave_name(*wave)),
            Record::Promoted { wave } => {
                format!("wave {} promoted (bake skipped)", self.wave_name(*wave))
            }
            Record::Paused { reason } => format!("PAUSED: {reason}"),
            Record::Resumed => "resumed".into(),
            Record::Command { command, .. } => format!("command received: {}", command.as_str()),
            Record::RollbackStarted {
                reason, locations, ..
            } => format!(
                "ROLLING BACK ({reason}): {}",
                if locations.is_empty() {
                    "nothing was applied".to_string()
                } else {
                    locations.join(", ")
                }
            ),
            Record::RollingBack {
                location,
                to_generation,
                expected_generation,
            } => format!(
                "rolling back {location} to generation {to_generation} (expected generation {expected_generation})"
            ),
            Record::RolledBack {
                location,
                generation,
                verified,
            } => format!(
                "rolled back {location}: generation {generation}{}",
                if *verified {
                    ", routes verified"
                } else {
                    ", routes NOT verified"
                }
            ),
            Record::RollbackFailed { location, reason } => {
                format!("rollback at {location} FAILED: {reason}")
            }
            Record::ApplyNotDone { location } => {
                format!("{location} did not apply (settled); it is pending again")
            }
            Record::Stalled {
                location,
                reason,
                stall_seconds,
            } => format!("{location} STALLED: no answer within {stall_seconds} s ({reason})"),
            Record::RollbackPending { locations } => format!(
                "ROLLBACK PENDING at {}: never answered; run `topoctl rollout abort` again once they are reachable",
                locations.join(", ")
            ),
            Record::Finished { outcome } => format!("finished: {}", outcome.as_str()),
        }
    }

    /// Shows a journaled record.
    pub fn record(&self, line: &Line, machine: &Machine, now: u64) {
        match self.mode {
            Mode::Json => {
                let mut event = self.event_json(line);
                if let Record::WaveStarted { wave } = &line.record
                    && let Some(plan) = machine.plan().waves.get(*wave)
                {
                    event["locations"] = json!(plan.locations);
                }
                print_line(&event.to_string());
            }
            Mode::Plain => print_line(&self.describe(&line.record, machine)),
            Mode::Terminal => {
                let text = self.describe(&line.record, machine);
                if let Ok(mut view) = self.view.lock() {
                    // One screen line each, so that the redraw moves up by the right count.
                    let mut line: String = text
                        .replace('\n', " / ")
                        .chars()
                        .take(RECENT_WIDTH)
                        .collect();
                    if line.len() < text.len() {
                        line.push('…');
                    }
                    view.recent.push(line);
                    let excess = view.recent.len().saturating_sub(6);
                    view.recent.drain(..excess);
                }
                self.draw(machine, now, true);
            }
        }
    }

    /// Redraws the live view (at most every 250 ms).
    pub fn tick(&self, machine: &Machine, now: u64) {
        if self.mode == Mode::Terminal {
            self.draw(machine, now, false);
        }
    }

    /// A problem worth telling, that does not stop the rollout.
    pub fn warn(&self, message: &str) {
        match self.mode {
            Mode::Json => print_line(
                &json!({"event": "warning", "time": super::journal::unix_time(), "rollout": self.rollout, "message": message}).to_string(),
            ),
            _ => eprintln!("topoctl: warning: {message}"),
        }
    }

    /// An error that stops the controller.
    pub fn error(&self, message: &str) {
        match self.mode {
            Mode::Json => print_line(
                &json!({"event": "error", "time": super::journal::unix_time(), "rollout": self.rollout, "message": message}).to_string(),
            ),
            _ => eprintln!("topoctl: {message}"),
        }
    }

    /// Final redraw.
    pub fn finish(&self, machine: &Machine, now: u64) {
        if self.mode == Mode::Terminal {
            self.draw(machine, now, true);
        }
    }

    fn draw(&self, machine: &Machine, now: u64, force: bool) {
        let Ok(mut view) = self.view.lock() else {
            return;
        };
        if !force && now.saturating_sub(view.last_draw_ms) < 250 {
            return;
        }
        view.last_draw_ms = now;
        let mut text = String::new();
        if view.drawn_lines > 0 {
            // Up to the first line of the previous view, clear to the end of the screen.
            let _ = write!(text, "\x1b[{}F\x1b[J", view.drawn_lines);
        }
        let body = render_view(&self.rollout, machine, now, &self.gates, &view.recent);
        view.drawn_lines = body.lines().count();
        text.push_str(&body);
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
}

fn print_line(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// The per-wave view: one line per wave with its locations' states, the gates of the current
/// wave, and the latest events.
pub fn render_view(
    rollout: &str,
    machine: &Machine,
    now: u64,
    gates: &[String],
    recent: &[String],
) -> String {
    let mut text = String::new();
    let state = match (machine.phase(), machine.paused()) {
        (Phase::Finished(outcome), _) => outcome.as_str().to_uppercase(),
        (_, Some(reason)) => format!("PAUSED ({reason})"),
        (Phase::Planned, None) => "planned".into(),
        (Phase::Applying, None) => "applying".into(),
        (Phase::Baking, None) => {
            format!("baking, {} left", seconds(machine.bake_remaining_ms(now)))
        }
        (Phase::RollingBack, None) => "ROLLING BACK".into(),
    };
    let mut state: String = state.replace('\n', " / ");
    if state.chars().count() > RECENT_WIDTH {
        state = state.chars().take(RECENT_WIDTH).collect::<String>() + "…";
    }
    let _ = writeln!(text, "rollout {rollout}: {state}");
    for (index, wave) in machine.plan().waves.iter().enumerate() {
        let marker = if index == machine.wave() && !machine.is_finished() {
            "▶"
        } else {
            " "
        };
        let locations: Vec<String> = wave
            .locations
            .iter()
            .map(|location| {
                let symbol = match machine.location(location) {
                    // In doubt, its last call unanswered within the stall bound.
                    _ if machine.stalled().contains(location) => "?",
                    Some(LocationState::Pending) | None => "·",
                    Some(LocationState::Applying { .. }) => "…",
                    Some(LocationState::Applied { .. }) => "✓",
                    Some(LocationState::ApplyFailed) => "✗",
                    Some(LocationState::RollingBack { .. }) => "↺",
                    Some(LocationState::RolledBack { .. }) => "↩",
                    Some(LocationState::RollbackFailed) => "!",
                };
                format!("{symbol}{location}")
            })
            .collect();
        let _ = writeln!(text, "{marker} {:<12} {}", wave.name, locations.join(" "));
        if index == machine.wave() && machine.phase() == Phase::Baking {
            for gate in &wave.gates {
                if let (Some(name), Some(progress), Some(spec)) = (
                    gates.get(*gate),
                    machine.gate_progress(*gate),
                    machine.plan().gates.get(*gate),
                ) {
                    let _ = writeln!(
                        text,
                        "    gate {name:<20} {}/{} passes, {}/{} failures, {}/{} inconclusive",
                        progress.passes.min(spec.count),
                        spec.count,
                        progress.failures,
                        spec.failure_limit,
                        progress.inconclusive,
                        spec.inconclusive_limit
                    );
                }
            }
        }
    }
    for line in recent {
        let _ = writeln!(text, "  {line}");
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
