//! The fleet file of `topoctl rollout` (format: `docs/rollouts.md`): each location's control
//! endpoint and client credentials, the wave specifications and the gates.
//!
//! Owns: parsing (TOML with spans, unknown keys rejected), validation with every error reported
//! at `file:line:column` with a help line (as `config/src/daemon.rs` does), documented defaults,
//! and the resolved, serialisable result the journal records.
//!
//! Must not touch: which locations end up in which wave (`waves.rs`, it needs the topology),
//! files named by the fleet (the driver loads certificates), HTTP.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::{Collector, Diagnostics, Selector, Source, SourceMap, Span, parse_selector};
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Default name the daemons' certificates are checked against.
pub const DEFAULT_SERVER_NAME: &str = "localhost";
/// Default time limit of one control-API call, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;
/// `[defaults] lease_seconds`: how long the fleet lock's lease lasts at each daemon unless
/// renewed (the controller renews it every third of that).
pub const DEFAULT_LEASE_SECONDS: u64 = 60;
/// The bounds of `lease_seconds` (the daemons accept 1 to 3600; the controller renews every
/// third, so at least 3).
pub const LEASE_SECONDS_RANGE: std::ops::RangeInclusive<u64> = 3..=3600;
/// Default bake time of a wave, in seconds.
pub const DEFAULT_BAKE_SECONDS: u64 = 60;
/// Default gate evaluation period, in milliseconds.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// Default number of consecutive passes a gate needs.
pub const DEFAULT_COUNT: u32 = 3;
/// Default number of failed evaluations (per wave) that fail a gate.
pub const DEFAULT_FAILURE_LIMIT: u32 = 1;
/// Default number of consecutive inconclusive evaluations that pause the rollout.
pub const DEFAULT_INCONCLUSIVE_LIMIT: u32 = 5;
/// How long a `visibility` gate waits by default before inconclusive evaluations pause the
/// rollout: the station's default `settle_seconds` (10 s, during which a route not yet held is
/// "not settled", not a failure) plus 5 s, so that a filtered route fails the gate and rolls
/// back instead of pausing it.
pub const DEFAULT_VISIBILITY_INCONCLUSIVE_MS: u64 = 15_000;
/// Shortest gate interval accepted, in milliseconds.
pub const MINIMUM_INTERVAL_MS: u64 = 10;
/// Default stall bound: how long an unreachable location is retried during a wave, in seconds.
pub const DEFAULT_STALL_SECONDS: u64 = 120;

/// What the rollout does when a location stays unreachable for the stall bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStall {
    /// Pause with the reason (the default): an operator decides.
    #[default]
    Pause,
    /// Roll back every changed location.
    Rollback,
}

impl OnStall {
    /// `pause` or `rollback`, as written in the fleet file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStall::Pause => "pause",
            OnStall::Rollback => "rollback",
        }
    }
}
/// Default number of daemons asked for their plan at once in the pre-flight.
pub const DEFAULT_PREFLIGHT_CONCURRENCY: usize = 32;
/// Most daemons asked at once in the pre-flight (each holds a TLS connection).
pub const MAXIMUM_PREFLIGHT_CONCURRENCY: usize = 1024;

/// Client TLS files for one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTls {
    pub ca: PathBuf,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// One location's daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetLocation {
    pub name: String,
    pub control: SocketAddr,
    pub server_name: String,
    pub tls: ClientTls,
}

/// A `[[wave]]` as written (before the topology assigns locations to it).
#[derive(Debug, Clone, PartialEq)]
pub struct WaveSpec {
    pub name: String,
    /// `None`: every location still unassigned.
    pub select: Option<Selector>,
    /// Where the selector's expression is in the fleet file (for errors about what it selects).
    pub select_span: Option<Span>,
    /// Fraction of the candidates taken, rounded up.
    pub share: f64,
    pub bake_seconds: u64,
    pub max_locations: Option<usize>,
    /// The stall bound of this wave (its own, or `[defaults]`).
    pub stall_seconds: u64,
    /// What a stall does in this wave (its own, or `[defaults]`).
    pub on_stall: OnStall,
}

