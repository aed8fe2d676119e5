//! Scenario tests: two sessions wired back to back in virtual time (quinn-style), plus single
//! sessions driven by hand-made messages.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipnet::IpNet;

use super::*;
use crate::adj_rib_out::AdjRibOut;
use crate::codec::{
    Capabilities, EncodeContext, Frame, Ipv6NextHop, Message, Open, PathAttributes, Update,
    encode_message, next_frame,
};
use crate::inbound::MaxPrefixes;

const A_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

struct Peer {
    session: Session,
    timers: BTreeMap<Timer, Instant>,
    log: Vec<(Instant, Output)>,
    rib: AdjRibOut,
    /// Feed SendProgress after each write (a socket that always drains).
    progress: bool,
}

struct Net {
    now: Instant,
    start: Instant,
    a: Peer,
    b: Peer,
    link_up: bool,
    /// Messages from this side are lost (a silent peer).
    blackhole: Option<Side>,
    events: VecDeque<(Side, Input)>,
}

fn config_a() -> SessionConfig {
    SessionConfig::new(65001, 65002, A_ID)
}

fn config_b() -> SessionConfig {
    let mut config = SessionConfig::new(65002, 65001, B_ID);
    config.passive = true;
    config
}

impl Net {
    fn new(a: SessionConfig, b: SessionConfig) -> Self {
        let now = Instant::now();
        let peer = |config| Peer {
            session: Session::new(config, 7),
            timers: BTreeMap::new(),
            log: Vec::new(),
            rib: AdjRibOut::new(),
            progress: true,
        };
        Self {
            now,
            start: now,
            a: peer(a),
            b: peer(b),
            link_up: false,
            blackhole: None,
            events: VecDeque::new(),
        }
    }

    fn peer(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn start_both(&mut self) {
        self.events.push_back((Side::B, Input::ManualStart));
        self.events.push_back((Side::A, Input::ManualStart));
        self.drain();
    }

    fn input(&mut self, side: Side, input: Input) {
        self.events.push_back((side, input));
        self.drain();
    }

    fn drain(&mut self) {
        while let Some((side, input)) = self.events.pop_front() {
            let now = self.now;
            let outputs = self.peer(side).session.handle(input, now);
            for output in outputs {
                self.apply(side, output);
            }
        }
    }

    fn deliver(&mut self, to: Side, bytes: Bytes) {
        if self.link_up && self.blackhole != Some(to.other()) {
            self.events.push_back((to, Input::Message(bytes)));
        }
    }

    fn apply(&mut self, side: Side, output: Output) {
        let now = self.now;
        self.peer(side).log.push((now, output.clone()));
        match output {
            Output::Connect => {
                let other = self.peer(side.other()).session.state();
                if !self.link_up && matches!(other, State::Active | State::Connect) {
                    self.link_up = true;
                    self.events
                        .push_back((side, Input::TcpConnected(Direction::Outbound)));
                    self.events
                        .push_back((side.other(), Input::TcpConnected(Direction::Inbound)));
                } else if !self.link_up {
                    self.events.push_back((side, Input::TcpFailed));
                }
            }
            Output::Send(bytes) => {
                self.deliver(side.other(), bytes);
                if self.peer(side).progress {
                    // Progress is reported without re-entering the message loop.
                    let deadline = self.peer(side).timers.get(&Timer::SendHold).copied();
                    if deadline.is_some() {
                        self.events.push_back((side, Input::SendProgress));
                    }
                }
            }
            Output::SetTimer(timer, deadline) => {
                self.peer(side).timers.insert(timer, deadline);
            }
            Output::CancelTimer(timer) => {
                self.peer(side).timers.remove(&timer);
            }
            Output::CloseConnection | Output::AbortConnection { .. } if self.link_up => {
                self.link_up = false;
                self.events.push_back((side.other(), Input::TcpClosed));
            }
            Output::Established(negotiated) => {
                self.peer(side).rib.session_established(&negotiated);
                self.pump(side);
            }
            Output::SessionDown(_) => self.peer(side).rib.session_down(),
            Output::RouteRefreshRequested(family) => {
                self.peer(side).rib.route_refresh(family);
                self.pump(side);
            }
            _ => {}
        }
    }

    /// Moves everything the Adj-RIB-Out of `side` has into the link.
    fn pump(&mut self, side: Side) {
        while let Some(mut bytes) = self.peer(side).rib.next_update(64 * 1024) {
            while !bytes.is_empty() {
                match next_frame(&bytes, u16::MAX) {
                    Ok(Frame::Complete { length }) => {
                        let message = bytes.split_to(length);
                        self.deliver(side.other(), message);
                    }
                    _ => panic!("packer produced a broken frame"),
                }
            }
        }
    }

    /// Advances virtual time, firing timers, until `until` (relative to the start).
    fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        loop {
            self.drain();
            let next = [Side::A, Side::B]
                .into_iter()
                .filter_map(|side| {
                    self.peer(side)
                        .timers
                        .iter()
                        .map(|(timer, at)| (*at, *timer))
                        .min()
                        .map(|(at, timer)| (at, side, timer))
                })
                .min_by_key(|(at, _, _)| *at);
            match next {
                Some((at, side, timer)) if at <= deadline => {
                    self.now = self.now.max(at);
                    self.peer(side).timers.remove(&timer);
                    self.events.push_back((side, Input::TimerExpired(timer)));
                }
                _ => break,
            }
        }
        self.now = deadline;
    }

