//! The BMP reader (RFC 7854, with RFC 8671 Adj-RIB-Out and RFC 9069 Loc-RIB peers): splits a
//! router's byte stream into messages and turns each one into a [`BmpEvent`], the station's own
//! vocabulary. The only module that touches the parser crate.
//!
//! Owns: framing (common header, length bounds), the translation of the parser's messages into
//! [`BmpEvent`]s (peers, RIB kinds, routes, the attributes the visibility core compares), and
//! per connection the [`Decoder`]'s record of which families each monitored peer's routes carry
//! ADD-PATH path identifiers in (RFC 7911), learnt from the OPENs of its Peer Up. Must not
//! touch: sockets, tasks, clocks, the routers' state (`station.rs`).
//!
//! Parser choice: `bgpkit-parser` with only its `parser` feature. It is already a test
//! dependency of `topologyd-bgp` (the same version, so no new crate enters the lock file), its
//! BMP reader covers every message type including Loc-RIB per-peer headers and the OPENs'
//! capabilities, and it decodes path attributes. Route Monitoring is the exception: its
//! per-peer header and attributes come from the parser crate, but its NLRI are read in
//! `update.rs`, because the crate takes one ADD-PATH flag for a whole UPDATE where sessions
//! negotiate it per family. `netgauze-bmp-pkt` would add its own BGP model, the IANA tables and
//! `nom` parsers on top of `netgauze-bgp-pkt`, for no coverage we need.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bgpkit_parser::models::{AsPathSegment, Attributes, BgpMessage, Community, MetaCommunity};
use bgpkit_parser::parser::bmp::messages::{
    BmpMessageBody, BmpPeerType, BmpPerPeerHeader, InitiationTlvType, PerPeerFlags,
    parse_per_peer_header,
};
use bytes::{Buf, Bytes, BytesMut};
use rustc_hash::FxHashMap;

use super::path_ids::PathIdFamilies;
pub use super::update::RouteKey;
use super::update::read_update;

/// BMP version 3 (RFC 7854 §4.1): the only version routers send.
pub const BMP_VERSION: u8 = 3;
/// The Route Monitoring message type (RFC 7854 §4.1).
const TYPE_ROUTE_MONITORING: u8 = 0;
/// The BGP header: marker, length, type (RFC 4271 §4.1).
const BGP_HEADER_BYTES: usize = 19;
const BGP_TYPE_UPDATE: u8 = 2;
/// Peers whose ADD-PATH families one connection remembers: far above the peers the station
/// holds for one router, so only a router the station has already dropped reaches it (its
/// further peers are then read without path identifiers).
pub const MAX_PATH_ID_PEERS: usize = 65_536;
/// The 2-octet placeholder of a 4-octet AS number (RFC 6793 §9).
const AS_TRANS: u32 = 23_456;
/// The common header: version, length, type.
pub const COMMON_HEADER_BYTES: usize = 6;
/// The longest message accepted: a Peer Up carries two OPENs, a Route Monitoring one UPDATE of
/// at most 65,535 bytes (RFC 8654) after a 42-byte per-peer header; anything longer is garbage.
pub const MAX_MESSAGE_BYTES: usize = 4 * 65_536;

/// Why a stream is not BMP; the connection that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BmpError {
    #[error("BMP version {0} (only version 3 is read)")]
    Version(u8),
    #[error("BMP message length {0} outside 6..={MAX_MESSAGE_BYTES}")]
    Length(u32),
    #[error("malformed BMP message: {0}")]
    Malformed(String),
}

/// Which table of the router a Route Monitoring message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RibKind {
    /// Adj-RIB-In before the import policy (RFC 7854).
    AdjRibInPre,
    /// Adj-RIB-In after the import policy: what the router keeps from the peer.
    AdjRibInPost,
    /// Adj-RIB-Out before the export policy (RFC 8671).
    AdjRibOutPre,
    /// Adj-RIB-Out after the export policy (RFC 8671).
    AdjRibOutPost,
    /// The router's Loc-RIB (RFC 9069).
    LocRib,
}

