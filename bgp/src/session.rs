//! The BGP finite state machine of RFC 4271 §8, sans-IO: the driver passes an [`Input`] and the
//! current time; the session answers with [`Output`]s (connect, send these bytes, arm this timer,
//! close, session established...). No sockets, no clock, no randomness except a seeded
//! generator for the connect-retry jitter (RFC 4271 §10).
//!
//! Owns: states and transitions (§8.2.2), the ConnectRetry / Hold / Keepalive timers (§4.4,
//! §10), the send hold timer (RFC 9687), NOTIFICATIONs for OPEN, FSM (RFC 6608), hold timer,
//! Cease (RFC 4486) errors, route refresh requests (RFC 2918, RFC 7313) and inbound UPDATE
//! accounting with max-prefix. Must not touch: the Adj-RIB-Out (the driver owns it and is told
//! through [`Output::Established`] / [`Output::RouteRefreshRequested`] / [`Output::SessionDown`]),
//! sockets, or the wall clock.
//!
//! One `Session` drives one transport connection at a time. Collision detection (§6.8) needs
//! two: the driver creates a second `Session` for an inbound connection that arrives while the
//! first is in OpenSent/OpenConfirm, and when both have seen the peer's OPEN it calls
//! [`resolve_collision`] and feeds [`Input::CollisionLost`] to the loser.

mod negotiation;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use negotiation::{
    Backoff, ConfigError, GracefulRestartConfig, Negotiated, SessionConfig, negotiate,
    resolve_collision,
};

use crate::codec::{
    DecodeContext, EncodeContext, Family, MAX_MESSAGE_LEN, Message, MessageError, Notification,
    RouteRefresh, RouteRefreshSubtype, decode_message, encode_message, error_code,
};
use crate::inbound::{FamilyCounters, InboundRoutes, UpdateSummary};

/// RFC 4271 §8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refuses connections.
    Idle,
    /// Waiting for an outbound connection to complete.
    Connect,
    /// Waiting for the peer to connect (or for the next retry).
    Active,
    /// Our OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the first KEEPALIVE.
    OpenConfirm,
    /// Up: UPDATEs flow.
    Established,
}

/// Which side opened the transport connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// We connected to the peer.
    Outbound,
    /// The peer connected to us.
    Inbound,
}

/// Timers the driver runs for the session (one deadline each; re-arming replaces it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// ConnectRetryTimer (RFC 4271 §8.1.3), also used as the idle-hold before an automatic
    /// restart after an error.
    ConnectRetry,
    /// HoldTimer (RFC 4271 §4.4).
    Hold,
    /// KeepaliveTimer (RFC 4271 §4.4).
    Keepalive,
    /// SendHoldTimer (RFC 9687 §3).
    SendHold,
}

/// Events the driver feeds in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// RFC 4271 Event 1 (ManualStart; passive when the configuration says so).
    ManualStart,
    /// RFC 4271 Event 2 (ManualStop): Cease / Administrative Shutdown; no automatic restart.
    ManualStop,
    /// The transport connection is up (Events 16/17).
    TcpConnected(Direction),
    /// The outbound connection attempt failed (Event 18).
    TcpFailed,
    /// The connection was closed or broke (Event 18 once connected).
    TcpClosed,
    /// One complete message, as delimited by [`crate::codec::next_frame`].
    Message(Bytes),
    /// The receive stream is unusable (framing error from [`crate::codec::next_frame`]).
    ReceiveError(MessageError),
    /// A timer the session armed has expired.
    TimerExpired(Timer),
    /// The driver finished writing at least one whole message to the socket (RFC 9687 §3:
    /// "each time the local system sends a KEEPALIVE, UPDATE, and/or NOTIFICATION message" the
    /// send hold timer restarts). A partly written message is not progress.
    SendProgress,
    /// The driver resolved a collision (§6.8) against this connection.
    CollisionLost,
    /// Ask the peer to re-send a family (RFC 2918 §3), when negotiated.
    RequestRouteRefresh(Family),
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// Manual stop.
    ManualStop,
    /// The peer sent a NOTIFICATION.
    NotificationReceived(Notification),
    /// We sent a NOTIFICATION (protocol error, limit, ...).
    NotificationSent(Notification),
    /// Hold timer expired (RFC 4271 §6.5).
    HoldTimerExpired,
    /// Send hold timer expired (RFC 9687).
    SendHoldTimerExpired,
    /// The transport closed.
    TransportClosed,
    /// Lost connection collision resolution (RFC 4271 §6.8).
    CollisionLost,
}

