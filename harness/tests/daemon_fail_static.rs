//! End to end: fail static on start. `bootstrap_topology` is only for the very first start;
//! once the state directory holds a generation, a restarted daemon announces that generation,
//! even when the bootstrap files have since become invalid (or say something else).
//!
//! The daemon bootstraps generation 1, a push through the control API makes generation 2 (one
//! more route), the daemon is killed, its bootstrap files are overwritten with garbage, and it
//! is started again: it comes up on generation 2 and BIRD keeps all seven routes without a
//! single withdrawal.

use topologyd_harness::daemon_fixture;

use daemon_fixture::{
    AMS01_ROUTES, FLEET, LOCAL_ASN, PREFIXES, SERVICES, WAIT, check, start_bird, topology,
    wait_for_routes,
};
use topologyd_harness::peers::BgpPeer;
use topologyd_harness::topologyd::{
    ControlPki, ControlSection, DaemonConfig, Topoctl, Topologyd, wait_until, write_files,
};

const ADDED_PREFIX: &str = "\n[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 13335\nowner = \"resolver\"\nadvertise = true\n\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"resolver\"\n";

#[test]
fn a_stored_generation_wins_over_invalid_bootstrap_files_on_restart() {
    let pki = check(ControlPki::generate(), "generating the PKI");
    let mut daemon = DaemonConfig::new("ams01", LOCAL_ASN);
    let control = ControlSection::new(daemon.local.ip(), &pki, &[("sre-admin", "admin")]);
    let admin = Topoctl::new(
        control.listen,
        &pki.ca,
        check(pki.client("sre-admin"), "a client certificate"),
    );
    daemon.control = Some(control);
    let (bird, neighbor) = start_bird(&daemon, "edge-bird");
    daemon.neighbors.push(neighbor);
    let mut topologyd = check(Topologyd::start(daemon, &topology()), "starting topologyd");
    daemon_fixture::wait_converged(&mut topologyd, &[&bird]);
    wait_for_routes(&bird, AMS01_ROUTES);

    let bundle = check(tempfile::tempdir(), "a bundle directory");
    let prefixes = format!("{PREFIXES}{ADDED_PREFIX}");
    let files = check(
        write_files(
            bundle.path(),
            &[
                ("fleet.toml", FLEET),
                ("services.toml", SERVICES),
                ("prefixes.toml", &prefixes),
            ],
        ),
        "writing the bundle",
    );
    let arguments: Vec<String> = files
        .iter()
        .map(|path| path.display().to_string())
        .collect();
    let push = check(admin.run("push", &arguments), "topoctl push");
    assert_eq!(push.code, Some(2), "changes made: {push}");
    let before = wait_for_routes(&bird, AMS01_ROUTES + 1);
    let counters_before = check(bird.counters(), "BIRD counters");

    check(topologyd.kill(), "SIGKILL");
    let topology_dir = topologyd.directory().join("topology");
    for name in ["fleet.toml", "services.toml", "prefixes.toml"] {
        check(
            std::fs::write(
                topology_dir.join(name),
                "[[location]\nthis is not TOML = \n",
            ),
            "corrupting a bootstrap file",
        );
    }
    check(topologyd.spawn(), "restarting topologyd");
    check(
        topologyd.wait_ready(WAIT),
        "topologyd did not come up on its stored generation",
    );
    let status = check(admin.run("status", &Vec::<String>::new()), "topoctl status");
    let status = check(status.json(), "status");
    assert_eq!(status["generation"], 2, "{status}");
    check(
        wait_until("BIRD's routes to be fresh again", WAIT, || {
            let routes = bird.routes().map_err(|error| error.to_string())?;
            if routes.len() == AMS01_ROUTES + 1 && routes.iter().all(|route| !route.stale) {
                Ok(())
            } else {
                Err(format!("{routes:?}"))
            }
        }),
        "BIRD",
    );
    let after = daemon_fixture::by_prefix(check(bird.routes(), "BIRD routes"));
    assert_eq!(after, before, "the restarted daemon announces generation 2");
    let counters_after = check(bird.counters(), "BIRD counters");
    assert_eq!(counters_after.withdrawals, counters_before.withdrawals);
    assert_eq!(counters_after.removed, counters_before.removed);
}
