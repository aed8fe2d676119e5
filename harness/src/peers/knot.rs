//! Knot DNS launcher: a real authoritative server (Debian `knot`, `knotd` and `knotc`) serving
//! reverse zones that this module writes, on a fresh loopback address (UDP and TCP on one
//! port), from its own temporary directory, with its own control socket. A zone can be
//! republished while it runs ([`Knot::publish`]: the file is rewritten with a higher serial and
//! reloaded, blocking until Knot serves it), and a zone can be configured with a file Knot
//! cannot load ([`ReverseZone::unloadable`]): Knot then answers SERVFAIL for every name in it.
//! A name in no configured zone gets REFUSED.
//!
//! Never touches a system Knot: no file outside the temporary directory, no default socket.
//! Owns only the launcher; what a resolver makes of the answers is the test's business.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use super::process::{self, DaemonProcess};
use super::{COMMAND_TIMEOUT, Daemon, Error, Result, STARTUP_TIMEOUT, Transport, alloc};

const DAEMON: Daemon = Daemon::Knot;

/// One reverse zone as Knot serves it: an SOA and NS at the apex and TXT records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReverseZone {
    /// The zone name without a trailing dot (`"2.0.192.in-addr.arpa"`).
    pub name: String,
    /// TXT records: the owner relative to the zone (`"_topologyd-challenge"`, or `"@"`) and the
    /// value (split into 255-byte strings when longer).
    pub txt: Vec<(String, String)>,
    /// False writes a file Knot refuses to load, so it answers SERVFAIL for the zone.
    pub loadable: bool,
}

impl ReverseZone {
    /// An empty zone (SOA and NS only).
    pub fn new(name: &str) -> ReverseZone {
        ReverseZone {
            name: name.trim_end_matches('.').to_string(),
            txt: Vec::new(),
            loadable: true,
        }
    }

    /// Adds a TXT record at `owner` (relative to the zone).
    pub fn txt(mut self, owner: &str, value: &str) -> ReverseZone {
        self.txt.push((owner.to_string(), value.to_string()));
        self
    }

    /// A zone Knot is configured for but whose file does not parse.
    pub fn unloadable(name: &str) -> ReverseZone {
        ReverseZone {
            loadable: false,
            ..ReverseZone::new(name)
        }
    }
}

/// A running `knotd`; dropping it kills it.
#[derive(Debug)]
pub struct Knot {
    address: SocketAddr,
    process: DaemonProcess,
    directory: tempfile::TempDir,
    control: PathBuf,
    /// The next SOA serial: every write gets a higher one, so a reload always takes.
    serial: AtomicU32,
}

impl Knot {
    /// Writes the zones and the configuration, starts `knotd` on a fresh loopback address and
    /// waits until every loadable zone is served.
    pub fn start(zones: &[ReverseZone]) -> Result<Knot> {
        let directory = process::temp_dir(DAEMON, "topologyd-knot-")?;
        let address = alloc::endpoint(Transport::V4);
        let control = directory.path().join("knot.sock");
        let config = directory.path().join("knot.conf");
        let log = directory.path().join("daemon.log");
        write(&config, &configuration(directory.path(), address, zones))?;
        let serial = AtomicU32::new(1);
        for zone in zones {
            let next = serial.fetch_add(1, Ordering::Relaxed);
            write(
                &zone_path(directory.path(), &zone.name),
                &zone_file(zone, next),
            )?;
        }
        let mut command = Command::new("knotd");
        command.arg("--config").arg(&config);
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let knot = Knot {
            address,
            process,
            directory,
            control,
            serial,
        };
        let expected: Vec<&str> = zones
            .iter()
            .filter(|zone| zone.loadable)
            .map(|zone| zone.name.as_str())
            .collect();
        super::poll(
            DAEMON,
            "every loadable zone served",
            STARTUP_TIMEOUT,
            || process::file_tail(&log),
            || {
                knot.process.check_running()?;
                if !knot.control.exists() {
                    return Ok(Err("no control socket yet".to_string()));
                }
                let status = knot.knotc(&["zone-status"])?;
                let missing = expected
                    .iter()
                    .filter(|zone| !zone_is_served(&status, zone))
                    .count();
                Ok(if missing == 0 {
                    Ok(())
                } else {
                    Err(format!("{missing} zone(s) not loaded yet"))
                })
            },
        )?;
        Ok(knot)
    }

