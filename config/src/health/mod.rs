//! Service health-check declarations, as the topology files write them (`[service.health]` and
//! `[[service.health.check]]`), with every default a documented constant.
//!
//! Split by concern: `spec` (the data types, re-exported here: what to probe, how often, and what
//! an unhealthy service does at a location), `file` (the TOML schema), `parse` (the section's
//! conversion), `check` (one check's) and `checker` (error reporting and probe-target shapes).
//! Running the probes and the rise/fall state machine live in the daemon
//! (`daemon/src/health.rs`, `daemon/src/probe.rs`).
//!
//! Targets may name per-location values as `{name}`: `{location}`, `{region}`, `{metro}`,
//! `{country}` come from the topology's location; any other `{name}` from the daemon's
//! `[health.vars]` table. The daemon expands them at load time and refuses an unknown name.

mod check;
mod checker;
pub(crate) mod file;
pub(crate) mod parse;
mod spec;

pub use spec::*;
