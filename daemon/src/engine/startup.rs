//! Starting the engine: the state directory opened, the running generation recovered (the
//! newest stored one that compiles, else the last known good, else the bootstrap topology), the
//! persisted drains loaded, the first publication, and the service addresses reconciled with
//! the interface before the peers start.
//!
//! Must not touch: the peers (started afterwards by `Engine::start_peers`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::health::HealthView;
use tokio::sync::{mpsc, watch};
use topologyd_config::daemon::{DaemonConfig, PeerConfig};
use topologyd_topology::{Topology, compile_put_away};
use tracing::{error, info, warn};

use super::core::{EngineCore, Running};
use super::prepare::{compile_memory_bytes, location_routes};
use super::{Engine, unix_now};
use crate::addresses::{AddressBinder, BindOutcome};
use crate::bundle::compile_bundle;
use crate::compile::CompileBudget;
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::state_store::{GenerationMeta, StateStore, StoredGeneration};

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state directory: {0}")]
    State(#[from] crate::state_store::StateError),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the bootstrap topology does not compile:\n{0}")]
    Bootstrap(topologyd_topology::Diagnostics),
    #[error(
        "the state directory holds no generation and `bootstrap_topology` names no files: nothing to announce"
    )]
    NothingToAnnounce,
    #[error("location `{0}` is not in the topology's fleet")]
    UnknownLocation(String),
    #[error("no stored generation compiles; last error:\n{0}")]
    NoGoodGeneration(String),
    /// Stored generations exist but none can be read because source texts they name are
    /// missing or damaged: starting from the bootstrap topology would announce what may be a
    /// very old topology, so the daemon stops instead.
    #[error(
        "no stored generation can be read: source texts are missing or damaged:\n{0}\nput each text back under its SHA-256 in the state directory's sources/, copied beside it and renamed (cp FILE STATE_DIR/sources/new.tmp && mv STATE_DIR/sources/new.tmp STATE_DIR/sources/$(sha256sum FILE | cut -d' ' -f1)), or move the generation files to quarantine/ to start from bootstrap_topology"
    )]
    SourcesUnreadable(String),
    #[error("peer `{peer}`: {message}")]
    Peer { peer: String, message: String },
    #[error("local service addresses: {0}")]
    Addresses(String),
}

/// Reads a peer's MD5 key file (trailing newline removed).
pub fn read_md5_key(peer: &PeerConfig) -> Result<Option<Vec<u8>>, StartError> {
    let Some(path) = &peer.md5_key_file else {
        return Ok(None);
    };
    let mut key = std::fs::read(path).map_err(|source| StartError::Read {
        path: path.display().to_string(),
        source,
    })?;
    while key
        .last()
        .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
    {
        key.pop();
    }
    if key.is_empty() || key.len() > 80 {
        return Err(StartError::Peer {
            peer: peer.name.clone(),
            message: format!(
                "the MD5 key in {} must be 1 to 80 bytes (RFC 2385)",
                path.display()
            ),
        });
    }
    Ok(Some(key))
}

