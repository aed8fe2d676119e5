//! The interoperability scenarios of the `tests/interop_*.rs` files: one body per interoperability scenario, generic over
//! the real peer daemon (BIRD 2, FRR bgpd, GoBGP, ExaBGP) through the harness's [`BgpPeer`]
//! trait, so that every daemon runs exactly the same assertions. Each `interop_<daemon>.rs` file
//! only names its launcher and how that daemon asks for a route refresh.
//!
//! Every scenario starts its own peer daemon (passive unless a collision is wanted, on a fresh
//! `127.a.b.c` address or `::1`) and its own topologyd (active towards it, with an mTLS control
//! API), with the example topology of [`crate::daemon_fixture`] plus one extra resolver prefix,
//! [`EXTRA_PREFIX`], that a `topoctl push` later withdraws. Peers check what they received in
//! their own view (`routes()`), which the harness reads from the daemon itself; what topologyd
//! did is read from its `/metrics` and log. Announced next hops are documentation addresses:
//! loopback next hops are refused by GoBGP and FRR (see `src/peers/mod.rs`).
//!
//! Scenarios: exact attributes then a pushed withdrawal and a withdrawing stop (IPv4 or IPv6
//! transport); route refresh (RFC 2918); SIGKILL and restart under graceful restart (RFC 4724);
//! TCP-MD5 (RFC 2385); GTSM (RFC 5082); connection collision (RFC 4271 §6.8); single-family
//! peers (RFC 4760); inbound counting; a peer restart; 2,048 routes packed into full UPDATEs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::peers::{
    BgpPeer, DEFAULT_NEXT_HOP_V4, DEFAULT_NEXT_HOP_V6, Family, GracefulRestart, Origin, PeerSpec,
    ReceivedRoute, Result, Route, Transport, TtlProbe, alloc, ttl_probe,
};
use crate::topologyd::{
    ControlPki, ControlSection, DaemonConfig, NeighborConfig, Topoctl, Topologyd, wait_until,
    write_files,
};
use ipnet::IpNet;

pub use crate::daemon_fixture::{LOCAL_ASN, WAIT, by_prefix, check, prefix};

/// The peer daemons' ASN: 4-octet, so every session negotiates RFC 6793 (we are 2-octet).
pub const PEER_ASN: u32 = 4_200_000_001;
/// The name of the peer in topologyd's configuration (and its metric label).
pub const PEER_NAME: &str = "edge";
/// A resolver prefix that the initial topology announces and a later push removes.
pub const EXTRA_PREFIX: &str = "198.18.0.0/24";
/// How long a session that must never come up is watched.
pub const NEVER_WINDOW: Duration = Duration::from_secs(4);
const ADMIN: &str = "interop-admin";
/// Exit code of `topoctl push` when the change was applied (changes made).
const EXIT_APPLIED: Option<i32> = Some(2);

const EXTRA_PREFIX_TOML: &str = r#"
[[prefix]]
cidr = "198.18.0.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "198.18.0.0/24"
service = "resolver"
"#;

/// One kind of peer daemon: how to start it and how to make it ask for a route refresh.
#[derive(Debug)]
pub struct PeerKind<P> {
    pub start: fn(PeerSpec) -> Result<P>,
    /// Makes the daemon send ROUTE-REFRESH (RFC 2918) for both families, where it can.
    pub request_refresh: Option<fn(&P) -> Result<()>>,
}

/// How one scenario sets up the session.
#[derive(Debug, Clone)]
pub struct Options {
    pub transport: Transport,
    pub withdraw_on_stop: bool,
    /// The peer connects too (both sides active: RFC 4271 §6.8 collisions).
    pub peer_active: bool,
    /// Routes the peer announces to topologyd from the start.
    pub peer_routes: Vec<Route>,
    /// More `[[prefix]]` / `[[binding]]` TOML for the initial topology.
    pub more_prefixes: String,
    /// The families the peer daemon offers; both when empty.
    pub peer_families: Vec<Family>,
    /// The hold time the peer daemon proposes (topologyd proposes 30 s).
    pub peer_hold_time: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transport: Transport::V4,
            withdraw_on_stop: false,
            peer_active: false,
            peer_routes: Vec::new(),
            more_prefixes: String::new(),
            peer_families: Vec::new(),
            peer_hold_time: 30,
        }
    }
}

