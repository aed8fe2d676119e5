//! Real-peer harness: launches the Debian BGP daemons (BIRD 2, FRR bgpd, GoBGP, ExaBGP,
//! OpenBGPD), a real Prometheus, StayRTR (an RPKI cache), Knot DNS (reverse zones) and IRRd 4 (an
//! IRR whois server, with its PostgreSQL and Redis) on loopback, each in its own temporary
//! directory with its own control socket or API port, and reads back what the daemon itself
//! believes (routes, session state, counters).
//!
//! This module owns the shared vocabulary — [`PeerSpec`], [`Route`], [`ReceivedRoute`],
//! [`SessionState`], [`ImportCounters`], the [`BgpPeer`] trait and [`Error`] — plus the address
//! allocator, process supervision and the GTSM probe. One file per daemon holds that daemon's
//! configuration writer and output parser. It must not depend on topologyd's own crates: the harness
//! is the independent witness the end-to-end tests compare topologyd against.
//!
//! # Rules every launcher follows
//!
//! - Addresses are only ever `127.0.0.0/8` or `::1` (see [`alloc`]); nothing is sent anywhere else.
//!   Every daemon instance gets its own `127.a.b.c` address (second octet from the process id, the
//!   rest from a per-process counter) and a free port, so tests running in parallel in one
//!   `cargo test` process never share a BGP listener. IPv6 sessions run over `::1` with distinct
//!   ports, or over IPv4 transport with MP-BGP.
//! - Each daemon runs in the foreground as the leader of its own process group, with stdout and
//!   stderr in `daemon.log` in its temporary directory. `Drop` sends SIGKILL to the whole group
//!   (helper processes such as ExaBGP's API reader included) and reaps it, so a panicking test
//!   leaves nothing behind. Only a SIGKILL of the test process itself can orphan daemons.
//! - Every external command runs with a timeout; failures carry the daemon, the command line and
//!   its stderr ([`Error`]). No output from a daemon is trusted with `unwrap`.
//!
//! # Next hops
//!
//! Originated routes carry an explicit next hop, by default from the documentation ranges
//! ([`DEFAULT_NEXT_HOP_V4`], [`DEFAULT_NEXT_HOP_V6`]). These are only attribute values — no packet
//! is ever sent to them. Loopback next hops do not work across daemons: FRR 8.4 rejects
//! `127.0.0.0/8` as a martian next hop unless `bgp allow-martian-nexthop` is set (the FRR launcher
//! sets it), GoBGP 3.10 treats an UPDATE with a loopback next hop as withdraw ("invalid nexthop
//! address"), and BIRD rejects a next hop equal to its own address — which `::1` always is when both
//! speakers share `::1`. topologyd's own test configurations must therefore announce a
//! non-loopback next hop too.
//!
//! # Graceful restart (helper side) and withdrawal counts, per daemon
//!
//! The interop test "SIGKILL topologyd → the peer keeps the routes as stale, and after restart the
//! peer has seen zero withdrawals" reads these:
//!
//! | Daemon | Stale routes | Withdrawals seen |
//! |---|---|---|
//! | BIRD 2.0.12 | no per-route flag in `show route`; `show protocols all NAME` prints `Neighbor graceful restart active` (and a `Restart timer`) while the peer is down, so [`ReceivedRoute::stale`] is set on every route of the session then | `show protocols all NAME`, per channel: `Import withdraws` — column *received* counts withdrawals received in UPDATEs ([`ImportCounters::withdrawals`]); column *accepted* counts routes actually removed, **including stale routes flushed** at End-of-RIB, on restart-timer expiry, or immediately when the restarted peer's OPEN does not set the forwarding-state bit for the family ([`ImportCounters::removed`]). Counters survive session resets; assert both are zero. |
//! | FRR 8.4 | `"stale": true` on the path in `show bgp <afi> unicast json detail`, with `gracefulRestartSecondsRemaining`; `show bgp neighbors json` says `"bgpStateIs": "passiveNSF"` | no counter; the launcher enables `debug bgp updates in` and counts log lines `rcvd UPDATE about <prefix> ... -- withdrawn` |
//! | GoBGP 3.10 | `"stale": true` on the path in `gobgp global rib -j` | `gobgp neighbor ADDR -j`: `state.messages.received.withdraw_prefix` (absent when zero) |
//! | OpenBGPD 7.7 | `"stale": true` on the path in `bgpctl -j show rib detail` | `bgpctl -j show neighbor ADDR`: `stats.update.received.withdraws` |
//! | ExaBGP 4.2 | keeps no RIB; the harness replays the JSON API stream: routes of a session that went `down` are marked stale until re-announced, and dropped at the next End-of-RIB | withdrawn NLRI in the JSON stream, counted by the harness |

