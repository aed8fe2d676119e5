//! Connection caps shared by the control API and the admin listener: a cap per source address
//! and a cap in total, where a newcomer displaces the oldest *idle* connection (one that is not
//! in the middle of a request: a half-open socket, a TLS handshake that has not finished, a
//! keep-alive connection between requests) rather than being turned away.
//!
//! When the listener is full, the idle connection displaced is the oldest of the source that
//! holds the most idle connections, so a flood from a few addresses displaces itself.
//!
//! Owns: the table of open connections per listener and the eviction rule. With it, idle
//! connections — however many a client opens — can never keep a scrape or an operator out;
//! only connections busy with a request hold their slot, and those are bounded by the
//! listeners' header and body deadlines.
//!
//! Also owns the accept loop both listeners run ([`accept_loop`]): admission, the reset of a
//! refused connection, one task per admitted connection, and closing it when displaced.
//!
//! Must not touch: HTTP and TLS (the listeners' per-connection `serve` functions do those).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// The listen backlog of the control and admin listeners: under a connection flood a new
/// client's SYN must still find room while the accept loop displaces idle connections.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener with [`LISTEN_BACKLOG`]. An IPv6 listener is IPv6-only (as the BGP
/// listeners are), so `[::]:P` beside `0.0.0.0:P` is two listeners, as `--check` judges them.
pub fn bind_listener(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let socket = TcpSocket::new_v6()?;
        socket2::SockRef::from(&socket).set_only_v6(true)?;
        socket
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Closes a connection refused at accept with a reset: nothing was sent on it, and no
/// TIME_WAIT state is left behind by a flood.
pub fn refuse(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(std::time::Duration::ZERO));
    drop(stream);
}

/// Accept errors that concern one connection (or a momentary resource shortage), not the
/// listener: log and keep accepting.
pub fn is_transient_accept_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
    ) || matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts connections on `listener` until `shutdown` completes. Each connection the
/// `limiter` admits is served by `serve` on its own task (which marks it busy per request
/// through the [`BusyMarker`]) and closed when a newcomer displaces it while idle; a refused
/// one is reset at once. Transient accept errors are logged and retried; any other ends the
/// loop with that error. Connections in flight finish on their own tasks.
pub async fn accept_loop<Serve, Served>(
    listener: &TcpListener,
    limiter: &Arc<ConnectionLimiter>,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
    mut serve: Serve,
) -> std::io::Result<()>
where
    Serve: FnMut(TcpStream, SocketAddr, BusyMarker) -> Served,
    Served: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_transient_accept_error(&error) => {
                    tracing::warn!(%error, "{name}: accept failed, retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(error) => return Err(error),
            },
        };
        let mut admission = match limiter.admit(remote.ip()) {
            Ok(admission) => admission,
            Err(refused) => {
                tracing::warn!(%remote, %refused, "{name}: closing a new connection");
                refuse(stream);
                continue;
            }
        };
        let served = serve(stream, remote, admission.marker());
        tokio::spawn(async move {
            tokio::select! {
                () = served => {}
                _ = &mut admission.evicted => {
                    tracing::debug!(%remote, "{name}: closed an idle connection to make room");
                }
            }
        });
    }
}

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Connections open at once in total.
    pub total: usize,
    /// Connections open at once from one source address.
    pub per_source: usize,
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every connection from this source is busy with a request.
    #[error("{per_source} connections from this source are busy with requests")]
    PerSource {
        /// The cap.
        per_source: usize,
    },
    /// Every connection is busy with a request.
    #[error("{total} connections are busy with requests")]
    Full {
        /// The cap.
        total: usize,
    },
}

#[derive(Debug)]
struct Entry {
    source: IpAddr,
    busy: bool,
    evict: Option<oneshot::Sender<()>>,
}

/// The open connections of one listener.
#[derive(Debug)]
pub struct ConnectionLimiter {
    caps: ConnectionCaps,
    /// By admission order (oldest first).
    connections: Mutex<(u64, BTreeMap<u64, Entry>)>,
}

