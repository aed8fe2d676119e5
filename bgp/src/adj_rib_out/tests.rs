//! Adj-RIB-Out tests: coalescing, ordering, packing limits, End-of-RIB, refresh.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::*;
use crate::codec::{DecodeContext, Frame, Ipv6NextHop, Update, decode_message, next_frame};

pub(crate) fn negotiated(extended: bool, enhanced: bool, families: &[Family]) -> Negotiated {
    Negotiated {
        remote_asn: 65002,
        remote_router_id: Ipv4Addr::new(10, 0, 0, 2),
        hold_time: 90,
        keepalive_interval: Some(Duration::from_secs(30)),
        families: families.to_vec(),
        four_octet_as: true,
        extended_messages: extended,
        route_refresh: true,
        enhanced_route_refresh: enhanced,
        peer_graceful_restart: None,
        local_graceful_restart: true,
        internal: false,
    }
}

fn attributes(med: u32) -> Arc<PathAttributes> {
    Arc::new(
        PathAttributes {
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6_next_hop: Some(Ipv6NextHop {
                global: "2001:db8::1"
                    .parse()
                    .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
                link_local: Some("fe80::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST)),
            }),
            med: Some(med),
            ..PathAttributes::default()
        }
        .with_as_sequence(vec![65001, 65001]),
    )
}

fn prefix(text: &str) -> IpNet {
    text.parse().unwrap_or_default()
}

/// Everything pending, as decoded messages; checks sizes.
fn drain(rib: &mut AdjRibOut, max: usize) -> Vec<Message> {
    let context = DecodeContext {
        max_message_len: u16::MAX,
        ..DecodeContext::default()
    };
    let mut messages = Vec::new();
    while let Some(mut bytes) = rib.next_update(256 * 1024) {
        while !bytes.is_empty() {
            let Ok(Frame::Complete { length }) = next_frame(&bytes, u16::MAX) else {
                panic!("broken frame");
            };
            assert!(length <= max, "message of {length} > {max}");
            let message = bytes.split_to(length);
            messages.push(decode_message(&message, &context).expect("decodes"));
        }
    }
    messages
}

fn updates(messages: &[Message]) -> Vec<&Update> {
    messages
        .iter()
        .filter_map(|message| match message {
            Message::Update(update) => Some(update),
            _ => None,
        })
        .collect()
}

fn updates_of(messages: &[Message]) -> usize {
    updates(messages).len()
}

/// The peer's view after applying `messages` in order.
fn peer_view(messages: &[Message], view: &mut BTreeMap<IpNet, PathAttributes>) {
    for update in updates(messages) {
        for prefix in &update.withdrawn {
            view.remove(prefix);
        }
        for prefix in &update.announced {
            view.insert(*prefix, update.attributes.clone());
        }
    }
}

#[test]
fn nothing_is_sent_before_established() {
    let mut rib = AdjRibOut::new();
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    assert!(rib.next_update(4096).is_none());
    assert!(!rib.has_pending());
}

#[test]
fn rfc4724_2_end_of_rib_once_per_family_after_initial_sync() {
    let mut rib = AdjRibOut::new();
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.announce(prefix("2001:db8::/48"), &attributes(1))
        .expect("ok");
    rib.session_established(&negotiated(false, false, &Family::ALL));
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    assert_eq!(updates.len(), 4);
    assert_eq!(updates[2].end_of_rib, Some(Family::Ipv4Unicast));
    assert_eq!(updates[3].end_of_rib, Some(Family::Ipv6Unicast));
    rib.announce(prefix("10.0.1.0/24"), &attributes(1))
        .expect("ok");
    let messages = drain(&mut rib, 4096);
    assert_eq!(updates_of(&messages), 1, "no second End-of-RIB");
}

#[test]
fn coalescing_last_write_wins() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut rib, 4096);
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.announce(prefix("10.0.0.0/24"), &attributes(2))
        .expect("ok");
    rib.announce(prefix("10.0.0.0/24"), &attributes(3))
        .expect("ok");
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].attributes.med, Some(3));
    assert_eq!(rib.len(), 1);
}

