//! Tests of `commands.rs`.

use super::*;
use crate::rollout::journal::Outcome;

#[test]
fn the_lock_tells_whether_a_controller_runs() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!controller_running(dir.path()));
    let held = try_lock(dir.path()).unwrap().unwrap();
    assert!(controller_running(dir.path()));
    assert!(try_lock(dir.path()).unwrap().is_none());
    drop(held);
    assert!(!controller_running(dir.path()));
}

#[test]
fn control_commands_need_a_journal_and_a_controller() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(control(dir.path(), Command::Pause), EXIT_ERROR);
    let mut journal = Journal::create(dir.path()).unwrap();
    journal
        .append(&Record::Started(Box::new(Started {
            rollout: "r".into(),
            old_hash: "a".into(),
            new_hash: "b".into(),
            old_hash_previous_form: String::new(),
            new_hash_previous_form: String::new(),
            intent: vec![],
            waves: vec![],
            gates: vec![],
            locations: vec![],
            timeout_seconds: 1,
            lease_seconds: 60,
            before: BTreeMap::new(),
            old_bundle: SourceBundle { sources: vec![] },
            new_bundle: SourceBundle { sources: vec![] },
        })))
        .unwrap();
    assert_eq!(control(dir.path(), Command::Promote), EXIT_ERROR);
    journal
        .append(&Record::Finished {
            outcome: Outcome::Completed,
        })
        .unwrap();
    assert_eq!(status(dir.path(), true), EXIT_COMPLETED);
    assert_eq!(status(dir.path(), false), EXIT_COMPLETED);
}

#[test]
fn a_running_controller_acknowledges_through_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut journal = Journal::create(&path).unwrap();
    journal
        .append(&Record::Started(Box::new(Started {
            rollout: "r".into(),
            old_hash: "a".into(),
            new_hash: "b".into(),
            old_hash_previous_form: String::new(),
            new_hash_previous_form: String::new(),
            intent: vec![],
            waves: vec![],
            gates: vec![],
            locations: vec![],
            timeout_seconds: 1,
            lease_seconds: 60,
            before: BTreeMap::new(),
            old_bundle: SourceBundle { sources: vec![] },
            new_bundle: SourceBundle { sources: vec![] },
        })))
        .unwrap();
    let lock = try_lock(&path).unwrap().unwrap();
    // A stand-in controller: reads the control file, journals what it reads.
    let controller_dir = path.clone();
    let controller = std::thread::spawn(move || {
        let control_path = controller_dir.join(CONTROL_FILE);
        let mut offset = 0;
        for _ in 0..200 {
            let (commands, next) = driver::read_control(&control_path, offset);
            offset = next;
            if let Some(line) = commands.into_iter().next() {
                journal
                    .append(&Record::Command {
                        id: line.id,
                        command: line.command,
                    })
                    .unwrap();
                return line.command;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Command::Resume
    });
    assert_eq!(control(&path, Command::Pause), EXIT_COMPLETED);
    assert_eq!(controller.join().unwrap(), Command::Pause);
    drop(lock);
}

#[test]
fn intent_lines_are_checked_and_kept_in_order() {
    let (intent, lines) = parse_intent(
        &["service:resolver".into()],
        &["blast-radius".into(), "global-withdrawal:1.1.1.0/24".into()],
    )
    .unwrap();
    assert!(intent.services.contains("resolver"));
    assert_eq!(
        lines,
        [
            "service:resolver",
            "blast-radius",
            "global-withdrawal:1.1.1.0/24"
        ]
    );
    assert!(parse_intent(&["resolver".into()], &[]).is_err());
    assert!(parse_intent(&[], &["everything".into()]).is_err());
}

/// A fleet runs the running topology when every location reports one of its two names (the
/// hash in this release's canonical form or in the previous one's: daemons not yet upgraded),
/// in one group or two; a group reporting anything else is a fleet not converged, or, alone,
/// a running bundle that is not what the fleet runs.
#[test]
fn a_fleet_runs_the_topology_in_either_canonical_form() {
    let names = ["current".to_string(), "previous".to_string()];
    let fleet = |groups: &[(&str, &[&str])]| -> BTreeMap<String, Vec<String>> {
        groups
            .iter()
            .map(|(hash, locations)| {
                (
                    hash.to_string(),
                    locations.iter().map(|name| name.to_string()).collect(),
                )
            })
            .collect()
    };
    for runs in [
        fleet(&[("current", &["ams01", "fra01"])]),
        fleet(&[("previous", &["ams01", "fra01"])]),
        fleet(&[("current", &["ams01"]), ("previous", &["fra01"])]),
    ] {
        assert_eq!(check_fleet_runs(&runs, &names, "ams01"), Ok(()), "{runs:?}");
    }
    let mixed = check_fleet_runs(
        &fleet(&[("current", &["ams01"]), ("other", &["fra01"])]),
        &names,
        "ams01",
    )
    .unwrap_err();
    assert!(mixed.contains("not converged"), "{mixed}");
    assert!(mixed.contains("other: fra01"), "{mixed}");
    let elsewhere =
        check_fleet_runs(&fleet(&[("other", &["ams01", "fra01"])]), &names, "ams01").unwrap_err();
    assert!(
        elsewhere.contains(
            "from ams01 compiles to hash current (previous in the canonical form of the releases before), but the fleet reports other"
        ),
        "{elsewhere}"
    );
}
