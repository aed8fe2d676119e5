//! End to end: health-checked announcements. The real `topologyd` binary (location `ams01`)
//! peers with a real BIRD 2 on loopback and probes real local services the test starts from
//! Debian packages (`busybox httpd`, `dnsmasq`; `src/services.rs`), each bound on its own
//! `127.a.b.c` address.
//!
//! The topology has two live locations (ams01, fra01) and four services, each with its own /24
//! and a `[service.health]` block whose checks reach the test's servers through `[health.vars]`:
//!
//! | service | prefix | announced at | checks | unhealthy |
//! |---|---|---|---|---|
//! | `web` | 198.51.100.0/24 | all | HTTP `/health` (busybox) | withdraw |
//! | `dns` | 203.0.113.0/24 | all | DNS `svc.test A` (dnsmasq), expect 192.0.2.1 | withdraw |
//! | `api` | 192.0.2.0/24 | all | HTTP `/health`, TCP, exec `test -f FLAG` | degrade (+3 prepends, MED 1000, 13335:666) |
//! | `local` | 198.18.0.0/24 | ams01 only | HTTP `/health` | withdraw (but the floor holds it) |
//!
//! Probes run every 300 ms with rise 3, fall 3 and a 1.5 s hold-down. What BIRD holds is sampled
//! all along (`birdc` every ~100 ms, [`Recorder`]); health state comes from `topoctl health`
//! (the control API's `/v1/health`) and the admin `/metrics`. The tests:
//!
//! 1. a dead HTTP server: still announced after the first failed round, withdrawn after `fall`
//!    failures, back `rise` passes after the restart; exactly one withdrawal and one
//!    re-announcement at BIRD;
//! 2. flapping: a health page toggled faster than `fall` allows changes nothing; a real
//!    down/up/down/up is held down (`held_down`), the second time for twice as long;
//! 3. every server killed at once: fail static, zero withdrawals, `topologyd_health_fail_static 1`;
//!    the servers back one by one (dnsmasq restarted too): fail static ends once two of four are
//!    back, then the still-down `api` is degraded and `local` held by the floor; no withdrawal;
//! 4. `topoctl drain --service web` withdraws it and survives a daemon restart; `--undrain`
//!    brings it back; a location drain keeps `local` (the floor) until `--force`; every drain is
//!    in the audit log;
//! 5. `degrade`: the `api` route stays at BIRD with the longer AS path, MED and community, and
//!    gets its normal attributes back when healthy;
//! 6. the floor: `local`, announced from ams01 only, is never withdrawn by health
//!    (`floor_held`).
//!
//! Plus the launchers' own test (start, probe, kill, restart, no process left on drop). The
//! daemon tests run one at a time (a lock): their timing bounds are generous, but six daemons,
//! six BIRDs and twenty-four servers at once on a two-core machine would stretch them needlessly.

use topologyd_harness::daemon_fixture;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use daemon_fixture::{LOCAL_ASN, WAIT, by_prefix, check, prefix, start_bird, wait_converged};
use ipnet::IpNet;
use serde_json::Value;
use topologyd_harness::peers::{BgpPeer, BirdPeer, ReceivedRoute};
use topologyd_harness::services::{DNS_ANSWER, DNS_NAME, DnsServer, HttpServer};
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, HealthSection, Topoctl, Topologyd, wait_until,
};

const INTERVAL_MS: u64 = 300;
const TIMEOUT_MS: u64 = 250;
const RISE: u32 = 3;
const FALL: u32 = 3;
const HOLD_DOWN_MS: u64 = 1500;
const MAX_HOLD_DOWN_MS: u64 = 12_000;
/// How long health state changes may take to show (many probe rounds on a loaded machine).
const HEALTH_WAIT: Duration = Duration::from_secs(30);
/// What the propagation from the daemon's decision to BIRD's table may take off a lower bound.
const PROPAGATION_SLACK: Duration = Duration::from_millis(100);

const WEB: &str = "198.51.100.0/24";
const DNS: &str = "203.0.113.0/24";
const API: &str = "192.0.2.0/24";
const LOCAL: &str = "198.18.0.0/24";
const SERVICES: [&str; 4] = ["web", "dns", "api", "local"];

/// One daemon test at a time (see the module comment).
static SERIAL: Mutex<()> = Mutex::new(());

fn interval() -> Duration {
    Duration::from_millis(INTERVAL_MS)
}

fn hold_down() -> Duration {
    Duration::from_millis(HOLD_DOWN_MS)
}

const HEALTH_BLOCK: &str = r#"
[service.health]
interval_ms = @INTERVAL@
timeout_ms = @TIMEOUT@
rise = @RISE@
fall = @FALL@
hold_down_ms = @HOLD_DOWN@
max_hold_down_ms = @MAX_HOLD_DOWN@
"#;

const SERVICES_TOML: &str = r#"
[[service]]
name = "web"
topology = "all"
communities = ["13335:10000"]
@HEALTH@on_unhealthy = "withdraw"
[[service.health.check]]
kind = "http"
url = "http://{web_host}:{web_port}/health"
expect_status = 200

[[service]]
name = "dns"
topology = "all"
communities = ["13335:10001"]
@HEALTH@on_unhealthy = "withdraw"
[[service.health.check]]
kind = "dns"
server = "{dns_host}:{dns_port}"
name = "@DNS_NAME@"
record_type = "A"
expect = "@DNS_ANSWER@"