pub mod alloc;
mod bird;
mod exabgp;
mod frr;
mod frr_edge;
mod gobgp;
mod gtsm;
mod irrd;
mod knot;
mod openbgpd;
pub(crate) mod process;
mod prometheus;
mod stayrtr;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

pub use bird::BirdPeer;
pub use exabgp::{ExabgpPeer, exabgp_command};
pub use frr::FrrPeer;
pub use frr_edge::{EdgeNeighbor, FrrEdge, FrrEdgeSpec};
pub use gobgp::GobgpPeer;
pub use gtsm::{TtlProbe, ttl_probe};
pub use irrd::{Irrd, IrrdStartup};
pub use knot::{Knot, ReverseZone};
pub use openbgpd::OpenbgpdPeer;
pub use prometheus::{Labels, Prometheus};
pub use stayrtr::{Roa, StayRtr, StayRtrOptions};
/// The ORIGIN attribute (RFC 4271 §5.1.1) of the routes the peers send: the codec's own type.
pub use topologyd_bgp::codec::attributes::Origin;

/// Next hop used by [`Route::new`] for IPv4 prefixes (TEST-NET-1, RFC 5737): an attribute value only.
pub const DEFAULT_NEXT_HOP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Next hop used by [`Route::new`] for IPv6 prefixes (documentation prefix, RFC 3849).
pub const DEFAULT_NEXT_HOP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// Hold time a [`PeerSpec`] starts with, in seconds (the RFC 4271 §10 suggested value).
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// How long a launcher waits for a daemon's control socket or API to answer.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one control command (`birdc`, `vtysh`, `gobgp`) may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// Which program an error or observation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Daemon {
    /// BIRD 2 (`bird`, `birdc`).
    Bird,
    /// FRR `bgpd` without zebra, queried with `vtysh`.
    Frr,
    /// `gobgpd`, queried with the `gobgp` CLI over its gRPC API.
    Gobgp,
    /// ExaBGP 4, observed through its JSON API process.
    Exabgp,
    /// OpenBGPD (`/usr/sbin/bgpd`, queried with `bgpctl`).
    Openbgpd,
    /// The Prometheus server.
    Prometheus,
    /// The StayRTR RPKI cache.
    StayRtr,
    /// Knot DNS (`knotd`), an authoritative server for the reverse zones.
    Knot,
    /// IRRd 4 (`irrd`), the IRR whois server.
    Irrd,
    /// The PostgreSQL server IRRd stores its objects in.
    Postgres,
    /// The Redis server IRRd keeps its preloaded data and worker state in.
    Redis,
}

impl fmt::Display for Daemon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Daemon::Bird => "BIRD",
            Daemon::Frr => "FRR bgpd",
            Daemon::Gobgp => "GoBGP",
            Daemon::Exabgp => "ExaBGP",
            Daemon::Openbgpd => "OpenBGPD",
            Daemon::Prometheus => "Prometheus",
            Daemon::StayRtr => "StayRTR",
            Daemon::Knot => "Knot DNS",
            Daemon::Irrd => "IRRd",
            Daemon::Postgres => "PostgreSQL",
            Daemon::Redis => "Redis",
        })
    }
}

/// Everything that can go wrong while driving a real daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The program could not be started at all (missing binary, bad path).
    #[error("{daemon}: cannot run `{command}`: {source}")]
    Spawn {
        daemon: Daemon,
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// A control command ran but failed or printed an error.
    #[error("{daemon}: `{command}` failed ({status}); stderr: {stderr}")]
    Command {
        daemon: Daemon,
        command: String,
        status: String,
        stderr: String,
    },
    /// A control command answered something the parser does not understand.
    #[error("{daemon}: cannot parse the output of `{command}`: {message}")]
    Parse {
        daemon: Daemon,
        command: String,
        message: String,
    },
    /// Writing a configuration file or reading a log failed.
    #[error("{daemon}: {context}: {source}")]
    Io {
        daemon: Daemon,
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A polled condition did not become true in time.
    #[error(
        "{daemon}: timed out after {waited:?} waiting for {what}; last observation: {last}\n--- daemon log (tail) ---\n{log}"
    )]
    Timeout {
        daemon: Daemon,
        what: String,
        waited: Duration,
        last: String,
        log: String,
    },
    /// The daemon process exited while it should be running.
    #[error("{daemon}: exited unexpectedly ({status})\n--- daemon log (tail) ---\n{log}")]
    Exited {
        daemon: Daemon,
        status: String,
        log: String,
    },
    /// The [`PeerSpec`] asks for something the daemon cannot do.
    #[error("{daemon}: unsupported peer spec: {message}")]
    Spec { daemon: Daemon, message: String },
}

