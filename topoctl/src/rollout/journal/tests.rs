//! Tests of `journal.rs`.

use super::*;

pub(crate) fn started() -> Started {
    Started {
        rollout: "r1".into(),
        old_hash: "old".into(),
        new_hash: "new".into(),
        old_hash_previous_form: "old-v1".into(),
        new_hash_previous_form: "new-v1".into(),
        intent: vec!["service:resolver".into()],
        waves: vec![],
        gates: vec![],
        locations: vec![],
        timeout_seconds: 30,
        lease_seconds: 60,
        before: BTreeMap::new(),
        old_bundle: SourceBundle { sources: vec![] },
        new_bundle: SourceBundle { sources: vec![] },
    }
}

/// A daemon of the previous release reports the old and the new topology by their hashes in
/// its canonical form: they read as this release's; any other hash (or none) reads as itself.
/// A journal written before the forms recognises nothing more.
#[test]
fn hashes_of_the_previous_form_read_as_this_releases() {
    let started = started();
    assert_eq!(started.in_current_form("new-v1"), "new");
    assert_eq!(started.in_current_form("old-v1"), "old");
    assert_eq!(started.in_current_form("new"), "new");
    assert_eq!(started.in_current_form("other"), "other");
    assert_eq!(started.in_current_form(""), "");
    let mut line = serde_json::to_value(&started).unwrap();
    let fields = line.as_object_mut().unwrap();
    fields.remove("old_hash_previous_form");
    fields.remove("new_hash_previous_form");
    let older: Started = serde_json::from_value(line).unwrap();
    assert_eq!(older.in_current_form("new-v1"), "new-v1");
    assert_eq!(older.in_current_form(""), "");
    assert_eq!(older.in_current_form("new"), "new");
}

#[test]
fn records_round_trip_through_the_file_and_a_torn_tail_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(dir.path()).unwrap();
    let records = vec![
        Record::Started(Box::new(started())),
        Record::WaveStarted { wave: 0 },
        Record::Applying {
            location: "ams01".into(),
            expected_generation: 4,
        },
        Record::Applied {
            location: "ams01".into(),
            generation: 5,
        },
        Record::Finished {
            outcome: Outcome::Completed,
        },
    ];
    for record in &records {
        journal.append(record).unwrap();
    }
    let (started_record, lines) = read_journal(dir.path()).unwrap();
    assert_eq!(started_record.rollout, "r1");
    let read: Vec<Record> = lines.into_iter().map(|line| line.record).collect();
    assert_eq!(read, records);
    let mut text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
    text.push_str("{\"time\":1.0,\"record\":\"appl");
    let (_, lines) = parse_journal(&text, Path::new("j")).unwrap();
    assert_eq!(lines.len(), records.len());
    assert!(matches!(
        Journal::create(dir.path()),
        Err(JournalError::Exists { .. })
    ));
}

#[test]
fn a_corrupt_line_in_the_middle_is_an_error_and_the_first_record_must_be_started() {
    let text = "{\"time\":1.0,\"record\":\"resumed\"}\n";
    assert!(matches!(
        parse_journal(text, Path::new("j")),
        Err(JournalError::NoStart { .. })
    ));
    let text = "garbage\n{\"time\":1.0,\"record\":\"resumed\"}\n";
    assert!(matches!(
        parse_journal(text, Path::new("j")),
        Err(JournalError::Corrupt { line: 1, .. })
    ));
}

#[test]
fn the_json_form_is_flat_and_tagged() {
    let line = Line {
        time: 2.5,
        record: Record::Applied {
            location: "ams01".into(),
            generation: 7,
        },
    };
    assert_eq!(
        serde_json::to_string(&line).unwrap(),
        r#"{"time":2.5,"record":"applied","location":"ams01","generation":7}"#
    );
    assert_eq!(line.record.event_name(), "location_applied");
}
