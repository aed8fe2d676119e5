//! Compiler unit tests: every error of a run at once, positions, ROAs, blackholes, case warnings,
//! the canonical hash, health and local addresses, and the route allowance.

#![allow(clippy::unwrap_used)]

use super::hash::{CanonicalHasher, hash_health};
use super::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};
use topologyd_config::TextReader;
use topologyd_config::health::ProbeSpec;

const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
tags = ["canary"]
state = "live"

[[location]]
name = "iad01"
region = "us"
metro = "IAD"
country = "US"
state = "live"

[[location]]
name = "tst01"
region = "eu"
metro = "AMS"
country = "NL"
state = "test"
"#;

fn errors(services: &str, prefixes: &str) -> String {
    let sources = vec![
        Source::new("fleet.toml", FLEET),
        Source::new("services.toml", services),
        Source::new("prefixes.toml", prefixes),
    ];
    outcome(compile(&sources, 1))
}

/// What [`errors`] shows of a compile: `OK` and the warnings, or the diagnostics.
fn outcome(result: Result<Topology, Diagnostics>) -> String {
    match result {
        Ok(topology) => {
            let warnings: Vec<String> = topology
                .warnings()
                .iter()
                .map(ToString::to_string)
                .collect();
            format!("OK\n{}", warnings.join("\n"))
        }
        Err(diagnostics) => diagnostics.to_string(),
    }
}

const SERVICES: &str = r#"
[[service]]
name = "web"
topology = "all"

[[service]]
name = "eu-only"
topology = 'region = "eu"'
"#;

