//! End to end, inside a network namespace the test makes (never the host's interfaces): the
//! real `topologyd` binds a service's `local_addresses` on `lo` (`[health] address_interface`)
//! around its announcements to a real BIRD 2, and a sampler watches both sides throughout.
//!
//! - At start, the addresses a previous run left behind with the ownership marker (`IFA_PROTO`
//!   116; bound here with the `address_binder` example) and that no service wants are unbound;
//!   the service's IPv4 /32 and IPv6 /128 are bound, `GET /v1/health` lists them as
//!   `addresses_bound`, and BIRD learns the covering routes.
//! - `topoctl drain --service dns` withdraws the routes at BIRD, then unbinds the addresses,
//!   released by the peer having sent the withdrawal (well before the engine's 5 s fallback);
//!   `--undrain` binds them again, then announces. The same for a drain of the whole location.
//! - A push that offboards the service's prefixes, bindings and addresses (refused by G3
//!   until an override names each route) unbinds them after the withdrawal; `topoctl rollback` to
//!   the first generation restores the bindings together with the routes.
//! - Addresses an operator bound by hand are never removed: one no service wants, and one the
//!   service lists too (topologyd finds it foreign and leaves it, also when the service goes).
//! - Until the last phase, a sampler reads `lo`, then `birdc show route`, then `lo` again every
//!   50 ms and fails the test if BIRD ever holds a service route while its address is missing
//!   from `lo` on both reads (bound before announced, withdrawn before unbound), or if an
//!   operator's address is missing.
//! - Last, a service address deleted by hand (`ip address del`) is bound again by the engine's
//!   periodic check within [`REBIND_WITHIN`], and `addresses_bound` lists it again. The sampler
//!   is stopped and its findings asserted before this phase: the deletion breaks its rule on
//!   purpose (the routes stay announced while the address is missing).

use topologyd_harness::daemon_fixture;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use daemon_fixture::{FLEET, LOCAL_ASN, WAIT, check, prefix, start_bird, wait_converged};
use ipnet::IpNet;
use serde_json::Value;
use topologyd_harness::netns::{self, Isolation};
use topologyd_harness::topologyd::{
    self, ControlPki, ControlSection, DaemonConfig, HealthSection, Topoctl, TopoctlOutput,
    Topologyd, wait_until, write_files,
};

/// This test's name, for [`netns::isolate`].
const TEST: &str = "service_addresses_are_bound_before_announcing_and_unbound_after_withdrawing";

const ADMIN: &str = "sre-admin";

/// topoctl's exit codes (README): 0 done or no change, 3 refused by a guard.
const EXIT_OK: Option<i32> = Some(0);
/// A push, rollback or drain that changed something.
const EXIT_CHANGES_MADE: Option<i32> = Some(2);
const EXIT_REFUSED: Option<i32> = Some(3);

const DNS_V4_ROUTE: &str = "192.0.2.0/24";
const DNS_V6_ROUTE: &str = "2001:db8:53::/48";
const DNS_V4_ADDRESS: &str = "192.0.2.53/32";
const DNS_V6_ADDRESS: &str = "2001:db8:53::53/128";
const WEB_ROUTE: &str = "198.51.100.0/24";

/// Bound by hand before topologyd starts and listed by the service too: foreign, never ours.
const OPERATOR_LISTED: &str = "192.0.2.99/32";
/// Bound by hand, wanted by no service.
const OPERATOR_OTHER: &str = "203.0.113.99/32";
/// Bound with the marker before topologyd starts, as a crashed earlier run would leave them;
/// no service wants them.
const STALE: [&str; 2] = ["192.0.2.77/32", "2001:db8:53::77/128"];
/// What a fresh namespace's `lo` has.
const KERNEL: [&str; 2] = ["127.0.0.1/8", "::1/128"];

