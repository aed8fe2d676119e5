//! Tests of topology-file parsing: every table, every check's error position, the fast path
//! against the TOML path, and the size, nesting and character limits.

use super::*;
use crate::health::*;
use crate::model::{AnnounceMode, Community, Lifecycle, NameId};

fn sources(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(name, text)| Source::new(*name, *text))
        .collect()
}

#[test]
fn parses_all_kinds_across_files() {
    let raw = parse_topology_sources(&sources(&[
            (
                "fleet.toml",
                "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\ntags = [\"canary\"]\nstate = \"live\"\n",
            ),
            (
                "services.toml",
                "[[service]]\nname = \"cdn\"\ntopology = \"tag:canary\"\ncommunities = [\"13335:100\"]\nlarge_communities = [\"13335:1:2\"]\nmed = 10\nas_path_prepend = 1\n",
            ),
            (
                "prefixes.toml",
                "[settings]\nipv4_announce_lengths = { shortest = 8, longest = 25 }\n\n[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"acme\"\nadvertise = true\nannounce = { split = 25 }\nroa = { asn = 13335, max_length = 25 }\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"cdn\"\n",
            ),
        ]))
        .unwrap();
    assert_eq!(raw.locations.len(), 1);
    assert_eq!(raw.services[0].lifecycle.value, Lifecycle::Active);
    assert_eq!(raw.services[0].communities, vec![Community(13335, 100)]);
    assert_eq!(raw.prefixes[0].announce, AnnounceMode::Split(25));
    assert_eq!(raw.settings.ipv4_announce_lengths.longest, 25);
    assert_eq!(&**raw.names.get(raw.bindings[0].service), "cdn");
    let located = |span| raw.sources.locate(span).to_string();
    assert_eq!(located(raw.bindings[0].cidr_span()), "prefixes.toml:13:8");
    assert_eq!(
        located(raw.bindings[0].service_span()),
        "prefixes.toml:14:11"
    );
    let prefix = &raw.prefixes[0];
    assert_eq!(located(prefix.cidr_span()), "prefixes.toml:5:8");
    assert_eq!(located(prefix.origin_asn_span()), "prefixes.toml:6:14");
    assert_eq!(located(prefix.announce_span()), "prefixes.toml:9:12");
    assert_eq!(
        prefix.roa_span().map(located).as_deref(),
        Some("prefixes.toml:10:7")
    );
}

/// Owner and service names are kept once per parse, across files and both readers (the
/// per-table reader and the whole-document parse), each item naming its name's one entry.
#[test]
fn owner_and_service_names_are_shared() {
    let table = |third: u32, owner: &str, service: &str| {
        format!(
            "[[prefix]]\ncidr = \"10.0.{third}.0/24\"\norigin_asn = 13335\nowner = \"{owner}\"\n\
             advertise = true\n\n[[binding]]\ncidr = \"10.0.{third}.0/24\"\nservice = \"{service}\"\n\n"
        )
    };
    let simple: String = (0..4)
        .map(|third| table(third, ["acme", "zeta"][third as usize % 2], "cdn"))
        .collect();
    // An inline table the line scanner does not read: this file is parsed as one document.
    let whole = table(9, "acme", "cdn").replace(
        "advertise = true\n",
        "advertise = true\nroa = { asn = 13335, max_length = 24 }\n",
    );
    let raw = parse_topology_sources(&sources(&[
        ("a.toml", simple.as_str()),
        ("b.toml", whole.as_str()),
    ]))
    .unwrap();
    assert_eq!(raw.prefixes.len(), 5);
    assert_eq!(raw.names.len(), 3, "acme, zeta and cdn");
    let acme: Vec<NameId> = raw
        .prefixes
        .iter()
        .map(|prefix| prefix.owner)
        .filter(|owner| &**raw.names.get(*owner) == "acme")
        .collect();
    assert_eq!(acme.len(), 3);
    let cdn = raw.bindings[0].service;
    assert_eq!(&**raw.names.get(cdn), "cdn");
    assert!(raw.bindings.iter().all(|binding| binding.service == cdn));
}

