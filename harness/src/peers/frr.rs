//! FRR launcher: runs `bgpd` alone (no zebra, `-Z`) in the foreground with its own vty socket
//! directory, configures one BGP session, and reads routes back with
//! `vtysh -c 'show bgp <afi> unicast json detail'`.
//!
//! Quirks found on FRR 8.4:
//! - `-Z` (no zebra) works; `network` statements then need `no bgp network import-check`, and next
//!   hops are all considered reachable. `-l ADDR -p PORT` sets the listener; `-P 0` turns the vty TCP
//!   port off; `--vty_socket DIR` puts `bgpd.vty` in our directory, and `vtysh --vty_socket DIR -d
//!   bgpd` talks to it. `-S -u root -g root` stops it from switching to the `frr` user.
//! - A `127.0.0.0/8` next hop is a martian: the UPDATE is rejected ("Martian nexthop") unless
//!   `bgp allow-martian-nexthop` is set. eBGP needs `no bgp ebgp-requires-policy` (RFC 8212 default)
//!   and, on loopback, `disable-connected-check`.
//! - Per-route attributes come from one route-map per originated prefix (`network P route-map
//!   ORIGINATE-n`); the next hop is set per prefix by the outbound route-map `EXPORT`, which denies
//!   everything else. `bgp route-map delay-timer 0` turns off FRR's deferred re-evaluation of
//!   route-maps: with it on, the first evaluation after start-up fired just after the session came
//!   up, re-announced the routes ahead of the update group's coalesce timer, and a withdrawal made
//!   in that window was never sent. Re-announcing a prefix therefore replaces its route-map and
//!   re-issues its `network` statement, which re-evaluates it at once.
//! - A `network` route always carries MED (0 unless the route-map sets one).
//! - FRR honours NO_EXPORT on its own routes: a route given community 65535:65281 is not sent
//!   over eBGP at all.
//! - Graceful restart runs in FRR's default helper mode only: `bgp graceful-restart` (restarting
//!   mode) makes a freshly started bgpd defer best-path selection. So FRR keeps a restarting
//!   neighbor's routes as stale, but its own routes are not preserved at its neighbors if FRR dies.
//! - The password is written unquoted after `neighbor X password`, so it cannot contain spaces.
//!
//! Stale routes: `"stale": true` on the path in the JSON detail output (plus
//! `gracefulRestartSecondsRemaining`); the neighbor's `bgpStateIs` reads `passiveNSF` while the
//! neighbor is down. Withdrawals: FRR keeps no withdrawal counter, so `debug bgp updates in` is on
//! and the harness counts `bgpd.log` lines `rcvd UPDATE about <prefix> ... -- withdrawn`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;
use serde_json::Value;

use super::process::{self, DaemonProcess};
use super::{
    BgpPeer, COMMAND_TIMEOUT, Daemon, Error, Family, ImportCounters, Launched, Origin, PeerSpec,
    ReceivedRoute, Result, Route, SessionState,
};

const DAEMON: Daemon = Daemon::Frr;
const BGPD: &str = "/usr/lib/frr/bgpd";
/// Sequence number of the final deny entry of the `EXPORT` route-map.
const EXPORT_DENY_SEQUENCE: u32 = 65535;

/// A running FRR `bgpd` with one BGP session.
#[derive(Debug)]
pub struct FrrPeer {
    /// Route-map sequence number of every prefix ever configured; its policy entries stay after
    /// a withdrawal and are reused.
    sequences: BTreeMap<IpNet, u32>,
    /// Routes currently announced (with a `network` statement).
    announced: BTreeMap<IpNet, Route>,
    launched: Launched,
    bgpd_log: PathBuf,
    directory: tempfile::TempDir,
}

