//! One line per [`Effect`], deterministic: the golden replays (`daemon/tests/conformance/`)
//! compare these lines. Must not touch anything but the effect it prints.

use super::{Answer, Effect};

/// One line per effect, deterministic (the golden replays compare these).
impl std::fmt::Display for Effect {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effect::Compile {
                request,
                base_generation,
            } => write!(
                formatter,
                "compile request={request} base={base_generation}"
            ),
            Effect::KeepSources { request, bundle } => write!(
                formatter,
                "keep-sources request={request} files={}",
                bundle.sources.len()
            ),
            Effect::CountGuardRefusals { guard, count } => {
                write!(formatter, "count-guard-refusals {guard} {count}")
            }
            Effect::Commit {
                request,
                stored,
                generation_before,
                intended_verdict,
                rollback_of,
                ..
            } => write!(
                formatter,
                "commit request={request} generation {generation_before} -> {} verdict={intended_verdict} who={:?} intent={:?} rollback_of={rollback_of:?}",
                stored.meta.generation, stored.meta.who, stored.meta.intent
            ),
            Effect::GenerationApplied { request, meta } => write!(
                formatter,
                "generation-applied request={request} generation={}",
                meta.generation
            ),
            Effect::Release(previous) => {
                write!(formatter, "release generation={}", previous.meta.generation)
            }
            Effect::UpdateHealthSpecs => write!(formatter, "update-health-specs"),
            Effect::ServiceChanged {
                service, decision, ..
            } => write!(
                formatter,
                "service-changed {service} action={} healthy={:?} drained={} floor_held={}",
                decision.action.as_str(),
                decision.healthy,
                decision.drained,
                decision.floor_held
            ),
            Effect::Bind { address } => write!(formatter, "bind {address}"),
            Effect::Unbind { address } => write!(formatter, "unbind {address}"),
            Effect::ListAddresses => write!(formatter, "list-addresses"),
            Effect::AddressVanished { address } => write!(formatter, "address-vanished {address}"),
            Effect::Publish(routes) => {
                write!(
                    formatter,
                    "publish version={} generation={}:",
                    routes.version, routes.generation
                )?;
                for (prefix, index) in routes.routes.iter() {
                    match routes.intent(*index) {
                        Some(intent) if intent.degraded => {
                            write!(formatter, " {prefix}={}(degraded)", intent.service)?;
                        }
                        Some(intent) => write!(formatter, " {prefix}={}", intent.service)?,
                        None => write!(formatter, " {prefix}=?")?,
                    }
                }
                Ok(())
            }
            Effect::ReportServices => write!(formatter, "report-services"),
            Effect::RouteRpki(change) => write!(
                formatter,
                "route-rpki {} AS{} {:?} -> {:?} held {} -> {}",
                change.prefix,
                change.origin_asn,
                change.before,
                change.after,
                change.held_before,
                change.held_after
            ),
            Effect::StopPeer {
                peer,
                withdraw_first,
            } => write!(
                formatter,
                "stop-peer {peer} withdraw_first={withdraw_first}"
            ),
            Effect::StartPeer { peer } => write!(formatter, "start-peer {peer}"),
            Effect::ReconfigurePeer { peer } => write!(formatter, "reconfigure-peer {peer}"),
            Effect::Reply { request, answer } => match answer {
                Ok(Answer::Mutation(outcome)) => write!(
                    formatter,
                    "reply request={request} ok generation {} -> {}",
                    outcome.generation_before, outcome.generation_after
                ),
                Ok(Answer::Reload(report)) => {
                    write!(formatter, "reply request={request} ok {report}")
                }
                Err(error) => write!(
                    formatter,
                    "reply request={request} error {:?}: {}",
                    error.kind, error.message
                ),
            },
        }
    }
}
