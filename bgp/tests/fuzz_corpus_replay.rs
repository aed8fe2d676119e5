//! Replays the cargo-fuzz seed corpus (`fuzz/corpus/*/*`) on stable through the same entry
//! points the fuzz targets use (`topologyd_bgp::fuzz_entry`): no input may panic, and every
//! `valid_*` seed must decode, and the committed seeds must be the ones `seeds()` generates
//! (`REGENERATE_CORPUS=1 cargo test -p topologyd-bgp --test fuzz_corpus_replay` rewrites them,
//! like a golden file).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;
use topologyd_bgp::codec::{
    AsPathSegment, Capabilities, DecodeContext, EncodeContext, Family, GracefulRestartCapability,
    GracefulRestartFamily, Ipv6NextHop, LargeCommunity, Message, Notification, Open, Origin,
    PathAttributes, RawAttribute, RouteRefresh, RouteRefreshSubtype, Update, decode_message,
    encode_message,
};
use topologyd_bgp::fuzz_entry::{decode_stream, decode_update_roundtrip};
use topologyd_bgp::{AdjRibOut, Negotiated};

fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus")
}

#[test]
fn replay_fuzz_corpus_without_panics() {
    let mut files = 0;
    for target in ["decode_message", "decode_update_roundtrip"] {
        let directory = corpus_root().join(target);
        let Ok(entries) = std::fs::read_dir(&directory) else {
            panic!("missing corpus directory {}", directory.display());
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).unwrap_or_default();
            let name = entry.file_name().to_string_lossy().into_owned();
            let decoded = decode_stream(&data);
            decode_update_roundtrip(&data);
            if name.starts_with("valid_") {
                assert!(decoded > 0, "{name} should decode");
            }
            files += 1;
        }
    }
    assert!(files >= 40, "only {files} corpus files");
}

/// A poor man's fuzzer on stable: every seed with one bit flipped per octet (the bit rotates
/// with the position), every truncation, and a few length-field rewrites.
#[test]
fn mutated_corpus_never_panics() {
    let mut runs = 0usize;
    for target in ["decode_message", "decode_update_roundtrip"] {
        let Ok(entries) = std::fs::read_dir(corpus_root().join(target)) else {
            panic!("missing corpus directory");
        };
        for entry in entries.flatten() {
            let seed = std::fs::read(entry.path()).unwrap_or_default();
            let limit = seed.len().min(600);
            for position in 0..limit {
                let mut mutated = seed.clone();
                mutated[position] ^= 1 << (position % 8);
                decode_stream(&mutated);
                decode_update_roundtrip(&mutated);
                decode_stream(&seed[..position]);
                runs += 2;
            }
            for length in [0u16, 18, 19, 23, 4096, 4097, u16::MAX] {
                if seed.len() >= 19 {
                    let mut mutated = seed.clone();
                    mutated[16..18].copy_from_slice(&length.to_be_bytes());
                    decode_stream(&mutated);
                    decode_update_roundtrip(&mutated);
                    runs += 1;
                }
            }
        }
    }
    assert!(runs > 1000);
}

fn header(length: usize, kind: u8) -> BytesMut {
    let mut bytes = BytesMut::new();
    bytes.put_bytes(0xff, 16);
    bytes.put_u16(u16::try_from(length).unwrap_or(u16::MAX));
    bytes.put_u8(kind);
    bytes
}

fn raw(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut bytes = header(19 + body.len(), kind);
    bytes.put_slice(body);
    bytes.to_vec()
}

