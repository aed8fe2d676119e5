//! OPEN construction, OPEN validation and capability negotiation (RFC 4271 §6.2, RFC 5492).
//!
//! Owns: [`SessionConfig`]-to-OPEN, the checks on a received OPEN, and [`Negotiated`] with the
//! fallbacks used when the peer lacks a capability:
//! - no 4-octet AS (RFC 6793 §4.1): we still send AS_TRANS in My AS and our real AS in the
//!   capability; UPDATEs then carry 2-octet AS_PATH plus AS4_PATH (done by the codec);
//! - no multiprotocol capability: the peer speaks IPv4 unicast only (RFC 4760 §8); families
//!   the peer lacks are never sent; no common family at all → Unsupported Capability;
//! - no extended messages (RFC 8654 §3): 4096-octet messages;
//! - no route refresh / enhanced route refresh: none sent, and none expected.
//!
//! Must not touch: timers, transport.

use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use crate::codec::{
    Capabilities, DecodeContext, EXTENDED_MAX_MESSAGE_LEN, EncodeContext, Family,
    GracefulRestartCapability, GracefulRestartFamily, MAX_MESSAGE_LEN, Notification, Open,
    error_code,
};
use crate::inbound::MaxPrefixes;

/// Graceful restart as the restarting speaker (RFC 4724 §3-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// Restart Time advertised, seconds (≤ 4095): how long the peer keeps our routes as stale.
    pub restart_time: u16,
    /// We have just restarted: set the Restart State (R) bit (RFC 4724 §3).
    pub restarting: bool,
    /// Forwarding State (F) bit for every advertised family: forwarding continued through the
    /// restart (for a route advertiser whose routes live in the peer, this is true).
    pub forwarding_preserved: bool,
}

/// Connect-retry backoff (RFC 4271 §8.1.2 ConnectRetryTime, §10 jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First retry delay (RFC 4271 §10 suggests 120 s; we default lower).
    pub initial: Duration,
    /// Upper bound of the exponential backoff.
    pub maximum: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(5),
            maximum: Duration::from_secs(120),
        }
    }
}

/// Per-peer session configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our AS number.
    pub local_asn: u32,
    /// The peer's AS number (checked against its OPEN: Bad Peer AS otherwise).
    pub remote_asn: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds (0, or ≥ 3; RFC 4271 §4.2). Default 90.
    pub hold_time: u16,
    /// Never initiate connections; wait for the peer (RFC 4271 §8.1.1 PassiveTcpEstablishment).
    pub passive: bool,
    /// Families to advertise (RFC 4760 §8).
    pub families: Vec<Family>,
    /// Advertise route refresh (RFC 2918).
    pub route_refresh: bool,
    /// Advertise enhanced route refresh (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// Advertise extended messages (RFC 8654).
    pub extended_messages: bool,
    /// Advertise graceful restart (RFC 4724).
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// Inbound per-family prefix limits (RFC 4486 §4).
    pub max_prefixes: MaxPrefixes,
    /// Send hold time (RFC 9687 §3); `None` = max(8 minutes, 2 × negotiated hold time).
    pub send_hold_time: Option<Duration>,
    /// Hold timer while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
    pub open_hold_time: Duration,
    /// Connect-retry backoff.
    pub backoff: Backoff,
}

