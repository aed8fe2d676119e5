//! BGP message codec: our message types, framing, decoding with RFC 7606 error actions, and
//! encoding. The ONLY module that touches `rustbgpd-wire` (pinned `=0.27.0`; it ships breaking
//! releases about weekly, so everything above this module sees only our own types).
//!
//! Owns: [`Message`] and its parts, [`next_frame`] (transport framing for the driver),
//! [`decode_message`], [`encode_message`], and the byte layout of UPDATE messages used by the
//! Adj-RIB-Out packer ([`update`]). Must not touch: sessions, timers, sockets.
//!
//! RFCs: RFC 4271 §4 (message formats) and §6 (error handling), RFC 7606 (revised UPDATE error
//! handling: treat-as-withdraw, attribute discard, session reset), RFC 4760 (MP-BGP), RFC 5492
//! (capabilities), RFC 6793 (4-octet AS, AS_TRANS), RFC 2918 + RFC 7313 (route refresh,
//! BoRR/EoRR), RFC 4724 §3 (graceful restart capability), RFC 8654 (extended messages),
//! RFC 9687 (Send Hold Timer Expired code).
//!
//! Gaps of `rustbgpd-wire` 0.27 covered here (each marked `wire gap` below):
//! - it has no UPDATE packer: [`update`] writes UPDATEs by hand and always gives MP_REACH and
//!   MP_UNREACH a 2-octet length (extended-length flag) so the size is known up front;
//! - `UpdateMessage::try_build` validates nothing: we never call it; [`encode_message`] checks
//!   next hops, family placement and sizes itself;
//! - a NOTIFICATION shorter than 21 octets maps to an OPEN error: we check the per-type minimum
//!   lengths of RFC 4271 §6.1 first and report Message Header Error / Bad Message Length;
//! - a BoRR/EoRR of the wrong length is accepted: we check RFC 7313 §5 ourselves;
//! - `encode_path_attributes` truncates an attribute over 65,535 octets: we bound every value
//!   first (see `attributes::encode_attributes`) and check whole messages against the limit.

pub mod attributes;
pub mod nlri;
pub mod update;

use std::fmt;
use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rustbgpd_wire as wire;
use thiserror::Error;

pub use attributes::{
    Aggregator, AsPathSegment, Ipv6NextHop, LargeCommunity, Origin, PathAttributes, RawAttribute,
};

/// Length of the fixed message header (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;
/// Maximum message size without extended messages (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: u16 = 4096;
/// Maximum message size once extended messages are negotiated (RFC 8654 §4).
pub const EXTENDED_MAX_MESSAGE_LEN: u16 = 65535;
/// AS_TRANS (RFC 6793 §9): the 2-octet AS placeholder for 4-octet AS numbers.
pub const AS_TRANS: u16 = 23456;

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
pub mod message_type {
    /// OPEN.
    pub const OPEN: u8 = 1;
    /// UPDATE.
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION.
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE.
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH.
    pub const ROUTE_REFRESH: u8 = 5;
}

/// NOTIFICATION error codes and subcodes used by this crate.
pub mod error_code {
    /// Message Header Error (RFC 4271 §4.5).
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error (subcodes: RFC 6608 §3).
    pub const FSM: u8 = 5;
    /// Cease (subcodes: RFC 4486 §4).
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313 §5).
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
    /// Send Hold Timer Expired (RFC 9687 §3).
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;

    /// Message Header Error subcode: Bad Message Length.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// OPEN subcode: Unsupported Version Number.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// OPEN subcode: Bad Peer AS.
    pub const BAD_PEER_AS: u8 = 2;
    /// OPEN subcode: Bad BGP Identifier.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// OPEN subcode: Unacceptable Hold Time.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    /// OPEN subcode: Unsupported Capability (RFC 5492 §5).
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    /// FSM subcode: unexpected message in OpenSent (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    /// FSM subcode: unexpected message in OpenConfirm (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    /// FSM subcode: unexpected message in Established (RFC 6608).
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    /// Cease subcode: Maximum Number of Prefixes Reached (RFC 4486 §4).
    pub const CEASE_MAX_PREFIXES: u8 = 1;
    /// Cease subcode: Administrative Shutdown.
    pub const CEASE_ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// Cease subcode: Peer De-configured.
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    /// Cease subcode: Administrative Reset.
    pub const CEASE_ADMINISTRATIVE_RESET: u8 = 4;
    /// Cease subcode: Connection Collision Resolution (RFC 4271 §6.8).
    pub const CEASE_CONNECTION_COLLISION: u8 = 7;
    /// ROUTE-REFRESH subcode: Invalid Message Length (RFC 7313 §5).
    pub const ROUTE_REFRESH_INVALID_LENGTH: u8 = 1;
}

