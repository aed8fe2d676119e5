//! The rollout journal: append-only JSON lines in the state directory (`journal.jsonl`), one
//! [`Record`] per line, each fsync'd before the controller acts on it; the directory is fsync'd
//! when the file is created. Replaying it ([`read_journal`], then `Machine::restore`) lets a
//! controller killed at any moment resume without applying anything twice.
//!
//! Owns: the record types (also the source of the `--json` event stream), the file format,
//! durable appends, and tolerant reading (a torn last line from a crash is ignored).
//!
//! Must not touch: what a record means for the rollout (`machine.rs` applies them), HTTP.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::driver::{CONTROL_FILE, ControlLine, read_control};
use super::waves::Wave;
use topologyd_api::SourceBundle;
use topologyd_config::fleet::{FleetLocation, GateSpec};

/// The journal's file name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// What a location ran before the rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationBefore {
    pub generation: u64,
    /// `runtime_guard_refusals` from `/v1/status` (0 when the daemon does not report it).
    pub runtime_guard_refusals: u64,
}

fn default_lease_seconds() -> u64 {
    topologyd_config::fleet::DEFAULT_LEASE_SECONDS
}

/// Everything a resumed controller needs: the plan, the fleet and both bundles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Started {
    pub rollout: String,
    pub old_hash: String,
    pub new_hash: String,
    /// `old_hash` and `new_hash` in the canonical form of the previous release, which its
    /// daemons report (`Topology::previous_form_hash_hex`); empty in a journal written before
    /// the form changed.
    #[serde(default)]
    pub old_hash_previous_form: String,
    #[serde(default)]
    pub new_hash_previous_form: String,
    /// Intent and override lines, as sent with every apply.
    pub intent: Vec<String>,
    pub waves: Vec<Wave>,
    pub gates: Vec<GateSpec>,
    pub locations: Vec<FleetLocation>,
    pub timeout_seconds: u64,
    /// The fleet lock's lease time to live (`[defaults] lease_seconds`); a journal written
    /// before the lock existed reads the default.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    pub before: BTreeMap<String, LocationBefore>,
    pub old_bundle: SourceBundle,
    pub new_bundle: SourceBundle,
}

impl Started {
    /// `hash` as a daemon reported it, in this release's canonical form: the old or the new
    /// topology's hash when it is theirs in the previous release's form (a daemon not yet
    /// upgraded), else `hash` itself.
    pub fn in_current_form<'hash>(&'hash self, hash: &'hash str) -> &'hash str {
        if hash.is_empty() {
            hash
        } else if hash == self.new_hash_previous_form {
            &self.new_hash
        } else if hash == self.old_hash_previous_form {
            &self.old_hash
        } else {
            hash
        }
    }
}

/// The result of one gate evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateResultKind {
    Pass,
    Fail,
    Inconclusive,
}

impl GateResultKind {
    /// `pass`, `fail`, `inconclusive` (metric labels, output).
    pub fn as_str(self) -> &'static str {
        match self {
            GateResultKind::Pass => "pass",
            GateResultKind::Fail => "fail",
            GateResultKind::Inconclusive => "inconclusive",
        }
    }
}

/// A control command given through the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Pause,
    Resume,
    Abort,
    Promote,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pause => "pause",
            Command::Resume => "resume",
            Command::Abort => "abort",
            Command::Promote => "promote",
        }
    }
}

/// How a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every wave passed.
    Completed,
    /// A gate failed or an apply was refused; every applied location was rolled back.
    RolledBack,
    /// Aborted by hand; every applied location was rolled back.
    Aborted,
    /// A rollback failed at some location (it still runs the new topology), or some location
    /// never answered within its stall bound (`rollback_pending` names them).
    RollbackIncomplete,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::RolledBack => "rolled_back",
            Outcome::Aborted => "aborted",
            Outcome::RollbackIncomplete => "rollback_incomplete",
        }
    }
}

