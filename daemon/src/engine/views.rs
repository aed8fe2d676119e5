//! The engine's answers to the control API's read-only queries (`GET /v1/status`,
//! `/v1/routes`, `/v1/health`): views over the engine's state, built on the engine task.
//!
//! Must not touch: the engine's state (these only read it).

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde_json::{Value, json};
use topologyd_config::daemon::{Family, PeerConfig};

use super::Engine;
use crate::announce::PeerRouteContext;
use crate::engine_api::{EngineError, EngineErrorKind};
use crate::overlay::{self, ServiceAction};

impl Engine {
    pub(super) fn status_json(&self) -> Value {
        let (ipv4, ipv6) = self.routes.borrow().count_by_family();
        let (topology_ipv4, topology_ipv6) = self.running.routes.count_by_family();
        json!({
            "location": self.config.location,
            "generation": self.running.meta.generation,
            "hash": self.running.meta.hash,
            "applied_at": self.running.meta.applied_at,
            "applied_by": self.running.meta.who,
            "ready": self.readiness.is_ready(),
            "ready_reason": self.readiness.state().reason,
            "routes": { "ipv4": ipv4, "ipv6": ipv6 },
            "routes_topology": { "ipv4": topology_ipv4, "ipv6": topology_ipv6 },
            "published_version": self.publish_version,
            "runtime_guard_refusals": self.runtime_guard_refusals,
            "health": {
                "fail_static": self.health_fail_static,
                "location_drained": self.drains.drained,
                "unhealthy": self.decisions.iter().filter(|(_, decision)| decision.healthy == Some(false)).map(|(name, _)| name.clone()).collect::<Vec<_>>(),
                "drained": self.decisions.iter().filter(|(_, decision)| decision.drained).map(|(name, _)| name.clone()).collect::<Vec<_>>(),
                "withdrawn": self.decisions.iter().filter(|(_, decision)| decision.action == ServiceAction::Withdraw).map(|(name, _)| name.clone()).collect::<Vec<_>>(),
                "degraded": self.decisions.iter().filter(|(_, decision)| decision.action == ServiceAction::Degrade).map(|(name, _)| name.clone()).collect::<Vec<_>>(),
            },
            "peers": self.peer_statuses(),
        })
    }

    pub(super) fn routes_json(&self, peer: Option<&str>) -> Result<Value, EngineError> {
        let selected: Vec<&PeerConfig> = match peer {
            Some(name) => {
                let found: Vec<&PeerConfig> = self
                    .config
                    .peers
                    .iter()
                    .filter(|candidate| {
                        candidate.name == name || candidate.address.to_string() == name
                    })
                    .collect();
                if found.is_empty() {
                    return Err(self.error(
                        EngineErrorKind::NotFound,
                        format!("no peer named `{name}`"),
                        Value::Null,
                    ));
                }
                found
            }
            None => self.config.peers.iter().collect(),
        };
        let routes = self.routes.borrow().clone();
        let mut peers = serde_json::Map::new();
        for peer in selected {
            let status = self
                .peers
                .get(&peer.name)
                .map(|handle| handle.status.borrow().clone());
            let context = PeerRouteContext {
                local_asn: self.config.local_asn,
                peer_asn: peer.asn,
                ipv4_next_hop: peer.ipv4_next_hop(),
                ipv6_next_hop: peer.ipv6_next_hop(),
            };
            let list: Vec<Value> = routes
                .routes
                .iter()
                .filter(|(prefix, _)| match prefix {
                    IpNet::V4(_) => peer.families.contains(&Family::Ipv4),
                    IpNet::V6(_) => peer.families.contains(&Family::Ipv6),
                })
                .filter_map(|(prefix, index)| {
                    let intent = routes.intent(*index)?;
                    let attributes = context.path_attributes(intent);
                    Some(json!({
                        "prefix": prefix.to_string(),
                        "service": intent.service.as_ref(),
                        "degraded": intent.degraded,
                        "as_path": attributes.as_path.iter().map(|segment| format!("{segment:?}")).collect::<Vec<_>>(),
                        "med": attributes.med,
                        "communities": intent.attributes.communities.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "large_communities": intent.attributes.large_communities.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    }))
                })
                .collect();
            peers.insert(
                peer.name.clone(),
                json!({
                    "families": peer.families,
                    "established": status.as_ref().is_some_and(|status| status.established),
                    "generation_synced": status.as_ref().and_then(|status| status.generation_synced),
                    "routes": list,
                }),
            );
        }
        Ok(json!({ "generation": self.running.meta.generation, "peers": peers }))
    }

    /// The health document of `GET /v1/health`.
    pub(super) fn health_json(&self) -> Value {
        let published = self.routes.borrow().clone();
        let counts = overlay::routes_per_service(&published);
        let view_services = self.health_view.get("services");
        let services: serde_json::Map<String, Value> = self
            .decisions
            .iter()
            .map(|(name, decision)| {
                let view = view_services.and_then(|services| services.get(name));
                let mut entry = json!({
                    "checked": decision.healthy.is_some(),
                    "healthy": decision.healthy.unwrap_or(true),
                    "action": decision.action.as_str(),
                    "drained": decision.drained,
                    "floor_held": decision.floor_held,
                    "other_live_locations": decision.other_live_locations,
                    "routes_announced": counts.get(name.as_str()).copied().unwrap_or(0),
                    "state": if decision.healthy.is_some() { "unknown" } else { "unchecked" },
                });
                if let (Some(Value::Object(view)), Value::Object(entry)) = (view, &mut entry) {
                    for (key, value) in view {
                        entry.entry(key.clone()).or_insert_with(|| value.clone());
                        if key == "state" {
                            entry.insert(key.clone(), value.clone());
                        }
                    }
                }
                (name.clone(), entry)
            })
            .collect();
        json!({
            "location": self.config.location,
            "generation": self.running.meta.generation,
            "enabled": self.config.health.enabled,
            "fail_static": self.health_fail_static,
            "fail_static_reason": self.health_view.get("fail_static_reason").cloned().unwrap_or(Value::Null),
            "location_drained": self.drains.drained,
            "drains": self.drains,
            "min_other_locations": self.config.health.min_other_locations,
            "address_interface": self.config.health.address_interface,
            "addresses_bound": self.bound_addresses,
            "addresses_foreign": self.foreign_addresses,
            "addresses_pending_unbind": self.pending_unbind.iter().map(|pending| pending.address).collect::<Vec<_>>(),
            "address_errors": self.address_errors.iter().map(|(address, error)| (address.to_string(), error.clone())).collect::<BTreeMap<_, _>>(),
            "services": services,
        })
    }
}
