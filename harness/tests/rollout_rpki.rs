//! End to end: the `rpki` rollout gate and `topoctl rpki` (issue #13 items 4 and 5) against two
//! real `topologyd` instances (ams01, the canary, and fra01), each peering with its own real
//! BIRD 2 and keeping its VRPs in sync with one real StayRTR on loopback (`[rpki]`, the default
//! `keep` policy). The topology announces the resolver's 1.1.1.0/24 and 2606:4700:4700::/48
//! from AS13335; the fleet file has one gate, `origins` (`kind = "rpki"`, 200 ms × 2).
//!
//! - (1) StayRTR holds a ROA for each resolver prefix naming AS13335. A rollout adding
//!   192.0.2.0/24 (its ROA names AS13335 too) completes (exit 0): the `origins` gate passed in
//!   both waves; every daemon runs the new topology; `topoctl rpki --json` at each location is
//!   the daemon's view: in sync, three routes valid, none invalid.
//! - (2) The ROA for 1.1.1.0/24 now names AS4755 (a third party's origin, as in the resolver
//!   outage). Both daemons see the route invalid and keep it announced (fail static);
//!   `topoctl rpki` shows it in its table with the AS4755 VRP. A rollout adding 198.51.100.0/24
//!   (valid) fails the `origins` gate in the canary wave, naming ams01, 1.1.1.0/24 and the
//!   covering VRP, and rolls back (exit 3): ams01 is back on the previous topology, fra01 never
//!   applied it.
//!
//! Afterwards no process the fleet started is left (checked through `/proc`).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::Path;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use topologyd_api::{RouteRpkiState, RpkiSyncState, RpkiView};
use topologyd_harness::fleet::{
    TestFleet, borrow_files, event_field, event_name, leftover_processes, rollout_events,
};
use topologyd_harness::peers::{Roa, StayRtr, StayRtrOptions};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(60);
const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_ROLLED_BACK: Option<i32> = Some(topologyd_api::EXIT_ROLLED_BACK);

const CANARY: &str = "ams01";
const REST: &str = "fra01";
const RESOLVER_PREFIXES: [&str; 2] = ["1.1.1.0/24", "2606:4700:4700::/48"];
const FIRST_ADDED: &str = "192.0.2.0/24";
const SECOND_ADDED: &str = "198.51.100.0/24";

const PLAN: &str = r#"
[[wave]]
name = "canary"
select = "tag:canary"
bake_seconds = 2

[[wave]]
name = "rest"
bake_seconds = 1

[[gate]]
name = "origins"
kind = "rpki"
interval_ms = 200
count = 2
failure_limit = 1
inconclusive_limit = 50
"#;

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn net(text: &str) -> IpNet {
    check(text.parse(), text)
}

/// The topology: the resolver's prefixes and the `added` ones, all bound to the resolver.
fn topology(added: &[&str]) -> Vec<(&'static str, String)> {
    let mut locations = String::new();
    for (name, tags) in [(CANARY, "\"canary\""), (REST, "")] {
        locations += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"eu\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [{tags}]\nstate = \"live\"\n\n",
            name[..3].to_uppercase()
        );
    }
    let services =
        "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\n\n"
            .to_string();
    let mut prefixes = String::new();
    for cidr in RESOLVER_PREFIXES.iter().chain(added) {
        prefixes += &format!(
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"resolver\"\n\n"
        );
    }
    vec![
        ("fleet.toml", locations),
        ("services.toml", services),
        ("prefixes.toml", prefixes),
    ]
}

/// ROAs for every prefix of the test, the resolver's /24 naming `resolver_v4_asn`.
fn roas(resolver_v4_asn: u32) -> Vec<Roa> {
    vec![
        Roa::new(RESOLVER_PREFIXES[0], 24, resolver_v4_asn),
        Roa::new(RESOLVER_PREFIXES[1], 48, 13335),
        Roa::new(FIRST_ADDED, 24, 13335),
        Roa::new(SECOND_ADDED, 24, 13335),
    ]
}

/// `topoctl rpki ARGUMENTS` at `name`.
fn topoctl_rpki(fleet: &TestFleet, name: &str, arguments: &[&str]) -> String {
    let topoctl = check(fleet.topoctl(name), "a topoctl client");
    let output = check(topoctl.run("rpki", arguments), "topoctl rpki");
    assert_eq!(output.code, Some(0), "{name}: {output}");
    output.stdout
}

