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