#[test]
fn coalescing_announce_then_withdraw_sends_no_announcement() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut rib, 4096);
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.withdraw(prefix("10.0.0.0/24"));
    let messages = drain(&mut rib, 4096);
    // Only a (harmless) withdrawal: whether the announcement already left is not tracked.
    let updates = updates(&messages);
    assert_eq!(updates.len(), 1);
    assert!(updates[0].announced.is_empty());
    assert!(rib.is_empty());
}

#[test]
fn not_established_withdraw_forgets_silently() {
    let mut rib = AdjRibOut::new();
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.withdraw(prefix("10.0.0.0/24"));
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    let messages = drain(&mut rib, 4096);
    assert_eq!(updates(&messages).len(), 1, "End-of-RIB only");
}

#[test]
fn churn_between_sets_is_validated_not_duplicated() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut rib, 4096);
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.announce(prefix("10.0.0.0/24"), &attributes(2))
        .expect("ok");
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].announced.len(), 1);
    assert_eq!(updates[0].attributes.med, Some(1));
}

#[test]
fn coalescing_withdraw_then_reannounce_same_attributes() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    drain(&mut rib, 4096);
    rib.withdraw(prefix("10.0.0.0/24"));
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].announced, vec![prefix("10.0.0.0/24")]);
    assert!(updates[0].withdrawn.is_empty());
}

#[test]
fn withdrawals_go_first() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &Family::ALL));
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.announce(prefix("2001:db8::/48"), &attributes(1))
        .expect("ok");
    drain(&mut rib, 4096);
    rib.announce(prefix("10.0.1.0/24"), &attributes(1))
        .expect("ok");
    rib.withdraw(prefix("10.0.0.0/24"));
    rib.withdraw(prefix("2001:db8::/48"));
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[0].withdrawn, vec![prefix("10.0.0.0/24")]);
    assert_eq!(updates[1].withdrawn, vec![prefix("2001:db8::/48")]);
    assert_eq!(updates[2].announced, vec![prefix("10.0.1.0/24")]);
}

fn many_ipv4(count: u32) -> Vec<IpNet> {
    (0..count)
        .map(|index| {
            IpNet::V4(
                ipnet::Ipv4Net::new(Ipv4Addr::from((10u32 << 24) + (index << 8)), 24)
                    .unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn rfc4271_4_3_packing_fills_4096_octet_messages() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for prefix in many_ipv4(10_000) {
        rib.announce(prefix, &shared).expect("ok");
    }
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    let announced: usize = updates.iter().map(|update| update.announced.len()).sum();
    assert_eq!(announced, 10_000);
    // 4 octets per /24 and a ~40-octet attribute block: ~1008 prefixes per message.
    assert_eq!(updates.len(), 10 + 1, "10 full UPDATEs and End-of-RIB");
}

#[test]
fn rfc8654_packing_uses_65535_octet_messages_when_negotiated() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for prefix in many_ipv4(100_000) {
        rib.announce(prefix, &shared).expect("ok");
    }
    rib.session_established(&negotiated(true, false, &[Family::Ipv4Unicast]));
    let messages = drain(&mut rib, 65535);
    assert_eq!(updates_of(&messages), 7 + 1);
}

#[test]
fn rfc4760_3_ipv6_in_mp_reach_with_link_local_next_hop() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for index in 0..5000u128 {
        let address = (0x2001_0db8u128 << 96) | (index << 80);
        let net = ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(address), 48).unwrap_or_default();
        rib.announce(IpNet::V6(net), &shared).expect("ok");
    }
    rib.session_established(&negotiated(false, false, &[Family::Ipv6Unicast]));
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    let announced: usize = updates.iter().map(|update| update.announced.len()).sum();
    assert_eq!(announced, 5000);
    let first = updates[0];
    assert_eq!(first.attributes.ipv6_next_hop, shared.ipv6_next_hop);
    assert_eq!(first.attributes.next_hop, None, "no NEXT_HOP for MP routes");
    assert_eq!(
        updates.last().and_then(|update| update.end_of_rib),
        Some(Family::Ipv6Unicast)
    );
}

#[test]
fn rfc4760_families_not_negotiated_are_not_sent() {
    let mut rib = AdjRibOut::new();
    rib.announce(prefix("2001:db8::/48"), &attributes(1))
        .expect("ok");
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    let messages = drain(&mut rib, 4096);
    let updates = updates(&messages);
    assert_eq!(updates.len(), 2);
    assert!(updates.iter().all(|update| {
        update
            .announced
            .iter()
            .all(|prefix| prefix.addr().is_ipv4())
    }));
}

