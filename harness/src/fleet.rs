//! Fleet harness for the rollout end-to-end tests: N real `topologyd` instances (one per
//! location), each peering with its own real BIRD 2, all scraped by one real Prometheus, plus
//! what a test needs around `topoctl rollout`.
//!
//! Owns: starting and stopping the fleet ([`TestFleet`]), writing the controller's fleet file
//! (locations, client credentials; the test supplies the waves and gates), reading each
//! location's state from the outside (what its BIRD holds, its running generation from
//! `/metrics`, its audit log), the continuous route watcher ([`RouteWatcher`]), running the
//! controller ([`TestFleet::rollout`], [`RolloutRun`]) and the leftover-process check
//! ([`leftover_processes`]).
//!
//! Must not touch: the daemon's or the controller's internals — everything here goes through
//! the binaries, their files and the peers' own view, like an operator's tooling would.
//!
//! Every location gets its own `127.a.b.c` address (from [`crate::peers::alloc`]) for its BGP
//! listener, admin listener and control API, its own state directory (the launcher's temporary
//! directory) and its own audit log; one [`ControlPki`] issues every daemon's server certificate
//! (for `localhost`) and the controller's client certificate. Prometheus scrapes every daemon's
//! `/metrics` every second with a static `location` label per target. Dropping the fleet kills
//! every process it started (each launcher's `Drop`); a [`RolloutRun`] kills its controller on
//! drop.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;

use crate::peers::{
    BgpPeer, BirdPeer, Family, GracefulRestart, Labels, PeerSpec, Prometheus, ReceivedRoute, alloc,
};
use crate::topologyd::{
    ControlPki, ControlSection, DaemonConfig, LaunchError, NeighborConfig, PkiError, TlsIdentity,
    Topoctl, TopoctlOutput, Topologyd, binaries,
};

/// The daemons' ASN.
pub const LOCAL_ASN: u32 = 13335;
/// Every BIRD's ASN.
pub const BIRD_ASN: u32 = 64512;
/// The BIRD neighbor's name in each daemon's configuration.
pub const PEER_NAME: &str = "edge-bird";
/// The common name of the controller's client certificate (role `admin` at every daemon).
pub const CONTROLLER_IDENTITY: &str = "rollout-controller";
/// The name the daemons' server certificate is valid for.
pub const SERVER_NAME: &str = "localhost";
/// How long the fleet may take to converge, and the default wait of the helpers: generous,
/// because a loaded 2-core machine runs many daemons (and compilers) at once.
pub const WAIT: Duration = Duration::from_secs(60);
/// How often the [`RouteWatcher`] samples every watched BIRD.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How long one `birdc` call may take.
const BIRDC_TIMEOUT: Duration = Duration::from_secs(10);

/// A failure of the fleet harness, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("{location}: {source}")]
    Launch {
        location: String,
        source: LaunchError,
    },
    #[error("{context}: {source}")]
    Peer {
        context: String,
        source: crate::peers::Error,
    },
    #[error("TLS material: {0}")]
    Pki(#[from] PkiError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("no location `{0}` in the fleet")]
    UnknownLocation(String),
    #[error("{0}")]
    Failed(String),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> FleetError {
    let context = context.into();
    move |source| FleetError::Io { context, source }
}

fn peer_error(context: impl Into<String>) -> impl FnOnce(crate::peers::Error) -> FleetError {
    let context = context.into();
    move |source| FleetError::Peer { context, source }
}

/// One location of the fleet: its daemon and the BIRD it peers with.
#[derive(Debug)]
pub struct FleetLocation {
    pub name: String,
    pub daemon: Topologyd,
    pub bird: BirdPeer,
    /// The daemon's audit log (one JSON line per control API mutation).
    pub audit_log: PathBuf,
}

impl FleetLocation {
    /// Where the daemon's control API listens.
    pub fn control(&self) -> SocketAddr {
        self.daemon
            .config
            .control
            .as_ref()
            .map_or(self.daemon.config.admin, |control| control.listen)
    }
}

/// The running generation of a daemon, as its `/metrics` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    pub hash: String,
}

/// N topologyd + BIRD pairs and one Prometheus scraping them; see the module comment.
#[derive(Debug)]
pub struct TestFleet {
    // Dropped in declaration order: daemons and BIRDs first, then Prometheus, then the files.
    locations: Vec<FleetLocation>,
    prometheus: Prometheus,
    client: TlsIdentity,
    pki: ControlPki,
    directory: tempfile::TempDir,
}

