use std::net::Ipv4Addr;

use super::*;
use crate::bmp::writer;

fn peer() -> PeerKey {
    PeerKey {
        address: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        asn: 64_500,
        bgp_id: Ipv4Addr::new(10, 0, 0, 1),
        distinguisher: 0,
    }
}

fn all_events(bytes: &[u8]) -> Result<Vec<BmpEvent>, BmpError> {
    let mut buffer = BytesMut::from(bytes);
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    while let Some(message) = split_message(&mut buffer)? {
        events.push(decoder.decode(message)?);
    }
    assert!(buffer.is_empty(), "a partial message is left over");
    Ok(events)
}

#[test]
fn rfc7854_4_written_messages_read_back_as_events() {
    let attributes = SeenAttributes {
        as_path: vec![64_500, 13_335],
        origin_asn: Some(13_335),
        med: Some(10),
        communities: vec![(13_335 << 16) | 10_000],
        large_communities: vec![[13_335, 1, 100]],
    };
    let prefixes: Vec<ipnet::Ipv4Net> = vec!["198.51.100.0/24".parse().unwrap()];
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::initiation("edge1"));
    stream.extend_from_slice(&writer::peer_up(&peer()));
    writer::announce(
        &mut stream,
        &peer(),
        RibKind::AdjRibInPost,
        &prefixes,
        &attributes,
    );
    writer::withdraw(&mut stream, &peer(), RibKind::LocRib, &prefixes);
    writer::end_of_rib(&mut stream, &peer(), RibKind::AdjRibOutPre);
    stream.extend_from_slice(&writer::peer_down(&peer()));
    stream.extend_from_slice(&writer::termination());
    let events = all_events(&stream).unwrap();
    assert_eq!(events.len(), 7);
    assert_eq!(
        events[0],
        BmpEvent::Initiation {
            sys_name: Some("edge1".into())
        }
    );
    assert_eq!(
        events[1],
        BmpEvent::PeerUp {
            peer: peer(),
            router_asn: Some(64_512)
        }
    );
    assert_eq!(
        events[2],
        BmpEvent::Routes {
            peer: peer(),
            rib: RibKind::AdjRibInPost,
            withdrawn: vec![],
            announced: vec![RouteKey::single("198.51.100.0/24".parse().unwrap())],
            attributes: Some(Arc::new(attributes)),
            end_of_rib: false,
        }
    );
    let BmpEvent::Routes { rib, withdrawn, .. } = &events[3] else {
        panic!("not routes: {:?}", events[3]);
    };
    assert_eq!(*rib, RibKind::LocRib);
    assert_eq!(withdrawn.len(), 1);
    assert!(matches!(
        events[4],
        BmpEvent::Routes {
            rib: RibKind::AdjRibOutPre,
            end_of_rib: true,
            ..
        }
    ));
    assert_eq!(events[5], BmpEvent::PeerDown { peer: peer() });
    assert_eq!(events[6], BmpEvent::Termination);
}

#[test]
fn a_message_split_across_reads_waits_for_its_last_byte() {
    let whole = writer::initiation("edge1");
    let mut buffer = BytesMut::from(&whole[..whole.len() - 1]);
    assert_eq!(split_message(&mut buffer), Ok(None));
    buffer.extend_from_slice(&whole[whole.len() - 1..]);
    assert!(split_message(&mut buffer).unwrap().is_some());
}

#[test]
fn garbage_is_an_error_not_a_wait() {
    let mut http = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
    assert_eq!(split_message(&mut http), Err(BmpError::Version(b'G')));
    let mut huge = BytesMut::from(&[3u8, 0x7F, 0xFF, 0xFF, 0xFF, 0][..]);
    assert!(matches!(split_message(&mut huge), Err(BmpError::Length(_))));
    let mut short = BytesMut::from(&[3u8, 0, 0, 0, 2, 0][..]);
    assert_eq!(split_message(&mut short), Err(BmpError::Length(2)));
    // A well-framed message whose body is not a Route Monitoring message.
    let mut body = writer::peer_down(&peer());
    body.truncate(20);
    body[1..5].copy_from_slice(&20u32.to_be_bytes());
    assert!(all_events(&body).is_err());
}

