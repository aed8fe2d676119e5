//! The daemon configuration as the daemon uses it, validated and with every default filled in:
//! [`DaemonConfig`] and its sections, each default a documented constant, and
//! [`PeerConfig::session_reset_needed`], the rule for which changes of a reload reset a BGP
//! session and which apply in place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The BGP port (RFC 4271 §8.2.1).
pub const DEFAULT_BGP_PORT: u16 = 179;
/// Hold time we propose, in seconds (RFC 4271 §10 suggests 90).
pub const DEFAULT_HOLD_TIME_SECONDS: u16 = 90;
/// The send hold time (RFC 9687 §3) when none is configured: the greater of 8 minutes and twice
/// the negotiated hold time. A peer that takes no message from us for this long is disconnected.
pub const DEFAULT_SEND_HOLD_TIME_MINIMUM_SECONDS: u32 = 480;
/// Seconds between connection attempts to an active peer, before jitter and backoff.
pub const DEFAULT_CONNECT_RETRY_SECONDS: u16 = 5;
/// Graceful restart time we advertise (RFC 4724 §3), in seconds: how long a peer keeps our
/// routes as stale after our session drops.
pub const DEFAULT_RESTART_TIME_SECONDS: u16 = 120;
/// How long a SIGTERM drain may take before the daemon exits anyway.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u32 = 10;
/// Previous generations kept in the state directory for rollback (last known good).
pub const DEFAULT_RETAINED_GENERATIONS: usize = 10;
/// `/ready` (and the STATUS= line) wants at least this many peers holding the running
/// generation (capped at the number of peers: a daemon without peers is ready).
pub const DEFAULT_READY_MIN_ESTABLISHED: usize = 1;
/// Largest control-API request body from an `admin` (apply, rollback, drain, and its own
/// plans): a topology bundle of 1,000,000 bindings fits.
pub const DEFAULT_CONTROL_MAX_BODY_BYTES: usize = 128 * 1024 * 1024;
/// Largest control-API request body from a `reader` (its plans): small, so that read-only
/// credentials cannot make the daemon hold and compile large bundles.
pub const DEFAULT_CONTROL_MAX_READER_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The memory the compiles in flight (plan, apply, rollback) may use together, estimated from
/// their input size (the daemon's `compile.rs` documents the estimate: 8 bytes per source byte,
/// so the default admits one bundle of [`DEFAULT_CONTROL_MAX_BODY_BYTES`]).
pub const DEFAULT_COMPILE_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

/// An address family we may announce to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// What a control-API client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only: plan, status, routes.
    Reader,
    /// Everything a reader may do, plus apply and rollback.
    Admin,
}

/// The whole daemon configuration, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DaemonConfig {
    /// The location this daemon announces for; must exist in the topology's fleet.
    pub location: String,
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    pub state_dir: PathBuf,
    /// Topology files compiled at first start, when the state directory holds no generation yet.
    pub bootstrap_topology: Vec<PathBuf>,
    pub retained_generations: usize,
    /// Addresses on which the daemon accepts BGP connections (for passive peers and collisions).
    pub bgp_listen: Vec<SocketAddr>,
    pub graceful_restart: GracefulRestartConfig,
    pub shutdown: ShutdownConfig,
    pub admin: Option<AdminConfig>,
    pub control: Option<ControlConfig>,
    pub health: HealthConfig,
    pub readiness: ReadinessConfig,
    pub peers: Vec<PeerConfig>,
    /// `[rpki]`: route origin validation at run time and for pushes (`None`: off).
    pub rpki: Option<RpkiConfig>,
    /// `[bmp]`: the BMP station that watches what the edge routers hold (`None`: off).
    pub bmp: Option<BmpConfig>,
}

