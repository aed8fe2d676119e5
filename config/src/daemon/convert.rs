//! Turning a parsed `topologyd.toml` into a [`DaemonConfig`]: the daemon's identity, listeners,
//! graceful restart, shutdown, admin and control sections and `[readiness]`, each checked with
//! its error at the value; peers, `[health]` and `[rpki]` are converted by their own modules.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::bmp_station::convert_bmp;
use super::file::{
    BgpFile, ControlFile, DaemonFile, GracefulRestartFile, ReadinessFile, ShutdownFile,
    checked_value, parse_value, span_of,
};
use super::health_policy::convert_health;
use super::model::*;
use super::peer::convert_peers;
use super::rpki_policy::convert_rpki;
use crate::diagnostic::{Collector, Diagnostics};
use crate::source::{Source, SourceMap, Span};

/// Parses and validates a daemon configuration file. All errors are reported together.
pub fn parse_daemon_config(source: &Source) -> Result<DaemonConfig, Diagnostics> {
    let sources = SourceMap::new(vec![source.clone()]);
    let mut collector = Collector::new();
    let file: DaemonFile = match toml::from_str(&source.text) {
        Ok(file) => file,
        Err(failure) => {
            let span = failure
                .span()
                .map_or(Span::new(0, 0..0), |range| Span::new(0, range));
            let help = failure.message().contains("unknown field").then(|| {
                "remove the key or fix its spelling; unknown keys are rejected".to_string()
            });
            collector.error(Some(span), failure.message().trim_end().to_string(), help);
            return Err(collector.finish(&sources));
        }
    };
    let config = convert(file, &mut collector);
    if collector.has_errors() {
        return Err(collector.finish(&sources));
    }
    config.ok_or_else(|| collector.finish(&sources))
}

/// The whole file, section by section, every error reported; `None` when the router id did not
/// parse.
fn convert(file: DaemonFile, collector: &mut Collector) -> Option<DaemonConfig> {
    let router_id = check_identity(&file, collector);
    // At least 1: the last known good generation, for rollback.
    let retained_generations = checked_value(
        &file.retained_generations,
        DEFAULT_RETAINED_GENERATIONS,
        collector,
        |retained_generations| {
            (retained_generations == 0).then(|| {
                (
                    "retained_generations must be at least 1",
                    Some("keep at least the last known good generation for rollback".into()),
                )
            })
        },
    );
    let bgp_listen = file
        .bgp
        .map(|bgp| convert_bgp_listen(&bgp, collector))
        .unwrap_or_default();
    let graceful_restart = convert_graceful_restart(file.graceful_restart, collector);
    let shutdown = convert_shutdown(file.shutdown.as_ref());
    let admin = file.admin.and_then(|admin| {
        parse_value::<SocketAddr>(&admin.listen, "socket address", "127.0.0.1:9179", collector)
            .map(|listen| AdminConfig { listen })
    });
    let control = file
        .control
        .and_then(|control| convert_control(control, collector));
    let peer_count = file.peer.len();
    let readiness = file
        .readiness
        .map(|readiness| convert_readiness(readiness, peer_count, collector))
        .unwrap_or_default();
    let peers = convert_peers(file.peer, &bgp_listen, collector);
    let rpki = file.rpki.map(|rpki| convert_rpki(rpki, collector));
    let bmp = file.bmp.map(|bmp| convert_bmp(bmp, collector));
    Some(DaemonConfig {
        location: file.location.into_inner(),
        local_asn: file.local_asn.into_inner(),
        router_id: router_id?,
        state_dir: file.state_dir.into_inner().into(),
        bootstrap_topology: file
            .bootstrap_topology
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        retained_generations,
        bgp_listen,
        graceful_restart,
        shutdown,
        admin,
        control,
        health: file
            .health
            .map(|health| convert_health(health, collector))
            .unwrap_or_default(),
        readiness,
        peers,
        rpki,
        bmp,
    })
}

/// `location`, `local_asn` and `router_id`: who this daemon is. The router id, when it parses.
fn check_identity(file: &DaemonFile, collector: &mut Collector) -> Option<Ipv4Addr> {
    if file.location.get_ref().trim().is_empty() {
        collector.error(
            Some(span_of(&file.location)),
            "`location` is empty",
            Some("name the location of this daemon as the topology's fleet names it".into()),
        );
    }
    if *file.local_asn.get_ref() == 0 || *file.local_asn.get_ref() == 23456 {
        collector.error(
            Some(span_of(&file.local_asn)),
            format!("local_asn {} is reserved", file.local_asn.get_ref()),
            Some("use the ASN this location speaks BGP with (not 0, not AS_TRANS 23456)".into()),
        );
    }
    let router_id = parse_value::<Ipv4Addr>(&file.router_id, "router id", "192.0.2.1", collector);
    if router_id == Some(Ipv4Addr::UNSPECIFIED) {
        collector.error(
            Some(span_of(&file.router_id)),
            "router_id 0.0.0.0 is not allowed (RFC 6286)",
            Some("use a unique non-zero IPv4 address of this router".into()),
        );
    }
    router_id
}