#[test]
fn reports_every_error_at_once_with_positions() {
    let prefixes = r#"
[[prefix]]
cidr = "192.0.2.1/24"
origin_asn = 64500
owner = "o"
advertise = true

[[prefix]]
cidr = "192.0.2.0/25"
origin_asn = 64500
owner = "o"
advertise = true

[[prefix]]
cidr = "10.0.0.0/7"
origin_asn = 64500
owner = "o"
advertise = true

[[prefix]]
cidr = "2001:db8::/32"
origin_asn = 64500
owner = "o"
advertise = true
announce = { split = 64 }

[[binding]]
cidr = "192.0.2.0/24"
service = "webb"

[[binding]]
cidr = "198.51.100.0/24"
service = "web"

[[binding]]
cidr = "10.0.0.0/7"
service = "web"

[[binding]]
cidr = "10.0.0.0/7"
service = "eu-only"

[[binding]]
cidr = "2001:db8::/32"
service = "web"
"#;
    let text = errors(SERVICES, prefixes);
    for expected in [
        "prefixes.toml:3:8: error: prefix 192.0.2.1/24 has host bits set\n  help: did you mean \"192.0.2.0/24\"?",
        "prefixes.toml:9:8: error: onboarded prefix 192.0.2.0/25 overlaps onboarded prefix 192.0.2.0/24",
        "prefixes.toml:15:8: error: prefix 10.0.0.0/7 would be announced as /7 routes, outside the IPv4 limits /8–/24",
        "prefixes.toml:25:12: error: splitting 2001:db8::/32 into /64s makes more than 65536 routes",
        "prefixes.toml:9:8: error: prefix 192.0.2.0/25 would be announced as /25 routes, outside the IPv4 limits /8–/24",
        "prefixes.toml:29:11: error: binding 192.0.2.0/24 names unknown service `webb`\n  help: did you mean `web`?",
        "prefixes.toml:32:8: error: binding 198.51.100.0/24 is outside every onboarded prefix",
        "prefixes.toml:40:8: error: 10.0.0.0/7 is bound twice: already bound to service `web`",
        "G1: prefix 192.0.2.0/24 is advertised but has no default binding",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn unknown_selector_values_point_inside_the_string() {
    let services = "[[service]]\nname = \"web\"\ntopology = 'region = \"eu\" or tag = \"canry\"'\n";
    let text = errors(services, "");
    assert!(
        text.contains("services.toml:3:37: error: unknown tag \"canry\" in the topology of service `web`\n  help: did you mean `canary`?"),
        "{text}"
    );
}

#[test]
fn roa_must_authorise_every_announced_route() {
    let prefixes = r#"
[[prefix]]
cidr = "192.0.2.0/23"
origin_asn = 64500
owner = "o"
advertise = true
announce = { split = 24 }
roa = { asn = 64501, max_length = 23 }

[[binding]]
cidr = "192.0.2.0/23"
service = "web"
"#;
    let text = errors(SERVICES, prefixes);
    assert!(
        text.contains("RPKI-invalid: the ROA of 192.0.2.0/23 authorises AS64501"),
        "{text}"
    );
    assert!(
        text.contains("RPKI-invalid: routes of 192.0.2.0/23 are /24"),
        "{text}"
    );
}

#[test]
fn a_service_matching_nothing_with_bound_routes_is_an_error() {
    let services =
        "[[service]]\nname = \"web\"\ntopology = 'region = \"eu\" and region = \"us\"'\n";
    let prefixes = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let text = errors(services, prefixes);
    assert!(
        text.contains(
            "services.toml:2:8: error: active service `web` has bound routes but its topology"
        ),
        "{text}"
    );
}

#[test]
fn a_pending_service_under_an_announced_route_is_a_blackhole() {
    let services = format!(
        "{SERVICES}\n[[service]]\nname = \"later\"\nlifecycle = \"pending\"\ntopology = \"all\"\n"
    );
    let prefixes = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 64500
owner = "o"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "web"

[[binding]]
cidr = "192.0.2.64/26"
service = "later"
"#;
    let text = errors(&services, prefixes);
    assert!(
        text.contains("prefixes.toml:13:8: error: blackhole by construction: binding 192.0.2.64/26 is bound to pending service `later` under route 192.0.2.0/24"),
        "{text}"
    );
    assert!(text.contains("activate `later` first"), "{text}");
    // Not advertised: nothing arrives, so nothing is blackholed; only the unused service
    // is worth a warning.
    let text = errors(
        &services,
        &prefixes.replace("advertise = true", "advertise = false"),
    );
    assert!(text.starts_with("OK"), "{text}");
    assert!(
        text.contains("warning: service `eu-only` has no bindings"),
        "{text}"
    );
}

/// The warnings of a compile of `text` (as `t.toml`), which must compile.
fn warnings_of(text: &str) -> Vec<String> {
    let topology = compile(&[Source::new("t.toml", text)], 1).unwrap();
    topology
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn attribute_values_differing_only_in_case_are_warned_about() {
    let fleet = "[[location]]\nname = \"a1\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                 [[location]]\nname = \"a2\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                 [[location]]\nname = \"a3\"\nregion = \"EU\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                 [[service]]\nname = \"web\"\ntopology = \"all\"\n\
                 [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                 [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let warnings = warnings_of(fleet);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("t.toml:15:10: warning: region `EU` (1 location(s)) differs only in case from `eu` (2 location(s))"),
        "{warnings:?}"
    );
}

#[test]
fn hash_ignores_file_order_and_formatting_but_not_content() {
    let prefixes = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let compile_files = |files: Vec<(&str, String)>| {
        let sources: Vec<Source> = files
            .into_iter()
            .map(|(name, text)| Source::new(name, text))
            .collect();
        compile(&sources, 7).unwrap()
    };
    let one = compile_files(vec![
        ("fleet.toml", FLEET.into()),
        ("services.toml", SERVICES.into()),
        ("prefixes.toml", prefixes.into()),
    ]);
    let reordered = compile_files(vec![
        ("prefixes.toml", format!("# comment\n{prefixes}")),
        ("all.toml", format!("{SERVICES}\n{FLEET}")),
    ]);
    assert_eq!(one.hash(), reordered.hash());
    assert_eq!(one.generation(), 7);
    let changed = compile_files(vec![
        ("fleet.toml", FLEET.into()),
        ("services.toml", SERVICES.replace("\"all\"", "'tag:canary'")),
        ("prefixes.toml", prefixes.into()),
    ]);
    assert_ne!(one.hash(), changed.hash());
    let bundle = SourceBundle::of(&one);
    let json = serde_json::to_string(&bundle).unwrap();
    let restored: SourceBundle = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.compile().unwrap().hash(), one.hash());
}

const HEALTH_PREFIXES: &str = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 64500
owner = "o"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "web"

[[binding]]
cidr = "192.0.2.128/25"
service = "api"

[[prefix]]
cidr = "2001:db8::/48"
origin_asn = 64500
owner = "o"
advertise = true

[[binding]]
cidr = "2001:db8::/48"
service = "web"
"#;

/// Two services, `web` with `web_addresses` and a health block, `api` with `api_addresses`.
fn health_services(web_addresses: &str, api_addresses: &str, check: &str) -> String {
    format!(
        "[[service]]\nname = \"web\"\ntopology = \"all\"\nlocal_addresses = [{web_addresses}]\n\n[service.health]\ninterval_ms = 1000\ntimeout_ms = 500\n\n[[service.health.check]]\n{check}\n\n[[service]]\nname = \"api\"\ntopology = \"all\"\nlocal_addresses = [{api_addresses}]\n"
    )
}

const TCP_CHECK: &str = "kind = \"tcp\"\naddress = \"{location}.example.test:80\"";

fn compile_health(services: &str) -> Result<Topology, Diagnostics> {
    compile(
        &[
            Source::new("fleet.toml", FLEET),
            Source::new("services.toml", services),
            Source::new("prefixes.toml", HEALTH_PREFIXES),
        ],
        1,
    )
}

#[test]
fn health_and_local_addresses_reach_the_service() {
    let topology = compile_health(&health_services(
        "\"2001:db8::10/128\", \"192.0.2.10/32\", \"192.0.2.10/32\"",
        "\"192.0.2.130/32\", \"192.0.2.131/32\"",
        TCP_CHECK,
    ))
    .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let web = topology.service("web").unwrap();
    let addresses: Vec<String> = web
        .local_addresses
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(addresses, ["192.0.2.10/32", "2001:db8::10/128"]);
    let health = web.health.as_ref().unwrap();
    assert_eq!(health.interval_ms, 1000);
    assert_eq!(
        health.checks,
        [ProbeSpec::Tcp {
            address: "{location}.example.test:80".into()
        }]
    );
    let api = topology.service("api").unwrap();
    assert!(api.health.is_none());
    assert_eq!(api.local_addresses.len(), 2);
    // What `topoctl` and the control API print.
    let json = serde_json::to_value(web).unwrap();
    assert_eq!(
        json["local_addresses"],
        serde_json::json!(["192.0.2.10/32", "2001:db8::10/128"])
    );
    assert_eq!(
        json["health"]["on_unhealthy"],
        serde_json::json!({"action": "withdraw"})
    );
    assert_eq!(
        json["health"]["checks"],
        serde_json::json!([{"kind": "tcp", "address": "{location}.example.test:80"}])
    );
    assert_eq!(
        serde_json::to_value(api).unwrap()["health"],
        serde_json::Value::Null
    );
}

#[test]
fn local_addresses_must_lie_in_the_services_own_bindings() {
    let text = match compile_health(&health_services(
        "\"192.0.2.10/32\", \"192.0.2.200/32\", \"198.51.100.1/32\"",
        "\"192.0.2.130/32\"",
        TCP_CHECK,
    )) {
        Ok(_) => panic!("compiled"),
        Err(diagnostics) => diagnostics.to_string(),
    };
    for expected in [
        "services.toml:4:37: error: local address 192.0.2.200/32 of service `web` is handled by service `api`: the longest binding covering it is 192.0.2.128/25 (prefixes.toml:13:8)\n  help: a service binds only addresses of its own bindings: bind a cidr containing 192.0.2.200 to `web`, or remove the address",
        "services.toml:4:55: error: local address 198.51.100.1/32 of service `web` is inside no binding\n  help: bind a cidr containing it to `web`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(text.contains("2 error(s)"), "{text}");
}

#[test]
fn hash_covers_health_and_local_addresses_but_not_their_layout() {
    let hash = |web: &str, check: &str| -> [u8; 32] {
        compile_health(&health_services(web, "", check))
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
            .hash()
    };
    let base = hash("\"192.0.2.10/32\", \"2001:db8::10/128\"", TCP_CHECK);
    // Order and duplicates of the local addresses, and file layout, do not matter.
    assert_eq!(
        base,
        hash(
            "\"2001:db8::10/128\", \"192.0.2.10/32\", \"2001:db8::10/128\"",
            TCP_CHECK
        )
    );
    let split = compile(
        &[
            Source::new("prefixes.toml", format!("# moved\n{HEALTH_PREFIXES}")),
            Source::new(
                "all.toml",
                format!(
                    "{}\n{FLEET}",
                    health_services(
                        "\"192.0.2.10/32\",\n  \"2001:db8::10/128\"",
                        "",
                        "address = \"{location}.example.test:80\"   # the same check\nkind = 'tcp'"
                    )
                ),
            ),
        ],
        2,
    )
    .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    assert_eq!(base, split.hash());
    // Any change of the health spec or the addresses changes it.
    for (web, check) in [
        ("\"192.0.2.10/32\"", TCP_CHECK),
        ("\"192.0.2.11/32\", \"2001:db8::10/128\"", TCP_CHECK),
        (
            "\"192.0.2.10/32\", \"2001:db8::10/128\"",
            "kind = \"tcp\"\naddress = \"{location}.example.test:81\"",
        ),
        (
            "\"192.0.2.10/32\", \"2001:db8::10/128\"",
            "kind = \"http\"\nurl = \"http://{location}.example.test:80/\"",
        ),
        (
            "\"192.0.2.10/32\", \"2001:db8::10/128\"",
            "kind = \"dns\"\nserver = \"{location}.example.test:80\"\nname = \"n\"\nrecord_type = \"A\"",
        ),
        (
            "\"192.0.2.10/32\", \"2001:db8::10/128\"",
            "kind = \"dns\"\nserver = \"{location}.example.test:80\"\nname = \"n\"\nrecord_type = \"A\"\nexpect = \"192.0.2.1\"",
        ),
        (
            "\"192.0.2.10/32\", \"2001:db8::10/128\"",
            &format!(
                "{TCP_CHECK}\n[[service.health.check]]\nkind = \"exec\"\ncommand = [\"/bin/true\"]"
            ),
        ),
        (
            "\"192.0.2.10/32\", \"2001:db8::10/128\"",
            &format!("{TCP_CHECK}\n[service.health.degrade]\nmed = 5"),
        ),
    ] {
        let changed = if check.contains("degrade") {
            let services = health_services(web, "", check).replace(
                "timeout_ms = 500\n",
                "timeout_ms = 500\non_unhealthy = \"degrade\"\n",
            );
            compile_health(&services)
                .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
                .hash()
        } else {
            hash(web, check)
        };
        assert_ne!(base, changed, "{web} {check}");
    }
    for (from, to) in [
        ("interval_ms = 1000", "interval_ms = 1001"),
        ("timeout_ms = 500", "timeout_ms = 501"),
        ("timeout_ms = 500", "timeout_ms = 500\nrise = 2"),
        ("timeout_ms = 500", "timeout_ms = 500\nfall = 2"),
        ("timeout_ms = 500", "timeout_ms = 500\nhold_down_ms = 1"),
        (
            "timeout_ms = 500",
            "timeout_ms = 500\nmax_hold_down_ms = 300001",
        ),
    ] {
        let services = health_services("\"192.0.2.10/32\", \"2001:db8::10/128\"", "", TCP_CHECK)
            .replacen(from, to, 1);
        let changed = compile_health(&services)
            .unwrap_or_else(|diagnostics| panic!("{diagnostics}"))
            .hash();
        assert_ne!(base, changed, "{to}");
    }
    // Without health and local addresses, a service hashes as before they existed.
    let without = compile_health(
        "[[service]]\nname = \"web\"\ntopology = \"all\"\n[[service]]\nname = \"api\"\ntopology = \"all\"\n",
    )
    .unwrap();
    assert_ne!(base, without.hash());
    let mut plain = CanonicalHasher::new();
    plain.text("web");
    let mut marked = CanonicalHasher::new();
    marked.text("web");
    hash_health(&mut marked, &without.services()[1]);
    assert_eq!(without.services()[1].name, "web");
    assert_eq!(plain.finish(), marked.finish());
}

#[test]
fn splitting_cannot_multiply_routes_beyond_the_input_s_allowance() {
    // 256 IPv6 /32s split into /48s: 16.7 million routes from 35 KB of text.
    let mut text = String::from(
        "[[location]]\nname = \"a\"\nregion = \"r\"\nmetro = \"m\"\ncountry = \"c\"\nstate = \"live\"\n[[service]]\nname = \"web\"\ntopology = \"all\"\n",
    );
    for index in 0..256 {
        text += &format!(
            "[[prefix]]\ncidr = \"2001:{index:x}::/32\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = {{ split = 48 }}\n[[binding]]\ncidr = \"2001:{index:x}::/32\"\nservice = \"web\"\n"
        );
    }
    let error = compile(&[Source::new("t.toml", text.clone())], 1).unwrap_err();
    let first = error.errors().next().unwrap().to_string();
    // 15 prefixes (983,040 routes) fit; the 16th would pass 1,000,000 plus one per 8 bytes.
    assert!(
        first.contains(
            "announcing prefix 2001:f::/32 as 65536 route(s) would bring the topology past"
        ),
        "{first}"
    );
    assert!(first.contains("help: announce shorter routes"), "{first}");
}

#[test]
fn names_differing_only_in_case_are_warned_about() {
    let text = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[location]]\nname = \"AMS01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[service]]\nname = \"cdn\"\ntopology = \"all\"\n[[service]]\nname = \"CDN\"\ntopology = \"all\"\n\
                [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"cdn\"\n\
                [[prefix]]\ncidr = \"198.51.100.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                [[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"CDN\"\n";
    let warnings = warnings_of(text);
    assert!(
        warnings.iter().any(|warning| warning.starts_with(
            "t.toml:8:8: warning: location `AMS01` differs only in case from location `ams01`"
        )),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(
            |warning| warning.contains("service `CDN` differs only in case from service `cdn`")
        ),
        "{warnings:?}"
    );
}

#[test]
fn names_differing_only_in_case_beyond_ascii_are_warned_about_and_others_are_not() {
    let text = "[[location]]\nname = \"ämter\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[location]]\nname = \"Ämter\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[location]]\nname = \"amter\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[service]]\nname = \"web\"\ntopology = \"all\"\n\
                [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let warnings = warnings_of(text);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "t.toml:8:8: warning: location `Ämter` differs only in case from location `ämter`"
        ),
        "{warnings:?}"
    );
}