impl FrrPeer {
    /// Writes `bgpd.conf`, starts `bgpd` and waits until vtysh answers.
    pub fn start(spec: PeerSpec) -> Result<FrrPeer> {
        if let Some(password) = &spec.md5_password
            && password.contains(char::is_whitespace)
        {
            return Err(Error::Spec {
                daemon: DAEMON,
                message: "FRR passwords cannot contain whitespace".to_string(),
            });
        }
        let directory = process::temp_dir(DAEMON, "topologyd-frr-")?;
        let config = directory.path().join("bgpd.conf");
        let log = directory.path().join("daemon.log");
        let bgpd_log = directory.path().join("bgpd.log");
        let mut sequences = BTreeMap::new();
        let mut announced = BTreeMap::new();
        for route in &spec.originate {
            let next = u32::try_from(sequences.len() + 1).unwrap_or(u32::MAX);
            sequences.entry(route.prefix).or_insert(next);
            announced.insert(route.prefix, route.clone());
        }
        process::write_file(
            DAEMON,
            &config,
            &render_config(&spec, &sequences, &announced, &bgpd_log),
        )?;
        let mut command = Command::new(BGPD);
        command
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(directory.path().join("bgpd.pid"))
            .arg("--vty_socket")
            .arg(directory.path())
            .args(["-Z", "-S", "-u", "root", "-g", "root", "-P", "0"])
            .arg("-l")
            .arg(spec.local.ip().to_string())
            .arg("-p")
            .arg(spec.local.port().to_string());
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let peer = FrrPeer {
            sequences,
            announced,
            launched: Launched { spec, process },
            bgpd_log,
            directory,
        };
        peer.wait_until_up()?;
        Ok(peer)
    }

    fn wait_until_up(&self) -> Result<()> {
        self.launched.wait_until_up("vtysh", || {
            super::answers_json(self.vtysh(&["show bgp neighbors json"]), '{')
        })
    }

    /// Runs vtysh commands in one session (configuration context carries over) and returns stdout.
    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        // A dead daemon explains a failing control command better than the command does.
        self.launched.process.check_running()?;
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

    /// The temporary directory holding `bgpd.conf`, the vty socket and the logs.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    fn json(&self, command: &str) -> Result<Value> {
        let output = self.vtysh(&[command])?;
        serde_json::from_str(&output).map_err(|error| Error::Parse {
            daemon: DAEMON,
            command: format!("vtysh -c '{command}'"),
            message: format!("{error} in:\n{output}"),
        })
    }

    fn neighbor(&self) -> Result<Value> {
        let command = format!(
            "show bgp neighbors {} json",
            self.launched.spec.neighbor.ip()
        );
        let value = self.json(&command)?;
        value
            .as_object()
            .and_then(|neighbors| neighbors.values().next())
            .cloned()
            .ok_or_else(|| parse_error(&command, "no neighbor object", &value))
    }
}

impl BgpPeer for FrrPeer {
    fn launched(&self) -> &Launched {
        &self.launched
    }

    fn session_state(&self) -> Result<SessionState> {
        let neighbor = self.neighbor()?;
        let state = neighbor
            .get("bgpState")
            .and_then(Value::as_str)
            .ok_or_else(|| parse_error("show bgp neighbors json", "no bgpState", &neighbor))?;
        Ok(if state == "Established" {
            SessionState::Established
        } else {
            let detail = neighbor
                .get("bgpStateIs")
                .and_then(Value::as_str)
                .unwrap_or_default();
            SessionState::NotEstablished(format!("{state} {detail}").trim().to_string())
        })
    }

    fn routes(&self) -> Result<Vec<ReceivedRoute>> {
        let mut routes = Vec::new();
        for (family, afi) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
            if self.launched.spec.has_family(family) {
                let command = format!("show bgp {afi} unicast json detail");
                routes.extend(parse_routes(&command, &self.json(&command)?)?);
            }
        }
        Ok(super::sorted(routes))
    }

    fn counters(&self) -> Result<ImportCounters> {
        let neighbor = self.neighbor()?;
        let updates = neighbor
            .pointer("/messageStats/updatesRecv")
            .and_then(Value::as_u64)
            .ok_or_else(|| {
                parse_error(
                    "show bgp neighbors json",
                    "no messageStats.updatesRecv",
                    &neighbor,
                )
            })?;
        let log = std::fs::read_to_string(&self.bgpd_log).map_err(|source| Error::Io {
            daemon: DAEMON,
            context: format!("read {}", self.bgpd_log.display()),
            source,
        })?;
        Ok(ImportCounters {
            updates,
            withdrawals: count_withdrawals(&log),
            removed: None,
        })
    }

    fn announce(&mut self, routes: &[Route]) -> Result<()> {
        let mut commands = vec!["configure terminal".to_string()];
        for route in routes {
            let next = u32::try_from(self.sequences.len() + 1).unwrap_or(u32::MAX);
            let sequence = match self.sequences.get(&route.prefix) {
                Some(sequence) => {
                    // Replace the old attributes rather than add to them.
                    commands.push(format!("no route-map ORIGINATE-{sequence}"));
                    commands.push(format!("no route-map EXPORT permit {sequence}"));
                    *sequence
                }
                None => next,
            };
            self.sequences.insert(route.prefix, sequence);
            commands.extend(policy_lines(route, sequence));
            commands.push(format!("router bgp {}", self.launched.spec.local_asn));
            commands.push(format!("address-family {} unicast", afi(route.family())));
            commands.push(format!(
                "network {} route-map ORIGINATE-{sequence}",
                route.prefix
            ));
            commands.push("exit-address-family".to_string());
            commands.push("exit".to_string());
        }
        commands.push("end".to_string());
        self.vtysh(&commands.iter().map(String::as_str).collect::<Vec<_>>())?;
        for route in routes {
            self.announced.insert(route.prefix, route.clone());
        }
        Ok(())
    }

    fn withdraw(&mut self, prefixes: &[IpNet]) -> Result<()> {
        // Only the `network` statement goes: deleting the route-maps in the same breath races with
        // the withdrawal (FRR 8.4 then sometimes never sends it). The unused policy entries stay
        // and are replaced if the prefix is announced again.
        let mut commands = vec!["configure terminal".to_string()];
        for prefix in prefixes {
            let (Some(route), Some(sequence)) =
                (self.announced.get(prefix), self.sequences.get(prefix))
            else {
                continue;
            };
            commands.push(format!("router bgp {}", self.launched.spec.local_asn));
            commands.push(format!("address-family {} unicast", afi(route.family())));
            commands.push(format!(
                "no network {prefix} route-map ORIGINATE-{sequence}"
            ));
            commands.push("exit-address-family".to_string());
            commands.push("exit".to_string());
        }
        commands.push("end".to_string());
        self.vtysh(&commands.iter().map(String::as_str).collect::<Vec<_>>())?;
        for prefix in prefixes {
            self.announced.remove(prefix);
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        format!(
            "{}\n--- bgpd.log ---\n{}",
            self.launched.process.log_tail(),
            process::file_tail(&self.bgpd_log)
        )
    }
}

