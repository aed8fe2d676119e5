//! Tests of `topologyd.toml` parsing: defaults, every check's error position, peers, health
//! policy and the reload rule.

use std::net::Ipv4Addr;

use super::*;
use crate::diagnostic::Diagnostics;
use crate::source::Source;

const MINIMAL: &str = r#"
location = "ams01"
local_asn = 64512
router_id = "192.0.2.1"
state_dir = "/var/lib/topologyd"

[[peer]]
name = "edge1"
address = "127.0.0.2"
asn = 64513
local_address = "127.0.0.1"
families = ["ipv4"]
"#;

fn parse(text: &str) -> Result<DaemonConfig, Diagnostics> {
    parse_daemon_config(&Source::new("topologyd.toml", text))
}

#[test]
fn minimal_config_takes_documented_defaults() {
    let config = parse(MINIMAL).unwrap();
    let peer = &config.peers[0];
    assert_eq!(peer.port, DEFAULT_BGP_PORT);
    assert_eq!(peer.hold_time_seconds, DEFAULT_HOLD_TIME_SECONDS);
    assert_eq!(peer.ipv4_next_hop(), Some(Ipv4Addr::new(127, 0, 0, 1)));
    assert!(config.graceful_restart.enabled);
    assert_eq!(config.retained_generations, DEFAULT_RETAINED_GENERATIONS);
}

#[test]
fn every_error_is_reported_with_its_position() {
    let text = MINIMAL.replace("127.0.0.2", "not-an-address").replace(
        "families = [\"ipv4\"]",
        "families = [\"ipv4\", \"ipv6\"]\nhold_time_seconds = 2",
    );
    let diagnostics = parse(&text).unwrap_err();
    let rendered = diagnostics.to_string();
    assert!(
        rendered.contains("topologyd.toml:9:11: error: `not-an-address` is not a valid IP address"),
        "{rendered}"
    );
    assert!(
        rendered.contains("hold_time_seconds 2 is not allowed"),
        "{rendered}"
    );
    assert_eq!(diagnostics.errors().count(), 2, "{rendered}");
}

#[test]
fn control_body_and_compile_limits_default_and_can_be_set() {
    let control = r#"
[control]
listen = "127.0.0.1:9180"
certificate = "server.pem"
private_key = "server.key"
client_ca = "ca.pem"
audit_log = "audit.jsonl"
roles = { "sre" = "admin" }
"#;
    let with_control = MINIMAL.replacen("[[peer]]", &format!("{control}\n[[peer]]"), 1);
    let config = parse(&with_control).unwrap();
    let limits = config.control.unwrap();
    assert_eq!(limits.max_body_bytes, DEFAULT_CONTROL_MAX_BODY_BYTES);
    assert_eq!(
        limits.max_reader_body_bytes,
        DEFAULT_CONTROL_MAX_READER_BODY_BYTES
    );
    assert!(limits.max_reader_body_bytes < limits.max_body_bytes);
    assert_eq!(limits.compile_memory_bytes, DEFAULT_COMPILE_MEMORY_BYTES);
    let set = with_control.replace(
            "audit_log = \"audit.jsonl\"",
            "audit_log = \"audit.jsonl\"\nmax_reader_body_bytes = 1024\ncompile_memory_bytes = 67108864",
        );
    let limits = parse(&set).unwrap().control.unwrap();
    assert_eq!(limits.max_reader_body_bytes, 1024);
    assert_eq!(limits.compile_memory_bytes, 64 * 1024 * 1024);
}

#[test]
fn unknown_keys_are_rejected_with_their_position() {
    let diagnostics = parse(&format!("{MINIMAL}hold_tme = 3\n")).unwrap_err();
    let rendered = diagnostics.to_string();
    assert!(rendered.contains("topologyd.toml:"), "{rendered}");
    assert!(rendered.contains("hold_tme"), "{rendered}");
}

