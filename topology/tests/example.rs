//! The shipped example under examples/topology/ compiles without errors or warnings, and
//! answers the questions the README walks through.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::PathBuf;

use topologyd_config::load_sources;
use topologyd_topology::compile;

fn example() -> topologyd_topology::Topology {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/topology");
    let paths: Vec<PathBuf> = ["fleet.toml", "services.toml", "prefixes.toml"]
        .iter()
        .map(|name| directory.join(name))
        .collect();
    let sources = load_sources(&paths).unwrap();
    match compile(&sources, 1) {
        Ok(topology) => topology,
        Err(diagnostics) => panic!("{diagnostics}"),
    }
}

#[test]
fn example_compiles_cleanly() {
    let topology = example();
    let warnings: Vec<String> = topology
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert_eq!(topology.locations().len(), 11);
    assert_eq!(topology.services().len(), 5);
}

#[test]
fn example_desired_routes_per_location() {
    let topology = example();
    let prefixes = |location: &str| -> Vec<String> {
        topology
            .desired(location)
            .unwrap()
            .iter()
            .map(|route| format!("{} {}", route.prefix, route.service))
            .collect()
    };
    assert_eq!(
        prefixes("ams01"),
        [
            "1.0.0.0/24 resolver",
            "1.1.1.0/24 resolver",
            "192.0.2.0/24 spectrum",
            "198.51.100.0/24 cdn",
            "198.51.101.0/24 spectrum",
            "2606:4700:4700::/48 resolver",
        ]
    );
    assert!(prefixes("lhr01").contains(&"2001:db8:100::/48 canary-lab".to_string()));
    assert_eq!(prefixes("tst01"), ["2001:db8:100::/48 canary-lab"]);
    assert!(prefixes("syd01").is_empty());
    assert!(topology.desired("nowhere").is_err());
    let desired = topology.desired("sjc01").unwrap();
    let route = desired
        .iter()
        .find(|route| route.service == "canary-lab")
        .unwrap();
    assert_eq!(route.attributes.as_path_prepend, 2);
    assert_eq!(route.origin_asn, 13335);
    let json = serde_json::to_string(&topology.desired("ams01").unwrap()[1]).unwrap();
    assert_eq!(
        json,
        r#"{"prefix":"1.1.1.0/24","origin_asn":13335,"attributes":{"communities":["13335:10000"],"large_communities":["13335:1:100"],"med":null,"as_path_prepend":0},"binding":"1.1.1.0/24","service":"resolver"}"#
    );
    let back: topologyd_topology::AnnouncedRoute = serde_json::from_str(&json).unwrap();
    assert_eq!(back, topology.desired("ams01").unwrap()[1].to_announced());
}

#[test]
fn example_explains_addresses() {
    let topology = example();
    let explanation = topology.explain("192.0.2.200".parse::<IpAddr>().unwrap());
    assert_eq!(explanation.service.as_deref(), Some("cdn"));
    assert_eq!(explanation.route_service.as_deref(), Some("spectrum"));
    assert_eq!(explanation.announced_at.len(), 9);
    assert!(
        explanation
            .binding_location
            .unwrap()
            .to_string()
            .ends_with("prefixes.toml:68:8"),
        "{:?}",
        explanation.reasons
    );
    let explanation = topology.explain("203.0.113.9".parse::<IpAddr>().unwrap());
    assert_eq!(explanation.service.as_deref(), Some("dls-eu"));
    assert!(explanation.route.is_none());
    assert!(
        explanation
            .reasons
            .iter()
            .any(|reason| reason.contains("advertise = false"))
    );
    let explanation = topology.explain("10.0.0.1".parse::<IpAddr>().unwrap());
    assert!(explanation.prefix.is_none());
}
