//! Source texts and positions: [`Source`] (a file name and its text), [`Span`] (byte range in
//! one source), [`SourceLocation`] (`file:line:column`, what people read) and [`SourceMap`], which
//! turns the first into the second; [`Located`] (a value and its span) and the crate-internal
//! helpers that turn a TOML value's span (and offsets inside a string value) into a [`Span`].
//! Owns no parsing, no validation and no I/O (reading files is `load`; a map whose texts were
//! put away reads them back through the [`ReadText`] its owner gave it). A leaf module:
//! everything else in the crate points into sources through it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// One input file: its name as it appears in diagnostics, and its text (the control API's
/// named TOML source, shared by every crate that handles topology files).
pub use topologyd_api::SourceFile as Source;

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

    /// Its length as the packed forms keep it ([`PackedSpan`], `model::ValueSpans`): cut at
    /// 65,535 bytes (a position is its start).
    pub fn packed_length(self) -> u16 {
        u16::try_from(self.end.saturating_sub(self.start)).unwrap_or(u16::MAX)
    }

    /// The span a packed form gives back: `length` bytes from `start` in `source`.
    pub fn unpacked(source: u32, start: u32, length: u16) -> Span {
        Span {
            source,
            start,
            end: start.saturating_add(u32::from(length)),
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

/// A [`Span`] in 10 bytes instead of 12, for records a large topology holds a million of (a
/// compiled prefix, a binding): its length is cut at 65,535 bytes (a position is its start).
/// Aligned to 2, so that it packs after the record's other fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(C, packed(2))]
pub struct PackedSpan {
    source: u32,
    start: u32,
    length: u16,
}

impl PackedSpan {
    /// The span (its end cut to 65,535 bytes past its start).
    pub fn get(self) -> Span {
        Span::unpacked(self.source, self.start, self.length)
    }
}

impl From<Span> for PackedSpan {
    fn from(span: Span) -> PackedSpan {
        PackedSpan {
            source: span.source,
            start: span.start,
            length: span.packed_length(),
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

/// Something a put-away text is read again from: a file, or any reader that can seek.
pub trait TextReader: std::io::Read + std::io::Seek + Send {}

impl<T: std::io::Read + std::io::Seek + Send> TextReader for T {}

/// Opens the text of source `index` again where its owner keeps it (a state directory),
/// checked against what was parsed (its digest); `None` when it cannot (positions in it are
/// then unknown).
pub type ReadText = Arc<dyn Fn(u32) -> Option<Box<dyn TextReader>> + Send + Sync>;

/// The texts of a map that put them away after the parse ([`SourceMap::put_away_texts`]):
/// their lengths and how to read them again. A put-away text's line index is built by reading
/// it through once, when a position in it is first reported (4 bytes a line); the text itself
/// is never held again: a column is counted in its line, read alone.
struct PutAway {
    lengths: Vec<usize>,
    read: ReadText,
}

/// The sources of one topology, with a lazily built line index per source (built only when a
/// position is reported, so a clean compile never pays for it).
#[derive(Default)]
pub struct SourceMap {
    sources: Vec<Source>,
    line_starts: Vec<OnceLock<Vec<u32>>>,
    /// The texts were handed out ([`SourceMap::take_texts`]): names only, positions unknown.
    released: bool,
    /// The texts were put away after the parse, and are read back to report a position.
    put_away: Option<Box<PutAway>>,
}

impl fmt::Debug for SourceMap {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SourceMap")
            .field("sources", &self.sources)
            .field("released", &self.released)
            .field("put_away", &self.put_away.is_some())
            .finish()
    }
}

impl Clone for SourceMap {
    fn clone(&self) -> SourceMap {
        SourceMap {
            released: self.released,
            put_away: self.put_away.as_ref().map(|put_away| {
                Box::new(PutAway {
                    lengths: put_away.lengths.clone(),
                    read: Arc::clone(&put_away.read),
                })
            }),
            ..SourceMap::new(self.sources.clone())
        }
    }
}

impl SourceMap {
    pub fn new(sources: Vec<Source>) -> SourceMap {
        let line_starts = sources.iter().map(|_| OnceLock::new()).collect();
        SourceMap {
            sources,
            line_starts,
            released: false,
            put_away: None,
        }
    }

    /// Drops the texts, keeping their names and lengths, and reads a text again through `read`
    /// only to report a position in it: a compile whose texts are kept elsewhere (the daemon
    /// writes a bootstrap topology into its state directory before compiling it) does not hold
    /// megabytes of TOML beside the compiled topology, not even to report a warning. Positions
    /// are the same while `read` gives back the texts as parsed (unknown otherwise), and
    /// [`SourceMap::text_len`] still gives each text's length. Once is enough: a map whose
    /// texts are already put away or handed out is left as it is.
    pub fn put_away_texts(&mut self, read: ReadText) {
        if self.released || self.put_away.is_some() {
            return;
        }
        let lengths = self
            .sources
            .iter_mut()
            .map(|source| std::mem::take(&mut source.text).len())
            .collect();
        self.line_starts = self.sources.iter().map(|_| OnceLock::new()).collect();
        self.put_away = Some(Box::new(PutAway { lengths, read }));
    }

    /// The length in bytes of the text of source `index` as parsed (0 for an unknown index, or
    /// once the texts were handed out).
    pub fn text_len(&self, index: u32) -> usize {
        match &self.put_away {
            Some(put_away) => put_away.lengths.get(index as usize).copied().unwrap_or(0),
            None => self
                .sources
                .get(index as usize)
                .map_or(0, |source| source.text.len()),
        }
    }

    /// The line and column of `offset` in the put-away text `index`: its line from the line
    /// index (built by reading the text through once, then kept), its column counted in that
    /// line read alone. `None` when the text cannot be read again as it was parsed.
    fn locate_put_away(&self, put_away: &PutAway, index: usize, offset: u32) -> Option<(u32, u32)> {
        use std::io::{Read as _, Seek as _};
        let length = *put_away.lengths.get(index)?;
        let starts = self.line_starts.get(index)?.get_or_init(|| {
            u32::try_from(index)
                .ok()
                .and_then(|source| (put_away.read)(source))
                .and_then(|mut reader| line_starts_of(&mut *reader, length))
                .unwrap_or_default()
        });
        // An empty index: the text could not be read again (a text has at least one line).
        let offset = offset.min(u32::try_from(length).unwrap_or(u32::MAX));
        let line_index = starts
            .partition_point(|start| *start <= offset)
            .checked_sub(1)?;
        let line_start = *starts.get(line_index)?;
        let mut reader = (put_away.read)(u32::try_from(index).ok()?)?;
        reader
            .seek(std::io::SeekFrom::Start(u64::from(line_start)))
            .ok()?;
        let mut before = Vec::new();
        reader
            .take(u64::from(offset - line_start))
            .read_to_end(&mut before)
            .ok()?;
        let column = String::from_utf8_lossy(&before).chars().count();
        Some((
            u32::try_from(line_index + 1).unwrap_or(u32::MAX),
            u32::try_from(column + 1).unwrap_or(u32::MAX),
        ))
    }

    /// Hands out the sources (names and texts) and keeps only their names: a long-lived holder
    /// of a compiled topology (the daemon, whose state directory keeps the texts) need not hold
    /// megabytes of TOML. Afterwards every text is empty and [`SourceMap::locate`] answers
    /// line and column 0 (unknown).
    pub fn take_texts(&mut self) -> Vec<Source> {
        self.released = true;
        self.put_away = None;
        self.line_starts = self.sources.iter().map(|_| OnceLock::new()).collect();
        self.sources
            .iter_mut()
            .map(|source| Source::new(source.name.clone(), std::mem::take(&mut source.text)))
            .collect()
    }

    /// Whether the texts are not held: handed out, or put away after the parse.
    pub fn texts_released(&self) -> bool {
        self.released || self.put_away.is_some()
    }

    /// The sources, in the order given.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The text of source `index` (empty for an unknown index, and once handed out or put
    /// away).
    pub fn text(&self, index: u32) -> &str {
        self.sources
            .get(index as usize)
            .map_or("", |source| source.text.as_str())
    }

    /// Converts a span's start into `file:line:column`.
    pub fn locate(&self, span: Span) -> SourceLocation {
        if let Some(source) = self.sources.get(span.source as usize)
            && self.released
        {
            return SourceLocation {
                file: source.name.clone(),
                line: 0,
                column: 0,
            };
        }
        let Some(source) = self.sources.get(span.source as usize) else {
            return SourceLocation {
                file: String::from("<unknown>"),
                line: 0,
                column: 0,
            };
        };
        if let Some(put_away) = &self.put_away {
            let (line, column) = self
                .locate_put_away(put_away, span.source as usize, span.start)
                .unwrap_or((0, 0));
            return SourceLocation {
                file: source.name.clone(),
                line,
                column,
            };
        }
        let text = source.text.as_str();
        let starts = self.line_starts[span.source as usize].get_or_init(|| {
            std::iter::once(0)
                .chain(
                    text.bytes()
                        .enumerate()
                        .filter(|(_, byte)| *byte == b'\n')
                        .map(|(offset, _)| u32::try_from(offset + 1).unwrap_or(u32::MAX)),
                )
                .collect()
        });
        let offset = span
            .start
            .min(u32::try_from(text.len()).unwrap_or(u32::MAX));
        let line_index = starts
            .partition_point(|start| *start <= offset)
            .saturating_sub(1);
        let line_start = starts.get(line_index).copied().unwrap_or(0) as usize;
        let column = text
            .get(line_start..offset as usize)
            .map_or(0, |prefix| prefix.chars().count());
        SourceLocation {
            file: source.name.clone(),
            line: u32::try_from(line_index + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column + 1).unwrap_or(u32::MAX),
        }
    }
}

/// The offset of every line's start in the text `reader` gives, read through once in blocks;
/// `None` unless it is `length` bytes long.
fn line_starts_of(reader: &mut dyn TextReader, length: usize) -> Option<Vec<u32>> {
    let mut starts = vec![0_u32];
    let mut block = vec![0_u8; 1 << 16];
    let mut offset = 0_usize;
    loop {
        let read = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        let bytes = block.get(..read)?;
        starts.extend(
            memchr::memchr_iter(b'\n', bytes)
                .map(|at| u32::try_from(offset + at + 1).unwrap_or(u32::MAX)),
        );
        offset += read;
        if offset > length {
            return None;
        }
    }
    (offset == length).then_some(starts)
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Located<T> {
    pub fn new(value: T, span: Span) -> Located<T> {
        Located { value, span }
    }
}

/// Maps byte offsets inside a TOML string's decoded value back to the source. Exact when the
/// value appears verbatim after the opening quote (no escapes, no line continuations); otherwise
/// every offset conservatively maps to the opening quote.
pub(crate) struct StringPositions {
    pub(crate) span: Span,
    pub(crate) content_start: Option<usize>,
}

impl StringPositions {
    pub(crate) fn new(text: &str, span: Span, value: &str) -> StringPositions {
        let raw = text.get(span.start as usize..).unwrap_or("");
        let quote = if raw.starts_with("\"\"\"") || raw.starts_with("'''") {
            3
        } else {
            1
        };
        let start = span.start as usize + quote;
        let content_start = (text.get(start..start + value.len()) == Some(value)).then_some(start);
        StringPositions {
            span,
            content_start,
        }
    }

    pub(crate) fn locate(&self, offset: usize, length: usize) -> Span {
        match self.content_start {
            Some(start) => Span::new(self.span.source, start + offset..start + offset + length),
            None => self.span,
        }
    }
}

pub(crate) fn span_of<T>(source: u32, spanned: &Spanned<T>) -> Span {
    Span::new(source, spanned.span())
}

/// The value of an optional spanned setting, or `default` when it is absent.
pub(crate) fn value_or<T: Copy>(value: &Option<Spanned<T>>, default: T) -> T {
    value.as_ref().map_or(default, |value| *value.get_ref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns_in_characters() {
        let map = SourceMap::new(vec![Source::new("a.toml", "x = 1\ny = \"é\" z\n")]);
        assert_eq!(map.locate(Span::new(0, 0..1)).to_string(), "a.toml:1:1");
        assert_eq!(map.locate(Span::new(0, 6..7)).to_string(), "a.toml:2:1");
        // "é" is two bytes but one column.
        assert_eq!(map.locate(Span::new(0, 15..16)).to_string(), "a.toml:2:9");
    }

    #[test]
    fn taken_texts_leave_names_and_unknown_positions() {
        let mut map = SourceMap::new(vec![Source::new("a.toml", "x = 1\ny = 2\n")]);
        assert_eq!(map.locate(Span::new(0, 6..7)).to_string(), "a.toml:2:1");
        let taken = map.take_texts();
        assert_eq!(taken, vec![Source::new("a.toml", "x = 1\ny = 2\n")]);
        assert!(map.texts_released());
        assert_eq!(map.sources(), [Source::new("a.toml", "")]);
        assert_eq!(map.locate(Span::new(0, 6..7)).to_string(), "a.toml:0:0");
    }

    #[test]
    fn packed_spans_keep_the_span_and_its_order() {
        assert_eq!(std::mem::size_of::<PackedSpan>(), 10);
        let spans = [
            Span::new(0, 5..9),
            Span::new(0, 5..10),
            Span::new(0, 6..6),
            Span::new(1, 0..3),
            Span::new(u32::MAX, u32::MAX as usize - 1..u32::MAX as usize),
        ];
        for (index, span) in spans.iter().enumerate() {
            assert_eq!(PackedSpan::from(*span).get(), *span);
            for other in &spans[index..] {
                assert_eq!(
                    PackedSpan::from(*span).cmp(&PackedSpan::from(*other)),
                    span.cmp(other)
                );
            }
        }
        let long = Span::new(2, 10..100_000);
        assert_eq!(PackedSpan::from(long).get(), Span::new(2, 10..65_545));
    }

    #[test]
    fn put_away_texts_are_read_again_only_to_locate() {
        let text = "x = 1\ny = \"é\" z\n";
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut map = SourceMap::new(vec![Source::new("a.toml", text), Source::new("b.toml", "")]);
        let counter = Arc::clone(&reads);
        map.put_away_texts(Arc::new(move |index| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (index == 0).then(|| {
                Box::new(std::io::Cursor::new(text.as_bytes().to_vec())) as Box<dyn TextReader>
            })
        }));
        assert_eq!(map.sources()[0].text, "", "the text is not held");
        assert_eq!(map.text(0), "");
        assert!(map.texts_released());
        assert_eq!(map.text_len(0), text.len());
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(map.locate(Span::new(0, 15..16)).to_string(), "a.toml:2:9");
        assert_eq!(map.locate(Span::new(0, 6..7)).to_string(), "a.toml:2:1");
        assert_eq!(map.locate(Span::new(0, 0..1)).to_string(), "a.toml:1:1");
        assert_eq!(map.locate(Span::new(0, 99..99)).to_string(), "a.toml:3:1");
        // Read through once for the line index, then one line for each position.
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 5);
        // A text that cannot be read again, or comes back another length: positions unknown.
        assert_eq!(map.locate(Span::new(1, 0..0)).to_string(), "b.toml:0:0");
        let mut short = SourceMap::new(vec![Source::new("c.toml", "abc\n")]);
        short.put_away_texts(Arc::new(|_| {
            Some(Box::new(std::io::Cursor::new(b"ab".to_vec())) as Box<dyn TextReader>)
        }));
        assert_eq!(short.locate(Span::new(0, 1..2)).to_string(), "c.toml:0:0");
        // Put away once: a second reader is not taken.
        short.put_away_texts(Arc::new(|_| {
            Some(Box::new(std::io::Cursor::new(b"abc\n".to_vec())) as Box<dyn TextReader>)
        }));
        assert_eq!(short.text_len(0), 4);
        assert_eq!(short.locate(Span::new(0, 1..2)).to_string(), "c.toml:0:0");
        // A copy reads again on its own; handing the texts out forgets the reader.
        assert_eq!(
            map.clone().locate(Span::new(0, 6..7)).to_string(),
            "a.toml:2:1"
        );
        let taken = map.take_texts();
        assert_eq!(taken[0].text, "");
        assert_eq!(map.locate(Span::new(0, 6..7)).to_string(), "a.toml:0:0");
        assert_eq!(map.text_len(0), 0);
    }

    /// Over generated texts, a put-away map locates every offset as the map holding the text.
    #[test]
    fn put_away_positions_are_those_of_the_text() {
        let lines = [
            "",
            "a = 1",
            "# é ü",
            "[[prefix]]",
            "cidr = \"10.0.0.0/8\"",
            "\t x",
        ];
        for seed in 0..64_usize {
            let text: String = (0..seed % 9 + 1)
                .map(|at| lines[(seed * 7 + at * 3) % lines.len()])
                .collect::<Vec<_>>()
                .join(if seed % 3 == 0 { "\r\n" } else { "\n" });
            let held = SourceMap::new(vec![Source::new("t.toml", text.as_str())]);
            let mut put_away = SourceMap::new(vec![Source::new("t.toml", text.as_str())]);
            let copy = text.clone();
            put_away.put_away_texts(Arc::new(move |_| {
                Some(Box::new(std::io::Cursor::new(copy.clone().into_bytes()))
                    as Box<dyn TextReader>)
            }));
            for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
                let span = Span::new(0, offset..offset);
                assert_eq!(
                    put_away.locate(span),
                    held.locate(span),
                    "{text:?} at {offset}"
                );
            }
        }
    }
}
