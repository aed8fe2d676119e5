//! The async shell's half of the engine: runs the [`Effect`]s the pure core
//! (`engine/core.rs`) decides, in order — compiles on the blocking pool, fsync'd commits,
//! publications to the peers, netlink binds and unbinds, peer tasks started and stopped,
//! replies — and feeds every result back to the core as an [`Event`].
//!
//! Must not touch: decisions (what to publish, when to unbind, whether to commit): those are
//! the core's.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use super::core::{Answer, Effect, Event, RequestId};
use super::prepare::{CompileInput, Prepared};
use super::{Engine, stop_peer, unix_now};
use crate::addresses::BindOutcome;
use crate::engine_api::{EngineError, EngineErrorKind, MutationTerms, WriteAhead};
use crate::overlay::ServiceAction;
use crate::peer::PeerCommand;
use crate::state_store::StoredGeneration;

/// How long after a publish the freed heap is returned to the kernel.
pub const TRIM_AFTER_PUBLISH: Duration = Duration::from_secs(2);

/// An apply or rollback waiting for its compile and commit.
pub(super) struct MutationRequest {
    pub input: CompileInput,
    pub terms: MutationTerms,
    /// When the request reached the engine (the apply latency metric starts here).
    pub started: Instant,
    /// How long its commit took to write and fsync: its texts and its intent record, side by
    /// side, then its generation file.
    pub persist_ms: u64,
}

/// A finished compile of a mutation, back on the engine task.
pub(super) struct Compiled {
    pub request: RequestId,
    /// The running generation it was planned against.
    pub base_generation: u64,
    pub result: Result<Prepared, EngineError>,
    /// The pushed bundle the job was lent, when it did not prepare (a prepared push carries
    /// it in [`Prepared::bundle`]; a rollback's job returns none).
    pub returned: Option<crate::engine_api::SourceBundle>,
}

impl Engine {
    /// Hands `event` to the core and runs the effects it decides.
    pub(super) async fn handle(&mut self, event: Event) {
        let now = self.now();
        let effects = self.core.handle(event, now);
        self.run_effects(effects).await;
    }

    /// Runs `effects` in order; an effect's result goes back to the core at once, and the
    /// effects it decides run before the rest.
    async fn run_effects(&mut self, effects: Vec<Effect>) {
        let mut queue: VecDeque<Effect> = effects.into();
        let mut addresses_changed = false;
        while let Some(effect) = queue.pop_front() {
            addresses_changed |= matches!(effect, Effect::Bind { .. } | Effect::Unbind { .. });
            let Some(effect) = self.run_local_effect(effect) else {
                continue;
            };
            if let Some(event) = self.run_async_effect(effect).await {
                let now = self.now();
                for more in self.core.handle(event, now).into_iter().rev() {
                    queue.push_front(more);
                }
            }
        }
        if addresses_changed {
            self.metrics
                .set_local_addresses_bound(self.core.bound_addresses.len());
        }
    }

    /// Runs an effect that needs no waiting; hands back the others.
    pub(super) fn run_local_effect(&mut self, effect: Effect) -> Option<Effect> {
        match effect {
            Effect::Publish(routes) => {
                self.routes.send_replace(routes);
                self.publish_visibility_inputs();
            }
            Effect::ReportServices => {
                self.report_services();
                self.report_rpki();
            }
            Effect::RouteRpki(change) => self.route_rpki_changed(&change),
            Effect::UpdateHealthSpecs => self.update_health_specs(),
            Effect::CountGuardRefusals { guard, count } => {
                if guard == "runtime" {
                    error!(count, "runtime guard refused what was about to be sent");
                }
                self.metrics.count_guard_refusals(&guard, count);
            }
            Effect::Release(previous) => {
                // Freeing a large topology takes time too: not on the engine task.
                tokio::task::spawn_blocking(move || drop(previous));
            }
            Effect::ServiceChanged {
                service,
                decision,
                first,
            } => {
                if decision.floor_held {
                    warn!(%service, other_live_locations = decision.other_live_locations, "withdrawal held by the floor: too few other live locations announce the service");
                } else if !first || decision.action != ServiceAction::Announce {
                    info!(%service, action = decision.action.as_str(), drained = decision.drained, healthy = ?decision.healthy, "service action here changed");
                }
            }
            Effect::AddressVanished { address } => {
                let interface = self
                    .addresses
                    .as_ref()
                    .map(|binder| binder.interface().to_owned());
                error!(%address, ?interface, "a bound service address was removed from outside; binding it again");
            }
            Effect::KeepSources { request, bundle } => {
                if let Some(mutation) = self.mutations.get_mut(&request) {
                    mutation.input.give_back(bundle);
                }
            }
            Effect::Compile {
                request,
                base_generation,
            } => self.spawn_compile(request, base_generation),
            Effect::GenerationApplied { request, meta } => {
                // Give the compile's freed pages back once the peers have sent the change: a
                // trim holds the allocator's locks, which the peer tasks need right after a
                // publish.
                crate::memory::release_free_memory_after(TRIM_AFTER_PUBLISH);
                self.metrics.set_generation(meta.generation, &meta.hash);
                // The peers hold the previous generation until they report the new one sent.
                self.refresh_readiness();
                let (started, persist_ms) = self.mutations.get(&request).map_or_else(
                    || (Instant::now(), 0),
                    |request| (request.started, request.persist_ms),
                );
                self.metrics
                    .observe_apply(started.elapsed().as_secs_f64(), unix_now());
                info!(
                    generation = meta.generation,
                    hash = %meta.hash,
                    who = %meta.who,
                    apply_ms = started.elapsed().as_millis() as u64,
                    persist_ms,
                    "generation applied"
                );
            }
            Effect::Reply { request, answer } => self.reply(request, answer),
            other => return Some(other),
        }
        None
    }

