//! A fast path for the bulk of large topologies: files made only of `[[prefix]]` and
//! `[[binding]]` tables whose values are simple scalars. Such files hold nearly all the bytes of
//! a 300,000-binding topology, and a general TOML parser spends most of the compile budget on
//! them. This scanner accepts a strict subset of TOML — bare keys, basic strings without
//! escapes, literal strings, decimal integers, booleans, comments, and the two one-line inline
//! tables of integers a prefix uses (`announce = { split = 24 }`, `roa = { asn = 13335,
//! max_length = 24 }`), and `rpki = "allow" | "warn" | "refuse"` — and returns `None` for anything else (another table, any other inline
//! table, an escape, a duplicate or unknown key, a missing required key), in which case the
//! caller parses the file with `toml` as usual. It
//! never reports errors itself, so every diagnostic still comes from the one TOML parser, and
//! whatever it accepts it reads exactly as `toml` would (a unit test compares the two).

use toml::Spanned;

use crate::file::{AnnounceFile, BindingFile, PrefixFile, RoaFile};
use crate::model::{AnnounceMode, NotFoundPolicy};

enum Value<'a> {
    Text(&'a str),
    Integer(u64),
    Boolean(bool),
    /// A one-line inline table of integers, keys in written order.
    Integers(Vec<(&'a str, u64)>),
}

/// At most this many keys in an inline table the fast path reads (a prefix uses two).
const MAX_INLINE_KEYS: usize = 4;

#[derive(Default)]
struct PrefixFields {
    cidr: Option<Spanned<String>>,
    origin_asn: Option<Spanned<u32>>,
    owner: Option<String>,
    advertise: Option<bool>,
    announce: Option<Spanned<AnnounceFile>>,
    roa: Option<Spanned<RoaFile>>,
    rpki: Option<NotFoundPolicy>,
    irr_token: Option<String>,
    rdns_token: Option<String>,
}

#[derive(Default)]
struct BindingFields {
    cidr: Option<Spanned<String>>,
    service: Option<Spanned<String>>,
}

enum Table {
    None,
    Prefix(PrefixFields),
    Binding(BindingFields),
}

fn set<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

fn finish(
    table: Table,
    prefixes: &mut Vec<PrefixFile>,
    bindings: &mut Vec<BindingFile>,
) -> Option<()> {
    match table {
        Table::None => {}
        Table::Prefix(fields) => prefixes.push(PrefixFile {
            cidr: fields.cidr?,
            origin_asn: fields.origin_asn?,
            owner: fields.owner?,
            advertise: fields.advertise?,
            announce: fields.announce,
            roa: fields.roa,
            rpki: fields.rpki,
            irr_token: fields.irr_token,
            rdns_token: fields.rdns_token,
        }),
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
        b'"' => {
            let close = text[1..].find('"')? + 1;
            let content = &text[1..close];
            if content.contains('\\') || text.starts_with("\"\"\"") {
                return None;
            }
            Some((Value::Text(content), close + 1))
        }
        b'\'' => {
            if text.starts_with("'''") {
                return None;
            }
            let close = text[1..].find('\'')? + 1;
            Some((Value::Text(&text[1..close]), close + 1))
        }
        b't' if text.starts_with("true") => Some((Value::Boolean(true), 4)),
        b'f' if text.starts_with("false") => Some((Value::Boolean(false), 5)),
        b'0'..=b'9' => {
            let (number, length) = integer(text)?;
            Some((Value::Integer(number), length))
        }
        b'{' => inline_integers(text),
        _ => None,
    }
}

/// A decimal integer at the start of `text` (no sign, no leading zero, no underscores).
fn integer(text: &str) -> Option<(u64, usize)> {
    let length = text.bytes().take_while(u8::is_ascii_digit).count();
    if length == 0 || (length > 1 && text.starts_with('0')) {
        return None;
    }
    Some((text[..length].parse().ok()?, length))
}

/// `{ key = INTEGER, key = INTEGER }` on one line: bare keys, single spaces or tabs, commas
/// between pairs, none after the last (a trailing comma and newlines are left to `toml`).
fn inline_integers(text: &str) -> Option<(Value<'_>, usize)> {
    let blank = |rest: &str| rest.len() - rest.trim_start_matches([' ', '\t']).len();
    let mut position = 1;
    let mut pairs: Vec<(&str, u64)> = Vec::new();
    loop {
        position += blank(&text[position..]);
        if pairs.is_empty() && text[position..].starts_with('}') {
            return None;
        }
        let key_length = text[position..]
            .bytes()
            .take_while(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
            .count();
        if key_length == 0 {
            return None;
        }
        let key = &text[position..position + key_length];
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

/// Reads `text` if it is made only of `[[prefix]]` and `[[binding]]` tables in the simple
/// subset described in the module comment; `None` means "parse it with `toml`".
pub(crate) fn parse_prefixes_and_bindings(
    text: &str,
) -> Option<(Vec<PrefixFile>, Vec<BindingFile>)> {
    read_range(text, 0..text.len())
}

/// [`parse_prefixes_and_bindings`] over the lines of `text[range]` (which starts at a line's
/// start), with spans counted from the start of `text`: one table or a run of tables that the
/// per-table reader (`split`) hands over.
pub(crate) fn read_range(
    text: &str,
    range: std::ops::Range<usize>,
) -> Option<(Vec<PrefixFile>, Vec<BindingFile>)> {
    let first = range.start;
    let text = text.get(range)?;
    // Control characters other than tab are invalid almost everywhere in TOML, and a carriage
    // return must end a line: leave such files to the full parser.
    let bytes = text.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        let invalid = match byte {
            b'\r' => bytes.get(index + 1) != Some(&b'\n'),
            b'\t' | b'\n' => false,
            0x00..=0x1f | 0x7f => true,
            _ => false,
        };
        if invalid {
            return None;
        }
    }
    let mut prefixes = Vec::new();
    let mut bindings = Vec::new();
    let mut table = Table::None;
    let mut line_start = first;
    for raw_line in text.split_inclusive('\n') {
        let start = line_start;
        line_start += raw_line.len();
        let line = raw_line
            .strip_suffix('\n')
            .map_or(raw_line, |line| line.strip_suffix('\r').unwrap_or(line));
        let content = line.trim_start_matches([' ', '\t']);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(header) = content.strip_prefix("[[") {
            let close = header.find("]]")?;
            if !ends_line(&header[close + 2..]) {
                return None;
            }
            finish(
                std::mem::replace(&mut table, Table::None),
                &mut prefixes,
                &mut bindings,
            )?;
            table = match header[..close].trim_matches([' ', '\t']) {
                "prefix" => Table::Prefix(PrefixFields::default()),
                "binding" => Table::Binding(BindingFields::default()),
                _ => return None,
            };
            continue;
        }
        let key_length = content
            .bytes()
            .take_while(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
            .count();
        let key = &content[..key_length];
        let after_key = content[key_length..].trim_start_matches([' ', '\t']);
        let after_equals = after_key.strip_prefix('=')?.trim_start_matches([' ', '\t']);
        let value_start = start + (line.len() - after_equals.len());
        let (parsed, length) = value(after_equals)?;
        if !ends_line(&after_equals[length..]) {
            return None;
        }
        let span = value_start..value_start + length;
        match (&mut table, key, parsed) {
            (Table::Prefix(fields), "cidr", Value::Text(text)) => {
                set(&mut fields.cidr, Spanned::new(span, text.to_string()))?;
            }
            (Table::Prefix(fields), "origin_asn", Value::Integer(number)) => {
                let number = u32::try_from(number).ok()?;
                set(&mut fields.origin_asn, Spanned::new(span, number))?;
            }
            (Table::Prefix(fields), "owner", Value::Text(text)) => {
                set(&mut fields.owner, text.to_string())?;
            }
            (Table::Prefix(fields), "advertise", Value::Boolean(flag)) => {
                set(&mut fields.advertise, flag)?;
            }
            (Table::Prefix(fields), "announce", Value::Text("aggregate")) => {
                set(
                    &mut fields.announce,
                    Spanned::new(span, AnnounceFile(AnnounceMode::Aggregate)),
                )?;
            }
            (Table::Prefix(fields), "announce", Value::Integers(pairs)) => match pairs.as_slice() {
                [("split", length)] => {
                    let length = u8::try_from(*length).ok()?;
                    set(
                        &mut fields.announce,
                        Spanned::new(span, AnnounceFile(AnnounceMode::Split(length))),
                    )?;
                }
                _ => return None,
            },
            (Table::Prefix(fields), "roa", Value::Integers(pairs)) => {
                let find = |name: &str| {
                    pairs
                        .iter()
                        .find(|(key, _)| *key == name)
                        .map(|(_, value)| *value)
                };
                if pairs.len() != 2 {
                    return None;
                }
                let roa = RoaFile {
                    asn: u32::try_from(find("asn")?).ok()?,
                    max_length: u8::try_from(find("max_length")?).ok()?,
                };
                set(&mut fields.roa, Spanned::new(span, roa))?;
            }
            (Table::Prefix(fields), "rpki", Value::Text(text)) => {
                let policy = match text {
                    "allow" => NotFoundPolicy::Allow,
                    "warn" => NotFoundPolicy::Warn,
                    "refuse" => NotFoundPolicy::Refuse,
                    // Anything else is an error: `toml` (through serde) reports it.
                    _ => return None,
                };
                set(&mut fields.rpki, policy)?;
            }
            (Table::Prefix(fields), "irr_token", Value::Text(text)) => {
                set(&mut fields.irr_token, text.to_string())?;
            }
            (Table::Prefix(fields), "rdns_token", Value::Text(text)) => {
                set(&mut fields.rdns_token, text.to_string())?;
            }
            (Table::Binding(fields), "cidr", Value::Text(text)) => {
                set(&mut fields.cidr, Spanned::new(span, text.to_string()))?;
            }
            (Table::Binding(fields), "service", Value::Text(text)) => {
                set(&mut fields.service, Spanned::new(span, text.to_string()))?;
            }
            _ => return None,
        }
    }
    finish(table, &mut prefixes, &mut bindings)?;
    Some((prefixes, bindings))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::file::FileModel;

    fn describe(prefixes: &[PrefixFile], bindings: &[BindingFile]) -> String {
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
