//! Codec tests: round trips, RFC 7606 actions, and the covered `rustbgpd-wire` gaps.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::IpNet;

use super::*;

fn net(text: &str) -> IpNet {
    text.parse().unwrap_or_else(|_| IpNet::default())
}

fn attributes() -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: vec![AsPathSegment::Sequence(vec![65001, 65001, 4_200_000_000])],
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ipv6_next_hop: Some(Ipv6NextHop {
            global: "2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST),
            link_local: Some("fe80::1".parse().unwrap_or(Ipv6Addr::LOCALHOST)),
        }),
        med: Some(10),
        local_pref: None,
        atomic_aggregate: false,
        aggregator: None,
        communities: vec![0xfde8_0001, 0xffff_ff01],
        extended_communities: vec![0x0002_fde8_0000_0064],
        large_communities: vec![LargeCommunity {
            global_administrator: 65001,
            local_data_1: 1,
            local_data_2: 2,
        }],
        unknown: vec![RawAttribute {
            flags: 0xc0,
            type_code: 99,
            value: Bytes::from_static(b"opaque"),
        }],
    }
}

fn roundtrip(message: &Message, encode: &EncodeContext, decode: &DecodeContext) -> Message {
    let bytes = encode_message(message, encode).expect("encodes");
    decode_message(&bytes, decode).expect("decodes")
}

#[test]
fn rfc4271_4_4_keepalive_roundtrip() {
    let bytes = encode_message(&Message::Keepalive, &EncodeContext::default()).expect("encodes");
    assert_eq!(bytes.len(), 19);
    assert_eq!(
        decode_message(&bytes, &DecodeContext::default()),
        Ok(Message::Keepalive)
    );
}

#[test]
fn rfc4271_4_2_open_with_all_capabilities_roundtrip() {
    let open = Open {
        asn_field: AS_TRANS,
        hold_time: 90,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        capabilities: Capabilities {
            multiprotocol: vec![Family::Ipv4Unicast, Family::Ipv6Unicast],
            four_octet_asn: Some(4_200_000_001),
            route_refresh: true,
            enhanced_route_refresh: true,
            extended_message: true,
            graceful_restart: Some(GracefulRestartCapability {
                restart_state: true,
                notification: false,
                restart_time: 120,
                families: vec![
                    GracefulRestartFamily {
                        family: Family::Ipv4Unicast,
                        forwarding_preserved: true,
                    },
                    GracefulRestartFamily {
                        family: Family::Ipv6Unicast,
                        forwarding_preserved: true,
                    },
                ],
            }),
            other: Vec::new(),
        },
    };
    let decoded = roundtrip(
        &Message::Open(open.clone()),
        &EncodeContext::default(),
        &DecodeContext::default(),
    );
    assert_eq!(decoded, Message::Open(open.clone()));
    assert_eq!(open.asn(), 4_200_000_001);
}

#[test]
fn rfc6793_4_1_small_asn_uses_real_value_in_my_as() {
    assert_eq!(Open::asn_field_for(65001), 65001);
    assert_eq!(Open::asn_field_for(65536), AS_TRANS);
}

#[test]
fn rfc4271_4_5_notification_roundtrip() {
    let notification = Notification::max_prefixes(Family::Ipv6Unicast, 1000);
    assert_eq!(&notification.data[..], &[0, 2, 1, 0, 0, 3, 0xe8]);
    let decoded = roundtrip(
        &Message::Notification(notification.clone()),
        &EncodeContext::default(),
        &DecodeContext::default(),
    );
    assert_eq!(decoded, Message::Notification(notification));
}

#[test]
fn rfc7313_3_route_refresh_subtypes_roundtrip() {
    for subtype in [
        RouteRefreshSubtype::Request,
        RouteRefreshSubtype::Begin,
        RouteRefreshSubtype::End,
    ] {
        let refresh = RouteRefresh::new(Family::Ipv6Unicast, subtype);
        let decoded = roundtrip(
            &Message::RouteRefresh(refresh),
            &EncodeContext::default(),
            &DecodeContext::default(),
        );
        assert_eq!(decoded, Message::RouteRefresh(refresh));
    }
}

