//! The state store against real files: atomic commits, recovery, quarantine, pruning,
//! the lock, permissions and a full disk.
#![allow(clippy::unwrap_used)]

use super::*;

fn generation(number: u64) -> StoredGeneration {
    StoredGeneration {
        meta: GenerationMeta {
            generation: number,
            hash: format!("sha256:{number:064x}"),
            applied_at: 1_700_000_000 + number,
            who: "alice".to_owned(),
            intent: vec![format!("push {number}")],
        },
        bundle: SourceBundle {
            sources: vec![
                SourceFile {
                    name: "services.toml".to_owned(),
                    text: format!("[service.web]\nport = {number}\n").into(),
                },
                SourceFile {
                    name: "sites/fra.toml".to_owned(),
                    text: "[location.fra]\n".to_owned().into(),
                },
            ],
        },
    }
}

#[test]
fn commit_then_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), DEFAULT_KEEP_PREVIOUS).unwrap();
        assert!(store.load_current().unwrap().current.is_none());
        store.commit(&generation(1)).unwrap();
        store.commit(&generation(2)).unwrap();
    }
    let store = StateStore::open(dir.path(), DEFAULT_KEEP_PREVIOUS).unwrap();
    let recovered = store.load_current().unwrap();
    assert!(recovered.skipped.is_empty());
    assert_eq!(recovered.current, Some(generation(2)));
    assert_eq!(store.load(1).unwrap(), generation(1));
    let listed = store.listed_generations();
    assert_eq!(listed, vec![2, 1]);
}

#[test]
fn commit_refuses_a_generation_that_is_not_newer() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    store.commit(&generation(5)).unwrap();
    let error = store.commit(&generation(5)).unwrap_err();
    assert!(
        matches!(error, StateError::NotNewer { new: 5, newest: 5 }),
        "{error}"
    );
    assert!(matches!(
        store.commit(&generation(4)),
        Err(StateError::NotNewer { .. })
    ));
}

#[test]
fn torn_temp_file_is_ignored_and_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 3).unwrap();
        store.commit(&generation(1)).unwrap();
    }
    // A crash between create and rename leaves a half-written temp file behind.
    let torn = dir
        .path()
        .join(GENERATIONS_DIR)
        .join(".tmp-00000000000000000002.json-999-0");
    fs::write(&torn, b"{\"format\":1,\"meta\":{\"gener").unwrap();
    let torn_drain = dir.path().join(".tmp-drain.json-999-1");
    fs::write(&torn_drain, b"{").unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    assert!(!torn.exists());
    assert!(!torn_drain.exists());
    let recovered = store.load_current().unwrap();
    assert!(recovered.skipped.is_empty());
    assert_eq!(recovered.current.unwrap().meta.generation, 1);
}

#[test]
fn corrupt_current_falls_back_to_last_known_good_with_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    store.commit(&generation(1)).unwrap();
    store.commit(&generation(2)).unwrap();
    let current = dir
        .path()
        .join(GENERATIONS_DIR)
        .join("00000000000000000002.json");
    fs::write(&current, b"\x00\x00garbage").unwrap();
    let recovered = store.load_current().unwrap();
    assert_eq!(recovered.current.unwrap().meta.generation, 1);
    assert_eq!(recovered.skipped.len(), 1);
    let message = recovered.skipped[0].to_string();
    assert!(message.contains("00000000000000000002.json"), "{message}");
    assert!(message.contains("corrupt"), "{message}");
    // Moved to quarantine: no longer among the kept generations.
    assert!(matches!(store.load(2), Err(StateError::NotFound { .. })));
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn reading_a_corrupt_generation_leaves_it_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    store.commit(&generation(1)).unwrap();
    assert_eq!(store.read(1).unwrap(), generation(1));
    let path = generation_file(dir.path(), 1);
    fs::write(&path, b"{ torn").unwrap();
    assert!(store.read(1).is_err());
    assert!(path.exists(), "a read moved the file");
    assert!(quarantine_entries(dir.path()).is_empty());
    assert!(matches!(store.read(9), Err(StateError::NotFound { .. })));
    // Listing skips it but leaves it where it is when it is the protected (running) one.
    assert!(store.list_protecting(Some(1)).unwrap().is_empty());
    assert!(path.exists(), "listing moved the protected file");
    assert!(store.list().unwrap().is_empty());
    assert!(
        !path.exists(),
        "an unprotected unreadable file is quarantined as before"
    );
}

