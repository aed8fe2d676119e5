//! End to end: the RFC 9687 send hold timer against the real `topologyd`, with a raw BGP speaker
//! written here that completes the OPEN exchange and then reads the UPDATEs as the test says.
//! The speaker connects with a small receive buffer and a small MSS (so that neither its window
//! nor topologyd's kernel send buffer can absorb the 65,536 routes of the topology), and sends a
//! KEEPALIVE every 500 ms so that topologyd's own hold timer never fires:
//!
//! - a peer that stops reading: topologyd resets the connection within a second of the send
//!   hold time after its last progress (the connection is gone on both sides, whatever is
//!   queued), the `sent` prefix counter never exceeds what the octets written can carry, the
//!   peer can connect again (four times), and topologyd's memory stays flat;
//! - a peer reading one byte per second: no window opens, no message is written, so the timer
//!   fires just the same (RFC 9687 §3 counts messages sent, not bytes read);
//! - a peer reading slowly but steadily (4 KiB every 500 ms): each message written restarts
//!   the timer, and the session outlives three send hold times;
//! - a peer that reads everything: every route arrives, End-of-RIB included, and the `sent`
//!   counter moves by exactly the routes written.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use topologyd_harness::peers::alloc;
use topologyd_harness::topologyd::{DaemonConfig, NeighborConfig, Topologyd, wait_until};

const LOCAL_ASN: u32 = 13335;
const PEER_ASN: u32 = 64512;
const PEER_NAME: &str = "wedged";
const WAIT: Duration = Duration::from_secs(60);
const HOLD_TIME_SECONDS: u16 = 3;
const SEND_HOLD_SECONDS: u32 = 4;
const ROUTES: u64 = 65_536;
const HEADER_LENGTH: usize = 19;
const MESSAGE_OPEN: u8 = 1;
const MESSAGE_UPDATE: u8 = 2;
const MESSAGE_KEEPALIVE: u8 = 4;
/// `/proc/net/tcp` states.
const TCP_ESTABLISHED: u8 = 1;

const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"
"#;

const SERVICES: &str = r#"
[[service]]
name = "bulk"
topology = "all"
"#;

/// One /8 split into its 65,536 /24s.
const PREFIXES: &str = r#"
[[prefix]]
cidr = "10.0.0.0/8"
origin_asn = 13335
owner = "ops"
advertise = true
announce = { split = 24 }

[[binding]]
cidr = "10.0.0.0/8"
service = "bulk"
"#;

fn check<T, E: std::fmt::Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xFF; 16];
    let length = u16::try_from(HEADER_LENGTH + body.len()).unwrap_or(u16::MAX);
    bytes.extend(length.to_be_bytes());
    bytes.push(message_type);
    bytes.extend(body);
    bytes
}

/// OPEN (RFC 4271 §4.2) with IPv4 unicast (RFC 4760) and 4-octet ASN (RFC 6793).
fn open() -> Vec<u8> {
    let mut capabilities = vec![1, 4, 0, 1, 0, 1];
    capabilities.extend([65, 4]);
    capabilities.extend(PEER_ASN.to_be_bytes());
    let mut parameters = vec![2, u8::try_from(capabilities.len()).unwrap_or(u8::MAX)];
    parameters.extend(capabilities);
    let mut body = vec![4];
    body.extend(u16::try_from(PEER_ASN).unwrap_or(23456).to_be_bytes());
    body.extend(HOLD_TIME_SECONDS.to_be_bytes());
    body.extend(Ipv4Addr::new(192, 0, 2, 99).octets());
    body.push(u8::try_from(parameters.len()).unwrap_or(u8::MAX));
    body.extend(parameters);
    message(MESSAGE_OPEN, &body)
}

/// `/proc/net/tcp`'s spelling of an IPv4 socket address.
fn proc_address(address: SocketAddrV4) -> String {
    format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(address.ip().octets()),
        address.port()
    )
}

/// The state, send queue and receive queue of the TCP socket `local` → `remote`, if it exists.
fn tcp_socket(local: SocketAddrV4, remote: SocketAddrV4) -> Option<(u8, u64, u64)> {
    let table = check(std::fs::read_to_string("/proc/net/tcp"), "/proc/net/tcp");
    let (local, remote) = (proc_address(local), proc_address(remote));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
        let mut queues = fields.get(4)?.split(':');
        let send_queue = u64::from_str_radix(queues.next()?, 16).ok()?;
        let receive_queue = u64::from_str_radix(queues.next()?, 16).ok()?;
        Some((state, send_queue, receive_queue))
    })
}

