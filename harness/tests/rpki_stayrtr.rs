//! RPKI against real StayRTR caches on loopback: `topoctl plan --rtr` refuses a split beyond a
//! ROA's max-length and an origin mismatch (G5), naming the covering VRP, and `check --rtr`
//! works against a cache that speaks only RTR v1 (the client downgrades from v2) and falls back
//! to the next `--rtr` when the first is down; the long-running client switches to a second
//! StayRTR when the first is killed without ever publishing an empty or partial set; and a
//! changed JSON file (StayRTR reloads it and sends Serial Notify) reaches the client as an
//! incremental update, announcements and withdrawals both; and RTR v2 with ASPA objects present
//! still delivers every VRP.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use topologyd_harness::peers::{Roa, StayRtr, StayRtrOptions};
use topologyd_harness::topologyd::binaries;
use topologyd_rpki::rtr::{CacheEndpoint, RtrSnapshot, SyncState, spawn};

fn topology_file(directory: &Path, name: &str, origin: u32, announce: &str) -> String {
    let mut text = String::new();
    for location in ["ams01", "fra01", "iad01"] {
        text += &format!(
            "[[location]]\nname = \"{location}\"\nregion = \"eu\"\nmetro = \"M\"\ncountry = \"C\"\nstate = \"live\"\n"
        );
    }
    text += "[[service]]\nname = \"web\"\ntopology = 'all'\n";
    text += &format!(
        "[[prefix]]\ncidr = \"198.51.100.0/22\"\norigin_asn = {origin}\nowner = \"o\"\nadvertise = true\nannounce = {announce}\n[[binding]]\ncidr = \"198.51.100.0/22\"\nservice = \"web\"\n"
    );
    let path = directory.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Runs the real topoctl; returns the exit code and stdout + stderr.
fn topoctl(arguments: &[&str]) -> (i32, String) {
    let output = Command::new(binaries().unwrap().join("topoctl"))
        .args(arguments)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn topoctl_plan_rtr_refuses_a_split_beyond_max_length_and_an_origin_mismatch() {
    let cache = StayRtr::start(
        &[Roa::new("198.51.100.0/22", 23, 64500)],
        StayRtrOptions::default(),
    )
    .unwrap();
    let rtr = cache.address().to_string();
    let directory = tempfile::tempdir().unwrap();
    let old = topology_file(directory.path(), "old.toml", 64500, "\"aggregate\"");
    let to_23 = topology_file(directory.path(), "to23.toml", 64500, "{ split = 23 }");
    let to_24 = topology_file(directory.path(), "to24.toml", 64500, "{ split = 24 }");
    let hijack = topology_file(directory.path(), "hijack.toml", 4755, "\"aggregate\"");
    let plan = |new: &str| {
        topoctl(&[
            "plan",
            "--old",
            &old,
            "--new",
            new,
            "--intent",
            "service:web",
            "--override",
            "global-withdrawal:198.51.100.0/22",
            "--override",
            "blast-radius",
            "--rtr",
            &rtr,
        ])
    };
    let (code, output) = plan(&to_23);
    assert_eq!(code, 2, "a split within max-length is allowed: {output}");
    assert!(output.contains("2 valid, 0 invalid"), "{output}");
    let (code, output) = plan(&to_24);
    assert_eq!(code, 3, "{output}\n{}", cache.log_tail());
    assert!(
        output.contains("G5 route 198.51.100.0/24 from AS64500 would be RPKI-invalid (longer than the max-length of its VRPs)"),
        "{output}"
    );
    assert!(
        output.contains("covering VRPs: 198.51.100.0/22 max-length 23 AS64500"),
        "{output}"
    );
    assert!(
        output.contains(&format!("1 VRPs from the RTR cache {rtr}")),
        "{output}"
    );
    let (code, output) = plan(&hijack);
    assert_eq!(code, 3, "{output}");
    assert!(
        output.contains("G5 route 198.51.100.0/22 from AS4755 would be RPKI-invalid (no VRP authorises the origin)"),
        "{output}"
    );
}

#[test]
fn topoctl_check_rtr_downgrades_to_v1_and_falls_back_to_the_next_cache() {
    let cache = StayRtr::start(
        &[Roa::new("198.51.100.0/22", 22, 4755)],
        StayRtrOptions {
            protocol: 1,
            ..StayRtrOptions::default()
        },
    )
    .unwrap();
    let directory = tempfile::tempdir().unwrap();
    let file = topology_file(directory.path(), "topology.toml", 64500, "\"aggregate\"");
    // A port nothing listens on (taken and released), then the v1 cache.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (code, output) = topoctl(&[
        "check",
        &file,
        "--rtr",
        &dead,
        "--rtr",
        &cache.address().to_string(),
    ]);
    assert_eq!(code, 3, "{output}\n{}", cache.log_tail());
    assert!(
        output.contains("G5 route 198.51.100.0/22 from AS64500 would be RPKI-invalid"),
        "{output}"
    );
    // Only dead caches: a usage error naming each one, never a pass.
    let (code, output) = topoctl(&["check", &file, "--rtr", &dead]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains(&format!("RTR cache {dead}: cannot connect")),
        "{output}"
    );
}

