//! Loopback address and port allocation, so that tests running in parallel (threads of one
//! `cargo test` process, and other test processes) never hand two daemons the same BGP listener.
//!
//! IPv4: every call returns a new `127.a.b.c` address; `a` comes from the process id (1..=254, never
//! 0 so `127.0.0.1` stays untouched) and `b.c` from a per-process counter. Linux routes all of
//! `127.0.0.0/8` to `lo`, so these addresses work without configuration. IPv6 has only `::1`, so IPv6
//! endpoints differ by port: ports come from the kernel (bind port 0) and are remembered so that
//! this process never hands the same one out twice. Nothing here touches a non-loopback address.
//!
//! A test that needs connections refused takes a [`RefusingEndpoint`]: a port that is only free
//! when it is picked may be taken by another process before the test connects.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use super::Transport;

static NEXT_HOST: AtomicU32 = AtomicU32::new(0);
static HANDED_OUT: Mutex<Option<HashSet<SocketAddr>>> = Mutex::new(None);

/// A loopback address no other call in this process has returned.
pub fn loopback_v4() -> Ipv4Addr {
    // 254 usable values per last octet (1..=254) keep .0 and .255 out of the way.
    let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
    let host = n % (254 * 256);
    let second = u8::try_from(1 + std::process::id() % 254).unwrap_or(1);
    let third = u8::try_from(host / 254).unwrap_or(0);
    let fourth = u8::try_from(1 + host % 254).unwrap_or(1);
    Ipv4Addr::new(127, second, third, fourth)
}

/// A port on `ip` that is free now and was never handed out by this process before.
pub fn free_port(ip: IpAddr) -> u16 {
    loop {
        let candidate = TcpListener::bind(SocketAddr::new(ip, 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            // Binding port 0 on loopback only fails when the ephemeral range is exhausted; fall
            // back to a port derived from the counter rather than giving up.
            .unwrap_or_else(|_| {
                let n = NEXT_HOST.fetch_add(1, Ordering::Relaxed);
                20_000 + u16::try_from(n % 20_000).unwrap_or(0)
            });
        let mut guard = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if guard
            .get_or_insert_with(HashSet::new)
            .insert(SocketAddr::new(ip, candidate))
        {
            return candidate;
        }
    }
}

/// A fresh endpoint for a BGP listener of the given transport.
pub fn endpoint(transport: Transport) -> SocketAddr {
    let ip = match transport {
        Transport::V4 => IpAddr::V4(loopback_v4()),
        Transport::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    SocketAddr::new(ip, free_port(ip))
}

/// A loopback endpoint where every TCP connection is refused and every UDP datagram answered
/// with "port unreachable", for as long as the value lives.
///
/// A port that is merely free when it is picked can be taken by any process that binds a port
/// afterwards (a wildcard listener with an ephemeral port is enough), and a test expecting
/// "connection refused" then reaches that process instead. This one holds the port without
/// `SO_REUSEADDR`, so that nobody else can bind it: over TCP with a bound socket that never
/// listens (the kernel resets every connection attempt), over UDP with a socket connected to
/// another port (datagrams from anyone else find no socket, as if nothing were bound).
#[derive(Debug)]
pub struct RefusingEndpoint {
    address: SocketAddr,
    _held: [socket2::Socket; 2],
}

impl RefusingEndpoint {
    /// A new one on a fresh address (IPv4) or port (IPv6).
    ///
    /// # Panics
    ///
    /// When a hundred fresh endpoints in a row cannot be held (no loopback address, no file
    /// descriptors left): the test cannot run.
    pub fn new(transport: Transport) -> Self {
        let mut last_error = None;
        for _ in 0..100 {
            let address = endpoint(transport);
            match Self::hold(address) {
                Ok(held) => {
                    return Self {
                        address,
                        _held: held,
                    };
                }
                // A port taken between the pick and the bind: pick another.
                Err(error) => last_error = Some(error),
            }
        }
        panic!("no refusing endpoint could be held on loopback: {last_error:?}")
    }

    fn hold(address: SocketAddr) -> std::io::Result<[socket2::Socket; 2]> {
        use socket2::{Domain, Protocol, Socket, Type};
        let domain = Domain::for_address(address);
        let tcp = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        tcp.bind(&address.into())?;
        let udp = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        udp.bind(&address.into())?;
        // Port 9 (discard) on the same loopback address; connecting a UDP socket sends nothing.
        udp.connect(&SocketAddr::new(address.ip(), 9).into())?;
        Ok([tcp, udp])
    }

    /// The address connections to which are refused.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_loopback() {
        let seen: HashSet<Ipv4Addr> = (0..1000).map(|_| loopback_v4()).collect();
        assert_eq!(seen.len(), 1000);
        assert!(
            seen.iter()
                .all(|address| address.is_loopback() && address.octets()[1] != 0)
        );
    }

    #[test]
    fn a_refusing_endpoint_refuses_and_cannot_be_taken() {
        for transport in [Transport::V4, Transport::V6] {
            let refusing = RefusingEndpoint::new(transport);
            let error = std::net::TcpStream::connect(refusing.address())
                .expect_err("nothing listens on a refusing endpoint");
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
            assert!(TcpListener::bind(refusing.address()).is_err());
            let wildcard = match transport {
                Transport::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                Transport::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            };
            let port = refusing.address().port();
            assert!(TcpListener::bind(SocketAddr::new(wildcard, port)).is_err());
            assert!(std::net::UdpSocket::bind(refusing.address()).is_err());
            assert!(std::net::UdpSocket::bind(SocketAddr::new(wildcard, port)).is_err());
            // A datagram to it comes back as "port unreachable".
            let client = std::net::UdpSocket::bind(SocketAddr::new(refusing.address().ip(), 0))
                .expect("a loopback UDP socket");
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .expect("a read timeout");
            client.connect(refusing.address()).expect("connect");
            client.send(b"anyone?").expect("send");
            let error = client
                .recv(&mut [0u8; 16])
                .expect_err("nothing answers a refusing endpoint");
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{error}"
            );
        }
    }

    #[test]
    fn v6_endpoints_never_share_a_port() {
        let seen: HashSet<SocketAddr> = (0..50).map(|_| endpoint(Transport::V6)).collect();
        assert_eq!(seen.len(), 50);
    }
}
