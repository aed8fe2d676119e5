//! A BMP writer for the station's own tests, the end-to-end tests' synthetic routers and the
//! ingest benchmark: Initiation, Termination, Peer Up/Down (with or without ADD-PATH
//! capabilities) and Route Monitoring messages (IPv4 in the UPDATE body, IPv6 in MP_REACH_NLRI
//! and MP_UNREACH_NLRI, with or without path identifiers), the subset a router sends that the
//! station reads. Routers are the real senders; this writer
//! exists so that a feed of any size can be produced without one.
//!
//! Owns: the byte layout of the messages it writes (RFC 7854 §4, RFC 4271 §4.3 for the UPDATE,
//! RFC 4760 §3–4 for the multiprotocol attributes, RFC 7911 §3–4 for ADD-PATH).
//! Must not touch: reading (`codec.rs`), sockets.

use std::net::IpAddr;

use bytes::{BufMut, BytesMut};
use ipnet::Ipv4Net;

use super::codec::{BMP_VERSION, PeerKey, RibKind, RouteKey, SeenAttributes};
use super::update::Family;

const TYPE_ROUTE_MONITORING: u8 = 0;
const TYPE_PEER_DOWN: u8 = 2;
const TYPE_PEER_UP: u8 = 3;
const TYPE_INITIATION: u8 = 4;
const TYPE_TERMINATION: u8 = 5;
/// The most IPv4 prefixes one UPDATE written here carries (keeps it under 4,096 bytes).
pub const MAX_PREFIXES_PER_UPDATE: usize = 800;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + body.len());
    out.push(BMP_VERSION);
    out.extend_from_slice(&((6 + body.len()) as u32).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// Initiation (RFC 7854 §4.3) with a sysName and a sysDescr.
pub fn initiation(sys_name: &str) -> Vec<u8> {
    initiation_describing(sys_name, "topologyd BMP writer")
}

/// Initiation with a sysName and the sysDescr `sys_descr`.
pub fn initiation_describing(sys_name: &str, sys_descr: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, text) in [(2u16, sys_name), (1u16, sys_descr)] {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(text.len() as u16).to_be_bytes());
        body.extend_from_slice(text.as_bytes());
    }
    message(TYPE_INITIATION, &body)
}

/// Termination (RFC 7854 §4.5), reason 0 (administratively closed).
pub fn termination() -> Vec<u8> {
    message(TYPE_TERMINATION, &[0, 1, 0, 2, 0, 0])
}

fn per_peer_header(out: &mut Vec<u8>, peer: &PeerKey, rib: RibKind) {
    let (peer_type, mut flags) = match rib {
        RibKind::LocRib => (3u8, 0u8),
        RibKind::AdjRibInPre => (0, 0),
        RibKind::AdjRibInPost => (0, 0x40),
        RibKind::AdjRibOutPre => (0, 0x10),
        RibKind::AdjRibOutPost => (0, 0x50),
    };
    match peer.address {
        IpAddr::V4(address) => {
            out.push(peer_type);
            out.push(flags);
            out.extend_from_slice(&peer.distinguisher.to_be_bytes());
            out.extend_from_slice(&[0; 12]);
            out.extend_from_slice(&address.octets());
        }
        IpAddr::V6(address) => {
            flags |= 0x80;
            out.push(peer_type);
            out.push(flags);
            out.extend_from_slice(&peer.distinguisher.to_be_bytes());
            out.extend_from_slice(&address.octets());
        }
    }
    out.extend_from_slice(&peer.asn.to_be_bytes());
    out.extend_from_slice(&peer.bgp_id.octets());
    out.extend_from_slice(&[0; 8]);
}

fn bgp_message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0xFF; 16];
    out.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    out.push(kind);
    out.extend_from_slice(body);
    out
}

/// ADD-PATH Send/Receive values (RFC 7911 §4).
pub const ADD_PATH_RECEIVE: u8 = 1;
pub const ADD_PATH_SEND: u8 = 2;
pub const ADD_PATH_BOTH: u8 = 3;

/// An OPEN; with an ADD-PATH capability (code 69) listing `add_path` (family, Send/Receive)
/// when it is not empty.
fn open(asn: u32, bgp_id: [u8; 4], add_path: &[(Family, u8)]) -> Vec<u8> {
    let mut body = vec![4];
    body.extend_from_slice(&u16::try_from(asn).unwrap_or(23456).to_be_bytes());
    body.extend_from_slice(&90u16.to_be_bytes());
    body.extend_from_slice(&bgp_id);
    if add_path.is_empty() {
        body.push(0);
        return bgp_message(1, &body);
    }
    let mut capability = vec![69, (4 * add_path.len()) as u8];
    for ((afi, safi), mode) in add_path {
        capability.extend_from_slice(&afi.to_be_bytes());
        capability.extend_from_slice(&[*safi, *mode]);
    }
    body.push((capability.len() + 2) as u8);
    body.extend_from_slice(&[2, capability.len() as u8]);
    body.extend_from_slice(&capability);
    bgp_message(1, &body)
}

