//! OpenBGPD launcher: writes `bgpd.conf` for one neighbor, runs `bgpd -d` (OpenBGPD portable,
//! Debian's 7.7) with its control socket in its own directory, originates routes with
//! `bgpctl network add`, and reads its RIB and counters back with `bgpctl -j`.
//!
//! Quirks found on OpenBGPD 7.7 (portable):
//! - `bgpd` must run as root: it forks privilege-separated processes that chroot into the
//!   `_openbgpd` user's home, `/run/openbgpd`, and fail ("chroot: No such file or directory")
//!   when it is missing, as it is on a machine where the packaged service never ran. The
//!   launcher creates that (empty) directory; it touches nothing else of the system's.
//! - There is no command-line option for the control socket: `socket "PATH"` in `bgpd.conf`.
//! - `fib-update no` is essential: by default `bgpd` installs what it learns into the kernel's
//!   routing table.
//! - Without filter rules nothing is accepted or sent (RFC 8212): `allow from any` and
//!   `allow to any`.
//! - `listen on ADDR port P` sets the listener; the neighbor's `port` the port it connects to and
//!   `local-address` the source. Loopback eBGP needs no multihop.
//! - A connection attempt that fails is retried only after the connect-retry time (120 s): a
//!   non-passive OpenBGPD must start after its neighbor listens.
//! - No TCP-MD5 (RFC 2385): the portable 7.7 build signs through PF_KEY, which Linux lacks
//!   (its log says "PF_KEY not available, disabling ipsec"), so a session with a password never
//!   comes up; such a spec is refused.
//! - Neither `bgpd.conf` nor `bgpctl network add` can originate an arbitrary AS path (only
//!   `prepend-self`), so routes with [`Route::as_path`] are refused as an unsupported spec.
//! - An IPv4 next hop is kept on eBGP only when the route is originated with it; a received IPv6
//!   route over an IPv4 session shows the MP_REACH next hop as sent.
//!
//! Stale routes: `"stale": true` on the path in `bgpctl -j show rib detail`, while the neighbor
//! is down under graceful restart. Withdrawals: `bgpctl -j show neighbor ADDR` →
//! `stats.update.received.withdraws` (per prefix).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use ipnet::IpNet;
use serde_json::Value;

use super::process::{self, DaemonProcess};
use super::{
    BgpPeer, COMMAND_TIMEOUT, Daemon, Error, Family, ImportCounters, Launched, Origin, PeerSpec,
    ReceivedRoute, Result, Route, SessionState,
};

const DAEMON: Daemon = Daemon::Openbgpd;
/// The privilege-separated processes chroot here (the `_openbgpd` user's home in Debian).
const CHROOT: &str = "/run/openbgpd";
/// OpenBGPD's own binary: FRR also ships a `bgpd` (in /usr/lib/frr), never on PATH, but the
/// full path leaves no doubt which one runs.
const BGPD: &str = "/usr/sbin/bgpd";
const BGPCTL: &str = "/usr/sbin/bgpctl";

/// A running OpenBGPD with one neighbor.
#[derive(Debug)]
pub struct OpenbgpdPeer {
    originated: BTreeMap<IpNet, Route>,
    launched: Launched,
    socket: PathBuf,
    directory: tempfile::TempDir,
}

