//! The engine keeps serving while a large plan compiles: the real `topologyd` binary, its mTLS
//! control API and systemd's notify socket, with a 20 MB topology planned by a reader.
//!
//! While the plan is in flight (compile, plan and rendering run on the blocking pool, never on
//! the engine task), `status` and `health` — commands the engine task answers itself — come back
//! quickly, and the watchdog pinger (which pings only when the engine answers) keeps its
//! interval. Before compiles moved off the engine task every one of them waited for the compile.
//! The figures are printed (`--nocapture`) for the README.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use topoctl::control_client::ControlClient;
use topologyd::engine_api::{SourceBundle, SourceFile};
use topologyd_api::Intent;
use topologyd_transport::tls::{TlsFiles, client_config};

/// The size of the planned bundle, as in the issue.
const PLAN_BYTES: usize = 20 * 1024 * 1024;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("a free port: {error}"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text)
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    reader: (PathBuf, PathBuf),
}

fn pki(directory: &Path) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let issue = |name: &str, dns: &[&str]| {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = dns.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let certificate = params.signed_by(&key, &ca).expect("certificate");
        let certificate_path = directory.join(format!("{name}.pem"));
        let key_path = directory.join(format!("{name}.key"));
        write(&certificate_path, &certificate.pem());
        write(&key_path, &key.serialize_pem());
        (certificate_path, key_path)
    };
    let server = issue("topologyd", &["localhost"]);
    let reader = issue("robot-reader", &[]);
    let ca_path = directory.join("ca.pem");
    write(&ca_path, &ca.pem());
    Pki {
        ca: ca_path,
        server,
        reader,
    }
}

const FLEET: &str = "[[location]]\nname = \"ams01\"\nregion = \"eu\"\nmetro = \"AMS\"\ncountry = \"NL\"\nstate = \"live\"\n";
const SERVICES: &str = "[[service]]\nname = \"resolver\"\ntopology = \"all\"\n";

fn prefix_entry(index: usize) -> String {
    let cidr = format!(
        "{}.{}.{}.0/24",
        10 + index / 65_536,
        (index / 256) % 256,
        index % 256
    );
    format!(
        "[[prefix]]\ncidr = \"{cidr}\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"{cidr}\"\nservice = \"resolver\"\n\n"
    )
}

/// A valid topology whose sources total about `bytes`.
fn large_bundle(bytes: usize) -> SourceBundle {
    let mut prefixes = String::with_capacity(bytes + 256);
    let mut index = 0;
    while prefixes.len() < bytes {
        prefixes.push_str(&prefix_entry(index));
        index += 1;
    }
    SourceBundle {
        sources: vec![
            SourceFile {
                name: "fleet.toml".into(),
                text: FLEET.into(),
            },
            SourceFile {
                name: "services.toml".into(),
                text: SERVICES.into(),
            },
            SourceFile {
                name: "prefixes.toml".into(),
                text: prefixes.into(),
            },
        ],
    }
}

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running daemon with its notify listener, and a reader's client of its control API.
struct Running {
    _daemon: Daemon,
    client: ControlClient,
    pings: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    listener: std::thread::JoinHandle<()>,
    _directory: tempfile::TempDir,
}