/// Routers the BMP station serves at once; more are refused at accept.
pub const DEFAULT_BMP_MAX_ROUTERS: usize = 16;
/// Decoded BMP messages queued between one router's connection and the station; a message that
/// finds the queue full is dropped, counted, and its connection closed (the router reconnects
/// and sends its tables again).
pub const DEFAULT_BMP_QUEUE_MESSAGES: usize = 4096;
/// How long a route we announce may be missing from a router's post-policy table before it is
/// a `not_visible` finding (the time it takes to get there).
pub const DEFAULT_BMP_SETTLE_SECONDS: u32 = 10;
/// Routes the station holds for one router (over all its peers and RIB kinds): a full table
/// (≈ 1 M) in pre- and post-policy Adj-RIB-In, Loc-RIB and Adj-RIB-Out, with room to spare; at
/// ≈ 70 bytes a route, ≈ 280 MB. A router that sends more is dropped, not followed.
pub const DEFAULT_BMP_MAX_ROUTES_PER_ROUTER: usize = 4_000_000;
/// Monitored peers the station holds for one router; a router that reports more is dropped.
pub const DEFAULT_BMP_MAX_PEERS_PER_ROUTER: usize = 1_024;
/// Idle seconds before TCP keepalive probes a router's BMP connection: a router that vanished
/// (powered off, half-open connection) is noticed and its slot and state freed. BMP itself has
/// no keepalive, and a synchronised router may rightly say nothing for hours.
pub const DEFAULT_BMP_TCP_KEEPALIVE_SECONDS: u32 = 60;
/// The largest keepalive idle time Linux accepts (`TCP_KEEPIDLE`, `MAX_TCP_KEEPIDLE`).
pub const MAX_BMP_TCP_KEEPALIVE_SECONDS: u32 = 32_767;

/// `[bmp]`: the BMP station (RFC 7854).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BmpConfig {
    pub listen: Vec<SocketAddr>,
    /// Source prefixes a router may connect from (default: loopback only).
    pub allow: Vec<ipnet::IpNet>,
    pub max_routers: usize,
    pub queue_messages: usize,
    pub settle_seconds: u32,
    /// Routes held for one router at most; beyond, its state is dropped until it reconnects.
    pub max_routes_per_router: usize,
    /// Monitored peers held for one router at most; beyond, its state is dropped likewise.
    pub max_peers_per_router: usize,
    /// Idle seconds before keepalive probes on a router's connection (0: no keepalive).
    pub tcp_keepalive_seconds: u32,
}

/// An RTR cache's preference when none is written (lower is preferred, RFC 8210 §10).
pub const DEFAULT_RPKI_CACHE_PREFERENCE: u8 = 100;

/// `[rpki]`: where the daemon's VRPs come from and what it does with invalid routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpkiConfig {
    /// At least one; tried in ascending preference.
    pub caches: Vec<RpkiCacheConfig>,
    pub invalid_policy: InvalidPolicy,
}

/// One RTR cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RpkiCacheConfig {
    /// `HOST:PORT`.
    pub address: String,
    pub preference: u8,
}

/// What happens to an announced route that turns RPKI-invalid because the VRPs changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidPolicy {
    /// Fail static (the default): keep it announced and raise the alarm.
    Keep,
    /// Withdraw it until it is valid or not found again.
    Withdraw,
}

/// `[readiness]`: when `/ready` answers 200. A peer *holds* the running generation when its
/// session is Established, every route of the generation has been written to it and none of
/// them failed to encode. Readiness never gates the start (systemd's READY=1); it can be lost
/// again when peers go down.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadinessConfig {
    /// At least this many peers hold the running generation (0: readiness ignores the peers).
    pub min_established: usize,
    /// And at least this share of the peers (rounded up), when set: 0 < share ≤ 1.
    pub min_established_share: Option<f64>,
}

impl Default for ReadinessConfig {
    fn default() -> ReadinessConfig {
        ReadinessConfig {
            min_established: DEFAULT_READY_MIN_ESTABLISHED,
            min_established_share: None,
        }
    }
}

impl ReadinessConfig {
    /// How many of `peers` must hold the running generation.
    pub fn required(&self, peers: usize) -> usize {
        let by_share = self
            .min_established_share
            .map_or(0, |share| (share * peers as f64).ceil() as usize);
        self.min_established.min(peers).max(by_share.min(peers))
    }
}

/// Fail-static share default: more than half of a location's checked services unhealthy at once
/// means the checker, not the services, is most likely broken.
pub const DEFAULT_FAIL_STATIC_SHARE: f64 = 0.5;
/// Fail static needs at least this many unhealthy services (one service down is just down).
pub const DEFAULT_FAIL_STATIC_MIN_SERVICES: usize = 2;
/// Health withdraws a service here only while at least this many other live locations announce
/// it according to the topology (the floor).
pub const DEFAULT_HEALTH_MIN_OTHER_LOCATIONS: usize = 1;

