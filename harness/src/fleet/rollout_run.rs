//! Running the controller: one `topoctl rollout …` process ([`RolloutRun`]) with its events
//! collected, the helpers that read those events and the journal, and the leftover-process
//! check ([`leftover_processes`]).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::{FleetError, io_error};
use crate::topologyd::{TopoctlOutput, binaries};

/// One `topoctl rollout …` process: its stdout lines (JSON events with `--json`) are collected
/// by a reader thread; stderr goes to a file. Killed (SIGKILL, with its process group) on drop.
#[derive(Debug)]
pub struct RolloutRun {
    child: Option<Child>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Every stdout line received so far.
    pub stdout: Vec<String>,
    stderr_path: PathBuf,
    _stderr_directory: tempfile::TempDir,
    started: Instant,
}

impl RolloutRun {
    pub(super) fn spawn(arguments: &[&str]) -> Result<RolloutRun, FleetError> {
        let binary = binaries()
            .map_err(|source| FleetError::Launch {
                location: "topoctl".to_string(),
                source,
            })?
            .join("topoctl");
        let stderr_directory = tempfile::Builder::new()
            .prefix("topologyd-rollout-")
            .tempdir()
            .map_err(io_error("creating a directory for topoctl's stderr"))?;
        let stderr_path = stderr_directory.path().join("stderr.log");
        let stderr =
            std::fs::File::create(&stderr_path).map_err(io_error("creating stderr.log"))?;
        let mut child = Command::new(binary)
            .arg("rollout")
            .args(arguments)
            .env_remove("TOPOCTL_DAEMON")
            .env_remove("TOPOCTL_SERVER_NAME")
            .env_remove("TOPOCTL_CERT")
            .env_remove("TOPOCTL_KEY")
            .env_remove("TOPOCTL_CA")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(io_error("starting topoctl rollout"))?;
        let (sender, lines) = channel();
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(RolloutRun {
            child: Some(child),
            lines,
            reader: Some(reader),
            stdout: Vec::new(),
            stderr_path,
            _stderr_directory: stderr_directory,
            started: Instant::now(),
        })
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the controller wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Every stdout line that parses as JSON (the `--json` events) received so far.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for the next stdout line that is a JSON event satisfying `predicate`, and returns
    /// it. Lines read on the way are kept in [`RolloutRun::stdout`].
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&Value) -> bool,
    ) -> Result<Value, FleetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("[rollout +{:.1?}] {line}", self.started.elapsed());
                    let event = serde_json::from_str::<Value>(&line).ok();
                    self.stdout.push(line);
                    if let Some(event) = event
                        && predicate(&event)
                    {
                        return Ok(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(FleetError::Failed(format!(
                        "timed out after {timeout:?} waiting for {what}; stdout so far:\n{}\n--- stderr\n{}",
                        self.stdout.join("\n"),
                        self.stderr()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(FleetError::Failed(format!(
                        "topoctl rollout closed stdout before {what}; stdout:\n{}\n--- stderr\n{}",
                        self.stdout.join("\n"),
                        self.stderr()
                    )));
                }
            }
        }
    }

    /// SIGKILL to the controller's process group: a crash, as far as the controller knows.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::peers::process::signal_group(&child, "KILL");
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            eprintln!("[rollout +{:.1?}] {line}", self.started.elapsed());
            self.stdout.push(line);
        }
    }

    /// Waits (at most `timeout`, then kills it) for the controller to exit; returns its exit
    /// code and everything it printed.
    pub fn wait(&mut self, timeout: Duration) -> Result<TopoctlOutput, FleetError> {
        let deadline = Instant::now() + timeout;
        let Some(mut child) = self.child.take() else {
            return Err(FleetError::Failed("topoctl rollout is not running".into()));
        };
        let status = loop {
            while let Ok(line) = self.lines.try_recv() {
                eprintln!("[rollout +{:.1?}] {line}", self.started.elapsed());
                self.stdout.push(line);
            }
            match child.try_wait().map_err(io_error("waiting for topoctl"))? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    self.child = Some(child);
                    self.kill();
                    return Err(FleetError::Failed(format!(
                        "topoctl rollout still running after {timeout:?}; killed. stdout:\n{}\n--- stderr\n{}",
                        self.stdout.join("\n"),
                        self.stderr()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.drain();
        Ok(TopoctlOutput {
            code: status.code(),
            stdout: self.stdout.join("\n"),
            stderr: self.stderr(),
        })
    }
}

impl Drop for RolloutRun {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Processes whose command line contains one of `markers` (see
/// [`TestFleet::process_markers`]), as `pid: command line`. Reads `/proc`.
/// The JSON events of `topoctl rollout --json` output, one per line (other lines skipped).
pub fn rollout_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// An event's `event` name (empty if absent).
pub fn event_name(event: &Value) -> &str {
    event_field(event, "event")
}

/// A string field of an event or audit record (empty if absent or not a string).
pub fn event_field<'a>(event: &'a Value, name: &str) -> &'a str {
    event.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The last record of a rollout state directory's journal (empty if there is none).
pub fn journal_tail(state_dir: &Path) -> String {
    std::fs::read_to_string(state_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

pub fn leftover_processes(markers: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|byte| byte.is_ascii_digit()) || pid == own {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command_line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if markers
            .iter()
            .any(|marker| !marker.is_empty() && command_line.contains(marker.as_str()))
        {
            found.push(format!("{pid}: {}", command_line.trim()));
        }
    }
    found
}