    /// The address and port Knot answers on, over UDP and TCP.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Rewrites a configured zone with a higher serial and reloads it; returns once Knot has
    /// finished the reload (for a loadable zone, once it serves the new contents).
    pub fn publish(&self, zone: &ReverseZone) -> Result<()> {
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        write(
            &zone_path(self.directory.path(), &zone.name),
            &zone_file(zone, serial),
        )?;
        let fqdn = format!("{}.", zone.name);
        self.knotc(&["-b", "zone-reload", &fqdn]).map(drop)
    }

    /// The end of Knot's log, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    fn knotc(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new("knotc");
        command.arg("--socket").arg(&self.control);
        command.arg("--timeout").arg("10");
        command.args(args);
        process::run(DAEMON, &mut command, COMMAND_TIMEOUT)
    }
}

/// True when `knotc zone-status` shows a serial for `zone` (an unloaded zone shows `-`).
fn zone_is_served(status: &str, zone: &str) -> bool {
    let head = format!("[{zone}.]");
    status.lines().any(|line| {
        line.starts_with(&head)
            && line
                .split('|')
                .filter_map(|field| field.trim().strip_prefix("serial:"))
                .any(|serial| serial.trim().parse::<u32>().is_ok())
    })
}

/// The configuration: one listener, a control socket, everything in `directory`.
fn configuration(directory: &Path, address: SocketAddr, zones: &[ReverseZone]) -> String {
    let dir = directory.display();
    let mut text = format!(
        "server:\n    rundir: \"{dir}\"\n    listen: {}@{}\n    udp-workers: 2\n    tcp-workers: 2\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: info\n\
         database:\n    storage: \"{dir}/db\"\n\
         control:\n    listen: \"{dir}/knot.sock\"\n\
         template:\n  - id: default\n    storage: \"{dir}/zones\"\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n    semantic-checks: off\n\
         zone:\n",
        address.ip(),
        address.port()
    );
    if zones.is_empty() {
        // Knot wants the section to hold something; a zone nobody asks about does.
        text.push_str("  - domain: invalid.\n    file: \"invalid.zone\"\n");
    }
    for zone in zones {
        let _ = writeln!(
            text,
            "  - domain: {}.\n    file: \"{}.zone\"",
            zone.name, zone.name
        );
    }
    text
}

fn zone_path(directory: &Path, zone: &str) -> PathBuf {
    directory.join("zones").join(format!("{zone}.zone"))
}

/// The zone file: SOA and NS at the apex, then the TXT records; or garbage if unloadable.
fn zone_file(zone: &ReverseZone, serial: u32) -> String {
    if !zone.loadable {
        return "this is not a zone file {\n".to_string();
    }
    let mut text = format!(
        "$ORIGIN {}.\n$TTL 60\n@ SOA ns.invalid. hostmaster.invalid. {serial} 3600 600 86400 60\n@ NS ns.invalid.\n",
        zone.name
    );
    for (owner, value) in &zone.txt {
        let _ = writeln!(text, "{owner} TXT {}", quoted_strings(value));
    }
    text
}

/// A TXT value as zone-file character-strings: quoted, `"` and `\` escaped, 255 bytes at most
/// each (split on character boundaries).
fn quoted_strings(value: &str) -> String {
    let mut parts = Vec::new();
    let mut current = String::new();
    for character in value.chars() {
        if current.len() + character.len_utf8() > 255 {
            parts.push(std::mem::take(&mut current));
        }
        current.push(character);
    }
    parts.push(current);
    parts
        .iter()
        .map(|part| format!("\"{}\"", part.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Writes `text` to `path` through a temporary file and a rename, creating the directory.
fn write(path: &Path, text: &str) -> Result<()> {
    let io = |context: String| {
        move |source| Error::Io {
            daemon: DAEMON,
            context,
            source,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
    }
    let staging = path.with_extension("new");
    std::fs::write(&staging, text).map_err(io(format!("write {}", staging.display())))?;
    std::fs::rename(&staging, path).map_err(io(format!("rename to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_split_and_quotes_escaped() {
        let long = "a".repeat(300);
        assert_eq!(quoted_strings(&long).matches('"').count(), 4);
        assert_eq!(quoted_strings("x\"y\\z"), "\"x\\\"y\\\\z\"");
    }

    #[test]
    fn zone_status_needs_a_serial() {
        let status = "[a.arpa.] role: master | serial: 3 | next-event: none\n[b.arpa.] role: master | serial: -\n";
        assert!(zone_is_served(status, "a.arpa"));
        assert!(!zone_is_served(status, "b.arpa"));
        assert!(!zone_is_served(status, "c.arpa"));
    }
}
