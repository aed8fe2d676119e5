//! End to end: the real `topologyd` with `[bmp]`, and a real FRR 8.4 `bgpd -M bmp` as its edge
//! router, streaming pre- and post-policy Adj-RIB-In to the daemon's BMP station; a real BIRD 2
//! as a second neighbor of FRR that originates a hijack of our resolver /24 and a
//! more-specific of a BYOIP /24. All on loopback; `/v1/visibility` read with `topoctl`.
//!
//! One scenario, in steps (each waits for the station's view, at most [`WAIT`]):
//! - steady state: FRR holds every IPv4 route of ams01 post-policy, no finding;
//! - BIRD originates 1.1.1.0/24 and 198.51.101.128/25: `exact_hijack` and `subprefix_hijack`
//!   raised (router, peer, path shown; the human table too), cleared when BIRD withdraws;
//! - an import filter on FRR drops 198.51.102.0/24 from us: `not_visible`, cleared when lifted;
//! - FRR restarted (Peer Down, BMP reconnect, Peer Up, re-sync): no finding at any poll;
//! - a garbage stream on the BMP port: that connection is closed and counted; FRR's feed and
//!   topologyd's session with FRR carry on.
//!
//! The findings metric is read too: `{kind,prefix}` series labelled with our own route appear
//! with the hijacks and go when they clear.
//!
//! And GoBGP's BMP export as a second kind of router (its own test), where the station's
//! socket is checked for TCP keepalive and a connection that sends no Initiation is closed
//! after the 30 s bound; and GoBGP again against a `max_routes_per_router` it exceeds: dropped,
//! counted by reason, logged.
//!
//! And an ADD-PATH session into FRR (ExaBGP sending two paths of one prefix): FRR's Peer Up
//! negotiates ADD-PATH but its Route Monitoring carries no path ids, and the station reads it
//! without bogus prefixes.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use topologyd_harness::daemon_fixture::{self, LOCAL_ASN, check, prefix, topology};
use topologyd_harness::peers::{
    BgpPeer as _, BirdPeer, EdgeNeighbor, ExabgpPeer, FrrEdge, FrrEdgeSpec, GobgpPeer, PeerSpec,
    Route, alloc,
};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, NeighborConfig, Topoctl, Topologyd, wait_until,
};

const WAIT: Duration = Duration::from_secs(60);
const EDGE_ASN: u32 = 64500;
const HIJACKER_ASN: u32 = 64666;
/// ams01's IPv4 routes: the resolver /24 and the four /24s of the split BYOIP /22.
const AMS01_IPV4: [&str; 5] = [
    "1.1.1.0/24",
    "198.51.100.0/24",
    "198.51.101.0/24",
    "198.51.102.0/24",
    "198.51.103.0/24",
];

/// topologyd, the FRR edge streaming BMP to it, and a second speaker peering with FRR.
struct Setup<S = BirdPeer> {
    topologyd: Topologyd,
    edge: FrrEdge,
    hijacker: S,
    reader: Topoctl,
    station: SocketAddr,
    /// Holds the certificates `reader` presents.
    _pki: ControlPki,
}

/// The edge's second speaker is a BIRD that originates what the test makes it announce.
fn start() -> Setup {
    start_with(|listen, edge_listen| {
        check(
            BirdPeer::start(PeerSpec::new(HIJACKER_ASN, listen, EDGE_ASN, edge_listen)),
            "starting the hijacking BIRD",
        )
    })
}

