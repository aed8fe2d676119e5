//! One measured run: a fresh receiver and sender, the sessions brought up, the receiver polled
//! until it holds every route (announce), then the withdrawal triggered and the receiver polled
//! until it holds none (withdraw-all), with the sender's peak RSS sampled along the way.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use topologyd_harness::peers::alloc::loopback_v4;

use crate::process::{group_peak_rss, group_status, kill_mentioning, unix_ms};
use crate::receiver::{Receiver, Session};
use crate::senders::{Sender, SenderSetup, start_sender};
use crate::{Options, Result};

/// How often the receiver's import counters are read while a phase runs.
const POLL: Duration = Duration::from_millis(20);
/// The senders' peak RSS is sampled every this many polls (and at the end of every phase).
const RSS_EVERY: u32 = 5;

#[derive(Debug, Clone)]
pub(crate) struct RunResult {
    pub(crate) sender: String,
    pub(crate) case: String,
    pub(crate) run: usize,
    pub(crate) peers: usize,
    pub(crate) routes: u64,
    pub(crate) announce_s: f64,
    pub(crate) withdraw_s: f64,
    pub(crate) peak_rss_bytes: u64,
    /// From the withdraw trigger until the receiver was first seen holding fewer routes.
    pub(crate) withdraw_first_effect_s: f64,
    /// Resident set when the receiver first held every route.
    pub(crate) rss_after_announce_bytes: u64,
    pub(crate) withdrawals_received: u64,
    pub(crate) session_closed: bool,
    pub(crate) setup_s: f64,
    pub(crate) method: String,
}

/// Which run this is: the sender, the case, its number, and how many sessions and routes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunCase<'a> {
    pub(crate) sender: &'a str,
    pub(crate) case: &'a str,
    pub(crate) run: usize,
    pub(crate) peers: usize,
    pub(crate) ipv4: u32,
    pub(crate) ipv6: u32,
}

impl RunCase<'_> {
    /// The routes every session carries.
    fn routes(&self) -> u64 {
        u64::from(self.ipv4 + self.ipv6)
    }

    /// The routes summed over every session.
    fn routes_on_every_session(&self) -> u64 {
        self.routes() * self.peers as u64
    }
}

/// The sender's peak RSS (VmHWM over its process groups), sampled every [`RSS_EVERY`] polls.
#[derive(Debug)]
struct RssPeak {
    groups: Vec<u32>,
    peak: u64,
    polls: u32,
}

impl RssPeak {
    fn sample(&mut self) {
        let now: u64 = self.groups.iter().map(|group| group_peak_rss(*group)).sum();
        self.peak = self.peak.max(now);
    }

    /// Counts one poll of the receiver; samples on every [`RSS_EVERY`]th.
    fn poll(&mut self) {
        self.polls += 1;
        if self.polls.is_multiple_of(RSS_EVERY) {
            self.sample();
        }
    }
}

/// One run: starts the receiver and the sender, measures, and keeps the directories of a
/// failed run (or of every run with `BGP_PEERS_KEEP`) for inspection.
pub(crate) fn run_once(options: &Options, case: &RunCase<'_>) -> Result<RunResult> {
    let sources: Vec<Ipv4Addr> = (0..case.peers).map(|_| loopback_v4()).collect();
    let mut receiver = Receiver::start(options.receiver, &sources, options.pids.as_deref())?;
    let directory = tempfile::Builder::new()
        .prefix(&format!("bgp-bench-{}-", case.sender))
        .tempdir()
        .map_err(|e| e.to_string())?;
    let setup = SenderSetup {
        address: sources[0],
        sources: sources.clone(),
        receivers: receiver.endpoints.clone(),
        ipv4: case.ipv4,
        ipv6: case.ipv6,
        directory: directory.path().to_path_buf(),
        bin: options.bin.clone(),
        pids: options.pids.clone(),
    };
    if let Some(pids) = &options.pids {
        list_directory(&pids.with_extension("dirs"), directory.path());
    }
    let result = measure(&mut receiver, &setup, case, options.timeout);
    kill_mentioning(directory.path());
    keep_directories(directory, &mut receiver, case, &result)?;
    result
}

/// Appends a run's directory to the list the script's trap cleans up after.
fn list_directory(list: &Path, directory: &Path) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(list)
        .and_then(|mut file| writeln!(file, "{}", directory.display()));
}

/// Keeps (and names) the sender's and the receiver's directories of a failed run, or of every
/// run with `BGP_PEERS_KEEP`; otherwise they are removed.
fn keep_directories(
    directory: tempfile::TempDir,
    receiver: &mut Receiver,
    case: &RunCase<'_>,
    result: &Result<RunResult>,
) -> Result<()> {
    if result.is_ok() && std::env::var_os("BGP_PEERS_KEEP").is_none() {
        return Ok(());
    }
    let kept = directory.keep();
    let receiver_dir = std::mem::replace(
        &mut receiver.directory,
        tempfile::tempdir().map_err(|e| e.to_string())?,
    )
    .keep();
    match result {
        Ok(_) => eprintln!(
            "bgp_peers: kept {} {}",
            kept.display(),
            receiver_dir.display()
        ),
        Err(error) => eprintln!(
            "bgp_peers: {} run {} failed: {error}\n  logs: {} {}",
            case.sender,
            case.run,
            kept.display(),
            receiver_dir.display()
        ),
    }
    Ok(())
}