#[test]
fn routes_sharing_attributes_share_messages() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut rib, 4096);
    // Equal sets in different Arcs are interned together.
    for (index, prefix) in many_ipv4(100).into_iter().enumerate() {
        let set = attributes(u32::from(index % 2 == 0));
        rib.announce(prefix, &set).expect("ok");
    }
    let messages = drain(&mut rib, 4096);
    assert_eq!(updates_of(&messages), 2);
}

#[test]
fn budget_limits_the_batch_to_one_message() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for prefix in many_ipv4(5000) {
        rib.announce(prefix, &shared).expect("ok");
    }
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    let bytes = rib.next_update(1).expect("one message");
    assert!(bytes.len() <= 4096);
    assert_eq!(
        next_frame(&bytes, 4096),
        Ok(Frame::Complete {
            length: bytes.len()
        })
    );
}

#[test]
fn session_down_then_up_resends_everything() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for prefix in many_ipv4(300) {
        rib.announce(prefix, &shared).expect("ok");
    }
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut rib, 4096);
    rib.session_down();
    rib.withdraw(prefix("10.0.0.0/24"));
    assert!(rib.next_update(4096).is_none());
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    let mut view = BTreeMap::new();
    peer_view(&drain(&mut rib, 4096), &mut view);
    assert_eq!(view.len(), 299);
}

#[test]
fn rfc2918_route_refresh_resends_without_demarcation() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    rib.announce(prefix("10.0.0.0/24"), &attributes(1))
        .expect("ok");
    drain(&mut rib, 4096);
    rib.route_refresh(Family::Ipv4Unicast);
    let messages = drain(&mut rib, 4096);
    assert_eq!(messages.len(), 1);
    assert_eq!(updates(&messages)[0].announced, vec![prefix("10.0.0.0/24")]);
}

#[test]
fn rfc7313_4_enhanced_route_refresh_wraps_resend_in_borr_eorr() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, true, &Family::ALL));
    rib.announce(prefix("2001:db8::/48"), &attributes(1))
        .expect("ok");
    drain(&mut rib, 4096);
    rib.route_refresh(Family::Ipv6Unicast);
    let messages = drain(&mut rib, 4096);
    assert_eq!(messages.len(), 3);
    assert!(matches!(
        &messages[0],
        Message::RouteRefresh(refresh) if refresh.subtype == RouteRefreshSubtype::Begin
    ));
    assert!(matches!(&messages[1], Message::Update(update) if update.announced.len() == 1));
    assert!(matches!(
        &messages[2],
        Message::RouteRefresh(refresh) if refresh.subtype == RouteRefreshSubtype::End
            && refresh.family() == Some(Family::Ipv6Unicast)
    ));
}

#[test]
fn missing_next_hop_is_refused() {
    let mut rib = AdjRibOut::new();
    let no_ipv6 = Arc::new(PathAttributes {
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
        ..PathAttributes::default()
    });
    assert_eq!(
        rib.announce(prefix("2001:db8::/48"), &no_ipv6),
        Err(RibError::MissingNextHop(Family::Ipv6Unicast))
    );
    assert!(rib.announce(prefix("10.0.0.0/8"), &no_ipv6).is_ok());
}

#[test]
fn rfc6793_two_octet_session_reencodes_attribute_blocks() {
    let mut rib = AdjRibOut::new();
    let shared = Arc::new(
        PathAttributes {
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ..PathAttributes::default()
        }
        .with_as_sequence(vec![4_200_000_000]),
    );
    rib.announce(prefix("10.0.0.0/24"), &shared).expect("ok");
    let mut two_octet = negotiated(false, false, &[Family::Ipv4Unicast]);
    two_octet.four_octet_as = false;
    rib.session_established(&two_octet);
    let mut bytes = rib.next_update(1).expect("an update");
    let Ok(Frame::Complete { length }) = next_frame(&bytes, 4096) else {
        panic!("broken frame");
    };
    let first = bytes.split_to(length);
    let decoded = decode_message(
        &first,
        &DecodeContext {
            four_octet_as: false,
            ..DecodeContext::default()
        },
    )
    .expect("decodes");
    let Message::Update(update) = decoded else {
        panic!("not an update");
    };
    assert_eq!(
        update.attributes.as_path, shared.as_path,
        "AS4_PATH restores the path"
    );
}

