//! The tokio driver of one BGP peer: owns its TCP connection(s), timers, the sans-IO
//! [`Session`] and the peer's [`AdjRibOut`]. It is the thin async shell around the pure core in
//! `topologyd-bgp`: every protocol decision is the session's; this file moves bytes, arms
//! timers and reconciles the Adj-RIB-Out with the routes the engine publishes.
//!
//! ```text
//!  engine ──watch<Arc<LocationRoutes>>──► peer task ──► TCP ──► edge router
//!  engine ──mpsc<PeerCommand> (inbound connection, shutdown)─┘
//!  peer task ──watch<PeerStatus>──► engine / metrics collector (snapshots: counters, state)
//!  peer task ──mpsc<PeerReport> (session state, publication N sent, task ended)──► engine
//! ```
//!
//! Reconciling: when a new generation is published, the task hands the old and new route lists
//! to the pure merge-diff in `reconcile.rs`, which tells the Adj-RIB-Out only what changed, so
//! only the difference goes on the wire. UPDATEs are pulled from the Adj-RIB-Out while the output buffer is below
//! [`OUTPUT_HIGH_WATER`]: a slow peer holds back the encoding, never grows a queue.
//!
//! Writing (`send_ledger.rs` keeps the account): only a whole message written restarts the
//! RFC 9687 send hold timer; on its expiry the queue is dropped and the socket reset at once
//! (`Output::AbortConnection`). The "sent" counters count what was written, UPDATE by UPDATE.
//! Routes of a family the peer does not carry are not its routes; routes whose attributes cannot
//! be encoded for it are counted over the whole generation (`routes_unencodable`).
//!
//! Collisions (RFC 4271 §6.8): an inbound connection arriving while our outbound one is not yet
//! Established is parked until the peer's OPEN tells us its BGP Identifier, then
//! [`resolve_collision`] decides which connection lives. An inbound connection arriving while a
//! session is Established replaces it (the peer restarted: RFC 4724 §4.2).
//!
//! Beside it: `peer/stop.rs` (a stop, and the EoRR fence before a withdrawing stop's Cease),
//! `peer/status.rs` (the status channel and the reports to the engine), `peer/connection.rs`
//! (one TCP connection's buffers and I/O), `peer/report.rs` (the report messages),
//! `peer/connect_failures.rs` (logging repeated connect failures once).
//!
//! Must not touch: topology compilation, state files, HTTP.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use topologyd_bgp::codec::Family as WireFamily;
use topologyd_bgp::{
    AdjRibOut, Direction, Frame, Input, Output, RibCounters, Session, SessionConfig, State, Timer,
    next_frame, resolve_collision,
};
use tracing::{debug, info, warn};

use crate::announce::{LocationRoutes, PeerRouteContext};
use crate::reconcile::{self, Carried, FamilyAttributes, Interned, Side};
use crate::sockopt::{self, SessionSecurity};

mod connect_failures;
mod connection;
mod report;
mod status;
mod stop;

use self::connect_failures::ConnectFailures;
use self::connection::{
    Connection, close_gracefully, poll_connect, read_some, sleep_until, split_halves, write_some,
};
use self::report::EndReport;
pub use self::report::{PeerReport, PeerSynced, ReportTo, task_ended};
use self::stop::StopFence;
use topologyd_bgp::notification_text::{NotificationContext, describe, describe_down_reason};

/// Stop pulling UPDATEs from the Adj-RIB-Out while this much is waiting to be written.
pub const OUTPUT_HIGH_WATER: usize = 512 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// How long an outbound connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closed connection waits for the peer to close its side (see
/// [`connection::close_gracefully`]); a stopping task waits for its closes at most this long.
const CLOSE_LIMIT: Duration = Duration::from_secs(3);

/// Everything a peer task needs to run.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    pub name: String,
    pub remote: SocketAddr,
    pub local_address: Option<IpAddr>,
    pub session: SessionConfig,
    pub security: SessionSecurity,
    pub route_context: PeerRouteContext,
}

