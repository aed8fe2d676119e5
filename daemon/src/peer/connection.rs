//! One TCP connection of a peer task and its session: the input and output buffers, the
//! session's timers, the send ledger; and the socket futures the task's `select!` waits on.
//!
//! Must not touch: the Adj-RIB-Out and the routes (the peer task's), the engine.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use topologyd_bgp::{Output, RibCounters, Session, Timer};

use crate::send_ledger::SendLedger;
use crate::sockopt::{self};

use super::{ConnectFuture, READ_CHUNK};

/// One TCP connection and its session.
pub(super) struct Connection {
    pub(super) session: Session,
    pub(super) reader: OwnedReadHalf,
    pub(super) writer: OwnedWriteHalf,
    pub(super) input: BytesMut,
    pub(super) output: BytesMut,
    pub(super) timers: BTreeMap<Timer, Instant>,
    /// Where `output`'s messages end and what they count, against what was written.
    pub(super) ledger: SendLedger,
    /// Close once `output` is written.
    pub(super) closing: bool,
    /// Set by [`Connection::abort`]: the connection ends with a reset, not a graceful close.
    pub(super) reset: bool,
    /// The peer's OPEN, once seen: (BGP Identifier, ASN).
    pub(super) remote_identity: Option<(Ipv4Addr, u32)>,
}

impl Connection {
    pub(super) fn new(session: Session, stream: TcpStream) -> Connection {
        let (reader, writer) = stream.into_split();
        Connection {
            session,
            reader,
            writer,
            input: BytesMut::with_capacity(READ_CHUNK),
            output: BytesMut::with_capacity(READ_CHUNK),
            timers: BTreeMap::new(),
            ledger: SendLedger::default(),
            closing: false,
            reset: false,
            remote_identity: None,
        }
    }

    /// Queues whole messages for writing; `counters` are the UPDATE counts they carry, credited
    /// when their last octet is written.
    pub(super) fn queue(&mut self, messages: &[u8], counters: RibCounters) {
        self.output.extend_from_slice(messages);
        self.ledger.queued(messages, counters);
    }

    /// `count` octets of `output` were written: whether that completed at least one message,
    /// and the UPDATE counters now fully written.
    pub(super) fn written(&mut self, count: usize) -> (bool, RibCounters) {
        self.output.advance(count);
        self.ledger.written(count)
    }

    /// Drops everything queued and not yet written (never counted as sent).
    pub(super) fn discard_queue(&mut self) -> usize {
        let discarded = self.output.len();
        self.output.clear();
        self.ledger.discard();
        discarded
    }

    /// RFC 9687 §4: drop the queue, attempt `notification` once without waiting (only at a
    /// message boundary: behind a partly written message it would not parse), then close with
    /// a reset (SO_LINGER 0), so that the kernel's send queue goes too and the connection is
    /// gone at once, not left in FIN-WAIT behind a window the peer never opens. Returns the
    /// octets discarded.
    pub(super) fn abort(&mut self, notification: Option<Bytes>) -> usize {
        let at_boundary = self.ledger.at_message_boundary();
        let discarded = self.discard_queue();
        if at_boundary && let Some(notification) = notification {
            let _ = self.writer.try_write(&notification);
        }
        let _ = socket2::SockRef::from(self.writer.as_ref()).set_linger(Some(Duration::ZERO));
        self.closing = true;
        self.reset = true;
        discarded
    }

    /// The socket's halves, for [`close_gracefully`]; `None` for a connection that was reset
    /// (dropping it is the reset).
    pub(super) fn into_halves(self) -> Option<(OwnedReadHalf, OwnedWriteHalf)> {
        if self.reset {
            // Dropping the write half shuts it down before the socket closes: a FIN queued
            // behind the unsent octets puts the socket in FIN-WAIT-1 for a moment, which a
            // loaded machine stretches. The reset must be the only thing the connection's end
            // does, so the write half goes without a shutdown and the read half's drop (the
            // socket's close, with SO_LINGER 0) is the reset.
            self.writer.forget();
            return None;
        }
        Some((self.reader, self.writer))
    }

    /// Applies the outputs of a session that is not yet the driver's (a parked connection
    /// before it is stored): buffers messages and timers.
    pub(super) fn apply_outputs_detached(&mut self, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send(bytes) => self.queue(&bytes, RibCounters::default()),
                Output::SetTimer(timer, deadline) => {
                    self.timers.insert(timer, deadline);
                }
                Output::CancelTimer(timer) => {
                    self.timers.remove(&timer);
                }
                Output::CloseConnection => self.closing = true,
                Output::AbortConnection { notification } => {
                    self.abort(notification);
                }
                _ => {}
            }
        }
    }
}

/// Closes a connection whose output is written: a FIN behind everything the kernel still
/// holds, then reads and discards until the peer closes too (or `limit` passes). Dropping the
/// socket at once would turn the close into a reset whenever input is unread (a KEEPALIVE
/// will do), and a reset discards what the kernel has not sent yet: a stop's last withdrawals
/// and its Cease would be lost, and the peer would flush the session's routes itself, which
/// BIRD does several times slower than it applies the withdrawals.
pub(super) async fn close_gracefully(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    limit: Duration,
) {
    let _ = tokio::time::timeout(limit, async {
        let _ = writer.shutdown().await;
        let mut discard = vec![0u8; READ_CHUNK];
        while let Ok(read) = reader.read(&mut discard).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

pub(super) type ReadHalf<'a> = Option<(&'a mut OwnedReadHalf, &'a mut BytesMut)>;
pub(super) type WriteHalf<'a> = Option<(&'a mut OwnedWriteHalf, &'a BytesMut)>;

/// Borrows a connection's read side and write side separately, so that one `select!` can wait
/// on both.
pub(super) fn split_halves(connection: Option<&mut Connection>) -> (ReadHalf<'_>, WriteHalf<'_>) {
    match connection {
        Some(connection) => (
            Some((&mut connection.reader, &mut connection.input)),
            Some((&mut connection.writer, &connection.output)),
        ),
        None => (None, None),
    }
}

pub(super) async fn read_some(half: ReadHalf<'_>) -> std::io::Result<usize> {
    match half {
        Some((reader, input)) => {
            if input.capacity() - input.len() < READ_CHUNK / 4 {
                input.reserve(READ_CHUNK);
            }
            reader.read_buf(input).await
        }
        None => std::future::pending().await,
    }
}

pub(super) async fn write_some(half: WriteHalf<'_>) -> std::io::Result<usize> {
    match half {
        Some((writer, output)) if !output.is_empty() => writer.write(output).await,
        _ => std::future::pending().await,
    }
}

pub(super) async fn poll_connect(
    future: &mut Option<ConnectFuture>,
) -> Result<TcpStream, sockopt::SockoptError> {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}
