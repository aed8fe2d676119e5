//! End to end: systemd's notify protocol (sd_notify(3)) as `Type=notify` with `WatchdogSec`
//! sees it. The test binds the unix datagram socket systemd would, passes it in
//! `NOTIFY_SOCKET` with `WATCHDOG_USEC`, and runs the real `topologyd`:
//!
//! - `READY=1` once the daemon serves, never gated on the routers: of three peers one is
//!   unreachable (nothing listens at its address) and the two BIRDs start only after READY=1;
//!   the daemon then serves both BIRDs, `/ready` answers 200 and `STATUS=` says how many peers
//!   are up;
//! - with every peer down `/ready` answers 503 with the reason, `STATUS=` says so and the process
//!   keeps running (and serving `/live`); one BIRD back makes it ready again;
//! - a SIGHUP reload sends `RELOADING=1` (with `MONOTONIC_USEC`) and READY=1 again;
//! - `WATCHDOG=1` pings at least every half `WATCHDOG_USEC` throughout;
//! - SIGTERM sends `STOPPING=1` and the daemon exits 0.

use topologyd_harness::daemon_fixture;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use daemon_fixture::{AMS01_ROUTES, LOCAL_ASN, WAIT, bird_spec, check, topology, wait_for_routes};
use topologyd_harness::peers::{BirdPeer, PeerSpec};
use topologyd_harness::topologyd::{DaemonConfig, NeighborConfig, Topologyd, wait_until};

/// One datagram and when it arrived.
#[derive(Debug, Clone)]
struct Notification {
    at: Instant,
    text: String,
}

/// The socket systemd would listen on, and everything received so far.
struct NotifySocket {
    socket: UnixDatagram,
    received: Vec<Notification>,
    _directory: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> (NotifySocket, String) {
        let directory = check(tempfile::tempdir(), "a directory for the socket");
        let path = directory.path().join("notify.sock");
        let socket = check(UnixDatagram::bind(&path), "binding the notify socket");
        check(
            socket.set_read_timeout(Some(Duration::from_millis(100))),
            "setting a read timeout",
        );
        let listener = NotifySocket {
            socket,
            received: Vec::new(),
            _directory: directory,
        };
        (listener, path.display().to_string())
    }

    /// Reads every datagram that arrives within `duration`.
    fn receive_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            self.receive_one();
        }
    }

    fn receive_one(&mut self) -> Option<Notification> {
        let mut buffer = [0u8; 4096];
        match self.socket.recv(&mut buffer) {
            Ok(length) => {
                let notification = Notification {
                    at: Instant::now(),
                    text: String::from_utf8_lossy(&buffer[..length]).into_owned(),
                };
                self.received.push(notification.clone());
                Some(notification)
            }
            Err(_) => None,
        }
    }

    /// Reads until a datagram has the line `field`; returns it.
    fn wait_for(&mut self, field: &str, timeout: Duration) -> Notification {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(notification) = self.receive_one()
                && notification.text.lines().any(|line| line == field)
            {
                return notification;
            }
        }
        panic!(
            "no {field} within {timeout:?}; received: {:?}",
            self.texts()
        );
    }

    /// Reads until a datagram has a line starting with `prefix` and containing `text`.
    fn wait_for_line(&mut self, prefix: &str, text: &str, timeout: Duration) -> String {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Some(notification) = self.receive_one()
                && let Some(line) = notification
                    .text
                    .lines()
                    .find(|line| line.starts_with(prefix) && line.contains(text))
            {
                return line.to_string();
            }
        }
        panic!(
            "no {prefix}…{text} within {timeout:?}; received: {:?}",
            self.texts()
        );
    }

    fn count(&self, field: &str, after: Instant) -> usize {
        self.received
            .iter()
            .filter(|notification| notification.at >= after)
            .filter(|notification| notification.text.lines().any(|line| line == field))
            .count()
    }

    fn texts(&self) -> Vec<&str> {
        self.received
            .iter()
            .map(|notification| notification.text.as_str())
            .collect()
    }
}

fn bird_endpoint() -> SocketAddr {
    let address = topologyd_harness::peers::alloc::loopback_v4();
    SocketAddr::new(
        IpAddr::V4(address),
        topologyd_harness::peers::alloc::free_port(IpAddr::V4(address)),
    )
}

/// Waits until `/ready` answers `status` with a body starting with `start`; returns the body.
fn wait_ready_status(topologyd: &Topologyd, status: u16, start: &str) -> String {
    check(
        wait_until(
            &format!("/ready to answer {status} {start}"),
            WAIT,
            || match topologyd.admin_get("/ready") {
                Ok((answer, body)) if answer == status && body.starts_with(start) => Ok(body),
                Ok((answer, body)) => Err(format!("{answer} {body}")),
                Err(error) => Err(error.to_string()),
            },
        ),
        "GET /ready",
    )
}

