//! The benchmark baseline of `benches/bgp_peers.sh`: a BGP speaker that does nothing but the
//! OPEN/KEEPALIVE handshake and then writes UPDATE bytes encoded *before* the session started,
//! straight into the socket. Whatever the receiver needs to ingest them is the receiver's own
//! limit; every real sender is compared against it.
//!
//! The bytes are produced by our own packer (`topologyd_bgp::AdjRibOut`, 4096-octet UPDATEs,
//! one attribute set: ORIGIN IGP, AS_PATH [asn], NEXT_HOP / MP_REACH next hop), so the blaster
//! sends exactly the messages topologyd would, minus all the work of deciding them.
//!
//! Protocol with the driver (stdout lines, stdin commands):
//! - prints `encoded <announce-octets> <withdraw-octets>` once the bytes are ready, then
//!   connects;
//! - prints `established <unix-ms>` when the peer's KEEPALIVE confirmed the session, writes
//!   every announcement, prints `announce-written <unix-ms>`;
//! - on the stdin line `withdraw`, writes every withdrawal, prints `withdraw-written <unix-ms>`;
//! - on stdin EOF or `stop`, sends a Cease NOTIFICATION and exits.
//!
//! Must not touch: anything but the one loopback connection it is told to open.

use std::io::{BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use topologyd_bgp::codec::{Capabilities, EncodeContext, Family, Ipv6NextHop, Message, Open};
use topologyd_bgp::{AdjRibOut, Negotiated, Notification, PathAttributes, encode_message};

/// Octets handed to one `write_all` (the same budget topologyd's peer task pulls with).
const CHUNK_BUDGET: usize = 256 * 1024;
/// Proposed hold time; keepalives go out every third of it.
const HOLD_TIME: u16 = 240;

#[derive(Debug)]
struct Arguments {
    local: IpAddr,
    remote: SocketAddr,
    asn: u32,
    router_id: Ipv4Addr,
    ipv4: u32,
    ipv6: u32,
    next_hop_v4: Ipv4Addr,
    next_hop_v6: Ipv6Addr,
}

fn parse_arguments() -> Result<Arguments, String> {
    let mut arguments = Arguments {
        local: IpAddr::V4(Ipv4Addr::LOCALHOST),
        remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 179),
        asn: 65001,
        router_id: Ipv4Addr::new(10, 255, 0, 1),
        ipv4: 1_000_000,
        ipv6: 200_000,
        next_hop_v4: Ipv4Addr::new(192, 0, 2, 1),
        next_hop_v6: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |error: &dyn std::fmt::Display| format!("{flag} {value}: {error}");
        match flag.as_str() {
            "--local" => arguments.local = value.parse().map_err(|e| bad(&e))?,
            "--remote" => arguments.remote = value.parse().map_err(|e| bad(&e))?,
            "--asn" => arguments.asn = value.parse().map_err(|e| bad(&e))?,
            "--router-id" => arguments.router_id = value.parse().map_err(|e| bad(&e))?,
            "--ipv4" => arguments.ipv4 = value.parse().map_err(|e| bad(&e))?,
            "--ipv6" => arguments.ipv6 = value.parse().map_err(|e| bad(&e))?,
            "--next-hop-v4" => arguments.next_hop_v4 = value.parse().map_err(|e| bad(&e))?,
            "--next-hop-v6" => arguments.next_hop_v6 = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !arguments.remote.ip().is_loopback() || !arguments.local.is_loopback() {
        return Err("the blaster only talks over loopback".into());
    }
    Ok(arguments)
}

/// The benchmark's route set (the same formula as `src/bin/bgp_peers.rs`): IPv4 /24s counting
/// up from 11.0.0.0, IPv6 /48s counting up from 3fff::/20 (documentation space, RFC 9637).
fn prefixes(ipv4: u32, ipv6: u32) -> Vec<IpNet> {
    let mut prefixes = Vec::with_capacity((ipv4 + ipv6) as usize);
    for index in 0..ipv4 {
        let address = Ipv4Addr::from((11u32 << 24).wrapping_add(index << 8));
        prefixes.extend(Ipv4Net::new(address, 24).ok().map(IpNet::V4));
    }
    for index in 0..ipv6 {
        let address = Ipv6Addr::from((0x3fffu128 << 112) | (u128::from(index) << 80));
        prefixes.extend(Ipv6Net::new(address, 48).ok().map(IpNet::V6));
    }
    prefixes
}

fn negotiated(remote_asn: u32) -> Negotiated {
    Negotiated {
        remote_asn,
        remote_router_id: Ipv4Addr::UNSPECIFIED,
        hold_time: HOLD_TIME,
        keepalive_interval: Some(Duration::from_secs(u64::from(HOLD_TIME / 3))),
        families: Family::ALL.to_vec(),
        four_octet_as: true,
        extended_messages: false,
        route_refresh: false,
        enhanced_route_refresh: false,
        peer_graceful_restart: None,
        local_graceful_restart: false,
        internal: false,
    }
}

/// UPDATE bytes in socket-sized chunks.
type Chunks = Vec<Vec<u8>>;

/// Encodes every announcement, then every withdrawal, into socket-sized chunks.
fn encode(arguments: &Arguments) -> Result<(Chunks, Chunks), String> {
    let shared = Arc::new(
        PathAttributes {
            next_hop: Some(arguments.next_hop_v4),
            ipv6_next_hop: Some(Ipv6NextHop {
                global: arguments.next_hop_v6,
                link_local: None,
            }),
            ..PathAttributes::default()
        }
        .with_as_sequence(vec![arguments.asn]),
    );
    let mut rib = AdjRibOut::new();
    rib.reserve(arguments.ipv4 as usize, arguments.ipv6 as usize);
    for prefix in prefixes(arguments.ipv4, arguments.ipv6) {
        rib.announce(prefix, &shared)
            .map_err(|error| format!("announce {prefix}: {error}"))?;
    }
    rib.session_established(&negotiated(0));
    let mut announce = Vec::new();
    while let Some(bytes) = rib.next_update(CHUNK_BUDGET) {
        announce.push(bytes.to_vec());
    }
    rib.withdraw_all();
    let mut withdraw = Vec::new();
    while let Some(bytes) = rib.next_update(CHUNK_BUDGET) {
        withdraw.push(bytes.to_vec());
    }
    Ok((announce, withdraw))
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis())
}

fn say(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Reads messages until the peer's OPEN and then its KEEPALIVE have arrived; afterwards keeps
/// draining the socket (the receiver exports nothing, but sends KEEPALIVEs).
fn read_messages(mut stream: TcpStream, established: &AtomicBool) -> std::io::Result<()> {
    let mut seen_open = false;
    let mut header = [0u8; 19];
    let mut body = vec![0u8; 65_535];
    loop {
        stream.read_exact(&mut header)?;
        let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let kind = header[18];
        stream.read_exact(&mut body[..length.saturating_sub(19)])?;
        match kind {
            1 => seen_open = true,
            3 => {
                return Err(std::io::Error::other(format!(
                    "NOTIFICATION from the peer: code {} subcode {}",
                    body[0], body[1]
                )));
            }
            4 if seen_open => established.store(true, Ordering::Release),
            _ => {}
        }
    }
}

fn write_locked(stream: &Mutex<TcpStream>, bytes: &[u8]) -> std::io::Result<()> {
    stream
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .write_all(bytes)
}

fn run() -> Result<(), String> {
    let arguments = parse_arguments()?;
    let (announce, withdraw) = encode(&arguments)?;
    let total = |chunks: &[Vec<u8>]| chunks.iter().map(Vec::len).sum::<usize>();
    say(&format!(
        "encoded {} {}",
        total(&announce),
        total(&withdraw)
    ));

    let socket = socket2::Socket::new(
        socket2::Domain::for_address(arguments.remote),
        socket2::Type::STREAM,
        None,
    )
    .map_err(|error| format!("socket: {error}"))?;
    socket
        .bind(&SocketAddr::new(arguments.local, 0).into())
        .map_err(|error| format!("bind {}: {error}", arguments.local))?;
    socket
        .connect(&arguments.remote.into())
        .map_err(|error| format!("connect {}: {error}", arguments.remote))?;
    let stream: TcpStream = socket.into();
    stream
        .set_nodelay(true)
        .map_err(|error| error.to_string())?;
    let reader = stream.try_clone().map_err(|error| error.to_string())?;
    let established = Arc::new(AtomicBool::new(false));
    let reader_established = Arc::clone(&established);
    std::thread::spawn(move || {
        if let Err(error) = read_messages(reader, &reader_established) {
            eprintln!("bgp_blaster: read: {error}");
            std::process::exit(2);
        }
    });
    let writer = Arc::new(Mutex::new(stream));
    let context = EncodeContext::default();
    let open = Message::Open(Open {
        asn_field: Open::asn_field_for(arguments.asn),
        hold_time: HOLD_TIME,
        router_id: arguments.router_id,
        capabilities: Capabilities {
            multiprotocol: Family::ALL.to_vec(),
            four_octet_asn: Some(arguments.asn),
            ..Capabilities::default()
        },
    });
    let encoded = |message: &Message| {
        encode_message(message, &context).map_err(|error| format!("encoding: {error}"))
    };
    let keepalive = encoded(&Message::Keepalive)?;
    write_locked(&writer, &encoded(&open)?).map_err(|error| format!("OPEN: {error}"))?;
    write_locked(&writer, &keepalive).map_err(|error| format!("KEEPALIVE: {error}"))?;
    while !established.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_micros(200));
    }
    say(&format!("established {}", unix_ms()));
    let keepalive_writer = Arc::clone(&writer);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(u64::from(HOLD_TIME / 3)));
            if write_locked(&keepalive_writer, &keepalive).is_err() {
                return;
            }
        }
    });
    for chunk in &announce {
        write_locked(&writer, chunk).map_err(|error| format!("announce: {error}"))?;
    }
    say(&format!("announce-written {}", unix_ms()));
    drop(announce);
    for line in std::io::stdin().lock().lines() {
        match line.map_err(|error| error.to_string())?.trim() {
            "withdraw" => {
                for chunk in &withdraw {
                    write_locked(&writer, chunk).map_err(|error| format!("withdraw: {error}"))?;
                }
                say(&format!("withdraw-written {}", unix_ms()));
            }
            "stop" => break,
            other => eprintln!("bgp_blaster: unknown command {other:?}"),
        }
    }
    let cease = encoded(&Message::Notification(Notification::new(6, 2, Vec::new())))?;
    let _ = write_locked(&writer, &cease);
    Ok(())
}

fn main() {
    if let Err(error) = run() {
        eprintln!("bgp_blaster: {error}");
        std::process::exit(1);
    }
}