/// A peer daemon and the topologyd peering with it, with an mTLS control API for pushes.
#[derive(Debug)]
pub struct Interop<P> {
    pub peer: P,
    pub topologyd: Topologyd,
    /// Kept alive: the control API's certificates live in its directory.
    _pki: ControlPki,
    admin: Topoctl,
    bundles: tempfile::TempDir,
}

/// The topology files topologyd boots with: the example topology plus [`EXTRA_PREFIX`] and
/// `more_prefixes` (TOML).
fn initial_topology(more_prefixes: &str) -> Vec<(&'static str, String)> {
    vec![
        ("fleet.toml", crate::daemon_fixture::FLEET.to_string()),
        ("services.toml", crate::daemon_fixture::SERVICES.to_string()),
        (
            "prefixes.toml",
            format!(
                "{}{EXTRA_PREFIX_TOML}{more_prefixes}",
                crate::daemon_fixture::PREFIXES
            ),
        ),
    ]
}

/// The peer's side of a session with `daemon`, passive, both families, graceful restart.
pub fn peer_spec(daemon: &DaemonConfig, endpoint: SocketAddr) -> PeerSpec {
    PeerSpec::new(PEER_ASN, endpoint, LOCAL_ASN, daemon.local)
        .families(vec![Family::Ipv4Unicast, Family::Ipv6Unicast])
        .passive(true)
        .hold_time(30)
        .graceful_restart(Some(GracefulRestart::default()))
}

/// Our side of a session with the peer at `endpoint`: documentation next hops for both families.
pub fn neighbor(name: &str, endpoint: SocketAddr) -> NeighborConfig {
    let mut neighbor = NeighborConfig::new(name, endpoint, PEER_ASN);
    neighbor.next_hop_ipv4 = Some(DEFAULT_NEXT_HOP_V4);
    neighbor.next_hop_ipv6 = Some(DEFAULT_NEXT_HOP_V6);
    neighbor
}

/// A fresh endpoint of the transport: `127.a.b.c` or `::1`, with a free port.
pub fn endpoint(transport: Transport) -> SocketAddr {
    alloc::endpoint(transport)
}

/// A topologyd for ams01 whose BGP side (listener, source address) uses `transport`.
pub fn daemon_config(transport: Transport) -> DaemonConfig {
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    if transport == Transport::V6 {
        daemon.local = endpoint(Transport::V6);
    }
    daemon
}

/// Starts topologyd with `daemon` (a control API is added) on the initial topology.
pub fn start_topologyd(daemon: DaemonConfig) -> (Topologyd, ControlPki, Topoctl) {
    start_topologyd_with(daemon, "")
}

/// [`start_topologyd`] with `more_prefixes` (TOML) added to the initial topology.
pub fn start_topologyd_with(
    mut daemon: DaemonConfig,
    more_prefixes: &str,
) -> (Topologyd, ControlPki, Topoctl) {
    let pki = check(ControlPki::generate(), "generating the PKI");
    daemon.control = Some(ControlSection::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        &pki,
        &[(ADMIN, "admin")],
    ));
    let files = initial_topology(more_prefixes);
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (*name, text.as_str()))
        .collect();
    let topologyd = check(Topologyd::start(daemon, &files), "starting topologyd");
    let control = topologyd
        .config
        .control
        .as_ref()
        .map(|control| control.listen)
        .unwrap_or_else(|| panic!("no [control] configured"));
    let admin = Topoctl::new(
        control,
        &pki.ca,
        check(pki.client(ADMIN), "a client certificate"),
    );
    (topologyd, pki, admin)
}

/// Starts a peer daemon and waits until its BGP port listens and it knows its neighbor:
/// ExaBGP's launcher returns before its listener exists, and GoBGP listens a moment before its
/// neighbor is configured (it closes connections from unknown addresses). Every refused attempt
/// would double topologyd's connect-retry delay (1 s, 2 s, 4 s…).
pub fn start_peer<P: BgpPeer>(kind: &PeerKind<P>, spec: PeerSpec) -> P {
    let endpoint = spec.local;
    let peer = check((kind.start)(spec), "starting the peer daemon");
    check(
        wait_until(&format!("{endpoint} listening"), WAIT, || {
            if !listening(endpoint.port()) {
                return Err(format!("not listening\n{}", peer.log_tail()));
            }
            peer.session_state()
                .map(drop)
                .map_err(|error| error.to_string())
        }),
        "the peer's listener",
    );
    peer
}