#[test]
fn send_hold_time_must_exceed_the_hold_time() {
    let config = parse(&MINIMAL.replace(
        "families = [\"ipv4\"]",
        "families = [\"ipv4\"]\nhold_time_seconds = 3\nsend_hold_time_seconds = 4",
    ))
    .unwrap();
    assert_eq!(config.peers[0].send_hold_time_seconds, Some(4));
    assert_eq!(
        parse(MINIMAL).unwrap().peers[0].send_hold_time_seconds,
        None
    );
    for (settings, expected) in [
        (
            "hold_time_seconds = 30\nsend_hold_time_seconds = 30",
            "topologyd.toml:14:26: error: send_hold_time_seconds 30 is not greater than hold_time_seconds 30",
        ),
        (
            "send_hold_time_seconds = 60",
            "topologyd.toml:13:26: error: send_hold_time_seconds 60 is not greater than hold_time_seconds 90",
        ),
        (
            "hold_time_seconds = 0\nsend_hold_time_seconds = 600",
            "topologyd.toml:14:26: error: send_hold_time_seconds 600 has no effect with hold_time_seconds = 0",
        ),
    ] {
        let diagnostics = parse(&MINIMAL.replace(
            "families = [\"ipv4\"]",
            &format!("families = [\"ipv4\"]\n{settings}"),
        ))
        .unwrap_err();
        let rendered = diagnostics.to_string();
        assert!(rendered.contains(expected), "{rendered}");
        assert!(rendered.contains("RFC 9687"), "{rendered}");
    }
}

#[test]
fn an_ipv6_next_hop_that_can_never_be_encoded_is_an_error() {
    let ipv6_peer = |settings: &str| {
        MINIMAL
            .replace("address = \"127.0.0.2\"", "address = \"::1\"")
            .replace(
                "local_address = \"127.0.0.1\"\nfamilies = [\"ipv4\"]",
                settings,
            )
    };
    for (settings, expected) in [
        (
            "local_address = \"::1\"\nfamilies = [\"ipv6\"]",
            "topologyd.toml:11:17: error: peer `edge1`: the default next hop (local_address) ::1 is the loopback address",
        ),
        (
            "local_address = \"::1\"\nnext_hop_ipv6 = \"fe80::1\"\nfamilies = [\"ipv6\"]",
            "topologyd.toml:12:17: error: peer `edge1`: next_hop_ipv6 fe80::1 is a link-local address",
        ),
        (
            "next_hop_ipv6 = \"::\"\nfamilies = [\"ipv6\"]",
            "topologyd.toml:11:17: error: peer `edge1`: next_hop_ipv6 :: is the unspecified address",
        ),
    ] {
        let rendered = parse(&ipv6_peer(settings)).unwrap_err().to_string();
        assert!(rendered.contains(expected), "{rendered}");
        assert!(rendered.contains("global unicast"), "{rendered}");
    }
    // A global next hop is fine; an IPv4-only peer over ::1 needs no IPv6 next hop.
    parse(&ipv6_peer(
        "local_address = \"::1\"\nnext_hop_ipv6 = \"2001:db8::1\"\nfamilies = [\"ipv6\"]",
    ))
    .unwrap();
    parse(&ipv6_peer(
        "local_address = \"::1\"\nnext_hop_ipv4 = \"192.0.2.1\"\nfamilies = [\"ipv4\"]",
    ))
    .unwrap();
}

#[test]
fn readiness_takes_documented_defaults_and_rejects_impossible_settings() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.readiness, ReadinessConfig::default());
    assert_eq!(config.readiness.required(3), 1);
    assert_eq!(config.readiness.required(0), 0);
    let config = parse(&format!(
        "{MINIMAL}\n[readiness]\nmin_established = 1\nmin_established_share = 0.5\n"
    ))
    .unwrap();
    assert_eq!(config.readiness.required(3), 2);
    assert_eq!(config.readiness.required(4), 2);
    assert_eq!(config.readiness.required(1), 1);
    for (settings, expected) in [
        (
            "min_established = 2\n",
            "topologyd.toml:15:19: error: min_established = 2 but only 1 peer(s) are configured",
        ),
        (
            "min_established_share = 0.0\n",
            "topologyd.toml:15:25: error: min_established_share = 0 is outside 0 < share ≤ 1",
        ),
        (
            "min_peers = 1\n",
            "topologyd.toml:15:1: error: unknown field `min_peers`",
        ),
    ] {
        let rendered = parse(&format!("{MINIMAL}\n[readiness]\n{settings}"))
            .unwrap_err()
            .to_string();
        assert!(rendered.contains(expected), "{rendered}");
    }
}

