//! One `[[service.health.check]]` into a [`ProbeSpec`]: the kind, the keys that kind takes (and
//! no others), and each kind's values (`http`: url and expected status; `tcp`: address; `dns`:
//! server, name, record type and expected address; `exec`: command), every error at the value.

use std::net::IpAddr;

use toml::Spanned;

use super::checker::{Checker, http_url_error};
use super::file::CheckFile;
use super::spec::{DEFAULT_HTTP_EXPECT_STATUS, DnsRecordType, ProbeSpec};
use crate::source::{Span, value_or};

pub(crate) const CHECK_KINDS_HELP: &str = "kind is \"http\" (url, expect_status), \"tcp\" \
                                           (address), \"dns\" (server, name, record_type, \
                                           expect) or \"exec\" (command)";

/// A key a check kind needs, and an example of its value for the error that says it is missing.
type RequiredKey = (&'static str, &'static str);
const URL: RequiredKey = ("url", "\"http://{probe_host}:8080/health\"");
const ADDRESS: RequiredKey = ("address", "\"{probe_host}:853\"");
const SERVER: RequiredKey = ("server", "\"{probe_host}:53\"");
const NAME: RequiredKey = ("name", "\"example.com\"");
const RECORD_TYPE: RequiredKey = ("record_type", "\"A\" (or \"AAAA\")");
const COMMAND: RequiredKey = ("command", "[\"/usr/local/bin/check\", \"--quick\"]");

/// A check's kind and where it is written, for the errors about its keys.
#[derive(Clone, Copy)]
struct Kind<'a> {
    name: &'a str,
    span: Span,
}

impl Kind<'_> {
    /// The value of a key the kind needs; an error at the kind when it is absent.
    fn require<'value, T>(
        self,
        checker: &mut Checker<'_>,
        value: Option<&'value T>,
        (key, example): RequiredKey,
    ) -> Option<&'value T> {
        if value.is_none() {
            checker.error(
                self.span,
                format!("this {} check has no `{key}`", self.name),
                format!("add {key} = {example}"),
            );
        }
        value
    }
}

/// One `[[service.health.check]]` → [`ProbeSpec`]; `None` when anything in it is wrong (every
/// error is reported first).
pub(super) fn convert_check(checker: &mut Checker<'_>, file: &CheckFile) -> Option<ProbeSpec> {
    let kind = Kind {
        name: file.kind.get_ref().as_str(),
        span: checker.span(&file.kind),
    };
    let allowed = allowed_keys(checker, kind)?;
    let keys_valid = check_keys(checker, file, kind, allowed);
    let probe = match kind.name {
        "http" => convert_http(checker, file, kind)?,
        "tcp" => convert_tcp(checker, file, kind)?,
        "dns" => convert_dns(checker, file, kind)?,
        _ => convert_exec(checker, file, kind)?,
    };
    keys_valid.then_some(probe)
}

/// The keys a check of `kind` takes; `None` (an error at the kind) for an unknown kind.
fn allowed_keys(checker: &mut Checker<'_>, kind: Kind<'_>) -> Option<&'static [&'static str]> {
    match kind.name {
        "http" => Some(&["url", "expect_status"]),
        "tcp" => Some(&["address"]),
        "dns" => Some(&["server", "name", "record_type", "expect"]),
        "exec" => Some(&["command"]),
        other => {
            checker.error(
                kind.span,
                format!("unknown check kind \"{other}\""),
                CHECK_KINDS_HELP.into(),
            );
            None
        }
    }
}

/// Every key present that the kind does not take is an error at the key; whether there was
/// none.
fn check_keys(
    checker: &mut Checker<'_>,
    file: &CheckFile,
    kind: Kind<'_>,
    allowed: &[&str],
) -> bool {
    fn span_of<T>(checker: &Checker<'_>, value: Option<&Spanned<T>>) -> Option<Span> {
        value.map(|value| checker.span(value))
    }
    let present = [
        ("url", span_of(checker, file.url.as_ref())),
        (
            "expect_status",
            span_of(checker, file.expect_status.as_ref()),
        ),
        ("address", span_of(checker, file.address.as_ref())),
        ("server", span_of(checker, file.server.as_ref())),
        ("name", span_of(checker, file.name.as_ref())),
        ("record_type", span_of(checker, file.record_type.as_ref())),
        ("expect", span_of(checker, file.expect.as_ref())),
        ("command", span_of(checker, file.command.as_ref())),
    ];
    let mut valid = true;
    for (key, span) in present {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            valid = false;
            checker.error(
                span,
                format!("`{key}` is not a key of {} checks", kind.name),
                format!(
                    "a {} check takes {}; remove `{key}` or change kind",
                    kind.name,
                    allowed.join(", ")
                ),
            );
        }
    }
    valid
}