    fn sent_notifications(&self, side: Side) -> Vec<Notification> {
        let peer = match side {
            Side::A => &self.a,
            Side::B => &self.b,
        };
        peer.log
            .iter()
            .filter_map(|(_, output)| match output {
                Output::NotificationSent(notification) => Some(notification.clone()),
                _ => None,
            })
            .collect()
    }

    fn count(&self, side: Side, predicate: impl Fn(&Output) -> bool) -> usize {
        let peer = match side {
            Side::A => &self.a,
            Side::B => &self.b,
        };
        peer.log
            .iter()
            .filter(|(_, output)| predicate(output))
            .count()
    }
}

fn established_net(a: SessionConfig, b: SessionConfig) -> Net {
    let mut net = Net::new(a, b);
    net.start_both();
    assert_eq!(net.a.session.state(), State::Established);
    assert_eq!(net.b.session.state(), State::Established);
    net
}

fn keepalive_bytes() -> Bytes {
    encode_message(&Message::Keepalive, &EncodeContext::default()).unwrap_or_default()
}

fn attributes() -> Arc<PathAttributes> {
    Arc::new(
        PathAttributes {
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6_next_hop: Some(Ipv6NextHop {
                global: "2001:db8::1"
                    .parse()
                    .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
                link_local: None,
            }),
            ..PathAttributes::default()
        }
        .with_as_sequence(vec![65001]),
    )
}

fn prefix(text: &str) -> IpNet {
    text.parse().unwrap_or_default()
}

#[test]
fn rfc4271_8_open_exchange_establishes_active_and_passive() {
    let net = established_net(config_a(), config_b());
    assert_eq!(net.a.session.direction(), Some(Direction::Outbound));
    assert_eq!(net.b.session.direction(), Some(Direction::Inbound));
    let negotiated = net
        .a
        .session
        .negotiated()
        .cloned()
        .unwrap_or_else(|| panic!("none"));
    assert_eq!(negotiated.remote_asn, 65002);
    assert_eq!(negotiated.hold_time, 90);
    assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(30)));
    assert!(negotiated.four_octet_as && negotiated.extended_messages);
    assert!(negotiated.route_refresh && negotiated.enhanced_route_refresh);
    assert_eq!(negotiated.families, Family::ALL.to_vec());
    assert_eq!(net.a.session.max_message_len(), 65535);
    let states: Vec<State> = net
        .a
        .log
        .iter()
        .filter_map(|(_, output)| match output {
            Output::StateChanged { to, .. } => Some(*to),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            State::Connect,
            State::OpenSent,
            State::OpenConfirm,
            State::Established
        ]
    );
}

#[test]
fn rfc4271_4_2_hold_time_is_the_smaller_proposal() {
    let mut b = config_b();
    b.hold_time = 9;
    let net = established_net(config_a(), b);
    for peer in [&net.a, &net.b] {
        let negotiated = peer
            .session
            .negotiated()
            .cloned()
            .unwrap_or_else(|| panic!("none"));
        assert_eq!(negotiated.hold_time, 9);
        assert_eq!(negotiated.keepalive_interval, Some(Duration::from_secs(3)));
    }
}

#[test]
fn rfc4271_4_4_keepalive_cadence_is_a_third_of_hold_time() {
    let mut net = established_net(config_a(), config_b());
    let before = net.count(
        Side::A,
        |output| matches!(output, Output::Send(bytes) if bytes.len() == 19),
    );
    net.run_for(Duration::from_secs(300));
    let after = net.count(
        Side::A,
        |output| matches!(output, Output::Send(bytes) if bytes.len() == 19),
    );
    assert_eq!(after - before, 10);
    assert_eq!(net.a.session.state(), State::Established);
}

#[test]
fn rfc4271_6_5_hold_timer_expiry_sends_notification_4() {
    let mut net = established_net(config_a(), config_b());
    net.blackhole = Some(Side::B);
    net.run_for(Duration::from_secs(91));
    let notifications = net.sent_notifications(Side::A);
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].code, 4);
    assert!(
        net.a
            .log
            .iter()
            .any(|(_, output)| matches!(output, Output::SessionDown(DownReason::HoldTimerExpired)))
    );
    assert_eq!(net.a.session.state(), State::Idle);
}

