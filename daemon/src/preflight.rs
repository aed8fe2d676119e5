//! The start-up checks that need no socket: everything `topologyd` must find in the world a
//! valid configuration names before it binds anything. `topologyd --check` runs exactly these,
//! and start-up runs them first, so both refuse the same configurations with the same message,
//! each at the key that names the problem (`file:line:column`, through
//! `topologyd_config::startup::locate`):
//!
//! - the state directory exists and is writable (or can be created: its nearest existing
//!   ancestor is a writable directory);
//! - when it holds no generation yet: the bootstrap topology files exist, compile, and name this
//!   location in their fleet; when it does (with `--check` only: start-up makes this check as it
//!   loads the generation, and compiling twice would slow every restart): a stored generation
//!   reads and compiles, newest first as start-up falls back, and names this location;
//! - the control API's certificate, key and client CA load and the certificate matches the key;
//!   the audit log's directory exists and the log can be appended to;
//! - no two listeners (`[bgp] listen`, `[bmp] listen`, `[admin]`, `[control]`) share an address and port;
//! - every peer's MD5 key file is readable and holds a valid key.
//!
//! Side effects: a probe file is created and removed in directories checked for writing.
//! Must not touch: sockets, the state store's files.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use topologyd_config::daemon::DaemonConfig;
use topologyd_config::startup::{Finding, Key};
use topologyd_topology::{Topology, compile_owned, compile_put_away};

use crate::engine::{StartError, read_md5_key};
use topologyd_transport::tls::{load_certificates, load_private_key, server_config_from};

/// Who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `topologyd --check`: also reads and compiles the stored generation start-up would run.
    Check,
    /// Start-up, which loads the stored generation itself right after.
    Start,
}

/// Every start-up finding for `config` (empty: start-up will get past these checks).
pub fn check(config: &DaemonConfig, mode: Mode) -> Vec<Finding> {
    let mut findings = Vec::new();
    let state_dir_usable = check_state_dir(&config.state_dir, &mut findings);
    let stored = crate::state_store::stored_generations(&config.state_dir);
    if state_dir_usable && stored.is_empty() {
        check_bootstrap(config, &mut findings);
    } else if state_dir_usable && mode == Mode::Check {
        check_stored(config, &stored, &mut findings);
    }
    check_control(config, &mut findings);
    check_listeners(config, &mut findings);
    for peer in &config.peers {
        if let Err(error) = read_md5_key(peer) {
            findings.push(Finding {
                key: Key::PeerMd5KeyFile(peer.name.clone()),
                message: format!("peer `{}`: {error}", peer.name),
                help: Some(
                    "the file must be readable by topologyd and hold the key (1 to 80 bytes; a \
                     trailing newline is ignored)"
                        .into(),
                ),
                nested: Vec::new(),
            });
        }
    }
    findings
}

fn finding(key: Key, message: String, help: &str) -> Finding {
    Finding {
        key,
        message,
        help: Some(help.to_string()),
        nested: Vec::new(),
    }
}

