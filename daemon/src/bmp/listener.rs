//! The BMP station's async shell: its listeners, one task per router connection, and the
//! station task that owns the [`Station`] and publishes its view.
//!
//! Owns: the sockets, the tasks, the bounded queue between them, the clock readings handed to
//! the core, the log lines of raised and cleared findings, the metrics sample (findings by kind
//! and own route).
//! Must not touch: the engine (it only reads the engine's watch channels), the BGP speaker.
//!
//! A router's connection task reads, frames and decodes, then `try_send`s each event into the
//! station's queue. A full queue drops the message (counted) and closes that connection: its
//! state would be wrong from then on, and the router reconnects and sends its tables again.
//! A stream that is not BMP closes its connection only. Nothing here is awaited by the engine
//! or the peers: a slow or hostile feed costs the station, never the speaker.
//!
//! A connection holds one of the `max_routers` slots, so none may hold it for nothing: one that
//! sends no Initiation (RFC 7854 §4.3: the first message) within [`INITIATION_TIMEOUT`] of
//! the accept is closed, and accepted sockets have TCP keepalive (`tcp_keepalive_seconds`), so
//! a router that vanished (powered off, a half-open connection) is noticed and its slot and
//! state freed. There is no idle timeout once a router has started: BMP has no keepalive of its
//! own, and a synchronised router may rightly say nothing for hours.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use topologyd_api::VisibilityView;
use topologyd_api::view::{BmpRouterView, FindingKindView, FindingView, RouterHoldsView};
use topologyd_config::daemon::BmpConfig;
use tracing::{info, warn};

use super::codec::{BmpEvent, Decoder, split_message};
use super::findings::{Expectation, Finding, FindingChange, FindingKind};
use super::station::{RouterId, RoutesRevision, Station};
use crate::announce::LocationRoutes;
use crate::engine::VisibilityInputs;
use crate::metrics::{BmpCounters, BmpSample, FindingSeries, Metrics};

/// How often findings are evaluated and the view published.
pub const EVALUATION_INTERVAL: Duration = Duration::from_millis(500);
/// Bytes read from a router at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How long after the accept a connection has to send its Initiation before it is closed.
pub const INITIATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Keepalive probes after the idle time: one every 10 s, and 3 unanswered close the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Why the station did not start.
#[derive(Debug, thiserror::Error)]
pub enum BmpStartError {
    #[error("cannot listen for BMP on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the BMP station's thread: {source}")]
    Thread { source: std::io::Error },
}

/// What the rest of the daemon keeps of the running station.
#[derive(Debug, Clone)]
pub struct StationHandle {
    /// The `/v1/visibility` document, refreshed at every evaluation.
    pub view: watch::Receiver<Arc<VisibilityView>>,
    /// The addresses bound (a port 0 in the configuration becomes the kernel's choice).
    pub listening: Vec<SocketAddr>,
}

/// The view of a daemon without `[bmp]`.
pub fn disabled_view() -> VisibilityView {
    VisibilityView {
        enabled: false,
        routers: Vec::new(),
        findings: Vec::new(),
        held: Vec::new(),
        time_unix_ms: unix_ms(),
        age_ms: None,
        generation: None,
        routes_version: None,
        judged_since_unix_ms: None,
        settle_ms: None,
    }
}

/// The view `GET /v1/visibility` answers now, with its age: `None` when the station has stopped
/// (its thread ended and dropped the view's sender), whose last view must not be served as if
/// it were current. A disabled view is always served (there is no station to stop).
pub fn served_view(
    view: &watch::Receiver<Arc<VisibilityView>>,
    now_ms: u64,
) -> Option<VisibilityView> {
    let current = Arc::clone(&view.borrow());
    if current.enabled && view.has_changed().is_err() {
        return None;
    }
    let mut served = (*current).clone();
    served.age_ms = Some(now_ms.saturating_sub(served.time_unix_ms));
    Some(served)
}

