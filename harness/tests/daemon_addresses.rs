//! End to end: the local address binder (daemon/src/addresses.rs), through its example front
//! end `address_binder`, on the `lo` of network namespaces made by the tests (never the host's):
//!
//! - service addresses bound over netlink (IPv4 /32, IPv6 /128 without DAD) are on `lo` as
//!   `ip` sees them, and `owned` lists exactly them by their marker: not the kernel's
//!   `127.0.0.1`/`::1`, not an address an operator added by hand;
//! - bind and unbind are idempotent, and an operator's address is never unbound;
//! - a missing interface and a wide prefix on `lo` are refused with an explanation;
//! - the namespace guard deletes its namespace on drop, also when the test panics, and
//!   `isolate` re-runs a test inside a fresh namespace (the pattern for topologyd + BIRD).

use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Output;

use ipnet::IpNet;
use topologyd_harness::netns::{self, Isolation, Netns};
use topologyd_harness::topologyd;

fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

fn net(text: &str) -> IpNet {
    check(text.parse(), text)
}

fn nets(texts: &[&str]) -> BTreeSet<IpNet> {
    texts.iter().map(|text| net(text)).collect()
}

fn address_binder() -> PathBuf {
    check(
        topologyd::example("address_binder"),
        "building the address_binder example",
    )
}

/// Runs `address_binder ARGUMENTS…` inside `namespace` (or, with `None`, in the namespace this
/// process is in) and returns its exit status and output.
fn binder_output(namespace: Option<&Netns>, arguments: &[&str]) -> Output {
    let binary = address_binder();
    let mut command = match namespace {
        Some(namespace) => namespace.command(&binary),
        None => std::process::Command::new(&binary),
    };
    check(
        command.args(arguments).output(),
        &format!("running address_binder {}", arguments.join(" ")),
    )
}

/// Runs `address_binder ARGUMENTS…`, which must succeed, and parses its JSON answer.
fn binder(namespace: Option<&Netns>, arguments: &[&str]) -> serde_json::Value {
    let output = binder_output(namespace, arguments);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "address_binder {} failed ({}): {}{}",
        arguments.join(" "),
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    check(
        serde_json::from_str(&stdout),
        &format!("its JSON: {stdout}"),
    )
}

fn outcome(namespace: &Netns, command: &str, address: &str) -> String {
    binder(Some(namespace), &[command, "lo", address])["outcome"]
        .as_str()
        .unwrap_or("<none>")
        .to_string()
}

fn listed(answer: &serde_json::Value) -> BTreeSet<IpNet> {
    answer["addresses"]
        .as_array()
        .map(|addresses| {
            addresses
                .iter()
                .filter_map(|address| address.as_str())
                .map(net)
                .collect()
        })
        .unwrap_or_default()
}

fn lo(namespace: &Netns) -> BTreeSet<IpNet> {
    check(namespace.addresses("lo"), "listing lo with ip")
}

