//! The reverse DNS zones that cover a prefix, and the TXT record names under which a customer
//! publishes a validation token.
//!
//! Reverse zones are delegated on octet (IPv4, `in-addr.arpa`) or nibble (IPv6, `ip6.arpa`)
//! boundaries, so a prefix whose length is not on one spans several zones: a /23 has two /24
//! zones, a /46 four /48 zones. A prefix longer than a boundary lives in the one zone that
//! covers it (a /25 in its /24). The token must be in every covering zone: proving control of
//! one half of a /23 proves nothing about the other.
//!
//! Owns: the zone and record names. Must not touch: resolving them.

use std::net::IpAddr;

use ipnet::IpNet;

/// The label under each reverse zone that holds the validation token's TXT record.
pub const CHALLENGE_LABEL: &str = "_topologyd-challenge";

/// The reverse zones covering `prefix`, in address order, each without a trailing dot
/// (`"1.0.192.in-addr.arpa"`). At most 128 (an IPv4 /17 spans 128 /24 zones; an IPv6 prefix at
/// most 8 nibble zones).
pub fn reverse_zones(prefix: IpNet) -> Vec<String> {
    let prefix = prefix.trunc();
    let (unit, max_len) = match prefix {
        IpNet::V4(_) => (8u8, 24u8),
        IpNet::V6(_) => (4u8, 124u8),
    };
    let len = prefix.prefix_len();
    let zone_len = len.div_ceil(unit).saturating_mul(unit).clamp(unit, max_len);
    if zone_len <= len {
        // On a boundary, or longer than the deepest zone: the one zone that covers it.
        let covering = IpNet::new(prefix.network(), zone_len.min(len))
            .map(|n| n.trunc())
            .unwrap_or(prefix);
        let zone = IpNet::new(covering.network(), zone_len).map(|n| n.trunc());
        return zone.map(|z| vec![zone_name(z)]).unwrap_or_default();
    }
    prefix
        .subnets(zone_len)
        .map(|subnets| subnets.map(zone_name).collect())
        .unwrap_or_default()
}

/// The TXT record names (`_topologyd-challenge.<zone>`) for `prefix`, one per covering zone.
pub fn challenge_record_names(prefix: IpNet) -> Vec<String> {
    reverse_zones(prefix)
        .into_iter()
        .map(|zone| format!("{CHALLENGE_LABEL}.{zone}"))
        .collect()
}

/// The reverse zone name of a prefix on a zone boundary.
fn zone_name(zone: IpNet) -> String {
    match zone.network() {
        IpAddr::V4(addr) => {
            let octets = usize::from(zone.prefix_len() / 8);
            let mut labels: Vec<String> = addr.octets()[..octets]
                .iter()
                .rev()
                .map(u8::to_string)
                .collect();
            labels.push("in-addr.arpa".to_string());
            labels.join(".")
        }
        IpAddr::V6(addr) => {
            let nibbles = usize::from(zone.prefix_len() / 4);
            let mut labels: Vec<String> = addr
                .octets()
                .iter()
                .flat_map(|byte| [byte >> 4, byte & 0x0f])
                .take(nibbles)
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            labels.reverse();
            labels.push("ip6.arpa".to_string());
            labels.join(".")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    #[test]
    fn octet_aligned_prefix_has_one_zone() {
        assert_eq!(reverse_zones(net("192.0.2.0/24")), ["2.0.192.in-addr.arpa"]);
        assert_eq!(reverse_zones(net("10.1.0.0/16")), ["1.10.in-addr.arpa"]);
    }

    #[test]
    fn a_slash_23_needs_both_slash_24_zones() {
        assert_eq!(
            reverse_zones(net("198.51.100.0/23")),
            ["100.51.198.in-addr.arpa", "101.51.198.in-addr.arpa"]
        );
        assert_eq!(
            challenge_record_names(net("198.51.100.0/23"))[1],
            "_topologyd-challenge.101.51.198.in-addr.arpa"
        );
    }

    #[test]
    fn longer_than_a_slash_24_lives_in_its_slash_24() {
        assert_eq!(
            reverse_zones(net("192.0.2.128/25")),
            ["2.0.192.in-addr.arpa"]
        );
    }

    #[test]
    fn ipv6_nibble_zones() {
        assert_eq!(
            reverse_zones(net("2001:db8:abcd::/48")),
            ["d.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa"]
        );
        let zones = reverse_zones(net("2001:db8:abcc::/46"));
        assert_eq!(zones.len(), 4);
        assert_eq!(zones[0], "c.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa");
        assert_eq!(zones[3], "f.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa");
    }

    #[test]
    fn short_prefixes_span_the_next_boundary() {
        assert_eq!(
            reverse_zones(net("10.0.0.0/15")),
            ["0.10.in-addr.arpa", "1.10.in-addr.arpa"]
        );
        assert_eq!(reverse_zones(net("10.0.0.0/17")).len(), 128);
        assert_eq!(reverse_zones(net("10.0.0.0/8")), ["10.in-addr.arpa"]);
    }

    proptest! {
        /// Every address of the prefix falls in exactly one of its zones, and every zone lies
        /// inside the prefix or covers it.
        #[test]
        fn zones_cover_the_prefix_exactly(addr in any::<u32>(), len in 8u8..=32, probe in any::<u32>()) {
            let prefix = IpNet::new(IpAddr::V4(addr.into()), len).expect("len <= 32").trunc();
            let zones = reverse_zones(prefix);
            prop_assume!(!zones.is_empty());
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            let inside = std::net::Ipv4Addr::from((addr & mask) | (probe & !mask));
            let octets = inside.octets();
            let matching = zones.iter().filter(|zone| {
                let labels: Vec<&str> = zone.trim_end_matches(".in-addr.arpa").split('.').rev().collect();
                labels.iter().enumerate().all(|(i, l)| *l == octets[i].to_string())
            }).count();
            prop_assert_eq!(matching, 1, "{} in {:?}", inside, zones);
        }
    }
}