impl TestFleet {
    /// Starts one daemon and one BIRD per location, every daemon bootstrapped with `topology`
    /// (`(file name, text)`), waits until every daemon is ready and holds its routes at its BIRD,
    /// then starts Prometheus and waits until it has scraped every daemon.
    pub fn start(locations: &[&str], topology: &[(&str, &str)]) -> Result<TestFleet, FleetError> {
        // Build (or find) the binaries first, so that the times below are the fleet's own.
        let build_started = Instant::now();
        binaries().map_err(|source| FleetError::Launch {
            location: "fleet".to_string(),
            source,
        })?;
        eprintln!(
            "[fleet] topologyd binaries ready after {:.1?}",
            build_started.elapsed()
        );
        let started = Instant::now();
        let directory = tempfile::Builder::new()
            .prefix("topologyd-fleet-")
            .tempdir()
            .map_err(io_error("creating the fleet directory"))?;
        let pki = ControlPki::generate()?;
        let client = pki.client(CONTROLLER_IDENTITY)?;
        let mut members = Vec::new();
        for name in locations {
            members.push(start_location(name, topology, &pki, directory.path())?);
        }
        for member in &mut members {
            if let Err(error) = member.daemon.wait_ready(WAIT) {
                let protocols = member
                    .bird
                    .birdc(&["show", "protocols", "all"])
                    .unwrap_or_else(|error| error.to_string());
                return Err(FleetError::Failed(format!(
                    "{} never converged: {error}\n--- BIRD show protocols all\n{protocols}",
                    member.name
                )));
            }
        }
        let converged = started.elapsed();
        let targets: Vec<(SocketAddr, Labels)> = members
            .iter()
            .map(|member| {
                let labels: Labels = [("location".to_string(), member.name.clone())].into();
                (member.daemon.config.admin, labels)
            })
            .collect();
        let prometheus =
            Prometheus::start_labeled(&targets).map_err(peer_error("starting Prometheus"))?;
        for (target, labels) in &targets {
            prometheus
                .wait_for_target_up(*target, WAIT)
                .map_err(peer_error(format!("Prometheus scraping {labels:?}")))?;
        }
        eprintln!(
            "[fleet] {} locations converged after {converged:.1?}, scraped after {:.1?}; Prometheus at {}",
            members.len(),
            started.elapsed(),
            prometheus.address()
        );
        Ok(TestFleet {
            locations: members,
            prometheus,
            client,
            pki,
            directory,
        })
    }

    /// The locations, in the order given to [`TestFleet::start`].
    pub fn locations(&self) -> &[FleetLocation] {
        &self.locations
    }

    /// The location called `name`.
    pub fn location(&self, name: &str) -> Result<&FleetLocation, FleetError> {
        self.locations
            .iter()
            .find(|location| location.name == name)
            .ok_or_else(|| FleetError::UnknownLocation(name.to_string()))
    }

    /// The location called `name`, mutably (to kill or restart its daemon).
    pub fn location_mut(&mut self, name: &str) -> Result<&mut FleetLocation, FleetError> {
        self.locations
            .iter_mut()
            .find(|location| location.name == name)
            .ok_or_else(|| FleetError::UnknownLocation(name.to_string()))
    }

    /// Every location's name.
    pub fn names(&self) -> Vec<String> {
        self.locations
            .iter()
            .map(|location| location.name.clone())
            .collect()
    }

    pub fn prometheus(&self) -> &Prometheus {
        &self.prometheus
    }

    /// The CA every daemon's certificate chains to.
    pub fn ca(&self) -> &Path {
        &self.pki.ca
    }

    /// The controller's client certificate and key.
    pub fn client(&self) -> &TlsIdentity {
        &self.client
    }

    /// The fleet's own directory (fleet files, controller state directories, audit logs).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// `topoctl` against one location's control API, as the controller's identity.
    pub fn topoctl(&self, name: &str) -> Result<Topoctl, FleetError> {
        let location = self.location(name)?;
        Ok(Topoctl::new(
            location.control(),
            &self.pki.ca,
            self.client.clone(),
        ))
    }

