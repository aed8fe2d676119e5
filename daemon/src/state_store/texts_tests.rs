//! The stored source texts (format 2) against real files: each distinct text stored once and
//! checked on every read, texts no kept generation names removed, format-1 files still read,
//! a corrupt or missing text named and healed by the next push carrying it, and (property)
//! any sequence of commits, prunes and restarts keeps every kept generation whole.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;

use proptest::prelude::*;
use topologyd_api::delta::file_sha256;

use super::*;

fn bundle(files: &[(&str, &str)]) -> SourceBundle {
    SourceBundle {
        sources: files
            .iter()
            .map(|(name, text)| SourceFile {
                name: (*name).to_owned(),
                text: (*text).to_owned().into(),
            })
            .collect(),
    }
}

fn stored(number: u64, files: &[(&str, &str)]) -> StoredGeneration {
    StoredGeneration {
        meta: GenerationMeta {
            generation: number,
            hash: format!("sha256:{number:064x}"),
            applied_at: 1_700_000_000 + number,
            who: "alice".to_owned(),
            intent: vec![format!("push {number}")],
        },
        bundle: bundle(files),
    }
}

fn texts_on_disk(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir.join(sources::SOURCES_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn generation_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(GENERATIONS_DIR).join(format!("{number:020}.json"))
}

#[test]
fn each_distinct_text_is_stored_once_and_the_generation_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let big = "# prefixes\n".repeat(10_000);
    store
        .commit(&stored(
            1,
            &[("fleet.toml", "a = 1\n"), ("prefixes.toml", &big)],
        ))
        .unwrap();
    // A one-file change writes one text; the unchanged one is named again.
    store
        .commit(&stored(
            2,
            &[("fleet.toml", "a = 2\n"), ("prefixes.toml", &big)],
        ))
        .unwrap();
    // A rollback's bundle writes no text.
    store
        .commit(&stored(
            3,
            &[("fleet.toml", "a = 1\n"), ("prefixes.toml", &big)],
        ))
        .unwrap();
    let expected: BTreeSet<String> = ["a = 1\n", "a = 2\n", big.as_str()]
        .iter()
        .map(|text| file_sha256(text))
        .collect();
    assert_eq!(texts_on_disk(dir.path()), expected);
    // The generation file is small: names, digests, lengths.
    let file = fs::read(generation_path(dir.path(), 2)).unwrap();
    assert!(file.len() < 1_000, "{} bytes", file.len());
    let json: serde_json::Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(json["format"], 2);
    assert_eq!(json["files"][1]["name"], "prefixes.toml");
    assert_eq!(json["files"][1]["sha256"], file_sha256(&big));
    assert_eq!(json["files"][1]["bytes"], big.len());
    for number in 1..=3 {
        let loaded = store.load(number).unwrap();
        assert_eq!(loaded.meta.generation, number);
    }
    assert_eq!(store.load(2).unwrap().bundle.sources[0].text, "a = 2\n");
    // Each text 0600.
    for name in texts_on_disk(dir.path()) {
        let path = dir.path().join(sources::SOURCES_DIR).join(name);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            FILE_MODE
        );
    }
}

#[test]
fn pruning_removes_the_texts_no_kept_generation_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 1).unwrap();
    store.commit(&stored(1, &[("a.toml", "one")])).unwrap();
    store.commit(&stored(2, &[("a.toml", "two")])).unwrap();
    store
        .commit(&stored(3, &[("a.toml", "two"), ("b.toml", "three")]))
        .unwrap();
    // 1 is pruned (keep 1 previous): its text goes, 2's stays (3 names it too).
    assert!(store.load(1).is_err());
    let expected: BTreeSet<String> = ["two", "three"].iter().map(|t| file_sha256(t)).collect();
    assert_eq!(texts_on_disk(dir.path()), expected);
}

#[test]
fn a_format_1_file_is_read_and_its_texts_stay_inline() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join(GENERATIONS_DIR)).unwrap();
    let old = stored(4, &[("fleet.toml", "x = 1\n"), ("b.toml", "# é\n")]);
    let file = serde_json::json!({"format": 1, "meta": old.meta, "bundle": old.bundle});
    fs::write(generation_path(dir.path(), 4), file.to_string()).unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    assert_eq!(store.load_current().unwrap().current, Some(old.clone()));
    let listed = store.list_protecting(None).unwrap();
    assert_eq!(listed[0].sources, vec!["fleet.toml", "b.toml"]);
    assert_eq!(store.next_generation(), 5);
    // The next commit writes format 2 beside it; the format-1 file names no text, and is
    // never rewritten.
    store
        .commit(&stored(5, &[("fleet.toml", "x = 1\n")]))
        .unwrap();
    assert_eq!(store.load(4).unwrap(), old);
    assert_eq!(texts_on_disk(dir.path()).len(), 1);
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(generation_path(dir.path(), 4)).unwrap()).unwrap();
    assert_eq!(json["format"], 1);
}

