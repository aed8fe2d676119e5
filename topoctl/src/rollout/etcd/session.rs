//! The controller's connection to etcd: leadership (an etcd lease kept alive at TTL/3, the
//! leader key created only if absent, a watchdog that stops the process as soon as the lease
//! cannot be confirmed), the fenced journal writes, range reads, and control commands.
//!
//! The etcd client runs on a runtime of its own (one worker thread) so that the synchronous
//! journal interface the driver uses can wait for etcd without blocking the client, and so that
//! the watchdog keeps running whatever the driver's runtime does.
//!
//! Owns: every etcd call, the leadership lifecycle, the stop on leadership loss (exit 8: no
//! further journal write, no further daemon call; the daemons' lease fencing refuses what was
//! already in flight).
//!
//! Must not touch: what the records mean (`machine.rs`), the key layout (`mod.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use serde_json::json;

use super::{
    Condition, EtcdOptions, EtcdTls, Fence, Keys, LEASE_TTL_SECONDS, LeaderValue,
    campaign_conditions, decode_lines, encode_line,
};
use crate::rollout::EXIT_PAUSED;
use crate::rollout::driver::ControlLine;
use crate::rollout::journal::{JournalError, Line, RemoteJournal, unix_time};

/// How long one etcd request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the watchdog compares the lease's confirmed deadline with the clock.
pub const WATCHDOG_INTERVAL: Duration = Duration::from_millis(50);
/// How often the leader reads new control commands.
pub const CONTROL_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `call` until it answers, it fails otherwise than by the member being unreachable, or
/// [`REQUEST_TIMEOUT`] has passed. The client balances requests over every endpoint, including
/// a member that is down: a request it sent there is sent again (to another member).
async fn retrying<T, Fut>(what: &str, mut call: impl FnMut() -> Fut) -> Result<T, String>
where
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, call()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(error)) if unreachable(&error) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(error)) => return Err(format!("{what}: {error}")),
            Err(_) => {
                return Err(format!(
                    "{what}: etcd did not answer within {REQUEST_TIMEOUT:?}"
                ));
            }
        }
    }
}

/// Whether an error says the member could not be reached (another member may answer).
fn unreachable(error: &etcd_client::Error) -> bool {
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        // gRPC codes Unknown (2), DeadlineExceeded (4), Unavailable (14).
        etcd_client::Error::GRpcStatus(status) => matches!(status.code() as i32, 2 | 4 | 14),
        _ => false,
    }
}

fn lease_ttl() -> Duration {
    Duration::from_secs(LEASE_TTL_SECONDS.unsigned_abs())
}

fn compare_of(condition: &Condition) -> Compare {
    match condition {
        Condition::CreateRevision { key, revision } => {
            Compare::create_revision(key.as_str(), CompareOp::Equal, *revision)
        }
        Condition::Lease { key, lease } => Compare::lease(key.as_str(), CompareOp::Equal, *lease),
    }
}

/// The client's TLS configuration from the PEM files.
fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, String> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|error| format!("--etcd TLS: {}: {error}", path.display()))
    };
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    if let Some((certificate, key)) = &tls.identity {
        options = options.identity(Identity::from_pem(read(certificate)?, read(key)?));
    }
    Ok(options)
}

/// A connection to an etcd cluster under one prefix.
pub struct Session {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    keys: Keys,
    json: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Session")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The current leader, as the leader key names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    pub holder: String,
    /// The leader's fencing token (the key's create_revision).
    pub token: i64,
}

/// Prints why the leadership is lost and ends the process with exit code 8 at once: nothing
/// after this point may write the journal or call a daemon.
fn stop_leadership_lost(json: bool, reason: &str) -> ! {
    if json {
        println!(
            "{}",
            json!({"event": "leadership_lost", "time": unix_time(), "reason": reason})
        );
    }
    eprintln!("topoctl: leadership lost: {reason}; stopping at once (exit 8)");
    std::process::exit(EXIT_PAUSED);
}

/// The lease-confirmation state the keep-alive task updates and the watchdog checks.
#[derive(Debug)]
struct LeaseState {
    /// Until when etcd has confirmed the lease (measured from when we asked, so never later
    /// than etcd's own expiry).
    confirmed_until: Mutex<Instant>,
    /// Set when the lease is known gone (etcd answered TTL 0) or a fenced write was refused.
    lost: Mutex<Option<String>>,
    json: bool,
    /// Whether the watchdog stops the process (a leader, or a standby waiting its turn).
    armed: AtomicBool,
}