/// Whether a TCP socket listens on `port` (`/proc/net/tcp*`, state `0A`); no packet is sent.
fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1).is_some_and(|local| local.ends_with(&wanted))
                    && fields.get(3) == Some(&"0A")
            })
    })
}

/// Starts the peer daemon (passive unless `peer_active`) and topologyd (connecting to it).
pub fn start<P: BgpPeer>(kind: &PeerKind<P>, options: &Options) -> Interop<P> {
    let mut daemon = daemon_config(options.transport);
    daemon.withdraw_on_stop = options.withdraw_on_stop;
    let peer_endpoint = endpoint(options.transport);
    let mut spec = peer_spec(&daemon, peer_endpoint)
        .passive(!options.peer_active)
        .hold_time(options.peer_hold_time)
        .originate(options.peer_routes.clone());
    if !options.peer_families.is_empty() {
        spec = spec.families(options.peer_families.clone());
    }
    let peer = start_peer(kind, spec);
    daemon.neighbors.push(neighbor(PEER_NAME, peer_endpoint));
    let (topologyd, pki, admin) = start_topologyd_with(daemon, &options.more_prefixes);
    Interop {
        peer,
        topologyd,
        _pki: pki,
        admin,
        bundles: check(tempfile::tempdir(), "a directory for pushed bundles"),
    }
}

/// What the peer must hold from ams01, attribute by attribute, with the extra prefix or not.
pub fn expected_routes(with_extra: bool) -> BTreeMap<IpNet, ReceivedRoute> {
    let route = |text: &str| ReceivedRoute {
        prefix: prefix(text),
        as_path: vec![LOCAL_ASN],
        next_hop: IpAddr::V4(DEFAULT_NEXT_HOP_V4),
        origin: Origin::Igp,
        med: None,
        local_pref: None,
        communities: vec![(13335, 10000)],
        large_communities: vec![(13335, 1, 100)],
        stale: false,
    };
    let mut routes = vec![route("1.1.1.0/24"), {
        let mut resolver_v6 = route("2606:4700:4700::/48");
        resolver_v6.next_hop = IpAddr::V6(DEFAULT_NEXT_HOP_V6);
        resolver_v6
    }];
    if with_extra {
        routes.push(route(EXTRA_PREFIX));
    }
    for index in 0..4 {
        // The cdn service: the BYOIP origin prepended twice more, MED 50, two communities.
        let mut split = route(&format!("198.51.{}.0/24", 100 + index));
        split.as_path = vec![LOCAL_ASN, 64999, 64999, 64999];
        split.med = Some(50);
        split.communities = vec![(13335, 20000), (65000, 1)];
        split.large_communities = Vec::new();
        routes.push(split);
    }
    by_prefix(routes)
}

/// The peer's routes by prefix, LOCAL_PREF cleared: on eBGP it is the peer's own default, not
/// something we sent.
pub fn peer_view<P: BgpPeer>(peer: &P) -> BTreeMap<IpNet, ReceivedRoute> {
    by_prefix(
        check(peer.routes(), "the peer's routes")
            .into_iter()
            .map(|mut route| {
                route.local_pref = None;
                route
            })
            .collect(),
    )
}