/// Actions for the driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open an outbound transport connection to the peer.
    Connect,
    /// Close the transport connection (after writing anything queued before this output).
    CloseConnection,
    /// Close the transport connection now, discarding whatever is queued and not yet written
    /// (RFC 9687 §4: the peer is not reading, so waiting for the queue to drain would keep the
    /// connection, and its buffers, forever). `notification` is attempted first without
    /// waiting, only where the stream is at a message boundary; the connection closes whether
    /// or not it could be written.
    AbortConnection {
        /// The encoded NOTIFICATION to attempt.
        notification: Option<Bytes>,
    },
    /// Write one encoded message.
    Send(Bytes),
    /// Arm (or re-arm) a timer.
    SetTimer(Timer, Instant),
    /// Disarm a timer.
    CancelTimer(Timer),
    /// The state changed.
    StateChanged {
        /// Old state.
        from: State,
        /// New state.
        to: State,
    },
    /// The peer's OPEN was accepted (the driver's hook for collision detection, §6.8).
    OpenReceived {
        /// The peer's BGP Identifier.
        router_id: Ipv4Addr,
        /// The peer's AS number.
        asn: u32,
    },
    /// The session is Established: start the Adj-RIB-Out initial sync with these parameters.
    Established(Box<Negotiated>),
    /// The session left Established (or failed before it): stop sending UPDATEs.
    SessionDown(DownReason),
    /// A NOTIFICATION was queued for sending.
    NotificationSent(Notification),
    /// The peer sent a NOTIFICATION.
    NotificationReceived(Notification),
    /// The peer asked for a full re-send of a family (RFC 2918; with RFC 7313 the Adj-RIB-Out
    /// wraps it in BoRR/EoRR).
    RouteRefreshRequested(Family),
    /// The peer sent a BoRR/EoRR demarcation (RFC 7313 §4), for the logs.
    RouteRefreshDemarcation {
        /// The family.
        family: Family,
        /// BoRR (true) or EoRR (false).
        begin: bool,
    },
    /// An UPDATE was received and counted.
    RoutesReceived(UpdateSummary),
}

/// The state machine of one peer connection.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// Set by ManualStop; cleared by ManualStart. No automatic restart while set.
    stopped: bool,
    /// Consecutive failures, for the connect-retry backoff.
    failures: u32,
    /// xorshift64* state for the RFC 4271 §10 jitter.
    jitter_state: u64,
    inbound: InboundRoutes,
    direction: Option<Direction>,
    /// The AS number of the peer's last OPEN, accepted or not (for the words of Bad Peer AS).
    peer_open_asn: Option<u32>,
}

impl Session {
    /// A new session in Idle. `jitter_seed` seeds the connect-retry jitter (any value; 0 is
    /// replaced by a constant).
    #[must_use]
    pub fn new(config: SessionConfig, jitter_seed: u64) -> Self {
        Self {
            config,
            state: State::Idle,
            negotiated: None,
            stopped: true,
            failures: 0,
            jitter_state: if jitter_seed == 0 {
                0x9e37_79b9_7f4a_7c15
            } else {
                jitter_seed
            },
            inbound: InboundRoutes::default(),
            peer_open_asn: None,
            direction: None,
        }
    }

    /// Current state.
    #[must_use]
    pub fn state(&self) -> State {
        self.state
    }

