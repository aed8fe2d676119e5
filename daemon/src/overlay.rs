//! What this location really announces: the running generation's routes for this location,
//! less the services that health or a drain take out here, with the routes of degraded services
//! made less preferred. Pure and synchronous; the engine owns the inputs and publishes the result.
//!
//! Health and drains are per location and never a topology change: the running generation, its
//! plan and the runtime guard see the topology's routes ([`LocationRoutes`] from `announce.rs`);
//! this overlay only removes or degrades whole services of it.
//!
//! The floor: a service is withdrawn here (by health, or by a drain without `force`) only while
//! at least `min_other_locations` *other* live locations announce it according to the topology.
//! That is all a location can know; it cannot see the other locations' health. A withdrawal the
//! floor stops is reported as `floor_held`, and the service stays announced.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use topologyd_config::LocationState;
use topologyd_config::health::UnhealthyAction;
use topologyd_topology::Topology;

use crate::announce::{LocationRoutes, RouteIntent};
use crate::state_store::DrainState;

/// The largest total AS-path prepend a degraded route gets.
pub const MAX_DEGRADED_PREPEND: u8 = 10;

/// What this location does with one service's routes (the control API's views show it as is).
pub use topologyd_api::ServiceAction;

/// The decision for one service the topology announces at this location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDecision {
    pub action: ServiceAction,
    /// `None` when the service has no health checks (or health is disabled).
    pub healthy: Option<bool>,
    /// Drained here, by a service drain or a location drain.
    pub drained: bool,
    /// A withdrawal was wanted, and the floor kept the service announced.
    pub floor_held: bool,
    /// Other live locations announcing the service according to the topology.
    pub other_live_locations: usize,
}

/// Everything the overlay decides from.
#[derive(Debug)]
pub struct OverlayInput<'a> {
    pub topology: &'a Topology,
    pub location: &'a str,
    /// The verdict of each checked service (frozen by the health board under fail static).
    pub health: &'a BTreeMap<String, bool>,
    pub drains: &'a DrainState,
    pub min_other_locations: usize,
}

/// Decides, per service the topology announces at this location, what to do with it.
pub fn decide(input: &OverlayInput<'_>) -> BTreeMap<String, ServiceDecision> {
    let topology = input.topology;
    let Some(own_index) = topology
        .locations()
        .iter()
        .position(|location| location.name == input.location)
    else {
        return BTreeMap::new();
    };
    let mut decisions = BTreeMap::new();
    for service in topology.services() {
        if !service.announcing().contains(own_index) {
            continue;
        }
        let other_live_locations = service
            .announcing()
            .iter()
            .filter(|index| *index != own_index)
            .filter(|index| {
                topology
                    .locations()
                    .get(*index)
                    .is_some_and(|location| location.state == LocationState::Live)
            })
            .count();
        let floor_allows = other_live_locations >= input.min_other_locations;
        let service_drain = input.drains.services.get(&service.name);
        let drained = input.drains.drained || service_drain.is_some();
        let drain_forced = (input.drains.drained && input.drains.force)
            || service_drain.is_some_and(|drain| drain.force);
        let healthy = service
            .health
            .as_ref()
            .and_then(|_| input.health.get(&service.name).copied());
        let unhealthy_action = match (&service.health, healthy) {
            (Some(spec), Some(false)) => Some(&spec.on_unhealthy),
            _ => None,
        };
        let (action, floor_held) = if drained {
            if floor_allows || drain_forced {
                (ServiceAction::Withdraw, false)
            } else {
                (ServiceAction::Announce, true)
            }
        } else {
            match unhealthy_action {
                None => (ServiceAction::Announce, false),
                Some(UnhealthyAction::Degrade(_)) => (ServiceAction::Degrade, false),
                Some(UnhealthyAction::Withdraw) if floor_allows => (ServiceAction::Withdraw, false),
                Some(UnhealthyAction::Withdraw) => (ServiceAction::Announce, true),
            }
        };
        decisions.insert(
            service.name.clone(),
            ServiceDecision {
                action,
                healthy,
                drained,
                floor_held,
                other_live_locations,
            },
        );
    }
    decisions
}

