//! RPKI figures (`cargo bench -p topologyd-harness --bench rpki`) for a global-table-sized VRP
//! set (600,000 VRPs, three quarters IPv4): the trie's build time and memory per VRP, the
//! compact index's, RFC 6811 validation of 1,000,000 routes (trie and index, random and address
//! order), VRP updates of 1 to 1,000 VRPs reaching the verdict of every route they affect, and
//! loading the set over RTR — from a real StayRTR and from a hand-written in-process cache that
//! writes pre-encoded PDUs, split into the cache's sending, the `rpki` crate's decoding and our
//! set building.
//!
//! The machine is shared and noisy: every time is also printed as a ratio to a baseline
//! measured in the same run (1,000,000 random reads over 64 MiB, at the start and at the end).
//! The targets are in README (Benchmarks, RPKI).

#![allow(clippy::unwrap_used)]

use std::io::{BufReader, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rpki::rtr::client::{Client, PayloadError, PayloadTarget, PayloadUpdate};
use rpki::rtr::payload::{Action, Payload, Timing};
use topologyd_harness::peers::{Roa, StayRtr, StayRtrOptions};
use topologyd_rpki::{RouteIndex, Vrp, VrpSet};

const VRPS: usize = 600_000;
const ROUTES: usize = 1_000_000;
const SESSION: u16 = 6811;

fn random_vrp(random: &mut StdRng) -> Vrp {
    if random.random_bool(0.75) {
        let length = random.random_range(12..=24);
        let network = Ipv4Net::new(Ipv4Addr::from(random.random::<u32>()), length)
            .unwrap()
            .trunc();
        Vrp {
            prefix: IpNet::V4(network),
            max_length: random.random_range(length..=24),
            asn: random.random_range(1..400_000),
        }
    } else {
        let length = random.random_range(24..=48);
        let address = (0x2000u128 << 112) | (u128::from(random.random::<u64>()) << 64);
        let network = Ipv6Net::new(Ipv6Addr::from(address), length)
            .unwrap()
            .trunc();
        Vrp {
            prefix: IpNet::V6(network),
            max_length: random.random_range(length..=48),
            asn: random.random_range(1..400_000),
        }
    }
}

/// Routes: half inside a VRP (a more-specific of it, origin right or wrong), half random.
fn routes_for(vrps: &[Vrp], random: &mut StdRng) -> Vec<(IpNet, u32)> {
    (0..ROUTES)
        .map(|index| {
            let vrp = vrps[random.random_range(0..vrps.len())];
            if index % 2 == 0 {
                let length = random.random_range(
                    vrp.prefix.prefix_len()..=vrp.prefix.max_prefix_len().min(vrp.max_length + 1),
                );
                let prefix = IpNet::new(vrp.prefix.addr(), length).unwrap().trunc();
                let origin = if random.random_bool(0.9) {
                    vrp.asn
                } else {
                    4755
                };
                (prefix, origin)
            } else {
                (random_vrp(random).prefix, 64500)
            }
        })
        .collect()
}

/// Resident set size of this process (kB), from /proc.
fn resident_kilobytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// The baseline: 1,000,000 random reads over 64 MiB (median of five), a measure of how fast
/// this machine walks memory right now.
fn baseline() -> Duration {
    let table: Vec<u64> = (0..8u64 << 20).collect();
    let mut samples = Vec::new();
    for round in 0..5u64 {
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ round;
        let mut sum = 0u64;
        let started = Instant::now();
        for _ in 0..1_000_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            sum = sum.wrapping_add(table[(state >> 40) as usize % table.len()]);
        }
        samples.push(started.elapsed());
        std::hint::black_box(sum);
    }
    median(samples)
}

/// `123.4 ms (5.6× baseline)`.
fn timed(duration: Duration, base: Duration) -> String {
    let milliseconds = duration.as_secs_f64() * 1e3;
    format!(
        "{} ({:.3}× baseline)",
        if milliseconds < 1.0 {
            format!("{:.0} µs", milliseconds * 1e3)
        } else {
            format!("{milliseconds:.1} ms")
        },
        duration.as_secs_f64() / base.as_secs_f64()
    )
}

