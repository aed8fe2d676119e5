//! A fast path for the bulk of large topologies: `[[prefix]]` and `[[binding]]` tables whose
//! lines are simple. Such tables hold nearly all the bytes of a 300,000-binding topology, and a
//! general TOML parser spends most of the compile budget on them. This scanner accepts a strict
//! subset of TOML — bare keys and quoted keys without escapes, basic strings without escapes,
//! literal strings, decimal integers, booleans, comments, any key order, and the two tables a
//! prefix uses (`announce` with `split`, `roa` with `asn` and `max_length`) written as one-line
//! inline tables (`roa = { asn = 13335, max_length = 24 }`), as dotted keys (`roa.asn = 13335`)
//! or as sub-tables after their prefix (`[prefix.roa]`), `rpki = "allow" | "warn" |
//! "refuse"`, and a customer prefix's `[prefix.evidence]` sub-table (strings, `verified_at`, and
//! `checks` as a one-line array of strings) — and returns `None` for anything else (another table, any other inline table, an
//! escape, a duplicate or unknown key, a missing required key), in which case the caller reads
//! the table with `toml` (`split`) or the file as one document. It never reports errors itself,
//! so every diagnostic still comes from the one TOML parser, and whatever it accepts it reads
//! exactly as `toml` would, spans included (a unit test and the proptest in
//! `parse/tests_split.rs` compare the two).
//!
//! Owns: reading the lines of prefix and binding tables. Must not touch: diagnostics, the other
//! tables of a file (it stops at them and says where).

use std::ops::Range;

use toml::Spanned;

use crate::file::{AnnounceFile, BindingFile, EvidenceFile, PrefixFile, RoaFile};
use crate::model::{AnnounceMode, NotFoundPolicy};

enum Value<'a> {
    Text(&'a str),
    Integer(u64),
    Boolean(bool),
    /// A one-line inline table of integers, keys in written order.
    Integers(Vec<(&'a str, u64)>),
    /// A one-line array of strings without escapes (`checks = ["rdns", "roa"]`).
    Strings(Vec<&'a str>),
}

/// At most this many keys in an inline table the fast path reads (a prefix uses two).
const MAX_INLINE_KEYS: usize = 4;

/// `announce` or `roa` written over several lines — dotted keys (`roa.asn = 1`) or a sub-table
/// (`[prefix.roa]`) — with the span `toml` gives it (the first dotted key's first part, or the
/// header from `[` to `]`) and the integers read so far.
struct Partial<'a> {
    span: Range<usize>,
    header: bool,
    pairs: Vec<(&'a str, u64)>,
}

#[derive(Default)]
struct PrefixFields<'a> {
    cidr: Option<Spanned<String>>,
    origin_asn: Option<Spanned<u32>>,
    owner: Option<String>,
    advertise: Option<bool>,
    announce: Option<Spanned<AnnounceFile>>,
    roa: Option<Spanned<RoaFile>>,
    announce_parts: Option<Partial<'a>>,
    roa_parts: Option<Partial<'a>>,
    rpki: Option<NotFoundPolicy>,
    irr_token: Option<String>,
    rdns_token: Option<String>,
    evidence: Option<EvidenceParts>,
}

/// A `[prefix.evidence]` sub-table being read: the header's span (as `toml` gives it) and
/// the keys so far.
#[derive(Default)]
struct EvidenceParts {
    span: Range<usize>,
    longest_announced: Option<u8>,
    token_sha256: Option<String>,
    checks: Option<Vec<String>>,
    verified_at: Option<u64>,
    key: Option<String>,
    signature: Option<String>,
}

impl EvidenceParts {
    fn add(&mut self, key: &str, value: Value<'_>) -> Option<()> {
        match (key, value) {
            ("token_sha256", Value::Text(text)) => set(&mut self.token_sha256, text.to_string()),
            ("checks", Value::Strings(items)) => set(
                &mut self.checks,
                items.into_iter().map(str::to_string).collect(),
            ),
            // TOML integers are 64-bit signed: a larger one is `toml`'s error to report.
            ("verified_at", Value::Integer(number)) if i64::try_from(number).is_ok() => {
                set(&mut self.verified_at, number)
            }
            ("longest_announced", Value::Integer(number)) => {
                set(&mut self.longest_announced, u8::try_from(number).ok()?)
            }
            ("key", Value::Text(text)) => set(&mut self.key, text.to_string()),
            ("signature", Value::Text(text)) => set(&mut self.signature, text.to_string()),
            _ => None,
        }
    }

    fn finish(self) -> Option<Spanned<EvidenceFile>> {
        Some(Spanned::new(
            self.span,
            EvidenceFile {
                longest_announced: self.longest_announced?,
                token_sha256: self.token_sha256?,
                checks: self.checks?,
                verified_at: self.verified_at?,
                key: self.key?,
                signature: self.signature?,
            },
        ))
    }
}

#[derive(Default)]
struct BindingFields {
    cidr: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
}

// One value on the scanner's stack at a time, replaced per table: boxing the prefix's fields
// would only add an allocation per prefix.
#[allow(clippy::large_enum_variant)]
enum Table<'a> {
    None,
    Prefix(PrefixFields<'a>),
    Binding(BindingFields),
}

/// Which table the lines being read belong to: the `[[prefix]]`/`[[binding]]` itself, or the
/// `[prefix.announce]` or `[prefix.roa]` sub-table written after it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    Main,
    Announce,
    Roa,
    Evidence,
}

fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// `{ split = N }` as `toml` reads it into an announce mode.
fn announce_of(pairs: &[(&str, u64)]) -> Option<AnnounceFile> {
    match pairs {
        [("split", length)] => Some(AnnounceFile(AnnounceMode::Split(
            u8::try_from(*length).ok()?,
        ))),
        _ => None,
    }
}

/// `{ asn = N, max_length = N }` (either order) as `toml` reads it.
fn roa_of(pairs: &[(&str, u64)]) -> Option<RoaFile> {
    let find = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
    };
    if pairs.len() != 2 {
        return None;
    }
    Some(RoaFile {
        asn: u32::try_from(find("asn")?).ok()?,
        max_length: u8::try_from(find("max_length")?).ok()?,
    })
}