fn afi(family: Family) -> &'static str {
    match family {
        Family::Ipv4Unicast => "ipv4",
        Family::Ipv6Unicast => "ipv6",
    }
}

fn ip_keyword(family: Family) -> &'static str {
    match family {
        Family::Ipv4Unicast => "ip",
        Family::Ipv6Unicast => "ipv6",
    }
}

/// The prefix-list, the attribute route-map and the `EXPORT` entry of one originated route, as
/// configuration lines that work both in `bgpd.conf` and through `vtysh -c`.
fn policy_lines(route: &Route, sequence: u32) -> Vec<String> {
    let family = route.family();
    let mut lines = vec![format!(
        "{} prefix-list ORIGINATE-{sequence} seq 5 permit {}",
        ip_keyword(family),
        route.prefix
    )];
    lines.push(format!("route-map ORIGINATE-{sequence} permit 10"));
    lines.push(format!(
        "set origin {}",
        super::origin_keyword(route.origin)
    ));
    if !route.as_path.is_empty() {
        let path: Vec<String> = route.as_path.iter().map(u32::to_string).collect();
        lines.push(format!("set as-path prepend {}", path.join(" ")));
    }
    if let Some(med) = route.med {
        lines.push(format!("set metric {med}"));
    }
    if let Some(local_pref) = route.local_pref {
        lines.push(format!("set local-preference {local_pref}"));
    }
    if !route.communities.is_empty() {
        let communities: Vec<String> = route
            .communities
            .iter()
            .map(|(high, low)| format!("{high}:{low}"))
            .collect();
        lines.push(format!("set community {}", communities.join(" ")));
    }
    if !route.large_communities.is_empty() {
        let communities: Vec<String> = route
            .large_communities
            .iter()
            .map(|(global, first, second)| format!("{global}:{first}:{second}"))
            .collect();
        lines.push(format!("set large-community {}", communities.join(" ")));
    }
    lines.push("exit".to_string());
    lines.push(format!("route-map EXPORT permit {sequence}"));
    lines.push(format!(
        "match {} address prefix-list ORIGINATE-{sequence}",
        ip_keyword(family)
    ));
    lines.push(match route.next_hop {
        IpAddr::V4(next_hop) => format!("set ip next-hop {next_hop}"),
        IpAddr::V6(next_hop) => format!("set ipv6 next-hop global {next_hop}"),
    });
    lines.push("exit".to_string());
    lines
}

