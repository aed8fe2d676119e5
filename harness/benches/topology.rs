//! Criterion benchmarks of the topology engine at the issue's scale: 500 locations, 2,000
//! services, 100,000 prefixes and 300,000 bindings (and the growth to 1,000,000 bindings).
//!
//! Each group carries its own baseline measured in the same run: parsing the same TOML text
//! into an untyped `toml::Table` (what any TOML-based compiler must pay at least), so the
//! figures can be read as ratios on this shared, noisy machine. Peak memory is measured by
//! `benches/topology_scale.sh` (one process per size), not here.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use topologyd_config::Source;
use topologyd_harness::synth::{SynthSpec, generate, generate_with_changes};
use topologyd_topology::{Intent, Topology, compile, compile_owned, plan};

fn sources(files: Vec<topologyd_harness::synth::SynthFile>) -> Vec<Source> {
    files
        .into_iter()
        .map(|file| Source::new(file.name, file.text))
        .collect()
}

fn every_location_desired(topology: &Topology) -> usize {
    topology
        .locations()
        .iter()
        .map(|location| {
            topology
                .desired(&location.name)
                .map_or(0, |routes| routes.len())
        })
        .sum()
}

fn compile_full(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for bindings in [100_000usize, 300_000, 1_000_000] {
        let spec = SynthSpec::with_bindings(bindings);
        let spec = if bindings == 300_000 {
            SynthSpec::ISSUE_SCALE
        } else {
            spec
        };
        let sources = sources(generate(&spec));
        group.bench_with_input(
            BenchmarkId::new("baseline_toml_parse", bindings),
            &sources,
            |bencher, sources| {
                bencher.iter(|| {
                    for source in sources {
                        let table: toml::Table = source.text.parse().unwrap_or_default();
                        black_box(table);
                    }
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("compile_and_desired_everywhere", bindings),
            &sources,
            |bencher, sources| {
                bencher.iter(|| {
                    let topology =
                        compile(black_box(sources), 1).map_err(|error| error.to_string());
                    // The hash too: it is computed beside the compile, which does not wait.
                    black_box(
                        topology
                            .map(|topology| (topology.hash(), every_location_desired(&topology))),
                    )
                });
            },
        );
    }
    group.finish();
}

fn plan_one_percent(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("plan");
    group.sample_size(10);
    let spec = SynthSpec::ISSUE_SCALE;
    let (Ok(old), Ok(new)) = (
        compile_owned(sources(generate(&spec)), 1),
        compile_owned(sources(generate_with_changes(&spec, 10)), 2),
    ) else {
        panic!("the synthetic topology must compile");
    };
    let intent = Intent::default();
    group.bench_function("plan_1_percent_of_300k_bindings", |bencher| {
        bencher.iter(|| black_box(plan(black_box(&old), black_box(&new), &intent)));
    });
    group.bench_function("baseline_plan_identical", |bencher| {
        bencher.iter(|| black_box(plan(black_box(&old), black_box(&old), &intent)));
    });
    group.finish();
}

criterion_group!(benches, compile_full, plan_one_percent);
criterion_main!(benches);
