//! End to end: systemd's notify protocol (sd_notify(3)) as `Type=notify` with `WatchdogSec`
//! sees it. The test binds the unix datagram socket systemd would, passes it in
//! `NOTIFY_SOCKET` with `WATCHDOG_USEC`, and runs the real `topologyd`:
//!
//! - `READY=1` only after the first convergence: BIRD starts *after* topologyd, and no READY
//!   arrives while it is down, not even after a SIGHUP reload (`RELOADING=1`); once BIRD is
//!   up, READY arrives and BIRD holds every route;
//! - `WATCHDOG=1` pings at least every half `WATCHDOG_USEC`, before and after READY;
//! - SIGTERM sends `STOPPING=1` and the daemon exits 0.

mod daemon_common;

use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use daemon_common::{AMS01_ROUTES, LOCAL_ASN, WAIT, bird_spec, check, topology, wait_for_routes};
use topologyd_suite::peers::BirdPeer;
use topologyd_suite::topologyd::{DaemonConfig, NeighborConfig, Topologyd};

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

#[test]
fn ready_only_after_first_convergence_then_watchdog_pings_and_stopping_on_sigterm() {
    let (mut notify, socket_path) = NotifySocket::bind();
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let bird_address = topologyd_suite::peers::alloc::loopback_v4();
    let bird_endpoint = SocketAddr::new(
        IpAddr::V4(bird_address),
        topologyd_suite::peers::alloc::free_port(IpAddr::V4(bird_address)),
    );
    daemon.neighbors.push(NeighborConfig::new(
        "edge-bird",
        bird_endpoint,
        daemon_common::BIRD_ASN,
    ));
    let spec = bird_spec(&daemon, bird_endpoint);
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

    // BIRD is not running: the daemon is alive (watchdog pings) but not ready.
    // A reload meanwhile (RELOADING=1) must not end the start-up with a READY=1 either.
    let started = Instant::now();
    notify.wait_for("WATCHDOG=1", WAIT);
    check(topologyd.signal("HUP"), "SIGHUP");
    let reloading = notify.wait_for("RELOADING=1", WAIT);
    assert!(
        reloading.text.contains("MONOTONIC_USEC="),
        "RELOADING=1 needs MONOTONIC_USEC: {reloading:?}"
    );
    notify.receive_for(Duration::from_secs(2));
    check(topologyd.check_running(), "topologyd");
    assert_eq!(
        notify.count("READY=1", started),
        0,
        "READY=1 before any peer was up: {:?}",
        notify.texts()
    );
    assert!(
        notify.count("WATCHDOG=1", started) >= 3,
        "WATCHDOG_USEC=1000000 wants a ping at least every 500 ms: {:?}",
        notify.texts()
    );
    let (status, _) = check(topologyd.admin_get("/ready"), "GET /ready");
    assert_ne!(status, 200, "/ready before the first convergence");

    let bird_started = Instant::now();
    let bird = check(BirdPeer::start(spec), "starting BIRD");
    let ready = notify.wait_for("READY=1", WAIT);
    assert!(ready.at > bird_started, "READY=1 before BIRD ran");
    // READY means every route was written to the session; BIRD has them (or is parsing them).
    wait_for_routes(&bird, AMS01_ROUTES);
    let (status, _) = check(topologyd.admin_get("/ready"), "GET /ready");
    assert_eq!(status, 200, "/ready after READY=1");

    let after_ready = Instant::now();
    notify.receive_for(Duration::from_millis(1600));
    assert!(
        notify.count("WATCHDOG=1", after_ready) >= 2,
        "watchdog pings stopped after READY: {:?}",
        notify.texts()
    );

    check(topologyd.signal("TERM"), "SIGTERM");
    notify.wait_for("STOPPING=1", WAIT);
    let exit = check(topologyd.terminate(WAIT), "waiting for the exit");
    assert_eq!(exit, Some(0), "{}", topologyd.log_tail());
}
