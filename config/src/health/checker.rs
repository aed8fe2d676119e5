//! The health conversion's error reporter ([`Checker`]: every error at `file:line:column`,
//! remembering whether there was any) and the shape checks of probe targets, made without
//! resolving anything: `{name}` placeholders, `host:port` and plain-HTTP URLs, each error at the
//! offending bytes inside the string.

use toml::Spanned;

use super::spec::is_placeholder_name;
use crate::diagnostic::Collector;
use crate::source::{Span, StringPositions, span_of};

/// Reports errors while converting `[service.health]`, remembering whether there was any.
pub(crate) struct Checker<'a> {
    pub(crate) source: u32,
    pub(crate) text: &'a str,
    pub(crate) collector: &'a mut Collector,
    pub(crate) valid: bool,
}

impl Checker<'_> {
    pub(super) fn span<T>(&self, spanned: &Spanned<T>) -> Span {
        span_of(self.source, spanned)
    }

    pub(super) fn error(&mut self, span: Span, message: String, help: String) {
        self.valid = false;
        self.collector.error(Some(span), message, Some(help));
    }

    /// Checks the `{name}` placeholders of the probe target `key`; `Some(true)` when it has
    /// any (then nothing else about it can be checked before the daemon expands it).
    pub(super) fn target(&mut self, key: &str, value: &Spanned<String>) -> Option<bool> {
        match scan_placeholders(value.get_ref()) {
            Ok(found) => Some(found),
            Err(failure) => {
                self.target_error(key, value, failure);
                None
            }
        }
    }

    /// A `host:port` probe target, its placeholders and shape checked.
    pub(super) fn host_port(&mut self, key: &str, value: &Spanned<String>) -> Option<String> {
        self.target(key, value)?;
        match host_port_error(value.get_ref()) {
            Some(failure) => {
                self.target_error(key, value, failure);
                None
            }
            None => Some(value.get_ref().clone()),
        }
    }

    pub(super) fn target_error(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        failure: TargetError,
    ) {
        let positions = StringPositions::new(self.text, self.span(value), value.get_ref());
        self.error(
            positions.locate(failure.offset, failure.length),
            format!("invalid {key} \"{}\": {}", value.get_ref(), failure.message),
            failure.help,
        );
    }
}

/// What is wrong inside a probe target, as a byte range of the decoded string.
pub(super) struct TargetError {
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
                if !is_placeholder_name(name) {
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

/// `http://HOST[:PORT][/PATH]`: plain HTTP only.
pub(super) fn http_url_error(url: &str) -> Option<TargetError> {
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