impl SessionConfig {
    /// A configuration with the usual defaults: active, hold time 90 s, both families, route
    /// refresh, enhanced route refresh, extended messages, no graceful restart, no limits.
    #[must_use]
    pub fn new(local_asn: u32, remote_asn: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_asn,
            remote_asn,
            router_id,
            hold_time: 90,
            passive: false,
            families: Family::ALL.to_vec(),
            route_refresh: true,
            enhanced_route_refresh: true,
            extended_messages: true,
            graceful_restart: None,
            max_prefixes: MaxPrefixes::default(),
            send_hold_time: None,
            open_hold_time: Duration::from_secs(240),
            backoff: Backoff::default(),
        }
    }

    /// Checks the values RFC 4271 and RFC 4724 constrain. Call before creating the session.
    ///
    /// # Errors
    ///
    /// The first invalid setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if matches!(self.hold_time, 1 | 2) {
            return Err(ConfigError::HoldTime(self.hold_time));
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        if self.local_asn == 0 || self.remote_asn == 0 {
            return Err(ConfigError::AsNumber);
        }
        if self.families.is_empty() {
            return Err(ConfigError::NoFamily);
        }
        if let Some(restart) = self.graceful_restart
            && restart.restart_time > 4095
        {
            return Err(ConfigError::RestartTime(restart.restart_time));
        }
        if self.backoff.initial.is_zero() || self.backoff.maximum < self.backoff.initial {
            return Err(ConfigError::Backoff);
        }
        Ok(())
    }

    /// Whether the session is internal (same AS).
    #[must_use]
    pub fn internal(&self) -> bool {
        self.local_asn == self.remote_asn
    }

    /// Our OPEN message.
    #[must_use]
    pub fn open_message(&self) -> Open {
        Open {
            asn_field: Open::asn_field_for(self.local_asn),
            hold_time: self.hold_time,
            router_id: self.router_id,
            capabilities: Capabilities {
                multiprotocol: self.families.clone(),
                four_octet_asn: Some(self.local_asn),
                route_refresh: self.route_refresh,
                enhanced_route_refresh: self.enhanced_route_refresh,
                extended_message: self.extended_messages,
                graceful_restart: self
                    .graceful_restart
                    .map(|restart| GracefulRestartCapability {
                        restart_state: restart.restarting,
                        notification: false,
                        restart_time: restart.restart_time.min(4095),
                        families: self
                            .families
                            .iter()
                            .map(|family| GracefulRestartFamily {
                                family: *family,
                                forwarding_preserved: restart.forwarding_preserved,
                            })
                            .collect(),
                    }),
                other: Vec::new(),
            },
        }
    }
}

/// An invalid [`SessionConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// RFC 4271 §4.2: the hold time is 0 or at least 3 seconds.
    #[error("hold time {0} s: must be 0 or at least 3 (RFC 4271 §4.2)")]
    HoldTime(u16),
    /// RFC 6286 §2.1: the BGP Identifier is non-zero.
    #[error("router id 0.0.0.0 is not a valid BGP Identifier (RFC 6286)")]
    RouterId,
    /// RFC 7607: AS 0 is reserved.
    #[error("AS 0 is reserved (RFC 7607)")]
    AsNumber,
    /// Nothing to negotiate.
    #[error("no address family configured")]
    NoFamily,
    /// RFC 4724 §3: the restart time has 12 bits.
    #[error("restart time {0} s exceeds 4095 (RFC 4724 §3)")]
    RestartTime(u16),
    /// Backoff must start above zero and not exceed its maximum.
    #[error("connect-retry backoff: initial must be > 0 and ≤ maximum")]
    Backoff,
}

/// What both sides agreed on (RFC 4271 §4.2, RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's AS number.
    pub remote_asn: u32,
    /// The peer's BGP Identifier.
    pub remote_router_id: Ipv4Addr,
    /// Negotiated hold time, seconds (the smaller proposal; 0 = no keepalives).
    pub hold_time: u16,
    /// Keepalive interval (hold time / 3), `None` when the hold time is 0.
    pub keepalive_interval: Option<Duration>,
    /// Families both sides advertised (RFC 4760 §8).
    pub families: Vec<Family>,
    /// 4-octet AS numbers on both sides (RFC 6793).
    pub four_octet_as: bool,
    /// Extended messages on both sides (RFC 8654).
    pub extended_messages: bool,
    /// Route refresh on both sides (RFC 2918).
    pub route_refresh: bool,
    /// Enhanced route refresh on both sides (RFC 7313).
    pub enhanced_route_refresh: bool,
    /// The peer's graceful restart capability (RFC 4724), if any.
    pub peer_graceful_restart: Option<GracefulRestartCapability>,
    /// We advertised graceful restart: send End-of-RIB after the initial sync.
    pub local_graceful_restart: bool,
    /// Same AS on both sides.
    pub internal: bool,
}