#[test]
fn rfc4271_8_2_2_restart_after_hold_expiry_reestablishes() {
    let mut net = established_net(config_a(), config_b());
    net.blackhole = Some(Side::B);
    net.run_for(Duration::from_secs(91));
    net.blackhole = None;
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.a.session.state(), State::Established);
    assert_eq!(net.b.session.state(), State::Established);
}

#[test]
fn rfc9687_send_hold_timer_expiry_closes_session() {
    let mut net = Net::new(config_a(), config_b());
    net.a.progress = false;
    net.start_both();
    net.run_for(Duration::from_secs(481));
    let notifications = net.sent_notifications(Side::A);
    assert_eq!(notifications.first().map(|n| n.code), Some(8));
    assert!(net.a.log.iter().any(|(_, output)| matches!(
        output,
        Output::SessionDown(DownReason::SendHoldTimerExpired)
    )));
}

/// RFC 9687 §4: however much is queued for the peer, the expiry closes the connection at once
/// (`AbortConnection`: the queue is dropped, the NOTIFICATION only attempted), never a
/// `CloseConnection` that would wait for the queue to drain, and never a NOTIFICATION queued
/// behind it.
#[test]
fn rfc9687_send_hold_expiry_aborts_the_connection_whatever_is_queued() {
    let mut a = config_a();
    a.hold_time = 3;
    a.send_hold_time = Some(Duration::from_secs(4));
    let mut b = config_b();
    b.hold_time = 3;
    let mut net = established_net(a, b);
    // A stops making progress (its socket never drains) while its Adj-RIB-Out is full.
    net.a.progress = false;
    for index in 0..2000u32 {
        let prefix = IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap_or_default(),
        );
        let _ = net.a.rib.announce(prefix, &attributes());
    }
    assert!(net.a.rib.has_pending());
    let established_at = net.now;
    net.run_for(Duration::from_secs(5));
    let aborts: Vec<usize> = net
        .a
        .log
        .iter()
        .enumerate()
        .filter(|(_, (_, output))| matches!(output, Output::AbortConnection { .. }))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(aborts.len(), 1, "{:?}", net.a.log);
    let (aborted_at, abort) = &net.a.log[aborts[0]];
    // Keepalives were sent but never progressed, so the timer runs from Established.
    assert_eq!(*aborted_at - established_at, Duration::from_secs(4));
    let Output::AbortConnection {
        notification: Some(bytes),
    } = abort
    else {
        panic!("the NOTIFICATION is attempted: {abort:?}")
    };
    let decoded = decode_message(bytes, &DecodeContext::default());
    assert!(
        matches!(&decoded, Ok(Message::Notification(notification)) if notification.code == 8),
        "{decoded:?}"
    );
    // Nothing waits for the queue: no graceful close and no NOTIFICATION behind the queue.
    let after: Vec<&Output> = net.a.log[aborts[0]..]
        .iter()
        .map(|(_, output)| output)
        .collect();
    assert!(
        !after
            .iter()
            .any(|output| matches!(output, Output::CloseConnection | Output::Send(_))),
        "{after:?}"
    );
    assert!(after.iter().any(|output| matches!(
        output,
        Output::SessionDown(DownReason::SendHoldTimerExpired)
    )));
    assert_eq!(net.a.session.state(), State::Idle);
    // RFC 9687 §3 says the session restarts like after any error: the retry timer is armed.
    assert!(net.a.timers.contains_key(&Timer::ConnectRetry));
}

/// RFC 9687 §3: each message sent restarts the timer, so a peer that takes a message within
/// every send hold time keeps the session, however slow it is otherwise.
#[test]
fn rfc9687_send_hold_restarts_on_each_message_written() {
    let mut a = config_a();
    a.hold_time = 3;
    a.send_hold_time = Some(Duration::from_secs(4));
    let mut b = config_b();
    b.hold_time = 3;
    let mut net = established_net(a, b);
    net.a.progress = false;
    for _ in 0..10 {
        net.run_for(Duration::from_secs(3));
        net.input(Side::A, Input::SendProgress);
    }
    assert_eq!(net.a.session.state(), State::Established);
    net.run_for(Duration::from_secs(4));
    assert_eq!(net.a.session.state(), State::Idle);
}

#[test]
fn rfc9687_send_progress_keeps_session_up() {
    let mut net = established_net(config_a(), config_b());
    net.run_for(Duration::from_secs(1000));
    assert_eq!(net.a.session.state(), State::Established);
    assert!(net.sent_notifications(Side::A).is_empty());
}

#[test]
fn rfc4271_6_2_bad_peer_as() {
    let mut b = config_b();
    b.remote_asn = 65099;
    let mut net = Net::new(config_a(), b);
    net.start_both();
    let notifications = net.sent_notifications(Side::B);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((2, 2))
    );
    assert!(net.a.log.iter().any(|(_, output)| matches!(
        output,
        Output::NotificationReceived(notification) if notification.subcode == 2
    )));
    assert_eq!(net.a.session.state(), State::Idle);
    assert!(net.a.timers.contains_key(&Timer::ConnectRetry));
}