fn main() {
    let base = baseline();
    println!(
        "baseline: 1,000,000 random reads over 64 MiB in {:.1} ms",
        base.as_secs_f64() * 1e3
    );
    let mut random = StdRng::seed_from_u64(6811);
    let vrps: Vec<Vrp> = (0..VRPS).map(|_| random_vrp(&mut random)).collect();
    let mut set = build_and_memory(&vrps, base);
    let routes = routes_for(&vrps, &mut random);
    validation(&set, &routes, base);
    updates(&mut set, &vrps, &routes, &mut random, base);
    rtr_load(&vrps, &set, base);
    let end = baseline();
    println!(
        "baseline at the end: {:.1} ms ({:.2}× the first)",
        end.as_secs_f64() * 1e3,
        end.as_secs_f64() / base.as_secs_f64()
    );
}

/// The trie built in random and address order; memory per VRP of the trie and of the index.
fn build_and_memory(vrps: &[Vrp], base: Duration) -> VrpSet {
    let before = resident_kilobytes();
    let started = Instant::now();
    let mut set = VrpSet::new();
    for vrp in vrps {
        set.insert(*vrp);
    }
    let built = started.elapsed();
    let after = resident_kilobytes();
    println!(
        "trie: {} VRPs inserted in random order in {}; resident memory {:.0} bytes per VRP",
        set.len(),
        timed(built, base),
        (after.saturating_sub(before) * 1024) as f64 / set.len() as f64
    );
    drop(set);
    let started = Instant::now();
    let set: VrpSet = vrps.iter().copied().collect();
    println!(
        "trie: the same, sorted first (VrpSet::from_iter, as the RTR client builds a reset), in {}",
        timed(started.elapsed(), base)
    );
    let before = resident_kilobytes();
    let started = Instant::now();
    let index = set.index();
    let built = started.elapsed();
    let after = resident_kilobytes();
    println!(
        "index: built in {}; {:.1} bytes per VRP of heap ({:.1} resident)",
        timed(built, base),
        index.memory_bytes() as f64 / index.len() as f64,
        (after.saturating_sub(before) * 1024) as f64 / index.len() as f64
    );
    set
}

/// 1,000,000 routes judged by the trie and by the index, in random and in address order.
fn validation(set: &VrpSet, routes: &[(IpNet, u32)], base: Duration) {
    let count_invalid = |judge: &dyn Fn(&IpNet, u32) -> bool, routes: &[(IpNet, u32)]| {
        let started = Instant::now();
        let invalid = routes
            .iter()
            .filter(|(prefix, origin)| judge(prefix, *origin))
            .count();
        (started.elapsed(), invalid)
    };
    let trie = |prefix: &IpNet, origin: u32| set.state(prefix, origin).is_invalid();
    let (trie_random, invalid) = count_invalid(&trie, routes);
    let mut sorted = routes.to_vec();
    sorted.sort_unstable();
    let (trie_sorted, invalid_sorted) = count_invalid(&trie, &sorted);
    assert_eq!(invalid, invalid_sorted);
    let started = Instant::now();
    let index = set.index();
    let build = started.elapsed();
    let by_index = |prefix: &IpNet, origin: u32| index.state(prefix, origin).is_invalid();
    let (index_random, invalid_index) = count_invalid(&by_index, routes);
    let (index_sorted, invalid_index_sorted) = count_invalid(&by_index, &sorted);
    assert_eq!((invalid_index, invalid_index_sorted), (invalid, invalid));
    let batch = |routes: &[(IpNet, u32)]| {
        let started = Instant::now();
        let states = index.states(routes);
        let elapsed = started.elapsed();
        (
            elapsed,
            states.iter().filter(|state| state.is_invalid()).count(),
        )
    };
    let (batch_random, invalid_batch) = batch(routes);
    let (batch_sorted, invalid_batch_sorted) = batch(&sorted);
    assert_eq!((invalid_batch, invalid_batch_sorted), (invalid, invalid));
    println!(
        "validation of {} routes ({invalid} invalid):\n  trie  random {}, address order {}\n  index random {} ({:.1}× faster than the trie), address order {} ({:.1}× faster); \
         index build {}\n  index in groups (VrpIndex::states) random {} ({:.1}× faster than the trie), address order {} ({:.1}× faster)",
        routes.len(),
        timed(trie_random, base),
        timed(trie_sorted, base),
        timed(index_random, base),
        trie_random.as_secs_f64() / index_random.as_secs_f64(),
        timed(index_sorted, base),
        trie_sorted.as_secs_f64() / index_sorted.as_secs_f64(),
        timed(build, base),
        timed(batch_random, base),
        trie_random.as_secs_f64() / batch_random.as_secs_f64(),
        timed(batch_sorted, base),
        trie_sorted.as_secs_f64() / batch_sorted.as_secs_f64(),
    );
}