#[test]
fn a_name_defined_twice_is_an_error_at_the_later_definition_naming_the_first() {
    let text = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[location]]\nname = \"fra01\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[location]]\nname = \"ams01\"\nregion = \"us\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n\
                [[service]]\nname = \"web\"\ntopology = \"all\"\n\
                [[service]]\nname = \"dns\"\ntopology = \"all\"\n\
                [[service]]\nname = \"web\"\ntopology = \"region = 'us'\"\n\
                [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let errors: Vec<String> = compile(&[Source::new("t.toml", text)], 1)
        .unwrap_err()
        .errors()
        .map(ToString::to_string)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|error| error
            .starts_with("t.toml:14:8: error: location `ams01` is defined twice")
            && error.contains("it is first defined at t.toml:2:8")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|error| error
            .starts_with("t.toml:26:8: error: service `web` is defined twice")
            && error.contains("it is first defined at t.toml:20:8")),
        "{errors:?}"
    );
}

proptest::proptest! {
    /// Merging two sorted lists is a stable sort of the first followed by the second: the
    /// incremental compile relies on it to order reused and parsed items as a full sort would.
    #[test]
    fn merge_sorted_is_a_stable_sort_of_both(
        mut left in proptest::collection::vec((0_u8..16, 0_u16..1000), 0..60),
        mut right in proptest::collection::vec((0_u8..16, 0_u16..1000), 0..60),
    ) {
        left.sort_by_key(|item| item.0);
        right.sort_by_key(|item| item.0);
        let mut expected: Vec<(u8, u16)> = left.iter().chain(&right).copied().collect();
        expected.sort_by_key(|item| item.0);
        let merged = merge_sorted(left.into_iter(), right, |item| item.0);
        proptest::prop_assert_eq!(merged, expected);
    }
}

