//! The topologyd daemon library: engine task, BGP session drivers, control and admin APIs.
pub mod addresses;
pub mod admin;
pub mod announce;
pub mod bundle;
pub mod compile;
pub mod control;
pub mod control_client;
pub mod engine;
pub mod engine_api;
pub mod health;
pub mod health_task;
pub mod listener_limits;
pub mod memory;
pub mod metrics;
pub mod overlay;
pub mod peer;
pub mod preflight;
pub mod probe;
pub mod readiness;
pub mod reconcile;
pub mod rollout;
pub mod sd_notify;
pub mod send_ledger;
pub mod sockopt;
pub mod state_store;
#[cfg(test)]
mod test_support;
pub mod tls;
