//! Launcher for our own daemon in end-to-end tests: builds the `topologyd` binary once per test
//! process, writes its configuration and topology files into a temporary directory, runs it as
//! a child process (its own process group, killed on drop), and talks to its admin listener.
//!
//! The binary is built with a nested `cargo build -p topologyd --bins`: the outer `cargo test`
//! does not hold the build lock while tests run, and integration tests of this package cannot
//! see another package's `CARGO_BIN_EXE_*`.

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
pub fn binaries() -> Result<PathBuf, LaunchError> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let output = Command::new(cargo)
                .args(["build", "--quiet", "-p", "topologyd", "--bins"])
                .current_dir(manifest)
                .output()
                .map_err(|error| error.to_string())?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned());
            }
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| manifest.join("target"));
            Ok(target.join("debug"))
        })
        .clone()
        .map_err(LaunchError::Build)
}

/// One BGP neighbor of the daemon under test.
#[derive(Debug, Clone)]
pub struct NeighborConfig {
    pub name: String,
    pub address: SocketAddr,
    pub asn: u32,
    pub families: Vec<&'static str>,
    pub next_hop_ipv6: Option<Ipv6Addr>,
    pub md5_key: Option<String>,
    pub ttl_security_hops: Option<u8>,
    pub hold_time_seconds: u16,
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
            next_hop_ipv6: Some(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            md5_key: None,
            ttl_security_hops: None,
            hold_time_seconds: 30,
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
    /// Extra TOML appended verbatim (e.g. a `[control]` section).
    pub extra: String,
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
            if let Some(next_hop) = neighbor.next_hop_ipv6 {
                let _ = writeln!(text, "next_hop_ipv6 = \"{next_hop}\"");
            }
            let _ = writeln!(text, "hold_time_seconds = {}", neighbor.hold_time_seconds);
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
    child: Option<Child>,
}

impl Topologyd {
    /// Writes the configuration and the topology files (`(name, text)`), then starts the daemon.
    pub fn start(config: DaemonConfig, topology: &[(&str, &str)]) -> Result<Topologyd, LaunchError> {
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
                std::fs::write(
                    directory.path().join(format!("{}.md5", neighbor.name)),
                    key,
                )
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
            if let Some(status) = child.try_wait().map_err(io_error("waiting for topologyd"))? {
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

    /// Waits until `/ready` answers 200 (the first convergence).
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