impl Engine {
    /// Loads the running generation (the last one applied, or the bootstrap topology on first
    /// start) and computes what this location announces. Blocking: call before the runtime
    /// serves anything, or from `spawn_blocking`.
    pub fn start(
        config: DaemonConfig,
        metrics: Metrics,
        readiness: Readiness,
    ) -> Result<Engine, StartError> {
        let store = StateStore::open(&config.state_dir, config.retained_generations)?
            .with_quarantine_counter(metrics.state_quarantined_counter());
        let recovered = store.load_current()?;
        for skipped in &recovered.skipped {
            warn!(%skipped, "skipped an unreadable stored generation");
        }
        if !recovered.skipped.is_empty() {
            warn!(
                quarantined = ?recovered.quarantined,
                next_generation = store.next_generation(),
                "fell back past unreadable generations; pushes and rollbacks continue from the next free number"
            );
        }
        let unreadable_texts: Vec<String> = recovered
            .skipped
            .iter()
            .filter(|error| matches!(error, crate::state_store::StateError::Source { .. }))
            .map(ToString::to_string)
            .collect();
        let (running, restarting) = match recovered.current {
            Some(stored) => (Self::recover(&store, &config, stored)?, true),
            None if !unreadable_texts.is_empty() => {
                return Err(StartError::SourcesUnreadable(unreadable_texts.join("\n")));
            }
            None => (Self::bootstrap(&store, &config)?, false),
        };
        metrics.set_generation(running.meta.generation, &running.meta.hash);
        // The running generation was applied when it was committed (bootstrap or a push before
        // this start): without this, the stale-apply alert would fire after every restart.
        metrics.set_last_apply_timestamp(running.meta.applied_at);
        crate::memory::release_free_memory();
        let drains = store.load_drain()?;
        if drains.drained || !drains.services.is_empty() {
            warn!(
                location_drained = drains.drained,
                services = ?drains.services.keys().collect::<Vec<_>>(),
                "starting drained (persisted by topoctl drain)"
            );
        }
        let (routes, _) = watch::channel(running.routes.clone());
        let (visibility_inputs, _) = watch::channel(super::VisibilityInputs {
            topology: Arc::clone(&running.topology),
            vrps: None,
        });
        let (compiled_sender, compiled) = mpsc::unbounded_channel();
        let (peer_report_sender, peer_reports) = mpsc::unbounded_channel();
        let config_for_budget = config.control.clone();
        info!(
            generation = running.meta.generation,
            hash = %running.meta.hash,
            routes = running.routes.routes.len(),
            restarting,
            "running generation loaded"
        );
        let mut core = EngineCore::new(
            config.location.clone(),
            config.health.min_other_locations,
            running,
            drains,
        );
        core.lease = store.load_lease()?;
        if let Some(rpki) = &config.rpki {
            core.enable_rpki(rpki.invalid_policy);
        }
        if let Some(lease) = &core.lease.lease {
            info!(holder = %lease.holder, token = lease.token, expires_unix_ms = lease.expires_unix_ms, "fleet lock lease reloaded");
        }
        let mut engine = Engine {
            config,
            store: Arc::new(store),
            core,
            epoch: Instant::now(),
            routes,
            visibility_inputs,
            health_view: Arc::new(HealthView::disabled()),
            health_specs: watch::channel(Arc::new(BTreeMap::new())).0,
            health: None,
            health_event_seen: 0,
            probe_rounds_seen: HashMap::new(),
            audit: None,
            addresses: None,
            peers: BTreeMap::new(),
            metrics,
            readiness,
            restarting,
            compile_budget: CompileBudget::new(compile_memory_bytes(&config_for_budget)),
            compiled_sender,
            compiled: Some(compiled),
            peer_report_sender,
            peer_reports: Some(peer_reports),
            next_incarnation: 0,
            mutations: HashMap::new(),
            next_request: 0,
            reload_grace: Duration::ZERO,
            reload_answer: None,
            lease_live: false,
            rtr: None,
            rpki_version_seen: None,
            rtr_restart_at: None,
            rpki_families: (0, 0),
            texts_sweep: None,
        };
        let now = engine.now();
        for effect in engine.core.start(now) {
            // Only a publication, the service report and their log lines: nothing to await.
            engine.run_local_effect(effect);
        }
        engine.lease_live = engine.core.lease.live(now.unix_ms).is_some();
        engine.metrics.set_lease_held(engine.lease_live);
        Ok(engine)
    }

    /// Opens the netlink binder of `[health] address_interface` and brings the addresses we
    /// bound (found by their marker, also from an earlier run) to what is announced now.
    /// Call before the peers start: nothing is announced yet, so stale addresses go at once.
    pub async fn start_addresses(&mut self) -> Result<(), StartError> {
        let Some(interface) = self.config.health.address_interface.clone() else {
            return Ok(());
        };
        let binder = AddressBinder::new(&interface)
            .await
            .map_err(|error| StartError::Addresses(error.to_string()))?;
        let desired = self.desired_addresses();
        let (bound, unbound) = binder
            .reconcile(&desired)
            .await
            .map_err(|error| StartError::Addresses(error.to_string()))?;
        for (address, outcome) in &bound {
            info!(%address, %interface, outcome = outcome.as_str(), "service address bound");
        }
        for address in &unbound {
            info!(%address, %interface, "stale service address unbound");
        }
        let mut owned = BTreeSet::new();
        let mut foreign = BTreeSet::new();
        for (address, outcome) in &bound {
            if matches!(outcome, BindOutcome::Foreign { .. }) {
                foreign.insert(*address);
            } else {
                owned.insert(*address);
            }
        }
        owned.extend(binder.owned().await.unwrap_or_default());
        self.addresses = Some(binder);
        let now = self.now();
        self.core.manage_addresses(owned, foreign, now);
        self.metrics
            .set_local_addresses_bound(self.core.bound_addresses.len());
        Ok(())
    }