/// Tells the station a connection ended when it is dropped, however its task ends: normally,
/// on shutdown, or by a panic (in the decoder, say) that would otherwise leave the router's
/// state looking connected and synchronised for good.
struct ClosedOnDrop {
    router: RouterId,
    sender: mpsc::Sender<StationInput>,
}

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        let closed = StationInput::Closed(self.router);
        let Err(mpsc::error::TrySendError::Full(closed)) = self.sender.try_send(closed) else {
            return;
        };
        // The queue is full: wait for room on the runtime rather than lose the close.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let sender = self.sender.clone();
            runtime.spawn(async move {
                let _ = sender.send(closed).await;
            });
        }
    }
}

/// What a connection task tells the station task.
#[derive(Debug)]
enum StationInput {
    Connected(RouterId, IpAddr),
    Event(RouterId, BmpEvent),
    Closed(RouterId),
}

/// What the station needs from the rest of the daemon.
#[derive(Debug)]
pub struct StationInputs {
    pub local_asn: u32,
    pub router_id: std::net::Ipv4Addr,
    pub routes: watch::Receiver<Arc<LocationRoutes>>,
    pub engine: watch::Receiver<VisibilityInputs>,
    pub metrics: Metrics,
    pub shutdown: watch::Receiver<bool>,
}

/// The nice value of the station's thread: the lowest priority there is. Under load the
/// kernel weighs it 15 against 1,024 for each of the speaker's threads (about 1.5 % of a core
/// the speaker wants), so a busy feed waits for idle CPU instead of slowing announcements; the
/// router's TCP window holds what the station has not read yet.
pub const STATION_NICE: i32 = 19;

/// The most queued inputs an evaluation applies first (a bound, so that a feed that never
/// stops cannot hold the evaluation off).
const EVALUATION_DRAIN_LIMIT: usize = 65_536;

/// Binds the listeners, then runs the accept loops, the connection tasks and the station task
/// on a thread of their own (with its own single-threaded runtime, at [`STATION_NICE`]): a
/// busy feed competes with the speaker neither on the daemon's runtime nor for the CPU.
pub fn start(config: &BmpConfig, inputs: StationInputs) -> Result<StationHandle, BmpStartError> {
    let mut listeners = Vec::new();
    let mut listening = Vec::new();
    for address in &config.listen {
        let bind_error = |source| BmpStartError::Bind {
            address: *address,
            source,
        };
        let listener = std::net::TcpListener::bind(address).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        info!(address = %bound, "BMP station listening");
        listening.push(bound);
        listeners.push(listener);
    }
    let (view_sender, view) = watch::channel(Arc::new(VisibilityView {
        enabled: true,
        ..disabled_view()
    }));
    let config = config.clone();
    std::thread::Builder::new()
        .name("bmp-station".into())
        .spawn(move || run_station_thread(config, listeners, inputs, view_sender))
        .map_err(|source| BmpStartError::Thread { source })?;
    Ok(StationHandle { view, listening })
}