/// Peer Up (RFC 7854 §4.10) for `peer`, with a minimal OPEN each way.
pub fn peer_up(peer: &PeerKey) -> Vec<u8> {
    peer_up_with_add_path(peer, RibKind::AdjRibInPre, &[], &[])
}

/// Peer Up for `peer` as `rib`'s per-peer header names it (a Loc-RIB peer for
/// [`RibKind::LocRib`], RFC 9069), the router's OPEN ("sent") advertising ADD-PATH for `sent`
/// and the peer's ("received") for `received`.
pub fn peer_up_with_add_path(
    peer: &PeerKey,
    rib: RibKind,
    sent: &[(Family, u8)],
    received: &[(Family, u8)],
) -> Vec<u8> {
    let mut body = Vec::new();
    per_peer_header(&mut body, peer, rib);
    body.extend_from_slice(&[0; 16]);
    body.extend_from_slice(&179u16.to_be_bytes());
    body.extend_from_slice(&40_000u16.to_be_bytes());
    body.extend_from_slice(&open(64_512, [192, 0, 2, 1], sent));
    body.extend_from_slice(&open(peer.asn, peer.bgp_id.octets(), received));
    message(TYPE_PEER_UP, &body)
}

/// Peer Down (RFC 7854 §4.9), reason 4 (the remote system closed, no data).
pub fn peer_down(peer: &PeerKey) -> Vec<u8> {
    let mut body = Vec::new();
    per_peer_header(&mut body, peer, RibKind::AdjRibInPre);
    body.push(4);
    message(TYPE_PEER_DOWN, &body)
}

fn nlri(out: &mut Vec<u8>, prefix: &Ipv4Net) {
    let length = prefix.prefix_len();
    out.push(length);
    let bytes = usize::from(length).div_ceil(8);
    out.extend_from_slice(&prefix.network().octets()[..bytes]);
}

fn attribute(out: &mut Vec<u8>, flags: u8, kind: u8, value: &[u8]) {
    if value.len() > 255 {
        out.push(flags | 0x10);
        out.push(kind);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.push(flags);
        out.push(kind);
        out.push(value.len() as u8);
    }
    out.extend_from_slice(value);
}

/// The path attributes of an UPDATE carrying `attributes` (4-octet AS numbers, one AS_SEQUENCE).
fn path_attributes(attributes: &SeenAttributes) -> Vec<u8> {
    let mut out = Vec::new();
    attribute(&mut out, 0x40, 1, &[0]);
    let mut path = Vec::new();
    for chunk in attributes.as_path.chunks(255) {
        path.push(2);
        path.push(chunk.len() as u8);
        for asn in chunk {
            path.extend_from_slice(&asn.to_be_bytes());
        }
    }
    attribute(&mut out, 0x40, 2, &path);
    attribute(&mut out, 0x40, 3, &[192, 0, 2, 1]);
    if let Some(med) = attributes.med {
        attribute(&mut out, 0x80, 4, &med.to_be_bytes());
    }
    if !attributes.communities.is_empty() {
        let value: Vec<u8> = attributes
            .communities
            .iter()
            .flat_map(|community| community.to_be_bytes())
            .collect();
        attribute(&mut out, 0xC0, 8, &value);
    }
    if !attributes.large_communities.is_empty() {
        let value: Vec<u8> = attributes
            .large_communities
            .iter()
            .flatten()
            .flat_map(|part| part.to_be_bytes())
            .collect();
        attribute(&mut out, 0xC0, 32, &value);
    }
    out
}

/// Appends one route of an NLRI field: its path identifier when `path_ids` (RFC 7911 §3), its
/// length in bits and the fewest octets holding it.
fn route_nlri(out: &mut Vec<u8>, route: &RouteKey, path_ids: bool) {
    if path_ids {
        out.extend_from_slice(&route.path_id.to_be_bytes());
    }
    let length = route.prefix.prefix_len();
    out.push(length);
    let bytes = usize::from(length).div_ceil(8);
    match route.prefix.network() {
        IpAddr::V4(address) => out.extend_from_slice(&address.octets()[..bytes]),
        IpAddr::V6(address) => out.extend_from_slice(&address.octets()[..bytes]),
    }
}