/// What a gate looks at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GateKind {
    /// What each daemon of the wave reports: sessions, sync, Adj-RIB-Out, runtime guard.
    Daemon,
    /// The services' health as each daemon of the wave probes it.
    Probes { services: Vec<String> },
    /// A PromQL instant query with bounds.
    Promql {
        /// Base URL, `http://host:port`.
        prometheus: String,
        query: String,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// Each daemon of the wave's RPKI (`GET /v1/rpki`): VRPs in sync, no route invalid.
    Rpki,
    /// What each location's edge routers hold (`GET /v1/visibility`): every route the plan
    /// announces there held post-policy; `routers`, the fewest routers each location must
    /// have connected (a router that dropped its BMP session is otherwise not missed).
    Visibility {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        routers: Option<u32>,
    },
}

/// A `[[gate]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: GateKind,
    pub interval_ms: u64,
    pub count: u32,
    pub failure_limit: u32,
    pub inconclusive_limit: u32,
    /// Only in these waves (by name, or the base name of a split wave); `None`: every wave.
    pub waves: Option<Vec<String>>,
}

impl GateSpec {
    /// Whether the gate applies to a wave called `name` whose unsplit name is `base`.
    pub fn applies_to(&self, name: &str, base: &str) -> bool {
        self.waves.as_ref().is_none_or(|waves| {
            waves
                .iter()
                .any(|wave| wave.as_str() == name || wave.as_str() == base)
        })
    }

    /// Whether the gate compares against the control group (`{control}` in its query).
    pub fn uses_control(&self) -> bool {
        matches!(&self.kind, GateKind::Promql { query, .. } if query.contains("{control}"))
    }
}

/// The parsed, validated fleet file.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    pub locations: Vec<FleetLocation>,
    pub waves: Vec<WaveSpec>,
    pub gates: Vec<GateSpec>,
    pub timeout_seconds: u64,
    /// How many daemons the pre-flight asks for their plan at once.
    pub preflight_concurrency: usize,
    /// The fleet file itself, so that later checks (wave selectors against the topology)
    /// report at `file:line:column`.
    pub source: Source,
    /// The fleet lock's lease time to live, in seconds.
    pub lease_seconds: u64,
}

impl Fleet {
    /// The location called `name`.
    pub fn location(&self, name: &str) -> Option<&FleetLocation> {
        self.locations.iter().find(|location| location.name == name)
    }
}

/// Why a fleet file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read the fleet file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    defaults: Option<RawDefaults>,
    #[serde(default)]
    location: Vec<RawLocation>,
    #[serde(default)]
    wave: Vec<RawWave>,
    #[serde(default)]
    gate: Vec<RawGate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    ca: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    timeout_seconds: Option<Spanned<u64>>,
    stall_seconds: Option<Spanned<u64>>,
    on_stall: Option<Spanned<String>>,
    preflight_concurrency: Option<Spanned<i64>>,
    lease_seconds: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    name: Spanned<String>,
    control: Spanned<String>,
    server_name: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    certificate: Option<Spanned<String>>,
    private_key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWave {
    name: Spanned<String>,
    select: Option<Spanned<String>>,
    share: Option<Spanned<f64>>,
    bake_seconds: Option<Spanned<u64>>,
    max_locations: Option<Spanned<i64>>,
    stall_seconds: Option<Spanned<u64>>,
    on_stall: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    name: Spanned<String>,
    kind: Spanned<String>,
    interval_ms: Option<Spanned<u64>>,
    count: Option<Spanned<u32>>,
    failure_limit: Option<Spanned<u32>>,
    inconclusive_limit: Option<Spanned<u32>>,
    waves: Option<Spanned<Vec<String>>>,
    services: Option<Spanned<Vec<String>>>,
    prometheus: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    routers: Option<Spanned<u32>>,
}

fn span_of<T>(spanned: &Spanned<T>) -> Span {
    Span::new(0, spanned.span())
}

