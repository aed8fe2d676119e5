//! The daemon's own configuration file (`topologyd.toml`): which location this daemon is, its
//! BGP identity, its peers, its listeners, where it keeps state and its health-check policy
//! (`[health]`, `[health.vars]`). Parsed from TOML with unknown
//! keys rejected and every value that a check can complain about kept with its span, so that all
//! errors come out in one run as `file:line:column: error: … help: …`.
//!
//! Pure: takes a [`Source`] and returns a [`DaemonConfig`] or [`Diagnostics`]. Whether files it
//! names exist (keys, certificates) is checked by the daemon when it loads them. Every default is
//! a documented constant below. [`PeerConfig::session_reset_needed`] is the documented rule for
//! which changes of a reload reset a BGP session and which apply in place.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::diagnostic::{Collector, Diagnostics};
use crate::health::{BUILTIN_PLACEHOLDERS, is_placeholder_name};
use crate::source::{Source, SourceMap, Span};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    location: Spanned<String>,
    local_asn: Spanned<u32>,
    router_id: Spanned<String>,
    state_dir: Spanned<String>,
    #[serde(default)]
    bootstrap_topology: Vec<String>,
    retained_generations: Option<Spanned<usize>>,
    bgp: Option<BgpFile>,
    graceful_restart: Option<GracefulRestartFile>,
    shutdown: Option<ShutdownFile>,
    admin: Option<AdminFile>,
    control: Option<ControlFile>,
    health: Option<HealthFile>,
    readiness: Option<ReadinessFile>,
    #[serde(default)]
    peer: Vec<PeerFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadinessFile {
    min_established: Option<Spanned<usize>>,
    min_established_share: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthFile {
    enabled: Option<bool>,
    fail_static_share: Option<Spanned<f64>>,
    fail_static_min_services: Option<Spanned<usize>>,
    min_other_locations: Option<usize>,
    address_interface: Option<Spanned<String>>,
    #[serde(default)]
    vars: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BgpFile {
    #[serde(default)]
    listen: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GracefulRestartFile {
    enabled: Option<bool>,
    restart_time_seconds: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownFile {
    grace_seconds: Option<u32>,
    withdraw_on_stop: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlFile {
    listen: Spanned<String>,
    certificate: String,
    private_key: String,
    client_ca: String,
    #[serde(default)]
    roles: BTreeMap<String, Role>,
    audit_log: String,
    max_body_bytes: Option<usize>,
    max_reader_body_bytes: Option<usize>,
    compile_memory_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    name: Spanned<String>,
    address: Spanned<String>,
    port: Option<u16>,
    asn: Spanned<u32>,
    local_address: Option<Spanned<String>>,
    #[serde(default)]
    passive: bool,
    hold_time_seconds: Option<Spanned<u16>>,
    send_hold_time_seconds: Option<Spanned<u32>>,
    connect_retry_seconds: Option<Spanned<u16>>,
    families: Option<Spanned<Vec<Family>>>,
    next_hop_ipv4: Option<Spanned<String>>,
    next_hop_ipv6: Option<Spanned<String>>,
    md5_key_file: Option<String>,
    ttl_security_hops: Option<Spanned<u8>>,
    max_prefix: Option<u64>,
    extended_messages: Option<bool>,
}

fn span_of<T>(spanned: &Spanned<T>) -> Span {
    Span::new(0, spanned.span())
}

fn parse_value<T: std::str::FromStr>(
    text: &Spanned<String>,
    what: &str,
    example: &str,
    collector: &mut Collector,
) -> Option<T> {
    match text.get_ref().parse::<T>() {
        Ok(value) => Some(value),
        Err(_) => {
            collector.error(
                Some(span_of(text)),
                format!("`{}` is not a valid {what}", text.get_ref()),
                Some(format!("write it like \"{example}\"")),
            );
            None
        }
    }
}

/// Parses and validates a daemon configuration file. All errors are reported together.
pub fn parse_daemon_config(source: &Source) -> Result<DaemonConfig, Diagnostics> {
    let sources = SourceMap::new(vec![source.clone()]);
    let mut collector = Collector::new();
    let file: DaemonFile = match toml::from_str(&source.text) {
        Ok(file) => file,
        Err(failure) => {
            let span = failure
                .span()
                .map_or(Span::new(0, 0..0), |range| Span::new(0, range));
            let help = failure.message().contains("unknown field").then(|| {
                "remove the key or fix its spelling; unknown keys are rejected".to_string()
            });
            collector.error(Some(span), failure.message().trim_end().to_string(), help);
            return Err(collector.finish(&sources));
        }
    };
    let config = convert(file, &mut collector);
    if collector.has_errors() {
        return Err(collector.finish(&sources));
    }
    config.ok_or_else(|| collector.finish(&sources))
}

fn convert(file: DaemonFile, collector: &mut Collector) -> Option<DaemonConfig> {
    if file.location.get_ref().trim().is_empty() {
        collector.error(
            Some(span_of(&file.location)),
            "`location` is empty",
            Some("name the location of this daemon as the topology's fleet names it".into()),
        );
    }
    if *file.local_asn.get_ref() == 0 || *file.local_asn.get_ref() == 23456 {
        collector.error(
            Some(span_of(&file.local_asn)),
            format!("local_asn {} is reserved", file.local_asn.get_ref()),
            Some("use the ASN this location speaks BGP with (not 0, not AS_TRANS 23456)".into()),
        );
    }
    let router_id = parse_value::<Ipv4Addr>(&file.router_id, "router id", "192.0.2.1", collector);
    if router_id == Some(Ipv4Addr::UNSPECIFIED) {
        collector.error(
            Some(span_of(&file.router_id)),
            "router_id 0.0.0.0 is not allowed (RFC 6286)",
            Some("use a unique non-zero IPv4 address of this router".into()),
        );
    }
    let retained_generations = file
        .retained_generations
        .as_ref()
        .map_or(DEFAULT_RETAINED_GENERATIONS, |value| *value.get_ref());
    if let Some(value) = &file.retained_generations
        && *value.get_ref() == 0
    {
        collector.error(
            Some(span_of(value)),
            "retained_generations must be at least 1",
            Some("keep at least the last known good generation for rollback".into()),
        );
    }
    let bgp_listen = file
        .bgp
        .map(|bgp| {
            bgp.listen
                .iter()
                .filter_map(|text| {
                    parse_value::<SocketAddr>(text, "socket address", "127.0.0.1:179", collector)
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let graceful_restart = match file.graceful_restart {
        Some(section) => {
            let restart_time = section
                .restart_time_seconds
                .as_ref()
                .map_or(DEFAULT_RESTART_TIME_SECONDS, |value| *value.get_ref());
            if let Some(value) = &section.restart_time_seconds
                && *value.get_ref() > 4095
            {
                collector.error(
                    Some(span_of(value)),
                    format!("restart_time_seconds {} does not fit", value.get_ref()),
                    Some("RFC 4724 §3 gives the restart time 12 bits: at most 4095".into()),
                );
            }
            GracefulRestartConfig {
                enabled: section.enabled.unwrap_or(true),
                restart_time_seconds: restart_time,
            }
        }
        None => GracefulRestartConfig {
            enabled: true,
            restart_time_seconds: DEFAULT_RESTART_TIME_SECONDS,
        },
    };
    let shutdown = ShutdownConfig {
        grace_seconds: file
            .shutdown
            .as_ref()
            .and_then(|section| section.grace_seconds)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS),
        withdraw_on_stop: file
            .shutdown
            .as_ref()
            .and_then(|section| section.withdraw_on_stop)
            .unwrap_or(false),
    };
    let admin = file.admin.and_then(|admin| {
        parse_value::<SocketAddr>(&admin.listen, "socket address", "127.0.0.1:9179", collector)
            .map(|listen| AdminConfig { listen })
    });
    let control = file.control.and_then(|control| {
        let listen = parse_value::<SocketAddr>(
            &control.listen,
            "socket address",
            "127.0.0.1:9180",
            collector,
        )?;
        if control.roles.is_empty() {
            collector.error(
                Some(span_of(&control.listen)),
                "the control API has no [control.roles]: nobody could use it",
                Some(
                    "add e.g. `roles = { \"sre-oncall\" = \"admin\" }` (certificate CN → role)"
                        .into(),
                ),
            );
        }
        Some(ControlConfig {
            listen,
            certificate: control.certificate.into(),
            private_key: control.private_key.into(),
            client_ca: control.client_ca.into(),
            roles: control.roles,
            audit_log: control.audit_log.into(),
            max_body_bytes: control
                .max_body_bytes
                .unwrap_or(DEFAULT_CONTROL_MAX_BODY_BYTES),
            max_reader_body_bytes: control
                .max_reader_body_bytes
                .unwrap_or(DEFAULT_CONTROL_MAX_READER_BODY_BYTES),
            compile_memory_bytes: control
                .compile_memory_bytes
                .unwrap_or(DEFAULT_COMPILE_MEMORY_BYTES),
        })
    });
    let peer_count = file.peer.len();
    let readiness = file
        .readiness
        .map(|readiness| convert_readiness(readiness, peer_count, collector))
        .unwrap_or_default();
    let mut peers = Vec::with_capacity(file.peer.len());
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    let mut addresses: BTreeMap<IpAddr, Span> = BTreeMap::new();
    for peer in file.peer {
        let name_span = span_of(&peer.name);
        if names
            .insert(peer.name.get_ref().clone(), name_span)
            .is_some()
        {
            collector.error(
                Some(name_span),
                format!("peer `{}` is defined twice", peer.name.get_ref()),
                Some("give every [[peer]] a unique name".into()),
            );
        }
        if let Some(converted) = convert_peer(peer, &bgp_listen, collector) {
            let address_span = name_span;
            if addresses.insert(converted.address, address_span).is_some() {
                collector.error(
                    Some(address_span),
                    format!("two peers have the address {}", converted.address),
                    Some("one BGP session per neighbor address".into()),
                );
            }
            peers.push(converted);
        }
    }
    Some(DaemonConfig {
        location: file.location.into_inner(),
        local_asn: file.local_asn.into_inner(),
        router_id: router_id?,
        state_dir: file.state_dir.into_inner().into(),
        bootstrap_topology: file
            .bootstrap_topology
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        retained_generations,
        bgp_listen,
        graceful_restart,
        shutdown,
        admin,
        control,
        health: file
            .health
            .map(|health| convert_health(health, collector))
            .unwrap_or_default(),
        readiness,
        peers,
    })
}

/// `[readiness]`, defaults filled in.
fn convert_readiness(
    file: ReadinessFile,
    peer_count: usize,
    collector: &mut Collector,
) -> ReadinessConfig {
    let defaults = ReadinessConfig::default();
    let min_established = file
        .min_established
        .as_ref()
        .map_or(defaults.min_established, |value| *value.get_ref());
    if let Some(value) = &file.min_established
        && min_established > peer_count
    {
        collector.error(
            Some(span_of(value)),
            format!(
                "min_established = {min_established} but only {peer_count} peer(s) are configured: \
                 the daemon could never be ready"
            ),
            Some(format!(
                "write at most {peer_count}, or min_established_share = 1.0 for \"every peer\""
            )),
        );
    }
    let share = file.min_established_share.as_ref().map(|value| {
        let share = *value.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            collector.error(
                Some(span_of(value)),
                format!("min_established_share = {share} is outside 0 < share ≤ 1"),
                Some("write a share of the peers such as 0.5 (half of them, rounded up)".into()),
            );
        }
        share
    });
    ReadinessConfig {
        min_established,
        min_established_share: share,
    }
}

/// Why an IPv6 next hop can never be encoded (RFC 4760 §3, RFC 2545 §3: a global unicast
/// address in MP_REACH_NLRI); the BGP codec refuses the same addresses.
pub fn ipv6_next_hop_problem(address: Ipv6Addr) -> Option<&'static str> {
    if address.is_unspecified() {
        Some("the unspecified address")
    } else if address.is_loopback() {
        Some("the loopback address")
    } else if address.is_multicast() {
        Some("a multicast address")
    } else if address.is_unicast_link_local() {
        Some("a link-local address")
    } else {
        None
    }
}

/// Linux network interface names are at most this long (`IFNAMSIZ` 16, with the NUL).
pub const MAX_INTERFACE_NAME_LENGTH: usize = 15;

/// `[health]` and `[health.vars]`, defaults filled in.
fn convert_health(file: HealthFile, collector: &mut Collector) -> HealthConfig {
    let defaults = HealthConfig::default();
    let fail_static_share = file
        .fail_static_share
        .as_ref()
        .map_or(defaults.fail_static_share, |value| *value.get_ref());
    if let Some(value) = &file.fail_static_share
        && !(fail_static_share > 0.0 && fail_static_share <= 1.0)
    {
        collector.error(
            Some(span_of(value)),
            format!("fail_static_share = {fail_static_share} is outside 0 < share ≤ 1"),
            Some(format!(
                "write a share such as {DEFAULT_FAIL_STATIC_SHARE} (fail static when more than \
                 half of the checked services are unhealthy at once)"
            )),
        );
    }
    let fail_static_min_services = file
        .fail_static_min_services
        .as_ref()
        .map_or(defaults.fail_static_min_services, |value| *value.get_ref());
    if let Some(value) = &file.fail_static_min_services
        && fail_static_min_services == 0
    {
        collector.error(
            Some(span_of(value)),
            "fail_static_min_services must be at least 1",
            Some(format!(
                "write fail_static_min_services = {DEFAULT_FAIL_STATIC_MIN_SERVICES} (the \
                 default): one unhealthy service alone is just down"
            )),
        );
    }
    let address_interface = file.address_interface.and_then(|name| {
        let problem = if name.get_ref().is_empty() {
            Some("address_interface is empty".to_string())
        } else if name.get_ref().len() > MAX_INTERFACE_NAME_LENGTH {
            Some(format!(
                "interface name `{}` is longer than {MAX_INTERFACE_NAME_LENGTH} bytes",
                name.get_ref()
            ))
        } else if matches!(name.get_ref().as_str(), "." | "..")
            || name
                .get_ref()
                .contains(|character: char| character == '/' || character.is_whitespace())
        {
            Some(format!(
                "`{}` is not a valid interface name",
                name.get_ref()
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                collector.error(
                    Some(span_of(&name)),
                    message,
                    Some(
                        "name the interface that receives the services' local addresses, such \
                         as \"lo\" (Linux names are 1 to 15 bytes without / or spaces); leave \
                         address_interface out to bind nothing"
                            .into(),
                    ),
                );
                None
            }
            None => Some(name.into_inner()),
        }
    });
    let mut vars = BTreeMap::new();
    for (key, value) in file.vars {
        let name = key.get_ref();
        if !is_placeholder_name(name) {
            collector.error(
                Some(span_of(&key)),
                format!("`{name}` is not a valid placeholder name"),
                Some(
                    "use lower-case letters, digits and _, such as probe_host; probe targets \
                     write it as {probe_host}"
                        .into(),
                ),
            );
        } else if BUILTIN_PLACEHOLDERS.contains(&name.as_str()) {
            collector.error(
                Some(span_of(&key)),
                format!("`{name}` is filled from the topology's location and cannot be set here"),
                Some(format!(
                    "{{{name}}} is always this location's {name}; pick another name, such as \
                     probe_{name}"
                )),
            );
        } else {
            vars.insert(key.into_inner(), value.into_inner());
        }
    }
    HealthConfig {
        enabled: file.enabled.unwrap_or(defaults.enabled),
        fail_static_share,
        fail_static_min_services,
        min_other_locations: file
            .min_other_locations
            .unwrap_or(defaults.min_other_locations),
        vars,
        address_interface,
    }
}

fn convert_peer(
    peer: PeerFile,
    bgp_listen: &[SocketAddr],
    collector: &mut Collector,
) -> Option<PeerConfig> {
    let address = parse_value::<IpAddr>(&peer.address, "IP address", "192.0.2.2", collector);
    let local_address = peer
        .local_address
        .as_ref()
        .and_then(|text| parse_value::<IpAddr>(text, "IP address", "192.0.2.1", collector));
    let next_hop_ipv4 = peer
        .next_hop_ipv4
        .as_ref()
        .and_then(|text| parse_value::<Ipv4Addr>(text, "IPv4 address", "192.0.2.1", collector));
    let next_hop_ipv6 = peer
        .next_hop_ipv6
        .as_ref()
        .and_then(|text| parse_value::<Ipv6Addr>(text, "IPv6 address", "2001:db8::1", collector));
    let hold_time = peer
        .hold_time_seconds
        .as_ref()
        .map_or(DEFAULT_HOLD_TIME_SECONDS, |value| *value.get_ref());
    if let Some(value) = &peer.hold_time_seconds
        && matches!(*value.get_ref(), 1 | 2)
    {
        collector.error(
            Some(span_of(value)),
            format!("hold_time_seconds {} is not allowed", value.get_ref()),
            Some("RFC 4271 §4.2: the hold time is 0 or at least 3 seconds".into()),
        );
    }
    if let Some(value) = &peer.send_hold_time_seconds
        && (hold_time == 0 || *value.get_ref() <= u32::from(hold_time))
    {
        collector.error(
            Some(span_of(value)),
            if hold_time == 0 {
                format!(
                    "send_hold_time_seconds {} has no effect with hold_time_seconds = 0",
                    value.get_ref()
                )
            } else {
                format!(
                    "send_hold_time_seconds {} is not greater than hold_time_seconds {hold_time}",
                    value.get_ref()
                )
            },
            Some(format!(
                "RFC 9687 §3: the send hold time must be greater than the hold time; leave it out \
                 for the default (the greater of {DEFAULT_SEND_HOLD_TIME_MINIMUM_SECONDS} s and \
                 twice the hold time)"
            )),
        );
    }
    let connect_retry = peer
        .connect_retry_seconds
        .as_ref()
        .map_or(DEFAULT_CONNECT_RETRY_SECONDS, |value| *value.get_ref());
    if let Some(value) = &peer.connect_retry_seconds
        && *value.get_ref() == 0
    {
        collector.error(
            Some(span_of(value)),
            "connect_retry_seconds must be at least 1",
            None,
        );
    }
    let families: BTreeSet<Family> = match &peer.families {
        Some(list) => {
            if list.get_ref().is_empty() {
                collector.error(
                    Some(span_of(list)),
                    "a peer needs at least one family",
                    Some("write families = [\"ipv4\", \"ipv6\"]".into()),
                );
            }
            list.get_ref().iter().copied().collect()
        }
        None => [Family::Ipv4, Family::Ipv6].into_iter().collect(),
    };
    if let Some(value) = &peer.ttl_security_hops
        && *value.get_ref() == 0
    {
        collector.error(
            Some(span_of(value)),
            "ttl_security_hops must be between 1 and 254",
            Some("1 means the peer is directly connected (RFC 5082)".into()),
        );
    }
    if peer.passive && bgp_listen.is_empty() {
        collector.error(
            Some(span_of(&peer.name)),
            format!(
                "peer `{}` is passive but the daemon listens nowhere",
                peer.name.get_ref()
            ),
            Some("add [bgp] listen = [\"ADDRESS:PORT\"] or make the peer active".into()),
        );
    }
    let config = PeerConfig {
        name: peer.name.get_ref().clone(),
        address: address?,
        port: peer.port.unwrap_or(DEFAULT_BGP_PORT),
        asn: *peer.asn.get_ref(),
        local_address,
        passive: peer.passive,
        hold_time_seconds: hold_time,
        send_hold_time_seconds: peer
            .send_hold_time_seconds
            .as_ref()
            .map(|value| *value.get_ref()),
        connect_retry_seconds: connect_retry,
        families,
        next_hop_ipv4,
        next_hop_ipv6,
        md5_key_file: peer.md5_key_file.map(PathBuf::from),
        ttl_security_hops: peer
            .ttl_security_hops
            .as_ref()
            .map(|value| *value.get_ref()),
        max_prefix: peer.max_prefix,
        extended_messages: peer.extended_messages.unwrap_or(true),
    };
    if *peer.asn.get_ref() == 0 {
        collector.error(
            Some(span_of(&peer.asn)),
            "peer asn 0 is reserved (RFC 7607)",
            None,
        );
    }
    if config.families.contains(&Family::Ipv4) && config.ipv4_next_hop().is_none() {
        collector.error(
            Some(span_of(&peer.name)),
            format!(
                "peer `{}` announces IPv4 but has no IPv4 next hop",
                config.name
            ),
            Some("set next_hop_ipv4, or an IPv4 local_address".into()),
        );
    }
    if config.families.contains(&Family::Ipv6)
        && let Some(next_hop) = config.ipv6_next_hop()
        && let Some(problem) = ipv6_next_hop_problem(next_hop)
    {
        let (span, origin) = match (&peer.next_hop_ipv6, &peer.local_address) {
            (Some(text), _) => (span_of(text), "next_hop_ipv6"),
            (None, Some(text)) => (span_of(text), "the default next hop (local_address)"),
            (None, None) => (span_of(&peer.name), "the next hop"),
        };
        collector.error(
            Some(span),
            format!(
                "peer `{}`: {origin} {next_hop} is {problem}, which an IPv6 route can never carry \
                 as its next hop (RFC 4760 §3): every IPv6 route to this peer would fail",
                config.name
            ),
            Some(
                "set next_hop_ipv6 to a global unicast address of this router, or families = \
                 [\"ipv4\"]"
                    .into(),
            ),
        );
    }
    if config.families.contains(&Family::Ipv6) && config.ipv6_next_hop().is_none() {
        collector.error(
            Some(span_of(&peer.name)),
            format!(
                "peer `{}` announces IPv6 but has no IPv6 next hop",
                config.name
            ),
            Some("set next_hop_ipv6, an IPv6 local_address, or families = [\"ipv4\"]".into()),
        );
    }
    Some(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
location = "ams01"
local_asn = 64512
router_id = "192.0.2.1"
state_dir = "/var/lib/topologyd"

[[peer]]
name = "edge1"
address = "127.0.0.2"
asn = 64513
local_address = "127.0.0.1"
families = ["ipv4"]
"#;

    fn parse(text: &str) -> Result<DaemonConfig, Diagnostics> {
        parse_daemon_config(&Source::new("topologyd.toml", text))
    }

    #[test]
    fn minimal_config_takes_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        let peer = &config.peers[0];
        assert_eq!(peer.port, DEFAULT_BGP_PORT);
        assert_eq!(peer.hold_time_seconds, DEFAULT_HOLD_TIME_SECONDS);
        assert_eq!(peer.ipv4_next_hop(), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert!(config.graceful_restart.enabled);
        assert_eq!(config.retained_generations, DEFAULT_RETAINED_GENERATIONS);
    }

    #[test]
    fn every_error_is_reported_with_its_position() {
        let text = MINIMAL.replace("127.0.0.2", "not-an-address").replace(
            "families = [\"ipv4\"]",
            "families = [\"ipv4\", \"ipv6\"]\nhold_time_seconds = 2",
        );
        let diagnostics = parse(&text).unwrap_err();
        let rendered = diagnostics.to_string();
        assert!(
            rendered
                .contains("topologyd.toml:9:11: error: `not-an-address` is not a valid IP address"),
            "{rendered}"
        );
        assert!(
            rendered.contains("hold_time_seconds 2 is not allowed"),
            "{rendered}"
        );
        assert_eq!(diagnostics.errors().count(), 2, "{rendered}");
    }

    #[test]
    fn control_body_and_compile_limits_default_and_can_be_set() {
        let control = r#"
[control]
listen = "127.0.0.1:9180"
certificate = "server.pem"
private_key = "server.key"
client_ca = "ca.pem"
audit_log = "audit.jsonl"
roles = { "sre" = "admin" }
"#;
        let with_control = MINIMAL.replacen("[[peer]]", &format!("{control}\n[[peer]]"), 1);
        let config = parse(&with_control).unwrap();
        let limits = config.control.unwrap();
        assert_eq!(limits.max_body_bytes, DEFAULT_CONTROL_MAX_BODY_BYTES);
        assert_eq!(
            limits.max_reader_body_bytes,
            DEFAULT_CONTROL_MAX_READER_BODY_BYTES
        );
        assert!(limits.max_reader_body_bytes < limits.max_body_bytes);
        assert_eq!(limits.compile_memory_bytes, DEFAULT_COMPILE_MEMORY_BYTES);
        let set = with_control.replace(
            "audit_log = \"audit.jsonl\"",
            "audit_log = \"audit.jsonl\"\nmax_reader_body_bytes = 1024\ncompile_memory_bytes = 67108864",
        );
        let limits = parse(&set).unwrap().control.unwrap();
        assert_eq!(limits.max_reader_body_bytes, 1024);
        assert_eq!(limits.compile_memory_bytes, 64 * 1024 * 1024);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_position() {
        let diagnostics = parse(&format!("{MINIMAL}hold_tme = 3\n")).unwrap_err();
        let rendered = diagnostics.to_string();
        assert!(rendered.contains("topologyd.toml:"), "{rendered}");
        assert!(rendered.contains("hold_tme"), "{rendered}");
    }

    #[test]
    fn send_hold_time_must_exceed_the_hold_time() {
        let config = parse(&MINIMAL.replace(
            "families = [\"ipv4\"]",
            "families = [\"ipv4\"]\nhold_time_seconds = 3\nsend_hold_time_seconds = 4",
        ))
        .unwrap();
        assert_eq!(config.peers[0].send_hold_time_seconds, Some(4));
        assert_eq!(
            parse(MINIMAL).unwrap().peers[0].send_hold_time_seconds,
            None
        );
        for (settings, expected) in [
            (
                "hold_time_seconds = 30\nsend_hold_time_seconds = 30",
                "topologyd.toml:14:26: error: send_hold_time_seconds 30 is not greater than hold_time_seconds 30",
            ),
            (
                "send_hold_time_seconds = 60",
                "topologyd.toml:13:26: error: send_hold_time_seconds 60 is not greater than hold_time_seconds 90",
            ),
            (
                "hold_time_seconds = 0\nsend_hold_time_seconds = 600",
                "topologyd.toml:14:26: error: send_hold_time_seconds 600 has no effect with hold_time_seconds = 0",
            ),
        ] {
            let diagnostics = parse(&MINIMAL.replace(
                "families = [\"ipv4\"]",
                &format!("families = [\"ipv4\"]\n{settings}"),
            ))
            .unwrap_err();
            let rendered = diagnostics.to_string();
            assert!(rendered.contains(expected), "{rendered}");
            assert!(rendered.contains("RFC 9687"), "{rendered}");
        }
    }

    #[test]
    fn an_ipv6_next_hop_that_can_never_be_encoded_is_an_error() {
        let ipv6_peer = |settings: &str| {
            MINIMAL
                .replace("address = \"127.0.0.2\"", "address = \"::1\"")
                .replace(
                    "local_address = \"127.0.0.1\"\nfamilies = [\"ipv4\"]",
                    settings,
                )
        };
        for (settings, expected) in [
            (
                "local_address = \"::1\"\nfamilies = [\"ipv6\"]",
                "topologyd.toml:11:17: error: peer `edge1`: the default next hop (local_address) ::1 is the loopback address",
            ),
            (
                "local_address = \"::1\"\nnext_hop_ipv6 = \"fe80::1\"\nfamilies = [\"ipv6\"]",
                "topologyd.toml:12:17: error: peer `edge1`: next_hop_ipv6 fe80::1 is a link-local address",
            ),
            (
                "next_hop_ipv6 = \"::\"\nfamilies = [\"ipv6\"]",
                "topologyd.toml:11:17: error: peer `edge1`: next_hop_ipv6 :: is the unspecified address",
            ),
        ] {
            let rendered = parse(&ipv6_peer(settings)).unwrap_err().to_string();
            assert!(rendered.contains(expected), "{rendered}");
            assert!(rendered.contains("global unicast"), "{rendered}");
        }
        // A global next hop is fine; an IPv4-only peer over ::1 needs no IPv6 next hop.
        parse(&ipv6_peer(
            "local_address = \"::1\"\nnext_hop_ipv6 = \"2001:db8::1\"\nfamilies = [\"ipv6\"]",
        ))
        .unwrap();
        parse(&ipv6_peer(
            "local_address = \"::1\"\nnext_hop_ipv4 = \"192.0.2.1\"\nfamilies = [\"ipv4\"]",
        ))
        .unwrap();
    }

    #[test]
    fn readiness_takes_documented_defaults_and_rejects_impossible_settings() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.readiness, ReadinessConfig::default());
        assert_eq!(config.readiness.required(3), 1);
        assert_eq!(config.readiness.required(0), 0);
        let config = parse(&format!(
            "{MINIMAL}\n[readiness]\nmin_established = 1\nmin_established_share = 0.5\n"
        ))
        .unwrap();
        assert_eq!(config.readiness.required(3), 2);
        assert_eq!(config.readiness.required(4), 2);
        assert_eq!(config.readiness.required(1), 1);
        for (settings, expected) in [
            (
                "min_established = 2\n",
                "topologyd.toml:15:19: error: min_established = 2 but only 1 peer(s) are configured",
            ),
            (
                "min_established_share = 0.0\n",
                "topologyd.toml:15:25: error: min_established_share = 0 is outside 0 < share ≤ 1",
            ),
            (
                "min_peers = 1\n",
                "topologyd.toml:15:1: error: unknown field `min_peers`",
            ),
        ] {
            let rendered = parse(&format!("{MINIMAL}\n[readiness]\n{settings}"))
                .unwrap_err()
                .to_string();
            assert!(rendered.contains(expected), "{rendered}");
        }
    }

    #[test]
    fn reload_rule_resets_only_for_session_parameters() {
        let config = parse(MINIMAL).unwrap();
        let old = config.peers[0].clone();
        let mut new = old.clone();
        new.max_prefix = Some(10);
        new.next_hop_ipv4 = Some(Ipv4Addr::new(127, 0, 0, 9));
        assert!(!old.session_reset_needed(&new));
        new.hold_time_seconds = 30;
        assert!(old.session_reset_needed(&new));
    }

    #[test]
    fn health_section_takes_documented_defaults() {
        assert_eq!(parse(MINIMAL).unwrap().health, HealthConfig::default());
        let config = parse(&format!("{MINIMAL}\n[health]\nenabled = false\n")).unwrap();
        assert_eq!(
            config.health,
            HealthConfig {
                enabled: false,
                ..HealthConfig::default()
            }
        );
        let config = parse(&format!(
            "{MINIMAL}\n[health]\nenabled = true\nfail_static_share = 1.0\nfail_static_min_services = 3\nmin_other_locations = 0\naddress_interface = \"topologyd-vips\"\n\n[health.vars]\nprobe_host = \"127.0.0.5\"\nanycast_v6 = \"::1\"\n"
        ))
        .unwrap();
        assert_eq!(
            config.health,
            HealthConfig {
                enabled: true,
                fail_static_share: 1.0,
                fail_static_min_services: 3,
                min_other_locations: 0,
                vars: [("anycast_v6", "::1"), ("probe_host", "127.0.0.5")]
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                address_interface: Some("topologyd-vips".into()),
            }
        );
    }

    #[test]
    fn bad_health_settings_are_errors_at_their_value() {
        // The appended text starts on line 15 of the file.
        for (health, expected, help) in [
            (
                "fail_static_share = 0.0\n",
                "topologyd.toml:15:21: error: fail_static_share = 0 is outside 0 < share ≤ 1",
                "write a share such as 0.5",
            ),
            (
                "fail_static_share = 1.5\n",
                "topologyd.toml:15:21: error: fail_static_share = 1.5 is outside 0 < share ≤ 1",
                "write a share such as 0.5",
            ),
            (
                "fail_static_share = nan\n",
                "topologyd.toml:15:21: error: fail_static_share = NaN is outside 0 < share ≤ 1",
                "write a share such as 0.5",
            ),
            (
                "fail_static_min_services = 0\n",
                "topologyd.toml:15:28: error: fail_static_min_services must be at least 1",
                "fail_static_min_services = 2 (the default)",
            ),
            (
                "address_interface = \"\"\n",
                "topologyd.toml:15:21: error: address_interface is empty",
                "such as \"lo\"",
            ),
            (
                "address_interface = \"sixteen-bytes-xx\"\n",
                "topologyd.toml:15:21: error: interface name `sixteen-bytes-xx` is longer than 15 bytes",
                "1 to 15 bytes",
            ),
            (
                "address_interface = \"eth 0\"\n",
                "topologyd.toml:15:21: error: `eth 0` is not a valid interface name",
                "without / or spaces",
            ),
            (
                "[health.vars]\nProbe-Host = \"127.0.0.5\"\n",
                "topologyd.toml:16:1: error: `Probe-Host` is not a valid placeholder name",
                "lower-case letters, digits and _",
            ),
            (
                "[health.vars]\nregion = \"eu-west\"\n",
                "topologyd.toml:16:1: error: `region` is filled from the topology's location and cannot be set here",
                "such as probe_region",
            ),
            (
                "[health.vars]\nprobe_port = 53\n",
                "topologyd.toml:16:14: error: invalid type: integer `53`, expected a string",
                "",
            ),
            (
                "enable = true\n",
                "topologyd.toml:15:1: error: unknown field `enable`",
                "remove the key or fix its spelling",
            ),
        ] {
            let diagnostics = parse(&format!("{MINIMAL}\n[health]\n{health}")).unwrap_err();
            let rendered = diagnostics.to_string();
            assert!(
                rendered.contains(expected),
                "missing {expected:?} in\n{rendered}"
            );
            assert!(
                rendered.contains(help),
                "missing help {help:?} in\n{rendered}"
            );
            assert_eq!(diagnostics.errors().count(), 1, "{rendered}");
        }
    }

    #[test]
    fn the_example_configuration_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/daemon/topologyd.toml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let config = match parse_daemon_config(&Source::new(path, text)) {
            Ok(config) => config,
            Err(diagnostics) => panic!("{diagnostics}"),
        };
        assert_eq!(config.location, "ams01");
        assert!(config.health.enabled);
        assert_eq!(config.health.address_interface, None);
        assert!(config.health.vars.contains_key("probe_host"));
    }
}
