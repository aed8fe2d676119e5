//! End to end: the fleet lock's lease at one real `topologyd` (peering with a real BIRD 2, on
//! loopback, control API over mTLS), driven by the real `topoctl`:
//!
//! - `lease acquire` takes the lease; `/v1/status` names the holder and `topologyd_lease_held`
//!   is 1; another holder is refused `lease_held` (naming the holder and the time left), a
//!   lower token `stale_token`; a bad ttl is invalid;
//! - while it is held, a push without a claim or with another holder's is refused
//!   `lease_held`, one with a lower token `stale_token`, one with a higher token never
//!   acquired `lease_not_held` — none changes the generation or BIRD's routes — while a dry
//!   run is never refused; the holder's push and rollback apply;
//! - the lease and its fence survive a daemon restart (same expiry instant);
//! - release by the wrong token is refused; after release the holder's claim is refused
//!   (`lease_not_held`) and its lower token stays stale (the fence is kept);
//! - a short lease expires by the wall clock (audited as `expired`, metric back to 0);
//! - `lease break` without `--yes` does nothing; with it the lease is gone (audited);
//! - every lease change and every refusal is in the audit log.

use topologyd_harness::daemon_fixture;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use daemon_fixture::{AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, WAIT, check, topology};
use serde_json::Value;
use topologyd_harness::peers::{BgpPeer, BirdPeer};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, TopoctlOutput, Topologyd, binaries,
    wait_until, write_files,
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

struct Setup {
    /// Kept: the client certificates live in its directory.
    _pki: ControlPki,
    bird: BirdPeer,
    topologyd: Topologyd,
    admin: Topoctl,
    audit_log: PathBuf,
    bundles: tempfile::TempDir,
}

fn start() -> Setup {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(daemon.local.ip(), &pki, &[(ADMIN, "admin")]);
    let audit_log = control.audit_log.clone();
    let listen: SocketAddr = control.listen;
    daemon.control = Some(control);
    let (bird, neighbor) = daemon_fixture::start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    daemon_fixture::wait_for_routes(&bird, AMS01_ROUTES);
    let certificate = check(pki.client(ADMIN), "issuing a client certificate");
    let admin = Topoctl::new(listen, &pki.ca, certificate);
    let bundles = check(tempfile::tempdir(), "a directory for pushed bundles");
    Setup {
        _pki: pki,
        bird,
        topologyd,
        admin,
        audit_log,
        bundles,
    }
}

impl Setup {
    /// `topoctl lease ACTION --daemon … ARGUMENTS…` (the daemon arguments belong to the
    /// action).
    fn lease(&self, action: &str, arguments: &[&str]) -> TopoctlOutput {
        let binary = check(binaries(), "the binaries").join("topoctl");
        let output = check(
            Command::new(binary)
                .args(["lease", action, "--json", "--daemon"])
                .arg(self.admin.daemon.to_string())
                .arg("--cert")
                .arg(&self.admin.identity.certificate)
                .arg("--key")
                .arg(&self.admin.identity.private_key)
                .arg("--ca")
                .arg(&self.admin.ca)
                .args(arguments)
                .env_remove("TOPOCTL_DAEMON")
                .env_remove("TOPOCTL_SERVER_NAME")
                .stdin(Stdio::null())
                .output(),
            "running topoctl lease",
        );
        TopoctlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn acquire(&self, holder: &str, token: u64, ttl: u64) -> TopoctlOutput {
        let (token, ttl) = (token.to_string(), ttl.to_string());
        self.lease(
            "acquire",
            &["--holder", holder, "--token", &token, "--ttl", &ttl],
        )
    }

    /// The daemon's lease as `topoctl lease show` prints it (`null` when none).
    fn shown(&self) -> Value {
        let output = self.lease("show", &[]);
        assert_eq!(output.code, Some(0), "{output}");
        check(output.json(), "lease show")["lease"].clone()
    }

    fn topoctl(&self, subcommand: &str, arguments: &[String]) -> TopoctlOutput {
        check(self.admin.run(subcommand, arguments), "running topoctl")
    }

    fn status(&self) -> Value {
        let output = self.topoctl("status", &[]);
        assert_eq!(output.code, Some(0), "{output}");
        check(output.json(), "topoctl status")
    }

    fn generation(&self) -> u64 {
        self.status()["generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no generation in the status"))
    }

