//! Criterion benchmark of reading a topology's files (`load.rs`), which `topoctl push`,
//! `check` and `plan` do first: files shaped like the issue-scale topology (27 MB in all: a
//! 17 MB bindings file, prefixes, services, locations and a few small customer files), read by
//! `load_sources` at once (shared among threads) against the same files read one after the
//! other, the way it worked before, measured in the same run.
//!
//! Run: `cargo bench -p topologyd-config --bench load`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use topologyd_config::load_sources;

/// The files' sizes in bytes.
const SIZES: [usize; 8] = [17 << 20, 6 << 20, 3 << 20, 1 << 20, 300, 300, 300, 300];

fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    SIZES
        .iter()
        .enumerate()
        .map(|(index, size)| {
            let path = dir.join(format!("{index}.toml"));
            let line = format!("[[binding]]\ncidr = \"10.{index}.0.0/24\"\nservice = \"web\"\n\n");
            let text: String = line.chars().cycle().take(*size).collect();
            std::fs::write(&path, text).unwrap_or_else(|error| panic!("{error}"));
            path
        })
        .collect()
}

fn load_benchmark(criterion: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("topologyd-load-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{error}"));
    let paths = files(&dir);
    let mut group = criterion.benchmark_group("load_sources_27_mb");
    group.sample_size(20);
    group.bench_function("shared_among_threads", |bench| {
        bench.iter(|| black_box(load_sources(&paths).map(|sources| sources.len())));
    });
    group.bench_function("one_after_the_other_baseline", |bench| {
        bench.iter(|| {
            // Every text kept until the last is read, as before.
            let sources: Vec<_> = paths
                .iter()
                .map(|path| load_sources(std::slice::from_ref(path)))
                .collect();
            black_box(sources.len())
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, load_benchmark);
criterion_main!(benches);
