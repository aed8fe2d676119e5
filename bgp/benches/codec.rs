//! Criterion benchmark of the receive side of the codec, which `packer.rs` (encode / pack)
//! does not cover: framing (`next_frame`) and decoding (`decode_message`) every UPDATE of the
//! issue's workload — 1,000,000 IPv4 /24 and 200,000 IPv6 /48 routes with one attribute set,
//! packed by the Adj-RIB-Out into 4096-octet UPDATEs — and of the withdraw-all that follows.
//!
//! Run: `cargo bench -p topologyd-bgp --bench codec`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use topologyd_bgp::codec::{Family, Ipv6NextHop, PathAttributes};
use topologyd_bgp::{AdjRibOut, DecodeContext, Frame, Negotiated, decode_message, next_frame};

const IPV4_ROUTES: u32 = 1_000_000;
const IPV6_ROUTES: u32 = 200_000;
const MAX_MESSAGE_LEN: u16 = 4096;

fn negotiated() -> Negotiated {
    Negotiated {
        remote_asn: 65002,
        remote_router_id: Ipv4Addr::new(10, 0, 0, 2),
        hold_time: 90,
        keepalive_interval: Some(Duration::from_secs(30)),
        families: Family::ALL.to_vec(),
        four_octet_as: true,
        extended_messages: false,
        route_refresh: true,
        enhanced_route_refresh: false,
        peer_graceful_restart: None,
        local_graceful_restart: true,
        internal: false,
    }
}

/// The byte streams of the announcement and of the withdraw-all, as a receiver sees them.
fn streams() -> (Vec<u8>, Vec<u8>) {
    let attributes = Arc::new(
        PathAttributes {
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6_next_hop: Some(Ipv6NextHop {
                global: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                link_local: None,
            }),
            ..PathAttributes::default()
        }
        .with_as_sequence(vec![65001]),
    );
    let mut rib = AdjRibOut::new();
    for index in 0..IPV4_ROUTES {
        let address = Ipv4Addr::from((11u32 << 24) + (index << 8));
        if let Ok(net) = Ipv4Net::new(address, 24) {
            let _ = rib.announce(IpNet::V4(net), &attributes);
        }
    }
    for index in 0..IPV6_ROUTES {
        let address = Ipv6Addr::from((0x3fffu128 << 112) | (u128::from(index) << 80));
        if let Ok(net) = Ipv6Net::new(address, 48) {
            let _ = rib.announce(IpNet::V6(net), &attributes);
        }
    }
    rib.session_established(&negotiated());
    let mut announce = Vec::new();
    while let Some(bytes) = rib.next_update(1 << 20) {
        announce.extend_from_slice(&bytes);
    }
    rib.withdraw_all();
    let mut withdraw = Vec::new();
    while let Some(bytes) = rib.next_update(1 << 20) {
        withdraw.extend_from_slice(&bytes);
    }
    (announce, withdraw)
}

/// Frames and decodes every message of `stream`, as a driver's read loop would.
fn decode_all(stream: &Bytes, context: &DecodeContext) -> usize {
    let mut offset = 0;
    let mut messages = 0;
    while offset < stream.len() {
        match next_frame(&stream[offset..], MAX_MESSAGE_LEN) {
            Ok(Frame::Complete { length }) => {
                let message = stream.slice(offset..offset + length);
                if let Ok(decoded) = decode_message(&message, context) {
                    black_box(&decoded);
                    messages += 1;
                }
                offset += length;
            }
            _ => break,
        }
    }
    messages
}

fn bench(criterion: &mut Criterion) {
    let (announce, withdraw) = streams();
    let announce = Bytes::from(announce);
    let withdraw = Bytes::from(withdraw);
    let context = DecodeContext::default();
    eprintln!(
        "workload: announce {} octets in {} messages, withdraw-all {} octets in {} messages",
        announce.len(),
        decode_all(&announce, &context),
        withdraw.len(),
        decode_all(&withdraw, &context)
    );
    let mut group = criterion.benchmark_group("decode_1m_ipv4_200k_ipv6");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.bench_function("frame_and_decode_announce_4096", |bencher| {
        bencher.iter(|| black_box(decode_all(&announce, &context)));
    });
    group.bench_function("frame_and_decode_withdraw_all_4096", |bencher| {
        bencher.iter(|| black_box(decode_all(&withdraw, &context)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
