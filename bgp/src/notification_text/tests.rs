//! Every code and subcode of RFC 4271, 4486, 6608, 7313, 8203/9003, 8538 and 9687 in words.

use super::*;
use proptest::prelude::*;

const SENT: NotificationContext = NotificationContext {
    sent: true,
    local_asn: 13335,
    remote_asn: 64512,
    peer_open_asn: Some(64513),
};
const RECEIVED: NotificationContext = NotificationContext {
    sent: false,
    ..SENT
};

fn words(code: u8, subcode: u8, data: &[u8], context: &NotificationContext) -> String {
    describe(&Notification::new(code, subcode, data.to_vec()), context)
}

#[test]
fn rfc4271_every_code_and_subcode_has_a_name() {
    let expected: &[(u8, &[(u8, &str)])] = &[
        (
            1,
            &[
                (1, "Connection Not Synchronized"),
                (2, "Bad Message Length"),
                (3, "Bad Message Type"),
            ],
        ),
        (
            2,
            &[
                (1, "Unsupported Version Number"),
                (2, "Bad Peer AS"),
                (3, "Bad BGP Identifier"),
                (4, "Unsupported Optional Parameter"),
                (5, "Authentication Failure (deprecated)"),
                (6, "Unacceptable Hold Time"),
                (7, "Unsupported Capability"),
                (11, "Role Mismatch"),
            ],
        ),
        (
            3,
            &[
                (1, "Malformed Attribute List"),
                (2, "Unrecognized Well-known Attribute"),
                (3, "Missing Well-known Attribute"),
                (4, "Attribute Flags Error"),
                (5, "Attribute Length Error"),
                (6, "Invalid ORIGIN Attribute"),
                (7, "AS Routing Loop (deprecated)"),
                (8, "Invalid NEXT_HOP Attribute"),
                (9, "Optional Attribute Error"),
                (10, "Invalid Network Field"),
                (11, "Malformed AS_PATH"),
            ],
        ),
        (
            5,
            &[
                (0, "Unspecified Error"),
                (1, "Unexpected Message in OpenSent"),
                (2, "Unexpected Message in OpenConfirm"),
                (3, "Unexpected Message in Established"),
            ],
        ),
        (
            6,
            &[
                (1, "Maximum Number of Prefixes Reached"),
                (2, "Administrative Shutdown"),
                (3, "Peer De-configured"),
                (4, "Administrative Reset"),
                (5, "Connection Rejected"),
                (6, "Other Configuration Change"),
                (7, "Connection Collision Resolution"),
                (8, "Out of Resources"),
                (9, "Hard Reset"),
                (10, "BFD Down"),
            ],
        ),
        (7, &[(1, "Invalid Message Length")]),
    ];
    for (code, subcodes) in expected {
        let code_text = code_name(*code).unwrap_or_else(|| panic!("code {code} unnamed"));
        for (subcode, name) in *subcodes {
            assert_eq!(subcode_name(*code, *subcode), Some(*name));
            let text = words(*code, *subcode, &[], &SENT);
            assert!(
                text.starts_with(&format!("{code_text} / {name}")),
                "{code}/{subcode}: {text}"
            );
        }
    }
}

#[test]
fn timers_without_subcodes_are_named_alone() {
    assert_eq!(words(4, 0, &[], &RECEIVED), "Hold Timer Expired");
    assert_eq!(words(8, 0, &[], &SENT), "Send Hold Timer Expired");
}

#[test]
fn rfc4271_bad_peer_as_names_what_was_expected_and_what_came() {
    assert_eq!(
        words(2, 2, &64513_u16.to_be_bytes(), &SENT),
        "OPEN message error / Bad Peer AS: expected 64512, the peer sent 64513 \
         (check the peer's asn in topologyd.toml)"
    );
    // A 4-octet AS: the OPEN's field is AS_TRANS; the session knows the real one.
    let four_octet = NotificationContext {
        peer_open_asn: Some(4_200_000_000),
        ..SENT
    };
    assert!(
        words(2, 2, &AS_TRANS.to_be_bytes(), &four_octet)
            .contains("expected 64512, the peer sent 4200000000")
    );
    // Without the session's knowledge, the data's value.
    let unknown = NotificationContext {
        peer_open_asn: None,
        ..SENT
    };
    assert!(words(2, 2, &[0xfc, 0x01], &unknown).contains("the peer sent 64513"));
    assert_eq!(
        words(2, 2, &[0xfc, 0x00], &RECEIVED),
        "OPEN message error / Bad Peer AS: the peer does not accept our AS 13335 (it saw 64512) \
         (check the AS it expects for us)"
    );
}

