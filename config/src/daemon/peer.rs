//! One `[[peer]]` section into a [`PeerConfig`]: addresses, timers, families and next hops
//! checked against the RFCs that bound them, with the error at the value; and
//! [`ipv6_next_hop_problem`], the rule the BGP codec shares for which IPv6 next hops can never be
//! encoded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use super::file::{PeerFile, checked_value, parse_value, span_of};
use super::model::*;
use crate::diagnostic::Collector;
use crate::source::Span;

/// Why an IPv6 next hop can never be encoded (RFC 4760 §3, RFC 2545 §3: a global unicast
/// address in MP_REACH_NLRI); the BGP codec refuses the same addresses.
pub fn ipv6_next_hop_problem(address: Ipv6Addr) -> Option<&'static str> {
    if address.is_unspecified() {
        Some("the unspecified address")
    } else if address.is_loopback() {
        Some("the loopback address")
    } else if address.is_multicast() {
        Some("a multicast address")
    } else if address.is_unicast_link_local() {
        Some("a link-local address")
    } else {
        None
    }
}

/// Every `[[peer]]`, in order; a name or an address used twice is an error at the second peer's
/// name.
pub(super) fn convert_peers(
    files: Vec<PeerFile>,
    bgp_listen: &[SocketAddr],
    collector: &mut Collector,
) -> Vec<PeerConfig> {
    let mut peers = Vec::with_capacity(files.len());
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    let mut addresses: BTreeMap<IpAddr, Span> = BTreeMap::new();
    for peer in files {
        let name_span = span_of(&peer.name);
        if names
            .insert(peer.name.get_ref().clone(), name_span)
            .is_some()
        {
            collector.error(
                Some(name_span),
                format!("peer `{}` is defined twice", peer.name.get_ref()),
                Some("give every [[peer]] a unique name".into()),
            );
        }
        if let Some(converted) = convert_peer(peer, bgp_listen, collector) {
            let address_span = name_span;
            if addresses.insert(converted.address, address_span).is_some() {
                collector.error(
                    Some(address_span),
                    format!("two peers have the address {}", converted.address),
                    Some("one BGP session per neighbor address".into()),
                );
            }
            peers.push(converted);
        }
    }
    peers
}

/// The addresses a peer names, each parsed (`None` where it is absent or does not parse).
struct PeerAddresses {
    address: Option<IpAddr>,
    local_address: Option<IpAddr>,
    next_hop_ipv4: Option<Ipv4Addr>,
    next_hop_ipv6: Option<Ipv6Addr>,
}

/// One `[[peer]]`: its addresses, timers, families and session options checked, then its next
/// hops checked against its families. `None` when its address does not parse.
fn convert_peer(
    peer: PeerFile,
    bgp_listen: &[SocketAddr],
    collector: &mut Collector,
) -> Option<PeerConfig> {
    let addresses = parse_addresses(&peer, collector);
    let (hold_time, connect_retry) = check_timers(&peer, collector);
    let families = convert_families(&peer, collector);
    check_session_options(&peer, bgp_listen, collector);
    let config = PeerConfig {
        name: peer.name.get_ref().clone(),
        address: addresses.address?,
        port: peer.port.unwrap_or(DEFAULT_BGP_PORT),
        asn: *peer.asn.get_ref(),
        local_address: addresses.local_address,
        passive: peer.passive,
        hold_time_seconds: hold_time,
        send_hold_time_seconds: peer
            .send_hold_time_seconds
            .as_ref()
            .map(|value| *value.get_ref()),
        connect_retry_seconds: connect_retry,
        families,
        next_hop_ipv4: addresses.next_hop_ipv4,
        next_hop_ipv6: addresses.next_hop_ipv6,
        md5_key_file: peer.md5_key_file.as_ref().map(PathBuf::from),
        ttl_security_hops: peer
            .ttl_security_hops
            .as_ref()
            .map(|value| *value.get_ref()),
        max_prefix: peer.max_prefix,
        extended_messages: peer.extended_messages.unwrap_or(true),
    };
    if *peer.asn.get_ref() == 0 {
        collector.error(
            Some(span_of(&peer.asn)),
            "peer asn 0 is reserved (RFC 7607)",
            None,
        );
    }
    check_next_hops(&config, &peer, collector);
    Some(config)
}

fn parse_addresses(peer: &PeerFile, collector: &mut Collector) -> PeerAddresses {
    PeerAddresses {
        address: parse_value::<IpAddr>(&peer.address, "IP address", "192.0.2.2", collector),
        local_address: peer
            .local_address
            .as_ref()
            .and_then(|text| parse_value::<IpAddr>(text, "IP address", "192.0.2.1", collector)),
        next_hop_ipv4: peer
            .next_hop_ipv4
            .as_ref()
            .and_then(|text| parse_value::<Ipv4Addr>(text, "IPv4 address", "192.0.2.1", collector)),
        next_hop_ipv6: peer.next_hop_ipv6.as_ref().and_then(|text| {
            parse_value::<Ipv6Addr>(text, "IPv6 address", "2001:db8::1", collector)
        }),
    }
}

