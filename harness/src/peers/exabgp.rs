//! ExaBGP launcher: writes `exabgp.conf` for one neighbor plus an API process script, runs
//! `exabgp` in the foreground, and rebuilds what ExaBGP received from its JSON API stream.
//!
//! The API process is a two-line shell script in the instance directory: it appends everything
//! ExaBGP writes to it (JSON events, one per line) to `received.jsonl`, and it feeds ExaBGP the
//! lines appended to `commands` (`tail -F`), which is how `announce` and `withdraw` work at run time.
//! Both helpers live in the daemon's process group and die with it.
//!
//! Quirks found on ExaBGP 4.2.21:
//! - Per neighbor, `listen PORT` opens a listener on `local-address` and `connect PORT` sets the
//!   remote port (`exabgp.tcp.port` would apply to every neighbor); `exabgp.tcp.bind` is left
//!   empty so there is no global listener.
//! - ExaBGP does not prepend its own ASN on eBGP: the `as-path` it is given is sent as is, so the
//!   launcher prepends `local_asn` itself to keep [`Route::as_path`] meaning the same everywhere.
//! - Running as root it wants to drop to `nobody`; `exabgp.daemon.user=root` keeps it root. The
//!   interactive CLI's named pipes are disabled (`exabgp.api.cli=false`).
//! - GTSM (`outgoing-ttl 255; incoming-ttl 255;`) is not dependable when ExaBGP accepts the
//!   connection: a TTL-254 sender sometimes gets its OPEN answered over IPv4, and always over IPv6.
//!   Test GTSM against BIRD, FRR or GoBGP.
//! - It has no control socket: "up" means the API process has started, i.e. the configuration
//!   parsed and the reactor runs.
//!
//! Stale routes and withdrawals: ExaBGP keeps no RIB of what it receives. The harness replays the
//! JSON stream: a `down` state marks the session's routes stale, a later announcement refreshes a
//! route, and the next End-of-RIB of the family drops routes still stale — the helper behaviour of
//! RFC 4724 §4.2, emulated. Withdrawn NLRI in the stream are counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;
use serde_json::Value;

use super::process::{self, DaemonProcess};
use super::{
    BgpPeer, Daemon, Error, Family, ImportCounters, Launched, Origin, PeerSpec, ReceivedRoute,
    Result, Route, SessionState,
};

const DAEMON: Daemon = Daemon::Exabgp;

/// A running ExaBGP with one neighbor.
#[derive(Debug)]
pub struct ExabgpPeer {
    launched: Launched,
    received: PathBuf,
    commands: PathBuf,
    directory: tempfile::TempDir,
}

impl ExabgpPeer {
    /// Writes the configuration and the API script, starts ExaBGP and waits for its API process.
    pub fn start(spec: PeerSpec) -> Result<ExabgpPeer> {
        let directory = process::temp_dir(DAEMON, "topologyd-exabgp-")?;
        let config = directory.path().join("exabgp.conf");
        let script = directory.path().join("api.sh");
        let received = directory.path().join("received.jsonl");
        let commands = directory.path().join("commands");
        let log = directory.path().join("daemon.log");
        process::write_file(DAEMON, &commands, "")?;
        process::write_file(
            DAEMON,
            &script,
            &format!(
                "#!/bin/sh\n# stdout feeds ExaBGP commands, stdin carries its JSON events.\ntail -n +1 -F {} 2>/dev/null &\nexec cat >> {}\n",
                shell_quoted(&commands),
                shell_quoted(&received)
            ),
        )?;
        make_executable(&script)?;
        process::write_file(DAEMON, &config, &render_config(&spec, &script))?;
        let process = DaemonProcess::spawn(DAEMON, exabgp_command(&config), &log)?;
        let peer = ExabgpPeer {
            launched: Launched { spec, process },
            received,
            commands,
            directory,
        };
        peer.wait_until_up()?;
        Ok(peer)
    }

    fn wait_until_up(&self) -> Result<()> {
        self.launched.wait_until_up("the API process", || {
            if self.received.exists() {
                Ok(())
            } else {
                Err("received.jsonl not created yet".to_string())
            }
        })
    }

    /// Announces each route with its ADD-PATH path identifier (the session must offer
    /// [`PeerSpec::add_path_send`]); several paths of one prefix go out as several routes.
    pub fn announce_paths(&self, paths: &[(Route, u32)]) -> Result<()> {
        let lines: Vec<String> = paths
            .iter()
            .map(|(route, path_id)| {
                format!(
                    "announce {} path-information {}",
                    route_text(&self.launched.spec, route),
                    std::net::Ipv4Addr::from(*path_id)
                )
            })
            .collect();
        self.send(&lines)
    }

