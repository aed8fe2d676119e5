//! BIRD 2 launcher: writes `bird.conf` for one BGP session, runs `bird -f` with its own control
//! socket, and reads routes and counters back through `birdc`.
//!
//! Quirks found on BIRD 2.0.12:
//! - A neighbor on `lo` is "Invalid remote address" for a direct eBGP session, so every session is
//!   `multihop 1`: BIRD then skips the connected check, and with `ttl security yes` the minimum
//!   accepted TTL is `256 - 1 = 255`, which is exactly GTSM for a one-hop session.
//! - `local ADDR port P` sets both the listening socket and the source address; `strict bind yes`
//!   keeps the listener on that one address, so many BIRDs coexist on one machine.
//! - MED set in a static route is dropped on eBGP export unless the export filter touches it, so the
//!   export filter re-assigns `bgp_med` to itself ("set by the export filter" is what BIRD checks).
//! - The next hop of each originated route is set in the static route (`bgp_next_hop`) and the
//!   channel uses `next hop keep`. An IPv6 channel over an IPv4 session also needs
//!   `next hop address`, otherwise BIRD logs "Missing next hop address" and sends nothing.
//! - BIRD rejects a received next hop equal to its own address ("Invalid NEXT_HOP attribute -
//!   neighbor address ::1"), which matters for IPv6 over `::1`.
//! - Routes whose next hop does not resolve are shown as `unreachable`, but they are in the table,
//!   with all their attributes.
//!
//! Stale routes and withdrawals: BIRD prints no per-route stale flag. While the neighbor is down
//! with graceful restart, `show protocols all peer` prints `Neighbor graceful restart active`; the
//! harness then marks every route of the session stale. The per-channel `Import withdraws` row has
//! a *received* column (withdrawals in UPDATEs) and an *accepted* column (routes removed, including
//! stale routes flushed when the restarted neighbor's End-of-RIB arrives, when the restart timer
//! expires, or at once when its OPEN lacks the forwarding-state bit for the family). Counters are
//! not reset when the session restarts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use ipnet::IpNet;

use super::process::{self, DaemonProcess};
use super::{
    BgpPeer, COMMAND_TIMEOUT, DEFAULT_NEXT_HOP_V6, Daemon, Error, Family, ImportCounters, Launched,
    Origin, PeerSpec, ReceivedRoute, Result, Route, SessionState,
};

const DAEMON: Daemon = Daemon::Bird;
/// The BGP protocol's name in `bird.conf`.
const PROTOCOL: &str = "peer";

/// A running BIRD with one BGP session.
#[derive(Debug)]
pub struct BirdPeer {
    originated: BTreeMap<IpNet, Route>,
    launched: Launched,
    socket: PathBuf,
    config: PathBuf,
    // Last field: removed after the process is killed.
    directory: tempfile::TempDir,
}

impl BirdPeer {
    /// Writes the configuration, starts BIRD and waits until its control socket answers.
    pub fn start(spec: PeerSpec) -> Result<BirdPeer> {
        if let Some(password) = &spec.md5_password
            && password.contains(['"', '\n'])
        {
            return Err(Error::Spec {
                daemon: DAEMON,
                message: "BIRD strings cannot contain a double quote or a newline".to_string(),
            });
        }
        let directory = process::temp_dir(DAEMON, "topologyd-bird-")?;
        let config = directory.path().join("bird.conf");
        let socket = directory.path().join("bird.ctl");
        let log = directory.path().join("daemon.log");
        let originated: BTreeMap<IpNet, Route> = spec
            .originate
            .iter()
            .map(|route| (route.prefix, route.clone()))
            .collect();
        process::write_file(DAEMON, &config, &render_config(&spec, &originated, &log))?;
        let mut command = Command::new("bird");
        command
            .arg("-f")
            .arg("-c")
            .arg(&config)
            .arg("-s")
            .arg(&socket)
            .arg("-P")
            .arg(directory.path().join("bird.pid"));
        let process = DaemonProcess::spawn(DAEMON, command, &log)?;
        let peer = BirdPeer {
            originated,
            launched: Launched { spec, process },
            socket,
            config,
            directory,
        };
        peer.wait_until_up()?;
        Ok(peer)
    }

    fn wait_until_up(&self) -> Result<()> {
        self.launched.wait_until_up("the control socket", || {
            match self.birdc(&["show", "status"]) {
                Ok(output) if output.contains("Daemon is up and running") => Ok(()),
                Ok(output) => Err(output),
                Err(error) => Err(error.to_string()),
            }
        })
    }

