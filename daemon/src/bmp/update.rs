//! The UPDATE inside a Route Monitoring message, read with ADD-PATH path identifiers (RFC 7911)
//! decided per address family: the withdrawn and announced routes as [`RouteKey`]s and the path
//! attributes the station compares.
//!
//! Owns: the NLRI layout (RFC 4271 §4.3 withdrawn routes and NLRI fields, RFC 4760 MP_REACH_NLRI
//! and MP_UNREACH_NLRI, RFC 7911 §3 path identifiers), splitting the multiprotocol attributes
//! from the rest. Must not touch: the BMP framing and per-peer header (`codec.rs`), which
//! families carry path identifiers (the caller says), the routers' state.
//!
//! Why our own NLRI reader: the parser crate takes one ADD-PATH flag for a whole UPDATE, but a
//! session negotiates ADD-PATH per AFI/SAFI and one UPDATE may carry IPv4 routes in its body next
//! to an MP_REACH_NLRI and an MP_UNREACH_NLRI of other families. Reading the prefixes here, with
//! the flag of each field's own family, is exact for every mix; the parser crate still reads the
//! other path attributes (AS path with AS4_PATH, MED, communities), handed to it without the two
//! multiprotocol attributes so that it never reads an NLRI with the wrong flag (nor twice).

use bgpkit_parser::models::{AsnLength, Attributes};
use bgpkit_parser::parser::bgp::attributes::parse_attributes;
use bytes::{Buf, Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An address family as capabilities name it: (AFI, SAFI) (RFC 4760 §5, RFC 7911 §4).
pub type Family = (u16, u8);
pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;
pub const SAFI_MULTICAST: u8 = 2;
/// The family of the withdrawn routes and NLRI fields of the UPDATE body (RFC 4271).
pub const IPV4_UNICAST: Family = (AFI_IPV4, SAFI_UNICAST);
const ATTRIBUTE_MP_REACH: u8 = 14;
const ATTRIBUTE_MP_UNREACH: u8 = 15;
const FLAG_EXTENDED_LENGTH: u8 = 0x10;

/// One route as a Route Monitoring message names it: its prefix and, when the monitored
/// session carries path identifiers for its family, the identifier (0 otherwise). A router's
/// table holds one route per key; a withdrawal names the key it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey {
    pub prefix: IpNet,
    pub path_id: u32,
}

impl RouteKey {
    /// A route of a session without path identifiers.
    pub fn single(prefix: IpNet) -> RouteKey {
        RouteKey { prefix, path_id: 0 }
    }
}

/// An UPDATE's routes and attributes.
#[derive(Debug)]
pub struct ReadUpdate {
    pub withdrawn: Vec<RouteKey>,
    pub announced: Vec<RouteKey>,
    pub attributes: Attributes,
    /// Whether the UPDATE is an End-of-RIB marker (RFC 4724 §2): no route in any field, no
    /// attribute but an empty MP_UNREACH_NLRI.
    pub end_of_rib: bool,
    /// The families whose NLRI could not be read with the path-identifier layout asked for but
    /// could without identifiers (see [`read_update`]).
    pub read_without_path_ids: Vec<Family>,
}

/// One NLRI field before it is read: its family and its bytes.
struct NlriField {
    family: Family,
    bytes: Bytes,
    announced: bool,
}

/// Reads an UPDATE body (after the 19-byte BGP header). `carries_path_ids` says, per family,
/// whether the session puts a path identifier in front of each route. A field that does not
/// read with identifiers but reads without is taken without and its family reported in
/// [`ReadUpdate::read_without_path_ids`] (a router that negotiated ADD-PATH yet strips the
/// identifiers from what it monitors); a field that reads neither way is an error. Families
/// other than IPv4/IPv6 unicast and multicast (VPN, labelled, flowspec, ...) are skipped: the
/// station follows only plain prefixes.
pub fn read_update(
    mut body: Bytes,
    asn_length: &AsnLength,
    carries_path_ids: impl Fn(Family) -> bool,
) -> Result<ReadUpdate, String> {
    let withdrawn_field = take_u16_prefixed(&mut body, "withdrawn routes")?;
    let attribute_bytes = take_u16_prefixed(&mut body, "path attributes")?;
    let mut fields = vec![NlriField {
        family: IPV4_UNICAST,
        bytes: withdrawn_field,
        announced: false,
    }];
    let (other_attributes, multiprotocol) = split_multiprotocol(attribute_bytes)?;
    fields.extend(multiprotocol);
    fields.push(NlriField {
        family: IPV4_UNICAST,
        bytes: body,
        announced: true,
    });
    let end_of_rib =
        other_attributes.is_empty() && fields.iter().all(|field| field.bytes.is_empty());
    let attributes = parse_attributes(other_attributes, asn_length, false, None, None, None)
        .map_err(|error| format!("path attributes: {error}"))?;
    let mut read = ReadUpdate {
        withdrawn: Vec::new(),
        announced: Vec::new(),
        attributes,
        end_of_rib,
        read_without_path_ids: Vec::new(),
    };
    for field in fields {
        let (afi, safi) = field.family;
        if field.bytes.is_empty() || !matches!(safi, SAFI_UNICAST | SAFI_MULTICAST) {
            continue;
        }
        let ipv6 = match afi {
            AFI_IPV4 => false,
            AFI_IPV6 => true,
            _ => continue,
        };
        let out = if field.announced {
            &mut read.announced
        } else {
            &mut read.withdrawn
        };
        let start = out.len();
        let path_ids = carries_path_ids(field.family);
        if let Err(error) = read_routes(&field.bytes, ipv6, path_ids, out) {
            out.truncate(start);
            if !path_ids || read_routes(&field.bytes, ipv6, false, out).is_err() {
                out.truncate(start);
                return Err(format!("NLRI of AFI {afi} SAFI {safi}: {error}"));
            }
            if !read.read_without_path_ids.contains(&field.family) {
                read.read_without_path_ids.push(field.family);
            }
        }
    }
    Ok(read)
}

