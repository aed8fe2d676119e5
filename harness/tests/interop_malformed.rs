//! RFC 7606 against the real daemon: a tiny raw BGP speaker written here completes the OPEN
//! handshake with topologyd, then sends crafted UPDATEs, while a real FRR `bgpd` peers with the
//! same topologyd. Each malformed message must get its RFC 7606 action, observed on the wire
//! (NOTIFICATION or not) and in topologyd's `/metrics` prefix counters, and the FRR session must
//! never notice: it stays Established on its first connection with exactly the same routes.
//!
//! - §7.1 an ORIGIN of 5: treat-as-withdraw, the session stays up;
//! - §7.7 an AGGREGATOR of the wrong length: attribute discard, the route is accepted;
//! - RFC 4271 §6.1 a header whose marker is not all ones: NOTIFICATION Message Header Error /
//!   Connection Not Synchronized, and only that session closes.

use topologyd_harness::interop;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use interop::{
    LOCAL_ASN, PEER_ASN, PEER_NAME, WAIT, check, expected_routes, metric, neighbor, peer_spec,
    session_state, start_topologyd, wait_established_here, wait_for_exactly,
};
use serde_json::Value;
use socket2::{Domain, SockAddr, Socket, Type};
use topologyd_harness::peers::{BgpPeer, FrrPeer, Transport, alloc};
use topologyd_harness::topologyd::{Topologyd, wait_until};

const RAW_NAME: &str = "raw";
const MESSAGE_OPEN: u8 = 1;
const MESSAGE_UPDATE: u8 = 2;
const MESSAGE_NOTIFICATION: u8 = 3;
const MESSAGE_KEEPALIVE: u8 = 4;
const HEADER_LENGTH: usize = 19;
/// AS_TRANS (RFC 6793) in the OPEN's 2-octet "My Autonomous System" field.
const AS_TRANS: u16 = 23456;
/// Attribute flags: well-known transitive, optional transitive.
const WELL_KNOWN: u8 = 0x40;
const OPTIONAL_TRANSITIVE: u8 = 0xC0;

/// A BGP speaker that only does what the test tells it.
struct RawSpeaker {
    stream: TcpStream,
}

fn message(message_type: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xFF; 16];
    let length = u16::try_from(HEADER_LENGTH + body.len()).unwrap_or(u16::MAX);
    bytes.extend(length.to_be_bytes());
    bytes.push(message_type);
    bytes.extend(body);
    bytes
}

/// OPEN (RFC 4271 §4.2) with MP-BGP IPv4 and IPv6 unicast (RFC 4760) and 4-octet ASN (RFC 6793).
fn open(asn: u32) -> Vec<u8> {
    let mut capabilities = Vec::new();
    for afi in [1u16, 2] {
        capabilities.extend([1, 4]);
        capabilities.extend(afi.to_be_bytes());
        capabilities.extend([0, 1]);
    }
    capabilities.extend([65, 4]);
    capabilities.extend(asn.to_be_bytes());
    let mut parameters = vec![2, u8::try_from(capabilities.len()).unwrap_or(u8::MAX)];
    parameters.extend(capabilities);
    let mut body = vec![4];
    body.extend(AS_TRANS.to_be_bytes());
    body.extend(30u16.to_be_bytes());
    body.extend(Ipv4Addr::new(192, 0, 2, 99).octets());
    body.push(u8::try_from(parameters.len()).unwrap_or(u8::MAX));
    body.extend(parameters);
    message(MESSAGE_OPEN, &body)
}

fn attribute(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut bytes = vec![flags, code, u8::try_from(value.len()).unwrap_or(u8::MAX)];
    bytes.extend(value);
    bytes
}

