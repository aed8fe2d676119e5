//! UPDATE messages: decoding with RFC 7606 actions (through `rustbgpd-wire`) and the
//! hand-written byte layout used both by [`encode_update`] and by the Adj-RIB-Out packer.
//!
//! Owns: the UPDATE layout of RFC 4271 §4.3 (withdrawn routes, path attributes, NLRI), the
//! MP_REACH_NLRI / MP_UNREACH_NLRI attributes of RFC 4760 §3-4 for IPv6 unicast, End-of-RIB
//! markers (RFC 4724 §2), and the mapping of decode problems to RFC 7606 §2 actions.
//! Must not touch: sessions or the RIB's bookkeeping.
//!
//! wire gap: `rustbgpd-wire` has no packer and builds MP_REACH from a complete list of prefixes,
//! so its attribute length field (1 or 2 octets) is only known at the end. We always write
//! MP_REACH/MP_UNREACH with the extended-length flag (RFC 4271 §4.3 allows a 2-octet length for
//! any value), which keeps the overhead fixed while prefixes are appended, and place them first
//! among the attributes as RFC 7606 §5.1 recommends.

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use rustbgpd_wire as wire;

use super::attributes::{self, NextHopPlacement};
use super::nlri::{put_ipv4_prefix, put_ipv6_prefix};
use super::{
    EncodeContext, EncodeError, Family, HEADER_LEN, MessageError, Notification, Update,
    UpdateErrorHandling, error_code, ipv4_net, ipv6_net, message_type,
};

/// Fixed part of every UPDATE: header, withdrawn-routes length, attributes length.
pub const UPDATE_FIXED_LEN: usize = HEADER_LEN + 4;
/// Attribute flags for MP_REACH/MP_UNREACH: optional, extended length (RFC 4760 §3).
const MP_FLAGS_EXTENDED: u8 = 0x90;
/// MP_REACH_NLRI type code.
const MP_REACH_NLRI: u8 = 14;
/// MP_UNREACH_NLRI type code.
const MP_UNREACH_NLRI: u8 = 15;
/// MP_UNREACH_NLRI overhead before the first prefix: flags, type, 2-octet length, AFI, SAFI.
pub const MP_UNREACH_OVERHEAD: usize = 4 + 3;

/// MP_REACH_NLRI overhead before the first prefix: flags, type, 2-octet length, AFI, SAFI,
/// next-hop length, next hop (16 or 32), reserved octet.
#[must_use]
pub fn mp_reach_overhead(next_hop: &super::Ipv6NextHop) -> usize {
    4 + 3
        + 1
        + if next_hop.link_local.is_some() {
            32
        } else {
            16
        }
        + 1
}

/// Starts an UPDATE in `out`: marker, length placeholder, type. Returns the message start.
pub fn begin_message(out: &mut BytesMut) -> usize {
    let start = out.len();
    out.put_bytes(0xff, 16);
    out.put_u16(0);
    out.put_u8(message_type::UPDATE);
    start
}

/// Writes a 2-octet big-endian length at `position`.
pub fn patch_u16(out: &mut BytesMut, position: usize, value: usize) {
    let value = u16::try_from(value).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(position..position + 2) {
        slot.copy_from_slice(&value);
    }
}

/// Finishes the message that starts at `start` (patches the header length).
pub fn finish_message(out: &mut BytesMut, start: usize) {
    let length = out.len() - start;
    patch_u16(out, start + 16, length);
}

/// Writes the MP_REACH_NLRI header for IPv6 unicast and returns the position of its length
/// field (patch with the value length once prefixes are written: `out.len() - position - 2`).
pub fn begin_mp_reach_ipv6(out: &mut BytesMut, next_hop: &super::Ipv6NextHop) -> usize {
    out.put_u8(MP_FLAGS_EXTENDED);
    out.put_u8(MP_REACH_NLRI);
    let position = out.len();
    out.put_u16(0);
    out.put_u16(Family::Ipv6Unicast.afi());
    out.put_u8(Family::Ipv6Unicast.safi());
    match next_hop.link_local {
        Some(link_local) => {
            out.put_u8(32);
            out.put_slice(&next_hop.global.octets());
            out.put_slice(&link_local.octets());
        }
        None => {
            out.put_u8(16);
            out.put_slice(&next_hop.global.octets());
        }
    }
    out.put_u8(0);
    position
}

/// Writes the MP_UNREACH_NLRI header for IPv6 unicast; returns the length-field position.
pub fn begin_mp_unreach_ipv6(out: &mut BytesMut) -> usize {
    out.put_u8(MP_FLAGS_EXTENDED);
    out.put_u8(MP_UNREACH_NLRI);
    let position = out.len();
    out.put_u16(0);
    out.put_u16(Family::Ipv6Unicast.afi());
    out.put_u8(Family::Ipv6Unicast.safi());
    position
}