/// The measurement: sessions up, announce, withdraw-all.
fn measure(
    receiver: &mut Receiver,
    setup: &SenderSetup,
    case: &RunCase<'_>,
    timeout: Duration,
) -> Result<RunResult> {
    let started = Instant::now();
    let mut sender = start_sender(case.sender, setup)?;
    let mut rss = RssPeak {
        groups: sender.groups(),
        peak: 0,
        polls: 0,
    };
    sender.connect()?;
    let deadline = Instant::now() + timeout;
    let established_ms = await_established(receiver, case, deadline)?;
    let setup_s = started.elapsed().as_secs_f64();
    let full_ms = await_announced(receiver, case, deadline, &mut rss)?;
    rss.sample();
    let rss_after_announce: u64 = rss
        .groups
        .iter()
        .map(|group| group_status(*group, "VmRSS:"))
        .sum();
    let withdrawal = withdraw_all(receiver, sender.as_mut(), case, timeout, &mut rss)?;
    Ok(RunResult {
        sender: case.sender.to_string(),
        case: case.case.to_string(),
        run: case.run,
        peers: case.peers,
        routes: case.routes(),
        announce_s: (full_ms - established_ms) as f64 / 1000.0,
        withdraw_s: (withdrawal.empty_ms - withdrawal.trigger_ms) as f64 / 1000.0,
        peak_rss_bytes: rss.peak,
        rss_after_announce_bytes: rss_after_announce,
        withdraw_first_effect_s: (withdrawal.first_effect_ms - withdrawal.trigger_ms) as f64
            / 1000.0,
        withdrawals_received: withdrawal.withdrawals,
        session_closed: withdrawal.closed,
        setup_s,
        method: sender.method(),
    })
}

/// Waits until every receiving session is Established; answers the earliest Established time
/// (unix ms, from the receiver).
fn await_established(
    receiver: &mut Receiver,
    case: &RunCase<'_>,
    deadline: Instant,
) -> Result<i64> {
    loop {
        let sessions = receiver.control.sessions()?;
        if sessions.len() == case.peers && sessions.values().all(|session| session.established) {
            return Ok(sessions
                .values()
                .filter_map(|session| session.since_ms)
                .min()
                .unwrap_or_else(unix_ms));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: sessions never Established: {sessions:?}",
                case.sender
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until every session holds every route; answers when (unix ms).
fn await_announced(
    receiver: &mut Receiver,
    case: &RunCase<'_>,
    deadline: Instant,
    rss: &mut RssPeak,
) -> Result<i64> {
    loop {
        let sessions = receiver.control.sessions()?;
        let now = unix_ms();
        if sessions
            .values()
            .all(|session| session.imported >= case.routes())
        {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: the receiver never held every route: {sessions:?}",
                case.sender
            ));
        }
        rss.poll();
        std::thread::sleep(POLL);
    }
}

/// The withdraw-all phase, seen from the receiver (times in unix ms).
#[derive(Debug)]
struct Withdrawal {
    trigger_ms: i64,
    /// When the receiver was first seen holding fewer routes (`empty_ms` if never seen).
    first_effect_ms: i64,
    empty_ms: i64,
    withdrawals: u64,
    closed: bool,
}

/// Triggers the sender's withdrawal and waits until the receiver holds no route; every route
/// must have been withdrawn by an UPDATE (or, for a sender that closes the session right after
/// its withdrawals, counted while the session was still up).
fn withdraw_all(
    receiver: &mut Receiver,
    sender: &mut dyn Sender,
    case: &RunCase<'_>,
    timeout: Duration,
    rss: &mut RssPeak,
) -> Result<Withdrawal> {
    let withdrawals_before = withdraws_received(&receiver.control.sessions()?);
    let trigger_ms = unix_ms();
    sender.withdraw_all()?;
    let deadline = Instant::now() + timeout;
    let mut most_withdrawals = 0;
    let mut first_effect_ms = None;
    let (empty_ms, after) = loop {
        let sessions = receiver.control.sessions()?;
        let now = unix_ms();
        let held: u64 = sessions.values().map(|session| session.imported).sum();
        if first_effect_ms.is_none() && held < case.routes_on_every_session() {
            first_effect_ms = Some(now);
        }
        if sessions.values().all(|session| session.established) {
            most_withdrawals =
                most_withdrawals.max(withdraws_received(&sessions) - withdrawals_before);
        }
        if sessions.values().all(|session| session.imported == 0) {
            break (now, sessions);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{}: the receiver still holds routes: {sessions:?}",
                case.sender
            ));
        }
        rss.poll();
        std::thread::sleep(POLL);
    };
    rss.sample();
    // The receiver's counters restart with the session: for a sender that closes the session
    // right after its withdrawals (topologyd's SIGTERM), the evidence that they were sent is the
    // most the receiver had counted while the session was still up.
    let closed = !after.values().all(|session| session.established);
    let withdrawals = if closed {
        most_withdrawals
    } else {
        withdraws_received(&after) - withdrawals_before
    };
    if withdrawals < case.routes_on_every_session() && !closed {
        return Err(format!(
            "{}: the receiver emptied after {withdrawals} withdrawals of {}; session closed: {closed}",
            case.sender,
            case.routes_on_every_session()
        ));
    }
    Ok(Withdrawal {
        trigger_ms,
        first_effect_ms: first_effect_ms.unwrap_or(empty_ms),
        empty_ms,
        withdrawals,
        closed,
    })
}

/// The withdrawals the receiver counted, summed over its sessions.
fn withdraws_received(sessions: &BTreeMap<String, Session>) -> u64 {
    sessions
        .values()
        .map(|session| session.withdraws_received)
        .sum()
}