/// `kind = "http"`: a plain-HTTP url and the status it must answer with.
fn convert_http(checker: &mut Checker<'_>, file: &CheckFile, kind: Kind<'_>) -> Option<ProbeSpec> {
    let url = kind.require(checker, file.url.as_ref(), URL);
    let url = url.and_then(|url| {
        checker.target("url", url)?;
        http_url_error(url.get_ref())
            .map(|failure| checker.target_error("url", url, failure))
            .is_none()
            .then(|| url.get_ref().clone())
    });
    let expect_status = value_or(&file.expect_status, DEFAULT_HTTP_EXPECT_STATUS);
    let mut valid = true;
    if let Some(value) = file
        .expect_status
        .as_ref()
        .filter(|_| !(100..=599).contains(&expect_status))
    {
        checker.error(
            checker.span(value),
            format!("expect_status = {expect_status} is not an HTTP status"),
            format!("write a status from 100 to 599 (the default is {DEFAULT_HTTP_EXPECT_STATUS})"),
        );
        valid = false;
    }
    let probe = ProbeSpec::Http {
        url: url?,
        expect_status,
    };
    valid.then_some(probe)
}

/// `kind = "tcp"`: the `host:port` to connect to.
fn convert_tcp(checker: &mut Checker<'_>, file: &CheckFile, kind: Kind<'_>) -> Option<ProbeSpec> {
    let address = kind.require(checker, file.address.as_ref(), ADDRESS)?;
    let address = checker.host_port("address", address)?;
    Some(ProbeSpec::Tcp { address })
}

/// `kind = "dns"`: the server, the name and record type to ask for, and optionally the address
/// the answer must hold.
fn convert_dns(checker: &mut Checker<'_>, file: &CheckFile, kind: Kind<'_>) -> Option<ProbeSpec> {
    let server = kind.require(checker, file.server.as_ref(), SERVER);
    let name = kind.require(checker, file.name.as_ref(), NAME);
    let record_type = kind.require(checker, file.record_type.as_ref(), RECORD_TYPE);
    let server = server.and_then(|server| checker.host_port("server", server));
    let name = name.and_then(|name| dns_name(checker, name));
    let record_type = record_type.and_then(|record_type| dns_record_type(checker, record_type));
    let expect = match &file.expect {
        None => Some(None),
        Some(expect) => dns_expect(checker, expect, record_type),
    };
    Some(ProbeSpec::Dns {
        server: server?,
        name: name?,
        record_type: record_type?,
        expect: expect?,
    })
}

/// The name a dns check asks for: placeholders checked, not empty.
fn dns_name(checker: &mut Checker<'_>, name: &Spanned<String>) -> Option<String> {
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
}

/// `record_type`: `A` or `AAAA`.
fn dns_record_type(
    checker: &mut Checker<'_>,
    record_type: &Spanned<String>,
) -> Option<DnsRecordType> {
    match record_type.get_ref().as_str() {
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
    }
}

/// `expect`: an address of the record type's family, or a target with placeholders (checked
/// after the daemon expands it). `Some(Some(..))` when valid, `None` after an error.
fn dns_expect(
    checker: &mut Checker<'_>,
    expect: &Spanned<String>,
    record_type: Option<DnsRecordType>,
) -> Option<Option<String>> {
    let placeholders = checker.target("expect", expect)?;
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
            "write the address the answer must hold, such as \"192.0.2.1\" for A or \
             \"2001:db8::1\" for AAAA"
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
                "expect = \"{}\" is an {family} address, but record_type is not {wanted}",
                expect.get_ref()
            ),
            format!(
                "write record_type = \"{wanted}\", or expect an address of the record type's \
                 family"
            ),
        );
        None
    } else {
        Some(Some(expect.get_ref().clone()))
    }
}

/// `kind = "exec"`: a program (not empty) and its arguments, run directly.
fn convert_exec(checker: &mut Checker<'_>, file: &CheckFile, kind: Kind<'_>) -> Option<ProbeSpec> {
    let command = kind.require(checker, file.command.as_ref(), COMMAND)?;
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
    Some(ProbeSpec::Exec {
        command: command
            .get_ref()
            .iter()
            .map(|argument| argument.get_ref().clone())
            .collect(),
    })
}
