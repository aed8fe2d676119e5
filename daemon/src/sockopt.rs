//! Transport security for BGP sessions on Linux sockets: TCP-MD5 signatures (RFC 2385) and
//! GTSM, the generalized TTL security mechanism (RFC 5082).
//!
//! Owns: creating, configuring, binding and listening/connecting the BGP TCP sockets, so that
//! every option is in place before the first SYN: an MD5 key must be on the listener before
//! `listen()` (or at least before the peer's SYN) and on an active socket before `connect()`.
//!
//! Must not touch: the BGP state machine, timers, or which peers exist (callers pass keys and
//! hop counts in).
//!
//! `socket2` creates, binds and listens; it has no TCP-MD5 or minimum-TTL option, and neither
//! has `nix`, so the single function [`set_raw_option`] calls `libc::setsockopt` directly. It is
//! the only `unsafe` code in the daemon and only accepts the two value types defined here.
//!
//! GTSM on a shared listener: `IP_MINTTL` set on the listening socket is checked against the
//! incoming SYN, so the listener carries the GTSM floor of the strictest configuration that
//! all passive peers share; [`set_gtsm`] on an accepted socket then applies the peer's own
//! hop count to the rest of the session.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Longest TCP-MD5 key Linux accepts (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LENGTH: usize = 80;

/// The TTL (hop limit) GTSM sends with: the maximum, so a receiver can tell how far it came.
pub const GTSM_SEND_TTL: u8 = 255;

/// Listen backlog of BGP listeners.
pub const LISTEN_BACKLOG: i32 = 128;

/// The transport security of one BGP session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSecurity {
    /// TCP-MD5 key (RFC 2385), 1 to 80 bytes; `None` for no signature.
    pub md5_key: Option<Vec<u8>>,
    /// GTSM (RFC 5082): how many hops away the peer may be (1 for a directly connected peer);
    /// `None` disables GTSM.
    pub gtsm_hops: Option<u8>,
}

/// A socket option that could not be set, naming the address involved.
#[derive(Debug, thiserror::Error)]
pub enum SockoptError {
    /// A system call failed.
    #[error("socket for {address}: {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The local or peer address concerned.
        address: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The MD5 key is longer than the kernel accepts.
    #[error(
        "TCP-MD5 key for peer {peer} is {length} bytes; at most {MD5_MAX_KEY_LENGTH} are allowed"
    )]
    KeyTooLong {
        /// The peer.
        peer: IpAddr,
        /// The key's length.
        length: usize,
    },
    /// A GTSM hop count of 0.
    #[error("GTSM for {address}: the hop count must be between 1 and 255")]
    InvalidHops {
        /// The address concerned.
        address: String,
    },
}

fn io_error(what: &'static str, address: impl ToString) -> impl FnOnce(io::Error) -> SockoptError {
    let address = address.to_string();
    move |source| SockoptError::Io {
        what,
        address,
        source,
    }
}

/// `struct tcp_md5sig` from `<linux/tcp.h>`; libc does not define it. The address is a
/// `sockaddr_storage` laid out by hand (8-byte aligned, 128 bytes). No padding anywhere: every
/// byte the kernel reads is initialised.
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpMd5Sig {
    address: [u8; 128],
    _align: [u64; 0],
    flags: u8,
    prefix_length: u8,
    key_length: u16,
    interface_index: libc::c_int,
    key: [u8; MD5_MAX_KEY_LENGTH],
}

const _: () = assert!(size_of::<TcpMd5Sig>() == 216);

/// Values [`set_raw_option`] may pass to the kernel: plain-old-data without padding.
trait RawOptionValue: Copy {}
impl RawOptionValue for libc::c_int {}
impl RawOptionValue for TcpMd5Sig {}