/// Waits until the peer holds exactly `expected` (every attribute, stale flag included).
pub fn wait_for_exactly<P: BgpPeer>(peer: &P, expected: &BTreeMap<IpNet, ReceivedRoute>) {
    let started = Instant::now();
    loop {
        let view = peer_view(peer);
        if &view == expected {
            return;
        }
        if started.elapsed() > WAIT {
            let missing: Vec<_> = expected
                .iter()
                .filter(|(prefix, route)| view.get(*prefix) != Some(*route))
                .collect();
            let unexpected: Vec<_> = view
                .iter()
                .filter(|(prefix, route)| expected.get(*prefix) != Some(*route))
                .collect();
            panic!(
                "the peer never held exactly the expected routes\nexpected but not held: {missing:#?}\nheld but not expected: {unexpected:#?}\n--- peer log ---\n{}",
                peer.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The same routes with the stale flag set, as a graceful-restart helper keeps them.
pub fn stale(routes: &BTreeMap<IpNet, ReceivedRoute>) -> BTreeMap<IpNet, ReceivedRoute> {
    routes
        .iter()
        .map(|(prefix, route)| {
            let mut route = route.clone();
            route.stale = true;
            (*prefix, route)
        })
        .collect()
}

/// A counter of topologyd's `/metrics`, 0 when absent.
pub fn metric(topologyd: &Topologyd, sample: &str) -> f64 {
    check(topologyd.metric(sample), "reading /metrics").unwrap_or(0.0)
}

/// `topologyd_bgp_update_messages_total` for one peer and direction.
pub fn updates(topologyd: &Topologyd, peer: &str, direction: &str) -> f64 {
    metric(
        topologyd,
        &format!(
            "topologyd_bgp_update_messages_total{{peer=\"{peer}\",direction=\"{direction}\"}}"
        ),
    )
}

/// `topologyd_bgp_session_state` of one peer (6 is Established).
pub fn session_state(topologyd: &Topologyd, peer: &str) -> f64 {
    metric(
        topologyd,
        &format!("topologyd_bgp_session_state{{peer=\"{peer}\"}}"),
    )
}

/// Waits until `/metrics` says the peer is Established (RFC 4271 §8.2.2 state 6).
pub fn wait_established_here(topologyd: &Topologyd, peer: &str) {
    check(
        wait_until(&format!("{peer} Established at topologyd"), WAIT, || {
            let state = session_state(topologyd, peer);
            if state == 6.0 {
                Ok(())
            } else {
                Err(format!("state {state}\n{}", topologyd.log_tail()))
            }
        }),
        "topologyd's session",
    );
}

/// Fails unless topologyd established exactly one session with the peer so far.
pub fn assert_one_session(topologyd: &Topologyd, what: &str) {
    let established = topologyd
        .log()
        .matches(&format!("Established peer={PEER_NAME}"))
        .count();
    assert_eq!(established, 1, "{what}\n{}", topologyd.log_tail());
}

impl<P: BgpPeer> Interop<P> {
    /// Waits until topologyd converged and the peer holds exactly the initial routes.
    pub fn converge(&mut self) -> BTreeMap<IpNet, ReceivedRoute> {
        check(self.topologyd.wait_ready(WAIT), "topologyd never converged");
        let expected = expected_routes(true);
        wait_for_exactly(&self.peer, &expected);
        expected
    }

    /// Pushes the example topology without [`EXTRA_PREFIX`] through `topoctl push` (mTLS).
    pub fn push_without_extra_prefix(&self) {
        let files: Vec<PathBuf> = check(
            write_files(
                &self.bundles.path().join("without-extra"),
                &[
                    ("fleet.toml", crate::daemon_fixture::FLEET),
                    ("services.toml", crate::daemon_fixture::SERVICES),
                    ("prefixes.toml", crate::daemon_fixture::PREFIXES),
                ],
            ),
            "writing a bundle",
        );
        let mut arguments: Vec<String> = files
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        // Removing a prefix everywhere is a global withdrawal (guard G3) and, in a two-location
        // fleet, over the blast-radius budget (G4): say both are meant.
        arguments.extend([
            "--override".to_string(),
            format!("global-withdrawal:{EXTRA_PREFIX}"),
            "--override".to_string(),
            "blast-radius".to_string(),
            "--intent".to_string(),
            "service:resolver".to_string(),
        ]);
        let output = check(self.admin.run("push", &arguments), "running topoctl push");
        assert_eq!(output.code, EXIT_APPLIED, "topoctl push: {output}");
    }
}

/// Routes arrive with exactly the attributes sent; a pushed topology change withdraws one
/// route and the peer drops it, counting exactly one withdrawal; a SIGTERM with
/// `withdraw_on_stop` withdraws everything before the Cease.
pub fn attributes_then_withdrawal<P: BgpPeer>(kind: &PeerKind<P>, transport: Transport) {
    let mut interop = start(
        kind,
        &Options {
            transport,
            withdraw_on_stop: true,
            ..Options::default()
        },
    );
    interop.converge();
    let before = check(interop.peer.counters(), "the peer's counters");
    interop.push_without_extra_prefix();
    wait_for_exactly(&interop.peer, &expected_routes(false));
    let after = check(
        interop
            .peer
            .wait_for_counters(|counters| counters.withdrawals > before.withdrawals, WAIT),
        "the peer never counted the withdrawal",
    );
    assert_eq!(
        after.withdrawals,
        before.withdrawals + 1,
        "exactly one prefix withdrawn"
    );
    let exit = check(interop.topologyd.terminate(WAIT), "stopping topologyd");
    assert_eq!(exit, Some(0));
    check(
        interop.peer.wait_for(|routes| routes.is_empty(), WAIT),
        "routes stayed after a withdrawing stop",
    );
}

/// RFC 2918: the peer asks for a route refresh; topologyd re-sends every route (its UPDATE
/// counter grows) and the peer ends with exactly the same routes and no withdrawal.
pub fn route_refresh_resends<P: BgpPeer>(kind: &PeerKind<P>) {
    let request = kind
        .request_refresh
        .unwrap_or_else(|| panic!("this peer kind cannot request a route refresh"));
    let mut interop = start(kind, &Options::default());
    let expected = interop.converge();
    // The End-of-RIB may still be on its way: wait until the count of UPDATEs sent settles.
    let mut sent_before = updates(&interop.topologyd, PEER_NAME, "sent");
    let mut settled_since = Instant::now();
    while settled_since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(100));
        let sent = updates(&interop.topologyd, PEER_NAME, "sent");
        if sent != sent_before {
            sent_before = sent;
            settled_since = Instant::now();
        }
    }
    assert!(sent_before >= 1.0, "topologyd counted no UPDATE sent");
    let counters = check(interop.peer.counters(), "the peer's counters");
    check(request(&interop.peer), "requesting a route refresh");
    check(
        wait_until("topologyd to re-send its routes", WAIT, || {
            let sent = updates(&interop.topologyd, PEER_NAME, "sent");
            if sent > sent_before {
                Ok(())
            } else {
                Err(format!("{sent} UPDATEs sent, {sent_before} before"))
            }
        }),
        "route refresh",
    );
    let after = check(
        interop
            .peer
            .wait_for_counters(|after| after.updates > counters.updates, WAIT),
        "the peer never counted the re-sent UPDATEs",
    );
    wait_for_exactly(&interop.peer, &expected);
    assert_eq!(
        after.withdrawals, counters.withdrawals,
        "a route refresh must not withdraw"
    );
    assert_one_session(&interop.topologyd, "the route refresh reset the session");
}

/// RFC 4724: after a SIGKILL of topologyd the peer keeps every route as stale; once topologyd
/// has restarted from its state directory the peer holds the same routes, fresh, and has seen
/// zero withdrawals.
pub fn graceful_restart_after_sigkill<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut interop = start(kind, &Options::default());
    let expected = interop.converge();
    let before = check(interop.peer.counters(), "the peer's counters");
    check(interop.topologyd.kill(), "SIGKILL topologyd");
    wait_for_exactly(&interop.peer, &stale(&expected));
    check(interop.topologyd.spawn(), "restarting topologyd");
    check(
        interop.topologyd.wait_ready(WAIT),
        "the restarted topologyd never converged",
    );
    wait_for_exactly(&interop.peer, &expected);
    let after = check(interop.peer.counters(), "the peer's counters");
    assert_eq!(
        after.withdrawals, before.withdrawals,
        "the peer received a withdrawal across the restart"
    );
    if let (Some(removed_before), Some(removed_after)) = (before.removed, after.removed) {
        assert_eq!(removed_after, removed_before, "the peer removed a route");
    }
}

/// RFC 2385: with the same key on both sides the session establishes and the routes arrive;
/// a second peer of the same topologyd whose key differs never establishes.
pub fn md5_right_key_establishes_wrong_key_never<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut daemon = daemon_config(Transport::V4);
    let right_endpoint = endpoint(Transport::V4);
    let wrong_endpoint = endpoint(Transport::V4);
    let right = start_peer(
        kind,
        peer_spec(&daemon, right_endpoint).md5_password("correct-horse"),
    );
    let wrong = start_peer(
        kind,
        peer_spec(&daemon, wrong_endpoint).md5_password("battery-staple"),
    );
    for (name, endpoint) in [("right-key", right_endpoint), ("wrong-key", wrong_endpoint)] {
        let mut neighbor = neighbor(name, endpoint);
        neighbor.md5_key = Some("correct-horse".to_string());
        daemon.neighbors.push(neighbor);
    }
    // One of the peers never comes up: watch the routes of the other.
    let (topologyd, _pki, _admin) = start_topologyd(daemon);
    wait_for_exactly(&right, &expected_routes(true));
    wait_established_here(&topologyd, "right-key");
    let started = Instant::now();
    while started.elapsed() < NEVER_WINDOW {
        let state = check(wrong.session_state(), "the wrong-key peer's state");
        assert!(
            !state.is_established(),
            "a session with a wrong MD5 key came up"
        );
        assert_ne!(session_state(&topologyd, "wrong-key"), 6.0);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        check(wrong.routes(), "the wrong-key peer's routes").is_empty(),
        "routes crossed a session with a wrong MD5 key"
    );
}

