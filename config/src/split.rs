//! Reading a topology file table by table, so that a large file costs about the same whatever
//! its syntax. The line scanner (`fast`) reads runs of `[[prefix]]` and `[[binding]]` tables
//! and stops at the first table it cannot read or at another kind of table; from there, the
//! lexer of the TOML parser itself (`toml_parser`, so strings, comments and multi-line arrays
//! and inline tables are seen exactly as the parser sees them) finds where that piece ends: a
//! prefix or binding table (with the `[prefix.roa]`-style sub-tables right after it), read alone
//! by `toml`, or other tables (`[settings]`, `[[location]]`, `[[service]]`, root keys) up to the
//! next prefix or binding table; then the scanner goes on. The other tables are parsed by `toml`
//! as one document in which everything else is blanked, so every span stays the file's own.
//!
//! The prefix and binding tables read are handed on about every 256 KiB (a chunk ends where a
//! `[[prefix]]` or `[[binding]]` table starts), so that the parser converts them as they come
//! and a large file's tables are never all held twice. With several cores, a batch of chunks is
//! scanned ahead on up to four threads; a chunk scanned ahead is used only for the very range
//! the one-by-one reading would scan next, so what is handed on is the same.
//!
//! Owns: the cutting, the chunks, the threads that scan them ahead and the per-table reads.
//! Must not touch: diagnostics. It reports nothing: `None` (a piece that does not parse, a
//! header it does not expect, a budget exceeded) means "parse the whole document", which
//! reports exactly what it always did. Whatever it accepts,
//! the whole-document parse accepts and reads identically (a proptest in `parse/tests_split.rs`
//! compares them): the pieces are cut where the parser is at the start of a top-level line, and no
//! piece can touch another's tables — a header or root key naming `prefix` or `binding` in any
//! other form than a plain `[[prefix]]`/`[[binding]]` (or its sub-table right after it)
//! sends the file to the whole-document parse.

use std::collections::VecDeque;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml_parser::lexer::{Token, TokenKind};

use crate::bounds;
use crate::diagnostic::Collector;
use crate::file::{BindingFile, FileModel, PrefixFile};

/// The largest prefix or binding table (with its sub-tables) read alone by `toml`; a prefix
/// table is about 200 bytes. A larger one sends the file to the whole-document parse and its
/// parse-cost budget.
const MAX_TABLE_BYTES: usize = 64 << 10;

/// What a piece of the file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One `[[prefix]]` table and the sub-tables written right after it.
    Prefix,
    /// One `[[binding]]` table and the sub-tables written right after it.
    Binding,
    /// Anything else: root keys, `[settings]`, `[[location]]`, `[[service]]`, comments.
    Other,
}

#[derive(Debug)]
struct Piece {
    kind: Kind,
    range: Range<usize>,
}

/// One `[[prefix]]` or `[[binding]]` table as `toml` reads it alone.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    prefix: Vec<PrefixFile>,
    #[serde(default)]
    binding: Vec<BindingFile>,
}

/// Where the per-table reader hands the prefix and binding tables it has read, a chunk at a
/// time and in file order: `take` empties both lists. The parser converts each chunk at once,
/// so a large file's tables are never all held twice (as read and as converted).
pub(crate) trait Tables {
    fn take(&mut self, prefixes: &mut Vec<PrefixFile>, bindings: &mut Vec<BindingFile>);

    /// About this many prefix and binding tables are coming (a count of their headers, to size
    /// the lists they are converted into once instead of growing them).
    fn expect(&mut self, _prefixes: usize, _bindings: usize) {}
}

/// Collects every table handed over (what the tests compare with the whole-document parse).
#[cfg(test)]
impl Tables for (Vec<PrefixFile>, Vec<BindingFile>) {
    fn take(&mut self, prefixes: &mut Vec<PrefixFile>, bindings: &mut Vec<BindingFile>) {
        self.0.append(prefixes);
        self.1.append(bindings);
    }
}

/// About this many bytes of the file are scanned before the tables read so far are handed
/// over (a prefix table is about 200 bytes: some thousand tables a chunk).
pub(crate) const CHUNK_BYTES: usize = 256 << 10;

/// [`read_by_tables_into`] keeping the prefix and binding tables in the returned model.
#[cfg(test)]
pub(crate) fn read_by_tables(text: &str, scanned: bool) -> Option<FileModel> {
    let mut tables = (Vec::new(), Vec::new());
    let mut model = read_by_tables_into(text, scanned, CHUNK_BYTES, &mut tables)?;
    (model.prefix, model.binding) = tables;
    Some(model)
}

