//! Scale smoke test (ignored by default; run with
//! `cargo test --release -p topologyd-topology --test scale -- --ignored --nocapture`):
//! the issue's size — 500 locations, 2,000 services, 100,000 prefixes, 300,000 bindings —
//! compiled from TOML text, then every location's desired routes and a plan of a 1 % change.
//! The criterion benchmarks under benches/ are the measurement of record.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::time::Instant;

use topologyd_topology::{Intent, Source, compile, plan};

fn generate(
    locations: usize,
    services: usize,
    prefixes: usize,
    bindings: usize,
    moved_every: usize,
) -> Vec<Source> {
    let mut fleet = String::new();
    for index in 0..locations {
        let _ = write!(
            fleet,
            "[[location]]\nname = \"loc{index:04}\"\nregion = \"region-{:02}\"\nmetro = \"M{:03}\"\ncountry = \"C{:02}\"\ntags = [\"{}\"]\nstate = \"live\"\n\n",
            index % 12,
            index / 3,
            index % 40,
            if index % 7 == 0 { "canary" } else { "edge" }
        );
    }
    let mut service_text = String::new();
    for index in 0..services {
        let topology = if index % 10 == 0 {
            "all".to_string()
        } else {
            format!(
                "region in [\\\"region-{:02}\\\", \\\"region-{:02}\\\"] and not tag = \\\"canary\\\"",
                index % 12,
                (index + 1) % 12
            )
        };
        let _ = write!(
            service_text,
            "[[service]]\nname = \"svc{index:04}\"\nlifecycle = \"active\"\ntopology = \"{topology}\"\ncommunities = [\"64500:{}\"]\nmed = {}\n\n",
            index % 65_000,
            index % 100
        );
    }
    let cidr = |index: usize| -> (String, bool) {
        if index % 4 != 3 {
            let base: u32 = (11 << 24) + ((index as u32) << 8);
            let bytes = base.to_be_bytes();
            (format!("{}.{}.{}.0/24", bytes[0], bytes[1], bytes[2]), true)
        } else {
            (
                format!("2001:{:x}:{:x}::/48", 0xdb8 + (index >> 16), index & 0xffff),
                false,
            )
        }
    };
    let mut prefix_text = String::new();
    let mut binding_text = String::new();
    for index in 0..prefixes {
        let (network, _) = cidr(index);
        let _ = write!(
            prefix_text,
            "[[prefix]]\ncidr = \"{network}\"\norigin_asn = 64500\nowner = \"customer-{}\"\nadvertise = true\n\n",
            index % 5_000
        );
        let _ = write!(
            binding_text,
            "[[binding]]\ncidr = \"{network}\"\nservice = \"svc{:04}\"\n\n",
            index % services
        );
    }
    for extra in 0..bindings.saturating_sub(prefixes) {
        let prefix_index = extra % prefixes;
        let which = extra / prefixes;
        let (network, v4) = cidr(prefix_index);
        let layered = if v4 {
            format!(
                "{}.{}/28",
                network.trim_end_matches(".0/24"),
                (which % 16) * 16
            )
        } else {
            format!("{}:{:x}::/64", network.trim_end_matches("::/48"), which)
        };
        let mut global = (extra * 7 + which) % (services / 10);
        if moved_every > 0 && extra % moved_every == 0 {
            global = (global + 1) % (services / 10);
        }
        let _ = write!(
            binding_text,
            "[[binding]]\ncidr = \"{layered}\"\nservice = \"svc{:04}\"\n\n",
            global * 10
        );
    }
    vec![
        Source::new("fleet.toml", fleet),
        Source::new("services.toml", service_text),
        Source::new("prefixes.toml", prefix_text),
        Source::new("bindings.toml", binding_text),
    ]
}

#[test]
#[ignore = "scale run; use --release --ignored"]
fn issue_scale_compile_desired_and_plan() {
    let sources = generate(500, 2_000, 100_000, 300_000, 0);
    let bytes: usize = sources.iter().map(|source| source.text.len()).sum();
    let started = Instant::now();
    let parsed = topologyd_config::parse_topology_sources_owned(sources).unwrap();
    let parse_time = started.elapsed();
    let old = topologyd_topology::compile_raw(parsed, 1).unwrap();
    let compile_time = started.elapsed();
    let mut routes = 0;
    for location in old.locations() {
        routes += old.desired(&location.name).unwrap().len();
    }
    let total = started.elapsed();
    println!(
        "{bytes} bytes: parse {parse_time:?}, +validate/trie {:?}, +desired for every location {:?} ({routes} location routes); total {total:?}",
        compile_time - parse_time,
        total - compile_time
    );
    let new = compile(generate(500, 2_000, 100_000, 300_000, 100), 2).unwrap();
    let started = Instant::now();
    let result = plan(&old, &new, &Intent::default());
    println!(
        "plan of a 1% change: {:?}, {} route changes, {} binding changes, verdict {}",
        started.elapsed(),
        result.changes.len(),
        result.binding_changes.len(),
        result.verdict()
    );
}

#[test]
#[ignore = "scale run; use --release --ignored"]
fn one_million_bindings() {
    let sources = generate(500, 2_000, 333_333, 1_000_000, 0);
    let started = Instant::now();
    let topology = compile(sources, 1).unwrap();
    let compiled = started.elapsed();
    let routes: usize = topology
        .locations()
        .iter()
        .map(|location| topology.desired(&location.name).unwrap().len())
        .sum();
    println!(
        "1,000,000 bindings: compile {compiled:?}, + every location's desired set {:?} ({routes} location routes)",
        started.elapsed() - compiled
    );
}