#[test]
fn ready_once_serving_with_a_router_down_unready_when_all_are_down_watchdog_and_stopping() {
    let (mut notify, socket_path) = NotifySocket::bind();
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let endpoints = [bird_endpoint(), bird_endpoint()];
    for (index, endpoint) in endpoints.iter().enumerate() {
        daemon.neighbors.push(NeighborConfig::new(
            &format!("edge-bird-{index}"),
            *endpoint,
            daemon_fixture::BIRD_ASN,
        ));
    }
    // Nothing ever listens here: the router down for maintenance.
    daemon.neighbors.push(NeighborConfig::new(
        "edge-maintenance",
        bird_endpoint(),
        daemon_fixture::BIRD_ASN,
    ));
    let specs: Vec<PeerSpec> = endpoints
        .iter()
        .map(|endpoint| bird_spec(&daemon, *endpoint))
        .collect();
    let mut topologyd = check(
        Topologyd::start_with_environment(
            daemon,
            &topology(),
            &[
                ("NOTIFY_SOCKET", &socket_path),
                ("WATCHDOG_USEC", "1000000"),
            ],
        ),
        "starting topologyd",
    );
    let started = Instant::now();

    // No router is up, yet the start is complete: READY=1 with a status.
    let ready = notify.wait_for("READY=1", WAIT);
    assert!(
        ready
            .text
            .contains("STATUS=generation 1 loaded, 3 peers starting"),
        "{ready:?}"
    );
    eprintln!(
        "READY=1 {:?} after the start, with every router down",
        ready.at - started
    );
    let body = wait_ready_status(
        &topologyd,
        503,
        "not ready: 0 of 3 peers hold generation 1 (at least 1 needed)",
    );
    assert!(body.contains("edge-maintenance: "), "{body}");

    // Two of three routers come up: both are served, the third stays down.
    let birds: Vec<BirdPeer> = specs
        .iter()
        .map(|spec| check(BirdPeer::start(spec.clone()), "starting BIRD"))
        .collect();
    for bird in &birds {
        wait_for_routes(bird, AMS01_ROUTES);
    }
    wait_ready_status(&topologyd, 200, "ready: 2 of 3 peers hold generation 1");
    let status = notify.wait_for_line(
        "STATUS=",
        "2 of 3 peers Established, 2 hold the running generation; ready",
        WAIT,
    );
    eprintln!("{status}");

    // A reload: RELOADING=1, then READY=1 again.
    check(topologyd.signal("HUP"), "SIGHUP");
    let reloading = notify.wait_for("RELOADING=1", WAIT);
    assert!(
        reloading.text.contains("MONOTONIC_USEC="),
        "RELOADING=1 needs MONOTONIC_USEC: {reloading:?}"
    );
    let after_reload = notify.wait_for("READY=1", WAIT);
    assert!(after_reload.at >= reloading.at);

    // Every router down: not ready, with the reason; the process keeps running.
    drop(birds);
    let body = wait_ready_status(
        &topologyd,
        503,
        "not ready: 0 of 3 peers hold generation 1 (at least 1 needed)",
    );
    for name in ["edge-bird-0", "edge-bird-1", "edge-maintenance"] {
        assert!(body.contains(&format!("; {name}: ")), "{body}");
    }
    notify.wait_for_line(
        "STATUS=",
        "0 of 3 peers Established, 0 hold the running generation; not ready",
        WAIT,
    );
    let unready_at = Instant::now();
    notify.receive_for(Duration::from_secs(2));
    check(topologyd.check_running(), "topologyd after every peer went");
    assert_eq!(check(topologyd.admin_get("/live"), "GET /live").0, 200);
    assert!(
        notify.count("WATCHDOG=1", unready_at) >= 3,
        "WATCHDOG_USEC=1000000 wants a ping at least every 500 ms: {:?}",
        notify.texts()
    );

    // One router back: ready again.
    let bird = check(BirdPeer::start(specs[0].clone()), "starting BIRD again");
    wait_for_routes(&bird, AMS01_ROUTES);
    wait_ready_status(&topologyd, 200, "ready: 1 of 3 peers hold generation 1");

    check(topologyd.signal("TERM"), "SIGTERM");
    notify.wait_for("STOPPING=1", WAIT);
    let exit = check(topologyd.terminate(WAIT), "waiting for the exit");
    assert_eq!(exit, Some(0), "{}", topologyd.log_tail());
}