#[test]
fn rfc4271_6_2_unacceptable_hold_time() {
    let mut a = config_a();
    a.hold_time = 2;
    let mut net = Net::new(a, config_b());
    net.start_both();
    let notifications = net.sent_notifications(Side::B);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((2, 6))
    );
}

#[test]
fn rfc6286_2_2_internal_peer_with_our_identifier_is_bad_bgp_identifier() {
    let a = SessionConfig::new(65001, 65001, A_ID);
    let mut b = SessionConfig::new(65001, 65001, A_ID);
    b.passive = true;
    let mut net = Net::new(a, b);
    net.start_both();
    let notifications = net.sent_notifications(Side::B);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((2, 3))
    );
}

#[test]
fn rfc5492_5_no_common_family_is_unsupported_capability() {
    let mut a = config_a();
    a.families = vec![Family::Ipv6Unicast];
    let mut b = config_b();
    b.families = vec![Family::Ipv4Unicast];
    let mut net = Net::new(a, b);
    net.start_both();
    let notifications = net.sent_notifications(Side::B);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((2, 7))
    );
}

#[test]
fn rfc4760_8_peer_without_ipv6_gets_only_ipv4() {
    let mut b = config_b();
    b.families = vec![Family::Ipv4Unicast];
    b.extended_messages = false;
    b.route_refresh = false;
    b.enhanced_route_refresh = false;
    let net = established_net(config_a(), b);
    let negotiated = net
        .a
        .session
        .negotiated()
        .cloned()
        .unwrap_or_else(|| panic!("none"));
    assert_eq!(negotiated.families, vec![Family::Ipv4Unicast]);
    assert_eq!(negotiated.max_message_len(), 4096);
    assert!(!negotiated.route_refresh && !negotiated.enhanced_route_refresh);
}

/// Drives one session to OpenSent over an inbound connection and returns it.
fn open_sent(config: SessionConfig, now: Instant) -> Session {
    let mut session = Session::new(config, 1);
    session.handle(Input::ManualStart, now);
    session.handle(Input::TcpConnected(Direction::Inbound), now);
    assert_eq!(session.state(), State::OpenSent);
    session
}

fn peer_open(capabilities: Capabilities, asn_field: u16) -> Bytes {
    let open = Open {
        asn_field,
        hold_time: 90,
        router_id: B_ID,
        capabilities,
    };
    encode_message(&Message::Open(open), &EncodeContext::default()).unwrap_or_default()
}

#[test]
fn rfc4760_8_peer_without_multiprotocol_speaks_ipv4_unicast() {
    let now = Instant::now();
    let mut session = open_sent(config_a(), now);
    let outputs = session.handle(
        Input::Message(peer_open(Capabilities::default(), 65002)),
        now,
    );
    assert!(
        outputs
            .iter()
            .any(|output| matches!(output, Output::OpenReceived { .. }))
    );
    let negotiated = session
        .negotiated()
        .cloned()
        .unwrap_or_else(|| panic!("none"));
    assert_eq!(negotiated.families, vec![Family::Ipv4Unicast]);
    assert!(!negotiated.four_octet_as, "RFC 6793: 2-octet peer");
    assert!(negotiated.peer_graceful_restart.is_none());
}

#[test]
fn rfc6793_4_1_two_octet_peer_with_large_configured_asn_is_bad_peer_as() {
    let now = Instant::now();
    let mut config = config_a();
    config.remote_asn = 4_200_000_000;
    let mut session = open_sent(config, now);
    let outputs = session.handle(
        Input::Message(peer_open(Capabilities::default(), crate::codec::AS_TRANS)),
        now,
    );
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::NotificationSent(notification) if (notification.code, notification.subcode) == (2, 2)
    )));
}

#[test]
fn rfc6793_4_1_four_octet_peer_asn_from_capability() {
    let now = Instant::now();
    let mut config = config_a();
    config.remote_asn = 4_200_000_000;
    let mut session = open_sent(config, now);
    let capabilities = Capabilities {
        four_octet_asn: Some(4_200_000_000),
        ..Capabilities::default()
    };
    session.handle(
        Input::Message(peer_open(capabilities, crate::codec::AS_TRANS)),
        now,
    );
    assert_eq!(session.state(), State::OpenConfirm);
}

#[test]
fn rfc6608_update_in_open_confirm_is_fsm_error_2() {
    let now = Instant::now();
    let mut session = open_sent(config_a(), now);
    session.handle(
        Input::Message(peer_open(Capabilities::default(), 65002)),
        now,
    );
    let update = encode_message(
        &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
        &EncodeContext::default(),
    )
    .unwrap_or_default();
    let outputs = session.handle(Input::Message(update), now);
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::NotificationSent(notification) if (notification.code, notification.subcode) == (5, 2)
    )));
    assert_eq!(session.state(), State::Idle);
}