#[test]
fn a_corrupt_text_is_named_moved_aside_and_stored_again_by_the_next_push_carrying_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 5).unwrap();
        store.commit(&stored(1, &[("a.toml", "good")])).unwrap();
        store.commit(&stored(2, &[("a.toml", "newer")])).unwrap();
    }
    let text = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256("newer"));
    // Same length, other bytes: only the digest tells.
    fs::write(&text, "NEWER").unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    // Start-up falls back to 1, naming the text; the text goes to quarantine (it is no good
    // copy of anything), generation 2's file stays.
    let recovered = store.load_current().unwrap();
    assert_eq!(recovered.current.unwrap().meta.generation, 1);
    let error = recovered.skipped[0].to_string();
    assert!(error.contains("source `a.toml` of generation 2"), "{error}");
    assert!(error.contains(&text.display().to_string()), "{error}");
    assert!(error.contains("holds a text of SHA-256"), "{error}");
    assert!(!text.exists());
    assert!(generation_path(dir.path(), 2).exists());
    assert_eq!(store.quarantined_count(), 1);
    // Missing now: named as missing, nothing else moved.
    let error = store.load(2).unwrap_err().to_string();
    assert!(error.contains("is missing"), "{error}");
    assert!(generation_path(dir.path(), 2).exists());
    // A push carrying the same text stores it again: 2 reads again.
    store.commit(&stored(3, &[("a.toml", "newer")])).unwrap();
    assert_eq!(store.load(2).unwrap().bundle.sources[0].text, "newer");
    // A read of the running generation (`read`, which never moves a generation file) moves
    // a corrupt text aside too, so that the very next push stores it again instead of naming
    // the corrupt one.
    fs::write(&text, "NEWER").unwrap();
    let error = store.read(3).unwrap_err().to_string();
    assert!(error.contains("holds a text of SHA-256"), "{error}");
    assert!(!text.exists());
    assert!(generation_path(dir.path(), 3).exists());
    store.commit(&stored(4, &[("a.toml", "newer")])).unwrap();
    assert_eq!(store.read(3).unwrap().bundle.sources[0].text, "newer");
    // Another length with the right bytes elsewhere: the text is what is wrong.
    fs::write(&text, "newer!").unwrap();
    let error = store.read(4).unwrap_err().to_string();
    assert!(
        error.contains("holds 6 bytes where 5 were stored"),
        "{error}"
    );
}

#[test]
fn a_generation_file_with_a_wrong_length_is_blamed_not_the_text_other_generations_share() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    store.commit(&stored(1, &[("a.toml", "shared")])).unwrap();
    store.commit(&stored(2, &[("a.toml", "shared")])).unwrap();
    let path = generation_path(dir.path(), 1);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    json["files"][0]["bytes"] = 7.into();
    fs::write(&path, json.to_string()).unwrap();
    let error = store.load(1).unwrap_err();
    assert!(matches!(error, StateError::Corrupt { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("is 7 bytes long; it is 6"), "{message}");
    // Generation 1's file went aside; the text stays for 2.
    assert!(!path.exists());
    assert_eq!(store.read(2).unwrap().bundle.sources[0].text, "shared");
}

#[test]
fn the_texts_of_a_quarantined_generation_file_are_kept_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    store.commit(&stored(1, &[("a.toml", "one")])).unwrap();
    store.commit(&stored(2, &[("a.toml", "two")])).unwrap();
    // Moved aside by hand (as an older release, or a transient read error, would).
    fs::create_dir_all(dir.path().join(QUARANTINE_DIR)).unwrap();
    let moved = dir
        .path()
        .join(QUARANTINE_DIR)
        .join("00000000000000000001.json.1700000000");
    fs::rename(generation_path(dir.path(), 1), &moved).unwrap();
    store.commit(&stored(3, &[("a.toml", "three")])).unwrap();
    assert!(texts_on_disk(dir.path()).contains(&file_sha256("one")));
    // Moved back, it reads.
    fs::rename(&moved, generation_path(dir.path(), 1)).unwrap();
    assert_eq!(store.load(1).unwrap().bundle.sources[0].text, "one");
}

#[test]
fn a_generation_file_naming_a_path_instead_of_a_digest_reads_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    store.commit(&stored(1, &[("a.toml", "a")])).unwrap();
    fs::write(dir.path().join("secret"), "a").unwrap();
    let path = generation_path(dir.path(), 1);
    let mut json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    json["files"][0]["sha256"] = "../secret".into();
    fs::write(&path, json.to_string()).unwrap();
    let error = store.read(1).unwrap_err();
    assert!(matches!(error, StateError::Corrupt { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("which is not a SHA-256"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    // Pruning does not follow it either.
    store.commit(&stored(2, &[("a.toml", "b")])).unwrap();
    assert!(dir.path().join("secret").exists());
}

#[test]
fn a_crash_between_the_texts_and_the_generation_file_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 5).unwrap();
        store.commit(&stored(1, &[("a.toml", "a")])).unwrap();
    }
    // A text written by a commit that never wrote its generation file, and a torn temp file.
    let orphan = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256("orphan"));
    fs::write(&orphan, "orphan").unwrap();
    let torn = dir.path().join(sources::SOURCES_DIR).join(".tmp-x-1-0");
    fs::write(&torn, "orph").unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    assert!(!torn.exists());
    assert_eq!(
        store
            .load_current()
            .unwrap()
            .current
            .unwrap()
            .meta
            .generation,
        1
    );
    store.commit(&stored(2, &[("a.toml", "a")])).unwrap();
    assert!(!orphan.exists());
    assert_eq!(texts_on_disk(dir.path()).len(), 1);
}