fn finish(
    table: Table<'_>,
    prefixes: &mut Vec<PrefixFile>,
    bindings: &mut Vec<BindingFile>,
) -> Option<()> {
    match table {
        Table::None => {}
        Table::Prefix(mut fields) => {
            if let Some(partial) = fields.announce_parts.take() {
                let announce = announce_of(&partial.pairs)?;
                set(&mut fields.announce, Spanned::new(partial.span, announce))?;
            }
            if let Some(partial) = fields.roa_parts.take() {
                let roa = roa_of(&partial.pairs)?;
                set(&mut fields.roa, Spanned::new(partial.span, roa))?;
            }
            prefixes.push(PrefixFile {
                cidr: fields.cidr?,
                origin_asn: fields.origin_asn?,
                owner: fields.owner?,
                advertise: fields.advertise?,
                announce: fields.announce,
                roa: fields.roa,
                rpki: fields.rpki,
                irr_token: fields.irr_token,
                rdns_token: fields.rdns_token,
                evidence: match fields.evidence {
                    Some(parts) => Some(Box::new(parts.finish()?)),
                    None => None,
                },
            });
        }
        Table::Binding(fields) => bindings.push(BindingFile {
            cidr: fields.cidr?,
            service: fields.service?,
        }),
    }
    Some(())
}

/// Whether `rest` (after a value) is only whitespace and an optional comment.
fn ends_line(rest: &str) -> bool {
    let rest = rest.trim_start_matches([' ', '\t']);
    rest.is_empty() || rest.starts_with('#')
}

/// Parses one value at the start of `text`; returns it with its length in bytes.
fn value(text: &str) -> Option<(Value<'_>, usize)> {
    let first = *text.as_bytes().first()?;
    match first {
        b'"' | b'\'' => {
            let (content, length) = quoted(text)?;
            Some((Value::Text(content), length))
        }
        b't' if text.starts_with("true") => Some((Value::Boolean(true), 4)),
        b'f' if text.starts_with("false") => Some((Value::Boolean(false), 5)),
        b'0'..=b'9' => {
            let (number, length) = integer(text)?;
            Some((Value::Integer(number), length))
        }
        b'{' => inline_integers(text),
        b'[' => inline_strings(text),
        _ => None,
    }
}