#[test]
fn rfc6608_keepalive_in_open_sent_is_fsm_error_1() {
    let now = Instant::now();
    let mut session = open_sent(config_a(), now);
    let outputs = session.handle(Input::Message(keepalive_bytes()), now);
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::NotificationSent(notification) if (notification.code, notification.subcode) == (5, 1)
    )));
}

#[test]
fn rfc6608_open_in_established_is_fsm_error_3() {
    let mut net = established_net(config_a(), config_b());
    net.input(
        Side::A,
        Input::Message(peer_open(Capabilities::default(), 65002)),
    );
    let notifications = net.sent_notifications(Side::A);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((5, 3))
    );
}

#[test]
fn rfc4271_8_2_2_open_sent_hold_timer_is_four_minutes() {
    let now = Instant::now();
    let mut session = Session::new(config_a(), 1);
    session.handle(Input::ManualStart, now);
    let outputs = session.handle(Input::TcpConnected(Direction::Outbound), now);
    assert!(outputs.contains(&Output::SetTimer(
        Timer::Hold,
        now + Duration::from_secs(240)
    )));
    let outputs = session.handle(
        Input::TimerExpired(Timer::Hold),
        now + Duration::from_secs(240),
    );
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::NotificationSent(notification) if notification.code == 4
    )));
}

#[test]
fn rfc4271_6_8_collision_keeps_connection_of_higher_identifier() {
    let low = Ipv4Addr::new(10, 0, 0, 1);
    let high = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(resolve_collision(high, 1, low, 2), Direction::Outbound);
    assert_eq!(resolve_collision(low, 1, high, 2), Direction::Inbound);
    // RFC 6286 §2.3: equal identifiers, the larger AS wins.
    assert_eq!(resolve_collision(low, 3, low, 2), Direction::Outbound);
    assert_eq!(resolve_collision(low, 2, low, 3), Direction::Inbound);
}

#[test]
fn rfc4271_6_8_collision_loser_sends_cease_7_and_does_not_restart() {
    let now = Instant::now();
    let mut session = open_sent(config_a(), now);
    session.handle(
        Input::Message(peer_open(Capabilities::default(), 65002)),
        now,
    );
    assert_eq!(session.state(), State::OpenConfirm);
    let outputs = session.handle(Input::CollisionLost, now);
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::NotificationSent(notification) if (notification.code, notification.subcode) == (6, 7)
    )));
    assert!(outputs.contains(&Output::CloseConnection));
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, Output::SetTimer(..)))
    );
    assert_eq!(session.state(), State::Idle);
}

#[test]
fn rfc4271_8_second_connection_is_refused_by_a_busy_session() {
    let now = Instant::now();
    let mut session = open_sent(config_a(), now);
    let outputs = session.handle(Input::TcpConnected(Direction::Outbound), now);
    assert_eq!(outputs, vec![Output::CloseConnection]);
    assert_eq!(session.state(), State::OpenSent);
}

#[test]
fn rfc4486_manual_stop_sends_cease_2_and_stays_idle() {
    let mut net = established_net(config_a(), config_b());
    net.input(Side::A, Input::ManualStop);
    let notifications = net.sent_notifications(Side::A);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((6, 2))
    );
    net.run_for(Duration::from_secs(600));
    assert_eq!(net.a.session.state(), State::Idle);
    assert!(net.a.timers.is_empty());
    assert!(net.b.log.iter().any(|(_, output)| matches!(
        output,
        Output::SessionDown(DownReason::NotificationReceived(_))
    )));
}

#[test]
fn rfc4271_10_connect_retry_backoff_grows_with_jitter() {
    let now = Instant::now();
    let mut config = config_a();
    config.backoff = Backoff {
        initial: Duration::from_secs(4),
        maximum: Duration::from_secs(60),
    };
    let mut session = Session::new(config, 42);
    let mut delays = Vec::new();
    let mut outputs = session.handle(Input::ManualStart, now);
    for _ in 0..6 {
        let deadline = outputs.iter().find_map(|output| match output {
            Output::SetTimer(Timer::ConnectRetry, at) => Some(*at),
            _ => None,
        });
        delays.push(deadline.map(|at| at - now).unwrap_or_default());
        session.handle(Input::TcpFailed, now);
        outputs = session.handle(Input::TimerExpired(Timer::ConnectRetry), now);
        assert!(outputs.contains(&Output::Connect));
    }
    let base = [4u64, 8, 16, 32, 60, 60];
    for (delay, base) in delays.iter().zip(base) {
        let base = Duration::from_secs(base);
        assert!(
            *delay >= base.mul_f64(0.75) && *delay <= base,
            "{delay:?} vs {base:?}"
        );
    }
}

#[test]
fn rfc4271_8_passive_peer_never_connects() {
    let now = Instant::now();
    let mut session = Session::new(config_b(), 1);
    let outputs = session.handle(Input::ManualStart, now);
    assert!(!outputs.contains(&Output::Connect));
    assert_eq!(session.state(), State::Active);
}