/// A compile whose texts are put away once parsed (the daemon's bootstrap) reports every error
/// and warning at the position the full compile gives, reading a text again only for that, and
/// compiles the same topology.
#[test]
fn texts_put_away_are_read_back_to_report_the_same_positions() {
    let case = "[[location]]\nname = \"a1\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\
                [[location]]\nname = \"a3\"\nregion = \"EU\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n";
    let bound = "[[service]]\nname = \"web\"\ntopology = \"all\"\n\
                 [[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n\
                 [[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"web\"\n";
    let broken = bound.replace("service = \"web\"\n", "service = \"webb\"\n")
        + "[[binding]]\ncidr = \"198.51.100.1/24\"\nservice = \"web\"\n";
    let mut reported_cases = 0;
    for files in [
        vec![
            ("fleet.toml", FLEET.to_string()),
            ("a.toml", bound.to_string()),
        ],
        vec![
            ("fleet.toml", case.to_string()),
            ("a.toml", bound.to_string()),
        ],
        vec![
            ("fleet.toml", FLEET.to_string()),
            ("a.toml", broken.clone()),
        ],
        vec![
            ("fleet.toml", FLEET.to_string()),
            ("a.toml", format!("{bound}\n{broken}")),
        ],
    ] {
        let sources: Vec<Source> = files
            .iter()
            .map(|(name, text)| Source::new(*name, text.as_str()))
            .collect();
        let texts: Vec<String> = files.iter().map(|(_, text)| text.clone()).collect();
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&reads);
        let read: topologyd_config::ReadText = std::sync::Arc::new(move |index| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let text = texts.get(index as usize)?.clone();
            Some(Box::new(std::io::Cursor::new(text.into_bytes())) as Box<dyn TextReader>)
        });
        let full = compile(&sources, 1);
        let full_hash = full.as_ref().map(Topology::hash_hex).ok();
        let expected = outcome(full);
        let put_away = compile_put_away(sources, Vec::new(), read, 1);
        assert_eq!(put_away.as_ref().map(Topology::hash_hex).ok(), full_hash);
        if let Ok(topology) = &put_away {
            assert!(
                topology
                    .sources()
                    .iter()
                    .all(|source| source.text.is_empty())
            );
        }
        assert_eq!(outcome(put_away), expected);
        // Read back only where something is reported: once per file that has a position.
        let reported = expected.lines().count() > 1;
        assert_eq!(
            reads.load(std::sync::atomic::Ordering::SeqCst) > 0,
            reported,
            "{expected}"
        );
        reported_cases += usize::from(reported);
    }
    assert_eq!(reported_cases, 3, "a warning, errors, and both");
}

