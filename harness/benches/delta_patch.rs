//! Delta pushes with edits (`cargo bench -p topologyd-harness --bench delta_patch`): the 1 %
//! change of the synthetic 300,000-binding topology (`SynthSpec::ISSUE_SCALE`, 3,000 bindings
//! moved to other services across its 17.4 MB bindings file):
//!
//! - `topoctl`'s side: the edits between the running text and the new one (`edits_between`);
//! - the daemon's side: the request body parsed, carrying the file as edits, then the edits
//!   applied to the running text and the result hashed (on a second thread, from its pieces:
//!   what a resolution does before it checks the digest listed); the baseline, measured in the
//!   same run, is the same body carrying the whole file, parsed and the file hashed.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use topologyd_api::delta::file_sha256;
use topologyd_api::patch::edits_between;
use topologyd_api::{FilePatch, SourceFile};
use topologyd_harness::synth::{SynthSpec, generate, generate_with_changes};

/// The bindings file's running and new texts (the largest file that changed).
fn changed_file() -> (String, String, String) {
    let spec = SynthSpec::ISSUE_SCALE;
    let old = generate(&spec);
    let new = generate_with_changes(&spec, 10);
    old.into_iter()
        .zip(new)
        .filter(|(old, new)| old.text != new.text)
        .max_by_key(|(old, _)| old.text.len())
        .map(|(old, new)| (old.name.clone(), old.text.to_string(), new.text.to_string()))
        .unwrap()
}

fn delta_patch(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("delta_patch");
    group.sample_size(20);
    let (name, old, new) = changed_file();
    let base_sha256 = file_sha256(&old);
    let patch = FilePatch::between(&name, &base_sha256, &old, &new).unwrap();
    let patch_body = serde_json::to_vec(&patch).unwrap();
    let whole_body = serde_json::to_vec(&SourceFile::new(name.clone(), new.clone())).unwrap();
    eprintln!(
        "{name}: {} bytes; {} edits, {} bytes inserted; body {} bytes as edits, {} bytes whole",
        new.len(),
        patch.edits.len(),
        patch
            .edits
            .iter()
            .map(|edit| edit.insert.len())
            .sum::<usize>(),
        patch_body.len(),
        whole_body.len()
    );
    group.bench_function("pusher_edits_between", |bencher| {
        bencher.iter(|| black_box(edits_between(black_box(&old), black_box(&new))));
    });
    group.bench_function("daemon_edits_parsed_applied_hashed", |bencher| {
        bencher.iter(|| {
            let patch: FilePatch = serde_json::from_slice(black_box(&patch_body)).unwrap();
            black_box(patch.apply_hashed(black_box(&old)).unwrap())
        });
    });
    group.bench_function("baseline_daemon_whole_file_parsed_hashed", |bencher| {
        bencher.iter(|| {
            let file: SourceFile = serde_json::from_slice(black_box(&whole_body)).unwrap();
            black_box(file_sha256(&file.text))
        });
    });
    group.finish();
}

criterion_group!(benches, delta_patch);
criterion_main!(benches);