fn render_config(
    spec: &PeerSpec,
    sequences: &BTreeMap<IpNet, u32>,
    announced: &BTreeMap<IpNet, Route>,
    bgpd_log: &Path,
) -> String {
    let originated: Vec<(u32, &Route)> = announced
        .values()
        .filter_map(|route| Some((*sequences.get(&route.prefix)?, route)))
        .collect();
    let neighbor = spec.neighbor.ip();
    let mut config = String::new();
    let _ = writeln!(config, "log file {} debugging", bgpd_log.display());
    config.push_str("debug bgp updates in\ndebug bgp updates out\ndebug bgp neighbor-events\nbgp route-map delay-timer 0\n!\n");
    for (sequence, route) in &originated {
        for line in policy_lines(route, *sequence) {
            let _ = writeln!(config, "{line}");
        }
    }
    let _ = writeln!(config, "route-map EXPORT deny {EXPORT_DENY_SEQUENCE}\nexit");
    config.push_str("route-map IMPORT permit 10\nexit\n!\n");
    let _ = writeln!(config, "router bgp {}", spec.local_asn);
    let _ = writeln!(config, " bgp router-id {}", spec.router_id);
    config.push_str(
        " no bgp ebgp-requires-policy\n no bgp network import-check\n no bgp default ipv4-unicast\n bgp allow-martian-nexthop\n",
    );
    match spec.graceful_restart {
        Some(graceful_restart) => {
            // Helper mode is FRR's default. `bgp graceful-restart` (restarting mode) would also
            // make a freshly started bgpd defer best-path selection, and withdrawals made during
            // that window were never sent.
            let _ = writeln!(
                config,
                " bgp graceful-restart restart-time {}",
                graceful_restart.restart_time
            );
            let _ = writeln!(
                config,
                " bgp graceful-restart stalepath-time {}",
                graceful_restart.stale_time
            );
        }
        None => config.push_str(" bgp graceful-restart-disable\n"),
    }
    let _ = writeln!(
        config,
        " neighbor {neighbor} remote-as {}",
        spec.neighbor_asn
    );
    let _ = writeln!(config, " neighbor {neighbor} port {}", spec.neighbor.port());
    let _ = writeln!(
        config,
        " neighbor {neighbor} update-source {}",
        spec.local.ip()
    );
    let _ = writeln!(config, " neighbor {neighbor} disable-connected-check");
    let keepalive = (spec.hold_time / 3).max(1);
    let _ = writeln!(
        config,
        " neighbor {neighbor} timers {keepalive} {}",
        spec.hold_time
    );
    let _ = writeln!(config, " neighbor {neighbor} timers connect 1");
    let _ = writeln!(config, " neighbor {neighbor} advertisement-interval 0");
    if spec.passive {
        let _ = writeln!(config, " neighbor {neighbor} passive");
    }
    if let Some(password) = &spec.md5_password {
        let _ = writeln!(config, " neighbor {neighbor} password {password}");
    }
    if spec.ttl_security {
        let _ = writeln!(config, " neighbor {neighbor} ttl-security hops 1");
    }
    for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        if !spec.has_family(family) {
            continue;
        }
        let _ = writeln!(config, " address-family {} unicast", afi(family));
        let _ = writeln!(config, "  neighbor {neighbor} activate");
        let _ = writeln!(config, "  neighbor {neighbor} route-map IMPORT in");
        let _ = writeln!(config, "  neighbor {neighbor} route-map EXPORT out");
        for (sequence, route) in originated
            .iter()
            .filter(|(_, route)| route.family() == family)
        {
            let _ = writeln!(
                config,
                "  network {} route-map ORIGINATE-{sequence}",
                route.prefix
            );
        }
        config.push_str(" exit-address-family\n");
    }
    config.push_str("exit\n!\n");
    config
}

fn parse_error(command: &str, message: &str, value: &Value) -> Error {
    Error::Parse {
        daemon: DAEMON,
        command: format!("vtysh -c '{command}'"),
        message: format!("{message} in: {value}"),
    }
}

/// Well-known communities as FRR names them in JSON (RFC 1997, RFC 7999, RFC 8326, RFC 9494).
fn well_known_community(name: &str) -> Option<(u16, u16)> {
    Some(match name {
        "gshut" | "graceful-shutdown" => (0xFFFF, 0),
        "acceptown" | "accept-own" => (0xFFFF, 1),
        "llgr-stale" => (0xFFFF, 6),
        "no-llgr" => (0xFFFF, 7),
        "blackhole" => (0xFFFF, 666),
        "noExport" | "no-export" => (0xFFFF, 0xFF01),
        "noAdvertise" | "no-advertise" => (0xFFFF, 0xFF02),
        "localAs" | "local-AS" | "noExportSubconfed" => (0xFFFF, 0xFF03),
        "noPeer" | "no-peer" => (0xFFFF, 0xFF04),
        _ => return None,
    })
}