/// The bundled example topology's three files.
fn example_sources() -> Vec<Source> {
    vec![
        Source::new(
            "fleet.toml",
            include_str!("../../../examples/topology/fleet.toml"),
        ),
        Source::new(
            "services.toml",
            include_str!("../../../examples/topology/services.toml"),
        ),
        Source::new(
            "prefixes.toml",
            include_str!("../../../examples/topology/prefixes.toml"),
        ),
    ]
}

/// The canonical hash is a generation's name across the fleet: `topoctl` compares it with what
/// daemons of this release and of the previous one report, so neither form's byte stream may
/// change. Pinned here in both forms for the bundled example, for a topology with health
/// checks, local addresses, ROAs, `announce` splits, tokens, RPKI policies and a non-default
/// setting, and for 2,500 prefixes (three chunks, the last one short); a change that alters a
/// value must be a deliberate, versioned change of the canonical form.
#[test]
fn the_canonical_hash_is_the_same_from_release_to_release() {
    let hex = |hash: [u8; 32]| {
        hash.iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    };
    let example =
        compile(example_sources(), 1).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let health = compile_health(&health_services(
        "\"192.0.2.10/32\", \"2001:db8::10/128\"",
        "\"192.0.2.130/32\"",
        "kind = \"dns\"\nserver = \"127.0.0.1:53\"\nname = \"{location}.example.test\"\nrecord_type = \"AAAA\"\nexpect = \"2001:db8::1\"",
    ))
    .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let prefixes = "[settings.blast_radius]\nsmall_change_routes = 7\nmax_withdrawn_pair_share = 0.25\n\n[[prefix]]\ncidr = \"198.51.100.0/24\"\norigin_asn = 64500\nowner = \"customer-a\"\nadvertise = true\nroa = { asn = 64500, max_length = 24 }\nrpki = \"refuse\"\nirr_token = \"irr-a\"\nrdns_token = \"rdns-a\"\n\n[[prefix]]\ncidr = \"2001:db8:100::/40\"\norigin_asn = 64501\nowner = \"customer-b\"\nadvertise = true\nannounce = { split = 48 }\nrpki = \"allow\"\n\n[[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"web\"\n\n[[binding]]\ncidr = \"198.51.100.128/25\"\nservice = \"api\"\n\n[[binding]]\ncidr = \"2001:db8:100::/40\"\nservice = \"web\"\n";
    let varied = compile(
        &[
            Source::new("fleet.toml", FLEET),
            Source::new(
                "services.toml",
                "[[service]]\nname = \"web\"\ntopology = \"region = 'eu'\"\nlifecycle = \"active\"\ncommunities = [\"13335:1\"]\nlarge_communities = [\"13335:1:2\"]\nmed = 10\nas_path_prepend = 2\nannounce_at_test_locations = true\n\n[[service]]\nname = \"api\"\ntopology = \"all\"\n",
            ),
            Source::new("prefixes.toml", prefixes),
        ],
        1,
    )
    .unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let mut many = String::new();
    for index in 0..2_500_u32 {
        let cidr = format!("10.{}.{}.0/24", index / 256, index % 256);
        many += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"o{}\"\nadvertise = {}\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"cdn\"\n\n",
            index % 7,
            index % 3 == 0
        );
    }
    let mut sources = example_sources();
    sources.push(Source::new("many.toml", many));
    let chunked = compile(&sources, 1).unwrap_or_else(|diagnostics| panic!("{diagnostics}"));
    let topologies = [&example, &health, &varied, &chunked];
    assert_eq!(
        topologies.map(|topology| topology.previous_form_hash_hex()),
        [
            "b087e338e98f09f03bb6455b0a28f32e7af7b798d068ece4f863ed6cfdf6c8b0",
            "66a13f4b770691d2bf9248cb530a3f7da671a311629736e27cadefae6154afef",
            "a563e330a5a25b37a86e7c518e9ade9e5b23fd5fc9df8a43794cab8f03a3dfe8",
            "a08854364ff44c4489fac2ca531b334197a52ea178d808aa43c0a8ddd51b7ab8",
        ],
        "form 1, as the releases before computed it"
    );
    assert_eq!(
        topologies.map(|topology| hex(topology.hash())),
        [
            "dd6038044e189b8c08d14897a4923a0bd6073a9db743e41def187570d8568126",
            "2c243dd03e377c18ecae2de2b18162198c85fb0dd76dab83af7c0f0e1703d26b",
            "e311f6753ab464520954e3f3c5521d5612765aecafc78292ffaa495c36f9cc75",
            "ad25a69ee6099e7013a57a5e0bc14410b56553bd57ff362ac3ae1e2a8c7c914c",
        ],
        "form 2"
    );
}