#[test]
fn reload_rule_resets_only_for_session_parameters() {
    let config = parse(MINIMAL).unwrap();
    let old = config.peers[0].clone();
    let mut new = old.clone();
    new.max_prefix = Some(10);
    new.next_hop_ipv4 = Some(Ipv4Addr::new(127, 0, 0, 9));
    assert!(!old.session_reset_needed(&new));
    new.hold_time_seconds = 30;
    assert!(old.session_reset_needed(&new));
}

#[test]
fn health_section_takes_documented_defaults() {
    assert_eq!(parse(MINIMAL).unwrap().health, HealthConfig::default());
    let config = parse(&format!("{MINIMAL}\n[health]\nenabled = false\n")).unwrap();
    assert_eq!(
        config.health,
        HealthConfig {
            enabled: false,
            ..HealthConfig::default()
        }
    );
    let config = parse(&format!(
            "{MINIMAL}\n[health]\nenabled = true\nfail_static_share = 1.0\nfail_static_min_services = 3\nmin_other_locations = 0\naddress_interface = \"topologyd-vips\"\n\n[health.vars]\nprobe_host = \"127.0.0.5\"\nanycast_v6 = \"::1\"\n"
        ))
        .unwrap();
    assert_eq!(
        config.health,
        HealthConfig {
            enabled: true,
            fail_static_share: 1.0,
            fail_static_min_services: 3,
            min_other_locations: 0,
            vars: [("anycast_v6", "::1"), ("probe_host", "127.0.0.5")]
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            address_interface: Some("topologyd-vips".into()),
        }
    );
}

#[test]
fn bad_health_settings_are_errors_at_their_value() {
    // The appended text starts on line 15 of the file.
    for (health, expected, help) in [
        (
            "fail_static_share = 0.0\n",
            "topologyd.toml:15:21: error: fail_static_share = 0 is outside 0 < share ≤ 1",
            "write a share such as 0.5",
        ),
        (
            "fail_static_share = 1.5\n",
            "topologyd.toml:15:21: error: fail_static_share = 1.5 is outside 0 < share ≤ 1",
            "write a share such as 0.5",
        ),
        (
            "fail_static_share = nan\n",
            "topologyd.toml:15:21: error: fail_static_share = NaN is outside 0 < share ≤ 1",
            "write a share such as 0.5",
        ),
        (
            "fail_static_min_services = 0\n",
            "topologyd.toml:15:28: error: fail_static_min_services must be at least 1",
            "fail_static_min_services = 2 (the default)",
        ),
        (
            "address_interface = \"\"\n",
            "topologyd.toml:15:21: error: address_interface is empty",
            "such as \"lo\"",
        ),
        (
            "address_interface = \"sixteen-bytes-xx\"\n",
            "topologyd.toml:15:21: error: interface name `sixteen-bytes-xx` is longer than 15 bytes",
            "1 to 15 bytes",
        ),
        (
            "address_interface = \"eth 0\"\n",
            "topologyd.toml:15:21: error: `eth 0` is not a valid interface name",
            "without / or spaces",
        ),
        (
            "[health.vars]\nProbe-Host = \"127.0.0.5\"\n",
            "topologyd.toml:16:1: error: `Probe-Host` is not a valid placeholder name",
            "lower-case letters, digits and _",
        ),
        (
            "[health.vars]\nregion = \"eu-west\"\n",
            "topologyd.toml:16:1: error: `region` is filled from the topology's location and cannot be set here",
            "such as probe_region",
        ),
        (
            "[health.vars]\nprobe_port = 53\n",
            "topologyd.toml:16:14: error: invalid type: integer `53`, expected a string",
            "",
        ),
        (
            "enable = true\n",
            "topologyd.toml:15:1: error: unknown field `enable`",
            "remove the key or fix its spelling",
        ),
    ] {
        let diagnostics = parse(&format!("{MINIMAL}\n[health]\n{health}")).unwrap_err();
        let rendered = diagnostics.to_string();
        assert!(
            rendered.contains(expected),
            "missing {expected:?} in\n{rendered}"
        );
        assert!(
            rendered.contains(help),
            "missing help {help:?} in\n{rendered}"
        );
        assert_eq!(diagnostics.errors().count(), 1, "{rendered}");
    }
}

