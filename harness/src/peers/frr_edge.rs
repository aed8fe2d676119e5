//! An FRR `bgpd` as an edge router with its BMP module (`-M bmp`): several eBGP neighbors (the
//! daemon under test, a second speaker), one import route-map for all of them whose prefix
//! list can be extended at run time (an import filter), and a BMP target streaming pre- and
//! post-policy Adj-RIB-In to a station.
//!
//! Quirks found on FRR 8.4's BMP module: `bmp targets NAME` is a sub-node of `router bgp`;
//! `bmp connect HOST port N min-retry MS max-retry MS` dials the station (and redials it);
//! `bmp monitor ipv4 unicast pre-policy|post-policy` selects the tables (Loc-RIB monitoring came
//! later). The sysName of the Initiation message is the `hostname`. Routes an import filter
//! rejects leave the post-policy stream after `clear bgp … soft in` (with
//! `soft-reconfiguration inbound`, which keeps the pre-policy copy to re-run the policy on).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ipnet::IpNet;

use super::process::{self, DaemonProcess};
use super::{COMMAND_TIMEOUT, Daemon, Error, Result};

const DAEMON: Daemon = Daemon::Frr;
const BGPD: &str = "/usr/lib/frr/bgpd";

/// One neighbor of the edge router.
#[derive(Debug, Clone)]
pub struct EdgeNeighbor {
    /// Where the neighbor listens (the edge also connects there).
    pub address: SocketAddr,
    pub asn: u32,
}

/// What the edge router is.
#[derive(Debug, Clone)]
pub struct FrrEdgeSpec {
    pub hostname: String,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// Where its BGP listens (and its source address).
    pub listen: SocketAddr,
    pub neighbors: Vec<EdgeNeighbor>,
    /// The BMP station it streams to.
    pub station: SocketAddr,
}

/// A running edge router.
#[derive(Debug)]
pub struct FrrEdge {
    pub spec: FrrEdgeSpec,
    process: Option<DaemonProcess>,
    /// Prefixes the import filter rejects.
    blocked: Vec<IpNet>,
    directory: tempfile::TempDir,
}

impl FrrEdge {
    /// Writes `bgpd.conf` and starts `bgpd -M bmp`; waits until vtysh answers.
    pub fn start(spec: FrrEdgeSpec) -> Result<FrrEdge> {
        let directory = process::temp_dir(DAEMON, "topologyd-frr-edge-")?;
        let mut edge = FrrEdge {
            spec,
            process: None,
            blocked: Vec::new(),
            directory,
        };
        edge.spawn()?;
        Ok(edge)
    }

