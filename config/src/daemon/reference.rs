//! The reference of `topologyd.toml`: every key with its type, default, what a reload (SIGHUP)
//! does with a change, and what it means — the source of `docs/daemon-config.md`
//! ([`render_markdown`]). Defaults are the constants of `model`, never copies.
//!
//! Kept honest by tests (`reference/tests.rs`): the keys listed per table are exactly the keys
//! the TOML schema (`file.rs`, serde with unknown keys rejected) accepts, and the checked-in
//! document is what [`render_markdown`] renders (`TOPOLOGYD_REGENERATE_DOCS=1` rewrites it).

use std::fmt::Write as _;

use super::model::{
    DEFAULT_BGP_PORT, DEFAULT_BMP_MAX_PEERS_PER_ROUTER, DEFAULT_BMP_MAX_ROUTERS,
    DEFAULT_BMP_MAX_ROUTES_PER_ROUTER, DEFAULT_BMP_QUEUE_MESSAGES, DEFAULT_BMP_SETTLE_SECONDS,
    DEFAULT_BMP_TCP_KEEPALIVE_SECONDS, DEFAULT_COMPILE_MEMORY_BYTES, DEFAULT_CONNECT_RETRY_SECONDS,
    DEFAULT_CONTROL_MAX_BODY_BYTES, DEFAULT_CONTROL_MAX_READER_BODY_BYTES,
    DEFAULT_FAIL_STATIC_MIN_SERVICES, DEFAULT_FAIL_STATIC_SHARE,
    DEFAULT_HEALTH_MIN_OTHER_LOCATIONS, DEFAULT_HOLD_TIME_SECONDS, DEFAULT_READY_MIN_ESTABLISHED,
    DEFAULT_RESTART_TIME_SECONDS, DEFAULT_RETAINED_GENERATIONS, DEFAULT_RPKI_CACHE_PREFERENCE,
    DEFAULT_SEND_HOLD_TIME_MINIMUM_SECONDS, DEFAULT_SHUTDOWN_GRACE_SECONDS,
};

/// What a reload does with a changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The reload is refused; the running configuration stays. Restart to change it.
    Refused,
    /// Ignored by a reload (the running value stays) until the next restart.
    Restart,
    /// Applied by the reload.
    Applied,
    /// A peer key: the peer's session is reset (the reload rule of `session_reset_needed`).
    ResetsSession,
    /// A peer key applied without a session reset (`session_reset_needed`).
    InPlace,
    /// Applied to the peers a reload adds or resets; running peers keep the old value.
    NextSessions,
    /// Used when the next generation is prepared (push or rollback).
    NextGeneration,
    /// Read at the first start only (when the state directory holds no generation).
    FirstStart,
}

impl Reload {
    /// The words in the reference.
    pub fn words(self) -> &'static str {
        match self {
            Reload::Refused => "reload refused; restart",
            Reload::Restart => "restart (a reload keeps the running value)",
            Reload::Applied => "applied by a reload",
            Reload::ResetsSession => "applied by a reload; resets this peer's session",
            Reload::InPlace => "applied by a reload without a session reset",
            Reload::NextSessions => "applied to peers a reload adds or resets; others keep theirs",
            Reload::NextGeneration => "applied from the next push or rollback",
            Reload::FirstStart => "read at the first start only",
        }
    }
}

/// One key of `topologyd.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReference {
    /// Its table: `""` for the top level, `peer` for `[[peer]]`, `control.roles` for a map.
    pub table: &'static str,
    /// The key (`NAME` for the entries of a map table).
    pub key: &'static str,
    /// Its TOML type.
    pub kind: &'static str,
    /// Its default (`required` when it has none).
    pub default: String,
    pub reload: Reload,
    pub meaning: &'static str,
}

fn key(
    table: &'static str,
    key: &'static str,
    kind: &'static str,
    default: impl ToString,
    reload: Reload,
    meaning: &'static str,
) -> KeyReference {
    KeyReference {
        table,
        key,
        kind,
        default: default.to_string(),
        reload,
        meaning,
    }
}

const REQUIRED: &str = "required";
const ABSENT: &str = "absent";

