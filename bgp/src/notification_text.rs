//! BGP NOTIFICATIONs and session-down reasons in words, for logs and `/v1/status`: the error
//! code and subcode by name, and the data decoded where an RFC gives it a meaning.
//!
//! Codes and subcodes: RFC 4271 §4.5 and §6 (message header, OPEN, UPDATE, hold timer, FSM,
//! Cease), RFC 5492 §5 (Unsupported Capability), RFC 6608 §3 (FSM subcodes), RFC 4486 §4 (Cease
//! subcodes), RFC 8203 / RFC 9003 (the shutdown communication of Administrative Shutdown and
//! Reset), RFC 8538 §3 (Hard Reset), RFC 7313 §5 (ROUTE-REFRESH message error), RFC 9687 §3 (Send
//! Hold Timer Expired), RFC 9234 §4.2 (Role Mismatch), RFC 9384 (BFD Down).
//!
//! Pure: no I/O, no clock. Unknown codes and subcodes are named by number with their data in
//! hex, never dropped.

use std::fmt::Write as _;

use crate::codec::{AS_TRANS, Notification};
use crate::session::DownReason;

/// Who sent the NOTIFICATION and what each side's AS is, to word the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationContext {
    /// `true`: we sent it; `false`: the peer did.
    pub sent: bool,
    /// Our AS number.
    pub local_asn: u32,
    /// The AS number configured for the peer.
    pub remote_asn: u32,
    /// The AS number in the peer's last OPEN (the 4-octet capability's, if any).
    pub peer_open_asn: Option<u32>,
}

/// The name of an error code.
#[must_use]
pub fn code_name(code: u8) -> Option<&'static str> {
    Some(match code {
        1 => "Message Header error",
        2 => "OPEN message error",
        3 => "UPDATE message error",
        4 => "Hold Timer Expired",
        5 => "Finite State Machine error",
        6 => "Cease",
        7 => "ROUTE-REFRESH message error",
        8 => "Send Hold Timer Expired",
        _ => return None,
    })
}

/// The name of a subcode of `code`.
#[must_use]
pub fn subcode_name(code: u8, subcode: u8) -> Option<&'static str> {
    Some(match (code, subcode) {
        (1, 1) => "Connection Not Synchronized",
        (1, 2) => "Bad Message Length",
        (1, 3) => "Bad Message Type",
        (2, 1) => "Unsupported Version Number",
        (2, 2) => "Bad Peer AS",
        (2, 3) => "Bad BGP Identifier",
        (2, 4) => "Unsupported Optional Parameter",
        (2, 5) => "Authentication Failure (deprecated)",
        (2, 6) => "Unacceptable Hold Time",
        (2, 7) => "Unsupported Capability",
        (2, 11) => "Role Mismatch",
        (3, 1) => "Malformed Attribute List",
        (3, 2) => "Unrecognized Well-known Attribute",
        (3, 3) => "Missing Well-known Attribute",
        (3, 4) => "Attribute Flags Error",
        (3, 5) => "Attribute Length Error",
        (3, 6) => "Invalid ORIGIN Attribute",
        (3, 7) => "AS Routing Loop (deprecated)",
        (3, 8) => "Invalid NEXT_HOP Attribute",
        (3, 9) => "Optional Attribute Error",
        (3, 10) => "Invalid Network Field",
        (3, 11) => "Malformed AS_PATH",
        (5, 0) => "Unspecified Error",
        (5, 1) => "Unexpected Message in OpenSent",
        (5, 2) => "Unexpected Message in OpenConfirm",
        (5, 3) => "Unexpected Message in Established",
        (6, 1) => "Maximum Number of Prefixes Reached",
        (6, 2) => "Administrative Shutdown",
        (6, 3) => "Peer De-configured",
        (6, 4) => "Administrative Reset",
        (6, 5) => "Connection Rejected",
        (6, 6) => "Other Configuration Change",
        (6, 7) => "Connection Collision Resolution",
        (6, 8) => "Out of Resources",
        (6, 9) => "Hard Reset",
        (6, 10) => "BFD Down",
        (7, 1) => "Invalid Message Length",
        _ => return None,
    })
}

