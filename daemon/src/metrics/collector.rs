//! The scrape-time collector: the per-peer series (session state, routes desired, announced and
//! unencodable, UPDATE and prefix counters), readiness (`topologyd_ready`, peers holding the
//! running generation), the running generation and the fleet lock's lease, read from the
//! snapshots their owners already publish at the moment `/metrics` is scraped.
//!
//! ```text
//!  peer task ──watch<PeerStatus>──────────────┐
//!  engine ──PeerDirectory (peers started/stopped)─┤
//!  engine ──watch<EngineSnapshot> (generation, lease)─┼──► StatusCollector::encode (per scrape)
//!  engine ──Readiness (verdict, peers holding)─┘
//! ```
//!
//! Nothing is kept twice: a scrape shows each peer's last published state, never a copy folded
//! some time ago, and a peer no longer in the directory (stopped by a reload) has no series.
//!
//! Must not touch: any state it reads (it only borrows the snapshots), sockets, HTTP.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;

use super::{
    FAMILY_IPV4_UNICAST, FAMILY_IPV6_UNICAST, GENERATION, GENERATION_HELP, GENERATION_INFO,
    GENERATION_INFO_HELP, LEASE_HELD, LEASE_HELD_HELP, PEERS_HOLDING, PEERS_HOLDING_HELP, PREFIXES,
    PREFIXES_HELP, READY, READY_HELP, ROUTES_ANNOUNCED, ROUTES_ANNOUNCED_HELP, ROUTES_DESIRED,
    ROUTES_DESIRED_HELP, ROUTES_UNENCODABLE, ROUTES_UNENCODABLE_HELP, SESSION_STATE,
    SESSION_STATE_HELP, SessionState, UPDATE_MESSAGES, UPDATE_MESSAGES_HELP, saturating_i64,
};
use crate::peer::{PeerStatus, task_ended};
use crate::readiness::Readiness;

/// The peers the engine runs, by name, each with the status channel its task publishes on.
/// Written by the engine when a peer task starts or stops; read by the collector.
pub type PeerDirectory = BTreeMap<String, watch::Receiver<PeerStatus>>;

/// What the engine publishes for the collector besides the peers: the running generation and
/// whether the fleet lock's lease is held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSnapshot {
    pub generation: u64,
    pub hash: String,
    pub lease_held: bool,
}

/// Reads the published snapshots on every scrape; registered once in the registry.
#[derive(Debug)]
pub(super) struct StatusCollector {
    pub peers: watch::Receiver<PeerDirectory>,
    pub engine: watch::Receiver<EngineSnapshot>,
    pub readiness: Readiness,
}

/// One peer's numbers, read under its channel's lock and encoded after it is released.
#[derive(Debug, Clone, Copy)]
struct PeerSample {
    state: SessionState,
    desired: [u64; 2],
    announced: [u64; 2],
    unencodable: u64,
    /// UPDATEs, prefixes announced, prefixes withdrawn: sent, then received.
    sent: [u64; 3],
    received: [u64; 3],
}

/// The exported FSM state of a status's `state` text.
pub(super) fn session_state_metric(state: &str) -> SessionState {
    match state {
        "Connect" => SessionState::Connect,
        "Active" => SessionState::Active,
        "OpenSent" => SessionState::OpenSent,
        "OpenConfirm" => SessionState::OpenConfirm,
        "Established" => SessionState::Established,
        _ => SessionState::Idle,
    }
}

fn sample(receiver: &watch::Receiver<PeerStatus>, generation: u64) -> PeerSample {
    // A task that ended (it should not) holds no session, whatever it last published.
    let ended = task_ended(receiver);
    let status = receiver.borrow();
    let established = status.established && !ended;
    let synced = established && status.generation_synced == Some(generation);
    let desired = [status.routes_desired_ipv4, status.routes_desired_ipv6];
    PeerSample {
        state: if ended {
            SessionState::Idle
        } else {
            session_state_metric(&status.state)
        },
        desired,
        announced: desired.map(|routes| if synced { routes } else { 0 }),
        unencodable: status.routes_unencodable,
        sent: [
            status.updates_sent,
            status.prefixes_announced_sent,
            status.prefixes_withdrawn_sent,
        ],
        received: [
            status.updates_received,
            status.prefixes_received_ipv4 + status.prefixes_received_ipv6,
            status.withdrawals_received,
        ],
    }
}

/// The help text as the registry writes it (it ends every help with a full stop).
fn help(text: &str) -> String {
    format!("{text}.")
}

fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    text: &str,
    value: i64,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, &help(text), None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// The series of a per-family count (IPv4 unicast, IPv6 unicast) for [`encode_peer_gauges`].
fn per_family(counts: [u64; 2]) -> Vec<(Option<&'static str>, u64)> {
    vec![
        (Some(FAMILY_IPV4_UNICAST), counts[0]),
        (Some(FAMILY_IPV6_UNICAST), counts[1]),
    ]
}

