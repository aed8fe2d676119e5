//! GoBGP launcher: writes a TOML configuration for one neighbor, runs `gobgpd` in the foreground
//! with its gRPC API on a Unix socket in its own directory, originates routes with
//! `gobgp global rib add`, and reads its RIB back with `gobgp global rib -a <family> -j`.
//!
//! Quirks found on GoBGP 3.10:
//! - `global.config.port` and `local-address-list` set the listener; `neighbors.transport.config`
//!   has `local-address`, `remote-port` and `passive-mode`. No connected check, so loopback eBGP
//!   works without multihop. `idle-hold-time-after-reset` defaults to 30 s, which stalls a test
//!   after any session reset, so it is 1 s here, as is `connect-retry`.
//! - An UPDATE whose next hop is a loopback address is treated as withdraw ("invalid nexthop
//!   address"): announce documentation-range next hops.
//! - `gobgp global rib add ... aspath A,B` is the path after gobgpd's own ASN, which it prepends on
//!   eBGP, like every other launcher here.
//! - In the JSON RIB, a path received from a neighbor has `neighbor-ip`; locally originated paths do
//!   not. Attributes are listed by type code (1 ORIGIN, 2 AS_PATH, 3 NEXT_HOP, 4 MED, 5 LOCAL_PREF,
//!   8 COMMUNITIES as 32-bit integers, 14 MP_REACH_NLRI with the IPv6 next hop, 32 LARGE_COMMUNITY).
//!
//! Stale routes: `"stale": true` on the path. Withdrawals: `gobgp neighbor ADDR -j` →
//! `state.messages.received.withdraw_prefix` (the key is absent while it is zero).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;

use ipnet::IpNet;
use serde_json::Value;

use super::process::{self, DaemonProcess};
use super::{
    BgpPeer, COMMAND_TIMEOUT, Daemon, Error, Family, ImportCounters, Launched, Origin, PeerSpec,
    ReceivedRoute, Result, Route, SessionState,
};

const DAEMON: Daemon = Daemon::Gobgp;
/// `session_state` value of Established in GoBGP's API (`apipb.PeerState.SessionState`).
const ESTABLISHED: u64 = 6;

/// A running `gobgpd` with one neighbor.
#[derive(Debug)]
pub struct GobgpPeer {
    originated: BTreeMap<IpNet, Route>,
    launched: Launched,
    api_target: String,
    directory: tempfile::TempDir,
}

impl GobgpPeer {
    /// Writes `gobgpd.toml`, starts `gobgpd`, waits for its API and adds the originated routes.
    pub fn start(spec: PeerSpec) -> Result<GobgpPeer> {
        GobgpPeer::start_with_bmp(spec, None)
    }

    /// [`GobgpPeer::start`], exporting BMP (pre- and post-policy Adj-RIB-In and Loc-RIB,
    /// `route-monitoring-policy = "all"`) to `station`.
    pub fn start_with_bmp(spec: PeerSpec, station: Option<SocketAddr>) -> Result<GobgpPeer> {
        let directory = process::temp_dir(DAEMON, "topologyd-gobgp-")?;
        let config = directory.path().join("gobgpd.toml");
        let log = directory.path().join("daemon.log");
        let api_target = format!("unix://{}", directory.path().join("api.sock").display());
        let mut text = render_config(&spec);
        if let Some(station) = station {
            let _ = writeln!(
                text,
                "[[bmp-servers]]\n  [bmp-servers.config]\n    address = \"{}\"\n    port = {}\n    route-monitoring-policy = \"all\"",
                station.ip(),
                station.port()
            );
        }
        process::write_file(DAEMON, &config, &text)?;
        let mut command = Command::new("gobgpd");
        command
            .arg("-f")
            .arg(&config)
            .args(["-t", "toml", "-p", "--pprof-disable"])
            .arg(format!("--api-hosts={api_target}"));
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let mut peer = GobgpPeer {
            originated: BTreeMap::new(),
            launched: Launched { spec, process },
            api_target,
            directory,
        };
        peer.wait_until_up()?;
        let routes = peer.launched.spec.originate.clone();
        peer.announce(&routes)?;
        Ok(peer)
    }

