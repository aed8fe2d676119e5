//! Tests of the push's files read lazily and the digests remembered by stamp: a digest is
//! taken from the cache only for a file unchanged since it was hashed, whatever the writes.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn files(directory: &Path, texts: &[&str]) -> Vec<PathBuf> {
    texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let path = directory.join(format!("file-{index}.toml"));
            write(&path, text);
            path
        })
        .collect()
}

/// The clock of a push made long enough after the files were written for them to have settled.
fn later() -> SystemTime {
    SystemTime::now() + SETTLED + Duration::from_secs(1)
}

fn load(paths: &[PathBuf], cache: &Path, clock: SystemTime) -> LocalBundle {
    let mut cache = DigestCache::open(cache);
    let bundle = LocalBundle::load_at(paths, Some(&mut cache), clock).unwrap();
    cache.save(bundle.stamps()).unwrap();
    bundle
}

fn expected(paths: &[PathBuf]) -> Vec<SourceDigest> {
    paths
        .iter()
        .map(|path| SourceDigest {
            name: SourceBundle::name_of(&path.display().to_string()),
            sha256: file_sha256(&std::fs::read_to_string(path).unwrap()),
        })
        .collect()
}

#[test]
fn a_settled_file_is_known_by_its_stamp_and_read_only_when_it_travels() {
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    let paths = files(directory.path(), &["a = 1\n", "b = 2\n"]);

    let first = load(&paths, &cache, later());
    assert_eq!(first.read_count(), 2);
    assert_eq!(first.digests(), expected(&paths));

    let second = load(&paths, &cache, later());
    assert_eq!(
        second.read_count(),
        0,
        "both files are known by their stamps"
    );
    assert_eq!(second.digests(), expected(&paths));
    let travelled = second.files(&[1]).unwrap();
    assert_eq!(travelled.len(), 1);
    assert_eq!(travelled[0].name, "file-1.toml");
    assert_eq!(travelled[0].text, "b = 2\n");

    // A rewrite of the same size moves the change time (a tick later: the coarsest a kernel
    // stamps with is 10 ms): the file is hashed again.
    std::thread::sleep(Duration::from_millis(25));
    write(&paths[1], "b = 3\n");
    let third = load(&paths, &cache, later());
    assert_eq!(third.read_count(), 1);
    assert_eq!(third.digests(), expected(&paths));
}

#[test]
fn a_file_written_just_before_the_push_is_hashed_but_not_remembered() {
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    let paths = files(directory.path(), &["a = 1\n"]);
    load(&paths, &cache, SystemTime::now());
    assert!(
        !cache.join(CACHE_FILE).exists(),
        "nothing settled, nothing written"
    );
    assert_eq!(load(&paths, &cache, SystemTime::now()).read_count(), 1);
}

#[test]
fn a_damaged_cache_is_ignored_and_written_anew() {
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let paths = files(directory.path(), &["a = 1\n"]);
    for damaged in ["", "{", "[1, 2]", "{\"version\": 1, \"entries\": 7}"] {
        write(&cache.join(CACHE_FILE), damaged);
        let bundle = load(&paths, &cache, later());
        assert_eq!(bundle.read_count(), 1, "{damaged:?}");
        assert_eq!(bundle.digests(), expected(&paths), "{damaged:?}");
        assert_eq!(load(&paths, &cache, later()).read_count(), 0, "{damaged:?}");
    }
    // An entry whose digest is not a SHA-256 is not trusted.
    let mut file: CacheFile =
        serde_json::from_slice(&std::fs::read(cache.join(CACHE_FILE)).unwrap()).unwrap();
    file.entries[0].sha256 = "not a digest".into();
    std::fs::write(cache.join(CACHE_FILE), serde_json::to_vec(&file).unwrap()).unwrap();
    assert_eq!(load(&paths, &cache, later()).read_count(), 1);
}