impl Negotiated {
    /// Largest message we may send and must accept.
    #[must_use]
    pub fn max_message_len(&self) -> u16 {
        if self.extended_messages {
            EXTENDED_MAX_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    /// Whether `family` was negotiated.
    #[must_use]
    pub fn has_family(&self, family: Family) -> bool {
        self.families.contains(&family)
    }

    /// Codec context for decoding what the peer sends.
    #[must_use]
    pub fn decode_context(&self) -> DecodeContext {
        DecodeContext {
            max_message_len: self.max_message_len(),
            four_octet_as: self.four_octet_as,
            internal_peer: self.internal,
        }
    }

    /// Codec context for encoding what we send.
    #[must_use]
    pub fn encode_context(&self) -> EncodeContext {
        EncodeContext {
            max_message_len: self.max_message_len(),
            four_octet_as: self.four_octet_as,
        }
    }
}

fn open_error(subcode: u8, data: &[u8]) -> Notification {
    Notification::new(
        error_code::OPEN_MESSAGE,
        subcode,
        bytes::Bytes::copy_from_slice(data),
    )
}

/// Checks a received OPEN against our configuration and negotiates (RFC 4271 §6.2).
///
/// # Errors
///
/// The OPEN Message Error NOTIFICATION to send.
pub fn negotiate(config: &SessionConfig, open: &Open) -> Result<Negotiated, Notification> {
    let peer = &open.capabilities;
    if open.asn() != config.remote_asn {
        return Err(open_error(
            error_code::BAD_PEER_AS,
            &open.asn_field.to_be_bytes(),
        ));
    }
    if matches!(open.hold_time, 1 | 2) {
        return Err(open_error(error_code::UNACCEPTABLE_HOLD_TIME, &[]));
    }
    // RFC 6286 §2.2: the identifier is a non-zero 4-octet value; within an AS it must be unique.
    if open.router_id.is_unspecified() || (config.internal() && open.router_id == config.router_id)
    {
        return Err(open_error(
            error_code::BAD_BGP_IDENTIFIER,
            &open.router_id.octets(),
        ));
    }
    // RFC 4760 §8: a peer without multiprotocol capabilities supports IPv4 unicast only.
    let peer_families: &[Family] = if peer.multiprotocol.is_empty() {
        &[Family::Ipv4Unicast]
    } else {
        &peer.multiprotocol
    };
    let families: Vec<Family> = config
        .families
        .iter()
        .copied()
        .filter(|family| peer_families.contains(family))
        .collect();
    if families.is_empty() {
        // RFC 5492 §5: Unsupported Capability, data = the capabilities we need.
        let mut data = BytesMut::new();
        for family in &config.families {
            data.put_u8(1);
            data.put_u8(4);
            data.put_u16(family.afi());
            data.put_u8(0);
            data.put_u8(family.safi());
        }
        return Err(open_error(error_code::UNSUPPORTED_CAPABILITY, &data));
    }
    let hold_time = config.hold_time.min(open.hold_time);
    Ok(Negotiated {
        remote_asn: open.asn(),
        remote_router_id: open.router_id,
        hold_time,
        keepalive_interval: (hold_time > 0)
            .then(|| Duration::from_secs(u64::from(hold_time / 3).max(1))),
        families,
        four_octet_as: peer.four_octet_asn.is_some(),
        extended_messages: config.extended_messages && peer.extended_message,
        route_refresh: config.route_refresh && peer.route_refresh,
        enhanced_route_refresh: config.enhanced_route_refresh && peer.enhanced_route_refresh,
        peer_graceful_restart: peer.graceful_restart.clone(),
        local_graceful_restart: config.graceful_restart.is_some(),
        internal: config.internal(),
    })
}

/// Connection collision resolution (RFC 4271 §6.8): which connection survives when both sides
/// opened one. The connection initiated by the speaker with the higher BGP Identifier stays;
/// with equal identifiers (possible between ASes, RFC 6286 §2.3) the higher AS number wins.
/// The driver calls this once it has the peer's OPEN on the second connection, then feeds
/// `Input::CollisionLost` to the session of the losing connection.
#[must_use]
pub fn resolve_collision(
    local_router_id: Ipv4Addr,
    local_asn: u32,
    remote_router_id: Ipv4Addr,
    remote_asn: u32,
) -> super::Direction {
    let local = (u32::from(local_router_id), local_asn);
    let remote = (u32::from(remote_router_id), remote_asn);
    if local > remote {
        super::Direction::Outbound
    } else {
        super::Direction::Inbound
    }
}
