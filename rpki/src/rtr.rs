//! The RTR client: keeps a [`VrpSet`] in sync with one or more RPKI caches (RFC 8210).
//!
//! Owns the connection policy; the protocol (PDUs, reset and serial queries, Serial Notify,
//! RTR v2 first with downgrade to v1/v0 when the cache answers "unsupported version") is
//! NLnet Labs' `rpki` crate, used here and nowhere else. This module must not judge routes
//! (that is [`crate::vrps`]) and must not know about topologies.
//!
//! ```text
//! caches (by preference) ─► connect ─► rpki::rtr::Client ─► Store::apply ─► watch<RtrSnapshot>
//!            ▲  failure: next cache, then back off (retry)      │ every complete update
//!            └── no cache for `expire` seconds: the VRPs are dropped (RFC 8210 §6)
//! ```
//!
//! - Preference: caches are tried in ascending `preference` (RFC 8210 §10: lower is preferred);
//!   after a session ends the next round starts again from the most preferred cache, and a
//!   session on a less preferred cache ends when, tried every `retry` seconds, a more
//!   preferred one accepts a connection.
//! - Failover without a gap: the VRPs of the last cache stay published while the next one
//!   answers its reset query; its set replaces them at once, on its End of Data.
//! - Back-off: a round in which no cache answered waits 1 s, doubling up to the cache's
//!   `retry` interval (or [`DEFAULT_RETRY`] before any End of Data).
//! - Expiry: when no cache has completed an update for `expire` seconds (from the last End of
//!   Data, [`DEFAULT_EXPIRE`] before any), the set is emptied: everything is *not found*.
//! - Refresh and Serial Notify: while a session is up, the client sends a Serial Query after
//!   `refresh` seconds, or at once when the cache sends Serial Notify; a Cache Reset answer
//!   makes it send a Reset Query. Incremental updates are checked before they are applied
//!   (a withdrawal of an unknown VRP or a duplicate announcement refuses the whole update).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rpki::rtr::client::{Client, PayloadError, PayloadTarget, PayloadUpdate};
use rpki::rtr::payload::{Action, Payload, Timing};
use rpki::rtr::state::State;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use crate::vrps::{Vrp, VrpSet};

/// Retry interval before a cache has sent one (RFC 8210 §6 default: 600 s).
pub const DEFAULT_RETRY: Duration = Duration::from_secs(600);
/// Expire interval before a cache has sent one (RFC 8210 §6 default: 7200 s).
pub const DEFAULT_EXPIRE: Duration = Duration::from_secs(7200);
/// First back-off after a round in which no cache answered.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// How long a TCP connect to one cache may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One cache the client may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEndpoint {
    /// `HOST:PORT`, resolved at each connection attempt.
    pub address: String,
    /// Lower is preferred (RFC 8210 §10).
    pub preference: u8,
}

/// Where the client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// No cache has completed an update yet.
    Connecting,
    /// `cache` sent an End of Data; the set is its data.
    InSync,
    /// The session to the cache that served the set is gone; the set is kept until expiry.
    Stale,
    /// No cache for longer than `expire`: the set was emptied.
    Expired,
}

/// What the client publishes after every change: the set and where it came from.
#[derive(Debug, Clone)]
pub struct RtrSnapshot {
    pub vrps: Arc<VrpSet>,
    pub state: SyncState,
    /// The cache whose data the set is.
    pub cache: Option<String>,
    /// Session id and serial of the last End of Data.
    pub session_id: Option<u16>,
    pub serial: Option<u32>,
    /// Timers of the last End of Data (seconds).
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// When the last update completed (tokio's clock).
    pub updated: Option<Instant>,
    /// Whether the last update was incremental (a Serial Query's answer), not a reset.
    pub incremental: bool,
    /// The last connection or protocol error, naming the cache.
    pub last_error: Option<String>,
    /// Payloads received but not used (router keys, ASPA) in the current session.
    pub ignored_payloads: u64,
    /// Counts the changes of `vrps`: every applied update, and the expiry.
    pub vrps_version: u64,
    /// The prefixes of the VRPs the change numbered `vrps_version` announced or withdrew, when
    /// it was an incremental update; `None` when the whole set was replaced (a reset, the
    /// expiry). A reader that missed a version must treat the whole set as replaced.
    pub changed_prefixes: Option<Arc<[IpNet]>>,
}