#[test]
fn a_file_changed_after_it_was_hashed_stops_the_push() {
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    let paths = files(directory.path(), &["a = 1\n", "b = 2\n"]);
    load(&paths, &cache, later());
    let known = load(&paths, &cache, later());
    assert_eq!(known.read_count(), 0);
    write(&paths[0], "a = 9\n");
    match known.files(&[0, 1]) {
        Err(ClientError::SourceChanged { path, message }) => {
            assert_eq!(path, paths[0].display().to_string());
            assert!(message.contains("changed since it was hashed"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    // The file the push has not changed still travels.
    assert_eq!(known.files(&[1]).unwrap()[0].text, "b = 2\n");
    // Nor does the whole bundle: what travels is always what was hashed (and checked for
    // revoked prefixes).
    assert!(matches!(
        known.whole(),
        Err(ClientError::SourceChanged { .. })
    ));
    std::fs::remove_file(&paths[1]).unwrap();
    assert!(matches!(
        known.files(&[1]),
        Err(ClientError::SourceChanged { .. })
    ));
}

#[test]
fn a_remembered_digest_found_wrong_is_forgotten() {
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    let paths = files(directory.path(), &["a = 1\n"]);
    load(&paths, &cache, later());
    // The cache says another digest for the file's very stamp (a file system whose stamps do
    // not move): the text read to travel is found changed, and the entry forgotten.
    let mut file: CacheFile =
        serde_json::from_slice(&std::fs::read(cache.join(CACHE_FILE)).unwrap()).unwrap();
    file.entries[0].sha256 = file_sha256("a = 2\n");
    std::fs::write(cache.join(CACHE_FILE), serde_json::to_vec(&file).unwrap()).unwrap();
    let wrong = load(&paths, &cache, later());
    assert_eq!(wrong.read_count(), 0);
    match wrong.files(&[0]) {
        Err(ClientError::SourceChanged { message, .. }) => {
            assert!(message.contains("--no-digest-cache"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let again = load(&paths, &cache, later());
    assert_eq!(again.read_count(), 1, "hashed again");
    assert_eq!(again.digests(), expected(&paths));
}

#[test]
fn a_cache_directory_others_may_write_to_is_not_used() {
    use std::os::unix::fs::PermissionsExt as _;
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    let paths = files(directory.path(), &["a = 1\n"]);
    load(&paths, &cache, later());
    assert_eq!(load(&paths, &cache, later()).read_count(), 0);
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut opened = DigestCache::open(&cache);
    let bundle = LocalBundle::load_at(&paths, Some(&mut opened), later()).unwrap();
    assert_eq!(bundle.read_count(), 1, "nothing is read from it");
    let error = opened.save(bundle.stamps()).unwrap_err();
    assert!(error.to_string().contains("others may write"), "{error}");
}

#[test]
fn a_file_that_cannot_be_read_is_the_error_load_sources_gives() {
    let directory = tempfile::tempdir().unwrap();
    let cache = directory.path().join("cache");
    let mut paths = files(directory.path(), &["a = 1\n"]);
    std::fs::write(directory.path().join("bad.toml"), b"a = 1\n\xff\n").unwrap();
    paths.push(directory.path().join("bad.toml"));
    let mut opened = DigestCache::open(&cache);
    let error = LocalBundle::load_at(&paths, Some(&mut opened), later()).unwrap_err();
    let expected = load_sources(&paths).unwrap_err();
    assert_eq!(error.to_string(), expected.to_string());
    assert_eq!(
        error.invalid.map(|diagnostic| diagnostic.to_string()),
        expected.invalid.map(|diagnostic| diagnostic.to_string())
    );
}

/// One step of a generated history.
#[derive(Debug, Clone)]
enum Step {
    /// Writes file `file` in place with text number `text` (all the same length but one).
    Write { file: usize, text: usize },
    /// Replaces file `file` by a new file of text number `text`, renamed over it.
    Replace { file: usize, text: usize },
    /// Lets `milliseconds` pass.
    Wait { milliseconds: u64 },
    /// Pushes: the digests must be those of the files as they are.
    Push,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3_usize, 0..4_usize).prop_map(|(file, text)| Step::Write { file, text }),
        (0..3_usize, 0..4_usize).prop_map(|(file, text)| Step::Replace { file, text }),
        prop_oneof![Just(0_u64), Just(12), Just(45)]
            .prop_map(|milliseconds| Step::Wait { milliseconds }),
        Just(Step::Push),
    ]
}

/// Texts 0 to 2 have the same length (a rewrite changes no size); text 3 is longer.
const TEXTS: [&str; 4] = ["x = 1\n", "x = 2\n", "y = 1\n", "x = 100\n"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the writes (in place at the same size, or renamed over) and however soon
    /// after one another, every push lists each file's digest as its text is, and sends that
    /// text; the cache's margin is made short (30 ms, still many times a timestamp's tick) so
    /// that files settle within the test.
    #[test]
    fn every_push_lists_the_digests_of_the_files_as_they_are(
        steps in proptest::collection::vec(step(), 1..24)
    ) {
        let directory = tempfile::tempdir().unwrap();
        let cache_directory = directory.path().join("cache");
        let paths = files(directory.path(), &[TEXTS[0], TEXTS[1], TEXTS[2]]);
        for step in steps.iter().chain([&Step::Push]) {
            match step {
                Step::Write { file, text } => write(&paths[*file], TEXTS[*text]),
                Step::Replace { file, text } => {
                    let temporary = directory.path().join("new.tmp");
                    write(&temporary, TEXTS[*text]);
                    std::fs::rename(&temporary, &paths[*file]).unwrap();
                }
                Step::Wait { milliseconds } => {
                    std::thread::sleep(Duration::from_millis(*milliseconds));
                }
                Step::Push => {
                    let mut cache = DigestCache::open(&cache_directory);
                    cache.settled = Duration::from_millis(30);
                    let bundle = LocalBundle::load(&paths, Some(&mut cache)).unwrap();
                    cache.save(bundle.stamps()).unwrap();
                    prop_assert_eq!(bundle.digests(), expected(&paths));
                    let sent = bundle.files(&[0, 1, 2]).unwrap();
                    for (file, path) in sent.iter().zip(&paths) {
                        let on_disk = std::fs::read_to_string(path).unwrap();
                        prop_assert_eq!(file.text.as_str(), on_disk.as_str());
                    }
                }
            }
        }
    }
}
