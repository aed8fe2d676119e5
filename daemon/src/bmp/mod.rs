//! The BMP station (RFC 7854): edge routers connect to it and stream what they hold; it compares
//! that with what the topology expects and raises hijack and visibility findings.
//!
//! Split by concern:
//! - `codec`: framing and decoding, the only user of the parser crate with `update` (the
//!   UPDATE's routes, path identifiers read per family) and `path_ids` (which families carry
//!   ADD-PATH identifiers, from a Peer Up's OPENs) (pure);
//! - `writer`: a BMP writer for tests and the benchmark (pure);
//! - `rib`: per-router state, peers and their RIBs in compact records (pure);
//! - `findings`: what the topology expects and the finding book (pure);
//! - `station`: the visibility core tying them together, `handle(router, event, now)` (pure);
//! - `listener`: the async shell (listener, one task per router, bounded queues, metrics), on
//!   a thread and runtime of its own at a lower priority than the speaker.
//!
//! ```text
//! router ─TCP─► connection task (split_message, decode) ─try_send─► station task ─► Station
//!                 (drop counted ⇒ connection closed)          ▲ expected routes (watch)
//!                                                             └ tick ─► findings view (watch)
//!                                                                  ─► /v1/visibility, metrics, logs
//! ```

pub mod codec;
pub mod findings;
pub mod listener;
pub mod path_ids;
pub mod rib;
pub mod station;
pub mod update;
pub mod writer;
