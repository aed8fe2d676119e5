//! What each location's BIRD holds, read from the outside with `birdc`, and the continuous
//! route watcher ([`RouteWatcher`]) that records every moment a watched prefix was missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// How often the [`RouteWatcher`] samples every watched BIRD.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long one `birdc` call may take.
const BIRDC_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `birdc -s SOCKET ARGUMENTS…` with a timeout and returns its stdout (the launchers'
/// own command runner); a BIRD that does not answer on its socket is an error too.
pub(super) fn birdc(socket: &Path, arguments: &[&str]) -> Result<String, String> {
    let mut command = Command::new("birdc");
    command.arg("-s").arg(socket).args(arguments);
    let output =
        crate::peers::process::run(crate::peers::Daemon::Bird, &mut command, BIRDC_TIMEOUT)
            .map_err(|error| error.to_string())?;
    if output.contains("Unable to connect to server") {
        return Err(format!("birdc {arguments:?}: {output}"));
    }
    Ok(output)
}

/// The prefixes in BIRD's two master tables learnt over the session with the daemon.
pub(super) fn bird_prefixes(socket: &Path) -> Result<BTreeSet<IpNet>, String> {
    let mut prefixes = BTreeSet::new();
    for table in ["master4", "master6"] {
        let output = birdc(
            socket,
            &["show", "route", "table", table, "protocol", "peer"],
        )?;
        prefixes.extend(parse_route_prefixes(&output)?);
    }
    Ok(prefixes)
}

/// Parses the prefixes out of `birdc show route` (one header line per prefix, starting in column
/// 0; further routes of a prefix and attribute lines are indented).
pub(super) fn parse_route_prefixes(output: &str) -> Result<BTreeSet<IpNet>, String> {
    let mut prefixes = BTreeSet::new();
    for line in output.lines() {
        if line.trim().is_empty()
            || line.starts_with(char::is_whitespace)
            || line.starts_with("BIRD ")
            || line.starts_with("Table ")
        {
            continue;
        }
        let token = line.split_whitespace().next().unwrap_or_default();
        let prefix =
            IpNet::from_str(token).map_err(|_| format!("unexpected birdc line: {line}"))?;
        prefixes.insert(prefix);
    }
    Ok(prefixes)
}

/// A moment a watched BIRD did not hold a watched prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRoute {
    /// Since the watcher started.
    pub at: Duration,
    pub location: String,
    pub prefix: IpNet,
}

/// What a [`RouteWatcher`] saw.
#[derive(Debug, Clone, Default)]
pub struct WatchReport {
    /// How long the watcher ran.
    pub duration: Duration,
    /// Successful samples per watched location.
    pub samples: BTreeMap<String, u64>,
    /// The longest time between two successful samples (or from the start to the first one,
    /// or from the last one to the end), per location: how continuous the check was.
    pub longest_gap: BTreeMap<String, Duration>,
    /// Every sample in which a watched prefix was missing.
    pub missing: Vec<MissingRoute>,
    /// Samples that failed (birdc errors), with the location.
    pub errors: Vec<(Duration, String, String)>,
}

impl WatchReport {
    /// The longest gap over every location.
    pub fn worst_gap(&self) -> Duration {
        self.longest_gap
            .values()
            .copied()
            .max()
            .unwrap_or(self.duration)
    }
}

/// A thread that samples a set of BIRDs every [`WATCH_INTERVAL`] and records any moment one of
/// the watched prefixes is missing at any of them, until [`RouteWatcher::finish`].
#[derive(Debug)]
pub struct RouteWatcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<WatchReport>>,
}

impl RouteWatcher {
    pub(super) fn start(targets: Vec<(String, PathBuf)>, prefixes: Vec<IpNet>) -> RouteWatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || watch_loop(&targets, &prefixes, &flag));
        RouteWatcher {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the watcher and returns what it saw.
    pub fn finish(mut self) -> WatchReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for RouteWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn watch_loop(targets: &[(String, PathBuf)], prefixes: &[IpNet], stop: &AtomicBool) -> WatchReport {
    let started = Instant::now();
    let mut report = WatchReport::default();
    let mut last_success: BTreeMap<String, Duration> = targets
        .iter()
        .map(|(name, _)| (name.clone(), Duration::ZERO))
        .collect();
    while !stop.load(Ordering::SeqCst) {
        let round = Instant::now();
        for (name, socket) in targets {
            let result = bird_prefixes(socket);
            let at = started.elapsed();
            match result {
                Ok(held) => {
                    *report.samples.entry(name.clone()).or_default() += 1;
                    let previous = last_success.insert(name.clone(), at).unwrap_or_default();
                    let gap = report.longest_gap.entry(name.clone()).or_default();
                    *gap = (*gap).max(at.saturating_sub(previous));
                    for prefix in prefixes {
                        if !held.contains(prefix) {
                            report.missing.push(MissingRoute {
                                at,
                                location: name.clone(),
                                prefix: *prefix,
                            });
                        }
                    }
                }
                Err(error) => report.errors.push((at, name.clone(), error)),
            }
        }
        if let Some(rest) = WATCH_INTERVAL.checked_sub(round.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    report.duration = started.elapsed();
    for (name, last) in last_success {
        let gap = report.longest_gap.entry(name).or_default();
        *gap = (*gap).max(report.duration.saturating_sub(last));
    }
    report
}