    pub(super) fn running_from(
        config: &DaemonConfig,
        mut topology: Topology,
        meta: GenerationMeta,
    ) -> Result<Running, StartError> {
        // The state directory holds the texts; the running generation does not.
        drop(topology.take_sources());
        if topology.location(&config.location).is_none() {
            return Err(StartError::UnknownLocation(config.location.clone()));
        }
        let routes = location_routes(&topology, &config.location)
            .map_err(|_| StartError::UnknownLocation(config.location.clone()))?;
        Ok(Running {
            topology: Arc::new(topology),
            meta,
            routes: Arc::new(routes),
        })
    }

    fn recover(
        store: &StateStore,
        config: &DaemonConfig,
        stored: StoredGeneration,
    ) -> Result<Running, StartError> {
        // The newest generation first, then the older ones (last known good).
        let mut candidates = vec![stored.meta.generation];
        candidates.extend(
            store
                .list()?
                .into_iter()
                .map(|meta| meta.generation)
                .filter(|generation| *generation != stored.meta.generation),
        );
        let mut last_error = String::new();
        for generation in candidates {
            let candidate = if generation == stored.meta.generation {
                stored.clone()
            } else {
                match store.load(generation) {
                    Ok(candidate) => candidate,
                    Err(error) => {
                        last_error = error.to_string();
                        continue;
                    }
                }
            };
            match compile_bundle(candidate.bundle, generation) {
                Ok(topology) => {
                    if generation != stored.meta.generation {
                        warn!(
                            generation,
                            "fell back to an older stored generation (last known good)"
                        );
                    }
                    let mut meta = candidate.meta;
                    let hash = topology.hash_hex();
                    if meta.hash != hash {
                        // Stored by a release whose canonical form differs: the generation
                        // is reported (status, generations, sources, metrics) and the next
                        // push's no-change check made by the hash this release computes.
                        info!(
                            generation,
                            stored = %meta.hash,
                            hash = %hash,
                            "the running generation's hash is taken in this release's canonical form"
                        );
                        meta.hash = hash;
                    }
                    return Self::running_from(config, topology, meta);
                }
                Err(diagnostics) => {
                    error!(generation, %diagnostics, "stored generation does not compile");
                    last_error = diagnostics.to_string();
                }
            }
        }
        Err(StartError::NoGoodGeneration(last_error))
    }

    fn bootstrap(store: &StateStore, config: &DaemonConfig) -> Result<Running, StartError> {
        if config.bootstrap_topology.is_empty() {
            return Err(StartError::NothingToAnnounce);
        }
        let sources =
            topologyd_config::load_sources(&config.bootstrap_topology).map_err(|error| {
                StartError::Read {
                    path: error.path.clone(),
                    source: error.error,
                }
            })?;
        // Generation 1 on a first start; after every stored generation was quarantined, the next
        // number past them (the store refuses to reuse one).
        let generation = store.next_generation();
        // The texts go into the state directory first, so that the compile drops each one once
        // parsed (read back only to report a position): a large topology's text is never held
        // beside its compiled records. Texts of a compile that fails are named by no generation
        // and go at the next staging.
        let staged = store.stage_texts(&sources)?;
        let mut topology =
            compile_put_away(sources, staged.digests(), staged.read_back(), generation)
                .map_err(StartError::Bootstrap)?;
        let meta = GenerationMeta {
            generation,
            hash: topology.hash_hex(),
            applied_at: unix_now(),
            who: "bootstrap".into(),
            intent: Vec::new(),
        };
        // The compiled topology holds names and no texts from here on.
        drop(topology.take_sources());
        if topology.location(&config.location).is_none() {
            return Err(StartError::UnknownLocation(config.location.clone()));
        }
        store.commit_staged(&meta, &staged)?;
        store.sweep_unnamed_texts();
        Self::running_from(config, topology, meta)
    }
}