/// Appends the End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for IPv4 unicast,
/// an UPDATE with only an empty MP_UNREACH_NLRI for IPv6 unicast.
pub fn put_end_of_rib(out: &mut BytesMut, family: Family) {
    let start = begin_message(out);
    out.put_u16(0);
    match family {
        Family::Ipv4Unicast => out.put_u16(0),
        Family::Ipv6Unicast => {
            out.put_u16(6);
            out.put_slice(&[0x80, MP_UNREACH_NLRI, 3, 0, 2, 1]);
        }
    }
    finish_message(out, start);
}

fn ipv6_address(prefix: &IpNet) -> Option<(u128, u8)> {
    match prefix {
        IpNet::V6(net) => Some((u128::from(net.network()), net.prefix_len())),
        IpNet::V4(_) => None,
    }
}

fn ipv4_address(prefix: &IpNet) -> Option<(u32, u8)> {
    match prefix {
        IpNet::V4(net) => Some((u32::from(net.network()), net.prefix_len())),
        IpNet::V6(_) => None,
    }
}

/// Encodes one UPDATE (wire gap: validates what `try_build` does not — next hops present for
/// the families announced, sizes within limits).
pub(crate) fn encode_update(
    update: &Update,
    context: &EncodeContext,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    let empty = update.withdrawn.is_empty() && update.announced.is_empty();
    if let (Some(family), true) = (update.end_of_rib, empty) {
        put_end_of_rib(out, family);
        return Ok(());
    }
    let withdrawn_v4: Vec<(u32, u8)> = update.withdrawn.iter().filter_map(ipv4_address).collect();
    let withdrawn_v6: Vec<(u128, u8)> = update.withdrawn.iter().filter_map(ipv6_address).collect();
    let announced_v4: Vec<(u32, u8)> = update.announced.iter().filter_map(ipv4_address).collect();
    let announced_v6: Vec<(u128, u8)> = update.announced.iter().filter_map(ipv6_address).collect();

    let blob = if update.announced.is_empty() {
        Vec::new()
    } else {
        let placement = if announced_v4.is_empty() {
            NextHopPlacement::Omitted
        } else {
            NextHopPlacement::ClassicIpv4
        };
        attributes::encode_attributes(&update.attributes, placement, context.four_octet_as)?
    };

    begin_message(out);
    let withdrawn_position = out.len();
    out.put_u16(0);
    for (address, length) in &withdrawn_v4 {
        put_ipv4_prefix(out, *address, *length);
    }
    let withdrawn_len = out.len() - withdrawn_position - 2;
    patch_u16(out, withdrawn_position, withdrawn_len);
    let attributes_position = out.len();
    out.put_u16(0);
    if !announced_v6.is_empty() {
        let next_hop = update
            .attributes
            .ipv6_next_hop
            .ok_or(EncodeError::Invalid("IPv6 route without an IPv6 next hop"))?;
        let position = begin_mp_reach_ipv6(out, &next_hop);
        put_multiprotocol_prefixes(out, position, &announced_v6, "MP_REACH_NLRI")?;
    }
    if !withdrawn_v6.is_empty() {
        let position = begin_mp_unreach_ipv6(out);
        put_multiprotocol_prefixes(out, position, &withdrawn_v6, "MP_UNREACH_NLRI")?;
    }
    out.put_slice(&blob);
    let attributes_len = out.len() - attributes_position - 2;
    patch_u16(out, attributes_position, attributes_len);
    for (address, length) in &announced_v4 {
        put_ipv4_prefix(out, *address, *length);
    }
    let size = out.len() - start;
    if size > usize::from(context.max_message_len) || withdrawn_len > usize::from(u16::MAX) {
        out.truncate(start);
        return Err(EncodeError::MessageTooLong {
            size,
            limit: usize::from(context.max_message_len),
        });
    }
    finish_message(out, start);
    Ok(())
}

/// Appends IPv6 prefixes to the MP_REACH_NLRI / MP_UNREACH_NLRI attribute whose length field
/// is at `position` (RFC 4760 §3-4) and patches that length.
fn put_multiprotocol_prefixes(
    out: &mut BytesMut,
    position: usize,
    prefixes: &[(u128, u8)],
    attribute: &'static str,
) -> Result<(), EncodeError> {
    for (address, length) in prefixes {
        put_ipv6_prefix(out, *address, *length);
    }
    let value_len = out.len() - position - 2;
    if value_len > usize::from(u16::MAX) {
        return Err(EncodeError::AttributeTooLong {
            attribute,
            length: value_len,
        });
    }
    patch_u16(out, position, value_len);
    Ok(())
}

fn update_error(subcode: u8, data: Vec<u8>, detail: String) -> MessageError {
    MessageError {
        notification: Notification::new(error_code::UPDATE_MESSAGE, subcode, data),
        message_type: Some(message_type::UPDATE),
        detail,
    }
}

