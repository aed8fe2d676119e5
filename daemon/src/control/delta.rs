//! Delta pushes at the control API: the running generation's file digests (`GET /v1/sources`,
//! computed once per generation) and the resolution of a plan or apply that carries a
//! [`BundleDelta`] into the whole bundle, before the engine sees it. The engine, the state
//! directory and the audit log only ever see complete bundles. The running topology does not
//! keep its texts: they are read from the state directory, on the blocking pool.
//!
//! Owns: the per-generation digest cache. Must not touch: the engine's state (it reads the
//! running topology and the store through shared handles), what the bundle means.

use std::sync::{Arc, Mutex, Weak};

use hyper::StatusCode;
use topologyd_api::delta::sources_view;
use topologyd_api::{BundleDelta, DeltaError, SourceBundle, SourcesView};
use topologyd_topology::Topology;

use super::answer::Answer;
use crate::state_store::StateStore;

/// The running generation as a delta is resolved against it: its number, its compiled
/// topology (the cache's key) and the store holding its texts.
pub(super) type RunningGeneration = (u64, Arc<Topology>, Arc<StateStore>);

/// The digests of the running generation's files, kept for the topology they were computed
/// from (a weak handle: the cache never keeps an old topology alive).
#[derive(Debug, Default)]
pub(super) struct SourcesCache {
    cached: Mutex<Option<(Weak<Topology>, Arc<SourcesView>)>>,
}

impl SourcesCache {
    fn get(&self, generation: u64, topology: &Arc<Topology>) -> Option<Arc<SourcesView>> {
        let cached = self.cached.lock().ok()?;
        let (weak, view) = cached.as_ref()?;
        (Weak::ptr_eq(weak, &Arc::downgrade(topology)) && view.generation == generation)
            .then(|| Arc::clone(view))
    }

    fn put(&self, topology: &Arc<Topology>, view: &Arc<SourcesView>) {
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((Arc::downgrade(topology), Arc::clone(view)));
        }
    }

    /// `GET /v1/sources`: the cached view, or one computed from the stored texts.
    pub(super) async fn view(
        &self,
        (generation, topology, store): RunningGeneration,
    ) -> Result<Arc<SourcesView>, Answer> {
        if let Some(view) = self.get(generation, &topology) {
            return Ok(view);
        }
        let view = tokio::task::spawn_blocking(move || {
            store
                .load(generation)
                .map(|stored| Arc::new(sources_view(generation, &stored.bundle.sources)))
        })
        .await
        .map_err(|error| internal(format!("digesting the running sources failed: {error}")))?
        .map_err(|error| unavailable(generation, &error))?;
        self.put(&topology, &view);
        Ok(view)
    }
}

/// The whole bundle a request carrying `delta` stands for: the files it lists, the changed
/// ones from `bundle` and the others copied from the running generation. A delta made against
/// another generation is a conflict (409 `base_changed`, told before the store is read when the
/// digests are cached); one that does not add up is invalid (400).
pub(super) async fn resolve(
    cache: &SourcesCache,
    bundle: SourceBundle,
    delta: BundleDelta,
    (generation, topology, store): RunningGeneration,
) -> Result<SourceBundle, Answer> {
    let cached = cache.get(generation, &topology);
    if let Some(view) = &cached
        && (delta.base_generation != view.generation
            || delta.base_sources_sha256 != view.sources_sha256)
    {
        return Err(refusal(DeltaError::BaseChanged {
            base_generation: delta.base_generation,
            base_sources_sha256: delta.base_sources_sha256,
            running_generation: view.generation,
            running_sources_sha256: view.sources_sha256.clone(),
        }));
    }
    let (view, resolved) = tokio::task::spawn_blocking(move || {
        let stored = store.load(generation).map_err(|error| error.to_string())?;
        let view =
            cached.unwrap_or_else(|| Arc::new(sources_view(generation, &stored.bundle.sources)));
        let resolved = delta.resolve(bundle, &view, &stored.bundle.sources);
        Ok::<_, String>((view, resolved))
    })
    .await
    .map_err(|error| internal(format!("resolving the delta failed: {error}")))?
    .map_err(|error| unavailable(generation, &error))?;
    cache.put(&topology, &view);
    resolved.map_err(refusal)
}

/// The answer to a delta that does not resolve.
fn refusal(error: DeltaError) -> Answer {
    let (status, kind) = match error {
        DeltaError::BaseChanged { .. } => (StatusCode::CONFLICT, "base_changed"),
        _ => (StatusCode::BAD_REQUEST, "invalid"),
    };
    Answer::error(status, kind, format!("delta push: {error}"))
}

/// The running generation's texts cannot be read: a pusher sends the whole bundle instead
/// (`topoctl` does so by itself on any `base_*` conflict).
fn unavailable(generation: u64, error: &dyn std::fmt::Display) -> Answer {
    Answer::error(
        StatusCode::CONFLICT,
        "base_unavailable",
        format!(
            "the running generation {generation}'s sources cannot be read from the state directory ({error}); push the whole bundle (topoctl push --full-bundle)"
        ),
    )
}

fn internal(message: String) -> Answer {
    Answer::error(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
}