fn run_station_thread(
    config: BmpConfig,
    listeners: Vec<std::net::TcpListener>,
    inputs: StationInputs,
    view: watch::Sender<Arc<VisibilityView>>,
) {
    // PRIO_PROCESS with no pid is the calling thread on Linux.
    if let Err(error) = rustix::process::setpriority_process(None, STATION_NICE) {
        warn!(%error, "cannot lower the BMP station's priority");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            warn!(%error, "cannot start the BMP station's runtime; the station is off");
            return;
        }
    };
    runtime.block_on(async move {
        let (sender, receiver) = mpsc::channel(config.queue_messages);
        let counters = inputs.metrics.bmp_counters();
        let routers = Arc::new(Semaphore::new(config.max_routers));
        let next_router = Arc::new(std::sync::atomic::AtomicU64::new(1));
        for listener in listeners {
            let listener = match TcpListener::from_std(listener) {
                Ok(listener) => listener,
                Err(error) => {
                    warn!(%error, "cannot hand a BMP listener to the station");
                    continue;
                }
            };
            let accept = AcceptLoop {
                allow: config.allow.clone(),
                keepalive_idle: (config.tcp_keepalive_seconds > 0)
                    .then(|| Duration::from_secs(u64::from(config.tcp_keepalive_seconds))),
                initiation_timeout: INITIATION_TIMEOUT,
                routers: Arc::clone(&routers),
                next_router: Arc::clone(&next_router),
                sender: sender.clone(),
                counters: Arc::clone(&counters),
                shutdown: inputs.shutdown.clone(),
            };
            tokio::spawn(accept.run(listener));
        }
        drop(sender);
        let mut station = Station::new(u64::from(config.settle_seconds) * 1000);
        station.max_routes_per_router = config.max_routes_per_router;
        station.max_peers_per_router = config.max_peers_per_router;
        let task = StationTask {
            station,
            local_asn: inputs.local_asn,
            router_id: inputs.router_id,
            view,
            metrics: inputs.metrics,
        };
        task.run(receiver, inputs.routes, inputs.engine, inputs.shutdown)
            .await;
    });
}

struct AcceptLoop {
    allow: Vec<ipnet::IpNet>,
    /// Idle time before keepalive probes (`None`: no keepalive).
    keepalive_idle: Option<Duration>,
    initiation_timeout: Duration,
    routers: Arc<Semaphore>,
    next_router: Arc<std::sync::atomic::AtomicU64>,
    sender: mpsc::Sender<StationInput>,
    counters: Arc<BmpCounters>,
    shutdown: watch::Receiver<bool>,
}

impl AcceptLoop {
    async fn run(mut self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = self.shutdown.wait_for(|stop| *stop) => return,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "BMP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let source = canonical(remote.ip());
            if !self.allow.iter().any(|prefix| prefix.contains(&source)) {
                self.counters.refused_allow.fetch_add(1, Ordering::Relaxed);
                warn!(%remote, "BMP connection from outside `allow` closed");
                continue;
            }
            let Ok(permit) = Arc::clone(&self.routers).try_acquire_owned() else {
                self.counters
                    .refused_max_routers
                    .fetch_add(1, Ordering::Relaxed);
                warn!(%remote, "BMP connection closed: max_routers reached");
                continue;
            };
            if let Some(idle) = self.keepalive_idle
                && let Err(error) = enable_keepalive(&stream, idle)
            {
                warn!(%remote, %error, "cannot turn on TCP keepalive on a BMP connection");
            }
            let router = self.next_router.fetch_add(1, Ordering::Relaxed);
            let connection = Connection {
                router,
                remote,
                initiation_timeout: self.initiation_timeout,
                initiation_deadline: tokio::time::Instant::now() + self.initiation_timeout,
                sender: self.sender.clone(),
                counters: Arc::clone(&self.counters),
            };
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                connection.run(stream, shutdown).await;
                drop(permit);
            });
        }
    }
}

/// Turns on TCP keepalive on a router's connection: probes after `idle` without traffic, then
/// every [`KEEPALIVE_INTERVAL`]; [`KEEPALIVE_RETRIES`] unanswered and reads fail, which ends
/// the connection and its router's state.
fn enable_keepalive(stream: &TcpStream, idle: Duration) -> std::io::Result<()> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    socket2::SockRef::from(stream).set_tcp_keepalive(&keepalive)
}

/// An IPv4-mapped IPv6 source as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

struct Connection {
    router: RouterId,
    remote: SocketAddr,
    initiation_timeout: Duration,
    /// The accept plus [`Connection::initiation_timeout`]: the Initiation must have been read
    /// by then, however long the station's queue kept the connection waiting.
    initiation_deadline: tokio::time::Instant,
    sender: mpsc::Sender<StationInput>,
    counters: Arc<BmpCounters>,
}

/// Why a connection ended.
enum Ending {
    Closed,
    Garbage(String),
    /// No Initiation within the bound after the accept.
    NoInitiation,
    /// A read failed: reset, or keepalive found the router gone.
    Lost(String),
    QueueFull,
    Shutdown,
}

