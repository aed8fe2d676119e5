//! The RPKI series, read at scrape time from the sample the engine publishes after every VRP
//! update and every publication (`engine/rpki_task.rs`): routes by RFC 6811 state, the invalid
//! routes still announced (the alarm under `invalid_policy = "keep"`), each RTR cache's
//! session, the serial and the age of the last update, and the VRPs by family. Nothing is
//! exported without `[rpki]`.
//!
//! Must not touch: the engine's state (it only borrows the sample), sockets, HTTP.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use tokio::sync::watch;
use topologyd_api::{RpkiRouteCounts, RpkiSyncState};

use super::saturating_i64;

/// `topologyd_rpki_routes{state}`: routes of this location's topology by RFC 6811 state.
pub const RPKI_ROUTES: &str = "topologyd_rpki_routes";
pub const RPKI_ROUTES_HELP: &str =
    "Routes of this location's topology by RPKI origin validation state (RFC 6811)";
/// `topologyd_rpki_invalid_announced`: the alarm.
pub const RPKI_INVALID_ANNOUNCED: &str = "topologyd_rpki_invalid_announced";
pub const RPKI_INVALID_ANNOUNCED_HELP: &str =
    "RPKI-invalid routes still sent to the peers (invalid_policy keep): fix the ROA or the route";
/// `topologyd_rpki_in_sync`: 1 while the VRP set is the current data of a connected cache.
pub const RPKI_IN_SYNC: &str = "topologyd_rpki_in_sync";
pub const RPKI_IN_SYNC_HELP: &str =
    "1 while the VRP set is a connected RTR cache's current data (0: connecting, stale or expired)";
/// `topologyd_rpki_cache_up{cache}` and `topologyd_rpki_cache_serving{cache}`.
pub const RPKI_CACHE_UP: &str = "topologyd_rpki_cache_up";
pub const RPKI_CACHE_UP_HELP: &str =
    "1 while the RTR session to this cache is up and in sync with it";
pub const RPKI_CACHE_SERVING: &str = "topologyd_rpki_cache_serving";
pub const RPKI_CACHE_SERVING_HELP: &str =
    "1 when the VRP set in use came from this cache (in sync or stale)";
/// `topologyd_rpki_serial`.
pub const RPKI_SERIAL: &str = "topologyd_rpki_serial";
pub const RPKI_SERIAL_HELP: &str = "Serial of the RTR cache's last End of Data (absent before one)";
/// `topologyd_rpki_last_update_timestamp_seconds` and `topologyd_rpki_last_update_age_seconds`.
pub const RPKI_LAST_UPDATE: &str = "topologyd_rpki_last_update_timestamp_seconds";
pub const RPKI_LAST_UPDATE_HELP: &str =
    "Unix time of the last completed RTR update (absent before one)";
pub const RPKI_LAST_UPDATE_AGE: &str = "topologyd_rpki_last_update_age_seconds";
pub const RPKI_LAST_UPDATE_AGE_HELP: &str =
    "Seconds since the last completed RTR update (absent before one)";
/// `topologyd_rpki_vrps{family}`.
pub const RPKI_VRPS: &str = "topologyd_rpki_vrps";
pub const RPKI_VRPS_HELP: &str = "Validated ROA Payloads held, by address family";

/// What the engine last published about RPKI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpkiSample {
    pub sync: Option<RpkiSyncState>,
    /// Each configured cache: address, session up (in sync), serving the set in use.
    pub caches: Vec<(String, bool, bool)>,
    pub serial: Option<u32>,
    pub last_update_unix_ms: Option<u64>,
    pub vrps_ipv4: u64,
    pub vrps_ipv6: u64,
    pub counts: RpkiRouteCounts,
    pub invalid_announced: u64,
}

/// Reads the engine's sample on every scrape.
#[derive(Debug)]
pub(super) struct RpkiCollector {
    pub sample: watch::Receiver<Arc<RpkiSample>>,
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, text: &str, value: i64) -> fmt::Result {
    encoder
        .encode_descriptor(name, &format!("{text}."), None, MetricType::Gauge)?
        .encode_gauge(&value)
}

fn labelled(
    encoder: &mut DescriptorEncoder,
    (name, text): (&str, &str),
    label: &str,
    series: &[(&str, i64)],
) -> fmt::Result {
    let mut metric =
        encoder.encode_descriptor(name, &format!("{text}."), None, MetricType::Gauge)?;
    for (value_label, value) in series {
        metric
            .encode_family(&[(label, *value_label)])?
            .encode_gauge(value)?;
    }
    Ok(())
}