#[test]
fn rfc4271_4_4_hold_time_zero_disables_keepalives() {
    let mut a = config_a();
    a.hold_time = 0;
    let mut net = established_net(a, config_b());
    assert!(!net.a.timers.contains_key(&Timer::Keepalive));
    assert!(!net.a.timers.contains_key(&Timer::Hold));
    net.run_for(Duration::from_secs(3600));
    assert_eq!(net.a.session.state(), State::Established);
}

#[test]
fn rfc4486_4_max_prefix_sends_cease_1_with_afi_safi_limit() {
    let mut b = config_b();
    b.max_prefixes = MaxPrefixes {
        ipv4_unicast: Some(2),
        ipv6_unicast: None,
    };
    let mut net = established_net(config_a(), b);
    let attributes = attributes();
    for text in ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"] {
        net.a
            .rib
            .announce(prefix(text), &attributes)
            .unwrap_or_default();
    }
    net.pump(Side::A);
    net.drain();
    let notifications = net.sent_notifications(Side::B);
    let expected = Notification::max_prefixes(Family::Ipv4Unicast, 2);
    assert_eq!(notifications.first(), Some(&expected));
    assert_eq!(&expected.data[..], &[0, 1, 1, 0, 0, 0, 2]);
}

#[test]
fn inbound_routes_are_counted_per_family() {
    let mut net = established_net(config_a(), config_b());
    let attributes = attributes();
    for text in ["10.0.0.0/24", "10.0.1.0/24", "2001:db8:1::/48"] {
        net.a
            .rib
            .announce(prefix(text), &attributes)
            .unwrap_or_default();
    }
    net.pump(Side::A);
    net.drain();
    let ipv4 = net.b.session.inbound(Family::Ipv4Unicast);
    let ipv6 = net.b.session.inbound(Family::Ipv6Unicast);
    assert_eq!((ipv4.current, ipv4.announced, ipv4.end_of_rib), (2, 2, 1));
    assert_eq!((ipv6.current, ipv6.announced, ipv6.end_of_rib), (1, 1, 1));
    net.a.rib.withdraw(prefix("10.0.0.0/24"));
    net.pump(Side::A);
    net.drain();
    let ipv4 = net.b.session.inbound(Family::Ipv4Unicast);
    assert_eq!((ipv4.current, ipv4.withdrawn), (1, 1));
}

#[test]
fn rfc4724_2_end_of_rib_follows_initial_sync() {
    let mut net = Net::new(config_a(), config_b());
    let attributes = attributes();
    net.a
        .rib
        .announce(prefix("10.0.0.0/24"), &attributes)
        .unwrap_or_default();
    net.start_both();
    let summaries: Vec<UpdateSummary> = net
        .b
        .log
        .iter()
        .filter_map(|(_, output)| match output {
            Output::RoutesReceived(summary) => Some(*summary),
            _ => None,
        })
        .collect();
    assert_eq!(summaries.len(), 3);
    assert_eq!(summaries[0].announced, [1, 0]);
    assert_eq!(summaries[1].end_of_rib, Some(Family::Ipv4Unicast));
    assert_eq!(summaries[2].end_of_rib, Some(Family::Ipv6Unicast));
}

#[test]
fn rfc4724_3_restarting_speaker_sets_restart_state_and_forwarding_bits() {
    let mut a = config_a();
    a.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: true,
        forwarding_preserved: true,
    });
    let net = established_net(a, config_b());
    let restart = net
        .b
        .session
        .negotiated()
        .and_then(|negotiated| negotiated.peer_graceful_restart.clone())
        .unwrap_or_else(|| panic!("no GR capability seen"));
    assert!(restart.restart_state);
    assert_eq!(restart.restart_time, 120);
    assert_eq!(restart.families.len(), 2);
    assert!(
        restart
            .families
            .iter()
            .all(|family| family.forwarding_preserved)
    );
    assert!(
        net.a
            .session
            .negotiated()
            .is_some_and(|negotiated| negotiated.local_graceful_restart)
    );
}

#[test]
fn rfc2918_route_refresh_request_reaches_peer_rib() {
    let mut net = established_net(config_a(), config_b());
    let attributes = attributes();
    net.b
        .rib
        .announce(prefix("10.9.0.0/16"), &attributes)
        .unwrap_or_default();
    net.pump(Side::B);
    net.drain();
    let before = net.a.session.inbound(Family::Ipv4Unicast).announced;
    net.input(Side::A, Input::RequestRouteRefresh(Family::Ipv4Unicast));
    assert!(
        net.b.log.iter().any(|(_, output)| matches!(
            output,
            Output::RouteRefreshRequested(Family::Ipv4Unicast)
        ))
    );
    // RFC 7313: BoRR, the re-sent route, EoRR.
    assert!(
        net.a.log.iter().any(|(_, output)| matches!(
            output,
            Output::RouteRefreshDemarcation { begin: true, .. }
        ))
    );
    assert!(
        net.a.log.iter().any(|(_, output)| matches!(
            output,
            Output::RouteRefreshDemarcation { begin: false, .. }
        ))
    );
    assert_eq!(
        net.a.session.inbound(Family::Ipv4Unicast).announced,
        before + 1
    );
}

