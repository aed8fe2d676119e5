//! Property tests: encode → decode round trips for messages, and the packer (random routes and
//! changes → decode every UPDATE → the peer's view equals the Adj-RIB-Out, prefixes in
//! ascending order per attribute set; every message within the negotiated size).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use topologyd_bgp::codec::{
    AsPathSegment, DecodeContext, EncodeContext, Family, Frame, Ipv6NextHop, LargeCommunity,
    Message, Notification, Origin, PathAttributes, RawAttribute, RouteRefresh, RouteRefreshSubtype,
    Update, decode_message, encode_message, next_frame,
};
use topologyd_bgp::{AdjRibOut, Negotiated};

fn ipv4_prefix() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 0u8..=32).prop_map(|(address, length)| {
        IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(address), length)
                .map(|net| net.trunc())
                .unwrap_or_default(),
        )
    })
}

fn ipv6_prefix() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128).prop_map(|(address, length)| {
        IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(address), length)
                .map(|net| net.trunc())
                .unwrap_or_default(),
        )
    })
}

fn prefix() -> impl Strategy<Value = IpNet> {
    prop_oneof![ipv4_prefix(), ipv6_prefix()]
}

fn attributes() -> impl Strategy<Value = PathAttributes> {
    (
        prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ],
        prop::collection::vec(1u32..=u32::MAX, 0..8),
        any::<u32>(),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..6),
        prop::collection::vec(any::<u64>(), 0..4),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..4),
        proptest::option::of(prop::collection::vec(any::<u8>(), 0..40)),
        any::<u128>(),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(
            |(
                origin,
                path,
                next_hop,
                med,
                local_pref,
                communities,
                extended,
                large,
                unknown,
                global,
                link_local,
            )| {
                PathAttributes {
                    origin,
                    as_path: if path.is_empty() {
                        Vec::new()
                    } else {
                        vec![AsPathSegment::Sequence(path)]
                    },
                    next_hop: Some(Ipv4Addr::from(0x0100_0000 + next_hop % 0x7e00_0000)),
                    ipv6_next_hop: Some(Ipv6NextHop {
                        global: Ipv6Addr::from(
                            (global & !(0xffffu128 << 112)) | (0x2001u128 << 112),
                        ),
                        link_local: link_local.map(|value| {
                            Ipv6Addr::from((0xfe80u128 << 112) | (value & 0xffff_ffff_ffff_ffff))
                        }),
                    }),
                    med,
                    local_pref,
                    atomic_aggregate: false,
                    aggregator: None,
                    communities,
                    extended_communities: extended,
                    large_communities: large
                        .into_iter()
                        .map(
                            |(global_administrator, local_data_1, local_data_2)| LargeCommunity {
                                global_administrator,
                                local_data_1,
                                local_data_2,
                            },
                        )
                        .collect(),
                    unknown: unknown
                        .map(|value| {
                            vec![RawAttribute {
                                // Optional transitive, Partial set as the encoder will (RFC 4271 §5).
                                flags: 0xe0,
                                type_code: 200,
                                value: Bytes::from(value),
                            }]
                        })
                        .unwrap_or_default(),
                }
            },
        )
}