/// Waits until `accept` holds for a snapshot, checking `every` on each one seen on the way.
fn wait_for(
    runtime: &tokio::runtime::Runtime,
    snapshots: &mut tokio::sync::watch::Receiver<RtrSnapshot>,
    what: &str,
    every: impl Fn(&RtrSnapshot),
    accept: impl Fn(&RtrSnapshot) -> bool,
) -> RtrSnapshot {
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                {
                    let snapshot = snapshots.borrow_and_update();
                    every(&snapshot);
                    if accept(&snapshot) {
                        return snapshot.clone();
                    }
                }
                snapshots.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    })
}

fn roas(count: u8) -> Vec<Roa> {
    (0..count)
        .map(|index| Roa::new(&format!("10.{index}.0.0/16"), 24, 64500))
        .collect()
}

/// StayRTR's default is RTR v2, and with ASPA objects present it sends ASPA PDUs: the client
/// must still take every VRP (and count the ASPA payloads it does not use).
#[test]
fn rtr_v2_with_aspa_present_delivers_every_vrp() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = StayRtr::start_with_aspas(
        &roas(5),
        &[(64500, vec![64501, 64502]), (64510, vec![64511])],
        StayRtrOptions::default(),
    )
    .unwrap();
    let handle = runtime.block_on(async {
        spawn(vec![CacheEndpoint {
            address: cache.address().to_string(),
            preference: 0,
        }])
        .unwrap()
    });
    let mut snapshots = handle.snapshots.clone();
    let synced = wait_for(
        &runtime,
        &mut snapshots,
        "the set",
        |_| {},
        |snapshot| snapshot.state == SyncState::InSync,
    );
    assert_eq!(synced.vrps.len(), 5, "{}", cache.log_tail());
    assert!(synced.ignored_payloads >= 2, "no ASPA arrived: {synced:?}");
    drop(handle);
}

#[test]
fn the_client_fails_over_to_a_second_stayrtr_without_a_gap() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut first = StayRtr::start(&roas(20), StayRtrOptions::default()).unwrap();
    let second = StayRtr::start(&roas(20), StayRtrOptions::default()).unwrap();
    let first_address = first.address().to_string();
    let second_address = second.address().to_string();
    let handle = runtime.block_on(async {
        spawn(vec![
            CacheEndpoint {
                address: second_address.clone(),
                preference: 20,
            },
            CacheEndpoint {
                address: first_address.clone(),
                preference: 10,
            },
        ])
        .unwrap()
    });
    let mut snapshots = handle.snapshots.clone();
    let synced = wait_for(
        &runtime,
        &mut snapshots,
        "the preferred cache",
        |_| {},
        |snapshot| snapshot.state == SyncState::InSync,
    );
    assert_eq!(synced.cache.as_deref(), Some(first_address.as_str()));
    assert_eq!(synced.vrps.len(), 20);
    assert_eq!(synced.expire, 7200);
    first.kill().unwrap();
    let switched = wait_for(
        &runtime,
        &mut snapshots,
        "the second cache",
        // No gap: every snapshot on the way holds the complete set.
        |snapshot| assert_eq!(snapshot.vrps.len(), 20, "{snapshot:?}"),
        |snapshot| {
            snapshot.state == SyncState::InSync
                && snapshot.cache.as_deref() == Some(second_address.as_str())
        },
    );
    assert_eq!(switched.vrps.len(), 20);
    drop(handle);
}

#[test]
fn a_changed_file_reaches_the_client_by_serial_notify() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // refresh = 3600 s: only Serial Notify can bring the change within the test's bound.
    let cache = StayRtr::start(&roas(3), StayRtrOptions::default()).unwrap();
    let handle = runtime.block_on(async {
        spawn(vec![CacheEndpoint {
            address: cache.address().to_string(),
            preference: 0,
        }])
        .unwrap()
    });
    let mut snapshots = handle.snapshots.clone();
    let first = wait_for(
        &runtime,
        &mut snapshots,
        "the first set",
        |_| {},
        |snapshot| snapshot.state == SyncState::InSync,
    );
    assert_eq!(first.vrps.len(), 3);
    // Withdraw 10.0.0.0/16, announce two more.
    let mut changed = roas(5);
    changed.remove(0);
    cache.set_roas(&changed).unwrap();
    let second = wait_for(
        &runtime,
        &mut snapshots,
        "the changed set",
        |_| {},
        |snapshot| snapshot.vrps.len() == 4,
    );
    assert!(
        second.incremental,
        "a Serial Query's answer, not a reset: {second:?}"
    );
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.serial, first.serial);
    let held: Vec<String> = second
        .vrps
        .iter()
        .map(|vrp| vrp.prefix.to_string())
        .collect();
    assert!(!held.contains(&"10.0.0.0/16".to_string()), "{held:?}");
    assert!(held.contains(&"10.4.0.0/16".to_string()), "{held:?}");
    // The snapshot names what the update changed (the daemon re-judges only those routes).
    assert!(second.vrps_version > first.vrps_version);
    let mut changed: Vec<String> = second
        .changed_prefixes
        .as_deref()
        .unwrap_or_else(|| panic!("an incremental update names its changes: {second:?}"))
        .iter()
        .map(ToString::to_string)
        .collect();
    changed.sort();
    assert_eq!(changed, vec!["10.0.0.0/16", "10.3.0.0/16", "10.4.0.0/16"]);
    drop(handle);
}