/// One Route Monitoring message withdrawing `withdrawn` and announcing `announced` with
/// `attributes` (required when anything is announced), each route with its path identifier
/// when `path_ids`: IPv4 routes in the UPDATE's own fields, IPv6 ones in MP_UNREACH_NLRI and
/// MP_REACH_NLRI (AFI 2, SAFI 1, next hop 2001:db8::1), appended to `out`.
pub fn routes(
    out: &mut BytesMut,
    peer: &PeerKey,
    rib: RibKind,
    withdrawn: &[RouteKey],
    announced: &[RouteKey],
    attributes: Option<&SeenAttributes>,
    path_ids: bool,
) {
    let field = |routes: &[RouteKey], ipv6: bool| {
        let mut field = Vec::new();
        for route in routes
            .iter()
            .filter(|route| route.prefix.addr().is_ipv6() == ipv6)
        {
            route_nlri(&mut field, route, path_ids);
        }
        field
    };
    let mut encoded = attributes.map(path_attributes).unwrap_or_default();
    let withdrawn_v6 = field(withdrawn, true);
    if !withdrawn_v6.is_empty() {
        let mut value = vec![0, 2, 1];
        value.extend_from_slice(&withdrawn_v6);
        attribute(&mut encoded, 0x80, 15, &value);
    }
    let announced_v6 = field(announced, true);
    if !announced_v6.is_empty() {
        let mut value = vec![0, 2, 1, 16];
        value.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        value.push(0);
        value.extend_from_slice(&announced_v6);
        attribute(&mut encoded, 0x80, 14, &value);
    }
    let withdrawn_v4 = field(withdrawn, false);
    let mut update = Vec::new();
    update.extend_from_slice(&(withdrawn_v4.len() as u16).to_be_bytes());
    update.extend_from_slice(&withdrawn_v4);
    update.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
    update.extend_from_slice(&encoded);
    update.extend_from_slice(&field(announced, false));
    route_monitoring(out, peer, rib, &update);
}

/// Route Monitoring messages announcing `prefixes` with `attributes` in `rib`, up to
/// [`MAX_PREFIXES_PER_UPDATE`] per message, appended to `out`.
pub fn announce(
    out: &mut BytesMut,
    peer: &PeerKey,
    rib: RibKind,
    prefixes: &[Ipv4Net],
    attributes: &SeenAttributes,
) {
    let encoded = path_attributes(attributes);
    for chunk in prefixes.chunks(MAX_PREFIXES_PER_UPDATE) {
        let mut update = Vec::new();
        update.extend_from_slice(&0u16.to_be_bytes());
        update.extend_from_slice(&(encoded.len() as u16).to_be_bytes());
        update.extend_from_slice(&encoded);
        for prefix in chunk {
            nlri(&mut update, prefix);
        }
        route_monitoring(out, peer, rib, &update);
    }
}

/// Route Monitoring messages withdrawing `prefixes` from `rib`, appended to `out`.
pub fn withdraw(out: &mut BytesMut, peer: &PeerKey, rib: RibKind, prefixes: &[Ipv4Net]) {
    for chunk in prefixes.chunks(MAX_PREFIXES_PER_UPDATE) {
        let mut withdrawn = Vec::new();
        for prefix in chunk {
            nlri(&mut withdrawn, prefix);
        }
        let mut update = Vec::new();
        update.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        update.extend_from_slice(&withdrawn);
        update.extend_from_slice(&0u16.to_be_bytes());
        route_monitoring(out, peer, rib, &update);
    }
}

/// The IPv4 End-of-RIB marker (RFC 4724 §2: an empty UPDATE) for `rib`, appended to `out`.
pub fn end_of_rib(out: &mut BytesMut, peer: &PeerKey, rib: RibKind) {
    route_monitoring(out, peer, rib, &[0, 0, 0, 0]);
}

/// A Route Monitoring message around an UPDATE body written by the caller, appended to `out`.
pub fn raw_route_monitoring(out: &mut BytesMut, peer: &PeerKey, rib: RibKind, update_body: &[u8]) {
    route_monitoring(out, peer, rib, update_body);
}

fn route_monitoring(out: &mut BytesMut, peer: &PeerKey, rib: RibKind, update_body: &[u8]) {
    let mut body = Vec::with_capacity(42 + 19 + update_body.len());
    per_peer_header(&mut body, peer, rib);
    body.extend_from_slice(&bgp_message(2, update_body));
    out.put_slice(&message(TYPE_ROUTE_MONITORING, &body));
}