/// A one-line basic string without escapes or a literal string at the start of `text`: its
/// content and its length with the quotes.
fn quoted(text: &str) -> Option<(&str, usize)> {
    let quote = *text.as_bytes().first()?;
    if !matches!(quote, b'"' | b'\'') || text.as_bytes().get(1..3) == Some(&[quote, quote][..]) {
        return None;
    }
    let close = text[1..].find(char::from(quote))? + 1;
    let content = &text[1..close];
    if quote == b'"' && content.contains('\\') {
        return None;
    }
    Some((content, close + 1))
}

/// A decimal integer at the start of `text` (no sign, no leading zero, no underscores).
fn integer(text: &str) -> Option<(u64, usize)> {
    let length = text.bytes().take_while(u8::is_ascii_digit).count();
    if length == 0 || (length > 1 && text.starts_with('0')) {
        return None;
    }
    Some((text[..length].parse().ok()?, length))
}

fn blank(rest: &str) -> usize {
    rest.len() - rest.trim_start_matches([' ', '\t']).len()
}

fn bare_key_length(text: &str) -> usize {
    text.bytes()
        .take_while(|byte| byte.is_ascii_alphanumeric() || *byte == b'_' || *byte == b'-')
        .count()
}

/// `{ key = INTEGER, key = INTEGER }` on one line: bare keys, single spaces or tabs, commas
/// between pairs, none after the last (a trailing comma and newlines are left to `toml`).
fn inline_integers(text: &str) -> Option<(Value<'_>, usize)> {
    let mut position = 1;
    let mut pairs: Vec<(&str, u64)> = Vec::new();
    loop {
        position += blank(&text[position..]);
        if pairs.is_empty() && text[position..].starts_with('}') {
            return None;
        }
        let (key, key_length) = match text.as_bytes().get(position)? {
            b'"' | b'\'' => quoted(&text[position..])?,
            _ => {
                let length = bare_key_length(&text[position..]);
                (&text[position..position + length], length)
            }
        };
        if key_length == 0 {
            return None;
        }
        position += key_length;
        position += blank(&text[position..]);
        position += text[position..].strip_prefix('=').map(|_| 1)?;
        position += blank(&text[position..]);
        let (number, length) = integer(&text[position..])?;
        position += length;
        if pairs.iter().any(|(seen, _)| *seen == key) || pairs.len() == MAX_INLINE_KEYS {
            return None;
        }
        pairs.push((key, number));
        position += blank(&text[position..]);
        match text.as_bytes().get(position)? {
            b',' => position += 1,
            b'}' => return Some((Value::Integers(pairs), position + 1)),
            _ => return None,
        }
    }
}

/// `["text", 'text']` on one line: strings without escapes, commas between them, none after
/// the last, at least one (an empty array or a trailing comma is left to `toml`).
fn inline_strings(text: &str) -> Option<(Value<'_>, usize)> {
    let mut position = 1;
    let mut items = Vec::new();
    loop {
        position += blank(&text[position..]);
        let (item, length) = quoted(&text[position..])?;
        items.push(item);
        position += length;
        position += blank(&text[position..]);
        match text.as_bytes().get(position)? {
            b',' => position += 1,
            b']' => return Some((Value::Strings(items), position + 1)),
            _ => return None,
        }
    }
}

/// The key at the start of a line: a bare key, a quoted key without escapes, or a dotted key of
/// two bare parts (`roa.asn`, blanks around the dot allowed); its parts, the first part's
/// length, and the rest of the line.
struct Key<'a> {
    name: &'a str,
    dotted: Option<&'a str>,
    first_length: usize,
    rest: &'a str,
}

fn key(content: &str) -> Option<Key<'_>> {
    if matches!(content.as_bytes().first(), Some(b'"' | b'\'')) {
        let (name, length) = quoted(content)?;
        let rest = content[length..].trim_start_matches([' ', '\t']);
        if rest.starts_with('.') {
            return None;
        }
        return Some(Key {
            name,
            dotted: None,
            first_length: length,
            rest,
        });
    }
    let first_length = bare_key_length(content);
    if first_length == 0 {
        return None;
    }
    let name = &content[..first_length];
    let rest = content[first_length..].trim_start_matches([' ', '\t']);
    let Some(after_dot) = rest.strip_prefix('.') else {
        return Some(Key {
            name,
            dotted: None,
            first_length,
            rest,
        });
    };
    let after_dot = after_dot.trim_start_matches([' ', '\t']);
    let second_length = bare_key_length(after_dot);
    let rest = after_dot[second_length..].trim_start_matches([' ', '\t']);
    if second_length == 0 || rest.starts_with('.') {
        return None;
    }
    Some(Key {
        name,
        dotted: Some(&after_dot[..second_length]),
        first_length,
        rest,
    })
}