#[test]
fn every_corrupted_byte_of_a_valid_stream_is_read_or_refused_without_panicking() {
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::peer_up(&peer()));
    writer::announce(
        &mut stream,
        &peer(),
        RibKind::AdjRibInPre,
        &["192.0.2.0/24".parse().unwrap()],
        &SeenAttributes::default(),
    );
    let mut outcomes = [0usize; 2];
    for position in 0..stream.len() {
        let mut corrupted = stream.to_vec();
        corrupted[position] ^= 0xA5;
        let mut buffer = BytesMut::from(&corrupted[..]);
        loop {
            match split_message(&mut buffer) {
                Ok(Some(message)) => {
                    outcomes[usize::from(Decoder::new().decode(message).is_ok())] += 1
                }
                Ok(None) => break,
                Err(_) => {
                    outcomes[0] += 1;
                    break;
                }
            }
        }
    }
    assert!(outcomes[0] > 0, "some corruptions are refused");
    assert!(
        outcomes[1] > 0,
        "some corruptions (prefix bits, ASNs) still read"
    );
}

fn route(prefix: &str, path_id: u32) -> RouteKey {
    RouteKey {
        prefix: prefix.parse().unwrap(),
        path_id,
    }
}

fn origin(asn: u32) -> SeenAttributes {
    SeenAttributes {
        as_path: vec![64_500, asn],
        origin_asn: Some(asn),
        ..SeenAttributes::default()
    }
}

const V4: (u16, u8) = (1, 1);
const V6: (u16, u8) = (2, 1);

fn routes_of(event: &BmpEvent) -> (Vec<RouteKey>, Vec<RouteKey>) {
    let BmpEvent::Routes {
        withdrawn,
        announced,
        ..
    } = event
    else {
        panic!("not routes: {event:?}");
    };
    (withdrawn.clone(), announced.clone())
}

#[test]
fn rfc7911_peer_up_with_add_path_both_ways_reads_two_paths_and_withdraws_one() {
    // The peer may send and receive both families; the router may receive both.
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::peer_up_with_add_path(
        &peer(),
        RibKind::AdjRibInPre,
        &[(V4, writer::ADD_PATH_BOTH), (V6, writer::ADD_PATH_RECEIVE)],
        &[(V4, writer::ADD_PATH_BOTH), (V6, writer::ADD_PATH_BOTH)],
    ));
    let paths = [route("198.51.100.0/24", 1), route("198.51.100.0/24", 2)];
    let paths_v6 = [route("2001:db8:1::/48", 7), route("2001:db8:1::/48", 8)];
    for (announced, attributes) in [(&paths, origin(13_335)), (&paths_v6, origin(64_666))] {
        writer::routes(
            &mut stream,
            &peer(),
            RibKind::AdjRibInPre,
            &[],
            announced,
            Some(&attributes),
            true,
        );
    }
    writer::routes(
        &mut stream,
        &peer(),
        RibKind::AdjRibInPre,
        &[paths[0], paths_v6[1]],
        &[],
        None,
        true,
    );
    let mut decoder = Decoder::new();
    let mut buffer = stream;
    let mut events = Vec::new();
    while let Some(message) = split_message(&mut buffer).unwrap() {
        events.push(decoder.decode(message).unwrap());
    }
    let families = decoder.path_id_families(&peer()).unwrap();
    assert_eq!(families.adj_rib_in, vec![V4, V6]);
    assert_eq!(
        families.adj_rib_out,
        vec![V4],
        "the peer receives IPv6 paths but the router does not send them"
    );
    assert_eq!(routes_of(&events[1]), (vec![], paths.to_vec()));
    assert_eq!(routes_of(&events[2]), (vec![], paths_v6.to_vec()));
    let BmpEvent::Routes { attributes, .. } = &events[2] else {
        unreachable!()
    };
    assert_eq!(attributes.as_deref(), Some(&origin(64_666)));
    assert_eq!(
        routes_of(&events[3]),
        (vec![paths[0], paths_v6[1]], vec![]),
        "one path of each prefix withdrawn, not the prefix"
    );
}

