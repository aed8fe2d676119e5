//! The RTR client against a small hand-written cache on loopback, for what a real cache never
//! sends: malformed PDUs (bogus type, impossible length, truncation, random bytes — a clear
//! error naming the cache, never a panic, the task keeps running) and End of Data timers short
//! enough to test expiry (RFC 8210 §6: no cache for `expire` seconds empties the set).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use topologyd_rpki::rtr::{CacheEndpoint, RtrError, SyncState, fetch_once, spawn};

const SESSION: u16 = 7;

/// A named way for a cache to answer a query of a given RTR version.
type Answer = (&'static str, fn(u8) -> Vec<u8>);

/// Cache Response (RFC 8210 §5.5).
fn cache_response(version: u8) -> Vec<u8> {
    let mut pdu = vec![version, 3];
    pdu.extend_from_slice(&SESSION.to_be_bytes());
    pdu.extend_from_slice(&8u32.to_be_bytes());
    pdu
}

/// IPv4 Prefix (§5.6), announce.
fn ipv4_prefix(version: u8, octets: [u8; 4], length: u8, max_length: u8, asn: u32) -> Vec<u8> {
    let mut pdu = vec![version, 4, 0, 0];
    pdu.extend_from_slice(&20u32.to_be_bytes());
    pdu.extend_from_slice(&[1, length, max_length, 0]);
    pdu.extend_from_slice(&octets);
    pdu.extend_from_slice(&asn.to_be_bytes());
    pdu
}

/// End of Data (§5.8, version 1 and later: with the three timers).
fn end_of_data(version: u8, serial: u32, refresh: u32, retry: u32, expire: u32) -> Vec<u8> {
    let mut pdu = vec![version, 7];
    pdu.extend_from_slice(&SESSION.to_be_bytes());
    pdu.extend_from_slice(&24u32.to_be_bytes());
    for value in [serial, refresh, retry, expire] {
        pdu.extend_from_slice(&value.to_be_bytes());
    }
    pdu
}

/// A cache that, per connection, reads the client's first query and answers `answer(version)`,
/// then closes. Returns its address; it serves until the runtime ends.
async fn hand_cache(answer: impl Fn(u8) -> Vec<u8> + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = std::sync::Arc::clone(&answer);
            tokio::spawn(async move {
                let mut query = [0u8; 8];
                if stream.read_exact(&mut query).await.is_err() {
                    return;
                }
                let _ = stream.write_all(&answer(query[0])).await;
                let _ = stream.flush().await;
                // Linger briefly so the client reads everything before the close.
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        }
    });
    address
}

fn good_answer(version: u8, expire: u32) -> Vec<u8> {
    [
        cache_response(version),
        ipv4_prefix(version, [192, 0, 2, 0], 24, 24, 64500),
        end_of_data(version, 1, 1, 1, expire),
    ]
    .concat()
}

