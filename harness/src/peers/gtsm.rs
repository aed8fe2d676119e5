//! GTSM probe (RFC 5082): connects to a daemon from its configured neighbor address with a chosen
//! IP TTL (IPv6 hop limit) and reports whether the daemon processed what was sent.
//!
//! Loopback is enough for this test, so no network namespace is created: on `lo` the TTL is never
//! decremented, so a socket with TTL 254 looks exactly like a neighbor one hop further away. The TTL
//! must be set before `connect()` (the SYN carries it), which std cannot do; `socket2` can, without
//! `unsafe`.
//!
//! Daemons differ in where they drop low-TTL packets: with `IP_MINTTL` on the listener the SYN is
//! dropped and `connect` times out; when it is set only on the accepted socket the handshake
//! completes and later segments vanish. Either way the daemon never *answers our OPEN*: its own OPEN
//! may arrive, but never the KEEPALIVE or NOTIFICATION that follows processing ours. So the probe
//! sends a valid OPEN and reports [`TtlProbe::Accepted`] only if a KEEPALIVE (or a NOTIFICATION
//! complaining about that OPEN) comes back before the timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use super::{Daemon, Error, Family, PeerSpec, Result};

/// What a daemon did with a connection from the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtlProbe {
    /// The daemon answered our OPEN (KEEPALIVE, or an OPEN Message Error): our packets reached it.
    Accepted,
    /// Nothing proved that our packets reached the daemon; the text says what was observed.
    Refused(String),
}

/// AS_TRANS (RFC 6793) for the 2-octet "My Autonomous System" field.
const AS_TRANS: u16 = 23456;
const MESSAGE_OPEN: u8 = 1;
const MESSAGE_NOTIFICATION: u8 = 3;
const MESSAGE_KEEPALIVE: u8 = 4;
/// NOTIFICATION error code 2, OPEN Message Error (RFC 4271 §6.2).
const NOTIFICATION_OPEN_ERROR: u8 = 2;
/// How long the probe waits for the daemon's OPEN before sending its own anyway.
const OPEN_WAIT: Duration = Duration::from_secs(1);

/// Connects to the daemon described by `spec` (at `spec.local`) from `spec.neighbor`'s address,
/// with the given TTL / hop limit, sends an OPEN as `spec.neighbor_asn`, and waits up to `timeout`.
pub fn ttl_probe(daemon: Daemon, spec: &PeerSpec, ttl: u32, timeout: Duration) -> Result<TtlProbe> {
    let io_error = |context: &str| {
        let context = format!("GTSM probe to {} with TTL {ttl}: {context}", spec.local);
        move |source| Error::Io {
            daemon,
            context,
            source,
        }
    };
    let domain = match spec.local {
        SocketAddr::V4(_) => Domain::IPV4,
        SocketAddr::V6(_) => Domain::IPV6,
    };
    let socket = Socket::new(domain, Type::STREAM, None).map_err(io_error("socket"))?;
    match spec.local.ip() {
        IpAddr::V4(_) => socket.set_ttl_v4(ttl),
        IpAddr::V6(_) => socket.set_unicast_hops_v6(ttl),
    }
    .map_err(io_error("set TTL"))?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(spec.neighbor.ip(), 0)))
        .map_err(io_error("bind the neighbor address"))?;
    let started = Instant::now();
    match socket.connect_timeout(&SockAddr::from(spec.local), timeout) {
        Ok(()) => {}
        Err(error) if error.kind() == ErrorKind::TimedOut => {
            return Ok(TtlProbe::Refused(format!("connect timed out: {error}")));
        }
        Err(error) => return Err(io_error("connect")(error)),
    }
    let mut stream: TcpStream = socket.into();
    // Send our OPEN only after the daemon's own OPEN (or a short pause): a daemon that sets the
    // minimum TTL on the accepted socket does so before it sends its OPEN, and segments queued
    // before that would otherwise slip through.
    let mut sent_open = false;
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Ok(TtlProbe::Refused("no answer to our OPEN".to_string()));
        }
        let wait = if sent_open {
            remaining
        } else {
            remaining.min(OPEN_WAIT)
        };
        stream
            .set_read_timeout(Some(wait))
            .map_err(io_error("set read timeout"))?;
        let message = match read_message(&mut stream) {
            Ok(message) => Some(message),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                None
            }
            Err(error) => return Ok(TtlProbe::Refused(format!("connection ended: {error}"))),
        };
        match message {
            None if sent_open => return Ok(TtlProbe::Refused("no answer to our OPEN".to_string())),
            None | Some((MESSAGE_OPEN, _)) => {
                if !sent_open {
                    stream
                        .write_all(&open_message(spec))
                        .map_err(io_error("send OPEN"))?;
                    sent_open = true;
                }
            }
            Some((MESSAGE_KEEPALIVE, _)) if sent_open => return Ok(TtlProbe::Accepted),
            // Only a complaint about our OPEN proves it arrived; a Cease (e.g. a collision with
            // the previous probe's connection) can be sent without reading anything from us.
            Some((MESSAGE_NOTIFICATION, body))
                if sent_open && body.first() == Some(&NOTIFICATION_OPEN_ERROR) =>
            {
                return Ok(TtlProbe::Accepted);
            }
            Some((MESSAGE_NOTIFICATION, body)) => {
                return Ok(TtlProbe::Refused(format!(
                    "NOTIFICATION {:?} that does not answer our OPEN",
                    body.get(..2).unwrap_or_default()
                )));
            }
            Some((other, _)) => {
                return Ok(TtlProbe::Refused(format!(
                    "unexpected message type {other}"
                )));
            }
        }
    }
}