/// The routes to publish: `base` less withdrawn services, degraded services' attributes worsened.
/// `version` becomes the publication counter of the result.
pub fn apply(
    base: &LocationRoutes,
    topology: &Topology,
    decisions: &BTreeMap<String, ServiceDecision>,
    version: u64,
) -> LocationRoutes {
    let action_of = |intent: &RouteIntent| {
        decisions
            .get(intent.service.as_ref())
            .map_or(ServiceAction::Announce, |decision| decision.action)
    };
    // Old intent index → new intent index (None: withdrawn).
    let mut remap: Vec<Option<u32>> = Vec::with_capacity(base.intents.len());
    let mut intents: Vec<RouteIntent> = Vec::with_capacity(base.intents.len());
    let mut index_of: HashMap<RouteIntent, u32> = HashMap::new();
    for intent in &base.intents {
        let new_intent = match action_of(intent) {
            ServiceAction::Withdraw => {
                remap.push(None);
                continue;
            }
            ServiceAction::Announce => intent.clone(),
            ServiceAction::Degrade => degraded(intent, topology),
        };
        let index = *index_of.entry(new_intent.clone()).or_insert_with(|| {
            intents.push(new_intent);
            u32::try_from(intents.len() - 1).unwrap_or(u32::MAX)
        });
        remap.push(Some(index));
    }
    // No service withdrawn and no two intents merged (the usual case: every service announced
    // as the topology says): the same route list, shared with `base` rather than copied.
    let unchanged = remap
        .iter()
        .enumerate()
        .all(|(old, new)| usize::try_from(new.unwrap_or(u32::MAX)).ok() == Some(old));
    let routes = if unchanged {
        base.routes.clone()
    } else {
        Arc::new(
            base.routes
                .iter()
                .filter_map(|(prefix, index)| {
                    remap
                        .get(*index as usize)
                        .copied()
                        .flatten()
                        .map(|new| (*prefix, new))
                })
                .collect(),
        )
    };
    LocationRoutes {
        generation: base.generation,
        version,
        routes,
        intents,
    }
}

/// `intent` made less preferred by its service's `degrade` attributes.
fn degraded(intent: &RouteIntent, topology: &Topology) -> RouteIntent {
    let mut worse = intent.clone();
    worse.degraded = true;
    let degrade = topology
        .service(&intent.service)
        .and_then(|service| service.health.as_ref())
        .and_then(|health| match &health.on_unhealthy {
            UnhealthyAction::Degrade(attributes) => Some(attributes),
            UnhealthyAction::Withdraw => None,
        });
    if let Some(degrade) = degrade {
        worse.attributes.as_path_prepend = worse
            .attributes
            .as_path_prepend
            .saturating_add(degrade.as_path_prepend)
            .min(MAX_DEGRADED_PREPEND);
        if degrade.med.is_some() {
            worse.attributes.med = degrade.med;
        }
        worse
            .attributes
            .communities
            .extend(degrade.communities.iter().copied());
        worse.attributes.communities.sort_unstable();
        worse.attributes.communities.dedup();
    }
    worse
}

