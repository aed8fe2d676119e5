//! The fixture of the `tests/daemon_*.rs` end-to-end tests (and of the interoperability
//! scenarios, [`crate::interop`]): the example topology (two locations, three services, a split
//! BYOIP prefix), BIRD launched as a passive neighbor of the daemon under test, and small helpers
//! that turn harness errors into test failures with context.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::peers::{BgpPeer, BirdPeer, Family, GracefulRestart, PeerSpec, ReceivedRoute};
use crate::topologyd::{DaemonConfig, NeighborConfig, Topologyd};
use ipnet::IpNet;

pub const LOCAL_ASN: u32 = 13335;
pub const BIRD_ASN: u32 = 64512;
/// Generous: a loaded CI machine runs many daemons (and compilers) at once, and topologyd's
/// connect retries back off exponentially (1 s, 2 s, 4 s, … after `connect_retry_seconds = 1`).
pub const WAIT: Duration = Duration::from_secs(60);

pub const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
tags = ["canary"]
state = "live"

[[location]]
name = "fra01"
region = "eu"
metro = "FRA"
country = "DE"
state = "live"
"#;

pub const SERVICES: &str = r#"
[[service]]
name = "resolver"
topology = "all"
communities = ["13335:10000"]
large_communities = ["13335:1:100"]

[[service]]
name = "cdn"
topology = "region = \"eu\""
communities = ["13335:20000", "65000:1"]
med = 50
as_path_prepend = 2

[[service]]
name = "fra-only"
topology = "location = \"fra01\""
"#;

pub const PREFIXES: &str = r#"
[[prefix]]
cidr = "1.1.1.0/24"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "1.1.1.0/24"
service = "resolver"

[[prefix]]
cidr = "2606:4700:4700::/48"
origin_asn = 13335
owner = "resolver"
advertise = true

[[binding]]
cidr = "2606:4700:4700::/48"
service = "resolver"

[[prefix]]
cidr = "198.51.100.0/22"
origin_asn = 64999
owner = "byoip-customer"
advertise = true
announce = { split = 24 }

[[binding]]
cidr = "198.51.100.0/22"
service = "cdn"

[[prefix]]
cidr = "203.0.113.0/24"
origin_asn = 13335
owner = "ops"
advertise = true

[[binding]]
cidr = "203.0.113.0/24"
service = "fra-only"
"#;

/// Routes ams01 announces with [`topology`]: the resolver's /24 and /48, the four /24s of the
/// split BYOIP /22.
pub const AMS01_ROUTES: usize = 6;
pub const AMS01_IPV4_ROUTES: usize = 5;
pub const AMS01_IPV6_ROUTES: usize = 1;

/// The three topology files, as `(name, text)`.
pub fn topology() -> Vec<(&'static str, &'static str)> {
    vec![
        ("fleet.toml", FLEET),
        ("services.toml", SERVICES),
        ("prefixes.toml", PREFIXES),
    ]
}

/// A panic message with context for a failed harness call.
pub fn check<T, E: Display>(result: Result<T, E>, context: &str) -> T {
    result.unwrap_or_else(|error| panic!("{context}: {error}"))
}

pub fn prefix(text: &str) -> IpNet {
    check(text.parse(), text)
}

pub fn by_prefix(routes: Vec<ReceivedRoute>) -> BTreeMap<IpNet, ReceivedRoute> {
    routes
        .into_iter()
        .map(|route| (route.prefix, route))
        .collect()
}

/// A BIRD waiting (passive) for `daemon` to connect, and the neighbor entry for the daemon's
/// configuration (named `name`). The neighbor is not added to `daemon`.
pub fn start_bird(daemon: &DaemonConfig, name: &str) -> (BirdPeer, NeighborConfig) {
    let address = crate::peers::alloc::loopback_v4();
    let endpoint = SocketAddr::new(
        IpAddr::V4(address),
        crate::peers::alloc::free_port(IpAddr::V4(address)),
    );
    let bird = check(
        BirdPeer::start(bird_spec(daemon, endpoint)),
        "starting BIRD",
    );
    (bird, NeighborConfig::new(name, endpoint, BIRD_ASN))
}

/// The spec of a passive BIRD at `endpoint` for `daemon`, with graceful restart.
pub fn bird_spec(daemon: &DaemonConfig, endpoint: SocketAddr) -> PeerSpec {
    PeerSpec::new(BIRD_ASN, endpoint, LOCAL_ASN, daemon.local)
        .families(vec![Family::Ipv4Unicast, Family::Ipv6Unicast])
        .passive(true)
        .hold_time(30)
        .graceful_restart(Some(GracefulRestart {
            restart_time: 120,
            stale_time: 360,
        }))
}

/// Waits until BIRD holds exactly `count` routes from the daemon, and returns them by prefix.
pub fn wait_for_routes(bird: &BirdPeer, count: usize) -> BTreeMap<IpNet, ReceivedRoute> {
    check(
        bird.wait_for(|routes| routes.len() == count, WAIT),
        &format!("BIRD never held {count} routes"),
    );
    by_prefix(check(bird.routes(), "BIRD routes"))
}

/// Waits for topologyd's first convergence; on failure the panic shows what each BIRD thinks
/// of the session, next to topologyd's log.
pub fn wait_converged(topologyd: &mut Topologyd, birds: &[&BirdPeer]) {
    if let Err(error) = topologyd.wait_ready(WAIT) {
        let mut report = format!("topologyd never converged: {error}");
        for bird in birds {
            let protocol = bird
                .birdc(&["show", "protocols", "all"])
                .unwrap_or_else(|error| error.to_string());
            report.push_str(&format!(
                "\n--- BIRD show protocols all\n{protocol}\n--- BIRD log\n{}",
                bird.log_tail()
            ));
        }
        panic!("{report}");
    }
}