    /// Sends ROUTE-REFRESH (RFC 2918) for every family of the session, through the API.
    pub fn request_route_refresh(&self) -> Result<()> {
        let mut lines = Vec::new();
        for (family, name) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
            if self.launched.spec.has_family(family) {
                lines.push(format!("announce route-refresh {name} unicast"));
            }
        }
        self.send(&lines)
    }

    /// The temporary directory holding the configuration, the API files and `daemon.log`.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    fn replay(&self) -> Result<Replay> {
        self.launched.process.check_running()?;
        let text = std::fs::read_to_string(&self.received).map_err(|source| Error::Io {
            daemon: DAEMON,
            context: format!("read {}", self.received.display()),
            source,
        })?;
        Ok(Replay::of(&text))
    }

    fn send(&self, lines: &[String]) -> Result<()> {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.commands)
            .map_err(|source| Error::Io {
                daemon: DAEMON,
                context: format!("open {}", self.commands.display()),
                source,
            })?;
        let mut text = lines.join("\n");
        text.push('\n');
        file.write_all(text.as_bytes()).map_err(|source| Error::Io {
            daemon: DAEMON,
            context: format!("append to {}", self.commands.display()),
            source,
        })
    }
}

impl BgpPeer for ExabgpPeer {
    fn launched(&self) -> &Launched {
        &self.launched
    }

    fn session_state(&self) -> Result<SessionState> {
        Ok(match self.replay()?.state {
            Some(state) if state == "up" => SessionState::Established,
            Some(state) => SessionState::NotEstablished(state),
            None => SessionState::NotEstablished("no state event yet".to_string()),
        })
    }

    fn routes(&self) -> Result<Vec<ReceivedRoute>> {
        Ok(super::sorted(self.replay()?.routes.into_values().collect()))
    }

    fn counters(&self) -> Result<ImportCounters> {
        let replay = self.replay()?;
        Ok(ImportCounters {
            updates: replay.announced,
            withdrawals: replay.withdrawn,
            removed: None,
        })
    }

    fn announce(&mut self, routes: &[Route]) -> Result<()> {
        let lines: Vec<String> = routes
            .iter()
            .map(|route| format!("announce {}", route_text(&self.launched.spec, route)))
            .collect();
        self.send(&lines)
    }

    fn withdraw(&mut self, prefixes: &[IpNet]) -> Result<()> {
        let lines: Vec<String> = prefixes
            .iter()
            .map(|prefix| format!("withdraw route {prefix}"))
            .collect();
        self.send(&lines)
    }

    fn log_tail(&self) -> String {
        format!(
            "{}\n--- received.jsonl ---\n{}",
            self.launched.process.log_tail(),
            process::file_tail(&self.received)
        )
    }
}

fn shell_quoted(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', "'\\''"))
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|source| {
        Error::Io {
            daemon: DAEMON,
            context: format!("chmod {}", path.display()),
            source,
        }
    })
}

/// `route PREFIX next-hop ... ;`-style text shared by the static section and the API.
fn route_text(spec: &PeerSpec, route: &Route) -> String {
    let mut text = format!("route {} next-hop {}", route.prefix, route.next_hop);
    let _ = write!(text, " origin {}", super::origin_keyword(route.origin));
    let mut as_path = Vec::new();
    if !spec.is_internal() {
        as_path.push(spec.local_asn);
    }
    as_path.extend(&route.as_path);
    let path: Vec<String> = as_path.iter().map(u32::to_string).collect();
    let _ = write!(text, " as-path [ {} ]", path.join(" "));
    if let Some(med) = route.med {
        let _ = write!(text, " med {med}");
    }
    if let Some(local_pref) = route.local_pref {
        let _ = write!(text, " local-preference {local_pref}");
    }
    if !route.communities.is_empty() {
        let communities: Vec<String> = route
            .communities
            .iter()
            .map(|(high, low)| format!("{high}:{low}"))
            .collect();
        let _ = write!(text, " community [ {} ]", communities.join(" "));
    }
    if !route.large_communities.is_empty() {
        let communities: Vec<String> = route
            .large_communities
            .iter()
            .map(|(global, first, second)| format!("{global}:{first}:{second}"))
            .collect();
        let _ = write!(text, " large-community [ {} ]", communities.join(" "));
    }
    text
}

