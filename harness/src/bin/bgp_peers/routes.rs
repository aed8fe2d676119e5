//! The benchmark's route set: IPv4 /24s counting up from 11.0.0.0, IPv6 /48s counting up from
//! 3fff::/20, one attribute set (these next hops), between these two autonomous systems.

use std::net::{Ipv4Addr, Ipv6Addr};

pub(crate) const SENDER_ASN: u32 = 65001;
pub(crate) const RECEIVER_ASN: u32 = 64512;
pub(crate) const NEXT_HOP_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub(crate) const NEXT_HOP_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

pub(crate) fn ipv4_prefix(index: u32) -> String {
    let address = Ipv4Addr::from((11u32 << 24).wrapping_add(index << 8));
    format!("{address}/24")
}

pub(crate) fn ipv6_prefix(index: u32) -> String {
    let address = Ipv6Addr::from((0x3fffu128 << 112) | (u128::from(index) << 80));
    format!("{address}/48")
}

pub(crate) fn ipv6_octets(index: u32) -> [u8; 6] {
    let octets = Ipv6Addr::from((0x3fffu128 << 112) | (u128::from(index) << 80)).octets();
    [
        octets[0], octets[1], octets[2], octets[3], octets[4], octets[5],
    ]
}