/// The hold time (RFC 4271 §4.2), the send hold time (RFC 9687 §3) and the connect-retry
/// interval: `(hold time, connect retry)`, defaults filled in.
fn check_timers(peer: &PeerFile, collector: &mut Collector) -> (u16, u16) {
    let hold_time = checked_value(
        &peer.hold_time_seconds,
        DEFAULT_HOLD_TIME_SECONDS,
        collector,
        |hold_time| {
            (matches!(hold_time, 1 | 2)).then(|| {
                (
                    format!("hold_time_seconds {} is not allowed", hold_time),
                    Some("RFC 4271 §4.2: the hold time is 0 or at least 3 seconds".into()),
                )
            })
        },
    );
    if let Some(value) = &peer.send_hold_time_seconds
        && (hold_time == 0 || *value.get_ref() <= u32::from(hold_time))
    {
        collector.error(
            Some(span_of(value)),
            if hold_time == 0 {
                format!(
                    "send_hold_time_seconds {} has no effect with hold_time_seconds = 0",
                    value.get_ref()
                )
            } else {
                format!(
                    "send_hold_time_seconds {} is not greater than hold_time_seconds {hold_time}",
                    value.get_ref()
                )
            },
            Some(format!(
                "RFC 9687 §3: the send hold time must be greater than the hold time; leave it out \
                 for the default (the greater of {DEFAULT_SEND_HOLD_TIME_MINIMUM_SECONDS} s and \
                 twice the hold time)"
            )),
        );
    }
    let connect_retry = checked_value(
        &peer.connect_retry_seconds,
        DEFAULT_CONNECT_RETRY_SECONDS,
        collector,
        |connect_retry| {
            (connect_retry == 0).then_some(("connect_retry_seconds must be at least 1", None))
        },
    );
    (hold_time, connect_retry)
}

/// `families`: both by default; an empty list is an error.
fn convert_families(peer: &PeerFile, collector: &mut Collector) -> BTreeSet<Family> {
    match &peer.families {
        Some(list) => {
            if list.get_ref().is_empty() {
                collector.error(
                    Some(span_of(list)),
                    "a peer needs at least one family",
                    Some("write families = [\"ipv4\", \"ipv6\"]".into()),
                );
            }
            list.get_ref().iter().copied().collect()
        }
        None => [Family::Ipv4, Family::Ipv6].into_iter().collect(),
    }
}

/// GTSM hops (RFC 5082) and a passive peer, which needs a listener to reach.
fn check_session_options(peer: &PeerFile, bgp_listen: &[SocketAddr], collector: &mut Collector) {
    if let Some(value) = &peer.ttl_security_hops
        && *value.get_ref() == 0
    {
        collector.error(
            Some(span_of(value)),
            "ttl_security_hops must be between 1 and 254",
            Some("1 means the peer is directly connected (RFC 5082)".into()),
        );
    }
    if peer.passive && bgp_listen.is_empty() {
        collector.error(
            Some(span_of(&peer.name)),
            format!(
                "peer `{}` is passive but the daemon listens nowhere",
                peer.name.get_ref()
            ),
            Some("add [bgp] listen = [\"ADDRESS:PORT\"] or make the peer active".into()),
        );
    }
}

/// Each announced family needs a next hop, and an IPv6 next hop must be one that an IPv6 route
/// can carry (RFC 4760 §3).
fn check_next_hops(config: &PeerConfig, peer: &PeerFile, collector: &mut Collector) {
    require_next_hop(
        config,
        peer,
        Family::Ipv4,
        config.ipv4_next_hop().is_some(),
        "set next_hop_ipv4, or an IPv4 local_address",
        collector,
    );
    if config.families.contains(&Family::Ipv6)
        && let Some(next_hop) = config.ipv6_next_hop()
        && let Some(problem) = ipv6_next_hop_problem(next_hop)
    {
        let (span, origin) = match (&peer.next_hop_ipv6, &peer.local_address) {
            (Some(text), _) => (span_of(text), "next_hop_ipv6"),
            (None, Some(text)) => (span_of(text), "the default next hop (local_address)"),
            (None, None) => (span_of(&peer.name), "the next hop"),
        };
        collector.error(
            Some(span),
            format!(
                "peer `{}`: {origin} {next_hop} is {problem}, which an IPv6 route can never carry \
                 as its next hop (RFC 4760 §3): every IPv6 route to this peer would fail",
                config.name
            ),
            Some(
                "set next_hop_ipv6 to a global unicast address of this router, or families = \
                 [\"ipv4\"]"
                    .into(),
            ),
        );
    }
    require_next_hop(
        config,
        peer,
        Family::Ipv6,
        config.ipv6_next_hop().is_some(),
        "set next_hop_ipv6, an IPv6 local_address, or families = [\"ipv4\"]",
        collector,
    );
}

/// A peer that announces `family` needs a next hop of that family (`has_next_hop`).
fn require_next_hop(
    config: &PeerConfig,
    peer: &PeerFile,
    family: Family,
    has_next_hop: bool,
    help: &str,
    collector: &mut Collector,
) {
    if config.families.contains(&family) && !has_next_hop {
        let family = match family {
            Family::Ipv4 => "IPv4",
            Family::Ipv6 => "IPv6",
        };
        collector.error(
            Some(span_of(&peer.name)),
            format!(
                "peer `{}` announces {family} but has no {family} next hop",
                config.name
            ),
            Some(help.into()),
        );
    }
}