/// Address families this speaker handles (AFI/SAFI of RFC 4760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// AFI 1, SAFI 1.
    Ipv4Unicast,
    /// AFI 2, SAFI 1.
    Ipv6Unicast,
}

impl Family {
    /// Both families, in wire order.
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    /// AFI value.
    #[must_use]
    pub const fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => 1,
            Family::Ipv6Unicast => 2,
        }
    }

    /// SAFI value.
    #[must_use]
    pub const fn safi(self) -> u8 {
        1
    }

    /// The family for an AFI/SAFI pair, if we handle it.
    #[must_use]
    pub const fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4Unicast),
            (2, 1) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }

    /// The family of a prefix.
    #[must_use]
    pub const fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }

    fn to_wire(self) -> (wire::Afi, wire::Safi) {
        match self {
            Family::Ipv4Unicast => (wire::Afi::Ipv4, wire::Safi::Unicast),
            Family::Ipv6Unicast => (wire::Afi::Ipv6, wire::Safi::Unicast),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Ipv6Unicast => "ipv6-unicast",
        })
    }
}

/// Per-family part of the graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// Forwarding State bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// Graceful restart capability (RFC 4724 §3; the N bit is RFC 8538).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestartCapability {
    /// Restart State (R) bit: the sender has restarted.
    pub restart_state: bool,
    /// Graceful Notification (N) bit (RFC 8538).
    pub notification: bool,
    /// Restart Time in seconds (12 bits, 0..=4095).
    pub restart_time: u16,
    /// Families for which the sender preserves state.
    pub families: Vec<GracefulRestartFamily>,
}

/// Capabilities of an OPEN (RFC 5492), restricted to what this speaker understands; others are
/// listed by code so they can be logged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Multiprotocol families (RFC 4760 §8). Empty means "IPv4 unicast only" (RFC 4760 §8).
    pub multiprotocol: Vec<Family>,
    /// 4-octet AS number (RFC 6793 §3).
    pub four_octet_asn: Option<u32>,
    /// Route refresh (RFC 2918 §2).
    pub route_refresh: bool,
    /// Enhanced route refresh (RFC 7313 §3).
    pub enhanced_route_refresh: bool,
    /// Extended messages (RFC 8654 §3).
    pub extended_message: bool,
    /// Graceful restart (RFC 4724 §3).
    pub graceful_restart: Option<GracefulRestartCapability>,
    /// Codes of capabilities (or multiprotocol families) we do not use.
    pub other: Vec<u8>,
}

/// OPEN message (RFC 4271 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet My Autonomous System field (AS_TRANS for 4-octet AS numbers).
    pub asn_field: u16,
    /// Proposed hold time, seconds.
    pub hold_time: u16,
    /// BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Capabilities.
    pub capabilities: Capabilities,
}

impl Open {
    /// The speaker's AS number: the 4-octet capability if present, else the 2-octet field
    /// (RFC 6793 §4.1).
    #[must_use]
    pub fn asn(&self) -> u32 {
        self.capabilities
            .four_octet_asn
            .unwrap_or(u32::from(self.asn_field))
    }

    /// The 2-octet My Autonomous System value for `asn` (RFC 6793 §4.1).
    #[must_use]
    pub fn asn_field_for(asn: u32) -> u16 {
        u16::try_from(asn).unwrap_or(AS_TRANS)
    }
}

/// NOTIFICATION message (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code (see [`error_code`]).
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Data.
    pub data: Bytes,
}