    fn wait_until_up(&self) -> Result<()> {
        self.launched.wait_until_up("the gRPC API", || {
            super::answers_json(self.gobgp(&["neighbor", "-j"]), '[')
        })
    }

    /// Runs one `gobgp` CLI command against this daemon and returns stdout.
    pub fn gobgp(&self, arguments: &[&str]) -> Result<String> {
        // A dead daemon explains a failing control command better than the command does.
        self.launched.process.check_running()?;
        let mut command = Command::new("gobgp");
        command
            .arg("--target")
            .arg(&self.api_target)
            .args(arguments);
        process::run(DAEMON, &mut command, COMMAND_TIMEOUT)
    }

    /// The temporary directory holding `gobgpd.toml`, the API socket and `daemon.log`.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    fn json(&self, arguments: &[&str]) -> Result<Value> {
        let output = self.gobgp(arguments)?;
        serde_json::from_str(&output).map_err(|error| Error::Parse {
            daemon: DAEMON,
            command: format!("gobgp {}", arguments.join(" ")),
            message: format!("{error} in:\n{output}"),
        })
    }

    fn neighbor(&self) -> Result<Value> {
        let address = self.launched.spec.neighbor.ip().to_string();
        self.json(&["neighbor", &address, "-j"])
    }
}

impl BgpPeer for GobgpPeer {
    fn launched(&self) -> &Launched {
        &self.launched
    }

    fn session_state(&self) -> Result<SessionState> {
        let neighbor = self.neighbor()?;
        let state = neighbor
            .pointer("/state/session_state")
            .ok_or_else(|| parse_error("neighbor -j", "no state.session_state", &neighbor))?;
        let name = match state {
            Value::Number(number) => match number.as_u64() {
                Some(1) => "idle".to_string(),
                Some(2) => "connect".to_string(),
                Some(3) => "active".to_string(),
                Some(4) => "opensent".to_string(),
                Some(5) => "openconfirm".to_string(),
                Some(ESTABLISHED) => "established".to_string(),
                _ => number.to_string(),
            },
            Value::String(text) => text.to_ascii_lowercase(),
            other => other.to_string(),
        };
        Ok(if name == "established" {
            SessionState::Established
        } else {
            SessionState::NotEstablished(name)
        })
    }

    fn routes(&self) -> Result<Vec<ReceivedRoute>> {
        let mut routes = Vec::new();
        for (family, name) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
            if self.launched.spec.has_family(family) {
                let value = self.json(&["global", "rib", "-a", name, "-j"])?;
                routes.extend(parse_rib(&value)?);
            }
        }
        Ok(super::sorted(routes))
    }

    fn counters(&self) -> Result<ImportCounters> {
        let neighbor = self.neighbor()?;
        let received = neighbor.pointer("/state/messages/received");
        let counter = |key: &str| {
            received
                .and_then(|received| received.get(key))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(ImportCounters {
            updates: counter("update"),
            withdrawals: counter("withdraw_prefix"),
            removed: None,
        })
    }

    fn announce(&mut self, routes: &[Route]) -> Result<()> {
        for route in routes {
            let arguments = add_arguments(route);
            self.gobgp(&arguments.iter().map(String::as_str).collect::<Vec<_>>())?;
            self.originated.insert(route.prefix, route.clone());
        }
        Ok(())
    }

    fn withdraw(&mut self, prefixes: &[IpNet]) -> Result<()> {
        for prefix in prefixes {
            if self.originated.remove(prefix).is_some() {
                let family = family_name(Family::of(prefix));
                self.gobgp(&["global", "rib", "del", &prefix.to_string(), "-a", family])?;
            }
        }
        Ok(())
    }
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Ipv4Unicast => "ipv4",
        Family::Ipv6Unicast => "ipv6",
    }
}