fn v4(address: SocketAddr) -> SocketAddrV4 {
    match address {
        SocketAddr::V4(address) => address,
        SocketAddr::V6(_) => panic!("the test speaks IPv4"),
    }
}

/// Resident memory of a process, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = check(
        std::fs::read_to_string(format!("/proc/{pid}/status")),
        "/proc/PID/status",
    );
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"))
}

/// The `sent` counter once the previous session, if any, is gone: read before the next
/// connection, because topologyd starts writing as soon as a session is Established (a reading
/// taken after `establish` would already hold some of the new session's routes).
fn sent_announced_between_sessions(topologyd: &Topologyd) -> f64 {
    let state = format!("topologyd_bgp_session_state{{peer=\"{PEER_NAME}\"}}");
    check(
        wait_until("the previous session to be gone", WAIT, || {
            // The admin listener may not be up yet right after start.
            match topologyd.metric(&state) {
                Ok(Some(6.0)) => Err("still Established".to_string()),
                Ok(_) => Ok(()),
                Err(error) => Err(error.to_string()),
            }
        }),
        "session state",
    );
    sent_announced(topologyd)
}

fn sent_announced(topologyd: &Topologyd) -> f64 {
    let sample = format!(
        "topologyd_bgp_prefixes_total{{peer=\"{PEER_NAME}\",direction=\"sent\",kind=\"announced\"}}"
    );
    check(topologyd.metric(&sample), "GET /metrics").unwrap_or(0.0)
}

/// A raw BGP speaker connected to topologyd, Established.
struct Speaker {
    stream: TcpStream,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    last_keepalive: Instant,
}

impl Speaker {
    /// Connects from `source` with a small receive buffer and MSS, and completes the OPEN /
    /// KEEPALIVE exchange (reading only topologyd's OPEN and KEEPALIVE).
    fn establish(source: IpAddr, topologyd: SocketAddr) -> Speaker {
        let socket = check(Socket::new(Domain::IPV4, Type::STREAM, None), "a socket");
        check(socket.set_recv_buffer_size(4096), "SO_RCVBUF");
        check(socket.set_tcp_mss(536), "TCP_MAXSEG");
        check(
            socket.bind(&SockAddr::from(SocketAddr::new(source, 0))),
            "binding the speaker's address",
        );
        check(
            socket.connect_timeout(&SockAddr::from(topologyd), Duration::from_secs(5)),
            "connecting to topologyd",
        );
        let stream: TcpStream = socket.into();
        let local = v4(check(stream.local_addr(), "local address"));
        let mut speaker = Speaker {
            stream,
            local,
            remote: v4(topologyd),
            last_keepalive: Instant::now(),
        };
        speaker.send(&open());
        let (kind, _) = speaker.read_message();
        assert_eq!(kind, MESSAGE_OPEN, "topologyd's first message");
        let (kind, body) = speaker.read_message();
        assert_eq!(
            kind, MESSAGE_KEEPALIVE,
            "topologyd refused our OPEN: {body:?}"
        );
        speaker.send(&message(MESSAGE_KEEPALIVE, &[]));
        speaker
    }

    fn send(&mut self, bytes: &[u8]) {
        check(self.stream.write_all(bytes), "writing to topologyd");
        self.last_keepalive = Instant::now();
    }

    fn read_message(&mut self) -> (u8, Vec<u8>) {
        check(self.stream.set_read_timeout(Some(WAIT)), "a read timeout");
        let mut header = [0u8; HEADER_LENGTH];
        check(self.stream.read_exact(&mut header), "reading a header");
        let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut body = vec![0u8; length.saturating_sub(HEADER_LENGTH)];
        check(self.stream.read_exact(&mut body), "reading a body");
        (header[18], body)
    }

    /// Our socket's state and queues (`None`: gone).
    fn ours(&self) -> Option<(u8, u64, u64)> {
        tcp_socket(self.local, self.remote)
    }

    /// topologyd's end of the connection (`None`: gone).
    fn theirs(&self) -> Option<(u8, u64, u64)> {
        tcp_socket(self.remote, self.local)
    }

    fn keepalive_if_due(&mut self) {
        if self.last_keepalive.elapsed() >= Duration::from_millis(500) {
            // Fails once topologyd has reset the connection; the caller sees that in
            // /proc/net/tcp.
            let _ = self.stream.write_all(&message(MESSAGE_KEEPALIVE, &[]));
            self.last_keepalive = Instant::now();
        }
    }