/// One admitted connection's slot; released when dropped. `evicted` fires when a newcomer
/// displaced this connection (it was idle): close it.
#[derive(Debug)]
pub struct Admission {
    limiter: Arc<ConnectionLimiter>,
    id: u64,
    /// Fires when the connection must close.
    pub evicted: oneshot::Receiver<()>,
}

/// Marks an admitted connection busy (not evictable) while it is alive.
#[derive(Debug)]
pub struct Busy {
    limiter: Arc<ConnectionLimiter>,
    id: u64,
}

impl ConnectionLimiter {
    /// A limiter with `caps`.
    pub fn new(caps: ConnectionCaps) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            caps,
            connections: Mutex::new((0, BTreeMap::new())),
        })
    }

    /// The caps.
    pub fn caps(&self) -> ConnectionCaps {
        self.caps
    }

    /// Connections open now (in total).
    pub fn open(&self) -> usize {
        self.lock().1.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, BTreeMap<u64, Entry>)> {
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a connection from `source`, displacing the oldest idle connection from the same
    /// source (or, with the listener full, the oldest idle one of all) when a cap is reached.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admission, Refused> {
        let mut guard = self.lock();
        let (next_id, connections) = &mut *guard;
        let from_source = connections
            .values()
            .filter(|entry| entry.source == source)
            .count();
        if from_source >= self.caps.per_source {
            let oldest_idle = connections
                .iter()
                .find(|(_, entry)| entry.source == source && !entry.busy)
                .map(|(id, _)| *id);
            match oldest_idle {
                Some(id) => evict(connections, id),
                None => {
                    return Err(Refused::PerSource {
                        per_source: self.caps.per_source,
                    });
                }
            }
        }
        if connections.len() >= self.caps.total {
            // Fair share: the oldest idle connection of the source holding the most idle ones,
            // so a flood from a few addresses displaces itself, never a lone client.
            // The newcomer counts for its own source.
            let mut idle_by_source: BTreeMap<IpAddr, usize> = BTreeMap::new();
            for entry in connections.values().filter(|entry| !entry.busy) {
                *idle_by_source.entry(entry.source).or_default() += 1;
            }
            if let Some(own) = idle_by_source.get_mut(&source) {
                *own += 1;
            }
            let heaviest = idle_by_source
                .iter()
                .max_by_key(|(candidate, idle)| (**idle, **candidate == source))
                .map(|(source, _)| *source);
            let oldest_idle = heaviest.and_then(|heaviest| {
                connections
                    .iter()
                    .find(|(_, entry)| entry.source == heaviest && !entry.busy)
                    .map(|(id, _)| *id)
            });
            match oldest_idle {
                Some(id) => evict(connections, id),
                None => {
                    return Err(Refused::Full {
                        total: self.caps.total,
                    });
                }
            }
        }
        let id = *next_id;
        *next_id += 1;
        let (evict_sender, evicted) = oneshot::channel();
        connections.insert(
            id,
            Entry {
                source,
                busy: false,
                evict: Some(evict_sender),
            },
        );
        Ok(Admission {
            limiter: Arc::clone(self),
            id,
            evicted,
        })
    }

    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(entry) = self.lock().1.get_mut(&id) {
            entry.busy = busy;
        }
    }
}

/// Takes `id` out of the table (its slot is free at once) and tells its task to close.
fn evict(connections: &mut BTreeMap<u64, Entry>, id: u64) {
    if let Some(mut entry) = connections.remove(&id)
        && let Some(evict) = entry.evict.take()
    {
        let _ = evict.send(());
    }
}

impl Admission {
    /// Marks the connection busy with a request until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.marker().busy()
    }

    /// A handle that marks this connection busy from another task (the request handler).
    pub fn marker(&self) -> BusyMarker {
        BusyMarker {
            limiter: Arc::clone(&self.limiter),
            id: self.id,
        }
    }
}