#[test]
fn rfc7313_5_borr_with_wrong_length_is_route_refresh_error() {
    let mut bytes = BytesMut::new();
    bytes.put_bytes(0xff, 16);
    bytes.put_u16(24);
    bytes.put_u8(5);
    bytes.put_slice(&[0, 1, 1, 1, 0]);
    let bytes = bytes.freeze();
    let error = decode_message(&bytes, &DecodeContext::default()).expect_err("rejected");
    assert_eq!(error.notification.code, error_code::ROUTE_REFRESH_MESSAGE);
    assert_eq!(error.notification.subcode, 1);
    assert_eq!(error.notification.data, bytes);
}

#[test]
fn rfc4271_6_1_short_notification_is_bad_message_length() {
    let mut bytes = BytesMut::new();
    bytes.put_bytes(0xff, 16);
    bytes.put_u16(20);
    bytes.put_u8(3);
    bytes.put_u8(6);
    let error = decode_message(&bytes.freeze(), &DecodeContext::default()).expect_err("rejected");
    assert_eq!(error.notification.code, error_code::MESSAGE_HEADER);
    assert_eq!(error.notification.subcode, error_code::BAD_MESSAGE_LENGTH);
    assert_eq!(&error.notification.data[..], &[0, 20]);
    assert!(
        !error.should_notify(),
        "RFC 4271 §6.4: never answer a NOTIFICATION"
    );
}

#[test]
fn rfc4271_6_1_bad_marker_is_connection_not_synchronized() {
    let mut bytes = vec![0xffu8; 16];
    bytes[3] = 0;
    bytes.extend_from_slice(&[0, 19, 4]);
    let error = next_frame(&bytes, MAX_MESSAGE_LEN).expect_err("rejected");
    assert_eq!(
        (error.notification.code, error.notification.subcode),
        (1, 1)
    );
}

#[test]
fn rfc4271_4_1_framing_needs_more_then_complete() {
    let keepalive = encode_message(&Message::Keepalive, &EncodeContext::default()).expect("ok");
    assert_eq!(
        next_frame(&keepalive[..10], MAX_MESSAGE_LEN),
        Ok(Frame::NeedMore { needed: 19 })
    );
    let mut two = keepalive.to_vec();
    two.extend_from_slice(&keepalive);
    assert_eq!(
        next_frame(&two, MAX_MESSAGE_LEN),
        Ok(Frame::Complete { length: 19 })
    );
    let update = encode_message(
        &Message::Update(Update {
            announced: vec![net("10.0.0.0/8")],
            attributes: attributes(),
            ..Update::default()
        }),
        &EncodeContext::default(),
    )
    .expect("ok");
    assert_eq!(
        next_frame(&update[..20], MAX_MESSAGE_LEN),
        Ok(Frame::NeedMore {
            needed: update.len()
        })
    );
}

#[test]
fn rfc8654_4_framing_rejects_large_message_unless_extended() {
    let mut header = vec![0xffu8; 16];
    header.extend_from_slice(&[0x20, 0x00, 2]);
    assert!(next_frame(&header, MAX_MESSAGE_LEN).is_err());
    assert_eq!(
        next_frame(&header, EXTENDED_MAX_MESSAGE_LEN),
        Ok(Frame::NeedMore { needed: 0x2000 })
    );
}

#[test]
fn rfc4271_4_3_update_ipv4_and_ipv6_roundtrip() {
    let update = Update {
        withdrawn: vec![net("192.0.2.0/24"), net("2001:db8:1::/48")],
        announced: vec![net("198.51.100.0/24"), net("2001:db8:2::/48")],
        attributes: attributes(),
        ..Update::default()
    };
    let decoded = roundtrip(
        &Message::Update(update.clone()),
        &EncodeContext::default(),
        &DecodeContext::default(),
    );
    let Message::Update(decoded) = decoded else {
        panic!("not an update");
    };
    assert_eq!(decoded.announced, update.announced);
    assert_eq!(decoded.withdrawn, update.withdrawn);
    let mut expected = update.attributes.clone();
    // RFC 4271 §5: an unrecognised optional transitive attribute is passed on with Partial set.
    expected.unknown[0].flags |= 0x20;
    assert_eq!(decoded.attributes, expected);
    assert_eq!(decoded.error_handling, UpdateErrorHandling::default());
}

