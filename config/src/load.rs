//! Reading topology files into [`Source`] values: [`load_sources`] (the only file access in the
//! crate, refusing a file over [`MAX_TOPOLOGY_BYTES`] without reading it whole) and
//! [`decode_source`], which turns bytes into a [`Source`] or says where the first byte that is
//! not UTF-8 is. Both report with a [`Diagnostic`] at `file:line:column`.

use std::path::Path;

use crate::bounds::MAX_TOPOLOGY_BYTES;
use crate::diagnostic::{Diagnostic, Severity};
use crate::source::{Source, SourceLocation};
use crate::text::escape_text;

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
            let limit = MAX_TOPOLOGY_BYTES;
            let mut bytes = Vec::new();
            std::fs::File::open(path)
                .and_then(|file| {
                    // Sized from the file's length: a buffer grown by doubling while it reads
                    // would hold up to twice the text at the compile's peak.
                    let length = file.metadata().map_or(0, |metadata| metadata.len());
                    bytes.reserve_exact(usize::try_from(length.min(limit as u64 + 1)).unwrap_or(0));
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
}
