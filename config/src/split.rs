//! Reading a topology file table by table, so that a large file costs about the same whatever
//! its syntax. The file is cut at its top-level table headers with the lexer of the TOML parser
//! itself (`toml_parser`, so strings, comments and multi-line arrays and inline tables are seen
//! exactly as the parser sees them); every `[[prefix]]` or `[[binding]]` table (with the
//! `[prefix.announce]`-style sub-tables right after it) is read alone — by the line scanner
//! (`fast`) when its lines are simple, else by `toml` on that table's text only — and everything
//! else (`[settings]`, `[[location]]`, `[[service]]`, …) is parsed by `toml` as one document in
//! which the prefix and binding tables are blanked out, so every span stays the file's own.
//!
//! Owns: the cutting and the per-table reads. Must not touch: diagnostics. It reports nothing:
//! `None` (a piece that does not parse, a header it does not expect, a budget exceeded) means
//! "parse the whole document", which reports exactly what it always did. Whatever it accepts,
//! the whole-document parse accepts and reads identically (a proptest in `parse/tests_split.rs`
//! compares them): the pieces are cut where the parser is at the start of a top-level line, and
//! no piece can touch another's tables — a header or root key naming `prefix` or `binding` in
//! any other form than a plain `[[prefix]]`/`[[binding]]` (or its sub-table right after it)
//! sends the file to the whole-document parse.

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
    Other { content: bool },
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

/// Reads `text` table by table; `None` when the file has no prefix or binding table, or when
/// any piece cannot be read so (the caller then parses the whole document).
pub(crate) fn read_by_tables(text: &str) -> Option<FileModel> {
    let pieces = cut(text)?;
    if pieces
        .iter()
        .all(|piece| matches!(piece.kind, Kind::Other { .. }))
    {
        return None;
    }
    let mut prefix = Vec::new();
    let mut binding = Vec::new();
    let mut rest_end = 0;
    for piece in &pieces {
        match piece.kind {
            Kind::Other { content } => {
                if content {
                    rest_end = piece.range.end;
                }
            }
            Kind::Prefix | Kind::Binding => {
                read_table(text, piece.range.clone(), &mut prefix, &mut binding)?;
            }
        }
    }
    let mut model = if rest_end == 0 {
        FileModel {
            settings: None,
            location: Vec::new(),
            service: Vec::new(),
            prefix: Vec::new(),
            binding: Vec::new(),
        }
    } else {
        read_rest(text, &pieces, rest_end)?
    };
    if !model.prefix.is_empty() || !model.binding.is_empty() {
        return None;
    }
    model.prefix = prefix;
    model.binding = binding;
    Some(model)
}

