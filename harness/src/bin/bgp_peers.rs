//! Driver of the side-by-side benchmark `benches/bgp_peers.sh` (issue 3, item 9): the same routes
//! (IPv4 /24s from 11.0.0.0, IPv6 /48s from 3fff::/20, one attribute set) announced to, then
//! withdrawn from, a fresh BIRD 2 receiver on loopback by each sender in turn: the blaster
//! (`bgp_blaster`, pre-encoded bytes: the receiver's ingest limit), topologyd, BIRD, FRR bgpd,
//! GoBGP and ExaBGP. What each number measures, and how each sender is loaded, is documented in
//! the script's header; this file only implements it.
//!
//! Every daemon runs on a `127.0.0.0/8` address in its own process group; the process group ids
//! are appended to `--pids FILE` so the script's trap can kill them even if this process dies,
//! and each group is killed on drop.
//!
//! Must not touch: any non-loopback address; topologyd's crates (the senders are black boxes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use topologyd_harness::peers::alloc::{free_port, loopback_v4};

const SENDER_ASN: u32 = 65001;
const RECEIVER_ASN: u32 = 64512;
const NEXT_HOP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const NEXT_HOP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// How often the receiver's import counters are read while a phase runs.
const POLL: Duration = Duration::from_millis(20);
/// The senders' peak RSS is sampled every this many polls (and at the end of every phase).
const RSS_EVERY: u32 = 5;
const ALL_SENDERS: &[&str] = &["blaster", "topologyd", "bird", "frr", "gobgp", "exabgp"];
/// The default senders: GoBGP is left out (see the script's header).
const DEFAULT_SENDERS: &[&str] = &["blaster", "topologyd", "bird", "frr", "exabgp"];
/// Senders that take minutes per run at full size; `--slow-runs` limits their repetitions.
const SLOW_SENDERS: &[&str] = &["gobgp", "exabgp"];

type Result<T> = std::result::Result<T, String>;

