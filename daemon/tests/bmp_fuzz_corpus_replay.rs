//! Replays the `decode_bmp_stream` seed corpus (`fuzz/corpus/decode_bmp_stream/*`) on stable
//! through the entry point the fuzz target uses: no input may panic, every `valid_*` seed reads
//! to its end, every `garbage_*` seed ends in an error. The seeds are the ones `seeds()` writes
//! (`REGENERATE_CORPUS=1 cargo test -p topologyd --test bmp_fuzz_corpus_replay` rewrites them).

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use bytes::BytesMut;
use topologyd::bmp::codec::{BmpEvent, PeerKey, RibKind, RouteKey, SeenAttributes, decode_stream};
use topologyd::bmp::writer;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_bmp_stream")
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let peer = PeerKey {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        asn: 64_500,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        distinguisher: 0,
    };
    let attributes = SeenAttributes {
        as_path: vec![64_500, 13_335],
        origin_asn: Some(13_335),
        med: Some(10),
        communities: vec![0x3417_2710],
        large_communities: vec![[13_335, 1, 100]],
    };
    let mut session = BytesMut::new();
    session.extend_from_slice(&writer::initiation("edge1"));
    session.extend_from_slice(&writer::peer_up(&peer));
    for rib in RibKind::ALL {
        writer::announce(
            &mut session,
            &peer,
            rib,
            &[
                "198.51.100.0/24".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            &attributes,
        );
        writer::withdraw(&mut session, &peer, rib, &["10.0.0.0/8".parse().unwrap()]);
        writer::end_of_rib(&mut session, &peer, rib);
    }
    session.extend_from_slice(&writer::peer_down(&peer));
    session.extend_from_slice(&writer::termination());
    vec![
        ("valid_session", session.to_vec()),
        ("valid_add_path", add_path_session(&peer, &attributes)),
        ("valid_initiation", writer::initiation("edge1")),
        (
            "garbage_http",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("garbage_length", vec![3, 0xFF, 0xFF, 0xFF, 0xFF, 0]),
        ("garbage_type", vec![3, 0, 0, 0, 6, 9]),
    ]
}

/// A session with ADD-PATH negotiated both ways for IPv4 and IPv6 unicast: two paths of one
/// prefix in each family, then one path of each withdrawn.
fn add_path_session(peer: &PeerKey, attributes: &SeenAttributes) -> Vec<u8> {
    let both = [
        ((1u16, 1u8), writer::ADD_PATH_BOTH),
        ((2, 1), writer::ADD_PATH_BOTH),
    ];
    let mut session = BytesMut::new();
    session.extend_from_slice(&writer::initiation("edge1"));
    session.extend_from_slice(&writer::peer_up_with_add_path(
        peer,
        RibKind::AdjRibInPre,
        &both,
        &both,
    ));
    let paths: Vec<RouteKey> = ["198.51.100.0/24", "2001:db8:1::/48"]
        .iter()
        .flat_map(|prefix| {
            [1, 2].map(|path_id| RouteKey {
                prefix: prefix.parse().unwrap(),
                path_id,
            })
        })
        .collect();
    for rib in [RibKind::AdjRibInPre, RibKind::AdjRibInPost] {
        writer::routes(&mut session, peer, rib, &[], &paths, Some(attributes), true);
        writer::routes(
            &mut session,
            peer,
            rib,
            &[paths[0], paths[3]],
            &[],
            None,
            true,
        );
    }
    session.extend_from_slice(&writer::peer_down(peer));
    session.to_vec()
}

#[test]
fn the_add_path_seed_reads_its_paths() {
    let peer = PeerKey {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        asn: 64_500,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        distinguisher: 0,
    };
    let (events, error) = decode_stream(&add_path_session(&peer, &SeenAttributes::default()));
    assert_eq!(error, None);
    let BmpEvent::Routes { announced, .. } = &events[2] else {
        panic!("not routes: {:?}", events[2]);
    };
    let ids: Vec<u32> = announced.iter().map(|route| route.path_id).collect();
    assert_eq!(ids, vec![1, 2, 1, 2]);
    let BmpEvent::Routes { withdrawn, .. } = &events[3] else {
        panic!("not routes: {:?}", events[3]);
    };
    assert_eq!(withdrawn.len(), 2);
}

#[test]
fn replay_bmp_corpus_without_panics() {
    let regenerate = std::env::var_os("REGENERATE_CORPUS").is_some();
    for (name, bytes) in seeds() {
        let path = corpus().join(name);
        if regenerate {
            std::fs::write(&path, &bytes).unwrap();
        }
        let stored = std::fs::read(&path).unwrap_or_default();
        assert_eq!(
            stored, bytes,
            "{name} differs from seeds(); regenerate the corpus"
        );
    }
    let mut files = 0;
    for entry in std::fs::read_dir(corpus()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(entry.path()).unwrap();
        let (events, error) = decode_stream(&data);
        if name.starts_with("valid_") {
            assert!(error.is_none(), "{name}: {error:?}");
            assert!(!events.is_empty(), "{name} read nothing");
        }
        if name.starts_with("garbage_") {
            assert!(error.is_some(), "{name} was read: {events:?}");
        }
        files += 1;
    }
    assert!(files >= 5);
}
