//! End to end: the real `topologyd` with `[rpki]`, keeping its VRPs in sync with real StayRTR
//! caches (and, for malformed PDUs, a small hand-written cache), peering with a real BIRD 2, all
//! on loopback; `/v1/rpki` read over mTLS with `curl`, the metrics from the admin listener:
//!
//! - `keep` (the default): a ROA removed makes an announced route invalid; it stays at BIRD, the
//!   alarm metric and `/v1/rpki` show it, the audit log records it; a push splitting a prefix
//!   beyond its ROA's max-length is refused by G5 (422) and nothing changes;
//! - `withdraw`: BIRD loses the invalid route, and regains it when the ROA returns;
//! - failover: the preferred StayRTR killed, the second serves, and BIRD's routes never change;
//!   then no cache for longer than `expire`: every route is not found and nothing is withdrawn
//!   (an invalid route held back under `withdraw` is even announced again);
//! - a cache answering malformed PDUs never stops the daemon nor its BGP session.

use topologyd_harness::daemon_fixture;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_fixture::{AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, check, topology};
use serde_json::{Value, json};
use topologyd_harness::peers::{BgpPeer as _, BirdPeer, Roa, StayRtr, StayRtrOptions};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, TlsIdentity, Topologyd, wait_until,
};

const ADMIN: &str = "sre-admin";
const WAIT: Duration = daemon_fixture::WAIT;

/// ROAs under which every route of ams01 is valid; 1.1.0.0/16 is someone else's ROA that
/// covers the resolver's /24 once the resolver's own ROA is gone.
fn roas() -> Vec<Roa> {
    vec![
        Roa::new("1.1.1.0/24", 24, LOCAL_ASN),
        Roa::new("1.1.0.0/16", 16, 64496),
        Roa::new("2606:4700:4700::/48", 48, LOCAL_ASN),
        Roa::new("198.51.100.0/22", 24, 64999),
        Roa::new("192.0.2.0/23", 23, LOCAL_ASN),
    ]
}

/// A prefix whose ROA allows /23 only, announced as two /24s.
const SPLIT_BEYOND_MAX_LENGTH: &str = r#"
[[prefix]]
cidr = "192.0.2.0/23"
origin_asn = 13335
owner = "resolver"
advertise = true
announce = { split = 24 }

[[binding]]
cidr = "192.0.2.0/23"
service = "resolver"
"#;

fn without_resolver_roa() -> Vec<Roa> {
    roas()
        .into_iter()
        .filter(|roa| roa.prefix != "1.1.1.0/24")
        .collect()
}

/// `curl` against the control API (mTLS, the server name `localhost`).
struct Curl {
    listen: SocketAddr,
    ca: std::path::PathBuf,
    identity: TlsIdentity,
    scratch: tempfile::TempDir,
}

impl Curl {
    fn run(&self, path: &str, body: Option<&Value>) -> (u16, Value) {
        let port = self.listen.port();
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--max-time", "30"])
            .arg("--resolve")
            .arg(format!("localhost:{port}:{}", self.listen.ip()))
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--cert")
            .arg(&self.identity.certificate)
            .arg("--key")
            .arg(&self.identity.private_key)
            .args(["--write-out", "\n%{http_code}"]);
        if let Some(body) = body {
            let file = self.scratch.path().join("body.json");
            check(std::fs::write(&file, body.to_string()), "writing a body");
            command
                .args([
                    "--header",
                    "content-type: application/json",
                    "--data-binary",
                ])
                .arg(format!("@{}", file.display()));
        }
        let output = check(
            command
                .arg(format!("https://localhost:{port}{path}"))
                .stdin(Stdio::null())
                .output(),
            "running curl",
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let code = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "no status from curl: {text} / {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (code, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn rpki(&self) -> Value {
        let (code, view) = self.run("/v1/rpki", None);
        assert_eq!(code, 200, "{view}");
        view
    }
}

struct Setup {
    bird: BirdPeer,
    topologyd: Topologyd,
    curl: Curl,
    audit_log: std::path::PathBuf,
    _pki: ControlPki,
}

/// A daemon with `[rpki]` on `caches` (address, preference) and `policy`, peering with BIRD,
/// once BIRD holds `routes` routes.
fn start(caches: &[(String, u8)], policy: &str, routes: usize) -> Setup {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(daemon.local.ip(), &pki, &[(ADMIN, "admin")]);
    let listen = control.listen;
    let audit_log = control.audit_log.clone();
    daemon.control = Some(control);
    let caches: Vec<String> = caches
        .iter()
        .map(|(address, preference)| {
            format!("{{ address = \"{address}\", preference = {preference} }}")
        })
        .collect();
    daemon.extra = format!(
        "[rpki]\ninvalid_policy = \"{policy}\"\ncaches = [{}]\n",
        caches.join(", ")
    );
    let (bird, neighbor) = daemon_fixture::start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    daemon_fixture::wait_for_routes(&bird, routes);
    let curl = Curl {
        listen,
        ca: pki.ca.clone(),
        identity: check(pki.client(ADMIN), "issuing a client certificate"),
        scratch: check(tempfile::tempdir(), "a scratch directory"),
    };
    Setup {
        bird,
        topologyd,
        curl,
        audit_log,
        _pki: pki,
    }
}

fn stayrtr(roas: &[Roa], options: StayRtrOptions) -> StayRtr {
    check(StayRtr::start(roas, options), "starting StayRTR")
}

fn route<'a>(view: &'a Value, prefix: &str) -> &'a Value {
    view["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|route| route["prefix"] == prefix))
        .unwrap_or_else(|| panic!("no route {prefix} in {view}"))
}

