//! Converting `[service.health]` from the file schema into a [`HealthSpec`]: defaults filled in,
//! timings, hold-down and the unhealthy action (with its degrade attributes) checked, each check
//! converted by `check`; every error at `file:line:column` inside the value. Probe targets'
//! `{name}` placeholders stay unexpanded until the daemon loads them.

use toml::Spanned;

pub(crate) use super::check::CHECK_KINDS_HELP;
use super::check::convert_check;
pub(crate) use super::checker::Checker;
use super::file::{DegradeFile, HealthFile};
use super::spec::{
    DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_HEALTH_RISE,
    DEFAULT_HEALTH_TIMEOUT_MS, DEFAULT_HOLD_DOWN_MS, DEFAULT_MAX_HOLD_DOWN_MS, DegradeAttributes,
    HealthSpec, MAX_TOTAL_AS_PATH_PREPEND, MIN_HEALTH_INTERVAL_MS, ProbeSpec, UnhealthyAction,
};
use crate::community::{Community, parse_communities};
use crate::source::{Located, Span, value_or};

/// `[service.health]` → [`HealthSpec`] with the defaults of `health.rs`, every error reported.
pub(crate) fn convert_health(
    checker: &mut Checker<'_>,
    service: &str,
    service_prepend: u8,
    health: &Spanned<HealthFile>,
) -> Option<Located<HealthSpec>> {
    let span = checker.span(health);
    let file = health.get_ref();
    let (interval_ms, timeout_ms) = check_timing(checker, file, span);
    let (hold_down_ms, max_hold_down_ms) = check_hold_down(checker, file, span);
    let on_unhealthy = convert_on_unhealthy(checker, file, span, service_prepend);
    let checks = convert_checks(checker, file, span, service);
    Some(Located::new(
        HealthSpec {
            interval_ms,
            timeout_ms,
            rise: value_or(&file.rise, DEFAULT_HEALTH_RISE),
            fall: value_or(&file.fall, DEFAULT_HEALTH_FALL),
            hold_down_ms,
            max_hold_down_ms,
            on_unhealthy: on_unhealthy?,
            checks: checks?,
        },
        span,
    ))
}

/// `interval_ms`, `timeout_ms` (shorter than the interval), `rise` and `fall` (at least 1):
/// `(interval_ms, timeout_ms)`, defaults filled in.
fn check_timing(checker: &mut Checker<'_>, file: &HealthFile, span: Span) -> (u64, u64) {
    let interval_ms = value_or(&file.interval_ms, DEFAULT_HEALTH_INTERVAL_MS);
    let timeout_ms = value_or(&file.timeout_ms, DEFAULT_HEALTH_TIMEOUT_MS);
    let interval_valid = interval_ms >= MIN_HEALTH_INTERVAL_MS;
    if let Some(value) = file.interval_ms.as_ref().filter(|_| !interval_valid) {
        checker.error(
            checker.span(value),
            format!("interval_ms = {interval_ms} is shorter than {MIN_HEALTH_INTERVAL_MS} ms"),
            format!(
                "probe at most ten times a second: interval_ms = {MIN_HEALTH_INTERVAL_MS} or \
                 more (the default is {DEFAULT_HEALTH_INTERVAL_MS})"
            ),
        );
    }
    if let Some(value) = file.timeout_ms.as_ref().filter(|_| timeout_ms == 0) {
        checker.error(
            checker.span(value),
            "timeout_ms = 0 leaves a probe no time to run".into(),
            "set timeout_ms to at least 1 and below interval_ms".into(),
        );
    } else if interval_valid && timeout_ms >= interval_ms {
        let at = file
            .timeout_ms
            .as_ref()
            .or(file.interval_ms.as_ref())
            .map_or(span, |value| checker.span(value));
        let timeout_note = if file.timeout_ms.is_none() {
            " (the default)"
        } else {
            ""
        };
        checker.error(
            at,
            format!(
                "timeout_ms = {timeout_ms}{timeout_note} is not shorter than interval_ms = \
                 {interval_ms}"
            ),
            format!(
                "a probe must end before the next round starts: set timeout_ms below \
                 interval_ms, such as timeout_ms = {}",
                interval_ms / 2
            ),
        );
    }
    for (key, value) in [("rise", &file.rise), ("fall", &file.fall)] {
        if let Some(value) = value.as_ref().filter(|value| *value.get_ref() == 0) {
            checker.error(
                checker.span(value),
                format!("{key} = 0 is not allowed"),
                format!(
                    "{key} counts consecutive rounds before the service changes state: write \
                     {key} = 1 or more (the default is {})",
                    if key == "rise" {
                        DEFAULT_HEALTH_RISE
                    } else {
                        DEFAULT_HEALTH_FALL
                    }
                ),
            );
        }
    }
    (interval_ms, timeout_ms)
}