/// How often the sampler looks at `lo` and BIRD.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);
/// The engine unbinds at the latest 5 s after the withdrawal was published
/// (`UNBIND_AFTER_WITHDRAWAL_TIMEOUT`), even if a peer never sent it. Unbinding within this
/// much of the command's answer shows that the peer's sync released the address, not the timer.
const UNBIND_WITHIN: Duration = Duration::from_secs(4);
/// The engine looks for bound addresses removed from outside every 2 s
/// (`ADDRESS_VERIFY_INTERVAL`, on its 250 ms tick): one removed just after a check is
/// bound again within about 2.25 s; this leaves room for a loaded machine.
const REBIND_WITHIN: Duration = Duration::from_secs(4);
/// How many samples [`Sampler::settle`] waits for in each steady state.
const SETTLE_SAMPLES: usize = 3;

const SERVICES: &str = r#"
[[service]]
name = "dns"
topology = "all"
local_addresses = ["192.0.2.53/32", "192.0.2.99/32", "2001:db8:53::53/128"]

[[service]]
name = "web"
topology = "all"
"#;

const DNS_PREFIXES: &str = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "dns"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "dns"

[[prefix]]
cidr = "2001:db8:53::/48"
origin_asn = 13335
owner = "dns"
advertise = true

[[binding]]
cidr = "2001:db8:53::/48"
service = "dns"
"#;

const WEB_PREFIXES: &str = r#"
[[prefix]]
cidr = "198.51.100.0/24"
origin_asn = 13335
owner = "web"
advertise = true

[[binding]]
cidr = "198.51.100.0/24"
service = "web"
"#;

fn net(text: &str) -> IpNet {
    prefix(text)
}

fn nets<'a>(texts: impl IntoIterator<Item = &'a str>) -> BTreeSet<IpNet> {
    texts.into_iter().map(net).collect()
}