    /// Runs for at most `limit`, reading `chunk` octets every `every` (none when `chunk` is 0)
    /// and sending keepalives, until the connection is gone. Returns when it went (None if it
    /// outlived `limit`) and the last time topologyd wrote more octets (its progress).
    fn run(&mut self, chunk: usize, every: Duration, limit: Duration) -> Outcome {
        let started = Instant::now();
        let mut last_written = None;
        let mut written_octets = 0u64;
        let mut last_progress = started;
        let mut last_read = started;
        let mut read_octets = 0usize;
        check(
            self.stream
                .set_read_timeout(Some(Duration::from_millis(50))),
            "a read timeout",
        );
        while started.elapsed() < limit {
            let ours = self.ours();
            let theirs = self.theirs();
            let established = ours.is_some_and(|(state, _, _)| state == TCP_ESTABLISHED)
                && theirs.is_some_and(|(state, _, _)| state == TCP_ESTABLISHED);
            if !established {
                return Outcome {
                    gone: Some(Instant::now()),
                    last_progress,
                    read_octets,
                    written_octets,
                    theirs,
                };
            }
            // Octets topologyd has written so far: what we read, what waits in our receive
            // queue, and what waits in its send queue. It stops growing when topologyd's
            // writes stop (data still moving between the two kernels does not count).
            let written = match (ours, theirs) {
                (Some((_, _, received)), Some((_, unacknowledged, _))) => {
                    Some(received + unacknowledged + read_octets as u64)
                }
                _ => None,
            };
            if written != last_written {
                last_written = written;
                last_progress = Instant::now();
                written_octets = written_octets.max(written.unwrap_or(0));
            }
            if chunk > 0 && last_read.elapsed() >= every {
                let mut buffer = vec![0u8; chunk];
                match self.stream.read(&mut buffer) {
                    Ok(count) => read_octets += count,
                    Err(error)
                        if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => {}
                }
                last_read = Instant::now();
            }
            self.keepalive_if_due();
            std::thread::sleep(Duration::from_millis(50));
        }
        Outcome {
            gone: None,
            last_progress,
            read_octets,
            written_octets,
            theirs: self.theirs(),
        }
    }
}

#[derive(Debug)]
struct Outcome {
    gone: Option<Instant>,
    last_progress: Instant,
    read_octets: usize,
    /// The most octets topologyd had written to the connection.
    written_octets: u64,
    /// topologyd's socket when the run ended.
    theirs: Option<(u8, u64, u64)>,
}

impl Outcome {
    /// Asserts the connection went within a second of the send hold time after the last
    /// progress (plus the 50 ms polling), and not before it.
    fn assert_reset_on_time(&self, what: &str) {
        let gone = self
            .gone
            .unwrap_or_else(|| panic!("{what}: the connection outlived the send hold time"));
        let after = gone - self.last_progress;
        let send_hold = Duration::from_secs(u64::from(SEND_HOLD_SECONDS));
        eprintln!("{what}: connection gone {after:?} after topologyd's last progress");
        assert!(
            after >= send_hold - Duration::from_millis(500),
            "{what}: reset {after:?} after the last progress, before the send hold time"
        );
        assert!(
            after <= send_hold + Duration::from_millis(1200),
            "{what}: reset {after:?} after the last progress: not within a second of the timer"
        );
        assert_eq!(
            self.theirs, None,
            "{what}: topologyd's end of the connection must be gone (reset), not closing"
        );
    }
}

fn start() -> (Topologyd, IpAddr) {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let source = IpAddr::V4(alloc::loopback_v4());
    let mut neighbor = NeighborConfig::new(PEER_NAME, SocketAddr::new(source, 179), PEER_ASN);
    neighbor.passive = true;
    neighbor.families = vec!["ipv4"];
    neighbor.next_hop_ipv4 = Some(Ipv4Addr::new(192, 0, 2, 1));
    neighbor.next_hop_ipv6 = None;
    neighbor.hold_time_seconds = HOLD_TIME_SECONDS;
    neighbor.send_hold_time_seconds = Some(SEND_HOLD_SECONDS);
    daemon.neighbors.push(neighbor);
    let topologyd = check(
        Topologyd::start(
            daemon,
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", PREFIXES),
            ],
        ),
        "starting topologyd",
    );
    (topologyd, source)
}

/// Connects again as soon as topologyd takes the connection (it returns to Active after the
/// reset; the listener may see us before the peer task is ready).
fn reconnect(topologyd: &mut Topologyd, source: IpAddr) -> Speaker {
    let local = topologyd.config.local;
    let deadline = Instant::now() + WAIT;
    loop {
        check(topologyd.check_running(), "topologyd");
        let attempt = std::panic::catch_unwind(|| Speaker::establish(source, local));
        match attempt {
            Ok(speaker) => return speaker,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(_) => panic!(
                "could not establish again within {WAIT:?}\n{}",
                topologyd.log_tail()
            ),
        }
    }
}