/// Reads `text` table by table, handing its prefix and binding tables to `tables` about every
/// `chunk_bytes` ([`CHUNK_BYTES`] in production) and returning the file's other tables; `None` when
/// any piece cannot be read so (the caller then parses the whole document, and must drop what
/// `tables` was handed: the file is read again whole). When `scanned` is false (the caller skipped
/// the pre-scan of the whole file because it is ASCII), the pieces the line scanner did not read
/// are pre-scanned here, and any finding also means `None`: the lines it reads hold nothing the
/// pre-scan reports (no control character, nothing non-ASCII, no nesting beyond two levels), so the
/// file's pre-scan finds nothing either.
pub(crate) fn read_by_tables_into(
    text: &str,
    scanned: bool,
    chunk_bytes: usize,
    tables: &mut impl Tables,
) -> Option<FileModel> {
    if text.len() > chunk_bytes {
        // Capped at what the text could hold: a header inside a multi-line string counts too.
        let (prefixes, bindings) = count_headers(text);
        tables.expect(
            prefixes.min(text.len() / MIN_PREFIX_TABLE_BYTES),
            bindings.min(text.len() / MIN_BINDING_TABLE_BYTES),
        );
    }
    read_by_tables_with(
        text,
        scanned,
        chunk_bytes,
        scan_workers(text.len(), chunk_bytes),
        tables,
    )
}

/// [`read_by_tables_into`] with the line scanner run on `workers` threads (1: none of its own).
pub(crate) fn read_by_tables_with(
    text: &str,
    scanned: bool,
    chunk_bytes: usize,
    workers: usize,
    tables: &mut impl Tables,
) -> Option<FileModel> {
    let mut prefix = Vec::new();
    let mut binding = Vec::new();
    let mut others: Vec<Range<usize>> = Vec::new();
    let mut ahead = VecDeque::new();
    let mut position = 0;
    let mut end = 0;
    while position < text.len() {
        // A cut stays good until passed: it is where a table starts, past `position`.
        let cut_anew = end <= position;
        if cut_anew {
            end = chunk_end(text, position, chunk_bytes);
        }
        // The next chunk scanned ahead is used when it is the very range this loop scans next
        // (the scanner reads the same tables from the same range on any thread), else the
        // range is scanned here. Chunks a piece was read past are dropped; and once a piece
        // was read past a cut, this loop cuts elsewhere than the chunks scanned ahead: they
        // are dropped, and scanned again from here.
        while ahead
            .front()
            .is_some_and(|chunk: &Scanned| chunk.range.start < position)
        {
            ahead.pop_front();
        }
        if cut_anew
            && ahead
                .front()
                .is_some_and(|chunk| chunk.range != (position..end))
        {
            ahead.clear();
        }
        if ahead.is_empty() && workers > 1 {
            ahead = scan_ahead(text, position..end, chunk_bytes, workers);
        }
        let read = match ahead.pop_front() {
            Some(chunk) if chunk.range == (position..end) => {
                let (mut prefixes, mut bindings) = chunk.tables;
                prefix.append(&mut prefixes);
                binding.append(&mut bindings);
                chunk.read
            }
            other => {
                if let Some(chunk) = other {
                    ahead.push_front(chunk);
                }
                crate::fast::read_until(text, position..end, &mut prefix, &mut binding)
            }
        };
        match read {
            Ok(()) => position = end,
            Err(stop) => {
                let piece = piece_at(text, stop)?;
                if !scanned && !scans_clean(text.get(piece.range.clone())?) {
                    return None;
                }
                match piece.kind {
                    Kind::Other => others.push(piece.range.clone()),
                    Kind::Prefix | Kind::Binding => {
                        read_table(text, piece.range.clone(), &mut prefix, &mut binding)?;
                    }
                }
                if piece.range.end <= stop {
                    return None;
                }
                position = piece.range.end;
            }
        }
        tables.take(&mut prefix, &mut binding);
    }
    let model = if others.is_empty() {
        FileModel {
            settings: None,
            location: Vec::new(),
            service: Vec::new(),
            prefix: Vec::new(),
            binding: Vec::new(),
        }
    } else {
        read_rest(text, &others)?
    };
    if !model.prefix.is_empty() || !model.binding.is_empty() {
        return None;
    }
    Some(model)
}