    fn added_bundle(&self) -> Vec<String> {
        let files = check(
            write_files(
                &self.bundles.path().join("added"),
                &[
                    ("fleet.toml", FLEET),
                    ("services.toml", SERVICES),
                    ("prefixes.toml", &format!("{PREFIXES}{ADDED_PREFIX}")),
                ],
            ),
            "writing a bundle",
        );
        files
            .iter()
            .map(|path| path.display().to_string())
            .collect()
    }

    /// `push --json` with `extra` arguments.
    fn push(&self, extra: &[&str]) -> TopoctlOutput {
        let mut arguments = self.added_bundle();
        arguments.push("--json".into());
        arguments.extend(extra.iter().map(|argument| (*argument).to_string()));
        self.topoctl("push", &arguments)
    }

    fn lease_metric(&self) -> Option<f64> {
        check(self.topologyd.metric("topologyd_lease_held"), "/metrics")
    }

    fn audit_records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .map(|line| check(serde_json::from_str(line), &format!("audit line {line}")))
            .collect()
    }
}

/// A refused answer: exit 5 (conflict) with the API's error body (JSON, on stderr) of `kind`,
/// its message containing `needle`.
fn assert_refused(output: &TopoctlOutput, kind: &str, needle: &str) {
    assert_eq!(output.code, Some(5), "{output}");
    let body = check(output.error_json(), "error body");
    assert_eq!(body["error"]["kind"], kind, "{output}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} not in {output}");
}

