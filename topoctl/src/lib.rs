//! topoctl's library: the control API client (`control_client.rs`) and the fleet rollout
//! controller (`rollout/`), used by the `topoctl` binary
//! (`main.rs`) and by the end-to-end tests. The per-location daemon lives in `daemon/`; topoctl
//! talks to it only through the control API. Each daemon command has its own module
//! (`status_command`, `routes_command`, …) printing the daemon's typed view for people, or as
//! JSON with `--json`; `connection` reaches the daemon and maps answers to exit codes, `render`
//! holds the shared text helpers (RFC 3339 times, tables), and `local_bundle` the files a push
//! sends (digests remembered by stamp, texts read only when they travel), `text_cache` the
//! large texts a push sent (a changed one travels as edits of its last version).
pub mod connection;
pub mod context;
pub mod control_client;
pub mod drain_command;
pub mod generations_command;
pub mod graph_command;
pub mod health_command;
pub mod lease_command;
pub mod local_bundle;
pub mod matrix_command;
pub mod onboard;
pub mod pki_command;
pub mod push_command;
pub mod render;
pub mod rollback_command;
pub mod rollout;
pub mod routes_command;
pub mod rpki_command;
pub mod status_command;
pub mod text_cache;
pub mod topology_command;
pub mod visibility_command;
pub mod vrp_source;

/// An error and its sources, outermost first: a refused TLS handshake shows up as an HTTP
/// error whose source says why (`received fatal alert: UnknownCA`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