/// Where the tables being read are appended, and where reading would resume after a failure:
/// the start of the line of the current table's header (or of the first line read).
struct Output<'v> {
    prefixes: &'v mut Vec<PrefixFile>,
    bindings: &'v mut Vec<BindingFile>,
    stop: usize,
}

/// A table header line (its text from the first `[`, which is `offset` bytes into the file, on
/// the line starting at `line`): `[[prefix]]` and `[[binding]]` start a table (finishing the
/// one before), `[prefix.announce]` and `[prefix.roa]` a sub-table of the current prefix;
/// returns the context of the lines after it. Another table's header finishes the current
/// table and stops the scan at its line.
fn header<'a>(
    content: &str,
    offset: usize,
    line: usize,
    table: &mut Table<'a>,
    output: &mut Output<'_>,
) -> Option<Context> {
    let array = content.starts_with("[[");
    let inner_start = if array { 2 } else { 1 };
    let close = content[inner_start..].find(']')? + inner_start;
    if array && !content[close..].starts_with("]]") {
        return None;
    }
    let after = close + inner_start;
    if !ends_line(&content[after..]) {
        return None;
    }
    let mut parts = content[inner_start..close]
        .split('.')
        .map(|part| part.trim_matches([' ', '\t']));
    let parts = [parts.next(), parts.next(), parts.next()];
    let fresh = match (array, parts) {
        (true, [Some("prefix"), None, None]) => Table::Prefix(PrefixFields::default()),
        (true, [Some("binding"), None, None]) => Table::Binding(BindingFields::default()),
        (false, [Some("prefix"), Some("evidence"), None]) => {
            let Table::Prefix(fields) = table else {
                return None;
            };
            let parts = EvidenceParts {
                span: offset..offset + after,
                ..EvidenceParts::default()
            };
            set(&mut fields.evidence, parts)?;
            return Some(Context::Evidence);
        }
        (false, [Some("prefix"), Some(name @ ("announce" | "roa")), None]) => {
            let Table::Prefix(fields) = table else {
                return None;
            };
            let (done, slot, context) = if name == "announce" {
                (
                    fields.announce.is_some(),
                    &mut fields.announce_parts,
                    Context::Announce,
                )
            } else {
                (fields.roa.is_some(), &mut fields.roa_parts, Context::Roa)
            };
            if done {
                return None;
            }
            let partial = Partial {
                span: offset..offset + after,
                header: true,
                pairs: Vec::new(),
            };
            set(slot, partial)?;
            return Some(context);
        }
        (_, [Some(first), ..])
            if first != "prefix"
                && first != "binding"
                && !first.is_empty()
                && bare_key_length(first) == first.len() =>
        {
            finish(
                std::mem::replace(table, Table::None),
                output.prefixes,
                output.bindings,
            )?;
            output.stop = line;
            return None;
        }
        _ => return None,
    };
    finish(
        std::mem::replace(table, fresh),
        output.prefixes,
        output.bindings,
    )?;
    output.stop = line;
    Some(Context::Main)
}

/// Reads `text` if it is made only of `[[prefix]]` and `[[binding]]` tables in the simple
/// subset described in the module comment; `None` means "parse it with `toml`". (What the tests
/// compare with `toml`; the parser goes through [`read_until`].)
#[cfg(test)]
pub(crate) fn parse_prefixes_and_bindings(
    text: &str,
) -> Option<(Vec<PrefixFile>, Vec<BindingFile>)> {
    let mut prefixes = Vec::new();
    let mut bindings = Vec::new();
    read_until(text, 0..text.len(), &mut prefixes, &mut bindings).ok()?;
    Some((prefixes, bindings))
}

/// Reads the tables of `text[range]` (which starts at a line's start), spans counted from the
/// start of `text`, appending each table it reads whole; stops at the first table it cannot
/// read or at the header of another kind of table, and returns the offset of that table's
/// line (`Err`), from where the per-table reader (`split`) goes on.
pub(crate) fn read_until(
    text: &str,
    range: Range<usize>,
    prefixes: &mut Vec<PrefixFile>,
    bindings: &mut Vec<BindingFile>,
) -> Result<(), usize> {
    let mut output = Output {
        prefixes,
        bindings,
        stop: range.start,
    };
    match read_lines(text, range, &mut output) {
        Some(()) => Ok(()),
        None => Err(output.stop),
    }
}