#[test]
fn reports_errors_of_every_file_with_positions() {
    let failure = parse_topology_sources(&sources(&[
            ("a.toml", "[[location]]\nname = \"x\"\ncolour = \"red\"\n"),
            (
                "b.toml",
                "[[service]]\nname = \"dns\"\ntopology = \"region = \\\"eu\\\" and regoin = 'us'\"\n\n[[service]]\nname = \"cdn\"\ntopology = \"region = 'eu' and regoin = 'us'\"\ncommunities = [\"x\"]\n",
            ),
            (
                "c.toml",
                "[[binding]]\ncidr = \"192.0.2.0\"\nservice = \"cdn\"\n",
            ),
        ]))
        .unwrap_err();
    let text = failure.to_string();
    assert!(
        text.contains("a.toml:3:1: error: unknown field `colour`"),
        "{text}"
    );
    // Escaped string: points at the string start.
    assert!(
        text.contains("b.toml:3:12: error: invalid topology selector"),
        "{text}"
    );
    // Verbatim string: points inside it, at `regoin`.
    assert!(
        text.contains("b.toml:7:31: error: invalid topology selector"),
        "{text}"
    );
    assert!(
        text.contains("b.toml:8:16: error: invalid community"),
        "{text}"
    );
    assert!(
        text.contains("c.toml:2:8: error: invalid binding CIDR"),
        "{text}"
    );
    assert!(text.contains("help: add the prefix length"), "{text}");
    assert_eq!(failure.errors().count(), 5, "{text}");
}

#[test]
fn rejects_bad_enumerations() {
    let failure = parse_topology_sources(&sources(&[(
            "a.toml",
            "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = \"everything\"\n",
        )]))
        .unwrap_err();
    assert!(failure.to_string().contains("a.toml:6:12"), "{failure}");
}

/// The contract's example, one key per line.
const HEALTHY_SERVICE: &str = r#"[[service]]
name = "resolver"
topology = "all"
as_path_prepend = 1
local_addresses = ["192.0.2.53/32", "2001:db8::53/128"]

[service.health]
interval_ms = 500
timeout_ms = 300
rise = 2
fall = 2
hold_down_ms = 3000
max_hold_down_ms = 60000
on_unhealthy = "degrade"
degrade = { as_path_prepend = 3, med = 1000, communities = ["13335:666", "13335:1"] }

[[service.health.check]]
kind = "http"
url = "http://{probe_host}:8080/health"
expect_status = 204

[[service.health.check]]
kind = "tcp"
address = "{probe_host}:853"

[[service.health.check]]
kind = "dns"
server = "[::1]:53"
name = "{location}.example.test"
record_type = "AAAA"
expect = "2001:db8::1"

[[service.health.check]]
kind = "exec"
command = ["/bin/true", "--quiet"]

[[service.health.check]]
kind = "dns"
server = "127.0.0.1:{dns_port}"
name = "example.test"
record_type = "A"
expect = "{expected}"
"#;