/// `[bgp] listen`: the addresses that parse (each one that does not is an error).
fn convert_bgp_listen(bgp: &BgpFile, collector: &mut Collector) -> Vec<SocketAddr> {
    bgp.listen
        .iter()
        .filter_map(|text| {
            parse_value::<SocketAddr>(text, "socket address", "127.0.0.1:179", collector)
        })
        .collect()
}

/// `[graceful_restart]`, on by default; the restart time must fit RFC 4724's 12 bits.
fn convert_graceful_restart(
    section: Option<GracefulRestartFile>,
    collector: &mut Collector,
) -> GracefulRestartConfig {
    let Some(section) = section else {
        return GracefulRestartConfig {
            enabled: true,
            restart_time_seconds: DEFAULT_RESTART_TIME_SECONDS,
        };
    };
    let restart_time = checked_value(
        &section.restart_time_seconds,
        DEFAULT_RESTART_TIME_SECONDS,
        collector,
        |restart_time| {
            (restart_time > 4095).then(|| {
                (
                    format!("restart_time_seconds {} does not fit", restart_time),
                    Some("RFC 4724 §3 gives the restart time 12 bits: at most 4095".into()),
                )
            })
        },
    );
    GracefulRestartConfig {
        enabled: section.enabled.unwrap_or(true),
        restart_time_seconds: restart_time,
    }
}

/// `[shutdown]`, defaults filled in.
fn convert_shutdown(section: Option<&ShutdownFile>) -> ShutdownConfig {
    ShutdownConfig {
        grace_seconds: section
            .and_then(|section| section.grace_seconds)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS),
        withdraw_on_stop: section
            .and_then(|section| section.withdraw_on_stop)
            .unwrap_or(false),
    }
}

/// `[control]`: the listener must parse, and at least one role must be able to use the API.
fn convert_control(control: ControlFile, collector: &mut Collector) -> Option<ControlConfig> {
    let listen = parse_value::<SocketAddr>(
        &control.listen,
        "socket address",
        "127.0.0.1:9180",
        collector,
    )?;
    if control.roles.is_empty() {
        collector.error(
            Some(span_of(&control.listen)),
            "the control API has no [control.roles]: nobody could use it",
            Some(
                "add e.g. `roles = { \"sre-oncall\" = \"admin\" }` (certificate CN → role)".into(),
            ),
        );
    }
    Some(ControlConfig {
        listen,
        certificate: control.certificate.into(),
        private_key: control.private_key.into(),
        client_ca: control.client_ca.into(),
        roles: control.roles,
        audit_log: control.audit_log.into(),
        max_body_bytes: control
            .max_body_bytes
            .unwrap_or(DEFAULT_CONTROL_MAX_BODY_BYTES),
        max_reader_body_bytes: control
            .max_reader_body_bytes
            .unwrap_or(DEFAULT_CONTROL_MAX_READER_BODY_BYTES),
        compile_memory_bytes: control
            .compile_memory_bytes
            .unwrap_or(DEFAULT_COMPILE_MEMORY_BYTES),
    })
}

/// `[readiness]`, defaults filled in.
fn convert_readiness(
    file: ReadinessFile,
    peer_count: usize,
    collector: &mut Collector,
) -> ReadinessConfig {
    let defaults = ReadinessConfig::default();
    let min_established = checked_value(
        &file.min_established,
        defaults.min_established,
        collector,
        |min_established| {
            (min_established > peer_count).then(|| {
            (
            format!(
                "min_established = {min_established} but only {peer_count} peer(s) are configured: \
                 the daemon could never be ready"
            ),
            Some(format!(
                "write at most {peer_count}, or min_established_share = 1.0 for \"every peer\""
            )),
            )
        })
        },
    );
    let share = file.min_established_share.as_ref().map(|value| {
        let share = *value.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            collector.error(
                Some(span_of(value)),
                format!("min_established_share = {share} is outside 0 < share ≤ 1"),
                Some("write a share of the peers such as 0.5 (half of them, rounded up)".into()),
            );
        }
        share
    });
    ReadinessConfig {
        min_established,
        min_established_share: share,
    }
}
