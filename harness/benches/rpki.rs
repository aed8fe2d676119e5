//! RPKI figures (`cargo bench -p topologyd-harness --bench rpki`): a global-table-sized VRP set
//! (600,000 VRPs, three quarters IPv4) built in the trie, its resident memory per VRP, RFC 6811
//! validation of 1,000,000 routes, one VRP update reaching the verdict of every route it
//! affects, and the same 600,000 VRPs loaded from a real StayRTR on loopback by the RTR client.
//! Prints the figures; the targets are in README (Benchmarks, RPKI).

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use topologyd_harness::peers::{Roa, StayRtr, StayRtrOptions};
use topologyd_rpki::{Vrp, VrpSet};

const VRPS: usize = 600_000;
const ROUTES: usize = 1_000_000;

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

fn main() {
    let mut random = StdRng::seed_from_u64(6811);
    let vrps: Vec<Vrp> = (0..VRPS).map(|_| random_vrp(&mut random)).collect();

    let before = resident_kilobytes();
    let started = Instant::now();
    let mut set = VrpSet::new();
    for vrp in &vrps {
        set.insert(*vrp);
    }
    let built = started.elapsed();
    let after = resident_kilobytes();
    println!(
        "trie: {} VRPs inserted in {:.0} ms; resident memory {:.0} bytes per VRP",
        set.len(),
        built.as_secs_f64() * 1e3,
        (after.saturating_sub(before) * 1024) as f64 / set.len() as f64
    );

    // Routes: half inside a VRP (a more-specific of it, origin right or wrong), half random.
    let routes: Vec<(IpNet, u32)> = (0..ROUTES)
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
                (random_vrp(&mut random).prefix, 64500)
            }
        })
        .collect();
    let started = Instant::now();
    let mut invalid = 0usize;
    for (prefix, origin) in &routes {
        if set.state(prefix, *origin).is_invalid() {
            invalid += 1;
        }
    }
    let validated = started.elapsed();
    println!(
        "validation: {} routes in {:.0} ms ({invalid} invalid)",
        routes.len(),
        validated.as_secs_f64() * 1e3
    );

    // The same routes in address order (as a daemon holds its routes): the trie walks share
    // their upper nodes, which stay in cache.
    let mut sorted = routes.clone();
    sorted.sort_unstable();
    let started = Instant::now();
    let mut invalid_sorted = 0usize;
    for (prefix, origin) in &sorted {
        if set.state(prefix, *origin).is_invalid() {
            invalid_sorted += 1;
        }
    }
    assert_eq!(invalid_sorted, invalid);
    println!(
        "validation: the same routes in address order in {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    // One update: withdraw a VRP and re-judge every route it covers (routes in a trie).
    let mut by_prefix: PrefixMap<Ipv4Net, u32> = PrefixMap::new();
    for (prefix, origin) in &routes {
        if let IpNet::V4(prefix) = prefix {
            by_prefix.insert(*prefix, *origin);
        }
    }
    let mut samples = Vec::new();
    let mut affected_total = 0usize;
    for vrp in vrps
        .iter()
        .filter(|vrp| vrp.prefix.addr().is_ipv4())
        .take(1000)
    {
        let IpNet::V4(network) = vrp.prefix else {
            continue;
        };
        let started = Instant::now();
        set.remove(vrp);
        let mut affected = 0usize;
        for (route, origin) in by_prefix.children(&network) {
            let _ = set.state(&IpNet::V4(route), *origin);
            affected += 1;
        }
        samples.push(started.elapsed());
        affected_total += affected;
        set.insert(*vrp);
    }
    let worst = *samples.iter().max().unwrap();
    println!(
        "update: one VRP withdrawn and its routes re-judged: median {:.3} ms, worst {:.3} ms ({} routes on average)",
        median(samples).as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        affected_total / 1000
    );

    // The same VRPs from a real StayRTR on loopback.
    let roas: Vec<Roa> = vrps
        .iter()
        .map(|vrp| Roa::new(&vrp.prefix.to_string(), vrp.max_length, vrp.asn))
        .collect();
    let cache = StayRtr::start(&roas, StayRtrOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let (loaded, _) = runtime
        .block_on(topologyd_rpki::rtr::fetch_once(
            &[cache.address().to_string()],
            Duration::from_secs(120),
        ))
        .unwrap();
    println!(
        "rtr: {} VRPs loaded from StayRTR (reset query to End of Data, trie built) in {:.0} ms",
        loaded.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    assert_eq!(loaded.len(), set.len());
}
