//! The BYOIP ownership checks (`topoctl::onboard::checks`) against real servers on loopback:
//! Knot DNS serving reverse zones, and IRRd 4 (with its PostgreSQL and Redis) serving route
//! objects. Every fault has its own status and none is ever `valid`: another token, a partial
//! /23, NXDOMAIN, NODATA, SERVFAIL (a zone Knot cannot load), REFUSED (a zone it does not
//! serve), a nameserver or whois server that never answers, one that is down, one that answers
//! garbage or too much; a route object with the wrong origin, a covering-but-not-exact one, one
//! from a source that is not accepted, one without the token. A record or object published
//! while the servers run is seen by the next check (nothing is cached).
//!
//! `thousand_prefixes_verify_concurrently` verifies 1,000 prefixes (reverse DNS and IRR each)
//! with `check_many` and prints how long it took, against the same checks run one at a time.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use topoctl::onboard::checks::irr::{IrrSettings, MAX_ANSWER_BYTES, check_irr};
use topoctl::onboard::checks::rdns::{RdnsSettings, check_rdns};
use topoctl::onboard::checks::{CheckProgress, CheckTally, check_many};
use topologyd_harness::peers::{Irrd, Knot, ReverseZone, alloc};
use topologyd_ownership::{CheckEvidence, CheckKind, CheckStatus, challenge_record_names};

const TOKEN: &str = "topologyd-verify=3q2-lWb8nFZtqC0Kxg8qkA";
const OTHER_TOKEN: &str = "topologyd-verify=someone-else-entirely";
const ASN: u32 = 64500;
const LABEL: &str = "_topologyd-challenge";