#[test]
fn withdraw_all_empties_the_peer() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for prefix in many_ipv4(2000) {
        rib.announce(prefix, &shared).expect("ok");
    }
    rib.announce(prefix("2001:db8::/48"), &shared).expect("ok");
    rib.session_established(&negotiated(true, false, &Family::ALL));
    let mut view = BTreeMap::new();
    peer_view(&drain(&mut rib, 65535), &mut view);
    assert_eq!(view.len(), 2001);
    rib.withdraw_all();
    peer_view(&drain(&mut rib, 65535), &mut view);
    assert!(view.is_empty());
    assert!(rib.is_empty());
}

/// Octet lengths of every message pending, in order.
fn message_lengths(rib: &mut AdjRibOut) -> Vec<usize> {
    let mut lengths = Vec::new();
    while let Some(mut bytes) = rib.next_update(256 * 1024) {
        while let Ok(Frame::Complete { length }) = next_frame(&bytes, u16::MAX) {
            lengths.push(length);
            let _ = bytes.split_to(length);
        }
    }
    lengths
}

#[test]
fn withdraw_all_goes_out_ascending_in_maximal_updates() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    let mut prefixes = many_ipv4(20_000);
    // Loaded in descending order: the order of the table must not matter.
    prefixes.reverse();
    for prefix in &prefixes {
        rib.announce(*prefix, &shared).expect("ok");
    }
    rib.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut rib, 4096);
    rib.withdraw_all();
    let lengths = message_lengths(&mut rib);
    // 4073 octets of withdrawn routes per 4096-octet UPDATE: 1018 /24s each.
    assert_eq!(lengths.len(), 20_000usize.div_ceil(1018));
    let (last, full) = lengths.split_last().expect("some");
    assert!(full.iter().all(|length| *length >= 4096 - 4), "{lengths:?}");
    assert!(*last > 19 + 4);
    let mut again = AdjRibOut::new();
    for prefix in &prefixes {
        again.announce(*prefix, &shared).expect("ok");
    }
    again.session_established(&negotiated(false, false, &[Family::Ipv4Unicast]));
    drain(&mut again, 4096);
    again.withdraw_all();
    let withdrawn: Vec<IpNet> = updates(&drain(&mut again, 4096))
        .iter()
        .flat_map(|update| update.withdrawn.clone())
        .collect();
    prefixes.reverse();
    assert_eq!(withdrawn, prefixes, "every prefix once, ascending");
}

#[test]
fn incremental_changes_go_out_ascending_per_attribute_set() {
    let mut rib = AdjRibOut::new();
    rib.session_established(&negotiated(false, false, &Family::ALL));
    let mut prefixes = many_ipv4(3000);
    prefixes.reverse();
    for (index, prefix) in prefixes.iter().enumerate() {
        let set = if index % 3 == 0 { 1 } else { 2 };
        rib.announce(*prefix, &attributes(set)).expect("ok");
    }
    let (order, table) = sent_announcements(&drain(&mut rib, 4096));
    assert_eq!(table.len(), 3000);
    assert_eq!(order.len(), 2);
    for prefixes in order.values() {
        assert!(strictly_ascending(prefixes));
    }
    // Withdrawals made in descending order go out ascending too.
    for prefix in prefixes.iter().step_by(2) {
        rib.withdraw(*prefix);
    }
    let withdrawn: Vec<IpNet> = updates(&drain(&mut rib, 4096))
        .iter()
        .flat_map(|update| update.withdrawn.clone())
        .collect();
    assert_eq!(withdrawn.len(), 1500);
    assert!(strictly_ascending(&withdrawn));
}

#[test]
fn memory_per_route_is_bounded() {
    let mut rib = AdjRibOut::new();
    let shared = attributes(1);
    for prefix in many_ipv4(100_000) {
        rib.announce(prefix, &shared).expect("ok");
    }
    rib.session_established(&negotiated(true, false, &[Family::Ipv4Unicast]));
    let per_route = rib.memory_estimate() / 100_000;
    assert!(per_route <= 150, "{per_route} octets per route");
}

