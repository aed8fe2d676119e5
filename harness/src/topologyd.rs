//! Launcher for our own daemon in end-to-end tests: builds the `topologyd` binary once per test
//! process, writes its configuration and topology files into a temporary directory, runs it as
//! a child process (its own process group, killed on drop), and talks to its admin listener.
//!
//! The binary is built with a nested `cargo build -p topologyd --bins`: the outer `cargo test`
//! does not hold the build lock while tests run, and integration tests of this package cannot
//! see another package's `CARGO_BIN_EXE_*`.
//!
//! Also here: [`ControlPki`] (a throw-away CA, the daemon's server certificate and client
//! certificates, generated with rcgen for the mTLS control API), [`ControlSection`] (the
//! daemon's `[control]` table), [`HealthSection`] (its `[health]` table) and [`Topoctl`] (runs
//! the real `topoctl` binary against a daemon as one client identity).

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A failure of the launcher, with what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("building topologyd failed: {0}")]
    Build(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("topologyd exited ({status}); log:\n{log}")]
    Exited { status: String, log: String },
    #[error("timed out after {timeout:?} waiting for {what}; topologyd log:\n{log}")]
    Timeout {
        what: String,
        timeout: Duration,
        log: String,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let context = context.into();
    move |source| LaunchError::Io { context, source }
}

/// Builds the daemon binaries (once per process) and returns the directory holding them.
/// `TOPOLOGYD_BIN_DIR` names a directory of already built binaries instead (benchmarks point it
/// at `target/release`).
pub fn binaries() -> Result<PathBuf, LaunchError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Some(directory) = std::env::var_os("TOPOLOGYD_BIN_DIR") {
                return Ok(PathBuf::from(directory));
            }
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let output = Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "topologyd",
                    "-p",
                    "topoctl",
                    "--bins",
                ])
                .current_dir(manifest)
                .output()
                .map_err(|error| error.to_string())?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| manifest.join("..").join("target"));
            Ok(target.join("debug"))
        })
        .clone()
        .map_err(LaunchError::Build)
}