/// Requests to a peer task.
#[derive(Debug)]
pub enum PeerCommand {
    /// The listener accepted a connection from this peer's address.
    Inbound(TcpStream),
    /// Ask the peer to re-send its routes (RFC 2918), when negotiated.
    RequestRouteRefresh,
    /// A reload changed only what applies in place (next hops, max-prefix, connect retry):
    /// the routes are re-sent with the new attributes; the session parameters take effect
    /// from the next session on.
    Reconfigure(Box<PeerSpec>),
    /// Stop. With `withdraw_first`, every route is withdrawn and the withdrawals flushed before
    /// a Cease NOTIFICATION; otherwise the connection is closed without NOTIFICATION so that the
    /// peer keeps our routes as stale for the graceful-restart time (RFC 4724 §4.2).
    Shutdown {
        withdraw_first: bool,
        /// When the stop's grace time ends: the EoRR fence and the graceful close end before.
        deadline: Instant,
        done: oneshot::Sender<()>,
    },
}

/// A snapshot of the peer, published after every change; read by the engine and metrics, and
/// shown as it is by `GET /v1/status`.
pub use topologyd_api::PeerStatus;

/// The engine's handle on a running peer task.
#[derive(Debug)]
pub struct PeerHandle {
    pub name: String,
    pub incarnation: u64,
    pub address: IpAddr,
    pub commands: mpsc::Sender<PeerCommand>,
    pub status: watch::Receiver<PeerStatus>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the task of one peer. It reconciles to `routes` from the start, so the first UPDATEs
/// after Established already carry the current generation (what a graceful restart needs).
pub fn spawn_peer(
    spec: PeerSpec,
    routes: watch::Receiver<Arc<LocationRoutes>>,
    reports: ReportTo,
) -> PeerHandle {
    let (commands, command_receiver) = mpsc::channel(16);
    let initial = PeerStatus {
        name: spec.name.clone(),
        address: spec.remote.to_string(),
        state: format!("{:?}", State::Idle),
        ..PeerStatus::default()
    };
    let (status_sender, status) = watch::channel(initial);
    let name = spec.name.clone();
    let address = spec.remote.ip();
    let incarnation = reports.incarnation;
    let driver = PeerDriver::new(spec, routes, status_sender, reports);
    let task = tokio::spawn(driver.run(command_receiver));
    PeerHandle {
        name,
        incarnation,
        address,
        commands,
        status,
        task,
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<TcpStream, sockopt::SockoptError>> + Send>>;

struct PeerDriver {
    spec: PeerSpec,
    routes: watch::Receiver<Arc<LocationRoutes>>,
    status: watch::Sender<PeerStatus>,
    /// Where changes of [`PeerSynced`] go, and the last one sent.
    reports: ReportTo,
    reported: Option<PeerSynced>,
    rib: AdjRibOut,
    /// What has been written to the socket, over all connections (the "sent" counters).
    written: RibCounters,
    /// Prefixes written (announced and withdrawn) when the task last gave freed memory back.
    written_at_trim: u64,
    /// The generation the Adj-RIB-Out holds, and its per-intent path attributes.
    applied: Arc<LocationRoutes>,
    applied_attributes: Vec<FamilyAttributes>,
    interned: Interned,
    connection: Option<Connection>,
    /// Connections closed gracefully in the background (FIN sent, waiting for the peer's).
    closing_connections: tokio::task::JoinSet<()>,
    /// An inbound connection waiting for collision resolution.
    parked: Option<Connection>,
    connecting: Option<ConnectFuture>,
    /// Session-independent timer: when to retry an outbound connection.
    idle_timers: BTreeMap<Timer, Instant>,
    /// A session kept while no connection exists (Idle/Active/Connect).
    idle_session: Option<Session>,
    stopping: Option<oneshot::Sender<()>>,
    /// A stop with `withdraw_first` is streaming its withdrawals: once the Adj-RIB-Out has
    /// nothing left to send, the session is stopped with a Cease (after [`StopFence`]).
    withdrawing_then_stop: bool,
    /// The families of the session, when it negotiated enhanced route refresh (RFC 7313).
    fence_families: Option<Vec<WireFamily>>,
    /// A stop's withdrawals are written; the Cease waits for the peer's EoRRs.
    stop_fence: Option<StopFence>,
    /// When the current stop's grace time ends (bounds the fence and the graceful close).
    stop_deadline: Option<Instant>,
    /// Route refresh requests sent and not yet answered by an EoRR, per family (with enhanced
    /// route refresh): the fence waits for its own answer, not an earlier request's.
    refresh_outstanding: BTreeMap<WireFamily, u32>,
    jitter_seed: u64,
    /// Whether the current session has sent everything the Adj-RIB-Out had (End-of-RIB included).
    synced: bool,
    /// A generation reconciled while Established whose first UPDATE is not yet written, and
    /// when it was reconciled: for the publish-to-wire latency log line.
    first_write_pending: Option<(u64, Instant)>,
    /// The session state last published.
    session_state: State,
    /// Failed outbound connection attempts, summarised for the log.
    connect_failures: ConnectFailures,
    /// Last field: dropped after `status`, it tells the engine the task ended.
    _end_report: EndReport,
}

impl PeerDriver {
    fn new(
        spec: PeerSpec,
        routes: watch::Receiver<Arc<LocationRoutes>>,
        status: watch::Sender<PeerStatus>,
        reports: ReportTo,
    ) -> PeerDriver {
        let jitter_seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |elapsed| elapsed.as_nanos() as u64)
            ^ u64::from(spec.remote.port());
        let session = Session::new(spec.session.clone(), jitter_seed);
        let end_report = EndReport {
            peer: spec.name.clone(),
            reports: reports.clone(),
        };
        PeerDriver {
            spec,
            routes,
            status,
            reports,
            reported: None,
            rib: AdjRibOut::new(),
            written: RibCounters::default(),
            written_at_trim: 0,
            applied: Arc::new(LocationRoutes::default()),
            applied_attributes: Vec::new(),
            interned: HashMap::new(),
            connection: None,
            closing_connections: tokio::task::JoinSet::new(),
            parked: None,
            connecting: None,
            idle_timers: BTreeMap::new(),
            idle_session: Some(session),
            connect_failures: ConnectFailures::default(),
            stopping: None,
            jitter_seed,
            synced: false,
            first_write_pending: None,
            withdrawing_then_stop: false,
            fence_families: None,
            stop_fence: None,
            stop_deadline: None,
            refresh_outstanding: BTreeMap::new(),
            session_state: State::Idle,
            _end_report: end_report,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<PeerCommand>) {
        self.reconcile();
        self.feed_idle(Input::ManualStart);
        loop {
            if self.stopping.is_some() && self.connection.is_none() {
                break;
            }
            while self.closing_connections.try_join_next().is_some() {}
            self.pull_updates();
            self.stop_when_withdrawn();
            let deadline = self.next_deadline();
            let want_write = self
                .connection
                .as_ref()
                .is_some_and(|connection| !connection.output.is_empty());
            let closing_flushed = self
                .connection
                .as_ref()
                .is_some_and(|connection| connection.closing && connection.output.is_empty());
            if closing_flushed {
                self.drop_connection("closed");
                continue;
            }
            let has_connection = self.connection.is_some();
            let has_parked = self.parked.is_some();
            let connecting = self.connecting.is_some();
            let Self {
                connection,
                parked,
                connecting: connect_future,
                routes,
                ..
            } = &mut self;
            let (live_reader, live_writer) = split_halves(connection.as_mut());
            let (parked_reader, _) = split_halves(parked.as_mut());
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => {
                        self.on_command_shutdown(false);
                    }
                },
                changed = routes.changed() => {
                    if changed.is_ok() {
                        self.reconcile();
                    } else {
                        // The engine is gone: keep what was sent (graceful restart).
                        self.on_command_shutdown(false);
                    }
                },
                read = read_some(live_reader), if has_connection => self.on_read(read, false),
                read = read_some(parked_reader), if has_parked => self.on_read(read, true),
                written = write_some(live_writer), if want_write => self.on_written(written),
                connected = poll_connect(connect_future), if connecting => {
                    self.connecting = None;
                    self.on_connected(connected);
                },
                () = sleep_until(deadline), if deadline.is_some() => self.on_timers(),
            }
            self.publish_status();
        }
        let closing = std::mem::take(&mut self.closing_connections);
        let wait = self.stop_deadline.map_or(CLOSE_LIMIT, |deadline| {
            CLOSE_LIMIT.min(deadline.saturating_duration_since(Instant::now()))
        });
        let _ = tokio::time::timeout(wait, closing.join_all()).await;
        if let Some(done) = self.stopping.take() {
            let _ = done.send(());
        }
        self.publish_status();
    }

    // ----- inputs --------------------------------------------------------------------------

    fn on_command(&mut self, command: PeerCommand) {
        match command {
            PeerCommand::Inbound(stream) => self.on_inbound(stream),
            PeerCommand::Reconfigure(spec) => self.reconfigure(*spec),
            PeerCommand::RequestRouteRefresh => {
                for family in [WireFamily::Ipv4Unicast, WireFamily::Ipv6Unicast] {
                    self.request_route_refresh(family);
                }
            }
            PeerCommand::Shutdown {
                withdraw_first,
                deadline,
                done,
            } => {
                self.stopping = Some(done);
                self.stop_deadline = Some(deadline);
                self.on_command_shutdown(withdraw_first);
            }
        }
    }

    fn reconfigure(&mut self, spec: PeerSpec) {
        let context_changed = spec.route_context != self.spec.route_context;
        self.spec = spec;
        if context_changed {
            // Re-translate every route: a reconcile from nothing announces each prefix with its
            // new attributes; prefixes whose attributes are unchanged are not re-sent.
            self.applied = Arc::new(LocationRoutes::default());
            self.applied_attributes.clear();
            self.reconcile();
        }
    }

    fn on_inbound(&mut self, stream: TcpStream) {
        if self.stopping.is_some() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let mut session = Session::new(self.spec.session.clone(), self.next_seed());
        let now = Instant::now();
        let mut outputs = session.handle(Input::ManualStart, now);
        outputs.extend(session.handle(Input::TcpConnected(Direction::Inbound), now));
        let mut connection = Connection::new(session, stream);
        let established = self.is_established();
        let pending_outbound = self.connection.is_some() && !established;
        if pending_outbound {
            info!(peer = %self.spec.name, "connection collision: parking the inbound connection (RFC 4271 §6.8)");
            connection.apply_outputs_detached(outputs);
            self.parked = Some(connection);
            self.try_resolve_collision();
            return;
        }
        if established {
            info!(peer = %self.spec.name, "new inbound connection while Established: the peer restarted, replacing the session (RFC 4724 §4.2)");
            self.drop_connection("replaced by a new connection from the peer");
        }
        self.connecting = None;
        self.idle_session = None;
        self.idle_timers.clear();
        self.connection = Some(connection);
        self.apply_outputs(outputs, false);
    }

    fn on_connected(&mut self, connected: Result<TcpStream, sockopt::SockoptError>) {
        match connected {
            Ok(stream) => {
                if self.connection.is_some() {
                    // An inbound connection won meanwhile.
                    return;
                }
                let _ = stream.set_nodelay(true);
                let Some(session) = self.idle_session.take() else {
                    return;
                };
                debug!(peer = %self.spec.name, "outbound connection established");
                if let Some(line) = self.connect_failures.connected(Instant::now()) {
                    info!(peer = %self.spec.name, "{line}");
                }
                self.connection = Some(Connection::new(session, stream));
                self.feed(Input::TcpConnected(Direction::Outbound), false);
            }
            Err(error) => {
                debug!(peer = %self.spec.name, %error, "outbound connection failed");
                let error = format!("connect to {}: {error}", self.spec.remote);
                if let Some(line) = self.connect_failures.failed(&error, Instant::now()) {
                    warn!(peer = %self.spec.name, "{line}");
                }
                self.set_error(error);
                self.feed_idle(Input::TcpFailed);
            }
        }
    }

    fn on_read(&mut self, read: std::io::Result<usize>, parked: bool) {
        match read {
            Ok(0) | Err(_) => {
                if let Err(error) = &read {
                    self.set_error(format!("read: {error}"));
                }
                self.feed(Input::TcpClosed, parked);
                if parked {
                    self.parked = None;
                } else {
                    self.drop_connection("closed by the peer");
                }
            }
            Ok(_) => loop {
                let slot = if parked {
                    self.parked.as_mut()
                } else {
                    self.connection.as_mut()
                };
                let Some(connection) = slot else { return };
                let max_len = connection.session.max_message_len();
                match next_frame(&connection.input, max_len) {
                    Ok(Frame::Complete { length }) => {
                        let message = connection.input.split_to(length).freeze();
                        self.feed(Input::Message(message), parked);
                    }
                    Ok(Frame::NeedMore { .. }) => return,
                    Err(error) => {
                        self.feed(Input::ReceiveError(error), parked);
                        return;
                    }
                }
            },
        }
    }

    fn on_written(&mut self, written: std::io::Result<usize>) {
        match written {
            Ok(count) => {
                let Some(connection) = self.connection.as_mut() else {
                    return;
                };
                let (message_written, counters) = connection.written(count);
                self.written.updates += counters.updates;
                self.written.announced += counters.announced;
                self.written.withdrawn += counters.withdrawn;
                if counters.updates > 0
                    && let Some((generation, since)) = self.first_write_pending.take()
                {
                    info!(
                        peer = %self.spec.name,
                        generation,
                        publish_to_wire_us = since.elapsed().as_micros() as u64,
                        "first UPDATE of the generation written"
                    );
                }
                if message_written {
                    self.feed(Input::SendProgress, false);
                }
                self.update_synced();
            }
            Err(error) => {
                self.set_error(format!("write: {error}"));
                self.feed(Input::TcpClosed, false);
                self.drop_connection("write failed");
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<Timer> = self
            .idle_timers
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(timer, _)| *timer)
            .collect();
        for timer in expired {
            self.idle_timers.remove(&timer);
            self.feed_idle(Input::TimerExpired(timer));
        }
        for parked in [false, true] {
            let slot = if parked {
                self.parked.as_mut()
            } else {
                self.connection.as_mut()
            };
            let Some(connection) = slot else { continue };
            let expired: Vec<Timer> = connection
                .timers
                .iter()
                .filter(|(_, deadline)| **deadline <= now)
                .map(|(timer, _)| *timer)
                .collect();
            for timer in expired {
                if let Some(connection) = if parked {
                    self.parked.as_mut()
                } else {
                    self.connection.as_mut()
                } {
                    connection.timers.remove(&timer);
                }
                self.feed(Input::TimerExpired(timer), parked);
            }
        }
    }

    // ----- session plumbing ----------------------------------------------------------------

    /// Feeds the session of the live (or parked) connection and carries out its outputs.
    fn feed(&mut self, input: Input, parked: bool) {
        let now = Instant::now();
        let outputs = {
            let slot = if parked {
                self.parked.as_mut()
            } else {
                self.connection.as_mut()
            };
            match slot {
                Some(connection) => connection.session.handle(input, now),
                None => {
                    if parked {
                        return;
                    }
                    return self.feed_idle(input);
                }
            }
        };
        self.apply_outputs(outputs, parked);
    }

    /// Feeds the session that exists while no connection does (Idle / Connect / Active).
    fn feed_idle(&mut self, input: Input) {
        if self.stopping.is_some() {
            return;
        }
        let Some(session) = self.idle_session.as_mut() else {
            return;
        };
        let outputs = session.handle(input, Instant::now());
        for output in outputs {
            match output {
                Output::Connect => self.start_connect(),
                Output::SetTimer(timer, deadline) => {
                    self.idle_timers.insert(timer, deadline);
                }
                Output::CancelTimer(timer) => {
                    self.idle_timers.remove(&timer);
                }
                Output::StateChanged { to, .. } => self.set_state(to),
                other => debug!(peer = %self.spec.name, ?other, "output without a connection"),
            }
        }
    }

    fn apply_outputs(&mut self, outputs: Vec<Output>, parked: bool) {
        for output in outputs {
            match output {
                Output::Connect => self.start_connect(),
                Output::CloseConnection => {
                    if let Some(connection) = self.slot(parked) {
                        connection.closing = true;
                    }
                }
                Output::AbortConnection { notification } => {
                    let name = self.spec.name.clone();
                    if let Some(connection) = self.slot(parked) {
                        let discarded = connection.abort(notification);
                        warn!(peer = %name, discarded_octets = discarded, "connection reset: the peer took no message for the send hold time (RFC 9687)");
                    }
                }
                Output::Send(bytes) => {
                    if let Some(connection) = self.slot(parked) {
                        connection.queue(&bytes, RibCounters::default());
                    }
                }
                Output::SetTimer(timer, deadline) => {
                    if let Some(connection) = self.slot(parked) {
                        connection.timers.insert(timer, deadline);
                    }
                }
                Output::CancelTimer(timer) => {
                    if let Some(connection) = self.slot(parked) {
                        connection.timers.remove(&timer);
                    }
                }
                Output::StateChanged { from, to } => {
                    info!(peer = %self.spec.name, ?from, ?to, parked, "session state");
                    if !parked {
                        self.set_state(to);
                    }
                }
                Output::OpenReceived { router_id, asn } => {
                    if let Some(connection) = self.slot(parked) {
                        connection.remote_identity = Some((router_id, asn));
                    }
                    self.try_resolve_collision();
                }
                Output::Established(negotiated) => {
                    if parked {
                        // Resolved on OPEN already; a parked session never reaches here.
                        continue;
                    }
                    self.rib.session_established(&negotiated);
                    // The session sends a refresh request only with route refresh negotiated;
                    // the BoRR/EoRR answer needs enhanced route refresh.
                    self.fence_families = (negotiated.route_refresh
                        && negotiated.enhanced_route_refresh)
                        .then(|| negotiated.families.clone());
                    self.refresh_outstanding.clear();
                    self.synced = false;
                    let since = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |elapsed| elapsed.as_secs());
                    self.status.send_modify(|status| {
                        status.established = true;
                        status.established_since = Some(since);
                        status.last_error = None;
                    });
                    info!(
                        peer = %self.spec.name,
                        remote_asn = negotiated.remote_asn,
                        remote_router_id = %negotiated.remote_router_id,
                        families = ?negotiated.families,
                        "session up: Established"
                    );
                }
                Output::SessionDown(reason) => {
                    if !parked {
                        let why = describe_down_reason(&reason, &self.words(parked, false));
                        info!(peer = %self.spec.name, reason = %why, "session down");
                        self.rib.session_down();
                        self.synced = false;
                        self.set_error(why);
                        self.status.send_modify(|status| {
                            status.established = false;
                            status.generation_synced = None;
                            status.version_synced = None;
                        });
                    }
                }
                Output::NotificationSent(notification) => {
                    let text = describe(&notification, &self.words(parked, true));
                    warn!(peer = %self.spec.name, code = notification.code, subcode = notification.subcode, "NOTIFICATION sent: {text}");
                }
                Output::NotificationReceived(notification) => {
                    let text = describe(&notification, &self.words(parked, false));
                    warn!(peer = %self.spec.name, code = notification.code, subcode = notification.subcode, "NOTIFICATION received: {text}");
                }
                Output::RouteRefreshRequested(family) => {
                    info!(peer = %self.spec.name, ?family, "route refresh requested: re-sending");
                    self.rib.route_refresh(family);
                    self.synced = false;
                }
                Output::RouteRefreshDemarcation { family, begin } => {
                    debug!(peer = %self.spec.name, ?family, begin, "route refresh demarcation");
                    if !begin {
                        if let Some(outstanding) = self.refresh_outstanding.get_mut(&family) {
                            *outstanding = outstanding.saturating_sub(1);
                        }
                        if let Some(fence) = self.stop_fence.as_mut()
                            && let Some(awaited) = fence.awaiting.get_mut(&family)
                        {
                            *awaited = awaited.saturating_sub(1);
                            if *awaited == 0 {
                                fence.awaiting.remove(&family);
                            }
                        }
                    }
                }
                Output::RoutesReceived(summary) => {
                    self.status.send_modify(|status| {
                        status.updates_received += 1;
                        status.prefixes_received_ipv4 += summary.announced[0];
                        status.prefixes_received_ipv6 += summary.announced[1];
                        status.withdrawals_received += summary.withdrawn[0] + summary.withdrawn[1];
                    });
                }
            }
        }
    }

    /// What the words of a NOTIFICATION need: who sent it and each side's AS.
    fn words(&self, parked: bool, sent: bool) -> NotificationContext {
        let connection = if parked {
            self.parked.as_ref()
        } else {
            self.connection.as_ref()
        };
        NotificationContext {
            sent,
            local_asn: self.spec.session.local_asn,
            remote_asn: self.spec.session.remote_asn,
            peer_open_asn: connection.and_then(|connection| connection.session.peer_open_asn()),
        }
    }

    fn slot(&mut self, parked: bool) -> Option<&mut Connection> {
        if parked {
            self.parked.as_mut()
        } else {
            self.connection.as_mut()
        }
    }

    /// RFC 4271 §6.8: with both connections' OPENs known (or the live one's), keep the
    /// connection initiated by the speaker with the higher BGP Identifier.
    fn try_resolve_collision(&mut self) {
        let (Some(live), Some(parked)) = (self.connection.as_ref(), self.parked.as_ref()) else {
            return;
        };
        let identity = live.remote_identity.or(parked.remote_identity);
        let Some((remote_router_id, remote_asn)) = identity else {
            return;
        };
        let winner = resolve_collision(
            self.spec.session.router_id,
            self.spec.session.local_asn,
            remote_router_id,
            remote_asn,
        );
        let live_direction = live.session.direction();
        if Some(winner) == live_direction {
            info!(peer = %self.spec.name, "collision: keeping our outbound connection");
            self.feed(Input::CollisionLost, true);
            self.parked = None;
        } else {
            info!(peer = %self.spec.name, "collision: keeping the peer's inbound connection");
            self.feed(Input::CollisionLost, false);
            self.connection = self.parked.take();
            self.rib.session_down();
        }
    }

    fn start_connect(&mut self) {
        if self.spec.session.passive || self.connecting.is_some() || self.connection.is_some() {
            return;
        }
        let remote = self.spec.remote;
        let local = self
            .spec
            .local_address
            .map(|address| SocketAddr::new(address, 0));
        let security = self.spec.security.clone();
        self.connecting = Some(Box::pin(async move {
            sockopt::connect(remote, local, &security, CONNECT_TIMEOUT).await
        }));
    }

    fn drop_connection(&mut self, why: &str) {
        if let Some(connection) = self.connection.take() {
            debug!(peer = %self.spec.name, why, "connection dropped");
            if let Some((reader, writer)) = connection.into_halves() {
                self.closing_connections
                    .spawn(close_gracefully(reader, writer, CLOSE_LIMIT));
            }
            if self.is_established_status() {
                self.rib.session_down();
            }
            self.status.send_modify(|status| {
                status.established = false;
                status.generation_synced = None;
                status.version_synced = None;
            });
        }
        self.synced = false;
        if self.stopping.is_some() {
            return;
        }
        // A fresh session takes over: it retries (active) or waits (passive).
        let mut session = Session::new(self.spec.session.clone(), self.next_seed());
        let now = Instant::now();
        let outputs = session.handle(Input::ManualStart, now);
        self.idle_session = Some(session);
        self.idle_timers.clear();
        // Do not reconnect at once: arm the retry timer via a TcpFailed on the new session.
        let outputs: Vec<Output> = outputs
            .into_iter()
            .filter(|output| !matches!(output, Output::Connect))
            .collect();
        for output in outputs {
            if let Output::SetTimer(timer, deadline) = output {
                self.idle_timers.insert(timer, deadline);
            }
        }
        if !self.spec.session.passive {
            self.feed_idle(Input::TcpFailed);
        }
        self.set_state(State::Active);
    }

    // ----- routes --------------------------------------------------------------------------

    /// Walks the applied and the newly published route lists and tells the Adj-RIB-Out only
    /// what differs.
    fn reconcile(&mut self) {
        let reconcile_started = Instant::now();
        let new = self.routes.borrow_and_update().clone();
        // A stopping peer sends no new routes (its withdrawals may still be streaming).
        if Arc::ptr_eq(&new, &self.applied) || self.stopping.is_some() {
            return;
        }
        let new_attributes =
            reconcile::family_attributes(&new, &self.spec.route_context, &mut self.interned);
        let carried = Carried::of(&self.spec.session.families);
        let (unencodable, encode_error) =
            reconcile::count_unencodable(&new, &new_attributes, carried);
        reconcile::diff(
            Side {
                routes: &self.applied,
                attributes: &self.applied_attributes,
            },
            Side {
                routes: &new,
                attributes: &new_attributes,
            },
            carried,
            &mut self.rib,
        );
        debug!(peer = %self.spec.name, generation = new.generation, routes = new.routes.len(), in_rib = self.rib.len(), unencodable, "reconciled");
        let previous = self.status.borrow().routes_unencodable;
        if unencodable > 0 && unencodable != previous {
            let first = encode_error.clone().unwrap_or_default();
            warn!(peer = %self.spec.name, unencodable, %first, "routes cannot be encoded for this peer: they are not sent, and the peer does not hold the generation");
        } else if unencodable == 0 && previous > 0 {
            info!(peer = %self.spec.name, "every route can be encoded for this peer again");
        }
        let (ipv4, ipv6) = new.count_by_family();
        let generation = new.generation;
        self.applied = new;
        self.applied_attributes = new_attributes;
        reconcile::release_unused(&mut self.interned);
        self.synced = false;
        if self.rib.has_pending() && self.is_established() {
            self.first_write_pending = Some((generation, reconcile_started));
        }
        self.reports
            .reconcile_duration
            .observe(reconcile_started.elapsed().as_secs_f64());
        self.status.send_modify(|status| {
            status.generation_desired = generation;
            status.routes_desired_ipv4 = ipv4;
            status.routes_desired_ipv6 = ipv6;
            status.routes_unencodable = unencodable;
            status.encode_error = encode_error.map(|first| {
                format!("{unencodable} routes cannot be encoded for this peer; first: {first}")
            });
        });
    }

    /// Moves UPDATEs from the Adj-RIB-Out into the output buffer while there is room.
    fn pull_updates(&mut self) {
        if !self.is_established() {
            return;
        }
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if connection.closing {
            return;
        }
        while connection.output.len() < OUTPUT_HIGH_WATER {
            // One UPDATE per pull: its prefixes are counted as sent once its last octet is
            // written, so the counters follow the socket message by message.
            let before = self.rib.counters();
            match self.rib.next_update(1) {
                Some(update) => {
                    let after = self.rib.counters();
                    connection.queue(
                        &update,
                        RibCounters {
                            updates: after.updates - before.updates,
                            announced: after.announced - before.announced,
                            withdrawn: after.withdrawn - before.withdrawn,
                            unencodable: 0,
                        },
                    );
                }
                None => break,
            }
        }
        self.update_synced();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let connection_deadlines = [self.connection.as_ref(), self.parked.as_ref()]
            .into_iter()
            .flatten()
            .flat_map(|connection| connection.timers.values().copied());
        self.idle_timers
            .values()
            .copied()
            .chain(connection_deadlines)
            .chain(self.stop_fence.as_ref().map(|fence| fence.until))
            .min()
    }

    fn next_seed(&mut self) -> u64 {
        self.jitter_seed = self
            .jitter_seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.jitter_seed
    }
}

#[cfg(test)]
mod tests;