impl LeaseState {
    fn check(&self) -> Result<(), String> {
        if let Ok(lost) = self.lost.lock()
            && let Some(reason) = lost.as_ref()
        {
            return Err(reason.clone());
        }
        let until = self
            .confirmed_until
            .lock()
            .map_or_else(|_| Instant::now(), |until| *until);
        // A margin of two watchdog periods: the watchdog and the callers that ask stop
        // before etcd's own expiry, never after it.
        if Instant::now() + 2 * WATCHDOG_INTERVAL >= until {
            return Err(format!(
                "the etcd lease could not be confirmed within its TTL ({LEASE_TTL_SECONDS} s): etcd is unreachable or has lost its quorum, or this process was not running (stopped, frozen)"
            ));
        }
        Ok(())
    }

    fn confirm(&self, until: Instant) {
        if let Ok(mut current) = self.confirmed_until.lock()
            && until > *current
        {
            *current = until;
        }
    }

    fn mark_lost(&self, reason: String) {
        if let Ok(mut lost) = self.lost.lock() {
            lost.get_or_insert(reason);
        }
    }
}

/// This process's leadership of the prefix.
#[derive(Debug)]
pub struct Leadership {
    pub fence: Fence,
    pub holder: String,
    state: Arc<LeaseState>,
}

impl Leadership {
    /// Ok while the lease is confirmed; the reason otherwise.
    pub fn check(&self) -> Result<(), String> {
        self.state.check()
    }

    /// The same check, to be asked from anywhere (before every daemon call).
    pub fn guard(&self) -> crate::rollout::journal::LeadershipCheck {
        let state = Arc::clone(&self.state);
        crate::rollout::journal::LeadershipCheck(Arc::new(move || state.check()))
    }
}

/// A campaign that did not win.
#[derive(Debug)]
pub enum CampaignError {
    /// Another controller leads (and `wait` was not asked for).
    Led(LeaderInfo),
    /// etcd could not be asked.
    Etcd(String),
}

