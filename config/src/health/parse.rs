//! Converting `[service.health]` and `[[service.health.check]]` from the file schema into a
//! [`HealthSpec`]: defaults filled in, ranges checked, and each probe target's shape and
//! `{name}` placeholders checked (they stay unexpanded until the daemon loads them), every error
//! at `file:line:column` inside the value.

use std::net::IpAddr;

use toml::Spanned;

use super::file::{CheckFile, DegradeFile, HealthFile};
use super::{
    DEFAULT_HEALTH_FALL, DEFAULT_HEALTH_INTERVAL_MS, DEFAULT_HEALTH_RISE,
    DEFAULT_HEALTH_TIMEOUT_MS, DEFAULT_HOLD_DOWN_MS, DEFAULT_HTTP_EXPECT_STATUS,
    DEFAULT_MAX_HOLD_DOWN_MS, DegradeAttributes, DnsRecordType, HealthSpec,
    MAX_TOTAL_AS_PATH_PREPEND, MIN_HEALTH_INTERVAL_MS, ProbeSpec, UnhealthyAction,
};
use crate::community::Community;
use crate::diagnostic::Collector;

use crate::source::{Located, Span, StringPositions, span_of};

/// Reports errors while converting `[service.health]`, remembering whether there was any.
pub(crate) struct Checker<'a> {
    pub(crate) source: u32,
    pub(crate) text: &'a str,
    pub(crate) collector: &'a mut Collector,
    pub(crate) valid: bool,
}

impl Checker<'_> {
    fn span<T>(&self, spanned: &Spanned<T>) -> Span {
        span_of(self.source, spanned)
    }

    fn error(&mut self, span: Span, message: String, help: String) {
        self.valid = false;
        self.collector.error(Some(span), message, Some(help));
    }

    /// Checks the `{name}` placeholders of the probe target `key`; `Some(true)` when it has
    /// any (then nothing else about it can be checked before the daemon expands it).
    fn target(&mut self, key: &str, value: &Spanned<String>) -> Option<bool> {
        match scan_placeholders(value.get_ref()) {
            Ok(found) => Some(found),
            Err(failure) => {
                self.target_error(key, value, failure);
                None
            }
        }
    }

    /// A `host:port` probe target, its placeholders and shape checked.
    fn host_port(&mut self, key: &str, value: &Spanned<String>) -> Option<String> {
        self.target(key, value)?;
        match host_port_error(value.get_ref()) {
            Some(failure) => {
                self.target_error(key, value, failure);
                None
            }
            None => Some(value.get_ref().clone()),
        }
    }

    fn target_error(&mut self, key: &str, value: &Spanned<String>, failure: TargetError) {
        let positions = StringPositions::new(self.text, self.span(value), value.get_ref());
        self.error(
            positions.locate(failure.offset, failure.length),
            format!("invalid {key} \"{}\": {}", value.get_ref(), failure.message),
            failure.help,
        );
    }
}

/// What is wrong inside a probe target, as a byte range of the decoded string.
struct TargetError {
    offset: usize,
    length: usize,
    message: String,
    help: String,
}

impl TargetError {
    fn new(
        offset: usize,
        length: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        TargetError {
            offset,
            length,
            message: message.into(),
            help: help.into(),
        }
    }
}

const PLACEHOLDER_HELP: &str = "a placeholder is {name} with a name of lower-case letters, digits \
                                and _: {location}, {region}, {metro}, {country} or a key of the \
                                daemon's [health.vars]";

/// Checks that every `{` opens a well-formed `{name}` placeholder; returns whether there is any.
fn scan_placeholders(value: &str) -> Result<bool, TargetError> {
    let mut found = false;
    let mut open: Option<usize> = None;
    for (index, character) in value.char_indices() {
        match (character, open) {
            ('{', None) => open = Some(index),
            ('{', Some(start)) => {
                return Err(TargetError::new(
                    start,
                    index - start,
                    "a placeholder `{` is not closed",
                    PLACEHOLDER_HELP,
                ));
            }
            ('}', Some(start)) => {
                let name = &value[start + 1..index];
                if !crate::health::is_placeholder_name(name) {
                    return Err(TargetError::new(
                        start,
                        index + 1 - start,
                        format!("`{{{name}}}` is not a valid placeholder"),
                        PLACEHOLDER_HELP,
                    ));
                }
                found = true;
                open = None;
            }
            ('}', None) => {
                return Err(TargetError::new(
                    index,
                    1,
                    "`}` closes no placeholder",
                    PLACEHOLDER_HELP,
                ));
            }
            _ => {}
        }
    }
    match open {
        Some(start) => Err(TargetError::new(
            start,
            value.len() - start,
            "a placeholder `{` is not closed",
            PLACEHOLDER_HELP,
        )),
        None => Ok(found),
    }
}