/// An UPDATE announcing 203.0.113.0/24 from `PEER_ASN`, with `origin` and extra attributes.
fn update(origin: u8, extra: &[Vec<u8>]) -> Vec<u8> {
    let mut as_path = vec![2, 1];
    as_path.extend(PEER_ASN.to_be_bytes());
    let mut attributes = attribute(WELL_KNOWN, 1, &[origin]);
    attributes.extend(attribute(WELL_KNOWN, 2, &as_path));
    attributes.extend(attribute(WELL_KNOWN, 3, &[192, 0, 2, 7]));
    for extra in extra {
        attributes.extend(extra);
    }
    let mut body = 0u16.to_be_bytes().to_vec();
    body.extend(
        u16::try_from(attributes.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    body.extend(attributes);
    body.extend([24, 203, 0, 113]);
    message(MESSAGE_UPDATE, &body)
}

impl RawSpeaker {
    /// Connects from `source` to topologyd and completes the OPEN / KEEPALIVE exchange.
    fn establish(source: IpAddr, topologyd: SocketAddr) -> RawSpeaker {
        let socket = check(Socket::new(Domain::IPV4, Type::STREAM, None), "a socket");
        check(
            socket.bind(&SockAddr::from(SocketAddr::new(source, 0))),
            "binding the raw speaker's address",
        );
        check(
            socket.connect_timeout(&SockAddr::from(topologyd), Duration::from_secs(5)),
            "connecting to topologyd",
        );
        let mut speaker = RawSpeaker {
            stream: socket.into(),
        };
        speaker.send(&open(PEER_ASN));
        let (kind, _) = speaker.read_skipping(&[]);
        assert_eq!(kind, MESSAGE_OPEN, "topologyd's first message");
        let (kind, body) = speaker.read_skipping(&[]);
        assert_eq!(
            kind, MESSAGE_KEEPALIVE,
            "topologyd refused our OPEN: {body:?}"
        );
        speaker.send(&message(MESSAGE_KEEPALIVE, &[]));
        speaker
    }

    fn send(&mut self, bytes: &[u8]) {
        check(self.stream.write_all(bytes), "writing to topologyd");
    }

    /// The next message, or `None` when nothing arrived within `timeout`.
    fn read(&mut self, timeout: Duration) -> Option<(u8, Vec<u8>)> {
        check(
            self.stream.set_read_timeout(Some(timeout)),
            "setting a timeout",
        );
        let mut header = [0u8; HEADER_LENGTH];
        match self.stream.read_exact(&mut header) {
            Ok(()) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None;
            }
            Err(error) => panic!("the connection to topologyd ended: {error}"),
        }
        let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut body = vec![0u8; length.saturating_sub(HEADER_LENGTH)];
        check(self.stream.read_exact(&mut body), "reading a message body");
        Some((header[18], body))
    }

    /// The next message whose type is not in `skip` (UPDATEs and KEEPALIVEs from topologyd).
    fn read_skipping(&mut self, skip: &[u8]) -> (u8, Vec<u8>) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some((kind, body)) = self.read(Duration::from_secs(1))
                && !skip.contains(&kind)
            {
                return (kind, body);
            }
        }
        panic!("no message from topologyd within {WAIT:?}");
    }

    /// Reads for `window` and fails on a NOTIFICATION or a closed connection.
    fn expect_no_notification(&mut self, window: Duration) {
        let deadline = Instant::now() + window;
        while Instant::now() < deadline {
            if let Some((kind, body)) = self.read(Duration::from_millis(200)) {
                assert_ne!(
                    kind, MESSAGE_NOTIFICATION,
                    "topologyd reset the session: NOTIFICATION {body:?}"
                );
            }
        }
    }

    /// After a NOTIFICATION, topologyd closes the connection.
    fn expect_closed(&mut self) {
        check(
            self.stream.set_read_timeout(Some(WAIT)),
            "setting a timeout",
        );
        let mut rest = Vec::new();
        match self.stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => {}
            Err(error) => panic!("topologyd kept the connection open: {error}"),
        }
    }
}

fn prefixes_received(topologyd: &Topologyd, kind: &str) -> f64 {
    metric(
        topologyd,
        &format!(
            "topologyd_bgp_prefixes_total{{peer=\"{RAW_NAME}\",direction=\"received\",kind=\"{kind}\"}}"
        ),
    )
}

/// Waits until the raw peer's received-prefix counters are (announced, withdrawn).
fn wait_prefix_counters(topologyd: &Topologyd, announced: f64, withdrawn: f64, what: &str) {
    check(
        wait_until(what, WAIT, || {
            let now = (
                prefixes_received(topologyd, "announced"),
                prefixes_received(topologyd, "withdrawn"),
            );
            if now == (announced, withdrawn) {
                Ok(())
            } else {
                Err(format!(
                    "(announced, withdrawn) = {now:?}, expected ({announced}, {withdrawn})"
                ))
            }
        }),
        what,
    );
}

