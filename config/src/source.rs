//! Source texts and positions: [`Source`] (a file name and its text), [`Span`] (byte range in
//! one source), [`SourceLocation`] (`file:line:column`, what people read) and [`SourceMap`], which
//! turns the first into the second. Owns no parsing and no validation; the only I/O in the crate
//! is [`load_sources`], which reads files into [`Source`] values, and [`decode_source`], which
//! turns bytes into a [`Source`] or says where the first byte that is not UTF-8 is.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::diagnostic::{Diagnostic, Severity, escape_text};

/// One input file: its name as it appears in diagnostics, and its text (the control API's
/// named TOML source, shared by every crate that handles topology files).
pub use topologyd_api::SourceFile as Source;

/// A failure to read a topology file: the file cannot be read, or (with `invalid` set) its
/// bytes are not UTF-8, which is an invalid topology rather than an I/O failure.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {error}")]
pub struct LoadError {
    pub path: String,
    #[source]
    pub error: std::io::Error,
    /// Set when the file was read but is not UTF-8: the error at its first bad byte.
    pub invalid: Option<Diagnostic>,
}

/// Reads each path into a [`Source`] named by the path as given. The only file access in this
/// crate; everything after it works on strings.
pub fn load_sources<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Source>, LoadError> {
    paths
        .iter()
        .map(|path| {
            let path = path.as_ref();
            let name = path.display().to_string();
            // Read at most one byte past the limit: a huge file (or /dev/zero) is refused
            // without being read whole.
            let limit = crate::bounds::MAX_TOPOLOGY_BYTES;
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .and_then(|file| {
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(file, limit as u64 + 1),
                        &mut bytes,
                    )
                })
                .map_err(|error| LoadError {
                    path: name.clone(),
                    error,
                    invalid: None,
                })?;
            if bytes.len() > limit {
                let diagnostic = Diagnostic {
                    severity: Severity::Error,
                    location: Some(SourceLocation {
                        file: escape_text(&name),
                        line: 1,
                        column: 1,
                    }),
                    message: format!(
                        "the file holds more than {} MiB, the most a whole topology may hold",
                        limit >> 20
                    ),
                    help: Some(
                        "check that this is the topology file meant; a topology larger than that \
                         is refused"
                            .to_string(),
                    ),
                };
                return Err(LoadError {
                    path: name.clone(),
                    error: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        diagnostic.to_string(),
                    ),
                    invalid: Some(diagnostic),
                });
            }
            decode_source(&name, bytes).map_err(|diagnostic| LoadError {
                path: name.clone(),
                error: std::io::Error::new(std::io::ErrorKind::InvalidData, diagnostic.to_string()),
                invalid: Some(diagnostic),
            })
        })
        .collect()
}

/// The [`Source`] `name` with text `bytes`, or an error at `file:line:column` of the first byte
/// that is not UTF-8 (the column counts the characters before it on its line).
pub fn decode_source(name: &str, bytes: Vec<u8>) -> Result<Source, Diagnostic> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Source::new(name, text)),
        Err(failure) => {
            let bytes = failure.as_bytes();
            let offset = failure.utf8_error().valid_up_to();
            let valid = String::from_utf8_lossy(&bytes[..offset]);
            let line_start = valid.rfind('\n').map_or(0, |newline| newline + 1);
            let line = valid.matches('\n').count() + 1;
            let column = valid[line_start..].chars().count() + 1;
            Err(Diagnostic {
                severity: Severity::Error,
                location: Some(SourceLocation {
                    file: escape_text(name),
                    line: u32::try_from(line).unwrap_or(u32::MAX),
                    column: u32::try_from(column).unwrap_or(u32::MAX),
                }),
                message: format!(
                    "the file is not UTF-8: byte 0x{:02X} at byte offset {offset} does not \
                     start or continue a UTF-8 character",
                    bytes[offset]
                ),
                help: Some(
                    "topology files must be UTF-8: convert the file (for example with \
                     `iconv -f LATIN1 -t UTF-8`) or remove the stray byte"
                        .into(),
                ),
            })
        }
    }
}