#[tokio::test]
async fn a_complete_answer_is_read() {
    let address = hand_cache(|version| good_answer(version, 600)).await;
    let (vrps, cache) = fetch_once(std::slice::from_ref(&address), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(cache, address);
    assert_eq!(vrps.len(), 1);
    let vrp = vrps.iter().next().unwrap();
    assert_eq!(vrp.to_string(), "192.0.2.0/24 max-length 24 AS64500");
}

/// Each malformed answer gives an error naming the cache; none panics.
#[tokio::test]
async fn malformed_pdus_give_a_clear_error() {
    let cases: Vec<Answer> = vec![
        ("unknown PDU type", |version| {
            [cache_response(version), vec![version, 99, 0, 0, 0, 0, 0, 8]].concat()
        }),
        ("impossible length", |version| {
            [
                cache_response(version),
                vec![version, 4, 0, 0, 0xff, 0xff, 0xff, 0xff],
            ]
            .concat()
        }),
        ("truncated prefix", |version| {
            let mut answer = [
                cache_response(version),
                ipv4_prefix(version, [192, 0, 2, 0], 24, 24, 64500),
            ]
            .concat();
            answer.truncate(answer.len() - 5);
            answer
        }),
        ("max-length shorter than the prefix", |version| {
            [
                cache_response(version),
                ipv4_prefix(version, [192, 0, 2, 0], 24, 16, 64500),
                end_of_data(version, 1, 1, 1, 600),
            ]
            .concat()
        }),
        ("prefix longer than 32", |version| {
            [
                cache_response(version),
                ipv4_prefix(version, [192, 0, 2, 0], 40, 40, 64500),
                end_of_data(version, 1, 1, 1, 600),
            ]
            .concat()
        }),
        ("no End of Data", cache_response),
        ("a version above 2", |_| cache_response(9)),
    ];
    for (name, answer) in cases {
        let address = hand_cache(answer).await;
        let result = fetch_once(std::slice::from_ref(&address), Duration::from_secs(10)).await;
        match result {
            Err(RtrError::AllFailed(errors)) => {
                assert_eq!(errors.len(), 1, "{name}");
                let message = errors[0].to_string();
                assert!(
                    message.starts_with(&format!("RTR cache {address}: ")),
                    "{name}: {message}"
                );
            }
            Ok((vrps, _)) => {
                // A cache may be lenient about a bad entry; it must never be used as valid.
                assert!(
                    vrps.iter()
                        .all(|vrp| vrp.max_length >= vrp.prefix.prefix_len()
                            && vrp.max_length <= vrp.prefix.max_prefix_len()),
                    "{name}: accepted a malformed VRP"
                );
            }
            Err(other) => panic!("{name}: unexpected {other}"),
        }
    }
}

#[tokio::test]
async fn the_running_client_survives_a_malformed_cache_and_falls_back() {
    let broken = hand_cache(|version| [cache_response(version), vec![0xff; 40]].concat()).await;
    let good = hand_cache(|version| good_answer(version, 600)).await;
    let handle = spawn(vec![
        CacheEndpoint {
            address: broken.clone(),
            preference: 1,
        },
        CacheEndpoint {
            address: good.clone(),
            preference: 2,
        },
    ])
    .unwrap();
    let mut snapshots = handle.snapshots.clone();
    let synced = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let snapshot = snapshots.borrow_and_update();
                if snapshot.state == SyncState::InSync {
                    return snapshot.clone();
                }
            }
            snapshots.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(synced.cache.as_deref(), Some(good.as_str()));
    assert_eq!(synced.vrps.len(), 1);
    assert_eq!(synced.serial, Some(1));
    assert_eq!(synced.session_id, Some(SESSION));
}

/// Serves `answer` to every Reset Query on `listener`, and "no change" (Cache Response, End
/// of Data with the same serial) to every Serial Query, keeping each session open as a real
/// cache does.
fn serve(listener: TcpListener, answer: fn(u8) -> Vec<u8>) {
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut header = [0u8; 8];
                while stream.read_exact(&mut header).await.is_ok() {
                    let version = header[0];
                    let reply = match header[1] {
                        1 => {
                            let mut serial = [0u8; 4];
                            if stream.read_exact(&mut serial).await.is_err() {
                                return;
                            }
                            let serial = u32::from_be_bytes(serial);
                            [
                                cache_response(version),
                                end_of_data(version, serial, 1, 1, 600),
                            ]
                            .concat()
                        }
                        _ => answer(version),
                    };
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// RFC 8210 §10: on a less preferred cache, the client goes back to the preferred one once it
/// accepts connections again (tried every `retry` seconds), with no gap in between.
#[tokio::test]
async fn rfc8210_10_the_client_returns_to_the_preferred_cache() {
    // The preferred cache's port, free for now.
    let placeholder = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let preferred = placeholder.local_addr().unwrap();
    drop(placeholder);
    let fallback = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fallback_address = fallback.local_addr().unwrap().to_string();
    // retry = 1 s in End of Data.
    serve(fallback, |version| good_answer(version, 600));
    let handle = spawn(vec![
        CacheEndpoint {
            address: preferred.to_string(),
            preference: 1,
        },
        CacheEndpoint {
            address: fallback_address.clone(),
            preference: 2,
        },
    ])
    .unwrap();
    let mut snapshots = handle.snapshots.clone();
    let wait = |snapshots: &mut tokio::sync::watch::Receiver<topologyd_rpki::rtr::RtrSnapshot>,
                cache: String| {
        let mut snapshots = snapshots.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    {
                        let snapshot = snapshots.borrow_and_update();
                        if snapshot.state != SyncState::Connecting {
                            assert!(!snapshot.vrps.is_empty(), "a gap: {snapshot:?}");
                        }
                        if snapshot.state == SyncState::InSync
                            && snapshot.cache.as_deref() == Some(cache.as_str())
                        {
                            return snapshot.clone();
                        }
                    }
                    snapshots.changed().await.unwrap();
                }
            })
            .await
            .unwrap()
        }
    };
    let on_fallback = wait(&mut snapshots, fallback_address.clone()).await;
    assert_eq!(on_fallback.vrps.len(), 1);
    // The preferred cache comes up with two VRPs.
    let listener = TcpListener::bind(preferred).await.unwrap();
    serve(listener, |version| {
        [
            cache_response(version),
            ipv4_prefix(version, [192, 0, 2, 0], 24, 24, 64500),
            ipv4_prefix(version, [198, 51, 100, 0], 24, 24, 64500),
            end_of_data(version, 5, 1, 1, 600),
        ]
        .concat()
    });
    let back = wait(&mut snapshots, preferred.to_string()).await;
    assert_eq!(back.vrps.len(), 2);
    assert_eq!(back.serial, Some(5));
}