/// Marks one admitted connection busy per request; cloneable into a service closure.
#[derive(Debug, Clone)]
pub struct BusyMarker {
    limiter: Arc<ConnectionLimiter>,
    id: u64,
}

impl BusyMarker {
    /// Busy until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.limiter.set_busy(self.id, true);
        Busy {
            limiter: Arc::clone(&self.limiter),
            id: self.id,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.limiter.set_busy(self.id, false);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.limiter.lock().1.remove(&self.id);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn idle_connections_make_room_for_newcomers_busy_ones_do_not() {
        let limiter = ConnectionLimiter::new(ConnectionCaps {
            total: 4,
            per_source: 2,
        });
        let mut first = limiter.admit(source(1)).unwrap();
        let second = limiter.admit(source(1)).unwrap();
        let _busy = second.busy();
        // Third from the same source: the oldest idle one (first) is displaced.
        let third = limiter.admit(source(1)).unwrap();
        assert!(
            first.evicted.try_recv().is_ok(),
            "the idle one was not evicted"
        );
        let _third_busy = third.busy();
        // Now both from source 1 are busy: a fourth from it is refused.
        assert_eq!(
            limiter.admit(source(1)).unwrap_err(),
            Refused::PerSource { per_source: 2 }
        );
        // Other sources fill the listener; then the source with the most idle connections
        // (source 2, two of them) gives up its oldest, not the lone client of source 3.
        let mut other = limiter.admit(source(2)).unwrap();
        let mut lone = limiter.admit(source(3)).unwrap();
        let _newest = limiter.admit(source(2)).unwrap();
        assert!(other.evicted.try_recv().is_ok());
        assert!(
            lone.evicted.try_recv().is_err(),
            "a lone client was displaced"
        );
        assert_eq!(limiter.open(), 4);
        drop(first);
        assert_eq!(limiter.open(), 4, "an evicted slot is not freed twice");
    }

    proptest! {
        /// Whatever arrives, is marked busy or leaves, the caps hold, and a newcomer is only
        /// refused when the connections in its way are all busy.
        #[test]
        fn caps_hold_and_only_busy_connections_refuse(
            steps in proptest::collection::vec((0_u8..4, 0_u8..3), 1..200),
        ) {
            let caps = ConnectionCaps { total: 6, per_source: 3 };
            let limiter = ConnectionLimiter::new(caps);
            let mut held: Vec<(Admission, Option<Busy>, IpAddr)> = Vec::new();
            for (last, action) in steps {
                let address = source(last);
                match action {
                    0 => {
                        let before_busy_from_source = held
                            .iter()
                            .filter(|(admission, busy, from)| {
                                *from == address && busy.is_some() && admission.evicted.is_empty()
                            })
                            .count();
                        match limiter.admit(address) {
                            Ok(admission) => held.push((admission, None, address)),
                            Err(Refused::PerSource { .. }) => {
                                prop_assert_eq!(before_busy_from_source, caps.per_source);
                            }
                            Err(Refused::Full { .. }) => {
                                let busy = held.iter().filter(|(_, busy, _)| busy.is_some()).count();
                                prop_assert!(busy >= caps.total);
                            }
                        }
                    }
                    1 => {
                        if let Some(entry) = held.iter_mut().find(|(_, busy, _)| busy.is_none()) {
                            entry.1 = Some(entry.0.busy());
                        }
                    }
                    _ => {
                        if !held.is_empty() {
                            held.remove(0);
                        }
                    }
                }
                // Evicted connections close (their tasks drop them).
                held.retain_mut(|(admission, _, _)| admission.evicted.try_recv().is_err());
                prop_assert!(limiter.open() <= caps.total);
                for last in 0..4 {
                    let from = held.iter().filter(|(_, _, from)| *from == source(last)).count();
                    prop_assert!(from <= caps.per_source);
                }
            }
        }
    }
}
