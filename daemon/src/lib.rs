//! The topologyd daemon library: engine task, BGP session drivers, control and admin APIs.
pub mod admin;
pub mod control;
pub mod control_client;
pub mod engine_api;
pub mod metrics;
pub mod sd_notify;
pub mod sockopt;
pub mod state_store;
pub mod tls;
pub mod announce;
pub mod peer;
pub mod engine;
pub mod memory;