/// Result type of the harness.
pub type Result<T> = std::result::Result<T, Error>;

/// An address family the session negotiates (RFC 4760 AFI/SAFI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// The family a prefix belongs to.
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }
}

/// Graceful restart settings (RFC 4724) for the daemon; it always acts at least as a helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestart {
    /// Restart time advertised in the capability, in seconds (at most 4095).
    pub restart_time: u16,
    /// How long stale routes are kept after the session comes back, waiting for End-of-RIB, where
    /// the daemon has such a timer (FRR `stalepath-time`); BIRD 2.0.12 and GoBGP have none.
    pub stale_time: u32,
}

impl Default for GracefulRestart {
    fn default() -> Self {
        GracefulRestart {
            restart_time: 120,
            stale_time: 360,
        }
    }
}

/// A route a peer daemon originates towards the neighbor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The prefix.
    pub prefix: IpNet,
    /// NEXT_HOP (or the MP_REACH next hop for IPv6).
    pub next_hop: IpAddr,
    /// AS numbers after the originating daemon's own ASN, which the daemon prepends itself on eBGP.
    pub as_path: Vec<u32>,
    /// ORIGIN.
    pub origin: Origin,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (only sent on iBGP sessions).
    pub local_pref: Option<u32>,
    /// COMMUNITIES (RFC 1997).
    pub communities: Vec<(u16, u16)>,
    /// LARGE_COMMUNITY (RFC 8092).
    pub large_communities: Vec<(u32, u32, u32)>,
}

impl Route {
    /// A route with a documentation-range next hop of its family and no optional attributes.
    pub fn new(prefix: IpNet) -> Route {
        let next_hop = match prefix {
            IpNet::V4(_) => IpAddr::V4(DEFAULT_NEXT_HOP_V4),
            IpNet::V6(_) => IpAddr::V6(DEFAULT_NEXT_HOP_V6),
        };
        Route {
            prefix,
            next_hop,
            as_path: Vec::new(),
            origin: Origin::Igp,
            med: None,
            local_pref: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
        }
    }

    /// Sets the next hop.
    pub fn next_hop(mut self, next_hop: IpAddr) -> Route {
        self.next_hop = next_hop;
        self
    }

    /// Sets the AS numbers that follow the originator's own ASN.
    pub fn as_path(mut self, as_path: Vec<u32>) -> Route {
        self.as_path = as_path;
        self
    }

    /// Sets ORIGIN.
    pub fn origin(mut self, origin: Origin) -> Route {
        self.origin = origin;
        self
    }

    /// Sets MED.
    pub fn med(mut self, med: u32) -> Route {
        self.med = Some(med);
        self
    }

    /// Sets LOCAL_PREF (iBGP only).
    pub fn local_pref(mut self, local_pref: u32) -> Route {
        self.local_pref = Some(local_pref);
        self
    }

    /// Adds a standard community.
    pub fn community(mut self, high: u16, low: u16) -> Route {
        self.communities.push((high, low));
        self
    }

    /// Adds a large community.
    pub fn large_community(mut self, global: u32, first: u32, second: u32) -> Route {
        self.large_communities.push((global, first, second));
        self
    }

    pub(crate) fn family(&self) -> Family {
        Family::of(&self.prefix)
    }
}

/// A route as the peer daemon holds it, normalized across daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRoute {
    /// The prefix.
    pub prefix: IpNet,
    /// AS_PATH flattened (AS_SET members in the order shown).
    pub as_path: Vec<u32>,
    /// First next hop (the global one for IPv6).
    pub next_hop: IpAddr,
    /// ORIGIN.
    pub origin: Origin,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF as the daemon shows it (eBGP routes get the daemon's default, usually 100).
    pub local_pref: Option<u32>,
    /// COMMUNITIES, in the order shown.
    pub communities: Vec<(u16, u16)>,
    /// LARGE_COMMUNITY, in the order shown.
    pub large_communities: Vec<(u32, u32, u32)>,
    /// Graceful-restart stale flag, as far as the daemon exposes it (see the module table).
    pub stale: bool,
}