impl OpenbgpdPeer {
    /// Writes `bgpd.conf` (with the originated routes as `network` statements), checks it with
    /// `bgpd -n`, starts `bgpd -d` and waits until its control socket answers.
    pub fn start(spec: PeerSpec) -> Result<OpenbgpdPeer> {
        if let Some(route) = spec
            .originate
            .iter()
            .find(|route| !route.as_path.is_empty())
        {
            return Err(unsupported_as_path(route));
        }
        if spec.md5_password.is_some() {
            return Err(Error::Spec {
                daemon: DAEMON,
                message: "OpenBGPD 7.7 portable on Linux has no TCP-MD5 (\"PF_KEY not available\")"
                    .to_string(),
            });
        }
        std::fs::create_dir_all(CHROOT).map_err(|source| Error::Io {
            daemon: DAEMON,
            context: format!("creating the chroot directory {CHROOT}"),
            source,
        })?;
        let directory = process::temp_dir(DAEMON, "topologyd-openbgpd-")?;
        let config = directory.path().join("bgpd.conf");
        let socket = directory.path().join("bgpd.sock");
        let log = directory.path().join("daemon.log");
        process::write_file(DAEMON, &config, &render_config(&spec, &socket))?;
        let mut check = Command::new(BGPD);
        check.arg("-n").arg("-f").arg(&config);
        process::run(DAEMON, &mut check, COMMAND_TIMEOUT)?;
        let mut command = Command::new(BGPD);
        command.arg("-d").arg("-f").arg(&config);
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let originated = spec
            .originate
            .iter()
            .map(|route| (route.prefix, route.clone()))
            .collect();
        let peer = OpenbgpdPeer {
            originated,
            launched: Launched { spec, process },
            socket,
            directory,
        };
        peer.launched.wait_until_up("the control socket", || {
            super::answers_json(peer.bgpctl(&["-j", "show", "neighbor"]), '{')
        })?;
        Ok(peer)
    }

    /// Runs one `bgpctl` command against this daemon and returns stdout.
    pub fn bgpctl(&self, arguments: &[&str]) -> Result<String> {
        // A dead daemon explains a failing control command better than the command does.
        self.launched.process.check_running()?;
        let mut command = Command::new(BGPCTL);
        command.arg("-s").arg(&self.socket).args(arguments);
        process::run(DAEMON, &mut command, COMMAND_TIMEOUT)
    }

    /// The temporary directory holding `bgpd.conf`, the control socket and `daemon.log`.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// Asks the neighbor for a route refresh (RFC 2918) of every negotiated family.
    pub fn request_refresh(&self) -> Result<()> {
        let neighbor = self.launched.spec.neighbor.ip().to_string();
        self.bgpctl(&["neighbor", &neighbor, "refresh"]).map(|_| ())
    }

    fn json(&self, arguments: &[&str]) -> Result<Value> {
        let output = self.bgpctl(arguments)?;
        serde_json::from_str(&output).map_err(|error| Error::Parse {
            daemon: DAEMON,
            command: format!("bgpctl {}", arguments.join(" ")),
            message: format!("{error} in:\n{output}"),
        })
    }

    fn neighbor(&self) -> Result<Value> {
        let address = self.launched.spec.neighbor.ip().to_string();
        let answer = self.json(&["-j", "show", "neighbor", &address])?;
        answer
            .pointer("/neighbors/0")
            .cloned()
            .ok_or_else(|| parse_error("show neighbor", "no neighbors[0]", &answer))
    }
}

impl BgpPeer for OpenbgpdPeer {
    fn launched(&self) -> &Launched {
        &self.launched
    }

    fn session_state(&self) -> Result<SessionState> {
        let neighbor = self.neighbor()?;
        let state = neighbor
            .get("state")
            .and_then(Value::as_str)
            .ok_or_else(|| parse_error("show neighbor", "no state", &neighbor))?;
        Ok(if state.eq_ignore_ascii_case("established") {
            SessionState::Established
        } else {
            SessionState::NotEstablished(state.to_string())
        })
    }

    fn routes(&self) -> Result<Vec<ReceivedRoute>> {
        let rib = self.json(&["-j", "show", "rib", "detail"])?;
        Ok(super::sorted(parse_rib(&rib)?))
    }