/// `setsockopt(2)` for the options `socket2` lacks.
#[allow(unsafe_code)]
fn set_raw_option<T: RawOptionValue>(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let length = libc::socklen_t::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: the descriptor is borrowed from a live socket for the duration of the call; the
    // pointer and length describe exactly one fully initialised `T` (an `int`, or a
    // `TcpMd5Sig` with no padding) that outlives the call, and the kernel only reads from it.
    let result = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast::<libc::c_void>(),
            length,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Installs (or, with an empty key, removes) the TCP-MD5 key for `peer` on `socket`. On a
/// listener it applies to SYNs from that peer; on an active socket, to the connection.
/// An IPv4 peer on an IPv6 socket is keyed by its IPv4-mapped address.
pub fn set_md5_key(socket: &impl AsFd, peer: IpAddr, key: &[u8]) -> Result<(), SockoptError> {
    if key.len() > MD5_MAX_KEY_LENGTH {
        return Err(SockoptError::KeyTooLong {
            peer,
            length: key.len(),
        });
    }
    let socket_is_ipv6 = SockRef::from(socket)
        .local_addr()
        .map_err(io_error("reading the socket's family", peer))?
        .is_ipv6();
    let peer = match peer {
        IpAddr::V4(v4) if socket_is_ipv6 => IpAddr::V6(v4.to_ipv6_mapped()),
        other => other,
    };
    let mut address = [0u8; 128];
    match peer {
        IpAddr::V4(v4) => {
            address[0..2].copy_from_slice(&address_family(libc::AF_INET).to_ne_bytes());
            // sin_port (2..4) stays 0; sin_addr:
            address[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            address[0..2].copy_from_slice(&address_family(libc::AF_INET6).to_ne_bytes());
            // sin6_port (2..4) and sin6_flowinfo (4..8) stay 0; sin6_addr:
            address[8..24].copy_from_slice(&v6.octets());
        }
    }
    let mut signature = TcpMd5Sig {
        address,
        _align: [],
        flags: 0,
        prefix_length: 0,
        // At most 80: checked above.
        key_length: u16::try_from(key.len()).unwrap_or(0),
        interface_index: 0,
        key: [0; MD5_MAX_KEY_LENGTH],
    };
    signature.key[..key.len()].copy_from_slice(key);
    set_raw_option(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &signature)
        .map_err(io_error("setting TCP_MD5SIG", peer))
}

fn address_family(family: libc::c_int) -> u16 {
    u16::try_from(family).unwrap_or_default()
}

/// Sets the TTL / hop limit of outgoing packets (`IP_TTL` or `IPV6_UNICAST_HOPS`).
pub fn set_send_ttl(socket: &impl AsFd, ttl: u8) -> Result<(), SockoptError> {
    let reference = SockRef::from(socket);
    let local = reference
        .local_addr()
        .map_err(io_error("reading the socket's family", "socket"))?;
    let set = if local.is_ipv6() {
        reference.set_unicast_hops_v6(u32::from(ttl))
    } else {
        reference.set_ttl_v4(u32::from(ttl))
    };
    set.map_err(io_error("setting the outgoing TTL", format_local(&local)))
}

/// Sets the minimum TTL / hop limit accepted (`IP_MINTTL` or `IPV6_MINHOPCOUNT`); packets
/// arriving with less are dropped by the kernel.
pub fn set_min_ttl(socket: &impl AsFd, min_ttl: u8) -> Result<(), SockoptError> {
    let local = SockRef::from(socket)
        .local_addr()
        .map_err(io_error("reading the socket's family", "socket"))?;
    let (level, name) = if local.is_ipv6() {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    set_raw_option(socket, level, name, &libc::c_int::from(min_ttl))
        .map_err(io_error("setting the minimum TTL", format_local(&local)))
}

fn format_local(local: &socket2::SockAddr) -> String {
    local
        .as_socket()
        .map_or_else(|| "socket".to_owned(), |address| address.to_string())
}

/// GTSM (RFC 5082 §3): send with TTL 255 and accept only TTL ≥ 255 − hops + 1.
pub fn set_gtsm(socket: &impl AsFd, hops: u8) -> Result<(), SockoptError> {
    if hops == 0 {
        return Err(SockoptError::InvalidHops {
            address: "socket".to_owned(),
        });
    }
    set_send_ttl(socket, GTSM_SEND_TTL)?;
    set_min_ttl(socket, GTSM_SEND_TTL - hops + 1)
}

fn new_socket(address: &SocketAddr) -> Result<Socket, SockoptError> {
    let socket = Socket::new(
        Domain::for_address(*address),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(io_error("creating a TCP socket", address))?;
    if address.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(io_error("setting IPV6_V6ONLY", address))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(io_error("setting non-blocking mode", address))?;
    Ok(socket)
}

/// A BGP listener on `address` with every passive peer's MD5 key installed and, if given, the
/// GTSM floor for SYNs, all before `listen()`. Needs a tokio runtime.
pub fn bind_listener(
    address: SocketAddr,
    md5_keys: &[(IpAddr, Vec<u8>)],
    gtsm_hops: Option<u8>,
) -> Result<TcpListener, SockoptError> {
    let socket = new_socket(&address)?;
    socket
        .set_reuse_address(true)
        .map_err(io_error("setting SO_REUSEADDR", address))?;
    for (peer, key) in md5_keys {
        set_md5_key(&socket, *peer, key)?;
    }
    if let Some(hops) = gtsm_hops {
        set_gtsm(&socket, hops)?;
    }
    socket
        .bind(&address.into())
        .map_err(io_error("binding", address))?;
    socket
        .listen(LISTEN_BACKLOG)
        .map_err(io_error("listening", address))?;
    TcpListener::from_std(socket.into()).map_err(io_error("registering with tokio", address))
}

/// Connects to a peer with MD5 and GTSM in place before the SYN, from `local` if given,
/// giving up after `timeout`. Needs a tokio runtime.
pub async fn connect(
    remote: SocketAddr,
    local: Option<SocketAddr>,
    security: &SessionSecurity,
    timeout: Duration,
) -> Result<TcpStream, SockoptError> {
    let socket = new_socket(&remote)?;
    if let Some(key) = &security.md5_key {
        set_md5_key(&socket, remote.ip(), key)?;
    }
    if let Some(hops) = security.gtsm_hops {
        set_gtsm(&socket, hops)?;
    }
    if let Some(local) = local {
        socket
            .bind(&local.into())
            .map_err(io_error("binding", local))?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    match tokio::time::timeout(timeout, socket.connect(remote)).await {
        Ok(connected) => connected.map_err(io_error("connecting", remote)),
        Err(_) => Err(SockoptError::Io {
            what: "connecting",
            address: remote.to_string(),
            source: io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {timeout:?}"),
            ),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    // Long enough for loopback, short enough that a dropped SYN shows as a timeout quickly.
    const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);

    fn listener(md5_key: Option<&[u8]>, gtsm_hops: Option<u8>) -> TcpListener {
        let keys: Vec<(IpAddr, Vec<u8>)> = md5_key
            .map(|key| vec![(LOOPBACK, key.to_vec())])
            .unwrap_or_default();
        bind_listener(SocketAddr::new(LOOPBACK, 0), &keys, gtsm_hops).unwrap()
    }

    async fn try_connect(
        listener: &TcpListener,
        security: &SessionSecurity,
    ) -> Result<(), SockoptError> {
        let stream = connect(
            listener.local_addr().unwrap(),
            None,
            security,
            CONNECT_TIMEOUT,
        )
        .await?;
        let (accepted, _) = tokio::time::timeout(CONNECT_TIMEOUT, listener.accept())
            .await
            .unwrap()
            .unwrap();
        drop((stream, accepted));
        Ok(())
    }

    fn timed_out(result: Result<(), SockoptError>) -> bool {
        matches!(result, Err(SockoptError::Io { ref source, .. }) if source.kind() == io::ErrorKind::TimedOut)
    }

    #[tokio::test]
    async fn rfc2385_same_md5_key_connects() {
        let listener = listener(Some(b"s3cret"), None);
        let security = SessionSecurity {
            md5_key: Some(b"s3cret".to_vec()),
            gtsm_hops: None,
        };
        try_connect(&listener, &security).await.unwrap();
    }

    #[tokio::test]
    async fn rfc2385_different_md5_keys_never_connect() {
        let listener = listener(Some(b"s3cret"), None);
        let wrong = SessionSecurity {
            md5_key: Some(b"guess".to_vec()),
            gtsm_hops: None,
        };
        assert!(timed_out(try_connect(&listener, &wrong).await));
        let unsigned = SessionSecurity::default();
        assert!(timed_out(try_connect(&listener, &unsigned).await));
    }

    #[tokio::test]
    async fn rfc5082_min_ttl_255_refuses_ttl_254_and_accepts_255() {
        let listener = listener(None, Some(1));
        let remote = listener.local_addr().unwrap();
        let socket = new_socket(&remote).unwrap();
        set_send_ttl(&socket, 254).unwrap();
        let socket = TcpSocket::from_std_stream(socket.into());
        let result = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(remote)).await;
        assert!(result.is_err(), "a SYN with TTL 254 was accepted");

        let gtsm = SessionSecurity {
            md5_key: None,
            gtsm_hops: Some(1),
        };
        try_connect(&listener, &gtsm).await.unwrap();
    }

    #[test]
    fn md5_key_longer_than_80_bytes_is_refused() {
        let socket = new_socket(&SocketAddr::new(LOOPBACK, 0)).unwrap();
        let error = set_md5_key(&socket, LOOPBACK, &[7; 81]).unwrap_err();
        assert!(
            matches!(error, SockoptError::KeyTooLong { length: 81, .. }),
            "{error}"
        );
        set_md5_key(&socket, LOOPBACK, &[7; 80]).unwrap();
    }

    #[test]
    fn ipv6_sockets_take_md5_keys_and_hop_limits() {
        let socket = new_socket(&"[::1]:0".parse().unwrap()).unwrap();
        set_md5_key(&socket, "::1".parse().unwrap(), b"key").unwrap();
        set_gtsm(&socket, 2).unwrap();
        assert!(matches!(
            set_gtsm(&socket, 0),
            Err(SockoptError::InvalidHops { .. })
        ));
    }
}
