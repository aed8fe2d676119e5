//! topologyd-topology: the service-topology engine. Pure and synchronous (no I/O, no clock).
//!
//! ```text
//! sources ─► compile (validate, LPM index, per-service location bitsets) ─► Topology
//! Topology ─► desired(location) / explain(address)
//! (old Topology, new Topology, Intent) ─► plan ─► guards G2–G4 ─► Plan { verdict, … }
//! ```
//!
//! Modules: `compile` (building and validation, G1 and blackhole checks), `model` (the
//! compiled topology and its queries), `location_set` (the bitset), `nesting` (longest-prefix
//! match over the sorted bindings), `binding_list`, `prefix_list` and `route_list` (the
//! bindings, prefixes and routes, shared between generations),
//! `route_coverage` (G1 asked of a location's routes, remembered for the next generation),
//! `plan` (diffs, causes, guards, verdicts and exit codes), `render` (the human-readable
//! plan), [`fuzz_entry`] (the compile path's properties on arbitrary bytes, shared by the fuzz
//! target and its replay).

mod binding_list;
mod compile;
pub mod fuzz_entry;
mod location_set;
mod model;
mod nesting;
mod plan;
mod prefix_list;
mod render;
mod route_coverage;
mod route_list;

use topologyd_rpki as rpki;

pub use compile::{
    CompileReuse, INPUT_BYTES_PER_EXTRA_ROUTE, IntoSources, MAX_ROUTES_PER_PREFIX, ROUTE_ALLOWANCE,
    RunningText, SourceBundle, compile, compile_against, compile_against_in_full,
    compile_incremental, compile_incremental_with_digests, compile_incremental_with_previous,
    compile_owned, compile_put_away, compile_raw, suggestion,
};
pub use location_set::LocationSet;
pub use model::{
    AnnouncedRoute, DesiredRoute, Explanation, Location, Prefix, PrefixOwnership, RouteAttributes,
    Service, Topology, TopologyError, TopologySummary,
};
pub use plan::*;
pub use prefix_list::{Iter as PrefixIter, PrefixList};
pub use render::collapse_locations;
pub use route_coverage::TaggedRoutes;
pub use rpki::{RpkiState, Validation, Vrp, VrpFileError, VrpSet};
pub use topologyd_config::{Diagnostic, Diagnostics, Severity, Source, SourceLocation};
