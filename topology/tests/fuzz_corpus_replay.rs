//! Replays the committed seed corpus of the topology fuzz targets (`fuzz/corpus/parse_selector/*`
//! and `fuzz/corpus/compile_topology/*`) on stable through the same entry points the cargo-fuzz
//! targets call (`topologyd_config::fuzz_entry::selector`,
//! `topologyd_topology::fuzz_entry::compile_file`): no input may panic or overflow the stack,
//! every `valid_*` seed must parse or compile, and every other seed must be refused. A second
//! test mutates every seed (one bit flipped per byte position, rotating, over the first bytes;
//! every truncation of short seeds) as a poor man's fuzzer.

use std::path::PathBuf;

use topologyd_config::fuzz_entry::selector;
use topologyd_config::parse_selector;
use topologyd_topology::fuzz_entry::compile_file;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("missing corpus {}: {error}", directory.display()));
    let mut seeds: Vec<(String, Vec<u8>)> = entries
        .flatten()
        .map(|entry| {
            let data = std::fs::read(entry.path())
                .unwrap_or_else(|error| panic!("{}: {error}", entry.path().display()));
            (entry.file_name().to_string_lossy().into_owned(), data)
        })
        .collect();
    seeds.sort();
    seeds
}

fn parses(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|text| {
        parse_selector(text, &|offset, length| {
            topologyd_config::Span::new(0, offset..offset + length)
        })
        .is_ok()
    })
}

#[test]
fn replay_the_selector_corpus() {
    let seeds = corpus("parse_selector");
    assert!(seeds.len() >= 20, "only {} selector seeds", seeds.len());
    for (name, data) in &seeds {
        selector(data);
        assert_eq!(
            parses(data),
            name.starts_with("valid_"),
            "{name}: valid_* seeds must parse, the others must not"
        );
    }
}

#[test]
fn replay_the_topology_corpus() {
    let seeds = corpus("compile_topology");
    assert!(seeds.len() >= 20, "only {} topology seeds", seeds.len());
    for (name, data) in &seeds {
        assert_eq!(
            compile_file(data),
            name.starts_with("valid_"),
            "{name}: valid_* seeds must compile, the others must not"
        );
    }
}

/// Each seed with one bit flipped per position (the bit rotates with the position) over its
/// first 300 bytes, and every truncation of its first 300 bytes.
fn mutations(seed: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let limit = seed.len().min(300);
    let flipped = (0..limit).map(move |position| {
        let mut mutated = seed.to_vec();
        mutated[position] ^= 1 << (position % 8);
        mutated
    });
    let truncated = (0..limit).map(move |length| seed[..length].to_vec());
    flipped.chain(truncated)
}

#[test]
fn mutated_seeds_never_panic() {
    let mut runs = 0usize;
    for (_, seed) in corpus("parse_selector") {
        for mutated in mutations(&seed) {
            selector(&mutated);
            runs += 1;
        }
    }
    for (_, seed) in corpus("compile_topology") {
        for mutated in mutations(&seed) {
            compile_file(&mutated);
            runs += 1;
        }
    }
    assert!(runs > 10_000, "only {runs} runs");
}