#[test]
fn all_generations_corrupt_yields_none_and_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    store.commit(&generation(1)).unwrap();
    let path = dir
        .path()
        .join(GENERATIONS_DIR)
        .join("00000000000000000001.json");
    let mut wrong = serde_json::to_value(GenerationFile {
        format: FORMAT_VERSION,
        meta: generation(7).meta,
        bundle: None,
        files: Some(Vec::new()),
    })
    .unwrap();
    fs::write(&path, wrong.to_string()).unwrap();
    let recovered = store.load_current().unwrap();
    assert!(recovered.current.is_none());
    assert!(
        recovered.skipped[0]
            .to_string()
            .contains("holds generation 7")
    );
    wrong["format"] = 99.into();
    wrong["meta"]["generation"] = 1.into();
    fs::write(&path, wrong.to_string()).unwrap();
    let recovered = store.load_current().unwrap();
    assert!(
        recovered.skipped[0]
            .to_string()
            .contains("format version 99")
    );
}

#[test]
fn pruning_keeps_current_and_n_previous() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    for number in 1..=10 {
        store.commit(&generation(number)).unwrap();
    }
    let listed = store.listed_generations();
    assert_eq!(listed, vec![10, 9, 8, 7]);
    assert!(matches!(
        store.load(6),
        Err(StateError::NotFound { generation: 6, .. })
    ));
    let files = fs::read_dir(dir.path().join(GENERATIONS_DIR))
        .unwrap()
        .count();
    assert_eq!(files, 4);
}

#[test]
fn second_open_of_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = StateStore::open(dir.path(), 3).unwrap();
    assert!(matches!(
        StateStore::open(dir.path(), 3),
        Err(StateError::Locked { .. })
    ));
}

fn generation_file(dir: &Path, number: u64) -> PathBuf {
    dir.join(GENERATIONS_DIR).join(format!("{number:020}.json"))
}

fn quarantine_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(QUARANTINE_DIR))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn corrupt_newest_generation_is_quarantined_and_commits_continue_past_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 3).unwrap();
        store.commit(&generation(1)).unwrap();
        store.commit(&generation(2)).unwrap();
    }
    fs::write(generation_file(dir.path(), 2), b"{\"format\":1,\"me").unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    let recovered = store.load_current().unwrap();
    assert_eq!(recovered.current.unwrap().meta.generation, 1);
    assert_eq!(recovered.skipped.len(), 1);
    assert_eq!(recovered.quarantined.len(), 1);
    // Moved aside, not deleted: the bytes are still there for inspection.
    assert!(!generation_file(dir.path(), 2).exists());
    assert_eq!(
        fs::read(&recovered.quarantined[0]).unwrap(),
        b"{\"format\":1,\"me"
    );
    assert_eq!(quarantine_entries(dir.path()).len(), 1);
    assert!(quarantine_entries(dir.path())[0].starts_with("00000000000000000002.json."));
    assert_eq!(store.quarantined_count(), 1);
    // The next number skips the quarantined one; a push (generation 3) commits.
    assert_eq!(store.next_generation(), 3);
    store.commit(&generation(3)).unwrap();
    assert!(matches!(
        store.commit(&generation(2)),
        Err(StateError::NotNewer { newest: 3, .. })
    ));
    drop(store);
    // After a restart the quarantined number still counts, even if every kept file is older.
    fs::remove_file(generation_file(dir.path(), 3)).unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    assert_eq!(store.next_generation(), 3);
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
    assert!(matches!(
        store.commit(&generation(2)),
        Err(StateError::NotNewer { newest: 2, .. })
    ));
    store.commit(&generation(3)).unwrap();
}

