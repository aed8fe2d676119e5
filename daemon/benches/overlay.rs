//! Criterion benchmarks of the health overlay (`overlay::decide` + `overlay::apply`) at scale,
//! against a baseline measured in the same run: `LocationRoutes::from_desired`, the step that
//! builds the routes the overlay filters (what every new generation costs anyway).
//!
//! The workload is generated here, not by the suite's `src/synth.rs`: that generator lives in the
//! root package, which depends on this crate's siblings and must not become a dependency of the
//! daemon, and its services have no health checks. Here: 20 services announced at every
//! location (two live locations, so the floor lets one withdraw), each bound to its share of
//! prefixes split into routes (IPv4 /16s split into /24s, IPv6 /40s into /48s: 256 routes each),
//! every service health-checked; even services withdraw when unhealthy, odd ones degrade.
//!
//! Run: `cargo bench -p topologyd --bench overlay`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use topologyd::announce::LocationRoutes;
use topologyd::overlay::{self, OverlayInput, ServiceAction};
use topologyd::state_store::DrainState;
use topologyd_config::Source;
use topologyd_topology::{Topology, compile_owned};

const SERVICES: usize = 20;
/// Routes per onboarded prefix (/16 split into /24, /40 into /48).
const ROUTES_PER_PREFIX: usize = 256;
/// The location measured; `fra01` is the other live location.
const LOCATION: &str = "ams01";
/// Route counts benchmarked (rounded down to whole prefixes).
const SIZES: [usize; 2] = [100_000, 1_000_000];

const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"

[[location]]
name = "fra01"
region = "eu"
metro = "FRA"
country = "DE"
state = "live"
"#;

fn service_name(index: usize) -> String {
    format!("svc{index:02}")
}

fn services() -> String {
    let mut out = String::new();
    for index in 0..SERVICES {
        let on_unhealthy = if index % 2 == 0 {
            "on_unhealthy = \"withdraw\"\n"
        } else {
            "on_unhealthy = \"degrade\"\ndegrade = { as_path_prepend = 3, med = 1000, communities = [\"64500:666\"] }\n"
        };
        let _ = write!(
            out,
            "[[service]]\nname = \"{}\"\ntopology = \"all\"\ncommunities = [\"64500:{index}\"]\nmed = {index}\n[service.health]\n{on_unhealthy}[[service.health.check]]\nkind = \"tcp\"\naddress = \"127.0.0.1:{}\"\n\n",
            service_name(index),
            8000 + index
        );
    }
    out
}

/// `count` prefixes, three quarters IPv4 /16 from 11.0.0.0, one quarter IPv6 /40 under
/// 3fff::/20, bound round-robin to the services.
fn prefixes(count: usize) -> String {
    let mut out = String::with_capacity(count * 160);
    for index in 0..count {
        let (cidr, split) = if index % 4 != 3 {
            let n = (index / 4) * 3 + index % 4;
            let base = (11u32 << 24) + ((n as u32) << 16);
            let bytes = base.to_be_bytes();
            (format!("{}.{}.0.0/16", bytes[0], bytes[1]), 24)
        } else {
            let n = index / 4;
            (format!("3fff:{:x}:{:x}00::/40", n >> 8, n & 0xff), 48)
        };
        let _ = write!(
            out,
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 64500\nowner = \"customer-{}\"\nadvertise = true\nannounce = {{ split = {split} }}\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"{}\"\n\n",
            index % 50,
            service_name(index % SERVICES)
        );
    }
    out
}

fn topology(routes: usize) -> Topology {
    let sources = vec![
        Source::new("fleet.toml", FLEET),
        Source::new("services.toml", services()),
        Source::new("prefixes.toml", prefixes(routes / ROUTES_PER_PREFIX)),
    ];
    match compile_owned(sources, 1) {
        Ok(topology) => topology,
        Err(diagnostics) => panic!("the generated topology must compile: {diagnostics}"),
    }
}

fn health(unhealthy: Option<usize>) -> BTreeMap<String, bool> {
    (0..SERVICES)
        .map(|index| (service_name(index), Some(index) != unhealthy))
        .collect()
}

fn decide_and_apply(
    topology: &Topology,
    base: &LocationRoutes,
    health: &BTreeMap<String, bool>,
    drains: &DrainState,
) -> LocationRoutes {
    let decisions = overlay::decide(&OverlayInput {
        topology,
        location: LOCATION,
        health,
        drains,
        min_other_locations: 1,
    });
    overlay::apply(base, topology, &decisions, 2)
}

fn bench(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("health_overlay");
    group.sample_size(10);
    let drains = DrainState::default();
    // Service 0 withdraws when unhealthy, service 1 degrades.
    // (name, verdicts, services withdrawn and degraded).
    let cases = [
        ("decide_apply_all_healthy", health(None), (0, 0)),
        ("decide_apply_1_of_20_withdrawn", health(Some(0)), (1, 0)),
        ("decide_apply_1_of_20_degraded", health(Some(1)), (0, 1)),
    ];
    for size in SIZES {
        let started = Instant::now();
        let topology = topology(size);
        let compiled = started.elapsed();
        let desired = match topology.desired(LOCATION) {
            Ok(desired) => desired,
            Err(error) => panic!("{error}"),
        };
        let base = LocationRoutes::from_desired(1, &desired);
        for (name, health, expected) in &cases {
            let published = decide_and_apply(&topology, &base, health, &drains);
            let decisions = overlay::decide(&OverlayInput {
                topology: &topology,
                location: LOCATION,
                health,
                drains: &drains,
                min_other_locations: 1,
            });
            let count = |action| {
                decisions
                    .values()
                    .filter(|decision| decision.action == action)
                    .count()
            };
            assert_eq!(
                (
                    count(ServiceAction::Withdraw),
                    count(ServiceAction::Degrade)
                ),
                *expected,
                "{name}"
            );
            eprintln!(
                "{size}: {name}: {} of {} routes published, {} attribute sets",
                published.routes.len(),
                base.routes.len(),
                published.intents.len()
            );
        }
        eprintln!(
            "{size}: {} routes at {LOCATION}, compiled in {compiled:?}",
            base.routes.len()
        );

        group.measurement_time(Duration::from_secs(if size >= 1_000_000 { 10 } else { 5 }));
        group.bench_with_input(
            BenchmarkId::new("baseline_from_desired", size),
            &desired,
            |bencher, desired| {
                bencher.iter(|| black_box(LocationRoutes::from_desired(1, black_box(desired))));
            },
        );
        for (name, health, _) in &cases {
            group.bench_with_input(BenchmarkId::new(*name, size), health, |bencher, health| {
                bencher.iter(|| {
                    black_box(decide_and_apply(
                        &topology,
                        black_box(&base),
                        health,
                        &drains,
                    ))
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