/// The hash computed beside the compile is the one computed on the reading thread, whoever
/// reads it first and however many read it at once (a topology of 20,000 prefixes, so that
/// the readers find it still being computed), and a topology dropped unread does not hold up
/// the next compile.
#[test]
fn a_hash_computed_beside_the_compile_is_read_alike_from_every_thread() {
    let mut many = String::new();
    for index in 0..20_000_u32 {
        let cidr = format!("10.{}.{}.0/24", index / 256, index % 256);
        many += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"o\"\nadvertise = false\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"cdn\"\n\n"
        );
    }
    let mut sources = example_sources();
    sources.push(Source::new("many.toml", many));
    let reference = compile(&sources, 1).unwrap();
    let names: Vec<&str> = reference
        .services
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    let inline = hash::hash_items(
        hash::hash_definitions(
            hash::HashForm::Chunked,
            &reference.settings,
            &reference.locations,
            &reference.services,
        ),
        &reference.prefixes,
        &reference.bindings,
        &names,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(reference.hash(), inline);
    let topology = compile(&sources, 2).unwrap();
    let read: Vec<[u8; 32]> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..8).map(|_| scope.spawn(|| topology.hash())).collect();
        readers
            .into_iter()
            .map(|reader| reader.join().unwrap())
            .collect()
    });
    assert!(read.iter().all(|hash| *hash == inline));
    assert_eq!(topology.hash_hex(), reference.hash_hex());
    drop(compile(&sources, 3).unwrap());
    assert_eq!(
        hash::TopologyHash::known(inline).get(),
        reference.hash(),
        "a known hash"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Staging never changes the stream: any sequence of pieces, small or larger than the
    /// staging buffer, hashes as SHA-256 of the same bytes handed over directly.
    #[test]
    fn staged_pieces_hash_as_the_same_bytes_unstaged(
        pieces in proptest::collection::vec((0_usize..140_000, any::<u8>()), 0..12),
    ) {
        let mut staged = CanonicalHasher::new();
        let mut direct = Sha256::new();
        for (length, byte) in pieces {
            let text = char::from(byte % 26 + b'a').to_string().repeat(length);
            staged.text(&text);
            direct.update((text.len() as u64).to_le_bytes());
            direct.update(text.as_bytes());
        }
        let direct: [u8; 32] = direct.finalize().into();
        prop_assert_eq!(staged.finish(), direct);
    }
}