fn render_config(spec: &PeerSpec, script: &Path) -> String {
    let mut config = String::new();
    let _ = writeln!(
        config,
        "process harness {{\n  run {};\n  encoder json;\n}}",
        script.display()
    );
    let _ = writeln!(config, "neighbor {} {{", spec.neighbor.ip());
    let _ = writeln!(config, "  router-id {};", spec.router_id);
    let _ = writeln!(config, "  local-address {};", spec.local.ip());
    let _ = writeln!(config, "  local-as {};", spec.local_asn);
    let _ = writeln!(config, "  peer-as {};", spec.neighbor_asn);
    let _ = writeln!(config, "  hold-time {};", spec.hold_time);
    let _ = writeln!(config, "  connect {};", spec.neighbor.port());
    let _ = writeln!(config, "  listen {};", spec.local.port());
    let _ = writeln!(config, "  passive {};", spec.passive);
    if let Some(password) = &spec.md5_password {
        let _ = writeln!(config, "  md5-password \"{}\";", password.replace('"', ""));
    }
    if spec.ttl_security {
        config.push_str("  outgoing-ttl 255;\n  incoming-ttl 255;\n");
    }
    config.push_str("  family {\n");
    if spec.has_family(Family::Ipv4Unicast) {
        config.push_str("    ipv4 unicast;\n");
    }
    if spec.has_family(Family::Ipv6Unicast) {
        config.push_str("    ipv6 unicast;\n");
    }
    config.push_str("  }\n");
    // Route refresh (RFC 2918) is offered so that [`ExabgpPeer::request_route_refresh`] works.
    config.push_str("  capability {\n    route-refresh;\n");
    if spec.add_path_send {
        config.push_str("    add-path send;\n");
    }
    if let Some(graceful_restart) = spec.graceful_restart {
        let _ = writeln!(
            config,
            "    graceful-restart {};",
            graceful_restart.restart_time
        );
    }
    config.push_str("  }\n");
    config.push_str("  api {\n    processes [ harness ];\n    neighbor-changes;\n    receive {\n      parsed;\n      update;\n    }\n  }\n");
    if !spec.originate.is_empty() {
        config.push_str("  static {\n");
        for route in &spec.originate {
            let _ = writeln!(config, "    {};", route_text(spec, route));
        }
        config.push_str("  }\n");
    }
    config.push_str("}\n");
    config
}

/// The session as rebuilt from ExaBGP's JSON events.
#[derive(Debug, Default)]
struct Replay {
    state: Option<String>,
    routes: BTreeMap<IpNet, ReceivedRoute>,
    announced: u64,
    withdrawn: u64,
}

impl Replay {
    /// Replays every complete JSON line; anything else (a partly written last line) is skipped.
    fn of(text: &str) -> Replay {
        let mut replay = Replay::default();
        for line in text.lines() {
            if let Ok(event) = serde_json::from_str::<Value>(line) {
                replay.apply(&event);
            }
        }
        replay
    }

    fn apply(&mut self, event: &Value) {
        match event.get("type").and_then(Value::as_str) {
            Some("state") => {
                let state = event
                    .pointer("/neighbor/state")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
                if state == "down" {
                    for route in self.routes.values_mut() {
                        route.stale = true;
                    }
                }
                self.state = Some(state);
            }
            Some("update") => {
                if let Some(update) = event.pointer("/neighbor/message/update") {
                    self.apply_update(update);
                }
                if let Some(end_of_rib) = event.pointer("/neighbor/message/eor") {
                    let family = match end_of_rib.get("afi").and_then(Value::as_str) {
                        Some("ipv4") => Family::Ipv4Unicast,
                        Some("ipv6") => Family::Ipv6Unicast,
                        _ => return,
                    };
                    self.routes
                        .retain(|prefix, route| Family::of(prefix) != family || !route.stale);
                }
            }
            _ => {}
        }
    }

    fn apply_update(&mut self, update: &Value) {
        if let Some(withdrawals) = update.get("withdraw").and_then(Value::as_object) {
            for nlri in withdrawals.values().filter_map(Value::as_array).flatten() {
                if let Some(prefix) = nlri_prefix(nlri) {
                    self.routes.remove(&prefix);
                    self.withdrawn += 1;
                }
            }
        }
        let Some(announcements) = update.get("announce").and_then(Value::as_object) else {
            return;
        };
        let attributes = update.get("attribute").cloned().unwrap_or(Value::Null);
        for by_next_hop in announcements.values().filter_map(Value::as_object) {
            for (next_hop_text, nlris) in by_next_hop {
                // An IPv6 next hop may be "global,link-local".
                let Ok(next_hop) = next_hop_text
                    .split(',')
                    .next()
                    .unwrap_or_default()
                    .parse::<IpAddr>()
                else {
                    continue;
                };
                for nlri in nlris.as_array().map(Vec::as_slice).unwrap_or_default() {
                    if let Some(prefix) = nlri_prefix(nlri) {
                        self.routes
                            .insert(prefix, route_from(prefix, next_hop, &attributes));
                        self.announced += 1;
                    }
                }
            }
        }
    }
}