/// The addresses on this namespace's `lo`, as `ip -j address show` lists them.
fn lo_addresses() -> Result<BTreeSet<IpNet>, String> {
    let output = Command::new("ip")
        .args(["-j", "address", "show", "dev", "lo"])
        .output()
        .map_err(|error| format!("running ip: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "ip -j address show dev lo: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    netns::parse_addresses(&String::from_utf8_lossy(&output.stdout))
}

/// The prefixes BIRD holds from topologyd (its protocol `peer`), both tables.
fn bird_routes(socket: &Path) -> Result<BTreeSet<IpNet>, String> {
    let output = Command::new("birdc")
        .arg("-s")
        .arg(socket)
        .args(["show", "route", "protocol", "peer"])
        .output()
        .map_err(|error| format!("running birdc: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || stdout.contains("Unable to connect") {
        return Err(format!(
            "birdc show route: {}: {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Route lines start with the prefix; attribute lines are indented; headers do not parse.
    Ok(stdout
        .lines()
        .filter(|line| !line.starts_with(char::is_whitespace))
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect())
}

/// What the sampler saw over the whole test.
#[derive(Debug, Default)]
struct SamplerReport {
    samples: usize,
    /// Samples in which BIRD held both service routes.
    announced: usize,
    /// Samples in which BIRD held neither service route.
    withdrawn: usize,
    /// Samples in which an address was on `lo` at both reads while BIRD lacked its route: the
    /// moments between binding and announcing, or between withdrawing and unbinding.
    bound_not_announced: usize,
    /// Every change of (service routes at BIRD, service addresses on `lo`), with its time.
    timeline: Vec<String>,
    violations: Vec<String>,
    errors: Vec<String>,
}

/// A thread polling `lo` and BIRD every [`SAMPLE_INTERVAL`] until [`Sampler::finish`].
struct Sampler {
    stop: Arc<AtomicBool>,
    /// Samples taken so far, for [`Sampler::settle`].
    taken: Arc<AtomicUsize>,
    thread: JoinHandle<SamplerReport>,
}

impl Sampler {
    fn start(socket: PathBuf) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let taken = Arc::new(AtomicUsize::new(0));
        let (stopping, counting) = (stop.clone(), taken.clone());
        let thread = std::thread::spawn(move || sample(&socket, &stopping, &counting));
        Sampler {
            stop,
            taken,
            thread,
        }
    }

    /// Waits until the sampler has seen the current state [`SETTLE_SAMPLES`] more times: the
    /// daemon is quick (a drain is over in a few hundred milliseconds), so without this a
    /// steady state could slip between two samples.
    fn settle(&self) {
        let target = self.taken.load(Ordering::Relaxed) + SETTLE_SAMPLES;
        check(
            wait_until("the sampler to look again", WAIT, || {
                if self.taken.load(Ordering::Relaxed) >= target {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }),
            "the sampler",
        );
    }

    fn finish(self) -> SamplerReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| panic!("the sampler thread panicked"))
    }
}

fn sample(socket: &Path, stop: &AtomicBool, taken: &AtomicUsize) -> SamplerReport {
    let pairs = [
        (net(DNS_V4_ROUTE), net(DNS_V4_ADDRESS)),
        (net(DNS_V6_ROUTE), net(DNS_V6_ADDRESS)),
    ];
    let operator = nets([OPERATOR_LISTED, OPERATOR_OTHER]);
    let started = Instant::now();
    let mut report = SamplerReport::default();
    let mut last_state = None;
    while !stop.load(Ordering::Relaxed) {
        let read = lo_addresses().and_then(|before| {
            let routes = bird_routes(socket)?;
            Ok((before, routes, lo_addresses()?))
        });
        let at = started.elapsed();
        let (before, routes, after) = match read {
            Ok(read) => read,
            Err(error) => {
                report.errors.push(format!("{at:?}: {error}"));
                std::thread::sleep(SAMPLE_INTERVAL);
                continue;
            }
        };
        report.samples += 1;
        let mut announced = 0;
        for (route, address) in &pairs {
            let bound = before.contains(address) || after.contains(address);
            if routes.contains(route) {
                announced += 1;
                if !bound {
                    report.violations.push(format!(
                        "{at:?}: BIRD holds {route} while {address} is missing from lo \
                         (lo before: {before:?}; after: {after:?})"
                    ));
                }
            } else if before.contains(address) && after.contains(address) {
                report.bound_not_announced += 1;
            }
        }
        match announced {
            0 => report.withdrawn += 1,
            2 => report.announced += 1,
            _ => {}
        }
        for address in &operator {
            if !before.contains(address) || !after.contains(address) {
                report.violations.push(format!(
                    "{at:?}: the operator's {address} is missing from lo \
                     (before: {before:?}; after: {after:?})"
                ));
            }
        }
        let state = (
            pairs
                .iter()
                .filter(|(route, _)| routes.contains(route))
                .map(|(route, _)| route.to_string())
                .collect::<Vec<_>>(),
            pairs
                .iter()
                .filter(|(_, address)| after.contains(address))
                .map(|(_, address)| address.to_string())
                .collect::<Vec<_>>(),
        );
        if last_state.as_ref() != Some(&state) {
            report.timeline.push(format!(
                "{:>8.3}s  BIRD {:?}  lo {:?}",
                at.as_secs_f64(),
                state.0,
                state.1
            ));
            last_state = Some(state);
        }
        taken.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(SAMPLE_INTERVAL);
    }
    report
}

/// Runs `address_binder ARGUMENTS…` in this namespace; it must succeed with JSON.
fn address_binder(binary: &Path, arguments: &[&str]) -> Value {
    let output = check(
        Command::new(binary).args(arguments).output(),
        "running address_binder",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "address_binder {} failed ({}): {stdout}{}",
        arguments.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    check(
        serde_json::from_str(&stdout),
        &format!("its JSON: {stdout}"),
    )
}

/// The marked addresses on `lo`, by `address_binder owned lo`.
fn owned(binary: &Path) -> BTreeSet<IpNet> {
    address_set(&address_binder(binary, &["owned", "lo"])["addresses"])
}

fn address_set(value: &Value) -> BTreeSet<IpNet> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list of addresses: {value}"))
        .iter()
        .map(|address| net(address.as_str().unwrap_or("not a string")))
        .collect()
}

fn ip(arguments: &[&str]) {
    let output = check(Command::new("ip").args(arguments).output(), "running ip");
    assert!(
        output.status.success(),
        "ip {}: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

struct Site {
    topologyd: Topologyd,
    admin: Topoctl,
    socket: PathBuf,
    bundles: tempfile::TempDir,
}

impl Site {
    fn topoctl(&self, subcommand: &str, arguments: &[&str]) -> TopoctlOutput {
        check(self.admin.run(subcommand, arguments), "running topoctl")
    }

    fn json(&self, subcommand: &str) -> Value {
        let output = self.topoctl(subcommand, &[]);
        assert_eq!(output.code, EXIT_OK, "{output}");
        check(output.json(), subcommand)
    }

    fn generation(&self) -> u64 {
        let status = self.json("status");
        status["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no generation in {status}"))
    }

    /// Waits until BIRD holds exactly `expected` from topologyd.
    fn wait_bird(&self, expected: &BTreeSet<IpNet>, what: &str) {
        check(
            wait_until(what, WAIT, || {
                let routes = bird_routes(&self.socket)?;
                if &routes == expected {
                    Ok(())
                } else {
                    Err(format!("BIRD holds {routes:?}"))
                }
            }),
            &format!("{}\n--- topologyd log\n{}", what, self.topologyd.log_tail()),
        );
    }

    /// Waits until `lo` holds exactly `expected`.
    fn wait_lo(&self, expected: &BTreeSet<IpNet>, what: &str) {
        check(
            wait_until(what, WAIT, || {
                let addresses = lo_addresses()?;
                if &addresses == expected {
                    Ok(())
                } else {
                    Err(format!("lo holds {addresses:?}"))
                }
            }),
            &format!("{}\n--- topologyd log\n{}", what, self.topologyd.log_tail()),
        );
    }

    /// `GET /v1/health` through `topoctl health`.
    fn health(&self) -> Value {
        self.json("health")
    }

    /// Waits until the health view reports exactly `expected` as bound and nothing pending.
    fn wait_health_bound(&self, expected: &BTreeSet<IpNet>) -> Value {
        check(
            wait_until("addresses_bound in /v1/health", WAIT, || {
                let health = self.health();
                if &address_set(&health["addresses_bound"]) == expected
                    && health["addresses_pending_unbind"]
                        .as_array()
                        .is_some_and(Vec::is_empty)
                {
                    Ok(health)
                } else {
                    Err(health.to_string())
                }
            }),
            "topologyd",
        )
    }

    fn bundle(&self, name: &str, services: &str, prefixes: &str) -> Vec<String> {
        check(
            write_files(
                &self.bundles.path().join(name),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", services),
                    ("prefixes.toml", prefixes),
                ],
            ),
            "writing a bundle",
        )
        .iter()
        .map(|path| path.display().to_string())
        .collect()
    }
}

#[test]
fn service_addresses_are_bound_before_announcing_and_unbound_after_withdrawing() {
    // Build outside the namespace: the re-run's builds are then no-ops.
    let binder = check(
        topologyd::example("address_binder"),
        "building the address_binder example",
    );
    check(topologyd::binaries(), "building topologyd");
    let Isolation::Inside(namespace) = check(netns::isolate(TEST), "re-running in a namespace")
    else {
        return;
    };
    let started = Instant::now();
    // Make sure of where we are before changing `lo` without `ip -n`.
    let identify = check(
        Command::new("ip").args(["netns", "identify"]).output(),
        "ip netns identify",
    );
    assert_eq!(
        String::from_utf8_lossy(&identify.stdout).trim(),
        namespace,
        "not inside the test's namespace"
    );

    // (4) An operator's addresses, and a previous run's leftovers with the marker.
    for address in [OPERATOR_LISTED, OPERATOR_OTHER] {
        ip(&["address", "add", address, "dev", "lo"]);
    }
    for address in STALE {
        assert_eq!(
            address_binder(&binder, &["bind", "lo", address])["outcome"],
            "bound",
            "{address}"
        );
    }
    assert_eq!(owned(&binder), nets(STALE));
    let operator = nets([OPERATOR_LISTED, OPERATOR_OTHER]);
    let kernel_and_operator: BTreeSet<IpNet> = nets(KERNEL).union(&operator).copied().collect();
    let service_addresses = nets([DNS_V4_ADDRESS, DNS_V6_ADDRESS]);
    let everything_bound: BTreeSet<IpNet> = kernel_and_operator
        .union(&service_addresses)
        .copied()
        .collect();
    let all_routes = nets([DNS_V4_ROUTE, DNS_V6_ROUTE, WEB_ROUTE]);
    let web_only = nets([WEB_ROUTE]);

    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    daemon.control = Some(ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[(ADMIN, "admin")],
    ));
    daemon.health = Some(HealthSection {
        address_interface: Some("lo".to_string()),
        ..HealthSection::default()
    });
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let socket = bird.directory().join("bird.ctl");
    // The sampler watches from before topologyd exists.
    let sampler = Sampler::start(socket.clone());
    sampler.settle();

    // (1) Start: stale addresses go, the service's are bound, BIRD learns the routes.
    let prefixes = format!("{DNS_PREFIXES}{WEB_PREFIXES}");
    let mut topologyd = check(
        Topologyd::start(
            daemon,
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &prefixes),
            ],
        ),
        "starting topologyd",
    );
    wait_converged(&mut topologyd, &[&bird]);
    let control = topologyd
        .config
        .control
        .as_ref()
        .map(|control| control.listen)
        .unwrap_or_else(|| panic!("no [control] configured"));
    let admin = Topoctl::new(
        control,
        &pki.ca,
        check(pki.client(ADMIN), "a client certificate"),
    );
    let mut site = Site {
        topologyd,
        admin,
        socket,
        bundles: check(tempfile::tempdir(), "a directory for bundles"),
    };
    site.wait_bird(&all_routes, "BIRD to learn the dns and web routes");
    assert_eq!(
        check(lo_addresses(), "lo"),
        everything_bound,
        "lo after start: the service's addresses bound, the stale ones gone, the operator's kept"
    );
    assert_eq!(
        owned(&binder),
        service_addresses,
        "marked: exactly the service's addresses (not the operator's, though listed)"
    );
    let health = site.wait_health_bound(&service_addresses);
    sampler.settle();
    assert_eq!(health["address_interface"], "lo", "{health}");
    assert_eq!(health["address_errors"], serde_json::json!({}), "{health}");
    let log = site.topologyd.log();
    for address in STALE {
        assert!(
            log.lines().any(|line| {
                line.contains("stale service address unbound") && line.contains(address)
            }),
            "no log line for the stale {address}:\n{log}"
        );
    }
    assert_eq!(
        check(
            site.topologyd.metric("topologyd_local_addresses_bound"),
            "metrics"
        ),
        Some(2.0)
    );

    // A reason carrying a terminal escape sequence is refused, and nothing is drained.
    let hostile = check(
        site.admin
            .drain(Some("dns"), false, "\u{1b}]52;c;aGk=\u{7}"),
        "topoctl drain",
    );
    assert_eq!(hostile.code, Some(topologyd_api::EXIT_INVALID), "{hostile}");
    assert!(
        hostile
            .stderr
            .contains("control or bidirectional character"),
        "{hostile}"
    );

    // (2) Drain: the routes go at BIRD, then the addresses; undrain: addresses, then routes.
    let drain = check(
        site.admin.drain(Some("dns"), false, "local address test"),
        "topoctl drain",
    );
    assert_eq!(drain.code, EXIT_CHANGES_MADE, "{drain}");
    let drained_at = Instant::now();
    site.wait_bird(&web_only, "the drain to withdraw the dns routes at BIRD");
    site.wait_lo(
        &kernel_and_operator,
        "the drain to unbind the dns addresses",
    );
    let unbound_after = drained_at.elapsed();
    assert!(
        unbound_after < UNBIND_WITHIN,
        "the addresses were unbound {unbound_after:?} after the drain: the 5 s fallback, not \
         the peer's sync, released them"
    );
    let health = site.wait_health_bound(&BTreeSet::new());
    sampler.settle();
    assert_eq!(health["services"]["dns"]["drained"], true, "{health}");
    assert_eq!(health["services"]["dns"]["action"], "withdraw", "{health}");
    assert_eq!(owned(&binder), BTreeSet::new());

    let undrain = check(
        site.admin.drain(Some("dns"), true, ""),
        "topoctl drain --undrain",
    );
    assert_eq!(undrain.code, EXIT_CHANGES_MADE, "{undrain}");
    site.wait_bird(&all_routes, "the undrain to announce the dns routes again");
    assert_eq!(check(lo_addresses(), "lo"), everything_bound);
    site.wait_health_bound(&service_addresses);
    sampler.settle();

    // The whole location drained: every route goes, then the addresses; and back.
    let drain = check(
        site.admin.drain(None, false, "location maintenance"),
        "topoctl drain (location)",
    );
    assert_eq!(drain.code, EXIT_CHANGES_MADE, "{drain}");
    site.wait_bird(
        &BTreeSet::new(),
        "the location drain to withdraw every route",
    );
    site.wait_lo(
        &kernel_and_operator,
        "the location drain to unbind the dns addresses",
    );
    let health = site.wait_health_bound(&BTreeSet::new());
    assert_eq!(health["location_drained"], true, "{health}");
    sampler.settle();
    let undrain = check(
        site.admin.drain(None, true, ""),
        "topoctl drain --undrain (location)",
    );
    assert_eq!(undrain.code, EXIT_CHANGES_MADE, "{undrain}");
    site.wait_bird(
        &all_routes,
        "the location undrain to announce every route again",
    );
    assert_eq!(check(lo_addresses(), "lo"), everything_bound);
    site.wait_health_bound(&service_addresses);
    sampler.settle();

    // (3) Offboard the service's prefixes, bindings and addresses: guarded, then applied.
    let offboarded = site.bundle(
        "offboarded",
        &SERVICES.replace(
            "local_addresses = [\"192.0.2.53/32\", \"192.0.2.99/32\", \"2001:db8:53::53/128\"]\n",
            "",
        ),
        WEB_PREFIXES,
    );
    let offboarded: Vec<&str> = offboarded.iter().map(String::as_str).collect();
    let refused = site.topoctl("push", &offboarded);
    assert_eq!(refused.code, EXIT_REFUSED, "{refused}");
    // Offboarding withdraws the dns routes from every live location: G3 refuses it until an
    // override names each route (the blast-radius override would not do).
    assert!(
        refused.stderr.contains("G3 refuses 2 route(s)"),
        "the refusal names G3: {refused}"
    );
    assert_eq!(
        site.generation(),
        1,
        "a refused push changed the generation"
    );
    let mut push = offboarded.clone();
    push.extend(["--override", "blast-radius"]);
    let still_refused = site.topoctl("push", &push);
    assert_eq!(still_refused.code, EXIT_REFUSED, "{still_refused}");
    let overrides = [
        format!("global-withdrawal:{DNS_V4_ROUTE}"),
        format!("global-withdrawal:{DNS_V6_ROUTE}"),
    ];
    for route in &overrides {
        push.extend(["--override", route.as_str()]);
    }
    let pushed = site.topoctl("push", &push);
    assert_eq!(pushed.code, EXIT_CHANGES_MADE, "{pushed}");
    let pushed_at = Instant::now();
    assert_eq!(site.generation(), 2);
    site.wait_bird(&web_only, "the push to withdraw the dns routes at BIRD");
    site.wait_lo(&kernel_and_operator, "the push to unbind the dns addresses");
    let unbound_after = pushed_at.elapsed();
    assert!(
        unbound_after < UNBIND_WITHIN,
        "the addresses were unbound {unbound_after:?} after the push: the 5 s fallback, not the \
         peer's sync, released them"
    );
    site.wait_health_bound(&BTreeSet::new());
    sampler.settle();

    // Rollback to generation 1: bindings and routes come back together.
    let rollback = site.topoctl("rollback", &["1"]);
    assert_eq!(rollback.code, EXIT_CHANGES_MADE, "{rollback}");
    site.wait_bird(&all_routes, "the rollback to announce the dns routes again");
    assert_eq!(check(lo_addresses(), "lo"), everything_bound);
    assert_eq!(site.generation(), 3);
    site.wait_health_bound(&service_addresses);
    assert_eq!(owned(&binder), service_addresses);
    sampler.settle();

    // The sampler stops here and its findings are asserted now: the last phase deletes a bound
    // address by hand while BIRD holds its route, the very state the sampler reports as a
    // violation (topologyd does not withdraw when an address vanishes; it binds it again).
    let report = sampler.finish();
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "sampler: {} samples, {} with both dns routes at BIRD, {} with none, {} address-bound-\
         route-absent observations; timeline:",
        report.samples, report.announced, report.withdrawn, report.bound_not_announced
    );
    for line in &report.timeline {
        let _ = writeln!(summary, "  {line}");
    }
    println!("{summary}");
    assert!(
        report.violations.is_empty(),
        "ordering violations:\n{}\n{summary}\n--- topologyd log\n{}",
        report.violations.join("\n"),
        site.topologyd.log()
    );
    assert!(
        report.errors.is_empty(),
        "the sampler could not read lo or BIRD:\n{}",
        report.errors.join("\n")
    );
    // Each of the four announced and four withdrawn steady states was seen settled (the
    // sample in flight when `settle` began may predate the state, hence one less each).
    let settled = 4 * (SETTLE_SAMPLES - 1);
    assert!(
        report.announced >= settled && report.withdrawn >= settled,
        "{summary}"
    );

    // (5) Last: a bound service address removed from outside is bound again by the engine's
    // periodic check and is ours (marked) again; the routes are still announced afterwards.
    ip(&["address", "del", DNS_V4_ADDRESS, "dev", "lo"]);
    let removed_at = Instant::now();
    site.wait_lo(
        &everything_bound,
        "topologyd to bind the removed dns address again",
    );
    let rebound_after = removed_at.elapsed();
    println!("{DNS_V4_ADDRESS} removed from outside, bound again after {rebound_after:?}");
    assert!(
        rebound_after < REBIND_WITHIN,
        "{DNS_V4_ADDRESS} was bound again {rebound_after:?} after its removal, not within \
         {REBIND_WITHIN:?}"
    );
    assert_eq!(
        owned(&binder),
        service_addresses,
        "the address bound again carries the ownership marker"
    );
    let log = site.topologyd.log();
    assert!(
        log.lines().any(|line| {
            line.contains("a bound service address was removed from outside")
                && line.contains(DNS_V4_ADDRESS)
        }),
        "no log line for the removal of {DNS_V4_ADDRESS}:\n{log}"
    );
    site.wait_health_bound(&service_addresses);
    assert_eq!(
        check(bird_routes(&site.socket), "BIRD's routes"),
        all_routes,
        "the routes stay announced while the address is bound again"
    );
    assert_eq!(
        check(
            site.topologyd.metric("topologyd_local_addresses_bound"),
            "metrics"
        ),
        Some(2.0)
    );

    check(site.topologyd.check_running(), "topologyd");
    let log = site.topologyd.log();
    let address_lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("service address"))
        .collect();
    println!("topologyd on addresses:\n{}", address_lines.join("\n"));
    println!("inside the namespace: {:?}", started.elapsed());
}