/// Updates of 1, 10, 100 and 1,000 VRPs withdrawn from the set, every affected route found
/// (RouteIndex) and re-judged; the VRPs are put back between rounds.
fn updates(
    set: &mut VrpSet,
    vrps: &[Vrp],
    routes: &[(IpNet, u32)],
    random: &mut StdRng,
    base: Duration,
) {
    let mut route_index = RouteIndex::new();
    for (prefix, origin) in routes {
        route_index.insert(*prefix, *origin);
    }
    for (size, rounds) in [(1usize, 500usize), (10, 200), (100, 50), (1000, 10)] {
        let mut samples = Vec::new();
        let mut affected_total = 0usize;
        for _ in 0..rounds {
            let delta: Vec<Vrp> = vrps.choose_multiple(random, size).copied().collect();
            let started = Instant::now();
            for vrp in &delta {
                set.remove(vrp);
            }
            let judged = route_index.revalidate(set, &delta);
            samples.push(started.elapsed());
            affected_total += judged.len();
            for vrp in &delta {
                set.insert(*vrp);
            }
        }
        let worst = *samples.iter().max().unwrap();
        println!(
            "update of {size} VRP(s) withdrawn, affected routes found and re-judged: median {} worst {} ({} routes affected on average)",
            timed(median(samples), base),
            timed(worst, base),
            affected_total / rounds
        );
    }
}

/// RTR PDUs (RFC 8210 §5): Cache Response, every VRP as an IPv4 or IPv6 Prefix, End of Data.
fn encode_answer(vrps: &[Vrp], version: u8) -> Vec<u8> {
    let mut bytes = vec![version, 3];
    bytes.extend_from_slice(&SESSION.to_be_bytes());
    bytes.extend_from_slice(&8u32.to_be_bytes());
    for vrp in vrps {
        let (kind, length, address): (u8, u32, Vec<u8>) = match vrp.prefix {
            IpNet::V4(network) => (4, 20, network.network().octets().to_vec()),
            IpNet::V6(network) => (6, 32, network.network().octets().to_vec()),
        };
        bytes.extend_from_slice(&[version, kind, 0, 0]);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&[1, vrp.prefix.prefix_len(), vrp.max_length, 0]);
        bytes.extend_from_slice(&address);
        bytes.extend_from_slice(&vrp.asn.to_be_bytes());
    }
    bytes.extend_from_slice(&[version, 7]);
    bytes.extend_from_slice(&SESSION.to_be_bytes());
    bytes.extend_from_slice(&24u32.to_be_bytes());
    for value in [1u32, 3600, 600, 7200] {
        bytes.extend_from_slice(&value.to_be_bytes());
    }
    bytes
}

/// A cache on loopback that answers each connection's first query with the pre-encoded answer
/// of the query's version (1 or 2), then waits for the client to close. Serves until exit.
fn hand_cache(vrps: &[Vrp]) -> String {
    let answers = [encode_answer(vrps, 1), encode_answer(vrps, 2)];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut query = [0u8; 8];
            if stream.read_exact(&mut query).is_err() {
                continue;
            }
            let answer = if query[0] >= 2 {
                &answers[1]
            } else {
                &answers[0]
            };
            if stream.write_all(answer).is_ok() {
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            }
        }
    });
    address
}