    fn spawn(&mut self) -> Result<()> {
        let config = self.directory.path().join("bgpd.conf");
        process::write_file(DAEMON, &config, &self.render())?;
        let mut command = Command::new(BGPD);
        command
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(self.directory.path().join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(self.directory.path())
            .args([
                "-Z", "-S", "-u", "root", "-g", "root", "-P", "0", "-M", "bmp",
            ])
            .arg("-l")
            .arg(self.spec.listen.ip().to_string())
            .arg("-p")
            .arg(self.spec.listen.port().to_string());
        self.process = Some(DaemonProcess::spawn(DAEMON, command, &self.log_path())?);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.vtysh(&["show bgp summary json"]) {
                Ok(output) if output.trim_start().starts_with('{') => return Ok(()),
                result => {
                    if std::time::Instant::now() > deadline {
                        return Err(Error::Timeout {
                            daemon: DAEMON,
                            what: "vtysh".to_string(),
                            waited: Duration::from_secs(30),
                            last: format!("{result:?}"),
                            log: self.log_tail(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn log_path(&self) -> PathBuf {
        self.directory.path().join("daemon.log")
    }

    /// Its working directory (configuration, sockets, logs): on its command line, so a
    /// leftover-process check can look for it.
    pub fn directory(&self) -> &std::path::Path {
        self.directory.path()
    }

    /// The last few kilobytes of bgpd's log.
    pub fn log_tail(&self) -> String {
        process::file_tail(&self.log_path())
    }

    fn render(&self) -> String {
        let spec = &self.spec;
        let mut config = String::new();
        let _ = writeln!(config, "hostname {}", spec.hostname);
        let _ = writeln!(
            config,
            "log file {} debugging",
            self.directory.path().join("bgpd.log").display()
        );
        config.push_str("bgp route-map delay-timer 0\n!\n");
        config.push_str("ip prefix-list BLOCKED seq 1 permit 192.0.2.255/32\n");
        for (index, prefix) in self.blocked.iter().enumerate() {
            let _ = writeln!(
                config,
                "ip prefix-list BLOCKED seq {} permit {prefix}",
                index + 2
            );
        }
        config.push_str("route-map IMPORT deny 10\n match ip address prefix-list BLOCKED\nexit\nroute-map IMPORT permit 20\nexit\n!\n");
        let _ = writeln!(config, "router bgp {}", spec.asn);
        let _ = writeln!(config, " bgp router-id {}", spec.router_id);
        config.push_str(
            " no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n bgp allow-martian-nexthop\n bgp graceful-restart-disable\n",
        );
        for neighbor in &spec.neighbors {
            let address = neighbor.address.ip();
            let _ = writeln!(config, " neighbor {address} remote-as {}", neighbor.asn);
            let _ = writeln!(
                config,
                " neighbor {address} port {}",
                neighbor.address.port()
            );
            let _ = writeln!(
                config,
                " neighbor {address} update-source {}",
                spec.listen.ip()
            );
            let _ = writeln!(config, " neighbor {address} disable-connected-check");
            let _ = writeln!(config, " neighbor {address} timers 3 9");
            let _ = writeln!(config, " neighbor {address} timers connect 1");
            let _ = writeln!(config, " neighbor {address} advertisement-interval 0");
        }
        config.push_str(" address-family ipv4 unicast\n");
        for neighbor in &spec.neighbors {
            let address = neighbor.address.ip();
            let _ = writeln!(config, "  neighbor {address} activate");
            let _ = writeln!(config, "  neighbor {address} soft-reconfiguration inbound");
            let _ = writeln!(config, "  neighbor {address} route-map IMPORT in");
        }
        config.push_str(" exit-address-family\n !\n bmp targets station\n");
        let _ = writeln!(
            config,
            "  bmp connect {} port {} min-retry 100 max-retry 1000",
            spec.station.ip(),
            spec.station.port()
        );
        config.push_str("  bmp monitor ipv4 unicast pre-policy\n  bmp monitor ipv4 unicast post-policy\n exit\nexit\n");
        config
    }

    /// Runs vtysh commands in one session and returns stdout.
    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        if let Some(process) = &self.process {
            process.check_running()?;
        }
        let mut command = Command::new("vtysh");
        command
            .arg("--vty_socket")
            .arg(self.directory.path())
            .args(["-d", "bgpd"]);
        for line in commands {
            command.arg("-c").arg(line);
        }
        let output = process::run(DAEMON, &mut command, COMMAND_TIMEOUT)?;
        if let Some(problem) = output.lines().find(|line| line.starts_with('%')) {
            return Err(Error::Command {
                daemon: DAEMON,
                command: process::describe(&command),
                status: "error reply".to_string(),
                stderr: format!("{problem}\n{output}"),
            });
        }
        Ok(output)
    }

    /// Whether the session with the neighbor at `address` is established.
    pub fn established(&self, address: IpAddr) -> bool {
        let command = format!("show bgp neighbors {address} json");
        self.vtysh(&[command.as_str()])
            .ok()
            .and_then(|output| serde_json::from_str::<serde_json::Value>(&output).ok())
            .and_then(|value| {
                value
                    .get(address.to_string())
                    .and_then(|neighbor| neighbor.get("bgpState"))
                    .and_then(|state| state.as_str().map(|state| state == "Established"))
            })
            .unwrap_or(false)
    }

    /// Sets the import filter to reject exactly `prefixes` from every neighbor, and re-runs
    /// the import policy.
    pub fn block_imports(&mut self, prefixes: &[IpNet]) -> Result<()> {
        let mut commands = vec!["configure terminal".to_string()];
        for (index, _) in self.blocked.iter().enumerate() {
            commands.push(format!("no ip prefix-list BLOCKED seq {}", index + 2));
        }
        for (index, prefix) in prefixes.iter().enumerate() {
            commands.push(format!(
                "ip prefix-list BLOCKED seq {} permit {prefix}",
                index + 2
            ));
        }
        commands.push("end".to_string());
        for neighbor in &self.spec.neighbors {
            commands.push(format!(
                "clear bgp ipv4 unicast {} soft in",
                neighbor.address.ip()
            ));
        }
        self.vtysh(&commands.iter().map(String::as_str).collect::<Vec<_>>())?;
        self.blocked = prefixes.to_vec();
        Ok(())
    }

    /// Stops bgpd (SIGTERM) and starts it again with the same configuration: every session and
    /// the BMP connection go down and come back.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(process) = self.process.take() {
            process.stop()?;
        }
        self.spawn()
    }
}