fn take_u16_prefixed(body: &mut Bytes, what: &str) -> Result<Bytes, String> {
    if body.remaining() < 2 {
        return Err(format!("{what} length missing"));
    }
    let length = usize::from(body.get_u16());
    if body.remaining() < length {
        return Err(format!("{what} length {length} beyond the UPDATE"));
    }
    Ok(body.split_to(length))
}

/// Splits the path attributes into the MP_REACH_NLRI / MP_UNREACH_NLRI fields (RFC 4760 §3,
/// §4: AFI, SAFI, for a reach the next hop and a reserved octet, then the NLRI) and every
/// other attribute, copied as they are (no copy when there is no multiprotocol attribute).
fn split_multiprotocol(attributes: Bytes) -> Result<(Bytes, Vec<NlriField>), String> {
    let mut rest = attributes.clone();
    let mut others: Option<BytesMut> = None;
    let mut fields = Vec::new();
    while rest.has_remaining() {
        let start = attributes.len() - rest.len();
        if rest.remaining() < 3 {
            return Err("truncated path attribute header".to_string());
        }
        let flags = rest.get_u8();
        let kind = rest.get_u8();
        let length = if flags & FLAG_EXTENDED_LENGTH != 0 {
            if rest.remaining() < 2 {
                return Err("truncated path attribute header".to_string());
            }
            usize::from(rest.get_u16())
        } else {
            usize::from(rest.get_u8())
        };
        if rest.remaining() < length {
            return Err(format!(
                "path attribute {kind} length {length} beyond the UPDATE"
            ));
        }
        let mut value = rest.split_to(length);
        let end = attributes.len() - rest.len();
        if !matches!(kind, ATTRIBUTE_MP_REACH | ATTRIBUTE_MP_UNREACH) {
            if let Some(others) = &mut others {
                others.extend_from_slice(&attributes[start..end]);
            }
            continue;
        }
        others.get_or_insert_with(|| BytesMut::from(&attributes[..start]));
        if value.remaining() < 3 {
            return Err(format!("path attribute {kind} shorter than its AFI/SAFI"));
        }
        let family = (value.get_u16(), value.get_u8());
        let announced = kind == ATTRIBUTE_MP_REACH;
        if announced {
            // Next-hop length, next hop, one reserved octet.
            let next_hop = usize::from(value.first().copied().unwrap_or(0));
            if value.remaining() < next_hop + 2 {
                return Err("MP_REACH_NLRI next hop beyond the attribute".to_string());
            }
            value.advance(next_hop + 2);
        }
        fields.push(NlriField {
            family,
            bytes: value,
            announced,
        });
    }
    let others = match others {
        Some(others) => others.freeze(),
        None => attributes,
    };
    Ok((others, fields))
}

/// Reads one NLRI field: each route a length in bits and the fewest octets holding it
/// (RFC 4271 §4.3), preceded by a 4-octet path identifier when `path_ids` (RFC 7911 §3). Bits
/// past the length are cleared, so that an announcement and its withdrawal name one key.
fn read_routes(
    mut field: &[u8],
    ipv6: bool,
    path_ids: bool,
    out: &mut Vec<RouteKey>,
) -> Result<(), String> {
    let max_length: u8 = if ipv6 { 128 } else { 32 };
    while !field.is_empty() {
        let path_id = if path_ids {
            if field.len() < 4 {
                return Err("truncated path identifier".to_string());
            }
            field.get_u32()
        } else {
            0
        };
        let Some((&length, rest)) = field.split_first() else {
            return Err("prefix length missing".to_string());
        };
        if length > max_length {
            return Err(format!("prefix length {length} over {max_length}"));
        }
        let octets = usize::from(length).div_ceil(8);
        if rest.len() < octets {
            return Err(format!("prefix of length {length} truncated"));
        }
        let mut address = [0u8; 16];
        address[..octets].copy_from_slice(&rest[..octets]);
        field = &rest[octets..];
        let prefix = if ipv6 {
            Ipv6Net::new(address.into(), length).map(IpNet::V6)
        } else {
            let [a, b, c, d, ..] = address;
            Ipv4Net::new([a, b, c, d].into(), length).map(IpNet::V4)
        }
        .map_err(|error| error.to_string())?;
        out.push(RouteKey {
            prefix: prefix.trunc(),
            path_id,
        });
    }
    Ok(())
}