/// `speaker(listen, edge_listen)` starts the edge's second speaker (AS [`HIJACKER_ASN`]) on
/// `listen`, peering with FRR at `edge_listen`.
fn start_with<S>(speaker: impl FnOnce(SocketAddr, SocketAddr) -> S) -> Setup<S> {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[("noc", "reader")],
    ));
    let station = SocketAddr::new(daemon.local.ip(), alloc::free_port(daemon.local.ip()));
    daemon.extra =
        format!("[bmp]\nlisten = [\"{station}\"]\nallow = [\"127.0.0.0/8\"]\nsettle_seconds = 2\n");
    let edge_address = alloc::loopback_v4();
    let edge_listen = SocketAddr::new(
        IpAddr::V4(edge_address),
        alloc::free_port(IpAddr::V4(edge_address)),
    );
    let hijacker_address = alloc::loopback_v4();
    let hijacker_listen = SocketAddr::new(
        IpAddr::V4(hijacker_address),
        alloc::free_port(IpAddr::V4(hijacker_address)),
    );
    let mut neighbor = NeighborConfig::new("edge-frr", edge_listen, EDGE_ASN);
    neighbor.families = vec!["ipv4"];
    daemon.neighbors.push(neighbor);
    let topologyd = check(
        Topologyd::start(daemon.clone(), &topology()),
        "starting topologyd",
    );
    let edge = check(
        FrrEdge::start(FrrEdgeSpec {
            hostname: "edge-frr".into(),
            asn: EDGE_ASN,
            router_id: edge_address,
            listen: edge_listen,
            neighbors: vec![
                EdgeNeighbor {
                    address: daemon.local,
                    asn: LOCAL_ASN,
                },
                EdgeNeighbor {
                    address: hijacker_listen,
                    asn: HIJACKER_ASN,
                },
            ],
            station,
        }),
        "starting FRR with BMP",
    );
    let hijacker = speaker(hijacker_listen, edge_listen);
    let control = daemon.control.as_ref().map(|control| control.listen);
    let reader = Topoctl::new(
        control.unwrap_or_else(|| panic!("no control listener")),
        &pki.ca,
        check(pki.client("noc"), "a reader certificate"),
    );
    Setup {
        topologyd,
        edge,
        hijacker,
        reader,
        station,
        _pki: pki,
    }
}

impl<S> Setup<S> {
    fn view(&self) -> Result<Value, String> {
        let output = self
            .reader
            .run("visibility", &[] as &[&str])
            .map_err(|error| error.to_string())?;
        if output.code != Some(0) {
            return Err(output.to_string());
        }
        output.json()
    }

    /// Waits until `accept` holds for the view; panics with the view, FRR's and topologyd's
    /// logs otherwise.
    fn wait_view(&mut self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let result = wait_until(what, WAIT, || {
            let view = self.view()?;
            if accept(&view) {
                Ok(view)
            } else {
                Err(view.to_string())
            }
        });
        match result {
            Ok(view) => view,
            Err(last) => panic!(
                "{last}\n--- FRR\n{}\n--- topologyd\n{}",
                self.edge.log_tail(),
                self.topologyd.log_tail()
            ),
        }
    }
}