#[test]
fn corrupt_older_generation_is_quarantined_when_listed_or_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let counter = Counter::default();
    let store = StateStore::open(dir.path(), 5)
        .unwrap()
        .with_quarantine_counter(counter.clone());
    for number in 1..=4 {
        store.commit(&generation(number)).unwrap();
    }
    fs::write(generation_file(dir.path(), 2), b"not json").unwrap();
    fs::write(generation_file(dir.path(), 3), b"[]").unwrap();
    let error = store.load(3).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("quarantine"), "{message}");
    assert!(!generation_file(dir.path(), 3).exists());
    let listed = store.listed_generations();
    assert_eq!(listed, vec![4, 1]);
    assert!(!generation_file(dir.path(), 2).exists());
    assert_eq!(quarantine_entries(dir.path()).len(), 2);
    assert_eq!(counter.get(), 2);
    // Quarantining the same number twice never overwrites the first copy.
    fs::write(generation_file(dir.path(), 2), b"again").unwrap();
    assert!(store.load(2).is_err());
    assert_eq!(quarantine_entries(dir.path()).len(), 3);
    assert_eq!(counter.get(), 3);
}

#[test]
fn unreadable_generation_is_quarantined_like_a_corrupt_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    store.commit(&generation(1)).unwrap();
    // A directory where the file should be: reading it fails (EISDIR), it is not data.
    fs::create_dir(generation_file(dir.path(), 2)).unwrap();
    let recovered = store.load_current().unwrap();
    assert_eq!(recovered.current.unwrap().meta.generation, 1);
    assert!(matches!(recovered.skipped[0], StateError::Io { .. }));
    assert_eq!(recovered.quarantined.len(), 1);
    assert_eq!(store.next_generation(), 3);
}

/// Sets the process umask for the closure's duration (other tests' files are unaffected
/// beyond their mode bits, which no test here checks but this one).
fn with_umask<T>(mask: u32, body: impl FnOnce() -> T) -> T {
    let previous = rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask));
    let result = body();
    rustix::process::umask(previous);
    result
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_are_written_0600_whatever_the_umask() {
    for mask in [0o000, 0o022, 0o277] {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), 3).unwrap();
        with_umask(mask, || {
            store.commit(&generation(1)).unwrap();
            store.store_drain(&DrainState::default()).unwrap();
        });
        assert_eq!(
            mode_of(&generation_file(dir.path(), 1)),
            0o600,
            "umask {mask:o}"
        );
        assert_eq!(
            mode_of(&dir.path().join(DRAIN_FILE)),
            0o600,
            "umask {mask:o}"
        );
    }
    // A generation file left world-readable (older version, restored by hand) is tightened.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = StateStore::open(dir.path(), 3).unwrap();
        store.commit(&generation(1)).unwrap();
    }
    let path = generation_file(dir.path(), 1);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let _store = StateStore::open(dir.path(), 3).unwrap();
    assert_eq!(mode_of(&path), 0o600);
}

fn big_generation(number: u64, bytes: usize) -> StoredGeneration {
    let mut stored = generation(number);
    stored.bundle.sources[0]
        .text
        .to_mut()
        .push_str(&"#".repeat(bytes));
    stored
}