/// One journal line (also one `--json` event, see [`Record::event_name`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    Started(Box<Started>),
    WaveStarted {
        wave: usize,
    },
    Applying {
        location: String,
        expected_generation: u64,
    },
    Applied {
        location: String,
        generation: u64,
    },
    ApplyFailed {
        location: String,
        reason: String,
    },
    /// An apply in doubt was settled as not done: the location is pending again.
    ApplyNotDone {
        location: String,
    },
    /// A location did not answer within its wave's stall bound; its apply or rollback stays in
    /// doubt (a later settle decides it).
    Stalled {
        location: String,
        reason: String,
        stall_seconds: u64,
    },
    Baking {
        wave: usize,
    },
    GateResult {
        wave: usize,
        gate: String,
        result: GateResultKind,
        detail: String,
        passes: u32,
        failures: u32,
        inconclusive: u32,
    },
    GateFailed {
        wave: usize,
        gate: String,
        detail: String,
    },
    WavePassed {
        wave: usize,
    },
    Promoted {
        wave: usize,
    },
    Paused {
        reason: String,
    },
    Resumed,
    Command {
        id: String,
        command: Command,
    },
    RollbackStarted {
        reason: String,
        abort: bool,
        /// In the order they will be rolled back.
        locations: Vec<String>,
    },
    RollingBack {
        location: String,
        to_generation: u64,
        expected_generation: u64,
    },
    RolledBack {
        location: String,
        generation: u64,
        verified: bool,
    },
    RollbackFailed {
        location: String,
        reason: String,
    },
    /// The rollback ends with these locations unanswered (in doubt or not rolled back);
    /// `rollout abort` retries them.
    RollbackPending {
        locations: Vec<String>,
    },
    Finished {
        outcome: Outcome,
    },
}

impl Record {
    /// The name of the `--json` event this record is shown as.
    pub fn event_name(&self) -> &'static str {
        match self {
            Record::Started(_) => "planned",
            Record::WaveStarted { .. } => "wave_started",
            Record::Applying { .. } => "location_applying",
            Record::Applied { .. } => "location_applied",
            Record::ApplyFailed { .. } => "apply_failed",
            Record::ApplyNotDone { .. } => "location_not_applied",
            Record::Stalled { .. } => "location_stalled",
            Record::Baking { .. } => "baking",
            Record::GateResult { .. } => "gate_result",
            Record::GateFailed { .. } => "gate_failed",
            Record::WavePassed { .. } => "wave_passed",
            Record::Promoted { .. } => "promoted",
            Record::Paused { .. } => "paused",
            Record::Resumed => "resumed",
            Record::Command { .. } => "command",
            Record::RollbackStarted { .. } => "rollback_started",
            Record::RollingBack { .. } => "location_rolling_back",
            Record::RolledBack { .. } => "location_rolled_back",
            Record::RollbackFailed { .. } => "rollback_failed",
            Record::RollbackPending { .. } => "rollback_pending",
            Record::Finished { outcome } => outcome.as_str(),
        }
    }
}

/// A journal line: the record and when it was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Unix seconds.
    pub time: f64,
    #[serde(flatten)]
    pub record: Record,
}

/// A journal that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {}: line {line} is not a journal record: {message}", path.display())]
    Corrupt {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("journal {}: the first record is not `started`", path.display())]
    NoStart { path: PathBuf },
    #[error(
        "{} already holds a rollout journal; use `topoctl rollout resume --state-dir` or another state directory",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error("journal {store}: {message}")]
    Remote { store: String, message: String },
}

/// Whether the writer of a remote journal still leads (its lease confirmed): asked right
/// before every call that changes a daemon, so a controller that lost its leadership makes
/// none, even in the moments before its watchdog stops it.
#[derive(Clone)]
pub struct LeadershipCheck(pub std::sync::Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl LeadershipCheck {
    /// Ok while the writer leads; why not otherwise.
    pub fn check(&self) -> Result<(), String> {
        (self.0)()
    }
}

impl std::fmt::Debug for LeadershipCheck {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("LeadershipCheck")
    }
}

/// A journal kept elsewhere than in a local file (the etcd mode): appends are durable when
/// they return, and control commands come from the same store.
pub trait RemoteJournal: Send + std::fmt::Debug {
    /// Appends one line durably (or stops the process when this controller may no longer write).
    fn append_line(&mut self, line: &Line) -> Result<(), JournalError>;
    /// Control commands given since the last call.
    fn poll_control(&mut self) -> Vec<ControlLine>;
    /// Where the journal is, for messages.
    fn describe(&self) -> String;
    /// The fencing token of the controller writing it (its claim at the daemons' fleet lock).
    fn fencing_token(&self) -> u64;
    /// Whether the controller writing it still leads.
    fn leadership_check(&self) -> LeadershipCheck;
}

/// Where an open journal appends.
#[derive(Debug)]
enum Backend {
    /// `journal.jsonl` in the state directory, and the control file next to it read from
    /// `control_offset` on.
    File {
        file: File,
        control: PathBuf,
        control_offset: u64,
    },
    Remote(Box<dyn RemoteJournal>),
}