    /// Runs one `birdc` command and returns its output without the greeting line.
    pub fn birdc(&self, arguments: &[&str]) -> Result<String> {
        // A dead daemon explains a failing control command better than the command does.
        self.launched.process.check_running()?;
        let mut command = Command::new("birdc");
        command.arg("-s").arg(&self.socket).args(arguments);
        let output = process::run(DAEMON, &mut command, COMMAND_TIMEOUT)?;
        if output.contains("Unable to connect to server")
            || output.lines().any(|line| line.contains("syntax error"))
        {
            return Err(Error::Command {
                daemon: DAEMON,
                command: process::describe(&command),
                status: "error reply".to_string(),
                stderr: output,
            });
        }
        Ok(output
            .lines()
            .filter(|line| !line.starts_with("BIRD "))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The temporary directory holding `bird.conf`, the control socket and `daemon.log`.
    pub fn directory(&self) -> &std::path::Path {
        self.directory.path()
    }

    fn reconfigure(&mut self) -> Result<()> {
        let log = self.directory.path().join("daemon.log");
        process::write_file(
            DAEMON,
            &self.config,
            &render_config(&self.launched.spec, &self.originated, &log),
        )?;
        let config = self.config.to_string_lossy().into_owned();
        let output = self.birdc(&["configure", &format!("\"{config}\"")])?;
        if output.contains("Reconfigured") || output.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(Error::Command {
                daemon: DAEMON,
                command: format!("birdc configure \"{config}\""),
                status: "not reconfigured".to_string(),
                stderr: output,
            })
        }
    }

    fn protocol_details(&self) -> Result<String> {
        self.birdc(&["show", "protocols", "all", PROTOCOL])
    }
}

impl BgpPeer for BirdPeer {
    fn launched(&self) -> &Launched {
        &self.launched
    }

    fn session_state(&self) -> Result<SessionState> {
        let details = self.protocol_details()?;
        let state = details
            .lines()
            .find_map(|line| line.trim().strip_prefix("BGP state:"))
            .map(str::trim)
            .ok_or_else(|| parse_error("show protocols all", "no `BGP state:` line", &details))?;
        Ok(if state == "Established" {
            SessionState::Established
        } else {
            SessionState::NotEstablished(state.to_string())
        })
    }

    fn routes(&self) -> Result<Vec<ReceivedRoute>> {
        let stale = self
            .protocol_details()?
            .contains("Neighbor graceful restart active");
        let mut routes = Vec::new();
        for (family, table) in [
            (Family::Ipv4Unicast, "master4"),
            (Family::Ipv6Unicast, "master6"),
        ] {
            if self.launched.spec.has_family(family) {
                let output =
                    self.birdc(&["show", "route", "table", table, "protocol", PROTOCOL, "all"])?;
                routes.extend(parse_routes(&output, stale)?);
            }
        }
        Ok(super::sorted(routes))
    }

    fn counters(&self) -> Result<ImportCounters> {
        parse_counters(&self.protocol_details()?)
    }

    fn announce(&mut self, routes: &[Route]) -> Result<()> {
        for route in routes {
            self.originated.insert(route.prefix, route.clone());
        }
        self.reconfigure()
    }

