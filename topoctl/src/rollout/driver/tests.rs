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