/// The tables in the order of the reference, with what each is for.
pub const TABLES: [(&str, &str); 13] = [
    ("", "The daemon's identity and state."),
    (
        "bgp",
        "BGP listeners (absent: the daemon only connects out).",
    ),
    (
        "graceful_restart",
        "Graceful restart as the restarting speaker (RFC 4724).",
    ),
    ("shutdown", "What SIGTERM does."),
    (
        "admin",
        "The plain-HTTP admin listener: /metrics, /ready, /live (absent: none).",
    ),
    (
        "control",
        "The control API: HTTPS with client certificates (absent: none).",
    ),
    (
        "control.roles",
        "Client certificate common names and their role.",
    ),
    (
        "health",
        "The location-wide health-check policy (per-service checks are in the topology).",
    ),
    (
        "health.vars",
        "Values for `{NAME}` placeholders in probe targets.",
    ),
    ("readiness", "When /ready answers 200."),
    (
        "rpki",
        "RPKI origin validation (RFC 6811) against RTR caches (RFC 8210) (absent: no validation).",
    ),
    (
        "bmp",
        "The BMP station (RFC 7854): edge routers stream what they hold; hijack and visibility findings (absent: none).",
    ),
    ("peer", "One `[[peer]]` table per BGP peer."),
];

/// Every key of `topologyd.toml`, one line each.
#[rustfmt::skip]
pub fn keys() -> Vec<KeyReference> {
    use Reload::*;
    vec![
        key("", "location", "string", REQUIRED, Refused, "This daemon's location: a `[[location]]` name of the topology's fleet file."),
        key("", "local_asn", "integer (u32)", REQUIRED, Refused, "Our AS number (4-octet ASNs supported, RFC 6793)."),
        key("", "router_id", "string (IPv4 address)", REQUIRED, Refused, "Our BGP Identifier."),
        key("", "state_dir", "string (path)", REQUIRED, Refused, "Where generations, drains and the lease are kept (created if missing)."),
        key("", "bootstrap_topology", "array of strings (paths)", "[]", FirstStart, "The topology files compiled when the state directory holds no generation yet."),
        key("", "retained_generations", "integer", DEFAULT_RETAINED_GENERATIONS, Restart, "Generations kept for rollback (at least 1)."),
        key("bgp", "listen", "array of strings (address:port)", "[]", Restart, "BGP listeners; passive peers need one."),
        key("graceful_restart", "enabled", "boolean", true, NextSessions, "Advertise the graceful restart capability."),
        key("graceful_restart", "restart_time_seconds", "integer (0-4095)", DEFAULT_RESTART_TIME_SECONDS, NextSessions, "How long peers keep our routes as stale after our session drops."),
        key("shutdown", "grace_seconds", "integer", DEFAULT_SHUTDOWN_GRACE_SECONDS, Applied, "How long a SIGTERM drain may take."),
        key("shutdown", "withdraw_on_stop", "boolean", false, Applied, "Withdraw every route and send a Cease before exiting (default: close without NOTIFICATION so peers keep the routes as stale)."),
        key("admin", "listen", "string (address:port)", REQUIRED, Restart, "The admin listener's address."),
        key("control", "listen", "string (address:port)", REQUIRED, Restart, "The control API's address."),
        key("control", "certificate", "string (path)", REQUIRED, Restart, "The server certificate (PEM, X.509 v3)."),
        key("control", "private_key", "string (path)", REQUIRED, Restart, "Its private key (PEM)."),
        key("control", "client_ca", "string (path)", REQUIRED, Restart, "The CA that signs client certificates (PEM)."),
        key("control", "roles", "table", "{}", Restart, "Client identities and their roles: see `[control.roles]`."),
        key("control", "audit_log", "string (path)", REQUIRED, Restart, "The write-ahead audit log (JSON lines, appended and fsync'd)."),
        key("control", "max_body_bytes", "integer", DEFAULT_CONTROL_MAX_BODY_BYTES, Restart, "Largest request body from an `admin` identity."),
        key("control", "max_reader_body_bytes", "integer", DEFAULT_CONTROL_MAX_READER_BODY_BYTES, Restart, "Largest request body from a `reader` identity (its plans)."),
        key("control", "compile_memory_bytes", "integer", DEFAULT_COMPILE_MEMORY_BYTES, Applied, "Memory the compiles in flight may use together (8 bytes per source byte)."),
        key("control.roles", "NAME", "string: \"admin\" or \"reader\"", ABSENT, Restart, "The role of the client certificate whose common name is NAME."),
        key("health", "enabled", "boolean", true, Restart, "Run the topology's health checks (false: every service counts as healthy)."),
        key("health", "fail_static_share", "float (0 < share <= 1)", DEFAULT_FAIL_STATIC_SHARE, Restart, "Freeze health-driven changes when more than this share of the checked services is unhealthy, or their probes cannot run."),
        key("health", "fail_static_min_services", "integer", DEFAULT_FAIL_STATIC_MIN_SERVICES, Restart, "Fail static needs at least this many unhealthy services."),
        key("health", "min_other_locations", "integer", DEFAULT_HEALTH_MIN_OTHER_LOCATIONS, Applied, "Withdraw a service for health only while this many other live locations announce it."),
        key("health", "address_interface", "string (interface name)", ABSENT, Restart, "Bind services' `local_addresses` on this interface (absent: bind nothing)."),
        key("health", "vars", "table", "{}", NextGeneration, "Placeholder values: see `[health.vars]`."),
        key("health.vars", "NAME", "string", ABSENT, NextGeneration, "The value of `{NAME}` in probe targets (beside location, region, metro, country)."),
        key("readiness", "min_established", "integer", DEFAULT_READY_MIN_ESTABLISHED, Applied, "At least this many peers hold the running generation (0: ignore peers; more than the peers configured is an error)."),
        key("readiness", "min_established_share", "float (0 < share <= 1)", ABSENT, Applied, "And at least this share of the peers, rounded up."),
        key("rpki", "caches", "array of tables `{ address = \"HOST:PORT\", preference = N }`", format!("required; each preference {DEFAULT_RPKI_CACHE_PREFERENCE}"), Restart, "The RTR caches, at least one; the reachable one with the lowest preference serves the VRPs, the others stand by."),
        key("rpki", "invalid_policy", "string: \"keep\" or \"withdraw\"", "keep", Restart, "What happens to an announced route that turns RPKI-invalid at run time: keep it announced and raise the alarm, or withdraw it until it is valid again. Pushes are refused by guard G5 either way."),
        key("bmp", "listen", "array of strings (address:port)", REQUIRED, Restart, "Where routers connect (e.g. `[\"127.0.0.1:11019\"]`)."),
        key("bmp", "allow", "array of strings (prefixes)", "[\"127.0.0.0/8\", \"::1/128\"]", Restart, "Source prefixes a router may connect from; others are closed at accept."),
        key("bmp", "max_routers", "integer", DEFAULT_BMP_MAX_ROUTERS, Restart, "Routers served at once; more are closed at accept."),
        key("bmp", "queue_messages", "integer", DEFAULT_BMP_QUEUE_MESSAGES, Restart, "Decoded messages queued per station; a message finding it full is dropped and counted, and its router's connection closed (the router reconnects and re-sends)."),
        key("bmp", "settle_seconds", "integer", DEFAULT_BMP_SETTLE_SECONDS, Restart, "How long an announced route may be missing from a router's post-policy table before it is a `not_visible` finding, and before the rollout gate `visibility` fails on it (until then it is \"not settled yet\", inconclusive)."),
        key("bmp", "max_routes_per_router", "integer", DEFAULT_BMP_MAX_ROUTES_PER_ROUTER, Restart, "Routes held for one router (all its peers and RIB kinds); a router that sends more has its state dropped and is ignored until it reconnects (counted in `topologyd_bmp_routers_dropped_total{reason=\"max_routes\"}`, logged)."),
        key("bmp", "max_peers_per_router", "integer", DEFAULT_BMP_MAX_PEERS_PER_ROUTER, Restart, "Monitored peers held for one router; a router that reports more is dropped likewise (`reason=\"max_peers\"`)."),
        key("bmp", "tcp_keepalive_seconds", "integer (0-32767)", DEFAULT_BMP_TCP_KEEPALIVE_SECONDS, Restart, "Idle seconds before TCP keepalive probes a router's connection (then every 10 s, 3 unanswered: the connection is closed and the router's slot and state freed); 0: no keepalive. BMP has no keepalive of its own and a synchronised router may be silent for hours, so there is no idle timeout."),
        key("peer", "name", "string", REQUIRED, ResetsSession, "The peer's name in logs, status and metrics (unique; a rename is a removal and an addition)."),
        key("peer", "address", "string (IP address)", REQUIRED, ResetsSession, "The peer's address."),
        key("peer", "port", "integer", DEFAULT_BGP_PORT, ResetsSession, "The peer's BGP port."),
        key("peer", "asn", "integer (u32)", REQUIRED, ResetsSession, "The peer's AS number; an OPEN with another is refused with Bad Peer AS."),
        key("peer", "local_address", "string (IP address)", ABSENT, ResetsSession, "Our source address (and the default next hop of its family)."),
        key("peer", "passive", "boolean", false, ResetsSession, "Wait for the peer to connect (needs a `[bgp] listen` of its family)."),
        key("peer", "hold_time_seconds", "integer (0 or 3-65535)", DEFAULT_HOLD_TIME_SECONDS, ResetsSession, "The hold time we propose."),
        key("peer", "send_hold_time_seconds", "integer", format!("greater of {DEFAULT_SEND_HOLD_TIME_MINIMUM_SECONDS} and twice the hold time"), InPlace, "Disconnect a peer that takes no message for this long (RFC 9687); from the next session."),
        key("peer", "connect_retry_seconds", "integer", DEFAULT_CONNECT_RETRY_SECONDS, InPlace, "First delay between connection attempts (with jitter, doubling); from the next session."),
        key("peer", "families", "array of \"ipv4\", \"ipv6\"", "[\"ipv4\", \"ipv6\"]", ResetsSession, "The address families offered."),
        key("peer", "next_hop_ipv4", "string (IPv4 address)", "local_address when IPv4", InPlace, "The IPv4 next hop of our routes; re-sent at once."),
        key("peer", "next_hop_ipv6", "string (IPv6 address)", "local_address when IPv6", InPlace, "The IPv6 next hop (global unicast); re-sent at once."),
        key("peer", "md5_key_file", "string (path)", ABSENT, ResetsSession, "TCP-MD5 (RFC 2385) key file, 1-80 bytes."),
        key("peer", "ttl_security_hops", "integer (1-254)", ABSENT, ResetsSession, "GTSM (RFC 5082): accept only packets from at most this many hops away."),
        key("peer", "max_prefix", "integer", ABSENT, InPlace, "Close the session with a Cease when the peer sends more prefixes (RFC 4486); from the next session."),
        key("peer", "extended_messages", "boolean", true, ResetsSession, "Offer extended messages (RFC 8654)."),
    ]
}