/// Checks the shape `host:port` or `[v6]:port` of a probe target without resolving anything;
/// either part may be (or contain) a placeholder.
fn host_port_error(value: &str) -> Option<TargetError> {
    const HELP: &str = "write HOST:PORT, such as \"{probe_host}:53\", \"192.0.2.1:53\" or \
                        \"[2001:db8::1]:53\"";
    let (host, host_offset, port, port_offset, bracketed) =
        if let Some(inner) = value.strip_prefix('[') {
            let Some(close) = inner.find(']') else {
                return Some(TargetError::new(
                    0,
                    value.len(),
                    "`[` is never closed",
                    HELP,
                ));
            };
            let after = &inner[close + 1..];
            let Some(port) = after.strip_prefix(':') else {
                return Some(TargetError::new(
                    close + 2,
                    after.len(),
                    "no :PORT after the bracketed address",
                    HELP,
                ));
            };
            (&inner[..close], 1, port, close + 3, true)
        } else {
            let Some((host, port)) = value.rsplit_once(':') else {
                return Some(TargetError::new(0, value.len(), "no :PORT", HELP));
            };
            if host.contains(':') {
                return Some(TargetError::new(
                    0,
                    value.len(),
                    "an IPv6 address needs brackets before the port",
                    format!("write \"[{host}]:{port}\""),
                ));
            }
            (host, 0, port, host.len() + 1, false)
        };
    if host.is_empty() {
        return Some(TargetError::new(host_offset, 0, "no host", HELP));
    }
    if host.contains(|character: char| character.is_whitespace() || character == '/') {
        return Some(TargetError::new(
            host_offset,
            host.len(),
            format!("`{host}` is not a host name or address"),
            HELP,
        ));
    }
    if bracketed && !host.contains('{') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Some(TargetError::new(
            host_offset,
            host.len(),
            format!("`{host}` is not an IPv6 address"),
            "brackets are for IPv6 addresses only; write other hosts without them",
        ));
    }
    if !port.contains('{') && !matches!(port.parse::<u16>(), Ok(number) if number > 0) {
        return Some(TargetError::new(
            port_offset,
            port.len(),
            format!("port `{port}` is not a number from 1 to 65535"),
            HELP,
        ));
    }
    None
}

fn value_or<T: Copy>(value: &Option<Spanned<T>>, default: T) -> T {
    value.as_ref().map_or(default, |value| *value.get_ref())
}

