//! The BMP station's series, read at scrape time from the sample the station task publishes
//! after every evaluation, and from the counters its connection tasks bump. Label cardinality
//! is bounded by the configuration and the topology, never by what a router streams: findings
//! by kind (five values) and own route (the onboarded prefix or announced route the finding
//! concerns, so a hijacker's thousand more-specifics of one prefix are one series with a
//! count of a thousand; the exact prefix, router and peer of each finding are in
//! `/v1/visibility` and the log), refusals and dropped routers by one of two reasons each.
//! A findings series exists while its count is not zero. Nothing is exported without `[bmp]`.
//!
//! Must not touch: the station's state (it only borrows the sample), sockets, HTTP.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;

use super::saturating_i64;

/// `topologyd_bmp_routers`: routers connected to the station.
pub const BMP_ROUTERS: &str = "topologyd_bmp_routers";
pub const BMP_ROUTERS_HELP: &str = "Routers connected to the BMP station";
/// `topologyd_bmp_routes`: routes held for all routers, peers and RIBs.
pub const BMP_ROUTES: &str = "topologyd_bmp_routes";
pub const BMP_ROUTES_HELP: &str = "Routes the BMP station holds (every router, peer and RIB kind)";
/// `topologyd_bmp_memory_bytes`: estimated heap held by the station's tables.
pub const BMP_MEMORY: &str = "topologyd_bmp_memory_bytes";
pub const BMP_MEMORY_HELP: &str = "Estimated heap bytes of the BMP station's route tables";
/// `topologyd_bmp_messages_total`: BMP messages read.
pub const BMP_MESSAGES: &str = "topologyd_bmp_messages";
pub const BMP_MESSAGES_HELP: &str = "BMP messages read from routers";
/// `topologyd_bmp_messages_dropped_total`: messages that found the queue full.
pub const BMP_DROPPED: &str = "topologyd_bmp_messages_dropped";
pub const BMP_DROPPED_HELP: &str =
    "BMP messages dropped because the station's queue was full (their connection is closed)";
/// `topologyd_bmp_stream_errors_total`: connections closed for a stream that is not BMP.
pub const BMP_STREAM_ERRORS: &str = "topologyd_bmp_stream_errors";
pub const BMP_STREAM_ERRORS_HELP: &str =
    "BMP connections closed because their stream could not be read, or sent no Initiation in time";
/// `topologyd_bmp_connections_lost_total`: connections whose reads failed.
pub const BMP_LOST: &str = "topologyd_bmp_connections_lost";
pub const BMP_LOST_HELP: &str =
    "BMP connections whose reads failed: reset by the router, or found gone by TCP keepalive";
/// `topologyd_bmp_connections_refused_total{reason}`: `allow` or `max_routers`.
pub const BMP_REFUSED: &str = "topologyd_bmp_connections_refused";
pub const BMP_REFUSED_HELP: &str =
    "BMP connections closed at accept: source outside `allow`, or `max_routers` reached";
/// `topologyd_bmp_routers_dropped_total{reason}`: `max_routes` or `max_peers`.
pub const BMP_ROUTERS_DROPPED: &str = "topologyd_bmp_routers_dropped";
pub const BMP_ROUTERS_DROPPED_HELP: &str = "BMP routers whose state was dropped for going over a per-router bound (`max_routes_per_router`, `max_peers_per_router`), ignored until they reconnect";
/// `topologyd_visibility_findings{kind,prefix}`: raised findings by kind and the own route
/// (onboarded prefix or announced route) they concern.
pub const VISIBILITY_FINDINGS: &str = "topologyd_visibility_findings";
pub const VISIBILITY_FINDINGS_HELP: &str = "Hijack and visibility findings raised now, by kind and the own prefix or announced route they concern (details: /v1/visibility)";