/// `topoctl rpki --json` at `name`, read as the typed view (a missing field fails the test).
fn rpki_view(fleet: &TestFleet, name: &str) -> RpkiView {
    check(
        serde_json::from_str(&topoctl_rpki(fleet, name, &["--json"])),
        "topoctl rpki --json is the daemon's RpkiView",
    )
}

/// Waits until every location's view is in sync and `accept` holds for it.
fn wait_for_rpki(fleet: &TestFleet, what: &str, accept: &dyn Fn(&RpkiView) -> bool) {
    let started = Instant::now();
    loop {
        let views: Vec<(&str, RpkiView)> = [CANARY, REST]
            .into_iter()
            .map(|name| (name, rpki_view(fleet, name)))
            .collect();
        if views
            .iter()
            .all(|(_, view)| view.sync == RpkiSyncState::InSync && accept(view))
        {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "{what}: not reached within {WAIT:?}: {views:#?}\n{}",
            fleet.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn state_of(view: &RpkiView, prefix: &str) -> Option<RouteRpkiState> {
    view.routes
        .iter()
        .find(|route| route.prefix == net(prefix))
        .map(|route| route.state)
}

fn start_rollout(
    fleet: &TestFleet,
    fleet_file: &str,
    state_dir: &Path,
    files: &[String],
) -> topologyd_harness::topologyd::TopoctlOutput {
    let state_dir = state_dir.display().to_string();
    let mut arguments = vec![
        "start",
        "--fleet",
        fleet_file,
        "--state-dir",
        &state_dir,
        "--json",
    ];
    arguments.extend(files.iter().map(String::as_str));
    check(
        fleet.rollout(&arguments, ROLLOUT_TIMEOUT),
        "topoctl rollout",
    )
}

fn write_topology(fleet: &TestFleet, name: &str, added: &[&str]) -> Vec<String> {
    check(
        fleet.write_topology(name, &borrow_files(&topology(added))),
        "writing a topology",
    )
    .iter()
    .map(|path| path.display().to_string())
    .collect()
}

fn gate_results<'a>(events: &'a [Value], result: &'a str) -> impl Iterator<Item = &'a Value> {
    events.iter().filter(move |event| {
        event_name(event) == "gate_result"
            && event_field(event, "gate") == "origins"
            && event_field(event, "result") == result
    })
}

#[test]
fn the_rpki_gate_promotes_valid_origins_and_rolls_back_a_wave_with_an_invalid_route() {
    let cache = check(
        StayRtr::start(&roas(13335), StayRtrOptions::default()),
        "starting StayRTR",
    );
    let rpki_section = format!(
        "\n[rpki]\ncaches = [{{ address = \"{}\", preference = 1 }}]\ninvalid_policy = \"keep\"\n",
        cache.address()
    );
    let base = topology(&[]);
    let fleet = check(
        TestFleet::start_configured(&[CANARY, REST], &borrow_files(&base), &|_, config| {
            config.extra.push_str(&rpki_section);
        }),
        "starting the fleet",
    );
    let markers = fleet.process_markers();
    wait_for_rpki(&fleet, "the resolver valid everywhere", &|view| {
        view.counts.valid == 2 && view.counts.invalid == 0
    });
    let fleet_file = check(
        fleet.write_fleet_file("fleet-rpki.toml", PLAN),
        "writing the fleet file",
    )
    .display()
    .to_string();

    // (1) Every origin valid: the gate passes in both waves and the rollout completes.
    let files = write_topology(&fleet, "topology-valid", &[FIRST_ADDED]);
    let state = check(fleet.state_dir("rollout-valid"), "a state directory");
    let output = start_rollout(&fleet, &fleet_file, &state, &files);
    assert_eq!(output.code, EXIT_COMPLETED, "{output}\n{}", fleet.report());
    let events = rollout_events(&output.stdout);
    let passing_waves: BTreeSet<&str> = gate_results(&events, "pass")
        .map(|event| event_field(event, "wave"))
        .collect();
    assert_eq!(
        passing_waves,
        BTreeSet::from(["canary", "rest"]),
        "{output}"
    );
    let passed_waves: Vec<&str> = events
        .iter()
        .filter(|event| event_name(event) == "wave_passed")
        .map(|event| event_field(event, "wave"))
        .collect();
    assert_eq!(passed_waves, ["canary", "rest"], "{output}");
    assert_eq!(gate_results(&events, "fail").count(), 0, "{output}");
    for name in [CANARY, REST] {
        let view = rpki_view(&fleet, name);
        assert!(view.enabled, "{name}: {view:?}");
        assert_eq!(view.sync, RpkiSyncState::InSync, "{name}: {view:?}");
        assert_eq!(view.cache, Some(cache.address().to_string()), "{name}");
        assert_eq!(
            (view.counts.valid, view.counts.invalid),
            (3, 0),
            "{name}: {view:?}"
        );
        assert_eq!(
            state_of(&view, FIRST_ADDED),
            Some(RouteRpkiState::Valid),
            "{name}"
        );
    }
    let generations_after_valid = check(fleet.generations(), "generations");

    // (2) The resolver's ROA now names AS4755: the route turns invalid, stays announced.
    check(cache.set_roas(&roas(4755)), "changing the ROAs");
    wait_for_rpki(&fleet, "1.1.1.0/24 invalid everywhere", &|view| {
        view.counts.invalid == 1
            && state_of(view, RESOLVER_PREFIXES[0]) == Some(RouteRpkiState::InvalidOrigin)
    });
    let view = rpki_view(&fleet, CANARY);
    let resolver = view
        .routes
        .iter()
        .find(|route| route.prefix == net(RESOLVER_PREFIXES[0]))
        .unwrap_or_else(|| panic!("no resolver route in {view:?}"));
    assert!(
        resolver.announced,
        "kept announced under `keep`: {resolver:?}"
    );
    let text = topoctl_rpki(&fleet, CANARY, &[]);
    assert!(text.starts_with("RPKI: in sync"), "{text}");
    assert!(
        text.contains("routes: 2 valid, 1 invalid, 0 not found"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|line| line.starts_with(RESOLVER_PREFIXES[0]))
        .unwrap_or_else(|| panic!("no row for the invalid route:\n{text}"));
    assert!(
        row.contains("invalid (origin)") && row.ends_with("1.1.1.0/24-24 AS4755"),
        "{row}"
    );
    assert!(
        !text.lines().any(|line| line.starts_with(FIRST_ADDED)),
        "valid routes are listed only with --all:\n{text}"
    );
    let all = topoctl_rpki(&fleet, CANARY, &["--all"]);
    assert!(
        all.lines().any(|line| line.starts_with(FIRST_ADDED)),
        "{all}"
    );

    let files = write_topology(
        &fleet,
        "topology-during-invalid",
        &[FIRST_ADDED, SECOND_ADDED],
    );
    let state = check(fleet.state_dir("rollout-invalid"), "a state directory");
    let output = start_rollout(&fleet, &fleet_file, &state, &files);
    assert_eq!(
        output.code,
        EXIT_ROLLED_BACK,
        "{output}\n{}",
        fleet.report()
    );
    let events = rollout_events(&output.stdout);
    assert_eq!(
        events.last().map(event_name),
        Some("rolled_back"),
        "{output}"
    );
    let failed: Vec<&Value> = events
        .iter()
        .filter(|event| event_name(event) == "gate_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{output}");
    assert_eq!(event_field(failed[0], "gate"), "origins", "{output}");
    assert_eq!(event_field(failed[0], "wave"), "canary", "{output}");
    let detail = event_field(failed[0], "detail");
    assert!(
        detail.contains("ams01: 1 route(s) RPKI-invalid")
            && detail.contains(
                "1.1.1.0/24 from AS13335 (origin not authorised; covered by 1.1.1.0/24-24 AS4755)"
            ),
        "the failure names the location, the route and its VRP: {detail}"
    );
    assert_eq!(gate_results(&events, "pass").count(), 0, "{output}");
    let applied: Vec<&str> = events
        .iter()
        .filter(|event| event_name(event) == "location_applied")
        .map(|event| event_field(event, "location"))
        .collect();
    assert_eq!(applied, [CANARY], "{output}");
    let generations = check(fleet.generations(), "generations");
    assert_eq!(
        generations[CANARY].hash, generations_after_valid[CANARY].hash,
        "the canary is back on the previous topology"
    );
    assert_eq!(
        generations[REST], generations_after_valid[REST],
        "fra01 never applied"
    );

    drop(fleet);
    drop(cache);
    let left = leftover_processes(&markers);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