#[test]
fn health_and_local_addresses_round_trip() {
    let raw = parse_topology_sources(&sources(&[("s.toml", HEALTHY_SERVICE)])).unwrap();
    let service = &raw.services[0];
    let addresses: Vec<String> = service
        .local_addresses
        .iter()
        .map(|address| address.value.to_string())
        .collect();
    assert_eq!(addresses, ["192.0.2.53/32", "2001:db8::53/128"]);
    assert_eq!(
        raw.sources
            .locate(service.local_addresses[1].span)
            .to_string(),
        "s.toml:5:37"
    );
    let health = service.health.as_ref().unwrap();
    assert_eq!(raw.sources.locate(health.span).to_string(), "s.toml:7:1");
    assert_eq!(
        health.value,
        HealthSpec {
            interval_ms: 500,
            timeout_ms: 300,
            rise: 2,
            fall: 2,
            hold_down_ms: 3000,
            max_hold_down_ms: 60000,
            on_unhealthy: UnhealthyAction::Degrade(DegradeAttributes {
                as_path_prepend: 3,
                med: Some(1000),
                communities: vec![Community(13335, 1), Community(13335, 666)],
            }),
            checks: vec![
                ProbeSpec::Http {
                    url: "http://{probe_host}:8080/health".into(),
                    expect_status: 204,
                },
                ProbeSpec::Tcp {
                    address: "{probe_host}:853".into(),
                },
                ProbeSpec::Dns {
                    server: "[::1]:53".into(),
                    name: "{location}.example.test".into(),
                    record_type: DnsRecordType::Aaaa,
                    expect: Some("2001:db8::1".into()),
                },
                ProbeSpec::Exec {
                    command: vec!["/bin/true".into(), "--quiet".into()],
                },
                ProbeSpec::Dns {
                    server: "127.0.0.1:{dns_port}".into(),
                    name: "example.test".into(),
                    record_type: DnsRecordType::A,
                    expect: Some("{expected}".into()),
                },
            ],
        }
    );
}

#[test]
fn health_takes_the_documented_defaults() {
    let text = "[[service]]\nname = \"web\"\ntopology = \"all\"\n[service.health]\n[[service.health.check]]\nkind = \"http\"\nurl = \"http://127.0.0.1/\"\n[[service.health.check]]\nkind = \"dns\"\nserver = \"h:53\"\nname = \"n\"\nrecord_type = \"A\"\n";
    let raw = parse_topology_sources(&sources(&[("s.toml", text)])).unwrap();
    assert!(raw.services[0].local_addresses.is_empty());
    let health = &raw.services[0].health.as_ref().unwrap().value;
    assert_eq!(
        health,
        &HealthSpec {
            interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            rise: DEFAULT_HEALTH_RISE,
            fall: DEFAULT_HEALTH_FALL,
            hold_down_ms: DEFAULT_HOLD_DOWN_MS,
            max_hold_down_ms: DEFAULT_MAX_HOLD_DOWN_MS,
            on_unhealthy: UnhealthyAction::Withdraw,
            checks: vec![
                ProbeSpec::Http {
                    url: "http://127.0.0.1/".into(),
                    expect_status: DEFAULT_HTTP_EXPECT_STATUS,
                },
                ProbeSpec::Dns {
                    server: "h:53".into(),
                    name: "n".into(),
                    record_type: DnsRecordType::A,
                    expect: None,
                },
            ],
        }
    );
    // A service without [service.health] has none.
    let raw = parse_topology_sources(&sources(&[(
        "s.toml",
        "[[service]]\nname = \"web\"\ntopology = \"all\"\n",
    )]))
    .unwrap();
    assert!(raw.services[0].health.is_none());
}

#[test]
fn files_with_services_take_the_full_parser() {
    // The fast path only reads [[prefix]]/[[binding]] files; anything with a service (and so
    // any health block) must be left to `toml`, or the health keys would be lost.
    let mixed = format!(
        "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\n{HEALTHY_SERVICE}"
    );
    assert!(crate::fast::parse_prefixes_and_bindings(HEALTHY_SERVICE).is_none());
    assert!(crate::fast::parse_prefixes_and_bindings(&mixed).is_none());
    let raw = parse_topology_sources(&sources(&[("mixed.toml", mixed.as_str())])).unwrap();
    assert_eq!(raw.prefixes.len(), 1);
    assert_eq!(raw.services[0].local_addresses.len(), 2);
    assert_eq!(
        raw.services[0].health.as_ref().unwrap().value.checks.len(),
        5
    );
}