impl Collector for RpkiCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sample = self.sample.borrow().clone();
        let Some(sync) = sample.sync else {
            return Ok(());
        };
        let counts = sample.counts;
        labelled(
            &mut encoder,
            (RPKI_ROUTES, RPKI_ROUTES_HELP),
            "state",
            &[
                ("valid", saturating_i64(counts.valid)),
                ("invalid", saturating_i64(counts.invalid)),
                ("not_found", saturating_i64(counts.not_found)),
            ],
        )?;
        gauge(
            &mut encoder,
            RPKI_INVALID_ANNOUNCED,
            RPKI_INVALID_ANNOUNCED_HELP,
            saturating_i64(sample.invalid_announced),
        )?;
        gauge(
            &mut encoder,
            RPKI_IN_SYNC,
            RPKI_IN_SYNC_HELP,
            i64::from(sync == RpkiSyncState::InSync),
        )?;
        let up: Vec<(&str, i64)> = sample
            .caches
            .iter()
            .map(|(cache, up, _)| (cache.as_str(), i64::from(*up)))
            .collect();
        labelled(
            &mut encoder,
            (RPKI_CACHE_UP, RPKI_CACHE_UP_HELP),
            "cache",
            &up,
        )?;
        let serving: Vec<(&str, i64)> = sample
            .caches
            .iter()
            .map(|(cache, _, serving)| (cache.as_str(), i64::from(*serving)))
            .collect();
        labelled(
            &mut encoder,
            (RPKI_CACHE_SERVING, RPKI_CACHE_SERVING_HELP),
            "cache",
            &serving,
        )?;
        if let Some(serial) = sample.serial {
            gauge(
                &mut encoder,
                RPKI_SERIAL,
                RPKI_SERIAL_HELP,
                i64::from(serial),
            )?;
        }
        if let Some(updated) = sample.last_update_unix_ms {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| {
                    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
                });
            gauge(
                &mut encoder,
                RPKI_LAST_UPDATE,
                RPKI_LAST_UPDATE_HELP,
                saturating_i64(updated / 1000),
            )?;
            gauge(
                &mut encoder,
                RPKI_LAST_UPDATE_AGE,
                RPKI_LAST_UPDATE_AGE_HELP,
                saturating_i64(now.saturating_sub(updated) / 1000),
            )?;
        }
        labelled(
            &mut encoder,
            (RPKI_VRPS, RPKI_VRPS_HELP),
            "family",
            &[
                ("ipv4", saturating_i64(sample.vrps_ipv4)),
                ("ipv6", saturating_i64(sample.vrps_ipv6)),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn nothing_without_rpki_and_every_series_with_help_with_it() {
        let metrics = Metrics::new();
        let text = metrics.render().unwrap_or_default();
        assert!(!text.contains("topologyd_rpki"), "{text}");
        metrics.set_rpki(RpkiSample {
            sync: Some(RpkiSyncState::InSync),
            caches: vec![
                ("127.0.0.1:3323".into(), true, true),
                ("127.0.0.2:3323".into(), false, false),
            ],
            serial: Some(7),
            last_update_unix_ms: Some(1_000_000),
            vrps_ipv4: 3,
            vrps_ipv6: 1,
            counts: RpkiRouteCounts {
                valid: 4,
                invalid: 1,
                not_found: 1,
            },
            invalid_announced: 1,
        });
        let text = metrics.render().unwrap_or_default();
        for line in [
            "topologyd_rpki_routes{state=\"invalid\"} 1",
            "topologyd_rpki_invalid_announced 1",
            "topologyd_rpki_in_sync 1",
            "topologyd_rpki_cache_up{cache=\"127.0.0.1:3323\"} 1",
            "topologyd_rpki_cache_serving{cache=\"127.0.0.2:3323\"} 0",
            "topologyd_rpki_serial 7",
            "topologyd_rpki_last_update_timestamp_seconds 1000",
            "topologyd_rpki_vrps{family=\"ipv6\"} 1",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        for name in [
            RPKI_ROUTES,
            RPKI_INVALID_ANNOUNCED,
            RPKI_LAST_UPDATE_AGE,
            RPKI_VRPS,
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}: {text}");
        }
    }
}