/// One chunk the line scanner read ahead: its range, what the scanner answered (where it
/// stopped, if it did) and the tables it read up to there.
struct Scanned {
    range: Range<usize>,
    read: Result<(), usize>,
    tables: (Vec<PrefixFile>, Vec<BindingFile>),
}

/// Chunks scanned ahead at once per thread: enough to keep the threads busy between two
/// hand-overs, few enough that what is held before conversion stays a few chunks.
const CHUNKS_AHEAD_PER_WORKER: usize = 2;

/// How many threads scan a text of `length` bytes cut every `chunk_bytes`: one (no thread of
/// its own) for a text of one or two chunks, else up to four, as the machine has cores.
fn scan_workers(length: usize, chunk_bytes: usize) -> usize {
    if length <= chunk_bytes.saturating_mul(2) {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |cores| cores.get().min(4))
}

/// The line scanner over the next chunks, the first `first` and each after it cut where the
/// loop cuts after the one before (until a piece is read past a cut), on `workers` threads
/// (the calling one among them): the scanner is most of a large file's parse, and chunks start
/// where tables start, so each is read on its own. In file order. A thread that cannot be made
/// leaves its chunks to the others; a chunk missing (its thread panicked) is scanned by the
/// loop.
fn scan_ahead(
    text: &str,
    first: Range<usize>,
    chunk_bytes: usize,
    workers: usize,
) -> VecDeque<Scanned> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut ranges = vec![first];
    while ranges.len() < workers * CHUNKS_AHEAD_PER_WORKER {
        let Some(start) = ranges.last().map(|range| range.end) else {
            break;
        };
        if start >= text.len() {
            break;
        }
        ranges.push(start..chunk_end(text, start, chunk_bytes));
    }
    let next = AtomicUsize::new(0);
    let scan = || {
        let mut scanned = Vec::new();
        while let Some(range) = ranges.get(next.fetch_add(1, Ordering::Relaxed)) {
            let mut tables = (Vec::new(), Vec::new());
            let read = crate::fast::read_until(text, range.clone(), &mut tables.0, &mut tables.1);
            scanned.push(Scanned {
                range: range.clone(),
                read,
                tables,
            });
        }
        scanned
    };
    let mut scanned = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..workers.min(ranges.len()))
            .filter_map(|_| std::thread::Builder::new().spawn_scoped(scope, scan).ok())
            .collect();
        let mut scanned = scan();
        for handle in handles {
            // A scanner thread that panicked leaves its chunks out: they are read here.
            scanned.extend(handle.join().unwrap_or_default());
        }
        scanned
    });
    scanned.sort_unstable_by_key(|chunk| chunk.range.start);
    scanned.into()
}

/// The fewest bytes a `[[prefix]]` table can take (header, `cidr = "::/0"`, `origin_asn`,
/// `owner`, `advertise`, written without spaces), and a `[[binding]]` table.
const MIN_PREFIX_TABLE_BYTES: usize = 60;
const MIN_BINDING_TABLE_BYTES: usize = 36;

/// The number of `[[prefix]]` and of `[[binding]]` header lines: about the number of tables (a
/// multi-line string may hold such a line too; only a size hint). One pass of `memchr`'s
/// substring search, a few milliseconds for 100 MB.
pub(crate) fn count_headers(text: &str) -> (usize, usize) {
    header_lines(text.as_bytes(), 0).fold((0, 0), |(prefixes, bindings), (_, kind)| match kind {
        Kind::Prefix => (prefixes + 1, bindings),
        Kind::Binding | Kind::Other => (prefixes, bindings + 1),
    })
}

/// Where the chunk of `text` that starts at `start` ends: the start of the first
/// `[[prefix]]` or `[[binding]]` header line found from `chunk_bytes` on (and past `start`),
/// or the end of the text. The line scanner reads only one-line values, so when it reads a
/// chunk whole, the chunk's end is a line of the top level, and a table and its sub-tables
/// are never cut apart. (A header the scanner does not read stops it there, cut or not.)
fn chunk_end(text: &str, start: usize, chunk_bytes: usize) -> usize {
    let from = start.saturating_add(chunk_bytes).min(text.len());
    header_lines(text.as_bytes(), from)
        .map(|(line, _)| line)
        .find(|&line| line > start)
        .unwrap_or(text.len())
}