#[test]
fn digests_given_with_a_commit_name_the_texts_and_a_wrong_count_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let generation = stored(1, &[("a.toml", "a"), ("b.toml", "b")]);
    let digests: Vec<(String, [u8; 32])> = generation
        .bundle
        .sources
        .iter()
        .map(|file| {
            (
                file.name.clone(),
                sha2::Sha256::digest(file.text.as_bytes()).into(),
            )
        })
        .collect();
    store
        .commit_with_digests(&generation, Some(&digests))
        .unwrap();
    assert_eq!(store.read(1).unwrap(), generation);
    // Too few, or in another order than the files (the names do not pair): not used.
    let next = stored(2, &[("a.toml", "c"), ("b.toml", "b")]);
    store
        .commit_with_digests(&next, Some(&digests[..1]))
        .unwrap();
    assert_eq!(store.read(2).unwrap(), next);
    let swapped = stored(3, &[("b.toml", "b"), ("a.toml", "a")]);
    store.commit_with_digests(&swapped, Some(&digests)).unwrap();
    assert_eq!(store.read(3).unwrap(), swapped);
    // A text to be written is hashed whatever digest was given with it.
    let wrong = vec![
        ("a.toml".to_owned(), [7; 32]),
        ("b.toml".to_owned(), digests[1].1),
    ];
    let fresh = stored(4, &[("a.toml", "new"), ("b.toml", "b")]);
    store.commit_with_digests(&fresh, Some(&wrong)).unwrap();
    assert_eq!(store.read(4).unwrap(), fresh);
    assert!(!texts_on_disk(dir.path()).contains(&"07".repeat(32)));
}

#[test]
fn a_downgrade_rewrites_the_kept_generations_inline_and_they_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let one = stored(1, &[("a.toml", "a"), ("b.toml", "b")]);
    let two = stored(2, &[("a.toml", "c"), ("b.toml", "b")]);
    store.commit(&one).unwrap();
    store.commit(&two).unwrap();
    assert_eq!(store.rewrite_inline().unwrap(), vec![1, 2]);
    // What a format-1 reader (releases before format 2) expects: the texts inline.
    for generation in [&one, &two] {
        let path = generation_path(dir.path(), generation.meta.generation);
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
        let bundle: SourceBundle = serde_json::from_value(json["bundle"].clone()).unwrap();
        assert_eq!(&bundle, &generation.bundle);
        assert_eq!(&store.read(generation.meta.generation).unwrap(), generation);
    }
    // Again: nothing to do.
    assert!(store.rewrite_inline().unwrap().is_empty());
    // Upgraded again: the next commit writes format 2, and the inline files' texts are not
    // needed from `sources/`.
    store.commit(&stored(3, &[("a.toml", "d")])).unwrap();
    assert_eq!(store.read(1).unwrap(), one);
    assert_eq!(texts_on_disk(dir.path()).len(), 1);
}

use sha2::Digest as _;

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    /// Commit a bundle: (file name index, text index) pairs; staged first (as a push does:
    /// the sweep of what it pruned is a step of its own, left for later) or not.
    Commit(Vec<(u8, u8)>, bool),
    /// The sweep a push runs once its generation is in use.
    Sweep,
    /// Close and open the store again.
    Reopen,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let commit = (
        proptest::collection::vec((0u8..4, 0u8..6), 0..5),
        any::<bool>(),
    )
        .prop_map(|(files, staged)| Step::Commit(files, staged));
    proptest::collection::vec(
        prop_oneof![4 => commit, 1 => Just(Step::Sweep), 1 => Just(Step::Reopen)],
        1..14,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the commits (texts shared between files and generations, files repeated,
    /// empty bundles, staged or not), restarts and sweeps left for later: every kept generation
    /// reads back exactly as committed and the kept ones are the newest `keep + 1`; every text
    /// a kept generation names is on disk, and nothing else but texts of generations pruned by
    /// staged commits whose sweep has not run, which a commit that was not staged, or a sweep,
    /// removes.
    #[test]
    fn kept_generations_read_back_whole_and_only_their_texts_stay(
        keep in 0usize..4,
        steps in steps(),
    ) {
        let names = ["fleet.toml", "a.toml", "b.toml", "customers/c.toml"];
        let texts = ["", "x", "y = 1\n", "# ü\n", "[[prefix]]\n", "y = 2\n"];
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path(), keep).unwrap();
        let mut committed: Vec<StoredGeneration> = Vec::new();
        // Texts of generations pruned since the last sweep: they may still be on disk.
        let mut unswept: BTreeSet<String> = BTreeSet::new();
        let named_by = |generations: &[&StoredGeneration]| -> BTreeSet<String> {
            generations
                .iter()
                .flat_map(|generation| generation.bundle.sources.iter())
                .map(|file| file_sha256(&file.text))
                .collect()
        };
        for step in steps {
            let kept_before: Vec<&StoredGeneration> =
                committed.iter().rev().take(keep + 1).collect();
            let named_before = named_by(&kept_before);
            match step {
                Step::Reopen => {
                    drop(store);
                    store = StateStore::open(dir.path(), keep).unwrap();
                }
                Step::Sweep => {
                    store.sweep_unnamed_texts();
                    unswept.clear();
                }
                Step::Commit(files, staged) => {
                    let files: Vec<(&str, &str)> = files
                        .iter()
                        .map(|(name, text)| (names[*name as usize], texts[*text as usize]))
                        .collect();
                    let number = store.next_generation();
                    let generation = stored(number, &files);
                    if staged {
                        let texts = store.stage_texts(&generation.bundle.sources).unwrap();
                        let pruned = store.commit_staged(&generation.meta, &texts).unwrap();
                        // It says it pruned exactly when a generation went.
                        prop_assert_eq!(pruned, committed.len() > keep);
                        // The staging swept what an earlier prune left.
                        unswept = named_before;
                    } else {
                        store.commit(&generation).unwrap();
                        unswept.clear();
                    }
                    committed.push(generation);
                }
            }
            let kept: Vec<&StoredGeneration> =
                committed.iter().rev().take(keep + 1).collect();
            for generation in &kept {
                prop_assert_eq!(&store.read(generation.meta.generation).unwrap(), *generation);
            }
            let listed = store.listed_generations();
            let expected: Vec<u64> = kept.iter().map(|generation| generation.meta.generation).collect();
            prop_assert_eq!(listed, expected);
            let named = named_by(&kept);
            let on_disk = texts_on_disk(dir.path());
            prop_assert!(named.is_subset(&on_disk), "a named text is gone");
            let allowed: BTreeSet<String> = named.union(&unswept).cloned().collect();
            prop_assert!(on_disk.is_subset(&allowed), "{:?} beyond {:?}", on_disk, allowed);
            if unswept.is_empty() {
                prop_assert_eq!(on_disk, named);
            }
        }
    }
}