impl Notification {
    /// A NOTIFICATION with the given code, subcode and data.
    #[must_use]
    pub fn new(code: u8, subcode: u8, data: impl Into<Bytes>) -> Self {
        Self {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// Cease / Maximum Number of Prefixes Reached with the RFC 4486 §4 data: AFI (2), SAFI (1),
    /// upper bound (4).
    #[must_use]
    pub fn max_prefixes(family: Family, limit: u32) -> Self {
        let mut data = BytesMut::with_capacity(7);
        data.put_u16(family.afi());
        data.put_u8(family.safi());
        data.put_u32(limit);
        Self::new(
            error_code::CEASE,
            error_code::CEASE_MAX_PREFIXES,
            data.freeze(),
        )
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "NOTIFICATION {}/{} ({} data octets)",
            self.code,
            self.subcode,
            self.data.len()
        )
    }
}

/// ROUTE-REFRESH message subtype (RFC 7313 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteRefreshSubtype {
    /// 0: a refresh request (RFC 2918).
    Request,
    /// 1: Beginning of Route Refresh.
    Begin,
    /// 2: End of Route Refresh.
    End,
    /// Anything else: must be ignored (RFC 7313 §5).
    Reserved(u8),
}

/// ROUTE-REFRESH message (RFC 2918 §3, RFC 7313 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// AFI.
    pub afi: u16,
    /// SAFI.
    pub safi: u8,
    /// Subtype.
    pub subtype: RouteRefreshSubtype,
}

impl RouteRefresh {
    /// A message of `subtype` for `family`.
    #[must_use]
    pub fn new(family: Family, subtype: RouteRefreshSubtype) -> Self {
        Self {
            afi: family.afi(),
            safi: family.safi(),
            subtype,
        }
    }

    /// The family, if it is one we handle.
    #[must_use]
    pub fn family(&self) -> Option<Family> {
        Family::from_afi_safi(self.afi, self.safi)
    }
}

/// What RFC 7606 decided for a received UPDATE that was not bad enough to reset the session.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateErrorHandling {
    /// RFC 7606 §2 treat-as-withdraw: the announced prefixes must be handled as withdrawn.
    pub treat_as_withdraw: bool,
    /// RFC 7606 §2 attribute discard: type codes of attributes that were dropped.
    pub discarded_attributes: Vec<u8>,
}

/// UPDATE message (RFC 4271 §4.3, RFC 4760 §3-4). IPv4 prefixes travel in the classic fields,
/// IPv6 ones in MP_REACH_NLRI / MP_UNREACH_NLRI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn prefixes.
    pub withdrawn: Vec<IpNet>,
    /// Announced prefixes, all with `attributes`.
    pub announced: Vec<IpNet>,
    /// Path attributes of the announced prefixes (ignored when nothing is announced).
    pub attributes: PathAttributes,
    /// Set on decode when this UPDATE is an End-of-RIB marker (RFC 4724 §2).
    pub end_of_rib: Option<Family>,
    /// Set on decode: RFC 7606 actions taken.
    pub error_handling: UpdateErrorHandling,
    /// Set on decode: prefixes of families we do not handle (MP NLRI of other AFI/SAFI).
    pub other_family_prefixes: usize,
}

impl Update {
    /// The End-of-RIB marker for `family` (RFC 4724 §2).
    #[must_use]
    pub fn end_of_rib(family: Family) -> Self {
        Self {
            end_of_rib: Some(family),
            ..Self::default()
        }
    }
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
    /// ROUTE-REFRESH.
    RouteRefresh(RouteRefresh),
}

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeContext {
    /// 4096, or 65535 once extended messages are negotiated (RFC 8654).
    pub max_message_len: u16,
    /// AS_PATH carries 4-octet AS numbers (RFC 6793 negotiated).
    pub four_octet_as: bool,
    /// The peer is internal (changes RFC 7606 actions for LOCAL_PREF and friends).
    pub internal_peer: bool,
}

impl Default for DecodeContext {
    fn default() -> Self {
        Self {
            max_message_len: MAX_MESSAGE_LEN,
            four_octet_as: true,
            internal_peer: false,
        }
    }
}

/// What the encoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeContext {
    /// 4096, or 65535 once extended messages are negotiated (RFC 8654; OPEN and KEEPALIVE
    /// stay at 4096).
    pub max_message_len: u16,
    /// Encode AS_PATH with 4-octet AS numbers.
    pub four_octet_as: bool,
}

