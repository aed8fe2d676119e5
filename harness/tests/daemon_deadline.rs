//! End to end: an apply's deadline at one real `topologyd` (peering with a real BIRD 2, on
//! loopback, control API over mTLS), with requests sent by `curl` (the exact wire body):
//!
//! - `/v1/status` reports the daemon's wall clock (`time_unix_ms`);
//! - an apply whose `deadline_unix_ms` is already past is refused 409 `deadline_passed`, and
//!   nothing changes (generation, BIRD's routes);
//! - the case a controller cannot see: an apply sent with a deadline 1.5 s ahead while the
//!   daemon is stopped (SIGSTOP, a process this test started; a guard sends SIGCONT whatever
//!   happens) stays buffered past its deadline; after SIGCONT the daemon refuses it
//!   (`deadline_passed`) instead of committing it late, and a status answered then shows a
//!   time past the deadline and the old generation — so a controller that dropped the call may
//!   conclude "not done" from it;
//! - the same apply with a deadline ahead commits.

use topologyd_harness::daemon_fixture;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemon_fixture::{AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, check, topology};
use serde_json::{Value, json};
use topologyd_harness::peers::BgpPeer as _;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, TlsIdentity, Topologyd,
};

const ADMIN: &str = "sre-admin";

const ADDED_PREFIX: &str = r#"
[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "resolver"
"#;

fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

/// `curl` against the control API (mTLS, the server name `localhost`).
struct Curl {
    listen: SocketAddr,
    ca: std::path::PathBuf,
    identity: TlsIdentity,
    scratch: tempfile::TempDir,
}

impl Curl {
    fn command(&self, path: &str) -> Command {
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
            .args(["--write-out", "\n%{http_code}"])
            .arg(format!("https://localhost:{port}{path}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Starts `POST path` with `body` (not waited for).
    fn post(&self, path: &str, body: &Value) -> Child {
        let file = self
            .scratch
            .path()
            .join(format!("body-{}.json", unix_now_ms()));
        check(std::fs::write(&file, body.to_string()), "writing a body");
        let mut command = self.command(path);
        command
            .args([
                "--header",
                "content-type: application/json",
                "--data-binary",
            ])
            .arg(format!("@{}", file.display()));
        check(command.spawn(), "running curl")
    }

    fn get(&self, path: &str) -> (u16, Value) {
        answer(check(self.command(path).spawn(), "running curl"))
    }
}

/// The status code and JSON body of a finished `curl`.
fn answer(child: Child) -> (u16, Value) {
    let output = check(child.wait_with_output(), "waiting for curl");
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

/// SIGCONT when dropped (also when the test panics).
struct Stopped<'a>(&'a Topologyd);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = self.0.signal("CONT");
    }
}

fn apply_body(generation: u64, deadline_unix_ms: u64) -> Value {
    let sources: Vec<Value> = [
        ("fleet.toml", FLEET.to_string()),
        ("services.toml", SERVICES.to_string()),
        ("prefixes.toml", format!("{PREFIXES}{ADDED_PREFIX}")),
    ]
    .into_iter()
    .map(|(name, text)| json!({ "name": name, "text": text }))
    .collect();
    json!({
        "bundle": { "sources": sources },
        "intent": [],
        "expected_generation": generation,
        "deadline_unix_ms": deadline_unix_ms,
    })
}

#[test]
fn an_apply_past_its_deadline_never_commits_even_when_it_was_buffered() {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(daemon.local.ip(), &pki, &[(ADMIN, "admin")]);
    let listen = control.listen;
    daemon.control = Some(control);
    let (bird, neighbor) = daemon_fixture::start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    daemon_fixture::wait_for_routes(&bird, AMS01_ROUTES);
    let curl = Curl {
        listen,
        ca: pki.ca.clone(),
        identity: check(pki.client(ADMIN), "issuing a client certificate"),
        scratch: check(tempfile::tempdir(), "a scratch directory"),
    };
    let status = || {
        let (code, status) = curl.get("/v1/status");
        assert_eq!(code, 200, "{status}");
        status
    };
    let before = status();
    let generation = before["generation"].as_u64().expect("a generation");
    let time = before["time_unix_ms"].as_u64().expect("the daemon's clock");
    assert!(
        time.abs_diff(unix_now_ms()) < 60_000,
        "the daemon's clock {time} is the wall clock"
    );
    let routes_before = check(bird.routes(), "BIRD routes");

    // Already past: refused on arrival, nothing changed.
    let (code, refused) =
        answer(curl.post("/v1/apply", &apply_body(generation, unix_now_ms() - 1_000)));
    assert_eq!(code, 409, "{refused}");
    assert_eq!(refused["error"]["kind"], "deadline_passed", "{refused}");
    assert_eq!(status()["generation"].as_u64(), Some(generation));

    // Buffered while the daemon is stopped, past its deadline when it is read: refused.
    let deadline = unix_now_ms() + 1_500;
    let late = {
        let _stopped = Stopped(&topologyd);
        check(topologyd.signal("STOP"), "SIGSTOP");
        let late = curl.post("/v1/apply", &apply_body(generation, deadline));
        std::thread::sleep(Duration::from_secs(3));
        late
    };
    let (code, refused) = answer(late);
    assert_eq!(code, 409, "{refused}");
    assert_eq!(refused["error"]["kind"], "deadline_passed", "{refused}");
    let after = status();
    assert!(after["time_unix_ms"].as_u64() > Some(deadline), "{after}");
    assert_eq!(after["generation"].as_u64(), Some(generation), "{after}");
    assert_eq!(check(bird.routes(), "BIRD routes"), routes_before);

    // In time: it commits.
    let (code, applied) =
        answer(curl.post("/v1/apply", &apply_body(generation, unix_now_ms() + 60_000)));
    assert_eq!(code, 200, "{applied}");
    assert!(status()["generation"].as_u64() > Some(generation));
}
