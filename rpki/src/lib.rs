//! topologyd-rpki: RPKI route origin validation for topoctl and the daemon.
//!
//! - [`vrps`] (pure, synchronous): Validated ROA Payloads held in one prefix trie per family,
//!   RFC 6811 verdicts naming the covering VRPs, and the rpki-client JSON file; a frozen
//!   compact index for judging many routes fast, and the routes a VRP update can affect.
//! - [`rtr`] (feature `rtr`, tokio): the RTR client — caches by preference with failover,
//!   reconnect with backoff, refresh/retry/expire, serial queries, cache reset and Serial
//!   Notify — publishing each complete VRP set. The protocol itself (RFC 8210 v1 and its v2,
//!   with downgrade) is NLnet Labs' `rpki` crate, wrapped in that module only.

pub mod vrps;

#[cfg(feature = "rtr")]
pub mod rtr;

pub use vrps::{RouteIndex, RpkiState, Validation, Vrp, VrpFileError, VrpIndex, VrpSet};