#[test]
fn header_open_and_fsm_data_are_decoded() {
    assert_eq!(
        words(1, 2, &[0x00, 0x0c], &RECEIVED),
        "Message Header error / Bad Message Length: length 12"
    );
    assert_eq!(
        words(1, 3, &[9], &RECEIVED),
        "Message Header error / Bad Message Type: message type 9"
    );
    assert_eq!(
        words(2, 1, &[0, 4], &RECEIVED),
        "OPEN message error / Unsupported Version Number: the largest version supported is 4"
    );
    assert_eq!(
        words(2, 3, &[0, 0, 0, 0], &SENT),
        "OPEN message error / Bad BGP Identifier: identifier 0.0.0.0"
    );
    assert_eq!(
        words(5, 2, &[2], &SENT),
        "Finite State Machine error / Unexpected Message in OpenConfirm: a UPDATE message"
    );
    assert_eq!(
        words(2, 7, &[65, 4, 0, 0, 0xfd, 0xe8, 2, 0], &RECEIVED),
        "OPEN message error / Unsupported Capability: capabilities 4-octet AS (65), route refresh (2)"
    );
}

#[test]
fn update_errors_name_the_attribute() {
    assert_eq!(
        words(3, 3, &[3], &RECEIVED),
        "UPDATE message error / Missing Well-known Attribute: attribute NEXT_HOP (3)"
    );
    assert_eq!(
        words(3, 4, &[0x40, 1, 1, 0], &RECEIVED),
        "UPDATE message error / Attribute Flags Error: attribute ORIGIN (1)"
    );
    assert_eq!(
        words(3, 1, &[], &RECEIVED),
        "UPDATE message error / Malformed Attribute List"
    );
}

#[test]
fn rfc4486_max_prefixes_names_the_family_and_limit() {
    let notification = Notification::max_prefixes(crate::codec::Family::Ipv6Unicast, 1000);
    assert_eq!(
        describe(&notification, &SENT),
        "Cease / Maximum Number of Prefixes Reached: IPv6 unicast limit 1000"
    );
}

#[test]
fn rfc8203_shutdown_communication_is_quoted() {
    let text = "maintenance \u{2014} ok";
    let mut data = vec![u8::try_from(text.len()).unwrap_or(0)];
    data.extend_from_slice(text.as_bytes());
    assert_eq!(
        words(6, 2, &data, &RECEIVED),
        "Cease / Administrative Shutdown: \"maintenance \u{2014} ok\""
    );
    let mut reset = vec![5];
    reset.extend_from_slice(b"a\nbcd");
    assert_eq!(
        words(6, 4, &reset, &RECEIVED),
        "Cease / Administrative Reset: \"a bcd\""
    );
    assert_eq!(
        words(6, 2, &[], &RECEIVED),
        "Cease / Administrative Shutdown"
    );
    assert_eq!(
        words(6, 2, &[0], &RECEIVED),
        "Cease / Administrative Shutdown"
    );
    assert_eq!(
        words(6, 2, &[9, b'a'], &RECEIVED),
        "Cease / Administrative Shutdown: a shutdown communication of 9 octets with only 1 present: 61"
    );
    assert_eq!(
        words(6, 2, &[2, 0xff, 0xfe], &RECEIVED),
        "Cease / Administrative Shutdown: a shutdown communication that is not UTF-8: fffe"
    );
}

#[test]
fn rfc8538_hard_reset_names_the_inner_error() {
    assert_eq!(
        words(6, 9, &[6, 2, 4, b'b', b'y', b'e', b'!'], &RECEIVED),
        "Cease / Hard Reset: (Cease / Administrative Shutdown: \"bye!\")"
    );
}

#[test]
fn rfc7313_route_refresh_error_shows_its_data() {
    assert_eq!(
        words(7, 1, &[0, 1, 0, 1], &RECEIVED),
        "ROUTE-REFRESH message error / Invalid Message Length: data 00010001"
    );
}

#[test]
fn unknown_codes_are_named_by_number_with_their_data() {
    assert_eq!(
        words(42, 7, &[1, 2], &RECEIVED),
        "error code 42 / subcode 7: data 0102"
    );
    assert_eq!(words(6, 99, &[], &RECEIVED), "Cease / subcode 99");
}

#[test]
fn down_reasons_in_words() {
    let reason = DownReason::NotificationSent(Notification::new(2, 2, vec![0xfc, 0x01]));
    assert_eq!(
        describe_down_reason(&reason, &RECEIVED),
        "NOTIFICATION sent: OPEN message error / Bad Peer AS: expected 64512, the peer sent 64513 \
         (check the peer's asn in topologyd.toml)"
    );
    assert!(
        describe_down_reason(&DownReason::HoldTimerExpired, &SENT)
            .starts_with("hold timer expired")
    );
    assert_eq!(
        describe_down_reason(&DownReason::TransportClosed, &SENT),
        "the TCP connection closed"
    );
}

proptest! {
    /// Any NOTIFICATION, whatever its data, is described without a panic, on one line, and
    /// starts with its code's name (or number).
    #[test]
    fn any_notification_is_described_on_one_line(
        code in any::<u8>(),
        subcode in any::<u8>(),
        data in proptest::collection::vec(any::<u8>(), 0..300),
        sent in any::<bool>(),
    ) {
        let context = NotificationContext { sent, ..SENT };
        let text = words(code, subcode, &data, &context);
        prop_assert!(!text.contains('\n'), "{}", text);
        let start = code_name(code).map_or_else(|| format!("error code {code}"), str::to_owned);
        prop_assert!(text.starts_with(&start), "{}", text);
    }
}