#[test]
fn rfc2918_no_refresh_request_when_not_negotiated() {
    let mut b = config_b();
    b.route_refresh = false;
    let mut net = established_net(config_a(), b);
    let sent_before = net.count(Side::A, |output| matches!(output, Output::Send(_)));
    net.input(Side::A, Input::RequestRouteRefresh(Family::Ipv4Unicast));
    let sent_after = net.count(Side::A, |output| matches!(output, Output::Send(_)));
    assert_eq!(sent_before, sent_after);
}

#[test]
fn rfc4271_6_1_framing_error_resets_with_header_error() {
    let mut net = established_net(config_a(), config_b());
    let error = match next_frame(&[0u8; 19], 4096) {
        Err(error) => error,
        Ok(_) => panic!("zero marker accepted"),
    };
    net.input(Side::A, Input::ReceiveError(error));
    let notifications = net.sent_notifications(Side::A);
    assert_eq!(
        notifications.first().map(|n| (n.code, n.subcode)),
        Some((1, 1))
    );
}

#[test]
fn rfc7606_treat_as_withdraw_keeps_session_up() {
    let mut net = established_net(config_a(), config_b());
    // ORIGIN with value 7 (RFC 7606 §7.1) and a prefix.
    let mut bytes = vec![0xffu8; 16];
    let body: Vec<u8> = [
        &[0u8, 0, 0, 20][..],
        &[0x40, 1, 1, 7],
        &[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9],
        &[0x40, 3, 4, 192, 0, 2, 1],
        &[24, 10, 0, 0],
    ]
    .concat();
    bytes.extend_from_slice(&u16::try_from(19 + body.len()).unwrap_or(0).to_be_bytes());
    bytes.push(2);
    bytes.extend_from_slice(&body);
    net.input(Side::B, Input::Message(Bytes::from(bytes)));
    assert_eq!(net.b.session.state(), State::Established);
    let counters = net.b.session.inbound(Family::Ipv4Unicast);
    assert_eq!(
        (
            counters.current,
            counters.withdrawn,
            counters.treat_as_withdraw_updates
        ),
        (0, 1, 1)
    );
}

#[test]
fn rfc4271_6_4_notification_received_in_established_goes_idle() {
    let mut net = established_net(config_a(), config_b());
    let notification = Notification::new(6, 4, Bytes::new());
    let bytes = encode_message(
        &Message::Notification(notification.clone()),
        &EncodeContext::default(),
    )
    .unwrap_or_default();
    net.input(Side::A, Input::Message(bytes));
    assert!(net.a.log.iter().any(|(_, output)| output
        == &Output::SessionDown(DownReason::NotificationReceived(notification.clone()))));
    assert!(
        net.sent_notifications(Side::A).is_empty(),
        "never answer a NOTIFICATION"
    );
}

#[test]
fn rfc4271_8_tcp_closed_in_established_reports_session_down() {
    let mut net = established_net(config_a(), config_b());
    net.link_up = false;
    net.input(Side::A, Input::TcpClosed);
    assert!(
        net.a
            .log
            .iter()
            .any(|(_, output)| output == &Output::SessionDown(DownReason::TransportClosed))
    );
    assert_eq!(net.a.session.state(), State::Idle);
    assert!(net.a.timers.contains_key(&Timer::ConnectRetry));
}

#[test]
fn rfc4271_8_stale_timer_is_ignored() {
    let now = Instant::now();
    let mut session = Session::new(config_a(), 1);
    assert!(
        session
            .handle(Input::TimerExpired(Timer::Hold), now)
            .is_empty()
    );
    assert!(
        session
            .handle(Input::TimerExpired(Timer::Keepalive), now)
            .is_empty()
    );
}

#[test]
fn virtual_time_runs_from_start() {
    let mut net = established_net(config_a(), config_b());
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.now - net.start, Duration::from_secs(10));
}

