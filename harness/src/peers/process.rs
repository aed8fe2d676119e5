//! Process supervision for the launched daemons and their control commands.
//!
//! A daemon runs in the foreground as the leader of a new process group (`process_group(0)`), so
//! that one `kill -SIG -PGID` reaches it and every helper it forks. Signals go through the `kill`
//! program rather than libc, which keeps this crate free of `unsafe`. Control commands run with a
//! timeout, because a wedged control socket must fail a test, not hang it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Daemon, Error, Result};

/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How much of a log file failure messages include.
const LOG_TAIL_BYTES: u64 = 4000;

/// A running daemon; dropping it kills its process group.
#[derive(Debug)]
pub(crate) struct DaemonProcess {
    daemon: Daemon,
    /// Behind a mutex so that queries, `stop` and `kill` all work through `&self`.
    child: Mutex<Option<Child>>,
    log_path: PathBuf,
}

impl DaemonProcess {
    /// Starts `command` in its own process group with stdout and stderr appended to `log_path`.
    pub(crate) fn spawn(
        daemon: Daemon,
        mut command: Command,
        log_path: &Path,
    ) -> Result<DaemonProcess> {
        use std::os::unix::process::CommandExt;
        let io_error = |context: String| {
            move |source| Error::Io {
                daemon,
                context,
                source,
            }
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(io_error(format!("open {}", log_path.display())))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(io_error(format!("duplicate {}", log_path.display())))?;
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0);
        let child = command.spawn().map_err(|source| Error::Spawn {
            daemon,
            command: describe(&command),
            source,
        })?;
        Ok(DaemonProcess {
            daemon,
            child: Mutex::new(Some(child)),
            log_path: log_path.to_path_buf(),
        })
    }

    /// Fails with the log tail if the daemon has exited.
    pub(crate) fn check_running(&self) -> Result<()> {
        let daemon = self.daemon;
        let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(child) = guard.as_mut() else {
            return Err(Error::Exited {
                daemon,
                status: "stopped by the harness".to_string(),
                log: self.log_tail(),
            });
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                daemon,
                status: status.to_string(),
                log: self.log_tail(),
            }),
            Err(source) => Err(Error::Io {
                daemon,
                context: "wait for the daemon".to_string(),
                source,
            }),
        }
    }

    /// SIGTERM to the group, then SIGKILL if it has not exited after a grace period.
    pub(crate) fn stop(&self) -> Result<()> {
        let Some(mut child) = self.take_child() else {
            return Ok(());
        };
        signal_group(&child, "TERM");
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                // The leader is gone; helpers may linger in the group.
                signal_group(&child, "KILL");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill_child(child)
    }

    /// SIGKILL to the whole group at once.
    pub(crate) fn kill(&self) -> Result<()> {
        match self.take_child() {
            Some(child) => self.kill_child(child),
            None => Ok(()),
        }
    }

    fn take_child(&self) -> Option<Child> {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn kill_child(&self, mut child: Child) -> Result<()> {
        signal_group(&child, "KILL");
        // Fall back on the leader alone if `kill` could not run.
        let _ = child.kill();
        child.wait().map(drop).map_err(|source| Error::Io {
            daemon: self.daemon,
            context: "reap the daemon".to_string(),
            source,
        })
    }

    /// Which daemon runs in it.
    pub(crate) fn daemon(&self) -> Daemon {
        self.daemon
    }

    /// The last few kilobytes of the daemon's log.
    pub(crate) fn log_tail(&self) -> String {
        file_tail(&self.log_path)
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Sends `signal` (a name such as `KILL`) to the process group `child` leads.
pub(crate) fn signal_group(child: &Child, signal: &str) {
    // The child is its own group leader, so its pid is the group id.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{}", child.id()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The last few kilobytes of a text file, or a note saying why there are none.
pub(crate) fn file_tail(path: &Path) -> String {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) => return format!("<cannot open {}: {error}>", path.display()),
    };
    let length = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs a control command to completion (or kills it after `timeout`) and returns its stdout.
/// A non-zero exit status is an error carrying stderr.
pub(crate) fn run(daemon: Daemon, command: &mut Command, timeout: Duration) -> Result<String> {
    let output = run_unchecked(daemon, command, timeout)?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(Error::Command {
            daemon,
            command: describe(command),
            status: output.status.to_string(),
            stderr: if output.stderr.trim().is_empty() {
                output.stdout
            } else {
                output.stderr
            },
        })
    }
}

/// What a finished control command printed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Like [`run`], but returns the exit status instead of failing on it.
pub(crate) fn run_unchecked(
    daemon: Daemon,
    command: &mut Command,
    timeout: Duration,
) -> Result<Output> {
    let described = describe(command);
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            daemon,
            command: described.clone(),
            source,
        })?;
    // Read both pipes on threads so a chatty command cannot block on a full pipe.
    let stdout = child.stdout.take().map(read_on_thread);
    let stderr = child.stderr.take().map(read_on_thread);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Command {
                    daemon,
                    command: described,
                    status: format!("killed after {timeout:?}"),
                    stderr: stderr.map(join_reader).unwrap_or_default(),
                });
            }
            Err(source) => {
                return Err(Error::Io {
                    daemon,
                    context: format!("wait for `{described}`"),
                    source,
                });
            }
        }
    };
    Ok(Output {
        status,
        stdout: stdout.map(join_reader).unwrap_or_default(),
        stderr: stderr.map(join_reader).unwrap_or_default(),
    })
}

fn read_on_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join_reader(handle: std::thread::JoinHandle<String>) -> String {
    handle
        .join()
        .unwrap_or_else(|_| "<reader thread panicked>".to_string())
}

/// A shell-like rendering of a command for error messages.
pub(crate) fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes a file, mapping the error to the daemon.
pub(crate) fn write_file(daemon: Daemon, path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| Error::Io {
        daemon,
        context: format!("write {}", path.display()),
        source,
    })
}

/// A temporary directory for one daemon instance, removed on drop.
pub(crate) fn temp_dir(daemon: Daemon, prefix: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|source| Error::Io {
            daemon,
            context: "create a temporary directory".to_string(),
            source,
        })
}