#[test]
fn a_damaged_text_of_the_same_length_is_stored_again_by_the_next_commit_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256("abc"));
    {
        let store = StateStore::open(dir.path(), 5).unwrap();
        store.commit(&stored(1, &[("a.toml", "abc")])).unwrap();
        // Damaged behind this process's back (same length, other bytes): its next commit
        // naming the text compares it and writes it again.
        fs::write(&text, "xbc").unwrap();
        store.commit(&stored(2, &[("a.toml", "abc")])).unwrap();
        assert_eq!(fs::read(&text).unwrap(), b"abc");
    }
    // A new process has checked nothing yet: it compares before naming the text again.
    fs::write(&text, "abx").unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    store.commit(&stored(3, &[("a.toml", "abc")])).unwrap();
    assert_eq!(store.read(1).unwrap().bundle.sources[0].text, "abc");
    // Not a file at all: replaced by one.
    fs::remove_file(&text).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), &text).unwrap();
    store.commit(&stored(4, &[("a.toml", "abc")])).unwrap();
    assert!(fs::symlink_metadata(&text).unwrap().is_file());
    assert_eq!(store.read(4).unwrap().bundle.sources[0].text, "abc");
}

#[test]
fn a_text_read_again_is_hashed_again_unless_checked_settled_and_unchanged_since() {
    let dir = tempfile::tempdir().unwrap();
    let text_path = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256("abc"));
    let store = StateStore::open(dir.path(), 5).unwrap();
    store.commit(&stored(1, &[("a.toml", "abc")])).unwrap();
    let hashed = |expected: u64| assert_eq!(store.texts.hashed_reads(), expected);
    // Racily clean: written just now, so a change within the clock's tick could keep its
    // stamp. Hashed on every read, and damage in place is found even when it keeps the
    // modification time.
    let written = fs::metadata(&text_path).unwrap().modified().unwrap();
    assert_eq!(store.read(1).unwrap().bundle.sources[0].text, "abc");
    assert_eq!(store.read(1).unwrap().bundle.sources[0].text, "abc");
    hashed(2);
    fs::write(&text_path, "xbc").unwrap();
    fs::File::options()
        .append(true)
        .open(&text_path)
        .unwrap()
        .set_modified(written)
        .unwrap();
    assert!(matches!(
        store.read(1),
        Err(StateError::Source { corrupt: true, .. })
    ));
    hashed(3);
    // Settled (changed more than 2 s before the check): a read that hashed it once trusts it
    // while its stamp holds; a change in place stamps it anew and is hashed and found.
    store.commit(&stored(2, &[("a.toml", "abc")])).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    assert_eq!(store.read(2).unwrap().bundle.sources[0].text, "abc");
    hashed(4);
    assert_eq!(store.read(2).unwrap().bundle.sources[0].text, "abc");
    assert_eq!(store.read(1).unwrap().bundle.sources[0].text, "abc");
    hashed(4);
    fs::write(&text_path, "abx").unwrap();
    assert!(matches!(
        store.read(2),
        Err(StateError::Source { corrupt: true, .. })
    ));
    hashed(5);
    // A new process trusts nothing it has not hashed itself.
    store.commit(&stored(3, &[("a.toml", "abc")])).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    assert_eq!(store.read(3).unwrap().bundle.sources[0].text, "abc");
    drop(store);
    let store = StateStore::open(dir.path(), 5).unwrap();
    assert_eq!(store.read(3).unwrap().bundle.sources[0].text, "abc");
    assert_eq!(store.texts.hashed_reads(), 1);
}