    /// The prefixes BIRD at `name` holds from its daemon (both families, stale ones included).
    pub fn bird_prefixes(&self, name: &str) -> Result<BTreeSet<IpNet>, FleetError> {
        let socket = self.location(name)?.bird.directory().join("bird.ctl");
        bird_prefixes(&socket).map_err(|error| FleetError::Failed(format!("{name}: {error}")))
    }

    /// The routes BIRD at `name` holds from its daemon, with every attribute.
    pub fn bird_routes(&self, name: &str) -> Result<Vec<ReceivedRoute>, FleetError> {
        self.location(name)?
            .bird
            .routes()
            .map_err(peer_error(format!("{name}: BIRD routes")))
    }

    /// Polls every location in `names` until `predicate` holds for the prefixes its BIRD holds.
    pub fn wait_for_birds(
        &self,
        names: &[&str],
        what: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&str, &BTreeSet<IpNet>) -> bool,
    ) -> Result<(), FleetError> {
        let deadline = Instant::now() + timeout;
        for name in names {
            loop {
                let prefixes = self.bird_prefixes(name)?;
                if predicate(name, &prefixes) {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(FleetError::Failed(format!(
                        "timed out after {timeout:?} waiting for {what} at {name}'s BIRD; it holds {prefixes:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The running generation of the daemon at `name`, from its `/metrics`.
    pub fn generation(&self, name: &str) -> Result<Generation, FleetError> {
        let location = self.location(name)?;
        let (status, body) =
            location
                .daemon
                .admin_get("/metrics")
                .map_err(|source| FleetError::Launch {
                    location: name.to_string(),
                    source,
                })?;
        if status != 200 {
            return Err(FleetError::Failed(format!(
                "{name}: GET /metrics answered {status}"
            )));
        }
        parse_generation_info(&body)
            .ok_or_else(|| FleetError::Failed(format!("{name}: no generation in /metrics")))
    }

    /// Every location's running generation, by name.
    pub fn generations(&self) -> Result<BTreeMap<String, Generation>, FleetError> {
        self.locations
            .iter()
            .map(|location| Ok((location.name.clone(), self.generation(&location.name)?)))
            .collect()
    }

    /// How many `POST /v1/apply` requests the daemon at `name` applied (from its audit log).
    pub fn applied_pushes(&self, name: &str) -> Result<usize, FleetError> {
        Ok(self
            .audit(name)?
            .iter()
            .filter(|record| {
                event_field(record, "endpoint").contains("/v1/apply")
                    && event_field(record, "verdict") == "applied"
            })
            .count())
    }

    /// The audit log of the daemon at `name`, one JSON value per line.
    pub fn audit(&self, name: &str) -> Result<Vec<Value>, FleetError> {
        let path = &self.location(name)?.audit_log;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(FleetError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                });
            }
        };
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|error| {
                    FleetError::Failed(format!("{name}: bad audit line ({error}): {line}"))
                })
            })
            .collect()
    }

    /// Writes the controller's fleet file `file_name` into the fleet directory: the client
    /// credentials (`[defaults]`), one `[[location]]` per daemon (name, control address, server
    /// name), then `plan` verbatim (the `[[wave]]` and `[[gate]]` tables), where `{prometheus}`
    /// stands for the fleet's Prometheus address.
    pub fn write_fleet_file(&self, file_name: &str, plan: &str) -> Result<PathBuf, FleetError> {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "# Written by the fleet harness (src/fleet.rs) for one end-to-end test run.\n[defaults]"
        );
        let _ = writeln!(text, "ca = \"{}\"", self.pki.ca.display());
        let _ = writeln!(
            text,
            "certificate = \"{}\"",
            self.client.certificate.display()
        );
        let _ = writeln!(
            text,
            "private_key = \"{}\"",
            self.client.private_key.display()
        );
        for location in &self.locations {
            let _ = writeln!(
                text,
                "\n[[location]]\nname = \"{}\"\ncontrol = \"{}\"\nserver_name = \"{SERVER_NAME}\"",
                location.name,
                location.control()
            );
        }
        text.push('\n');
        text.push_str(&plan.replace("{prometheus}", &self.prometheus.address().to_string()));
        let path = self.directory.path().join(file_name);
        std::fs::write(&path, text).map_err(io_error(format!("writing {}", path.display())))?;
        Ok(path)
    }

    /// Writes topology files into `fleet-dir/name/` and returns their paths.
    pub fn write_topology(
        &self,
        name: &str,
        files: &[(&str, &str)],
    ) -> Result<Vec<PathBuf>, FleetError> {
        crate::topologyd::write_files(&self.directory.path().join(name), files).map_err(|source| {
            FleetError::Launch {
                location: "fleet".to_string(),
                source,
            }
        })
    }

    /// A new, empty controller state directory `fleet-dir/name`.
    pub fn state_dir(&self, name: &str) -> Result<PathBuf, FleetError> {
        let path = self.directory.path().join(name);
        std::fs::create_dir_all(&path).map_err(io_error(format!("creating {}", path.display())))?;
        Ok(path)
    }

    /// Runs `topoctl rollout ARGUMENTS…` to completion (at most `timeout`).
    pub fn rollout(
        &self,
        arguments: &[&str],
        timeout: Duration,
    ) -> Result<TopoctlOutput, FleetError> {
        let mut run = RolloutRun::spawn(arguments)?;
        run.wait(timeout)
    }

    /// Starts `topoctl rollout ARGUMENTS…` in the background (add `--json` to follow its events).
    pub fn spawn_rollout(&self, arguments: &[&str]) -> Result<RolloutRun, FleetError> {
        RolloutRun::spawn(arguments)
    }

    /// Starts a [`RouteWatcher`] sampling every BIRD except those in `excluded`, every
    /// [`WATCH_INTERVAL`], recording every sample in which one of `prefixes` is missing.
    pub fn watch(&self, prefixes: &[IpNet], excluded: &[&str]) -> RouteWatcher {
        let targets: Vec<(String, PathBuf)> = self
            .locations
            .iter()
            .filter(|location| !excluded.contains(&location.name.as_str()))
            .map(|location| {
                (
                    location.name.clone(),
                    location.bird.directory().join("bird.ctl"),
                )
            })
            .collect();
        RouteWatcher::start(targets, prefixes.to_vec())
    }

    /// Substrings of the command line of every process this fleet started (their directories):
    /// after the fleet is dropped, [`leftover_processes`] with these must find nothing.
    pub fn process_markers(&self) -> Vec<String> {
        let mut markers = vec![
            self.directory.path().display().to_string(),
            self.prometheus.directory().display().to_string(),
        ];
        for location in &self.locations {
            markers.push(location.daemon.directory().display().to_string());
            markers.push(location.bird.directory().display().to_string());
        }
        markers
    }

    /// A summary of every location for failure messages: generation, BIRD prefixes, log tails.
    pub fn report(&self) -> String {
        let mut text = String::new();
        for location in &self.locations {
            let generation = self
                .generation(&location.name)
                .map_or_else(|error| error.to_string(), |g| format!("{g:?}"));
            let prefixes = self
                .bird_prefixes(&location.name)
                .map_or_else(|error| error.to_string(), |p| format!("{p:?}"));
            let _ = writeln!(
                text,
                "--- {}: {generation}\n    BIRD: {prefixes}\n    topologyd log:\n{}",
                location.name,
                location.daemon.log_tail()
            );
        }
        text
    }
}