impl Default for EncodeContext {
    fn default() -> Self {
        Self {
            max_message_len: MAX_MESSAGE_LEN,
            four_octet_as: true,
        }
    }
}

/// A received message that cannot be accepted: the session must be reset (RFC 4271 §6,
/// RFC 7606 "session reset").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{detail} (answer: {notification})")]
pub struct MessageError {
    /// The NOTIFICATION to send. When the offending message was itself a NOTIFICATION the
    /// session must not send it (RFC 4271 §6.4) and just closes.
    pub notification: Notification,
    /// Type of the offending message, when the header was readable.
    pub message_type: Option<u8>,
    /// Human-readable description.
    pub detail: String,
}

impl MessageError {
    fn new(
        notification: Notification,
        message_type: Option<u8>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            notification,
            message_type,
            detail: detail.into(),
        }
    }

    fn from_wire(error: &wire::DecodeError, message_type: Option<u8>) -> Self {
        let (code, subcode, data) = error.to_notification();
        Self::new(
            Notification::new(code.as_u8(), subcode, data),
            message_type,
            error.to_string(),
        )
    }

    /// Whether the session must answer with the NOTIFICATION (false when the bad message was a
    /// NOTIFICATION, RFC 4271 §6.4).
    #[must_use]
    pub fn should_notify(&self) -> bool {
        self.message_type != Some(message_type::NOTIFICATION)
    }
}

/// Outbound message that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// The message would exceed the negotiated maximum size.
    #[error("message of {size} octets exceeds the limit of {limit}")]
    MessageTooLong {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// One attribute value exceeds 65,535 octets (RFC 4271 §4.3).
    #[error("{attribute} attribute of {length} octets exceeds 65535")]
    AttributeTooLong {
        /// Attribute name.
        attribute: &'static str,
        /// Value length.
        length: usize,
    },
    /// The message is semantically invalid (missing next hop, ...).
    #[error("invalid message: {0}")]
    Invalid(&'static str),
    /// The wire crate refused the message.
    #[error("wire encoder: {0}")]
    Wire(String),
}

/// Result of looking for the next message in a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet; read at least `needed` octets in total before calling again.
    NeedMore {
        /// Total octets needed from the start of the buffer.
        needed: usize,
    },
    /// The first `length` octets of the buffer are one complete message.
    Complete {
        /// Message length, header included.
        length: usize,
    },
}

/// Transport framing for the driver (RFC 4271 §4.1): checks the marker, length and type of the
/// header at the start of `buffer`. An error means the stream is unusable: send the error's
/// NOTIFICATION and close.
///
/// # Errors
///
/// A [`MessageError`] with Message Header Error (connection not synchronised, bad length or
/// bad type).
pub fn next_frame(buffer: &[u8], max_message_len: u16) -> Result<Frame, MessageError> {
    match wire::peek_message_length(buffer, max_message_len) {
        Ok(None) => Ok(Frame::NeedMore { needed: HEADER_LEN }),
        Ok(Some(length)) => {
            let length = usize::from(length);
            if buffer.len() >= length {
                Ok(Frame::Complete { length })
            } else {
                Ok(Frame::NeedMore { needed: length })
            }
        }
        Err(error) => Err(MessageError::from_wire(&error, buffer.get(18).copied())),
    }
}

fn bad_length(length: usize, message_type: u8) -> MessageError {
    let wire_length = u16::try_from(length).unwrap_or(u16::MAX);
    MessageError::new(
        Notification::new(
            error_code::MESSAGE_HEADER,
            error_code::BAD_MESSAGE_LENGTH,
            Bytes::copy_from_slice(&wire_length.to_be_bytes()),
        ),
        Some(message_type),
        format!("message type {message_type}: bad length {length}"),
    )
}

