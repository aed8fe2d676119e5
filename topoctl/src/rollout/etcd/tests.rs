//! Unit tests of the etcd mode's pure parts: option parsing, key layout, record encoding and
//! the fence's compares.

use proptest::prelude::*;

use super::*;
use crate::rollout::journal::{Line, Record};

fn keys() -> Keys {
    EtcdOptions::parse("127.0.0.1:2379", "/rollouts/fleet/")
        .unwrap()
        .keys()
}

#[test]
fn options_parse_endpoints_and_prefix() {
    let options =
        EtcdOptions::parse("10.0.0.1:2379, etcd-2:2379,http://etcd-3:2379/", "/a/").unwrap();
    assert_eq!(
        options.endpoints,
        ["10.0.0.1:2379", "etcd-2:2379", "etcd-3:2379"]
    );
    assert_eq!(options.prefix, "/a");
    assert_eq!(EtcdOptions::parse("", "/a"), Err(OptionsError::NoEndpoint));
    assert_eq!(
        EtcdOptions::parse("etcd-1", "/a"),
        Err(OptionsError::Endpoint("etcd-1".into()))
    );
    assert_eq!(
        EtcdOptions::parse(":2379", "/a"),
        Err(OptionsError::Endpoint(":2379".into()))
    );
    assert_eq!(
        EtcdOptions::parse("etcd-1:http", "/a"),
        Err(OptionsError::Endpoint("etcd-1:http".into()))
    );
    assert_eq!(EtcdOptions::parse("e:1", "/"), Err(OptionsError::Prefix));
    let plain = EtcdOptions::parse("e:1", "/a").unwrap();
    assert_eq!(plain.clone().with_tls(None, None, None).unwrap().tls, None);
    let tls = plain
        .clone()
        .with_tls(
            Some("ca.pem".into()),
            Some("c.pem".into()),
            Some("c.key".into()),
        )
        .unwrap()
        .tls
        .unwrap();
    assert_eq!(tls.identity, Some(("c.pem".into(), "c.key".into())));
    assert_eq!(
        plain
            .clone()
            .with_tls(None, Some("c.pem".into()), Some("c.key".into())),
        Err(OptionsError::Identity)
    );
    assert_eq!(
        plain.with_tls(Some("ca.pem".into()), Some("c.pem".into()), None),
        Err(OptionsError::Identity)
    );
}

#[test]
fn key_layout() {
    let keys = keys();
    assert_eq!(keys.leader(), "/rollouts/fleet/leader");
    assert_eq!(keys.journal(0), "/rollouts/fleet/journal/000000000000");
    assert_eq!(keys.journal(42), "/rollouts/fleet/journal/000000000042");
    assert_eq!(keys.control("7-1"), "/rollouts/fleet/control/7-1");
    assert_eq!(
        keys.sequence_of("/rollouts/fleet/journal/000000000042"),
        Some(42)
    );
    assert_eq!(keys.sequence_of("/rollouts/fleet/journal/42"), None);
    assert_eq!(
        keys.sequence_of("/rollouts/fleet/control/000000000042"),
        None
    );
    assert_eq!(keys.describe(), "etcd:/rollouts/fleet");
}

proptest! {
    /// Journal keys sort in sequence order (a range read returns the records in order) and
    /// name their sequence number.
    #[test]
    fn journal_keys_sort_in_record_order(left in 0u64..10_000_000_000, right in 0u64..10_000_000_000) {
        let keys = keys();
        prop_assert_eq!(keys.journal(left).cmp(&keys.journal(right)), left.cmp(&right));
        prop_assert_eq!(keys.sequence_of(&keys.journal(left)), Some(left));
    }
}

fn line(record: Record) -> Line {
    Line { time: 1.5, record }
}

#[test]
fn records_round_trip_in_order_and_gaps_are_errors() {
    let keys = keys();
    let lines = vec![
        line(Record::WaveStarted { wave: 0 }),
        line(Record::Baking { wave: 0 }),
        line(Record::Paused {
            reason: "by hand".into(),
        }),
    ];
    let mut entries: Vec<(String, Vec<u8>)> = lines
        .iter()
        .enumerate()
        .map(|(sequence, line)| (keys.journal(sequence as u64), encode_line(line).unwrap()))
        .collect();
    entries.reverse();
    assert_eq!(decode_lines(&keys, &entries).unwrap(), lines);
    // The same bytes as a journal.jsonl line.
    assert_eq!(
        String::from_utf8(encode_line(&lines[0]).unwrap()).unwrap(),
        serde_json::to_string(&lines[0]).unwrap()
    );
    entries.retain(|(key, _)| !key.ends_with("000000000001"));
    let error = decode_lines(&keys, &entries).unwrap_err();
    assert!(error.contains("journal record 1 is missing"), "{error}");
    let corrupt = vec![(keys.journal(0), b"{".to_vec())];
    assert!(
        decode_lines(&keys, &corrupt)
            .unwrap_err()
            .contains("not a journal record")
    );
}

#[test]
fn the_fence_compares_the_leader_key_and_the_free_record_slot() {
    let keys = keys();
    let fence = Fence {
        token: 17,
        lease: 0x1234,
    };
    assert_eq!(
        fence.journal_conditions(&keys, 5),
        [
            Condition::CreateRevision {
                key: "/rollouts/fleet/leader".into(),
                revision: 17
            },
            Condition::Lease {
                key: "/rollouts/fleet/leader".into(),
                lease: 0x1234
            },
            Condition::CreateRevision {
                key: "/rollouts/fleet/journal/000000000005".into(),
                revision: 0
            },
        ]
    );
    assert_eq!(
        campaign_conditions(&keys),
        [Condition::CreateRevision {
            key: "/rollouts/fleet/leader".into(),
            revision: 0
        }]
    );
}