/// FRR's view of its one session: (connections established, connections dropped).
fn frr_connections(frr: &FrrPeer) -> (u64, u64) {
    let text = check(frr.vtysh(&["show bgp neighbors json"]), "FRR neighbors");
    let value: Value = check(serde_json::from_str(&text), "FRR neighbors JSON");
    let neighbor = value
        .as_object()
        .and_then(|neighbors| neighbors.values().next())
        .unwrap_or_else(|| panic!("FRR has no neighbor: {text}"));
    let field = |name: &str| {
        neighbor
            .get(name)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("FRR neighbor has no {name}: {neighbor}"))
    };
    (field("connectionsEstablished"), field("connectionsDropped"))
}

#[test]
fn rfc7606_malformed_updates_get_their_action_and_other_sessions_stay_up() {
    let mut daemon = interop::daemon_config(Transport::V4);
    let frr_endpoint = alloc::endpoint(Transport::V4);
    let frr = check(
        FrrPeer::start(peer_spec(&daemon, frr_endpoint)),
        "starting FRR",
    );
    daemon.neighbors.push(neighbor(PEER_NAME, frr_endpoint));
    let raw_address = IpAddr::V4(alloc::loopback_v4());
    let mut raw_neighbor = neighbor(RAW_NAME, SocketAddr::new(raw_address, 179));
    raw_neighbor.passive = true;
    daemon.neighbors.push(raw_neighbor);
    let (topologyd, _pki, _admin) = start_topologyd(daemon);
    let expected = expected_routes(true);
    wait_for_exactly(&frr, &expected);
    wait_established_here(&topologyd, PEER_NAME);
    assert_eq!(frr_connections(&frr), (1, 0));

    let mut raw = RawSpeaker::establish(raw_address, topologyd.config.local);
    wait_established_here(&topologyd, RAW_NAME);
    assert_eq!(LOCAL_ASN, topologyd.config.local_asn);

    // A well-formed UPDATE first: one prefix announced.
    raw.send(&update(0, &[]));
    wait_prefix_counters(&topologyd, 1.0, 0.0, "the valid UPDATE counted");

    // RFC 7606 §7.1: ORIGIN 5 is undefined → treat-as-withdraw; no NOTIFICATION.
    raw.send(&update(5, &[]));
    wait_prefix_counters(
        &topologyd,
        1.0,
        1.0,
        "RFC 7606 §7.1 treat-as-withdraw counted",
    );
    raw.expect_no_notification(Duration::from_secs(1));
    assert_eq!(session_state(&topologyd, RAW_NAME), 6.0);

    // RFC 7606 §7.7: an AGGREGATOR of 5 octets (4-octet ASNs make it 8) → attribute discard,
    // the route itself is accepted.
    let aggregator = attribute(OPTIONAL_TRANSITIVE, 7, &[0, 0, 0, 1, 192]);
    raw.send(&update(0, &[aggregator]));
    wait_prefix_counters(
        &topologyd,
        2.0,
        1.0,
        "RFC 7606 §7.7 attribute discard accepted the route",
    );
    raw.expect_no_notification(Duration::from_secs(1));
    assert_eq!(session_state(&topologyd, RAW_NAME), 6.0);

    // RFC 4271 §6.1: a marker that is not all ones → Message Header Error (1) / Connection
    // Not Synchronized (1), and the connection closes.
    let mut bad_header = message(MESSAGE_KEEPALIVE, &[]);
    bad_header[3] = 0;
    raw.send(&bad_header);
    let (kind, body) = raw.read_skipping(&[MESSAGE_KEEPALIVE, MESSAGE_UPDATE]);
    assert_eq!(kind, MESSAGE_NOTIFICATION, "{body:?}");
    assert_eq!(
        body.get(..2),
        Some(&[1u8, 1][..]),
        "Message Header Error / Connection Not Synchronized"
    );
    raw.expect_closed();
    check(
        wait_until("the raw session down at topologyd", WAIT, || {
            let state = session_state(&topologyd, RAW_NAME);
            if state == 6.0 {
                Err(format!("state {state}"))
            } else {
                Ok(())
            }
        }),
        "the raw session",
    );

    // The FRR session never noticed: same connection, same routes.
    assert!(check(frr.session_state(), "FRR's state").is_established());
    assert_eq!(session_state(&topologyd, PEER_NAME), 6.0);
    assert_eq!(frr_connections(&frr), (1, 0), "the FRR session was reset");
    wait_for_exactly(&frr, &expected);
}