/// The start of every line whose `[[` is at or after `from` and that is a `[[prefix]]` or
/// `[[binding]]` header (spaces and tabs allowed before the brackets and around the name; what
/// follows the `]]` is not looked at), with its kind.
fn header_lines(bytes: &[u8], from: usize) -> impl Iterator<Item = (usize, Kind)> + '_ {
    let rest = bytes.get(from..).unwrap_or_default();
    memchr::memmem::find_iter(rest, b"[[").filter_map(move |at| {
        let at = from + at;
        let before = bytes.get(..at)?;
        let indent = before
            .iter()
            .rev()
            .take_while(|&&byte| byte == b' ' || byte == b'\t')
            .count();
        let line = at - indent;
        if line > 0 && before.get(line - 1) != Some(&b'\n') {
            return None;
        }
        Some((line, header_kind(bytes.get(at + 2..)?)?))
    })
}

/// The kind of the header whose name and closing brackets begin `rest` (after its `[[`).
fn header_kind(rest: &[u8]) -> Option<Kind> {
    let blank = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let name_start = rest.iter().position(|byte| !blank(byte))?;
    let name = rest.get(name_start..)?;
    let (kind, after) = if let Some(after) = name.strip_prefix(b"prefix") {
        (Kind::Prefix, after)
    } else {
        (Kind::Binding, name.strip_prefix(b"binding")?)
    };
    let close = after.iter().position(|byte| !blank(byte))?;
    after.get(close..)?.starts_with(b"]]").then_some(kind)
}

/// Whether the pre-scan finds nothing to report in `text` (a piece starting at a line's start).
fn scans_clean(text: &str) -> bool {
    bounds::scan_file(0, text, &mut Collector::new()).is_some()
}

/// One prefix or binding table the line scanner could not read: `toml` on its text alone.
fn read_table(
    text: &str,
    range: Range<usize>,
    prefixes: &mut Vec<PrefixFile>,
    bindings: &mut Vec<BindingFile>,
) -> Option<()> {
    if range.len() > MAX_TABLE_BYTES {
        return None;
    }
    let offset = range.start;
    let table: TableFile = toml::from_str(text.get(range)?).ok()?;
    prefixes.extend(table.prefix.into_iter().map(|prefix| {
        PrefixFile {
            cidr: shift(prefix.cidr, offset),
            origin_asn: shift(prefix.origin_asn, offset),
            announce: prefix.announce.map(|announce| shift(announce, offset)),
            roa: prefix.roa.map(|roa| shift(roa, offset)),
            evidence: prefix
                .evidence
                .map(|evidence| Box::new(shift(*evidence, offset))),
            ..prefix
        }
    }));
    bindings.extend(table.binding.into_iter().map(|binding| BindingFile {
        cidr: shift(binding.cidr, offset),
        service: shift(binding.service, offset),
    }));
    Some(())
}

/// A span read in a piece that starts `offset` bytes into the file, as a span of the file.
fn shift<T>(value: Spanned<T>, offset: usize) -> Spanned<T> {
    let span = value.span();
    Spanned::new(span.start + offset..span.end + offset, value.into_inner())
}

/// The pieces in `others` (in order), parsed as one document in which everything else is
/// blanked (spaces, each blanked run ending with its newline), so that its spans are the file's.
fn read_rest(text: &str, others: &[Range<usize>]) -> Option<FileModel> {
    let end = others.last()?.end;
    let mut rest = String::with_capacity(end);
    for range in others {
        let gap = range.start - rest.len();
        if gap > 0 {
            // A gap ends at a line's start, so with its last line's newline.
            if !text.get(..range.start)?.ends_with('\n') {
                return None;
            }
            rest.extend(std::iter::repeat_n(' ', gap - 1));
            rest.push('\n');
        }
        rest.push_str(text.get(range.clone())?);
    }
    let mut scratch = Collector::new();
    let scan = bounds::scan_file(0, &rest, &mut scratch)?;
    if scan.parse_cost() > bounds::parse_budget(rest.len()) {
        return None;
    }
    toml::from_str(&rest).ok()
}

