//! The transport both programs share, `topologyd` (the per-location daemon) and `topoctl` (the
//! CLI and rollout controller): TLS material and `rustls` configs ([`tls`]), the accept loop
//! with its per-source and total connection caps ([`listener_limits`]), one-shot HTTP/1.1
//! requests ([`http_client`]), and the small plain-HTTP admin server for `/metrics`, `/ready`
//! and `/live` ([`admin`], with its [`readiness`] verdict handle).
//!
//! Must not touch: what the bytes mean (the control API, its client and the engine live in the
//! daemon and topoctl), any state of either program.
pub mod admin;
pub mod exposition;
pub mod http_client;
pub mod listener_limits;
pub mod readiness;
pub mod tls;