fn raw_update(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(withdrawn.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(withdrawn);
    body.extend_from_slice(&u16::try_from(attributes.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(attributes);
    body.extend_from_slice(nlri);
    raw(2, &body)
}

fn prefix(text: &str) -> IpNet {
    text.parse().unwrap_or_default()
}

fn attributes() -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: vec![AsPathSegment::Sequence(vec![
            65001,
            65001,
            65001,
            4_200_000_000,
        ])],
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ipv6_next_hop: Some(Ipv6NextHop {
            global: "2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST),
            link_local: Some("fe80::1".parse().unwrap_or(Ipv6Addr::LOCALHOST)),
        }),
        med: Some(50),
        local_pref: None,
        atomic_aggregate: false,
        aggregator: None,
        communities: vec![0xfde9_0064, 0xffff_ff01],
        extended_communities: vec![0x0002_fde9_0000_0001],
        large_communities: vec![LargeCommunity {
            global_administrator: 4_200_000_000,
            local_data_1: 1,
            local_data_2: 2,
        }],
        unknown: vec![RawAttribute {
            flags: 0xc0,
            type_code: 241,
            value: Bytes::from_static(b"pass-through"),
        }],
    }
}

fn encode(message: &Message, extended: bool, four_octet: bool) -> Vec<u8> {
    let context = EncodeContext {
        max_message_len: if extended { u16::MAX } else { 4096 },
        four_octet_as: four_octet,
    };
    encode_message(message, &context)
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default()
}

fn open(capabilities: Capabilities, asn_field: u16) -> Message {
    Message::Open(Open {
        asn_field,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 254),
        capabilities,
    })
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let all_capabilities = Capabilities {
        multiprotocol: Family::ALL.to_vec(),
        four_octet_asn: Some(4_200_000_000),
        route_refresh: true,
        enhanced_route_refresh: true,
        extended_message: true,
        graceful_restart: Some(GracefulRestartCapability {
            restart_state: true,
            notification: false,
            restart_time: 120,
            families: Family::ALL
                .iter()
                .map(|family| GracefulRestartFamily {
                    family: *family,
                    forwarding_preserved: true,
                })
                .collect(),
        }),
        other: Vec::new(),
    };
    let mixed = Update {
        withdrawn: vec![prefix("203.0.113.0/24"), prefix("2001:db8:ffff::/48")],
        announced: vec![
            prefix("198.51.100.0/24"),
            prefix("2001:db8:1::/48"),
            prefix("0.0.0.0/0"),
        ],
        attributes: attributes(),
        ..Update::default()
    };
    let mut many = attributes();
    many.communities = (0..2000).collect();
    let big = Update {
        announced: vec![prefix("10.0.0.0/8")],
        attributes: many,
        ..Update::default()
    };
    let mut packer = AdjRibOut::new();
    let shared = Arc::new(attributes());
    for index in 0..300u32 {
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from((100u32 << 24) | (index << 8)), 24)
            .unwrap_or_default();
        packer.announce(IpNet::V4(net), &shared).unwrap_or_default();
        let address = (0x2001_0db8u128 << 96) | (u128::from(index) << 80);
        let net = ipnet::Ipv6Net::new(Ipv6Addr::from(address), 48).unwrap_or_default();
        packer.announce(IpNet::V6(net), &shared).unwrap_or_default();
    }
    packer.session_established(&Negotiated {
        remote_asn: 65002,
        remote_router_id: Ipv4Addr::new(10, 0, 0, 2),
        hold_time: 90,
        keepalive_interval: Some(Duration::from_secs(30)),
        families: Family::ALL.to_vec(),
        four_octet_as: true,
        extended_messages: false,
        route_refresh: true,
        enhanced_route_refresh: true,
        peer_graceful_restart: None,
        local_graceful_restart: true,
        internal: false,
    });
    let stream = packer
        .next_update(1 << 20)
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default();

    let origin = [0x40u8, 1, 1, 0];
    let as_path = [0x40u8, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
    let next_hop = [0x40u8, 3, 4, 192, 0, 2, 1];
    let mandatory = [origin.as_slice(), as_path.as_slice(), next_hop.as_slice()].concat();
    let with = |extra: &[u8]| [mandatory.as_slice(), extra].concat();

    vec![
        ("valid_keepalive", encode(&Message::Keepalive, false, true)),
        (
            "valid_open_minimal",
            encode(&open(Capabilities::default(), 65001), false, true),
        ),
        (
            "valid_open_all_capabilities",
            encode(&open(all_capabilities.clone(), 23456), false, true),
        ),
        (
            "valid_notification_cease_shutdown",
            encode(
                &Message::Notification(Notification::new(6, 2, Bytes::from_static(b"\x05maint"))),
                false,
                true,
            ),
        ),
        (
            "valid_notification_max_prefixes",
            encode(
                &Message::Notification(Notification::max_prefixes(Family::Ipv6Unicast, 100)),
                false,
                true,
            ),
        ),
        (
            "valid_route_refresh_ipv4",
            encode(
                &Message::RouteRefresh(RouteRefresh::new(
                    Family::Ipv4Unicast,
                    RouteRefreshSubtype::Request,
                )),
                false,
                true,
            ),
        ),
        (
            "valid_borr_ipv6",
            encode(
                &Message::RouteRefresh(RouteRefresh::new(
                    Family::Ipv6Unicast,
                    RouteRefreshSubtype::Begin,
                )),
                false,
                true,
            ),
        ),
        (
            "valid_eorr_ipv6",
            encode(
                &Message::RouteRefresh(RouteRefresh::new(
                    Family::Ipv6Unicast,
                    RouteRefreshSubtype::End,
                )),
                false,
                true,
            ),
        ),
        (
            "valid_update_mixed",
            encode(&Message::Update(mixed.clone()), false, true),
        ),
        (
            "valid_update_two_octet_as4_path",
            encode(&Message::Update(mixed), false, false),
        ),
        (
            "valid_update_withdraw_ipv4",
            encode(
                &Message::Update(Update {
                    withdrawn: vec![prefix("10.1.0.0/16")],
                    ..Update::default()
                }),
                false,
                true,
            ),
        ),
        (
            "valid_update_withdraw_ipv6",
            encode(
                &Message::Update(Update {
                    withdrawn: vec![prefix("2001:db8::/32")],
                    ..Update::default()
                }),
                false,
                true,
            ),
        ),
        (
            "valid_end_of_rib_ipv4",
            encode(
                &Message::Update(Update::end_of_rib(Family::Ipv4Unicast)),
                false,
                true,
            ),
        ),
        (
            "valid_end_of_rib_ipv6",
            encode(
                &Message::Update(Update::end_of_rib(Family::Ipv6Unicast)),
                false,
                true,
            ),
        ),
        (
            "valid_update_extended_8k",
            encode(&Message::Update(big), true, true),
        ),
        ("valid_packer_stream", stream),
        (
            "valid_update_handmade",
            raw_update(&[], &mandatory, &[24, 10, 0, 0, 32, 10, 0, 0, 1]),
        ),
        ("malformed_empty", Vec::new()),
        ("malformed_bad_marker", {
            let mut bytes = raw(4, &[]);
            bytes[0] = 0;
            bytes
        }),
        ("malformed_length_18", header(18, 4).to_vec()),
        ("malformed_length_4097", {
            let mut bytes = header(4097, 2).to_vec();
            bytes.resize(4097, 0);
            bytes
        }),
        ("malformed_unknown_type", raw(9, &[])),
        ("malformed_keepalive_with_body", raw(4, &[0])),
        ("malformed_notification_short", raw(3, &[6])),
        ("malformed_open_short", raw(1, &[4, 0, 1])),
        (
            "malformed_open_version_3",
            raw(1, &[3, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 0]),
        ),
        (
            "malformed_open_optional_length",
            raw(1, &[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 9, 2, 2]),
        ),
        (
            "malformed_open_capability_truncated",
            raw(1, &[4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 4, 2, 2, 65, 4]),
        ),
        ("malformed_borr_length", raw(5, &[0, 1, 1, 1, 0])),
        ("malformed_route_refresh_short", raw(5, &[0, 1])),
        ("malformed_update_withdrawn_overrun", raw(2, &[0, 50, 0, 0])),
        (
            "malformed_update_attributes_overrun",
            raw(2, &[0, 0, 0, 50, 0x40, 1, 1, 0]),
        ),
        (
            "malformed_update_attribute_length_overrun",
            raw_update(&[], &[0x40, 1, 9, 0], &[]),
        ),
        (
            "malformed_update_bad_origin",
            raw_update(
                &[],
                &[
                    [0x40, 1, 1, 7].as_slice(),
                    as_path.as_slice(),
                    next_hop.as_slice(),
                ]
                .concat(),
                &[24, 10, 0, 0],
            ),
        ),
        (
            "malformed_update_missing_as_path",
            raw_update(
                &[],
                &[origin.as_slice(), next_hop.as_slice()].concat(),
                &[24, 10, 0, 0],
            ),
        ),
        (
            "malformed_update_nlri_length_33",
            raw_update(&[], &mandatory, &[33, 10, 0, 0, 0, 0]),
        ),
        (
            "malformed_update_nlri_truncated",
            raw_update(&[], &mandatory, &[24, 10]),
        ),
        (
            "malformed_update_mp_reach_truncated",
            raw_update(
                &[],
                &[
                    origin.as_slice(),
                    as_path.as_slice(),
                    [0x80, 14, 5, 0, 2, 1, 16, 0].as_slice(),
                ]
                .concat(),
                &[],
            ),
        ),
        (
            "malformed_update_mp_unreach_bad_prefix",
            raw_update(&[], &[0x80, 15, 5, 0, 2, 1, 129, 0], &[]),
        ),
        (
            "malformed_update_duplicate_origin",
            raw_update(&[], &with(&origin), &[24, 10, 0, 0]),
        ),
        (
            "malformed_update_as_path_bad_segment",
            raw_update(
                &[],
                &[
                    origin.as_slice(),
                    [0x40, 2, 6, 9, 1, 0, 0, 0xfd, 0xe9].as_slice(),
                    next_hop.as_slice(),
                ]
                .concat(),
                &[24, 10, 0, 0],
            ),
        ),
        (
            "malformed_update_as_set",
            raw_update(
                &[],
                &[
                    origin.as_slice(),
                    [0x40, 2, 6, 1, 1, 0, 0, 0xfd, 0xe9].as_slice(),
                    next_hop.as_slice(),
                ]
                .concat(),
                &[24, 10, 0, 0],
            ),
        ),
        (
            "malformed_update_next_hop_multicast",
            raw_update(
                &[],
                &[
                    origin.as_slice(),
                    as_path.as_slice(),
                    [0x40, 3, 4, 224, 0, 0, 1].as_slice(),
                ]
                .concat(),
                &[24, 10, 0, 0],
            ),
        ),
        (
            "malformed_update_atomic_aggregate_length",
            raw_update(&[], &with(&[0x40, 6, 1, 0]), &[24, 10, 0, 0]),
        ),
        (
            "malformed_update_communities_length",
            raw_update(&[], &with(&[0xc0, 8, 3, 0, 0, 1]), &[24, 10, 0, 0]),
        ),
        (
            "malformed_update_large_communities_length",
            raw_update(&[], &with(&[0xc0, 32, 5, 0, 0, 0, 0, 1]), &[24, 10, 0, 0]),
        ),
        (
            "malformed_update_med_flags",
            raw_update(&[], &with(&[0x40, 4, 4, 0, 0, 0, 1]), &[24, 10, 0, 0]),
        ),
        (
            "malformed_update_unknown_well_known",
            raw_update(&[], &with(&[0x40, 250, 1, 0]), &[24, 10, 0, 0]),
        ),
        ("malformed_stream_truncated", {
            let mut bytes = encode(&Message::Keepalive, false, true);
            bytes.extend_from_slice(&raw(2, &[0, 0, 0, 0])[..10]);
            bytes
        }),
    ]
}