/// RFC 5082: with `ttl_security_hops = 1` on our side, a peer daemon that also runs GTSM (sends
/// TTL 255) establishes; the same daemon without GTSM (sending the default TTL 64) never
/// establishes with our active connection; a sender from a third neighbor address with TTL 254
/// is refused by our listener, and the same sender with TTL 255 is answered.
pub fn gtsm_peer_establishes_ttl_254_refused<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut daemon = daemon_config(Transport::V4);
    let peer_endpoint = endpoint(Transport::V4);
    let plain_endpoint = endpoint(Transport::V4);
    let peer = start_peer(kind, peer_spec(&daemon, peer_endpoint).ttl_security(true));
    let plain = start_peer(kind, peer_spec(&daemon, plain_endpoint));
    for (name, endpoint) in [(PEER_NAME, peer_endpoint), ("plain", plain_endpoint)] {
        let mut neighbor = neighbor(name, endpoint);
        neighbor.ttl_security_hops = Some(1);
        daemon.neighbors.push(neighbor);
    }
    // The probe's address: a passive neighbor of ours, so only the probe opens the session.
    let probe_endpoint = endpoint(Transport::V4);
    let mut probe_neighbor = neighbor("probe", probe_endpoint);
    probe_neighbor.ttl_security_hops = Some(1);
    probe_neighbor.passive = true;
    daemon.neighbors.push(probe_neighbor);
    let probe_spec = PeerSpec::new(LOCAL_ASN, daemon.local, PEER_ASN, probe_endpoint)
        .families(vec![Family::Ipv4Unicast, Family::Ipv6Unicast])
        .router_id(daemon.router_id);
    // The probe's session never comes up by itself: watch the routes of the peer.
    let (topologyd, _pki, _admin) = start_topologyd(daemon);
    wait_for_exactly(&peer, &expected_routes(true));
    let low = check(
        ttl_probe(peer.daemon(), &probe_spec, 254, Duration::from_secs(3)),
        "the TTL 254 probe",
    );
    assert!(
        matches!(low, TtlProbe::Refused(_)),
        "a TTL 254 sender was answered: {low:?}"
    );
    let high = check(
        ttl_probe(peer.daemon(), &probe_spec, 255, Duration::from_secs(5)),
        "the TTL 255 probe",
    );
    assert_eq!(high, TtlProbe::Accepted, "a TTL 255 sender was refused");
    assert!(
        check(peer.session_state(), "the GTSM peer's state").is_established(),
        "the GTSM peer's session went down"
    );
    assert_eq!(session_state(&topologyd, PEER_NAME), 6.0);
    // By now the peer without GTSM has had several connect-retry rounds.
    assert!(
        !check(plain.session_state(), "the plain peer's state").is_established(),
        "a peer sending TTL 64 established under GTSM"
    );
    assert_ne!(session_state(&topologyd, "plain"), 6.0);
    assert!(
        check(plain.routes(), "the plain peer's routes").is_empty(),
        "routes crossed a session that GTSM must refuse"
    );
}

