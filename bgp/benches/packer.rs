//! Criterion benchmarks of the Adj-RIB-Out packer against a "blaster" baseline (copying the
//! same pre-encoded UPDATE bytes), for the workload: 1,000,000 IPv4 /24 and 200,000
//! IPv6 /48 routes sharing one attribute set; and withdrawing them all. Also the full-table
//! sends: the table loaded first and the session brought up (session-up and graceful-restart
//! re-sync), and a route refresh of both families.
//!
//! Run: `cargo bench -p topologyd-bgp --bench packer`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use topologyd_bgp::codec::{Family, Ipv6NextHop, PathAttributes};
use topologyd_bgp::{
    AdjRibOut, DecodeContext, Frame, Message, Negotiated, decode_message, next_frame,
};

const IPV4_ROUTES: u32 = 1_000_000;
const IPV6_ROUTES: u32 = 200_000;
/// What a driver would hand the socket per write.
const BUDGET: usize = 256 * 1024;

fn negotiated(extended: bool) -> Negotiated {
    Negotiated {
        remote_asn: 65002,
        remote_router_id: Ipv4Addr::new(10, 0, 0, 2),
        hold_time: 90,
        keepalive_interval: Some(Duration::from_secs(30)),
        families: Family::ALL.to_vec(),
        four_octet_as: true,
        extended_messages: extended,
        route_refresh: true,
        enhanced_route_refresh: true,
        peer_graceful_restart: None,
        local_graceful_restart: true,
        internal: false,
    }
}

fn attributes() -> Arc<PathAttributes> {
    Arc::new(
        PathAttributes {
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6_next_hop: Some(Ipv6NextHop {
                global: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                link_local: None,
            }),
            communities: vec![0xfde9_0001],
            ..PathAttributes::default()
        }
        .with_as_sequence(vec![65001]),
    )
}

fn prefixes() -> Vec<IpNet> {
    let mut prefixes = Vec::with_capacity((IPV4_ROUTES + IPV6_ROUTES) as usize);
    for index in 0..IPV4_ROUTES {
        let address = Ipv4Addr::from((1u32 << 24) + (index << 8));
        prefixes.push(IpNet::V4(Ipv4Net::new(address, 24).unwrap_or_default()));
    }
    for index in 0..IPV6_ROUTES {
        let address = Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(index) << 80));
        prefixes.push(IpNet::V6(Ipv6Net::new(address, 48).unwrap_or_default()));
    }
    prefixes
}

/// Announce everything into an established session's Adj-RIB-Out and drain it to bytes.
fn announce_and_pack(
    prefixes: &[IpNet],
    shared: &Arc<PathAttributes>,
    extended: bool,
) -> (AdjRibOut, usize) {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(extended));
    for prefix in prefixes {
        let _ = rib.announce(*prefix, shared);
    }
    let mut total = 0;
    while let Some(bytes) = rib.next_update(BUDGET) {
        total += bytes.len();
        black_box(&bytes);
    }
    (rib, total)
}

/// The table loaded while no session is up (as a daemon starts), not yet sent.
fn loaded(prefixes: &[IpNet], shared: &Arc<PathAttributes>) -> AdjRibOut {
    let mut rib = AdjRibOut::new();
    rib.reserve(IPV4_ROUTES as usize, IPV6_ROUTES as usize);
    for prefix in prefixes {
        let _ = rib.announce(*prefix, shared);
    }
    rib
}

fn drain_all(rib: &mut AdjRibOut) -> usize {
    let mut total = 0;
    while let Some(bytes) = rib.next_update(BUDGET) {
        total += bytes.len();
        black_box(&bytes);
    }
    total
}

/// Share of adjacent announced prefixes (per family) that go out in ascending order.
fn ascending_share(chunks: &[bytes::Bytes]) -> f64 {
    let context = DecodeContext {
        max_message_len: u16::MAX,
        ..DecodeContext::default()
    };
    let (mut ascending, mut pairs) = (0usize, 0usize);
    let mut last: [Option<IpNet>; 2] = [None, None];
    for chunk in chunks {
        let mut rest = chunk.clone();
        while let Ok(Frame::Complete { length }) = next_frame(&rest, u16::MAX) {
            let message = rest.split_to(length);
            let Ok(Message::Update(update)) = decode_message(&message, &context) else {
                continue;
            };
            for prefix in update.announced {
                let family = usize::from(matches!(prefix, IpNet::V6(_)));
                if let Some(previous) = last[family] {
                    pairs += 1;
                    ascending += usize::from(previous < prefix);
                }
                last[family] = Some(prefix);
            }
        }
    }
    ascending as f64 / pairs.max(1) as f64
}

fn bench(criterion: &mut Criterion) {
    let prefixes = prefixes();
    let shared = attributes();
    // Pre-encoded bytes for the blaster baseline, in writes of the same size.
    let (mut rib, _) = announce_and_pack(&prefixes, &shared, false);
    let mut chunks = Vec::new();
    rib.route_refresh(Family::Ipv4Unicast);
    rib.route_refresh(Family::Ipv6Unicast);
    while let Some(bytes) = rib.next_update(BUDGET) {
        chunks.push(bytes);
    }
    let wire_bytes: usize = chunks.iter().map(bytes::Bytes::len).sum();
    eprintln!(
        "workload: {} routes, {} octets on the wire (4096-octet UPDATEs), Adj-RIB-Out {} octets/route",
        prefixes.len(),
        wire_bytes,
        rib.memory_estimate() / prefixes.len()
    );
    let mut session_up = loaded(&prefixes, &shared);
    session_up.session_established(&negotiated(false));
    let mut session_up_chunks = Vec::new();
    while let Some(bytes) = session_up.next_update(BUDGET) {
        session_up_chunks.push(bytes);
    }
    eprintln!(
        "adjacent prefixes in ascending order: session up {:.1} %, route refresh {:.1} %",
        100.0 * ascending_share(&session_up_chunks),
        100.0 * ascending_share(&chunks)
    );

    let mut group = criterion.benchmark_group("adj_rib_out_1m_ipv4_200k_ipv6");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("blaster_copy_preencoded", |bencher| {
        bencher.iter(|| {
            let mut socket = Vec::with_capacity(wire_bytes);
            for chunk in &chunks {
                socket.extend_from_slice(chunk);
            }
            black_box(socket.len())
        });
    });
    group.bench_function("announce_and_pack_4096", |bencher| {
        bencher.iter(|| black_box(announce_and_pack(&prefixes, &shared, false).1));
    });
    group.bench_function("announce_and_pack_65535", |bencher| {
        bencher.iter(|| black_box(announce_and_pack(&prefixes, &shared, true).1));
    });
    group.bench_function("session_up_full_table_4096", |bencher| {
        bencher.iter_batched(
            || loaded(&prefixes, &shared),
            |mut rib| {
                rib.session_established(&negotiated(false));
                black_box(drain_all(&mut rib))
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.bench_function("route_refresh_full_table_4096", |bencher| {
        bencher.iter_batched(
            || announce_and_pack(&prefixes, &shared, false).0,
            |mut rib| {
                rib.route_refresh(Family::Ipv4Unicast);
                rib.route_refresh(Family::Ipv6Unicast);
                black_box(drain_all(&mut rib))
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.bench_function("withdraw_all_and_pack_4096", |bencher| {
        bencher.iter_batched(
            || announce_and_pack(&prefixes, &shared, false).0,
            |mut rib| {
                rib.withdraw_all();
                let mut total = 0;
                while let Some(bytes) = rib.next_update(BUDGET) {
                    total += bytes.len();
                }
                black_box(total)
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