fn net(text: &str) -> IpNet {
    text.parse().expect("test prefix")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn rdns_settings(servers: Vec<SocketAddr>) -> RdnsSettings {
    RdnsSettings {
        nameservers: servers,
        timeout: Duration::from_millis(500),
        attempts: 1,
    }
}

fn irr_settings(server: SocketAddr) -> IrrSettings {
    IrrSettings {
        server: server.to_string(),
        sources: vec!["TEST".to_string()],
        timeout: Duration::from_secs(5),
    }
}

/// Fails with the whole evidence when the status is not the expected one.
fn expect(evidence: &CheckEvidence, status: CheckStatus, what: &str) {
    assert_eq!(
        evidence.status, status,
        "{what}: expected {status:?}, got {evidence:#?}"
    );
    assert!(!evidence.detail.is_empty(), "{what}: no detail");
    assert!(
        !evidence.queried.is_empty(),
        "{what}: nothing recorded as queried"
    );
}

/// The reverse zone of a /24 or /48 prefix (its only covering zone).
fn zone_of(prefix: &str) -> String {
    let names = challenge_record_names(net(prefix));
    names[0]
        .strip_prefix(&format!("{LABEL}."))
        .expect("challenge label")
        .to_string()
}

#[test]
fn reverse_dns_against_knot() {
    let slash23 = challenge_record_names(net("198.51.100.0/23"));
    let zone = |name: &str| name.trim_start_matches(&format!("{LABEL}.")).to_string();
    let partial = challenge_record_names(net("198.51.10.0/23"));
    let zones = vec![
        ReverseZone::new(&zone(&slash23[0])).txt(LABEL, TOKEN),
        ReverseZone::new(&zone(&slash23[1]))
            .txt(LABEL, "v=spf1 -all")
            .txt(LABEL, TOKEN),
        ReverseZone::new(&zone_of("192.0.2.0/24")).txt(LABEL, OTHER_TOKEN),
        ReverseZone::new(&zone_of("203.0.113.0/24")),
        ReverseZone::new(&zone_of("198.18.0.0/24")).txt(&format!("sub.{LABEL}"), TOKEN),
        ReverseZone::new(&zone(&partial[0])).txt(LABEL, TOKEN),
        ReverseZone::new(&zone(&partial[1])),
        ReverseZone::unloadable(&zone_of("198.51.12.0/24")),
        ReverseZone::new(&zone_of("2001:db8:abcd::/48")).txt(LABEL, TOKEN),
        ReverseZone::new(&zone_of("198.51.20.0/24")),
    ];
    let knot = Knot::start(&zones).expect("Knot starts");
    let settings = rdns_settings(vec![knot.address()]);
    let runtime = runtime();
    let check = |prefix: &str| runtime.block_on(check_rdns(&settings, net(prefix), TOKEN));

    let valid = check("198.51.100.0/23");
    expect(
        &valid,
        CheckStatus::Valid,
        "token in both /24 zones of a /23",
    );
    assert_eq!(valid.kind, CheckKind::Rdns);
    assert_eq!(valid.queried.len(), 2);
    assert!(valid.found.iter().any(|line| line.contains(TOKEN)));
    assert_eq!(valid.server, knot.address().to_string());
    expect(
        &check("198.51.101.0/24"),
        CheckStatus::Valid,
        "a TXT among others",
    );
    expect(
        &check("2001:db8:abcd::/48"),
        CheckStatus::Valid,
        "IPv6 nibble zone",
    );

    let other = check("192.0.2.0/24");
    expect(&other, CheckStatus::Invalid, "another token");
    assert!(other.found.iter().any(|line| line.contains(OTHER_TOKEN)));
    expect(&check("203.0.113.0/24"), CheckStatus::Missing, "NXDOMAIN");
    let nodata = check("198.18.0.0/24");
    expect(
        &nodata,
        CheckStatus::Missing,
        "NODATA (an empty non-terminal)",
    );
    assert!(nodata.found[0].contains("no TXT"), "{:?}", nodata.found);
    let half = check("198.51.10.0/23");
    expect(&half, CheckStatus::Missing, "half a /23");
    assert!(half.detail.contains(&zone(&partial[1])), "{}", half.detail);
    assert!(!half.detail.contains(&zone(&partial[0])), "{}", half.detail);
    let servfail = check("198.51.12.0/24");
    expect(
        &servfail,
        CheckStatus::Unreachable,
        "SERVFAIL (zone not loadable)",
    );
    assert!(
        servfail.found[0].contains("SERVFAIL") || servfail.found[0].contains("Server Failure"),
        "{:?}",
        servfail.found
    );
    expect(
        &check("100.64.0.0/24"),
        CheckStatus::Unreachable,
        "REFUSED (zone not served)",
    );

    // A silent nameserver listed first: the resolver gets its answer from the other one.
    let (silent, _udp, _tcp) = silent_endpoint();
    let both = rdns_settings(vec![silent, knot.address()]);
    let evidence = runtime.block_on(check_rdns(&both, net("198.51.100.0/23"), TOKEN));
    expect(
        &evidence,
        CheckStatus::Valid,
        "one of two nameservers silent",
    );

    // Published while Knot runs, seen by the very next check: nothing is cached.
    let fresh = "198.51.20.0/24";
    expect(&check(fresh), CheckStatus::Missing, "before publishing");
    knot.publish(&ReverseZone::new(&zone_of(fresh)).txt(LABEL, TOKEN))
        .expect("publish");
    expect(&check(fresh), CheckStatus::Valid, "right after publishing");
    knot.publish(&ReverseZone::new(&zone_of(fresh)).txt(LABEL, OTHER_TOKEN))
        .expect("publish");
    expect(
        &check(fresh),
        CheckStatus::Invalid,
        "after replacing the token",
    );
}

/// A UDP socket and a TCP listener on one loopback address and port that never answer.
fn silent_endpoint() -> (SocketAddr, UdpSocket, TcpListener) {
    loop {
        let address = alloc::endpoint(topologyd_harness::peers::Transport::V4);
        if let (Ok(udp), Ok(tcp)) = (UdpSocket::bind(address), TcpListener::bind(address)) {
            return (address, udp, tcp);
        }
    }
}

#[test]
fn reverse_dns_nameserver_silent_or_down() {
    let runtime = runtime();
    let (address, _udp, _tcp) = silent_endpoint();
    let settings = rdns_settings(vec![address]);
    let started = Instant::now();
    let evidence = runtime.block_on(check_rdns(&settings, net("198.51.100.0/23"), TOKEN));
    expect(
        &evidence,
        CheckStatus::Unreachable,
        "a nameserver that never answers",
    );
    // Two names, each at most (attempts + 1) timeouts plus a second.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "took {:?}",
        started.elapsed()
    );

    // Nothing listening: ICMP port unreachable over UDP, refused over TCP.
    let down = alloc::RefusingEndpoint::new(topologyd_harness::peers::Transport::V4);
    let evidence = runtime.block_on(check_rdns(
        &rdns_settings(vec![down.address()]),
        net("192.0.2.0/24"),
        TOKEN,
    ));
    expect(
        &evidence,
        CheckStatus::Unreachable,
        "no nameserver listening",
    );
}

/// The RPSL objects the IRR fault test loads into source TEST (and one into OTHER).
fn route(prefix: &str, origin: u32, source: &str, remarks: &str) -> String {
    let class = if prefix.contains(':') {
        "route6"
    } else {
        "route"
    };
    format!(
        "{class}:          {prefix}\ndescr:          BYOIP test customer\n                second descr line\nremarks:        {remarks}\norigin:         AS{origin}\nmnt-by:         MAINT-TEST\nsource:         {source}\n\n"
    )
}