/// Whether `directory` takes a new file: creates and removes a probe file.
fn writable(directory: &Path) -> Result<(), std::io::Error> {
    let probe = directory.join(format!(".topologyd-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

/// The state directory, or (when it does not exist yet) its nearest existing ancestor, is a
/// writable directory. Returns whether the directory exists and is usable.
fn check_state_dir(state_dir: &Path, findings: &mut Vec<Finding>) -> bool {
    let help = "create the directory (owned by the topologyd user) or point state_dir at one \
                topologyd may write";
    match std::fs::metadata(state_dir) {
        Ok(metadata) if !metadata.is_dir() => {
            findings.push(finding(
                Key::StateDir,
                format!("state_dir {} is not a directory", state_dir.display()),
                help,
            ));
            false
        }
        Ok(_) => match writable(state_dir) {
            Ok(()) => true,
            Err(error) => {
                findings.push(finding(
                    Key::StateDir,
                    format!("state_dir {} is not writable: {error}", state_dir.display()),
                    help,
                ));
                false
            }
        },
        Err(error) if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            // Start-up creates it: the nearest existing ancestor must take a new directory.
            let ancestor = state_dir
                .ancestors()
                .skip(1)
                .find(|ancestor| ancestor.as_os_str().is_empty() || ancestor.exists())
                .map(|ancestor| {
                    if ancestor.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        ancestor.to_path_buf()
                    }
                })
                .unwrap_or_else(|| PathBuf::from("/"));
            let problem = if !ancestor.is_dir() {
                Some(format!("{} is not a directory", ancestor.display()))
            } else {
                writable(&ancestor)
                    .err()
                    .map(|error| format!("{} is not writable: {error}", ancestor.display()))
            };
            if let Some(problem) = problem {
                findings.push(finding(
                    Key::StateDir,
                    format!(
                        "state_dir {} does not exist and cannot be created: {problem}",
                        state_dir.display()
                    ),
                    help,
                ));
            }
            // Nothing stored yet: the bootstrap topology is what start-up would use.
            true
        }
        Err(error) => {
            findings.push(finding(
                Key::StateDir,
                format!("state_dir {}: {error}", state_dir.display()),
                help,
            ));
            false
        }
    }
}

/// The bootstrap topology exists, compiles and has this location (what start-up does when the
/// state directory holds no generation).
fn check_bootstrap(config: &DaemonConfig, findings: &mut Vec<Finding>) {
    if config.bootstrap_topology.is_empty() {
        findings.push(finding(
            Key::StateDir,
            StartError::NothingToAnnounce.to_string(),
            "list the topology files in bootstrap_topology, or start from a state directory \
             that holds a generation",
        ));
        return;
    }
    // Read as start-up reads them: at most one byte past the topology limit, and a file that is
    // not UTF-8 reported at its line and column.
    let mut sources = Vec::new();
    for (index, path) in config.bootstrap_topology.iter().enumerate() {
        match topologyd_config::load_sources(std::slice::from_ref(path)) {
            Ok(mut loaded) => sources.append(&mut loaded),
            Err(error) => findings.push(finding(
                Key::BootstrapTopology(index),
                match &error.invalid {
                    Some(diagnostic) => diagnostic.to_string(),
                    None => StartError::Read {
                        path: error.path.clone(),
                        source: error.error,
                    }
                    .to_string(),
                },
                "fix the path, or make the file readable by topologyd",
            )),
        }
    }
    if sources.len() != config.bootstrap_topology.len() {
        return;
    }
    // As start-up compiles it: each text dropped once parsed (read back from its file, checked
    // against its digest, only to report a position), so that this check does not hold the
    // texts beside the compiled topology either.
    let digests = {
        let texts: Vec<&str> = sources.iter().map(|source| source.text.as_str()).collect();
        topologyd_api::delta::sha256_each(&texts)
    };
    let read = crate::state_store::read_again(
        config
            .bootstrap_topology
            .iter()
            .zip(&sources)
            .zip(&digests)
            .map(|((path, source), digest)| (path.clone(), source.text.len() as u64, *digest))
            .collect(),
    );
    match compile_put_away(sources, digests, read, 1) {
        // The compile errors follow on their own lines, at their own positions (a message
        // holding them would have its line breaks escaped).
        Err(diagnostics) => findings.push(Finding {
            nested: diagnostics.items,
            ..finding(
                Key::BootstrapTopology(0),
                "the bootstrap topology does not compile:".to_string(),
                "fix the topology (`topoctl check` shows the same errors)",
            )
        }),
        Ok(topology) => check_location(
            config,
            &topology,
            "name this daemon's location as the bootstrap topology's fleet does ([[location]] name)",
            findings,
        ),
    }
}

/// The topology start-up would run has this daemon's location; `help` says how to get one.
fn check_location(
    config: &DaemonConfig,
    topology: &Topology,
    help: &str,
    findings: &mut Vec<Finding>,
) {
    if topology.location(&config.location).is_none() {
        findings.push(finding(
            Key::Location,
            StartError::UnknownLocation(config.location.clone()).to_string(),
            help,
        ));
    }
}

/// The generation start-up would recover (the newest that reads and compiles) has this
/// location.
fn check_stored(config: &DaemonConfig, stored: &[(u64, PathBuf)], findings: &mut Vec<Finding>) {
    let mut last_error = String::new();
    let mut unreadable_texts = Vec::new();
    for (generation, path) in stored {
        let candidate = match crate::state_store::read_stored_generation(path, *generation) {
            Ok(candidate) => candidate,
            Err(error) => {
                if matches!(error, crate::state_store::StateError::Source { .. }) {
                    unreadable_texts.push(error.to_string());
                }
                last_error = error.to_string();
                continue;
            }
        };
        match compile_owned(crate::engine::to_sources(&candidate.bundle), *generation) {
            Ok(topology) => {
                return check_location(
                    config,
                    &topology,
                    "name this daemon's location as the stored generation's fleet does \
                     ([[location]] name), or push a topology that has it",
                    findings,
                );
            }
            Err(diagnostics) => last_error = diagnostics.to_string(),
        }
    }
    if !unreadable_texts.is_empty() {
        // Start-up refuses this case rather than bootstrap (its message says what to do).
        findings.push(finding(
            Key::StateDir,
            StartError::SourcesUnreadable(unreadable_texts.join("\n")).to_string(),
            "restore the texts, or move the generation files aside to start from bootstrap_topology",
        ));
        return;
    }
    findings.push(finding(
        Key::StateDir,
        StartError::NoGoodGeneration(last_error).to_string(),
        "restore a good generation file into the state directory, or move the state directory \
         aside to start from bootstrap_topology",
    ));
}

/// TLS material loads and matches; the audit log can be appended to.
fn check_control(config: &DaemonConfig, findings: &mut Vec<Finding>) {
    let Some(control) = &config.control else {
        return;
    };
    let tls_error = |key: Key, error: topologyd_transport::tls::TlsError, help: &str| {
        finding(key, format!("control API {error}"), help)
    };
    let chain = load_certificates(&control.certificate).map_err(|error| {
        tls_error(
            Key::ControlCertificate,
            error,
            "point certificate at the server's PEM certificate chain",
        )
    });
    let key = load_private_key(&control.private_key).map_err(|error| {
        tls_error(
            Key::ControlPrivateKey,
            error,
            "point private_key at the PEM private key of the certificate",
        )
    });
    let ca = load_certificates(&control.client_ca).map_err(|error| {
        tls_error(
            Key::ControlClientCa,
            error,
            "point client_ca at the PEM certificate of the CA that signs the clients",
        )
    });
    match (chain, key, ca) {
        (Ok(chain), Ok(key), Ok(ca)) => {
            if let Err(error) = server_config_from(chain, key, ca, &control.client_ca) {
                findings.push(tls_error(
                    Key::ControlCertificate,
                    error,
                    "the certificate and private_key must belong together (same key pair)",
                ));
            }
        }
        (chain, key, ca) => {
            findings.extend([chain.err(), key.err(), ca.err()].into_iter().flatten())
        }
    }
    check_audit_log(&control.audit_log, findings);
}

fn check_audit_log(path: &Path, findings: &mut Vec<Finding>) {
    let help = "create the directory (writable by topologyd) or point audit_log elsewhere";
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !directory.is_dir() {
        findings.push(finding(
            Key::ControlAuditLog,
            format!(
                "audit log {}: the directory {} does not exist",
                path.display(),
                directory.display()
            ),
            help,
        ));
        return;
    }
    let problem = if path.exists() {
        OpenOptions::new().append(true).open(path).err()
    } else {
        writable(&directory).err()
    };
    if let Some(error) = problem {
        findings.push(finding(
            Key::ControlAuditLog,
            format!("audit log {}: cannot append: {error}", path.display()),
            help,
        ));
    }
}

/// Two listeners collide when they share a family, a port and an address (or one of them
/// listens on every address of the family). Across families they do not: the BGP listeners are
/// IPV6_V6ONLY, so `0.0.0.0:179` beside `[::]:179` is the usual dual-stack setup.
fn collide(left: SocketAddr, right: SocketAddr) -> bool {
    left.port() != 0
        && left.port() == right.port()
        && left.is_ipv4() == right.is_ipv4()
        && (left.ip() == right.ip() || left.ip().is_unspecified() || right.ip().is_unspecified())
}

fn check_listeners(config: &DaemonConfig, findings: &mut Vec<Finding>) {
    let mut listeners: Vec<(Key, &str, SocketAddr)> = config
        .bgp_listen
        .iter()
        .enumerate()
        .map(|(index, address)| (Key::BgpListen(index), "[bgp] listen", *address))
        .collect();
    if let Some(bmp) = &config.bmp {
        listeners.extend(
            bmp.listen
                .iter()
                .enumerate()
                .map(|(index, address)| (Key::BmpListen(index), "[bmp] listen", *address)),
        );
    }
    if let Some(admin) = &config.admin {
        listeners.push((Key::AdminListen, "[admin] listen", admin.listen));
    }
    if let Some(control) = &config.control {
        listeners.push((Key::ControlListen, "[control] listen", control.listen));
    }
    for (index, (key, what, address)) in listeners.iter().enumerate() {
        if let Some((_, other_what, other)) = listeners[..index]
            .iter()
            .find(|(_, _, other)| collide(*other, *address))
        {
            findings.push(finding(
                key.clone(),
                format!("{what} {address} collides with {other_what} {other}"),
                "two listeners cannot share an address and port: give each its own port",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bmp_listener_on_the_bgp_port_is_refused_at_its_key() {
        let text = "location = \"ams01\"\nlocal_asn = 13335\nrouter_id = \"192.0.2.1\"\nstate_dir = \"/tmp/x\"\n[bgp]\nlisten = [\"127.0.0.1:1179\"]\n[bmp]\nlisten = [\"127.0.0.1:11019\", \"127.0.0.1:1179\"]\n";
        let source = topologyd_config::Source::new("topologyd.toml", text);
        let config = topologyd_config::daemon::parse_daemon_config(&source)
            .unwrap_or_else(|diagnostics| unreachable!("{diagnostics}"));
        let mut findings = Vec::new();
        check_listeners(&config, &mut findings);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].key, Key::BmpListen(1));
        assert!(
            findings[0]
                .message
                .contains("[bmp] listen 127.0.0.1:1179 collides with [bgp] listen")
        );
    }

    #[test]
    fn listeners_collide_on_one_port_of_one_address_or_of_every_address() {
        let address = |text: &str| {
            text.parse::<SocketAddr>()
                .unwrap_or_else(|_| unreachable!())
        };
        assert!(collide(
            address("127.0.0.1:9179"),
            address("127.0.0.1:9179")
        ));
        assert!(collide(address("0.0.0.0:9179"), address("127.0.0.1:9179")));
        assert!(collide(address("[::]:179"), address("[::1]:179")));
        assert!(!collide(address("[::]:179"), address("0.0.0.0:179")));
        assert!(!collide(
            address("127.0.0.1:9179"),
            address("127.0.0.1:9180")
        ));
        assert!(!collide(
            address("127.0.0.1:9179"),
            address("127.0.0.2:9179")
        ));
        assert!(!collide(address("127.0.0.1:0"), address("127.0.0.1:0")));
    }
}
