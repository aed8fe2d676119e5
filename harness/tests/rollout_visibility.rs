//! End to end: the `visibility` rollout gate against two real `topologyd` instances, each
//! peering with its own real BIRD 2 (harness: `src/fleet/`), both with a BMP station (`[bmp]`).
//! ams01 (tag `bmp`) also peers with a real FRR 8.4 `bgpd -M bmp`, its edge router, which
//! streams its pre- and post-policy Adj-RIB-In to ams01's station; no router ever connects to
//! fra01's station (tag `quiet`). The topology is IPv4 only (the edge monitors IPv4 unicast): the
//! resolver's 1.1.1.0/24, plus the prefixes each push adds. The gate `held` runs in the canary
//! wave only, every 300 ms, two passes needed, one failure fails it. Its first evaluations may be
//! inconclusive ("not yet": the station, at low priority, still judges the previous generation,
//! or the new route has not been held for the station's settle time of 6 s yet), never after
//! the first pass or fail; a route FRR does not hold yet only fails once settled, so a loaded
//! machine where FRR takes a moment to take the route does not fail the gate.
//!
//! One fleet, three pushes (`topoctl rollout start … --json`), in order:
//! - (1) canary ams01 then rest fra01, adding 192.0.2.0/24: FRR holds it post-policy, the gate
//!   passes in the canary wave, the rollout completes (exit 0); every daemon runs the new
//!   topology, both BIRDs hold the new route and the station says FRR holds it.
//! - (2) the same waves, adding 198.51.100.0/24, which FRR's import route-map drops from every
//!   neighbor: FRR receives it (its soft-reconfiguration copy holds it) and denies it (its
//!   table never does), the gate fails in the canary wave naming ams01, the route and FRR, and
//!   the rollout rolls back by itself (exit 7): ams01 runs the topology of (1) again, its BIRD
//!   no longer holds 198.51.100.0/24, fra01 never applied.
//! - (3) canary fra01 (its station has no router) then rest ams01, adding 203.0.113.0/24: the
//!   gate is inconclusive ("no router is connected"), never passes, and the rollout pauses
//!   after `inconclusive_limit` (3) evaluations (`--exit-on-pause`: exit 8); ams01 never
//!   applied.
//!
//! Afterwards no process the test started (FRR included) is left (checked through `/proc`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;
use topologyd_harness::fleet::{
    Generation, TestFleet, borrow_files, event_field, event_name, leftover_processes,
    rollout_events,
};
use topologyd_harness::peers::{EdgeNeighbor, FrrEdge, FrrEdgeSpec, alloc};
use topologyd_harness::topologyd::{NeighborConfig, TopoctlOutput};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);

/// Exit codes of `topoctl rollout` (docs/rollouts.md).
const EXIT_COMPLETED: Option<i32> = Some(0);
const EXIT_ROLLED_BACK: Option<i32> = Some(topologyd_api::EXIT_ROLLED_BACK);
const EXIT_PAUSED: Option<i32> = Some(8);

/// The location with an edge router streaming BMP, and the one whose station has none.
const WATCHED: &str = "ams01";
const QUIET: &str = "fra01";
const EDGE_NAME: &str = "edge-frr";
const EDGE_ASN: u32 = 64500;
const RESOLVER: &str = "1.1.1.0/24";
const HELD_ADDED: &str = "192.0.2.0/24";
const FILTERED_ADDED: &str = "198.51.100.0/24";
const UNSEEN_ADDED: &str = "203.0.113.0/24";
/// The stations' `[bmp] settle_seconds`: how long a route not held is "not settled yet" for
/// the gate before it fails it.
const SETTLE_SECONDS: u32 = 6;

/// Waves canary (`tag:CANARY_TAG`) then rest, and the `held` visibility gate in the canary wave.
fn plan(canary_tag: &str, inconclusive_limit: u32) -> String {
    format!(
        r#"
[[wave]]
name = "canary"
select = "tag:{canary_tag}"
bake_seconds = 1

[[wave]]
name = "rest"
bake_seconds = 1

[[gate]]
name = "held"
kind = "visibility"
routers = 1
interval_ms = 300
count = 2
failure_limit = 1
inconclusive_limit = {inconclusive_limit}
waves = ["canary"]
"#
    )
}

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn net(text: &str) -> IpNet {
    check(text.parse(), text)
}