/// An RTR failure: which cache, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtrError {
    #[error("no RTR cache given")]
    NoCache,
    #[error("RTR cache {address}: {message}")]
    Cache { address: String, message: String },
    #[error("no RTR cache answered: {}", join_errors(.0))]
    AllFailed(Vec<RtrError>),
}

fn join_errors(errors: &[RtrError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `rpki` crate's target: the set, changed only by complete, checked updates.
struct Store {
    vrps: Arc<VrpSet>,
    reset: bool,
    timing: Option<Timing>,
    applied: u64,
    /// Why the last update was refused, if it was (the `rpki` crate's own error is empty).
    refused: Option<&'static str>,
    /// Router keys and ASPA payloads received in applied updates.
    ignored: u64,
    /// The prefixes the last applied update changed; `None` after a reset.
    changed: Option<Vec<IpNet>>,
}

impl Store {
    /// A store holding `vrps`, before any update of this session.
    fn starting_from(vrps: Arc<VrpSet>) -> Store {
        Store {
            vrps,
            reset: true,
            timing: None,
            applied: 0,
            refused: None,
            ignored: 0,
            changed: None,
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Store")
            .field("vrps", &self.vrps.len())
            .field("applied", &self.applied)
            .finish()
    }
}

/// The route origin of an RTR payload; router keys and ASPA are not used yet.
fn payload_vrp(payload: &Payload) -> Option<Vrp> {
    let origin = payload.to_origin()?;
    let prefix = IpNet::new(origin.prefix.addr(), origin.prefix.prefix_len()).ok()?;
    Some(Vrp {
        prefix: prefix.trunc(),
        max_length: origin.prefix.resolved_max_len(),
        asn: origin.asn.into_u32(),
    })
}

/// One update as it arrives: each payload turned into a VRP at once (a full set is 600,000
/// payloads; keeping the `rpki` crate's payloads until End of Data would hold them all twice).
#[derive(Debug, Default)]
struct Changes {
    /// (announced, VRP), in the order received.
    vrps: Vec<(bool, Vrp)>,
    /// Router keys and ASPA payloads (not used).
    ignored: u64,
}

impl PayloadUpdate for Changes {
    fn push_update(&mut self, action: Action, payload: Payload) -> Result<(), PayloadError> {
        match payload_vrp(&payload) {
            Some(vrp) => self.vrps.push((action.is_announce(), vrp)),
            None => self.ignored += 1,
        }
        Ok(())
    }
}

impl PayloadTarget for Store {
    type Update = Changes;

    fn start(&mut self, reset: bool) -> Self::Update {
        self.reset = reset;
        Changes::default()
    }

    fn apply(&mut self, update: Self::Update, timing: Timing) -> Result<(), PayloadError> {
        let ignored = update.ignored;
        if self.reset {
            let vrps: VrpSet = update
                .vrps
                .into_iter()
                .filter(|(announce, _)| *announce)
                .map(|(_, vrp)| vrp)
                .collect();
            self.vrps = Arc::new(vrps);
            self.changed = None;
        } else {
            // Check first, then change: a refused update leaves the set as it was.
            let changes = update.vrps;
            let mut probe = VrpSet::new();
            for (announce, vrp) in &changes {
                let held = self.vrps.covering(&vrp.prefix).contains(vrp);
                if *announce && held {
                    self.refused = Some("it announced a VRP the client already holds");
                    return Err(PayloadError::DuplicateAnnounce);
                }
                if !*announce && !held && !probe.remove(vrp) {
                    self.refused = Some("it withdrew a VRP the client does not hold");
                    return Err(PayloadError::UnknownWithdraw);
                }
                if *announce {
                    probe.insert(*vrp);
                }
            }
            self.changed = Some(changes.iter().map(|(_, vrp)| vrp.prefix).collect());
            let vrps = Arc::make_mut(&mut self.vrps);
            for (announce, vrp) in changes {
                if announce {
                    vrps.insert(vrp);
                } else {
                    vrps.remove(&vrp);
                }
            }
        }
        self.timing = Some(timing);
        self.applied += 1;
        self.ignored += ignored;
        Ok(())
    }
}

/// Reads are buffered (a full set is hundreds of thousands of small PDUs); writes go straight
/// through (the `rpki` client flushes its queries).
type CacheStream = BufReader<TcpStream>;

/// Read buffer per session.
const READ_BUFFER: usize = 64 * 1024;

/// Connects to `address` within [`CONNECT_TIMEOUT`].
async fn connect(address: &str) -> Result<CacheStream, RtrError> {
    let cache_error = |message: String| RtrError::Cache {
        address: address.to_string(),
        message,
    };
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|error| cache_error(format!("cannot resolve: {error} (expected HOST:PORT)")))?
        .collect();
    let mut last = cache_error("resolves to no address".to_string());
    for socket_address in addresses {
        match timeout(CONNECT_TIMEOUT, TcpStream::connect(socket_address)).await {
            Ok(Ok(stream)) => return Ok(BufReader::with_capacity(READ_BUFFER, stream)),
            Ok(Err(error)) => last = cache_error(format!("cannot connect: {error}")),
            Err(_) => last = cache_error("connect timed out".to_string()),
        }
    }
    Err(last)
}

fn protocol_error(address: &str, error: io::Error, refused: Option<&str>) -> RtrError {
    let message = match (refused, error.kind()) {
        (Some(reason), _) => {
            format!("update refused, an Error Report sent: {reason}; the next session resets")
        }
        (None, io::ErrorKind::UnexpectedEof) => "the cache closed the session".to_string(),
        (None, io::ErrorKind::TimedOut) => "the cache did not answer in time".to_string(),
        // The `rpki` crate answers a PDU it cannot use with an Error Report and an empty error.
        (None, _) if error.to_string().is_empty() => {
            "protocol error: a PDU the client cannot use (an Error Report was sent)".to_string()
        }
        (None, _) => format!("protocol error: {error}"),
    };
    RtrError::Cache {
        address: address.to_string(),
        message,
    }
}

/// One reset query against the first of `addresses` that answers (in order), within `limit`
/// per cache: the complete VRP set and the cache that served it. For `topoctl --rtr`.
pub async fn fetch_once(
    addresses: &[String],
    limit: Duration,
) -> Result<(VrpSet, String), RtrError> {
    if addresses.is_empty() {
        return Err(RtrError::NoCache);
    }
    let mut errors = Vec::new();
    for address in addresses {
        let attempt = async {
            let stream = connect(address).await?;
            let store = Store::starting_from(Arc::new(VrpSet::new()));
            let mut client = Client::new(stream, store, None);
            if let Err(error) = client.step().await {
                let refused = client.target().refused;
                return Err(protocol_error(address, error, refused));
            }
            Ok::<_, RtrError>(client.into_target())
        };
        match timeout(limit, attempt).await {
            Ok(Ok(store)) if store.applied > 0 => {
                let vrps = Arc::unwrap_or_clone(store.vrps);
                return Ok((vrps, address.clone()));
            }
            Ok(Ok(_)) => errors.push(RtrError::Cache {
                address: address.clone(),
                message: "the session ended before End of Data".to_string(),
            }),
            Ok(Err(error)) => errors.push(error),
            Err(_) => errors.push(RtrError::Cache {
                address: address.clone(),
                message: format!("no End of Data within {} s", limit.as_secs_f64()),
            }),
        }
    }
    Err(RtrError::AllFailed(errors))
}

/// A running client: its snapshots, and the task (abort it, or drop the handle, to stop).
#[derive(Debug)]
pub struct RtrHandle {
    pub snapshots: watch::Receiver<RtrSnapshot>,
    task: tokio::task::JoinHandle<()>,
}

impl RtrHandle {
    /// The latest snapshot.
    pub fn current(&self) -> RtrSnapshot {
        self.snapshots.borrow().clone()
    }
}

impl Drop for RtrHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the client on the current tokio runtime.
pub fn spawn(caches: Vec<CacheEndpoint>) -> Result<RtrHandle, RtrError> {
    if caches.is_empty() {
        return Err(RtrError::NoCache);
    }
    let mut caches = caches;
    caches.sort_by_key(|cache| cache.preference);
    let (sender, snapshots) = watch::channel(RtrSnapshot {
        vrps: Arc::new(VrpSet::new()),
        state: SyncState::Connecting,
        cache: None,
        session_id: None,
        serial: None,
        refresh: 0,
        retry: 0,
        expire: 0,
        updated: None,
        incremental: false,
        last_error: None,
        ignored_payloads: 0,
        vrps_version: 0,
        changed_prefixes: None,
    });
    let task = tokio::spawn(run(caches, sender));
    Ok(RtrHandle { snapshots, task })
}

/// Session state kept per cache so that a reconnection to it asks for a serial, not a reset.
struct CacheSession {
    endpoint: CacheEndpoint,
    state: Option<State>,
}

async fn run(caches: Vec<CacheEndpoint>, sender: watch::Sender<RtrSnapshot>) {
    let addresses: Vec<String> = caches.iter().map(|cache| cache.address.clone()).collect();
    let mut sessions: Vec<CacheSession> = caches
        .into_iter()
        .map(|endpoint| CacheSession {
            endpoint,
            state: None,
        })
        .collect();
    let mut vrps = Arc::new(VrpSet::new());
    let mut served_by: Option<usize> = None;
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let mut any_answered = false;
        for (index, session) in sessions.iter_mut().enumerate() {
            if expire_if_due(&sender, &mut vrps) {
                served_by = None;
            }
            let store = Store::starting_from(Arc::clone(&vrps));
            // Another cache's session state means nothing here: its set is replaced by a reset.
            let state = if served_by == Some(index) {
                session.state
            } else {
                None
            };
            let address = session.endpoint.address.clone();
            let preferred = &addresses[..index];
            let (store, state, error) =
                run_session(&address, preferred, store, state, &sender).await;
            // The state matches the set the store holds (None after a refused update).
            session.state = state;
            if store.applied > 0 {
                any_answered = true;
                served_by = Some(index);
                vrps = store.vrps;
                backoff = INITIAL_BACKOFF;
            }
            sender.send_modify(|snapshot| {
                if snapshot.state == SyncState::InSync {
                    snapshot.state = SyncState::Stale;
                }
                snapshot.last_error = Some(error.to_string());
            });
            tracing::warn!(%error, "RTR session ended");
            if any_answered {
                // Start the next round from the most preferred cache.
                break;
            }
        }
        if !any_answered {
            let retry = retry_interval(&sender.borrow());
            let wait = backoff.min(retry).min(until_expiry(&sender.borrow()));
            sleep(wait.max(Duration::from_millis(50))).await;
            backoff = (backoff * 2).min(retry);
        }
    }
}

/// Runs one session until it ends — or, on a less preferred cache, until one of the `preferred`
/// caches accepts a connection (tried every `retry` seconds) — and returns the store, the
/// session state and why it ended. Cancelling a step mid-update is safe: the store changes
/// only when an update is complete.
async fn run_session(
    address: &str,
    preferred: &[String],
    store: Store,
    state: Option<State>,
    sender: &watch::Sender<RtrSnapshot>,
) -> (Store, Option<State>, RtrError) {
    let stream = match connect(address).await {
        Ok(stream) => stream,
        Err(error) => return (store, state, error),
    };
    let mut client = Client::new(stream, store, state);
    // The session state that matches the store's set: the client's own advances at End of Data,
    // before the update is applied (and perhaps refused).
    let mut applied_state = state;
    let mut probe_at = Instant::now() + retry_interval(&sender.borrow());
    loop {
        let before = client.target().applied;
        // The probe runs beside the step and resolves only when a preferred cache answers, so
        // a step is never cancelled except to end the session.
        let stepped = tokio::select! {
            stepped = client.step() => Ok(stepped),
            back = probe_preferred(preferred, &mut probe_at, sender) => Err(back),
        };
        match stepped {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let store = client.into_target();
                let error = protocol_error(address, error, store.refused);
                let state = if store.refused.is_some() {
                    None
                } else {
                    applied_state
                };
                return (store, state, error);
            }
            Err(back) => {
                let state = applied_state;
                let reason = RtrError::Cache {
                    address: address.to_string(),
                    message: format!("left for the more preferred cache {back}"),
                };
                return (client.into_target(), state, reason);
            }
        }
        let store = client.target();
        if store.applied == before {
            continue;
        }
        let timing = store.timing.unwrap_or_default();
        let incremental = !store.reset;
        let ignored = store.ignored;
        let state = client.state();
        applied_state = state;
        let vrps = Arc::clone(&store.vrps);
        let changed: Option<Arc<[IpNet]>> = store.changed.as_deref().map(Arc::from);
        sender.send_modify(|snapshot| {
            snapshot.vrps = vrps;
            snapshot.vrps_version += 1;
            snapshot.changed_prefixes = changed;
            snapshot.state = SyncState::InSync;
            snapshot.cache = Some(address.to_string());
            snapshot.session_id = state.map(|state| state.session());
            snapshot.serial = state.map(|state| state.serial().into());
            snapshot.refresh = timing.refresh;
            snapshot.retry = timing.retry;
            snapshot.expire = timing.expire;
            snapshot.updated = Some(Instant::now());
            snapshot.incremental = incremental;
            snapshot.ignored_payloads = ignored;
            snapshot.last_error = None;
        });
        tracing::debug!(
            cache = address,
            vrps = store.vrps.len(),
            "RTR update applied"
        );
        probe_at =
            probe_at.min(Instant::now() + Duration::from_secs(u64::from(timing.retry.max(1))));
    }
}