/// Whether the BGP session is up, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// RFC 4271 §8.2.2 Established.
    Established,
    /// Any other state, with the daemon's own wording (e.g. `Active`, `Idle`, `passiveNSF`).
    NotEstablished(String),
}

impl SessionState {
    /// True when Established.
    pub fn is_established(&self) -> bool {
        matches!(self, SessionState::Established)
    }
}

/// What the daemon counted on its receiving side for this session.
///
/// `withdrawals` is per prefix for every daemon. `updates` is per route for BIRD and ExaBGP and
/// per UPDATE message for FRR and GoBGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportCounters {
    /// Announcements received.
    pub updates: u64,
    /// Prefixes withdrawn by the neighbor in UPDATE messages.
    pub withdrawals: u64,
    /// Routes removed from the daemon's table for any reason, including stale routes flushed by
    /// graceful restart; only BIRD exposes it.
    pub removed: Option<u64>,
}

/// One BGP session of a real daemon, described from the daemon's side: "local" is the daemon,
/// "neighbor" is the other end (topologyd, or another daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// The daemon's ASN.
    pub local_asn: u32,
    /// The daemon's BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where the daemon listens and which source address it connects from.
    pub local: SocketAddr,
    /// Where the neighbor listens (the daemon connects there unless passive).
    pub neighbor: SocketAddr,
    /// The neighbor's ASN.
    pub neighbor_asn: u32,
    /// Families negotiated; by default the transport's own family.
    pub families: Vec<Family>,
    /// Never connect, only accept.
    pub passive: bool,
    /// Hold time in seconds (keepalive is a third of it).
    pub hold_time: u16,
    /// TCP-MD5 password (RFC 2385).
    pub md5_password: Option<String>,
    /// GTSM (RFC 5082): send with TTL 255 and require 255 on receipt.
    pub ttl_security: bool,
    /// Graceful restart capability; `None` disables it.
    pub graceful_restart: Option<GracefulRestart>,
    /// Routes the daemon announces from the start. Nothing else is exported; everything received
    /// is imported, with no max-prefix limit.
    pub originate: Vec<Route>,
    /// Offer ADD-PATH Send for every family (RFC 7911); only ExaBGP's launcher reads it.
    pub add_path_send: bool,
}

impl PeerSpec {
    /// A spec for a session between `local` (the daemon) and `neighbor`.
    pub fn new(
        local_asn: u32,
        local: SocketAddr,
        neighbor_asn: u32,
        neighbor: SocketAddr,
    ) -> PeerSpec {
        let families = match neighbor.ip() {
            IpAddr::V4(_) => vec![Family::Ipv4Unicast],
            IpAddr::V6(_) => vec![Family::Ipv6Unicast],
        };
        let router_id = match local.ip() {
            IpAddr::V4(address) => address,
            IpAddr::V6(_) => alloc::loopback_v4(),
        };
        PeerSpec {
            local_asn,
            router_id,
            local,
            neighbor,
            neighbor_asn,
            families,
            passive: false,
            hold_time: DEFAULT_HOLD_TIME,
            md5_password: None,
            ttl_security: false,
            graceful_restart: Some(GracefulRestart::default()),
            originate: Vec::new(),
            add_path_send: false,
        }
    }

    /// Two mirrored specs for a session between two daemons, on freshly allocated endpoints of the
    /// given transport (`127.a.b.c` addresses, or `::1` with distinct ports).
    pub fn pair(asn_a: u32, asn_b: u32, transport: Transport) -> (PeerSpec, PeerSpec) {
        let a = alloc::endpoint(transport);
        let b = alloc::endpoint(transport);
        (
            PeerSpec::new(asn_a, a, asn_b, b),
            PeerSpec::new(asn_b, b, asn_a, a),
        )
    }

    /// Offers ADD-PATH Send for every family (ExaBGP only).
    pub fn add_path_send(mut self, enabled: bool) -> PeerSpec {
        self.add_path_send = enabled;
        self
    }

    /// Sets the BGP identifier.
    pub fn router_id(mut self, router_id: Ipv4Addr) -> PeerSpec {
        self.router_id = router_id;
        self
    }