/// The topology: the resolver's /24 and the `added` prefixes, all bound to the resolver.
fn topology(added: &[&str]) -> Vec<(&'static str, String)> {
    let mut locations = String::new();
    for (name, tag) in [(WATCHED, "bmp"), (QUIET, "quiet")] {
        locations += &format!(
            "[[location]]\nname = \"{name}\"\nregion = \"eu\"\nmetro = \"{}\"\ncountry = \"XX\"\ntags = [\"{tag}\"]\nstate = \"live\"\n\n",
            name[..3].to_uppercase()
        );
    }
    let services =
        "[[service]]\nname = \"resolver\"\nlifecycle = \"active\"\ntopology = \"all\"\n\n"
            .to_string();
    let mut prefixes = String::new();
    for cidr in std::iter::once(&RESOLVER).chain(added) {
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

/// The fleet, ams01's edge router, and the fleet files of the pushes.
struct Setup {
    fleet: TestFleet,
    edge: FrrEdge,
    /// Canary ams01 (60 inconclusive evaluations in a row pause: 18 s, well over the settle
    /// time a filtered route waits out before it fails).
    watched_first: String,
    /// Canary fra01 (3 inconclusive evaluations in a row pause).
    quiet_first: String,
}

/// Starts the fleet (both daemons with a station; ams01 with FRR as a second neighbor), then
/// FRR, and waits until ams01's station sees FRR synchronised and holding the resolver.
fn start() -> Setup {
    let edge_address = alloc::loopback_v4();
    let edge_listen = SocketAddr::new(
        IpAddr::V4(edge_address),
        alloc::free_port(IpAddr::V4(edge_address)),
    );
    let stations: BTreeMap<&str, SocketAddr> = [WATCHED, QUIET]
        .into_iter()
        .map(|name| {
            let address = alloc::loopback_v4();
            let station =
                SocketAddr::new(IpAddr::V4(address), alloc::free_port(IpAddr::V4(address)));
            (name, station)
        })
        .collect();
    let base = topology(&[]);
    let fleet = check(
        TestFleet::start_configured(&[WATCHED, QUIET], &borrow_files(&base), &|name, config| {
            config.extra.push_str(&format!(
                "\n[bmp]\nlisten = [\"{}\"]\nallow = [\"127.0.0.0/8\"]\nsettle_seconds = {SETTLE_SECONDS}\n",
                stations[name]
            ));
            if name == WATCHED {
                let mut neighbor = NeighborConfig::new(EDGE_NAME, edge_listen, EDGE_ASN);
                neighbor.families = vec!["ipv4"];
                config.neighbors.push(neighbor);
            }
        }),
        "starting the fleet",
    );
    let watched = check(fleet.location(WATCHED), "ams01");
    let edge = check(
        FrrEdge::start(FrrEdgeSpec {
            hostname: EDGE_NAME.into(),
            asn: EDGE_ASN,
            router_id: edge_address,
            listen: edge_listen,
            neighbors: vec![EdgeNeighbor {
                address: watched.daemon.config.local,
                asn: topologyd_harness::fleet::LOCAL_ASN,
            }],
            station: stations[WATCHED],
        }),
        "starting FRR with BMP",
    );
    let setup = Setup {
        watched_first: write_fleet_file(&fleet, "fleet-watched-first.toml", &plan("bmp", 60)),
        quiet_first: write_fleet_file(&fleet, "fleet-quiet-first.toml", &plan("quiet", 3)),
        fleet,
        edge,
    };
    setup.wait_view("FRR synchronised and holding the resolver", |holds| {
        holds.synchronised && holds.held == [RESOLVER] && holds.missing.is_empty()
    });
    setup
}

fn write_fleet_file(fleet: &TestFleet, name: &str, plan: &str) -> String {
    check(fleet.write_fleet_file(name, plan), "writing a fleet file")
        .display()
        .to_string()
}

/// What ams01's station says its one router holds of ams01's routes.
#[derive(Debug, Default)]
struct Holds {
    routers: usize,
    synchronised: bool,
    held: Vec<String>,
    missing: Vec<String>,
}

fn strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|entry| entry.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    list
}

impl Setup {
    /// `topoctl visibility` at ams01, read for its one router.
    fn holds(&self) -> Result<Holds, String> {
        let topoctl = self.fleet.topoctl(WATCHED).map_err(|e| e.to_string())?;
        let output = topoctl
            .run("visibility", &[] as &[&str])
            .map_err(|error| error.to_string())?;
        let view = output.json()?;
        let routers = view["held"].as_array().cloned().unwrap_or_default();
        let Some(router) = routers.first() else {
            return Ok(Holds::default());
        };
        Ok(Holds {
            routers: routers.len(),
            synchronised: router["synchronised"] == Value::Bool(true),
            held: strings(&router["held"]),
            missing: strings(&router["missing"]),
        })
    }

    fn wait_view(&self, what: &str, accept: impl Fn(&Holds) -> bool) {
        let started = Instant::now();
        loop {
            let holds = self.holds();
            if holds
                .as_ref()
                .is_ok_and(|holds| holds.routers == 1 && accept(holds))
            {
                return;
            }
            assert!(
                started.elapsed() < WAIT,
                "{what}: not reached within {WAIT:?}: {holds:?}\n--- FRR\n{}\n{}",
                self.edge.log_tail(),
                self.fleet.report()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn write_topology(&self, name: &str, added: &[&str]) -> Vec<String> {
        check(
            self.fleet
                .write_topology(name, &borrow_files(&topology(added))),
            "writing a topology",
        )
        .iter()
        .map(|path| path.display().to_string())
        .collect()
    }

    fn rollout(&self, fleet_file: &str, state: &str, added: &[&str]) -> TopoctlOutput {
        let files = self.write_topology(&format!("topology-{state}"), added);
        let state_dir = check(self.fleet.state_dir(state), "a state directory")
            .display()
            .to_string();
        let mut arguments = vec![
            "start",
            "--fleet",
            fleet_file,
            "--state-dir",
            &state_dir,
            "--json",
            "--exit-on-pause",
        ];
        arguments.extend(files.iter().map(String::as_str));
        let started = Instant::now();
        let output = check(
            self.fleet.rollout(&arguments, ROLLOUT_TIMEOUT),
            "topoctl rollout",
        );
        eprintln!(
            "[{state}] exit {:?} after {:.1?}",
            output.code,
            started.elapsed()
        );
        output
    }

    /// Waits until the BIRD of every location in `names` holds exactly `prefixes`.
    fn wait_for_birds(&self, names: &[&str], prefixes: &[&str]) {
        let wanted: BTreeSet<IpNet> = prefixes.iter().map(|text| net(text)).collect();
        let result =
            self.fleet
                .wait_for_birds(names, &format!("exactly {prefixes:?}"), WAIT, |_, held| {
                    *held == wanted
                });
        check(result, "the BIRDs' routes");
    }

    fn generations(&self) -> BTreeMap<String, Generation> {
        check(self.fleet.generations(), "generations")
    }
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|event| event_name(event) == name)
        .collect()
}

fn fields<'a>(events: &'a [Value], name: &str, field: &str) -> Vec<&'a str> {
    named(events, name)
        .into_iter()
        .map(|event| event_field(event, field))
        .collect()
}

fn gate_results<'a>(events: &'a [Value], result: &str) -> Vec<&'a Value> {
    named(events, "gate_result")
        .into_iter()
        .filter(|event| {
            event_field(event, "gate") == "held" && event_field(event, "result") == result
        })
        .collect()
}