#[test]
fn binder_binds_marks_and_unbinds_service_addresses_on_lo() {
    let namespace = check(Netns::create("addr"), "creating a namespace");
    let kernel = nets(&["127.0.0.1/8", "::1/128"]);
    assert_eq!(lo(&namespace), kernel, "a fresh namespace's lo");
    check(
        namespace.ip(["address", "add", "192.0.2.99/32", "dev", "lo"]),
        "adding an operator's address",
    );

    // Bind twice: the second is a no-op.
    for (address, first, second) in [
        ("192.0.2.53/32", "bound", "already_bound"),
        ("2001:db8::53/128", "bound", "already_bound"),
    ] {
        assert_eq!(outcome(&namespace, "bind", address), first, "{address}");
        assert_eq!(outcome(&namespace, "bind", address), second, "{address}");
    }
    let ours = nets(&["192.0.2.53/32", "2001:db8::53/128"]);
    let everything: BTreeSet<IpNet> = kernel
        .iter()
        .chain(&ours)
        .copied()
        .chain([net("192.0.2.99/32")])
        .collect();
    assert_eq!(lo(&namespace), everything, "ip sees the bound addresses");
    assert_eq!(
        listed(&binder(Some(&namespace), &["owned", "lo"])),
        ours,
        "owned: exactly ours, by the marker"
    );
    assert_eq!(
        listed(&binder(Some(&namespace), &["bound", "lo"])),
        everything
    );

    // The IPv4 label and the IPv6 nodad flag, as ip shows them.
    let json = check(
        namespace.ip(["-j", "address", "show", "dev", "lo"]),
        "ip -j address show",
    );
    let links: serde_json::Value = check(serde_json::from_str(&json), "ip's JSON");
    let entries = links[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let entry = |local: &str| {
        entries
            .iter()
            .find(|entry| entry["local"] == local)
            .cloned()
            .unwrap_or_else(|| panic!("{local} is not on lo: {json}"))
    };
    assert_eq!(entry("192.0.2.53")["label"], "lo:topo");
    assert_eq!(entry("192.0.2.99")["label"], "lo");
    assert_eq!(entry("2001:db8::53")["nodad"], true);

    // The operator's address is usable but foreign: never claimed, never unbound.
    assert_eq!(outcome(&namespace, "bind", "192.0.2.99/32"), "foreign");
    assert_eq!(outcome(&namespace, "unbind", "192.0.2.99/32"), "foreign");
    assert!(lo(&namespace).contains(&net("192.0.2.99/32")));

    // Unbind twice: the second finds nothing to do.
    for address in ["192.0.2.53/32", "2001:db8::53/128"] {
        assert_eq!(
            outcome(&namespace, "unbind", address),
            "unbound",
            "{address}"
        );
        assert_eq!(
            outcome(&namespace, "unbind", address),
            "absent",
            "{address}"
        );
    }
    let remaining: BTreeSet<IpNet> = kernel
        .iter()
        .copied()
        .chain([net("192.0.2.99/32")])
        .collect();
    assert_eq!(lo(&namespace), remaining, "only ours are gone");
    assert_eq!(
        listed(&binder(Some(&namespace), &["owned", "lo"])),
        BTreeSet::new()
    );
}

#[test]
fn binder_refuses_a_missing_interface_and_a_wide_prefix_on_lo() {
    let namespace = check(Netns::create("addrerr"), "creating a namespace");

    let missing = binder_output(Some(&namespace), &["bind", "topo-absent0", "192.0.2.53/32"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("interface topo-absent0 does not exist")
            && stderr.contains("address_interface"),
        "says what is wrong and what to do: {stderr}"
    );

    let wide = binder_output(Some(&namespace), &["bind", "lo", "192.0.2.0/24"]);
    let stderr = String::from_utf8_lossy(&wide.stderr);
    assert_eq!(wide.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("192.0.2.0/24") && stderr.contains("/32 or /128"),
        "{stderr}"
    );
    assert_eq!(lo(&namespace), nets(&["127.0.0.1/8", "::1/128"]));
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

#[test]
fn namespace_guard_deletes_its_namespace_even_when_the_test_panics() {
    let namespace = check(Netns::create("guard"), "creating a namespace");
    let name = namespace.name().to_string();
    assert!(namespace_exists(&name), "{name} after create");
    drop(namespace);
    assert!(!namespace_exists(&name), "{name} after drop");

    let (sender, receiver) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let namespace = check(Netns::create("panic"), "creating a namespace");
        let _ = sender.send(namespace.name().to_string());
        panic!("a test failing while it holds a namespace");
    })
    .join();
    assert!(panicked.is_err());
    let name = check(receiver.recv(), "the panicking thread's namespace");
    assert!(!namespace_exists(&name), "{name} after the panic");
}

#[test]
fn isolated_test_runs_inside_its_own_namespace() {
    let Isolation::Inside(name) = check(
        netns::isolate("isolated_test_runs_inside_its_own_namespace"),
        "re-running inside a namespace",
    ) else {
        return;
    };
    // Make sure of where we are before changing anything without `ip -n`.
    let identify = check(
        std::process::Command::new("ip")
            .args(["netns", "identify"])
            .output(),
        "ip netns identify",
    );
    assert_eq!(String::from_utf8_lossy(&identify.stdout).trim(), name);
    let added = check(
        std::process::Command::new("ip")
            .args(["address", "add", "192.0.2.7/32", "dev", "lo"])
            .status(),
        "ip address add",
    );
    assert!(added.success());
    assert_eq!(outcome_here("bind", "192.0.2.53/32"), "bound");
    let bound = listed(&binder(None, &["bound", "lo"]));
    assert!(bound.contains(&net("192.0.2.7/32")) && bound.contains(&net("127.0.0.1/8")));
    assert_eq!(
        listed(&binder(None, &["owned", "lo"])),
        nets(&["192.0.2.53/32"])
    );
}

fn outcome_here(command: &str, address: &str) -> String {
    binder(None, &[command, "lo", address])["outcome"]
        .as_str()
        .unwrap_or("<none>")
        .to_string()
}