#[test]
fn the_lease_refuses_other_holders_stale_tokens_and_claims_it_does_not_hold() {
    let mut setup = start();
    assert_eq!(setup.shown(), Value::Null);
    assert_eq!(setup.lease_metric(), Some(0.0));
    let routes_before = check(setup.bird.routes(), "BIRD routes");

    // Taken: the status names the holder, the metric says so.
    let taken = setup.acquire("r-1", 2, 120);
    assert_eq!(taken.code, Some(0), "{taken}");
    let lease = setup.shown();
    assert_eq!(
        (lease["holder"].as_str(), lease["token"].as_u64()),
        (Some("r-1"), Some(2))
    );
    assert!(
        lease["remaining_ms"].as_u64().unwrap_or(0) > 100_000,
        "{lease}"
    );
    assert_eq!(setup.status()["lease"]["holder"], "r-1");
    assert_eq!(setup.lease_metric(), Some(1.0));
    assert_refused(&setup.acquire("r-2", 9, 60), "lease_held", "`r-1`");
    assert_refused(&setup.acquire("r-1", 1, 60), "stale_token", "seen token 2");
    let bad_ttl = setup.acquire("r-1", 2, 0);
    assert_eq!(bad_ttl.code, Some(4), "invalid: {bad_ttl}");

    // Mutations under someone else's lease, or a stale or unacquired claim: never applied.
    assert_refused(&setup.push(&[]), "lease_held", "topoctl lease break");
    assert_refused(&setup.push(&["--lease", "r-2:2"]), "lease_held", "`r-1`");
    assert_refused(&setup.push(&["--lease", "r-1:1"]), "stale_token", "token 1");
    assert_refused(
        &setup.push(&["--lease", "r-1:3"]),
        "lease_not_held",
        "acquire",
    );
    assert_eq!(
        setup.generation(),
        1,
        "a refused push changed the generation"
    );
    assert_eq!(check(setup.bird.routes(), "BIRD routes"), routes_before);
    // A dry run is never refused by the lease.
    let dry_run = setup.push(&["--dry-run"]);
    assert_eq!(dry_run.code, Some(2), "{dry_run}");

    // The holder's own push and rollback apply.
    let applied = setup.push(&["--lease", "r-1:2", "--expect-generation", "1"]);
    assert_eq!(applied.code, Some(2), "{applied}");
    assert_eq!(setup.generation(), 2);
    daemon_fixture::wait_for_routes(&setup.bird, AMS01_ROUTES + 1);
    let stale_rollback = setup.topoctl("rollback", &["1".into(), "--lease".into(), "r-1:1".into()]);
    assert_eq!(stale_rollback.code, Some(5), "{stale_rollback}");
    assert!(
        stale_rollback.stderr.contains("stale_token"),
        "{stale_rollback}"
    );
    let rolled_back = setup.topoctl("rollback", &["1".into(), "--lease".into(), "r-1:2".into()]);
    assert_eq!(rolled_back.code, Some(2), "{rolled_back}");
    assert_eq!(setup.generation(), 3);

    // A restart keeps the lease (the same expiry instant) and the fence.
    let expires = setup.shown()["expires_unix_ms"].clone();
    check(setup.topologyd.terminate(WAIT), "stopping topologyd");
    check(setup.topologyd.spawn(), "restarting topologyd");
    check(setup.topologyd.wait_ready(WAIT), "topologyd ready again");
    let reloaded = setup.shown();
    assert_eq!(reloaded["holder"], "r-1", "{reloaded}");
    assert_eq!(reloaded["expires_unix_ms"], expires, "{reloaded}");
    assert_eq!(setup.lease_metric(), Some(1.0));
    assert_refused(&setup.push(&[]), "lease_held", "`r-1`");

    // Release: only with the lease's token; afterwards the claim must be acquired again and
    // the lower token stays stale.
    let release = |token: &str| setup.lease("release", &["--holder", "r-1", "--token", token]);
    assert_refused(&release("1"), "lease_not_held", "held by `r-1` token 2");
    assert_eq!(release("2").code, Some(0));
    assert_eq!(setup.shown(), Value::Null);
    assert_refused(
        &setup.push(&["--lease", "r-1:2"]),
        "lease_not_held",
        "acquire it again",
    );
    assert_refused(&setup.acquire("r-1", 1, 60), "stale_token", "seen token 2");
    assert_eq!(
        setup.generation(),
        3,
        "a refused push changed the generation"
    );

    // A short lease expires by itself: said in the audit log, the metric back to 0.
    assert_eq!(setup.acquire("r-3", 1, 1).code, Some(0));
    check(
        wait_until(
            "the short lease to expire",
            Duration::from_secs(10),
            || match (setup.shown(), setup.lease_metric()) {
                (Value::Null, Some(0.0)) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        ),
        "lease expiry",
    );

    // Break: not without --yes; with it, whatever is held is gone.
    assert_eq!(setup.acquire("r-4", 1, 3600).code, Some(0));
    let unconfirmed = setup.lease("break", &[]);
    assert_eq!(unconfirmed.code, Some(1), "{unconfirmed}");
    assert!(unconfirmed.stderr.contains("--yes"), "{unconfirmed}");
    assert_eq!(setup.shown()["holder"], "r-4");
    let broken = setup.lease("break", &["--yes"]);
    assert_eq!(broken.code, Some(0), "{broken}");
    assert_eq!(setup.shown(), Value::Null);
    let applied = setup.push(&[]);
    assert_eq!(applied.code, Some(2), "no lease, no claim: {applied}");

    // The audit log has every lease change and refusal.
    let records = setup.audit_records();
    let lease_records: Vec<(String, String)> = records
        .iter()
        .filter(|record| record["endpoint"] == "POST /v1/lease" || record["endpoint"] == "lease")
        .map(|record| {
            (
                record["verdict"].as_str().unwrap_or_default().to_owned(),
                record["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (verdict, needle) in [
        ("applied", "lease acquired by `r-1` token 2 for 120 s"),
        ("lease_held", "lease acquire by `r-2` token 9"),
        ("stale_token", "lease acquire by `r-1` token 1"),
        ("lease_not_held", "lease release by `r-1` token 1"),
        ("applied", "lease released by `r-1` token 2"),
        ("expired", "lease of `r-3` token 1 expired"),
        (
            "applied",
            "lease of `r-4` token 1 broken by `topoctl lease break`",
        ),
    ] {
        assert!(
            lease_records
                .iter()
                .any(|(seen, message)| seen == verdict && message.contains(needle)),
            "no {verdict} record with {needle:?} in {lease_records:#?}"
        );
    }
    let refused_pushes = records
        .iter()
        .filter(|record| {
            record["endpoint"] == "POST /v1/apply"
                && ["lease_held", "stale_token", "lease_not_held"]
                    .contains(&record["verdict"].as_str().unwrap_or_default())
        })
        .count();
    assert_eq!(refused_pushes, 6, "every refused push is audited");
}