/// A per-peer gauge family; `series` gives a peer's series as (family label, value).
fn encode_peer_gauges(
    encoder: &mut DescriptorEncoder,
    (name, text): (&str, &str),
    samples: &[(&str, PeerSample)],
    series: impl Fn(&PeerSample) -> Vec<(Option<&'static str>, u64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, &help(text), None, MetricType::Gauge)?;
    for (peer, sample) in samples {
        for (family, value) in series(sample) {
            let value = saturating_i64(value);
            match family {
                Some(family) => metric
                    .encode_family(&[("peer", *peer), ("family", family)])?
                    .encode_gauge(&value)?,
                None => metric
                    .encode_family(&[("peer", *peer)])?
                    .encode_gauge(&value)?,
            }
        }
    }
    Ok(())
}

/// The UPDATE and prefix counters; a direction's series appear once it carried anything (as
/// when they were counted as they happened).
fn encode_traffic(encoder: &mut DescriptorEncoder, samples: &[(&str, PeerSample)]) -> fmt::Result {
    let directions = |sample: &PeerSample| {
        [("sent", sample.sent), ("received", sample.received)]
            .into_iter()
            .filter(|(direction, counts)| {
                if *direction == "sent" {
                    counts.iter().any(|count| *count > 0)
                } else {
                    counts[0] > 0
                }
            })
            .collect::<Vec<_>>()
    };
    if samples
        .iter()
        .any(|(_, sample)| !directions(sample).is_empty())
    {
        let mut metric = encoder.encode_descriptor(
            UPDATE_MESSAGES,
            &help(UPDATE_MESSAGES_HELP),
            None,
            MetricType::Counter,
        )?;
        for (peer, sample) in samples {
            for (direction, counts) in directions(sample) {
                metric
                    .encode_family(&[("peer", *peer), ("direction", direction)])?
                    .encode_counter::<NoLabelSet, _, u64>(&counts[0], None)?;
            }
        }
        let mut metric =
            encoder.encode_descriptor(PREFIXES, &help(PREFIXES_HELP), None, MetricType::Counter)?;
        for (peer, sample) in samples {
            for (direction, counts) in directions(sample) {
                for (kind, count) in [("announced", counts[1]), ("withdrawn", counts[2])] {
                    metric
                        .encode_family(&[
                            ("peer", *peer),
                            ("direction", direction),
                            ("kind", kind),
                        ])?
                        .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
                }
            }
        }
    }
    Ok(())
}

impl Collector for StatusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let engine = self.engine.borrow().clone();
        let readiness = self.readiness.state();
        let directory = self.peers.borrow();
        let samples: Vec<(&str, PeerSample)> = directory
            .iter()
            .map(|(name, receiver)| (name.as_str(), sample(receiver, engine.generation)))
            .collect();
        if !samples.is_empty() {
            encode_peer_gauges(
                &mut encoder,
                (SESSION_STATE, SESSION_STATE_HELP),
                &samples,
                |sample| vec![(None, sample.state as u64)],
            )?;
            encode_peer_gauges(
                &mut encoder,
                (ROUTES_DESIRED, ROUTES_DESIRED_HELP),
                &samples,
                |sample| per_family(sample.desired),
            )?;
            encode_peer_gauges(
                &mut encoder,
                (ROUTES_ANNOUNCED, ROUTES_ANNOUNCED_HELP),
                &samples,
                |sample| per_family(sample.announced),
            )?;
            encode_peer_gauges(
                &mut encoder,
                (ROUTES_UNENCODABLE, ROUTES_UNENCODABLE_HELP),
                &samples,
                |sample| vec![(None, sample.unencodable)],
            )?;
        }
        encode_gauge(&mut encoder, READY, READY_HELP, i64::from(readiness.ready))?;
        encode_gauge(
            &mut encoder,
            PEERS_HOLDING,
            PEERS_HOLDING_HELP,
            saturating_i64(readiness.holding as u64),
        )?;
        encode_traffic(&mut encoder, &samples)?;
        encoder
            .encode_descriptor(
                GENERATION_INFO,
                &help(GENERATION_INFO_HELP),
                None,
                MetricType::Gauge,
            )?
            .encode_family(&[
                ("generation", engine.generation.to_string().as_str()),
                ("hash", engine.hash.as_str()),
            ])?
            .encode_gauge(&1_i64)?;
        encode_gauge(
            &mut encoder,
            GENERATION,
            GENERATION_HELP,
            saturating_i64(engine.generation),
        )?;
        encode_gauge(
            &mut encoder,
            LEASE_HELD,
            LEASE_HELD_HELP,
            i64::from(engine.lease_held),
        )
    }
}

/// The engine's side of the collector's sources: it owns the senders.
#[derive(Debug, Clone)]
pub(super) struct Sources {
    pub peers: Arc<watch::Sender<PeerDirectory>>,
    pub engine: Arc<watch::Sender<EngineSnapshot>>,
}