fn findings(view: &Value) -> Vec<(String, String)> {
    view["findings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .map(|finding| {
                    (
                        finding["kind"].as_str().unwrap_or_default().to_string(),
                        finding["prefix"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the edge router is synchronised and holds every IPv4 route of ams01 as we send it.
fn holds_all(view: &Value) -> bool {
    view["held"].as_array().is_some_and(|routers| {
        routers.len() == 1
            && routers[0]["synchronised"] == Value::Bool(true)
            && routers[0]["missing"].as_array().is_some_and(Vec::is_empty)
            && AMS01_IPV4.iter().all(|route| {
                routers[0]["held"]
                    .as_array()
                    .is_some_and(|held| held.iter().any(|entry| entry == route))
            })
    })
}

#[test]
fn bmp_station_finds_hijacks_filtered_routes_and_survives_restarts_and_garbage() {
    let mut setup = start();
    let view = setup.wait_view("FRR synchronised and holding all of ams01", |view| {
        view["enabled"] == Value::Bool(true) && holds_all(view)
    });
    assert_eq!(view["routers"][0]["name"], "edge-frr", "{view}");
    assert!(findings(&view).is_empty(), "{view}");

    // Hijacks: an exact one of the resolver /24, a more-specific inside the BYOIP /22.
    check(
        setup.hijacker.announce(&[
            Route::new(prefix("1.1.1.0/24")),
            Route::new(prefix("198.51.101.128/25")),
        ]),
        "announcing the hijacks",
    );
    let view = setup.wait_view("both hijacks found", |view| {
        let found = findings(view);
        found.contains(&("exact_hijack".into(), "1.1.1.0/24".into()))
            && found.contains(&("subprefix_hijack".into(), "198.51.101.128/25".into()))
    });
    let hijack = view["findings"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|finding| finding["kind"] == "exact_hijack")
        })
        .cloned()
        .unwrap_or_default();
    // Findings name the router by its sysName and the address it connects from.
    assert!(
        hijack["router"]
            .as_str()
            .is_some_and(|router| router.starts_with("edge-frr (")),
        "{hijack}"
    );
    assert_eq!(hijack["peer_asn"], HIJACKER_ASN, "{hijack}");
    assert_eq!(hijack["origin_asn"], HIJACKER_ASN, "{hijack}");
    assert_eq!(hijack["expected_origin_asn"], LOCAL_ASN, "{hijack}");
    // FRR 8.4 reports the path with its own AS in front.
    assert_eq!(
        hijack["as_path"],
        serde_json::json!([EDGE_ASN, HIJACKER_ASN]),
        "{hijack}"
    );
    let human = check(
        setup.reader.run_human("visibility", &[] as &[&str]),
        "topoctl visibility",
    );
    assert!(human.stdout.contains("exact_hijack"), "{human}");
    assert!(human.stdout.contains("198.51.101.128/25"), "{human}");
    assert!(
        setup.topologyd.log().contains("visibility finding raised"),
        "the raise is logged"
    );
    // The findings metric is labelled by kind and the own route concerned: the hijacked /25
    // counts under the announced /24 that covers it.
    const EXACT_SERIES: &str =
        "topologyd_visibility_findings{kind=\"exact_hijack\",prefix=\"1.1.1.0/24\"}";
    const SUBPREFIX_SERIES: &str =
        "topologyd_visibility_findings{kind=\"subprefix_hijack\",prefix=\"198.51.101.0/24\"}";
    for series in [EXACT_SERIES, SUBPREFIX_SERIES] {
        let metric = check(
            setup.topologyd.metric(series),
            "reading the findings metric",
        );
        assert_eq!(metric, Some(1.0), "{series}");
    }

    check(
        setup
            .hijacker
            .withdraw(&[prefix("1.1.1.0/24"), prefix("198.51.101.128/25")]),
        "withdrawing the hijacks",
    );
    setup.wait_view("hijacks cleared", |view| findings(view).is_empty());
    assert!(setup.topologyd.log().contains("visibility finding cleared"));
    for series in [EXACT_SERIES, SUBPREFIX_SERIES] {
        let metric = check(
            setup.topologyd.metric(series),
            "reading the findings metric",
        );
        assert_eq!(metric, None, "{series} is gone once cleared");
    }

    // An import filter on the edge router drops one of our routes.
    check(
        setup.edge.block_imports(&[prefix("198.51.102.0/24")]),
        "filtering 198.51.102.0/24 on FRR",
    );
    let view = setup.wait_view("the filtered route is not visible", |view| {
        findings(view) == vec![("not_visible".to_string(), "198.51.102.0/24".to_string())]
    });
    assert_eq!(view["findings"][0]["peer_asn"], LOCAL_ASN, "{view}");
    check(setup.edge.block_imports(&[]), "lifting the filter");
    setup.wait_view("visible again", |view| {
        findings(view).is_empty() && holds_all(view)
    });

    // A router restart: Peer Down, a new BMP session, Peer Up, re-sync. No finding at any poll.
    check(setup.edge.restart(), "restarting FRR");
    let deadline = Instant::now() + WAIT;
    let mut resynced_at = None;
    loop {
        let view = setup.view().unwrap_or_default();
        assert!(
            findings(&view).is_empty(),
            "a false finding during re-sync: {view}"
        );
        if holds_all(&view) && resynced_at.is_none() {
            resynced_at = Some(Instant::now());
        }
        // Keep watching past the settle time after the re-sync.
        if resynced_at.is_some_and(|at| at.elapsed() > Duration::from_secs(4)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FRR never re-synced: {view}\n{}",
            setup.edge.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Garbage on the BMP port: that connection is closed; nothing else is affected.
    let mut garbage = check(
        TcpStream::connect(setup.station),
        "connecting to the station",
    );
    check(
        garbage.set_read_timeout(Some(Duration::from_secs(10))),
        "a read timeout",
    );
    check(
        garbage.write_all(b"GET / HTTP/1.1\r\nHost: station\r\n\r\n"),
        "sending garbage",
    );
    let mut rest = Vec::new();
    let closed = garbage.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the station closes the connection: {closed:?}"
    );
    let errors = check(
        setup.topologyd.metric("topologyd_bmp_stream_errors_total"),
        "reading the stream error counter",
    );
    assert_eq!(errors, Some(1.0));
    let view = setup.wait_view("FRR's feed carries on", holds_all);
    assert_eq!(view["routers"].as_array().map(Vec::len), Some(1), "{view}");
    assert!(setup.edge.established(setup.topologyd.config.local.ip()));
    daemon_fixture::check(setup.topologyd.check_running(), "topologyd still runs");
}

/// topologyd with `[bmp]` (plus `bmp_extra`) and GoBGP 3 peering with it and exporting BMP.
struct GobgpSetup {
    topologyd: Topologyd,
    gobgp: GobgpPeer,
    reader: Topoctl,
    station: SocketAddr,
    /// Holds the certificates `reader` presents.
    _pki: ControlPki,
}

fn start_gobgp(bmp_extra: &str) -> GobgpSetup {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[("noc", "reader")],
    ));
    let station = SocketAddr::new(daemon.local.ip(), alloc::free_port(daemon.local.ip()));
    daemon.extra = format!("[bmp]\nlisten = [\"{station}\"]\nsettle_seconds = 2\n{bmp_extra}");
    let address = alloc::loopback_v4();
    let endpoint = SocketAddr::new(IpAddr::V4(address), alloc::free_port(IpAddr::V4(address)));
    let mut neighbor = NeighborConfig::new("edge-gobgp", endpoint, EDGE_ASN);
    neighbor.families = vec!["ipv4"];
    // GoBGP treats a loopback next hop as a withdrawal.
    neighbor.next_hop_ipv4 = Some(std::net::Ipv4Addr::new(192, 0, 2, 1));
    daemon.neighbors.push(neighbor);
    let topologyd = check(
        Topologyd::start(daemon.clone(), &topology()),
        "starting topologyd",
    );
    // After the station listens: GoBGP retries a refused BMP connection only after a while.
    let gobgp = check(
        GobgpPeer::start_with_bmp(
            PeerSpec::new(EDGE_ASN, endpoint, LOCAL_ASN, daemon.local).passive(true),
            Some(station),
        ),
        "starting GoBGP with BMP export",
    );
    let reader = Topoctl::new(
        daemon
            .control
            .as_ref()
            .map(|control| control.listen)
            .unwrap_or_else(|| panic!("no control listener")),
        &pki.ca,
        check(pki.client("noc"), "a reader certificate"),
    );
    GobgpSetup {
        topologyd,
        gobgp,
        reader,
        station,
        _pki: pki,
    }
}

/// GoBGP 3's BMP export as a second kind of router: it peers with topologyd, streams its
/// Adj-RIB-In to the station, and the station judges it like FRR: every IPv4 route of ams01
/// held as we send it, no finding; the station's socket has TCP keepalive; a connection that
/// sends no Initiation is closed after 30 s; GoBGP stopped, the router and its state are gone.
/// The nice value of topologyd's `bmp-station` thread (`/proc/PID/task/TID/stat`, field 19).
/// The thread is started with the station's listener and lowers its own priority first; on a
/// loaded machine both are waited for (up to 30 s), and the last value seen is returned.
fn station_nice(topologyd: &Topologyd) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = None;
    while Instant::now() < deadline {
        seen = station_thread_nice(topologyd);
        if seen == Some(STATION_NICE) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen.unwrap_or_else(|| panic!("topologyd has no bmp-station thread"))
}

/// The nice value the station's thread runs at.
const STATION_NICE: i64 = 19;

fn station_thread_nice(topologyd: &Topologyd) -> Option<i64> {
    let pid = topologyd
        .pid()
        .unwrap_or_else(|| panic!("topologyd has no pid"));
    let tasks = check(
        std::fs::read_dir(format!("/proc/{pid}/task")),
        "listing topologyd's threads",
    );
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "bmp-station" {
            continue;
        }
        let stat = check(
            std::fs::read_to_string(task.path().join("stat")),
            "the station thread's stat",
        );
        // Fields after the parenthesised name: state is field 3, nice field 19.
        let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        return Some(
            fields
                .get(16)
                .and_then(|nice| nice.parse().ok())
                .unwrap_or_else(|| panic!("no nice value in {stat}")),
        );
    }
    None
}