/// Whether an inconclusive detail says "not yet": the station still judges the previous
/// generation, or a route not held has not had the settle time yet, or a router is still
/// synchronising.
fn not_yet(detail: &str) -> bool {
    detail.contains("its station has not caught up")
        || detail.contains("does not say which generation it judges")
        || detail.contains("not settled yet")
        || detail.contains("not synchronised with us yet")
}

/// Any inconclusive evaluations of the gate are "not yet" ones, and all come before its first
/// judged (pass or fail) one: once the station judged the new routes, it never goes back.
fn not_yet_only_first(events: &[Value], output: &TopoctlOutput) {
    let results: Vec<(&str, &str)> = named(events, "gate_result")
        .into_iter()
        .filter(|event| event_field(event, "gate") == "held")
        .map(|event| (event_field(event, "result"), event_field(event, "detail")))
        .collect();
    let judged = results
        .iter()
        .position(|(result, _)| *result != "inconclusive")
        .unwrap_or(results.len());
    assert!(judged < results.len(), "no judged result: {output}");
    for (result, detail) in &results[judged..] {
        assert_ne!(*result, "inconclusive", "{detail}\n{output}");
    }
    for (_, detail) in &results[..judged] {
        assert!(
            detail.starts_with(&format!("{WATCHED}: ")) && not_yet(detail),
            "an inconclusive result that is not a \"not yet\": {detail}\n{output}"
        );
    }
}