impl RibKind {
    pub const ALL: [RibKind; 5] = [
        RibKind::AdjRibInPre,
        RibKind::AdjRibInPost,
        RibKind::AdjRibOutPre,
        RibKind::AdjRibOutPost,
        RibKind::LocRib,
    ];

    /// The name used in views, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RibKind::AdjRibInPre => "adj_rib_in_pre",
            RibKind::AdjRibInPost => "adj_rib_in_post",
            RibKind::AdjRibOutPre => "adj_rib_out_pre",
            RibKind::AdjRibOutPost => "adj_rib_out_post",
            RibKind::LocRib => "loc_rib",
        }
    }
}

/// One peer of the monitored router, as its per-peer header names it (RFC 7854 §4.2). Loc-RIB
/// messages carry a zero address and the router's own ASN and identifier (RFC 9069 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey {
    pub address: IpAddr,
    pub asn: u32,
    pub bgp_id: Ipv4Addr,
    pub distinguisher: u64,
}

/// The path attributes the visibility core compares and reports, normalised: communities and
/// large communities sorted, the AS path flattened (AS_SETs and confederation segments are
/// written in order; `origin_asn` is `None` when the path does not end in an AS_SEQUENCE).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SeenAttributes {
    pub as_path: Vec<u32>,
    pub origin_asn: Option<u32>,
    pub med: Option<u32>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

/// What one BMP message tells the station.
#[derive(Debug, Clone, PartialEq)]
pub enum BmpEvent {
    /// RFC 7854 §4.3: the router introduces itself (sysName, when it sends one).
    Initiation {
        sys_name: Option<String>,
    },
    /// RFC 7854 §4.5: the router ends the session; its state goes.
    Termination,
    /// A session came up; `router_asn` is the router's own AS from the OPEN it sent (none when
    /// it is AS_TRANS).
    PeerUp {
        peer: PeerKey,
        router_asn: Option<u32>,
    },
    PeerDown {
        peer: PeerKey,
    },
    /// A Route Monitoring message: the routes withdrawn and the ones announced with
    /// `attributes` in `rib` (each route a prefix and, on an ADD-PATH session, its path id).
    Routes {
        peer: PeerKey,
        rib: RibKind,
        withdrawn: Vec<RouteKey>,
        announced: Vec<RouteKey>,
        attributes: Option<Arc<SeenAttributes>>,
        end_of_rib: bool,
    },
    Statistics {
        peer: PeerKey,
    },
    /// Route Mirroring (RFC 7854 §4.7) and non-UPDATE route monitoring: counted, not read.
    Ignored,
}

/// Takes one whole BMP message off the front of `buffer`, or `None` when it is not all there
/// yet. A bad version or length is an error: the stream cannot be resynchronised.
pub fn split_message(buffer: &mut BytesMut) -> Result<Option<Bytes>, BmpError> {
    if buffer.len() < COMMON_HEADER_BYTES {
        return Ok(None);
    }
    if buffer[0] != BMP_VERSION {
        return Err(BmpError::Version(buffer[0]));
    }
    let length = u32::from_be_bytes([buffer[1], buffer[2], buffer[3], buffer[4]]);
    let length_bytes = length as usize;
    if !(COMMON_HEADER_BYTES..=MAX_MESSAGE_BYTES).contains(&length_bytes) {
        return Err(BmpError::Length(length));
    }
    if buffer.len() < length_bytes {
        buffer.reserve(length_bytes - buffer.len());
        return Ok(None);
    }
    Ok(Some(buffer.split_to(length_bytes).freeze()))
}

/// One router connection's reader: decodes whole messages (as [`split_message`] hands them
/// over), remembering per monitored peer which families carry path identifiers, so that a
/// Route Monitoring message is read as its session encodes it.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Peers up whose session carries path identifiers in some family and RIB kind.
    path_ids: FxHashMap<PeerKey, PathIdFamilies>,
    /// The router is one known to monitor routes without path identifiers whatever its
    /// sessions negotiated (see [`never_sends_path_ids`]).
    never_sends_path_ids: bool,
}