/// A fleet whose region values include `a`, `b` and `a", "b`: the selectors
/// `region in ['a', 'b', 'eu']` and `region in ['a", "b', 'eu']` print alike.
const QUOTED_FLEET: &str = r#"
[[location]]
name = "l0"
region = "eu"
metro = "m1"
country = "NL"
state = "live"
tags = ["x"]

[[location]]
name = "l1"
region = "us"
metro = "m2"
country = "US"
state = "live"
tags = ["y"]

[[location]]
name = "l2"
region = "a"
metro = "m1"
country = "NL"
state = "live"
tags = ["x", "y"]

[[location]]
name = "l3"
region = "b"
metro = "m2"
country = "US"
state = "live"

[[location]]
name = 'l4'
region = 'a", "b'
metro = "m1"
country = "NL"
state = "live"
tags = ["y"]
"#;

/// The values a generated selector may name, per attribute keyword.
const SELECTOR_VALUES: [(&str, &[&str]); 3] = [
    ("region", &["eu", "us", "a", "b", "a\", \"b"]),
    ("metro", &["m1", "m2"]),
    ("tag", &["x", "y"]),
];

/// A generated selector's text (values single-quoted, so that a double quote may be inside).
fn selector_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("all".to_string()),
        Just("none".to_string()),
        (0..3_usize, 0..5_usize, any::<bool>()).prop_map(|(attribute, value, negated)| {
            let (keyword, values) = SELECTOR_VALUES[attribute];
            let operator = if negated { "!=" } else { "=" };
            format!("{keyword} {operator} '{}'", values[value % values.len()])
        }),
        (0..3_usize, proptest::collection::vec(0..5_usize, 1..4)).prop_map(
            |(attribute, picked)| {
                let (keyword, values) = SELECTOR_VALUES[attribute];
                let listed: Vec<String> = picked
                    .iter()
                    .map(|value| format!("'{}'", values[value % values.len()]))
                    .collect();
                format!("{keyword} in [{}]", listed.join(", "))
            }
        ),
    ];
    leaf.prop_recursive(2, 8, 2, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|selector| format!("not ({selector})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) or ({b})")),
        ]
    })
}