/// Starts `topologyd` with a control API (a reader may send 64 MiB), `extra` appended to its
/// `[control]` table, `NOTIFY_SOCKET` and `WATCHDOG_USEC=1000000`.
fn start(extra: &str) -> Running {
    let directory = tempfile::tempdir().expect("a directory");
    let root = directory.path();
    let pki = pki(root);
    write(&root.join("fleet.toml"), FLEET);
    write(&root.join("services.toml"), SERVICES);
    write(&root.join("prefixes.toml"), &prefix_entry(0));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let control = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = format!(
        r#"location = "ams01"
local_asn = 13335
router_id = "127.0.0.1"
state_dir = "{root}/state"
bootstrap_topology = ["{root}/fleet.toml", "{root}/services.toml", "{root}/prefixes.toml"]
[admin]
listen = "{admin}"
[control]
listen = "{control}"
certificate = "{server_certificate}"
private_key = "{server_key}"
client_ca = "{ca}"
audit_log = "{root}/audit.jsonl"
max_reader_body_bytes = {reader_limit}
{extra}
roles = {{ "robot-reader" = "reader" }}
"#,
        root = root.display(),
        server_certificate = pki.server.0.display(),
        server_key = pki.server.1.display(),
        ca = pki.ca.display(),
        reader_limit = 64 * 1024 * 1024,
        extra = extra,
    );
    write(&root.join("topologyd.toml"), &config);

    let socket_path = root.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("binding the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("a read timeout");
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = {
        let pings = Arc::clone(&pings);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buffer = [0_u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(length) = socket.recv(&mut buffer)
                    && String::from_utf8_lossy(&buffer[..length]).contains("WATCHDOG=1")
                    && let Ok(mut pings) = pings.lock()
                {
                    pings.push(Instant::now());
                }
            }
        })
    };
    let log = std::fs::File::create(root.join("topologyd.log")).expect("a log file");
    let daemon = Daemon {
        child: Command::new(env!("CARGO_BIN_EXE_topologyd"))
            .arg("--config")
            .arg(root.join("topologyd.toml"))
            .env("NOTIFY_SOCKET", &socket_path)
            // Ping every 500 ms (half of WATCHDOG_USEC) while the engine answers.
            .env("WATCHDOG_USEC", "1000000")
            .env("TOPOLOGYD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("starting topologyd"),
    };

    let client = ControlClient::new(
        control,
        "localhost",
        client_config(&TlsFiles {
            certificate: pki.reader.0.clone(),
            private_key: pki.reader.1.clone(),
            ca: pki.ca.clone(),
        })
        .expect("client TLS"),
    )
    .expect("a client")
    .with_timeout(Duration::from_secs(600));
    Running {
        _daemon: daemon,
        client,
        pings,
        stop,
        listener,
        _directory: directory,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn wait_for_control(client: &ControlClient) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.status().await.is_err() {
        assert!(Instant::now() < deadline, "the control API never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn status_health_and_watchdog_stay_prompt_while_a_20_mb_plan_compiles() {
    let Running {
        _daemon: daemon,
        client,
        pings,
        stop,
        listener,
        _directory,
    } = start("");
    let runtime = runtime();
    let bundle = large_bundle(PLAN_BYTES);
    let (status_latencies, health_latencies, plan_took, window) = runtime.block_on(async {
        wait_for_control(&client).await;
        let planner = client.clone();
        let plan_started = Instant::now();
        let mut plan = tokio::spawn(async move { planner.plan(&bundle, &Intent::default()).await });
        // Let the request body arrive and the compile start.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let window_started = Instant::now();
        let mut status_latencies = Vec::new();
        let mut health_latencies = Vec::new();
        let planned = loop {
            let started = Instant::now();
            let status = client.status().await;
            status_latencies.push(started.elapsed());
            assert!(status.is_ok(), "status failed while planning: {status:?}");
            let started = Instant::now();
            let health = client.health().await;
            health_latencies.push(started.elapsed());
            assert!(health.is_ok(), "health failed while planning: {health:?}");
            tokio::select! {
                planned = &mut plan => break planned,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        };
        let planned = planned.expect("the plan task");
        let plan = planned.expect("the plan answer");
        assert_eq!(plan.exit_code, plan.verdict.exit_code(), "{plan:?}");
        (
            status_latencies,
            health_latencies,
            plan_started.elapsed(),
            window_started.elapsed(),
        )
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = listener.join();
    drop(daemon);

    let pings = pings.lock().map(|pings| pings.clone()).unwrap_or_default();
    let window_end = Instant::now();
    let in_window: Vec<Instant> = pings
        .iter()
        .copied()
        .filter(|at| window_end.duration_since(*at) <= window + Duration::from_secs(1))
        .collect();
    let largest_gap = in_window
        .windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .max()
        .unwrap_or_default();
    let worst_status = status_latencies.iter().max().copied().unwrap_or_default();
    let worst_health = health_latencies.iter().max().copied().unwrap_or_default();
    let mut sorted = status_latencies.clone();
    sorted.sort();
    let median_status = sorted[sorted.len() / 2];
    eprintln!(
        "20 MB plan took {plan_took:?}; during it: {} status calls (median {median_status:?}, worst {worst_status:?}), worst health {worst_health:?}, {} watchdog pings, largest gap {largest_gap:?}",
        status_latencies.len(),
        in_window.len()
    );
    assert!(
        status_latencies.len() >= 3,
        "the plan finished too quickly to measure anything ({plan_took:?})"
    );
    // Each call opens a TLS connection; on a busy machine that alone takes tens of
    // milliseconds. A compile on the engine task made every one of them wait for seconds.
    assert!(
        median_status <= Duration::from_millis(100),
        "status median {median_status:?} (all: {status_latencies:?})"
    );
    assert!(
        worst_status <= Duration::from_millis(500) && worst_health <= Duration::from_millis(500),
        "status {status_latencies:?}, health {health_latencies:?}"
    );
    assert!(
        in_window.len() >= 2 && largest_gap <= Duration::from_secs(1),
        "watchdog pings during the plan: {} with a largest gap of {largest_gap:?}",
        in_window.len()
    );
}

#[test]
fn a_compile_over_the_memory_budget_is_refused_with_a_clear_error() {
    let running = start("compile_memory_bytes = 16777216");
    let runtime = runtime();
    runtime.block_on(async {
        wait_for_control(&running.client).await;
        // 4 MiB of sources need an estimated 32 MiB: over the 16 MiB budget.
        let error = running
            .client
            .plan(&large_bundle(4 * 1024 * 1024), &Intent::default())
            .await
            .expect_err("a plan over the budget");
        let text = format!("{error:?}");
        assert!(text.contains("413"), "{text}");
        assert!(text.contains("compile_memory_bytes"), "{text}");
        assert!(text.contains("too_large"), "{text}");
        // A small one still plans, and the engine still answers.
        let plan = running
            .client
            .plan(&large_bundle(64 * 1024), &Intent::default())
            .await
            .expect("a small plan");
        assert_eq!(plan.exit_code, plan.verdict.exit_code(), "{plan:?}");
        running.client.status().await.expect("status");
    });
    running
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = running.listener.join();
}