#[test]
fn the_example_configuration_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/daemon/topologyd.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let config = match parse_daemon_config(&Source::new(path, text)) {
        Ok(config) => config,
        Err(diagnostics) => panic!("{diagnostics}"),
    };
    assert_eq!(config.location, "ams01");
    assert!(config.health.enabled);
    assert_eq!(config.health.address_interface, None);
    assert!(config.health.vars.contains_key("probe_host"));
}

#[test]
fn rpki_section_takes_caches_and_the_keep_default() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.rpki, None);
    let text = format!(
        "{MINIMAL}\n[rpki]\ncaches = [{{ address = \"127.0.0.1:3323\", preference = 1 }}, {{ address = \"[::1]:3324\" }}]\n"
    );
    let rpki = parse(&text).unwrap().rpki.unwrap();
    assert_eq!(rpki.invalid_policy, InvalidPolicy::Keep);
    assert_eq!(
        rpki.caches,
        vec![
            RpkiCacheConfig {
                address: "127.0.0.1:3323".into(),
                preference: 1
            },
            RpkiCacheConfig {
                address: "[::1]:3324".into(),
                preference: DEFAULT_RPKI_CACHE_PREFERENCE
            },
        ]
    );
    let text = text.replace("[rpki]\n", "[rpki]\ninvalid_policy = \"withdraw\"\n");
    assert_eq!(
        parse(&text).unwrap().rpki.unwrap().invalid_policy,
        InvalidPolicy::Withdraw
    );
}

#[test]
fn rpki_errors_point_at_the_value() {
    let text = format!(
        "{MINIMAL}\n[rpki]\ninvalid_policy = \"drop\"\ncaches = [{{ address = \"127.0.0.1\" }}, {{ address = \"b:1\" }}, {{ address = \"b:1\" }}]\n"
    );
    let rendered = parse(&text).unwrap_err().to_string();
    assert!(
        rendered.contains("topologyd.toml:15:18: error: invalid_policy `drop` is not a policy"),
        "{rendered}"
    );
    assert!(
        rendered.contains("topologyd.toml:16:23: error: RTR cache address `127.0.0.1` has no port"),
        "{rendered}"
    );
    assert!(
        rendered.contains("RTR cache `b:1` is named twice"),
        "{rendered}"
    );
    let empty = format!("{MINIMAL}\n[rpki]\ncaches = []\n");
    let rendered = parse(&empty).unwrap_err().to_string();
    assert!(rendered.contains("[rpki] names no cache"), "{rendered}");
    let unknown = format!("{MINIMAL}\n[rpki]\ncaches = [{{ address = \"a:1\", weight = 2 }}]\n");
    let rendered = parse(&unknown).unwrap_err().to_string();
    assert!(rendered.contains("unknown field"), "{rendered}");
}