/// How the whole table comes to be sent again.
#[derive(Debug, Clone, Copy)]
enum FullSend {
    /// The first session comes up with the routes already loaded.
    SessionUp,
    /// The session goes down and up again (graceful restart re-sync, RFC 4724 §4.2).
    Resync,
    /// The peer asks for a route refresh of both families (RFC 2918 §4).
    RouteRefresh,
}

/// Announced prefixes of each (family, attribute set) in the order they went out, and every
/// announced prefix with the MED of its set.
type Sent = (
    BTreeMap<(bool, Option<u32>), Vec<IpNet>>,
    BTreeMap<IpNet, Option<u32>>,
);

fn sent_announcements(messages: &[Message]) -> Sent {
    let mut order: BTreeMap<(bool, Option<u32>), Vec<IpNet>> = BTreeMap::new();
    let mut table = BTreeMap::new();
    for update in updates(messages) {
        for prefix in &update.announced {
            let group = (matches!(prefix, IpNet::V6(_)), update.attributes.med);
            order.entry(group).or_default().push(*prefix);
            table.insert(*prefix, update.attributes.med);
        }
    }
    (order, table)
}

fn strictly_ascending(prefixes: &[IpNet]) -> bool {
    prefixes.windows(2).all(|pair| pair[0] < pair[1])
}