#[test]
fn irr_against_irrd() {
    let test_source = [
        route("198.51.100.0/24", ASN, "TEST", TOKEN),
        route("203.0.113.0/24", 64999, "TEST", TOKEN),
        route("10.0.0.0/8", ASN, "TEST", TOKEN),
        route("198.18.0.0/24", ASN, "TEST", "no token here"),
        route("2001:db8:1000::/36", ASN, "TEST", TOKEN),
    ]
    .concat();
    let other_source = route("192.0.2.0/24", ASN, "OTHER", TOKEN);
    let irrd = Irrd::start(&[("TEST", &test_source), ("OTHER", &other_source)])
        .unwrap_or_else(|error| panic!("IRRd starts: {error}"));
    let startup = irrd.startup();
    eprintln!(
        "IRRd start-up: {:?} in all (PostgreSQL {:?}, Redis {:?}, schema {:?}, load {:?}, irrd {:?})",
        startup.total(),
        startup.postgres,
        startup.redis,
        startup.schema,
        startup.load,
        startup.irrd
    );
    let settings = irr_settings(irrd.whois());
    let runtime = runtime();
    let check = |prefix: &str| runtime.block_on(check_irr(&settings, net(prefix), ASN, TOKEN));

    let valid = check("198.51.100.0/24");
    expect(
        &valid,
        CheckStatus::Valid,
        "exact route object, our origin, the token",
    );
    assert_eq!(valid.kind, CheckKind::Irr);
    assert!(
        valid.found.contains(&"origin: AS64500".to_string()),
        "{:?}",
        valid.found
    );
    assert!(
        valid.found.contains(&format!("remarks: {TOKEN}")),
        "{:?}",
        valid.found
    );
    assert_eq!(valid.server, irrd.whois().to_string());
    expect(&check("2001:db8:1000::/36"), CheckStatus::Valid, "route6");

    let mismatch = check("203.0.113.0/24");
    expect(&mismatch, CheckStatus::MismatchAsn, "wrong origin");
    assert!(
        mismatch.found.contains(&"origin: AS64999".to_string()),
        "{:?}",
        mismatch.found
    );
    let covering = check("10.1.2.0/24");
    expect(&covering, CheckStatus::Invalid, "covering /8 only");
    assert!(
        covering.found.contains(&"route: 10.0.0.0/8".to_string()),
        "{:?}",
        covering.found
    );
    expect(
        &check("2001:db8:1000::/48"),
        CheckStatus::Invalid,
        "covering route6 only",
    );
    expect(
        &check("192.0.2.0/24"),
        CheckStatus::Invalid,
        "source not accepted",
    );
    expect(
        &check("198.18.0.0/24"),
        CheckStatus::Missing,
        "object without the token",
    );
    expect(
        &check("100.64.0.0/24"),
        CheckStatus::Missing,
        "no object at all",
    );

    // Loaded while IRRd runs: the next check sees it.
    let updated = format!(
        "{test_source}{}",
        route("100.64.0.0/24", ASN, "TEST", TOKEN)
    );
    irrd.load("TEST", &updated).expect("reload TEST");
    expect(
        &check("100.64.0.0/24"),
        CheckStatus::Valid,
        "right after loading",
    );
}

/// A TCP server on loopback that answers every connection with `answer` (or never, if None).
fn fake_whois(answer: Option<Vec<u8>>) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind(alloc::endpoint(topologyd_harness::peers::Transport::V4))
        .expect("bind a loopback listener");
    let address = listener.local_addr().expect("address");
    let handle = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = listener.accept() {
            // The whole query first: closing with unread bytes would reset the connection.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut query = Vec::new();
            let mut chunk = [0u8; 256];
            while !query.ends_with(b"!q\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => query.extend_from_slice(&chunk[..n]),
                }
            }
            match answer {
                Some(answer) => {
                    let _ = stream.write_all(&answer);
                }
                None => std::thread::sleep(Duration::from_secs(3)),
            }
        }
    });
    (address, handle)
}

#[test]
fn irr_server_down_silent_garbage_or_too_much() {
    let runtime = runtime();
    let prefix = net("198.51.100.0/24");
    let run = |address: SocketAddr, timeout: Duration| {
        let mut settings = irr_settings(address);
        settings.timeout = timeout;
        runtime.block_on(check_irr(&settings, prefix, ASN, TOKEN))
    };

    let down = alloc::RefusingEndpoint::new(topologyd_harness::peers::Transport::V4);
    let evidence = run(down.address(), Duration::from_secs(2));
    expect(&evidence, CheckStatus::Unreachable, "server down");
    assert!(evidence.detail.contains("connect"), "{}", evidence.detail);

    let (silent, handle) = fake_whois(None);
    let started = Instant::now();
    let evidence = run(silent, Duration::from_millis(800));
    expect(&evidence, CheckStatus::Unreachable, "server never answers");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    handle.join().expect("silent server");

    let (garbage, handle) = fake_whois(Some(
        b"HTTP/1.0 400 Bad Request\r\n\r\n<html>no</html>".to_vec(),
    ));
    let evidence = run(garbage, Duration::from_secs(2));
    expect(&evidence, CheckStatus::Unreachable, "garbage");
    assert!(
        evidence.detail.contains("not an IRRd answer"),
        "{}",
        evidence.detail
    );
    handle.join().expect("garbage server");

    let object = route("198.51.100.0/24", ASN, "TEST", TOKEN);
    let mut huge = format!("A{}\n", MAX_ANSWER_BYTES * 2).into_bytes();
    huge.extend(object.as_bytes().iter().cycle().take(MAX_ANSWER_BYTES * 2));
    let (flood, handle) = fake_whois(Some(huge));
    let evidence = run(flood, Duration::from_secs(5));
    expect(
        &evidence,
        CheckStatus::Unreachable,
        "an answer over the size limit",
    );
    handle.join().expect("flooding server");
}

