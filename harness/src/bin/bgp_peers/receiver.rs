//! The receiving BIRD 2 (one passive eBGP session per sender address) and the BIRD control
//! socket client, which also drives BIRD as a sender (`senders/bird.rs`).

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
use crate::process::{Process, write_file};
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

#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) directory: tempfile::TempDir,
    pub(crate) _process: Process,
    pub(crate) control: BirdControl,
    /// The listening endpoint of each receiving session r0, r1, ...
    pub(crate) endpoints: Vec<SocketAddr>,
}

impl Receiver {
    /// A BIRD with `sessions` passive eBGP sessions (IPv4 + IPv6 unicast over IPv4 transport,
    /// import everything, export nothing, no graceful restart), all expecting `sender`.
    pub(crate) fn start(senders: &[Ipv4Addr], pids: Option<&Path>) -> Result<Receiver> {
        let directory = tempfile::Builder::new()
            .prefix("bgp-bench-receiver-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let mut config = String::new();
        let _ = writeln!(
            config,
            "log \"{}\" all;",
            directory.path().join("bird.log").display()
        );
        config.push_str(
            "router id 10.255.255.254;\ntimeformat protocol iso long ms;\nprotocol device {}\n",
        );
        let mut endpoints = Vec::new();
        // BIRD matches an incoming connection to a session by the neighbor's address, so every
        // session has its own sender address.
        for (index, sender) in senders.iter().enumerate() {
            let address = loopback_v4();
            let endpoint = SocketAddr::new(IpAddr::V4(address), free_port(IpAddr::V4(address)));
            endpoints.push(endpoint);
            let _ = writeln!(
                config,
                "protocol bgp r{index} {{\n  local {address} port {} as {RECEIVER_ASN};\n  neighbor {sender} as {SENDER_ASN};\n  strict bind yes;\n  multihop 1;\n  passive yes;\n  hold time 240;\n  graceful restart no;\n  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n}}",
                endpoint.port(),
            );
        }
        let (process, control) = launch_bird(
            "receiver BIRD",
            directory.path(),
            config,
            pids,
            Duration::from_secs(20),
            Duration::from_millis(50),
        )?;
        Ok(Receiver {
            directory,
            _process: process,
            control,
            endpoints,
        })
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
