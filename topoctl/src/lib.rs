//! topoctl's library: the control API client (`control_client.rs`) and the fleet rollout
//! controller (`rollout/`), used by the `topoctl` binary
//! (`main.rs`) and by the end-to-end tests. The per-location daemon lives in `daemon/`; topoctl
//! talks to it only through the control API.
pub mod control_client;
pub mod lease_command;
pub mod rollout;
pub mod rpki_command;
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