#[test]
fn thousand_prefixes_verify_concurrently() {
    const PREFIXES: usize = 1000;
    const CONCURRENCY: usize = 32;
    const BASELINE: usize = 100;
    let prefixes: Vec<IpNet> = (0..PREFIXES)
        .map(|n| net(&format!("10.{}.{}.0/24", 100 + n / 256, n % 256)))
        .collect();
    let zones: Vec<ReverseZone> = prefixes
        .iter()
        .map(|prefix| ReverseZone::new(&zone_of(&prefix.to_string())).txt(LABEL, TOKEN))
        .collect();
    let objects: String = prefixes
        .iter()
        .map(|prefix| route(&prefix.to_string(), ASN, "TEST", TOKEN))
        .collect();
    let knot = Knot::start(&zones).expect("Knot starts with 1,000 zones");
    let irrd = Irrd::start(&[("TEST", &objects)]).unwrap_or_else(|error| panic!("IRRd: {error}"));
    eprintln!(
        "IRRd start-up with {PREFIXES} route objects: {:?}",
        irrd.startup().total()
    );
    let rdns = rdns_settings(vec![knot.address()]);
    let irr = irr_settings(irrd.whois());
    let runtime = runtime();
    let verify = |items: Vec<(IpNet, CheckKind)>, concurrency: usize| {
        let mut tally = CheckTally::default();
        let mut shown = 0;
        let started = Instant::now();
        let results = runtime.block_on(check_many(
            items,
            concurrency,
            |(prefix, kind)| {
                let (rdns, irr) = (&rdns, &irr);
                async move {
                    match kind {
                        CheckKind::Irr => check_irr(irr, prefix, ASN, TOKEN).await,
                        _ => check_rdns(rdns, prefix, TOKEN).await,
                    }
                }
            },
            |progress: CheckProgress<'_>| {
                assert!(progress.done <= progress.total);
                tally.record(&progress);
                if progress.done * 4 >= (shown + 1) * progress.total {
                    shown += 1;
                    eprintln!("  {}", tally.line());
                }
            },
        ));
        assert_eq!(tally.valid, results.len(), "{}", tally.line());
        (started.elapsed(), results)
    };
    let both = |prefixes: &[IpNet]| -> Vec<(IpNet, CheckKind)> {
        prefixes
            .iter()
            .flat_map(|prefix| [(*prefix, CheckKind::Rdns), (*prefix, CheckKind::Irr)])
            .collect()
    };

    let (serial, results) = verify(both(&prefixes[..BASELINE]), 1);
    assert!(
        results
            .iter()
            .all(|evidence| evidence.status == CheckStatus::Valid)
    );
    let (concurrent, results) = verify(both(&prefixes), CONCURRENCY);
    assert_eq!(results.len(), PREFIXES * 2);
    let not_valid: Vec<&CheckEvidence> = results
        .iter()
        .filter(|evidence| evidence.status != CheckStatus::Valid)
        .collect();
    assert!(
        not_valid.is_empty(),
        "{} not valid, first: {:#?}",
        not_valid.len(),
        not_valid.first()
    );
    let serial_per_prefix = serial.as_secs_f64() / BASELINE as f64;
    let concurrent_per_prefix = concurrent.as_secs_f64() / PREFIXES as f64;
    eprintln!(
        "verified {PREFIXES} prefixes (reverse DNS and IRR each) in {concurrent:?} with {CONCURRENCY} in flight; \
         one at a time: {serial:?} for {BASELINE} prefixes; speed-up {:.1}x",
        serial_per_prefix / concurrent_per_prefix
    );
    // Concurrency must pay: at least as fast per prefix as one at a time.
    assert!(
        concurrent_per_prefix <= serial_per_prefix * 1.1,
        "concurrent {concurrent_per_prefix:.4}s per prefix, serial {serial_per_prefix:.4}s"
    );
}
