//! topologyd-config: parsing topologyd's topology files (TOML) into a span-carrying raw model.
//!
//! Pure and synchronous: the parser takes `(file name, text)` pairs ([`Source`]); the only file
//! access is [`load_sources`]. Every value that a later check may complain about keeps a
//! [`Span`], which [`SourceMap::locate`] turns into `file:line:column`. Unknown keys are
//! rejected. Cross-file checks (references, overlaps, guards) belong to `topologyd-topology`.
//!
//! Modules: [`source`] (sources, spans, positions), [`load`] (reading files into sources),
//! [`text`] (escaping and classifying characters that must not reach a terminal),
//! [`diagnostic`] (errors and warnings with help), [`selector`] (topology selector AST and
//! parser), [`model`] (the raw model and its documented defaults), [`parse`] (TOML to raw model
//! through the private `file` schema; a private fast path reads the bulk
//! `[[prefix]]`/`[[binding]]` files of large topologies, and `split` reads any other file that
//! holds such tables one table at a time),
//! [`health`] (health-check declarations and their conversion), [`daemon`] (the daemon's own
//! `topologyd.toml`), [`bounds`] (size, nesting and character limits checked before parsing),
//! [`fuzz_entry`] (the selector parser's properties, shared by the fuzz target and its replay).
//!
//! The modules depend on each other without cycles: `source`, `text` and `community` are leaves;
//! `diagnostic` uses only those; `health` (its schema, data and conversion) does not use the
//! topology file schema or the raw model, so `model` and `file` can use it.

pub mod bounds;
mod community;
pub mod daemon;
pub mod diagnostic;
mod fast;
mod file;
pub mod fleet;
pub mod fuzz_entry;
pub mod health;
pub mod load;
pub mod model;
pub mod parse;
pub mod selector;
pub mod source;
mod split;
pub mod startup;
pub mod text;

pub use diagnostic::{Collector, Diagnostic, Diagnostics, Severity, escape_text};
pub use load::{LoadError, decode_source, load_sources, load_sources_stamped};
pub use model::*;
pub use parse::{
    parse_topology_sources, parse_topology_sources_except, parse_topology_sources_owned,
    parse_topology_sources_with_warnings, read_binding_tables,
};
pub use selector::{Attribute, Selector, SelectorError, SelectorValue, parse_selector};
pub use source::{PackedSpan, ReadText, Source, SourceLocation, SourceMap, Span, TextReader};