/// Parses a service (as_path_prepend = 2) whose `[service.health]` (line 6) is followed by
/// `health` (from line 7); expects exactly one error.
fn health_error(health: &str) -> String {
    let text = format!(
        "[[service]]\nname = \"dns\"\ntopology = \"all\"\nas_path_prepend = 2\n\n[service.health]\n{health}"
    );
    let failure = parse_topology_sources(&sources(&[("s.toml", text.as_str())])).unwrap_err();
    assert_eq!(failure.errors().count(), 1, "{failure}");
    let rendered = failure.to_string();
    assert!(rendered.contains("\n  help: "), "no help in {rendered}");
    rendered
}

const TCP_CHECK: &str = "[[service.health.check]]\nkind = \"tcp\"\naddress = \"127.0.0.1:53\"\n";

#[test]
fn bad_health_settings_are_errors_at_their_value() {
    for (health, expected, help) in [
        (
            "rise = 0\n",
            "s.toml:7:8: error: rise = 0 is not allowed",
            "rise = 1 or more",
        ),
        (
            "fall = 0\n",
            "s.toml:7:8: error: fall = 0 is not allowed",
            "fall = 1 or more",
        ),
        (
            "interval_ms = 99\n",
            "s.toml:7:15: error: interval_ms = 99 is shorter than 100 ms",
            "interval_ms = 100 or more",
        ),
        (
            "timeout_ms = 0\n",
            "s.toml:7:14: error: timeout_ms = 0 leaves a probe no time to run",
            "at least 1 and below interval_ms",
        ),
        (
            "interval_ms = 500\ntimeout_ms = 500\n",
            "s.toml:8:14: error: timeout_ms = 500 is not shorter than interval_ms = 500",
            "such as timeout_ms = 250",
        ),
        (
            "interval_ms = 500\n",
            "s.toml:7:15: error: timeout_ms = 1000 (the default) is not shorter than interval_ms = 500",
            "set timeout_ms below interval_ms",
        ),
        (
            "hold_down_ms = 5000\nmax_hold_down_ms = 4000\n",
            "s.toml:8:20: error: max_hold_down_ms = 4000 is shorter than hold_down_ms = 5000",
            "at least hold_down_ms",
        ),
        (
            "hold_down_ms = 400000\n",
            "s.toml:7:16: error: max_hold_down_ms = 300000 is shorter than hold_down_ms = 400000",
            "at least hold_down_ms",
        ),
        (
            "on_unhealthy = \"drop\"\n",
            "s.toml:7:16: error: unknown on_unhealthy action \"drop\"",
            "\"withdraw\" (the default",
        ),
        (
            "on_unhealthy = \"degrade\"\n",
            "s.toml:7:16: error: on_unhealthy = \"degrade\" needs a degrade table",
            "add degrade = {",
        ),
        (
            "degrade = { med = 5 }\n",
            "s.toml:7:11: error: degrade is set but on_unhealthy is \"withdraw\"",
            "write on_unhealthy = \"degrade\"",
        ),
        (
            "on_unhealthy = \"withdraw\"\ndegrade = { med = 5 }\n",
            "s.toml:8:11: error: degrade is set but on_unhealthy is \"withdraw\"",
            "or remove degrade",
        ),
        (
            "on_unhealthy = \"degrade\"\ndegrade = { as_path_prepend = 9 }\n",
            "s.toml:8:31: error: degrade as_path_prepend = 9 and the service's as_path_prepend = 2 make 11 prepends, more than 10",
            "as_path_prepend = 8 or less",
        ),
        (
            "on_unhealthy = \"degrade\"\ndegrade = {}\n",
            "s.toml:8:11: error: degrade makes the routes no less preferred",
            "as_path_prepend, med or communities",
        ),
        (
            "on_unhealthy = \"degrade\"\ndegrade = { communities = [\"13335\"] }\n",
            "s.toml:8:28: error: invalid community \"13335\"",
            "\"ASN:VALUE\"",
        ),
        (
            "on_unhealthy = \"degrade\"\ndegrade = { prepend = 1 }\n",
            "s.toml:8:13: error: unknown field `prepend`",
            "remove the key or fix its spelling",
        ),
        (
            "rize = 2\n",
            "s.toml:7:1: error: unknown field `rize`",
            "remove the key or fix its spelling",
        ),
    ] {
        let rendered = health_error(&format!("{health}{TCP_CHECK}"));
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
        assert!(
            rendered.contains(help),
            "missing help {help:?} in\n{rendered}"
        );
    }
    let rendered = health_error("rise = 2\n");
    assert!(
        rendered.contains("s.toml:6:1: error: [service.health] of service `dns` has no checks"),
        "{rendered}"
    );
    assert!(
        rendered.contains("add at least one [[service.health.check]]"),
        "{rendered}"
    );
}