#[test]
fn staged_texts_are_named_by_the_commit_that_follows_and_read_back_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let big = "[[prefix]]\n".repeat(1_000);
    let generation = stored(1, &[("fleet.toml", "a = 1\n"), ("prefixes.toml", &big)]);
    let staged = store.stage_texts(&generation.bundle.sources).unwrap();
    // Durable before any generation names them, under their digests.
    let expected: BTreeSet<String> = ["a = 1\n", big.as_str()]
        .iter()
        .map(|text| file_sha256(text))
        .collect();
    assert_eq!(texts_on_disk(dir.path()), expected);
    let digests = staged.digests();
    assert_eq!(digests.len(), 2);
    assert_eq!(
        digests[1],
        topologyd_api::delta::sha256_each(&[big.as_str()])[0]
    );
    // Opened again checked; past the staged texts, nothing.
    let read = staged.read_back();
    let text_of = |index: u32| {
        read(index).map(|mut reader| {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut reader, &mut text).unwrap();
            text
        })
    };
    assert_eq!(text_of(1).as_deref(), Some(big.as_str()));
    assert!(read(2).is_none());
    // The commit's sweep leaves the staged texts; the generation names them.
    store.commit_staged(&generation.meta, &staged).unwrap();
    assert_eq!(texts_on_disk(dir.path()), expected);
    assert_eq!(store.load(1).unwrap(), generation);
    let path = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256("a = 1\n"));
    // Bytes changed under the same name and length: not opened by a fresh reader (the one above
    // checked each text it opened once, and trusts its length from then on).
    fs::write(&path, "a = 9\n").unwrap();
    assert!(
        staged.read_back()(0).is_none(),
        "another text of the same length is not read again"
    );
    fs::write(&path, "a = 10\n").unwrap();
    assert!(read(0).is_none(), "another length is never read again");
}

#[test]
fn a_staged_text_gone_before_the_commit_fails_it_and_unnamed_ones_go_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let first = stored(1, &[("a.toml", "one")]);
    let staged = store.stage_texts(&first.bundle.sources).unwrap();
    fs::remove_file(
        dir.path()
            .join(sources::SOURCES_DIR)
            .join(file_sha256("one")),
    )
    .unwrap();
    let error = store.commit_staged(&first.meta, &staged).unwrap_err();
    assert!(
        matches!(&error, StateError::Source { name, .. } if name == "a.toml"),
        "{error}"
    );
    assert!(error.to_string().contains("start again"), "{error}");
    assert!(
        store.list().unwrap().is_empty(),
        "no generation was written"
    );
    // Texts staged for a compile that failed are named by nothing: the next commit removes
    // them, and its own staged texts stay.
    store
        .stage_texts(&stored(1, &[("b.toml", "abandoned")]).bundle.sources)
        .unwrap();
    let second = stored(1, &[("c.toml", "kept")]);
    let staged = store.stage_texts(&second.bundle.sources).unwrap();
    store.commit_staged(&second.meta, &staged).unwrap();
    assert_eq!(
        texts_on_disk(dir.path()),
        BTreeSet::from([file_sha256("kept")])
    );
    assert_eq!(store.load(1).unwrap(), second);
}

#[test]
fn a_fifo_in_a_staged_text_s_place_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let staged = store
        .stage_texts(&stored(1, &[("a.toml", "abc")]).bundle.sources)
        .unwrap();
    let path = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256("abc"));
    fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening the FIFO for reading would wait for a writer that never comes.
    assert!(staged.read_back()(0).is_none());
}

/// A text of a megabyte or more is mapped from its file, not copied, and checked as a text
/// read into memory is: against its length, as UTF-8 and against its digest, and moved aside
/// when it fails. Small texts are still read.
#[test]
fn a_large_text_is_mapped_and_checked_as_a_read_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let large = "[[binding]]\ncidr = \"10.0.0.0/24\"\nservice = \"web\"\n".repeat(25_000);
    assert!(large.len() as u64 >= sources::MAP_MIN_BYTES);
    let files = [("bindings.toml", large.as_str()), ("fleet.toml", "x = 1\n")];
    StateStore::open(dir.path(), 5)
        .unwrap()
        .commit(&stored(1, &files))
        .unwrap();
    let path = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256(&large));
    {
        let store = StateStore::open(dir.path(), 5).unwrap();
        let read = store.read(1).unwrap();
        let texts = &read.bundle.sources;
        assert!(texts[0].text.is_shared(), "a large text is mapped");
        assert!(!texts[1].text.is_shared(), "a small one is read");
        assert_eq!(texts[0].text, large);
        assert_eq!(texts[1].text, "x = 1\n");
        // A clone shares the mapping; changing one copies it first.
        let mut copy = texts[0].text.clone();
        assert!(copy.is_shared());
        assert_eq!(copy.as_ptr(), texts[0].text.as_ptr());
        copy.to_mut().push('#');
        assert!(!copy.is_shared());
        assert_eq!(texts[0].text, large, "the mapped text is unchanged");
        // A commit naming it while it is mapped finds it stored (compared with itself) and
        // does not write it again: the mapped file is the stored one.
        let inode = fs::metadata(&path).unwrap().ino();
        store.commit(&stored(2, &files)).unwrap();
        assert_eq!(texts_on_disk(dir.path()).len(), 2);
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
    }
    // A text with a second link (or reached through a symbolic link) is read, not mapped: the
    // store cannot tell who else writes it.
    let linked = dir.path().join("elsewhere");
    fs::hard_link(&path, &linked).unwrap();
    {
        let store = StateStore::open(dir.path(), 5).unwrap();
        let read = store.read(1).unwrap();
        assert!(!read.bundle.sources[0].text.is_shared());
        assert_eq!(read.bundle.sources[0].text, large);
    }
    fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&linked, &path).unwrap();
    {
        let store = StateStore::open(dir.path(), 5).unwrap();
        let read = store.read(1).unwrap();
        assert!(!read.bundle.sources[0].text.is_shared());
        assert_eq!(read.bundle.sources[0].text, large);
    }
    fs::remove_file(&path).unwrap();
    fs::rename(&linked, &path).unwrap();
    // Damaged behind the daemon's back, once nothing maps it: not UTF-8, at the same length.
    let mut damaged = large.clone().into_bytes();
    damaged[1_000_000] = 0xFF;
    fs::write(&path, &damaged).unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let error = store.read(2).unwrap_err().to_string();
    assert!(error.contains("is not UTF-8"), "{error}");
    assert!(!path.exists(), "moved aside");
    // Stored again by the next push carrying it; then other UTF-8 bytes of the same length.
    store.commit(&stored(3, &files)).unwrap();
    assert_eq!(store.read(2).unwrap().bundle.sources[0].text, large);
    drop(store);
    damaged[1_000_000] = b'#';
    fs::write(&path, &damaged).unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let error = store.read(3).unwrap_err().to_string();
    assert!(error.contains("holds a text of SHA-256"), "{error}");
    assert!(!path.exists(), "moved aside");
}

