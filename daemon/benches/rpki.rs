//! Criterion benchmarks of the daemon's run-time RPKI judgement (`engine/rpki.rs`) at scale:
//! every route of a generation judged against a full VRP set, and one incremental VRP update
//! (one ROA withdrawn, its route turning invalid) reaching the verdict of every route it covers
//! — the step between an RTR End of Data and the withdrawal under `invalid_policy = "withdraw"`.
//!
//! The workload: 1,000,000 IPv4 /24 routes (10.0.0.0/8 and 11.0.0.0/8 … in order) with one
//! origin, and a VRP set of one /24 ROA per route plus 100,000 covering /16s naming other
//! ASes, so that a /24 losing its ROA turns invalid.
//!
//! Run: `cargo bench -p topologyd --bench rpki`.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use topologyd::announce::{LocationRoutes, RouteIntent};
use topologyd::engine::rpki::{RpkiBook, RpkiUpdate};
use topologyd_api::RpkiSyncState;
use topologyd_config::daemon::InvalidPolicy;
use topologyd_rpki::{Vrp, VrpSet};
use topologyd_topology::RouteAttributes;

const ROUTES: u32 = 1_000_000;
const ORIGIN: u32 = 64500;

fn route_prefix(index: u32) -> IpNet {
    let address = Ipv4Addr::from((10u32 << 24) + (index << 8));
    IpNet::V4(Ipv4Net::new(address, 24).unwrap_or_default())
}

fn workload() -> (LocationRoutes, VrpSet) {
    let routes = LocationRoutes {
        generation: 1,
        version: 0,
        routes: Arc::new((0..ROUTES).map(|index| (route_prefix(index), 0)).collect()),
        intents: vec![RouteIntent {
            origin_asn: ORIGIN,
            attributes: RouteAttributes::default(),
            service: Arc::from("web"),
            degraded: false,
        }],
    };
    let mut vrps = VrpSet::new();
    for index in 0..ROUTES {
        vrps.insert(Vrp {
            prefix: route_prefix(index),
            max_length: 24,
            asn: ORIGIN,
        });
        if index % 256 == 0 {
            let address = Ipv4Addr::from((10u32 << 24) + (index << 8));
            let covering = Ipv4Net::new(address, 16).map(|net| net.trunc());
            if let Ok(covering) = covering {
                vrps.insert(Vrp {
                    prefix: IpNet::V4(covering),
                    max_length: 16,
                    asn: 64496,
                });
            }
        }
    }
    (routes, vrps)
}

fn update(vrps: Arc<VrpSet>, changed: Option<Vec<IpNet>>) -> RpkiUpdate {
    RpkiUpdate {
        vrps,
        changed_prefixes: changed.map(Arc::from),
        ..RpkiUpdate::initial(RpkiSyncState::InSync)
    }
}

fn benchmarks(criterion: &mut Criterion) {
    let (routes, vrps) = workload();
    let full = Arc::new(vrps);
    let mut group = criterion.benchmark_group("rpki_runtime");
    group.sample_size(10);
    group.bench_function("judge_every_route_1m", |bench| {
        bench.iter(|| {
            let mut book = RpkiBook::new(Some(InvalidPolicy::Withdraw));
            book.judge_generation(&routes, &routes, 0);
            black_box(book.update(update(Arc::clone(&full), None), &routes, 1))
        });
    });
    // One ROA withdrawn: the set without it, and the delta naming its prefix.
    let target = route_prefix(ROUTES / 2);
    let mut smaller = (*full).clone();
    smaller.remove(&Vrp {
        prefix: target,
        max_length: 24,
        asn: ORIGIN,
    });
    let smaller = Arc::new(smaller);
    let mut book = RpkiBook::new(Some(InvalidPolicy::Withdraw));
    book.judge_generation(&routes, &routes, 0);
    book.update(update(Arc::clone(&full), None), &routes, 1);
    group.bench_function("one_vrp_withdrawn_1m_routes", |bench| {
        bench.iter(|| {
            let changes = book.update(update(Arc::clone(&smaller), Some(vec![target])), &routes, 2);
            assert_eq!(changes.len(), 1);
            let back = book.update(update(Arc::clone(&full), Some(vec![target])), &routes, 3);
            black_box(back)
        });
    });
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