fn start_location(
    name: &str,
    topology: &[(&str, &str)],
    pki: &ControlPki,
    fleet_directory: &Path,
) -> Result<FleetLocation, FleetError> {
    let mut config = DaemonConfig::new(name, LOCAL_ASN);
    let mut control = ControlSection::new(
        config.local.ip(),
        pki,
        &[(CONTROLLER_IDENTITY, "admin"), ("sre-reader", "reader")],
    );
    // One shared PKI directory, but an audit log per daemon.
    control.audit_log = fleet_directory.join(format!("{name}-audit.jsonl"));
    let audit_log = control.audit_log.clone();
    config.control = Some(control);
    let bird_address = alloc::loopback_v4();
    let endpoint = SocketAddr::new(
        IpAddr::V4(bird_address),
        alloc::free_port(IpAddr::V4(bird_address)),
    );
    let spec = PeerSpec::new(BIRD_ASN, endpoint, LOCAL_ASN, config.local)
        .families(vec![Family::Ipv4Unicast, Family::Ipv6Unicast])
        .passive(true)
        .hold_time(30)
        .graceful_restart(Some(GracefulRestart {
            restart_time: 120,
            stale_time: 360,
        }));
    let bird = BirdPeer::start(spec).map_err(peer_error(format!("{name}: starting BIRD")))?;
    config
        .neighbors
        .push(NeighborConfig::new(PEER_NAME, endpoint, BIRD_ASN));
    let daemon = Topologyd::start(config, topology).map_err(|source| FleetError::Launch {
        location: name.to_string(),
        source,
    })?;
    Ok(FleetLocation {
        name: name.to_string(),
        daemon,
        bird,
        audit_log,
    })
}