/// Resolves with the first of `preferred` to accept a connection, trying at `probe_at` and then
/// every `retry` seconds; never resolves when there is no more preferred cache.
async fn probe_preferred(
    preferred: &[String],
    probe_at: &mut Instant,
    sender: &watch::Sender<RtrSnapshot>,
) -> String {
    if preferred.is_empty() {
        return std::future::pending().await;
    }
    loop {
        tokio::time::sleep_until(*probe_at).await;
        *probe_at = Instant::now() + retry_interval(&sender.borrow());
        if let Some(back) = first_reachable(preferred).await {
            return back;
        }
    }
}

/// The first of `addresses` that accepts a TCP connection (closed again at once).
async fn first_reachable(addresses: &[String]) -> Option<String> {
    for address in addresses {
        if connect(address).await.is_ok() {
            return Some(address.clone());
        }
    }
    None
}

fn retry_interval(snapshot: &RtrSnapshot) -> Duration {
    if snapshot.updated.is_some() {
        Duration::from_secs(u64::from(snapshot.retry.max(1)))
    } else {
        DEFAULT_RETRY
    }
}

fn expire_interval(snapshot: &RtrSnapshot) -> Duration {
    if snapshot.updated.is_some() {
        Duration::from_secs(u64::from(snapshot.expire))
    } else {
        DEFAULT_EXPIRE
    }
}

/// How long until the published set expires (never zero while nothing is held).
fn until_expiry(snapshot: &RtrSnapshot) -> Duration {
    match snapshot.updated {
        Some(updated) if snapshot.state != SyncState::Expired => {
            expire_interval(snapshot).saturating_sub(updated.elapsed())
        }
        _ => DEFAULT_RETRY,
    }
}

/// RFC 8210 §6: data older than `expire` with no cache in sync is dropped; true when it was.
fn expire_if_due(sender: &watch::Sender<RtrSnapshot>, vrps: &mut Arc<VrpSet>) -> bool {
    let due = {
        let snapshot = sender.borrow();
        snapshot.state == SyncState::Stale && until_expiry(&snapshot).is_zero()
    };
    if due {
        *vrps = Arc::new(VrpSet::new());
        let emptied = Arc::clone(vrps);
        sender.send_modify(|snapshot| {
            snapshot.vrps = emptied;
            snapshot.vrps_version += 1;
            snapshot.changed_prefixes = None;
            snapshot.state = SyncState::Expired;
        });
        tracing::warn!("RTR data expired: no cache answered within the expire interval");
    }
    due
}