[[service]]
name = "api"
topology = "all"
communities = ["13335:10002"]
med = 20
@HEALTH@on_unhealthy = "degrade"
degrade = { as_path_prepend = 3, med = 1000, communities = ["13335:666"] }
[[service.health.check]]
kind = "http"
url = "http://{api_host}:{api_port}/health"
expect_status = 200
[[service.health.check]]
kind = "tcp"
address = "{api_host}:{api_port}"
[[service.health.check]]
kind = "exec"
command = ["/usr/bin/test", "-f", "@API_FLAG@"]

[[service]]
name = "local"
topology = "location = \"ams01\""
communities = ["13335:10003"]
@HEALTH@on_unhealthy = "withdraw"
[[service.health.check]]
kind = "http"
url = "http://{local_host}:{local_port}/health"
expect_status = 200
"#;

const PREFIXES_TOML: &str = r#"
[[prefix]]
cidr = "198.51.100.0/24"
origin_asn = 13335
owner = "web"
advertise = true

[[binding]]
cidr = "198.51.100.0/24"
service = "web"

[[prefix]]
cidr = "203.0.113.0/24"
origin_asn = 13335
owner = "dns"
advertise = true

[[binding]]
cidr = "203.0.113.0/24"
service = "dns"

[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "api"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "api"

[[prefix]]
cidr = "198.18.0.0/24"
origin_asn = 13335
owner = "local"
advertise = true

[[binding]]
cidr = "198.18.0.0/24"
service = "local"
"#;

/// The services file, with the exec check's flag file at `api_flag`.
fn services_toml(api_flag: &Path) -> String {
    let health = HEALTH_BLOCK
        .replace("@INTERVAL@", &INTERVAL_MS.to_string())
        .replace("@TIMEOUT@", &TIMEOUT_MS.to_string())
        .replace("@RISE@", &RISE.to_string())
        .replace("@FALL@", &FALL.to_string())
        .replace("@HOLD_DOWN@", &HOLD_DOWN_MS.to_string())
        .replace("@MAX_HOLD_DOWN@", &MAX_HOLD_DOWN_MS.to_string());
    SERVICES_TOML
        .replace("@HEALTH@", health.trim_start())
        .replace("@DNS_NAME@", DNS_NAME)
        .replace("@DNS_ANSWER@", &DNS_ANSWER.to_string())
        .replace("@API_FLAG@", &api_flag.display().to_string())
}

/// ams01 (the daemon under test), its BIRD, the control client and the four services' servers.
struct Site {
    // Dropped first: the daemon stops probing before its servers go away.
    topologyd: Topologyd,
    bird: BirdPeer,
    admin: Topoctl,
    web: HttpServer,
    dns: DnsServer,
    api: HttpServer,
    local: HttpServer,
    api_flag: PathBuf,
    _pki: ControlPki,
    _scratch: tempfile::TempDir,
}

impl Site {
    /// Starts the servers, BIRD and topologyd; returns once BIRD holds the four routes and every
    /// service is healthy.
    fn start() -> Site {
        let web = check(HttpServer::start(), "starting the web server");
        let api = check(HttpServer::start(), "starting the api server");
        let local = check(HttpServer::start(), "starting the local server");
        let dns = check(DnsServer::start(), "starting dnsmasq");
        let scratch = check(tempfile::tempdir(), "a scratch directory");
        let api_flag = scratch.path().join("api.ok");
        check(std::fs::write(&api_flag, "ok\n"), "writing the api flag");

        let pki = check(ControlPki::generate(), "generating the PKI");
        let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
        let control = ControlSection::new(daemon.local.ip(), &pki, &[("sre-admin", "admin")]);
        let admin = Topoctl::new(
            control.listen,
            &pki.ca,
            check(pki.client("sre-admin"), "a client certificate"),
        );
        daemon.control = Some(control);
        daemon.health = Some(HealthSection {
            fail_static_share: Some(0.5),
            fail_static_min_services: Some(2),
            min_other_locations: Some(1),
            // Check targets must spell HOST:PORT, so each server is two vars.
            vars: [
                ("web", web.address()),
                ("dns", dns.address()),
                ("api", api.address()),
                ("local", local.address()),
            ]
            .iter()
            .flat_map(|(name, address)| {
                [
                    (format!("{name}_host"), address.ip().to_string()),
                    (format!("{name}_port"), address.port().to_string()),
                ]
            })
            .collect(),
            ..HealthSection::default()
        });
        let (bird, neighbor) = start_bird(&daemon, "edge-bird");
        daemon.neighbors.push(neighbor);
        let services = services_toml(&api_flag);
        let topology = [
            ("fleet.toml", daemon_fixture::FLEET),
            ("services.toml", services.as_str()),
            ("prefixes.toml", PREFIXES_TOML),
        ];
        let mut topologyd = check(Topologyd::start(daemon, &topology), "starting topologyd");
        wait_converged(&mut topologyd, &[&bird]);
        let site = Site {
            topologyd,
            bird,
            admin,
            web,
            dns,
            api,
            local,
            api_flag,
            _pki: pki,
            _scratch: scratch,
        };
        site.wait_all_healthy();
        site.wait_routes("the four routes, fresh", |routes| {
            routes.len() == 4 && routes.values().all(|route| !route.stale)
        });
        site
    }

    /// `GET /v1/health` through `topoctl health`.
    fn health(&self) -> Result<Value, String> {
        let output = self
            .admin
            .run("health", &Vec::<String>::new())
            .map_err(|error| error.to_string())?;
        if output.code != Some(0) {
            return Err(format!("topoctl health: {output}"));
        }
        output.json()
    }

    /// Polls `/v1/health` until `predicate` holds; returns that answer.
    fn wait_health(&self, what: &str, predicate: impl Fn(&Value) -> bool) -> Value {
        let result = wait_until(what, HEALTH_WAIT, || {
            let health = self.health()?;
            if predicate(&health) {
                Ok(health)
            } else {
                Err(health.to_string())
            }
        });
        result
            .unwrap_or_else(|error| panic!("{error}\n--- topologyd\n{}", self.topologyd.log_tail()))
    }

    fn wait_all_healthy(&self) -> Value {
        self.wait_health("every service healthy", |health| {
            SERVICES.iter().all(|name| {
                let service = &health["services"][*name];
                service["checked"] == true
                    && service["healthy"] == true
                    && service["state"] == "healthy"
            })
        })
    }

    /// Polls BIRD until `predicate` holds on its routes; returns them.
    fn wait_routes(
        &self,
        what: &str,
        predicate: impl Fn(&BTreeMap<IpNet, ReceivedRoute>) -> bool,
    ) -> BTreeMap<IpNet, ReceivedRoute> {
        let routes = self
            .bird
            .wait_for(|routes| predicate(&by_prefix(routes.to_vec())), WAIT);
        by_prefix(routes.unwrap_or_else(|error| {
            panic!(
                "BIRD never held {what}: {error}\n--- topologyd\n{}",
                self.topologyd.log_tail()
            )
        }))
    }

    /// The value of a sample on the admin `/metrics` whose name is `name` and whose labels
    /// include `labels`.
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (_, body) = check(self.topologyd.admin_get("/metrics"), "GET /metrics");
        metric_value(&body, name, labels)
    }

    /// The control API's audit log (drains, health transitions, fail static).
    fn audit_log(&self) -> PathBuf {
        self._pki.directory().join("audit.jsonl")
    }

    fn withdrawals(&self) -> u64 {
        check(self.bird.counters(), "BIRD counters").withdrawals
    }

    fn topoctl(&self, subcommand: &str, arguments: &[&str]) -> Value {
        let output = check(self.admin.run(subcommand, arguments), "running topoctl");
        // 2: a drain or undrain changed the drain state; 0: a read.
        let expected = if subcommand == "drain" {
            Some(2)
        } else {
            Some(0)
        };
        assert_eq!(
            output.code, expected,
            "topoctl {subcommand} {arguments:?}: {output}"
        );
        output.json().unwrap_or(Value::Null)
    }
}

