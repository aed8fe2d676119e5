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
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;

mod error;
mod rollout_run;
mod watcher;

pub use error::FleetError;
use error::{io_error, peer_error};
pub use rollout_run::{
    RolloutRun, event_field, event_name, journal_tail, leftover_processes, rollout_events,
};
use watcher::bird_prefixes;
pub use watcher::{MissingRoute, RouteWatcher, WATCH_INTERVAL, WatchReport};

use crate::peers::{BgpPeer, BirdPeer, Labels, Prometheus, ReceivedRoute, alloc};
use crate::topologyd::{
    ControlPki, ControlSection, DaemonConfig, NeighborConfig, TlsIdentity, Topoctl, TopoctlOutput,
    Topologyd, binaries,
};

use crate::daemon_fixture::bird_spec;
/// The daemons' ASN and every BIRD's: the daemon fixture's, whose passive BIRD (with graceful
/// restart) each location peers with.
pub use crate::daemon_fixture::{BIRD_ASN, LOCAL_ASN};
/// The BIRD neighbor's name in each daemon's configuration.
pub const PEER_NAME: &str = "edge-bird";
/// The common name of the controller's client certificate (role `admin` at every daemon).
pub const CONTROLLER_IDENTITY: &str = "rollout-controller";
/// The name the daemons' server certificate is valid for.
pub const SERVER_NAME: &str = "localhost";
/// How long the fleet may take to converge, and the default wait of the helpers: generous,
/// because a loaded 2-core machine runs many daemons (and compilers) at once.
pub const WAIT: Duration = Duration::from_secs(60);
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
        TestFleet::start_configured(locations, topology, &|_, _| {})
    }

    /// [`TestFleet::start`], with each daemon's configuration passed through `configure`
    /// (location name, configuration) before it starts (e.g. `[health.vars]` at some only).
    pub fn start_configured(
        locations: &[&str],
        topology: &[(&str, &str)],
        configure: &dyn Fn(&str, &mut DaemonConfig),
    ) -> Result<TestFleet, FleetError> {
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
            members.push(start_location(
                name,
                topology,
                &pki,
                directory.path(),
                configure,
            )?);
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
    configure: &dyn Fn(&str, &mut DaemonConfig),
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
    let bird = BirdPeer::start(bird_spec(&config, endpoint))
        .map_err(peer_error(format!("{name}: starting BIRD")))?;
    config
        .neighbors
        .push(NeighborConfig::new(PEER_NAME, endpoint, BIRD_ASN));
    configure(name, &mut config);
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

/// Topology files written as owned strings, as the launchers take them (`(name, text)`).
pub fn borrow_files<'a>(files: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    files
        .iter()
        .map(|(file, text)| (*file, text.as_str()))
        .collect()
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

#[cfg(test)]
mod tests;
