//! The daemon's `[bmp]` section: the BMP station's listeners (RFC 7854: the routers connect to
//! the station), which source addresses may connect, and its bounds (routers, queue, settle
//! time, routes and peers per router) and the keepalive of router connections, each checked
//! with its error at the value.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::file::{checked_value, parse_value, span_of};
use super::model::{
    BmpConfig, DEFAULT_BMP_MAX_PEERS_PER_ROUTER, DEFAULT_BMP_MAX_ROUTERS,
    DEFAULT_BMP_MAX_ROUTES_PER_ROUTER, DEFAULT_BMP_QUEUE_MESSAGES, DEFAULT_BMP_SETTLE_SECONDS,
    DEFAULT_BMP_TCP_KEEPALIVE_SECONDS, MAX_BMP_TCP_KEEPALIVE_SECONDS,
};
use crate::diagnostic::Collector;

/// `[bmp]` as serde reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BmpFile {
    pub(super) listen: Spanned<Vec<Spanned<String>>>,
    pub(super) allow: Option<Vec<Spanned<String>>>,
    pub(super) max_routers: Option<Spanned<usize>>,
    pub(super) queue_messages: Option<Spanned<usize>>,
    pub(super) settle_seconds: Option<Spanned<u32>>,
    pub(super) max_routes_per_router: Option<Spanned<usize>>,
    pub(super) max_peers_per_router: Option<Spanned<usize>>,
    pub(super) tcp_keepalive_seconds: Option<Spanned<u32>>,
}

/// `[bmp]`, defaults filled in.
pub(super) fn convert_bmp(file: BmpFile, collector: &mut Collector) -> BmpConfig {
    if file.listen.get_ref().is_empty() {
        collector.error(
            Some(span_of(&file.listen)),
            "[bmp] has no listen address",
            Some("add e.g. `listen = [\"127.0.0.1:11019\"]`, or remove [bmp]".into()),
        );
    }
    let listen: Vec<SocketAddr> = file
        .listen
        .get_ref()
        .iter()
        .filter_map(|text| parse_value(text, "socket address", "127.0.0.1:11019", collector))
        .collect();
    let allow: Vec<IpNet> = match &file.allow {
        None => vec![
            "127.0.0.0/8".parse().unwrap_or_default(),
            "::1/128".parse().unwrap_or_default(),
        ],
        Some(list) => list
            .iter()
            .filter_map(|text| parse_value(text, "prefix", "192.0.2.0/24", collector))
            .map(|prefix: IpNet| prefix.trunc())
            .collect(),
    };
    let at_least_one = |value: usize| {
        (value == 0).then(|| {
            (
                "must be at least 1",
                Some("the default is fine".to_string()),
            )
        })
    };
    let max_routers = checked_value(
        &file.max_routers,
        DEFAULT_BMP_MAX_ROUTERS,
        collector,
        at_least_one,
    );
    let queue_messages = checked_value(
        &file.queue_messages,
        DEFAULT_BMP_QUEUE_MESSAGES,
        collector,
        at_least_one,
    );
    let settle_seconds = checked_value(
        &file.settle_seconds,
        DEFAULT_BMP_SETTLE_SECONDS,
        collector,
        |_| None::<(&str, Option<String>)>,
    );
    let max_routes_per_router = checked_value(
        &file.max_routes_per_router,
        DEFAULT_BMP_MAX_ROUTES_PER_ROUTER,
        collector,
        at_least_one,
    );
    let max_peers_per_router = checked_value(
        &file.max_peers_per_router,
        DEFAULT_BMP_MAX_PEERS_PER_ROUTER,
        collector,
        at_least_one,
    );
    let tcp_keepalive_seconds = checked_value(
        &file.tcp_keepalive_seconds,
        DEFAULT_BMP_TCP_KEEPALIVE_SECONDS,
        collector,
        |seconds| {
            (seconds > MAX_BMP_TCP_KEEPALIVE_SECONDS).then(|| {
                (
                    format!("must be at most {MAX_BMP_TCP_KEEPALIVE_SECONDS} (the kernel's limit)"),
                    Some("0 turns keepalive off".to_string()),
                )
            })
        },
    );
    BmpConfig {
        listen,
        allow,
        max_routers,
        queue_messages,
        settle_seconds,
        max_routes_per_router,
        max_peers_per_router,
        tcp_keepalive_seconds,
    }
}