fn read_lines(text: &str, range: Range<usize>, output: &mut Output<'_>) -> Option<()> {
    let first = range.start;
    let text = text.get(range)?;
    let mut table = Table::None;
    let mut context = Context::Main;
    let mut line_start = first;
    for raw_line in text.split_inclusive('\n') {
        let start = line_start;
        line_start += raw_line.len();
        let line = raw_line
            .strip_suffix('\n')
            .map_or(raw_line, |line| line.strip_suffix('\r').unwrap_or(line));
        // Control characters other than tab are invalid almost everywhere in TOML, and a
        // carriage return must end a line: leave such lines to the full parser.
        if line
            .bytes()
            .any(|byte| matches!(byte, 0x00..=0x08 | 0x0a..=0x1f | 0x7f))
        {
            return None;
        }
        let content = line.trim_start_matches([' ', '\t']);
        let key_start = start + (line.len() - content.len());
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with('[') {
            context = header(content, key_start, start, &mut table, output)?;
            continue;
        }
        let key = key(content)?;
        let after_equals = key.rest.strip_prefix('=')?.trim_start_matches([' ', '\t']);
        let value_start = start + (line.len() - after_equals.len());
        let (parsed, length) = value(after_equals)?;
        if !ends_line(&after_equals[length..]) {
            return None;
        }
        let span = value_start..value_start + length;
        match (&mut table, context) {
            (Table::Prefix(fields), Context::Main) => match key.dotted {
                None => prefix_key(fields, key.name, parsed, span)?,
                Some(inner) => {
                    let key_span = key_start..key_start + key.first_length;
                    dotted_key(fields, key.name, inner, parsed, key_span)?;
                }
            },
            (Table::Prefix(fields), Context::Announce | Context::Roa) => {
                let (Value::Integer(number), None) = (parsed, key.dotted) else {
                    return None;
                };
                let partial = if context == Context::Announce {
                    fields.announce_parts.as_mut()?
                } else {
                    fields.roa_parts.as_mut()?
                };
                add_pair(partial, key.name, number)?;
            }
            (Table::Prefix(fields), Context::Evidence) if key.dotted.is_none() => {
                fields.evidence.as_mut()?.add(key.name, parsed)?;
            }
            (Table::Binding(fields), Context::Main) if key.dotted.is_none() => {
                match (key.name, parsed) {
                    ("cidr", Value::Text(text)) => {
                        set(&mut fields.cidr, Spanned::new(span, text.to_string()))?;
                    }
                    ("service", Value::Text(text)) => {
                        set(&mut fields.service, Spanned::new(span, text.to_string()))?;
                    }
                    _ => return None,
                }
            }
            _ => return None,
        }
    }
    finish(table, output.prefixes, output.bindings)
}

fn add_pair<'a>(partial: &mut Partial<'a>, name: &'a str, number: u64) -> Option<()> {
    if partial.pairs.iter().any(|(seen, _)| *seen == name) || partial.pairs.len() == MAX_INLINE_KEYS
    {
        return None;
    }
    partial.pairs.push((name, number));
    Some(())
}

/// `announce.split = N`, `roa.asn = N`, `roa.max_length = N` in a prefix's own lines.
fn dotted_key<'a>(
    fields: &mut PrefixFields<'a>,
    table: &str,
    name: &'a str,
    parsed: Value<'a>,
    key_span: Range<usize>,
) -> Option<()> {
    let Value::Integer(number) = parsed else {
        return None;
    };
    let (done, slot) = match table {
        "announce" => (fields.announce.is_some(), &mut fields.announce_parts),
        "roa" => (fields.roa.is_some(), &mut fields.roa_parts),
        _ => return None,
    };
    if done {
        return None;
    }
    let partial = slot.get_or_insert_with(|| Partial {
        span: key_span,
        header: false,
        pairs: Vec::new(),
    });
    if partial.header {
        return None;
    }
    add_pair(partial, name, number)
}