#[test]
fn rfc9687_send_hold_resets_a_wedged_peer_and_counts_only_what_was_written() {
    let (mut topologyd, source) = start();
    let pid = topologyd.pid().unwrap_or_else(|| panic!("no pid"));
    let send_hold = Duration::from_secs(u64::from(SEND_HOLD_SECONDS));

    // A peer that stops reading right after the OPEN exchange, four times over.
    let mut resident = Vec::new();
    for round in 1..=4 {
        let before = sent_announced_between_sessions(&topologyd);
        let mut speaker = reconnect(&mut topologyd, source);
        let outcome = speaker.run(0, Duration::ZERO, send_hold * 4);
        outcome.assert_reset_on_time(&format!("stopped reader, round {round}"));
        // What was written fits in the two buffers; the rest was queued, then dropped.
        std::thread::sleep(Duration::from_millis(600));
        let counted = sent_announced(&topologyd) - before;
        eprintln!(
            "round {round}: {counted} of {ROUTES} prefixes counted as sent, {} octets written",
            outcome.written_octets
        );
        // Each /24 takes 4 octets of NLRI: the counter never exceeds what the octets written
        // can carry, and the routes only queued are not counted.
        assert!(
            counted > 0.0 && counted * 4.0 <= outcome.written_octets as f64,
            "round {round}: {counted} prefixes counted, {} octets written",
            outcome.written_octets
        );
        assert!(counted < ROUTES as f64, "round {round}: {counted} counted");
        resident.push(resident_kib(pid));
    }
    eprintln!("topologyd VmRSS after each stopped-reader round (KiB): {resident:?}");
    let growth = resident[3].saturating_sub(resident[0]);
    assert!(
        growth < 16 * 1024,
        "memory grew by {growth} KiB over three wedged sessions: {resident:?}"
    );

    // A peer reading one byte per second makes no window room: nothing is written, so the
    // timer fires all the same.
    let mut speaker = reconnect(&mut topologyd, source);
    let outcome = speaker.run(1, Duration::from_secs(1), send_hold * 4);
    assert!(outcome.read_octets > 0, "{outcome:?}");
    outcome.assert_reset_on_time("one byte per second");

    // A slow but steady reader: every message written restarts the timer. It takes 32 KiB
    // every half second: the receiver may open its window again only once about an MSS is
    // free (64 KiB on loopback), and a reader of 4 KiB a half second once left it shut for
    // longer than the send hold time on a loaded machine (a CI run failed so).
    let mut speaker = reconnect(&mut topologyd, source);
    let outcome = speaker.run(32 * 1024, Duration::from_millis(500), send_hold * 3);
    assert_eq!(
        outcome.gone,
        None,
        "a peer taking a message every send hold time was disconnected: {outcome:?}\n{}",
        topologyd.log_tail()
    );
    drop(speaker);

    // A peer that reads: every route arrives and is counted once written.
    let before = sent_announced_between_sessions(&topologyd);
    let mut speaker = reconnect(&mut topologyd, source);
    let mut prefixes = 0u64;
    loop {
        let (kind, body) = speaker.read_message();
        speaker.keepalive_if_due();
        if kind != MESSAGE_UPDATE {
            continue;
        }
        let withdrawn = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let attributes_at = 2 + withdrawn;
        let attributes = usize::from(u16::from_be_bytes([
            body[attributes_at],
            body[attributes_at + 1],
        ]));
        let nlri = &body[attributes_at + 2 + attributes..];
        if withdrawn == 0 && attributes == 0 && nlri.is_empty() {
            break; // End-of-RIB (RFC 4724 §2)
        }
        // Every route is a /24: a length octet and three address octets.
        assert_eq!(nlri.len() % 4, 0);
        prefixes += (nlri.len() / 4) as u64;
    }
    assert_eq!(prefixes, ROUTES);
    check(
        wait_until(
            "the sent counter to count every route written",
            WAIT,
            || {
                let counted = sent_announced(&topologyd) - before;
                if counted == ROUTES as f64 {
                    Ok(())
                } else {
                    Err(format!("{counted} counted"))
                }
            },
        ),
        "sent counter",
    );
    assert_eq!(
        speaker.theirs().map(|(state, _, _)| state),
        Some(TCP_ESTABLISHED)
    );
}