/// Decodes exactly one complete message (as delimited by [`next_frame`]).
///
/// UPDATE problems that RFC 7606 resolves without a reset come back inside
/// [`Update::error_handling`]; everything else is a [`MessageError`].
///
/// # Errors
///
/// A [`MessageError`] carrying the NOTIFICATION RFC 4271 §6 / RFC 7606 prescribe.
pub fn decode_message(message: &Bytes, context: &DecodeContext) -> Result<Message, MessageError> {
    let length = message.len();
    let Frame::Complete { length: framed } = next_frame(message, context.max_message_len)? else {
        return Err(bad_length(length, message.get(18).copied().unwrap_or(0)));
    };
    let kind = message.get(18).copied().unwrap_or(0);
    if framed != length {
        return Err(bad_length(length, kind));
    }
    // wire gap: RFC 4271 §6.1 minimum lengths per type, checked before the wire crate, which
    // maps a short NOTIFICATION to an OPEN error.
    let minimum_ok = match kind {
        message_type::OPEN => length >= 29,
        message_type::UPDATE => length >= 23,
        message_type::NOTIFICATION => length >= 21,
        message_type::KEEPALIVE => length == 19,
        _ => true,
    };
    if !minimum_ok {
        return Err(bad_length(length, kind));
    }
    if kind == message_type::ROUTE_REFRESH {
        // wire gap: RFC 7313 §5: a ROUTE-REFRESH (we negotiate no ORF, so any subtype) whose
        // body is not 4 octets gets ROUTE-REFRESH Message Error / Invalid Message Length with
        // the whole message as data.
        if length != HEADER_LEN + 4 {
            return Err(MessageError::new(
                Notification::new(
                    error_code::ROUTE_REFRESH_MESSAGE,
                    error_code::ROUTE_REFRESH_INVALID_LENGTH,
                    message.clone(),
                ),
                Some(kind),
                format!("ROUTE-REFRESH of {length} octets (RFC 7313 §5)"),
            ));
        }
    }
    let mut cursor = message.clone();
    let decoded = wire::decode_message(&mut cursor, context.max_message_len)
        .map_err(|error| MessageError::from_wire(&error, Some(kind)))?;
    match decoded {
        wire::Message::Keepalive => Ok(Message::Keepalive),
        wire::Message::Notification(notification) => Ok(Message::Notification(Notification {
            code: notification.code.as_u8(),
            subcode: notification.subcode,
            data: notification.data,
        })),
        wire::Message::RouteRefresh(refresh) => Ok(Message::RouteRefresh(RouteRefresh {
            afi: refresh.afi_raw,
            safi: refresh.safi_raw,
            subtype: match refresh.subtype_raw {
                0 => RouteRefreshSubtype::Request,
                1 => RouteRefreshSubtype::Begin,
                2 => RouteRefreshSubtype::End,
                other => RouteRefreshSubtype::Reserved(other),
            },
        })),
        wire::Message::Open(open) => Ok(Message::Open(open_from_wire(&open))),
        wire::Message::Update(update) => {
            update::decode_update(&update, context).map(Message::Update)
        }
        _ => Err(MessageError::new(
            Notification::new(
                error_code::MESSAGE_HEADER,
                3,
                Bytes::copy_from_slice(&[kind]),
            ),
            Some(kind),
            "unsupported message type",
        )),
    }
}

fn open_from_wire(open: &wire::OpenMessage) -> Open {
    let mut capabilities = Capabilities::default();
    for capability in &open.capabilities {
        match capability {
            wire::Capability::MultiProtocol { afi, safi } => {
                match Family::from_afi_safi(*afi as u16, *safi as u8) {
                    Some(family) if !capabilities.multiprotocol.contains(&family) => {
                        capabilities.multiprotocol.push(family);
                    }
                    Some(_) => {}
                    None => capabilities.other.push(capability.code()),
                }
            }
            wire::Capability::FourOctetAs { asn } => capabilities.four_octet_asn = Some(*asn),
            wire::Capability::RouteRefresh => capabilities.route_refresh = true,
            wire::Capability::EnhancedRouteRefresh => capabilities.enhanced_route_refresh = true,
            wire::Capability::ExtendedMessage => capabilities.extended_message = true,
            wire::Capability::GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families,
            } => {
                capabilities.graceful_restart = Some(GracefulRestartCapability {
                    restart_state: *restart_state,
                    notification: *notification,
                    restart_time: *restart_time,
                    families: families
                        .iter()
                        .filter_map(|entry| {
                            Family::from_afi_safi(entry.afi as u16, entry.safi as u8).map(
                                |family| GracefulRestartFamily {
                                    family,
                                    forwarding_preserved: entry.forwarding_preserved,
                                },
                            )
                        })
                        .collect(),
                });
            }
            other => capabilities.other.push(other.code()),
        }
    }
    Open {
        asn_field: open.my_as,
        hold_time: open.hold_time,
        router_id: open.bgp_identifier,
        capabilities,
    }
}