/// A large text this process checked, settled and unchanged since, is mapped without being
/// hashed again (its UTF-8 is checked at every read); one changed in place since is checked
/// again, and found.
#[test]
fn a_large_text_checked_before_is_trusted_until_its_stamp_moves() {
    let dir = tempfile::tempdir().unwrap();
    let large = "# a comment line of the bindings file\n".repeat(30_000);
    let files = [("bindings.toml", large.as_str())];
    let store = StateStore::open(dir.path(), 5).unwrap();
    store.commit(&stored(1, &files)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let hashed = |expected: u64| assert_eq!(store.texts.hashed_reads(), expected);
    for _ in 0..3 {
        let read = store.read(1).unwrap();
        assert!(read.bundle.sources[0].text.is_shared());
        assert_eq!(read.bundle.sources[0].text, large);
    }
    hashed(1);
    let path = dir
        .path()
        .join(sources::SOURCES_DIR)
        .join(file_sha256(&large));
    let mut damaged = large.clone().into_bytes();
    // Rewritten in place with other UTF-8 of the same length: the stamp moved, so the text is
    // hashed again and found.
    damaged[600_000] = b'%';
    fs::write(&path, &damaged).unwrap();
    let error = store.read(1).unwrap_err().to_string();
    assert!(error.contains("holds a text of SHA-256"), "{error}");
    hashed(2);
    // Stored again, checked again once settled; then rewritten with bytes that are not UTF-8.
    store.commit(&stored(2, &files)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    assert_eq!(store.read(1).unwrap().bundle.sources[0].text, large);
    damaged[600_000] = 0xC0;
    fs::write(&path, &damaged).unwrap();
    let error = store.read(1).unwrap_err().to_string();
    assert!(error.contains("is not UTF-8"), "{error}");
}

/// A staging sweeps the texts no generation names only when some may be on disk. A full
/// disk's error lists generation files for the operator to delete, and once one is, the next
/// staging sweeps the texts it named before it writes its own (skipping that sweep, it would
/// find the disk as full as before); a generation file moved to quarantine asks for the same.
#[test]
fn texts_of_generations_gone_by_hand_or_to_quarantine_go_at_the_next_staging() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let commit_staged = |number: u64, text: &str| {
        let generation = stored(number, &[("a.toml", text)]);
        let staged = store.stage_texts(&generation.bundle.sources).unwrap();
        assert!(!store.commit_staged(&generation.meta, &staged).unwrap());
    };
    commit_staged(1, "one = 1\n");
    commit_staged(2, "two = 2\n");
    commit_staged(3, "three = 3\n");
    // Deleted by hand after a full disk's error listed it.
    fs::remove_file(generation_path(dir.path(), 1)).unwrap();
    let full = StateError::NoSpace {
        what: "writing",
        path: dir.path().to_path_buf(),
        prunable: Vec::new(),
    };
    assert!(store.with_prunable(full, &[]).is_no_space());
    commit_staged(4, "four = 4\n");
    let on_disk = texts_on_disk(dir.path());
    assert!(!on_disk.contains(&file_sha256("one = 1\n")), "{on_disk:?}");
    // Moved to quarantine (unreadable) as the listing finds it.
    fs::write(generation_path(dir.path(), 2), b"{ not json").unwrap();
    let listed = store.listed_generations();
    assert_eq!(listed, [4, 3]);
    assert!(
        !generation_path(dir.path(), 2).exists(),
        "moved to quarantine"
    );
    commit_staged(5, "five = 5\n");
    let on_disk = texts_on_disk(dir.path());
    assert!(!on_disk.contains(&file_sha256("two = 2\n")), "{on_disk:?}");
    for kept in ["three = 3\n", "four = 4\n", "five = 5\n"] {
        assert!(on_disk.contains(&file_sha256(kept)), "{kept}: {on_disk:?}");
    }
}

/// One step of the early staging property test: a push stages its texts while it compiles,
/// so stagings wait beside commits and sweeps, and some are given up (a refused push).
#[derive(Debug, Clone)]
enum EarlyStep {
    /// Stage a bundle of one file with this text, and hold it.
    Stage(u8),
    /// Commit the held staging at this place (modulo how many are held).
    Commit(u8),
    /// Give up the held staging at this place.
    GiveUp(u8),
    /// The sweep a push runs once its generation is in use.
    Sweep,
    /// Commit a bundle of one file with this text without staging it.
    CommitDirect(u8),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the order of stagings, commits, give-ups and sweeps: a text a held staging
    /// wrote stays on disk until its commit names it (which never fails for want of it), a
    /// kept generation reads back whole, and the texts of stagings given up go at the next
    /// staging or sweep, which leave exactly the texts the kept generations and the held
    /// stagings name.
    #[test]
    fn held_stagings_keep_their_texts_and_given_up_ones_go_at_the_next_sweep(
        steps in proptest::collection::vec(
            prop_oneof![
                3 => (0u8..5).prop_map(EarlyStep::Stage),
                2 => any::<u8>().prop_map(EarlyStep::Commit),
                2 => any::<u8>().prop_map(EarlyStep::GiveUp),
                1 => Just(EarlyStep::Sweep),
                1 => (0u8..5).prop_map(EarlyStep::CommitDirect),
            ],
            1..16,
        ),
    ) {
        let texts = ["x", "y = 1\n", "# ü\n", "[[prefix]]\n", "y = 2\n"];
        let dir = tempfile::tempdir().unwrap();
        // Nothing is pruned: every generation committed is kept.
        let store = StateStore::open(dir.path(), 32).unwrap();
        let mut committed: Vec<StoredGeneration> = Vec::new();
        let mut held: Vec<(&str, StagedTexts)> = Vec::new();
        // Texts given up since the last sweep: they may still be on disk.
        let mut given_up: BTreeSet<String> = BTreeSet::new();
        for step in steps {
            let mut swept = false;
            match step {
                EarlyStep::Stage(text) => {
                    let text = texts[text as usize];
                    let files = bundle(&[("a.toml", text)]).sources;
                    held.push((text, store.stage_texts(&files).unwrap()));
                    swept = true;
                }
                EarlyStep::Commit(place) if !held.is_empty() => {
                    let (text, staged) = held.remove(place as usize % held.len());
                    let generation = stored(store.next_generation(), &[("a.toml", text)]);
                    store.commit_staged(&generation.meta, &staged).unwrap();
                    committed.push(generation);
                }
                EarlyStep::GiveUp(place) if !held.is_empty() => {
                    let (text, staged) = held.remove(place as usize % held.len());
                    drop(staged);
                    given_up.insert(file_sha256(text));
                }
                EarlyStep::Sweep => {
                    store.sweep_unnamed_texts();
                    swept = true;
                }
                EarlyStep::CommitDirect(text) => {
                    let generation =
                        stored(store.next_generation(), &[("a.toml", texts[text as usize])]);
                    store.commit(&generation).unwrap();
                    committed.push(generation);
                    swept = true;
                }
                EarlyStep::Commit(_) | EarlyStep::GiveUp(_) => {}
            }
            for generation in &committed {
                prop_assert_eq!(&store.read(generation.meta.generation).unwrap(), generation);
            }
            let named: BTreeSet<String> = committed
                .iter()
                .flat_map(|generation| generation.bundle.sources.iter())
                .map(|file| file_sha256(&file.text))
                .chain(held.iter().map(|(text, _)| file_sha256(text)))
                .collect();
            let on_disk = texts_on_disk(dir.path());
            prop_assert!(named.is_subset(&on_disk), "{:?} not all in {:?}", named, on_disk);
            // Said to be none, there are none: the next staging would not sweep.
            if !store.unnamed_texts.may_be_any() {
                prop_assert_eq!(&on_disk, &named);
            }
            if swept {
                given_up.clear();
                prop_assert_eq!(on_disk, named);
            } else {
                let allowed: BTreeSet<String> = named.union(&given_up).cloned().collect();
                prop_assert!(on_disk.is_subset(&allowed), "{:?} beyond {:?}", on_disk, allowed);
            }
        }
    }
}

/// A staging given up while an earlier one waits for its commit: the commit, whose staging
/// found no unnamed text, does not say none are left (the later staging's are), so the next
/// staging sweeps them.
#[test]
fn a_staging_given_up_behind_one_that_commits_is_swept_by_the_next_staging() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 8).unwrap();
    store.sweep_unnamed_texts();
    assert!(!store.unnamed_texts.may_be_any());
    let staged = |text: &str| {
        store
            .stage_texts(&bundle(&[("a.toml", text)]).sources)
            .unwrap()
    };
    let first = staged("first = 1\n");
    let second = staged("second = 2\n");
    drop(second);
    let generation = stored(store.next_generation(), &[("a.toml", "first = 1\n")]);
    store.commit_staged(&generation.meta, &first).unwrap();
    assert!(
        store.unnamed_texts.may_be_any(),
        "the given-up texts are unnamed"
    );
    assert!(texts_on_disk(dir.path()).contains(&file_sha256("second = 2\n")));
    drop(staged("third = 3\n"));
    let on_disk = texts_on_disk(dir.path());
    assert!(
        !on_disk.contains(&file_sha256("second = 2\n")),
        "{on_disk:?}"
    );
}

