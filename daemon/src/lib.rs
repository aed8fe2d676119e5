//! The topologyd daemon library: engine task, BGP session drivers, control and admin APIs.
pub mod admin;
pub mod announce;
pub mod control;
pub mod control_client;
pub mod engine;
pub mod engine_api;
pub mod memory;
pub mod metrics;
pub mod peer;
pub mod sd_notify;
pub mod sockopt;
pub mod state_store;
pub mod tls;