fn sorted(mut prefixes: Vec<IpNet>) -> Vec<IpNet> {
    prefixes.sort();
    prefixes.dedup();
    prefixes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rfc4271_4_3_update_roundtrip(
        announced in prop::collection::vec(prefix(), 0..60),
        withdrawn in prop::collection::vec(prefix(), 0..60),
        attributes in attributes(),
        local_pref_internal in any::<bool>(),
    ) {
        let mut attributes = attributes;
        if !local_pref_internal {
            attributes.local_pref = None;
        }
        let update = Update { announced: announced.clone(), withdrawn: withdrawn.clone(), attributes: attributes.clone(), ..Update::default() };
        let encode = EncodeContext { max_message_len: u16::MAX, four_octet_as: true };
        let bytes = encode_message(&Message::Update(update), &encode).expect("encodes");
        let decode = DecodeContext { max_message_len: u16::MAX, four_octet_as: true, internal_peer: local_pref_internal };
        let decoded = decode_message(&bytes, &decode).expect("decodes");
        let Message::Update(decoded) = decoded else { panic!("not an update") };
        prop_assert_eq!(sorted(decoded.announced.clone()), sorted(announced.clone()));
        prop_assert_eq!(sorted(decoded.withdrawn.clone()), sorted(withdrawn));
        prop_assert!(!decoded.error_handling.treat_as_withdraw);
        if !announced.is_empty() {
            let mut expected = attributes;
            if !announced.iter().any(|prefix| prefix.addr().is_ipv4()) {
                expected.next_hop = None;
            }
            if !announced.iter().any(|prefix| prefix.addr().is_ipv6()) {
                expected.ipv6_next_hop = None;
            }
            prop_assert_eq!(decoded.attributes, expected);
        }
    }

    #[test]
    fn rfc4271_4_5_notification_roundtrip(code in 1u8..=8, subcode in any::<u8>(), data in prop::collection::vec(any::<u8>(), 0..100)) {
        let message = Message::Notification(Notification::new(code, subcode, data));
        let bytes = encode_message(&message, &EncodeContext::default()).expect("encodes");
        prop_assert_eq!(decode_message(&bytes, &DecodeContext::default()).expect("decodes"), message);
    }

    #[test]
    fn rfc7313_route_refresh_roundtrip(family in prop_oneof![Just(Family::Ipv4Unicast), Just(Family::Ipv6Unicast)], subtype in 0u8..3) {
        let subtype = match subtype { 0 => RouteRefreshSubtype::Request, 1 => RouteRefreshSubtype::Begin, _ => RouteRefreshSubtype::End };
        let message = Message::RouteRefresh(RouteRefresh::new(family, subtype));
        let bytes = encode_message(&message, &EncodeContext::default()).expect("encodes");
        prop_assert_eq!(decode_message(&bytes, &DecodeContext::default()).expect("decodes"), message);
    }

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300), length_ok in any::<bool>()) {
        let mut bytes = bytes;
        if length_ok && bytes.len() >= 19 {
            bytes[..16].fill(0xff);
            let length = u16::try_from(bytes.len()).unwrap_or(0);
            bytes[16..18].copy_from_slice(&length.to_be_bytes());
            bytes[18] = 1 + bytes[18] % 5;
        }
        let bytes = Bytes::from(bytes);
        let _ = decode_message(&bytes, &DecodeContext::default());
        let _ = next_frame(&bytes, u16::MAX);
    }
}

fn negotiated(extended: bool) -> Negotiated {
    Negotiated {
        remote_asn: 65002,
        remote_router_id: Ipv4Addr::new(10, 0, 0, 2),
        hold_time: 90,
        keepalive_interval: Some(Duration::from_secs(30)),
        families: Family::ALL.to_vec(),
        four_octet_as: true,
        extended_messages: extended,
        route_refresh: true,
        enhanced_route_refresh: true,
        peer_graceful_restart: None,
        local_graceful_restart: true,
        internal: false,
    }
}

/// Prefixes of one drain in the order they went out: withdrawals per family, announcements per
/// family and attribute set.
#[derive(Default)]
struct DrainOrder {
    withdrawn: [Vec<IpNet>; 2],
    announced: Vec<((bool, PathAttributes), Vec<IpNet>)>,
}

impl DrainOrder {
    fn announced(&mut self, prefix: IpNet, attributes: &PathAttributes) {
        let group = (matches!(prefix, IpNet::V6(_)), attributes.clone());
        match self.announced.iter_mut().find(|(key, _)| *key == group) {
            Some((_, prefixes)) => prefixes.push(prefix),
            None => self.announced.push((group, vec![prefix])),
        }
    }

    /// Every list strictly ascending: address order, and no prefix twice in one drain.
    fn check_ascending(&self) -> Result<(), TestCaseError> {
        let ascending = |prefixes: &[IpNet]| prefixes.windows(2).all(|pair| pair[0] < pair[1]);
        for prefixes in &self.withdrawn {
            prop_assert!(
                ascending(prefixes),
                "withdrawals not ascending: {prefixes:?}"
            );
        }
        for ((ipv6, _), prefixes) in &self.announced {
            prop_assert!(
                ascending(prefixes),
                "announcements (IPv6: {ipv6}) of one set not ascending: {prefixes:?}"
            );
        }
        Ok(())
    }
}