/// One `key = value` line of a prefix (not dotted).
fn prefix_key<'a>(
    fields: &mut PrefixFields<'a>,
    key: &str,
    parsed: Value<'a>,
    span: Range<usize>,
) -> Option<()> {
    match (key, parsed) {
        ("cidr", Value::Text(text)) => {
            set(&mut fields.cidr, Spanned::new(span, text.to_string()))?;
        }
        ("origin_asn", Value::Integer(number)) => {
            let number = u32::try_from(number).ok()?;
            set(&mut fields.origin_asn, Spanned::new(span, number))?;
        }
        ("owner", Value::Text(text)) => {
            set(&mut fields.owner, text.to_string())?;
        }
        ("advertise", Value::Boolean(flag)) => {
            set(&mut fields.advertise, flag)?;
        }
        ("announce", parsed) if fields.announce_parts.is_none() => {
            let announce = match parsed {
                Value::Text("aggregate") => AnnounceFile(AnnounceMode::Aggregate),
                Value::Integers(pairs) => announce_of(&pairs)?,
                _ => return None,
            };
            set(&mut fields.announce, Spanned::new(span, announce))?;
        }
        ("roa", Value::Integers(pairs)) if fields.roa_parts.is_none() => {
            set(&mut fields.roa, Spanned::new(span, roa_of(&pairs)?))?;
        }
        ("rpki", Value::Text(text)) => {
            let policy = match text {
                "allow" => NotFoundPolicy::Allow,
                "warn" => NotFoundPolicy::Warn,
                "refuse" => NotFoundPolicy::Refuse,
                // Anything else is an error: `toml` (through serde) reports it.
                _ => return None,
            };
            set(&mut fields.rpki, policy)?;
        }
        ("irr_token", Value::Text(text)) => {
            set(&mut fields.irr_token, text.to_string())?;
        }
        ("rdns_token", Value::Text(text)) => {
            set(&mut fields.rdns_token, text.to_string())?;
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::file::FileModel;

    /// Every value read of `prefixes` and `bindings`, with its place, one line each.
    pub(crate) fn describe(prefixes: &[PrefixFile], bindings: &[BindingFile]) -> String {
        let mut out = String::new();
        for prefix in prefixes {
            out += &format!(
                "prefix {:?}@{:?} {:?}@{:?} {} {} {:?} {:?} {:?} {:?} {:?}\n",
                prefix.cidr.get_ref(),
                prefix.cidr.span(),
                prefix.origin_asn.get_ref(),
                prefix.origin_asn.span(),
                prefix.owner,
                prefix.advertise,
                prefix
                    .announce
                    .as_ref()
                    .map(|announce| (announce.get_ref().0, announce.span())),
                prefix.roa.as_ref().map(|roa| (
                    roa.get_ref().asn,
                    roa.get_ref().max_length,
                    roa.span()
                )),
                prefix.rpki,
                prefix.irr_token,
                prefix.rdns_token
            );
            if let Some(evidence) = &prefix.evidence {
                let table = evidence.get_ref();
                out += &format!(
                    "  evidence@{:?} {} {} {:?} {} {} {}\n",
                    evidence.span(),
                    table.longest_announced,
                    table.token_sha256,
                    table.checks,
                    table.verified_at,
                    table.key,
                    table.signature
                );
            }
        }
        for binding in bindings {
            out += &format!(
                "binding {:?}@{:?} {:?}@{:?}\n",
                binding.cidr.get_ref(),
                binding.cidr.span(),
                binding.service.get_ref(),
                binding.service.span()
            );
        }
        out
    }

    fn same_as_toml(text: &str) {
        let (prefixes, bindings) = parse_prefixes_and_bindings(text).unwrap();
        let model: FileModel = toml::from_str(text).unwrap();
        assert_eq!(
            describe(&prefixes, &bindings),
            describe(&model.prefix, &model.binding)
        );
    }

    #[test]
    fn reads_the_simple_subset_exactly_like_toml() {
        same_as_toml(
            "# bindings\r\n[[prefix]]   # first\r\ncidr = \"192.0.2.0/24\"\r\norigin_asn=13335\r\nowner = 'acme é'\r\nadvertise = true # yes\r\nannounce = \"aggregate\"\r\nirr_token = \"t\"\r\n\r\n  [[binding]]\n\tcidr   =   \"192.0.2.0/24\"\nservice = \"cdn\"\n[[binding]]\ncidr = \"198.51.100.0/24\"\nservice = \"x\"",
        );
        same_as_toml("");
        same_as_toml(
            "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nrpki = \"refuse\"\n",
        );
    }

    #[test]
    fn reads_dotted_keys_sub_tables_and_quoted_keys_exactly_like_toml() {
        let plain = "cidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n";
        same_as_toml(&format!(
            "[[prefix]]\nroa.asn = 1\n{plain}announce . split = 24 # x\nroa.max_length = 24\n"
        ));
        same_as_toml(&format!(
            "[[prefix]]\n{plain}[ prefix . announce ]  # x\nsplit = 24\n[prefix.roa]\nmax_length = 24\n'asn' = 1\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"s\"\n"
        ));
        same_as_toml(
            "[[prefix]]\n\"cidr\" = '192.0.2.0/24'\n'origin_asn' = 1\n\"owner\" = \"o\"\n\"advertise\" = false\n\"roa\" = { \"asn\" = 1, 'max_length' = 24 }\n",
        );
        for text in [
            format!("[[prefix]]\n{plain}announce.split = 24\nannounce = {{ split = 24 }}\n"),
            format!(
                "[[prefix]]\n{plain}announce = {{ split = 24 }}\n[prefix.announce]\nsplit = 24\n"
            ),
            format!("[[prefix]]\n{plain}announce.split = 24\n[prefix.announce]\nsplit = 24\n"),
            format!("[[prefix]]\n{plain}[prefix.announce]\n"),
            format!("[[prefix]]\n{plain}[prefix.roa]\nasn = 1\n"),
            format!("[[prefix]]\n{plain}[prefix.roa]\nasn = 1\nmax_length = 24\ncidr = \"x\"\n"),
            format!("[[prefix]]\n{plain}roa.asn = 1\nroa.asn = 2\nroa.max_length = 24\n"),
            format!("[[prefix]]\n{plain}roa.asn.x = 1\n"),
            format!("[[prefix]]\n{plain}\"roa\".asn = 1\nroa.max_length = 24\n"),
            format!("[[prefix]]\n{plain}cidr.x = 1\n"),
            "[[binding]]\ncidr = \"a\"\nservice = \"x\"\n[prefix.roa]\nasn = 1\n".to_string(),
            format!("[[prefix]]\n{plain}[prefix.roa]]\n"),
            format!("[[prefix]]\n{plain}[prefix]\n"),
            "[[binding]]\n\"cidr\" = \"a\\u0041\"\nservice = \"x\"\n".to_string(),
        ] {
            assert!(parse_prefixes_and_bindings(&text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn reads_evidence_sub_tables_exactly_like_toml() {
        let plain = "[[prefix]]\ncidr = \"192.0.2.0/24\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\n";
        let evidence = "[prefix.evidence]  # signed\nlongest_announced = 24\ntoken_sha256 = \"ab\"\nchecks = [ 'irr' ,\"roa\"]\nverified_at = 17\nkey = \"k\"\nsignature = 's'\n";
        same_as_toml(&format!(
            "{plain}{evidence}[prefix.roa]\nasn = 1\nmax_length = 24\n"
        ));
        same_as_toml(&format!(
            "{plain}{evidence}\n[[binding]]\ncidr = \"192.0.2.0/24\"\nservice = \"s\"\n"
        ));
        // Left to `toml`: a trailing comma, an empty array, a missing or unknown key, a second
        // evidence table, a time beyond TOML's integers.
        for (from, to) in [
            ("\"roa\"]", "\"roa\",]"),
            ("[ 'irr' ,\"roa\"]", "[]"),
            ("key = \"k\"\n", ""),
            ("key = \"k\"\n", "key = \"k\"\nnote = \"n\"\n"),
            ("verified_at = 17", "verified_at = 9223372036854775808"),
            ("longest_announced = 24", "longest_announced = 300"),
        ] {
            let text = format!("{plain}{}", evidence.replace(from, to));
            assert!(parse_prefixes_and_bindings(&text).is_none(), "{text}");
        }
        assert!(parse_prefixes_and_bindings(&format!("{plain}{evidence}{evidence}")).is_none());
    }

    #[test]
    fn leaves_everything_else_to_toml() {
        for text in [
            "[[service]]\nname = \"x\"\n",
            "[[binding]]\ncidr = \"a\\u0041\"\nservice = \"x\"\n",
            "[[binding]]\ncidr = \"a\"\ncidr = \"b\"\nservice = \"x\"\n",
            "[[binding]]\ncidr = \"a\"\n",
            "[[binding]]\ncidr = \"a\"\nservice = \"x\"\ncolour = \"red\"\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 01\nowner = \"o\"\nadvertise = true\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = { split = 24, }\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nannounce = { split = 24, extra = 1 }\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nroa = { asn = 1 }\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nroa = { asn = 1, asn = 2 }\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nroa = { asn = 1, max_length = 24, colour = 3 }\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nroa = { asn = \"1\", max_length = 24 }\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nroa = {}\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nrpki = \"deny\"\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nrpki = \"Warn\"\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 1\nowner = \"o\"\nadvertise = true\nrpki = \"warn\"\nrpki = \"allow\"\n",
            "[[binding]]\ncidr = \"a\" service = \"x\"\n",
            "cidr = \"a\"\n",
            "[[binding]]\r cidr = \"a\"\nservice = \"x\"\n",
            "[[prefix]]\ncidr = \"a\"\norigin_asn = 4294967296\nowner = \"o\"\nadvertise = true\n",
        ] {
            assert!(parse_prefixes_and_bindings(text).is_none(), "{text:?}");
        }
    }

    /// A file of `[[prefix]]`/`[[binding]]` tables in varied formatting, sometimes with a line
    /// the fast path must refuse; built from the numbers proptest draws.
    fn varied_file(tables: &[(bool, usize, usize, usize, u8)], crlf: bool) -> String {
        const HEADERS: [&str; 3] = ["[[{}]]", "  [[ {} ]]   # table", "[[{}]]\t"];
        const SPACING: [&str; 3] = [" = ", "=", " \t=  "];
        const EXTRA: [&str; 5] = ["", "# note", "   ", "colour = \"red\"", "cidr = \"dup\""];
        let ending = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for (index, (is_prefix, header, spacing, extra, rotation)) in tables.iter().enumerate() {
            let name = if *is_prefix { "prefix" } else { "binding" };
            out += &HEADERS[*header].replace("{}", name);
            out += ending;
            let equals = SPACING[*spacing];
            let mut keys: Vec<String> = if *is_prefix {
                vec![
                    format!("cidr{equals}\"192.0.{index}.0/24\""),
                    format!("origin_asn{equals}{}", 13335 + index),
                    format!("owner{equals}'owner #{index}'"),
                    format!("advertise{equals}{}", index % 2 == 0),
                    if index % 3 == 0 {
                        format!("announce{equals}\"aggregate\" # default")
                    } else {
                        format!("announce{equals}{{ split{equals}{} }}", 24 + index % 2)
                    },
                    if index % 2 == 0 {
                        format!(
                            "roa{equals}{{asn{equals}{}, max_length = 24}} # declared",
                            13335 + index
                        )
                    } else {
                        format!(
                            "roa = {{ max_length{equals}24 ,\tasn = {} }}",
                            13335 + index
                        )
                    },
                ]
                .into_iter()
                .chain(
                    ["allow", "warn", "refuse"]
                        .get(index % 4)
                        .map(|policy| format!("rpki{equals}\"{policy}\" # G5")),
                )
                .collect()
            } else {
                vec![
                    format!("cidr{equals}\"10.{index}.0.0/16\""),
                    format!("service{equals}\"svc-{index}\""),
                ]
            };
            let length = keys.len();
            keys.rotate_left(*rotation as usize % length);
            for key in keys {
                out += &key;
                out += ending;
            }
            out += EXTRA[*extra % EXTRA.len()];
            out += ending;
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the fast path accepts, `toml` accepts and reads identically; and it accepts
        /// the well-formed files.
        #[test]
        fn accepted_files_read_like_toml(
            tables in proptest::collection::vec(
                (proptest::bool::ANY, 0..3_usize, 0..3_usize, 0..8_usize, proptest::num::u8::ANY),
                0..8,
            ),
            crlf in proptest::bool::ANY,
        ) {
            let text = varied_file(&tables, crlf);
            let well_formed = tables.iter().all(|table| table.3 % 5 < 3);
            let parsed = parse_prefixes_and_bindings(&text);
            proptest::prop_assert_eq!(parsed.is_some(), well_formed, "{:?}", text);
            if let Some((prefixes, bindings)) = parsed {
                let model: Result<FileModel, _> = toml::from_str(&text);
                proptest::prop_assert!(model.is_ok(), "toml rejects {:?}: {:?}", text, model.err());
                if let Ok(model) = model {
                    proptest::prop_assert_eq!(
                        describe(&prefixes, &bindings),
                        describe(&model.prefix, &model.binding)
                    );
                }
            }
        }
    }
}