/// `hold_down_ms` and `max_hold_down_ms` (not shorter): both, defaults filled in.
fn check_hold_down(checker: &mut Checker<'_>, file: &HealthFile, span: Span) -> (u64, u64) {
    let hold_down_ms = value_or(&file.hold_down_ms, DEFAULT_HOLD_DOWN_MS);
    let max_hold_down_ms = value_or(&file.max_hold_down_ms, DEFAULT_MAX_HOLD_DOWN_MS);
    if max_hold_down_ms < hold_down_ms {
        let at = file
            .max_hold_down_ms
            .as_ref()
            .or(file.hold_down_ms.as_ref())
            .map_or(span, |value| checker.span(value));
        checker.error(
            at,
            format!(
                "max_hold_down_ms = {max_hold_down_ms} is shorter than hold_down_ms = \
                 {hold_down_ms}"
            ),
            "the hold-down doubles on every flap up to max_hold_down_ms: make it at least \
             hold_down_ms"
                .into(),
        );
    }
    (hold_down_ms, max_hold_down_ms)
}

/// `on_unhealthy` and `degrade`, which must come together: withdraw (the default) or degrade with
/// its attributes; `None` after an error.
fn convert_on_unhealthy(
    checker: &mut Checker<'_>,
    file: &HealthFile,
    span: Span,
    service_prepend: u8,
) -> Option<UnhealthyAction> {
    let degrade_wanted = match &file.on_unhealthy {
        None => Some(false),
        Some(value) => match value.get_ref().as_str() {
            "withdraw" => Some(false),
            "degrade" => Some(true),
            other => {
                checker.error(
                    checker.span(value),
                    format!("unknown on_unhealthy action \"{other}\""),
                    "write on_unhealthy = \"withdraw\" (the default: stop announcing here) or \
                     \"degrade\" (keep announcing with the degrade attributes)"
                        .into(),
                );
                None
            }
        },
    };
    match (degrade_wanted, &file.degrade) {
        (Some(true), Some(degrade)) => {
            convert_degrade(checker, service_prepend, degrade).map(UnhealthyAction::Degrade)
        }
        (Some(true), None) => {
            let at = file
                .on_unhealthy
                .as_ref()
                .map_or(span, |value| checker.span(value));
            checker.error(
                at,
                "on_unhealthy = \"degrade\" needs a degrade table".into(),
                "add degrade = { as_path_prepend = 3, med = 1000, communities = [\"13335:666\"] } \
                 (any of the three) to say how the routes are made less preferred"
                    .into(),
            );
            None
        }
        (Some(false), Some(degrade)) => {
            checker.error(
                checker.span(degrade),
                "degrade is set but on_unhealthy is \"withdraw\"".into(),
                "write on_unhealthy = \"degrade\" to keep announcing degraded routes, or remove \
                 degrade"
                    .into(),
            );
            None
        }
        (Some(false), None) => Some(UnhealthyAction::Withdraw),
        (None, _) => None,
    }
}

/// Every `[[service.health.check]]` (at least one); `None` when any has an error.
fn convert_checks(
    checker: &mut Checker<'_>,
    file: &HealthFile,
    span: Span,
    service: &str,
) -> Option<Vec<ProbeSpec>> {
    if file.check.is_empty() {
        checker.error(
            span,
            format!("[service.health] of service `{service}` has no checks"),
            "add at least one [[service.health.check]], such as kind = \"tcp\" with address = \
             \"{probe_host}:853\""
                .into(),
        );
    }
    let checks: Vec<Option<ProbeSpec>> = file
        .check
        .iter()
        .map(|check| convert_check(checker, check.get_ref()))
        .collect();
    checks.into_iter().collect()
}

/// `degrade = { .. }`: the attributes that make the routes less preferred (at least one), the
/// prepends within [`MAX_TOTAL_AS_PATH_PREPEND`] together with the service's own.
fn convert_degrade(
    checker: &mut Checker<'_>,
    service_prepend: u8,
    degrade: &Spanned<DegradeFile>,
) -> Option<DegradeAttributes> {
    let file = degrade.get_ref();
    let mut valid = true;
    let prepend = value_or(&file.as_path_prepend, 0);
    if let Some(value) = &file.as_path_prepend
        && u16::from(prepend) + u16::from(service_prepend) > u16::from(MAX_TOTAL_AS_PATH_PREPEND)
    {
        valid = false;
        checker.error(
            checker.span(value),
            format!(
                "degrade as_path_prepend = {prepend} and the service's as_path_prepend = \
                 {service_prepend} make {} prepends, more than {MAX_TOTAL_AS_PATH_PREPEND}",
                u16::from(prepend) + u16::from(service_prepend)
            ),
            format!(
                "write as_path_prepend = {} or less here",
                MAX_TOTAL_AS_PATH_PREPEND.saturating_sub(service_prepend)
            ),
        );
    }
    let source = checker.source;
    let mut communities = parse_communities(
        source,
        &file.communities,
        Community::parse,
        "community",
        "a community is two 16-bit numbers, \"ASN:VALUE\", such as \"13335:666\"",
        checker.collector,
    )
    .unwrap_or_else(|| {
        valid = false;
        checker.valid = false;
        Vec::new()
    });
    communities.sort_unstable();
    communities.dedup();
    if valid && prepend == 0 && file.med.is_none() && communities.is_empty() {
        valid = false;
        checker.error(
            checker.span(degrade),
            "degrade makes the routes no less preferred".into(),
            "set as_path_prepend, med or communities (the edge can match a \"last resort\" \
             community)"
                .into(),
        );
    }
    valid.then_some(DegradeAttributes {
        as_path_prepend: prepend,
        med: file.med,
        communities,
    })
}