    /// Runs an effect that waits on I/O; returns the event that reports its result.
    async fn run_async_effect(&mut self, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Commit {
                request,
                stored,
                digests,
                staging,
                generation_before,
                plan_hash,
                intended_verdict,
                rollback_of,
            } => {
                let write_ahead = self
                    .mutations
                    .get(&request)
                    .and_then(|request| request.terms.write_ahead.clone());
                // The last commit's sweep ends before this one stages: it must not take this
                // commit's staged texts for unnamed ones.
                if let Some(sweep) = self.texts_sweep.take() {
                    let _ = sweep.await;
                }
                let result = self
                    .commit(
                        (*stored, digests, staging),
                        write_ahead,
                        generation_before,
                        plan_hash,
                        &intended_verdict,
                        rollback_of,
                    )
                    .await;
                if let (Ok((persist_ms, _)), Some(mutation)) =
                    (&result, self.mutations.get_mut(&request))
                {
                    mutation.persist_ms = *persist_ms;
                }
                if let Ok((_, true)) = result {
                    // The generation is durable: its routes go out while the texts of the one
                    // it pruned are swept.
                    let store = std::sync::Arc::clone(&self.store);
                    self.texts_sweep = Some(tokio::task::spawn_blocking(move || {
                        store.sweep_unnamed_texts();
                    }));
                }
                Some(Event::Committed {
                    request,
                    result: result.map(|_| ()),
                })
            }
            Effect::Bind { address } => {
                let binder = self.addresses.as_ref()?;
                let result = match binder.bind(address).await {
                    Ok(outcome) => {
                        info!(%address, interface = binder.interface(), outcome = outcome.as_str(), "service address bound");
                        Ok(matches!(outcome, BindOutcome::Foreign { .. }))
                    }
                    Err(error) => {
                        error!(%address, %error, "could not bind a service address; its routes are announced anyway");
                        self.metrics.count_address_error("bind");
                        Err(error.to_string())
                    }
                };
                Some(Event::AddressBound { address, result })
            }
            Effect::Unbind { address } => {
                let binder = self.addresses.as_ref()?;
                let result = match binder.unbind(address).await {
                    Ok(outcome) => {
                        info!(%address, outcome = outcome.as_str(), "service address unbound after its withdrawal");
                        Ok(())
                    }
                    Err(error) => {
                        error!(%address, %error, "could not unbind a service address; retrying");
                        self.metrics.count_address_error("unbind");
                        Err(error.to_string())
                    }
                };
                Some(Event::AddressUnbound { address, result })
            }
            Effect::ListAddresses => {
                let binder = self.addresses.as_ref()?;
                match binder.bound().await {
                    Ok(present) => Some(Event::AddressesListed { present }),
                    Err(error) => {
                        warn!(%error, "could not list the interface's addresses");
                        self.metrics.count_address_error("list");
                        None
                    }
                }
            }
            Effect::StopPeer {
                peer,
                withdraw_first,
            } => {
                self.stop_one_peer(&peer, withdraw_first).await;
                None
            }
            Effect::StartPeer { peer } => {
                let config = self.peer_config(&peer)?.clone();
                if let Err(error) = self.start_peer(&config) {
                    // Not running: it must not hold back address unbinding forever.
                    self.core.peer_sync.remove(&peer);
                    self.reload_answer = Some(Err(error.to_string()));
                }
                self.refresh_readiness();
                None
            }
            Effect::ReconfigurePeer { peer } => {
                let config = self.peer_config(&peer)?;
                match self.peer_spec(config) {
                    Ok(spec) => {
                        if let Some(handle) = self.peers.get(&peer) {
                            let _ = handle
                                .commands
                                .send(PeerCommand::Reconfigure(Box::new(spec)))
                                .await;
                        }
                    }
                    Err(error) => self.reload_answer = Some(Err(error.to_string())),
                }
                None
            }
            other => {
                error!(?other, "an effect the shell does not run");
                None
            }
        }
    }

    /// The configuration of the peer named `name`.
    fn peer_config(&self, name: &str) -> Option<&topologyd_config::daemon::PeerConfig> {
        self.config.peers.iter().find(|config| config.name == name)
    }

    /// Compiles a mutation's input against the running generation on the blocking pool.
    fn spawn_compile(&mut self, request: RequestId, base_generation: u64) {
        // The pushed bundle is lent to the job, not copied; it comes back in `Compiled`.
        let Some(input) = self
            .mutations
            .get_mut(&request)
            .map(|request| request.input.lend())
        else {
            return;
        };
        let mut job = self.compile_job(input);
        // An apply's texts are written while it compiles: its commit waits for less. Its large
        // texts stay in memory until their files' stamps settle (a push right after reads them
        // without hashing them again); the engine's tick lets them go after that.
        job.stage_early = true;
        debug_assert_eq!(job.base_generation, base_generation);
        let sender = self.compiled_sender.clone();
        tokio::task::spawn_blocking(move || {
            let base_generation = job.base_generation;
            let (result, returned) = job.run_lent();
            let _ = sender.send(Compiled {
                request,
                base_generation,
                result,
                returned,
            });
        });
    }

    /// A mutation's compile finished: the core commits it if the running generation is still
    /// the one it was planned against, or has it planned again.
    pub(super) async fn on_compiled(&mut self, mut done: Compiled) {
        let Some(request) = self.mutations.get_mut(&done.request) else {
            return;
        };
        // A job that did not prepare hands the lent bundle back with its error: the mutation
        // keeps it whatever the core decides (answered, it goes with the mutation; planned
        // again, it is compiled again). A prepared one carries it, and the core has it kept
        // ([`Effect::KeepSources`]) when it plans the mutation again.
        if let Some(bundle) = done.returned.take() {
            request.input.give_back(bundle);
        }
        let rollback_of = match &request.input {
            CompileInput::Rollback { generation } => Some(*generation),
            CompileInput::Bundle { .. } => None,
        };
        let checks = request.terms.checks.clone();
        let who = request.terms.who.clone();
        self.handle(Event::Compiled {
            request: done.request,
            base_generation: done.base_generation,
            checks,
            result: Box::new(done.result),
            who,
            rollback_of,
        })
        .await;
    }

    /// Sends a request its answer.
    fn reply(&mut self, request: RequestId, answer: Result<Answer, EngineError>) {
        match answer {
            Ok(Answer::Reload(report)) => {
                // A peer that failed to start or be reconfigured during this reload has set an
                // error already: the reload's answer is that error, not the report.
                self.reload_answer.get_or_insert(Ok(report));
            }
            Ok(Answer::Mutation(outcome)) => {
                if let Some(mutation) = self.mutations.remove(&request) {
                    let _ = mutation.terms.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                if let Some(mutation) = self.mutations.remove(&request) {
                    self.log_lease_refusal(&error);
                    let _ = mutation.terms.reply.send(Err(error));
                    // The texts a refused mutation staged while it compiled go now, not at
                    // the next staging (one still being written is kept, and goes then),
                    // after the sweep before it, which the next commit waits for in turn.
                    let (before, store) =
                        (self.texts_sweep.take(), std::sync::Arc::clone(&self.store));
                    self.texts_sweep = Some(tokio::spawn(async move {
                        if let Some(before) = before {
                            let _ = before.await;
                        }
                        let sweep = move || store.sweep_unnamed_texts_if_any();
                        let _ = tokio::task::spawn_blocking(sweep).await;
                    }));
                } else {
                    self.reload_answer = Some(Err(error.message));
                }
            }
        }
    }

    /// Makes the generation durable, off the engine task: its texts (with their names and
    /// digests, when the compile gave them) are stored while the intent record (if any) is
    /// written ahead, each fsync'd — a push's were staged while it compiled (`early`), and
    /// only what is left of that staging is waited for; then the generation file naming the
    /// texts. Nothing names the texts before that file: when the record or the commit fails,
    /// the texts it staged are removed again. `rollback_of` names a rollback's target, which a full-disk error
    /// never offers to prune. Returns how long the texts, the record and the generation file
    /// took together, in milliseconds, and whether a generation was pruned (its texts are
    /// then to be swept).
    async fn commit(
        &self,
        (stored, digests, early): (
            StoredGeneration,
            Option<crate::state_store::SourceDigests>,
            Option<super::prepare::EarlyStaging>,
        ),
        write_ahead: Option<WriteAhead>,
        generation_before: u64,
        plan_hash: String,
        intended_verdict: &str,
        rollback_of: Option<u64>,
    ) -> Result<(u64, bool), EngineError> {
        let store = self.store.clone();
        let persist_started = Instant::now();
        let needed: Vec<u64> = rollback_of.into_iter().collect();
        let meta = stored.meta.clone();
        let staging = tokio::task::spawn_blocking({
            let store = store.clone();
            move || {
                // Staged while the push compiled, if that went well; else here, now.
                let staged = match early.and_then(super::prepare::EarlyStaging::wait) {
                    Some(Ok(staged)) => Ok(staged),
                    _ => store.stage_texts_with_digests(&stored.bundle.sources, digests.as_deref()),
                };
                // The texts (tens of megabytes, mapped or read) are let go on a thread of their
                // own: the commit, and the routes' publication after it, do not wait for the
                // memory to be given back (≈ 1 ms of a toggle).
                tokio::task::spawn_blocking(move || drop((stored, digests)));
                staged
            }
        });
        let recorded = match &write_ahead {
            Some(write_ahead) => {
                write_ahead
                    .record(
                        generation_before,
                        meta.generation,
                        Some(plan_hash.clone()),
                        intended_verdict,
                    )
                    .await
            }
            None => Ok(()),
        };
        // Waited for whatever the record did: a staging left running could meet the next
        // commit's.
        let staged = staging.await;
        if let Err(error) = recorded {
            let (store, needed) = (store.clone(), needed.clone());
            let staging_full = tokio::task::spawn_blocking(move || {
                // The texts staged for the mutation are given up before the sweep, which
                // would keep them for their staging otherwise.
                let staging = match staged {
                    Ok(Err(staging)) => Some(staging),
                    given_up => {
                        drop(given_up);
                        None
                    }
                };
                store.sweep_unnamed_texts();
                match staging {
                    Some(staging) if staging.is_no_space() => {
                        Some(store.with_prunable(staging, &needed))
                    }
                    Some(staging) => {
                        warn!(error = %staging, "the texts of a mutation whose intent record failed could not be stored either");
                        None
                    }
                    None => None,
                }
            })
            .await
            .ok()
            .flatten();
            let mut error = match staging_full {
                // The texts and the record found the same disk full: what could be pruned is
                // the answer that helps.
                Some(staging) => {
                    error!(%error, "the audit record could not be written ahead of a change; refused");
                    self.state_write_error(staging, "the generation")
                }
                None => self.audit_error(error),
            };
            error.plan_hash = Some(plan_hash.clone());
            return Err(error);
        }
        let staged =
            staged.map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), None))?;
        let pruned = tokio::task::spawn_blocking(move || {
            staged
                .and_then(|staged| store.commit_staged(&meta, &staged))
                .map_err(|error| {
                    store.sweep_unnamed_texts();
                    store.with_prunable(error, &needed)
                })
        })
        .await
        .map_err(|join| self.error(EngineErrorKind::Internal, join.to_string(), None))?
        .map_err(|error| {
            let mut error = self.state_write_error(error, "the generation");
            error.plan_hash = Some(plan_hash.clone());
            error
        })?;
        Ok((persist_started.elapsed().as_millis() as u64, pruned))
    }

    /// Stops one peer task (a reload): a peer that cannot take its withdrawals (a full TCP
    /// window) must not hold the engine, and with it every push and the next reload, for longer
    /// than the stop grace time.
    async fn stop_one_peer(&mut self, name: &str, withdraw_first: bool) {
        let Some(handle) = self.peers.remove(name) else {
            return;
        };
        let grace = self.reload_grace;
        let task = handle.task.abort_handle();
        let deadline = Instant::now() + grace;
        if tokio::time::timeout(grace, stop_peer(handle, withdraw_first, deadline))
            .await
            .is_err()
        {
            warn!(peer = %name, ?grace, "peer did not stop within the grace time; aborting its task");
            task.abort();
        }
        self.metrics.remove_peer(name);
        self.refresh_readiness();
    }
}