    fn withdraw(&mut self, prefixes: &[IpNet]) -> Result<()> {
        for prefix in prefixes {
            self.originated.remove(prefix);
        }
        self.reconfigure()
    }
}

fn parse_error(command: &str, message: &str, output: &str) -> Error {
    Error::Parse {
        daemon: DAEMON,
        command: format!("birdc {command}"),
        message: format!("{message} in:\n{output}"),
    }
}

/// A BIRD string literal; [`BirdPeer::start`] refuses passwords that would need escaping.
fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

fn render_config(
    spec: &PeerSpec,
    originated: &BTreeMap<IpNet, Route>,
    log: &std::path::Path,
) -> String {
    let mut config = String::new();
    let _ = writeln!(config, "log {} all;", quoted(&log.to_string_lossy()));
    let _ = writeln!(config, "router id {};", spec.router_id);
    config.push_str("protocol device {}\n");
    // Routes originate from static protocols; the export filter lets only them out and re-assigns
    // MED so that BIRD keeps it on eBGP.
    config.push_str(
        "filter export_originated {\n  if source != RTS_STATIC then reject;\n  if defined(bgp_med) then bgp_med = bgp_med;\n  accept;\n}\n",
    );
    for (family, channel) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
        let _ = writeln!(
            config,
            "protocol static originate_{channel} {{\n  {channel};"
        );
        for route in originated.values().filter(|route| route.family() == family) {
            let _ = writeln!(config, "  route {} blackhole {{", route.prefix);
            let _ = writeln!(config, "    bgp_next_hop = {};", route.next_hop);
            let origin = match route.origin {
                Origin::Igp => "ORIGIN_IGP",
                Origin::Egp => "ORIGIN_EGP",
                Origin::Incomplete => "ORIGIN_INCOMPLETE",
            };
            let _ = writeln!(config, "    bgp_origin = {origin};");
            for asn in route.as_path.iter().rev() {
                let _ = writeln!(config, "    bgp_path.prepend({asn});");
            }
            if let Some(med) = route.med {
                let _ = writeln!(config, "    bgp_med = {med};");
            }
            if let Some(local_pref) = route.local_pref {
                let _ = writeln!(config, "    bgp_local_pref = {local_pref};");
            }
            for (high, low) in &route.communities {
                let _ = writeln!(config, "    bgp_community.add(({high},{low}));");
            }
            for (global, first, second) in &route.large_communities {
                let _ = writeln!(
                    config,
                    "    bgp_large_community.add(({global},{first},{second}));"
                );
            }
            config.push_str("  };\n");
        }
        config.push_str("}\n");
    }
    let _ = writeln!(config, "protocol bgp {PROTOCOL} {{");
    for (side, address, asn) in [
        ("local", spec.local, spec.local_asn),
        ("neighbor", spec.neighbor, spec.neighbor_asn),
    ] {
        let _ = writeln!(
            config,
            "  {side} {} port {} as {asn};",
            address.ip(),
            address.port()
        );
    }
    config.push_str("  strict bind yes;\n  multihop 1;\n");
    let _ = writeln!(config, "  hold time {};", spec.hold_time);
    // Retry fast: tests start both ends at about the same time.
    config.push_str("  connect delay time 1;\n  connect retry time 2;\n  error wait time 1, 4;\n");
    let _ = writeln!(
        config,
        "  passive {};",
        if spec.passive { "yes" } else { "no" }
    );
    if let Some(password) = &spec.md5_password {
        let _ = writeln!(config, "  password {};", quoted(password));
    }
    if spec.ttl_security {
        config.push_str("  ttl security yes;\n");
    }
    match spec.graceful_restart {
        Some(graceful_restart) => {
            let _ = writeln!(
                config,
                "  graceful restart yes;\n  graceful restart time {};",
                graceful_restart.restart_time
            );
        }
        None => config.push_str("  graceful restart no;\n"),
    }
    for (family, channel) in [(Family::Ipv4Unicast, "ipv4"), (Family::Ipv6Unicast, "ipv6")] {
        if !spec.has_family(family) {
            continue;
        }
        let _ = write!(
            config,
            "  {channel} {{ import all; export filter export_originated; next hop keep;"
        );
        if family == Family::Ipv6Unicast && spec.neighbor.is_ipv4() {
            let next_hop = originated
                .values()
                .find(|route| route.family() == family)
                .map_or(IpAddr::V6(DEFAULT_NEXT_HOP_V6), |route| route.next_hop);
            let _ = write!(config, " next hop address {next_hop};");
        }
        config.push_str(" };\n");
    }
    config.push_str("}\n");
    config
}

