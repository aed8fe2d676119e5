//! The `topoctl rollout` subcommands in the etcd mode (`--etcd ENDPOINTS --etcd-prefix PREFIX`):
//! `start` opens its journal in etcd as the elected leader; `resume` tells the living leader,
//! takes over a leaderless rollout, or (`--standby`) waits for the leader to die and takes over;
//! `abort`, `pause`, `promote` go through the leader; `status` reads the journal and the leader
//! key.
//!
//! Owns: the etcd side of the commands (leadership before any write, the takeover's replay).
//!
//! Must not touch: the preflight and the driving of the rollout (`commands.rs`, `driver.rs`).

use super::EtcdOptions;
use super::session::{CampaignError, EtcdJournal, Session};
use crate::rollout::commands::{
    ACKNOWLEDGE_TIMEOUT, RunFlags, continue_rollout, fail, report_status,
};
use crate::rollout::driver::ControlLine;
use crate::rollout::journal::{Command, Journal, Line, Record, Started};
use crate::rollout::{EXIT_COMPLETED, EXIT_ERROR};

fn led_message(session: &Session, holder: &str, token: i64) -> String {
    format!(
        "a controller already leads {} ({holder}, token {token}); `topoctl rollout resume --standby` waits to take over",
        session.keys().describe()
    )
}

/// The leadership and a new (empty) journal for `rollout start`.
pub fn open_for_start(options: &EtcdOptions, json: bool) -> Result<Journal, String> {
    let session = Session::connect(options, json)?;
    let leadership = match session.campaign(false) {
        Ok(leadership) => leadership,
        Err(CampaignError::Led(leader)) => {
            return Err(led_message(&session, &leader.holder, leader.token));
        }
        Err(CampaignError::Etcd(message)) => return Err(message),
    };
    let (lines, revision) = session.read_journal()?;
    if !lines.is_empty() {
        session.resign(&leadership);
        return Err(format!(
            "{} already holds a rollout journal; use `topoctl rollout resume --etcd` or another --etcd-prefix",
            session.keys().describe()
        ));
    }
    eprintln!(
        "topoctl: leading {} (token {})",
        session.keys().describe(),
        leadership.fence.token
    );
    Ok(Journal::remote(Box::new(EtcdJournal::new(
        session, leadership, 0, revision,
    ))))
}

/// The journal's `started` record and every line.
fn split_started(session: &Session, lines: Vec<Line>) -> Result<(Box<Started>, Vec<Line>), String> {
    match lines.first().map(|line| &line.record) {
        Some(Record::Started(started)) => Ok((started.clone(), lines)),
        Some(_) => Err(format!(
            "{}: the first journal record is not `started`",
            session.keys().describe()
        )),
        None => Err(format!(
            "{} holds no rollout journal",
            session.keys().describe()
        )),
    }
}

/// Becomes the leader (waiting for it with `standby`), replays the journal and drives the
/// rollout to its end here.
fn take_over(session: Session, abort: bool, standby: bool, flags: &RunFlags) -> i32 {
    let json = flags.json;
    if standby {
        eprintln!("topoctl: standing by for {}", session.keys().describe());
    }
    let leadership = match session.campaign(standby) {
        Ok(leadership) => leadership,
        Err(CampaignError::Led(leader)) => {
            return fail(json, &led_message(&session, &leader.holder, leader.token));
        }
        Err(CampaignError::Etcd(message)) => return fail(json, &message),
    };
    let read = session
        .read_journal()
        .and_then(|(lines, revision)| Ok((split_started(&session, lines)?, revision)));
    let ((started, lines), revision) = match read {
        Ok(read) => read,
        Err(message) => {
            session.resign(&leadership);
            return fail(json, &message);
        }
    };
    eprintln!(
        "topoctl: leading {} (token {}) after {} journal record(s)",
        session.keys().describe(),
        leadership.fence.token,
        lines.len()
    );
    let existing = lines.len() as u64;
    continue_rollout(
        started,
        &lines,
        move || {
            Ok(Journal::remote(Box::new(EtcdJournal::new(
                session, leadership, existing, revision,
            ))))
        },
        std::path::Path::new(""),
        abort,
        flags,
    )
}