/// Builds one example of the daemon crate (`daemon/examples/NAME.rs`; once per process and
/// name) and returns its path, beside [`binaries`] in `examples/`. With `TOPOLOGYD_BIN_DIR`
/// set, the example must already be built there.
pub fn example(name: &str) -> Result<PathBuf, LaunchError> {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let directory = binaries()?.join("examples");
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if std::env::var_os("TOPOLOGYD_BIN_DIR").is_none() && !built.iter().any(|done| done == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let output = Command::new(cargo)
            .args(["build", "--quiet", "-p", "topologyd", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .map_err(io_error(format!("running cargo build --example {name}")))?;
        if !output.status.success() {
            return Err(LaunchError::Build(
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        built.push(name.to_string());
    }
    Ok(directory.join(name))
}

/// One BGP neighbor of the daemon under test.
#[derive(Debug, Clone)]
pub struct NeighborConfig {
    pub name: String,
    pub address: SocketAddr,
    pub asn: u32,
    pub families: Vec<&'static str>,
    /// The IPv4 next hop announced; the daemon's default is the session's local address, a
    /// loopback address here, which GoBGP treats as withdraw and FRR calls martian.
    pub next_hop_ipv4: Option<Ipv4Addr>,
    pub next_hop_ipv6: Option<Ipv6Addr>,
    pub md5_key: Option<String>,
    pub ttl_security_hops: Option<u8>,
    pub hold_time_seconds: u16,
    /// RFC 9687 send hold time; `None` leaves the daemon's default.
    pub send_hold_time_seconds: Option<u32>,
    pub passive: bool,
}

impl NeighborConfig {
    /// An active IPv4+IPv6 neighbor with a 30 s hold time.
    pub fn new(name: &str, address: SocketAddr, asn: u32) -> NeighborConfig {
        NeighborConfig {
            name: name.to_string(),
            address,
            asn,
            families: vec!["ipv4", "ipv6"],
            next_hop_ipv4: None,
            next_hop_ipv6: Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            md5_key: None,
            ttl_security_hops: None,
            hold_time_seconds: 30,
            send_hold_time_seconds: None,
            passive: false,
        }
    }
}

/// The daemon under test's configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub location: String,
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    /// Source address of outgoing sessions and the BGP listener's address.
    pub local: SocketAddr,
    pub admin: SocketAddr,
    pub neighbors: Vec<NeighborConfig>,
    pub withdraw_on_stop: bool,
    pub restart_time_seconds: u16,
    /// The mTLS control API, if any.
    pub control: Option<ControlSection>,
    /// The `[health]` table, if any (the daemon's defaults apply without it).
    pub health: Option<HealthSection>,
    /// Extra TOML appended verbatim after the other top-level tables.
    pub extra: String,
}

/// The daemon's `[health]` table: the location-wide health-check policy.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSection {
    pub enabled: bool,
    pub fail_static_share: Option<f64>,
    pub fail_static_min_services: Option<usize>,
    pub min_other_locations: Option<usize>,
    pub address_interface: Option<String>,
    /// `[health.vars]`: values for `{name}` placeholders in probe targets, in order.
    pub vars: Vec<(String, String)>,
}

impl Default for HealthSection {
    /// Enabled, every policy value left to the daemon's default, no vars.
    fn default() -> HealthSection {
        HealthSection {
            enabled: true,
            fail_static_share: None,
            fail_static_min_services: None,
            min_other_locations: None,
            address_interface: None,
            vars: Vec::new(),
        }
    }
}

impl HealthSection {
    fn render(&self, text: &mut String) {
        let _ = writeln!(text, "[health]");
        let _ = writeln!(text, "enabled = {}", self.enabled);
        if let Some(share) = self.fail_static_share {
            let _ = writeln!(text, "fail_static_share = {share:?}");
        }
        if let Some(count) = self.fail_static_min_services {
            let _ = writeln!(text, "fail_static_min_services = {count}");
        }
        if let Some(count) = self.min_other_locations {
            let _ = writeln!(text, "min_other_locations = {count}");
        }
        if let Some(interface) = &self.address_interface {
            let _ = writeln!(text, "address_interface = {interface:?}");
        }
        if !self.vars.is_empty() {
            let _ = writeln!(text, "[health.vars]");
            for (name, value) in &self.vars {
                let _ = writeln!(text, "{name} = {value:?}");
            }
        }
    }
}

/// The daemon's `[control]` table: the mTLS control API.
#[derive(Debug, Clone)]
pub struct ControlSection {
    pub listen: SocketAddr,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    pub client_ca: PathBuf,
    /// Certificate common name → `admin` or `reader`.
    pub roles: Vec<(String, String)>,
    pub audit_log: PathBuf,
}

impl ControlSection {
    /// The control API on a free port of `address`, with the daemon's material from `pki` and
    /// the audit log in the PKI's directory.
    pub fn new(address: IpAddr, pki: &ControlPki, roles: &[(&str, &str)]) -> ControlSection {
        ControlSection {
            listen: SocketAddr::new(address, crate::peers::alloc::free_port(address)),
            certificate: pki.server.certificate.clone(),
            private_key: pki.server.private_key.clone(),
            client_ca: pki.ca.clone(),
            roles: roles
                .iter()
                .map(|(identity, role)| ((*identity).to_string(), (*role).to_string()))
                .collect(),
            audit_log: pki.directory().join("audit.jsonl"),
        }
    }

    fn render(&self, text: &mut String) {
        let _ = writeln!(text, "[control]");
        let _ = writeln!(text, "listen = \"{}\"", self.listen);
        let _ = writeln!(text, "certificate = \"{}\"", self.certificate.display());
        let _ = writeln!(text, "private_key = \"{}\"", self.private_key.display());
        let _ = writeln!(text, "client_ca = \"{}\"", self.client_ca.display());
        let _ = writeln!(text, "audit_log = \"{}\"", self.audit_log.display());
        let roles: Vec<String> = self
            .roles
            .iter()
            .map(|(identity, role)| format!("\"{identity}\" = \"{role}\""))
            .collect();
        let _ = writeln!(text, "roles = {{ {} }}", roles.join(", "));
    }
}

impl DaemonConfig {
    /// A daemon for `location` on a fresh loopback address, with an admin listener.
    pub fn new(location: &str, local_asn: u32) -> DaemonConfig {
        let address = crate::peers::alloc::loopback_v4();
        let local = SocketAddr::new(
            IpAddr::V4(address),
            crate::peers::alloc::free_port(IpAddr::V4(address)),
        );
        let admin = SocketAddr::new(
            IpAddr::V4(address),
            crate::peers::alloc::free_port(IpAddr::V4(address)),
        );
        DaemonConfig {
            location: location.to_string(),
            local_asn,
            router_id: address,
            local,
            admin,
            neighbors: Vec::new(),
            withdraw_on_stop: false,
            restart_time_seconds: 120,
            control: None,
            health: None,
            extra: String::new(),
        }
    }

    fn render(&self, state_dir: &Path, topology: &[PathBuf]) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "location = \"{}\"", self.location);
        let _ = writeln!(text, "local_asn = {}", self.local_asn);
        let _ = writeln!(text, "router_id = \"{}\"", self.router_id);
        let _ = writeln!(text, "state_dir = \"{}\"", state_dir.display());
        let files: Vec<String> = topology
            .iter()
            .map(|path| format!("\"{}\"", path.display()))
            .collect();
        let _ = writeln!(text, "bootstrap_topology = [{}]", files.join(", "));
        let _ = writeln!(text, "[bgp]\nlisten = [\"{}\"]", self.local);
        let _ = writeln!(
            text,
            "[graceful_restart]\nrestart_time_seconds = {}",
            self.restart_time_seconds
        );
        let _ = writeln!(
            text,
            "[shutdown]\nwithdraw_on_stop = {}\ngrace_seconds = 10",
            self.withdraw_on_stop
        );
        let _ = writeln!(text, "[admin]\nlisten = \"{}\"", self.admin);
        if let Some(control) = &self.control {
            control.render(&mut text);
        }
        if let Some(health) = &self.health {
            health.render(&mut text);
        }
        text.push_str(&self.extra);
        text.push('\n');
        for neighbor in &self.neighbors {
            let _ = writeln!(text, "[[peer]]");
            let _ = writeln!(text, "name = \"{}\"", neighbor.name);
            let _ = writeln!(text, "address = \"{}\"", neighbor.address.ip());
            let _ = writeln!(text, "port = {}", neighbor.address.port());
            let _ = writeln!(text, "asn = {}", neighbor.asn);
            let _ = writeln!(text, "local_address = \"{}\"", self.local.ip());
            let families: Vec<String> = neighbor
                .families
                .iter()
                .map(|family| format!("\"{family}\""))
                .collect();
            let _ = writeln!(text, "families = [{}]", families.join(", "));
            if let Some(next_hop) = neighbor.next_hop_ipv4 {
                let _ = writeln!(text, "next_hop_ipv4 = \"{next_hop}\"");
            }
            if let Some(next_hop) = neighbor.next_hop_ipv6 {
                let _ = writeln!(text, "next_hop_ipv6 = \"{next_hop}\"");
            }
            let _ = writeln!(text, "hold_time_seconds = {}", neighbor.hold_time_seconds);
            if let Some(seconds) = neighbor.send_hold_time_seconds {
                let _ = writeln!(text, "send_hold_time_seconds = {seconds}");
            }
            let _ = writeln!(text, "connect_retry_seconds = 1");
            let _ = writeln!(text, "passive = {}", neighbor.passive);
            if let Some(hops) = neighbor.ttl_security_hops {
                let _ = writeln!(text, "ttl_security_hops = {hops}");
            }
            if neighbor.md5_key.is_some() {
                let _ = writeln!(
                    text,
                    "md5_key_file = \"{}\"",
                    state_dir
                        .with_file_name(format!("{}.md5", neighbor.name))
                        .display()
                );
            }
        }
        text
    }
}

/// A running (or stopped) topologyd child process and its directory.
#[derive(Debug)]
pub struct Topologyd {
    pub config: DaemonConfig,
    directory: tempfile::TempDir,
    config_path: PathBuf,
    log_path: PathBuf,
    environment: Vec<(String, String)>,
    child: Option<Child>,
}

impl Topologyd {
    /// Writes the configuration and the topology files (`(name, text)`), then starts the daemon.
    pub fn start(
        config: DaemonConfig,
        topology: &[(&str, &str)],
    ) -> Result<Topologyd, LaunchError> {
        Topologyd::start_with_environment(config, topology, &[])
    }

    /// [`Topologyd::start`], with extra environment variables for the daemon (e.g.
    /// `NOTIFY_SOCKET`); they are kept for later [`Topologyd::spawn`]s.
    pub fn start_with_environment(
        config: DaemonConfig,
        topology: &[(&str, &str)],
        environment: &[(&str, &str)],
    ) -> Result<Topologyd, LaunchError> {
        let directory = tempfile::Builder::new()
            .prefix("topologyd-test-")
            .tempdir()
            .map_err(io_error("creating the test directory"))?;
        let topology_dir = directory.path().join("topology");
        std::fs::create_dir_all(&topology_dir).map_err(io_error("creating topology/"))?;
        let mut paths = Vec::new();
        for (name, text) in topology {
            let path = topology_dir.join(name);
            std::fs::write(&path, text).map_err(io_error(format!("writing {name}")))?;
            paths.push(path);
        }
        let state_dir = directory.path().join("state");
        for neighbor in &config.neighbors {
            if let Some(key) = &neighbor.md5_key {
                std::fs::write(directory.path().join(format!("{}.md5", neighbor.name)), key)
                    .map_err(io_error("writing an MD5 key"))?;
            }
        }
        let config_path = directory.path().join("topologyd.toml");
        std::fs::write(&config_path, config.render(&state_dir, &paths))
            .map_err(io_error("writing topologyd.toml"))?;
        let log_path = directory.path().join("topologyd.log");
        let mut daemon = Topologyd {
            config,
            directory,
            config_path,
            log_path,
            environment: environment
                .iter()
                .map(|(name, value)| ((*name).to_string(), (*value).to_string()))
                .collect(),
            child: None,
        };
        daemon.spawn()?;
        Ok(daemon)
    }

    /// The daemon's directory (configuration, `state/`, `topology/`, log).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Starts the daemon again on the same directory (after [`Topologyd::kill`] or
    /// [`Topologyd::terminate`]): it recovers its generation from `state/`.
    pub fn spawn(&mut self) -> Result<(), LaunchError> {
        let binary = binaries()?.join("topologyd");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_error("opening the log"))?;
        let log_for_stderr = log.try_clone().map_err(io_error("duplicating the log"))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&self.config_path)
            .env("TOPOLOGYD_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            .process_group(0)
            .spawn()
            .map_err(io_error("starting topologyd"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Rewrites the configuration file (for SIGHUP reload tests).
    pub fn rewrite_config(&mut self, config: DaemonConfig) -> Result<(), LaunchError> {
        let state_dir = self.directory.path().join("state");
        let topology_dir = self.directory.path().join("topology");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&topology_dir)
            .map_err(io_error("listing topology/"))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .collect();
        paths.sort();
        std::fs::write(&self.config_path, config.render(&state_dir, &paths))
            .map_err(io_error("writing topologyd.toml"))?;
        self.config = config;
        Ok(())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...) to the daemon.
    pub fn signal(&self, name: &str) -> Result<(), LaunchError> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .map_err(io_error("running kill"))?;
        Ok(())
    }

    /// SIGKILL: the daemon dies without a word to its peers.
    pub fn kill(&mut self) -> Result<(), LaunchError> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().map_err(io_error("reaping topologyd"))?;
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for the exit (SIGKILL after that).
    pub fn terminate(&mut self, timeout: Duration) -> Result<Option<i32>, LaunchError> {
        self.signal("TERM")?;
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child
                .try_wait()
                .map_err(io_error("waiting for topologyd"))?
            {
                return Ok(status.code());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(LaunchError::Timeout {
            what: "topologyd to exit after SIGTERM".into(),
            timeout,
            log: self.log_tail(),
        })
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self) -> Result<(), LaunchError> {
        let log = self.log_tail();
        match self.child.as_mut() {
            Some(child) => match child.try_wait().map_err(io_error("polling topologyd"))? {
                None => Ok(()),
                Some(status) => Err(LaunchError::Exited {
                    status: status.to_string(),
                    log,
                }),
            },
            None => Err(LaunchError::Exited {
                status: "not running".into(),
                log,
            }),
        }
    }

    /// The whole log of the daemon (every run on this directory).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `GET path` on the admin listener: (status code, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String), LaunchError> {
        http_get(self.config.admin, path)
    }

    /// Waits until `/ready` answers 200 (by default: at least one peer holds the running
    /// generation; `[readiness]`).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if let Ok((200, _)) = self.admin_get("/ready") {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(LaunchError::Timeout {
                    what: "/ready".into(),
                    timeout,
                    log: self.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of one metric sample from `/metrics` whose line starts with `prefix`
    /// (name and labels as exposed), if present.
    pub fn metric(&self, prefix: &str) -> Result<Option<f64>, LaunchError> {
        let (_, body) = self.admin_get("/metrics")?;
        Ok(body
            .lines()
            .find(|line| line.starts_with(prefix))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok()))
    }
}