#[test]
fn rfc4724_4_restarted_speaker_resends_routes_and_peer_sees_no_withdrawals() {
    let mut net = established_net(config_a(), config_b());
    let attributes = attributes();
    for text in ["10.0.0.0/24", "10.0.1.0/24", "2001:db8:1::/48"] {
        net.a
            .rib
            .announce(prefix(text), &attributes)
            .unwrap_or_default();
    }
    net.pump(Side::A);
    net.drain();
    // SIGKILL of A: the transport just breaks, no NOTIFICATION.
    net.link_up = false;
    net.input(Side::B, Input::TcpClosed);
    // A restarts with the same routes and the Restart State bit.
    let mut restarted = config_a();
    restarted.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 120,
        restarting: true,
        forwarding_preserved: true,
    });
    net.a = Peer {
        session: Session::new(restarted, 9),
        timers: BTreeMap::new(),
        log: Vec::new(),
        rib: AdjRibOut::new(),
        progress: true,
    };
    for text in ["10.0.0.0/24", "10.0.1.0/24", "2001:db8:1::/48"] {
        net.a
            .rib
            .announce(prefix(text), &attributes)
            .unwrap_or_default();
    }
    net.input(Side::A, Input::ManualStart);
    net.run_for(Duration::from_secs(60));
    assert_eq!(net.b.session.state(), State::Established);
    let restart = net
        .b
        .session
        .negotiated()
        .and_then(|negotiated| negotiated.peer_graceful_restart.clone())
        .unwrap_or_else(|| panic!("no GR capability"));
    assert!(restart.restart_state);
    let ipv4 = net.b.session.inbound(Family::Ipv4Unicast);
    let ipv6 = net.b.session.inbound(Family::Ipv6Unicast);
    assert_eq!((ipv4.current, ipv4.withdrawn, ipv4.end_of_rib), (2, 0, 2));
    assert_eq!((ipv6.current, ipv6.withdrawn, ipv6.end_of_rib), (1, 0, 2));
}

#[test]
fn rfc4271_6_8_driver_resolves_collision_between_two_sessions() {
    let now = Instant::now();
    let mut outbound = Session::new(config_a(), 1);
    outbound.handle(Input::ManualStart, now);
    outbound.handle(Input::TcpConnected(Direction::Outbound), now);
    let mut inbound = Session::new(config_a(), 2);
    inbound.handle(Input::ManualStart, now);
    inbound.handle(Input::TcpConnected(Direction::Inbound), now);
    let open = peer_open(Capabilities::default(), 65002);
    let mut seen = Vec::new();
    for session in [&mut outbound, &mut inbound] {
        for output in session.handle(Input::Message(open.clone()), now) {
            if let Output::OpenReceived { router_id, asn } = output {
                seen.push((router_id, asn));
            }
        }
    }
    assert_eq!(seen.len(), 2, "both connections reached OpenConfirm");
    let (remote_id, remote_asn) = seen[0];
    let keep = resolve_collision(A_ID, 65001, remote_id, remote_asn);
    assert_eq!(
        keep,
        Direction::Inbound,
        "the peer has the higher identifier"
    );
    let outputs = outbound.handle(Input::CollisionLost, now);
    assert!(outputs.iter().any(|output| matches!(
        output,
        Output::NotificationSent(notification) if (notification.code, notification.subcode) == (6, 7)
    )));
    let outputs = inbound.handle(Input::Message(keepalive_bytes()), now);
    assert!(
        outputs
            .iter()
            .any(|output| matches!(output, Output::Established(_)))
    );
    assert_eq!(outbound.state(), State::Idle);
}

#[test]
fn rfc4271_4_2_config_validation() {
    assert_eq!(config_a().validate(), Ok(()));
    let mut config = config_a();
    config.hold_time = 2;
    assert_eq!(config.validate(), Err(ConfigError::HoldTime(2)));
    let mut config = config_a();
    config.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 5000,
        restarting: false,
        forwarding_preserved: true,
    });
    assert_eq!(config.validate(), Err(ConfigError::RestartTime(5000)));
    let mut config = config_a();
    config.router_id = Ipv4Addr::UNSPECIFIED;
    assert_eq!(config.validate(), Err(ConfigError::RouterId));
}

/// A peer silent for the whole hold time has most likely stopped reading as well: the expiry
/// aborts the connection whatever is queued, like the send hold timer, instead of queuing the
/// NOTIFICATION behind routes the peer will never take (the connection would stay forever).
#[test]
fn rfc4271_6_5_hold_expiry_aborts_the_connection_whatever_is_queued() {
    let mut net = established_net(config_a(), config_b());
    net.blackhole = Some(Side::B);
    net.a.progress = false;
    for index in 0..2000u32 {
        let prefix = IpNet::V4(
            ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (index << 8)), 24).unwrap_or_default(),
        );
        let _ = net.a.rib.announce(prefix, &attributes());
    }
    net.run_for(Duration::from_secs(91));
    let aborts: Vec<usize> = net
        .a
        .log
        .iter()
        .enumerate()
        .filter(|(_, (_, output))| matches!(output, Output::AbortConnection { .. }))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(aborts.len(), 1, "{:?}", net.a.log);
    let after: Vec<&Output> = net.a.log[aborts[0]..]
        .iter()
        .map(|(_, output)| output)
        .collect();
    assert!(
        !after
            .iter()
            .any(|output| matches!(output, Output::CloseConnection)),
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .any(|output| matches!(output, Output::SessionDown(DownReason::HoldTimerExpired)))
    );
    assert_eq!(net.a.session.state(), State::Idle);
}