/// Waits until `/v1/rpki` satisfies `done`; returns the view.
fn wait_rpki(setup: &Setup, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    check(
        wait_until(what, WAIT, || {
            let view = setup.curl.rpki();
            if done(&view) {
                Ok(view)
            } else {
                Err(view.to_string())
            }
        }),
        what,
    )
}

fn bird_prefixes(bird: &BirdPeer) -> Vec<String> {
    let mut prefixes: Vec<String> = check(bird.routes(), "BIRD routes")
        .into_iter()
        .map(|route| route.prefix.to_string())
        .collect();
    prefixes.sort();
    prefixes
}

fn bundle(prefixes: &str) -> Value {
    let sources: Vec<Value> = [
        ("fleet.toml", FLEET.to_string()),
        ("services.toml", SERVICES.to_string()),
        ("prefixes.toml", prefixes.to_string()),
    ]
    .into_iter()
    .map(|(name, text)| json!({ "name": name, "text": text }))
    .collect();
    json!({ "sources": sources })
}

#[test]
fn keep_alarms_on_a_removed_roa_and_the_daemon_refuses_a_split_beyond_max_length() {
    let cache = stayrtr(&roas(), StayRtrOptions::default());
    let setup = start(&[(cache.address().to_string(), 1)], "keep", AMS01_ROUTES);
    let view = wait_rpki(&setup, "every route valid", |view| {
        view["sync"] == "in_sync" && view["counts"]["valid"] == 6
    });
    assert_eq!(view["enabled"], true);
    assert_eq!(view["invalid_policy"], "keep");
    assert_eq!(view["cache"], cache.address().to_string());
    assert_eq!(view["vrps_ipv4"], 4);
    assert_eq!(view["vrps_ipv6"], 1);
    assert_eq!(view["caches"][0]["serving"], true);
    let before = bird_prefixes(&setup.bird);

    // The resolver's ROA is deleted: 1.1.0.0/16 (AS64496) now makes its /24 invalid.
    check(cache.set_roas(&without_resolver_roa()), "removing a ROA");
    let view = wait_rpki(&setup, "the resolver invalid", |view| {
        route(view, "1.1.1.0/24")["state"] == "invalid_origin"
    });
    let resolver = route(&view, "1.1.1.0/24");
    assert_eq!(resolver["announced"], true, "{resolver}");
    assert_eq!(resolver["covering"][0]["asn"], 64496, "{resolver}");
    assert_eq!(view["counts"]["invalid"], 1);
    let alarm = check(
        wait_until("the alarm metric", WAIT, || {
            match setup.topologyd.metric("topologyd_rpki_invalid_announced ") {
                Ok(Some(value)) if value == 1.0 => Ok(value),
                other => Err(format!("{other:?}")),
            }
        }),
        "the alarm",
    );
    assert_eq!(alarm, 1.0);
    assert_eq!(
        check(
            setup
                .topologyd
                .metric("topologyd_rpki_routes{state=\"invalid\"}"),
            "metrics"
        ),
        Some(1.0)
    );
    let (_, metrics) = check(setup.topologyd.admin_get("/metrics"), "metrics");
    for name in [
        "topologyd_rpki_routes",
        "topologyd_rpki_invalid_announced",
        "topologyd_rpki_in_sync",
        "topologyd_rpki_cache_up",
        "topologyd_rpki_cache_serving",
        "topologyd_rpki_serial",
        "topologyd_rpki_last_update_timestamp_seconds",
        "topologyd_rpki_last_update_age_seconds",
        "topologyd_rpki_vrps",
    ] {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name}: {metrics}"
        );
    }
    assert!(
        metrics.contains(&format!(
            "topologyd_rpki_cache_serving{{cache=\"{}\"}} 1",
            cache.address()
        )),
        "{metrics}"
    );
    // Kept: BIRD holds what it held.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(bird_prefixes(&setup.bird), before);
    let audit = check(std::fs::read_to_string(&setup.audit_log), "the audit log");
    assert!(
        audit.contains("route 1.1.1.0/24 origin AS13335") && audit.contains("rpki_invalid"),
        "{audit}"
    );
    assert!(
        setup.topologyd.log().contains("route RPKI state changed"),
        "{}",
        setup.topologyd.log_tail()
    );

    // A push announcing 192.0.2.0/23 split into /24s, beyond its ROA's max-length /23: refused.
    let split = format!("{PREFIXES}{SPLIT_BEYOND_MAX_LENGTH}");
    let (code, refused) = setup.curl.run(
        "/v1/apply",
        Some(&json!({ "bundle": bundle(&split), "intent": ["service:resolver"] })),
    );
    assert_eq!(code, 422, "{refused}");
    assert!(refused.to_string().contains("G5"), "{refused}");
    let (code, plan) = setup.curl.run(
        "/v1/plan",
        Some(&json!({ "bundle": bundle(&split), "intent": ["service:resolver"] })),
    );
    assert_eq!(code, 200, "{plan}");
    assert_eq!(plan["verdict"], "refused", "{plan}");
    assert_eq!(bird_prefixes(&setup.bird), before);
}