#[derive(Debug, Clone)]
struct Options {
    ipv4: u32,
    ipv6: u32,
    runs: usize,
    slow_runs: usize,
    senders: Vec<String>,
    multi_peers: usize,
    multi_routes: u32,
    out: PathBuf,
    pids: Option<PathBuf>,
    bin: PathBuf,
    timeout: Duration,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        ipv4: 1_000_000,
        ipv6: 200_000,
        runs: 1,
        senders: DEFAULT_SENDERS.iter().map(ToString::to_string).collect(),
        slow_runs: usize::MAX,
        multi_peers: 10,
        multi_routes: 100_000,
        out: PathBuf::from("target/bench/bgp_peers.json"),
        pids: None,
        bin: PathBuf::from("target/release"),
        timeout: Duration::from_secs(900),
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |value: &str| -> Result<u64> {
            value
                .parse()
                .map_err(|error| format!("{flag} {value}: {error}"))
        };
        match flag.as_str() {
            "--ipv4" => options.ipv4 = u32::try_from(number(&value)?).map_err(|e| e.to_string())?,
            "--ipv6" => options.ipv6 = u32::try_from(number(&value)?).map_err(|e| e.to_string())?,
            "--runs" => options.runs = number(&value)? as usize,
            "--slow-runs" => options.slow_runs = number(&value)? as usize,
            "--senders" => options.senders = value.split(',').map(str::to_string).collect(),
            "--multi-peers" => options.multi_peers = number(&value)? as usize,
            "--multi-routes" => {
                options.multi_routes = u32::try_from(number(&value)?).map_err(|e| e.to_string())?;
            }
            "--out" => options.out = PathBuf::from(value),
            "--pids" => options.pids = Some(PathBuf::from(value)),
            "--bin" => options.bin = PathBuf::from(value),
            "--timeout" => options.timeout = Duration::from_secs(number(&value)?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    for sender in &options.senders {
        if !ALL_SENDERS.contains(&sender.as_str()) {
            return Err(format!("unknown sender {sender}; known: {ALL_SENDERS:?}"));
        }
    }
    Ok(options)
}

// ---------------------------------------------------------------------------------------------
// The route set.

fn ipv4_prefix(index: u32) -> String {
    let address = Ipv4Addr::from((11u32 << 24).wrapping_add(index << 8));
    format!("{address}/24")
}

fn ipv6_prefix(index: u32) -> String {
    let address = Ipv6Addr::from((0x3fffu128 << 112) | (u128::from(index) << 80));
    format!("{address}/48")
}

fn ipv6_octets(index: u32) -> [u8; 6] {
    let octets = Ipv6Addr::from((0x3fffu128 << 112) | (u128::from(index) << 80)).octets();
    [
        octets[0], octets[1], octets[2], octets[3], octets[4], octets[5],
    ]
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A child process leading its own process group; the group is killed on drop.
#[derive(Debug)]
struct Process {
    child: Child,
}

impl Process {
    /// Starts `command` with stderr (and stdout, unless the caller piped it) into `log`.
    fn spawn(name: &str, mut command: Command, log: &Path, pids: Option<&Path>) -> Result<Process> {
        Process::spawn_with(name, &mut command, log, pids, false)
    }

    fn spawn_with(
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

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a name such as `TERM`) to the whole process group.
    fn signal(&self, signal: &str) {
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

fn run_command(program: &str, arguments: &[&str], timeout: Duration) -> Result<String> {
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
fn group_peak_rss(group: u32) -> u64 {
    group_status(group, "VmHWM:")
}

/// `field` (a `kB` line of /proc/PID/status) summed over every process of the group `group`.
fn group_status(group: u32, field: &str) -> u64 {
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
fn kill_mentioning(directory: &Path) {
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

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(0))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|error| format!("writing {}: {error}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The BIRD receiver and its control socket.

/// One receiving session's counters, from `show protocols all NAME`.
#[derive(Debug, Clone, Default)]
struct Session {
    established: bool,
    /// Since-time of the current state, unix ms (the receiver runs with TZ=UTC).
    since_ms: Option<i64>,
    imported: u64,
    withdraws_received: u64,
}

#[derive(Debug)]
struct BirdControl {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl BirdControl {
    fn connect(socket: &Path) -> Result<BirdControl> {
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
    fn read_reply(&mut self) -> Result<Vec<String>> {
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

    fn command(&mut self, command: &str) -> Result<Vec<String>> {
        writeln!(self.writer, "{command}").map_err(|e| format!("birdc: {e}"))?;
        self.read_reply()
    }

    /// Every session whose name starts with `r` (the receiving protocols r0, r1, ...).
    fn sessions(&mut self) -> Result<BTreeMap<String, Session>> {
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

fn first_number(text: &str) -> u64 {
    text.split_whitespace()
        .next()
        .and_then(|word| word.parse().ok())
        .unwrap_or(0)
}

/// `2026-11-27` `19:30:00.123` (UTC) → unix milliseconds.
fn parse_time(date: &str, time: &str) -> Option<i64> {
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
struct Receiver {
    directory: tempfile::TempDir,
    _process: Process,
    control: BirdControl,
    /// The listening endpoint of each receiving session r0, r1, ...
    endpoints: Vec<SocketAddr>,
}

impl Receiver {
    /// A BIRD with `sessions` passive eBGP sessions (IPv4 + IPv6 unicast over IPv4 transport,
    /// import everything, export nothing, no graceful restart), all expecting `sender`.
    fn start(senders: &[Ipv4Addr], pids: Option<&Path>) -> Result<Receiver> {
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
        let conf = directory.path().join("bird.conf");
        write_file(&conf, &config)?;
        let socket = directory.path().join("bird.ctl");
        let mut command = Command::new("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(directory.path().join("bird.pid"))
            .env("TZ", "UTC");
        let process = Process::spawn(
            "receiver BIRD",
            command,
            &directory.path().join("daemon.log"),
            pids,
        )?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let control = loop {
            match BirdControl::connect(&socket) {
                Ok(control) => break control,
                Err(error) if Instant::now() > deadline => {
                    return Err(format!("receiver: {error}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
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

// ---------------------------------------------------------------------------------------------
// Senders.

/// What every sender is told.
#[derive(Debug, Clone)]
struct SenderSetup {
    address: Ipv4Addr,
    /// The source address of each session (the first is `address`).
    sources: Vec<Ipv4Addr>,
    receivers: Vec<SocketAddr>,
    ipv4: u32,
    ipv6: u32,
    directory: PathBuf,
    bin: PathBuf,
    pids: Option<PathBuf>,
}

trait Sender {
    /// Starts the session(s); routes are loaded before this returns where the daemon allows.
    fn connect(&mut self) -> Result<()>;
    /// Triggers the withdrawal of every route (UPDATE withdrawals, session kept up where the
    /// daemon allows).
    fn withdraw_all(&mut self) -> Result<()>;
    /// Process group ids whose peak RSS is the sender's.
    fn groups(&self) -> Vec<u32>;
    /// How the routes were loaded, for the report.
    fn method(&self) -> String;
}

// --- blaster --------------------------------------------------------------------------------

struct Blaster {
    processes: Vec<(Process, ChildStdin)>,
    lines: mpsc::Receiver<String>,
}

impl Blaster {
    fn start(setup: &SenderSetup) -> Result<Blaster> {
        let (tx, lines) = mpsc::channel();
        let mut processes = Vec::new();
        for (index, receiver) in setup.receivers.iter().enumerate() {
            let mut command = Command::new(setup.bin.join("bgp_blaster"));
            command
                .args(["--local", &setup.sources[index].to_string()])
                .args(["--remote", &receiver.to_string()])
                .args(["--asn", &SENDER_ASN.to_string()])
                .args([
                    "--ipv4",
                    &setup.ipv4.to_string(),
                    "--ipv6",
                    &setup.ipv6.to_string(),
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped());
            let mut process = Process::spawn_with(
                "blaster",
                &mut command,
                &setup.directory.join(format!("blaster{index}.log")),
                setup.pids.as_deref(),
                true,
            )?;
            let stdin = process.child.stdin.take().ok_or("blaster stdin")?;
            let stdout = process.child.stdout.take().ok_or("blaster stdout")?;
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout)
                    .lines()
                    .map_while(std::result::Result::ok)
                {
                    let _ = tx.send(line);
                }
            });
            processes.push((process, stdin));
        }
        let mut blaster = Blaster { processes, lines };
        blaster.expect("encoded", Duration::from_secs(300))?;
        Ok(blaster)
    }

    fn expect(&mut self, word: &str, timeout: Duration) -> Result<()> {
        for _ in 0..self.processes.len() {
            loop {
                let line = self
                    .lines
                    .recv_timeout(timeout)
                    .map_err(|_| format!("blaster never said {word}"))?;
                if line.starts_with(word) {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Sender for Blaster {
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        for (_, stdin) in &mut self.processes {
            writeln!(stdin, "withdraw").map_err(|e| format!("blaster: {e}"))?;
        }
        Ok(())
    }

    fn groups(&self) -> Vec<u32> {
        self.processes
            .iter()
            .map(|(process, _)| process.pid())
            .collect()
    }

    fn method(&self) -> String {
        "UPDATEs pre-encoded by topologyd_bgp::AdjRibOut before connecting; write_all after the handshake".into()
    }
}

// --- topologyd ------------------------------------------------------------------------------

struct Topologyd {
    process: Process,
}

impl Topologyd {
    fn start(setup: &SenderSetup) -> Result<Topologyd> {
        let directory = &setup.directory;
        let topology = directory.join("topology");
        std::fs::create_dir_all(&topology).map_err(|e| e.to_string())?;
        write_file(
            &topology.join("fleet.toml"),
            "[[location]]\nname = \"bench01\"\nregion = \"bench\"\nmetro = \"BEN\"\ncountry = \"NL\"\nstate = \"live\"\n",
        )?;
        write_file(
            &topology.join("services.toml"),
            "[[service]]\nname = \"anycast\"\ntopology = \"all\"\n",
        )?;
        let mut prefixes = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 140);
        let cidrs = (0..setup.ipv4)
            .map(ipv4_prefix)
            .chain((0..setup.ipv6).map(ipv6_prefix));
        for cidr in cidrs {
            let _ = write!(
                prefixes,
                "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = {SENDER_ASN}\nowner = \"bench\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"anycast\"\n\n"
            );
        }
        write_file(&topology.join("prefixes.toml"), &prefixes)?;
        drop(prefixes);
        let admin = SocketAddr::new(
            IpAddr::V4(setup.address),
            free_port(IpAddr::V4(setup.address)),
        );
        let listen = SocketAddr::new(
            IpAddr::V4(setup.address),
            free_port(IpAddr::V4(setup.address)),
        );
        let mut config = String::new();
        let _ = writeln!(
            config,
            "location = \"bench01\"\nlocal_asn = {SENDER_ASN}\nrouter_id = \"{}\"",
            setup.address
        );
        let _ = writeln!(
            config,
            "state_dir = \"{}\"",
            directory.join("state").display()
        );
        let _ = writeln!(
            config,
            "bootstrap_topology = [\"{}\", \"{}\", \"{}\"]",
            topology.join("fleet.toml").display(),
            topology.join("services.toml").display(),
            topology.join("prefixes.toml").display()
        );
        let _ = writeln!(config, "[bgp]\nlisten = [\"{listen}\"]");
        config.push_str("[graceful_restart]\nrestart_time_seconds = 120\n");
        config.push_str("[shutdown]\nwithdraw_on_stop = true\ngrace_seconds = 600\n");
        let _ = writeln!(config, "[admin]\nlisten = \"{admin}\"");
        for (index, receiver) in setup.receivers.iter().enumerate() {
            let _ = writeln!(
                config,
                "[[peer]]\nname = \"r{index}\"\naddress = \"{}\"\nport = {}\nasn = {RECEIVER_ASN}\nlocal_address = \"{}\"\nfamilies = [\"ipv4\", \"ipv6\"]\nnext_hop_ipv4 = \"{NEXT_HOP_V4}\"\nnext_hop_ipv6 = \"{NEXT_HOP_V6}\"\nhold_time_seconds = 240\nconnect_retry_seconds = 1\npassive = false",
                receiver.ip(),
                receiver.port(),
                setup.sources[index]
            );
        }
        let path = directory.join("topologyd.toml");
        write_file(&path, &config)?;
        let mut command = Command::new(setup.bin.join("topologyd"));
        command
            .arg("--config")
            .arg(&path)
            .env("TOPOLOGYD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        let process = Process::spawn(
            "topologyd",
            command,
            &directory.join("topologyd.log"),
            setup.pids.as_deref(),
        )?;
        Ok(Topologyd { process })
    }
}

impl Sender for Topologyd {
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.process.signal("TERM");
        Ok(())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "bootstrap_topology (1 location, 1 `all` service, one [[prefix]]+[[binding]] per route); connects after compiling; withdraw = SIGTERM with withdraw_on_stop".into()
    }
}

// --- BIRD as a sender -------------------------------------------------------------------------

struct BirdSender {
    _process: Process,
    control: BirdControl,
    group: u32,
}

impl BirdSender {
    fn start(setup: &SenderSetup) -> Result<BirdSender> {
        let directory = &setup.directory;
        let mut config = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 40);
        let _ = writeln!(
            config,
            "log \"{}\" all;",
            directory.join("bird.log").display()
        );
        let _ = writeln!(config, "router id {};\nprotocol device {{}}", setup.address);
        config.push_str("protocol static st4 {\n  ipv4;\n");
        for index in 0..setup.ipv4 {
            let _ = writeln!(config, "  route {} blackhole;", ipv4_prefix(index));
        }
        config.push_str("}\nprotocol static st6 {\n  ipv6;\n");
        for index in 0..setup.ipv6 {
            let _ = writeln!(config, "  route {} blackhole;", ipv6_prefix(index));
        }
        config.push_str("}\n");
        for (index, receiver) in setup.receivers.iter().enumerate() {
            let port = free_port(IpAddr::V4(setup.address));
            let _ = writeln!(
                config,
                "protocol bgp s{index} {{\n  disabled yes;\n  local {} port {port} as {SENDER_ASN};\n  neighbor {} port {} as {RECEIVER_ASN};\n  strict bind yes;\n  multihop 1;\n  hold time 240;\n  connect delay time 1;\n  connect retry time 2;\n  graceful restart no;\n{}  ipv4 {{ import none; export all; next hop address {NEXT_HOP_V4}; }};\n  ipv6 {{ import none; export all; next hop address {NEXT_HOP_V6}; }};\n}}",
                setup.address,
                receiver.ip(),
                receiver.port(),
                if std::env::var_os("BGP_PEERS_DEBUG").is_some() {
                    "  debug all;\n"
                } else {
                    ""
                }
            );
        }
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
        let process = Process::spawn(
            "sender BIRD",
            command,
            &directory.join("daemon.log"),
            setup.pids.as_deref(),
        )?;
        let group = process.pid();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut control = loop {
            match BirdControl::connect(&socket) {
                Ok(control) => break control,
                Err(error) if Instant::now() > deadline => {
                    return Err(format!("sender BIRD: {error}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        // Wait until both static protocols have put every route into the tables.
        let expected = u64::from(setup.ipv4 + setup.ipv6);
        loop {
            let lines = control.command("show protocols all \"st*\"")?;
            let imported: u64 = lines
                .iter()
                .filter_map(|line| line.trim().strip_prefix("Routes:"))
                .map(first_number)
                .sum();
            if imported >= expected {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "sender BIRD loaded only {imported} of {expected} static routes"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(BirdSender {
            _process: process,
            control,
            group,
        })
    }
}

impl Sender for BirdSender {
    fn connect(&mut self) -> Result<()> {
        self.control.command("enable \"s*\"").map(|_| ())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.control.command("disable \"st*\"").map(|_| ())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.group]
    }

    fn method(&self) -> String {
        "protocol static (one `route P blackhole;` per route) into master4/6, `export all` with `next hop address`; session enabled once the statics are loaded; withdraw = `disable \"st*\"`".into()
    }
}

// --- FRR bgpd ---------------------------------------------------------------------------------

struct Frr {
    process: Process,
    directory: PathBuf,
    neighbors: Vec<SocketAddr>,
}

impl Frr {
    fn vtysh(&self, lines: &[&str]) -> Result<String> {
        let socket = self.directory.to_string_lossy().into_owned();
        let mut arguments = vec!["--vty_socket", &socket, "-d", "bgpd"];
        for line in lines {
            arguments.push("-c");
            arguments.push(line);
        }
        run_command("vtysh", &arguments, Duration::from_secs(600))
    }

    fn start(setup: &SenderSetup) -> Result<Frr> {
        let directory = setup.directory.clone();
        let mut config = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 32);
        config.push_str("bgp route-map delay-timer 0\n!\n");
        let _ = writeln!(
            config,
            "route-map OUT4 permit 10\n set ip next-hop {NEXT_HOP_V4}\nexit"
        );
        let _ = writeln!(
            config,
            "route-map OUT6 permit 10\n set ipv6 next-hop global {NEXT_HOP_V6}\nexit"
        );
        let _ = writeln!(
            config,
            "router bgp {SENDER_ASN}\n bgp router-id {}",
            setup.address
        );
        config.push_str(" no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n bgp allow-martian-nexthop\n bgp graceful-restart-disable\n");
        for receiver in &setup.receivers {
            let neighbor = receiver.ip();
            let _ = writeln!(config, " neighbor {neighbor} remote-as {RECEIVER_ASN}");
            let _ = writeln!(config, " neighbor {neighbor} port {}", receiver.port());
            let _ = writeln!(
                config,
                " neighbor {neighbor} update-source {}",
                setup.address
            );
            let _ = writeln!(config, " neighbor {neighbor} disable-connected-check");
            let _ = writeln!(config, " neighbor {neighbor} timers 80 240");
            let _ = writeln!(config, " neighbor {neighbor} timers connect 1");
            let _ = writeln!(config, " neighbor {neighbor} advertisement-interval 0");
            let _ = writeln!(config, " neighbor {neighbor} shutdown");
        }
        for (afi, count, route_map) in [("ipv4", setup.ipv4, "OUT4"), ("ipv6", setup.ipv6, "OUT6")]
        {
            let _ = writeln!(config, " address-family {afi} unicast");
            for receiver in &setup.receivers {
                let _ = writeln!(config, "  neighbor {} activate", receiver.ip());
                let _ = writeln!(
                    config,
                    "  neighbor {} route-map {route_map} out",
                    receiver.ip()
                );
            }
            for index in 0..count {
                let prefix = if afi == "ipv4" {
                    ipv4_prefix(index)
                } else {
                    ipv6_prefix(index)
                };
                let _ = writeln!(config, "  network {prefix}");
            }
            config.push_str(" exit-address-family\n");
        }
        config.push_str("exit\n!\n");
        let conf = directory.join("bgpd.conf");
        write_file(&conf, &config)?;
        drop(config);
        let mut command = Command::new("/usr/lib/frr/bgpd");
        command
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(directory.join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(&directory)
            .args(["-Z", "-S", "-u", "root", "-g", "root", "-P", "0", "-l"])
            .arg(setup.address.to_string())
            .args(["-p", "0"]);
        let process = Process::spawn(
            "FRR bgpd",
            command,
            &directory.join("daemon.log"),
            setup.pids.as_deref(),
        )?;
        let frr = Frr {
            process,
            directory,
            neighbors: setup.receivers.clone(),
        };
        let expected = u64::from(setup.ipv4 + setup.ipv6);
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let count = ["ipv4", "ipv6"]
                .iter()
                .map(|afi| {
                    frr.vtysh(&[&format!("show bgp {afi} unicast statistics")])
                        .ok()
                        .and_then(|text| {
                            text.lines().find_map(|line| {
                                line.trim()
                                    .strip_prefix("Total Prefixes")
                                    .map(first_number_after_colon)
                            })
                        })
                        .unwrap_or(0)
                })
                .sum::<u64>();
            if count >= expected {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("FRR loaded only {count} of {expected} networks"));
            }
        }
        Ok(frr)
    }
}

fn first_number_after_colon(text: &str) -> u64 {
    text.rsplit(':').next().map_or(0, first_number)
}

impl Sender for Frr {
    fn connect(&mut self) -> Result<()> {
        let mut lines = vec![
            "configure terminal".to_string(),
            format!("router bgp {SENDER_ASN}"),
        ];
        for neighbor in &self.neighbors {
            lines.push(format!("no neighbor {} shutdown", neighbor.ip()));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        self.vtysh(&lines).map(|_| ())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.vtysh(&[
            "configure terminal",
            "route-map OUT4 deny 5",
            "exit",
            "route-map OUT6 deny 5",
            "end",
            "clear bgp ipv4 unicast * soft out",
            "clear bgp ipv6 unicast * soft out",
        ])
        .map(|_| ())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "bgpd -Z (no zebra), one `network P` per route (no import-check), outbound route-map setting the next hops; neighbor `shutdown` until every network is in the BGP table; withdraw = a `deny 5` entry in both outbound route-maps (route-map delay-timer 0)".into()
    }
}

// --- GoBGP ------------------------------------------------------------------------------------

struct Gobgp {
    process: Process,
    api: String,
    neighbors: Vec<SocketAddr>,
}

/// An MRT TABLE_DUMP_V2 file (RFC 6396) holding every route once, from one peer, with
/// ORIGIN IGP, an empty AS_PATH and the benchmark's next hops; `gobgp mrt inject global` reads
/// it into the global RIB.
fn mrt_file(path: &Path, ipv4: u32, ipv6: u32) -> Result<()> {
    fn record(out: &mut Vec<u8>, subtype: u16, body: &[u8]) {
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&13u16.to_be_bytes());
        out.extend_from_slice(&subtype.to_be_bytes());
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(body);
    }
    let mut out = Vec::with_capacity((ipv4 + ipv6) as usize * 40);
    // PEER_INDEX_TABLE: collector id, empty view name, one peer (IPv4 address, 4-octet AS).
    let mut body = vec![10, 255, 0, 4, 0, 0, 0, 1, 0x02, 10, 255, 0, 4, 127, 0, 0, 1];
    body.extend_from_slice(&SENDER_ASN.to_be_bytes());
    record(&mut out, 1, &body);
    let origin = [0x40, 1, 1, 0];
    let as_path = [0x40, 2, 0];
    let mut attributes_v4 = Vec::new();
    attributes_v4.extend_from_slice(&origin);
    attributes_v4.extend_from_slice(&as_path);
    attributes_v4.extend_from_slice(&[0x40, 3, 4]);
    attributes_v4.extend_from_slice(&NEXT_HOP_V4.octets());
    let mut attributes_v6 = Vec::new();
    attributes_v6.extend_from_slice(&origin);
    attributes_v6.extend_from_slice(&as_path);
    // GoBGP's MRT reader takes MP_REACH_NLRI in its full UPDATE form (AFI, SAFI, next hop,
    // reserved octet, no NLRI), not RFC 6396 §4.3.4's abbreviated one.
    attributes_v6.extend_from_slice(&[0x80, 14, 21, 0, 2, 1, 16]);
    attributes_v6.extend_from_slice(&NEXT_HOP_V6.octets());
    attributes_v6.push(0);
    let entry = |body: &mut Vec<u8>, attributes: &[u8]| {
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&0u16.to_be_bytes());
        body.extend_from_slice(&0u32.to_be_bytes());
        body.extend_from_slice(&u16::try_from(attributes.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(attributes);
    };
    for index in 0..ipv4 {
        let mut body = Vec::with_capacity(32);
        body.extend_from_slice(&index.to_be_bytes());
        body.push(24);
        body.extend_from_slice(&((11u32 << 24).wrapping_add(index << 8)).to_be_bytes()[..3]);
        entry(&mut body, &attributes_v4);
        record(&mut out, 2, &body);
    }
    for index in 0..ipv6 {
        let mut body = Vec::with_capacity(48);
        body.extend_from_slice(&(ipv4 + index).to_be_bytes());
        body.push(48);
        body.extend_from_slice(&ipv6_octets(index));
        entry(&mut body, &attributes_v6);
        record(&mut out, 4, &body);
    }
    std::fs::write(path, out).map_err(|error| format!("{}: {error}", path.display()))
}

impl Gobgp {
    fn gobgp(&self, arguments: &[&str]) -> Result<String> {
        let mut all = vec!["--target", &self.api];
        all.extend_from_slice(arguments);
        run_command("gobgp", &all, Duration::from_secs(1800))
    }

    fn start(setup: &SenderSetup) -> Result<Gobgp> {
        let directory = &setup.directory;
        let mut config = String::new();
        let _ = writeln!(
            config,
            "[global.config]\n  as = {SENDER_ASN}\n  router-id = \"{}\"\n  port = -1",
            setup.address
        );
        for receiver in &setup.receivers {
            let _ = writeln!(
                config,
                "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {RECEIVER_ASN}\n    admin-down = true\n  [neighbors.transport.config]\n    local-address = \"{}\"\n    remote-port = {}\n  [neighbors.timers.config]\n    hold-time = 240\n    keepalive-interval = 80\n    connect-retry = 1\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"",
                receiver.ip(),
                setup.address,
                receiver.port()
            );
        }
        let conf = directory.join("gobgpd.toml");
        write_file(&conf, &config)?;
        let mrt = directory.join("routes.mrt");
        mrt_file(&mrt, setup.ipv4, setup.ipv6)?;
        let api = format!("{}:{}", setup.address, free_port(IpAddr::V4(setup.address)));
        let mut command = Command::new("gobgpd");
        command
            .arg("-f")
            .arg(&conf)
            .args(["-t", "toml", "-p", "--pprof-disable"])
            .arg(format!("--api-hosts={api}"));
        let process = Process::spawn(
            "gobgpd",
            command,
            &directory.join("daemon.log"),
            setup.pids.as_deref(),
        )?;
        let gobgp = Gobgp {
            process,
            api,
            neighbors: setup.receivers.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while gobgp.gobgp(&["global"]).is_err() {
            if Instant::now() > deadline {
                return Err("gobgpd's API never answered".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mrt_path = mrt.to_string_lossy().into_owned();
        gobgp.gobgp(&["mrt", "inject", "global", &mrt_path])?;
        let expected = u64::from(setup.ipv4 + setup.ipv6);
        // The server applies injected paths asynchronously: wait until the RIB holds them all.
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let count: u64 = ["ipv4", "ipv6"]
                .iter()
                .map(|afi| {
                    gobgp
                        .gobgp(&["global", "rib", "summary", "-a", afi])
                        .map(|text| {
                            text.split(|c: char| !c.is_ascii_digit())
                                .filter_map(|word| word.parse::<u64>().ok())
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0)
                })
                .sum();
            if count >= expected {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("GoBGP holds {count} of {expected} injected routes"));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(gobgp)
    }
}

impl Sender for Gobgp {
    fn connect(&mut self) -> Result<()> {
        for neighbor in self.neighbors.clone() {
            self.gobgp(&["neighbor", &neighbor.ip().to_string(), "enable"])?;
        }
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        self.gobgp(&["global", "rib", "-a", "ipv4", "del", "all"])?;
        self.gobgp(&["global", "rib", "-a", "ipv6", "del", "all"])?;
        Ok(())
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "`gobgp mrt inject global` of a TABLE_DUMP_V2 file into the global RIB while the neighbor is admin-down, then `gobgp neighbor ADDR enable`; withdraw = `gobgp global rib -a ipv4|ipv6 del all`".into()
    }
}

// --- ExaBGP -----------------------------------------------------------------------------------

struct Exabgp {
    process: Process,
    go: PathBuf,
}

/// The API process: once the neighbor is up, announce every prefix in `announce attributes ...
/// nlri` lines of 1,000 prefixes (one attribute set each); when the file `withdraw.go` appears,
/// withdraw them the same way.
const EXABGP_SCRIPT: &str = r#"#!/usr/bin/python3
import ipaddress, os, sys, threading, time
ipv4, ipv6, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
up = threading.Event()
def events():
    for line in sys.stdin:
        if '"up"' in line or ' up' in line:
            up.set()
threading.Thread(target=events, daemon=True).start()
def prefixes():
    v4 = [str(ipaddress.IPv4Address((11 << 24) + (i << 8))) + "/24" for i in range(ipv4)]
    v6 = [str(ipaddress.IPv6Address((0x3fff << 112) | (i << 80))) + "/48" for i in range(ipv6)]
    return v4, v6
v4, v6 = prefixes()
static = os.environ.get("BENCH_STATIC") == "1"
def lines(verb):
    out = []
    for family, hop in ((v4, "192.0.2.1"), (v6, "2001:db8::1")):
        for start in range(0, len(family), 1000):
            out.append("%s attributes origin igp next-hop %s nlri %s\n" % (verb, hop, " ".join(family[start:start + 1000])))
    return out
announce, withdraw = lines("announce"), lines("withdraw")
open(os.path.join(directory, "ready"), "w").close()
up.wait()
for line in ([] if static else announce):
    sys.stdout.write(line)
    sys.stdout.flush()
while not os.path.exists(os.path.join(directory, "withdraw.go")):
    time.sleep(0.005)
for line in withdraw:
    sys.stdout.write(line)
    sys.stdout.flush()
while True:
    time.sleep(60)
"#;

impl Exabgp {
    fn start(setup: &SenderSetup) -> Result<Exabgp> {
        let directory = &setup.directory;
        let script = directory.join("api.py");
        write_file(&script, EXABGP_SCRIPT)?;
        let runner = directory.join("api.sh");
        write_file(
            &runner,
            &format!(
                "#!/bin/sh\nBENCH_STATIC={} exec python3 {} {} {} {}\n",
                u8::from(std::env::var_os("BGP_PEERS_EXABGP_API").is_none()),
                script.display(),
                setup.ipv4,
                setup.ipv6,
                directory.display()
            ),
        )?;
        run_command(
            "chmod",
            &["+x", &runner.to_string_lossy()],
            Duration::from_secs(5),
        )?;
        let mut config = format!(
            "process bench {{\n  run {};\n  encoder json;\n}}\n",
            runner.display()
        );
        for receiver in &setup.receivers {
            let _ = writeln!(
                config,
                "neighbor {} {{\n  router-id {};\n  local-address {};\n  local-as {SENDER_ASN};\n  peer-as {RECEIVER_ASN};\n  hold-time 240;\n  connect {};\n  passive false;\n  family {{\n    ipv4 unicast;\n    ipv6 unicast;\n  }}\n  api {{\n    processes [ bench ];\n    neighbor-changes;\n  }}\n}}",
                receiver.ip(),
                setup.address,
                setup.address,
                receiver.port()
            );
        }
        let static_routes = std::env::var_os("BGP_PEERS_EXABGP_API").is_none();
        if static_routes {
            // Every route in the configuration instead: ExaBGP parses them at startup and
            // sends them once the session is up.
            let position = config.rfind("  api {").unwrap_or(config.len());
            let mut routes = String::with_capacity((setup.ipv4 + setup.ipv6) as usize * 48);
            routes.push_str("  static {\n");
            for index in 0..setup.ipv4 {
                let _ = writeln!(
                    routes,
                    "    route {} next-hop {NEXT_HOP_V4} origin igp;",
                    ipv4_prefix(index)
                );
            }
            for index in 0..setup.ipv6 {
                let _ = writeln!(
                    routes,
                    "    route {} next-hop {NEXT_HOP_V6} origin igp;",
                    ipv6_prefix(index)
                );
            }
            routes.push_str("  }\n");
            config.insert_str(position, &routes);
        }
        let conf = directory.join("exabgp.conf");
        write_file(&conf, &config)?;
        let mut command = Command::new("exabgp");
        command
            .arg(&conf)
            .env("exabgp.daemon.user", "root")
            .env("exabgp.daemon.daemonize", "false")
            .env("exabgp.daemon.drop", "false")
            .env("exabgp.api.cli", "false")
            .env("exabgp.api.ack", "false")
            .env("exabgp.tcp.bind", "")
            .env("exabgp.log.destination", "stdout")
            .env("exabgp.log.level", "WARNING")
            .env(
                "exabgp.reactor.speed",
                std::env::var("BGP_PEERS_EXABGP_SPEED").unwrap_or_else(|_| "0.1".into()),
            );
        let process = Process::spawn(
            "ExaBGP",
            command,
            &directory.join("daemon.log"),
            setup.pids.as_deref(),
        )?;
        Ok(Exabgp {
            process,
            go: directory.join("withdraw.go"),
        })
    }
}

impl Sender for Exabgp {
    fn connect(&mut self) -> Result<()> {
        Ok(())
    }

    fn withdraw_all(&mut self) -> Result<()> {
        write_file(&self.go, "")
    }

    fn groups(&self) -> Vec<u32> {
        vec![self.process.pid()]
    }

    fn method(&self) -> String {
        "every route in the neighbor's `static` block (`route P next-hop NH origin igp;`), parsed at startup, sent once the session is up (BGP_PEERS_EXABGP_API=1: announced by the API process instead); withdraw = API process writing `withdraw attributes origin igp next-hop NH nlri P1 … P1000` lines; exabgp.reactor.speed 0.1; RSS = exabgp + API process".into()
    }
}

// ---------------------------------------------------------------------------------------------
// One run.

#[derive(Debug, Clone)]
struct RunResult {
    sender: String,
    case: String,
    run: usize,
    peers: usize,
    routes: u64,
    announce_s: f64,
    withdraw_s: f64,
    peak_rss_bytes: u64,
    /// From the withdraw trigger until the receiver was first seen holding fewer routes.
    withdraw_first_effect_s: f64,
    /// Resident set when the receiver first held every route.
    rss_after_announce_bytes: u64,
    withdrawals_received: u64,
    session_closed: bool,
    setup_s: f64,
    method: String,
}

fn start_sender(name: &str, setup: &SenderSetup) -> Result<Box<dyn Sender>> {
    Ok(match name {
        "blaster" => Box::new(Blaster::start(setup)?),
        "topologyd" => Box::new(Topologyd::start(setup)?),
        "bird" => Box::new(BirdSender::start(setup)?),
        "frr" => Box::new(Frr::start(setup)?),
        "gobgp" => Box::new(Gobgp::start(setup)?),
        "exabgp" => Box::new(Exabgp::start(setup)?),
        other => return Err(format!("unknown sender {other}")),
    })
}

fn peak(groups: &[u32], best: &mut u64) {
    let now: u64 = groups.iter().map(|group| group_peak_rss(*group)).sum();
    *best = (*best).max(now);
}

fn run_once(
    options: &Options,
    name: &str,
    case: &str,
    run: usize,
    peers: usize,
    ipv4: u32,
    ipv6: u32,
) -> Result<RunResult> {
    let sources: Vec<Ipv4Addr> = (0..peers).map(|_| loopback_v4()).collect();
    let sender_address = sources[0];
    let mut receiver = Receiver::start(&sources, options.pids.as_deref())?;
    let directory = tempfile::Builder::new()
        .prefix(&format!("bgp-bench-{name}-"))
        .tempdir()
        .map_err(|e| e.to_string())?;
    let setup = SenderSetup {
        address: sender_address,
        sources: sources.clone(),
        receivers: receiver.endpoints.clone(),
        ipv4,
        ipv6,
        directory: directory.path().to_path_buf(),
        bin: options.bin.clone(),
        pids: options.pids.clone(),
    };
    if let Some(pids) = &options.pids {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pids.with_extension("dirs"))
            .and_then(|mut file| writeln!(file, "{}", directory.path().display()));
    }
    let expected = u64::from(ipv4 + ipv6);
    let started = Instant::now();
    let result = (|| -> Result<RunResult> {
        let mut sender = start_sender(name, &setup)?;
        let groups = sender.groups();
        let mut rss = 0;
        sender.connect()?;
        // Established at every receiving session.
        let deadline = Instant::now() + options.timeout;
        let established_ms = loop {
            let sessions = receiver.control.sessions()?;
            if sessions.len() == peers && sessions.values().all(|session| session.established) {
                break sessions
                    .values()
                    .filter_map(|session| session.since_ms)
                    .min()
                    .unwrap_or_else(unix_ms);
            }
            if Instant::now() > deadline {
                return Err(format!("{name}: sessions never Established: {sessions:?}"));
            }
            std::thread::sleep(POLL);
        };
        let setup_s = started.elapsed().as_secs_f64();
        let mut polls = 0u32;
        let full_ms = loop {
            let sessions = receiver.control.sessions()?;
            let now = unix_ms();
            if sessions
                .values()
                .all(|session| session.imported >= expected)
            {
                break now;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name}: the receiver never held every route: {sessions:?}"
                ));
            }
            polls += 1;
            if polls.is_multiple_of(RSS_EVERY) {
                peak(&groups, &mut rss);
            }
            std::thread::sleep(POLL);
        };
        peak(&groups, &mut rss);
        let rss_after_announce: u64 = groups
            .iter()
            .map(|group| group_status(*group, "VmRSS:"))
            .sum();
        let before = receiver.control.sessions()?;
        let withdrawals_before: u64 = before
            .values()
            .map(|session| session.withdraws_received)
            .sum();
        let trigger_ms = unix_ms();
        sender.withdraw_all()?;
        let deadline = Instant::now() + options.timeout;
        let mut most_withdrawals = 0;
        let mut first_effect_ms = None;
        let (empty_ms, after) = loop {
            let sessions = receiver.control.sessions()?;
            let now = unix_ms();
            let held: u64 = sessions.values().map(|session| session.imported).sum();
            if first_effect_ms.is_none() && held < expected * peers as u64 {
                first_effect_ms = Some(now);
            }
            if sessions.values().all(|session| session.established) {
                most_withdrawals = most_withdrawals.max(
                    sessions
                        .values()
                        .map(|session| session.withdraws_received)
                        .sum::<u64>()
                        - withdrawals_before,
                );
            }
            if sessions.values().all(|session| session.imported == 0) {
                break (now, sessions);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{name}: the receiver still holds routes: {sessions:?}"
                ));
            }
            polls += 1;
            if polls.is_multiple_of(RSS_EVERY) {
                peak(&groups, &mut rss);
            }
            std::thread::sleep(POLL);
        };
        peak(&groups, &mut rss);
        let withdrawals: u64 = after
            .values()
            .map(|session| session.withdraws_received)
            .sum::<u64>()
            - withdrawals_before;
        // The receiver's counters restart with the session: for a sender that closes the
        // session right after its withdrawals (topologyd's SIGTERM), the evidence that they were
        // sent is the most the receiver had counted while the session was still up.
        let closed = !after.values().all(|session| session.established);
        let withdrawals = if closed {
            most_withdrawals
        } else {
            withdrawals
        };
        if withdrawals < expected * peers as u64 && !closed {
            return Err(format!(
                "{name}: the receiver emptied after {withdrawals} withdrawals of {}; session closed: {closed}",
                expected * peers as u64
            ));
        }
        Ok(RunResult {
            sender: name.to_string(),
            case: case.to_string(),
            run,
            peers,
            routes: expected,
            announce_s: (full_ms - established_ms) as f64 / 1000.0,
            withdraw_s: (empty_ms - trigger_ms) as f64 / 1000.0,
            peak_rss_bytes: rss,
            rss_after_announce_bytes: rss_after_announce,
            withdraw_first_effect_s: (first_effect_ms.unwrap_or(empty_ms) - trigger_ms) as f64
                / 1000.0,
            withdrawals_received: withdrawals,
            session_closed: closed,
            setup_s,
            method: sender.method(),
        })
    })();
    kill_mentioning(directory.path());
    if result.is_ok() && std::env::var_os("BGP_PEERS_KEEP").is_some() {
        let kept = directory.keep();
        let receiver_dir = std::mem::replace(
            &mut receiver.directory,
            tempfile::tempdir().map_err(|e| e.to_string())?,
        )
        .keep();
        eprintln!(
            "bgp_peers: kept {} {}",
            kept.display(),
            receiver_dir.display()
        );
        return result;
    }
    if let Err(error) = &result {
        // Keep the logs of a failed run for inspection.
        let kept = directory.keep();
        let receiver_dir = std::mem::replace(
            &mut receiver.directory,
            tempfile::tempdir().map_err(|e| e.to_string())?,
        )
        .keep();
        eprintln!(
            "bgp_peers: {name} run {run} failed: {error}\n  logs: {} {}",
            kept.display(),
            receiver_dir.display()
        );
    }
    result
}

// ---------------------------------------------------------------------------------------------
// Report.

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn report(options: &Options, results: &[RunResult], failures: &[String]) -> Result<()> {
    let mut groups: BTreeMap<(String, String), Vec<&RunResult>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for result in results {
        let key = (result.case.clone(), result.sender.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(result);
    }
    let summary = |key: &(String, String)| -> (f64, f64, f64, usize, &RunResult, f64) {
        let runs = &groups[key];
        (
            median(runs.iter().map(|run| run.announce_s).collect()),
            median(runs.iter().map(|run| run.withdraw_s).collect()),
            median(runs.iter().map(|run| run.peak_rss_bytes as f64).collect()),
            runs.len(),
            runs[0],
            median(
                runs.iter()
                    .map(|run| run.rss_after_announce_bytes as f64)
                    .collect(),
            ),
        )
    };
    let mut table = String::new();
    table.push_str("| case | sender | runs | announce s | × blaster | withdraw-all s | × blaster | sender peak RSS MB | peak bytes / route / peer | RSS after announce MB | bytes / route / peer | withdrawals seen |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut json_rows = Vec::new();
    for key in &order {
        let (announce, withdraw, rss, runs, first, steady) = summary(key);
        let baseline = groups
            .get(&(key.0.clone(), "blaster".to_string()))
            .map(|_| summary(&(key.0.clone(), "blaster".to_string())));
        let ratio = |value: f64, base: Option<f64>| match base {
            Some(base) if base > 0.0 => format!("{:.2}", value / base),
            _ => "—".into(),
        };
        let per_route = rss / (first.routes as f64 * first.peers as f64);
        let steady_per_route = steady / (first.routes as f64 * first.peers as f64);
        let withdrawals = median(
            groups[key]
                .iter()
                .map(|run| run.withdrawals_received as f64)
                .collect(),
        );
        let _ = writeln!(
            table,
            "| {} | {} | {runs} | {announce:.2} | {} | {withdraw:.2} | {} | {:.0} | {per_route:.0} | {:.0} | {steady_per_route:.0} | {withdrawals:.0} |",
            key.0,
            key.1,
            ratio(announce, baseline.map(|b| b.0)),
            ratio(withdraw, baseline.map(|b| b.1)),
            rss / 1e6,
            steady / 1e6
        );
        json_rows.push(format!(
            "{{\"case\":{},\"sender\":{},\"runs\":{runs},\"announce_s_median\":{announce},\"withdraw_s_median\":{withdraw},\"peak_rss_bytes_median\":{rss},\"rss_bytes_per_route_per_peer\":{per_route},\"rss_after_announce_bytes_median\":{steady},\"rss_after_announce_bytes_per_route_per_peer\":{steady_per_route},\"announce_vs_blaster\":{},\"withdraw_vs_blaster\":{},\"method\":{}}}",
            json_string(&key.0),
            json_string(&key.1),
            baseline.map_or("null".into(), |b| format!("{}", announce / b.0)),
            baseline.map_or("null".into(), |b| format!("{}", withdraw / b.1)),
            json_string(&first.method)
        ));
    }
    println!("{table}");
    for failure in failures {
        println!("FAILED: {failure}");
    }
    let runs: Vec<String> = results
        .iter()
        .map(|run| {
            format!(
                "{{\"case\":{},\"sender\":{},\"run\":{},\"peers\":{},\"routes\":{},\"announce_s\":{},\"withdraw_s\":{},\"peak_rss_bytes\":{},\"rss_after_announce_bytes\":{},\"withdraw_first_effect_s\":{},\"withdrawals_received\":{},\"session_closed_after_withdraw\":{},\"setup_s\":{}}}",
                json_string(&run.case),
                json_string(&run.sender),
                run.run,
                run.peers,
                run.routes,
                run.announce_s,
                run.withdraw_s,
                run.peak_rss_bytes,
                run.rss_after_announce_bytes,
                run.withdraw_first_effect_s,
                run.withdrawals_received,
                run.session_closed,
                run.setup_s
            )
        })
        .collect();
    let failures: Vec<String> = failures
        .iter()
        .map(|failure| json_string(failure))
        .collect();
    let json = format!(
        "{{\"ipv4\":{},\"ipv6\":{},\"multi_peers\":{},\"multi_routes\":{},\"summary\":[{}],\"runs\":[{}],\"failures\":[{}],\"markdown\":{}}}\n",
        options.ipv4,
        options.ipv6,
        options.multi_peers,
        options.multi_routes,
        json_rows.join(","),
        runs.join(","),
        failures.join(","),
        json_string(&table)
    );
    if let Some(parent) = options.out.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    write_file(&options.out, &json)
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("bgp_peers: {error}");
            std::process::exit(2);
        }
    };
    let mut results = Vec::new();
    let mut failures = Vec::new();
    let single = format!("1 peer × {} routes", options.ipv4 + options.ipv6);
    let multi_ipv4 = options.multi_routes - options.multi_routes / 6;
    let multi_ipv6 = options.multi_routes / 6;
    let multi = format!(
        "{} peers × {} routes",
        options.multi_peers, options.multi_routes
    );
    let mut plan: Vec<(String, String, usize, u32, u32)> = Vec::new();
    for run in 1..=options.runs {
        for sender in &options.senders {
            if run > options.slow_runs && SLOW_SENDERS.contains(&sender.as_str()) {
                continue;
            }
            plan.push((
                sender.clone(),
                single.clone(),
                1,
                options.ipv4,
                options.ipv6,
            ));
        }
        if options.multi_peers > 0 {
            for sender in ["blaster", "topologyd"] {
                if options.senders.iter().any(|name| name == sender) {
                    plan.push((
                        sender.to_string(),
                        multi.clone(),
                        options.multi_peers,
                        multi_ipv4,
                        multi_ipv6,
                    ));
                }
            }
        }
    }
    let mut run_numbers: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (sender, case, peers, ipv4, ipv6) in plan {
        let run = {
            let counter = run_numbers
                .entry((sender.clone(), case.clone()))
                .or_insert(0);
            *counter += 1;
            *counter
        };
        eprintln!("bgp_peers: {case}: {sender} run {run} …");
        match run_once(&options, &sender, &case, run, peers, ipv4, ipv6) {
            Ok(result) => {
                eprintln!(
                    "bgp_peers:   announce {:.3} s, withdraw-all {:.3} s, peak RSS {:.1} MB, withdrawals seen {}, setup {:.1} s",
                    result.announce_s,
                    result.withdraw_s,
                    result.peak_rss_bytes as f64 / 1e6,
                    result.withdrawals_received,
                    result.setup_s
                );
                results.push(result);
            }
            Err(error) => failures.push(format!("{case} {sender} run {run}: {error}")),
        }
    }
    if let Err(error) = report(&options, &results, &failures) {
        eprintln!("bgp_peers: {error}");
        std::process::exit(1);
    }
}