/// Routes announced per service in `routes`: counted per attribute set first (an index
/// each), then summed by name, so that a route costs an increment, not a name compared in a
/// map (tens of thousands of routes at every publication, a few hundred sets).
pub fn routes_per_service(routes: &LocationRoutes) -> BTreeMap<Arc<str>, u64> {
    let mut per_intent = vec![0_u64; routes.intents.len()];
    for (_, index) in routes.routes.iter() {
        if let Some(count) = per_intent.get_mut(*index as usize) {
            *count += 1;
        }
    }
    let mut counts: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    for (intent, count) in routes.intents.iter().zip(per_intent) {
        if count > 0 {
            *counts.entry(intent.service.clone()).or_default() += count;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_store::ServiceDrain;
    use ipnet::IpNet;
    use topologyd_config::Source;
    use topologyd_topology::compile;

    const FLEET: &str = r#"
[[location]]
name = "ams01"
region = "eu"
metro = "AMS"
country = "NL"
state = "live"

[[location]]
name = "fra01"
region = "eu"
metro = "FRA"
country = "DE"
state = "live"

[[service]]
name = "web"
topology = "all"
communities = ["13335:1"]
[service.health]
on_unhealthy = "withdraw"
[[service.health.check]]
kind = "tcp"
address = "127.0.0.1:80"

[[service]]
name = "dns"
topology = "all"
med = 5
[service.health]
on_unhealthy = "degrade"
degrade = { as_path_prepend = 3, med = 1000, communities = ["13335:666"] }
[[service.health.check]]
kind = "tcp"
address = "127.0.0.1:53"

[[service]]
name = "local"
topology = "location = 'ams01'"
[service.health]
[[service.health.check]]
kind = "tcp"
address = "127.0.0.1:8080"

[[prefix]]
cidr = "192.0.2.0/24"
origin_asn = 13335
owner = "us"
advertise = true

[[binding]]
cidr = "192.0.2.0/24"
service = "web"

[[prefix]]
cidr = "198.51.100.0/24"
origin_asn = 13335
owner = "us"
advertise = true

[[binding]]
cidr = "198.51.100.0/24"
service = "dns"

[[prefix]]
cidr = "203.0.113.0/24"
origin_asn = 13335
owner = "us"
advertise = true

[[binding]]
cidr = "203.0.113.0/24"
service = "local"
"#;

    fn topology() -> Topology {
        match compile(&[Source::new("t.toml", FLEET)], 1) {
            Ok(topology) => topology,
            Err(diagnostics) => panic!("{diagnostics}"),
        }
    }

    fn base(topology: &Topology) -> LocationRoutes {
        let desired = topology.desired("ams01").expect("location");
        LocationRoutes::from_desired(1, &desired)
    }

    fn health(entries: &[(&str, bool)]) -> BTreeMap<String, bool> {
        entries
            .iter()
            .map(|(name, healthy)| ((*name).to_owned(), *healthy))
            .collect()
    }

    fn decide_with(
        topology: &Topology,
        health: &BTreeMap<String, bool>,
        drains: &DrainState,
    ) -> BTreeMap<String, ServiceDecision> {
        decide(&OverlayInput {
            topology,
            location: "ams01",
            health,
            drains,
            min_other_locations: 1,
        })
    }

    fn prefixes(routes: &LocationRoutes) -> Vec<String> {
        routes
            .routes
            .iter()
            .map(|(prefix, _)| prefix.to_string())
            .collect()
    }

    #[test]
    fn healthy_services_are_announced_unchanged() {
        let topology = topology();
        let base = base(&topology);
        let decisions = decide_with(&topology, &health(&[]), &DrainState::default());
        assert!(
            decisions
                .values()
                .all(|decision| decision.action == ServiceAction::Announce)
        );
        let published = apply(&base, &topology, &decisions, 7);
        assert_eq!(published.routes.len(), 3);
        assert_eq!(published.version, 7);
        assert_eq!(published.intents, base.intents);
        // Nothing changed: the route list is the running one, not a copy.
        assert!(Arc::ptr_eq(&published.routes, &base.routes));
    }

    /// Every combination of the services' health: the published routes are the base's less
    /// the withdrawn services', each with its service's (possibly degraded) intent; the list is
    /// shared with the base exactly when no service is withdrawn, and the base never changes.
    #[test]
    fn every_health_combination_publishes_the_base_less_withdrawn_services() {
        let topology = topology();
        let base = base(&topology);
        let before = base.clone();
        let services = ["web", "dns", "local"];
        for mask in 0..(1u32 << services.len()) {
            let verdicts: Vec<(&str, bool)> = services
                .iter()
                .enumerate()
                .map(|(bit, name)| (*name, mask & (1 << bit) == 0))
                .collect();
            let decisions = decide_with(&topology, &health(&verdicts), &DrainState::default());
            let published = apply(&base, &topology, &decisions, 1);
            let action = |service: &str| decisions.get(service).map(|decision| decision.action);
            let expected: Vec<(IpNet, &str, bool)> = base
                .routes
                .iter()
                .filter_map(|(prefix, index)| {
                    let service = base.intents[*index as usize].service.as_ref();
                    match action(service) {
                        Some(ServiceAction::Withdraw) => None,
                        Some(ServiceAction::Degrade) => Some((*prefix, service, true)),
                        _ => Some((*prefix, service, false)),
                    }
                })
                .collect();
            let got: Vec<(IpNet, &str, bool)> = published
                .routes
                .iter()
                .map(|(prefix, index)| {
                    let intent = &published.intents[*index as usize];
                    (*prefix, intent.service.as_ref(), intent.degraded)
                })
                .collect();
            assert_eq!(got, expected, "health {verdicts:?}");
            // Shared whenever no route is withdrawn (degraded services keep their routes and
            // intent indices; only the intents differ), a copy otherwise.
            let withdrawn = decisions
                .values()
                .any(|decision| decision.action == ServiceAction::Withdraw);
            assert_eq!(
                Arc::ptr_eq(&published.routes, &base.routes),
                !withdrawn,
                "health {verdicts:?}"
            );
            assert_eq!(base, before);
        }
    }

    #[test]
    fn unhealthy_withdraw_service_is_withdrawn_and_degrade_service_degraded() {
        let topology = topology();
        let base = base(&topology);
        let decisions = decide_with(
            &topology,
            &health(&[("web", false), ("dns", false), ("local", true)]),
            &DrainState::default(),
        );
        assert_eq!(decisions["web"].action, ServiceAction::Withdraw);
        assert_eq!(decisions["dns"].action, ServiceAction::Degrade);
        let published = apply(&base, &topology, &decisions, 2);
        assert_eq!(
            prefixes(&published),
            vec!["198.51.100.0/24", "203.0.113.0/24"]
        );
        let dns = published
            .intents
            .iter()
            .find(|intent| intent.service.as_ref() == "dns")
            .expect("dns intent");
        assert!(dns.degraded);
        assert_eq!(dns.attributes.as_path_prepend, 3);
        assert_eq!(dns.attributes.med, Some(1000));
        assert!(
            dns.attributes
                .communities
                .contains(&topologyd_config::Community(13335, 666))
        );
    }

    #[test]
    fn the_floor_keeps_a_service_announced_nowhere_else() {
        let topology = topology();
        let decisions = decide_with(
            &topology,
            &health(&[("local", false)]),
            &DrainState::default(),
        );
        let local = &decisions["local"];
        assert_eq!(local.action, ServiceAction::Announce);
        assert!(local.floor_held);
        assert_eq!(local.other_live_locations, 0);
        assert_eq!(decisions["web"].other_live_locations, 1);
    }

    #[test]
    fn drains_withdraw_within_the_floor_unless_forced() {
        let topology = topology();
        let base = base(&topology);
        let mut drains = DrainState {
            drained: true,
            ..DrainState::default()
        };
        let decisions = decide_with(&topology, &health(&[]), &drains);
        assert_eq!(decisions["web"].action, ServiceAction::Withdraw);
        assert_eq!(decisions["dns"].action, ServiceAction::Withdraw);
        assert!(decisions["local"].floor_held);
        assert_eq!(
            prefixes(&apply(&base, &topology, &decisions, 1)),
            vec!["203.0.113.0/24"]
        );
        drains.force = true;
        let decisions = decide_with(&topology, &health(&[]), &drains);
        assert!(apply(&base, &topology, &decisions, 1).routes.is_empty());

        let only_web = DrainState {
            services: BTreeMap::from([("web".to_owned(), ServiceDrain::default())]),
            ..DrainState::default()
        };
        let decisions = decide_with(&topology, &health(&[]), &only_web);
        assert_eq!(
            prefixes(&apply(&base, &topology, &decisions, 1)),
            vec!["198.51.100.0/24", "203.0.113.0/24"]
        );
    }

    #[test]
    fn routes_are_counted_per_service() {
        let topology = topology();
        let counts = routes_per_service(&base(&topology));
        assert_eq!(counts.get("web"), Some(&1));
        assert_eq!(counts.len(), 3);
        // Two attribute sets of one service (one degraded) count together; a set no route
        // uses names no service, and a route naming no set is not counted.
        let intent = |service: &str, degraded: bool| crate::announce::RouteIntent {
            origin_asn: 13335,
            attributes: topologyd_topology::RouteAttributes::default(),
            service: Arc::from(service),
            degraded,
        };
        let net = |third: u32| {
            IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0A00_0000 | (third << 8)), 24)
                    .unwrap_or_else(|_| unreachable!()),
            )
        };
        let routes = LocationRoutes {
            routes: Arc::new(vec![
                (net(0), 0),
                (net(1), 2),
                (net(2), 0),
                (net(3), 1),
                (net(4), 9),
            ]),
            intents: vec![
                intent("web", false),
                intent("dns", false),
                intent("web", true),
                intent("idle", false),
            ],
            ..LocationRoutes::default()
        };
        assert_eq!(
            routes_per_service(&routes),
            BTreeMap::from([(Arc::from("dns"), 1), (Arc::from("web"), 3)])
        );
    }
}