#[test]
fn bad_checks_are_errors_at_their_value() {
    // The check's keys start on line 8.
    for (check, expected, help) in [
        (
            "kind = \"ping\"\n",
            "s.toml:8:8: error: unknown check kind \"ping\"",
            "kind is \"http\" (url, expect_status), \"tcp\"",
        ),
        (
            "url = \"http://h/\"\n",
            "error: missing field `kind`",
            "kind is \"http\"",
        ),
        (
            "kind = \"tcp\"\naddress = \"h:1\"\nurl = \"http://h/\"\n",
            "s.toml:10:7: error: `url` is not a key of tcp checks",
            "a tcp check takes address; remove `url` or change kind",
        ),
        (
            "kind = \"http\"\nurl = \"http://h/\"\ncolour = 1\n",
            "s.toml:10:1: error: unknown field `colour`",
            "remove the key",
        ),
        (
            "kind = \"http\"\n",
            "s.toml:8:8: error: this http check has no `url`",
            "add url = \"http://{probe_host}:8080/health\"",
        ),
        (
            "kind = \"http\"\nurl = \"https://h/health\"\n",
            "s.toml:9:8: error: invalid url \"https://h/health\": https is not supported",
            "plain-HTTP health endpoint",
        ),
        (
            "kind = \"http\"\nurl = \"h:80/health\"\n",
            "s.toml:9:8: error: invalid url \"h:80/health\": the url must start with http://",
            "http://{probe_host}:8080/health",
        ),
        (
            "kind = \"http\"\nurl = \"http:///health\"\n",
            "s.toml:9:15: error: invalid url \"http:///health\": the url has no host",
            "write it like",
        ),
        (
            "kind = \"http\"\nurl = \"http://h/a b\"\n",
            "s.toml:9:18: error: invalid url \"http://h/a b\": a url cannot contain white space",
            "%20",
        ),
        (
            "kind = \"http\"\nurl = \"http://h/\"\nexpect_status = 42\n",
            "s.toml:10:17: error: expect_status = 42 is not an HTTP status",
            "from 100 to 599",
        ),
        (
            "kind = \"http\"\nurl = \"http://{probe host}/\"\n",
            "s.toml:9:15: error: invalid url \"http://{probe host}/\": `{probe host}` is not a valid placeholder",
            "lower-case letters, digits",
        ),
        (
            "kind = \"http\"\nurl = \"http://{probe_host/\"\n",
            "s.toml:9:15: error: invalid url \"http://{probe_host/\": a placeholder `{` is not closed",
            "{location}",
        ),
        (
            "kind = \"http\"\nurl = \"http://h}/\"\n",
            "s.toml:9:16: error: invalid url \"http://h}/\": `}` closes no placeholder",
            "{location}",
        ),
        (
            "kind = \"tcp\"\n",
            "s.toml:8:8: error: this tcp check has no `address`",
            "add address = \"{probe_host}:853\"",
        ),
        (
            "kind = \"tcp\"\naddress = \"localhost\"\n",
            "s.toml:9:12: error: invalid address \"localhost\": no :PORT",
            "write HOST:PORT",
        ),
        (
            "kind = \"tcp\"\naddress = \"h:99999\"\n",
            "s.toml:9:14: error: invalid address \"h:99999\": port `99999` is not a number from 1 to 65535",
            "write HOST:PORT",
        ),
        (
            "kind = \"tcp\"\naddress = \"h:0\"\n",
            "s.toml:9:14: error: invalid address \"h:0\": port `0` is not a number",
            "write HOST:PORT",
        ),
        (
            "kind = \"tcp\"\naddress = \"2001:db8::1:53\"\n",
            "s.toml:9:12: error: invalid address \"2001:db8::1:53\": an IPv6 address needs brackets",
            "write \"[2001:db8::1]:53\"",
        ),
        (
            "kind = \"tcp\"\naddress = \"[::1]53\"\n",
            "s.toml:9:17: error: invalid address \"[::1]53\": no :PORT after the bracketed address",
            "write HOST:PORT",
        ),
        (
            "kind = \"tcp\"\naddress = \"[::1:53\"\n",
            "s.toml:9:12: error: invalid address \"[::1:53\": `[` is never closed",
            "write HOST:PORT",
        ),
        (
            "kind = \"tcp\"\naddress = \"[example.test]:53\"\n",
            "s.toml:9:13: error: invalid address \"[example.test]:53\": `example.test` is not an IPv6 address",
            "brackets are for IPv6 addresses only",
        ),
        (
            "kind = \"tcp\"\naddress = \":53\"\n",
            "s.toml:9:12: error: invalid address \":53\": no host",
            "write HOST:PORT",
        ),
        (
            "kind = \"tcp\"\naddress = \"a b:53\"\n",
            "s.toml:9:12: error: invalid address \"a b:53\": `a b` is not a host name or address",
            "write HOST:PORT",
        ),
        (
            "kind = \"dns\"\nserver = \"h\"\nname = \"n\"\nrecord_type = \"A\"\n",
            "s.toml:9:11: error: invalid server \"h\": no :PORT",
            "write HOST:PORT",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \"n\"\nrecord_type = \"MX\"\n",
            "s.toml:11:15: error: unsupported record_type \"MX\"",
            "write record_type = \"A\" or \"AAAA\"",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \"n\"\nrecord_type = \"A\"\nexpect = \"2001:db8::1\"\n",
            "s.toml:12:10: error: expect = \"2001:db8::1\" is an IPv6 address, but record_type is not AAAA",
            "write record_type = \"AAAA\"",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \"n\"\nrecord_type = \"AAAA\"\nexpect = \"192.0.2.1\"\n",
            "s.toml:12:10: error: expect = \"192.0.2.1\" is an IPv4 address, but record_type is not A",
            "write record_type = \"A\"",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \"n\"\nrecord_type = \"A\"\nexpect = \"localhost\"\n",
            "s.toml:12:10: error: expect = \"localhost\" is not an IP address",
            "such as \"192.0.2.1\"",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \" \"\nrecord_type = \"A\"\n",
            "s.toml:10:8: error: the dns check's name is empty",
            "name = \"example.com\"",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \"{x\"\nrecord_type = \"A\"\n",
            "s.toml:10:9: error: invalid name \"{x\": a placeholder `{` is not closed",
            "{location}",
        ),
        (
            "kind = \"dns\"\nserver = \"h:53\"\nname = \"n\"\n",
            "s.toml:8:8: error: this dns check has no `record_type`",
            "add record_type = \"A\" (or \"AAAA\")",
        ),
        (
            "kind = \"exec\"\n",
            "s.toml:8:8: error: this exec check has no `command`",
            "add command = [",
        ),
        (
            "kind = \"exec\"\ncommand = []\n",
            "s.toml:9:11: error: the exec check's command is empty",
            "no shell",
        ),
        (
            "kind = \"exec\"\ncommand = [\"\", \"x\"]\n",
            "s.toml:9:12: error: the exec check's program is empty",
            "the first element of command is the program",
        ),
    ] {
        let rendered = health_error(&format!("[[service.health.check]]\n{check}"));
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
        assert!(
            rendered.contains(help),
            "missing help {help:?} in\n{rendered}"
        );
    }
}