/// A large text a push stored (shared with it) is read from memory until its stamp settles:
/// no second hashing of what was just hashed and written. Texts staged otherwise (a first
/// start), small ones, and copies are read from the file and hashed as before; a text swept
/// (named by no generation) is let go at once.
#[test]
fn a_large_pushed_text_is_read_as_stored_until_its_stamp_settles() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = StateStore::open(dir.path(), 5).unwrap();
    // Kept for the whole test, however slow the machine.
    store
        .texts
        .set_recent_for(std::time::Duration::from_secs(600));
    let large = "[[binding]]\n".repeat((1 << 20) / 12 + 1);
    let mut pushed = stored(1, &[("small.toml", "a = 1\n"), ("large.toml", &large)]);
    let shared: Vec<SourceFile> = pushed
        .bundle
        .sources
        .iter_mut()
        .map(|file| SourceFile::new(file.name.clone(), file.text.share()))
        .collect();
    let staged = store.stage_pushed_texts(&shared, None, &[]).unwrap();
    store.commit_staged(&pushed.meta, &staged).unwrap();
    let read = store.read(1).unwrap();
    assert_eq!(read.bundle.sources[1].text, large);
    assert!(read.bundle.sources[1].text.is_shared());
    // The small text was hashed; the large one was not.
    assert_eq!(store.texts.hashed_reads(), 1);
    assert_eq!(store.forget_recent_texts(), 1);

    // Staged by a first start: read from the file, hashed (not settled yet).
    let other = "[[prefix]]\n".repeat((1 << 20) / 11 + 1);
    let mut first_start = stored(2, &[("large.toml", &other)]);
    let shared: Vec<SourceFile> = first_start
        .bundle
        .sources
        .iter_mut()
        .map(|file| SourceFile::new(file.name.clone(), file.text.share()))
        .collect();
    let staged = store.stage_texts(&shared).unwrap();
    store.commit_staged(&first_start.meta, &staged).unwrap();
    assert_eq!(store.read(2).unwrap().bundle.sources[0].text, other);
    assert_eq!(store.texts.hashed_reads(), 2);

    // An owned text is not copied to be kept.
    let copied = "# copied\n".repeat((1 << 20) / 9 + 1);
    let owned = stored(3, &[("large.toml", &copied)]);
    let staged = store
        .stage_pushed_texts(&owned.bundle.sources, None, &[])
        .unwrap();
    store.commit_staged(&owned.meta, &staged).unwrap();
    assert_eq!(store.read(3).unwrap().bundle.sources[0].text, copied);
    assert_eq!(store.texts.hashed_reads(), 3);

    // Let go of by digest (as a sweep does the texts it removes): read from the file again.
    assert_eq!(store.forget_recent_texts(), 1);
    store.texts.forget_recent(Some(&file_sha256(&large)));
    assert_eq!(store.forget_recent_texts(), 0);
    assert_eq!(store.read(1).unwrap().bundle.sources[1].text, large);
    assert_eq!(store.texts.hashed_reads(), 5);
}