#[test]
fn selectors_that_print_alike_are_each_evaluated_for_what_they_say() {
    let services = r#"
[[service]]
name = "plain"
topology = "region in ['a', 'b', 'eu']"

[[service]]
name = "quoted"
topology = "region in ['a\", \"b', 'eu']"
"#;
    let topology = compile(
        &[
            Source::new("fleet.toml", QUOTED_FLEET),
            Source::new("services.toml", services),
        ],
        1,
    )
    .unwrap();
    let matched = |name: &str| -> Vec<String> {
        let service = topology
            .services()
            .iter()
            .find(|service| service.name == name)
            .unwrap();
        service
            .matched()
            .iter()
            .map(|index| topology.locations()[index].name.clone())
            .collect()
    };
    assert_eq!(matched("plain"), ["l0", "l2", "l3"]);
    assert_eq!(matched("quoted"), ["l0", "l4"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Every service's matched locations are those its selector selects, evaluated at each
    /// location alone — however many services share a selector or print alike.
    #[test]
    fn every_service_matches_what_its_selector_selects(
        selectors in proptest::collection::vec(selector_text(), 1..12)
    ) {
        let services: String = selectors
            .iter()
            .enumerate()
            .map(|(index, selector)| {
                let escaped = selector.replace('\\', "\\\\").replace('"', "\\\"");
                format!("[[service]]\nname = \"s{index:02}\"\ntopology = \"{escaped}\"\n\n")
            })
            .collect();
        let topology = compile(
            &[
                Source::new("fleet.toml", QUOTED_FLEET),
                Source::new("services.toml", services.as_str()),
            ],
            1,
        );
        let topology = match topology {
            Ok(topology) => topology,
            Err(diagnostics) => return Err(TestCaseError::fail(diagnostics.to_string())),
        };
        for (index, text) in selectors.iter().enumerate() {
            let selector = topologyd_config::parse_selector(text, &|_, _| {
                topologyd_config::Span::default()
            })
            .unwrap();
            let service = &topology.services()[index];
            prop_assert_eq!(&service.name, &format!("s{index:02}"));
            let expected: Vec<usize> = topology
                .locations()
                .iter()
                .enumerate()
                .filter(|(_, location)| location.selected_by(&selector))
                .map(|(index, _)| index)
                .collect();
            prop_assert_eq!(service.matched().iter().collect::<Vec<_>>(), expected, "{}", text);
        }
    }
}