/// The `generation` and `hash` labels of the `topologyd_generation_info` sample whose value is 1.
pub fn parse_generation_info(metrics: &str) -> Option<Generation> {
    metrics.lines().find_map(|line| {
        let labels = line.strip_prefix("topologyd_generation_info{")?;
        let (labels, value) = labels.rsplit_once("} ")?;
        if value.trim().parse::<f64>().ok()? != 1.0 {
            return None;
        }
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            let rest = &labels[start..];
            Some(rest[..rest.find('"')?].to_string())
        };
        Some(Generation {
            number: label("generation")?.parse().ok()?,
            hash: label("hash")?,
        })
    })
}

/// Runs `birdc -s SOCKET ARGUMENTS…` with a timeout and returns its stdout.
fn birdc(socket: &Path, arguments: &[&str]) -> Result<String, String> {
    let mut child = Command::new("birdc")
        .arg("-s")
        .arg(socket)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("running birdc: {error}"))?;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stdout {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        }
        text
    });
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let output = reader.join().unwrap_or_default();
                if !status.success() || output.contains("Unable to connect to server") {
                    return Err(format!("birdc {arguments:?}: {status}: {output}"));
                }
                return Ok(output);
            }
            Ok(None) if started.elapsed() < BIRDC_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "birdc {arguments:?}: killed after {BIRDC_TIMEOUT:?}"
                ));
            }
            Err(error) => return Err(format!("waiting for birdc: {error}")),
        }
    }
}