/// A NOTIFICATION in words: `OPEN message error / Bad Peer AS: expected 64512, the peer sent
/// 64513`. Codes without subcodes (hold timer, send hold timer) show no subcode when it is 0.
#[must_use]
pub fn describe(notification: &Notification, context: &NotificationContext) -> String {
    let (code, subcode) = (notification.code, notification.subcode);
    let mut text = match code_name(code) {
        Some(name) => name.to_owned(),
        None => format!("error code {code}"),
    };
    match subcode_name(code, subcode) {
        Some(name) => {
            let _ = write!(text, " / {name}");
        }
        None if subcode == 0 => {}
        None => {
            let _ = write!(text, " / subcode {subcode}");
        }
    }
    if let Some(detail) = data_in_words(notification, context) {
        let _ = write!(text, ": {detail}");
    }
    text
}

/// What the data says, when there is any.
fn data_in_words(notification: &Notification, context: &NotificationContext) -> Option<String> {
    let data = notification.data.as_ref();
    let known = match (notification.code, notification.subcode) {
        (2, 2) => Some(bad_peer_as(data, context)),
        (1, 2) | (2, 1) if data.len() == 2 => {
            let value = u16::from_be_bytes([data[0], data[1]]);
            Some(if notification.code == 1 {
                format!("length {value}")
            } else {
                format!("the largest version supported is {value}")
            })
        }
        (1, 3) if data.len() == 1 => Some(format!("message type {}", data[0])),
        (5, 1..=3) if data.len() == 1 => Some(format!(
            "a {} message",
            message_type_name(data[0]).unwrap_or("unknown")
        )),
        (2, 3) if data.len() == 4 => Some(format!(
            "identifier {}.{}.{}.{}",
            data[0], data[1], data[2], data[3]
        )),
        (3, 2..=6 | 8 | 9 | 11) if !data.is_empty() => attribute_detail(data),
        (2, 7) if !data.is_empty() => Some(capabilities(data)),
        (6, 1) if data.len() == 7 => {
            let afi = u16::from_be_bytes([data[0], data[1]]);
            let limit = u32::from_be_bytes([data[3], data[4], data[5], data[6]]);
            Some(format!(
                "{} limit {limit}",
                family_name(afi, data[2]).unwrap_or("AFI/SAFI")
            ))
        }
        (6, 2 | 4) => Some(shutdown_communication(data)),
        (6, 9) if data.len() >= 2 => {
            let inner = Notification::new(data[0], data[1], data[2..].to_vec());
            Some(format!("({})", describe(&inner, context)))
        }
        _ => None,
    };
    match known {
        Some(text) if text.is_empty() => None,
        Some(text) => Some(text),
        None if data.is_empty() => None,
        None => Some(format!("data {}", hex(data))),
    }
}

fn bad_peer_as(data: &[u8], context: &NotificationContext) -> String {
    let from_data = (data.len() == 2).then(|| u32::from(u16::from_be_bytes([data[0], data[1]])));
    if context.sent {
        let theirs = context
            .peer_open_asn
            .or(from_data)
            .map_or_else(|| "another AS".to_owned(), |asn| asn.to_string());
        format!(
            "expected {}, the peer sent {theirs} (check the peer's asn in topologyd.toml)",
            context.remote_asn
        )
    } else {
        let named = match from_data {
            Some(asn) if asn == u32::from(AS_TRANS) => " (it saw AS_TRANS 23456)".to_owned(),
            Some(asn) => format!(" (it saw {asn})"),
            None => String::new(),
        };
        format!(
            "the peer does not accept our AS {}{named} (check the AS it expects for us)",
            context.local_asn
        )
    }
}

fn message_type_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        1 => "OPEN",
        2 => "UPDATE",
        3 => "NOTIFICATION",
        4 => "KEEPALIVE",
        5 => "ROUTE-REFRESH",
        _ => return None,
    })
}