/// Puts a control command and waits for the leader to journal it.
fn send_command(session: &Session, command: Command) -> Result<(), String> {
    let control = ControlLine::new(command);
    session.put_control(&control)?;
    if control.acknowledged(|| session.read_journal().ok().map(|(lines, _)| lines)) {
        return Ok(());
    }
    Err(format!(
        "the leader of {} did not acknowledge `{}` within {ACKNOWLEDGE_TIMEOUT:?}",
        session.keys().describe(),
        command.as_str()
    ))
}

fn control_with(session: &Session, command: Command) -> i32 {
    match session.leader() {
        Ok(Some(_)) => {}
        Ok(None) => {
            let described = session.keys().describe();
            return fail(
                false,
                &format!(
                    "no controller leads {described}; `topoctl rollout resume --etcd …` continues the rollout, `abort` rolls it back"
                ),
            );
        }
        Err(message) => return fail(false, &message),
    }
    match send_command(session, command) {
        Ok(()) => {
            println!("{}: acknowledged by the controller", command.as_str());
            EXIT_COMPLETED
        }
        Err(message) => fail(false, &message),
    }
}

/// `topoctl rollout pause|promote --etcd` (and `resume`/`abort` through a living leader).
pub fn control(options: &EtcdOptions, command: Command) -> i32 {
    match Session::connect(options, false) {
        Ok(session) => control_with(&session, command),
        Err(message) => fail(false, &message),
    }
}

/// Whether a leader holds the prefix (an error when etcd cannot say).
fn leader_alive(session: &Session) -> Result<bool, String> {
    session.leader().map(|leader| leader.is_some())
}

/// `topoctl rollout resume --etcd [--standby]`.
pub fn resume(options: &EtcdOptions, standby: bool, flags: &RunFlags) -> i32 {
    let session = match Session::connect(options, flags.json) {
        Ok(session) => session,
        Err(message) => return fail(flags.json, &message),
    };
    if !standby {
        match leader_alive(&session) {
            Ok(true) => return control_with(&session, Command::Resume),
            Ok(false) => {}
            Err(message) => return fail(flags.json, &message),
        }
    }
    take_over(session, false, standby, flags)
}

/// `topoctl rollout abort --etcd`: through the leader, or by taking over and rolling back here.
pub fn abort(options: &EtcdOptions, flags: &RunFlags) -> i32 {
    let session = match Session::connect(options, flags.json) {
        Ok(session) => session,
        Err(message) => return fail(flags.json, &message),
    };
    match leader_alive(&session) {
        Ok(true) => control_with(&session, Command::Abort),
        Ok(false) => take_over(session, true, false, flags),
        Err(message) => fail(flags.json, &message),
    }
}

/// `topoctl rollout status --etcd`: the journal's state and the leader.
pub fn status(options: &EtcdOptions, json: bool) -> i32 {
    let session = match Session::connect(options, json) {
        Ok(session) => session,
        Err(message) => return fail(json, &message),
    };
    let read = session
        .read_journal()
        .and_then(|(lines, _)| split_started(&session, lines));
    let (started, lines) = match read {
        Ok(read) => read,
        Err(message) => return fail(json, &message),
    };
    let leader = match session.leader() {
        Ok(leader) => leader,
        Err(message) => return fail(json, &message),
    };
    let described = match &leader {
        Some(leader) => format!(
            "running: leader {} (token {}, lease alive)",
            leader.holder, leader.token
        ),
        None => "not running (no leader holds the lease)".to_string(),
    };
    let token = leader.as_ref().map(|leader| leader.token.unsigned_abs());
    let code = report_status(
        &started,
        &lines,
        leader.is_some(),
        Some(&described),
        token,
        json,
    );
    if code == EXIT_COMPLETED {
        EXIT_COMPLETED
    } else {
        EXIT_ERROR
    }
}