/// RFC 8210 §5.10/§12: an incremental update withdrawing a VRP the client does not hold is
/// refused whole (the set stays as it was), named in the error, and the client's next session
/// starts over with a Reset Query instead of skipping that serial.
#[tokio::test]
async fn a_refused_incremental_update_leads_to_a_reset() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let resets = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&resets);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = Arc::clone(&counted);
            tokio::spawn(async move {
                let mut header = [0u8; 8];
                while stream.read_exact(&mut header).await.is_ok() {
                    let version = header[0];
                    let reply = if header[1] == 1 {
                        let mut serial = [0u8; 4];
                        if stream.read_exact(&mut serial).await.is_err() {
                            return;
                        }
                        // Withdraw a VRP that was never announced.
                        let mut withdrawal = ipv4_prefix(version, [203, 0, 113, 0], 24, 24, 1);
                        withdrawal[8] = 0;
                        [
                            cache_response(version),
                            withdrawal,
                            end_of_data(version, 2, 1, 1, 600),
                        ]
                        .concat()
                    } else {
                        counted.fetch_add(1, Ordering::SeqCst);
                        good_answer(version, 600)
                    };
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let handle = spawn(vec![CacheEndpoint {
        address: address.clone(),
        preference: 0,
    }])
    .unwrap();
    let mut snapshots = handle.snapshots.clone();
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let snapshot = snapshots.borrow_and_update();
                if let Some(error) = &snapshot.last_error {
                    return (snapshot.clone(), error.clone());
                }
            }
            snapshots.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    let (snapshot, error) = refused;
    assert!(
        error.contains(&format!("RTR cache {address}: update refused"))
            && error.contains("withdrew a VRP the client does not hold"),
        "{error}"
    );
    assert_eq!(snapshot.vrps.len(), 1, "the set is as it was");
    assert_eq!(snapshot.serial, Some(1));
    // The next session asks for the whole set again.
    tokio::time::timeout(Duration::from_secs(20), async {
        while resets.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
}

/// RFC 8210 §6: with `expire` = 1 s and the cache gone, the VRPs are dropped.
#[tokio::test]
async fn rfc8210_6_data_expires_without_a_cache() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    // Answers one connection, then closes the listener: every reconnection is refused.
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut query = [0u8; 8];
        stream.read_exact(&mut query).await.unwrap();
        stream.write_all(&good_answer(query[0], 1)).await.unwrap();
        drop(listener);
        tokio::time::sleep(Duration::from_millis(200)).await;
    });
    let handle = spawn(vec![CacheEndpoint {
        address,
        preference: 0,
    }])
    .unwrap();
    let mut snapshots = handle.snapshots.clone();
    let mut seen_data = false;
    let expired = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            {
                let snapshot = snapshots.borrow_and_update();
                if snapshot.state == SyncState::InSync {
                    seen_data = !snapshot.vrps.is_empty();
                }
                if snapshot.state == SyncState::Expired {
                    return snapshot.clone();
                }
            }
            snapshots.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert!(seen_data, "the cache's VRP was never published");
    assert!(expired.vrps.is_empty());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever bytes a cache answers with (after a valid Cache Response, or without one), the
    /// client returns — a set or an error naming the cache — and never panics.
    #[test]
    fn arbitrary_answers_never_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        with_response in proptest::bool::ANY,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let answer = move |version: u8| {
                let mut out = if with_response { cache_response(version) } else { Vec::new() };
                out.extend_from_slice(&bytes);
                out
            };
            let address = hand_cache(answer).await;
            match fetch_once(std::slice::from_ref(&address), Duration::from_secs(5)).await {
                Ok(_) => {}
                Err(error) => assert!(error.to_string().contains(&address), "{error}"),
            }
        });
    }
}