/// Decodes a framed UPDATE and applies RFC 7606.
pub(crate) fn decode_update(
    update: &wire::UpdateMessage,
    context: &super::DecodeContext,
) -> Result<Update, MessageError> {
    if update.withdrawn_routes.is_empty()
        && update.path_attributes.is_empty()
        && update.nlri.is_empty()
    {
        return Ok(Update::end_of_rib(Family::Ipv4Unicast));
    }
    let parsed = update
        .parse_revised(context.four_octet_as, context.internal_peer, false, &[])
        .map_err(|error| MessageError::from_wire(&error, Some(message_type::UPDATE)))?;
    let mut handling = UpdateErrorHandling::default();
    for malformed in &parsed.malformed {
        match malformed.disposition {
            wire::ErrorDisposition::SessionReset => {
                return Err(MessageError::from_wire(
                    &malformed.error,
                    Some(message_type::UPDATE),
                ));
            }
            wire::ErrorDisposition::TreatAsWithdraw => handling.treat_as_withdraw = true,
            wire::ErrorDisposition::AttributeDiscard => {
                handling.discarded_attributes.push(malformed.type_code);
            }
        }
    }
    let body = &parsed.update;
    let mut result = Update {
        attributes: attributes::from_wire(&body.attributes),
        ..Update::default()
    };
    for entry in &body.withdrawn {
        result
            .withdrawn
            .extend(ipv4_net(entry.prefix.addr, entry.prefix.len));
    }
    for entry in &body.announced {
        result
            .announced
            .extend(ipv4_net(entry.prefix.addr, entry.prefix.len));
    }
    let mut mp_attribute_count = 0usize;
    let mut empty_ipv6_unreach = false;
    for attribute in &body.attributes {
        match attribute {
            wire::PathAttribute::MpReachNlri(reach) => {
                mp_attribute_count += 1;
                let family = Family::from_afi_safi(reach.afi as u16, reach.safi as u8);
                if family.is_none() {
                    result.other_family_prefixes += reach.announced.len()
                        + reach.vpn_announced.len()
                        + reach.labeled_announced.len()
                        + reach.evpn_announced.len()
                        + reach.flowspec_announced.len();
                    continue;
                }
                if let std::net::IpAddr::V6(global) = reach.next_hop {
                    result.attributes.ipv6_next_hop = Some(super::Ipv6NextHop {
                        global,
                        link_local: reach.link_local_next_hop,
                    });
                }
                for entry in &reach.announced {
                    result.announced.extend(prefix_from_wire(&entry.prefix));
                }
            }
            wire::PathAttribute::MpUnreachNlri(unreach) => {
                mp_attribute_count += 1;
                let family = Family::from_afi_safi(unreach.afi as u16, unreach.safi as u8);
                if family.is_none() {
                    result.other_family_prefixes += unreach.withdrawn.len()
                        + unreach.vpn_withdrawn.len()
                        + unreach.labeled_withdrawn.len()
                        + unreach.evpn_withdrawn.len()
                        + unreach.flowspec_withdrawn.len();
                    continue;
                }
                if unreach.withdrawn.is_empty() && family == Some(Family::Ipv6Unicast) {
                    empty_ipv6_unreach = true;
                }
                for entry in &unreach.withdrawn {
                    result.withdrawn.extend(prefix_from_wire(&entry.prefix));
                }
            }
            _ => {}
        }
    }
    // RFC 4724 §2: End-of-RIB for an MP family is an UPDATE carrying only an empty
    // MP_UNREACH_NLRI for it.
    if empty_ipv6_unreach
        && body.attributes.len() == 1
        && mp_attribute_count == 1
        && body.withdrawn.is_empty()
        && body.announced.is_empty()
    {
        result.end_of_rib = Some(Family::Ipv6Unicast);
    }
    let has_nlri = !result.announced.is_empty() || result.other_family_prefixes > 0;
    let has_body_nlri = !body.announced.is_empty();
    if let Err(error) = wire::validate::validate_update_attributes(
        &body.attributes,
        has_nlri,
        has_body_nlri,
        !context.internal_peer,
    ) {
        match error.disposition {
            wire::ErrorDisposition::SessionReset => {
                return Err(update_error(
                    error.subcode,
                    error.data,
                    "UPDATE attribute validation failed".to_string(),
                ));
            }
            wire::ErrorDisposition::TreatAsWithdraw => handling.treat_as_withdraw = true,
            wire::ErrorDisposition::AttributeDiscard => {}
        }
    }
    result.error_handling = handling;
    Ok(result)
}

fn prefix_from_wire(prefix: &wire::Prefix) -> Option<IpNet> {
    match prefix {
        wire::Prefix::V4(v4) => ipv4_net(v4.addr, v4.len),
        wire::Prefix::V6(v6) => ipv6_net(v6.addr, v6.len),
    }
}