impl Session {
    /// Connects to the cluster (answers once a member has answered a read).
    pub fn connect(options: &EtcdOptions, json: bool) -> Result<Session, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("etcd-client")
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the etcd client: {error}"))?;
        let endpoints = options.endpoints.clone();
        let mut connect_options = ConnectOptions::new()
            .with_connect_timeout(REQUEST_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), REQUEST_TIMEOUT);
        if let Some(tls) = &options.tls {
            connect_options = connect_options.with_tls(tls_options(tls)?);
        }
        let (sender, receiver) = std_mpsc::channel();
        runtime.spawn(async move {
            let _ = sender.send(Client::connect(endpoints, Some(connect_options)).await);
        });
        let client = receiver
            .recv()
            .map_err(|error| error.to_string())?
            .map_err(|error| {
                format!(
                    "cannot connect to etcd at {}: {error}",
                    options.endpoints.join(",")
                )
            })?;
        Ok(Session {
            runtime: Some(runtime),
            client,
            keys: options.keys(),
            json,
        })
    }

    /// The key layout.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Runs `future` on the client's runtime and waits for its answer.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| "the etcd client is stopped".to_string())?;
        let (sender, receiver) = std_mpsc::channel();
        runtime.spawn(async move {
            let _ = sender.send(future.await);
        });
        receiver
            .recv()
            .map_err(|_| "the etcd client stopped".to_string())?
    }

    /// Every journal line under the prefix, in order (empty when there is no journal), and the
    /// revision the read was made at.
    pub fn read_journal(&self) -> Result<(Vec<Line>, i64), String> {
        let client = self.client.clone();
        let keys = self.keys.clone();
        self.run(async move {
            let prefix = keys.journal_prefix();
            let answer = retrying("cannot read the journal from etcd", || {
                let mut client = client.clone();
                let prefix = prefix.clone();
                async move {
                    client
                        .get(prefix, Some(GetOptions::new().with_prefix()))
                        .await
                }
            })
            .await?;
            let revision = answer.header().map_or(0, |header| header.revision());
            let entries: Vec<(String, Vec<u8>)> = answer
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        kv.value().to_vec(),
                    )
                })
                .collect();
            let lines = decode_lines(&keys, &entries)
                .map_err(|error| format!("{}: {error}", keys.describe()))?;
            Ok((lines, revision))
        })
    }

    /// The current leader, if any (the key exists only while its lease lives).
    pub fn leader(&self) -> Result<Option<LeaderInfo>, String> {
        let client = self.client.clone();
        let key = self.keys.leader();
        self.run(async move {
            let answer = retrying("cannot read the leader key from etcd", || {
                let mut client = client.clone();
                let key = key.clone();
                async move { client.get(key, None).await }
            })
            .await?;
            Ok(answer.kvs().first().map(|kv| LeaderInfo {
                holder: serde_json::from_slice::<LeaderValue>(kv.value())
                    .map_or_else(|_| "?".to_string(), |value| value.holder),
                token: kv.create_revision(),
            }))
        })
    }

    /// Puts control command `line` for the leader to pick up.
    pub fn put_control(&self, line: &ControlLine) -> Result<(), String> {
        let client = self.client.clone();
        let key = self.keys.control(&line.id);
        let value = serde_json::to_vec(line).map_err(|error| error.to_string())?;
        self.run(async move {
            retrying("cannot write the command to etcd", || {
                let mut client = client.clone();
                let (key, value) = (key.clone(), value.clone());
                async move { client.put(key, value, None).await }
            })
            .await?;
            Ok(())
        })
    }

    /// Campaigns for the leadership: grants a lease (kept alive from now on, watched by the
    /// watchdog), then creates the leader key if absent. With `wait`, a standby watches the key
    /// and tries again each time it disappears; without, an existing leader is an error.
    pub fn campaign(&self, wait: bool) -> Result<Leadership, CampaignError> {
        let holder = format!(
            "{}/{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map_or_else(|_| "?".to_string(), |name| name.trim().to_string()),
            std::process::id()
        );
        let client = self.client.clone();
        // The lease is confirmed from the moment we asked for it (never later than etcd's own
        // expiry, which runs from when it granted it).
        let asked = Instant::now();
        let lease = self
            .run(async move {
                let granted = retrying("etcd did not grant a lease", || {
                    let mut client = client.clone();
                    async move { client.lease_grant(LEASE_TTL_SECONDS, None).await }
                })
                .await?;
                Ok(granted.id())
            })
            .map_err(CampaignError::Etcd)?;
        let state = Arc::new(LeaseState {
            confirmed_until: Mutex::new(asked + lease_ttl()),
            lost: Mutex::new(None),
            json: self.json,
            armed: AtomicBool::new(true),
        });
        self.start_keep_alive(lease, Arc::clone(&state));
        let mut client = self.client.clone();
        let keys = self.keys.clone();
        let value = serde_json::to_vec(&LeaderValue {
            holder: holder.clone(),
        })
        .map_err(|error| CampaignError::Etcd(error.to_string()))?;
        let won = self.run(async move { Ok(elect(&mut client, &keys, lease, value, wait).await) });
        match won {
            Ok(Ok(token)) => Ok(Leadership {
                fence: Fence { token, lease },
                holder,
                state,
            }),
            Ok(Err(error)) => {
                state.armed.store(false, Ordering::SeqCst);
                self.revoke(lease);
                Err(error)
            }
            Err(message) => {
                state.armed.store(false, Ordering::SeqCst);
                self.revoke(lease);
                Err(CampaignError::Etcd(message))
            }
        }
    }

    /// Gives the leadership up on purpose: the watchdog stands down first, then the lease is
    /// revoked (the leader key goes with it; a standby takes over).
    pub fn resign(&self, leadership: &Leadership) {
        leadership.state.armed.store(false, Ordering::SeqCst);
        self.revoke(leadership.fence.lease);
    }

    /// Gives the lease up (best effort): the leader key goes with it, a standby takes over.
    fn revoke(&self, lease: i64) {
        let client = self.client.clone();
        let _ = self.run(async move {
            retrying("cannot give the lease up", || {
                let mut client = client.clone();
                async move { client.lease_revoke(lease).await }
            })
            .await
        });
    }

    fn start_keep_alive(&self, lease: i64, state: Arc<LeaseState>) {
        let Some(runtime) = self.runtime.as_ref() else {
            return;
        };
        let client = self.client.clone();
        runtime.spawn(keep_alive(client, lease, Arc::clone(&state)));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(WATCHDOG_INTERVAL).await;
                if !state.armed.load(Ordering::SeqCst) {
                    return;
                }
                if let Err(reason) = state.check() {
                    stop_leadership_lost(state.json, &reason);
                }
            }
        });
    }

    /// Writes journal record `sequence` if the fence still holds. A refused compare is
    /// leadership lost; an unanswered write is retried while the lease is confirmed (a write
    /// that did land is recognised by its value).
    fn append_fenced(
        &self,
        leadership: &Leadership,
        sequence: u64,
        value: Vec<u8>,
    ) -> Result<(), String> {
        loop {
            leadership.check()?;
            let mut client = self.client.clone();
            let keys = self.keys.clone();
            let fence = leadership.fence;
            let value = value.clone();
            let answer = self.run(async move {
                let key = keys.journal(sequence);
                let compares: Vec<Compare> = fence
                    .journal_conditions(&keys, sequence)
                    .iter()
                    .map(compare_of)
                    .collect();
                let txn = Txn::new()
                    .when(compares)
                    .and_then(vec![TxnOp::put(key.as_str(), value.clone(), None)])
                    .or_else(vec![TxnOp::get(key.as_str(), None)]);
                let answer = tokio::time::timeout(REQUEST_TIMEOUT, client.txn(txn))
                    .await
                    .map_err(|_| "etcd did not answer the journal write in time".to_string())?
                    .map_err(|error| format!("etcd refused the journal write: {error}"))?;
                if answer.succeeded() {
                    return Ok(Ok(()));
                }
                // Our own earlier attempt may have landed before its answer was lost.
                let ours = answer.op_responses().iter().any(|response| match response {
                    TxnOpResponse::Get(get) => get
                        .kvs()
                        .first()
                        .is_some_and(|kv| kv.value() == value.as_slice()),
                    _ => false,
                });
                if ours {
                    return Ok(Ok(()));
                }
                Ok(Err(format!(
                    "the journal write {} was refused: the leader key is no longer ours (token {}, lease {:x})",
                    keys.journal(sequence),
                    fence.token,
                    fence.lease
                )))
            });
            match answer {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(lost)) => {
                    leadership.state.mark_lost(lost.clone());
                    return Err(lost);
                }
                Err(transient) => {
                    eprintln!("topoctl: {transient}; retrying while the lease holds");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Starts reading control commands newer than `revision`; they arrive on the receiver.
    fn watch_control(&self, revision: i64) -> std_mpsc::Receiver<ControlLine> {
        let (sender, receiver) = std_mpsc::channel();
        if let Some(runtime) = self.runtime.as_ref() {
            let mut client = self.client.clone();
            let prefix = self.keys.control_prefix();
            runtime.spawn(async move {
                let mut seen = revision;
                loop {
                    tokio::time::sleep(CONTROL_POLL_INTERVAL).await;
                    let options = GetOptions::new()
                        .with_prefix()
                        .with_min_mod_revision(seen + 1);
                    let Ok(Ok(answer)) = tokio::time::timeout(
                        REQUEST_TIMEOUT,
                        client.get(prefix.as_str(), Some(options)),
                    )
                    .await
                    else {
                        continue;
                    };
                    let mut kvs: Vec<_> = answer.kvs().to_vec();
                    kvs.sort_by_key(etcd_client::KeyValue::mod_revision);
                    for kv in kvs {
                        seen = seen.max(kv.mod_revision());
                        if let Ok(line) = serde_json::from_slice::<ControlLine>(kv.value())
                            && sender.send(line).is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
        receiver
    }
}

/// Creates the leader key under `lease` if absent; with `wait`, watches it and tries again
/// whenever it disappears. Answers the fencing token (the key's create_revision).
async fn elect(
    client: &mut Client,
    keys: &Keys,
    lease: i64,
    value: Vec<u8>,
    wait: bool,
) -> Result<i64, CampaignError> {
    let leader = keys.leader();
    loop {
        let compares: Vec<Compare> = campaign_conditions(keys).iter().map(compare_of).collect();
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![TxnOp::put(
                leader.as_str(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else(vec![TxnOp::get(leader.as_str(), None)]);
        let answer = match retrying("the campaign for the leadership", || {
            let mut client = client.clone();
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
        {
            Ok(answer) => answer,
            Err(message) if !wait => return Err(CampaignError::Etcd(message)),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let revision = answer.header().map_or(0, |header| header.revision());
        if answer.succeeded() {
            return Ok(revision);
        }
        // An earlier attempt of ours that landed before its answer was lost.
        let ours = answer
            .op_responses()
            .iter()
            .find_map(|response| match response {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .filter(|kv| kv.lease() == lease)
                    .map(etcd_client::KeyValue::create_revision),
                _ => None,
            });
        if let Some(token) = ours {
            return Ok(token);
        }
        let current = answer
            .op_responses()
            .iter()
            .find_map(|response| match response {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| LeaderInfo {
                    holder: serde_json::from_slice::<LeaderValue>(kv.value())
                        .map_or_else(|_| "?".to_string(), |value| value.holder),
                    token: kv.create_revision(),
                }),
                _ => None,
            });
        if !wait {
            return Err(match current {
                Some(info) => CampaignError::Led(info),
                None => CampaignError::Etcd("the leader key vanished; try again".into()),
            });
        }
        wait_for_deletion(client, &leader, revision + 1).await;
    }
}

/// Waits until the leader key is deleted (at most one lease TTL, then the caller looks again).
async fn wait_for_deletion(client: &mut Client, key: &str, from_revision: i64) {
    let watched = async {
        let options = WatchOptions::new().with_start_revision(from_revision);
        let Ok(mut stream) = client.watch(key, Some(options)).await else {
            return;
        };
        while let Ok(Some(answer)) = stream.message().await {
            if answer
                .events()
                .iter()
                .any(|event| event.event_type() == EventType::Delete)
            {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(lease_ttl(), watched).await;
}

/// Keeps `lease` alive every TTL/3; each confirmation moves the deadline to when we asked plus
/// the TTL etcd granted. A lease etcd no longer knows is lost at once.
async fn keep_alive(mut client: Client, lease: i64, state: Arc<LeaseState>) {
    let interval = lease_ttl() / 3;
    let mut stream = None;
    loop {
        let asked = Instant::now();
        if stream.is_none() {
            match tokio::time::timeout(interval, client.lease_keep_alive(lease)).await {
                Ok(Ok(opened)) => {
                    state.confirm(asked + lease_ttl());
                    stream = Some(opened);
                }
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(message))) => {
                    state.mark_lost(format!("etcd no longer knows the lease: {message}"));
                }
                _ => {
                    // Perhaps a member that is down: try again soon (another member).
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        } else if let Some((keeper, answers)) = stream.as_mut() {
            let confirmed = tokio::time::timeout(interval, async {
                keeper.keep_alive().await?;
                answers.message().await
            })
            .await;
            match confirmed {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    state.confirm(asked + Duration::from_secs(answer.ttl().unsigned_abs()));
                }
                Ok(Ok(Some(_))) => state.mark_lost("the etcd lease expired".into()),
                _ => {
                    stream = None;
                    continue;
                }
            }
        }
        tokio::time::sleep_until((asked + interval).into()).await;
    }
}

/// The journal of a leader, in etcd: the [`RemoteJournal`] the driver appends to.
#[derive(Debug)]
pub struct EtcdJournal {
    session: Session,
    leadership: Leadership,
    next: u64,
    commands: std_mpsc::Receiver<ControlLine>,
}

impl EtcdJournal {
    /// A leader's journal continuing after `existing` records, taking control commands newer
    /// than `revision`.
    pub fn new(
        session: Session,
        leadership: Leadership,
        existing: u64,
        revision: i64,
    ) -> EtcdJournal {
        let commands = session.watch_control(revision);
        EtcdJournal {
            session,
            leadership,
            next: existing,
            commands,
        }
    }
}

impl Drop for EtcdJournal {
    fn drop(&mut self) {
        self.session.resign(&self.leadership);
    }
}

impl RemoteJournal for EtcdJournal {
    fn append_line(&mut self, line: &Line) -> Result<(), JournalError> {
        let value = encode_line(line).map_err(|message| JournalError::Remote {
            store: self.session.keys().describe(),
            message,
        })?;
        match self
            .session
            .append_fenced(&self.leadership, self.next, value)
        {
            Ok(()) => {
                self.next += 1;
                Ok(())
            }
            Err(reason) => stop_leadership_lost(self.session.json, &reason),
        }
    }

    fn poll_control(&mut self) -> Vec<ControlLine> {
        self.commands.try_iter().collect()
    }

    fn describe(&self) -> String {
        self.session.keys().describe()
    }

    fn fencing_token(&self) -> u64 {
        self.leadership.fence.token.unsigned_abs()
    }

    fn leadership_check(&self) -> crate::rollout::journal::LeadershipCheck {
        self.leadership.guard()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