/// One sample of `metric` in an OpenMetrics/Prometheus text body.
fn metric_value(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = match line.find('}') {
                Some(end) => (&line[..=end], line[end + 1..].trim()),
                None => line.split_once(' ')?,
            };
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            let matches = series_name == name
                && labels.iter().all(|(label, wanted)| {
                    series_labels.contains(&format!("{label}=\"{wanted}\""))
                });
            matches
                .then(|| value.split_whitespace().next()?.parse().ok())
                .flatten()
        })
}

fn service<'a>(health: &'a Value, name: &str) -> &'a Value {
    &health["services"][name]
}

/// What BIRD held at one moment between `from` and `to` (times since the recording started).
#[derive(Debug, Clone)]
struct Sample {
    from: Duration,
    to: Duration,
    routes: BTreeMap<IpNet, ReceivedRoute>,
}

/// Samples BIRD's routes every ~100 ms on a thread while a scenario runs.
struct Recorder<'a> {
    bird: &'a BirdPeer,
    start: Instant,
    samples: Mutex<Vec<Sample>>,
    stop: AtomicBool,
}

/// Sets the recorder's stop flag when the scenario ends, also by a panic.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl<'a> Recorder<'a> {
    /// Runs `scenario` while sampling `bird`; returns its result and every sample.
    fn run<T>(bird: &'a BirdPeer, scenario: impl FnOnce(&Recorder<'a>) -> T) -> (T, Vec<Sample>) {
        let recorder = Recorder {
            bird,
            start: Instant::now(),
            samples: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        };
        let result = std::thread::scope(|scope| {
            scope.spawn(|| recorder.sample_until_stopped());
            let _stop = StopOnDrop(&recorder.stop);
            // The first sample, so that every transition has a "before".
            recorder.wait_for("a first sample", Duration::from_secs(20), |_| true);
            scenario(&recorder)
        });
        let samples = recorder
            .samples
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        (result, samples)
    }

    fn sample_until_stopped(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let from = self.now();
            if let Ok(routes) = self.bird.routes() {
                let sample = Sample {
                    from,
                    to: self.now(),
                    routes: by_prefix(routes),
                };
                self.samples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sample);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Time since the recording started.
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Waits for the first sample taken after this call whose routes satisfy `predicate`.
    fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&BTreeMap<IpNet, ReceivedRoute>) -> bool,
    ) -> Sample {
        let since = self.now();
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            {
                let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(sample) = samples[seen..]
                    .iter()
                    .find(|sample| sample.from >= since && predicate(&sample.routes))
                {
                    return sample.clone();
                }
                seen = samples.len();
                if Instant::now() >= deadline {
                    panic!(
                        "BIRD never held {what} within {timeout:?}; last sample: {:?}",
                        samples.last()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `prefix` is (`present`) or is not at BIRD.
    fn wait_presence(&self, prefix: IpNet, present: bool) -> Sample {
        let what = format!(
            "{prefix} {}",
            if present { "announced" } else { "withdrawn" }
        );
        self.wait_for(&what, WAIT, |routes| {
            routes.contains_key(&prefix) == present
        })
    }
}

/// One stretch of samples in which a prefix was missing at BIRD.
#[derive(Debug, Clone, Copy)]
struct Absence {
    /// The withdrawal happened in `[withdrawn_after, withdrawn_by]`.
    withdrawn_after: Duration,
    withdrawn_by: Duration,
    /// The re-announcement happened in `[back_after, back_by]` (None: still missing at the end).
    back_after: Option<Duration>,
    back_by: Option<Duration>,
}

impl Absence {
    /// The longest the prefix can have been missing, given the sampling.
    fn longest(&self) -> Option<Duration> {
        Some(self.back_by? - self.withdrawn_after)
    }
}

/// Every stretch of samples in which `prefix` was missing (after having been present).
fn absences(samples: &[Sample], prefix: IpNet) -> Vec<Absence> {
    let mut absences = Vec::new();
    let mut previous: Option<&Sample> = None;
    let mut current: Option<Absence> = None;
    for sample in samples {
        let present = sample.routes.contains_key(&prefix);
        match (present, current.as_mut(), previous) {
            (false, None, Some(before)) if before.routes.contains_key(&prefix) => {
                current = Some(Absence {
                    withdrawn_after: before.from,
                    withdrawn_by: sample.to,
                    back_after: None,
                    back_by: None,
                });
            }
            (true, Some(absence), Some(before)) => {
                absence.back_after = Some(before.from);
                absence.back_by = Some(sample.to);
                absences.push(*absence);
                current = None;
            }
            _ => {}
        }
        previous = Some(sample);
    }
    absences.extend(current);
    absences
}

/// Samples in which `prefix` was missing.
fn missing_in(samples: &[Sample], prefix: IpNet) -> usize {
    samples
        .iter()
        .filter(|sample| !sample.routes.contains_key(&prefix))
        .count()
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn local_http_and_dns_servers_start_answer_die_and_restart() {
    let http = check(HttpServer::start(), "starting busybox httpd");
    assert!(http.address().ip().is_loopback());
    assert_eq!(check(http.health_status(), "GET /health"), 200);
    check(http.set_healthy(false), "removing the health page");
    assert_eq!(check(http.health_status(), "GET /health"), 404);
    let pid = http.pid().unwrap_or(0);
    check(http.kill(), "killing httpd");
    assert!(!http.is_running());
    assert!(
        http.health_status().is_err(),
        "a killed server still answers"
    );
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "httpd {pid} left behind"
    );
    check(http.restart(), "restarting httpd");
    assert_eq!(check(http.health_status(), "GET /health"), 404);
    check(http.set_healthy(true), "writing the health page");
    assert_eq!(check(http.health_status(), "GET /health"), 200);

    let dns = check(DnsServer::start(), "starting dnsmasq");
    assert!(dns.address().ip().is_loopback());
    assert_eq!(
        check(dns.query(DNS_NAME), "querying dnsmasq"),
        vec![DNS_ANSWER]
    );
    assert!(check(dns.query("other.test"), "querying dnsmasq").is_empty());
    let dns_pid = dns.pid().unwrap_or(0);
    check(dns.kill(), "killing dnsmasq");
    assert!(!dns.is_running());
    assert!(
        dns.query(DNS_NAME).is_err(),
        "a killed dnsmasq still answers"
    );
    assert!(!Path::new(&format!("/proc/{dns_pid}")).exists());
    check(dns.restart(), "restarting dnsmasq");
    assert_eq!(
        check(dns.query(DNS_NAME), "querying dnsmasq"),
        vec![DNS_ANSWER]
    );

    let pids = [http.pid().unwrap_or(0), dns.pid().unwrap_or(0)];
    let directories = [
        http.directory().to_path_buf(),
        dns.directory().to_path_buf(),
    ];
    drop(http);
    drop(dns);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{pid} left behind"
        );
    }
    for directory in directories {
        assert!(!directory.exists(), "{} left behind", directory.display());
    }
}

#[test]
fn a_dead_service_is_withdrawn_after_fall_failures_and_back_after_rise_passes() {
    let _serial = lock();
    let site = Site::start();
    let web = prefix(WEB);
    let withdrawals_before = site.withdrawals();

    let (report, samples) = Recorder::run(&site.bird, |recorder| {
        let killed_at = recorder.now();
        check(site.web.kill(), "killing the web server");
        // Between the first failed round and the `fall`-th, the route must still be at BIRD.
        let mut early_check = None;
        let deadline = Instant::now() + HEALTH_WAIT;
        while Instant::now() < deadline {
            let Ok(health) = site.health() else { continue };
            let web_health = service(&health, "web");
            let failures = web_health["consecutive_failures"].as_u64().unwrap_or(0);
            if web_health["state"] != "healthy" {
                break;
            }
            if (1..u64::from(FALL)).contains(&failures) {
                let routes = by_prefix(check(site.bird.routes(), "BIRD routes"));
                // Only conclusive if the service is still healthy after BIRD was read.
                let after = site.health().unwrap_or(Value::Null);
                if service(&after, "web")["state"] == "healthy" {
                    early_check = Some((failures, routes.contains_key(&web)));
                    break;
                }
            }
        }
        let withdrawn = recorder.wait_presence(web, false);
        let unhealthy = site.health().unwrap_or(Value::Null);
        // Wait out the hold-down, then bring the server back: now `rise` decides.
        std::thread::sleep(hold_down() + interval());
        let restarted_at = recorder.now();
        check(site.web.restart(), "restarting the web server");
        let back = recorder.wait_presence(web, true);
        // Watch a little longer: nothing else may move.
        std::thread::sleep(interval() * (FALL + RISE));
        (
            killed_at,
            early_check,
            withdrawn,
            unhealthy,
            restarted_at,
            back,
        )
    });
    let (killed_at, early_check, withdrawn, unhealthy, restarted_at, back) = report;

    if let Some((failures, announced)) = early_check {
        assert!(
            announced,
            "withdrawn after {failures} failed round(s), fall is {FALL}"
        );
    } else {
        eprintln!("note: no /v1/health answer caught between the first and the {FALL}th failure");
    }
    let web_absences = absences(&samples, web);
    assert_eq!(
        web_absences.len(),
        1,
        "exactly one withdrawal: {web_absences:?}"
    );
    let absence = web_absences[0];
    assert!(absence.back_by.is_some(), "never re-announced: {absence:?}");
    eprintln!(
        "web killed at {killed_at:?}, restarted at {restarted_at:?}; at BIRD: {absence:?}; \
         /v1/health between the first and the last failure: {early_check:?}"
    );
    // The `fall`-th failed round comes at least (fall - 1) intervals after the first one.
    let withdrawn_by = absence.withdrawn_by.saturating_sub(killed_at);
    assert!(
        withdrawn_by + PROPAGATION_SLACK >= interval() * (FALL - 1),
        "withdrawn at the latest {withdrawn_by:?} after the kill: before {FALL} failed rounds"
    );
    assert!(withdrawn.from >= killed_at);
    // Back after `rise` passing rounds: at least (rise - 1) intervals after the restart.
    let back_by = absence
        .back_by
        .unwrap_or_default()
        .saturating_sub(restarted_at);
    assert!(
        back_by + PROPAGATION_SLACK >= interval() * (RISE - 1),
        "re-announced at the latest {back_by:?} after the restart: before {RISE} passing rounds"
    );
    assert!(back.from >= restarted_at);
    for other in [DNS, API, LOCAL] {
        assert_eq!(missing_in(&samples, prefix(other)), 0, "{other} moved");
    }
    assert_eq!(
        site.withdrawals() - withdrawals_before,
        1,
        "BIRD received exactly one withdrawal"
    );

    let web_health = service(&unhealthy, "web");
    assert_eq!(web_health["healthy"], false, "{unhealthy}");
    assert_eq!(web_health["action"], "withdraw", "{unhealthy}");
    assert!(
        web_health["consecutive_failures"].as_u64().unwrap_or(0) >= u64::from(FALL),
        "{unhealthy}"
    );
    assert!(
        web_health["last_round"]
            .as_array()
            .is_some_and(|round| round.iter().any(|check| check["result"] != "pass")),
        "{unhealthy}"
    );
    assert_eq!(unhealthy["fail_static"], false, "{unhealthy}");

    let health = site.wait_all_healthy();
    assert_eq!(service(&health, "web")["action"], "announce", "{health}");
    assert!(
        service(&health, "web")["transitions"].as_u64().unwrap_or(0) >= 2,
        "{health}"
    );
    assert_eq!(
        site.metric("topologyd_service_healthy", &[("service", "web")]),
        Some(1.0)
    );
    assert_eq!(
        site.metric(
            "topologyd_service_health_transitions_total",
            &[("service", "web"), ("to", "unhealthy")]
        ),
        Some(1.0)
    );
    assert_eq!(site.metric("topologyd_health_fail_static", &[]), Some(0.0));
    let audit = std::fs::read_to_string(site.audit_log()).unwrap_or_default();
    let transitions: Vec<&str> = audit
        .lines()
        .filter(|line| line.contains("\"endpoint\":\"health\"") && line.contains("service web"))
        .collect();
    assert_eq!(transitions.len(), 2, "both transitions audited:\n{audit}");
}

#[test]
fn a_flapping_service_is_held_down_and_the_hold_down_doubles() {
    let _serial = lock();
    let site = Site::start();
    let web = prefix(WEB);
    let withdrawals_before = site.withdrawals();
    let failed_rounds_before = site
        .metric(
            "topologyd_probe_rounds_total",
            &[("service", "web"), ("result", "fail")],
        )
        .unwrap_or(0.0);

    // Phase 1: the page disappears for 2/3 of an interval, then is back for a little more than
    // one: at most one failed round in a row, never `fall`. The period (1.9 intervals) slides
    // the gap across the probe schedule by 0.1 interval per cycle, so that some rounds do land
    // in a gap.
    let (_, toggling) = Recorder::run(&site.bird, |_| {
        for _ in 0..8 {
            check(site.web.set_healthy(false), "removing the page");
            std::thread::sleep(interval() * 2 / 3);
            check(site.web.set_healthy(true), "restoring the page");
            std::thread::sleep(interval() * 37 / 30);
        }
        std::thread::sleep(interval() * FALL);
    });
    assert_eq!(
        missing_in(&toggling, web),
        0,
        "a short flicker withdrew the route"
    );
    assert_eq!(site.withdrawals(), withdrawals_before);
    let failed_rounds = site
        .metric(
            "topologyd_probe_rounds_total",
            &[("service", "web"), ("result", "fail")],
        )
        .unwrap_or(0.0);
    assert!(
        failed_rounds > failed_rounds_before,
        "the checker never saw the page missing ({failed_rounds_before} → {failed_rounds})"
    );
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(service(&health, "web")["state"], "healthy", "{health}");

    // Phase 2: down, up at once, down again right after the recovery, up at once.
    let (held_down_seen, samples) = Recorder::run(&site.bird, |recorder| {
        let mut held_down_seen = Vec::new();
        for round in 0..2 {
            check(site.web.set_healthy(false), "removing the page");
            recorder.wait_presence(web, false);
            check(site.web.set_healthy(true), "restoring the page");
            // `rise` passes come long before the hold-down ends: the service is held down.
            let held = site.wait_health("web held down", |health| {
                service(health, "web")["state"] == "held_down"
            });
            let routes = by_prefix(check(site.bird.routes(), "BIRD routes"));
            let still_held =
                service(&site.health().unwrap_or(Value::Null), "web")["state"] == "held_down";
            held_down_seen.push((round, held, routes.contains_key(&web), still_held));
            recorder.wait_presence(web, true);
        }
        held_down_seen
    });
    for (round, held, announced, still_held) in &held_down_seen {
        assert_eq!(
            service(held, "web")["action"],
            "withdraw",
            "round {round}: {held}"
        );
        // The second turn to unhealthy came right after the first recovery: a flap.
        assert_eq!(
            service(held, "web")["hold_down_ms"],
            HOLD_DOWN_MS << round,
            "round {round}: {held}"
        );
        if *still_held {
            assert!(
                !announced,
                "round {round}: announced at BIRD while held down"
            );
        }
    }
    let web_absences = absences(&samples, web);
    assert_eq!(web_absences.len(), 2, "two withdrawals: {web_absences:?}");
    let first = web_absences[0].longest().unwrap_or_default();
    let second = web_absences[1].longest().unwrap_or_default();
    eprintln!("web held down at BIRD for at most {first:?}, then {second:?}: {web_absences:?}");
    // The hold-down runs from the tracker's turn to unhealthy; the withdrawal reaches BIRD up to
    // one round of the other services later (corroboration), so BIRD misses the route for at
    // least the hold-down less one interval.
    let corroboration = interval() + PROPAGATION_SLACK;
    assert!(
        first + corroboration >= hold_down(),
        "back after at most {first:?}: before the {HOLD_DOWN_MS} ms hold-down ended"
    );
    assert!(
        second + corroboration >= hold_down() * 2,
        "a flap within the window must double the hold-down; back after at most {second:?}"
    );
    for other in [DNS, API, LOCAL] {
        assert_eq!(missing_in(&samples, prefix(other)), 0, "{other} moved");
    }
    assert_eq!(site.withdrawals() - withdrawals_before, 2);
}

#[test]
fn killing_every_service_at_once_fails_static_without_a_withdrawal() {
    let _serial = lock();
    let site = Site::start();
    let withdrawals_before = site.withdrawals();

    let (fail_static, samples) = Recorder::run(&site.bird, |_| {
        check(site.web.kill(), "killing the web server");
        check(site.dns.kill(), "killing dnsmasq");
        check(site.api.kill(), "killing the api server");
        check(site.local.kill(), "killing the local server");
        let fail_static = site.wait_health("fail static", |health| health["fail_static"] == true);
        // Several fall periods: nothing may move.
        std::thread::sleep(interval() * FALL * 4);
        let still = site.health().unwrap_or(Value::Null);
        (fail_static, still)
    });
    let (fail_static, still) = fail_static;
    for route in [WEB, DNS, API, LOCAL] {
        assert_eq!(
            missing_in(&samples, prefix(route)),
            0,
            "{route} was withdrawn"
        );
    }
    assert_eq!(
        site.withdrawals(),
        withdrawals_before,
        "BIRD received withdrawals"
    );
    assert!(
        fail_static["fail_static_reason"]
            .as_str()
            .is_some_and(|reason| !reason.is_empty()),
        "{fail_static}"
    );
    assert_eq!(still["fail_static"], true, "{still}");
    // Every tracker sees its service down; the published verdicts stay frozen at healthy.
    for name in SERVICES {
        let checked = service(&still, name);
        assert_eq!(checked["state"], "unhealthy", "{name}: {still}");
        assert_eq!(checked["observed_healthy"], false, "{name}: {still}");
        assert_eq!(checked["healthy"], true, "{name}: {still}");
        assert_ne!(checked["action"], "withdraw", "{name}: {still}");
    }
    assert_eq!(site.metric("topologyd_health_fail_static", &[]), Some(1.0));
    let audit = std::fs::read_to_string(site.audit_log()).unwrap_or_default();
    assert!(
        audit.contains("\"verdict\":\"fail_static\""),
        "fail static not in the audit log:\n{audit}"
    );
    let status = site.topoctl("status", &[]);
    assert_eq!(status["health"]["fail_static"], true, "{status}");
    let routes = by_prefix(check(site.bird.routes(), "BIRD routes"));
    assert_eq!(routes.len(), 4);
    // The api route kept its normal attributes: fail static keeps the last announcements.
    assert_eq!(
        routes[&prefix(API)].med,
        Some(20),
        "{:?}",
        routes[&prefix(API)]
    );

    // The servers come back one by one (dnsmasq restarted on the same address). With web back,
    // three of four are still down: still fail static. With dns back too, two of four: the
    // checker is evidently working, fail static ends, and only then do the services that are
    // still down take their action: api is degraded, local is held by the floor. Nothing is
    // withdrawn at any point.
    let api = prefix(API);
    let (moments, samples) = Recorder::run(&site.bird, |recorder| {
        check(site.web.restart(), "restarting the web server");
        let web_back = site.wait_health("web healthy again", |health| {
            service(health, "web")["state"] == "healthy"
        });
        check(site.dns.restart(), "restarting dnsmasq");
        let ended = site.wait_health("fail static to end", |health| {
            health["fail_static"] == false
        });
        let degraded = recorder.wait_for("api degraded", WAIT, |routes| {
            routes
                .get(&api)
                .is_some_and(|route| route.med == Some(1000))
        });
        let partial = site.wait_health("api degraded, local held by the floor", |health| {
            service(health, "api")["action"] == "degrade"
                && service(health, "local")["floor_held"] == true
        });
        check(site.api.restart(), "restarting the api server");
        check(site.local.restart(), "restarting the local server");
        site.wait_all_healthy();
        let restored = recorder.wait_for("api restored", WAIT, |routes| {
            routes.get(&api).is_some_and(|route| route.med == Some(20))
        });
        (web_back, ended, degraded, partial, restored)
    });
    let (web_back, ended, degraded, partial, restored) = moments;
    assert_eq!(web_back["fail_static"], true, "{web_back}");
    assert_eq!(service(&ended, "web")["action"], "announce", "{ended}");
    assert_eq!(service(&ended, "dns")["action"], "announce", "{ended}");
    assert!(degraded.routes[&api].communities.contains(&(13335, 666)));
    assert_eq!(
        service(&partial, "local")["action"],
        "announce",
        "{partial}"
    );
    assert_eq!(partial["fail_static"], false, "{partial}");
    assert_eq!(restored.routes.len(), 4);
    for route in [WEB, DNS, API, LOCAL] {
        assert_eq!(
            missing_in(&samples, prefix(route)),
            0,
            "{route} was withdrawn on the way out of fail static: {:?}\n--- topologyd\n{}",
            absences(&samples, prefix(route)),
            site.topologyd.log_tail()
        );
    }
    assert_eq!(site.withdrawals(), withdrawals_before);
    assert_eq!(site.metric("topologyd_health_fail_static", &[]), Some(0.0));
}

#[test]
fn a_drain_survives_a_restart_and_undrain_brings_the_service_back() {
    let _serial = lock();
    let mut site = Site::start();
    let web = prefix(WEB);

    site.topoctl("drain", &["--service", "web", "--reason", "maintenance"]);
    site.wait_routes("web drained", |routes| {
        routes.len() == 3 && !routes.contains_key(&web)
    });
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(service(&health, "web")["drained"], true, "{health}");
    assert_eq!(service(&health, "web")["healthy"], true, "{health}");
    assert_eq!(
        site.metric("topologyd_service_drained", &[("service", "web")]),
        Some(1.0)
    );
    assert_eq!(
        site.metric("topologyd_service_routes_announced", &[("service", "web")]),
        Some(0.0)
    );

    // A graceful stop and a start on the same state directory: still drained.
    let exit = check(site.topologyd.terminate(WAIT), "stopping topologyd");
    assert_eq!(exit, Some(0));
    let withdrawals_before = site.withdrawals();
    check(site.topologyd.spawn(), "restarting topologyd");
    wait_converged(&mut site.topologyd, &[&site.bird]);
    site.wait_routes("three fresh routes after the restart", |routes| {
        routes.len() == 3 && routes.values().all(|route| !route.stale)
    });
    site.wait_all_healthy();
    let (_, samples) = Recorder::run(&site.bird, |_| {
        std::thread::sleep(interval() * (RISE + FALL) * 2);
    });
    assert!(
        samples
            .iter()
            .all(|sample| !sample.routes.contains_key(&web)),
        "the restarted daemon announced the drained service"
    );
    assert_eq!(site.withdrawals(), withdrawals_before);
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(service(&health, "web")["drained"], true, "{health}");

    site.topoctl("drain", &["--service", "web", "--undrain"]);
    site.wait_routes("web back", |routes| routes.len() == 4);
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(service(&health, "web")["drained"], false, "{health}");
    assert_eq!(
        site.metric("topologyd_service_drained", &[("service", "web")]),
        Some(0.0)
    );

    // The whole location. `local` is announced from ams01 only: the floor keeps it, unless
    // --force (a global withdrawal).
    site.topoctl(
        "drain",
        &["--location", "ams01", "--reason", "location maintenance"],
    );
    site.wait_routes("only local", |routes| {
        routes.len() == 1 && routes.contains_key(&prefix(LOCAL))
    });
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(health["location_drained"], true, "{health}");
    assert_eq!(service(&health, "local")["floor_held"], true, "{health}");
    assert_eq!(service(&health, "dns")["drained"], true, "{health}");
    assert_eq!(site.metric("topologyd_location_drained", &[]), Some(1.0));
    site.topoctl(
        "drain",
        &[
            "--location",
            "ams01",
            "--force",
            "--reason",
            "location maintenance, local too",
        ],
    );
    site.wait_routes("nothing", |routes| routes.is_empty());
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(service(&health, "local")["action"], "withdraw", "{health}");
    assert_eq!(
        health["drains"]["reason"], "location maintenance, local too",
        "{health}"
    );
    assert_eq!(health["drains"]["who"], "sre-admin", "{health}");
    let audit = std::fs::read_to_string(site.audit_log()).unwrap_or_default();
    let drains = audit
        .lines()
        .filter(|line| {
            line.contains("\"POST /v1/drain\"")
                && line.contains("\"sre-admin\"")
                && line.contains("\"phase\":\"outcome\"")
        })
        .count();
    assert_eq!(drains, 4, "every drain and undrain is audited:\n{audit}");
    site.topoctl("drain", &["--undrain"]);
    site.wait_routes("every route back", |routes| routes.len() == 4);
    let health = site.health().unwrap_or(Value::Null);
    assert_eq!(health["location_drained"], false, "{health}");
    assert_eq!(site.metric("topologyd_location_drained", &[]), Some(0.0));
}

#[test]
fn a_degraded_service_stays_announced_with_a_worse_path() {
    let _serial = lock();
    let site = Site::start();
    let api = prefix(API);
    let normal =
        site.wait_routes("the api route", |routes| routes.contains_key(&api))[&api].clone();
    assert_eq!(normal.med, Some(20));
    let withdrawals_before = site.withdrawals();

    let (degraded, samples) = Recorder::run(&site.bird, |recorder| {
        // The exec check (`test -f FLAG`) fails from now on; HTTP and TCP still pass.
        check(
            std::fs::remove_file(&site.api_flag),
            "removing the api flag",
        );
        let degraded = recorder.wait_for("the api route degraded", WAIT, |routes| {
            routes
                .get(&api)
                .is_some_and(|route| route.med == Some(1000))
        });
        let health = site.wait_health("api degraded", |health| {
            service(health, "api")["action"] == "degrade"
        });
        check(
            std::fs::write(&site.api_flag, "ok\n"),
            "restoring the api flag",
        );
        recorder.wait_for("the api route restored", WAIT, |routes| {
            routes.get(&api).is_some_and(|route| route.med == Some(20))
        });
        (degraded.routes[&api].clone(), health)
    });
    let (route, health) = degraded;
    assert_eq!(
        route.as_path.len(),
        normal.as_path.len() + 3,
        "three more prepends: {route:?} vs {normal:?}"
    );
    assert!(
        route.as_path.iter().all(|asn| *asn == LOCAL_ASN),
        "{route:?}"
    );
    assert!(route.communities.contains(&(13335, 666)), "{route:?}");
    assert!(route.communities.contains(&(13335, 10002)), "{route:?}");
    let api_health = service(&health, "api");
    assert_eq!(api_health["healthy"], false, "{health}");
    assert!(
        api_health["last_round"]
            .as_array()
            .is_some_and(|round| round.iter().any(|check| check["check"]
                .as_str()
                .is_some_and(|name| name.starts_with("exec"))
                && check["result"] != "pass")),
        "{health}"
    );
    assert_eq!(
        missing_in(&samples, api),
        0,
        "a degraded service was withdrawn"
    );
    assert_eq!(site.withdrawals(), withdrawals_before);
    let restored = by_prefix(check(site.bird.routes(), "BIRD routes"));
    assert_eq!(restored[&api], normal, "the normal attributes are back");
}

#[test]
fn the_floor_keeps_a_service_announced_from_its_only_location() {
    let _serial = lock();
    let site = Site::start();
    let local = prefix(LOCAL);
    let withdrawals_before = site.withdrawals();

    let (held, samples) = Recorder::run(&site.bird, |_| {
        check(site.local.kill(), "killing the local server");
        let held = site.wait_health("the floor to hold local", |health| {
            service(health, "local")["floor_held"] == true
        });
        std::thread::sleep(interval() * FALL * 3);
        let still = site.health().unwrap_or(Value::Null);
        (held, still)
    });
    let (held, still) = held;
    assert_eq!(service(&held, "local")["healthy"], false, "{held}");
    assert_eq!(service(&still, "local")["floor_held"], true, "{still}");
    assert_eq!(service(&still, "local")["action"], "announce", "{still}");
    assert_eq!(still["fail_static"], false, "{still}");
    // A service announced from other live locations too is not held by the floor.
    assert_eq!(service(&still, "web")["floor_held"], false, "{still}");
    assert_eq!(missing_in(&samples, local), 0, "the floor let the route go");
    assert_eq!(site.withdrawals(), withdrawals_before);
    assert_eq!(
        site.metric("topologyd_service_healthy", &[("service", "local")]),
        Some(0.0)
    );
    assert_eq!(
        site.metric(
            "topologyd_service_routes_announced",
            &[("service", "local")]
        ),
        Some(1.0)
    );

    check(site.local.restart(), "restarting the local server");
    let health = site.wait_all_healthy();
    assert_eq!(service(&health, "local")["floor_held"], false, "{health}");
}

#[test]
fn metric_values_are_found_by_name_and_labels() {
    let body = "# TYPE topologyd_service_healthy gauge\n\
                topologyd_service_healthy{service=\"web\"} 1\n\
                topologyd_service_healthy{service=\"dns\"} 0\n\
                topologyd_service_health_transitions_total{service=\"web\",to=\"unhealthy\"} 2\n\
                topologyd_health_fail_static 1\n# EOF\n";
    assert_eq!(
        metric_value(body, "topologyd_service_healthy", &[("service", "dns")]),
        Some(0.0)
    );
    assert_eq!(
        metric_value(
            body,
            "topologyd_service_health_transitions_total",
            &[("to", "unhealthy"), ("service", "web")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(body, "topologyd_health_fail_static", &[]),
        Some(1.0)
    );
    assert_eq!(metric_value(body, "topologyd_health", &[]), None);
}

#[test]
fn absences_bound_the_withdrawal_and_the_return() {
    let web = prefix(WEB);
    let route = ReceivedRoute {
        prefix: web,
        as_path: vec![LOCAL_ASN],
        next_hop: std::net::IpAddr::from([192, 0, 2, 1]),
        origin: topologyd_harness::peers::Origin::Igp,
        med: None,
        local_pref: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        stale: false,
    };
    let sample = |at: u64, present: bool| Sample {
        from: Duration::from_millis(at),
        to: Duration::from_millis(at + 10),
        routes: if present {
            BTreeMap::from([(web, route.clone())])
        } else {
            BTreeMap::new()
        },
    };
    let samples = [
        sample(0, false),
        sample(100, true),
        sample(200, false),
        sample(300, false),
        sample(400, true),
        sample(500, false),
    ];
    let found = absences(&samples, web);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].withdrawn_after, Duration::from_millis(100));
    assert_eq!(found[0].withdrawn_by, Duration::from_millis(210));
    assert_eq!(found[0].longest(), Some(Duration::from_millis(310)));
    assert_eq!(found[1].back_by, None);
    assert_eq!(missing_in(&samples, web), 4);
}