/// Parses `show route ... all` output into routes.
fn parse_routes(output: &str, stale: bool) -> Result<Vec<ReceivedRoute>> {
    let mut routes = Vec::new();
    let mut current_prefix: Option<IpNet> = None;
    let mut current: Option<ReceivedRoute> = None;
    for line in output.lines() {
        if line.trim().is_empty() || line.starts_with("Table ") {
            continue;
        }
        if line.starts_with('\t') {
            let Some(route) = current.as_mut() else {
                continue;
            };
            if let Some((key, value)) = line.trim().split_once(':') {
                apply_attribute(route, key.trim(), value.trim(), line)?;
            }
            continue;
        }
        // A route header: "PREFIX  unreachable [peer ...]" or, for a further route of the same
        // prefix, the same without the prefix.
        if let Some(route) = current.take() {
            routes.push(route);
        }
        if !line.starts_with(' ') {
            let token = line.split_whitespace().next().unwrap_or_default();
            current_prefix = Some(
                IpNet::from_str(token)
                    .map_err(|_| parse_error("show route", "bad prefix", line))?,
            );
        }
        let prefix = current_prefix
            .ok_or_else(|| parse_error("show route", "route without a prefix", line))?;
        let unspecified = match prefix {
            IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        current = Some(ReceivedRoute {
            prefix,
            as_path: Vec::new(),
            next_hop: unspecified,
            origin: Origin::Igp,
            med: None,
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            stale,
        });
    }
    routes.extend(current);
    Ok(routes)
}

fn numbers<T: FromStr>(text: &str) -> Vec<T> {
    text.split(|character: char| !character.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect()
}

fn apply_attribute(route: &mut ReceivedRoute, key: &str, value: &str, line: &str) -> Result<()> {
    let bad = |what: &str| parse_error("show route all", what, line);
    match key {
        "BGP.origin" => {
            route.origin = match value {
                "IGP" => Origin::Igp,
                "EGP" => Origin::Egp,
                "Incomplete" => Origin::Incomplete,
                _ => return Err(bad("unknown origin")),
            }
        }
        "BGP.as_path" => route.as_path = numbers(value),
        "BGP.next_hop" => {
            let first = value.split_whitespace().next().unwrap_or_default();
            route.next_hop = first.parse().map_err(|_| bad("bad next hop"))?;
        }
        "BGP.med" => route.med = Some(value.parse().map_err(|_| bad("bad MED"))?),
        "BGP.local_pref" => {
            route.local_pref = Some(value.parse().map_err(|_| bad("bad local preference"))?)
        }
        "BGP.community" => {
            for group in value.split(')').filter(|group| group.contains('(')) {
                match numbers::<u16>(group).as_slice() {
                    [high, low] => route.communities.push((*high, *low)),
                    _ => return Err(bad("bad community")),
                }
            }
        }
        "BGP.large_community" => {
            for group in value.split(')').filter(|group| group.contains('(')) {
                match numbers::<u32>(group).as_slice() {
                    [global, first, second] => {
                        route.large_communities.push((*global, *first, *second))
                    }
                    _ => return Err(bad("bad large community")),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn parse_counters(details: &str) -> Result<ImportCounters> {
    let mut counters = ImportCounters {
        removed: Some(0),
        ..ImportCounters::default()
    };
    let mut seen = false;
    for line in details.lines() {
        let trimmed = line.trim();
        let (row, is_withdraw) = if let Some(row) = trimmed.strip_prefix("Import updates:") {
            (row, false)
        } else if let Some(row) = trimmed.strip_prefix("Import withdraws:") {
            (row, true)
        } else {
            continue;
        };
        // Columns: received, rejected, filtered, ignored, accepted ("---" where not applicable).
        let columns: Vec<&str> = row.split_whitespace().collect();
        let column = |index: usize| -> Result<u64> {
            columns
                .get(index)
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| parse_error("show protocols all", "bad counter row", line))
        };
        seen = true;
        if is_withdraw {
            counters.withdrawals += column(0)?;
            counters.removed = Some(counters.removed.unwrap_or(0) + column(4)?);
        } else {
            counters.updates += column(0)?;
        }
    }
    if seen {
        Ok(counters)
    } else {
        Err(parse_error(
            "show protocols all",
            "no `Import updates` rows",
            details,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_both_ends_of_the_session() {
        let spec = PeerSpec::new(
            64512,
            "127.0.0.1:1790".parse().expect("an address"),
            64513,
            "127.0.0.2:179".parse().expect("an address"),
        );
        let config = render_config(&spec, &BTreeMap::new(), std::path::Path::new("/dev/null"));
        assert!(
            config.contains(
                "  local 127.0.0.1 port 1790 as 64512;\n  neighbor 127.0.0.2 port 179 as 64513;\n"
            ),
            "{config}"
        );
    }

    #[test]
    fn parses_route_with_every_attribute() {
        let output = "Table master4:\n198.51.100.0/24      unreachable [peer 18:55:44.760 from 127.11.0.1] * (100) [AS64999i]\n\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: 65001 64999\n\tBGP.next_hop: 192.0.2.1\n\tBGP.med: 50\n\tBGP.local_pref: 100\n\tBGP.community: (65000,1) (65000,2)\n\tBGP.large_community: (65000, 1, 2)\n                     unreachable [peer 18:55:44.760 from 127.11.0.1] (100) [AS64999i]\n\tBGP.origin: Incomplete\n\tBGP.as_path: 65001\n\tBGP.next_hop: 192.0.2.2\n";
        let routes = parse_routes(output, false).expect("parses");
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].as_path, vec![65001, 64999]);
        assert_eq!(routes[0].med, Some(50));
        assert_eq!(routes[0].communities, vec![(65000, 1), (65000, 2)]);
        assert_eq!(routes[0].large_communities, vec![(65000, 1, 2)]);
        assert_eq!(routes[1].prefix, routes[0].prefix);
        assert_eq!(routes[1].origin, Origin::Incomplete);
    }

    #[test]
    fn parses_counter_rows() {
        let details = "    Route change stats:     received   rejected   filtered    ignored   accepted\n      Import updates:              3          0          0          0          3\n      Import withdraws:            1          0        ---          0          2\n      Export updates:              1          1          0        ---          0\n";
        let counters = parse_counters(details).expect("parses");
        assert_eq!(
            counters,
            ImportCounters {
                updates: 3,
                withdrawals: 1,
                removed: Some(2)
            }
        );
    }
}
