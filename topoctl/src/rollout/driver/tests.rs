//! Tests of `driver.rs`.

use super::*;
use std::io::Write as _;

#[test]
fn control_lines_are_read_once_and_partial_lines_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONTROL_FILE);
    assert_eq!(read_control(&path, 0), (vec![], 0));
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"{\"id\":\"1\",\"command\":\"pause\"}\n{\"id\":\"2\",\"comm")
        .unwrap();
    let (commands, offset) = read_control(&path, 0);
    assert_eq!(
        commands,
        vec![ControlLine {
            id: "1".into(),
            command: Command::Pause
        }]
    );
    file.write_all(b"and\":\"abort\"}\n").unwrap();
    let (commands, end) = read_control(&path, offset);
    assert_eq!(commands[0].command, Command::Abort);
    assert_eq!(read_control(&path, end), (vec![], end));
}

/// An effect task that panics (a bug, an overflow) is not dropped silently: its location is
/// stalled (in doubt, reported), so the rollout pauses or rolls back instead of hanging.
#[tokio::test]
async fn a_panicked_effect_task_stalls_its_location() {
    let effect = Effect::Apply {
        location: "ams1".into(),
        expected_generation: 3,
    };
    assert_eq!(effect_location(&effect).as_deref(), Some("ams1"));
    assert_eq!(
        effect_location(&Effect::Evaluate {
            wave: 0,
            gate: 0,
            epoch: 1
        }),
        None
    );
    let mut tasks = tokio::task::JoinSet::new();
    let id = tasks
        .spawn(async { panic!("overflow when adding a duration to an instant") })
        .id();
    let error = tasks.join_next_with_id().await.unwrap().unwrap_err();
    assert_eq!(error.id(), id);
    match task_failed("ams1".into(), &error) {
        Event::Stalled { location, reason } => {
            assert_eq!(location, "ams1");
            assert!(reason.contains("in doubt"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