    fn counters(&self) -> Result<ImportCounters> {
        let neighbor = self.neighbor()?;
        let counter = |key: &str| {
            neighbor
                .pointer(&format!("/stats/update/received/{key}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        Ok(ImportCounters {
            updates: counter("updates"),
            withdrawals: counter("withdraws"),
            removed: None,
        })
    }

    fn announce(&mut self, routes: &[Route]) -> Result<()> {
        for route in routes {
            if !route.as_path.is_empty() {
                return Err(unsupported_as_path(route));
            }
            let mut arguments = vec!["network".to_string(), "add".to_string()];
            arguments.push(route.prefix.to_string());
            arguments.extend(attribute_words(route));
            self.bgpctl(&arguments.iter().map(String::as_str).collect::<Vec<_>>())?;
            self.originated.insert(route.prefix, route.clone());
        }
        Ok(())
    }

    fn withdraw(&mut self, prefixes: &[IpNet]) -> Result<()> {
        for prefix in prefixes {
            if self.originated.remove(prefix).is_some() {
                self.bgpctl(&["network", "delete", &prefix.to_string()])?;
            }
        }
        Ok(())
    }
}

fn unsupported_as_path(route: &Route) -> Error {
    Error::Spec {
        daemon: DAEMON,
        message: format!(
            "OpenBGPD cannot originate {} with the AS path {:?} (only its own ASN)",
            route.prefix, route.as_path
        ),
    }
}

/// The attribute words of a route, as both `network PREFIX set { … }` and `bgpctl network add
/// PREFIX …` spell them.
fn attribute_words(route: &Route) -> Vec<String> {
    let mut words = vec!["nexthop".to_string(), route.next_hop.to_string()];
    words.push("origin".to_string());
    words.push(super::origin_keyword(route.origin).to_string());
    if let Some(med) = route.med {
        words.extend(["med".to_string(), med.to_string()]);
    }
    if let Some(local_pref) = route.local_pref {
        words.extend(["localpref".to_string(), local_pref.to_string()]);
    }
    for (high, low) in &route.communities {
        words.extend(["community".to_string(), format!("{high}:{low}")]);
    }
    for (global, first, second) in &route.large_communities {
        words.extend([
            "large-community".to_string(),
            format!("{global}:{first}:{second}"),
        ]);
    }
    words
}

fn render_config(spec: &PeerSpec, socket: &Path) -> String {
    let mut config = String::new();
    let local = spec.local.ip();
    let _ = writeln!(config, "socket \"{}\"", socket.display());
    let _ = writeln!(config, "AS {}", spec.local_asn);
    let _ = writeln!(config, "router-id {}", spec.router_id);
    let _ = writeln!(config, "listen on {local} port {}", spec.local.port());
    config.push_str("fib-update no\n");
    let _ = writeln!(config, "neighbor {} {{", spec.neighbor.ip());
    let _ = writeln!(config, "  remote-as {}", spec.neighbor_asn);
    let _ = writeln!(config, "  local-address {local}");
    let _ = writeln!(config, "  port {}", spec.neighbor.port());
    let _ = writeln!(config, "  holdtime {}", spec.hold_time);
    if spec.passive {
        config.push_str("  passive\n");
    }
    if spec.ttl_security {
        config.push_str("  ttl-security yes\n");
    }
    for (family, name) in [(Family::Ipv4Unicast, "IPv4"), (Family::Ipv6Unicast, "IPv6")] {
        let announced = if spec.has_family(family) {
            "unicast"
        } else {
            "none"
        };
        let _ = writeln!(config, "  announce {name} {announced}");
    }
    let restart = if spec.graceful_restart.is_some() {
        "yes"
    } else {
        "no"
    };
    let _ = writeln!(config, "  announce restart {restart}");
    config.push_str("}\nallow from any\nallow to any\n");
    for route in &spec.originate {
        let _ = writeln!(
            config,
            "network {} set {{ {} }}",
            route.prefix,
            attribute_words(route).join(" ")
        );
    }
    config
}

fn parse_error(command: &str, message: &str, value: &Value) -> Error {
    Error::Parse {
        daemon: DAEMON,
        command: format!("bgpctl -j {command}"),
        message: format!("{message} in: {value}"),
    }
}

/// Parses `bgpctl -j show rib detail`: `{"rib": [path, …]}`; only paths learned from a
/// neighbor (`source` other than `internal`) count.
fn parse_rib(value: &Value) -> Result<Vec<ReceivedRoute>> {
    let command = "show rib detail";
    let paths = match value.get("rib") {
        Some(Value::Array(paths)) => paths.as_slice(),
        // An empty RIB is printed as an empty object.
        None if value.as_object().is_some_and(serde_json::Map::is_empty) => &[],
        _ => return Err(parse_error(command, "no rib array", value)),
    };
    paths
        .iter()
        .filter(|path| path.get("source").and_then(Value::as_str) != Some("internal"))
        .map(parse_path)
        .collect()
}

fn parse_path(path: &Value) -> Result<ReceivedRoute> {
    let bad = |message: &str| parse_error("show rib detail", message, path);
    let text = |key: &str| path.get(key).and_then(Value::as_str);
    let prefix: IpNet = text("prefix")
        .and_then(|prefix| prefix.parse().ok())
        .ok_or_else(|| bad("bad prefix"))?;
    let as_path = text("aspath")
        .unwrap_or_default()
        .split_whitespace()
        .map(|asn| asn.trim_matches(|c| c == '{' || c == '}' || c == ','))
        .filter(|asn| !asn.is_empty())
        .map(|asn| asn.parse::<u32>().map_err(|_| bad("bad AS path")))
        .collect::<Result<Vec<u32>>>()?;
    let next_hop = match text("exit_nexthop") {
        Some(next_hop) => next_hop.parse().map_err(|_| bad("bad next hop"))?,
        None => match prefix {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        },
    };
    let origin = match text("origin").map(str::to_ascii_lowercase).as_deref() {
        Some("igp") => Origin::Igp,
        Some("egp") => Origin::Egp,
        Some("incomplete") => Origin::Incomplete,
        _ => return Err(bad("bad origin")),
    };
    let number = |key: &str| {
        path.get(key)
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
    };
    let strings = |key: &str| -> Vec<&str> {
        path.get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let communities = strings("communities")
        .into_iter()
        .map(|text| super::parse_community(text).ok_or_else(|| bad("bad community")))
        .collect::<Result<Vec<_>>>()?;
    let large_communities = strings("large_communities")
        .into_iter()
        .map(|text| super::parse_large_community(text).ok_or_else(|| bad("bad large community")))
        .collect::<Result<Vec<_>>>()?;
    Ok(ReceivedRoute {
        prefix,
        as_path,
        next_hop,
        origin,
        // OpenBGPD prints a MED of 0 when the path carries none.
        med: number("metric").filter(|med| *med != 0),
        local_pref: number("localpref"),
        communities,
        large_communities,
        stale: path.get("stale").and_then(Value::as_bool).unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_learned_paths_only() {
        let text = r#"{"rib":[
          {"prefix":"192.0.2.0/24","aspath":"65010 65010","exit_nexthop":"192.0.2.1",
           "neighbor":{"remote_addr":"127.77.0.1"},"source":"external","origin":"incomplete",
           "metric":7,"localpref":100,"communities":["65010:9"],"large_communities":["65010:1:2"]},
          {"prefix":"198.51.100.0/24","aspath":"","exit_nexthop":"192.0.2.1",
           "source":"internal","origin":"IGP","metric":0,"localpref":100}]}"#;
        let value: Value = serde_json::from_str(text).expect("valid JSON");
        let routes = parse_rib(&value).expect("parses");
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].as_path, vec![65010, 65010]);
        assert_eq!(routes[0].origin, Origin::Incomplete);
        assert_eq!(routes[0].med, Some(7));
        assert_eq!(routes[0].communities, vec![(65010, 9)]);
        assert_eq!(routes[0].large_communities, vec![(65010, 1, 2)]);
        assert!(parse_rib(&serde_json::json!({})).expect("empty").is_empty());
        assert!(parse_rib(&serde_json::json!({"rib": [{"prefix": "x"}]})).is_err());
    }

    #[test]
    fn the_configuration_never_touches_the_kernel_table_and_allows_both_directions() {
        let (spec, _) = PeerSpec::pair(65010, 65000, super::super::Transport::V4);
        let config = render_config(
            &spec.passive(true).originate(vec![
                Route::new("203.0.113.0/24".parse().expect("prefix"))
                    .med(5)
                    .community(65010, 1),
            ]),
            Path::new("/tmp/x.sock"),
        );
        assert!(config.contains("fib-update no\n"));
        assert!(config.contains("allow from any\nallow to any\n"));
        assert!(config.contains("  passive\n"));
        assert!(config.contains(
            "network 203.0.113.0/24 set { nexthop 192.0.2.1 origin igp med 5 community 65010:1 }"
        ));
    }
}