#[test]
fn gobgp_bmp_export_is_read_like_frr() {
    let GobgpSetup {
        topologyd,
        mut gobgp,
        reader,
        station,
        _pki,
    } = start_gobgp("");
    assert_eq!(
        station_nice(&topologyd),
        STATION_NICE,
        "the station's thread runs at the lowest priority, below the speaker's"
    );
    let view = |reader: &Topoctl| -> Result<Value, String> {
        reader
            .run("visibility", &[] as &[&str])
            .map_err(|error| error.to_string())?
            .json()
    };
    let result = wait_until("GoBGP synchronised and holding all of ams01", WAIT, || {
        let view = view(&reader)?;
        if holds_all(&view) && findings(&view).is_empty() {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    });
    if let Err(last) = result {
        panic!(
            "{last}\n--- GoBGP\n{}\n--- topologyd\n{}",
            gobgp.log_tail(),
            topologyd.log_tail()
        );
    }
    // The station's side of GoBGP's connection has TCP keepalive (default: after 60 s idle).
    let sockets = check(
        std::process::Command::new("ss")
            .args(["-tnoH", "state", "established"])
            .arg(format!("( sport = :{} )", station.port()))
            .output(),
        "running ss",
    );
    let sockets = String::from_utf8_lossy(&sockets.stdout).to_string();
    assert!(
        sockets.lines().count() == 1 && sockets.contains("timer:(keepalive,"),
        "{sockets}"
    );
    // A connection that never sends an Initiation is closed after the bound (30 s) and
    // counted; GoBGP's feed carries on.
    let started = Instant::now();
    let mut silent = check(TcpStream::connect(station), "connecting without a word");
    check(
        silent.set_read_timeout(Some(Duration::from_secs(60))),
        "a read timeout",
    );
    let mut rest = Vec::new();
    let closed = silent.read_to_end(&mut rest);
    let elapsed = started.elapsed();
    assert!(
        closed.is_ok(),
        "the station closes the silent connection: {closed:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(29) && elapsed < Duration::from_secs(45),
        "closed after {elapsed:?}"
    );
    let errors = check(
        topologyd.metric("topologyd_bmp_stream_errors_total"),
        "reading the stream error counter",
    );
    assert_eq!(errors, Some(1.0));
    let result = wait_until(
        "the silent connection gone, GoBGP's feed intact",
        WAIT,
        || {
            let view = view(&reader)?;
            if holds_all(&view) {
                Ok(())
            } else {
                Err(view.to_string())
            }
        },
    );
    if let Err(last) = result {
        panic!("{last}\n--- topologyd\n{}", topologyd.log_tail());
    }
    check(gobgp.stop(), "stopping GoBGP");
    let result = wait_until("the router gone", WAIT, || {
        let view = view(&reader)?;
        if view["routers"].as_array().is_some_and(Vec::is_empty) && findings(&view).is_empty() {
            Ok(())
        } else {
            Err(view.to_string())
        }
    });
    if let Err(last) = result {
        panic!("{last}\n--- topologyd\n{}", topologyd.log_tail());
    }
}

/// A router over `max_routes_per_router` is dropped: its state is gone, it is never
/// synchronised (so no gate passes on it), the drop is counted by reason and logged with the
/// router's address and the bound.
#[test]
fn a_router_over_its_route_bound_is_dropped_counted_and_logged() {
    let setup = start_gobgp("max_routes_per_router = 3\n");
    let result = wait_until("GoBGP dropped for its routes", WAIT, || {
        let dropped = setup
            .topologyd
            .metric("topologyd_bmp_routers_dropped_total{reason=\"max_routes\"}")
            .map_err(|error| error.to_string())?;
        if dropped.is_some_and(|dropped| dropped >= 1.0) {
            Ok(())
        } else {
            Err(format!("dropped: {dropped:?}"))
        }
    });
    if let Err(last) = result {
        panic!(
            "{last}\n--- GoBGP\n{}\n--- topologyd\n{}",
            setup.gobgp.log_tail(),
            setup.topologyd.log_tail()
        );
    }
    let peers = check(
        setup
            .topologyd
            .metric("topologyd_bmp_routers_dropped_total{reason=\"max_peers\"}"),
        "reading the peer-bound drops",
    );
    assert_eq!(peers, Some(0.0));
    let log = setup.topologyd.log();
    let line = log
        .lines()
        .find(|line| line.contains("over its per-router bound"))
        .unwrap_or_else(|| panic!("no drop logged:\n{log}"));
    assert!(
        line.contains("127.0.0.1")
            && line.contains("max_routes")
            && (line.contains("limit=3") || line.contains("\"limit\":3")),
        "{line}"
    );
    let view: Value = check(
        setup.reader.run("visibility", &[] as &[&str]),
        "topoctl visibility",
    )
    .json()
    .unwrap_or_default();
    assert_eq!(view["routers"][0]["routes"], 0, "{view}");
    assert!(!holds_all(&view), "{view}");
    assert_eq!(view["held"][0]["synchronised"], false, "{view}");
}

/// An ADD-PATH session into FRR 8.4: ExaBGP offers Send, FRR (which always offers Receive)
/// takes two paths of 1.1.1.0/24 (both a hijack of our resolver /24, by different paths) and one
/// of 192.0.2.0/24. FRR's Peer Up carries both OPENs with ADD-PATH, its Route Monitoring carries
/// no path ids (and one path per prefix): the station raises the hijack on ExaBGP's session,
/// holds exactly the routes FRR monitors (ours and one per ExaBGP prefix, pre- and post-policy),
/// and no prefix that nobody sent appears.
#[test]
fn add_path_session_into_frr_is_read_without_bogus_prefixes() {
    let setup = start_with(|listen, edge_listen| {
        check(
            ExabgpPeer::start(
                PeerSpec::new(HIJACKER_ASN, listen, EDGE_ASN, edge_listen).add_path_send(true),
            ),
            "starting ExaBGP with ADD-PATH send",
        )
    });
    let speaker_address = setup.hijacker.spec().local.ip();
    let route = |text: &str, as_path: Vec<u32>| {
        let mut route = Route::new(prefix(text));
        route.next_hop = speaker_address;
        route.as_path = as_path;
        route
    };
    check(
        setup.hijacker.announce_paths(&[
            (route("1.1.1.0/24", vec![]), 1),
            (route("1.1.1.0/24", vec![64_777]), 2),
            (route("192.0.2.0/24", vec![]), 5),
        ]),
        "announcing two paths",
    );
    // Ours (5 IPv4 routes) and ExaBGP's two prefixes, each pre- and post-policy.
    let expected_routes = 2 * (AMS01_IPV4.len() + 2);
    let result = wait_until("the hijack on the ADD-PATH session", WAIT, || {
        let view = setup.view()?;
        let routes = view["routers"][0]["routes"].as_u64();
        if holds_all(&view)
            && findings(&view) == vec![("exact_hijack".to_string(), "1.1.1.0/24".to_string())]
            && routes == Some(expected_routes as u64)
        {
            Ok(view)
        } else {
            Err(view.to_string())
        }
    });
    let view = match result {
        Ok(view) => view,
        Err(last) => panic!(
            "{last}\n--- FRR\n{}\n--- ExaBGP\n{}\n--- topologyd\n{}",
            setup.edge.log_tail(),
            setup.hijacker.log_tail(),
            setup.topologyd.log_tail()
        ),
    };
    let finding = &view["findings"][0];
    assert_eq!(finding["peer_asn"], Value::from(HIJACKER_ASN), "{view}");
    let open = check(
        setup.edge.vtysh(&["show bgp neighbors json"]),
        "FRR's neighbors",
    );
    assert!(
        open.contains("addPath"),
        "ADD-PATH negotiated with ExaBGP: {open}"
    );
}