/// RFC 4271 §6.8: both sides connect, so connections collide; exactly one session survives,
/// the routes arrive, and the session then stays up without flapping.
pub fn collision_settles_on_one_session<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut interop = start(
        kind,
        &Options {
            peer_active: true,
            ..Options::default()
        },
    );
    let expected = interop.converge();
    let sent = updates(&interop.topologyd, PEER_NAME, "sent");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert!(
            check(interop.peer.session_state(), "the peer's state").is_established(),
            "the session went down after the collision was resolved\n{}",
            interop.peer.log_tail()
        );
        assert_eq!(
            session_state(&interop.topologyd, PEER_NAME),
            6.0,
            "topologyd's session is not Established in /metrics after the collision was resolved\ntopologyd:\n{}\npeer:\n{}",
            interop.topologyd.log_tail(),
            interop.peer.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for_exactly(&interop.peer, &expected);
    assert_one_session(
        &interop.topologyd,
        "topologyd established more than one session",
    );
    assert!(
        updates(&interop.topologyd, PEER_NAME, "sent") <= sent + 1.0,
        "topologyd re-sent its routes: a second session"
    );
}

/// `topologyd_bgp_prefixes_total` received from one peer, of one kind.
pub fn prefixes_received(topologyd: &Topologyd, peer: &str, kind: &str) -> f64 {
    metric(
        topologyd,
        &format!(
            "topologyd_bgp_prefixes_total{{peer=\"{peer}\",direction=\"received\",kind=\"{kind}\"}}"
        ),
    )
}