/// A text whose digest its pusher listed but nobody checked (made by a delta's edits) is
/// compared with the text stored under that digest and hashed unless the same, even when that
/// file is of its length and this process checked it (a checked digest would trust its
/// stamp): the staged digest is the text's own, so the push's check sees the difference.
#[test]
fn a_staged_text_whose_digest_is_unchecked_is_hashed_whatever_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 5).unwrap();
    let running = stored(1, &[("a.toml", "a = 1\n")]);
    let listed: Vec<(String, [u8; 32])> = vec![(
        "a.toml".to_owned(),
        sha2::Sha256::digest("a = 1\n".as_bytes()).into(),
    )];
    store.commit_with_digests(&running, Some(&listed)).unwrap();
    // Its file settled (2 s after its last change), and compared once since: trusted by its
    // stamp from then on.
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    drop(store.stage_pushed_texts(&running.bundle.sources, Some(&listed), &[]));
    // Same length, other bytes, listed under the running text's digest.
    let pushed = vec![SourceFile::new("a.toml", "a = 2\n")];
    let trusting = store
        .stage_pushed_texts(&pushed, Some(&listed), &[])
        .unwrap();
    assert_eq!(
        trusting.digests(),
        vec![listed[0].1],
        "the digest given is used"
    );
    drop(trusting);
    let checking = store
        .stage_pushed_texts(&pushed, Some(&listed), &[0])
        .unwrap();
    let own: [u8; 32] = sha2::Sha256::digest("a = 2\n".as_bytes()).into();
    assert_eq!(checking.digests(), vec![own]);
    assert!(texts_on_disk(dir.path()).contains(&file_sha256("a = 2\n")));
    drop(checking);
    // The very text stored under the digest listed: confirmed by its bytes.
    let same = store
        .stage_pushed_texts(&running.bundle.sources, Some(&listed), &[0])
        .unwrap();
    assert_eq!(same.digests(), vec![listed[0].1]);
}