#[test]
fn bmp_section_defaults_and_errors() {
    let with = |extra: &str| parse(&format!("{MINIMAL}\n{extra}"));
    let config = with("[bmp]\nlisten = [\"127.0.0.1:11019\"]\n").unwrap();
    let bmp = config.bmp.unwrap();
    assert_eq!(bmp.listen, vec!["127.0.0.1:11019".parse().unwrap()]);
    assert_eq!(bmp.allow.len(), 2, "loopback only by default");
    assert_eq!(bmp.max_routers, DEFAULT_BMP_MAX_ROUTERS);
    assert_eq!(bmp.queue_messages, DEFAULT_BMP_QUEUE_MESSAGES);
    assert_eq!(bmp.settle_seconds, DEFAULT_BMP_SETTLE_SECONDS);
    assert!(parse(MINIMAL).unwrap().bmp.is_none());
    let errors =
        with("[bmp]\nlisten = [\"nowhere\"]\nallow = [\"10.0.0.0/33\"]\nmax_routers = 0\n")
            .unwrap_err()
            .to_string();
    assert!(
        errors.contains("`nowhere` is not a valid socket address"),
        "{errors}"
    );
    assert!(
        errors.contains("`10.0.0.0/33` is not a valid prefix"),
        "{errors}"
    );
    assert!(errors.contains("must be at least 1"), "{errors}");
    let errors = with("[bmp]\nlisten = []\n").unwrap_err().to_string();
    assert!(errors.contains("[bmp] has no listen address"), "{errors}");
}

#[test]
fn bmp_per_router_bounds_are_configurable_and_checked_at_the_value() {
    let with = |extra: &str| {
        parse(&format!(
            "{MINIMAL}\n[bmp]\nlisten = [\"127.0.0.1:11019\"]\n{extra}"
        ))
    };
    let defaults = with("").unwrap().bmp.unwrap();
    assert_eq!(
        defaults.max_routes_per_router,
        DEFAULT_BMP_MAX_ROUTES_PER_ROUTER
    );
    assert_eq!(
        defaults.max_peers_per_router,
        DEFAULT_BMP_MAX_PEERS_PER_ROUTER
    );
    let set = with("max_routes_per_router = 2000000\nmax_peers_per_router = 64\n")
        .unwrap()
        .bmp
        .unwrap();
    assert_eq!(
        (set.max_routes_per_router, set.max_peers_per_router),
        (2_000_000, 64)
    );
    let zero = with("max_routes_per_router = 0\nmax_peers_per_router = 0\n")
        .unwrap_err()
        .to_string();
    assert!(
        zero.contains("topologyd.toml:16:25: error: must be at least 1"),
        "{zero}"
    );
    assert!(
        zero.contains("topologyd.toml:17:24: error: must be at least 1"),
        "{zero}"
    );
    let typed = with("max_peers_per_router = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(typed.contains("topologyd.toml:16:24"), "{typed}");
    assert!(typed.contains("invalid type"), "{typed}");
    let negative = with("max_routes_per_router = -1\n")
        .unwrap_err()
        .to_string();
    assert!(negative.contains("topologyd.toml:16:25"), "{negative}");
}

#[test]
fn bmp_keepalive_defaults_can_be_off_and_is_bounded_by_the_kernel() {
    let with = |extra: &str| {
        parse(&format!(
            "{MINIMAL}\n[bmp]\nlisten = [\"127.0.0.1:11019\"]\n{extra}"
        ))
    };
    let keepalive = |extra: &str| with(extra).unwrap().bmp.unwrap().tcp_keepalive_seconds;
    assert_eq!(keepalive(""), DEFAULT_BMP_TCP_KEEPALIVE_SECONDS);
    assert_eq!(keepalive("tcp_keepalive_seconds = 0\n"), 0);
    assert_eq!(keepalive("tcp_keepalive_seconds = 300\n"), 300);
    let errors = with("tcp_keepalive_seconds = 40000\n")
        .unwrap_err()
        .to_string();
    assert!(
        errors.contains("topologyd.toml:16:25: error: must be at most 32767"),
        "{errors}"
    );
    let errors = with("tcp_keepalive_seconds = true\n")
        .unwrap_err()
        .to_string();
    assert!(errors.contains("topologyd.toml:16:25"), "{errors}");
}