    /// Replaces the negotiated families.
    pub fn families(mut self, families: Vec<Family>) -> PeerSpec {
        self.families = families;
        self
    }

    /// Only accept connections.
    pub fn passive(mut self, passive: bool) -> PeerSpec {
        self.passive = passive;
        self
    }

    /// Sets the hold time in seconds.
    pub fn hold_time(mut self, seconds: u16) -> PeerSpec {
        self.hold_time = seconds;
        self
    }

    /// Sets a TCP-MD5 password.
    pub fn md5_password(mut self, password: impl Into<String>) -> PeerSpec {
        self.md5_password = Some(password.into());
        self
    }

    /// Enables GTSM.
    pub fn ttl_security(mut self, enabled: bool) -> PeerSpec {
        self.ttl_security = enabled;
        self
    }

    /// Sets or disables graceful restart.
    pub fn graceful_restart(mut self, graceful_restart: Option<GracefulRestart>) -> PeerSpec {
        self.graceful_restart = graceful_restart;
        self
    }

    /// Routes announced from the start.
    pub fn originate(mut self, routes: Vec<Route>) -> PeerSpec {
        self.originate = routes;
        self
    }

    pub(crate) fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }

    pub(crate) fn is_internal(&self) -> bool {
        self.local_asn == self.neighbor_asn
    }
}

/// Which transport [`alloc::endpoint`] allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A fresh `127.a.b.c` address with a free port.
    V4,
    /// `::1` with a free port.
    V6,
}

/// What every launched peer daemon holds: the session it was started for and its process
/// (whose log failure messages quote, and which `stop` and `kill` end).
#[derive(Debug)]
pub struct Launched {
    spec: PeerSpec,
    process: process::DaemonProcess,
}

impl Launched {
    /// Polls `ready` until the daemon is up (`what` answers), failing at once with the log tail
    /// if the daemon exits, and after [`STARTUP_TIMEOUT`].
    fn wait_until_up(
        &self,
        what: &str,
        mut ready: impl FnMut() -> std::result::Result<(), String>,
    ) -> Result<()> {
        poll(
            self.process.daemon(),
            what,
            STARTUP_TIMEOUT,
            || self.process.log_tail(),
            || {
                self.process.check_running()?;
                Ok(ready())
            },
        )
    }
}

/// The operations every peer launcher offers.
pub trait BgpPeer {
    /// The session this daemon was started for and its process.
    fn launched(&self) -> &Launched;

    /// The session this daemon was started with.
    fn spec(&self) -> &PeerSpec {
        &self.launched().spec
    }

    /// Which daemon this is.
    fn daemon(&self) -> Daemon {
        self.launched().process.daemon()
    }

    /// The session state as the daemon reports it.
    fn session_state(&self) -> Result<SessionState>;

    /// Routes received from the neighbor, from the daemon's own table.
    fn routes(&self) -> Result<Vec<ReceivedRoute>>;

    /// Receive-side counters for the session.
    fn counters(&self) -> Result<ImportCounters>;

    /// Starts announcing (or re-announces with new attributes) these routes.
    fn announce(&mut self, routes: &[Route]) -> Result<()>;

    /// Withdraws previously announced prefixes.
    fn withdraw(&mut self, prefixes: &[IpNet]) -> Result<()>;

    /// The last lines of the daemon's log, for failure messages.
    fn log_tail(&self) -> String {
        self.launched().process.log_tail()
    }

    /// Stops the daemon (SIGTERM to its process group, then SIGKILL after a grace period).
    fn stop(&mut self) -> Result<()> {
        self.launched().process.stop()
    }

    /// SIGKILLs the daemon's process group at once, as a crash would.
    fn kill(&mut self) -> Result<()> {
        self.launched().process.kill()
    }

    /// Polls until the session is Established.
    fn wait_established(&self, timeout: Duration) -> Result<()> {
        poll(
            self.daemon(),
            "session Established",
            timeout,
            || self.log_tail(),
            || {
                let state = self.session_state()?;
                Ok(if state.is_established() {
                    Ok(())
                } else {
                    Err(format!("{state:?}"))
                })
            },
        )
    }