/// (1) FRR holds the new route post-policy: the gate passes, the rollout completes.
fn held_route_passes(setup: &Setup) {
    let output = setup.rollout(&setup.watched_first, "held", &[HELD_ADDED]);
    assert_eq!(
        output.code,
        EXIT_COMPLETED,
        "{output}\n{}",
        setup.fleet.report()
    );
    let events = rollout_events(&output.stdout);
    assert_eq!(
        fields(&events, "wave_passed", "wave"),
        ["canary", "rest"],
        "{output}"
    );
    let passes = gate_results(&events, "pass");
    assert!(passes.len() >= 2, "{output}");
    assert!(
        passes
            .iter()
            .all(|event| event_field(event, "wave") == "canary"),
        "the gate runs in the canary wave only: {output}"
    );
    assert!(gate_results(&events, "fail").is_empty(), "{output}");
    not_yet_only_first(&events, &output);
    setup.wait_for_birds(&[WATCHED, QUIET], &[RESOLVER, HELD_ADDED]);
    setup.wait_view("FRR holds the new route", |holds| {
        holds.held.contains(&HELD_ADDED.to_string()) && holds.missing.is_empty()
    });
}

/// What FRR showed of the filtered route while the rollout ran.
#[derive(Debug, Default)]
struct Denial {
    /// In its soft-reconfiguration copy of what ams01 sent, and not in its table, at once.
    received_and_denied: bool,
    /// In its table at some point (its import policy let it through).
    accepted: bool,
}