#[test]
fn every_check_error_is_reported_at_once() {
    let text = "[[service]]\nname = \"dns\"\ntopology = \"all\"\n[service.health]\nrise = 0\n[[service.health.check]]\nkind = \"dns\"\nserver = \"h:53\"\n[[service.health.check]]\nkind = \"tcp\"\naddress = \"h\"\n";
    let failure = parse_topology_sources(&sources(&[("s.toml", text)])).unwrap_err();
    let rendered = failure.to_string();
    for expected in [
        "s.toml:5:8: error: rise = 0",
        "s.toml:7:8: error: this dns check has no `name`",
        "s.toml:7:8: error: this dns check has no `record_type`",
        "s.toml:11:12: error: invalid address \"h\": no :PORT",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
    }
    assert_eq!(failure.errors().count(), 4, "{rendered}");
}

#[test]
fn bad_local_addresses_are_errors_with_help() {
    let failure = parse_topology_sources(&sources(&[(
            "s.toml",
            "[[service]]\nname = \"dns\"\ntopology = \"all\"\nlocal_addresses = [\"192.0.2.53\", \"2001:db8::53\", \"resolver\"]\n",
        )]))
        .unwrap_err();
    let rendered = failure.to_string();
    for expected in [
        "s.toml:4:20: error: invalid local address \"192.0.2.53\" of service `dns`\n  help: add the prefix length: \"192.0.2.53/32\"",
        "s.toml:4:34: error: invalid local address \"2001:db8::53\" of service `dns`\n  help: add the prefix length: \"2001:db8::53/128\"",
        "s.toml:4:50: error: invalid local address \"resolver\" of service `dns`\n  help: write an address with its prefix length",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
    }
    assert_eq!(failure.errors().count(), 3, "{rendered}");
}