fn heading(table: &str) -> String {
    match table {
        "" => "Top level".to_owned(),
        "peer" => "`[[peer]]`".to_owned(),
        other => format!("`[{other}]`"),
    }
}

/// `docs/daemon-config.md`.
pub fn render_markdown() -> String {
    let mut text = String::from(
        "# topologyd.toml reference\n\n\
         Generated from the configuration schema by `config/src/daemon/reference.rs`; a test\n\
         fails when this file differs (regenerate: `TOPOLOGYD_REGENERATE_DOCS=1 cargo test -p\n\
         topologyd-config --lib reference`). Unknown keys are refused; every error names\n\
         `file:line:column`. `topologyd --check` runs the same checks as a start. A reload is\n\
         SIGHUP (`systemctl reload topologyd`): an invalid file leaves the running configuration\n\
         in place. `examples/daemon/topologyd.toml` is a commented example.\n",
    );
    let keys = keys();
    for (table, purpose) in TABLES {
        let _ = write!(
            text,
            "\n## {}\n\n{purpose}\n\n| key | type | default | on reload | meaning |\n|---|---|---|---|---|\n",
            heading(table)
        );
        for entry in keys.iter().filter(|entry| entry.table == table) {
            let _ = writeln!(
                text,
                "| `{}` | {} | {} | {} | {} |",
                entry.key,
                entry.kind,
                if entry.default == REQUIRED || entry.default == ABSENT {
                    entry.default.clone()
                } else {
                    format!("`{}`", entry.default)
                },
                entry.reload.words(),
                entry.meaning.replace('|', "\\|")
            );
        }
    }
    text
}

#[cfg(test)]
mod tests;