#[test]
fn rfc6793_4_2_2_two_octet_peer_gets_as_trans_and_as4_path() {
    let update = Update {
        announced: vec![net("198.51.100.0/24")],
        attributes: attributes(),
        ..Update::default()
    };
    let two_octet = EncodeContext {
        max_message_len: MAX_MESSAGE_LEN,
        four_octet_as: false,
    };
    let bytes = encode_message(&Message::Update(update.clone()), &two_octet).expect("ok");
    // AS_TRANS appears in the 2-octet AS_PATH.
    assert!(bytes.windows(2).any(|pair| pair == AS_TRANS.to_be_bytes()));
    let decoded = decode_message(
        &bytes,
        &DecodeContext {
            four_octet_as: false,
            ..DecodeContext::default()
        },
    )
    .expect("decodes");
    let Message::Update(decoded) = decoded else {
        panic!("not an update");
    };
    assert_eq!(decoded.attributes.as_path, update.attributes.as_path);
}

#[test]
fn rfc4724_2_end_of_rib_markers_roundtrip() {
    for family in Family::ALL {
        let decoded = roundtrip(
            &Message::Update(Update::end_of_rib(family)),
            &EncodeContext::default(),
            &DecodeContext::default(),
        );
        let Message::Update(decoded) = decoded else {
            panic!("not an update");
        };
        assert_eq!(decoded.end_of_rib, Some(family));
        assert!(decoded.announced.is_empty() && decoded.withdrawn.is_empty());
    }
}

#[test]
fn rfc4271_4_3_attribute_over_65535_octets_is_refused_not_truncated() {
    let mut big = attributes();
    big.communities = vec![1; 20_000];
    let update = Update {
        announced: vec![net("10.0.0.0/8")],
        attributes: big,
        ..Update::default()
    };
    let result = encode_message(
        &Message::Update(update),
        &EncodeContext {
            max_message_len: EXTENDED_MAX_MESSAGE_LEN,
            four_octet_as: true,
        },
    );
    assert!(matches!(result, Err(EncodeError::AttributeTooLong { .. })));
}

#[test]
fn rfc8654_update_over_4096_needs_extended_messages() {
    let mut large = attributes();
    large.communities = vec![7; 1500];
    let update = Message::Update(Update {
        announced: vec![net("10.0.0.0/8")],
        attributes: large,
        ..Update::default()
    });
    assert!(matches!(
        encode_message(&update, &EncodeContext::default()),
        Err(EncodeError::MessageTooLong { .. })
    ));
    let extended = EncodeContext {
        max_message_len: EXTENDED_MAX_MESSAGE_LEN,
        four_octet_as: true,
    };
    let bytes = encode_message(&update, &extended).expect("fits in 65535");
    let decoded = decode_message(
        &bytes,
        &DecodeContext {
            max_message_len: EXTENDED_MAX_MESSAGE_LEN,
            ..DecodeContext::default()
        },
    );
    assert!(decoded.is_ok());
}

#[test]
fn encode_refuses_ipv6_route_without_ipv6_next_hop() {
    let mut attrs = attributes();
    attrs.ipv6_next_hop = None;
    let update = Message::Update(Update {
        announced: vec![net("2001:db8::/32")],
        attributes: attrs,
        ..Update::default()
    });
    assert!(matches!(
        encode_message(&update, &EncodeContext::default()),
        Err(EncodeError::Invalid(_))
    ));
}

#[test]
fn encode_refuses_as_set_rfc9774() {
    let mut attrs = attributes();
    attrs.as_path = vec![AsPathSegment::Set(vec![1, 2])];
    let update = Message::Update(Update {
        announced: vec![net("10.0.0.0/8")],
        attributes: attrs,
        ..Update::default()
    });
    assert!(encode_message(&update, &EncodeContext::default()).is_err());
}

