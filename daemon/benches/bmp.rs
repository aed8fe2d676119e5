//! The BMP station's benchmark, printed as JSON lines; one command:
//! `cargo bench -p topologyd --bench bmp` (`BMP_BENCH_ROUTES`, default 1,000,000;
//! `BMP_BENCH_ANNOUNCE_ROUTES`, default the same; `BMP_BENCH_RUNS`, default 1).
//!
//! - `ingest`: a feed of ROUTES IPv4 /24s in post-policy Adj-RIB-In (16 attribute sets, 800
//!   prefixes per Route Monitoring message, as a router packs a full table) read, decoded and
//!   held by the visibility core, in this process. The baseline, measured in the same run, is
//!   reading and decoding the same bytes without keeping anything. Memory: the core's own
//!   estimate of its tables per route held, and this process's resident memory growth per route.
//! - `ingest_add_path`: the same table from a peer whose session negotiated ADD-PATH, each
//!   prefix with a non-zero path id (the keyed-by-path-id map), against `ingest` in the same
//!   run: time and estimated bytes per route as ratios.
//! - `announce`: a real topologyd (the binaries the tests build, or `TOPOLOGYD_BIN_DIR`)
//!   announcing ROUTES /24s to one BIRD, timed from BIRD's Established until it holds every
//!   route; once without a BMP feed (the baseline) and once while a synthetic router streams the
//!   same full table into the daemon's station again and again (announce all, withdraw all).

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ipnet::Ipv4Net;
use topologyd::bmp::codec::{Decoder, PeerKey, RibKind, RouteKey, SeenAttributes, split_message};
use topologyd::bmp::station::Station;
use topologyd::bmp::writer;
use topologyd_harness::peers::{BgpPeer as _, BirdPeer, PeerSpec, alloc};
use topologyd_harness::synth::flat_topology;
use topologyd_harness::topologyd::{DaemonConfig, NeighborConfig, Topologyd};

const LOCAL_ASN: u32 = 13_335;
const BIRD_ASN: u32 = 64_512;
const WAIT: Duration = Duration::from_secs(900);

fn peer() -> PeerKey {
    PeerKey {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)),
        asn: 64_666,
        bgp_id: Ipv4Addr::new(192, 0, 2, 9),
        distinguisher: 0,
    }
}

fn prefixes(routes: usize) -> Vec<Ipv4Net> {
    (0..routes)
        .map(|index| {
            let base = (20u32 << 24) + ((index as u32) << 8);
            Ipv4Net::new(Ipv4Addr::from(base), 24).unwrap_or_default()
        })
        .collect()
}

/// Initiation, Peer Up, the table in 16 attribute sets, End-of-RIB.
fn feed(routes: usize, withdraw_after: bool) -> Vec<u8> {
    let all = prefixes(routes);
    let mut out = BytesMut::new();
    out.extend_from_slice(&writer::initiation("bench-router"));
    out.extend_from_slice(&writer::peer_up(&peer()));
    for (set, chunk) in all.chunks(all.len().div_ceil(16).max(1)).enumerate() {
        let set = set as u32;
        let attributes = SeenAttributes {
            as_path: vec![64_666, 3_356 + set, 65_000 + set],
            origin_asn: Some(65_000 + set),
            med: Some(set),
            communities: vec![(64_666 << 16) | set],
            large_communities: Vec::new(),
        };
        writer::announce(&mut out, &peer(), RibKind::AdjRibInPost, chunk, &attributes);
    }
    writer::end_of_rib(&mut out, &peer(), RibKind::AdjRibInPost);
    if withdraw_after {
        writer::withdraw(&mut out, &peer(), RibKind::AdjRibInPost, &all);
    }
    out.to_vec()
}