/// A bare reader: a Reset Query of `version`, then PDUs split by their header's length until
/// End of Data. No decoding: the time is the cache's sending and the socket.
fn bare_read(address: &str, version: u8) -> (Duration, usize) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.write_all(&[version, 2, 0, 0, 0, 0, 0, 8]).unwrap();
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut pdus = 0usize;
    let mut body = vec![0u8; 65_536];
    loop {
        let mut header = [0u8; 8];
        reader.read_exact(&mut header).unwrap();
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        assert!(header[1] != 10, "the cache sent an Error Report");
        reader.read_exact(&mut body[..length - 8]).unwrap();
        pdus += 1;
        if header[1] == 7 {
            return (started.elapsed(), pdus);
        }
    }
}

/// The `rpki` crate's client with a target that keeps nothing: its decoding alone.
#[derive(Default)]
struct Discard(usize);

impl PayloadUpdate for Discard {
    fn push_update(&mut self, _: Action, payload: Payload) -> Result<(), PayloadError> {
        std::hint::black_box(payload);
        self.0 += 1;
        Ok(())
    }
}

struct DiscardTarget(usize);

impl PayloadTarget for DiscardTarget {
    type Update = Discard;

    fn start(&mut self, _reset: bool) -> Discard {
        Discard::default()
    }

    fn apply(&mut self, update: Discard, _: Timing) -> Result<(), PayloadError> {
        self.0 = update.0;
        Ok(())
    }
}

fn decode_only(runtime: &tokio::runtime::Runtime, address: &str) -> (Duration, usize) {
    runtime.block_on(async {
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let stream = tokio::io::BufReader::with_capacity(64 * 1024, stream);
        let mut client = Client::new(stream, DiscardTarget(0), None);
        client.step().await.unwrap();
        (started.elapsed(), client.target().0)
    })
}

fn full_load(runtime: &tokio::runtime::Runtime, address: &str) -> (Duration, usize) {
    let started = Instant::now();
    let (loaded, _) = runtime
        .block_on(topologyd_rpki::rtr::fetch_once(
            &[address.to_string()],
            Duration::from_secs(120),
        ))
        .unwrap();
    (started.elapsed(), loaded.len())
}

/// The same VRPs over RTR: from the hand-written cache (our side alone, split by stage) and
/// from a real StayRTR.
fn rtr_load(vrps: &[Vrp], set: &VrpSet, base: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hand = hand_cache(vrps);
    let (socket, pdus) = bare_read(&hand, 2);
    let (decoded, payloads) = decode_only(&runtime, &hand);
    let mut shuffled = vrps.to_vec();
    shuffled.shuffle(&mut StdRng::seed_from_u64(8210));
    let started = Instant::now();
    let built: VrpSet = shuffled.iter().copied().collect();
    let building = started.elapsed();
    let (total, loaded) = full_load(&runtime, &hand);
    assert_eq!(
        (loaded, built.len(), payloads + 2),
        (set.len(), set.len(), pdus)
    );
    println!(
        "rtr from the in-process cache (pre-encoded v2 PDUs): {loaded} VRPs in {}\n  socket alone (bare reader) {}; socket + rpki decoding {}; set building {}",
        timed(total, base),
        timed(socket, base),
        timed(decoded, base),
        timed(building, base),
    );
    let roas: Vec<Roa> = vrps
        .iter()
        .map(|vrp| Roa::new(&vrp.prefix.to_string(), vrp.max_length, vrp.asn))
        .collect();
    let cache = StayRtr::start(&roas, StayRtrOptions::default()).unwrap();
    let address = cache.address().to_string();
    let (bare_v1, _) = bare_read(&address, 1);
    let (bare_v2, _) = bare_read(&address, 2);
    let (stayrtr_total, loaded) = full_load(&runtime, &address);
    assert_eq!(loaded, set.len());
    println!(
        "rtr from StayRTR: {loaded} VRPs in {}\n  StayRTR's sending alone (bare reader) v1 {}, v2 {}",
        timed(stayrtr_total, base),
        timed(bare_v1, base),
        timed(bare_v2, base),
    );
}