fn add_arguments(route: &Route) -> Vec<String> {
    let mut arguments: Vec<String> = ["global", "rib", "add", "-a", family_name(route.family())]
        .iter()
        .map(|part| part.to_string())
        .collect();
    arguments.push(route.prefix.to_string());
    // `KEYWORD VALUE,VALUE…`, left out when there are no values.
    let mut option = |keyword: &str, values: Vec<String>| {
        if !values.is_empty() {
            arguments.push(keyword.to_string());
            arguments.push(values.join(","));
        }
    };
    option("nexthop", vec![route.next_hop.to_string()]);
    option(
        "origin",
        vec![super::origin_keyword(route.origin).to_string()],
    );
    option("aspath", route.as_path.iter().map(u32::to_string).collect());
    option("med", route.med.iter().map(u32::to_string).collect());
    option(
        "local-pref",
        route.local_pref.iter().map(u32::to_string).collect(),
    );
    option(
        "community",
        route
            .communities
            .iter()
            .map(|(high, low)| format!("{high}:{low}"))
            .collect(),
    );
    option(
        "large-community",
        route
            .large_communities
            .iter()
            .map(|(global, first, second)| format!("{global}:{first}:{second}"))
            .collect(),
    );
    arguments
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn render_config(spec: &PeerSpec) -> String {
    let mut config = String::new();
    let local = spec.local.ip().to_string();
    config.push_str("[global.config]\n");
    let _ = writeln!(config, "  as = {}", spec.local_asn);
    let _ = writeln!(config, "  router-id = \"{}\"", spec.router_id);
    let _ = writeln!(config, "  port = {}", spec.local.port());
    let _ = writeln!(config, "  local-address-list = [\"{local}\"]");
    config.push_str("[[neighbors]]\n  [neighbors.config]\n");
    let _ = writeln!(config, "    neighbor-address = \"{}\"", spec.neighbor.ip());
    let _ = writeln!(config, "    peer-as = {}", spec.neighbor_asn);
    if let Some(password) = &spec.md5_password {
        let _ = writeln!(config, "    auth-password = {}", toml_string(password));
    }
    config.push_str("  [neighbors.transport.config]\n");
    let _ = writeln!(config, "    local-address = \"{local}\"");
    let _ = writeln!(config, "    remote-port = {}", spec.neighbor.port());
    let _ = writeln!(config, "    passive-mode = {}", spec.passive);
    config.push_str("  [neighbors.timers.config]\n");
    let _ = writeln!(config, "    hold-time = {}", spec.hold_time);
    let _ = writeln!(
        config,
        "    keepalive-interval = {}",
        (spec.hold_time / 3).max(1)
    );
    config.push_str("    connect-retry = 1\n    idle-hold-time-after-reset = 1\n");
    if spec.ttl_security {
        config
            .push_str("  [neighbors.ttl-security.config]\n    enabled = true\n    ttl-min = 255\n");
    }
    if let Some(graceful_restart) = spec.graceful_restart {
        config.push_str("  [neighbors.graceful-restart.config]\n    enabled = true\n");
        let _ = writeln!(
            config,
            "    restart-time = {}",
            graceful_restart.restart_time
        );
    }
    for family in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
        if !spec.has_family(family) {
            continue;
        }
        config.push_str("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n");
        let _ = writeln!(
            config,
            "      afi-safi-name = \"{}-unicast\"",
            family_name(family)
        );
        if spec.graceful_restart.is_some() {
            config.push_str(
                "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n",
            );
        }
    }
    config
}

fn parse_error(command: &str, message: &str, value: &Value) -> Error {
    Error::Parse {
        daemon: DAEMON,
        command: format!("gobgp {command}"),
        message: format!("{message} in: {value}"),
    }
}

/// Parses `gobgp global rib -j`: a map from prefix to paths; only paths with `neighbor-ip` were
/// received.
fn parse_rib(value: &Value) -> Result<Vec<ReceivedRoute>> {
    let command = "global rib -j";
    let mut routes = Vec::new();
    let Some(table) = value.as_object() else {
        return Err(parse_error(command, "not an object", value));
    };
    for (prefix_text, paths) in table {
        let prefix: IpNet = prefix_text
            .parse()
            .map_err(|_| parse_error(command, "bad prefix", &Value::String(prefix_text.clone())))?;
        for path in paths.as_array().map(Vec::as_slice).unwrap_or_default() {
            if path.get("neighbor-ip").is_none() {
                continue;
            }
            routes.push(parse_path(prefix, path)?);
        }
    }
    Ok(routes)
}