/// A byte range inside one source of a [`SourceMap`]. Small and `Copy` so that compiled items can
/// keep one each without cost; it is turned into a [`SourceLocation`] only when reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Span {
    /// Index of the source in the [`SourceMap`].
    pub source: u32,
    /// Byte offset of the first byte.
    pub start: u32,
    /// Byte offset one past the last byte.
    pub end: u32,
}

impl Span {
    pub fn new(source: u32, range: std::ops::Range<usize>) -> Span {
        Span {
            source,
            start: u32::try_from(range.start).unwrap_or(u32::MAX),
            end: u32::try_from(range.end).unwrap_or(u32::MAX),
        }
    }

    /// The span of `length` bytes starting `offset` bytes after this span's start.
    pub fn sub(self, offset: usize, length: usize) -> Span {
        let start = self
            .start
            .saturating_add(u32::try_from(offset).unwrap_or(u32::MAX));
        Span {
            source: self.source,
            start,
            end: start.saturating_add(u32::try_from(length).unwrap_or(u32::MAX)),
        }
    }
}

/// A position people can read: file name, 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceLocation {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The sources of one topology, with a lazily built line index per source (built only when a
/// position is reported, so a clean compile never pays for it).
#[derive(Debug, Default)]
pub struct SourceMap {
    sources: Vec<Source>,
    line_starts: Vec<OnceLock<Vec<u32>>>,
}

impl Clone for SourceMap {
    fn clone(&self) -> SourceMap {
        SourceMap::new(self.sources.clone())
    }
}

impl SourceMap {
    pub fn new(sources: Vec<Source>) -> SourceMap {
        let line_starts = sources.iter().map(|_| OnceLock::new()).collect();
        SourceMap {
            sources,
            line_starts,
        }
    }

    /// The sources, in the order given.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The text of source `index` (empty for an unknown index).
    pub fn text(&self, index: u32) -> &str {
        self.sources
            .get(index as usize)
            .map_or("", |source| source.text.as_str())
    }

    /// Converts a span's start into `file:line:column`.
    pub fn locate(&self, span: Span) -> SourceLocation {
        let Some(source) = self.sources.get(span.source as usize) else {
            return SourceLocation {
                file: String::from("<unknown>"),
                line: 0,
                column: 0,
            };
        };
        let starts = self.line_starts[span.source as usize].get_or_init(|| {
            std::iter::once(0)
                .chain(
                    source
                        .text
                        .bytes()
                        .enumerate()
                        .filter(|(_, byte)| *byte == b'\n')
                        .map(|(offset, _)| u32::try_from(offset + 1).unwrap_or(u32::MAX)),
                )
                .collect()
        });
        let offset = span
            .start
            .min(u32::try_from(source.text.len()).unwrap_or(u32::MAX));
        let line_index = starts
            .partition_point(|start| *start <= offset)
            .saturating_sub(1);
        let line_start = starts.get(line_index).copied().unwrap_or(0) as usize;
        let column = source
            .text
            .get(line_start..offset as usize)
            .map_or(0, |prefix| prefix.chars().count());
        SourceLocation {
            file: source.name.clone(),
            line: u32::try_from(line_index + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_bytes_are_located_by_line_and_character_column() {
        let failure =
            decode_source("a.toml", b"x = 1\ny = \"\xC3\xA9\xFF\"\n".to_vec()).unwrap_err();
        assert_eq!(failure.location.unwrap().to_string(), "a.toml:2:7");
        assert!(failure.message.contains("0xFF"), "{}", failure.message);
        let failure = decode_source("b.toml", vec![0x80]).unwrap_err();
        assert_eq!(failure.location.unwrap().to_string(), "b.toml:1:1");
        assert_eq!(decode_source("c.toml", b"ok".to_vec()).unwrap().text, "ok");
    }

    #[test]
    fn locates_lines_and_columns_in_characters() {
        let map = SourceMap::new(vec![Source::new("a.toml", "x = 1\ny = \"é\" z\n")]);
        assert_eq!(map.locate(Span::new(0, 0..1)).to_string(), "a.toml:1:1");
        assert_eq!(map.locate(Span::new(0, 6..7)).to_string(), "a.toml:2:1");
        // "é" is two bytes but one column.
        assert_eq!(map.locate(Span::new(0, 15..16)).to_string(), "a.toml:2:9");
    }
}