#[test]
fn rfc8671_adj_rib_out_reads_path_ids_in_the_routers_direction_only() {
    // The router may send IPv4 paths, the peer may receive them: Adj-RIB-Out carries ids,
    // Adj-RIB-In does not (the peer did not offer to send).
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::peer_up_with_add_path(
        &peer(),
        RibKind::AdjRibInPre,
        &[(V4, writer::ADD_PATH_SEND)],
        &[(V4, writer::ADD_PATH_RECEIVE)],
    ));
    let sent = [route("192.0.2.0/24", 5), route("192.0.2.0/24", 6)];
    writer::routes(
        &mut stream,
        &peer(),
        RibKind::AdjRibOutPost,
        &[],
        &sent,
        Some(&origin(13_335)),
        true,
    );
    let received = [route("203.0.113.0/24", 0), route("203.0.114.0/24", 0)];
    writer::routes(
        &mut stream,
        &peer(),
        RibKind::AdjRibInPost,
        &[],
        &received,
        Some(&origin(64_666)),
        false,
    );
    let events = decode_stream(&stream);
    assert_eq!(events.1, None);
    assert_eq!(routes_of(&events.0[1]).1, sent.to_vec());
    assert_eq!(routes_of(&events.0[2]).1, received.to_vec());
}

#[test]
fn rfc9069_loc_rib_reads_path_ids_for_every_family_its_open_lists() {
    let loc_rib = PeerKey {
        address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        asn: 64_512,
        bgp_id: Ipv4Addr::new(192, 0, 2, 1),
        distinguisher: 0,
    };
    // The fabricated OPEN lists IPv6 only ("receive" or not: the listing is what counts).
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::peer_up_with_add_path(
        &loc_rib,
        RibKind::LocRib,
        &[(V6, writer::ADD_PATH_RECEIVE)],
        &[(V6, writer::ADD_PATH_RECEIVE)],
    ));
    let v6 = [route("2001:db8::/32", 1), route("2001:db8::/32", 3)];
    let v4 = [route("198.51.100.0/24", 0)];
    writer::routes(
        &mut stream,
        &loc_rib,
        RibKind::LocRib,
        &[],
        &v6,
        Some(&origin(13_335)),
        true,
    );
    writer::routes(
        &mut stream,
        &loc_rib,
        RibKind::LocRib,
        &[],
        &v4,
        Some(&origin(13_335)),
        false,
    );
    let (events, error) = decode_stream(&stream);
    assert_eq!(error, None);
    assert_eq!(routes_of(&events[1]).1, v6.to_vec());
    assert_eq!(routes_of(&events[2]).1, v4.to_vec());
}

#[test]
fn one_update_mixing_families_reads_each_with_its_own_layout() {
    // IPv4 without ids in the body next to IPv6 with ids in MP_REACH: written by hand, as
    // the writer gives every field the same layout.
    let mut decoder = Decoder::new();
    decoder
        .decode(Bytes::from(writer::peer_up_with_add_path(
            &peer(),
            RibKind::AdjRibInPre,
            &[(V6, writer::ADD_PATH_RECEIVE)],
            &[(V6, writer::ADD_PATH_SEND)],
        )))
        .unwrap();
    let mut attributes = Vec::new();
    attributes.extend_from_slice(&[0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xFB, 0xF4]);
    attributes.extend_from_slice(&[0x40, 3, 4, 192, 0, 2, 1]);
    // MP_REACH_NLRI: AFI 2, SAFI 1, next hop ::1, reserved, path id 9, 2001:db8::/32.
    let mut mp_reach = vec![0, 2, 1, 16];
    mp_reach.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    mp_reach.extend_from_slice(&[0, 0, 0, 0, 9, 32, 0x20, 0x01, 0x0d, 0xb8]);
    attributes.extend_from_slice(&[0x80, 14, mp_reach.len() as u8]);
    attributes.extend_from_slice(&mp_reach);
    let mut update = vec![0, 0];
    update.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    update.extend_from_slice(&attributes);
    update.extend_from_slice(&[24, 198, 51, 100, 24, 198, 51, 101]);
    let mut stream = BytesMut::new();
    writer::raw_route_monitoring(&mut stream, &peer(), RibKind::AdjRibInPre, &update);
    let event = decoder.decode(stream.freeze()).unwrap();
    let (_, mut announced) = routes_of(&event);
    announced.sort();
    assert_eq!(
        announced,
        vec![
            route("198.51.100.0/24", 0),
            route("198.51.101.0/24", 0),
            route("2001:db8::/32", 9),
        ]
    );
}