fn full_send() -> impl proptest::strategy::Strategy<Value = FullSend> {
    use proptest::prelude::*;
    prop_oneof![
        Just(FullSend::SessionUp),
        Just(FullSend::Resync),
        Just(FullSend::RouteRefresh)
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// Issue 15: a full-table send (session up, re-sync, route refresh) goes out in ascending
    /// prefix order per family and attribute set (one set: the whole family ascending), sends
    /// every route of the table exactly once, and a withdraw-all is ascending too.
    #[test]
    fn full_table_send_is_ascending_and_equals_the_table(
        ipv4 in proptest::collection::vec((proptest::prelude::any::<u32>(), 8u8..=32, 0u32..3), 0..400),
        ipv6 in proptest::collection::vec((proptest::prelude::any::<u128>(), 16u8..=128, 0u32..3), 0..200),
        withdrawn in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..40),
        one_set in proptest::prelude::any::<bool>(),
        extended in proptest::prelude::any::<bool>(),
        how in full_send(),
    ) {
        let sets = [attributes(1), attributes(2), attributes(3)];
        let mut rib = AdjRibOut::new();
        let mut expected: BTreeMap<IpNet, Option<u32>> = BTreeMap::new();
        let ipv4 = ipv4.into_iter().filter_map(|(address, length, set)| {
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(address), length).ok()?;
            Some((IpNet::V4(net.trunc()), set))
        });
        let ipv6 = ipv6.into_iter().filter_map(|(address, length, set)| {
            let net = ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(address), length).ok()?;
            Some((IpNet::V6(net.trunc()), set))
        });
        let routes: Vec<(IpNet, u32)> = ipv4.chain(ipv6).collect();
        for (prefix, set) in &routes {
            let set = if one_set { 0 } else { *set };
            rib.announce(*prefix, &sets[set as usize]).expect("valid");
            expected.insert(*prefix, Some(set + 1));
        }
        if !routes.is_empty() {
            for index in &withdrawn {
                let prefix = routes[index.index(routes.len())].0;
                rib.withdraw(prefix);
                expected.remove(&prefix);
            }
        }
        let max = if extended { 65535 } else { 4096 };
        let session = negotiated(extended, true, &Family::ALL);
        rib.session_established(&session);
        match how {
            FullSend::SessionUp => {}
            FullSend::Resync => {
                drain(&mut rib, max);
                rib.session_down();
                rib.session_established(&session);
            }
            FullSend::RouteRefresh => {
                drain(&mut rib, max);
                rib.route_refresh(Family::Ipv4Unicast);
                rib.route_refresh(Family::Ipv6Unicast);
            }
        }
        let messages = drain(&mut rib, max);
        let (order, table) = sent_announcements(&messages);
        for ((ipv6, med), prefixes) in &order {
            proptest::prop_assert!(
                strictly_ascending(prefixes),
                "IPv6: {ipv6}, MED {med:?}: {prefixes:?} not ascending"
            );
        }
        let sent: usize = order.values().map(Vec::len).sum();
        proptest::prop_assert_eq!(sent, expected.len(), "each route sent exactly once");
        proptest::prop_assert_eq!(table, expected.clone());

        rib.withdraw_all();
        let messages = drain(&mut rib, max);
        let mut withdrawn_order: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
        for update in updates(&messages) {
            for prefix in &update.withdrawn {
                withdrawn_order[usize::from(matches!(prefix, IpNet::V6(_)))].push(*prefix);
            }
        }
        for prefixes in &withdrawn_order {
            proptest::prop_assert!(strictly_ascending(prefixes), "withdraw-all not ascending");
        }
        let all: Vec<IpNet> = withdrawn_order.concat();
        proptest::prop_assert_eq!(all, expected.keys().copied().collect::<Vec<_>>());
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// The radix sort of the full-table sends orders keys as `Ord` does (both families, short
    /// lists that fall back to a comparison sort and long ones, shared and differing octets).
    #[test]
    fn radix_sort_orders_keys_as_ord(
        ipv4 in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u8..=32), 0..3000),
        ipv6 in proptest::collection::vec((proptest::prelude::any::<u64>(), 0u8..=128), 0..3000),
        shared_high in proptest::prelude::any::<bool>(),
    ) {
        use super::family::{Ipv4Key, Ipv6Key, sort_ascending};
        let ipv4_nets: Vec<ipnet::Ipv4Net> = ipv4
            .into_iter()
            .filter_map(|(address, length)| {
                let address = if shared_high { address & 0x00ff_ffff | 0x0a00_0000 } else { address };
                ipnet::Ipv4Net::new(Ipv4Addr::from(address), length).ok()
            })
            .map(|net| net.trunc())
            .collect();
        let mut ipv4: Vec<Ipv4Key> = ipv4_nets.iter().map(Ipv4Key::from).collect();
        let mut expected = ipv4.clone();
        expected.sort_unstable();
        sort_ascending(&mut ipv4);
        proptest::prop_assert_eq!(&ipv4, &expected);
        // The keys' order is the prefixes' (address, then length).
        let mut nets: Vec<ipnet::Ipv4Net> = ipv4_nets.clone();
        nets.sort_unstable();
        let by_net: Vec<Ipv4Key> = nets.iter().map(Ipv4Key::from).collect();
        proptest::prop_assert_eq!(ipv4, by_net);
        let ipv6_nets: Vec<ipnet::Ipv6Net> = ipv6
            .into_iter()
            .filter_map(|(bits, length)| {
                let address = (0x2001_0db8_u128 << 96) | (u128::from(bits) << 16);
                ipnet::Ipv6Net::new(std::net::Ipv6Addr::from(address), length).ok()
            })
            .map(|net| net.trunc())
            .collect();
        let mut ipv6: Vec<Ipv6Key> = ipv6_nets.iter().map(Ipv6Key::from).collect();
        let mut expected = ipv6.clone();
        expected.sort_unstable();
        sort_ascending(&mut ipv6);
        proptest::prop_assert_eq!(&ipv6, &expected);
        let mut nets: Vec<ipnet::Ipv6Net> = ipv6_nets.clone();
        nets.sort_unstable();
        let by_net: Vec<Ipv6Key> = nets.iter().map(Ipv6Key::from).collect();
        proptest::prop_assert_eq!(ipv6, by_net);
    }
}

/// A route's state packs its attribute-set index and queued flag into four octets without one
/// disturbing the other, and the map slots stay at 12 (IPv4) and 24 (IPv6) octets.
#[test]
fn entries_pack_index_and_flag_into_four_octets() {
    use super::NO_ATTRIBUTES;
    use super::family::{Entry, Ipv4Key, Ipv6Key};
    for attributes in [0, 1, 7, 0x7fff_fffe, NO_ATTRIBUTES] {
        for queued in [false, true] {
            let mut entry = Entry::new(attributes, queued);
            assert_eq!((entry.attributes(), entry.queued()), (attributes, queued));
            entry.set_queued(!queued);
            assert_eq!((entry.attributes(), entry.queued()), (attributes, !queued));
            for other in [0, 3, NO_ATTRIBUTES] {
                entry.set_attributes(other);
                assert_eq!((entry.attributes(), entry.queued()), (other, !queued));
            }
        }
    }
    assert_eq!(std::mem::size_of::<(Ipv4Key, Entry)>(), 12);
    assert_eq!(std::mem::size_of::<(Ipv6Key, Entry)>(), 24);
}
