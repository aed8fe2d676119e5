//! Bounded listeners under attack, end to end: the real `topologyd` peering with a real BIRD,
//! its mTLS control API and its admin listener, while this test keeps 1,000 half-open TCP
//! connections open to the control API, 200 to the admin listener, and 128 TLS clients (with a
//! reader's certificate) trickling request bodies at a byte per second — each reopened as soon
//! as the daemon closes it. Over the window, `topoctl status` and a Prometheus-style scrape of
//! `/metrics` must succeed at least 99 % of the time, and the BGP session must stay
//! Established. The attackers come from their own loopback addresses, as they would from
//! their own hosts. The window is 15 s (the 60 s, shortened to keep CI fast).

use topologyd_harness::daemon_fixture;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon_fixture::{AMS01_ROUTES, LOCAL_ASN, check, start_bird, topology, wait_for_routes};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpSocket, TcpStream};
use topologyd_harness::peers::BgpPeer;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, Topologyd, http_get,
};
use topologyd_transport::tls::{TlsFiles, client_config};

const ADMIN: &str = "sre-admin";
const READER: &str = "sre-reader";
/// The issue asks for 60 s of flood with `status` and scrapes succeeding 99 % of the time.
const WINDOW: Duration = Duration::from_secs(60);
const HALF_OPEN_CONTROL: usize = 1_000;
const HALF_OPEN_ADMIN: usize = 200;
const SLOW_BODIES: usize = 128;

fn attacker_source(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 99, 1 + (index % 200) as u8))
}

async fn connect_from(source: IpAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(target).await
}