#[test]
fn full_disk_is_its_own_error_names_what_to_prune_and_changes_nothing() {
    let tmpfs = crate::test_support::SmallTmpfs::mount(256 * 1024);
    let store = StateStore::open(tmpfs.path(), 5).unwrap();
    for number in 1..=3 {
        store.commit(&big_generation(number, 20_000)).unwrap();
    }
    let filler = tmpfs.fill();
    let error = store.commit(&big_generation(4, 20_000)).unwrap_err();
    assert!(error.is_no_space(), "{error}");
    let message = error.to_string();
    assert!(message.contains("no space left"), "{message}");
    let StateError::NoSpace { prunable, .. } = &error else {
        unreachable!()
    };
    // The running generation (3) is never offered; older ones are, with their sizes.
    let offered: Vec<&Path> = prunable.iter().map(|file| file.path.as_path()).collect();
    assert!(
        offered.contains(&generation_file(tmpfs.path(), 1).as_path()),
        "{message}"
    );
    assert!(
        offered.contains(&generation_file(tmpfs.path(), 2).as_path()),
        "{message}"
    );
    assert!(
        !offered.contains(&generation_file(tmpfs.path(), 3).as_path()),
        "{message}"
    );
    assert!(prunable.iter().all(|file| file.bytes > 20_000));
    // A rollback to 1 needs 1: only 2 is offered.
    let for_rollback = store.with_prunable(
        StateError::NoSpace {
            what: "writing",
            path: tmpfs.path().to_path_buf(),
            prunable: Vec::new(),
        },
        &[1],
    );
    let StateError::NoSpace { prunable, .. } = &for_rollback else {
        unreachable!()
    };
    let offered: Vec<PathBuf> = prunable.iter().map(|file| file.path.clone()).collect();
    assert_eq!(offered, vec![generation_file(tmpfs.path(), 2)]);
    assert!(for_rollback.to_string().contains("kept generation 2"));
    // Nothing changed: 3 is current, no temp file left, 4 is not there.
    assert_eq!(
        store
            .load_current()
            .unwrap()
            .current
            .unwrap()
            .meta
            .generation,
        3
    );
    let leftovers: Vec<String> = fs::read_dir(tmpfs.path().join(GENERATIONS_DIR))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(TEMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(matches!(store.load(4), Err(StateError::NotFound { .. })));
    assert!(
        store
            .store_drain(&DrainState::default())
            .unwrap_err()
            .is_no_space()
    );
    // Once room is made, the same commit works.
    fs::remove_file(filler).unwrap();
    store.commit(&big_generation(4, 20_000)).unwrap();
    drop(store);
}

#[test]
fn drain_state_round_trips_and_defaults_to_not_drained() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), 3).unwrap();
    assert_eq!(store.load_drain().unwrap(), DrainState::default());
    let drained = DrainState {
        drained: true,
        who: "bob".to_owned(),
        reason: "maintenance".to_owned(),
        changed_at: 1_700_000_123,
        ..DrainState::default()
    };
    store.store_drain(&drained).unwrap();
    assert_eq!(store.load_drain().unwrap(), drained);
    fs::write(dir.path().join(DRAIN_FILE), b"[").unwrap();
    assert!(matches!(
        store.load_drain(),
        Err(StateError::Corrupt { .. })
    ));
}

#[test]
fn the_fleet_lock_book_round_trips_and_a_corrupt_one_is_named() {
    use crate::engine::lease::LeaseBook;
    use topologyd_api::{LeaseAction, LeaseRequest};
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(dir.path(), DEFAULT_KEEP_PREVIOUS).unwrap();
    assert_eq!(
        store.load_lease::<LeaseBook>().unwrap(),
        LeaseBook::default()
    );
    let request = LeaseRequest {
        holder: "r-1".to_owned(),
        token: 3,
        ttl_seconds: 60,
        action: LeaseAction::Acquire,
    };
    let (book, _) = LeaseBook::default()
        .decide(&request, 1_700_000_000_000)
        .unwrap();
    store.store_lease(&book).unwrap();
    drop(store);
    let store = StateStore::open(dir.path(), DEFAULT_KEEP_PREVIOUS).unwrap();
    assert_eq!(store.load_lease::<LeaseBook>().unwrap(), book);
    let mode = fs::metadata(dir.path().join(LEASE_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, FILE_MODE);
    fs::write(dir.path().join(LEASE_FILE), b"{ torn").unwrap();
    let error = store.load_lease::<LeaseBook>().unwrap_err().to_string();
    assert!(error.contains("lease.json"), "{error}");
    assert!(error.contains("remove the file"), "{error}");
}