/// Whether a router's sysDescr names a router known to leave path identifiers out of Route
/// Monitoring although its Peer Up OPENs negotiated ADD-PATH: FRR up to 8.x (its BMP
/// documentation says the identifier is never included; seen with 8.4, whose OPEN always
/// offers ADD-PATH Receive, so any peer that offers Send would otherwise be misread).
pub fn never_sends_path_ids(sys_descr: &str) -> bool {
    let Some(version) = sys_descr.strip_prefix("FRRouting ") else {
        return false;
    };
    version
        .split('.')
        .next()
        .and_then(|major| major.trim().parse::<u32>().ok())
        .is_some_and(|major| major <= 8)
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Which families carry path identifiers in each RIB kind of `peer` (none when no family
    /// does, or the peer is not up).
    pub fn path_id_families(&self, peer: &PeerKey) -> Option<&PathIdFamilies> {
        self.path_ids.get(peer)
    }

    /// Decodes one whole message (as [`split_message`] hands it over).
    pub fn decode(&mut self, message: Bytes) -> Result<BmpEvent, BmpError> {
        if message.get(5) == Some(&TYPE_ROUTE_MONITORING) {
            return self.route_monitoring(message);
        }
        let mut data = message;
        let parsed = bgpkit_parser::parser::bmp::parse_bmp_msg(&mut data)
            .map_err(|error| BmpError::Malformed(error.to_string()))?;
        if data.has_remaining() {
            return Err(BmpError::Malformed(format!(
                "{} bytes after the message",
                data.remaining()
            )));
        }
        let peer = parsed.per_peer_header.as_ref().map(peer_key);
        Ok(match (parsed.message_body, peer) {
            (BmpMessageBody::InitiationMessage(initiation), _) => {
                let text = |kind: InitiationTlvType| {
                    initiation
                        .tlvs
                        .iter()
                        .find(|tlv| tlv.info_type == kind)
                        .map(|tlv| tlv.info.clone())
                };
                self.never_sends_path_ids = text(InitiationTlvType::SysDescr)
                    .is_some_and(|descr| never_sends_path_ids(&descr));
                BmpEvent::Initiation {
                    sys_name: text(InitiationTlvType::SysName),
                }
            }
            (BmpMessageBody::TerminationMessage(_), _) => {
                self.path_ids.clear();
                BmpEvent::Termination
            }
            (BmpMessageBody::PeerUpNotification(up), Some(peer)) => {
                let families = PathIdFamilies::from_opens(&up.sent_open, &up.received_open);
                self.path_ids.remove(&peer);
                if !families.is_empty() && self.path_ids.len() < MAX_PATH_ID_PEERS {
                    self.path_ids.insert(peer, families);
                }
                BmpEvent::PeerUp {
                    peer,
                    router_asn: match up.sent_open {
                        BgpMessage::Open(open) => {
                            Some(open.asn.to_u32()).filter(|asn| *asn != AS_TRANS)
                        }
                        _ => None,
                    },
                }
            }
            (BmpMessageBody::PeerDownNotification(_), Some(peer)) => {
                self.path_ids.remove(&peer);
                BmpEvent::PeerDown { peer }
            }
            (BmpMessageBody::StatsReport(_), Some(peer)) => BmpEvent::Statistics { peer },
            _ => BmpEvent::Ignored,
        })
    }

    /// A Route Monitoring message (RFC 7854 §4.6): the per-peer header by the parser crate, the
    /// UPDATE by [`read_update`] with the path-identifier layout of the peer's session.
    fn route_monitoring(&mut self, message: Bytes) -> Result<BmpEvent, BmpError> {
        let malformed = |error: String| BmpError::Malformed(error);
        let mut data = message.slice(COMMON_HEADER_BYTES..);
        let header =
            parse_per_peer_header(&mut data).map_err(|error| malformed(error.to_string()))?;
        if data.remaining() < BGP_HEADER_BYTES {
            return Err(malformed(
                "route monitoring without a BGP message".to_string(),
            ));
        }
        let length = usize::from(u16::from_be_bytes([data[16], data[17]]));
        if length != data.remaining() {
            return Err(malformed(format!(
                "BGP message length {length} in {} bytes",
                data.remaining()
            )));
        }
        if data[18] != BGP_TYPE_UPDATE {
            return Ok(BmpEvent::Ignored);
        }
        data.advance(BGP_HEADER_BYTES);
        let peer = peer_key(&header);
        let rib = rib_kind(&header);
        let families = self
            .path_ids
            .get(&peer)
            .filter(|_| !self.never_sends_path_ids);
        let read = read_update(data, &header.asn_length(), |family| {
            families.is_some_and(|families| families.carries(rib, family))
        })
        .map_err(malformed)?;
        if let Some(families) = self.path_ids.get_mut(&peer) {
            for family in &read.read_without_path_ids {
                families.stripped(rib, *family);
            }
        }
        let attributes =
            (!read.announced.is_empty()).then(|| Arc::new(seen_attributes(&read.attributes)));
        Ok(BmpEvent::Routes {
            peer,
            rib,
            end_of_rib: read.end_of_rib,
            withdrawn: read.withdrawn,
            announced: read.announced,
            attributes,
        })
    }
}

/// Reads a whole byte stream as a router connection does: messages until the first error or
/// the end; returns the events read and the error that stopped it. The entry point of the
/// `decode_bmp_stream` fuzz target and its corpus replay (it must never panic).
pub fn decode_stream(data: &[u8]) -> (Vec<BmpEvent>, Option<BmpError>) {
    let mut buffer = BytesMut::from(data);
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    loop {
        match split_message(&mut buffer)
            .and_then(|message| message.map(|message| decoder.decode(message)).transpose())
        {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return (events, None),
            Err(error) => return (events, Some(error)),
        }
    }
}

fn peer_key(header: &BmpPerPeerHeader) -> PeerKey {
    PeerKey {
        address: header.peer_ip,
        asn: header.peer_asn.to_u32(),
        bgp_id: header.peer_bgp_id,
        distinguisher: header.peer_distinguisher,
    }
}

fn rib_kind(header: &BmpPerPeerHeader) -> RibKind {
    match (header.peer_type, header.peer_flags) {
        (BmpPeerType::LocalRib, _) | (_, PerPeerFlags::LocalRibPeerFlags(_)) => RibKind::LocRib,
        (_, PerPeerFlags::PeerFlags(flags)) => {
            match (flags.is_adj_rib_out(), flags.is_post_policy()) {
                (false, false) => RibKind::AdjRibInPre,
                (false, true) => RibKind::AdjRibInPost,
                (true, false) => RibKind::AdjRibOutPre,
                (true, true) => RibKind::AdjRibOutPost,
            }
        }
    }
}

fn seen_attributes(attributes: &Attributes) -> SeenAttributes {
    let path = attributes.effective_as_path();
    let mut as_path = Vec::new();
    let mut origin_asn = None;
    if let Some(path) = &path {
        for segment in path.iter_segments() {
            let (asns, sequence) = match segment {
                AsPathSegment::AsSequence(asns) => (asns, true),
                AsPathSegment::AsSet(asns)
                | AsPathSegment::ConfedSequence(asns)
                | AsPathSegment::ConfedSet(asns) => (asns, false),
            };
            as_path.extend(asns.iter().map(|asn| asn.to_u32()));
            origin_asn = if sequence {
                asns.last().map(|asn| asn.to_u32())
            } else {
                None
            };
        }
    }
    let mut communities = Vec::new();
    let mut large_communities = Vec::new();
    for community in attributes.iter_communities() {
        match community {
            MetaCommunity::Plain(plain) => communities.push(community_value(plain)),
            MetaCommunity::Large(large) => large_communities.push([
                large.global_admin,
                large.local_data[0],
                large.local_data[1],
            ]),
            _ => {}
        }
    }
    communities.sort_unstable();
    communities.dedup();
    large_communities.sort_unstable();
    large_communities.dedup();
    SeenAttributes {
        as_path,
        origin_asn,
        med: attributes.multi_exit_discriminator(),
        communities,
        large_communities,
    }
}

/// A community as its 32-bit value (RFC 1997).
fn community_value(community: Community) -> u32 {
    match community {
        Community::NoExport => 0xFFFF_FF01,
        Community::NoAdvertise => 0xFFFF_FF02,
        Community::NoExportSubConfed => 0xFFFF_FF03,
        Community::Custom(asn, value) => (asn.to_u32() << 16) | u32::from(value),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "codec_tests.rs"]
mod tests;