/// What the station task last published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BmpSample {
    pub enabled: bool,
    pub routers: u64,
    pub routes: u64,
    pub memory_bytes: u64,
    /// Routers dropped for going over `max_routes_per_router`, and `max_peers_per_router`.
    pub routers_dropped_max_routes: u64,
    pub routers_dropped_max_peers: u64,
    /// Raised findings per kind and own route, only those with a count.
    pub findings: Vec<FindingSeries>,
}

/// One series of `topologyd_visibility_findings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingSeries {
    /// The kind's name (`exact_hijack`, ...).
    pub kind: &'static str,
    /// The own route the findings concern, as text (`192.0.2.0/24`).
    pub prefix: String,
    /// Raised findings of that kind on that route.
    pub count: u64,
}

/// Counters the connection tasks bump where the event happens.
#[derive(Debug, Default)]
pub struct BmpCounters {
    pub messages: AtomicU64,
    pub dropped: AtomicU64,
    pub stream_errors: AtomicU64,
    pub lost: AtomicU64,
    pub refused_allow: AtomicU64,
    pub refused_max_routers: AtomicU64,
}

/// Reads the sample and the counters on every scrape.
#[derive(Debug)]
pub(super) struct BmpCollector {
    pub sample: watch::Receiver<Arc<BmpSample>>,
    pub counters: Arc<BmpCounters>,
}

fn gauge(encoder: &mut DescriptorEncoder, (name, text): (&str, &str), value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, &format!("{text}."), None, MetricType::Gauge)?
        .encode_gauge(&saturating_i64(value))
}

fn counter(
    encoder: &mut DescriptorEncoder,
    (name, text): (&str, &str),
    value: &AtomicU64,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, &format!("{text}."), None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value.load(Ordering::Relaxed), None)
}

impl Collector for BmpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sample = self.sample.borrow().clone();
        if !sample.enabled {
            return Ok(());
        }
        gauge(
            &mut encoder,
            (BMP_ROUTERS, BMP_ROUTERS_HELP),
            sample.routers,
        )?;
        gauge(&mut encoder, (BMP_ROUTES, BMP_ROUTES_HELP), sample.routes)?;
        gauge(
            &mut encoder,
            (BMP_MEMORY, BMP_MEMORY_HELP),
            sample.memory_bytes,
        )?;
        counter(
            &mut encoder,
            (BMP_MESSAGES, BMP_MESSAGES_HELP),
            &self.counters.messages,
        )?;
        counter(
            &mut encoder,
            (BMP_DROPPED, BMP_DROPPED_HELP),
            &self.counters.dropped,
        )?;
        counter(
            &mut encoder,
            (BMP_STREAM_ERRORS, BMP_STREAM_ERRORS_HELP),
            &self.counters.stream_errors,
        )?;
        counter(&mut encoder, (BMP_LOST, BMP_LOST_HELP), &self.counters.lost)?;
        let mut refused = encoder.encode_descriptor(
            BMP_REFUSED,
            &format!("{BMP_REFUSED_HELP}."),
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("allow", &self.counters.refused_allow),
            ("max_routers", &self.counters.refused_max_routers),
        ] {
            refused
                .encode_family(&[("reason", reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&value.load(Ordering::Relaxed), None)?;
        }
        let mut dropped = encoder.encode_descriptor(
            BMP_ROUTERS_DROPPED,
            &format!("{BMP_ROUTERS_DROPPED_HELP}."),
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("max_routes", sample.routers_dropped_max_routes),
            ("max_peers", sample.routers_dropped_max_peers),
        ] {
            dropped
                .encode_family(&[("reason", reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        let mut findings = encoder.encode_descriptor(
            VISIBILITY_FINDINGS,
            &format!("{VISIBILITY_FINDINGS_HELP}."),
            None,
            MetricType::Gauge,
        )?;
        for series in &sample.findings {
            findings
                .encode_family(&[("kind", series.kind), ("prefix", series.prefix.as_str())])?
                .encode_gauge(&saturating_i64(series.count))?;
        }
        Ok(())
    }
}