#[test]
fn withdraw_takes_an_invalid_route_from_bird_and_gives_it_back_with_the_roa() {
    let cache = stayrtr(&roas(), StayRtrOptions::default());
    let setup = start(
        &[(cache.address().to_string(), 1)],
        "withdraw",
        AMS01_ROUTES,
    );
    wait_rpki(&setup, "every route valid", |view| {
        view["counts"]["valid"] == 6
    });
    check(cache.set_roas(&without_resolver_roa()), "removing a ROA");
    check(
        setup
            .bird
            .wait_for(|routes| routes.len() == AMS01_ROUTES - 1, WAIT),
        "BIRD losing the invalid route",
    );
    assert!(!bird_prefixes(&setup.bird).contains(&"1.1.1.0/24".to_string()));
    let view = setup.curl.rpki();
    assert_eq!(route(&view, "1.1.1.0/24")["announced"], false, "{view}");
    assert_eq!(
        check(
            setup.topologyd.metric("topologyd_rpki_invalid_announced "),
            "metrics"
        ),
        Some(0.0)
    );
    check(cache.set_roas(&roas()), "restoring the ROA");
    check(
        setup
            .bird
            .wait_for(|routes| routes.len() == AMS01_ROUTES, WAIT),
        "BIRD regaining the route",
    );
    let view = wait_rpki(&setup, "the resolver valid", |view| {
        route(view, "1.1.1.0/24")["state"] == "valid"
    });
    assert_eq!(route(&view, "1.1.1.0/24")["announced"], true);
}