fn nlri_prefix(nlri: &Value) -> Option<IpNet> {
    nlri.get("nlri").and_then(Value::as_str)?.parse().ok()
}

fn numbers(value: Option<&Value>) -> Vec<u64> {
    fn collect(value: &Value, into: &mut Vec<u64>) {
        match value {
            Value::Number(number) => into.extend(number.as_u64()),
            Value::Array(items) => items.iter().for_each(|item| collect(item, into)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    if let Some(value) = value {
        collect(value, &mut found);
    }
    found
}

fn route_from(prefix: IpNet, next_hop: IpAddr, attributes: &Value) -> ReceivedRoute {
    let number = |key: &str| {
        attributes
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
    };
    let groups = |key: &str| -> Vec<Vec<u64>> {
        attributes
            .get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().map(|item| numbers(Some(item))).collect())
            .unwrap_or_default()
    };
    ReceivedRoute {
        prefix,
        as_path: numbers(attributes.get("as-path"))
            .into_iter()
            .filter_map(|asn| u32::try_from(asn).ok())
            .collect(),
        next_hop,
        origin: match attributes.get("origin").and_then(Value::as_str) {
            Some("egp") => Origin::Egp,
            Some("incomplete") => Origin::Incomplete,
            _ => Origin::Igp,
        },
        med: number("med"),
        local_pref: number("local-preference"),
        communities: groups("community")
            .into_iter()
            .filter_map(|group| match group.as_slice() {
                [high, low] => Some((u16::try_from(*high).ok()?, u16::try_from(*low).ok()?)),
                _ => None,
            })
            .collect(),
        large_communities: groups("large-community")
            .into_iter()
            .filter_map(|group| match group.as_slice() {
                [global, first, second] => Some((
                    u32::try_from(*global).ok()?,
                    u32::try_from(*first).ok()?,
                    u32::try_from(*second).ok()?,
                )),
                _ => None,
            })
            .collect(),
        stale: false,
    }
}

/// ExaBGP on `config` in the foreground, as root, with its API (no CLI, no acknowledgements),
/// no listener of its own and its log on stdout: how the launcher and the BGP benchmark run it.
pub fn exabgp_command(config: &Path) -> Command {
    let mut command = Command::new("exabgp");
    command
        .arg(config)
        .env("exabgp.daemon.user", "root")
        .env("exabgp.daemon.daemonize", "false")
        .env("exabgp.daemon.drop", "false")
        .env("exabgp.api.cli", "false")
        .env("exabgp.api.ack", "false")
        .env("exabgp.tcp.bind", "")
        .env("exabgp.log.destination", "stdout");
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = r#"{ "type": "state", "neighbor": { "state": "up" } }
{ "type": "update", "neighbor": { "message": { "update": { "attribute": { "origin": "igp", "as-path": [ 65002, 7 ], "med": 5, "community": [ [ 65002, 9 ] ], "large-community": [ [ 65002, 9 , 9 ] ] }, "announce": { "ipv4 unicast": { "192.0.2.2": [ { "nlri": "203.0.113.0/24" }, { "nlri": "198.51.100.0/24" } ] } } } } } }
{ "type": "update", "neighbor": { "message": { "update": { "withdraw": { "ipv4 unicast": [ { "nlri": "198.51.100.0/24" } ] } } } } }
done
{ "type": "state", "neighbor": { "state": "down" } }
{ "type": "update", "neighbor": { "#;

    #[test]
    fn replays_announce_withdraw_and_marks_stale_on_down() {
        let replay = Replay::of(STREAM);
        assert_eq!(replay.state.as_deref(), Some("down"));
        assert_eq!((replay.announced, replay.withdrawn), (2, 1));
        let route = replay.routes.values().next().expect("one route");
        assert_eq!(route.as_path, vec![65002, 7]);
        assert_eq!(route.large_communities, vec![(65002, 9, 9)]);
        assert!(route.stale);
    }

    #[test]
    fn end_of_rib_drops_routes_still_stale() {
        let text = format!(
            "{STREAM}\n{}\n",
            r#"{ "type": "update", "neighbor": { "message": { "eor": { "afi" : "ipv4", "safi" : "unicast" } } } }"#
        );
        assert!(Replay::of(&text).routes.is_empty());
    }
}