#[test]
fn names_with_invisible_characters_are_errors() {
    // U+200B written raw, U+2028 and U+FEFF as escapes: each would make a name look like
    // another one.
    let failure = parse_topology_sources(&sources(&[(
        "f.toml",
        "[[service]]\nname = \"cdn\u{200B}\"\ntopology = \"all\"\n\
             [[service]]\nname = \"web\\u2028\"\ntopology = \"all\"\n\
             [[service]]\nname = \"\\uFEFFdns\"\ntopology = \"all\"\n",
    )]))
    .unwrap_err();
    let rendered = failure.to_string();
    for expected in [
        "f.toml:2:8: error: service name \"cdn\\u{200b}\" contains the invisible or control character \\u{200b}",
        "f.toml:5:8: error: service name \"web\\u{2028}\" contains",
        "f.toml:8:8: error: service name \"\\u{feff}dns\" contains",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
    }
}

#[test]
fn names_with_control_or_bidirectional_escapes_are_errors_that_echo_them_escaped() {
    let failure = parse_topology_sources(&sources(&[(
            "f.toml",
            "[[location]]\nname = \"ams\\u202Eten\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\n\
             tags = [\"ok\", \"a\\u001b[2Jb\"]\nstate = \"live\"\n\n\
             [[service]]\nname = \"dns\\nf.toml:9:9: error: forged\"\ntopology = \"all\"\n\n\
             [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\\u2067\"\nadvertise = true\n\n\
             [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"x\\u200F\"\n",
        )]))
        .unwrap_err();
    let rendered = failure.to_string();
    for expected in [
        "f.toml:2:8: error: location name \"ams\\u{202e}ten\" contains the invisible or control character \\u{202e}",
        "f.toml:6:15: error: tag \"a\\u{1b}[2Jb\" contains",
        "f.toml:10:8: error: service name \"dns\\nf.toml:9:9: error: forged\" contains",
        "f.toml:14:8: error: owner \"o\\u{2067}\" contains",
        "f.toml:21:11: error: service name \"x\\u{200f}\" contains",
    ] {
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
    }
    assert!(
        !rendered
            .chars()
            .any(|character| (character.is_control() && character != '\n')
                || crate::text::is_bidirectional_control(character)),
        "{rendered:?}"
    );
    assert_eq!(
        rendered
            .lines()
            .filter(|line| line.contains("forged"))
            .count(),
        1
    );
}