/// The prefixes in BIRD's two master tables learnt over the session with the daemon.
fn bird_prefixes(socket: &Path) -> Result<BTreeSet<IpNet>, String> {
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
fn parse_route_prefixes(output: &str) -> Result<BTreeSet<IpNet>, String> {
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
    fn start(targets: Vec<(String, PathBuf)>, prefixes: Vec<IpNet>) -> RouteWatcher {
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

/// One `topoctl rollout …` process: its stdout lines (JSON events with `--json`) are collected
/// by a reader thread; stderr goes to a file. Killed (SIGKILL, with its process group) on drop.
#[derive(Debug)]
pub struct RolloutRun {
    child: Option<Child>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
    /// Every stdout line received so far.
    pub stdout: Vec<String>,
    stderr_path: PathBuf,
    _stderr_directory: tempfile::TempDir,
    started: Instant,
}

impl RolloutRun {
    fn spawn(arguments: &[&str]) -> Result<RolloutRun, FleetError> {
        let binary = binaries()
            .map_err(|source| FleetError::Launch {
                location: "topoctl".to_string(),
                source,
            })?
            .join("topoctl");
        let stderr_directory = tempfile::Builder::new()
            .prefix("topologyd-rollout-")
            .tempdir()
            .map_err(io_error("creating a directory for topoctl's stderr"))?;
        let stderr_path = stderr_directory.path().join("stderr.log");
        let stderr =
            std::fs::File::create(&stderr_path).map_err(io_error("creating stderr.log"))?;
        let mut child = Command::new(binary)
            .arg("rollout")
            .args(arguments)
            .env_remove("TOPOCTL_DAEMON")
            .env_remove("TOPOCTL_SERVER_NAME")
            .env_remove("TOPOCTL_CERT")
            .env_remove("TOPOCTL_KEY")
            .env_remove("TOPOCTL_CA")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .map_err(io_error("starting topoctl rollout"))?;
        let (sender, lines) = channel();
        let stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(RolloutRun {
            child: Some(child),
            lines,
            reader: Some(reader),
            stdout: Vec::new(),
            stderr_path,
            _stderr_directory: stderr_directory,
            started: Instant::now(),
        })
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the controller wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Every stdout line that parses as JSON (the `--json` events) received so far.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits for the next stdout line that is a JSON event satisfying `predicate`, and returns
    /// it. Lines read on the way are kept in [`RolloutRun::stdout`].
    pub fn wait_event(
        &mut self,
        what: &str,
        timeout: Duration,
        mut predicate: impl FnMut(&Value) -> bool,
    ) -> Result<Value, FleetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("[rollout +{:.1?}] {line}", self.started.elapsed());
                    let event = serde_json::from_str::<Value>(&line).ok();
                    self.stdout.push(line);
                    if let Some(event) = event
                        && predicate(&event)
                    {
                        return Ok(event);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(FleetError::Failed(format!(
                        "timed out after {timeout:?} waiting for {what}; stdout so far:\n{}\n--- stderr\n{}",
                        self.stdout.join("\n"),
                        self.stderr()
                    )));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(FleetError::Failed(format!(
                        "topoctl rollout closed stdout before {what}; stdout:\n{}\n--- stderr\n{}",
                        self.stdout.join("\n"),
                        self.stderr()
                    )));
                }
            }
        }
    }

    /// SIGKILL to the controller's process group: a crash, as far as the controller knows.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg("--")
                .arg(format!("-{}", child.id()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            eprintln!("[rollout +{:.1?}] {line}", self.started.elapsed());
            self.stdout.push(line);
        }
    }

    /// Waits (at most `timeout`, then kills it) for the controller to exit; returns its exit
    /// code and everything it printed.
    pub fn wait(&mut self, timeout: Duration) -> Result<TopoctlOutput, FleetError> {
        let deadline = Instant::now() + timeout;
        let Some(mut child) = self.child.take() else {
            return Err(FleetError::Failed("topoctl rollout is not running".into()));
        };
        let status = loop {
            while let Ok(line) = self.lines.try_recv() {
                eprintln!("[rollout +{:.1?}] {line}", self.started.elapsed());
                self.stdout.push(line);
            }
            match child.try_wait().map_err(io_error("waiting for topoctl"))? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    self.child = Some(child);
                    self.kill();
                    return Err(FleetError::Failed(format!(
                        "topoctl rollout still running after {timeout:?}; killed. stdout:\n{}\n--- stderr\n{}",
                        self.stdout.join("\n"),
                        self.stderr()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.drain();
        Ok(TopoctlOutput {
            code: status.code(),
            stdout: self.stdout.join("\n"),
            stderr: self.stderr(),
        })
    }
}

impl Drop for RolloutRun {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Processes whose command line contains one of `markers` (see
/// [`TestFleet::process_markers`]), as `pid: command line`. Reads `/proc`.
/// The JSON events of `topoctl rollout --json` output, one per line (other lines skipped).
pub fn rollout_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// An event's `event` name (empty if absent).
pub fn event_name(event: &Value) -> &str {
    event_field(event, "event")
}

/// A string field of an event or audit record (empty if absent or not a string).
pub fn event_field<'a>(event: &'a Value, name: &str) -> &'a str {
    event.get(name).and_then(Value::as_str).unwrap_or("")
}

/// The last record of a rollout state directory's journal (empty if there is none).
pub fn journal_tail(state_dir: &Path) -> String {
    std::fs::read_to_string(state_dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

pub fn leftover_processes(markers: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|byte| byte.is_ascii_digit()) || pid == own {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let command_line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if markers
            .iter()
            .any(|marker| !marker.is_empty() && command_line.contains(marker.as_str()))
        {
            found.push(format!("{pid}: {}", command_line.trim()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_running_generation() {
        let metrics = "# TYPE topologyd_generation_info gauge\ntopologyd_generation_info{generation=\"3\",hash=\"ab12\"} 1\ntopologyd_generation 3\n";
        assert_eq!(
            parse_generation_info(metrics),
            Some(Generation {
                number: 3,
                hash: "ab12".into()
            })
        );
        assert_eq!(parse_generation_info("topologyd_generation 3\n"), None);
    }

    #[test]
    fn parses_birdc_route_lists() {
        let output = "Table master4:\n1.1.1.0/24           unreachable [peer 21:10:48.470] * (100) [AS13335i]\n                     unreachable [other 21:10:48.470] (100) [AS13335i]\n2606:4700:4700::/48  unreachable [peer 21:10:48.470] * (100) [AS13335i]\n";
        let prefixes = parse_route_prefixes(output).expect("parses");
        assert_eq!(prefixes.len(), 2);
        assert!(prefixes.contains(&"1.1.1.0/24".parse().expect("prefix")));
        assert!(parse_route_prefixes("garbage line\n").is_err());
    }
}