/// `[health]`: the location-wide health-check policy (per-service checks are in the topology).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthConfig {
    /// Run the topology's health checks at all (`false`: every service counts as healthy).
    pub enabled: bool,
    /// Fail static when more than this share of the checked services is unhealthy, or when the
    /// probes of more than this share could not run (timeouts, the runner failing).
    pub fail_static_share: f64,
    pub fail_static_min_services: usize,
    /// The floor: see [`DEFAULT_HEALTH_MIN_OTHER_LOCATIONS`].
    pub min_other_locations: usize,
    /// Values for `{name}` placeholders in probe targets (beside location, region, metro, country).
    pub vars: BTreeMap<String, String>,
    /// Bind services' `local_addresses` on this interface through netlink (None: do not bind).
    pub address_interface: Option<String>,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            enabled: true,
            fail_static_share: DEFAULT_FAIL_STATIC_SHARE,
            fail_static_min_services: DEFAULT_FAIL_STATIC_MIN_SERVICES,
            min_other_locations: DEFAULT_HEALTH_MIN_OTHER_LOCATIONS,
            vars: BTreeMap::new(),
            address_interface: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GracefulRestartConfig {
    /// Advertise the graceful-restart capability (RFC 4724).
    pub enabled: bool,
    pub restart_time_seconds: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShutdownConfig {
    pub grace_seconds: u32,
    /// On SIGTERM withdraw every route before closing the sessions, instead of leaving the
    /// routes at the peers through graceful restart.
    pub withdraw_on_stop: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlConfig {
    pub listen: SocketAddr,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// CA that signs the client certificates; a client without one is refused in the handshake.
    pub client_ca: PathBuf,
    /// Client identity (certificate common name) → role. Unknown identities are refused.
    pub roles: BTreeMap<String, Role>,
    pub audit_log: PathBuf,
    /// Request body limit for `admin` identities.
    pub max_body_bytes: usize,
    /// Request body limit for `reader` identities.
    pub max_reader_body_bytes: usize,
    /// See [`DEFAULT_COMPILE_MEMORY_BYTES`].
    pub compile_memory_bytes: u64,
}

/// One BGP neighbor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConfig {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub asn: u32,
    /// Source address for outgoing connections; also the default IPv4/IPv6 next hop.
    pub local_address: Option<IpAddr>,
    /// Never connect; wait for the peer (it must reach one of `bgp_listen`).
    pub passive: bool,
    pub hold_time_seconds: u16,
    /// RFC 9687 send hold time: close the connection when the peer has taken no message for
    /// this long. `None`: [`DEFAULT_SEND_HOLD_TIME_MINIMUM_SECONDS`] or twice the negotiated
    /// hold time, whichever is greater.
    pub send_hold_time_seconds: Option<u32>,
    pub connect_retry_seconds: u16,
    pub families: BTreeSet<Family>,
    pub next_hop_ipv4: Option<Ipv4Addr>,
    pub next_hop_ipv6: Option<Ipv6Addr>,
    /// File holding the TCP-MD5 (RFC 2385) key; read by the daemon, never logged.
    pub md5_key_file: Option<PathBuf>,
    /// GTSM (RFC 5082): the largest number of hops the peer may be away (1 for a direct link).
    pub ttl_security_hops: Option<u8>,
    /// Tear the session down (Cease, subcode 1, RFC 4486) when the peer sends more prefixes.
    pub max_prefix: Option<u64>,
    /// Offer extended messages (RFC 8654).
    pub extended_messages: bool,
}

impl PeerConfig {
    /// The reload rule: a change of anything that the session's TCP connection or OPEN depends
    /// on (address, port, ASNs, local address, passive/active, hold time, families, MD5 key
    /// file, GTSM, extended messages) resets the session. Next hops, the connect-retry interval,
    /// max-prefix and the send hold time apply without a reset: the routes are re-sent with the
    /// new next hop at once; a new max-prefix limit, retry interval and send hold time take
    /// effect from the next session on.
    pub fn session_reset_needed(&self, new: &PeerConfig) -> bool {
        self.address != new.address
            || self.port != new.port
            || self.asn != new.asn
            || self.local_address != new.local_address
            || self.passive != new.passive
            || self.hold_time_seconds != new.hold_time_seconds
            || self.families != new.families
            || self.md5_key_file != new.md5_key_file
            || self.ttl_security_hops != new.ttl_security_hops
            || self.extended_messages != new.extended_messages
    }

    /// The IPv4 next hop we announce to this peer.
    pub fn ipv4_next_hop(&self) -> Option<Ipv4Addr> {
        self.next_hop_ipv4.or(match self.local_address {
            Some(IpAddr::V4(address)) => Some(address),
            _ => None,
        })
    }

    /// The IPv6 next hop we announce to this peer.
    pub fn ipv6_next_hop(&self) -> Option<Ipv6Addr> {
        self.next_hop_ipv6.or(match self.local_address {
            Some(IpAddr::V6(address)) => Some(address),
            _ => None,
        })
    }
}
