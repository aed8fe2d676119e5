//! The daemon's own configuration file (`topologyd.toml`): which location this daemon is, its
//! BGP identity, its peers, its listeners, where it keeps state and its health-check policy
//! (`[health]`, `[health.vars]`) and its RTR caches (`[rpki]`). Parsed from TOML with unknown
//! keys rejected and every value that a check can complain about kept with its span, so that all
//! errors come out in one run as `file:line:column: error: … help: …`.
//!
//! Pure: takes a [`Source`](crate::Source) and returns a [`DaemonConfig`] or
//! [`Diagnostics`](crate::Diagnostics). Whether files it names exist (keys, certificates) is
//! checked by the daemon when it loads them. Every default is a documented constant in `model`.
//! [`PeerConfig::session_reset_needed`] is the documented rule for which changes of a reload
//! reset a BGP session and which apply in place.
//!
//! Split by concern: `model` (the validated configuration and its defaults), `file` (the TOML
//! schema), `convert` (the whole file and its smaller sections), `peer` (one `[[peer]]`),
//! `health_policy` (`[health]`), `rpki_policy` (`[rpki]`), `bmp_station` (`[bmp]`); the modules depend on each other
//! without cycles.

mod bmp_station;
mod convert;
mod file;
mod health_policy;
mod model;
mod peer;
pub mod reference;
mod rpki_policy;

pub use convert::parse_daemon_config;
pub use health_policy::MAX_INTERFACE_NAME_LENGTH;
pub use model::*;
pub use peer::ipv6_next_hop_problem;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
