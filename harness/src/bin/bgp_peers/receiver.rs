//! The receiver (one passive eBGP session per sender address): BIRD 2 by default, or OpenBGPD
//! (`--receiver openbgpd`); the BIRD control socket client, which also drives BIRD as a sender
//! (`senders/bird.rs`); and the OpenBGPD receiver's `bgpctl -j` reader.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use topologyd_harness::peers::alloc::{free_port, loopback_v4};

use crate::Result;
use crate::process::{Process, run_command, unix_ms, write_file};
use crate::routes::{RECEIVER_ASN, SENDER_ASN};

/// One receiving session's counters, from `show protocols all NAME`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Session {
    pub(crate) established: bool,
    /// Since-time of the current state, unix ms (the receiver runs with TZ=UTC).
    pub(crate) since_ms: Option<i64>,
    pub(crate) imported: u64,
    pub(crate) withdraws_received: u64,
}

#[derive(Debug)]
pub(crate) struct BirdControl {
    pub(crate) reader: BufReader<UnixStream>,
    pub(crate) writer: UnixStream,
}

impl BirdControl {
    pub(crate) fn connect(socket: &Path) -> Result<BirdControl> {
        let stream =
            UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut control = BirdControl {
            reader: BufReader::new(stream),
            writer,
        };
        control.read_reply()?;
        Ok(control)
    }

    /// Lines of one reply, with the reply codes stripped.
    pub(crate) fn read_reply(&mut self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = self
                .reader
                .read_line(&mut line)
                .map_err(|e| format!("birdc: {e}"))?;
            if read == 0 {
                return Err("BIRD closed its control socket".into());
            }
            let line = line.trim_end_matches('\n');
            let bytes = line.as_bytes();
            if bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) {
                let code = &line[..4];
                let last = bytes[4] == b' ';
                lines.push(line[5..].to_string());
                if last {
                    if code.starts_with('8') || code.starts_with('9') {
                        return Err(format!("BIRD: {}", lines.join("\n")));
                    }
                    return Ok(lines);
                }
            } else {
                lines.push(line.strip_prefix(' ').unwrap_or(line).to_string());
            }
        }
    }

    pub(crate) fn command(&mut self, command: &str) -> Result<Vec<String>> {
        writeln!(self.writer, "{command}").map_err(|e| format!("birdc: {e}"))?;
        self.read_reply()
    }

    /// Every session whose name starts with `r` (the receiving protocols r0, r1, ...).
    pub(crate) fn sessions(&mut self) -> Result<BTreeMap<String, Session>> {
        let lines = self.command("show protocols all \"r*\"")?;
        let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in &lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() >= 2 && words[1] == "BGP" && !line.starts_with(' ') {
                let name = words[0].to_string();
                let since = words
                    .get(4)
                    .zip(words.get(5))
                    .and_then(|(d, t)| parse_time(d, t));
                sessions.insert(
                    name.clone(),
                    Session {
                        since_ms: since,
                        ..Session::default()
                    },
                );
                current = Some(name);
                continue;
            }
            let Some(session) = current.as_ref().and_then(|name| sessions.get_mut(name)) else {
                continue;
            };
            let trimmed = line.trim();
            if let Some(state) = trimmed.strip_prefix("BGP state:") {
                session.established = state.trim() == "Established";
            } else if let Some(routes) = trimmed.strip_prefix("Routes:") {
                session.imported += first_number(routes);
            } else if let Some(withdraws) = trimmed.strip_prefix("Import withdraws:") {
                session.withdraws_received += first_number(withdraws);
            }
        }
        Ok(sessions)
    }
}

pub(crate) fn first_number(text: &str) -> u64 {
    text.split_whitespace()
        .next()
        .and_then(|word| word.parse().ok())
        .unwrap_or(0)
}