fn attribute_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        1 => "ORIGIN",
        2 => "AS_PATH",
        3 => "NEXT_HOP",
        4 => "MULTI_EXIT_DISC",
        5 => "LOCAL_PREF",
        6 => "ATOMIC_AGGREGATE",
        7 => "AGGREGATOR",
        8 => "COMMUNITIES",
        14 => "MP_REACH_NLRI",
        15 => "MP_UNREACH_NLRI",
        16 => "EXTENDED_COMMUNITIES",
        17 => "AS4_PATH",
        18 => "AS4_AGGREGATOR",
        32 => "LARGE_COMMUNITIES",
        _ => return None,
    })
}

/// UPDATE errors carry the attribute (flags, type, length, value) or, for Missing Well-known
/// Attribute, its type code alone.
fn attribute_detail(data: &[u8]) -> Option<String> {
    let kind = if data.len() == 1 { data[0] } else { data[1] };
    let name = attribute_name(kind)
        .map_or_else(|| format!("type {kind}"), |name| format!("{name} ({kind})"));
    Some(format!("attribute {name}"))
}

fn family_name(afi: u16, safi: u8) -> Option<&'static str> {
    match (afi, safi) {
        (1, 1) => Some("IPv4 unicast"),
        (2, 1) => Some("IPv6 unicast"),
        _ => None,
    }
}

/// Unsupported Capability data: a list of (code, length, value).
fn capabilities(data: &[u8]) -> String {
    let mut codes = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let length = usize::from(rest[1]);
        codes.push(match rest[0] {
            1 => "multiprotocol (1)".to_owned(),
            2 => "route refresh (2)".to_owned(),
            6 => "extended message (6)".to_owned(),
            64 => "graceful restart (64)".to_owned(),
            65 => "4-octet AS (65)".to_owned(),
            69 => "ADD-PATH (69)".to_owned(),
            70 => "enhanced route refresh (70)".to_owned(),
            other => format!("code {other}"),
        });
        rest = rest.get(2 + length..).unwrap_or_default();
    }
    format!("capabilities {}", codes.join(", "))
}

/// RFC 8203 (RFC 9003): a length octet, then that many octets of UTF-8. No data: no message.
fn shutdown_communication(data: &[u8]) -> String {
    let Some((&length, rest)) = data.split_first() else {
        return String::new();
    };
    let length = usize::from(length);
    if length == 0 {
        return String::new();
    }
    match rest.get(..length).map(std::str::from_utf8) {
        Some(Ok(text)) => {
            let cleaned: String = text
                .chars()
                .map(|character| {
                    if character.is_control() {
                        ' '
                    } else {
                        character
                    }
                })
                .collect();
            format!("\"{cleaned}\"")
        }
        Some(Err(_)) => format!("a shutdown communication that is not UTF-8: {}", hex(rest)),
        None => format!(
            "a shutdown communication of {length} octets with only {} present: {}",
            rest.len(),
            hex(rest)
        ),
    }
}

fn hex(data: &[u8]) -> String {
    const SHOWN: usize = 32;
    let mut text: String = data
        .iter()
        .take(SHOWN)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if data.len() > SHOWN {
        let _ = write!(text, "… ({} octets)", data.len());
    }
    text
}

/// Why a session went down, in words, with the NOTIFICATION decoded.
#[must_use]
pub fn describe_down_reason(reason: &DownReason, context: &NotificationContext) -> String {
    match reason {
        DownReason::ManualStop => "stopped by this daemon (stop or reconfiguration)".to_owned(),
        DownReason::NotificationReceived(notification) => format!(
            "NOTIFICATION received: {}",
            describe(
                notification,
                &NotificationContext {
                    sent: false,
                    ..*context
                }
            )
        ),
        DownReason::NotificationSent(notification) => format!(
            "NOTIFICATION sent: {}",
            describe(
                notification,
                &NotificationContext {
                    sent: true,
                    ..*context
                }
            )
        ),
        DownReason::HoldTimerExpired => {
            "hold timer expired: nothing received from the peer for the hold time".to_owned()
        }
        DownReason::SendHoldTimerExpired => {
            "send hold timer expired: the peer took no message for the send hold time".to_owned()
        }
        DownReason::TransportClosed => "the TCP connection closed".to_owned(),
        DownReason::CollisionLost => {
            "closed by connection collision resolution (RFC 4271 6.8); the other connection lives"
                .to_owned()
        }
    }
}

#[cfg(test)]
mod tests;