impl Connection {
    async fn run(self, mut stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
        let connected = self.sender.send(StationInput::Connected(
            self.router,
            canonical(self.remote.ip()),
        ));
        match tokio::time::timeout_at(self.initiation_deadline, connected).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                // The station's queue stayed full past the bound: the slot is given back.
                self.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                warn!(remote = %self.remote, router = self.router, "BMP station queue full until the Initiation bound; connection closed");
                return;
            }
        }
        let _closed = ClosedOnDrop {
            router: self.router,
            sender: self.sender.clone(),
        };
        info!(remote = %self.remote, router = self.router, "BMP router connected");
        let ending = tokio::select! {
            ending = self.read(&mut stream) => ending,
            _ = shutdown.wait_for(|stop| *stop) => Ending::Shutdown,
        };
        match &ending {
            Ending::Closed | Ending::Shutdown => {
                info!(remote = %self.remote, router = self.router, "BMP router disconnected");
            }
            Ending::Garbage(error) => {
                self.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                warn!(remote = %self.remote, router = self.router, %error, "BMP stream unreadable; connection closed");
            }
            Ending::NoInitiation => {
                self.counters.stream_errors.fetch_add(1, Ordering::Relaxed);
                warn!(remote = %self.remote, router = self.router, timeout_seconds = self.initiation_timeout.as_secs_f64(), "BMP connection sent no Initiation in time; closed");
            }
            Ending::Lost(error) => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                warn!(remote = %self.remote, router = self.router, %error, "BMP connection lost; the router's state is dropped");
            }
            Ending::QueueFull => {
                warn!(remote = %self.remote, router = self.router, "BMP station queue full; message dropped and connection closed (the router re-sends on reconnect)");
            }
        }
        drop(stream);
    }

    async fn read(&self, stream: &mut TcpStream) -> Ending {
        let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
        let initiation_deadline = self.initiation_deadline;
        let mut initiated = false;
        let mut decoder = Decoder::new();
        loop {
            loop {
                let message = match split_message(&mut buffer) {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(error) => return Ending::Garbage(error.to_string()),
                };
                let event = match decoder.decode(message) {
                    Ok(event) => event,
                    Err(error) => return Ending::Garbage(error.to_string()),
                };
                self.counters.messages.fetch_add(1, Ordering::Relaxed);
                initiated |= matches!(event, BmpEvent::Initiation { .. });
                if self
                    .sender
                    .try_send(StationInput::Event(self.router, event))
                    .is_err()
                {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    return Ending::QueueFull;
                }
            }
            buffer.reserve(READ_CHUNK_BYTES);
            let read = if initiated {
                stream.read_buf(&mut buffer).await
            } else {
                let bounded =
                    tokio::time::timeout_at(initiation_deadline, stream.read_buf(&mut buffer));
                match bounded.await {
                    Ok(read) => read,
                    Err(_) => return Ending::NoInitiation,
                }
            };
            match read {
                Ok(0) => return Ending::Closed,
                Ok(_) => {}
                Err(error) => return Ending::Lost(error.to_string()),
            }
        }
    }
}

struct StationTask {
    station: Station,
    local_asn: u32,
    router_id: std::net::Ipv4Addr,
    view: watch::Sender<Arc<VisibilityView>>,
    metrics: Metrics,
}

