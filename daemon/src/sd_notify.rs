//! systemd service notifications (`sd_notify(3)`): READY, RELOADING, STOPPING, WATCHDOG and
//! STATUS messages on `$NOTIFY_SOCKET`, and the watchdog interval from `$WATCHDOG_USEC`.
//!
//! Owns: the notify datagram socket. Written by hand on std's `UnixDatagram`: the protocol is
//! one datagram of `KEY=VALUE` lines to a path or an abstract socket (`@name`), which takes
//! fewer lines than wrapping a crate, and keeps the daemon free of another dependency with its
//! own `unsafe`. The monotonic clock for `MONOTONIC_USEC` comes from `rustix` (safe
//! `clock_gettime`).
//!
//! Must not touch: deciding *when* to notify (the engine says ready after the first
//! convergence; the signal handler says reloading and stopping; the watchdog pinger only pings
//! while the engine answers).

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// One notification field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State<'a> {
    /// `READY=1`: start-up finished (for topologyd: serving; never gated on the routers).
    Ready,
    /// `RELOADING=1`: a configuration reload started; send [`State::Ready`] when it is done.
    Reloading,
    /// `MONOTONIC_USEC=…`: `CLOCK_MONOTONIC` in µs, sent with `RELOADING=1`.
    MonotonicUsec(u64),
    /// `STOPPING=1`: shutdown started.
    Stopping,
    /// `WATCHDOG=1`: keep-alive ping.
    Watchdog,
    /// `STATUS=…`: one line shown by `systemctl status`.
    Status(&'a str),
}

/// A failure to notify systemd.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `$NOTIFY_SOCKET` names something this code does not speak to (e.g. `vsock:`).
    #[error("sd_notify: unsupported NOTIFY_SOCKET {socket:?}")]
    Unsupported {
        /// Its value.
        socket: String,
    },
    /// Sending (or creating the socket) failed.
    #[error("sd_notify: cannot notify {socket:?}: {source}")]
    Io {
        /// `$NOTIFY_SOCKET`.
        socket: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A STATUS text with a newline would break the message format.
    #[error("sd_notify: STATUS text must be one line: {text:?}")]
    MultiLineStatus {
        /// The text.
        text: String,
    },
}

/// A connection to systemd's notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
    name: String,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or `None` when the daemon does not run under
    /// systemd (or under a unit that is not `Type=notify`).
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(socket) if !socket.is_empty() => {
                Self::connect(&socket.to_string_lossy()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// A notifier for a socket path, or an abstract socket written `@name`.
    pub fn connect(socket: &str) -> Result<Self, NotifyError> {
        let io_error = |source| NotifyError::Io {
            socket: socket.to_owned(),
            source,
        };
        let address = if let Some(abstract_name) = socket.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes()).map_err(io_error)?
        } else if socket.starts_with('/') {
            SocketAddr::from_pathname(socket).map_err(io_error)?
        } else {
            return Err(NotifyError::Unsupported {
                socket: socket.to_owned(),
            });
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound().map_err(io_error)?,
            address,
            name: socket.to_owned(),
        })
    }

    /// Sends the fields as one datagram.
    pub fn notify(&self, states: &[State<'_>]) -> Result<(), NotifyError> {
        let message = format_message(states)?;
        self.socket
            .send_to_addr(message.as_bytes(), &self.address)
            .map(drop)
            .map_err(|source| NotifyError::Io {
                socket: self.name.clone(),
                source,
            })
    }

    /// `READY=1` with a status line.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Ready, State::Status(status)])
    }

    /// `RELOADING=1` with the current `MONOTONIC_USEC` and a status line.
    pub fn reloading(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[
            State::Reloading,
            State::MonotonicUsec(monotonic_usec()),
            State::Status(status),
        ])
    }

    /// `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Stopping, State::Status(status)])
    }

    /// `WATCHDOG=1`.
    pub fn watchdog(&self) -> Result<(), NotifyError> {
        self.notify(&[State::Watchdog])
    }

    /// `STATUS=…`.
    pub fn status(&self, status: &str) -> Result<(), NotifyError> {
        self.notify(&[State::Status(status)])
    }
}