/// Reads and parses a fleet file; relative paths are resolved against its directory.
pub fn load_fleet(path: &Path) -> Result<Fleet, FleetError> {
    let text = std::fs::read_to_string(path).map_err(|source| FleetError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let base = std::fs::canonicalize(&base).unwrap_or(base);
    parse_fleet(&Source::new(path.display().to_string(), text), &base).map_err(FleetError::Invalid)
}

/// Parses and validates a fleet file's text; every error is reported together.
pub fn parse_fleet(source: &Source, base: &Path) -> Result<Fleet, Diagnostics> {
    let sources = SourceMap::new(vec![source.clone()]);
    let mut collector = Collector::new();
    let raw: RawFleet = match toml::from_str(&source.text) {
        Ok(raw) => raw,
        Err(failure) => {
            let span = failure
                .span()
                .map_or(Span::new(0, 0..0), |range| Span::new(0, range));
            let help = failure.message().contains("unknown field").then(|| {
                "remove the key or fix its spelling; unknown keys are rejected (see docs/rollouts.md)"
                    .to_string()
            });
            collector.error(Some(span), failure.message().trim_end().to_string(), help);
            return Err(collector.finish(&sources));
        }
    };
    let fleet = convert(raw, source, base, &mut collector);
    if collector.has_errors() {
        return Err(collector.finish(&sources));
    }
    Ok(fleet)
}

fn resolve(base: &Path, text: &str) -> PathBuf {
    let path = Path::new(text);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn check_name(
    name: &Spanned<String>,
    what: &str,
    seen: &mut BTreeSet<String>,
    collector: &mut Collector,
) {
    let text = name.get_ref();
    if text.trim().is_empty() {
        collector.error(
            Some(span_of(name)),
            format!("the {what} name is empty"),
            Some(format!("give every {what} a name")),
        );
    } else if !seen.insert(text.clone()) {
        collector.error(
            Some(span_of(name)),
            format!("duplicate {what} name `{text}`"),
            Some(format!("{what} names must be unique")),
        );
    }
}

fn convert(raw: RawFleet, source: &Source, base: &Path, collector: &mut Collector) -> Fleet {
    let text = source.text.as_str();
    let defaults = raw.defaults.unwrap_or_default();
    let timeout_seconds = match &defaults.timeout_seconds {
        Some(timeout) if *timeout.get_ref() == 0 => {
            collector.error(
                Some(span_of(timeout)),
                "timeout_seconds must be at least 1",
                Some("the time limit of one control-API call, in seconds".into()),
            );
            DEFAULT_TIMEOUT_SECONDS
        }
        Some(timeout) => *timeout.get_ref(),
        None => DEFAULT_TIMEOUT_SECONDS,
    };
    let lease_seconds = match &defaults.lease_seconds {
        Some(lease) if !LEASE_SECONDS_RANGE.contains(lease.get_ref()) => {
            collector.error(
                Some(span_of(lease)),
                format!(
                    "lease_seconds {} is outside {}..={}",
                    lease.get_ref(),
                    LEASE_SECONDS_RANGE.start(),
                    LEASE_SECONDS_RANGE.end()
                ),
                Some(format!(
                    "how long the fleet lock survives a dead controller, renewed every third; the default is {DEFAULT_LEASE_SECONDS}"
                )),
            );
            DEFAULT_LEASE_SECONDS
        }
        Some(lease) => *lease.get_ref(),
        None => DEFAULT_LEASE_SECONDS,
    };
    let locations = convert_locations(&raw.location, &defaults, base, collector);
    let stall = (
        stall_seconds(&defaults.stall_seconds, DEFAULT_STALL_SECONDS, collector),
        on_stall(&defaults.on_stall, OnStall::default(), collector),
    );
    let waves = convert_waves(&raw.wave, text, stall, collector);
    let gates = convert_gates(&raw.gate, &waves, collector);
    Fleet {
        locations,
        waves,
        gates,
        timeout_seconds,
        preflight_concurrency: preflight_concurrency(&defaults, collector),
        source: source.clone(),
        lease_seconds,
    }
}

/// `[defaults] preflight_concurrency`: 1 to [`MAXIMUM_PREFLIGHT_CONCURRENCY`].
fn preflight_concurrency(defaults: &RawDefaults, collector: &mut Collector) -> usize {
    let Some(value) = &defaults.preflight_concurrency else {
        return DEFAULT_PREFLIGHT_CONCURRENCY;
    };
    match usize::try_from(*value.get_ref()) {
        Ok(count) if (1..=MAXIMUM_PREFLIGHT_CONCURRENCY).contains(&count) => count,
        _ => {
            collector.error(
                Some(span_of(value)),
                format!(
                    "preflight_concurrency {} is outside 1..={MAXIMUM_PREFLIGHT_CONCURRENCY}",
                    value.get_ref()
                ),
                Some(format!(
                    "how many daemons the pre-flight asks at once; remove it for {DEFAULT_PREFLIGHT_CONCURRENCY}"
                )),
            );
            DEFAULT_PREFLIGHT_CONCURRENCY
        }
    }
}

fn convert_locations(
    raw: &[RawLocation],
    defaults: &RawDefaults,
    base: &Path,
    collector: &mut Collector,
) -> Vec<FleetLocation> {
    if raw.is_empty() {
        collector.error(
            None,
            "the fleet file has no [[location]]",
            Some("add one [[location]] with name and control per daemon".into()),
        );
    }
    let mut seen = BTreeSet::new();
    let mut controls = BTreeSet::new();
    let mut locations = Vec::with_capacity(raw.len());
    for location in raw {
        check_name(&location.name, "location", &mut seen, collector);
        let control = match location.control.get_ref().parse::<SocketAddr>() {
            Ok(control) => {
                if !controls.insert(control) {
                    collector.error(
                        Some(span_of(&location.control)),
                        format!("control address {control} is used by two locations"),
                        Some("every location has its own daemon".into()),
                    );
                }
                Some(control)
            }
            Err(_) => {
                collector.error(
                    Some(span_of(&location.control)),
                    format!(
                        "`{}` is not a control address (IP address and port)",
                        location.control.get_ref()
                    ),
                    Some("write it like \"127.0.0.11:9443\" or \"[::1]:9443\"".into()),
                );
                None
            }
        };
        let mut file = |own: &Option<Spanned<String>>,
                        default: &Option<Spanned<String>>,
                        key: &str| {
            match own.as_ref().or(default.as_ref()) {
                Some(path) if !path.get_ref().is_empty() => Some(resolve(base, path.get_ref())),
                Some(path) => {
                    collector.error(
                        Some(span_of(path)),
                        format!("`{key}` is empty"),
                        Some("name a PEM file".into()),
                    );
                    None
                }
                None => {
                    collector.error(
                        Some(span_of(&location.name)),
                        format!("location `{}` has no `{key}`", location.name.get_ref()),
                        Some(format!("set `{key}` in [defaults] or in this [[location]]")),
                    );
                    None
                }
            }
        };
        let ca = file(&location.ca, &defaults.ca, "ca");
        let certificate = file(&location.certificate, &defaults.certificate, "certificate");
        let private_key = file(&location.private_key, &defaults.private_key, "private_key");
        let server_name = location
            .server_name
            .as_ref()
            .or(defaults.server_name.as_ref())
            .map_or_else(
                || DEFAULT_SERVER_NAME.to_string(),
                |name| name.get_ref().clone(),
            );
        if let (Some(control), Some(ca), Some(certificate), Some(private_key)) =
            (control, ca, certificate, private_key)
        {
            locations.push(FleetLocation {
                name: location.name.get_ref().clone(),
                control,
                server_name,
                tls: ClientTls {
                    ca,
                    certificate,
                    private_key,
                },
            });
        }
    }
    locations
}

/// The span of `offset..offset + length` inside a TOML string value whose whole literal
/// (quotes included) is `literal`; the literal's start when escapes make the mapping unsure.
fn inside_string(text: &str, literal: Span, value: &str, offset: usize, length: usize) -> Span {
    let start = literal.start as usize;
    let end = literal.end as usize;
    let body = text.get(start + 1..end.saturating_sub(1));
    if body == Some(value) {
        Span::new(0, start + 1 + offset..start + 1 + offset + length)
    } else {
        literal
    }
}

/// The longest stall bound: 7 days (a longer one is a mistake, and would overflow a deadline).
pub const MAX_STALL_SECONDS: u64 = 7 * 24 * 3600;

/// A stall bound: 1 second to [`MAX_STALL_SECONDS`], else an error at the key (and `default`).
fn stall_seconds(value: &Option<Spanned<u64>>, default: u64, collector: &mut Collector) -> u64 {
    match value {
        Some(value) if *value.get_ref() > MAX_STALL_SECONDS => {
            collector.error(
                Some(span_of(value)),
                format!(
                    "stall_seconds = {} is longer than 7 days ({MAX_STALL_SECONDS} seconds)",
                    value.get_ref()
                ),
                Some(
                    "how long an unreachable location is retried before the rollout pauses or rolls back, in seconds: at most 604800"
                        .into(),
                ),
            );
            default
        }
        Some(value) if *value.get_ref() == 0 => {
            collector.error(
                Some(span_of(value)),
                "stall_seconds must be at least 1",
                Some(
                    "how long an unreachable location is retried before the rollout pauses or rolls back, in seconds"
                        .into(),
                ),
            );
            default
        }
        Some(value) => *value.get_ref(),
        None => default,
    }
}

/// `on_stall = "pause" | "rollback"`, else an error at the value (and `default`).
fn on_stall(
    value: &Option<Spanned<String>>,
    default: OnStall,
    collector: &mut Collector,
) -> OnStall {
    match value
        .as_ref()
        .map(|value| (value, value.get_ref().as_str()))
    {
        Some((_, "pause")) => OnStall::Pause,
        Some((_, "rollback")) => OnStall::Rollback,
        Some((value, other)) => {
            collector.error(
                Some(span_of(value)),
                format!("unknown on_stall `{other}`"),
                Some("use \"pause\" (the default) or \"rollback\"".into()),
            );
            default
        }
        None => default,
    }
}

fn convert_waves(
    raw: &[RawWave],
    text: &str,
    stall: (u64, OnStall),
    collector: &mut Collector,
) -> Vec<WaveSpec> {
    if raw.is_empty() {
        collector.error(
            None,
            "the fleet file has no [[wave]]",
            Some("add at least one [[wave]], e.g. name = \"all\" and share = 1.0".into()),
        );
    }
    let mut seen = BTreeSet::new();
    let mut waves = Vec::with_capacity(raw.len());
    for wave in raw {
        check_name(&wave.name, "wave", &mut seen, collector);
        let select_span = wave.select.as_ref().map(|select| {
            inside_string(
                text,
                span_of(select),
                select.get_ref(),
                0,
                select.get_ref().len(),
            )
        });
        let select = wave.select.as_ref().and_then(|select| {
            let literal = span_of(select);
            match parse_selector(select.get_ref(), &|offset, length| {
                inside_string(text, literal, select.get_ref(), offset, length)
            }) {
                Ok(selector) => Some(selector),
                Err(failure) => {
                    collector.error(
                        Some(inside_string(
                            text,
                            literal,
                            select.get_ref(),
                            failure.offset,
                            failure.length,
                        )),
                        format!(
                            "invalid selector of wave `{}`: {}",
                            wave.name.get_ref(),
                            failure.message
                        ),
                        failure.help,
                    );
                    None
                }
            }
        });
        let share = match &wave.share {
            Some(share) if !(*share.get_ref() > 0.0 && *share.get_ref() <= 1.0) => {
                collector.error(
                    Some(span_of(share)),
                    format!("share {} is outside (0, 1]", share.get_ref()),
                    Some("the fraction of the still unassigned locations, e.g. 0.5 or 1.0".into()),
                );
                1.0
            }
            Some(share) => *share.get_ref(),
            None => 1.0,
        };
        let max_locations = match &wave.max_locations {
            Some(max) if *max.get_ref() < 1 => {
                collector.error(
                    Some(span_of(max)),
                    format!("max_locations {} must be at least 1", max.get_ref()),
                    Some("remove it for no limit".into()),
                );
                None
            }
            Some(max) => usize::try_from(*max.get_ref()).ok(),
            None => None,
        };
        waves.push(WaveSpec {
            name: wave.name.get_ref().clone(),
            select,
            select_span,
            share,
            bake_seconds: wave
                .bake_seconds
                .as_ref()
                .map_or(DEFAULT_BAKE_SECONDS, |bake| *bake.get_ref()),
            max_locations,
            stall_seconds: stall_seconds(&wave.stall_seconds, stall.0, collector),
            on_stall: on_stall(&wave.on_stall, stall.1, collector),
        });
    }
    waves
}

fn convert_gates(raw: &[RawGate], waves: &[WaveSpec], collector: &mut Collector) -> Vec<GateSpec> {
    let mut seen = BTreeSet::new();
    let mut gates = Vec::with_capacity(raw.len());
    for gate in raw {
        check_name(&gate.name, "gate", &mut seen, collector);
        let kind = gate_kind(gate, collector);
        let interval_ms = gate_interval_ms(gate, collector);
        let count = at_least_one(&gate.count, "count", DEFAULT_COUNT, collector);
        let failure_limit = at_least_one(
            &gate.failure_limit,
            "failure_limit",
            DEFAULT_FAILURE_LIMIT,
            collector,
        );
        let inconclusive_default = match kind {
            Some(GateKind::Visibility { .. }) => {
                u32::try_from(DEFAULT_VISIBILITY_INCONCLUSIVE_MS.div_ceil(interval_ms.max(1)))
                    .unwrap_or(u32::MAX)
                    .max(DEFAULT_INCONCLUSIVE_LIMIT)
            }
            _ => DEFAULT_INCONCLUSIVE_LIMIT,
        };
        let inconclusive_limit = at_least_one(
            &gate.inconclusive_limit,
            "inconclusive_limit",
            inconclusive_default,
            collector,
        );
        check_gate_waves(gate, waves, collector);
        if let Some(kind) = kind {
            gates.push(GateSpec {
                name: gate.name.get_ref().clone(),
                kind,
                interval_ms,
                count,
                failure_limit,
                inconclusive_limit,
                waves: gate.waves.as_ref().map(|waves| waves.get_ref().clone()),
            });
        }
    }
    gates
}

/// A gate's kind with its own keys; a key of another kind is an error at that key.
fn gate_kind(gate: &RawGate, collector: &mut Collector) -> Option<GateKind> {
    match gate.kind.get_ref().as_str() {
        "daemon" => {
            reject_keys(
                gate,
                &["services", "prometheus", "query", "min", "max", "routers"],
                collector,
            );
            Some(GateKind::Daemon)
        }
        "probes" => {
            reject_keys(
                gate,
                &["prometheus", "query", "min", "max", "routers"],
                collector,
            );
            probes_kind(gate, collector)
        }
        "promql" => {
            reject_keys(gate, &["services", "routers"], collector);
            promql_kind(gate, collector)
        }
        "rpki" => {
            reject_keys(
                gate,
                &["services", "prometheus", "query", "min", "max", "routers"],
                collector,
            );
            Some(GateKind::Rpki)
        }
        "visibility" => {
            reject_keys(
                gate,
                &["services", "prometheus", "query", "min", "max"],
                collector,
            );
            Some(GateKind::Visibility {
                routers: gate.routers.as_ref().map(|routers| *routers.get_ref()),
            })
        }
        other => {
            collector.error(
                Some(span_of(&gate.kind)),
                format!("unknown gate kind `{other}`"),
                Some("use \"daemon\", \"probes\", \"promql\", \"rpki\" or \"visibility\"".into()),
            );
            None
        }
    }
}

/// An error at each of `keys` the gate sets: they do not apply to its kind.
fn reject_keys(gate: &RawGate, keys: &[&str], collector: &mut Collector) {
    for key in keys {
        let span = match *key {
            "services" => gate.services.as_ref().map(span_of),
            "prometheus" => gate.prometheus.as_ref().map(span_of),
            "query" => gate.query.as_ref().map(span_of),
            "min" => gate.min.as_ref().map(span_of),
            "max" => gate.max.as_ref().map(span_of),
            "routers" => gate.routers.as_ref().map(span_of),
            _ => None,
        };
        if let Some(span) = span {
            collector.error(
                Some(span),
                format!(
                    "`{key}` does not apply to a gate of kind {}",
                    gate.kind.get_ref()
                ),
                Some("remove it".into()),
            );
        }
    }
}

/// A probes gate: the services whose probes must pass (at least one).
fn probes_kind(gate: &RawGate, collector: &mut Collector) -> Option<GateKind> {
    let name = gate.name.get_ref();
    match &gate.services {
        Some(services) if !services.get_ref().is_empty() => Some(GateKind::Probes {
            services: services.get_ref().clone(),
        }),
        Some(services) => {
            collector.error(
                Some(span_of(services)),
                format!("probes gate `{name}` lists no services"),
                Some("name the services whose probes must pass".into()),
            );
            None
        }
        None => {
            collector.error(
                Some(span_of(&gate.kind)),
                format!("probes gate `{name}` has no `services`"),
                Some("add services = [\"resolver\"]".into()),
            );
            None
        }
    }
}

/// How often the gate is evaluated; below [`MINIMUM_INTERVAL_MS`] is an error.
fn gate_interval_ms(gate: &RawGate, collector: &mut Collector) -> u64 {
    if let Some(interval) = &gate.interval_ms
        && *interval.get_ref() < MINIMUM_INTERVAL_MS
    {
        collector.error(
            Some(span_of(interval)),
            format!(
                "interval_ms {} is below {MINIMUM_INTERVAL_MS}",
                interval.get_ref()
            ),
            Some("evaluate a gate at most every 10 ms".into()),
        );
    }
    gate.interval_ms
        .as_ref()
        .map_or(DEFAULT_INTERVAL_MS, |interval| *interval.get_ref())
}

/// A count that must be at least 1, or `default` when not given (or given as 0, an error).
fn at_least_one(
    value: &Option<Spanned<u32>>,
    key: &str,
    default: u32,
    collector: &mut Collector,
) -> u32 {
    match value {
        Some(value) if *value.get_ref() == 0 => {
            collector.error(
                Some(span_of(value)),
                format!("`{key}` must be at least 1"),
                None,
            );
            default
        }
        Some(value) => *value.get_ref(),
        None => default,
    }
}

/// Every wave a gate names must be a `[[wave]]`.
fn check_gate_waves(gate: &RawGate, waves: &[WaveSpec], collector: &mut Collector) {
    let Some(names) = &gate.waves else {
        return;
    };
    for wave in names.get_ref() {
        if !waves.iter().any(|spec| &spec.name == wave) {
            collector.error(
                Some(span_of(names)),
                format!(
                    "gate `{}` names an unknown wave `{wave}`",
                    gate.name.get_ref()
                ),
                Some("use the name of a [[wave]]".into()),
            );
        }
    }
}

fn promql_kind(gate: &RawGate, collector: &mut Collector) -> Option<GateKind> {
    let name = gate.name.get_ref();
    let Some(prometheus) = &gate.prometheus else {
        collector.error(
            Some(span_of(&gate.kind)),
            format!("promql gate `{name}` has no `prometheus`"),
            Some("add prometheus = \"127.0.0.1:9090\"".into()),
        );
        return None;
    };
    let base = prometheus_base(prometheus.get_ref());
    if base.is_none() {
        collector.error(
            Some(span_of(prometheus)),
            format!("`{}` is not a Prometheus address", prometheus.get_ref()),
            Some("write host:port or http://host:port (plain HTTP)".into()),
        );
    }
    let Some(query) = &gate.query else {
        collector.error(
            Some(span_of(&gate.kind)),
            format!("promql gate `{name}` has no `query`"),
            Some("add query = '…' (an instant query; {wave} and {control} expand to location regexes)".into()),
        );
        return None;
    };
    if query.get_ref().trim().is_empty() {
        collector.error(Some(span_of(query)), "the query is empty", None);
    }
    let min = gate.min.as_ref().map(|min| *min.get_ref());
    let max = gate.max.as_ref().map(|max| *max.get_ref());
    if min.is_none() && max.is_none() {
        collector.error(
            Some(span_of(&gate.kind)),
            format!("promql gate `{name}` has neither `min` nor `max`"),
            Some("a sample passes when it is ≥ min and ≤ max; give at least one".into()),
        );
        return None;
    }
    if let (Some(low), Some(high), Some(span)) = (min, max, gate.max.as_ref().map(span_of))
        && low > high
    {
        collector.error(Some(span), format!("max {high} is below min {low}"), None);
    }
    Some(GateKind::Promql {
        prometheus: base?,
        query: query.get_ref().clone(),
        min,
        max,
    })
}

/// `host:port` or `http://host:port[/]` → `http://host:port`; `None` if neither.
pub fn prometheus_base(text: &str) -> Option<String> {
    let rest = text.strip_prefix("http://").unwrap_or(text);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || text.starts_with("https://") {
        return None;
    }
    let (host, port) = rest.rsplit_once(':')?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return None;
    }
    Some(format!("http://{rest}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "fleet_tests.rs"]
mod tests;