impl StationTask {
    async fn run(
        mut self,
        mut inputs: mpsc::Receiver<StationInput>,
        mut routes: watch::Receiver<Arc<LocationRoutes>>,
        mut engine: watch::Receiver<VisibilityInputs>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.refresh_expectation(&routes, &engine);
        let mut tick = tokio::time::interval(EVALUATION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(input) => self.apply(input),
                    None => return,
                },
                changed = routes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.refresh_expectation(&routes, &engine);
                }
                changed = engine.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    self.refresh_expectation(&routes, &engine);
                }
                _ = tick.tick() => {
                    // What the routers sent before the tick is judged in it: select! picks a
                    // ready branch at random, and a starved thread finds several ready at once.
                    for _ in 0..EVALUATION_DRAIN_LIMIT {
                        match inputs.try_recv() {
                            Ok(input) => self.apply(input),
                            Err(_) => break,
                        }
                    }
                    self.evaluate();
                }
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn apply(&mut self, input: StationInput) {
        match input {
            StationInput::Connected(router, address) => self.station.connect(router, address),
            StationInput::Event(router, event) => self.station.handle(router, event),
            StationInput::Closed(router) => self.station.disconnect(router),
        }
        for dropped in self.station.take_dropped() {
            warn!(
                router = dropped.router,
                address = %dropped.address,
                name = %dropped.name,
                bound = dropped.bound.as_str(),
                limit = dropped.limit,
                "BMP router over its per-router bound: its state is dropped and what it sends ignored until it reconnects"
            );
        }
    }

    fn refresh_expectation(
        &mut self,
        routes: &watch::Receiver<Arc<LocationRoutes>>,
        engine: &watch::Receiver<VisibilityInputs>,
    ) {
        let routes = Arc::clone(&routes.borrow());
        let inputs = engine.borrow().clone();
        let revision = RoutesRevision {
            generation: routes.generation,
            version: routes.version,
        };
        self.station.set_expectation_of(
            revision,
            Arc::new(Expectation::new(
                self.local_asn,
                self.router_id,
                inputs.topology.prefixes(),
                &routes,
            )),
        );
        self.station.set_vrps(inputs.vrps);
    }

    fn evaluate(&mut self) {
        let now = unix_ms();
        for change in self.station.evaluate(now) {
            match change {
                FindingChange::Raised(finding) => warn!(
                    kind = finding.key.kind.as_str(),
                    prefix = %finding.key.prefix,
                    router = %finding.key.router,
                    peer = %finding.key.peer.address,
                    peer_asn = finding.key.peer.asn,
                    as_path = ?finding.evidence.as_path,
                    detail = %finding.evidence.detail,
                    "visibility finding raised"
                ),
                FindingChange::Cleared(finding) => info!(
                    kind = finding.key.kind.as_str(),
                    prefix = %finding.key.prefix,
                    router = %finding.key.router,
                    peer = %finding.key.peer.address,
                    "visibility finding cleared"
                ),
            }
        }
        self.metrics.set_bmp(BmpSample {
            enabled: true,
            routers: self.station.router_count() as u64,
            routes: self.station.route_count() as u64,
            memory_bytes: self.station.approximate_bytes() as u64,
            routers_dropped_max_routes: self.station.routers_dropped_max_routes,
            routers_dropped_max_peers: self.station.routers_dropped_max_peers,
            findings: findings_series(&self.station),
        });
        self.view.send_replace(Arc::new(view(&self.station, now)));
    }
}

/// The findings metric's series: one per kind and own route with raised findings.
pub fn findings_series(station: &Station) -> Vec<FindingSeries> {
    station
        .finding_counts_by_own_route()
        .into_iter()
        .map(|((kind, prefix), count)| FindingSeries {
            kind: kind.as_str(),
            prefix: prefix.to_string(),
            count,
        })
        .collect()
}

