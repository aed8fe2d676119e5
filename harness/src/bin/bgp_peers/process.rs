//! The benchmark's processes: each daemon leads its own process group (listed in `--pids`,
//! killed on drop), commands with a timeout, and RSS summed over a process group.
//!
//! Must not touch: processes it did not start (only groups it leads, and processes whose
//! command line names a run's own directory).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::Result;

/// A child process leading its own process group; the group is killed on drop.
#[derive(Debug)]
pub(crate) struct Process {
    pub(crate) child: Child,
}

impl Process {
    /// Starts `command` with stderr (and stdout, unless the caller piped it) into `log`.
    pub(crate) fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        pids: Option<&Path>,
    ) -> Result<Process> {
        Process::spawn_with(name, &mut command, log, pids, false)
    }

    pub(crate) fn spawn_with(
        name: &str,
        command: &mut Command,
        log: &Path,
        pids: Option<&Path>,
        stdout_piped: bool,
    ) -> Result<Process> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        if !stdout_piped {
            command.stdout(out);
        }
        let child = command
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|error| format!("starting {name} ({:?}): {error}", command.get_program()))?;
        if let Some(pids) = pids {
            let _ = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(pids)
                .and_then(|mut file| writeln!(file, "{}", child.id()));
        }
        Ok(Process { child })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name such as `TERM`) to the whole process group.
    pub(crate) fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([
                format!("-{signal}"),
                "--".into(),
                format!("-{}", self.pid()),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

pub(crate) fn run_command(program: &str, arguments: &[&str], timeout: Duration) -> Result<String> {
    let mut child = Command::new(program)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("{program}: {error}"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let text = reader.join().unwrap_or_default();
                return if status.success() {
                    Ok(text)
                } else {
                    Err(format!("{program} {arguments:?}: {status}: {text}"))
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{program} {arguments:?}: timed out after {timeout:?}"
                ));
            }
        }
    }
}

/// Peak resident set (VmHWM) summed over every process of the process group `group`.
pub(crate) fn group_peak_rss(group: u32) -> u64 {
    group_status(group, "VmHWM:")
}

/// `field` (a `kB` line of /proc/PID/status) summed over every process of the group `group`.
pub(crate) fn group_status(group: u32, field: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 5 (pgrp) follows the parenthesised command name.
        let Some(after) = stat.rsplit_once(')').map(|(_, after)| after) else {
            continue;
        };
        let pgrp = after
            .split_whitespace()
            .nth(2)
            .and_then(|field| field.parse::<u32>().ok());
        if pgrp != Some(group) {
            continue;
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            total += status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0)
                * 1024;
        }
    }
    total
}

/// Kills every process whose command line mentions `directory` (helpers that left their
/// process group, such as ExaBGP's API process).
pub(crate) fn kill_mentioning(directory: &Path) {
    let needle = directory.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&command_line).contains(&needle) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(0))
}

pub(crate) fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|error| format!("writing {}: {error}", path.display()))
}