#[test]
fn a_router_that_strips_negotiated_ids_is_read_without_them_from_then_on() {
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::peer_up_with_add_path(
        &peer(),
        RibKind::AdjRibInPre,
        &[(V4, writer::ADD_PATH_BOTH)],
        &[(V4, writer::ADD_PATH_BOTH)],
    ));
    // One /24 without an id is 4 bytes: too short for an id and a length.
    let first = [route("198.51.100.0/24", 0)];
    // Two /24s without ids would also read as one route with an id: after the first
    // message the family is known to come without.
    let second = [route("203.0.113.0/24", 0), route("203.0.114.0/24", 0)];
    for announced in [&first[..], &second[..]] {
        writer::routes(
            &mut stream,
            &peer(),
            RibKind::AdjRibInPost,
            &[],
            announced,
            Some(&origin(13_335)),
            false,
        );
    }
    let (events, error) = decode_stream(&stream);
    assert_eq!(error, None);
    assert_eq!(routes_of(&events[1]).1, first.to_vec());
    assert_eq!(routes_of(&events[2]).1, second.to_vec());
}

#[test]
fn a_field_that_reads_neither_way_is_malformed() {
    let mut decoder = Decoder::new();
    // NLRI: one prefix of length 40 (over 32), with or without an id.
    let update = [0, 0, 0, 0, 40, 1, 2, 3, 4, 5];
    let mut stream = BytesMut::new();
    writer::raw_route_monitoring(&mut stream, &peer(), RibKind::AdjRibInPre, &update);
    assert!(matches!(
        decoder.decode(stream.freeze()),
        Err(BmpError::Malformed(_))
    ));
}

#[test]
fn peer_down_and_a_new_peer_up_forget_the_old_session_s_families() {
    let mut decoder = Decoder::new();
    let up = |families: &[((u16, u8), u8)]| {
        Bytes::from(writer::peer_up_with_add_path(
            &peer(),
            RibKind::AdjRibInPre,
            families,
            families,
        ))
    };
    decoder.decode(up(&[(V4, writer::ADD_PATH_BOTH)])).unwrap();
    assert!(decoder.path_id_families(&peer()).is_some());
    decoder.decode(up(&[])).unwrap();
    assert!(decoder.path_id_families(&peer()).is_none());
    decoder.decode(up(&[(V4, writer::ADD_PATH_BOTH)])).unwrap();
    decoder
        .decode(Bytes::from(writer::peer_down(&peer())))
        .unwrap();
    assert!(decoder.path_id_families(&peer()).is_none());
}

#[test]
fn frr_8_streams_are_read_without_the_path_ids_its_opens_negotiate() {
    assert!(never_sends_path_ids("FRRouting 8.4.4"));
    assert!(!never_sends_path_ids("FRRouting 10.2"));
    assert!(!never_sends_path_ids("topologyd BMP writer"));
    // FRR 8.4's OPENs: it offers Receive, the peer Send/Receive; its Route Monitoring
    // carries none. Two /24s would also read as one route with an id.
    let mut stream = BytesMut::new();
    stream.extend_from_slice(&writer::initiation_describing("edge1", "FRRouting 8.4.4"));
    stream.extend_from_slice(&writer::peer_up_with_add_path(
        &peer(),
        RibKind::AdjRibInPre,
        &[(V4, writer::ADD_PATH_RECEIVE)],
        &[(V4, writer::ADD_PATH_BOTH)],
    ));
    let sent = [route("1.1.1.0/24", 0), route("1.1.2.0/24", 0)];
    writer::routes(
        &mut stream,
        &peer(),
        RibKind::AdjRibInPre,
        &[],
        &sent,
        Some(&origin(64_666)),
        false,
    );
    let (events, error) = decode_stream(&stream);
    assert_eq!(error, None);
    assert_eq!(routes_of(&events[2]).1, sent.to_vec());
}
