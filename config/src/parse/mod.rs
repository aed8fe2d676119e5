//! Parsing topology files: TOML (via `toml` + serde, unknown keys rejected, spans kept with
//! `toml::Spanned`) into the [`RawTopology`]. Checks syntax and value shapes (CIDR text,
//! communities, selector expressions, `[service.health]` settings and the shape of probe
//! targets, whose `{name}` placeholders stay unexpanded); leaves every cross-reference to the
//! compiler.
//!
//! Split by table: `settings`, `locations`, `service`, `prefixes` (prefixes and bindings), with
//! the value checks they share in `values`; this module reads each file (pre-scan, fast path or
//! TOML) and hands its tables on.

mod locations;
mod prefixes;
mod service;
mod settings;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_split;
mod values;

pub use self::prefixes::read_binding_tables;

use self::locations::convert_locations;
use self::prefixes::{StreamedTables, convert_bindings, convert_prefixes};
use self::service::convert_services;
use self::settings::convert_settings;
use crate::bounds;
use crate::diagnostic::{Collector, Diagnostics};
use crate::file::FileModel;
use crate::health::parse::CHECK_KINDS_HELP;
use crate::model::{RawLocation, RawTopology};
use crate::source::{Source, SourceMap, Span};

/// Parses every source; reports every syntax and shape error of every file in one run. The
/// result keeps a copy of the sources (see [`parse_topology_sources_owned`] to move them).
pub fn parse_topology_sources(sources: &[Source]) -> Result<RawTopology, Diagnostics> {
    parse_topology_sources_owned(sources.to_vec())
}

/// [`parse_topology_sources`] taking the sources by value (no copy of large texts).
pub fn parse_topology_sources_owned(sources: Vec<Source>) -> Result<RawTopology, Diagnostics> {
    let (raw, diagnostics) = parse_topology_sources_with_warnings(sources);
    if diagnostics.has_errors() {
        Err(diagnostics)
    } else {
        Ok(raw)
    }
}

/// Like [`parse_topology_sources`], but always returns what parsed (items with errors left out)
/// together with the diagnostics.
pub fn parse_topology_sources_with_warnings(sources: Vec<Source>) -> (RawTopology, Diagnostics) {
    parse_with(sources, Reader::BY_TABLES)
}

/// How a file's tables are read: the production path (line scanner, then table by table, then
/// the whole document), or the whole document only, the reference the tests compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// Table by table, the tables read handed on about every `chunk_bytes` of the file.
    ByTables { chunk_bytes: usize },
    #[cfg(test)]
    WholeDocument,
}

/// [`parse_topology_sources_with_warnings`] reading only the files whose `skip` entry is false
/// (a missing entry reads the file): the result holds only their items, and every text in its
/// source map (also when the diagnostics hold errors, so that the caller gets the texts back).
/// For a compile that takes the skipped files' items from elsewhere (an earlier compile of the
/// same texts), so the checks a skipped file passed before are not run again; the size of the
/// whole topology is checked as always. The checks across files (one `[settings]`, the number
/// of locations) see only the files read: a caller that skips a file holding settings or
/// locations adds them itself and must make those two checks again (the incremental compile
/// falls back to a full one when they would fail).
#[doc(hidden)]
pub fn parse_topology_sources_except(
    sources: Vec<Source>,
    skip: &[bool],
) -> (RawTopology, Diagnostics) {
    parse_selected(sources, Reader::BY_TABLES, skip)
}

impl Reader {
    const BY_TABLES: Reader = Reader::ByTables {
        chunk_bytes: crate::split::CHUNK_BYTES,
    };
}

fn parse_with(sources: Vec<Source>, reader: Reader) -> (RawTopology, Diagnostics) {
    parse_selected(sources, reader, &[])
}