/// Keeps `count` connections open that never send a byte, reopening each one the daemon closes.
async fn half_open(
    target: SocketAddr,
    count: usize,
    sources: usize,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) {
    let mut tasks = Vec::new();
    for index in 0..count {
        let stop = Arc::clone(&stop);
        let opened = Arc::clone(&opened);
        tasks.push(tokio::spawn(async move {
            let source = attacker_source(index % sources);
            while !stop.load(Ordering::Relaxed) {
                match connect_from(source, target).await {
                    Ok(mut stream) => {
                        opened.fetch_add(1, Ordering::Relaxed);
                        let mut buffer = [0_u8; 64];
                        // Until the daemon closes it (or the test ends).
                        let _ = tokio::time::timeout(
                            Duration::from_secs(30),
                            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
                        )
                        .await;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Keeps `count` authenticated clients sending a plan's body at one byte per second.
async fn slow_bodies(
    target: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    count: usize,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) {
    let mut tasks = Vec::new();
    for index in 0..count {
        let stop = Arc::clone(&stop);
        let opened = Arc::clone(&opened);
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls));
        tasks.push(tokio::spawn(async move {
            // 16 per source address: a handful of hosts.
            let source = attacker_source(100 + index / 16);
            while !stop.load(Ordering::Relaxed) {
                let Ok(stream) = connect_from(source, target).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let name = rustls_pki_types::ServerName::try_from("localhost")
                    .unwrap_or_else(|error| panic!("server name: {error}"));
                let Ok(mut tls) = connector.connect(name, stream).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let head = "POST /v1/plan HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{";
                if tls.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if tls.write_all(b" ").await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Raises this process's open-file limit (the attackers' sockets, and the daemon inherits it).
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let wanted = 16_384_u64.min(limit.maximum.unwrap_or(16_384));
    let raised = rustix::process::Rlimit {
        current: Some(wanted),
        maximum: limit.maximum,
    };
    check(setrlimit(Resource::Nofile, raised), "raising RLIMIT_NOFILE");
}

#[test]
fn status_and_scrapes_succeed_while_listeners_are_flooded() {
    raise_open_file_limit();
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(
        daemon.local.ip(),
        &pki,
        &[(ADMIN, "admin"), (READER, "reader")],
    );
    let control_address = control.listen;
    daemon.control = Some(control);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);
    let admin_address = topologyd.config.admin;
    let topoctl = Topoctl::new(
        control_address,
        &pki.ca,
        check(pki.client(ADMIN), "an admin certificate"),
    );
    let reader = check(pki.client(READER), "a reader certificate");
    let reader_tls = check(
        client_config(&TlsFiles {
            certificate: reader.certificate.clone(),
            private_key: reader.private_key.clone(),
            ca: pki.ca.clone(),
        }),
        "the reader's TLS config",
    );

    let runtime = check(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        "a runtime",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let control_opened = Arc::new(AtomicU64::new(0));
    let admin_opened = Arc::new(AtomicU64::new(0));
    let slow_opened = Arc::new(AtomicU64::new(0));
    let attackers = vec![
        runtime.spawn(half_open(
            control_address,
            HALF_OPEN_CONTROL,
            4,
            Arc::clone(&stop),
            Arc::clone(&control_opened),
        )),
        runtime.spawn(half_open(
            admin_address,
            HALF_OPEN_ADMIN,
            1,
            Arc::clone(&stop),
            Arc::clone(&admin_opened),
        )),
        runtime.spawn(slow_bodies(
            control_address,
            reader_tls,
            SLOW_BODIES,
            Arc::clone(&stop),
            Arc::clone(&slow_opened),
        )),
    ];
    // Let the flood build up before measuring.
    std::thread::sleep(Duration::from_secs(3));

    let started = Instant::now();
    let (mut status_ok, mut status_total) = (0_u32, 0_u32);
    let (mut scrape_ok, mut scrape_total) = (0_u32, 0_u32);
    let mut failures = Vec::new();
    let mut session_states = Vec::new();
    while started.elapsed() < WINDOW {
        status_total += 1;
        match topoctl.run("status", &Vec::<String>::new()) {
            Ok(output) if output.code == Some(0) => status_ok += 1,
            Ok(output) => failures.push(format!("status: {output}")),
            Err(error) => failures.push(format!("status: {error}")),
        }
        scrape_total += 1;
        match http_get(admin_address, "/metrics") {
            Ok((200, body)) if body.contains("topologyd_bgp_session_state") => {
                scrape_ok += 1;
                if let Some(state) = body
                    .lines()
                    .find(|line| line.starts_with("topologyd_bgp_session_state{"))
                    .and_then(|line| line.rsplit(' ').next())
                {
                    session_states.push(state.to_string());
                }
            }
            Ok((status, _)) => failures.push(format!("scrape: status {status}")),
            Err(error) => failures.push(format!("scrape: {error}")),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let flood = (
        control_opened.load(Ordering::Relaxed),
        admin_opened.load(Ordering::Relaxed),
        slow_opened.load(Ordering::Relaxed),
    );
    runtime.block_on(async {
        for attacker in attackers {
            let _ = tokio::time::timeout(Duration::from_secs(40), attacker).await;
        }
    });
    drop(runtime);

    eprintln!(
        "over {WINDOW:?}: topoctl status {status_ok}/{status_total}, /metrics {scrape_ok}/{scrape_total}; connections opened by the flood: {} half-open control, {} half-open admin, {} slow bodies; failures: {failures:?}",
        flood.0, flood.1, flood.2
    );
    assert!(
        flood.0 >= HALF_OPEN_CONTROL as u64 && flood.1 >= HALF_OPEN_ADMIN as u64,
        "the flood did not build up: {flood:?}"
    );
    assert!(
        flood.2 >= SLOW_BODIES as u64 / 2,
        "too few slow bodies got through the handshake: {flood:?}"
    );
    assert!(
        f64::from(status_ok) >= 0.99 * f64::from(status_total),
        "topoctl status {status_ok}/{status_total}: {failures:#?}"
    );
    assert!(
        f64::from(scrape_ok) >= 0.99 * f64::from(scrape_total),
        "/metrics {scrape_ok}/{scrape_total}: {failures:#?}"
    );
    assert!(
        !session_states.is_empty() && session_states.iter().all(|state| state == "6"),
        "the BGP session left Established: {session_states:?}"
    );
    assert!(check(bird.session_state(), "BIRD's session").is_established());
    check(topologyd.check_running(), "topologyd");
}
