//! The TOML schema of `topologyd.toml` as serde reads it (one struct per table, unknown keys
//! rejected, values a check can complain about kept `Spanned`), and the helpers that turn those
//! spanned values into spans and parsed values, with an error at the value when they do not parse.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::model::{Family, Role};
use crate::diagnostic::Collector;
use crate::source::Span;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DaemonFile {
    pub(super) location: Spanned<String>,
    pub(super) local_asn: Spanned<u32>,
    pub(super) router_id: Spanned<String>,
    pub(super) state_dir: Spanned<String>,
    #[serde(default)]
    pub(super) bootstrap_topology: Vec<String>,
    pub(super) retained_generations: Option<Spanned<usize>>,
    pub(super) bgp: Option<BgpFile>,
    pub(super) graceful_restart: Option<GracefulRestartFile>,
    pub(super) shutdown: Option<ShutdownFile>,
    pub(super) admin: Option<AdminFile>,
    pub(super) control: Option<ControlFile>,
    pub(super) health: Option<HealthFile>,
    pub(super) readiness: Option<ReadinessFile>,
    #[serde(default)]
    pub(super) peer: Vec<PeerFile>,
    pub(super) rpki: Option<super::rpki_policy::RpkiFile>,
    pub(super) bmp: Option<super::bmp_station::BmpFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadinessFile {
    pub(super) min_established: Option<Spanned<usize>>,
    pub(super) min_established_share: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HealthFile {
    pub(super) enabled: Option<bool>,
    pub(super) fail_static_share: Option<Spanned<f64>>,
    pub(super) fail_static_min_services: Option<Spanned<usize>>,
    pub(super) min_other_locations: Option<usize>,
    pub(super) address_interface: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) vars: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BgpFile {
    #[serde(default)]
    pub(super) listen: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GracefulRestartFile {
    pub(super) enabled: Option<bool>,
    pub(super) restart_time_seconds: Option<Spanned<u16>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ShutdownFile {
    pub(super) grace_seconds: Option<u32>,
    pub(super) withdraw_on_stop: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdminFile {
    pub(super) listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ControlFile {
    pub(super) listen: Spanned<String>,
    pub(super) certificate: String,
    pub(super) private_key: String,
    pub(super) client_ca: String,
    #[serde(default)]
    pub(super) roles: BTreeMap<String, Role>,
    pub(super) audit_log: String,
    pub(super) max_body_bytes: Option<usize>,
    pub(super) max_reader_body_bytes: Option<usize>,
    pub(super) compile_memory_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeerFile {
    pub(super) name: Spanned<String>,
    pub(super) address: Spanned<String>,
    pub(super) port: Option<u16>,
    pub(super) asn: Spanned<u32>,
    pub(super) local_address: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) passive: bool,
    pub(super) hold_time_seconds: Option<Spanned<u16>>,
    pub(super) send_hold_time_seconds: Option<Spanned<u32>>,
    pub(super) connect_retry_seconds: Option<Spanned<u16>>,
    pub(super) families: Option<Spanned<Vec<Family>>>,
    pub(super) next_hop_ipv4: Option<Spanned<String>>,
    pub(super) next_hop_ipv6: Option<Spanned<String>>,
    pub(super) md5_key_file: Option<String>,
    pub(super) ttl_security_hops: Option<Spanned<u8>>,
    pub(super) max_prefix: Option<u64>,
    pub(super) extended_messages: Option<bool>,
}

pub(super) fn span_of<T>(spanned: &Spanned<T>) -> Span {
    Span::new(0, spanned.span())
}

pub(super) fn parse_value<T: std::str::FromStr>(
    text: &Spanned<String>,
    what: &str,
    example: &str,
    collector: &mut Collector,
) -> Option<T> {
    match text.get_ref().parse::<T>() {
        Ok(value) => Some(value),
        Err(_) => {
            collector.error(
                Some(span_of(text)),
                format!("`{}` is not a valid {what}", text.get_ref()),
                Some(format!("write it like \"{example}\"")),
            );
            None
        }
    }
}

/// The value of an optional setting, or `default` when it is absent. When it is present and
/// `problem` finds something wrong with it (a message and help), that is an error at the value.
pub(super) fn checked_value<T: Copy, M: Into<String>>(
    value: &Option<Spanned<T>>,
    default: T,
    collector: &mut Collector,
    problem: impl FnOnce(T) -> Option<(M, Option<String>)>,
) -> T {
    let Some(spanned) = value else {
        return default;
    };
    let inner = *spanned.get_ref();
    if let Some((message, help)) = problem(inner) {
        collector.error(Some(span_of(spanned)), message, help);
    }
    inner
}