/// Reads one BGP message and returns its type and body.
fn read_message(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 19];
    stream.read_exact(&mut header)?;
    let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
    let mut body = vec![0u8; length.saturating_sub(header.len())];
    stream.read_exact(&mut body)?;
    Ok((header[18], body))
}

/// A BGP OPEN (RFC 4271 §4.2) with multiprotocol (RFC 4760) and 4-octet ASN (RFC 6793)
/// capabilities for the spec's families.
fn open_message(spec: &PeerSpec) -> Vec<u8> {
    let mut capabilities = Vec::new();
    for family in &spec.families {
        let afi: u16 = match family {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        };
        capabilities.extend([1, 4]);
        capabilities.extend(afi.to_be_bytes());
        capabilities.extend([0, 1]);
    }
    capabilities.extend([65, 4]);
    capabilities.extend(spec.neighbor_asn.to_be_bytes());
    let mut parameters = vec![2, u8::try_from(capabilities.len()).unwrap_or(u8::MAX)];
    parameters.extend(capabilities);
    let my_as = u16::try_from(spec.neighbor_asn).unwrap_or(AS_TRANS);
    // The probe's BGP identifier only has to differ from the daemon's.
    let identifier = u32::from(spec.router_id).wrapping_add(1);
    let mut body = vec![4];
    body.extend(my_as.to_be_bytes());
    body.extend(spec.hold_time.max(3).to_be_bytes());
    body.extend(identifier.to_be_bytes());
    body.push(u8::try_from(parameters.len()).unwrap_or(u8::MAX));
    body.extend(parameters);
    let mut message = vec![0xFF; 16];
    message.extend(
        u16::try_from(19 + body.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    message.push(MESSAGE_OPEN);
    message.extend(body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_message_has_consistent_lengths() {
        let (spec, _) = PeerSpec::pair(4_200_000_000, 65002, super::super::Transport::V4);
        let message = open_message(&spec);
        assert_eq!(
            usize::from(u16::from_be_bytes([message[16], message[17]])),
            message.len()
        );
        assert_eq!(message[18], MESSAGE_OPEN);
        // Optional parameters length matches what follows it.
        assert_eq!(usize::from(message[28]), message.len() - 29);
    }
}
