//! The topologyd daemon library: engine task, BGP session drivers, control API. TLS, the accept
//! loop, one-shot HTTP and the admin listener come from `topologyd_transport`.
pub mod addresses;
pub mod announce;
pub mod api_views;
pub mod audit;
pub mod bmp;
pub mod build_info;
pub mod bundle;
pub mod compile;
pub mod control;
pub mod engine;
pub mod engine_api;
pub mod health;
pub mod health_task;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod overlay;
pub mod peer;
pub mod preflight;
pub mod probe;
pub mod readiness;
pub mod reconcile;
pub mod sd_notify;
pub mod send_ledger;
pub mod sockopt;
pub mod state_store;
#[cfg(test)]
mod test_support;