/// Builds a raw UPDATE from body parts.
fn raw_update(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Bytes {
    let mut bytes = BytesMut::new();
    bytes.put_bytes(0xff, 16);
    bytes.put_u16(u16::try_from(23 + withdrawn.len() + attributes.len() + nlri.len()).unwrap_or(0));
    bytes.put_u8(2);
    bytes.put_u16(u16::try_from(withdrawn.len()).unwrap_or(0));
    bytes.put_slice(withdrawn);
    bytes.put_u16(u16::try_from(attributes.len()).unwrap_or(0));
    bytes.put_slice(attributes);
    bytes.put_slice(nlri);
    bytes.freeze()
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH_ONE: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 192, 0, 2, 1];

#[test]
fn rfc7606_3_missing_mandatory_attribute_is_treat_as_withdraw() {
    let attributes = [ORIGIN_IGP.as_slice(), NEXT_HOP.as_slice()].concat();
    let bytes = raw_update(&[], &attributes, &[24, 10, 0, 0]);
    let Ok(Message::Update(update)) = decode_message(&bytes, &DecodeContext::default()) else {
        panic!("should decode with treat-as-withdraw");
    };
    assert!(update.error_handling.treat_as_withdraw);
    assert_eq!(update.announced, vec![net("10.0.0.0/24")]);
}

#[test]
fn rfc7606_7_1_bad_origin_value_is_treat_as_withdraw() {
    let attributes = [
        [0x40, 1, 1, 7].as_slice(),
        AS_PATH_ONE.as_slice(),
        NEXT_HOP.as_slice(),
    ]
    .concat();
    let bytes = raw_update(&[], &attributes, &[24, 10, 0, 0]);
    let Ok(Message::Update(update)) = decode_message(&bytes, &DecodeContext::default()) else {
        panic!("should decode with treat-as-withdraw");
    };
    assert!(update.error_handling.treat_as_withdraw);
}

#[test]
fn rfc7606_7_7_bad_atomic_aggregate_is_attribute_discard() {
    let attributes = [
        ORIGIN_IGP.as_slice(),
        AS_PATH_ONE.as_slice(),
        NEXT_HOP.as_slice(),
        [0x40, 6, 1, 0].as_slice(),
    ]
    .concat();
    let bytes = raw_update(&[], &attributes, &[24, 10, 0, 0]);
    let Ok(Message::Update(update)) = decode_message(&bytes, &DecodeContext::default()) else {
        panic!("should decode with attribute discard");
    };
    assert!(!update.error_handling.treat_as_withdraw);
    assert_eq!(update.error_handling.discarded_attributes, vec![6]);
}

#[test]
fn rfc7606_5_3_malformed_nlri_is_session_reset() {
    let attributes = [
        ORIGIN_IGP.as_slice(),
        AS_PATH_ONE.as_slice(),
        NEXT_HOP.as_slice(),
    ]
    .concat();
    let bytes = raw_update(&[], &attributes, &[33, 10, 0, 0, 0, 0]);
    let error = decode_message(&bytes, &DecodeContext::default()).expect_err("reset");
    assert_eq!(error.notification.code, error_code::UPDATE_MESSAGE);
}

#[test]
fn rfc7606_7_11_malformed_mp_reach_is_session_reset() {
    let attributes = [
        ORIGIN_IGP.as_slice(),
        AS_PATH_ONE.as_slice(),
        [0x80, 14, 5, 0, 2, 1, 16, 0].as_slice(),
    ]
    .concat();
    let bytes = raw_update(&[], &attributes, &[]);
    let error = decode_message(&bytes, &DecodeContext::default()).expect_err("reset");
    assert_eq!(error.notification.code, error_code::UPDATE_MESSAGE);
}

#[test]
fn rfc7606_4_attribute_length_overrun_is_treat_as_withdraw() {
    let bytes = raw_update(&[], &[0x40, 1, 9, 0], &[]);
    let Ok(Message::Update(update)) = decode_message(&bytes, &DecodeContext::default()) else {
        panic!("RFC 7606 §4: treat-as-withdraw, not a reset");
    };
    assert!(update.error_handling.treat_as_withdraw);
}

#[test]
fn rfc4271_6_1_message_length_must_match_buffer() {
    let keepalive = encode_message(&Message::Keepalive, &EncodeContext::default()).expect("ok");
    let mut longer = keepalive.to_vec();
    longer.push(0);
    let error = decode_message(&Bytes::from(longer), &DecodeContext::default())
        .expect_err("length mismatch");
    assert_eq!(error.notification.code, error_code::MESSAGE_HEADER);
}

#[test]
fn rfc4271_6_2_open_with_bad_version_is_unsupported_version() {
    let mut bytes = BytesMut::new();
    bytes.put_bytes(0xff, 16);
    bytes.put_u16(29);
    bytes.put_u8(1);
    bytes.put_slice(&[3, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 0]);
    let error = decode_message(&bytes.freeze(), &DecodeContext::default()).expect_err("bad");
    assert_eq!(
        (error.notification.code, error.notification.subcode),
        (2, 1)
    );
}
