//! BGP speaker core, pure and synchronous: codec wrapper, session state machine, Adj-RIB-Out.
//! No tokio, no sockets, no clock, no files: time is an argument and every effect is returned
//! as a value, so everything here tests in milliseconds and in virtual time.
//!
//! Modules and the RFCs they implement:
//! - [`codec`]: messages, framing, RFC 7606 error actions; the only user of `rustbgpd-wire`
//!   (RFC 4271 §4/§6, RFC 4760, RFC 5492, RFC 6793, RFC 2918, RFC 7313, RFC 4724 §3,
//!   RFC 8654, RFC 7606, RFC 1997, RFC 4360, RFC 8092).
//! - [`session`]: the RFC 4271 §8 state machine, timers (§4.4, §10), collision resolution
//!   (§6.8), capability negotiation with fallbacks, send hold timer (RFC 9687), max-prefix
//!   Cease (RFC 4486), graceful restart as the restarting speaker (RFC 4724).
//! - [`adj_rib_out`]: per-peer coalesced outbound state and the UPDATE packer, End-of-RIB
//!   (RFC 4724 §2), route refresh re-send with BoRR/EoRR (RFC 2918, RFC 7313).
//! - [`inbound`]: per-family counting of what the peer sends; nothing is imported.
//! - [`fuzz_entry`]: the never-panic and round-trip properties, shared by the cargo-fuzz
//!   targets in `fuzz/` and the stable corpus replay in `tests/fuzz_corpus_replay.rs`.
//!
//! Must not touch: topology, config, sockets (the driver in `daemon/` owns them).
//!
//! # How a driver uses it (one task per peer)
//!
//! ```text
//!  config ──► Session::new(SessionConfig, jitter_seed)      AdjRibOut::new()
//!                   │  handle(Input, now) -> Vec<Output>         ▲ announce / withdraw
//!                   ▼                                            │ (from the daemon engine)
//!  ┌──────────── driver loop (tokio) ─────────────────────────────────────────────────────┐
//!  │ ManualStart ─► handle ─► Output::Connect        → TcpStream::connect, then           │
//!  │                                                   handle(TcpConnected(Outbound))     │
//!  │ listener accept ───────► handle(TcpConnected(Inbound))  (second Session on collision)│
//!  │ socket readable: buf += bytes; loop { match next_frame(&buf, s.max_message_len()) {  │
//!  │     Complete{length} => handle(Message(buf.split_to(length).freeze())),             │
//!  │     NeedMore{..} => break, Err(e) => handle(ReceiveError(e)) } }                     │
//!  │ Output::Send(bytes)           → write it (a whole message written: SendProgress)     │
//!  │ Output::SetTimer(t, deadline) → (re)arm sleep_until(deadline); on fire:              │
//!  │                                 handle(TimerExpired(t)) ; CancelTimer(t) → disarm    │
//!  │ Output::Established(neg)      → rib.session_established(&neg)                        │
//!  │ Output::RouteRefreshRequested(f) → rib.route_refresh(f)                              │
//!  │ Output::SessionDown(_)        → rib.session_down()                                   │
//!  │ Output::CloseConnection       → shut the socket down once the queue is written       │
//!  │ Output::AbortConnection{..}   → drop the queue, try the NOTIFICATION, reset socket   │
//!  │ Output::OpenReceived{..}      → with two connections: resolve_collision(..) and      │
//!  │                                 handle(CollisionLost) on the loser                   │
//!  │ socket writable && Established: while let Some(bytes) = rib.next_update(budget) {    │
//!  │     write bytes; handle(SendProgress) }     (pull: a slow peer never grows a queue)  │
//!  └──────────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Each `Output::Send` is one message, written in order. Timer deadlines are `Instant`s
//! computed from the `now` passed in; the driver never needs to compute durations itself.

pub mod adj_rib_out;
pub mod codec;
pub mod fuzz_entry;
pub mod inbound;
pub mod notification_text;
pub mod session;

pub use adj_rib_out::{AdjRibOut, RibCounters, RibError, check_encodable};
pub use codec::{
    DecodeContext, EncodeContext, Family, Frame, Message, MessageError, Notification,
    PathAttributes, decode_message, encode_message, next_frame,
};
pub use inbound::{FamilyCounters, MaxPrefixes, UpdateSummary};
pub use session::{
    ConfigError, Direction, DownReason, GracefulRestartConfig, Input, Negotiated, Output, Session,
    SessionConfig, State, Timer, resolve_collision,
};