fn parse_path(prefix: IpNet, path: &Value) -> Result<ReceivedRoute> {
    let command = "global rib -j";
    let bad = |message: &str| parse_error(command, message, path);
    let number = |attribute: &Value, key: &str| {
        attribute
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
    };
    let mut route = ReceivedRoute {
        prefix,
        as_path: Vec::new(),
        next_hop: match prefix {
            IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        },
        origin: Origin::Igp,
        med: None,
        local_pref: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        stale: path.get("stale").and_then(Value::as_bool).unwrap_or(false),
    };
    let attributes = path
        .get("attrs")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no attrs"))?;
    for attribute in attributes {
        match attribute.get("type").and_then(Value::as_u64) {
            Some(1) => {
                route.origin = match attribute.get("value").and_then(Value::as_u64) {
                    Some(0) => Origin::Igp,
                    Some(1) => Origin::Egp,
                    Some(2) => Origin::Incomplete,
                    _ => return Err(bad("bad origin")),
                }
            }
            Some(2) => {
                route.as_path = super::as_path_from_segments(attribute.get("as_paths"), "asns");
            }
            Some(3) | Some(14) => {
                let next_hop = match attribute.get("nexthop") {
                    Some(Value::String(text)) => Some(text.as_str()),
                    Some(Value::Array(items)) => items.first().and_then(Value::as_str),
                    _ => None,
                };
                if let Some(next_hop) = next_hop {
                    route.next_hop = next_hop.parse().map_err(|_| bad("bad next hop"))?;
                }
            }
            Some(4) => route.med = number(attribute, "metric"),
            Some(5) => route.local_pref = number(attribute, "value"),
            Some(8) => {
                for community in attribute
                    .get("communities")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let value = community
                        .as_u64()
                        .and_then(|value| u32::try_from(value).ok())
                        .ok_or_else(|| bad("bad community"))?;
                    let high = u16::try_from(value >> 16).unwrap_or(u16::MAX);
                    let low = u16::try_from(value & 0xFFFF).unwrap_or(u16::MAX);
                    route.communities.push((high, low));
                }
            }
            Some(32) => {
                for community in attribute
                    .get("value")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    match (
                        number(community, "ASN"),
                        number(community, "LocalData1"),
                        number(community, "LocalData2"),
                    ) {
                        (Some(global), Some(first), Some(second)) => {
                            route.large_communities.push((global, first, second))
                        }
                        _ => return Err(bad("bad large community")),
                    }
                }
            }
            _ => {}
        }
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_arguments_name_every_attribute_set_and_only_those() {
        let prefix: IpNet = "203.0.113.0/24".parse().expect("a prefix");
        let plain = Route::new(prefix).next_hop("192.0.2.1".parse().expect("an address"));
        assert_eq!(
            add_arguments(&plain).join(" "),
            "global rib add -a ipv4 203.0.113.0/24 nexthop 192.0.2.1 origin igp"
        );
        let full = plain
            .as_path(vec![65002, 65003])
            .origin(Origin::Incomplete)
            .med(7)
            .local_pref(200)
            .community(65002, 9)
            .community(65002, 10)
            .large_community(65002, 1, 2);
        assert_eq!(
            add_arguments(&full).join(" "),
            "global rib add -a ipv4 203.0.113.0/24 nexthop 192.0.2.1 origin incomplete \
             aspath 65002,65003 med 7 local-pref 200 community 65002:9,65002:10 \
             large-community 65002:1:2"
        );
    }

    #[test]
    fn parses_received_paths_only() {
        let text = r#"{"203.0.113.0/24":[{"nlri":{"prefix":"203.0.113.0/24"},"attrs":[{"type":1,"value":0},
            {"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[65002]}]},{"type":3,"nexthop":"192.0.2.2"},
            {"type":4,"metric":7},{"type":8,"communities":[4259971081]},
            {"type":32,"value":[{"ASN":65002,"LocalData1":9,"LocalData2":9}]}],"stale":false,"neighbor-ip":"127.1.0.2"}],
          "198.51.100.0/24":[{"nlri":{"prefix":"198.51.100.0/24"},"attrs":[],"stale":false}]}"#;
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        let routes = parse_rib(&value).expect("parses");
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].communities, vec![(65002, 9)]);
        assert_eq!(routes[0].large_communities, vec![(65002, 9, 9)]);
        assert_eq!(routes[0].med, Some(7));
        assert_eq!(
            routes[0].next_hop,
            "192.0.2.2".parse::<IpAddr>().expect("address")
        );
    }
}