/// Polls FRR until `stop`: whether it received the filtered route from `neighbor` (pre-policy,
/// kept by `soft-reconfiguration inbound`) while its table (post-policy) did not hold it.
fn watch_denial(setup: &Setup, neighbor: IpAddr, stop: &AtomicBool) -> Denial {
    let quoted = format!("\"{FILTERED_ADDED}\"");
    let received = format!("show bgp ipv4 unicast neighbors {neighbor} received-routes json");
    let mut denial = Denial::default();
    while !stop.load(Ordering::Relaxed) {
        let sent = setup.edge.vtysh(&[received.as_str()]);
        let table = setup.edge.vtysh(&["show bgp ipv4 unicast json"]);
        if let (Ok(sent), Ok(table)) = (sent, table) {
            let held = table.contains(&quoted);
            denial.accepted |= held;
            denial.received_and_denied |= sent.contains(&quoted) && !held;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    denial
}

/// (2) FRR's import policy drops the new route: the gate fails naming it and FRR, the rollout
/// rolls back by itself.
fn filtered_route_rolls_back(setup: &mut Setup) {
    check(
        setup.edge.block_imports(&[net(FILTERED_ADDED)]),
        "filtering the new route on FRR",
    );
    let before = setup.generations();
    let neighbor = check(setup.fleet.location(WATCHED), "ams01")
        .daemon
        .config
        .local
        .ip();
    let stop = AtomicBool::new(false);
    let shared: &Setup = setup;
    let (output, frr) = std::thread::scope(|scope| {
        let watch = scope.spawn(|| watch_denial(shared, neighbor, &stop));
        let output = shared.rollout(
            &shared.watched_first,
            "filtered",
            &[HELD_ADDED, FILTERED_ADDED],
        );
        stop.store(true, Ordering::Relaxed);
        let frr = watch.join();
        (output, frr)
    });
    let frr = frr.unwrap_or_else(|_| panic!("watching FRR panicked"));
    assert!(
        frr.received_and_denied && !frr.accepted,
        "FRR received {FILTERED_ADDED} from ams01 and its import policy denied it: {frr:?}\n{}",
        setup.edge.log_tail()
    );
    assert_eq!(
        output.code,
        EXIT_ROLLED_BACK,
        "{output}\n{}",
        setup.fleet.report()
    );
    let events = rollout_events(&output.stdout);
    assert_eq!(
        events.last().map(event_name),
        Some("rolled_back"),
        "{output}"
    );
    let failed = named(&events, "gate_failed");
    assert_eq!(failed.len(), 1, "{output}");
    assert_eq!(gate_results(&events, "fail").len(), 1, "{output}");
    not_yet_only_first(&events, &output);
    assert_eq!(event_field(failed[0], "gate"), "held", "{output}");
    assert_eq!(event_field(failed[0], "wave"), "canary", "{output}");
    let detail = event_field(failed[0], "detail");
    assert!(
        detail.starts_with(&format!("{WATCHED}: 1 route(s) not held post-policy"))
            && detail.contains(&format!("{FILTERED_ADDED} (not held by {EDGE_NAME} ("))
            && !detail.contains(HELD_ADDED),
        "the failure names the location, the route and the router: {detail}"
    );
    assert!(gate_results(&events, "pass").is_empty(), "{output}");
    assert_eq!(
        fields(&events, "location_applied", "location"),
        [WATCHED],
        "{output}"
    );
    assert!(named(&events, "wave_passed").is_empty(), "{output}");
    let after = setup.generations();
    assert_eq!(
        after[WATCHED].hash, before[WATCHED].hash,
        "ams01 runs the previous topology"
    );
    assert!(
        after[WATCHED].number > before[WATCHED].number,
        "ams01 applied, then rolled back"
    );
    assert_eq!(after[QUIET], before[QUIET], "fra01 never applied");
    // The new route withdrawn again, the previous ones still announced.
    setup.wait_for_birds(&[WATCHED, QUIET], &[RESOLVER, HELD_ADDED]);
    check(setup.edge.block_imports(&[]), "lifting the filter");
}

/// (3) The canary's station has no router: the gate never passes, the rollout pauses in the
/// canary wave.
fn no_router_never_passes(setup: &Setup) {
    let before = setup.generations();
    let output = setup.rollout(&setup.quiet_first, "unseen", &[HELD_ADDED, UNSEEN_ADDED]);
    assert_eq!(
        output.code,
        EXIT_PAUSED,
        "{output}\n{}",
        setup.fleet.report()
    );
    let events = rollout_events(&output.stdout);
    assert!(gate_results(&events, "pass").is_empty(), "{output}");
    assert!(gate_results(&events, "fail").is_empty(), "{output}");
    let unsure = gate_results(&events, "inconclusive");
    assert_eq!(unsure.len(), 3, "{output}");
    for event in unsure {
        assert!(
            event_field(event, "detail").contains(&format!(
                "{QUIET}: no router is connected to the BMP station"
            )),
            "{event}"
        );
    }
    let paused = fields(&events, "paused", "reason");
    assert_eq!(paused.len(), 1, "{output}");
    assert!(
        paused[0].contains("held"),
        "the reason names the gate: {}",
        paused[0]
    );
    assert_eq!(
        fields(&events, "location_applied", "location"),
        [QUIET],
        "{output}"
    );
    assert!(named(&events, "wave_passed").is_empty(), "{output}");
    let after = setup.generations();
    assert_eq!(after[WATCHED], before[WATCHED], "ams01 never applied");
    setup.wait_for_birds(&[WATCHED], &[RESOLVER, HELD_ADDED]);
}

#[test]
fn the_visibility_gate_passes_held_routes_rolls_back_filtered_ones_and_never_passes_without_data() {
    let started = Instant::now();
    let mut setup = start();
    let mut markers = setup.fleet.process_markers();
    markers.push(setup.edge.directory().display().to_string());
    eprintln!("[setup] ready after {:.1?}", started.elapsed());
    held_route_passes(&setup);
    filtered_route_rolls_back(&mut setup);
    no_router_never_passes(&setup);
    let Setup { fleet, edge, .. } = setup;
    drop(fleet);
    drop(edge);
    let left = leftover_processes(&markers);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    eprintln!("[total] {:.1?}", started.elapsed());
}