/// The current time in unix seconds.
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

/// An open journal, appending.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    backend: Backend,
    /// Set once a `finished` record is appended (read after the journal is gone).
    finished: Arc<AtomicBool>,
}

impl Journal {
    /// Creates the journal in `dir` (which must not hold one) and fsyncs the directory.
    pub fn create(dir: &Path) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let file = match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(JournalError::Exists {
                    path: dir.to_path_buf(),
                });
            }
            Err(error) => return Err(io(error)),
        };
        File::open(dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        Ok(Journal::file(path, file, dir))
    }

    /// Opens an existing journal for appending.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Journal::file(path, file, dir))
    }

    fn file(path: PathBuf, file: File, dir: &Path) -> Journal {
        let control = dir.join(CONTROL_FILE);
        let control_offset = std::fs::metadata(&control).map_or(0, |meta| meta.len());
        Journal {
            path,
            backend: Backend::File {
                file,
                control,
                control_offset,
            },
            finished: Arc::default(),
        }
    }

    /// A journal kept in `remote` (the etcd mode).
    pub fn remote(remote: Box<dyn RemoteJournal>) -> Journal {
        Journal {
            path: PathBuf::from(remote.describe()),
            backend: Backend::Remote(remote),
            finished: Arc::default(),
        }
    }

    /// Whether a `finished` record has been appended through this journal (a flag that
    /// outlives it).
    pub fn finished_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.finished)
    }

    /// The fencing token the writer of a remote journal presents to the daemons (`None` for
    /// a local journal: the local controller's own token applies).
    pub fn fencing_token(&self) -> Option<u64> {
        match &self.backend {
            Backend::File { .. } => None,
            Backend::Remote(remote) => Some(remote.fencing_token()),
        }
    }

    /// Whether the writer of a remote journal still leads (`None` for a local journal, whose
    /// controller holds the state directory's lock for as long as it runs).
    pub fn leadership_check(&self) -> Option<LeadershipCheck> {
        match &self.backend {
            Backend::File { .. } => None,
            Backend::Remote(remote) => Some(remote.leadership_check()),
        }
    }

    /// The control commands given since the last call (from the control file next to a local
    /// journal, or from the remote store).
    pub fn poll_control(&mut self) -> Vec<ControlLine> {
        match &mut self.backend {
            Backend::File {
                control,
                control_offset,
                ..
            } => {
                let (commands, offset) = read_control(control, *control_offset);
                *control_offset = offset;
                commands
            }
            Backend::Remote(remote) => remote.poll_control(),
        }
    }

    /// Appends one record and fsyncs it; returns the line written.
    pub fn append(&mut self, record: &Record) -> Result<Line, JournalError> {
        let line = Line {
            time: unix_time(),
            record: record.clone(),
        };
        let finished = matches!(record, Record::Finished { .. });
        let file = match &mut self.backend {
            Backend::File { file, .. } => file,
            Backend::Remote(remote) => {
                remote.append_line(&line)?;
                self.finished.fetch_or(finished, Ordering::SeqCst);
                return Ok(line);
            }
        };
        let mut bytes = serde_json::to_vec(&line).map_err(|error| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(error),
        })?;
        bytes.push(b'\n');
        file.write_all(&bytes)
            .and_then(|()| file.sync_data())
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.finished.fetch_or(finished, Ordering::SeqCst);
        Ok(line)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Parses journal text. A last line without its newline (a torn write) is ignored; any other
/// unreadable line is an error.
pub fn parse_journal(text: &str, path: &Path) -> Result<(Box<Started>, Vec<Line>), JournalError> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    let mut lines = Vec::new();
    for (number, line) in complete.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).map_err(|error| JournalError::Corrupt {
            path: path.to_path_buf(),
            line: number + 1,
            message: error.to_string(),
        })?;
        lines.push(parsed);
    }
    let started = match lines.first().map(|line| &line.record) {
        Some(Record::Started(started)) => started.clone(),
        _ => {
            return Err(JournalError::NoStart {
                path: path.to_path_buf(),
            });
        }
    };
    Ok((started, lines))
}

/// Reads the journal of a state directory.
pub fn read_journal(dir: &Path) -> Result<(Box<Started>, Vec<Line>), JournalError> {
    let path = dir.join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| JournalError::Io {
        path: path.clone(),
        source,
    })?;
    parse_journal(&text, &path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