fn format_message(states: &[State<'_>]) -> Result<String, NotifyError> {
    let mut message = String::new();
    for state in states {
        match state {
            State::Ready => message.push_str("READY=1\n"),
            State::Reloading => message.push_str("RELOADING=1\n"),
            State::MonotonicUsec(usec) => message.push_str(&format!("MONOTONIC_USEC={usec}\n")),
            State::Stopping => message.push_str("STOPPING=1\n"),
            State::Watchdog => message.push_str("WATCHDOG=1\n"),
            State::Status(text) if text.contains('\n') => {
                return Err(NotifyError::MultiLineStatus {
                    text: (*text).to_owned(),
                });
            }
            State::Status(text) => message.push_str(&format!("STATUS={text}\n")),
        }
    }
    Ok(message)
}

/// `CLOCK_MONOTONIC` in microseconds, as systemd expects in `MONOTONIC_USEC`.
pub fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let micros = u64::try_from(now.tv_nsec / 1_000).unwrap_or(0);
    seconds.saturating_mul(1_000_000).saturating_add(micros)
}

/// The watchdog timeout systemd enforces (`$WATCHDOG_USEC`, if `$WATCHDOG_PID` is unset or
/// this process). Ping at half of it.
pub fn watchdog_timeout() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    parse_watchdog(usec.as_deref(), pid.as_deref(), std::process::id())
}

fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(own_pid)
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buffer = [0u8; 1024];
        let length = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn sends_notifications_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let systemd = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.to_str().unwrap()).unwrap();

        notifier.ready("converged: generation 7").unwrap();
        assert_eq!(
            receive(&systemd),
            "READY=1\nSTATUS=converged: generation 7\n"
        );
        notifier.watchdog().unwrap();
        assert_eq!(receive(&systemd), "WATCHDOG=1\n");
        notifier.reloading("reloading config").unwrap();
        let reloading = receive(&systemd);
        let lines: Vec<&str> = reloading.lines().collect();
        assert_eq!(lines[0], "RELOADING=1");
        let usec: u64 = lines[1]
            .strip_prefix("MONOTONIC_USEC=")
            .unwrap()
            .parse()
            .unwrap();
        assert!(usec > 0);
        assert_eq!(lines[2], "STATUS=reloading config");
        notifier.stopping("draining").unwrap();
        assert_eq!(receive(&systemd), "STOPPING=1\nSTATUS=draining\n");
        assert!(matches!(
            notifier.status("two\nlines"),
            Err(NotifyError::MultiLineStatus { .. })
        ));
    }

    #[test]
    fn sends_notifications_to_an_abstract_socket() {
        let name = format!("topologyd-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let systemd = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::connect(&format!("@{name}")).unwrap();
        notifier.status("starting").unwrap();
        assert_eq!(receive(&systemd), "STATUS=starting\n");
    }

    #[test]
    fn unsupported_and_unreachable_sockets_are_errors() {
        assert!(matches!(
            Notifier::connect("vsock:2:1234"),
            Err(NotifyError::Unsupported { .. })
        ));
        let notifier = Notifier::connect("/nonexistent/notify.sock").unwrap();
        assert!(matches!(notifier.ready("x"), Err(NotifyError::Io { .. })));
    }

    #[test]
    fn watchdog_timeout_honours_pid_and_rejects_garbage() {
        assert_eq!(
            parse_watchdog(Some("30000000"), None, 42),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_watchdog(Some("30000000"), Some("42"), 42),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_watchdog(Some("30000000"), Some("41"), 42), None);
        assert_eq!(parse_watchdog(Some("0"), None, 42), None);
        assert_eq!(parse_watchdog(Some("soon"), None, 42), None);
        assert_eq!(parse_watchdog(None, None, 42), None);
    }
}