#[test]
fn names_longer_than_the_limit_are_errors() {
    let failure = parse_topology_sources(&sources(&[(
            "f.toml",
            &format!(
                "[[location]]\nname = \"{}\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n",
                "a".repeat(bounds::MAX_NAME_BYTES + 1)
            ),
        )]))
        .unwrap_err();
    assert!(
        failure
            .to_string()
            .contains("f.toml:2:8: error: location name \"aaaa"),
        "{failure}"
    );
    assert!(
        failure
            .to_string()
            .contains("256 bytes long, more than the limit of 255")
    );
}

#[test]
fn fleets_larger_than_the_limit_are_errors_at_the_first_location_over() {
    let fleet: String = (0..=bounds::MAX_LOCATIONS)
            .map(|index| {
                format!(
                    "[[location]]\nname = \"l{index}\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n"
                )
            })
            .collect();
    let failure = parse_topology_sources(&sources(&[("f.toml", &fleet)])).unwrap_err();
    let line = 6 * bounds::MAX_LOCATIONS + 2;
    assert!(
        failure.to_string().starts_with(&format!(
            "f.toml:{line}:8: error: the topology has 2049 locations, more than the limit of 2048"
        )),
        "{failure}"
    );
}

#[test]
fn topologies_larger_than_the_limit_are_one_error() {
    let big = "# padding\n".repeat(bounds::MAX_TOPOLOGY_BYTES / 20 + 1);
    let failure =
        parse_topology_sources(&sources(&[("a.toml", &big), ("b.toml", &big)])).unwrap_err();
    assert_eq!(failure.len(), 1, "{failure}");
    assert!(
        failure
            .to_string()
            .contains("more than the limit of 268435456 bytes (256 MiB)")
    );
}

#[test]
fn deep_toml_and_dense_files_are_errors_without_parsing() {
    let failure = parse_topology_sources(&sources(&[(
        "a.toml",
        &format!("x = {}", "[".repeat(100_000)),
    )]))
    .unwrap_err();
    assert!(
        failure
            .to_string()
            .starts_with("a.toml:1:21: error: arrays, inline tables"),
        "{failure}"
    );
    let failure = parse_topology_sources(&sources(&[(
        "a.toml",
        &format!("x = [{}]", "{a=1},".repeat(1_000_000)),
    )]))
    .unwrap_err();
    assert!(
        failure
            .to_string()
            .starts_with("a.toml:1:1: error: the file holds 1000001 keys"),
        "{failure}"
    );
}

#[test]
fn diagnostics_beyond_the_cap_are_counted_in_one_line() {
    let bindings = "[[binding]]\ncidr = \"x\"\nservice = \"s\"\n".repeat(5000);
    let failure = parse_topology_sources(&sources(&[("b.toml", &bindings)])).unwrap_err();
    assert_eq!(
        failure.len(),
        crate::diagnostic::MAX_REPORTED_DIAGNOSTICS + 1
    );
    let last = failure.items.last().unwrap();
    assert_eq!(last.severity, crate::Severity::Error);
    assert!(
        last.message
            .starts_with("4000 more error(s) and 0 more warning(s) not shown"),
        "{}",
        last.message
    );
}
