//! Criterion benchmark of the runtime guard (`engine/runtime_guard.rs`), which runs on every
//! push: a location's 100,000 routes before and after, checked against the plan and against
//! the topology's 100,000 bindings (G1). The route lists come sorted, as the daemon makes
//! them, and the guard walks them beside the bindings; the same lists reversed make it fall
//! back to the way it worked before (a set per list, a binary search per route), measured in
//! the same run as the baseline. Both must find nothing to refuse.
//!
//! Run: `cargo bench -p topologyd --bench runtime_guard`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use topologyd::announce::LocationRoutes;
use topologyd::engine::runtime_guard;
use topologyd_topology::{Intent, Source, Topology, compile, plan};

const PREFIXES: u32 = 100_000;

fn topology() -> Topology {
    let mut text = String::from(
        "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n\n\
         [[location]]\nname = \"fra01\"\nregion = \"eu\"\nmetro = \"FRA\"\ncountry = \"DE\"\nstate = \"live\"\n\n\
         [[service]]\nname = \"web\"\ntopology = \"all\"\n\n",
    );
    for index in 0..PREFIXES {
        let cidr = format!(
            "{}.{}.{}.0/24",
            10 + (index >> 16),
            (index >> 8) & 0xff,
            index & 0xff
        );
        let _ = write!(
            text,
            "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"us\"\nadvertise = true\n\n\
             [[binding]]\ncidr = \"{cidr}\"\nservice = \"web\"\n\n"
        );
    }
    compile(&[Source::new("bench.toml", text)], 1).unwrap_or_else(|error| panic!("{error}"))
}

fn runtime_guard_benchmark(criterion: &mut Criterion) {
    let topology = topology();
    let desired = topology
        .desired("ams01")
        .unwrap_or_else(|error| panic!("{error}"));
    let sorted = LocationRoutes::from_desired(1, &desired);
    assert_eq!(sorted.routes.len(), PREFIXES as usize);
    let mut reversed = sorted.clone();
    Arc::make_mut(&mut reversed.routes).reverse();
    let plan = plan(&topology, &topology, &Intent::default());
    let mut group = criterion.benchmark_group("runtime_guard_100k_routes");
    group.sample_size(20);
    group.bench_function("sorted_walked", |bench| {
        bench.iter(|| {
            let verdict = runtime_guard(&plan, "ams01", &sorted, &sorted, &topology);
            assert!(verdict.is_ok());
            black_box(verdict)
        });
    });
    group.bench_function("unsorted_searched_baseline", |bench| {
        bench.iter(|| {
            let verdict = runtime_guard(&plan, "ams01", &reversed, &reversed, &topology);
            assert!(verdict.is_ok());
            black_box(verdict)
        });
    });
    group.finish();
}

criterion_group!(benches, runtime_guard_benchmark);
criterion_main!(benches);
