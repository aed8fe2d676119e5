//! Hand-written NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5) for the UPDATE packer.
//!
//! Owns: the `length octet + significant address octets` layout of one prefix, for IPv4 and
//! IPv6, written straight into a caller's buffer. Must not touch: message framing or attributes.
//!
//! Why by hand and not through `rustbgpd-wire`: its `encode_nlri` takes a slice of its own prefix
//! structs and appends to a `Vec<u8>`, so packing 1.2 M routes would mean building a temporary
//! vector of wire structs per message and copying it into the output. The layout is four lines
//! and the packer needs to know the exact byte count before writing (to fill messages to the
//! limit), so we write it directly into the output `BytesMut`. Decoding still goes through
//! `rustbgpd-wire`, and the proptests check that our encoder and its decoder agree.

use bytes::BufMut;

/// Bytes one prefix of `length` bits occupies in an NLRI field (length octet included), for
/// either family.
#[must_use]
pub const fn prefix_wire_len(length: u8) -> usize {
    1 + (length as usize).div_ceil(8)
}

/// Appends one IPv4 prefix (RFC 4271 §4.3: length in bits, then the minimum number of octets).
/// `length` must be ≤ 32 (the Adj-RIB-Out only stores validated prefixes); larger values are
/// clamped so this never panics.
pub fn put_ipv4_prefix(buffer: &mut impl BufMut, address: u32, length: u8) {
    put_prefix(buffer, &address.to_be_bytes(), length);
}

/// Appends one IPv6 prefix (RFC 4760 §5 with the RFC 4271 §4.3 layout). `length` is clamped to
/// 128.
pub fn put_ipv6_prefix(buffer: &mut impl BufMut, address: u128, length: u8) {
    put_prefix(buffer, &address.to_be_bytes(), length);
}

/// The layout shared by both families; `length` is clamped to the address width.
#[inline]
fn put_prefix(buffer: &mut impl BufMut, octets: &[u8], length: u8) {
    let length = usize::from(length).min(octets.len() * 8);
    buffer.put_u8(length as u8);
    let significant = length.div_ceil(8);
    buffer.put_slice(octets.get(..significant).unwrap_or(octets));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4271_4_3_ipv4_prefix_uses_minimum_octets() {
        let mut buffer = Vec::new();
        put_ipv4_prefix(&mut buffer, 0x0A01_0200, 24);
        assert_eq!(buffer, [24, 10, 1, 2]);
        buffer.clear();
        put_ipv4_prefix(&mut buffer, 0, 0);
        assert_eq!(buffer, [0]);
        assert_eq!(prefix_wire_len(24), 4);
        assert_eq!(prefix_wire_len(25), 5);
    }

    #[test]
    fn rfc4760_5_ipv6_prefix_uses_minimum_octets() {
        let mut buffer = Vec::new();
        put_ipv6_prefix(&mut buffer, 0x2001_0db8_0001_u128 << 80, 48);
        assert_eq!(buffer, [48, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01]);
        assert_eq!(prefix_wire_len(48), 7);
        assert_eq!(prefix_wire_len(128), 17);
    }
}