/// Waits until topologyd counted `announced` and `withdrawn` prefixes from the peer.
pub fn wait_prefixes_received(topologyd: &Topologyd, peer: &str, announced: f64, withdrawn: f64) {
    check(
        wait_until("the received prefixes counted", WAIT, || {
            let now = (
                prefixes_received(topologyd, peer, "announced"),
                prefixes_received(topologyd, peer, "withdrawn"),
            );
            if now == (announced, withdrawn) {
                Ok(())
            } else {
                Err(format!(
                    "(announced, withdrawn) = {now:?}, expected ({announced}, {withdrawn})"
                ))
            }
        }),
        "topologyd's inbound counters",
    );
}

/// Inbound: what the peer daemon announces (4-octet AS path, MED, communities, large
/// communities, both families) is parsed and counted, a withdrawal is counted, and nothing
/// disturbs the session or what topologyd announces (nothing is imported: RFC 8212 spirit).
pub fn inbound_routes_are_counted<P: BgpPeer>(kind: &PeerKind<P>) {
    let rich = |text: &str| {
        Route::new(prefix(text))
            .as_path(vec![64999, 4_200_000_123])
            .med(20)
            .community(65000, 7)
            .large_community(4_200_000_000, 1, 2)
    };
    let peer_routes = vec![rich("192.0.2.128/25"), rich("2001:db8:1::/48")];
    let mut interop = start(
        kind,
        &Options {
            peer_routes: peer_routes.clone(),
            ..Options::default()
        },
    );
    let expected = interop.converge();
    wait_prefixes_received(&interop.topologyd, PEER_NAME, 2.0, 0.0);
    check(
        interop.peer.withdraw(&[peer_routes[0].prefix]),
        "withdrawing at the peer",
    );
    wait_prefixes_received(&interop.topologyd, PEER_NAME, 2.0, 1.0);
    assert!(
        check(interop.peer.session_state(), "the peer's state").is_established(),
        "the session went down"
    );
    wait_for_exactly(&interop.peer, &expected);
}

/// The peer daemon crashes (SIGKILL) and comes back with the same configuration: topologyd
/// reconnects and the new instance holds exactly the routes again.
pub fn peer_restart_gets_every_route_again<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut interop = start(kind, &Options::default());
    let expected = interop.converge();
    let spec = interop.peer.spec().clone();
    check(interop.peer.kill(), "SIGKILL the peer");
    interop.peer = start_peer(kind, spec);
    wait_for_exactly(&interop.peer, &expected);
    wait_established_here(&interop.topologyd, PEER_NAME);
}