#[test]
fn failover_changes_no_route_and_expiry_makes_everything_not_found_withdrawing_nothing() {
    let options = StayRtrOptions {
        refresh: 1,
        retry: 1,
        expire: 8,
        ..StayRtrOptions::default()
    };
    let mut first = stayrtr(&without_resolver_roa(), options);
    let mut second = stayrtr(&without_resolver_roa(), options);
    let setup = start(
        &[
            (second.address().to_string(), 2),
            (first.address().to_string(), 1),
        ],
        "withdraw",
        AMS01_ROUTES - 1,
    );
    // The resolver is invalid and held back under withdraw: five routes.
    let view = wait_rpki(&setup, "the first cache serving", |view| {
        view["sync"] == "in_sync" && view["cache"] == first.address().to_string()
    });
    assert_eq!(view["caches"][0]["address"], first.address().to_string());
    let held = bird_prefixes(&setup.bird);
    let counters = check(setup.bird.counters(), "BIRD counters");

    check(first.kill(), "killing the preferred StayRTR");
    let view = wait_rpki(&setup, "the second cache serving", |view| {
        view["sync"] == "in_sync" && view["cache"] == second.address().to_string()
    });
    assert_eq!(route(&view, "1.1.1.0/24")["state"], "invalid_origin");
    assert_eq!(bird_prefixes(&setup.bird), held, "failover changed routes");
    let after = check(setup.bird.counters(), "BIRD counters");
    assert_eq!(
        (after.updates, after.withdrawals),
        (counters.updates, counters.withdrawals),
        "failover sent BIRD something"
    );

    // No cache at all: after `expire` the set is dropped, every route is not found.
    let before_expiry = check(setup.bird.counters(), "BIRD counters");
    check(second.kill(), "killing the second StayRTR");
    let view = wait_rpki(&setup, "the data expired", |view| view["sync"] == "expired");
    assert_eq!(view["counts"]["not_found"], 6, "{view}");
    check(
        setup
            .bird
            .wait_for(|routes| routes.len() == AMS01_ROUTES, WAIT),
        "every route announced once nothing is invalid",
    );
    assert_eq!(
        check(setup.topologyd.metric("topologyd_rpki_in_sync "), "metrics"),
        Some(0.0)
    );
    let after_expiry = check(setup.bird.counters(), "BIRD counters");
    assert_eq!(
        after_expiry.withdrawals, before_expiry.withdrawals,
        "expiry withdrew something"
    );
}

/// A cache that answers every connection with a Cache Response and then a PDU of an unknown
/// type with an impossible length, and closes.
fn malformed_cache() -> SocketAddr {
    let listener = check(TcpListener::bind("127.0.0.1:0"), "binding the hand cache");
    let address = check(listener.local_addr(), "the hand cache's address");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut query = [0u8; 8];
            if stream.read_exact(&mut query).is_err() {
                continue;
            }
            let version = query[0];
            let mut answer = vec![version, 3, 0, 7, 0, 0, 0, 8];
            answer.extend_from_slice(&[version, 99, 0, 0, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3]);
            let _ = stream.write_all(&answer);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    address
}

#[test]
fn a_cache_sending_malformed_pdus_never_stops_the_daemon_nor_its_session() {
    let bad = malformed_cache();
    let good = stayrtr(
        &roas(),
        StayRtrOptions {
            retry: 1,
            ..StayRtrOptions::default()
        },
    );
    let mut setup = start(
        &[(bad.to_string(), 1), (good.address().to_string(), 2)],
        "keep",
        AMS01_ROUTES,
    );
    let view = wait_rpki(&setup, "the good cache serving", |view| {
        view["sync"] == "in_sync" && view["counts"]["valid"] == 6
    });
    assert_eq!(view["cache"], good.address().to_string());
    // Let the client go back to the malformed cache a few times (retry), then check.
    std::thread::sleep(Duration::from_secs(3));
    check(setup.topologyd.check_running(), "topologyd still running");
    assert_eq!(bird_prefixes(&setup.bird).len(), AMS01_ROUTES);
    let (code, status) = setup.curl.run("/v1/status", None);
    assert_eq!(code, 200, "{status}");
    assert!(
        status.to_string().contains("Established"),
        "the BGP session is up: {status}"
    );
}

#[test]
fn with_only_a_malformed_cache_every_route_is_announced_and_pushes_say_g5_was_skipped() {
    let bad = malformed_cache();
    let mut setup = start(&[(bad.to_string(), 1)], "withdraw", AMS01_ROUTES);
    let view = wait_rpki(&setup, "an error from the cache", |view| {
        view["caches"][0]["last_error"].is_string()
    });
    assert_eq!(view["sync"], "connecting", "{view}");
    assert_eq!(view["counts"]["not_found"], 6, "{view}");
    let split = format!("{PREFIXES}{SPLIT_BEYOND_MAX_LENGTH}");
    let (code, plan) = setup.curl.run(
        "/v1/plan",
        Some(&json!({ "bundle": bundle(&split), "intent": ["service:resolver"] })),
    );
    assert_eq!(code, 200, "{plan}");
    assert_ne!(plan["verdict"], "refused", "{plan}");
    assert!(
        plan["text"]
            .as_str()
            .is_some_and(|text| text.contains("rpki: G5 skipped")),
        "{plan}"
    );
    check(setup.topologyd.check_running(), "topologyd still running");
    assert_eq!(bird_prefixes(&setup.bird).len(), AMS01_ROUTES);
}