/// The piece of `text` that starts at `start` (a line's start at the top level, where the line
/// scanner stopped): a prefix or binding table with the sub-tables written right after it, or
/// other tables (and root keys) up to the next prefix or binding table. Cut with the lexer of
/// the TOML parser; `None` for a header or root key it does not expect (see the module comment)
/// or brackets that do not balance.
fn piece_at(text: &str, start: usize) -> Option<Piece> {
    let source = toml_parser::Source::new(text.get(start..)?);
    let mut tokens = source.lex().peekable();
    let mut kind: Option<Kind> = None;
    let mut line_begin = start;
    let mut at_line_start = true;
    let mut depth = 0_usize;
    while let Some(token) = tokens.next() {
        let token_kind = token.kind();
        if !at_line_start {
            match token_kind {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                    depth = depth.checked_sub(1)?;
                }
                TokenKind::Newline if depth == 0 => {
                    at_line_start = true;
                    line_begin = start + token.span().end();
                }
                _ => {}
            }
            continue;
        }
        match token_kind {
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::Newline => line_begin = start + token.span().end(),
            TokenKind::Eof => break,
            TokenKind::LeftSquareBracket => {
                let header = header(text.get(start..)?, &mut tokens)?;
                match (kind, next_kind(kind, &header)?) {
                    (None, Start(next)) => kind = Some(next),
                    (None, Continue) => return None,
                    // Other tables stay one piece; sub-tables stay with their table.
                    (Some(Kind::Other), Start(Kind::Other)) | (Some(_), Continue) => {}
                    (Some(current), Start(_)) => {
                        return Some(Piece {
                            kind: current,
                            range: start..line_begin,
                        });
                    }
                }
                line_begin = start + header.line_end;
            }
            TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString => {
                // A key before any header is a root key, which could name `prefix` or
                // `binding`: leave that to the parser.
                let name = source
                    .input()
                    .get(token.span().start()..token.span().end())?;
                if kind.is_none() {
                    if start != 0
                        || token_kind != TokenKind::Atom
                        || name == "prefix"
                        || name == "binding"
                    {
                        return None;
                    }
                    kind = Some(Kind::Other);
                }
                at_line_start = false;
            }
            _ => return None,
        }
    }
    if !at_line_start && depth != 0 {
        return None;
    }
    Some(Piece {
        kind: kind?,
        range: start..text.len(),
    })
}

/// A table header after its first `[`: whether it is an array of tables, its dotted key's
/// parts (bare keys only) and where its line ends.
struct Header<'a> {
    array: bool,
    parts: Vec<&'a str>,
    line_end: usize,
}

fn header<'a>(
    text: &'a str,
    tokens: &mut std::iter::Peekable<toml_parser::lexer::Lexer<'a>>,
) -> Option<Header<'a>> {
    let array = tokens
        .next_if(|token| token.kind() == TokenKind::LeftSquareBracket)
        .is_some();
    let mut parts = Vec::new();
    let mut closed = false;
    let mut after_dot = true;
    for token in tokens.by_ref() {
        match token.kind() {
            TokenKind::Whitespace => {}
            TokenKind::Atom if after_dot => {
                parts.push(text.get(token.span().start()..token.span().end())?);
                after_dot = false;
            }
            TokenKind::Dot if !after_dot => after_dot = true,
            TokenKind::RightSquareBracket if !after_dot => {
                closed = true;
                break;
            }
            _ => return None,
        }
    }
    if !closed
        || (array
            && tokens
                .next_if(|token| token.kind() == TokenKind::RightSquareBracket)
                .is_none())
    {
        return None;
    }
    let line_end = rest_of_line(tokens)?;
    Some(Header {
        array,
        parts,
        line_end,
    })
}

/// Consumes blanks and a comment up to the end of the line; the offset after its newline.
fn rest_of_line(tokens: &mut impl Iterator<Item = Token>) -> Option<usize> {
    for token in tokens {
        match token.kind() {
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::Newline | TokenKind::Eof => return Some(token.span().end()),
            _ => return None,
        }
    }
    None
}

/// What a header means for the piece being cut (`current`, `None` before the first header).
enum Next {
    /// A header of this kind, which starts a piece unless it continues an `Other` piece.
    Start(Kind),
    /// A sub-table of the prefix or binding table of the current piece.
    Continue,
}
use Next::{Continue, Start};

fn next_kind(current: Option<Kind>, header: &Header<'_>) -> Option<Next> {
    Some(match header.parts.as_slice() {
        ["prefix"] if header.array => Start(Kind::Prefix),
        ["binding"] if header.array => Start(Kind::Binding),
        [first, _, ..] if *first == "prefix" || *first == "binding" => {
            // A sub-table of the table just read belongs to its piece; anywhere else it would
            // reach across pieces.
            let same = matches!(
                (current?, *first),
                (Kind::Prefix, "prefix") | (Kind::Binding, "binding")
            );
            return same.then_some(Continue);
        }
        [first, ..] if *first == "prefix" || *first == "binding" => return None,
        _ => Start(Kind::Other),
    })
}