    /// Polls [`BgpPeer::routes`] until `predicate` holds, and returns the routes that satisfied it.
    fn wait_for(
        &self,
        mut predicate: impl FnMut(&[ReceivedRoute]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedRoute>>
    where
        Self: Sized,
    {
        poll(
            self.daemon(),
            "a route predicate",
            timeout,
            || self.log_tail(),
            || {
                let routes = self.routes()?;
                Ok(if predicate(&routes) {
                    Ok(routes)
                } else {
                    Err(format!("{} routes: {routes:?}", routes.len()))
                })
            },
        )
    }

    /// Polls [`BgpPeer::counters`] until `predicate` holds.
    fn wait_for_counters(
        &self,
        mut predicate: impl FnMut(&ImportCounters) -> bool,
        timeout: Duration,
    ) -> Result<ImportCounters>
    where
        Self: Sized,
    {
        poll(
            self.daemon(),
            "a counter predicate",
            timeout,
            || self.log_tail(),
            || {
                let counters = self.counters()?;
                Ok(if predicate(&counters) {
                    Ok(counters)
                } else {
                    Err(format!("{counters:?}"))
                })
            },
        )
    }
}

/// ORIGIN as the FRR, GoBGP and ExaBGP configuration languages spell it.
pub(crate) fn origin_keyword(origin: Origin) -> &'static str {
    match origin {
        Origin::Igp => "igp",
        Origin::Egp => "egp",
        Origin::Incomplete => "incomplete",
    }
}

/// The AS numbers of an AS_PATH a daemon shows in JSON as an array of segments, each holding
/// its numbers under `numbers_key` (`list` for FRR, `asns` for GoBGP); empty when absent.
pub(crate) fn as_path_from_segments(
    segments: Option<&serde_json::Value>,
    numbers_key: &str,
) -> Vec<u32> {
    segments
        .and_then(serde_json::Value::as_array)
        .map(|segments| {
            segments
                .iter()
                .filter_map(|segment| {
                    segment
                        .get(numbers_key)
                        .and_then(serde_json::Value::as_array)
                })
                .flatten()
                .filter_map(|asn| asn.as_u64().and_then(|asn| u32::try_from(asn).ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// A [`poll`] attempt on a daemon's control command: done once it answers with JSON opening
/// with `opening` (`{` or `[`); otherwise what it said, for the timeout's message.
pub(crate) fn answers_json(
    answer: Result<String>,
    opening: char,
) -> std::result::Result<(), String> {
    match answer {
        Ok(output) if output.trim_start().starts_with(opening) => Ok(()),
        Ok(output) => Err(output),
        Err(error) => Err(error.to_string()),
    }
}

/// Polls `attempt` until it yields `Ok(Ok(value))`, with a short, growing interval. `Ok(Err(why))`
/// means "not yet"; `Err` aborts at once (the daemon died, a command failed).
pub(crate) fn poll<T>(
    daemon: Daemon,
    what: &str,
    timeout: Duration,
    log: impl Fn() -> String,
    mut attempt: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    let started = Instant::now();
    let mut interval = Duration::from_millis(50);
    loop {
        let last = match attempt()? {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                daemon,
                what: what.to_string(),
                waited: started.elapsed(),
                last,
                log: log(),
            });
        }
        std::thread::sleep(interval);
        interval = (interval * 2).min(Duration::from_millis(400));
    }
}

/// Splits `"65000:1"`-style text into a community.
pub(crate) fn parse_community(text: &str) -> Option<(u16, u16)> {
    let (high, low) = text.trim().split_once(':')?;
    Some((high.trim().parse().ok()?, low.trim().parse().ok()?))
}

/// Splits `"65000:1:2"`-style text into a large community.
pub(crate) fn parse_large_community(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split(':');
    let global = parts.next()?.trim().parse().ok()?;
    let first = parts.next()?.trim().parse().ok()?;
    let second = parts.next()?.trim().parse().ok()?;
    parts.next().is_none().then_some((global, first, second))
}

/// Sorts routes by prefix so that daemon output order never matters to a test.
pub(crate) fn sorted(mut routes: Vec<ReceivedRoute>) -> Vec<ReceivedRoute> {
    routes.sort_by_key(|route| route.prefix);
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_parse_and_reject_garbage() {
        assert_eq!(parse_community("65000:1"), Some((65000, 1)));
        assert_eq!(parse_community("70000:1"), None);
        assert_eq!(
            parse_large_community("4200000000:1:2"),
            Some((4_200_000_000, 1, 2))
        );
        assert_eq!(parse_large_community("1:2:3:4"), None);
    }
}