/// Applies everything the RIB has to send to `view`; checks message sizes, and that within this
/// drain the withdrawals of each family and the announcements of each family and attribute set
/// go out in ascending prefix order.
fn apply(
    rib: &mut AdjRibOut,
    view: &mut BTreeMap<IpNet, PathAttributes>,
    max: usize,
    budget: usize,
) -> Result<(), TestCaseError> {
    let context = DecodeContext {
        max_message_len: u16::MAX,
        ..DecodeContext::default()
    };
    let mut order = DrainOrder::default();
    while let Some(mut bytes) = rib.next_update(budget) {
        while !bytes.is_empty() {
            let Ok(Frame::Complete { length }) = next_frame(&bytes, u16::MAX) else {
                return Err(TestCaseError::fail("broken frame"));
            };
            prop_assert!(length <= max);
            let message = bytes.split_to(length);
            if let Message::Update(update) = decode_message(&message, &context).expect("decodes") {
                for prefix in &update.withdrawn {
                    view.remove(prefix);
                    order.withdrawn[usize::from(matches!(prefix, IpNet::V6(_)))].push(*prefix);
                }
                for prefix in &update.announced {
                    let mut attributes = update.attributes.clone();
                    match prefix {
                        IpNet::V4(_) => attributes.ipv6_next_hop = None,
                        IpNet::V6(_) => attributes.next_hop = None,
                    }
                    order.announced(*prefix, &attributes);
                    view.insert(*prefix, attributes);
                }
            }
        }
    }
    order.check_ascending()
}

#[derive(Debug, Clone)]
enum Change {
    Announce(IpNet, usize),
    Withdraw(IpNet),
    Drain,
    Refresh(Family),
    /// The session goes down (the peer forgets our routes) and comes up again: a full re-send.
    Resync,
    /// Every route withdrawn at once (sent in prefix order, swept from the map once sent).
    WithdrawAll,
}

fn change(pool: Vec<IpNet>) -> impl Strategy<Value = Change> {
    let size = pool.len();
    let pool2 = pool.clone();
    prop_oneof![
        6 => (0..size, 0usize..3).prop_map(move |(index, set)| Change::Announce(pool[index], set)),
        3 => (0..size).prop_map(move |index| Change::Withdraw(pool2[index])),
        1 => Just(Change::Drain),
        1 => prop_oneof![Just(Family::Ipv4Unicast), Just(Family::Ipv6Unicast)].prop_map(Change::Refresh),
        1 => Just(Change::Resync),
        1 => Just(Change::WithdrawAll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random routes and change sequences (announce, withdraw, drain, route refresh, re-sync,
    /// withdraw-all): the decoded UPDATE stream leaves the peer holding exactly the
    /// Adj-RIB-Out, and every drain sends each family's withdrawals and each attribute set's
    /// announcements in ascending prefix order (`apply`).
    #[test]
    fn packer_peer_view_equals_rib(
        changes in prop::collection::vec(prefix(), 1..300)
            .prop_flat_map(|pool| prop::collection::vec(change(pool), 0..400)),
        sets in prop::collection::vec(attributes(), 3),
        extended in any::<bool>(),
        budget in 1usize..200_000,
    ) {
        let sets: Vec<Arc<PathAttributes>> = sets.into_iter().map(Arc::new).collect();
        let max = if extended { 65535 } else { 4096 };
        let mut rib = AdjRibOut::new();
        let mut expected: BTreeMap<IpNet, PathAttributes> = BTreeMap::new();
        let mut view = BTreeMap::new();
        let mut established = false;
        let (first, rest) = changes.split_at(changes.len() / 3);
        for batch in [first, rest] {
            for change in batch {
                match change {
                    Change::Announce(prefix, set) => {
                        let attributes = &sets[*set];
                        rib.announce(*prefix, attributes).expect("valid");
                        let mut stored = (**attributes).clone();
                        match prefix {
                            IpNet::V4(_) => stored.ipv6_next_hop = None,
                            IpNet::V6(_) => stored.next_hop = None,
                        }
                        expected.insert(*prefix, stored);
                    }
                    Change::Withdraw(prefix) => {
                        rib.withdraw(*prefix);
                        expected.remove(prefix);
                    }
                    Change::Drain => apply(&mut rib, &mut view, max, budget)?,
                    Change::Refresh(family) => rib.route_refresh(*family),
                    Change::Resync if established => {
                        rib.session_down();
                        view.clear();
                        rib.session_established(&negotiated(extended));
                    }
                    Change::Resync => {}
                    Change::WithdrawAll => {
                        rib.withdraw_all();
                        expected.clear();
                    }
                }
            }
            if view.is_empty() && !rib.has_pending() {
                rib.session_established(&negotiated(extended));
                established = true;
            }
        }
        apply(&mut rib, &mut view, max, budget)?;
        prop_assert_eq!(view, expected);
    }
}