/// Parses `show bgp <afi> unicast json detail`: `routes` maps a prefix to an array whose first
/// element describes the prefix and whose other elements are paths. Locally sourced paths are
/// skipped, so only what the neighbor sent remains.
fn parse_routes(command: &str, value: &Value) -> Result<Vec<ReceivedRoute>> {
    let mut routes = Vec::new();
    let Some(table) = value.get("routes").and_then(Value::as_object) else {
        return Ok(routes);
    };
    for (prefix_text, entries) in table {
        let prefix: IpNet = prefix_text
            .parse()
            .map_err(|_| parse_error(command, "bad prefix", &Value::String(prefix_text.clone())))?;
        let paths = entries.as_array().map(Vec::as_slice).unwrap_or_default();
        for path in paths
            .iter()
            .filter(|path| path.get("aspath").is_some() || path.get("nexthops").is_some())
        {
            let sourced = path
                .get("sourced")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                || path.get("local").and_then(Value::as_bool).unwrap_or(false);
            if sourced {
                continue;
            }
            routes.push(parse_path(command, prefix, path)?);
        }
    }
    Ok(routes)
}

fn parse_path(command: &str, prefix: IpNet, path: &Value) -> Result<ReceivedRoute> {
    let bad = |message: &str| parse_error(command, message, path);
    let as_path = super::as_path_from_segments(path.pointer("/aspath/segments"), "list");
    let next_hop = path
        .get("nexthops")
        .and_then(Value::as_array)
        .and_then(|next_hops| {
            next_hops.iter().find(|next_hop| {
                next_hop.get("scope").and_then(Value::as_str) != Some("link-local")
            })
        })
        .and_then(|next_hop| next_hop.get("ip").and_then(Value::as_str))
        .and_then(|text| text.parse::<IpAddr>().ok())
        .ok_or_else(|| bad("no usable next hop"))?;
    let origin = match path.get("origin").and_then(Value::as_str) {
        Some("IGP") => Origin::Igp,
        Some("EGP") => Origin::Egp,
        Some("incomplete") | Some("Incomplete") | Some("?") => Origin::Incomplete,
        _ => return Err(bad("unknown origin")),
    };
    let number = |key: &str| {
        path.get(key)
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
    };
    let list = |key: &str| -> Vec<String> {
        path.get(key)
            .and_then(|value| value.get("list"))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let communities = list("community")
        .iter()
        .map(|text| super::parse_community(text).or_else(|| well_known_community(text)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("unknown community"))?;
    let large_communities = list("largeCommunity")
        .iter()
        .map(|text| super::parse_large_community(text))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("bad large community"))?;
    Ok(ReceivedRoute {
        prefix,
        as_path,
        next_hop,
        origin,
        med: number("metric"),
        local_pref: number("locPrf").or_else(|| number("localpref")),
        communities,
        large_communities,
        stale: path.get("stale").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn count_withdrawals(log: &str) -> u64 {
    let count = log
        .lines()
        .filter(|line| line.contains("rcvd UPDATE about") && line.ends_with("-- withdrawn"))
        .count();
    u64::try_from(count).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_detail_json_and_skips_local_paths() {
        let text = r#"{"routes": {"203.0.113.0/24": [{"prefix":"203.0.113.0/24"},
            {"aspath":{"segments":[{"type":"as-sequence","list":[65002,7]}]},"stale":true,"origin":"IGP",
             "metric":5,"community":{"list":["65002:9","noExport"]},"largeCommunity":{"list":["65002:9:9"]},
             "nexthops":[{"ip":"192.0.2.2","afi":"ipv4"}],"peer":{"peerId":"127.1.0.2"}}],
          "198.51.100.0/24": [{"prefix":"198.51.100.0/24"},
            {"aspath":{"segments":[]},"origin":"IGP","sourced":true,"nexthops":[{"ip":"0.0.0.0"}]}]}}"#;
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        let routes = parse_routes("test", &value).expect("parses");
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].as_path, vec![65002, 7]);
        assert_eq!(routes[0].communities, vec![(65002, 9), (0xFFFF, 0xFF01)]);
        assert!(routes[0].stale);
        assert_eq!(routes[0].med, Some(5));
    }

    #[test]
    fn counts_withdrawn_log_lines() {
        let log = "BGP: [PAPP6-VDAWM] 127.1.0.2(Unknown) rcvd UPDATE about 203.0.113.0/24 IPv4 unicast -- withdrawn\nBGP: rcvd UPDATE wlen 4\n";
        assert_eq!(count_withdrawals(log), 1);
    }
}