/// The `/v1/visibility` document of the station now.
pub fn view(station: &Station, now_ms: u64) -> VisibilityView {
    // One entry per connection, whatever the routers call themselves.
    let held = station
        .holdings()
        .into_iter()
        .map(|holdings| RouterHoldsView {
            router: holdings.router,
            synchronised: holdings.synchronised,
            held: holdings.held.iter().map(ToString::to_string).collect(),
            missing: holdings.missing.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let judged = station.judged_revision();
    VisibilityView {
        enabled: true,
        routers: station
            .routers()
            .into_iter()
            .map(|router| BmpRouterView {
                name: router.name,
                address: router.address.to_string(),
                peers: router.peers as u64,
                routes: router.routes as u64,
                messages: router.messages,
            })
            .collect(),
        findings: station.findings().map(finding_view).collect(),
        held,
        time_unix_ms: now_ms,
        age_ms: None,
        generation: judged.map(|judged| judged.revision.generation),
        routes_version: judged.map(|judged| judged.revision.version),
        judged_since_unix_ms: judged.map(|judged| judged.since_ms),
        settle_ms: Some(station.settle_ms()),
    }
}

fn finding_view(finding: &Finding) -> FindingView {
    FindingView {
        kind: match finding.key.kind {
            FindingKind::ExactHijack => FindingKindView::ExactHijack,
            FindingKind::SubprefixHijack => FindingKindView::SubprefixHijack,
            FindingKind::NotVisible => FindingKindView::NotVisible,
            FindingKind::RpkiInvalid => FindingKindView::RpkiInvalid,
            FindingKind::UnexpectedPath => FindingKindView::UnexpectedPath,
        },
        prefix: finding.key.prefix.to_string(),
        router: finding.key.router.clone(),
        peer_address: finding.key.peer.address.to_string(),
        peer_asn: finding.key.peer.asn,
        rib: finding.evidence.rib.as_str().to_string(),
        as_path: finding.evidence.as_path.clone(),
        origin_asn: finding.evidence.origin_asn,
        expected_origin_asn: finding.evidence.expected_origin_asn,
        detail: finding.evidence.detail.clone(),
        first_seen_unix_ms: finding.first_seen_ms,
        last_seen_unix_ms: finding.last_seen_ms,
    }
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bmp::update::RouteKey;

    #[tokio::test]
    async fn a_connection_task_that_panics_still_closes_its_router() {
        let (sender, mut inputs) = mpsc::channel(1);
        // A full queue: the close must still arrive once there is room.
        sender
            .try_send(StationInput::Connected(7, IpAddr::from([127, 0, 0, 2])))
            .unwrap();
        let task = tokio::spawn(async move {
            let _closed = ClosedOnDrop { router: 7, sender };
            panic!("a decoder bug");
        });
        assert!(task.await.is_err());
        assert!(matches!(
            inputs.recv().await,
            Some(StationInput::Connected(7, _))
        ));
        assert!(matches!(inputs.recv().await, Some(StationInput::Closed(7))));
    }

    #[test]
    fn hijacked_more_specifics_of_one_prefix_are_one_findings_series_that_goes_when_they_clear() {
        use super::super::codec::{PeerKey, RibKind, SeenAttributes};
        use super::super::findings::OwnPrefix;

        let own: ipnet::IpNet = "203.0.113.0/24".parse().unwrap();
        let mut station = Station::new(0);
        station.set_expectation(Arc::new(Expectation {
            router_id: Some(std::net::Ipv4Addr::new(10, 0, 0, 1)),
            own_prefixes: vec![OwnPrefix {
                cidr: own,
                origin_asn: 64_500,
                announced_length: 24,
            }],
            announced: Default::default(),
            no_longer_sent: Default::default(),
        }));
        station.connect(1, IpAddr::from([127, 0, 0, 2]));
        let peer = PeerKey {
            address: IpAddr::from([127, 0, 0, 9]),
            asn: 64_666,
            bgp_id: std::net::Ipv4Addr::new(10, 0, 0, 9),
            distinguisher: 0,
        };
        let hijacks: Vec<ipnet::IpNet> = (0..4u8)
            .map(|index| format!("203.0.113.{}/26", index * 64).parse().unwrap())
            .collect();
        let routes =
            |announced: Vec<ipnet::IpNet>, withdrawn: Vec<ipnet::IpNet>| BmpEvent::Routes {
                peer,
                rib: RibKind::AdjRibInPre,
                withdrawn: withdrawn.into_iter().map(RouteKey::single).collect(),
                announced: announced.into_iter().map(RouteKey::single).collect(),
                attributes: Some(Arc::new(SeenAttributes {
                    as_path: vec![64_666],
                    origin_asn: Some(64_666),
                    ..SeenAttributes::default()
                })),
                end_of_rib: false,
            };
        station.handle(1, routes(hijacks.clone(), Vec::new()));
        station.evaluate(1_000);
        let metrics = Metrics::new();
        let render = |station: &Station| {
            metrics.set_bmp(BmpSample {
                enabled: true,
                findings: findings_series(station),
                routers_dropped_max_peers: 2,
                ..BmpSample::default()
            });
            metrics.render().unwrap()
        };
        let text = render(&station);
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("topologyd_visibility_findings{"))
            .collect();
        assert_eq!(
            series,
            vec![
                "topologyd_visibility_findings{kind=\"subprefix_hijack\",prefix=\"203.0.113.0/24\"} 4"
            ],
            "{text}"
        );
        station.handle(1, routes(Vec::new(), hijacks));
        station.evaluate(2_000);
        let text = render(&station);
        assert!(
            !text.contains("topologyd_visibility_findings{"),
            "no series once the findings cleared: {text}"
        );
        assert!(
            text.contains("# TYPE topologyd_visibility_findings gauge"),
            "{text}"
        );
        for line in [
            "topologyd_bmp_routers_dropped_total{reason=\"max_routes\"} 0",
            "topologyd_bmp_routers_dropped_total{reason=\"max_peers\"} 2",
        ] {
            assert!(text.contains(line), "missing {line:?} in {text}");
        }
    }

    #[tokio::test]
    async fn accepted_connections_get_tcp_keepalive_as_configured() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!socket2::SockRef::from(&accepted).keepalive().unwrap());
        enable_keepalive(&accepted, Duration::from_secs(45)).unwrap();
        let socket = socket2::SockRef::from(&accepted);
        assert!(socket.keepalive().unwrap(), "SO_KEEPALIVE");
        assert_eq!(
            socket.tcp_keepalive_time().unwrap(),
            Duration::from_secs(45),
            "TCP_KEEPIDLE"
        );
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        drop(client);
    }

    /// The accept loop with one router slot, a short Initiation bound and a station queue of
    /// `queue` inputs.
    fn accept_loop(
        initiation_timeout: Duration,
        queue: usize,
    ) -> (
        AcceptLoop,
        mpsc::Receiver<StationInput>,
        Arc<BmpCounters>,
        watch::Sender<bool>,
    ) {
        let (sender, inputs) = mpsc::channel(queue);
        let counters = Arc::new(BmpCounters::default());
        let (stop, shutdown) = watch::channel(false);
        let accept = AcceptLoop {
            allow: vec!["127.0.0.0/8".parse().unwrap()],
            keepalive_idle: Some(Duration::from_secs(60)),
            initiation_timeout,
            routers: Arc::new(Semaphore::new(1)),
            next_router: Arc::new(std::sync::atomic::AtomicU64::new(1)),
            sender,
            counters: Arc::clone(&counters),
            shutdown,
        };
        (accept, inputs, counters, stop)
    }

    #[tokio::test]
    async fn a_connection_without_an_initiation_is_closed_in_time_and_frees_its_slot() {
        use tokio::io::AsyncWriteExt;

        let bound = Duration::from_millis(400);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (accept, mut inputs, counters, _stop) = accept_loop(bound, 64);
        tokio::spawn(accept.run(listener));
        let started = std::time::Instant::now();
        let mut silent = TcpStream::connect(address).await.unwrap();
        assert!(matches!(
            inputs.recv().await,
            Some(StationInput::Connected(1, _))
        ));
        // The only slot is held meanwhile: another connection is closed at accept.
        let mut byte = [0u8; 1];
        let mut refused = TcpStream::connect(address).await.unwrap();
        assert!(!matches!(refused.read(&mut byte).await, Ok(1)));
        assert_eq!(counters.refused_max_routers.load(Ordering::Relaxed), 1);
        // The silent one is closed once the bound has passed, not before.
        let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte))
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert!(!matches!(read, Ok(1)), "{read:?}");
        assert!(
            elapsed >= bound && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
        assert!(matches!(inputs.recv().await, Some(StationInput::Closed(1))));
        assert_eq!(counters.stream_errors.load(Ordering::Relaxed), 1);
        // The slot is free again, and a router that sends its Initiation stays past the bound.
        let mut router = TcpStream::connect(address).await.unwrap();
        router
            .write_all(&super::super::writer::initiation("edge1"))
            .await
            .unwrap();
        assert!(matches!(
            inputs.recv().await,
            Some(StationInput::Connected(2, _))
        ));
        assert!(matches!(
            inputs.recv().await,
            Some(StationInput::Event(2, BmpEvent::Initiation { .. }))
        ));
        tokio::time::sleep(bound * 2).await;
        assert!(
            inputs.try_recv().is_err(),
            "the router is still connected past the bound"
        );
        assert_eq!(counters.refused_max_routers.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_connection_reset_by_the_router_is_counted_as_lost_and_closes_its_router() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (accept, mut inputs, counters, _stop) = accept_loop(Duration::from_secs(30), 64);
        tokio::spawn(accept.run(listener));
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.connect(&address.into()).unwrap();
        assert!(matches!(
            inputs.recv().await,
            Some(StationInput::Connected(1, _))
        ));
        // Linger 0: closing sends a RST, as a router that restarts its BMP process would.
        socket.set_linger(Some(Duration::ZERO)).unwrap();
        drop(socket);
        let closed = tokio::time::timeout(Duration::from_secs(5), inputs.recv())
            .await
            .unwrap();
        assert!(
            matches!(closed, Some(StationInput::Closed(1))),
            "{closed:?}"
        );
        assert_eq!(counters.lost.load(Ordering::Relaxed), 1);
        assert_eq!(counters.stream_errors.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_connection_kept_waiting_by_a_full_station_queue_is_closed_at_the_bound() {
        let bound = Duration::from_millis(400);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (accept, mut inputs, counters, _stop) = accept_loop(bound, 1);
        // The station is behind: its one-input queue is full and nothing drains it.
        accept.sender.try_send(StationInput::Closed(99)).unwrap();
        tokio::spawn(accept.run(listener));
        let started = std::time::Instant::now();
        let mut waiting = TcpStream::connect(address).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), waiting.read(&mut byte))
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert!(!matches!(read, Ok(1)), "{read:?}");
        assert!(
            elapsed >= bound && elapsed < Duration::from_secs(5),
            "closed after {elapsed:?}, the bound is {bound:?}"
        );
        assert_eq!(counters.stream_errors.load(Ordering::Relaxed), 1);
        // The slot was given back: once the station catches up, a router gets in.
        assert!(matches!(
            inputs.recv().await,
            Some(StationInput::Closed(99))
        ));
        let _router = TcpStream::connect(address).await.unwrap();
        let connected = tokio::time::timeout(Duration::from_secs(5), inputs.recv())
            .await
            .unwrap();
        assert!(
            matches!(connected, Some(StationInput::Connected(2, _))),
            "{connected:?}"
        );
        assert_eq!(counters.refused_max_routers.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_stopped_station_serves_no_view_and_a_running_one_says_its_age() {
        let running = VisibilityView {
            enabled: true,
            time_unix_ms: 1_000,
            ..disabled_view()
        };
        let (sender, receiver) = watch::channel(Arc::new(running));
        let served = served_view(&receiver, 1_750).unwrap();
        assert_eq!(served.age_ms, Some(750));
        drop(sender);
        assert_eq!(served_view(&receiver, 1_750), None);
        // Without a station the disabled view has no sender and is still served.
        let disabled = watch::channel(Arc::new(disabled_view())).1;
        assert!(served_view(&disabled, 1_750).is_some_and(|view| !view.enabled));
    }
}