fn open_to_wire(open: &Open) -> wire::OpenMessage {
    let mut capabilities = Vec::new();
    let caps = &open.capabilities;
    for family in &caps.multiprotocol {
        let (afi, safi) = family.to_wire();
        capabilities.push(wire::Capability::MultiProtocol { afi, safi });
    }
    if caps.route_refresh {
        capabilities.push(wire::Capability::RouteRefresh);
    }
    if caps.enhanced_route_refresh {
        capabilities.push(wire::Capability::EnhancedRouteRefresh);
    }
    if caps.extended_message {
        capabilities.push(wire::Capability::ExtendedMessage);
    }
    if let Some(restart) = &caps.graceful_restart {
        capabilities.push(wire::Capability::GracefulRestart {
            restart_state: restart.restart_state,
            notification: restart.notification,
            restart_time: restart.restart_time.min(4095),
            families: restart
                .families
                .iter()
                .map(|entry| {
                    let (afi, safi) = entry.family.to_wire();
                    wire::GracefulRestartFamily {
                        afi,
                        safi,
                        forwarding_preserved: entry.forwarding_preserved,
                    }
                })
                .collect(),
        });
    }
    if let Some(asn) = caps.four_octet_asn {
        capabilities.push(wire::Capability::FourOctetAs { asn });
    }
    wire::OpenMessage {
        version: 4,
        my_as: open.asn_field,
        hold_time: open.hold_time,
        bgp_identifier: open.router_id,
        capabilities,
    }
}

/// Encodes one message.
///
/// # Errors
///
/// [`EncodeError`] when the message is invalid or too large for `context.max_message_len`.
pub fn encode_message(message: &Message, context: &EncodeContext) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    let wire_message = match message {
        Message::Update(update) => {
            update::encode_update(update, context, &mut out)?;
            return Ok(out.freeze());
        }
        Message::Keepalive => wire::Message::Keepalive,
        Message::Open(open) => wire::Message::Open(open_to_wire(open)),
        Message::Notification(notification) => {
            wire::Message::Notification(wire::NotificationMessage::new(
                wire::NotificationCode::from_u8(notification.code),
                notification.subcode,
                notification.data.clone(),
            ))
        }
        Message::RouteRefresh(refresh) => wire::Message::RouteRefresh(wire::RouteRefreshMessage {
            afi_raw: refresh.afi,
            subtype_raw: match refresh.subtype {
                RouteRefreshSubtype::Request => 0,
                RouteRefreshSubtype::Begin => 1,
                RouteRefreshSubtype::End => 2,
                RouteRefreshSubtype::Reserved(value) => value,
            },
            safi_raw: refresh.safi,
            orf: None,
        }),
    };
    wire::encode_message_with_limit(&wire_message, context.max_message_len)
        .map(BytesMut::freeze)
        .map_err(|error| match error {
            wire::EncodeError::MessageTooLong { size } => EncodeError::MessageTooLong {
                size,
                limit: usize::from(context.max_message_len),
            },
            other => EncodeError::Wire(other.to_string()),
        })
}

/// Convenience: an IPv4 prefix from a decoded address and length (`None` when invalid).
pub(crate) fn ipv4_net(address: Ipv4Addr, length: u8) -> Option<IpNet> {
    Ipv4Net::new(address, length).ok().map(IpNet::V4)
}

/// Convenience: an IPv6 prefix from a decoded address and length (`None` when invalid).
pub(crate) fn ipv6_net(address: std::net::Ipv6Addr, length: u8) -> Option<IpNet> {
    Ipv6Net::new(address, length).ok().map(IpNet::V6)
}

#[cfg(test)]
mod tests;