/// `2026-11-27` `19:30:00.123` (UTC) → unix milliseconds.
pub(crate) fn parse_time(date: &str, time: &str) -> Option<i64> {
    let mut ymd = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (clock, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = clock.split(':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let millis = format!("{fraction:0<3}")[..3].parse::<i64>().ok()?;
    // Days from civil (proleptic Gregorian), H. Hinnant's algorithm.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Which daemon receives the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReceiverKind {
    Bird,
    Openbgpd,
}

impl ReceiverKind {
    pub(crate) fn parse(name: &str) -> Result<ReceiverKind> {
        match name {
            "bird" => Ok(ReceiverKind::Bird),
            "openbgpd" => Ok(ReceiverKind::Openbgpd),
            other => Err(format!("unknown receiver {other}; known: bird, openbgpd")),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ReceiverKind::Bird => "BIRD",
            ReceiverKind::Openbgpd => "OpenBGPD",
        }
    }
}

/// How the receiver's sessions are read.
#[derive(Debug)]
pub(crate) enum ReceiverControl {
    Bird(BirdControl),
    Openbgpd(OpenbgpdControl),
}

impl ReceiverControl {
    /// Every receiving session (r0, r1, ...) and its counters.
    pub(crate) fn sessions(&mut self) -> Result<BTreeMap<String, Session>> {
        match self {
            ReceiverControl::Bird(control) => control.sessions(),
            ReceiverControl::Openbgpd(control) => control.sessions(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) directory: tempfile::TempDir,
    pub(crate) _process: Process,
    pub(crate) control: ReceiverControl,
    /// The listening endpoint of each receiving session r0, r1, ...
    pub(crate) endpoints: Vec<SocketAddr>,
}

impl Receiver {
    /// A receiver with one passive eBGP session per sender address (IPv4 + IPv6 unicast over
    /// IPv4 transport, import everything, export nothing, no graceful restart).
    pub(crate) fn start(
        kind: ReceiverKind,
        senders: &[Ipv4Addr],
        pids: Option<&Path>,
    ) -> Result<Receiver> {
        let directory = tempfile::Builder::new()
            .prefix("bgp-bench-receiver-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        // The daemons match an incoming connection to a session by the neighbor's address, so
        // every session has its own sender address.
        let endpoints: Vec<SocketAddr> = senders
            .iter()
            .map(|_| {
                let address = loopback_v4();
                SocketAddr::new(IpAddr::V4(address), free_port(IpAddr::V4(address)))
            })
            .collect();
        let (process, control) = match kind {
            ReceiverKind::Bird => {
                let (process, control) = launch_bird(
                    "receiver BIRD",
                    directory.path(),
                    bird_receiver_config(directory.path(), senders, &endpoints),
                    pids,
                    Duration::from_secs(20),
                    Duration::from_millis(50),
                )?;
                (process, ReceiverControl::Bird(control))
            }
            ReceiverKind::Openbgpd => {
                let (process, control) =
                    launch_openbgpd(directory.path(), senders, &endpoints, pids)?;
                (process, ReceiverControl::Openbgpd(control))
            }
        };
        Ok(Receiver {
            directory,
            _process: process,
            control,
            endpoints,
        })
    }
}

fn bird_receiver_config(
    directory: &Path,
    senders: &[Ipv4Addr],
    endpoints: &[SocketAddr],
) -> String {
    let mut config = String::new();
    let _ = writeln!(
        config,
        "log \"{}\" all;",
        directory.join("bird.log").display()
    );
    config.push_str(
        "router id 10.255.255.254;\ntimeformat protocol iso long ms;\nprotocol device {}\n",
    );
    for (index, (sender, endpoint)) in senders.iter().zip(endpoints).enumerate() {
        let _ = writeln!(
            config,
            "protocol bgp r{index} {{\n  local {} port {} as {RECEIVER_ASN};\n  neighbor {sender} as {SENDER_ASN};\n  strict bind yes;\n  multihop 1;\n  passive yes;\n  hold time 240;\n  graceful restart no;\n  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}",
            endpoint.ip(),
            endpoint.port(),
        );
    }
    config
}

/// OpenBGPD 7.7 (`/usr/sbin/bgpd`, root: its privilege-separated processes chroot into
/// `/run/openbgpd`, created if missing): one passive neighbor per sender, `fib-update no` (it
/// would otherwise install every route in the kernel), everything allowed in, nothing out, and
/// enhanced route refresh (RFC 7313) offered as BIRD offers it by default.
fn launch_openbgpd(
    directory: &Path,
    senders: &[Ipv4Addr],
    endpoints: &[SocketAddr],
    pids: Option<&Path>,
) -> Result<(Process, OpenbgpdControl)> {
    std::fs::create_dir_all("/run/openbgpd").map_err(|e| format!("/run/openbgpd: {e}"))?;
    let socket = directory.join("bgpd.sock");
    let mut config = String::new();
    let _ = writeln!(config, "socket \"{}\"", socket.display());
    let _ = writeln!(
        config,
        "AS {RECEIVER_ASN}\nrouter-id 10.255.255.254\nfib-update no"
    );
    let mut names = BTreeMap::new();
    for (index, (sender, endpoint)) in senders.iter().zip(endpoints).enumerate() {
        let _ = writeln!(
            config,
            "listen on {} port {}\nneighbor {sender} {{\n  remote-as {SENDER_ASN}\n  local-address {}\n  passive\n  holdtime 240\n  announce IPv4 unicast\n  announce IPv6 unicast\n  announce restart no\n  announce enhanced refresh yes\n}}",
            endpoint.ip(),
            endpoint.port(),
            endpoint.ip(),
        );
        names.insert(IpAddr::V4(*sender), format!("r{index}"));
    }
    config.push_str("allow from any\ndeny to any\n");
    let conf = directory.join("bgpd.conf");
    write_file(&conf, &config)?;
    let mut command = Command::new("/usr/sbin/bgpd");
    command.arg("-d").arg("-f").arg(&conf);
    let process = Process::spawn(
        "receiver OpenBGPD",
        command,
        &directory.join("daemon.log"),
        pids,
    )?;
    let mut control = OpenbgpdControl {
        socket,
        names,
        established_since: BTreeMap::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match control.sessions() {
            Ok(_) => return Ok((process, control)),
            Err(error) if Instant::now() > deadline => {
                return Err(format!("receiver OpenBGPD: {error}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Reads the OpenBGPD receiver's sessions with `bgpctl -j show neighbor`. OpenBGPD gives the
/// time of the last state change in whole seconds only, so a session's Established time is the
/// first poll that saw it Established (the poll interval is the error, as for the counters).
#[derive(Debug)]
pub(crate) struct OpenbgpdControl {
    socket: std::path::PathBuf,
    /// Sender address → session name (r0, r1, ...).
    names: BTreeMap<IpAddr, String>,
    established_since: BTreeMap<String, i64>,
}

impl OpenbgpdControl {
    fn sessions(&mut self) -> Result<BTreeMap<String, Session>> {
        let socket = self.socket.display().to_string();
        let output = run_command(
            "/usr/sbin/bgpctl",
            &["-s", &socket, "-j", "show", "neighbor"],
            Duration::from_secs(30),
        )?;
        let now = unix_ms();
        let value: serde_json::Value = serde_json::from_str(&output)
            .map_err(|error| format!("bgpctl -j show neighbor: {error}"))?;
        let mut sessions = BTreeMap::new();
        let neighbors = value
            .get("neighbors")
            .and_then(serde_json::Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for neighbor in neighbors {
            let Some(name) = neighbor
                .get("remote_addr")
                .and_then(serde_json::Value::as_str)
                .and_then(|address| address.parse::<IpAddr>().ok())
                .and_then(|address| self.names.get(&address))
            else {
                continue;
            };
            let counter = |pointer: &str| {
                neighbor
                    .pointer(pointer)
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
            };
            let established =
                neighbor.get("state").and_then(serde_json::Value::as_str) == Some("Established");
            let since_ms = if established {
                Some(*self.established_since.entry(name.clone()).or_insert(now))
            } else {
                self.established_since.remove(name);
                None
            };
            sessions.insert(
                name.clone(),
                Session {
                    established,
                    since_ms,
                    imported: counter("/stats/prefixes/received"),
                    withdraws_received: counter("/stats/update/received/withdraws"),
                },
            );
        }
        Ok(sessions)
    }
}

/// Writes `config` to `directory/bird.conf`, starts BIRD on it (TZ=UTC, control socket
/// `directory/bird.ctl`, log `directory/daemon.log`) and connects to its control socket, trying
/// every `retry` for up to `wait`.
pub(crate) fn launch_bird(
    name: &str,
    directory: &Path,
    config: String,
    pids: Option<&Path>,
    wait: Duration,
    retry: Duration,
) -> Result<(Process, BirdControl)> {
    let conf = directory.join("bird.conf");
    write_file(&conf, &config)?;
    drop(config);
    let socket = directory.join("bird.ctl");
    let mut command = Command::new("bird");
    command
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(&socket)
        .arg("-P")
        .arg(directory.join("bird.pid"))
        .env("TZ", "UTC");
    let process = Process::spawn(name, command, &directory.join("daemon.log"), pids)?;
    let deadline = Instant::now() + wait;
    loop {
        match BirdControl::connect(&socket) {
            Ok(control) => return Ok((process, control)),
            Err(error) if Instant::now() > deadline => return Err(format!("{name}: {error}")),
            Err(_) => std::thread::sleep(retry),
        }
    }
}