/// 1,024 IPv4 /24s and 1,024 IPv6 /48s (two split prefixes of the cdn service): the packer's
/// UPDATEs (shared attributes, IPv4 NLRI, IPv6 MP_REACH with a two-octet attribute length) are
/// accepted whole, every route arrives with the cdn attributes, and a withdrawing stop
/// (MP_UNREACH too) removes them all.
pub fn many_routes_are_packed_and_all_arrive<P: BgpPeer>(kind: &PeerKind<P>) {
    const MANY: &str = r#"
[[prefix]]
cidr = "20.0.0.0/14"
origin_asn = 64999
owner = "byoip-customer"
advertise = true
announce = { split = 24 }

[[binding]]
cidr = "20.0.0.0/14"
service = "cdn"

[[prefix]]
cidr = "2001:db8::/38"
origin_asn = 64999
owner = "byoip-customer"
advertise = true
announce = { split = 48 }

[[binding]]
cidr = "2001:db8::/38"
service = "cdn"
"#;
    // Several full 4,096-octet UPDATEs per family (about 570 /48s or 800 /24s fit in one).
    const ROUTES_PER_FAMILY: usize = 1024;
    let total = expected_routes(true).len() + 2 * ROUTES_PER_FAMILY;
    let mut interop = start(
        kind,
        &Options {
            more_prefixes: MANY.to_string(),
            withdraw_on_stop: true,
            ..Options::default()
        },
    );
    check(
        interop.topologyd.wait_ready(WAIT),
        "topologyd never converged",
    );
    let routes = check(
        interop
            .peer
            .wait_for(|routes| routes.len() >= total, Duration::from_secs(60)),
        "the peer never held every route",
    );
    assert_eq!(routes.len(), total);
    let cdn = |route: &ReceivedRoute| {
        route.as_path == [LOCAL_ASN, 64999, 64999, 64999]
            && route.med == Some(50)
            && route.communities == [(13335, 20000), (65000, 1)]
            && !route.stale
    };
    let split: Vec<&ReceivedRoute> = routes
        .iter()
        .filter(|route| {
            let text = route.prefix.to_string();
            text.starts_with("20.") || text.starts_with("2001:db8:")
        })
        .collect();
    assert_eq!(split.len(), 2 * ROUTES_PER_FAMILY);
    if let Some(wrong) = split.iter().find(|route| !cdn(route)) {
        panic!("a split route with the wrong attributes: {wrong:?}");
    }
    let exit = check(interop.topologyd.terminate(WAIT), "stopping topologyd");
    assert_eq!(exit, Some(0));
    check(
        interop
            .peer
            .wait_for(|routes| routes.is_empty(), Duration::from_secs(60)),
        "routes stayed after a withdrawing stop",
    );
}

/// RFC 4760 §8 / RFC 5492: the peer offers one family only (IPv4 unicast over `127.a.b.c`,
/// or IPv6 unicast over `::1`); topologyd offers both, negotiates down to that family, sends
/// only its routes, and the session stays up on its first connection.
pub fn single_family_peer_gets_only_its_family<P: BgpPeer>(kind: &PeerKind<P>, family: Family) {
    let transport = match family {
        Family::Ipv4Unicast => Transport::V4,
        Family::Ipv6Unicast => Transport::V6,
    };
    let mut interop = start(
        kind,
        &Options {
            transport,
            peer_families: vec![family],
            ..Options::default()
        },
    );
    check(
        interop.topologyd.wait_ready(WAIT),
        "topologyd never converged",
    );
    let expected: BTreeMap<IpNet, ReceivedRoute> = expected_routes(true)
        .into_iter()
        .filter(|(prefix, _)| Family::of(prefix) == family)
        .collect();
    wait_for_exactly(&interop.peer, &expected);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert!(
            check(interop.peer.session_state(), "the peer's state").is_established(),
            "the session went down\n{}",
            interop.peer.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_one_session(&interop.topologyd, "the session was reset");
}

/// RFC 4271 §4.2 / §10: the peer proposes a 3 s hold time, the smaller one wins, so topologyd
/// must send KEEPALIVEs at least every 3 s (it should every 1 s); the session stays up on its
/// first connection for more than twice the hold time.
pub fn short_hold_time_is_negotiated<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut interop = start(
        kind,
        &Options {
            peer_hold_time: 3,
            ..Options::default()
        },
    );
    let expected = interop.converge();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        assert!(
            check(interop.peer.session_state(), "the peer's state").is_established(),
            "the peer dropped the session: its hold timer expired?\n{}",
            interop.peer.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for_exactly(&interop.peer, &expected);
    assert_one_session(&interop.topologyd, "the session was reset");
}

/// The IPv6 transport: topologyd and the peer both on `::1`; an IPv6 session carrying both
/// families delivers exactly the same routes.
pub fn ipv6_transport_carries_both_families<P: BgpPeer>(kind: &PeerKind<P>) {
    let mut interop = start(
        kind,
        &Options {
            transport: Transport::V6,
            ..Options::default()
        },
    );
    interop.converge();
    assert!(
        check(interop.peer.session_state(), "the peer's state").is_established(),
        "the IPv6 session is not Established"
    );
}