/// The same table on an ADD-PATH session (Peer Up negotiating both ways), path id 1 on
/// every route, in the same 16 attribute sets and 800 routes a message.
fn add_path_feed(routes: usize) -> Vec<u8> {
    let all = prefixes(routes);
    let mut out = BytesMut::new();
    out.extend_from_slice(&writer::initiation("bench-router"));
    let both = [((1u16, 1u8), writer::ADD_PATH_BOTH)];
    out.extend_from_slice(&writer::peer_up_with_add_path(
        &peer(),
        RibKind::AdjRibInPre,
        &both,
        &both,
    ));
    for (set, chunk) in all.chunks(all.len().div_ceil(16).max(1)).enumerate() {
        let set = set as u32;
        let attributes = SeenAttributes {
            as_path: vec![64_666, 3_356 + set, 65_000 + set],
            origin_asn: Some(65_000 + set),
            med: Some(set),
            communities: vec![(64_666 << 16) | set],
            large_communities: Vec::new(),
        };
        for message in chunk.chunks(writer::MAX_PREFIXES_PER_UPDATE) {
            let routes: Vec<RouteKey> = message
                .iter()
                .map(|prefix| RouteKey {
                    prefix: (*prefix).into(),
                    path_id: 1,
                })
                .collect();
            writer::routes(
                &mut out,
                &peer(),
                RibKind::AdjRibInPost,
                &[],
                &routes,
                Some(&attributes),
                true,
            );
        }
    }
    writer::end_of_rib(&mut out, &peer(), RibKind::AdjRibInPost);
    out.to_vec()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

fn read_all(bytes: &[u8], mut each: impl FnMut(topologyd::bmp::codec::BmpEvent)) {
    let mut buffer = BytesMut::from(bytes);
    let mut decoder = Decoder::new();
    while let Ok(Some(message)) = split_message(&mut buffer) {
        if let Ok(event) = decoder.decode(message) {
            each(event);
        }
    }
}

/// What one ingest run measured.
struct Ingest {
    held: usize,
    messages: u64,
    feed_bytes: usize,
    ingest_s: f64,
    decode_only_s: f64,
    estimated_bytes_per_route: f64,
    rss_growth_bytes_per_route: f64,
}

fn ingest(bytes: &[u8]) -> Ingest {
    let started = Instant::now();
    let mut messages = 0u64;
    read_all(bytes, |_| messages += 1);
    let decode_only_s = started.elapsed().as_secs_f64();

    let rss_before = rss_kib();
    let started = Instant::now();
    let mut station = Station::new(0);
    station.connect(1, IpAddr::V4(Ipv4Addr::LOCALHOST));
    read_all(bytes, |event| station.handle(1, event));
    station.evaluate(1);
    let ingest_s = started.elapsed().as_secs_f64();
    let held = station.route_count();
    let rss_growth = rss_kib().saturating_sub(rss_before) * 1024;
    Ingest {
        held,
        messages,
        feed_bytes: bytes.len(),
        ingest_s,
        decode_only_s,
        estimated_bytes_per_route: station.approximate_bytes() as f64 / held.max(1) as f64,
        rss_growth_bytes_per_route: rss_growth as f64 / held.max(1) as f64,
    }
}

fn bench_ingest(routes: usize) {
    let plain = ingest(&feed(routes, false));
    println!(
        "{{\"bench\":\"bmp_ingest\",\"routes\":{routes},\"held\":{},\"messages\":{},\"feed_bytes\":{},\"ingest_s\":{:.3},\"decode_only_baseline_s\":{:.3},\"ingest_over_decode_only\":{:.2},\"estimated_bytes_per_route\":{:.1},\"rss_growth_bytes_per_route\":{:.1}}}",
        plain.held,
        plain.messages,
        plain.feed_bytes,
        plain.ingest_s,
        plain.decode_only_s,
        plain.ingest_s / plain.decode_only_s.max(1e-9),
        plain.estimated_bytes_per_route,
        plain.rss_growth_bytes_per_route,
    );
    let add_path = ingest(&add_path_feed(routes));
    println!(
        "{{\"bench\":\"bmp_ingest_add_path\",\"routes\":{routes},\"held\":{},\"ingest_s\":{:.3},\"ingest_over_plain_ingest\":{:.2},\"estimated_bytes_per_route\":{:.1},\"estimated_bytes_over_plain\":{:.2},\"rss_growth_bytes_per_route\":{:.1}}}",
        add_path.held,
        add_path.ingest_s,
        add_path.ingest_s / plain.ingest_s.max(1e-9),
        add_path.estimated_bytes_per_route,
        add_path.estimated_bytes_per_route / plain.estimated_bytes_per_route.max(1e-9),
        add_path.rss_growth_bytes_per_route,
    );
}

fn route_count(bird: &BirdPeer) -> u64 {
    bird.birdc(&["show", "route", "count"])
        .ok()
        .and_then(|output| {
            output
                .lines()
                .find(|line| line.contains("of") && line.contains("routes"))
                .and_then(|line| line.split_whitespace().next().map(str::to_string))
        })
        .and_then(|count| count.parse().ok())
        .unwrap_or(0)
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A synthetic router streaming `feed` (announce all, withdraw all) into the station until
/// `stop`, 64 KiB at a time; counts the octets the station took.
fn stream_feed(
    station: SocketAddr,
    feed: Arc<Vec<u8>>,
    stop: Arc<AtomicBool>,
    streamed: Arc<AtomicU64>,
) {
    let Ok(mut stream) = TcpStream::connect(station) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        for chunk in feed.chunks(64 * 1024) {
            if stop.load(Ordering::Relaxed) || stream.write_all(chunk).is_err() {
                return;
            }
            streamed.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
    }
}

/// One announce: seconds from BIRD's Established until it holds every route, and the feed
/// octets the station took meanwhile.
fn announce_once(routes: usize, with_feed: bool) -> Result<(f64, u64), String> {
    let files = flat_topology(routes);
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(name, text)| (name.as_str(), text.as_str()))
        .collect();
    let mut daemon = DaemonConfig::new("loc0000", LOCAL_ASN);
    let station = SocketAddr::new(daemon.local.ip(), alloc::free_port(daemon.local.ip()));
    daemon.extra = format!("[bmp]\nlisten = [\"{station}\"]\nqueue_messages = 65536\n");
    let address = alloc::loopback_v4();
    let endpoint = SocketAddr::new(address.into(), alloc::free_port(address.into()));
    let bird = BirdPeer::start(
        PeerSpec::new(BIRD_ASN, endpoint, LOCAL_ASN, daemon.local)
            .passive(true)
            .hold_time(240),
    )
    .map_err(|error| error.to_string())?;
    let mut neighbor = NeighborConfig::new("edge0", endpoint, BIRD_ASN);
    neighbor.families = vec!["ipv4"];
    neighbor.hold_time_seconds = 240;
    daemon.neighbors.push(neighbor);
    let topologyd = Topologyd::start(daemon, &borrowed).map_err(|error| error.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicU64::new(0));
    let streamer = with_feed.then(|| {
        wait_until("the BMP station", || TcpStream::connect(station).is_ok()).ok();
        let feed = Arc::new(feed(routes, true));
        let (stop, streamed) = (Arc::clone(&stop), Arc::clone(&streamed));
        std::thread::spawn(move || stream_feed(station, feed, stop, streamed))
    });
    wait_until("BIRD's session", || {
        bird.session_state()
            .is_ok_and(|state| state.is_established())
    })?;
    let started = Instant::now();
    let streamed_before = streamed.load(Ordering::Relaxed);
    wait_until("BIRD holding every route", || {
        route_count(&bird) >= routes as u64
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let streamed_meanwhile = streamed.load(Ordering::Relaxed) - streamed_before;
    stop.store(true, Ordering::Relaxed);
    drop(topologyd);
    if let Some(streamer) = streamer {
        let _ = streamer.join();
    }
    Ok((seconds, streamed_meanwhile))
}

fn bench_announce(routes: usize, runs: usize) -> Result<(), String> {
    for run in 0..runs {
        let (without, _) = announce_once(routes, false)?;
        let (with, streamed) = announce_once(routes, true)?;
        println!(
            "{{\"bench\":\"bmp_announce\",\"run\":{run},\"routes\":{routes},\"announce_without_feed_s\":{without:.3},\"announce_with_feed_s\":{with:.3},\"with_over_without\":{:.3},\"feed_mb_taken_meanwhile\":{:.1}}}",
            with / without.max(1e-9),
            streamed as f64 / 1e6
        );
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    let routes = setting("BMP_BENCH_ROUTES", 1_000_000);
    let runs = setting("BMP_BENCH_RUNS", 1);
    let announce_routes = setting("BMP_BENCH_ANNOUNCE_ROUTES", routes);
    if std::env::args().any(|argument| argument == "--test" || argument == "--list") {
        // `cargo test --benches` runs the bench binary with --test: a small smoke run.
        bench_ingest(10_000);
        return Ok(());
    }
    bench_ingest(routes);
    bench_announce(announce_routes, runs)
}