    /// The AS number of the peer's last OPEN (its 4-octet capability's, if any), accepted or
    /// not; `None` before one arrived.
    #[must_use]
    pub fn peer_open_asn(&self) -> Option<u32> {
        self.peer_open_asn
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Negotiated parameters while OpenConfirm or Established.
    #[must_use]
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Direction of the current connection.
    #[must_use]
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// Maximum message length for framing received bytes (RFC 8654 once negotiated).
    #[must_use]
    pub fn max_message_len(&self) -> u16 {
        match (&self.negotiated, self.state) {
            (Some(negotiated), State::Established) => negotiated.max_message_len(),
            _ => MAX_MESSAGE_LEN,
        }
    }

    /// Inbound counters for `family`.
    #[must_use]
    pub fn inbound(&self, family: Family) -> FamilyCounters {
        self.inbound.counters(family)
    }

    /// Handles one input at time `now`; returns the actions to perform, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        self.step(input, now, &mut out);
        out
    }

    fn step(&mut self, input: Input, now: Instant, out: &mut Vec<Output>) {
        match input {
            Input::ManualStart => {
                self.stopped = false;
                if self.state == State::Idle {
                    self.failures = 0;
                    self.start(now, out);
                }
            }
            Input::ManualStop => {
                self.stopped = true;
                let connected = matches!(
                    self.state,
                    State::OpenSent | State::OpenConfirm | State::Established
                );
                let notification = connected.then(|| {
                    Notification::new(
                        error_code::CEASE,
                        error_code::CEASE_ADMINISTRATIVE_SHUTDOWN,
                        Bytes::new(),
                    )
                });
                self.down(now, notification, DownReason::ManualStop, out);
            }
            Input::TcpConnected(direction) => self.connected(direction, now, out),
            Input::TcpFailed => {
                if self.state == State::Connect {
                    self.failures = self.failures.saturating_add(1);
                    out.push(Output::CloseConnection);
                    self.transition(State::Active, out);
                    self.arm_connect_retry(now, out);
                }
            }
            Input::TcpClosed => match self.state {
                State::Idle => {}
                State::Connect | State::Active => {
                    self.failures = self.failures.saturating_add(1);
                    self.transition(State::Active, out);
                    self.arm_connect_retry(now, out);
                }
                State::OpenSent | State::OpenConfirm | State::Established => {
                    self.down(now, None, DownReason::TransportClosed, out);
                }
            },
            Input::Message(bytes) => self.message(&bytes, now, out),
            Input::ReceiveError(error) => {
                if self.connected_state() {
                    let notification = error.should_notify().then_some(error.notification.clone());
                    let reason = match &notification {
                        Some(notification) => DownReason::NotificationSent(notification.clone()),
                        None => DownReason::TransportClosed,
                    };
                    self.down(now, notification, reason, out);
                }
            }
            Input::TimerExpired(timer) => self.timer(timer, now, out),
            Input::SendProgress => {
                if self.state == State::Established {
                    self.arm_send_hold(now, out);
                }
            }
            Input::CollisionLost => {
                if self.connected_state() {
                    let notification = Notification::new(
                        error_code::CEASE,
                        error_code::CEASE_CONNECTION_COLLISION,
                        Bytes::new(),
                    );
                    // The surviving connection carries on; this one must not restart.
                    self.stopped = true;
                    self.down(now, Some(notification), DownReason::CollisionLost, out);
                }
            }
            Input::RequestRouteRefresh(family) => {
                let allowed = self.state == State::Established
                    && self.negotiated.as_ref().is_some_and(|negotiated| {
                        negotiated.route_refresh && negotiated.has_family(family)
                    });
                if allowed {
                    self.send(
                        &Message::RouteRefresh(RouteRefresh::new(
                            family,
                            RouteRefreshSubtype::Request,
                        )),
                        out,
                    );
                }
            }
        }
    }