#[test]
fn committed_corpus_matches_the_generated_seeds() {
    let regenerate = std::env::var_os("REGENERATE_CORPUS").is_some();
    for (name, bytes) in seeds() {
        let target = if name.starts_with("valid_update") || name.starts_with("malformed_update") {
            vec!["decode_message", "decode_update_roundtrip"]
        } else {
            vec!["decode_message"]
        };
        for directory in target {
            let path = corpus_root().join(directory).join(name);
            if regenerate {
                std::fs::create_dir_all(corpus_root().join(directory)).unwrap_or_default();
                std::fs::write(&path, &bytes)
                    .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            } else {
                let committed = std::fs::read(&path).unwrap_or_else(|error| {
                    panic!(
                        "{}: {error} (REGENERATE_CORPUS=1 writes it)",
                        path.display()
                    )
                });
                assert_eq!(
                    committed,
                    bytes.to_vec(),
                    "{} differs from its generator (REGENERATE_CORPUS=1 rewrites it)",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn valid_seeds_decode_under_their_context() {
    for (name, bytes) in seeds() {
        if !name.starts_with("valid_") || name == "valid_packer_stream" {
            continue;
        }
        let context = DecodeContext {
            max_message_len: u16::MAX,
            four_octet_as: !name.contains("two_octet"),
            internal_peer: false,
        };
        let decoded = decode_message(&Bytes::from(bytes), &context);
        assert!(decoded.is_ok(), "{name}: {decoded:?}");
    }
}
