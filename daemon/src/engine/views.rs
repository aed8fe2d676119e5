//! The engine's answers to the control API's read-only queries (`GET /v1/status`,
//! `/v1/routes`, `/v1/health`, `/v1/generations`, `/v1/topology?generation=N`) and the drain
//! answer (also a dry run's): typed views (`topologyd-api`) over the engine's state and the
//! state directory's kept generations, built on the engine task.
//!
//! Must not touch: the engine's state (these only read it).

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use topologyd_api::view::DrainState;
use topologyd_api::{
    DrainView, GenerationView, GenerationsView, PeerRoutesView, RouteCounts, RouteView, RoutesView,
    StatusHealth, StatusView, TopologyView,
};
use topologyd_config::daemon::{Family, PeerConfig};

use super::Engine;
use crate::announce::PeerRouteContext;
use crate::engine_api::{EngineError, EngineErrorKind};
use crate::overlay::{self, ServiceAction, ServiceDecision};
use crate::state_store::StateStore;

impl Engine {
    /// The drain answer: every service's decision now, and the floor's holds among `service`
    /// (or every service).
    pub(super) fn drain_view(
        &self,
        service: Option<String>,
        drain: bool,
        changed: bool,
    ) -> DrainView {
        let floor_held = self
            .decisions
            .iter()
            .filter(|(name, decision)| {
                decision.floor_held
                    && decision.drained
                    && service.as_ref().is_none_or(|wanted| wanted == *name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        DrainView {
            location: self.config.location.clone(),
            target: service.unwrap_or_else(|| "location".into()),
            drained: drain,
            changed,
            floor_held,
            services: self
                .decisions
                .iter()
                .map(|(name, decision)| (name.clone(), crate::api_views::decision_view(decision)))
                .collect(),
            audit_warning: None,
        }
    }

    /// `GET /v1/generations`: the kept generations' metadata and source names, newest first
    /// (their files read on the blocking pool; not their texts).
    pub(super) async fn generations(&self) -> Result<GenerationsView, EngineError> {
        let store = self.store.clone();
        let running = self.running.meta.generation;
        // The running generation by the hash `status` reports (see `stored_topology`).
        let running_hash = self.running.meta.hash.clone();
        let listed = tokio::task::spawn_blocking(move || {
            // Listed from the generation files alone (the texts are not read); the running
            // generation's file is never moved aside.
            let summaries = store.list_protecting(Some(running))?;
            Ok::<_, crate::state_store::StateError>(
                summaries
                    .into_iter()
                    .map(|summary| GenerationView {
                        generation: summary.meta.generation,
                        hash: if summary.meta.generation == running {
                            running_hash.clone()
                        } else {
                            summary.meta.hash
                        },
                        applied_at: summary.meta.applied_at,
                        applied_by: summary.meta.who,
                        intent: summary.meta.intent,
                        sources: summary.sources,
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), None))?
        .map_err(|error| self.error(EngineErrorKind::Internal, error.to_string(), None))?;
        Ok(GenerationsView {
            location: self.config.location.clone(),
            running: self.running.meta.generation,
            generations: listed,
        })
    }

    pub(super) fn status_json(&self) -> StatusView {
        let (ipv4, ipv6) = self.routes.borrow().count_by_family();
        let (topology_ipv4, topology_ipv6) = self.running.routes.count_by_family();
        let services_where = |wanted: &dyn Fn(&ServiceDecision) -> bool| -> Vec<String> {
            self.decisions
                .iter()
                .filter(|(_, decision)| wanted(decision))
                .map(|(name, _)| name.clone())
                .collect()
        };
        StatusView {
            location: self.config.location.clone(),
            generation: self.running.meta.generation,
            hash: self.running.meta.hash.clone(),
            applied_at: self.running.meta.applied_at,
            applied_by: self.running.meta.who.clone(),
            ready: self.readiness.is_ready(),
            ready_reason: self.readiness.state().reason,
            routes: RouteCounts { ipv4, ipv6 },
            routes_topology: RouteCounts {
                ipv4: topology_ipv4,
                ipv6: topology_ipv6,
            },
            published_version: self.publish_version,
            runtime_guard_refusals: self.runtime_guard_refusals,
            health: StatusHealth {
                fail_static: self.health_fail_static,
                location_drained: self.drains.drained,
                unhealthy: services_where(&|decision| decision.healthy == Some(false)),
                drained: services_where(&|decision| decision.drained),
                withdrawn: services_where(&|decision| decision.action == ServiceAction::Withdraw),
                degraded: services_where(&|decision| decision.action == ServiceAction::Degrade),
            },
            peers: self.peer_statuses(),
            lease: self.lease.view(super::unix_now_ms()),
            time_unix_ms: self.core.snapshot_time_ms(super::unix_now_ms()),
        }
    }

    pub(super) fn routes_json(&self, peer: Option<&str>) -> Result<RoutesView, EngineError> {
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
                        None,
                    ));
                }
                found
            }
            None => self.config.peers.iter().collect(),
        };
        let routes = self.routes.borrow().clone();
        // The ages are the core's, for the publication it holds (the same as the channel's
        // but for a publication in flight, which then shows no age).
        let ages: &[u32] = if std::sync::Arc::ptr_eq(&routes, &self.core.published) {
            &self.core.published_since
        } else {
            &[]
        };
        let mut peers = BTreeMap::new();
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
            let session_since = status
                .as_ref()
                .filter(|status| status.established)
                .and_then(|status| status.established_since);
            let list: Vec<RouteView> = routes
                .routes
                .iter()
                .enumerate()
                .filter(|(_, (prefix, _))| match prefix {
                    IpNet::V4(_) => peer.families.contains(&Family::Ipv4),
                    IpNet::V6(_) => peer.families.contains(&Family::Ipv6),
                })
                .filter_map(|(at, (prefix, index))| {
                    let intent = routes.intent(*index)?;
                    let attributes = context.path_attributes(intent);
                    Some(RouteView {
                        prefix: prefix.to_string(),
                        service: intent.service.to_string(),
                        degraded: intent.degraded,
                        as_path: attributes.as_path.iter().map(as_path_text).collect(),
                        next_hop: match prefix {
                            IpNet::V4(_) => context.ipv4_next_hop.map(|hop| hop.to_string()),
                            IpNet::V6(_) => context.ipv6_next_hop.map(|hop| hop.to_string()),
                        },
                        med: attributes.med,
                        communities: intent
                            .attributes
                            .communities
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        large_communities: intent
                            .attributes
                            .large_communities
                            .iter()
                            .map(ToString::to_string)
                            .collect(),
                        announced_since: session_since
                            .zip(ages.get(at))
                            .map(|(session, published)| session.max(u64::from(*published))),
                    })
                })
                .collect();
            peers.insert(
                peer.name.clone(),
                PeerRoutesView {
                    families: peer
                        .families
                        .iter()
                        .map(|family| match family {
                            Family::Ipv4 => "ipv4".to_owned(),
                            Family::Ipv6 => "ipv6".to_owned(),
                        })
                        .collect(),
                    established: status.as_ref().is_some_and(|status| status.established),
                    generation_synced: status.as_ref().and_then(|status| status.generation_synced),
                    routes: list,
                },
            );
        }
        Ok(RoutesView {
            generation: self.running.meta.generation,
            peers,
        })
    }

    /// The health document of `GET /v1/health`.
    pub(super) fn health_json(&self) -> topologyd_api::HealthView {
        let published = self.routes.borrow().clone();
        let counts = overlay::routes_per_service(&published);
        let services = self
            .decisions
            .iter()
            .map(|(name, decision)| {
                let routes = counts.get(name.as_str()).copied().unwrap_or(0);
                let board = self.health_view.services.get(name);
                let view = crate::api_views::service_health_view(decision, routes, board);
                (name.clone(), view)
            })
            .collect();
        let addresses = |addresses: &mut dyn Iterator<Item = &IpNet>| -> Vec<String> {
            addresses.map(ToString::to_string).collect()
        };
        topologyd_api::HealthView {
            location: self.config.location.clone(),
            generation: self.running.meta.generation,
            enabled: self.config.health.enabled,
            fail_static: self.health_fail_static,
            fail_static_reason: self.health_view.fail_static_reason.clone(),
            location_drained: self.drains.drained,
            drains: self.drains.clone(),
            min_other_locations: self.config.health.min_other_locations as u64,
            address_interface: self.config.health.address_interface.clone(),
            addresses_bound: addresses(&mut self.bound_addresses.iter()),
            addresses_foreign: addresses(&mut self.foreign_addresses.iter()),
            addresses_pending_unbind: addresses(
                &mut self.pending_unbind.iter().map(|pending| &pending.address),
            ),
            address_errors: self
                .address_errors
                .iter()
                .map(|(address, error)| (address.to_string(), error.clone()))
                .collect(),
            services,
        }
    }
}

