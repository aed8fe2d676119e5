//! Tests of the fleet file's parsing and validation (`fleet.rs`).

use super::*;

fn parse(text: &str) -> Result<Fleet, String> {
    parse_fleet(&Source::new("fleet.toml", text), Path::new("/etc/fleet"))
        .map_err(|diagnostics| diagnostics.to_string())
}

const GOOD: &str = r#"
[defaults]
ca = "pki/ca.pem"
certificate = "pki/admin.pem"
private_key = "/abs/admin.key"

[[location]]
name = "ams01"
control = "127.0.0.11:9443"

[[location]]
name = "fra01"
control = "127.0.0.12:9443"
server_name = "topologyd"
ca = "other-ca.pem"

[[wave]]
name = "canary"
select = "state = 'test' or tag:canary"
bake_seconds = 10
max_locations = 3

[[wave]]
name = "rest"
share = 1.0

[[gate]]
name = "daemons"
kind = "daemon"
interval_ms = 500
count = 2

[[gate]]
name = "probes"
kind = "probes"
services = ["resolver"]
waves = ["canary"]

[[gate]]
name = "promql"
kind = "promql"
prometheus = "127.0.0.1:9090"
query = 'sum(up{location=~"{wave}"})'
min = 1
"#;

#[test]
fn a_complete_fleet_file_parses_with_defaults_and_resolved_paths() {
    let fleet = parse(GOOD).unwrap();
    assert_eq!(fleet.locations.len(), 2);
    let ams = &fleet.locations[0];
    assert_eq!(ams.server_name, DEFAULT_SERVER_NAME);
    assert_eq!(ams.tls.ca, PathBuf::from("/etc/fleet/pki/ca.pem"));
    assert_eq!(ams.tls.private_key, PathBuf::from("/abs/admin.key"));
    let fra = &fleet.locations[1];
    assert_eq!(fra.server_name, "topologyd");
    assert_eq!(fra.tls.ca, PathBuf::from("/etc/fleet/other-ca.pem"));
    assert_eq!(fleet.waves[0].max_locations, Some(3));
    assert_eq!(fleet.waves[1].bake_seconds, DEFAULT_BAKE_SECONDS);
    assert_eq!(fleet.gates[0].count, 2);
    assert_eq!(fleet.gates[0].failure_limit, DEFAULT_FAILURE_LIMIT);
    assert_eq!(
        fleet.gates[2].kind,
        GateKind::Promql {
            prometheus: "http://127.0.0.1:9090".into(),
            query: "sum(up{location=~\"{wave}\"})".into(),
            min: Some(1.0),
            max: None
        }
    );
    assert!(fleet.gates[1].applies_to("canary-2", "canary"));
    assert!(!fleet.gates[1].applies_to("rest", "rest"));
    assert_eq!(fleet.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
    assert_eq!(fleet.lease_seconds, DEFAULT_LEASE_SECONDS);
}

#[test]
fn lease_seconds_is_bounded() {
    let fleet = |lease: &str| {
        format!(
            "[defaults]\nlease_seconds = {lease}\n[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[wave]]\nname = \"w\"\n"
        )
    };
    assert_eq!(parse(&fleet("5")).unwrap().lease_seconds, 5);
    for bad in ["2", "3601"] {
        let error = parse(&fleet(bad)).unwrap_err();
        assert!(
            error.contains(&format!(
                "fleet.toml:2:17: error: lease_seconds {bad} is outside 3..=3600"
            )),
            "{error}"
        );
    }
}

#[test]
fn unknown_keys_are_rejected_at_their_position() {
    let error = parse("[[location]]\nname = \"a\"\ncontrl = \"x\"\n").unwrap_err();
    assert!(
        error.starts_with("fleet.toml:3:1: error: unknown field `contrl`"),
        "{error}"
    );
    assert!(error.contains("help: remove the key"), "{error}");
}

#[test]
fn selector_errors_point_inside_the_string() {
    let text = GOOD.replace(
        "state = 'test' or tag:canary",
        "state = 'test' oor tag:canary",
    );
    let error = parse(&text).unwrap_err();
    let line = text.lines().position(|line| line.contains("oor")).unwrap() + 1;
    // `select = "state = 'test' oor` : the bad token starts at column 26.
    assert!(
        error.contains(&format!(
            "fleet.toml:{line}:26: error: invalid selector of wave `canary`"
        )),
        "{error}"
    );
}

#[test]
fn every_error_is_reported_in_one_run() {
    let text = r#"
[[location]]
name = "a"
control = "not-an-address"

[[location]]
name = "a"
control = "127.0.0.1:1"
ca = "ca.pem"
certificate = "c.pem"
private_key = "k.pem"

[[wave]]
name = "w"
share = 1.5
max_locations = 0

[[gate]]
name = "g"
kind = "promql"
query = "up"

[[gate]]
name = "p"
kind = "probes"
count = 0
waves = ["nope"]

[[gate]]
name = "x"
kind = "magic"
"#;
    let error = parse(text).unwrap_err();
    for expected in [
        "fleet.toml:4:11: error: `not-an-address` is not a control address",
        "fleet.toml:3:8: error: location `a` has no `ca`",
        "fleet.toml:7:8: error: duplicate location name `a`",
        "fleet.toml:15:9: error: share 1.5 is outside (0, 1]",
        "fleet.toml:16:17: error: max_locations 0 must be at least 1",
        "fleet.toml:20:8: error: promql gate `g` has no `prometheus`",
        "fleet.toml:25:8: error: probes gate `p` has no `services`",
        "fleet.toml:26:9: error: `count` must be at least 1",
        "fleet.toml:27:9: error: gate `p` names an unknown wave `nope`",
        "fleet.toml:31:8: error: unknown gate kind `magic`",
    ] {
        assert!(
            error.contains(expected),
            "missing {expected:?} in:\n{error}"
        );
    }
}

#[test]
fn empty_fleet_files_say_what_is_missing() {
    let error = parse("").unwrap_err();
    assert!(error.contains("no [[location]]"), "{error}");
    assert!(error.contains("no [[wave]]"), "{error}");
}

#[test]
fn a_visibility_gate_takes_no_kind_keys_of_its_own() {
    let head = "[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[wave]]\nname = \"w\"\n[[gate]]\nname = \"held\"\nkind = \"visibility\"\n";
    let fleet = parse(head).unwrap();
    assert_eq!(fleet.gates[0].kind, GateKind::Visibility { routers: None });
    assert!(parse(&format!("{head}query = \"up\"\n")).is_err());
}

#[test]
fn a_visibility_gate_waits_out_the_station_settle_time_before_pausing() {
    let head = "[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[wave]]\nname = \"w\"\n[[gate]]\nname = \"held\"\nkind = \"visibility\"\n";
    // 15 s of inconclusive evaluations at the default 1 s, 30 at 500 ms, at least 5.
    assert_eq!(parse(head).unwrap().gates[0].inconclusive_limit, 15);
    let fast = parse(&format!("{head}interval_ms = 500\n")).unwrap();
    assert_eq!(fast.gates[0].inconclusive_limit, 30);
    let slow = parse(&format!("{head}interval_ms = 60000\n")).unwrap();
    assert_eq!(slow.gates[0].inconclusive_limit, DEFAULT_INCONCLUSIVE_LIMIT);
    let given = parse(&format!("{head}inconclusive_limit = 2\n")).unwrap();
    assert_eq!(given.gates[0].inconclusive_limit, 2);
}

#[test]
fn a_visibility_gate_may_require_a_number_of_routers_and_only_it() {
    let head = "[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[wave]]\nname = \"w\"\n[[gate]]\nname = \"held\"\n";
    let fleet = parse(&format!("{head}kind = \"visibility\"\nrouters = 2\n")).unwrap();
    assert_eq!(
        fleet.gates[0].kind,
        GateKind::Visibility { routers: Some(2) }
    );
    let error = parse(&format!("{head}kind = \"rpki\"\nrouters = 2\n")).unwrap_err();
    assert!(
        error.contains("`routers` does not apply to a gate of kind rpki"),
        "{error}"
    );
}

#[test]
fn an_rpki_gate_takes_no_kind_keys_of_its_own() {
    let head = "[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[wave]]\nname = \"w\"\n[[gate]]\nname = \"origins\"\nkind = \"rpki\"\n";
    let fleet = parse(&format!("{head}count = 2\n")).unwrap();
    assert_eq!(fleet.gates[0].kind, GateKind::Rpki);
    assert_eq!(fleet.gates[0].count, 2);
    let error = parse(&format!("{head}services = [\"resolver\"]\n")).unwrap_err();
    assert!(
        error.contains("fleet.toml:12:12: error: `services` does not apply to a gate of kind rpki"),
        "{error}"
    );
}

#[test]
fn fields_of_another_gate_kind_are_rejected() {
    let text = "[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[wave]]\nname = \"w\"\n[[gate]]\nname = \"d\"\nkind = \"daemon\"\nmin = 1.0\n";
    let error = parse(text).unwrap_err();
    assert!(
        error.contains("fleet.toml:12:7: error: `min` does not apply to a gate of kind daemon"),
        "{error}"
    );
}

#[test]
fn stall_bounds_default_and_are_overridden_per_wave() {
    let fleet = parse(GOOD).unwrap();
    assert!(fleet.waves.iter().all(|wave| {
        wave.stall_seconds == DEFAULT_STALL_SECONDS && wave.on_stall == OnStall::Pause
    }));
    let text = GOOD
        .replace(
            "private_key = \"/abs/admin.key\"\n",
            "private_key = \"/abs/admin.key\"\nstall_seconds = 30\non_stall = \"rollback\"\n",
        )
        .replace(
            "max_locations = 3\n",
            "max_locations = 3\nstall_seconds = 5\non_stall = \"pause\"\n",
        );
    let fleet = parse(&text).unwrap();
    assert_eq!(fleet.waves[0].stall_seconds, 5);
    assert_eq!(fleet.waves[0].on_stall, OnStall::Pause);
    assert_eq!(fleet.waves[1].stall_seconds, 30);
    assert_eq!(fleet.waves[1].on_stall, OnStall::Rollback);
}

#[test]
fn bad_stall_settings_are_errors_at_their_value() {
    let text = "[defaults]\nstall_seconds = 0\non_stall = \"retry\"\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\n[[wave]]\nname = \"w\"\non_stall = \"abort\"\n";
    let error = parse(text).unwrap_err();
    for expected in [
        "fleet.toml:2:17: error: stall_seconds must be at least 1",
        "fleet.toml:3:12: error: unknown on_stall `retry`",
        "fleet.toml:12:12: error: unknown on_stall `abort`",
        "help: use \"pause\" (the default) or \"rollback\"",
    ] {
        assert!(
            error.contains(expected),
            "missing {expected:?} in:\n{error}"
        );
    }
}

/// A huge bound (it would overflow a deadline) is an error at its value, not a panic later.
#[test]
fn a_stall_bound_over_seven_days_is_an_error_at_its_value() {
    let text = "[defaults]\nca = \"c\"\ncertificate = \"c\"\nprivate_key = \"k\"\n[[location]]\nname = \"a\"\ncontrol = \"127.0.0.1:1\"\n[[wave]]\nname = \"w\"\nstall_seconds = 9223372036854775807\n";
    let error = parse(text).unwrap_err();
    assert!(
        error.contains(
            "fleet.toml:10:17: error: stall_seconds = 9223372036854775807 is longer than 7 days (604800 seconds)"
        ),
        "{error}"
    );
    let week = text.replace("9223372036854775807", "604800");
    assert_eq!(parse(&week).unwrap().waves[0].stall_seconds, 604_800);
}

#[test]
fn preflight_concurrency_defaults_and_is_bounded() {
    assert_eq!(
        parse(GOOD).unwrap().preflight_concurrency,
        DEFAULT_PREFLIGHT_CONCURRENCY
    );
    let text = GOOD.replace("[defaults]\n", "[defaults]\npreflight_concurrency = 4\n");
    assert_eq!(parse(&text).unwrap().preflight_concurrency, 4);
    for bad in ["0", "-3", "100000"] {
        let text = GOOD.replace(
            "[defaults]\n",
            &format!("[defaults]\npreflight_concurrency = {bad}\n"),
        );
        let error = parse(&text).unwrap_err();
        assert!(
            error.contains(&format!(
                "fleet.toml:3:25: error: preflight_concurrency {bad} is outside 1..=1024"
            )),
            "{error}"
        );
    }
}

#[test]
fn the_selector_span_covers_the_expression_inside_the_quotes() {
    let fleet = parse(GOOD).unwrap();
    let span = fleet.waves[0].select_span.unwrap();
    let text = &fleet.source.text[span.start as usize..span.end as usize];
    assert_eq!(text, "state = 'test' or tag:canary");
    assert_eq!(fleet.waves[1].select_span, None);
}

#[test]
fn prometheus_addresses() {
    assert_eq!(
        prometheus_base("127.0.0.1:9090").as_deref(),
        Some("http://127.0.0.1:9090")
    );
    assert_eq!(
        prometheus_base("http://[::1]:9090/").as_deref(),
        Some("http://[::1]:9090")
    );
    assert_eq!(prometheus_base("https://x:1"), None);
    assert_eq!(prometheus_base("localhost"), None);
    assert_eq!(prometheus_base("h:1/api"), None);
}