    fn connected_state(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn transition(&mut self, to: State, out: &mut Vec<Output>) {
        if self.state != to {
            out.push(Output::StateChanged {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    /// ManualStart / automatic restart from Idle (RFC 4271 §8.2.2, Idle state, Events 1/4).
    fn start(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.config.passive {
            self.transition(State::Active, out);
        } else {
            self.transition(State::Connect, out);
            out.push(Output::Connect);
            self.arm_connect_retry(now, out);
        }
    }

    fn next_jitter(&mut self) -> u64 {
        let mut value = self.jitter_state;
        value ^= value >> 12;
        value ^= value << 25;
        value ^= value >> 27;
        self.jitter_state = value;
        value.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The connect-retry delay: exponential backoff over consecutive failures, capped, times a
    /// jitter factor in [0.75, 1.0] (RFC 4271 §10).
    #[must_use]
    pub fn retry_delay(&mut self) -> Duration {
        let backoff = self.config.backoff;
        let exponent = self.failures.min(16);
        let delay = backoff
            .initial
            .saturating_mul(1u32 << exponent)
            .min(backoff.maximum);
        let fraction = (self.next_jitter() >> 11) as f64 / (1u64 << 53) as f64;
        delay.mul_f64(0.75 + 0.25 * fraction)
    }

    fn arm_connect_retry(&mut self, now: Instant, out: &mut Vec<Output>) {
        let delay = self.retry_delay();
        out.push(Output::SetTimer(Timer::ConnectRetry, now + delay));
    }

    fn arm_hold(&self, now: Instant, out: &mut Vec<Output>) {
        match self
            .negotiated
            .as_ref()
            .map(|negotiated| negotiated.hold_time)
        {
            Some(0) => out.push(Output::CancelTimer(Timer::Hold)),
            Some(seconds) => out.push(Output::SetTimer(
                Timer::Hold,
                now + Duration::from_secs(u64::from(seconds)),
            )),
            None => out.push(Output::SetTimer(
                Timer::Hold,
                now + self.config.open_hold_time,
            )),
        }
    }

    fn arm_keepalive(&self, now: Instant, out: &mut Vec<Output>) {
        if let Some(interval) = self
            .negotiated
            .as_ref()
            .and_then(|negotiated| negotiated.keepalive_interval)
        {
            out.push(Output::SetTimer(Timer::Keepalive, now + interval));
        }
    }

    /// RFC 9687 §3: SendHoldTime defaults to max(8 minutes, 2 × HoldTime); with a hold time of
    /// zero there are no keepalives to make progress with, so the timer is not used.
    fn arm_send_hold(&self, now: Instant, out: &mut Vec<Output>) {
        let Some(negotiated) = &self.negotiated else {
            return;
        };
        if negotiated.hold_time == 0 {
            return;
        }
        let send_hold = self.config.send_hold_time.unwrap_or_else(|| {
            Duration::from_secs(480).max(Duration::from_secs(2 * u64::from(negotiated.hold_time)))
        });
        out.push(Output::SetTimer(Timer::SendHold, now + send_hold));
    }

    fn encode_context(&self) -> EncodeContext {
        match (&self.negotiated, self.state) {
            (Some(negotiated), State::Established) => negotiated.encode_context(),
            _ => EncodeContext::default(),
        }
    }

    fn decode_context(&self) -> DecodeContext {
        match (&self.negotiated, self.state) {
            (Some(negotiated), State::Established) => negotiated.decode_context(),
            _ => DecodeContext {
                internal_peer: self.config.internal(),
                ..DecodeContext::default()
            },
        }
    }

    fn send(&self, message: &Message, out: &mut Vec<Output>) {
        // Messages built by the session itself always encode; should one not (a NOTIFICATION
        // with oversized data), the connection is closed by the caller's path anyway.
        if let Ok(bytes) = encode_message(message, &self.encode_context()) {
            out.push(Output::Send(bytes));
        }
    }

    fn connected(&mut self, direction: Direction, now: Instant, out: &mut Vec<Output>) {
        match self.state {
            State::Connect | State::Active => {
                self.direction = Some(direction);
                out.push(Output::CancelTimer(Timer::ConnectRetry));
                let open = self.config.open_message();
                self.send(&Message::Open(open), out);
                self.negotiated = None;
                self.arm_hold(now, out);
                self.transition(State::OpenSent, out);
            }
            // Idle refuses connections; in the other states this session already has one (the
            // driver runs a second Session for a colliding connection, §6.8).
            _ => out.push(Output::CloseConnection),
        }
    }

    /// Leaves the connected states: optional NOTIFICATION, close, Idle, automatic restart
    /// with backoff unless manually stopped (RFC 4271 §8.2.2 "the local system ... drops the
    /// TCP connection, ... changes its state to Idle").
    fn down(
        &mut self,
        now: Instant,
        notification: Option<Notification>,
        reason: DownReason,
        out: &mut Vec<Output>,
    ) {
        let was = self.state;
        if let Some(notification) = notification {
            self.send(&Message::Notification(notification.clone()), out);
            out.push(Output::NotificationSent(notification));
        }
        if was != State::Idle {
            out.push(Output::CloseConnection);
        }
        self.leave_connected(now, was, reason, out);
    }

    /// RFC 9687 §4 (SendHoldTimer_Expires), and the hold timer's expiry: the peer has not taken
    /// a message for the whole send hold time (or said nothing for the whole hold time), so the
    /// NOTIFICATION is only attempted and the connection is dropped with whatever is still
    /// queued; it never waits behind the queue.
    fn abort(
        &mut self,
        now: Instant,
        notification: Notification,
        reason: DownReason,
        out: &mut Vec<Output>,
    ) {
        let was = self.state;
        let encoded = encode_message(
            &Message::Notification(notification.clone()),
            &self.encode_context(),
        )
        .ok();
        out.push(Output::NotificationSent(notification));
        out.push(Output::AbortConnection {
            notification: encoded,
        });
        self.leave_connected(now, was, reason, out);
    }

    /// The common tail of [`Session::down`] and [`Session::abort`]: timers off, Idle, and the
    /// automatic restart unless manually stopped.
    fn leave_connected(
        &mut self,
        now: Instant,
        was: State,
        reason: DownReason,
        out: &mut Vec<Output>,
    ) {
        for timer in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::SendHold,
        ] {
            out.push(Output::CancelTimer(timer));
        }
        if matches!(
            was,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            out.push(Output::SessionDown(reason));
        }
        self.inbound.clear();
        self.negotiated = None;
        self.direction = None;
        self.transition(State::Idle, out);
        if !self.stopped {
            self.failures = self.failures.saturating_add(1);
            self.arm_connect_retry(now, out);
        }
    }

    fn timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Output>) {
        match (timer, self.state) {
            (Timer::ConnectRetry, State::Idle) if !self.stopped => self.start(now, out),
            (Timer::ConnectRetry, State::Connect) => {
                // RFC 4271 §8.2.2 Connect, Event 9: drop the attempt and try again.
                out.push(Output::CloseConnection);
                out.push(Output::Connect);
                self.arm_connect_retry(now, out);
            }
            (Timer::ConnectRetry, State::Active) => {
                if !self.config.passive {
                    self.transition(State::Connect, out);
                    out.push(Output::Connect);
                }
                self.arm_connect_retry(now, out);
            }
            (Timer::Hold, State::OpenSent | State::OpenConfirm | State::Established) => {
                // RFC 4271 §6.5. A peer silent for the whole hold time has most likely stopped
                // reading too (a hung BGP process): like the send hold timer, the NOTIFICATION
                // is only attempted and the connection dropped with whatever is queued, never
                // kept waiting behind a queue the peer will not take.
                let notification =
                    Notification::new(error_code::HOLD_TIMER_EXPIRED, 0, Bytes::new());
                self.abort(now, notification, DownReason::HoldTimerExpired, out);
            }
            (Timer::Keepalive, State::OpenConfirm | State::Established) => {
                self.send(&Message::Keepalive, out);
                self.arm_keepalive(now, out);
            }
            (Timer::SendHold, State::Established) => {
                // RFC 9687 §4: the NOTIFICATION is attempted, but the connection closes
                // regardless of whether it can be written, and regardless of what is queued.
                let notification =
                    Notification::new(error_code::SEND_HOLD_TIMER_EXPIRED, 0, Bytes::new());
                self.abort(now, notification, DownReason::SendHoldTimerExpired, out);
            }
            // A timer that fires in a state where it no longer matters (the driver raced a
            // cancellation) is ignored.
            _ => {}
        }
    }

    fn fsm_error(&mut self, now: Instant, out: &mut Vec<Output>) {
        // RFC 6608 §4 subcodes.
        let subcode = match self.state {
            State::OpenSent => error_code::FSM_UNEXPECTED_IN_OPEN_SENT,
            State::OpenConfirm => error_code::FSM_UNEXPECTED_IN_OPEN_CONFIRM,
            State::Established => error_code::FSM_UNEXPECTED_IN_ESTABLISHED,
            _ => 0,
        };
        let notification = Notification::new(error_code::FSM, subcode, Bytes::new());
        self.down(
            now,
            Some(notification.clone()),
            DownReason::NotificationSent(notification),
            out,
        );
    }

    fn message(&mut self, bytes: &Bytes, now: Instant, out: &mut Vec<Output>) {
        if !self.connected_state() {
            return;
        }
        let message = match decode_message(bytes, &self.decode_context()) {
            Ok(message) => message,
            Err(error) => {
                self.step(Input::ReceiveError(error), now, out);
                return;
            }
        };
        match (message, self.state) {
            (Message::Notification(notification), _) => {
                out.push(Output::NotificationReceived(notification.clone()));
                self.down(
                    now,
                    None,
                    DownReason::NotificationReceived(notification),
                    out,
                );
            }
            (Message::Open(open), State::OpenSent) => {
                self.peer_open_asn = Some(open.asn());
                match negotiate(&self.config, &open) {
                    Ok(negotiated) => {
                        out.push(Output::OpenReceived {
                            router_id: negotiated.remote_router_id,
                            asn: negotiated.remote_asn,
                        });
                        self.negotiated = Some(negotiated);
                        self.send(&Message::Keepalive, out);
                        self.arm_hold(now, out);
                        self.arm_keepalive(now, out);
                        self.transition(State::OpenConfirm, out);
                    }
                    Err(notification) => {
                        self.down(
                            now,
                            Some(notification.clone()),
                            DownReason::NotificationSent(notification),
                            out,
                        );
                    }
                }
            }
            (Message::Keepalive, State::OpenConfirm) => {
                self.arm_hold(now, out);
                self.failures = 0;
                self.transition(State::Established, out);
                self.arm_send_hold(now, out);
                if let Some(negotiated) = &self.negotiated {
                    out.push(Output::Established(Box::new(negotiated.clone())));
                }
            }
            (Message::Keepalive, State::Established) => self.arm_hold(now, out),
            (Message::Update(update), State::Established) => {
                self.arm_hold(now, out);
                let summary = self.inbound.apply(&update);
                out.push(Output::RoutesReceived(summary));
                if let Some((family, limit)) = self.inbound.exceeded(&self.config.max_prefixes) {
                    // RFC 4486 §4: Cease, Maximum Number of Prefixes Reached.
                    let notification = Notification::max_prefixes(family, limit);
                    self.down(
                        now,
                        Some(notification.clone()),
                        DownReason::NotificationSent(notification),
                        out,
                    );
                }
            }
            (Message::RouteRefresh(refresh), State::Established) => {
                self.arm_hold(now, out);
                self.route_refresh(refresh, out);
            }
            _ => self.fsm_error(now, out),
        }
    }

    fn route_refresh(&self, refresh: RouteRefresh, out: &mut Vec<Output>) {
        let Some(negotiated) = &self.negotiated else {
            return;
        };
        // RFC 2918 §4 / RFC 7313 §5: refreshes for families not negotiated, and reserved
        // subtypes, are ignored.
        let Some(family) = refresh
            .family()
            .filter(|family| negotiated.has_family(*family))
        else {
            return;
        };
        match refresh.subtype {
            RouteRefreshSubtype::Request => out.push(Output::RouteRefreshRequested(family)),
            RouteRefreshSubtype::Begin if negotiated.enhanced_route_refresh => {
                out.push(Output::RouteRefreshDemarcation {
                    family,
                    begin: true,
                });
            }
            RouteRefreshSubtype::End if negotiated.enhanced_route_refresh => {
                out.push(Output::RouteRefreshDemarcation {
                    family,
                    begin: false,
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