/// An AS_PATH segment as operators write it: an AS_SEQUENCE as its numbers separated by spaces
/// (`64500 64501`), an AS_SET in braces (`{64500 64501}`).
fn as_path_text(segment: &topologyd_bgp::codec::AsPathSegment) -> String {
    let join = |asns: &[u32]| {
        asns.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    match segment {
        topologyd_bgp::codec::AsPathSegment::Sequence(asns) => join(asns),
        topologyd_bgp::codec::AsPathSegment::Set(asns) => format!("{{{}}}", join(asns)),
    }
}

/// Whether a drain request changes the drain state (who, why and when aside): a service drain
/// adds the service or changes its force, an undrain removes it; a location drain flips the
/// flag or, drained, its force.
pub(super) fn drain_changes(
    before: &DrainState,
    after: &DrainState,
    service: Option<&str>,
) -> bool {
    match service {
        Some(name) => {
            before.services.get(name).map(|drain| drain.force)
                != after.services.get(name).map(|drain| drain.force)
        }
        None => before.drained != after.drained || (after.drained && before.force != after.force),
    }
}

/// `GET /v1/topology[?generation=N]`: a kept generation's sources (the running one's too), read
/// from the state directory; `running` is the running generation and its hash (which `status`
/// reports: taken anew at start-up, in this release's canonical form, where the file may keep
/// an earlier release's). The running generation's file is only read (never moved to
/// quarantine: it is the only copy of its texts), and a failure to read it is the daemon's
/// (500), not a generation that is not kept (404).
pub(super) async fn stored_topology(
    store: Arc<StateStore>,
    generation: u64,
    (running, running_hash): (u64, String),
) -> Result<TopologyView, EngineError> {
    let error = |kind, message: String| {
        let mut error = EngineError::new(kind, message);
        error.generation = Some(running);
        error
    };
    tokio::task::spawn_blocking(move || {
        if generation == running {
            store.read(generation)
        } else {
            store.load(generation)
        }
    })
    .await
    .map_err(|join| error(EngineErrorKind::Internal, join.to_string()))?
    .map(|stored| TopologyView {
        generation: stored.meta.generation,
        hash: if generation == running {
            running_hash
        } else {
            stored.meta.hash
        },
        bundle: stored.bundle,
    })
    .map_err(|failure| {
        if generation == running {
            error(
                EngineErrorKind::Internal,
                format!("the running generation {generation}'s sources cannot be read from the state directory: {failure}"),
            )
        } else {
            error(
                EngineErrorKind::NotFound,
                match &failure {
                    crate::state_store::StateError::NotFound { .. } => {
                        format!("generation {generation} is not kept: {failure}")
                    }
                    _ => format!("generation {generation} is kept but cannot be read: {failure}"),
                },
            )
        }
    })
}