fn parse_selected(
    sources: Vec<Source>,
    reader: Reader,
    skip: &[bool],
) -> (RawTopology, Diagnostics) {
    let mut collector = Collector::new();
    let mut raw = RawTopology::default();
    let mut settings_seen: Option<Span> = None;
    if !bounds::check_total_size(
        sources.iter().map(|source| source.text.len()),
        &mut collector,
    ) {
        raw.sources = SourceMap::new(sources);
        let diagnostics = collector.finish(&raw.sources);
        return (raw, diagnostics);
    }
    let names = &mut raw.names;
    for (index, source) in sources.iter().enumerate() {
        if skip.get(index).copied().unwrap_or(false) {
            continue;
        }
        let source_id = u32::try_from(index).unwrap_or(u32::MAX);
        let mut streamed =
            StreamedTables::new(source_id, &mut raw.prefixes, &mut raw.bindings, names);
        let read = read_file(
            source_id,
            &source.text,
            reader,
            &mut streamed,
            &mut collector,
        );
        let Some(file) = read else {
            continue;
        };
        if let Some(settings) = file.settings {
            convert_settings(
                source_id,
                settings,
                &mut settings_seen,
                &mut raw.settings,
                &mut collector,
            );
        }
        convert_locations(source_id, file.location, &mut raw.locations, &mut collector);
        convert_services(
            source_id,
            &source.text,
            file.service,
            &mut raw.services,
            &mut collector,
        );
        streamed.finish(&mut collector);
        convert_prefixes(
            source_id,
            file.prefix.into_iter(),
            &mut raw.prefixes,
            names,
            &mut collector,
        );
        convert_bindings(
            source_id,
            file.binding.into_iter(),
            &mut raw.bindings,
            names,
            &mut collector,
        );
    }
    check_location_count(&raw.locations, &mut collector);
    raw.settings_span = settings_seen;
    raw.sources = SourceMap::new(sources);
    let diagnostics = collector.finish(&raw.sources);
    (raw, diagnostics)
}

/// One file's tables: table by table when it can (`split`: the line scanner reads the simple
/// `[[prefix]]`/`[[binding]]` tables, `toml` each other one alone and the other tables as one
/// document), else through TOML as one document after the pre-scan; `None` (with the errors
/// reported) when the file is refused or is not valid TOML for the schema. Read table by
/// table, the file's prefix and binding tables are in `streamed` (converted as they were read)
/// and the model returned holds none; parsed as one document, `streamed` holds none of them
/// (it was rolled back) and the model holds them all. Every error comes from the pre-scan and
/// the whole-document parse: the per-table reader reports nothing and only reads what the
/// whole-document parse would read identically.
fn read_file(
    source_id: u32,
    text: &str,
    reader: Reader,
    streamed: &mut StreamedTables<'_>,
    collector: &mut Collector,
) -> Option<FileModel> {
    // The pre-scan looks for forbidden characters, nesting and parse cost. Of an ASCII file
    // the per-table reader pre-scans only what the line scanner does not read (the lines it
    // reads hold nothing the scan could find); of any other file, the whole file first.
    let (by_tables, chunk_bytes) = match reader {
        Reader::ByTables { chunk_bytes } => (true, chunk_bytes),
        #[cfg(test)]
        Reader::WholeDocument => (false, 0),
    };
    let ascii = text.is_ascii();
    if by_tables && ascii {
        match crate::split::read_by_tables_into(text, false, chunk_bytes, streamed) {
            Some(file) => return Some(file),
            None => streamed.roll_back(),
        }
    }
    let scan = bounds::scan_file(source_id, text, collector)?;
    if by_tables && !ascii {
        match crate::split::read_by_tables_into(text, true, chunk_bytes, streamed) {
            Some(file) => return Some(file),
            None => streamed.roll_back(),
        }
    }
    if !bounds::check_parse_cost(source_id, text.len(), scan, collector) {
        return None;
    }
    match toml::from_str(text) {
        Ok(file) => Some(file),
        Err(failure) => {
            let span = failure
                .span()
                .map(|range| Span::new(source_id, range))
                .unwrap_or(Span::new(source_id, 0..0));
            let help = if failure.message().contains("unknown field") {
                Some(
                    "remove the key or fix its spelling; unknown keys are rejected so that \
                     typos cannot silently change the topology"
                        .to_string(),
                )
            } else if failure.message().contains("missing field `kind`") {
                Some(CHECK_KINDS_HELP.to_string())
            } else {
                None
            };
            collector.error(Some(span), failure.message().trim_end().to_string(), help);
            None
        }
    }
}

/// The whole fleet may hold at most [`bounds::MAX_LOCATIONS`] locations.
fn check_location_count(locations: &[RawLocation], collector: &mut Collector) {
    if locations.len() > bounds::MAX_LOCATIONS {
        collector.error(
            locations
                .get(bounds::MAX_LOCATIONS)
                .map(|location| location.name.span),
            format!(
                "the topology has {} locations, more than the limit of {}",
                locations.len(),
                bounds::MAX_LOCATIONS
            ),
            Some(
                "the limit keeps each compile's per-location sets small; split the fleet into \
                 several topologies"
                    .into(),
            ),
        );
    }
}