impl Drop for Topologyd {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A minimal HTTP/1.1 GET (admin endpoints are plain HTTP on loopback; no client crate needed).
pub fn http_get(address: SocketAddr, path: &str) -> Result<(u16, String), LaunchError> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .map_err(io_error(format!("connecting to {address}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io_error("setting a timeout"))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_error("sending the request"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(io_error("reading the response"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    Ok((status, body))
}

/// Polls `probe` every 100 ms until it returns `Ok(value)`; on timeout, the last `Err` is
/// returned with what was awaited.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}: {last}"
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A failure to generate or write TLS material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Throw-away TLS material for the control API: a CA, the daemon's server certificate (for
/// `localhost`), and any number of client certificates whose subject CN is the identity the
/// daemon maps to a role. [`ControlPki::foreign_client`] issues a certificate from a second CA
/// the daemon does not trust.
#[derive(Debug)]
pub struct ControlPki {
    directory: tempfile::TempDir,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    foreign_issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// The CA certificate (PEM): the daemon's `client_ca` and topoctl's `--ca`.
    pub ca: PathBuf,
    /// The daemon's certificate, for the name `localhost`.
    pub server: TlsIdentity,
}

fn generate_error(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.to_string();
    move |source| PkiError::Generate { what, source }
}

fn certificate_authority(
    name: &str,
) -> Result<rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, PkiError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(generate_error("CA parameters"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let key = rcgen::KeyPair::generate().map_err(generate_error("a CA key"))?;
    rcgen::CertifiedIssuer::self_signed(params, key).map_err(generate_error("a CA certificate"))
}

impl ControlPki {
    /// Generates the CA and the daemon's certificate into a new temporary directory.
    pub fn generate() -> Result<ControlPki, PkiError> {
        let directory = tempfile::Builder::new()
            .prefix("topologyd-pki-")
            .tempdir()
            .map_err(|source| PkiError::Io {
                context: "creating the PKI directory".into(),
                source,
            })?;
        let issuer = certificate_authority("topologyd test CA")?;
        let foreign_issuer = certificate_authority("an untrusted CA")?;
        let ca = directory.path().join("ca.pem");
        write_pem(&ca, &issuer.pem())?;
        let mut pki = ControlPki {
            server: TlsIdentity {
                certificate: PathBuf::new(),
                private_key: PathBuf::new(),
            },
            directory,
            issuer,
            foreign_issuer,
            ca,
        };
        pki.server = pki.issue("server", "topologyd", &["localhost"], false)?;
        Ok(pki)
    }

    /// The directory holding every PEM file (and, by default, the audit log).
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by the trusted CA
    /// (e.g. for the etcd members the etcd-mode tests start).
    pub fn server_certificate(
        &self,
        file_stem: &str,
        names: &[&str],
    ) -> Result<TlsIdentity, PkiError> {
        self.issue(file_stem, file_stem, names, false)
    }

    /// A client certificate with subject CN `identity`, signed by the trusted CA.
    pub fn client(&self, identity: &str) -> Result<TlsIdentity, PkiError> {
        self.issue(&format!("client-{identity}"), identity, &[], false)
    }

    /// A client certificate with subject CN `identity`, signed by a CA the daemon does not
    /// trust.
    pub fn foreign_client(&self, identity: &str) -> Result<TlsIdentity, PkiError> {
        self.issue(&format!("foreign-{identity}"), identity, &[], true)
    }

    fn issue(
        &self,
        file_stem: &str,
        common_name: &str,
        dns_names: &[&str],
        foreign: bool,
    ) -> Result<TlsIdentity, PkiError> {
        let names: Vec<String> = dns_names.iter().map(|name| (*name).to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names)
            .map_err(generate_error("certificate parameters"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().map_err(generate_error("a key"))?;
        let issuer = if foreign {
            &self.foreign_issuer
        } else {
            &self.issuer
        };
        let certificate = params
            .signed_by(&key, issuer)
            .map_err(generate_error(common_name))?;
        let identity = TlsIdentity {
            certificate: self.directory.path().join(format!("{file_stem}.pem")),
            private_key: self.directory.path().join(format!("{file_stem}.key")),
        };
        write_pem(&identity.certificate, &certificate.pem())?;
        write_pem(&identity.private_key, &key.serialize_pem())?;
        Ok(identity)
    }
}

fn write_pem(path: &Path, pem: &str) -> Result<(), PkiError> {
    std::fs::write(path, pem).map_err(|source| PkiError::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

/// Writes `(name, text)` files into `directory` and returns their paths, in order.
pub fn write_files(directory: &Path, files: &[(&str, &str)]) -> Result<Vec<PathBuf>, LaunchError> {
    std::fs::create_dir_all(directory)
        .map_err(io_error(format!("creating {}", directory.display())))?;
    files
        .iter()
        .map(|(name, text)| {
            let path = directory.join(name);
            std::fs::write(&path, text).map_err(io_error(format!("writing {}", path.display())))?;
            Ok(path)
        })
        .collect()
}

/// What one `topoctl` run printed and how it exited.
#[derive(Debug, Clone)]
pub struct TopoctlOutput {
    /// The exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl TopoctlOutput {
    /// stdout as JSON (the daemon commands print the daemon's JSON answer with `--json`).
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_str(&self.stdout)
            .map_err(|error| format!("topoctl printed no JSON ({error}): {self}"))
    }

    /// The daemon's error body a failed command printed on stderr with `--json`, after its
    /// one-line summary.
    pub fn error_json(&self) -> Result<serde_json::Value, String> {
        let body = self.stderr.split_once('\n').map_or("", |(_, rest)| rest);
        serde_json::from_str(body)
            .map_err(|error| format!("topoctl printed no JSON error body ({error}): {self}"))
    }
}

/// The daemon commands whose output the tests read as JSON: [`Topoctl::run`] adds `--json` to
/// them ([`Topoctl::run_human`] does not).
const JSON_COMMANDS: [&str; 6] = [
    "status",
    "routes",
    "health",
    "drain",
    "generations",
    "visibility",
];

impl std::fmt::Display for TopoctlOutput {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The real `topoctl` binary, talking to one daemon's control API as one client identity.
#[derive(Debug, Clone)]
pub struct Topoctl {
    pub daemon: SocketAddr,
    pub ca: PathBuf,
    pub identity: TlsIdentity,
}

impl Topoctl {
    /// A client of the daemon at `daemon` that trusts `ca` and presents `identity`.
    pub fn new(daemon: SocketAddr, ca: &Path, identity: TlsIdentity) -> Topoctl {
        Topoctl {
            daemon,
            ca: ca.to_path_buf(),
            identity,
        }
    }

    /// Runs `topoctl SUBCOMMAND --daemon … --cert … --key … --ca … ARGUMENTS…`, with `--json`
    /// for the commands whose output tests read as JSON (`status`, `routes`, `health`,
    /// `drain`, `generations`).
    pub fn run<S: AsRef<OsStr>>(
        &self,
        subcommand: &str,
        arguments: &[S],
    ) -> Result<TopoctlOutput, LaunchError> {
        let mut arguments: Vec<&OsStr> = arguments.iter().map(AsRef::as_ref).collect();
        if JSON_COMMANDS.contains(&subcommand) && !arguments.contains(&OsStr::new("--json")) {
            arguments.push(OsStr::new("--json"));
        }
        self.run_human(subcommand, &arguments)
    }

    /// Where `topoctl push` keeps the digests it remembers: beside this client's certificate.
    pub fn cache_directory(&self) -> PathBuf {
        self.identity
            .certificate
            .parent()
            .unwrap_or(Path::new("."))
            .join("topoctl-cache")
    }

    /// Runs `topoctl SUBCOMMAND --daemon … --cert … --key … --ca … ARGUMENTS…` as given.
    pub fn run_human<S: AsRef<OsStr>>(
        &self,
        subcommand: &str,
        arguments: &[S],
    ) -> Result<TopoctlOutput, LaunchError> {
        let binary = binaries()?.join("topoctl");
        // A nested subcommand (`topology get`) is given as its words.
        let output = Command::new(binary)
            .args(subcommand.split_whitespace())
            .arg("--daemon")
            .arg(self.daemon.to_string())
            .arg("--cert")
            .arg(&self.identity.certificate)
            .arg("--key")
            .arg(&self.identity.private_key)
            .arg("--ca")
            .arg(&self.ca)
            .args(arguments)
            .env_remove("TOPOCTL_DAEMON")
            .env_remove("TOPOCTL_SERVER_NAME")
            // The digests `push` remembers stay beside this client's certificate, in a
            // directory the test owns, not in the home directory.
            .env("TOPOCTL_CACHE_DIR", self.cache_directory())
            .stdin(Stdio::null())
            .output()
            .map_err(io_error("running topoctl"))?;
        Ok(TopoctlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// `topoctl drain [--service NAME] [--undrain] [--reason TEXT]`: drains `service` (the
    /// whole location with `None`), or undrains it with `undrain`.
    pub fn drain(
        &self,
        service: Option<&str>,
        undrain: bool,
        reason: &str,
    ) -> Result<TopoctlOutput, LaunchError> {
        let mut arguments = Vec::new();
        if let Some(service) = service {
            arguments.extend(["--service", service]);
        }
        if undrain {
            arguments.push("--undrain");
        }
        if !reason.is_empty() {
            arguments.extend(["--reason", reason]);
        }
        // A whole-location drain names the location to confirm it, as `status` shows it.
        let location;
        if service.is_none() && !undrain {
            let status = self.run("status", &["--json"])?;
            location = status
                .json()
                .ok()
                .and_then(|status| status["location"].as_str().map(str::to_owned))
                .unwrap_or_default();
            arguments.extend(["--location", location.as_str()]);
        }
        self.run("drain", &arguments)
    }
}