/// One prefix or binding table: the line scanner, else `toml` on its text alone.
fn read_table(
    text: &str,
    range: Range<usize>,
    prefixes: &mut Vec<PrefixFile>,
    bindings: &mut Vec<BindingFile>,
) -> Option<()> {
    if let Some((prefix, binding)) = crate::fast::read_range(text, range.clone()) {
        prefixes.extend(prefix);
        bindings.extend(binding);
        return Some(());
    }
    if range.len() > MAX_TABLE_BYTES {
        return None;
    }
    let offset = range.start;
    let table: TableFile = toml::from_str(text.get(range)?).ok()?;
    prefixes.extend(table.prefix.into_iter().map(|prefix| PrefixFile {
        cidr: shift(prefix.cidr, offset),
        origin_asn: shift(prefix.origin_asn, offset),
        announce: prefix.announce.map(|announce| shift(announce, offset)),
        roa: prefix.roa.map(|roa| shift(roa, offset)),
        ..prefix
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

/// Everything but the prefix and binding tables, up to `end`, parsed as one document in which
/// those tables are blanked (spaces, one newline), so that its spans are the file's.
fn read_rest(text: &str, pieces: &[Piece], end: usize) -> Option<FileModel> {
    let mut rest = String::with_capacity(end);
    for piece in pieces {
        if piece.range.start >= end {
            break;
        }
        let part = text.get(piece.range.clone())?;
        match piece.kind {
            Kind::Other { .. } => rest.push_str(part),
            Kind::Prefix | Kind::Binding => {
                // Followed by another piece, so it ends with its last line's newline.
                if !part.ends_with('\n') {
                    return None;
                }
                rest.extend(std::iter::repeat_n(' ', part.len() - 1));
                rest.push('\n');
            }
        }
    }
    let mut scratch = Collector::new();
    let scan = bounds::scan_file(0, &rest, &mut scratch)?;
    if scan.parse_cost() > bounds::parse_budget(rest.len()) {
        return None;
    }
    toml::from_str(&rest).ok()
}

/// The pieces of `text`, in order and covering it, cut at the start of the line of every
/// top-level table header; `None` for a header or root key it does not expect (see the module
/// comment) or brackets that do not balance.
fn cut(text: &str) -> Option<Vec<Piece>> {
    let source = toml_parser::Source::new(text);
    let mut tokens = source.lex().peekable();
    let mut pieces = vec![Piece {
        kind: Kind::Other { content: false },
        range: 0..0,
    }];
    let mut line_begin = 0;
    let mut at_line_start = true;
    let mut depth = 0_usize;
    let mut in_root = true;
    while let Some(token) = tokens.next() {
        let kind = token.kind();
        if !at_line_start {
            match kind {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => {
                    depth = depth.checked_sub(1)?;
                }
                TokenKind::Newline if depth == 0 => {
                    at_line_start = true;
                    line_begin = token.span().end();
                }
                _ => {}
            }
            continue;
        }
        match kind {
            TokenKind::Whitespace | TokenKind::Comment | TokenKind::Newline => {
                if kind == TokenKind::Newline {
                    line_begin = token.span().end();
                }
            }
            TokenKind::Eof => break,
            TokenKind::LeftSquareBracket => {
                let header = header(text, &mut tokens)?;
                in_root = false;
                line_begin = start_piece(&mut pieces, header, line_begin)?;
            }
            TokenKind::Atom | TokenKind::BasicString | TokenKind::LiteralString => {
                // A key at the root could name `prefix` or `binding`: leave that to the parser.
                let name = text.get(token.span().start()..token.span().end())?;
                if in_root && (kind != TokenKind::Atom || name == "prefix" || name == "binding") {
                    return None;
                }
                if let Some(last) = pieces.last_mut()
                    && let Kind::Other { content } = &mut last.kind
                {
                    *content = true;
                }
                at_line_start = false;
                depth = 0;
            }
            _ => return None,
        }
    }
    if !at_line_start && depth != 0 {
        return None;
    }
    let last = pieces.len() - 1;
    pieces[last].range.end = text.len();
    Some(pieces)
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

/// Starts the piece of a header whose line starts at `line_begin` (or continues the current
/// prefix or binding piece with its sub-table); returns where the next line starts.
fn start_piece(pieces: &mut Vec<Piece>, header: Header<'_>, line_begin: usize) -> Option<usize> {
    let kind = match header.parts.as_slice() {
        ["prefix"] if header.array => Kind::Prefix,
        ["binding"] if header.array => Kind::Binding,
        [first, _, ..] if *first == "prefix" || *first == "binding" => {
            let current = pieces.last()?.kind;
            let same = matches!(
                (current, *first),
                (Kind::Prefix, "prefix") | (Kind::Binding, "binding")
            );
            // A sub-table of the table just read belongs to its piece; anywhere else it would
            // reach across pieces.
            return same.then_some(header.line_end);
        }
        [first, ..] if *first == "prefix" || *first == "binding" => return None,
        _ => Kind::Other { content: true },
    };
    let last = pieces.last_mut()?;
    if let (Kind::Other { content }, Kind::Other { .. }) = (&mut last.kind, kind) {
        // Consecutive other tables stay one piece.
        *content = true;
        return Some(header.line_end);
    }
    last.range.end = line_begin;
    pieces.push(Piece {
        kind,
        range: line_begin..line_begin,
    });
    Some(header.line_end)
}
