//! Replays the seed corpus of the `parse_whois_answer` fuzz target
//! (`fuzz/corpus/parse_whois_answer/*`) on stable through the entry point the target calls
//! (`topoctl::onboard::checks::irr::fuzz_whois_answer`): no seed may panic, and each seed's
//! verdict is the one its name starts with (`valid_`, `mismatch_`, `invalid_`, `missing_`,
//! `unreachable_`). A second test mutates every seed (bit flips, truncations, a byte repeated)
//! as a poor man's fuzzer: no mutation may panic or break the entry point's own invariant
//! (valid only with our origin and the token).

use std::path::PathBuf;

use topoctl::onboard::checks::irr::fuzz_whois_answer;
use topologyd_ownership::CheckStatus;

fn seeds() -> Vec<(String, Vec<u8>)> {
    let directory =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse_whois_answer");
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

fn expected(name: &str) -> CheckStatus {
    let prefixes = [
        ("valid_", CheckStatus::Valid),
        ("mismatch_", CheckStatus::MismatchAsn),
        ("invalid_", CheckStatus::Invalid),
        ("missing_", CheckStatus::Missing),
        ("unreachable_", CheckStatus::Unreachable),
    ];
    prefixes
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map(|(_, status)| *status)
        .unwrap_or_else(|| panic!("{name}: a seed's name starts with its expected verdict"))
}

#[test]
fn replay_the_whois_corpus() {
    let seeds = seeds();
    assert!(seeds.len() >= 15, "only {} seeds", seeds.len());
    for (name, data) in &seeds {
        assert_eq!(fuzz_whois_answer(data), expected(name), "{name}");
    }
}

#[test]
fn mutated_seeds_never_panic() {
    let mut runs = 0usize;
    for (_, data) in seeds() {
        for position in 0..data.len().min(400) {
            let mut flipped = data.clone();
            flipped[position] ^= 1 << (position % 8);
            fuzz_whois_answer(&flipped);
            fuzz_whois_answer(&data[..position]);
            let mut repeated = data.clone();
            repeated.insert(position, data[position]);
            fuzz_whois_answer(&repeated);
            runs += 3;
        }
    }
    assert!(runs > 1000, "only {runs} mutations");
}