/// `[service.health]` → [`HealthSpec`] with the defaults of `health.rs`, every error reported.
pub(crate) fn convert_health(
    checker: &mut Checker<'_>,
    service: &str,
    service_prepend: u8,
    health: &Spanned<HealthFile>,
) -> Option<Located<HealthSpec>> {
    let span = checker.span(health);
    let file = health.get_ref();
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
    let on_unhealthy = match (degrade_wanted, &file.degrade) {
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
    };
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
    let checks: Option<Vec<ProbeSpec>> = checks.into_iter().collect();
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
    let mut communities = Vec::with_capacity(file.communities.len());
    for community in &file.communities {
        match Community::parse(community.get_ref()) {
            Some(parsed) => communities.push(parsed),
            None => {
                valid = false;
                checker.error(
                    checker.span(community),
                    format!("invalid community \"{}\"", community.get_ref()),
                    "a community is two 16-bit numbers, \"ASN:VALUE\", such as \"13335:666\""
                        .into(),
                );
            }
        }
    }
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

pub(crate) const CHECK_KINDS_HELP: &str = "kind is \"http\" (url, expect_status), \"tcp\" (address), \"dns\" \
                                (server, name, record_type, expect) or \"exec\" (command)";

/// One `[[service.health.check]]` → [`ProbeSpec`].
fn convert_check(checker: &mut Checker<'_>, file: &CheckFile) -> Option<ProbeSpec> {
    let kind = file.kind.get_ref().as_str();
    let kind_span = checker.span(&file.kind);
    let allowed: &[&str] = match kind {
        "http" => &["url", "expect_status"],
        "tcp" => &["address"],
        "dns" => &["server", "name", "record_type", "expect"],
        "exec" => &["command"],
        other => {
            checker.error(
                kind_span,
                format!("unknown check kind \"{other}\""),
                CHECK_KINDS_HELP.into(),
            );
            return None;
        }
    };
    let present = [
        ("url", file.url.as_ref().map(|value| checker.span(value))),
        (
            "expect_status",
            file.expect_status.as_ref().map(|value| checker.span(value)),
        ),
        (
            "address",
            file.address.as_ref().map(|value| checker.span(value)),
        ),
        (
            "server",
            file.server.as_ref().map(|value| checker.span(value)),
        ),
        ("name", file.name.as_ref().map(|value| checker.span(value))),
        (
            "record_type",
            file.record_type.as_ref().map(|value| checker.span(value)),
        ),
        (
            "expect",
            file.expect.as_ref().map(|value| checker.span(value)),
        ),
        (
            "command",
            file.command.as_ref().map(|value| checker.span(value)),
        ),
    ];
    let mut valid = true;
    for (key, span) in present {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            valid = false;
            checker.error(
                span,
                format!("`{key}` is not a key of {kind} checks"),
                format!(
                    "a {kind} check takes {}; remove `{key}` or change kind",
                    allowed.join(", ")
                ),
            );
        }
    }
    let required = |checker: &mut Checker<'_>, present: bool, key: &str, example: &str| {
        if !present {
            checker.error(
                kind_span,
                format!("this {kind} check has no `{key}`"),
                format!("add {key} = {example}"),
            );
        }
        present
    };
    let probe = match kind {
        "http" => {
            let url = file.url.as_ref();
            let present = required(
                checker,
                url.is_some(),
                "url",
                "\"http://{probe_host}:8080/health\"",
            );
            let url = url.filter(|_| present).and_then(|url| {
                checker.target("url", url)?;
                http_url_error(url.get_ref())
                    .map(|failure| checker.target_error("url", url, failure))
                    .is_none()
                    .then(|| url.get_ref().clone())
            });
            let expect_status = value_or(&file.expect_status, DEFAULT_HTTP_EXPECT_STATUS);
            if let Some(value) = file
                .expect_status
                .as_ref()
                .filter(|_| !(100..=599).contains(&expect_status))
            {
                checker.error(
                    checker.span(value),
                    format!("expect_status = {expect_status} is not an HTTP status"),
                    format!(
                        "write a status from 100 to 599 (the default is \
                         {DEFAULT_HTTP_EXPECT_STATUS})"
                    ),
                );
                valid = false;
            }
            ProbeSpec::Http {
                url: url?,
                expect_status,
            }
        }
        "tcp" => {
            let present = required(
                checker,
                file.address.is_some(),
                "address",
                "\"{probe_host}:853\"",
            );
            let address = file.address.as_ref().filter(|_| present)?;
            let address = checker.host_port("address", address)?;
            ProbeSpec::Tcp { address }
        }
        "dns" => {
            let server = required(
                checker,
                file.server.is_some(),
                "server",
                "\"{probe_host}:53\"",
            );
            let name = required(checker, file.name.is_some(), "name", "\"example.com\"");
            let record_type = required(
                checker,
                file.record_type.is_some(),
                "record_type",
                "\"A\" (or \"AAAA\")",
            );
            let server = file
                .server
                .as_ref()
                .filter(|_| server)
                .and_then(|server| checker.host_port("server", server));
            let name = file.name.as_ref().filter(|_| name).and_then(|name| {
                checker.target("name", name)?;
                if name.get_ref().trim().is_empty() {
                    checker.error(
                        checker.span(name),
                        "the dns check's name is empty".into(),
                        "write the name to query, such as name = \"example.com\"".into(),
                    );
                    return None;
                }
                Some(name.get_ref().clone())
            });
            let record_type =
                file.record_type
                    .as_ref()
                    .filter(|_| record_type)
                    .and_then(|record_type| match record_type.get_ref().as_str() {
                        "A" => Some(DnsRecordType::A),
                        "AAAA" => Some(DnsRecordType::Aaaa),
                        other => {
                            checker.error(
                                checker.span(record_type),
                                format!("unsupported record_type \"{other}\""),
                                "write record_type = \"A\" or \"AAAA\"".into(),
                            );
                            None
                        }
                    });
            let expect = match &file.expect {
                None => Some(None),
                Some(expect) => checker.target("expect", expect).and_then(|placeholders| {
                    if placeholders {
                        return Some(Some(expect.get_ref().clone()));
                    }
                    let expected = expect.get_ref().parse::<IpAddr>();
                    let family_matches = !matches!(
                        (&expected, record_type),
                        (Ok(IpAddr::V4(_)), Some(DnsRecordType::Aaaa))
                            | (Ok(IpAddr::V6(_)), Some(DnsRecordType::A))
                    );
                    if expected.is_err() {
                        checker.error(
                            checker.span(expect),
                            format!("expect = \"{}\" is not an IP address", expect.get_ref()),
                            "write the address the answer must hold, such as \"192.0.2.1\" \
                             for A or \"2001:db8::1\" for AAAA"
                                .into(),
                        );
                        None
                    } else if !family_matches {
                        let (family, wanted) = match record_type {
                            Some(DnsRecordType::A) => ("IPv6", "AAAA"),
                            _ => ("IPv4", "A"),
                        };
                        checker.error(
                            checker.span(expect),
                            format!(
                                "expect = \"{}\" is an {family} address, but record_type is not \
                                 {wanted}",
                                expect.get_ref()
                            ),
                            format!(
                                "write record_type = \"{wanted}\", or expect an address of the \
                                 record type's family"
                            ),
                        );
                        None
                    } else {
                        Some(Some(expect.get_ref().clone()))
                    }
                }),
            };
            ProbeSpec::Dns {
                server: server?,
                name: name?,
                record_type: record_type?,
                expect: expect?,
            }
        }
        _ => {
            let present = required(
                checker,
                file.command.is_some(),
                "command",
                "[\"/usr/local/bin/check\", \"--quick\"]",
            );
            let command = file.command.as_ref().filter(|_| present)?;
            match command.get_ref().first() {
                None => {
                    checker.error(
                        checker.span(command),
                        "the exec check's command is empty".into(),
                        "write the program and its arguments, such as command = \
                         [\"/usr/local/bin/check\", \"--quick\"] (run directly, no shell)"
                            .into(),
                    );
                    return None;
                }
                Some(program) if program.get_ref().trim().is_empty() => {
                    checker.error(
                        checker.span(program),
                        "the exec check's program is empty".into(),
                        "the first element of command is the program to run, such as \
                         \"/usr/local/bin/check\""
                            .into(),
                    );
                    return None;
                }
                Some(_) => {}
            }
            ProbeSpec::Exec {
                command: command
                    .get_ref()
                    .iter()
                    .map(|argument| argument.get_ref().clone())
                    .collect(),
            }
        }
    };
    valid.then_some(probe)
}

/// `http://HOST[:PORT][/PATH]`: plain HTTP only.
fn http_url_error(url: &str) -> Option<TargetError> {
    const HELP: &str = "write it like \"http://{probe_host}:8080/health\"";
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Some(TargetError::new(
            0,
            "https".len(),
            "https is not supported: the http check speaks plain HTTP/1.1",
            "probe a plain-HTTP health endpoint (http://…), or check the TLS port with a tcp check",
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Some(TargetError::new(
            0,
            url.find("://").map_or(url.len(), |end| end + 3),
            "the url must start with http://",
            HELP,
        ));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Some(TargetError::new(
            "http://".len(),
            0,
            "the url has no host",
            HELP,
        ));
    }
    if let Some(offset) = url.find(char::is_whitespace) {
        return Some(TargetError::new(
            offset,
            1,
            "a url cannot contain white space",
            "percent-encode it (%20)",
        ));
    }
    None
}
